/* SPDX-License-Identifier: BSD-3-Clause */
#include "enforce/decide.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define HOUR_SECONDS 3600

static int64_t clamp_time(int64_t t)
{
	if (t < 0)
		return 0;
	if (t > TES_TIME_MAX)
		return TES_TIME_MAX;
	return t;
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static int64_t floor_mod(int64_t a, int64_t m)
{
	int64_t r = a % m;

	return r < 0 ? r + m : r;
}

/* ---- addresses and connectors ---- */

static const uint8_t v4_mapped_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

void tes_addr_v4(struct tes_addr *out, const uint8_t b[4])
{
	memset(out, 0, sizeof(*out));
	out->family = TES_ADDR_V4;
	memcpy(out->a, b, 4);
}

void tes_addr_v6(struct tes_addr *out, const uint8_t b[16])
{
	if (memcmp(b, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
		tes_addr_v4(out, b + 12);
		return;
	}
	out->family = TES_ADDR_V6;
	memcpy(out->a, b, 16);
}

bool tes_addr_parse(const char *s, struct tes_addr *out)
{
	uint8_t b[16];

	if (inet_pton(AF_INET, s, b) == 1) {
		tes_addr_v4(out, b);
		return true;
	}
	if (inet_pton(AF_INET6, s, b) == 1) {
		tes_addr_v6(out, b);
		return true;
	}
	return false;
}

int tes_addr_format(const struct tes_addr *a, char *buf, size_t len)
{
	char tmp[INET6_ADDRSTRLEN];
	const char *r = NULL;

	if (a->family == TES_ADDR_V4)
		r = inet_ntop(AF_INET, a->a, tmp, sizeof(tmp));
	else if (a->family == TES_ADDR_V6)
		r = inet_ntop(AF_INET6, a->a, tmp, sizeof(tmp));
	return snprintf(buf, len, "%s", r ? r : "-");
}

static unsigned addr_bits(uint8_t family)
{
	return family == TES_ADDR_V4 ? 32 : family == TES_ADDR_V6 ? 128 : 0;
}

bool tes_addr_equal(const struct tes_addr *x, const struct tes_addr *y)
{
	unsigned bits = addr_bits(x->family);

	return x->family == y->family && memcmp(x->a, y->a, bits / 8) == 0;
}

bool tes_addr_in_prefix(const struct tes_addr *a, const struct tes_addr *net, unsigned prefix_len)
{
	unsigned bits = addr_bits(net->family);
	const uint8_t *x = a->a;
	unsigned whole, rest;

	/* A caller that filled in a mapped address by hand, bypassing the
	 * constructors, still matches its IPv4 range. */
	if (a->family == TES_ADDR_V6 && net->family == TES_ADDR_V4 &&
	    memcmp(a->a, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0)
		x = a->a + 12;
	else if (a->family != net->family)
		return false;
	if (bits == 0 || prefix_len > bits)
		return false;
	whole = prefix_len / 8;
	rest = prefix_len % 8;
	if (memcmp(x, net->a, whole) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));

		if ((x[whole] & mask) != (net->a[whole] & mask))
			return false;
	}
	return true;
}

int tes_connector_parse(const char *range, const char *cert_name, struct tes_connector *out)
{
	struct tes_connector c;
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(range, '/');
	size_t hlen = slash ? (size_t)(slash - range) : strlen(range);
	unsigned bits, len;

	memset(&c, 0, sizeof(c));
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, range, hlen);
	host[hlen] = '\0';
	if (!tes_addr_parse(host, &c.net))
		return -1;
	bits = addr_bits(c.net.family);
	/* "::ffff:192.0.2.0/120" became IPv4; its prefix counts 96 bits less. */
	if (c.net.family == TES_ADDR_V4 && strchr(host, ':'))
		bits += 96;
	len = bits;
	if (slash) {
		const char *p = slash + 1;

		if (!*p || strlen(p) > 3)
			return -1;
		len = 0;
		for (; *p; p++) {
			if (*p < '0' || *p > '9')
				return -1;
			len = len * 10 + (unsigned)(*p - '0');
		}
		if (len > bits)
			return -1;
	}
	if (c.net.family == TES_ADDR_V4 && bits == 128) {
		if (len < 96)
			return -1;
		len -= 96;
	}
	c.prefix_len = (uint8_t)len;
	/* Host bits set are almost always a typo for another range; refuse
	 * rather than guess which range was meant. */
	for (unsigned i = len; i < addr_bits(c.net.family); i++) {
		if (c.net.a[i / 8] & (0x80 >> (i % 8)))
			return -1;
	}
	if (cert_name) {
		if (strlen(cert_name) >= sizeof(c.cert_name))
			return -1;
		snprintf(c.cert_name, sizeof(c.cert_name), "%s", cert_name);
	}
	*out = c;
	return 0;
}

