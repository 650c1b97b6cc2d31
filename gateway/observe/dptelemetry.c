/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/observe/dptelemetry.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <rte_telemetry.h>

#include "dataplane/dpdk/worker.h"
#include "dataplane/stack/stack.h"
#include "enforce/build.h"
#include "gateway/conn/conn.h"
#include "gateway/state/ctlclient.h"
#include "gateway/conn/dpdk.h"
#include "gateway/state/enfstate.h"
#include "gateway/observe/log.h"

/* The source, live between dptel_start and dptel_stop.  The lock is only
 * ever taken by the telemetry thread and the main thread: never a worker. */
static pthread_mutex_t tel_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dptel_src tel_src;
static bool tel_live;
static bool tel_registered;

static const char *const action_names[4] = { "accept", "throttle", "block", "drop" };

_Static_assert(sizeof(struct stack_stats) % sizeof(uint64_t) == 0,
	       "struct stack_stats is summed as an array of uint64_t");

/* Runs fn on the live source, or answers that there is none. */
static int with_src(int (*fn)(const struct dptel_src *, const char *, struct rte_tel_data *),
		    const char *params, struct rte_tel_data *d)
{
	int rc;

	pthread_mutex_lock(&tel_lock);
	if (tel_live)
		rc = fn(&tel_src, params, d);
	else
		rc = rte_tel_data_string(d, "tesgate is stopping");
	pthread_mutex_unlock(&tel_lock);
	return rc;
}

/* A worker index in params; -1 when absent; -2 when not one. */
static long parse_worker(const char *params, unsigned nworkers)
{
	char *end;
	unsigned long v;

	if (!params || !*params)
		return -1;
	if (*params < '0' || *params > '9')
		return -2;
	errno = 0;
	v = strtoul(params, &end, 10);
	if (errno || *end || v >= nworkers)
		return -2;
	return (long)v;
}

static void add_u64(struct rte_tel_data *d, const char *name, uint64_t v)
{
	rte_tel_data_add_dict_u64(d, name, v);
}

/* A container filled by fill, added under name; nothing when out of
 * memory (the reply is then shorter, never wrong). */
static void add_verdicts(struct rte_tel_data *d, const char *name, const uint64_t v[4])
{
	struct rte_tel_data *c = rte_tel_data_alloc();

	if (!c)
		return;
	rte_tel_data_start_dict(c);
	for (int a = 0; a < 4; a++)
		add_u64(c, action_names[a], v[a]);
	if (rte_tel_data_add_dict_container(d, name, c, 0) != 0)
		rte_tel_data_free(c);
}

static uint64_t sum_tls(const uint64_t *v)
{
	uint64_t s = 0;

	for (int i = 0; i < TLS_V_COUNT; i++)
		s += v[i];
	return s;
}

static int cmd_stats_src(const struct dptel_src *s, const char *params, struct rte_tel_data *d)
{
	struct gw_stats gs;
	struct gw_io_stats ks;
	struct rte_tel_data *c;

	(void)params;
	gw_stats(s->g, &gs);
	dpgw_conn_stats(s->d, &ks);
	rte_tel_data_start_dict(d);
	add_u64(d, "connections_accepted", ks.accepted);
	add_u64(d, "connections_refused_global", ks.refused_global);
	add_u64(d, "connections_refused_source", ks.refused_source);
	add_u64(d, "connections_open", ks.open);
	add_u64(d, "timeouts_idle", ks.timeouts_idle);
	add_u64(d, "timeouts_session", ks.timeouts_session);
	add_u64(d, "bytes_in", ks.bytes_in);
	add_u64(d, "bytes_out", ks.bytes_out);
	add_u64(d, "sessions", gs.sessions);
	add_u64(d, "smtp_commands", gs.smtp_commands);
	c = rte_tel_data_alloc();
	if (c) {
		static const char *const cls[6] = { NULL, NULL, "2xx", "3xx", "4xx", "5xx" };

		rte_tel_data_start_dict(c);
		for (int i = 2; i < 6; i++)
			add_u64(c, cls[i], gs.smtp_replies[i]);
		if (rte_tel_data_add_dict_container(d, "smtp_replies", c, 0) != 0)
			rte_tel_data_free(c);
	}
	add_u64(d, "messages_accepted", gs.messages_accepted);
	add_u64(d, "messages_refused", gs.messages_refused);
	add_u64(d, "exchange_seen", gs.exchange_seen);
	add_u64(d, "not_exchange", gs.not_exchange);
	add_u64(d, "orphaned", gs.orphaned);
	add_u64(d, "early_drops", gs.early_drops);
	add_verdicts(d, "mail_verdicts", gs.mail_verdicts);
	add_verdicts(d, "header_verdicts", gs.header_verdicts);
	add_u64(d, "sightings_dropped", gs.sightings_dropped);
	add_u64(d, "tls_starts", gs.tls_starts);
	add_u64(d, "tls_handshakes_full", sum_tls(gs.tls.full));
	add_u64(d, "tls_handshakes_resumed", sum_tls(gs.tls.resumed));
	add_u64(d, "tls_handshakes_failed", sum_tls(gs.tls.failed));
	return 0;
}

