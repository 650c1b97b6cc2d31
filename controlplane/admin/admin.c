/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The admin socket: tesctl's requests (contract/adminproto.h).  Only root,
 * tescontrol's own user and members of admin_group get in (the socket is
 * 0660 root:group, and the peer's credentials are checked again on accept).
 * A malformed frame gets the connection closed with one log line; a
 * well-formed request that cannot be done gets {"ok":false,"error":...}.
 */
#include "controlplane/cp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "contract/adminproto.h"

#define REPORT_PAGE_DEFAULT 1000
#define REPORT_PAGE_MAX 2000
#define REPORT_PAGE_BYTES (CTL_FRAME_MAX / 2)
/* Replies waiting for a client to read them, at most: four of the largest
 * frames.  A client that keeps asking and never reads is cut off there
 * (as Redis's client-output-buffer-limit does), instead of growing
 * tescontrol's memory without bound; one that reads gets everything. */
#define ADMIN_OUTQ_MAX (4u * CTL_FRAME_MAX)

struct admin_conn {
	struct cp_watch w;
	struct admin_conn *next;
	unsigned id;
	struct ctl_decoder dec;
	struct cp_outq out;
	uint32_t events;
	bool dead;
	struct ucred cred;
};

/* A command fills *result or writes an error to err and returns -1. */
typedef int (*admin_fn)(struct cp *cp, const json_t *args, json_t **result, char *err, size_t len);

/* ---- argument helpers ---- */

static int arg_int(const json_t *args, const char *key, int64_t lo, int64_t hi, bool required,
		   int64_t dflt, int64_t *out, char *err, size_t len)
{
	const json_t *v = json_object_get(args, key);

	if (!v || json_is_null(v)) {
		if (required) {
			snprintf(err, len, "missing argument \"%s\"", key);
			return -1;
		}
		*out = dflt;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		snprintf(err, len, "\"%s\" must be a whole number from %lld to %lld", key,
			 (long long)lo, (long long)hi);
		return -1;
	}
	*out = json_integer_value(v);
	return 0;
}

