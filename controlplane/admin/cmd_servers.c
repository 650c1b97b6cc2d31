/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * report, server show, server reset.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "controlplane/admin/admin_int.h"

#define REPORT_PAGE_DEFAULT 1000
#define REPORT_PAGE_MAX 2000
#define REPORT_PAGE_BYTES (CTL_FRAME_MAX / 2)

static int cmp_slots(const void *a, const void *b, void *ctx)
{
	const struct cp_tables *tab = ctx;
	const struct tes_server *x = &tab->srv[*(const uint32_t *)a].v.s;
	const struct tes_server *y = &tab->srv[*(const uint32_t *)b].v.s;

	if (x->tenant_id != y->tenant_id)
		return x->tenant_id < y->tenant_id ? -1 : 1;
	return strcasecmp(x->fqdn, y->fqdn);
}

/* The slots of the servers a report shows, sorted by tenant and name; the
 * count, or -1 without memory. */
static long report_slots(struct cp_admin *a, int64_t tenant, bool all, uint32_t **out)
{
	struct cp_tables *tab = &a->st->tab;
	uint32_t *slots = malloc(((size_t)tab->nlive + 1) * sizeof(*slots));
	uint32_t n = 0;

	*out = slots;
	if (!slots)
		return -1;
	for (uint32_t i = 0; i < tab->nslots; i++) {
		const struct cp_server *c = cp_server_at(tab, i);

		if (c && (tenant < 0 || c->v.s.tenant_id == (uint32_t)tenant) &&
		    (all || !tes_server_compliant_only(&c->v.s)))
			slots[n++] = i;
	}
	/* Sorted on every page: pages stay consistent while servers come
	 * and go between requests, at O(n log n) per page. */
	qsort_r(slots, n, sizeof(*slots), cmp_slots, tab);
	return n;
}

int cmd_report(struct cp_admin *a, const json_t *args, json_t **result, char *err, size_t errlen)
{
	int64_t tenant, offset, limit, end, now = cp_state_now(a->st);
	uint32_t *slots;
	long n;
	size_t bytes = 0;
	json_t *arr, *o;
	/* Servers compliant since first seen are tracked for the shared-source
	 * decision, not reported unless asked for. */
	bool all = arg_bool(args, "all");

	if (arg_int(args, "tenant", 0, UINT32_MAX, false, -1, &tenant, err, errlen) ||
	    arg_int(args, "offset", 0, UINT32_MAX, false, 0, &offset, err, errlen) ||
	    arg_int(args, "limit", 1, REPORT_PAGE_MAX, false, REPORT_PAGE_DEFAULT, &limit, err,
		    errlen))
		return -1;
	if (tenant > 0 && !cp_tenant_find(&a->st->tab, (uint32_t)tenant)) {
		snprintf(err, errlen, "no tenant %lld", (long long)tenant);
		return -1;
	}
	n = report_slots(a, tenant, all, &slots);
	if (n < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	arr = json_array();
	/* A page ends at limit entries or at half a frame, whichever comes
	 * first: an entry's size grows with what the report shows, and a
	 * response that outgrew a frame could not be sent at all. */
	for (end = offset; end < n && end < offset + limit; end++) {
		json_t *e = server_json(a, &a->st->tab.srv[slots[end]], now, false);
		size_t sz = json_dumpb(e, NULL, 0, JSON_COMPACT) + 1;

		if (end > offset && bytes + sz > REPORT_PAGE_BYTES) {
			json_decref(e);
			break;
		}
		bytes += sz;
		json_array_append_new(arr, e);
	}
	o = json_pack("{s:I, s:I, s:o}", "total", (json_int_t)n, "offset", (json_int_t)offset,
		      "servers", arr);
	json_object_set_new(o, "next_offset", end < n ? json_integer(end) : json_null());
	json_object_set_new(o, "clock", esc_clock_json(a->esc));
	free(slots);
	*result = o;
	return 0;
}

int cmd_server_show(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		    size_t errlen)
{
	uint32_t slot;

	if (arg_server(a, args, &slot, err, errlen))
		return -1;
	*result = server_json(a, cp_server_at(&a->st->tab, slot), cp_state_now(a->st), true);
	return 0;
}

int cmd_server_reset(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		     size_t errlen)
{
	struct tes_server s;
	uint32_t slot;
	json_t *who;
	int rc;

	if (arg_server(a, args, &slot, err, errlen))
		return -1;
	s = cp_server_at(&a->st->tab, slot)->v.s;
	who = admin_who(a);
	rc = cp_state_reset_server(a->st, slot, who, err, errlen);
	json_decref(who);
	if (rc)
		return -1;
	*result = json_pack("{s:I, s:s, s:b}", "tenant", (json_int_t)s.tenant_id, "fqdn", s.fqdn,
			    "reset", 1);
	return 0;
}
