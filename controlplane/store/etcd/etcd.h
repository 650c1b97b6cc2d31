/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libtesetcd: an etcd v3 client over etcd's JSON gateway (HTTP POST to
 * /v3/..., libcurl and jansson).  It is the transport the fleet store stands
 * on; it knows nothing of tesgate's data.  docs/fleet.md describes it.
 *
 * Threads.  A struct etcd_client is used by one thread at a time; it has no
 * internal locking and its calls block, each for a bounded time (see
 * etcd_config).  A struct etcd_watch is independent of the client it was made
 * from (it copies the configuration and the current token), so it may be
 * handed to another thread, but it too is used by one thread at a time.  The
 * watch never blocks: it runs on curl's multi interface behind one file
 * descriptor (etcd_watch_fd) that an event loop polls, and its callback runs
 * inside etcd_watch_process() on the caller's thread.  Different clients and
 * watches are independent.  The library calls curl_global_init once
 * (pthread_once) and never curl_global_cleanup.  Transfers use CURLOPT_NOSIGNAL:
 * no signal handler is installed and no alarm() is used; SIGPIPE is avoided
 * by curl's MSG_NOSIGNAL.
 *
 * Errors.  Every call that can fail takes the caller's buffer (char *err,
 * size_t errlen), returns 0 on success and -1 on failure with a message that
 * names the call, the key and the endpoint(s), e.g.
 *   etcd put key '/t/a' at http://127.0.0.1:2379: etcdserver: permission denied
 * etcd_client_errkind() then says what kind of failure it was, which is what a
 * caller branches on.  A compare that fails in a transaction is not an error.
 *
 * Keys and values are byte strings (pointer and length); results hold
 * malloc'd copies that are also NUL-terminated for convenience.  64-bit
 * numbers (revisions, lease IDs) are int64_t.
 */
#ifndef TES_ETCD_ETCD_H
#define TES_ETCD_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ETCD_MAX_ENDPOINTS 16

/* Defaults, applied where etcd_config leaves a field 0. */
#define ETCD_DEFAULT_TIMEOUT_MS 5000
#define ETCD_DEFAULT_CONNECT_TIMEOUT_MS 2000
#define ETCD_DEFAULT_MAX_RESPONSE (16u << 20)
#define ETCD_DEFAULT_WATCH_MAX_BATCH (8u << 20)
#define ETCD_DEFAULT_WATCH_KEEPALIVE_S 10

struct etcd_config {
	/* Client URLs, http:// or https://, e.g. "http://127.0.0.1:2379"; at
	 * least one, at most ETCD_MAX_ENDPOINTS.  Copied. */
	const char *const *endpoints;
	size_t nendpoints;
	/* One request to one endpoint, connection included.  A call tries each
	 * endpoint at most once (twice when it re-authenticates), so it returns
	 * within about nendpoints * 2 * timeout_ms. */
	int timeout_ms;
	int connect_timeout_ms; /* at most timeout_ms */
	/* The largest response body accepted (a range of many keys: paginate). */
	size_t max_response;
	/* TLS for https:// endpoints.  The peer is verified against ca_file (or
	 * the system's CAs when NULL), host name included, unless
	 * tls_no_verify (tests only).  cert_file/key_file: a client
	 * certificate, for etcd's --client-cert-auth (the gateway does not map
	 * its common name to an etcd user: use username/password for that). */
	const char *ca_file;
	const char *cert_file;
	const char *key_file;
	bool tls_no_verify;
	/* etcd authentication: both or neither.  The token from
	 * /v3/auth/authenticate goes in the Authorization header; a call that
	 * meets an invalid or expired token authenticates again once and
	 * retries. */
	const char *username;
	const char *password;
	/* Watches: the largest single response (one batch of events) accepted,
	 * and TCP keepalive idle seconds on the stream's connection (a member
	 * that vanished without closing is noticed after about 3 times that). */
	size_t watch_max_batch;
	int watch_keepalive_s;
};

