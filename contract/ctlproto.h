/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The control protocol between tesgate (a gateway) and tescontrol: the one
 * definition both processes compile.  docs/control-protocol.md describes it
 * for people; this header is what the code agrees on.
 *
 * Framing (shared with the admin protocol, contract/adminproto.h): a 4-byte
 * big-endian payload length, then that many octets of UTF-8 JSON holding one
 * object.  Every object carries "v" (CTL_PROTO_VERSION) and, on this
 * protocol, "type".  A payload is at most CTL_FRAME_MAX octets; a peer that
 * announces more, sends something that is not a JSON object, or speaks
 * another version is disconnected.
 *
 * Strings in messages are UTF-8 (jansson refuses anything else): an encoder
 * given a string that is not leaves the member out, and the receiver then
 * rejects the message, so senders check names they took off the wire.
 *
 * Threads: nothing here keeps global state.  A struct ctl_decoder belongs to
 * one thread at a time (one per connection); the codecs are reentrant.  The
 * json_t values returned are new references owned by the caller; jansson's
 * reference counts are not atomic, so a json_t is used by one thread at a
 * time.
 */
#ifndef TES_CONTRACT_CTLPROTO_H
#define TES_CONTRACT_CTLPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "enforce/catalog.h"
#include "enforce/decide.h"
#include "enforce/policy.h"

/* The protocol version both peers must send in "v".  Adding an optional
 * field keeps it; anything an older peer would misread bumps it (see the
 * version rules in docs/control-protocol.md). */
#define CTL_PROTO_VERSION 1

/* Largest payload (the JSON text, without the 4-byte length) either side
 * accepts or sends: 1 MiB.  It bounds each connection's input buffer, and it
 * is why a catalog (sent as text) must stay under it: the shipped one is
 * about 20 KiB. */
#define CTL_FRAME_MAX (1024u * 1024u)
#define CTL_FRAME_HDR 4

/* Message types, the value of "type". */
#define CTL_T_HELLO "hello"           /* gw -> ctl, first frame */
#define CTL_T_SIGHTING "sighting"     /* gw -> ctl */
#define CTL_T_COUNTERS "counters"     /* gw -> ctl */
#define CTL_T_SYNC_BEGIN "sync-begin" /* ctl -> gw: a full state follows */
#define CTL_T_SYNC_END "sync-end"     /* ctl -> gw: the full state is complete */
#define CTL_T_TENANT "tenant"         /* ctl -> gw: add or replace a tenant */
#define CTL_T_SERVER "server"         /* ctl -> gw: add or replace a server */
#define CTL_T_DELETE "delete"         /* ctl -> gw: forget a tenant or server */
#define CTL_T_POLICY "policy"         /* ctl -> gw: the policy in force */
#define CTL_T_CATALOG "catalog"       /* ctl -> gw: the catalog in force */
#define CTL_T_CLOCK "clock"           /* ctl -> gw: tescontrol's clock (test clock moves) */
#define CTL_T_ACK "ack"               /* ctl -> gw: a sighting was processed */
#define CTL_T_ERROR "error"           /* either way, just before a disconnect */

/* ---- errors ----
 * Every function below that can fail returns -1 (or NULL) and writes one
 * line into its last two parameters, char *err and size_t errlen (err may
 * be NULL with errlen 0): docs/development.md, "Errors".  CTL_ERR_MAX is
 * enough for any of them. */
#define CTL_ERR_MAX 256

/* ---- framing ---- */

/* An incremental decoder: bytes in (any split), frames out.  It holds at most
 * one frame: CTL_FRAME_HDR + max_frame octets, allocated as they arrive. */
struct ctl_decoder {
	uint8_t *buf;
	size_t len; /* octets buffered */
	size_t cap; /* allocated */
	size_t max_frame;
	bool failed; /* sticky: after an error the stream is unusable */
	char err[CTL_ERR_MAX];
};

enum ctl_rc {
	CTL_FRAME = 0, /* *out holds a frame */
	CTL_MORE,      /* need more bytes */
	CTL_ERROR,     /* the stream is bad; see the decoder's err */
};

/* max_frame 0 means CTL_FRAME_MAX. */
void ctl_decoder_init(struct ctl_decoder *d, size_t max_frame);
void ctl_decoder_free(struct ctl_decoder *d);

/* Take bytes from data; returns how many were taken (fewer than len once a
 * whole frame is buffered: call ctl_decoder_next, then feed the rest).
 * Returns 0 after an error or on allocation failure (then failed is set). */
size_t ctl_decoder_feed(struct ctl_decoder *d, const void *data, size_t len);

/* The next whole frame, parsed: a JSON object whose "v" is
 * CTL_PROTO_VERSION.  Rejects an announced length over max_frame as soon as
 * the 4 length octets are in, and invalid UTF-8/JSON, non-objects, a missing
 * or non-integer "v" and other versions once the payload is complete. */
enum ctl_rc ctl_decoder_next(struct ctl_decoder *d, json_t **out);

