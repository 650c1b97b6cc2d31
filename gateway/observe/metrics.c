/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/observe/metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <rte_ethdev.h>
#include <rte_mempool.h>

#include "contract/promfmt.h"
#include "dataplane/dpdk/port.h"
#include "dataplane/dpdk/worker.h"
#include "dataplane/stack/stack.h"
#include "enforce/build.h"
#include "gateway/delivery/backends.h"
#include "gateway/config.h"
#include "gateway/conn/conn.h"
#include "gateway/state/ctlclient.h"
#include "gateway/conn/dpdk.h"
#include "gateway/state/enfstate.h"
#include "gateway/observe/log.h"
#include "gateway/session/tls.h"
#include "gateway/observe/verdictlog.h"

#ifndef TES_VERSION
#define TES_VERSION "unknown"
#endif

struct gw_metrics {
	struct MHD_Daemon *d;
	struct gw_metrics_src src;
};

static uint64_t sum_slots(const uint64_t *v, size_t n)
{
	uint64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s += v[i];
	return s;
}

/* prom_sample takes one label; these families have two. */
static void sample2(struct prom_buf *b, const char *name, const char *l1, const char *v1,
		    const char *l2, const char *v2, uint64_t v)
{
	prom_printf(b, "%s{%s=\"", name, l1);
	prom_label_value(b, v1);
	prom_printf(b, "\",%s=\"", l2);
	prom_label_value(b, v2);
	prom_printf(b, "\"} %llu\n", (unsigned long long)v);
}

static void counter(struct prom_buf *b, const char *name, const char *help, uint64_t v)
{
	prom_family(b, name, "counter", help);
	prom_sample(b, name, NULL, NULL, v);
}

static void gauge(struct prom_buf *b, const char *name, const char *help, uint64_t v)
{
	prom_family(b, name, "gauge", help);
	prom_sample(b, name, NULL, NULL, v);
}

static void render_connections(struct prom_buf *b, const struct gw_io_stats *ks,
			       const struct gw_stats *gs)
{
	const char *n;

	counter(b, "tes_connections_accepted_total",
		"Connections accepted within the connection limits", ks->accepted);
	n = "tes_connections_refused_total";
	prom_family(b, n, "counter",
		    "Connections refused at accept: over max_connections (global), over "
		    "max_connections_per_source (source), or by the gateway (app: early drops, "
		    "shutdown)");
	prom_sample(b, n, "reason", "global", ks->refused_global);
	prom_sample(b, n, "reason", "source", ks->refused_source);
	prom_sample(b, n, "reason", "app", ks->refused_app);
	counter(b, "tes_connections_early_dropped_total",
		"Connections from sources in drop, closed without a greeting", gs->early_drops);
	n = "tes_connection_timeouts_total";
	prom_family(b, n, "counter", "Connections closed by a timeout");
	prom_sample(b, n, "kind", "idle", ks->timeouts_idle);
	prom_sample(b, n, "kind", "session", ks->timeouts_session);
	gauge(b, "tes_connections_open", "Connections open now", ks->open);
	counter(b, "tes_received_bytes_total", "Octets read from SMTP clients (TLS included)",
		ks->bytes_in);
	counter(b, "tes_sent_bytes_total",
		"Octets written to SMTP clients (TLS included; not the refusal lines of "
		"connections refused at accept)",
		ks->bytes_out);
	counter(b, "tes_io_wakeups_total",
		"Times a kernel-socket worker woke from epoll_wait (0 with io = dpdk, whose "
		"workers poll)",
		ks->wakeups);
}

