/* SPDX-License-Identifier: BSD-3-Clause */
#include "dataplane/dpdk/worker.h"

#include "dataplane/dpdk/unmap.h"

#include <inttypes.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "dataplane/dpdk/impair.h"
#include "dataplane/dpdk/rss.h"

/* Largest frame the stack builds or accepts (MTU 1500 + Ethernet + VLAN). */
#define DP_FRAME_MAX 1536
#define DP_STEER_RING 1024

struct dp_steer {
	unsigned nworkers;
	/* The NIC's own hash can be used when it hashed with our key into
	 * our RETA (p->rss, checked at start). */
	bool nic_hash;
	bool nic_hash6; /* ... and hashed TCP/IPv6 4-tuples too (p->rss6) */
	struct rte_ring *ring[DP_MAX_QUEUES];
	struct dp_rss_map map;
};

static uint8_t *io_alloc(void *ctx, uint32_t room, void **pkt)
{
	struct dp_worker *w = ctx;
	struct rte_mbuf *m = rte_pktmbuf_alloc(w->pool);
	if (!m)
		return NULL;
	if (rte_pktmbuf_tailroom(m) < room) {
		rte_pktmbuf_free(m);
		return NULL;
	}
	*pkt = m;
	return rte_pktmbuf_mtod(m, uint8_t *);
}

static void tx_burst(struct dp_worker *w)
{
	unsigned sent = 0;
	/* Bounded: a queue that stays full drops rather than stalling RX,
	 * and TCP's retransmission recovers the frame. */
	for (int tries = 0; tries < DP_TX_RETRIES && sent < w->ntx; tries++) {
		sent += rte_eth_tx_burst(w->port->port_id, w->queue, w->tx + sent,
					 (uint16_t)(w->ntx - sent));
		/* A TX callback (impair.h) that took packets over leaves
		 * NULL in their slots: they are its business now. */
		while (sent < w->ntx && w->tx[sent] == NULL)
			sent++;
	}
	w->stats.tx_pkts += sent;
	if (sent < w->ntx) {
		w->stats.tx_drops += w->ntx - sent;
		rte_pktmbuf_free_bulk(w->tx + sent, w->ntx - sent);
	}
	w->ntx = 0;
}

static void io_send(void *ctx, void *pkt, uint32_t len, const struct stack_txinfo *ti)
{
	struct dp_worker *w = ctx;
	struct rte_mbuf *m = pkt;
	m->data_len = (uint16_t)len;
	m->pkt_len = len;
	if (ti->ip_csum_offload || ti->l4_csum_offload) {
		m->l2_len = ti->l2_len;
		m->l3_len = ti->l3_len;
		m->l4_len = ti->l4_len;
		m->ol_flags |= ti->is_ipv6 ? RTE_MBUF_F_TX_IPV6 : RTE_MBUF_F_TX_IPV4;
		if (ti->ip_csum_offload)
			m->ol_flags |= RTE_MBUF_F_TX_IP_CKSUM;
		if (ti->l4_csum_offload && ti->is_tcp)
			m->ol_flags |= RTE_MBUF_F_TX_TCP_CKSUM;
	}
	w->tx[w->ntx++] = m;
	if (w->ntx == DP_BURST)
		tx_burst(w);
}

static uint16_t io_pick_port(void *ctx, const struct stack_tuple *t, unsigned attempt)
{
	struct dp_worker *w = ctx;
	(void)attempt; /* the stack bounds the attempts; the cursor moves on */
	if (w->steer && w->steer->nworkers > 1)
		return dp_rss_pick_port(&w->steer->map, w->steer_index, &w->port_cursor, t);
	return (uint16_t)(DP_EPHEMERAL_LO + w->port_cursor++ % DP_EPHEMERAL_N);
}

const struct stack_io dp_worker_io = {
	.tx_alloc = io_alloc,
	.tx_send = io_send,
	.pick_port = io_pick_port,
};

void dp_worker_init(struct dp_worker *w, const struct dp_port *port, uint16_t queue)
{
	memset(w, 0, sizeof(*w));
	w->port = port;
	w->queue = queue;
	w->pool = dp_port_pool(port, (int)rte_socket_id());
	w->tsc_hz = rte_get_tsc_hz();
	/* ns = tsc * 1e9 / hz as one multiply and shift: this runs once or
	 * twice per poll loop, and three 64-bit divisions showed in profiles */
	w->ns_mult = (uint64_t)(((unsigned __int128)1000000000ULL << 32) / w->tsc_hz);
	w->tsc0 = rte_rdtsc();
	/* Workers start their port walks apart; any start is correct. */
	w->port_cursor = (uint32_t)(w->tsc0 ^ (w->tsc0 >> 32)) + 4099u * queue;
}

