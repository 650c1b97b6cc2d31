/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Below TCP: Ethernet, ARP, IPv6 neighbour discovery and the neighbour
 * cache, IPv4 and IPv6 validation, ICMP and ICMPv6 echo, checksums and the
 * frame builder for TCP segments.
 */
#include "dataplane/stack/stack_impl.h"

#define ETH_HLEN 14
#define ETH_P_IPV4 0x0800
#define ETH_P_ARP 0x0806
#define ETH_P_IPV6 0x86dd
#define IP_HLEN 20
#define IP6_HLEN 40
/* Extension headers walked before a datagram is given up: a chain of
 * hundreds of tiny headers is a CPU attack, and nothing we serve sends
 * more than a couple. */
#define IP6_EXT_MAX 8
#define ICMP6_ECHO_REQUEST 128
#define ICMP6_ECHO_REPLY 129
#define ND_NS 135
#define ND_NA 136
#define ND_LEN 32 /* NS or NA with one link-layer address option */
#define ARP_LEN 28
#define NEIGH_WAYS 4
#define NEIGH_PROBES 3

static const uint8_t bcast_mac[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

/* --- Checksums (RFC 1071) --- */

/* The sum of 16-bit words is the same whatever the byte order, up to a
 * swap of its two octets at the end (RFC 1071 2.(B)), so the data is added
 * as native 32-bit words into 64 bits: a 2 KB payload is 512 additions
 * instead of 1024 byte-pair assemblies.  Returns sum plus the block's
 * network-order word sum, folded to 16 bits; an odd length only at the end
 * of the data, as before. */
uint32_t net_csum_add(uint32_t sum, const uint8_t *p, size_t n)
{
	uint64_t acc = 0;
	uint32_t w32;
	uint16_t w16;

	for (; n >= 16; p += 16, n -= 16) {
		uint64_t a, b;
		memcpy(&a, p, 8);
		memcpy(&b, p + 8, 8);
		acc += (a & 0xffffffffu) + (a >> 32) + (b & 0xffffffffu) + (b >> 32);
	}
	for (; n >= 4; p += 4, n -= 4) {
		memcpy(&w32, p, 4);
		acc += w32;
	}
	if (n >= 2) {
		memcpy(&w16, p, 2);
		acc += w16;
		p += 2;
		n -= 2;
	}
	if (n) {
		/* a last octet is the high half of a network-order word */
		uint8_t pad[2] = { p[0], 0 };
		memcpy(&w16, pad, 2);
		acc += w16;
	}
	while (acc >> 16)
		acc = (acc & 0xffff) + (acc >> 16);
	w16 = (uint16_t)acc;
	uint8_t b2[2];
	memcpy(b2, &w16, 2); /* back to network order, on any host */
	return sum + (uint32_t)(b2[0] << 8 | b2[1]);
}

uint16_t net_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint32_t pseudo_sum4(const uint8_t *src, const uint8_t *dst, uint8_t proto, uint32_t len)
{
	uint32_t sum = net_csum_add(0, src, 4);
	sum = net_csum_add(sum, dst, 4);
	return sum + proto + len;
}

static uint32_t pseudo_sum6(const uint8_t *src, const uint8_t *dst, uint8_t nh, uint32_t len)
{
	uint32_t sum = net_csum_add(0, src, 16);
	sum = net_csum_add(sum, dst, 16);
	return sum + (len >> 16) + (len & 0xffff) + nh;
}

/* --- Frame output --- */

static uint8_t *frame_alloc(struct stack *st, void **pkt)
{
	uint8_t *f = st->io.tx_alloc(st->io_ctx, st->frame_room, pkt);
	if (!f)
		st->stats.tx_nobuf++;
	return f;
}

static void frame_send(struct stack *st, void *pkt, uint32_t len, const struct stack_txinfo *ti)
{
	st->stats.tx_frames++;
	st->stats.tx_bytes += len;
	st->io.tx_send(st->io_ctx, pkt, len, ti);
}

static void eth_fill(struct stack *st, uint8_t *f, const uint8_t dmac[6], uint16_t type)
{
	memcpy(f, dmac, 6);
	memcpy(f + 6, st->cfg.mac, 6);
	put16(f + 12, type);
}

static void ip4_fill(uint8_t *ip, const uint8_t *src, const uint8_t *dst, uint8_t proto,
		     uint32_t payload, bool offload)
{
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, (uint16_t)(IP_HLEN + payload));
	/* Every datagram we send is atomic (DF, no fragments: RFC 6864), so
	 * its ID identifies nothing and is 0.  A counter here, one per stack,
	 * would tell anyone who sees two of our packets how many we sent in
	 * between to everyone else: the side channel of blind in-window
	 * attacks (CVE-2016-5696 and the IP ID attacks before it). */
	put16(ip + 4, 0);
	put16(ip + 6, 0x4000); /* DF: the MSS keeps segments within the MTU */
	ip[8] = 64;
	ip[9] = proto;
	put16(ip + 10, 0);
	memcpy(ip + 12, src, 4);
	memcpy(ip + 16, dst, 4);
	if (!offload)
		put16(ip + 10, net_csum_fold(net_csum_add(0, ip, IP_HLEN)));
}

/* Flow label 0 (RFC 6437 allows it): a label derived from anything shared
 * would be one more number an observer could correlate. */
static void ip6_fill(uint8_t *ip, const uint8_t *src, const uint8_t *dst, uint8_t nh,
		     uint32_t payload, uint8_t hlim)
{
	put32(ip, 0x60000000u);
	put16(ip + 4, (uint16_t)payload);
	ip[6] = nh;
	ip[7] = hlim;
	memcpy(ip + 8, src, 16);
	memcpy(ip + 24, dst, 16);
}

