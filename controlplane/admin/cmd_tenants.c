/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tenant add, set, delete, list, show; pause add, show, resume.
 */
#include <stdio.h>
#include <string.h>

#include "controlplane/admin/admin_int.h"
#include "controlplane/log.h"

/* The name of a tenant from a request. */
static int name_arg(const json_t *args, struct tes_tenant *t, char *err, size_t errlen)
{
	const char *name;

	if (arg_str(args, "name", &name, err, errlen))
		return -1;
	if (!name[0] || strlen(name) >= sizeof(t->name)) {
		snprintf(err, errlen, "the name must have 1 to %zu characters",
			 sizeof(t->name) - 1);
		return -1;
	}
	for (const char *p = name; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			snprintf(err, errlen, "the name holds a control character");
			return -1;
		}
	}
	snprintf(t->name, sizeof(t->name), "%s", name);
	return 0;
}

/* The connectors of a tenant from a request. */
static int connectors_arg(const json_t *conns, struct tes_tenant *t, char *err, size_t errlen)
{
	struct tes_connector cs[TES_TENANT_CONNECTORS_MAX];
	char cerr[CTL_ERR_MAX];
	const json_t *c;
	size_t i;

	if (!json_is_array(conns) || json_array_size(conns) > TES_TENANT_CONNECTORS_MAX) {
		snprintf(err, errlen, "\"connectors\" must be a list of at most %d connectors",
			 TES_TENANT_CONNECTORS_MAX);
		return -1;
	}
	memset(cs, 0, sizeof(cs));
	json_array_foreach(conns, i, c)
	{
		if (ctl_connector_from_json(c, &cs[i], cerr, sizeof(cerr))) {
			snprintf(err, errlen, "connector %zu: %s", i + 1, cerr);
			return -1;
		}
	}
	memcpy(t->connectors, cs, sizeof(cs));
	t->nconnectors = (unsigned)json_array_size(conns);
	return 0;
}

/* The name and connectors of a tenant from a request: both for add, either
 * for set (what is absent stays as in t). */
static int tenant_fields(const json_t *args, bool need_name, struct tes_tenant *t, char *err,
			 size_t len)
{
	const json_t *conns = json_object_get(args, "connectors");

	if ((json_object_get(args, "name") || need_name) && name_arg(args, t, err, len))
		return -1;
	if (conns && connectors_arg(conns, t, err, len))
		return -1;
	return 0;
}

/* The state stores it, keeps it and tells the gateways and the XDP drop
 * list (connectors decide which sources it may drop). */
static int put_tenant(struct cp_admin *a, const struct tes_tenant *t, char *err, size_t errlen)
{
	json_t *who = admin_who(a);
	int rc = cp_state_put_tenant(a->st, t, who, err, errlen);

	json_decref(who);
	return rc;
}

int cmd_tenant_add(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		   size_t errlen)
{
	struct tes_tenant t;
	int64_t id;

	memset(&t, 0, sizeof(t));
	if (arg_int(args, "id", 1, UINT32_MAX, true, 0, &id, err, errlen))
		return -1;
	if (cp_tenant_find(&a->st->tab, (uint32_t)id)) {
		snprintf(err, errlen, "tenant %lld already exists (tesctl tenant set changes it)",
			 (long long)id);
		return -1;
	}
	t.id = (uint32_t)id;
	if (tenant_fields(args, true, &t, err, errlen) || put_tenant(a, &t, err, errlen))
		return -1;
	*result = tenant_json(a, &t, cp_state_now(a->st));
	return 0;
}

int cmd_tenant_set(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		   size_t errlen)
{
	struct tes_tenant *cur = arg_tenant(a, args, "id", err, errlen);
	struct tes_tenant t;
	json_t *before, *after;
	bool same;

	if (!cur)
		return -1;
	if (!json_object_get(args, "name") && !json_object_get(args, "connectors")) {
		snprintf(err, errlen, "nothing to change: give a name, connectors, or both");
		return -1;
	}
	t = *cur;
	if (tenant_fields(args, false, &t, err, errlen))
		return -1;
	before = ctl_tenant_to_json(cur);
	after = ctl_tenant_to_json(&t);
	same = json_equal(before, after);
	json_decref(before);
	json_decref(after);
	if (same) {
		/* Nothing changed, nothing written: the trail records changes. */
		*result = tenant_json(a, cur, cp_state_now(a->st));
		json_object_set_new(*result, "changed", json_false());
		return 0;
	}
	if (put_tenant(a, &t, err, errlen))
		return -1;
	cur = cp_tenant_find(&a->st->tab, t.id);
	*result = tenant_json(a, cur ? cur : &t, cp_state_now(a->st));
	json_object_set_new(*result, "changed", json_true());
	return 0;
}

int cmd_tenant_delete(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		      size_t len)
{
	struct tes_tenant *cur = arg_tenant(a, args, "id", err, len);
	struct tes_tenant t;
	json_t *who;
	size_t n;
	int rc;

	if (!cur)
		return -1;
	t = *cur;
	n = cp_state_count_servers(a->st, t.id);
	/* A server's record is its first detection and stage clock: durable
	 * state nobody can recreate, so forgetting it must be asked for. */
	if (n && !arg_bool(args, "force")) {
		snprintf(err, len,
			 "tenant %u has %zu server%s on record; deleting the tenant forgets them"
			 " (first detections, stage clocks); to do so: tesctl tenant delete %u"
			 " --force",
			 t.id, n, n == 1 ? "" : "s", t.id);
		return -1;
	}
	who = admin_who(a);
	rc = cp_state_delete_tenant(a->st, t.id, who, &n, err, len);
	json_decref(who);
	if (rc)
		return -1;
	*result = json_pack("{s:I, s:s, s:b, s:I}", "id", (json_int_t)t.id, "name", t.name,
			    "deleted", 1, "servers_deleted", (json_int_t)n);
	return 0;
}

