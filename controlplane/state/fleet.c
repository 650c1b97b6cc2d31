/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The fleet: the state over a store several appliances share (state.h,
 * docs/fleet.md).
 *
 * The store holds one record per server; every appliance keeps a copy in
 * memory.  A change made here is an event (a sighting, or a catalog's
 * re-classification) merged with the store's record by cp_fleet_apply and
 * written with a compare-and-swap on the record's revision; when another
 * appliance wrote first, the event is merged again with what it wrote.
 * The merge is what makes the order of arrival not matter:
 *
 *   - a vulnerable sighting older than the current clock's start, but not
 *     older than the resolution that clock followed (the record's floor),
 *     moves the start back: the earliest first detection wins, whoever
 *     wrote first and whenever the sighting arrives (a cut-off journal,
 *     two appliances in the same millisecond);
 *   - a vulnerable sighting older than the resolution changes nothing: a
 *     resolution is not undone by an older sighting; a newer one starts a
 *     new clock, with the resolution as its floor;
 *   - a compliant sighting resolves only a clock that started before it,
 *     and the earliest resolution of a clock wins;
 *   - seen times are the latest, sources the most recently seen four.
 *
 * Seen times only are written coalesced (cp_state_flush, every
 * flush_seconds), and only once they moved by the seen granularity, so the
 * writes grow with the servers, not with the messages.  While the store is
 * out of reach, events go to its local journal and are merged the same way
 * when it is back.
 */
#include "controlplane/state/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "controlplane/log.h"
#include "controlplane/state/internal.h"
#include "base/text.h"

struct cp_fleet {
	unsigned flush_seconds;
	int64_t flushed_at; /* monotonic seconds */
	/* While cut off: when a sighting of each server (slot) and class was
	 * last journaled, [2 * slot + (vulnerable)]. */
	int64_t *jr;
	size_t njr;
	/* A full re-read: which slots it delivered. */
	bool resyncing;
	uint8_t *mark;
	size_t nmark;
	bool was_cut_off;
	/* The versions this appliance last wrote of itself. */
	char catalog[64], policy[64];
};

static int64_t mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

int cp_state_fleet_init(struct cp_state *st, unsigned flush_seconds)
{
	st->fleet = calloc(1, sizeof(*st->fleet));
	if (!st->fleet)
		return -1;
	st->fleet->flush_seconds = flush_seconds ? flush_seconds : 60;
	st->fleet->flushed_at = mono_now();
	return 0;
}

void cp_fleet_free(struct cp_state *st)
{
	if (!st->fleet)
		return;
	free(st->fleet->jr);
	free(st->fleet->mark);
	free(st->fleet);
	st->fleet = NULL;
}

/* ---- the merge (pure) ---- */

/* decide.c's rule for a source seen at seen, for sightings in any order:
 * an address known keeps its latest time; a fifth replaces the least
 * recently seen, if this one is more recent. */
static void merge_source(struct tes_server *s, const struct tes_addr *a, int64_t seen)
{
	unsigned n = s->nsources < TES_SERVER_SOURCES_MAX ? s->nsources : TES_SERVER_SOURCES_MAX;
	unsigned old = 0;

	if (!a || a->family == TES_ADDR_NONE)
		return;
	for (unsigned i = 0; i < n; i++) {
		if (tes_addr_equal(&s->sources[i], a)) {
			if (seen > s->source_seen[i])
				s->source_seen[i] = seen;
			return;
		}
	}
	if (n == TES_SERVER_SOURCES_MAX) {
		for (unsigned i = 1; i < n; i++) {
			if (s->source_seen[i] < s->source_seen[old])
				old = i;
		}
		if (seen <= s->source_seen[old])
			return;
		memmove(&s->sources[old], &s->sources[old + 1],
			(n - 1 - old) * sizeof(s->sources[0]));
		memmove(&s->source_seen[old], &s->source_seen[old + 1],
			(n - 1 - old) * sizeof(s->source_seen[0]));
		n--;
	}
	s->sources[n] = *a;
	s->source_seen[n] = seen;
	s->nsources = (uint8_t)(n + 1);
}

/* The seen part of a sighting: the latest time, the build of the latest
 * sighting, the source. */
static void merge_seen_event(struct tes_server *s, const struct store_event *e)
{
	if (e->reclassify)
		return;
	if (e->when >= s->last_seen) {
		s->build = e->build;
		s->family = (enum ex_family)e->family;
		s->last_seen = e->when;
	}
	merge_source(s, &e->source, e->when);
}

static void start_clock(struct store_server *v, const struct tes_tenant *t, int64_t at)
{
	v->s.first_detected = at;
	v->s.resolved = false;
	v->s.resolved_at = 0;
	v->s.stale_seconds = 0;
	v->s.pause_base = t ? tes_pause_clock(&t->pause, at) : 0;
}

/* An earlier start of the current clock (or of the resolved one). */
static void move_start(struct store_server *v, const struct tes_tenant *t, int64_t at)
{
	v->s.first_detected = at;
	v->s.pause_base = t ? tes_pause_clock(&t->pause, at) : 0;
}

static bool vulnerable_on(const struct store_server *cur, const struct store_event *e,
			  const struct tes_tenant *t, const struct tes_policy *p,
			  struct store_server *out)
{
	struct tes_server *s = &out->s;
	int64_t at = e->when;

	if (!s->resolved) {
		if (at < s->first_detected) {
			/* Earlier than the clock's start: the same episode (the
			 * earliest detection wins) unless a resolution lies
			 * between. */
			merge_seen_event(s, e);
			if (at < out->floor || e->reclassify)
				return false;
			move_start(out, t, at);
			return true;
		}
		if (!e->reclassify && at >= cur->s.last_seen) {
			/* In order: the model ends a stale period. */
			struct tes_detection d = { .cls = TES_BUILD_VULNERABLE,
						   .family = (enum ex_family)e->family,
						   .build = e->build };
			struct tes_server o;

			tes_server_observe(&cur->s, cur->s.tenant_id, cur->s.fqdn, t, p, &d,
					   e->source.family != TES_ADDR_NONE ? &e->source : NULL,
					   at, &o);
			s->stale_seconds = o.stale_seconds;
		}
		merge_seen_event(s, e);
		return s->stale_seconds != cur->s.stale_seconds;
	}
	if (at < s->resolved_at) {
		merge_seen_event(s, e);
		if (e->reclassify)
			return false;
		if (tes_server_compliant_only(&cur->s)) {
			/* Vulnerable before it was first seen compliant: detected
			 * then, resolved by that compliant sighting. */
			move_start(out, t, at);
			return true;
		}
		if (at < s->first_detected && at >= out->floor) {
			move_start(out, t, at);
			return true;
		}
		return false; /* the resolution stands */
	}
	/* After the resolution: a new clock, with the resolution as its floor. */
	out->floor = cur->s.resolved_at;
	start_clock(out, t, at);
	merge_seen_event(s, e);
	return true;
}

static bool compliant_on(const struct store_server *cur, const struct store_event *e,
			 struct store_server *out)
{
	struct tes_server *s = &out->s;
	int64_t at = e->when;

	(void)cur;
	merge_seen_event(s, e);
	if (!s->resolved) {
		if (at < s->first_detected) {
			/* Compliant before this clock started: it ends an episode
			 * before this one. */
			if (at > out->floor && !e->reclassify) {
				out->floor = at;
				return true;
			}
			return false;
		}
		s->resolved = true;
		s->resolved_at = at;
		return true;
	}
	if (at < s->resolved_at && (tes_server_compliant_only(s) || at >= s->first_detected)) {
		s->resolved_at = at; /* the earliest resolution wins */
		return true;
	}
	return false;
}

bool cp_fleet_apply(const struct store_server *cur, const struct store_event *e,
		    const struct tes_tenant *t, const struct tes_policy *p,
		    struct store_server *out)
{
	if (!cur) {
		struct tes_detection d = { .cls = (enum tes_build_class)e->cls,
					   .family = (enum ex_family)e->family,
					   .build = e->build };
		enum tes_change ch;

		memset(out, 0, sizeof(*out));
		if (e->reclassify)
			return false; /* nothing to re-classify */
		ch = tes_server_observe(NULL, e->tenant_id, e->fqdn, t, p, &d,
					e->source.family != TES_ADDR_NONE ? &e->source : NULL,
					e->when, &out->s);
		out->stage_logged = 1;
		return ch == TES_CHANGE_FIRST || ch == TES_CHANGE_TRACKED;
	}
	*out = *cur;
	if (e->cls == TES_BUILD_VULNERABLE)
		return vulnerable_on(cur, e, t, p, out);
	if (e->cls == TES_BUILD_COMPLIANT)
		return compliant_on(cur, e, out);
	return false;
}

static bool same_sources(const struct tes_server *a, const struct tes_server *b)
{
	if (a->nsources != b->nsources)
		return false;
	for (unsigned i = 0; i < a->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
		if (!tes_addr_equal(&a->sources[i], &b->sources[i]) ||
		    a->source_seen[i] != b->source_seen[i])
			return false;
	}
	return true;
}

bool cp_fleet_merge_seen(const struct store_server *cur, const struct store_server *mine,
			 struct store_server *out)
{
	struct tes_server *s = &out->s;

	*out = *cur;
	if (mine->s.last_seen > s->last_seen) {
		s->last_seen = mine->s.last_seen;
		s->build = mine->s.build;
		s->family = mine->s.family;
	}
	for (unsigned i = 0; i < mine->s.nsources && i < TES_SERVER_SOURCES_MAX; i++)
		merge_source(s, &mine->s.sources[i], mine->s.source_seen[i]);
	return s->last_seen != cur->s.last_seen || ex_build_cmp(&s->build, &cur->s.build) != 0 ||
	       !same_sources(s, &cur->s);
}

/* What of a record gateways and reports see, besides seen times. */
static bool state_differs(const struct tes_server *a, const struct tes_server *b)
{
	return a->first_detected != b->first_detected || a->resolved != b->resolved ||
	       a->resolved_at != b->resolved_at || a->pause_base != b->pause_base ||
	       a->stale_seconds != b->stale_seconds;
}

/* ---- writing ---- */

static const struct tes_tenant *tenant_of(struct cp_state *st, uint32_t id)
{
	return id ? cp_tenant_find(&st->tab, id) : NULL;
}

int cp_fleet_write(struct cp_state *st, const struct store_server *base,
		   const struct store_event *e, struct store_server *out, char *err, size_t errlen)
{
	const struct tes_tenant *t = tenant_of(st, e->tenant_id);
	struct store_server cur, next;
	bool found = base && base->rev != 0;
	int rc;

	if (found)
		cur = *base;
	/* Each lost race brings the winner's record; a bounded number of
	 * rounds, since every round is a change someone else made. */
	for (int round = 0; round < 16; round++) {
		if (store_fleet_cut_off(st->store))
			break;
		if (!cp_fleet_apply(found ? &cur : NULL, e, t, &st->policy, out)) {
			if (!found) {
				/* re-classifying a server the store no longer has */
				memset(out, 0, sizeof(*out));
				return 0;
			}
			/* Nothing to write at once; seen times wait for the
			 * coalesced write. */
			*out = cur;
			return 0;
		}
		rc = st->store->fleet->cas_server(st->store, out, found ? cur.rev : 0, &next,
						  &found);
		if (rc == 1)
			return 1;
		if (rc < 0) {
			if (store_fleet_cut_off(st->store))
				break;
			st->counts.store_errors++;
			snprintf(err, errlen, "%s", store_errmsg(st->store));
			return -1;
		}
		cur = next;
	}
	if (!store_fleet_cut_off(st->store)) {
		snprintf(err, errlen,
			 "server %s changed on other appliances 16 times while writing", e->fqdn);
		return -1;
	}
	/* Out of reach: journal it, and go on with this appliance's copy. */
	if (st->store->fleet->journal_add(st->store, e)) {
		st->counts.store_errors++;
		snprintf(err, errlen, "etcd out of reach and the journal failed: %s",
			 store_errmsg(st->store));
		return -1;
	}
	st->counts.fleet_journaled++;
	if (!cp_fleet_apply(base && base->s.fqdn[0] ? base : NULL, e, t, &st->policy, out) && base)
		*out = *base;
	if (base)
		out->rev = base->rev;
	return 2;
}

bool cp_fleet_journal_wanted(struct cp_state *st, uint32_t slot, unsigned cls, int64_t when)
{
	struct cp_fleet *f = st->fleet;
	size_t i = 2 * (size_t)slot + (cls == TES_BUILD_VULNERABLE);

	if (!f || slot == CP_NO_SLOT)
		return true;
	if (i >= f->njr) {
		size_t n = 2 * (size_t)st->tab.nslots + 2;
		int64_t *j = realloc(f->jr, n * sizeof(*j));

		if (!j)
			return true;
		memset(j + f->njr, 0, (n - f->njr) * sizeof(*j));
		f->jr = j;
		f->njr = n;
	}
	if (f->jr[i] && when - f->jr[i] < cp_state_seen_granularity(st) && when >= f->jr[i])
		return false;
	f->jr[i] = when;
	return true;
}

/* ---- adopting what the fleet holds ---- */

/* Put r in memory; *changed: what gateways see differs (a new server, its
 * clock, build or sources).  ours: this appliance's change, announced by
 * the caller at the view of now. */
static uint32_t put_copy(struct cp_state *st, uint32_t slot, const struct store_server *r,
			 bool ours, bool *changed)
{
	struct cp_server *c = cp_server_at(&st->tab, slot);
	int64_t now = cp_state_now(st);
	struct store_server v = *r;
	unsigned stage;
	enum tes_status status;

	*changed = true;
	cp_state_server_view(st, &r->s, now, &stage, &status);
	if (c) {
		struct store_server merged;

		/* The store's record, with what only this copy saw since. */
		cp_fleet_merge_seen(r, &c->v, &merged);
		*changed = state_differs(&c->v.s, &merged.s) ||
			   ex_build_cmp(&c->v.s.build, &merged.s.build) != 0 ||
			   c->v.s.nsources != merged.s.nsources;
		v = merged;
		v.rev = r->rev;
		v.stage_logged = ours ? (uint8_t)stage : c->v.stage_logged;
		v.status_logged = ours ? (uint8_t)status : c->v.status_logged;
		c->v = v;
		c->stored = v.rev != 0;
		c->shared_last_seen = r->s.last_seen;
		if (v.s.last_seen != r->s.last_seen)
			cp_server_mark_dirty(&st->tab, slot);
		if (v.s.tenant_id == 0)
			cp_untrusted_touch(&st->tab, slot);
		return slot;
	}
	if (v.s.tenant_id == 0) {
		if (st->policy.untrusted_servers == 0)
			return CP_NO_SLOT;
		cp_untrusted_prefixes(&st->tab, st->policy.untrusted_prefix_v4,
				      st->policy.untrusted_prefix_v6);
	}
	v.stage_logged = (uint8_t)stage;
	v.status_logged = (uint8_t)status;
	slot = cp_server_add(&st->tab, &v);
	c = cp_server_at(&st->tab, slot);
	if (!c) {
		cp_err("out of memory adding server %s from the fleet", v.s.fqdn);
		return CP_NO_SLOT;
	}
	c->stored = v.rev != 0;
	c->shared_last_seen = r->s.last_seen;
	c->pushed_last_seen = r->s.last_seen;
	if (v.s.tenant_id == 0)
		cp_untrusted_touch(&st->tab, slot);
	cp_state_cap_check(st, v.s.tenant_id);
	return slot;
}

uint32_t cp_fleet_keep(struct cp_state *st, uint32_t slot, const struct store_server *r)
{
	bool changed;

	return put_copy(st, slot, r, true, &changed);
}

uint32_t cp_fleet_adopt(struct cp_state *st, uint32_t slot, const struct store_server *r,
			const char *event, json_t *fields)
{
	struct cp_server *c;
	bool changed;

	slot = put_copy(st, slot, r, event != NULL, &changed);
	c = cp_server_at(&st->tab, slot);
	if (c && (changed || event)) {
		struct cp_note n = {
			.kind = CP_NOTE_SERVER,
			.now = cp_state_now(st),
			.slot = slot,
			.server = &c->v.s,
			.stage = c->v.stage_logged,
			.status = (enum tes_status)c->v.status_logged,
			.reschedule = true,
			.event = event,
			.fields = fields,
		};

		cp_state_emit(st, &n);
	}
	json_decref(fields);
	return slot;
}

/* ---- what other appliances changed ---- */

static void remote_server(struct cp_state *st, const struct store_server *r, const char *by)
{
	uint32_t slot = cp_server_find(&st->tab, r->s.tenant_id, r->s.fqdn);
	struct cp_server *c = cp_server_at(&st->tab, slot);

	if (st->fleet->resyncing && c) {
		if (slot < st->fleet->nmark)
			st->fleet->mark[slot] = 1;
	}
	if (c && r->rev <= c->v.rev)
		return; /* ours, echoed, or older than what this copy has */
	st->counts.fleet_remote++;
	cp_debug("fleet: server %s of tenant %u from %s (revision %lld)", r->s.fqdn, r->s.tenant_id,
		 by && by[0] ? by : "another appliance", (long long)r->rev);
	slot = cp_fleet_adopt(st, slot, r, NULL, NULL);
	if (st->fleet->resyncing && slot != CP_NO_SLOT && slot < st->fleet->nmark)
		st->fleet->mark[slot] = 1;
}

static void remote_server_gone(struct cp_state *st, uint32_t tenant_id, const char *fqdn,
			       int64_t rev)
{
	uint32_t slot = cp_server_find(&st->tab, tenant_id, fqdn);
	struct cp_server *c = cp_server_at(&st->tab, slot);
	struct cp_note n = { .kind = CP_NOTE_SERVER_GONE, .slot = CP_NO_SLOT };
	struct tes_server s;

	if (!c || c->v.rev > rev || c->v.rev == 0)
		return; /* gone already, written again since, or never stored */
	st->counts.fleet_remote++;
	s = c->v.s;
	n.now = cp_state_now(st);
	n.server = &s;
	n.stage = c->v.stage_logged;
	n.status = (enum tes_status)c->v.status_logged;
	cp_server_delete(&st->tab, slot);
	cp_state_emit(st, &n);
	cp_state_cap_check(st, tenant_id);
}

void cp_fleet_adopt_tenant(struct cp_state *st, const struct tes_tenant *t, const char *by)
{
	const struct tes_tenant *cur = cp_tenant_find(&st->tab, t->id);
	struct cp_note n = { .kind = CP_NOTE_TENANT, .slot = CP_NO_SLOT, .reschedule = true };
	struct tes_tenant nt = *t;

	if (cur) {
		nt.at_server_cap = cur->at_server_cap;
		if (memcmp(cur, &nt, sizeof(nt)) == 0)
			return;
	}
	st->counts.fleet_remote++;
	if (cp_tenant_put(&st->tab, &nt)) {
		cp_err("out of memory adopting tenant %u from the fleet", t->id);
		return;
	}
	cp_info("fleet: tenant %u (%s) %s by %s", t->id, t->name, cur ? "changed" : "added",
		by && by[0] ? by : "another appliance");
	n.now = cp_state_now(st);
	n.tenant = cp_tenant_find(&st->tab, t->id);
	cp_state_emit(st, &n);
}

static void remote_tenant_gone(struct cp_state *st, uint32_t id)
{
	struct tes_tenant *cur = cp_tenant_find(&st->tab, id);
	struct cp_note n = { .kind = CP_NOTE_TENANT_GONE, .slot = CP_NO_SLOT };
	struct tes_tenant t;

	if (!cur)
		return;
	t = *cur;
	st->counts.fleet_remote++;
	n.now = cp_state_now(st);
	/* Its servers went in the same transaction; any left here go now. */
	for (uint32_t i = 0; i < st->tab.nslots; i++) {
		struct cp_server *c = cp_server_at(&st->tab, i);
		struct cp_note g = { .kind = CP_NOTE_SERVER_GONE, .slot = CP_NO_SLOT };
		struct tes_server s;

		if (!c || c->v.s.tenant_id != id)
			continue;
		s = c->v.s;
		g.now = n.now;
		g.server = &s;
		g.tenant = &t;
		g.stage = c->v.stage_logged;
		g.status = (enum tes_status)c->v.status_logged;
		cp_server_delete(&st->tab, i);
		cp_state_emit(st, &g);
	}
	cp_tenant_delete(&st->tab, id);
	cp_info("fleet: tenant %u (%s) deleted by another appliance", t.id, t.name);
	n.tenant = &t;
	cp_state_emit(st, &n);
}

static void resync_begin(struct cp_state *st)
{
	struct cp_fleet *f = st->fleet;
	uint8_t *m = calloc((size_t)st->tab.nslots + 1, 1);

	free(f->mark);
	f->mark = m;
	f->nmark = m ? st->tab.nslots : 0;
	f->resyncing = m != NULL;
	cp_warn("fleet: etcd's history was compacted past this appliance's watch: reading"
		" every server again");
}

static void resync_end(struct cp_state *st, int64_t rev)
{
	struct cp_fleet *f = st->fleet;

	if (!f->resyncing)
		return;
	for (uint32_t i = 0; i < f->nmark && i < st->tab.nslots; i++) {
		struct cp_server *c = cp_server_at(&st->tab, i);

		if (c && !f->mark[i] && c->v.rev && c->v.rev <= rev)
			remote_server_gone(st, c->v.s.tenant_id, c->v.s.fqdn, c->v.rev);
	}
	free(f->mark);
	f->mark = NULL;
	f->nmark = 0;
	f->resyncing = false;
}

static void on_change(void *ctx, const struct store_change *c)
{
	struct cp_state *st = ctx;

	switch (c->kind) {
	case STORE_CHANGE_SERVER:
		remote_server(st, c->server, c->by);
		return;
	case STORE_CHANGE_SERVER_GONE:
		remote_server_gone(st, c->tenant_id, c->fqdn, c->rev);
		return;
	case STORE_CHANGE_TENANT:
		cp_fleet_adopt_tenant(st, c->tenant, c->by);
		return;
	case STORE_CHANGE_TENANT_GONE:
		remote_tenant_gone(st, c->tenant_id);
		return;
	case STORE_CHANGE_POLICY:
		cp_state_policy_adopt(st, c->policy, c->by);
		return;
	case STORE_CHANGE_CATALOG:
		cp_state_catalog_adopt(st, c->builds, c->compliance, c->by);
		return;
	case STORE_CHANGE_RESYNC_BEGIN:
		resync_begin(st);
		return;
	case STORE_CHANGE_RESYNC_END:
		resync_end(st, c->rev);
		return;
	}
}

void cp_state_fleet_poll(struct cp_state *st)
{
	if (!st->fleet)
		return;
	if (st->store->fleet->poll(st->store, on_change, st)) {
		st->counts.store_errors++;
		cp_err("fleet: %s", store_errmsg(st->store));
	}
}

/* ---- the journal, the coalesced writes, liveness ---- */

static int replay_one(const struct store_event *e, void *ctx)
{
	struct cp_state *st = ctx;
	uint32_t slot = cp_server_find(&st->tab, e->tenant_id, e->fqdn);
	struct cp_server *c = cp_server_at(&st->tab, slot);
	struct store_server out;
	char err[512];
	int rc;

	rc = cp_fleet_write(st, c && c->v.rev ? &c->v : NULL, e, &out, err, sizeof(err));
	if (rc == 2) {
		/* Out of reach again: that went back into the journal (a
		 * duplicate merges to nothing); stop here. */
		return 1;
	}
	if (rc < 0) {
		cp_err("fleet: reconciling a detection of %s (tenant %u): %s; it stays in the"
		       " journal",
		       e->fqdn, e->tenant_id, err);
		return 1;
	}
	if (out.s.fqdn[0])
		cp_fleet_adopt(st, slot, &out, NULL, NULL);
	if (st->store->fleet->journal_remove(st->store, e->id)) {
		cp_err("fleet: %s", store_errmsg(st->store));
		return 1;
	}
	return 0;
}

static void reconcile(struct cp_state *st)
{
	struct store_fleet_status s;

	st->store->fleet->status(st->store, &s);
	if (s.journal)
		cp_info("fleet: etcd is back: reconciling %llu detections from the journal",
			(unsigned long long)s.journal);
	if (st->store->fleet->journal_each(st->store, replay_one, st) < 0)
		cp_err("fleet: reading the journal: %s", store_errmsg(st->store));
	st->store->fleet->status(st->store, &s);
	if (!s.journal)
		cp_info("fleet: reconciled; the journal is empty");
	free(st->fleet->jr);
	st->fleet->jr = NULL;
	st->fleet->njr = 0;
}

/* One server's coalesced write: 1 written or nothing to write, 0 keep it
 * for later (cut off), -1 failed. */
static int write_seen(struct cp_state *st, uint32_t slot, bool force)
{
	struct cp_server *c = cp_server_at(&st->tab, slot);
	struct store_server cur, out, next;
	bool found;
	int64_t g = cp_state_seen_granularity(st);
	int rc;

	if (!c)
		return 1;
	/* A copy the store never had was detected while cut off: the journal
	 * brings it. */
	if (!c->v.rev)
		return 1;
	if (!c->fleet_dirty && c->v.s.last_seen - c->shared_last_seen < g &&
	    !(force && c->v.s.last_seen != c->shared_last_seen))
		return 1;
	cur = c->v;
	cur.s.last_seen = c->shared_last_seen;
	for (int round = 0; round < 16; round++) {
		if (!cp_fleet_merge_seen(&cur, &c->v, &out)) {
			c->fleet_dirty = false;
			cp_fleet_adopt(st, slot, &cur, NULL, NULL);
			return 1;
		}
		rc = st->store->fleet->cas_server(st->store, &out, cur.rev, &next, &found);
		if (rc == 1) {
			c->fleet_dirty = false;
			cp_fleet_adopt(st, slot, &out, NULL, NULL);
			return 1;
		}
		if (rc < 0)
			return store_fleet_cut_off(st->store) ? 0 : -1;
		if (!found)
			return 1; /* deleted meanwhile: the watch says so */
		cur = next;
	}
	return -1;
}

int cp_fleet_flush(struct cp_state *st, bool force)
{
	struct cp_tables *tab = &st->tab;
	struct cp_fleet *f = st->fleet;
	size_t keep = 0, ok = 0, wrote = 0;
	int rc = 0;

	if (store_fleet_cut_off(st->store))
		return -1;
	for (size_t i = 0; i < tab->npending_del; i++) {
		struct cp_pending_delete *d = &tab->pending_del[i];

		if (!d->rev || st->store->fleet->cas_delete_server(st->store, d->tenant_id, d->fqdn,
								   d->rev) >= 0)
			continue;
		if (!store_fleet_cut_off(st->store))
			cp_err("fleet: deleting %s: %s", d->fqdn, store_errmsg(st->store));
		tab->pending_del[keep++] = *d;
	}
	tab->npending_del = keep;
	if (!force && mono_now() - f->flushed_at < (int64_t)f->flush_seconds)
		return 0;
	f->flushed_at = mono_now();
	keep = 0;
	if (force) {
		for (uint32_t i = 0; i < tab->nslots; i++) {
			int r = write_seen(st, i, true);

			if (r < 0)
				rc = -1;
			wrote += r > 0;
		}
		tab->ndirty = 0;
		return rc;
	}
	for (size_t i = 0; i < tab->ndirty; i++) {
		uint32_t slot = tab->dirty[i];
		struct cp_server *c = cp_server_at(tab, slot);
		int r;

		if (!c || !c->dirty)
			continue;
		r = write_seen(st, slot, false);
		c = cp_server_at(tab, slot);
		if (r == 0 && c) {
			tab->dirty[keep++] = slot;
			continue;
		}
		if (c)
			c->dirty = false;
		ok++;
		if (r < 0)
			rc = -1;
	}
	tab->ndirty = keep;
	cp_debug("fleet: coalesced write of %zu servers (%zu kept for later)", ok, keep);
	(void)wrote;
	return rc;
}

static void self_of(struct cp_state *st, unsigned gateways, struct store_member *m)
{
	struct store_fleet_status s;

	memset(m, 0, sizeof(*m));
	st->store->fleet->status(st->store, &s);
	tes_str_copy(m->catalog, sizeof(m->catalog), catalog_version(st->catalog));
	tes_str_copy(m->policy, sizeof(m->policy), st->policy_doc.version);
	m->cut_off_since = s.cut_off_since;
	m->sightings = st->counts.sightings;
	m->first_detections = st->counts.first;
	m->redetections = st->counts.redetected;
	m->resolutions = st->counts.resolved;
	m->servers = st->tab.nlive;
	m->gateways = gateways;
}

void cp_state_fleet_tick(struct cp_state *st, unsigned gateways)
{
	struct store_member self;
	struct store_fleet_status s;
	bool force;
	int rc;

	if (!st->fleet)
		return;
	self_of(st, gateways, &self);
	/* Others see at once which versions this one enforces (drift). */
	force = strcmp(self.catalog, st->fleet->catalog) != 0 ||
		strcmp(self.policy, st->fleet->policy) != 0;
	rc = st->store->fleet->tick(st->store, &self, force);
	if (rc >= 0) {
		tes_str_copy(st->fleet->catalog, sizeof(st->fleet->catalog), self.catalog);
		tes_str_copy(st->fleet->policy, sizeof(st->fleet->policy), self.policy);
	}
	st->store->fleet->status(st->store, &s);
	if (s.cut_off && !st->fleet->was_cut_off) {
		char at[40];

		tes_time_format(s.cut_off_since, 0, at, sizeof(at));
		cp_warn("fleet: cut off from etcd since %s: enforcing the last state; detections"
			" go to the local journal (%s)",
			at, s.last_error);
	}
	st->fleet->was_cut_off = s.cut_off;
	if (rc == 1) {
		cp_info("fleet: etcd reachable again");
		reconcile(st);
		/* Versions may have moved while away: say what this one runs. */
		self_of(st, gateways, &self);
		st->store->fleet->tick(st->store, &self, true);
	}
}

void cp_state_fleet_stop(struct cp_state *st)
{
	if (!st->fleet)
		return;
	if (!store_fleet_cut_off(st->store))
		cp_fleet_flush(st, true);
	st->store->fleet->leave(st->store);
	cp_fleet_free(st);
}

/* ---- import (tesctl store import) ---- */

int cp_state_import_server(struct cp_state *st, const struct tes_server *s, char *err,
			   size_t errlen)
{
	struct store_server v, cur, out;
	struct store_event ev[2];
	unsigned nev = 0;
	bool found, wrote = false;
	uint32_t slot;
	int rc;

	if (!st->fleet) {
		snprintf(err, errlen, "import needs a shared store (store = etcd)");
		return -1;
	}
	if (!s->fqdn[0] || (s->tenant_id && !cp_tenant_find(&st->tab, s->tenant_id))) {
		snprintf(err, errlen, "server %s: no tenant %u here (import the tenants first)",
			 s->fqdn, s->tenant_id);
		return -1;
	}
	memset(&v, 0, sizeof(v));
	v.s = *s;
	v.stage_logged = 1;
	/* Not in the fleet yet: the record as it was, clock and all. */
	rc = st->store->fleet->cas_server(st->store, &v, 0, &cur, &found);
	if (rc < 0) {
		snprintf(err, errlen, "%s", store_errmsg(st->store));
		return -1;
	}
	slot = cp_server_find(&st->tab, s->tenant_id, s->fqdn);
	if (rc == 1) {
		cp_fleet_adopt(st, slot, &v, NULL, NULL);
		return 1;
	}
	if (!found) {
		snprintf(err, errlen, "server %s: deleted while importing; try again", s->fqdn);
		return -1;
	}
	/* In the fleet already: what the record says happened, merged as
	 * sightings would be (the earliest detection wins). */
	memset(ev, 0, sizeof(ev));
	for (unsigned i = 0; i < 2; i++) {
		ev[i].tenant_id = s->tenant_id;
		memcpy(ev[i].fqdn, s->fqdn, sizeof(ev[i].fqdn));
		ev[i].build = s->build;
		ev[i].family = (uint8_t)s->family;
	}
	if (!tes_server_compliant_only(s)) {
		ev[nev].cls = TES_BUILD_VULNERABLE;
		ev[nev++].when = s->first_detected;
	}
	if (s->resolved) {
		ev[nev].cls = TES_BUILD_COMPLIANT;
		ev[nev++].when = s->resolved_at;
	}
	for (unsigned i = 0; i < nev; i++) {
		rc = cp_fleet_write(st, &cur, &ev[i], &out, err, errlen);
		if (rc < 0)
			return -1;
		if (rc == 2) {
			snprintf(err, errlen, "etcd out of reach while importing %s (journaled)",
				 s->fqdn);
			return -1;
		}
		wrote |= rc == 1;
		if (out.s.fqdn[0])
			cur = out;
	}
	slot = cp_fleet_adopt(st, slot, &cur, NULL, NULL);
	/* Its seen times and sources, with the next coalesced write. */
	{
		struct cp_server *c = cp_server_at(&st->tab, slot);

		if (c) {
			struct store_server mine = c->v;

			mine.s = *s;
			if (cp_fleet_merge_seen(&c->v, &mine, &out)) {
				c->v.s.last_seen = out.s.last_seen;
				c->v.s.nsources = out.s.nsources;
				memcpy(c->v.s.sources, out.s.sources, sizeof(out.s.sources));
				memcpy(c->v.s.source_seen, out.s.source_seen,
				       sizeof(out.s.source_seen));
				c->fleet_dirty = true;
				cp_server_mark_dirty(&st->tab, slot);
				wrote = true;
			}
		}
	}
	return wrote ? 1 : 0;
}
