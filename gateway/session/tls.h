/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The TLS layer: OpenSSL 3 behind an in-memory BIO, sans-I/O like the SMTP
 * engine.  Ciphertext from the network goes in through tls_feed_ciphertext();
 * plaintext for the engine comes out of tls_read_plaintext(); the engine's
 * replies go in through tls_write_plaintext(); ciphertext for the network
 * comes out of tls_pending_ciphertext().  No socket, no clock, no blocking:
 * the same code runs over kernel sockets, over the userspace TCP stack, in
 * unit tests and in the fuzzer.  docs/tls.md has the policy and the numbers.
 *
 * Threads.
 * - struct tls_server_ctx is shared by every worker of a gateway.  Workers
 *   call tls_conn_new() on it at any time; a control thread may call
 *   tls_server_ctx_reload(), tls_server_ctx_tick() and
 *   tls_server_ctx_rotate_tickets() concurrently with them.  The OpenSSL
 *   SSL_CTX in force is a pointer under a mutex that is read once per
 *   connection (in tls_conn_new, never per packet) and pinned with
 *   SSL_CTX_up_ref; a reload builds a complete new SSL_CTX outside the lock
 *   and swaps the pointer, so new handshakes use the new certificate while
 *   existing connections keep the SSL_CTX they started with until they are
 *   freed.  Session-ticket keys live in the server context, not in the
 *   SSL_CTX, so tickets survive a reload; they are read under their own mutex
 *   once per handshake that issues or accepts a ticket.
 * - struct tls_conn belongs to one worker thread; nothing in it is shared.
 *   struct tls_counters is per worker and written only by that worker.
 * - tls_server_ctx_free() only after every tls_conn made from it is freed.
 *
 * Calling pattern (per connection, after SMTP_STARTTLS):
 *   tls_feed_ciphertext() with what the transport received; then, whatever it
 *   returned, send what tls_pending_ciphertext() holds (handshake flights,
 *   alerts, tickets) and tls_consume_ciphertext() what the transport took;
 *   then call tls_read_plaintext() until TLS_WANT_MORE and hand the bytes to
 *   the engine; put the engine's output through tls_write_plaintext().  Any
 *   call may queue ciphertext (a TLS 1.3 KeyUpdate answer, an alert), so
 *   check tls_pending_ciphertext() after every one.  When tls_handshake_done()
 *   turns true, call smtp_tls_started() before handing the engine any
 *   plaintext; it can turn true inside tls_feed_ciphertext() as well as inside
 *   tls_read_plaintext(), so check it after each.
 *
 * Memory and back-pressure.  A connection holds two byte queues besides
 * OpenSSL's own state; both are freed whenever they are empty, as OpenSSL's
 * record buffers are (SSL_MODE_RELEASE_BUFFERS), so an idle connection holds
 * neither.
 * - inbound ciphertext: at most TLS_IN_MAX bytes (two maximal TLS records).
 *   tls_feed_ciphertext() takes only what fits and reports it in *used; the
 *   queue drains as tls_read_plaintext() is called.  A caller whose engine is
 *   blocked stops calling tls_read_plaintext(), the queue fills, feed takes
 *   nothing, and the caller stops reading its socket (or closes its TCP
 *   window): the same back-pressure as the engine's.
 * - outbound ciphertext: tls_write_plaintext() takes plaintext only while
 *   fewer than TLS_OUT_HIGH bytes wait to be sent, so at most TLS_OUT_HIGH
 *   plus one record are queued; it reports what it took in *used.  Handshake
 *   flights are bounded by the certificate chain; TLS_OUT_MAX is a hard stop
 *   that makes the connection fail rather than grow.
 */
#ifndef TES_GATEWAY_SESSION_TLS_H
#define TES_GATEWAY_SESSION_TLS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One TLS record on the wire at most: header + 2^14 + TLS 1.2's 2048 of expansion. */
#define TLS_RECORD_MAX (5 + 16384 + 2048)
#define TLS_IN_MAX (2 * TLS_RECORD_MAX)
#define TLS_OUT_HIGH (2 * TLS_RECORD_MAX)
#define TLS_OUT_MAX (256 * 1024)

/* Status codes.  tls_read_plaintext() returns a byte count (> 0) or one of
 * the negative ones; the other calls return TLS_OK or a negative one. */
enum {
	TLS_OK = 0,
	TLS_WANT_MORE = -1, /* nothing until more ciphertext arrives (or is sent) */
	TLS_CLOSED = -2,    /* the peer's side is finished: close_notify or EOF */
	TLS_ERROR = -3,     /* fatal: send the pending alert, then close */
};

/* Versions, as counter slots.  Failed handshakes are counted under the
 * highest version the client offered (supported_versions, else the
 * ClientHello's version); TLS_V_UNKNOWN when no ClientHello was parsed. */
enum tls_version_slot {
	TLS_V_UNKNOWN,
	TLS_V_1_0,
	TLS_V_1_1,
	TLS_V_1_2,
	TLS_V_1_3,
	TLS_V_COUNT,
};

