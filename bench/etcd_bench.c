/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * etcd_bench: what libtesetcd costs against a real etcd cluster
 * (bench/run-etcd.sh starts one and calls this; docs/benchmarks.md).
 *
 *   etcd_bench --put URL [--watch URL] [--n N] [--seconds S] [--no-kv]
 *
 * With one client pinned to --put (one endpoint, so no failover hides in
 * the figures), in this order:
 *   1. N create-if-absent transactions on new keys (the success branch);
 *   2. N plain puts;
 *   3. create-if-absent transactions back to back for S seconds: the rate
 *      one client sustains;
 *   4. with --watch: N puts through --put, each timed from just before the
 *      call to the moment a watch attached to --watch (run in a thread of
 *      its own with etcd_watch_wait) sees it; the next put waits for it.
 * Latencies: nearest-rank p50 and p99, in milliseconds.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "etcd.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
	size_t rank = (size_t)((p / 100.0) * (double)n + 0.999999);
	if (rank < 1)
		rank = 1;
	return v[rank - 1];
}

static void report(const char *what, double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	printf("%-44s n=%zu  p50=%.2f ms  p99=%.2f ms  max=%.2f ms\n", what, n, pct(v, n, 50),
	       pct(v, n, 99), v[n - 1]);
}

static struct etcd_client *client(const char *url)
{
	char err[512];
	const char *eps[] = { url };
	struct etcd_config cfg = { .endpoints = eps, .nendpoints = 1 };
	struct etcd_client *c = etcd_client_new(&cfg, err, sizeof(err));
	if (!c) {
		fprintf(stderr, "etcd_bench: %s\n", err);
		exit(1);
	}
	return c;
}

/* --- the watch, in its own thread ---------------------------------------------- */

struct watcher {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int64_t last_rev; /* the newest event's revision */
	double last_at;   /* when it came */
	bool created;
	atomic_bool stop;
	struct etcd_watch *w;
};

static void on_update(const struct etcd_watch_update *u, void *ctx)
{
	struct watcher *wt = ctx;
	double t = now_ms();
	pthread_mutex_lock(&wt->mu);
	if (u->kind == ETCD_WATCH_CREATED)
		wt->created = true;
	if (u->kind == ETCD_WATCH_EVENTS) {
		/* One put at a time: the newest event is the one the put
		 * thread waits for, whether or not its put has returned. */
		wt->last_rev = u->events[u->nevents - 1].kv.mod_revision;
		wt->last_at = t;
	}
	if (u->kind == ETCD_WATCH_DISCONNECTED || u->kind == ETCD_WATCH_FAILED ||
	    u->kind == ETCD_WATCH_COMPACTED)
		fprintf(stderr, "etcd_bench: watch: %s\n", u->message ? u->message : "compacted");
	pthread_cond_broadcast(&wt->cv);
	pthread_mutex_unlock(&wt->mu);
}

static void *watch_thread(void *arg)
{
	struct watcher *wt = arg;
	char err[512];
	while (!atomic_load(&wt->stop)) {
		if (etcd_watch_wait(wt->w, 100, err, sizeof(err)) < 0) {
			fprintf(stderr, "etcd_bench: %s\n", err);
			exit(1);
		}
	}
	return NULL;
}

