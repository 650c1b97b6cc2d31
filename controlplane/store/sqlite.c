/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The SQLite store.  One database file (plus its -wal and -shm files) holds
 * everything tescontrol must not lose.  WAL with synchronous=FULL: a
 * committed transaction has been fsync'd to the WAL before sqlite3_step
 * returns, so a first detection acknowledged after a commit survives kill -9
 * and power loss.
 */
#include "controlplane/store/sqlite.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "base/text.h"

/* Schema history.  Each step takes the schema from version - 1 to version
 * and runs in the same transaction as the version bump, so a crash mid-way
 * leaves the old version intact.  Never edit a step that has shipped: add
 * the next one.  A v2 would look like
 *
 *	{ 2, "ALTER TABLE servers ADD COLUMN note TEXT NOT NULL DEFAULT '';" },
 *
 * appended below, with the code reading and writing the new column updated
 * in the same change (tests/unit/test_store.c runs such a step over v1
 * data). */
/* v1 as it shipped: never edit. */
static const char schema_v1[] =
	"CREATE TABLE tenants ("
	" id INTEGER PRIMARY KEY CHECK (id BETWEEN 1 AND 4294967295),"
	" name TEXT NOT NULL);"
	"CREATE TABLE connectors ("
	" tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
	" pos INTEGER NOT NULL,"
	" range TEXT NOT NULL,"
	" cert_name TEXT NOT NULL DEFAULT '',"
	" PRIMARY KEY (tenant_id, pos));"
	"CREATE TABLE pauses ("
	" tenant_id INTEGER PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,"
	" start INTEGER NOT NULL,"
	" end INTEGER NOT NULL,"
	" paused_before INTEGER NOT NULL,"
	" year INTEGER NOT NULL,"
	" days_used INTEGER NOT NULL);"
	/* tenant_id 0 holds servers seen outside every connector (scope
	 * "all"), hence no foreign key to tenants. */
	"CREATE TABLE servers ("
	" tenant_id INTEGER NOT NULL,"
	" fqdn_key TEXT NOT NULL," /* lower-case fqdn: names compare case-insensitively */
	" fqdn TEXT NOT NULL,"
	" build TEXT NOT NULL,"
	" family TEXT NOT NULL,"
	" resolved INTEGER NOT NULL,"
	" first_detected INTEGER NOT NULL,"
	" last_seen INTEGER NOT NULL,"
	" resolved_at INTEGER NOT NULL,"
	" pause_base INTEGER NOT NULL,"
	" stage_logged INTEGER NOT NULL,"
	" status_logged TEXT NOT NULL,"
	" PRIMARY KEY (tenant_id, fqdn_key)) WITHOUT ROWID;"
	"CREATE TABLE server_sources ("
	" tenant_id INTEGER NOT NULL,"
	" fqdn_key TEXT NOT NULL,"
	" pos INTEGER NOT NULL,"
	" addr TEXT NOT NULL,"
	" PRIMARY KEY (tenant_id, fqdn_key, pos),"
	" FOREIGN KEY (tenant_id, fqdn_key) REFERENCES servers(tenant_id, fqdn_key)"
	"  ON DELETE CASCADE) WITHOUT ROWID;"
	/* The catalog's two files and the policy file in force, as loaded. */
	"CREATE TABLE documents ("
	" key TEXT PRIMARY KEY,"
	" name TEXT NOT NULL,"
	" text TEXT NOT NULL,"
	" version TEXT NOT NULL,"
	" loaded_at INTEGER NOT NULL);";

/* v2 (issue 13): when each source last carried its server (the shared
 * source decision, probes) and the stale time of a server's clock.  Sources
 * of v1 rows take their server's last_seen: the best the v1 data knows. */
static const char schema_v2[] =
	"ALTER TABLE server_sources ADD COLUMN seen INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE servers ADD COLUMN stale_seconds INTEGER NOT NULL DEFAULT 0;"
	"UPDATE server_sources SET seen = (SELECT last_seen FROM servers s"
	" WHERE s.tenant_id = server_sources.tenant_id AND s.fqdn_key = server_sources.fqdn_key);";

