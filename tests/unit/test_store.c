/* SPDX-License-Identifier: BSD-3-Clause */
/* The SQLite store: create, reopen, migrate (v1 data to this build's v2,
 * and a v3 step on top),
 * refusing newer or foreign databases, transactions, and the durability of
 * a first detection across kill -9 right after the commit returns. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "controlplane/store/sqlite.h"

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/test-store-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static struct tes_store *open_ok(const char *path)
{
	char err[512];
	struct tes_store *st = store_sqlite_open(path, err, sizeof(err));

	if (!st)
		fail_msg("open: %s", err);
	return st;
}

static void make_server(struct store_server *v, uint32_t tenant, const char *fqdn, int64_t first)
{
	memset(v, 0, sizeof(*v));
	v->s.tenant_id = tenant;
	snprintf(v->s.fqdn, sizeof(v->s.fqdn), "%s", fqdn);
	assert_true(ex_build_from_str("15.1.2507.35", &v->s.build));
	v->s.family = EX_FAMILY_2016;
	v->s.first_detected = first;
	v->s.last_seen = first + 10;
	v->s.pause_base = 7;
	v->s.nsources = 2;
	assert_true(tes_addr_parse("192.0.2.1", &v->s.sources[0]));
	assert_true(tes_addr_parse("2001:db8::2", &v->s.sources[1]));
	v->s.source_seen[0] = first + 3;
	v->s.source_seen[1] = first + 10;
	v->s.stale_seconds = 86400;
	v->stage_logged = 3;
	v->status_logged = TES_STATUS_THROTTLING;
}

struct collected {
	struct store_server servers[16];
	int nservers;
	struct tes_tenant tenants[4];
	int ntenants;
};

static int collect_server(const struct store_server *s, void *ctx)
{
	struct collected *c = ctx;

	c->servers[c->nservers++] = *s;
	return 0;
}

static int collect_tenant(const struct tes_tenant *t, void *ctx)
{
	struct collected *c = ctx;

	c->tenants[c->ntenants++] = *t;
	return 0;
}

static void load_all(struct tes_store *st, struct collected *c)
{
	memset(c, 0, sizeof(*c));
	assert_int_equal(store_load_tenants(st, collect_tenant, c), 0);
	assert_int_equal(store_load_servers(st, collect_server, c), 0);
}

static void test_create_and_reopen(void **state)
{
	struct fixture *f = *state;
	struct tes_store *st = open_ok(f->path);
	struct store_server v;
	struct tes_tenant t;
	struct store_doc d, back;
	struct collected c;

	assert_int_equal(store_schema_version(st), 3);
	assert_int_equal(store_sqlite_latest_version(), 3);
	load_all(st, &c);
	assert_int_equal(c.nservers + c.ntenants, 0);

	memset(&t, 0, sizeof(t));
	t.id = 7;
	snprintf(t.name, sizeof(t.name), "Bear");
	t.nconnectors = 2;
	assert_int_equal(tes_connector_parse("198.51.100.0/24", NULL, &t.connectors[0]), 0);
	assert_int_equal(tes_connector_parse("2001:db8::/32", "mx.bear", &t.connectors[1]), 0);
	t.pause.start = 10;
	t.pause.end = 20;
	t.pause.paused_before = 5;
	t.pause.year = 2024;
	t.pause.days_used = 3;
	assert_int_equal(store_put_tenant(st, &t), 0);
	make_server(&v, 7, "EX1.bear.local", 1704067200);
	assert_int_equal(store_put_server(st, &v), 0);
	memset(&d, 0, sizeof(d));
	d.text = "[stages]\n";
	d.len = strlen(d.text);
	snprintf(d.name, sizeof(d.name), "policy.conf");
	snprintf(d.version, sizeof(d.version), "abc");
	d.loaded_at = 99;
	assert_int_equal(store_put_doc(st, STORE_DOC_POLICY, &d), 0);
	assert_int_equal(store_get_doc(st, STORE_DOC_BUILDS, &back), 0);
	store_close(st);

	st = open_ok(f->path);
	load_all(st, &c);
	assert_int_equal(c.ntenants, 1);
	assert_memory_equal(&c.tenants[0], &t, sizeof(t));
	assert_int_equal(c.nservers, 1);
	assert_memory_equal(&c.servers[0].s, &v.s, sizeof(v.s));
	assert_int_equal(c.servers[0].stage_logged, 3);
	assert_int_equal(c.servers[0].status_logged, TES_STATUS_THROTTLING);
	assert_int_equal(store_get_doc(st, STORE_DOC_POLICY, &back), 1);
	assert_string_equal(back.text, "[stages]\n");
	assert_string_equal(back.version, "abc");
	assert_int_equal(back.loaded_at, 99);
	store_doc_free(&back);

	/* Replace by case-insensitive name: still one server, new values. */
	v.s.resolved = true;
	v.s.resolved_at = 1704067300;
	v.s.nsources = 1;
	snprintf(v.s.fqdn, sizeof(v.s.fqdn), "ex1.BEAR.local");
	assert_int_equal(store_put_server(st, &v), 0);
	load_all(st, &c);
	assert_int_equal(c.nservers, 1);
	assert_true(c.servers[0].s.resolved);
	assert_int_equal(c.servers[0].s.nsources, 1);
	assert_string_equal(c.servers[0].s.fqdn, "ex1.BEAR.local");

	assert_int_equal(store_delete_server(st, 7, "EX1.bear.LOCAL"), 0);
	assert_int_equal(store_delete_server(st, 7, "never.there"), 0);
	load_all(st, &c);
	assert_int_equal(c.nservers, 0);

	/* Tenant 0 is "no tenant" for servers, never a tenant row. */
	t.id = 0;
	assert_int_equal(store_put_tenant(st, &t), -1);
	assert_non_null(strstr(store_errmsg(st), "reserved"));
	make_server(&v, 0, "stray.example", 5);
	assert_int_equal(store_put_server(st, &v), 0);
	assert_int_equal(store_delete_tenant(st, 7), 0);
	load_all(st, &c);
	assert_int_equal(c.ntenants, 0);
	assert_int_equal(c.nservers, 1);
	store_close(st);
}

