/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for enforce/decide.c: the timeline, windows, pauses, quota,
 * resets, scope, addresses, and the report. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "enforce/decide.h"

#define MIN 60
#define HOUR 3600
#define DAY INT64_C(86400)

/* 2024-03-01T00:00:00Z, 2024-12-01, 2025-01-01 */
#define T0 INT64_C(1709251200)
#define T_DEC1 INT64_C(1733011200)
#define T_2025 INT64_C(1735689600)

/* The section 4 table, written out again here so the tests do not read the
 * code's own copy. */
static const int64_t TAB_DAY[8] = { 0, 30, 40, 50, 60, 70, 80, 90 };
static const int TAB_THR[8] = { 0, 5, 10, 20, 30, 0, 0, 0 };
static const int TAB_BLK[8] = { 0, 0, 0, 0, 5, 10, 20, 60 };

struct fx {
	struct tes_policy pol;
	struct tes_tenant ten;
	struct tes_server srv;
	struct tes_addr in4, in6, out4, out6;
	struct tes_detection vuln, ok;
};

static struct tes_addr addr(const char *s)
{
	struct tes_addr a;

	if (!tes_addr_parse(s, &a))
		fail_msg("bad address %s", s);
	return a;
}

static void fx_init(struct fx *f, int64_t first)
{
	memset(f, 0, sizeof(*f));
	tes_policy_default(&f->pol);
	/* The timeline tests walk a server seen once, at first detection:
	 * without ageing.  Ageing (Stale, forgotten) has tests of its own. */
	f->pol.stale_after_days = 0;
	f->pol.forget_after_days = 0;
	f->ten.id = 7;
	snprintf(f->ten.name, sizeof(f->ten.name), "contoso");
	assert_int_equal(tes_connector_parse("198.51.100.0/24", NULL, &f->ten.connectors[0]), 0);
	assert_int_equal(tes_connector_parse("2001:db8:100::/48", NULL, &f->ten.connectors[1]), 0);
	f->ten.nconnectors = 2;
	f->in4 = addr("198.51.100.25");
	f->in6 = addr("2001:db8:100:7::25");
	f->out4 = addr("203.0.113.9");
	f->out6 = addr("2001:db8:101::25");
	f->vuln.cls = TES_BUILD_VULNERABLE;
	f->vuln.family = EX_FAMILY_2016;
	assert_true(ex_build_from_str("15.1.2507.35", &f->vuln.build));
	f->ok.cls = TES_BUILD_COMPLIANT;
	f->ok.family = EX_FAMILY_2016;
	assert_true(ex_build_from_str("15.1.2507.39", &f->ok.build));
	assert_int_equal(tes_server_observe(NULL, 7, "Exch1.bear.local", &f->ten, &f->pol, &f->vuln,
					    &f->in4, first, &f->srv),
			 TES_CHANGE_FIRST);
}

static struct tes_verdict decide(const struct fx *f, int64_t now, const struct tes_addr *src)
{
	struct tes_verdict v;

	memset(&v, 0x77, sizeof(v));
	tes_decide(&f->srv, &f->ten, &f->pol, now, src, NULL, false, &v);
	return v;
}

static void expect_reply(const struct tes_verdict *v, enum tes_action a, int minutes, int64_t now,
			 const char *where)
{
	char want[400], got[400];

	if (a == TES_ACCEPT) {
		if (v->action != TES_ACCEPT || v->code != 0 || v->text[0] != '\0')
			fail_msg("%s at %lld: expected accept, got %s %u", where, (long long)now,
				 tes_action_name(v->action), v->code);
		return;
	}
	if (a == TES_THROTTLE)
		snprintf(want, sizeof(want),
			 "450 4.7.230 Connecting Exchange server version is "
			 "out-of-date; connection to Exchange Online throttled "
			 "for %d mins/hr.",
			 minutes);
	else
		snprintf(want, sizeof(want),
			 "550 5.7.230 Connecting Exchange server version is "
			 "out-of-date; connection to Exchange Online blocked "
			 "for %d mins/hr.",
			 minutes);
	tes_verdict_reply(v, got, sizeof(got));
	if (v->action != a || v->minutes != minutes || strcmp(got, want) != 0)
		fail_msg("%s at %lld: expected %s '%s', got %s '%s'", where, (long long)now,
			 tes_action_name(a), want, tes_action_name(v->action), got);
}

static int oracle_stage(int64_t elapsed)
{
	int s = 1;

	for (int i = 1; i < 8; i++) {
		if (elapsed >= TAB_DAY[i] * DAY)
			s = i + 1;
	}
	return s;
}

/* The action the section 4 table and the window rule give at UTC time now
 * (offsets zero), for a stage. */
static enum tes_action oracle_action(int stage, int64_t now, int *minutes)
{
	int m = (int)((now / MIN) % 60);

	if (m < TAB_BLK[stage - 1]) {
		*minutes = TAB_BLK[stage - 1];
		return TES_BLOCK;
	}
	if (m < TAB_BLK[stage - 1] + TAB_THR[stage - 1]) {
		*minutes = TAB_THR[stage - 1];
		return TES_THROTTLE;
	}
	*minutes = 0;
	return TES_ACCEPT;
}

/* Every wall-clock minute of 0..120 days, at its first and last second,
 * against the oracle.  The first detection is not on a minute or hour
 * boundary, so stage changes and window edges fall at different times. */
static void test_timeline_minute_by_minute(void **state)
{
	struct fx f;
	const int64_t first = T0 + 13 * HOUR + 37 * MIN + 12;
	unsigned counts[4] = { 0 };

	(void)state;
	fx_init(&f, first);
	for (int64_t m = first / MIN; m <= (first + 120 * DAY) / MIN; m++) {
		for (int k = 0; k < 2; k++) {
			int64_t now = m * MIN + (k ? 59 : 0);
			if (now < first)
				continue;
			int stage = oracle_stage(now - first), minutes;
			enum tes_action a = oracle_action(stage, now, &minutes);
			struct tes_verdict v = decide(&f, now, &f.in4);

			if (v.stage != stage)
				fail_msg("at +%llds: stage %u, expected %d",
					 (long long)(now - first), v.stage, stage);
			expect_reply(&v, a, minutes, now, "timeline");
			assert_true(v.until > now);
			counts[v.action]++;
		}
	}
	/* Every kind of verdict but drop (full block answers 550 by default). */
	assert_true(counts[TES_ACCEPT] > 0 && counts[TES_THROTTLE] > 0 && counts[TES_BLOCK] > 0);
	assert_int_equal(counts[TES_DROP], 0);
	/* From day 90 on nothing is accepted: 30 days of minutes, twice each. */
	assert_true(counts[TES_BLOCK] >= 2 * 30 * 1440);
}

/* The seconds around each window boundary, written out by hand for every
 * stage, on the first, a middle and the last day of the stage and at several
 * hours of the day. */
static void test_window_edges(void **state)
{
	struct {
		int stage;
		struct {
			int mm, ss;
			enum tes_action a;
			int n;
		} at[8];
	} cases[] = {
		{ 1,
		  { { 0, 0, TES_ACCEPT, 0 },
		    { 4, 59, TES_ACCEPT, 0 },
		    { 59, 59, TES_ACCEPT, 0 } } },
		{ 2,
		  { { 0, 0, TES_THROTTLE, 5 },
		    { 4, 59, TES_THROTTLE, 5 },
		    { 5, 0, TES_ACCEPT, 0 },
		    { 59, 59, TES_ACCEPT, 0 } } },
		{ 3,
		  { { 0, 0, TES_THROTTLE, 10 },
		    { 9, 59, TES_THROTTLE, 10 },
		    { 10, 0, TES_ACCEPT, 0 },
		    { 59, 59, TES_ACCEPT, 0 } } },
		{ 4,
		  { { 0, 0, TES_THROTTLE, 20 },
		    { 19, 59, TES_THROTTLE, 20 },
		    { 20, 0, TES_ACCEPT, 0 },
		    { 59, 59, TES_ACCEPT, 0 } } },
		{ 5,
		  { { 0, 0, TES_BLOCK, 5 },
		    { 4, 59, TES_BLOCK, 5 },
		    { 5, 0, TES_THROTTLE, 30 },
		    { 34, 59, TES_THROTTLE, 30 },
		    { 35, 0, TES_ACCEPT, 0 },
		    { 59, 59, TES_ACCEPT, 0 } } },
		{ 6,
		  { { 0, 0, TES_BLOCK, 10 },
		    { 9, 59, TES_BLOCK, 10 },
		    { 10, 0, TES_ACCEPT, 0 },
		    { 59, 59, TES_ACCEPT, 0 } } },
		{ 7,
		  { { 0, 0, TES_BLOCK, 20 },
		    { 19, 59, TES_BLOCK, 20 },
		    { 20, 0, TES_ACCEPT, 0 },
		    { 59, 59, TES_ACCEPT, 0 } } },
		{ 8,
		  { { 0, 0, TES_BLOCK, 60 },
		    { 30, 0, TES_BLOCK, 60 },
		    { 59, 59, TES_BLOCK, 60 } } },
	};
	static const int hours[] = { 0, 1, 11, 12, 23 };
	struct fx f;

	(void)state;
	fx_init(&f, T0);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		int s = cases[c].stage;
		int64_t d0 = TAB_DAY[s - 1];
		int64_t days[3] = { d0, d0 + 4, s < 8 ? TAB_DAY[s] - 1 : 120 };

		for (int di = 0; di < 3; di++) {
			for (size_t hi = 0; hi < sizeof(hours) / sizeof(hours[0]); hi++) {
				for (int k = 0; k < 8 && (k == 0 || cases[c].at[k].mm); k++) {
					int64_t now = T0 + days[di] * DAY + hours[hi] * HOUR +
						      cases[c].at[k].mm * MIN + cases[c].at[k].ss;
					struct tes_verdict v = decide(&f, now, &f.in4);
					char where[64];

					snprintf(where, sizeof(where),
						 "stage %d day %lld %02d:%02d:%02d", s,
						 (long long)days[di], hours[hi], cases[c].at[k].mm,
						 cases[c].at[k].ss);
					assert_int_equal(v.stage, s);
					expect_reply(&v, cases[c].at[k].a, cases[c].at[k].n, now,
						     where);
				}
			}
		}
	}
}

