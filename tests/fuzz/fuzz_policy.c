/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the policy file parser.  A policy that parses must
 * validate, format back to text that parses to an equal policy, and give a
 * verdict for any time without crashing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "enforce/decide.h"
#include "enforce/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tes_policy p, q;
	struct tes_policy_error err;
	static char text[65536];

	if (tes_policy_parse((const char *)data, size, "fuzz", &p, &err) != 0)
		return 0;
	if (tes_policy_validate(&p, &err) != 0)
		abort();
	int n = tes_policy_format(&p, text, sizeof(text));
	if (n < 0 || (size_t)n >= sizeof(text))
		abort();
	if (tes_policy_parse(text, (size_t)n, "formatted", &q, &err) != 0 ||
	    !tes_policy_equal(&p, &q))
		abort();

	struct tes_server s;
	struct tes_verdict v;
	struct tes_detection d = { .cls = TES_BUILD_VULNERABLE, .family = EX_FAMILY_2013 };
	memset(&s, 0, sizeof(s));
	s.first_detected = 1700000000;
	for (int64_t t = 0; t < 130 * TES_DAY_SECONDS; t += 7 * 3600 + 61) {
		tes_decide(&s, NULL, &p, s.first_detected + t, NULL, &d, true, &v);
		if (v.action != TES_ACCEPT && (v.code != 450 && v.code != 550))
			abort();
	}
	return 0;
}
