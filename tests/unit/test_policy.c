/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for enforce/policy.c: defaults, the file format, and every kind
 * of error the loader reports. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "enforce/policy.h"

static const char *const THROTTLE_5 = "Connecting Exchange server version is out-of-date; "
				      "connection to Exchange Online throttled for 5 mins/hr.";
static const char *const BLOCK_60 = "Connecting Exchange server version is out-of-date; "
				    "connection to Exchange Online blocked for 60 mins/hr.";

static int parse_str(const char *text, struct tes_policy *p, struct tes_policy_error *err)
{
	return tes_policy_parse(text, strlen(text), "test.conf", p, err);
}

/* Parse text that must fail; check the code, line and key. */
static void expect_error(const char *text, enum tes_policy_errcode code, unsigned line,
			 const char *key, const char *msg_part)
{
	struct tes_policy p, sentinel;
	struct tes_policy_error err;

	memset(&p, 0x5a, sizeof(p));
	sentinel = p;
	memset(&err, 0, sizeof(err));
	if (parse_str(text, &p, &err) == 0)
		fail_msg("accepted: %s", text);
	/* A rejected file changes nothing. */
	assert_memory_equal(&p, &sentinel, sizeof(p));
	if (err.code != code || err.line != line || strcmp(err.key, key) != 0)
		fail_msg("for %s: code %d line %u key '%s' msg '%s'; expected code %d line %u key "
			 "'%s'",
			 text, err.code, err.line, err.key, err.msg, code, line, key);
	assert_string_equal(err.file, "test.conf");
	if (msg_part && !strstr(err.msg, msg_part))
		fail_msg("message '%s' lacks '%s'", err.msg, msg_part);
}

static void test_defaults(void **state)
{
	static const unsigned table[TES_STAGE_COUNT][3] = {
		{ 0, 0, 0 },   { 30, 5, 0 },  { 40, 10, 0 }, { 50, 20, 0 },
		{ 60, 30, 5 }, { 70, 0, 10 }, { 80, 0, 20 }, { 90, 0, 60 },
	};
	struct tes_policy p;
	struct tes_policy_error err;
	char buf[TES_REPLY_TEXT_MAX];

	(void)state;
	tes_policy_default(&p);
	for (int i = 0; i < TES_STAGE_COUNT; i++) {
		assert_int_equal(p.stage[i].start_day, table[i][0]);
		assert_int_equal(p.stage[i].throttle_min, table[i][1]);
		assert_int_equal(p.stage[i].block_min, table[i][2]);
	}
	assert_int_equal(p.window_offset_min, 0);
	assert_int_equal(p.utc_offset_min, 0);
	assert_int_equal(p.scope, TES_SCOPE_CONNECTORS);
	assert_int_equal(p.full_block, TES_FULL_BLOCK_REPLY);
	assert_int_equal(p.pause_quota_days, 90);
	assert_string_equal(p.product, "Exchange Online");
	assert_int_equal(tes_reply_expand(p.throttle_text, p.product, 5, buf, sizeof(buf)),
			 (int)strlen(THROTTLE_5));
	assert_string_equal(buf, THROTTLE_5);
	tes_reply_expand(p.block_text, p.product, 60, buf, sizeof(buf));
	assert_string_equal(buf, BLOCK_60);
	assert_int_equal(tes_policy_validate(&p, &err), 0);
	assert_string_equal(tes_scope_name(TES_SCOPE_ALL), "all");
	assert_string_equal(tes_full_block_name(TES_FULL_BLOCK_DROP), "drop");
}

static void test_shipped_file_equals_defaults(void **state)
{
	const char *src = getenv("TES_SRCDIR");
	char path[1024];
	struct tes_policy def, p;
	struct tes_policy_error err;

	(void)state;
	snprintf(path, sizeof(path), "%s/data/policy.conf", src ? src : ".");
	memset(&p, 0, sizeof(p));
	if (tes_policy_load(path, &p, &err) != 0) {
		char msg[512];

		tes_policy_error_format(&err, msg, sizeof(msg));
		fail_msg("%s", msg);
	}
	tes_policy_default(&def);
	assert_true(tes_policy_equal(&p, &def));
}

