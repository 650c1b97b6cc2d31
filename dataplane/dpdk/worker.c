/* SPDX-License-Identifier: BSD-3-Clause */
#include "dataplane/dpdk/worker.h"

#include <inttypes.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>

/* Largest frame the stack builds or accepts (MTU 1500 + Ethernet + VLAN). */
#define DP_FRAME_MAX 1536

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
	for (int tries = 0; tries < DP_TX_RETRIES && sent < w->ntx; tries++)
		sent += rte_eth_tx_burst(w->port->port_id, w->queue, w->tx + sent,
					 (uint16_t)(w->ntx - sent));
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
		m->ol_flags |= RTE_MBUF_F_TX_IPV4;
		if (ti->ip_csum_offload)
			m->ol_flags |= RTE_MBUF_F_TX_IP_CKSUM;
		if (ti->l4_csum_offload && ti->is_tcp)
			m->ol_flags |= RTE_MBUF_F_TX_TCP_CKSUM;
	}
	w->tx[w->ntx++] = m;
	if (w->ntx == DP_BURST)
		tx_burst(w);
}

const struct stack_io dp_worker_io = { .tx_alloc = io_alloc, .tx_send = io_send };

void dp_worker_init(struct dp_worker *w, const struct dp_port *port, uint16_t queue)
{
	memset(w, 0, sizeof(*w));
	w->port = port;
	w->queue = queue;
	w->pool = dp_port_pool(port, (int)rte_socket_id());
	w->tsc_hz = rte_get_tsc_hz();
	w->tsc0 = rte_rdtsc();
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
	/* Split so that d * 1e9 cannot overflow however long we run. */
	return d / w->tsc_hz * 1000000000ULL + d % w->tsc_hz * 1000000000ULL / w->tsc_hz;
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

void dp_worker_run(struct dp_worker *w, const atomic_bool *stop)
{
	struct rte_mbuf *rx[DP_BURST];
	uint64_t last_timers = 0;
	while (!atomic_load_explicit(stop, memory_order_relaxed)) {
		w->stats.loops++;
		uint16_t n = rte_eth_rx_burst(w->port->port_id, w->queue, rx, DP_BURST);
		uint64_t now = dp_worker_now(w);
		w->stats.rx_pkts += n;
		for (uint16_t i = 0; i < n; i++) {
			if (i + 1 < n)
				rte_prefetch0(rte_pktmbuf_mtod(rx[i + 1], void *));
			rx_one(w, rx[i], now);
		}
		if (n)
			rte_pktmbuf_free_bulk(rx, n);
		/* The stack's timers are cheap when idle, but a tight loop
		 * needs them no more often than every 100 us. */
		if (now - last_timers >= 100000) {
			stack_timers(w->st, now);
			last_timers = now;
		}
		if (w->poll)
			w->poll(w->poll_arg, now);
		stack_flush(w->st, now);
		if (w->ntx)
			tx_burst(w);
	}
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
		" rx_csum_bad %" PRIu64 " rx_copied %" PRIu64 " loops %" PRIu64 "\n",
		w->queue, s->rx_pkts, s->tx_pkts, s->tx_drops, s->rx_csum_bad, s->rx_copied,
		s->loops);
}
