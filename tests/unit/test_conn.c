/* SPDX-License-Identifier: BSD-3-Clause */
/* The session glue (gateway/conn/conn.c) over a transport made up here: the
 * transport seam (gateway/conn/transport.h) is all conn.c knows of one, so
 * a few functions writing into a buffer and queueing posts stand in for
 * kio or the DPDK stack, and a fake delivery backend for the spool.  What a
 * client would see: the greeting, the address literal in the EHLO reply,
 * reading paused while the verdict is pending and the 250 once the
 * verdict's post runs on the worker, the backend's view of the peer, the
 * 421 of a timeout, the close after QUIT, and the counters in the
 * registry. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gateway/conn/conn.h"
#include "gateway/observe/registry.h"

/* ---- a transport ---- */

struct fake {
	char out[8192];
	size_t len;
	size_t room; /* what one write takes at most */
	bool paused, resumed, closed;
	struct gw_post *posts[8];
	int nposts;
};

static size_t f_write(void *tc, const void *p, size_t n)
{
	struct fake *f = tc;
	size_t take = n < f->room ? n : f->room;

	if (take > sizeof(f->out) - 1 - f->len)
		take = sizeof(f->out) - 1 - f->len;
	memcpy(f->out + f->len, p, take);
	f->len += take;
	f->out[f->len] = '\0';
	return take;
}

static void f_pause(void *tc)
{
	((struct fake *)tc)->paused = true;
}

static void f_resume(void *tc)
{
	struct fake *f = tc;
	f->paused = false;
	f->resumed = true;
}

static void f_close(void *tc)
{
	((struct fake *)tc)->closed = true;
}

/* Posts wait until the test runs them, as a worker's next loop would. */
static void f_post(void *tw, struct gw_post *p)
{
	struct fake *f = tw;
	assert_true(f->nposts < 8);
	f->posts[f->nposts++] = p;
}

static void run_posts(struct fake *f)
{
	for (int i = 0; i < f->nposts; i++)
		f->posts[i]->fn(f->posts[i]);
	f->nposts = 0;
}

static const struct gw_transport fake_tp = {
	.write = f_write,
	.pause = f_pause,
	.resume = f_resume,
	.close = f_close,
	.post = f_post,
};

/* ---- a delivery backend: keeps what it is told, answers at once ---- */

struct delivery_msg {
	size_t size;
};

static char last_peer[64];
static size_t last_size;

static struct delivery_msg *b_open(void *be, unsigned worker)
{
	(void)be;
	(void)worker;
	return calloc(1, sizeof(struct delivery_msg));
}

static int b_write(struct delivery_msg *m, const uint8_t *p, size_t n)
{
	(void)p;
	m->size += n;
	return 0;
}

static void b_submit(struct delivery_msg *m, const struct smtp_envelope *env, const char *peer,
		     delivery_done_fn done, void *arg)
{
	struct smtp_reply r;
	(void)env;
	snprintf(last_peer, sizeof(last_peer), "%s", peer);
	last_size = m->size;
	free(m);
	smtp_reply_set(&r, 250, "2.0.0", "Ok: kept");
	done(arg, &r); /* on this thread: conn.c still hands it over by post */
}

static void b_abort(struct delivery_msg *m)
{
	free(m);
}

static const struct delivery_backend backend = {
	.name = "test",
	.open = b_open,
	.write = b_write,
	.submit = b_submit,
	.abort = b_abort,
};

/* ---- the gateway ---- */

struct fixture {
	struct smtp_config smtp;
	struct smtp_settings set;
	struct exdetect_config ex;
	struct gw *g;
	struct fake f;
};

static int setup(void **state)
{
	struct fixture *x = calloc(1, sizeof(*x));

	snprintf(x->set.banner, sizeof(x->set.banner), "ESMTP test");
	x->set.limits.max_message_size = 1 << 20;
	x->set.limits.max_recipients = 10;
	x->set.limits.max_messages = 10;
	x->set.limits.max_errors = 10;
	x->set.limits.max_header_bytes = 4096;
	smtp_config_set(&x->smtp, "mx.test.example", &x->set);
	struct gw_params p = {
		.smtp = &x->smtp,
		.exdetect = &x->ex,
		.backend = &backend,
		.hostname = "mx.test.example",
		.workers = 1,
	};
	x->g = gw_new(&p);
	assert_non_null(x->g);
	x->f.room = sizeof(x->f.out);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *x = *state;
	gw_free(x->g);
	free(x);
	return 0;
}

static struct gw_conn *open_v4(struct fixture *x, const char *addr, unsigned port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	const char *refuse = "unset";

	memset(&ss, 0, sizeof(ss));
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, addr, &in->sin_addr), 1);
	struct gw_conn *gc = gw_conn_open(x->g, &fake_tp, &x->f, &x->f, 0, &ss, &refuse);
	assert_non_null(gc);
	return gc;
}

static struct gw_conn *open_v6(struct fixture *x, const char *addr, unsigned port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	const char *refuse = "unset";

	memset(&ss, 0, sizeof(ss));
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
	struct gw_conn *gc = gw_conn_open(x->g, &fake_tp, &x->f, &x->f, 0, &ss, &refuse);
	assert_non_null(gc);
	return gc;
}

static void feed(struct gw_conn *gc, const char *text)
{
	size_t n = strlen(text);
	assert_int_equal(gw_conn_data(gc, (const uint8_t *)text, n), n);
}