static void test_empty_and_comments(void **state)
{
	struct tes_policy def, p;
	struct tes_policy_error err;

	(void)state;
	tes_policy_default(&def);
	assert_int_equal(parse_str("", &p, &err), 0);
	assert_true(tes_policy_equal(&p, &def));
	assert_int_equal(parse_str("# only a comment\n\n; another\n   \t\n[stages]\n", &p, &err),
			 0);
	assert_true(tes_policy_equal(&p, &def));
}

static void test_overrides(void **state)
{
	static const char text[] = "[window]\r\n"
				   "  offset_minutes   =   15  \r\n"
				   "[clock]\n"
				   "utc_offset_minutes = -90\n"
				   "[enforcement]\n"
				   "scope = all\n"
				   "full_block = drop\n"
				   "[pause]\n"
				   "quota_days = 30\n"
				   "[replies]\n"
				   "product = Contoso Mail # 1\n"
				   "throttle = 100%% slow: %p, %d min/h\n"
				   "[stages]\n"
				   "2 = 31\t6 1\n";
	struct tes_policy p;
	struct tes_policy_error err;
	char buf[TES_REPLY_TEXT_MAX];

	(void)state;
	assert_int_equal(parse_str(text, &p, &err), 0);
	assert_int_equal(p.window_offset_min, 15);
	assert_int_equal(p.utc_offset_min, -90);
	assert_int_equal(p.scope, TES_SCOPE_ALL);
	assert_int_equal(p.full_block, TES_FULL_BLOCK_DROP);
	assert_int_equal(p.pause_quota_days, 30);
	assert_string_equal(p.product, "Contoso Mail # 1");
	assert_int_equal(p.stage[1].start_day, 31);
	assert_int_equal(p.stage[1].throttle_min, 6);
	assert_int_equal(p.stage[1].block_min, 1);
	/* Untouched rows keep their defaults. */
	assert_int_equal(p.stage[2].start_day, 40);
	tes_reply_expand(p.throttle_text, p.product, 6, buf, sizeof(buf));
	assert_string_equal(buf, "100% slow: Contoso Mail # 1, 6 min/h");
	tes_reply_expand(p.block_text, p.product, 60, buf, sizeof(buf));
	assert_string_equal(buf, "Connecting Exchange server version is out-of-date; connection to "
				 "Contoso Mail # 1 blocked for 60 mins/hr.");
	/* The same section may appear twice; keys stay unique. */
	assert_int_equal(parse_str("[pause]\nquota_days=1\n[window]\n[pause]\n", &p, &err), 0);
	assert_int_equal(p.pause_quota_days, 1);
	/* No newline at the end of the last line. */
	assert_int_equal(parse_str("[window]\noffset_minutes = 59", &p, &err), 0);
	assert_int_equal(p.window_offset_min, 59);
	assert_int_equal(parse_str("[clock]\nutc_offset_minutes = +330\n", &p, &err), 0);
	assert_int_equal(p.utc_offset_min, 330);
}

static void test_round_trip(void **state)
{
	struct tes_policy p, q;
	struct tes_policy_error err;
	char buf[4096];
	int n;

	(void)state;
	tes_policy_default(&p);
	n = tes_policy_format(&p, buf, sizeof(buf));
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	assert_int_equal(parse_str(buf, &q, &err), 0);
	assert_true(tes_policy_equal(&p, &q));

	p.stage[7].start_day = 120;
	p.stage[4].throttle_min = 25;
	p.window_offset_min = 7;
	p.utc_offset_min = -300;
	p.scope = TES_SCOPE_ALL;
	p.full_block = TES_FULL_BLOCK_DROP;
	p.pause_quota_days = 0;
	snprintf(p.product, sizeof(p.product), "Fabrikam Relay");
	snprintf(p.block_text, sizeof(p.block_text), "%s", "Blocked by %p for %d minutes (100%%)");
	assert_int_equal(tes_policy_validate(&p, &err), 0);
	n = tes_policy_format(&p, buf, sizeof(buf));
	assert_int_equal(parse_str(buf, &q, &err), 0);
	assert_true(tes_policy_equal(&p, &q));
	assert_false(tes_policy_equal(&p, &(struct tes_policy){ 0 }));

	/* A short buffer still reports the length needed, like snprintf. */
	char small[16];
	assert_int_equal(tes_policy_format(&p, small, sizeof(small)), n);
	assert_int_equal(strlen(small), sizeof(small) - 1);
}

