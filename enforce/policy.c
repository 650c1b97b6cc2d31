/* SPDX-License-Identifier: BSD-3-Clause */
#include "enforce/policy.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A policy file is a few dozen lines; a bound keeps a wrong path (a log, a
 * device) from being slurped whole. */
#define POLICY_FILE_MAX (64 * 1024)
#define POLICY_LINE_MAX 1024

static const struct tes_stage default_stages[TES_STAGE_COUNT] = {
	{ 0, 0, 0 },   { 30, 5, 0 },  { 40, 10, 0 }, { 50, 20, 0 },
	{ 60, 30, 5 }, { 70, 0, 10 }, { 80, 0, 20 }, { 90, 0, 60 },
};

#define DEFAULT_PRODUCT "Exchange Online"
#define DEFAULT_THROTTLE_TEXT                                                                   \
	"Connecting Exchange server version is out-of-date; connection to %p throttled for %d " \
	"mins/hr."
#define DEFAULT_BLOCK_TEXT                                                                    \
	"Connecting Exchange server version is out-of-date; connection to %p blocked for %d " \
	"mins/hr."

void tes_policy_default(struct tes_policy *p)
{
	memset(p, 0, sizeof(*p));
	memcpy(p->stage, default_stages, sizeof(p->stage));
	p->window_offset_min = 0;
	p->utc_offset_min = 0;
	p->scope = TES_SCOPE_CONNECTORS;
	p->full_block = TES_FULL_BLOCK_REPLY;
	p->pause_quota_days = 90;
	p->stale_after_days = 120;
	p->forget_after_days = 365;
	p->carried_days = 120;
	p->probe_interval_min = 60;
	p->servers_per_tenant = 10000;
	p->untrusted_servers = 10000;
	p->untrusted_per_prefix = 32;
	p->untrusted_prefix_v4 = 24;
	p->untrusted_prefix_v6 = 48;
	snprintf(p->product, sizeof(p->product), "%s", DEFAULT_PRODUCT);
	snprintf(p->throttle_text, sizeof(p->throttle_text), "%s", DEFAULT_THROTTLE_TEXT);
	snprintf(p->block_text, sizeof(p->block_text), "%s", DEFAULT_BLOCK_TEXT);
}

const char *tes_scope_name(enum tes_scope s)
{
	switch (s) {
	case TES_SCOPE_CONNECTORS:
		return "connectors";
	case TES_SCOPE_ALL:
		return "all";
	}
	return "?";
}

const char *tes_full_block_name(enum tes_full_block f)
{
	switch (f) {
	case TES_FULL_BLOCK_REPLY:
		return "reply";
	case TES_FULL_BLOCK_DROP:
		return "drop";
	}
	return "?";
}

int tes_reply_expand(const char *tmpl, const char *product, unsigned minutes, char *buf, size_t len)
{
	size_t o = 0;
	bool overflow = false;

	if (len == 0)
		return -1;
	if (!product)
		product = "";
	for (const char *s = tmpl; *s && !overflow; s++) {
		char num[12];
		const char *ins;
		size_t n;

		if (s[0] == '%' && s[1] == 'd') {
			snprintf(num, sizeof(num), "%u", minutes);
			ins = num;
			s++;
		} else if (s[0] == '%' && s[1] == 'p') {
			ins = product;
			s++;
		} else if (s[0] == '%' && s[1] == '%') {
			ins = "%";
			s++;
		} else {
			/* An unknown escape in a hand-built policy is copied
			 * as is: validation rejects it, but expansion must
			 * stay safe on any input. */
			num[0] = *s;
			num[1] = '\0';
			ins = num;
		}
		n = strlen(ins);
		if (n > len - 1 - o) {
			n = len - 1 - o;
			overflow = true;
		}
		memcpy(buf + o, ins, n);
		o += n;
	}
	buf[o] = '\0';
	return overflow ? -1 : (int)o;
}

/* Keys of the file.  The index doubles as the slot for duplicate detection
 * and for the line number an error about that value points at. */
