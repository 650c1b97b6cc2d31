/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * etcd_tool: libtesetcd driven line by line, for the Python tests in
 * tests/fleet/ (which start the etcd clusters, kill members and judge the
 * results).  One JSON command per line on stdin, one JSON answer per line on
 * stdout; watches run in the same single-threaded poll loop as stdin (the
 * way tescontrol's event loop would run them) and print their updates as
 * they come.
 *
 *   etcd_tool --endpoints URL[,URL...] [--timeout-ms N] [--connect-timeout-ms N]
 *             [--max-response N] [--watch-max-batch N] [--cacert F]
 *             [--cert F --key F] [--insecure] [--user U --password P]
 *
 * Commands (key/value are strings; key_b64/value_b64 for bytes; every
 * command may name "client" (made with "client") and carry an "id" that the
 * answer repeats):
 *   {"cmd":"put","key":K,"value":V,"lease":N,"prev_kv":true}
 *   {"cmd":"get","key":K,"prefix":true,"limit":N,"revision":N,"serializable":true,
 *    "keys_only":true,"count_only":true}
 *   {"cmd":"range_each","key":K,"prefix":true,"page":N}
 *   {"cmd":"delete","key":K,"prefix":true,"prev_kv":true}
 *   {"cmd":"create","key":K,"value":V,"lease":N}
 *   {"cmd":"txn","compare":[{"key":K,"target":"create|mod|version|value|lease",
 *    "result":"=|>|<|!=","number":N,"value":V}],"success":[OP],"failure":[OP]}
 *      OP: {"type":"put|range|delete","key":K,"value":V,"prefix":true,"limit":N,
 *           "lease":N,"prev_kv":true}
 *   {"cmd":"lease_grant","ttl":N,"lease_id":N} {"cmd":"lease_keepalive","lease_id":N}
 *   {"cmd":"lease_revoke","lease_id":N} {"cmd":"compact","revision":N,"physical":true}
 *   {"cmd":"authenticate"} {"cmd":"stats"}
 *   {"cmd":"client","name":S,"endpoints":[URL...]}   (same TLS and user)
 *   {"cmd":"watch","watch":S,"key":K,"prefix":true,"start_revision":N,"prev_kv":true,
 *    "progress_notify":true}
 *   {"cmd":"watch_stop","watch":S}   {"cmd":"quit"}
 * Answers: {"ok":true,...} or {"ok":false,"kind":KIND,"code":N,"error":MSG}.
 * Watch updates: {"watch":S,"kind":"created|events|progress|disconnected|
 * compacted|failed","endpoint":URL,"revision":N,"events":[...],"message":M,
 * "compact_revision":N}.
 */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcd.h"
#include "etcd_parse.h"

#define MAX_CLIENTS 8
#define MAX_WATCHES 16
#define LINE_MAX_BYTES (4u << 20)

static struct etcd_config base;
static const char *endpoint_list[ETCD_MAX_ENDPOINTS];

static struct {
	char name[32];
	struct etcd_client *c;
} clients[MAX_CLIENTS];

static struct {
	char name[32];
	struct etcd_watch *w;
	bool stopped;
} watches[MAX_WATCHES];

static void emit(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		abort();
	fputs(s, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	free(s);
}

/* Bytes as JSON: "key" (when valid UTF-8) and always "key_b64". */
static void set_bytes(json_t *o, const char *name, const uint8_t *p, size_t n)
{
	char b[64];
	json_t *s = json_stringn((const char *)p, n);
	if (s)
		json_object_set_new(o, name, s);
	char *enc = etcd_b64_encode(p, n);
	snprintf(b, sizeof(b), "%s_b64", name);
	json_object_set_new(o, b, json_string(enc ? enc : ""));
	free(enc);
}

static json_t *kv_json(const struct etcd_kv *kv)
{
	json_t *o = json_object();
	set_bytes(o, "key", kv->key, kv->key_len);
	set_bytes(o, "value", kv->value, kv->value_len);
	json_object_set_new(o, "create_revision", json_integer(kv->create_revision));
	json_object_set_new(o, "mod_revision", json_integer(kv->mod_revision));
	json_object_set_new(o, "version", json_integer(kv->version));
	json_object_set_new(o, "lease", json_integer(kv->lease));
	return o;
}

static json_t *kvs_json(const struct etcd_kv *kvs, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, kv_json(&kvs[i]));
	return a;
}

/* Decoded bytes of field name (or name_b64); held in *hold. */
static int get_bytes(json_t *cmd, const char *name, const uint8_t **p, size_t *n, uint8_t **hold)
{
	char b[64];
	json_t *v = json_object_get(cmd, name);
	*hold = NULL;
	if (json_is_string(v)) {
		*p = (const uint8_t *)json_string_value(v);
		*n = json_string_length(v);
		return 0;
	}
	snprintf(b, sizeof(b), "%s_b64", name);
	v = json_object_get(cmd, b);
	if (json_is_string(v)) {
		if (etcd_b64_decode(json_string_value(v), json_string_length(v), hold, n) != 0)
			return -1;
		*p = *hold;
		return 0;
	}
	*p = (const uint8_t *)"";
	*n = 0;
	return 0;
}

static int64_t get_int(json_t *cmd, const char *name)
{
	json_t *v = json_object_get(cmd, name);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static bool get_flag(json_t *cmd, const char *name)
{
	return json_is_true(json_object_get(cmd, name));
}

static json_t *failure(struct etcd_client *c, const char *err)
{
	return json_pack("{s:b, s:s, s:i, s:s}", "ok", 0, "kind",
			 etcd_errkind_name(etcd_client_errkind(c)), "code",
			 etcd_client_grpc_code(c), "error", err);
}

static json_t *ok(void)
{
	return json_pack("{s:b}", "ok", 1);
}

static struct etcd_client *make_client(const char *const *eps, size_t n, char *err, size_t errlen)
{
	struct etcd_config cfg = base;
	cfg.endpoints = eps;
	cfg.nendpoints = n;
	return etcd_client_new(&cfg, err, errlen);
}

static struct etcd_client *find_client(json_t *cmd)
{
	json_t *v = json_object_get(cmd, "client");
	const char *name = json_is_string(v) ? json_string_value(v) : "";
	for (size_t i = 0; i < MAX_CLIENTS; i++)
		if (clients[i].c && strcmp(clients[i].name, name) == 0)
			return clients[i].c;
	return NULL;
}

/* --- watches ------------------------------------------------------------- */

static const char *kind_name(enum etcd_watch_kind k)
{
	static const char *const names[] = { "created",      "events",    "progress",
					     "disconnected", "compacted", "failed" };
	return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

static void on_watch(const struct etcd_watch_update *u, void *ctx)
{
	const char *name = ctx;
	json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "watch", name, "kind", kind_name(u->kind),
			      "endpoint", u->endpoint ? u->endpoint : "", "revision",
			      (json_int_t)u->revision);
	if (u->message)
		json_object_set_new(o, "message", json_string(u->message));
	if (u->kind == ETCD_WATCH_COMPACTED)
		json_object_set_new(o, "compact_revision", json_integer(u->compact_revision));
	if (u->kind == ETCD_WATCH_EVENTS) {
		json_t *a = json_array();
		for (size_t i = 0; i < u->nevents; i++) {
			const struct etcd_event *ev = &u->events[i];
			json_t *e = kv_json(&ev->kv);
			json_object_set_new(
				e, "type",
				json_string(ev->type == ETCD_EVENT_PUT ? "PUT" : "DELETE"));
			if (ev->has_prev)
				json_object_set_new(e, "prev", kv_json(&ev->prev_kv));
			json_array_append_new(a, e);
		}
		json_object_set_new(o, "events", a);
	}
	emit(o);
}

static json_t *cmd_watch(struct etcd_client *c, json_t *cmd)
{
	json_t *nv = json_object_get(cmd, "watch");
	if (!json_is_string(nv) || json_string_length(nv) >= sizeof(watches[0].name))
		return json_pack("{s:b, s:s}", "ok", 0, "error", "watch needs a short name");
	size_t slot = MAX_WATCHES;
	for (size_t i = 0; i < MAX_WATCHES; i++) {
		if (watches[i].w && strcmp(watches[i].name, json_string_value(nv)) == 0)
			return json_pack("{s:b, s:s}", "ok", 0, "error", "watch name in use");
		if (!watches[i].w && slot == MAX_WATCHES)
			slot = i;
	}
	if (slot == MAX_WATCHES)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "too many watches");
	const uint8_t *key;
	size_t klen;
	uint8_t *hold;
	if (get_bytes(cmd, "key", &key, &klen, &hold) != 0)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "bad key_b64");
	snprintf(watches[slot].name, sizeof(watches[slot].name), "%s", json_string_value(nv));
	struct etcd_watch_opts o = {
		.key = key,
		.key_len = klen,
		.prefix = get_flag(cmd, "prefix"),
		.start_revision = get_int(cmd, "start_revision"),
		.prev_kv = get_flag(cmd, "prev_kv"),
		.progress_notify = get_flag(cmd, "progress_notify"),
	};
	char err[1024];
	watches[slot].w = etcd_watch_new(c, &o, on_watch, watches[slot].name, err, sizeof(err));
	watches[slot].stopped = false;
	free(hold);
	if (!watches[slot].w)
		return json_pack("{s:b, s:s}", "ok", 0, "error", err);
	return ok();
}

