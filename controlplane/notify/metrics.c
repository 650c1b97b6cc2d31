/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The Prometheus endpoint (metrics.h).
 */
#include "controlplane/notify/metrics.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "controlplane/log.h"

struct cp_metrics {
	struct cp_loop *loop;
	struct cp_metrics_sources src;
	struct prom_hist commit;
	struct cp_watch tick;
	struct MHD_Daemon *d;
	pthread_mutex_t mu;
	char *text; /* under mu: what a scrape returns */
	size_t len;
	struct prom_buf pending; /* rendered but not yet swapped in */
};

struct gw_sample {
	char name[128];
	const char *gateway;
	uint64_t value;
};

static int gw_sample_cmp(const void *a, const void *b)
{
	const struct gw_sample *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->gateway, y->gateway);
}

static void render_gateways(const struct cp_gateways *gw, struct prom_buf *b)
{
	struct gw_sample *v = NULL;
	size_t n = 0, cap = 0;
	json_t *gws = cp_gateways_status(gw);
	size_t i;
	json_t *g;

	json_array_foreach(gws, i, g)
	{
		const char *gname = json_string_value(json_object_get(g, "gateway"));
		json_t *c = json_object_get(g, "counters");
		const char *key;
		json_t *val;

		if (!gname || !gname[0] || !json_is_object(c))
			continue;
		json_object_foreach(c, key, val)
		{
			char clean[96];

			if (!json_is_integer(val) || json_integer_value(val) < 0)
				continue;
			if (n == cap) {
				struct gw_sample *nv;

				cap = cap ? cap * 2 : 64;
				nv = realloc(v, cap * sizeof(*v));
				if (!nv) {
					b->failed = true;
					goto out;
				}
				v = nv;
			}
			prom_sanitize(key, clean, sizeof(clean));
			snprintf(v[n].name, sizeof(v[n].name), "tes_gateway_%s", clean);
			v[n].gateway = gname;
			v[n].value = (uint64_t)json_integer_value(val);
			n++;
		}
	}
	if (n)
		qsort(v, n, sizeof(*v), gw_sample_cmp);
	/* The format wants each family's samples together and each series
	 * once: two gateways saying the same hello name, or two counter
	 * names that sanitise alike, keep the first. */
	for (i = 0; i < n; i++) {
		if (i && strcmp(v[i].name, v[i - 1].name) == 0 &&
		    strcmp(v[i].gateway, v[i - 1].gateway) == 0)
			continue;
		if (!i || strcmp(v[i].name, v[i - 1].name) != 0)
			prom_family(b, v[i].name, "untyped",
				    "A gateway's own counter, as its latest counters message said");
		prom_sample(b, v[i].name, "gateway", v[i].gateway, v[i].value);
	}
out:
	free(v);
	json_decref(gws);
}

/* ---- the families ----
 * What every family is rendered from: the sources and what one render
 * computes once (now, the servers by status, the gateways that said
 * hello). */
struct view {
	const struct cp_metrics_sources *src;
	const struct cp_state *st;
	int64_t now;
	uint64_t by_status[TES_STATUS_COUNT];
	unsigned gateways;
};

/* Status label values: lower case, as Prometheus labels usually are. */
static const char *const status_label[TES_STATUS_COUNT] = {
	"reporting", "throttling", "blocking", "resolved", "paused", "stale", "compliant",
};

enum value_kind {
	STATE_COUNT, /* a member of struct cp_state_counts */
	ESC_COUNT,   /* a member of struct esc_counts */
	GETTER,      /* value() */
	SAMPLES,     /* samples() writes them, with their labels */
};

/* One family: HELP and TYPE, then its samples, in table order. */
struct family {
	const char *name;
	const char *type;
	const char *help;
	enum value_kind kind;
	size_t off;
	uint64_t (*value)(const struct view *v);
	void (*samples)(const struct view *v, struct prom_buf *b, const char *name);
};