/* v3 (issue 19): records (store/records.h): the notice journal, notice
 * contacts, report tokens, refused-message counts, the stage history. */
static const char schema_v3[] = "CREATE TABLE records ("
				" coll TEXT NOT NULL,"
				" key TEXT NOT NULL,"
				" value TEXT NOT NULL,"
				" PRIMARY KEY (coll, key)) WITHOUT ROWID;";

static const struct store_migration migrations[] = {
	{ 1, schema_v1 },
	{ 2, schema_v2 },
	{ 3, schema_v3 },
};

#define NMIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

enum stmt_id {
	S_BEGIN,
	S_COMMIT,
	S_ROLLBACK,
	S_TENANTS,
	S_CONNECTORS,
	S_TENANT_PUT,
	S_CONN_DEL,
	S_CONN_PUT,
	S_PAUSE_PUT,
	S_TENANT_DEL,
	S_SERVERS,
	S_SOURCES,
	S_SERVER_PUT,
	S_SRC_DEL,
	S_SRC_PUT,
	S_SERVER_DEL,
	S_DOC_GET,
	S_DOC_PUT,
	S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
	[S_BEGIN] = "BEGIN IMMEDIATE",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_TENANTS] = "SELECT t.id, t.name, p.start, p.end, p.paused_before, p.year, p.days_used"
		      " FROM tenants t LEFT JOIN pauses p ON p.tenant_id = t.id ORDER BY t.id",
	[S_CONNECTORS] = "SELECT range, cert_name FROM connectors WHERE tenant_id = ?"
			 " ORDER BY pos",
	[S_TENANT_PUT] = "INSERT INTO tenants (id, name) VALUES (?, ?)"
			 " ON CONFLICT(id) DO UPDATE SET name = excluded.name",
	[S_CONN_DEL] = "DELETE FROM connectors WHERE tenant_id = ?",
	[S_CONN_PUT] = "INSERT INTO connectors (tenant_id, pos, range, cert_name)"
		       " VALUES (?, ?, ?, ?)",
	[S_PAUSE_PUT] = "INSERT OR REPLACE INTO pauses"
			" (tenant_id, start, end, paused_before, year, days_used)"
			" VALUES (?, ?, ?, ?, ?, ?)",
	[S_TENANT_DEL] = "DELETE FROM tenants WHERE id = ?",
	[S_SERVERS] = "SELECT tenant_id, fqdn_key, fqdn, build, family, resolved, first_detected,"
		      " last_seen, resolved_at, pause_base, stage_logged, status_logged,"
		      " stale_seconds FROM servers ORDER BY tenant_id, fqdn_key",
	[S_SOURCES] = "SELECT addr, seen FROM server_sources WHERE tenant_id = ? AND fqdn_key = ?"
		      " ORDER BY pos",
	[S_SERVER_PUT] =
		"INSERT INTO servers (tenant_id, fqdn_key, fqdn, build, family, resolved,"
		" first_detected, last_seen, resolved_at, pause_base, stage_logged, status_logged,"
		" stale_seconds)"
		" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
		" ON CONFLICT(tenant_id, fqdn_key) DO UPDATE SET fqdn = excluded.fqdn,"
		" build = excluded.build, family = excluded.family, resolved = excluded.resolved,"
		" first_detected = excluded.first_detected, last_seen = excluded.last_seen,"
		" resolved_at = excluded.resolved_at, pause_base = excluded.pause_base,"
		" stage_logged = excluded.stage_logged, status_logged = excluded.status_logged,"
		" stale_seconds = excluded.stale_seconds",
	[S_SRC_DEL] = "DELETE FROM server_sources WHERE tenant_id = ? AND fqdn_key = ?",
	[S_SRC_PUT] = "INSERT INTO server_sources (tenant_id, fqdn_key, pos, addr, seen)"
		      " VALUES (?, ?, ?, ?, ?)",
	[S_SERVER_DEL] = "DELETE FROM servers WHERE tenant_id = ? AND fqdn_key = ?",
	[S_DOC_GET] = "SELECT name, text, version, loaded_at FROM documents WHERE key = ?",
	[S_DOC_PUT] = "INSERT OR REPLACE INTO documents (key, name, text, version, loaded_at)"
		      " VALUES (?, ?, ?, ?, ?)",
};

