/* SPDX-License-Identifier: BSD-3-Clause */
/* A worker's sighting queue (gateway/state/sightring.h): identical sightings
 * share the newest waiting slot, and with a producer and a consumer racing
 * every message is counted exactly once (also run under TSan by
 * tests/concurrency/run-tsan.sh). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/state/sightring.h"

static struct ctl_sighting sg(unsigned key)
{
	struct ctl_sighting s;

	memset(&s, 0, sizeof(s));
	s.tenant_id = 1;
	snprintf(s.fqdn, sizeof(s.fqdn), "ex%u.bear.local", key);
	s.build = (struct ex_build){ { 15, 1, 2507, 6 } };
	s.family = EX_FAMILY_2016;
	s.cls = TES_BUILD_VULNERABLE;
	return s;
}

static void identical_share_the_newest_slot(void **state)
{
	(void)state;
	struct sightring *r = calloc(1, sizeof(*r));
	struct ctl_sighting s, out;

	for (int i = 0; i < 5; i++) {
		s = sg(1);
		assert_true(sightring_push(r, &s));
	}
	s = sg(2);
	assert_true(sightring_push(r, &s));
	s = sg(1); /* not the newest: a slot of its own */
	assert_true(sightring_push(r, &s));
	s = sg(1);
	s.count = 3; /* already stands for three */
	assert_true(sightring_push(r, &s));

	assert_true(sightring_pop(r, &out));
	assert_string_equal(out.fqdn, "ex1.bear.local");
	assert_int_equal(out.count, 5);
	assert_true(sightring_pop(r, &out));
	assert_string_equal(out.fqdn, "ex2.bear.local");
	assert_int_equal(out.count, 1);
	assert_true(sightring_pop(r, &out));
	assert_int_equal(out.count, 4);
	assert_false(sightring_pop(r, &out));

	/* once taken, the next identical one is a new slot, not lost */
	s = sg(1);
	assert_true(sightring_push(r, &s));
	assert_true(sightring_pop(r, &out));
	assert_int_equal(out.count, 1);
	assert_false(sightring_pop(r, &out));
	free(r);
}

static void full_of_distinct_drops_but_identical_still_counts(void **state)
{
	(void)state;
	struct sightring *r = calloc(1, sizeof(*r));
	struct ctl_sighting s, out;

	for (unsigned i = 0; i < SIGHTRING_SIZE; i++) {
		s = sg(i);
		assert_true(sightring_push(r, &s));
	}
	s = sg(SIGHTRING_SIZE); /* a new key: no room */
	assert_false(sightring_push(r, &s));
	assert_int_equal(sightring_dropped(r), 1);
	s = sg(SIGHTRING_SIZE - 1); /* the newest's key: counted in place */
	assert_true(sightring_push(r, &s));
	assert_int_equal(sightring_dropped(r), 1);
	uint64_t total = 0;
	unsigned n = 0;
	while (sightring_pop(r, &out)) {
		total += out.count;
		n++;
	}
	assert_int_equal(n, SIGHTRING_SIZE);
	assert_int_equal(total, SIGHTRING_SIZE + 1);
	free(r);
}

struct race {
	struct sightring *r;
	uint64_t pushed, taken;
	int done;
};

static void *producer(void *arg)
{
	struct race *x = arg;
	uint32_t seed = 7;
	unsigned key = 0, run = 0;

	for (int i = 0; i < 2000000; i++) {
		if (run == 0) {
			seed = seed * 1103515245u + 12345u;
			key = (seed >> 16) % 4;
			run = 1 + (seed >> 8) % 64;
		}
		run--;
		struct ctl_sighting s = sg(key);
		if (sightring_push(x->r, &s))
			x->pushed++;
	}
	__atomic_store_n(&x->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *consumer(void *arg)
{
	struct race *x = arg;
	struct ctl_sighting out;

	for (;;) {
		int done = __atomic_load_n(&x->done, __ATOMIC_ACQUIRE);
		while (sightring_pop(x->r, &out)) {
			if (out.count == 0 || strncmp(out.fqdn, "ex", 2) != 0)
				abort(); /* a torn or uncounted slot */
			x->taken += out.count;
		}
		if (done)
			return NULL;
	}
}

static void racing_producer_and_consumer_count_every_message_once(void **state)
{
	(void)state;
	struct race x = { .r = calloc(1, sizeof(struct sightring)) };
	pthread_t p, c;

	assert_int_equal(pthread_create(&c, NULL, consumer, &x), 0);
	assert_int_equal(pthread_create(&p, NULL, producer, &x), 0);
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	/* every push that returned true is in exactly one taken count, and
	 * every false one is a drop */
	assert_int_equal(x.taken, x.pushed);
	assert_int_equal(x.pushed + sightring_dropped(x.r), 2000000);
	free(x.r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(identical_share_the_newest_slot),
		cmocka_unit_test(full_of_distinct_drops_but_identical_still_counts),
		cmocka_unit_test(racing_producer_and_consumer_count_every_message_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