#define STATE_COUNTER(n, h, m)                                                \
	{                                                                     \
		.name = n, .type = "counter", .help = h, .kind = STATE_COUNT, \
		.off = offsetof(struct cp_state_counts, m)                    \
	}
#define ESC_COUNTER(n, h, m)                                                \
	{                                                                   \
		.name = n, .type = "counter", .help = h, .kind = ESC_COUNT, \
		.off = offsetof(struct esc_counts, m)                       \
	}
#define GAUGE(n, h, fn)                                                            \
	{                                                                          \
		.name = n, .type = "gauge", .help = h, .kind = GETTER, .value = fn \
	}
#define COUNTER_FN(n, h, fn)                                                         \
	{                                                                            \
		.name = n, .type = "counter", .help = h, .kind = GETTER, .value = fn \
	}
#define LABELLED(n, t, h, fn)                                                   \
	{                                                                       \
		.name = n, .type = t, .help = h, .kind = SAMPLES, .samples = fn \
	}

static void servers_by_status(const struct view *v, struct prom_buf *b, const char *name)
{
	for (int s = 0; s < TES_STATUS_COUNT; s++)
		prom_sample(b, name, "status", status_label[s], v->by_status[s]);
}

static void stages_entered(const struct view *v, struct prom_buf *b, const char *name)
{
	char num[24];

	for (unsigned s = 1; s <= TES_STAGE_COUNT; s++) {
		snprintf(num, sizeof(num), "%u", s);
		prom_sample(b, name, "stage", num, v->src->esc->counts.stage_entered[s]);
	}
}

static void statuses_entered(const struct view *v, struct prom_buf *b, const char *name)
{
	for (int s = 0; s < TES_STATUS_COUNT; s++)
		prom_sample(b, name, "status", status_label[s],
			    v->src->esc->counts.status_entered[s]);
}

static void sightings_by_class(const struct view *v, struct prom_buf *b, const char *name)
{
	const uint64_t *k = v->st->counts.sightings_by_class;

	prom_sample(b, name, "class", "vulnerable", k[CP_SIGHT_VULNERABLE]);
	prom_sample(b, name, "class", "compliant", k[CP_SIGHT_COMPLIANT]);
	prom_sample(b, name, "class", "ignored", k[CP_SIGHT_IGNORED]);
}

/* SQLite commits on a local disk take from tens of microseconds (no fsync
 * needed) to tens of milliseconds (fsync on a busy disk). */
static const double commit_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
					0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5 };
#define NCOMMIT (sizeof(commit_bounds) / sizeof(commit_bounds[0]))

static void commit_latency(const struct view *v, struct prom_buf *b, const char *name)
{
	static const struct prom_hist none;

	prom_hist_write(b, name, commit_bounds, NCOMMIT, v->src->commit ? v->src->commit : &none);
}

/* name{tenant="ID",tenant_name="NAME"} */
static void tenant_sample_head(struct prom_buf *b, const char *name, const struct tes_tenant *t)
{
	prom_printf(b, "%s{tenant=\"%u\",tenant_name=\"", name, t->id);
	prom_label_value(b, t->name);
}

static void pause_quota_used(const struct view *v, struct prom_buf *b, const char *name)
{
	for (size_t i = 0; i < v->st->tab.ntenants; i++) {
		const struct tes_tenant *t = &v->st->tab.tenants[i];
		int year;

		tes_pause_days_left(&t->pause, &v->st->policy, v->now, &year);
		tenant_sample_head(b, name, t);
		prom_printf(b, "\"} %llu\n",
			    (unsigned long long)(t->pause.year == year ? t->pause.days_used : 0) *
				    86400ull);
	}
}

static void tenant_servers(const struct view *v, struct prom_buf *b, const char *name)
{
	for (size_t i = 0; i < v->st->tab.ntenants; i++) {
		const struct tes_tenant *t = &v->st->tab.tenants[i];

		tenant_sample_head(b, name, t);
		prom_printf(b, "\"} %u\n", cp_tenant_servers(&v->st->tab, t->id));
	}
}

