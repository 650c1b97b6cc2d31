/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the catalog loader and classifier.  The input is the
 * builds CSV and the compliance policy separated by a NUL octet.  A catalog
 * that loads must classify every one of its own builds to itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enforce/catalog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	const char *sep = memchr(in, '\0', size);
	size_t blen = sep ? (size_t)(sep - in) : size;
	const char *pol = sep ? sep + 1 : "";
	size_t plen = sep ? size - blen - 1 : 0;
	struct catalog_error err;

	struct catalog *c = catalog_parse(in, blen, "builds", pol, plen, "policy", &err);
	if (!c) {
		if (!memchr(err.msg, '\0', sizeof(err.msg)) ||
		    !memchr(err.file, '\0', sizeof(err.file)))
			abort();
		return 0;
	}
	for (size_t i = 0; i < catalog_size(c); i++) {
		const struct catalog_entry *e = catalog_entry_at(c, i);
		struct catalog_class cl;
		catalog_classify(c, &e->build, &cl);
		if (cl.nearest != e || !cl.exact)
			abort();
		if (i > 0 && ex_build_cmp(&catalog_entry_at(c, i - 1)->build, &e->build) >= 0)
			abort();
		/* one past this build, and one before: never crash, never a wrong branch's entry */
		struct ex_build b = e->build;
		b.v[3]++;
		catalog_classify(c, &b, &cl);
		if (cl.nearest && ex_build_cmp(&cl.nearest->build, &b) > 0)
			abort();
	}
	catalog_free(c);
	return 0;
}
