/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The store's records (controlplane/store/records.c over sqlite.c's record
 * operations): every type written, read back equal after a reopen,
 * replaced and deleted; a record that does not decode fails its load with
 * the collection and key named; a store without record operations says so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "controlplane/store/records.h"
#include "controlplane/store/sqlite.h"

struct fx {
	char dir[64], path[96];
	struct tes_store *st;
};

static struct tes_store *open_ok(const char *path)
{
	char err[512];
	struct tes_store *st = store_sqlite_open(path, err, sizeof(err));

	if (!st)
		fail_msg("%s", err);
	return st;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/tes-records-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/tc.db", f->dir);
	f->st = open_ok(f->path);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	store_close(f->st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void reopen(struct fx *f)
{
	store_close(f->st);
	f->st = open_ok(f->path);
}

#define MAXGOT 8

static struct store_contacts got_c[MAXGOT];
static struct store_notice got_n[MAXGOT];
static struct store_token got_t[MAXGOT];
static struct store_count got_k[MAXGOT];
static struct store_history got_h[MAXGOT];
static unsigned ngot;

static int on_contacts(const struct store_contacts *c, void *ctx)
{
	(void)ctx;
	got_c[ngot++] = *c;
	return 0;
}

static int on_notice(struct store_notice *n, void *ctx)
{
	(void)ctx;
	got_n[ngot++] = *n; /* takes the body */
	return 0;
}

static int on_token(const struct store_token *t, void *ctx)
{
	(void)ctx;
	got_t[ngot++] = *t;
	return 0;
}

static int on_count(const struct store_count *c, void *ctx)
{
	(void)ctx;
	got_k[ngot++] = *c;
	return 0;
}

static int on_history(const struct store_history *h, void *ctx)
{
	(void)ctx;
	got_h[ngot++] = *h;
	return 0;
}

static void test_contacts(void **state)
{
	struct fx *f = *state;
	struct store_contacts c;

	memset(&c, 0, sizeof(c));
	c.tenant_id = 7;
	c.days_before = 5;
	snprintf(c.webhook, sizeof(c.webhook), "https://hooks.example/x?a=1&b=\"2\"");
	snprintf(c.secret, sizeof(c.secret), "se\"cr\\et");
	c.nmail = 2;
	snprintf(c.mail[0], sizeof(c.mail[0]), "a@bear.example");
	snprintf(c.mail[1], sizeof(c.mail[1]), "b@bear.example");
	c.since = 1704067200;
	assert_int_equal(store_put_contacts(f->st, &c), 0);
	reopen(f);
	ngot = 0;
	assert_int_equal(store_load_contacts(f->st, on_contacts, NULL), 0);
	assert_int_equal(ngot, 1);
	assert_memory_equal(&got_c[0], &c, sizeof(c));
	assert_int_equal(store_delete_contacts(f->st, 7), 0);
	assert_int_equal(store_delete_contacts(f->st, 7), 0); /* none: still 0 */
	ngot = 0;
	assert_int_equal(store_load_contacts(f->st, on_contacts, NULL), 0);
	assert_int_equal(ngot, 0);
}

static void test_notices(void **state)
{
	struct fx *f = *state;
	struct store_notice n;

	memset(&n, 0, sizeof(n));
	snprintf(n.id, sizeof(n.id), "00112233445566778899aabbccddeeff");
	n.tenant_id = 7;
	snprintf(n.fqdn, sizeof(n.fqdn), "EX1.bear.local");
	n.kind = STORE_NOTICE_BLOCK;
	n.date = 1709251200;
	n.due = 1708646400;
	n.created = 1765000000;
	n.body = strdup("{\"id\":\"00112233445566778899aabbccddeeff\",\"text\":\"a \\\"b\\\"\"}");
	snprintf(n.secret, sizeof(n.secret), "k");
	n.ndeliveries = 2;
	snprintf(n.d[0].target, sizeof(n.d[0].target), "http://127.0.0.1:1/h");
	n.d[0].attempts = 3;
	n.d[0].last_attempt = 1765000100;
	snprintf(n.d[0].last_error, sizeof(n.d[0].last_error), "HTTP status 503");
	n.d[1].mail = true;
	snprintf(n.d[1].target, sizeof(n.d[1].target), "it@bear.example");
	n.d[1].done = true;
	n.d[1].attempts = 1;
	n.d[1].done_at = n.d[1].last_attempt = 1765000001;
	assert_false(store_notice_finished(&n));
	assert_int_equal(store_put_notice(f->st, &n), 0);
	reopen(f);
	ngot = 0;
	assert_int_equal(store_load_notices(f->st, on_notice, NULL), 0);
	assert_int_equal(ngot, 1);
	assert_string_equal(got_n[0].body, n.body);
	{
		char *b = got_n[0].body;

		got_n[0].body = n.body;
		assert_memory_equal(&got_n[0], &n, sizeof(n));
		free(b);
	}
	/* a delivery done: replaced in place */
	n.d[0].done = true;
	assert_true(store_notice_finished(&n));
	assert_int_equal(store_put_notice(f->st, &n), 0);
	ngot = 0;
	assert_int_equal(store_load_notices(f->st, on_notice, NULL), 0);
	assert_int_equal(ngot, 1);
	assert_true(got_n[0].d[0].done);
	store_notice_free(&got_n[0]);
	assert_int_equal(store_delete_notice(f->st, n.id), 0);
	ngot = 0;
	assert_int_equal(store_load_notices(f->st, on_notice, NULL), 0);
	assert_int_equal(ngot, 0);
	store_notice_free(&n);
}

static void test_tokens_counts_history(void **state)
{
	struct fx *f = *state;
	struct store_token t;
	struct store_count k;
	struct store_history h;

	memset(&t, 0, sizeof(t));
	snprintf(t.id, sizeof(t.id), "a1b2c3d4e5f6");
	t.tenant_id = 7;
	for (int i = 0; i < 32; i++)
		t.sha256[i] = (uint8_t)(i * 7 + 1);
	t.created = 1704067200;
	assert_int_equal(store_put_token(f->st, &t), 0);
	memset(&k, 0, sizeof(k));
	k.tenant_id = 7;
	snprintf(k.fqdn, sizeof(k.fqdn), "EX1.Bear.local");
	k.throttled = 5000000000ull;
	k.refused = 3;
	assert_int_equal(store_put_count(f->st, &k), 0);
	memset(&h, 0, sizeof(h));
	h.tenant_id = 7;
	h.day = 19723;
	for (int i = 0; i < STORE_HISTORY_SERIES; i++)
		h.n[i] = (uint32_t)i * 3;
	assert_int_equal(store_put_history(f->st, &h), 0);
	reopen(f);
	ngot = 0;
	assert_int_equal(store_load_tokens(f->st, on_token, NULL), 0);
	assert_int_equal(ngot, 1);
	assert_memory_equal(&got_t[0], &t, sizeof(t));
	ngot = 0;
	assert_int_equal(store_load_counts(f->st, on_count, NULL), 0);
	assert_int_equal(ngot, 1);
	assert_memory_equal(&got_k[0], &k, sizeof(k));
	ngot = 0;
	assert_int_equal(store_load_history(f->st, on_history, NULL), 0);
	assert_int_equal(ngot, 1);
	assert_memory_equal(&got_h[0], &h, sizeof(h));
	/* a count's key is the name in lower case: another case is the same */
	snprintf(k.fqdn, sizeof(k.fqdn), "ex1.bear.LOCAL");
	k.refused = 4;
	assert_int_equal(store_put_count(f->st, &k), 0);
	ngot = 0;
	assert_int_equal(store_load_counts(f->st, on_count, NULL), 0);
	assert_int_equal(ngot, 1);
	assert_int_equal(got_k[0].refused, 4);
	assert_int_equal(store_delete_count(f->st, 7, "EX1.BEAR.LOCAL"), 0);
	assert_int_equal(store_delete_token(f->st, t.id), 0);
	assert_int_equal(store_delete_history(f->st, 7, 19723), 0);
	ngot = 0;
	assert_int_equal(store_load_counts(f->st, on_count, NULL), 0);
	assert_int_equal(store_load_tokens(f->st, on_token, NULL), 0);
	assert_int_equal(store_load_history(f->st, on_history, NULL), 0);
	assert_int_equal(ngot, 0);
}

static void test_bad_record(void **state)
{
	struct fx *f = *state;

	/* written behind the store's back, as a damaged or foreign row */
	assert_int_equal(store_put_record(f->st, STORE_COLL_TOKEN, "t1",
					  "{\"id\":\"t1\",\"tenant\":7,\"sha256\":\"zz\","
					  "\"created\":1}"),
			 0);
	ngot = 0;
	assert_int_equal(store_load_tokens(f->st, on_token, NULL), -1);
	assert_string_equal(store_errmsg(f->st), "token/t1: \"sha256\" is not 64 hex digits");
	assert_int_equal(store_put_record(f->st, STORE_COLL_TOKEN, "t1", "[1,2]"), 0);
	assert_int_equal(store_load_tokens(f->st, on_token, NULL), -1);
	assert_non_null(strstr(store_errmsg(f->st), "token/t1: not a JSON object"));
	assert_int_equal(store_put_record(f->st, STORE_COLL_HISTORY, "7/1",
					  "{\"tenant\":7,"
					  "\"day\":1,\"n\":[1]}"),
			 0);
	assert_int_equal(store_load_history(f->st, on_history, NULL), -1);
	assert_string_equal(store_errmsg(f->st), "history/7/1: \"n\" is not 11 counts");
	/* limits */
	assert_int_equal(store_put_record(f->st, STORE_COLL_TOKEN, "", "{}"), -1);
}

/* A store whose implementation has no record operations (an older one). */
static int none_begin(struct tes_store *st)
{
	(void)st;
	return 0;
}

static void test_no_records(void **state)
{
	struct store_ops ops;
	struct tes_store st;
	struct store_token t;

	(void)state;
	memset(&ops, 0, sizeof(ops));
	ops.begin = none_begin;
	memset(&st, 0, sizeof(st));
	st.ops = &ops;
	memset(&t, 0, sizeof(t));
	snprintf(t.id, sizeof(t.id), "x");
	assert_int_equal(store_put_token(&st, &t), -1);
	assert_string_equal(store_errmsg(&st), "this store keeps no records (token)");
	assert_int_equal(store_load_tokens(&st, on_token, NULL), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_contacts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notices, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tokens_counts_history, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_record, setup, teardown),
		cmocka_unit_test(test_no_records),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
