/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Process-wide settings that keep DPDK poll-mode workers free of system
 * calls in their loop, each found by tests/dpdk/test_dpdk_nosyscall.py
 * (strace on every worker thread while it carries mail).
 *
 * jemalloc: with background_thread, dirty pages are returned to the kernel
 * (madvise) by jemalloc's own threads rather than by whichever thread
 * happened to free memory.  The option is read before the first
 * allocation, so it has to be this global.
 *
 * getpid: OpenSSL 3's random generator asks for the pid on every call, to
 * notice a fork, and glibc's getpid is a real system call, so each TLS
 * handshake on a worker made dozens.  This definition takes precedence for
 * every library tesgate links; the pid is read once and read again in a
 * forked child, so fork detection still works.
 */
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

const char *malloc_conf = "background_thread:true";

static pid_t cached_pid;

pid_t getpid(void)
{
	pid_t p = __atomic_load_n(&cached_pid, __ATOMIC_RELAXED);
	if (!p) {
		p = (pid_t)syscall(SYS_getpid);
		__atomic_store_n(&cached_pid, p, __ATOMIC_RELAXED);
	}
	return p;
}

static void forked_child(void)
{
	__atomic_store_n(&cached_pid, 0, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void pid_cache_init(void)
{
	pthread_atfork(NULL, NULL, forked_child);
}