static void test_wal_mode(void **state)
{
	struct fixture *f = *state;
	struct tes_store *st = open_ok(f->path);
	sqlite3 *db;
	sqlite3_stmt *q;

	/* journal_mode=WAL is a property of the file: another connection
	 * sees it. */
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
	sqlite3_finalize(q);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &q, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), store_sqlite_latest_version());
	sqlite3_finalize(q);
	sqlite3_close(db);
	store_close(st);
}

static void test_transactions(void **state)
{
	struct fixture *f = *state;
	struct tes_store *st = open_ok(f->path);
	struct store_server v;
	struct collected c;

	assert_int_equal(store_begin(st), 0);
	assert_int_equal(store_begin(st), -1);
	make_server(&v, 1, "a.local", 1);
	assert_int_equal(store_put_server(st, &v), 0);
	make_server(&v, 1, "b.local", 2);
	assert_int_equal(store_put_server(st, &v), 0);
	store_rollback(st);
	load_all(st, &c);
	assert_int_equal(c.nservers, 0);

	assert_int_equal(store_begin(st), 0);
	assert_int_equal(store_put_server(st, &v), 0);
	assert_int_equal(store_commit(st), 0);
	assert_int_equal(store_commit(st), -1);
	load_all(st, &c);
	assert_int_equal(c.nservers, 1);
	store_close(st);
}

/* A v4 that a later tescontrol might ship: a new column with a default. */
static const char v4_sql[] = "ALTER TABLE servers ADD COLUMN note TEXT NOT NULL DEFAULT 'v2';"
			     "CREATE TABLE events (at INTEGER NOT NULL, what TEXT NOT NULL);";

/* A database as the first release left it: its schema, version 1, a server
 * with two sources. */
