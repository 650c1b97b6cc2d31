/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the TLS layer: arbitrary bytes as ciphertext from a
 * client into a fresh server-side tls_conn.  The certificate is made once,
 * through the OpenSSL API, on the first input.
 *
 * The first octet chooses how the rest is cut and what happens around it:
 *   bits 0-3  piece size (see cuts[]), so the fuzzer explores segmentation
 *   bit 4     the transport ends (EOF) after the last piece
 *   bit 5     close_notify is queued when the input is done
 *   bit 6     the server requests a client certificate
 *   bit 7     plaintext is read one byte at a time
 * Invariants: *used never exceeds what was offered, inbound buffering never
 * passes TLS_IN_MAX, outbound ciphertext never passes TLS_OUT_MAX, a read
 * never returns more than asked, a connection that failed stays failed, and
 * every connection lands in exactly one counter bucket.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "gateway/session/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tls_server_ctx *srv_plain, *srv_certreq;

static const size_t cuts[16] = { SIZE_MAX, 1,   2,   3,    5,    7, 13,    64,
				 100,      255, 512, 1500, 4096, 5, 16384, 300 };

static struct tls_server_ctx *make_server(bool client_cert)
{
	char dir[] = "/tmp/tesgate-fuzz-tls-XXXXXX", cert[64], key[64], err[256];
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	struct tls_server_ctx *s = NULL;
	struct tls_server_config cfg;
	FILE *f;

	if (!pk || !x || !mkdtemp(dir))
		abort();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, pk);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"fuzz.tesgate.test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	if (!X509_sign(x, pk, EVP_sha256()))
		abort();
	snprintf(cert, sizeof(cert), "%s/c.pem", dir);
	snprintf(key, sizeof(key), "%s/k.pem", dir);
	f = fopen(cert, "w");
	if (!f || !PEM_write_X509(f, x))
		abort();
	fclose(f);
	f = fopen(key, "w");
	if (!f || !PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL))
		abort();
	fclose(f);

	tls_server_config_defaults(&cfg);
	cfg.cert_file = cert;
	cfg.key_file = key;
	cfg.request_client_cert = client_cert;
	s = tls_server_ctx_new(&cfg, err, sizeof(err));
	if (!s) {
		fprintf(stderr, "fuzz_tls: %s\n", err);
		abort();
	}
	unlink(cert);
	unlink(key);
	rmdir(dir);
	X509_free(x);
	EVP_PKEY_free(pk);
	return s;
}

static void drain(struct tls_conn *c)
{
	const uint8_t *p;
	size_t n;

	tls_pending_ciphertext(c, &p, &n);
	if (n > TLS_OUT_MAX)
		abort();
	if (n && !p)
		abort();
	tls_consume_ciphertext(c, n);
}

static int read_all(struct tls_conn *c, uint8_t *buf, size_t cap)
{
	for (;;) {
		ssize_t r = tls_read_plaintext(c, buf, cap);
		if (r > 0) {
			if ((size_t)r > cap)
				abort();
			continue;
		}
		return (int)r;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tls_counters ctr = { 0 };
	uint8_t buf[16384];
	bool failed = false;

	if (!srv_plain) {
		srv_plain = make_server(false);
		srv_certreq = make_server(true);
	}
	if (size == 0)
		return 0;
	uint8_t sel = data[0];
	size_t cut = cuts[sel & 0x0f], rcap = (sel & 0x80) ? 1 : sizeof(buf);
	data++;
	size--;

	struct tls_conn *c = tls_conn_new((sel & 0x40) ? srv_certreq : srv_plain, &ctr);
	if (!c)
		return 0;
	size_t off = 0;
	while (off < size) {
		size_t k = size - off < cut ? size - off : cut, used = 0;
		int st = tls_feed_ciphertext(c, data + off, k, &used);
		if (used > k)
			abort();
		if (st == TLS_ERROR) {
			failed = true;
			if (used != k)
				abort();
		} else if (st != TLS_OK) {
			abort();
		} else if (failed) {
			abort(); /* a dead connection came back to life */
		}
		off += used;
		drain(c);
		int r = read_all(c, buf, rcap);
		if (r == TLS_ERROR)
			failed = true;
		else if (failed)
			abort();
		drain(c);
		if (used == 0) {
			if (r == TLS_CLOSED)
				break;
			/* A full inbound queue with nothing readable cannot
			 * happen: two records' worth always holds a complete
			 * one, readable or bad. */
			if (r != TLS_ERROR && st != TLS_ERROR)
				abort();
		}
	}
	if (sel & 0x10) {
		tls_transport_eof(c);
		int r = read_all(c, buf, rcap);
		if (r == TLS_WANT_MORE)
			abort(); /* after EOF there is nothing more to wait for */
	}
	if (sel & 0x20)
		tls_shutdown(c);
	drain(c);
	size_t w;
	(void)tls_write_plaintext(c, (const uint8_t *)"250 ok\r\n", 8, &w);
	drain(c);
	(void)tls_version_name(c);
	(void)tls_cipher_name(c);
	(void)tls_error_reason(c);
	(void)tls_peer_cert(c);
	tls_conn_free(c);

	uint64_t total = 0;
	for (int v = 0; v < TLS_V_COUNT; v++)
		total += ctr.full[v] + ctr.resumed[v] + ctr.failed[v];
	if (total != 1)
		abort();
	return 0;
}
