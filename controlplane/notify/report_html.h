/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The report as a page: plain HTML and inline SVG written from a snapshot
 * of the state (struct rpt_snapshot), with no script, so it reads the same
 * in any browser, in a text browser and with JavaScript off.  Everything
 * that comes from outside (server names from mail headers, tenant names,
 * the policy and catalog texts) goes through rpt_escape: the five HTML
 * metacharacters become entities, control characters and octets that are
 * not UTF-8 become U+FFFD, so the page is valid UTF-8 whatever the names
 * hold.
 *
 * Pure: the renderer reads only the snapshot it is given and writes only
 * the buffer (tests/unit/test_cp_report.c, tests/fuzz/fuzz_report.c).
 *
 * Threads: any; a snapshot is immutable once built, so any number of
 * threads may render from it at once.
 */
#ifndef TES_CONTROLPLANE_NOTIFY_REPORT_HTML_H
#define TES_CONTROLPLANE_NOTIFY_REPORT_HTML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controlplane/store/records.h"
#include "enforce/decide.h"
#include "enforce/policy.h"

/* A growing text buffer; failed is sticky (no memory). */
struct rpt_buf {
	char *p;
	size_t len, cap;
	bool failed;
};

void rpt_buf_free(struct rpt_buf *b);
void rpt_put(struct rpt_buf *b, const char *s, size_t n);
void rpt_puts(struct rpt_buf *b, const char *s);
void rpt_printf(struct rpt_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s[0..n) as HTML text or a double-quoted attribute value (module
 * comment). */
void rpt_escape(struct rpt_buf *b, const char *s, size_t n);
static inline void rpt_esc(struct rpt_buf *b, const char *s)
{
	rpt_escape(b, s, __builtin_strlen(s));
}

/* One server as the report shows it (the values of tesctl report). */
struct rpt_server {
	uint32_t tenant_id;
	char fqdn[TES_FQDN_MAX];
	char build[48];
	char family[16];
	char branch[16];
	char recommended[160]; /* "15.1.2507.44 (Nov24SU), ..." */
	enum tes_status status;
	unsigned stage;
	int64_t first_detected;
	int64_t last_seen;
	bool has_throttle;
	int64_t throttle_at;
	bool has_block;
	int64_t block_at;
	bool has_next;
	unsigned next_stage, next_throttle_min, next_block_min;
	int64_t next_at;
	bool resolved;
	int64_t resolved_at;
	bool stale;
	int64_t stale_since;
	int64_t paused_seconds;
	uint64_t throttled, refused;
};

struct rpt_tenant {
	uint32_t id; /* 0: mail over no connector (scope all) */
	char name[TES_TENANT_NAME_MAX];
	bool paused;
	int64_t pause_start, pause_end; /* the last pause; equal when none */
	unsigned pause_days_used, pause_days_left, pause_quota;
	/* its servers: servers[first .. first + n), sorted by name */
	size_t first_server, nservers;
	/* its history: hist[first .. first + n), by day */
	size_t first_hist, nhist;
};

struct rpt_snapshot {
	int64_t now;
	bool test_clock;
	int utc_offset_min;
	const char *version; /* tescontrol's */
	char catalog_version[64];
	char builds_name[256], compliance_name[256];
	size_t catalog_builds;
	char *compliance_text; /* malloc'd */
	char policy_version[64], policy_name[256];
	char *policy_text; /* malloc'd */
	struct tes_policy policy;
	unsigned history_days;
	struct rpt_tenant *tenants; /* by id */
	size_t ntenants;
	struct rpt_server *servers; /* by tenant, then name */
	size_t nservers;
	struct store_history *hist; /* by tenant, then day */
	size_t nhist;
};

void rpt_snapshot_free(struct rpt_snapshot *s);

/* The page of every tenant (only NULL) or of one tenant only (the view a
 * tenant's token opens: nothing of any other tenant is written).  The
 * whole document, appended to b. */
void rpt_render(const struct rpt_snapshot *s, const struct rpt_tenant *only, struct rpt_buf *b);

/* The chart alone (an <svg> element): servers per stage over the history
 * of tenant only, or of all tenants summed. */
void rpt_render_chart(const struct rpt_snapshot *s, const struct rpt_tenant *only,
		      struct rpt_buf *b);

#endif
