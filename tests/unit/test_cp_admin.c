/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The admin protocol's command table (controlplane/admin/): each command
 * run through cp_admin_run as the socket runs it, without a socket: the
 * arguments each refuses and the exact error, that a refused or failed
 * command changes nothing in the store, and what the successful ones do.
 * The store is the fake of cp_fakes.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "contract/adminproto.h"
#include "controlplane/admin/admin.h"
#include "controlplane/log.h"
#include "cp_fakes.h"

#define T0 INT64_C(1704067200) /* 2024-01-01 */
#define DAY 86400
#define OLD "15.1.2507.35" /* 2016 CU23, out of date */

struct fx {
	struct fake_journal j;
	struct fake_store fs;
	struct cp_clock clock;
	struct cp_state st;
	struct fake_sub sub;
	struct cp_loop loop;
	struct cp_esc esc;
	struct cp_gateways gws;
	struct cp_admin admin;
	struct ucred cred;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->clock.test = true;
	f->clock.test_now = T0;
	f->sub.j = &f->j;
	fake_store_init(&f->fs, &f->j);
	fake_state(&f->st, &f->fs, &f->clock, &f->sub);
	assert_int_equal(cp_loop_init(&f->loop), 0);
	cp_gateways_init(&f->gws, &f->loop, &f->st, 77);
	assert_int_equal(esc_init(&f->esc, &f->st, &f->clock, &f->loop), 0);
	assert_int_equal(cp_state_subscribe(&f->st, esc_on_note, &f->esc), 0);
	esc_evaluate_all(&f->esc, "start-up");
	cp_admin_init(&f->admin, &f->loop, &f->st, &f->esc, &f->gws, NULL, "/var/db/t.db");
	f->cred.uid = 1000;
	f->cred.gid = 1001;
	f->cred.pid = 4242;
	f->j.n = 0;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	cp_admin_stop(&f->admin);
	cp_gateways_stop(&f->gws);
	esc_fini(&f->esc);
	cp_loop_fini(&f->loop);
	cp_state_free(&f->st);
	fake_store_free(&f->fs);
	free(f);
	return 0;
}

/* Run cmd with args (JSON text, or NULL); the response. */
static json_t *run(struct fx *f, const char *cmd, const char *args)
{
	json_t *a = args ? json_loads(args, 0, NULL) : NULL;
	json_t *r;

	if (args && !a)
		fail_msg("bad test JSON: %s", args);
	r = cp_admin_run(&f->admin, cmd, a, &f->cred);
	json_decref(a);
	assert_non_null(r);
	return r;
}

/* The command fails with exactly want. */
static void refused(struct fx *f, const char *cmd, const char *args, const char *want)
{
	json_t *r = run(f, cmd, args);

	if (!json_is_false(json_object_get(r, "ok")))
		fail_msg("%s %s: not refused", cmd, args ? args : "");
	assert_string_equal(json_string_value(json_object_get(r, "error")), want);
	json_decref(r);
}

/* The command succeeds; its result (the caller's reference). */
static json_t *ok(struct fx *f, const char *cmd, const char *args)
{
	json_t *r = run(f, cmd, args);
	json_t *res;

	if (!json_is_true(json_object_get(r, "ok")))
		fail_msg("%s %s: %s", cmd, args ? args : "",
			 json_string_value(json_object_get(r, "error")));
	res = json_incref(json_object_get(r, "result"));
	json_decref(r);
	return res;
}

static void detect(struct fx *f, uint32_t tenant, const char *fqdn)
{
	struct ctl_sighting s = fake_sighting(tenant, fqdn, OLD, NULL);
	enum tes_change ch;
	char msg[256];

	assert_int_equal(cp_state_apply_sighting(&f->st, &s, &ch, msg, sizeof(msg)), 0);
}

static void test_table_and_unknown(void **state)
{
	struct fx *f = *state;

	refused(f, "nope", NULL, "unknown command \"nope\"");
	refused(f, "", NULL, "unknown command \"\"");
	/* args absent is an empty object: each command says what it misses */
	refused(f, ADMIN_TENANT_ADD, NULL, "missing argument \"id\"");
	refused(f, ADMIN_SERVER_SHOW, NULL, "missing argument \"tenant\"");
	refused(f, ADMIN_CATALOG_CHECK, NULL, "missing argument \"build\"");
	refused(f, ADMIN_POLICY_LOAD, NULL, "missing argument \"text\"");
	assert_int_equal(f->j.n, 0);
}