static void render_smtp(struct prom_buf *b, const struct gw_stats *gs)
{
	static const char *const actions[4] = { "accept", "throttle", "block", "drop" };
	struct prom_hist h;
	const char *n;

	counter(b, "tes_smtp_sessions_total", "SMTP sessions begun (greeting sent)", gs->sessions);
	counter(b, "tes_smtp_commands_total", "SMTP command lines read from clients",
		gs->smtp_commands);
	n = "tes_smtp_replies_total";
	prom_family(b, n, "counter", "SMTP replies sent to clients, by code class");
	prom_sample(b, n, "class", "2xx", gs->smtp_replies[2]);
	prom_sample(b, n, "class", "3xx", gs->smtp_replies[3]);
	prom_sample(b, n, "class", "4xx", gs->smtp_replies[4]);
	prom_sample(b, n, "class", "5xx", gs->smtp_replies[5]);
	n = "tes_messages_total";
	prom_family(b, n, "counter",
		    "Messages whose content was received, by the client's final reply "
		    "(accepted: the backend said 250; refused: 4xx or 5xx)");
	prom_sample(b, n, "outcome", "accepted", gs->messages_accepted);
	prom_sample(b, n, "outcome", "refused", gs->messages_refused);
	n = "tes_delivery_duration_seconds";
	prom_family(b, n, "histogram",
		    "Time from the end of a message's content to the delivery backend's verdict");
	memset(&h, 0, sizeof(h));
	for (int i = 0; i <= GW_LATENCY_BOUNDS; i++) {
		h.counts[i] = gs->latency[i];
		h.count += gs->latency[i];
	}
	h.sum = (double)gs->latency_sum_us / 1e6;
	prom_hist_write(b, n, gw_latency_bounds, GW_LATENCY_BOUNDS, &h);
	counter(b, "tes_verdicts_orphaned_total",
		"Delivery verdicts that arrived after their client had gone", gs->orphaned);
	n = "tes_enforcement_verdicts_total";
	prom_family(b, n, "counter",
		    "Enforcement verdicts by decision point (mail: MAIL FROM from a known "
		    "source; headers: end of the headers of an Exchange message) and action");
	for (int a = 0; a < 4; a++)
		sample2(b, n, "at", "mail", "action", actions[a], gs->mail_verdicts[a]);
	for (int a = 0; a < 4; a++)
		sample2(b, n, "at", "headers", "action", actions[a], gs->header_verdicts[a]);
	n = "tes_exchange_messages_total";
	prom_family(b, n, "counter",
		    "Messages with an Exchange hop in their Received headers, by product family "
		    "(none: a build no family is known for)");
	for (int f = 0; f < EX_FAMILY_COUNT; f++)
		prom_sample(b, n, "family", ex_family_name((enum ex_family)f), gs->family[f]);
	counter(b, "tes_non_exchange_messages_total",
		"Header sections scanned that had no Exchange hop", gs->not_exchange);
}

static void render_tls(struct prom_buf *b, const struct gw_stats *gs)
{
	const char *n;

	counter(b, "tes_starttls_total", "STARTTLS commands accepted", gs->tls_starts);
	n = "tes_tls_handshakes_total";
	prom_family(b, n, "counter", "TLS handshakes by result");
	prom_sample(b, n, "result", "full", sum_slots(gs->tls.full, TLS_V_COUNT));
	prom_sample(b, n, "result", "resumed", sum_slots(gs->tls.resumed, TLS_V_COUNT));
	prom_sample(b, n, "result", "failed", sum_slots(gs->tls.failed, TLS_V_COUNT));
	n = "tes_tls_handshake_failures_total";
	prom_family(b, n, "counter", "Failed TLS handshakes by reason");
	for (int r = 0; r < TLS_FAIL_COUNT; r++)
		prom_sample(b, n, "reason", tls_fail_reason_name((enum tls_fail_reason)r),
			    gs->tls.fail_reason[r]);
}

