/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The report page (report.h).
 */
#include "controlplane/notify/report.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "controlplane/log.h"
#include "controlplane/notify/report_html.h"
#include "enforce/catalog.h"
#include "base/text.h"

/* A server's refused messages, by (tenant, name in lower case). */
struct rcount {
	uint32_t tenant_id;
	char key[TES_FQDN_MAX];
	char fqdn[TES_FQDN_MAX];
	uint64_t throttled, refused;
	bool dirty;
};

/* What the HTTP threads read: a snapshot and the token hashes with it. */
struct pub {
	int refs; /* atomic */
	struct rpt_snapshot snap;
	struct store_token *tokens;
	size_t ntokens;
};

struct cp_report {
	struct cp_state *st;
	struct cp_loop *loop;
	struct cp_report_config cfg;
	struct cp_watch tick;

	struct rcount *counts; /* sorted by (tenant, key) */
	size_t ncounts, capcounts;
	struct store_count *gone; /* rows to delete */
	size_t ngone, capgone;

	struct store_history *hist; /* sorted by (tenant, day) */
	bool *hist_dirty;
	size_t nhist, caphist;
	struct {
		uint32_t tenant_id;
		int64_t day;
	} * hist_gone;
	size_t nhist_gone, caphist_gone;

	struct store_token *tokens;
	size_t ntokens;

	bool changed;       /* the state changed since the last snapshot */
	bool sample_needed; /* ... since the last history sample */
	int64_t built_ms;   /* monotonic time of the last snapshot */

	pthread_mutex_t mu;
	struct pub *pub; /* under mu */

	char *tls_cert, *tls_key;
	struct MHD_Daemon *tls;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void lower(const char *in, char *out)
{
	size_t i;