static void test_transaction_over_the_seam(void **state)
{
	struct fixture *x = *state;
	struct gw_conn *gc = open_v4(x, "198.18.0.1", 40000);

	assert_string_equal(x->f.out, "220 mx.test.example ESMTP test\r\n");
	x->f.len = 0;
	feed(gc, "EHLO client.example\r\n");
	assert_non_null(
		strstr(x->f.out, "250-mx.test.example Hello client.example [198.18.0.1]\r\n"));
	x->f.len = 0;
	feed(gc, "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
	x->f.len = 0;
	feed(gc, "Subject: t\r\n\r\nhello\r\n.\r\n");
	/* the backend answered inside submit, but the verdict is the worker's:
	 * reading waits and nothing is said until its post runs */
	assert_true(x->f.paused);
	assert_true(gw_conn_waiting(gc));
	assert_int_equal(x->f.nposts, 1);
	assert_int_equal(x->f.len, 0);
	assert_string_equal(last_peer, "198.18.0.1:40000");
	assert_int_equal(last_size, 21);
	run_posts(&x->f);
	assert_false(gw_conn_waiting(gc));
	assert_true(x->f.resumed);
	assert_string_equal(x->f.out, "250 2.0.0 Ok: kept\r\n");
	x->f.len = 0;
	feed(gc, "QUIT\r\n");
	assert_string_equal(x->f.out, "221 2.0.0 Bye\r\n");
	assert_true(x->f.closed);
	gw_conn_closed(gc, GW_CLOSE_LOCAL);

	struct gw_stats st;
	gw_stats(x->g, &st);
	assert_int_equal(st.sessions, 1);
	assert_int_equal(st.messages_accepted, 1);
	assert_int_equal(st.smtp_commands, 5);
	assert_int_equal(st.latency[0] + st.latency[GW_LATENCY_BOUNDS] + st.latency[1] +
				 st.latency[2] + st.latency[3] + st.latency[4] + st.latency[5] +
				 st.latency[6] + st.latency[7] + st.latency[8] + st.latency[9] +
				 st.latency[10] + st.latency[11] + st.latency[12] + st.latency[13],
			 1);
}

static void test_peer_forms(void **state)
{
	struct fixture *x = *state;
	struct gw_conn *gc = open_v6(x, "2001:db8::1", 25);

	x->f.len = 0;
	feed(gc, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n.\r\n");
	assert_non_null(strstr(x->f.out, "Hello c [IPv6:2001:db8::1]\r\n"));
	assert_string_equal(last_peer, "[2001:db8::1]:25");
	run_posts(&x->f);
	gw_conn_closed(gc, GW_CLOSE_PEER);

	/* an IPv4-mapped address is IPv4 */
	gc = open_v6(x, "::ffff:198.18.0.5", 2525);
	x->f.len = 0;
	feed(gc, "EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n.\r\n");
	assert_non_null(strstr(x->f.out, "Hello c [198.18.0.5]\r\n"));
	assert_string_equal(last_peer, "198.18.0.5:2525");
	run_posts(&x->f);
	gw_conn_closed(gc, GW_CLOSE_PEER);
}

static void test_timeout_and_back_pressure(void **state)
{
	struct fixture *x = *state;
	struct gw_conn *gc = open_v4(x, "198.18.0.2", 1);

	/* a transport that takes 10 octets at a time: reading pauses until
	 * it says it is writable again */
	x->f.len = 0;
	x->f.room = 10;
	feed(gc, "EHLO c\r\n");
	assert_true(x->f.paused);
	assert_int_equal(x->f.len, 10);
	x->f.room = sizeof(x->f.out);
	gw_conn_writable(gc);
	assert_non_null(strstr(x->f.out, "250 CHUNKING\r\n"));
	assert_true(x->f.resumed);
	x->f.len = 0;
	gw_conn_timeout(gc, GW_TIMEOUT_IDLE);
	assert_string_equal(x->f.out,
			    "421 4.4.2 mx.test.example Idle timeout, closing connection\r\n");
	gw_conn_closed(gc, GW_CLOSE_IDLE);
}

/* The counters of this file's sessions, through the registry, with the
 * transport's beside them. */
static void fake_io_stats(const void *t, struct gw_io_stats *out)
{
	(void)t;
	memset(out, 0, sizeof(*out));
	out->accepted = 3;
	out->timeouts_idle = 2;
}

static void test_exports(void **state)
{
	static const struct gw_io_ops ops = { .stats = fake_io_stats };
	struct fixture *x = *state;
	struct gw_io io = { &ops, NULL };
	struct obs_registry *r = obs_new();
	uint64_t v = 99;

	gw_conn_closed(open_v4(x, "198.18.0.3", 1), GW_CLOSE_PEER);
	assert_int_equal(gw_export(x->g, &io, r), 0);
	assert_true(obs_value(r, "conn", "sessions", &v));
	assert_int_equal(v, 1);
	assert_true(obs_value(r, "conn", "connections_accepted", &v));
	assert_int_equal(v, 3);
	assert_true(obs_value(r, "conn", "timeouts_idle", &v));
	assert_int_equal(v, 2);
	assert_true(obs_value(r, "conn", "smtp_replies/2xx", &v));
	assert_int_equal(v, 1); /* the greeting */
	obs_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_transaction_over_the_seam, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_forms, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timeout_and_back_pressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exports, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
