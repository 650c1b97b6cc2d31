/* SPDX-License-Identifier: BSD-3-Clause */
/* The discard backend (gateway/delivery/discard.c): every message answered
 * 250 at once, inside submit, and counted with its octets; an aborted one
 * is not counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/delivery/discard.h"

struct verdict {
	int calls;
	struct smtp_reply r;
};

static void done(void *arg, const struct smtp_reply *r)
{
	struct verdict *v = arg;

	v->calls++;
	v->r = *r;
}

static void test_answers_250_inside_submit(void **state)
{
	struct delivery_backend be;
	struct smtp_envelope env;
	struct discard_stats before, after;
	struct verdict v = { 0 };
	(void)state;

	memset(&env, 0, sizeof(env));
	discard_backend(&be);
	assert_string_equal(be.name, "discard");
	assert_null(be.admit); /* every size is admitted */
	discard_stats(&before);
	struct delivery_msg *m = be.open(be.be, 3);
	assert_non_null(m);
	assert_int_equal(be.write(m, (const uint8_t *)"Subject: x\r\n", 12), 0);
	assert_int_equal(be.write(m, (const uint8_t *)"\r\nbody\r\n", 8), 0);
	be.submit(m, &env, "198.18.0.1:25", done, &v);
	assert_int_equal(v.calls, 1);
	assert_int_equal(v.r.code, 250);
	assert_string_equal(v.r.enh, "2.0.0");
	discard_stats(&after);
	assert_int_equal(after.discarded - before.discarded, 1);
	assert_int_equal(after.bytes - before.bytes, 20);
}

static void test_abort_is_not_counted(void **state)
{
	struct delivery_backend be;
	struct discard_stats before, after;
	(void)state;

	discard_backend(&be);
	discard_stats(&before);
	struct delivery_msg *m = be.open(be.be, 0);
	assert_non_null(m);
	assert_int_equal(be.write(m, (const uint8_t *)"abc", 3), 0);
	be.abort(m);
	discard_stats(&after);
	assert_int_equal(after.discarded, before.discarded);
	assert_int_equal(after.bytes, before.bytes);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answers_250_inside_submit),
		cmocka_unit_test(test_abort_is_not_counted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
