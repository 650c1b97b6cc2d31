/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for gateway/session/exdetect.c: Exchange build detection from headers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/session/exdetect.h"

/* ---- helpers ---- */

static char *load_fixture(const char *name, size_t *len)
{
	const char *src = getenv("TES_SRCDIR");
	char path[4096];

	assert_non_null(src);
	snprintf(path, sizeof(path), "%s/tests/data/headers/%s", src, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	long n = ftell(f);
	assert_true(n > 0);
	rewind(f);
	char *buf = malloc((size_t)n);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* A growable string for building large inputs. */
struct sbuf {
	char *p;
	size_t len, cap;
};

static void sb_addn(struct sbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		assert_non_null(b->p);
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_add(struct sbuf *b, const char *s)
{
	sb_addn(b, s, strlen(s));
}

static void sb_fill(struct sbuf *b, char c, size_t n)
{
	char chunk[1024];

	memset(chunk, c, sizeof(chunk));
	while (n > 0) {
		size_t k = n < sizeof(chunk) ? n : sizeof(chunk);
		sb_addn(b, chunk, k);
		n -= k;
	}
}

static bool scan(const struct exdetect_config *cfg, const char *s, struct exdetect_result *r)
{
	return exdetect_scan(cfg, s, strlen(s), r);
}

static void assert_not_exchange(const struct exdetect_result *r)
{
	assert_false(r->exchange);
	assert_string_equal(r->server, "");
	assert_int_equal(r->family, EX_FAMILY_NONE);
	assert_int_equal(r->line, 0);
	assert_int_equal(r->hop, 0);
	assert_false(r->mapi);
}

static void assert_detect(const struct exdetect_result *r, const char *server, const char *build,
			  enum ex_family family, unsigned line, unsigned hop, bool mapi)
{
	struct ex_build want;
	char got[64];

	assert_true(ex_build_from_str(build, &want));
	ex_build_format(&r->build, got, sizeof(got));
	assert_true(r->exchange);
	assert_string_equal(r->server, server);
	assert_string_equal(got, build);
	assert_int_equal(ex_build_cmp(&r->build, &want), 0);
	assert_int_equal(r->family, family);
	assert_int_equal(r->family, ex_family_of(&r->build));
	assert_int_equal(r->line, line);
	assert_int_equal(r->hop, hop);
	assert_int_equal(r->mapi, mapi);
}

/* Expect a detection of EX1.contoso.local 15.1.2507.35 at the given place. */
static void assert_ex1(const char *hdr, unsigned line, unsigned hop)
{
	struct exdetect_result r;

	scan(NULL, hdr, &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, line, hop, false);
}

static void assert_none(const char *hdr)
{
	struct exdetect_result r;

	assert_false(scan(NULL, hdr, &r));
	assert_not_exchange(&r);
}

#define GOOD_HOP                                                                              \
	"Received: from EX0.contoso.local (10.1.1.40) by EX1.contoso.local (10.1.1.41) with " \
	"Microsoft SMTP Server id 15.1.2507.35; Thu, 6 Jun 2024 16:59:04 -0500\r\n"

/* ---- fixtures ---- */

struct fixture {
	const char *file;
	const char *skip; /* one skip pattern, or NULL */
	bool exchange;
	const char *server, *build;
	enum ex_family family;
	unsigned line, hop;
	bool mapi;
};

static const struct fixture fixtures[] = {
	{ "ex2007.hdr", NULL, true, "gw01.contoso.com", "8.2.254.0", EX_FAMILY_2007, 1, 0, false },
	{ "ex2010-smtp.hdr", NULL, true, "ex02.contoso.local", "14.3.123.3", EX_FAMILY_2010, 1, 0,
	  false },
	{ "ex2010-mapi.hdr", NULL, true, "ex03.contoso.local", "14.3.513.0", EX_FAMILY_2010, 1, 0,
	  true },
	{ "ex2013-frontend.hdr", NULL, true, "ex13cas01.contoso.local", "15.0.1497.2",
	  EX_FAMILY_2013, 1, 0, false },
	{ "ex2016-tls.hdr", NULL, true, "ex16-02.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 1,
	  0, false },
	{ "ex2019.hdr", NULL, true, "edge01.contoso.com", "15.2.1748.36", EX_FAMILY_2019, 1, 0,
	  false },
	{ "exse.hdr", NULL, true, "mail.contoso.com", "15.2.2562.35", EX_FAMILY_SE, 4, 1, false },
	{ "online-then-onprem.hdr", NULL, true, "ex16-04.contoso.local", "15.1.2507.39",
	  EX_FAMILY_2016, 9, 2, false },
	{ "postfix-only.hdr", NULL, false, NULL, NULL, EX_FAMILY_NONE, 0, 0, false },
	/* Without a skip pattern the receiving side's own Exchange edge is
	 * taken for the sender; with it, the real sender is found. */
	{ "gateway-on-top.hdr", NULL, true, "edge01.mx.example.net", "15.2.1544.4", EX_FAMILY_2019,
	  4, 1, false },
	{ "gateway-on-top.hdr", "*.mx.example.net", true, "mail.contoso.com", "15.0.1497.48",
	  EX_FAMILY_2013, 8, 2, false },
};

/* The fixtures double as inputs for integration tests: hold them to
 * RFC 5322 so a bad fixture fails here, not in a distant test. */
static void assert_valid_header_section(const char *file, const char *s, size_t n)
{
	size_t pos = 0;
	unsigned line = 0;

	while (pos < n) {
		const char *nl = memchr(s + pos, '\n', n - pos);
		if (!nl)
			fail_msg("%s: last line has no CRLF", file);
		size_t len = (size_t)(nl - (s + pos));
		line++;
		if (len == 0 || s[pos + len - 1] != '\r')
			fail_msg("%s:%u: bare LF", file, line);
		len--;
		if (len > 998)
			fail_msg("%s:%u: line longer than 998", file, line);
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)s[pos + i];
			if (c == '\r' || c == 0 || c > 0x7e)
				fail_msg("%s:%u: bad octet 0x%02x", file, line, c);
		}
		if (len == 0) {
			if (nl + 1 != s + n)
				fail_msg("%s:%u: data after the empty line", file, line);
			return;
		}
		if (s[pos] != ' ' && s[pos] != '\t') {
			size_t i = 0;
			while (i < len && s[pos + i] > 0x20 && s[pos + i] < 0x7f &&
			       s[pos + i] != ':')
				i++;
			if (i == 0 || i == len || s[pos + i] != ':')
				fail_msg("%s:%u: not a header field", file, line);
		} else if (line == 1) {
			fail_msg("%s: starts with a continuation", file);
		}
		pos += len + 2;
	}
	fail_msg("%s: no empty line at the end", file);
}

static void check_fixture(const struct fixture *fx, const char *s, size_t n)
{
	struct exdetect_config cfg = { 0 };
	struct exdetect_result r;

	if (fx->skip)
		assert_true(exdetect_add_skip(&cfg, fx->skip));
	bool got = exdetect_scan(&cfg, s, n, &r);
	assert_int_equal(got, fx->exchange);
	if (!fx->exchange)
		assert_not_exchange(&r);
	else
		assert_detect(&r, fx->server, fx->build, fx->family, fx->line, fx->hop, fx->mapi);
}

static void test_fixtures(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		const struct fixture *fx = &fixtures[i];
		size_t n;
		char *s = load_fixture(fx->file, &n);

		print_message("fixture %s skip=%s\n", fx->file, fx->skip ? fx->skip : "-");
		assert_valid_header_section(fx->file, s, n);
		check_fixture(fx, s, n);
		free(s);
	}
}

