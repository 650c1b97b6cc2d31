/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The TLS layer: see tls.h for the contract and docs/tls.md for the policy.
 *
 * OpenSSL talks to one BIO per connection, of a small method of our own: it
 * reads ciphertext from the connection's inbound queue and appends what it
 * writes to the outbound queue.  A stock BIO_s_mem would do the same job but
 * keeps its high-water allocation for the life of the connection and has no
 * way to hand out its bytes without a copy; ours frees each queue when it
 * empties and lets the transport send straight from the outbound queue.
 */
#include "gateway/session/tls.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/*
 * Policy.  TLS 1.2 gets ECDHE with AEAD ciphers only: forward secrecy, no
 * RSA key transport, no CBC (Lucky 13 and friends), no SHA-1 MAC.  TLS 1.3
 * gets OpenSSL's default suites, which are all AEAD.  Signature algorithms
 * leave out SHA-1.  Security level 2 refuses keys under 112 bits (RSA < 2048)
 * at load time rather than at the first handshake.
 */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
				    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
				    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256";
static const char tls13_suites[] =
	"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";
static const char groups[] = "X25519:P-256:P-384";
static const char sigalgs[] = "ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512:ed25519:ed448:"
			      "rsa_pss_pss_sha256:rsa_pss_pss_sha384:rsa_pss_pss_sha512:"
			      "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:"
			      "RSA+SHA256:RSA+SHA384:RSA+SHA512";
static const unsigned char sid_ctx[] = "tesgate-smtp";

#define TICKET_NAME_LEN 16
#define TICKET_KEY_LEN 32

struct ticket_key {
	bool valid;
	unsigned char name[TICKET_NAME_LEN];
	unsigned char aes[TICKET_KEY_LEN];
	unsigned char hmac[TICKET_KEY_LEN];
};

struct tls_server_ctx {
	struct tls_server_config cfg; /* file names are not kept */

	char rsa_cert[PATH_MAX]; /* the RSA fallback's paths; "": none */
	char rsa_key[PATH_MAX];

	pthread_mutex_t lock; /* ssl_ctx and generation */
	SSL_CTX *ssl_ctx;
	uint64_t generation;

	pthread_mutex_t key_lock;  /* keys and the rotation clock */
	struct ticket_key keys[2]; /* [0] encrypts and decrypts, [1] only decrypts */
	uint64_t last_rotate;
	bool clock_started;
	/* Fetched once: an implicit fetch per ticket would take the provider
	 * store's lock on every handshake of every worker. */
	EVP_CIPHER *ticket_cipher;
};

/* A byte queue: data is p[off, off + len). */
struct bq {
	uint8_t *p;
	size_t off, len, cap;
};

struct tls_conn {
	SSL *ssl;
	struct tls_counters *ctr;
	struct bq in, out;
	bool eof;          /* transport said no more bytes */
	bool hs_done;      /* handshake completed */
	bool counted;      /* landed in full/resumed/failed */
	bool dead;         /* fatal error: only TLS_ERROR from now on */
	bool peer_closed;  /* read side finished (close_notify or EOF) */
	bool close_notify; /* ... and it was a close_notify */
	bool shutdown_sent;
	bool out_overflow; /* OpenSSL wanted to queue more than TLS_OUT_MAX */
	uint8_t offered;   /* enum tls_version_slot */
	int verify_err;    /* first chain error the verify callback saw; 0: none */
	struct tls_peer_cert *peer;
	char reason[160];
};

/* Where counts go when the caller keeps none; per thread, so it is no shared state. */
static _Thread_local struct tls_counters discard_counters;

/* ---- helpers ---- */

static enum tls_version_slot slot_of(int v)
{
	switch (v) {
	case TLS1_VERSION:
		return TLS_V_1_0;
	case TLS1_1_VERSION:
		return TLS_V_1_1;
	case TLS1_2_VERSION:
		return TLS_V_1_2;
	case TLS1_3_VERSION:
		return TLS_V_1_3;
	default:
		return TLS_V_UNKNOWN;
	}
}

const char *tls_version_slot_name(enum tls_version_slot v)
{
	static const char *const names[TLS_V_COUNT] = { "unknown", "TLSv1", "TLSv1.1", "TLSv1.2",
							"TLSv1.3" };
	return (unsigned)v < TLS_V_COUNT ? names[v] : "unknown";
}

const char *tls_fail_reason_name(enum tls_fail_reason r)
{
	static const char *const names[TLS_FAIL_COUNT] = { "version",  "cipher", "alert",
							   "protocol", "eof",    "abandoned" };
	return (unsigned)r < TLS_FAIL_COUNT ? names[r] : "protocol";
}

void tls_counters_add(struct tls_counters *sum, const struct tls_counters *c)
{
	for (int i = 0; i < TLS_V_COUNT; i++) {
		sum->full[i] += c->full[i];
		sum->resumed[i] += c->resumed[i];
		sum->failed[i] += c->failed[i];
	}
	for (int i = 0; i < TLS_FAIL_COUNT; i++)
		sum->fail_reason[i] += c->fail_reason[i];
	sum->client_cert += c->client_cert;
	sum->record_errors += c->record_errors;
	sum->close_notify += c->close_notify;
	sum->unclean_eof += c->unclean_eof;
}

/* OpenSSL's reason for the oldest error on this thread's queue: the root
 * cause, where later entries only say which call failed. */