/* 29d23h59m is still the old stage; 30d is the new one, for every boundary.
 * The clock starts at 10:00:00 so each boundary falls on minute 0, where
 * every stage with a window is active. */
static void test_stage_boundaries(void **state)
{
	struct fx f;
	const int64_t first = T0 + 10 * HOUR;

	(void)state;
	fx_init(&f, first);
	for (int s = 2; s <= 8; s++) {
		int64_t edge = first + TAB_DAY[s - 1] * DAY;
		int64_t before[] = { edge - MIN, edge - 1 };
		int n;

		for (int i = 0; i < 2; i++) {
			struct tes_verdict v = decide(&f, before[i], &f.in4);

			enum tes_action a = oracle_action(s - 1, before[i], &n);

			assert_int_equal(v.stage, s - 1);
			expect_reply(&v, a, n, before[i], "before");
			assert_int_equal(tes_server_stage(&f.srv, &f.ten, &f.pol, before[i]),
					 s - 1);
		}
		struct tes_verdict v = decide(&f, edge, &f.in4);
		assert_int_equal(v.stage, s);
		/* Minute 0: blocked if the stage blocks, else throttled. */
		expect_reply(&v, TAB_BLK[s - 1] ? TES_BLOCK : TES_THROTTLE,
			     TAB_BLK[s - 1] ? TAB_BLK[s - 1] : TAB_THR[s - 1], edge, "at edge");
		assert_int_equal(tes_server_stage(&f.srv, &f.ten, &f.pol, edge), s);
		/* Verdicts computed just before the edge expire at it. */
		assert_true(decide(&f, edge - 1, &f.in4).until <= edge);
	}
	/* 29d23h59m: report only, accepted, status Reporting. */
	assert_int_equal(tes_server_status(&f.srv, &f.ten, &f.pol, first + 30 * DAY - MIN),
			 TES_STATUS_REPORTING);
	assert_int_equal(tes_server_status(&f.srv, &f.ten, &f.pol, first + 30 * DAY),
			 TES_STATUS_THROTTLING);
	assert_int_equal(tes_server_status(&f.srv, &f.ten, &f.pol, first + 60 * DAY),
			 TES_STATUS_BLOCKING);
	assert_string_equal(tes_status_name(TES_STATUS_BLOCKING), "Blocking");
}

static void test_exact_reply_text(void **state)
{
	struct fx f;
	struct tes_verdict v;
	char line[400];

	(void)state;
	fx_init(&f, T0);
	v = decide(&f, T0 + 35 * DAY + 2 * MIN, &f.in4);
	assert_int_equal(v.action, TES_THROTTLE);
	assert_int_equal(v.code, 450);
	assert_string_equal(v.enhanced, "4.7.230");
	assert_int_equal(v.reason, TES_REASON_THROTTLE_WINDOW);
	assert_string_equal(v.text, "Connecting Exchange server version is out-of-date; connection "
				    "to Exchange Online throttled for 5 mins/hr.");
	v = decide(&f, T0 + 95 * DAY + 42 * MIN, &f.in4);
	assert_int_equal(v.action, TES_BLOCK);
	assert_int_equal(v.code, 550);
	assert_string_equal(v.enhanced, "5.7.230");
	tes_verdict_reply(&v, line, sizeof(line));
	assert_string_equal(line, "550 5.7.230 Connecting Exchange server version is out-of-date; "
				  "connection to Exchange Online blocked for 60 mins/hr.");
	/* The product name and texts come from the policy. */
	snprintf(f.pol.product, sizeof(f.pol.product), "Contoso Relay");
	v = decide(&f, T0 + 95 * DAY, &f.in4);
	assert_string_equal(v.text, "Connecting Exchange server version is out-of-date; connection "
				    "to Contoso Relay blocked for 60 mins/hr.");
	v = decide(&f, T0 + 95 * DAY + 2, &f.in6);
	assert_string_equal(v.text + strlen(v.text) - 15, "for 60 mins/hr.");
	v = decide(&f, T0 + 5 * DAY, &f.in4);
	tes_verdict_reply(&v, line, sizeof(line));
	assert_string_equal(line, "");
}

static void test_first_detection(void **state)
{
	struct fx f;
	struct tes_server s;
	struct tes_verdict v;

	(void)state;
	fx_init(&f, T0);
	assert_int_equal(f.srv.first_detected, T0);
	assert_int_equal(f.srv.last_seen, T0);
	assert_string_equal(f.srv.fqdn, "Exch1.bear.local");
	assert_int_equal(f.srv.tenant_id, 7);
	assert_int_equal(f.srv.family, EX_FAMILY_2016);
	assert_int_equal(f.srv.nsources, 1);
	assert_true(tes_addr_equal(&f.srv.sources[0], &f.in4));
	assert_false(f.srv.resolved);

	/* Unknown server with a vulnerable build: stage 1, report only, and the
	 * verdict lasts until stage 2 would start. */
	tes_decide(NULL, &f.ten, &f.pol, T0 + 5, &f.in4, &f.vuln, false, &v);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_REPORT_ONLY);
	assert_int_equal(v.stage, 1);
	assert_int_equal(v.until, T0 + 5 + 30 * DAY);
	/* No build and no state: nothing known. */
	tes_decide(NULL, &f.ten, &f.pol, T0, &f.in4, NULL, false, &v);
	assert_int_equal(v.reason, TES_REASON_UNKNOWN_SERVER);
	assert_int_equal(v.stage, 0);
	/* No Exchange hop at all: never enforced, even with a blocking state. */
	struct tes_detection none = { .cls = TES_BUILD_NOT_EXCHANGE };
	tes_decide(&f.srv, &f.ten, &f.pol, T0 + 100 * DAY, &f.in4, &none, true, &v);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_NOT_EXCHANGE);

	/* A compliant server never seen before is tracked without a clock: the
	 * sources it uses matter to a shared source's decision. */
	memset(&s, 0xee, sizeof(s));
	assert_int_equal(
		tes_server_observe(NULL, 7, "ok.bear.local", &f.ten, &f.pol, &f.ok, &f.in4, T0, &s),
		TES_CHANGE_TRACKED);
	assert_int_equal(s.tenant_id, 7);
	assert_true(s.resolved);
	assert_true(tes_server_compliant_only(&s));
	assert_int_equal(s.first_detected, 0);
	assert_int_equal(s.resolved_at, T0);
	assert_int_equal(s.last_seen, T0);
	assert_int_equal(s.nsources, 1);
	assert_int_equal(s.source_seen[0], T0);
	assert_int_equal(tes_server_status(&s, &f.ten, &f.pol, T0 + DAY), TES_STATUS_COMPLIANT);
	assert_int_equal(tes_server_stage(&s, &f.ten, &f.pol, T0 + 200 * DAY), 1);
	tes_decide(&s, &f.ten, &f.pol, T0 + DAY, &f.in4, NULL, false, &v);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_COMPLIANT);
	assert_int_equal(tes_server_next_change(&s, &f.ten, &f.pol, T0 + DAY), INT64_MAX);
	/* Out of date later: its first detection, a clock from then. */
	assert_int_equal(
		tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &f.in4, T0 + 5 * DAY, &s),
		TES_CHANGE_FIRST);
	assert_int_equal(s.first_detected, T0 + 5 * DAY);
	assert_false(s.resolved);
	memset(&s, 0xee, sizeof(s));
	assert_int_equal(tes_server_observe(NULL, 7, "x", &f.ten, &f.pol, NULL, &f.in4, T0, &s),
			 TES_CHANGE_NONE);
	assert_int_equal(tes_server_observe(NULL, 7, "", &f.ten, &f.pol, &f.vuln, &f.in4, T0, &s),
			 TES_CHANGE_INVALID);
	char longname[300];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(
		tes_server_observe(NULL, 7, longname, &f.ten, &f.pol, &f.vuln, &f.in4, T0, &s),
		TES_CHANGE_INVALID);

	/* Seen again with another vulnerable build: the clock keeps running. */
	struct tes_detection other = f.vuln;
	assert_true(ex_build_from_str("15.1.2507.6", &other.build));
	assert_int_equal(tes_server_observe(&f.srv, 0, NULL, &f.ten, &f.pol, &other, &f.in6,
					    T0 + 40 * DAY, &s),
			 TES_CHANGE_SEEN);
	assert_int_equal(s.first_detected, T0);
	assert_int_equal(s.last_seen, T0 + 40 * DAY);
	assert_int_equal(ex_build_cmp(&s.build, &other.build), 0);
	assert_int_equal(s.nsources, 2);
	/* An older sighting arriving late does not move last_seen back. */
	assert_int_equal(
		tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &other, &f.in6, T0 + 39 * DAY, &s),
		TES_CHANGE_SEEN);
	assert_int_equal(s.last_seen, T0 + 40 * DAY);
	/* Detection at MAIL FROM uses the stored state. */
	tes_decide(&s, &f.ten, &f.pol, T0 + 40 * DAY + 60, &f.in4, NULL, false, &v);
	expect_reply(&v, TES_THROTTLE, 10, T0 + 40 * DAY, "mail from");
}

