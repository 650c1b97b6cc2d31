/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the report page (controlplane/notify/report_html.c):
 * the escaper and the renderer with hostile names.  The input is cut at
 * NUL octets into the texts that come from outside (tenant names, server
 * names as mail headers gave them, builds, the policy and compliance
 * texts); its first octets choose statuses, stages, counts and history.
 * Whatever they hold:
 *   - the escaper's output is UTF-8, holds none of < > " ' and only
 *     entities after &;
 *   - the page has exactly the markup of the same page with every text
 *     replaced by "x" (as many < and >): no text becomes a tag;
 *   - every page (all tenants, each tenant alone) is UTF-8.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "controlplane/notify/report_html.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool utf8_ok(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t cp, min;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (i + len > n)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static void check_escape(const char *s, size_t n)
{
	static const char *const ents[] = { "&amp;", "&lt;", "&gt;", "&quot;", "&#39;" };
	struct rpt_buf b = { 0 };

	rpt_escape(&b, s, n);
	if (b.failed)
		abort();
	for (size_t i = 0; i < b.len; i++) {
		char c = b.p[i];

		if (c == '<' || c == '>' || c == '"' || c == '\'' || c == '\0')
			abort();
		if (c == '&') {
			bool ok = false;

			for (size_t k = 0; k < 5; k++)
				ok = ok || strncmp(b.p + i, ents[k], strlen(ents[k])) == 0;
			if (!ok)
				abort();
		}
	}
	if (b.len && !utf8_ok((const unsigned char *)b.p, b.len))
		abort();
	rpt_buf_free(&b);
}

/* The next text of the input (up to a NUL), at most len - 1 octets. */
static void take(const uint8_t **p, const uint8_t *end, char *out, size_t len)
{
	size_t n = 0;

	while (*p < end && **p && n + 1 < len)
		out[n++] = (char)*(*p)++;
	out[n] = '\0';
	while (*p < end && **p)
		(*p)++;
	if (*p < end)
		(*p)++;
}

static void xify(char *s)
{
	if (s[0])
		strcpy(s, "x");
}

static void count_marks(const struct rpt_buf *b, size_t *lt, size_t *gt)
{
	*lt = *gt = 0;
	for (size_t i = 0; i < b->len; i++) {
		*lt += b->p[i] == '<';
		*gt += b->p[i] == '>';
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct rpt_tenant tenants[2], xt[2];
	static struct rpt_server servers[4], xs[4];
	static struct store_history hist[4];
	static char policy[2048], compliance[2048], x[] = "x";
	struct rpt_snapshot s, sx;
	const uint8_t *p = data, *end = data + size;
	uint8_t knobs[16] = { 0 };

	check_escape((const char *)data, size);
	memcpy(knobs, data, size < sizeof(knobs) ? size : sizeof(knobs));
	memset(&s, 0, sizeof(s));
	memset(tenants, 0, sizeof(tenants));
	memset(servers, 0, sizeof(servers));
	memset(hist, 0, sizeof(hist));
	s.now = 1704067200 + (int64_t)knobs[0] * 86400;
	s.test_clock = knobs[1] & 1;
	s.utc_offset_min = (int)(knobs[1] >> 1) * 10 - 600;
	s.version = "fuzz";
	s.history_days = knobs[2] ? knobs[2] : 400;
	tes_policy_default(&s.policy);
	for (int i = 0; i < 2; i++) {
		tenants[i].id = (uint32_t)i + 1;
		take(&p, end, tenants[i].name, sizeof(tenants[i].name));
		tenants[i].paused = knobs[3] & (1u << i);
		tenants[i].pause_start = s.now - 86400;
		tenants[i].pause_end = s.now + (int64_t)knobs[4] * 3600;
		tenants[i].first_server = (size_t)i * 2;
		tenants[i].nservers = 2;
		tenants[i].first_hist = (size_t)i * 2;
		tenants[i].nhist = 2;
	}
	for (int i = 0; i < 4; i++) {
		struct rpt_server *v = &servers[i];

		v->tenant_id = (uint32_t)i / 2 + 1;
		take(&p, end, v->fqdn, sizeof(v->fqdn));
		take(&p, end, v->build, sizeof(v->build));
		take(&p, end, v->family, sizeof(v->family));
		take(&p, end, v->recommended, sizeof(v->recommended));
		v->status = (enum tes_status)(knobs[5 + i] % TES_STATUS_COUNT);
		v->stage = knobs[9 + i] % (TES_STAGE_COUNT + 2);
		v->first_detected = s.now - (int64_t)knobs[13] * 86400;
		v->last_seen = s.now;
		v->has_throttle = knobs[14] & 1;
		v->throttle_at = v->first_detected + 30 * 86400;
		v->has_block = knobs[14] & 2;
		v->block_at = v->first_detected + 60 * 86400;
		v->resolved = knobs[14] & 4;
		v->resolved_at = s.now;
		v->stale = knobs[14] & 8;
		v->stale_since = s.now - 3600;
		v->throttled = (uint64_t)knobs[15] << (i * 8);
		v->refused = knobs[15];
		hist[i].tenant_id = (uint32_t)i / 2 + 1;
		hist[i].day = s.now / 86400 - (int64_t)(knobs[i] % 50) - (i % 2 ? 0 : 60);
		for (int k = 0; k < STORE_HISTORY_SERIES; k++)
			hist[i].n[k] = (uint32_t)knobs[(i + k) % 16] * (uint32_t)(k + 1);
	}
	/* each tenant's samples by day */
	for (int i = 0; i < 4; i += 2) {
		if (hist[i].day > hist[i + 1].day) {
			struct store_history t = hist[i];

			hist[i] = hist[i + 1];
			hist[i + 1] = t;
		}
	}
	take(&p, end, policy, sizeof(policy));
	take(&p, end, compliance, sizeof(compliance));
	take(&p, end, s.policy_name, sizeof(s.policy_name));
	take(&p, end, s.builds_name, sizeof(s.builds_name));
	s.policy_text = policy;
	s.compliance_text = compliance;
	s.tenants = tenants;
	s.ntenants = 2;
	s.servers = servers;
	s.nservers = 4;
	s.hist = hist;
	s.nhist = 4;

	/* the same page with every text that is not empty "x" (an empty one
	 * may leave markup out, on purpose) */
	sx = s;
	memcpy(xt, tenants, sizeof(xt));
	memcpy(xs, servers, sizeof(xs));
	for (int i = 0; i < 2; i++)
		xify(xt[i].name);
	for (int i = 0; i < 4; i++) {
		xify(xs[i].fqdn);
		xify(xs[i].build);
		xify(xs[i].family);
		xify(xs[i].recommended);
	}
	xify(sx.policy_name);
	xify(sx.builds_name);
	sx.policy_text = policy[0] ? x : policy;
	sx.compliance_text = compliance[0] ? x : compliance;
	sx.tenants = xt;
	sx.servers = xs;

	for (int view = -1; view < 2; view++) {
		struct rpt_buf a = { 0 }, b = { 0 };
		size_t alt, agt, blt, bgt;

		rpt_render(&s, view < 0 ? NULL : &tenants[view], &a);
		rpt_render(&sx, view < 0 ? NULL : &xt[view], &b);
		if (a.failed || b.failed || !utf8_ok((const unsigned char *)a.p, a.len))
			abort();
		count_marks(&a, &alt, &agt);
		count_marks(&b, &blt, &bgt);
		if (alt != blt || agt != bgt)
			abort();
		rpt_buf_free(&a);
		rpt_buf_free(&b);
	}
	return 0;
}