static void render_delivery(struct prom_buf *b, const struct backends *bk)
{
	const char *n = "tes_deliveries_total";
	const char *nb = "tes_delivered_bytes_total";

	/* Only the open backend's series exist: a spool gateway has no relay
	 * outcomes to report as zero. */
	if (bk->sp) {
		struct spool_stats ss;

		spool_stats(bk->sp, &ss);
		prom_family(b, n, "counter", "Delivery outcomes by backend");
		sample2(b, n, "backend", "spool", "outcome", "stored", ss.stored);
		sample2(b, n, "backend", "spool", "outcome", "failed", ss.failed);
		sample2(b, n, "backend", "spool", "outcome", "aborted", ss.aborted);
		prom_family(b, nb, "counter", "Message content octets delivered by backend");
		prom_sample(b, nb, "backend", "spool", ss.bytes);
	} else if (bk->rl) {
		struct relay_stats rs;

		relay_stats(bk->rl, &rs);
		prom_family(b, n, "counter", "Delivery outcomes by backend");
		sample2(b, n, "backend", "smtp", "outcome", "relayed", rs.relayed);
		sample2(b, n, "backend", "smtp", "outcome", "temp_fail", rs.temp_fail);
		sample2(b, n, "backend", "smtp", "outcome", "perm_fail", rs.perm_fail);
		sample2(b, n, "backend", "smtp", "outcome", "queue_full", rs.queue_full);
		sample2(b, n, "backend", "smtp", "outcome", "aborted", rs.aborted);
		prom_family(b, nb, "counter", "Message content octets delivered by backend");
		prom_sample(b, nb, "backend", "smtp", rs.bytes);
		counter(b, "tes_relay_connections_total", "Connections opened to the backend MTA",
			rs.connections);
		counter(b, "tes_relay_retries_total",
			"Messages tried again after a stale backend connection", rs.retried);
	}
}

static void render_control(struct prom_buf *b, const struct gw_metrics_src *s)
{
	struct ctlclient_stats cs;
	struct enfstate_stats es;
	const char *n;

	memset(&cs, 0, sizeof(cs));
	if (s->cc)
		ctlclient_stats(s->cc, &cs);
	/* Apart from connected, so an alert on a lost control plane can leave
	 * gateways that run without one on purpose alone. */
	gauge(b, "tes_control_configured", "1 when control_socket is set", s->cc != NULL);
	gauge(b, "tes_control_connected",
	      "1 while the connection to tescontrol is up (0 also when none is configured)",
	      cs.connected);
	gauge(b, "tes_control_synced", "1 once a full state from tescontrol has been applied",
	      cs.synced);
	gauge(b, "tes_control_generation",
	      "tescontrol's state generation this gateway last applied (tesctl status shows"
	      " tescontrol's own; 0 while a full state is arriving)",
	      cs.generation);
	counter(b, "tes_control_connects_total", "Connections made to tescontrol", cs.connects);
	counter(b, "tes_control_updates_total", "Incremental state messages applied", cs.updates);
	counter(b, "tes_control_rejected_total", "Messages from tescontrol that did not decode",
		cs.rejected);
	counter(b, "tes_sightings_sent_total", "Exchange sightings sent to tescontrol",
		cs.sightings_sent);
	counter(b, "tes_sightings_coalesced_total",
		"Exchange sightings counted into another one instead of sent (within a second of"
		" an identical one)",
		cs.sightings_coalesced);
	counter(b, "tes_sightings_dropped_total",
		"Exchange sightings dropped because a worker's queue to tescontrol was full",
		cs.sightings_dropped);

	counter(b, "tes_sightings_untrusted_total",
		"Exchange sightings in mail over no connector under scope connectors: counted, not"
		" sent to tescontrol",
		cs.sightings_untrusted);
	counter(b, "tes_sightings_untrusted_dropped_total",
		"Of the sightings dropped, those of mail over no connector (scope all): their queue"
		" is separate, so a flood of them crowds out no connector's",
		cs.sightings_untrusted_dropped);
	counter(b, "tes_sightings_limited_total",
		"Exchange sightings of servers not on record over a tenant's budget per worker and"
		" second (a tenant flooding new names takes only its share of the queue to"
		" tescontrol)",
		cs.sightings_limited);
	counter(b, "tes_sightings_capped_total",
		"Exchange sightings of servers not on record of a tenant at its server cap:"
		" counted, not sent to tescontrol",
		cs.sightings_capped);

	enfstate_stats(s->st, &es);
	counter(b, "tes_probes_total",
		"Transactions let through a full block to their headers as a probe (one per"
		" server, source and probe_interval)",
		es.probes);
	n = "tes_enforcement_table_entries";
	prom_family(b, n, "gauge", "Entries in the enforcement state tables workers decide from");
	prom_sample(b, n, "table", "servers", es.servers);
	prom_sample(b, n, "table", "sources", es.sources);
	prom_sample(b, n, "table", "tenants", es.tenants);
}