static json_t *watch_info(size_t i)
{
	uint64_t rec, dup;
	etcd_watch_stats(watches[i].w, &rec, &dup);
	return json_pack("{s:b, s:I, s:I, s:I}", "ok", 1, "next_revision",
			 (json_int_t)etcd_watch_next_revision(watches[i].w), "reconnects",
			 (json_int_t)rec, "duplicates", (json_int_t)dup);
}

static json_t *cmd_watch_ctl(json_t *cmd, bool stop)
{
	json_t *nv = json_object_get(cmd, "watch");
	for (size_t i = 0; i < MAX_WATCHES; i++) {
		if (watches[i].w && json_is_string(nv) &&
		    strcmp(watches[i].name, json_string_value(nv)) == 0) {
			json_t *r = watch_info(i);
			if (stop) {
				etcd_watch_free(watches[i].w);
				watches[i].w = NULL;
			}
			return r;
		}
	}
	return json_pack("{s:b, s:s}", "ok", 0, "error", "no such watch");
}

/* --- KV commands ------------------------------------------------------------ */

static json_t *cmd_put(struct etcd_client *c, json_t *cmd)
{
	const uint8_t *k, *v;
	size_t kl, vl;
	uint8_t *hk, *hv;
	get_bytes(cmd, "key", &k, &kl, &hk);
	get_bytes(cmd, "value", &v, &vl, &hv);
	struct etcd_put_opts o = { .lease = get_int(cmd, "lease"),
				   .prev_kv = get_flag(cmd, "prev_kv") };
	struct etcd_put_result r;
	char err[2048];
	int rc = etcd_put(c, k, kl, v, vl, &o, &r, err, sizeof(err));
	free(hk);
	free(hv);
	if (rc != 0)
		return failure(c, err);
	json_t *out = json_pack("{s:b, s:I}", "ok", 1, "revision", (json_int_t)r.header.revision);
	if (r.has_prev)
		json_object_set_new(out, "prev", kv_json(&r.prev_kv));
	etcd_put_result_free(&r);
	return out;
}