/* The same fixtures with LF line ends give the same answers, line numbers
 * included. */
static void test_fixtures_lf(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		const struct fixture *fx = &fixtures[i];
		size_t n, m = 0;
		char *s = load_fixture(fx->file, &n);

		for (size_t k = 0; k < n; k++) {
			if (s[k] == '\r' && k + 1 < n && s[k + 1] == '\n')
				continue;
			s[m++] = s[k];
		}
		assert_null(memchr(s, '\r', m));
		check_fixture(fx, s, m);
		free(s);
	}
}

/* Without the trailing empty line, and cut right after the detected hop. */
static void test_fixtures_truncated(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
		const struct fixture *fx = &fixtures[i];
		size_t n;
		char *s = load_fixture(fx->file, &n);

		check_fixture(fx, s, n - 2);
		free(s);
	}

	/* Cut inside the first Received header: its end is the end of input. */
	size_t n;
	char *s = load_fixture("ex2016-tls.hdr", &n);
	const char *end = strstr(s, "id 15.1.2507.35");
	assert_non_null(end);
	struct exdetect_result r;
	exdetect_scan(NULL, s, (size_t)(end - s) + strlen("id 15.1.2507.35"), &r);
	assert_detect(&r, "ex16-02.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 1, 0, false);
	/* Cut in the middle of the build: "15.1.2507.3" is a different build. */
	exdetect_scan(NULL, s, (size_t)(end - s) + strlen("id 15.1.2507.3"), &r);
	assert_detect(&r, "ex16-02.contoso.local", "15.1.2507.3", EX_FAMILY_2016, 1, 0, false);
	/* Cut before the fourth field: no build, so the mapi hop below is not
	 * reached either (it is not in the input). */
	exdetect_scan(NULL, s, (size_t)(end - s) + strlen("id 15.1.2507"), &r);
	assert_not_exchange(&r);
	free(s);
}

/* ---- forms of the build ---- */

static void test_short_and_padded(void **state)
{
	struct exdetect_result a, b, c;

	(void)state;
	scan(NULL,
	     "Received: from X by EX1.contoso.local with Microsoft SMTP Server id "
	     "15.2.1748.36;\r\n",
	     &a);
	scan(NULL, "Received: from X by EX1.contoso.local with mapi id 15.02.1748.036;\r\n", &b);
	scan(NULL, "Received: from X by EX1.contoso.local with MAPI id 0015.0002.001748.0036\r\n",
	     &c);
	assert_detect(&a, "ex1.contoso.local", "15.2.1748.36", EX_FAMILY_2019, 1, 0, false);
	assert_detect(&b, "ex1.contoso.local", "15.2.1748.36", EX_FAMILY_2019, 1, 0, true);
	assert_detect(&c, "ex1.contoso.local", "15.2.1748.36", EX_FAMILY_2019, 1, 0, true);

	/* SE starts at 15.2.2562 in either form. */
	scan(NULL, "Received: by EX1.contoso.local with mapi id 15.02.2561.999\r\n", &a);
	assert_int_equal(a.family, EX_FAMILY_2019);
	scan(NULL, "Received: by EX1.contoso.local with mapi id 15.02.2562.000\r\n", &a);
	assert_int_equal(a.family, EX_FAMILY_SE);
}

/* A build that parses but is no known family is still the connecting
 * server: it is reported with EX_FAMILY_NONE, and the hop behind it is not
 * looked at. */