static void test_errors_syntax(void **state)
{
	(void)state;
	expect_error("[stages]\n1 = 0 0 0\nthis is not a setting\n", TES_PERR_SYNTAX, 3, "",
		     "key = value");
	expect_error("# c\n[stages\n", TES_PERR_SYNTAX, 2, "", "']'");
	expect_error("[window]\n = 5\n", TES_PERR_SYNTAX, 2, "", "missing key");

	char big[1200];
	memset(big, 'x', sizeof(big));
	memcpy(big, "[replies]\nproduct = ", 20);
	big[sizeof(big) - 1] = '\0';
	expect_error(big, TES_PERR_SYNTAX, 2, "", "longer than");

	struct tes_policy p;
	struct tes_policy_error err;
	static const char nul[] = "[window]\noffset_minutes = 1\0\n";
	assert_int_equal(tes_policy_parse(nul, sizeof(nul) - 1, "test.conf", &p, &err), -1);
	assert_int_equal(err.code, TES_PERR_SYNTAX);
	assert_non_null(strstr(err.msg, "NUL"));
}

static void test_errors_sections_and_keys(void **state)
{
	(void)state;
	expect_error("[stages]\n[stage]\n", TES_PERR_SECTION, 2, "", "unknown section [stage]");
	expect_error("[]\n", TES_PERR_SECTION, 1, "", "unknown section");
	expect_error("\n\nscope = all\n", TES_PERR_KEY, 3, "", "before any [section]");
	expect_error("[enforcement]\nscope = all\nfullblock = drop\n", TES_PERR_KEY, 3, "",
		     "unknown key 'fullblock' in [enforcement]");
	expect_error("[stages]\n9 = 100 0 60\n", TES_PERR_KEY, 2, "", "unknown key '9'");
	/* A key that exists, but in another section. */
	expect_error("[window]\nscope = all\n", TES_PERR_KEY, 2, "", "in [window]");
	expect_error("[enforcement]\nscope = all\n\n# again\nscope = connectors\n",
		     TES_PERR_DUPLICATE, 5, "enforcement.scope", "line 2");
	expect_error("[stages]\n3 = 40 10 0\n[window]\n[stages]\n3 = 40 10 0\n", TES_PERR_DUPLICATE,
		     5, "stages.3", "line 2");
}

static void test_errors_values(void **state)
{
	(void)state;
	expect_error("[enforcement]\nscope = some\n", TES_PERR_VALUE, 2, "enforcement.scope",
		     "connectors or all");
	expect_error("[enforcement]\nfull_block = bounce\n", TES_PERR_VALUE, 2,
		     "enforcement.full_block", "reply or drop");
	expect_error("[window]\noffset_minutes = abc\n", TES_PERR_VALUE, 2, "window.offset_minutes",
		     "not a number");
	expect_error("[window]\noffset_minutes =\n", TES_PERR_VALUE, 2, "window.offset_minutes",
		     "not a number");
	expect_error("[window]\noffset_minutes = 1 5\n", TES_PERR_VALUE, 2, "window.offset_minutes",
		     "not a number");
	expect_error("[clock]\nutc_offset_minutes = -\n", TES_PERR_VALUE, 2,
		     "clock.utc_offset_minutes", "not a number");
	expect_error("[stages]\n2 = 30 5\n", TES_PERR_VALUE, 2, "stages.2", "three numbers");
	expect_error("[stages]\n2 = 30 5 0 1\n", TES_PERR_VALUE, 2, "stages.2", "found more");
	expect_error("[stages]\n2 = 30 five 0\n", TES_PERR_VALUE, 2, "stages.2",
		     "throttled minutes 'five'");
}

