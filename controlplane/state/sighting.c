/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A sighting from a gateway, applied: classified by the catalog in force,
 * observed by the model (enforce/decide.h), made durable when it promises
 * something (a first detection, a resolution), then put in memory, then
 * announced.  The gateway's ack goes out after this returns.
 */
#include "controlplane/state/state.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "controlplane/log.h"

static bool same_sources(const struct tes_server *a, const struct tes_server *b)
{
	if (a->nsources != b->nsources)
		return false;
	for (unsigned i = 0; i < a->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
		if (!tes_addr_equal(&a->sources[i], &b->sources[i]))
			return false;
	}
	return true;
}

static void log_detection(const struct cp_state *st, enum tes_change change,
			  const struct tes_server *s, const struct catalog_class *cls,
			  const struct ctl_sighting *in, int64_t when)
{
	const struct tes_tenant *t = cp_state_server_tenant(st, s);
	char build[48], at[40], src[64] = "?", thr[40] = "-", blk[40] = "-";
	struct tes_report r;

	ex_build_format(&s->build, build, sizeof(build));
	tes_time_format(when, st->policy.utc_offset_min, at, sizeof(at));
	if (in->source.family != TES_ADDR_NONE)
		tes_addr_format(&in->source, src, sizeof(src));
	if (change == TES_CHANGE_RESOLVED) {
		cp_info("resolved: tenant %u (%s) server %s now runs %s (%s %s, compliant), seen"
			" from %s at %s",
			s->tenant_id, t ? t->name : "-", s->fqdn, build, ex_family_name(s->family),
			cls->branch[0] ? cls->branch : "?", src, at);
		return;
	}
	tes_server_report(s, t, &st->policy, cp_state_now(st), &r);
	if (r.has_throttle_date)
		tes_time_format(r.throttle_enabled, st->policy.utc_offset_min, thr, sizeof(thr));
	if (r.has_block_date)
		tes_time_format(r.blocking_enabled, st->policy.utc_offset_min, blk, sizeof(blk));
	cp_info("%s: tenant %u (%s) server %s build %s (%s %s, out of date) from %s at %s;"
		" throttling from %s, blocking from %s",
		change == TES_CHANGE_FIRST ? "first detection" : "re-detection", s->tenant_id,
		t ? t->name : "-", s->fqdn, build, ex_family_name(s->family),
		cls->branch[0] ? cls->branch : "?", src, at, thr, blk);
}

/* Whether the update only moves seen times, and not far enough to tell the
 * gateways on its own. */
static bool seen_moved(const struct cp_state *st, const struct cp_server *c,
		       const struct tes_server *ns)
{
	int64_t g = cp_state_seen_granularity(st);

	if (ns->last_seen - c->pushed_last_seen >= g)
		return true;
	for (unsigned i = 0; i < ns->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
		if (ns->source_seen[i] - c->pushed_source_seen[i] >= g)
			return true;
	}
	return false;
}

/* Room for a new tenant-0 server first seen from src: the least recently
 * seen one of its prefix, then overall, goes when a cap is reached. */
static void untrusted_make_room(struct cp_state *st, const struct tes_addr *src)
{
	uint32_t n, slot;

	cp_untrusted_prefixes(&st->tab, st->policy.untrusted_prefix_v4,
			      st->policy.untrusted_prefix_v6);
	for (int i = 0; i < 64; i++) {
		slot = cp_untrusted_oldest_in(&st->tab, src, &n);
		if (slot == CP_NO_SLOT || n < st->policy.untrusted_per_prefix)
			break;
		st->counts.untrusted_evicted++;
		cp_state_forget(st, slot, "evicted");
	}
	for (int i = 0; i < 64; i++) {
		slot = cp_untrusted_oldest(&st->tab, &n);
		if (slot == CP_NO_SLOT || n < st->policy.untrusted_servers)
			break;
		st->counts.untrusted_evicted++;
		cp_state_forget(st, slot, "evicted");
	}
}

static void pending_cancel(struct cp_tables *tab, uint32_t tenant_id, const char *fqdn)
{
	for (size_t i = 0; i < tab->npending_del;) {
		if (tab->pending_del[i].tenant_id == tenant_id &&
		    strcasecmp(tab->pending_del[i].fqdn, fqdn) == 0)
			tab->pending_del[i] = tab->pending_del[--tab->npending_del];
		else
			i++;
	}
}

