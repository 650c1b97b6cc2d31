/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * gateway/observe/verdictlog.c: the exact line for a verdict, escaping of a hostile
 * server name, and what happens when the writer cannot keep up: a full ring
 * drops and counts, and every record that was taken becomes exactly one
 * line.  The writer is made to stall deterministically by giving it a pipe
 * that is already full.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gateway/observe/verdictlog.h"

static void event(struct vlog_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->time = 1706745600; /* 2024-02-01T00:00:00Z */
	ev->at = VLOG_AT_HEADERS;
	ev->action = TES_THROTTLE;
	ev->reason = TES_REASON_THROTTLE_WINDOW;
	ev->stage = 2;
	ev->code = 450;
	memcpy(ev->enhanced, "4.7.230", 7);
	ev->tenant = 7;
	tes_addr_parse("192.0.2.10", &ev->source);
	snprintf(ev->server, sizeof(ev->server), "ex16-02.contoso.local");
	ev->has_build = true;
	assert_true(ex_build_from_str("15.1.2507.35", &ev->build));
	ev->family = EX_FAMILY_2016;
}

static void test_format(void **state)
{
	struct vlog_event ev;
	char buf[2048];
	size_t n;

	(void)state;
	event(&ev);
	n = verdictlog_format(&ev, buf, sizeof(buf));
	assert_int_equal(n, strlen(buf));
	assert_string_equal(
		buf,
		"{\"time\":\"2024-02-01T00:00:00Z\",\"epoch\":1706745600,\"event\":\"verdict\","
		"\"at\":\"headers\",\"action\":\"throttle\",\"reason\":\"throttle-window\","
		"\"stage\":2,\"code\":450,\"enhanced\":\"4.7.230\",\"tenant\":7,"
		"\"source\":\"192.0.2.10\",\"server\":\"ex16-02.contoso.local\","
		"\"build\":\"15.1.2507.35\",\"family\":\"2016\"}\n");

	/* A drop at connect: no reason, no server, no build. */
	memset(&ev, 0, sizeof(ev));
	ev.time = 0;
	ev.at = VLOG_AT_CONNECT;
	ev.action = TES_DROP;
	tes_addr_parse("2001:db8::1", &ev.source);
	n = verdictlog_format(&ev, buf, sizeof(buf));
	assert_true(n > 0);
	assert_string_equal(buf,
			    "{\"time\":\"1970-01-01T00:00:00Z\",\"epoch\":0,\"event\":\"verdict\","
			    "\"at\":\"connect\",\"action\":\"drop\",\"stage\":0,\"code\":0,"
			    "\"tenant\":0,\"source\":\"2001:db8::1\"}\n");

	/* Too small a buffer: nothing, never a cut line. */
	event(&ev);
	assert_int_equal(verdictlog_format(&ev, buf, 40), 0);
}

static void test_hostile_server(void **state)
{
	struct vlog_event ev;
	char buf[2048];

	(void)state;
	event(&ev);
	/* Every octet the name could carry off the wire, at full length. */
	memset(ev.server, '"', sizeof(ev.server) - 1);
	ev.server[0] = '\\';
	ev.server[1] = '\n';
	ev.server[2] = (char)0xff;
	ev.server[3] = 0x01;
	ev.server[sizeof(ev.server) - 1] = '\0';
	assert_true(verdictlog_format(&ev, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "\"server\":\"\\\\\\u000a\\u00ff\\u0001\\\"\\\""));
	/* One line: the only newline is the last octet. */
	assert_ptr_equal(strchr(buf, '\n'), buf + strlen(buf) - 1);
	/* An unterminated name (a caller's bug) is cut, not overrun. */
	memset(ev.server, 'a', sizeof(ev.server));
	assert_true(verdictlog_format(&ev, buf, sizeof(buf)) > 0);
	assert_ptr_equal(strchr(buf, '\n'), buf + strlen(buf) - 1);
}

struct reader {
	int fd;
	size_t lines, bytes;
};