static void test_tenant_add_arguments(void **state)
{
	struct fx *f = *state;
	json_t *r;

	refused(f, ADMIN_TENANT_ADD, "{\"id\":0,\"name\":\"x\"}",
		"\"id\" must be a whole number from 1 to 4294967295");
	refused(f, ADMIN_TENANT_ADD, "{\"id\":\"1\",\"name\":\"x\"}",
		"\"id\" must be a whole number from 1 to 4294967295");
	refused(f, ADMIN_TENANT_ADD, "{\"id\":1}", "missing argument \"name\"");
	refused(f, ADMIN_TENANT_ADD, "{\"id\":1,\"name\":7}", "\"name\" must be a string");
	refused(f, ADMIN_TENANT_ADD, "{\"id\":1,\"name\":\"\"}",
		"the name must have 1 to 63 characters");
	refused(f, ADMIN_TENANT_ADD, "{\"id\":1,\"name\":\"a\\u0007b\"}",
		"the name holds a control character");
	refused(f, ADMIN_TENANT_ADD, "{\"id\":1,\"name\":\"x\",\"connectors\":{}}",
		"\"connectors\" must be a list of at most 16 connectors");
	assert_int_equal(f->j.n, 0); /* nothing stored, nobody told */
	r = ok(f, ADMIN_TENANT_ADD,
	       "{\"id\":1,\"name\":\"Bear\",\"connectors\":[{\"range\":\"198.51.100.0/24\"}]}");
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
	assert_int_equal(json_integer_value(json_object_get(r, "servers")), 0);
	json_decref(r);
	assert_string_equal(f->j.line[0], "put_tenant 1");
	assert_string_equal(f->j.line[1], "note tenant 1 tenant_add");
	/* the line names who asked */
	assert_non_null(strstr(f->sub.last_fields, "{\"uid\":1000,\"gid\":1001,\"pid\":4242,"
						   "\"before\":null,\"after\":{\"id\":1"));
	refused(f, ADMIN_TENANT_ADD, "{\"id\":1,\"name\":\"Again\"}",
		"tenant 1 already exists (tesctl tenant set changes it)");
	/* a store that refuses: an error, the tenant not kept */
	f->fs.fail = "put_tenant";
	refused(f, ADMIN_TENANT_ADD, "{\"id\":2,\"name\":\"Wolf\"}",
		"could not store the tenant: fake put_tenant failure (nothing was changed)");
	assert_null(cp_tenant_find(&f->st.tab, 2));
}

static void test_tenant_set_and_delete(void **state)
{
	struct fx *f = *state;
	json_t *r;
	unsigned n;

	json_decref(ok(f, ADMIN_TENANT_ADD, "{\"id\":1,\"name\":\"Bear\"}"));
	refused(f, ADMIN_TENANT_SET, "{\"id\":1}",
		"nothing to change: give a name, connectors, or both");
	refused(f, ADMIN_TENANT_SET, "{\"id\":5,\"name\":\"x\"}", "no tenant 5");
	/* the same name: nothing written */
	n = f->j.n;
	r = ok(f, ADMIN_TENANT_SET, "{\"id\":1,\"name\":\"Bear\"}");
	assert_true(json_is_false(json_object_get(r, "changed")));
	json_decref(r);
	assert_int_equal(f->j.n, n);
	r = ok(f, ADMIN_TENANT_SET, "{\"id\":1,\"name\":\"Bear2\"}");
	assert_true(json_is_true(json_object_get(r, "changed")));
	json_decref(r);
	/* a tenant with servers goes only when asked to */
	detect(f, 1, "EX1.bear.local");
	detect(f, 1, "EX2.bear.local");
	refused(f, ADMIN_TENANT_DELETE, "{\"id\":1}",
		"tenant 1 has 2 servers on record; deleting the tenant forgets them (first"
		" detections, stage clocks); to do so: tesctl tenant delete 1 --force");
	assert_non_null(cp_tenant_find(&f->st.tab, 1));
	r = ok(f, ADMIN_TENANT_DELETE, "{\"id\":1,\"force\":true}");
	assert_int_equal(json_integer_value(json_object_get(r, "servers_deleted")), 2);
	assert_string_equal(json_string_value(json_object_get(r, "name")), "Bear2");
	json_decref(r);
	assert_null(cp_tenant_find(&f->st.tab, 1));
	assert_int_equal(f->fs.ntenants, 0);
	assert_int_equal(f->fs.nservers, 0);
}