/* Whether a name the state has no record of is tracked: a tenant's own
 * connector fills only its own cap and nothing it carries is refused for
 * it; mail over no connector competes for the bounded table. */
static bool new_server_wanted(struct cp_state *st, const struct ctl_sighting *in,
			      const struct tes_tenant *t, int64_t now, uint64_t n)
{
	if (in->tenant_id != 0 &&
	    cp_tenant_servers(&st->tab, in->tenant_id) >= st->policy.servers_per_tenant) {
		st->counts.not_tracked += n;
		if (now - st->cap_logged_at >= 60 || now < st->cap_logged_at) {
			st->cap_logged_at = now;
			cp_warn("tenant %u (%s) is at its cap of %u servers: %s and any other new"
				" server is not tracked (tes_servers_not_tracked_total)",
				in->tenant_id, t ? t->name : "-", st->policy.servers_per_tenant,
				in->fqdn);
		}
		return false;
	}
	if (in->tenant_id == 0 && st->policy.untrusted_servers == 0) {
		st->counts.not_tracked += n;
		return false;
	}
	return true;
}

/* Only the seen times, the build or the sources moved. */
static void apply_seen(struct cp_state *st, uint32_t slot, const struct tes_server *ns, int64_t now)
{
	struct cp_server *c = cp_server_at(&st->tab, slot);
	bool back =
		c->v.status_logged == TES_STATUS_STALE || ns->stale_seconds != c->v.s.stale_seconds;
	bool announce = ex_build_cmp(&c->v.s.build, &ns->build) != 0 ||
			!same_sources(&c->v.s, ns) || back || seen_moved(st, c, ns);

	/* The fleet gets a new build or source with the next coalesced
	 * write, not at once. */
	if (ex_build_cmp(&c->v.s.build, &ns->build) != 0 || !same_sources(&c->v.s, ns))
		c->fleet_dirty = true;
	c->v.s = *ns;
	cp_server_mark_dirty(&st->tab, slot);
	if (ns->tenant_id == 0)
		cp_untrusted_touch(&st->tab, slot);
	if (back) {
		/* Seen again: its clock resumes; escalation says so. */
		struct cp_note n = {
			.kind = CP_NOTE_SERVER_RESUMED,
			.now = now,
			.slot = slot,
			.server = &c->v.s,
			.stage = c->v.stage_logged,
			.status = (enum tes_status)c->v.status_logged,
			.why = "seen again",
		};

		cp_state_emit(st, &n);
	}
	/* Only moving times later, a sighting leaves the escalation queue
	 * alone: an entry due too early is looked at and queued again. */
	c = cp_server_at(&st->tab, slot);
	if (announce && c) {
		struct cp_note n = {
			.kind = CP_NOTE_SERVER,
			.now = now,
			.slot = slot,
			.server = &c->v.s,
			.stage = c->v.stage_logged,
			.status = (enum tes_status)c->v.status_logged,
		};

		cp_state_emit(st, &n);
	}
}

/* A first detection, re-detection, resolution or a compliant server first
 * tracked: durable first (unless lazy), then memory.  The slot, or
 * CP_NO_SLOT with msg. */
