/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * fleet status; store export, store import (docs/fleet.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "controlplane/admin/admin_int.h"

static int64_t wall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

#define EXPORT_PAGE_DEFAULT 1000
#define EXPORT_PAGE_MAX 5000
#define EXPORT_PAGE_BYTES (CTL_FRAME_MAX / 2)

/* ---- fleet status ---- */

struct members {
	const struct cp_admin *a;
	json_t *arr;
	unsigned drift, alive;
};

static int member_json(const struct store_member *m, void *ctx)
{
	struct members *l = ctx;
	const struct cp_state *st = l->a->st;
	bool cat_drift = strcmp(m->catalog, catalog_version(st->catalog)) != 0;
	bool pol_drift = strcmp(m->policy, st->policy_doc.version) != 0;
	json_t *o = json_pack(
		"{s:s, s:b, s:s, s:s, s:b, s:b, s:I, s:I, s:i, s:i}", "appliance", m->name, "alive",
		m->alive, "catalog", m->catalog, "policy", m->policy, "catalog_drift", cat_drift,
		"policy_drift", pol_drift, "journal", (json_int_t)m->journal, "sightings",
		(json_int_t)m->sightings, "servers", (int)m->servers, "gateways", (int)m->gateways);

	/* Alive: its lease is held now.  Otherwise the last time it wrote
	 * itself (every etcd_flush_seconds while it ran). */
	set_time(l->a, o, "last_alive", true, m->alive ? wall_now() : m->written_at);
	set_time(l->a, o, "started_at", m->started_at != 0, m->started_at);
	set_time(l->a, o, "written_at", m->written_at != 0, m->written_at);
	set_time(l->a, o, "cut_off_since", m->cut_off_since != 0, m->cut_off_since);
	if (cat_drift || pol_drift)
		l->drift++;
	if (m->alive)
		l->alive++;
	json_array_append_new(l->arr, o);
	return 0;
}

int cmd_fleet_status(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		     size_t errlen)
{
	struct members l = { .a = a };
	struct store_fleet_status fs;
	json_t *o;

	(void)args;
	if (!store_shared(a->st->store)) {
		snprintf(err, errlen,
			 "this tescontrol keeps its own state (store = sqlite): there is no fleet");
		return -1;
	}
	l.arr = json_array();
	if (a->st->store->fleet->members(a->st->store, member_json, &l)) {
		snprintf(err, errlen, "%s", store_errmsg(a->st->store));
		json_decref(l.arr);
		return -1;
	}
	a->st->store->fleet->status(a->st->store, &fs);
	o = json_pack("{s:s, s:s, s:{s:s, s:I}, s:{s:s, s:I}, s:i, s:i, s:i, s:o}", "appliance",
		      fs.appliance, "store", fs.where, "catalog", "version",
		      catalog_version(a->st->catalog), "revision", (json_int_t)fs.catalog_rev,
		      "policy", "version", a->st->policy_doc.version, "revision",
		      (json_int_t)fs.policy_rev, "appliances_known", (int)json_array_size(l.arr),
		      "appliances_alive", (int)l.alive, "drift", (int)l.drift, "appliances", l.arr);
	*result = o;
	return 0;
}

/* ---- store export ---- */

static int cmp_slots(const void *a, const void *b, void *ctx)
{
	const struct cp_tables *tab = ctx;
	const struct tes_server *x = &tab->srv[*(const uint32_t *)a].v.s;
	const struct tes_server *y = &tab->srv[*(const uint32_t *)b].v.s;

	if (x->tenant_id != y->tenant_id)
		return x->tenant_id < y->tenant_id ? -1 : 1;
	return strcasecmp(x->fqdn, y->fqdn);
}

static json_t *documents_json(const struct cp_state *st)
{
	return json_pack("{s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s, s:s, s:s}}", "policy", "name",
			 st->policy_doc.name, "version", st->policy_doc.version, "text",
			 st->policy_doc.text ? st->policy_doc.text : "", "catalog", "version",
			 catalog_version(st->catalog), "builds_name", st->builds.name, "builds",
			 st->builds.text ? st->builds.text : "", "compliance_name",
			 st->compliance.name, "compliance",
			 st->compliance.text ? st->compliance.text : "");
}

int cmd_store_export(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		     size_t errlen)
{
	struct cp_tables *tab = &a->st->tab;
	int64_t offset, limit, end;
	uint32_t *slots, n = 0;
	size_t bytes = 0;
	json_t *o, *arr;

	if (arg_int(args, "offset", 0, UINT32_MAX, false, 0, &offset, err, errlen) ||
	    arg_int(args, "limit", 1, EXPORT_PAGE_MAX, false, EXPORT_PAGE_DEFAULT, &limit, err,
		    errlen))
		return -1;
	slots = malloc(((size_t)tab->nlive + 1) * sizeof(*slots));
	if (!slots) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < tab->nslots; i++) {
		if (cp_server_at(tab, i))
			slots[n++] = i;
	}
	qsort_r(slots, n, sizeof(*slots), cmp_slots, tab);
	arr = json_array();
	for (end = offset; end < n && end < offset + limit; end++) {
		json_t *e = ctl_server_to_json(&tab->srv[slots[end]].v.s);
		size_t sz = json_dumpb(e, NULL, 0, JSON_COMPACT) + 1;

		if (end > offset && bytes + sz > EXPORT_PAGE_BYTES) {
			json_decref(e);
			break;
		}
		bytes += sz;
		json_array_append_new(arr, e);
	}
	free(slots);
	o = json_pack("{s:s, s:i, s:s, s:I, s:I, s:o}", "format", "tesgate-state", "version", 1,
		      "store", a->db_path, "total", (json_int_t)n, "offset", (json_int_t)offset,
		      "servers", arr);
	json_object_set_new(o, "next_offset", end < n ? json_integer(end) : json_null());
	if (offset == 0) {
		json_t *tenants = json_array();

		for (size_t i = 0; i < tab->ntenants; i++)
			json_array_append_new(tenants, ctl_tenant_to_json(&tab->tenants[i]));
		json_t *docs = documents_json(a->st);

		json_object_set_new(o, "tenants", tenants);
		json_object_update(o, docs);
		json_decref(docs);
	}
	*result = o;
	return 0;
}