/* ---- io = dpdk: port, mempools, workers, stacks ---- */

/* Stack counters exported per worker: the ones an operator watches for
 * loss, floods and abuse.  The rest are on the telemetry socket
 * (/tesgate/stack). */
static const struct {
	const char *name, *help;
	size_t off;
} stack_counters[] = {
#define SC(m, f, h)                                   \
	{                                             \
		m, h, offsetof(struct stack_stats, f) \
	}
	SC("tes_stack_received_frames_total", rx_frames, "Frames the stack received"),
	SC("tes_stack_sent_frames_total", tx_frames, "Frames the stack sent"),
	SC("tes_stack_connections_accepted_total", accepts,
	   "TCP connections accepted by the stack's listener"),
	SC("tes_stack_connections_established_total", established,
	   "TCP connections that reached ESTABLISHED"),
	SC("tes_stack_retransmits_total", retransmits,
	   "TCP segments sent again (data, FIN, SYN; fast retransmits included)"),
	SC("tes_stack_rto_expirations_total", rto_expired, "TCP retransmission timeouts"),
	SC("tes_stack_syn_cookies_sent_total", syn_cookies_sent,
	   "SYN-ACKs with a SYN cookie, sent when the SYN queue was full"),
	SC("tes_stack_syn_cookies_validated_total", syn_cookies_validated,
	   "ACKs that carried a valid SYN cookie (a connection made from it)"),
	SC("tes_stack_syn_cookies_failed_total", syn_cookies_failed,
	   "ACKs whose SYN cookie did not validate"),
	SC("tes_stack_checksum_errors_total", checksum_errors,
	   "Packets dropped for a bad IPv4, ICMP or TCP checksum"),
	SC("tes_stack_out_of_order_segments_total", ooo_segments,
	   "TCP segments received out of order and kept"),
	SC("tes_stack_out_of_order_dropped_total", ooo_dropped,
	   "Out-of-order TCP segments dropped (over the per-connection cap)"),
	SC("tes_stack_early_drops_total", early_drops,
	   "SYNs from sources in drop, discarded before any state existed"),
	SC("tes_stack_syn_queue_full_total", syn_queue_full, "SYNs that found the SYN queue full"),
	SC("tes_stack_resets_received_total", rst_rx, "TCP resets received"),
	SC("tes_stack_resets_sent_total", rst_tx, "TCP resets sent"),
	SC("tes_stack_idle_timeouts_total", idle_timeouts,
	   "TCP connections closed by the stack's idle timeout"),
#undef SC
};

