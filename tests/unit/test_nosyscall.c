/* SPDX-License-Identifier: BSD-3-Clause */
/* What keeps a DPDK worker free of system calls (gateway/conn/nosyscall.c):
 * the cached pid is the process's own, and a forked child gets its own, not
 * its parent's (OpenSSL compares them to notice a fork); a thread can move
 * to an arena of its own and still allocate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/conn/nosyscall.h"

static void test_pid_cache(void **state)
{
	(void)state;

	pid_t real = (pid_t)syscall(SYS_getpid);
	assert_int_equal(getpid(), real);
	assert_int_equal(getpid(), real); /* from the cache now */
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		/* the child's own pid, not the parent's cached one */
		pid_t mine = (pid_t)syscall(SYS_getpid);
		_exit(getpid() == mine && mine != real ? 0 : 1);
	}
	int status = 0;
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(getpid(), real);
}

static void test_worker_arena(void **state)
{
	char err[160] = "";
	(void)state;

	assert_int_equal(nosyscall_worker_arena(err, sizeof(err)), 0);
	void *p = malloc(1000);
	assert_non_null(p);
	memset(p, 1, 1000);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pid_cache),
		cmocka_unit_test(test_worker_arena),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
