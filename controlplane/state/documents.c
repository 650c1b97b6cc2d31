/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The catalog and the policy in force, and what a new one (or a compliance
 * rule's date) changes for the servers on record.
 */
#include "controlplane/state/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controlplane/log.h"
#include "controlplane/state/internal.h"

/* One server a catalog changes: its state afterwards and what it was. */
struct cp_planned {
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
			 "fqdn", s->fqdn, "build", cp_build_json(&s->build), "old_status",
			 tes_status_name(os), "new_status", tes_status_name(ns), "old_stage",
			 (int)ostage, "new_stage", (int)nstage);
}

/* What cat does to the tracked servers at now: a server whose last build's
 * verdict differs from its state is resolved or re-detected, as a sighting
 * of it would be.  After a load (at_boundary false) every such server
 * changes, as of now.  At a rule's date (at_boundary true) only those whose
 * verdict changed at a date after their own last change, as of that date.
 * Fills plan (room for every live server) and changes (may be NULL);
 * returns the count. */
static size_t plan_catalog(const struct cp_state *st, const struct catalog *cat, int64_t now,
			   bool at_boundary, struct cp_planned *plan, json_t *changes)
{
	size_t nplan = 0;

	for (uint32_t i = 0; i < st->tab.nslots; i++) {
		const struct cp_server *c = cp_server_at((struct cp_tables *)&st->tab, i);
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
		d.cls = cls.compliant ? TES_BUILD_COMPLIANT : TES_BUILD_VULNERABLE;
		d.family = cls.family;
		d.build = c->v.s.build;
		/* a tracked compliant server the new catalog finds vulnerable
		 * is a first detection */
		ch = tes_server_observe(&c->v.s, c->v.s.tenant_id, c->v.s.fqdn,
					cp_state_server_tenant(st, &c->v.s), &st->policy, &d, NULL,
					when, &ns);
		if (ch != TES_CHANGE_RESOLVED && ch != TES_CHANGE_REDETECTED &&
		    ch != TES_CHANGE_FIRST)
			continue;
		ns.last_seen = c->v.s.last_seen; /* nothing was seen */
		cp_state_server_view(st, &c->v.s, now, &ostage, &ost);
		cp_state_server_view(st, &ns, now, &nstage, &nst);
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

/* Every change of a plan in one transaction.  0 or -1 (rolled back).  A
 * shared store gets them after the transaction (fleet_plan). */
static int store_plan(struct cp_state *st, const struct cp_planned *plan, size_t nplan)
{
	if (st->fleet)
		return 0;
	for (size_t i = 0; i < nplan; i++) {
		if (store_put_server(st->store, &plan[i].v))
			return -1;
	}
	return 0;
}

/* With a shared store each change of a plan is merged with what the other
 * appliances wrote (state/fleet.c), one by one: an entry becomes the record
 * the fleet holds, and one the fleet had already (another appliance
 * re-classified it first) is adopted quietly and leaves the plan. */
static void fleet_plan(struct cp_state *st, struct cp_planned *plan, size_t *nplan, int64_t now)
{
	size_t keep = 0;

	for (size_t i = 0; i < *nplan; i++) {
		struct cp_server *c = cp_server_at(&st->tab, plan[i].slot);
		struct store_event e = { .reclassify = true };
		struct store_server out;
		unsigned stage;
		enum tes_status status;
		char err[512];
		int rc;

		if (!c)
			continue;
		e.tenant_id = c->v.s.tenant_id;
		memcpy(e.fqdn, c->v.s.fqdn, sizeof(e.fqdn));
		e.when = plan[i].when;
		e.build = c->v.s.build;
		e.family = (uint8_t)c->v.s.family;
		e.cls = plan[i].change == TES_CHANGE_RESOLVED ? TES_BUILD_COMPLIANT
							      : TES_BUILD_VULNERABLE;
		rc = cp_fleet_write(st, &c->v, &e, &out, err, sizeof(err));
		if (rc < 0) {
			cp_err("re-classifying %s (tenant %u): %s", e.fqdn, e.tenant_id, err);
			continue;
		}
		if (rc == 0) {
			if (out.s.fqdn[0])
				cp_fleet_adopt(st, plan[i].slot, &out, NULL, NULL);
			continue;
		}
		cp_state_server_view(st, &out.s, now, &stage, &status);
		out.stage_logged = (uint8_t)stage;
		out.status_logged = (uint8_t)status;
		plan[keep] = plan[i];
		plan[keep].v = out;
		keep++;
	}
	*nplan = keep;
}

/* After the plan is committed: memory, logs, notifications. */
static void publish_plan(struct cp_state *st, const struct cp_planned *plan, size_t nplan,
			 int64_t now, const char *why)
{
	for (size_t i = 0; i < nplan; i++) {
		struct cp_server *c = cp_server_at(&st->tab, plan[i].slot);
		const char *what = "re-detected", *event = "redetection";
		struct cp_note n = {
			.kind = CP_NOTE_SERVER,
			.now = now,
			.slot = plan[i].slot,
			.reschedule = true,
		};

		if (plan[i].change == TES_CHANGE_RESOLVED) {
			what = "resolved";
			event = "resolved";
			st->counts.resolved++;
		} else if (plan[i].change == TES_CHANGE_FIRST) {
			/* a tracked compliant server the catalog now finds vulnerable */
			what = "first detection";
			event = "first_detection";
			st->counts.first++;
		} else {
			st->counts.redetected++;
		}
		cp_info("%s: tenant %u server %s (%s): %s stage %u -> %s stage %u", why,
			plan[i].v.s.tenant_id, plan[i].v.s.fqdn, what,
			tes_status_name(plan[i].old_status), plan[i].old_stage,
			tes_status_name(plan[i].v.status_logged), plan[i].v.stage_logged);
		c->v = plan[i].v;
		c->dirty = false;
		n.server = &c->v.s;
		n.stage = c->v.stage_logged;
		n.status = (enum tes_status)c->v.status_logged;
		n.event = event;
		n.fields = json_pack("{s:I, s:s, s:i}", "detected_at", (json_int_t)plan[i].when,
				     "reason", why, "rule_line", (int)plan[i].rule_line);
		cp_state_emit(st, &n);
		json_decref(n.fields);
	}
}

int cp_state_catalog_dates(struct cp_state *st, int64_t now, const char *why)
{
	struct cp_planned *plan = calloc((size_t)st->tab.nlive + 1, sizeof(*plan));
	size_t nplan;

	if (!plan) {
		cp_err("compliance rule dates: out of memory; retrying in 10 s");
		return -1;
	}
	nplan = plan_catalog(st, st->catalog, now, true, plan, NULL);
	if (nplan) {
		if (store_begin(st->store) || store_plan(st, plan, nplan) ||
		    store_commit(st->store)) {
			st->counts.store_errors++;
			cp_err("storing what the compliance rule dates changed (%zu servers): %s;"
			       " retrying in 10 s",
			       nplan, store_errmsg(st->store));
			store_rollback(st->store);
			free(plan);
			return -1;
		}
		if (st->fleet)
			fleet_plan(st, plan, &nplan, now);
		publish_plan(st, plan, nplan, now, why ? why : "a compliance rule's date passed");
	}
	free(plan);
	return 0;
}

/* ---- a catalog from an operator ---- */

/* A text document as the store keeps it. */
static int make_doc(struct store_doc *d, const char *text, const char *name, const char *version,
		    int64_t now)
{
	memset(d, 0, sizeof(*d));
	d->text = strdup(text);
	if (!d->text)
		return -1;
	d->len = strlen(text);
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->version, sizeof(d->version), "%s", version);
	d->loaded_at = now;
	return 0;
}

/* Gateways receive the texts in one frame: what cannot be sent is refused
 * before anything changes. */
static int fits_a_frame(const struct catalog *cat, const char *builds, const char *bname,
			const char *compliance, const char *cname, char *err, size_t errlen)
{
	json_t *probe = ctl_catalog_msg(builds, bname, compliance, cname, catalog_version(cat));
	char e[CTL_ERR_MAX];
	uint8_t *f;
	size_t n;

	if (ctl_frame_encode(probe, &f, &n, e, sizeof(e))) {
		json_decref(probe);
		snprintf(err, errlen, "catalog too large for the control protocol: %s", e);
		return -1;
	}
	free(f);
	json_decref(probe);
	return 0;
}

void cp_state_catalog_discard(struct cp_catalog_plan *p)
{
	catalog_free(p->cat);
	store_doc_free(&p->builds);
	store_doc_free(&p->compliance);
	free(p->plan);
	json_decref(p->changes);
	memset(p, 0, sizeof(*p));
}

int cp_state_catalog_prepare(struct cp_state *st, const char *builds, const char *bname,
			     const char *compliance, const char *cname, int64_t now,
			     struct cp_catalog_plan *p, char *err, size_t errlen)
{
	struct catalog_error cerr;

	memset(p, 0, sizeof(*p));
	bname = bname && bname[0] ? bname : "exchange-builds.csv";
	cname = cname && cname[0] ? cname : "compliance.conf";
	p->cat = catalog_parse(builds, strlen(builds), bname, compliance, strlen(compliance), cname,
			       &cerr);
	if (!p->cat) {
		snprintf(err, errlen, "%s:%u: %s (nothing was changed)", cerr.file, cerr.line,
			 cerr.msg);
		return -1;
	}
	if (fits_a_frame(p->cat, builds, bname, compliance, cname, err, errlen)) {
		cp_state_catalog_discard(p);
		return -1;
	}
	p->plan = calloc((size_t)st->tab.nlive + 1, sizeof(*p->plan));
	p->changes = json_array();
	if (!p->plan || !p->changes ||
	    make_doc(&p->builds, builds, bname, catalog_version(p->cat), now) ||
	    make_doc(&p->compliance, compliance, cname, catalog_version(p->cat), now)) {
		cp_state_catalog_discard(p);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->nplan = plan_catalog(st, p->cat, now, false, p->plan, p->changes);
	return 0;
}

static json_t *catalog_summary(const struct catalog *cat, const struct store_doc *b,
			       const struct store_doc *c)
{
	return json_pack("{s:s, s:s, s:s, s:I}", "version", catalog_version(cat), "builds_name",
			 b->name, "compliance_name", c->name, "builds",
			 (json_int_t)catalog_size(cat));
}

int cp_state_catalog_commit(struct cp_state *st, struct cp_catalog_plan *p, int64_t now,
			    const json_t *who, char *err, size_t errlen)
{
	struct cp_note n = { .kind = CP_NOTE_CATALOG, .now = now, .slot = CP_NO_SLOT };
	json_t *before;

	/* The catalog and every status it changes, in one transaction. */
	if (store_begin(st->store) || store_put_doc(st->store, STORE_DOC_BUILDS, &p->builds) ||
	    store_put_doc(st->store, STORE_DOC_COMPLIANCE, &p->compliance) ||
	    store_plan(st, p->plan, p->nplan) || store_commit(st->store)) {
		snprintf(err, errlen, "could not store the catalog: %s (nothing was changed)",
			 store_errmsg(st->store));
		store_rollback(st->store);
		return -1;
	}
	before = catalog_summary(st->catalog, &st->builds, &st->compliance);
	catalog_free(st->catalog);
	store_doc_free(&st->builds);
	store_doc_free(&st->compliance);
	st->catalog = p->cat;
	st->builds = p->builds;
	st->compliance = p->compliance;
	p->cat = NULL;
	memset(&p->builds, 0, sizeof(p->builds));
	memset(&p->compliance, 0, sizeof(p->compliance));
	cp_info("catalog loaded by the operator: version %s (%zu builds) from %s and %s; %zu"
		" servers change status",
		catalog_version(st->catalog), catalog_size(st->catalog), st->builds.name,
		st->compliance.name, p->nplan);
	n.event = "catalog_load";
	n.fields = cp_audit_fields(who, before,
				   catalog_summary(st->catalog, &st->builds, &st->compliance),
				   json_pack("{s:I}", "servers_changed", (json_int_t)p->nplan));
	cp_state_emit(st, &n);
	json_decref(n.fields);
	if (st->fleet)
		fleet_plan(st, p->plan, &p->nplan, now);
	publish_plan(st, p->plan, p->nplan, now, "catalog load");
	return 0;
}

void cp_state_catalog_adopt(struct cp_state *st, const struct store_doc *b,
			    const struct store_doc *c, const char *by)
{
	struct cp_note n = { .kind = CP_NOTE_CATALOG, .slot = CP_NO_SLOT, .reschedule = true };
	struct catalog_error cerr;
	struct catalog *cat;
	struct store_doc nb, nc;

	if (st->builds.text && st->compliance.text && b->len == st->builds.len &&
	    c->len == st->compliance.len && memcmp(b->text, st->builds.text, b->len) == 0 &&
	    memcmp(c->text, st->compliance.text, c->len) == 0)
		return; /* what is in force already */
	cat = catalog_parse(b->text, b->len, b->name, c->text, c->len, c->name, &cerr);
	if (!cat) {
		st->counts.store_errors++;
		cp_err("fleet: the catalog %s loaded by %s does not load here: %s:%u: %s; keeping"
		       " version %s",
		       b->version, by && by[0] ? by : "another appliance", cerr.file, cerr.line,
		       cerr.msg, catalog_version(st->catalog));
		return;
	}
	nb = *b;
	nc = *c;
	nb.text = strdup(b->text ? b->text : "");
	nc.text = strdup(c->text ? c->text : "");
	if (!nb.text || !nc.text) {
		free(nb.text);
		free(nc.text);
		catalog_free(cat);
		cp_err("fleet: out of memory adopting a catalog");
		return;
	}
	catalog_free(st->catalog);
	store_doc_free(&st->builds);
	store_doc_free(&st->compliance);
	st->catalog = cat;
	st->builds = nb;
	st->compliance = nc;
	cp_info("fleet: catalog version %s (%zu builds) loaded by %s is in force",
		catalog_version(cat), catalog_size(cat), by && by[0] ? by : "another appliance");
	n.now = cp_state_now(st);
	cp_state_emit(st, &n);
}

/* ---- a policy from an operator ---- */

json_t *cp_state_policy_changes(const struct cp_state *st, const struct tes_policy *np, int64_t now)
{
	json_t *changes = json_array();

	for (uint32_t i = 0; changes && i < st->tab.nslots; i++) {
		const struct cp_server *c = cp_server_at((struct cp_tables *)&st->tab, i);
		const struct tes_tenant *t;
		unsigned os, ns;
		enum tes_status ost, nst;

		if (!c)
			continue;
		t = cp_state_server_tenant(st, &c->v.s);
		os = tes_server_stage(&c->v.s, t, &st->policy, now);
		ost = tes_server_status(&c->v.s, t, &st->policy, now);
		ns = tes_server_stage(&c->v.s, t, np, now);
		nst = tes_server_status(&c->v.s, t, np, now);
		if (os != ns || ost != nst)
			json_array_append_new(changes, change_json(&c->v.s, ost, os, nst, ns));
	}
	return changes;
}

int cp_state_policy_commit(struct cp_state *st, const struct tes_policy *np, const char *text,
			   const char *name, size_t servers_changed, const json_t *who, char *err,
			   size_t len)
{
	struct cp_note n = { .kind = CP_NOTE_POLICY, .slot = CP_NO_SLOT, .event = "policy_load" };
	struct store_doc d;
	char version[64];

	n.now = cp_state_now(st);
	cp_doc_version(text, strlen(text), "", 0, version, sizeof(version));
	if (make_doc(&d, text, name, version, n.now)) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	if (store_put_doc(st->store, STORE_DOC_POLICY, &d)) {
		snprintf(err, len, "could not store the policy: %s (nothing was changed)",
			 store_errmsg(st->store));
		store_doc_free(&d);
		return -1;
	}
	n.fields =
		cp_audit_fields(who,
				json_pack("{s:s, s:s}", "version", st->policy_doc.version, "name",
					  st->policy_doc.name),
				json_pack("{s:s, s:s}", "version", d.version, "name", d.name),
				json_pack("{s:I}", "servers_changed", (json_int_t)servers_changed));
	store_doc_free(&st->policy_doc);
	st->policy_doc = d;
	st->policy = *np;
	cp_state_emit(st, &n);
	json_decref(n.fields);
	cp_info("policy loaded by the operator: version %s from %s; %zu servers change stage or"
		" status",
		d.version, name, servers_changed);
	return 0;
}

void cp_state_policy_adopt(struct cp_state *st, const struct store_doc *d, const char *by)
{
	struct cp_note n = { .kind = CP_NOTE_POLICY, .slot = CP_NO_SLOT, .reschedule = true };
	struct tes_policy_error perr;
	struct tes_policy np;
	struct store_doc nd;
	char msg[512];

	if (st->policy_doc.text && d->len == st->policy_doc.len &&
	    memcmp(d->text, st->policy_doc.text, d->len) == 0)
		return;
	if (tes_policy_parse(d->text, d->len, d->name, &np, &perr)) {
		tes_policy_error_format(&perr, msg, sizeof(msg));
		st->counts.store_errors++;
		cp_err("fleet: the policy %s loaded by %s does not load here: %s; keeping version"
		       " %s",
		       d->version, by && by[0] ? by : "another appliance", msg,
		       st->policy_doc.version);
		return;
	}
	nd = *d;
	nd.text = strdup(d->text ? d->text : "");
	if (!nd.text) {
		cp_err("fleet: out of memory adopting a policy");
		return;
	}
	store_doc_free(&st->policy_doc);
	st->policy_doc = nd;
	st->policy = np;
	cp_info("fleet: policy version %s loaded by %s is in force", nd.version,
		by && by[0] ? by : "another appliance");
	n.now = cp_state_now(st);
	cp_state_emit(st, &n);
}
