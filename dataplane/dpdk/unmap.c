/* SPDX-License-Identifier: BSD-3-Clause */
#include "dataplane/dpdk/unmap.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define GUARD_SLOTS 128
#define GUARD_WAIT_MS 50

static const uint64_t *_Atomic slots[GUARD_SLOTS];
static _Thread_local bool in_worker;

int dp_unmap_guard_enter(const uint64_t *loops)
{
	in_worker = true;
	for (int i = 0; i < GUARD_SLOTS; i++) {
		const uint64_t *expect = NULL;
		if (atomic_compare_exchange_strong(&slots[i], &expect, loops))
			return i;
	}
	return -1;
}

void dp_unmap_guard_leave(int slot)
{
	if (slot >= 0 && slot < GUARD_SLOTS)
		atomic_store(&slots[slot], NULL);
	in_worker = false;
}

/* Sanitizer builds: the runtime must see every munmap itself, so the guard
 * hands the call on to the next definition (the runtime's interceptor)
 * instead of making the system call; the wait is the same as in a plain
 * build, so the memif race it closes stays closed under ASan and TSan. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TES_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TES_SANITIZED 1
#endif

#ifdef TES_SANITIZED
#include <dlfcn.h>

typedef int (*munmap_fn)(void *, size_t);

/* The runtime's munmap, found once; NULL while it is being looked up (a
 * munmap from inside dlsym then goes straight to the kernel). */
static munmap_fn next_munmap(void)
{
	static _Atomic(munmap_fn) fn;
	static _Thread_local bool resolving;
	munmap_fn f = atomic_load(&fn);

	if (f || resolving)
		return f;
	resolving = true;
	f = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
	resolving = false;
	atomic_store(&fn, f);
	return f;
}
#endif

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Every running worker has finished the iteration it was in when we
 * looked, and the one after: whatever it reads next, it read after our
 * caller's stores (the PMD's flag) were visible. */
static void wait_workers(void)
{
	const uint64_t *who[GUARD_SLOTS];
	uint64_t seen[GUARD_SLOTS];
	int slot[GUARD_SLOTS], n = 0;
	atomic_thread_fence(memory_order_seq_cst);
	for (int i = 0; i < GUARD_SLOTS; i++) {
		const uint64_t *p = atomic_load(&slots[i]);
		if (p) {
			slot[n] = i;
			who[n] = p;
			seen[n++] = __atomic_load_n(p, __ATOMIC_RELAXED);
		}
	}
	if (!n)
		return;
	uint64_t until = mono_ms() + GUARD_WAIT_MS;
	for (int i = 0; i < n;) {
		/* a worker that left its slot is out of its loop */
		bool gone = atomic_load(&slots[slot[i]]) != who[i];
		if (gone || __atomic_load_n(who[i], __ATOMIC_RELAXED) >= seen[i] + 2) {
			i++;
			continue;
		}
		if (mono_ms() > until)
			return; /* a stalled worker must not hold the caller forever */
		sched_yield();  /* the worker may share this CPU */
	}
}

/* Takes precedence over libc's for every library the program links. */
int munmap(void *addr, size_t len)
{
	if (!in_worker)
		wait_workers();
#ifdef TES_SANITIZED
	munmap_fn f = next_munmap();
	if (f)
		return f(addr, len);
#endif
	return (int)syscall(SYS_munmap, addr, len);
}