static void test_sources_bounded(void **state)
{
	struct fx f;
	struct tes_server s;
	char a[64];

	(void)state;
	fx_init(&f, T0);
	s = f.srv;
	for (int i = 1; i <= 6; i++) {
		snprintf(a, sizeof(a), "2001:db8:100::%d", i);
		struct tes_addr src = addr(a);
		assert_int_equal(
			tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &src, T0 + i, &s),
			TES_CHANGE_SEEN);
		/* The same address again is not added twice. */
		assert_int_equal(
			tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &src, T0 + i, &s),
			TES_CHANGE_SEEN);
	}
	assert_int_equal(s.nsources, TES_SERVER_SOURCES_MAX);
	/* The newest four remain, oldest first. */
	for (int i = 0; i < TES_SERVER_SOURCES_MAX; i++) {
		char want[64];

		snprintf(want, sizeof(want), "2001:db8:100::%d", i + 3);
		tes_addr_format(&s.sources[i], a, sizeof(a));
		assert_string_equal(a, want);
	}
	/* No source (a sighting reported without one) changes nothing. */
	assert_int_equal(tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, NULL, T0 + 9, &s),
			 TES_CHANGE_SEEN);
	assert_int_equal(s.nsources, TES_SERVER_SOURCES_MAX);
}

static void test_compliant_resets(void **state)
{
	struct fx f;
	struct tes_server s;
	struct tes_verdict v;
	struct tes_report r;
	const int64_t t = T0 + 65 * DAY;

	(void)state;
	fx_init(&f, T0);
	expect_reply((v = decide(&f, t, &f.in4), &v), TES_BLOCK, 5, t, "blocking");
	/* This message carries a compliant build: accepted at once. */
	tes_decide(&f.srv, &f.ten, &f.pol, t, &f.in4, &f.ok, false, &v);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_COMPLIANT);
	assert_int_equal(v.until, INT64_MAX);
	assert_int_equal(tes_server_observe(&f.srv, 0, NULL, &f.ten, &f.pol, &f.ok, &f.in4, t, &s),
			 TES_CHANGE_RESOLVED);
	assert_true(s.resolved);
	assert_int_equal(s.resolved_at, t);
	assert_int_equal(ex_build_cmp(&s.build, &f.ok.build), 0);
	/* Later, at MAIL FROM, the resolved state lets the source through. */
	tes_decide(&s, &f.ten, &f.pol, t + 100 * DAY, &f.in4, NULL, false, &v);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_RESOLVED);
	assert_int_equal(tes_server_status(&s, &f.ten, &f.pol, t + DAY), TES_STATUS_RESOLVED);
	/* The stage it had reached stays visible. */
	assert_int_equal(tes_server_stage(&s, &f.ten, &f.pol, t + 50 * DAY), 5);
	assert_int_equal(tes_server_next_change(&s, &f.ten, &f.pol, t + DAY), INT64_MAX);
	tes_server_report(&s, &f.ten, &f.pol, t + DAY, &r);
	assert_string_equal(r.status_text, "Resolved");
	assert_false(r.has_next);
	assert_int_equal(r.stage, 5);
	assert_int_equal(r.throttle_enabled, T0 + 30 * DAY);
	/* Compliant again: just seen. */
	assert_int_equal(
		tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.ok, &f.in4, t + DAY, &s),
		TES_CHANGE_SEEN);
	assert_int_equal(s.resolved_at, t);
}

static void test_redetection_new_clock(void **state)
{
	struct fx f;
	struct tes_server s;
	struct tes_verdict v;
	const int64_t resolved = T0 + 95 * DAY, again = resolved + 200 * DAY + 17;

	(void)state;
	fx_init(&f, T0);
	assert_int_equal(
		tes_server_observe(&f.srv, 0, NULL, &f.ten, &f.pol, &f.ok, &f.in4, resolved, &s),
		TES_CHANGE_RESOLVED);
	/* A vulnerable sighting older than the resolution arrives late: it
	 * is stale and must not restart anything. */
	struct tes_server keep = s;
	assert_int_equal(
		tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &f.in4, resolved - 5, &s),
		TES_CHANGE_NONE);
	assert_memory_equal(&s, &keep, sizeof(s));

	/* Vulnerable again: the decision treats it as a first detection... */
	tes_decide(&s, &f.ten, &f.pol, again, &f.in4, &f.vuln, false, &v);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_REPORT_ONLY);
	assert_int_equal(v.stage, 1);
	/* ...and the transition starts a new clock. */
	assert_int_equal(
		tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &f.in4, again, &s),
		TES_CHANGE_REDETECTED);
	assert_false(s.resolved);
	assert_int_equal(s.resolved_at, 0);
	assert_int_equal(s.first_detected, again);
	f.srv = s;
	assert_int_equal(tes_server_status(&s, &f.ten, &f.pol, again + 29 * DAY),
			 TES_STATUS_REPORTING);
	/* 30 days after the new detection, at a minute-0 second. */
	int64_t t = again + 30 * DAY;
	t += (HOUR - t % HOUR) % HOUR;
	expect_reply((v = decide(&f, t, &f.in4), &v), TES_THROTTLE, 5, t, "new clock");
	expect_reply((v = decide(&f, again + 29 * DAY, &f.in4), &v), TES_ACCEPT, 0, t, "new clock");
}

static void test_pause_stops_clock(void **state)
{
	struct fx f;
	struct tes_verdict v;
	struct tes_report r;
	unsigned left;

	(void)state;
	fx_init(&f, T0);
	/* Day 25: pause 10 days. */
	assert_int_equal(
		tes_pause_add(&f.ten.pause, &f.pol, T0 + 25 * DAY, 10, &f.ten.pause, &left),
		TES_PAUSE_OK);
	assert_int_equal(left, 80);
	assert_int_equal(f.ten.pause.start, T0 + 25 * DAY);
	assert_int_equal(f.ten.pause.end, T0 + 35 * DAY);
	/* Day 30 would be stage 2: paused, and the clock reads 25 days. */
	v = decide(&f, T0 + 30 * DAY, &f.in4);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_PAUSED);
	assert_int_equal(v.stage, 1);
	assert_int_equal(v.until, T0 + 35 * DAY);
	assert_int_equal(tes_server_elapsed(&f.srv, &f.ten, &f.pol, T0 + 30 * DAY), 25 * DAY);
	assert_int_equal(tes_server_paused_seconds(&f.srv, &f.ten, T0 + 30 * DAY), 5 * DAY);
	assert_int_equal(tes_server_status(&f.srv, &f.ten, &f.pol, T0 + 30 * DAY),
			 TES_STATUS_PAUSED);
	assert_int_equal(tes_server_next_change(&f.srv, &f.ten, &f.pol, T0 + 30 * DAY),
			 T0 + 35 * DAY);
	tes_server_report(&f.srv, &f.ten, &f.pol, T0 + 30 * DAY, &r);
	assert_string_equal(r.status_text, "Paused");
	assert_true(r.has_next);
	assert_int_equal(r.next_stage, 2);
	assert_int_equal(r.next_stage_start, T0 + 40 * DAY);
	assert_int_equal(r.throttle_enabled, T0 + 40 * DAY);
	assert_int_equal(r.blocking_enabled, T0 + 70 * DAY);
	/* Resumed at day 35 where it stopped: stage 2 at day 40, not 30. */
	assert_int_equal(tes_server_elapsed(&f.srv, &f.ten, &f.pol, T0 + 35 * DAY), 25 * DAY);
	assert_int_equal(tes_server_status(&f.srv, &f.ten, &f.pol, T0 + 35 * DAY),
			 TES_STATUS_REPORTING);
	assert_int_equal(tes_server_next_change(&f.srv, &f.ten, &f.pol, T0 + 35 * DAY),
			 T0 + 40 * DAY);
	assert_int_equal(decide(&f, T0 + 40 * DAY - 1, &f.in4).stage, 1);
	assert_int_equal(decide(&f, T0 + 40 * DAY - MIN, &f.in4).reason, TES_REASON_REPORT_ONLY);
	expect_reply((v = decide(&f, T0 + 40 * DAY, &f.in4), &v), TES_THROTTLE, 5, T0 + 40 * DAY,
		     "resumed");

	/* A second pause at day 50 (clock 40 days, stage 3) for 5 days. */
	assert_int_equal(tes_pause_add(&f.ten.pause, &f.pol, T0 + 50 * DAY, 5, &f.ten.pause, &left),
			 TES_PAUSE_OK);
	assert_int_equal(left, 75);
	assert_int_equal(f.ten.pause.paused_before, 10 * DAY);
	assert_int_equal(tes_server_elapsed(&f.srv, &f.ten, &f.pol, T0 + 52 * DAY), 40 * DAY);
	assert_int_equal(tes_server_elapsed(&f.srv, &f.ten, &f.pol, T0 + 60 * DAY), 45 * DAY);
	assert_int_equal(decide(&f, T0 + 65 * DAY - 1, &f.in4).stage, 3);
	expect_reply((v = decide(&f, T0 + 65 * DAY, &f.in4), &v), TES_THROTTLE, 20, T0 + 65 * DAY,
		     "second pause");
	tes_server_report(&f.srv, &f.ten, &f.pol, T0 + 66 * DAY, &r);
	assert_int_equal(r.stage, 4);
	assert_int_equal(r.paused_seconds, 15 * DAY);
	/* The past date is exact: the earlier pause came before it. */
	assert_int_equal(r.throttle_enabled, T0 + 40 * DAY);
	assert_int_equal(r.blocking_enabled, T0 + 75 * DAY);
	assert_int_equal(r.next_stage_start, T0 + 75 * DAY);
	assert_int_equal(r.next_throttle_min, 30);
	assert_int_equal(r.next_block_min, 5);
	/* Day 105 is clock day 90: everything blocked. */
	expect_reply((v = decide(&f, T0 + 105 * DAY - 1, &f.in4), &v), TES_ACCEPT, 0, 0, "day 89");
	expect_reply((v = decide(&f, T0 + 105 * DAY, &f.in4), &v), TES_BLOCK, 60, 0, "day 90");
}

