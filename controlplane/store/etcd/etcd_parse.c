/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Parsers for what etcd's JSON gateway sends.  The gateway marshals protobuf
 * messages with their original field names and leaves out every field at its
 * default (false, 0, empty), so an absent field means zero; a present field
 * of the wrong type is an error, not a zero.
 */
#include "etcd_parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define PRINTF_LIKE(a, b) __attribute__((format(printf, a, b)))
#else
#define PRINTF_LIKE(a, b)
#endif

static void PRINTF_LIKE(3, 4) seterr(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* --- base64 ---------------------------------------------------------------- */

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *etcd_b64_encode(const void *p, size_t n)
{
	const uint8_t *in = p;
	if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
		return NULL;
	char *out = malloc((n + 2) / 3 * 4 + 1);
	if (!out)
		return NULL;
	size_t o = 0, i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = b64_alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64_alphabet[v >> 18];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = b64_alphabet[(v >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
	return out;
}

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int etcd_b64_decode(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	if (len % 4 != 0)
		return -1;
	size_t pad = 0;
	if (len >= 4 && s[len - 1] == '=')
		pad = s[len - 2] == '=' ? 2 : 1;
	size_t n = len / 4 * 3 - pad;
	uint8_t *buf = malloc(n + 1);
	if (!buf)
		return -1;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		bool last = i + 4 == len;
		for (int k = 0; k < 4; k++) {
			bool padded = last && k >= 4 - (int)pad;
			v[k] = padded ? 0 : b64_value((unsigned char)s[i + k]);
			if (v[k] < 0)
				goto bad;
		}
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
			     (uint32_t)v[3];
		buf[o++] = (uint8_t)(w >> 16);
		if (!(last && pad == 2))
			buf[o++] = (uint8_t)(w >> 8);
		else if (w & 0xffff)
			goto bad; /* bits past the end: not canonical */
		if (!(last && pad >= 1))
			buf[o++] = (uint8_t)w;
		else if (pad == 1 && (w & 0xff))
			goto bad;
	}
	buf[o] = 0;
	*out = buf;
	*outlen = o;
	return 0;
bad:
	free(buf);
	return -1;
}

/* --- numbers ----------------------------------------------------------- */

static int parse_digits(const char *s, size_t len, uint64_t limit, uint64_t *out)
{
	if (len == 0 || len > 20)
		return -1;
	if (s[0] == '0' && len > 1)
		return -1;
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (limit - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int etcd_parse_u64_text(const char *s, size_t len, uint64_t *out)
{
	return parse_digits(s, len, UINT64_MAX, out);
}

int etcd_parse_i64_text(const char *s, size_t len, int64_t *out)
{
	uint64_t v;
	if (len > 0 && s[0] == '-') {
		/* "-0" is not how anyone writes zero. */
		if (parse_digits(s + 1, len - 1, (uint64_t)INT64_MAX + 1, &v) != 0 || v == 0)
			return -1;
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
		return 0;
	}
	if (parse_digits(s, len, INT64_MAX, &v) != 0)
		return -1;
	*out = (int64_t)v;
	return 0;
}

int etcd_json_i64(const json_t *v, int64_t *out)
{
	*out = 0;
	if (!v)
		return 0;
	if (json_is_string(v))
		return etcd_parse_i64_text(json_string_value(v), json_string_length(v), out);
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return 0;
	}
	return -1;
}

int etcd_json_u64(const json_t *v, uint64_t *out)
{
	*out = 0;
	if (!v)
		return 0;
	if (json_is_string(v))
		return etcd_parse_u64_text(json_string_value(v), json_string_length(v), out);
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	return -1;
}

/* --- field helpers ------------------------------------------------------------ */

static int get_i64(const json_t *o, const char *name, int64_t *out, const char *where, char *err,
		   size_t errlen)
{
	if (etcd_json_i64(json_object_get(o, name), out) != 0) {
		seterr(err, errlen, "%s%s%s: not a 64-bit integer", where, *where ? "." : "", name);
		return -1;
	}
	return 0;
}

static int get_bool(const json_t *o, const char *name, bool *out, const char *where, char *err,
		    size_t errlen)
{
	const json_t *v = json_object_get(o, name);
	*out = false;
	if (!v)
		return 0;
	if (!json_is_boolean(v)) {
		seterr(err, errlen, "%s%s%s: not a boolean", where, *where ? "." : "", name);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

/* An optional object member: NULL when absent, -1 when not an object. */
static int get_object(const json_t *o, const char *name, const json_t **out, const char *where,
		      char *err, size_t errlen)
{
	*out = json_object_get(o, name);
	if (*out && !json_is_object(*out)) {
		seterr(err, errlen, "%s%s%s: not an object", where, *where ? "." : "", name);
		return -1;
	}
	return 0;
}

static int get_array(const json_t *o, const char *name, const json_t **out, const char *where,
		     char *err, size_t errlen)
{
	*out = json_object_get(o, name);
	if (*out && !json_is_array(*out)) {
		seterr(err, errlen, "%s%s%s: not an array", where, *where ? "." : "", name);
		return -1;
	}
	return 0;
}

static int get_bytes(const json_t *o, const char *name, uint8_t **out, size_t *len,
		     const char *where, char *err, size_t errlen)
{
	const json_t *v = json_object_get(o, name);
	*out = NULL;
	*len = 0;
	if (v && !json_is_string(v)) {
		seterr(err, errlen, "%s.%s: not a string", where, name);
		return -1;
	}
	const char *s = v ? json_string_value(v) : "";
	size_t sl = v ? json_string_length(v) : 0;
	if (etcd_b64_decode(s, sl, out, len) != 0) {
		seterr(err, errlen, "%s.%s: not valid base64", where, name);
		return -1;
	}
	return 0;
}

/* --- errors and headers ----------------------------------------------- */

static void copy_msg(char *dst, size_t dstlen, const json_t *v)
{
	const char *s = json_is_string(v) ? json_string_value(v) : "";
	size_t n = json_is_string(v) ? json_string_length(v) : 0;
	size_t o = 0;
	/* Control characters would garble a log line. */
	for (size_t i = 0; i < n && o + 1 < dstlen; i++)
		dst[o++] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	dst[o] = '\0';
}

int etcd_parse_error(const json_t *root, struct etcd_rpc_error *e)
{
	memset(e, 0, sizeof(*e));
	const json_t *err = json_object_get(root, "error");
	if (!err)
		return 0;
	const json_t *code, *msg;
	if (json_is_object(err)) {
		code = json_object_get(err, "grpc_code");
		msg = json_object_get(err, "message");
	} else {
		code = json_object_get(root, "code");
		msg = json_object_get(root, "message");
		if (!json_is_string(msg))
			msg = err;
	}
	if (json_is_integer(code) && json_integer_value(code) >= 0 &&
	    json_integer_value(code) <= 1000)
		e->code = (int)json_integer_value(code);
	else
		e->code = 2; /* Unknown */
	copy_msg(e->message, sizeof(e->message), msg);
	if (!e->message[0])
		snprintf(e->message, sizeof(e->message), "error without a message");
	return 1;
}

int etcd_parse_header(const json_t *o, struct etcd_header *h, char *err, size_t errlen)
{
	memset(h, 0, sizeof(*h));
	if (!json_is_object(o)) {
		seterr(err, errlen, "no header: not an etcd answer");
		return -1;
	}
	if (etcd_json_u64(json_object_get(o, "cluster_id"), &h->cluster_id) != 0 ||
	    etcd_json_u64(json_object_get(o, "member_id"), &h->member_id) != 0) {
		seterr(err, errlen, "header: cluster_id or member_id is not a 64-bit integer");
		return -1;
	}
	if (get_i64(o, "revision", &h->revision, "header", err, errlen) != 0 ||
	    get_i64(o, "raft_term", &h->raft_term, "header", err, errlen) != 0)
		return -1;
	if (h->revision < 0) {
		seterr(err, errlen, "header.revision: negative");
		return -1;
	}
	return 0;
}

void etcd_kv_free(struct etcd_kv *kv)
{
	if (!kv)
		return;
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

int etcd_parse_kv(const json_t *o, struct etcd_kv *kv, char *err, size_t errlen)
{
	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(o)) {
		seterr(err, errlen, "kv: not an object");
		return -1;
	}
	if (get_bytes(o, "key", &kv->key, &kv->key_len, "kv", err, errlen) != 0)
		return -1;
	if (get_bytes(o, "value", &kv->value, &kv->value_len, "kv", err, errlen) != 0 ||
	    get_i64(o, "create_revision", &kv->create_revision, "kv", err, errlen) != 0 ||
	    get_i64(o, "mod_revision", &kv->mod_revision, "kv", err, errlen) != 0 ||
	    get_i64(o, "version", &kv->version, "kv", err, errlen) != 0 ||
	    get_i64(o, "lease", &kv->lease, "kv", err, errlen) != 0) {
		etcd_kv_free(kv);
		return -1;
	}
	if (kv->key_len == 0 || kv->create_revision < 0 || kv->mod_revision < 0 ||
	    kv->version < 0) {
		seterr(err, errlen, "kv: empty key or negative revision");
		etcd_kv_free(kv);
		return -1;
	}
	return 0;
}

static void free_kvs(struct etcd_kv *kvs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		etcd_kv_free(&kvs[i]);
	free(kvs);
}

/* An optional array of kvs. */
static int parse_kvs(const json_t *o, const char *name, struct etcd_kv **out, size_t *n, char *err,
		     size_t errlen)
{
	const json_t *a;
	*out = NULL;
	*n = 0;
	if (get_array(o, name, &a, "", err, errlen) != 0)
		return -1;
	if (!a || json_array_size(a) == 0)
		return 0;
	size_t cnt = json_array_size(a);
	struct etcd_kv *kvs = calloc(cnt, sizeof(*kvs));
	if (!kvs) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < cnt; i++) {
		char sub[128];
		if (etcd_parse_kv(json_array_get(a, i), &kvs[i], sub, sizeof(sub)) != 0) {
			seterr(err, errlen, "%s[%zu]: %s", name, i, sub);
			free_kvs(kvs, i);
			return -1;
		}
	}
	*out = kvs;
	*n = cnt;
	return 0;
}

/* --- answers -------------------------------------------------------------- */

void etcd_range_result_free(struct etcd_range_result *r)
{
	if (!r)
		return;
	free_kvs(r->kvs, r->nkvs);
	memset(r, 0, sizeof(*r));
}

static int parse_range_body(const json_t *o, struct etcd_range_result *out, char *err,
			    size_t errlen)
{
	if (parse_kvs(o, "kvs", &out->kvs, &out->nkvs, err, errlen) != 0)
		return -1;
	if (get_bool(o, "more", &out->more, "", err, errlen) != 0 ||
	    get_i64(o, "count", &out->count, "", err, errlen) != 0) {
		etcd_range_result_free(out);
		return -1;
	}
	return 0;
}

int etcd_parse_range(const json_t *root, struct etcd_range_result *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (etcd_parse_header(json_object_get(root, "header"), &out->header, err, errlen) != 0)
		return -1;
	struct etcd_header h = out->header;
	if (parse_range_body(root, out, err, errlen) != 0)
		return -1;
	out->header = h;
	return 0;
}

void etcd_put_result_free(struct etcd_put_result *r)
{
	if (!r)
		return;
	etcd_kv_free(&r->prev_kv);
	memset(r, 0, sizeof(*r));
}

static int parse_prev(const json_t *o, bool *has, struct etcd_kv *kv, char *err, size_t errlen)
{
	const json_t *p;
	*has = false;
	if (get_object(o, "prev_kv", &p, "", err, errlen) != 0)
		return -1;
	if (!p)
		return 0;
	char sub[128];
	if (etcd_parse_kv(p, kv, sub, sizeof(sub)) != 0) {
		seterr(err, errlen, "prev_kv: %s", sub);
		return -1;
	}
	*has = true;
	return 0;
}

int etcd_parse_put(const json_t *root, struct etcd_put_result *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (etcd_parse_header(json_object_get(root, "header"), &out->header, err, errlen) != 0)
		return -1;
	return parse_prev(root, &out->has_prev, &out->prev_kv, err, errlen);
}

void etcd_delete_result_free(struct etcd_delete_result *r)
{
	if (!r)
		return;
	free_kvs(r->prev_kvs, r->nprev);
	memset(r, 0, sizeof(*r));
}

int etcd_parse_delete(const json_t *root, struct etcd_delete_result *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (etcd_parse_header(json_object_get(root, "header"), &out->header, err, errlen) != 0)
		return -1;
	if (get_i64(root, "deleted", &out->deleted, "", err, errlen) != 0)
		return -1;
	return parse_kvs(root, "prev_kvs", &out->prev_kvs, &out->nprev, err, errlen);
}

static void op_result_free(struct etcd_op_result *r)
{
	free_kvs(r->kvs, r->nkvs);
	memset(r, 0, sizeof(*r));
}

void etcd_txn_result_free(struct etcd_txn_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nresponses; i++)
		op_result_free(&r->responses[i]);
	free(r->responses);
	memset(r, 0, sizeof(*r));
}

/* One element of a txn's responses: exactly one of response_range,
 * response_put, response_delete_range.  (A nested response_txn needs a
 * nested request, which this client never sends.) */
static int parse_op_result(const json_t *o, struct etcd_op_result *r, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		enum etcd_op_type type;
	} kinds[] = {
		{ "response_range", ETCD_OP_RANGE },
		{ "response_put", ETCD_OP_PUT },
		{ "response_delete_range", ETCD_OP_DELETE },
	};
	const json_t *body = NULL;
	memset(r, 0, sizeof(*r));
	if (!json_is_object(o)) {
		seterr(err, errlen, "not an object");
		return -1;
	}
	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		const json_t *b = json_object_get(o, kinds[k].name);
		if (!b)
			continue;
		if (body || !json_is_object(b)) {
			seterr(err, errlen, "not exactly one response object");
			return -1;
		}
		body = b;
		r->type = kinds[k].type;
	}
	if (!body) {
		seterr(err, errlen, "no response_range, response_put or response_delete_range");
		return -1;
	}
	const json_t *h;
	if (get_object(body, "header", &h, "", err, errlen) != 0 ||
	    get_i64(h, "revision", &r->revision, "header", err, errlen) != 0)
		return -1;
	switch (r->type) {
	case ETCD_OP_RANGE: {
		struct etcd_range_result rr = { 0 };
		if (parse_range_body(body, &rr, err, errlen) != 0)
			return -1;
		r->kvs = rr.kvs;
		r->nkvs = rr.nkvs;
		r->more = rr.more;
		r->count = rr.count;
		return 0;
	}
	case ETCD_OP_PUT: {
		bool has;
		struct etcd_kv kv;
		if (parse_prev(body, &has, &kv, err, errlen) != 0)
			return -1;
		if (has) {
			r->kvs = malloc(sizeof(*r->kvs));
			if (!r->kvs) {
				etcd_kv_free(&kv);
				seterr(err, errlen, "out of memory");
				return -1;
			}
			r->kvs[0] = kv;
			r->nkvs = 1;
		}
		return 0;
	}
	case ETCD_OP_DELETE:
		if (get_i64(body, "deleted", &r->deleted, "", err, errlen) != 0)
			return -1;
		return parse_kvs(body, "prev_kvs", &r->kvs, &r->nkvs, err, errlen);
	}
	return -1;
}

int etcd_parse_txn(const json_t *root, struct etcd_txn_result *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (etcd_parse_header(json_object_get(root, "header"), &out->header, err, errlen) != 0)
		return -1;
	const json_t *a;
	if (get_bool(root, "succeeded", &out->succeeded, "", err, errlen) != 0 ||
	    get_array(root, "responses", &a, "", err, errlen) != 0)
		return -1;
	size_t n = a ? json_array_size(a) : 0;
	if (n == 0)
		return 0;
	out->responses = calloc(n, sizeof(*out->responses));
	if (!out->responses) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char sub[160];
		if (parse_op_result(json_array_get(a, i), &out->responses[i], sub, sizeof(sub)) !=
		    0) {
			seterr(err, errlen, "responses[%zu]: %s", i, sub);
			etcd_txn_result_free(out);
			return -1;
		}
		out->nresponses = i + 1;
	}
	return 0;
}

