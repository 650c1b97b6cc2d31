/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The port layer with a real EAL and virtual devices, no network:
 *
 * - net_null with 2 queues: RSS is configured with dp_rss_key, the RETA is
 *   programmed, and both are read back (dp_port_setup fails otherwise);
 *   the steering map follows that RETA; a steer for the wrong number of
 *   workers is refused.  Then two workers run on two lcores for a moment:
 *   an RX callback turns what net_null receives on queue 0 into 300 SYNs
 *   (and 30 ARP replies) for the stacks, queue 1 receives nothing, so
 *   whatever worker 1's stack sees was steered to it: exactly the SYNs it
 *   owns, plus a copy of every ARP reply.
 * - net_ring (a loopback: its TX ring is its RX ring): the impairment
 *   callbacks.  2000 numbered TCP/IPv4 frames go through an impaired RX
 *   queue, then an impaired TX queue; what comes out is accounted exactly
 *   (sent - dropped + duplicated, every corrupted frame one bit away from
 *   an original and failing its checksum, reordering seen), nothing is
 *   held at the end, and a second run with the same seed gives the same
 *   frames in the same order.
 *
 * Runs with --no-huge and a file prefix of its own; exits 77 when the EAL cannot start
 * and the test is not root (as root that fails the test).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdatomic.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "dataplane/dpdk/impair.h"
#include "dataplane/dpdk/port.h"
#include "dataplane/dpdk/rss.h"
#include "dataplane/dpdk/worker.h"

static int failures;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			failures++;                                          \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                        \
			fprintf(stderr, "\n");                               \
		}                                                            \
	} while (0)

static uint16_t port_by_name(const char *name)
{
	uint16_t id;
	if (rte_eth_dev_get_port_by_name(name, &id) != 0)
		return UINT16_MAX;
	return id;
}

/* --- Two workers, steering between them --- */

#define NSYN 300
#define NARP 30
#define STEER_LOCAL_IP 0xc6121602u /* 198.18.22.2 */
#define STEER_PEER_IP 0xc6121601u

static atomic_uint injected; /* frames turned into test frames so far */
static atomic_bool steer_stop;
static uint8_t null_mac[6];

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

/* Frame k: every 11th an ARP reply from the peer, the others a SYN from
 * peer port 20000 + k to port 7. */
static uint16_t make_frame(unsigned k, uint8_t *f)
{
	memset(f, 0, 64);
	memcpy(f, null_mac, 6);
	memcpy(f + 6, (uint8_t[]){ 2, 0, 0, 0, 0, 9 }, 6);
	if (k % 11 == 10) {
		put16(f + 12, 0x0806);
		uint8_t *a = f + 14;
		put16(a, 1);
		put16(a + 2, 0x0800);
		a[4] = 6;
		a[5] = 4;
		put16(a + 6, 2);
		memcpy(a + 8, f + 6, 6);
		put32(a + 14, STEER_PEER_IP);
		memcpy(a + 18, null_mac, 6);
		put32(a + 24, STEER_LOCAL_IP);
		return 60;
	}
	put16(f + 12, 0x0800);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(f + 14);
	ip->version_ihl = 0x45;
	ip->total_length = rte_cpu_to_be_16(40);
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_TCP;
	ip->src_addr = rte_cpu_to_be_32(STEER_PEER_IP);
	ip->dst_addr = rte_cpu_to_be_32(STEER_LOCAL_IP);
	ip->hdr_checksum = rte_ipv4_cksum(ip);
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(f + 34);
	th->src_port = rte_cpu_to_be_16((uint16_t)(20000 + k));
	th->dst_port = rte_cpu_to_be_16(7);
	th->sent_seq = rte_cpu_to_be_32(1000 * k);
	th->data_off = 5 << 4;
	th->tcp_flags = RTE_TCP_SYN_FLAG;
	th->rx_win = rte_cpu_to_be_16(65535);
	th->cksum = rte_ipv4_udptcp_cksum(ip, th);
	return 54;
}