/* Why a handshake failed: one bucket per failure. */
enum tls_fail_reason {
	TLS_FAIL_VERSION,   /* client offered nothing we accept (TLS 1.1 and older) */
	TLS_FAIL_CIPHER,    /* no shared cipher suite, group or signature algorithm */
	TLS_FAIL_ALERT,     /* the client sent a fatal alert */
	TLS_FAIL_PROTOCOL,  /* malformed, not TLS at all, or anything else */
	TLS_FAIL_EOF,       /* the transport ended mid-handshake */
	TLS_FAIL_ABANDONED, /* freed mid-handshake (timeout, shutdown) */
	TLS_FAIL_COUNT,
};

/* Per worker, written only by the worker that owns the connections.  Every
 * tls_conn lands in exactly one of full, resumed or failed, at the end of its
 * handshake or when it is freed. */
struct tls_counters {
	uint64_t full[TLS_V_COUNT];
	uint64_t resumed[TLS_V_COUNT];
	uint64_t failed[TLS_V_COUNT];
	uint64_t fail_reason[TLS_FAIL_COUNT];
	uint64_t client_cert;   /* handshakes where the client presented a certificate */
	uint64_t record_errors; /* fatal errors after the handshake (bad MAC, ...) */
	uint64_t close_notify;  /* peers that closed with close_notify */
	uint64_t unclean_eof;   /* peers that closed the transport without it */
};

void tls_counters_add(struct tls_counters *sum, const struct tls_counters *c);
const char *tls_version_slot_name(enum tls_version_slot v); /* "TLSv1.3", ... */
const char *tls_fail_reason_name(enum tls_fail_reason r);   /* "version", ... */

struct tls_server_config {
	const char *cert_file; /* PEM: the certificate, then its chain */
	const char *key_file;  /* PEM, unencrypted; may be the same file as cert_file */
	/* A second certificate with an RSA key, for clients that cannot verify
	 * the first one's signature (NULL or "": none).  Needs cert_file to
	 * hold an ECDSA or EdDSA key: OpenSSL keeps one certificate per key
	 * type and, the server's signature algorithms listing ECDSA and EdDSA
	 * before RSA, presents the first one to every client that offers its
	 * algorithm and this one to the rest.  Read from the same paths again
	 * by tls_server_ctx_reload. */
	const char *rsa_cert_file;
	const char *rsa_key_file;
	/* Ask the client for a certificate (verify none: any certificate, or
	 * none, is accepted) and record its subject, for the log. */
	bool request_client_cert;
	/* PEM file of the CAs that vouch for client certificates (NULL or "":
	 * none).  Implies request_client_cert.  A certificate that chains to one
	 * of them and is within its validity dates is "verified" and its names
	 * match certificate connectors; any other certificate, or none, still
	 * completes the handshake (ordinary senders go on), unverified.  Any
	 * extended key usage is accepted: an Exchange server presents its server
	 * certificate.  Read again by tls_server_ctx_reload. */
	const char *client_ca_file;
	/* Session tickets (stateless resumption).  The ticket key rotates every
	 * ticket_rotate_s; a ticket is accepted for ticket_rotate_s after it was
	 * issued and its key is destroyed two rotations after it was made.
	 * 0 means the default; more than TLS_TICKET_LIFETIME_MAX is cut to it. */
	bool tickets;
	uint32_t ticket_rotate_s;
};

#define TLS_TICKET_ROTATE_DEFAULT (12 * 3600)
#define TLS_TICKET_LIFETIME_MAX (7 * 86400) /* RFC 8446 4.6.1 */

/* tickets on, rotation TLS_TICKET_ROTATE_DEFAULT, no client certificate request. */
void tls_server_config_defaults(struct tls_server_config *cfg);

/* STARTTLS's settings (docs/configuration.md); config.c parses the
 * configuration into them.  cert and key both empty: no TLS. */
struct tls_settings {
	char cert[PATH_MAX];
	char key[PATH_MAX];
	char rsa_cert[PATH_MAX]; /* the RSA fallback; "": none */
	char rsa_key[PATH_MAX];
	bool request_client_cert;
	char client_ca[PATH_MAX]; /* CAs for client certificates; "": none */
	unsigned ticket_lifetime; /* seconds; 0: no session tickets */
};

/* The server's configuration from s: false (and out unused) when TLS is
 * not configured.  Its strings point into s. */
bool tls_settings_config(const struct tls_settings *s, struct tls_server_config *out);

struct tls_server_ctx;

/* Returns NULL and a message in err (file, then OpenSSL's reason) when the
 * certificate or key cannot be loaded, do not match, or are too weak. */
struct tls_server_ctx *tls_server_ctx_new(const struct tls_server_config *cfg, char *err,
					  size_t errlen);
void tls_server_ctx_free(struct tls_server_ctx *ctx);

/* Build a new SSL_CTX from cert_file and key_file (and the RSA fallback the
 * context was created with, from its paths) and make it the one new
 * connections use.  On failure (-1, message in err) the old certificate stays
 * in force.  Existing connections are not touched either way. */
int tls_server_ctx_reload(struct tls_server_ctx *ctx, const char *cert_file, const char *key_file,
			  char *err, size_t errlen);

