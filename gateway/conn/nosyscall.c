/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Process-wide settings that keep DPDK poll-mode workers free of system
 * calls in their loop, each found by tests/dpdk/test_dpdk_nosyscall.py
 * (strace on every worker thread while it carries mail).
 *
 * jemalloc: each worker allocates from an arena of its own that never
 * returns pages to the kernel (nosyscall_worker_arena).  Returning them is
 * an madvise; with background_thread on, jemalloc's threads would do it,
 * but a worker whose free makes its arena dirty while that thread sleeps
 * wakes it (a futex), and an arena shared with other threads is a lock a
 * worker can find held (another futex).  Both were seen.  So no
 * background threads (the other threads purge their own arenas, which is
 * a system call they may make), and a worker's arena keeps its peak: the
 * memory of its connections, bounded by the connection limits, as its
 * mbuf pools are.
 *
 * getpid: OpenSSL 3's random generator asks for the pid on every call, to
 * notice a fork, and glibc's getpid is a real system call, so each TLS
 * handshake on a worker made dozens.  This definition takes precedence for
 * every library tesgate links; the pid is read once and read again in a
 * forked child, so fork detection still works.
 */
#include "gateway/conn/nosyscall.h"

#include <jemalloc/jemalloc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* Read before the first allocation, so it has to be this global. */
const char *malloc_conf = "background_thread:false";

int nosyscall_worker_arena(char *err, size_t errlen)
{
	unsigned idx;
	size_t sz = sizeof(idx);
	int e = mallctl("arenas.create", &idx, &sz, NULL, 0);
	if (e) {
		snprintf(err, errlen, "jemalloc arenas.create: %s", strerror(e));
		return -1;
	}
	ssize_t never = -1;
	char name[64];
	const char *decay[] = { "dirty_decay_ms", "muzzy_decay_ms" };
	for (int i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "arena.%u.%s", idx, decay[i]);
		e = mallctl(name, NULL, NULL, &never, sizeof(never));
		if (e) {
			snprintf(err, errlen, "jemalloc %s: %s", name, strerror(e));
			return -1;
		}
	}
	e = mallctl("thread.arena", NULL, NULL, &idx, sizeof(idx));
	if (e) {
		snprintf(err, errlen, "jemalloc thread.arena: %s", strerror(e));
		return -1;
	}
	/* what the thread cached so far belongs to the arena it leaves */
	mallctl("thread.tcache.flush", NULL, NULL, NULL, 0);
	return 0;
}

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
