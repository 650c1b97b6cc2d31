/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The SQLite store (store.h's embedded implementation): one database file
 * in WAL mode, its schema migrated forward in steps.
 *
 * Threads: as store.h.
 */
#ifndef TES_CONTROLPLANE_STORE_SQLITE_H
#define TES_CONTROLPLANE_STORE_SQLITE_H

#include <stddef.h>

#include "controlplane/store/store.h"

/* Open (creating and migrating as needed) the SQLite store at path.  NULL
 * with *err filled on failure; a database written by a newer tescontrol
 * (a schema version this one does not know) is refused, not touched. */
struct tes_store *store_sqlite_open(const char *path, char *err, size_t errlen);

/* The schema version this build creates and migrates to. */
int store_sqlite_latest_version(void);

/* One schema step: the SQL that takes version - 1 to version.  The list
 * store_sqlite_open uses is in sqlite.c; this entry point exists so
 * that tests can prove an upgrade (v1 data under a v2 step) works before a
 * real v2 ships.  Steps must be in increasing version order from 1. */
struct store_migration {
	int version;
	const char *sql;
};
struct tes_store *store_sqlite_open_with(const char *path, const struct store_migration *steps,
					 size_t nsteps, char *err, size_t errlen);
/* This build's steps (for tests that build an older database). */
const struct store_migration *store_sqlite_migrations(size_t *n);

#endif
