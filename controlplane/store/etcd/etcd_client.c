/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The unary calls: one blocking HTTP POST per attempt on a curl easy handle
 * the client keeps (so connections to the members are reused), endpoint
 * failover, authentication, and the error convention of etcd.h.
 *
 * Failover follows what etcd's own Go client does with gRPC: a read (and
 * anything that cannot change state twice) moves on to the next endpoint
 * after any failure that is not etcd's considered answer; a write moves on
 * only when it certainly was not applied: the request was never sent
 * (connection refused, TLS handshake, timeout while connecting), the member
 * said it has no leader (every request carries etcd's "require a leader"
 * metadata, so a member cut off from the majority says so at once instead
 * of holding the write until its own timeout), or the endpoint is not an
 * etcd gateway at all (404/405).  Anything else after a write was sent is
 * ETCD_ERR_UNKNOWN_OUTCOME: retrying a create-if-absent that did land would
 * report the caller's own key as someone else's.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_int.h"
#include "etcd_parse.h"

struct body {
	char *data;
	size_t len;
	size_t cap; /* allocated */
	size_t max; /* max_response */
	bool over;  /* the answer went past max */
};

struct etcd_client {
	struct etcd_conf conf;
	size_t cur; /* the endpoint tried first */
	char *token;
	CURL *easy;
	struct body body;
	char curl_err[CURL_ERROR_SIZE];
	enum etcd_errkind kind;
	int grpc_code;
	struct etcd_stats stats;
};

/* --- shared helpers (etcd_int.h) ------------------------------------------------ */

void etcd_errf(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int etcd_global_init(char *err, size_t errlen)
{
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK) {
		etcd_errf(err, errlen, "etcd: curl_global_init: %s", curl_easy_strerror(global_rc));
		return -1;
	}
	return 0;
}

static char *dup_opt(const char *s, bool *oom)
{
	if (!s || !*s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

void etcd_conf_free(struct etcd_conf *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->endpoints[i]);
	free(c->ca_file);
	free(c->cert_file);
	free(c->key_file);
	free(c->username);
	if (c->password) {
		/* Not left lying in freed memory. */
		volatile char *p = c->password;
		while (*p)
			*p++ = 0;
		free(c->password);
	}
	memset(c, 0, sizeof(*c));
}

static int endpoint_ok(const char *url, char *why, size_t whylen)
{
	const char *rest;
	if (strncmp(url, "http://", 7) == 0)
		rest = url + 7;
	else if (strncmp(url, "https://", 8) == 0)
		rest = url + 8;
	else {
		etcd_errf(why, whylen, "not an http:// or https:// URL");
		return -1;
	}
	if (!*rest || *rest == '/') {
		etcd_errf(why, whylen, "no host");
		return -1;
	}
	if (strlen(url) > 512) {
		etcd_errf(why, whylen, "longer than 512 bytes");
		return -1;
	}
	for (const char *p = url; *p; p++) {
		if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '?' || *p == '#') {
			etcd_errf(why, whylen, "holds a space, control character, '?' or '#'");
			return -1;
		}
	}
	/* A path would be glued in front of /v3/...: only "/" is allowed. */
	const char *slash = strchr(rest, '/');
	if (slash && slash[1] != '\0') {
		etcd_errf(why, whylen, "has a path (give the client URL only)");
		return -1;
	}
	return 0;
}

int etcd_conf_init(struct etcd_conf *dst, const struct etcd_config *src, char *err, size_t errlen)
{
	memset(dst, 0, sizeof(*dst));
	if (!src || src->nendpoints == 0 || !src->endpoints) {
		etcd_errf(err, errlen, "etcd: no endpoint configured");
		return -1;
	}
	if (src->nendpoints > ETCD_MAX_ENDPOINTS) {
		etcd_errf(err, errlen, "etcd: %zu endpoints, at most %d", src->nendpoints,
			  ETCD_MAX_ENDPOINTS);
		return -1;
	}
	if (src->timeout_ms < 0 || src->connect_timeout_ms < 0 || src->watch_keepalive_s < 0) {
		etcd_errf(err, errlen, "etcd: negative timeout");
		return -1;
	}
	if (!src->username != !src->password || (src->username && !*src->username)) {
		etcd_errf(err, errlen, "etcd: a username needs a password and the other way round");
		return -1;
	}
	if (!src->cert_file != !src->key_file) {
		etcd_errf(err, errlen, "etcd: a client certificate needs its key");
		return -1;
	}
	bool oom = false;
	for (size_t i = 0; i < src->nendpoints; i++) {
		char why[96];
		const char *u = src->endpoints[i] ? src->endpoints[i] : "";
		if (endpoint_ok(u, why, sizeof(why)) != 0) {
			etcd_errf(err, errlen, "etcd: endpoint %zu '%.200s': %s", i + 1, u, why);
			etcd_conf_free(dst);
			return -1;
		}
		/* Without the trailing slash, so that url + "/v3/..." is right. */
		size_t l = strlen(u);
		if (l > 0 && u[l - 1] == '/')
			l--;
		dst->endpoints[i] = strndup(u, l);
		if (!dst->endpoints[i])
			oom = true;
		dst->n = i + 1;
	}
	dst->timeout_ms = src->timeout_ms ? src->timeout_ms : ETCD_DEFAULT_TIMEOUT_MS;
	dst->connect_timeout_ms =
		src->connect_timeout_ms ? src->connect_timeout_ms : ETCD_DEFAULT_CONNECT_TIMEOUT_MS;
	if (dst->connect_timeout_ms > dst->timeout_ms)
		dst->connect_timeout_ms = dst->timeout_ms;
	dst->max_response = src->max_response ? src->max_response : ETCD_DEFAULT_MAX_RESPONSE;
	dst->watch_max_batch =
		src->watch_max_batch ? src->watch_max_batch : ETCD_DEFAULT_WATCH_MAX_BATCH;
	dst->watch_keepalive_s =
		src->watch_keepalive_s ? src->watch_keepalive_s : ETCD_DEFAULT_WATCH_KEEPALIVE_S;
	dst->ca_file = dup_opt(src->ca_file, &oom);
	dst->cert_file = dup_opt(src->cert_file, &oom);
	dst->key_file = dup_opt(src->key_file, &oom);
	dst->tls_no_verify = src->tls_no_verify;
	dst->username = dup_opt(src->username, &oom);
	dst->password = src->password ? strdup(src->password) : NULL;
	if (src->password && !dst->password)
		oom = true;
	if (oom) {
		etcd_conf_free(dst);
		etcd_errf(err, errlen, "etcd: out of memory");
		return -1;
	}
	return 0;
}

