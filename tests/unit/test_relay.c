/* SPDX-License-Identifier: BSD-3-Clause */
/* The smtp relay backend (gateway/delivery/relay.c) without a backend MTA:
 * its unix socket does not exist, so every connection fails at once and
 * nothing leaves the machine.  What is left to see is the relay's own part:
 * content kept in memory up to memory_per_message and spilled to a file in
 * tmp_dir beyond it, the answer a client gets when the backend cannot be
 * reached, an aborted transaction, and its counters in the registry. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/delivery/relay.h"
#include "gateway/observe/registry.h"

struct verdict {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int calls;
	struct smtp_reply r;
};

/* A relay thread gives the verdict. */
static void done(void *arg, const struct smtp_reply *r)
{
	struct verdict *v = arg;

	pthread_mutex_lock(&v->lock);
	v->calls++;
	v->r = *r;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
}

/* Bounded: a verdict that never comes fails the test in 20 s. */
static int wait_verdict(struct verdict *v)
{
	struct timespec ts;
	int calls;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20;
	pthread_mutex_lock(&v->lock);
	while (v->calls == 0 && pthread_cond_timedwait(&v->cond, &v->lock, &ts) == 0)
		;
	calls = v->calls;
	pthread_mutex_unlock(&v->lock);
	return calls;
}

struct fixture {
	char dir[64];
	char tmp[80];
	struct relay *rl;
	struct delivery_backend be;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[512];

	strcpy(f->dir, "/tmp/tes-relay-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->tmp, sizeof(f->tmp), "%s/tmp", f->dir);
	struct relay_config rc = {
		.socket_path = "/nonexistent/tesgate-test-backend.sock",
		.helo_name = "mx.test.example",
		.tmp_dir = f->tmp,
		.threads = 1,
		.max_connections = 1,
		.max_queue = 8,
		.connect_timeout_ms = 2000,
		.command_timeout_ms = 2000,
		.data_timeout_ms = 2000,
		.idle_timeout_ms = 2000,
		.memory_per_message = 16,
		.memory_total = 1 << 20,
	};
	f->rl = relay_open(&rc, err, sizeof(err));
	assert_non_null(f->rl);
	relay_backend(f->rl, &f->be);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	relay_stop(f->rl);
	relay_close(f->rl);
	rmdir(f->tmp);
	rmdir(f->dir);
	free(f);
	return 0;
}

static struct relay_stats submit(struct fixture *f, size_t octets, struct verdict *v)
{
	struct smtp_envelope env;
	struct relay_stats rs;
	char *rcpt[1] = { (char *)"b@example.net" };
	uint8_t body[64];

	memset(&env, 0, sizeof(env));
	strcpy(env.mail_from, "a@example.org");
	env.nrcpt = 1;
	env.rcpt = rcpt;
	memset(body, 'x', sizeof(body));
	struct delivery_msg *m = f->be.open(f->be.be, 0);
	assert_non_null(m);
	for (size_t n = 0; n < octets; n += 8)
		assert_int_equal(f->be.write(m, body, octets - n < 8 ? octets - n : 8), 0);
	env.content_bytes = octets;
	f->be.submit(m, &env, "198.18.0.1:25", done, v);
	assert_int_equal(wait_verdict(v), 1);
	relay_stats(f->rl, &rs);
	return rs;
}

static void test_unreachable_backend_451(void **state)
{
	struct fixture *f = *state;
	struct verdict v = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, { 0 } };

	assert_string_equal(f->be.name, "smtp");
	struct relay_stats rs = submit(f, 10, &v);
	assert_int_equal(v.r.code, 451);
	assert_string_equal(v.r.enh, "4.4.1");
	assert_non_null(strstr(v.r.text, "Backend not reachable (connect: No such file"));
	assert_int_equal(rs.spilled, 0); /* 10 octets: in memory */
	assert_int_equal(rs.relayed, 0);
}

static void test_spill_beyond_memory_per_message(void **state)
{
	struct fixture *f = *state;
	struct verdict v = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, { 0 } };

	struct relay_stats rs = submit(f, 40, &v);
	assert_int_equal(v.r.code, 451);
	assert_int_equal(rs.spilled, 1);
}

static void test_abort_and_exports(void **state)
{
	struct fixture *f = *state;
	struct obs_registry *r = obs_new();
	uint64_t v = 99;

	struct delivery_msg *m = f->be.open(f->be.be, 0);
	assert_non_null(m);
	assert_int_equal(f->be.write(m, (const uint8_t *)"0123456789abcdefXYZ", 19), 0);
	f->be.abort(m); /* spilled (19 > 16), then dropped */
	assert_int_equal(relay_export(f->rl, r), 0);
	assert_true(obs_value(r, "relay", "aborted", &v));
	assert_int_equal(v, 1);
	assert_true(obs_value(r, "relay", "spilled", &v));
	assert_int_equal(v, 1);
	assert_true(obs_value(r, "relay", "relayed", &v));
	assert_int_equal(v, 0);
	obs_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unreachable_backend_451, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spill_beyond_memory_per_message, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_abort_and_exports, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