static uint32_t apply_change(struct cp_state *st, uint32_t slot, const struct ctl_sighting *in,
			     enum tes_change ch, const struct tes_server *ns, int64_t now,
			     char *err, size_t errlen)
{
	struct cp_server *c = cp_server_at(&st->tab, slot);
	bool untrusted = in->tenant_id == 0;
	/* Only what a connector carried is promised durable before the ack:
	 * tenant 0's table and servers that were never vulnerable go with the
	 * next batch, so that a stream of new names costs no synchronous write
	 * each. */
	bool lazy = untrusted || ch == TES_CHANGE_TRACKED;
	struct store_server v;
	unsigned stage;
	enum tes_status status;

	memset(&v, 0, sizeof(v));
	v.s = *ns;
	cp_state_server_view(st, ns, now, &stage, &status);
	v.stage_logged = (uint8_t)stage;
	v.status_logged = (uint8_t)status;
	if (!lazy) {
		/* Durable before anyone hears of it: the ack, the push to the
		 * gateways and any report all come after this commit. */
		pending_cancel(&st->tab, ns->tenant_id, ns->fqdn);
		if (store_put_server(st->store, &v)) {
			st->counts.store_errors++;
			cp_err("storing %s of %s: %s", ctl_change_name(ch), in->fqdn,
			       store_errmsg(st->store));
			snprintf(err, errlen,
				 "tescontrol could not store the change; send it again");
			return CP_NO_SLOT;
		}
	}
	if (c) {
		c->v = v;
		c->dirty = false;
		if (!lazy)
			c->stored = true;
		else
			cp_server_mark_dirty(&st->tab, slot);
		if (untrusted)
			cp_untrusted_touch(&st->tab, slot);
		return slot;
	}
	if (untrusted)
		untrusted_make_room(st, &in->source);
	slot = cp_server_add(&st->tab, &v);
	c = cp_server_at(&st->tab, slot);
	if (!c) {
		cp_err("out of memory adding server %s%s", in->fqdn,
		       lazy ? "" : " (it is stored; a restart loads it)");
		snprintf(err, errlen, "tescontrol is out of memory");
		return CP_NO_SLOT;
	}
	c->stored = !lazy;
	if (lazy)
		cp_server_mark_dirty(&st->tab, slot);
	cp_state_cap_check(st, ns->tenant_id);
	return slot;
}

/* Counted, logged and announced, after apply_change. */
static void announce_change(struct cp_state *st, uint32_t slot, const struct ctl_sighting *in,
			    enum tes_change ch, const struct catalog_class *cls, int64_t when,
			    int64_t now)
{
	struct cp_server *c = cp_server_at(&st->tab, slot);
	struct cp_note n = {
		.kind = CP_NOTE_SERVER,
		.now = now,
		.slot = slot,
		.server = &c->v.s,
		.stage = c->v.stage_logged,
		.status = (enum tes_status)c->v.status_logged,
		.reschedule = true,
	};

	if (ch == TES_CHANGE_FIRST)
		st->counts.first++;
	else if (ch == TES_CHANGE_REDETECTED)
		st->counts.redetected++;
	else if (ch == TES_CHANGE_RESOLVED)
		st->counts.resolved++;
	else
		st->counts.tracked++;
	/* Untrusted input does not get to write a line per new name. */
	if (in->tenant_id == 0 || ch == TES_CHANGE_TRACKED) {
		cp_debug("%s: tenant %u server %s from %s", ctl_change_name(ch), in->tenant_id,
			 in->fqdn, in->source.family != TES_ADDR_NONE ? "a source" : "-");
	} else {
		log_detection(st, ch, &c->v.s, cls, in, when);
		n.event = ch == TES_CHANGE_FIRST        ? "first_detection"
			  : ch == TES_CHANGE_REDETECTED ? "redetection"
							: "resolved";
		n.fields = json_pack("{s:I}", "detected_at", (json_int_t)when);
	}
	cp_state_emit(st, &n);
	json_decref(n.fields);
}

/* ---- the fleet (a shared store): the change is merged with what the
 * other appliances wrote (fleet.c) ---- */

static void event_of(const struct ctl_sighting *in, const struct tes_detection *d, int64_t when,
		     struct store_event *e)
{
	memset(e, 0, sizeof(*e));
	e->tenant_id = in->tenant_id;
	memcpy(e->fqdn, in->fqdn, sizeof(e->fqdn));
	e->when = when;
	e->build = d->build;
	e->family = (uint8_t)d->family;
	e->cls = (uint8_t)d->cls;
	e->source = in->source;
}

/* A change the fleet must have at once (a first detection, re-detection,
 * resolution, a compliant server first tracked, a stale period ended).
 * Written (or journaled while cut off) before anyone hears of it; when
 * the fleet already held what wins, that is adopted instead and the ack
 * says "seen". */