bool tes_connector_match(const struct tes_connector *c, const struct tes_addr *src,
			 const char *cert_name)
{
	if (!src || !tes_addr_in_prefix(src, &c->net, c->prefix_len))
		return false;
	if (c->cert_name[0] == '\0')
		return true;
	/* Certificate names are DNS names: case does not matter. */
	return cert_name && strncasecmp(c->cert_name, cert_name, sizeof(c->cert_name)) == 0;
}

int tes_tenant_match_connector(const struct tes_tenant *t, const struct tes_addr *src,
			       const char *cert_name)
{
	unsigned n;

	if (!t)
		return -1;
	n = t->nconnectors < TES_TENANT_CONNECTORS_MAX ? t->nconnectors : TES_TENANT_CONNECTORS_MAX;
	for (unsigned i = 0; i < n; i++) {
		if (tes_connector_match(&t->connectors[i], src, cert_name))
			return (int)i;
	}
	return -1;
}

/* ---- time ---- */

int tes_civil_year(int64_t t, int utc_offset_min)
{
	time_t local = (time_t)(clamp_time(t) + (int64_t)utc_offset_min * 60);
	struct tm tm;

	/* gmtime_r never consults the TZ environment: the offset above is the
	 * only time zone there is. */
	if (!gmtime_r(&local, &tm))
		return 1970;
	return tm.tm_year + 1900;
}

int tes_time_format(int64_t t, int utc_offset_min, char *buf, size_t len)
{
	time_t local = (time_t)(clamp_time(t) + (int64_t)utc_offset_min * 60);
	struct tm tm;
	int off = utc_offset_min < 0 ? -utc_offset_min : utc_offset_min;

	if (!gmtime_r(&local, &tm))
		return snprintf(buf, len, "-");
	if (utc_offset_min == 0)
		return snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
				tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	return snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", tm.tm_year + 1900,
			tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			utc_offset_min < 0 ? '-' : '+', off / 60, off % 60);
}

/* ---- pauses ---- */

/* Stored pauses come from disk and over sockets: clamp before any
 * arithmetic so that no value can overflow it. */
static struct tes_pause sane_pause(const struct tes_pause *in)
{
	struct tes_pause p = *in;

	p.start = clamp_time(p.start);
	p.end = clamp_time(p.end);
	p.paused_before = clamp_time(p.paused_before);
	return p;
}

static int64_t pause_len(const struct tes_pause *p)
{
	return p->end > p->start ? p->end - p->start : 0;
}

bool tes_pause_active(const struct tes_pause *in, int64_t now)
{
	struct tes_pause p = sane_pause(in);

	now = clamp_time(now);
	return p.start <= now && now < p.end;
}

int64_t tes_pause_clock(const struct tes_pause *in, int64_t t)
{
	struct tes_pause p = sane_pause(in);

	t = clamp_time(t);
	return p.paused_before + clamp(t - p.start, 0, pause_len(&p));
}

/* A pause not yet over is extended from its end; anything else starts a new
 * one now. */
static bool pause_running(const struct tes_pause *p, int64_t now)
{
	return pause_len(p) > 0 && now < p->end;
}

unsigned tes_pause_days_left(const struct tes_pause *in, const struct tes_policy *pol, int64_t now,
			     int *year)
{
	struct tes_pause p = sane_pause(in);
	int64_t from;
	int y;
	unsigned used;

	now = clamp_time(now);
	from = pause_running(&p, now) ? p.end : now;
	y = tes_civil_year(from, pol->utc_offset_min);
	used = p.year == y ? p.days_used : 0;
	if (year)
		*year = y;
	return pol->pause_quota_days > used ? pol->pause_quota_days - used : 0;
}

