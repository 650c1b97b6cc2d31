/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Canned frames for the XDP tests and the benchmark (bench/xdp_bench.c):
 * Ethernet, up to three VLAN tags, IPv4 or IPv6 (optionally a fragment),
 * and by default a TCP SYN to port 25, as a client's first packet would
 * look; or TCP to another port, UDP, or an ICMP echo.
 */
#ifndef TES_TESTS_XDP_PKT_H
#define TES_TESTS_XDP_PKT_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PKT_MAX 256
#define PKT_TPID_8021Q 0x8100
#define PKT_TPID_8021AD 0x88a8

struct pkt_spec {
	const char *src, *dst; /* text addresses, both of one family */
	unsigned nvlan;        /* 0..3 tags, outermost first */
	uint16_t tpid[3];      /* 0: 802.1Q */
	uint16_t frag;         /* IPv4: the whole flags+offset field (host order);
				 * IPv6: the fragment header's offset+flags field */
	bool frag6;            /* IPv6: insert a fragment header */
	uint8_t proto;         /* 0: TCP; PKT_UDP, PKT_ICMP */
	uint16_t dport;        /* TCP or UDP destination port; 0: 25 */
};

#define PKT_UDP 17
#define PKT_ICMP 1 /* ICMPv6 (58) under IPv6 */

static inline void pkt_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline uint16_t pkt_csum(const uint8_t *p, size_t n)
{
	uint32_t s = 0;

	for (size_t i = 0; i + 1 < n; i += 2)
		s += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (n & 1)
		s += (uint32_t)(p[n - 1] << 8);
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* The TCP SYN after the IP header: ports 40000 -> dport, no options. */
static inline size_t pkt_tcp_syn(uint8_t *p, uint16_t dport)
{
	memset(p, 0, 20);
	pkt_put16(p, 40000);
	pkt_put16(p + 2, dport);
	p[4] = 0x12; /* sequence number, any */
	p[12] = 5 << 4;
	p[13] = 0x02; /* SYN */
	pkt_put16(p + 14, 64240);
	return 20;
}

/* Build the frame into buf (PKT_MAX octets); its length, 0 on a bad spec. */
static inline size_t pkt_build(uint8_t *buf, const struct pkt_spec *s)
{
	static const uint8_t dmac[6] = { 0x02, 0, 0, 0, 0, 0x02 };
	static const uint8_t smac[6] = { 0x02, 0, 0, 0, 0, 0x01 };
	bool v6 = strchr(s->src, ':') != NULL;
	uint8_t *p = buf;
	uint8_t l4 = s->proto == PKT_UDP ? 17 : s->proto == PKT_ICMP ? (v6 ? 58 : 1) : 6;
	uint16_t l4len = s->proto ? 8 : 20;
	uint16_t dport = s->dport ? s->dport : 25;

	memset(buf, 0, PKT_MAX);
	if (s->nvlan > 3)
		return 0;
	memcpy(p, dmac, 6);
	memcpy(p + 6, smac, 6);
	p += 12;
	for (unsigned i = 0; i < s->nvlan; i++) {
		pkt_put16(p, s->tpid[i] ? s->tpid[i] : PKT_TPID_8021Q);
		pkt_put16(p + 2, (uint16_t)(100 + i)); /* VLAN id */
		p += 4;
	}
	pkt_put16(p, v6 ? 0x86dd : 0x0800);
	p += 2;
	if (!v6) {
		uint8_t *ip = p;

		ip[0] = 0x45;
		pkt_put16(ip + 2, (uint16_t)(20 + l4len));
		pkt_put16(ip + 4, 0x1234);
		pkt_put16(ip + 6, s->frag);
		ip[8] = 64;
		ip[9] = l4;
		if (inet_pton(AF_INET, s->src, ip + 12) != 1 ||
		    inet_pton(AF_INET, s->dst, ip + 16) != 1)
			return 0;
		pkt_put16(ip + 10, pkt_csum(ip, 20));
		p += 20;
	} else {
		uint8_t *ip6 = p;

		ip6[0] = 0x60;
		pkt_put16(ip6 + 4, (uint16_t)(l4len + (s->frag6 ? 8 : 0)));
		ip6[6] = s->frag6 ? 44 : l4;
		ip6[7] = 64;
		if (inet_pton(AF_INET6, s->src, ip6 + 8) != 1 ||
		    inet_pton(AF_INET6, s->dst, ip6 + 24) != 1)
			return 0;
		p += 40;
		if (s->frag6) {
			p[0] = l4; /* next header */
			pkt_put16(p + 2, s->frag);
			p[7] = 0x77; /* identification */
			p += 8;
		}
	}
	if (s->proto == 0) {
		p += pkt_tcp_syn(p, dport);
	} else {
		memset(p, 0, 8);
		if (s->proto == PKT_UDP) {
			pkt_put16(p, 40000);
			pkt_put16(p + 2, dport);
			pkt_put16(p + 4, 8);
		} else {
			p[0] = v6 ? 128 : 8; /* echo request */
		}
		p += 8;
	}
	return (size_t)(p - buf);
}

#endif