static void test_unknown_family(void **state)
{
	struct exdetect_result r;

	(void)state;
	scan(NULL, "Received: from a by EX2003.contoso.local with mapi id 6.5.7638.1;\r\n" GOOD_HOP,
	     &r);
	assert_detect(&r, "ex2003.contoso.local", "6.5.7638.1", EX_FAMILY_NONE, 1, 0, true);
	scan(NULL,
	     "Received: from a by vnext.contoso.local with Microsoft SMTP Server id 15.3.1.2;\r\n",
	     &r);
	assert_detect(&r, "vnext.contoso.local", "15.3.1.2", EX_FAMILY_NONE, 1, 0, false);
}

/* ---- folding ---- */

static void test_folded(void **state)
{
	(void)state;
	/* The id starts a continuation line. */
	assert_ex1("Received: from EX0.contoso.local (10.1.1.40) by EX1.contoso.local\r\n"
		   " (10.1.1.41) with Microsoft SMTP Server\r\n"
		   " id 15.1.2507.35; Thu, 6 Jun 2024 16:59:04 -0500\r\n",
		   1, 0);
	/* Folded between "id" and the build, with a tab. */
	assert_ex1(
		"Received: from EX0.contoso.local by EX1.contoso.local with Microsoft SMTP Server"
		" id\r\n\t15.1.2507.35;\r\n Thu, 6 Jun 2024 16:59:04 -0500\r\n",
		1, 0);
	/* Folded at every whitespace, LF line ends. */
	assert_ex1("Subject: x\n"
		   "Received:\n from\n EX0.contoso.local\n by\n EX1.contoso.local\n with\n"
		   " Microsoft\n SMTP\n Server\n id\n 15.1.2507.35\n ;\n Thu, 6 Jun 2024\n",
		   2, 0);
	/* Several whitespace octets and an empty-looking continuation. */
	assert_ex1("Received: \t from X  \r\n \t \r\n\t by\t\tEX1.contoso.local  with  Microsoft"
		   "\r\n\t SMTP \t Server \r\n   id   15.1.2507.35  \r\n",
		   1, 0);
	/* Folding never joins words: "15.1.\r\n 2507.35" is two words. */
	assert_none("Received: by EX1.contoso.local with Microsoft SMTP Server id 15.1.\r\n"
		    " 2507.35;\r\n");
	/* A continuation line before any field belongs to nothing. */
	assert_ex1(" by EX9.contoso.local with mapi id 15.1.2507.35;\r\n" GOOD_HOP, 2, 0);
}

/* ---- skip patterns ---- */

static void test_skip_patterns(void **state)
{
	size_t n;
	char *s = load_fixture("gateway-on-top.hdr", &n);
	struct exdetect_result r;
	static const char *const to_sender[] = {
		"*.mx.example.net",
		"EDGE01.MX.EXAMPLE.NET",
		"edge01.mx.example.net.",
		"edge*.mx.example.net",
		"*edge01*",
		"e*0*.mx.*.net",
		"edge01.mx.example.net*",
		"**.mx.example.net",
	};
	static const char *const no_effect[] = {
		"*.example.org",         "edge01.mx.example", "mx.example.net",
		"edge0?.mx.example.net", "*.contoso.local",   "tesgate*",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(to_sender) / sizeof(to_sender[0]); i++) {
		struct exdetect_config cfg = { 0 };
		print_message("pattern %s\n", to_sender[i]);
		assert_true(exdetect_add_skip(&cfg, to_sender[i]));
		exdetect_scan(&cfg, s, n, &r);
		assert_detect(&r, "mail.contoso.com", "15.0.1497.48", EX_FAMILY_2013, 8, 2, false);
	}
	for (size_t i = 0; i < sizeof(no_effect) / sizeof(no_effect[0]); i++) {
		struct exdetect_config cfg = { 0 };
		print_message("pattern %s\n", no_effect[i]);
		assert_true(exdetect_add_skip(&cfg, no_effect[i]));
		exdetect_scan(&cfg, s, n, &r);
		assert_detect(&r, "edge01.mx.example.net", "15.2.1544.4", EX_FAMILY_2019, 4, 1,
			      false);
	}

	/* Skipping the sender too reaches its mailbox server's mapi hop, and
	 * skipping that leaves nothing. */
	struct exdetect_config cfg = { 0 };
	assert_true(exdetect_add_skip(&cfg, "*.mx.example.net"));
	assert_true(exdetect_add_skip(&cfg, "*.contoso.com"));
	exdetect_scan(&cfg, s, n, &r);
	assert_detect(&r, "ex13mbx02.contoso.local", "15.0.1497.48", EX_FAMILY_2013, 11, 3, true);
	assert_true(exdetect_add_skip(&cfg, "ex13mbx0?.contoso.local"));
	exdetect_scan(&cfg, s, n, &r);
	assert_true(r.exchange); /* '?' is no wildcard */
	assert_true(exdetect_add_skip(&cfg, "*.CONTOSO.LOCAL"));
	assert_false(exdetect_scan(&cfg, s, n, &r));
	assert_not_exchange(&r);

	/* "*" skips every Microsoft hop. */
	memset(&cfg, 0, sizeof(cfg));
	assert_true(exdetect_add_skip(&cfg, "*"));
	assert_false(exdetect_scan(&cfg, s, n, &r));
	free(s);

	/* A pattern written straight into the config (not lower-cased, with a
	 * trailing dot) still matches, and a bogus count is clamped. */
	memset(&cfg, 0, sizeof(cfg));
	strcpy(cfg.skip[0], "EX1.Contoso.LOCAL.");
	cfg.nskip = 1000;
	assert_false(scan(&cfg, GOOD_HOP, &r));
}