/* The records' statements are prepared on first use, so that a database
 * opened at an older schema (tests of migrations) opens without them. */
enum rec_stmt { R_PUT, R_DEL, R_LOAD, R_COUNT };

static const char *const rec_sql[R_COUNT] = {
	[R_PUT] = "INSERT OR REPLACE INTO records (coll, key, value) VALUES (?, ?, ?)",
	[R_DEL] = "DELETE FROM records WHERE coll = ? AND key = ?",
	[R_LOAD] = "SELECT key, value FROM records WHERE coll = ? ORDER BY key",
};

struct sqlite_store {
	struct tes_store base; /* first: the callers' handle */
	sqlite3 *db;
	sqlite3_stmt *stmt[S_COUNT];
	sqlite3_stmt *rec[R_COUNT];
	bool in_txn;
	int version;
};

static struct sqlite_store *sq(struct tes_store *st)
{
	return (struct sqlite_store *)st;
}

static int errf(struct sqlite_store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int errf(struct sqlite_store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->base.err, sizeof(s->base.err), fmt, ap);
	va_end(ap);
	return -1;
}

static int dberr(struct sqlite_store *s, const char *what)
{
	return errf(s, "%s: %s", what, sqlite3_errmsg(s->db));
}

static sqlite3_stmt *stmt(struct sqlite_store *s, enum stmt_id id)
{
	sqlite3_stmt *q = s->stmt[id];

	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	return q;
}

/* Run a statement that returns no rows. */
static int run(struct sqlite_store *s, sqlite3_stmt *q, const char *what)
{
	int rc = sqlite3_step(q);

	sqlite3_reset(q);
	if (rc != SQLITE_DONE)
		return dberr(s, what);
	return 0;
}

static void key_of(const char *fqdn, char *key)
{
	size_t i;

	for (i = 0; fqdn[i] && i < TES_FQDN_MAX - 1; i++)
		key[i] = (char)tolower((unsigned char)fqdn[i]);
	key[i] = '\0';
}

static const char *col_text(sqlite3_stmt *q, int i)
{
	const unsigned char *t = sqlite3_column_text(q, i);

	return t ? (const char *)t : "";
}

/* ---- transactions ----
 * A call outside store_begin/store_commit wraps itself in one so that its
 * several statements (a server and its sources) land together. */

static int sq_begin(struct tes_store *st)
{
	struct sqlite_store *s = sq(st);

	if (s->in_txn)
		return errf(s, "transaction already open");
	if (run(s, stmt(s, S_BEGIN), "begin"))
		return -1;
	s->in_txn = true;
	return 0;
}