static void put_to_watch(const char *put_url, const char *watch_url, const char *prefix, size_t n)
{
	struct etcd_client *pc = client(put_url), *wc = client(watch_url);
	struct watcher wt = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };
	char err[512], key[128];
	snprintf(key, sizeof(key), "%s/w/", prefix);
	struct etcd_watch_opts o = { .key = key, .key_len = strlen(key), .prefix = true };
	wt.w = etcd_watch_new(wc, &o, on_update, &wt, err, sizeof(err));
	if (!wt.w) {
		fprintf(stderr, "etcd_bench: %s\n", err);
		exit(1);
	}
	pthread_t th;
	pthread_create(&th, NULL, watch_thread, &wt);
	pthread_mutex_lock(&wt.mu);
	while (!wt.created)
		pthread_cond_wait(&wt.cv, &wt.mu);
	pthread_mutex_unlock(&wt.mu);

	double *lat = calloc(n, sizeof(*lat));
	for (size_t i = 0; i < n; i++) {
		struct etcd_put_result r;
		char k[160];
		snprintf(k, sizeof(k), "%s%zu", key, i);
		double t0 = now_ms();
		if (etcd_put(pc, k, strlen(k), "x", 1, NULL, &r, err, sizeof(err)) != 0) {
			fprintf(stderr, "etcd_bench: %s\n", err);
			exit(1);
		}
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 10;
		pthread_mutex_lock(&wt.mu);
		while (wt.last_rev < r.header.revision) {
			if (pthread_cond_timedwait(&wt.cv, &wt.mu, &until) == ETIMEDOUT) {
				fprintf(stderr,
					"etcd_bench: no watch event for revision %lld in 10 s\n",
					(long long)r.header.revision);
				exit(1);
			}
		}
		lat[i] = wt.last_at - t0;
		pthread_mutex_unlock(&wt.mu);
		etcd_put_result_free(&r);
	}
	atomic_store(&wt.stop, true);
	pthread_join(th, NULL);
	char what[200];
	snprintf(what, sizeof(what), "put -> watch event (put %s, watch %s)", put_url, watch_url);
	report(what, lat, n);
	free(lat);
	etcd_watch_free(wt.w);
	etcd_client_free(pc);
	etcd_client_free(wc);
}

int main(int argc, char **argv)
{
	const char *put_url = NULL, *watch_url = NULL;
	size_t n = 1000;
	double seconds = 5;
	bool kv = true;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--put") == 0 && i + 1 < argc)
			put_url = argv[++i];
		else if (strcmp(argv[i], "--watch") == 0 && i + 1 < argc)
			watch_url = argv[++i];
		else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc)
			n = strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (strcmp(argv[i], "--no-kv") == 0)
			kv = false;
		else {
			fprintf(stderr, "usage: etcd_bench --put URL [--watch URL] [--n N] "
					"[--seconds S] [--no-kv]\n");
			return 2;
		}
	}
	if (!put_url || n == 0) {
		fprintf(stderr, "etcd_bench: --put URL is required\n");
		return 2;
	}
	char prefix[64], err[512], k[160];
	snprintf(prefix, sizeof(prefix), "/bench/%d", (int)getpid());
	double *lat = calloc(n, sizeof(*lat));
	if (kv) {
		struct etcd_client *c = client(put_url);
		for (size_t i = 0; i < n; i++) {
			snprintf(k, sizeof(k), "%s/c/%zu", prefix, i);
			double t0 = now_ms();
			int rc = etcd_create(c, k, strlen(k), "first-detection", 15, 0, NULL, NULL,
					     err, sizeof(err));
			lat[i] = now_ms() - t0;
			if (rc != 1) {
				fprintf(stderr, "etcd_bench: create %s: %s\n", k,
					rc < 0 ? err : "existed");
				return 1;
			}
		}
		char what[200];
		snprintf(what, sizeof(what), "create-if-absent txn, new key (%s)", put_url);
		report(what, lat, n);
		for (size_t i = 0; i < n; i++) {
			snprintf(k, sizeof(k), "%s/p/%zu", prefix, i);
			double t0 = now_ms();
			if (etcd_put(c, k, strlen(k), "last-seen", 9, NULL, NULL, err,
				     sizeof(err)) != 0) {
				fprintf(stderr, "etcd_bench: %s\n", err);
				return 1;
			}
			lat[i] = now_ms() - t0;
		}
		snprintf(what, sizeof(what), "put (%s)", put_url);
		report(what, lat, n);
		size_t done = 0;
		double t0 = now_ms(), end = t0 + seconds * 1e3, t;
		while ((t = now_ms()) < end) {
			snprintf(k, sizeof(k), "%s/r/%zu", prefix, done);
			if (etcd_create(c, k, strlen(k), "first-detection", 15, 0, NULL, NULL, err,
					sizeof(err)) != 1) {
				fprintf(stderr, "etcd_bench: %s\n", err);
				return 1;
			}
			done++;
		}
		printf("%-44s %zu in %.2f s = %.0f txn/s\n",
		       "create-if-absent txn rate, one client", done, (t - t0) / 1e3,
		       (double)done / ((t - t0) / 1e3));
		etcd_client_free(c);
	}
	free(lat);
	if (watch_url)
		put_to_watch(put_url, watch_url, prefix, n);
	return 0;
}