enum key_id {
	K_STAGE1,
	K_STAGE8 = K_STAGE1 + TES_STAGE_COUNT - 1,
	K_UTC_OFFSET,
	K_WINDOW_OFFSET,
	K_SCOPE,
	K_FULL_BLOCK,
	K_PAUSE_QUOTA,
	K_PRODUCT,
	K_THROTTLE_TEXT,
	K_BLOCK_TEXT,
	K_PROBE_INTERVAL,
	K_STALE_AFTER,
	K_FORGET_AFTER,
	K_CARRIED_DAYS,
	K_SERVERS_PER_TENANT,
	K_UNTRUSTED_SERVERS,
	K_UNTRUSTED_PER_PREFIX,
	K_UNTRUSTED_PREFIX_V4,
	K_UNTRUSTED_PREFIX_V6,
	K_COUNT,
};

struct key_def {
	const char *section;
	const char *name;
};

static const struct key_def keys[K_COUNT] = {
	[K_STAGE1 + 0] = { "stages", "1" },
	[K_STAGE1 + 1] = { "stages", "2" },
	[K_STAGE1 + 2] = { "stages", "3" },
	[K_STAGE1 + 3] = { "stages", "4" },
	[K_STAGE1 + 4] = { "stages", "5" },
	[K_STAGE1 + 5] = { "stages", "6" },
	[K_STAGE1 + 6] = { "stages", "7" },
	[K_STAGE1 + 7] = { "stages", "8" },
	[K_UTC_OFFSET] = { "clock", "utc_offset_minutes" },
	[K_WINDOW_OFFSET] = { "window", "offset_minutes" },
	[K_SCOPE] = { "enforcement", "scope" },
	[K_FULL_BLOCK] = { "enforcement", "full_block" },
	[K_PAUSE_QUOTA] = { "pause", "quota_days" },
	[K_PRODUCT] = { "replies", "product" },
	[K_THROTTLE_TEXT] = { "replies", "throttle" },
	[K_BLOCK_TEXT] = { "replies", "block" },
	[K_PROBE_INTERVAL] = { "enforcement", "probe_interval" },
	[K_STALE_AFTER] = { "ageing", "stale_after" },
	[K_FORGET_AFTER] = { "ageing", "forget_after" },
	[K_CARRIED_DAYS] = { "sources", "carried_days" },
	[K_SERVERS_PER_TENANT] = { "limits", "servers_per_tenant" },
	[K_UNTRUSTED_SERVERS] = { "limits", "untrusted_servers" },
	[K_UNTRUSTED_PER_PREFIX] = { "limits", "untrusted_per_prefix" },
	[K_UNTRUSTED_PREFIX_V4] = { "limits", "untrusted_prefix_v4" },
	[K_UNTRUSTED_PREFIX_V6] = { "limits", "untrusted_prefix_v6" },
};

static const char *const sections[] = { "stages",  "clock",  "window",  "enforcement", "pause",
					"replies", "ageing", "sources", "limits" };

/* Numeric keys beyond the stage table: their range, checked by the parser
 * and by tes_policy_validate alike. */
struct num_key {
	int key;
	long min, max;
};

static const struct num_key num_keys[] = {
	{ K_UTC_OFFSET, TES_UTC_OFFSET_MIN, TES_UTC_OFFSET_MAX },
	{ K_WINDOW_OFFSET, 0, 59 },
	{ K_PAUSE_QUOTA, 0, TES_PAUSE_QUOTA_MAX },
	{ K_PROBE_INTERVAL, 0, TES_PROBE_INTERVAL_MAX },
	{ K_STALE_AFTER, 0, TES_AGE_DAYS_MAX },
	{ K_FORGET_AFTER, 0, TES_AGE_DAYS_MAX },
	{ K_CARRIED_DAYS, 1, TES_CARRIED_DAYS_MAX },
	{ K_SERVERS_PER_TENANT, 1, TES_SERVERS_CAP_MAX },
	{ K_UNTRUSTED_SERVERS, 0, TES_SERVERS_CAP_MAX },
	{ K_UNTRUSTED_PER_PREFIX, 1, TES_PREFIX_CAP_MAX },
	{ K_UNTRUSTED_PREFIX_V4, 8, 32 },
	{ K_UNTRUSTED_PREFIX_V6, 16, 128 },
};