static int sq_commit(struct tes_store *st)
{
	struct sqlite_store *s = sq(st);
	struct timespec t0, t1;

	if (!s->in_txn)
		return errf(s, "no transaction open");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (run(s, stmt(s, S_COMMIT), "commit")) {
		/* A failed COMMIT may leave the transaction open (SQLITE_BUSY)
		 * or rolled back; make it the latter either way. */
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		s->in_txn = false;
		return -1;
	}
	s->in_txn = false;
	if (st->on_commit) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		st->on_commit(st->on_commit_ctx, (double)(t1.tv_sec - t0.tv_sec) +
							 (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	}
	return 0;
}

static void sq_rollback(struct tes_store *st)
{
	struct sqlite_store *s = sq(st);

	if (s->in_txn)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	s->in_txn = false;
}

/* Open an implicit transaction when the caller has none; returns whether it
 * did (to close it with end_auto). */
static int begin_auto(struct sqlite_store *s, bool *mine)
{
	*mine = false;
	if (s->in_txn)
		return 0;
	if (sq_begin(&s->base))
		return -1;
	*mine = true;
	return 0;
}

static int end_auto(struct sqlite_store *s, bool mine, int rc)
{
	if (!mine)
		return rc;
	if (rc) {
		char keep[sizeof(s->base.err)];

		memcpy(keep, s->base.err, sizeof(keep));
		sq_rollback(&s->base);
		memcpy(s->base.err, keep, sizeof(keep));
		return rc;
	}
	return sq_commit(&s->base);
}

/* ---- tenants ---- */

static int sq_load_tenants(struct tes_store *st, store_tenant_cb cb, void *ctx)
{
	struct sqlite_store *s = sq(st);
	sqlite3_stmt *q = stmt(s, S_TENANTS);
	int rc;

	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct tes_tenant t;
		sqlite3_stmt *c;
		int crc;

		memset(&t, 0, sizeof(t));
		t.id = (uint32_t)sqlite3_column_int64(q, 0);
		tes_str_copy(t.name, sizeof(t.name), col_text(q, 1));
		if (sqlite3_column_type(q, 2) != SQLITE_NULL) {
			t.pause.start = sqlite3_column_int64(q, 2);
			t.pause.end = sqlite3_column_int64(q, 3);
			t.pause.paused_before = sqlite3_column_int64(q, 4);
			t.pause.year = (uint16_t)sqlite3_column_int(q, 5);
			t.pause.days_used = (uint16_t)sqlite3_column_int(q, 6);
		}
		c = stmt(s, S_CONNECTORS);
		sqlite3_bind_int64(c, 1, t.id);
		while ((crc = sqlite3_step(c)) == SQLITE_ROW) {
			if (t.nconnectors == TES_TENANT_CONNECTORS_MAX)
				continue;
			if (tes_connector_parse(col_text(c, 0), col_text(c, 1),
						&t.connectors[t.nconnectors])) {
				sqlite3_reset(c);
				sqlite3_reset(q);
				return errf(s, "tenant %u: bad stored connector \"%s\"", t.id,
					    col_text(c, 0));
			}
			t.nconnectors++;
		}
		sqlite3_reset(c);
		if (crc != SQLITE_DONE) {
			sqlite3_reset(q);
			return dberr(s, "reading connectors");
		}
		if (cb(&t, ctx)) {
			sqlite3_reset(q);
			return errf(s, "loading tenants: stopped by the caller");
		}
	}
	sqlite3_reset(q);
	if (rc != SQLITE_DONE)
		return dberr(s, "reading tenants");
	return 0;
}

static int put_tenant_rows(struct sqlite_store *s, const struct tes_tenant *t)
{
	sqlite3_stmt *q;

	q = stmt(s, S_TENANT_PUT);
	sqlite3_bind_int64(q, 1, t->id);
	sqlite3_bind_text(q, 2, t->name, -1, SQLITE_STATIC);
	if (run(s, q, "storing a tenant"))
		return -1;
	q = stmt(s, S_CONN_DEL);
	sqlite3_bind_int64(q, 1, t->id);
	if (run(s, q, "replacing connectors"))
		return -1;
	for (unsigned i = 0; i < t->nconnectors && i < TES_TENANT_CONNECTORS_MAX; i++) {
		char range[80], a[64];

		if (tes_addr_format(&t->connectors[i].net, a, sizeof(a)) < 0)
			return errf(s, "tenant %u: unprintable connector address", t->id);
		snprintf(range, sizeof(range), "%s/%u", a, t->connectors[i].prefix_len);
		q = stmt(s, S_CONN_PUT);
		sqlite3_bind_int64(q, 1, t->id);
		sqlite3_bind_int(q, 2, (int)i);
		sqlite3_bind_text(q, 3, range, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(q, 4, t->connectors[i].cert_name, -1, SQLITE_STATIC);
		if (run(s, q, "storing a connector"))
			return -1;
	}
	q = stmt(s, S_PAUSE_PUT);
	sqlite3_bind_int64(q, 1, t->id);
	sqlite3_bind_int64(q, 2, t->pause.start);
	sqlite3_bind_int64(q, 3, t->pause.end);
	sqlite3_bind_int64(q, 4, t->pause.paused_before);
	sqlite3_bind_int(q, 5, t->pause.year);
	sqlite3_bind_int(q, 6, t->pause.days_used);
	return run(s, q, "storing a pause");
}

static int sq_put_tenant(struct tes_store *st, const struct tes_tenant *t)
{
	struct sqlite_store *s = sq(st);
	bool mine;

	if (t->id == 0)
		return errf(s, "tenant id 0 is reserved");
	if (begin_auto(s, &mine))
		return -1;
	return end_auto(s, mine, put_tenant_rows(s, t));
}

static int sq_delete_tenant(struct tes_store *st, uint32_t id)
{
	struct sqlite_store *s = sq(st);
	sqlite3_stmt *q = stmt(s, S_TENANT_DEL);
	bool mine;

	if (begin_auto(s, &mine))
		return -1;
	sqlite3_bind_int64(q, 1, id);
	return end_auto(s, mine, run(s, q, "deleting a tenant"));
}

/* ---- servers ---- */

static const char *const status_names[] = {
	[TES_STATUS_REPORTING] = "Reporting", [TES_STATUS_THROTTLING] = "Throttling",
	[TES_STATUS_BLOCKING] = "Blocking",   [TES_STATUS_RESOLVED] = "Resolved",
	[TES_STATUS_PAUSED] = "Paused",       [TES_STATUS_STALE] = "Stale",
	[TES_STATUS_COMPLIANT] = "Compliant",
};

static uint8_t status_from(const char *name)
{
	for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++) {
		if (strcmp(name, status_names[i]) == 0)
			return (uint8_t)i;
	}
	return TES_STATUS_REPORTING;
}

