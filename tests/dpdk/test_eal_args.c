/* SPDX-License-Identifier: BSD-3-Clause */
/* The guard in front of rte_eal_init: no EAL is started here. */
#include <stdbool.h>
#include <stdio.h>

#include "dataplane/dpdk/port.h"

static int failures;

static void expect(bool ok_expected, bool mem_expected, int argc, char *const argv[])
{
	bool mem = false;
	const char *why = NULL;
	int rc = dp_eal_args_check(argc, argv, &mem, &why);
	bool ok = rc == 0;
	if (ok != ok_expected || (ok && mem != mem_expected)) {
		failures++;
		fprintf(stderr, "FAIL:");
		for (int i = 0; i < argc; i++)
			fprintf(stderr, " %s", argv[i]);
		fprintf(stderr, " -> rc %d mem %d (%s)\n", rc, mem, why ? why : "");
	}
}

#define CASE(ok, mem, ...)                                           \
	do {                                                         \
		char *const v[] = { "prog", __VA_ARGS__ };           \
		expect(ok, mem, (int)(sizeof(v) / sizeof(v[0])), v); \
	} while (0)

int main(void)
{
	CASE(false, false, "--in-memory");
	CASE(false, false, "--vdev=net_tap0", "-b", "0000:00:03.0");
	CASE(false, false, "-a");
	CASE(false, false, "--allow=");
	CASE(true, true, "--no-pci", "--vdev=net_tap0");
	CASE(true, false, "--no-pci", "--in-memory");
	CASE(true, false, "--no-pci", "--file-prefix", "t1");
	CASE(true, false, "--no-pci", "--file-prefix=t1");
	CASE(true, true, "-a", "0000:01:00.0");
	CASE(true, false, "-a0000:01:00.0", "--in-memory");
	CASE(true, false, "--allow=0000:01:00.0", "--in-memory");
	CASE(true, false, "--allow", "0000:01:00.0", "--in-memory");
	if (failures)
		return 1;
	printf("eal args: ok\n");
	return 0;
}
