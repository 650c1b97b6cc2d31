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
	catalog_classify(cp->catalog, &s->build, &cls);
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

/* ---- report and servers ---- */

static int cmp_slots(const void *a, const void *b, void *ctx)
{
	const struct cp_state *st = ctx;
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
	for (int64_t i = offset; i < n && i < offset + limit; i++)
		json_array_append_new(arr, server_json(cp, &cp->st.srv[slots[i]], now, false));
	o = json_pack("{s:I, s:I, s:o}", "total", (json_int_t)n, "offset", (json_int_t)offset,
		      "servers", arr);
	json_object_set_new(o, "next_offset",
			    offset + limit < n ? json_integer(offset + limit) : json_null());
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
			NULL);
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

static int cmd_tenant_add(struct cp *cp, const json_t *args, json_t **result, char *err, size_t len)
{
	struct tes_tenant t;
	const json_t *conns = json_object_get(args, "connectors");
	const char *name;
	int64_t id;

	memset(&t, 0, sizeof(t));
	if (arg_int(args, "id", 1, UINT32_MAX, true, 0, &id, err, len) ||
	    arg_str(args, "name", &name, err, len))
		return -1;
	if (cp_tenant_find(&cp->st, (uint32_t)id)) {
		snprintf(err, len, "tenant %lld already exists", (long long)id);
		return -1;
	}
	if (!name[0] || strlen(name) >= sizeof(t.name)) {
		snprintf(err, len, "the name must have 1 to %zu characters", sizeof(t.name) - 1);
		return -1;
	}
	for (const char *p = name; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			snprintf(err, len, "the name holds a control character");
			return -1;
		}
	}
	t.id = (uint32_t)id;
	snprintf(t.name, sizeof(t.name), "%s", name);
	if (conns) {
		size_t i;
		const json_t *c;
		struct ctl_error cerr;

		if (!json_is_array(conns) || json_array_size(conns) > TES_TENANT_CONNECTORS_MAX) {
			snprintf(err, len, "at most %d connectors", TES_TENANT_CONNECTORS_MAX);
			return -1;
		}
		json_array_foreach(conns, i, c)
		{
			if (ctl_connector_from_json(c, &t.connectors[i], &cerr)) {
				snprintf(err, len, "connector %zu: %s", i + 1, cerr.msg);
				return -1;
			}
		}
		t.nconnectors = (unsigned)json_array_size(conns);
	}
	if (store_put_tenant(cp->store, &t)) {
		snprintf(err, len, "could not store the tenant: %s", store_errmsg(cp->store));
		return -1;
	}
	if (cp_tenant_put(&cp->st, &t)) {
		snprintf(err, len, "out of memory (the tenant is stored; a restart loads it)");
		return -1;
	}
	cp_info("tenant added: %u (%s) with %u connectors", t.id, t.name, t.nconnectors);
	gw_push_tenant(cp, &t);
	cp_xdp_request(cp);
	*result = tenant_json(cp, &t, cp_now(cp));
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
	char at[40];

	nt.pause = *p;
	if (store_put_tenant(cp->store, &nt)) {
		snprintf(err, len, "could not store the pause: %s", store_errmsg(cp->store));
		return -1;
	}
	*t = nt;
	/* Before the re-evaluation, so the log reads cause then effect. */
	tes_time_format(p->end, 0, at, sizeof(at));
	cp_evlog_tenant(cp, event, t,
			json_pack("{s:s, s:I, s:i}", "pause_end", at, "pause_end_epoch",
				  (json_int_t)p->end, "pause_days_used", (int)p->days_used));
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

static int cmd_catalog_check(struct cp *cp, const json_t *args, json_t **result, char *err,
			     size_t len)
{
	struct catalog_class cls;
	struct ex_build b;
	const char *s;
	json_t *o;

	if (arg_str(args, "build", &s, err, len))
		return -1;
	if (!ex_build_from_str(s, &b)) {
		snprintf(err, len, "\"%s\" is not a build (four numbers, like 15.1.2507.39)", s);
		return -1;
	}
	catalog_classify(cp->catalog, &b, &cls);
	o = json_pack("{s:o, s:s, s:s, s:b, s:b, s:b}", "build", build_str(&b), "family",
		      ex_family_name(cls.family), "branch", cls.branch, "known",
		      cls.nearest != NULL, "exact", cls.exact, "compliant", cls.compliant);
	json_object_set_new(o, "nearest", cls.nearest ? entry_json(cls.nearest) : json_null());
	json_object_set_new(o, "recommended", recommended_json(&cls));
	json_object_set_new(
		o, "on_premises",
		json_boolean(cls.family != EX_FAMILY_NONE && cls.family != EX_FAMILY_ONLINE));
	json_object_set_new(o, "catalog_version", json_string(catalog_version(cp->catalog)));
	*result = o;
	return 0;
}