static int arg_str(const json_t *args, const char *key, const char **out, char *err, size_t len)
{
	const json_t *v = json_object_get(args, key);

	if (!json_is_string(v)) {
		snprintf(err, len, v ? "\"%s\" must be a string" : "missing argument \"%s\"", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static bool arg_bool(const json_t *args, const char *key)
{
	return json_is_true(json_object_get(args, key));
}

/* ---- the audit trail ---- */

/* The credentials (SO_PEERCRED, taken when the connection was accepted) of
 * the admin connection whose request is being handled: set by
 * handle_request around one command.  The event loop is one thread. */
static const struct ucred *g_caller;

/* Who asked: merged into every line an admin action writes. */
static json_t *caller_json(void)
{
	if (!g_caller)
		return json_pack("{s:n, s:n, s:n}", "uid", "gid", "pid");
	return json_pack("{s:I, s:I, s:I}", "uid", (json_int_t)g_caller->uid, "gid",
			 (json_int_t)g_caller->gid, "pid", (json_int_t)g_caller->pid);
}

/* The members of an admin action's line: who, then the values before and
 * after it (null for what did not exist), then extra (consumed). */
static json_t *audit_fields(json_t *before, json_t *after, json_t *extra)
{
	json_t *o = caller_json();

	json_object_set_new(o, "before", before ? before : json_null());
	json_object_set_new(o, "after", after ? after : json_null());
	if (extra) {
		json_object_update(o, extra);
		json_decref(extra);
	}
	return o;
}

/* One line for an action that is not about one tenant or server. */
static void audit(struct cp *cp, const char *event, json_t *before, json_t *after, json_t *extra)
{
	cp_evlog_event(cp, event, audit_fields(before, after, extra));
}

static json_t *pause_raw_json(const struct tes_pause *p)
{
	return json_pack("{s:I, s:I, s:I, s:i, s:i}", "start", (json_int_t)p->start, "end",
			 (json_int_t)p->end, "paused_before", (json_int_t)p->paused_before, "year",
			 (int)p->year, "days_used", (int)p->days_used);
}

/* ---- values ---- */

static void set_time(const struct cp *cp, json_t *o, const char *key, bool has, int64_t t)
{
	char k[64], iso[40];

	snprintf(k, sizeof(k), "%s_unix", key);
	if (!has) {
		json_object_set_new(o, key, json_null());
		json_object_set_new(o, k, json_null());
		return;
	}
	tes_time_format(t, cp->policy.utc_offset_min, iso, sizeof(iso));
	json_object_set_new(o, key, json_string(iso));
	json_object_set_new(o, k, json_integer(t));
}

static json_t *build_str(const struct ex_build *b)
{
	char buf[48];

	ex_build_format(b, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *entry_json(const struct catalog_entry *e)
{
	char date[16];

	if (e->day)
		snprintf(date, sizeof(date), "%04u-%02u-%02u", e->year, e->month, e->day);
	else
		snprintf(date, sizeof(date), "%04u-%02u", e->year, e->month);
	return json_pack("{s:o, s:s, s:s, s:s}", "build", build_str(&e->build), "update", e->update,
			 "branch", e->branch, "date", date);
}

static json_t *recommended_json(const struct catalog_class *cls)
{
	json_t *a = json_array();

	for (unsigned i = 0; i < cls->nrecommended && i < CATALOG_MAX_RECOMMENDED; i++)
		json_array_append_new(a, entry_json(cls->recommended[i]));
	return a;
}

static json_t *server_json(struct cp *cp, const struct cp_server *c, int64_t now, bool detail)
{
	const struct tes_server *s = &c->v.s;
	const struct tes_tenant *t = cp_server_tenant(cp, s);
	struct catalog_class cls;
	struct tes_report r;
	json_t *o;

	tes_server_report(s, t, &cp->policy, now, &r);
	catalog_classify(cp->catalog, &s->build, now, &cls);
	o = json_pack("{s:I, s:s, s:s, s:o, s:s, s:s, s:s, s:i}", "tenant",
		      (json_int_t)s->tenant_id, "tenant_name", t ? t->name : "", "fqdn", s->fqdn,
		      "build", build_str(&s->build), "family", ex_family_name(s->family), "branch",
		      cls.branch, "status", r.status_text, "stage", (int)r.stage);
	set_time(cp, o, "first_detected", true, s->first_detected);
	json_object_set_new(o, "recommended", recommended_json(&cls));
	set_time(cp, o, "throttle_enabled", r.has_throttle_date, r.throttle_enabled);
	set_time(cp, o, "blocking_enabled", r.has_block_date, r.blocking_enabled);
	json_object_set_new(o, "next_stage", r.has_next ? json_integer(r.next_stage) : json_null());
	json_object_set_new(o, "next_stage_throttle_min",
			    r.has_next ? json_integer(r.next_throttle_min) : json_null());
	json_object_set_new(o, "next_stage_block_min",
			    r.has_next ? json_integer(r.next_block_min) : json_null());
	set_time(cp, o, "next_stage_start", r.has_next, r.next_stage_start);
	set_time(cp, o, "last_seen", true, s->last_seen);
	set_time(cp, o, "resolved_at", s->resolved && !tes_server_compliant_only(s),
		 s->resolved_at);
	set_time(cp, o, "stale_since", r.status == TES_STATUS_STALE, r.stale_at);
	set_time(cp, o, "forget_at", r.has_forget_at, r.forget_at);
	if (detail) {
		json_t *src = json_array();

		for (unsigned i = 0; i < s->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
			char a[64];

			if (tes_addr_format(&s->sources[i], a, sizeof(a)) >= 0)
				json_array_append_new(src, json_string(a));
		}
		json_object_set_new(o, "sources", src);
		json_object_set_new(o, "compliant", json_boolean(cls.compliant));
		json_object_set_new(o, "elapsed_seconds", json_integer(r.elapsed));
		json_object_set_new(o, "paused_seconds", json_integer(r.paused_seconds));
		set_time(cp, o, "next_change", c->next_change != INT64_MAX, c->next_change);
	}
	return o;
}

static json_t *pause_json(struct cp *cp, const struct tes_tenant *t, int64_t now)
{
	int year;
	unsigned left = tes_pause_days_left(&t->pause, &cp->policy, now, &year);
	bool active = tes_pause_active(&t->pause, now);
	json_t *o = json_pack("{s:I, s:b, s:i, s:i, s:i, s:i}", "tenant", (json_int_t)t->id,
			      "active", active, "year", year, "days_used",
			      (int)(t->pause.year == year ? t->pause.days_used : 0), "days_left",
			      (int)left, "quota_days", (int)cp->policy.pause_quota_days);

	set_time(cp, o, "start", t->pause.end > t->pause.start, t->pause.start);
	set_time(cp, o, "end", t->pause.end > t->pause.start, t->pause.end);
	return o;
}

static json_t *tenant_json(struct cp *cp, const struct tes_tenant *t, int64_t now)
{
	json_t *o = ctl_tenant_to_json(t);
	unsigned n = 0;

	for (uint32_t i = 0; i < cp->st.nslots; i++) {
		const struct cp_server *c = cp_server_at(&cp->st, i);

		if (c && c->v.s.tenant_id == t->id)
			n++;
	}
	json_object_set_new(o, "servers", json_integer(n));
	json_object_set_new(o, "paused", json_boolean(tes_pause_active(&t->pause, now)));
	json_object_set_new(o, "pause", pause_json(cp, t, now));
	return o;
}

/* What a reset forgets: the state that decides the server's enforcement. */
static json_t *server_state_json(struct cp *cp, const struct cp_server *c)
{
	const struct tes_server *s = &c->v.s;
	json_t *o = json_pack("{s:s, s:o, s:s, s:I, s:I, s:b, s:i, s:s}", "fqdn", s->fqdn, "build",
			      build_str(&s->build), "family", ex_family_name(s->family),
			      "first_detected", (json_int_t)s->first_detected, "last_seen",
			      (json_int_t)s->last_seen, "resolved", s->resolved, "stage",
			      (int)c->v.stage_logged, "status",
			      tes_status_name((enum tes_status)c->v.status_logged));

	json_object_set_new(o, "resolved_at",
			    s->resolved ? json_integer(s->resolved_at) : json_null());
	(void)cp;
	return o;
}

/* ---- report and servers ---- */

static int cmp_slots(const void *a, const void *b, void *ctx)
{
	const struct cp_tables *st = ctx;
	const struct tes_server *x = &st->srv[*(const uint32_t *)a].v.s;
	const struct tes_server *y = &st->srv[*(const uint32_t *)b].v.s;

	if (x->tenant_id != y->tenant_id)
		return x->tenant_id < y->tenant_id ? -1 : 1;
	return strcasecmp(x->fqdn, y->fqdn);
}

static int cmd_report(struct cp *cp, const json_t *args, json_t **result, char *err, size_t len)
{
	int64_t tenant, offset, limit, now = cp_now(cp);
	uint32_t *slots, n = 0;
	json_t *arr, *o;
	/* Servers compliant since first seen are tracked for the shared-source
	 * decision, not reported unless asked for. */
	bool all = json_is_true(json_object_get(args, "all"));

	if (arg_int(args, "tenant", 0, UINT32_MAX, false, -1, &tenant, err, len) ||
	    arg_int(args, "offset", 0, UINT32_MAX, false, 0, &offset, err, len) ||
	    arg_int(args, "limit", 1, REPORT_PAGE_MAX, false, REPORT_PAGE_DEFAULT, &limit, err,
		    len))
		return -1;
	if (tenant > 0 && !cp_tenant_find(&cp->st, (uint32_t)tenant)) {
		snprintf(err, len, "no tenant %lld", (long long)tenant);
		return -1;
	}
	slots = malloc(((size_t)cp->st.nlive + 1) * sizeof(*slots));
	if (!slots) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < cp->st.nslots; i++) {
		const struct cp_server *c = cp_server_at(&cp->st, i);

		if (c && (tenant < 0 || c->v.s.tenant_id == (uint32_t)tenant) &&
		    (all || !tes_server_compliant_only(&c->v.s)))
			slots[n++] = i;
	}
	/* Sorted on every page: pages stay consistent while servers come
	 * and go between requests, at O(n log n) per page. */
	qsort_r(slots, n, sizeof(*slots), cmp_slots, &cp->st);
	arr = json_array();
	/* A page ends at limit entries or at half a frame, whichever comes
	 * first: an entry's size grows with what the report shows, and a
	 * response that outgrew a frame could not be sent at all. */
	int64_t end = offset;
	size_t bytes = 0;

	for (; end < n && end < offset + limit; end++) {
		json_t *e = server_json(cp, &cp->st.srv[slots[end]], now, false);
		size_t sz = json_dumpb(e, NULL, 0, JSON_COMPACT) + 1;

		if (end > offset && bytes + sz > REPORT_PAGE_BYTES) {
			json_decref(e);
			break;
		}
		bytes += sz;
		json_array_append_new(arr, e);
	}
	o = json_pack("{s:I, s:I, s:o}", "total", (json_int_t)n, "offset", (json_int_t)offset,
		      "servers", arr);
	json_object_set_new(o, "next_offset", end < n ? json_integer(end) : json_null());
	json_object_set_new(o, "clock", cp_clock_json(cp));
	free(slots);
	*result = o;
	return 0;
}

static int find_server_arg(struct cp *cp, const json_t *args, uint32_t *slot, char *err, size_t len)
{
	int64_t tenant;
	const char *fqdn;

	if (arg_int(args, "tenant", 0, UINT32_MAX, true, 0, &tenant, err, len) ||
	    arg_str(args, "fqdn", &fqdn, err, len))
		return -1;
	*slot = cp_server_find(&cp->st, (uint32_t)tenant, fqdn);
	if (*slot == CP_NO_SLOT) {
		snprintf(err, len, "tenant %lld has no server %s on record", (long long)tenant,
			 fqdn);
		return -1;
	}
	return 0;
}

static int cmd_server_show(struct cp *cp, const json_t *args, json_t **result, char *err,
			   size_t len)
{
	uint32_t slot;

	if (find_server_arg(cp, args, &slot, err, len))
		return -1;
	*result = server_json(cp, cp_server_at(&cp->st, slot), cp_now(cp), true);
	return 0;
}

static int cmd_server_reset(struct cp *cp, const json_t *args, json_t **result, char *err,
			    size_t len)
{
	struct tes_server s;
	uint32_t slot;

	if (find_server_arg(cp, args, &slot, err, len))
		return -1;
	const struct cp_server *c = cp_server_at(&cp->st, slot);

	s = c->v.s;
	if (store_delete_server(cp->store, s.tenant_id, s.fqdn)) {
		snprintf(err, len, "could not store the reset: %s", store_errmsg(cp->store));
		return -1;
	}
	cp->counts.resets++;
	cp_evlog_server(cp, "reset", &s, c->v.stage_logged, (enum tes_status)c->v.status_logged,
			audit_fields(server_state_json(cp, c), NULL, NULL));
	cp_server_delete(&cp->st, slot);
	cp_xdp_request(cp);
	cp_info("server reset by the operator: tenant %u server %s forgotten (a new detection"
		" starts a new clock)",
		s.tenant_id, s.fqdn);
	gw_broadcast(cp, ctl_delete_server_msg(s.tenant_id, s.fqdn));
	*result = json_pack("{s:I, s:s, s:b}", "tenant", (json_int_t)s.tenant_id, "fqdn", s.fqdn,
			    "reset", 1);
	return 0;
}

/* ---- tenants and pauses ---- */

static struct tes_tenant *tenant_arg(struct cp *cp, const json_t *args, const char *key, char *err,
				     size_t len)
{
	struct tes_tenant *t;
	int64_t id;

	if (arg_int(args, key, 1, UINT32_MAX, true, 0, &id, err, len))
		return NULL;
	t = cp_tenant_find(&cp->st, (uint32_t)id);
	if (!t)
		snprintf(err, len, "no tenant %lld", (long long)id);
	return t;
}

/* The name and connectors of a tenant from a request: both for add, either
 * for set (what is absent stays as in t). */
static int tenant_fields(const json_t *args, bool need_name, struct tes_tenant *t, char *err,
			 size_t len)
{
	const json_t *conns = json_object_get(args, "connectors");
	const json_t *nm = json_object_get(args, "name");
	const char *name;

	if (nm || need_name) {
		if (arg_str(args, "name", &name, err, len))
			return -1;
		if (!name[0] || strlen(name) >= sizeof(t->name)) {
			snprintf(err, len, "the name must have 1 to %zu characters",
				 sizeof(t->name) - 1);
			return -1;
		}
		for (const char *p = name; *p; p++) {
			if ((unsigned char)*p < 0x20 || *p == 0x7f) {
				snprintf(err, len, "the name holds a control character");
				return -1;
			}
		}
		snprintf(t->name, sizeof(t->name), "%s", name);
	}
	if (conns) {
		struct tes_connector cs[TES_TENANT_CONNECTORS_MAX];
		size_t i;
		const json_t *c;
		struct ctl_error cerr;

		if (!json_is_array(conns) || json_array_size(conns) > TES_TENANT_CONNECTORS_MAX) {
			snprintf(err, len, "\"connectors\" must be a list of at most %d connectors",
				 TES_TENANT_CONNECTORS_MAX);
			return -1;
		}
		memset(cs, 0, sizeof(cs));
		json_array_foreach(conns, i, c)
		{
			if (ctl_connector_from_json(c, &cs[i], &cerr)) {
				snprintf(err, len, "connector %zu: %s", i + 1, cerr.msg);
				return -1;
			}
		}
		memcpy(t->connectors, cs, sizeof(cs));
		t->nconnectors = (unsigned)json_array_size(conns);
	}
	return 0;
}

/* Store t (new or changed), then make it visible: memory, gateways, the
 * XDP drop list (connectors decide which sources it may drop). */
static int put_tenant(struct cp *cp, const struct tes_tenant *t, char *err, size_t len)
{
	if (store_put_tenant(cp->store, t)) {
		snprintf(err, len, "could not store the tenant: %s (nothing was changed)",
			 store_errmsg(cp->store));
		return -1;
	}
	if (cp_tenant_put(&cp->st, t)) {
		snprintf(err, len, "out of memory (the tenant is stored; a restart loads it)");
		return -1;
	}
	gw_push_tenant(cp, t);
	cp_xdp_request(cp);
	return 0;
}

static json_t *tenant_event_fields(const struct tes_tenant *t, json_t *before, json_t *after,
				   json_t *extra)
{
	json_t *o = json_pack("{s:I, s:s}", "tenant", (json_int_t)t->id, "tenant_name", t->name);
	json_t *f = audit_fields(before, after, extra);

	json_object_update(o, f);
	json_decref(f);
	return o;
}

static int cmd_tenant_add(struct cp *cp, const json_t *args, json_t **result, char *err, size_t len)
{
	struct tes_tenant t;
	int64_t id;

	memset(&t, 0, sizeof(t));
	if (arg_int(args, "id", 1, UINT32_MAX, true, 0, &id, err, len))
		return -1;
	if (cp_tenant_find(&cp->st, (uint32_t)id)) {
		snprintf(err, len, "tenant %lld already exists (tesctl tenant set changes it)",
			 (long long)id);
		return -1;
	}
	t.id = (uint32_t)id;
	if (tenant_fields(args, true, &t, err, len) || put_tenant(cp, &t, err, len))
		return -1;
	cp_info("tenant added: %u (%s) with %u connectors", t.id, t.name, t.nconnectors);
	cp_evlog_event(cp, "tenant_add",
		       tenant_event_fields(&t, NULL, ctl_tenant_to_json(&t), NULL));
	*result = tenant_json(cp, &t, cp_now(cp));
	return 0;
}

static int cmd_tenant_set(struct cp *cp, const json_t *args, json_t **result, char *err, size_t len)
{
	struct tes_tenant *cur = tenant_arg(cp, args, "id", err, len);
	struct tes_tenant t;
	json_t *before, *after;

	if (!cur)
		return -1;
	if (!json_object_get(args, "name") && !json_object_get(args, "connectors")) {
		snprintf(err, len, "nothing to change: give a name, connectors, or both");
		return -1;
	}
	t = *cur;
	if (tenant_fields(args, false, &t, err, len))
		return -1;
	before = ctl_tenant_to_json(cur);
	after = ctl_tenant_to_json(&t);
	if (json_equal(before, after)) {
		/* Nothing changed, nothing written: the trail records changes. */
		json_decref(before);
		json_decref(after);
		*result = tenant_json(cp, cur, cp_now(cp));
		json_object_set_new(*result, "changed", json_false());
		return 0;
	}
	if (put_tenant(cp, &t, err, len)) {
		json_decref(before);
		json_decref(after);
		return -1;
	}
	cur = cp_tenant_find(&cp->st, t.id);
	cp_info("tenant changed: %u (%s) with %u connectors", t.id, t.name, t.nconnectors);
	cp_evlog_event(cp, "tenant_change", tenant_event_fields(&t, before, after, NULL));
	*result = tenant_json(cp, cur ? cur : &t, cp_now(cp));
	json_object_set_new(*result, "changed", json_true());
	return 0;
}

static int cmd_tenant_delete(struct cp *cp, const json_t *args, json_t **result, char *err,
			     size_t len)
{
	struct tes_tenant *cur = tenant_arg(cp, args, "id", err, len);
	struct tes_tenant t;
	uint32_t *slots;
	size_t n = 0;
	bool ok;

	if (!cur)
		return -1;
	t = *cur;
	slots = malloc(((size_t)cp->st.nlive + 1) * sizeof(*slots));
	if (!slots) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < cp->st.nslots; i++) {
		const struct cp_server *c = cp_server_at(&cp->st, i);

		if (c && c->v.s.tenant_id == t.id)
			slots[n++] = i;
	}
	/* A server's record is its first detection and stage clock: durable
	 * state nobody can recreate, so forgetting it must be asked for. */
	if (n && !arg_bool(args, "force")) {
		snprintf(err, len,
			 "tenant %u has %zu server%s on record; deleting the tenant forgets them"
			 " (first detections, stage clocks); to do so: tesctl tenant delete %u"
			 " --force",
			 t.id, n, n == 1 ? "" : "s", t.id);
		free(slots);
		return -1;
	}
	/* The tenant and its servers go together or not at all. */
	ok = store_begin(cp->store) == 0;
	for (size_t i = 0; ok && i < n; i++) {
		const struct cp_server *c = cp_server_at(&cp->st, slots[i]);

		ok = store_delete_server(cp->store, c->v.s.tenant_id, c->v.s.fqdn) == 0;
	}
	if (!ok || store_delete_tenant(cp->store, t.id) || store_commit(cp->store)) {
		snprintf(err, len, "could not store the deletion: %s (nothing was changed)",
			 store_errmsg(cp->store));
		store_rollback(cp->store);
		free(slots);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct cp_server *c = cp_server_at(&cp->st, slots[i]);

		gw_broadcast(cp, ctl_delete_server_msg(c->v.s.tenant_id, c->v.s.fqdn));
		cp_server_delete(&cp->st, slots[i]);
	}
	free(slots);
	cp_tenant_delete(&cp->st, t.id);
	gw_broadcast(cp, ctl_delete_tenant_msg(t.id));
	cp_xdp_request(cp);
	cp->counts.resets += n;
	cp_info("tenant deleted by the operator: %u (%s) and its %zu servers on record", t.id,
		t.name, n);
	cp_evlog_event(cp, "tenant_delete",
		       tenant_event_fields(&t, ctl_tenant_to_json(&t), NULL,
					   json_pack("{s:I}", "servers_deleted", (json_int_t)n)));
	*result = json_pack("{s:I, s:s, s:b, s:I}", "id", (json_int_t)t.id, "name", t.name,
			    "deleted", 1, "servers_deleted", (json_int_t)n);
	return 0;
}

static int cmd_tenant_list(struct cp *cp, const json_t *args, json_t **result, char *err,
			   size_t len)
{
	json_t *arr = json_array();
	int64_t now = cp_now(cp);

	(void)args;
	(void)err;
	(void)len;
	for (size_t i = 0; i < cp->st.ntenants; i++)
		json_array_append_new(arr, tenant_json(cp, &cp->st.tenants[i], now));
	*result = json_pack("{s:o}", "tenants", arr);
	return 0;
}

static int cmd_tenant_show(struct cp *cp, const json_t *args, json_t **result, char *err,
			   size_t len)
{
	struct tes_tenant *t = tenant_arg(cp, args, "id", err, len);

	if (!t)
		return -1;
	*result = tenant_json(cp, t, cp_now(cp));
	return 0;
}

/* Store a tenant's new pause, then make it visible and re-evaluate its
 * servers (their status changes now, and their stage clocks stop or go). */
static int put_pause(struct cp *cp, struct tes_tenant *t, const struct tes_pause *p,
		     const char *why, const char *event, char *err, size_t len)
{
	struct tes_tenant nt = *t;
	json_t *before = pause_raw_json(&t->pause);
	char at[40];

	nt.pause = *p;
	if (store_put_tenant(cp->store, &nt)) {
		snprintf(err, len, "could not store the pause: %s", store_errmsg(cp->store));
		json_decref(before);
		return -1;
	}
	*t = nt;
	/* Before the re-evaluation, so the log reads cause then effect. */
	tes_time_format(p->end, 0, at, sizeof(at));
	cp_evlog_tenant(
		cp, event, t,
		audit_fields(before, pause_raw_json(p),
			     json_pack("{s:s, s:I, s:i}", "pause_end", at, "pause_end_epoch",
				       (json_int_t)p->end, "pause_days_used", (int)p->days_used)));
	gw_push_tenant(cp, t);
	esc_evaluate_tenant(cp, t->id, why);
	return 0;
}

static int cmd_pause_add(struct cp *cp, const json_t *args, json_t **result, char *err, size_t len)
{
	struct tes_tenant *t = tenant_arg(cp, args, "tenant", err, len);
	struct tes_pause np;
	unsigned left;
	int64_t days, now = cp_now(cp);
	int year;
	char end[40];

	if (!t || arg_int(args, "days", 1, 366, true, 0, &days, err, len))
		return -1;
	switch (tes_pause_add(&t->pause, &cp->policy, now, (unsigned)days, &np, &left)) {
	case TES_PAUSE_OK:
		break;
	case TES_PAUSE_EDAYS:
		snprintf(err, len, "a pause must be at least one day");
		return -1;
	case TES_PAUSE_EQUOTA:
		tes_pause_days_left(&t->pause, &cp->policy, now, &year);
		snprintf(err, len,
			 "pause quota exceeded: tenant %u has %u of its %u pause days left in %d,"
			 " and %lld were asked for",
			 t->id, left, cp->policy.pause_quota_days, year, (long long)days);
		return -1;
	}
	if (put_pause(cp, t, &np, "pause", "pause", err, len))
		return -1;
	cp->counts.pauses++;
	tes_time_format(np.end, cp->policy.utc_offset_min, end, sizeof(end));
	cp_info("pause: tenant %u (%s) paused for %lld more days, until %s; %u days left in %u",
		t->id, t->name, (long long)days, end, left, np.year);
	*result = pause_json(cp, t, now);
	return 0;
}

static int cmd_pause_show(struct cp *cp, const json_t *args, json_t **result, char *err, size_t len)
{
	struct tes_tenant *t = tenant_arg(cp, args, "tenant", err, len);

	if (!t)
		return -1;
	*result = pause_json(cp, t, cp_now(cp));
	return 0;
}

static int cmd_pause_resume(struct cp *cp, const json_t *args, json_t **result, char *err,
			    size_t len)
{
	struct tes_tenant *t = tenant_arg(cp, args, "tenant", err, len);
	struct tes_pause np;
	int64_t now = cp_now(cp);

	if (!t)
		return -1;
	if (!tes_pause_resume(&t->pause, now, &np)) {
		snprintf(err, len, "tenant %u is not paused", t->id);
		return -1;
	}
	if (put_pause(cp, t, &np, "pause ended by the operator", "pause_resumed", err, len))
		return -1;
	cp->counts.resumes++;
	cp_info("pause: tenant %u (%s) resumed by the operator (the days granted stay used)", t->id,
		t->name);
	*result = pause_json(cp, t, now);
	return 0;
}

/* ---- catalog ---- */

static int cmd_catalog_show(struct cp *cp, const json_t *args, json_t **result, char *err,
			    size_t len)
{
	json_t *o;

	(void)args;
	(void)err;
	(void)len;
	o = json_pack("{s:s, s:I, s:s, s:s, s:s}", "version", catalog_version(cp->catalog),
		      "builds", (json_int_t)catalog_size(cp->catalog), "builds_name",
		      cp->builds.name, "compliance_name", cp->compliance.name, "compliance",
		      cp->compliance.text);
	set_time(cp, o, "loaded_at", true, cp->builds.loaded_at);
	*result = o;
	return 0;
}

/* Line n of a document, without its comment and outer blanks: the rule
 * that decided a classification, as the operator wrote it. */
static void doc_line(const struct store_doc *d, unsigned n, char *buf, size_t len)
{
	const char *p = d->text, *end = d->text ? d->text + d->len : NULL;
	size_t k;

	buf[0] = '\0';
	for (unsigned i = 1; p && p < end && i < n; i++) {
		p = memchr(p, '\n', (size_t)(end - p));
		p = p ? p + 1 : NULL;
	}
	if (!p || p >= end || n == 0)
		return;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	for (k = 0; p + k < end && p[k] != '\n' && p[k] != '#' && k + 1 < len; k++)
		buf[k] = p[k] == '\t' || (unsigned char)p[k] < 0x20 ? ' ' : p[k];
	while (k > 0 && buf[k - 1] == ' ')
		k--;
	buf[k] = '\0';
}

static json_t *rule_json(struct cp *cp, const struct catalog_class *cls)
{
	const struct catalog_rule *r = &cls->rule;
	char text[256];
	json_t *o;

	doc_line(&cp->compliance, r->line, text, sizeof(text));
	o = json_pack("{s:s, s:i, s:s, s:s}", "kind", catalog_rule_kind_name(r->kind), "line",
		      (int)r->line, "file", cp->compliance.name, "text", text);
	set_time(cp, o, "since", r->since != CATALOG_TIME_MIN, r->since);
	set_time(cp, o, "until", r->until != CATALOG_TIME_MAX, r->until);
	json_object_set_new(o, "days",
			    r->kind == CATALOG_RULE_CURRENT ? json_integer(r->days) : json_null());
	json_object_set_new(o, "floor", r->floor ? entry_json(r->floor) : json_null());
	return o;
}

static int cmd_catalog_check(struct cp *cp, const json_t *args, json_t **result, char *err,
			     size_t len)
{
	struct catalog_class cls;
	struct ex_build b;
	int64_t at, from, until;
	const char *s;
	json_t *o;

	if (arg_str(args, "build", &s, err, len) ||
	    arg_int(args, "at", 0, TES_TIME_MAX, false, cp_now(cp), &at, err, len))
		return -1;
	if (!ex_build_from_str(s, &b)) {
		snprintf(err, len, "\"%s\" is not a build (four numbers, like 15.1.2507.39)", s);
		return -1;
	}
	catalog_classify(cp->catalog, &b, at, &cls);
	catalog_verdict_span(cp->catalog, &b, at, &from, &until);
	o = json_pack("{s:o, s:s, s:s, s:b, s:b, s:b}", "build", build_str(&b), "family",
		      ex_family_name(cls.family), "branch", cls.branch, "known",
		      cls.nearest != NULL, "exact", cls.exact, "compliant", cls.compliant);
	json_object_set_new(o, "nearest", cls.nearest ? entry_json(cls.nearest) : json_null());
	json_object_set_new(o, "recommended", recommended_json(&cls));
	json_object_set_new(
		o, "on_premises",
		json_boolean(cls.family != EX_FAMILY_NONE && cls.family != EX_FAMILY_ONLINE));
	json_object_set_new(o, "catalog_version", json_string(catalog_version(cp->catalog)));
	set_time(cp, o, "at", true, at);
	json_object_set_new(o, "rule", rule_json(cp, &cls));
	/* When this verdict began and when it ends, so that an operator sees
	 * the date a compliant build stops being one. */
	set_time(cp, o, "verdict_since", from != CATALOG_TIME_MIN, from);
	set_time(cp, o, "verdict_until", until != CATALOG_TIME_MAX, until);
	*result = o;
	return 0;
}

struct planned {
	uint32_t slot;
	struct store_server v;
	enum tes_status old_status;
	unsigned old_stage;
	enum tes_change change;
	int64_t when;
	unsigned rule_line;
};

static json_t *change_json(const struct tes_server *s, enum tes_status os, unsigned ostage,
			   enum tes_status ns, unsigned nstage)
{
	return json_pack("{s:I, s:s, s:o, s:s, s:s, s:i, s:i}", "tenant", (json_int_t)s->tenant_id,
			 "fqdn", s->fqdn, "build", build_str(&s->build), "old_status",
			 tes_status_name(os), "new_status", tes_status_name(ns), "old_stage",
			 (int)ostage, "new_stage", (int)nstage);
}

/* What cat does to the tracked servers at now: a server whose last build's
 * verdict differs from its state is resolved or re-detected, as a sighting
 * of it would be.  After a load (at_boundary false) every such server
 * changes, as of now.  At a rule's date (at_boundary true) only those whose
 * verdict changed at a date after their own last change, as of that date:
 * so a clock passed while tescontrol was down starts where it would have,
 * and a clock set back undoes nothing.  Fills plan (room for every live
 * server) and changes (may be NULL); returns the count. */
static size_t plan_catalog(struct cp *cp, const struct catalog *cat, int64_t now, bool at_boundary,
			   struct planned *plan, json_t *changes)
{
	size_t nplan = 0;

	for (uint32_t i = 0; i < cp->st.nslots; i++) {
		const struct cp_server *c = cp_server_at(&cp->st, i);
		const struct tes_tenant *t;
		struct catalog_class cls;
		struct tes_detection d;
		struct tes_server ns;
		enum tes_change ch;
		unsigned ostage, nstage;
		enum tes_status ost, nst;
		int64_t when = now;

		if (!c)
			continue;
		catalog_classify(cat, &c->v.s.build, now, &cls);
		if (cls.family == EX_FAMILY_NONE || cls.family == EX_FAMILY_ONLINE)
			continue;
		if (at_boundary) {
			int64_t from, until;
			int64_t last = c->v.s.resolved ? c->v.s.resolved_at : c->v.s.first_detected;

			catalog_verdict_span(cat, &c->v.s.build, now, &from, &until);
			if (from == CATALOG_TIME_MIN || from <= last)
				continue;
			when = from;
		}
		t = cp_server_tenant(cp, &c->v.s);
		d.cls = cls.compliant ? TES_BUILD_COMPLIANT : TES_BUILD_VULNERABLE;
		d.family = cls.family;
		d.build = c->v.s.build;
		/* a tracked compliant server the new catalog finds vulnerable
		 * is a first detection */
		ch = tes_server_observe(&c->v.s, c->v.s.tenant_id, c->v.s.fqdn, t, &cp->policy, &d,
					NULL, when, &ns);
		if (ch != TES_CHANGE_RESOLVED && ch != TES_CHANGE_REDETECTED &&
		    ch != TES_CHANGE_FIRST)
			continue;
		ns.last_seen = c->v.s.last_seen; /* nothing was seen */
		cp_server_view(cp, &c->v.s, now, &ostage, &ost);
		cp_server_view(cp, &ns, now, &nstage, &nst);
		plan[nplan].slot = i;
		plan[nplan].v.s = ns;
		plan[nplan].v.stage_logged = (uint8_t)nstage;
		plan[nplan].v.status_logged = (uint8_t)nst;
		plan[nplan].old_status = ost;
		plan[nplan].old_stage = ostage;
		plan[nplan].change = ch;
		plan[nplan].when = when;
		plan[nplan].rule_line = cls.rule.line;
		nplan++;
		if (changes)
			json_array_append_new(changes, change_json(&ns, ost, ostage, nst, nstage));
	}
	return nplan;
}

/* After the plan is committed: memory, logs, gateways, timers. */
static void publish_plan(struct cp *cp, const struct planned *plan, size_t nplan, int64_t now,
			 const char *why)
{
	for (size_t i = 0; i < nplan; i++) {
		struct cp_server *c = cp_server_at(&cp->st, plan[i].slot);
		const char *what = "re-detected", *event = "redetection";

		if (plan[i].change == TES_CHANGE_RESOLVED) {
			what = "resolved";
			event = "resolved";
			cp->counts.resolved++;
		} else if (plan[i].change == TES_CHANGE_FIRST) {
			/* a tracked compliant server the catalog now finds vulnerable */
			what = "first detection";
			event = "first_detection";
			cp->counts.first++;
		} else {
			cp->counts.redetected++;
		}
		cp_info("%s: tenant %u server %s (%s): %s stage %u -> %s stage %u", why,
			plan[i].v.s.tenant_id, plan[i].v.s.fqdn, what,
			tes_status_name(plan[i].old_status), plan[i].old_stage,
			tes_status_name(plan[i].v.status_logged), plan[i].v.stage_logged);
		c->v = plan[i].v;
		c->dirty = false;
		cp_evlog_server(
			cp, event, &c->v.s, c->v.stage_logged, (enum tes_status)c->v.status_logged,
			json_pack("{s:I, s:s, s:i}", "detected_at", (json_int_t)plan[i].when,
				  "reason", why, "rule_line", (int)plan[i].rule_line));
		gw_push_server(cp, plan[i].slot, now);
		cp_server_changed(cp, plan[i].slot, now);
	}
}

void cp_catalog_boundaries(struct cp *cp, bool force, const char *why)
{
	int64_t now = cp_now(cp);
	struct planned *plan;
	size_t nplan;

	if (!force && cp->catalog_due > now)
		return;
	plan = calloc((size_t)cp->st.nlive + 1, sizeof(*plan));
	if (!plan) {
		cp_err("compliance rule dates: out of memory; retrying in 10 s");
		cp->catalog_due = now + 10;
		return;
	}
	nplan = plan_catalog(cp, cp->catalog, now, true, plan, NULL);
	if (nplan) {
		bool ok = store_begin(cp->store) == 0;

		for (size_t i = 0; ok && i < nplan; i++)
			ok = store_put_server(cp->store, &plan[i].v) == 0;
		if (!ok || store_commit(cp->store)) {
			cp->counts.store_errors++;
			cp_err("storing what the compliance rule dates changed (%zu servers): %s;"
			       " retrying in 10 s",
			       nplan, store_errmsg(cp->store));
			store_rollback(cp->store);
			free(plan);
			cp->catalog_due = now + 10;
			return;
		}
		publish_plan(cp, plan, nplan, now, why ? why : "a compliance rule's date passed");
	}
	free(plan);
	cp->catalog_due = catalog_next_change(cp->catalog, now);
}

static int cmd_catalog_load(struct cp *cp, const json_t *args, json_t **result, char *err,
			    size_t len)
{
	const char *builds, *compliance, *bname, *cname;
	struct catalog_error cerr;
	struct catalog *cat;
	struct planned *plan;
	size_t nplan = 0;
	bool dry = arg_bool(args, "dry_run");
	int64_t now = cp_now(cp);
	json_t *changes, *probe;
	struct store_doc bd, cd;

	if (arg_str(args, "builds", &builds, err, len) ||
	    arg_str(args, "compliance", &compliance, err, len))
		return -1;
	bname = json_string_value(json_object_get(args, "builds_name"));
	cname = json_string_value(json_object_get(args, "compliance_name"));
	bname = bname && bname[0] ? bname : "exchange-builds.csv";
	cname = cname && cname[0] ? cname : "compliance.conf";
	cat = catalog_parse(builds, strlen(builds), bname, compliance, strlen(compliance), cname,
			    &cerr);
	if (!cat) {
		snprintf(err, len, "%s:%u: %s (nothing was changed)", cerr.file, cerr.line,
			 cerr.msg);
		return -1;
	}
	/* Gateways receive the texts in one frame: refuse what cannot be sent
	 * before anything changes. */
	probe = ctl_catalog_msg(builds, bname, compliance, cname, catalog_version(cat));
	{
		uint8_t *f;
		size_t n;
		struct ctl_error e;

		if (ctl_frame_encode(probe, &f, &n, &e)) {
			json_decref(probe);
			catalog_free(cat);
			snprintf(err, len, "catalog too large for the control protocol: %s", e.msg);
			return -1;
		}
		free(f);
		json_decref(probe);
	}
	plan = calloc((size_t)cp->st.nlive + 1, sizeof(*plan));
	if (!plan) {
		catalog_free(cat);
		snprintf(err, len, "out of memory");
		return -1;
	}
	changes = json_array();
	nplan = plan_catalog(cp, cat, now, false, plan, changes);
	if (dry) {
		*result = json_pack("{s:b, s:s, s:I, s:I, s:o}", "dry_run", 1, "version",
				    catalog_version(cat), "builds", (json_int_t)catalog_size(cat),
				    "count", (json_int_t)nplan, "changes", changes);
		catalog_free(cat);
		free(plan);
		return 0;
	}
	memset(&bd, 0, sizeof(bd));
	memset(&cd, 0, sizeof(cd));
	bd.text = strdup(builds);
	cd.text = strdup(compliance);
	if (!bd.text || !cd.text) {
		free(bd.text);
		free(cd.text);
		goto nomem;
	}
	bd.len = strlen(builds);
	cd.len = strlen(compliance);
	snprintf(bd.name, sizeof(bd.name), "%s", bname);
	snprintf(cd.name, sizeof(cd.name), "%s", cname);
	snprintf(bd.version, sizeof(bd.version), "%s", catalog_version(cat));
	snprintf(cd.version, sizeof(cd.version), "%s", catalog_version(cat));
	bd.loaded_at = cd.loaded_at = now;
	/* The catalog and every status it changes, in one transaction. */
	if (store_begin(cp->store) || store_put_doc(cp->store, STORE_DOC_BUILDS, &bd) ||
	    store_put_doc(cp->store, STORE_DOC_COMPLIANCE, &cd))
		goto store_fail;
	for (size_t i = 0; i < nplan; i++) {
		if (store_put_server(cp->store, &plan[i].v))
			goto store_fail;
	}
	if (store_commit(cp->store))
		goto store_fail;
	{
		json_t *before = json_pack("{s:s, s:s, s:s, s:I}", "version",
					   catalog_version(cp->catalog), "builds_name",
					   cp->builds.name, "compliance_name", cp->compliance.name,
					   "builds", (json_int_t)catalog_size(cp->catalog));
		json_t *after = json_pack("{s:s, s:s, s:s, s:I}", "version", catalog_version(cat),
					  "builds_name", bname, "compliance_name", cname, "builds",
					  (json_int_t)catalog_size(cat));

		catalog_free(cp->catalog);
		store_doc_free(&cp->builds);
		store_doc_free(&cp->compliance);
		cp->catalog = cat;
		cp->builds = bd;
		cp->compliance = cd;
		cp->catalog_due = catalog_next_change(cat, now);
		cp_info("catalog loaded by the operator: version %s (%zu builds) from %s and %s; "
			"%zu"
			" servers change status",
			catalog_version(cat), catalog_size(cat), bname, cname, nplan);
		audit(cp, "catalog_load", before, after,
		      json_pack("{s:I}", "servers_changed", (json_int_t)nplan));
	}
	gw_push_catalog(cp);
	publish_plan(cp, plan, nplan, now, "catalog load");
	esc_arm(cp);
	free(plan);
	*result = json_pack("{s:b, s:s, s:I, s:I, s:o}", "dry_run", 0, "version",
			    catalog_version(cat), "builds", (json_int_t)catalog_size(cat), "count",
			    (json_int_t)nplan, "changes", changes);
	return 0;
store_fail:
	snprintf(err, len, "could not store the catalog: %s (nothing was changed)",
		 store_errmsg(cp->store));
	store_rollback(cp->store);
	store_doc_free(&bd);
	store_doc_free(&cd);
	catalog_free(cat);
	free(plan);
	json_decref(changes);
	return -1;
nomem:
	catalog_free(cat);
	free(plan);
	json_decref(changes);
	snprintf(err, len, "out of memory");
	return -1;
}

/* ---- policy ---- */

static int cmd_policy_show(struct cp *cp, const json_t *args, json_t **result, char *err,
			   size_t len)
{
	json_t *o;
	json_t *stages = json_array();

	(void)args;
	(void)err;
	(void)len;
	for (int i = 0; i < TES_STAGE_COUNT; i++)
		json_array_append_new(stages,
				      json_pack("{s:i, s:i, s:i, s:i}", "stage", i + 1, "start_day",
						(int)cp->policy.stage[i].start_day, "throttle_min",
						(int)cp->policy.stage[i].throttle_min, "block_min",
						(int)cp->policy.stage[i].block_min));
	o = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:i, s:i, s:i}", "version",
		      cp->policy_doc.version, "name", cp->policy_doc.name, "text",
		      cp->policy_doc.text, "stages", stages, "scope",
		      tes_scope_name(cp->policy.scope), "full_block",
		      tes_full_block_name(cp->policy.full_block), "pause_quota_days",
		      (int)cp->policy.pause_quota_days, "utc_offset_minutes",
		      (int)cp->policy.utc_offset_min, "window_offset_minutes",
		      (int)cp->policy.window_offset_min);
	set_time(cp, o, "loaded_at", true, cp->policy_doc.loaded_at);
	*result = o;
	return 0;
}

static int cmd_policy_load(struct cp *cp, const json_t *args, json_t **result, char *err,
			   size_t len)
{
	struct tes_policy np, old = cp->policy;
	struct tes_policy_error perr;
	const char *text, *name;
	bool dry = arg_bool(args, "dry_run");
	int64_t now = cp_now(cp);
	json_t *changes;
	struct store_doc d;
	char msg[512];

	if (arg_str(args, "text", &text, err, len))
		return -1;
	name = json_string_value(json_object_get(args, "name"));
	name = name && name[0] ? name : "policy.conf";
	if (tes_policy_parse(text, strlen(text), name, &np, &perr)) {
		tes_policy_error_format(&perr, msg, sizeof(msg));
		snprintf(err, len, "%s (nothing was changed)", msg);
		return -1;
	}
	changes = json_array();
	for (uint32_t i = 0; i < cp->st.nslots; i++) {
		const struct cp_server *c = cp_server_at(&cp->st, i);
		const struct tes_tenant *t;
		unsigned os, ns;
		enum tes_status ost, nst;

		if (!c)
			continue;
		t = cp_server_tenant(cp, &c->v.s);
		os = tes_server_stage(&c->v.s, t, &old, now);
		ost = tes_server_status(&c->v.s, t, &old, now);
		ns = tes_server_stage(&c->v.s, t, &np, now);
		nst = tes_server_status(&c->v.s, t, &np, now);
		if (os != ns || ost != nst)
			json_array_append_new(changes, change_json(&c->v.s, ost, os, nst, ns));
	}
	memset(&d, 0, sizeof(d));
	if (!dry) {
		d.text = strdup(text);
		if (!d.text) {
			json_decref(changes);
			snprintf(err, len, "out of memory");
			return -1;
		}
		d.len = strlen(text);
		snprintf(d.name, sizeof(d.name), "%s", name);
		cp_doc_version(d.text, d.len, "", 0, d.version, sizeof(d.version));
		d.loaded_at = now;
		if (store_put_doc(cp->store, STORE_DOC_POLICY, &d)) {
			snprintf(err, len, "could not store the policy: %s (nothing was changed)",
				 store_errmsg(cp->store));
			store_doc_free(&d);
			json_decref(changes);
			return -1;
		}
		audit(cp, "policy_load",
		      json_pack("{s:s, s:s}", "version", cp->policy_doc.version, "name",
				cp->policy_doc.name),
		      json_pack("{s:s, s:s}", "version", d.version, "name", d.name),
		      json_pack("{s:I}", "servers_changed", (json_int_t)json_array_size(changes)));
		store_doc_free(&cp->policy_doc);
		cp->policy_doc = d;
		cp->policy = np;
		cp_info("policy loaded by the operator: version %s from %s; %zu servers change"
			" stage or status",
			d.version, name, json_array_size(changes));
		gw_push_policy(cp);
		esc_evaluate_all(cp, "policy change");
	}
	*result = json_pack("{s:b, s:s, s:I, s:o}", "dry_run", dry, "version",
			    dry ? "" : cp->policy_doc.version, "count",
			    (json_int_t)json_array_size(changes), "changes", changes);
	return 0;
}

/* ---- status and clock ---- */

static int cmd_status(struct cp *cp, const json_t *args, json_t **result, char *err, size_t len)
{
	unsigned by[TES_STATUS_COUNT] = { 0 };
	int64_t now = cp_now(cp);
	json_t *o, *gws;

	(void)args;
	(void)err;
	(void)len;
	for (uint32_t i = 0; i < cp->st.nslots; i++) {
		const struct cp_server *c = cp_server_at(&cp->st, i);
		unsigned stage;
		enum tes_status st;

		if (!c)
			continue;
		cp_server_view(cp, &c->v.s, now, &stage, &st);
		if ((unsigned)st < TES_STATUS_COUNT)
			by[st]++;
	}
	gws = gw_status_json(cp);
	o = json_pack("{s:s, s:I, s:o, s:i, s:o, s:I, s:{s:I, s:i, s:i, s:i, s:i, s:i}}", "version",
		      TES_VERSION, "pid", (json_int_t)getpid(), "clock", cp_clock_json(cp),
		      "gateways_connected", (int)json_array_size(gws), "gateways", gws, "tenants",
		      (json_int_t)cp->st.ntenants, "servers", "total", (json_int_t)cp->st.nlive,
		      "reporting", by[TES_STATUS_REPORTING], "throttling",
		      by[TES_STATUS_THROTTLING], "blocking", by[TES_STATUS_BLOCKING], "resolved",
		      by[TES_STATUS_RESOLVED], "paused", by[TES_STATUS_PAUSED]);
	json_object_set_new(json_object_get(o, "servers"), "stale",
			    json_integer(by[TES_STATUS_STALE]));
	json_object_set_new(json_object_get(o, "servers"), "compliant",
			    json_integer(by[TES_STATUS_COMPLIANT]));
	json_object_set_new(o, "catalog",
			    json_pack("{s:s, s:I}", "version", catalog_version(cp->catalog),
				      "builds", (json_int_t)catalog_size(cp->catalog)));
	json_object_set_new(o, "policy", json_pack("{s:s}", "version", cp->policy_doc.version));
	json_object_set_new(o, "store",
			    json_pack("{s:s, s:i}", "path", cp->cfg.db_path, "schema_version",
				      store_schema_version(cp->store)));
	json_object_set_new(o, "counts",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "sightings",
				      (json_int_t)cp->counts.sightings, "first_detections",
				      (json_int_t)cp->counts.first, "redetections",
				      (json_int_t)cp->counts.redetected, "resolutions",
				      (json_int_t)cp->counts.resolved, "stage_changes",
				      (json_int_t)cp->counts.stage_changes, "store_errors",
				      (json_int_t)cp->counts.store_errors));
	set_time(cp, o, "started_at", true, cp->started_at);
	json_object_set_new(o, "generation", json_integer((json_int_t)cp->gen));
	*result = o;
	return 0;
}