static long num_get(const struct tes_policy *p, int k)
{
	switch (k) {
	case K_UTC_OFFSET:
		return p->utc_offset_min;
	case K_WINDOW_OFFSET:
		return p->window_offset_min;
	case K_PAUSE_QUOTA:
		return p->pause_quota_days;
	case K_PROBE_INTERVAL:
		return p->probe_interval_min;
	case K_STALE_AFTER:
		return p->stale_after_days;
	case K_FORGET_AFTER:
		return p->forget_after_days;
	case K_CARRIED_DAYS:
		return p->carried_days;
	case K_SERVERS_PER_TENANT:
		return (long)p->servers_per_tenant;
	case K_UNTRUSTED_SERVERS:
		return (long)p->untrusted_servers;
	case K_UNTRUSTED_PER_PREFIX:
		return (long)p->untrusted_per_prefix;
	case K_UNTRUSTED_PREFIX_V4:
		return p->untrusted_prefix_v4;
	case K_UNTRUSTED_PREFIX_V6:
		return p->untrusted_prefix_v6;
	}
	return 0;
}

/* Only called with values num_keys allows, so the casts keep them. */
static void num_set(struct tes_policy *p, int k, long v)
{
	switch (k) {
	case K_UTC_OFFSET:
		p->utc_offset_min = (int16_t)v;
		break;
	case K_WINDOW_OFFSET:
		p->window_offset_min = (int16_t)v;
		break;
	case K_PAUSE_QUOTA:
		p->pause_quota_days = (uint16_t)v;
		break;
	case K_PROBE_INTERVAL:
		p->probe_interval_min = (uint16_t)v;
		break;
	case K_STALE_AFTER:
		p->stale_after_days = (uint16_t)v;
		break;
	case K_FORGET_AFTER:
		p->forget_after_days = (uint16_t)v;
		break;
	case K_CARRIED_DAYS:
		p->carried_days = (uint16_t)v;
		break;
	case K_SERVERS_PER_TENANT:
		p->servers_per_tenant = (uint32_t)v;
		break;
	case K_UNTRUSTED_SERVERS:
		p->untrusted_servers = (uint32_t)v;
		break;
	case K_UNTRUSTED_PER_PREFIX:
		p->untrusted_per_prefix = (uint32_t)v;
		break;
	case K_UNTRUSTED_PREFIX_V4:
		p->untrusted_prefix_v4 = (uint8_t)v;
		break;
	case K_UNTRUSTED_PREFIX_V6:
		p->untrusted_prefix_v6 = (uint8_t)v;
		break;
	}
}

static const struct num_key *num_key_of(int k)
{
	for (size_t i = 0; i < sizeof(num_keys) / sizeof(num_keys[0]); i++) {
		if (num_keys[i].key == k)
			return &num_keys[i];
	}
	return NULL;
}

