/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tescontrol's configuration file (controlplane/config.c): the defaults,
 * every kind of key, and each refusal with the file, the line and the key
 * (docs/tescontrol.8.md).
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

#include "controlplane/config.h"

static char dir[] = "/tmp/test-cp-config-XXXXXX";
static char path[128];

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/tescontrol.conf", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	return 0;
}

static int load(const char *text, struct cp_config *c, char *err, size_t errlen)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	cp_config_defaults(c);
	return cp_config_load(c, path, err, errlen);
}

/* text is refused with "PATH:want" */
static void refused(const char *text, const char *want)
{
	struct cp_config c;
	char err[512], expect[512];

	assert_int_equal(load(text, &c, err, sizeof(err)), -1);
	snprintf(expect, sizeof(expect), "%s:%s", path, want);
	assert_string_equal(err, expect);
}

static void test_defaults(void **state)
{
	struct cp_config c;

	(void)state;
	cp_config_defaults(&c);
	cp_config_finish(&c);
	assert_string_equal(c.state_dir, "/var/lib/tescontrol");
	assert_string_equal(c.db_path, "/var/lib/tescontrol/tescontrol.db");
	assert_string_equal(c.gateway_socket, "/run/tescontrol/gateway.sock");
	assert_string_equal(c.admin_socket, "/run/tescontrol/admin.sock");
	assert_string_equal(c.metrics_listen, "127.0.0.1:9464");
	assert_string_equal(c.xdp_mode, "auto");
	assert_string_equal(c.xdp_ports, "25");
	assert_int_equal(c.flush_seconds, 2);
	assert_int_equal(c.log_level, CP_INFO);
	assert_false(c.xdp_required);
	assert_string_equal(c.policy_file, "");
	assert_string_equal(c.event_log, "");
}

static void test_every_kind(void **state)
{
	struct cp_config c;
	char err[512] = "";

	(void)state;
	assert_int_equal(load("# a comment\n"
			      "; another\n"
			      "\n"
			      "state_dir = /srv/tc \n"
			      "  log_level=debug\n"
			      "flush_seconds = 3600\n"
			      "metrics_listen =\n"
			      "event_log = -\n"
			      "xdp_interfaces = eth1, eth2\n"
			      "xdp_mode = generic\n"
			      "xdp_required = yes\n"
			      "xdp_ports = 25, 587 2525\n"
			      "admin_group = tesadm\n"
			      "user = tescontrol\n",
			      &c, err, sizeof(err)),
			 0);
	cp_config_finish(&c);
	assert_string_equal(c.state_dir, "/srv/tc");
	assert_string_equal(c.db_path, "/srv/tc/tescontrol.db");
	assert_int_equal(c.log_level, CP_DEBUG);
	assert_int_equal(c.flush_seconds, 3600);
	assert_string_equal(c.metrics_listen, "");
	assert_string_equal(c.event_log, "-");
	assert_string_equal(c.xdp_interfaces, "eth1, eth2");
	assert_string_equal(c.xdp_mode, "generic");
	assert_true(c.xdp_required);
	assert_string_equal(c.xdp_ports, "25, 587 2525");
	assert_string_equal(c.admin_group, "tesadm");
	assert_string_equal(c.user, "tescontrol");
	/* db_path given is kept */
	assert_int_equal(load("db_path = /data/x.db\n", &c, err, sizeof(err)), 0);
	cp_config_finish(&c);
	assert_string_equal(c.db_path, "/data/x.db");
}

static void test_refusals(void **state)
{
	char longsock[200];

	(void)state;
	refused("bogus = 1\n", "1: bogus: unknown key");
	refused("\nlog_level = loud\n",
		"2: log_level: \"loud\" is not one of error, warn, info, debug");
	refused("log_level = info\nlog_level = warn\n", "2: log_level: given twice");
	refused("state_dir\n", "1: expected \"key = value\"");
	refused("state_dir = relative/dir\n",
		"1: state_dir: \"relative/dir\" is not an absolute path");
	refused("state_dir =\n", "1: state_dir: empty path");
	refused("flush_seconds = 0\n", "1: flush_seconds: \"0\" is not a number from 1 to 3600");
	refused("flush_seconds = 3601\n",
		"1: flush_seconds: \"3601\" is not a number from 1 to 3600");
	refused("flush_seconds = 2s\n", "1: flush_seconds: \"2s\" is not a number from 1 to 3600");
	refused("metrics_listen = localhost\n",
		"1: metrics_listen: \"localhost\" is not host:port");
	refused("event_log = events.log\n",
		"1: event_log: \"events.log\" is not an absolute path, \"-\" or empty");
	refused("xdp_interfaces = eth1,,eth2\n",
		"1: xdp_interfaces: \"\" is not an interface name");
	refused("xdp_interfaces = a-name-longer-than-15\n",
		"1: xdp_interfaces: \"a-name-longer-than-15\" is not an interface name");
	refused("xdp_mode = fast\n", "1: xdp_mode: \"fast\" is not one of auto, native, generic");
	refused("xdp_required = maybe\n", "1: xdp_required: \"maybe\" is not yes or no");
	refused("xdp_ports = 0\n", "1: xdp_ports: \"0\" is not a list of TCP ports (25, 587)");
	refused("xdp_ports = 25,70000\n",
		"1: xdp_ports: \"25,70000\" is not a list of TCP ports (25, 587)");
	refused("xdp_ports = ,\n", "1: xdp_ports: \",\" is not a list of TCP ports (25, 587)");
	memset(longsock, 'a', sizeof(longsock));
	memcpy(longsock, "admin_socket = /", 16);
	snprintf(longsock + 130, sizeof(longsock) - 130, "\n");
	refused(longsock, "1: admin_socket: path longer than 107 octets (the limit of a unix "
			  "socket address)");
}

static void test_missing_file(void **state)
{
	struct cp_config c;
	char err[512];

	(void)state;
	cp_config_defaults(&c);
	assert_int_equal(cp_config_load(&c, "/nonexistent/tescontrol.conf", err, sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/tescontrol.conf: No such file or directory");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_kind),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_missing_file),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
