/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The fleet store on etcd (etcdstore.h, docs/fleet.md).
 *
 * Values are JSON objects with "v": the layout version they were written
 * in.  A value this build cannot read (another layout, not JSON, a field of
 * the wrong type) is never overwritten: the call that meets it fails with
 * the key named, at start-up tescontrol refuses to start, and the watch
 * logs it and leaves the copy as it was.
 *
 * What blocks: every etcd call is bounded by libtesetcd (timeout_ms per
 * endpoint, each endpoint tried at most once, twice with a
 * re-authentication).  A call that finds no endpoint answering, or no
 * quorum, marks the store cut off; from then on calls fail at once without
 * touching the network, so the event loop waits on etcd for one call at
 * most, not once per detection.  Whether etcd has a quorum again is asked
 * by a prober thread with a client of its own (struct prober), so that an
 * election or a black-holed member never holds the loop: the loop only
 * reads its verdict at store_fleet_tick.  The watch never blocks
 * (libtesetcd's multi interface behind one descriptor).
 */
#include "controlplane/store/etcdstore.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sqlite3.h>

#include "controlplane/store/etcd/etcd.h"
#include "base/text.h"

#define TXN_OPS_MAX 128
#define PAGE 500
#define JOURNAL_MAX 1000000u

/* A document as last seen in etcd. */
struct doc_slot {
	bool have;
	int64_t rev;
	struct store_doc d;
	char by[64];
};

enum { DOC_POLICY, DOC_BUILDS, DOC_COMPLIANCE, DOC_N };
static const char *const doc_names[DOC_N] = { "policy", "catalog.builds", "catalog.compliance" };

/* A change the watch delivered, copied out of the callback (which must not
 * call back into us) and handed to the state by poll.  PENDING_BAD: a
 * record this build cannot read (msg says which). */
#define PENDING_BAD ((enum store_change_kind)100)

struct pending {
	enum store_change_kind kind;
	uint32_t tenant_id;
	int64_t rev;
	char by[64];
	char fqdn[TES_FQDN_MAX];
	struct store_server server;
	struct tes_tenant *tenant; /* TENANT: malloc'd */
	char *msg;                 /* PENDING_BAD: malloc'd */
};

struct trev {
	uint32_t id;
	int64_t rev;
};

/* While cut off, a thread asks etcd for a linearizable read (answered only
 * with a quorum) until one succeeds, backing off from 100 ms to 2 s.  It
 * owns its client (a libtesetcd client is one thread's at a time) and
 * shares with the loop only the fields below, under mu: the loop sets want
 * (and stop), the thread sets ok and err. */
struct prober {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	bool started, want, ok, stop;
	char err[512];
	struct etcd_client *c;
	char key[300];
	size_t klen;
};

struct etcd_store {
	struct tes_store base; /* first: the callers' handle */
	struct etcd_client *c;
	struct etcd_config ecfg;
	char *eps[ETCD_MAX_ENDPOINTS];
	char prefix[256];
	char appliance[64];
	char where[512];
	unsigned lease_seconds, flush_seconds;

	/* read at open, handed out by load_tenants / load_servers */
	int64_t load_rev;
	struct tes_tenant *tenants;
	size_t ntenants;
	struct trev *trevs; /* each tenant's revision as last delivered */
	size_t ntrevs, captrevs;
	struct doc_slot docs[DOC_N];

	/* buffered transaction */
	bool in_txn;
	struct etcd_op ops[TXN_OPS_MAX];
	size_t nops;

	/* the watch and what it delivered */
	struct etcd_watch *watch;
	bool watch_stopped, need_resync;
	struct pending *q;
	size_t nq, capq;
	bool catalog_changed, policy_changed;
	char catalog_by[64], policy_by[64];

	/* liveness */
	int64_t lease;
	int64_t lease_at; /* monotonic seconds of the last keepalive */
	int64_t self_at;  /* monotonic seconds of the last self write */
	int64_t started_at;

	/* cut off */
	bool cut_off;
	int64_t cut_off_since;
	char last_error[512];
	struct prober probe;

	sqlite3 *journal;
	uint64_t njournal;

	struct store_fleet_status stats;
};

static struct etcd_store *es(struct tes_store *st)
{
	return (struct etcd_store *)st;
}

static const struct etcd_store *ces(const struct tes_store *st)
{
	return (const struct etcd_store *)st;
}

static int64_t wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

static int64_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static int errf(struct etcd_store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int errf(struct etcd_store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->base.err, sizeof(s->base.err), fmt, ap);
	va_end(ap);
	return -1;
}

/* A key as people read it: printable, bounded. */
static void key_text(const void *key, size_t len, char *out, size_t outlen)
{
	const uint8_t *k = key;
	size_t o = 0;

	for (size_t i = 0; i < len && o + 5 < outlen; i++) {
		if (k[i] >= 0x20 && k[i] < 0x7f && k[i] != '\'' && k[i] != '\\')
			out[o++] = (char)k[i];
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", k[i]);
	}
	if (o + 5 >= outlen && outlen > 4)
		memcpy(out + outlen - 4, "...", 4);
	else
		out[o] = '\0';
}

/* ---- the prober ---- */

static void *probe_main(void *arg)
{
	struct prober *p = arg;
	unsigned backoff_ms = 100;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct etcd_range_result r;
		char err[1024];
		int rc;

		while (!p->stop && !p->want) {
			pthread_cond_wait(&p->cv, &p->mu);
			backoff_ms = 100;
		}
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->mu);
		rc = etcd_range(p->c, p->key, p->klen,
				&(struct etcd_range_opts){ .count_only = true }, &r, err,
				sizeof(err));
		if (rc == 0)
			etcd_range_result_free(&r);
		pthread_mutex_lock(&p->mu);
		if (rc == 0) {
			p->ok = true;
			p->want = false;
			continue;
		}
		tes_str_copy(p->err, sizeof(p->err), err);
		{
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += backoff_ms / 1000;
			ts.tv_nsec += (long)(backoff_ms % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			while (!p->stop && p->want &&
			       pthread_cond_timedwait(&p->cv, &p->mu, &ts) == 0)
				;
		}
		backoff_ms = backoff_ms * 2 > 2000 ? 2000 : backoff_ms * 2;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int probe_init(struct etcd_store *s, char *err, size_t errlen)
{
	struct prober *p = &s->probe;
	pthread_condattr_t ca;

	p->c = etcd_client_new(&s->ecfg, err, errlen);
	if (!p->c)
		return -1;
	p->klen = (size_t)snprintf(p->key, sizeof(p->key), "%s/layout", s->prefix);
	if (pthread_condattr_init(&ca) || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) ||
	    pthread_cond_init(&p->cv, &ca) || pthread_mutex_init(&p->mu, NULL)) {
		snprintf(err, errlen, "etcd prober: cannot set up its lock");
		etcd_client_free(p->c);
		p->c = NULL;
		return -1;
	}
	pthread_condattr_destroy(&ca);
	return 0;
}

/* Cut off: the prober starts asking (the thread is started the first
 * time; without it, store_fleet_tick never finds etcd back, and says so). */
static void probe_want(struct etcd_store *s)
{
	struct prober *p = &s->probe;

	if (!p->c)
		return;
	pthread_mutex_lock(&p->mu);
	p->want = true;
	p->ok = false;
	p->err[0] = '\0';
	if (!p->started) {
		p->started = pthread_create(&p->th, NULL, probe_main, p) == 0;
		if (!p->started)
			tes_str_copy(p->err, sizeof(p->err),
				     "etcd prober: cannot start its thread");
	}
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* 1: etcd answered with a quorum since the store was cut off; else 0, and
 * err says the prober's last failure ("" if none yet). */
static int probe_result(struct etcd_store *s, char *err, size_t errlen)
{
	struct prober *p = &s->probe;
	int ok;

	err[0] = '\0';
	if (!p->c)
		return 0;
	pthread_mutex_lock(&p->mu);
	ok = p->ok;
	p->ok = false;
	tes_str_copy(err, errlen, p->err);
	pthread_mutex_unlock(&p->mu);
	return ok;
}

static void probe_free(struct etcd_store *s)
{
	struct prober *p = &s->probe;

	if (!p->c)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
	/* At most one read in flight: bounded by the client's timeouts. */
	if (p->started)
		pthread_join(p->th, NULL);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	etcd_client_free(p->c);
	p->c = NULL;
}

/* A failed etcd call: a store error, and the store is cut off unless etcd
 * answered and refused (a refusal, wrong credentials, a bad argument):
 * nobody answered, the answer to a write was lost, or what answered was
 * not etcd.  Cut off, detections go to the journal instead of being
 * refused. */
static int call_failed(struct etcd_store *s, const char *msg)
{
	enum etcd_errkind k = etcd_client_errkind(s->c);

	errf(s, "%s", msg);
	tes_str_copy(s->last_error, sizeof(s->last_error), msg);
	if (k != ETCD_ERR_REFUSED && k != ETCD_ERR_AUTH && k != ETCD_ERR_USAGE &&
	    k != ETCD_ERR_NOT_FOUND && !s->cut_off) {
		s->cut_off = true;
		s->cut_off_since = wall_now();
		probe_want(s);
	}
	return -1;
}

static int refuse_cut_off(struct etcd_store *s, const char *what)
{
	char at[40];

	tes_time_format(s->cut_off_since, 0, at, sizeof(at));
	return errf(s, "%s: etcd is out of reach (cut off since %s; last error: %s)", what, at,
		    s->last_error);
}

/* ---- keys ---- */

static size_t key_of(const struct etcd_store *s, char *out, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static size_t key_of(const struct etcd_store *s, char *out, size_t len, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(out, len, "%s", s->prefix);

	va_start(ap, fmt);
	n += vsnprintf(out + n, len - (size_t)n, fmt, ap);
	va_end(ap);
	return (size_t)n < len ? (size_t)n : len - 1;
}

static size_t server_key(const struct etcd_store *s, uint32_t tenant, const char *fqdn, char *out,
			 size_t len)
{
	char lower[TES_FQDN_MAX];
	size_t i;

	for (i = 0; fqdn[i] && i < TES_FQDN_MAX - 1; i++)
		lower[i] = (char)tolower((unsigned char)fqdn[i]);
	lower[i] = '\0';
	return key_of(s, out, len, "/v1/servers/%" PRIu32 "/%s", tenant, lower);
}

static size_t tenant_key(const struct etcd_store *s, uint32_t id, char *out, size_t len)
{
	return key_of(s, out, len, "/v1/tenants/%" PRIu32, id);
}

static size_t doc_key(const struct etcd_store *s, int d, char *out, size_t len)
{
	return key_of(s, out, len, "/v1/docs/%s", doc_names[d]);
}

static int doc_index(const char *name)
{
	if (strcmp(name, STORE_DOC_POLICY) == 0)
		return DOC_POLICY;
	if (strcmp(name, STORE_DOC_BUILDS) == 0)
		return DOC_BUILDS;
	if (strcmp(name, STORE_DOC_COMPLIANCE) == 0)
		return DOC_COMPLIANCE;
	return -1;
}

/* ---- values ---- */

static char *dump(json_t *o, size_t *len)
{
	char *t = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (t)
		*len = strlen(t);
	return t;
}

static json_t *server_json(const struct etcd_store *s, const struct store_server *v)
{
	const struct tes_server *x = &v->s;
	char build[48];
	json_t *src = json_array(), *o;

	ex_build_format(&x->build, build, sizeof(build));
	for (unsigned i = 0; src && i < x->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
		char a[64];

		if (tes_addr_format(&x->sources[i], a, sizeof(a)) >= 0)
			json_array_append_new(src, json_pack("{s:s, s:I}", "addr", a, "seen",
							     (json_int_t)x->source_seen[i]));
	}
	o = json_pack("{s:i, s:I, s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:s}", "v",
		      STORE_ETCD_LAYOUT, "tenant", (json_int_t)x->tenant_id, "fqdn", x->fqdn,
		      "build", build, "family", ex_family_name(x->family), "resolved", x->resolved,
		      "first_detected", (json_int_t)x->first_detected, "resolved_at",
		      (json_int_t)x->resolved_at, "pause_base", (json_int_t)x->pause_base,
		      "last_seen", (json_int_t)x->last_seen, "stale_seconds",
		      (json_int_t)x->stale_seconds, "floor", (json_int_t)v->floor, "sources",
		      src ? src : json_array(), "by", s->appliance);
	return o;
}

/* The object in a value, checked to be of this layout; NULL with the key
 * named in the store's error. */
static json_t *parse_value(struct etcd_store *s, const struct etcd_kv *kv)
{
	json_error_t je;
	json_t *o, *v;
	char kt[300];

	key_text(kv->key, kv->key_len, kt, sizeof(kt));
	o = json_loadb((const char *)kv->value, kv->value_len, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		s->stats.bad_records++;
		errf(s,
		     "etcd key '%s' (revision %" PRId64 "): not JSON (%s at column %d); left as"
		     " it is",
		     kt, kv->mod_revision, je.text, je.column);
		return NULL;
	}
	v = json_object_get(o, "v");
	if (!json_is_object(o) || !json_is_integer(v)) {
		s->stats.bad_records++;
		errf(s,
		     "etcd key '%s' (revision %" PRId64 "): not a tesgate record (no layout"
		     " version \"v\"); left as it is",
		     kt, kv->mod_revision);
		json_decref(o);
		return NULL;
	}
	if (json_integer_value(v) != STORE_ETCD_LAYOUT) {
		s->stats.bad_records++;
		errf(s,
		     "etcd key '%s' (revision %" PRId64 "): layout version %" JSON_INTEGER_FORMAT
		     ", this tescontrol reads %d; left as it is",
		     kt, kv->mod_revision, json_integer_value(v), STORE_ETCD_LAYOUT);
		json_decref(o);
		return NULL;
	}
	return o;
}

static int bad_field(struct etcd_store *s, const struct etcd_kv *kv, const char *field,
		     const char *why)
{
	char kt[300];

	key_text(kv->key, kv->key_len, kt, sizeof(kt));
	s->stats.bad_records++;
	return errf(s, "etcd key '%s' (revision %" PRId64 "): field \"%s\" %s; left as it is", kt,
		    kv->mod_revision, field, why);
}

static int get_int(struct etcd_store *s, const struct etcd_kv *kv, json_t *o, const char *f,
		   int64_t lo, int64_t hi, int64_t *out)
{
	json_t *v = json_object_get(o, f);

	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
		return bad_field(s, kv, f, "is missing or not an integer in range");
	*out = json_integer_value(v);
	return 0;
}

static int get_str(struct etcd_store *s, const struct etcd_kv *kv, json_t *o, const char *f,
		   char *out, size_t len)
{
	json_t *v = json_object_get(o, f);

	if (!json_is_string(v) || json_string_length(v) >= len)
		return bad_field(s, kv, f, "is missing, not a string or too long");
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static void get_by(json_t *o, char *out, size_t len)
{
	const char *b = json_string_value(json_object_get(o, "by"));

	tes_str_copy(out, len, b ? b : "");
}

static int decode_server(struct etcd_store *s, const struct etcd_kv *kv, struct store_server *v,
			 char *by, size_t bylen)
{
	json_t *o = parse_value(s, kv), *src, *e;
	char build[48], fam[32];
	int64_t x;
	size_t i;

	if (!o)
		return -1;
	memset(v, 0, sizeof(*v));
	if (get_int(s, kv, o, "tenant", 0, UINT32_MAX, &x))
		goto bad;
	v->s.tenant_id = (uint32_t)x;
	if (get_str(s, kv, o, "fqdn", v->s.fqdn, sizeof(v->s.fqdn)) ||
	    get_str(s, kv, o, "build", build, sizeof(build)) ||
	    get_str(s, kv, o, "family", fam, sizeof(fam)))
		goto bad;
	if (!v->s.fqdn[0]) {
		bad_field(s, kv, "fqdn", "is empty");
		goto bad;
	}
	if (!ex_build_from_str(build, &v->s.build)) {
		bad_field(s, kv, "build", "is not a build");
		goto bad;
	}
	v->s.family = ex_family_from_name(fam);
	if (!json_is_boolean(json_object_get(o, "resolved"))) {
		bad_field(s, kv, "resolved", "is missing or not true/false");
		goto bad;
	}
	v->s.resolved = json_is_true(json_object_get(o, "resolved"));
	if (get_int(s, kv, o, "first_detected", 0, TES_TIME_MAX, &v->s.first_detected) ||
	    get_int(s, kv, o, "resolved_at", 0, TES_TIME_MAX, &v->s.resolved_at) ||
	    get_int(s, kv, o, "pause_base", 0, TES_TIME_MAX, &v->s.pause_base) ||
	    get_int(s, kv, o, "last_seen", 0, TES_TIME_MAX, &v->s.last_seen) ||
	    get_int(s, kv, o, "stale_seconds", 0, TES_TIME_MAX, &v->s.stale_seconds) ||
	    get_int(s, kv, o, "floor", 0, TES_TIME_MAX, &v->floor))
		goto bad;
	src = json_object_get(o, "sources");
	if (!json_is_array(src)) {
		bad_field(s, kv, "sources", "is missing or not a list");
		goto bad;
	}
	json_array_foreach(src, i, e)
	{
		const char *a = json_string_value(json_object_get(e, "addr"));
		json_t *seen = json_object_get(e, "seen");

		if (!a || !json_is_integer(seen) || v->s.nsources >= TES_SERVER_SOURCES_MAX ||
		    !tes_addr_parse(a, &v->s.sources[v->s.nsources])) {
			bad_field(s, kv, "sources", "holds an entry that is not {addr, seen}");
			goto bad;
		}
		v->s.source_seen[v->s.nsources++] = json_integer_value(seen);
	}
	if (by)
		get_by(o, by, bylen);
	v->rev = kv->mod_revision;
	v->stage_logged = 1;
	json_decref(o);
	return 0;
bad:
	json_decref(o);
	return -1;
}

static json_t *tenant_json(const struct etcd_store *s, const struct tes_tenant *t)
{
	json_t *conns = json_array();

	for (unsigned i = 0; conns && i < t->nconnectors && i < TES_TENANT_CONNECTORS_MAX; i++) {
		char a[64], range[80];

		if (tes_addr_format(&t->connectors[i].net, a, sizeof(a)) < 0)
			continue;
		snprintf(range, sizeof(range), "%s/%u", a, t->connectors[i].prefix_len);
		json_array_append_new(conns, json_pack("{s:s, s:s}", "range", range, "cert_name",
						       t->connectors[i].cert_name));
	}
	return json_pack("{s:i, s:I, s:s, s:o, s:{s:I, s:I, s:I, s:i, s:i}, s:s}", "v",
			 STORE_ETCD_LAYOUT, "id", (json_int_t)t->id, "name", t->name, "connectors",
			 conns ? conns : json_array(), "pause", "start", (json_int_t)t->pause.start,
			 "end", (json_int_t)t->pause.end, "paused_before",
			 (json_int_t)t->pause.paused_before, "year", (int)t->pause.year,
			 "days_used", (int)t->pause.days_used, "by", s->appliance);
}

static int decode_tenant(struct etcd_store *s, const struct etcd_kv *kv, struct tes_tenant *t,
			 char *by, size_t bylen)
{
	json_t *o = parse_value(s, kv), *conns, *c, *p;
	int64_t x;
	size_t i;

	if (!o)
		return -1;
	memset(t, 0, sizeof(*t));
	if (get_int(s, kv, o, "id", 1, UINT32_MAX, &x))
		goto bad;
	t->id = (uint32_t)x;
	if (get_str(s, kv, o, "name", t->name, sizeof(t->name)))
		goto bad;
	conns = json_object_get(o, "connectors");
	if (!json_is_array(conns) || json_array_size(conns) > TES_TENANT_CONNECTORS_MAX) {
		bad_field(s, kv, "connectors", "is missing or not a list of at most 16");
		goto bad;
	}
	json_array_foreach(conns, i, c)
	{
		const char *r = json_string_value(json_object_get(c, "range"));
		const char *cn = json_string_value(json_object_get(c, "cert_name"));

		if (!r || tes_connector_parse(r, cn, &t->connectors[t->nconnectors])) {
			bad_field(s, kv, "connectors", "holds an entry that is not a connector");
			goto bad;
		}
		t->nconnectors++;
	}
	p = json_object_get(o, "pause");
	if (!json_is_object(p)) {
		bad_field(s, kv, "pause", "is missing or not an object");
		goto bad;
	}
	if (get_int(s, kv, p, "start", 0, TES_TIME_MAX, &t->pause.start) ||
	    get_int(s, kv, p, "end", 0, TES_TIME_MAX, &t->pause.end) ||
	    get_int(s, kv, p, "paused_before", 0, TES_TIME_MAX, &t->pause.paused_before))
		goto bad;
	if (get_int(s, kv, p, "year", 0, 65535, &x))
		goto bad;
	t->pause.year = (uint16_t)x;
	if (get_int(s, kv, p, "days_used", 0, 65535, &x))
		goto bad;
	t->pause.days_used = (uint16_t)x;
	if (by)
		get_by(o, by, bylen);
	json_decref(o);
	return 0;
bad:
	json_decref(o);
	return -1;
}

static json_t *doc_json(const struct etcd_store *s, const struct store_doc *d)
{
	json_t *text = json_stringn(d->text ? d->text : "", d->len);

	if (!text)
		return NULL;
	return json_pack("{s:i, s:s, s:o, s:s, s:I, s:s}", "v", STORE_ETCD_LAYOUT, "name", d->name,
			 "text", text, "version", d->version, "loaded_at", (json_int_t)d->loaded_at,
			 "by", s->appliance);
}

static int decode_doc(struct etcd_store *s, const struct etcd_kv *kv, struct store_doc *d, char *by,
		      size_t bylen)
{
	json_t *o = parse_value(s, kv), *text;

	if (!o)
		return -1;
	memset(d, 0, sizeof(*d));
	if (get_str(s, kv, o, "name", d->name, sizeof(d->name)) ||
	    get_str(s, kv, o, "version", d->version, sizeof(d->version)) ||
	    get_int(s, kv, o, "loaded_at", 0, TES_TIME_MAX, &d->loaded_at))
		goto bad;
	text = json_object_get(o, "text");
	if (!json_is_string(text)) {
		bad_field(s, kv, "text", "is missing or not a string");
		goto bad;
	}
	d->len = json_string_length(text);
	d->text = malloc(d->len + 1);
	if (!d->text) {
		errf(s, "out of memory");
		goto bad;
	}
	memcpy(d->text, json_string_value(text), d->len + 1);
	if (by)
		get_by(o, by, bylen);
	json_decref(o);
	return 0;
bad:
	json_decref(o);
	return -1;
}

static void doc_copy(struct store_doc *dst, const struct store_doc *src)
{
	*dst = *src;
	dst->text = malloc(src->len + 1);
	if (dst->text) {
		memcpy(dst->text, src->text ? src->text : "", src->len);
		dst->text[src->len] = '\0';
	} else {
		dst->len = 0;
	}
}

/* ---- tenants' revisions ---- */

static struct trev *trev_find(struct etcd_store *s, uint32_t id)
{
	for (size_t i = 0; i < s->ntrevs; i++) {
		if (s->trevs[i].id == id)
			return &s->trevs[i];
	}
	return NULL;
}

static void trev_set(struct etcd_store *s, uint32_t id, int64_t rev)
{
	struct trev *r = trev_find(s, id);

	if (!r) {
		if (s->ntrevs == s->captrevs) {
			size_t nc = s->captrevs ? s->captrevs * 2 : 16;
			struct trev *n = realloc(s->trevs, nc * sizeof(*n));

			if (!n)
				return; /* the next compare-and-swap fails and re-reads */
			s->trevs = n;
			s->captrevs = nc;
		}
		r = &s->trevs[s->ntrevs++];
		r->id = id;
	}
	r->rev = rev;
}

static void trev_drop(struct etcd_store *s, uint32_t id)
{
	struct trev *r = trev_find(s, id);

	if (r)
		*r = s->trevs[--s->ntrevs];
}

/* ---- the buffered transaction ---- */

static void ops_free(struct etcd_store *s)
{
	for (size_t i = 0; i < s->nops; i++) {
		free((void *)s->ops[i].key);
		free((void *)s->ops[i].value);
		free((void *)s->ops[i].range_end);
	}
	s->nops = 0;
}

/* Queue (in a transaction) or run an operation; takes key (a string) and
 * value. */
static int op_add(struct etcd_store *s, enum etcd_op_type type, char *key, char *value, size_t vlen,
		  bool prefix, const char *what)
{
	char err[1024];
	size_t klen = key ? strlen(key) : 0;
	int rc;

	if (!key || (type == ETCD_OP_PUT && !value)) {
		free(key);
		free(value);
		return errf(s, "%s: out of memory", what);
	}
	if (s->in_txn) {
		if (s->nops == TXN_OPS_MAX) {
			free(key);
			free(value);
			return errf(s, "%s: more than %d changes in one transaction", what,
				    TXN_OPS_MAX);
		}
		s->ops[s->nops++] = (struct etcd_op){ .type = type,
						      .key = key,
						      .key_len = klen,
						      .value = value,
						      .value_len = vlen,
						      .prefix = prefix };
		return 0;
	}
	if (s->cut_off) {
		free(key);
		free(value);
		return refuse_cut_off(s, what);
	}
	if (type == ETCD_OP_PUT) {
		struct etcd_put_result r;

		rc = etcd_put(s->c, key, klen, value, vlen, NULL, &r, err, sizeof(err));
		if (rc == 0) {
			s->stats.revision = r.header.revision;
			etcd_put_result_free(&r);
		}
	} else {
		struct etcd_delete_opts o = { .prefix = prefix };
		struct etcd_delete_result r;

		rc = etcd_delete(s->c, key, klen, &o, &r, err, sizeof(err));
		if (rc == 0) {
			s->stats.revision = r.header.revision;
			etcd_delete_result_free(&r);
		}
	}
	free(key);
	free(value);
	if (rc)
		return call_failed(s, err);
	s->stats.writes++;
	s->stats.keys_written++;
	return 0;
}

static char *dupkey(const char *k, size_t n)
{
	char *d = malloc(n + 1);

	if (d) {
		memcpy(d, k, n);
		d[n] = '\0';
	}
	return d;
}

static int es_begin(struct tes_store *st)
{
	struct etcd_store *s = es(st);

	if (s->in_txn)
		return errf(s, "transaction already open");
	s->in_txn = true;
	s->nops = 0;
	return 0;
}

static int es_commit(struct tes_store *st)
{
	struct etcd_store *s = es(st);
	struct etcd_txn_result r;
	struct timespec t0, t1;
	char err[1024];
	int rc;

	if (!s->in_txn)
		return errf(s, "no transaction open");
	s->in_txn = false;
	if (!s->nops)
		return 0;
	if (s->cut_off) {
		ops_free(s);
		return refuse_cut_off(s, "etcd transaction");
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = etcd_txn(s->c, NULL, 0, s->ops, s->nops, NULL, 0, &r, err, sizeof(err));
	if (rc == 0) {
		s->stats.revision = r.header.revision;
		s->stats.writes++;
		s->stats.keys_written += s->nops;
		/* Tenants and documents written here come back through the
		 * watch; their revision is this one. */
		for (size_t i = 0; i < s->nops; i++) {
			const char *k = s->ops[i].key;
			char tk[300];
			size_t plen = key_of(s, tk, sizeof(tk), "/v1/tenants/");

			if (strncmp(k, tk, plen) != 0)
				continue;
			if (s->ops[i].type == ETCD_OP_PUT)
				trev_set(s, (uint32_t)strtoul(k + plen, NULL, 10),
					 r.header.revision);
			else
				trev_drop(s, (uint32_t)strtoul(k + plen, NULL, 10));
		}
		etcd_txn_result_free(&r);
	}
	ops_free(s);
	if (rc)
		return call_failed(s, err);
	if (st->on_commit) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		st->on_commit(st->on_commit_ctx, (double)(t1.tv_sec - t0.tv_sec) +
							 (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	}
	return 0;
}

static void es_rollback(struct tes_store *st)
{
	struct etcd_store *s = es(st);

	ops_free(s);
	s->in_txn = false;
}

/* ---- store_ops ---- */

static int es_load_tenants(struct tes_store *st, store_tenant_cb cb, void *ctx)
{
	struct etcd_store *s = es(st);

	for (size_t i = 0; i < s->ntenants; i++) {
		if (cb(&s->tenants[i], ctx))
			return errf(s, "loading tenants: stopped by the caller");
	}
	return 0;
}

static int es_put_tenant(struct tes_store *st, const struct tes_tenant *t)
{
	struct etcd_store *s = es(st);
	char k[300], *v;
	size_t kl, vl = 0;

	if (t->id == 0)
		return errf(s, "tenant id 0 is reserved");
	kl = tenant_key(s, t->id, k, sizeof(k));
	v = dump(tenant_json(s, t), &vl);
	return op_add(s, ETCD_OP_PUT, dupkey(k, kl), v, vl, false, "etcd put tenant");
}

static int es_delete_tenant(struct tes_store *st, uint32_t id)
{
	struct etcd_store *s = es(st);
	char k[300], sk[300];
	size_t kl, skl;
	int rc;

	/* The tenant's servers go with it: one prefix delete instead of one
	 * operation each (a transaction holds at most 128). */
	skl = key_of(s, sk, sizeof(sk), "/v1/servers/%" PRIu32 "/", id);
	if (s->in_txn) {
		for (size_t i = 0; i < s->nops;) {
			if (s->ops[i].type == ETCD_OP_DELETE && !s->ops[i].prefix &&
			    s->ops[i].key_len > skl && memcmp(s->ops[i].key, sk, skl) == 0) {
				free((void *)s->ops[i].key);
				free((void *)s->ops[i].value);
				s->ops[i] = s->ops[--s->nops];
			} else {
				i++;
			}
		}
	}
	rc = op_add(s, ETCD_OP_DELETE, dupkey(sk, skl), NULL, 0, true, "etcd delete servers");
	kl = tenant_key(s, id, k, sizeof(k));
	if (rc == 0)
		rc = op_add(s, ETCD_OP_DELETE, dupkey(k, kl), NULL, 0, false, "etcd delete tenant");
	if (rc == 0 && !s->in_txn)
		trev_drop(s, id);
	return rc;
}

static int es_load_servers(struct tes_store *st, store_server_cb cb, void *ctx);

static int es_put_server(struct tes_store *st, const struct store_server *v)
{
	struct etcd_store *s = es(st);
	char k[600], *val;
	size_t kl, vl = 0;

	if (!v->s.fqdn[0])
		return errf(s, "server without a name");
	kl = server_key(s, v->s.tenant_id, v->s.fqdn, k, sizeof(k));
	val = dump(server_json(s, v), &vl);
	return op_add(s, ETCD_OP_PUT, dupkey(k, kl), val, vl, false, "etcd put server");
}

static int es_delete_server(struct tes_store *st, uint32_t tenant_id, const char *fqdn)
{
	struct etcd_store *s = es(st);
	char k[600];
	size_t kl = server_key(s, tenant_id, fqdn, k, sizeof(k));

	return op_add(s, ETCD_OP_DELETE, dupkey(k, kl), NULL, 0, false, "etcd delete server");
}

static int es_get_doc(struct tes_store *st, const char *key, struct store_doc *out)
{
	struct etcd_store *s = es(st);
	int d = doc_index(key);

	memset(out, 0, sizeof(*out));
	if (d < 0)
		return errf(s, "no document \"%s\"", key);
	if (!s->docs[d].have)
		return 0;
	doc_copy(out, &s->docs[d].d);
	if (!out->text)
		return errf(s, "out of memory reading %s", key);
	return 1;
}

static int es_put_doc(struct tes_store *st, const char *key, const struct store_doc *doc)
{
	struct etcd_store *s = es(st);
	int d = doc_index(key);
	char k[300], *v;
	size_t kl, vl = 0;
	json_t *j;

	if (d < 0)
		return errf(s, "no document \"%s\"", key);
	j = doc_json(s, doc);
	if (!j)
		return errf(s, "document %s: its text is not UTF-8", doc->name);
	kl = doc_key(s, d, k, sizeof(k));
	v = dump(j, &vl);
	if (op_add(s, ETCD_OP_PUT, dupkey(k, kl), v, vl, false, "etcd put document"))
		return -1;
	/* What this appliance put in force is the newest it knows: the
	 * watch's echo is not news. */
	if (!s->in_txn) {
		store_doc_free(&s->docs[d].d);
		doc_copy(&s->docs[d].d, doc);
		s->docs[d].have = true;
		s->docs[d].rev = s->stats.revision;
	} else {
		store_doc_free(&s->docs[d].d);
		doc_copy(&s->docs[d].d, doc);
		s->docs[d].have = true;
		s->docs[d].rev = INT64_MAX; /* set at the watch's echo */
	}
	return 0;
}

static int es_schema_version(struct tes_store *st)
{
	(void)st;
	return STORE_ETCD_LAYOUT;
}

/* ---- the shared-store operations ---- */

static int read_server(struct etcd_store *s, const char *k, size_t kl, struct store_server *out,
		       const char *what)
{
	struct etcd_range_result r;
	char err[1024];
	int rc;

	if (etcd_range(s->c, k, kl, NULL, &r, err, sizeof(err)))
		return call_failed(s, err);
	s->stats.revision = r.header.revision;
	if (r.nkvs == 0) {
		etcd_range_result_free(&r);
		return 0;
	}
	rc = decode_server(s, &r.kvs[0], out, NULL, 0);
	etcd_range_result_free(&r);
	if (rc) {
		char keep[sizeof(s->base.err)];

		memcpy(keep, s->base.err, sizeof(keep));
		errf(s, "%s: %s", what, keep);
		return -1;
	}
	return 1;
}

static int es_get_server(struct tes_store *st, uint32_t tenant_id, const char *fqdn,
			 struct store_server *out)
{
	struct etcd_store *s = es(st);
	char k[600];
	size_t kl = server_key(s, tenant_id, fqdn, k, sizeof(k));

	if (s->cut_off)
		return refuse_cut_off(s, "etcd get server");
	return read_server(s, k, kl, out, "etcd get server");
}

static int es_cas_server(struct tes_store *st, struct store_server *v, int64_t expect,
			 struct store_server *cur, bool *found)
{
	struct etcd_store *s = es(st);
	struct etcd_compare cmp = { .result = ETCD_CMP_EQUAL };
	struct etcd_op put = { .type = ETCD_OP_PUT }, get = { .type = ETCD_OP_RANGE };
	struct etcd_txn_result r;
	char k[600], err[1024], *val;
	size_t kl, vl = 0;
	int rc;

	*found = false;
	if (s->cut_off)
		return refuse_cut_off(s, "etcd write server");
	kl = server_key(s, v->s.tenant_id, v->s.fqdn, k, sizeof(k));
	val = dump(server_json(s, v), &vl);
	if (!val)
		return errf(s, "etcd write server: out of memory");
	cmp.key = get.key = put.key = k;
	cmp.key_len = get.key_len = put.key_len = kl;
	cmp.target = expect ? ETCD_CMP_MOD : ETCD_CMP_CREATE;
	cmp.number = expect;
	put.value = val;
	put.value_len = vl;
	rc = etcd_txn(s->c, &cmp, 1, &put, 1, &get, 1, &r, err, sizeof(err));
	if (rc && etcd_client_errkind(s->c) == ETCD_ERR_UNKNOWN_OUTCOME) {
		/* Whether it landed is in etcd: read it back.  Our own value
		 * there is a success, anything else a conflict. */
		struct etcd_range_result g;
		char err2[1024];

		if (etcd_range(s->c, k, kl, NULL, &g, err2, sizeof(err2)) == 0) {
			s->stats.revision = g.header.revision;
			if (g.nkvs == 1 && g.kvs[0].value_len == vl &&
			    memcmp(g.kvs[0].value, val, vl) == 0) {
				v->rev = g.kvs[0].mod_revision;
				etcd_range_result_free(&g);
				free(val);
				s->stats.writes++;
				s->stats.keys_written++;
				return 1;
			}
			s->stats.conflicts++;
			rc = 0;
			if (g.nkvs == 1) {
				*found = true;
				rc = decode_server(s, &g.kvs[0], cur, NULL, 0) ? -1 : 0;
			}
			etcd_range_result_free(&g);
			free(val);
			return rc;
		}
		free(val);
		return call_failed(s, err2);
	}
	free(val);
	if (rc)
		return call_failed(s, err);
	s->stats.revision = r.header.revision;
	if (r.succeeded) {
		v->rev = r.header.revision;
		s->stats.writes++;
		s->stats.keys_written++;
		etcd_txn_result_free(&r);
		return 1;
	}
	s->stats.conflicts++;
	rc = 0;
	if (r.nresponses == 1 && r.responses[0].nkvs == 1) {
		*found = true;
		rc = decode_server(s, &r.responses[0].kvs[0], cur, NULL, 0) ? -1 : 0;
	}
	etcd_txn_result_free(&r);
	return rc;
}

static int es_cas_delete_server(struct tes_store *st, uint32_t tenant_id, const char *fqdn,
				int64_t expect)
{
	struct etcd_store *s = es(st);
	struct etcd_compare cmp = { .target = ETCD_CMP_MOD, .result = ETCD_CMP_EQUAL };
	struct etcd_op del = { .type = ETCD_OP_DELETE }, get = { .type = ETCD_OP_RANGE };
	struct etcd_txn_result r;
	char k[600], err[1024];
	size_t kl;
	int rc;

	if (s->cut_off)
		return refuse_cut_off(s, "etcd delete server");
	kl = server_key(s, tenant_id, fqdn, k, sizeof(k));
	cmp.key = del.key = get.key = k;
	cmp.key_len = del.key_len = get.key_len = kl;
	cmp.number = expect;
	get.limit = 1;
	if (etcd_txn(s->c, &cmp, 1, &del, 1, &get, 1, &r, err, sizeof(err)))
		return call_failed(s, err);
	s->stats.revision = r.header.revision;
	rc = r.succeeded || r.nresponses != 1 || r.responses[0].nkvs == 0 ? 1 : 0;
	if (r.succeeded) {
		s->stats.writes++;
		s->stats.keys_written++;
	} else if (rc == 0) {
		s->stats.conflicts++;
	}
	etcd_txn_result_free(&r);
	return rc;
}

static int es_cas_tenant(struct tes_store *st, const struct tes_tenant *t, struct tes_tenant *cur,
			 bool *found)
{
	struct etcd_store *s = es(st);
	struct trev *known = trev_find(s, t->id);
	struct etcd_compare cmp = { .result = ETCD_CMP_EQUAL };
	struct etcd_op put = { .type = ETCD_OP_PUT }, get = { .type = ETCD_OP_RANGE };
	struct etcd_txn_result r;
	char k[300], err[1024], *val;
	size_t kl, vl = 0;
	int rc;

	*found = false;
	if (s->cut_off)
		return refuse_cut_off(s, "etcd write tenant");
	kl = tenant_key(s, t->id, k, sizeof(k));
	val = dump(tenant_json(s, t), &vl);
	if (!val)
		return errf(s, "etcd write tenant: out of memory");
	cmp.key = put.key = get.key = k;
	cmp.key_len = put.key_len = get.key_len = kl;
	cmp.target = known && known->rev ? ETCD_CMP_MOD : ETCD_CMP_CREATE;
	cmp.number = known ? known->rev : 0;
	put.value = val;
	put.value_len = vl;
	rc = etcd_txn(s->c, &cmp, 1, &put, 1, &get, 1, &r, err, sizeof(err));
	free(val);
	if (rc)
		return call_failed(s, err);
	s->stats.revision = r.header.revision;
	if (r.succeeded) {
		trev_set(s, t->id, r.header.revision);
		s->stats.writes++;
		s->stats.keys_written++;
		etcd_txn_result_free(&r);
		return 1;
	}
	s->stats.conflicts++;
	rc = 0;
	if (r.nresponses == 1 && r.responses[0].nkvs == 1) {
		*found = true;
		if (decode_tenant(s, &r.responses[0].kvs[0], cur, NULL, 0))
			rc = -1;
		else
			trev_set(s, t->id, r.responses[0].kvs[0].mod_revision);
	} else {
		trev_set(s, t->id, 0);
	}
	etcd_txn_result_free(&r);
	return rc;
}

/* ---- the journal ---- */

static int journal_err(struct etcd_store *s, const char *what)
{
	return errf(s, "journal %s: %s", what, sqlite3_errmsg(s->journal));
}

static int journal_open(struct etcd_store *s, const char *path, char *err, size_t errlen)
{
	sqlite3_stmt *q;
	char *msg = NULL;

	if (sqlite3_open_v2(path, &s->journal,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "journal %s: %s", path,
			 s->journal ? sqlite3_errmsg(s->journal) : "cannot open");
		return -1;
	}
	sqlite3_busy_timeout(s->journal, 2000);
	if (sqlite3_exec(s->journal,
			 "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
			 "CREATE TABLE IF NOT EXISTS events ("
			 " id INTEGER PRIMARY KEY AUTOINCREMENT,"
			 " tenant_id INTEGER NOT NULL, fqdn TEXT NOT NULL, at INTEGER NOT NULL,"
			 " build TEXT NOT NULL, family INTEGER NOT NULL, class INTEGER NOT NULL,"
			 " reclassify INTEGER NOT NULL, source TEXT NOT NULL);"
			 /* This appliance's own records (report tokens, notice
			  * contacts and journal, refused counts, the stage
			  * history: store.h's records), kept locally: see
			  * docs/fleet.md, "What is not shared". */
			 "CREATE TABLE IF NOT EXISTS records ("
			 " coll TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
			 " PRIMARY KEY (coll, key)) WITHOUT ROWID;",
			 NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "journal %s: %s", path, msg ? msg : "cannot create");
		sqlite3_free(msg);
		return -1;
	}
	if (sqlite3_prepare_v2(s->journal, "SELECT count(*) FROM events", -1, &q, NULL) ==
	    SQLITE_OK) {
		if (sqlite3_step(q) == SQLITE_ROW)
			s->njournal = (uint64_t)sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
	}
	return 0;
}

/* ---- records: this appliance's, in the local database ---- */

static int es_record_run(struct etcd_store *s, sqlite3_stmt *q, const char *what)
{
	int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : journal_err(s, what);

	sqlite3_finalize(q);
	return rc;
}

static int es_put_record(struct tes_store *st, const char *coll, const char *key, const char *value)
{
	struct etcd_store *s = es(st);
	sqlite3_stmt *q;

	if (sqlite3_prepare_v2(s->journal,
			       "INSERT OR REPLACE INTO records (coll, key, value) VALUES (?, ?, ?)",
			       -1, &q, NULL) != SQLITE_OK)
		return journal_err(s, "storing a record");
	sqlite3_bind_text(q, 1, coll, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, value, -1, SQLITE_STATIC);
	return es_record_run(s, q, "storing a record");
}

static int es_delete_record(struct tes_store *st, const char *coll, const char *key)
{
	struct etcd_store *s = es(st);
	sqlite3_stmt *q;

	if (sqlite3_prepare_v2(s->journal, "DELETE FROM records WHERE coll = ? AND key = ?", -1, &q,
			       NULL) != SQLITE_OK)
		return journal_err(s, "deleting a record");
	sqlite3_bind_text(q, 1, coll, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
	return es_record_run(s, q, "deleting a record");
}

static int es_load_records(struct tes_store *st, const char *coll, store_record_cb cb, void *ctx)
{
	struct etcd_store *s = es(st);
	sqlite3_stmt *q;
	int rc;

	if (sqlite3_prepare_v2(s->journal,
			       "SELECT key, value FROM records WHERE coll = ? ORDER BY key", -1, &q,
			       NULL) != SQLITE_OK)
		return journal_err(s, "loading records");
	sqlite3_bind_text(q, 1, coll, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		int r = cb((const char *)sqlite3_column_text(q, 0),
			   (const char *)sqlite3_column_text(q, 1), ctx);

		if (r) {
			sqlite3_finalize(q);
			return r;
		}
	}
	rc = rc == SQLITE_DONE ? 0 : journal_err(s, "loading records");
	sqlite3_finalize(q);
	return rc;
}

static int es_journal_add(struct tes_store *st, const struct store_event *e)
{
	struct etcd_store *s = es(st);
	sqlite3_stmt *q;
	char build[48], src[64] = "";
	int rc;

	if (s->njournal >= JOURNAL_MAX)
		return errf(s, "journal: %u events wait already; refusing more", JOURNAL_MAX);
	if (sqlite3_prepare_v2(s->journal,
			       "INSERT INTO events (tenant_id, fqdn, at, build, family, class,"
			       " reclassify, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			       -1, &q, NULL) != SQLITE_OK)
		return journal_err(s, "insert");
	ex_build_format(&e->build, build, sizeof(build));
	if (e->source.family != TES_ADDR_NONE)
		tes_addr_format(&e->source, src, sizeof(src));
	sqlite3_bind_int64(q, 1, e->tenant_id);
	sqlite3_bind_text(q, 2, e->fqdn, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, e->when);
	sqlite3_bind_text(q, 4, build, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 5, e->family);
	sqlite3_bind_int(q, 6, e->cls);
	sqlite3_bind_int(q, 7, e->reclassify);
	sqlite3_bind_text(q, 8, src, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE)
		return journal_err(s, "insert");
	s->njournal++;
	return 0;
}

static int es_journal_each(struct tes_store *st, store_event_cb cb, void *ctx)
{
	struct etcd_store *s = es(st);
	sqlite3_stmt *q;
	int rc, stop = 0;

	if (sqlite3_prepare_v2(s->journal,
			       "SELECT id, tenant_id, fqdn, at, build, family, class, reclassify,"
			       " source FROM events ORDER BY id",
			       -1, &q, NULL) != SQLITE_OK)
		return journal_err(s, "read");
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct store_event e;
		const char *t;

		memset(&e, 0, sizeof(e));
		e.id = (uint64_t)sqlite3_column_int64(q, 0);
		e.tenant_id = (uint32_t)sqlite3_column_int64(q, 1);
		t = (const char *)sqlite3_column_text(q, 2);
		tes_str_copy(e.fqdn, sizeof(e.fqdn), t ? t : "");
		e.when = sqlite3_column_int64(q, 3);
		t = (const char *)sqlite3_column_text(q, 4);
		if (!t || !ex_build_from_str(t, &e.build))
			continue;
		e.family = (uint8_t)sqlite3_column_int(q, 5);
		e.cls = (uint8_t)sqlite3_column_int(q, 6);
		e.reclassify = sqlite3_column_int(q, 7) != 0;
		t = (const char *)sqlite3_column_text(q, 8);
		if (t && t[0])
			tes_addr_parse(t, &e.source);
		stop = cb(&e, ctx);
		if (stop)
			break;
	}
	sqlite3_finalize(q);
	if (!stop && rc != SQLITE_DONE)
		return journal_err(s, "read");
	return stop ? stop : 0;
}

static int es_journal_remove(struct tes_store *st, uint64_t id)
{
	struct etcd_store *s = es(st);
	sqlite3_stmt *q;
	int rc;

	if (sqlite3_prepare_v2(s->journal, "DELETE FROM events WHERE id = ?", -1, &q, NULL) !=
	    SQLITE_OK)
		return journal_err(s, "delete");
	sqlite3_bind_int64(q, 1, (sqlite3_int64)id);
	rc = sqlite3_step(q);
	sqlite3_finalize(q);
	if (rc != SQLITE_DONE)
		return journal_err(s, "delete");
	if (s->njournal)
		s->njournal--;
	s->stats.reconciled++;
	return 0;
}

/* ---- the watch ---- */

static struct pending *q_push(struct etcd_store *s, enum store_change_kind kind)
{
	struct pending *p;

	if (s->nq == s->capq) {
		size_t nc = s->capq ? s->capq * 2 : 64;
		struct pending *n = realloc(s->q, nc * sizeof(*n));

		if (!n) {
			/* Whatever is lost here a re-read brings back. */
			s->need_resync = true;
			return NULL;
		}
		s->q = n;
		s->capq = nc;
	}
	p = &s->q[s->nq++];
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	return p;
}

static void q_clear(struct etcd_store *s)
{
	for (size_t i = 0; i < s->nq; i++) {
		free(s->q[i].tenant);
		free(s->q[i].msg);
	}
	s->nq = 0;
}

/* What a key under PREFIX/v1/ is. */
enum what { W_OTHER, W_SERVER, W_TENANT, W_DOC, W_LAYOUT };

static enum what classify(const struct etcd_store *s, const struct etcd_kv *kv, uint32_t *tenant,
			  char *fqdn, int *doc)
{
	char p[300];
	size_t pl = strlen(s->prefix), n;
	const char *k = (const char *)kv->key;
	char *end;

	if (kv->key_len <= pl || memcmp(k, s->prefix, pl) != 0)
		return W_OTHER;
	k += pl;
	n = kv->key_len - pl;
	if (n == 7 && memcmp(k, "/layout", 7) == 0)
		return W_LAYOUT;
	snprintf(p, sizeof(p), "/v1/servers/");
	if (n > strlen(p) && memcmp(k, p, strlen(p)) == 0) {
		unsigned long t = strtoul(k + strlen(p), &end, 10);
		size_t fl;

		if (*end != '/' || t > UINT32_MAX)
			return W_OTHER;
		fl = n - (size_t)(end + 1 - k);
		if (fl == 0 || fl >= TES_FQDN_MAX)
			return W_OTHER;
		memcpy(fqdn, end + 1, fl);
		fqdn[fl] = '\0';
		*tenant = (uint32_t)t;
		return W_SERVER;
	}
	snprintf(p, sizeof(p), "/v1/tenants/");
	if (n > strlen(p) && memcmp(k, p, strlen(p)) == 0) {
		unsigned long t = strtoul(k + strlen(p), &end, 10);

		if ((size_t)(end - k) != n || t == 0 || t > UINT32_MAX)
			return W_OTHER;
		*tenant = (uint32_t)t;
		return W_TENANT;
	}
	for (int d = 0; d < DOC_N; d++) {
		snprintf(p, sizeof(p), "/v1/docs/%s", doc_names[d]);
		if (n == strlen(p) && memcmp(k, p, n) == 0) {
			*doc = d;
			return W_DOC;
		}
	}
	return W_OTHER;
}

static void watch_event(struct etcd_store *s, const struct etcd_event *ev)
{
	const struct etcd_kv *kv = &ev->kv;
	char fqdn[TES_FQDN_MAX], kt[300];
	uint32_t tenant = 0;
	int doc = -1;
	struct pending *p;
	struct trev *tr;

	s->stats.watch_events++;
	switch (classify(s, kv, &tenant, fqdn, &doc)) {
	case W_SERVER:
		p = q_push(s, ev->type == ETCD_EVENT_PUT ? STORE_CHANGE_SERVER
							 : STORE_CHANGE_SERVER_GONE);
		if (!p)
			return;
		p->tenant_id = tenant;
		memcpy(p->fqdn, fqdn, sizeof(fqdn));
		p->rev = kv->mod_revision;
		if (ev->type == ETCD_EVENT_PUT &&
		    decode_server(s, kv, &p->server, p->by, sizeof(p->by))) {
			/* Logged by poll; the copy stays as it was. */
			p->kind = PENDING_BAD;
			p->msg = strdup(s->base.err);
		}
		return;
	case W_TENANT:
		tr = trev_find(s, tenant);
		if (ev->type == ETCD_EVENT_DELETE) {
			if (!tr)
				return;
			trev_drop(s, tenant);
			p = q_push(s, STORE_CHANGE_TENANT_GONE);
			if (p)
				p->tenant_id = tenant;
			return;
		}
		if (tr && tr->rev >= kv->mod_revision)
			return; /* our own write, or older */
		p = q_push(s, STORE_CHANGE_TENANT);
		if (!p)
			return;
		p->tenant = malloc(sizeof(*p->tenant));
		if (!p->tenant) {
			s->nq--;
			s->need_resync = true;
			return;
		}
		if (decode_tenant(s, kv, p->tenant, p->by, sizeof(p->by))) {
			p->kind = PENDING_BAD;
			p->msg = strdup(s->base.err);
			return;
		}
		trev_set(s, tenant, kv->mod_revision);
		return;
	case W_DOC: {
		struct store_doc d;
		char by[64];

		if (ev->type == ETCD_EVENT_DELETE || s->docs[doc].rev == kv->mod_revision)
			return;
		if (s->docs[doc].rev == INT64_MAX && s->docs[doc].have) {
			/* our own transaction's echo */
			s->docs[doc].rev = kv->mod_revision;
			return;
		}
		if (s->docs[doc].rev > kv->mod_revision)
			return;
		if (decode_doc(s, kv, &d, by, sizeof(by))) {
			p = q_push(s, PENDING_BAD);
			if (p)
				p->msg = strdup(s->base.err);
			return;
		}
		store_doc_free(&s->docs[doc].d);
		s->docs[doc].d = d;
		s->docs[doc].have = true;
		s->docs[doc].rev = kv->mod_revision;
		tes_str_copy(s->docs[doc].by, sizeof(s->docs[doc].by), by);
		if (doc == DOC_POLICY) {
			s->policy_changed = true;
			tes_str_copy(s->policy_by, sizeof(s->policy_by), by);
		} else {
			s->catalog_changed = true;
			tes_str_copy(s->catalog_by, sizeof(s->catalog_by), by);
		}
		return;
	}
	case W_LAYOUT:
		key_text(kv->key, kv->key_len, kt, sizeof(kt));
		p = q_push(s, PENDING_BAD);
		if (p && asprintf(&p->msg,
				  "etcd key '%s' changed (revision %" PRId64
				  "): another tescontrol may use another layout under this"
				  " prefix",
				  kt, kv->mod_revision) < 0)
			p->msg = NULL;
		return;
	case W_OTHER:
		return;
	}
}

static void on_watch(const struct etcd_watch_update *u, void *ctx)
{
	struct etcd_store *s = ctx;

	switch (u->kind) {
	case ETCD_WATCH_EVENTS:
		for (size_t i = 0; i < u->nevents; i++)
			watch_event(s, &u->events[i]);
		if (u->revision > s->stats.revision)
			s->stats.revision = u->revision;
		return;
	case ETCD_WATCH_CREATED:
	case ETCD_WATCH_PROGRESS:
		return;
	case ETCD_WATCH_DISCONNECTED:
		s->stats.watch_reconnects++;
		return;
	case ETCD_WATCH_COMPACTED:
		s->need_resync = true;
		s->watch_stopped = true;
		return;
	case ETCD_WATCH_FAILED:
		snprintf(s->last_error, sizeof(s->last_error), "etcd watch: %s",
			 u->message ? u->message : "failed");
		s->watch_stopped = true;
		return;
	}
}

static int watch_start(struct etcd_store *s, int64_t from)
{
	char k[300], err[1024];
	size_t kl = key_of(s, k, sizeof(k), "/v1/");
	struct etcd_watch_opts o = {
		.key = k, .key_len = kl, .prefix = true, .start_revision = from
	};

	etcd_watch_free(s->watch);
	s->watch = etcd_watch_new(s->c, &o, on_watch, s, err, sizeof(err));
	s->watch_stopped = s->watch == NULL;
	if (!s->watch)
		return errf(s, "%s", err);
	return 0;
}

static int es_fd(const struct tes_store *st)
{
	const struct etcd_store *s = ces(st);

	return s->watch ? etcd_watch_fd(s->watch) : -1;
}

/* A full re-read after the watch's history was compacted: every tenant,
 * document and server at one revision, then the watch from after it. */
struct resync {
	struct etcd_store *s;
	store_change_cb cb;
	void *ctx;
	int64_t rev;
};

static int resync_server(const struct etcd_kv *kv, void *ctx)
{
	struct resync *r = ctx;
	struct store_server v;
	char by[64];
	struct store_change c = { .kind = STORE_CHANGE_SERVER, .server = &v, .by = by };

	if (decode_server(r->s, kv, &v, by, sizeof(by)))
		return 0; /* counted; the copy stays */
	c.rev = v.rev;
	r->cb(r->ctx, &c);
	return 0;
}

static int resync(struct etcd_store *s, store_change_cb cb, void *ctx)
{
	struct etcd_range_opts o = { .prefix = true, .limit = PAGE };
	struct etcd_header h;
	struct resync r = { .s = s, .cb = cb, .ctx = ctx };
	struct store_change c = { .kind = STORE_CHANGE_RESYNC_BEGIN, .by = "" };
	char k[300], err[1024];
	size_t kl = key_of(s, k, sizeof(k), "/v1/servers/");

	if (s->cut_off)
		return refuse_cut_off(s, "etcd re-read");
	cb(ctx, &c);
	if (etcd_range_each(s->c, k, kl, &o, resync_server, &r, &h, err, sizeof(err)))
		return call_failed(s, err);
	c.kind = STORE_CHANGE_RESYNC_END;
	c.rev = h.revision;
	cb(ctx, &c);
	s->need_resync = false;
	return watch_start(s, h.revision + 1);
}

static int es_poll(struct tes_store *st, store_change_cb cb, void *ctx)
{
	struct etcd_store *s = es(st);
	char err[1024];
	int rc = 0;

	if (s->watch && !s->watch_stopped) {
		if (etcd_watch_process(s->watch, err, sizeof(err)) < 0)
			rc = errf(s, "etcd watch: %s", err);
	}
	for (size_t i = 0; i < s->nq; i++) {
		struct pending *p = &s->q[i];
		struct store_change c = { .kind = p->kind, .by = p->by, .rev = p->rev };

		switch (p->kind) {
		case STORE_CHANGE_SERVER:
			c.server = &p->server;
			break;
		case STORE_CHANGE_SERVER_GONE:
			c.tenant_id = p->tenant_id;
			c.fqdn = p->fqdn;
			break;
		case STORE_CHANGE_TENANT:
			c.tenant = p->tenant;
			break;
		case STORE_CHANGE_TENANT_GONE:
			c.tenant_id = p->tenant_id;
			break;
		default:
			/* a record this build cannot read: say so, keep the copy */
			errf(s, "%s", p->msg ? p->msg : "etcd watch: an unreadable record");
			rc = -1;
			continue;
		}
		cb(ctx, &c);
	}
	q_clear(s);
	if (s->policy_changed) {
		struct store_change c = { .kind = STORE_CHANGE_POLICY,
					  .policy = &s->docs[DOC_POLICY].d,
					  .by = s->policy_by,
					  .rev = s->docs[DOC_POLICY].rev };

		s->policy_changed = false;
		cb(ctx, &c);
	}
	if (s->catalog_changed && s->docs[DOC_BUILDS].have && s->docs[DOC_COMPLIANCE].have) {
		struct store_change c = { .kind = STORE_CHANGE_CATALOG,
					  .builds = &s->docs[DOC_BUILDS].d,
					  .compliance = &s->docs[DOC_COMPLIANCE].d,
					  .by = s->catalog_by,
					  .rev = s->docs[DOC_BUILDS].rev };

		s->catalog_changed = false;
		cb(ctx, &c);
	}
	if (s->need_resync && !s->cut_off) {
		char keep[sizeof(s->base.err)];

		memcpy(keep, s->base.err, sizeof(keep));
		if (resync(s, cb, ctx))
			rc = -1;
		else if (rc)
			memcpy(s->base.err, keep, sizeof(keep));
	}
	return rc;
}

/* ---- liveness, self, cut off ---- */

static json_t *member_json(const struct etcd_store *s, const struct store_member *m)
{
	return json_pack("{s:i, s:s, s:I, s:I, s:s, s:s, s:I, s:I, s:{s:I, s:I, s:I, s:I}, s:i,"
			 " s:i}",
			 "v", STORE_ETCD_LAYOUT, "name", s->appliance, "started_at",
			 (json_int_t)s->started_at, "written_at", (json_int_t)wall_now(), "catalog",
			 m->catalog, "policy", m->policy, "cut_off_since",
			 (json_int_t)m->cut_off_since, "journal", (json_int_t)s->njournal, "counts",
			 "sightings", (json_int_t)m->sightings, "first_detections",
			 (json_int_t)m->first_detections, "redetections",
			 (json_int_t)m->redetections, "resolutions", (json_int_t)m->resolutions,
			 "servers", (int)m->servers, "gateways", (int)m->gateways);
}

static int write_self(struct etcd_store *s, const struct store_member *m)
{
	char k[300], err[1024], *v;
	size_t kl = key_of(s, k, sizeof(k), "/v1/appliances/%s", s->appliance), vl = 0;

	v = dump(member_json(s, m), &vl);
	if (!v)
		return errf(s, "etcd put appliance: out of memory");
	if (etcd_put(s->c, k, kl, v, vl, NULL, NULL, err, sizeof(err))) {
		free(v);
		return call_failed(s, err);
	}
	free(v);
	s->stats.writes++;
	s->stats.keys_written++;
	s->self_at = mono_now();
	return 0;
}

/* A lease and the key that lives with it: others see this appliance alive
 * while it renews the lease. */
static int lease_keep(struct etcd_store *s)
{
	char k[300], err[1024], v[128];
	size_t kl;
	int64_t id = 0, ttl = 0;
	int n;

	if (s->lease && mono_now() - s->lease_at < (int64_t)s->lease_seconds / 3)
		return 0;
	if (s->lease) {
		if (etcd_lease_keepalive(s->c, s->lease, &ttl, err, sizeof(err)) == 0) {
			s->lease_at = mono_now();
			return 0;
		}
		if (etcd_client_errkind(s->c) != ETCD_ERR_NOT_FOUND)
			return call_failed(s, err);
		s->lease = 0; /* expired: a new one */
	}
	if (etcd_lease_grant(s->c, s->lease_seconds, 0, &id, NULL, err, sizeof(err)))
		return call_failed(s, err);
	kl = key_of(s, k, sizeof(k), "/v1/alive/%s", s->appliance);
	n = snprintf(v, sizeof(v), "{\"v\":%d}", STORE_ETCD_LAYOUT);
	if (etcd_put(s->c, k, kl, v, (size_t)n, &(struct etcd_put_opts){ .lease = id }, NULL, err,
		     sizeof(err))) {
		char e2[64];

		etcd_lease_revoke(s->c, id, e2, sizeof(e2));
		return call_failed(s, err);
	}
	s->stats.writes++;
	s->stats.keys_written++;
	s->lease = id;
	s->lease_at = mono_now();
	return 0;
}

static int es_tick(struct tes_store *st, const struct store_member *self, bool force)
{
	struct etcd_store *s = es(st);
	bool was = s->cut_off;

	if (s->cut_off) {
		char err[512];

		if (!probe_result(s, err, sizeof(err))) {
			if (err[0])
				tes_str_copy(s->last_error, sizeof(s->last_error), err);
			return errf(s, "%s", s->last_error);
		}
		s->cut_off = false;
		s->cut_off_since = 0;
		force = true;
	}
	if (s->watch_stopped && !s->need_resync && s->watch)
		watch_start(s, etcd_watch_next_revision(s->watch));
	if (lease_keep(s))
		return -1;
	if ((force || mono_now() - s->self_at >= (int64_t)s->flush_seconds) && write_self(s, self))
		return -1;
	return was ? 1 : 0;
}

static bool es_cut_off(const struct tes_store *st)
{
	return ces(st)->cut_off;
}

static void es_status(const struct tes_store *st, struct store_fleet_status *out)
{
	const struct etcd_store *s = ces(st);

	*out = s->stats;
	snprintf(out->kind, sizeof(out->kind), "etcd");
	tes_str_copy(out->appliance, sizeof(out->appliance), s->appliance);
	tes_str_copy(out->where, sizeof(out->where), s->where);
	tes_str_copy(out->endpoint, sizeof(out->endpoint), etcd_client_endpoint(s->c));
	out->cut_off = s->cut_off;
	out->cut_off_since = s->cut_off_since;
	tes_str_copy(out->last_error, sizeof(out->last_error), s->last_error);
	out->journal = s->njournal;
	out->catalog_rev = s->docs[DOC_BUILDS].rev;
	out->policy_rev = s->docs[DOC_POLICY].rev;
	if (s->watch) {
		uint64_t dup;

		etcd_watch_stats(s->watch, &out->watch_reconnects, &dup);
	}
}

struct member_list {
	struct store_member *m;
	size_t n, cap;
	struct etcd_store *s;
};

static struct store_member *member_get(struct member_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->m[i].name, name) == 0)
			return &l->m[i];
	}
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 16;
		struct store_member *n = realloc(l->m, nc * sizeof(*n));

		if (!n)
			return NULL;
		l->m = n;
		l->cap = nc;
	}
	memset(&l->m[l->n], 0, sizeof(l->m[0]));
	tes_str_copy(l->m[l->n].name, sizeof(l->m[0].name), name);
	return &l->m[l->n++];
}

static const char *name_after(const struct etcd_kv *kv, size_t plen, char *buf, size_t len)
{
	size_t n = kv->key_len - plen;

	if (n >= len)
		n = len - 1;
	memcpy(buf, kv->key + plen, n);
	buf[n] = '\0';
	return buf;
}

static int member_kv(const struct etcd_kv *kv, void *ctx)
{
	struct member_list *l = ctx;
	char k[300], name[64];
	size_t pl = key_of(l->s, k, sizeof(k), "/v1/appliances/");
	struct store_member *m = member_get(l, name_after(kv, pl, name, sizeof(name)));
	json_t *o, *c;

	if (!m)
		return -1;
	o = json_loadb((const char *)kv->value, kv->value_len, 0, NULL);
	if (!json_is_object(o)) {
		json_decref(o);
		return 0;
	}
	m->started_at = json_integer_value(json_object_get(o, "started_at"));
	m->written_at = json_integer_value(json_object_get(o, "written_at"));
	tes_str_copy(m->catalog, sizeof(m->catalog),
		     json_string_value(json_object_get(o, "catalog"))
			     ? json_string_value(json_object_get(o, "catalog"))
			     : "");
	tes_str_copy(m->policy, sizeof(m->policy),
		     json_string_value(json_object_get(o, "policy"))
			     ? json_string_value(json_object_get(o, "policy"))
			     : "");
	m->cut_off_since = json_integer_value(json_object_get(o, "cut_off_since"));
	m->journal = (uint64_t)json_integer_value(json_object_get(o, "journal"));
	c = json_object_get(o, "counts");
	m->sightings = (uint64_t)json_integer_value(json_object_get(c, "sightings"));
	m->first_detections = (uint64_t)json_integer_value(json_object_get(c, "first_detections"));
	m->redetections = (uint64_t)json_integer_value(json_object_get(c, "redetections"));
	m->resolutions = (uint64_t)json_integer_value(json_object_get(c, "resolutions"));
	m->servers = (uint32_t)json_integer_value(json_object_get(o, "servers"));
	m->gateways = (uint32_t)json_integer_value(json_object_get(o, "gateways"));
	json_decref(o);
	return 0;
}

static int alive_kv(const struct etcd_kv *kv, void *ctx)
{
	struct member_list *l = ctx;
	char k[300], name[64];
	size_t pl = key_of(l->s, k, sizeof(k), "/v1/alive/");
	struct store_member *m = member_get(l, name_after(kv, pl, name, sizeof(name)));

	if (!m)
		return -1;
	m->alive = kv->lease != 0;
	return 0;
}

static int cmp_member(const void *a, const void *b)
{
	return strcmp(((const struct store_member *)a)->name,
		      ((const struct store_member *)b)->name);
}

static int es_members(struct tes_store *st, store_member_cb cb, void *ctx)
{
	struct etcd_store *s = es(st);
	struct etcd_range_opts o = { .prefix = true, .limit = PAGE };
	struct member_list l = { .s = s };
	char k[300], err[1024];
	size_t kl;
	int rc = 0;

	if (s->cut_off)
		return refuse_cut_off(s, "etcd read appliances");
	kl = key_of(s, k, sizeof(k), "/v1/appliances/");
	if (etcd_range_each(s->c, k, kl, &o, member_kv, &l, NULL, err, sizeof(err)))
		rc = call_failed(s, err);
	kl = key_of(s, k, sizeof(k), "/v1/alive/");
	if (!rc && etcd_range_each(s->c, k, kl, &o, alive_kv, &l, NULL, err, sizeof(err)))
		rc = call_failed(s, err);
	if (!rc && l.n)
		qsort(l.m, l.n, sizeof(*l.m), cmp_member);
	for (size_t i = 0; !rc && i < l.n; i++)
		rc = cb(&l.m[i], ctx);
	free(l.m);
	return rc;
}

static void es_leave(struct tes_store *st)
{
	struct etcd_store *s = es(st);
	char err[512];

	if (s->lease && !s->cut_off)
		etcd_lease_revoke(s->c, s->lease, err, sizeof(err));
	s->lease = 0;
}

/* ---- load ---- */

struct load {
	struct etcd_store *s;
	store_server_cb cb;
	void *ctx;
	int rc;
	char err[512];
};

static int load_server_kv(const struct etcd_kv *kv, void *ctx)
{
	struct load *l = ctx;
	struct store_server v;

	if (decode_server(l->s, kv, &v, NULL, 0)) {
		l->rc = -1;
		return 1;
	}
	if (l->cb(&v, l->ctx)) {
		errf(l->s, "loading servers: stopped by the caller");
		l->rc = -1;
		return 1;
	}
	return 0;
}

static int es_load_servers(struct tes_store *st, store_server_cb cb, void *ctx)
{
	struct etcd_store *s = es(st);
	struct etcd_range_opts o = { .prefix = true, .limit = PAGE, .revision = s->load_rev };
	struct load l = { .s = s, .cb = cb, .ctx = ctx };
	char k[300], err[1024];
	size_t kl = key_of(s, k, sizeof(k), "/v1/servers/");
	int rc;

	rc = etcd_range_each(s->c, k, kl, &o, load_server_kv, &l, NULL, err, sizeof(err));
	if (l.rc)
		return -1;
	if (rc)
		return call_failed(s, err);
	/* Everything after the snapshot comes through the watch. */
	if (!s->watch && watch_start(s, s->load_rev + 1))
		return -1;
	return 0;
}

static int load_kv(const struct etcd_kv *kv, void *ctx)
{
	struct load *l = ctx;
	struct etcd_store *s = l->s;
	char fqdn[TES_FQDN_MAX];
	uint32_t tenant;
	int doc;

	switch (classify(s, kv, &tenant, fqdn, &doc)) {
	case W_TENANT: {
		struct tes_tenant *n = realloc(s->tenants, (s->ntenants + 1) * sizeof(*n));

		if (!n) {
			errf(s, "out of memory");
			l->rc = -1;
			return 1;
		}
		s->tenants = n;
		if (decode_tenant(s, kv, &s->tenants[s->ntenants], NULL, 0)) {
			l->rc = -1;
			return 1;
		}
		trev_set(s, s->tenants[s->ntenants].id, kv->mod_revision);
		s->ntenants++;
		return 0;
	}
	case W_DOC:
		if (decode_doc(s, kv, &s->docs[doc].d, s->docs[doc].by, sizeof(s->docs[doc].by))) {
			l->rc = -1;
			return 1;
		}
		s->docs[doc].have = true;
		s->docs[doc].rev = kv->mod_revision;
		return 0;
	default:
		return 0;
	}
}

static int cmp_tenant(const void *a, const void *b)
{
	uint32_t x = ((const struct tes_tenant *)a)->id, y = ((const struct tes_tenant *)b)->id;

	return x < y ? -1 : x > y;
}

/* The layout key: written in an empty prefix, else it must say ours. */
static int check_layout(struct etcd_store *s)
{
	char k[300], kt[300], err[1024], v[160];
	size_t kl = key_of(s, k, sizeof(k), "/layout");
	struct etcd_kv there;
	json_t *o, *lv;
	int64_t rev;
	int n, rc;

	n = snprintf(v, sizeof(v), "{\"layout\":%d,\"created_by\":\"%s\"}", STORE_ETCD_LAYOUT,
		     s->appliance);
	/* A cluster still electing its first leader, or an answer lost: the
	 * create is idempotent, so try again, a few times. */
	for (int i = 0; i < 3; i++) {
		enum etcd_errkind kind;

		rc = etcd_create(s->c, k, kl, v, (size_t)n, 0, &rev, &there, err, sizeof(err));
		kind = etcd_client_errkind(s->c);
		if (rc >= 0 || (kind != ETCD_ERR_UNAVAILABLE && kind != ETCD_ERR_UNKNOWN_OUTCOME))
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 500 * 1000 * 1000 }, NULL);
	}
	if (rc < 0)
		return errf(s, "reading (or, in an empty prefix, writing) the layout: %s", err);
	if (rc == 1)
		return 0;
	key_text(k, kl, kt, sizeof(kt));
	o = json_loadb((const char *)there.value, there.value_len, 0, NULL);
	lv = json_object_get(o, "layout");
	if (!json_is_object(o) || !json_is_integer(lv)) {
		errf(s,
		     "etcd key '%s' holds no tesgate layout (%.60s): another program's data"
		     " under this prefix? Nothing was written",
		     kt, (const char *)there.value);
		rc = -1;
	} else if (json_integer_value(lv) != STORE_ETCD_LAYOUT) {
		errf(s,
		     "etcd key '%s': layout version %" JSON_INTEGER_FORMAT ", this tescontrol"
		     " reads %d: refusing to touch it (nothing was written)",
		     kt, json_integer_value(lv), STORE_ETCD_LAYOUT);
		rc = -1;
	} else {
		rc = 0;
	}
	json_decref(o);
	etcd_kv_free(&there);
	return rc;
}

static void es_close(struct tes_store *st)
{
	struct etcd_store *s = es(st);

	if (!s)
		return;
	probe_free(s);
	ops_free(s);
	etcd_watch_free(s->watch);
	etcd_client_free(s->c);
	for (size_t i = 0; i < ETCD_MAX_ENDPOINTS; i++)
		free(s->eps[i]);
	for (int d = 0; d < DOC_N; d++)
		store_doc_free(&s->docs[d].d);
	free(s->tenants);
	free(s->trevs);
	q_clear(s);
	free(s->q);
	if (s->journal)
		sqlite3_close(s->journal);
	free(s);
}

static const struct store_ops etcd_ops = {
	.close = es_close,
	.begin = es_begin,
	.commit = es_commit,
	.rollback = es_rollback,
	.load_tenants = es_load_tenants,
	.put_tenant = es_put_tenant,
	.delete_tenant = es_delete_tenant,
	.load_servers = es_load_servers,
	.put_server = es_put_server,
	.delete_server = es_delete_server,
	.get_doc = es_get_doc,
	.put_doc = es_put_doc,
	.schema_version = es_schema_version,
	.put_record = es_put_record,
	.delete_record = es_delete_record,
	.load_records = es_load_records,
};

static const struct store_fleet_ops etcd_fleet_ops = {
	.get_server = es_get_server,
	.cas_server = es_cas_server,
	.cas_delete_server = es_cas_delete_server,
	.cas_tenant = es_cas_tenant,
	.journal_add = es_journal_add,
	.journal_each = es_journal_each,
	.journal_remove = es_journal_remove,
	.fd = es_fd,
	.poll = es_poll,
	.tick = es_tick,
	.cut_off = es_cut_off,
	.status = es_status,
	.members = es_members,
	.leave = es_leave,
};

static bool prefix_ok(const char *p)
{
	size_t n = strlen(p);

	if (n == 0 || p[0] != '/' || p[n - 1] == '/' || n > 200)
		return false;
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f)
			return false;
	}
	return true;
}