	for (i = 0; in[i] && i < TES_FQDN_MAX - 1; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	out[i] = '\0';
}

/* ---- counts ---- */

static int cmp_count_key(uint32_t ta, const char *ka, uint32_t tb, const char *kb)
{
	if (ta != tb)
		return ta < tb ? -1 : 1;
	return strcmp(ka, kb);
}

/* The index of (tenant, key), or where it would go (*found false). */
static size_t count_find(const struct cp_report *r, uint32_t tenant_id, const char *key,
			 bool *found)
{
	size_t lo = 0, hi = r->ncounts;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_count_key(r->counts[mid].tenant_id, r->counts[mid].key, tenant_id, key);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static struct rcount *count_get(struct cp_report *r, uint32_t tenant_id, const char *fqdn)
{
	char key[TES_FQDN_MAX];
	bool found;
	size_t i;

	lower(fqdn, key);
	i = count_find(r, tenant_id, key, &found);
	if (found)
		return &r->counts[i];
	if (r->ncounts == r->capcounts) {
		size_t cap = r->capcounts ? r->capcounts * 2 : 64;
		struct rcount *n = realloc(r->counts, cap * sizeof(*n));

		if (!n)
			return NULL;
		r->counts = n;
		r->capcounts = cap;
	}
	memmove(&r->counts[i + 1], &r->counts[i], (r->ncounts - i) * sizeof(*r->counts));
	r->ncounts++;
	memset(&r->counts[i], 0, sizeof(r->counts[i]));
	r->counts[i].tenant_id = tenant_id;
	memcpy(r->counts[i].key, key, sizeof(key));
	tes_str_copy(r->counts[i].fqdn, sizeof(r->counts[i].fqdn), fqdn);
	return &r->counts[i];
}

int cp_report_add_count(const struct ctl_server_count *c, void *ctx)
{
	struct cp_report *r = ctx;
	uint32_t slot;
	struct cp_server *srv;
	struct rcount *rc;

	if (!r || (!c->throttled && !c->refused))
		return 0;
	/* Only servers on record: a gateway cannot make us keep names we
	 * would not keep from its sightings. */
	slot = cp_server_find(&r->st->tab, c->tenant_id, c->fqdn);
	srv = cp_server_at(&r->st->tab, slot);
	if (!srv)
		return 0;
	rc = count_get(r, c->tenant_id, srv->v.s.fqdn);
	if (!rc) {
		cp_warn("report: out of memory counting refused messages");
		return 0;
	}
	/* saturating: a gateway's deltas are hostile input like any other */
	rc->throttled = rc->throttled > UINT64_MAX - c->throttled ? UINT64_MAX
								  : rc->throttled + c->throttled;
	rc->refused = rc->refused > UINT64_MAX - c->refused ? UINT64_MAX : rc->refused + c->refused;
	rc->dirty = true;
	r->changed = true;
	return 0;
}

void cp_report_counts(const struct cp_report *r, uint32_t tenant_id, const char *fqdn,
		      uint64_t *throttled, uint64_t *refused)
{
	char key[TES_FQDN_MAX];
	bool found;
	size_t i;

	*throttled = *refused = 0;
	if (!r)
		return;
	lower(fqdn, key);
	i = count_find(r, tenant_id, key, &found);
	if (found) {
		*throttled = r->counts[i].throttled;
		*refused = r->counts[i].refused;
	}
}

static void count_forget(struct cp_report *r, uint32_t tenant_id, const char *fqdn)
{
	char key[TES_FQDN_MAX];
	bool found;
	size_t i;

	lower(fqdn, key);
	i = count_find(r, tenant_id, key, &found);
	if (!found)
		return;
	if (r->ngone == r->capgone) {
		size_t cap = r->capgone ? r->capgone * 2 : 16;
		struct store_count *n = realloc(r->gone, cap * sizeof(*n));

		if (!n)
			return; /* the row stays; a reset server's counts come back */
		r->gone = n;
		r->capgone = cap;
	}
	memset(&r->gone[r->ngone], 0, sizeof(r->gone[0]));
	r->gone[r->ngone].tenant_id = tenant_id;
	tes_str_copy(r->gone[r->ngone].fqdn, sizeof(r->gone[0].fqdn), r->counts[i].fqdn);
	r->ngone++;
	memmove(&r->counts[i], &r->counts[i + 1], (r->ncounts - i - 1) * sizeof(*r->counts));
	r->ncounts--;
}

static int load_count(const struct store_count *c, void *ctx)
{
	struct cp_report *r = ctx;
	struct rcount *rc = count_get(r, c->tenant_id, c->fqdn);

	if (!rc)
		return -1;
	rc->throttled = c->throttled;
	rc->refused = c->refused;
	return 0;
}

/* ---- history ---- */

static int cmp_hist(const void *a, const void *b)
{
	const struct store_history *x = a, *y = b;

	if (x->tenant_id != y->tenant_id)
		return x->tenant_id < y->tenant_id ? -1 : 1;
	return (x->day > y->day) - (x->day < y->day);
}

static int load_hist(const struct store_history *h, void *ctx)
{
	struct cp_report *r = ctx;

	if (r->nhist == r->caphist) {
		size_t cap = r->caphist ? r->caphist * 2 : 64;
		struct store_history *n = realloc(r->hist, cap * sizeof(*n));
		bool *d;

		if (!n)
			return -1;
		r->hist = n;
		d = realloc(r->hist_dirty, cap * sizeof(*d));
		if (!d)
			return -1;
		r->hist_dirty = d;
		r->caphist = cap;
	}
	r->hist[r->nhist] = *h;
	r->hist_dirty[r->nhist] = false;
	r->nhist++;
	return 0;
}

static int64_t local_day(const struct cp_report *r, int64_t t)
{
	int64_t x = t + (int64_t)r->st->policy.utc_offset_min * 60;

	return x >= 0 ? x / 86400 : -((-x + 86399) / 86400);
}

/* The last sample of a tenant, or NULL. */
static struct store_history *hist_last(struct cp_report *r, uint32_t tenant_id, size_t *at)
{
	struct store_history *last = NULL;

	for (size_t i = 0; i < r->nhist; i++) {
		if (r->hist[i].tenant_id == tenant_id) {
			last = &r->hist[i];
			*at = i;
		} else if (r->hist[i].tenant_id > tenant_id) {
			break;
		}
	}
	return last;
}

static void hist_mark_gone(struct cp_report *r, uint32_t tenant_id, int64_t day)
{
	if (r->nhist_gone == r->caphist_gone) {
		size_t cap = r->caphist_gone ? r->caphist_gone * 2 : 16;
		void *n = realloc(r->hist_gone, cap * sizeof(*r->hist_gone));

		if (!n)
			return;
		r->hist_gone = n;
		r->caphist_gone = cap;
	}
	r->hist_gone[r->nhist_gone].tenant_id = tenant_id;
	r->hist_gone[r->nhist_gone].day = day;
	r->nhist_gone++;
}

/* Set the tenant's sample of day to n, unless its last sample says the
 * same already (a sample holds until the next one). */
static void hist_set(struct cp_report *r, uint32_t tenant_id, int64_t day,
		     const uint32_t n[STORE_HISTORY_SERIES])
{
	size_t at = 0;
	struct store_history *last = hist_last(r, tenant_id, &at), h;

	if (last && memcmp(last->n, n, sizeof(last->n)) == 0)
		return;
	if (last && last->day == day) {
		memcpy(last->n, n, sizeof(last->n));
		r->hist_dirty[at] = true;
		return;
	}
	if (last && last->day > day)
		return; /* the clock went back: keep what was seen */
	memset(&h, 0, sizeof(h));
	h.tenant_id = tenant_id;
	h.day = day;
	memcpy(h.n, n, sizeof(h.n));
	if (load_hist(&h, r)) {
		cp_warn("report: out of memory keeping the stage history");
		return;
	}
	r->hist_dirty[r->nhist - 1] = true;
	/* keep the order (tenant, day): the new one goes after the tenant's
	 * last */
	{
		size_t i = r->nhist - 1;

		while (i > 0 && cmp_hist(&r->hist[i - 1], &r->hist[i]) > 0) {
			struct store_history t = r->hist[i - 1];
			bool d = r->hist_dirty[i - 1];

			r->hist[i - 1] = r->hist[i];
			r->hist_dirty[i - 1] = r->hist_dirty[i];
			r->hist[i] = t;
			r->hist_dirty[i] = d;
			i--;
		}
	}
}

/* Which series a server counts in, by what was last announced; -1: none
 * (compliant since first seen). */
static int series_of(const struct cp_server *c)
{
	switch ((enum tes_status)c->v.status_logged) {
	case TES_STATUS_REPORTING:
	case TES_STATUS_THROTTLING:
	case TES_STATUS_BLOCKING:
		if (c->v.stage_logged >= 1 && c->v.stage_logged <= TES_STAGE_COUNT)
			return c->v.stage_logged - 1;
		return -1;
	case TES_STATUS_PAUSED:
		return STORE_HISTORY_PAUSED;
	case TES_STATUS_STALE:
		return STORE_HISTORY_STALE;
	case TES_STATUS_RESOLVED:
		return STORE_HISTORY_RESOLVED;
	default:
		return -1;
	}
}

/* Drop samples older than the window, keeping each tenant's last one
 * before it (the value the window starts with). */
static void hist_prune(struct cp_report *r, int64_t today)
{
	int64_t first = today - (int64_t)r->cfg.history_days + 1;
	size_t out = 0;

	for (size_t i = 0; i < r->nhist; i++) {
		bool next_same =
			i + 1 < r->nhist && r->hist[i + 1].tenant_id == r->hist[i].tenant_id;

		if (r->hist[i].day < first && next_same && r->hist[i + 1].day <= first) {
			hist_mark_gone(r, r->hist[i].tenant_id, r->hist[i].day);
			continue;
		}
		r->hist[out] = r->hist[i];
		r->hist_dirty[out] = r->hist_dirty[i];
		out++;
	}
	r->nhist = out;
}

/* Today's sample of every tenant from what the servers last announced. */
static void sample(struct cp_report *r)
{
	const struct cp_tables *tab = &r->st->tab;
	int64_t today = local_day(r, cp_state_now(r->st));
	uint32_t(*n)[STORE_HISTORY_SERIES];
	uint32_t zero_n[STORE_HISTORY_SERIES] = { 0 };
	size_t nt = tab->ntenants + 1; /* [0] is tenant 0, then by table order */

	n = calloc(nt, sizeof(*n));
	if (!n) {
		cp_warn("report: out of memory sampling the stage history");
		return;
	}
	for (uint32_t i = 0; i < tab->nslots; i++) {
		const struct cp_server *c = &tab->srv[i];
		int k;
		size_t t = 0;

		if (!c->live || (k = series_of(c)) < 0)
			continue;
		if (c->v.s.tenant_id) {
			size_t lo = 0, hi = tab->ntenants;

			/* tenants are sorted by id */
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;

				if (tab->tenants[mid].id < c->v.s.tenant_id)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo == tab->ntenants || tab->tenants[lo].id != c->v.s.tenant_id)
				continue;
			t = lo + 1;
		}
		n[t][k]++;
	}
	{
		size_t at;

		/* tenant 0 only once it has had servers */
		if (memcmp(n[0], zero_n, sizeof(zero_n)) || hist_last(r, 0, &at))
			hist_set(r, 0, today, n[0]);
	}
	for (size_t i = 0; i < tab->ntenants; i++)
		hist_set(r, tab->tenants[i].id, today, n[i + 1]);
	free(n);
	hist_prune(r, today);
}

static void hist_forget_tenant(struct cp_report *r, uint32_t tenant_id)
{
	size_t out = 0;

	for (size_t i = 0; i < r->nhist; i++) {
		if (r->hist[i].tenant_id == tenant_id) {
			hist_mark_gone(r, tenant_id, r->hist[i].day);
			continue;
		}
		r->hist[out] = r->hist[i];
		r->hist_dirty[out] = r->hist_dirty[i];
		out++;
	}
	r->nhist = out;
}

/* ---- writing ---- */

/* Whether sample i is written now.  Today's sample is recomputed from the
 * servers at every start (cp_report_listen's first sample), so it is
 * written only once its day is over, or at a clean stop: a flood of
 * sightings costs the store no commit for the chart, only one a day. */
static bool hist_due(const struct cp_report *r, size_t i, int64_t today, bool final)
{
	return r->hist_dirty[i] && (final || r->hist[i].day < today);
}

/* What changed in memory goes to the store in one transaction; what fails
 * stays marked for the next tick.  final: at stop, today's samples too. */
static void write_pending(struct cp_report *r, bool final)
{
	struct tes_store *store = r->st->store;
	int64_t today = local_day(r, cp_state_now(r->st));
	bool any = r->ngone || r->nhist_gone;

	for (size_t i = 0; !any && i < r->ncounts; i++)
		any = r->counts[i].dirty;
	for (size_t i = 0; !any && i < r->nhist; i++)
		any = hist_due(r, i, today, final);
	if (!any)
		return;
	if (store_begin(store)) {
		cp_warn("report: store: %s", store_errmsg(store));
		return;
	}
	for (size_t i = 0; i < r->ncounts; i++) {
		struct store_count c;

		if (!r->counts[i].dirty)
			continue;
		memset(&c, 0, sizeof(c));
		c.tenant_id = r->counts[i].tenant_id;
		tes_str_copy(c.fqdn, sizeof(c.fqdn), r->counts[i].fqdn);
		c.throttled = r->counts[i].throttled;
		c.refused = r->counts[i].refused;
		if (store_put_count(store, &c))
			goto fail;
	}
	for (size_t i = 0; i < r->ngone; i++) {
		if (store_delete_count(store, r->gone[i].tenant_id, r->gone[i].fqdn))
			goto fail;
	}
	for (size_t i = 0; i < r->nhist; i++) {
		if (hist_due(r, i, today, final) && store_put_history(store, &r->hist[i]))
			goto fail;
	}
	for (size_t i = 0; i < r->nhist_gone; i++) {
		if (store_delete_history(store, r->hist_gone[i].tenant_id, r->hist_gone[i].day))
			goto fail;
	}
	if (store_commit(store))
		goto fail;
	for (size_t i = 0; i < r->ncounts; i++)
		r->counts[i].dirty = false;
	for (size_t i = 0; i < r->nhist; i++) {
		if (hist_due(r, i, today, final))
			r->hist_dirty[i] = false;
	}
	r->ngone = 0;
	r->nhist_gone = 0;
	return;
fail:
	cp_warn("report: store: %s; retrying", store_errmsg(store));
	store_rollback(store);
}

/* ---- snapshots ---- */

static int cmp_server(const void *a, const void *b)
{
	const struct rpt_server *x = a, *y = b;

	if (x->tenant_id != y->tenant_id)
		return x->tenant_id < y->tenant_id ? -1 : 1;
	return strcasecmp(x->fqdn, y->fqdn);
}

static void recommended_text(const struct catalog_class *cls, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < cls->nrecommended && i < CATALOG_MAX_RECOMMENDED; i++) {
		char b[48];
		int w;

		ex_build_format(&cls->recommended[i]->build, b, sizeof(b));
		w = snprintf(buf + n, len - n, "%s%s (%s)", i ? ", " : "", b,
			     cls->recommended[i]->update);
		if (w < 0 || (size_t)w >= len - n) {
			buf[n] = '\0';
			return;
		}
		n += (size_t)w;
	}
}

static void fill_server(const struct cp_report *r, const struct cp_server *c, int64_t now,
			struct rpt_server *v)
{
	const struct cp_state *st = r->st;
	const struct tes_server *s = &c->v.s;
	const struct tes_tenant *t = cp_state_server_tenant(st, s);
	struct catalog_class cls;
	struct tes_report rep;