static int apply_change_fleet(struct cp_state *st, uint32_t slot, const struct ctl_sighting *in,
			      enum tes_change *ch, const struct catalog_class *cls,
			      const struct tes_detection *d, int64_t when, int64_t now,
			      const struct tes_server *ns, char *err, size_t errlen)
{
	struct cp_server *c = cp_server_at(&st->tab, slot);
	struct store_event e;
	struct store_server out;
	char ferr[512];
	int rc;

	event_of(in, d, when, &e);
	if (*ch == TES_CHANGE_SEEN && store_fleet_cut_off(st->store)) {
		/* What the fleet must have (an ended stale period, an earlier
		 * date than the copy's) goes to the journal, and the copy takes
		 * it; and in case a resolution made elsewhere meanwhile makes
		 * this a re-detection, one sighting per class per seen
		 * granularity goes to the journal too. */
		struct store_server probe;
		bool earlier = cp_fleet_apply(&c->v, &e, cp_state_server_tenant(st, &c->v.s),
					      &st->policy, &probe);
		bool must = earlier || ns->stale_seconds != c->v.s.stale_seconds;

		if ((cp_fleet_journal_wanted(st, slot, d->cls, when) || must) &&
		    st->store->fleet->journal_add(st->store, &e) == 0)
			st->counts.fleet_journaled++;
		if (earlier)
			cp_fleet_adopt(st, slot, &probe, NULL, NULL);
		else
			apply_seen(st, slot, ns, now);
		return 0;
	}
	if (!c && in->tenant_id == 0)
		untrusted_make_room(st, &in->source);
	c = cp_server_at(&st->tab, slot);
	rc = cp_fleet_write(st, c ? &c->v : NULL, &e, &out, ferr, sizeof(ferr));
	if (rc < 0) {
		cp_err("storing %s of %s: %s", ctl_change_name(*ch), in->fqdn, ferr);
		snprintf(err, errlen, "tescontrol could not store the change; send it again");
		return -1;
	}
	if (rc == 0) {
		/* The fleet had this already (or something that wins): its
		 * record, with what this sighting saw (written coalesced). */
		if (out.s.fqdn[0])
			slot = cp_fleet_adopt(st, slot, &out, NULL, NULL);
		c = cp_server_at(&st->tab, slot);
		if (c) {
			struct store_server seen;
			bool moved;

			cp_fleet_apply(&c->v, &e, cp_state_server_tenant(st, &c->v.s), &st->policy,
				       &seen);
			moved = seen.s.last_seen != c->v.s.last_seen ||
				seen.s.nsources != c->v.s.nsources;
			if (ex_build_cmp(&seen.s.build, &c->v.s.build) != 0 ||
			    seen.s.nsources != c->v.s.nsources)
				c->fleet_dirty = true;
			c->v.s.last_seen = seen.s.last_seen;
			c->v.s.build = seen.s.build;
			c->v.s.family = seen.s.family;
			c->v.s.nsources = seen.s.nsources;
			memcpy(c->v.s.sources, seen.s.sources, sizeof(seen.s.sources));
			memcpy(c->v.s.source_seen, seen.s.source_seen, sizeof(seen.s.source_seen));
			if (moved)
				cp_server_mark_dirty(&st->tab, slot);
		}
		if (*ch != TES_CHANGE_SEEN)
			cp_debug("%s of %s: the fleet already holds it (first detected %lld)",
				 ctl_change_name(*ch), in->fqdn, (long long)out.s.first_detected);
		*ch = TES_CHANGE_SEEN;
		return 0;
	}
	if (*ch == TES_CHANGE_SEEN) {
		/* More than the model saw: an earlier date of this clock (another
		 * appliance's record came first), or an ended stale period.
		 * Untrusted input does not get to write a line per name. */
		if (c && out.s.first_detected != c->v.s.first_detected && in->tenant_id)
			cp_info("fleet: server %s (tenant %u) was seen here at %lld, before the"
				" date the fleet had: its first detection is that date now",
				in->fqdn, in->tenant_id, (long long)out.s.first_detected);
		cp_fleet_adopt(st, slot, &out, NULL, NULL);
		return 0;
	}
	/* Ours: in the fleet (or in the journal), with the date that won. */
	if (*ch == TES_CHANGE_FIRST || *ch == TES_CHANGE_REDETECTED)
		when = out.s.first_detected;
	else if (*ch == TES_CHANGE_RESOLVED)
		when = out.s.resolved_at;
	slot = cp_fleet_keep(st, slot, &out);
	if (slot == CP_NO_SLOT) {
		snprintf(err, errlen, "tescontrol is out of memory");
		return -1;
	}
	announce_change(st, slot, in, *ch, cls, when, now);
	return 0;
}