static json_t *cmd_get(struct etcd_client *c, json_t *cmd)
{
	const uint8_t *k;
	size_t kl;
	uint8_t *hk;
	get_bytes(cmd, "key", &k, &kl, &hk);
	struct etcd_range_opts o = {
		.prefix = get_flag(cmd, "prefix"),
		.limit = get_int(cmd, "limit"),
		.revision = get_int(cmd, "revision"),
		.serializable = get_flag(cmd, "serializable"),
		.keys_only = get_flag(cmd, "keys_only"),
		.count_only = get_flag(cmd, "count_only"),
	};
	struct etcd_range_result r;
	char err[2048];
	int rc = etcd_range(c, k, kl, &o, &r, err, sizeof(err));
	free(hk);
	if (rc != 0)
		return failure(c, err);
	json_t *out = json_pack("{s:b, s:I, s:o, s:b, s:I, s:I}", "ok", 1, "revision",
				(json_int_t)r.header.revision, "kvs", kvs_json(r.kvs, r.nkvs),
				"more", r.more, "count", (json_int_t)r.count, "member_id",
				(json_int_t)(r.header.member_id & 0x7fffffffffffffffULL));
	etcd_range_result_free(&r);
	return out;
}

static int collect(const struct etcd_kv *kv, void *ctx)
{
	json_array_append_new(ctx, kv_json(kv));
	return 0;
}

