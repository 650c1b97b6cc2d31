/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The state as tesctl shows it: servers, tenants, pauses, catalog entries,
 * and every time twice (ISO 8601 in the policy's offset, and seconds).
 */
#include <stdio.h>

#include "controlplane/admin/admin_int.h"

void set_time(const struct cp_admin *a, json_t *o, const char *key, bool has, int64_t t)
{
	char k[64], iso[40];

	snprintf(k, sizeof(k), "%s_unix", key);
	if (!has) {
		json_object_set_new(o, key, json_null());
		json_object_set_new(o, k, json_null());
		return;
	}
	tes_time_format(t, a->st->policy.utc_offset_min, iso, sizeof(iso));
	json_object_set_new(o, key, json_string(iso));
	json_object_set_new(o, k, json_integer(t));
}

json_t *build_str(const struct ex_build *b)
{
	char buf[48];

	ex_build_format(b, buf, sizeof(buf));
	return json_string(buf);
}

json_t *entry_json(const struct catalog_entry *e)
{
	char date[16];

	if (e->day)
		snprintf(date, sizeof(date), "%04u-%02u-%02u", e->year, e->month, e->day);
	else
		snprintf(date, sizeof(date), "%04u-%02u", e->year, e->month);
	return json_pack("{s:o, s:s, s:s, s:s}", "build", build_str(&e->build), "update", e->update,
			 "branch", e->branch, "date", date);
}

json_t *recommended_json(const struct catalog_class *cls)
{
	json_t *arr = json_array();

	for (unsigned i = 0; i < cls->nrecommended && i < CATALOG_MAX_RECOMMENDED; i++)
		json_array_append_new(arr, entry_json(cls->recommended[i]));
	return arr;
}

/* What only tesctl server show adds. */
static void server_detail(const struct cp_admin *a, json_t *o, const struct cp_server *c,
			  const struct catalog_class *cls, const struct tes_report *r)
{
	const struct tes_server *s = &c->v.s;
	json_t *src = json_array();

	for (unsigned i = 0; i < s->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
		char addr[64];

		if (tes_addr_format(&s->sources[i], addr, sizeof(addr)) >= 0)
			json_array_append_new(src, json_string(addr));
	}
	json_object_set_new(o, "sources", src);
	json_object_set_new(o, "compliant", json_boolean(cls->compliant));
	json_object_set_new(o, "elapsed_seconds", json_integer(r->elapsed));
	json_object_set_new(o, "paused_seconds", json_integer(r->paused_seconds));
	set_time(a, o, "next_change", c->next_change != INT64_MAX, c->next_change);
}

json_t *server_json(const struct cp_admin *a, const struct cp_server *c, int64_t now, bool detail)
{
	const struct tes_server *s = &c->v.s;
	const struct tes_tenant *t = cp_state_server_tenant(a->st, s);
	struct catalog_class cls;
	struct tes_report r;
	json_t *o;

	tes_server_report(s, t, &a->st->policy, now, &r);
	catalog_classify(a->st->catalog, &s->build, now, &cls);
	o = json_pack("{s:I, s:s, s:s, s:o, s:s, s:s, s:s, s:i}", "tenant",
		      (json_int_t)s->tenant_id, "tenant_name", t ? t->name : "", "fqdn", s->fqdn,
		      "build", build_str(&s->build), "family", ex_family_name(s->family), "branch",
		      cls.branch, "status", r.status_text, "stage", (int)r.stage);
	set_time(a, o, "first_detected", true, s->first_detected);
	json_object_set_new(o, "recommended", recommended_json(&cls));
	set_time(a, o, "throttle_enabled", r.has_throttle_date, r.throttle_enabled);
	set_time(a, o, "blocking_enabled", r.has_block_date, r.blocking_enabled);
	json_object_set_new(o, "next_stage", r.has_next ? json_integer(r.next_stage) : json_null());
	json_object_set_new(o, "next_stage_throttle_min",
			    r.has_next ? json_integer(r.next_throttle_min) : json_null());
	json_object_set_new(o, "next_stage_block_min",
			    r.has_next ? json_integer(r.next_block_min) : json_null());
	set_time(a, o, "next_stage_start", r.has_next, r.next_stage_start);
	set_time(a, o, "last_seen", true, s->last_seen);
	set_time(a, o, "resolved_at", s->resolved && !tes_server_compliant_only(s), s->resolved_at);
	set_time(a, o, "stale_since", r.status == TES_STATUS_STALE, r.stale_at);
	set_time(a, o, "forget_at", r.has_forget_at, r.forget_at);
	if (detail)
		server_detail(a, o, c, &cls, &r);
	return o;
}

json_t *pause_json(const struct cp_admin *a, const struct tes_tenant *t, int64_t now)
{
	int year;
	unsigned left = tes_pause_days_left(&t->pause, &a->st->policy, now, &year);
	bool active = tes_pause_active(&t->pause, now);
	json_t *o = json_pack("{s:I, s:b, s:i, s:i, s:i, s:i}", "tenant", (json_int_t)t->id,
			      "active", active, "year", year, "days_used",
			      (int)(t->pause.year == year ? t->pause.days_used : 0), "days_left",
			      (int)left, "quota_days", (int)a->st->policy.pause_quota_days);

	set_time(a, o, "start", t->pause.end > t->pause.start, t->pause.start);
	set_time(a, o, "end", t->pause.end > t->pause.start, t->pause.end);
	return o;
}

json_t *tenant_json(const struct cp_admin *a, const struct tes_tenant *t, int64_t now)
{
	json_t *o = ctl_tenant_to_json(t);

	json_object_set_new(o, "servers",
			    json_integer((json_int_t)cp_state_count_servers(a->st, t->id)));
	json_object_set_new(o, "paused", json_boolean(tes_pause_active(&t->pause, now)));
	json_object_set_new(o, "pause", pause_json(a, t, now));
	return o;
}
