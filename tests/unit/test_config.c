/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesgate configuration: defaults, every kind of bad value stopping start-up
 * with FILE:LINE: KEY, listen addresses, the engine's view, and every part's
 * keys landing in that part's own settings struct.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <cmocka.h>

#include "gateway/config.h"

static char path[64];

static void write_conf(const char *text)
{
	snprintf(path, sizeof(path), "/tmp/tes-config-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Loads text; returns the error ("" when it loaded) with the temp path
 * replaced by "F" so expectations are stable. */
static const char *load(const char *text, struct tes_config *c)
{
	static char err[512], out[512];

	config_defaults(c);
	write_conf(text);
	bool ok = config_load(c, path, err, sizeof(err));
	unlink(path);
	if (ok)
		return "";
	const char *p = strstr(err, path);
	if (!p)
		return err;
	snprintf(out, sizeof(out), "%.*sF%s", (int)(p - err), err, p + strlen(path));
	return out;
}

static void test_defaults(void **state)
{
	struct tes_config c;
	struct smtp_config sc;
	char err[256];
	(void)state;

	config_defaults(&c);
	assert_true(config_check(&c, err, sizeof(err)));
	assert_int_equal(c.io.workers, 1);
	assert_int_equal(c.smtp.limits.max_message_size, 36700160);
	assert_int_equal(c.smtp.limits.max_recipients, 100);
	assert_int_equal(c.smtp.limits.max_messages, 100);
	assert_int_equal(c.smtp.limits.max_errors, 10);
	assert_int_equal(c.io.idle_timeout, 300);
	assert_string_equal(c.delivery.backend, "spool");
	assert_string_equal(c.delivery.spool_dir, "/var/lib/tesgate/spool");
	assert_int_equal(c.io.listen.ss_family, AF_INET);
	const struct sockaddr_in *in = (const void *)&c.io.listen;
	assert_int_equal(ntohs(in->sin_port), 2525);
	assert_int_equal(ntohl(in->sin_addr.s_addr), 0x7f000001);
	assert_true(c.hostname[0] != '\0');

	smtp_config_set(&sc, c.hostname, &c.smtp);
	assert_string_equal(sc.hostname, c.hostname);
	assert_string_equal(sc.banner, "ESMTP tesgate");
	assert_int_equal(sc.limits.max_recipients, 100);
}

static void test_file_overrides(void **state)
{
	struct tes_config c;
	(void)state;

	assert_string_equal(load("# a comment\n\n"
				 "listen = [::1]:2626\n"
				 "hostname = mx1.example.net\n"
				 "banner = ESMTP ready\n"
				 "max_recipients = 7   \n"
				 "  idle_timeout=20\n"
				 "own_hop_skip = *.gw.example.net, edge.example.net\n",
				 &c),
			    "");
	assert_int_equal(c.io.listen.ss_family, AF_INET6);
	assert_string_equal(c.hostname, "mx1.example.net");
	assert_string_equal(c.smtp.banner, "ESMTP ready");
	assert_int_equal(c.smtp.limits.max_recipients, 7);
	assert_int_equal(c.io.idle_timeout, 20);
	assert_int_equal(c.exdetect.nskip, 2);
}

/* Every bad value names the file, the line and the key. */
static void test_errors_name_file_line_key(void **state)
{
	struct tes_config c;
	const char *e;
	(void)state;

	e = load("workers = 1\nmax_recipients = lots\n", &c);
	assert_non_null(strstr(e, "F:2: max_recipients:"));
	e = load("\n\n\nmax_recipients = 0\n", &c);
	assert_non_null(strstr(e, "F:4: max_recipients:"));
	assert_non_null(strstr(e, "out of range"));
	e = load("no_such_key = 1\n", &c);
	assert_non_null(strstr(e, "F:1:"));
	assert_non_null(strstr(e, "no_such_key"));
	e = load("listen = 127.0.0.1\n", &c);
	assert_non_null(strstr(e, "F:1: listen:"));
	e = load("listen = 999.1.1.1:25\n", &c);
	assert_non_null(strstr(e, "F:1: listen:"));
	e = load("hostname = bad host!\n", &c);
	assert_non_null(strstr(e, "F:1: hostname:"));
	e = load("log_level = loud\n", &c);
	assert_non_null(strstr(e, "F:1: log_level:"));
	e = load("delivery = carrier-pigeon\n", &c);
	assert_non_null(strstr(e, "F:1: delivery:"));
	e = load("just some words\n", &c);
	assert_non_null(strstr(e, "F:1"));
	e = load("max_message_size = 99999999999999999999999\n", &c);
	assert_non_null(strstr(e, "F:1: max_message_size:"));
}

static void test_missing_file(void **state)
{
	struct tes_config c;
	char err[256];
	(void)state;

	config_defaults(&c);
	assert_false(config_load(&c, "/nonexistent/tesgate.conf", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/tesgate.conf"));
}

static void test_listen_forms(void **state)
{
	struct sockaddr_storage ss;
	(void)state;

	assert_true(config_parse_listen("198.18.0.1:25", &ss));
	assert_int_equal(ss.ss_family, AF_INET);
	assert_true(config_parse_listen("[2001:db8::1]:587", &ss));
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(((const struct sockaddr_in6 *)(const void *)&ss)->sin6_port), 587);
	assert_false(config_parse_listen("2001:db8::1:25", &ss));
	assert_false(config_parse_listen("198.18.0.1:65536", &ss));
	assert_false(config_parse_listen("198.18.0.1:", &ss));
	assert_false(config_parse_listen(":25", &ss));
	assert_false(config_parse_listen("", &ss));
}

/* One key or more of each part, each read back from the struct that part
 * owns (config.c only parses into them). */
static void test_parts_settings(void **state)
{
	struct tes_config c;
	struct tls_server_config tc;
	char err[256];
	(void)state;

	assert_string_equal(load("workers = 2\n"
				 "cpus = 3, 5\n"
				 "idle_timeout = 2m\n"
				 "max_connections_per_source = 9\n"
				 "min_data_rate = 100\n"
				 "min_data_rate_window = 10\n"
				 "max_header_bytes = 8K\n"
				 "banner = hi\n"
				 "tls_cert = /c.pem\n"
				 "tls_key = /k.pem\n"
				 "tls_ticket_lifetime = 1h\n"
				 "delivery = smtp\n"
				 "relay_host = backend.example\n"
				 "relay_port = 2526\n"
				 "relay_data_timeout = 90\n"
				 "relay_memory_total = 2M\n"
				 "spool_min_free = 1G\n"
				 "control_socket = /run/t.sock\n"
				 "gateway_id = gw7\n"
				 "metrics_listen = [::1]:9999\n"
				 "verdict_log = stdout\n"
				 "io = dpdk\n"
				 "dpdk_args = --no-pci\n"
				 "dpdk_addr = 198.18.5.2/24\n"
				 "dpdk_port = 26\n"
				 "shutdown_grace = 7\n",
				 &c),
			    "");
	assert_true(config_check(&c, err, sizeof(err)));
	/* conn/transport.h */
	assert_int_equal(c.io.workers, 2);
	assert_int_equal(c.io.ncpus, 2);
	assert_int_equal(c.io.cpus[1], 5);
	assert_int_equal(c.io.idle_timeout, 120);
	assert_int_equal(c.io.max_connections_per_source, 9);
	/* conn/conn.h */
	assert_int_equal(c.conn.min_data_rate, 100);
	assert_int_equal(c.conn.min_data_rate_window, 10);
	/* conn/dpdk.h */
	assert_true(c.io_dpdk);
	assert_string_equal(c.dpdk.args, "--no-pci");
	assert_string_equal(c.dpdk.addr, "198.18.5.2/24");
	assert_int_equal(c.dpdk.port, 26);
	/* session/ */
	assert_int_equal(c.smtp.limits.max_header_bytes, 8192);
	assert_string_equal(c.smtp.banner, "hi");
	assert_string_equal(c.tls.cert, "/c.pem");
	assert_int_equal(c.tls.ticket_lifetime, 3600);
	assert_true(tls_settings_config(&c.tls, &tc));
	assert_string_equal(tc.key_file, "/k.pem");
	assert_true(tc.tickets);
	assert_int_equal(tc.ticket_rotate_s, 3600);
	assert_false(tc.request_client_cert);
	/* delivery/ */
	assert_string_equal(c.delivery.backend, "smtp");
	assert_string_equal(c.delivery.relay.host, "backend.example");
	assert_int_equal(c.delivery.relay.port, 2526);
	assert_int_equal(c.delivery.relay.data_timeout, 90);
	assert_int_equal(c.delivery.relay.memory_total, 2u << 20);
	assert_int_equal(c.delivery.spool_min_free, 1ull << 30);
	/* state/ */
	assert_string_equal(c.control.socket, "/run/t.sock");
	assert_string_equal(c.control.gateway_id, "gw7");
	/* observe/: the endpoint's address parsed here, once */
	assert_string_equal(c.metrics.listen, "[::1]:9999");
	assert_int_equal(c.metrics.addr.ss_family, AF_INET6);
	assert_int_equal(
		ntohs(((const struct sockaddr_in6 *)(const void *)&c.metrics.addr)->sin6_port),
		9999);
	assert_string_equal(c.verdicts.path, "stdout");
	/* start-up's own */
	assert_int_equal(c.shutdown_grace, 7);

	/* the checks that span parts see the parts' fields */
	assert_string_equal(load("delivery = smtp\nrelay_host = b.example\n"
				 "idle_timeout = 60\nrelay_data_timeout = 60\n",
				 &c),
			    "");
	assert_false(config_check(&c, err, sizeof(err)));
	assert_non_null(strstr(err, "relay_data_timeout must be below idle_timeout"));
	assert_string_equal(load("workers = 2\ncpus = 1\n", &c), "");
	assert_false(config_check(&c, err, sizeof(err)));
	assert_string_equal(err, "cpus lists 1 CPUs for 2 workers");
	/* TLS off: no server configuration */
	config_defaults(&c);
	assert_false(tls_settings_config(&c.tls, &tc));
	assert_string_equal(c.metrics.listen, "127.0.0.1:9465");
	assert_int_equal(c.metrics.addr.ss_family, AF_INET);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_file_overrides),
		cmocka_unit_test(test_errors_name_file_line_key),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_listen_forms),
		cmocka_unit_test(test_parts_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