static void test_report_and_servers(void **state)
{
	struct fx *f = *state;
	json_t *r, *servers;

	json_decref(ok(f, ADMIN_TENANT_ADD, "{\"id\":1,\"name\":\"Bear\"}"));
	json_decref(ok(f, ADMIN_TENANT_ADD, "{\"id\":2,\"name\":\"Wolf\"}"));
	detect(f, 2, "a.wolf.local");
	detect(f, 1, "ex2.bear.local");
	detect(f, 1, "EX1.bear.local");
	refused(f, ADMIN_REPORT, "{\"limit\":0}",
		"\"limit\" must be a whole number from 1 to 2000");
	refused(f, ADMIN_REPORT, "{\"tenant\":9}", "no tenant 9");
	/* sorted by tenant, then name without case; paged */
	r = ok(f, ADMIN_REPORT, "{\"limit\":2}");
	servers = json_object_get(r, "servers");
	assert_int_equal(json_integer_value(json_object_get(r, "total")), 3);
	assert_int_equal(json_array_size(servers), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(servers, 0), "fqdn")),
			    "EX1.bear.local");
	assert_string_equal(json_string_value(json_object_get(json_array_get(servers, 1), "fqdn")),
			    "ex2.bear.local");
	assert_int_equal(json_integer_value(json_object_get(r, "next_offset")), 2);
	json_decref(r);
	r = ok(f, ADMIN_REPORT, "{\"offset\":2}");
	assert_true(json_is_null(json_object_get(r, "next_offset")));
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(r, "servers"), 0), "fqdn")),
			    "a.wolf.local");
	json_decref(r);
	refused(f, ADMIN_SERVER_SHOW, "{\"tenant\":1,\"fqdn\":\"nope.bear.local\"}",
		"tenant 1 has no server nope.bear.local on record");
	r = ok(f, ADMIN_SERVER_SHOW, "{\"tenant\":1,\"fqdn\":\"ex1.bear.local\"}");
	assert_string_equal(json_string_value(json_object_get(r, "first_detected")),
			    "2024-01-01T00:00:00Z");
	assert_string_equal(json_string_value(json_object_get(r, "next_change")),
			    "2024-01-31T00:00:00Z");
	json_decref(r);
	f->j.n = 0;
	r = ok(f, ADMIN_SERVER_RESET, "{\"tenant\":1,\"fqdn\":\"ex1.bear.local\"}");
	assert_true(json_is_true(json_object_get(r, "reset")));
	json_decref(r);
	assert_string_equal(f->j.line[0], "delete_server 1 EX1.bear.local");
	assert_string_equal(f->j.line[1], "note server_gone EX1.bear.local reset");
	assert_null(fake_store_server(&f->fs, 1, "EX1.bear.local"));
}

static void test_pauses(void **state)
{
	struct fx *f = *state;
	json_t *r;

	json_decref(ok(f, ADMIN_TENANT_ADD, "{\"id\":1,\"name\":\"Bear\"}"));
	detect(f, 1, "EX1.bear.local");
	refused(f, ADMIN_PAUSE_ADD, "{\"tenant\":1,\"days\":0}",
		"\"days\" must be a whole number from 1 to 366");
	refused(f, ADMIN_PAUSE_ADD, "{\"tenant\":3,\"days\":1}", "no tenant 3");
	refused(f, ADMIN_PAUSE_RESUME, "{\"tenant\":1}", "tenant 1 is not paused");
	refused(f, ADMIN_PAUSE_ADD, "{\"tenant\":1,\"days\":91}",
		"pause quota exceeded: tenant 1 has 90 of its 90 pause days left in 2024, and 91"
		" were asked for");
	f->j.n = 0;
	r = ok(f, ADMIN_PAUSE_ADD, "{\"tenant\":1,\"days\":10}");
	assert_true(json_is_true(json_object_get(r, "active")));
	assert_int_equal(json_integer_value(json_object_get(r, "days_left")), 80);
	json_decref(r);
	/* stored, then the tenant's note, then escalation's look at its
	 * servers (Paused now) */
	assert_string_equal(f->j.line[0], "put_tenant 1");
	assert_string_equal(f->j.line[1], "note tenant 1 pause");
	assert_true(fake_journal_find(&f->j, "note server EX1.bear.local status_change", 2) > 1);
	assert_int_equal(f->st.counts.pauses, 1);
	r = ok(f, ADMIN_PAUSE_RESUME, "{\"tenant\":1}");
	assert_true(json_is_false(json_object_get(r, "active")));
	json_decref(r);
	assert_int_equal(f->st.counts.resumes, 1);
}