static uint16_t null_rx_cb(uint16_t port, uint16_t queue, struct rte_mbuf *pkts[], uint16_t nb,
			   uint16_t max, void *arg)
{
	(void)port;
	(void)max;
	(void)arg;
	uint16_t keep = 0;
	for (uint16_t i = 0; i < nb; i++) {
		unsigned k = atomic_load(&injected);
		if (queue != 0 || k >= NSYN + NARP) {
			rte_pktmbuf_free(pkts[i]);
			continue;
		}
		atomic_store(&injected, k + 1);
		struct rte_mbuf *m = pkts[i];
		uint16_t len = make_frame(k, rte_pktmbuf_mtod(m, uint8_t *));
		m->data_len = len;
		m->pkt_len = len;
		m->nb_segs = 1;
		m->ol_flags = 0;
		pkts[keep++] = m;
	}
	return keep;
}

struct steer_worker {
	struct dp_worker w;
	uint64_t deadline;
};

static int steer_accept(void *lctx, struct stack_listener *l, struct tcp_conn *c)
{
	(void)lctx;
	(void)l;
	(void)c;
	return 0;
}

/* Worker 0 ends the run after half a second of polling: far more than the
 * few hundred frames need, and no count to wait for that could hang. */
static void steer_poll(void *arg, uint64_t now)
{
	(void)now;
	struct steer_worker *sw = arg;
	if (rte_rdtsc() > sw->deadline)
		atomic_store(&steer_stop, true);
}

static int steer_lcore(void *arg)
{
	struct steer_worker *sw = arg;
	dp_worker_run(&sw->w, &steer_stop);
	return 0;
}

static void test_null_steering(const struct dp_port *p, struct dp_steer *s)
{
	memcpy(null_mac, p->mac, 6);
	const struct rte_eth_rxtx_callback *cb[2];
	for (uint16_t q = 0; q < 2; q++)
		cb[q] = rte_eth_add_rx_callback(p->port_id, q, null_rx_cb, NULL);
	CHECK(cb[0] && cb[1], "RX callbacks on net_null");
	static const struct stack_app app = { .accept = steer_accept };
	static struct steer_worker sw[2];
	for (unsigned i = 0; i < 2; i++) {
		dp_worker_init(&sw[i].w, p, (uint16_t)i);
		dp_worker_set_steer(&sw[i].w, s, i);
		struct stack_config cfg;
		stack_config_defaults(&cfg);
		dp_worker_stack_config(&sw[i].w, &cfg);
		cfg.naddrs = 1;
		stack_addr_ipv4(&cfg.addrs[0].addr, STEER_LOCAL_IP);
		cfg.addrs[0].prefix_len = 24;
		cfg.max_conns = 2 * NSYN;
		cfg.backlog_max = 2 * NSYN;
		cfg.rcvbuf = cfg.sndbuf = 4096;
		char err[256] = "";
		sw[i].w.st = stack_create(&cfg, &dp_worker_io, &sw[i].w, &app, err, sizeof(err));
		CHECK(sw[i].w.st != NULL, "stack_create: %s", err[0] ? err : "?");
		if (!sw[i].w.st)
			return;
		CHECK(stack_listen(sw[i].w.st, NULL, 7, 2 * NSYN, NULL) != NULL, "listen");
		sw[i].deadline = rte_rdtsc() + rte_get_tsc_hz() / 2; /* 0.5 s of polling */
	}
	sw[0].w.poll = steer_poll;
	sw[0].w.poll_arg = &sw[0];
	atomic_store(&steer_stop, false);
	unsigned lc = rte_get_next_lcore(rte_get_main_lcore(), 1, 0);
	CHECK(rte_eal_remote_launch(steer_lcore, &sw[1], lc) == 0, "launch on lcore %u", lc);
	steer_lcore(&sw[0]);
	rte_eal_mp_wait_lcore();
	for (uint16_t q = 0; q < 2; q++)
		if (cb[q])
			rte_eth_remove_rx_callback(p->port_id, q, cb[q]);

	/* What each worker should have seen. */
	unsigned own[2] = { 0 }, narp = 0;
	for (unsigned k = 0; k < NSYN + NARP; k++) {
		if (k % 11 == 10) {
			narp++;
			continue;
		}
		own[dp_steer_owner(s, STEER_PEER_IP, STEER_LOCAL_IP, (uint16_t)(20000 + k), 7)]++;
	}
	const struct dp_worker_stats *w0 = &sw[0].w.stats, *w1 = &sw[1].w.stats;
	const struct stack_stats *s0 = stack_stats(sw[0].w.st), *s1 = stack_stats(sw[1].w.st);
	printf("steering: injected %u, owned %u/%u, arp %u; w0 out %llu arp_shared %llu, "
	       "w1 in %llu; syn_rx %llu/%llu, arp_replies_rx %llu/%llu\n",
	       atomic_load(&injected), own[0], own[1], narp, (unsigned long long)w0->steered_out,
	       (unsigned long long)w0->arp_shared, (unsigned long long)w1->steered_in,
	       (unsigned long long)s0->syn_rx, (unsigned long long)s1->syn_rx,
	       (unsigned long long)s0->arp_replies_rx, (unsigned long long)s1->arp_replies_rx);
	CHECK(atomic_load(&injected) == NSYN + NARP, "injected %u", atomic_load(&injected));
	CHECK(own[0] > 0 && own[1] > 0, "all SYNs owned by one worker");
	CHECK(w0->steered_out == own[1], "worker 0 steered out %llu, want %u",
	      (unsigned long long)w0->steered_out, own[1]);
	CHECK(w0->arp_shared == narp, "ARP copies %llu, want %u",
	      (unsigned long long)w0->arp_shared, narp);
	CHECK(w1->steered_in == own[1] + narp, "worker 1 took %llu from its ring, want %u",
	      (unsigned long long)w1->steered_in, own[1] + narp);
	CHECK(w0->steer_drops == 0 && w1->steered_out == 0, "drops or reverse steering");
	CHECK(s0->syn_rx == own[0] && s1->syn_rx == own[1], "SYNs per stack %llu/%llu",
	      (unsigned long long)s0->syn_rx, (unsigned long long)s1->syn_rx);
	CHECK(s0->arp_replies_rx == narp && s1->arp_replies_rx == narp,
	      "ARP replies per stack %llu/%llu", (unsigned long long)s0->arp_replies_rx,
	      (unsigned long long)s1->arp_replies_rx);
	for (unsigned i = 0; i < 2; i++) {
		const char *why = stack_check(sw[i].w.st);
		CHECK(why == NULL, "stack %u: %s", i, why ? why : "");
		stack_destroy(sw[i].w.st);
	}
}

