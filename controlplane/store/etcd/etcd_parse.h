/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What libtesetcd reads from the network, kept apart from the transport so
 * the unit tests and the fuzzer (tests/fuzz/fuzz_etcd.c) reach it without a
 * server: base64, etcd's 64-bit numbers-as-strings, the answers of each call,
 * and the splitter that cuts a watch stream into its JSON objects.
 *
 * Every parser treats its input as hostile: types are checked, numbers are
 * parsed strictly (decimal, no sign on unsigned fields, no leading zeros or
 * spaces, no overflow), base64 strictly (standard alphabet, padding, no
 * stray bytes), and sizes are bounded by the caller's caps.  On failure the
 * output is left empty (nothing to free) and err says which field.
 * Pure functions; no global state; any thread.
 */
#ifndef TES_ETCD_ETCD_PARSE_H
#define TES_ETCD_ETCD_PARSE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "etcd.h"

/* --- base64 (RFC 4648 standard alphabet, padded, as Go's encoding/json) --- */

/* malloc'd, NUL-terminated; NULL on allocation failure. */
char *etcd_b64_encode(const void *p, size_t n);
/* *out is malloc'd with n decoded bytes and a NUL after them; -1 on
 * anything but canonical padded base64. */
int etcd_b64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen);

/* --- numbers ------------------------------------------------------------ */

/* A decimal integer, strictly: optional '-', digits, no leading zero, in
 * range. */
int etcd_parse_i64_text(const char *s, size_t len, int64_t *out);
int etcd_parse_u64_text(const char *s, size_t len, uint64_t *out);
/* A proto3 JSON int64: a string as above (what etcd sends) or a JSON
 * integer.  NULL (absent) gives 0. */
int etcd_json_i64(const json_t *v, int64_t *out);
int etcd_json_u64(const json_t *v, uint64_t *out);

/* --- answers ------------------------------------------------------------ */

/* etcd's error answer: {"error":"..","message":"..","code":N} (unary) or
 * {"error":{"grpc_code":N,"message":".."}} (streams). */
struct etcd_rpc_error {
	int code; /* gRPC status code */
	char message[256];
};
/* 1 and *e filled if root is an error answer, else 0. */
int etcd_parse_error(const json_t *root, struct etcd_rpc_error *e);

int etcd_parse_header(const json_t *o, struct etcd_header *h, char *err, size_t errlen);
int etcd_parse_kv(const json_t *o, struct etcd_kv *kv, char *err, size_t errlen);

int etcd_parse_range(const json_t *root, struct etcd_range_result *out, char *err, size_t errlen);
int etcd_parse_put(const json_t *root, struct etcd_put_result *out, char *err, size_t errlen);
int etcd_parse_delete(const json_t *root, struct etcd_delete_result *out, char *err, size_t errlen);
int etcd_parse_txn(const json_t *root, struct etcd_txn_result *out, char *err, size_t errlen);
int etcd_parse_lease_grant(const json_t *root, int64_t *id, int64_t *ttl, char *err, size_t errlen);
/* The keepalive answer comes wrapped as a stream message {"result":{..}}. */
int etcd_parse_lease_keepalive(const json_t *root, int64_t *id, int64_t *ttl, char *err,
			       size_t errlen);
/* Only the header is checked (revoke, compaction). */
int etcd_parse_empty(const json_t *root, struct etcd_header *h, char *err, size_t errlen);
/* *token: malloc'd; printable ASCII only (it goes into an HTTP header),
 * at most 4096 bytes. */
int etcd_parse_auth(const json_t *root, char **token, char *err, size_t errlen);

/* One message of a watch stream. */
struct etcd_watch_response {
	struct etcd_header header;
	int64_t watch_id;
	bool created;
	bool canceled;
	bool fragment;
	int64_t compact_revision;
	char cancel_reason[256];
	struct etcd_event *events;
	size_t nevents;
};
/* 0: a result (*out filled; free it); 1: an error message (*e filled);
 * -1: malformed. */
int etcd_parse_watch_response(const json_t *root, struct etcd_watch_response *out,
			      struct etcd_rpc_error *e, char *err, size_t errlen);
void etcd_watch_response_free(struct etcd_watch_response *r);
void etcd_event_free(struct etcd_event *ev);

/* --- the watch stream ---------------------------------------------------- */

/* Cuts a byte stream into top-level JSON objects ("{...}" with anything
 * between them but whitespace refused), incrementally: bytes are fed as they
 * arrive, each complete object is handed to the callback once, and only the
 * unfinished object is kept, at most max bytes of it.  Nesting deeper than
 * ETCD_STREAM_MAX_DEPTH is refused.  The object's syntax inside is left to
 * the JSON parser. */
#define ETCD_STREAM_MAX_DEPTH 64
struct etcd_stream {
	char *buf;
	size_t len;   /* bytes held (the unfinished object) */
	size_t alloc; /* bytes allocated */
	size_t max;
	size_t scan; /* bytes of buf already scanned */
	int depth;
	bool in_str;
	bool esc;
	uint64_t objects; /* handed over so far */
	bool too_big;     /* the error is an object over max */
	char err[160];
};
/* cb returns 0 to go on; anything else stops etcd_stream_feed, which
 * returns it. */
typedef int (*etcd_stream_cb)(const char *obj, size_t len, void *ctx);

void etcd_stream_init(struct etcd_stream *s, size_t max);
/* Forget the unfinished object and the scanner state (a new connection). */
void etcd_stream_reset(struct etcd_stream *s);
void etcd_stream_free(struct etcd_stream *s);
/* 0; -1 with s->err (garbage between objects, an object over max, too deep,
 * out of memory): the stream is unusable until reset; or cb's value. */
int etcd_stream_feed(struct etcd_stream *s, const void *data, size_t n, etcd_stream_cb cb,
		     void *ctx);

/* Printable, bounded rendering of a key for messages: at most max bytes of
 * the key, non-printable bytes as \xNN, "..." when cut. */
void etcd_key_text(const void *key, size_t len, char *out, size_t outlen);

#endif