static void build_info(const struct view *v, struct prom_buf *b, const char *name)
{
	prom_printf(b, "%s{version=\"", name);
	prom_label_value(b, TES_VERSION);
	prom_printf(b, "\",test_clock=\"%s\"} 1\n", v->st->clock->test ? "true" : "false");
}

/* Seconds, not days: Prometheus wants base units (promtool says so); a
 * pause day is 86400 s of the tenant's quota. */
static uint64_t pause_quota(const struct view *v)
{
	return (uint64_t)v->st->policy.pause_quota_days * 86400u;
}

static uint64_t tenants(const struct view *v)
{
	return v->st->tab.ntenants;
}

static uint64_t server_cap(const struct view *v)
{
	return v->st->policy.servers_per_tenant;
}

static uint64_t untrusted_servers(const struct view *v)
{
	return v->st->tab.nuntrusted;
}

static uint64_t gateways_connected(const struct view *v)
{
	return v->gateways;
}

static uint64_t start_time(const struct view *v)
{
	return (uint64_t)v->st->started_at;
}

static uint64_t generation(const struct view *v)
{
	return v->src->gws->gen;
}

/* The fleet (a shared store); 0 for the SQLite store. */
static struct store_fleet_status fleet_of(const struct view *v)
{
	struct store_fleet_status s;

	memset(&s, 0, sizeof(s));
	if (store_shared(v->st->store))
		v->st->store->fleet->status(v->st->store, &s);
	return s;
}

static uint64_t cut_off(const struct view *v)
{
	return fleet_of(v).cut_off;
}

static uint64_t cut_off_seconds(const struct view *v)
{
	struct store_fleet_status s = fleet_of(v);
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return s.cut_off && ts.tv_sec > s.cut_off_since ? (uint64_t)(ts.tv_sec - s.cut_off_since)
							: 0;
}

static uint64_t journal_events(const struct view *v)
{
	return fleet_of(v).journal;
}

static uint64_t etcd_writes(const struct view *v)
{
	return fleet_of(v).writes;
}

static uint64_t etcd_keys_written(const struct view *v)
{
	return fleet_of(v).keys_written;
}

static uint64_t etcd_conflicts(const struct view *v)
{
	return fleet_of(v).conflicts;
}