static int sq_load_servers(struct tes_store *st, store_server_cb cb, void *ctx)
{
	struct sqlite_store *s = sq(st);
	sqlite3_stmt *q = stmt(s, S_SERVERS);
	int rc;

	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct store_server v;
		sqlite3_stmt *a;
		int arc;
		int stage;

		memset(&v, 0, sizeof(v));
		v.s.tenant_id = (uint32_t)sqlite3_column_int64(q, 0);
		tes_str_copy(v.s.fqdn, sizeof(v.s.fqdn), col_text(q, 2));
		if (!ex_build_from_str(col_text(q, 3), &v.s.build)) {
			sqlite3_reset(q);
			return errf(s, "server %s: bad stored build \"%s\"", v.s.fqdn,
				    col_text(q, 3));
		}
		v.s.family = ex_family_from_name(col_text(q, 4));
		v.s.resolved = sqlite3_column_int(q, 5) != 0;
		v.s.first_detected = sqlite3_column_int64(q, 6);
		v.s.last_seen = sqlite3_column_int64(q, 7);
		v.s.resolved_at = sqlite3_column_int64(q, 8);
		v.s.pause_base = sqlite3_column_int64(q, 9);
		stage = sqlite3_column_int(q, 10);
		v.stage_logged = (uint8_t)(stage >= 1 && stage <= TES_STAGE_COUNT ? stage : 1);
		v.status_logged = status_from(col_text(q, 11));
		v.s.stale_seconds = sqlite3_column_int64(q, 12);

		a = stmt(s, S_SOURCES);
		sqlite3_bind_int64(a, 1, v.s.tenant_id);
		sqlite3_bind_text(a, 2, col_text(q, 1), -1, SQLITE_TRANSIENT);
		while ((arc = sqlite3_step(a)) == SQLITE_ROW) {
			if (v.s.nsources < TES_SERVER_SOURCES_MAX &&
			    tes_addr_parse(col_text(a, 0), &v.s.sources[v.s.nsources])) {
				v.s.source_seen[v.s.nsources] = sqlite3_column_int64(a, 1);
				v.s.nsources++;
			}
		}
		sqlite3_reset(a);
		if (arc != SQLITE_DONE) {
			sqlite3_reset(q);
			return dberr(s, "reading server sources");
		}
		if (cb(&v, ctx)) {
			sqlite3_reset(q);
			return errf(s, "loading servers: stopped by the caller");
		}
	}
	sqlite3_reset(q);
	if (rc != SQLITE_DONE)
		return dberr(s, "reading servers");
	return 0;
}