static int cmd_stack_src(const struct dptel_src *s, const char *params, struct rte_tel_data *d)
{
	unsigned n = dpgw_workers(s->d);
	long w = parse_worker(params, n);
	struct stack_stats sum, one;
	struct stack_mem msum, m;
	uint64_t *acc = (uint64_t *)&sum;
	const uint64_t *add = (const uint64_t *)&one;
	const char *name;

	if (w == -2)
		return -EINVAL; /* DPDK answers null: the command's params are wrong */
	memset(&sum, 0, sizeof(sum));
	memset(&msum, 0, sizeof(msum));
	for (unsigned i = 0; i < n; i++) {
		if (w >= 0 && i != (unsigned)w)
			continue;
		dpgw_stack_stats(s->d, i, &one);
		for (size_t k = 0; k < sizeof(sum) / sizeof(uint64_t); k++)
			acc[k] += add[k];
		dpgw_stack_mem(s->d, i, &m);
		msum.used += m.used;
		msum.budget += m.budget;
		msum.preallocated += m.preallocated;
		msum.conns_used += m.conns_used;
		msum.bufs_used += m.bufs_used;
	}
	rte_tel_data_start_dict(d);
	for (size_t i = 0; (name = stack_stat_name(i)) != NULL; i++)
		add_u64(d, name, stack_stat_value(&sum, i));
	add_u64(d, "mem_used_bytes", msum.used);
	add_u64(d, "mem_budget_bytes", msum.budget);
	add_u64(d, "mem_preallocated_bytes", msum.preallocated);
	add_u64(d, "mem_conns_used", msum.conns_used);
	add_u64(d, "mem_bufs_used", msum.bufs_used);
	return 0;
}

static int cmd_workers_src(const struct dptel_src *s, const char *params, struct rte_tel_data *d)
{
	unsigned n = dpgw_workers(s->d);
	char key[16];

	(void)params;
	rte_tel_data_start_dict(d);
	for (unsigned i = 0; i < n && i < RTE_TEL_MAX_DICT_ENTRIES; i++) {
		struct rte_tel_data *c = rte_tel_data_alloc();
		struct dp_worker_stats ws;
		struct stack_stats ss;
		struct stack_mem m;

		if (!c)
			break;
		dpgw_worker_stats(s->d, i, &ws);
		dpgw_stack_stats(s->d, i, &ss);
		dpgw_stack_mem(s->d, i, &m);
		rte_tel_data_start_dict(c);
		add_u64(c, "rx_pkts", ws.rx_pkts);
		add_u64(c, "tx_pkts", ws.tx_pkts);
		add_u64(c, "tx_drops", ws.tx_drops);
		add_u64(c, "rx_csum_bad", ws.rx_csum_bad);
		add_u64(c, "rx_copied", ws.rx_copied);
		add_u64(c, "loops", ws.loops);
		add_u64(c, "busy_ns", ws.busy_ns);
		add_u64(c, "steered_out", ws.steered_out);
		add_u64(c, "steered_in", ws.steered_in);
		add_u64(c, "steer_drops", ws.steer_drops);
		add_u64(c, "arp_shared", ws.arp_shared);
		add_u64(c, "accepts", ss.accepts);
		add_u64(c, "established", ss.established);
		add_u64(c, "conns_used", m.conns_used);
		add_u64(c, "mem_used_bytes", m.used);
		snprintf(key, sizeof(key), "%u", i);
		if (rte_tel_data_add_dict_container(d, key, c, 0) != 0) {
			rte_tel_data_free(c);
			break;
		}
	}
	return 0;
}

