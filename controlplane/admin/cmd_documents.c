/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * catalog show, check, load; policy show, load.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controlplane/admin/admin_int.h"

/* ---- catalog ---- */

int cmd_catalog_show(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		     size_t errlen)
{
	json_t *o;

	(void)args;
	(void)err;
	(void)errlen;
	o = json_pack("{s:s, s:I, s:s, s:s, s:s}", "version", catalog_version(a->st->catalog),
		      "builds", (json_int_t)catalog_size(a->st->catalog), "builds_name",
		      a->st->builds.name, "compliance_name", a->st->compliance.name, "compliance",
		      a->st->compliance.text);
	set_time(a, o, "loaded_at", true, a->st->builds.loaded_at);
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

static json_t *rule_json(const struct cp_admin *a, const struct catalog_class *cls)
{
	const struct catalog_rule *r = &cls->rule;
	char text[256];
	json_t *o;

	doc_line(&a->st->compliance, r->line, text, sizeof(text));
	o = json_pack("{s:s, s:i, s:s, s:s}", "kind", catalog_rule_kind_name(r->kind), "line",
		      (int)r->line, "file", a->st->compliance.name, "text", text);
	set_time(a, o, "since", r->since != CATALOG_TIME_MIN, r->since);
	set_time(a, o, "until", r->until != CATALOG_TIME_MAX, r->until);
	json_object_set_new(o, "days",
			    r->kind == CATALOG_RULE_CURRENT ? json_integer(r->days) : json_null());
	json_object_set_new(o, "floor", r->floor ? entry_json(r->floor) : json_null());
	return o;
}

int cmd_catalog_check(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		      size_t len)
{
	struct catalog_class cls;
	struct ex_build b;
	int64_t at, from, until;
	const char *s;
	json_t *o;

	if (arg_str(args, "build", &s, err, len) ||
	    arg_int(args, "at", 0, TES_TIME_MAX, false, cp_state_now(a->st), &at, err, len))
		return -1;
	if (!ex_build_from_str(s, &b)) {
		snprintf(err, len, "\"%s\" is not a build (four numbers, like 15.1.2507.39)", s);
		return -1;
	}
	catalog_classify(a->st->catalog, &b, at, &cls);
	catalog_verdict_span(a->st->catalog, &b, at, &from, &until);
	o = json_pack("{s:o, s:s, s:s, s:b, s:b, s:b}", "build", build_str(&b), "family",
		      ex_family_name(cls.family), "branch", cls.branch, "known",
		      cls.nearest != NULL, "exact", cls.exact, "compliant", cls.compliant);
	json_object_set_new(o, "nearest", cls.nearest ? entry_json(cls.nearest) : json_null());
	json_object_set_new(o, "recommended", recommended_json(&cls));
	json_object_set_new(
		o, "on_premises",
		json_boolean(cls.family != EX_FAMILY_NONE && cls.family != EX_FAMILY_ONLINE));
	json_object_set_new(o, "catalog_version", json_string(catalog_version(a->st->catalog)));
	set_time(a, o, "at", true, at);
	json_object_set_new(o, "rule", rule_json(a, &cls));
	/* When this verdict began and when it ends, so that an operator sees
	 * the date a compliant build stops being one. */
	set_time(a, o, "verdict_since", from != CATALOG_TIME_MIN, from);
	set_time(a, o, "verdict_until", until != CATALOG_TIME_MAX, until);
	*result = o;
	return 0;
}

/* What a catalog load answers, dry or not. */
static json_t *catalog_result(const struct cp_catalog_plan *p, bool dry, const struct catalog *cat)
{
	return json_pack("{s:b, s:s, s:I, s:I, s:O}", "dry_run", dry, "version",
			 catalog_version(cat), "builds", (json_int_t)catalog_size(cat), "count",
			 (json_int_t)p->nplan, "changes", p->changes);
}

/* Parse and plan; then, unless a dry run, the state puts it in force (the
 * texts and every change in one transaction) and escalation takes the
 * catalog's next rule date. */
int cmd_catalog_load(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		     size_t errlen)
{
	const char *builds, *compliance;
	struct cp_catalog_plan p;
	bool dry = arg_bool(args, "dry_run");
	int64_t now = cp_state_now(a->st);
	json_t *who;
	int rc;

	if (arg_str(args, "builds", &builds, err, errlen) ||
	    arg_str(args, "compliance", &compliance, err, errlen))
		return -1;
	if (cp_state_catalog_prepare(
		    a->st, builds, json_string_value(json_object_get(args, "builds_name")),
		    compliance, json_string_value(json_object_get(args, "compliance_name")), now,
		    &p, err, errlen))
		return -1;
	if (dry) {
		*result = catalog_result(&p, true, p.cat);
		cp_state_catalog_discard(&p);
		return 0;
	}
	who = admin_who(a);
	rc = cp_state_catalog_commit(a->st, &p, now, who, err, errlen);
	json_decref(who);
	if (rc == 0) {
		esc_catalog_loaded(a->esc);
		*result = catalog_result(&p, false, a->st->catalog);
	}
	cp_state_catalog_discard(&p);
	return rc;
}

/* ---- policy ---- */

int cmd_policy_show(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		    size_t errlen)
{
	json_t *o;
	json_t *stages = json_array();

	(void)args;
	(void)err;
	(void)errlen;
	for (int i = 0; i < TES_STAGE_COUNT; i++)
		json_array_append_new(
			stages, json_pack("{s:i, s:i, s:i, s:i}", "stage", i + 1, "start_day",
					  (int)a->st->policy.stage[i].start_day, "throttle_min",
					  (int)a->st->policy.stage[i].throttle_min, "block_min",
					  (int)a->st->policy.stage[i].block_min));
	o = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:i, s:i, s:i}", "version",
		      a->st->policy_doc.version, "name", a->st->policy_doc.name, "text",
		      a->st->policy_doc.text, "stages", stages, "scope",
		      tes_scope_name(a->st->policy.scope), "full_block",
		      tes_full_block_name(a->st->policy.full_block), "pause_quota_days",
		      (int)a->st->policy.pause_quota_days, "utc_offset_minutes",
		      (int)a->st->policy.utc_offset_min, "window_offset_minutes",
		      (int)a->st->policy.window_offset_min);
	set_time(a, o, "loaded_at", true, a->st->policy_doc.loaded_at);
	*result = o;
	return 0;
}

