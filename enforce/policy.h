/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The enforcement policy: the stage table, where the throttle/block window
 * sits in the hour, scope, reply texts, what a fully blocked source gets, and
 * the pause quota.  See docs/enforcement.md and data/policy.conf.
 *
 * struct tes_policy is a plain value (no pointers): it can be copied, sent in
 * a snapshot and compared field by field.  Every function here is reentrant
 * and keeps no state; any number of threads may use one policy at once as long
 * as nobody modifies it meanwhile (the gateway swaps whole snapshots under
 * RCU instead).  tes_policy_load is the only function that does I/O (it reads
 * the named file); the parser never changes its output unless the whole input
 * is valid.
 */
#ifndef TES_ENFORCE_POLICY_H
#define TES_ENFORCE_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The stage table always has eight rows (tes-behaviour.md section 4); their
 * days and rates are configuration. */
#define TES_STAGE_COUNT 8
#define TES_STAGE_DAY_MAX 36500u

/* Sizes include the terminating NUL.  An SMTP reply line is at most 512
 * octets (RFC 5321 4.5.3.1.5): "550 5.7.230 " plus the text plus CRLF must
 * fit, so an expanded text is at most 497 octets. */
#define TES_PRODUCT_MAX 64
#define TES_REPLY_TEXT_MAX 320

#define TES_UTC_OFFSET_MIN (-720)
#define TES_UTC_OFFSET_MAX 840
#define TES_PAUSE_QUOTA_MAX 366
/* Ageing, shared sources, probes and caps (docs/enforcement.md). */
#define TES_AGE_DAYS_MAX 3650u
#define TES_CARRIED_DAYS_MAX 3650u
#define TES_PROBE_INTERVAL_MAX 1440u /* minutes */
#define TES_SERVERS_CAP_MAX 10000000u
#define TES_PREFIX_CAP_MAX 65536u

struct tes_stage {
	uint32_t start_day;   /* days since first detection when it starts */
	uint8_t throttle_min; /* 450 minutes per hour */
	uint8_t block_min;    /* 550 minutes per hour; 60 blocks everything */
};

enum tes_scope {
	TES_SCOPE_CONNECTORS = 0, /* only mail that came over a tenant's connector */
	TES_SCOPE_ALL,            /* all mail from a detected server */
};

enum tes_full_block {
	TES_FULL_BLOCK_REPLY = 0, /* 550 as in every other block window */
	TES_FULL_BLOCK_DROP,      /* drop the source silently at the packet level */
};

struct tes_policy {
	struct tes_stage stage[TES_STAGE_COUNT]; /* stage[0] is stage 1 */
	/* The window starts this many minutes after the local clock hour:
	 * first the blocked minutes, then the throttled ones. 0..59. */
	int16_t window_offset_min;
	/* Local time = UTC + this; sets the clock hour of the window and the
	 * calendar year of the pause quota.  -720..840. */
	int16_t utc_offset_min;
	enum tes_scope scope;
	enum tes_full_block full_block;
	uint16_t pause_quota_days; /* per calendar year, 0..366 */
	/* Ageing: a server not seen for stale_after_days is Stale (reported,
	 * not enforced, its stage clock stopped); one not seen for
	 * forget_after_days is forgotten.  0: never.  When both are set,
	 * forget_after_days > stale_after_days. */
	uint16_t stale_after_days;
	uint16_t forget_after_days;
	/* A source address carries a server for this many days after its
	 * last message of that server (the MAIL FROM decision of a shared
	 * source).  1..3650. */
	uint16_t carried_days;
	/* At a stage that blocks all 60 minutes, one transaction per (server,
	 * source) per probe_interval_min is read to its headers.  0: no
	 * probe. */
	uint16_t probe_interval_min;
	/* Caps on tracked servers: per tenant (connector mail; never
	 * evicted), and for mail over no connector under scope "all" (tenant
	 * 0) in total and per source prefix, least recently seen evicted. */
	uint32_t servers_per_tenant;   /* 1.. */
	uint32_t untrusted_servers;    /* 0..: 0 tracks none */
	uint32_t untrusted_per_prefix; /* 1.. */
	uint8_t untrusted_prefix_v4;   /* 8..32 */
	uint8_t untrusted_prefix_v6;   /* 16..128 */
	/* Reply templates: %d is the minutes per hour (exactly once), %p the
	 * product name, %% a percent sign; printable ASCII only. */
	char product[TES_PRODUCT_MAX];
	char throttle_text[TES_REPLY_TEXT_MAX];
	char block_text[TES_REPLY_TEXT_MAX];
};