static const char *first_reason(unsigned long *code)
{
	unsigned long e = ERR_peek_error();
	if (code)
		*code = e;
	if (!e)
		return NULL;
	return ERR_reason_error_string(e);
}

static void set_err(char *err, size_t errlen, const char *what, const char *path)
{
	unsigned long e;
	const char *r = first_reason(&e);
	char tmp[64];

	if (!r && e) {
		snprintf(tmp, sizeof(tmp), "error %#lx", e);
		r = tmp;
	}
	if (err && errlen)
		snprintf(err, errlen, "%s%s%s: %s", what, path ? " " : "", path ? path : "",
			 r ? r : "failed");
	ERR_clear_error();
}

/* ---- byte queues ---- */

static int bq_append(struct bq *q, const void *p, size_t n, size_t max)
{
	if (n > max - q->len)
		return -1;
	if (q->off + q->len + n > q->cap) {
		if (q->off) {
			memmove(q->p, q->p + q->off, q->len);
			q->off = 0;
		}
		if (q->len + n > q->cap) {
			size_t cap = q->cap ? q->cap : 2048;
			while (cap < q->len + n)
				cap *= 2;
			if (cap > max)
				cap = max;
			uint8_t *np = OPENSSL_realloc(q->p, cap);
			if (!np)
				return -1;
			q->p = np;
			q->cap = cap;
		}
	}
	memcpy(q->p + q->off + q->len, p, n);
	q->len += n;
	return 0;
}

static void bq_release(struct bq *q)
{
	OPENSSL_free(q->p);
	q->p = NULL;
	q->off = q->len = q->cap = 0;
}

static void bq_take(struct bq *q, size_t n)
{
	if (n >= q->len) {
		/* Empty: give the memory back, so an idle connection holds none. */
		bq_release(q);
		return;
	}
	q->off += n;
	q->len -= n;
}

/* ---- the BIO between OpenSSL and the queues ---- */

static int bio_write_ex(BIO *b, const char *data, size_t n, size_t *written)
{
	struct tls_conn *c = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	*written = 0;
	if (bq_append(&c->out, data, n, TLS_OUT_MAX) != 0) {
		/* Not a retry: a peer that does not read is not a reason to
		 * grow, and the caller's TLS_OUT_HIGH check keeps us far below. */
		c->out_overflow = true;
		return 0;
	}
	*written = n;
	return 1;
}

static int bio_read_ex(BIO *b, char *data, size_t n, size_t *got)
{
	struct tls_conn *c = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	*got = 0;
	if (c->in.len == 0) {
		/* No retry flag after EOF: with BIO_eof() true OpenSSL reports an
		 * unexpected EOF instead of waiting forever. */
		if (!c->eof)
			BIO_set_retry_read(b);
		return 0;
	}
	if (n > c->in.len)
		n = c->in.len;
	memcpy(data, c->in.p + c->in.off, n);
	bq_take(&c->in, n);
	*got = n;
	return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_conn *c = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:
		return c && c->eof && c->in.len == 0;
	case BIO_CTRL_PENDING:
		return c ? (long)c->in.len : 0;
	case BIO_CTRL_WPENDING:
		return c ? (long)c->out.len : 0;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_data(b, NULL);
	BIO_set_init(b, 1);
	return 1;
}

static int bio_destroy(BIO *b)
{
	BIO_set_data(b, NULL);
	return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tesgate-tls");
	if (!m)
		return;
	if (!BIO_meth_set_write_ex(m, bio_write_ex) || !BIO_meth_set_read_ex(m, bio_read_ex) ||
	    !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create) ||
	    !BIO_meth_set_destroy(m, bio_destroy)) {
		BIO_meth_free(m);
		return;
	}
	bio_method = m;
}

/* ---- session tickets ---- */

static int ticket_key_make(struct ticket_key *k)
{
	if (RAND_bytes(k->name, sizeof(k->name)) != 1 ||
	    RAND_priv_bytes(k->aes, sizeof(k->aes)) != 1 ||
	    RAND_priv_bytes(k->hmac, sizeof(k->hmac)) != 1) {
		OPENSSL_cleanse(k, sizeof(*k));
		return -1;
	}
	k->valid = true;
	return 0;
}

/*
 * OpenSSL's ticket format is AES-CBC then HMAC-SHA256 over the result
 * (encrypt-then-MAC), which is sound; the "no CBC" rule is about record
 * protection, where the MAC-then-encrypt order of TLS 1.2 made CBC fragile.
 * Returning 2 for a ticket under the previous key makes OpenSSL issue a fresh
 * one under the current key, so a client that comes back regularly never
 * falls off the end of the key ring.
 */