/* The peer closed: an error (and a message) if part of a frame is buffered. */
enum ctl_rc ctl_decoder_eof(struct ctl_decoder *d);

/* Add "v" to obj and serialise it as one frame into a malloc'd buffer.
 * Returns 0, or -1 with err (too large for CTL_FRAME_MAX, or no memory). */
int ctl_frame_encode(json_t *obj, uint8_t **out, size_t *out_len, char *err, size_t errlen);

/* "type" of a decoded frame, or NULL when absent or not a string. */
const char *ctl_msg_type(const json_t *msg);

/* A new object {"type": type}; the encoders below add to it. */
json_t *ctl_msg_new(const char *type);

/* "gen" (optional): tescontrol's state generation, on every state message it
 * broadcasts and on sync-end.  It grows by one per broadcast and starts, when
 * tescontrol starts, from the wall clock in microseconds, so it keeps growing
 * across restarts.  A gateway shows the last one it applied
 * (tes_control_generation), and tescontrol its own (tesctl status): when the
 * two are equal, the gateway decides from everything tescontrol has said. */
void ctl_msg_set_gen(json_t *msg, uint64_t gen);
/* The message's "gen"; false when it has none (or not a positive integer). */
bool ctl_msg_gen(const json_t *msg, uint64_t *gen);

/* ---- value codecs (used in messages of both protocols) ---- */

/* Connectors as {"range": "198.51.100.0/24", "cert": "name"} ("cert"
 * omitted when empty). */
json_t *ctl_connector_to_json(const struct tes_connector *c);
int ctl_connector_from_json(const json_t *j, struct tes_connector *out, char *err, size_t errlen);

/* {"id","name","connectors":[...],"pause":{"start","end","paused_before",
 * "year","days_used"}}.  from_json fills all of *out or returns -1. */
json_t *ctl_tenant_to_json(const struct tes_tenant *t);
int ctl_tenant_from_json(const json_t *j, struct tes_tenant *out, char *err, size_t errlen);

/* {"tenant","fqdn","build","family","resolved","first_detected",
 * "last_seen","resolved_at","pause_base","sources":[...]}.  Times are
 * integer seconds since the Unix epoch (UTC). */
json_t *ctl_server_to_json(const struct tes_server *s);
int ctl_server_from_json(const json_t *j, struct tes_server *out, char *err, size_t errlen);

/* ---- messages ---- */

/* hello: the first frame a gateway sends. */
struct ctl_hello {
	char gateway[64]; /* the gateway's id, for logs and status */
	char version[32]; /* its software version */
};
json_t *ctl_hello_to_json(const struct ctl_hello *h);
int ctl_hello_from_json(const json_t *j, struct ctl_hello *out, char *err, size_t errlen);

/* sighting: one detection of an on-premises Exchange server.  tenant 0 is
 * "no tenant" (mail that came over none of the connectors, which only counts
 * under the scope "all").  cls is the gateway's classification; tescontrol
 * classifies the build again with its own catalog, which wins.  seq, when
 * non-zero, comes back in the ack. */
struct ctl_sighting {
	uint64_t seq;
	uint32_t tenant_id;
	char fqdn[TES_FQDN_MAX];
	struct ex_build build;
	enum ex_family family;
	enum tes_build_class cls; /* COMPLIANT or VULNERABLE */
	struct tes_addr source;   /* family NONE when unknown */
	int64_t time;             /* when the message was seen; 0: unknown */
	/* Messages this sighting stands for ("count", optional, 1 when
	 * absent; 0 here means 1): a gateway coalesces identical sightings
	 * within a second (gateway/sightcoal.h), and time is then the latest. */
	uint32_t count;
};
json_t *ctl_sighting_to_json(const struct ctl_sighting *s);
int ctl_sighting_from_json(const json_t *j, struct ctl_sighting *out, char *err, size_t errlen);

/* "vulnerable" / "compliant" (other classes have no sighting). */
const char *ctl_class_name(enum tes_build_class c);

/* counters: {"type":"counters","counters":{"name": non-negative integer}}.
 * Counter names are the gateway's; tescontrol shows the latest set in
 * status.  Takes a reference to counters. */
json_t *ctl_counters_to_json(json_t *counters);
int ctl_counters_from_json(const json_t *j, json_t **counters, char *err, size_t errlen);

/* counters' optional "servers" (since issue 19): the messages the gateway
 * refused per server since its previous counters message, as deltas:
 * [{"tenant":7,"fqdn":"EX1.bear.local","throttled":3,"refused":1}].  A
 * receiver of the first release ignores the member.  At most
 * CTL_SERVER_COUNTS_MAX entries per message (the rest wait for the next). */
#define CTL_SERVER_COUNTS_MAX 1024
struct ctl_server_count {
	uint32_t tenant_id; /* 0: mail over no connector */
	char fqdn[TES_FQDN_MAX];
	uint64_t throttled; /* 450 4.7.230 (throttle windows) */
	uint64_t refused;   /* 550 5.7.230, or the connection dropped (block) */
};
/* Add the n entries of c (n <= CTL_SERVER_COUNTS_MAX) to a counters
 * message.  0, or -1 (no memory). */
