/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TLS handshakes per second through the gateway's TLS layer (gateway/tls.c)
 * against an OpenSSL client over memory BIOs, both in this one thread: the
 * server's handshake cost plus the client's, with no network.  Run by
 * bench/run-tls.sh, which makes the certificates and prints the machine.
 *
 * Usage: bench_tls_handshake EC_CERT EC_KEY RSA_CERT RSA_KEY [SECONDS]
 *
 * Prints one line per case: TLS 1.3 and 1.2 with ECDSA P-256, TLS 1.3 with
 * RSA-2048, and TLS 1.3 and 1.2 resumed (session tickets).  A measurement,
 * never a test: nothing here passes or fails on speed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "gateway/session/tls.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds this thread spent inside the server's calls
 * (gateway/session/tls.c and the OpenSSL work it does), apart from the
 * client's: the server's cost per handshake, which is what a gateway core
 * pays.  Thread CPU time, so that time the thread spends preempted on a
 * shared machine does not count (each reading is a system call, about
 * 0.1 us, a dozen per handshake). */
static double srv_s;

static double cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define SRV(expr)                             \
	({                                    \
		double t_ = cpu_s();          \
		__typeof__(expr) r_ = (expr); \
		srv_s += cpu_s() - t_;        \
		r_;                           \
	})

