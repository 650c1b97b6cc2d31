/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tes-loadgen over IPv6: the options' IPv6 forms and the stack addresses
 * made from them.  Apart from main.c and session.c so that the IPv4 code
 * paths stay as they were: those call these functions where the family
 * decides.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "bench/loadgen/loadgen.h"

int lg_parse_server6(const char *s, uint8_t a[16], uint16_t *port)
{
	char buf[80];
	if (strlen(s) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", s);
	*port = 25;
	char *host = buf;
	if (buf[0] == '[') {
		/* [2001:db8::1]:2525 or [2001:db8::1] */
		char *close = strchr(buf, ']');
		if (!close)
			return -1;
		*close = '\0';
		host = buf + 1;
		if (close[1] == ':') {
			char *end;
			unsigned long p = strtoul(close + 2, &end, 10);
			if (end == close + 2 || *end || p == 0 || p > 65535)
				return -1;
			*port = (uint16_t)p;
		} else if (close[1]) {
			return -1;
		}
	}
	return inet_pton(AF_INET6, host, a) == 1 && a[0] != 0xff ? 0 : -1;
}

int lg_parse_prefix6(const char *s, uint8_t a[16], uint8_t *plen)
{
	char buf[80];
	if (strlen(s) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", s);
	char *slash = strchr(buf, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	char *end;
	unsigned long n = strtoul(slash + 1, &end, 10);
	if (end == slash + 1 || *end || n == 0 || n > 128)
		return -1;
	*plen = (uint8_t)n;
	return inet_pton(AF_INET6, buf, a) == 1 && a[0] != 0xff ? 0 : -1;
}

bool lg_same_prefix6(const uint8_t *x, const uint8_t *y, unsigned plen)
{
	unsigned whole = plen / 8, bits = plen % 8;
	if (memcmp(x, y, whole) != 0)
		return false;
	return !bits || ((x[whole] ^ y[whole]) & (0xff00u >> bits) & 0xff) == 0;
}

void lg_server_addr(const struct lg_opts *o, struct stack_addr *out)
{
	if (o->v6)
		stack_addr_ipv6(out, o->server6);
	else
		stack_addr_ipv4(out, o->server);
}

void lg_local_addr(const struct lg_opts *o, struct stack_ifaddr *out)
{
	if (o->v6)
		stack_addr_ipv6(&out->addr, o->addr6);
	else
		stack_addr_ipv4(&out->addr, o->addr);
	out->prefix_len = o->plen;
}

const char *lg_server_str(const struct lg_opts *o, char *buf, size_t n)
{
	char a[INET6_ADDRSTRLEN];
	if (o->v6) {
		inet_ntop(AF_INET6, o->server6, a, sizeof(a));
		snprintf(buf, n, "[%s]", a);
	} else {
		struct in_addr ia = { .s_addr = htonl(o->server) };
		inet_ntop(AF_INET, &ia, a, sizeof(a));
		snprintf(buf, n, "%s", a);
	}
	return buf;
}