static void test_pause_before_detection(void **state)
{
	struct fx f;
	struct tes_server s;
	struct tes_report r;

	(void)state;
	fx_init(&f, T0);
	assert_int_equal(tes_pause_add(&f.ten.pause, &f.pol, T0, 10, &f.ten.pause, NULL),
			 TES_PAUSE_OK);
	/* First detected two days into the pause: its clock starts at the end. */
	assert_int_equal(tes_server_observe(NULL, 7, "ex2.bear.local", &f.ten, &f.pol, &f.vuln,
					    &f.in4, T0 + 2 * DAY, &s),
			 TES_CHANGE_FIRST);
	assert_int_equal(tes_server_elapsed(&s, &f.ten, &f.pol, T0 + 10 * DAY), 0);
	assert_int_equal(tes_server_elapsed(&s, &f.ten, &f.pol, T0 + 11 * DAY), DAY);
	tes_server_report(&s, &f.ten, &f.pol, T0 + 3 * DAY, &r);
	assert_int_equal(r.throttle_enabled, T0 + 40 * DAY);
	assert_int_equal(r.blocking_enabled, T0 + 70 * DAY);
	/* A pause that ended before first detection does not count. */
	assert_int_equal(tes_server_observe(NULL, 7, "ex3.bear.local", &f.ten, &f.pol, &f.vuln,
					    &f.in4, T0 + 20 * DAY, &s),
			 TES_CHANGE_FIRST);
	assert_int_equal(tes_server_elapsed(&s, &f.ten, &f.pol, T0 + 50 * DAY), 30 * DAY);
	assert_int_equal(tes_server_stage(&s, &f.ten, &f.pol, T0 + 50 * DAY), 2);
	/* Without the tenant there is no pause to subtract. */
	assert_int_equal(tes_server_paused_seconds(&f.srv, NULL, T0 + 50 * DAY), 0);
}

static void test_pause_extend_and_resume(void **state)
{
	struct fx f;
	struct tes_pause p;
	unsigned left;

	(void)state;
	fx_init(&f, T0);
	assert_int_equal(tes_pause_add(&f.ten.pause, &f.pol, T0 + 10 * DAY, 20, &p, &left),
			 TES_PAUSE_OK);
	/* Extending while active continues from the end, not from now. */
	assert_int_equal(tes_pause_add(&p, &f.pol, T0 + 12 * DAY, 5, &p, &left), TES_PAUSE_OK);
	assert_int_equal(p.start, T0 + 10 * DAY);
	assert_int_equal(p.end, T0 + 35 * DAY);
	assert_int_equal(p.days_used, 25);
	assert_int_equal(left, 65);
	/* Resume early at day 15: the clock runs again from 10 days. */
	assert_true(tes_pause_resume(&p, T0 + 15 * DAY, &f.ten.pause));
	assert_false(tes_pause_active(&f.ten.pause, T0 + 15 * DAY));
	assert_int_equal(tes_server_elapsed(&f.srv, &f.ten, &f.pol, T0 + 15 * DAY), 10 * DAY);
	assert_int_equal(tes_server_elapsed(&f.srv, &f.ten, &f.pol, T0 + 35 * DAY), 30 * DAY);
	assert_int_equal(tes_server_stage(&f.srv, &f.ten, &f.pol, T0 + 35 * DAY), 2);
	/* Granted days stay used. */
	assert_int_equal(tes_pause_days_left(&f.ten.pause, &f.pol, T0 + 16 * DAY, NULL), 65);
	assert_false(tes_pause_resume(&f.ten.pause, T0 + 16 * DAY, &p));
	assert_int_equal(p.end, T0 + 15 * DAY);
}

static void test_pause_quota(void **state)
{
	struct tes_policy pol;
	struct tes_pause p = { 0 }, q;
	unsigned left;
	int year;

	(void)state;
	tes_policy_default(&pol);
	/* 90 in one go, then nothing more this year. */
	assert_int_equal(tes_pause_add(&p, &pol, T0, 90, &q, &left), TES_PAUSE_OK);
	assert_int_equal(left, 0);
	assert_int_equal(q.end, T0 + 90 * DAY);
	assert_int_equal(q.year, 2024);
	assert_int_equal(tes_pause_add(&q, &pol, T0 + DAY, 1, &q, &left), TES_PAUSE_EQUOTA);
	assert_int_equal(left, 0);
	/* Still exhausted long after the pause ended, in the same year. */
	assert_int_equal(tes_pause_add(&q, &pol, T0 + 200 * DAY, 1, &q, &left), TES_PAUSE_EQUOTA);

	/* 45 + 45, then one more fails. */
	memset(&p, 0, sizeof(p));
	assert_int_equal(tes_pause_add(&p, &pol, T0, 45, &p, &left), TES_PAUSE_OK);
	assert_int_equal(left, 45);
	assert_int_equal(tes_pause_add(&p, &pol, T0 + 100 * DAY, 45, &p, &left), TES_PAUSE_OK);
	assert_int_equal(left, 0);
	assert_int_equal(p.days_used, 90);
	assert_int_equal(p.paused_before, 45 * DAY);
	q = p;
	assert_int_equal(tes_pause_add(&p, &pol, T0 + 150 * DAY, 1, &p, &left), TES_PAUSE_EQUOTA);
	assert_int_equal(left, 0);
	assert_memory_equal(&p, &q, sizeof(p));

	/* Asking for more than is left says how much is left. */
	memset(&p, 0, sizeof(p));
	assert_int_equal(tes_pause_add(&p, &pol, T0, 30, &p, &left), TES_PAUSE_OK);
	assert_int_equal(tes_pause_add(&p, &pol, T0 + DAY, 61, &p, &left), TES_PAUSE_EQUOTA);
	assert_int_equal(left, 60);
	assert_int_equal(p.days_used, 30);
	assert_int_equal(tes_pause_add(&p, &pol, T0 + DAY, 0, &p, &left), TES_PAUSE_EDAYS);
	assert_int_equal(tes_pause_days_left(&p, &pol, T0 + DAY, &year), 60);
	assert_int_equal(year, 2024);

	/* A new calendar year brings a new quota. */
	memset(&p, 0, sizeof(p));
	assert_int_equal(tes_pause_add(&p, &pol, T0, 90, &p, &left), TES_PAUSE_OK);
	assert_int_equal(tes_pause_days_left(&p, &pol, T_2025 - 1, NULL), 0);
	assert_int_equal(tes_pause_days_left(&p, &pol, T_2025, &year), 90);
	assert_int_equal(year, 2025);
	assert_int_equal(tes_pause_add(&p, &pol, T_2025 + DAY, 90, &p, &left), TES_PAUSE_OK);
	assert_int_equal(p.year, 2025);

	/* Spanning New Year: 60 days from 1 December count for that year. An
	 * extension starts at the end (30 January) and counts for the next. */
	memset(&p, 0, sizeof(p));
	assert_int_equal(tes_pause_add(&p, &pol, T_DEC1, 60, &p, &left), TES_PAUSE_OK);
	assert_int_equal(p.year, 2024);
	assert_int_equal(left, 30);
	assert_int_equal(tes_pause_days_left(&p, &pol, T_DEC1 + 9 * DAY, &year), 90);
	assert_int_equal(year, 2025);
	assert_int_equal(tes_pause_add(&p, &pol, T_DEC1 + 9 * DAY, 10, &p, &left), TES_PAUSE_OK);
	assert_int_equal(p.year, 2025);
	assert_int_equal(p.days_used, 10);
	assert_int_equal(left, 80);
	assert_int_equal(p.end, T_DEC1 + 70 * DAY);

	/* The year is the local one: 23:00 UTC on 31 December is already
	 * 2025 two hours east of UTC. */
	pol.utc_offset_min = 120;
	memset(&p, 0, sizeof(p));
	assert_int_equal(tes_pause_add(&p, &pol, T_2025 - HOUR, 5, &p, &left), TES_PAUSE_OK);
	assert_int_equal(p.year, 2025);
	pol.utc_offset_min = 0;
	memset(&p, 0, sizeof(p));
	assert_int_equal(tes_pause_add(&p, &pol, T_2025 - HOUR, 5, &p, &left), TES_PAUSE_OK);
	assert_int_equal(p.year, 2024);

	/* A quota of 0 forbids pausing. */
	pol.pause_quota_days = 0;
	memset(&p, 0, sizeof(p));
	assert_int_equal(tes_pause_add(&p, &pol, T0, 1, &p, &left), TES_PAUSE_EQUOTA);
	assert_int_equal(left, 0);
}