/* Rotate the ticket key when ticket_rotate_s has passed since the last
 * rotation; the caller supplies the time (seconds, any epoch, monotonic).
 * The first call only starts the clock.  Returns true when it rotated. */
bool tls_server_ctx_tick(struct tls_server_ctx *ctx, uint64_t now_s);
/* Rotate now: a new key encrypts; the previous one still decrypts (and its
 * tickets are renewed under the new key); the one before is destroyed. */
void tls_server_ctx_rotate_tickets(struct tls_server_ctx *ctx);

/* "subject=CN = mx.example, notAfter=Jan  1 00:00:00 2027 GMT, key=EC 256"
 * for the certificate new connections get; for start-up and reload logs. */
void tls_server_ctx_describe(struct tls_server_ctx *ctx, char *buf, size_t cap);
/* Number of successful reloads: lets a caller see that a reload took effect. */
uint64_t tls_server_ctx_generation(struct tls_server_ctx *ctx);

/* What the client's certificate said, when one was requested and sent.  Text
 * is printable ASCII only (anything else becomes '?'), safe for logs and
 * headers; san holds the dNSName entries joined by ','. */
struct tls_peer_cert {
	char cn[256];
	char san[512];
	bool san_truncated;
	char sha256[65]; /* hex fingerprint of the DER certificate */
	/* Checked against client_ca_file (chain, signatures, dates): only then
	 * do its names identify the sender.  A resumed session keeps the result
	 * of the handshake that made its ticket. */
	bool verified;
	char verify_error[96]; /* why not ("certificate has expired"); "" if verified
				* or no CA is configured */
};

/* The names a verified certificate is matched by, one at a time: its
 * dNSName SANs when it has any, else its subject CN (RFC 6125 6.4.4).  i
 * from 0; false when there is no i-th name (or pc is NULL, or not
 * verified).  A name that cannot match anything (it held an unprintable
 * octet, now '?', or is longer than len) comes back as "". */
bool tls_peer_cert_name(const struct tls_peer_cert *pc, unsigned i, char *buf, size_t len);

struct tls_conn;

/* A server-side connection, in the accept state.  counters may be NULL.
 * Returns NULL when out of memory. */
struct tls_conn *tls_conn_new(struct tls_server_ctx *ctx, struct tls_counters *counters);
void tls_conn_free(struct tls_conn *c);

/* Take ciphertext from the network and advance the handshake.  *used says
 * how many bytes were taken; the caller keeps the rest and offers it again
 * after reading plaintext.  TLS_OK (progress, or waiting for more), or
 * TLS_ERROR (the input is discarded, *used == len). */
int tls_feed_ciphertext(struct tls_conn *c, const uint8_t *in, size_t len, size_t *used);

/* The transport has no more bytes.  Once what was fed is read,
 * tls_read_plaintext() returns TLS_CLOSED (mid-handshake: TLS_ERROR). */
void tls_transport_eof(struct tls_conn *c);

/* Decrypted bytes (> 0), TLS_WANT_MORE, TLS_CLOSED or TLS_ERROR.  Advances
 * the handshake first if it is not done. */
ssize_t tls_read_plaintext(struct tls_conn *c, uint8_t *buf, size_t cap);

/* Encrypt plaintext for the peer.  *used says how much was taken: less than
 * len when the outbound queue is at TLS_OUT_HIGH (TLS_WANT_MORE: send, then
 * call again) or the handshake is not done yet (TLS_WANT_MORE, *used == 0).
 * TLS_CLOSED after tls_shutdown(); TLS_ERROR after a fatal error. */
int tls_write_plaintext(struct tls_conn *c, const uint8_t *buf, size_t len, size_t *used);

/* Ciphertext waiting to be sent: a pointer into the connection, valid until
 * the next call on it, and its length (0: nothing). */
void tls_pending_ciphertext(const struct tls_conn *c, const uint8_t **p, size_t *len);
void tls_consume_ciphertext(struct tls_conn *c, size_t n);

/* Queue close_notify (once).  The peer's close_notify is not awaited: SMTP
 * has ended by then and the transport is closed after the alert is sent. */
int tls_shutdown(struct tls_conn *c);

bool tls_handshake_done(const struct tls_conn *c);
bool tls_session_resumed(const struct tls_conn *c);
bool tls_close_notify_received(const struct tls_conn *c);
/* "TLSv1.3" / "TLSv1.2"; "" before the handshake is done. */
const char *tls_version_name(const struct tls_conn *c);
/* OpenSSL's name, "TLS_AES_256_GCM_SHA384"; "" before the handshake is done. */
const char *tls_cipher_name(const struct tls_conn *c);
int tls_cipher_bits(const struct tls_conn *c);
/* Highest version the client offered, as a slot. */
enum tls_version_slot tls_offered_version(const struct tls_conn *c);
/* After TLS_ERROR: why, one line for the log ("unsupported protocol (client
 * offered TLSv1.1)"); "" otherwise. */
const char *tls_error_reason(const struct tls_conn *c);
/* The client's certificate, or NULL (none requested, none sent). */
const struct tls_peer_cert *tls_peer_cert(const struct tls_conn *c);

#endif
