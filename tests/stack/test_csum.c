/* SPDX-License-Identifier: BSD-3-Clause */
/* The stack's Internet checksum (dataplane/stack/net.c) against the
 * definition, one network-order word at a time, on every length, offset
 * and split a segment can have. */
#include <stdio.h>
#include <stdlib.h>

#include "dataplane/stack/stack_impl.h"

static uint16_t reference(uint32_t sum, const uint8_t *p, size_t n)
{
	uint64_t s = sum;
	size_t i = 0;
	for (; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (i < n)
		s += (uint32_t)p[i] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

static int fails;

static void check(const char *what, uint16_t got, uint16_t want, size_t len, size_t off)
{
	if (got != want && fails++ < 10)
		fprintf(stderr, "FAIL %s: len %zu offset %zu: %04x, want %04x\n", what, len, off,
			got, want);
}

int main(void)
{
	/* RFC 1071 4.1's example: the words sum to ddf2 */
	static const uint8_t rfc[] = { 0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7 };
	check("rfc1071", net_csum_fold(net_csum_add(0, rfc, sizeof(rfc))), (uint16_t)~0xddf2, 8, 0);

	static uint8_t buf[70000];
	uint32_t x = 1;
	for (size_t i = 0; i < sizeof(buf); i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (uint8_t)(x >> 16);
	}
	/* every length to 2 KB at every offset mod 8, with a carried-in sum */
	for (size_t off = 0; off < 8; off++) {
		for (size_t len = 0; len <= 2048; len++) {
			uint32_t in = (uint32_t)(len * 2654435761u) & 0x3ffff;
			check("block", net_csum_fold(net_csum_add(in, buf + off, len)),
			      reference(in, buf + off, len), len, off);
			/* split at an even point, as header then payload */
			size_t cut = (len / 3) & ~(size_t)1;
			uint32_t s = net_csum_add(in, buf + off, cut);
			s = net_csum_add(s, buf + off + cut, len - cut);
			check("split", net_csum_fold(s), reference(in, buf + off, len), len, off);
		}
	}
	/* all ones and all zeros: the sums that fold to ffff and 0 */
	static uint8_t ff[1500], zero[1500];
	memset(ff, 0xff, sizeof(ff));
	for (size_t len = 0; len <= sizeof(ff); len += 7) {
		check("ones", net_csum_fold(net_csum_add(0, ff, len)), reference(0, ff, len), len,
		      0);
		check("zeros", net_csum_fold(net_csum_add(0, zero, len)), reference(0, zero, len),
		      len, 0);
	}
	/* the largest IPv4 datagram */
	check("64k", net_csum_fold(net_csum_add(0, buf, 65535)), reference(0, buf, 65535), 65535,
	      0);
	if (fails) {
		fprintf(stderr, "%d checksum mismatches\n", fails);
		return 1;
	}
	printf("checksums agree with the definition\n");
	return 0;
}