int etcd_conf_dup(struct etcd_conf *dst, const struct etcd_conf *src)
{
	struct etcd_config c = {
		.endpoints = (const char *const *)src->endpoints,
		.nendpoints = src->n,
		.timeout_ms = src->timeout_ms,
		.connect_timeout_ms = src->connect_timeout_ms,
		.max_response = src->max_response,
		.ca_file = src->ca_file,
		.cert_file = src->cert_file,
		.key_file = src->key_file,
		.tls_no_verify = src->tls_no_verify,
		.username = src->username,
		.password = src->password,
		.watch_max_batch = src->watch_max_batch,
		.watch_keepalive_s = src->watch_keepalive_s,
	};
	return etcd_conf_init(dst, &c, NULL, 0);
}

void etcd_curl_common(CURL *e, const struct etcd_conf *c)
{
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	/* The gateway speaks HTTP/1.1 on plain ports; keeping TLS ports on it
	 * too gives one behaviour, and OpenSSL's own message when a TLS peer
	 * refuses (HTTP/2 would hide it behind a later send error). */
	curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	/* etcd's gateway answers identity-encoded; no decompression bombs. */
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
	if (c->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
	if (c->cert_file) {
		curl_easy_setopt(e, CURLOPT_SSLCERT, c->cert_file);
		curl_easy_setopt(e, CURLOPT_SSLKEY, c->key_file);
	}
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, c->tls_no_verify ? 0L : 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, c->tls_no_verify ? 0L : 2L);
}

struct curl_slist *etcd_headers(const char *token, bool hasleader)
{
	struct curl_slist *h = NULL, *t;
	const char *fixed[] = { "Content-Type: application/json", "Accept: application/json",
				"Expect:" };
	for (size_t i = 0; i < 3; i++) {
		t = curl_slist_append(h, fixed[i]);
		if (!t)
			goto oom;
		h = t;
	}
	if (hasleader) {
		/* grpc-gateway turns Grpc-Metadata-X into gRPC metadata X;
		 * etcd then refuses at once when the member has no leader. */
		t = curl_slist_append(h, "Grpc-Metadata-hasleader: true");
		if (!t)
			goto oom;
		h = t;
	}
	if (token) {
		char line[4200];
		snprintf(line, sizeof(line), "Authorization: %s", token);
		t = curl_slist_append(h, line);
		if (!t)
			goto oom;
		h = t;
	}
	return h;
oom:
	curl_slist_free_all(h);
	return NULL;
}

json_t *etcd_json_b64(const void *p, size_t n)
{
	char *s = etcd_b64_encode(p, n);
	if (!s)
		return NULL;
	json_t *j = json_string(s);
	free(s);
	return j;
}

json_t *etcd_json_int(int64_t v)
{
	char s[32];
	snprintf(s, sizeof(s), "%lld", (long long)v);
	return json_string(s);
}

bool etcd_error_is_stale_token(int code, const char *message)
{
	return code == 16 /* Unauthenticated */ || strstr(message, "invalid auth token") ||
	       strstr(message, "revision of auth store is old");
}

const char *etcd_errkind_name(enum etcd_errkind k)
{
	switch (k) {
	case ETCD_OK:
		return "ok";
	case ETCD_ERR_UNAVAILABLE:
		return "unavailable";
	case ETCD_ERR_UNKNOWN_OUTCOME:
		return "unknown-outcome";
	case ETCD_ERR_REFUSED:
		return "refused";
	case ETCD_ERR_AUTH:
		return "auth";
	case ETCD_ERR_NOT_FOUND:
		return "not-found";
	case ETCD_ERR_COMPACTED:
		return "compacted";
	case ETCD_ERR_PROTOCOL:
		return "protocol";
	case ETCD_ERR_USAGE:
		return "usage";
	}
	return "?";
}

/* --- the client ------------------------------------------------------------------ */

const struct etcd_conf *etcd_client_conf(const struct etcd_client *c)
{
	return &c->conf;
}

const char *etcd_client_token(const struct etcd_client *c)
{
	return c->token;
}

size_t etcd_client_current(const struct etcd_client *c)
{
	return c->cur;
}

enum etcd_errkind etcd_client_errkind(const struct etcd_client *c)
{
	return c->kind;
}

int etcd_client_grpc_code(const struct etcd_client *c)
{
	return c->grpc_code;
}

const char *etcd_client_endpoint(const struct etcd_client *c)
{
	return c->conf.endpoints[c->cur];
}

