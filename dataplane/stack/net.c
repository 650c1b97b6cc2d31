/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Below TCP: Ethernet, ARP and the neighbour cache, IPv4 validation, ICMP
 * echo, checksums and the frame builder for TCP segments.
 */
#include "dataplane/stack/stack_impl.h"

#define ETH_HLEN 14
#define ETH_P_IPV4 0x0800
#define ETH_P_ARP 0x0806
#define IP_HLEN 20
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

uint8_t *net_tcp_begin(struct stack *st, void **pkt, uint8_t **frame)
{
	uint8_t *f = frame_alloc(st, pkt);
	if (!f)
		return NULL;
	*frame = f;
	return f + ETH_HLEN + IP_HLEN;
}

void net_tcp_send(struct stack *st, void *pkt, uint8_t *f, const struct stack_tuple *t,
		  const uint8_t dmac[6], uint32_t tcp_len)
{
	uint8_t *ip = f + ETH_HLEN, *tcp = ip + IP_HLEN;
	eth_fill(st, f, dmac, ETH_P_IPV4);
	ip4_fill(ip, t->laddr.a, t->raddr.a, 6, tcp_len, st->cfg.tx_csum_offload);
	put16(tcp + 16, 0);
	uint32_t ps = pseudo_sum4(t->laddr.a, t->raddr.a, 6, tcp_len);
	if (st->cfg.tx_csum_offload) {
		/* The NIC completes it from the pseudo-header sum. */
		put16(tcp + 16, (uint16_t)~net_csum_fold(ps));
	} else {
		put16(tcp + 16, net_csum_fold(net_csum_add(ps, tcp, tcp_len)));
	}
	struct stack_txinfo ti = {
		.l2_len = ETH_HLEN,
		.l3_len = IP_HLEN,
		.l4_len = (uint8_t)((tcp[12] >> 4) * 4),
		.ip_csum_offload = st->cfg.tx_csum_offload,
		.l4_csum_offload = st->cfg.tx_csum_offload,
		.is_tcp = 1,
	};
	st->stats.tcp_tx++;
	frame_send(st, pkt, ETH_HLEN + IP_HLEN + tcp_len, &ti);
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
	if (addr->family != STACK_AF_INET)
		return -1;
	struct neigh *n = neigh_find(st, addr);
	if (!n && !(n = neigh_new(st, addr)))
		return -1;
	neigh_set_mac(st, n, mac, NEIGH_STATIC);
	return 0;
}

int stack_neigh_lookup(struct stack *st, const struct stack_addr *addr, uint8_t mac[6])
{
	if (addr->family != STACK_AF_INET)
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
	if (!on_link(st, dst) && st->cfg.gateway.family == STACK_AF_INET)
		hop = &st->cfg.gateway;
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
			arp_send(st, 1, n->mac, src->a, n->mac, hop->a);
			st->stats.arp_requests_tx++;
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
		arp_send(st, 1, bcast_mac, src->a, (const uint8_t[6]){ 0 }, hop->a);
		st->stats.arp_requests_tx++;
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
		/* The source address: any of ours on the same link will do. */
		const struct stack_addr *src = &st->cfg.addrs[0].addr;
		arp_send(st, 1, bcast_mac, src->a, (const uint8_t[6]){ 0 }, n->addr.a);
		st->stats.arp_requests_tx++;
	}
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

void net_input(struct stack *st, const uint8_t *f, uint32_t len)
{
	if (len < ETH_HLEN) {
		st->stats.eth_short++;
		return;
	}
	if (memcmp(f, st->cfg.mac, 6) != 0 && memcmp(f, bcast_mac, 6) != 0) {
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
	} else {
		st->stats.eth_unknown_type++;
	}
}
