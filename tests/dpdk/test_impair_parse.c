/* SPDX-License-Identifier: BSD-3-Clause */
/* dp_impair_parse: the --impair SPEC of tes-dpdk-echo.  No EAL. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/dpdk/impair.h"

static int failures;

static void ok(const char *spec, double loss, double reorder, double dup, double corrupt,
	       unsigned long long seed, unsigned hold, bool rx, bool tx)
{
	struct dp_impair_conf c;
	char err[128] = "x";
	int rc = dp_impair_parse(spec, &c, err, sizeof(err));
	if (rc != 0 || c.loss != loss || c.reorder != reorder || c.dup != dup ||
	    c.corrupt != corrupt || c.seed != seed || c.hold != hold || c.rx != rx || c.tx != tx ||
	    err[0] != '\0') {
		failures++;
		fprintf(stderr,
			"FAIL: '%s' -> rc %d (%s) loss %g reorder %g dup %g corrupt %g "
			"seed %llu hold %u rx %d tx %d\n",
			spec, rc, err, c.loss, c.reorder, c.dup, c.corrupt,
			(unsigned long long)c.seed, c.hold, c.rx, c.tx);
	}
}

/* Must fail, with a message that contains want. */
static void bad(const char *spec, const char *want)
{
	struct dp_impair_conf c;
	memset(&c, 0x5a, sizeof(c));
	struct dp_impair_conf before = c;
	char err[128] = "";
	int rc = dp_impair_parse(spec, &c, err, sizeof(err));
	if (rc != -1 || !strstr(err, want) || memcmp(&c, &before, sizeof(c)) != 0) {
		failures++;
		fprintf(stderr, "FAIL: '%s' -> rc %d, message '%s' (want '%s')%s\n",
			spec ? spec : "(null)", rc, err, want,
			memcmp(&c, &before, sizeof(c)) ? ", output written" : "");
	}
}

int main(void)
{
	ok("loss=0.05,reorder=0.05,dup=0.01,corrupt=0.001,seed=42", 0.05, 0.05, 0.01, 0.001, 42, 2,
	   true, true);
	ok("seed=7", 0, 0, 0, 0, 7, 2, true, true);
	ok("corrupt=1,seed=0x10", 0, 0, 0, 1, 16, 2, true, true);
	ok("dup=0.5,dir=rx,hold=8", 0, 0, 0.5, 0, 0, 8, true, false);
	ok("dir=tx,loss=0", 0, 0, 0, 0, 0, 2, false, true);
	ok("dir=both,reorder=0.25,hold=1", 0, 0.25, 0, 0, 0, 1, true, true);
	ok("seed=18446744073709551615", 0, 0, 0, 0, 18446744073709551615ull, 2, true, true);

	bad(NULL, "empty");
	bad("", "empty");
	bad("loss", "key=value");
	bad("loss=", "key=value");
	bad("=0.1", "key=value");
	bad("lose=0.1", "unknown key 'lose'");
	bad("loss=0.1,loss=0.2", "'loss' given twice");
	bad("loss=5%", "probability");
	bad("loss=5", "probability");
	bad("loss=-0.1", "probability");
	bad("loss=nan", "probability");
	bad("loss=inf", "probability");
	bad("dup=0.1x", "probability");
	bad("seed=-1", "unsigned integer");
	bad("seed=12abc", "unsigned integer");
	bad("seed=99999999999999999999999", "unsigned integer");
	bad("hold=0", "hold=0");
	bad("hold=9", "1 to 8");
	bad("dir=up", "rx, tx or both");
	bad("loss=0.6,reorder=0.4", "below 1");
	char longspec[400];
	memset(longspec, 'a', sizeof(longspec) - 1);
	longspec[sizeof(longspec) - 1] = '\0';
	bad(longspec, "longer than 256");

	/* A short error buffer is still terminated. */
	struct dp_impair_conf c;
	char small[8];
	memset(small, 'z', sizeof(small));
	if (dp_impair_parse("bogus=1", &c, small, sizeof(small)) != -1 ||
	    memchr(small, '\0', sizeof(small)) == NULL) {
		failures++;
		fprintf(stderr, "FAIL: short error buffer\n");
	}
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("impair parse: ok\n");
	return 0;
}