uint8_t *net_tcp_begin(struct stack *st, uint8_t family, void **pkt, uint8_t **frame)
{
	uint8_t *f = frame_alloc(st, pkt);
	if (!f)
		return NULL;
	*frame = f;
	return f + ETH_HLEN + (family == STACK_AF_INET6 ? IP6_HLEN : IP_HLEN);
}

void net_tcp_send(struct stack *st, void *pkt, uint8_t *f, const struct stack_tuple *t,
		  const uint8_t dmac[6], uint32_t tcp_len)
{
	bool v6 = t->laddr.family == STACK_AF_INET6;
	uint32_t l3 = v6 ? IP6_HLEN : IP_HLEN;
	uint8_t *ip = f + ETH_HLEN, *tcp = ip + l3;
	uint32_t ps;
	put16(tcp + 16, 0);
	if (v6) {
		eth_fill(st, f, dmac, ETH_P_IPV6);
		ip6_fill(ip, t->laddr.a, t->raddr.a, 6, tcp_len, 64);
		ps = pseudo_sum6(t->laddr.a, t->raddr.a, 6, tcp_len);
	} else {
		eth_fill(st, f, dmac, ETH_P_IPV4);
		ip4_fill(ip, t->laddr.a, t->raddr.a, 6, tcp_len, st->cfg.tx_csum_offload);
		ps = pseudo_sum4(t->laddr.a, t->raddr.a, 6, tcp_len);
	}
	if (st->cfg.tx_csum_offload) {
		/* The NIC completes it from the pseudo-header sum. */
		put16(tcp + 16, (uint16_t)~net_csum_fold(ps));
	} else {
		put16(tcp + 16, net_csum_fold(net_csum_add(ps, tcp, tcp_len)));
	}
	struct stack_txinfo ti = {
		.l2_len = ETH_HLEN,
		.l3_len = (uint8_t)l3,
		.l4_len = (uint8_t)((tcp[12] >> 4) * 4),
		.ip_csum_offload = st->cfg.tx_csum_offload && !v6,
		.l4_csum_offload = st->cfg.tx_csum_offload,
		.is_tcp = 1,
		.is_ipv6 = v6,
	};
	st->stats.tcp_tx++;
	frame_send(st, pkt, ETH_HLEN + l3 + tcp_len, &ti);
}

/* --- ARP and the neighbour cache --- */

static void arp_send(struct stack *st, uint16_t op, const uint8_t *tmac_eth, const uint8_t *sip,
		     const uint8_t *tmac, const uint8_t *tip)
{
	void *pkt;
	uint8_t *f = frame_alloc(st, &pkt);
	if (!f)
		return;
	eth_fill(st, f, tmac_eth, ETH_P_ARP);
	uint8_t *a = f + ETH_HLEN;
	put16(a, 1);
	put16(a + 2, ETH_P_IPV4);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, st->cfg.mac, 6);
	memcpy(a + 14, sip, 4);
	memcpy(a + 18, tmac, 6);
	memcpy(a + 24, tip, 4);
	/* Pad to the Ethernet minimum so no NIC sends stale bytes. */
	memset(a + ARP_LEN, 0, 60 - ETH_HLEN - ARP_LEN);
	struct stack_txinfo ti = { .l2_len = ETH_HLEN };
	frame_send(st, pkt, 60, &ti);
}

/* --- Neighbour discovery output (RFC 4861) --- */

static const uint8_t unspec6[16];
static const uint8_t allnodes6[16] = { 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 };

/* The solicited-node multicast group of a (ff02::1:ffXX:XXXX). */
static void solnode(uint8_t out[16], const uint8_t *a)
{
	static const uint8_t pfx[13] = { 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff };
	memcpy(out, pfx, 13);
	memcpy(out + 13, a + 13, 3);
}

/* The Ethernet group of an IPv6 multicast address (RFC 2464 7). */
static void mcast_mac(uint8_t mac[6], const uint8_t *group)
{
	mac[0] = 0x33;
	mac[1] = 0x33;
	memcpy(mac + 2, group + 12, 4);
}

static void icmp6_send(struct stack *st, void *pkt, uint8_t *f, const uint8_t dmac[6],
		       const uint8_t *src, const uint8_t *dst, uint32_t len, uint8_t hlim)
{
	uint8_t *ip = f + ETH_HLEN, *ic = ip + IP6_HLEN;
	eth_fill(st, f, dmac, ETH_P_IPV6);
	ip6_fill(ip, src, dst, 58, len, hlim);
	put16(ic + 2, 0);
	put16(ic + 2, net_csum_fold(net_csum_add(pseudo_sum6(src, dst, 58, len), ic, len)));
	struct stack_txinfo ti = { .l2_len = ETH_HLEN, .l3_len = IP6_HLEN, .is_ipv6 = 1 };
	frame_send(st, pkt, ETH_HLEN + IP6_HLEN + len, &ti);
}

/* A neighbour solicitation for target: multicast to its solicited-node
 * group, or unicast to umac (a confirmation of a known entry).  src NULL:
 * from the unspecified address and without our link-layer address, as
 * duplicate address detection asks (RFC 4862 5.4.2). */