struct tes_store *store_etcd_open(const struct store_etcd_config *c, char *errbuf, size_t errlen)
{
	struct etcd_store *s;
	struct etcd_range_opts o = { .prefix = true, .limit = PAGE };
	struct etcd_header h;
	struct load l;
	char k[300], err[1024];
	size_t kl, at = 0;

	if (!c->nendpoints || c->nendpoints > ETCD_MAX_ENDPOINTS) {
		snprintf(errbuf, errlen, "etcd_endpoints: give 1 to %d URLs", ETCD_MAX_ENDPOINTS);
		return NULL;
	}
	if (!prefix_ok(c->prefix)) {
		snprintf(errbuf, errlen,
			 "etcd_prefix \"%s\": must start with / and not end with it, printable,"
			 " at most 200 octets",
			 c->prefix);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	s->base.ops = &etcd_ops;
	s->base.fleet = &etcd_fleet_ops;
	tes_str_copy(s->prefix, sizeof(s->prefix), c->prefix);
	tes_str_copy(s->appliance, sizeof(s->appliance), c->appliance);
	s->lease_seconds = c->lease_seconds ? c->lease_seconds : 10;
	s->flush_seconds = c->flush_seconds ? c->flush_seconds : 60;
	s->started_at = wall_now();
	for (size_t i = 0; i < c->nendpoints; i++) {
		s->eps[i] = strdup(c->endpoints[i]);
		if (!s->eps[i]) {
			snprintf(errbuf, errlen, "out of memory");
			goto fail;
		}
		at += (size_t)snprintf(s->where + at, sizeof(s->where) - at, "%s%s", i ? "," : "",
				       c->endpoints[i]);
		if (at >= sizeof(s->where))
			at = sizeof(s->where) - 1;
	}
	snprintf(s->where + at, sizeof(s->where) - at, " prefix %s", s->prefix);
	s->ecfg = (struct etcd_config){
		.endpoints = (const char *const *)s->eps,
		.nendpoints = c->nendpoints,
		.timeout_ms = c->timeout_ms,
		.connect_timeout_ms = c->connect_timeout_ms,
		.ca_file = c->ca_file && c->ca_file[0] ? c->ca_file : NULL,
		.cert_file = c->cert_file && c->cert_file[0] ? c->cert_file : NULL,
		.key_file = c->key_file && c->key_file[0] ? c->key_file : NULL,
		.username = c->username && c->username[0] ? c->username : NULL,
		.password = c->username && c->username[0] ? c->password : NULL,
		.watch_keepalive_s = 5,
	};
	s->c = etcd_client_new(&s->ecfg, err, sizeof(err));
	if (!s->c) {
		snprintf(errbuf, errlen, "%s", err);
		goto fail;
	}
	if (probe_init(s, errbuf, errlen))
		goto fail;
	if (journal_open(s, c->journal_path, errbuf, errlen))
		goto fail;
	if (check_layout(s)) {
		snprintf(errbuf, errlen, "%s", s->base.err);
		goto fail;
	}
	/* Tenants and documents (small) now, servers at the same revision by
	 * load_servers. */
	memset(&l, 0, sizeof(l));
	l.s = s;
	kl = key_of(s, k, sizeof(k), "/v1/tenants/");
	if (etcd_range_each(s->c, k, kl, &o, load_kv, &l, &h, err, sizeof(err))) {
		snprintf(errbuf, errlen, "%s", l.rc ? s->base.err : err);
		goto fail;
	}
	s->load_rev = h.revision;
	o.revision = s->load_rev;
	kl = key_of(s, k, sizeof(k), "/v1/docs/");
	if (etcd_range_each(s->c, k, kl, &o, load_kv, &l, NULL, err, sizeof(err))) {
		snprintf(errbuf, errlen, "%s", l.rc ? s->base.err : err);
		goto fail;
	}
	if (s->ntenants)
		qsort(s->tenants, s->ntenants, sizeof(*s->tenants), cmp_tenant);
	s->stats.revision = s->load_rev;
	return &s->base;
fail:
	es_close(&s->base);
	return NULL;
}
