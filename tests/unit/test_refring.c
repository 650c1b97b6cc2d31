/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Refused messages per server on their way to tescontrol (gateway/refring.c):
 * a worker's ring folds refusals of the same server and kind into its
 * newest slot, drops (and counts) only when full of distinct ones, and the
 * control thread's table sums them by server and hands them out in order,
 * bounded; and the counters message's "servers" member (contract/ctlproto.c)
 * carries them and is checked whole before any entry is used.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/state/refring.h"

static void test_fold_and_pop(void **state)
{
	struct refring *r = calloc(1, sizeof(*r));
	struct refusal out;
	uint32_t n;

	(void)state;
	for (int i = 0; i < 1000; i++)
		assert_true(refring_push(r, 7, "ex1.bear.local", true));
	assert_true(refring_push(r, 7, "ex1.bear.local", false)); /* another kind */
	assert_true(refring_push(r, 7, "ex1.bear.local", true));  /* not the newest */
	assert_true(refring_pop(r, &out, &n));
	assert_int_equal(n, 1000);
	assert_int_equal(out.tenant_id, 7);
	assert_true(out.throttle);
	assert_string_equal(out.fqdn, "ex1.bear.local");
	assert_true(refring_pop(r, &out, &n));
	assert_int_equal(n, 1);
	assert_false(out.throttle);
	assert_true(refring_pop(r, &out, &n));
	assert_int_equal(n, 1);
	assert_false(refring_pop(r, &out, &n));
	/* a taken slot takes nothing more: the next one is new */
	assert_true(refring_push(r, 7, "ex1.bear.local", true));
	assert_true(refring_pop(r, &out, &n));
	assert_int_equal(n, 1);
	assert_int_equal(refring_dropped(r), 0);
	free(r);
}

static void test_full(void **state)
{
	struct refring *r = calloc(1, sizeof(*r));
	char name[32];
	struct refusal out;
	uint32_t n;

	(void)state;
	for (unsigned i = 0; i < REFRING_SIZE; i++) {
		snprintf(name, sizeof(name), "s%u.local", i);
		assert_true(refring_push(r, 1, name, false));
	}
	assert_false(refring_push(r, 1, "one.more", false));
	/* the newest still folds */
	snprintf(name, sizeof(name), "s%u.local", REFRING_SIZE - 1);
	assert_true(refring_push(r, 1, name, false));
	assert_int_equal(refring_dropped(r), 1);
	for (unsigned i = 0; i < REFRING_SIZE; i++)
		assert_true(refring_pop(r, &out, &n));
	assert_int_equal(n, 2);
	free(r);
}

static void test_agg(void **state)
{
	struct refagg a = { 0 };
	struct refusal r;
	struct ctl_server_count out[3];

	(void)state;
	memset(&r, 0, sizeof(r));
	r.tenant_id = 2;
	snprintf(r.fqdn, sizeof(r.fqdn), "b.local");
	refagg_add(&a, &r, 5);
	r.throttle = true;
	refagg_add(&a, &r, 2);
	r.tenant_id = 1;
	snprintf(r.fqdn, sizeof(r.fqdn), "z.local");
	refagg_add(&a, &r, 1);
	r.tenant_id = 2;
	snprintf(r.fqdn, sizeof(r.fqdn), "a.local");
	refagg_add(&a, &r, 9);
	assert_int_equal(refagg_take(&a, out, 2), 2);
	assert_int_equal(out[0].tenant_id, 1);
	assert_string_equal(out[0].fqdn, "z.local");
	assert_int_equal(out[0].throttled, 1);
	assert_string_equal(out[1].fqdn, "a.local");
	assert_int_equal(out[1].throttled, 9);
	assert_int_equal(refagg_take(&a, out, 3), 1);
	assert_string_equal(out[0].fqdn, "b.local");
	assert_int_equal(out[0].throttled, 2);
	assert_int_equal(out[0].refused, 5);
	assert_int_equal(refagg_take(&a, out, 3), 0);
	/* bounded: beyond REFAGG_MAX servers, counted as dropped */
	for (unsigned i = 0; i < REFAGG_MAX + 3; i++) {
		snprintf(r.fqdn, sizeof(r.fqdn), "s%u", i);
		refagg_add(&a, &r, 2);
	}
	assert_int_equal(a.n, REFAGG_MAX);
	assert_int_equal(a.dropped, 6);
	refagg_free(&a);
}

static int collect(const struct ctl_server_count *c, void *ctx)
{
	struct ctl_server_count *v = ctx;

	while (v->fqdn[0])
		v++;
	*v = *c;
	return 0;
}

static void test_counters_member(void **state)
{
	struct ctl_server_count c[2], got[3];
	char err[CTL_ERR_MAX];
	json_t *counters = json_object();
	json_t *m = ctl_counters_to_json(counters); /* takes a reference of its own */
	json_t *back;
	uint8_t *frame;
	size_t len;

	(void)state;
	json_decref(counters);
	memset(c, 0, sizeof(c));
	c[0].tenant_id = 7;
	snprintf(c[0].fqdn, sizeof(c[0].fqdn), "EX1.bear.local");
	c[0].throttled = 3;
	c[0].refused = 1;
	c[1].tenant_id = 0;
	snprintf(c[1].fqdn, sizeof(c[1].fqdn), "nc.local");
	c[1].refused = 4;
	assert_int_equal(ctl_counters_add_servers(m, c, 2), 0);
	assert_int_equal(ctl_frame_encode(m, &frame, &len, err, sizeof(err)), 0);
	back = json_loadb((const char *)frame + 4, len - 4, 0, NULL);
	free(frame);
	memset(got, 0, sizeof(got));
	assert_int_equal(ctl_server_counts_from_json(back, collect, got, err, sizeof(err)), 0);
	assert_memory_equal(got, c, sizeof(c));
	json_decref(back);
	/* one bad entry: an error, and no entry handed on */
	json_array_append_new(json_object_get(m, "servers"),
			      json_pack("{s:i, s:s, s:i, s:i}", "tenant", 1, "fqdn", "x",
					"throttled", -1, "refused", 0));
	memset(got, 0, sizeof(got));
	assert_int_equal(ctl_server_counts_from_json(m, collect, got, err, sizeof(err)), -1);
	assert_string_equal(got[0].fqdn, "");
	assert_non_null(strstr(err, "throttled"));
	/* absent: nothing, no error (a gateway of the first release) */
	json_object_del(m, "servers");
	assert_int_equal(ctl_server_counts_from_json(m, collect, got, err, sizeof(err)), 0);
	json_object_set_new(m, "servers", json_string("x"));
	assert_int_equal(ctl_server_counts_from_json(m, collect, got, err, sizeof(err)), -1);
	json_decref(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fold_and_pop),
		cmocka_unit_test(test_full),
		cmocka_unit_test(test_agg),
		cmocka_unit_test(test_counters_member),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