static void test_scope(void **state)
{
	struct fx f;
	struct tes_verdict v;
	const int64_t t = T0 + 100 * DAY + 17 * MIN; /* stage 8 */

	(void)state;
	fx_init(&f, T0);
	/* Connectors only (the default). */
	assert_int_equal(decide(&f, t, &f.in4).action, TES_BLOCK);
	assert_int_equal(decide(&f, t, &f.in6).action, TES_BLOCK);
	v = decide(&f, t, &f.out4);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_OUT_OF_SCOPE);
	assert_int_equal(v.stage, 8);
	assert_int_equal(decide(&f, t, &f.out6).reason, TES_REASON_OUT_OF_SCOPE);
	/* No source address, or no tenant: not over a connector. */
	assert_int_equal(decide(&f, t, NULL).reason, TES_REASON_OUT_OF_SCOPE);
	tes_decide(&f.srv, NULL, &f.pol, t, &f.in4, NULL, false, &v);
	assert_int_equal(v.reason, TES_REASON_OUT_OF_SCOPE);
	/* The caller matched a connector by certificate: enforced. */
	tes_decide(&f.srv, &f.ten, &f.pol, t, &f.out4, NULL, true, &v);
	assert_int_equal(v.action, TES_BLOCK);
	/* A certificate connector: the address alone is not enough. */
	assert_int_equal(
		tes_connector_parse("0.0.0.0/0", "Mail.Fabrikam.example", &f.ten.connectors[2]), 0);
	f.ten.nconnectors = 3;
	assert_int_equal(decide(&f, t, &f.out4).reason, TES_REASON_OUT_OF_SCOPE);
	assert_int_equal(tes_tenant_match_connector(&f.ten, &f.out4, NULL), -1);
	assert_int_equal(tes_tenant_match_connector(&f.ten, &f.out4, "mail.fabrikam.example"), 2);
	assert_int_equal(tes_tenant_match_connector(&f.ten, &f.out4, "other.example"), -1);
	assert_int_equal(tes_tenant_match_connector(&f.ten, &f.out6, "mail.fabrikam.example"), -1);
	assert_int_equal(tes_tenant_match_connector(&f.ten, &f.in4, NULL), 0);
	assert_int_equal(tes_tenant_match_connector(&f.ten, &f.in6, NULL), 1);

	/* All mail: enforced whatever the source. */
	f.pol.scope = TES_SCOPE_ALL;
	assert_int_equal(decide(&f, t, &f.out4).action, TES_BLOCK);
	assert_int_equal(decide(&f, t, &f.out6).action, TES_BLOCK);
	assert_int_equal(decide(&f, t, NULL).action, TES_BLOCK);
	tes_decide(&f.srv, NULL, &f.pol, t, &f.out4, NULL, false, &v);
	assert_int_equal(v.action, TES_BLOCK);
	/* Pause still wins under either scope. */
	assert_int_equal(tes_pause_add(&f.ten.pause, &f.pol, t, 1, &f.ten.pause, NULL),
			 TES_PAUSE_OK);
	assert_int_equal(decide(&f, t + HOUR, &f.out4).reason, TES_REASON_PAUSED);
	f.pol.scope = TES_SCOPE_CONNECTORS;
	assert_int_equal(decide(&f, t + HOUR, &f.in4).reason, TES_REASON_PAUSED);
	assert_int_equal(decide(&f, t + DAY, &f.in4).action, TES_BLOCK);
}

static void test_addresses_ipv6(void **state)
{
	struct tes_connector c;
	struct tes_addr a, b;
	char buf[64];
	uint8_t mapped[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7 };

	(void)state;
	assert_int_equal(tes_connector_parse("2001:db8:1::/48", NULL, &c), 0);
	assert_int_equal(c.prefix_len, 48);
	assert_int_equal(c.net.family, TES_ADDR_V6);
	a = addr("2001:db8:1:ffff:ffff:ffff:ffff:ffff");
	assert_true(tes_connector_match(&c, &a, NULL));
	a = addr("2001:db8:2::");
	assert_false(tes_connector_match(&c, &a, NULL));
	a = addr("2001:db8:0:ffff::1");
	assert_false(tes_connector_match(&c, &a, NULL));
	/* A prefix not on a byte boundary. */
	assert_int_equal(tes_connector_parse("2001:db8:80::/41", NULL, &c), 0);
	assert_true(tes_addr_in_prefix((a = addr("2001:db8:ff::1"), &a), &c.net, c.prefix_len));
	assert_false(tes_addr_in_prefix((a = addr("2001:db8:7f::1"), &a), &c.net, c.prefix_len));
	/* An IPv4 source never matches an IPv6 range and the reverse. */
	assert_int_equal(tes_connector_parse("::/0", NULL, &c), 0);
	assert_false(tes_connector_match(&c, (a = addr("192.0.2.1"), &a), NULL));
	assert_true(tes_connector_match(&c, (a = addr("::1"), &a), NULL));
	assert_int_equal(tes_connector_parse("198.51.100.0/25", NULL, &c), 0);
	assert_false(tes_connector_match(&c, (a = addr("2001:db8::1"), &a), NULL));
	assert_true(tes_connector_match(&c, (a = addr("198.51.100.127"), &a), NULL));
	assert_false(tes_connector_match(&c, (a = addr("198.51.100.128"), &a), NULL));
	/* A dual-stack socket's mapped address is the IPv4 one. */
	tes_addr_v6(&b, mapped);
	assert_int_equal(b.family, TES_ADDR_V4);
	assert_true(tes_connector_match(&c, &b, NULL));
	assert_true(tes_addr_equal(&b, (a = addr("::ffff:198.51.100.7"), &a)));
	tes_addr_format(&b, buf, sizeof(buf));
	assert_string_equal(buf, "198.51.100.7");
	/* Even when built by hand without the constructor. */
	b.family = TES_ADDR_V6;
	memcpy(b.a, mapped, 16);
	assert_true(tes_connector_match(&c, &b, NULL));
	assert_int_equal(tes_connector_parse("::ffff:198.51.100.0/120", NULL, &c), 0);
	assert_int_equal(c.net.family, TES_ADDR_V4);
	assert_int_equal(c.prefix_len, 24);
	/* A bare address is a single host. */
	assert_int_equal(tes_connector_parse("2001:db8::25", "", &c), 0);
	assert_int_equal(c.prefix_len, 128);
	assert_int_equal(tes_connector_parse("192.0.2.1", NULL, &c), 0);
	assert_int_equal(c.prefix_len, 32);
	/* Malformed ranges. */
	const char *bad[] = { "",
			      "/24",
			      "198.51.100.0/33",
			      "2001:db8::/129",
			      "198.51.100.1/24",
			      "2001:db8::1/64",
			      "198.51.100.0/",
			      "198.51.100.0/2x",
			      "198.51.100.0/0024",
			      "host.example/24",
			      "::ffff:198.51.100.0/95" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (tes_connector_parse(bad[i], NULL, &c) == 0)
			fail_msg("accepted %s", bad[i]);
	}
	char longname[TES_CERT_NAME_MAX + 1];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(tes_connector_parse("::/0", longname, &c), -1);
	assert_false(tes_addr_parse("256.1.1.1", &a));
	assert_false(tes_addr_parse("fe80::1%eth0", &a));
	a = addr("2001:DB8::A");
	tes_addr_format(&a, buf, sizeof(buf));
	assert_string_equal(buf, "2001:db8::a");
	memset(&b, 0, sizeof(b));
	tes_addr_format(&b, buf, sizeof(buf));
	assert_string_equal(buf, "-");
	assert_false(tes_addr_equal(&b, &a));

	/* The whole decision with IPv6 connectors only. */
	struct fx f;
	fx_init(&f, T0);
	f.ten.nconnectors = 0;
	assert_int_equal(tes_connector_parse("2001:db8:100::/48", NULL, &f.ten.connectors[0]), 0);
	f.ten.nconnectors = 1;
	assert_int_equal(decide(&f, T0 + 91 * DAY, &f.in6).action, TES_BLOCK);
	assert_int_equal(decide(&f, T0 + 91 * DAY, &f.in4).reason, TES_REASON_OUT_OF_SCOPE);
	assert_int_equal(decide(&f, T0 + 91 * DAY, &f.out6).reason, TES_REASON_OUT_OF_SCOPE);
}

static void test_drop_vs_reply(void **state)
{
	struct fx f;
	struct tes_verdict v;
	char line[400];

	(void)state;
	fx_init(&f, T0);
	/* Reply (the default): 550 at full block. */
	v = decide(&f, T0 + 90 * DAY, &f.in4);
	assert_int_equal(v.action, TES_BLOCK);
	f.pol.full_block = TES_FULL_BLOCK_DROP;
	for (int64_t t = T0 + 90 * DAY; t < T0 + 90 * DAY + 2 * HOUR; t += 7 * MIN) {
		v = decide(&f, t, &f.in4);
		assert_int_equal(v.action, TES_DROP);
		assert_int_equal(v.reason, TES_REASON_BLOCK_WINDOW);
		assert_int_equal(v.stage, 8);
		assert_int_equal(v.until, INT64_MAX);
		/* The 550 stays filled in for logs and for paths that cannot
		 * drop. */
		tes_verdict_reply(&v, line, sizeof(line));
		assert_string_equal(line,
				    "550 5.7.230 Connecting Exchange server version is "
				    "out-of-date; connection to Exchange Online blocked for 60 "
				    "mins/hr.");
	}
	/* Partial block stages answer 550 even in drop mode. */
	for (int s = 5; s <= 7; s++) {
		v = decide(&f, T0 + TAB_DAY[s - 1] * DAY + 2 * MIN, &f.in4);
		expect_reply(&v, TES_BLOCK, TAB_BLK[s - 1], 0, "partial block");
	}
	/* Day 89 23:59 (stage 7, outside its 20 minutes): accepted. */
	assert_int_equal(decide(&f, T0 + 90 * DAY - MIN, &f.in4).action, TES_ACCEPT);
	/* Out of scope or paused: no drop either. */
	assert_int_equal(decide(&f, T0 + 95 * DAY, &f.out4).action, TES_ACCEPT);
	/* A custom stage 8 short of 60 minutes is never dropped. */
	f.pol.stage[7].block_min = 59;
	assert_int_equal(decide(&f, T0 + 95 * DAY, &f.in4).action, TES_BLOCK);
	assert_string_equal(tes_action_name(TES_DROP), "drop");
}