void etcd_client_stats(const struct etcd_client *c, struct etcd_stats *out)
{
	*out = c->stats;
}

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct body *b = ud;
	size_t n = size * nmemb;
	if (n > b->max - b->len) {
		b->over = true;
		return 0; /* curl aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (b->len + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 4096;
		while (nc < b->len + n + 1)
			nc *= 2;
		char *nd = realloc(b->data, nc);
		if (!nd)
			return 0;
		b->data = nd;
		b->cap = nc;
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

struct etcd_client *etcd_client_new(const struct etcd_config *cfg, char *err, size_t errlen)
{
	if (etcd_global_init(err, errlen) != 0)
		return NULL;
	struct etcd_client *c = calloc(1, sizeof(*c));
	if (!c) {
		etcd_errf(err, errlen, "etcd: out of memory");
		return NULL;
	}
	if (etcd_conf_init(&c->conf, cfg, err, errlen) != 0) {
		free(c);
		return NULL;
	}
	c->easy = curl_easy_init();
	if (!c->easy) {
		etcd_errf(err, errlen, "etcd: curl_easy_init failed");
		etcd_client_free(c);
		return NULL;
	}
	etcd_curl_common(c->easy, &c->conf);
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)c->conf.timeout_ms);
	curl_easy_setopt(c->easy, CURLOPT_MAXCONNECTS, (long)c->conf.n);
	curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, body_write);
	curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, &c->body);
	curl_easy_setopt(c->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->conf.max_response);
	c->body.max = c->conf.max_response;
	return c;
}

static void drop_token(struct etcd_client *c)
{
	if (c->token) {
		memset(c->token, 0, strlen(c->token));
		free(c->token);
		c->token = NULL;
	}
}

void etcd_client_free(struct etcd_client *c)
{
	if (!c)
		return;
	if (c->easy)
		curl_easy_cleanup(c->easy);
	drop_token(c);
	free(c->body.data);
	etcd_conf_free(&c->conf);
	free(c);
}

/* --- one call -------------------------------------------------------------------- */

enum call_class {
	CALL_READ,  /* may be repeated on another member */
	CALL_WRITE, /* only if certainly not applied */
};

struct call {
	const char *path;
	enum call_class cls;
	bool with_token;
	bool hasleader;
	char what[200]; /* "put key '/a'": the call and its key, for messages */
};

/* One attempt's outcome, before classification. */
struct attempt {
	CURLcode cc;
	long http;
	bool sent;
};

static void attempt_post(struct etcd_client *c, const char *ep, const struct call *k,
			 const char *body, size_t blen, struct attempt *a)
{
	char url[600];
	snprintf(url, sizeof(url), "%s%s", ep, k->path);
	struct curl_slist *h = etcd_headers(k->with_token ? c->token : NULL, k->hasleader);
	c->body.len = 0;
	c->body.over = false;
	c->curl_err[0] = '\0';
	memset(a, 0, sizeof(*a));
	if (!h) {
		a->cc = CURLE_OUT_OF_MEMORY;
		return;
	}
	curl_easy_setopt(c->easy, CURLOPT_URL, url);
	curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
	curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, h);
	c->stats.requests++;
	a->cc = curl_easy_perform(c->easy);
	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &a->http);
	long reqsize = 0;
	curl_easy_getinfo(c->easy, CURLINFO_REQUEST_SIZE, &reqsize);
	a->sent = reqsize > 0 || a->http != 0;
	curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(h);
}

/* The first bytes of a body that is not etcd's, printable, for a message. */
static void body_excerpt(const struct body *b, char *out, size_t outlen)
{
	if (b->len == 0) {
		snprintf(out, outlen, "an empty body");
		return;
	}
	char t[100];
	etcd_key_text(b->data, b->len < 60 ? b->len : 60, t, sizeof(t));
	snprintf(out, outlen, "'%s%s'", t, b->len > 60 ? "..." : "");
}

static int fail(struct etcd_client *c, enum etcd_errkind kind, int code, char *err, size_t errlen,
		const char *fmt, ...) ETCD_PRINTF(6, 7);