static int cmd_clock(struct cp *cp, const json_t *args, json_t **result, char *err, size_t len)
{
	const char *op = "show";
	int64_t seconds;

	if (json_object_get(args, "op") && arg_str(args, "op", &op, err, len))
		return -1;
	if (strcmp(op, "show") == 0) {
		*result = cp_clock_json(cp);
		return 0;
	}
	if (strcmp(op, "set") != 0 && strcmp(op, "advance") != 0) {
		snprintf(err, len, "clock: \"%s\" is not set, advance or show", op);
		return -1;
	}
	if (arg_int(args, "seconds", 0, TES_TIME_MAX, true, 0, &seconds, err, len))
		return -1;
	if (cp_clock_move(cp, strcmp(op, "advance") == 0, seconds, err, len))
		return -1;
	*result = cp_clock_json(cp);
	return 0;
}

/* The entries of the drop list now (xdp.list's result), or NULL. */
static json_t *xdp_list(struct cp *cp)
{
	json_t *list = NULL;
	char err[256];

	return cp_xdp_cmd(cp, "list", NULL, &list, err, sizeof(err)) ? NULL : list;
}

/* The entry for address (as xdp.list spells it) in list, or NULL. */
static json_t *xdp_entry(const json_t *list, const char *address)
{
	const json_t *e;
	size_t i;

	json_array_foreach(json_object_get(list, "entries"), i, e)
	{
		const char *a = json_string_value(json_object_get(e, "address"));

		if (a && address && strcmp(a, address) == 0) {
			json_t *found = json_deep_copy(e);

			json_object_del(found, "expires_in"); /* a countdown, not a value */
			return found;
		}
	}
	return NULL;
}