static int cmd_enforcement_src(const struct dptel_src *s, const char *params,
			       struct rte_tel_data *d)
{
	struct enfstate_stats es;
	struct ctlclient_stats cs;

	(void)params;
	memset(&es, 0, sizeof(es));
	memset(&cs, 0, sizeof(cs));
	if (s->st)
		enfstate_stats(s->st, &es);
	if (s->cc)
		ctlclient_stats(s->cc, &cs);
	rte_tel_data_start_dict(d);
	add_u64(d, "servers", es.servers);
	add_u64(d, "sources", es.sources);
	add_u64(d, "tenants", es.tenants);
	add_u64(d, "policy_generation", es.policy_gen);
	add_u64(d, "catalog_generation", es.catalog_gen);
	add_u64(d, "control_configured", s->cc != NULL);
	add_u64(d, "control_connected", cs.connected);
	add_u64(d, "control_synced", cs.synced);
	add_u64(d, "control_updates", cs.updates);
	add_u64(d, "sightings_sent", cs.sightings_sent);
	add_u64(d, "sightings_coalesced", cs.sightings_coalesced);
	add_u64(d, "sightings_dropped", cs.sightings_dropped);
	return 0;
}

static int cmd_stats(const char *cmd, const char *params, struct rte_tel_data *d)
{
	(void)cmd;
	return with_src(cmd_stats_src, params, d);
}

static int cmd_stack(const char *cmd, const char *params, struct rte_tel_data *d)
{
	(void)cmd;
	return with_src(cmd_stack_src, params, d);
}

static int cmd_workers(const char *cmd, const char *params, struct rte_tel_data *d)
{
	(void)cmd;
	return with_src(cmd_workers_src, params, d);
}

static int cmd_enforcement(const char *cmd, const char *params, struct rte_tel_data *d)
{
	(void)cmd;
	return with_src(cmd_enforcement_src, params, d);
}

int dptel_start(const struct dptel_src *src)
{
	static const struct {
		const char *cmd;
		telemetry_cb fn;
		const char *help;
	} cmds[] = {
		{ "/tesgate/stats", cmd_stats,
		  "tesgate's gateway and connection counters. No parameters." },
		{ "/tesgate/stack", cmd_stack,
		  "TCP/IP stack counters summed over the workers. Parameter: a worker index "
		  "for one worker's." },
		{ "/tesgate/workers", cmd_workers,
		  "Per worker: packets, poll loops, connections. No parameters." },
		{ "/tesgate/enforcement", cmd_enforcement,
		  "Enforcement table sizes and control plane state. No parameters." },
	};
	int rc = 0;

	pthread_mutex_lock(&tel_lock);
	tel_src = *src;
	tel_live = true;
	pthread_mutex_unlock(&tel_lock);
	if (tel_registered)
		return 0;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		int e = rte_telemetry_register_cmd(cmds[i].cmd, cmds[i].fn, cmds[i].help);

		if (e != 0) {
			log_msg(LOG_ERROR, "dpdk telemetry: cannot register %s (%d)", cmds[i].cmd,
				e);
			rc = -1;
		}
	}
	tel_registered = true;
	if (rc == 0)
		log_msg(LOG_INFO, "dpdk telemetry: /tesgate/stats, /tesgate/stack, "
				  "/tesgate/workers and /tesgate/enforcement registered");
	return rc;
}

void dptel_stop(void)
{
	pthread_mutex_lock(&tel_lock);
	tel_live = false;
	memset(&tel_src, 0, sizeof(tel_src));
	pthread_mutex_unlock(&tel_lock);
}
