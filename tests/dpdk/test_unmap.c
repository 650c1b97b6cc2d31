/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * dataplane/dpdk/unmap.c without an EAL: the guard slots, and the munmap()
 * it defines, which waits until every registered worker has begun a new
 * loop iteration, at most 50 ms, before unmapping.
 *
 * The wait is made observable and exact by defining sched_yield() and
 * clock_gettime() here, which unmap.c's calls reach (the executable's
 * definitions come first): during the munmap under test, each yield is
 * counted and either moves the worker's loop counter on (a worker at work)
 * or the monotonic clock by 10 ms (a worker stalled); the clock stands
 * still otherwise.  Outside that call both are the kernel's.
 *
 * In sanitizer builds unmap.c hands the call on to the runtime's munmap
 * after the same wait; every case runs there too.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/dpdk/unmap.h"

static int fails;

#define CHECK(cond)                                                                     \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
			fails++;                                                        \
		}                                                                       \
	} while (0)

/* --- the slots --- */

/* Every slot taken, the next enter gets -1 (that worker runs unguarded);
 * a slot given back is the one the next enter gets. */
static void *slots_thread(void *arg)
{
	(void)arg;
	static uint64_t loops[4096];
	static int slot[4096];
	int n = 0;
	while (n < 4096 && (slot[n] = dp_unmap_guard_enter(&loops[n])) >= 0)
		n++;
	CHECK(n > 0 && n < 4096);
	for (int i = 0; i < n; i++)
		CHECK(slot[i] == i);
	CHECK(dp_unmap_guard_enter(&loops[n]) == -1);
	dp_unmap_guard_leave(slot[n / 2]);
	CHECK(dp_unmap_guard_enter(&loops[n]) == slot[n / 2]);
	CHECK(dp_unmap_guard_enter(&loops[n]) == -1);
	for (int i = 0; i < n; i++)
		dp_unmap_guard_leave(slot[i]);
	dp_unmap_guard_leave(-1); /* a worker that ran unguarded */
	printf("slots: %d, reused after a leave\n", n);
	return NULL;
}

/* --- the clock and the yields that the munmap under test sees --- */

enum hook { HOOK_WORKER_RUNS, HOOK_WORKER_STALLED };

static _Thread_local bool in_call; /* this thread is in the munmap under test */
static enum hook hook;
static uint64_t *hook_loops; /* the worker's counter */
static uint64_t fake_ns = 1000000000ull;
static int yields;

/* glibc declares munmap a leaf function (it never calls back into this
 * file), so a direct call would let the compiler drop the in_call store
 * before it and keep yields in a register across it.  unmap.c's munmap
 * does call back, into sched_yield and clock_gettime below: call it
 * through a pointer the compiler cannot see through. */
static int (*volatile munmap_call)(void *, size_t) = munmap;

int sched_yield(void)
{
	if (!in_call)
		return (int)syscall(SYS_sched_yield);
	yields++;
	if (hook == HOOK_WORKER_RUNS)
		__atomic_store_n(hook_loops, __atomic_load_n(hook_loops, __ATOMIC_RELAXED) + 1,
				 __ATOMIC_RELAXED);
	else
		fake_ns += 10000000ull;
	return 0;
}

int clock_gettime(clockid_t clk, struct timespec *ts)
{
	if (!in_call || clk != CLOCK_MONOTONIC)
		return (int)syscall(SYS_clock_gettime, clk, ts);
	ts->tv_sec = (time_t)(fake_ns / 1000000000ull);
	ts->tv_nsec = (long)(fake_ns % 1000000000ull);
	return 0;
}

/* --- a worker thread, registered as the poll-mode workers are --- */

struct worker {
	pthread_t tid;
	uint64_t loops;
	int slot;
	sem_t ready, go, done;
	bool own_munmap; /* it unmaps a page itself, then waits to leave */
	int own_yields, own_rc;
	void *own_page;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->slot = dp_unmap_guard_enter(&w->loops);
	if (w->own_munmap) {
		/* A worker's own calls go straight through: waiting for
		 * itself could only time out. */
		hook = HOOK_WORKER_STALLED;
		yields = 0;
		in_call = true;
		w->own_rc = munmap_call(w->own_page, (size_t)sysconf(_SC_PAGESIZE));
		in_call = false;
		w->own_yields = yields;
	}
	sem_post(&w->ready);
	sem_wait(&w->go);
	dp_unmap_guard_leave(w->slot);
	sem_post(&w->done);
	return NULL;
}