/* An interface as xdp.status shows it, or NULL. */
static json_t *xdp_iface(struct cp *cp, const char *ifname)
{
	json_t *st = NULL, *e, *found = NULL;
	char err[256];
	size_t i;

	if (!ifname || cp_xdp_cmd(cp, "status", NULL, &st, err, sizeof(err)))
		return NULL;
	json_array_foreach(json_object_get(st, "interfaces"), i, e)
	{
		const char *n = json_string_value(json_object_get(e, "interface"));

		if (n && strcmp(n, ifname) == 0) {
			found = json_pack("{s:s, s:O}", "interface", ifname, "mode",
					  json_object_get(e, "mode"));
			break;
		}
	}
	json_decref(st);
	return found;
}

/* The xdp.* commands are notify/xdp.c's; the ones that change something get
 * their line here, with the entry or interface before and after. */
static int cmd_xdp(struct cp *cp, const char *cmd, const json_t *args, json_t **result, char *err,
		   size_t len)
{
	const char *op = cmd + strlen("xdp.");
	const char *ifname = json_string_value(json_object_get(args, "interface"));
	bool deny = strcmp(op, "deny") == 0, allow = strcmp(op, "allow") == 0;
	bool detach = strcmp(op, "detach") == 0;
	json_t *list = NULL, *before = NULL;
	const char *addr;

	if (!deny && !allow && !detach)
		return cp_xdp_cmd(cp, op, args, result, err, len);
	/* The address as the map spells it is only known after the command:
	 * keep the whole list to find its entry before. */
	if (deny || allow)
		list = xdp_list(cp);
	else
		before = xdp_iface(cp, ifname);
	if (cp_xdp_cmd(cp, op, args, result, err, len)) {
		json_decref(list);
		json_decref(before);
		return -1;
	}
	if (detach) {
		audit(cp, "xdp_detach", before, xdp_iface(cp, ifname),
		      json_pack("{s:s}", "interface", ifname ? ifname : ""));
		return 0;
	}
	addr = json_string_value(json_object_get(*result, deny ? "denied" : "allowed"));
	before = xdp_entry(list, addr);
	json_decref(list);
	list = xdp_list(cp);
	audit(cp, deny ? "xdp_deny" : "xdp_allow", before, xdp_entry(list, addr),
	      json_pack("{s:s}", "address", addr ? addr : ""));
	json_decref(list);
	return 0;
}

