/* SPDX-License-Identifier: BSD-3-Clause */
#include "base/text.h"

#include <string.h>

size_t tes_u64_digits(char d[TES_U64_DIGITS], uint64_t v)
{
	char r[TES_U64_DIGITS];
	size_t n = 0, k = 0;

	do {
		r[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		d[k++] = r[--n];
	return k;
}

size_t tes_str_append(char *dst, size_t size, size_t at, const char *src)
{
	if (at + 1 >= size) {
		dst[size - 1] = '\0';
		return size - 1;
	}
	char *end = memccpy(dst + at, src, '\0', size - at);
	if (!end) {
		dst[size - 1] = '\0';
		return size - 1;
	}
	return (size_t)(end - dst) - 1;
}

size_t tes_str_copy(char *dst, size_t size, const char *src)
{
	return tes_str_append(dst, size, 0, src);
}

size_t tes_str_append_u64(char *dst, size_t size, size_t at, uint64_t v)
{
	char d[TES_U64_DIGITS + 1];
	d[tes_u64_digits(d, v)] = '\0';
	return tes_str_append(dst, size, at, d);
}