static json_t *cmd_range_each(struct etcd_client *c, json_t *cmd)
{
	const uint8_t *k;
	size_t kl;
	uint8_t *hk;
	get_bytes(cmd, "key", &k, &kl, &hk);
	struct etcd_range_opts o = { .prefix = get_flag(cmd, "prefix"),
				     .limit = get_int(cmd, "page"),
				     .revision = get_int(cmd, "revision") };
	struct etcd_stats before, after;
	etcd_client_stats(c, &before);
	struct etcd_header h;
	char err[2048];
	json_t *a = json_array();
	int rc = etcd_range_each(c, k, kl, &o, collect, a, &h, err, sizeof(err));
	free(hk);
	if (rc != 0) {
		json_decref(a);
		return failure(c, err);
	}
	etcd_client_stats(c, &after);
	return json_pack("{s:b, s:I, s:o, s:I}", "ok", 1, "revision", (json_int_t)h.revision, "kvs",
			 a, "requests", (json_int_t)(after.requests - before.requests));
}

static json_t *cmd_delete(struct etcd_client *c, json_t *cmd)
{
	const uint8_t *k;
	size_t kl;
	uint8_t *hk;
	get_bytes(cmd, "key", &k, &kl, &hk);
	struct etcd_delete_opts o = { .prefix = get_flag(cmd, "prefix"),
				      .prev_kv = get_flag(cmd, "prev_kv") };
	struct etcd_delete_result r;
	char err[2048];
	int rc = etcd_delete(c, k, kl, &o, &r, err, sizeof(err));
	free(hk);
	if (rc != 0)
		return failure(c, err);
	json_t *out = json_pack("{s:b, s:I, s:I, s:o}", "ok", 1, "revision",
				(json_int_t)r.header.revision, "deleted", (json_int_t)r.deleted,
				"prev_kvs", kvs_json(r.prev_kvs, r.nprev));
	etcd_delete_result_free(&r);
	return out;
}

static json_t *cmd_create(struct etcd_client *c, json_t *cmd)
{
	const uint8_t *k, *v;
	size_t kl, vl;
	uint8_t *hk, *hv;
	get_bytes(cmd, "key", &k, &kl, &hk);
	get_bytes(cmd, "value", &v, &vl, &hv);
	int64_t rev;
	struct etcd_kv existing;
	char err[2048];
	int rc = etcd_create(c, k, kl, v, vl, get_int(cmd, "lease"), &rev, &existing, err,
			     sizeof(err));
	free(hk);
	free(hv);
	if (rc < 0)
		return failure(c, err);
	json_t *out = json_pack("{s:b, s:b, s:I}", "ok", 1, "created", rc == 1, "revision",
				(json_int_t)rev);
	if (rc == 0) {
		json_object_set_new(out, "existing", kv_json(&existing));
		etcd_kv_free(&existing);
	}
	return out;
}

/* Parsed txn pieces and the buffers they point into. */
struct holds {
	uint8_t *p[3 * 130 * 2];
	size_t n;
};

static int parse_ops(json_t *a, struct etcd_op *ops, size_t *n, struct holds *h)
{
	*n = 0;
	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > 130)
		return -1;
	for (size_t i = 0; i < json_array_size(a); i++) {
		json_t *o = json_array_get(a, i);
		const char *t = json_string_value(json_object_get(o, "type"));
		struct etcd_op *op = &ops[i];
		memset(op, 0, sizeof(*op));
		if (!t)
			return -1;
		op->type = strcmp(t, "put") == 0      ? ETCD_OP_PUT
			   : strcmp(t, "delete") == 0 ? ETCD_OP_DELETE
						      : ETCD_OP_RANGE;
		const uint8_t *p;
		if (get_bytes(o, "key", &p, &op->key_len, &h->p[h->n++]) != 0)
			return -1;
		op->key = p;
		if (get_bytes(o, "value", &p, &op->value_len, &h->p[h->n++]) != 0)
			return -1;
		op->value = p;
		op->prefix = get_flag(o, "prefix");
		op->limit = get_int(o, "limit");
		op->lease = get_int(o, "lease");
		op->prev_kv = get_flag(o, "prev_kv");
		*n = i + 1;
	}
	return 0;
}

