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

/* SQLite commits on a local disk take from tens of microseconds (no fsync
 * needed) to tens of milliseconds (fsync on a busy disk). */
static const double commit_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
					0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5 };
#define NCOMMIT (sizeof(commit_bounds) / sizeof(commit_bounds[0]))

/* The store's commit observer (struct tes_store.on_commit). */
static void observe_commit(void *ctx, double seconds)
{
	struct cp_metrics *m = ctx;

	prom_hist_observe(&m->commit, commit_bounds, NCOMMIT, seconds);
}

/* Status label values: lower case, as Prometheus labels usually are. */
static const char *const status_label[TES_STATUS_COUNT] = {
	"reporting", "throttling", "blocking", "resolved", "paused", "stale", "compliant",
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

void cp_metrics_render(const struct cp_metrics_sources *src, struct prom_buf *b)
{
	const struct cp_state *sta = src->st;
	const struct cp_state_counts *k = &sta->counts;
	const struct esc_counts *ke = &src->esc->counts;
	static const struct prom_hist no_commits;
	const struct prom_hist *commit = src->commit ? src->commit : &no_commits;
	uint64_t by[TES_STATUS_COUNT] = { 0 };
	int64_t now = cp_state_now(sta);
	unsigned ngw = 0;
	char num[24];

	for (uint32_t i = 0; i < sta->tab.nslots; i++) {
		const struct cp_server *c = &sta->tab.srv[i];
		enum tes_status st;
		unsigned stage;

		if (!c->live)
			continue;
		cp_state_server_view(sta, &c->v.s, now, &stage, &st);
		if ((unsigned)st < TES_STATUS_COUNT)
			by[st]++;
	}
	prom_family(b, "tes_servers", "gauge", "Known on-premises Exchange servers by status");
	for (int s = 0; s < TES_STATUS_COUNT; s++)
		prom_sample(b, "tes_servers", "status", status_label[s], by[s]);

	prom_family(b, "tes_stage_changes_total", "counter",
		    "Servers announced as having reached an enforcement stage");
	for (unsigned s = 1; s <= TES_STAGE_COUNT; s++) {
		snprintf(num, sizeof(num), "%u", s);
		prom_sample(b, "tes_stage_changes_total", "stage", num, ke->stage_entered[s]);
	}
	prom_family(b, "tes_status_changes_total", "counter",
		    "Servers announced as having entered a status");
	for (int s = 0; s < TES_STATUS_COUNT; s++)
		prom_sample(b, "tes_status_changes_total", "status", status_label[s],
			    ke->status_entered[s]);

	prom_family(b, "tes_sightings_total", "counter",
		    "Sightings received from gateways, by tescontrol's classification");
	prom_sample(b, "tes_sightings_total", "class", "vulnerable",
		    k->sightings_by_class[CP_SIGHT_VULNERABLE]);
	prom_sample(b, "tes_sightings_total", "class", "compliant",
		    k->sightings_by_class[CP_SIGHT_COMPLIANT]);
	prom_sample(b, "tes_sightings_total", "class", "ignored",
		    k->sightings_by_class[CP_SIGHT_IGNORED]);
	prom_family(b, "tes_sightings_refused_total", "counter",
		    "Sightings refused (unknown tenant, invalid name, store failure)");
	prom_sample(b, "tes_sightings_refused_total", NULL, NULL, k->sightings_refused);

	prom_family(b, "tes_first_detections_total", "counter",
		    "Servers detected out of date for the first time");
	prom_sample(b, "tes_first_detections_total", NULL, NULL, k->first);
	prom_family(b, "tes_redetections_total", "counter",
		    "Resolved servers seen out of date again");
	prom_sample(b, "tes_redetections_total", NULL, NULL, k->redetected);
	prom_family(b, "tes_resolutions_total", "counter",
		    "Out-of-date servers seen running a compliant build");
	prom_sample(b, "tes_resolutions_total", NULL, NULL, k->resolved);
	prom_family(b, "tes_server_resets_total", "counter", "Servers reset by an operator");
	prom_sample(b, "tes_server_resets_total", NULL, NULL, k->resets);
	prom_family(b, "tes_pauses_total", "counter", "Tenant pauses granted or extended");
	prom_sample(b, "tes_pauses_total", NULL, NULL, k->pauses);
	prom_family(b, "tes_pause_resumes_total", "counter", "Tenant pauses ended by an operator");
	prom_sample(b, "tes_pause_resumes_total", NULL, NULL, k->resumes);

	prom_family(b, "tes_escalation_timer_armed_total", "counter",
		    "Times the escalation timer was set to a new deadline");
	prom_sample(b, "tes_escalation_timer_armed_total", NULL, NULL, ke->timer_armed);
	prom_family(b, "tes_escalation_timer_fired_total", "counter",
		    "Expiries of the escalation timer");
	prom_sample(b, "tes_escalation_timer_fired_total", NULL, NULL, ke->timer_fired);
	prom_family(b, "tes_escalations_due_total", "counter",
		    "Servers re-evaluated because their next change fell due");
	prom_sample(b, "tes_escalations_due_total", NULL, NULL, ke->escalations_due);

	prom_family(b, "tes_store_commit_duration_seconds", "histogram",
		    "Time to commit a transaction to the SQLite store");
	prom_hist_write(b, "tes_store_commit_duration_seconds", commit_bounds, NCOMMIT, commit);
	prom_family(b, "tes_store_errors_total", "counter", "Failed writes to the store");
	prom_sample(b, "tes_store_errors_total", NULL, NULL, k->store_errors);

	/* Seconds, not days: Prometheus wants base units (promtool says so);
	 * a pause day is 86400 s of the tenant's quota. */
	prom_family(b, "tes_pause_quota_seconds", "gauge",
		    "Pause time each tenant may be granted per calendar year (whole days)");
	prom_sample(b, "tes_pause_quota_seconds", NULL, NULL,
		    (uint64_t)sta->policy.pause_quota_days * 86400u);
	prom_family(b, "tes_tenant_pause_quota_used_seconds", "gauge",
		    "Pause time granted to the tenant in the current calendar year (whole days)");
	for (size_t i = 0; i < sta->tab.ntenants; i++) {
		const struct tes_tenant *t = &sta->tab.tenants[i];
		int year;

		tes_pause_days_left(&t->pause, &sta->policy, now, &year);
		prom_printf(b, "tes_tenant_pause_quota_used_seconds{tenant=\"%u\",tenant_name=\"",
			    t->id);
		prom_label_value(b, t->name);
		prom_printf(b, "\"} %llu\n",
			    (unsigned long long)(t->pause.year == year ? t->pause.days_used : 0) *
				    86400ull);
	}
	prom_family(b, "tes_tenants", "gauge", "Tenants configured");
	prom_sample(b, "tes_tenants", NULL, NULL, sta->tab.ntenants);

	/* Issue 13: what untrusted input can make tescontrol keep. */
	prom_family(b, "tes_tenant_servers", "gauge",
		    "Servers on record for the tenant (compliant ones included)");
	for (size_t i = 0; i < sta->tab.ntenants; i++) {
		const struct tes_tenant *t = &sta->tab.tenants[i];

		prom_printf(b, "tes_tenant_servers{tenant=\"%u\",tenant_name=\"", t->id);
		prom_label_value(b, t->name);
		prom_printf(b, "\"} %u\n", cp_tenant_servers(&sta->tab, t->id));
	}
	prom_family(b, "tes_tenant_server_cap", "gauge",
		    "Servers a tenant may have on record (limits.servers_per_tenant)");
	prom_sample(b, "tes_tenant_server_cap", NULL, NULL, sta->policy.servers_per_tenant);
	prom_family(b, "tes_servers_not_tracked_total", "counter",
		    "Sightings of new servers not tracked because their tenant was at its cap"
		    " (or, for mail over no connector, untrusted_servers is 0)");
	prom_sample(b, "tes_servers_not_tracked_total", NULL, NULL, k->not_tracked);
	prom_family(b, "tes_sightings_untrusted_ignored_total", "counter",
		    "Sightings in mail over no connector, counted and dropped under scope"
		    " connectors");
	prom_sample(b, "tes_sightings_untrusted_ignored_total", NULL, NULL, k->untrusted_ignored);
	prom_family(b, "tes_untrusted_servers", "gauge",
		    "Servers seen in mail over no connector on record (scope all; bounded)");
	prom_sample(b, "tes_untrusted_servers", NULL, NULL, sta->tab.nuntrusted);
	prom_family(b, "tes_untrusted_evictions_total", "counter",
		    "Servers of mail over no connector forgotten at a cap (least recently seen)");
	prom_sample(b, "tes_untrusted_evictions_total", NULL, NULL, k->untrusted_evicted);
	prom_family(b, "tes_servers_tracked_total", "counter",
		    "Servers first seen with a compliant build (tracked without a clock)");
	prom_sample(b, "tes_servers_tracked_total", NULL, NULL, k->tracked);
	prom_family(b, "tes_servers_forgotten_total", "counter",
		    "Servers forgotten after forget_after days without a sighting");
	prom_sample(b, "tes_servers_forgotten_total", NULL, NULL, ke->forgotten);

	{
		json_t *gws = cp_gateways_status(src->gws);
		size_t i;
		json_t *o;

		json_array_foreach(gws, i, o)
		{
			const char *name = json_string_value(json_object_get(o, "gateway"));

			if (name && name[0])
				ngw++;
		}
		json_decref(gws);
	}
	prom_family(b, "tes_gateways_connected", "gauge",
		    "Gateways connected to tescontrol that have said hello");
	prom_sample(b, "tes_gateways_connected", NULL, NULL, ngw);

	prom_family(b, "tes_start_time_seconds", "gauge",
		    "When tescontrol started, seconds since the epoch (its clock)");
	prom_sample(b, "tes_start_time_seconds", NULL, NULL, (uint64_t)sta->started_at);
	prom_family(b, "tes_state_generation", "gauge",
		    "The state generation of tescontrol's last broadcast to gateways (each"
		    " gateway's tes_control_generation catches up to it)");
	prom_sample(b, "tes_state_generation", NULL, NULL, src->gws->gen);
	prom_family(b, "tes_build_info", "gauge", "tescontrol's version; always 1");
	prom_printf(b, "tes_build_info{version=\"");
	prom_label_value(b, TES_VERSION);
	prom_printf(b, "\",test_clock=\"%s\"} 1\n", sta->clock->test ? "true" : "false");

	render_gateways(src->gws, b);
	cp_xdp_metrics(src->xdp, b);
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
