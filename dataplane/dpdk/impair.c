/* SPDX-License-Identifier: BSD-3-Clause */
#include "dataplane/dpdk/impair.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

/* --- The parser (no EAL) --- */

static int perr(char *err, size_t errlen, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

int dp_impair_parse(const char *spec, struct dp_impair_conf *out, char *err, size_t errlen)
{
	struct dp_impair_conf c = { .hold = 2, .rx = true, .tx = true };
	if (err && errlen)
		err[0] = '\0';
	if (!spec || !*spec)
		return perr(err, errlen, "empty impairment spec");
	if (strlen(spec) > 256)
		return perr(err, errlen, "impairment spec longer than 256 characters");
	char buf[260];
	snprintf(buf, sizeof(buf), "%s", spec);
	unsigned seen = 0;
	char *save = NULL;
	for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(item, '=');
		if (!eq || eq == item || eq[1] == '\0')
			return perr(err, errlen, "'%s': expected key=value", item);
		*eq = '\0';
		const char *key = item, *val = eq + 1;
		static const char *const keys[] = { "loss", "reorder", "dup", "corrupt",
						    "seed", "hold",    "dir" };
		unsigned k = 0;
		while (k < sizeof(keys) / sizeof(keys[0]) && strcmp(keys[k], key) != 0)
			k++;
		if (k == sizeof(keys) / sizeof(keys[0]))
			return perr(
				err, errlen,
				"unknown key '%s' (loss, reorder, dup, corrupt, seed, hold, dir)",
				key);
		if (seen & (1u << k))
			return perr(err, errlen, "'%s' given twice", key);
		seen |= 1u << k;
		char *end = NULL;
		errno = 0;
		if (k <= 3) {
			double d = strtod(val, &end);
			if (end == val || *end != '\0' || errno != 0 || !isfinite(d) || d < 0.0 ||
			    d > 1.0)
				return perr(err, errlen,
					    "%s=%s: want a probability from 0 to 1 (0.05 is 5%%)",
					    key, val);
			double *dst[] = { &c.loss, &c.reorder, &c.dup, &c.corrupt };
			*dst[k] = d;
		} else if (k == 4) {
			if (val[0] == '-')
				return perr(err, errlen, "seed=%s: want an unsigned integer", val);
			unsigned long long s = strtoull(val, &end, 0);
			if (end == val || *end != '\0' || errno != 0)
				return perr(err, errlen, "seed=%s: want an unsigned integer", val);
			c.seed = s;
		} else if (k == 5) {
			long h = strtol(val, &end, 10);
			if (end == val || *end != '\0' || errno != 0 || h < 1 ||
			    h > DP_IMPAIR_HOLD_MAX)
				return perr(err, errlen, "hold=%s: want 1 to %d packets", val,
					    DP_IMPAIR_HOLD_MAX);
			c.hold = (unsigned)h;
		} else {
			if (strcmp(val, "rx") == 0)
				c.tx = false;
			else if (strcmp(val, "tx") == 0)
				c.rx = false;
			else if (strcmp(val, "both") != 0)
				return perr(err, errlen, "dir=%s: want rx, tx or both", val);
		}
	}
	if (c.loss + c.reorder >= 1.0)
		return perr(err, errlen, "loss + reorder must stay below 1 (nothing would pass)");
	*out = c;
	return 0;
}

/* --- Per queue and direction --- */

struct imp_dir {
	uint64_t rng;
	struct rte_mbuf *held[DP_IMPAIR_HOLD_MAX];
	uint8_t left[DP_IMPAIR_HOLD_MAX]; /* packets to pass before release */
	uint64_t since[DP_IMPAIR_HOLD_MAX];
	unsigned nheld;
	bool busy; /* TX: our own nested rte_eth_tx_burst */
	const struct rte_eth_rxtx_callback *cb;
	struct dp_impair_stats st;
};

struct imp_q {
	bool on;
	uint16_t port, queue;
	struct dp_impair_conf conf;
	uint64_t hold_tsc;
	struct imp_dir rx, tx;
};

static struct imp_q imps[DP_IMPAIR_MAX_PORTS][DP_MAX_QUEUES];

static struct imp_q *imp_get(uint16_t port, uint16_t queue)
{
	if (port >= DP_IMPAIR_MAX_PORTS || queue >= DP_MAX_QUEUES)
		return NULL;
	return &imps[port][queue];
}

