/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The state room's core: set-up, notifications, the lookups every room
 * uses, forgetting a server, the periodic write of lazy changes and the
 * per-tenant cap.
 */
#include "controlplane/state/state.h"

#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "controlplane/log.h"
#include "controlplane/state/internal.h"

int cp_state_init(struct cp_state *st, struct tes_store *store, const struct cp_clock *clock)
{
	memset(st, 0, sizeof(*st));
	st->store = store;
	st->clock = clock;
	return cp_tables_init(&st->tab);
}

void cp_state_free(struct cp_state *st)
{
	cp_fleet_free(st);
	catalog_free(st->catalog);
	st->catalog = NULL;
	store_doc_free(&st->builds);
	store_doc_free(&st->compliance);
	store_doc_free(&st->policy_doc);
	cp_tables_free(&st->tab);
}

/* ---- notifications ---- */

int cp_state_subscribe(struct cp_state *st, cp_note_fn fn, void *ctx)
{
	if (st->nsubs == CP_STATE_SUBSCRIBERS_MAX)
		return -1;
	st->subs[st->nsubs].fn = fn;
	st->subs[st->nsubs].ctx = ctx;
	st->nsubs++;
	return 0;
}

void cp_state_emit(struct cp_state *st, struct cp_note *n)
{
	if (n->server && !n->tenant)
		n->tenant = cp_state_server_tenant(st, n->server);
	if (n->kind == CP_NOTE_SERVER) {
		struct cp_server *c = cp_server_at(&st->tab, n->slot);

		/* What every gateway now has (one that syncs later gets the
		 * current values anyway): an update that only moves these is
		 * announced once it has moved far enough. */
		if (c) {
			c->pushed_last_seen = c->v.s.last_seen;
			memcpy(c->pushed_source_seen, c->v.s.source_seen,
			       sizeof(c->pushed_source_seen));
		}
	}
	for (unsigned i = 0; i < st->nsubs; i++)
		st->subs[i].fn(st->subs[i].ctx, n);
}

void cp_state_event(struct cp_state *st, const char *event, json_t *fields)
{
	struct cp_note n = {
		.kind = CP_NOTE_EVENT,
		.now = cp_state_now(st),
		.slot = CP_NO_SLOT,
		.event = event,
		.fields = fields,
	};

	cp_state_emit(st, &n);
	json_decref(fields);
}

/* ---- lookups ---- */

void cp_doc_version(const char *a, size_t alen, const char *b, size_t blen, char *out, size_t len)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);

	for (size_t i = 0; i < alen; i++)
		h = (h ^ (uint8_t)a[i]) * UINT64_C(0x100000001b3);
	h = (h ^ 0xff) * UINT64_C(0x100000001b3); /* "ab"+"c" differs from "a"+"bc" */
	for (size_t i = 0; i < blen; i++)
		h = (h ^ (uint8_t)b[i]) * UINT64_C(0x100000001b3);
	snprintf(out, len, "%016" PRIx64, h);
}

const struct tes_tenant *cp_state_server_tenant(const struct cp_state *st,
						const struct tes_server *s)
{
	return s->tenant_id ? cp_tenant_find((struct cp_tables *)&st->tab, s->tenant_id) : NULL;
}

void cp_state_server_view(const struct cp_state *st, const struct tes_server *s, int64_t now,
			  unsigned *stage, enum tes_status *status)
{
	const struct tes_tenant *t = cp_state_server_tenant(st, s);

	*stage = tes_server_stage(s, t, &st->policy, now);
	*status = tes_server_status(s, t, &st->policy, now);
}

int64_t cp_state_next_event(const struct cp_state *st, const struct tes_server *s, int64_t now)
{
	int64_t next = tes_server_next_change(s, cp_state_server_tenant(st, s), &st->policy, now);
	int64_t forget = tes_server_forget_at(s, &st->policy);

	if (forget < next)
		next = forget;
	if (next <= now)
		next = now + 1;
	return next;
}

int64_t cp_state_seen_granularity(const struct cp_state *st)
{
	int64_t g = 3600, probe = (int64_t)st->policy.probe_interval_min * 60;

	/* A probe's sighting is what tells other gateways a probe was made:
	 * it must not wait longer than the interval. */
	if (probe > 0 && probe < g)
		g = probe;
	return g;
}

size_t cp_state_count_servers(const struct cp_state *st, uint32_t tenant_id)
{
	size_t n = 0;

	for (uint32_t i = 0; i < st->tab.nslots; i++) {
		const struct cp_server *c = cp_server_at((struct cp_tables *)&st->tab, i);

		if (c && c->v.s.tenant_id == tenant_id)
			n++;
	}
	return n;
}