/* What kind of failure the last failed call was. */
enum etcd_errkind {
	ETCD_OK = 0,
	/* No endpoint gave an answer (connection refused, timeout before the
	 * request was sent, no leader, not an etcd): nothing was applied. */
	ETCD_ERR_UNAVAILABLE,
	/* A write was sent but its answer was lost (timeout, connection cut,
	 * etcd's own "request timed out"): it may or may not have been applied.
	 * Read the key to find out; the call is not retried blindly. */
	ETCD_ERR_UNKNOWN_OUTCOME,
	/* etcd refused the request (invalid argument, permission denied, too
	 * large, ...): retrying will not help. */
	ETCD_ERR_REFUSED,
	/* Authentication failed (wrong user or password, auth enabled on the
	 * cluster but no user configured). */
	ETCD_ERR_AUTH,
	/* The lease (keepalive, revoke) does not exist: expired or revoked. */
	ETCD_ERR_NOT_FOUND,
	/* The requested revision has been compacted away. */
	ETCD_ERR_COMPACTED,
	/* The answer was not a well-formed etcd answer (garbage, too large). */
	ETCD_ERR_PROTOCOL,
	/* The caller's arguments were invalid; nothing was sent. */
	ETCD_ERR_USAGE,
};

const char *etcd_errkind_name(enum etcd_errkind k);

/* A response header. */
struct etcd_header {
	uint64_t cluster_id;
	uint64_t member_id;
	int64_t revision;
	int64_t raft_term;
};

struct etcd_kv {
	uint8_t *key; /* key_len bytes, then a NUL */
	size_t key_len;
	uint8_t *value; /* value_len bytes, then a NUL (never NULL) */
	size_t value_len;
	int64_t create_revision;
	int64_t mod_revision;
	int64_t version;
	int64_t lease;
};

/* The range_end that selects every key starting with prefix: the prefix with
 * its last byte below 0xff incremented and what follows it dropped; "\0" (all
 * keys from the start key) when the prefix is empty or all 0xff.  out needs
 * len bytes (at least 1); returns the length written. */
size_t etcd_prefix_end(const void *prefix, size_t len, uint8_t *out);

struct etcd_client;

struct etcd_client *etcd_client_new(const struct etcd_config *cfg, char *err, size_t errlen);
void etcd_client_free(struct etcd_client *c);

/* The kind of the last failed call (ETCD_OK after a success). */
enum etcd_errkind etcd_client_errkind(const struct etcd_client *c);
/* The gRPC status code etcd gave in the last failed call, or 0. */
int etcd_client_grpc_code(const struct etcd_client *c);
/* The endpoint the next call tries first. */
const char *etcd_client_endpoint(const struct etcd_client *c);

struct etcd_stats {
	uint64_t requests;      /* HTTP requests sent (attempts, not calls) */
	uint64_t failovers;     /* calls that moved on to another endpoint */
	uint64_t authenticates; /* successful /v3/auth/authenticate calls */
};
void etcd_client_stats(const struct etcd_client *c, struct etcd_stats *out);

/* Authenticate now (calls do it on their own when needed). */
int etcd_authenticate(struct etcd_client *c, char *err, size_t errlen);

/* --- KV ---------------------------------------------------------------- */

struct etcd_range_opts {
	/* [key, range_end) when range_end_len > 0; every key with key as prefix
	 * when prefix; else the key alone. */
	const void *range_end;
	size_t range_end_len;
	bool prefix;
	int64_t limit;     /* 0: no limit */
	int64_t revision;  /* 0: the newest */
	bool serializable; /* answer from the member's local state (may be stale) */
	bool keys_only;
	bool count_only;
};

struct etcd_range_result {
	struct etcd_header header;
	struct etcd_kv *kvs; /* in key order */
	size_t nkvs;
	bool more;     /* limit cut the answer short */
	int64_t count; /* keys in the whole range */
};
void etcd_range_result_free(struct etcd_range_result *r);

int etcd_range(struct etcd_client *c, const void *key, size_t key_len,
	       const struct etcd_range_opts *o, struct etcd_range_result *out, char *err,
	       size_t errlen);

/* Every key of the range, page by page (o->limit keys per request; 0: 1000),
 * all pages read at the revision of the first (or o->revision), so the
 * caller sees one consistent snapshot even if the range changes meanwhile.
 * cb returns 0 to go on, anything else to stop (returned as is).  *header
 * (NULL: not wanted) gets the first page's header: a watch started at
 * header->revision + 1 misses nothing.  ETCD_ERR_COMPACTED if that revision
 * is compacted before the last page: start again. */
typedef int (*etcd_kv_cb)(const struct etcd_kv *kv, void *ctx);
int etcd_range_each(struct etcd_client *c, const void *key, size_t key_len,
		    const struct etcd_range_opts *o, etcd_kv_cb cb, void *ctx,
		    struct etcd_header *header, char *err, size_t errlen);