int etcd_parse_lease_grant(const json_t *root, int64_t *id, int64_t *ttl, char *err, size_t errlen)
{
	struct etcd_header h;
	*id = *ttl = 0;
	if (etcd_parse_header(json_object_get(root, "header"), &h, err, errlen) != 0 ||
	    get_i64(root, "ID", id, "", err, errlen) != 0 ||
	    get_i64(root, "TTL", ttl, "", err, errlen) != 0)
		return -1;
	const json_t *e = json_object_get(root, "error");
	if (json_is_string(e) && json_string_length(e) > 0) {
		seterr(err, errlen, "lease grant refused: %.200s", json_string_value(e));
		return -1;
	}
	if (*id == 0) {
		seterr(err, errlen, "lease grant: no lease ID in the answer");
		return -1;
	}
	return 0;
}

int etcd_parse_lease_keepalive(const json_t *root, int64_t *id, int64_t *ttl, char *err,
			       size_t errlen)
{
	struct etcd_header h;
	const json_t *res;
	*id = *ttl = 0;
	if (get_object(root, "result", &res, "", err, errlen) != 0)
		return -1;
	if (!res) {
		seterr(err, errlen, "no result: not an etcd keepalive answer");
		return -1;
	}
	if (etcd_parse_header(json_object_get(res, "header"), &h, err, errlen) != 0 ||
	    get_i64(res, "ID", id, "result", err, errlen) != 0 ||
	    get_i64(res, "TTL", ttl, "result", err, errlen) != 0)
		return -1;
	return 0;
}