/* Fill err; key is a key_id or -1 for none. */
static int fail(struct tes_policy_error *err, enum tes_policy_errcode code, const char *file,
		unsigned line, int key, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int fail(struct tes_policy_error *err, enum tes_policy_errcode code, const char *file,
		unsigned line, int key, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return -1;
	memset(err, 0, sizeof(*err));
	err->code = code;
	snprintf(err->file, sizeof(err->file), "%s", file ? file : "<memory>");
	err->line = line;
	if (key >= 0)
		snprintf(err->key, sizeof(err->key), "%s.%s", keys[key].section, keys[key].name);
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

static bool printable(char c)
{
	return c >= 0x20 && c <= 0x7e;
}

/* Checks shared by the parser and tes_policy_validate.  Texts must reach an
 * SMTP reply unchanged, so anything that could break the line (controls,
 * non-ASCII) or would not survive a round trip through the file (leading or
 * trailing blanks) is refused here rather than escaped later. */
static int check_text(const char *s, size_t size, bool is_template, const char *file, unsigned line,
		      int key, struct tes_policy_error *err)
{
	size_t n = strnlen(s, size);
	unsigned nd = 0;

	if (n == size)
		return fail(err, TES_PERR_TEXT, file, line, key,
			    "text too long (at most %zu characters)", size - 1);
	if (n == 0)
		return fail(err, TES_PERR_TEXT, file, line, key, "empty text");
	if (s[0] == ' ' || s[n - 1] == ' ')
		return fail(err, TES_PERR_TEXT, file, line, key,
			    "text must not start or end with a blank");
	for (size_t i = 0; i < n; i++) {
		if (!printable(s[i]))
			return fail(
				err, TES_PERR_TEXT, file, line, key,
				"character 0x%02x at column %zu: only printable ASCII is allowed",
				(unsigned)(unsigned char)s[i], i + 1);
		if (s[i] != '%')
			continue;
		if (!is_template)
			return fail(err, TES_PERR_TEXT, file, line, key,
				    "'%%' is not allowed in the product name");
		switch (s[i + 1]) {
		case 'd':
			nd++;
			break;
		case 'p':
		case '%':
			break;
		default:
			return fail(
				err, TES_PERR_TEXT, file, line, key,
				"unknown escape at column %zu: use %%d (minutes), %%p (product) "
				"or %%%%",
				i + 1);
		}
		i++;
	}
	if (is_template && nd != 1)
		return fail(
			err, TES_PERR_TEXT, file, line, key,
			"the text must contain %%d (the minutes per hour) exactly once, found %u",
			nd);
	return 0;
}

static int validate(const struct tes_policy *p, const unsigned *lines, const char *file,
		    struct tes_policy_error *err)
{
#define LINE(k) (lines ? lines[k] : 0)
	for (int i = 0; i < TES_STAGE_COUNT; i++) {
		const struct tes_stage *s = &p->stage[i];
		int k = K_STAGE1 + i;

		if (s->start_day > TES_STAGE_DAY_MAX)
			return fail(err, TES_PERR_RANGE, file, LINE(k), k,
				    "start day %u is beyond %u", s->start_day, TES_STAGE_DAY_MAX);
		if (s->throttle_min > 60 || s->block_min > 60 ||
		    s->throttle_min + s->block_min > 60)
			return fail(err, TES_PERR_RANGE, file, LINE(k), k,
				    "throttled (%u) plus blocked (%u) minutes exceed 60 per hour",
				    s->throttle_min, s->block_min);
		if (i == 0 && s->start_day != 0)
			return fail(err, TES_PERR_ORDER, file, LINE(k), k,
				    "stage 1 must start on day 0, the day of first detection");
		/* When only the earlier row was written, that row is the
		 * mistake the file holds: point at it. */
		if (i > 0 && s->start_day <= p->stage[i - 1].start_day)
			return fail(err, TES_PERR_ORDER, file, LINE(k) ? LINE(k) : LINE(k - 1),
				    LINE(k) || !LINE(k - 1) ? k : k - 1,
				    "stage %d starts on day %u, not after stage %d (day %u)", i + 1,
				    s->start_day, i, p->stage[i - 1].start_day);
	}
	for (size_t i = 0; i < sizeof(num_keys) / sizeof(num_keys[0]); i++) {
		const struct num_key *nk = &num_keys[i];
		long v = num_get(p, nk->key);

		if (v < nk->min || v > nk->max)
			return fail(err, TES_PERR_RANGE, file, LINE(nk->key), nk->key,
				    "%ld is outside %ld..%ld", v, nk->min, nk->max);
	}
	/* Forgetting a server before it could be Stale would skip the status
	 * the report is meant to show first. */
	if (p->stale_after_days && p->forget_after_days &&
	    p->forget_after_days <= p->stale_after_days)
		return fail(err, TES_PERR_ORDER, file,
			    LINE(K_FORGET_AFTER) ? LINE(K_FORGET_AFTER) : LINE(K_STALE_AFTER),
			    LINE(K_FORGET_AFTER) || !LINE(K_STALE_AFTER) ? K_FORGET_AFTER
									 : K_STALE_AFTER,
			    "forget_after (%u days) must be longer than stale_after (%u days)",
			    p->forget_after_days, p->stale_after_days);
	if (p->scope != TES_SCOPE_CONNECTORS && p->scope != TES_SCOPE_ALL)
		return fail(err, TES_PERR_VALUE, file, LINE(K_SCOPE), K_SCOPE,
			    "scope must be connectors or all");
	if (p->full_block != TES_FULL_BLOCK_REPLY && p->full_block != TES_FULL_BLOCK_DROP)
		return fail(err, TES_PERR_VALUE, file, LINE(K_FULL_BLOCK), K_FULL_BLOCK,
			    "full_block must be reply or drop");
	if (check_text(p->product, sizeof(p->product), false, file, LINE(K_PRODUCT), K_PRODUCT,
		       err))
		return -1;
	struct {
		const char *t;
		int k;
	} tmpl[] = { { p->throttle_text, K_THROTTLE_TEXT }, { p->block_text, K_BLOCK_TEXT } };
	for (size_t i = 0; i < 2; i++) {
		char out[TES_REPLY_TEXT_MAX];

		if (check_text(tmpl[i].t, TES_REPLY_TEXT_MAX, true, file, LINE(tmpl[i].k),
			       tmpl[i].k, err))
			return -1;
		/* 60 is the widest n the decision ever writes. */
		if (tes_reply_expand(tmpl[i].t, p->product, 60, out, sizeof(out)) < 0)
			return fail(err, TES_PERR_TEXT, file, LINE(tmpl[i].k), tmpl[i].k,
				    "the expanded reply would exceed %d characters",
				    TES_REPLY_TEXT_MAX - 1);
	}
	return 0;
#undef LINE
}

int tes_policy_validate(const struct tes_policy *p, struct tes_policy_error *err)
{
	return validate(p, NULL, "<memory>", err);
}

/* Strict decimal with an optional sign: "30", "-300", "+330".  1 on
 * success, 0 if not a number, -1 if out of [min, max]. */
static int parse_int(const char *s, size_t len, long min, long max, long *out)
{
	size_t i = 0;
	bool neg = false;
	long v = 0;

	if (len > 0 && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		i++;
	}
	if (i == len)
		return 0;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return 0;
		/* Beyond nine digits nothing is in range; stop before the
		 * long overflows. */
		if (v > 999999999)
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (neg)
		v = -v;
	if (v < min || v > max)
		return -1;
	*out = v;
	return 1;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

struct parse_ctx {
	const char *file;
	unsigned line;
	struct tes_policy_error *err;
};

static int set_int(struct parse_ctx *c, int k, const char *v, size_t vlen, long min, long max,
		   long *out)
{
	int r = parse_int(v, vlen, min, max, out);

	if (r == 0)
		return fail(c->err, TES_PERR_VALUE, c->file, c->line, k, "'%.*s' is not a number",
			    (int)vlen, v);
	if (r < 0)
		return fail(c->err, TES_PERR_RANGE, c->file, c->line, k,
			    "'%.*s' is outside %ld..%ld", (int)vlen, v, min, max);
	return 0;
}

static int set_stage(struct parse_ctx *c, int k, const char *v, size_t vlen, struct tes_stage *st)
{
	static const char *const what[3] = { "start day", "throttled minutes", "blocked minutes" };
	static const long max[3] = { TES_STAGE_DAY_MAX, 60, 60 };
	long f[3];
	size_t i = 0;

	for (int n = 0; n < 3; n++) {
		size_t b;

		while (i < vlen && is_blank(v[i]))
			i++;
		b = i;
		while (i < vlen && !is_blank(v[i]))
			i++;
		if (b == i)
			return fail(
				c->err, TES_PERR_VALUE, c->file, c->line, k,
				"expected three numbers: start-day throttled-min/h blocked-min/h");
		int r = parse_int(v + b, i - b, 0, max[n], &f[n]);
		if (r == 0)
			return fail(c->err, TES_PERR_VALUE, c->file, c->line, k,
				    "%s '%.*s' is not a number", what[n], (int)(i - b), v + b);
		if (r < 0)
			return fail(c->err, TES_PERR_RANGE, c->file, c->line, k,
				    "%s '%.*s' is outside 0..%ld", what[n], (int)(i - b), v + b,
				    max[n]);
	}
	while (i < vlen && is_blank(v[i]))
		i++;
	if (i != vlen)
		return fail(c->err, TES_PERR_VALUE, c->file, c->line, k,
			    "expected three numbers: start-day throttled-min/h blocked-min/h, "
			    "found more");
	st->start_day = (uint32_t)f[0];
	st->throttle_min = (uint8_t)f[1];
	st->block_min = (uint8_t)f[2];
	return 0;
}

static int set_text(struct parse_ctx *c, int k, const char *v, size_t vlen, char *dst, size_t size)
{
	if (vlen >= size)
		return fail(c->err, TES_PERR_TEXT, c->file, c->line, k,
			    "text too long (%zu characters, at most %zu)", vlen, size - 1);
	memcpy(dst, v, vlen);
	dst[vlen] = '\0';
	return check_text(dst, size, k != K_PRODUCT, c->file, c->line, k, c->err);
}

static bool word_is(const char *v, size_t vlen, const char *w)
{
	return strlen(w) == vlen && memcmp(v, w, vlen) == 0;
}

static int set_value(struct parse_ctx *c, struct tes_policy *p, int k, const char *v, size_t vlen)
{
	long n;

	const struct num_key *nk = num_key_of(k);

	if (k >= K_STAGE1 && k <= K_STAGE8)
		return set_stage(c, k, v, vlen, &p->stage[k - K_STAGE1]);
	if (nk) {
		if (set_int(c, k, v, vlen, nk->min, nk->max, &n))
			return -1;
		num_set(p, k, n);
		return 0;
	}
	switch (k) {
	case K_SCOPE:
		if (word_is(v, vlen, "connectors"))
			p->scope = TES_SCOPE_CONNECTORS;
		else if (word_is(v, vlen, "all"))
			p->scope = TES_SCOPE_ALL;
		else
			return fail(c->err, TES_PERR_VALUE, c->file, c->line, k,
				    "'%.*s': scope is connectors or all", (int)vlen, v);
		return 0;
	case K_FULL_BLOCK:
		if (word_is(v, vlen, "reply"))
			p->full_block = TES_FULL_BLOCK_REPLY;
		else if (word_is(v, vlen, "drop"))
			p->full_block = TES_FULL_BLOCK_DROP;
		else
			return fail(c->err, TES_PERR_VALUE, c->file, c->line, k,
				    "'%.*s': full_block is reply or drop", (int)vlen, v);
		return 0;
	case K_PRODUCT:
		return set_text(c, k, v, vlen, p->product, sizeof(p->product));
	case K_THROTTLE_TEXT:
		return set_text(c, k, v, vlen, p->throttle_text, sizeof(p->throttle_text));
	case K_BLOCK_TEXT:
		return set_text(c, k, v, vlen, p->block_text, sizeof(p->block_text));
	}
	return -1;
}

int tes_policy_parse(const char *text, size_t len, const char *name, struct tes_policy *out,
		     struct tes_policy_error *err)
{
	struct tes_policy p;
	unsigned lines[K_COUNT] = { 0 };
	const char *section = NULL;
	struct parse_ctx c = { name ? name : "<memory>", 0, err };
	size_t pos = 0;

	tes_policy_default(&p);
	if (memchr(text, '\0', len))
		return fail(err, TES_PERR_SYNTAX, c.file, 0, -1, "NUL byte in the file: not text");
	while (pos < len) {
		const char *l = text + pos;
		const char *nl = memchr(l, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - l) : len - pos;

		pos += n + (nl ? 1 : 0);
		c.line++;
		if (n > POLICY_LINE_MAX)
			return fail(err, TES_PERR_SYNTAX, c.file, c.line, -1,
				    "line longer than %d characters", POLICY_LINE_MAX);
		if (n > 0 && l[n - 1] == '\r')
			n--;
		while (n > 0 && is_blank(*l)) {
			l++;
			n--;
		}
		while (n > 0 && is_blank(l[n - 1]))
			n--;
		if (n == 0 || l[0] == '#' || l[0] == ';')
			continue;

		if (l[0] == '[') {
			size_t i;

			if (l[n - 1] != ']')
				return fail(err, TES_PERR_SYNTAX, c.file, c.line, -1,
					    "section header without a closing ']'");
			section = NULL;
			for (i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
				if (word_is(l + 1, n - 2, sections[i]))
					section = sections[i];
			}
			if (!section)
				return fail(err, TES_PERR_SECTION, c.file, c.line, -1,
					    "unknown section [%.*s]; known: stages, clock, window, "
					    "enforcement, pause, replies, ageing, sources, limits",
					    (int)(n - 2), l + 1);
			continue;
		}

		const char *eq = memchr(l, '=', n);
		if (!eq)
			return fail(err, TES_PERR_SYNTAX, c.file, c.line, -1,
				    "expected 'key = value', a [section] or a # comment");
		size_t klen = (size_t)(eq - l);
		const char *v = eq + 1;
		size_t vlen = n - klen - 1;
		while (klen > 0 && is_blank(l[klen - 1]))
			klen--;
		while (vlen > 0 && is_blank(*v)) {
			v++;
			vlen--;
		}
		if (klen == 0)
			return fail(err, TES_PERR_SYNTAX, c.file, c.line, -1,
				    "missing key before '='");
		if (!section)
			return fail(err, TES_PERR_KEY, c.file, c.line, -1,
				    "key '%.*s' before any [section]", (int)klen, l);
		int k = -1;
		for (int i = 0; i < K_COUNT; i++) {
			if (strcmp(keys[i].section, section) == 0 && word_is(l, klen, keys[i].name))
				k = i;
		}
		if (k < 0)
			return fail(err, TES_PERR_KEY, c.file, c.line, -1,
				    "unknown key '%.*s' in [%s]", (int)klen, l, section);
		if (lines[k])
			return fail(err, TES_PERR_DUPLICATE, c.file, c.line, k,
				    "already set on line %u", lines[k]);
		lines[k] = c.line;
		if (set_value(&c, &p, k, v, vlen))
			return -1;
	}
	if (validate(&p, lines, c.file, err))
		return -1;
	*out = p;
	return 0;
}

int tes_policy_load(const char *path, struct tes_policy *out, struct tes_policy_error *err)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;
	int rc;

	if (!f)
		return fail(err, TES_PERR_IO, path, 0, -1, "cannot open: %s", strerror(errno));
	/* One byte more than allowed tells an oversized file from a full one. */
	buf = malloc(POLICY_FILE_MAX + 1);
	if (!buf) {
		fclose(f);
		return fail(err, TES_PERR_IO, path, 0, -1, "out of memory");
	}
	n = fread(buf, 1, POLICY_FILE_MAX + 1, f);
	if (ferror(f)) {
		int e = errno;

		fclose(f);
		free(buf);
		return fail(err, TES_PERR_IO, path, 0, -1, "cannot read: %s", strerror(e));
	}
	fclose(f);
	if (n > POLICY_FILE_MAX)
		rc = fail(err, TES_PERR_IO, path, 0, -1, "larger than %d bytes: not a policy file",
			  POLICY_FILE_MAX);
	else
		rc = tes_policy_parse(buf, n, path, out, err);
	free(buf);
	return rc;
}

bool tes_policy_equal(const struct tes_policy *a, const struct tes_policy *b)
{
	for (int i = 0; i < TES_STAGE_COUNT; i++) {
		if (a->stage[i].start_day != b->stage[i].start_day ||
		    a->stage[i].throttle_min != b->stage[i].throttle_min ||
		    a->stage[i].block_min != b->stage[i].block_min)
			return false;
	}
	return a->window_offset_min == b->window_offset_min &&
	       a->utc_offset_min == b->utc_offset_min && a->scope == b->scope &&
	       a->full_block == b->full_block && a->pause_quota_days == b->pause_quota_days &&
	       a->stale_after_days == b->stale_after_days &&
	       a->forget_after_days == b->forget_after_days && a->carried_days == b->carried_days &&
	       a->probe_interval_min == b->probe_interval_min &&
	       a->servers_per_tenant == b->servers_per_tenant &&
	       a->untrusted_servers == b->untrusted_servers &&
	       a->untrusted_per_prefix == b->untrusted_per_prefix &&
	       a->untrusted_prefix_v4 == b->untrusted_prefix_v4 &&
	       a->untrusted_prefix_v6 == b->untrusted_prefix_v6 &&
	       strncmp(a->product, b->product, sizeof(a->product)) == 0 &&
	       strncmp(a->throttle_text, b->throttle_text, sizeof(a->throttle_text)) == 0 &&
	       strncmp(a->block_text, b->block_text, sizeof(a->block_text)) == 0;
}

struct outbuf {
	char *buf;
	size_t len;
	size_t used; /* what the whole text needs, even past len */
};

static void put(struct outbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct outbuf *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(o->used < o->len ? o->buf + o->used : NULL,
		      o->used < o->len ? o->len - o->used : 0, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->used += (size_t)n;
}

static int format(const struct tes_policy *p, char *buf, size_t len, bool compat)
{
	struct outbuf o = { buf, len, 0 };

	if (len > 0)
		buf[0] = '\0';
	put(&o, "[stages]\n# stage = start-day throttled-min/h blocked-min/h\n");
	for (int i = 0; i < TES_STAGE_COUNT; i++)
		put(&o, "%d = %u %u %u\n", i + 1, p->stage[i].start_day, p->stage[i].throttle_min,
		    p->stage[i].block_min);
	put(&o, "\n[clock]\nutc_offset_minutes = %d\n", p->utc_offset_min);
	put(&o, "\n[window]\noffset_minutes = %d\n", p->window_offset_min);
	put(&o, "\n[enforcement]\nscope = %s\nfull_block = %s\n", tes_scope_name(p->scope),
	    tes_full_block_name(p->full_block));
	if (!compat)
		put(&o, "probe_interval = %u\n", p->probe_interval_min);
	put(&o, "\n[pause]\nquota_days = %u\n", p->pause_quota_days);
	put(&o, "\n[replies]\nproduct = %.*s\nthrottle = %.*s\nblock = %.*s\n",
	    (int)sizeof(p->product), p->product, (int)sizeof(p->throttle_text), p->throttle_text,
	    (int)sizeof(p->block_text), p->block_text);
	if (!compat) {
		put(&o, "\n[ageing]\nstale_after = %u\nforget_after = %u\n", p->stale_after_days,
		    p->forget_after_days);
		put(&o, "\n[sources]\ncarried_days = %u\n", p->carried_days);
		put(&o,
		    "\n[limits]\nservers_per_tenant = %u\nuntrusted_servers = %u\n"
		    "untrusted_per_prefix = %u\nuntrusted_prefix_v4 = %u\nuntrusted_prefix_v6 = "
		    "%u\n",
		    p->servers_per_tenant, p->untrusted_servers, p->untrusted_per_prefix,
		    p->untrusted_prefix_v4, p->untrusted_prefix_v6);
	}
	return o.used > (size_t)0x7fffffff ? -1 : (int)o.used;
}

int tes_policy_format(const struct tes_policy *p, char *buf, size_t len)
{
	return format(p, buf, len, false);
}

int tes_policy_format_compat(const struct tes_policy *p, char *buf, size_t len)
{
	return format(p, buf, len, true);
}

int tes_policy_error_format(const struct tes_policy_error *err, char *buf, size_t len)
{
	char where[32] = "";

	if (err->line)
		snprintf(where, sizeof(where), ":%u", err->line);
	if (err->key[0])
		return snprintf(buf, len, "%s%s: %s: %s", err->file, where, err->key, err->msg);
	return snprintf(buf, len, "%s%s: %s", err->file, where, err->msg);
}