	memset(v, 0, sizeof(*v));
	tes_server_report(s, t, &st->policy, now, &rep);
	catalog_classify(st->catalog, &s->build, now, &cls);
	v->tenant_id = s->tenant_id;
	tes_str_copy(v->fqdn, sizeof(v->fqdn), s->fqdn);
	ex_build_format(&s->build, v->build, sizeof(v->build));
	tes_str_copy(v->family, sizeof(v->family), ex_family_name(s->family));
	tes_str_copy(v->branch, sizeof(v->branch), cls.branch ? cls.branch : "");
	recommended_text(&cls, v->recommended, sizeof(v->recommended));
	v->status = rep.status;
	v->stage = rep.stage;
	v->first_detected = s->first_detected;
	v->last_seen = s->last_seen;
	v->has_throttle = rep.has_throttle_date;
	v->throttle_at = rep.throttle_enabled;
	v->has_block = rep.has_block_date;
	v->block_at = rep.blocking_enabled;
	v->has_next = rep.has_next;
	v->next_stage = rep.next_stage;
	v->next_at = rep.next_stage_start;
	v->next_throttle_min = rep.next_throttle_min;
	v->next_block_min = rep.next_block_min;
	v->resolved = s->resolved;
	v->resolved_at = s->resolved_at;
	v->stale = rep.status == TES_STATUS_STALE;
	v->stale_since = rep.stale_at;
	v->paused_seconds = rep.paused_seconds;
	cp_report_counts(r, s->tenant_id, s->fqdn, &v->throttled, &v->refused);
}

static char *dup_text(const char *s)
{
	return s ? strdup(s) : NULL;
}

struct rpt_snapshot *cp_report_snapshot(const struct cp_report *r)
{
	const struct cp_state *st = r->st;
	const struct cp_tables *tab = &st->tab;
	struct rpt_snapshot *s = calloc(1, sizeof(*s));
	int64_t now = cp_state_now(st);
	size_t nsrv = 0, k;
	bool any0 = false;