static json_t *cmd_txn(struct etcd_client *c, json_t *cmd)
{
	static struct etcd_compare cmp[130];
	static struct etcd_op succ[130], fail[130];
	struct holds *h = calloc(1, sizeof(*h));
	size_t ncmp = 0, ns = 0, nf = 0;
	json_t *ca = json_object_get(cmd, "compare"), *out = NULL;
	if (ca && (!json_is_array(ca) || json_array_size(ca) > 130))
		goto bad;
	for (size_t i = 0; ca && i < json_array_size(ca); i++) {
		json_t *o = json_array_get(ca, i);
		const char *t = json_string_value(json_object_get(o, "target"));
		const char *r = json_string_value(json_object_get(o, "result"));
		struct etcd_compare *x = &cmp[i];
		memset(x, 0, sizeof(*x));
		if (!t || !r)
			goto bad;
		x->target = strcmp(t, "create") == 0  ? ETCD_CMP_CREATE
			    : strcmp(t, "mod") == 0   ? ETCD_CMP_MOD
			    : strcmp(t, "value") == 0 ? ETCD_CMP_VALUE
			    : strcmp(t, "lease") == 0 ? ETCD_CMP_LEASE
						      : ETCD_CMP_VERSION;
		x->result = strcmp(r, ">") == 0    ? ETCD_CMP_GREATER
			    : strcmp(r, "<") == 0  ? ETCD_CMP_LESS
			    : strcmp(r, "!=") == 0 ? ETCD_CMP_NOT_EQUAL
						   : ETCD_CMP_EQUAL;
		const uint8_t *p;
		if (get_bytes(o, "key", &p, &x->key_len, &h->p[h->n++]) != 0)
			goto bad;
		x->key = p;
		if (get_bytes(o, "value", &p, &x->value_len, &h->p[h->n++]) != 0)
			goto bad;
		x->value = p;
		x->number = get_int(o, "number");
		ncmp = i + 1;
	}
	if (parse_ops(json_object_get(cmd, "success"), succ, &ns, h) != 0 ||
	    parse_ops(json_object_get(cmd, "failure"), fail, &nf, h) != 0)
		goto bad;
	struct etcd_txn_result r;
	char err[2048];
	if (etcd_txn(c, cmp, ncmp, succ, ns, fail, nf, &r, err, sizeof(err)) != 0) {
		out = failure(c, err);
		goto done;
	}
	json_t *resp = json_array();
	for (size_t i = 0; i < r.nresponses; i++) {
		const struct etcd_op_result *x = &r.responses[i];
		static const char *const tn[] = { "range", "put", "delete" };
		json_array_append_new(
			resp, json_pack("{s:s, s:I, s:o, s:b, s:I, s:I}", "type", tn[x->type],
					"revision", (json_int_t)x->revision, "kvs",
					kvs_json(x->kvs, x->nkvs), "more", x->more, "count",
					(json_int_t)x->count, "deleted", (json_int_t)x->deleted));
	}
	out = json_pack("{s:b, s:b, s:I, s:o}", "ok", 1, "succeeded", r.succeeded, "revision",
			(json_int_t)r.header.revision, "responses", resp);
	etcd_txn_result_free(&r);
	goto done;
bad:
	out = json_pack("{s:b, s:s}", "ok", 0, "error", "malformed txn command");
done:
	for (size_t i = 0; i < h->n; i++)
		free(h->p[i]);
	free(h);
	return out;
}

