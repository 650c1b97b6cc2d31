/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * gateway/delivery/opool.c: objects come back to their owner and are used again,
 * the idle count stays within keep, and objects returned by several
 * threads at once while the owner takes them are neither lost nor handed
 * out twice (run-tsan.sh runs this under ThreadSanitizer too).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/delivery/opool.h"

struct obj {
	struct opool_node link; /* used by the pool while the object is idle */
	uint64_t owner_seq;     /* written by the owner, checked by the returner */
	uint64_t check;
	uint64_t out; /* OUT while held by someone other than the pool */
};

static void reuse_and_keep(void **state)
{
	(void)state;
	struct opool p;
	assert_int_equal(opool_init(&p, sizeof(struct obj), 4, 2), 0);
	assert_int_equal(atomic_load(&p.idle), 2);
	struct obj *a = opool_get(&p), *b = opool_get(&p);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(p.misses, 0);
	struct obj *c = opool_get(&p); /* the prefill is used up */
	assert_non_null(c);
	assert_int_equal(p.misses, 1);
	opool_put_local(&p, a);
	assert_ptr_equal(opool_get(&p), a); /* the freshest comes back first */
	opool_put(&p, a);                   /* the return stack */
	assert_ptr_equal(opool_get(&p), a);
	assert_int_equal(p.misses, 1);

	/* six objects returned into a pool that keeps four: two are freed
	 * (ASan's leak check would see them otherwise) */
	struct obj *more[3];
	for (int i = 0; i < 3; i++)
		more[i] = opool_get(&p);
	opool_put(&p, a);
	opool_put_local(&p, b);
	opool_put(&p, c);
	for (int i = 0; i < 3; i++)
		opool_put(&p, more[i]);
	assert_int_equal(atomic_load(&p.idle), 4);
	opool_put(&p, NULL);
	opool_fini(&p);
	assert_int_equal(atomic_load(&p.idle), 0);
}

/* The owner hands objects to returner threads through small mutex queues
 * (the queues are not under test) and the returners give them back with
 * opool_put while the owner goes on taking. */
#define OUT 0x6f75742d6f75742dull /* fresh memory holds anything but this */
#define RETURNERS 3
#define QCAP 64
#define ROUNDS 200000

struct queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct obj *item[QCAP];
	unsigned head, len;
	bool done;
};

struct returner {
	pthread_t t;
	struct queue q;
	struct opool *pool;
	uint64_t returned, bad;
};

static void *returner_main(void *arg)
{
	struct returner *r = arg;
	for (;;) {
		pthread_mutex_lock(&r->q.lock);
		while (!r->q.len && !r->q.done)
			pthread_cond_wait(&r->q.cond, &r->q.lock);
		if (!r->q.len) {
			pthread_mutex_unlock(&r->q.lock);
			return NULL;
		}
		struct obj *o = r->q.item[r->q.head];
		r->q.head = (r->q.head + 1) % QCAP;
		r->q.len--;
		pthread_cond_broadcast(&r->q.cond);
		pthread_mutex_unlock(&r->q.lock);
		if (o->out != OUT || o->check != ~o->owner_seq)
			r->bad++;
		o->out = 0;
		opool_put(r->pool, o);
		r->returned++;
	}
}

static void returned_by_many(void **state)
{
	(void)state;
	struct opool p;
	unsigned keep = RETURNERS * QCAP + 16;
	assert_int_equal(opool_init(&p, sizeof(struct obj), keep, 8), 0);
	struct returner r[RETURNERS];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < RETURNERS; i++) {
		pthread_mutex_init(&r[i].q.lock, NULL);
		pthread_cond_init(&r[i].q.cond, NULL);
		r[i].pool = &p;
		assert_int_equal(pthread_create(&r[i].t, NULL, returner_main, &r[i]), 0);
	}
	uint64_t handed = 0, dup = 0;
	for (uint64_t seq = 1; seq <= ROUNDS; seq++) {
		struct obj *o = opool_get(&p);
		assert_non_null(o);
		if (o->out == OUT)
			dup++; /* an object someone else still holds */
		o->out = OUT;
		o->owner_seq = seq;
		o->check = ~seq;
		struct returner *to = &r[seq % RETURNERS];
		pthread_mutex_lock(&to->q.lock);
		while (to->q.len == QCAP)
			pthread_cond_wait(&to->q.cond, &to->q.lock);
		to->q.item[(to->q.head + to->q.len) % QCAP] = o;
		to->q.len++;
		pthread_cond_broadcast(&to->q.cond);
		pthread_mutex_unlock(&to->q.lock);
		handed++;
	}
	uint64_t returned = 0, bad = 0;
	for (int i = 0; i < RETURNERS; i++) {
		pthread_mutex_lock(&r[i].q.lock);
		r[i].q.done = true;
		pthread_cond_broadcast(&r[i].q.cond);
		pthread_mutex_unlock(&r[i].q.lock);
		pthread_join(r[i].t, NULL);
		returned += r[i].returned;
		bad += r[i].bad;
		pthread_mutex_destroy(&r[i].q.lock);
		pthread_cond_destroy(&r[i].q.cond);
	}
	assert_int_equal(returned, handed);
	assert_int_equal(bad, 0);
	assert_int_equal(dup, 0);
	/* At most RETURNERS * QCAP objects are out at once, plus one each in
	 * a returner's hands: the pool must not have needed more than that. */
	assert_true(p.misses + 8 <= RETURNERS * (QCAP + 1) + 1);
	/* everything came back, and keep was big enough to hold it all */
	assert_int_equal(atomic_load(&p.idle), p.misses + 8);
	opool_fini(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reuse_and_keep),
		cmocka_unit_test(returned_by_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