static int put_server_rows(struct sqlite_store *s, const struct store_server *v)
{
	char key[TES_FQDN_MAX], build[48];
	sqlite3_stmt *q;

	key_of(v->s.fqdn, key);
	ex_build_format(&v->s.build, build, sizeof(build));
	q = stmt(s, S_SERVER_PUT);
	sqlite3_bind_int64(q, 1, v->s.tenant_id);
	sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, v->s.fqdn, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, build, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, ex_family_name(v->s.family), -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 6, v->s.resolved);
	sqlite3_bind_int64(q, 7, v->s.first_detected);
	sqlite3_bind_int64(q, 8, v->s.last_seen);
	sqlite3_bind_int64(q, 9, v->s.resolved_at);
	sqlite3_bind_int64(q, 10, v->s.pause_base);
	sqlite3_bind_int(q, 11, v->stage_logged);
	sqlite3_bind_text(q, 12,
			  v->status_logged < TES_STATUS_COUNT ? status_names[v->status_logged]
							      : "Reporting",
			  -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 13, v->s.stale_seconds);
	if (run(s, q, "storing a server"))
		return -1;
	q = stmt(s, S_SRC_DEL);
	sqlite3_bind_int64(q, 1, v->s.tenant_id);
	sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
	if (run(s, q, "replacing server sources"))
		return -1;
	for (unsigned i = 0; i < v->s.nsources && i < TES_SERVER_SOURCES_MAX; i++) {
		char addr[64];

		if (tes_addr_format(&v->s.sources[i], addr, sizeof(addr)) < 0)
			continue;
		q = stmt(s, S_SRC_PUT);
		sqlite3_bind_int64(q, 1, v->s.tenant_id);
		sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
		sqlite3_bind_int(q, 3, (int)i);
		sqlite3_bind_text(q, 4, addr, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(q, 5, v->s.source_seen[i]);
		if (run(s, q, "storing a server source"))
			return -1;
	}
	return 0;
}

static int sq_put_server(struct tes_store *st, const struct store_server *v)
{
	struct sqlite_store *s = sq(st);
	bool mine;

	if (!v->s.fqdn[0])
		return errf(s, "server without a name");
	if (begin_auto(s, &mine))
		return -1;
	return end_auto(s, mine, put_server_rows(s, v));
}

static int sq_delete_server(struct tes_store *st, uint32_t tenant_id, const char *fqdn)
{
	struct sqlite_store *s = sq(st);
	sqlite3_stmt *q = stmt(s, S_SERVER_DEL);
	char key[TES_FQDN_MAX];
	bool mine;

	key_of(fqdn, key);
	if (begin_auto(s, &mine))
		return -1;
	sqlite3_bind_int64(q, 1, tenant_id);
	sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
	return end_auto(s, mine, run(s, q, "deleting a server"));
}

/* ---- documents ---- */

static int sq_get_doc(struct tes_store *st, const char *key, struct store_doc *out)
{
	struct sqlite_store *s = sq(st);
	sqlite3_stmt *q = stmt(s, S_DOC_GET);
	int rc;

	memset(out, 0, sizeof(*out));
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_DONE) {
		sqlite3_reset(q);
		return 0;
	}
	if (rc != SQLITE_ROW) {
		sqlite3_reset(q);
		return dberr(s, "reading a document");
	}
	tes_str_copy(out->name, sizeof(out->name), col_text(q, 0));
	out->len = (size_t)sqlite3_column_bytes(q, 1);
	out->text = malloc(out->len + 1);
	if (!out->text) {
		sqlite3_reset(q);
		return errf(s, "out of memory reading %s", key);
	}
	memcpy(out->text, col_text(q, 1), out->len);
	out->text[out->len] = '\0';
	tes_str_copy(out->version, sizeof(out->version), col_text(q, 2));
	out->loaded_at = sqlite3_column_int64(q, 3);
	sqlite3_reset(q);
	return 1;
}

static int sq_put_doc(struct tes_store *st, const char *key, const struct store_doc *d)
{
	struct sqlite_store *s = sq(st);
	sqlite3_stmt *q = stmt(s, S_DOC_PUT);
	bool mine;

	if (begin_auto(s, &mine))
		return -1;
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, d->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, d->text, (int)d->len, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, d->version, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 5, d->loaded_at);
	return end_auto(s, mine, run(s, q, "storing a document"));
}