static void render_dpdk_port(struct prom_buf *b, const struct dp_port *p)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} fields[] = {
#define PF(m, f, h) { m, h, offsetof(struct rte_eth_stats, f) }
		PF("tes_dpdk_port_received_packets_total", ipackets,
		   "Packets the port received (rte_eth_stats ipackets)"),
		PF("tes_dpdk_port_sent_packets_total", opackets,
		   "Packets the port sent (rte_eth_stats opackets)"),
		PF("tes_dpdk_port_received_bytes_total", ibytes, "Octets the port received"),
		PF("tes_dpdk_port_sent_bytes_total", obytes, "Octets the port sent"),
		PF("tes_dpdk_port_missed_packets_total", imissed,
		   "Packets the port dropped because the receive queues were full (imissed)"),
		PF("tes_dpdk_port_receive_errors_total", ierrors, "Erroneous packets received"),
		PF("tes_dpdk_port_send_errors_total", oerrors, "Packets the port failed to send"),
		PF("tes_dpdk_port_receive_no_mbuf_total", rx_nombuf,
		   "Receive buffer allocation failures (the mempool was empty)"),
#undef PF
	};
	struct rte_eth_stats es;
	char port[8];

	/* A read of the driver's counters that touches no queue: DPDK's own
	 * telemetry thread makes the same call while the workers poll. */
	if (rte_eth_stats_get(p->port_id, &es) != 0)
		return;
	snprintf(port, sizeof(port), "%u", p->port_id);
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		uint64_t v;

		memcpy(&v, (const char *)&es + fields[i].off, sizeof(v));
		prom_family(b, fields[i].name, "counter", fields[i].help);
		prom_sample(b, fields[i].name, "port", port, v);
	}
}

static void render_dpdk_pools(struct prom_buf *b, const struct dp_port *p)
{
	const char *na = "tes_dpdk_mempool_available_mbufs";
	const char *nu = "tes_dpdk_mempool_in_use_mbufs";
	const struct rte_mempool *seen[DP_MAX_SOCKETS];
	size_t nseen = 0;

	for (int s = 0; s < DP_MAX_SOCKETS; s++) {
		const struct rte_mempool *mp = p->pool[s];
		bool dup = false;

		for (size_t i = 0; i < nseen; i++)
			dup |= seen[i] == mp;
		if (mp && !dup)
			seen[nseen++] = mp;
	}
	if (!nseen)
		return;
	prom_family(b, na, "gauge",
		    "Packet buffers free in the mempool (per-lcore caches included)");
	for (size_t i = 0; i < nseen; i++)
		prom_sample(b, na, "pool", seen[i]->name, rte_mempool_avail_count(seen[i]));
	prom_family(b, nu, "gauge", "Packet buffers of the mempool in use");
	for (size_t i = 0; i < nseen; i++)
		prom_sample(b, nu, "pool", seen[i]->name, rte_mempool_in_use_count(seen[i]));
}