static const struct family families[] = {
	LABELLED("tes_servers", "gauge", "Known on-premises Exchange servers by status",
		 servers_by_status),
	LABELLED("tes_stage_changes_total", "counter",
		 "Servers announced as having reached an enforcement stage", stages_entered),
	LABELLED("tes_status_changes_total", "counter",
		 "Servers announced as having entered a status", statuses_entered),
	LABELLED("tes_sightings_total", "counter",
		 "Sightings received from gateways, by tescontrol's classification",
		 sightings_by_class),
	STATE_COUNTER("tes_sightings_refused_total",
		      "Sightings refused (unknown tenant, invalid name, store failure)",
		      sightings_refused),
	STATE_COUNTER("tes_first_detections_total",
		      "Servers detected out of date for the first time", first),
	STATE_COUNTER("tes_redetections_total", "Resolved servers seen out of date again",
		      redetected),
	STATE_COUNTER("tes_resolutions_total", "Out-of-date servers seen running a compliant build",
		      resolved),
	STATE_COUNTER("tes_server_resets_total", "Servers reset by an operator", resets),
	STATE_COUNTER("tes_pauses_total", "Tenant pauses granted or extended", pauses),
	STATE_COUNTER("tes_pause_resumes_total", "Tenant pauses ended by an operator", resumes),
	ESC_COUNTER("tes_escalation_timer_armed_total",
		    "Times the escalation timer was set to a new deadline", timer_armed),
	ESC_COUNTER("tes_escalation_timer_fired_total", "Expiries of the escalation timer",
		    timer_fired),
	ESC_COUNTER("tes_escalations_due_total",
		    "Servers re-evaluated because their next change fell due", escalations_due),
	LABELLED("tes_store_commit_duration_seconds", "histogram",
		 "Time to commit a transaction to the SQLite store", commit_latency),
	STATE_COUNTER("tes_store_errors_total", "Failed writes to the store", store_errors),
	/* The fleet (docs/fleet.md); all 0 with the SQLite store. */
	GAUGE("tes_store_cut_off",
	      "1 while this appliance cannot reach the fleet's etcd (it enforces its last state"
	      " and journals detections), else 0",
	      cut_off),
	GAUGE("tes_store_cut_off_seconds",
	      "Seconds since this appliance was cut off from etcd;"
	      " 0 while connected",
	      cut_off_seconds),
	GAUGE("tes_store_journal_events",
	      "Detections in the local journal, waiting to be reconciled with etcd",
	      journal_events),
	STATE_COUNTER("tes_fleet_remote_changes_total",
		      "Changes made by other appliances, adopted from etcd", fleet_remote),
	COUNTER_FN("tes_etcd_writes_total", "Write requests sent to etcd (each one Raft entry)",
		   etcd_writes),
	COUNTER_FN("tes_etcd_keys_written_total", "Keys those write requests wrote",
		   etcd_keys_written),
	COUNTER_FN("tes_etcd_conflicts_total",
		   "Compare-and-swap writes to etcd that lost to another appliance's",
		   etcd_conflicts),
	GAUGE("tes_pause_quota_seconds",
	      "Pause time each tenant may be granted per calendar year (whole days)", pause_quota),
	LABELLED("tes_tenant_pause_quota_used_seconds", "gauge",
		 "Pause time granted to the tenant in the current calendar year (whole days)",
		 pause_quota_used),
	GAUGE("tes_tenants", "Tenants configured", tenants),
	/* Issue 13: what untrusted input can make tescontrol keep. */
	LABELLED("tes_tenant_servers", "gauge",
		 "Servers on record for the tenant (compliant ones included)", tenant_servers),
	GAUGE("tes_tenant_server_cap",
	      "Servers a tenant may have on record (limits.servers_per_tenant)", server_cap),
	STATE_COUNTER("tes_servers_not_tracked_total",
		      "Sightings of new servers not tracked because their tenant was at its cap"
		      " (or, for mail over no connector, untrusted_servers is 0)",
		      not_tracked),
	STATE_COUNTER("tes_sightings_untrusted_ignored_total",
		      "Sightings in mail over no connector, counted and dropped under scope"
		      " connectors",
		      untrusted_ignored),
	GAUGE("tes_untrusted_servers",
	      "Servers seen in mail over no connector on record (scope all; bounded)",
	      untrusted_servers),
	STATE_COUNTER("tes_untrusted_evictions_total",
		      "Servers of mail over no connector forgotten at a cap (least recently seen)",
		      untrusted_evicted),
	STATE_COUNTER("tes_servers_tracked_total",
		      "Servers first seen with a compliant build (tracked without a clock)",
		      tracked),
	ESC_COUNTER("tes_servers_forgotten_total",
		    "Servers forgotten after forget_after days without a sighting", forgotten),
	GAUGE("tes_gateways_connected", "Gateways connected to tescontrol that have said hello",
	      gateways_connected),
	GAUGE("tes_start_time_seconds",
	      "When tescontrol started, seconds since the epoch (its clock)", start_time),
	GAUGE("tes_state_generation",
	      "The state generation of tescontrol's last broadcast to gateways (each"
	      " gateway's tes_control_generation catches up to it)",
	      generation),
	LABELLED("tes_build_info", "gauge", "tescontrol's version; always 1", build_info),
};