static void test_errors_ranges(void **state)
{
	(void)state;
	expect_error("[window]\noffset_minutes = 60\n", TES_PERR_RANGE, 2, "window.offset_minutes",
		     "0..59");
	expect_error("[window]\noffset_minutes = -1\n", TES_PERR_RANGE, 2, "window.offset_minutes",
		     "0..59");
	expect_error("[clock]\nutc_offset_minutes = 841\n", TES_PERR_RANGE, 2,
		     "clock.utc_offset_minutes", "-720..840");
	expect_error("[clock]\nutc_offset_minutes = -99999999999999999999\n", TES_PERR_RANGE, 2,
		     "clock.utc_offset_minutes", NULL);
	expect_error("[pause]\nquota_days = 367\n", TES_PERR_RANGE, 2, "pause.quota_days",
		     "0..366");
	expect_error("[stages]\n2 = 30 61 0\n", TES_PERR_RANGE, 2, "stages.2", "0..60");
	expect_error("[stages]\n8 = 36501 0 60\n", TES_PERR_RANGE, 2, "stages.8", "0..36500");
	expect_error("[stages]\n\n5 = 60 31 30\n", TES_PERR_RANGE, 3, "stages.5", "exceed 60");
}

static void test_errors_order(void **state)
{
	(void)state;
	expect_error("[stages]\n1 = 1 0 0\n", TES_PERR_ORDER, 2, "stages.1", "day 0");
	expect_error("[stages]\n2 = 30 5 0\n3 = 30 10 0\n", TES_PERR_ORDER, 3, "stages.3",
		     "not after stage 2");
	/* Only stage 2 is written; it now starts after the default stage 3: the
	 * error points at the line the file does have. */
	expect_error("[pause]\nquota_days = 90\n[stages]\n2 = 45 5 0\n", TES_PERR_ORDER, 4,
		     "stages.2", "stage 3 starts on day 40");
}

static void test_errors_texts(void **state)
{
	(void)state;
	expect_error("[replies]\nthrottle = throttled for a while\n", TES_PERR_TEXT, 2,
		     "replies.throttle", "exactly once, found 0");
	expect_error("[replies]\nblock = %d of %d\n", TES_PERR_TEXT, 2, "replies.block", "found 2");
	expect_error("[replies]\nblock = blocked %s for %d\n", TES_PERR_TEXT, 2, "replies.block",
		     "unknown escape at column 9");
	expect_error("[replies]\nblock = ends in %\n", TES_PERR_TEXT, 2, "replies.block",
		     "unknown escape");
	expect_error("[replies]\nblock = caf\xc3\xa9 %d\n", TES_PERR_TEXT, 2, "replies.block",
		     "printable ASCII");
	expect_error("[replies]\nthrottle = tab\there %d\n", TES_PERR_TEXT, 2, "replies.throttle",
		     "0x09");
	expect_error("[replies]\nproduct =\n", TES_PERR_TEXT, 2, "replies.product", "empty");
	expect_error("[replies]\nproduct = 100% Mail\n", TES_PERR_TEXT, 2, "replies.product",
		     "'%'");

	char text[700];
	int n = snprintf(text, sizeof(text), "[replies]\nthrottle = ");
	memset(text + n, 'a', 400);
	snprintf(text + n + 400, sizeof(text) - (size_t)n - 400, " %%d\n");
	expect_error(text, TES_PERR_TEXT, 2, "replies.throttle", "too long");

	/* Each piece fits, the expansion does not. */
	char p63[64];
	memset(p63, 'P', 63);
	p63[63] = '\0';
	snprintf(text, sizeof(text), "[replies]\nproduct = %s\nthrottle = %s\n", p63,
		 "%p %p %p %p %p %p %d");
	expect_error(text, TES_PERR_TEXT, 3, "replies.throttle", "expanded");
}

static void test_errors_io(void **state)
{
	struct tes_policy p;
	struct tes_policy_error err;
	char path[] = "/tmp/tes_policy_XXXXXX";
	char msg[512];
	int fd;

	(void)state;
	assert_int_equal(tes_policy_load("/nonexistent/policy.conf", &p, &err), -1);
	assert_int_equal(err.code, TES_PERR_IO);
	assert_int_equal(err.line, 0);
	assert_string_equal(err.file, "/nonexistent/policy.conf");
	tes_policy_error_format(&err, msg, sizeof(msg));
	assert_string_equal(msg,
			    "/nonexistent/policy.conf: cannot open: No such file or directory");

	fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	for (int i = 0; i < 3000; i++)
		fputs("# a comment line to pad the file out\n", f);
	fclose(f);
	assert_int_equal(tes_policy_load(path, &p, &err), -1);
	assert_int_equal(err.code, TES_PERR_IO);
	assert_non_null(strstr(err.msg, "larger than"));

	/* A bad file on disk names itself and the line. */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("[stages]\n2 = 30 5 0\n3 = 30 10 0\n", f);
	fclose(f);
	assert_int_equal(tes_policy_load(path, &p, &err), -1);
	tes_policy_error_format(&err, msg, sizeof(msg));
	char want[512];
	snprintf(want, sizeof(want),
		 "%s:3: stages.3: stage 3 starts on day 30, not after stage 2 (day 30)", path);
	assert_string_equal(msg, want);
	unlink(path);
}