static int apply(struct cp_state *st, const struct ctl_sighting *in, enum tes_change *change,
		 char *err, size_t errlen)
{
	const struct tes_tenant *t = NULL;
	struct catalog_class cls;
	struct tes_detection d;
	struct tes_server ns;
	struct cp_server *c;
	uint32_t slot;
	int64_t now = cp_state_now(st), when;
	uint64_t n = in->count ? in->count : 1;

	*change = TES_CHANGE_NONE;
	st->counts.sightings += n;
	if (in->tenant_id) {
		t = cp_tenant_find(&st->tab, in->tenant_id);
		if (!t) {
			snprintf(err, errlen, "unknown tenant %u", in->tenant_id);
			return -1;
		}
	}
	/* Mail over no connector is never enforced under this scope, so
	 * nothing of it is kept: what a forged header names costs a counter. */
	if (in->tenant_id == 0 && st->policy.scope == TES_SCOPE_CONNECTORS) {
		st->counts.untrusted_ignored += n;
		return 0;
	}
	/* A sighting may arrive late (queued while tescontrol was down), never
	 * from the future: a gateway clock ahead of ours must not push a
	 * first detection forward. */
	when = in->time && in->time < now ? in->time : now;
	/* tescontrol's catalog decides (a gateway may still hold an older one
	 * for a moment after a load), as of when the message was seen:
	 * compliance rules carry dates. */
	catalog_classify(st->catalog, &in->build, when, &cls);
	if (cls.family == EX_FAMILY_NONE || cls.family == EX_FAMILY_ONLINE) {
		st->counts.sightings_by_class[CP_SIGHT_IGNORED] += n;
		return 0;
	}
	st->counts.sightings_by_class[cls.compliant ? CP_SIGHT_COMPLIANT : CP_SIGHT_VULNERABLE] +=
		n;
	d.cls = cls.compliant ? TES_BUILD_COMPLIANT : TES_BUILD_VULNERABLE;
	d.family = cls.family;
	d.build = in->build;
	if (d.cls != in->cls)
		cp_debug("sighting of %s: the gateway said %s, the catalog in force says %s",
			 in->fqdn, ctl_class_name(in->cls), ctl_class_name(d.cls));
	slot = cp_server_find(&st->tab, in->tenant_id, in->fqdn);
	c = cp_server_at(&st->tab, slot);
	if (!c && !new_server_wanted(st, in, t, now, n))
		return 0;
	*change = tes_server_observe(c ? &c->v.s : NULL, in->tenant_id, in->fqdn, t, &st->policy,
				     &d, in->source.family != TES_ADDR_NONE ? &in->source : NULL,
				     when, &ns);
	switch (*change) {
	case TES_CHANGE_NONE:
		return 0;
	case TES_CHANGE_INVALID:
		snprintf(err, errlen, "invalid server name");
		return -1;
	case TES_CHANGE_SEEN:
		/* A stale period that ends changes the clock: the fleet hears
		 * of it at once; seen times wait for the coalesced write. */
		if (store_shared(st->store)) {
			/* The fleet's merge may find more than the model: an
			 * earlier date of this clock than the copy's (whose
			 * record came first). */
			struct store_event e;
			struct store_server probe;

			event_of(in, &d, when, &e);
			if (ns.stale_seconds != c->v.s.stale_seconds ||
			    store_fleet_cut_off(st->store) ||
			    cp_fleet_apply(&c->v, &e, t, &st->policy, &probe))
				return apply_change_fleet(st, slot, in, change, &cls, &d, when, now,
							  &ns, err, errlen);
		}
		apply_seen(st, slot, &ns, now);
		return 0;
	case TES_CHANGE_FIRST:
	case TES_CHANGE_REDETECTED:
	case TES_CHANGE_RESOLVED:
	case TES_CHANGE_TRACKED:
		break;
	}
	if (store_shared(st->store))
		return apply_change_fleet(st, slot, in, change, &cls, &d, when, now, &ns, err,
					  errlen);
	slot = apply_change(st, slot, in, *change, &ns, now, err, errlen);
	if (slot == CP_NO_SLOT)
		return -1;
	announce_change(st, slot, in, *change, &cls, when, now);
	return 0;
}

int cp_state_apply_sighting(struct cp_state *st, const struct ctl_sighting *in,
			    enum tes_change *change, char *err, size_t errlen)
{
	int rc = apply(st, in, change, err, errlen);

	if (rc)
		st->counts.sightings_refused++;
	return rc;
}