	if (!s)
		return NULL;
	s->now = now;
	s->test_clock = st->clock->test;
	s->utc_offset_min = st->policy.utc_offset_min;
	s->version = r->cfg.version;
	s->policy = st->policy;
	s->history_days = r->cfg.history_days;
	tes_str_copy(s->catalog_version, sizeof(s->catalog_version),
		     st->catalog ? catalog_version(st->catalog) : "");
	s->catalog_builds = st->catalog ? catalog_size(st->catalog) : 0;
	tes_str_copy(s->builds_name, sizeof(s->builds_name), st->builds.name);
	tes_str_copy(s->compliance_name, sizeof(s->compliance_name), st->compliance.name);
	tes_str_copy(s->policy_version, sizeof(s->policy_version), st->policy_doc.version);
	tes_str_copy(s->policy_name, sizeof(s->policy_name), st->policy_doc.name);
	s->compliance_text = dup_text(st->compliance.text);
	s->policy_text = dup_text(st->policy_doc.text);
	s->servers = calloc(tab->nlive ? tab->nlive : 1, sizeof(*s->servers));
	s->tenants = calloc(tab->ntenants + 1, sizeof(*s->tenants));
	s->hist = calloc(r->nhist ? r->nhist : 1, sizeof(*s->hist));
	if (!s->servers || !s->tenants || !s->hist ||
	    (st->compliance.text && !s->compliance_text) ||
	    (st->policy_doc.text && !s->policy_text))
		goto fail;
	for (uint32_t i = 0; i < tab->nslots && nsrv < tab->nlive; i++) {
		const struct cp_server *c = &tab->srv[i];

		/* compliant since first seen: tracked, not reported */
		if (!c->live || tes_server_compliant_only(&c->v.s))
			continue;
		fill_server(r, c, now, &s->servers[nsrv]);
		any0 = any0 || s->servers[nsrv].tenant_id == 0;
		nsrv++;
	}
	qsort(s->servers, nsrv, sizeof(*s->servers), cmp_server);
	s->nservers = nsrv;
	if (r->nhist) /* r->hist is NULL before the first sample */
		memcpy(s->hist, r->hist, r->nhist * sizeof(*s->hist));
	s->nhist = r->nhist;
	for (size_t i = 0; i < r->nhist && !any0; i++)
		any0 = r->hist[i].tenant_id == 0;
	/* tenants by id: tenant 0 first when it has anything to show */
	k = 0;
	if (any0)
		s->tenants[k++].id = 0;
	for (size_t i = 0; i < tab->ntenants; i++) {
		const struct tes_tenant *t = &tab->tenants[i];
		struct rpt_tenant *v = &s->tenants[k++];
		int year;

		v->id = t->id;
		tes_str_copy(v->name, sizeof(v->name), t->name);
		v->paused = tes_pause_active(&t->pause, now);
		v->pause_start = t->pause.start;
		v->pause_end = t->pause.end;
		v->pause_days_left = tes_pause_days_left(&t->pause, &st->policy, now, &year);
		v->pause_days_used = t->pause.year == year ? t->pause.days_used : 0;
		v->pause_quota = st->policy.pause_quota_days;
	}
	s->ntenants = k;
	/* each tenant's runs of servers and samples (both sorted by tenant) */
	{
		size_t si = 0, hi = 0;

		for (size_t i = 0; i < s->ntenants; i++) {
			struct rpt_tenant *v = &s->tenants[i];

			while (si < s->nservers && s->servers[si].tenant_id < v->id)
				si++;
			v->first_server = si;
			while (si < s->nservers && s->servers[si].tenant_id == v->id)
				si++;
			v->nservers = si - v->first_server;
			while (hi < s->nhist && s->hist[hi].tenant_id < v->id)
				hi++;
			v->first_hist = hi;
			while (hi < s->nhist && s->hist[hi].tenant_id == v->id)
				hi++;
			v->nhist = hi - v->first_hist;
		}
	}
	return s;
fail:
	cp_report_snapshot_free(s);
	return NULL;
}

void cp_report_snapshot_free(struct rpt_snapshot *s)
{
	rpt_snapshot_free(s);
	free(s);
}

static void pub_put(struct pub *p)
{
	if (!p || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	rpt_snapshot_free(&p->snap);
	free(p->tokens);
	free(p);
}

static struct pub *pub_get(struct cp_report *r)
{
	struct pub *p;

	pthread_mutex_lock(&r->mu);
	p = r->pub;
	if (p)
		__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&r->mu);
	return p;
}

/* Build and swap in a snapshot.  Unlike /metrics this waits for the
 * mutex: it is held only for a pointer swap and a reference count, never
 * while a page is rendered. */
static void publish(struct cp_report *r)
{
	struct rpt_snapshot *s = cp_report_snapshot(r);
	struct pub *p = calloc(1, sizeof(*p)), *old;

	if (!s || !p || (r->ntokens && !(p->tokens = malloc(r->ntokens * sizeof(*p->tokens))))) {
		cp_warn("report: out of memory building the page; keeping the previous one");
		cp_report_snapshot_free(s);
		if (p)
			free(p->tokens);
		free(p);
		return;
	}
	p->refs = 1;
	p->snap = *s;
	free(s);
	if (r->ntokens)
		memcpy(p->tokens, r->tokens, r->ntokens * sizeof(*p->tokens));
	p->ntokens = r->ntokens;
	pthread_mutex_lock(&r->mu);
	old = r->pub;
	r->pub = p;
	pthread_mutex_unlock(&r->mu);
	pub_put(old);
	r->changed = false;
	r->built_ms = mono_ms();
}

/* ---- the event loop's side ---- */

void cp_report_on_note(void *ctx, const struct cp_note *n)
{
	struct cp_report *r = ctx;

	switch (n->kind) {
	case CP_NOTE_SERVER_EVALUATED:
	case CP_NOTE_SERVER_RESUMED:
	case CP_NOTE_EVENT:
		return;
	case CP_NOTE_SERVER_GONE:
		if (n->server)
			count_forget(r, n->server->tenant_id, n->server->fqdn);
		break;
	case CP_NOTE_TENANT_GONE:
		if (n->tenant) {
			size_t out = 0;

			hist_forget_tenant(r, n->tenant->id);
			/* its tokens open nothing now; forget them */
			for (size_t i = 0; i < r->ntokens; i++) {
				if (r->tokens[i].tenant_id == n->tenant->id) {
					if (store_delete_token(r->st->store, r->tokens[i].id))
						cp_warn("report: token %s: %s", r->tokens[i].id,
							store_errmsg(r->st->store));
					continue;
				}
				r->tokens[out++] = r->tokens[i];
			}
			r->ntokens = out;
		}
		break;
	default:
		break;
	}
	r->changed = true;
	r->sample_needed = true;
}

void cp_report_after_round(struct cp_report *r)
{
	if (!r || !r->changed)
		return;
	/* On the real clock at most once a second (a flood of sightings is
	 * one page a second); on the test clock at once, so that a test sees
	 * the page of the clock it just set. */
	if (!r->st->clock->test && mono_ms() - r->built_ms < 1000)
		return;
	if (r->sample_needed) {
		sample(r);
		r->sample_needed = false;
	}
	publish(r);
}

static void on_tick(struct cp_watch *w, uint32_t events)
{
	struct cp_report *r = cp_container_of(w, struct cp_report, tick);
	uint64_t n;
	static const int64_t minute_ms = 60000;

	(void)events;
	if (read(w->fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		cp_debug("report timer: %s", strerror(errno));
	/* "As of" moves with the clock even when nothing else does */
	if (!r->st->clock->test && mono_ms() - r->built_ms >= minute_ms)
		r->changed = r->sample_needed = true;
	cp_report_after_round(r);
	write_pending(r, false);
}

static int load_token(const struct store_token *t, void *ctx)
{
	struct cp_report *r = ctx;
	struct store_token *n;

	if (r->ntokens >= CP_REPORT_TOKENS_MAX)
		return 0;
	n = realloc(r->tokens, (r->ntokens + 1) * sizeof(*n));
	if (!n)
		return -1;
	r->tokens = n;
	r->tokens[r->ntokens++] = *t;
	return 0;
}

/* A PEM file, read whole (at most 1 MiB). */
static char *read_pem(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	char *buf = NULL;
	ssize_t n;

	if (fd < 0)
		return NULL;
	if (fstat(fd, &sb) || sb.st_size <= 0 || sb.st_size > (1 << 20)) {
		close(fd);
		errno = EINVAL;
		return NULL;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (buf) {
		n = read(fd, buf, (size_t)sb.st_size);
		if (n != sb.st_size) {
			free(buf);
			buf = NULL;
			errno = EIO;
		} else {
			buf[n] = '\0';
		}
	}
	close(fd);
	return buf;
}

int cp_report_init(struct cp_report **out, const struct cp_report_config *c, struct cp_state *st,
		   struct cp_loop *loop)
{
	struct cp_report *r = calloc(1, sizeof(*r));
	struct itimerspec its;

	*out = NULL;
	if (!r) {
		cp_err("report: out of memory");
		return -1;
	}
	r->st = st;
	r->loop = loop;
	r->cfg = *c;
	r->tick.fd = -1;
	r->tick.fn = on_tick;
	pthread_mutex_init(&r->mu, NULL);
	*out = r;
	if (store_load_counts(st->store, load_count, r) ||
	    store_load_history(st->store, load_hist, r) ||
	    store_load_tokens(st->store, load_token, r)) {
		cp_err("report: loading from the store: %s", store_errmsg(st->store));
		return -1;
	}
	if (r->nhist)
		qsort(r->hist, r->nhist, sizeof(*r->hist), cmp_hist);
	if (c->listen[0]) {
		if (!c->tls_cert[0] || !c->tls_key[0]) {
			cp_err("report_listen %s: report_tls_cert and report_tls_key are needed",
			       c->listen);
			return -1;
		}
		r->tls_cert = read_pem(c->tls_cert);
		if (!r->tls_cert) {
			cp_err("report_tls_cert %s: %s", c->tls_cert, strerror(errno));
			return -1;
		}
		r->tls_key = read_pem(c->tls_key);
		if (!r->tls_key) {
			cp_err("report_tls_key %s: %s", c->tls_key, strerror(errno));
			return -1;
		}
	}
	r->tick.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = 1;
	its.it_interval.tv_sec = 1;
	if (r->tick.fd < 0 || timerfd_settime(r->tick.fd, 0, &its, NULL) ||
	    cp_watch_add(loop, &r->tick, EPOLLIN)) {
		cp_err("report timer: %s", strerror(errno));
		return -1;
	}
	/* what start-up announced (stages that fell due while we were down)
	 * is today's sample */
	sample(r);
	publish(r);
	return 0;
}

void cp_report_stop(struct cp_report *r)
{
	if (!r)
		return;
	if (r->tls)
		MHD_stop_daemon(r->tls);
	if (r->tick.fd >= 0) {
		write_pending(r, true);
		cp_watch_del(r->loop, &r->tick);
		close(r->tick.fd);
	}
	pub_put(r->pub);
	pthread_mutex_destroy(&r->mu);
	free(r->counts);
	free(r->gone);
	free(r->hist);
	free(r->hist_dirty);
	free(r->hist_gone);
	free(r->tokens);
	if (r->tls_key) {
		OPENSSL_cleanse(r->tls_key, strlen(r->tls_key));
		free(r->tls_key);
	}
	free(r->tls_cert);
	free(r);
}

/* ---- tokens ---- */

static void hexify(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static int random_bytes(uint8_t *b, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = getrandom(b + got, n - got, 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return 0;
}

int cp_report_token_create(struct cp_report *r, uint32_t tenant_id,
			   char token[CP_REPORT_TOKEN_LEN + 1], struct store_token *out, char *err,
			   size_t errlen)
{
	uint8_t raw[CP_REPORT_TOKEN_LEN / 2], id[STORE_TOKEN_ID_LEN / 2];
	struct store_token t, *n;

	if (!cp_tenant_find(&r->st->tab, tenant_id)) {
		snprintf(err, errlen, "no tenant %" PRIu32, tenant_id);
		return -1;
	}
	if (r->ntokens >= CP_REPORT_TOKENS_MAX) {
		snprintf(err, errlen, "%d report tokens exist already: revoke some first",
			 CP_REPORT_TOKENS_MAX);
		return -1;
	}
	if (random_bytes(raw, sizeof(raw)) || random_bytes(id, sizeof(id))) {
		snprintf(err, errlen, "no random numbers: %s", strerror(errno));
		return -1;
	}
	memset(&t, 0, sizeof(t));
	hexify(id, sizeof(id), t.id);
	t.tenant_id = tenant_id;
	t.created = cp_state_now(r->st);
	hexify(raw, sizeof(raw), token);
	SHA256((const unsigned char *)token, CP_REPORT_TOKEN_LEN, t.sha256);
	OPENSSL_cleanse(raw, sizeof(raw));
	n = realloc(r->tokens, (r->ntokens + 1) * sizeof(*n));
	if (!n) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->tokens = n;
	/* durable first: a token given out must open the page after a
	 * restart */
	if (store_put_token(r->st->store, &t)) {
		snprintf(err, errlen, "store: %s", store_errmsg(r->st->store));
		return -1;
	}
	r->tokens[r->ntokens++] = t;
	*out = t;
	publish(r);
	return 0;
}

int cp_report_token_revoke(struct cp_report *r, const char *id, struct store_token *out, char *err,
			   size_t errlen)
{
	for (size_t i = 0; i < r->ntokens; i++) {
		if (strcmp(r->tokens[i].id, id) != 0)
			continue;
		if (store_delete_token(r->st->store, id)) {
			snprintf(err, errlen, "store: %s", store_errmsg(r->st->store));
			return -1;
		}
		*out = r->tokens[i];
		memmove(&r->tokens[i], &r->tokens[i + 1],
			(r->ntokens - i - 1) * sizeof(*r->tokens));
		r->ntokens--;
		/* refused from the moment the command returns */
		publish(r);
		return 0;
	}
	snprintf(err, errlen, "no report token %.40s", id);
	return -1;
}

json_t *cp_report_token_list(const struct cp_report *r, uint32_t tenant_id)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < r->ntokens; i++) {
		const struct store_token *t = &r->tokens[i];
		char iso[40];

		if (tenant_id && t->tenant_id != tenant_id)
			continue;
		tes_time_format(t->created, r->st->policy.utc_offset_min, iso, sizeof(iso));
		json_array_append_new(a, json_pack("{s:s, s:I, s:s, s:I}", "id", t->id, "tenant",
						   (json_int_t)t->tenant_id, "created", iso,
						   "created_unix", (json_int_t)t->created));
	}
	return a;
}

/* The tenant of a token among tokens, or 0.  Every stored hash is
 * compared, in constant time, whatever matched. */
static uint32_t token_tenant(const struct store_token *tokens, size_t n, const char *token)
{
	uint8_t h[32];
	uint32_t tenant = 0;

	if (strlen(token) != CP_REPORT_TOKEN_LEN)
		return 0;
	for (size_t i = 0; i < CP_REPORT_TOKEN_LEN; i++) {
		if (!((token[i] >= '0' && token[i] <= '9') || (token[i] >= 'a' && token[i] <= 'f')))
			return 0;
	}
	SHA256((const unsigned char *)token, CP_REPORT_TOKEN_LEN, h);
	for (size_t i = 0; i < n; i++) {
		if (CRYPTO_memcmp(h, tokens[i].sha256, sizeof(h)) == 0)
			tenant = tokens[i].tenant_id;
	}
	return tenant;
}

uint32_t cp_report_token_tenant(const struct cp_report *r, const char *token)
{
	return token_tenant(r->tokens, r->ntokens, token);
}

/* ---- HTTP ---- */

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned code, const char *type,
			       char *body, size_t len, bool must_free)
{
	struct MHD_Response *resp;
	enum MHD_Result rc;

	resp = MHD_create_response_from_buffer(
		len, body, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		if (must_free)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	/* No script, no frames, nothing fetched: the page is its own whole.
	 * The token is in the URL: no referrer, no caching. */
	MHD_add_response_header(resp, "Content-Security-Policy",
				"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
				"frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	rc = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result plain(struct MHD_Connection *conn, unsigned code, const char *text)
{
	return respond(conn, code, "text/plain; charset=utf-8", (char *)text, strlen(text), false);
}

#define TENANT_PREFIX "/report/tenant/"

static enum MHD_Result serve(struct cp_report *r, struct MHD_Connection *conn, const char *url,
			     const char *method, bool tenant_only)
{
	struct pub *p;
	const struct rpt_tenant *only = NULL;
	struct rpt_buf b = { 0 };
	bool full;

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return plain(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
	full = strcmp(url, "/report") == 0 || strcmp(url, "/report/") == 0;
	if (full && tenant_only)
		return plain(conn, MHD_HTTP_NOT_FOUND, "not found\n");
	if (!full && strncmp(url, TENANT_PREFIX, strlen(TENANT_PREFIX)) != 0)
		return plain(conn, MHD_HTTP_NOT_FOUND, "not found\n");
	p = pub_get(r);
	if (!p)
		return plain(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "the report is not ready\n");
	if (!full) {
		uint32_t tenant = token_tenant(p->tokens, p->ntokens, url + strlen(TENANT_PREFIX));

		for (size_t i = 0; tenant && i < p->snap.ntenants; i++) {
			if (p->snap.tenants[i].id == tenant)
				only = &p->snap.tenants[i];
		}
		if (!only) {
			/* the same answer for a wrong token, a revoked one and
			 * one whose tenant is gone: nothing to tell apart */
			pub_put(p);
			return plain(conn, MHD_HTTP_FORBIDDEN, "403 Forbidden\n");
		}
	}
	rpt_render(&p->snap, only, &b);
	pub_put(p);
	if (b.failed) {
		rpt_buf_free(&b);
		return plain(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	}
	return respond(conn, MHD_HTTP_OK, "text/html; charset=utf-8", b.p, b.len, true);
}

enum MHD_Result cp_report_http(void *ctx, struct MHD_Connection *conn, const char *url,
			       const char *method)
{
	return serve(ctx, conn, url, method, false);
}

static enum MHD_Result answer_tls(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_len, void **req)
{
	(void)version;
	(void)upload;
	(void)upload_len;
	(void)req;
	return serve(cls, conn, url, method, true);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	cp_warn("report server: %s", buf);
}

int cp_report_listen(struct cp_report *r)
{
	const char *listen = r->cfg.listen, *colon;
	struct addrinfo hints, *ai = NULL;
	char host[128];
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_TLS;
	int rc;

	if (!listen[0])
		return 0;
	colon = strrchr(listen, ':');
	if (!colon || colon == listen || !colon[1]) {
		cp_err("report_listen %s: not host:port", listen);
		return -1;
	}
	if (listen[0] == '[' && colon[-1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)(colon - listen - 2), listen + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	rc = getaddrinfo(host, colon + 1, &hints, &ai);
	if (rc) {
		cp_err("report_listen %s: %s (a numeric address and port are needed)", listen,
		       gai_strerror(rc));
		return -1;
	}
	if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
		freeaddrinfo(ai);
		cp_err("report_listen %s: this libmicrohttpd has no TLS; running without it",
		       listen);
		return 0;
	}
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	r->tls = MHD_start_daemon(
		flags, 0, NULL, NULL, answer_tls, r, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
		MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_HTTPS_MEM_CERT, r->tls_cert,
		MHD_OPTION_HTTPS_MEM_KEY, r->tls_key, MHD_OPTION_HTTPS_PRIORITIES,
		"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", MHD_OPTION_CONNECTION_LIMIT, 64u,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
		MHD_OPTION_END);
	freeaddrinfo(ai);
	if (!r->tls) {
		/* as for /metrics: a port someone else has must not keep
		 * enforcement from running */
		cp_err("report_listen %s: cannot listen (address in use, or a certificate or key "
		       "GnuTLS refuses?); running without it",
		       listen);
		return 0;
	}
	cp_info("report: https://%s/report/tenant/TOKEN", listen);
	return 0;
}