static void make_v1_database(const char *path)
{
	size_t n;
	const struct store_migration *m = store_sqlite_migrations(&n);
	sqlite3 *db;

	assert_true(n >= 2);
	assert_int_equal(m[0].version, 1);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, m[0].sql, NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(
		sqlite3_exec(
			db,
			"CREATE TABLE schema_version (version INTEGER NOT NULL);"
			"INSERT INTO schema_version VALUES (1);"
			"INSERT INTO servers VALUES (1, 'old.local', 'Old.local', '15.1.2507.35',"
			" '2016', 0, 1704067200, 1704500000, 0, 0, 2, 'Throttling');"
			"INSERT INTO server_sources VALUES (1, 'old.local', 0, '192.0.2.1');"
			"INSERT INTO server_sources VALUES (1, 'old.local', 1, '2001:db8::2');",
			NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
}

static void test_migration(void **state)
{
	struct fixture *f = *state;
	struct tes_store *st;
	struct store_migration steps[4];
	const struct store_migration *mine;
	struct store_server v;
	struct collected c;
	char err[512];
	sqlite3 *db;
	sqlite3_stmt *q;
	size_t n;

	/* v1 data under this build: migrated to v3, the sources' seen times
	 * taken from their server's last_seen, no stale time. */
	make_v1_database(f->path);
	st = open_ok(f->path);
	assert_int_equal(store_schema_version(st), 3);
	load_all(st, &c);
	assert_int_equal(c.nservers, 1);
	assert_string_equal(c.servers[0].s.fqdn, "Old.local");
	assert_int_equal(c.servers[0].s.first_detected, 1704067200);
	assert_int_equal(c.servers[0].s.nsources, 2);
	assert_int_equal(c.servers[0].s.source_seen[0], 1704500000);
	assert_int_equal(c.servers[0].s.source_seen[1], 1704500000);
	assert_int_equal(c.servers[0].s.stale_seconds, 0);
	assert_int_equal(c.servers[0].status_logged, TES_STATUS_THROTTLING);
	/* v2's new members are written and read back. */
	make_server(&v, 1, "new.local", 5);
	assert_int_equal(store_put_server(st, &v), 0);
	load_all(st, &c);
	assert_int_equal(c.nservers, 2);
	assert_int_equal(c.servers[0].s.source_seen[0], 8);
	assert_int_equal(c.servers[0].s.source_seen[1], 15);
	assert_int_equal(c.servers[0].s.stale_seconds, 86400);
	store_close(st);

	/* A v4 on top of this build's steps. */
	mine = store_sqlite_migrations(&n);
	assert_int_equal(n, 3);
	steps[0] = mine[0];
	steps[1] = mine[1];
	steps[2] = mine[2];
	steps[3].version = 4;
	steps[3].sql = v4_sql;
	st = store_sqlite_open_with(f->path, steps, 4, err, sizeof(err));
	if (!st)
		fail_msg("migrating to v4: %s", err);
	assert_int_equal(store_schema_version(st), 4);
	/* v2 data intact, and the v2 code path still reads and writes it. */
	load_all(st, &c);
	assert_int_equal(c.nservers, 2);
	make_server(&v, 1, "newer.local", 9);
	assert_int_equal(store_put_server(st, &v), 0);
	store_close(st);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM servers WHERE note = 'v2'",
					    -1, &q, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(q), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int(q, 0), 3);
	sqlite3_finalize(q);
	sqlite3_close(db);

	/* This build knows only v3: it refuses the v4 database untouched. */
	st = store_sqlite_open(f->path, err, sizeof(err));
	assert_null(st);
	assert_non_null(strstr(err, "schema version 4 is newer than this tescontrol knows (3)"));
	/* Reopening with v4 is a no-op migration. */
	st = store_sqlite_open_with(f->path, steps, 4, err, sizeof(err));
	assert_non_null(st);
	assert_int_equal(store_schema_version(st), 4);
	store_close(st);
}

static void test_failed_migration_changes_nothing(void **state)
{
	struct fixture *f = *state;
	struct tes_store *st = open_ok(f->path);
	struct store_migration steps[4];
	char err[512];
	static const char already[] = "";

	store_close(st);
	steps[0].version = 1;
	steps[0].sql = already; /* already applied: not run again */
	steps[1].version = 2;
	steps[1].sql = already;
	steps[2].version = 3;
	steps[2].sql = already;
	steps[3].version = 4;
	steps[3].sql = "ALTER TABLE servers ADD COLUMN x INTEGER; THIS IS NOT SQL;";
	assert_null(store_sqlite_open_with(f->path, steps, 4, err, sizeof(err)));
	assert_non_null(strstr(err, "migrating the schema"));
	st = open_ok(f->path);
	assert_int_equal(store_schema_version(st), 3);
	{
		struct store_server v;

		make_server(&v, 1, "a.local", 1);
		assert_int_equal(store_put_server(st, &v), 0);
	}
	store_close(st);
}

static void test_foreign_database(void **state)
{
	struct fixture *f = *state;
	sqlite3 *db;
	char err[512];

	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE mail (x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_null(store_sqlite_open(f->path, err, sizeof(err)));
	assert_non_null(strstr(err, "not a tescontrol database"));
	assert_null(store_sqlite_open("/nonexistent/dir/t.db", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/dir/t.db"));
}

/* A child stores first detections one by one and reports each over a pipe
 * only after store_put_server returned; the parent kills it with SIGKILL at
 * a moment of its choosing.  Everything reported must be there. */
#define KILL_MAX 100000
static unsigned char kill_seen[KILL_MAX];

static int collect_index(const struct store_server *s, void *ctx)
{
	int i;

	(void)ctx;
	if (sscanf(s->s.fqdn, "ex%d.local", &i) != 1 || i < 0 || i >= KILL_MAX)
		return -1;
	/* The stored date is the one that was committed, exactly. */
	if (s->s.first_detected != 1704067200 + i)
		return -1;
	kill_seen[i] = 1;
	return 0;
}

static void test_first_detection_survives_kill(void **state)
{
	struct fixture *f = *state;
	int fds[2], reported = 0, status, i;
	struct tes_store *st;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct tes_store *cst;
		char err[512];

		close(fds[0]);
		cst = store_sqlite_open(f->path, err, sizeof(err));
		if (!cst)
			_exit(2);
		for (i = 0; i < KILL_MAX; i++) {
			struct store_server v;
			char name[64];

			snprintf(name, sizeof(name), "ex%d.local", i);
			make_server(&v, 1, name, 1704067200 + i);
			if (store_put_server(cst, &v))
				_exit(3);
			/* The "acknowledgement": only after the commit. */
			if (write(fds[1], &i, sizeof(i)) != sizeof(i))
				_exit(4);
		}
		_exit(0);
	}
	close(fds[1]);
	while (read(fds[0], &i, sizeof(i)) == sizeof(i)) {
		reported = i + 1;
		if (reported == 40)
			kill(pid, SIGKILL);
	}
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_true(reported >= 40);

	memset(kill_seen, 0, sizeof(kill_seen));
	st = open_ok(f->path);
	assert_int_equal(store_load_servers(st, collect_index, NULL), 0);
	store_close(st);
	for (i = 0; i < reported; i++) {
		if (!kill_seen[i])
			fail_msg("acknowledged first detection ex%d.local lost", i);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_migration_changes_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_foreign_database, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_detection_survives_kill, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