static void test_add_skip(void **state)
{
	struct exdetect_config cfg = { 0 };
	char longpat[EXDETECT_HOST_MAX + 2];

	(void)state;
	assert_false(exdetect_add_skip(&cfg, ""));
	assert_false(exdetect_add_skip(&cfg, "."));
	assert_false(exdetect_add_skip(NULL, "x"));
	assert_false(exdetect_add_skip(&cfg, NULL));
	memset(longpat, 'a', sizeof(longpat) - 1);
	longpat[sizeof(longpat) - 1] = '\0';
	assert_false(exdetect_add_skip(&cfg, longpat));
	/* 255 octets fit; 255 plus a trailing dot is too long as given. */
	longpat[EXDETECT_HOST_MAX] = '.';
	assert_false(exdetect_add_skip(&cfg, longpat));
	longpat[EXDETECT_HOST_MAX] = '\0';
	assert_true(exdetect_add_skip(&cfg, longpat));
	assert_int_equal(cfg.nskip, 1);
	assert_true(exdetect_add_skip(&cfg, "Mixed.Case.Example.NET."));
	assert_string_equal(cfg.skip[1], "mixed.case.example.net");
	for (unsigned i = cfg.nskip; i < EXDETECT_MAX_SKIP; i++)
		assert_true(exdetect_add_skip(&cfg, "x*"));
	assert_int_equal(cfg.nskip, EXDETECT_MAX_SKIP);
	assert_false(exdetect_add_skip(&cfg, "y*"));
	assert_int_equal(cfg.nskip, EXDETECT_MAX_SKIP);
}