/* ---- records ---- */

static sqlite3_stmt *rec_stmt(struct sqlite_store *s, enum rec_stmt id)
{
	if (!s->rec[id] && sqlite3_prepare_v3(s->db, rec_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
					      &s->rec[id], NULL) != SQLITE_OK) {
		dberr(s, rec_sql[id]);
		return NULL;
	}
	sqlite3_reset(s->rec[id]);
	sqlite3_clear_bindings(s->rec[id]);
	return s->rec[id];
}

static int sq_put_record(struct tes_store *st, const char *coll, const char *key, const char *value)
{
	struct sqlite_store *s = sq(st);
	sqlite3_stmt *q = rec_stmt(s, R_PUT);
	bool mine;

	if (!q || begin_auto(s, &mine))
		return -1;
	sqlite3_bind_text(q, 1, coll, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, value, -1, SQLITE_STATIC);
	return end_auto(s, mine, run(s, q, "storing a record"));
}

static int sq_delete_record(struct tes_store *st, const char *coll, const char *key)
{
	struct sqlite_store *s = sq(st);
	sqlite3_stmt *q = rec_stmt(s, R_DEL);
	bool mine;

	if (!q || begin_auto(s, &mine))
		return -1;
	sqlite3_bind_text(q, 1, coll, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
	return end_auto(s, mine, run(s, q, "deleting a record"));
}

static int sq_load_records(struct tes_store *st, const char *coll, store_record_cb cb, void *ctx)
{
	struct sqlite_store *s = sq(st);
	sqlite3_stmt *q = rec_stmt(s, R_LOAD);
	int rc;

	if (!q)
		return -1;
	sqlite3_bind_text(q, 1, coll, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		int r = cb(col_text(q, 0), col_text(q, 1), ctx);

		if (r) {
			sqlite3_reset(q);
			return r;
		}
	}
	sqlite3_reset(q);
	if (rc != SQLITE_DONE)
		return dberr(s, "loading records");
	return 0;
}

static int sq_schema_version(struct tes_store *st)
{
	return sq(st)->version;
}

static void sq_close(struct tes_store *st)
{
	struct sqlite_store *s = sq(st);

	sq_rollback(st);
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	for (int i = 0; i < R_COUNT; i++)
		sqlite3_finalize(s->rec[i]);
	/* sqlite3_close checkpoints the WAL into the main file when it is the
	 * last connection; a kill -9 skips that and the next open replays the
	 * WAL instead. */
	sqlite3_close(s->db);
	free(s);
}

static const struct store_ops sqlite_ops = {
	.close = sq_close,
	.begin = sq_begin,
	.commit = sq_commit,
	.rollback = sq_rollback,
	.load_tenants = sq_load_tenants,
	.put_tenant = sq_put_tenant,
	.delete_tenant = sq_delete_tenant,
	.load_servers = sq_load_servers,
	.put_server = sq_put_server,
	.delete_server = sq_delete_server,
	.get_doc = sq_get_doc,
	.put_doc = sq_put_doc,
	.schema_version = sq_schema_version,
	.put_record = sq_put_record,
	.delete_record = sq_delete_record,
	.load_records = sq_load_records,
};

/* ---- opening and migrating ---- */

static int exec(struct sqlite_store *s, const char *sql, const char *what)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		errf(s, "%s: %s", what, msg ? msg : sqlite3_errmsg(s->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int query_int(struct sqlite_store *s, const char *sql, int64_t *out)
{
	sqlite3_stmt *q;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
		return dberr(s, sql);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return dberr(s, sql);
}

static int migrate(struct sqlite_store *s, const struct store_migration *steps, size_t nsteps)
{
	int64_t have = 0, ntables = 0;
	int latest = nsteps ? steps[nsteps - 1].version : 0;
	int rc;

	/* IMMEDIATE: two tescontrols started at once must not both migrate. */
	if (exec(s, "BEGIN IMMEDIATE", "locking the database for migration"))
		return -1;
	rc = query_int(s,
		       "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
		       " AND name = 'schema_version'",
		       &ntables);
	if (rc < 0)
		goto fail;
	if (ntables == 0) {
		int64_t others = 0;

		if (query_int(s, "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
			      &others) < 0)
			goto fail;
		if (others > 0) {
			errf(s, "not a tescontrol database (it has tables but no schema_version)");
			goto fail;
		}
		if (exec(s,
			 "CREATE TABLE schema_version (version INTEGER NOT NULL);"
			 "INSERT INTO schema_version VALUES (0);",
			 "creating schema_version"))
			goto fail;
	} else {
		rc = query_int(s, "SELECT version FROM schema_version", &have);
		if (rc < 0)
			goto fail;
		if (rc == 0) {
			errf(s, "schema_version is empty");
			goto fail;
		}
	}
	if (have > latest) {
		errf(s,
		     "database schema version %lld is newer than this tescontrol knows (%d):"
		     " refusing to touch it",
		     (long long)have, latest);
		goto fail;
	}
	for (size_t i = 0; i < nsteps; i++) {
		char sql[64];

		if (steps[i].version <= have)
			continue;
		if (exec(s, steps[i].sql, "migrating the schema"))
			goto fail;
		snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d",
			 steps[i].version);
		if (exec(s, sql, "recording the schema version"))
			goto fail;
		have = steps[i].version;
	}
	if (exec(s, "COMMIT", "committing the migration"))
		goto fail;
	s->version = (int)have;
	return 0;
fail:
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

struct tes_store *store_sqlite_open_with(const char *path, const struct store_migration *steps,
					 size_t nsteps, char *err, size_t errlen)
{
	struct sqlite_store *s = calloc(1, sizeof(*s));
	int64_t x;

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->base.ops = &sqlite_ops;
	if (sqlite3_open_v2(path, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "cannot open");
		sqlite3_close(s->db);
		free(s);
		return NULL;
	}
	sqlite3_extended_result_codes(s->db, 1);
	/* Another reader (sqlite3 on the command line, a backup) may hold a
	 * lock for a moment; wait rather than fail a first detection. */
	sqlite3_busy_timeout(s->db, 5000);
	if (exec(s, "PRAGMA journal_mode = WAL", "enabling WAL") ||
	    exec(s, "PRAGMA synchronous = FULL", "setting synchronous=FULL") ||
	    exec(s, "PRAGMA foreign_keys = ON", "enabling foreign keys"))
		goto fail;
	/* journal_mode can silently stay "delete" (a read-only directory, a
	 * file system without shared memory): durability would still hold,
	 * but say so rather than run in a mode nobody chose. */
	if (query_int(s, "PRAGMA synchronous", &x) <= 0 || x != 2) {
		errf(s, "could not set synchronous=FULL");
		goto fail;
	}
	{
		sqlite3_stmt *q;
		bool wal = false;

		if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &q, NULL) == SQLITE_OK) {
			if (sqlite3_step(q) == SQLITE_ROW)
				wal = strcmp(col_text(q, 0), "wal") == 0;
			sqlite3_finalize(q);
		}
		if (!wal) {
			errf(s, "could not switch the database to WAL mode");
			goto fail;
		}
	}
	if (migrate(s, steps, nsteps))
		goto fail;
	for (int i = 0; i < S_COUNT; i++) {
		if (!stmt_sql[i])
			continue;
		if (sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &s->stmt[i], NULL) != SQLITE_OK) {
			dberr(s, stmt_sql[i]);
			goto fail;
		}
	}
	return &s->base;
fail:
	snprintf(err, errlen, "%s: %s", path, s->base.err);
	for (int i = 0; i < S_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close(s->db);
	free(s);
	return NULL;
}

struct tes_store *store_sqlite_open(const char *path, char *err, size_t errlen)
{
	return store_sqlite_open_with(path, migrations, NMIGRATIONS, err, errlen);
}

int store_sqlite_latest_version(void)
{
	return migrations[NMIGRATIONS - 1].version;
}

const struct store_migration *store_sqlite_migrations(size_t *n)
{
	*n = NMIGRATIONS;
	return migrations;
}