static int ticket_cb(SSL *s, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
		     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct tls_server_ctx *srv = SSL_CTX_get_app_data(SSL_get_SSL_CTX(s));
	struct ticket_key k = { 0 };
	int ret = -1;

	if (!srv)
		return -1;
	pthread_mutex_lock(&srv->key_lock);
	if (enc) {
		k = srv->keys[0];
		ret = 1;
	} else {
		for (int i = 0; i < 2; i++) {
			if (srv->keys[i].valid &&
			    memcmp(srv->keys[i].name, key_name, TICKET_NAME_LEN) == 0) {
				k = srv->keys[i];
				/* 2 renews: a ticket under the previous key, and
				 * every TLS 1.3 ticket, which a client uses only
				 * once (RFC 8446 C.4; OpenSSL's client does): without
				 * a fresh one after each resumption, a client that
				 * comes back often resumes only every other time. */
				ret = i == 0 && SSL_version(s) != TLS1_3_VERSION ? 1 : 2;
				break;
			}
		}
	}
	pthread_mutex_unlock(&srv->key_lock);

	if (!k.valid) {
		/* encrypt: no key means no ticket; decrypt: unknown or expired
		 * key means a full handshake, not a failure */
		return 0;
	}
	if (enc) {
		int ivlen = EVP_CIPHER_get_iv_length(srv->ticket_cipher);
		if (ivlen <= 0 || RAND_bytes(iv, ivlen) != 1) {
			ret = -1;
			goto out;
		}
		memcpy(key_name, k.name, TICKET_NAME_LEN);
	}
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
		OSSL_PARAM_construct_end(),
	};
	if (!EVP_MAC_CTX_set_params(hctx, params) ||
	    !EVP_CipherInit_ex(cctx, srv->ticket_cipher, NULL, k.aes, iv, enc))
		ret = -1;
out:
	OPENSSL_cleanse(&k, sizeof(k));
	return ret;
}

void tls_server_ctx_rotate_tickets(struct tls_server_ctx *srv)
{
	struct ticket_key k;

	if (ticket_key_make(&k) != 0)
		return; /* keep the keys we have rather than none */
	pthread_mutex_lock(&srv->key_lock);
	OPENSSL_cleanse(&srv->keys[1], sizeof(srv->keys[1]));
	srv->keys[1] = srv->keys[0];
	srv->keys[0] = k;
	pthread_mutex_unlock(&srv->key_lock);
	OPENSSL_cleanse(&k, sizeof(k));
}

bool tls_server_ctx_tick(struct tls_server_ctx *srv, uint64_t now_s)
{
	unsigned turns = 0;

	pthread_mutex_lock(&srv->key_lock);
	if (!srv->clock_started) {
		srv->clock_started = true;
		srv->last_rotate = now_s;
	} else if (now_s >= srv->last_rotate &&
		   now_s - srv->last_rotate >= srv->cfg.ticket_rotate_s) {
		/* Two periods or more without a tick: the previous key is past
		 * its lifetime too, so both go. */
		turns = now_s - srv->last_rotate >= 2ull * srv->cfg.ticket_rotate_s ? 2 : 1;
		srv->last_rotate = now_s;
	}
	pthread_mutex_unlock(&srv->key_lock);
	for (unsigned i = 0; i < turns; i++)
		tls_server_ctx_rotate_tickets(srv);
	return turns > 0;
}

/* ---- the SSL_CTX ---- */

/* The highest version the client offers, for counters and for the reason
 * given when we refuse it.  Runs before version negotiation, so it sees
 * TLS 1.0 and 1.1 clients too. */
static int client_hello_cb(SSL *s, int *al, void *arg)
{
	struct tls_conn *c = SSL_get_app_data(s);
	const unsigned char *p;
	size_t len;
	int best = 0;

	(void)al;
	(void)arg;
	if (!c)
		return SSL_CLIENT_HELLO_SUCCESS;
	if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_supported_versions, &p, &len) == 1 &&
	    len >= 1) {
		/* RFC 8446 4.2.1: the list overrides legacy_version.  GREASE
		 * and unknown values fall outside the range and are skipped. */
		size_t n = p[0];
		if (n + 1 > len)
			n = len - 1;
		for (size_t i = 1; i + 1 <= n; i += 2) {
			int v = p[i] << 8 | p[i + 1];
			if (v >= TLS1_VERSION && v <= TLS1_3_VERSION && v > best)
				best = v;
		}
	} else {
		best = (int)SSL_client_hello_get0_legacy_version(s);
	}
	c->offered = (uint8_t)slot_of(best);
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* "Verify none" while still asking: any certificate, or none, is accepted;
 * the subject is recorded for matching later, not trusted. */
static int accept_any_cert(int ok, X509_STORE_CTX *x)
{
	(void)ok;
	(void)x;
	return 1;
}

/* With a client CA: OpenSSL verifies the chain, this records the first
 * error and lets the handshake go on whatever it is, so that a sender with
 * a certificate from elsewhere (or an expired one) is an ordinary sender,
 * not a refused one. */
static int note_verify(int ok, X509_STORE_CTX *x)
{
	SSL *s = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct tls_conn *c = s ? SSL_get_app_data(s) : NULL;

	if (!ok && c && !c->verify_err) {
		c->verify_err = X509_STORE_CTX_get_error(x);
		if (!c->verify_err)
			c->verify_err = X509_V_ERR_UNSPECIFIED;
	}
	return 1;
}

static bool has_client_ca(const struct tls_server_ctx *srv)
{
	return srv->cfg.client_ca_file && srv->cfg.client_ca_file[0];
}

/* An encrypted key must fail the load, not prompt on a terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

static int readable(const char *what, const char *path, char *err, size_t errlen)
{
	FILE *f;

	if (!path || !*path) {
		snprintf(err, errlen, "%s: no file configured", what);
		return -1;
	}
	f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	fclose(f);
	return 0;
}

static bool is_rsa(const EVP_PKEY *k)
{
	int id = k ? EVP_PKEY_get_base_id(k) : EVP_PKEY_NONE;

	return id == EVP_PKEY_RSA || id == EVP_PKEY_RSA_PSS;
}

/* The second certificate (RSA) beside the first (ECDSA or EdDSA), which is
 * loaded already: OpenSSL keeps one per key type, so loading an RSA one
 * adds it instead of replacing the first. */