/* Pathological patterns stay cheap (work bounded by pattern x host). */
static void test_skip_pathological(void **state)
{
	struct exdetect_config cfg = { 0 };
	struct sbuf b = { 0 };
	struct exdetect_result r;

	(void)state;
	/* Each non-matching pattern costs about len(pattern) * len(host); the
	 * last one matches, so all EXDETECT_MAX_RECEIVED hops pay for all. */
	for (unsigned i = 0; i < EXDETECT_MAX_SKIP - 1; i++)
		assert_true(exdetect_add_skip(&cfg, "*aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
	assert_true(exdetect_add_skip(&cfg, "a*"));
	for (unsigned i = 0; i < EXDETECT_MAX_RECEIVED; i++) {
		sb_add(&b, "Received: by ");
		sb_fill(&b, 'a', EXDETECT_HOST_MAX);
		sb_add(&b, " with mapi id 15.1.2507.35;\r\n");
	}
	assert_false(exdetect_scan(&cfg, b.p, b.len, &r));
	free(b.p);
}

/* ---- Exchange Online ---- */

static void test_online_skipped(void **state)
{
	(void)state;
	assert_none("Received: from a by AM6PR04MB5432.eurprd04.prod.example.net with Microsoft "
		    "SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id "
		    "15.20.7633.25 via Frontend Transport; Thu, 13 Jun 2024 09:14:08 +0000\r\n"
		    "Received: from a by b.example.net with mapi id 15.21.0001.000;\r\n"
		    "Received: from a by c.example.net with mapi id 15.99.1.1;\r\n");
	assert_ex1("Received: from a by AM6PR04MB5432.eurprd04.prod.example.net with mapi id "
		   "15.20.7633.021;\r\n" GOOD_HOP,
		   2, 1);
}

/* ---- not Microsoft ---- */

static void test_not_microsoft(void **state)
{
	(void)state;
	assert_none("");
	assert_none("\r\n");
	assert_none("Subject: hello\r\nFrom: a@example.net\r\n\r\n");
	assert_none("Received: from a by mx.example.net (Postfix) with ESMTP id 15.1.2507.35;\r\n");
	assert_none("Received: from a by iis.contoso.local with Microsoft SMTPSVC(6.0.3790.4675);"
		    " Tue, 1 Jan 2008 10:00:00 +0100\r\n");
	assert_none(
		"Received: from a by EX1.contoso.local with Microsoft SMTPSVC id 15.1.2507.35\r\n");
	assert_none("Received: from a by EX1.contoso.local with Microsoft SMTP Server Extra id "
		    "15.1.2507.35\r\n");
	assert_none(
		"Received: from a by EX1.contoso.local with Microsoft SMTP id 15.1.2507.35\r\n");
	assert_none("Received: from a by EX1.contoso.local with SMTP Server id 15.1.2507.35\r\n");
	assert_none("Received: from a by EX1.contoso.local with mapi mapi id 15.1.2507.35\r\n");
	assert_none("Received: from a by EX1.contoso.local with HTTP id 15.1.2507.35\r\n");
	assert_none("Received: from a by EX1.contoso.local id 15.1.2507.35\r\n");
	assert_none("Received: from a by EX1.contoso.local with id 15.1.2507.35\r\n");
	/* A second with clause does not turn a non-Microsoft hop into one. */
	assert_none(
		"Received: from a by EX1.contoso.local with ESMTP with mapi id 15.1.2507.35\r\n");
	/* Other fields are not Received headers, whatever they hold. */
	assert_none("X-Received: from a by EX1.contoso.local with mapi id 15.1.2507.35\r\n"
		    "Received-SPF: by EX1.contoso.local with mapi id 15.1.2507.35\r\n"
		    "ReceivedX: by EX1.contoso.local with mapi id 15.1.2507.35\r\n"
		    "Receive: by EX1.contoso.local with mapi id 15.1.2507.35\r\n"
		    "Received by EX1.contoso.local with mapi id 15.1.2507.35\r\n");
}

/* Non-Microsoft hops in front (a smarthost, the gateway) are passed over. */
static void test_passed_over(void **state)
{
	(void)state;
	assert_ex1("Received: from ex1.contoso.local (ex1.contoso.local [192.0.2.41])\r\n"
		   "\tby smarthost.contoso.com (Postfix) with ESMTPS id 4W1kQd6Fz3z4xY8\r\n"
		   "\tfor <bob@example.net>; Fri, 21 Jun 2024 15:03:12 +0200 (CEST)\r\n"
		   "Received: by tesgate.example.net (tesgate) with ESMTP id "
		   "15.2.1748.36;\r\n" GOOD_HOP,
		   5, 2);
}

/* ---- field names ---- */

static void test_field_names(void **state)
{
	(void)state;
	assert_ex1("received: by EX1.contoso.local with Microsoft SMTP Server id 15.1.2507.35\r\n",
		   1, 0);
	assert_ex1(
		"RECEIVED  : by EX1.contoso.local with Microsoft SMTP Server id 15.1.2507.35\r\n",
		1, 0);
	assert_ex1(
		"Received\t: by EX1.contoso.local with Microsoft SMTP Server id 15.1.2507.35\r\n",
		1, 0);
	assert_ex1("Received:by EX1.contoso.local with Microsoft SMTP Server id 15.1.2507.35\r\n",
		   1, 0);
	/* Look-alike fields do not count as hops. */
	assert_ex1("X-Received: by a.example.net with ESMTP id 1\r\n"
		   "Received-SPF: pass\r\n" GOOD_HOP,
		   3, 0);
}

/* ---- missing or broken parts: the hop is skipped, the next one found ---- */

static void test_missing_parts(void **state)
{
	static const char *const bad[] = {
		/* no by */
		"Received: from EX9.contoso.local with Microsoft SMTP Server id 15.1.2507.35;\r\n",
		"Received: from EX9.contoso.local by with mapi id 15.1.2507.35;\r\n",
		"Received: from EX9.contoso.local (by EX9.contoso.local) with mapi id "
		"15.1.2507.35;\r\n",
		"Received: from EX9.contoso.local by (EX9.contoso.local) with mapi id "
		"15.1.2507.35\r\n",
		"Received: from EX9.contoso.local with mapi id 15.1.2507.35 by\r\n",
		/* no id */
		"Received: from a by EX9.contoso.local with Microsoft SMTP Server; Tue, 19 Oct "
		"2010\r\n",
		"Received: from a by EX9.contoso.local with mapi; Tue, 19 Oct 2010 11:50:43 "
		"+0200\r\n",
		"Received: from a by EX9.contoso.local with mapi id\r\n",
		"Received: from a by EX9.contoso.local with mapi id;\r\n",
		/* id not a build */
		"Received: from a by EX9.contoso.local with mapi id abc;\r\n",
		"Received: from a by EX9.contoso.local with mapi id 15.1.2507;\r\n",
		"Received: from a by EX9.contoso.local with mapi id 15.1.2507.35.1;\r\n",
		"Received: from a by EX9.contoso.local with mapi id 15.1.2507.35x;\r\n",
		"Received: from a by EX9.contoso.local with mapi id 15.1.2507.-35;\r\n",
		"Received: from a by EX9.contoso.local with mapi id 15..2507.35;\r\n",
		"Received: from a by EX9.contoso.local with mapi id 15.1.2507.99999999999;\r\n",
		"Received: from a by EX9.contoso.local with mapi id 15.1.2507.4294967296;\r\n",
		"Received: from a by EX9.contoso.local with mapi id <15.1.2507.35>;\r\n",
		"Received: from a by EX9.contoso.local with mapi id \"15.1.2507.35\";\r\n",
		"Received: from a by EX9.contoso.local with mapi id 15.1.2507.35\x01;\r\n",
		/* by host not a host name */
		"Received: from a by [192.0.2.1] with mapi id 15.1.2507.35;\r\n",
		"Received: from a by ex9@contoso.local with mapi id 15.1.2507.35;\r\n",
		"Received: from a by <ex9.contoso.local> with mapi id 15.1.2507.35;\r\n",
		"Received: from a by \"ex9.contoso.local\" with mapi id 15.1.2507.35;\r\n",
		"Received: from a by ex9.c\xc3\xb6ntoso.local with mapi id 15.1.2507.35;\r\n",
		"Received: from a by . with mapi id 15.1.2507.35;\r\n",
		"Received: from a by .. with mapi id 15.1.2507.35;\r\n",
		"Received: from a by .ex9.contoso.local with mapi id 15.1.2507.35;\r\n",
		"Received: from a by ex9..contoso.local with mapi id 15.1.2507.35;\r\n",
		"Received: from a by ex9.contoso.local.. with mapi id 15.1.2507.35;\r\n",
		/* everything after ';' is the date */
		"Received: from a; by EX9.contoso.local with mapi id 15.1.2507.35\r\n",
		"Received: from a by EX9.contoso.local with mapi; id 15.1.2507.35\r\n",
		"Received: from a by EX9.contoso.local with mapi id ; 15.1.2507.35\r\n",
		/* nothing at all */
		"Received:\r\n",
		"Received:    \r\n",
		"Received: ;\r\n",
		"Received: (by EX9.contoso.local with mapi id 15.1.2507.35)\r\n",
	};
	struct sbuf b = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("case %zu\n", i);
		assert_none(bad[i]);
		b.len = 0;
		sb_add(&b, bad[i]);
		sb_add(&b, GOOD_HOP);
		assert_ex1(b.p, 2, 1);
	}
	free(b.p);
}

/* ---- comments and other opaque parts ---- */

static void test_comments(void **state)
{
	(void)state;
	/* The `by` inside a comment is not taken; the real one after it is. */
	assert_ex1("Received: from EX0.contoso.local (helo by evil.example.net id 15.2.1.1) by\r\n"
		   " EX1.contoso.local with Microsoft SMTP Server id 15.1.2507.35;\r\n",
		   1, 0);
	assert_ex1(
		"Received: from a (envelope-from <by@evil.example.net>) (by evil.example.net)\r\n"
		" by EX1.contoso.local (by evil.example.net id 15.2.1.1) with Microsoft SMTP\r\n"
		" Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) id\r\n"
		" 15.1.2507.35 via Frontend Transport; Thu, 6 Jun 2024 16:59:04 -0500\r\n",
		1, 0);
	/* Nested comments and quoted pairs. */
	assert_ex1(
		"Received: from a (x (by evil.example.net) \\) by evil2.example.net (id 1)\r\n"
		" id 15.2.1.1) by EX1.contoso.local (c\\(by evil3) with Microsoft SMTP Server\r\n"
		" id 15.1.2507.35\r\n",
		1, 0);
	/* An unbalanced ')' is only a separator. */
	assert_ex1("Received: from a) by EX1.contoso.local)with Microsoft SMTP Server)id"
		   ")15.1.2507.35)\r\n",
		   1, 0);
	/* Words stop at '(' without whitespace. */
	assert_ex1("Received: from a by EX1.contoso.local(10.1.1.41) with Microsoft SMTP\r\n"
		   " Server(TLS) id 15.1.2507.35(x);\r\n",
		   1, 0);
	/* A comment that never ends swallows the rest of the header. */
	assert_none("Received: from a (by EX1.contoso.local with mapi id 15.1.2507.35\r\n");
	assert_none("Received: from a (by EX1.contoso.local \\\r\n");
	/* A ';' inside a comment, an angle address or a quoted string is not the
	 * date separator. */
	assert_ex1("Received: from a (x; y) by EX1.contoso.local for <\"a;b\"@example.net>\r\n"
		   " \"q;r\" with Microsoft SMTP Server id 15.1.2507.35; Thu, 6 Jun 2024\r\n",
		   1, 0);
	/* The date may hold keywords and builds. */
	assert_ex1(
		"Received: from a by EX1.contoso.local with Microsoft SMTP Server id 15.1.2507.35;"
		" by evil.example.net id 15.2.1.1 (by x)\r\n",
		1, 0);
}

/* The first non-empty clause of each kind is taken. */
static void test_clause_order(void **state)
{
	(void)state;
	assert_ex1("Received: from by (x) by EX1.contoso.local with Microsoft SMTP Server id "
		   "15.1.2507.35\r\n",
		   1, 0);
	assert_ex1("Received: by EX1.contoso.local by EX9.contoso.local with Microsoft SMTP Server "
		   "id 15.1.2507.35 id 15.2.1.1\r\n",
		   1, 0);
	assert_ex1("Received: from id by EX1.contoso.local with Microsoft SMTP Server id "
		   "15.1.2507.35\r\n",
		   1, 0);
	/* Order of clauses is free. */
	assert_ex1("Received: id 15.1.2507.35 with Microsoft SMTP Server by EX1.contoso.local from "
		   "x\r\n",
		   1, 0);
	/* Keywords are case-insensitive. */
	assert_ex1("Received: FROM a BY EX1.contoso.local WITH microsoft smtp SERVER ID "
		   "15.1.2507.35 VIA Frontend Transport\r\n",
		   1, 0);
}

static void test_host_normalisation(void **state)
{
	struct exdetect_result r;
	struct sbuf b = { 0 };

	(void)state;
	scan(NULL, "Received: by EX1.Contoso.LOCAL. with mapi id 15.1.2507.35\r\n", &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 1, 0, true);
	scan(NULL, "Received: by EX_1 with mapi id 15.1.2507.35\r\n", &r);
	assert_detect(&r, "ex_1", "15.1.2507.35", EX_FAMILY_2016, 1, 0, true);

	/* 255 octets is the longest host; a trailing dot does not count. */
	char host[EXDETECT_HOST_MAX + 2];
	memset(host, 'H', sizeof(host) - 1);
	host[EXDETECT_HOST_MAX] = '\0';
	sb_add(&b, "Received: by ");
	sb_add(&b, host);
	sb_add(&b, ". with mapi id 15.1.2507.35\r\n");
	scan(NULL, b.p, &r);
	assert_true(r.exchange);
	assert_int_equal(strlen(r.server), EXDETECT_HOST_MAX);
	assert_int_equal(r.server[0], 'h');

	host[EXDETECT_HOST_MAX] = 'H';
	host[EXDETECT_HOST_MAX + 1] = '\0';
	b.len = 0;
	sb_add(&b, "Received: by ");
	sb_add(&b, host);
	sb_add(&b, " with mapi id 15.1.2507.35\r\n");
	assert_none(b.p);
	free(b.p);
}

/* ---- garbage ---- */

static void test_nul_and_8bit(void **state)
{
	struct exdetect_result r;
	static const char nul_in_other_field[] = "Subject: a\0b\r\n\0\r\n" GOOD_HOP;
	static const char nul_in_build[] =
		"Received: by EX9.contoso.local with mapi id 15.1.2507.35\0;\r\n" GOOD_HOP;
	static const char nul_in_host[] =
		"Received: by EX9.contoso.local\0 with mapi id 15.1.2507.35;\r\n" GOOD_HOP;
	static const char nul_in_with[] =
		"Received: by EX9.contoso.local with ma\0pi id 15.1.2507.35;\r\n" GOOD_HOP;
	static const char nul_in_name[] = "Recei\0ved: by EX9.contoso.local with mapi id "
					  "15.1.2507.35;\r\n" GOOD_HOP;

	(void)state;
	exdetect_scan(NULL, nul_in_other_field, sizeof(nul_in_other_field) - 1, &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 3, 0, false);
	exdetect_scan(NULL, nul_in_build, sizeof(nul_in_build) - 1, &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 2, 1, false);
	exdetect_scan(NULL, nul_in_host, sizeof(nul_in_host) - 1, &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 2, 1, false);
	exdetect_scan(NULL, nul_in_with, sizeof(nul_in_with) - 1, &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 2, 1, false);
	exdetect_scan(NULL, nul_in_name, sizeof(nul_in_name) - 1, &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 2, 0, false);

	/* 8-bit octets around the hop do not disturb it. */
	assert_ex1(
		"Subject: \xe2\x82\xac\xff\xfe\r\n"
		"Received: from \xc3\xa9x0 (\xff) by EX1.contoso.local with Microsoft SMTP Server"
		" id 15.1.2507.35; \x80\r\n",
		2, 0);
	/* A bare CR is whitespace inside a line. */
	assert_ex1(
		"Received: by EX1.contoso.local\rwith Microsoft SMTP Server\rid 15.1.2507.35\r\n",
		1, 0);

	/* NULL input with length 0; the result is always cleared. */
	memset(&r, 0xa5, sizeof(r));
	assert_false(exdetect_scan(NULL, NULL, 0, &r));
	assert_not_exchange(&r);
	memset(&r, 0xa5, sizeof(r));
	assert_false(exdetect_scan(NULL, "Received: x", 11, &r));
	assert_not_exchange(&r);
}

static void test_garbage_lines(void **state)
{
	(void)state;
	/* Lines that are not fields end the field before them and are passed
	 * over; the section goes on. */
	assert_ex1("From MAILER-DAEMON Thu Jun  6 16:59:04 2024\r\n"
		   "garbage without a colon\r\n"
		   ":\r\n"
		   ": empty name\r\n"
		   "Received\r\n"
		   " by EX9.contoso.local with mapi id 15.1.2507.35\r\n" GOOD_HOP,
		   7, 0);
	/* A Received header cut short by a garbage line is decided on what it
	 * had. */
	assert_none("Received: from a by EX9.contoso.local with Microsoft SMTP Server\r\n"
		    "garbage\r\n"
		    " id 15.1.2507.35\r\n");
}

/* Pseudo-random input: no crash, and the invariants hold. */
static void test_random(void **state)
{
	static const char *const pieces[] = {
		"Received:",
		" by ",
		" EX1.contoso.local",
		" with ",
		" Microsoft",
		" SMTP",
		" Server",
		" mapi",
		" id ",
		" 15.1.2507.35",
		" 15.20.1.1",
		"(",
		")",
		";",
		"\r\n",
		"\n",
		"\r\n ",
		"\t",
		"\\",
		"<",
		">",
		"\"",
		"x",
		"\0",
		"\xff",
		":",
	};
	uint64_t seed = 0x9e3779b97f4a7c15u;
	struct sbuf b = { 0 };
	struct exdetect_config cfg = { 0 };
	struct exdetect_result r;

	(void)state;
	assert_true(exdetect_add_skip(&cfg, "*.mx.example.net"));
	for (int iter = 0; iter < 20000; iter++) {
		b.len = 0;
		int n = 1 + (int)(seed % 60);
		for (int k = 0; k < n; k++) {
			seed = seed * 6364136223846793005u + 1442695040888963407u;
			const char *p = pieces[(seed >> 33) % (sizeof(pieces) / sizeof(pieces[0]))];
			sb_addn(&b, p, *p ? strlen(p) : 1);
		}
		bool got = exdetect_scan(&cfg, b.p, b.len, &r);
		assert_int_equal(got, r.exchange);
		assert_non_null(memchr(r.server, '\0', sizeof(r.server)));
		if (got) {
			assert_int_equal(r.family, ex_family_of(&r.build));
			assert_int_not_equal(r.family, EX_FAMILY_ONLINE);
			assert_true(r.line >= 1);
			assert_true(r.hop < EXDETECT_MAX_RECEIVED);
			assert_true(r.server[0] != '\0');
		} else {
			assert_not_exchange(&r);
		}
	}
	free(b.p);
}

/* ---- section boundaries ---- */

static void test_section_end(void **state)
{
	(void)state;
	/* No blank line, no final line end. */
	assert_ex1("Subject: x\r\nReceived: by EX1.contoso.local with Microsoft SMTP Server id "
		   "15.1.2507.35",
		   2, 0);
	/* The body is not scanned, with either line end. */
	assert_none("Subject: x\r\n\r\n" GOOD_HOP);
	assert_none("Subject: x\n\n" GOOD_HOP);
	assert_none("\r\n" GOOD_HOP);
	/* A whitespace-only line is a continuation, not the end. */
	assert_ex1("Subject: x\r\n \r\n" GOOD_HOP, 3, 0);
	/* LF only, mixed with CRLF. */
	assert_ex1("Subject: x\nX-A: y\r\nReceived: by EX1.contoso.local\n with Microsoft SMTP"
		   " Server\r\n id 15.1.2507.35\n\nReceived: by EX9.contoso.local with mapi id "
		   "15.1.2507.35\n",
		   3, 0);
}

/* ---- bounds ---- */

/* Only the first 4 KiB of a Received header's unfolded value are parsed. */
static void test_big_header(void **state)
{
	struct sbuf b = { 0 };
	struct exdetect_result r;

	(void)state;
	/* 1 MB comment before the id: the id lies beyond the bound. */
	sb_add(&b, "Received: from a by EX9.contoso.local with Microsoft SMTP Server (");
	sb_fill(&b, 'x', 1 << 20);
	sb_add(&b, ") id 15.1.2507.35;\r\n");
	assert_false(exdetect_scan(NULL, b.p, b.len, &r));
	assert_not_exchange(&r);
	/* ... and the hop below is still reached, counted on the right line. */
	sb_add(&b, GOOD_HOP);
	exdetect_scan(NULL, b.p, b.len, &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 2, 1, false);

	/* The id right at the end of the 4 KiB still counts. */
	b.len = 0;
	const char *head = "Received: from a (";
	const char *tail = ") by EX1.contoso.local with Microsoft SMTP Server id 15.1.2507.35";
	sb_add(&b, head);
	sb_fill(&b, 'x', 4096 - strlen(head + strlen("Received:")) - strlen(tail));
	sb_add(&b, tail);
	assert_int_equal(b.len - strlen("Received:"), 4096);
	sb_add(&b, "0\r\n"); /* past the bound: not seen */
	exdetect_scan(NULL, b.p, b.len, &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 1, 0, false);

	/* 1 MB after the id, in one line and in 16-octet continuation lines. */
	b.len = 0;
	sb_add(&b, "Received: from a by EX1.contoso.local with Microsoft SMTP Server id "
		   "15.1.2507.35 (");
	sb_fill(&b, 'y', 1 << 20);
	sb_add(&b, ")\r\n");
	for (int i = 0; i < (1 << 16); i++)
		sb_add(&b, " continuation.\r\n");
	exdetect_scan(NULL, b.p, b.len, &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 1, 0, false);

	/* A 1 MB field (folded into 65,536 lines) before the hop. */
	b.len = 0;
	sb_add(&b, "Subject: ");
	for (int i = 0; i < (1 << 16); i++)
		sb_add(&b, "0123456789abcd\r\n ");
	sb_add(&b, "end\r\n" GOOD_HOP);
	exdetect_scan(NULL, b.p, b.len, &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, (1 << 16) + 2, 0,
		      false);
	free(b.p);
}

/* Only the first EXDETECT_MAX_RECEIVED Received headers are examined. */
static void test_received_cap(void **state)
{
	struct sbuf b = { 0 };
	struct exdetect_result r;
	static const char *const filler[] = {
		"Received: from a.example.net (a.example.net [198.51.100.1])\r\n"
		"\tby mx.example.net (Postfix) with ESMTPS id 4W1kQd6Fz3z4xY8\r\n"
		"\tfor <bob@example.net>; Fri, 21 Jun 2024 15:03:12 +0200 (CEST)\r\n",
		"Received: from a by AM6PR04MB5432.eurprd04.prod.example.net with Microsoft SMTP "
		"Server id 15.20.7633.25 via Frontend Transport; Thu, 13 Jun 2024 09:14:08 "
		"+0000\r\n",
		"Received: from a by EX9.contoso.local with mapi id 15.1.2507;\r\n",
	};

	(void)state;
	for (size_t f = 0; f < sizeof(filler) / sizeof(filler[0]); f++) {
		unsigned lines_per = 0;
		for (const char *p = filler[f]; *p; p++)
			lines_per += *p == '\n';

		/* The Exchange hop as the last examined one: found. */
		b.len = 0;
		for (unsigned i = 0; i < EXDETECT_MAX_RECEIVED - 1; i++)
			sb_add(&b, filler[f]);
		sb_add(&b, GOOD_HOP);
		exdetect_scan(NULL, b.p, b.len, &r);
		assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016,
			      (EXDETECT_MAX_RECEIVED - 1) * lines_per + 1,
			      EXDETECT_MAX_RECEIVED - 1, false);

		/* One further down: not found. */
		b.len = 0;
		for (unsigned i = 0; i < EXDETECT_MAX_RECEIVED; i++)
			sb_add(&b, filler[f]);
		sb_add(&b, GOOD_HOP);
		assert_false(exdetect_scan(NULL, b.p, b.len, &r));
		assert_not_exchange(&r);

		/* At position 10,000: not found, and fast. */
		b.len = 0;
		for (unsigned i = 0; i < 9999; i++)
			sb_add(&b, filler[f]);
		sb_add(&b, GOOD_HOP);
		assert_false(exdetect_scan(NULL, b.p, b.len, &r));
		assert_not_exchange(&r);
	}

	/* Other fields do not count toward the cap. */
	b.len = 0;
	for (unsigned i = 0; i < 10000; i++)
		sb_add(&b, "X-Received: by a with mapi id 15.1.2507.35\r\nComments: x\r\n");
	sb_add(&b, GOOD_HOP);
	exdetect_scan(NULL, b.p, b.len, &r);
	assert_detect(&r, "ex1.contoso.local", "15.1.2507.35", EX_FAMILY_2016, 20001, 0, false);
	free(b.p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures),           cmocka_unit_test(test_fixtures_lf),
		cmocka_unit_test(test_fixtures_truncated), cmocka_unit_test(test_short_and_padded),
		cmocka_unit_test(test_unknown_family),     cmocka_unit_test(test_folded),
		cmocka_unit_test(test_skip_patterns),      cmocka_unit_test(test_add_skip),
		cmocka_unit_test(test_skip_pathological),  cmocka_unit_test(test_online_skipped),
		cmocka_unit_test(test_not_microsoft),      cmocka_unit_test(test_passed_over),
		cmocka_unit_test(test_field_names),        cmocka_unit_test(test_missing_parts),
		cmocka_unit_test(test_comments),           cmocka_unit_test(test_clause_order),
		cmocka_unit_test(test_host_normalisation), cmocka_unit_test(test_nul_and_8bit),
		cmocka_unit_test(test_garbage_lines),      cmocka_unit_test(test_random),
		cmocka_unit_test(test_section_end),        cmocka_unit_test(test_big_header),
		cmocka_unit_test(test_received_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
