/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * gateway/observe/log.c: synchronous lines, and the asynchronous ring the DPDK
 * workers log through.  stderr is redirected to a file while a case runs,
 * and what landed there is what is checked.
 */
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

#include "gateway/observe/log.h"

#define THREADS 4
#define LINES 200 /* per thread: more than the ring holds in all */

static int saved = -1;
static char path[] = "/tmp/test_log.XXXXXX";

static void capture(void)
{
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	saved = dup(STDERR_FILENO);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	close(fd);
}

/* Restores stderr and returns what was written (caller frees). */
static char *captured(void)
{
	dup2(saved, STDERR_FILENO);
	close(saved);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *buf = calloc(1, 4 << 20);
	size_t n = fread(buf, 1, (4 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	unlink(path);
	strcpy(path, "/tmp/test_log.XXXXXX");
	return buf;
}

static void sync_line(void **state)
{
	(void)state;
	log_set_level(LOG_INFO);
	capture();
	log_msg(LOG_INFO, "hello %d", 42);
	log_msg(LOG_DEBUG, "not shown");
	log_msg(LOG_ERROR, "second");
	char *out = captured();
	assert_non_null(strstr(out, " info  hello 42\n"));
	assert_null(strstr(out, "not shown"));
	/* "YYYY-MM-DDTHH:MM:SS.mmmZ level " and the text, on each line */
	for (char *l = out; *l; l = strchr(l, '\n') + 1) {
		int y, mo, d, h, mi, sec, ms;
		char z, lvl[8];
		assert_int_equal(sscanf(l, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c %7s", &y, &mo, &d, &h,
					&mi, &sec, &ms, &z, lvl),
				 9);
		assert_true(y >= 2024 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h < 24 &&
			    mi < 60 && sec < 61 && ms < 1000);
		assert_int_equal(z, 'Z');
		assert_int_equal(l[23], 'Z');
		assert_int_equal(l[24], ' ');
		assert_int_equal(l[30], ' '); /* the level padded to 5 */
	}
	assert_non_null(strstr(out, "Z error second\n"));
	free(out);
}

static void *producer(void *arg)
{
	unsigned id = (unsigned)(size_t)arg;
	log_thread_async(true);
	for (unsigned i = 0; i < LINES; i++) {
		log_msg(LOG_INFO, "t%u line %u", id, i);
		if (i % 64 == 63) { /* let the writer keep up: this case is about order */
			struct timespec ts = { 0, 30000000 };
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

/* Every line from every thread arrives whole, once, and in its thread's
 * order; nothing is lost when the writer can keep up. */
static void async_lines(void **state)
{
	(void)state;
	log_set_level(LOG_INFO);
	capture();
	assert_int_equal(log_async_start(), 0);
	pthread_t t[THREADS];
	for (size_t i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, producer, (void *)i), 0);
	for (size_t i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	log_async_stop();
	char *out = captured();
	for (unsigned id = 0; id < THREADS; id++) {
		const char *at = out;
		for (unsigned i = 0; i < LINES; i++) {
			char want[64];
			snprintf(want, sizeof(want), " info  t%u line %u\n", id, i);
			const char *hit = strstr(at, want);
			if (!hit)
				fail_msg("missing or out of order: %s", want);
			at = hit + strlen(want);
			assert_null(strstr(at, want)); /* once */
		}
	}
	assert_null(strstr(out, "dropped"));
	free(out);
}

/* A line longer than a ring slot is cut but stays one line. */
static void async_long_line(void **state)
{
	(void)state;
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	capture();
	assert_int_equal(log_async_start(), 0);
	log_thread_async(true);
	log_msg(LOG_WARN, "%s", big);
	log_msg(LOG_WARN, "after");
	log_thread_async(false);
	log_async_stop();
	char *out = captured();
	char *nl = strchr(out, '\n');
	assert_non_null(nl);
	assert_true(nl - out < 1024);
	assert_non_null(strstr(nl + 1, " warn  after\n"));
	free(out);
}

/* A thread marked asynchronous with no writer running logs synchronously
 * rather than losing its lines. */
static void async_without_writer(void **state)
{
	(void)state;
	capture();
	log_thread_async(true);
	log_msg(LOG_ERROR, "still written");
	log_thread_async(false);
	char *out = captured();
	assert_non_null(strstr(out, " error still written\n"));
	free(out);
}

/* The text after "<timestamp> <level> " of each line, in order. */
static char *body_of(char *line)
{
	char *p = strchr(line, ' ');
	assert_non_null(p);
	p = strchr(p + 1, ' ');
	assert_non_null(p);
	while (*p == ' ')
		p++;
	return p;
}

/* A line built piece by piece says what log_msg says for the same text,
 * including where a long line is cut, and shows client text safely. */
static void built_lines(void **state)
{
	(void)state;
	log_set_level(LOG_INFO);
	char big[3000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	capture();
	log_msg(LOG_INFO, "message peer=%s result=\"%d %s %s\" n=%lld u=%llu", "198.18.0.1:25", 250,
		"2.0.0", "Ok", -42ll, 18446744073709551615ull);
	struct log_line l;
	assert_true(log_begin(&l, LOG_INFO));
	log_s(&l, "message peer=");
	log_s(&l, "198.18.0.1:25");
	log_s(&l, " result=\"");
	log_i(&l, 250);
	log_c(&l, ' ');
	log_s(&l, "2.0.0");
	log_c(&l, ' ');
	log_sn(&l, "Ok!", 2);
	log_s(&l, "\" n=");
	log_i(&l, -42);
	log_s(&l, " u=");
	log_u(&l, 18446744073709551615ull);
	log_end(&l);
	log_msg(LOG_WARN, "long %s", big);
	assert_true(log_begin(&l, LOG_WARN));
	log_s(&l, "long ");
	log_s(&l, big);
	log_end(&l);
	assert_true(log_begin(&l, LOG_INFO));
	log_s(&l, "helo=");
	log_clean(&l,
		  "a\r\nb\x7f"
		  "cdef",
		  6);
	log_end(&l);
	assert_false(log_begin(&l, LOG_DEBUG)); /* level off: nothing to build */
	char *out = captured();

	char *line[5] = { 0 };
	int n = 0;
	for (char *save = NULL, *t = strtok_r(out, "\n", &save); t && n < 5;
	     t = strtok_r(NULL, "\n", &save))
		line[n++] = t;
	assert_int_equal(n, 5);
	assert_string_equal(body_of(line[0]),
			    "message peer=198.18.0.1:25 result=\"250 2.0.0 Ok\" n=-42 "
			    "u=18446744073709551615");
	assert_string_equal(body_of(line[0]), body_of(line[1]));
	assert_true(strlen(line[2]) > 2000 && strlen(line[2]) < 2048);
	assert_int_equal(strlen(line[2]), strlen(line[3])); /* both cut alike */
	assert_string_equal(body_of(line[2]), body_of(line[3]));
	assert_string_equal(body_of(line[4]), "helo=a??b?c");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sync_line),       cmocka_unit_test(async_lines),
		cmocka_unit_test(async_long_line), cmocka_unit_test(async_without_writer),
		cmocka_unit_test(built_lines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
