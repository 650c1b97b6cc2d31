/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The enforcement event log (controlplane/notify/evlog.c): the exact line a
 * notification makes (docs/telemetry.md lists the members), no line for a
 * note without an event, one whole line per write on the file, and a
 * rotated file let go on reopen.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "controlplane/log.h"
#include "controlplane/notify/evlog.h"

#define T0 INT64_C(1704067200) /* 2024-01-01 */

static struct tes_server a_server(uint32_t tenant)
{
	struct tes_server s;

	memset(&s, 0, sizeof(s));
	s.tenant_id = tenant;
	snprintf(s.fqdn, sizeof(s.fqdn), "EX1.bear.local");
	assert_true(ex_build_from_str("15.1.2507.35", &s.build));
	s.family = ex_family_of(&s.build);
	return s;
}

static struct tes_tenant a_tenant(void)
{
	struct tes_tenant t;

	memset(&t, 0, sizeof(t));
	t.id = 1;
	snprintf(t.name, sizeof(t.name), "Bear \"q\"");
	return t;
}

static void expect_line(const struct cp_note *n, int64_t now, const char *want)
{
	char *line = cp_evlog_format(n, now);

	assert_non_null(line);
	assert_string_equal(line, want);
	free(line);
}

static void test_server_line(void **state)
{
	struct tes_server s = a_server(1);
	struct tes_tenant t = a_tenant();
	struct cp_note n = {
		.kind = CP_NOTE_SERVER,
		.server = &s,
		.tenant = &t,
		.stage = 3,
		.status = TES_STATUS_THROTTLING,
		.event = "stage_change",
	};

	(void)state;
	n.fields = json_pack("{s:i, s:s, s:n}", "from_stage", 2, "from_status", "Throttling",
			     "reason", "");
	expect_line(&n, T0,
		    "{\"time\":\"2024-01-01T00:00:00Z\",\"epoch\":1704067200,\"event\":"
		    "\"stage_change\",\"tenant\":1,\"tenant_name\":\"Bear \\\"q\\\"\",\"server\":"
		    "\"EX1.bear.local\",\"build\":\"15.1.2507.35\",\"family\":\"2016\",\"stage\":3,"
		    "\"status\":\"Throttling\",\"from_stage\":2,\"from_status\":\"Throttling\","
		    "\"reason\":null}\n");
	json_decref(n.fields);
	/* tenant 0: mail over no connector has no tenant name */
	s = a_server(0);
	n.tenant = NULL;
	n.kind = CP_NOTE_SERVER_GONE;
	n.event = "forgotten";
	n.fields = NULL;
	n.status = TES_STATUS_STALE;
	expect_line(
		&n, T0 + 1,
		"{\"time\":\"2024-01-01T00:00:01Z\",\"epoch\":1704067201,\"event\":\"forgotten\","
		"\"tenant\":0,\"tenant_name\":null,\"server\":\"EX1.bear.local\",\"build\":"
		"\"15.1.2507.35\",\"family\":\"2016\",\"stage\":3,\"status\":\"Stale\"}\n");
}

static void test_tenant_and_event_lines(void **state)
{
	struct tes_tenant t = a_tenant();
	struct cp_note n = { .kind = CP_NOTE_TENANT, .tenant = &t, .event = "pause" };

	(void)state;
	n.fields = json_pack("{s:i, s:i, s:i}", "uid", 0, "gid", 0, "pid", 7);
	expect_line(
		&n, T0,
		"{\"time\":\"2024-01-01T00:00:00Z\",\"epoch\":1704067200,\"event\":\"pause\","
		"\"tenant\":1,\"tenant_name\":\"Bear \\\"q\\\"\",\"uid\":0,\"gid\":0,\"pid\":7}\n");
	/* a line about no server or tenant: only the common members and its own */
	n.kind = CP_NOTE_EVENT;
	n.tenant = NULL;
	n.event = "xdp_deny";
	expect_line(
		&n, T0,
		"{\"time\":\"2024-01-01T00:00:00Z\",\"epoch\":1704067200,\"event\":\"xdp_deny\","
		"\"uid\":0,\"gid\":0,\"pid\":7}\n");
	json_decref(n.fields);
	/* no event, no line */
	n.event = NULL;
	assert_null(cp_evlog_format(&n, T0));
}

static void read_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void test_file_and_rotation(void **state)
{
	char dir[] = "/tmp/test-cp-evlog-XXXXXX", path[128], moved[160], buf[4096];
	struct cp_clock clock = { .test = true, .test_now = T0 };
	struct cp_evlog e;
	struct tes_tenant t = a_tenant();
	struct cp_note n = { .kind = CP_NOTE_TENANT, .tenant = &t, .event = "tenant_add" };
	struct cp_note quiet = { .kind = CP_NOTE_TENANT, .tenant = &t };

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/events.log", dir);
	snprintf(moved, sizeof(moved), "%s/events.log.1", dir);
	assert_int_equal(cp_evlog_open(&e, path, &clock), 0);
	cp_evlog_on_note(&e, &n);
	cp_evlog_on_note(&e, &quiet); /* no event: nothing written */
	assert_int_equal(rename(path, moved), 0);
	clock.test_now += 60;
	cp_evlog_reopen(&e);
	cp_evlog_on_note(&e, &n);
	cp_evlog_close(&e);
	read_file(moved, buf, sizeof(buf));
	assert_string_equal(buf, "{\"time\":\"2024-01-01T00:00:00Z\",\"epoch\":1704067200,"
				 "\"event\":\"tenant_add\",\"tenant\":1,\"tenant_name\":\"Bear "
				 "\\\"q\\\"\"}\n");
	read_file(path, buf, sizeof(buf));
	assert_string_equal(buf, "{\"time\":\"2024-01-01T00:01:00Z\",\"epoch\":1704067260,"
				 "\"event\":\"tenant_add\",\"tenant\":1,\"tenant_name\":\"Bear "
				 "\\\"q\\\"\"}\n");
	/* no event log configured: notes are dropped, nothing opened */
	assert_int_equal(cp_evlog_open(&e, "", &clock), 0);
	assert_int_equal(e.fd, -1);
	cp_evlog_on_note(&e, &n);
	/* a file that cannot be opened is an error at start-up */
	assert_int_equal(cp_evlog_open(&e, "/nonexistent-dir/events.log", &clock), -1);
	unlink(path);
	unlink(moved);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server_line),
		cmocka_unit_test(test_tenant_and_event_lines),
		cmocka_unit_test(test_file_and_rotation),
	};

	cp_log_init(CP_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