#define XDP_CMD(fname, name)                                                            \
	static int fname(struct cp *cp, const json_t *args, json_t **result, char *err, \
			 size_t len)                                                    \
	{                                                                               \
		return cmd_xdp(cp, name, args, result, err, len);                       \
	}
XDP_CMD(cmd_xdp_status, ADMIN_XDP_STATUS)
XDP_CMD(cmd_xdp_list, ADMIN_XDP_LIST)
XDP_CMD(cmd_xdp_deny, ADMIN_XDP_DENY)
XDP_CMD(cmd_xdp_allow, ADMIN_XDP_ALLOW)
XDP_CMD(cmd_xdp_detach, ADMIN_XDP_DETACH)

static const struct {
	const char *name;
	admin_fn fn;
} commands[] = {
	{ ADMIN_REPORT, cmd_report },
	{ ADMIN_SERVER_SHOW, cmd_server_show },
	{ ADMIN_SERVER_RESET, cmd_server_reset },
	{ ADMIN_TENANT_ADD, cmd_tenant_add },
	{ ADMIN_TENANT_SET, cmd_tenant_set },
	{ ADMIN_TENANT_DELETE, cmd_tenant_delete },
	{ ADMIN_TENANT_LIST, cmd_tenant_list },
	{ ADMIN_TENANT_SHOW, cmd_tenant_show },
	{ ADMIN_PAUSE_ADD, cmd_pause_add },
	{ ADMIN_PAUSE_SHOW, cmd_pause_show },
	{ ADMIN_PAUSE_RESUME, cmd_pause_resume },
	{ ADMIN_CATALOG_SHOW, cmd_catalog_show },
	{ ADMIN_CATALOG_LOAD, cmd_catalog_load },
	{ ADMIN_CATALOG_CHECK, cmd_catalog_check },
	{ ADMIN_POLICY_SHOW, cmd_policy_show },
	{ ADMIN_POLICY_LOAD, cmd_policy_load },
	{ ADMIN_STATUS, cmd_status },
	{ ADMIN_CLOCK, cmd_clock },
	{ ADMIN_XDP_STATUS, cmd_xdp_status },
	{ ADMIN_XDP_LIST, cmd_xdp_list },
	{ ADMIN_XDP_DENY, cmd_xdp_deny },
	{ ADMIN_XDP_ALLOW, cmd_xdp_allow },
	{ ADMIN_XDP_DETACH, cmd_xdp_detach },
};