static int fail(struct etcd_client *c, enum etcd_errkind kind, int code, char *err, size_t errlen,
		const char *fmt, ...)
{
	c->kind = kind;
	c->grpc_code = code;
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int authenticate(struct etcd_client *c, char *err, size_t errlen);

/* What to do after one attempt. */
enum verdict {
	V_OK,     /* *resp holds etcd's answer */
	V_FAIL,   /* reported; stop */
	V_NEXT,   /* this endpoint failed (why): try the next */
	V_REAUTH, /* the token is stale: authenticate and try again */
};

static enum verdict classify(struct etcd_client *c, const struct call *k, const char *ep,
			     const struct attempt *a, json_t **resp, char *why, size_t whylen,
			     char *err, size_t errlen)
{
	bool write = k->cls == CALL_WRITE;
	if (a->cc != CURLE_OK) {
		if (c->body.over) {
			fail(c, ETCD_ERR_PROTOCOL, 0, err, errlen,
			     "etcd %s at %s: the answer is larger than %zu bytes (max_response; "
			     "paginate with a limit)",
			     k->what, ep, c->conf.max_response);
			return V_FAIL;
		}
		snprintf(why, whylen, "%s",
			 c->curl_err[0] ? c->curl_err : curl_easy_strerror(a->cc));
		if (write && a->sent) {
			fail(c, ETCD_ERR_UNKNOWN_OUTCOME, 0, err, errlen,
			     "etcd %s at %s: %s after the request was sent: it may or may not have "
			     "been applied",
			     k->what, ep, why);
			return V_FAIL;
		}
		return V_NEXT;
	}
	json_error_t jerr;
	json_t *root = json_loadb(c->body.data ? c->body.data : "", c->body.len,
				  JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root)) {
		json_decref(root);
		char ex[160];
		body_excerpt(&c->body, ex, sizeof(ex));
		snprintf(why, whylen, "not an etcd answer (HTTP %ld, %s)", a->http, ex);
		/* A server that does not know the path certainly did nothing. */
		if (write && a->http != 404 && a->http != 405) {
			fail(c, ETCD_ERR_UNKNOWN_OUTCOME, 0, err, errlen,
			     "etcd %s at %s: %s: it may or may not have been applied", k->what, ep,
			     why);
			return V_FAIL;
		}
		return V_NEXT;
	}
	struct etcd_rpc_error e;
	if (!etcd_parse_error(root, &e)) {
		/* Every etcd answer has a header (a stream message wraps it in
		 * result): JSON without one comes from something else. */
		if (a->http == 200 && (json_is_object(json_object_get(root, "header")) ||
				       json_is_object(json_object_get(root, "result")))) {
			*resp = root;
			c->kind = ETCD_OK;
			c->grpc_code = 0;
			return V_OK;
		}
		json_decref(root);
		char ex[160];
		body_excerpt(&c->body, ex, sizeof(ex));
		snprintf(why, whylen, "not an etcd answer (HTTP %ld, JSON without a header: %s)",
			 a->http, ex);
		if (write && a->http != 404 && a->http != 405) {
			fail(c, ETCD_ERR_UNKNOWN_OUTCOME, 0, err, errlen,
			     "etcd %s at %s: %s: it may or may not have been applied", k->what, ep,
			     why);
			return V_FAIL;
		}
		return V_NEXT;
	}
	json_decref(root);
	if (k->with_token && c->conf.username && etcd_error_is_stale_token(e.code, e.message)) {
		snprintf(why, whylen, "%s (gRPC code %d)", e.message, e.code);
		return V_REAUTH;
	}
	if (e.code == 16 || strstr(e.message, "user name is empty") ||
	    strstr(e.message, "authentication failed")) {
		fail(c, ETCD_ERR_AUTH, e.code, err, errlen, "etcd %s at %s: %s (gRPC code %d)%s",
		     k->what, ep, e.message, e.code,
		     strstr(e.message, "user name is empty")
			     ? ": authentication is enabled on the cluster; configure a username "
			       "and password"
			     : "");
		return V_FAIL;
	}
	/* Unavailable (14): "no leader" (never applied), "leader changed",
	 * "request timed out" (maybe applied).  Unknown (2) and
	 * DeadlineExceeded (4): the gateway's own deadline ran out. */
	if (e.code == 14 || e.code == 2 || e.code == 4) {
		snprintf(why, whylen, "%s (gRPC code %d)", e.message, e.code);
		if (write && !strstr(e.message, "no leader")) {
			fail(c, ETCD_ERR_UNKNOWN_OUTCOME, e.code, err, errlen,
			     "etcd %s at %s: %s: it may or may not have been applied", k->what, ep,
			     why);
			return V_FAIL;
		}
		return V_NEXT;
	}
	enum etcd_errkind kind = ETCD_ERR_REFUSED;
	if (e.code == 5)
		kind = ETCD_ERR_NOT_FOUND;
	else if (e.code == 11 && strstr(e.message, "compacted"))
		kind = ETCD_ERR_COMPACTED;
	fail(c, kind, e.code, err, errlen, "etcd %s at %s: %s (gRPC code %d)", k->what, ep,
	     e.message, e.code);
	return V_FAIL;
}

/* Authenticates on behalf of call k: a failure names k's call and key
 * before the authentication's own message. */
static int auth_for(struct etcd_client *c, const struct call *k, char *err, size_t errlen)
{
	char inner[1200];
	if (authenticate(c, inner, sizeof(inner)) == 0)
		return 0;
	/* "etcd authenticate ..." becomes "etcd put key 'k': authenticate ...". */
	etcd_errf(err, errlen, "etcd %s: %s", k->what,
		  strncmp(inner, "etcd ", 5) == 0 ? inner + 5 : inner);
	return -1;
}

/* Sends req (consumed) to the endpoints in turn, starting with the current
 * one; *resp gets the answer.  The endpoint that answered stays current. */
static int call(struct etcd_client *c, const struct call *k, json_t *req, json_t **resp, char *err,
		size_t errlen)
{
	*resp = NULL;
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body)
		return fail(c, ETCD_ERR_USAGE, 0, err, errlen, "etcd %s: out of memory", k->what);
	size_t blen = strlen(body);
	if (k->with_token && c->conf.username && !c->token && auth_for(c, k, err, errlen) != 0) {
		free(body);
		return -1;
	}
	char tried[1024] = "";
	size_t tlen = 0;
	bool reauthed = false;
	int rc = -1;
	for (size_t tries = 0; tries < c->conf.n;) {
		const char *ep = c->conf.endpoints[c->cur];
		struct attempt a;
		char why[400] = "";
		attempt_post(c, ep, k, body, blen, &a);
		enum verdict v = classify(c, k, ep, &a, resp, why, sizeof(why), err, errlen);
		if (v == V_OK) {
			rc = 0;
			break;
		}
		if (v == V_FAIL) {
			/* The next call starts elsewhere if this member's
			 * answer was lost. */
			if (c->kind == ETCD_ERR_UNKNOWN_OUTCOME)
				c->cur = (c->cur + 1) % c->conf.n;
			break;
		}
		if (v == V_REAUTH) {
			if (reauthed) {
				fail(c, ETCD_ERR_AUTH, 16, err, errlen,
				     "etcd %s at %s: %s, again with a new token", k->what, ep, why);
				break;
			}
			/* Expired, issued before the member restarted, or the
			 * auth store moved on: once more with a new token. */
			reauthed = true;
			drop_token(c);
			if (auth_for(c, k, err, errlen) != 0)
				break;
			continue;
		}
		int w = snprintf(tried + tlen, sizeof(tried) - tlen, "%s%s: %s", tlen ? "; " : "",
				 ep, why);
		if (w > 0)
			tlen = tlen + (size_t)w < sizeof(tried) ? tlen + (size_t)w
								: sizeof(tried) - 1;
		c->cur = (c->cur + 1) % c->conf.n;
		if (++tries < c->conf.n)
			c->stats.failovers++;
		else
			fail(c, ETCD_ERR_UNAVAILABLE, 0, err, errlen,
			     "etcd %s: no endpoint answered (%zu tried): %s", k->what, c->conf.n,
			     tried);
	}
	free(body);
	return rc;
}