enum tes_pause_rc tes_pause_add(const struct tes_pause *in, const struct tes_policy *pol,
				int64_t now, unsigned days, struct tes_pause *out,
				unsigned *days_left)
{
	struct tes_pause p = sane_pause(in);
	int year;
	unsigned left;

	now = clamp_time(now);
	left = tes_pause_days_left(in, pol, now, &year);
	if (days_left)
		*days_left = left;
	if (days == 0)
		return TES_PAUSE_EDAYS;
	if (days > left)
		return TES_PAUSE_EQUOTA;
	if (pause_running(&p, now)) {
		p.end = clamp_time(p.end + (int64_t)days * TES_DAY_SECONDS);
	} else {
		/* Fold the finished pause into the total before the interval
		 * is reused: servers' clocks keep counting it. */
		p.paused_before = clamp_time(p.paused_before + pause_len(&p));
		p.start = now;
		p.end = clamp_time(now + (int64_t)days * TES_DAY_SECONDS);
	}
	if (p.year != year)
		p.days_used = 0;
	p.year = (uint16_t)year;
	p.days_used = (uint16_t)(p.days_used + days);
	*out = p;
	if (days_left)
		*days_left = left - days;
	return TES_PAUSE_OK;
}

bool tes_pause_resume(const struct tes_pause *in, int64_t now, struct tes_pause *out)
{
	struct tes_pause p = sane_pause(in);

	now = clamp_time(now);
	if (!tes_pause_active(&p, now)) {
		*out = p;
		return false;
	}
	p.end = now;
	*out = p;
	return true;
}

/* ---- servers ---- */

const char *tes_status_name(enum tes_status s)
{
	switch (s) {
	case TES_STATUS_REPORTING:
		return "Reporting";
	case TES_STATUS_THROTTLING:
		return "Throttling";
	case TES_STATUS_BLOCKING:
		return "Blocking";
	case TES_STATUS_RESOLVED:
		return "Resolved";
	case TES_STATUS_PAUSED:
		return "Paused";
	case TES_STATUS_STALE:
		return "Stale";
	case TES_STATUS_COMPLIANT:
		return "Compliant";
	case TES_STATUS_COUNT:
		break;
	}
	return "?";
}

static int64_t add_days(int64_t t, unsigned days)
{
	return clamp_time(clamp_time(t) + (int64_t)days * TES_DAY_SECONDS);
}

int64_t tes_server_stale_at(const struct tes_server *s, const struct tes_policy *p)
{
	if (s->resolved || p->stale_after_days == 0)
		return INT64_MAX;
	return add_days(s->last_seen, p->stale_after_days);
}

bool tes_server_stale(const struct tes_server *s, const struct tes_policy *p, int64_t now)
{
	return clamp_time(now) >= tes_server_stale_at(s, p);
}

int64_t tes_server_forget_at(const struct tes_server *s, const struct tes_policy *p)
{
	if (p->forget_after_days == 0)
		return INT64_MAX;
	return add_days(s->last_seen, p->forget_after_days);
}

int64_t tes_server_paused_seconds(const struct tes_server *s, const struct tes_tenant *t,
				  int64_t now)
{
	int64_t first = clamp_time(s->first_detected);
	int64_t span;

	now = clamp_time(now);
	span = now > first ? now - first : 0;
	if (!t)
		return 0;
	/* A base from another tenant or a reset one would make this negative
	 * or larger than the span: clamp to what is possible. */
	return clamp(tes_pause_clock(&t->pause, now) - clamp(s->pause_base, 0, 2 * TES_TIME_MAX), 0,
		     span);
}

/* Seconds of [from, to) not inside a pause of t. */
static int64_t unpaused_between(const struct tes_tenant *t, int64_t from, int64_t to)
{
	int64_t span = to > from ? to - from : 0;

	if (!t || span == 0)
		return span;
	return clamp(span - (tes_pause_clock(&t->pause, to) - tes_pause_clock(&t->pause, from)), 0,
		     span);
}

int64_t tes_server_stale_seconds(const struct tes_server *s, const struct tes_tenant *t,
				 const struct tes_policy *p, int64_t now)
{
	int64_t at = tes_server_stale_at(s, p);
	int64_t done = clamp(s->stale_seconds, 0, TES_TIME_MAX);

	now = clamp_time(now);
	if (now <= at)
		return done;
	return clamp(done + unpaused_between(t, at, now), 0, TES_TIME_MAX);
}