/* ---- connections ---- */

static struct admin_conn *admin_of(struct cp_watch *w)
{
	/* w is the first member: the watch is the connection. */
	_Static_assert(offsetof(struct admin_conn, w) == 0, "w must come first");
	return (struct admin_conn *)w;
}

static void admin_close(struct cp *cp, struct admin_conn *a)
{
	if (a->dead)
		return;
	cp_watch_del(cp, &a->w);
	close(a->w.fd);
	a->w.fd = -1;
	a->dead = true;
}

static void admin_reject(struct cp *cp, struct admin_conn *a, const char *why)
{
	json_t *m = admin_response_error("bad request: %s", why);
	struct ctl_error err;
	uint8_t *frame;
	size_t n;

	cp_warn("admin #%u (pid %d, uid %u): bad input: %s; disconnecting it", a->id,
		(int)a->cred.pid, (unsigned)a->cred.uid, why);
	if (m && ctl_frame_encode(m, &frame, &n, &err) == 0) {
		ssize_t rc = send(a->w.fd, frame, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		(void)rc;
		free(frame);
	}
	json_decref(m);
	admin_close(cp, a);
}

static void handle_request(struct cp *cp, struct admin_conn *a, const json_t *req)
{
	const char *cmd;
	json_t *args, *result = NULL, *resp;
	struct ctl_error cerr;
	char err[1024] = "";

	if (admin_request_parse(req, &cmd, &args, &cerr)) {
		admin_reject(cp, a, cerr.msg);
		return;
	}
	if (!args)
		args = json_object();
	else
		json_incref(args);
	resp = NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		int rc;

		if (strcmp(cmd, commands[i].name) != 0)
			continue;
		g_caller = &a->cred;
		rc = commands[i].fn(cp, args, &result, err, sizeof(err));
		g_caller = NULL;
		if (rc)
			resp = admin_response_error("%s", err[0] ? err : "failed");
		else
			resp = admin_response_ok(result);
		break;
	}
	if (!resp)
		resp = admin_response_error("unknown command \"%.60s\"", cmd);
	cp_debug("admin #%u: %s -> %s", a->id, cmd,
		 json_is_true(json_object_get(resp, "ok")) ? "ok" : "error");
	json_decref(args);
	/* A result too big for one frame becomes an error, not a dropped
	 * connection: the client learns to ask for less. */
	if (cp_outq_push(&a->out, resp))
		cp_outq_push(&a->out, admin_response_error("the result of %s does not fit in one"
							   " frame; ask for less (report --limit)",
							   cmd));
	/* what the socket takes now is not waiting */
	if (a->out.len > ADMIN_OUTQ_MAX && cp_outq_flush(&a->out, a->w.fd) < 0) {
		admin_close(cp, a);
		return;
	}
	if (a->out.len > ADMIN_OUTQ_MAX) {
		cp_warn("admin #%u (pid %d, uid %u): %zu octets of replies unread (at most %u): "
			"the client does not read them; disconnecting it",
			a->id, (int)a->cred.pid, (unsigned)a->cred.uid, a->out.len, ADMIN_OUTQ_MAX);
		admin_close(cp, a);
	}
}

