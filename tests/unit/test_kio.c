/* SPDX-License-Identifier: BSD-3-Clause */
/* kio_format_addr: the peer's address as the logs and the EHLO reply show it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "dataplane/kio.h"

static struct sockaddr_storage v4(const char *a, unsigned port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, a, &sin->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage v6(const char *a, unsigned port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET6, a, &s6->sin6_addr), 1);
	return ss;
}

static void formats(void **state)
{
	(void)state;
	char b[64];
	struct sockaddr_storage ss;

	ss = v4("198.18.0.1", 25);
	kio_format_addr(&ss, b, sizeof(b), true);
	assert_string_equal(b, "198.18.0.1:25");
	kio_format_addr(&ss, b, sizeof(b), false);
	assert_string_equal(b, "198.18.0.1");
	ss = v4("0.0.0.0", 0);
	kio_format_addr(&ss, b, sizeof(b), true);
	assert_string_equal(b, "0.0.0.0:0");
	ss = v4("255.255.255.255", 65535);
	kio_format_addr(&ss, b, sizeof(b), true);
	assert_string_equal(b, "255.255.255.255:65535");
	ss = v4("10.100.9.200", 2525);
	kio_format_addr(&ss, b, sizeof(b), false);
	assert_string_equal(b, "10.100.9.200");

	/* IPv4-mapped IPv6 prints as IPv4 */
	ss = v6("::ffff:192.0.2.7", 587);
	kio_format_addr(&ss, b, sizeof(b), true);
	assert_string_equal(b, "192.0.2.7:587");
	ss = v6("2001:db8::1", 25);
	kio_format_addr(&ss, b, sizeof(b), true);
	assert_string_equal(b, "[2001:db8::1]:25");
	kio_format_addr(&ss, b, sizeof(b), false);
	assert_string_equal(b, "2001:db8::1");
	ss = v6("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 65535);
	kio_format_addr(&ss, b, sizeof(b), true);
	assert_string_equal(b, "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535");

	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	kio_format_addr(&ss, b, sizeof(b), true);
	assert_string_equal(b, "unknown");
}

static void truncates_to_the_buffer(void **state)
{
	(void)state;
	char b[8];
	struct sockaddr_storage ss = v4("198.18.0.1", 25);

	memset(b, 'x', sizeof(b));
	kio_format_addr(&ss, b, sizeof(b), true);
	assert_string_equal(b, "198.18.");
	kio_format_addr(&ss, b, 1, true);
	assert_string_equal(b, "");
	b[0] = 'x';
	kio_format_addr(&ss, b, 0, true); /* nothing written */
	assert_int_equal(b[0], 'x');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(formats),
		cmocka_unit_test(truncates_to_the_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