int64_t tes_server_elapsed(const struct tes_server *s, const struct tes_tenant *t,
			   const struct tes_policy *p, int64_t now)
{
	int64_t first = clamp_time(s->first_detected);
	int64_t e;

	now = clamp_time(now);
	if (now <= first)
		return 0;
	e = now - first - tes_server_paused_seconds(s, t, now) -
	    tes_server_stale_seconds(s, t, p, now);
	return e > 0 ? e : 0;
}

static int64_t stage_start(const struct tes_policy *p, unsigned stage)
{
	return (int64_t)p->stage[stage - 1].start_day * TES_DAY_SECONDS;
}

unsigned tes_policy_stage_at(const struct tes_policy *p, int64_t elapsed)
{
	unsigned s = 1;

	while (s < TES_STAGE_COUNT && elapsed >= stage_start(p, s + 1))
		s++;
	return s;
}

unsigned tes_server_stage(const struct tes_server *s, const struct tes_tenant *t,
			  const struct tes_policy *p, int64_t now)
{
	if (tes_server_compliant_only(s))
		return 1;
	if (s->resolved && s->resolved_at < now)
		now = s->resolved_at;
	return tes_policy_stage_at(p, tes_server_elapsed(s, t, p, now));
}

static enum tes_status stage_status(const struct tes_stage *st)
{
	if (st->block_min > 0)
		return TES_STATUS_BLOCKING;
	if (st->throttle_min > 0)
		return TES_STATUS_THROTTLING;
	return TES_STATUS_REPORTING;
}

enum tes_status tes_server_status(const struct tes_server *s, const struct tes_tenant *t,
				  const struct tes_policy *p, int64_t now)
{
	if (s->resolved)
		return tes_server_compliant_only(s) ? TES_STATUS_COMPLIANT : TES_STATUS_RESOLVED;
	if (tes_server_stale(s, p, now))
		return TES_STATUS_STALE;
	if (t && tes_pause_active(&t->pause, now))
		return TES_STATUS_PAUSED;
	return stage_status(&p->stage[tes_server_stage(s, t, p, now) - 1]);
}

int64_t tes_server_next_change(const struct tes_server *s, const struct tes_tenant *t,
			       const struct tes_policy *p, int64_t now)
{
	unsigned stage;
	int64_t stale_at, next;

	now = clamp_time(now);
	if (s->resolved)
		return INT64_MAX;
	/* Stale: the clock has stopped and only a sighting starts it again. */
	stale_at = tes_server_stale_at(s, p);
	if (now >= stale_at)
		return INT64_MAX;
	if (t && tes_pause_active(&t->pause, now)) {
		next = clamp_time(t->pause.end);
		return next < stale_at ? next : stale_at;
	}
	stage = tes_server_stage(s, t, p, now);
	if (stage == TES_STAGE_COUNT)
		return stale_at;
	next = now + stage_start(p, stage + 1) - tes_server_elapsed(s, t, p, now);
	return next < stale_at ? next : stale_at;
}

static void add_source(struct tes_server *s, const struct tes_addr *src, int64_t now)
{
	unsigned n = s->nsources < TES_SERVER_SOURCES_MAX ? s->nsources : TES_SERVER_SOURCES_MAX;
	unsigned old = 0;

	if (!src || addr_bits(src->family) == 0)
		return;
	for (unsigned i = 0; i < n; i++) {
		if (tes_addr_equal(&s->sources[i], src)) {
			if (now > s->source_seen[i])
				s->source_seen[i] = now;
			return;
		}
	}
	/* Keep the most recently seen: the least recently seen address is
	 * the likeliest to be stale (0, unknown, counts as the oldest). */
	if (n == TES_SERVER_SOURCES_MAX) {
		for (unsigned i = 1; i < n; i++) {
			if (s->source_seen[i] < s->source_seen[old])
				old = i;
		}
		memmove(&s->sources[old], &s->sources[old + 1],
			(n - 1 - old) * sizeof(s->sources[0]));
		memmove(&s->source_seen[old], &s->source_seen[old + 1],
			(n - 1 - old) * sizeof(s->source_seen[0]));
		n--;
	}
	s->sources[n] = *src;
	s->source_seen[n] = now;
	s->nsources = (uint8_t)(n + 1);
}