static void test_documents(void **state)
{
	struct fx *f = *state;
	json_t *r;
	unsigned n;

	refused(f, ADMIN_CATALOG_CHECK, "{\"build\":\"15.1\"}",
		"\"15.1\" is not a build (four numbers, like 15.1.2507.39)");
	r = ok(f, ADMIN_CATALOG_CHECK, "{\"build\":\"15.1.2507.35\"}");
	assert_true(json_is_false(json_object_get(r, "compliant")));
	json_decref(r);
	/* a catalog that does not parse changes nothing */
	n = f->j.n;
	r = run(f, ADMIN_CATALOG_LOAD, "{\"builds\":\"nonsense\",\"compliance\":\"\"}");
	assert_true(json_is_false(json_object_get(r, "ok")));
	assert_non_null(
		strstr(json_string_value(json_object_get(r, "error")), "(nothing was changed)"));
	json_decref(r);
	assert_int_equal(f->j.n, n);
	refused(f, ADMIN_POLICY_LOAD, "{\"text\":\"[stages]\\nbogus = 1\\n\"}",
		"policy.conf:2: unknown key 'bogus' in [stages] (nothing was changed)");
	/* a dry run writes nothing */
	r = ok(f, ADMIN_POLICY_LOAD, "{\"text\":\"[pause]\\nquota_days = 5\\n\",\"dry_run\":true}");
	assert_true(json_is_true(json_object_get(r, "dry_run")));
	json_decref(r);
	assert_int_equal(f->j.n, n);
	assert_int_equal(f->st.policy.pause_quota_days, 90);
	/* a load: stored, in force, announced */
	r = ok(f, ADMIN_POLICY_LOAD,
	       "{\"text\":\"[pause]\\nquota_days = 5\\n\",\"name\":\"p.conf\"}");
	json_decref(r);
	assert_string_equal(f->j.line[n], "put_doc policy");
	assert_string_equal(f->j.line[n + 1], "note policy - policy_load");
	assert_int_equal(f->st.policy.pause_quota_days, 5);
	r = ok(f, ADMIN_POLICY_SHOW, NULL);
	assert_string_equal(json_string_value(json_object_get(r, "name")), "p.conf");
	json_decref(r);
}

static void test_status_and_clock(void **state)
{
	struct fx *f = *state;
	json_t *r;

	json_decref(ok(f, ADMIN_TENANT_ADD, "{\"id\":1,\"name\":\"Bear\"}"));
	detect(f, 1, "EX1.bear.local");
	refused(f, ADMIN_CLOCK, "{\"op\":\"stop\"}", "clock: \"stop\" is not set, advance or show");
	refused(f, ADMIN_CLOCK, "{\"op\":\"advance\"}", "missing argument \"seconds\"");
	r = ok(f, ADMIN_CLOCK, "{\"op\":\"advance\",\"seconds\":2678400}");
	assert_string_equal(json_string_value(json_object_get(r, "now_iso")),
			    "2024-02-01T00:00:00Z");
	json_decref(r);
	r = ok(f, ADMIN_STATUS, NULL);
	assert_int_equal(json_integer_value(json_object_get(r, "tenants")), 1);
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(r, "servers"), "throttling")),
		1);
	assert_int_equal(json_integer_value(
				 json_object_get(json_object_get(r, "counts"), "first_detections")),
			 1);
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(r, "counts"), "stage_changes")),
		1);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "store"), "path")),
			    "/var/db/t.db");
	assert_int_equal(json_integer_value(json_object_get(r, "gateways_connected")), 0);
	json_decref(r);
}

static void test_xdp_not_configured(void **state)
{
	struct fx *f = *state;
	json_t *r = run(f, ADMIN_XDP_STATUS, NULL);
	char e[256];

	/* either build: without XDP configured, or without XDP built */
	assert_non_null(json_string_value(json_object_get(r, "error")));
	snprintf(e, sizeof(e), "%s", json_string_value(json_object_get(r, "error")));
	json_decref(r);
	assert_true(strcmp(e, "XDP is not configured (xdp_interfaces is empty)") == 0 ||
		    strcmp(e, "this tescontrol was built without XDP (-Dxdp)") == 0);
	refused(f, ADMIN_XDP_DENY, "{\"address\":\"198.18.0.1\"}", e);
	assert_int_equal(f->sub.count[CP_NOTE_EVENT], 0); /* nothing done, no line */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_table_and_unknown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenant_add_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenant_set_and_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_report_and_servers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pauses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_documents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_and_clock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_xdp_not_configured, setup, teardown),
	};

	cp_log_init(CP_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
