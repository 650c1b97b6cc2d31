/* SPDX-License-Identifier: BSD-3-Clause */
/* Choosing and opening the delivery backend (gateway/delivery/backends.c)
 * from its settings: discard, the spool in a temporary directory (a message
 * stored and counted in the registry), the smtp relay to a backend that is
 * not there (opened all the same, SMTPUTF8 not offered), and a free-space
 * floor no disk has, which leaves nothing open. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/delivery/backends.h"
#include "gateway/observe/registry.h"

static const struct backends_env env = {
	.hostname = "mx.test.example",
	.workers = 1,
	.polling = false,
	.max_message_size = 1 << 20,
};

static void settings(struct delivery_settings *s, const char *backend, const char *dir)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->backend, sizeof(s->backend), "%s", backend);
	snprintf(s->spool_dir, sizeof(s->spool_dir), "%s", dir);
	s->threads = 1;
	s->relay.port = 25;
	s->relay.threads = 1;
	s->relay.max_connections = 1;
	s->relay.max_queue = 4;
	s->relay.connect_timeout = s->relay.command_timeout = s->relay.data_timeout = 5;
	s->relay.idle_timeout = 5;
	s->relay.memory_per_message = 1024;
	s->relay.memory_total = 1 << 20;
}

static char *tmpdir(char *buf)
{
	strcpy(buf, "/tmp/tes-backends-XXXXXX");
	assert_non_null(mkdtemp(buf));
	return buf;
}

static void rmtree(const char *dir)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void test_discard(void **state)
{
	struct delivery_settings s;
	struct backends b;
	struct delivery_backend be;
	struct obs_registry *r = obs_new();
	(void)state;

	settings(&s, "discard", "/nonexistent");
	assert_int_equal(backends_open(&s, &env, &b, &be), 0);
	assert_string_equal(be.name, "discard");
	assert_null(b.sp);
	assert_null(b.rl);
	assert_true(b.smtputf8);
	assert_string_equal(b.where, "(nothing is kept)");
	assert_int_equal(backends_export(&b, r), 0);
	assert_int_equal(obs_ngroups(r), 0);
	backends_stop(&b);
	backends_close(&b);
	obs_free(r);
}

struct verdict {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int code;
};

static void done(void *arg, const struct smtp_reply *rep)
{
	struct verdict *v = arg;
	pthread_mutex_lock(&v->lock);
	v->code = rep->code;
	pthread_cond_broadcast(&v->cond);
	pthread_mutex_unlock(&v->lock);
}

static void test_spool_stores_and_counts(void **state)
{
	struct delivery_settings s;
	struct backends b;
	struct delivery_backend be;
	struct obs_registry *r = obs_new();
	struct smtp_envelope e;
	struct verdict v = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	char dir[64], sub[96];
	struct stat st;
	char *rcpt[1] = { (char *)"b@example.net" };
	uint64_t x = 99;
	(void)state;

	settings(&s, "spool", tmpdir(dir));
	assert_int_equal(backends_open(&s, &env, &b, &be), 0);
	assert_string_equal(be.name, "spool");
	assert_non_null(b.sp);
	assert_string_equal(b.where, dir);
	snprintf(sub, sizeof(sub), "%s/new", dir);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(backends_export(&b, r), 0);
	assert_true(obs_value(r, "spool", "stored", &x));
	assert_int_equal(x, 0);

	memset(&e, 0, sizeof(e));
	strcpy(e.mail_from, "a@example.org");
	e.nrcpt = 1;
	e.rcpt = rcpt;
	struct delivery_msg *m = be.open(be.be, 0);
	assert_non_null(m);
	assert_int_equal(be.write(m, (const uint8_t *)"Subject: t\r\n\r\nhi\r\n", 18), 0);
	e.content_bytes = 18;
	be.submit(m, &e, "198.18.0.1:25", done, &v);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 20; /* bounded */
	pthread_mutex_lock(&v.lock);
	while (!v.code && pthread_cond_timedwait(&v.cond, &v.lock, &ts) == 0)
		;
	pthread_mutex_unlock(&v.lock);
	assert_int_equal(v.code, 250);
	assert_true(obs_value(r, "spool", "stored", &x));
	assert_int_equal(x, 1);
	assert_true(obs_value(r, "spool", "bytes", &x));
	assert_int_equal(x, 18);
	backends_stop(&b);
	backends_close(&b);
	obs_free(r);
	rmtree(dir);
}

static void test_relay_without_backend(void **state)
{
	struct delivery_settings s;
	struct backends b;
	struct delivery_backend be;
	struct obs_registry *r = obs_new();
	char dir[64];
	(void)state;

	settings(&s, "smtp", tmpdir(dir));
	snprintf(s.relay.socket, sizeof(s.relay.socket), "%s/no-backend.sock", dir);
	assert_int_equal(backends_open(&s, &env, &b, &be), 0);
	assert_string_equal(be.name, "smtp");
	assert_non_null(b.rl);
	assert_false(b.smtputf8); /* the backend was not asked: not offered */
	assert_non_null(strstr(b.where, "to unix:"));
	assert_int_equal(backends_export(&b, r), 0);
	assert_non_null(obs_group_find(r, "relay"));
	backends_stop(&b);
	backends_close(&b);
	obs_free(r);
	rmtree(dir);
}

static void test_floor_no_disk_has(void **state)
{
	struct delivery_settings s;
	struct backends b;
	struct delivery_backend be;
	char dir[64];
	(void)state;

	settings(&s, "spool", tmpdir(dir));
	s.spool_min_free = 1ull << 62;
	/* the floor refuses nothing at open: the spool opens, and refuses at
	 * admit; spool_set_min_free only fails when it cannot read */
	assert_int_equal(backends_open(&s, &env, &b, &be), 0);
	assert_non_null(be.admit);
	assert_false(be.admit(be.be, 0));
	backends_stop(&b);
	backends_close(&b);
	/* closed: the spool's lock is free for the next one */
	s.spool_min_free = 0;
	assert_int_equal(backends_open(&s, &env, &b, &be), 0);
	assert_true(be.admit == NULL || be.admit(be.be, 0));
	backends_close(&b);
	rmtree(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_discard),
		cmocka_unit_test(test_spool_stores_and_counts),
		cmocka_unit_test(test_relay_without_backend),
		cmocka_unit_test(test_floor_no_disk_has),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