static void start_clock(struct tes_server *s, const struct tes_tenant *t, int64_t now)
{
	s->first_detected = now;
	s->resolved = false;
	s->resolved_at = 0;
	s->stale_seconds = 0;
	s->pause_base = t ? tes_pause_clock(&t->pause, now) : 0;
}

/* A sighting of a Stale server ends its stale period: the part of it that
 * was not paused anyway joins stale_seconds, so the clock resumes where it
 * stood when the server became Stale. */
static void end_stale(struct tes_server *s, const struct tes_tenant *t, const struct tes_policy *p,
		      int64_t now)
{
	int64_t at = tes_server_stale_at(s, p);

	if (now <= at)
		return;
	s->stale_seconds =
		clamp(clamp(s->stale_seconds, 0, TES_TIME_MAX) + unpaused_between(t, at, now), 0,
		      TES_TIME_MAX);
}

enum tes_change tes_server_observe(const struct tes_server *old, uint32_t tenant_id,
				   const char *fqdn, const struct tes_tenant *t,
				   const struct tes_policy *p, const struct tes_detection *d,
				   const struct tes_addr *src, int64_t now, struct tes_server *out)
{
	struct tes_server s;
	enum tes_change change;

	now = clamp_time(now);
	if (!d || (d->cls != TES_BUILD_COMPLIANT && d->cls != TES_BUILD_VULNERABLE))
		return TES_CHANGE_NONE;
	if (!old) {
		size_t n = fqdn ? strnlen(fqdn, TES_FQDN_MAX) : 0;

		if (n == 0 || n == TES_FQDN_MAX)
			return TES_CHANGE_INVALID;
		memset(&s, 0, sizeof(s));
		s.tenant_id = tenant_id;
		memcpy(s.fqdn, fqdn, n);
		if (d->cls == TES_BUILD_COMPLIANT) {
			/* Tracked without a clock: which sources it uses is
			 * what a shared source's decision needs to know. */
			s.resolved = true;
			s.resolved_at = now;
			change = TES_CHANGE_TRACKED;
		} else {
			start_clock(&s, t, now);
			change = TES_CHANGE_FIRST;
		}
	} else {
		s = *old;
		if (!s.resolved)
			end_stale(&s, t, p, now);
		if (d->cls == TES_BUILD_VULNERABLE && s.resolved) {
			bool never = tes_server_compliant_only(&s);

			if (now < s.resolved_at)
				return TES_CHANGE_NONE;
			start_clock(&s, t, now);
			change = never ? TES_CHANGE_FIRST : TES_CHANGE_REDETECTED;
		} else if (d->cls == TES_BUILD_COMPLIANT && !s.resolved) {
			s.resolved = true;
			s.resolved_at = now;
			change = TES_CHANGE_RESOLVED;
		} else {
			change = TES_CHANGE_SEEN;
		}
	}
	s.build = d->build;
	s.family = d->family;
	if (now > s.last_seen)
		s.last_seen = now;
	add_source(&s, src, now);
	*out = s;
	return change;
}

/* ---- the decision ---- */

const char *tes_action_name(enum tes_action a)
{
	switch (a) {
	case TES_ACCEPT:
		return "accept";
	case TES_THROTTLE:
		return "throttle";
	case TES_BLOCK:
		return "block";
	case TES_DROP:
		return "drop";
	}
	return "?";
}

const char *tes_reason_name(enum tes_reason r)
{
	switch (r) {
	case TES_REASON_NOT_EXCHANGE:
		return "not-exchange";
	case TES_REASON_COMPLIANT:
		return "compliant";
	case TES_REASON_UNKNOWN_SERVER:
		return "unknown-server";
	case TES_REASON_RESOLVED:
		return "resolved";
	case TES_REASON_OUT_OF_SCOPE:
		return "out-of-scope";
	case TES_REASON_PAUSED:
		return "paused";
	case TES_REASON_REPORT_ONLY:
		return "report-only";
	case TES_REASON_OUTSIDE_WINDOW:
		return "outside-window";
	case TES_REASON_THROTTLE_WINDOW:
		return "throttle-window";
	case TES_REASON_BLOCK_WINDOW:
		return "block-window";
	case TES_REASON_STALE:
		return "stale";
	case TES_REASON_SHARED_SOURCE:
		return "shared-source";
	case TES_REASON_PROBE:
		return "probe";
	}
	return "?";
}