static void test_time_zone_and_offset(void **state)
{
	struct fx f;
	struct tes_verdict v;
	const int64_t d = T0 + 35 * DAY; /* stage 2, 5 throttled minutes */

	(void)state;
	fx_init(&f, T0);
	/* UTC+05:30: the local hour starts at hh:30 UTC. */
	f.pol.utc_offset_min = 330;
	expect_reply((v = decide(&f, d + 10 * HOUR, &f.in4), &v), TES_ACCEPT, 0, 0, "10:00Z");
	expect_reply((v = decide(&f, d + 10 * HOUR + 29 * MIN + 59, &f.in4), &v), TES_ACCEPT, 0, 0,
		     "10:29:59Z");
	expect_reply((v = decide(&f, d + 10 * HOUR + 30 * MIN, &f.in4), &v), TES_THROTTLE, 5, 0,
		     "10:30Z");
	assert_int_equal(v.until, d + 10 * HOUR + 35 * MIN);
	expect_reply((v = decide(&f, d + 10 * HOUR + 34 * MIN + 59, &f.in4), &v), TES_THROTTLE, 5,
		     0, "10:34:59Z");
	expect_reply((v = decide(&f, d + 10 * HOUR + 35 * MIN, &f.in4), &v), TES_ACCEPT, 0, 0,
		     "10:35Z");
	/* Whole-hour offsets move nothing within the hour. */
	f.pol.utc_offset_min = -300;
	expect_reply((v = decide(&f, d + 3 * HOUR + 4 * MIN, &f.in4), &v), TES_THROTTLE, 5, 0,
		     "-05:00");
	/* Window offset 15 at UTC-01:30: the window starts at local hh:15,
	 * which is UTC hh:45. */
	f.pol.utc_offset_min = -90;
	f.pol.window_offset_min = 15;
	expect_reply((v = decide(&f, d + 44 * MIN + 59, &f.in4), &v), TES_ACCEPT, 0, 0, "44:59");
	expect_reply((v = decide(&f, d + 45 * MIN, &f.in4), &v), TES_THROTTLE, 5, 0, "45:00");
	expect_reply((v = decide(&f, d + 49 * MIN + 59, &f.in4), &v), TES_THROTTLE, 5, 0, "49:59");
	expect_reply((v = decide(&f, d + 50 * MIN, &f.in4), &v), TES_ACCEPT, 0, 0, "50:00");
	/* Stage 5 with a window offset of 50: blocked :50-:54, throttled
	 * :55 through :24 of the next hour. */
	f.pol.utc_offset_min = 0;
	f.pol.window_offset_min = 50;
	const int64_t s5 = T0 + 65 * DAY + 7 * HOUR;
	expect_reply((v = decide(&f, s5 + 49 * MIN + 59, &f.in4), &v), TES_ACCEPT, 0, 0,
		     "s5 49:59");
	expect_reply((v = decide(&f, s5 + 50 * MIN, &f.in4), &v), TES_BLOCK, 5, 0, "s5 50:00");
	expect_reply((v = decide(&f, s5 + 55 * MIN, &f.in4), &v), TES_THROTTLE, 30, 0, "s5 55:00");
	expect_reply((v = decide(&f, s5 + HOUR + 24 * MIN + 59, &f.in4), &v), TES_THROTTLE, 30, 0,
		     "s5 +1 24:59");
	assert_int_equal(v.until, s5 + HOUR + 25 * MIN);
	expect_reply((v = decide(&f, s5 + HOUR + 25 * MIN, &f.in4), &v), TES_ACCEPT, 0, 0,
		     "s5 +1 25:00");
	assert_int_equal(v.until, s5 + HOUR + 50 * MIN);
	/* Stage days are elapsed time: the zone does not move them. */
	f.pol.utc_offset_min = 840;
	assert_int_equal(decide(&f, T0 + 30 * DAY - 1, &f.in4).stage, 1);
	assert_int_equal(decide(&f, T0 + 30 * DAY, &f.in4).stage, 2);
}

static void test_until(void **state)
{
	struct fx f;
	struct tes_verdict v;
	const int64_t first = T0 + 13 * HOUR + 37 * MIN + 12;
	const int64_t h = first + 65 * DAY - 37 * MIN - 12; /* stage 5, 13:00 */

	(void)state;
	fx_init(&f, first);
	assert_int_equal(decide(&f, h + 2 * MIN + 30, &f.in4).until, h + 5 * MIN);
	assert_int_equal(decide(&f, h + 10 * MIN, &f.in4).until, h + 35 * MIN);
	assert_int_equal(decide(&f, h + 40 * MIN, &f.in4).until, h + HOUR);
	/* Stage 1 holds until stage 2. */
	assert_int_equal(decide(&f, first + DAY, &f.in4).until, first + 30 * DAY);
	/* Accepted at 13:36:12 of day 59 (stage 4, past its 20 minutes): the
	 * verdict ends with the stage at 13:37:12, before the next hour. */
	v = decide(&f, first + 60 * DAY - MIN, &f.in4);
	assert_int_equal(v.reason, TES_REASON_OUTSIDE_WINDOW);
	assert_int_equal(v.until, first + 60 * DAY);
	/* Full block ends never. */
	assert_int_equal(decide(&f, first + 91 * DAY, &f.in4).until, INT64_MAX);
	assert_int_equal(tes_server_next_change(&f.srv, &f.ten, &f.pol, first + 91 * DAY),
			 INT64_MAX);
	assert_int_equal(tes_server_next_change(&f.srv, &f.ten, &f.pol, first + 61 * DAY),
			 first + 70 * DAY);
	/* A stage throttling the whole hour is one segment too. */
	f.pol.stage[1].throttle_min = 60;
	v = decide(&f, first + 31 * DAY, &f.in4);
	assert_int_equal(v.action, TES_THROTTLE);
	assert_int_equal(v.until, first + 40 * DAY);
}