static void call_what(struct call *k, const char *verb, const void *key, size_t key_len)
{
	char kt[120];
	etcd_key_text(key, key_len, kt, sizeof(kt));
	snprintf(k->what, sizeof(k->what), "%s key '%s'", verb, kt);
}

static int authenticate(struct etcd_client *c, char *err, size_t errlen)
{
	struct call k = { .path = "/v3/auth/authenticate", .cls = CALL_READ, .hasleader = true };
	char ut[80];
	etcd_key_text(c->conf.username, strlen(c->conf.username), ut, sizeof(ut));
	snprintf(k.what, sizeof(k.what), "authenticate user '%s'", ut);
	json_t *req =
		json_pack("{s:s, s:s}", "name", c->conf.username, "password", c->conf.password);
	json_t *resp;
	if (!req)
		return fail(c, ETCD_ERR_USAGE, 0, err, errlen, "etcd %s: out of memory", k.what);
	if (call(c, &k, req, &resp, err, errlen) != 0) {
		if (c->kind == ETCD_ERR_REFUSED && c->grpc_code == 3)
			c->kind = ETCD_ERR_AUTH; /* wrong user or password */
		return -1;
	}
	char perr[200];
	char *tok;
	int rc = etcd_parse_auth(resp, &tok, perr, sizeof(perr));
	json_decref(resp);
	if (rc != 0)
		return fail(c, ETCD_ERR_PROTOCOL, 0, err, errlen, "etcd %s at %s: %s", k.what,
			    etcd_client_endpoint(c), perr);
	drop_token(c);
	c->token = tok;
	c->stats.authenticates++;
	return 0;
}

int etcd_authenticate(struct etcd_client *c, char *err, size_t errlen)
{
	if (!c->conf.username)
		return fail(c, ETCD_ERR_USAGE, 0, err, errlen,
			    "etcd authenticate: no username configured");
	return authenticate(c, err, errlen);
}

/* The end of every call: resp parsed (rc, perr) and released. */
static int parsed(struct etcd_client *c, const struct call *k, json_t *resp, int rc,
		  const char *perr, char *err, size_t errlen)
{
	json_decref(resp);
	if (rc != 0)
		return fail(c, ETCD_ERR_PROTOCOL, 0, err, errlen,
			    "etcd %s at %s: malformed answer: %s", k->what, etcd_client_endpoint(c),
			    perr);
	return 0;
}

/* --- KV ---------------------------------------------------------------------------- */

static int usage(struct etcd_client *c, char *err, size_t errlen, const char *what, const char *why)
{
	return fail(c, ETCD_ERR_USAGE, 0, err, errlen, "etcd %s: %s", what, why);
}

/* Sets key and range_end (explicit, or computed for a prefix). */
static int set_range(json_t *o, const void *key, size_t key_len, const void *range_end,
		     size_t range_end_len, bool prefix)
{
	if (json_object_set_new(o, "key", etcd_json_b64(key, key_len)) != 0)
		return -1;
	if (range_end_len > 0)
		return json_object_set_new(o, "range_end", etcd_json_b64(range_end, range_end_len));
	if (prefix) {
		uint8_t *end = malloc(key_len ? key_len : 1);
		if (!end)
			return -1;
		size_t el = etcd_prefix_end(key, key_len, end);
		int rc = json_object_set_new(o, "range_end", etcd_json_b64(end, el));
		free(end);
		return rc;
	}
	return 0;
}

static int set_int(json_t *o, const char *name, int64_t v)
{
	return v ? json_object_set_new(o, name, etcd_json_int(v)) : 0;
}

static int set_true(json_t *o, const char *name, bool v)
{
	return v ? json_object_set_new(o, name, json_true()) : 0;
}

int etcd_range(struct etcd_client *c, const void *key, size_t key_len,
	       const struct etcd_range_opts *o, struct etcd_range_result *out, char *err,
	       size_t errlen)
{
	static const struct etcd_range_opts none;
	if (!o)
		o = &none;
	struct call k = { .path = "/v3/kv/range",
			  .cls = CALL_READ,
			  .with_token = true,
			  .hasleader = !o->serializable };
	call_what(&k, o->prefix || o->range_end_len ? "range" : "get", key, key_len);
	memset(out, 0, sizeof(*out));
	if ((key_len == 0 && !o->prefix && !o->range_end_len) || o->limit < 0 || o->revision < 0)
		return usage(c, err, errlen, k.what, "empty key, or negative limit or revision");
	json_t *req = json_object(), *resp;
	if (!req || set_range(req, key, key_len, o->range_end, o->range_end_len, o->prefix) ||
	    set_int(req, "limit", o->limit) || set_int(req, "revision", o->revision) ||
	    set_true(req, "serializable", o->serializable) ||
	    set_true(req, "keys_only", o->keys_only) ||
	    set_true(req, "count_only", o->count_only)) {
		json_decref(req);
		return usage(c, err, errlen, k.what, "out of memory");
	}
	if (call(c, &k, req, &resp, err, errlen) != 0)
		return -1;
	char perr[200];
	int prc = etcd_parse_range(resp, out, perr, sizeof(perr));
	if (parsed(c, &k, resp, prc, perr, err, errlen) != 0)
		return -1;
	return 0;
}

