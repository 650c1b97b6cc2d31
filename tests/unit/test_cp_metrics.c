/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tescontrol's /metrics text (controlplane/notify/metrics.c), rendered from
 * a state, escalation counters and two gateways with counters, compared
 * byte for byte with tests/data/cp_metrics.prom: the text the renderer
 * wrote before it became a table, for the same input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "contract/ctlproto.h"
#include "controlplane/escalation/escalation.h"
#include "controlplane/log.h"
#include "controlplane/notify/metrics.h"
#include "cp_fakes.h"

#define T0 INT64_C(1704067200) /* 2024-01-01 */
#define DAY 86400

static void send_frame(int fd, json_t *m)
{
	uint8_t *f;
	size_t n;
	char err[CTL_ERR_MAX];

	assert_int_equal(ctl_frame_encode(m, &f, &n, err, sizeof(err)), 0);
	assert_int_equal(write(fd, f, n), (ssize_t)n);
	free(f);
	json_decref(m);
}

/* A gateway on the socket that says hello and sends its counters. */
static int fake_gateway(struct cp_loop *loop, struct cp_gateways *g, const char *path,
			const char *name, const char *counters)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	json_t *hello = json_pack("{s:i, s:s, s:s, s:s}", "v", CTL_PROTO_VERSION, "type", "hello",
				  "gateway", name, "version", "test");
	json_t *c = json_loads(counters, 0, NULL);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	send_frame(fd, hello);
	json_object_set_new(c, "v", json_integer(CTL_PROTO_VERSION));
	json_object_set_new(c, "type", json_string("counters"));
	send_frame(fd, c);
	/* accept, then the two frames: bounded rounds, each one returns when
	 * something happened */
	for (int i = 0; i < 50; i++) {
		json_t *st = cp_gateways_status(g);
		bool done = false;
		size_t k;
		json_t *e;

		json_array_foreach(st, k, e)
		{
			if (strcmp(json_string_value(json_object_get(e, "gateway")), name) == 0 &&
			    json_object_get(e, "counters"))
				done = true;
		}
		json_decref(st);
		if (done)
			return fd;
		{
			struct pollfd p = { .fd = loop->epfd, .events = POLLIN };

			if (poll(&p, 1, 5000) != 1)
				fail_msg("tescontrol's side of the gateway socket is idle");
		}
		assert_int_equal(cp_loop_round(loop), 0);
	}
	fail_msg("the gateway's counters did not arrive");
	return -1;
}

static void test_exact_text(void **state)
{
	struct fake_journal j = { .n = 0 };
	struct fake_store fs;
	struct cp_clock clock = { .test = true, .test_now = T0 };
	struct cp_state st;
	struct cp_loop loop;
	struct cp_esc esc;
	struct cp_gateways gws;
	struct cp_metrics_sources src;
	struct prom_hist commit;
	struct prom_buf b = { 0 };
	struct tes_pause p;
	char dir[] = "/tmp/test-cp-metrics-XXXXXX", path[128], golden[4096], err[256];
	static const double bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
					 0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5 };
	enum tes_change ch;
	unsigned left;
	FILE *f;
	char *want;
	long n;
	int g1, g2;

	(void)state;
	fake_store_init(&fs, &j);
	fake_state(&st, &fs, &clock, NULL);
	assert_int_equal(cp_loop_init(&loop), 0);
	assert_int_equal(esc_init(&esc, &st, &clock, &loop), 0);
	cp_gateways_init(&gws, &loop, &st, 1000);
	fake_tenant(&st, 1, "Bear \"q\"\\n");
	fake_tenant(&st, 2, "Wolf");
	{
		struct ctl_sighting s[] = {
			fake_sighting(1, "ex1.bear.local", "15.1.2507.35", "198.51.100.1"),
			fake_sighting(1, "ex2.bear.local", "15.1.2507.35", "198.51.100.2"),
			fake_sighting(2, "mx.wolf.local", "15.2.1118.7", "198.51.101.9"),
			fake_sighting(1, "ok.bear.local", "15.1.2507.61", NULL),
		};

		for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
			assert_int_equal(cp_state_apply_sighting(&st, &s[i], &ch, err, sizeof(err)),
					 0);
	}
	assert_int_equal(
		tes_pause_add(&cp_tenant_find(&st.tab, 2)->pause, &st.policy, T0, 3, &p, &left),
		TES_PAUSE_OK);
	assert_int_equal(cp_state_set_pause(&st, 2, &p, "pause", NULL, err, sizeof(err)), 0);
	clock.test_now = T0 + 45 * DAY;
	/* every counter a distinct value, so a counter shown in the wrong
	 * place shows */
	st.counts.sightings_refused = 3;
	st.counts.untrusted_ignored = 5;
	st.counts.not_tracked = 7;
	st.counts.untrusted_evicted = 11;
	st.counts.resets = 13;
	st.counts.resumes = 17;
	st.counts.store_errors = 19;
	st.counts.sightings_by_class[CP_SIGHT_IGNORED] = 23;
	esc.counts.stage_entered[2] = 29;
	esc.counts.stage_entered[8] = 31;
	esc.counts.status_entered[TES_STATUS_STALE] = 37;
	esc.counts.forgotten = 41;
	esc.counts.timer_armed = 43;
	esc.counts.timer_fired = 47;
	esc.counts.escalations_due = 53;
	memset(&commit, 0, sizeof(commit));
	prom_hist_observe(&commit, bounds, 14, 0.0003);
	prom_hist_observe(&commit, bounds, 14, 0.002);
	prom_hist_observe(&commit, bounds, 14, 7.5);

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/gw.sock", dir);
	assert_int_equal(cp_gateways_listen(&gws, path, false, 0), 0);
	g1 = fake_gateway(&loop, &gws, path, "gw-b",
			  "{\"counters\":{\"messages\":5,\"tls.handshakes\":3}}");
	g2 = fake_gateway(&loop, &gws, path, "gw-a",
			  "{\"counters\":{\"messages_refused\":7,\"early.drops\":2,"
			  "\"messages\":120}}");
	gws.gen = 123456;

	src = (struct cp_metrics_sources){
		.st = &st, .esc = &esc, .gws = &gws, .xdp = NULL, .commit = &commit
	};
	cp_metrics_render(&src, &b);
	assert_false(b.failed);

	snprintf(golden, sizeof(golden), "%s/tests/data/cp_metrics.prom", getenv("TES_SRCDIR"));
	f = fopen(golden, "r");
	if (!f) {
		fprintf(stderr, "%s: missing; the text rendered:\n%s", golden, b.p);
		fail();
	}
	want = malloc(1 << 20);
	n = (long)fread(want, 1, (1 << 20) - 1, f);
	fclose(f);
	want[n] = '\0';
	if (strcmp(want, b.p) != 0) {
		fprintf(stderr, "rendered:\n%s", b.p);
		fail_msg("the text differs from %s", golden);
	}
	free(want);
	prom_buf_free(&b);
	close(g1);
	close(g2);
	cp_gateways_stop(&gws);
	rmdir(dir);
	esc_fini(&esc);
	cp_loop_fini(&loop);
	cp_state_free(&st);
	fake_store_free(&fs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_text),
	};

	cp_log_init(CP_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