struct planned {
	uint32_t slot;
	struct store_server v;
	enum tes_status old_status;
	unsigned old_stage;
};

static json_t *change_json(const struct tes_server *s, enum tes_status os, unsigned ostage,
			   enum tes_status ns, unsigned nstage)
{
	return json_pack("{s:I, s:s, s:o, s:s, s:s, s:i, s:i}", "tenant", (json_int_t)s->tenant_id,
			 "fqdn", s->fqdn, "build", build_str(&s->build), "old_status",
			 tes_status_name(os), "new_status", tes_status_name(ns), "old_stage",
			 (int)ostage, "new_stage", (int)nstage);
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
	/* A tracked server's last build, classified again: what a sighting of
	 * it would do under the new catalog, applied now. */
	for (uint32_t i = 0; i < cp->st.nslots; i++) {
		const struct cp_server *c = cp_server_at(&cp->st, i);
		const struct tes_tenant *t;
		struct catalog_class cls;
		struct tes_detection d;
		struct tes_server ns;
		enum tes_change ch;
		unsigned ostage, nstage;
		enum tes_status ost, nst;

		if (!c)
			continue;
		catalog_classify(cat, &c->v.s.build, &cls);
		if (cls.family == EX_FAMILY_NONE || cls.family == EX_FAMILY_ONLINE)
			continue;
		t = cp_server_tenant(cp, &c->v.s);
		d.cls = cls.compliant ? TES_BUILD_COMPLIANT : TES_BUILD_VULNERABLE;
		d.family = cls.family;
		d.build = c->v.s.build;
		ch = tes_server_observe(&c->v.s, c->v.s.tenant_id, c->v.s.fqdn, t, &cp->policy, &d,
					NULL, now, &ns);
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
		nplan++;
		json_array_append_new(changes, change_json(&ns, ost, ostage, nst, nstage));
	}
	if (dry) {
		*result = json_pack("{s:b, s:s, s:I, s:o}", "dry_run", 1, "version",
				    catalog_version(cat), "builds", (json_int_t)catalog_size(cat),
				    "changes", changes);
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
	catalog_free(cp->catalog);
	store_doc_free(&cp->builds);
	store_doc_free(&cp->compliance);
	cp->catalog = cat;
	cp->builds = bd;
	cp->compliance = cd;
	cp_info("catalog loaded by the operator: version %s (%zu builds) from %s and %s; %zu"
		" servers change status",
		catalog_version(cat), catalog_size(cat), bname, cname, nplan);
	gw_push_catalog(cp);
	for (size_t i = 0; i < nplan; i++) {
		struct cp_server *c = cp_server_at(&cp->st, plan[i].slot);

		cp_info("catalog change: tenant %u server %s: %s -> %s", plan[i].v.s.tenant_id,
			plan[i].v.s.fqdn, tes_status_name(plan[i].old_status),
			tes_status_name(plan[i].v.status_logged));
		c->v = plan[i].v;
		c->dirty = false;
		gw_push_server(cp, plan[i].slot, now);
		cp_server_changed(cp, plan[i].slot, now);
	}
	free(plan);
	*result = json_pack("{s:b, s:s, s:I, s:o}", "dry_run", 0, "version", catalog_version(cat),
			    "builds", (json_int_t)catalog_size(cat), "changes", changes);
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
		store_doc_free(&cp->policy_doc);
		cp->policy_doc = d;
		cp->policy = np;
		cp_info("policy loaded by the operator: version %s from %s; %zu servers change"
			" stage or status",
			d.version, name, json_array_size(changes));
		gw_push_policy(cp);
		esc_evaluate_all(cp, "policy change");
	}
	*result = json_pack("{s:b, s:s, s:o}", "dry_run", dry, "version",
			    dry ? "" : cp->policy_doc.version, "changes", changes);
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

static int cmd_xdp(struct cp *cp, const char *cmd, const json_t *args, json_t **result, char *err,
		   size_t len)
{
	return cp_xdp_cmd(cp, cmd + strlen("xdp."), args, result, err, len);
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
		if (strcmp(cmd, commands[i].name) != 0)
			continue;
		if (commands[i].fn(cp, args, &result, err, sizeof(err)))
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