static void admin_pump(struct cp *cp, struct admin_conn *a)
{
	uint32_t ev;

	if (cp_outq_flush(&a->out, a->w.fd) < 0) {
		admin_close(cp, a);
		return;
	}
	ev = EPOLLIN | (a->out.len ? EPOLLOUT : 0);
	if (ev != a->events) {
		a->events = ev;
		cp_watch_mod(cp, &a->w, ev);
	}
}

static void on_admin(struct cp *cp, struct cp_watch *w, uint32_t events)
{
	struct admin_conn *a = admin_of(w);
	uint8_t buf[65536];

	if (a->dead)
		return;
	if (events & EPOLLOUT)
		admin_pump(cp, a);
	if (a->dead || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	for (int r = 0; r < 32 && !a->dead; r++) {
		ssize_t n = recv(a->w.fd, buf, sizeof(buf), MSG_DONTWAIT);
		size_t off = 0;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				admin_close(cp, a);
			break;
		}
		if (n == 0) {
			if (ctl_decoder_eof(&a->dec) == CTL_ERROR)
				admin_reject(cp, a, a->dec.err.msg);
			else
				admin_close(cp, a);
			return;
		}
		while (!a->dead && off < (size_t)n) {
			size_t took = ctl_decoder_feed(&a->dec, buf + off, (size_t)n - off);
			enum ctl_rc rc;
			json_t *m;

			off += took;
			while (!a->dead && (rc = ctl_decoder_next(&a->dec, &m)) == CTL_FRAME) {
				handle_request(cp, a, m);
				json_decref(m);
			}
			if (a->dead)
				return;
			if (rc == CTL_ERROR || (took == 0 && off < (size_t)n)) {
				admin_reject(cp, a, a->dec.err.msg);
				return;
			}
		}
	}
	if (!a->dead)
		admin_pump(cp, a);
}

