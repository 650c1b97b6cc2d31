/* SPDX-License-Identifier: BSD-3-Clause */
#include "contract/ctlproto.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A frame that needed a big buffer gives it back afterwards: a connection
 * that once received a catalog should not pin a megabyte for its lifetime. */
#define DECODER_KEEP (64u * 1024u)

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- framing ---- */

void ctl_decoder_init(struct ctl_decoder *d, size_t max_frame)
{
	memset(d, 0, sizeof(*d));
	d->max_frame = max_frame ? max_frame : CTL_FRAME_MAX;
}

void ctl_decoder_free(struct ctl_decoder *d)
{
	free(d->buf);
	d->buf = NULL;
	d->len = d->cap = 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool reserve(struct ctl_decoder *d, size_t want)
{
	size_t cap;
	uint8_t *nb;

	if (want <= d->cap)
		return true;
	cap = d->cap ? d->cap : 256;
	while (cap < want)
		cap *= 2;
	if (cap > CTL_FRAME_HDR + d->max_frame)
		cap = CTL_FRAME_HDR + d->max_frame;
	nb = realloc(d->buf, cap);
	if (!nb) {
		d->failed = true;
		seterr(d->err, sizeof(d->err), "out of memory buffering a frame of %zu octets",
		       want);
		return false;
	}
	d->buf = nb;
	d->cap = cap;
	return true;
}

static void fail(struct ctl_decoder *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct ctl_decoder *d, const char *fmt, ...)
{
	va_list ap;

	d->failed = true;
	va_start(ap, fmt);
	vsnprintf(d->err, sizeof(d->err), fmt, ap);
	va_end(ap);
}

size_t ctl_decoder_feed(struct ctl_decoder *d, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t taken = 0;

	while (!d->failed && taken < len) {
		size_t want, n;

		if (d->len < CTL_FRAME_HDR) {
			want = CTL_FRAME_HDR;
		} else {
			uint32_t flen = be32(d->buf);

			if (flen > d->max_frame) {
				fail(d, "frame length %" PRIu32 " exceeds the limit of %zu octets",
				     flen, d->max_frame);
				break;
			}
			want = CTL_FRAME_HDR + (size_t)flen;
			if (d->len == want)
				break; /* a whole frame waits for ctl_decoder_next */
		}
		if (!reserve(d, want))
			break;
		n = want - d->len;
		if (n > len - taken)
			n = len - taken;
		memcpy(d->buf + d->len, p + taken, n);
		d->len += n;
		taken += n;
	}
	/* An oversized length is reported as soon as its octets are in, not
	 * when (never) the payload arrives. */
	if (!d->failed && d->len >= CTL_FRAME_HDR && be32(d->buf) > d->max_frame)
		fail(d, "frame length %" PRIu32 " exceeds the limit of %zu octets", be32(d->buf),
		     d->max_frame);
	return d->failed ? 0 : taken;
}

static void reset_frame(struct ctl_decoder *d)
{
	d->len = 0;
	if (d->cap > DECODER_KEEP) {
		free(d->buf);
		d->buf = NULL;
		d->cap = 0;
	}
}

enum ctl_rc ctl_decoder_next(struct ctl_decoder *d, json_t **out)
{
	json_error_t jerr;
	json_t *j, *v;
	uint32_t flen;

	*out = NULL;
	if (d->failed)
		return CTL_ERROR;
	if (d->len < CTL_FRAME_HDR)
		return CTL_MORE;
	flen = be32(d->buf);
	if (flen > d->max_frame) {
		fail(d, "frame length %" PRIu32 " exceeds the limit of %zu octets", flen,
		     d->max_frame);
		return CTL_ERROR;
	}
	if (d->len < CTL_FRAME_HDR + (size_t)flen)
		return CTL_MORE;
	if (flen == 0) {
		fail(d, "empty frame (a JSON object was expected)");
		return CTL_ERROR;
	}
	/* jansson checks UTF-8 and refuses NUL in strings and trailing text;
	 * duplicate keys would let two readers see different values. */
	j = json_loadb((const char *)d->buf + CTL_FRAME_HDR, flen, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		fail(d, "invalid JSON in frame at octet %d: %s", jerr.position, jerr.text);
		return CTL_ERROR;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		fail(d, "frame is not a JSON object");
		return CTL_ERROR;
	}
	v = json_object_get(j, "v");
	if (!json_is_integer(v)) {
		json_decref(j);
		fail(d, "frame has no integer protocol version \"v\"");
		return CTL_ERROR;
	}
	if (json_integer_value(v) != CTL_PROTO_VERSION) {
		fail(d, "unknown protocol version %" JSON_INTEGER_FORMAT " (this side speaks %d)",
		     json_integer_value(v), CTL_PROTO_VERSION);
		json_decref(j);
		return CTL_ERROR;
	}
	reset_frame(d);
	*out = j;
	return CTL_FRAME;
}

enum ctl_rc ctl_decoder_eof(struct ctl_decoder *d)
{
	if (d->failed)
		return CTL_ERROR;
	if (d->len == 0)
		return CTL_MORE;
	if (d->len < CTL_FRAME_HDR)
		fail(d, "truncated frame: connection closed after %zu of %d length octets", d->len,
		     CTL_FRAME_HDR);
	else
		fail(d,
		     "truncated frame: connection closed after %zu of %" PRIu32 " payload octets",
		     d->len - CTL_FRAME_HDR, be32(d->buf));
	return CTL_ERROR;
}

int ctl_frame_encode(json_t *obj, uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
	size_t n;
	uint8_t *buf;

	*out = NULL;
	*out_len = 0;
	if (!json_is_object(obj) ||
	    json_object_set_new(obj, "v", json_integer(CTL_PROTO_VERSION))) {
		seterr(err, errlen, "cannot encode: not a JSON object");
		return -1;
	}
	n = json_dumpb(obj, NULL, 0, JSON_COMPACT);
	if (n == 0) {
		seterr(err, errlen, "cannot encode the message as JSON");
		return -1;
	}
	if (n > CTL_FRAME_MAX) {
		seterr(err, errlen, "message of %zu octets exceeds the frame limit of %u", n,
		       CTL_FRAME_MAX);
		return -1;
	}
	buf = malloc(CTL_FRAME_HDR + n);
	if (!buf) {
		seterr(err, errlen, "out of memory encoding a frame");
		return -1;
	}
	if (json_dumpb(obj, (char *)buf + CTL_FRAME_HDR, n, JSON_COMPACT) != n) {
		free(buf);
		seterr(err, errlen, "message changed while being encoded");
		return -1;
	}
	buf[0] = (uint8_t)(n >> 24);
	buf[1] = (uint8_t)(n >> 16);
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
	*out = buf;
	*out_len = CTL_FRAME_HDR + n;
	return 0;
}

const char *ctl_msg_type(const json_t *msg)
{
	return json_string_value(json_object_get(msg, "type"));
}

json_t *ctl_msg_new(const char *type)
{
	/* "v" first: a person reading a capture sees the version first. */
	return json_pack("{s:i, s:s}", "v", CTL_PROTO_VERSION, "type", type);
}

void ctl_msg_set_gen(json_t *msg, uint64_t gen)
{
	json_object_set_new(msg, "gen", json_integer((json_int_t)gen));
}

bool ctl_msg_gen(const json_t *msg, uint64_t *gen)
{
	const json_t *v = json_object_get(msg, "gen");

	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		return false;
	*gen = (uint64_t)json_integer_value(v);
	return true;
}

/* ---- helpers ---- */

int ctl_get_int(const json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out, char *err,
		size_t errlen)
{
	const json_t *v = json_object_get(obj, key);
	json_int_t x;

	if (!v) {
		seterr(err, errlen, "missing \"%s\"", key);
		return -1;
	}
	if (!json_is_integer(v)) {
		seterr(err, errlen, "\"%s\" must be an integer", key);
		return -1;
	}
	x = json_integer_value(v);
	if (x < lo || x > hi) {
		seterr(err, errlen,
		       "\"%s\" = %" JSON_INTEGER_FORMAT " is outside %" PRId64 "..%" PRId64, key, x,
		       lo, hi);
		return -1;
	}
	*out = x;
	return 0;
}

int ctl_get_str(const json_t *obj, const char *key, const char **out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(obj, key);

	if (!v) {
		seterr(err, errlen, "missing \"%s\"", key);
		return -1;
	}
	if (!json_is_string(v)) {
		seterr(err, errlen, "\"%s\" must be a string", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int ctl_get_strbuf(const json_t *obj, const char *key, char *buf, size_t len, char *err,
		   size_t errlen)
{
	const json_t *v = json_object_get(obj, key);
	size_t n;

	if (!v) {
		seterr(err, errlen, "missing \"%s\"", key);
		return -1;
	}
	if (!json_is_string(v)) {
		seterr(err, errlen, "\"%s\" must be a string", key);
		return -1;
	}
	n = json_string_length(v);
	if (n >= len || memchr(json_string_value(v), '\0', n)) {
		seterr(err, errlen, "\"%s\" is longer than %zu octets or holds a NUL", key,
		       len - 1);
		return -1;
	}
	memcpy(buf, json_string_value(v), n);
	buf[n] = '\0';
	return 0;
}

static int get_bool(const json_t *obj, const char *key, bool *out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(obj, key);

	if (!json_is_boolean(v)) {
		seterr(err, errlen, v ? "\"%s\" must be true or false" : "missing \"%s\"", key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

static int get_time(const json_t *obj, const char *key, int64_t *out, char *err, size_t errlen)
{
	return ctl_get_int(obj, key, 0, TES_TIME_MAX, out, err, errlen);
}

/* Prefix a nested error with where it happened. */
static void wrap(char *err, size_t errlen, const char *where)
{
	char tmp[256];

	if (!err || !errlen)
		return;
	snprintf(tmp, sizeof(tmp), "%s", err);
	seterr(err, errlen, "%s: %s", where, tmp);
}

/* ---- connectors and tenants ---- */

int ctl_connector_range_format(const struct tes_connector *c, char *buf, size_t len)
{
	char a[64];

	if (tes_addr_format(&c->net, a, sizeof(a)) < 0)
		snprintf(a, sizeof(a), "?");
	return snprintf(buf, len, "%s/%u", a, c->prefix_len);
}

json_t *ctl_connector_to_json(const struct tes_connector *c)
{
	char range[80];
	json_t *j;

	ctl_connector_range_format(c, range, sizeof(range));
	j = json_pack("{s:s}", "range", range);
	if (j && c->cert_name[0])
		json_object_set_new(j, "cert", json_string(c->cert_name));
	return j;
}

int ctl_connector_from_json(const json_t *j, struct tes_connector *out, char *err, size_t errlen)
{
	const char *range;
	char cert[TES_CERT_NAME_MAX] = "";

	if (!json_is_object(j)) {
		seterr(err, errlen, "a connector must be an object");
		return -1;
	}
	if (ctl_get_str(j, "range", &range, err, errlen))
		return -1;
	if (json_object_get(j, "cert") &&
	    ctl_get_strbuf(j, "cert", cert, sizeof(cert), err, errlen))
		return -1;
	if (tes_connector_parse(range, cert, out)) {
		seterr(err, errlen,
		       "bad connector range \"%.80s\" (want ADDRESS/PREFIX without host bits)",
		       range);
		return -1;
	}
	return 0;
}

json_t *ctl_tenant_to_json(const struct tes_tenant *t)
{
	json_t *j, *conns;

	conns = json_array();
	for (unsigned i = 0; i < t->nconnectors && i < TES_TENANT_CONNECTORS_MAX; i++)
		json_array_append_new(conns, ctl_connector_to_json(&t->connectors[i]));
	j = json_pack("{s:I, s:s, s:o, s:{s:I, s:I, s:I, s:i, s:i}}", "id", (json_int_t)t->id,
		      "name", t->name, "connectors", conns, "pause", "start",
		      (json_int_t)t->pause.start, "end", (json_int_t)t->pause.end, "paused_before",
		      (json_int_t)t->pause.paused_before, "year", (int)t->pause.year, "days_used",
		      (int)t->pause.days_used);
	/* optional: only a tenant at its cap says so */
	if (j && t->at_server_cap)
		json_object_set_new(j, "at_server_cap", json_true());
	return j;
}

int ctl_tenant_from_json(const json_t *j, struct tes_tenant *out, char *err, size_t errlen)
{
	struct tes_tenant t;
	const json_t *conns, *pz;
	int64_t x;

	memset(&t, 0, sizeof(t));
	if (!json_is_object(j)) {
		seterr(err, errlen, "a tenant must be an object");
		return -1;
	}
	if (ctl_get_int(j, "id", 1, UINT32_MAX, &x, err, errlen))
		return -1;
	t.id = (uint32_t)x;
	if (ctl_get_strbuf(j, "name", t.name, sizeof(t.name), err, errlen))
		return -1;
	t.at_server_cap = json_is_true(json_object_get(j, "at_server_cap"));
	conns = json_object_get(j, "connectors");
	if (conns) {
		size_t i;
		const json_t *c;

		if (!json_is_array(conns) || json_array_size(conns) > TES_TENANT_CONNECTORS_MAX) {
			seterr(err, errlen, "\"connectors\" must be an array of at most %d",
			       TES_TENANT_CONNECTORS_MAX);
			return -1;
		}
		json_array_foreach(conns, i, c)
		{
			if (ctl_connector_from_json(c, &t.connectors[i], err, errlen)) {
				wrap(err, errlen, "connector");
				return -1;
			}
		}
		t.nconnectors = (unsigned)json_array_size(conns);
	}
	pz = json_object_get(j, "pause");
	if (pz) {
		if (!json_is_object(pz)) {
			seterr(err, errlen, "\"pause\" must be an object");
			return -1;
		}
		if (get_time(pz, "start", &t.pause.start, err, errlen) ||
		    get_time(pz, "end", &t.pause.end, err, errlen) ||
		    get_time(pz, "paused_before", &t.pause.paused_before, err, errlen)) {
			wrap(err, errlen, "pause");
			return -1;
		}
		if (ctl_get_int(pz, "year", 0, UINT16_MAX, &x, err, errlen)) {
			wrap(err, errlen, "pause");
			return -1;
		}
		t.pause.year = (uint16_t)x;
		if (ctl_get_int(pz, "days_used", 0, UINT16_MAX, &x, err, errlen)) {
			wrap(err, errlen, "pause");
			return -1;
		}
		t.pause.days_used = (uint16_t)x;
	}
	*out = t;
	return 0;
}

/* ---- servers ---- */

static json_t *build_json(const struct ex_build *b)
{
	char buf[48];

	ex_build_format(b, buf, sizeof(buf));
	return json_string(buf);
}

static int get_build(const json_t *j, const char *key, struct ex_build *out, char *err,
		     size_t errlen)
{
	const char *s;

	if (ctl_get_str(j, key, &s, err, errlen))
		return -1;
	if (!ex_build_from_str(s, out)) {
		seterr(err, errlen, "\"%s\" = \"%.40s\" is not a build (four numbers)", key, s);
		return -1;
	}
	return 0;
}

static int get_family(const json_t *j, const char *key, enum ex_family *out, char *err,
		      size_t errlen)
{
	const char *s;
	enum ex_family f;

	if (ctl_get_str(j, key, &s, err, errlen))
		return -1;
	f = ex_family_from_name(s);
	if (f == EX_FAMILY_NONE && strcmp(s, ex_family_name(EX_FAMILY_NONE)) != 0) {
		seterr(err, errlen, "\"%s\" = \"%.20s\" is not a product family", key, s);
		return -1;
	}
	*out = f;
	return 0;
}

static int get_addr(const json_t *j, struct tes_addr *out, char *err, size_t errlen)
{
	const char *s = json_string_value(j);

	if (!s || !tes_addr_parse(s, out)) {
		seterr(err, errlen, "bad address \"%.60s\"", s ? s : "(not a string)");
		return -1;
	}
	return 0;
}

static json_t *addr_json(const struct tes_addr *a)
{
	char buf[64];

	if (tes_addr_format(a, buf, sizeof(buf)) < 0)
		return json_string("");
	return json_string(buf);
}

json_t *ctl_server_to_json(const struct tes_server *s)
{
	json_t *src = json_array(), *seen = json_array(), *j;

	for (unsigned i = 0; i < s->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
		json_array_append_new(src, addr_json(&s->sources[i]));
		json_array_append_new(seen, json_integer((json_int_t)s->source_seen[i]));
	}
	j = json_pack("{s:I, s:s, s:o, s:s, s:b, s:I, s:I, s:I, s:I, s:o}", "tenant",
		      (json_int_t)s->tenant_id, "fqdn", s->fqdn, "build", build_json(&s->build),
		      "family", ex_family_name(s->family), "resolved", s->resolved,
		      "first_detected", (json_int_t)s->first_detected, "last_seen",
		      (json_int_t)s->last_seen, "resolved_at", (json_int_t)s->resolved_at,
		      "pause_base", (json_int_t)s->pause_base, "sources", src);
	/* Optional members (a gateway of the first release ignores them). */
	if (j) {
		json_object_set_new(j, "source_seen", seen);
		if (s->stale_seconds)
			json_object_set_new(j, "stale_seconds",
					    json_integer((json_int_t)s->stale_seconds));
	} else {
		json_decref(seen);
	}
	return j;
}

static int get_fqdn(const json_t *j, char *buf, char *err, size_t errlen)
{
	if (ctl_get_strbuf(j, "fqdn", buf, TES_FQDN_MAX, err, errlen))
		return -1;
	if (!buf[0]) {
		seterr(err, errlen, "\"fqdn\" is empty");
		return -1;
	}
	return 0;
}

int ctl_server_from_json(const json_t *j, struct tes_server *out, char *err, size_t errlen)
{
	struct tes_server s;
	const json_t *src, *a;
	int64_t x;
	size_t i;

	memset(&s, 0, sizeof(s));
	if (!json_is_object(j)) {
		seterr(err, errlen, "a server must be an object");
		return -1;
	}
	if (ctl_get_int(j, "tenant", 0, UINT32_MAX, &x, err, errlen))
		return -1;
	s.tenant_id = (uint32_t)x;
	if (get_fqdn(j, s.fqdn, err, errlen) || get_build(j, "build", &s.build, err, errlen) ||
	    get_family(j, "family", &s.family, err, errlen) ||
	    get_bool(j, "resolved", &s.resolved, err, errlen) ||
	    get_time(j, "first_detected", &s.first_detected, err, errlen) ||
	    get_time(j, "last_seen", &s.last_seen, err, errlen) ||
	    get_time(j, "resolved_at", &s.resolved_at, err, errlen) ||
	    ctl_get_int(j, "pause_base", 0, 2 * TES_TIME_MAX, &s.pause_base, err, errlen))
		return -1;
	src = json_object_get(j, "sources");
	if (src) {
		if (!json_is_array(src) || json_array_size(src) > TES_SERVER_SOURCES_MAX) {
			seterr(err, errlen, "\"sources\" must be an array of at most %d addresses",
			       TES_SERVER_SOURCES_MAX);
			return -1;
		}
		json_array_foreach(src, i, a)
		{
			if (get_addr(a, &s.sources[i], err, errlen))
				return -1;
		}
		s.nsources = (uint8_t)json_array_size(src);
	}
	src = json_object_get(j, "source_seen");
	if (src) {
		if (!json_is_array(src) || json_array_size(src) != s.nsources) {
			seterr(err, errlen,
			       "\"source_seen\" must be an array with one time per source");
			return -1;
		}
		json_array_foreach(src, i, a)
		{
			if (!json_is_integer(a) || json_integer_value(a) < 0 ||
			    json_integer_value(a) > TES_TIME_MAX) {
				seterr(err, errlen, "\"source_seen\"[%zu] is not a time", i);
				return -1;
			}
			s.source_seen[i] = (int64_t)json_integer_value(a);
		}
	}
	if (json_object_get(j, "stale_seconds") &&
	    ctl_get_int(j, "stale_seconds", 0, TES_TIME_MAX, &s.stale_seconds, err, errlen))
		return -1;
	*out = s;
	return 0;
}

/* ---- messages ---- */

json_t *ctl_hello_to_json(const struct ctl_hello *h)
{
	json_t *j = ctl_msg_new(CTL_T_HELLO);

	json_object_set_new(j, "gateway", json_string(h->gateway));
	json_object_set_new(j, "version", json_string(h->version));
	return j;
}

int ctl_hello_from_json(const json_t *j, struct ctl_hello *out, char *err, size_t errlen)
{
	struct ctl_hello h;

	memset(&h, 0, sizeof(h));
	if (ctl_get_strbuf(j, "gateway", h.gateway, sizeof(h.gateway), err, errlen) ||
	    ctl_get_strbuf(j, "version", h.version, sizeof(h.version), err, errlen))
		return -1;
	*out = h;
	return 0;
}

const char *ctl_class_name(enum tes_build_class c)
{
	switch (c) {
	case TES_BUILD_VULNERABLE:
		return "vulnerable";
	case TES_BUILD_COMPLIANT:
		return "compliant";
	case TES_BUILD_NOT_EXCHANGE:
		return "not-exchange";
	case TES_BUILD_UNKNOWN:
		break;
	}
	return "unknown";
}

json_t *ctl_sighting_to_json(const struct ctl_sighting *s)
{
	json_t *j = ctl_msg_new(CTL_T_SIGHTING);

	if (s->seq)
		json_object_set_new(j, "seq", json_integer((json_int_t)s->seq));
	json_object_set_new(j, "tenant", json_integer(s->tenant_id));
	json_object_set_new(j, "fqdn", json_string(s->fqdn));
	json_object_set_new(j, "build", build_json(&s->build));
	json_object_set_new(j, "family", json_string(ex_family_name(s->family)));
	json_object_set_new(j, "class", json_string(ctl_class_name(s->cls)));
	if (s->source.family != TES_ADDR_NONE)
		json_object_set_new(j, "source", addr_json(&s->source));
	if (s->time)
		json_object_set_new(j, "time", json_integer(s->time));
	if (s->count > 1)
		json_object_set_new(j, "count", json_integer((json_int_t)s->count));
	return j;
}

int ctl_sighting_from_json(const json_t *j, struct ctl_sighting *out, char *err, size_t errlen)
{
	struct ctl_sighting s;
	const char *cls;
	int64_t x;

	memset(&s, 0, sizeof(s));
	if (json_object_get(j, "seq")) {
		if (ctl_get_int(j, "seq", 0, INT64_MAX, &x, err, errlen))
			return -1;
		s.seq = (uint64_t)x;
	}
	if (ctl_get_int(j, "tenant", 0, UINT32_MAX, &x, err, errlen))
		return -1;
	s.tenant_id = (uint32_t)x;
	if (get_fqdn(j, s.fqdn, err, errlen) || get_build(j, "build", &s.build, err, errlen) ||
	    get_family(j, "family", &s.family, err, errlen) ||
	    ctl_get_str(j, "class", &cls, err, errlen))
		return -1;
	if (strcmp(cls, "vulnerable") == 0) {
		s.cls = TES_BUILD_VULNERABLE;
	} else if (strcmp(cls, "compliant") == 0) {
		s.cls = TES_BUILD_COMPLIANT;
	} else {
		seterr(err, errlen,
		       "\"class\" = \"%.20s\" is neither \"vulnerable\" nor \"compliant\"", cls);
		return -1;
	}
	if (json_object_get(j, "source") &&
	    get_addr(json_object_get(j, "source"), &s.source, err, errlen))
		return -1;
	if (json_object_get(j, "time") && get_time(j, "time", &s.time, err, errlen))
		return -1;
	s.count = 1;
	if (json_object_get(j, "count")) {
		if (ctl_get_int(j, "count", 1, UINT32_MAX, &x, err, errlen))
			return -1;
		s.count = (uint32_t)x;
	}
	*out = s;
	return 0;
}

json_t *ctl_counters_to_json(json_t *counters)
{
	json_t *j = ctl_msg_new(CTL_T_COUNTERS);

	json_object_set(j, "counters", counters);
	return j;
}

int ctl_counters_from_json(const json_t *j, json_t **counters, char *err, size_t errlen)
{
	json_t *c = json_object_get(j, "counters");
	const char *k;
	json_t *v;

	if (!json_is_object(c)) {
		seterr(err, errlen, "\"counters\" must be an object");
		return -1;
	}
	if (json_object_size(c) > 256) {
		seterr(err, errlen, "more than 256 counters");
		return -1;
	}
	json_object_foreach(c, k, v)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			seterr(err, errlen, "counter \"%.40s\" must be a non-negative integer", k);
			return -1;
		}
	}
	*counters = json_incref(c);
	return 0;
}

int ctl_counters_add_servers(json_t *msg, const struct ctl_server_count *c, size_t n)
{
	json_t *a = json_array();

	if (!a)
		return -1;
	for (size_t i = 0; i < n && i < CTL_SERVER_COUNTS_MAX; i++) {
		json_t *o = json_pack("{s:I, s:s, s:I, s:I}", "tenant", (json_int_t)c[i].tenant_id,
				      "fqdn", c[i].fqdn, "throttled", (json_int_t)c[i].throttled,
				      "refused", (json_int_t)c[i].refused);

		/* a name that is not UTF-8 makes no entry (json_pack fails) */
		if (o && json_array_append_new(a, o)) {
			json_decref(a);
			return -1;
		}
	}
	return json_object_set_new(msg, "servers", a) ? -1 : 0;
}

static int server_count_from_json(const json_t *j, struct ctl_server_count *c, char *err,
				  size_t errlen)
{
	int64_t x;

	memset(c, 0, sizeof(*c));
	if (!json_is_object(j)) {
		seterr(err, errlen, "an entry of \"servers\" is not an object");
		return -1;
	}
	if (ctl_get_int(j, "tenant", 0, UINT32_MAX, &x, err, errlen))
		return -1;
	c->tenant_id = (uint32_t)x;
	if (ctl_get_strbuf(j, "fqdn", c->fqdn, sizeof(c->fqdn), err, errlen))
		return -1;
	if (!c->fqdn[0]) {
		seterr(err, errlen, "an empty \"fqdn\" in \"servers\"");
		return -1;
	}
	if (ctl_get_int(j, "throttled", 0, INT64_MAX, &x, err, errlen))
		return -1;
	c->throttled = (uint64_t)x;
	if (ctl_get_int(j, "refused", 0, INT64_MAX, &x, err, errlen))
		return -1;
	c->refused = (uint64_t)x;
	return 0;
}

int ctl_server_counts_from_json(const json_t *msg, ctl_server_count_cb cb, void *ctx, char *err,
				size_t errlen)
{
	const json_t *a = json_object_get(msg, "servers");
	struct ctl_server_count c;
	size_t i;
	json_t *v;

	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > CTL_SERVER_COUNTS_MAX) {
		seterr(err, errlen, "\"servers\" must be a list of at most %u entries",
		       CTL_SERVER_COUNTS_MAX);
		return -1;
	}
	/* All checked before the first is handed on: a bad message changes
	 * nothing. */
	json_array_foreach(a, i, v)
	{
		if (server_count_from_json(v, &c, err, errlen))
			return -1;
	}
	json_array_foreach(a, i, v)
	{
		int rc;

		server_count_from_json(v, &c, err, errlen);
		rc = cb(&c, ctx);
		if (rc)
			return rc;
	}
	return 0;
}

json_t *ctl_sync_begin_to_json(int64_t now, bool test_clock, uint64_t ntenants, uint64_t nservers)
{
	json_t *j = ctl_msg_new(CTL_T_SYNC_BEGIN);

	json_object_set_new(j, "now", json_integer(now));
	json_object_set_new(j, "test_clock", json_boolean(test_clock));
	json_object_set_new(j, "tenants", json_integer((json_int_t)ntenants));
	json_object_set_new(j, "servers", json_integer((json_int_t)nservers));
	return j;
}

json_t *ctl_sync_end_to_json(void)
{
	return ctl_msg_new(CTL_T_SYNC_END);
}

json_t *ctl_server_msg(const struct tes_server *s, unsigned stage, enum tes_status status,
		       int64_t at)
{
	json_t *j = ctl_msg_new(CTL_T_SERVER);

	json_object_set_new(j, "server", ctl_server_to_json(s));
	json_object_set_new(j, "stage", json_integer(stage));
	json_object_set_new(j, "status", json_string(tes_status_name(status)));
	json_object_set_new(j, "at", json_integer(at));
	return j;
}

json_t *ctl_tenant_msg(const struct tes_tenant *t)
{
	json_t *j = ctl_msg_new(CTL_T_TENANT);

	json_object_set_new(j, "tenant", ctl_tenant_to_json(t));
	return j;
}

int ctl_server_msg_from_json(const json_t *msg, struct tes_server *out, char *err, size_t errlen)
{
	if (ctl_server_from_json(json_object_get(msg, "server"), out, err, errlen)) {
		wrap(err, errlen, "server");
		return -1;
	}
	return 0;
}

int ctl_tenant_msg_from_json(const json_t *msg, struct tes_tenant *out, char *err, size_t errlen)
{
	if (ctl_tenant_from_json(json_object_get(msg, "tenant"), out, err, errlen)) {
		wrap(err, errlen, "tenant");
		return -1;
	}
	return 0;
}

json_t *ctl_delete_server_msg(uint32_t tenant_id, const char *fqdn)
{
	json_t *j = ctl_msg_new(CTL_T_DELETE);

	json_object_set_new(j, "what", json_string("server"));
	json_object_set_new(j, "tenant", json_integer(tenant_id));
	json_object_set_new(j, "fqdn", json_string(fqdn));
	return j;
}

json_t *ctl_delete_tenant_msg(uint32_t tenant_id)
{
	json_t *j = ctl_msg_new(CTL_T_DELETE);

	json_object_set_new(j, "what", json_string("tenant"));
	json_object_set_new(j, "tenant", json_integer(tenant_id));
	return j;
}

int ctl_delete_from_json(const json_t *j, struct ctl_delete *out, char *err, size_t errlen)
{
	struct ctl_delete d;
	const char *what;
	int64_t x;

	memset(&d, 0, sizeof(d));
	if (ctl_get_str(j, "what", &what, err, errlen))
		return -1;
	if (strcmp(what, "server") == 0) {
		d.server = true;
	} else if (strcmp(what, "tenant") != 0) {
		seterr(err, errlen, "\"what\" = \"%.20s\" is neither \"server\" nor \"tenant\"",
		       what);
		return -1;
	}
	if (ctl_get_int(j, "tenant", d.server ? 0 : 1, UINT32_MAX, &x, err, errlen))
		return -1;
	d.tenant_id = (uint32_t)x;
	if (d.server && get_fqdn(j, d.fqdn, err, errlen))
		return -1;
	*out = d;
	return 0;
}

json_t *ctl_policy_msg(const char *text, const char *name, const char *version)
{
	json_t *j = ctl_msg_new(CTL_T_POLICY);
	struct tes_policy pol;
	char compat[8192];
	int n;

	json_object_set_new(j, "version", json_string(version));
	json_object_set_new(j, "name", json_string(name));
	/* "text" keeps the keys a gateway of the first release parses; the
	 * whole file goes in "full_text", which such a gateway ignores (a
	 * compatible change, docs/control-protocol.md). */
	if (tes_policy_parse(text, strlen(text), name, &pol, NULL) == 0 &&
	    (n = tes_policy_format_compat(&pol, compat, sizeof(compat))) > 0 &&
	    (size_t)n < sizeof(compat)) {
		json_object_set_new(j, "text", json_string(compat));
		json_object_set_new(j, "full_text", json_string(text));
	} else {
		json_object_set_new(j, "text", json_string(text));
	}
	return j;
}

int ctl_policy_from_json(const json_t *j, struct tes_policy *out, char *err, size_t errlen)
{
	struct tes_policy_error perr;
	const json_t *text = json_object_get(j, "full_text");
	const char *name = json_string_value(json_object_get(j, "name"));
	char msg[512];

	if (!text)
		text = json_object_get(j, "text");
	if (!json_is_string(text)) {
		seterr(err, errlen, "missing policy \"text\"");
		return -1;
	}
	if (tes_policy_parse(json_string_value(text), json_string_length(text),
			     name ? name : "<policy>", out, &perr)) {
		tes_policy_error_format(&perr, msg, sizeof(msg));
		seterr(err, errlen, "%s", msg);
		return -1;
	}
	return 0;
}

json_t *ctl_catalog_msg(const char *builds, const char *builds_name, const char *compliance,
			const char *compliance_name, const char *version)
{
	json_t *j = ctl_msg_new(CTL_T_CATALOG);

	json_object_set_new(j, "version", json_string(version));
	json_object_set_new(j, "builds_name", json_string(builds_name));
	json_object_set_new(j, "builds", json_string(builds));
	json_object_set_new(j, "compliance_name", json_string(compliance_name));
	json_object_set_new(j, "compliance", json_string(compliance));
	return j;
}

struct catalog *ctl_catalog_from_json(const json_t *j, char *err, size_t errlen)
{
	const json_t *b = json_object_get(j, "builds"), *c = json_object_get(j, "compliance");
	const char *bn = json_string_value(json_object_get(j, "builds_name"));
	const char *cn = json_string_value(json_object_get(j, "compliance_name"));
	struct catalog_error cerr;
	struct catalog *cat;

	if (!json_is_string(b) || !json_is_string(c)) {
		seterr(err, errlen, "catalog needs \"builds\" and \"compliance\" texts");
		return NULL;
	}
	cat = catalog_parse(json_string_value(b), json_string_length(b), bn ? bn : "<builds>",
			    json_string_value(c), json_string_length(c), cn ? cn : "<compliance>",
			    &cerr);
	if (!cat)
		seterr(err, errlen, "%s:%u: %s", cerr.file, cerr.line, cerr.msg);
	return cat;
}

json_t *ctl_clock_msg(int64_t now, bool test_clock)
{
	json_t *j = ctl_msg_new(CTL_T_CLOCK);

	json_object_set_new(j, "now", json_integer(now));
	json_object_set_new(j, "test_clock", json_boolean(test_clock));
	return j;
}

int ctl_clock_from_json(const json_t *msg, int64_t *now, bool *test_clock, char *err, size_t errlen)
{
	if (get_time(msg, "now", now, err, errlen) ||
	    get_bool(msg, "test_clock", test_clock, err, errlen))
		return -1;
	return 0;
}

int ctl_ack_from_json(const json_t *msg, struct ctl_ack *out, char *err, size_t errlen)
{
	struct ctl_ack a;
	int64_t x;

	memset(&a, 0, sizeof(a));
	if (ctl_get_int(msg, "seq", 0, INT64_MAX, &x, err, errlen) ||
	    get_bool(msg, "ok", &a.ok, err, errlen))
		return -1;
	a.seq = (uint64_t)x;
	if (json_object_get(msg, "change") &&
	    ctl_get_strbuf(msg, "change", a.change, sizeof(a.change), err, errlen))
		return -1;
	if (!a.ok && ctl_get_strbuf(msg, "error", a.error, sizeof(a.error), err, errlen))
		return -1;
	*out = a;
	return 0;
}

json_t *ctl_ack_msg(uint64_t seq, bool ok, const char *change, const char *error)
{
	json_t *j = ctl_msg_new(CTL_T_ACK);

	json_object_set_new(j, "seq", json_integer((json_int_t)seq));
	json_object_set_new(j, "ok", json_boolean(ok));
	if (change)
		json_object_set_new(j, "change", json_string(change));
	if (error)
		json_object_set_new(j, "error", json_string(error));
	return j;
}

json_t *ctl_error_msg(const char *message)
{
	json_t *j = ctl_msg_new(CTL_T_ERROR);

	json_object_set_new(j, "message", json_string(message));
	return j;
}

const char *ctl_change_name(enum tes_change c)
{
	switch (c) {
	case TES_CHANGE_NONE:
		return "none";
	case TES_CHANGE_FIRST:
		return "first";
	case TES_CHANGE_REDETECTED:
		return "redetected";
	case TES_CHANGE_RESOLVED:
		return "resolved";
	case TES_CHANGE_SEEN:
		return "seen";
	case TES_CHANGE_INVALID:
		return "invalid";
	case TES_CHANGE_TRACKED:
		return "tracked";
	}
	return "?";
}
