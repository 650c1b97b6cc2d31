/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for exdetect_scan: the input is a header section, the
 * config has one skip pattern.  Beyond the sanitizers, it checks what the
 * result promises: a NUL-terminated lower-case host, a family that matches
 * the build, a line that really starts a Received header, and agreement
 * with a scan without skip patterns.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/session/exdetect.h"

/* Checked in every build type: these are the fuzzer's oracle, not debug aids. */
#define CHECK(c)                                                                                  \
	do {                                                                                      \
		if (!(c)) {                                                                       \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c); \
			abort();                                                                  \
		}                                                                                 \
	} while (0)

#define SKIP_SUFFIX ".mx.example.net"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool ci_prefix(const char *s, size_t n, const char *lit)
{
	size_t k = strlen(lit);

	if (n < k)
		return false;
	for (size_t i = 0; i < k; i++) {
		if (lower(s[i]) != lit[i])
			return false;
	}
	return true;
}

/* Start of 1-based line `line` in s[0..n), or NULL if there is none. */
static const char *line_start(const char *s, size_t n, unsigned line)
{
	const char *p = s;

	for (unsigned i = 1; i < line; i++) {
		const char *nl = memchr(p, '\n', n - (size_t)(p - s));
		if (!nl)
			return NULL;
		p = nl + 1;
	}
	return p;
}

static bool ci_contains(const char *s, size_t n, const char *lit)
{
	size_t k = strlen(lit);

	for (size_t i = 0; i + k <= n; i++) {
		if (ci_prefix(s + i, n - i, lit))
			return true;
	}
	return false;
}

static void check_empty(const struct exdetect_result *r)
{
	CHECK(!r->exchange);
	CHECK(r->server[0] == '\0');
	CHECK(r->family == EX_FAMILY_NONE);
	CHECK(r->line == 0 && r->hop == 0 && !r->mapi);
	for (int i = 0; i < 4; i++)
		CHECK(r->build.v[i] == 0);
}

static bool skipped_host(const char *host)
{
	size_t hn = strlen(host), sn = strlen(SKIP_SUFFIX);

	return hn >= sn && strcmp(host + hn - sn, SKIP_SUFFIX) == 0;
}

static void check_found(const struct exdetect_result *r, const char *s, size_t n)
{
	size_t hn = strlen(r->server);

	CHECK(hn >= 1 && hn <= EXDETECT_HOST_MAX);
	CHECK(r->server[0] != '.' && r->server[hn - 1] != '.');
	for (size_t i = 0; i < hn; i++) {
		char c = r->server[i];
		CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.');
	}
	CHECK(r->family == ex_family_of(&r->build));
	CHECK(r->family != EX_FAMILY_ONLINE);
	CHECK(r->hop < EXDETECT_MAX_RECEIVED);
	CHECK(r->line >= 1 && r->line > r->hop);

	/* The reported line starts a Received field, and the host (one word,
	 * so never split by folding) is written after it. */
	const char *ls = line_start(s, n, r->line);
	CHECK(ls != NULL);
	size_t rest = n - (size_t)(ls - s);
	CHECK(ci_prefix(ls, rest, "received"));
	CHECK(ci_contains(ls, rest, r->server));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct exdetect_config cfg;
	static bool ready;
	const char *s = (const char *)data;
	struct exdetect_result r, again, noskip;

	if (!ready) {
		CHECK(exdetect_add_skip(&cfg, "*" SKIP_SUFFIX));
		ready = true;
	}

	/* Poison the result: the scan must fill all of it. */
	memset(&r, 0x5a, sizeof(r));
	bool got = exdetect_scan(&cfg, s, size, &r);
	CHECK(got == r.exchange);
	CHECK(memchr(r.server, '\0', sizeof(r.server)) != NULL);
	if (got) {
		check_found(&r, s, size);
		CHECK(!skipped_host(r.server));
	} else {
		check_empty(&r);
	}

	/* Pure: the same input gives the same answer. */
	memset(&again, 0xa5, sizeof(again));
	exdetect_scan(&cfg, s, size, &again);
	CHECK(memcmp(&r, &again, sizeof(r)) == 0);

	/* Skip patterns only ever remove hops: without them the answer is the
	 * same hop or one above it. */
	exdetect_scan(NULL, s, size, &noskip);
	if (got)
		CHECK(noskip.exchange && noskip.hop <= r.hop);
	if (noskip.exchange) {
		check_found(&noskip, s, size);
		if (got && noskip.hop == r.hop)
			CHECK(memcmp(&r, &noskip, sizeof(r)) == 0);
		else
			CHECK(skipped_host(noskip.server));
	}
	return 0;
}