static void worker_start(struct worker *w)
{
	sem_init(&w->ready, 0, 0);
	sem_init(&w->go, 0, 0);
	sem_init(&w->done, 0, 0);
	if (pthread_create(&w->tid, NULL, worker_main, w) != 0)
		abort();
	sem_wait(&w->ready);
}

static void worker_stop(struct worker *w)
{
	sem_post(&w->go);
	pthread_join(w->tid, NULL);
}

static void *page_new(void)
{
	void *p = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		abort();
	return p;
}

/* The page is no longer mapped: msync on it fails with ENOMEM. */
static bool page_gone(void *p)
{
	return msync(p, (size_t)sysconf(_SC_PAGESIZE), MS_ASYNC) == -1 && errno == ENOMEM;
}

/* munmap from this (non-worker) thread under the given hook: its result,
 * and how many yields it took. */
static int unmap_under(enum hook h, uint64_t *loops, void *page, int *nyields)
{
	hook = h;
	hook_loops = loops;
	yields = 0;
	in_call = true;
	int rc = munmap_call(page, (size_t)sysconf(_SC_PAGESIZE));
	in_call = false;
	*nyields = yields;
	return rc;
}

static void test_waits_for_worker(void)
{
	struct worker w = { 0 };
	worker_start(&w);
	CHECK(w.slot >= 0);
	void *page = page_new();
	int n;
	/* The worker's counter moves one iteration per yield: the call
	 * returns once it has moved two (the iteration the worker was in,
	 * and a whole one after). */
	CHECK(unmap_under(HOOK_WORKER_RUNS, &w.loops, page, &n) == 0);
	CHECK(n == 2);
	CHECK(w.loops == 2);
	CHECK(page_gone(page));
	worker_stop(&w);
	printf("a running worker: unmapped after %d iterations of it\n", n);
}

static void test_stalled_worker(void)
{
	struct worker w = { 0 };
	worker_start(&w);
	void *page = page_new();
	int n;
	/* The worker never moves: the caller gives up at 50 ms and unmaps
	 * (six yields of 10 ms: the deadline is passed, not reached). */
	CHECK(unmap_under(HOOK_WORKER_STALLED, &w.loops, page, &n) == 0);
	CHECK(n == 6);
	CHECK(w.loops == 0);
	CHECK(page_gone(page));
	worker_stop(&w);
	printf("a stalled worker: unmapped after %d yields (10 ms each)\n", n);
}

static void test_worker_left(void)
{
	struct worker w = { 0 };
	worker_start(&w);
	worker_stop(&w); /* it left its slot: out of its loop */
	void *page = page_new();
	int n;
	CHECK(unmap_under(HOOK_WORKER_STALLED, &w.loops, page, &n) == 0);
	CHECK(n == 0);
	CHECK(page_gone(page));
}

static void test_no_worker(void)
{
	void *page = page_new();
	int n;
	CHECK(unmap_under(HOOK_WORKER_STALLED, NULL, page, &n) == 0);
	CHECK(n == 0);
	CHECK(page_gone(page));
}

static void test_workers_own_call(void)
{
	struct worker w = { 0 };
	w.own_munmap = true;
	w.own_page = page_new();
	worker_start(&w);
	CHECK(w.own_rc == 0);
	CHECK(w.own_yields == 0);
	CHECK(page_gone(w.own_page));
	worker_stop(&w);
}

int main(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, slots_thread, NULL) != 0)
		abort();
	pthread_join(t, NULL);
	test_waits_for_worker();
	test_stalled_worker();
	test_worker_left();
	test_no_worker();
	test_workers_own_call();
	if (fails) {
		fprintf(stderr, "%d checks failed\n", fails);
		return 1;
	}
	printf("unmap guard: all checks passed\n");
	return 0;
}