int cmd_policy_load(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		    size_t errlen)
{
	struct tes_policy np;
	struct tes_policy_error perr;
	const char *text, *name;
	bool dry = arg_bool(args, "dry_run");
	json_t *changes, *who;
	char msg[512];
	int rc;

	if (arg_str(args, "text", &text, err, errlen))
		return -1;
	name = json_string_value(json_object_get(args, "name"));
	name = name && name[0] ? name : "policy.conf";
	if (tes_policy_parse(text, strlen(text), name, &np, &perr)) {
		tes_policy_error_format(&perr, msg, sizeof(msg));
		snprintf(err, errlen, "%s (nothing was changed)", msg);
		return -1;
	}
	changes = cp_state_policy_changes(a->st, &np, cp_state_now(a->st));
	if (!changes) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (!dry) {
		who = admin_who(a);
		rc = cp_state_policy_commit(a->st, &np, text, name, json_array_size(changes), who,
					    err, errlen);
		json_decref(who);
		if (rc) {
			json_decref(changes);
			return -1;
		}
		esc_evaluate_all(a->esc, "policy change");
	}
	*result = json_pack("{s:b, s:s, s:I, s:o}", "dry_run", dry, "version",
			    dry ? "" : a->st->policy_doc.version, "count",
			    (json_int_t)json_array_size(changes), "changes", changes);
	return 0;
}