/* ---- caps ---- */

void cp_state_cap_check(struct cp_state *st, uint32_t tenant_id)
{
	struct tes_tenant *t = tenant_id ? cp_tenant_find(&st->tab, tenant_id) : NULL;
	struct cp_note n = { .kind = CP_NOTE_TENANT, .slot = CP_NO_SLOT };
	bool at;

	if (!t)
		return;
	at = cp_tenant_servers(&st->tab, tenant_id) >= st->policy.servers_per_tenant;
	if (at == t->at_server_cap)
		return;
	t->at_server_cap = at;
	if (at)
		cp_warn("tenant %u (%s) reached its cap of %u servers: new servers are not tracked"
			" (tes_servers_not_tracked_total)",
			t->id, t->name, st->policy.servers_per_tenant);
	else
		cp_info("tenant %u (%s) is below its cap of %u servers again", t->id, t->name,
			st->policy.servers_per_tenant);
	n.now = cp_state_now(st);
	n.tenant = t;
	cp_state_emit(st, &n);
}

void cp_state_caps_check(struct cp_state *st)
{
	for (size_t i = 0; i < st->tab.ntenants; i++)
		cp_state_cap_check(st, st->tab.tenants[i].id);
}

/* ---- forgetting and flushing ---- */

void cp_state_forget(struct cp_state *st, uint32_t slot, const char *why)
{
	struct cp_server *c = cp_server_at(&st->tab, slot);
	struct cp_note n = { .kind = CP_NOTE_SERVER_GONE, .slot = CP_NO_SLOT };
	struct tes_server s;

	if (!c)
		return;
	s = c->v.s;
	/* Forgetting promises nothing to anyone: the row goes with the next
	 * batch (a crash before it forgets it again at start-up). */
	if (c->stored && cp_pending_delete(&st->tab, s.tenant_id, s.fqdn))
		cp_err("out of memory queueing the deletion of %s (it stays stored until it is"
		       " forgotten again)",
		       s.fqdn);
	else if (c->stored)
		st->tab.pending_del[st->tab.npending_del - 1].rev = c->v.rev;
	n.now = cp_state_now(st);
	n.server = &s;
	n.stage = c->v.stage_logged;
	n.status = (enum tes_status)c->v.status_logged;
	/* Untrusted input does not get to write a line per name it made up. */
	n.event = s.tenant_id != 0 ? why : NULL;
	cp_server_delete(&st->tab, slot);
	cp_state_emit(st, &n);
	cp_state_cap_check(st, s.tenant_id);
	/* A flood of evictions writes in batches, not one commit each, and
	 * the list of rows to delete stays bounded. */
	if (st->tab.npending_del >= 4096)
		cp_state_flush(st);
}

int cp_state_flush(struct cp_state *st)
{
	struct cp_tables *tab = &st->tab;
	size_t n = 0;

	if (st->fleet)
		return cp_fleet_flush(st, false);
	if (!tab->ndirty && !tab->npending_del)
		return 0;
	if (store_begin(st->store))
		goto fail;
	/* Deletions first: a server forgotten and seen again since the last
	 * flush is deleted and written anew. */
	for (size_t i = 0; i < tab->npending_del; i++) {
		if (store_delete_server(st->store, tab->pending_del[i].tenant_id,
					tab->pending_del[i].fqdn))
			goto fail;
	}
	for (size_t i = 0; i < tab->ndirty; i++) {
		struct cp_server *c = cp_server_at(tab, tab->dirty[i]);

		if (!c || !c->dirty)
			continue;
		if (store_put_server(st->store, &c->v))
			goto fail;
		n++;
	}
	if (store_commit(st->store))
		goto fail;
	for (size_t i = 0; i < tab->ndirty; i++) {
		struct cp_server *c = cp_server_at(tab, tab->dirty[i]);

		if (c && c->dirty) {
			c->dirty = false;
			c->stored = true;
		}
	}
	cp_debug("flushed %zu servers, deleted %zu", n, tab->npending_del);
	tab->ndirty = 0;
	tab->npending_del = 0;
	return 0;
fail:
	store_rollback(st->store);
	st->counts.store_errors++;
	cp_err("writing last-seen times and sources of %zu servers, %zu deletions: %s (will"
	       " retry)",
	       tab->ndirty, tab->npending_del, store_errmsg(st->store));
	return -1;
}