static void test_report(void **state)
{
	struct fx f;
	struct tes_report r;
	char buf[64];

	(void)state;
	fx_init(&f, T0 + 9 * HOUR);
	const int64_t first = T0 + 9 * HOUR;
	static const struct {
		int day;
		int stage;
		const char *status;
		int next_thr, next_blk;
	} rows[] = {
		{ 0, 1, "Reporting", 5, 0 },    { 29, 1, "Reporting", 5, 0 },
		{ 30, 2, "Throttling", 10, 0 }, { 45, 3, "Throttling", 20, 0 },
		{ 55, 4, "Throttling", 30, 5 }, { 60, 5, "Blocking", 0, 10 },
		{ 75, 6, "Blocking", 0, 20 },   { 89, 7, "Blocking", 0, 60 },
		{ 90, 8, "Blocking", -1, -1 },  { 400, 8, "Blocking", -1, -1 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		tes_server_report(&f.srv, &f.ten, &f.pol, first + rows[i].day * DAY, &r);
		assert_int_equal(r.stage, rows[i].stage);
		assert_string_equal(r.status_text, rows[i].status);
		assert_true(r.has_throttle_date);
		assert_int_equal(r.throttle_enabled, first + 30 * DAY);
		assert_true(r.has_block_date);
		assert_int_equal(r.blocking_enabled, first + 60 * DAY);
		assert_int_equal(r.paused_seconds, 0);
		assert_int_equal(r.elapsed, rows[i].day * DAY);
		if (rows[i].next_thr < 0) {
			assert_false(r.has_next);
			continue;
		}
		assert_true(r.has_next);
		assert_int_equal(r.next_stage, rows[i].stage + 1);
		assert_int_equal(r.next_stage_start, first + TAB_DAY[rows[i].stage] * DAY);
		assert_int_equal(r.next_throttle_min, rows[i].next_thr);
		assert_int_equal(r.next_block_min, rows[i].next_blk);
	}
	/* A policy that never blocks has no blocking date. */
	for (int i = 0; i < TES_STAGE_COUNT; i++)
		f.pol.stage[i].block_min = 0;
	tes_server_report(&f.srv, &f.ten, &f.pol, first, &r);
	assert_false(r.has_block_date);
	assert_true(r.has_throttle_date);

	tes_time_format(first + 30 * DAY, 0, buf, sizeof(buf));
	assert_string_equal(buf, "2024-03-31T09:00:00Z");
	tes_time_format(first + 30 * DAY, 330, buf, sizeof(buf));
	assert_string_equal(buf, "2024-03-31T14:30:00+05:30");
	tes_time_format(T_2025, -90, buf, sizeof(buf));
	assert_string_equal(buf, "2024-12-31T22:30:00-01:30");
	assert_int_equal(tes_civil_year(T_2025 - 1, 0), 2024);
	assert_int_equal(tes_civil_year(T_2025, 0), 2025);
	assert_int_equal(tes_civil_year(T_2025 - 1, 1), 2025);
	assert_int_equal(tes_civil_year(T_2025, -1), 2024);
	assert_string_equal(tes_reason_name(TES_REASON_OUT_OF_SCOPE), "out-of-scope");
}

/* A policy whose first stage already throttles: even a first detection is
 * answered 450 inside the window. */
static void test_custom_stage_table(void **state)
{
	static const char text[] = "[stages]\n1 = 0 15 0\n2 = 1 0 60\n";
	struct fx f;
	struct tes_verdict v;
	struct tes_policy_error err;

	(void)state;
	fx_init(&f, T0);
	assert_int_equal(tes_policy_parse(text, sizeof(text) - 1, "t", &f.pol, &err), 0);
	tes_decide(NULL, &f.ten, &f.pol, T0 + 5 * HOUR + 14 * MIN, &f.in4, &f.vuln, false, &v);
	expect_reply(&v, TES_THROTTLE, 15, 0, "first detection");
	assert_int_equal(v.until, T0 + 5 * HOUR + 15 * MIN);
	expect_reply((v = decide(&f, T0 + DAY + 59 * MIN, &f.in4), &v), TES_BLOCK, 60, 0, "day 1");
	assert_int_equal(tes_policy_stage_at(&f.pol, DAY - 1), 1);
	assert_int_equal(tes_policy_stage_at(&f.pol, DAY), 2);
	assert_int_equal(tes_policy_stage_at(&f.pol, 1000 * DAY), 8);
}

/* Absurd inputs are clamped, never undefined. */
static void test_extreme_inputs(void **state)
{
	struct fx f;
	struct tes_verdict v;
	struct tes_report r;

	(void)state;
	fx_init(&f, T0);
	v = decide(&f, INT64_MIN, &f.in4);
	assert_int_equal(v.stage, 1);
	v = decide(&f, INT64_MAX, &f.in4);
	assert_int_equal(v.stage, 8);
	f.srv.first_detected = INT64_MAX;
	f.srv.pause_base = INT64_MIN;
	f.ten.pause.start = INT64_MIN;
	f.ten.pause.end = INT64_MAX;
	f.ten.pause.paused_before = INT64_MAX;
	v = decide(&f, T0, &f.in4);
	assert_int_equal(v.action, TES_ACCEPT);
	tes_server_report(&f.srv, &f.ten, &f.pol, INT64_MAX, &r);
	assert_int_equal(tes_server_elapsed(&f.srv, &f.ten, &f.pol, INT64_MIN), 0);
	tes_server_next_change(&f.srv, &f.ten, &f.pol, INT64_MIN);
	f.ten.nconnectors = 1000;
	assert_int_equal(tes_tenant_match_connector(&f.ten, &f.out4, NULL), -1);
	f.srv.nsources = 200;
	struct tes_server s;
	assert_int_equal(
		tes_server_observe(&f.srv, 0, NULL, &f.ten, &f.pol, &f.vuln, &f.out4, T0, &s),
		TES_CHANGE_SEEN);
	assert_int_equal(s.nsources, TES_SERVER_SOURCES_MAX);
	struct tes_pause p = { 0 };
	unsigned left;
	assert_int_equal(tes_pause_add(&p, &f.pol, INT64_MAX, 90, &p, &left), TES_PAUSE_OK);
	assert_int_equal(p.end, TES_TIME_MAX);
}

/* ---- issue 13: ageing ---- */

/* Stale after stale_after days without a sighting: not enforced, its clock
 * stopped; seen again, the clock resumes where it stood; forgotten after
 * forget_after days.  Stale from day 35 (stage 2), back on day 200. */
static void test_ageing_stale_and_resume(void **state)
{
	struct fx f;
	struct tes_server s;
	struct tes_verdict v;
	struct tes_report r;
	int64_t back = T0 + 200 * DAY;

	(void)state;
	fx_init(&f, T0);
	f.pol.stale_after_days = 35;
	f.pol.forget_after_days = 365;
	s = f.srv;
	assert_int_equal(tes_server_stale_at(&s, &f.pol), T0 + 35 * DAY);
	assert_int_equal(tes_server_forget_at(&s, &f.pol), T0 + 365 * DAY);
	/* One second before: still enforced, and the next change is the
	 * moment it becomes Stale (before stage 3 on day 40). */
	assert_false(tes_server_stale(&s, &f.pol, T0 + 35 * DAY - 1));
	assert_int_equal(tes_server_status(&s, &f.ten, &f.pol, T0 + 35 * DAY - 1),
			 TES_STATUS_THROTTLING);
	assert_int_equal(tes_server_next_change(&s, &f.ten, &f.pol, T0 + 31 * DAY), T0 + 35 * DAY);
	tes_decide(&s, &f.ten, &f.pol, T0 + 34 * DAY + 2 * MIN, &f.in4, NULL, false, &v);
	expect_reply(&v, TES_THROTTLE, 5, T0 + 34 * DAY, "day 34");
	assert_int_equal(v.until, T0 + 34 * DAY + 5 * MIN);
	/* Stale: reported, not enforced at MAIL FROM, nothing scheduled. */
	assert_true(tes_server_stale(&s, &f.pol, T0 + 35 * DAY));
	assert_int_equal(tes_server_status(&s, &f.ten, &f.pol, T0 + 35 * DAY), TES_STATUS_STALE);
	assert_string_equal(tes_status_name(TES_STATUS_STALE), "Stale");
	assert_int_equal(tes_server_next_change(&s, &f.ten, &f.pol, T0 + 35 * DAY), INT64_MAX);
	tes_decide(&s, &f.ten, &f.pol, T0 + 100 * DAY + 2 * MIN, &f.in4, NULL, false, &v);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_STALE);
	assert_string_equal(tes_reason_name(v.reason), "stale");
	/* The clock stands at day 35: stage 2, for ever while Stale. */
	assert_int_equal(tes_server_elapsed(&s, &f.ten, &f.pol, back), 35 * DAY);
	assert_int_equal(tes_server_stale_seconds(&s, &f.ten, &f.pol, back), 165 * DAY);
	assert_int_equal(tes_server_stage(&s, &f.ten, &f.pol, back), 2);
	tes_server_report(&s, &f.ten, &f.pol, back, &r);
	assert_string_equal(r.status_text, "Stale");
	assert_true(r.has_stale_at);
	assert_int_equal(r.stale_at, T0 + 35 * DAY);
	assert_true(r.has_forget_at);
	assert_int_equal(r.forget_at, T0 + 365 * DAY);
	assert_true(r.has_throttle_date);
	assert_int_equal(r.throttle_enabled, T0 + 30 * DAY); /* passed: known */
	assert_false(r.has_block_date);                      /* to come: unknown */
	assert_false(r.has_next);
	assert_int_equal(r.stale_seconds, 165 * DAY);

	/* Its next message (minute 2 of the hour) is decided on the clock as
	 * it stood: stage 2, throttled for 5 minutes. */
	tes_decide(&s, &f.ten, &f.pol, back + 2 * MIN, &f.in4, &f.vuln, false, &v);
	expect_reply(&v, TES_THROTTLE, 5, back, "back on day 200");
	assert_int_equal(v.stage, 2);
	assert_int_equal(tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &f.in4, back, &s),
			 TES_CHANGE_SEEN);
	assert_int_equal(s.first_detected, T0);
	assert_int_equal(s.stale_seconds, 165 * DAY);
	assert_int_equal(s.last_seen, back);
	assert_int_equal(tes_server_status(&s, &f.ten, &f.pol, back), TES_STATUS_THROTTLING);
	/* Stage 3 five days later, stage 5 (blocking) 25 days later. */
	assert_int_equal(tes_server_next_change(&s, &f.ten, &f.pol, back), back + 5 * DAY);
	assert_int_equal(tes_server_stage(&s, &f.ten, &f.pol, back + 5 * DAY), 3);
	tes_server_report(&s, &f.ten, &f.pol, back, &r);
	assert_true(r.has_next);
	assert_int_equal(r.next_stage, 3);
	assert_int_equal(r.next_stage_start, back + 5 * DAY);
	assert_true(r.has_block_date);
	assert_int_equal(r.blocking_enabled, back + 25 * DAY);
	assert_int_equal(r.throttle_enabled, T0 + 30 * DAY);
	/* A second stale period adds up: quiet from day 200, Stale from 235,
	 * back on day 300: the clock stands at 35 + 35 = 70 days. */
	assert_int_equal(tes_server_elapsed(&s, &f.ten, &f.pol, T0 + 300 * DAY), 70 * DAY);
	assert_int_equal(tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &f.in4,
					    T0 + 300 * DAY, &s),
			 TES_CHANGE_SEEN);
	assert_int_equal(s.stale_seconds, (165 + 65) * DAY);
	assert_int_equal(tes_server_stage(&s, &f.ten, &f.pol, T0 + 300 * DAY), 6);
	/* A new clock (resolved, then out of date again) starts with none. */
	assert_int_equal(
		tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.ok, &f.in4, T0 + 301 * DAY, &s),
		TES_CHANGE_RESOLVED);
	/* resolved servers are never Stale */
	assert_false(tes_server_stale(&s, &f.pol, T0 + 600 * DAY));
	assert_int_equal(tes_server_status(&s, &f.ten, &f.pol, T0 + 600 * DAY),
			 TES_STATUS_RESOLVED);
	assert_int_equal(tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &f.in4,
					    T0 + 302 * DAY, &s),
			 TES_CHANGE_REDETECTED);
	assert_int_equal(s.stale_seconds, 0);
}

/* A pause during a stale period is not counted twice. */
static void test_ageing_with_pause(void **state)
{
	struct fx f;
	struct tes_server s;

	(void)state;
	fx_init(&f, T0);
	f.pol.stale_after_days = 35;
	f.pol.forget_after_days = 0; /* never */
	f.ten.pause.start = T0 + 50 * DAY;
	f.ten.pause.end = T0 + 60 * DAY;
	s = f.srv;
	assert_int_equal(tes_server_forget_at(&s, &f.pol), INT64_MAX);
	assert_int_equal(tes_server_paused_seconds(&s, &f.ten, T0 + 200 * DAY), 10 * DAY);
	assert_int_equal(tes_server_stale_seconds(&s, &f.ten, &f.pol, T0 + 200 * DAY), 155 * DAY);
	assert_int_equal(tes_server_elapsed(&s, &f.ten, &f.pol, T0 + 200 * DAY), 35 * DAY);
	assert_int_equal(tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &f.in4,
					    T0 + 200 * DAY, &s),
			 TES_CHANGE_SEEN);
	assert_int_equal(s.stale_seconds, 155 * DAY);
	assert_int_equal(tes_server_elapsed(&s, &f.ten, &f.pol, T0 + 201 * DAY), 36 * DAY);
	/* Stale takes precedence over Paused in the status. */
	s.last_seen = T0;
	s.stale_seconds = 0;
	assert_int_equal(tes_server_status(&s, &f.ten, &f.pol, T0 + 55 * DAY), TES_STATUS_STALE);
	/* ageing off: never Stale */
	f.pol.stale_after_days = 0;
	assert_false(tes_server_stale(&s, &f.pol, T0 + 3000 * DAY));
	assert_int_equal(tes_server_stale_at(&s, &f.pol), INT64_MAX);
}