int etcd_parse_empty(const json_t *root, struct etcd_header *h, char *err, size_t errlen)
{
	return etcd_parse_header(json_object_get(root, "header"), h, err, errlen);
}

int etcd_parse_auth(const json_t *root, char **token, char *err, size_t errlen)
{
	struct etcd_header h;
	*token = NULL;
	if (etcd_parse_header(json_object_get(root, "header"), &h, err, errlen) != 0)
		return -1;
	const json_t *t = json_object_get(root, "token");
	if (!json_is_string(t) || json_string_length(t) == 0 || json_string_length(t) > 4096) {
		seterr(err, errlen, "no token (or one over 4096 bytes) in the answer");
		return -1;
	}
	const char *s = json_string_value(t);
	for (size_t i = 0; i < json_string_length(t); i++) {
		if (s[i] <= 0x20 || s[i] >= 0x7f) {
			seterr(err, errlen, "the token holds a byte that cannot go in a header");
			return -1;
		}
	}
	*token = strdup(s);
	if (!*token) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* --- watch ----------------------------------------------------------------- */

void etcd_event_free(struct etcd_event *ev)
{
	etcd_kv_free(&ev->kv);
	etcd_kv_free(&ev->prev_kv);
}

void etcd_watch_response_free(struct etcd_watch_response *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nevents; i++)
		etcd_event_free(&r->events[i]);
	free(r->events);
	memset(r, 0, sizeof(*r));
}