static void render_dpdk_workers(struct prom_buf *b, const struct dpgw *d)
{
	static const struct {
		const char *name, *help;
		size_t off;
	} fields[] = {
#define WF(m, f, h) { m, h, offsetof(struct dp_worker_stats, f) }
		WF("tes_dpdk_worker_received_packets_total", rx_pkts,
		   "Packets the worker took from its receive queue"),
		WF("tes_dpdk_worker_sent_packets_total", tx_pkts,
		   "Packets the worker put on its transmit queue"),
		WF("tes_dpdk_worker_send_dropped_packets_total", tx_drops,
		   "Packets the transmit queue would not take after retries"),
		WF("tes_dpdk_worker_checksum_bad_packets_total", rx_csum_bad,
		   "Packets the NIC marked with a bad checksum"),
		WF("tes_dpdk_worker_poll_loops_total", loops, "Iterations of the poll loop"),
		WF("tes_dpdk_worker_steered_out_packets_total", steered_out,
		   "Packets received by this worker and handed to the worker owning their flow"),
		WF("tes_dpdk_worker_steered_in_packets_total", steered_in,
		   "Packets taken from this worker's steering ring (other workers received them)"),
		WF("tes_dpdk_worker_steer_dropped_packets_total", steer_drops,
		   "Packets dropped because the owning worker's steering ring was full"),
		WF("tes_dpdk_worker_arp_shared_total", arp_shared,
		   "Copies of ARP replies passed to the other workers"),
#undef WF
	};
	unsigned n = dpgw_workers(d);
	struct dp_worker_stats *ws = calloc(n ? n : 1, sizeof(*ws));
	struct stack_stats *ss = calloc(n ? n : 1, sizeof(*ss));
	struct stack_mem *sm = calloc(n ? n : 1, sizeof(*sm));
	const char *nc = "tes_stack_connections";
	char w[12];

	if (!ws || !ss || !sm) {
		b->failed = true;
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		dpgw_worker_stats(d, i, &ws[i]);
		dpgw_stack_stats(d, i, &ss[i]);
		dpgw_stack_mem(d, i, &sm[i]);
	}
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		prom_family(b, fields[f].name, "counter", fields[f].help);
		for (unsigned i = 0; i < n; i++) {
			uint64_t v;

			memcpy(&v, (const char *)&ws[i] + fields[f].off, sizeof(v));
			snprintf(w, sizeof(w), "%u", i);
			prom_sample(b, fields[f].name, "worker", w, v);
		}
	}
	/* seconds, as Prometheus wants time */
	const char *busy = "tes_dpdk_worker_busy_seconds_total";
	prom_family(b, busy, "counter",
		    "Time in poll loop iterations that received or sent packets (the rest "
		    "is spent polling empty queues)");
	for (unsigned i = 0; i < n; i++) {
		prom_printf(b, "%s{worker=\"%u\"} ", busy, i);
		prom_double(b, (double)ws[i].busy_ns / 1e9);
		prom_append(b, "\n", 1);
	}
	for (size_t f = 0; f < sizeof(stack_counters) / sizeof(stack_counters[0]); f++) {
		prom_family(b, stack_counters[f].name, "counter", stack_counters[f].help);
		for (unsigned i = 0; i < n; i++) {
			uint64_t v;

			memcpy(&v, (const char *)&ss[i] + stack_counters[f].off, sizeof(v));
			snprintf(w, sizeof(w), "%u", i);
			prom_sample(b, stack_counters[f].name, "worker", w, v);
		}
	}
	prom_family(b, nc, "gauge", "TCP connections of the stack by state");
	for (unsigned i = 0; i < n; i++) {
		snprintf(w, sizeof(w), "%u", i);
		for (int s = 0; s < TCP_NSTATES; s++)
			sample2(b, nc, "worker", w, "state", tcp_state_name((enum tcp_state)s),
				ss[i].conns_by_state[s]);
	}
	prom_family(b, "tes_stack_memory_used_bytes", "gauge",
		    "Memory the stack has accounted to connections and buffers");
	for (unsigned i = 0; i < n; i++) {
		snprintf(w, sizeof(w), "%u", i);
		prom_sample(b, "tes_stack_memory_used_bytes", "worker", w, sm[i].used);
	}
	prom_family(b, "tes_stack_memory_budget_bytes", "gauge",
		    "The stack's memory budget; beyond it new connections are refused");
	for (unsigned i = 0; i < n; i++) {
		snprintf(w, sizeof(w), "%u", i);
		prom_sample(b, "tes_stack_memory_budget_bytes", "worker", w, sm[i].budget);
	}
out:
	free(ws);
	free(ss);
	free(sm);
}

static void render_dpdk(struct prom_buf *b, const struct dpgw *d)
{
	const struct dp_port *p = dpgw_port(d);

	render_dpdk_port(b, p);
	render_dpdk_pools(b, p);
	render_dpdk_workers(b, d);
}

static void render_verdictlog(struct prom_buf *b, const struct verdictlog *vl)
{
	struct verdictlog_stats vs;

	verdictlog_stats(vl, &vs);
	counter(b, "tes_verdict_log_lines_total", "Lines written to verdict_log", vs.lines);
	counter(b, "tes_verdict_log_dropped_total",
		"Verdict records dropped because a worker's queue to the log writer was full",
		vs.dropped);
	counter(b, "tes_verdict_log_write_errors_total",
		"Verdict lines lost to a failed write to verdict_log", vs.write_errors);
}