struct etcd_put_opts {
	int64_t lease; /* 0: none */
	bool prev_kv;
};
struct etcd_put_result {
	struct etcd_header header;
	bool has_prev;
	struct etcd_kv prev_kv;
};
void etcd_put_result_free(struct etcd_put_result *r);

/* out may be NULL. */
int etcd_put(struct etcd_client *c, const void *key, size_t key_len, const void *value,
	     size_t value_len, const struct etcd_put_opts *o, struct etcd_put_result *out,
	     char *err, size_t errlen);

struct etcd_delete_opts {
	const void *range_end;
	size_t range_end_len;
	bool prefix;
	bool prev_kv;
};
struct etcd_delete_result {
	struct etcd_header header;
	int64_t deleted;
	struct etcd_kv *prev_kvs;
	size_t nprev;
};
void etcd_delete_result_free(struct etcd_delete_result *r);

/* out may be NULL. */
int etcd_delete(struct etcd_client *c, const void *key, size_t key_len,
		const struct etcd_delete_opts *o, struct etcd_delete_result *out, char *err,
		size_t errlen);

/* --- transactions ------------------------------------------------------ */

enum etcd_cmp_target {
	ETCD_CMP_VERSION,
	ETCD_CMP_CREATE, /* create_revision; 0 when the key does not exist */
	ETCD_CMP_MOD,    /* mod_revision */
	ETCD_CMP_VALUE,
	ETCD_CMP_LEASE,
};
enum etcd_cmp_result {
	ETCD_CMP_EQUAL,
	ETCD_CMP_GREATER,
	ETCD_CMP_LESS,
	ETCD_CMP_NOT_EQUAL,
};
struct etcd_compare {
	enum etcd_cmp_target target;
	enum etcd_cmp_result result;
	const void *key;
	size_t key_len;
	int64_t number;    /* VERSION, CREATE, MOD, LEASE */
	const void *value; /* VALUE */
	size_t value_len;
};

enum etcd_op_type {
	ETCD_OP_RANGE,
	ETCD_OP_PUT,
	ETCD_OP_DELETE,
};
struct etcd_op {
	enum etcd_op_type type;
	const void *key;
	size_t key_len;
	const void *value; /* PUT */
	size_t value_len;
	int64_t lease;         /* PUT */
	const void *range_end; /* RANGE, DELETE; or prefix */
	size_t range_end_len;
	bool prefix;
	int64_t limit; /* RANGE */
	bool prev_kv;  /* PUT, DELETE */
};

/* One response of the branch that ran, in the order of its operations. */
struct etcd_op_result {
	enum etcd_op_type type;
	int64_t revision;
	/* RANGE: the keys found; PUT: the previous value (prev_kv, 0 or 1);
	 * DELETE: the deleted keys (prev_kv). */
	struct etcd_kv *kvs;
	size_t nkvs;
	bool more;       /* RANGE */
	int64_t count;   /* RANGE */
	int64_t deleted; /* DELETE */
};

struct etcd_txn_result {
	struct etcd_header header;
	bool succeeded; /* every compare held: the success branch ran */
	struct etcd_op_result *responses;
	size_t nresponses;
};
void etcd_txn_result_free(struct etcd_txn_result *r);

/* At most 128 compares and 128 operations per branch (etcd's default
 * --max-txn-ops). */
int etcd_txn(struct etcd_client *c, const struct etcd_compare *cmp, size_t ncmp,
	     const struct etcd_op *success, size_t nsuccess, const struct etcd_op *failure,
	     size_t nfailure, struct etcd_txn_result *out, char *err, size_t errlen);

/* Create if absent, in one round trip: a transaction comparing the key's
 * create_revision with 0, putting on success and reading on failure.
 * Returns 1 if this call created the key (*revision: its revision), 0 if the
 * key existed (*existing, if not NULL, gets what is there: free with
 * etcd_kv_free), -1 on error. */
int etcd_create(struct etcd_client *c, const void *key, size_t key_len, const void *value,
		size_t value_len, int64_t lease, int64_t *revision, struct etcd_kv *existing,
		char *err, size_t errlen);

void etcd_kv_free(struct etcd_kv *kv);

/* --- leases and compaction --------------------------------------------- */

/* id 0: etcd picks one.  *id_out and *ttl_out (either may be NULL). */
int etcd_lease_grant(struct etcd_client *c, int64_t ttl_s, int64_t id, int64_t *id_out,
		     int64_t *ttl_out, char *err, size_t errlen);
