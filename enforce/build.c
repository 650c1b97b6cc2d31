/* SPDX-License-Identifier: BSD-3-Clause */
#include "enforce/build.h"
#include "base/text.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Ten digits admit the zero-padded form of any field Exchange writes and
 * keep the value below 2^31 without a wider type. */
#define FIELD_DIGITS_MAX 10
#define FIELD_VALUE_MAX 0x7fffffffu

static size_t parse_field(const char *s, size_t len, uint32_t *out)
{
	uint64_t v = 0;
	size_t i = 0;

	while (i < len && s[i] >= '0' && s[i] <= '9') {
		if (i == FIELD_DIGITS_MAX)
			return 0;
		v = v * 10 + (uint64_t)(s[i] - '0');
		i++;
	}
	if (i == 0 || v > FIELD_VALUE_MAX)
		return 0;
	*out = (uint32_t)v;
	return i;
}

size_t ex_build_parse(const char *s, size_t len, struct ex_build *out)
{
	struct ex_build b;
	size_t pos = 0;

	for (int f = 0; f < 4; f++) {
		if (f > 0) {
			if (pos >= len || s[pos] != '.')
				return 0;
			pos++;
		}
		size_t n = parse_field(s + pos, len - pos, &b.v[f]);
		if (n == 0)
			return 0;
		pos += n;
	}
	/* "15.2.1748.39.7" or "15.2.1748.39x" is not a build. */
	if (pos < len && (s[pos] == '.' || (s[pos] >= '0' && s[pos] <= '9') ||
			  (s[pos] >= 'a' && s[pos] <= 'z') || (s[pos] >= 'A' && s[pos] <= 'Z')))
		return 0;
	*out = b;
	return pos;
}

bool ex_build_from_str(const char *s, struct ex_build *out)
{
	size_t len = 0;

	while (s[len])
		len++;
	return len > 0 && ex_build_parse(s, len, out) == len;
}

int ex_build_cmp(const struct ex_build *a, const struct ex_build *b)
{
	for (int i = 0; i < 4; i++) {
		if (a->v[i] != b->v[i])
			return a->v[i] < b->v[i] ? -1 : 1;
	}
	return 0;
}

int ex_build_format(const struct ex_build *b, char *buf, size_t len)
{
	/* snprintf's contract, without its format parsing: the gateway logs
	 * a build per message */
	char t[4 * 11];
	size_t n = 0;

	for (int i = 0; i < 4; i++) {
		if (i)
			t[n++] = '.';
		n += tes_u64_digits(t + n, b->v[i]);
	}
	if (len) {
		size_t c = n < len - 1 ? n : len - 1;
		memcpy(buf, t, c);
		buf[c] = '\0';
	}
	return (int)n;
}

enum ex_family ex_family_of(const struct ex_build *b)
{
	switch (b->v[0]) {
	case 8:
		return EX_FAMILY_2007;
	case 14:
		return EX_FAMILY_2010;
	case 15:
		switch (b->v[1]) {
		case 0:
			return EX_FAMILY_2013;
		case 1:
			return EX_FAMILY_2016;
		case 2:
			return b->v[2] >= 2562 ? EX_FAMILY_SE : EX_FAMILY_2019;
		default:
			return b->v[1] >= 20 ? EX_FAMILY_ONLINE : EX_FAMILY_NONE;
		}
	default:
		return EX_FAMILY_NONE;
	}
}

static const char *const family_names[EX_FAMILY_COUNT] = {
	[EX_FAMILY_NONE] = "none", [EX_FAMILY_2007] = "2007",     [EX_FAMILY_2010] = "2010",
	[EX_FAMILY_2013] = "2013", [EX_FAMILY_2016] = "2016",     [EX_FAMILY_2019] = "2019",
	[EX_FAMILY_SE] = "SE",     [EX_FAMILY_ONLINE] = "Online",
};

const char *ex_family_name(enum ex_family f)
{
	return (unsigned)f < EX_FAMILY_COUNT ? family_names[f] : "none";
}

enum ex_family ex_family_from_name(const char *name)
{
	for (int f = 1; f < EX_FAMILY_COUNT; f++) {
		if (strcasecmp(name, family_names[f]) == 0)
			return (enum ex_family)f;
	}
	return EX_FAMILY_NONE;
}