void dp_worker_stack_config(const struct dp_worker *w, struct stack_config *cfg)
{
	memcpy(cfg->mac, w->port->mac, 6);
	cfg->tx_csum_offload = w->port->tx_csum_offload;
	/* Receive checks stay in software: a PMD may leave the flags at
	 * "unknown", and the stack has one switch for every frame. */
	cfg->rx_csum_offload = false;
}

uint64_t dp_worker_now(const struct dp_worker *w)
{
	uint64_t d = rte_rdtsc() - w->tsc0;
	/* 128-bit product: no overflow however long we run */
	return (uint64_t)(((unsigned __int128)d * w->ns_mult) >> 32);
}

static void rx_one(struct dp_worker *w, struct rte_mbuf *m, uint64_t now)
{
	const uint64_t bad = RTE_MBUF_F_RX_IP_CKSUM_MASK | RTE_MBUF_F_RX_L4_CKSUM_MASK;
	uint64_t f = m->ol_flags & bad;
	if ((f & RTE_MBUF_F_RX_IP_CKSUM_MASK) == RTE_MBUF_F_RX_IP_CKSUM_BAD ||
	    (f & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_BAD) {
		w->stats.rx_csum_bad++;
		return;
	}
	if (m->nb_segs == 1) {
		stack_input(w->st, rte_pktmbuf_mtod(m, const uint8_t *), m->data_len, now);
		return;
	}
	/* Chained frames (jumbo or scattered RX) are rare: linearise. */
	uint8_t buf[DP_FRAME_MAX];
	uint32_t len = m->pkt_len < sizeof(buf) ? m->pkt_len : (uint32_t)sizeof(buf);
	const uint8_t *p = rte_pktmbuf_read(m, 0, len, buf);
	if (p) {
		w->stats.rx_copied++;
		stack_input(w->st, p, len, now);
	}
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

#define STEER_LOCAL (-1)
#define STEER_ARP_REPLY (-2)

/* The worker that must see this frame, STEER_LOCAL for this one (not
 * TCP, a fragment, IPv6 with extension headers, too short: the stack
 * decides), or STEER_ARP_REPLY (ARP replies and IPv6 neighbour
 * advertisements: every worker's cache and DAD must see them). */
static int steer_class(const struct dp_worker *w, const struct rte_mbuf *m)
{
	const struct dp_steer *s = w->steer;
	const uint8_t *b = rte_pktmbuf_mtod(m, const uint8_t *);
	uint32_t len = m->data_len;
	if (len < 14 + 20)
		return len >= 14 + 8 && rd16(b + 12) == 0x0806 && rd16(b + 20) == 2
			       ? STEER_ARP_REPLY
			       : STEER_LOCAL;
	uint16_t type = rd16(b + 12);
	if (type == 0x0806)
		return rd16(b + 20) == 2 ? STEER_ARP_REPLY : STEER_LOCAL;
	if (type == 0x86dd) {
		if (len < 14 + 40 + 4)
			return STEER_LOCAL;
		if (b[14 + 6] == 58)
			return b[14 + 40] == 136 ? STEER_ARP_REPLY : STEER_LOCAL;
		if (b[14 + 6] != 6)
			return STEER_LOCAL;
		unsigned o6;
		if (s->nic_hash6 && (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH))
			o6 = dp_rss_owner_of_hash(&s->map, m->hash.rss);
		else
			o6 = dp_rss_owner6(&s->map, b + 22, b + 38, rd16(b + 54), rd16(b + 56));
		return o6 == w->steer_index ? STEER_LOCAL : (int)o6;
	}
	if (type != 0x0800 || b[14 + 9] != 6 || (rd16(b + 14 + 6) & 0x3fff) != 0)
		return STEER_LOCAL;
	unsigned ihl = (b[14] & 0xfu) * 4u;
	if (ihl < 20 || len < 14 + ihl + 4)
		return STEER_LOCAL;
	unsigned owner;
	if (s->nic_hash && (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH))
		owner = dp_rss_owner_of_hash(&s->map, m->hash.rss);
	else
		owner = dp_rss_owner4(&s->map, rd32(b + 26), rd32(b + 30), rd16(b + 14 + ihl),
				      rd16(b + 14 + ihl + 2));
	return owner == w->steer_index ? STEER_LOCAL : (int)owner;
}

/* Frames for other workers go to their rings; *n is left with this
 * worker's own, in order. */
static void steer_burst(struct dp_worker *w, struct rte_mbuf **rx, uint16_t *n)
{
	struct dp_steer *s = w->steer;
	struct rte_mbuf *out[DP_MAX_QUEUES][DP_BURST];
	unsigned nout[DP_MAX_QUEUES] = { 0 };
	bool any = false;
	uint16_t keep = 0;
	for (uint16_t i = 0; i < *n; i++) {
		struct rte_mbuf *m = rx[i];
		int c = steer_class(w, m);
		if (c == STEER_ARP_REPLY) {
			for (unsigned j = 0; j < s->nworkers; j++) {
				if (j == w->steer_index || nout[j] == DP_BURST)
					continue;
				struct rte_mbuf *cp = rte_pktmbuf_copy(m, m->pool, 0, UINT32_MAX);
				if (!cp)
					break;
				out[j][nout[j]++] = cp;
				w->stats.arp_shared++;
				any = true;
			}
			c = STEER_LOCAL;
		}
		if (c == STEER_LOCAL) {
			rx[keep++] = m;
		} else {
			out[c][nout[c]++] = m;
			w->stats.steered_out++;
			any = true;
		}
	}
	*n = keep;
	if (!any)
		return;
	for (unsigned j = 0; j < s->nworkers; j++) {
		if (!nout[j])
			continue;
		unsigned k = rte_ring_enqueue_burst(s->ring[j], (void **)out[j], nout[j], NULL);
		if (k < nout[j]) {
			w->stats.steer_drops += nout[j] - k;
			rte_pktmbuf_free_bulk(out[j] + k, nout[j] - k);
		}
	}
}

static void input_burst(struct dp_worker *w, struct rte_mbuf **pk, uint16_t n, uint64_t now)
{
	for (uint16_t i = 0; i < n; i++) {
		if (i + 1 < n)
			rte_prefetch0(rte_pktmbuf_mtod(pk[i + 1], void *));
		rx_one(w, pk[i], now);
	}
	if (n)
		rte_pktmbuf_free_bulk(pk, n);
}

void dp_worker_run(struct dp_worker *w, const atomic_bool *stop)
{
	struct rte_mbuf *rx[DP_BURST];
	uint64_t last_timers = 0;
	struct rte_ring *mine = w->steer ? w->steer->ring[w->steer_index] : NULL;
	bool steering = w->steer && w->steer->nworkers > 1;
	int guard = dp_unmap_guard_enter(&w->stats.loops);
	uint64_t prev = dp_worker_now(w);
	bool prev_busy = false;
	while (!atomic_load_explicit(stop, memory_order_relaxed)) {
		/* read by the unmap guard (unmap.h) on another thread */
		__atomic_store_n(&w->stats.loops, w->stats.loops + 1, __ATOMIC_RELAXED);
		uint64_t now = dp_worker_now(w);
		if (prev_busy)
			w->stats.busy_ns += now - prev;
		prev = now;
		unsigned k = 0;
		/* First what the others passed on: it arrived earlier. */
		if (mine) {
			k = rte_ring_dequeue_burst(mine, (void **)rx, DP_BURST, NULL);
			w->stats.steered_in += k;
			input_burst(w, rx, (uint16_t)k, now);
		}
		uint16_t n = rte_eth_rx_burst(w->port->port_id, w->queue, rx, DP_BURST);
		w->stats.rx_pkts += n;
		if (steering && n)
			steer_burst(w, rx, &n);
		input_burst(w, rx, n, now);
		/* The stack's timers are cheap when idle, but a tight loop
		 * needs them no more often than every 100 us. */
		if (now - last_timers >= 100000) {
			stack_timers(w->st, now);
			last_timers = now;
		}
		if (w->poll)
			w->poll(w->poll_arg, now);
		/* the loop's one clock reading serves here too: an iteration
		 * takes microseconds, the stack's timers count milliseconds */
		stack_flush(w->st, now);
		prev_busy = k + n > 0 || w->ntx > 0;
		if (w->ntx)
			tx_burst(w);
		else if ((w->stats.loops & 15) == 0 &&
			 dp_impair_tx_pending(w->port->port_id, w->queue))
			rte_eth_tx_burst(w->port->port_id, w->queue, w->tx, 0);
	}
	dp_unmap_guard_leave(guard);
}

void dp_worker_drain(struct dp_worker *w)
{
	if (w->st)
		stack_flush(w->st, dp_worker_now(w));
	if (w->ntx)
		tx_burst(w);
}

void dp_worker_log_stats(const struct dp_worker *w, FILE *f)
{
	const struct dp_worker_stats *s = &w->stats;
	fprintf(f,
		"dpdk: worker queue %u: rx %" PRIu64 " tx %" PRIu64 " tx_drops %" PRIu64
		" rx_csum_bad %" PRIu64 " rx_copied %" PRIu64 " loops %" PRIu64
		" steered_out %" PRIu64 " steered_in %" PRIu64 " steer_drops %" PRIu64
		" arp_shared %" PRIu64 "\n",
		w->queue, s->rx_pkts, s->tx_pkts, s->tx_drops, s->rx_csum_bad, s->rx_copied,
		s->loops, s->steered_out, s->steered_in, s->steer_drops, s->arp_shared);
}

/* --- Steering --- */

struct dp_steer *dp_steer_create(const struct dp_port *p, unsigned nworkers)
{
	static unsigned serial; /* ring names are global to the EAL */
	if (nworkers == 0 || nworkers > DP_MAX_QUEUES || nworkers != p->nb_queues) {
		fprintf(stderr, "dpdk: steer: %u workers for a port of %u queues\n", nworkers,
			p->nb_queues);
		return NULL;
	}
	struct dp_steer *s =
		rte_zmalloc_socket("tes_steer", sizeof(*s), RTE_CACHE_LINE_SIZE, p->socket);
	if (!s) {
		fprintf(stderr, "dpdk: steer: no memory\n");
		return NULL;
	}
	s->nworkers = nworkers;
	s->nic_hash = p->rss;
	s->nic_hash6 = p->rss && p->rss6;
	if (dp_rss_map_init(&s->map, dp_rss_key, nworkers, p->rss ? p->reta : NULL,
			    p->rss ? p->reta_size : 0) != 0) {
		fprintf(stderr, "dpdk: steer: port %u RETA names a queue >= %u\n", p->port_id,
			nworkers);
		rte_free(s);
		return NULL;
	}
	unsigned id = __atomic_fetch_add(&serial, 1, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < nworkers; i++) {
		char name[RTE_RING_NAMESIZE];
		snprintf(name, sizeof(name), "tes_st%u_%u_%u", id, p->port_id, i);
		s->ring[i] = rte_ring_create(name, DP_STEER_RING, p->socket, RING_F_SC_DEQ);
		if (!s->ring[i]) {
			fprintf(stderr, "dpdk: steer: ring %s: %s\n", name,
				rte_strerror(rte_errno));
			dp_steer_free(s);
			return NULL;
		}
	}
	printf("dpdk: port %u: %u workers, steering by %s\n", p->port_id, nworkers,
	       p->rss ? "the NIC's RSS (RETA checked), software for strays"
		      : "software Toeplitz (hash % workers)");
	fflush(stdout);
	return s;
}

void dp_steer_free(struct dp_steer *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < s->nworkers; i++) {
		if (!s->ring[i])
			continue;
		void *m;
		while (rte_ring_dequeue(s->ring[i], &m) == 0)
			rte_pktmbuf_free(m);
		rte_ring_free(s->ring[i]);
	}
	rte_free(s);
}

void dp_worker_set_steer(struct dp_worker *w, struct dp_steer *s, unsigned index)
{
	if (s && index >= s->nworkers) {
		fprintf(stderr, "dpdk: steer: worker %u of %u\n", index, s->nworkers);
		s = NULL;
	}
	w->steer = s;
	w->steer_index = index;
}

unsigned dp_steer_owner(const struct dp_steer *s, uint32_t saddr, uint32_t daddr, uint16_t sport,
			uint16_t dport)
{
	return dp_rss_owner4(&s->map, saddr, daddr, sport, dport);
}

const struct dp_rss_map *dp_steer_map(const struct dp_steer *s)
{
	return &s->map;
}