static void test_null_rss(void)
{
	uint16_t pid = port_by_name("net_null0");
	CHECK(pid != UINT16_MAX, "no net_null0");
	if (pid == UINT16_MAX)
		return;
	static struct dp_port p;
	struct dp_port_conf pc = { .port_id = pid, .nb_queues = 2, .mbufs_per_socket = 1023 };
	int rc = dp_port_setup(&p, &pc);
	CHECK(rc == 0, "dp_port_setup(net_null, 2 queues) = %d", rc);
	if (rc != 0)
		return;
	CHECK(p.rss, "RSS not in use on net_null");
	CHECK(p.reta_size > 0, "RETA size 0");
	for (unsigned i = 0; i < p.reta_size; i++)
		CHECK(p.reta[i] == i % 2, "RETA[%u] = %u", i, p.reta[i]);
	uint8_t key[DP_RSS_KEY_LEN];
	struct rte_eth_rss_conf rc2 = { .rss_key = key, .rss_key_len = sizeof(key) };
	CHECK(rte_eth_dev_rss_hash_conf_get(pid, &rc2) == 0 &&
		      memcmp(key, dp_rss_key, sizeof(key)) == 0,
	      "the port does not hold dp_rss_key");

	CHECK(dp_steer_create(&p, 3) == NULL, "a steer for 3 workers on 2 queues");
	struct dp_steer *s = dp_steer_create(&p, 2);
	CHECK(s != NULL, "dp_steer_create");
	if (s) {
		const struct dp_rss_map *m = dp_steer_map(s);
		CHECK(m->reta_size == p.reta_size, "map RETA %u, port %u", m->reta_size,
		      p.reta_size);
		unsigned per[2] = { 0 };
		for (uint16_t sp = 1000; sp < 1400; sp++) {
			uint32_t sa = 0xc6121401u, da = 0xc6121402u;
			uint32_t h = dp_rss_hash4(m, sa, da, sp, 25);
			unsigned o = dp_steer_owner(s, sa, da, sp, 25);
			CHECK(o == p.reta[h % p.reta_size], "owner %u, RETA says %u", o,
			      p.reta[h % p.reta_size]);
			CHECK(o == dp_steer_owner(s, da, sa, 25, sp), "asymmetric owner");
			per[o]++;
		}
		CHECK(per[0] && per[1], "400 flows all on one worker (%u/%u)", per[0], per[1]);
		/* A worker index beyond the steer is refused. */
		struct dp_worker w;
		dp_worker_init(&w, &p, 0);
		dp_worker_set_steer(&w, s, 2);
		CHECK(w.steer == NULL, "worker 2 of 2 accepted");
		dp_worker_set_steer(&w, s, 1);
		CHECK(w.steer == s && w.steer_index == 1, "worker 1 of 2 refused");
		if (rte_lcore_count() >= 2)
			test_null_steering(&p, s);
		else
			CHECK(false, "two lcores needed");
		dp_steer_free(s);
	}
	dp_port_close(&p);
}