int etcd_range_each(struct etcd_client *c, const void *key, size_t key_len,
		    const struct etcd_range_opts *o, etcd_kv_cb cb, void *ctx,
		    struct etcd_header *header, char *err, size_t errlen)
{
	static const struct etcd_range_opts none;
	if (!o)
		o = &none;
	struct etcd_range_opts po = *o;
	if (po.limit == 0)
		po.limit = 1000;
	po.count_only = false;
	/* Every page ends where the caller's range ends, which is computed
	 * once: later pages start at a different key. */
	uint8_t *end = NULL;
	if (!po.range_end_len) {
		if (!po.prefix)
			return usage(c, err, errlen, "range",
				     "etcd_range_each needs a range or prefix");
		end = malloc(key_len ? key_len : 1);
		if (!end)
			return usage(c, err, errlen, "range", "out of memory");
		po.range_end_len = etcd_prefix_end(key, key_len, end);
		po.range_end = end;
		po.prefix = false;
	}
	uint8_t *next = NULL;
	const void *start = key;
	size_t start_len = key_len;
	int rc = 0;
	bool first = true;
	for (;;) {
		struct etcd_range_result r;
		if (etcd_range(c, start, start_len, &po, &r, err, errlen) != 0) {
			rc = -1;
			break;
		}
		if (first) {
			if (header)
				*header = r.header;
			if (!po.revision)
				po.revision = r.header.revision;
			first = false;
		}
		for (size_t i = 0; i < r.nkvs && rc == 0; i++)
			rc = cb(&r.kvs[i], ctx);
		if (rc != 0 || !r.more || r.nkvs == 0) {
			etcd_range_result_free(&r);
			break;
		}
		/* The next page starts just after the last key: key + "\0". */
		const struct etcd_kv *last = &r.kvs[r.nkvs - 1];
		uint8_t *nk = malloc(last->key_len + 1);
		if (!nk) {
			etcd_range_result_free(&r);
			rc = usage(c, err, errlen, "range", "out of memory");
			break;
		}
		memcpy(nk, last->key, last->key_len);
		nk[last->key_len] = 0;
		free(next);
		next = nk;
		start = next;
		start_len = last->key_len + 1;
		etcd_range_result_free(&r);
	}
	free(next);
	free(end);
	return rc;
}

int etcd_put(struct etcd_client *c, const void *key, size_t key_len, const void *value,
	     size_t value_len, const struct etcd_put_opts *o, struct etcd_put_result *out,
	     char *err, size_t errlen)
{
	static const struct etcd_put_opts none;
	if (!o)
		o = &none;
	struct call k = {
		.path = "/v3/kv/put", .cls = CALL_WRITE, .with_token = true, .hasleader = true
	};
	call_what(&k, "put", key, key_len);
	if (out)
		memset(out, 0, sizeof(*out));
	if (key_len == 0)
		return usage(c, err, errlen, k.what, "empty key");
	json_t *req = json_object(), *resp;
	if (!req || json_object_set_new(req, "key", etcd_json_b64(key, key_len)) ||
	    json_object_set_new(req, "value", etcd_json_b64(value, value_len)) ||
	    set_int(req, "lease", o->lease) || set_true(req, "prev_kv", o->prev_kv)) {
		json_decref(req);
		return usage(c, err, errlen, k.what, "out of memory");
	}
	if (call(c, &k, req, &resp, err, errlen) != 0)
		return -1;
	struct etcd_put_result tmp;
	char perr[200];
	int prc = etcd_parse_put(resp, out ? out : &tmp, perr, sizeof(perr));
	if (parsed(c, &k, resp, prc, perr, err, errlen) != 0)
		return -1;
	if (!out)
		etcd_put_result_free(&tmp);
	return 0;
}

int etcd_delete(struct etcd_client *c, const void *key, size_t key_len,
		const struct etcd_delete_opts *o, struct etcd_delete_result *out, char *err,
		size_t errlen)
{
	static const struct etcd_delete_opts none;
	if (!o)
		o = &none;
	struct call k = { .path = "/v3/kv/deleterange",
			  .cls = CALL_WRITE,
			  .with_token = true,
			  .hasleader = true };
	call_what(&k, "delete", key, key_len);
	if (out)
		memset(out, 0, sizeof(*out));
	if (key_len == 0 && !o->prefix && !o->range_end_len)
		return usage(c, err, errlen, k.what, "empty key");
	json_t *req = json_object(), *resp;
	if (!req || set_range(req, key, key_len, o->range_end, o->range_end_len, o->prefix) ||
	    set_true(req, "prev_kv", o->prev_kv)) {
		json_decref(req);
		return usage(c, err, errlen, k.what, "out of memory");
	}
	if (call(c, &k, req, &resp, err, errlen) != 0)
		return -1;
	struct etcd_delete_result tmp;
	char perr[200];
	int prc = etcd_parse_delete(resp, out ? out : &tmp, perr, sizeof(perr));
	if (parsed(c, &k, resp, prc, perr, err, errlen) != 0)
		return -1;
	if (!out)
		etcd_delete_result_free(&tmp);
	return 0;
}

/* --- transactions ------------------------------------------------------------ */

#define TXN_MAX_OPS 128

