/* SPDX-License-Identifier: BSD-3-Clause */
/* The free-space floor (gateway/delivery/diskfloor.c) on the test's own
 * temporary directory.  The free space of a real file system moves while
 * the test runs, so every check is one that holds whatever it does: a floor
 * of 0 admits, a floor no disk has refuses, what is refused takes nothing,
 * and no floor at all admits everything. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/delivery/diskfloor.h"

static int dirfd_tmp(char *path)
{
	strcpy(path, "/tmp/tes-diskfloor-XXXXXX");
	assert_non_null(mkdtemp(path));
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static void test_floor_zero_admits(void **state)
{
	char path[64], err[256];
	int fd = dirfd_tmp(path);
	(void)state;

	struct diskfloor *df = diskfloor_new(fd, 0, "test", err, sizeof(err));
	close(fd); /* duplicated inside */
	assert_non_null(df);
	assert_true(diskfloor_avail(df) > 0);
	assert_true(diskfloor_admit(df, 0));
	assert_true(diskfloor_take(df, 1));
	/* more than the whole disk: refused, and nothing taken */
	assert_false(diskfloor_admit(df, UINT64_MAX / 4));
	assert_false(diskfloor_take(df, UINT64_MAX / 4));
	assert_false(diskfloor_take(df, UINT64_MAX)); /* no wrap-around */
	assert_true(diskfloor_admit(df, 0));
	diskfloor_free(df);
	rmdir(path);
}

static void test_floor_above_the_disk_refuses(void **state)
{
	char path[64], err[256];
	int fd = dirfd_tmp(path);
	(void)state;

	struct diskfloor *df = diskfloor_new(fd, UINT64_MAX / 2, "test", err, sizeof(err));
	close(fd);
	assert_non_null(df);
	assert_false(diskfloor_admit(df, 0));
	assert_false(diskfloor_take(df, 1));
	diskfloor_free(df);
	rmdir(path);
}

static void test_no_floor_and_bad_directory(void **state)
{
	char err[256] = "";
	(void)state;

	assert_true(diskfloor_admit(NULL, UINT64_MAX));
	assert_true(diskfloor_take(NULL, UINT64_MAX));
	assert_int_equal(diskfloor_avail(NULL), UINT64_MAX);
	assert_null(diskfloor_new(-1, 0, "spool_dir", err, sizeof(err)));
	assert_non_null(strstr(err, "spool_dir: cannot read the free space"));
	diskfloor_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_floor_zero_admits),
		cmocka_unit_test(test_floor_above_the_disk_refuses),
		cmocka_unit_test(test_no_floor_and_bad_directory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