/* A source's seen times: updated per source, the least recently seen
 * dropped when a fifth appears. */
static void test_source_seen(void **state)
{
	struct fx f;
	struct tes_server s;
	char a[64];

	(void)state;
	fx_init(&f, T0);
	s = f.srv;
	assert_int_equal(s.source_seen[0], T0);
	for (int i = 1; i <= 3; i++) {
		snprintf(a, sizeof(a), "2001:db8:100::%d", i);
		struct tes_addr src = addr(a);

		assert_int_equal(tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &src,
						    T0 + i * DAY, &s),
				 TES_CHANGE_SEEN);
	}
	/* in4 again, later: now the most recent; ::1 is the least recent. */
	assert_int_equal(
		tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &f.in4, T0 + 10 * DAY, &s),
		TES_CHANGE_SEEN);
	assert_int_equal(s.source_seen[0], T0 + 10 * DAY);
	/* an older sighting does not move it back */
	assert_int_equal(
		tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &f.in4, T0 + 5 * DAY, &s),
		TES_CHANGE_SEEN);
	assert_int_equal(s.source_seen[0], T0 + 10 * DAY);
	struct tes_addr fifth = addr("2001:db8:100::5");

	assert_int_equal(
		tes_server_observe(&s, 0, NULL, &f.ten, &f.pol, &f.vuln, &fifth, T0 + 11 * DAY, &s),
		TES_CHANGE_SEEN);
	assert_int_equal(s.nsources, TES_SERVER_SOURCES_MAX);
	for (int i = 0; i < TES_SERVER_SOURCES_MAX; i++) {
		tes_addr_format(&s.sources[i], a, sizeof(a));
		assert_string_not_equal(a, "2001:db8:100::1");
	}
	assert_true(tes_addr_equal(&s.sources[0], &f.in4));
	assert_true(tes_addr_equal(&s.sources[3], &fifth));
	assert_int_equal(s.source_seen[3], T0 + 11 * DAY);
}

/* ---- issue 13: shared sources ---- */

static void carried(struct tes_carried *c, const struct tes_server *s, const struct fx *f,
		    int64_t seen)
{
	c->s = s;
	c->t = &f->ten;
	c->seen = seen;
}

static void test_decide_carried(void **state)
{
	struct fx f, g;
	struct tes_server ok, thr;
	struct tes_carried c[4];
	struct tes_verdict v, one;
	/* day 95, minute 2: the first server is at stage 8 */
	int64_t now = T0 + 95 * DAY + 2 * MIN;

	(void)state;
	fx_init(&f, T0);
	fx_init(&g, T0 + 50 * DAY); /* stage 3 on day 95: throttled 10 min */
	thr = g.srv;
	assert_int_equal(tes_server_observe(NULL, 7, "ok.bear.local", &f.ten, &f.pol, &f.ok, &f.in4,
					    T0 + 94 * DAY, &ok),
			 TES_CHANGE_TRACKED);

	/* One server: its own verdict. */
	carried(&c[0], &f.srv, &f, T0 + 95 * DAY);
	tes_decide_carried(c, 1, &f.pol, now, &f.in4, false, &v);
	tes_decide(&f.srv, &f.ten, &f.pol, now, &f.in4, NULL, false, &one);
	expect_reply(&v, TES_BLOCK, 60, now, "one blocked");
	assert_int_equal(v.stage, 8);
	assert_true(tes_verdict_full_block(&v));
	/* stage 8 never ends; the source stops counting it after carried_days */
	assert_int_equal(one.until, INT64_MAX);
	assert_int_equal(v.until, T0 + 95 * DAY + (int64_t)f.pol.carried_days * DAY);

	/* With a compliant one behind the same address: read the headers. */
	carried(&c[1], &ok, &f, T0 + 94 * DAY);
	tes_decide_carried(c, 2, &f.pol, now, &f.in4, false, &v);
	expect_reply(&v, TES_ACCEPT, 0, now, "blocked + compliant");
	assert_int_equal(v.reason, TES_REASON_SHARED_SOURCE);
	assert_string_equal(tes_reason_name(v.reason), "shared-source");
	assert_false(tes_verdict_full_block(&v));
	/* ... until the compliant one stops counting (carried_days). */
	assert_int_equal(v.until, T0 + 94 * DAY + (int64_t)f.pol.carried_days * DAY);
	c[1].seen = now - (int64_t)f.pol.carried_days * DAY;
	tes_decide_carried(c, 2, &f.pol, now, &f.in4, false, &v);
	expect_reply(&v, TES_BLOCK, 60, now, "compliant one too old");
	/* unknown seen time (0): always counts */
	c[1].seen = 0;
	tes_decide_carried(c, 2, &f.pol, now, &f.in4, false, &v);
	assert_int_equal(v.reason, TES_REASON_SHARED_SOURCE);
	/* a server not on record counts as one that answers */
	carried(&c[1], NULL, &f, T0 + 94 * DAY);
	tes_decide_carried(c, 2, &f.pol, now, &f.in4, false, &v);
	assert_int_equal(v.action, TES_ACCEPT);

	/* Blocked and throttled: refusals of different kinds, so read. */
	carried(&c[1], &thr, &g, T0 + 94 * DAY);
	tes_decide(&thr, &g.ten, &g.pol, now, &f.in4, NULL, false, &one);
	expect_reply(&one, TES_THROTTLE, 10, now, "stage 3");
	tes_decide_carried(c, 2, &f.pol, now, &f.in4, false, &v);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_SHARED_SOURCE);

	/* Two blocked of different stages: the most lenient speaks. */
	struct fx h;

	fx_init(&h, T0 + 20 * DAY); /* day 75: stage 6, blocked 10 min */
	carried(&c[1], &h.srv, &h, T0 + 94 * DAY);
	tes_decide_carried(c, 2, &f.pol, now, &f.in4, false, &v);
	expect_reply(&v, TES_BLOCK, 10, now, "stage 8 + stage 6");
	assert_int_equal(v.stage, 6);
	assert_false(tes_verdict_full_block(&v));
	/* minute 12: stage 6's window is over, so it answers: read */
	tes_decide_carried(c, 2, &f.pol, now + 10 * MIN, &f.in4, false, &v);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_SHARED_SOURCE);

	/* full_block = drop: DROP only when every one drops. */
	f.pol.full_block = TES_FULL_BLOCK_DROP;
	tes_decide_carried(c, 1, &f.pol, now, &f.in4, false, &v);
	assert_int_equal(v.action, TES_DROP);
	struct fx k;

	fx_init(&k, T0 + 1 * DAY); /* day 94: stage 8 as well */
	carried(&c[1], &k.srv, &k, T0 + 94 * DAY);
	tes_decide_carried(c, 2, &f.pol, now, &f.in4, false, &v);
	assert_int_equal(v.action, TES_DROP);
	carried(&c[1], &h.srv, &h, T0 + 94 * DAY);
	tes_decide_carried(c, 2, &f.pol, now, &f.in4, false, &v);
	assert_int_equal(v.action, TES_BLOCK);
	assert_int_equal(v.minutes, 10);

	/* Nothing recent: an unknown source. */
	c[0].seen = now - 200 * DAY;
	tes_decide_carried(c, 1, &f.pol, now, &f.in4, false, &v);
	assert_int_equal(v.action, TES_ACCEPT);
	assert_int_equal(v.reason, TES_REASON_UNKNOWN_SERVER);
	tes_decide_carried(c, 0, &f.pol, now, &f.in4, false, &v);
	assert_int_equal(v.reason, TES_REASON_UNKNOWN_SERVER);
	assert_int_equal(v.until, INT64_MAX);
}

static void test_probe_due(void **state)
{
	struct tes_policy p;

	(void)state;
	tes_policy_default(&p);
	assert_int_equal(tes_probe_due_at(&p, T0), T0 + 3600);
	p.probe_interval_min = 15;
	assert_int_equal(tes_probe_due_at(&p, T0), T0 + 900);
	p.probe_interval_min = 0;
	assert_int_equal(tes_probe_due_at(&p, T0), INT64_MAX);
	assert_string_equal(tes_reason_name(TES_REASON_PROBE), "probe");
	/* recent: up to carried_days after, exclusive; 0 always */
	tes_policy_default(&p);
	assert_true(tes_carried_recent(T0, &p, T0 + 120 * DAY - 1));
	assert_false(tes_carried_recent(T0, &p, T0 + 120 * DAY));
	assert_true(tes_carried_recent(0, &p, T0 + 9000 * DAY));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timeline_minute_by_minute),
		cmocka_unit_test(test_window_edges),
		cmocka_unit_test(test_stage_boundaries),
		cmocka_unit_test(test_exact_reply_text),
		cmocka_unit_test(test_first_detection),
		cmocka_unit_test(test_sources_bounded),
		cmocka_unit_test(test_compliant_resets),
		cmocka_unit_test(test_redetection_new_clock),
		cmocka_unit_test(test_pause_stops_clock),
		cmocka_unit_test(test_pause_before_detection),
		cmocka_unit_test(test_pause_extend_and_resume),
		cmocka_unit_test(test_pause_quota),
		cmocka_unit_test(test_scope),
		cmocka_unit_test(test_addresses_ipv6),
		cmocka_unit_test(test_drop_vs_reply),
		cmocka_unit_test(test_time_zone_and_offset),
		cmocka_unit_test(test_until),
		cmocka_unit_test(test_report),
		cmocka_unit_test(test_custom_stage_table),
		cmocka_unit_test(test_extreme_inputs),
		cmocka_unit_test(test_ageing_stale_and_resume),
		cmocka_unit_test(test_ageing_with_pause),
		cmocka_unit_test(test_source_seen),
		cmocka_unit_test(test_decide_carried),
		cmocka_unit_test(test_probe_due),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