static void render(struct prom_buf *b, const struct gw_metrics_src *s)
{
	struct gw_io_stats ks;
	struct gw_stats gs;

	s->io->ops->stats(s->io->t, &ks);
	gw_stats(s->g, &gs);
	prom_family(b, "tes_tesgate_build_info", "gauge", "Always 1; the version in a label");
	prom_sample(b, "tes_tesgate_build_info", "version", TES_VERSION, 1);
	render_connections(b, &ks, &gs);
	render_smtp(b, &gs);
	render_tls(b, &gs);
	render_delivery(b, s->bk);
	render_control(b, s);
	if (s->dp)
		render_dpdk(b, s->dp);
	if (s->vl)
		render_verdictlog(b, s->vl);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *data,
			      size_t *data_size, void **state)
{
	static const char nf[] = "not found: try /metrics\n";
	struct gw_metrics *m = cls;
	struct MHD_Response *r;
	struct prom_buf b;
	unsigned code = MHD_HTTP_OK;
	enum MHD_Result rc;

	(void)version;
	(void)data;
	(void)data_size;
	/* The first call is for the headers only; answer on the second so a
	 * request body (there should be none) is not left unread. */
	if (!*state) {
		*state = m;
		return MHD_YES;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return MHD_NO;
	if (strcmp(url, "/metrics") != 0) {
		r = MHD_create_response_from_buffer(sizeof(nf) - 1, (void *)nf,
						    MHD_RESPMEM_PERSISTENT);
		code = MHD_HTTP_NOT_FOUND;
	} else {
		memset(&b, 0, sizeof(b));
		render(&b, &m->src);
		if (b.failed || !b.p) {
			prom_buf_free(&b);
			return MHD_NO;
		}
		/* b.p is handed over: MHD frees it with the response. */
		r = MHD_create_response_from_buffer(b.len, b.p, MHD_RESPMEM_MUST_FREE);
		if (!r)
			prom_buf_free(&b);
	}
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				code == MHD_HTTP_OK ? "text/plain; version=0.0.4; charset=utf-8"
						    : "text/plain; charset=utf-8");
	rc = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return rc;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	log_msg(LOG_WARN, "metrics server: %s", buf);
}

struct gw_metrics *gw_metrics_start(const char *listen, const struct gw_metrics_src *src)
{
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	struct gw_metrics *m;

	if (!listen[0]) {
		log_msg(LOG_INFO, "metrics: off (metrics_listen is empty)");
		return NULL;
	}
	if (!config_parse_listen(listen, &ss)) { /* config_set checked it already */
		log_msg(LOG_ERROR, "metrics_listen %s: not ADDRESS:PORT; running without metrics",
			listen);
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		log_msg(LOG_ERROR, "metrics: out of memory; running without metrics");
		return NULL;
	}
	m->src = *src;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The logger first, or libmicrohttpd writes its own lines to stderr. */
	m->d = MHD_start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_EXTERNAL_LOGGER,
				mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT,
				10u, MHD_OPTION_END);
	if (!m->d) {
		/* Mail matters more than its telemetry: a port someone else holds
		 * must not keep the gateway from running. */
		log_msg(LOG_ERROR,
			"metrics_listen %s: cannot listen (address in use or not local?); running "
			"without metrics",
			listen);
		free(m);
		return NULL;
	}
	{
		/* Port 0 asks the kernel for one: say which, so a test or an
		 * operator can find it. */
		const union MHD_DaemonInfo *di =
			MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
		const char *colon = strrchr(listen, ':');
		unsigned port = di ? di->port : 0;

		if (colon && port)
			log_msg(LOG_INFO, "metrics: http://%.*s:%u/metrics", (int)(colon - listen),
				listen, port);
		else
			log_msg(LOG_INFO, "metrics: http://%s/metrics", listen);
	}
	return m;
}

void gw_metrics_stop(struct gw_metrics *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->d);
	free(m);
}