static void nd_send_ns(struct stack *st, const uint8_t *src, const uint8_t *target,
		       const uint8_t *umac)
{
	void *pkt;
	uint8_t *f = frame_alloc(st, &pkt);
	if (!f)
		return;
	uint8_t dst[16], dmac[6];
	if (umac) {
		memcpy(dst, target, 16);
		memcpy(dmac, umac, 6);
	} else {
		solnode(dst, target);
		mcast_mac(dmac, dst);
	}
	uint8_t *ic = f + ETH_HLEN + IP6_HLEN;
	uint32_t len = 24;
	ic[0] = ND_NS;
	ic[1] = 0;
	put32(ic + 4, 0);
	memcpy(ic + 8, target, 16);
	if (src) {
		ic[24] = 1; /* source link-layer address */
		ic[25] = 1;
		memcpy(ic + 26, st->cfg.mac, 6);
		len = ND_LEN;
	}
	st->stats.nd_ns_tx++;
	icmp6_send(st, pkt, f, dmac, src ? src : unspec6, dst, len, 255);
}

/* A neighbour advertisement of target (ours), solicited (to the asker) or
 * not (to all nodes, answering someone's DAD probe).  Always with our MAC
 * and the override flag: the address is ours alone. */
static void nd_send_na(struct stack *st, const uint8_t *target, const uint8_t *dst,
		       const uint8_t *dmac, bool solicited)
{
	void *pkt;
	uint8_t *f = frame_alloc(st, &pkt);
	if (!f)
		return;
	uint8_t *ic = f + ETH_HLEN + IP6_HLEN;
	ic[0] = ND_NA;
	ic[1] = 0;
	put32(ic + 4, (solicited ? 0x40000000u : 0) | 0x20000000u);
	memcpy(ic + 8, target, 16);
	ic[24] = 2; /* target link-layer address */
	ic[25] = 1;
	memcpy(ic + 26, st->cfg.mac, 6);
	st->stats.nd_na_tx++;
	icmp6_send(st, pkt, f, dmac, target, dst, ND_LEN, 255);
}

/* Ask for hop (multicast, or unicast to umac) from src, by ARP or ND. */
static void neigh_solicit(struct stack *st, const struct stack_addr *src,
			  const struct stack_addr *hop, const uint8_t *umac)
{
	if (hop->family == STACK_AF_INET6) {
		nd_send_ns(st, src->a, hop->a, umac);
		return;
	}
	if (umac)
		arp_send(st, 1, umac, src->a, umac, hop->a);
	else
		arp_send(st, 1, bcast_mac, src->a, (const uint8_t[6]){ 0 }, hop->a);
	st->stats.arp_requests_tx++;
}

static struct neigh *neigh_set(struct stack *st, const struct stack_addr *a)
{
	uint32_t nsets = (st->neigh_mask + 1) / NEIGH_WAYS;
	/* IPv4: its 4 octets, one SipHash block instead of three */
	uint32_t set =
		(uint32_t)(a->family == STACK_AF_INET ? siphash13(&st->hkey, a->a, 4)
						      : siphash13(&st->hkey, a, sizeof(*a))) &
		(nsets - 1);
	return &st->neigh[set * NEIGH_WAYS];
}

static struct neigh *neigh_find(struct stack *st, const struct stack_addr *a)
{
	struct neigh *s = neigh_set(st, a);
	for (int i = 0; i < NEIGH_WAYS; i++)
		if (s[i].state != NEIGH_FREE && stack_addr_eq(&s[i].addr, a))
			return &s[i];
	return NULL;
}

static void neigh_free_entry(struct stack *st, struct neigh *n)
{
	if (n->state == NEIGH_INCOMPLETE)
		st->neigh_incomplete--;
	while (!dl_empty(&n->waiters))
		dl_del(n->waiters.next);
	n->state = NEIGH_FREE;
}

/* A way in the address's set: a free one, else the least recently updated
 * resolved one.  Static and pending entries are never evicted. */
static struct neigh *neigh_slot(struct stack *st, const struct stack_addr *a)
{
	struct neigh *s = neigh_set(st, a), *victim = NULL;
	for (int i = 0; i < NEIGH_WAYS; i++) {
		if (s[i].state == NEIGH_FREE)
			return &s[i];
		if (s[i].state == NEIGH_VALID && (!victim || s[i].updated < victim->updated))
			victim = &s[i];
	}
	if (victim) {
		st->stats.neigh_evicted++;
		neigh_free_entry(st, victim);
	}
	return victim;
}

void net_neigh_forget_waiter(struct tcp_conn *c)
{
	if (dl_linked(&c->arp_node))
		dl_del(&c->arp_node);
}

/* An address resolves (an answer to our request) or a static entry is
 * set: the MAC is stored and the connections waiting for it send their
 * SYN. */
static void neigh_set_mac(struct stack *st, struct neigh *n, const uint8_t *mac, uint8_t state)
{
	if (n->state == NEIGH_INCOMPLETE)
		st->neigh_incomplete--;
	memcpy(n->mac, mac, 6);
	n->state = state;
	n->updated = st->now;
	n->probes = 0;
	n->pending = false;
	while (!dl_empty(&n->waiters)) {
		struct tcp_conn *c = dl_entry(n->waiters.next, struct tcp_conn, arp_node);
		dl_del(&c->arp_node);
		memcpy(c->peer_mac, mac, 6);
		if (c->state == TCP_SYN_SENT)
			tcp_send_syn(st, c, false);
	}
}

static struct neigh *neigh_new(struct stack *st, const struct stack_addr *a)
{
	struct neigh *n = neigh_slot(st, a);
	if (!n)
		return NULL;
	memset(n, 0, offsetof(struct neigh, waiters));
	dl_init(&n->waiters);
	n->addr = *a;
	st->stats.neigh_added++;
	return n;
}

int stack_neigh_add(struct stack *st, const struct stack_addr *addr, const uint8_t mac[6])
{
	if (addr->family != STACK_AF_INET && addr->family != STACK_AF_INET6)
		return -1;
	struct neigh *n = neigh_find(st, addr);
	if (!n && !(n = neigh_new(st, addr)))
		return -1;
	neigh_set_mac(st, n, mac, NEIGH_STATIC);
	return 0;
}