static int parse_event(const json_t *o, struct etcd_event *ev, char *err, size_t errlen)
{
	memset(ev, 0, sizeof(*ev));
	if (!json_is_object(o)) {
		seterr(err, errlen, "not an object");
		return -1;
	}
	const json_t *t = json_object_get(o, "type");
	if (!t || (json_is_string(t) && strcmp(json_string_value(t), "PUT") == 0) ||
	    (json_is_integer(t) && json_integer_value(t) == 0)) {
		ev->type = ETCD_EVENT_PUT;
	} else if ((json_is_string(t) && strcmp(json_string_value(t), "DELETE") == 0) ||
		   (json_is_integer(t) && json_integer_value(t) == 1)) {
		ev->type = ETCD_EVENT_DELETE;
	} else {
		seterr(err, errlen, "type: neither PUT nor DELETE");
		return -1;
	}
	const json_t *kv;
	if (get_object(o, "kv", &kv, "", err, errlen) != 0)
		return -1;
	if (!kv) {
		seterr(err, errlen, "no kv");
		return -1;
	}
	char sub[128];
	if (etcd_parse_kv(kv, &ev->kv, sub, sizeof(sub)) != 0) {
		seterr(err, errlen, "%s", sub);
		return -1;
	}
	if (ev->kv.mod_revision <= 0) {
		seterr(err, errlen, "kv.mod_revision: missing");
		etcd_event_free(ev);
		return -1;
	}
	if (parse_prev(o, &ev->has_prev, &ev->prev_kv, err, errlen) != 0) {
		etcd_event_free(ev);
		return -1;
	}
	return 0;
}