int ctl_counters_add_servers(json_t *msg, const struct ctl_server_count *c, size_t n);
/* Call cb for every entry of msg's "servers" (none when absent).  0, the
 * first non-zero cb, or -1 with err when the member is not a list of at
 * most CTL_SERVER_COUNTS_MAX valid entries (then cb was not called). */
typedef int (*ctl_server_count_cb)(const struct ctl_server_count *c, void *ctx);
int ctl_server_counts_from_json(const json_t *msg, ctl_server_count_cb cb, void *ctx, char *err,
				size_t errlen);

/* sync-begin: a full state follows; replaces whatever the gateway had once
 * sync-end arrives.  now is tescontrol's clock, test_clock whether it is a
 * test clock (a gateway may follow it only when it runs with one too). */
json_t *ctl_sync_begin_to_json(int64_t now, bool test_clock, uint64_t ntenants, uint64_t nservers);
json_t *ctl_sync_end_to_json(void);

/* server and tenant messages: the value plus advisory fields ("stage",
 * "status" as tescontrol sees them at "at"); the gateway decides with its own
 * clock and the model, so these are for logs and tests. */
json_t *ctl_server_msg(const struct tes_server *s, unsigned stage, enum tes_status status,
		       int64_t at);
json_t *ctl_tenant_msg(const struct tes_tenant *t);
/* The receiving side of the two above: the value inside the message. */
int ctl_server_msg_from_json(const json_t *msg, struct tes_server *out, char *err, size_t errlen);
int ctl_tenant_msg_from_json(const json_t *msg, struct tes_tenant *out, char *err, size_t errlen);

/* delete: {"what":"server","tenant":N,"fqdn":...} or {"what":"tenant","tenant":N}. */
json_t *ctl_delete_server_msg(uint32_t tenant_id, const char *fqdn);
json_t *ctl_delete_tenant_msg(uint32_t tenant_id);
struct ctl_delete {
	bool server; /* else tenant */
	uint32_t tenant_id;
	char fqdn[TES_FQDN_MAX];
};
int ctl_delete_from_json(const json_t *j, struct ctl_delete *out, char *err, size_t errlen);

/* policy: {"version": "...", "name": "policy.conf", "text": "..."}.  The
 * text is the file format of enforce/policy.h, parsed on arrival with
 * tes_policy_parse; a policy that does not parse changes nothing. */
json_t *ctl_policy_msg(const char *text, const char *name, const char *version);
int ctl_policy_from_json(const json_t *j, struct tes_policy *out, char *err, size_t errlen);

/* catalog: the two files' text, {"version", "builds_name", "builds",
 * "compliance_name", "compliance"}: the receiver needs no access to
 * tescontrol's files and uses exactly the data tescontrol validated.
 * from_json returns a new catalog (catalog_free it) or NULL with err. */
json_t *ctl_catalog_msg(const char *builds, const char *builds_name, const char *compliance,
			const char *compliance_name, const char *version);
struct catalog *ctl_catalog_from_json(const json_t *j, char *err, size_t errlen);

json_t *ctl_clock_msg(int64_t now, bool test_clock);
/* now and test_clock of a clock or sync-begin message. */
int ctl_clock_from_json(const json_t *msg, int64_t *now, bool *test_clock, char *err,
			size_t errlen);

/* ack of a sighting: {"seq": N, "ok": true, "change": "first"} or with
 * "ok": false and "error".  Sent after any first detection, re-detection or
 * resolution it caused is durable. */
json_t *ctl_ack_msg(uint64_t seq, bool ok, const char *change, const char *error);
struct ctl_ack {
	uint64_t seq;
	bool ok;
	char change[16];
	char error[256]; /* "" when ok */
};
int ctl_ack_from_json(const json_t *msg, struct ctl_ack *out, char *err, size_t errlen);

json_t *ctl_error_msg(const char *message);

/* "none", "first", "redetected", "resolved", "seen", "invalid". */
const char *ctl_change_name(enum tes_change c);

/* ---- small helpers both sides use when reading messages ---- */

/* Integer member in [lo, hi]; -1 with err naming key otherwise. */
int ctl_get_int(const json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err,
		size_t errlen);
/* String member; -1 with err if missing or not a string. */
int ctl_get_str(const json_t *obj, const char *key, const char **out, char *err, size_t errlen);
/* Copy a string member into buf (NUL-terminated); -1 if missing, not a
 * string, longer than len - 1 octets or holding a NUL. */
int ctl_get_strbuf(const json_t *obj, const char *key, char *buf, size_t len, char *err,
		   size_t errlen);

/* "198.51.100.0/24" for a connector's range. */
int ctl_connector_range_format(const struct tes_connector *c, char *buf, size_t len);

#endif
