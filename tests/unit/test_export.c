/* SPDX-License-Identifier: BSD-3-Clause */
/* The state room's counters in the registry (gateway/state/export.c): the
 * control group without a control plane (everything 0, configured 0, on
 * /metrics all the same) and the enforcement state's table sizes and
 * generations under their telemetry keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "contract/promfmt.h"
#include "gateway/observe/metrics.h"
#include "gateway/observe/registry.h"
#include "gateway/state/enfstate.h"
#include "gateway/state/export.h"

static void test_no_control_plane(void **state)
{
	struct obs_registry *r = obs_new();
	struct prom_buf b;
	uint64_t v = 99;
	(void)state;

	assert_int_equal(ctlclient_export(NULL, r), 0);
	assert_true(obs_value(r, "control", "control_configured", &v));
	assert_int_equal(v, 0);
	assert_true(obs_value(r, "control", "sightings_dropped", &v));
	assert_int_equal(v, 0);
	memset(&b, 0, sizeof(b));
	gw_metrics_render(r, &b);
	assert_non_null(b.p);
	assert_non_null(strstr(b.p, "# TYPE tes_control_configured gauge\n"
				    "tes_control_configured 0\n"));
	assert_non_null(strstr(b.p, "tes_sightings_capped_total 0\n"));
	prom_buf_free(&b);
	obs_free(r);
}

static void test_enforcement_state(void **state)
{
	struct obs_registry *r = obs_new();
	uint64_t v = 99;
	(void)state;

	enfstate_thread_register();
	struct enfstate *st = enfstate_new(NULL, 0);
	assert_non_null(st);
	assert_int_equal(enfstate_export(st, r), 0);
	assert_true(obs_value(r, "enfstate", "servers", &v));
	assert_int_equal(v, 0);
	assert_true(obs_value(r, "enfstate", "policy_generation", &v));
	assert_int_equal(v, 1); /* the initial policy */
	assert_true(obs_value(r, "enfstate", "catalog_generation", &v));
	assert_int_equal(v, 0);
	enfstate_free(st);
	enfstate_thread_unregister();
	obs_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_control_plane),
		cmocka_unit_test(test_enforcement_state),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
