/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Fakes for the control plane's unit tests: a store in memory that can be
 * told to fail and keeps a journal of what it was asked, and a subscriber
 * that keeps every notification it hears in the same journal, so a test
 * can check the order "durable first, then memory, then the notification".
 */
#ifndef TES_TESTS_CP_FAKES_H
#define TES_TESTS_CP_FAKES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controlplane/state/state.h"

#define FAKE_JOURNAL_MAX 256
#define FAKE_SERVERS_MAX 64
#define FAKE_TENANTS_MAX 16

/* One line per store call or notification, like "put_server 1 ex1.bear.local"
 * or "note server ex1.bear.local first_detection". */
struct fake_journal {
	char line[FAKE_JOURNAL_MAX][160];
	unsigned n;
};

struct fake_store {
	struct tes_store base; /* first: the state holds a struct tes_store * */
	struct fake_journal *j;
	struct store_server servers[FAKE_SERVERS_MAX];
	unsigned nservers;
	struct tes_tenant tenants[FAKE_TENANTS_MAX];
	unsigned ntenants;
	struct store_doc docs[3]; /* builds, compliance, policy */
	bool in_tx;
	unsigned commits;
	/* The next call of this name fails ("put_server", "commit", ...). */
	const char *fail;
	/* At each put_server: whether the state had the server in memory
	 * then (set by the test: the state it watches). */
	const struct cp_state *watch;
	bool in_memory_at_put;
};

void fake_store_init(struct fake_store *fs, struct fake_journal *j);
void fake_store_free(struct fake_store *fs);
const struct store_server *fake_store_server(const struct fake_store *fs, uint32_t tenant,
					     const char *fqdn);

/* A subscriber that journals every note: "note <kind> <name> <event>".  For
 * server notes it also records whether the server was in memory. */
struct fake_sub {
	struct fake_journal *j;
	const struct cp_state *st;
	unsigned count[CP_NOTE_EVENT + 1];
	char last_fields[512]; /* the last note's fields, compact JSON */
	bool server_in_memory;
};
void fake_sub_on_note(void *ctx, const struct cp_note *n);

void fake_journal_add(struct fake_journal *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The index of the first line starting with prefix at or after from, or -1. */
int fake_journal_find(const struct fake_journal *j, const char *prefix, unsigned from);

/* A state over fs on the repository's catalog (data/) and the built-in
 * policy, with clock at now; sub subscribed.  Asserts on failure. */
void fake_state(struct cp_state *st, struct fake_store *fs, struct cp_clock *clock,
		struct fake_sub *sub);
/* A tenant with one address connector 198.51.100.0/24 (tenant 1) or
 * 198.51.(100+id).0/24. */
void fake_tenant(struct cp_state *st, uint32_t id, const char *name);
/* A sighting as a gateway sends it. */
struct ctl_sighting fake_sighting(uint32_t tenant, const char *fqdn, const char *build,
				  const char *source);

#endif