int etcd_parse_watch_response(const json_t *root, struct etcd_watch_response *out,
			      struct etcd_rpc_error *e, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_object(root)) {
		seterr(err, errlen, "not a JSON object");
		return -1;
	}
	if (etcd_parse_error(root, e))
		return 1;
	const json_t *r;
	if (get_object(root, "result", &r, "", err, errlen) != 0)
		return -1;
	if (!r) {
		seterr(err, errlen, "neither result nor error: not an etcd watch message");
		return -1;
	}
	if (etcd_parse_header(json_object_get(r, "header"), &out->header, err, errlen) != 0)
		return -1;
	const json_t *a, *reason;
	if (get_i64(r, "watch_id", &out->watch_id, "result", err, errlen) != 0 ||
	    get_bool(r, "created", &out->created, "result", err, errlen) != 0 ||
	    get_bool(r, "canceled", &out->canceled, "result", err, errlen) != 0 ||
	    get_bool(r, "fragment", &out->fragment, "result", err, errlen) != 0 ||
	    get_i64(r, "compact_revision", &out->compact_revision, "result", err, errlen) != 0 ||
	    get_array(r, "events", &a, "result", err, errlen) != 0)
		return -1;
	reason = json_object_get(r, "cancel_reason");
	if (reason && !json_is_string(reason)) {
		seterr(err, errlen, "result.cancel_reason: not a string");
		return -1;
	}
	copy_msg(out->cancel_reason, sizeof(out->cancel_reason), reason);
	size_t n = a ? json_array_size(a) : 0;
	if (n == 0)
		return 0;
	out->events = calloc(n, sizeof(*out->events));
	if (!out->events) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	int64_t last = 0;
	for (size_t i = 0; i < n; i++) {
		char sub[160];
		if (parse_event(json_array_get(a, i), &out->events[i], sub, sizeof(sub)) != 0) {
			seterr(err, errlen, "events[%zu]: %s", i, sub);
			etcd_watch_response_free(out);
			return -1;
		}
		out->nevents = i + 1;
		/* A stream that goes back in time would make resuming lose or
		 * repeat events: refuse it. */
		if (out->events[i].kv.mod_revision < last) {
			seterr(err, errlen, "events[%zu]: revision %lld after %lld: out of order",
			       i, (long long)out->events[i].kv.mod_revision, (long long)last);
			etcd_watch_response_free(out);
			return -1;
		}
		last = out->events[i].kv.mod_revision;
	}
	return 0;
}