/* ---- store import ---- */

static json_t *import_tenants(struct cp_admin *a, const json_t *tenants, char *err, size_t errlen)
{
	json_t *created = json_array(), *same = json_array(), *kept = json_array(), *t;
	size_t i;

	json_array_foreach(tenants, i, t)
	{
		struct tes_tenant nt;
		char cerr[CTL_ERR_MAX];
		const struct tes_tenant *cur;

		if (ctl_tenant_from_json(t, &nt, cerr, sizeof(cerr))) {
			snprintf(err, errlen, "tenants[%zu]: %s", i, cerr);
			goto fail;
		}
		cur = cp_tenant_find(&a->st->tab, nt.id);
		if (cur) {
			json_t *x = ctl_tenant_to_json(cur), *y = ctl_tenant_to_json(&nt);
			bool eq = json_equal(x, y);

			json_decref(x);
			json_decref(y);
			/* The fleet's own is kept: it may have moved on since the
			 * box's was written. */
			json_array_append_new(eq ? same : kept, json_integer(nt.id));
			continue;
		}
		{
			json_t *who = admin_who(a);
			int rc = cp_state_put_tenant(a->st, &nt, who, err, errlen);

			json_decref(who);
			if (rc)
				goto fail;
		}
		json_array_append_new(created, json_integer(nt.id));
	}
	return json_pack("{s:o, s:o, s:o}", "created", created, "same", same, "kept", kept);
fail:
	json_decref(created);
	json_decref(same);
	json_decref(kept);
	return NULL;
}

