/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Typed records over the store's record operations (records.h).
 */
#include "controlplane/store/records.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/text.h"

static int errf(struct tes_store *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int errf(struct tes_store *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err, sizeof(st->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- the three operations, checked ---- */

static int check_key(struct tes_store *st, const char *coll, const char *key)
{
	if (!st->ops->put_record || !st->ops->delete_record || !st->ops->load_records)
		return errf(st, "this store keeps no records (%s)", coll);
	if (key && (!key[0] || strlen(key) > STORE_RECORD_KEY_MAX))
		return errf(st, "%s: a key of %zu octets", coll, strlen(key));
	return 0;
}

int store_put_record(struct tes_store *st, const char *coll, const char *key, const char *value)
{
	if (check_key(st, coll, key))
		return -1;
	if (strlen(value) > STORE_RECORD_VALUE_MAX)
		return errf(st, "%s/%s: a value of %zu octets (at most %d)", coll, key,
			    strlen(value), STORE_RECORD_VALUE_MAX);
	return st->ops->put_record(st, coll, key, value);
}

int store_delete_record(struct tes_store *st, const char *coll, const char *key)
{
	if (check_key(st, coll, key))
		return -1;
	return st->ops->delete_record(st, coll, key);
}

int store_load_records(struct tes_store *st, const char *coll, store_record_cb cb, void *ctx)
{
	if (check_key(st, coll, NULL))
		return -1;
	return st->ops->load_records(st, coll, cb, ctx);
}

/* Put obj (consumed) as the record coll/key. */
static int put_json(struct tes_store *st, const char *coll, const char *key, json_t *obj)
{
	char *text;
	int rc;

	if (!obj)
		return errf(st, "%s/%s: out of memory", coll, key);
	text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(obj);
	if (!text)
		return errf(st, "%s/%s: out of memory", coll, key);
	rc = store_put_record(st, coll, key, text);
	free(text);
	return rc;
}

/* ---- decoding helpers: each fails with the member named ---- */

struct dec {
	json_t *o;
	char why[256];
};

static bool get_int(struct dec *d, const char *k, int64_t lo, int64_t hi, int64_t *out)
{
	json_t *v = json_object_get(d->o, k);

	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		snprintf(d->why, sizeof(d->why), "\"%s\" is not an integer in range", k);
		return false;
	}
	*out = json_integer_value(v);
	return true;
}

static bool get_u64(struct dec *d, const char *k, uint64_t *out)
{
	int64_t x;

	if (!get_int(d, k, 0, INT64_MAX, &x))
		return false;
	*out = (uint64_t)x;
	return true;
}

static bool get_str(struct dec *d, const char *k, char *buf, size_t len)
{
	json_t *v = json_object_get(d->o, k);

	if (!json_is_string(v) || json_string_length(v) >= len ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(d->why, sizeof(d->why), "\"%s\" is not a string of at most %zu octets", k,
			 len - 1);
		return false;
	}
	memcpy(buf, json_string_value(v), json_string_length(v) + 1);
	return true;
}

static bool get_bool(struct dec *d, const char *k, bool *out)
{
	json_t *v = json_object_get(d->o, k);

	if (!json_is_boolean(v)) {
		snprintf(d->why, sizeof(d->why), "\"%s\" is not true or false", k);
		return false;
	}
	*out = json_is_true(v);
	return true;
}

/* Parse a record's value into d.o (an object). */
static bool dec_open(struct dec *d, const char *value)
{
	json_error_t e;

	d->why[0] = '\0';
	d->o = json_loads(value, JSON_REJECT_DUPLICATES, &e);
	if (!json_is_object(d->o)) {
		snprintf(d->why, sizeof(d->why), "not a JSON object: %s", e.text);
		json_decref(d->o);
		d->o = NULL;
		return false;
	}
	return true;
}

/* What every typed load shares: decode each record with fn. */
struct load {
	struct tes_store *st;
	const char *coll;
	int (*fn)(struct load *l, struct dec *d, const char *key);
	void *cb;
	void *ctx;
	bool bad; /* fn failed to decode (err set), as opposed to cb's own rc */
};

static int load_one(const char *key, const char *value, void *ctx)
{
	struct load *l = ctx;
	struct dec d;
	int rc;

	if (!dec_open(&d, value)) {
		l->bad = true;
		return errf(l->st, "%s/%s: %s", l->coll, key, d.why);
	}
	rc = l->fn(l, &d, key);
	json_decref(d.o);
	return rc;
}

static int load_all(struct tes_store *st, const char *coll,
		    int (*fn)(struct load *l, struct dec *d, const char *key), void *cb, void *ctx)
{
	struct load l = { .st = st, .coll = coll, .fn = fn, .cb = cb, .ctx = ctx };

	return store_load_records(st, coll, load_one, &l);
}

static int bad(struct load *l, struct dec *d, const char *key)
{
	l->bad = true;
	return errf(l->st, "%s/%s: %s", l->coll, key, d->why[0] ? d->why : "bad record");
}

/* ---- contacts ---- */

int store_put_contacts(struct tes_store *st, const struct store_contacts *c)
{
	char key[16];
	json_t *mail = json_array();

	snprintf(key, sizeof(key), "%" PRIu32, c->tenant_id);
	for (unsigned i = 0; i < c->nmail && i < STORE_MAIL_MAX; i++)
		json_array_append_new(mail, json_string(c->mail[i]));
	return put_json(st, STORE_COLL_CONTACT, key,
			json_pack("{s:I, s:I, s:s, s:s, s:o, s:I}", "tenant",
				  (json_int_t)c->tenant_id, "days_before",
				  (json_int_t)c->days_before, "webhook", c->webhook, "secret",
				  c->secret, "mail", mail, "since", (json_int_t)c->since));
}

int store_delete_contacts(struct tes_store *st, uint32_t tenant_id)
{
	char key[16];

	snprintf(key, sizeof(key), "%" PRIu32, tenant_id);
	return store_delete_record(st, STORE_COLL_CONTACT, key);
}

static int contacts_of(struct load *l, struct dec *d, const char *key)
{
	struct store_contacts c;
	int64_t x;
	json_t *mail, *v;
	size_t i;

	memset(&c, 0, sizeof(c));
	if (!get_int(d, "tenant", 1, UINT32_MAX, &x))
		return bad(l, d, key);
	c.tenant_id = (uint32_t)x;
	if (!get_int(d, "days_before", 0, 3650, &x))
		return bad(l, d, key);
	c.days_before = (unsigned)x;
	if (!get_str(d, "webhook", c.webhook, sizeof(c.webhook)) ||
	    !get_str(d, "secret", c.secret, sizeof(c.secret)) ||
	    !get_int(d, "since", 0, INT64_MAX, &c.since))
		return bad(l, d, key);
	mail = json_object_get(d->o, "mail");
	if (!json_is_array(mail) || json_array_size(mail) > STORE_MAIL_MAX) {
		snprintf(d->why, sizeof(d->why), "\"mail\" is not a list of at most %d addresses",
			 STORE_MAIL_MAX);
		return bad(l, d, key);
	}
	json_array_foreach(mail, i, v)
	{
		if (!json_is_string(v) || json_string_length(v) >= STORE_ADDR_MAX) {
			snprintf(d->why, sizeof(d->why), "mail[%zu] is not an address", i);
			return bad(l, d, key);
		}
		tes_str_copy(c.mail[c.nmail++], STORE_ADDR_MAX, json_string_value(v));
	}
	return ((store_contacts_cb)l->cb)(&c, l->ctx);
}

int store_load_contacts(struct tes_store *st, store_contacts_cb cb, void *ctx)
{
	return load_all(st, STORE_COLL_CONTACT, contacts_of, (void *)cb, ctx);
}

/* ---- notices ---- */

static const char *const kind_names[STORE_NOTICE_KINDS] = { "throttle", "block", "resolved" };

const char *store_notice_kind_name(enum store_notice_kind k)
{
	return (unsigned)k < STORE_NOTICE_KINDS ? kind_names[k] : "?";
}

int store_notice_kind_parse(const char *s)
{
	for (int i = 0; i < STORE_NOTICE_KINDS; i++) {
		if (strcmp(s, kind_names[i]) == 0)
			return i;
	}
	return -1;
}

bool store_notice_finished(const struct store_notice *n)
{
	for (unsigned i = 0; i < n->ndeliveries; i++) {
		if (!n->d[i].done && !n->d[i].expired)
			return false;
	}
	return true;
}

void store_notice_free(struct store_notice *n)
{
	free(n->body);
	n->body = NULL;
}

int store_put_notice(struct tes_store *st, const struct store_notice *n)
{
	json_t *ds = json_array();

	for (unsigned i = 0; i < n->ndeliveries && i < STORE_DELIVERIES_MAX; i++) {
		const struct store_delivery *d = &n->d[i];

		json_array_append_new(ds, json_pack("{s:s, s:s, s:b, s:b, s:I, s:I, s:I, s:s}",
						    "via", d->mail ? "mail" : "webhook", "target",
						    d->target, "done", d->done, "expired",
						    d->expired, "attempts", (json_int_t)d->attempts,
						    "last_attempt", (json_int_t)d->last_attempt,
						    "done_at", (json_int_t)d->done_at, "last_error",
						    d->last_error));
	}
	return put_json(st, STORE_COLL_NOTICE, n->id,
			json_pack("{s:s, s:I, s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:o}", "id", n->id,
				  "tenant", (json_int_t)n->tenant_id, "server", n->fqdn, "kind",
				  store_notice_kind_name(n->kind), "date", (json_int_t)n->date,
				  "due", (json_int_t)n->due, "created", (json_int_t)n->created,
				  "body", n->body ? n->body : "", "secret", n->secret, "deliveries",
				  ds));
}

int store_delete_notice(struct tes_store *st, const char *id)
{
	return store_delete_record(st, STORE_COLL_NOTICE, id);
}

static bool delivery_of(struct dec *d, struct store_delivery *out)
{
	char via[16];
	int64_t x;

	memset(out, 0, sizeof(*out));
	if (!get_str(d, "via", via, sizeof(via)) || (strcmp(via, "mail") && strcmp(via, "webhook")))
		return false;
	out->mail = via[0] == 'm';
	if (!get_str(d, "target", out->target, sizeof(out->target)) ||
	    !get_bool(d, "done", &out->done) || !get_bool(d, "expired", &out->expired) ||
	    !get_int(d, "attempts", 0, UINT32_MAX, &x) ||
	    !get_int(d, "last_attempt", 0, INT64_MAX, &out->last_attempt) ||
	    !get_int(d, "done_at", 0, INT64_MAX, &out->done_at) ||
	    !get_str(d, "last_error", out->last_error, sizeof(out->last_error)))
		return false;
	out->attempts = (uint32_t)x;
	return true;
}

static int notice_of(struct load *l, struct dec *d, const char *key)
{
	struct store_notice n;
	char kind[16];
	int64_t x;
	json_t *ds, *v, *body;
	size_t i;
	int k, rc;

	memset(&n, 0, sizeof(n));
	if (!get_str(d, "id", n.id, sizeof(n.id)) || !get_int(d, "tenant", 1, UINT32_MAX, &x))
		return bad(l, d, key);
	n.tenant_id = (uint32_t)x;
	if (!get_str(d, "server", n.fqdn, sizeof(n.fqdn)) ||
	    !get_str(d, "kind", kind, sizeof(kind)))
		return bad(l, d, key);
	k = store_notice_kind_parse(kind);
	if (k < 0) {
		snprintf(d->why, sizeof(d->why), "unknown kind \"%s\"", kind);
		return bad(l, d, key);
	}
	n.kind = (enum store_notice_kind)k;
	if (!get_int(d, "date", INT64_MIN, INT64_MAX, &n.date) ||
	    !get_int(d, "due", INT64_MIN, INT64_MAX, &n.due) ||
	    !get_int(d, "created", 0, INT64_MAX, &n.created) ||
	    !get_str(d, "secret", n.secret, sizeof(n.secret)))
		return bad(l, d, key);
	body = json_object_get(d->o, "body");
	ds = json_object_get(d->o, "deliveries");
	if (!json_is_string(body) || !json_is_array(ds) ||
	    json_array_size(ds) > STORE_DELIVERIES_MAX) {
		snprintf(d->why, sizeof(d->why), "no body or deliveries");
		return bad(l, d, key);
	}
	json_array_foreach(ds, i, v)
	{
		struct dec dd = { .o = v };

		if (!json_is_object(v) || !delivery_of(&dd, &n.d[n.ndeliveries])) {
			snprintf(d->why, sizeof(d->why), "deliveries[%zu]: %.200s", i,
				 dd.why[0] ? dd.why : "not an object");
			return bad(l, d, key);
		}
		n.ndeliveries++;
	}
	n.body = strdup(json_string_value(body));
	if (!n.body)
		return errf(l->st, "%s/%s: out of memory", l->coll, key);
	rc = ((store_notice_cb)l->cb)(&n, l->ctx);
	return rc;
}

int store_load_notices(struct tes_store *st, store_notice_cb cb, void *ctx)
{
	return load_all(st, STORE_COLL_NOTICE, notice_of, (void *)cb, ctx);
}

/* ---- tokens ---- */

static void hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

static bool unhex(const char *s, uint8_t *b, size_t n)
{
	if (strlen(s) != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++) {
		int v = 0;

		for (int j = 0; j < 2; j++) {
			char c = s[2 * i + (size_t)j];

			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= c - '0';
			else if (c >= 'a' && c <= 'f')
				v |= c - 'a' + 10;
			else
				return false;
		}
		b[i] = (uint8_t)v;
	}
	return true;
}

int store_put_token(struct tes_store *st, const struct store_token *t)
{
	char h[65];

	hex(t->sha256, sizeof(t->sha256), h);
	return put_json(st, STORE_COLL_TOKEN, t->id,
			json_pack("{s:s, s:I, s:s, s:I}", "id", t->id, "tenant",
				  (json_int_t)t->tenant_id, "sha256", h, "created",
				  (json_int_t)t->created));
}

int store_delete_token(struct tes_store *st, const char *id)
{
	return store_delete_record(st, STORE_COLL_TOKEN, id);
}

static int token_of(struct load *l, struct dec *d, const char *key)
{
	struct store_token t;
	char h[65];
	int64_t x;

	memset(&t, 0, sizeof(t));
	if (!get_str(d, "id", t.id, sizeof(t.id)) || !get_int(d, "tenant", 1, UINT32_MAX, &x) ||
	    !get_str(d, "sha256", h, sizeof(h)) || !get_int(d, "created", 0, INT64_MAX, &t.created))
		return bad(l, d, key);
	t.tenant_id = (uint32_t)x;
	if (!unhex(h, t.sha256, sizeof(t.sha256))) {
		snprintf(d->why, sizeof(d->why), "\"sha256\" is not 64 hex digits");
		return bad(l, d, key);
	}
	return ((store_token_cb)l->cb)(&t, l->ctx);
}

int store_load_tokens(struct tes_store *st, store_token_cb cb, void *ctx)
{
	return load_all(st, STORE_COLL_TOKEN, token_of, (void *)cb, ctx);
}

/* ---- counts ---- */

/* TENANT/fqdn in lower case: names compare case-insensitively. */
static void server_key(uint32_t tenant_id, const char *fqdn, char *key, size_t len)
{
	size_t n = (size_t)snprintf(key, len, "%" PRIu32 "/", tenant_id);

	for (size_t i = 0; fqdn[i] && n + 1 < len; i++)
		key[n++] = (char)tolower((unsigned char)fqdn[i]);
	key[n] = '\0';
}

int store_put_count(struct tes_store *st, const struct store_count *c)
{
	char key[TES_FQDN_MAX + 16];

	server_key(c->tenant_id, c->fqdn, key, sizeof(key));
	return put_json(st, STORE_COLL_COUNT, key,
			json_pack("{s:I, s:s, s:I, s:I}", "tenant", (json_int_t)c->tenant_id,
				  "server", c->fqdn, "throttled", (json_int_t)c->throttled,
				  "refused", (json_int_t)c->refused));
}

int store_delete_count(struct tes_store *st, uint32_t tenant_id, const char *fqdn)
{
	char key[TES_FQDN_MAX + 16];

	server_key(tenant_id, fqdn, key, sizeof(key));
	return store_delete_record(st, STORE_COLL_COUNT, key);
}

static int count_of(struct load *l, struct dec *d, const char *key)
{
	struct store_count c;
	int64_t x;

	memset(&c, 0, sizeof(c));
	if (!get_int(d, "tenant", 0, UINT32_MAX, &x) ||
	    !get_str(d, "server", c.fqdn, sizeof(c.fqdn)) ||
	    !get_u64(d, "throttled", &c.throttled) || !get_u64(d, "refused", &c.refused))
		return bad(l, d, key);
	c.tenant_id = (uint32_t)x;
	return ((store_count_cb)l->cb)(&c, l->ctx);
}

int store_load_counts(struct tes_store *st, store_count_cb cb, void *ctx)
{
	return load_all(st, STORE_COLL_COUNT, count_of, (void *)cb, ctx);
}

/* ---- history ---- */

static void history_key(uint32_t tenant_id, int64_t day, char *key, size_t len)
{
	snprintf(key, len, "%" PRIu32 "/%" PRId64, tenant_id, day);
}

int store_put_history(struct tes_store *st, const struct store_history *h)
{
	char key[48];
	json_t *n = json_array();

	history_key(h->tenant_id, h->day, key, sizeof(key));
	for (int i = 0; i < STORE_HISTORY_SERIES; i++)
		json_array_append_new(n, json_integer(h->n[i]));
	return put_json(st, STORE_COLL_HISTORY, key,
			json_pack("{s:I, s:I, s:o}", "tenant", (json_int_t)h->tenant_id, "day",
				  (json_int_t)h->day, "n", n));
}

int store_delete_history(struct tes_store *st, uint32_t tenant_id, int64_t day)
{
	char key[48];

	history_key(tenant_id, day, key, sizeof(key));
	return store_delete_record(st, STORE_COLL_HISTORY, key);
}

static int history_of(struct load *l, struct dec *d, const char *key)
{
	struct store_history h;
	int64_t x;
	json_t *n, *v;
	size_t i;

	memset(&h, 0, sizeof(h));
	if (!get_int(d, "tenant", 0, UINT32_MAX, &x) ||
	    !get_int(d, "day", -1000000, 1000000, &h.day))
		return bad(l, d, key);
	h.tenant_id = (uint32_t)x;
	n = json_object_get(d->o, "n");
	if (!json_is_array(n) || json_array_size(n) != STORE_HISTORY_SERIES) {
		snprintf(d->why, sizeof(d->why), "\"n\" is not %d counts", STORE_HISTORY_SERIES);
		return bad(l, d, key);
	}
	json_array_foreach(n, i, v)
	{
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > UINT32_MAX) {
			snprintf(d->why, sizeof(d->why), "n[%zu] is not a count", i);
			return bad(l, d, key);
		}
		h.n[i] = (uint32_t)json_integer_value(v);
	}
	return ((store_history_cb)l->cb)(&h, l->ctx);
}

int store_load_history(struct tes_store *st, store_history_cb cb, void *ctx)
{
	return load_all(st, STORE_COLL_HISTORY, history_of, (void *)cb, ctx);
}