int stack_neigh_lookup(struct stack *st, const struct stack_addr *addr, uint8_t mac[6])
{
	if (addr->family != STACK_AF_INET && addr->family != STACK_AF_INET6)
		return -1;
	struct neigh *n = neigh_find(st, addr);
	if (!n || (n->state != NEIGH_VALID && n->state != NEIGH_STATIC))
		return -1;
	memcpy(mac, n->mac, 6);
	return 0;
}

static bool on_link(const struct stack *st, const struct stack_addr *dst)
{
	for (unsigned i = 0; i < st->cfg.naddrs; i++) {
		const struct stack_ifaddr *ia = &st->cfg.addrs[i];
		if (ia->addr.family != dst->family)
			continue;
		if (dst->family == STACK_AF_INET6) {
			uint32_t plen = ia->prefix_len > 128 ? 128 : ia->prefix_len;
			uint32_t whole = plen / 8, bits = plen % 8;
			if (memcmp(ia->addr.a, dst->a, whole) != 0)
				continue;
			if (bits &&
			    ((ia->addr.a[whole] ^ dst->a[whole]) & (0xff00u >> bits) & 0xff))
				continue;
			return true;
		}
		uint32_t plen = ia->prefix_len > 32 ? 32 : ia->prefix_len;
		uint32_t mask = plen ? ~0u << (32 - plen) : 0;
		if ((get32(ia->addr.a) & mask) == (get32(dst->a) & mask))
			return true;
	}
	return false;
}

int net_neigh_resolve(struct stack *st, const struct stack_addr *src, const struct stack_addr *dst,
		      uint8_t mac[6], struct tcp_conn *waiter)
{
	const struct stack_addr *hop = dst;
	const struct stack_addr *gw =
		dst->family == STACK_AF_INET6 ? &st->cfg.gateway6 : &st->cfg.gateway;
	if (!on_link(st, dst) && gw->family == dst->family)
		hop = gw;
	struct neigh *n = neigh_find(st, hop);
	if (n && n->state == NEIGH_VALID && st->now - n->updated > st->cfg.neigh_ttl &&
	    st->now - n->asked >= st->cfg.neigh_retry && n->probes >= NEIGH_PROBES) {
		/* The pinned MAC stopped answering its confirmations: the host
		 * is gone or has a new NIC.  Only now is the address asked
		 * for afresh, by broadcast. */
		st->stats.neigh_unresolved++;
		neigh_free_entry(st, n);
		n = NULL;
	}
	if (n && n->state != NEIGH_INCOMPLETE) {
		memcpy(mac, n->mac, 6);
		if (n->state == NEIGH_VALID && st->now - n->updated > st->cfg.neigh_ttl &&
		    st->now - n->asked >= st->cfg.neigh_retry) {
			/* Stale: keep using it while asking the same MAC to
			 * confirm (unicast, as RFC 1122 2.3.2.1 suggests).  The
			 * answer may confirm the entry, never change it. */
			n->asked = st->now;
			n->probes++;
			n->pending = true;
			neigh_solicit(st, src, hop, n->mac);
		}
		return 0;
	}
	if (!n) {
		if (st->neigh_incomplete >= st->cfg.neigh_incomplete_max ||
		    !(n = neigh_new(st, hop))) {
			st->stats.neigh_incomplete_full++;
			return -1;
		}
		n->state = NEIGH_INCOMPLETE;
		n->asked = st->now;
		n->pending = true;
		st->neigh_incomplete++;
		neigh_solicit(st, src, hop, NULL);
	}
	if (waiter) {
		net_neigh_forget_waiter(waiter);
		dl_add_tail(&n->waiters, &waiter->arp_node);
	}
	return -1;
}

/* Unanswered resolutions are asked again every neigh_retry and given up
 * after a few probes, so incomplete entries never pile up. */
void net_neigh_timers(struct stack *st)
{
	if (st->neigh_incomplete == 0)
		return;
	for (uint32_t i = 0; i <= st->neigh_mask; i++) {
		struct neigh *n = &st->neigh[i];
		if (n->state != NEIGH_INCOMPLETE || st->now - n->asked < st->cfg.neigh_retry)
			continue;
		if (++n->probes >= NEIGH_PROBES) {
			st->stats.neigh_unresolved++;
			neigh_free_entry(st, n);
			continue;
		}
		n->asked = st->now;
		/* The source address: any usable one of ours of the family
		 * will do. */
		const struct stack_addr *src = NULL;
		for (unsigned k = 0; k < st->cfg.naddrs && !src; k++)
			if (st->cfg.addrs[k].addr.family == n->addr.family &&
			    stack_addr_usable(st, k))
				src = &st->cfg.addrs[k].addr;
		if (src)
			neigh_solicit(st, src, &n->addr, NULL);
	}
}

void net_dad_timers(struct stack *st)
{
	if (!st->dad_pending)
		return;
	bool pending = false;
	for (unsigned i = 0; i < st->cfg.naddrs; i++) {
		if (st->addr_state[i] != ADDR_TENTATIVE)
			continue;
		bool due = st->dad_sent[i] == 0 || st->now - st->dad_at[i] >= st->cfg.neigh_retry;
		if (due && st->dad_sent[i] >= st->cfg.dad_transmits) {
			/* No one answered for the address: it is ours. */
			st->addr_state[i] = ADDR_USABLE;
			continue;
		}
		pending = true;
		if (!due)
			continue;
		st->dad_sent[i]++;
		st->dad_at[i] = st->now;
		nd_send_ns(st, NULL, st->cfg.addrs[i].addr.a, NULL);
	}
	st->dad_pending = pending;
}