/* --- Impairment over a loopback ring --- */

#define NFRAMES 2000
#define PAYLOAD 64
#define FLEN (14 + 20 + 20 + PAYLOAD)

static uint8_t orig[NFRAMES][FLEN];

static void build_frames(void)
{
	for (unsigned i = 0; i < NFRAMES; i++) {
		uint8_t *f = orig[i];
		memset(f, 0, FLEN);
		memcpy(f, (uint8_t[]){ 2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00 }, 14);
		struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(f + 14);
		ip->version_ihl = 0x45;
		ip->total_length = rte_cpu_to_be_16(FLEN - 14);
		ip->time_to_live = 64;
		ip->next_proto_id = IPPROTO_TCP;
		ip->src_addr = rte_cpu_to_be_32(0xc6121601u);
		ip->dst_addr = rte_cpu_to_be_32(0xc6121602u);
		ip->hdr_checksum = rte_ipv4_cksum(ip);
		struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(f + 34);
		th->src_port = rte_cpu_to_be_16(40000);
		th->dst_port = rte_cpu_to_be_16(7);
		th->sent_seq = rte_cpu_to_be_32(i);
		th->data_off = 5 << 4;
		th->tcp_flags = RTE_TCP_ACK_FLAG;
		th->rx_win = rte_cpu_to_be_16(65535);
		for (unsigned k = 0; k < PAYLOAD; k++)
			f[54 + k] = (uint8_t)(i * 7 + k);
		th->cksum = rte_ipv4_udptcp_cksum(ip, th);
	}
}

struct run {
	unsigned n;
	uint8_t (*out)[FLEN]; /* NFRAMES * 2 */
	struct dp_impair_stats st;
};

static unsigned hamming(const uint8_t *a, const uint8_t *b)
{
	unsigned d = 0;
	for (unsigned i = 0; i < FLEN; i++)
		d += (unsigned)__builtin_popcount(a[i] ^ b[i]);
	return d;
}

static bool csum_ok(const uint8_t *f)
{
	uint8_t g[FLEN];
	memcpy(g, f, FLEN);
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(g + 14);
	struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(g + 34);
	uint16_t ipc = ip->hdr_checksum, tc = th->cksum;
	ip->hdr_checksum = 0;
	th->cksum = 0;
	/* Over the header as received: a flipped length shows too. */
	if (rte_ipv4_cksum(ip) != ipc || FLEN - 14 != rte_be_to_cpu_16(ip->total_length))
		return false;
	return rte_ipv4_udptcp_cksum(ip, th) == tc;
}

