/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for what libtesetcd reads from the network
 * (controlplane/store/etcd/etcd_parse.c): the input is taken as one answer and
 * given to every answer parser (each must cope with another call's answer),
 * and as a watch stream, cut into chunks of 1 octet, of a size the input
 * picks, and whole, with every object it yields parsed as a watch message.
 * The three cuttings must yield the same objects.  The seeds are answers
 * captured from etcd 3.4 (tests/fuzz/corpus/etcd/).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(const char *err, size_t errlen)
{
	if (!memchr(err, '\0', errlen))
		abort();
}

static void check_kv(const struct etcd_kv *kv)
{
	/* The promised NUL after keys and values. */
	if (!kv->key || kv->key[kv->key_len] != 0 || !kv->value || kv->value[kv->value_len] != 0)
		abort();
}

static void parse_answer(const json_t *root)
{
	char err[256];
	struct etcd_rpc_error e;
	etcd_parse_error(root, &e);
	check_err(e.message, sizeof(e.message));

	struct etcd_range_result rr;
	if (etcd_parse_range(root, &rr, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < rr.nkvs; i++)
			check_kv(&rr.kvs[i]);
		etcd_range_result_free(&rr);
	}
	check_err(err, sizeof(err));
	struct etcd_put_result pr;
	if (etcd_parse_put(root, &pr, err, sizeof(err)) == 0) {
		if (pr.has_prev)
			check_kv(&pr.prev_kv);
		etcd_put_result_free(&pr);
	}
	struct etcd_delete_result dr;
	if (etcd_parse_delete(root, &dr, err, sizeof(err)) == 0)
		etcd_delete_result_free(&dr);
	struct etcd_txn_result tr;
	if (etcd_parse_txn(root, &tr, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < tr.nresponses; i++)
			for (size_t j = 0; j < tr.responses[i].nkvs; j++)
				check_kv(&tr.responses[i].kvs[j]);
		etcd_txn_result_free(&tr);
	}
	check_err(err, sizeof(err));
	int64_t a, b;
	etcd_parse_lease_grant(root, &a, &b, err, sizeof(err));
	etcd_parse_lease_keepalive(root, &a, &b, err, sizeof(err));
	struct etcd_header h;
	etcd_parse_empty(root, &h, err, sizeof(err));
	char *tok;
	if (etcd_parse_auth(root, &tok, err, sizeof(err)) == 0) {
		for (const char *p = tok; *p; p++)
			if (*p <= 0x20 || *p >= 0x7f)
				abort();
		free(tok);
	}
	check_err(err, sizeof(err));
}

static void parse_watch(const json_t *root)
{
	char err[256];
	struct etcd_watch_response r;
	struct etcd_rpc_error e;
	if (etcd_parse_watch_response(root, &r, &e, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < r.nevents; i++) {
			check_kv(&r.events[i].kv);
			if (i > 0 && r.events[i].kv.mod_revision < r.events[i - 1].kv.mod_revision)
				abort();
		}
		check_err(r.cancel_reason, sizeof(r.cancel_reason));
		etcd_watch_response_free(&r);
	}
	check_err(err, sizeof(err));
}

struct seen {
	uint64_t hash; /* of every object, in order */
	size_t n;
};

static int on_object(const char *obj, size_t len, void *ctx)
{
	struct seen *s = ctx;
	if (len == 0 || obj[0] != '{' || obj[len - 1] != '}')
		abort();
	for (size_t i = 0; i < len; i++)
		s->hash = (s->hash ^ (uint8_t)obj[i]) * 0x100000001b3ULL;
	s->hash = (s->hash ^ 0xff) * 0x100000001b3ULL;
	s->n++;
	json_error_t jerr;
	json_t *root = json_loadb(obj, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root) {
		parse_watch(root);
		json_decref(root);
	}
	return 0;
}

/* The stream fed in chunks of chunk octets, with a small cap so that the
 * size limit is reached too. */
static void stream(const uint8_t *data, size_t size, size_t chunk, struct seen *s, int *rc)
{
	struct etcd_stream st;
	etcd_stream_init(&st, 4096);
	memset(s, 0, sizeof(*s));
	s->hash = 0xcbf29ce484222325ULL;
	*rc = 0;
	for (size_t off = 0; off < size && *rc == 0; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		*rc = etcd_stream_feed(&st, data + off, n, on_object, s);
	}
	if (*rc != 0 && *rc != -1)
		abort();
	if (*rc == -1)
		check_err(st.err, sizeof(st.err));
	etcd_stream_free(&st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t jerr;
	json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
	if (root) {
		parse_answer(root);
		parse_watch(root);
		json_decref(root);
	}

	struct seen whole, ones, some;
	int rw, r1, rs;
	stream(data, size, size ? size : 1, &whole, &rw);
	stream(data, size, 1, &ones, &r1);
	stream(data, size, 1 + (size % 61), &some, &rs);
	/* Where the input is cut must not change what comes out (an error
	 * ends the stream at the same object, whatever the cutting). */
	if (rw != r1 || rw != rs || whole.n != ones.n || whole.n != some.n ||
	    whole.hash != ones.hash || whole.hash != some.hash)
		abort();

	uint8_t *dec;
	size_t declen;
	if (etcd_b64_decode((const char *)data, size, &dec, &declen) == 0) {
		char *enc = etcd_b64_encode(dec, declen);
		/* Strict decoding: only the canonical form decodes. */
		if (!enc || strlen(enc) != size || memcmp(enc, data, size) != 0)
			abort();
		free(enc);
		free(dec);
	}
	int64_t i64;
	uint64_t u64;
	etcd_parse_i64_text((const char *)data, size, &i64);
	etcd_parse_u64_text((const char *)data, size, &u64);
	char text[64];
	etcd_key_text(data, size, text, sizeof(text));
	check_err(text, sizeof(text));
	return 0;
}