/* --- the stream splitter ----------------------------------------------------- */

void etcd_stream_init(struct etcd_stream *s, size_t max)
{
	memset(s, 0, sizeof(*s));
	s->max = max ? max : ETCD_DEFAULT_WATCH_MAX_BATCH;
}

void etcd_stream_reset(struct etcd_stream *s)
{
	s->len = s->scan = 0;
	s->depth = 0;
	s->in_str = s->esc = false;
	s->too_big = false;
	s->err[0] = '\0';
}

void etcd_stream_free(struct etcd_stream *s)
{
	free(s->buf);
	s->buf = NULL;
	s->alloc = 0;
	etcd_stream_reset(s);
}

/* Scan buf[scan..len): returns the length of the first complete object
 * (which starts at 0) or 0 if there is none yet; -1 on garbage. */
static long stream_scan(struct etcd_stream *s)
{
	while (s->scan < s->len) {
		char c = s->buf[s->scan++];
		if (s->depth == 0) {
			/* Only the opening brace can be here: leading
			 * whitespace was dropped before it was stored. */
			if (c != '{') {
				snprintf(s->err, sizeof(s->err),
					 "byte 0x%02x where a JSON object should start",
					 (unsigned char)c);
				return -1;
			}
			s->depth = 1;
			continue;
		}
		if (s->in_str) {
			if (s->esc)
				s->esc = false;
			else if (c == '\\')
				s->esc = true;
			else if (c == '"')
				s->in_str = false;
			continue;
		}
		switch (c) {
		case '"':
			s->in_str = true;
			break;
		case '{':
		case '[':
			if (++s->depth > ETCD_STREAM_MAX_DEPTH) {
				snprintf(s->err, sizeof(s->err), "JSON nested deeper than %d",
					 ETCD_STREAM_MAX_DEPTH);
				return -1;
			}
			break;
		case '}':
		case ']':
			if (--s->depth == 0) {
				/* Inner mismatches are the JSON parser's to
				 * find; the outer one would cut the stream in
				 * the wrong place. */
				if (c != '}') {
					snprintf(s->err, sizeof(s->err),
						 "a JSON object closed by ']'");
					return -1;
				}
				return (long)s->scan;
			}
			break;
		default:
			break;
		}
	}
	return 0;
}