/* splitmix64: tiny, seedable, good enough to pick fates. */
static uint64_t rnd(struct imp_dir *d)
{
	uint64_t z = (d->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double unit(uint64_t r)
{
	return (double)(r >> 11) * 0x1.0p-53;
}

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* Flip one bit after the IPv6 header (the transport header or its data:
 * the TCP checksum catches it; the stack's ICMPv6 checksum too). */
static bool corrupt6(struct rte_mbuf *m, uint8_t *b, uint64_t r, bool tx)
{
	if (m->data_len < 14 + 40)
		return false;
	struct rte_ipv6_hdr *ip6 = (struct rte_ipv6_hdr *)(b + 14);
	unsigned plen = rte_be_to_cpu_16(ip6->payload_len);
	unsigned end = 14 + 40 + plen < m->data_len ? 14 + 40 + plen : m->data_len;
	if (end <= 14 + 40)
		return false;
	if (tx && (m->ol_flags & RTE_MBUF_F_TX_L4_MASK)) {
		if ((m->ol_flags & RTE_MBUF_F_TX_L4_MASK) == RTE_MBUF_F_TX_TCP_CKSUM &&
		    ip6->proto == IPPROTO_TCP && end >= 14 + 40 + 20) {
			struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(b + 14 + 40);
			th->cksum = 0;
			th->cksum = rte_ipv6_udptcp_cksum(ip6, th);
		}
		m->ol_flags &= ~RTE_MBUF_F_TX_L4_MASK;
	}
	unsigned off = 14 + 40 + (unsigned)(r % (end - 14 - 40));
	b[off] ^= (uint8_t)(1u << ((r >> 32) & 7));
	if (!tx)
		m->ol_flags &= ~(RTE_MBUF_F_RX_IP_CKSUM_MASK | RTE_MBUF_F_RX_L4_CKSUM_MASK);
	return true;
}

/* Flip one bit after the IPv4 (or IPv6) header.  False when the frame is
 * not a single-segment IPv4 or IPv6 packet with a payload. */
static bool corrupt(struct rte_mbuf *m, uint64_t r, bool tx)
{
	if (m->nb_segs != 1 || m->data_len < 14 + 20)
		return false;
	uint8_t *b = rte_pktmbuf_mtod(m, uint8_t *);
	if (rd16(b + 12) == 0x86dd)
		return corrupt6(m, b, r, tx);
	if (rd16(b + 12) != 0x0800)
		return false;
	struct rte_ipv4_hdr *ip = (struct rte_ipv4_hdr *)(b + 14);
	unsigned ihl = (ip->version_ihl & 0xfu) * 4u;
	unsigned tot = rte_be_to_cpu_16(ip->total_length);
	unsigned end = 14 + tot < m->data_len ? 14 + tot : m->data_len;
	if (ihl < 20 || end <= 14 + ihl)
		return false;
	const uint64_t tx_ck = RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_L4_MASK;
	if (tx && (m->ol_flags & tx_ck)) {
		/* Fill the checksums before the flip, or the PMD would
		 * compute them over the flipped bit and hide it. */
		if ((m->ol_flags & RTE_MBUF_F_TX_L4_MASK) == RTE_MBUF_F_TX_TCP_CKSUM &&
		    ip->next_proto_id == IPPROTO_TCP && end >= 14 + ihl + 20) {
			struct rte_tcp_hdr *th = (struct rte_tcp_hdr *)(b + 14 + ihl);
			th->cksum = 0;
			th->cksum = rte_ipv4_udptcp_cksum(ip, th);
		}
		ip->hdr_checksum = 0;
		ip->hdr_checksum = rte_ipv4_cksum(ip);
		m->ol_flags &= ~tx_ck;
	}
	unsigned off = 14 + ihl + (unsigned)(r % (end - 14 - ihl));
	b[off] ^= (uint8_t)(1u << ((r >> 32) & 7));
	if (!tx)
		m->ol_flags &= ~(RTE_MBUF_F_RX_IP_CKSUM_MASK | RTE_MBUF_F_RX_L4_CKSUM_MASK);
	return true;
}

/* Release held packets whose count ran out (or all) into out[]. */
static unsigned release(struct imp_dir *d, bool all, uint64_t now, uint64_t hold_tsc,
			struct rte_mbuf **out, unsigned n, unsigned cap)
{
	unsigned k = 0;
	for (unsigned i = 0; i < d->nheld; i++) {
		bool go = all || d->left[i] == 0 || now - d->since[i] > hold_tsc;
		if (go && n < cap) {
			out[n++] = d->held[i];
		} else {
			d->held[k] = d->held[i];
			d->left[k] = d->left[i];
			d->since[k] = d->since[i];
			k++;
		}
	}
	d->nheld = k;
	return n;
}

/* The fate of n packets: survivors (and copies, and released ones) in
 * out[], at most cap. */
static unsigned process(struct imp_q *q, struct imp_dir *d, bool tx, struct rte_mbuf **in,
			unsigned n, struct rte_mbuf **out, unsigned cap)
{
	const struct dp_impair_conf *c = &q->conf;
	uint64_t now = rte_rdtsc();
	unsigned o = 0;
	/* The queue went idle, or something was held too long. */
	o = release(d, n == 0, now, q->hold_tsc, out, o, cap);
	for (unsigned i = 0; i < n; i++) {
		struct rte_mbuf *m = in[i];
		/* Five draws whatever happens: fates depend only on the
		 * packet's position in the stream. */
		uint64_t r_loss = rnd(d), r_cor = rnd(d), r_dup = rnd(d), r_ro = rnd(d),
			 r_x = rnd(d);
		d->st.packets++;
		if (unit(r_loss) < c->loss) {
			rte_pktmbuf_free(m);
			d->st.dropped++;
			continue;
		}
		if (unit(r_cor) < c->corrupt && corrupt(m, r_x, tx))
			d->st.corrupted++;
		struct rte_mbuf *copy = NULL;
		if (unit(r_dup) < c->dup) {
			copy = rte_pktmbuf_copy(m, m->pool, 0, UINT32_MAX);
			if (copy)
				d->st.duplicated++;
			else
				d->st.dup_failed++;
		}
		if (unit(r_ro) < c->reorder && d->nheld < DP_IMPAIR_HOLD_MAX) {
			d->held[d->nheld] = m;
			d->left[d->nheld] = (uint8_t)(1 + (r_x >> 40) % c->hold);
			d->since[d->nheld] = now;
			d->nheld++;
			d->st.reordered++;
			m = NULL;
		}
		/* A burst already full (copies, releases): what does not fit
		 * waits among the held ones for the next call, or, with no
		 * room there either, is lost (counted). */
		struct rte_mbuf *emit[2] = { m, copy };
		for (int e = 0; e < 2; e++) {
			if (!emit[e])
				continue;
			if (o < cap) {
				out[o++] = emit[e];
			} else if (d->nheld < DP_IMPAIR_HOLD_MAX) {
				d->held[d->nheld] = emit[e];
				d->left[d->nheld] = 0;
				d->since[d->nheld] = now;
				d->nheld++;
			} else {
				rte_pktmbuf_free(emit[e]);
				if (e == 0) {
					d->st.dropped++;
				} else {
					d->st.duplicated--;
					d->st.dup_failed++;
				}
			}
		}
		if (m) {
			for (unsigned h = 0; h < d->nheld; h++)
				if (d->left[h])
					d->left[h]--;
			o = release(d, false, now, q->hold_tsc, out, o, cap);
		}
	}
	return o;
}

/* At most this many packets are impaired per RX call; the worker polls 32. */
#define IMP_RX_MAX 256

static uint16_t rx_cb(uint16_t port, uint16_t queue, struct rte_mbuf *pkts[], uint16_t nb,
		      uint16_t max, void *arg)
{
	(void)port;
	(void)queue;
	struct imp_q *q = arg;
	if (nb > IMP_RX_MAX)
		return nb;
	struct rte_mbuf *in[IMP_RX_MAX];
	memcpy(in, pkts, nb * sizeof(in[0]));
	return (uint16_t)process(q, &q->rx, false, in, nb, pkts, max);
}

#define IMP_TX_CHUNK 32

static uint16_t tx_cb(uint16_t port, uint16_t queue, struct rte_mbuf *pkts[], uint16_t nb,
		      void *arg)
{
	struct imp_q *q = arg;
	struct imp_dir *d = &q->tx;
	if (d->busy)
		return nb; /* our own send below */
	d->busy = true;
	unsigned i = 0;
	do {
		unsigned k = nb - i < IMP_TX_CHUNK ? nb - i : IMP_TX_CHUNK;
		struct rte_mbuf *out[2 * IMP_TX_CHUNK + DP_IMPAIR_HOLD_MAX];
		unsigned o = process(q, d, true, pkts + i, k, out, RTE_DIM(out));
		unsigned sent = 0;
		for (int tries = 0; tries < 4 && sent < o; tries++)
			sent += rte_eth_tx_burst(port, queue, out + sent, (uint16_t)(o - sent));
		if (sent < o) {
			d->st.tx_refused += o - sent;
			rte_pktmbuf_free_bulk(out + sent, o - sent);
		}
		for (unsigned j = i; j < i + k; j++)
			pkts[j] = NULL;
		i += k;
	} while (i < nb);
	d->busy = false;
	return 0;
}

int dp_impair_attach(const struct dp_port *p, uint16_t queue, const struct dp_impair_conf *c)
{
	struct imp_q *q = imp_get(p->port_id, queue);
	if (!q || queue >= p->nb_queues) {
		fprintf(stderr, "dpdk: impair: port %u queue %u out of range\n", p->port_id, queue);
		return -1;
	}
	if (q->on) {
		fprintf(stderr, "dpdk: impair: port %u queue %u already impaired\n", p->port_id,
			queue);
		return -1;
	}
	memset(q, 0, sizeof(*q));
	q->port = p->port_id;
	q->queue = queue;
	q->conf = *c;
	if (q->conf.hold == 0 || q->conf.hold > DP_IMPAIR_HOLD_MAX)
		q->conf.hold = 2;
	q->hold_tsc = rte_get_tsc_hz() / 1000;
	/* Different streams per queue and direction from one seed. */
	q->rx.rng = c->seed ^ (0x5851f42d4c957f2dull * (2u * queue + 1));
	q->tx.rng = c->seed ^ (0x5851f42d4c957f2dull * (2u * queue + 2));
	if (c->rx) {
		q->rx.cb = rte_eth_add_rx_callback(p->port_id, queue, rx_cb, q);
		if (!q->rx.cb) {
			fprintf(stderr, "dpdk: impair: RX callback on port %u queue %u: %s\n",
				p->port_id, queue, rte_strerror(rte_errno));
			return -1;
		}
	}
	if (c->tx) {
		q->tx.cb = rte_eth_add_tx_callback(p->port_id, queue, tx_cb, q);
		if (!q->tx.cb) {
			fprintf(stderr, "dpdk: impair: TX callback on port %u queue %u: %s\n",
				p->port_id, queue, rte_strerror(rte_errno));
			if (q->rx.cb)
				rte_eth_remove_rx_callback(p->port_id, queue, q->rx.cb);
			q->rx.cb = NULL;
			return -1;
		}
	}
	q->on = true;
	printf("dpdk: impair: port %u queue %u: loss %g reorder %g dup %g corrupt %g seed %" PRIu64
	       " hold %u%s%s\n",
	       p->port_id, queue, c->loss, c->reorder, c->dup, c->corrupt, c->seed, q->conf.hold,
	       c->rx ? " rx" : "", c->tx ? " tx" : "");
	return 0;
}

void dp_impair_detach(const struct dp_port *p, uint16_t queue)
{
	struct imp_q *q = imp_get(p->port_id, queue);
	if (!q || !q->on)
		return;
	/* The callback structures themselves stay allocated: ethdev cannot
	 * know when a concurrent burst has left them (its documented rule);
	 * our state is static, so a late caller finds it intact. */
	if (q->rx.cb)
		rte_eth_remove_rx_callback(p->port_id, queue, q->rx.cb);
	if (q->tx.cb)
		rte_eth_remove_tx_callback(p->port_id, queue, q->tx.cb);
	q->rx.cb = q->tx.cb = NULL;
	for (unsigned i = 0; i < q->rx.nheld; i++)
		rte_pktmbuf_free(q->rx.held[i]);
	for (unsigned i = 0; i < q->tx.nheld; i++)
		rte_pktmbuf_free(q->tx.held[i]);
	q->rx.nheld = q->tx.nheld = 0;
	q->on = false;
}

void dp_impair_stats(const struct dp_port *p, uint16_t queue, struct dp_impair_stats *rx,
		     struct dp_impair_stats *tx)
{
	struct imp_q *q = imp_get(p->port_id, queue);
	bool on = q && (q->on || q->rx.st.packets || q->tx.st.packets);
	if (rx)
		*rx = on ? q->rx.st : (struct dp_impair_stats){ 0 };
	if (tx)
		*tx = on ? q->tx.st : (struct dp_impair_stats){ 0 };
}

void dp_impair_log_stats(const struct dp_port *p, uint16_t queue, FILE *f)
{
	struct dp_impair_stats s[2];
	dp_impair_stats(p, queue, &s[0], &s[1]);
	for (int i = 0; i < 2; i++)
		fprintf(f,
			"dpdk: impair port %u queue %u %s: packets %" PRIu64 " dropped %" PRIu64
			" reordered %" PRIu64 " duplicated %" PRIu64 " corrupted %" PRIu64
			" dup_failed %" PRIu64 " tx_refused %" PRIu64 "\n",
			p->port_id, queue, i ? "tx" : "rx", s[i].packets, s[i].dropped,
			s[i].reordered, s[i].duplicated, s[i].corrupted, s[i].dup_failed,
			s[i].tx_refused);
}

bool dp_impair_tx_pending(uint16_t port_id, uint16_t queue)
{
	struct imp_q *q = imp_get(port_id, queue);
	return q && q->on && q->tx.nheld > 0;
}
