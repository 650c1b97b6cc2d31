/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The enforcement model and the decision function, shared by tesgate and
 * tescontrol so that both compute the same verdict from the same values.
 *
 * Everything here is a pure function over values passed in: no I/O, no clock
 * (time is always an argument: int64 seconds since the Unix epoch, UTC), no
 * allocation, no global state.  Any number of threads may call any of these
 * functions at once, provided no thread modifies an object while another
 * reads it; the owners publish new states as whole new objects (RCU in the
 * gateway, one thread in tescontrol) rather than editing in place.
 *
 * Model (docs/enforcement.md has the whole story):
 * - a server is keyed by (tenant id, server FQDN) and carries the start of
 *   its stage clock; stage and status are derived from it, the tenant's pause
 *   and the policy at a given time, never stored, so nothing needs a timer to
 *   stay correct;
 * - the stage clock stops while the tenant is paused.  The tenant keeps a
 *   "pause clock" (total seconds paused up to any time) and each server the
 *   value it had at first detection, so pausing or resuming a tenant is one
 *   write to the tenant, not one per server;
 * - the stage clock also stops while the server is Stale (not seen for the
 *   policy's stale_after days); the server keeps the total of its finished
 *   stale periods, and the current one is derived from last_seen;
 * - compliant servers are tracked too (a server compliant since it was
 *   first seen has no clock: resolved, first_detected 0), so that the
 *   decision at MAIL FROM for a source several servers share
 *   (tes_decide_carried) knows every server behind it.
 */
#ifndef TES_ENFORCE_DECIDE_H
#define TES_ENFORCE_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "enforce/build.h"
#include "enforce/policy.h"

#define TES_DAY_SECONDS 86400
/* Times are clamped to [0, TES_TIME_MAX] (9999-12-31T23:59:59Z) so that no
 * input, however wrong, makes the arithmetic overflow. */
#define TES_TIME_MAX INT64_C(253402300799)

#define TES_FQDN_MAX 256 /* 255 octets of name and a NUL */
#define TES_SERVER_SOURCES_MAX 4
#define TES_TENANT_NAME_MAX 64
#define TES_TENANT_CONNECTORS_MAX 16
#define TES_CERT_NAME_MAX 256

/* ---- addresses and connectors ---- */

enum tes_addr_family {
	TES_ADDR_NONE = 0,
	TES_ADDR_V4 = 4,
	TES_ADDR_V6 = 6,
};

/* An IPv4 or IPv6 address.  IPv4 uses a[0..3] and leaves the rest zero, so
 * two equal addresses are equal byte for byte.  The constructors turn an
 * IPv4-mapped IPv6 address (::ffff:192.0.2.1, what a dual-stack socket
 * reports) into the IPv4 one, so it matches IPv4 connectors. */
struct tes_addr {
	uint8_t family; /* enum tes_addr_family */
	uint8_t a[16];
};

void tes_addr_v4(struct tes_addr *out, const uint8_t b[4]);
void tes_addr_v6(struct tes_addr *out, const uint8_t b[16]);
/* "192.0.2.1" or "2001:db8::1"; false if it is neither. */
bool tes_addr_parse(const char *s, struct tes_addr *out);
int tes_addr_format(const struct tes_addr *a, char *buf, size_t len);
bool tes_addr_equal(const struct tes_addr *x, const struct tes_addr *y);
/* Whether a lies in net/prefix_len (same family only). */
bool tes_addr_in_prefix(const struct tes_addr *a, const struct tes_addr *net, unsigned prefix_len);

/* An inbound connector of a tenant: mail from a source address in the range
 * and, when cert_name is set, presenting a TLS client certificate with that
 * name.  A certificate-only connector is 0.0.0.0/0 or ::/0 with a name. */
struct tes_connector {
	struct tes_addr net;
	uint8_t prefix_len;                /* 0..32 or 0..128 */
	char cert_name[TES_CERT_NAME_MAX]; /* "" when no certificate is required */
};

/* "198.51.100.0/24" or "2001:db8:1::/48" (a bare address is a /32 or /128)
 * and an optional certificate name (NULL or ""). 0, or -1 when the range is
 * malformed, has host bits set, or the name is too long. */
int tes_connector_parse(const char *range, const char *cert_name, struct tes_connector *out);

/* cert_name is the name the client's certificate was verified for, or NULL
 * when it presented none. */
bool tes_connector_match(const struct tes_connector *c, const struct tes_addr *src,
			 const char *cert_name);

/* ---- tenants and pauses ---- */

/* The tenant's pause history, as much of it as the model needs.  The current
 * or most recent pause is [start, end); earlier pauses only survive as their
 * total length.  All zero: never paused. */
struct tes_pause {
	int64_t start;
	int64_t end;
	int64_t paused_before; /* seconds of all pauses before [start, end) */
	uint16_t year;         /* the calendar year days_used belongs to */
	uint16_t days_used;    /* pause days granted in that year */
};

struct tes_tenant {
	uint32_t id;
	char name[TES_TENANT_NAME_MAX];
	unsigned nconnectors;
	struct tes_connector connectors[TES_TENANT_CONNECTORS_MAX];
	struct tes_pause pause;
	/* The tenant has as many servers on record as the policy's
	 * servers_per_tenant allows: a new one is not tracked, so gateways
	 * need not report servers they have no record of.  Derived by
	 * tescontrol (not stored); false unless it says so. */
	bool at_server_cap;
};

/* Index of the first connector of t that matches, or -1. */
int tes_tenant_match_connector(const struct tes_tenant *t, const struct tes_addr *src,
			       const char *cert_name);

bool tes_pause_active(const struct tes_pause *p, int64_t now);

/* The tenant's pause clock: seconds paused in total up to time t (exact for
 * any t from the start of the latest pause on). */
int64_t tes_pause_clock(const struct tes_pause *p, int64_t t);

enum tes_pause_rc {
	TES_PAUSE_OK = 0,
	TES_PAUSE_EDAYS,  /* days is 0 */
	TES_PAUSE_EQUOTA, /* more days than are left this calendar year */
};

/* "pause add DAYS" at time now.  If a pause is active it is extended from its
 * end, otherwise a new pause starts now.  The days count toward the calendar
 * year (in the policy's time zone) in which the added days start, whole, even
 * when they run past New Year.  On success writes the new pause to *out (which
 * may be in) and the days left for that year to *days_left; on failure leaves
 * *out alone and says in *days_left how many days could still be added. */
enum tes_pause_rc tes_pause_add(const struct tes_pause *in, const struct tes_policy *pol,
				int64_t now, unsigned days, struct tes_pause *out,
				unsigned *days_left);

/* Days a "pause add" at time now could still add, and the calendar year they
 * would count toward (the year of now, or of the active pause's end). */
unsigned tes_pause_days_left(const struct tes_pause *p, const struct tes_policy *pol, int64_t now,
			     int *year);

/* End an active pause at now.  The days granted stay used: the quota counts
 * days granted, so a pause cannot be resumed and re-added to dodge it.
 * Returns false (and copies in to out) when no pause is active. */
bool tes_pause_resume(const struct tes_pause *in, int64_t now, struct tes_pause *out);

/* ---- servers ---- */

enum tes_build_class {
	TES_BUILD_UNKNOWN = 0,  /* no build seen on this message yet (MAIL FROM) */
	TES_BUILD_NOT_EXCHANGE, /* no on-premises Exchange hop: never enforced */
	TES_BUILD_COMPLIANT,
	TES_BUILD_VULNERABLE,
};

/* What the headers of one message said about its on-premises server. */
struct tes_detection {
	enum tes_build_class cls;
	enum ex_family family;
	struct ex_build build;
};

struct tes_server {
	uint32_t tenant_id;
	char fqdn[TES_FQDN_MAX]; /* as first seen; owners compare case-insensitively */
	struct ex_build build;   /* the last build seen */
	enum ex_family family;
	bool resolved;          /* the last build seen was compliant */
	int64_t first_detected; /* start of the current stage clock */
	int64_t last_seen;
	int64_t resolved_at; /* when it was resolved; 0 while not */
	int64_t pause_base;  /* tenant's pause clock at first_detected */
	uint8_t nsources;
	struct tes_addr sources[TES_SERVER_SOURCES_MAX];
	/* When each source last carried this server (a message of it came
	 * from there); 0: not known, which counts as recent.  When a fifth
	 * source appears, the least recently seen one is dropped. */
	int64_t source_seen[TES_SERVER_SOURCES_MAX];
	/* Seconds of the current clock spent Stale in finished stale periods
	 * (not counting time also paused); the current one is derived. */
	int64_t stale_seconds;
};

/* A server compliant since it was first seen: tracked so that the sources
 * it uses are known, but it never had a clock. */
static inline bool tes_server_compliant_only(const struct tes_server *s)
{
	return s->resolved && s->first_detected == 0;
}

enum tes_status {
	TES_STATUS_REPORTING = 0,
	TES_STATUS_THROTTLING,
	TES_STATUS_BLOCKING,
	TES_STATUS_RESOLVED,
	TES_STATUS_PAUSED,
	TES_STATUS_STALE,     /* not seen for stale_after days: not enforced */
	TES_STATUS_COMPLIANT, /* compliant since first seen: no clock */
	TES_STATUS_COUNT,
};

/* "Reporting", "Throttling", "Blocking", "Resolved", "Paused", "Stale",
 * "Compliant". */
const char *tes_status_name(enum tes_status s);

/* In the functions below t is the server's tenant, or NULL (then there is no
 * pause).  Passing another tenant's pause gives meaningless clocks. */

/* When the server becomes (or became) Stale: last_seen + stale_after days;
 * INT64_MAX when it cannot (the policy says never, or it is resolved). */
int64_t tes_server_stale_at(const struct tes_server *s, const struct tes_policy *p);
bool tes_server_stale(const struct tes_server *s, const struct tes_policy *p, int64_t now);
/* When it is to be forgotten: last_seen + forget_after days, or INT64_MAX. */
int64_t tes_server_forget_at(const struct tes_server *s, const struct tes_policy *p);

/* Seconds of the server's current clock spent paused; spent Stale (the
 * finished periods plus the current one, less what overlaps a pause); and
 * the stage clock: time since first detection minus both (never
 * negative).  The stale part is exact unless the tenant paused more than
 * once during a stale period (then the earlier pauses are assumed to lie
 * before it). */
int64_t tes_server_paused_seconds(const struct tes_server *s, const struct tes_tenant *t,
				  int64_t now);
int64_t tes_server_stale_seconds(const struct tes_server *s, const struct tes_tenant *t,
				 const struct tes_policy *p, int64_t now);
int64_t tes_server_elapsed(const struct tes_server *s, const struct tes_tenant *t,
			   const struct tes_policy *p, int64_t now);

/* Stage 1..TES_STAGE_COUNT for a stage clock value. */
unsigned tes_policy_stage_at(const struct tes_policy *p, int64_t elapsed);

/* The stage now; for a resolved server, the stage it had reached when it was
 * resolved (1 for a server compliant since first seen). */
unsigned tes_server_stage(const struct tes_server *s, const struct tes_tenant *t,
			  const struct tes_policy *p, int64_t now);

/* Compliant (compliant since first seen) or Resolved, else Stale, else
 * Paused while the tenant is paused, else by the stage: Blocking if it has
 * blocked minutes, Throttling if throttled ones, otherwise Reporting. */
enum tes_status tes_server_status(const struct tes_server *s, const struct tes_tenant *t,
				  const struct tes_policy *p, int64_t now);

/* When the stage or status changes next without any new event (the next
 * stage starts, the pause ends, the server becomes Stale); INT64_MAX if
 * never.  Forgetting is not a change of status: see tes_server_forget_at.
 * tescontrol's escalation timers run off both. */
int64_t tes_server_next_change(const struct tes_server *s, const struct tes_tenant *t,
			       const struct tes_policy *p, int64_t now);

/* What a sighting does to the stored state. */
enum tes_change {
	TES_CHANGE_NONE = 0,   /* nothing to store (*out untouched) */
	TES_CHANGE_FIRST,      /* new server, vulnerable: the clock starts now */
	TES_CHANGE_REDETECTED, /* resolved server vulnerable again: a new clock */
	TES_CHANGE_RESOLVED,   /* compliant build on a tracked server */
	TES_CHANGE_SEEN,       /* last_seen, build and sources updated */
	TES_CHANGE_INVALID,    /* fqdn empty or too long (*out untouched) */
	TES_CHANGE_TRACKED,    /* new server, compliant: tracked without a clock */
};

/* The state transition for one sighting of a server at time now: old is the
 * stored state or NULL; tenant_id and fqdn name the server when old is NULL
 * (otherwise old's are kept).  A compliant build on an unknown server is
 * TRACKED (no clock); a vulnerable one on a server compliant since first
 * seen is a FIRST detection.  A vulnerable sighting older than the
 * resolution it follows is stale and ignored, so sightings that arrive out
 * of order cannot restart a clock.  A server Stale at now is seen again: the
 * stale period ends (its length goes into stale_seconds) and the clock
 * resumes where it stood.  The source's seen time is updated.  *out may be
 * old. */
enum tes_change tes_server_observe(const struct tes_server *old, uint32_t tenant_id,
				   const char *fqdn, const struct tes_tenant *t,
				   const struct tes_policy *p, const struct tes_detection *d,
				   const struct tes_addr *src, int64_t now, struct tes_server *out);

/* ---- the decision ---- */

enum tes_action {
	TES_ACCEPT = 0,
	TES_THROTTLE, /* 450 4.7.230 */
	TES_BLOCK,    /* 550 5.7.230 */
	TES_DROP,     /* silent drop; the 550 reply is filled in as a fallback */
};

enum tes_reason {
	TES_REASON_NOT_EXCHANGE = 0, /* no on-premises Exchange server seen */
	TES_REASON_COMPLIANT,        /* this message's build is compliant */
	TES_REASON_UNKNOWN_SERVER,   /* no build on this message, no state */
	TES_REASON_RESOLVED,         /* no build on this message, server resolved */
	TES_REASON_OUT_OF_SCOPE,     /* connectors-only scope, not over one */
	TES_REASON_PAUSED,           /* the tenant is paused */
	TES_REASON_REPORT_ONLY,      /* the stage neither throttles nor blocks */
	TES_REASON_OUTSIDE_WINDOW,   /* after this hour's throttled minutes */
	TES_REASON_THROTTLE_WINDOW,
	TES_REASON_BLOCK_WINDOW,
	TES_REASON_STALE,         /* no build on this message, server Stale */
	TES_REASON_SHARED_SOURCE, /* the source carries servers that differ */
	TES_REASON_PROBE,         /* let through to its headers as a probe */
};

struct tes_verdict {
	enum tes_action action;
	enum tes_reason reason;
	uint8_t stage;   /* 1..8 when a stage clock applied, else 0 */
	uint8_t minutes; /* the n of the reply */
	uint16_t code;   /* 450 or 550; 0 for ACCEPT */
	char enhanced[8];
	/* The verdict stays the same for the same inputs until this time
	 * (exclusive): a cache may keep it that long.  INT64_MAX when only a
	 * change of state, tenant or policy can alter it. */
	int64_t until;
	char text[TES_REPLY_TEXT_MAX]; /* "" for ACCEPT */
};

/* Decide for one message (or, with d NULL or UNKNOWN, for a source at MAIL
 * FROM whose server is known from its state).
 *   s: the stored state of the detected server, or NULL when unknown;
 *   t: its tenant, or NULL;  src: the source address, or NULL;
 *   d: what the headers said, or NULL;
 *   via_connector: the caller already matched the message to one of the
 *     tenant's connectors (needed for certificate connectors, which only the
 *     TLS layer can check); address-only connectors are also matched here.
 * Order: not Exchange or compliant build -> ACCEPT; a vulnerable build on an
 * unknown or resolved server is a first detection (stage 1); outside scope ->
 * ACCEPT; paused -> ACCEPT; otherwise the stage's window: in the first
 * block_min minutes of the hour (after window_offset_min, local time) BLOCK,
 * in the next throttle_min THROTTLE, else ACCEPT.  DROP replaces BLOCK only
 * when the policy says drop and the stage blocks all 60 minutes.  Writes only
 * *out; allocates nothing. */
void tes_decide(const struct tes_server *s, const struct tes_tenant *t, const struct tes_policy *p,
		int64_t now, const struct tes_addr *src, const struct tes_detection *d,
		bool via_connector, struct tes_verdict *out);

/* ---- shared sources (MAIL FROM, before any header) ---- */

/* One server a source carried. */
struct tes_carried {
	const struct tes_server *s; /* NULL: not on record */
	const struct tes_tenant *t; /* its tenant, or NULL */
	int64_t seen;               /* when the source last carried it; 0: unknown */
};

/* Whether a server the source last carried at seen still counts: within
 * the policy's carried_days (an unknown time, 0, always counts). */
bool tes_carried_recent(int64_t seen, const struct tes_policy *p, int64_t now);

/* The MAIL FROM decision for a source that carried the n servers in c.
 * Only the recent ones count (tes_carried_recent); each is decided with
 * tes_decide (no detection).  When every one of them refuses with the same
 * kind (all THROTTLE, or all BLOCK/DROP) the result is that refusal with
 * the fewest minutes per hour (DROP only when all drop); otherwise ACCEPT,
 * reason SHARED_SOURCE when more than one server counted, so the message is
 * read to its headers and decided for the server they name.  No recent
 * server: ACCEPT, UNKNOWN_SERVER.  until: the earliest until of those
 * decided, or when a counted server stops counting.  Writes only *out. */
void tes_decide_carried(const struct tes_carried *c, unsigned n, const struct tes_policy *p,
			int64_t now, const struct tes_addr *src, bool via_connector,
			struct tes_verdict *out);

/* A full block: a refusal for every minute of the hour (the stage blocks all
 * 60), which is when a probe may let a transaction through. */
bool tes_verdict_full_block(const struct tes_verdict *v);

/* When the next probe of a server is due from a source that last carried it
 * (a message of it read to its headers) at seen: seen + probe_interval, or
 * INT64_MAX when the policy has no probe. */
int64_t tes_probe_due_at(const struct tes_policy *p, int64_t seen);

/* "450 4.7.230 <text>" (no CRLF); "" for ACCEPT.  Returns snprintf's count. */
int tes_verdict_reply(const struct tes_verdict *v, char *buf, size_t len);

const char *tes_action_name(enum tes_action a);
const char *tes_reason_name(enum tes_reason r);

/* ---- the report (tes-behaviour.md section 6) ---- */

struct tes_report {
	enum tes_status status;
	const char *status_text; /* tes_status_name(status) */
	unsigned stage;
	int64_t elapsed;        /* stage clock, seconds */
	int64_t paused_seconds; /* of the current clock */
	/* When the first throttling / blocking stage starts (or started).
	 * Future dates assume no further pause, but include the rest of an
	 * active one.  Exact for past dates too unless the tenant paused more
	 * than once since first detection; then earlier pauses are assumed to
	 * have come before the date. */
	bool has_throttle_date;
	int64_t throttle_enabled;
	bool has_block_date;
	int64_t blocking_enabled;
	/* The stage after the current one, if any (none once resolved). */
	bool has_next;
	unsigned next_stage;
	int64_t next_stage_start;
	unsigned next_throttle_min;
	unsigned next_block_min;
	/* Ageing: Stale since (or from) stale_at; forgotten at forget_at. */
	bool has_stale_at;
	int64_t stale_at;
	bool has_forget_at;
	int64_t forget_at;
	int64_t stale_seconds; /* of the current clock */
};

/* Dates that fall after the clock stopped for a Stale server cannot be
 * known and are left out (has_* false), as is the next stage.  Once a
 * server was Stale and came back, dates still to come include the stale
 * time and dates already passed are assumed to precede it. */
void tes_server_report(const struct tes_server *s, const struct tes_tenant *t,
		       const struct tes_policy *p, int64_t now, struct tes_report *out);

/* The calendar year of t at the given UTC offset in minutes. */
int tes_civil_year(int64_t t, int utc_offset_min);

/* ISO 8601 in local time: "2024-05-06T17:30:00+05:30", "...Z" at UTC. */
int tes_time_format(int64_t t, int utc_offset_min, char *buf, size_t len);

#endif