static void collect(uint16_t pid, struct run *r, struct rte_mbuf **rx, uint16_t n)
{
	for (uint16_t i = 0; i < n; i++) {
		if (r->n < 2 * NFRAMES && rx[i]->pkt_len == FLEN)
			rte_memcpy(r->out[r->n], rte_pktmbuf_mtod(rx[i], void *), FLEN);
		r->n++;
	}
	rte_pktmbuf_free_bulk(rx, n);
	(void)pid;
}

/* Push every frame through the loopback port with impairment on one
 * direction, and take everything that comes out. */
static void one_run(const struct dp_port *p, const struct dp_impair_conf *c, struct run *r)
{
	uint16_t pid = p->port_id;
	r->n = 0;
	CHECK(dp_impair_attach(p, 0, c) == 0, "attach");
	CHECK(dp_impair_attach(p, 0, c) == -1, "attached twice");
	struct rte_mempool *mp = dp_port_pool(p, 0);
	struct rte_mbuf *rx[64];
	for (unsigned i = 0; i < NFRAMES; i += 32) {
		struct rte_mbuf *tx[32];
		unsigned k = NFRAMES - i < 32 ? NFRAMES - i : 32;
		for (unsigned j = 0; j < k; j++) {
			tx[j] = rte_pktmbuf_alloc(mp);
			if (!tx[j]) {
				CHECK(false, "mbuf pool empty");
				return;
			}
			rte_memcpy(rte_pktmbuf_append(tx[j], FLEN), orig[i + j], FLEN);
		}
		uint16_t sent = rte_eth_tx_burst(pid, 0, tx, (uint16_t)k);
		if (c->tx) {
			/* The TX side took them all over. */
			CHECK(sent == 0, "impaired TX returned %u", sent);
			for (unsigned j = 0; j < k; j++)
				CHECK(tx[j] == NULL, "slot %u not taken", j);
		} else {
			CHECK(sent == k, "ring took %u of %u", sent, k);
		}
		uint16_t n = rte_eth_rx_burst(pid, 0, rx, 64);
		collect(pid, r, rx, n);
	}
	/* Idle: held frames come out; the TX side needs its empty kick. */
	for (int i = 0; i < 4; i++) {
		rte_eth_tx_burst(pid, 0, rx, 0);
		uint16_t n = rte_eth_rx_burst(pid, 0, rx, 64);
		collect(pid, r, rx, n);
	}
	CHECK(!dp_impair_tx_pending(pid, 0), "TX still holds frames");
	struct dp_impair_stats srx, stx;
	dp_impair_stats(p, 0, &srx, &stx);
	r->st = c->tx ? stx : srx;
	dp_impair_detach(p, 0);
}

static void check_run(const char *what, const struct run *r)
{
	const struct dp_impair_stats *s = &r->st;
	printf("%s: out %u packets %llu dropped %llu reordered %llu duplicated %llu "
	       "corrupted %llu\n",
	       what, r->n, (unsigned long long)s->packets, (unsigned long long)s->dropped,
	       (unsigned long long)s->reordered, (unsigned long long)s->duplicated,
	       (unsigned long long)s->corrupted);
	CHECK(s->packets == NFRAMES, "%s: callback saw %llu", what, (unsigned long long)s->packets);
	CHECK(r->n == NFRAMES - s->dropped + s->duplicated, "%s: %u out, want %u - %llu + %llu",
	      what, r->n, NFRAMES, (unsigned long long)s->dropped,
	      (unsigned long long)s->duplicated);
	/* With these rates and 2000 frames every fate happens (fixed seed). */
	CHECK(s->dropped && s->reordered && s->duplicated && s->corrupted,
	      "%s: a fate never happened", what);
	unsigned bad = 0, inversions = 0, prev = 0, unmatched = 0;
	for (unsigned i = 0; i < r->n && i < 2 * NFRAMES; i++) {
		const uint8_t *f = r->out[i];
		unsigned idx = (unsigned)f[38] << 24 | (unsigned)f[39] << 16 |
			       (unsigned)f[40] << 8 | f[41];
		if (!csum_ok(f)) {
			bad++;
			/* One flipped bit away from some original. */
			bool near = false;
			for (unsigned j = 0; j < NFRAMES && !near; j++)
				near = hamming(f, orig[j]) == 1;
			CHECK(near, "%s: bad frame %u is not one bit from an original", what, i);
			continue;
		}
		if (idx >= NFRAMES || memcmp(f, orig[idx], FLEN) != 0) {
			unmatched++;
			continue;
		}
		if (i > 0 && idx < prev)
			inversions++;
		prev = idx;
	}
	CHECK(unmatched == 0, "%s: %u frames with a good checksum match no original", what,
	      unmatched);
	/* A corrupted frame may also have been duplicated. */
	CHECK(bad >= s->corrupted && bad <= 2 * s->corrupted,
	      "%s: %u bad checksums, %llu corrupted", what, bad, (unsigned long long)s->corrupted);
	CHECK(inversions > 0, "%s: no frame out of order", what);
}