int cmd_tenant_list(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		    size_t errlen)
{
	json_t *arr = json_array();
	int64_t now = cp_state_now(a->st);

	(void)args;
	(void)err;
	(void)errlen;
	for (size_t i = 0; i < a->st->tab.ntenants; i++)
		json_array_append_new(arr, tenant_json(a, &a->st->tab.tenants[i], now));
	*result = json_pack("{s:o}", "tenants", arr);
	return 0;
}

int cmd_tenant_show(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		    size_t errlen)
{
	struct tes_tenant *t = arg_tenant(a, args, "id", err, errlen);

	if (!t)
		return -1;
	*result = tenant_json(a, t, cp_state_now(a->st));
	return 0;
}

/* A pause asked for, decided from the tenant as the state holds it (with
 * a shared store, again from another appliance's pause if one came
 * first: the quota is checked against what is really used). */
struct pause_ask {
	bool add;
	unsigned days;
	int64_t now;
	const struct tes_policy *pol;
	unsigned left;
};

static int make_pause(const struct tes_tenant *t, struct tes_pause *out, void *ctx, char *err,
		      size_t errlen)
{
	struct pause_ask *q = ctx;
	int year;

	if (!q->add) {
		if (!tes_pause_resume(&t->pause, q->now, out)) {
			snprintf(err, errlen, "tenant %u is not paused", t->id);
			return -1;
		}
		return 0;
	}
	switch (tes_pause_add(&t->pause, q->pol, q->now, q->days, out, &q->left)) {
	case TES_PAUSE_OK:
		return 0;
	case TES_PAUSE_EDAYS:
		snprintf(err, errlen, "a pause must be at least one day");
		return -1;
	case TES_PAUSE_EQUOTA:
		tes_pause_days_left(&t->pause, q->pol, q->now, &year);
		snprintf(err, errlen,
			 "pause quota exceeded: tenant %u has %u of its %u pause days left in %d,"
			 " and %u were asked for",
			 t->id, q->left, q->pol->pause_quota_days, year, q->days);
		return -1;
	}
	return -1;
}

/* The state stores the tenant's new pause and tells the gateways (the event
 * log line first, so that it reads cause then effect); escalation then
 * looks at its servers (their status changes now, and their stage clocks
 * stop or go). */
static int put_pause(struct cp_admin *a, uint32_t id, struct pause_ask *q, const char *why,
		     const char *event, char *err, size_t errlen)
{
	json_t *who = admin_who(a);
	int rc = cp_state_set_pause_with(a->st, id, make_pause, q, event, who, err, errlen);

	json_decref(who);
	if (rc)
		return -1;
	esc_evaluate_tenant(a->esc, id, why);
	return 0;
}

int cmd_pause_add(struct cp_admin *a, const json_t *args, json_t **result, char *err, size_t errlen)
{
	struct tes_tenant *t = arg_tenant(a, args, "tenant", err, errlen);
	struct pause_ask q = { .add = true, .pol = &a->st->policy };
	int64_t days, now = cp_state_now(a->st);
	char end[40];
	uint32_t id;

	if (!t || arg_int(args, "days", 1, 366, true, 0, &days, err, errlen))
		return -1;
	id = t->id;
	q.days = (unsigned)days;
	q.now = now;
	if (put_pause(a, id, &q, "pause", "pause", err, errlen))
		return -1;
	t = cp_tenant_find(&a->st->tab, id);
	if (!t) {
		snprintf(err, errlen, "the tenant was deleted meanwhile");
		return -1;
	}
	tes_time_format(t->pause.end, a->st->policy.utc_offset_min, end, sizeof(end));
	cp_info("pause: tenant %u (%s) paused for %lld more days, until %s; %u days left in %u",
		t->id, t->name, (long long)days, end, q.left, t->pause.year);
	*result = pause_json(a, t, now);
	return 0;
}

int cmd_pause_show(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		   size_t errlen)
{
	struct tes_tenant *t = arg_tenant(a, args, "tenant", err, errlen);

	if (!t)
		return -1;
	*result = pause_json(a, t, cp_state_now(a->st));
	return 0;
}

int cmd_pause_resume(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		     size_t errlen)
{
	struct tes_tenant *t = arg_tenant(a, args, "tenant", err, errlen);
	struct pause_ask q = { .add = false, .pol = &a->st->policy };
	int64_t now = cp_state_now(a->st);
	uint32_t id;

	if (!t)
		return -1;
	id = t->id;
	q.now = now;
	if (put_pause(a, id, &q, "pause ended by the operator", "pause_resumed", err, errlen))
		return -1;
	t = cp_tenant_find(&a->st->tab, id);
	if (!t) {
		snprintf(err, errlen, "the tenant was deleted meanwhile");
		return -1;
	}
	cp_info("pause: tenant %u (%s) resumed by the operator (the days granted stay used)", t->id,
		t->name);
	*result = pause_json(a, t, now);
	return 0;
}