static int load_rsa_fallback(SSL_CTX *x, const char *cert, const char *key, const char *first,
			     char *err, size_t errlen)
{
	X509 *c;

	if (is_rsa(SSL_CTX_get0_privatekey(x))) {
		snprintf(err, errlen,
			 "certificate %s has an RSA key: with an RSA fallback (%s) the first "
			 "certificate must be ECDSA or EdDSA",
			 first, cert);
		return -1;
	}
	if (readable("certificate", cert, err, errlen) != 0 ||
	    readable("key", key, err, errlen) != 0)
		return -1;
	if (SSL_CTX_use_certificate_chain_file(x, cert) != 1) {
		set_err(err, errlen, "certificate", cert);
		return -1;
	}
	c = SSL_CTX_get0_certificate(x);
	if (c == NULL || !is_rsa(X509_get0_pubkey(c))) {
		/* It replaced the first one (same key type): refuse. */
		snprintf(err, errlen, "RSA fallback certificate %s does not have an RSA key", cert);
		ERR_clear_error();
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(x, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(x) != 1) {
		snprintf(err, errlen, "key %s does not match certificate %s", key, cert);
		ERR_clear_error();
		return -1;
	}
	return 0;
}

static SSL_CTX *build_ssl_ctx(struct tls_server_ctx *srv, const char *cert, const char *key,
			      char *err, size_t errlen)
{
	SSL_CTX *x;
	uint64_t opts;

	if (readable("certificate", cert, err, errlen) != 0 ||
	    readable("key", key, err, errlen) != 0)
		return NULL;
	ERR_clear_error();
	x = SSL_CTX_new(TLS_server_method());
	if (!x) {
		set_err(err, errlen, "SSL_CTX_new", NULL);
		return NULL;
	}
	SSL_CTX_set_security_level(x, 2);
	opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
	       SSL_OP_PRIORITIZE_CHACHA;
	if (!srv->cfg.tickets)
		opts |= SSL_OP_NO_TICKET;
	SSL_CTX_set_options(x, opts);
	/* An EOF without close_notify stays visible (TLS_CLOSED, counted as
	 * unclean_eof) instead of being folded into a clean close. */
	SSL_CTX_clear_options(x, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(x, SSL_MODE_RELEASE_BUFFERS);
	/* Tickets are stateless; a server-side cache would be one more
	 * structure shared (and locked) across workers, for clients that do
	 * not do tickets. */
	SSL_CTX_set_session_cache_mode(x, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_timeout(x, (long)srv->cfg.ticket_rotate_s);
	/* One ticket: an MTA resumes one connection at a time.  None when
	 * tickets are off: without the cache nothing could resume from it. */
	SSL_CTX_set_num_tickets(x, srv->cfg.tickets ? 1 : 0);
	SSL_CTX_set_app_data(x, srv);
	SSL_CTX_set_default_passwd_cb(x, no_passphrase);
	SSL_CTX_set_client_hello_cb(x, client_hello_cb, NULL);
	if (has_client_ca(srv)) {
		const char *ca = srv->cfg.client_ca_file;
		STACK_OF(X509_NAME) * names;

		if (readable("client CA", ca, err, errlen) != 0)
			goto fail;
		if (SSL_CTX_load_verify_locations(x, ca, NULL) != 1) {
			set_err(err, errlen, "client CA", ca);
			goto fail;
		}
		/* The CertificateRequest names them, so that a client with
		 * several certificates offers the right one. */
		names = SSL_load_client_CA_file(ca);
		if (!names) {
			set_err(err, errlen, "client CA", ca);
			goto fail;
		}
		SSL_CTX_set_client_CA_list(x, names);
		/* Chain and dates; no EKU requirement (Exchange sends its server
		 * certificate, and current public CAs issue those without
		 * clientAuth). */
		X509_VERIFY_PARAM_set_purpose(SSL_CTX_get0_param(x), X509_PURPOSE_ANY);
		X509_VERIFY_PARAM_set_depth(SSL_CTX_get0_param(x), 8);
		SSL_CTX_set_verify(x, SSL_VERIFY_PEER, note_verify);
	} else if (srv->cfg.request_client_cert) {
		SSL_CTX_set_verify(x, SSL_VERIFY_PEER, accept_any_cert);
	} else {
		SSL_CTX_set_verify(x, SSL_VERIFY_NONE, NULL);
	}

	if (!SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(x, TLS1_3_VERSION) ||
	    !SSL_CTX_set_cipher_list(x, tls12_ciphers) ||
	    !SSL_CTX_set_ciphersuites(x, tls13_suites) || !SSL_CTX_set1_groups_list(x, groups) ||
	    !SSL_CTX_set1_sigalgs_list(x, sigalgs) ||
	    !SSL_CTX_set_session_id_context(x, sid_ctx, sizeof(sid_ctx) - 1) ||
	    !SSL_CTX_set_tlsext_ticket_key_evp_cb(x, ticket_cb)) {
		set_err(err, errlen, "TLS policy", NULL);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(x, cert) != 1) {
		set_err(err, errlen, "certificate", cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(x, key, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_error();
		if (ERR_GET_LIB(e) == ERR_LIB_X509 &&
		    ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
			snprintf(err, errlen, "key %s does not match certificate %s", key, cert);
		else
			set_err(err, errlen, "key", key);
		ERR_clear_error();
		goto fail;
	}
	if (SSL_CTX_check_private_key(x) != 1) {
		snprintf(err, errlen, "key %s does not match certificate %s", key, cert);
		ERR_clear_error();
		goto fail;
	}
	if (srv->rsa_cert[0] &&
	    load_rsa_fallback(x, srv->rsa_cert, srv->rsa_key, cert, err, errlen) != 0)
		goto fail;
	return x;
fail:
	SSL_CTX_free(x);
	return NULL;
}

bool tls_settings_config(const struct tls_settings *s, struct tls_server_config *out)
{
	tls_server_config_defaults(out);
	if (!s->cert[0] || !s->key[0])
		return false;
	out->cert_file = s->cert;
	out->key_file = s->key;
	out->rsa_cert_file = s->rsa_cert[0] ? s->rsa_cert : NULL;
	out->rsa_key_file = s->rsa_key[0] ? s->rsa_key : NULL;
	out->request_client_cert = s->request_client_cert || s->client_ca[0];
	out->client_ca_file = s->client_ca[0] ? s->client_ca : NULL;
	out->tickets = s->ticket_lifetime > 0;
	if (out->tickets)
		out->ticket_rotate_s = s->ticket_lifetime;
	return true;
}

void tls_server_config_defaults(struct tls_server_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->tickets = true;
	cfg->ticket_rotate_s = TLS_TICKET_ROTATE_DEFAULT;
}

struct tls_server_ctx *tls_server_ctx_new(const struct tls_server_config *cfg, char *err,
					  size_t errlen)
{
	struct tls_server_ctx *srv;
	char dummy[1];

	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	pthread_once(&bio_once, bio_method_init);
	if (!bio_method) {
		snprintf(err, errlen, "TLS: cannot create the BIO method");
		return NULL;
	}
	srv = OPENSSL_zalloc(sizeof(*srv));
	if (!srv) {
		snprintf(err, errlen, "TLS: out of memory");
		return NULL;
	}
	srv->cfg = *cfg;
	srv->cfg.cert_file = srv->cfg.key_file = NULL;
	srv->cfg.rsa_cert_file = srv->cfg.rsa_key_file = NULL;
	if (cfg->rsa_cert_file && cfg->rsa_cert_file[0]) {
		if (!cfg->rsa_key_file || !cfg->rsa_key_file[0] ||
		    snprintf(srv->rsa_cert, sizeof(srv->rsa_cert), "%s", cfg->rsa_cert_file) >=
			    (int)sizeof(srv->rsa_cert) ||
		    snprintf(srv->rsa_key, sizeof(srv->rsa_key), "%s", cfg->rsa_key_file) >=
			    (int)sizeof(srv->rsa_key)) {
			snprintf(err, errlen,
				 "TLS: the RSA fallback needs a certificate and a key");
			OPENSSL_free(srv);
			return NULL;
		}
	}
	if (!srv->cfg.ticket_rotate_s)
		srv->cfg.ticket_rotate_s = TLS_TICKET_ROTATE_DEFAULT;
	if (srv->cfg.ticket_rotate_s > TLS_TICKET_LIFETIME_MAX)
		srv->cfg.ticket_rotate_s = TLS_TICKET_LIFETIME_MAX;
	pthread_mutex_init(&srv->lock, NULL);
	pthread_mutex_init(&srv->key_lock, NULL);
	srv->ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
	if (!srv->ticket_cipher || ticket_key_make(&srv->keys[0]) != 0) {
		set_err(err, errlen, "TLS ticket keys", NULL);
		goto fail;
	}
	srv->ssl_ctx = build_ssl_ctx(srv, cfg->cert_file, cfg->key_file, err, errlen);
	if (!srv->ssl_ctx)
		goto fail;
	return srv;
fail:
	tls_server_ctx_free(srv);
	return NULL;
}

void tls_server_ctx_free(struct tls_server_ctx *srv)
{
	if (!srv)
		return;
	SSL_CTX_free(srv->ssl_ctx);
	EVP_CIPHER_free(srv->ticket_cipher);
	OPENSSL_cleanse(srv->keys, sizeof(srv->keys));
	pthread_mutex_destroy(&srv->lock);
	pthread_mutex_destroy(&srv->key_lock);
	OPENSSL_free(srv);
}

int tls_server_ctx_reload(struct tls_server_ctx *srv, const char *cert, const char *key, char *err,
			  size_t errlen)
{
	char dummy[1];
	SSL_CTX *x, *old;

	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	x = build_ssl_ctx(srv, cert, key, err, errlen);
	if (!x)
		return -1;
	pthread_mutex_lock(&srv->lock);
	old = srv->ssl_ctx;
	srv->ssl_ctx = x;
	srv->generation++;
	pthread_mutex_unlock(&srv->lock);
	/* Connections made from old hold their own references; it goes when
	 * the last of them is freed. */
	SSL_CTX_free(old);
	return 0;
}

static SSL_CTX *current_ctx(struct tls_server_ctx *srv)
{
	SSL_CTX *x;

	pthread_mutex_lock(&srv->lock);
	x = srv->ssl_ctx;
	SSL_CTX_up_ref(x);
	pthread_mutex_unlock(&srv->lock);
	return x;
}

uint64_t tls_server_ctx_generation(struct tls_server_ctx *srv)
{
	uint64_t g;

	pthread_mutex_lock(&srv->lock);
	g = srv->generation;
	pthread_mutex_unlock(&srv->lock);
	return g;
}

void tls_server_ctx_describe(struct tls_server_ctx *srv, char *buf, size_t cap)
{
	SSL_CTX *x = current_ctx(srv);
	X509 *cert = SSL_CTX_get0_certificate(x);
	EVP_PKEY *pk = SSL_CTX_get0_privatekey(x);
	char subject[256] = "?", until[32] = "?";
	struct tm tm;

	if (cert) {
		X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
		if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1)
			strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
	}
	snprintf(buf, cap, "subject=%s, notAfter=%s, key=%s %d", subject, until,
		 pk ? EVP_PKEY_get0_type_name(pk) : "?", pk ? EVP_PKEY_get_bits(pk) : 0);
	SSL_CTX_free(x);
	ERR_clear_error();
}

/* ---- connections ---- */

struct tls_conn *tls_conn_new(struct tls_server_ctx *srv, struct tls_counters *counters)
{
	struct tls_conn *c;
	SSL_CTX *x;
	BIO *b;

	c = OPENSSL_zalloc(sizeof(*c));
	if (!c)
		return NULL;
	c->ctr = counters ? counters : &discard_counters;
	/* The one read of the shared pointer for this connection's life. */
	x = current_ctx(srv);
	c->ssl = SSL_new(x);
	SSL_CTX_free(x);
	if (!c->ssl)
		goto fail;
	b = BIO_new(bio_method);
	if (!b)
		goto fail;
	BIO_set_data(b, c);
	/* One BIO for both directions; SSL_set_bio takes our one reference. */
	SSL_set_bio(c->ssl, b, b);
	SSL_set_app_data(c->ssl, c);
	SSL_set_accept_state(c->ssl);
	return c;
fail:
	ERR_clear_error();
	SSL_free(c->ssl);
	OPENSSL_free(c);
	return NULL;
}

static void count_failure(struct tls_conn *c, enum tls_fail_reason r)
{
	if (c->counted)
		return;
	c->counted = true;
	c->ctr->failed[c->offered]++;
	c->ctr->fail_reason[r]++;
}

void tls_conn_free(struct tls_conn *c)
{
	if (!c)
		return;
	if (!c->counted) {
		snprintf(c->reason, sizeof(c->reason), "abandoned during handshake");
		count_failure(c, TLS_FAIL_ABANDONED);
	}
	/* Without a shutdown on record, SSL_free treats the session as bad and
	 * removes it from the SSL_CTX's cache under the lock every worker
	 * shares.  There is nothing to remove (tickets are stateless, the cache
	 * is off), so say the shutdown happened and skip the lock. */
	SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	SSL_free(c->ssl);
	bq_release(&c->in);
	bq_release(&c->out);
	OPENSSL_free(c->peer);
	OPENSSL_free(c);
}

/* Printable ASCII only: the text ends up in logs and in a Received header. */
static void copy_printable(char *dst, size_t cap, const unsigned char *src, size_t n, bool comma_ok)
{
	size_t i;

	for (i = 0; i < n && i + 1 < cap; i++) {
		unsigned char ch = src[i];
		dst[i] = (ch >= 0x20 && ch < 0x7f && (comma_ok || ch != ',')) ? (char)ch : '?';
	}
	dst[i] = '\0';
}

static void record_peer(struct tls_conn *c)
{
	X509 *x = SSL_get0_peer_certificate(c->ssl);
	struct tls_peer_cert *p;
	X509_NAME *nm;
	GENERAL_NAMES *gens;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	int i, last = -1;

	if (!x)
		return;
	p = OPENSSL_zalloc(sizeof(*p));
	if (!p)
		return;
	nm = X509_get_subject_name(x);
	/* The last CN is the most specific one in RDN order. */
	while ((i = X509_NAME_get_index_by_NID(nm, NID_commonName, last)) >= 0)
		last = i;
	if (last >= 0) {
		unsigned char *u = NULL;
		int n = ASN1_STRING_to_UTF8(
			&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, last)));
		if (n >= 0)
			copy_printable(p->cn, sizeof(p->cn), u, (size_t)n, true);
		OPENSSL_free(u);
	}
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		size_t used = strlen(p->san), n;
		if (g->type != GEN_DNS)
			continue;
		n = (size_t)ASN1_STRING_length(g->d.dNSName);
		if (used + (used ? 1 : 0) + n + 1 > sizeof(p->san)) {
			p->san_truncated = true;
			break;
		}
		if (used)
			p->san[used++] = ',';
		copy_printable(p->san + used, sizeof(p->san) - used,
			       ASN1_STRING_get0_data(g->d.dNSName), n, false);
	}
	GENERAL_NAMES_free(gens);
	if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1) {
		for (unsigned k = 0; k < mdlen && 2 * k + 2 < sizeof(p->sha256); k++)
			snprintf(p->sha256 + 2 * k, 3, "%02x", md[k]);
	}
	if (SSL_get_verify_callback(c->ssl) == note_verify) {
		/* A full handshake ran note_verify; a resumed one carries the
		 * result of the handshake that issued its ticket. */
		long vr = SSL_get_verify_result(c->ssl);
		int why = c->verify_err ? c->verify_err : (int)vr;

		p->verified = why == X509_V_OK;
		if (!p->verified)
			snprintf(p->verify_error, sizeof(p->verify_error), "%s",
				 X509_verify_cert_error_string(why));
	}
	c->peer = p;
	c->ctr->client_cert++;
	ERR_clear_error();
}

bool tls_peer_cert_name(const struct tls_peer_cert *pc, unsigned i, char *buf, size_t len)
{
	const char *p;

	if (!pc || !pc->verified || len == 0)
		return false;
	if (!pc->san[0]) {
		if (i != 0 || !pc->cn[0])
			return false;
		buf[0] = '\0';
		if (!strchr(pc->cn, '?') && strlen(pc->cn) < len)
			memcpy(buf, pc->cn, strlen(pc->cn) + 1);
		return true;
	}
	p = pc->san;
	for (unsigned k = 0; *p; k++) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (k == i) {
			/* one that cannot be matched stays in the count, empty */
			if (n >= len || memchr(p, '?', n))
				n = 0;
			memcpy(buf, p, n);
			buf[n] = '\0';
			return true;
		}
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

static void handshake_finished(struct tls_conn *c)
{
	enum tls_version_slot v = slot_of(SSL_version(c->ssl));

	c->hs_done = true;
	if (!c->counted) {
		c->counted = true;
		if (SSL_session_reused(c->ssl))
			c->ctr->resumed[v]++;
		else
			c->ctr->full[v]++;
	}
	record_peer(c);
}

static enum tls_fail_reason classify(unsigned long e)
{
	int r = ERR_GET_REASON(e);

	if (ERR_GET_LIB(e) != ERR_LIB_SSL)
		return TLS_FAIL_PROTOCOL;
	if (r >= SSL_AD_REASON_OFFSET && r < SSL_AD_REASON_OFFSET + 256)
		return TLS_FAIL_ALERT;
	switch (r) {
	case SSL_R_UNSUPPORTED_PROTOCOL:
	case SSL_R_VERSION_TOO_LOW:
	case SSL_R_NO_PROTOCOLS_AVAILABLE:
		return TLS_FAIL_VERSION;
	case SSL_R_NO_SHARED_CIPHER:
	case SSL_R_NO_SHARED_GROUPS:
	case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
	case SSL_R_NO_SHARED_SIGNATURE_ALGORITHMS:
	case SSL_R_NO_SUITABLE_KEY_SHARE:
		return TLS_FAIL_CIPHER;
	case SSL_R_UNEXPECTED_EOF_WHILE_READING:
		return TLS_FAIL_EOF;
	default:
		return TLS_FAIL_PROTOCOL;
	}
}

static bool is_unexpected_eof(unsigned long e)
{
	return ERR_GET_LIB(e) == ERR_LIB_SSL &&
	       ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

/* A fatal error: remember why, once, and refuse everything from now on.
 * OpenSSL has queued the alert, if any, in the outbound queue. */
static void fail(struct tls_conn *c, int ssl_error)
{
	unsigned long e = 0;
	const char *r = first_reason(&e);
	enum tls_fail_reason fr;

	if (c->out_overflow) {
		fr = TLS_FAIL_PROTOCOL;
		snprintf(c->reason, sizeof(c->reason), "outbound ciphertext over %d bytes",
			 TLS_OUT_MAX);
	} else if (e) {
		fr = classify(e);
		if (fr == TLS_FAIL_EOF)
			snprintf(c->reason, sizeof(c->reason),
				 "connection closed during handshake");
		else if (fr == TLS_FAIL_VERSION)
			snprintf(c->reason, sizeof(c->reason), "%s (client offered %s)",
				 r ? r : "unsupported protocol",
				 tls_version_slot_name((enum tls_version_slot)c->offered));
		else
			snprintf(c->reason, sizeof(c->reason), "%s", r ? r : "handshake failed");
	} else if (c->eof) {
		fr = TLS_FAIL_EOF;
		snprintf(c->reason, sizeof(c->reason), "connection closed during handshake");
	} else {
		fr = TLS_FAIL_PROTOCOL;
		snprintf(c->reason, sizeof(c->reason), "TLS error %d", ssl_error);
	}
	ERR_clear_error();
	c->dead = true;
	if (c->hs_done)
		c->ctr->record_errors++;
	else
		count_failure(c, fr);
}

static int advance_handshake(struct tls_conn *c)
{
	int r, e;

	if (c->hs_done)
		return TLS_OK;
	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		handshake_finished(c);
		return TLS_OK;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		ERR_clear_error();
		return TLS_WANT_MORE;
	}
	fail(c, e);
	return TLS_ERROR;
}

int tls_feed_ciphertext(struct tls_conn *c, const uint8_t *in, size_t len, size_t *used)
{
	size_t off = 0;

	*used = 0;
	if (c->dead) {
		*used = len;
		return TLS_ERROR;
	}
	if (c->peer_closed) {
		/* Nothing after the peer's close counts (RFC 8446 6.1); taking
		 * it keeps a caller that feeds on from stalling on a full queue. */
		*used = len;
		return TLS_OK;
	}
	while (off < len && c->in.len < TLS_IN_MAX) {
		size_t n = TLS_IN_MAX - c->in.len;
		if (n > len - off)
			n = len - off;
		if (bq_append(&c->in, in + off, n, TLS_IN_MAX) != 0) {
			snprintf(c->reason, sizeof(c->reason), "out of memory");
			c->dead = true;
			count_failure(c, TLS_FAIL_PROTOCOL);
			*used = len;
			return TLS_ERROR;
		}
		off += n;
		/* During the handshake OpenSSL drains the queue as it goes, so a
		 * handshake never stalls on the cap; after it, bytes wait for
		 * tls_read_plaintext(). */
		if (!c->hs_done && advance_handshake(c) == TLS_ERROR) {
			*used = len;
			return TLS_ERROR;
		}
	}
	*used = off;
	return TLS_OK;
}

void tls_transport_eof(struct tls_conn *c)
{
	c->eof = true;
}

ssize_t tls_read_plaintext(struct tls_conn *c, uint8_t *buf, size_t cap)
{
	size_t n = 0;
	int e;

	if (c->dead)
		return TLS_ERROR;
	if (c->peer_closed)
		return TLS_CLOSED;
	if (!c->hs_done) {
		int r = advance_handshake(c);
		if (r != TLS_OK)
			return r;
	}
	if (cap == 0)
		return TLS_WANT_MORE;
	if (cap > SSIZE_MAX)
		cap = SSIZE_MAX;
	ERR_clear_error();
	if (SSL_read_ex(c->ssl, buf, cap, &n) == 1)
		return (ssize_t)n;
	e = SSL_get_error(c->ssl, 0);
	switch (e) {
	case SSL_ERROR_WANT_READ:
		ERR_clear_error();
		return TLS_WANT_MORE;
	case SSL_ERROR_ZERO_RETURN:
		c->peer_closed = c->close_notify = true;
		c->ctr->close_notify++;
		return TLS_CLOSED;
	default:
		if (is_unexpected_eof(ERR_peek_error()) || (e == SSL_ERROR_SYSCALL && c->eof)) {
			/* No close_notify: harmless for SMTP, whose own framing
			 * (the final dot and its reply) tells a complete message
			 * from a cut one; still worth counting. */
			ERR_clear_error();
			c->peer_closed = true;
			c->ctr->unclean_eof++;
			return TLS_CLOSED;
		}
		fail(c, e);
		return TLS_ERROR;
	}
}

int tls_write_plaintext(struct tls_conn *c, const uint8_t *buf, size_t len, size_t *used)
{
	size_t off = 0;

	*used = 0;
	if (c->dead)
		return TLS_ERROR;
	if (c->shutdown_sent)
		return TLS_CLOSED;
	if (!c->hs_done)
		return TLS_WANT_MORE;
	while (off < len) {
		size_t n = len - off, w = 0;
		if (c->out.len >= TLS_OUT_HIGH)
			break;
		if (n > 16384)
			n = 16384;
		ERR_clear_error();
		if (SSL_write_ex(c->ssl, buf + off, n, &w) != 1) {
			fail(c, SSL_get_error(c->ssl, 0));
			*used = off;
			return TLS_ERROR;
		}
		off += w;
	}
	*used = off;
	return off < len ? TLS_WANT_MORE : TLS_OK;
}

void tls_pending_ciphertext(const struct tls_conn *c, const uint8_t **p, size_t *len)
{
	*p = c->out.len ? c->out.p + c->out.off : NULL;
	*len = c->out.len;
}

void tls_consume_ciphertext(struct tls_conn *c, size_t n)
{
	bq_take(&c->out, n);
}

int tls_shutdown(struct tls_conn *c)
{
	if (c->dead)
		return TLS_ERROR;
	if (c->shutdown_sent)
		return TLS_OK;
	c->shutdown_sent = true;
	/* Before the handshake there is nothing to protect, and after an EOF
	 * nobody to tell: the transport just closes. */
	if (!c->hs_done || (c->peer_closed && !c->close_notify))
		return TLS_OK;
	ERR_clear_error();
	if (SSL_shutdown(c->ssl) < 0) {
		ERR_clear_error();
		return TLS_ERROR;
	}
	return TLS_OK;
}

bool tls_handshake_done(const struct tls_conn *c)
{
	return c->hs_done;
}

bool tls_session_resumed(const struct tls_conn *c)
{
	return c->hs_done && SSL_session_reused(c->ssl);
}

bool tls_close_notify_received(const struct tls_conn *c)
{
	return c->close_notify;
}

const char *tls_version_name(const struct tls_conn *c)
{
	return c->hs_done ? SSL_get_version(c->ssl) : "";
}

const char *tls_cipher_name(const struct tls_conn *c)
{
	const char *n = c->hs_done ? SSL_get_cipher_name(c->ssl) : NULL;
	return n ? n : "";
}

int tls_cipher_bits(const struct tls_conn *c)
{
	return c->hs_done ? SSL_get_cipher_bits(c->ssl, NULL) : 0;
}

enum tls_version_slot tls_offered_version(const struct tls_conn *c)
{
	return (enum tls_version_slot)c->offered;
}

const char *tls_error_reason(const struct tls_conn *c)
{
	return c->reason;
}

const struct tls_peer_cert *tls_peer_cert(const struct tls_conn *c)
{
	return c->peer;
}