static void verdict_accept(struct tes_verdict *v, enum tes_reason r, int64_t until)
{
	v->action = TES_ACCEPT;
	v->reason = r;
	v->until = until;
}

static void verdict_reply(struct tes_verdict *v, const struct tes_policy *p, enum tes_action a,
			  unsigned minutes)
{
	bool throttle = a == TES_THROTTLE;

	v->action = a;
	v->reason = throttle ? TES_REASON_THROTTLE_WINDOW : TES_REASON_BLOCK_WINDOW;
	v->minutes = (uint8_t)minutes;
	v->code = throttle ? TES_THROTTLE_CODE : TES_BLOCK_CODE;
	snprintf(v->enhanced, sizeof(v->enhanced), "%s",
		 throttle ? TES_THROTTLE_ENHANCED : TES_BLOCK_ENHANCED);
	/* A template too long for the buffer can only come from a policy that
	 * skipped validation; the truncated text is still a valid reply. */
	(void)tes_reply_expand(throttle ? p->throttle_text : p->block_text, p->product, minutes,
			       v->text, sizeof(v->text));
}

void tes_decide(const struct tes_server *s, const struct tes_tenant *t, const struct tes_policy *p,
		int64_t now, const struct tes_addr *src, const struct tes_detection *d,
		bool via_connector, struct tes_verdict *out)
{
	enum tes_build_class cls = d ? d->cls : TES_BUILD_UNKNOWN;
	int64_t elapsed, stage_end, pos, b1, b2, seg_end, stale_at = INT64_MAX;
	const struct tes_stage *st;
	unsigned stage;

	now = clamp_time(now);
	out->action = TES_ACCEPT;
	out->stage = 0;
	out->minutes = 0;
	out->code = 0;
	out->enhanced[0] = '\0';
	out->text[0] = '\0';

	switch (cls) {
	case TES_BUILD_NOT_EXCHANGE:
		verdict_accept(out, TES_REASON_NOT_EXCHANGE, INT64_MAX);
		return;
	case TES_BUILD_COMPLIANT:
		verdict_accept(out, TES_REASON_COMPLIANT, INT64_MAX);
		return;
	case TES_BUILD_VULNERABLE:
		/* Unknown or resolved: this message is the first detection of
		 * a new clock, which the caller stores through
		 * tes_server_observe.  A Stale server is seen again by this
		 * message: its clock stands where it stopped, which is what
		 * the elapsed time excludes the stale period for. */
		elapsed = (!s || s->resolved) ? 0 : tes_server_elapsed(s, t, p, now);
		break;
	case TES_BUILD_UNKNOWN:
	default:
		if (!s) {
			verdict_accept(out, TES_REASON_UNKNOWN_SERVER, INT64_MAX);
			return;
		}
		if (s->resolved) {
			verdict_accept(out,
				       tes_server_compliant_only(s) ? TES_REASON_COMPLIANT
								    : TES_REASON_RESOLVED,
				       INT64_MAX);
			return;
		}
		/* Not enforced while nothing of it is seen: its next message is
		 * read to its headers, which end the stale period. */
		stale_at = tes_server_stale_at(s, p);
		if (now >= stale_at) {
			verdict_accept(out, TES_REASON_STALE, INT64_MAX);
			return;
		}
		elapsed = tes_server_elapsed(s, t, p, now);
		break;
	}
	stage = tes_policy_stage_at(p, elapsed);
	out->stage = (uint8_t)stage;
	stage_end = stage < TES_STAGE_COUNT ? now + stage_start(p, stage + 1) - elapsed : INT64_MAX;
	/* Becoming Stale changes the verdict at MAIL FROM like a stage does. */
	if (stale_at < stage_end)
		stage_end = stale_at;

	if (p->scope == TES_SCOPE_CONNECTORS && !via_connector &&
	    tes_tenant_match_connector(t, src, NULL) < 0) {
		verdict_accept(out, TES_REASON_OUT_OF_SCOPE, INT64_MAX);
		return;
	}
	if (t && tes_pause_active(&t->pause, now)) {
		verdict_accept(out, TES_REASON_PAUSED, clamp_time(t->pause.end));
		return;
	}

	st = &p->stage[stage - 1];
	b1 = (int64_t)st->block_min * 60;
	b2 = b1 + (int64_t)st->throttle_min * 60;
	if (b2 == 0) {
		verdict_accept(out, TES_REASON_REPORT_ONLY, stage_end);
		return;
	}
	/* Seconds into the window's hour: local time, shifted by the offset. */
	pos = floor_mod(now + (int64_t)p->utc_offset_min * 60 - (int64_t)p->window_offset_min * 60,
			HOUR_SECONDS);
	if (pos < b1) {
		seg_end = b1;
		verdict_reply(out, p, TES_BLOCK, st->block_min);
		/* Dropping is only safe when nothing from the source could be
		 * accepted this hour; otherwise retries must reach a window. */
		if (st->block_min >= 60 && p->full_block == TES_FULL_BLOCK_DROP)
			out->action = TES_DROP;
	} else if (pos < b2) {
		seg_end = b2;
		verdict_reply(out, p, TES_THROTTLE, st->throttle_min);
	} else {
		seg_end = HOUR_SECONDS;
		verdict_accept(out, TES_REASON_OUTSIDE_WINDOW, 0);
	}
	/* One action filling the whole hour only ends with the stage. */
	if (b1 == HOUR_SECONDS || b2 - b1 == HOUR_SECONDS)
		out->until = stage_end;
	else
		out->until = now + (seg_end - pos) < stage_end ? now + (seg_end - pos) : stage_end;
}

