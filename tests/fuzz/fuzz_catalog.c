/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the catalog loader and classifier.  The input is the
 * builds CSV and the compliance policy separated by a NUL octet.  A catalog
 * that loads must classify every one of its own builds to itself, at any
 * time; and the dates its rules carry must agree with the verdicts: a
 * verdict holds over the span catalog_verdict_span gives, and differs just
 * outside it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enforce/catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A few steps of the rules' dates, bounded so a long input stays fast. */
#define DATE_STEPS 16
#define BUILD_CHECKS 64

static bool verdict(const struct catalog *c, const struct ex_build *b, int64_t t)
{
	struct catalog_class cl;

	catalog_classify(c, b, t, &cl);
	if (cl.nrecommended > CATALOG_MAX_RECOMMENDED)
		abort();
	for (unsigned i = 0; i < cl.nrecommended; i++) {
		if (cl.recommended[i] == NULL)
			abort();
	}
	if (cl.rule.kind == CATALOG_RULE_FROM && cl.rule.floor == NULL)
		abort();
	if (cl.rule.kind != CATALOG_RULE_NONE && (t < cl.rule.since || t >= cl.rule.until))
		abort();
	return cl.compliant;
}

static void check_span(const struct catalog *c, const struct ex_build *b, int64_t t)
{
	int64_t from, until;
	bool v = verdict(c, b, t);

	catalog_verdict_span(c, b, t, &from, &until);
	if (from > t || until <= t)
		abort();
	if (verdict(c, b, from == CATALOG_TIME_MIN ? t : from) != v ||
	    verdict(c, b, until == CATALOG_TIME_MAX ? t : until - 1) != v)
		abort();
	if (until != CATALOG_TIME_MAX && verdict(c, b, until) == v)
		abort();
	if (from != CATALOG_TIME_MIN && verdict(c, b, from - 1) == v)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	const char *sep = memchr(in, '\0', size);
	size_t blen = sep ? (size_t)(sep - in) : size;
	const char *pol = sep ? sep + 1 : "";
	size_t plen = sep ? size - blen - 1 : 0;
	struct catalog_error err;
	int64_t times[DATE_STEPS + 2];
	unsigned ntimes = 0;

	struct catalog *c = catalog_parse(in, blen, "builds", pol, plen, "policy", &err);
	if (!c) {
		if (!memchr(err.msg, '\0', sizeof(err.msg)) ||
		    !memchr(err.file, '\0', sizeof(err.file)))
			abort();
		return 0;
	}
	/* 1990-01-01, then the rules' dates as the catalog walks them. */
	times[ntimes++] = INT64_C(631152000);
	for (int64_t t = times[0]; ntimes < DATE_STEPS + 1;) {
		int64_t n = catalog_next_change(c, t);

		if (n == CATALOG_TIME_MAX)
			break;
		if (n <= t)
			abort();
		times[ntimes++] = n;
		t = n;
	}
	times[ntimes++] = CATALOG_TIME_MAX - 1;

	for (size_t i = 0; i < catalog_size(c); i++) {
		const struct catalog_entry *e = catalog_entry_at(c, i);
		struct catalog_class cl;
		for (unsigned k = 0; k < ntimes; k += 3) {
			catalog_classify(c, &e->build, times[k], &cl);
			if (cl.nearest != e || !cl.exact)
				abort();
		}
		if (i > 0 && ex_build_cmp(&catalog_entry_at(c, i - 1)->build, &e->build) >= 0)
			abort();
		/* one past this build, and one before: never crash, never a wrong branch's entry */
		struct ex_build b = e->build;
		b.v[3]++;
		catalog_classify(c, &b, times[i % ntimes], &cl);
		if (cl.nearest && ex_build_cmp(&cl.nearest->build, &b) > 0)
			abort();
		if (i < BUILD_CHECKS)
			check_span(c, &e->build, times[i % ntimes]);
	}
	catalog_free(c);
	return 0;
}