int etcd_stream_feed(struct etcd_stream *s, const void *data, size_t n, etcd_stream_cb cb,
		     void *ctx)
{
	const char *p = data;
	if (s->err[0])
		return -1;
	while (n > 0) {
		/* Whitespace between objects is never stored, so an idle
		 * stream's newlines cost nothing. */
		if (s->len == 0) {
			while (n > 0 && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
				p++;
				n--;
			}
			if (n == 0)
				break;
		}
		size_t room = s->max - s->len;
		if (room == 0) {
			snprintf(s->err, sizeof(s->err),
				 "a watch message is larger than %zu bytes (watch_max_batch)",
				 s->max);
			s->too_big = true;
			return -1;
		}
		size_t take = n < room ? n : room;
		if (s->len + take > s->alloc) {
			size_t na = s->alloc ? s->alloc : 16384;
			while (na < s->len + take)
				na *= 2;
			if (na > s->max)
				na = s->max;
			char *nb = realloc(s->buf, na);
			if (!nb) {
				snprintf(s->err, sizeof(s->err), "out of memory");
				return -1;
			}
			s->buf = nb;
			s->alloc = na;
		}
		memcpy(s->buf + s->len, p, take);
		s->len += take;
		p += take;
		n -= take;
		for (;;) {
			long end = stream_scan(s);
			if (end < 0)
				return -1;
			if (end == 0)
				break;
			s->objects++;
			int rc = cb(s->buf, (size_t)end, ctx);
			/* What follows the object moves to the front; leading
			 * whitespace is dropped so the next scan starts on
			 * its brace. */
			size_t rest = s->len - (size_t)end, skip = 0;
			while (skip < rest &&
			       (s->buf[end + skip] == ' ' || s->buf[end + skip] == '\n' ||
				s->buf[end + skip] == '\r' || s->buf[end + skip] == '\t'))
				skip++;
			memmove(s->buf, s->buf + end + skip, rest - skip);
			s->len = rest - skip;
			s->scan = 0;
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}

/* --- messages ------------------------------------------------------------ */

void etcd_key_text(const void *key, size_t len, char *out, size_t outlen)
{
	const uint8_t *k = key;
	size_t o = 0;
	if (outlen == 0)
		return;
	for (size_t i = 0; i < len; i++) {
		bool printable = k[i] >= 0x20 && k[i] < 0x7f && k[i] != '\\' && k[i] != '\'';
		size_t need = printable ? 1 : 4;
		/* Keep room for "..." and the NUL. */
		if (o + need + 4 > outlen) {
			if (o + 4 <= outlen) {
				memcpy(out + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (printable)
			out[o++] = (char)k[i];
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", k[i]);
	}
	out[o] = '\0';
}

size_t etcd_prefix_end(const void *prefix, size_t len, uint8_t *out)
{
	const uint8_t *p = prefix;
	for (size_t i = len; i > 0; i--) {
		if (p[i - 1] != 0xff) {
			memcpy(out, p, i - 1);
			out[i - 1] = (uint8_t)(p[i - 1] + 1);
			return i;
		}
	}
	out[0] = 0;
	return 1;
}