static void test_validate_in_memory(void **state)
{
	struct tes_policy p;
	struct tes_policy_error err;
	char msg[512];

	(void)state;
	tes_policy_default(&p);
	p.stage[3].block_min = 45;
	assert_int_equal(tes_policy_validate(&p, &err), -1);
	assert_int_equal(err.code, TES_PERR_RANGE);
	assert_int_equal(err.line, 0);
	assert_string_equal(err.key, "stages.4");
	tes_policy_error_format(&err, msg, sizeof(msg));
	assert_string_equal(
		msg,
		"<memory>: stages.4: throttled (20) plus blocked (45) minutes exceed 60 per hour");

	tes_policy_default(&p);
	p.scope = (enum tes_scope)7;
	assert_int_equal(tes_policy_validate(&p, &err), -1);
	assert_int_equal(err.code, TES_PERR_VALUE);

	tes_policy_default(&p);
	memset(p.product, 'x', sizeof(p.product));
	assert_int_equal(tes_policy_validate(&p, &err), -1);
	assert_int_equal(err.code, TES_PERR_TEXT);

	tes_policy_default(&p);
	snprintf(p.throttle_text, sizeof(p.throttle_text), " lead %%d");
	assert_int_equal(tes_policy_validate(&p, &err), -1);
	assert_string_equal(err.key, "replies.throttle");
	assert_non_null(strstr(err.msg, "blank"));
}