static void die(const char *what)
{
	fprintf(stderr, "bench_tls_handshake: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static bool no_tickets; /* the servers made from now on issue no ticket */

static struct tls_server_ctx *server2(const char *cert, const char *key, const char *rcert,
				      const char *rkey)
{
	struct tls_server_config cfg;
	char err[512];
	struct tls_server_ctx *s;

	tls_server_config_defaults(&cfg);
	cfg.cert_file = cert;
	cfg.key_file = key;
	cfg.rsa_cert_file = rcert;
	cfg.rsa_key_file = rkey;
	cfg.tickets = !no_tickets;
	s = tls_server_ctx_new(&cfg, err, sizeof(err));
	if (!s) {
		fprintf(stderr, "bench_tls_handshake: %s\n", err);
		exit(1);
	}
	return s;
}

static struct tls_server_ctx *server(const char *cert, const char *key)
{
	return server2(cert, key, NULL, NULL);
}

static const char *client_sigalgs; /* NULL: OpenSSL's default list */

static SSL_CTX *client(int version)
{
	SSL_CTX *x = SSL_CTX_new(TLS_client_method());

	if (!x)
		die("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(x, version);
	SSL_CTX_set_max_proto_version(x, version);
	SSL_CTX_set_verify(x, SSL_VERIFY_NONE, NULL);
	if (client_sigalgs && SSL_CTX_set1_sigalgs_list(x, client_sigalgs) != 1)
		die("sigalgs");
	return x;
}

/* One handshake, client and server stepping each other until both are done;
 * returns the client's session when keep is set. */
static SSL_SESSION *handshake(struct tls_server_ctx *srv, SSL_CTX *cctx, SSL_SESSION *resume,
			      bool keep, bool *resumed)
{
	struct tls_counters ctr = { 0 };
	struct tls_conn *s = SRV(tls_conn_new(srv, &ctr));
	SSL *c = SSL_new(cctx);
	BIO *rd = BIO_new(BIO_s_mem()), *wr = BIO_new(BIO_s_mem());
	SSL_SESSION *out = NULL;
	uint8_t tmp[16384];

	if (!s || !c || !rd || !wr)
		die("out of memory");
	/* empty means "not yet", not end of stream: an EOF would mark the
	 * session unusable for resumption */
	BIO_set_mem_eof_return(rd, -1);
	BIO_set_mem_eof_return(wr, -1);
	SSL_set_bio(c, rd, wr);
	SSL_set_connect_state(c);
	if (resume)
		SSL_set_session(c, resume);
	for (int round = 0; round < 32; round++) {
		int rc = SSL_do_handshake(c), n;
		const uint8_t *q;
		size_t len, used;
		bool moved = false;

		if (rc != 1 && SSL_get_error(c, rc) != SSL_ERROR_WANT_READ)
			die("client handshake failed");
		while ((n = BIO_read(wr, tmp, sizeof(tmp))) > 0) {
			if (SRV(tls_feed_ciphertext(s, tmp, (size_t)n, &used)) == TLS_ERROR ||
			    used != (size_t)n)
				die("server handshake failed");
			moved = true;
		}
		/* the server side moves on (and writes its tickets) when read */
		while (SRV(tls_read_plaintext(s, tmp, sizeof(tmp))) > 0)
			;
		for (;;) {
			tls_pending_ciphertext(s, &q, &len);
			if (!len)
				break;
			BIO_write(rd, q, (int)len);
			tls_consume_ciphertext(s, len);
			moved = true;
		}
		/* done once a round moves nothing: TLS 1.3 tickets come last */
		if (rc == 1 && tls_handshake_done(s) && !moved) {
			/* TLS 1.3 tickets arrive after the handshake: read them */
			(void)SSL_read(c, tmp, sizeof(tmp));
			*resumed = tls_session_resumed(s);
			if (keep)
				out = SSL_get1_session(c);
			/* freed without a shutdown, OpenSSL would mark the session
			 * unusable for resumption */
			SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
			SSL_free(c);
			{
				double t1 = cpu_s();

				tls_conn_free(s);
				srv_s += cpu_s() - t1;
			}
			return out;
		}
	}
	die("handshake did not finish in 32 rounds");
	return NULL;
}

static void rate(const char *name, struct tls_server_ctx *srv, int version, bool resume,
		 double seconds)
{
	SSL_CTX *cctx = client(version);
	bool resumed = false;
	SSL_SESSION *sess = resume ? handshake(srv, cctx, NULL, true, &resumed) : NULL;
	long n = 0;
	double t0 = now_s(), t;

	srv_s = 0;
	do {
		for (int i = 0; i < 20; i++, n++) {
			handshake(srv, cctx, sess, false, &resumed);
			if (resumed != resume)
				die(resume ? "a session was not resumed"
					   : "a full handshake resumed");
		}
		t = now_s() - t0;
	} while (t < seconds);
	printf("%-30s %8.0f handshakes/s  (%ld in %.2f s); server %.1f us CPU each, %.0f per "
	       "server CPU second\n",
	       name, (double)n / t, n, t, srv_s / (double)n * 1e6, (double)n / srv_s);
	SSL_SESSION_free(sess);
	SSL_CTX_free(cctx);
}

int main(int argc, char **argv)
{
	double seconds = argc > 5 ? atof(argv[5]) : 2.0;

	if (argc < 5 || seconds <= 0) {
		fprintf(stderr, "usage: %s EC_CERT EC_KEY RSA_CERT RSA_KEY [SECONDS]\n", argv[0]);
		return 2;
	}
	struct tls_server_ctx *ec = server(argv[1], argv[2]), *rsa = server(argv[3], argv[4]);
	struct tls_server_ctx *dual = server2(argv[1], argv[2], argv[3], argv[4]);

	rate("TLS 1.3 ECDSA P-256", ec, TLS1_3_VERSION, false, seconds);
	rate("TLS 1.2 ECDSA P-256", ec, TLS1_2_VERSION, false, seconds);
	rate("TLS 1.3 RSA-2048", rsa, TLS1_3_VERSION, false, seconds);
	rate("TLS 1.3 resumed", ec, TLS1_3_VERSION, true, seconds);
	rate("TLS 1.2 resumed", ec, TLS1_2_VERSION, true, seconds);
	rate("TLS 1.3 ECDSA+RSA, any client", dual, TLS1_3_VERSION, false, seconds);
	client_sigalgs = "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:RSA+SHA256";
	rate("TLS 1.3 ECDSA+RSA, RSA client", dual, TLS1_3_VERSION, false, seconds);
	client_sigalgs = NULL;
	tls_server_ctx_free(dual);
	/* what issuing the ticket costs a full handshake */
	no_tickets = true;
	dual = server(argv[1], argv[2]);
	rate("TLS 1.3 ECDSA P-256, no ticket", dual, TLS1_3_VERSION, false, seconds);
	tls_server_ctx_free(dual);
	tls_server_ctx_free(ec);
	tls_server_ctx_free(rsa);
	return 0;
}