/* One keepalive; *ttl_out gets the renewed TTL.  ETCD_ERR_NOT_FOUND when the
 * lease has expired or was revoked. */
int etcd_lease_keepalive(struct etcd_client *c, int64_t id, int64_t *ttl_out, char *err,
			 size_t errlen);
int etcd_lease_revoke(struct etcd_client *c, int64_t id, char *err, size_t errlen);

/* Compact the key-value history up to revision (physical: wait until the
 * space is reclaimed). */
int etcd_compact(struct etcd_client *c, int64_t revision, bool physical, char *err, size_t errlen);

/* --- watch ------------------------------------------------------------- */

enum etcd_event_type {
	ETCD_EVENT_PUT,
	ETCD_EVENT_DELETE,
};
struct etcd_event {
	enum etcd_event_type type;
	struct etcd_kv kv; /* DELETE: key and mod_revision only */
	bool has_prev;
	struct etcd_kv prev_kv;
};

enum etcd_watch_kind {
	/* The stream is attached to endpoint; events from next_revision on
	 * follow.  Also after each reconnection. */
	ETCD_WATCH_CREATED,
	/* events, in revision order, each revision once across reconnections */
	ETCD_WATCH_EVENTS,
	/* No events but every change up to revision has been delivered. */
	ETCD_WATCH_PROGRESS,
	/* The stream to endpoint is gone (message says why); the watch retries
	 * the next endpoint from next_revision by itself. */
	ETCD_WATCH_DISCONNECTED,
	/* Revisions before compact_revision are gone and events may have been
	 * missed: the watch stopped.  Re-read the range and watch again from
	 * that read's revision + 1. */
	ETCD_WATCH_COMPACTED,
	/* etcd refused the watch for good (permission denied, wrong
	 * password): the watch stopped; message says why. */
	ETCD_WATCH_FAILED,
};

struct etcd_watch_update {
	enum etcd_watch_kind kind;
	const char *endpoint;
	int64_t revision; /* the response header's revision (0: none) */
	const struct etcd_event *events;
	size_t nevents;
	int64_t compact_revision; /* COMPACTED */
	const char *message;      /* DISCONNECTED, FAILED */
};

/* Runs inside etcd_watch_process(); it must not call etcd_watch_process or
 * etcd_watch_free on the same watch (note what to do and do it after
 * etcd_watch_process returns).  Everything in *u is valid during the call
 * only. */
typedef void (*etcd_watch_cb)(const struct etcd_watch_update *u, void *ctx);

struct etcd_watch_opts {
	const void *key;
	size_t key_len;
	const void *range_end;
	size_t range_end_len;
	bool prefix;
	int64_t start_revision; /* 0: from now on */
	bool prev_kv;
	bool progress_notify; /* ask etcd for periodic ETCD_WATCH_PROGRESS */
};

struct etcd_watch;

/* Starts connecting at once (to the client's current endpoint); nothing
 * blocks.  Uses the client's configuration and its current token. */
struct etcd_watch *etcd_watch_new(struct etcd_client *c, const struct etcd_watch_opts *o,
				  etcd_watch_cb cb, void *ctx, char *err, size_t errlen);
void etcd_watch_free(struct etcd_watch *w);

/* A descriptor that becomes readable when etcd_watch_process has work
 * (epoll, poll or select it for reading; do not read it). */
int etcd_watch_fd(const struct etcd_watch *w);

/* Does what is ready without blocking: reads the stream, delivers
 * callbacks, reconnects.  Returns 0 while the watch runs, 1 once it has
 * stopped (COMPACTED or FAILED was delivered), -1 on a local failure
 * (message in err).  Call it when the fd is readable; calling it when not
 * is harmless. */
int etcd_watch_process(struct etcd_watch *w, char *err, size_t errlen);

/* Waits up to timeout_ms (-1: forever) for the fd, then processes; for a
 * thread of the caller's that runs only the watch. */
int etcd_watch_wait(struct etcd_watch *w, int timeout_ms, char *err, size_t errlen);

/* The revision the watch resumes from after a reconnection: the last
 * delivered event's mod_revision + 1 (or the start revision). */
int64_t etcd_watch_next_revision(const struct etcd_watch *w);
/* Reconnections so far, and events dropped as duplicates (a member that
 * resent a revision already delivered). */
void etcd_watch_stats(const struct etcd_watch *w, uint64_t *reconnects, uint64_t *duplicates);

#endif
