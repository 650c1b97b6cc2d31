/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Operators' changes to tenants and servers (the admin commands call these):
 * durable first, then memory, then a notification whose event log line
 * says who did it and what was there before and after.
 */
#include "controlplane/state/state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controlplane/log.h"
#include "controlplane/state/internal.h"

json_t *cp_audit_fields(const json_t *who, json_t *before, json_t *after, json_t *extra)
{
	json_t *o = who ? json_deep_copy(who) : json_pack("{s:n, s:n, s:n}", "uid", "gid", "pid");

	if (!o)
		o = json_object();
	json_object_set_new(o, "before", before ? before : json_null());
	json_object_set_new(o, "after", after ? after : json_null());
	if (extra) {
		json_object_update(o, extra);
		json_decref(extra);
	}
	return o;
}

json_t *cp_build_json(const struct ex_build *b)
{
	char buf[48];

	ex_build_format(b, buf, sizeof(buf));
	return json_string(buf);
}

/* What a reset forgets: the state that decides the server's enforcement. */
static json_t *server_state_json(const struct cp_server *c)
{
	const struct tes_server *s = &c->v.s;
	json_t *o = json_pack("{s:s, s:o, s:s, s:I, s:I, s:b, s:i, s:s}", "fqdn", s->fqdn, "build",
			      cp_build_json(&s->build), "family", ex_family_name(s->family),
			      "first_detected", (json_int_t)s->first_detected, "last_seen",
			      (json_int_t)s->last_seen, "resolved", s->resolved, "stage",
			      (int)c->v.stage_logged, "status",
			      tes_status_name((enum tes_status)c->v.status_logged));

	json_object_set_new(o, "resolved_at",
			    s->resolved ? json_integer(s->resolved_at) : json_null());
	return o;
}

static json_t *pause_raw_json(const struct tes_pause *p)
{
	return json_pack("{s:I, s:I, s:I, s:i, s:i}", "start", (json_int_t)p->start, "end",
			 (json_int_t)p->end, "paused_before", (json_int_t)p->paused_before, "year",
			 (int)p->year, "days_used", (int)p->days_used);
}

int cp_state_reset_server(struct cp_state *st, uint32_t slot, const json_t *who, char *err,
			  size_t len)
{
	struct cp_server *c = cp_server_at(&st->tab, slot);
	struct cp_note n = { .kind = CP_NOTE_SERVER_GONE, .slot = CP_NO_SLOT, .event = "reset" };
	struct tes_server s;

	if (!c) {
		snprintf(err, len, "no such server");
		return -1;
	}
	s = c->v.s;
	if (store_delete_server(st->store, s.tenant_id, s.fqdn)) {
		snprintf(err, len, "could not store the reset: %s", store_errmsg(st->store));
		return -1;
	}
	st->counts.resets++;
	n.now = cp_state_now(st);
	n.server = &s;
	n.stage = c->v.stage_logged;
	n.status = (enum tes_status)c->v.status_logged;
	n.fields = cp_audit_fields(who, server_state_json(c), NULL, NULL);
	cp_server_delete(&st->tab, slot);
	cp_state_emit(st, &n);
	json_decref(n.fields);
	cp_info("server reset by the operator: tenant %u server %s forgotten (a new detection"
		" starts a new clock)",
		s.tenant_id, s.fqdn);
	return 0;
}

