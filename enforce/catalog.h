/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The Exchange build catalog and the compliance policy, and the classifier
 * over them.
 *
 * A struct catalog is immutable once loaded: any number of threads may
 * classify against it concurrently without locks.  Replacing it is the
 * owner's business (the gateway swaps a pointer under RCU and frees the old
 * one after a grace period; tescontrol swaps it on its own thread).
 *
 * Loading validates the whole input first and builds nothing visible until
 * it is all good: a malformed file changes nothing.
 */
#ifndef TES_ENFORCE_CATALOG_H
#define TES_ENFORCE_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "enforce/build.h"

struct catalog;

/* One release: a row of data/exchange-builds.csv. */
struct catalog_entry {
	enum ex_family family;
	char branch[16]; /* "CU23", "SP3", "RTM" */
	char update[32]; /* "CU23 Oct25SU", "SP3 RU32" */
	struct ex_build build;
	uint16_t year; /* release date; day 0 when only the month is known */
	uint8_t month, day;
};

#define CATALOG_MAX_RECOMMENDED 4

struct catalog_class {
	enum ex_family family;               /* EX_FAMILY_NONE: not classified */
	const struct catalog_entry *nearest; /* nearest lower-or-equal known build
					      * of the same branch; NULL if none */
	bool exact;                          /* nearest is this very build */
	bool compliant;
	const char *branch; /* branch name, or "" when unknown */
	/* Builds to update to, best first: the newest of this branch if it can
	 * be compliant, otherwise the newest builds of compliant branches. */
	unsigned nrecommended;
	const struct catalog_entry *recommended[CATALOG_MAX_RECOMMENDED];
};

/* Error report from the loaders: file (or "<memory>"), 1-based line, what. */
struct catalog_error {
	char file[256];
	unsigned line;
	char msg[256];
};

/* Parse the builds CSV and the compliance policy from memory.  NULL on error
 * with err filled in.  builds_name and policy_name label error messages. */
struct catalog *catalog_parse(const char *builds, size_t builds_len, const char *builds_name,
			      const char *policy, size_t policy_len, const char *policy_name,
			      struct catalog_error *err);

/* The same, reading the two files. */
struct catalog *catalog_load(const char *builds_path, const char *policy_path,
			     struct catalog_error *err);

void catalog_free(struct catalog *c);

void catalog_classify(const struct catalog *c, const struct ex_build *b, struct catalog_class *out);

/* Every entry, sorted by build ascending. */
size_t catalog_size(const struct catalog *c);
const struct catalog_entry *catalog_entry_at(const struct catalog *c, size_t i);

/* A short version string for the loaded data: "<rows>:<fnv64 of both inputs>". */
const char *catalog_version(const struct catalog *c);

#endif