/* What one render computes once for several families. */
static void view_of(const struct cp_metrics_sources *src, struct view *v)
{
	const struct cp_state *st = src->st;
	json_t *gws = cp_gateways_status(src->gws);
	size_t i;
	json_t *o;

	memset(v, 0, sizeof(*v));
	v->src = src;
	v->st = st;
	v->now = cp_state_now(st);
	for (uint32_t k = 0; k < st->tab.nslots; k++) {
		const struct cp_server *c = &st->tab.srv[k];
		enum tes_status status;
		unsigned stage;

		if (!c->live)
			continue;
		cp_state_server_view(st, &c->v.s, v->now, &stage, &status);
		if ((unsigned)status < TES_STATUS_COUNT)
			v->by_status[status]++;
	}
	json_array_foreach(gws, i, o)
	{
		const char *name = json_string_value(json_object_get(o, "gateway"));

		if (name && name[0])
			v->gateways++;
	}
	json_decref(gws);
}

void cp_metrics_render(const struct cp_metrics_sources *src, struct prom_buf *b)
{
	struct view v;

	view_of(src, &v);
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		const struct family *f = &families[i];

		prom_family(b, f->name, f->type, f->help);
		switch (f->kind) {
		case STATE_COUNT:
			prom_sample(b, f->name, NULL, NULL,
				    *(const uint64_t *)(const void *)((const char *)&v.st->counts +
								      f->off));
			break;
		case ESC_COUNT:
			prom_sample(
				b, f->name, NULL, NULL,
				*(const uint64_t *)(const void *)((const char *)&src->esc->counts +
								  f->off));
			break;
		case GETTER:
			prom_sample(b, f->name, NULL, NULL, f->value(&v));
			break;
		case SAMPLES:
			f->samples(&v, b, f->name);
			break;
		}
	}
	/* Families whose names come from the gateways and the XDP sink. */
	render_gateways(src->gws, b);
	cp_xdp_metrics(src->xdp, b);
	cp_notices_metrics(src->notices, b);
}

/* The store's commit observer (struct tes_store.on_commit). */
static void observe_commit(void *ctx, double seconds)
{
	struct cp_metrics *m = ctx;

	prom_hist_observe(&m->commit, commit_bounds, NCOMMIT, seconds);
}