/* What ARP may change, against a host on the same segment that sends
 * what it likes (gratuitous announcements, unsolicited replies, requests
 * naming someone else's address as their sender):
 * - requests for our addresses are answered to the asker's MAC from the
 *   request itself, and teach the cache nothing;
 * - a reply is learned only while a request of ours for that address is
 *   unanswered, and only the first one;
 * - a learned entry is pinned: later replies may confirm it (same MAC),
 *   never move it; it is asked for afresh only after it stopped answering
 *   (net_neigh_resolve), and static entries (stack_neigh_add) never change.
 * So a poisoner has to win the race against the real host's answer to a
 * request it saw, once per entry, not at any moment it chooses.  Inbound
 * connections do not use the cache at all (the SYN's source MAC). */
static void arp_input(struct stack *st, const uint8_t *smac_eth, const uint8_t *a, uint32_t len)
{
	st->stats.arp_rx++;
	if (len < ARP_LEN || get16(a) != 1 || get16(a + 2) != ETH_P_IPV4 || a[4] != 6 ||
	    a[5] != 4) {
		st->stats.arp_bad++;
		return;
	}
	uint16_t op = get16(a + 6);
	const uint8_t *sha = a + 8, *spa = a + 14, *tpa = a + 24;
	(void)smac_eth;
	if ((op != 1 && op != 2) || (sha[0] & 1)) {
		st->stats.arp_bad++;
		return;
	}
	const struct stack_addr *mine = stack_local_addr_match(st, tpa);
	if (op == 1) {
		if (!mine) {
			/* for someone else, or an announcement */
			st->stats.arp_ignored++;
			return;
		}
		st->stats.arp_requests_rx++;
		arp_send(st, 2, sha, mine->a, sha, spa);
		st->stats.arp_replies_tx++;
		return;
	}
	if (mine)
		st->stats.arp_replies_rx++;
	struct stack_addr sender;
	stack_addr_ipv4(&sender, get32(spa));
	struct neigh *n = mine && get32(spa) != 0 ? neigh_find(st, &sender) : NULL;
	if (!n || !n->pending) {
		st->stats.arp_ignored++;
		return;
	}
	if (n->state == NEIGH_INCOMPLETE) {
		neigh_set_mac(st, n, sha, NEIGH_VALID);
		return;
	}
	if (n->state == NEIGH_VALID && memcmp(n->mac, sha, 6) == 0) {
		n->updated = st->now;
		n->probes = 0;
		n->pending = false;
		return;
	}
	st->stats.arp_ignored++;
}

/* --- IPv4 and ICMP --- */

static bool bad_source(const struct stack *st, const uint8_t *s)
{
	uint32_t a = get32(s);
	if (a == 0 || a == 0xffffffffu || (a >> 28) >= 0xe || (a >> 24) == 127)
		return true;
	return stack_local_addr_match(st, s) != NULL;
}

static void icmp_input(struct stack *st, const uint8_t *smac, const uint8_t *ip, uint32_t hlen,
		       const uint8_t *icmp, uint32_t len)
{
	if (len < 8) {
		st->stats.icmp_other++;
		return;
	}
	/* NICs do not verify ICMP: always in software. */
	if (net_csum_fold(net_csum_add(0, icmp, len)) != 0) {
		st->stats.icmp_bad_csum++;
		st->stats.checksum_errors++;
		return;
	}
	if (icmp[0] != 8 || icmp[1] != 0) {
		st->stats.icmp_other++;
		return;
	}
	st->stats.icmp_echo_rx++;
	if (ETH_HLEN + IP_HLEN + len > st->frame_room)
		return;
	void *pkt;
	uint8_t *f = frame_alloc(st, &pkt);
	if (!f)
		return;
	(void)hlen;
	eth_fill(st, f, smac, ETH_P_IPV4);
	uint8_t *oip = f + ETH_HLEN, *oicmp = oip + IP_HLEN;
	/* DF and ID 0 as for TCP: the reply is no larger than the request,
	 * which came in one frame. */
	ip4_fill(oip, ip + 16, ip + 12, 1, len, false);
	memcpy(oicmp, icmp, len);
	oicmp[0] = 0;
	put16(oicmp + 2, 0);
	put16(oicmp + 2, net_csum_fold(net_csum_add(0, oicmp, len)));
	struct stack_txinfo ti = { .l2_len = ETH_HLEN, .l3_len = IP_HLEN };
	st->stats.icmp_echo_tx++;
	uint32_t flen = ETH_HLEN + IP_HLEN + len;
	if (flen < 60) {
		memset(f + flen, 0, 60 - flen);
		flen = 60;
	}
	frame_send(st, pkt, flen, &ti);
}

