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
	bool esu; /* released to Extended Security Update customers only */
};

#define CATALOG_MAX_RECOMMENDED 4

/* Times are seconds since the Unix epoch, UTC.  An open end of a rule's
 * dates is CATALOG_TIME_MIN or CATALOG_TIME_MAX. */
#define CATALOG_TIME_MIN INT64_MIN
#define CATALOG_TIME_MAX INT64_MAX

enum catalog_rule_kind {
	CATALOG_RULE_NONE = 0, /* no rule of the branch is in force then */
	CATALOG_RULE_NEVER,    /* "<family> never" */
	CATALOG_RULE_FROM,     /* "<family> <branch> from <build>" */
	CATALOG_RULE_CURRENT,  /* "<family> <branch> current <N>d" */
};

/* The compliance rule that decided a classification.  With kind NONE on a
 * branch that has rules at other times, line, since and until describe the
 * closest of them (the last that ended, else the next to start), so that a
 * tool can say why nothing applies; line 0 when the branch has none. */
struct catalog_rule {
	enum catalog_rule_kind kind;
	unsigned line;        /* in the compliance file */
	int64_t since, until; /* in force for since <= t < until */
	unsigned days;        /* CURRENT: N */
	/* FROM: its build.  CURRENT: the newest public build of the branch
	 * released at least N days before the time asked about; NULL when
	 * there is none yet (then every build of the branch complies). */
	const struct catalog_entry *floor;
};

struct catalog_class {
	enum ex_family family;               /* EX_FAMILY_NONE: not classified */
	const struct catalog_entry *nearest; /* nearest lower-or-equal known build
					      * of the same branch; NULL if none */
	bool exact;                          /* nearest is this very build */
	bool compliant;
	const char *branch; /* branch name, or "" when unknown */
	struct catalog_rule rule;
	/* Builds to update to, best first, public releases only: the newest
	 * of this branch while it has a rule in force with no end; otherwise
	 * the newest of every branch whose rule has no end (SE), then those
	 * whose rule ends (this branch's own first, if it has one). */
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

/* Classify b as of time now (seconds since the epoch, UTC): the rules in
 * force then decide, and a "current" rule's floor is the one of then.
 * Never allocates, takes no lock; O(log builds + rules of the branch +
 * branches with rules). */
void catalog_classify(const struct catalog *c, const struct ex_build *b, int64_t now,
		      struct catalog_class *out);

/* The span [*from, *until) around now in which b's verdict (compliant or
 * not) stays what it is at now; CATALOG_TIME_MIN / CATALOG_TIME_MAX when it
 * never changed before / never changes after.  For tescontrol and tools:
 * it walks the branch's rule boundaries, not for the per-message path. */
void catalog_verdict_span(const struct catalog *c, const struct ex_build *b, int64_t now,
			  int64_t *from, int64_t *until);

/* The first time after `after` at which the verdict of some build may
 * change (a rule's since or until, a "current" floor moving), or
 * CATALOG_TIME_MAX. */
int64_t catalog_next_change(const struct catalog *c, int64_t after);

/* The time the entry was released, for "current" rules: 00:00 UTC of its
 * date; the last day of the month when only the month is known. */
int64_t catalog_entry_time(const struct catalog_entry *e);

/* "YYYY-MM-DD" (00:00:00 UTC) or "YYYY-MM-DDTHH:MM:SSZ", years 1990 to
 * 2999: the forms a compliance rule's dates take.  false for anything
 * else. */
bool catalog_parse_time(const char *s, int64_t *out);

/* "2026-09-01" when t is midnight UTC, else "2026-09-01T12:00:00Z"; ""
 * for the open ends.  Returns snprintf's count. */
int catalog_format_time(int64_t t, char *buf, size_t len);

const char *catalog_rule_kind_name(enum catalog_rule_kind k);

/* Every entry, sorted by build ascending. */
size_t catalog_size(const struct catalog *c);
const struct catalog_entry *catalog_entry_at(const struct catalog *c, size_t i);

/* A short version string for the loaded data: "<rows>:<fnv64 of both inputs>". */
const char *catalog_version(const struct catalog *c);

#endif