static void on_admin_accept(struct cp *cp, struct cp_watch *w, uint32_t events)
{
	(void)events;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct admin_conn *a;
		struct ucred cred;
		char why[256];

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				cp_warn("admin socket: accept: %s", strerror(errno));
			return;
		}
		if (cp_peer_check(fd, cp->admin_gid_set, cp->admin_gid, &cred, why, sizeof(why))) {
			cp_warn("admin socket: refused a connection: %s", why);
			close(fd);
			continue;
		}
		a = calloc(1, sizeof(*a));
		if (!a) {
			close(fd);
			continue;
		}
		a->w.fd = fd;
		a->w.fn = on_admin;
		a->id = ++cp->next_conn_id;
		a->cred = cred;
		a->events = EPOLLIN;
		ctl_decoder_init(&a->dec, CTL_FRAME_MAX);
		if (cp_watch_add(cp, &a->w, EPOLLIN)) {
			close(fd);
			free(a);
			continue;
		}
		a->next = cp->admins;
		cp->admins = a;
	}
}

void admin_reap(struct cp *cp)
{
	struct admin_conn **pp = &cp->admins;

	while (*pp) {
		struct admin_conn *a = *pp;

		if (!a->dead) {
			pp = &a->next;
			continue;
		}
		*pp = a->next;
		ctl_decoder_free(&a->dec);
		cp_outq_free(&a->out);
		free(a);
	}
}

int admin_init(struct cp *cp)
{
	char err[512];
	int fd = cp_listen_unix(cp->cfg.admin_socket, cp->admin_gid_set, cp->admin_gid, err,
				sizeof(err));

	if (fd < 0) {
		cp_err("admin socket: %s", err);
		return -1;
	}
	cp->admin_listen.fd = fd;
	cp->admin_listen.fn = on_admin_accept;
	if (cp_watch_add(cp, &cp->admin_listen, EPOLLIN)) {
		cp_err("admin socket: epoll: %s", strerror(errno));
		return -1;
	}
	cp_info("admin socket %s (%s)", cp->cfg.admin_socket,
		cp->admin_gid_set ? "mode 0660, root and the admin group" : "mode 0600");
	return 0;
}

void admin_shutdown(struct cp *cp)
{
	for (struct admin_conn *a = cp->admins; a; a = a->next) {
		cp_outq_flush(&a->out, a->w.fd);
		admin_close(cp, a);
	}
	admin_reap(cp);
	if (cp->admin_listen.fd >= 0) {
		close(cp->admin_listen.fd);
		unlink(cp->cfg.admin_socket);
		cp->admin_listen.fd = -1;
	}
}