static void ip4_input(struct stack *st, const uint8_t *smac, const uint8_t *ip, uint32_t len)
{
	st->stats.ip_rx++;
	if (len < IP_HLEN) {
		st->stats.ip_bad_len++;
		return;
	}
	if ((ip[0] >> 4) != 4) {
		st->stats.ip_bad_version++;
		return;
	}
	uint32_t hlen = (ip[0] & 0xfu) * 4u;
	if (hlen < IP_HLEN || hlen > len) {
		st->stats.ip_bad_hlen++;
		return;
	}
	uint32_t tot = get16(ip + 2);
	if (tot < hlen || tot > len) {
		st->stats.ip_bad_len++;
		return;
	}
	if (!st->cfg.rx_csum_offload && net_csum_fold(net_csum_add(0, ip, hlen)) != 0) {
		st->stats.ip_bad_csum++;
		st->stats.checksum_errors++;
		return;
	}
	const struct stack_addr *mine = stack_local_addr_match(st, ip + 16);
	if (!mine) {
		st->stats.ip_not_ours++;
		return;
	}
	uint16_t frag = get16(ip + 6);
	if ((frag & 0x2000) || (frag & 0x1fff)) {
		/* No reassembly: nothing we serve needs fragments, and holding
		 * them is a memory attack. */
		st->stats.ip_frag_dropped++;
		return;
	}
	if (bad_source(st, ip + 12)) {
		st->stats.ip_bad_src++;
		return;
	}
	if (hlen > IP_HLEN)
		st->stats.ip_options++;
	const uint8_t *l4 = ip + hlen;
	uint32_t l4len = tot - hlen;
	if (ip[9] == 1) {
		icmp_input(st, smac, ip, hlen, l4, l4len);
		return;
	}
	if (ip[9] != 6) {
		st->stats.ip_unknown_proto++;
		return;
	}
	if (l4len < 20) {
		st->stats.tcp_bad_hdr++;
		return;
	}
	if (!st->cfg.rx_csum_offload &&
	    net_csum_fold(net_csum_add(pseudo_sum4(ip + 12, ip + 16, 6, l4len), l4, l4len)) != 0) {
		st->stats.tcp_bad_csum++;
		st->stats.checksum_errors++;
		return;
	}
	struct stack_addr src;
	stack_addr_ipv4(&src, get32(ip + 12));
	tcp_input(st, smac, &src, mine, l4, l4len);
}

/* --- IPv6, ICMPv6 and neighbour discovery input --- */

/* Where an IPv6 datagram was addressed. */
enum { DST6_UNICAST, DST6_TENTATIVE, DST6_MULTICAST };

/* Two unaligned 64-bit loads instead of memcmp calls: these run on every
 * IPv6 datagram. */
static inline uint64_t ld64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline bool eq6(const uint8_t *a, const uint8_t *b)
{
	return ((ld64(a) ^ ld64(b)) | (ld64(a + 8) ^ ld64(b + 8))) == 0;
}

static bool is_unspec6(const uint8_t *a)
{
	return (ld64(a) | ld64(a + 8)) == 0;
}

/* Never a source we could answer: multicast, loopback, v4-mapped, or one
 * of our own addresses (tentative ones too).  The unspecified address is
 * the caller's business (only a DAD probe may come from it). */
static bool bad_source6(const struct stack *st, const uint8_t *s)
{
	if (s[0] == 0xff)
		return true;
	/* ::1 and ::ffff:0:0/96 both start with 64 zero bits. */
	if (ld64(s) == 0 && ((get32(s + 8) == 0 && get32(s + 12) == 1) || get32(s + 8) == 0xffff))
		return true;
	for (unsigned i = 0; i < st->cfg.naddrs; i++)
		if (st->cfg.addrs[i].addr.family == STACK_AF_INET6 &&
		    eq6(st->cfg.addrs[i].addr.a, s))
			return true;
	return false;
}

/* The options of an NS or NA (RFC 4861 4.6): every one of non-zero
 * length and within the message, else the message is invalid.  *lla: the
 * link-layer address option of kind want, or NULL. */
static bool nd_options(const uint8_t *o, uint32_t len, uint8_t want, const uint8_t **lla)
{
	*lla = NULL;
	while (len) {
		if (len < 8 || o[1] == 0 || (uint32_t)o[1] * 8 > len)
			return false;
		if (o[0] == want && o[1] == 1)
			*lla = o + 2;
		len -= (uint32_t)o[1] * 8;
		o += (uint32_t)o[1] * 8;
	}
	return true;
}

/* Someone else holds (or is claiming) an address we are testing: it is
 * never used (RFC 4862 5.4.5). */
static void dad_duplicate(struct stack *st, int i)
{
	if (st->addr_state[i] == ADDR_TENTATIVE) {
		st->addr_state[i] = ADDR_DUPLICATE;
		st->stats.nd_dad_failed++;
	}
}

/* Solicitations: answered for our usable addresses (to the asker, or to
 * all nodes for a DAD probe), learning nothing: the asker's link-layer
 * address option is used for the answer only, not cached, as for ARP
 * requests (the cache holds answers to our own questions only). */
static void nd_ns_input(struct stack *st, const uint8_t *smac, const uint8_t *ip, int dkind,
			const uint8_t *ic, uint32_t len)
{
	const uint8_t *src = ip + 8, *target = ic + 8, *lla;
	if (len < 24 || target[0] == 0xff || !nd_options(ic + 24, len - 24, 1, &lla)) {
		st->stats.icmp6_bad++;
		return;
	}
	bool dad = is_unspec6(src);
	/* A DAD probe goes to the solicited-node group and carries no
	 * link-layer address (RFC 4861 7.1.1). */
	if (dad && (dkind != DST6_MULTICAST || lla)) {
		st->stats.icmp6_bad++;
		return;
	}
	int i = stack_local_addr_index6(st, target);
	if (i < 0) {
		st->stats.nd_ignored++;
		return;
	}
	if (st->addr_state[i] == ADDR_TENTATIVE) {
		/* Another node probing the same address: neither may have it
		 * (RFC 4862 5.4.3).  From a unicast source it is just someone
		 * resolving it early: ignored. */
		if (dad)
			dad_duplicate(st, i);
		else
			st->stats.nd_ignored++;
		return;
	}
	if (st->addr_state[i] != ADDR_USABLE) {
		st->stats.nd_ignored++;
		return;
	}
	st->stats.nd_ns_rx++;
	if (dad) {
		uint8_t m[6];
		mcast_mac(m, allnodes6);
		nd_send_na(st, target, allnodes6, m, false);
		return;
	}
	nd_send_na(st, target, src, lla ? lla : smac, true);
}

