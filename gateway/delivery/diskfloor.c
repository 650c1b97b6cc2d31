/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/delivery/diskfloor.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "gateway/observe/log.h"

struct diskfloor {
	int fd;
	uint64_t floor;
	_Atomic uint64_t avail; /* as last read */
	_Atomic uint64_t taken; /* since then */
	bool low;               /* the watcher's last verdict, for the log */
	bool started;
	pthread_t thread;
	pthread_mutex_t lock; /* only for the stop wait */
	pthread_cond_t cond;
	bool stop;
	char label[256];
};

static int read_free(int fd, uint64_t *out)
{
	struct statvfs sv;

	if (fstatvfs(fd, &sv) != 0)
		return -1;
	*out = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
	return 0;
}

static uint64_t left(const struct diskfloor *df)
{
	uint64_t a = atomic_load_explicit(&df->avail, memory_order_relaxed);
	uint64_t t = atomic_load_explicit(&df->taken, memory_order_relaxed);

	return a > t ? a - t : 0;
}

static void check(struct diskfloor *df)
{
	uint64_t f;

	if (read_free(df->fd, &f) != 0) {
		log_msg(LOG_WARN, "%s: cannot read the free space: %s", df->label, strerror(errno));
		return;
	}
	atomic_store_explicit(&df->avail, f, memory_order_relaxed);
	atomic_store_explicit(&df->taken, 0, memory_order_relaxed);
	bool low = f < df->floor;
	if (low != df->low)
		log_msg(low ? LOG_ERROR : LOG_INFO,
			low ? "%s: free space %llu octets is below the floor of %llu "
			      "(spool_min_free): new messages get 452 4.3.1"
			    : "%s: free space %llu octets is above the floor of %llu again: "
			      "taking messages",
			df->label, (unsigned long long)f, (unsigned long long)df->floor);
	df->low = low;
}

static void *watch(void *arg)
{
	struct diskfloor *df = arg;

	pthread_mutex_lock(&df->lock);
	while (!df->stop) {
		struct timespec ts;

		pthread_mutex_unlock(&df->lock);
		check(df);
		pthread_mutex_lock(&df->lock);
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += DISKFLOOR_PERIOD_MS * 1000000L;
		ts.tv_sec += ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		while (!df->stop && pthread_cond_timedwait(&df->cond, &df->lock, &ts) == 0)
			;
	}
	pthread_mutex_unlock(&df->lock);
	return NULL;
}

struct diskfloor *diskfloor_new(int dirfd, uint64_t floor, const char *label, char *err,
				size_t errlen)
{
	struct diskfloor *df = calloc(1, sizeof(*df));
	pthread_condattr_t ca;
	uint64_t f;
	int e;

	if (!df) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	df->floor = floor;
	snprintf(df->label, sizeof(df->label), "%s", label);
	df->fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
	if (df->fd < 0 || read_free(df->fd, &f) != 0) {
		snprintf(err, errlen, "%s: cannot read the free space: %s", label, strerror(errno));
		if (df->fd >= 0)
			close(df->fd);
		free(df);
		return NULL;
	}
	atomic_store(&df->avail, f);
	df->low = f < floor;
	if (df->low)
		log_msg(LOG_ERROR,
			"%s: free space %llu octets is below the floor of %llu (spool_min_free): "
			"new messages get 452 4.3.1 until space is freed",
			label, (unsigned long long)f, (unsigned long long)floor);
	pthread_mutex_init(&df->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&df->cond, &ca);
	pthread_condattr_destroy(&ca);
	e = pthread_create(&df->thread, NULL, watch, df);
	if (e) {
		snprintf(err, errlen, "%s: cannot start the free-space watcher: %s", label,
			 strerror(e));
		diskfloor_free(df);
		return NULL;
	}
	df->started = true;
	pthread_setname_np(df->thread, "diskfloor");
	return df;
}

void diskfloor_free(struct diskfloor *df)
{
	if (!df)
		return;
	if (df->started) {
		pthread_mutex_lock(&df->lock);
		df->stop = true;
		pthread_cond_broadcast(&df->cond);
		pthread_mutex_unlock(&df->lock);
		pthread_join(df->thread, NULL);
	}
	pthread_mutex_destroy(&df->lock);
	pthread_cond_destroy(&df->cond);
	close(df->fd);
	free(df);
}

bool diskfloor_admit(const struct diskfloor *df, uint64_t n)
{
	if (!df)
		return true;
	uint64_t l = left(df);
	return l >= df->floor && l - df->floor >= n;
}

bool diskfloor_take(struct diskfloor *df, uint64_t n)
{
	if (!df)
		return true;
	/* A compare-and-swap, not an add undone on failure: the watcher may
	 * reset taken in between, and an undo would then wrap below zero. */
	uint64_t t = atomic_load_explicit(&df->taken, memory_order_relaxed);
	do {
		uint64_t a = atomic_load_explicit(&df->avail, memory_order_relaxed);
		if (t + n < t || a < t + n || a - (t + n) < df->floor)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&df->taken, &t, t + n, memory_order_relaxed,
							memory_order_relaxed));
	return true;
}

uint64_t diskfloor_avail(const struct diskfloor *df)
{
	return df ? left(df) : UINT64_MAX;
}
