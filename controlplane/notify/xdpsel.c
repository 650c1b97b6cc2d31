/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Which sources the XDP drop list holds, from the state alone (no maps).
 *
 * A source is dropped only when it fronts blocked servers alone: every
 * server it carried within carried_days (tes_carried_recent) would be
 * dropped there now (tes_decide says DROP), and no probe of any of them is
 * due from it (tes_probe_due_at: an hour, by default, after the last
 * message of that server from there was read to its headers).  While a
 * probe is due the source is left out, so that the gateway's own
 * connect-time check, which lets one probe through per server and source,
 * sees the connection; the probe's sighting puts it back within a second.
 * One server on the source that answers (compliant, in an open minute,
 * paused, Stale) keeps the whole source off the list.
 */
#include "controlplane/notify/xdp.h"

#include <stdlib.h>

struct src_verdict {
	struct tes_addr a;
	bool used;
	bool drop;
};

struct src_table {
	struct src_verdict *v;
	size_t cap; /* a power of two */
};

static struct src_verdict *src_slot(struct src_table *t, const struct tes_addr *a)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	size_t i;

	h = (h ^ a->family) * UINT64_C(0x100000001b3);
	for (unsigned k = 0; k < 16; k++)
		h = (h ^ a->a[k]) * UINT64_C(0x100000001b3);
	for (i = (size_t)h & (t->cap - 1); t->v[i].used; i = (i + 1) & (t->cap - 1)) {
		if (tes_addr_equal(&t->v[i].a, a))
			return &t->v[i];
	}
	return &t->v[i];
}

/* One server's recent sources: each stays droppable only while this
 * server, too, would be dropped there. */
static void judge_server(const struct cp_state *st, struct src_table *tab,
			 const struct tes_server *srv, int64_t now)
{
	const struct tes_tenant *t = cp_state_server_tenant(st, srv);

	for (unsigned i = 0; i < srv->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
		struct tes_verdict v;
		struct src_verdict *e;
		bool drop;

		if (srv->sources[i].family == TES_ADDR_NONE ||
		    !tes_carried_recent(srv->source_seen[i], &st->policy, now))
			continue;
		/* via_connector false: a source dropped at the IP layer loses
		 * all its mail, so only what an address connector (or the
		 * scope) already covers is dropped here. */
		tes_decide(srv, t, &st->policy, now, &srv->sources[i], NULL, false, &v);
		drop = v.action == TES_DROP &&
		       now < tes_probe_due_at(&st->policy, srv->source_seen[i]);
		e = src_slot(tab, &srv->sources[i]);
		if (!e->used) {
			e->used = true;
			e->a = srv->sources[i];
			e->drop = drop;
		} else {
			e->drop = e->drop && drop;
		}
	}
}

long cp_xdp_select(const struct cp_state *st, int64_t now, struct tes_addr **out)
{
	const struct cp_tables *tabs = &st->tab;
	struct src_table tab = { NULL, 64 };
	struct tes_addr *drop;
	size_t pairs = 0, n = 0;

	*out = NULL;
	if (st->policy.full_block != TES_FULL_BLOCK_DROP)
		return 0;
	for (uint32_t slot = 0; slot < tabs->nslots; slot++) {
		if (tabs->srv[slot].live)
			pairs += tabs->srv[slot].v.s.nsources;
	}
	while (tab.cap < 2 * pairs + 1)
		tab.cap *= 2;
	tab.v = calloc(tab.cap, sizeof(*tab.v));
	drop = malloc((pairs + 1) * sizeof(*drop));
	if (!tab.v || !drop) {
		free(tab.v);
		free(drop);
		return -1;
	}
	for (uint32_t slot = 0; slot < tabs->nslots; slot++) {
		if (tabs->srv[slot].live)
			judge_server(st, &tab, &tabs->srv[slot].v.s, now);
	}
	for (size_t i = 0; i < tab.cap; i++) {
		if (tab.v[i].used && tab.v[i].drop)
			drop[n++] = tab.v[i].a;
	}
	free(tab.v);
	if (!n) {
		free(drop);
		drop = NULL;
	}
	*out = drop;
	return (long)n;
}