int cp_state_put_tenant(struct cp_state *st, const struct tes_tenant *t, const json_t *who,
			char *err, size_t errlen)
{
	const struct tes_tenant *cur = cp_tenant_find(&st->tab, t->id);
	struct cp_note n = { .kind = CP_NOTE_TENANT, .slot = CP_NO_SLOT };
	json_t *before = cur ? ctl_tenant_to_json(cur) : NULL;

	if (st->fleet) {
		/* Against the tenant as this appliance knows it: a change made
		 * elsewhere meanwhile is adopted and this one refused. */
		struct tes_tenant now;
		bool found;
		int rc = st->store->fleet->cas_tenant(st->store, t, &now, &found);

		if (rc != 1) {
			if (rc == 0 && found) {
				cp_fleet_adopt_tenant(st, &now, "");
				snprintf(err, errlen,
					 "tenant %u was %s on another appliance meanwhile (now "
					 "\"%s\"):"
					 " nothing was changed; look again and retry",
					 t->id, cur ? "changed" : "added", now.name);
			} else if (rc == 0) {
				snprintf(err, errlen,
					 "tenant %u was deleted on another appliance meanwhile:"
					 " nothing was changed",
					 t->id);
			} else {
				snprintf(err, errlen,
					 "could not store the tenant: %s (nothing was"
					 " changed)",
					 store_errmsg(st->store));
			}
			json_decref(before);
			return -1;
		}
	} else if (store_put_tenant(st->store, t)) {
		snprintf(err, errlen, "could not store the tenant: %s (nothing was changed)",
			 store_errmsg(st->store));
		json_decref(before);
		return -1;
	}
	if (cp_tenant_put(&st->tab, t)) {
		snprintf(err, errlen, "out of memory (the tenant is stored; a restart loads it)");
		json_decref(before);
		return -1;
	}
	n.now = cp_state_now(st);
	n.tenant = cp_tenant_find(&st->tab, t->id);
	n.event = cur ? "tenant_change" : "tenant_add";
	n.fields = cp_audit_fields(who, before, ctl_tenant_to_json(t), NULL);
	cp_state_emit(st, &n);
	json_decref(n.fields);
	cp_info("tenant %s: %u (%s) with %u connectors", cur ? "changed" : "added", t->id, t->name,
		t->nconnectors);
	return 0;
}

int cp_state_delete_tenant(struct cp_state *st, uint32_t id, const json_t *who, size_t *servers,
			   char *err, size_t errlen)
{
	struct tes_tenant *cur = cp_tenant_find(&st->tab, id);
	struct cp_note n = { .kind = CP_NOTE_TENANT_GONE, .slot = CP_NO_SLOT };
	struct tes_tenant t;
	uint32_t *slots;
	size_t count = 0;
	bool ok;

	if (!cur) {
		snprintf(err, errlen, "no tenant %u", id);
		return -1;
	}
	t = *cur;
	slots = malloc(((size_t)st->tab.nlive + 1) * sizeof(*slots));
	if (!slots) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (uint32_t i = 0; i < st->tab.nslots; i++) {
		const struct cp_server *c = cp_server_at(&st->tab, i);

		if (c && c->v.s.tenant_id == t.id)
			slots[count++] = i;
	}
	/* The tenant and its servers go together or not at all. */
	ok = store_begin(st->store) == 0;
	for (size_t i = 0; ok && i < count; i++) {
		const struct cp_server *c = cp_server_at(&st->tab, slots[i]);

		ok = store_delete_server(st->store, c->v.s.tenant_id, c->v.s.fqdn) == 0;
	}
	if (!ok || store_delete_tenant(st->store, t.id) || store_commit(st->store)) {
		snprintf(err, errlen, "could not store the deletion: %s (nothing was changed)",
			 store_errmsg(st->store));
		store_rollback(st->store);
		free(slots);
		return -1;
	}
	n.now = cp_state_now(st);
	for (size_t i = 0; i < count; i++) {
		struct cp_server *c = cp_server_at(&st->tab, slots[i]);
		struct cp_note g = {
			.kind = CP_NOTE_SERVER_GONE,
			.now = n.now,
			.slot = CP_NO_SLOT,
			.stage = c->v.stage_logged,
			.status = (enum tes_status)c->v.status_logged,
			.tenant = &t,
		};
		struct tes_server s = c->v.s;

		g.server = &s;
		cp_server_delete(&st->tab, slots[i]);
		cp_state_emit(st, &g);
	}
	free(slots);
	cp_tenant_delete(&st->tab, t.id);
	st->counts.resets += count;
	n.tenant = &t;
	n.event = "tenant_delete";
	n.fields = cp_audit_fields(who, ctl_tenant_to_json(&t), NULL,
				   json_pack("{s:I}", "servers_deleted", (json_int_t)count));
	cp_state_emit(st, &n);
	json_decref(n.fields);
	cp_info("tenant deleted by the operator: %u (%s) and its %zu servers on record", t.id,
		t.name, count);
	*servers = count;
	return 0;
}