static json_t *compare_json(const struct etcd_compare *cmp)
{
	static const char *const targets[] = { "VERSION", "CREATE", "MOD", "VALUE", "LEASE" };
	static const char *const fields[] = { "version", "create_revision", "mod_revision", "value",
					      "lease" };
	static const char *const results[] = { "EQUAL", "GREATER", "LESS", "NOT_EQUAL" };
	if ((unsigned)cmp->target > ETCD_CMP_LEASE || (unsigned)cmp->result > ETCD_CMP_NOT_EQUAL ||
	    cmp->key_len == 0)
		return NULL;
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_t *v = cmp->target == ETCD_CMP_VALUE ? etcd_json_b64(cmp->value, cmp->value_len)
						  : etcd_json_int(cmp->number);
	if (json_object_set_new(o, "key", etcd_json_b64(cmp->key, cmp->key_len)) ||
	    json_object_set_new(o, "target", json_string(targets[cmp->target])) ||
	    json_object_set_new(o, "result", json_string(results[cmp->result])) ||
	    json_object_set_new(o, fields[cmp->target], v)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *op_json(const struct etcd_op *op)
{
	json_t *body = json_object();
	const char *name;
	int bad = !body;
	if (bad)
		return NULL;
	switch (op->type) {
	case ETCD_OP_RANGE:
		name = "request_range";
		bad = (op->key_len == 0 && !op->prefix && !op->range_end_len) || op->limit < 0 ||
		      set_range(body, op->key, op->key_len, op->range_end, op->range_end_len,
				op->prefix) ||
		      set_int(body, "limit", op->limit);
		break;
	case ETCD_OP_PUT:
		name = "request_put";
		bad = op->key_len == 0 ||
		      json_object_set_new(body, "key", etcd_json_b64(op->key, op->key_len)) ||
		      json_object_set_new(body, "value", etcd_json_b64(op->value, op->value_len)) ||
		      set_int(body, "lease", op->lease) || set_true(body, "prev_kv", op->prev_kv);
		break;
	case ETCD_OP_DELETE:
		name = "request_delete_range";
		bad = (op->key_len == 0 && !op->prefix && !op->range_end_len) ||
		      set_range(body, op->key, op->key_len, op->range_end, op->range_end_len,
				op->prefix) ||
		      set_true(body, "prev_kv", op->prev_kv);
		break;
	default:
		bad = 1;
		name = "";
	}
	if (bad) {
		json_decref(body);
		return NULL;
	}
	json_t *o = json_object();
	if (!o || json_object_set_new(o, name, body)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *ops_json(const struct etcd_op *ops, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++) {
		json_t *o = op_json(&ops[i]);
		if (!o || json_array_append_new(a, o)) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

int etcd_txn(struct etcd_client *c, const struct etcd_compare *cmp, size_t ncmp,
	     const struct etcd_op *success, size_t nsuccess, const struct etcd_op *failure,
	     size_t nfailure, struct etcd_txn_result *out, char *err, size_t errlen)
{
	struct call k = { .path = "/v3/kv/txn", .with_token = true, .hasleader = true };
	/* A transaction that only reads may be repeated elsewhere. */
	k.cls = CALL_READ;
	for (size_t i = 0; i < nsuccess; i++)
		if (success[i].type != ETCD_OP_RANGE)
			k.cls = CALL_WRITE;
	for (size_t i = 0; i < nfailure; i++)
		if (failure[i].type != ETCD_OP_RANGE)
			k.cls = CALL_WRITE;
	const void *key = ncmp       ? cmp[0].key
			  : nsuccess ? success[0].key
			  : nfailure ? failure[0].key
				     : "";
	size_t klen = ncmp       ? cmp[0].key_len
		      : nsuccess ? success[0].key_len
		      : nfailure ? failure[0].key_len
				 : 0;
	call_what(&k, "txn", key, klen);
	memset(out, 0, sizeof(*out));
	if (ncmp > TXN_MAX_OPS || nsuccess > TXN_MAX_OPS || nfailure > TXN_MAX_OPS)
		return usage(c, err, errlen, k.what, "more than 128 compares or operations");
	json_t *req = json_object(), *ca = json_array(), *resp;
	for (size_t i = 0; ca && i < ncmp; i++) {
		json_t *o = compare_json(&cmp[i]);
		if (!o || json_array_append_new(ca, o)) {
			json_decref(ca);
			ca = NULL;
		}
	}
	json_t *sa = ops_json(success, nsuccess), *fa = ops_json(failure, nfailure);
	if (!req || !ca || !sa || !fa) {
		json_decref(req);
		json_decref(ca);
		json_decref(sa);
		json_decref(fa);
		return usage(c, err, errlen, k.what,
			     "invalid compare or operation (empty key, unknown target or type, "
			     "negative limit)");
	}
	json_object_set_new(req, "compare", ca);
	json_object_set_new(req, "success", sa);
	json_object_set_new(req, "failure", fa);
	if (call(c, &k, req, &resp, err, errlen) != 0)
		return -1;
	char perr[200];
	int prc = etcd_parse_txn(resp, out, perr, sizeof(perr));
	if (parsed(c, &k, resp, prc, perr, err, errlen) != 0)
		return -1;
	size_t want = out->succeeded ? nsuccess : nfailure;
	if (out->nresponses != want) {
		size_t got = out->nresponses;
		etcd_txn_result_free(out);
		return fail(c, ETCD_ERR_PROTOCOL, 0, err, errlen,
			    "etcd %s at %s: %zu responses for a branch of %zu operations", k.what,
			    etcd_client_endpoint(c), got, want);
	}
	const struct etcd_op *ops = out->succeeded ? success : failure;
	for (size_t i = 0; i < want; i++) {
		if (out->responses[i].type != ops[i].type) {
			etcd_txn_result_free(out);
			return fail(c, ETCD_ERR_PROTOCOL, 0, err, errlen,
				    "etcd %s at %s: response %zu is not of its operation's type",
				    k.what, etcd_client_endpoint(c), i);
		}
	}
	return 0;
}

int etcd_create(struct etcd_client *c, const void *key, size_t key_len, const void *value,
		size_t value_len, int64_t lease, int64_t *revision, struct etcd_kv *existing,
		char *err, size_t errlen)
{
	struct etcd_compare cmp = {
		.target = ETCD_CMP_CREATE, .result = ETCD_CMP_EQUAL, .key = key, .key_len = key_len
	};
	struct etcd_op put = { .type = ETCD_OP_PUT,
			       .key = key,
			       .key_len = key_len,
			       .value = value,
			       .value_len = value_len,
			       .lease = lease };
	struct etcd_op get = { .type = ETCD_OP_RANGE, .key = key, .key_len = key_len };
	struct etcd_txn_result r;
	if (existing)
		memset(existing, 0, sizeof(*existing));
	if (revision)
		*revision = 0;
	if (etcd_txn(c, &cmp, 1, &put, 1, &get, 1, &r, err, errlen) != 0)
		return -1;
	if (r.succeeded) {
		if (revision)
			*revision = r.responses[0].revision ? r.responses[0].revision
							    : r.header.revision;
		etcd_txn_result_free(&r);
		return 1;
	}
	if (r.responses[0].nkvs != 1) {
		char kt[120];
		etcd_key_text(key, key_len, kt, sizeof(kt));
		etcd_txn_result_free(&r);
		return fail(c, ETCD_ERR_PROTOCOL, 0, err, errlen,
			    "etcd create key '%s' at %s: the compare failed but the key is not "
			    "there",
			    kt, etcd_client_endpoint(c));
	}
	if (revision)
		*revision = r.responses[0].kvs[0].mod_revision;
	if (existing) {
		*existing = r.responses[0].kvs[0];
		memset(&r.responses[0].kvs[0], 0, sizeof(r.responses[0].kvs[0]));
	}
	etcd_txn_result_free(&r);
	return 0;
}

/* --- leases and compaction --------------------------------------------------- */

int etcd_lease_grant(struct etcd_client *c, int64_t ttl_s, int64_t id, int64_t *id_out,
		     int64_t *ttl_out, char *err, size_t errlen)
{
	struct call k = {
		.path = "/v3/lease/grant", .cls = CALL_WRITE, .with_token = true, .hasleader = true
	};
	snprintf(k.what, sizeof(k.what), "lease grant (TTL %lld s)", (long long)ttl_s);
	if (ttl_s <= 0 || id < 0)
		return usage(c, err, errlen, k.what, "TTL must be positive, ID not negative");
	json_t *req = json_object(), *resp;
	if (!req || set_int(req, "TTL", ttl_s) || set_int(req, "ID", id)) {
		json_decref(req);
		return usage(c, err, errlen, k.what, "out of memory");
	}
	if (call(c, &k, req, &resp, err, errlen) != 0)
		return -1;
	int64_t gid, gttl;
	char perr[200];
	int prc = etcd_parse_lease_grant(resp, &gid, &gttl, perr, sizeof(perr));
	if (parsed(c, &k, resp, prc, perr, err, errlen) != 0)
		return -1;
	if (id_out)
		*id_out = gid;
	if (ttl_out)
		*ttl_out = gttl;
	return 0;
}

int etcd_lease_keepalive(struct etcd_client *c, int64_t id, int64_t *ttl_out, char *err,
			 size_t errlen)
{
	/* Renewing twice is harmless: a read for failover. */
	struct call k = { .path = "/v3/lease/keepalive",
			  .cls = CALL_READ,
			  .with_token = true,
			  .hasleader = true };
	snprintf(k.what, sizeof(k.what), "lease keepalive %lld", (long long)id);
	if (ttl_out)
		*ttl_out = 0;
	if (id <= 0)
		return usage(c, err, errlen, k.what, "no lease ID");
	json_t *req = json_object(), *resp;
	if (!req || set_int(req, "ID", id)) {
		json_decref(req);
		return usage(c, err, errlen, k.what, "out of memory");
	}
	if (call(c, &k, req, &resp, err, errlen) != 0)
		return -1;
	int64_t gid, ttl;
	char perr[200];
	int prc = etcd_parse_lease_keepalive(resp, &gid, &ttl, perr, sizeof(perr));
	if (parsed(c, &k, resp, prc, perr, err, errlen) != 0)
		return -1;
	if (gid != id)
		return fail(c, ETCD_ERR_PROTOCOL, 0, err, errlen,
			    "etcd %s at %s: the answer is for lease %lld", k.what,
			    etcd_client_endpoint(c), (long long)gid);
	/* etcd answers a lease it does not know with TTL 0, not an error. */
	if (ttl <= 0)
		return fail(c, ETCD_ERR_NOT_FOUND, 5, err, errlen,
			    "etcd %s at %s: the lease does not exist (expired or revoked)", k.what,
			    etcd_client_endpoint(c));
	if (ttl_out)
		*ttl_out = ttl;
	return 0;
}

int etcd_lease_revoke(struct etcd_client *c, int64_t id, char *err, size_t errlen)
{
	struct call k = {
		.path = "/v3/lease/revoke", .cls = CALL_WRITE, .with_token = true, .hasleader = true
	};
	snprintf(k.what, sizeof(k.what), "lease revoke %lld", (long long)id);
	if (id <= 0)
		return usage(c, err, errlen, k.what, "no lease ID");
	json_t *req = json_object(), *resp;
	if (!req || set_int(req, "ID", id)) {
		json_decref(req);
		return usage(c, err, errlen, k.what, "out of memory");
	}
	if (call(c, &k, req, &resp, err, errlen) != 0)
		return -1;
	struct etcd_header h;
	char perr[200];
	int prc = etcd_parse_empty(resp, &h, perr, sizeof(perr));
	if (parsed(c, &k, resp, prc, perr, err, errlen) != 0)
		return -1;
	return 0;
}

int etcd_compact(struct etcd_client *c, int64_t revision, bool physical, char *err, size_t errlen)
{
	struct call k = { .path = "/v3/kv/compaction",
			  .cls = CALL_WRITE,
			  .with_token = true,
			  .hasleader = true };
	snprintf(k.what, sizeof(k.what), "compact to revision %lld", (long long)revision);
	if (revision <= 0)
		return usage(c, err, errlen, k.what, "revision must be positive");
	json_t *req = json_object(), *resp;
	if (!req || set_int(req, "revision", revision) || set_true(req, "physical", physical)) {
		json_decref(req);
		return usage(c, err, errlen, k.what, "out of memory");
	}
	if (call(c, &k, req, &resp, err, errlen) != 0)
		return -1;
	struct etcd_header h;
	char perr[200];
	int prc = etcd_parse_empty(resp, &h, perr, sizeof(perr));
	if (parsed(c, &k, resp, prc, perr, err, errlen) != 0)
		return -1;
	return 0;
}
