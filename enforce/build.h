/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Exchange build numbers and product families.
 *
 * Pure functions over values: no state, safe from any thread.
 */
#ifndef TES_ENFORCE_BUILD_H
#define TES_ENFORCE_BUILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A build as four integers: 15.2.1748.39.  The zero-padded form Exchange
 * also writes (15.02.1748.039) parses to the same value. */
struct ex_build {
	uint32_t v[4];
};

enum ex_family {
	EX_FAMILY_NONE = 0, /* not an on-premises Exchange build we know */
	EX_FAMILY_2007,
	EX_FAMILY_2010,
	EX_FAMILY_2013,
	EX_FAMILY_2016,
	EX_FAMILY_2019,
	EX_FAMILY_SE,
	EX_FAMILY_ONLINE, /* 15.20 and up: Exchange Online, never on-premises */
};
#define EX_FAMILY_COUNT (EX_FAMILY_ONLINE + 1)

/* Parse exactly four dot-separated decimal fields (each < 2^31, at most ten
 * digits with leading zeros) from s[0..len).  Returns the number of octets
 * used, or 0 if s does not start with a build. */
size_t ex_build_parse(const char *s, size_t len, struct ex_build *out);

/* Parse a whole NUL-terminated string; false unless all of it is a build. */
bool ex_build_from_str(const char *s, struct ex_build *out);

int ex_build_cmp(const struct ex_build *a, const struct ex_build *b);

/* Short form, "15.2.1748.39".  Returns snprintf's count. */
int ex_build_format(const struct ex_build *b, char *buf, size_t len);

/* 8.x 2007, 14.x 2010, 15.0 2013, 15.1 2016, 15.2 below 2562 2019, 15.2 from
 * 2562 SE, 15.20+ Online; anything else NONE. */
enum ex_family ex_family_of(const struct ex_build *b);

/* "2007", "2010", ..., "SE", "Online"; "none" for EX_FAMILY_NONE. */
const char *ex_family_name(enum ex_family f);

/* Inverse of ex_family_name (case-insensitive); EX_FAMILY_NONE if unknown. */
enum ex_family ex_family_from_name(const char *name);

#endif