static int import_policy(struct cp_admin *a, const json_t *p, const char **what, char *err,
			 size_t len)
{
	const char *text = json_string_value(json_object_get(p, "text"));
	const char *name = json_string_value(json_object_get(p, "name"));
	struct tes_policy np;
	struct tes_policy_error perr;
	char msg[512];
	json_t *changes, *who;
	int rc;

	*what = "absent";
	if (!p)
		return 0;
	if (!text) {
		snprintf(err, len, "policy: no \"text\"");
		return -1;
	}
	*what = "same";
	if (a->st->policy_doc.text && strcmp(text, a->st->policy_doc.text) == 0)
		return 0;
	name = name && name[0] ? name : "policy.conf";
	if (tes_policy_parse(text, strlen(text), name, &np, &perr)) {
		tes_policy_error_format(&perr, msg, sizeof(msg));
		snprintf(err, len, "policy: %s (nothing was changed)", msg);
		return -1;
	}
	changes = cp_state_policy_changes(a->st, &np, cp_state_now(a->st));
	who = admin_who(a);
	rc = cp_state_policy_commit(a->st, &np, text, name, json_array_size(changes), who, err,
				    len);
	json_decref(who);
	json_decref(changes);
	if (rc)
		return -1;
	esc_evaluate_all(a->esc, "policy imported");
	*what = "loaded";
	return 0;
}

static int import_catalog(struct cp_admin *a, const json_t *c, const char **what, char *err,
			  size_t len)
{
	const char *b = json_string_value(json_object_get(c, "builds"));
	const char *k = json_string_value(json_object_get(c, "compliance"));
	struct cp_catalog_plan p;
	json_t *who;
	int rc;

	*what = "absent";
	if (!c)
		return 0;
	if (!b || !k) {
		snprintf(err, len, "catalog: needs \"builds\" and \"compliance\"");
		return -1;
	}
	*what = "same";
	if (a->st->builds.text && a->st->compliance.text && strcmp(b, a->st->builds.text) == 0 &&
	    strcmp(k, a->st->compliance.text) == 0)
		return 0;
	if (cp_state_catalog_prepare(a->st, b, json_string_value(json_object_get(c, "builds_name")),
				     k, json_string_value(json_object_get(c, "compliance_name")),
				     cp_state_now(a->st), &p, err, len))
		return -1;
	who = admin_who(a);
	rc = cp_state_catalog_commit(a->st, &p, cp_state_now(a->st), who, err, len);
	json_decref(who);
	cp_state_catalog_discard(&p);
	if (rc)
		return -1;
	esc_catalog_loaded(a->esc);
	*what = "loaded";
	return 0;
}

int cmd_store_import(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		     size_t errlen)
{
	const json_t *tenants = json_object_get(args, "tenants");
	const json_t *servers = json_object_get(args, "servers");
	const char *pol = "absent", *cat = "absent";
	json_t *t = NULL, *errors;
	size_t i, written = 0, unchanged = 0, failed = 0;
	const json_t *s;

	if (!store_shared(a->st->store)) {
		snprintf(err, errlen,
			 "import moves a state into a fleet: this tescontrol runs store = sqlite");
		return -1;
	}
	if (store_fleet_cut_off(a->st->store)) {
		snprintf(err, errlen, "etcd is out of reach (tesctl status): nothing was imported");
		return -1;
	}
	if ((tenants && !json_is_array(tenants)) || (servers && !json_is_array(servers))) {
		snprintf(err, errlen, "\"tenants\" and \"servers\" must be lists");
		return -1;
	}
	if (tenants && !(t = import_tenants(a, tenants, err, errlen)))
		return -1;
	if (import_policy(a, json_object_get(args, "policy"), &pol, err, errlen) ||
	    import_catalog(a, json_object_get(args, "catalog"), &cat, err, errlen)) {
		json_decref(t);
		return -1;
	}
	errors = json_array();
	json_array_foreach(servers, i, s)
	{
		struct tes_server srv;
		char cerr[CTL_ERR_MAX];
		char e[512];
		int rc;

		if (ctl_server_from_json(s, &srv, cerr, sizeof(cerr))) {
			snprintf(e, sizeof(e), "servers[%zu]: %s", i, cerr);
			rc = -1;
		} else {
			rc = cp_state_import_server(a->st, &srv, e, sizeof(e));
		}
		if (rc < 0) {
			failed++;
			if (json_array_size(errors) < 20)
				json_array_append_new(errors, json_string(e));
			continue;
		}
		if (rc)
			written++;
		else
			unchanged++;
	}
	*result = json_pack("{s:o, s:s, s:s, s:{s:I, s:I, s:I, s:o}}", "tenants",
			    t ? t : json_null(), "policy", pol, "catalog", cat, "servers",
			    "written", (json_int_t)written, "unchanged", (json_int_t)unchanged,
			    "failed", (json_int_t)failed, "errors", errors);
	return 0;
}