static void test_ring_impair(void)
{
	uint16_t pid = port_by_name("net_ring0");
	CHECK(pid != UINT16_MAX, "no net_ring0");
	if (pid == UINT16_MAX)
		return;
	static struct dp_port p;
	struct dp_port_conf pc = { .port_id = pid, .nb_queues = 1, .mbufs_per_socket = 8191 };
	if (dp_port_setup(&p, &pc) != 0) {
		CHECK(false, "dp_port_setup(net_ring0)");
		return;
	}
	build_frames();
	static uint8_t buf[4][2 * NFRAMES][FLEN];
	struct run r[4] = {
		{ .out = buf[0] }, { .out = buf[1] }, { .out = buf[2] }, { .out = buf[3] }
	};
	struct dp_impair_conf c;
	char err[128];
	CHECK(dp_impair_parse("loss=0.05,reorder=0.05,dup=0.02,corrupt=0.01,seed=42,dir=rx", &c,
			      err, sizeof(err)) == 0,
	      "parse: %s", err);
	one_run(&p, &c, &r[0]);
	check_run("rx", &r[0]);
	one_run(&p, &c, &r[1]);
	CHECK(r[0].n == r[1].n && memcmp(buf[0], buf[1], (size_t)r[0].n * FLEN) == 0,
	      "rx: same seed, different frames");
	c.seed = 43;
	one_run(&p, &c, &r[2]);
	CHECK(r[2].n != r[0].n || memcmp(buf[0], buf[2], (size_t)r[0].n * FLEN) != 0,
	      "rx: seeds 42 and 43 gave the same frames");

	c.seed = 42;
	c.rx = false;
	c.tx = true;
	one_run(&p, &c, &r[3]);
	check_run("tx", &r[3]);
	dp_port_close(&p);
}

int main(int argc, char **argv)
{
	(void)argc;
	/* --no-huge cannot go with --in-memory: a prefix per process instead. */
	char prefix[48];
	snprintf(prefix, sizeof(prefix), "--file-prefix=tes_eal_test%d", (int)getpid());
	char *eal[] = { argv[0],
			"--no-pci",
			"--no-huge",
			"--no-shconf",
			prefix,
			"-m",
			"128",
			"-l",
			"0,1",
			"--log-level=lib.eal,error",
			"--vdev=net_null0",
			"--vdev=net_ring0",
			"--no-telemetry",
			NULL };
	if (dp_eal_init((int)(sizeof(eal) / sizeof(eal[0])) - 1, eal) != 0) {
		/* With --no-huge and --no-pci nothing but privileges can stop it:
		 * as root that is a failure, not a reason to skip. */
		if (geteuid() != 0) {
			printf("SKIP: the EAL did not start (%s); not root\n",
			       rte_strerror(rte_errno));
			return 77;
		}
		fprintf(stderr, "FAIL: the EAL did not start as root with --no-huge: %s\n",
			rte_strerror(rte_errno));
		return 1;
	}
	/* The EAL leaves its (empty) runtime directory behind. */
	char rundir[512];
	snprintf(rundir, sizeof(rundir), "%s", rte_eal_get_runtime_dir());
	test_null_rss();
	test_ring_impair();
	dp_eal_cleanup();
	rmdir(rundir);
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("port/eal: ok\n");
	return 0;
}