static void *read_all(void *arg)
{
	struct reader *r = arg;
	char b[65536];
	ssize_t n;

	while ((n = read(r->fd, b, sizeof(b))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			r->lines += b[i] == '\n';
		r->bytes += (size_t)n;
	}
	return NULL;
}

static void test_full_ring_drops_and_counts(void **state)
{
	int p[2];
	char path[64], err[256], junk[4096];
	struct verdictlog *vl;
	struct verdictlog_stats st;
	struct vlog_event ev;
	struct reader r;
	pthread_t t;
	size_t pushed = 0, prefill = 0, tries;
	int fl;

	(void)state;
	assert_int_equal(pipe(p), 0);
	/* Fill the pipe, so the writer's first write(2) blocks. */
	fl = fcntl(p[1], F_GETFL);
	fcntl(p[1], F_SETFL, fl | O_NONBLOCK);
	memset(junk, 'j', sizeof(junk));
	for (;;) {
		ssize_t n = write(p[1], junk, sizeof(junk));
		if (n <= 0)
			break;
		prefill += (size_t)n;
	}
	fcntl(p[1], F_SETFL, fl);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", p[1]);
	vl = verdictlog_open(path, 2, err, sizeof(err));
	assert_non_null(vl);

	event(&ev);
	/* Worker 1 pushes until its ring is full: the writer holds at most one
	 * buffer's worth while it is stuck in write(2). */
	for (tries = 0; tries < 100000; tries++) {
		if (!verdictlog_push(vl, 1, &ev))
			break;
		pushed++;
	}
	assert_true(tries < 100000);
	assert_true(pushed >= 256);
	assert_false(verdictlog_push(vl, 1, &ev));
	verdictlog_stats(vl, &st);
	assert_int_equal(st.dropped, 2);

	/* Unblock: everything taken becomes a line, once. */
	r.fd = p[0];
	r.lines = 0;
	r.bytes = 0;
	assert_int_equal(pthread_create(&t, NULL, read_all, &r), 0);
	verdictlog_stats(vl, &st);
	verdictlog_close(vl);
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	assert_int_equal(r.lines, pushed);
	(void)prefill;
}

static void test_bad_path(void **state)
{
	char err[256];

	(void)state;
	assert_null(verdictlog_open("relative/path", 1, err, sizeof(err)));
	assert_non_null(strstr(err, "absolute"));
	assert_null(verdictlog_open("/nonexistent-dir-h5/v.log", 1, err, sizeof(err)));
	assert_non_null(strstr(err, "No such file"));
}

static void test_worker_without_ring(void **state)
{
	char dir[] = "/tmp/test-verdictlog-XXXXXX", path[256], err[256];
	struct verdictlog *vl;
	struct verdictlog_stats st;
	struct vlog_event ev;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/v.log", dir);
	vl = verdictlog_open(path, 2, err, sizeof(err));
	assert_non_null(vl);
	event(&ev);
	assert_false(verdictlog_push(vl, 2, &ev));
	verdictlog_stats(vl, &st);
	assert_int_equal(st.dropped, 1);
	verdictlog_close(vl);
	unlink(path);
	rmdir(dir);
}

static void test_reopen(void **state)
{
	char dir[] = "/tmp/test-verdictlog-XXXXXX", path[256], old[256], err[256];
	struct verdictlog *vl;
	struct verdictlog_stats st;
	struct vlog_event ev;
	FILE *f;
	char line[2048];
	int n;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/v.log", dir);
	snprintf(old, sizeof(old), "%s/v.log.1", dir);
	vl = verdictlog_open(path, 1, err, sizeof(err));
	assert_non_null(vl);
	event(&ev);
	assert_true(verdictlog_push(vl, 0, &ev));
	for (int i = 0; i < 200; i++) { /* bounded: 200 x 10 ms */
		verdictlog_stats(vl, &st);
		if (st.lines == 1)
			break;
		usleep(10000);
	}
	assert_int_equal(st.lines, 1);
	/* Rename, then reopen: the next line lands in a new file at path, the
	 * first stays in the renamed one. */
	assert_int_equal(rename(path, old), 0);
	verdictlog_reopen(vl);
	ev.stage = 5;
	for (int i = 0; i < 200; i++) { /* bounded: 200 x 10 ms */
		verdictlog_stats(vl, &st);
		if (st.reopens == 1)
			break;
		usleep(10000);
	}
	assert_int_equal(st.reopens, 1);
	assert_true(verdictlog_push(vl, 0, &ev));
	verdictlog_close(vl);
	f = fopen(path, "r");
	assert_non_null(f);
	n = 0;
	while (fgets(line, sizeof(line), f)) {
		n++;
		assert_non_null(strstr(line, "\"stage\":5"));
	}
	fclose(f);
	assert_int_equal(n, 1);
	f = fopen(old, "r");
	assert_non_null(f);
	n = 0;
	while (fgets(line, sizeof(line), f)) {
		n++;
		assert_non_null(strstr(line, "\"stage\":2"));
	}
	fclose(f);
	assert_int_equal(n, 1);
	unlink(path);
	unlink(old);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_hostile_server),
		cmocka_unit_test(test_full_ring_drops_and_counts),
		cmocka_unit_test(test_bad_path),
		cmocka_unit_test(test_worker_without_ring),
		cmocka_unit_test(test_reopen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
