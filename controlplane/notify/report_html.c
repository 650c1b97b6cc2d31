/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The report page (report_html.h).
 */
#include "controlplane/notify/report_html.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the buffer ---- */

void rpt_buf_free(struct rpt_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static bool grow(struct rpt_buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->failed)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1) {
		if (cap > SIZE_MAX / 2) {
			b->failed = true;
			return false;
		}
		cap *= 2;
	}
	p = realloc(b->p, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void rpt_put(struct rpt_buf *b, const char *s, size_t n)
{
	if (!grow(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void rpt_puts(struct rpt_buf *b, const char *s)
{
	rpt_put(b, s, strlen(s));
}

void rpt_printf(struct rpt_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !grow(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* ---- escaping ---- */

/* The length of the well-formed UTF-8 sequence at s (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c, min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		c = s[0] & 0x1f;
		min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		c = s[0] & 0x0f;
		min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		c = s[0] & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

void rpt_escape(struct rpt_buf *b, const char *str, size_t n)
{
	static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0;

	while (i < n) {
		const char *ent = NULL;
		uint32_t cp;
		size_t len = utf8_len(s + i, n - i, &cp);

		if (len == 1) {
			switch (cp) {
			case '&':
				ent = "&amp;";
				break;
			case '<':
				ent = "&lt;";
				break;
			case '>':
				ent = "&gt;";
				break;
			case '"':
				ent = "&quot;";
				break;
			case '\'':
				ent = "&#39;";
				break;
			default:
				/* controls other than tab and newline, and
				 * DEL, are not text */
				if ((cp < 0x20 && cp != '\t' && cp != '\n') || cp == 0x7f)
					ent = replacement;
				break;
			}
		} else if (len == 0 || (cp >= 0x80 && cp < 0xa0)) {
			ent = replacement; /* not UTF-8, or a C1 control */
			if (len == 0)
				len = 1;
		}
		if (ent) {
			rpt_put(b, str + i - run, run);
			run = 0;
			rpt_puts(b, ent);
		} else {
			run += len;
		}
		i += len;
	}
	rpt_put(b, str + i - run, run);
}

/* ---- values ---- */

void rpt_snapshot_free(struct rpt_snapshot *s)
{
	if (!s)
		return;
	free(s->compliance_text);
	free(s->policy_text);
	free(s->tenants);
	free(s->servers);
	free(s->hist);
	memset(s, 0, sizeof(*s));
}

/* <time datetime="ISO">YYYY-MM-DD</time> (with the time of day when
 * full). */
static void put_time(struct rpt_buf *b, const struct rpt_snapshot *s, int64_t t, bool full)
{
	char iso[40];

	tes_time_format(t, s->utc_offset_min, iso, sizeof(iso));
	rpt_printf(b, "<time datetime=\"%s\">", iso);
	if (full)
		rpt_printf(b, "%.10s %.5s", iso, iso + 11);
	else
		rpt_printf(b, "%.10s", iso);
	rpt_puts(b, "</time>");
}

static void put_date_cell(struct rpt_buf *b, const struct rpt_snapshot *s, const char *cls,
			  bool has, int64_t t)
{
	rpt_printf(b, "<td class=\"%s\">", cls);
	if (has)
		put_time(b, s, t, false);
	rpt_puts(b, "</td>");
}

static const char *tenant_label(const struct rpt_tenant *t)
{
	return t->id ? t->name : "mail over no connector";
}

static int64_t day_of(int64_t t)
{
	return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

/* ---- the page's parts ---- */

static const char style[] =
	"body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}"
	"h1{font-size:1.5em}h2{font-size:1.25em;margin-top:1.5em}"
	"table{border-collapse:collapse;margin:.5em 0}"
	"th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
	"td.n{text-align:right}th{background:#f2f2f2}"
	"td.status-Throttling{background:#fde0c5}td.status-Blocking{background:#f8c1b8}"
	"td.status-Resolved{background:#d5efd0}td.status-Paused{background:#e4e4f4}"
	".testclock{color:#fff;background:#b00;padding:0 .4em;font-weight:bold}"
	"ol.timeline{margin:0;padding-left:1.2em;font-size:.9em}"
	"li.future{color:#666}pre{background:#f7f7f7;padding:.5em;overflow:auto;max-height:30em}"
	"ul.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:1em}"
	"ul.legend span{display:inline-block;width:1em;height:1em;margin-right:.3em;"
	"vertical-align:middle}";

static const char *const series_names[STORE_HISTORY_SERIES] = {
	"Stage 1", "Stage 2", "Stage 3", "Stage 4", "Stage 5",  "Stage 6",
	"Stage 7", "Stage 8", "Paused",  "Stale",   "Resolved",
};

static const char *const series_colors[STORE_HISTORY_SERIES] = {
	"#9ecae1", "#6baed6", "#fdd0a2", "#fdae6b", "#fd8d3c", "#e6550d",
	"#c4341d", "#7f0000", "#9e9ac8", "#bdbdbd", "#31a354",
};

static const char *const status_order[] = { "Reporting", "Throttling", "Blocking",
					    "Paused",    "Stale",      "Resolved" };
static const enum tes_status status_value[] = {
	TES_STATUS_REPORTING, TES_STATUS_THROTTLING, TES_STATUS_BLOCKING,
	TES_STATUS_PAUSED,    TES_STATUS_STALE,      TES_STATUS_RESOLVED,
};
#define NSTATUS (sizeof(status_value) / sizeof(status_value[0]))

static void summary_row(struct rpt_buf *b, const struct rpt_snapshot *s, const struct rpt_tenant *t)
{
	unsigned by_status[TES_STATUS_COUNT] = { 0 }, by_stage[TES_STAGE_COUNT + 1] = { 0 };

	for (size_t i = t->first_server; i < t->first_server + t->nservers; i++) {
		const struct rpt_server *v = &s->servers[i];

		if ((unsigned)v->status < TES_STATUS_COUNT)
			by_status[v->status]++;
		if (v->stage >= 1 && v->stage <= TES_STAGE_COUNT &&
		    (v->status == TES_STATUS_REPORTING || v->status == TES_STATUS_THROTTLING ||
		     v->status == TES_STATUS_BLOCKING))
			by_stage[v->stage]++;
	}
	rpt_printf(b, "<tr id=\"sum-%" PRIu32 "\"><th scope=\"row\">", t->id);
	rpt_esc(b, tenant_label(t));
	rpt_printf(b, "</th><td class=\"n total\">%zu</td>", t->nservers);
	for (size_t k = 0; k < NSTATUS; k++)
		rpt_printf(b, "<td class=\"n %s\">%u</td>", status_order[k],
			   by_status[status_value[k]]);
	for (unsigned k = 1; k <= TES_STAGE_COUNT; k++)
		rpt_printf(b, "<td class=\"n stage-%u\">%u</td>", k, by_stage[k]);
	rpt_puts(b, "</tr>\n");
}

static void summary(struct rpt_buf *b, const struct rpt_snapshot *s, const struct rpt_tenant *only)
{
	rpt_puts(b, "<section id=\"summary\"><h2>Servers by status and stage</h2>\n"
		    "<table id=\"by-status\"><thead><tr><th>Tenant</th><th>Servers</th>");
	for (size_t k = 0; k < NSTATUS; k++)
		rpt_printf(b, "<th>%s</th>", status_order[k]);
	for (unsigned k = 1; k <= TES_STAGE_COUNT; k++)
		rpt_printf(b, "<th>Stage %u</th>", k);
	rpt_puts(b, "</tr></thead><tbody>\n");
	for (size_t i = 0; i < s->ntenants; i++) {
		if (!only || &s->tenants[i] == only)
			summary_row(b, s, &s->tenants[i]);
	}
	rpt_puts(b, "</tbody></table>\n<p class=\"note\">Stages count the servers being "
		    "enforced (Reporting, Throttling, Blocking).</p></section>\n");
}

/* ---- the chart ----
 * Servers per stage as stacked steps: a sample holds from its day until
 * the next one (samples are written only on days that changed). */

struct chart {
	int64_t *days;
	uint32_t (*v)[STORE_HISTORY_SERIES];
	size_t n;
	int64_t start, end; /* days, inclusive */
};

/* The value of tenant t's series as of day d: its last sample on or
 * before d. */
static const struct store_history *as_of(const struct rpt_snapshot *s, const struct rpt_tenant *t,
					 int64_t d)
{
	const struct store_history *last = NULL;

	for (size_t i = t->first_hist; i < t->first_hist + t->nhist; i++) {
		if (s->hist[i].day > d)
			break;
		last = &s->hist[i];
	}
	return last;
}

static int cmp_day(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static bool chart_build(const struct rpt_snapshot *s, const struct rpt_tenant *only,
			struct chart *c)
{
	size_t cap = 1, k = 0;
	int64_t first = INT64_MAX;

	memset(c, 0, sizeof(*c));
	/* days in the policy's time zone, as every date on the page */
	c->end = day_of(s->now + (int64_t)s->utc_offset_min * 60);
	for (size_t i = 0; i < s->ntenants; i++) {
		const struct rpt_tenant *t = &s->tenants[i];

		if (only && t != only)
			continue;
		cap += t->nhist;
		if (t->nhist && s->hist[t->first_hist].day < first)
			first = s->hist[t->first_hist].day;
	}
	if (first == INT64_MAX || first > c->end)
		return true; /* nothing to draw */
	c->start = first;
	if (s->history_days && c->end - c->start >= (int64_t)s->history_days)
		c->start = c->end - (int64_t)s->history_days + 1;
	c->days = malloc(cap * sizeof(*c->days));
	if (!c->days)
		return false;
	c->days[k++] = c->start;
	for (size_t i = 0; i < s->ntenants; i++) {
		const struct rpt_tenant *t = &s->tenants[i];

		if (only && t != only)
			continue;
		for (size_t j = t->first_hist; j < t->first_hist + t->nhist; j++) {
			if (s->hist[j].day > c->start && s->hist[j].day <= c->end)
				c->days[k++] = s->hist[j].day;
		}
	}
	qsort(c->days, k, sizeof(*c->days), cmp_day);
	c->n = 0;
	for (size_t i = 0; i < k; i++) {
		if (!c->n || c->days[c->n - 1] != c->days[i])
			c->days[c->n++] = c->days[i];
	}
	c->v = calloc(c->n, sizeof(*c->v));
	if (!c->v)
		return false;
	for (size_t i = 0; i < c->n; i++) {
		for (size_t j = 0; j < s->ntenants; j++) {
			const struct rpt_tenant *t = &s->tenants[j];
			const struct store_history *h;

			if (only && t != only)
				continue;
			h = as_of(s, t, c->days[i]);
			for (int x = 0; h && x < STORE_HISTORY_SERIES; x++)
				c->v[i][x] += h->n[x];
		}
	}
	return true;
}

static void chart_free(struct chart *c)
{
	free(c->days);
	free(c->v);
}

static void day_text(int64_t day, char *buf, size_t len)
{
	char iso[40];

	tes_time_format(day * 86400, 0, iso, sizeof(iso));
	snprintf(buf, len, "%.10s", iso);
}

/* stacked in the chart: stages 1..8, then the paused servers */
#define STACKED (STORE_HISTORY_PAUSED + 1)

#define CW 760
#define CH 260
#define CL 48 /* left margin: the y labels */
#define CR 12
#define CT 12
#define CB 40 /* bottom margin: the x labels */

void rpt_render_chart(const struct rpt_snapshot *s, const struct rpt_tenant *only,
		      struct rpt_buf *b)
{
	struct chart c;
	const double pw = CW - CL - CR, ph = CH - CT - CB;
	uint32_t ymax = 1;
	double span;

	if (!chart_build(s, only, &c)) {
		b->failed = true;
		chart_free(&c);
		return;
	}
	rpt_printf(
		b,
		"<svg id=\"stage-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
		"height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-labelledby=\"chart-title\">"
		"<title id=\"chart-title\">Servers per stage over time</title>",
		CW, CH, CW, CH);
	rpt_printf(b,
		   "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\" "
		   "stroke=\"#999\"/>",
		   CL, CT, pw, ph);
	if (!c.n) {
		rpt_printf(b,
			   "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">no history yet</text>",
			   CW / 2, CH / 2);
		rpt_puts(b, "</svg>");
		chart_free(&c);
		return;
	}
	for (size_t i = 0; i < c.n; i++) {
		uint32_t tot = 0;

		for (int k = 0; k < STACKED; k++)
			tot += c.v[i][k];
		if (tot > ymax)
			ymax = tot;
		if (c.v[i][STORE_HISTORY_RESOLVED] > ymax)
			ymax = c.v[i][STORE_HISTORY_RESOLVED];
	}
	/* four equal steps of a round size: 1, 2 or 5 times a power of ten */
	{
		uint32_t step = 1, want = (ymax + 3) / 4;

		for (uint32_t p = 1; step < want; p *= 10) {
			if (p > UINT32_MAX / 10) {
				step = want;
				break;
			}
			step = want <= p       ? p
			       : want <= 2 * p ? 2 * p
			       : want <= 5 * p ? 5 * p
					       : 10 * p;
		}
		ymax = step * 4;
	}
	span = (double)(c.end + 1 - c.start);
#define X(d) (CL + ((double)((d)-c.start)) * pw / span)
#define Y(v) (CT + ph - ((double)(v)) * ph / (double)ymax)
	/* the stages and the paused servers, stacked: each a polygon along
	 * its top edge and back along its bottom edge */
	for (int k = 0; k < STACKED; k++) {
		bool any = false;

		for (size_t i = 0; i < c.n; i++)
			any = any || c.v[i][k];
		if (!any)
			continue;
		if (k < TES_STAGE_COUNT)
			rpt_printf(b, "<polygon class=\"series stage-%d\" fill=\"%s\" points=\"",
				   k + 1, series_colors[k]);
		else
			rpt_printf(b, "<polygon class=\"series paused\" fill=\"%s\" points=\"",
				   series_colors[k]);
		for (size_t i = 0; i < c.n; i++) {
			uint32_t top = 0;
			int64_t next = i + 1 < c.n ? c.days[i + 1] : c.end + 1;

			for (int j = 0; j <= k; j++)
				top += c.v[i][j];
			rpt_printf(b, "%.1f,%.1f %.1f,%.1f ", X(c.days[i]), Y(top), X(next),
				   Y(top));
		}
		for (size_t i = c.n; i-- > 0;) {
			uint32_t bot = 0;
			int64_t next = i + 1 < c.n ? c.days[i + 1] : c.end + 1;

			for (int j = 0; j < k; j++)
				bot += c.v[i][j];
			rpt_printf(b, "%.1f,%.1f %.1f,%.1f ", X(next), Y(bot), X(c.days[i]),
				   Y(bot));
		}
		b->len--; /* the last space */
		rpt_printf(b, "\"><title>%s</title></polygon>", series_names[k]);
	}
	/* resolved servers, a line over the stacks */
	rpt_printf(b,
		   "<polyline class=\"series resolved\" fill=\"none\" stroke=\"%s\" "
		   "stroke-width=\"2\" points=\"",
		   series_colors[STORE_HISTORY_RESOLVED]);
	for (size_t i = 0; i < c.n; i++) {
		int64_t next = i + 1 < c.n ? c.days[i + 1] : c.end + 1;

		rpt_printf(b, "%.1f,%.1f %.1f,%.1f%s", X(c.days[i]),
			   Y(c.v[i][STORE_HISTORY_RESOLVED]), X(next),
			   Y(c.v[i][STORE_HISTORY_RESOLVED]), i + 1 < c.n ? " " : "");
	}
	rpt_puts(b, "\"><title>Resolved</title></polyline>");
	/* axes: five y labels, up to six dates */
	for (int i = 0; i <= 4; i++) {
		uint32_t v = ymax / 4 * (uint32_t)i;

		rpt_printf(b,
			   "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%" PRIu32
			   "</text>",
			   CL - 4, Y(v) + 4, v);
	}
	{
		int64_t days = c.end - c.start;
		int ticks = days < 5 ? (int)days : 5;

		for (int i = 0; i <= ticks; i++) {
			int64_t d = c.start + (ticks ? days * i / ticks : 0);
			char txt[16];

			day_text(d, txt, sizeof(txt));
			/* the first and last labels inside the plot's width */
			rpt_printf(b,
				   "<text x=\"%.1f\" y=\"%d\" text-anchor=\"%s\" "
				   "font-size=\"11\">%s</text>",
				   i == 0       ? X(d)
				   : i == ticks ? X(d) + pw / span
						: X(d) + pw / span / 2,
				   CH - CB + 16,
				   i == 0       ? "start"
				   : i == ticks ? "end"
						: "middle",
				   txt);
		}
	}
#undef X
#undef Y
	rpt_puts(b, "</svg>");
	chart_free(&c);
}

static void chart_section(struct rpt_buf *b, const struct rpt_snapshot *s,
			  const struct rpt_tenant *only)
{
	struct chart c;

	rpt_puts(b, "<section id=\"chart\"><h2>Servers per stage over time</h2>\n");
	rpt_render_chart(s, only, b);
	rpt_puts(b, "\n<ul class=\"legend\">");
	for (int k = 0; k < STORE_HISTORY_SERIES; k++) {
		if (k == STORE_HISTORY_STALE)
			continue;
		rpt_printf(b, "<li><span style=\"background:%s\"></span>%s</li>", series_colors[k],
			   series_names[k]);
	}
	rpt_puts(b, "</ul>\n<details><summary>The chart's data</summary>"
		    "<table id=\"history\"><thead><tr><th>From</th>");
	for (int k = 0; k < STORE_HISTORY_SERIES; k++)
		rpt_printf(b, "<th>%s</th>", series_names[k]);
	rpt_puts(b, "</tr></thead><tbody>\n");
	if (chart_build(s, only, &c)) {
		for (size_t i = 0; i < c.n; i++) {
			char d[16];

			day_text(c.days[i], d, sizeof(d));
			rpt_printf(b, "<tr data-day=\"%s\"><th scope=\"row\">%s</th>", d, d);
			for (int k = 0; k < STORE_HISTORY_SERIES; k++)
				rpt_printf(b, "<td class=\"n\">%" PRIu32 "</td>", c.v[i][k]);
			rpt_puts(b, "</tr>\n");
		}
	} else {
		b->failed = true;
	}
	chart_free(&c);
	rpt_puts(b, "</tbody></table></details></section>\n");
}

/* ---- servers ---- */

struct event {
	int64_t at;
	const char *what; /* data-event */
	const char *text;
	int64_t until; /* a pause's end; 0 otherwise */
};

static int cmp_event(const void *a, const void *b)
{
	const struct event *x = a, *y = b;

	return (x->at > y->at) - (x->at < y->at);
}

static void timeline(struct rpt_buf *b, const struct rpt_snapshot *s, const struct rpt_tenant *t,
		     const struct rpt_server *v)
{
	struct event ev[6];
	size_t n = 0;

	ev[n++] = (struct event){ v->first_detected, "first-seen", "first seen", 0 };
	if (v->has_throttle)
		ev[n++] = (struct event){ v->throttle_at, "throttle", "throttling from", 0 };
	if (v->has_block)
		ev[n++] = (struct event){ v->block_at, "block", "blocking from", 0 };
	/* the tenant's last pause, when it fell in this server's clock */
	if (t->pause_end > t->pause_start && t->pause_end > v->first_detected &&
	    (!v->resolved || t->pause_start < v->resolved_at))
		ev[n++] = (struct event){ t->pause_start, "pause", "paused", t->pause_end };
	if (v->stale)
		ev[n++] = (struct event){ v->stale_since, "stale", "stale (not seen) since", 0 };
	if (v->resolved)
		ev[n++] = (struct event){ v->resolved_at, "resolved", "resolved", 0 };
	qsort(ev, n, sizeof(ev[0]), cmp_event);
	rpt_puts(b, "<ol class=\"timeline\">");
	for (size_t i = 0; i < n; i++) {
		rpt_printf(b, "<li data-event=\"%s\"%s>", ev[i].what,
			   ev[i].at > s->now ? " class=\"future\"" : "");
		put_time(b, s, ev[i].at, false);
		rpt_printf(b, " %s", ev[i].text);
		if (ev[i].until) {
			rpt_puts(b, " until ");
			put_time(b, s, ev[i].until, false);
		}
		rpt_puts(b, "</li>");
	}
	rpt_puts(b, "</ol>");
}

static void server_rows(struct rpt_buf *b, const struct rpt_snapshot *s, const struct rpt_tenant *t)
{
	for (size_t i = t->first_server; i < t->first_server + t->nservers; i++) {
		const struct rpt_server *v = &s->servers[i];
		const char *status = tes_status_name(v->status);

		rpt_printf(b,
			   "<tr class=\"server\" id=\"srv-%zu\" data-tenant=\"%" PRIu32 "\" "
			   "data-fqdn=\"",
			   i, v->tenant_id);
		rpt_esc(b, v->fqdn);
		rpt_puts(b, "\"><td class=\"fqdn\">");
		rpt_esc(b, v->fqdn);
		rpt_puts(b, "</td><td class=\"build\">");
		rpt_esc(b, v->build);
		rpt_puts(b, "</td><td class=\"family\">");
		rpt_esc(b, v->family);
		rpt_printf(b, "</td><td class=\"status status-%s\">%s</td>", status, status);
		rpt_printf(b, "<td class=\"n stage\">%u</td>", v->stage);
		put_date_cell(b, s, "first-seen", true, v->first_detected);
		put_date_cell(b, s, "throttle-date", v->has_throttle, v->throttle_at);
		put_date_cell(b, s, "block-date", v->has_block, v->block_at);
		put_date_cell(b, s, "resolved-date", v->resolved, v->resolved_at);
		put_date_cell(b, s, "last-seen", true, v->last_seen);
		rpt_printf(b,
			   "<td class=\"n throttled\">%" PRIu64
			   "</td><td class=\"n refused\">%" PRIu64 "</td>",
			   v->throttled, v->refused);
		rpt_puts(b, "<td class=\"recommended\">");
		rpt_esc(b, v->recommended);
		rpt_puts(b, "</td><td class=\"events\">");
		timeline(b, s, t, v);
		rpt_puts(b, "</td></tr>\n");
	}
}

static void tenant_section(struct rpt_buf *b, const struct rpt_snapshot *s,
			   const struct rpt_tenant *t)
{
	rpt_printf(b, "<section class=\"tenant\" id=\"tenant-%" PRIu32 "\"><h2>", t->id);
	rpt_esc(b, tenant_label(t));
	if (t->id)
		rpt_printf(b, " <small>(tenant %" PRIu32 ")</small>", t->id);
	rpt_puts(b, "</h2>\n<p class=\"pause\">");
	if (t->id == 0) {
		rpt_puts(b,
			 "Servers seen in mail that came over no tenant's connector (scope all).");
	} else if (t->paused) {
		rpt_puts(b, "Enforcement paused from ");
		put_time(b, s, t->pause_start, false);
		rpt_puts(b, " until ");
		put_time(b, s, t->pause_end, true);
		rpt_puts(b, ".");
	} else {
		rpt_puts(b, "Not paused.");
	}
	if (t->id)
		rpt_printf(b, " Pause days used this year: %u of %u (%u left).", t->pause_days_used,
			   t->pause_quota, t->pause_days_left);
	rpt_puts(b, "</p>\n");
	if (!t->nservers) {
		rpt_puts(b, "<p class=\"none\">No out-of-date servers on record.</p></section>\n");
		return;
	}
	rpt_puts(b, "<table class=\"servers\"><thead><tr><th>Server</th><th>Build</th>"
		    "<th>Family</th><th>Status</th><th>Stage</th><th>First seen</th>"
		    "<th>Throttling from</th><th>Blocking from</th><th>Resolved</th>"
		    "<th>Last seen</th><th>Throttled messages</th><th>Refused messages</th>"
		    "<th>Update to</th><th>Timeline</th></tr></thead><tbody>\n");
	server_rows(b, s, t);
	rpt_puts(b, "</tbody></table></section>\n");
}

/* ---- what is in force ---- */

static void documents(struct rpt_buf *b, const struct rpt_snapshot *s)
{
	const struct tes_policy *p = &s->policy;

	rpt_puts(b, "<section id=\"policy\"><h2>Enforcement policy in force</h2>\n<p>Version <code "
		    "class=\"policy-version\">");
	rpt_esc(b, s->policy_version);
	rpt_puts(b, "</code>");
	if (s->policy_name[0]) {
		rpt_puts(b, ", from <code>");
		rpt_esc(b, s->policy_name);
		rpt_puts(b, "</code>");
	}
	rpt_puts(b, ".</p>\n<table id=\"stages\"><thead><tr><th>Stage</th><th>From day</th>"
		    "<th>Throttled minutes per hour</th><th>Blocked minutes per hour</th></tr>"
		    "</thead><tbody>\n");
	for (unsigned k = 0; k < TES_STAGE_COUNT; k++)
		rpt_printf(b,
			   "<tr><th scope=\"row\">%u</th><td class=\"n\">%" PRIu32 "</td>"
			   "<td class=\"n\">%u</td><td class=\"n\">%u</td></tr>\n",
			   k + 1, p->stage[k].start_day, p->stage[k].throttle_min,
			   p->stage[k].block_min);
	rpt_printf(b,
		   "</tbody></table>\n<p>Pause quota: %u days per calendar year. Full block: %s. "
		   "Scope: %s.</p>\n",
		   p->pause_quota_days, p->full_block == TES_FULL_BLOCK_DROP ? "drop" : "reply",
		   p->scope == TES_SCOPE_ALL ? "all mail" : "mail over the tenant's connectors");
	if (s->policy_text) {
		rpt_puts(b, "<details><summary>The policy file</summary><pre>");
		rpt_esc(b, s->policy_text);
		rpt_puts(b, "</pre></details>\n");
	}
	rpt_puts(b,
		 "</section>\n<section id=\"catalog\"><h2>Build catalog in force</h2>\n<p>Version "
		 "<code class=\"catalog-version\">");
	rpt_esc(b, s->catalog_version);
	rpt_printf(b, "</code>: %zu builds from <code>", s->catalog_builds);
	rpt_esc(b, s->builds_name);
	rpt_puts(b, "</code>, compliance rules from <code>");
	rpt_esc(b, s->compliance_name);
	rpt_puts(b, "</code>.</p>\n");
	if (s->compliance_text) {
		rpt_puts(b, "<details><summary>The compliance rules</summary><pre>");
		rpt_esc(b, s->compliance_text);
		rpt_puts(b, "</pre></details>\n");
	}
	rpt_puts(b, "</section>\n");
}

void rpt_render(const struct rpt_snapshot *s, const struct rpt_tenant *only, struct rpt_buf *b)
{
	rpt_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
		    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
		    "<meta name=\"referrer\" content=\"no-referrer\">\n<title>");
	if (only) {
		rpt_esc(b, tenant_label(only));
		rpt_puts(b, ": ");
	}
	rpt_printf(b, "tesgate report</title>\n<style>%s</style></head>\n<body>\n<header><h1>",
		   style);
	if (only) {
		rpt_esc(b, tenant_label(only));
		rpt_puts(b, ": out-of-date Exchange servers");
	} else {
		rpt_puts(b, "tesgate: out-of-date Exchange servers");
	}
	rpt_puts(b, "</h1>\n<p id=\"asof\">As of ");
	put_time(b, s, s->now, true);
	if (s->test_clock)
		rpt_puts(b, " <span class=\"testclock\">TEST CLOCK</span>");
	rpt_puts(b, "</p>\n");
	if (!only && s->ntenants) {
		rpt_puts(b, "<nav><ul>");
		for (size_t i = 0; i < s->ntenants; i++) {
			rpt_printf(b, "<li><a href=\"#tenant-%" PRIu32 "\">", s->tenants[i].id);
			rpt_esc(b, tenant_label(&s->tenants[i]));
			rpt_puts(b, "</a></li>");
		}
		rpt_puts(b, "</ul></nav>\n");
	}
	rpt_puts(b, "</header>\n<main>\n");
	summary(b, s, only);
	chart_section(b, s, only);
	for (size_t i = 0; i < s->ntenants; i++) {
		if (!only || &s->tenants[i] == only)
			tenant_section(b, s, &s->tenants[i]);
	}
	documents(b, s);
	rpt_puts(b, "</main>\n<footer><p>tescontrol ");
	rpt_esc(b, s->version ? s->version : "");
	rpt_puts(b, ". Dates are given in the policy's time zone.</p></footer>\n</body></html>\n");
}