/* Advertisements: learned only while a solicitation of ours for the
 * target is unanswered, and only a solicited one (the S flag); a learned
 * entry is pinned exactly as an ARP entry is (see arp_input). */
static void nd_na_input(struct stack *st, const uint8_t *ip, int dkind, const uint8_t *ic,
			uint32_t len)
{
	const uint8_t *target = ic + 8, *lla;
	uint32_t fl = len >= 8 ? get32(ic + 4) : 0;
	bool solicited = (fl & 0x40000000u) != 0;
	/* RFC 4861 7.1.2: a solicited advertisement is never multicast. */
	if (len < 24 || target[0] == 0xff || (solicited && dkind == DST6_MULTICAST) ||
	    !nd_options(ic + 24, len - 24, 2, &lla)) {
		st->stats.icmp6_bad++;
		return;
	}
	(void)ip;
	int i = stack_local_addr_index6(st, target);
	if (i >= 0) {
		/* Someone answers for an address of ours: while we test it,
		 * it is theirs; once we hold it, it is ignored (and counted). */
		if (st->addr_state[i] == ADDR_TENTATIVE)
			dad_duplicate(st, i);
		else
			st->stats.nd_ignored++;
		return;
	}
	struct stack_addr t;
	stack_addr_ipv6(&t, target);
	struct neigh *n = neigh_find(st, &t);
	if (!n || !n->pending || !solicited) {
		st->stats.nd_ignored++;
		return;
	}
	if (n->state == NEIGH_INCOMPLETE) {
		if (!lla) {
			/* RFC 4861 7.2.5: nothing to learn from. */
			st->stats.nd_ignored++;
			return;
		}
		st->stats.nd_na_rx++;
		neigh_set_mac(st, n, lla, NEIGH_VALID);
		return;
	}
	if (n->state == NEIGH_VALID && (!lla || memcmp(n->mac, lla, 6) == 0)) {
		st->stats.nd_na_rx++;
		n->updated = st->now;
		n->probes = 0;
		n->pending = false;
		return;
	}
	st->stats.nd_ignored++;
}

static void icmp6_echo(struct stack *st, const uint8_t *smac, const uint8_t *ip, const uint8_t *ic,
		       uint32_t len)
{
	st->stats.icmp6_echo_rx++;
	if (len < 8 || ETH_HLEN + IP6_HLEN + len > st->frame_room)
		return;
	void *pkt;
	uint8_t *f = frame_alloc(st, &pkt);
	if (!f)
		return;
	uint8_t *oic = f + ETH_HLEN + IP6_HLEN;
	memcpy(oic, ic, len);
	oic[0] = ICMP6_ECHO_REPLY;
	st->stats.icmp6_echo_tx++;
	icmp6_send(st, pkt, f, smac, ip + 24, ip + 8, len, 64);
}

static void icmp6_input(struct stack *st, const uint8_t *smac, const uint8_t *ip, int dkind,
			const uint8_t *ic, uint32_t len)
{
	st->stats.icmp6_rx++;
	/* Always in software: NICs do not verify ICMPv6 either. */
	if (len < 8 ||
	    net_csum_fold(net_csum_add(pseudo_sum6(ip + 8, ip + 24, 58, len), ic, len)) != 0) {
		st->stats.icmp6_bad++;
		if (len >= 8)
			st->stats.checksum_errors++;
		return;
	}
	uint8_t type = ic[0];
	if (type == ND_NS || type == ND_NA) {
		/* RFC 4861 7.1: hop limit 255 proves the sender is on the
		 * link (no router decremented it); code 0. */
		if (ip[7] != 255 || ic[1] != 0) {
			st->stats.icmp6_bad++;
			return;
		}
		if (type == ND_NS)
			nd_ns_input(st, smac, ip, dkind, ic, len);
		else
			nd_na_input(st, ip, dkind, ic, len);
		return;
	}
	if (is_unspec6(ip + 8)) {
		st->stats.ip6_bad_src++;
		return;
	}
	if (type == ICMP6_ECHO_REQUEST && ic[1] == 0 && dkind == DST6_UNICAST) {
		/* Echo to a multicast group is not answered: one request
		 * must not draw a reply from every host. */
		icmp6_echo(st, smac, ip, ic, len);
		return;
	}
	/* Router advertisements, redirects and errors are not acted on:
	 * the next hop is configured, the MSS keeps segments within the
	 * MTU. */
	st->stats.icmp6_other++;
}

/* Header validation (RFC 8200): version, payload length against the frame
 * (Ethernet padding trimmed), addresses, then the extension header chain,
 * walked at most IP6_EXT_MAX deep, each within the payload; hop-by-hop
 * only first; options whose type says "discard if unknown" discarded; a
 * routing header with segments left (we forward nothing) and any fragment
 * dropped (no reassembly, as for IPv4). */
