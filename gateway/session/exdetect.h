/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Exchange build detection from a message's header section.
 *
 * Walks the Received: headers from the top, skips hops added by the
 * gateway's own infrastructure (host patterns in the config) and Exchange
 * Online hops (15.20 and up), and reports the first Microsoft SMTP Server or
 * mapi hop left: the connecting on-premises server.
 *
 * Pure and bounded: no allocation, work linear in the input with a fixed cap
 * on the number of Received headers examined.  Safe from any thread; the
 * config is read-only.
 */
#ifndef TES_GATEWAY_SESSION_EXDETECT_H
#define TES_GATEWAY_SESSION_EXDETECT_H

#include <stdbool.h>
#include <stddef.h>

#include "enforce/build.h"

#define EXDETECT_MAX_SKIP 16     /* own-infrastructure host patterns */
#define EXDETECT_MAX_RECEIVED 64 /* Received headers examined, from the top */
#define EXDETECT_HOST_MAX 255

struct exdetect_config {
	/* Glob patterns ('*' matches any run of characters, case-insensitive)
	 * for the `by` host of hops our own infrastructure adds. */
	unsigned nskip;
	char skip[EXDETECT_MAX_SKIP][EXDETECT_HOST_MAX + 1];
};

struct exdetect_result {
	bool exchange;                      /* false: not Exchange, not enforced */
	char server[EXDETECT_HOST_MAX + 1]; /* the hop's `by` host, lower-case */
	struct ex_build build;
	enum ex_family family;
	unsigned line; /* 1-based line in the header section where the
			  * Received header starts */
	unsigned hop;  /* 0-based index among Received headers */
	bool mapi;     /* the build came from "with mapi id" */
};

/* Add a skip pattern; false if the table is full or the pattern too long. */
bool exdetect_add_skip(struct exdetect_config *cfg, const char *pattern);

/* Scan hdr[0..len) (the header section, CRLF or LF line ends; it need not
 * end with the blank line).  Always fills *out; returns out->exchange. */
bool exdetect_scan(const struct exdetect_config *cfg, const char *hdr, size_t len,
		   struct exdetect_result *out);

#endif