/* The fixed parts of the replies (tes-behaviour.md section 5). */
#define TES_THROTTLE_CODE 450
#define TES_THROTTLE_ENHANCED "4.7.230"
#define TES_BLOCK_CODE 550
#define TES_BLOCK_ENHANCED "5.7.230"

enum tes_policy_errcode {
	TES_PERR_NONE = 0,
	TES_PERR_IO,        /* cannot open or read the file, or it is too big */
	TES_PERR_SYNTAX,    /* not a comment, [section] or key = value line */
	TES_PERR_SECTION,   /* unknown section */
	TES_PERR_KEY,       /* unknown key, or a key before any section */
	TES_PERR_DUPLICATE, /* the same key twice */
	TES_PERR_VALUE,     /* not a number / not one of the allowed words */
	TES_PERR_RANGE,     /* a number outside its range */
	TES_PERR_ORDER,     /* stage days not starting at 0 and increasing */
	TES_PERR_TEXT,      /* a bad reply template or product name */
};

/* Where and why a policy was rejected.  line is 1-based; 0 when the problem
 * is not on one line (I/O, or a value that came from the defaults). */
struct tes_policy_error {
	enum tes_policy_errcode code;
	char file[256];
	unsigned line;
	char key[48]; /* "section.key", e.g. "stages.3", "replies.throttle" */
	char msg[192];
};

/* The built-in policy: the section 4 table, window at the start of the UTC
 * hour, connectors-only scope, 550 at full block, 90 pause days a year, and
 * the section 5 texts for "Exchange Online". */
void tes_policy_default(struct tes_policy *p);

/* Parse policy text (see data/policy.conf for the format).  Keys not given
 * keep their built-in default.  Returns 0 and fills *out, or -1 with *err
 * filled in and *out untouched.  name labels error messages. */
int tes_policy_parse(const char *text, size_t len, const char *name, struct tes_policy *out,
		     struct tes_policy_error *err);

/* The same, reading path (at most 64 KiB). */
int tes_policy_load(const char *path, struct tes_policy *out, struct tes_policy_error *err);

/* Check a policy built in memory (received in a snapshot, say) against the
 * same rules the parser applies.  0 or -1 with err (line 0, file "<memory>"). */
int tes_policy_validate(const struct tes_policy *p, struct tes_policy_error *err);

bool tes_policy_equal(const struct tes_policy *a, const struct tes_policy *b);

/* Write p in the file format; parsing the result gives back an equal policy.
 * Returns the length it needed, like snprintf. */
int tes_policy_format(const struct tes_policy *p, char *buf, size_t len);

/* The same, with only the sections and keys of the first release
 * ([stages], [clock], [window], [enforcement] scope and full_block,
 * [pause], [replies]): what a gateway of that release parses (the control
 * protocol's "policy" message, docs/control-protocol.md). */
int tes_policy_format_compat(const struct tes_policy *p, char *buf, size_t len);

/* "policy.conf:12: stages.3: throttled plus blocked minutes exceed 60". */
int tes_policy_error_format(const struct tes_policy_error *err, char *buf, size_t len);

/* Expand a reply template into buf.  Returns the length, or -1 (buf holds a
 * truncated, NUL-terminated text) if it does not fit.  Does not allocate. */
int tes_reply_expand(const char *tmpl, const char *product, unsigned minutes, char *buf,
		     size_t len);

const char *tes_scope_name(enum tes_scope s);
const char *tes_full_block_name(enum tes_full_block f);

#endif