/* ---- shared sources ---- */

bool tes_carried_recent(int64_t seen, const struct tes_policy *p, int64_t now)
{
	if (seen <= 0)
		return true;
	return clamp_time(now) < add_days(seen, p->carried_days);
}

bool tes_verdict_full_block(const struct tes_verdict *v)
{
	return (v->action == TES_BLOCK || v->action == TES_DROP) && v->minutes >= 60;
}

int64_t tes_probe_due_at(const struct tes_policy *p, int64_t seen)
{
	if (p->probe_interval_min == 0)
		return INT64_MAX;
	return clamp_time(clamp_time(seen) + (int64_t)p->probe_interval_min * 60);
}

void tes_decide_carried(const struct tes_carried *c, unsigned n, const struct tes_policy *p,
			int64_t now, const struct tes_addr *src, bool via_connector,
			struct tes_verdict *out)
{
	struct tes_verdict v, acc, best;
	unsigned counted = 0;
	int64_t until = INT64_MAX;
	bool any_accept = false, have_acc = false, have_best = false, mixed = false;
	bool all_drop = true;
	enum tes_action kind = TES_ACCEPT;

	now = clamp_time(now);
	for (unsigned i = 0; i < n; i++) {
		if (!tes_carried_recent(c[i].seen, p, now))
			continue;
		/* The answer may change when this one stops counting. */
		if (c[i].seen > 0) {
			int64_t gone = add_days(c[i].seen, p->carried_days);

			if (gone < until)
				until = gone;
		}
		counted++;
		if (!c[i].s) {
			/* No record of it: nothing says its mail is refused. */
			any_accept = true;
			continue;
		}
		tes_decide(c[i].s, c[i].t, p, now, src, NULL, via_connector, &v);
		if (v.until < until)
			until = v.until;
		if (v.action == TES_ACCEPT) {
			if (!have_acc)
				acc = v;
			have_acc = any_accept = true;
			continue;
		}
		enum tes_action k = v.action == TES_DROP ? TES_BLOCK : v.action;

		if (kind == TES_ACCEPT)
			kind = k;
		else if (kind != k)
			mixed = true;
		if (v.action != TES_DROP)
			all_drop = false;
		/* The most lenient refusal speaks for all of them. */
		if (!have_best || v.minutes < best.minutes)
			best = v;
		have_best = true;
	}
	if (counted == 1 && have_acc) {
		*out = acc;
		out->until = until;
		return;
	}
	if (counted == 0 || any_accept || mixed) {
		memset(out, 0, sizeof(*out));
		verdict_accept(out,
			       counted > 1 ? TES_REASON_SHARED_SOURCE : TES_REASON_UNKNOWN_SERVER,
			       until);
		return;
	}
	*out = best;
	/* Dropped only when every one of them would be: a source is dropped
	 * whole, and one whose servers answer must keep answering. */
	if (best.action == TES_DROP && !all_drop)
		out->action = TES_BLOCK;
	else if (best.action == TES_BLOCK && all_drop)
		out->action = TES_DROP;
	out->until = until;
}