void cp_metrics_publish(struct cp_metrics *m)
{
	char *old;

	if (!m)
		return;
	prom_buf_free(&m->pending);
	cp_metrics_render(&m->src, &m->pending);
	if (m->pending.failed) {
		cp_warn("metrics: out of memory rendering; keeping the previous values");
		prom_buf_free(&m->pending);
		return;
	}
	if (pthread_mutex_trylock(&m->mu))
		return; /* a scrape is copying: the next tick publishes */
	old = m->text;
	m->text = m->pending.p;
	m->len = m->pending.len;
	pthread_mutex_unlock(&m->mu);
	memset(&m->pending, 0, sizeof(m->pending));
	free(old);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version, const char *upload,
			      size_t *upload_len, void **req)
{
	struct cp_metrics *m = cls;
	struct MHD_Response *r;
	enum MHD_Result rc;
	char *copy = NULL;
	size_t len = 0;
	unsigned code = MHD_HTTP_OK;

	(void)version;
	(void)upload;
	(void)upload_len;
	(void)req;
	if (m->src.report && strncmp(url, "/report", 7) == 0 && (!url[7] || url[7] == '/'))
		return m->src.report(m->src.report_ctx, conn, url, method);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		static const char no[] = "only GET\n";

		r = MHD_create_response_from_buffer(sizeof(no) - 1, (void *)no,
						    MHD_RESPMEM_PERSISTENT);
		code = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (strcmp(url, "/metrics") != 0) {
		static const char nf[] = "tescontrol serves /metrics only\n";

		r = MHD_create_response_from_buffer(sizeof(nf) - 1, (void *)nf,
						    MHD_RESPMEM_PERSISTENT);
		code = MHD_HTTP_NOT_FOUND;
	} else {
		pthread_mutex_lock(&m->mu);
		if (m->text) {
			copy = malloc(m->len + 1);
			if (copy) {
				memcpy(copy, m->text, m->len);
				len = m->len;
			}
		}
		pthread_mutex_unlock(&m->mu);
		if (!copy)
			return MHD_NO;
		r = MHD_create_response_from_buffer(len, copy, MHD_RESPMEM_MUST_FREE);
		if (!r)
			free(copy);
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

static void on_tick(struct cp_watch *w, uint32_t events)
{
	uint64_t n;

	(void)events;
	if (read(w->fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		cp_debug("metrics timer: %s", strerror(errno));
	cp_metrics_publish(cp_container_of(w, struct cp_metrics, tick));
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	cp_warn("metrics server: %s", buf);
}

int cp_metrics_start(struct cp_metrics **out, const char *listen, struct cp_loop *loop,
		     const struct cp_metrics_sources *src, struct tes_store *store)
{
	struct addrinfo hints, *ai = NULL;
	char host[128];
	const char *colon, *port;
	struct cp_metrics *m;
	struct itimerspec its;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	int rc;

	*out = NULL;
	if (!listen[0]) {
		cp_info("metrics: off (metrics_listen is empty)");
		return 0;
	}
	colon = strrchr(listen, ':');
	if (!colon || colon == listen || !colon[1]) {
		cp_err("metrics_listen %s: not host:port", listen);
		return -1;
	}
	port = colon + 1;
	if (listen[0] == '[' && colon[-1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)(colon - listen - 2), listen + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	/* Numeric only: a name lookup could block start-up and would make the
	 * listening address depend on the resolver. */
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc) {
		cp_err("metrics_listen %s: %s (a numeric address and port are needed)", listen,
		       gai_strerror(rc));
		return -1;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		freeaddrinfo(ai);
		cp_err("metrics: out of memory");
		return -1;
	}
	pthread_mutex_init(&m->mu, NULL);
	m->loop = loop;
	m->src = *src;
	m->src.commit = &m->commit;
	m->tick.fd = -1;
	m->tick.fn = on_tick;
	store->on_commit = observe_commit;
	store->on_commit_ctx = m;
	*out = m;
	cp_metrics_publish(m); /* a scrape right after start sees values */
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* The logger first, or libmicrohttpd warns on its own stderr. */
	m->d = MHD_start_daemon(flags, 0, NULL, NULL, answer, m, MHD_OPTION_EXTERNAL_LOGGER,
				mhd_log, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
				MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT,
				10u, MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!m->d) {
		/* Enforcement matters more than its telemetry: a port taken
		 * by someone else must not keep tescontrol from running. */
		cp_err("metrics_listen %s: cannot listen (address in use or not local?);"
		       " running without metrics",
		       listen);
		cp_metrics_stop(m, store);
		*out = NULL;
		return 0;
	}
	m->tick.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = 1;
	its.it_interval.tv_sec = 1;
	if (m->tick.fd < 0 || timerfd_settime(m->tick.fd, 0, &its, NULL) ||
	    cp_watch_add(loop, &m->tick, EPOLLIN)) {
		cp_err("metrics timer: %s", strerror(errno));
		return -1;
	}
	cp_info("metrics: http://%s/metrics", listen);
	return 0;
}

void cp_metrics_stop(struct cp_metrics *m, struct tes_store *store)
{
	if (!m)
		return;
	if (store && store->on_commit_ctx == m) {
		store->on_commit = NULL;
		store->on_commit_ctx = NULL;
	}
	if (m->tick.fd >= 0)
		close(m->tick.fd);
	if (m->d)
		MHD_stop_daemon(m->d);
	pthread_mutex_destroy(&m->mu);
	free(m->text);
	prom_buf_free(&m->pending);
	free(m);
}