static void ip6_input(struct stack *st, const uint8_t *f, const uint8_t *ip, uint32_t len)
{
	const uint8_t *smac = f + 6;
	st->stats.ip6_rx++;
	if (len < IP6_HLEN || (ip[0] >> 4) != 6) {
		st->stats.ip6_bad_hdr++;
		return;
	}
	uint32_t plen = get16(ip + 4);
	if (plen > len - IP6_HLEN) {
		st->stats.ip6_bad_hdr++;
		return;
	}
	const uint8_t *src = ip + 8, *dst = ip + 24;
	int dkind;
	const struct stack_addr *mine = NULL;
	if (dst[0] == 0xff) {
		/* Only all-nodes and the solicited-node groups of our
		 * addresses, and only on their Ethernet group. */
		uint8_t m[6];
		mcast_mac(m, dst);
		bool ok = memcmp(f, m, 6) == 0 && memcmp(dst, allnodes6, 16) == 0;
		for (unsigned i = 0; i < st->cfg.naddrs && !ok; i++) {
			uint8_t g[16];
			if (st->cfg.addrs[i].addr.family != STACK_AF_INET6)
				continue;
			solnode(g, st->cfg.addrs[i].addr.a);
			ok = memcmp(dst, g, 16) == 0 && memcmp(f, m, 6) == 0;
		}
		if (!ok) {
			st->stats.ip6_not_ours++;
			return;
		}
		dkind = DST6_MULTICAST;
	} else {
		if (f[0] & 1) {
			/* Unicast datagram in a group frame: not for a host. */
			st->stats.eth_not_ours++;
			return;
		}
		int i = -1;
		for (unsigned k = 0; k < st->cfg.naddrs && i < 0; k++)
			if (st->cfg.addrs[k].addr.family == STACK_AF_INET6 &&
			    eq6(st->cfg.addrs[k].addr.a, dst))
				i = (int)k;
		if (i < 0 || st->addr_state[i] == ADDR_DUPLICATE) {
			st->stats.ip6_not_ours++;
			return;
		}
		dkind = st->addr_state[i] == ADDR_TENTATIVE ? DST6_TENTATIVE : DST6_UNICAST;
		mine = &st->cfg.addrs[i].addr;
	}
	if (!is_unspec6(src) && bad_source6(st, src)) {
		st->stats.ip6_bad_src++;
		return;
	}
	uint8_t nh = ip[6];
	uint32_t off = IP6_HLEN, end = IP6_HLEN + plen;
	for (unsigned n = 0;; n++) {
		if (nh == 6 || nh == 58 || nh == 59)
			break;
		if (nh == 44) {
			st->stats.ip6_frag_dropped++;
			return;
		}
		if (nh != 0 && nh != 43 && nh != 60) {
			st->stats.ip6_unknown_proto++;
			return;
		}
		if (n >= IP6_EXT_MAX || (nh == 0 && off != IP6_HLEN) || end - off < 8) {
			st->stats.ip6_bad_ext++;
			return;
		}
		const uint8_t *h = ip + off;
		uint32_t hl = ((uint32_t)h[1] + 1) * 8;
		if (hl > end - off) {
			st->stats.ip6_bad_ext++;
			return;
		}
		if (nh == 43) {
			if (h[3] != 0) {
				st->stats.ip6_bad_ext++;
				return;
			}
		} else {
			/* Options (RFC 8200 4.2): Pad1, PadN, and unknown
			 * ones whose top bits say "skip"; the others say
			 * discard (with or without an ICMP error we do not
			 * send). */
			for (uint32_t k = 2; k < hl;) {
				if (h[k] == 0) {
					k++;
					continue;
				}
				if (hl - k < 2 || (uint32_t)h[k + 1] + 2 > hl - k ||
				    (h[k] != 1 && (h[k] >> 6) != 0)) {
					st->stats.ip6_bad_ext++;
					return;
				}
				k += (uint32_t)h[k + 1] + 2;
			}
		}
		nh = h[0];
		off += hl;
	}
	if (nh == 59)
		return; /* nothing follows */
	const uint8_t *l4 = ip + off;
	uint32_t l4len = end - off;
	if (nh == 58) {
		icmp6_input(st, smac, ip, dkind, l4, l4len);
		return;
	}
	if (is_unspec6(src)) {
		st->stats.ip6_bad_src++;
		return;
	}
	if (dkind != DST6_UNICAST) {
		/* TCP only to a unicast address of ours, usable. */
		st->stats.ip6_not_ours++;
		return;
	}
	if (l4len < 20) {
		st->stats.tcp_bad_hdr++;
		return;
	}
	if (!st->cfg.rx_csum_offload &&
	    net_csum_fold(net_csum_add(pseudo_sum6(src, dst, 6, l4len), l4, l4len)) != 0) {
		st->stats.tcp_bad_csum++;
		st->stats.checksum_errors++;
		return;
	}
	struct stack_addr sa;
	stack_addr_ipv6(&sa, src);
	tcp_input(st, smac, &sa, mine, l4, l4len);
}

void net_input(struct stack *st, const uint8_t *f, uint32_t len)
{
	if (len < ETH_HLEN) {
		st->stats.eth_short++;
		return;
	}
	/* IPv6 groups (33:33:...) are sorted out by address in ip6_input. */
	if (memcmp(f, st->cfg.mac, 6) != 0 && memcmp(f, bcast_mac, 6) != 0 &&
	    !(f[0] == 0x33 && f[1] == 0x33 && get16(f + 12) == ETH_P_IPV6)) {
		st->stats.eth_not_ours++;
		return;
	}
	const uint8_t *smac = f + 6;
	if (smac[0] & 1) {
		/* A multicast source is never a host we could answer. */
		st->stats.eth_not_ours++;
		return;
	}
	uint16_t type = get16(f + 12);
	if (type == ETH_P_ARP) {
		arp_input(st, smac, f + ETH_HLEN, len - ETH_HLEN);
	} else if (type == ETH_P_IPV4) {
		if (f[0] & 1) {
			/* IP to the broadcast MAC: not for a host stack. */
			st->stats.eth_not_ours++;
			return;
		}
		ip4_input(st, smac, f + ETH_HLEN, len - ETH_HLEN);
	} else if (type == ETH_P_IPV6) {
		ip6_input(st, f, f + ETH_HLEN, len - ETH_HLEN);
	} else {
		st->stats.eth_unknown_type++;
	}
}