/* Issue 13: ageing, shared sources, the probe and the caps. */
static void test_issue13_keys(void **state)
{
	struct tes_policy p, q;
	struct tes_policy_error err;
	char buf[8192];
	int n;

	(void)state;
	tes_policy_default(&p);
	/* The documented defaults (docs/enforcement.md). */
	assert_int_equal(p.stale_after_days, 120);
	assert_int_equal(p.forget_after_days, 365);
	assert_int_equal(p.carried_days, 120);
	assert_int_equal(p.probe_interval_min, 60);
	assert_int_equal(p.servers_per_tenant, 10000);
	assert_int_equal(p.untrusted_servers, 10000);
	assert_int_equal(p.untrusted_per_prefix, 32);
	assert_int_equal(p.untrusted_prefix_v4, 24);
	assert_int_equal(p.untrusted_prefix_v6, 48);

	assert_int_equal(parse_str("[enforcement]\nprobe_interval = 15\n"
				   "[ageing]\nstale_after = 0\nforget_after = 30\n"
				   "[sources]\ncarried_days = 7\n"
				   "[limits]\nservers_per_tenant = 5\nuntrusted_servers = 0\n"
				   "untrusted_per_prefix = 2\nuntrusted_prefix_v4 = 32\n"
				   "untrusted_prefix_v6 = 64\n",
				   &p, &err),
			 0);
	assert_int_equal(p.probe_interval_min, 15);
	assert_int_equal(p.stale_after_days, 0);
	assert_int_equal(p.forget_after_days, 30);
	assert_int_equal(p.carried_days, 7);
	assert_int_equal(p.servers_per_tenant, 5);
	assert_int_equal(p.untrusted_servers, 0);
	assert_int_equal(p.untrusted_per_prefix, 2);
	assert_int_equal(p.untrusted_prefix_v4, 32);
	assert_int_equal(p.untrusted_prefix_v6, 64);
	/* Round trip through the formatter. */
	n = tes_policy_format(&p, buf, sizeof(buf));
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	assert_int_equal(parse_str(buf, &q, &err), 0);
	assert_true(tes_policy_equal(&p, &q));
	assert_false(tes_policy_equal(&p, &(struct tes_policy){ 0 }));
	/* The compat text keeps only what the first release knows, and parses
	 * to the same policy except the new keys' defaults. */
	n = tes_policy_format_compat(&p, buf, sizeof(buf));
	assert_true(n > 0 && (size_t)n < sizeof(buf));
	assert_null(strstr(buf, "ageing"));
	assert_null(strstr(buf, "probe_interval"));
	assert_null(strstr(buf, "limits"));
	assert_int_equal(parse_str(buf, &q, &err), 0);
	tes_policy_default(&p);
	assert_true(tes_policy_equal(&p, &q));

	/* Bad input names the file, the line and the key. */
	expect_error("[ageing]\nstale_after = 30\nforget_after = 30\n", TES_PERR_ORDER, 3,
		     "ageing.forget_after", "longer than stale_after");
	expect_error("[ageing]\nstale_after = 400\n", TES_PERR_ORDER, 2, "ageing.stale_after",
		     "forget_after (365 days) must be longer than stale_after (400 days)");
	expect_error("[ageing]\nstale_after = 3651\n", TES_PERR_RANGE, 2, "ageing.stale_after",
		     "outside 0..3650");
	expect_error("[ageing]\nstale_after = soon\n", TES_PERR_VALUE, 2, "ageing.stale_after",
		     "not a number");
	expect_error("[sources]\ncarried_days = 0\n", TES_PERR_RANGE, 2, "sources.carried_days",
		     "outside 1..3650");
	expect_error("[enforcement]\nprobe_interval = 1441\n", TES_PERR_RANGE, 2,
		     "enforcement.probe_interval", "outside 0..1440");
	expect_error("[limits]\nservers_per_tenant = 0\n", TES_PERR_RANGE, 2,
		     "limits.servers_per_tenant", NULL);
	expect_error("[limits]\nuntrusted_prefix_v4 = 33\n", TES_PERR_RANGE, 2,
		     "limits.untrusted_prefix_v4", "outside 8..32");
	expect_error("\n[limits]\nuntrusted_prefix_v6 = 200\n", TES_PERR_RANGE, 3,
		     "limits.untrusted_prefix_v6", NULL);
	expect_error("[limits]\nburst = 3\n", TES_PERR_KEY, 2, "", "unknown key 'burst'");
	expect_error("[ageing]\nstale_after = 1\nstale_after = 2\n", TES_PERR_DUPLICATE, 3,
		     "ageing.stale_after", "already set on line 2");
	/* The in-memory check applies the same rules. */
	tes_policy_default(&p);
	p.forget_after_days = p.stale_after_days;
	assert_int_equal(tes_policy_validate(&p, &err), -1);
	assert_int_equal(err.code, TES_PERR_ORDER);
	tes_policy_default(&p);
	p.carried_days = 0;
	assert_int_equal(tes_policy_validate(&p, &err), -1);
	assert_string_equal(err.key, "sources.carried_days");
}

static void test_reply_expand(void **state)
{
	char buf[16];

	(void)state;
	assert_int_equal(tes_reply_expand("%d%%%p", "X", 60, buf, sizeof(buf)), 4);
	assert_string_equal(buf, "60%X");
	/* Unknown escapes and a trailing % are copied, never interpreted. */
	assert_int_equal(tes_reply_expand("%s%", NULL, 1, buf, sizeof(buf)), 3);
	assert_string_equal(buf, "%s%");
	assert_int_equal(tes_reply_expand("0123456789 %p", "abcdef", 5, buf, sizeof(buf)), -1);
	assert_string_equal(buf, "0123456789 abcd");
	assert_int_equal(tes_reply_expand("x", "", 0, buf, 0), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_shipped_file_equals_defaults),
		cmocka_unit_test(test_empty_and_comments),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_errors_syntax),
		cmocka_unit_test(test_errors_sections_and_keys),
		cmocka_unit_test(test_errors_values),
		cmocka_unit_test(test_errors_ranges),
		cmocka_unit_test(test_errors_order),
		cmocka_unit_test(test_errors_texts),
		cmocka_unit_test(test_errors_io),
		cmocka_unit_test(test_validate_in_memory),
		cmocka_unit_test(test_reply_expand),
		cmocka_unit_test(test_issue13_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