/* The pause as it was asked for, whatever the tenant holds. */
static int fixed_pause(const struct tes_tenant *t, struct tes_pause *out, void *ctx, char *err,
		       size_t errlen)
{
	(void)t;
	(void)err;
	(void)errlen;
	*out = *(const struct tes_pause *)ctx;
	return 0;
}

int cp_state_set_pause(struct cp_state *st, uint32_t id, const struct tes_pause *p,
		       const char *event, const json_t *who, char *err, size_t errlen)
{
	return cp_state_set_pause_with(st, id, fixed_pause, (void *)p, event, who, err, errlen);
}

/* Store the tenant's new pause: one write, or with a shared store one
 * compare-and-swap on the tenant, so that two operators on two appliances
 * cannot both spend the same quota: the one who loses sees the other's
 * pause and make decides again from it.  0, or -1 with err. */
static int store_pause(struct cp_state *st, uint32_t id, cp_pause_fn make, void *ctx,
		       struct tes_tenant *nt, char *err, size_t errlen)
{
	for (int round = 0; round < 8; round++) {
		struct tes_tenant *t = cp_tenant_find(&st->tab, id), cur;
		bool found;
		int rc;

		if (!t) {
			snprintf(err, errlen, "no tenant %u", id);
			return -1;
		}
		*nt = *t;
		if (make(t, &nt->pause, ctx, err, errlen))
			return -1;
		if (!st->fleet) {
			if (store_put_tenant(st->store, nt)) {
				snprintf(err, errlen, "could not store the pause: %s",
					 store_errmsg(st->store));
				return -1;
			}
			return 0;
		}
		rc = st->store->fleet->cas_tenant(st->store, nt, &cur, &found);
		if (rc == 1)
			return 0;
		if (rc < 0) {
			snprintf(err, errlen, "could not store the pause: %s (nothing was changed)",
				 store_errmsg(st->store));
			return -1;
		}
		if (!found) {
			snprintf(err, errlen, "tenant %u was deleted on another appliance", id);
			return -1;
		}
		cp_info("pause: tenant %u changed on another appliance meanwhile; deciding again"
			" from its pause",
			id);
		cp_fleet_adopt_tenant(st, &cur, "");
	}
	snprintf(err, errlen, "tenant %u keeps changing on other appliances; nothing was changed",
		 id);
	return -1;
}

int cp_state_set_pause_with(struct cp_state *st, uint32_t id, cp_pause_fn make, void *ctx,
			    const char *event, const json_t *who, char *err, size_t errlen)
{
	struct tes_tenant *t;
	struct cp_note n = { .kind = CP_NOTE_TENANT, .slot = CP_NO_SLOT, .event = event };
	struct tes_tenant nt;
	json_t *before;
	char at[40];

	if (store_pause(st, id, make, ctx, &nt, err, errlen))
		return -1;
	t = cp_tenant_find(&st->tab, id);
	if (!t) {
		snprintf(err, errlen, "no tenant %u", id);
		return -1;
	}
	before = pause_raw_json(&t->pause);
	t->pause = nt.pause;
	if (strcmp(event, "pause") == 0)
		st->counts.pauses++;
	else
		st->counts.resumes++;
	tes_time_format(nt.pause.end, 0, at, sizeof(at));
	n.now = cp_state_now(st);
	n.tenant = t;
	n.fields = cp_audit_fields(who, before, pause_raw_json(&nt.pause),
				   json_pack("{s:s, s:I, s:i}", "pause_end", at, "pause_end_epoch",
					     (json_int_t)nt.pause.end, "pause_days_used",
					     (int)nt.pause.days_used));
	cp_state_emit(st, &n);
	json_decref(n.fields);
	return 0;
}