static json_t *run_cmd(json_t *cmd, bool *quit)
{
	const char *name = json_string_value(json_object_get(cmd, "cmd"));
	char err[2048];
	if (!name)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "no cmd");
	if (strcmp(name, "quit") == 0) {
		*quit = true;
		return ok();
	}
	if (strcmp(name, "client") == 0) {
		json_t *eps = json_object_get(cmd, "endpoints");
		const char *nm = json_string_value(json_object_get(cmd, "name"));
		const char *list[ETCD_MAX_ENDPOINTS];
		size_t n = 0, slot = MAX_CLIENTS;
		if (!nm || strlen(nm) >= sizeof(clients[0].name) || !json_is_array(eps) ||
		    json_array_size(eps) > ETCD_MAX_ENDPOINTS)
			return json_pack("{s:b, s:s}", "ok", 0, "error",
					 "client needs name, endpoints");
		for (size_t i = 0; i < json_array_size(eps); i++)
			list[n++] = json_string_value(json_array_get(eps, i));
		for (size_t i = 0; i < MAX_CLIENTS; i++)
			if (!clients[i].c) {
				slot = i;
				break;
			}
		if (slot == MAX_CLIENTS)
			return json_pack("{s:b, s:s}", "ok", 0, "error", "too many clients");
		clients[slot].c = make_client(list, n, err, sizeof(err));
		if (!clients[slot].c)
			return json_pack("{s:b, s:s, s:s}", "ok", 0, "kind", "usage", "error", err);
		snprintf(clients[slot].name, sizeof(clients[slot].name), "%s", nm);
		return ok();
	}
	struct etcd_client *c = find_client(cmd);
	if (!c)
		return json_pack("{s:b, s:s}", "ok", 0, "error", "no such client");
	if (strcmp(name, "put") == 0)
		return cmd_put(c, cmd);
	if (strcmp(name, "get") == 0)
		return cmd_get(c, cmd);
	if (strcmp(name, "range_each") == 0)
		return cmd_range_each(c, cmd);
	if (strcmp(name, "delete") == 0)
		return cmd_delete(c, cmd);
	if (strcmp(name, "create") == 0)
		return cmd_create(c, cmd);
	if (strcmp(name, "txn") == 0)
		return cmd_txn(c, cmd);
	if (strcmp(name, "lease_grant") == 0) {
		int64_t id, ttl;
		if (etcd_lease_grant(c, get_int(cmd, "ttl"), get_int(cmd, "lease_id"), &id, &ttl,
				     err, sizeof(err)) != 0)
			return failure(c, err);
		return json_pack("{s:b, s:I, s:I}", "ok", 1, "lease_id", (json_int_t)id, "ttl",
				 (json_int_t)ttl);
	}
	if (strcmp(name, "lease_keepalive") == 0) {
		int64_t ttl;
		if (etcd_lease_keepalive(c, get_int(cmd, "lease_id"), &ttl, err, sizeof(err)) != 0)
			return failure(c, err);
		return json_pack("{s:b, s:I}", "ok", 1, "ttl", (json_int_t)ttl);
	}
	if (strcmp(name, "lease_revoke") == 0) {
		if (etcd_lease_revoke(c, get_int(cmd, "lease_id"), err, sizeof(err)) != 0)
			return failure(c, err);
		return ok();
	}
	if (strcmp(name, "compact") == 0) {
		if (etcd_compact(c, get_int(cmd, "revision"), get_flag(cmd, "physical"), err,
				 sizeof(err)) != 0)
			return failure(c, err);
		return ok();
	}
	if (strcmp(name, "authenticate") == 0) {
		if (etcd_authenticate(c, err, sizeof(err)) != 0)
			return failure(c, err);
		return ok();
	}
	if (strcmp(name, "stats") == 0) {
		struct etcd_stats s;
		etcd_client_stats(c, &s);
		return json_pack("{s:b, s:I, s:I, s:I, s:s}", "ok", 1, "requests",
				 (json_int_t)s.requests, "failovers", (json_int_t)s.failovers,
				 "authenticates", (json_int_t)s.authenticates, "endpoint",
				 etcd_client_endpoint(c));
	}
	if (strcmp(name, "watch") == 0)
		return cmd_watch(c, cmd);
	if (strcmp(name, "watch_stop") == 0)
		return cmd_watch_ctl(cmd, true);
	if (strcmp(name, "watch_info") == 0)
		return cmd_watch_ctl(cmd, false);
	return json_pack("{s:b, s:s}", "ok", 0, "error", "unknown cmd");
}

/* --- main loop ----------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: etcd_tool --endpoints URL[,URL...] [--timeout-ms N] "
			"[--connect-timeout-ms N] [--max-response N] [--watch-max-batch N] "
			"[--cacert F] [--cert F --key F] [--insecure] [--user U --password P]\n");
	exit(2);
}

static char *line_buf;
static size_t line_len;

/* Handles every complete line read so far; returns true on quit. */
static bool handle_lines(void)
{
	bool quit = false;
	char *nl;
	while (!quit && (nl = memchr(line_buf, '\n', line_len))) {
		size_t n = (size_t)(nl - line_buf);
		json_error_t jerr;
		json_t *cmd = json_loadb(line_buf, n, 0, &jerr);
		json_t *out;
		if (!json_is_object(cmd))
			out = json_pack("{s:b, s:s}", "ok", 0, "error", "not a JSON object");
		else
			out = run_cmd(cmd, &quit);
		json_t *id = json_object_get(cmd, "id");
		if (id)
			json_object_set(out, "id", id);
		json_decref(cmd);
		emit(out);
		memmove(line_buf, nl + 1, line_len - n - 1);
		line_len -= n + 1;
	}
	return quit;
}