int tes_verdict_reply(const struct tes_verdict *v, char *buf, size_t len)
{
	if (v->action == TES_ACCEPT || v->code == 0)
		return snprintf(buf, len, "%s", "");
	return snprintf(buf, len, "%u %s %s", v->code, v->enhanced, v->text);
}

/* ---- the report ---- */

/* The time at which the server's stage clock reads (or will read) elapsed.
 * Only the latest pause interval is known exactly; earlier ones survive as a
 * total, assumed to lie before the answer (see struct tes_report). */
static int64_t when_elapsed(const struct tes_server *s, const struct tes_tenant *t, int64_t elapsed)
{
	int64_t first = clamp_time(s->first_detected);
	struct tes_pause pz;
	int64_t folded, at_start;

	if (elapsed <= 0)
		return first;
	if (!t)
		return first + elapsed;
	pz = sane_pause(&t->pause);
	if (pause_len(&pz) == 0 || first >= pz.end)
		return first + elapsed;
	if (first >= pz.start)
		return pz.end + elapsed;
	folded = clamp(pz.paused_before - clamp(s->pause_base, 0, 2 * TES_TIME_MAX), 0,
		       pz.start - first);
	at_start = pz.start - first - folded;
	if (elapsed <= at_start)
		return first + folded + elapsed;
	return pz.end + (elapsed - at_start);
}

/* The date the clock reads e, with the stale time: finished stale periods
 * are assumed to lie before a date still to come and after a date already
 * passed (a server is usually seen through its early stages and goes
 * quiet later); while the server is Stale, a date still to come cannot be
 * known (false). */
static bool stage_date(const struct tes_server *s, const struct tes_tenant *t,
		       const struct tes_policy *p, int64_t at, int64_t e, int64_t elapsed_at,
		       int64_t *out)
{
	int64_t d = when_elapsed(s, t, e);

	if (e <= elapsed_at) {
		*out = d;
		return true;
	}
	if (tes_server_stale(s, p, at))
		return false;
	*out = clamp_time(d + clamp(s->stale_seconds, 0, TES_TIME_MAX));
	return true;
}

void tes_server_report(const struct tes_server *s, const struct tes_tenant *t,
		       const struct tes_policy *p, int64_t now, struct tes_report *out)
{
	int64_t at, x;

	now = clamp_time(now);
	memset(out, 0, sizeof(*out));
	out->status = tes_server_status(s, t, p, now);
	out->status_text = tes_status_name(out->status);
	x = tes_server_forget_at(s, p);
	out->has_forget_at = x != INT64_MAX;
	out->forget_at = out->has_forget_at ? x : 0;
	if (tes_server_compliant_only(s)) {
		out->stage = 1;
		return;
	}
	x = tes_server_stale_at(s, p);
	out->has_stale_at = x != INT64_MAX;
	out->stale_at = out->has_stale_at ? x : 0;
	at = s->resolved && s->resolved_at < now ? s->resolved_at : now;
	out->elapsed = tes_server_elapsed(s, t, p, at);
	out->paused_seconds = tes_server_paused_seconds(s, t, at);
	out->stale_seconds = tes_server_stale_seconds(s, t, p, at);
	out->stage = tes_policy_stage_at(p, out->elapsed);
	bool thr_done = false, blk_done = false;

	for (unsigned i = 1; i <= TES_STAGE_COUNT; i++) {
		const struct tes_stage *st = &p->stage[i - 1];

		if (!thr_done && st->throttle_min > 0) {
			thr_done = true;
			out->has_throttle_date = stage_date(s, t, p, at, stage_start(p, i),
							    out->elapsed, &out->throttle_enabled);
		}
		if (!blk_done && st->block_min > 0) {
			blk_done = true;
			out->has_block_date = stage_date(s, t, p, at, stage_start(p, i),
							 out->elapsed, &out->blocking_enabled);
		}
	}
	if (!s->resolved && out->stage < TES_STAGE_COUNT) {
		const struct tes_stage *nx = &p->stage[out->stage];

		out->next_stage = out->stage + 1;
		out->has_next = stage_date(s, t, p, at, stage_start(p, out->next_stage),
					   out->elapsed, &out->next_stage_start);
		if (out->has_next) {
			out->next_throttle_min = nx->throttle_min;
			out->next_block_min = nx->block_min;
		} else {
			out->next_stage = 0;
		}
	}
}