int main(int argc, char **argv)
{
	char *eps = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--insecure") == 0) {
			base.tls_no_verify = true;
			continue;
		}
		if (!v)
			usage();
		i++;
		if (strcmp(a, "--endpoints") == 0)
			eps = strdup(v);
		else if (strcmp(a, "--timeout-ms") == 0)
			base.timeout_ms = atoi(v);
		else if (strcmp(a, "--connect-timeout-ms") == 0)
			base.connect_timeout_ms = atoi(v);
		else if (strcmp(a, "--max-response") == 0)
			base.max_response = strtoul(v, NULL, 10);
		else if (strcmp(a, "--watch-max-batch") == 0)
			base.watch_max_batch = strtoul(v, NULL, 10);
		else if (strcmp(a, "--cacert") == 0)
			base.ca_file = v;
		else if (strcmp(a, "--cert") == 0)
			base.cert_file = v;
		else if (strcmp(a, "--key") == 0)
			base.key_file = v;
		else if (strcmp(a, "--user") == 0)
			base.username = v;
		else if (strcmp(a, "--password") == 0)
			base.password = v;
		else
			usage();
	}
	if (!eps)
		usage();
	size_t n = 0;
	for (char *save = NULL, *t = strtok_r(eps, ",", &save); t && n < ETCD_MAX_ENDPOINTS;
	     t = strtok_r(NULL, ",", &save))
		endpoint_list[n++] = t;
	char err[1024];
	clients[0].c = make_client(endpoint_list, n, err, sizeof(err));
	if (!clients[0].c) {
		/* The configuration error is an answer too: tests read it. */
		emit(json_pack("{s:b, s:s, s:s}", "ok", 0, "kind", "usage", "error", err));
		free(eps);
		return 1;
	}
	emit(json_pack("{s:b, s:s}", "ok", 1, "ready", etcd_client_endpoint(clients[0].c)));

	line_buf = malloc(LINE_MAX_BYTES);
	bool quit = false, eof = false;
	while (!quit && !eof) {
		struct pollfd p[1 + MAX_WATCHES];
		size_t map[1 + MAX_WATCHES], np = 1;
		p[0] = (struct pollfd){ .fd = 0, .events = POLLIN };
		for (size_t i = 0; i < MAX_WATCHES; i++) {
			if (watches[i].w && !watches[i].stopped) {
				p[np] = (struct pollfd){ .fd = etcd_watch_fd(watches[i].w),
							 .events = POLLIN };
				map[np++] = i;
			}
		}
		if (poll(p, np, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 1;
		}
		for (size_t j = 1; j < np; j++) {
			if (!(p[j].revents & POLLIN))
				continue;
			size_t i = map[j];
			int rc = etcd_watch_process(watches[i].w, err, sizeof(err));
			if (rc < 0)
				emit(json_pack("{s:s, s:s, s:s}", "watch", watches[i].name, "kind",
					       "local-error", "message", err));
			if (rc != 0)
				watches[i].stopped = true;
		}
		if (p[0].revents & (POLLIN | POLLHUP)) {
			if (line_len == LINE_MAX_BYTES) {
				fprintf(stderr, "etcd_tool: command line too long\n");
				return 1;
			}
			ssize_t r = read(0, line_buf + line_len, LINE_MAX_BYTES - line_len);
			if (r <= 0)
				eof = true;
			else
				line_len += (size_t)r;
			quit = handle_lines();
		}
	}
	for (size_t i = 0; i < MAX_WATCHES; i++)
		etcd_watch_free(watches[i].w);
	for (size_t i = 0; i < MAX_CLIENTS; i++)
		etcd_client_free(clients[i].c);
	free(line_buf);
	free(eps);
	return 0;
}
