/* SPDX-License-Identifier: BSD-3-Clause */
/* The control protocol contract: the incremental frame decoder (whole,
 * split at every byte, truncated, oversized, garbage, other versions) and
 * the JSON codecs of servers, tenants and messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "contract/adminproto.h"
#include "contract/ctlproto.h"

static size_t make_frame(uint8_t *out, const char *json)
{
	size_t n = strlen(json);

	out[0] = (uint8_t)(n >> 24);
	out[1] = (uint8_t)(n >> 16);
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)n;
	memcpy(out + 4, json, n);
	return n + 4;
}

/* Feed all of data; collect frames until an error or the end. */
static int feed_all(struct ctl_decoder *d, const uint8_t *data, size_t len, json_t **frames,
		    int max, enum ctl_rc *last)
{
	int n = 0;
	size_t off = 0;

	*last = CTL_MORE;
	for (;;) {
		json_t *m;
		size_t took;

		while ((*last = ctl_decoder_next(d, &m)) == CTL_FRAME) {
			assert_true(n < max);
			frames[n++] = m;
		}
		if (*last == CTL_ERROR || off == len)
			break;
		took = ctl_decoder_feed(d, data + off, len - off);
		if (took == 0) {
			*last = ctl_decoder_next(d, &m);
			if (*last == CTL_FRAME) {
				frames[n++] = m;
				continue;
			}
			break;
		}
		off += took;
	}
	return n;
}

static void test_decoder_whole_and_split(void **state)
{
	static const char *const msgs[] = {
		"{\"v\":1,\"type\":\"hello\",\"gateway\":\"g\",\"version\":\"1\"}",
		"{\"v\":1,\"type\":\"counters\",\"counters\":{}}",
		("{\"v\":1,\"type\":\"sighting\",\"tenant\":1,\"fqdn\":\"\\u00e9x.local\","
		 "\"build\":\"15.1.2507.35\",\"family\":\"2016\",\"class\":\"vulnerable\"}"),
	};
	uint8_t stream[1024];
	size_t len = 0;

	(void)state;
	for (int i = 0; i < 3; i++)
		len += make_frame(stream + len, msgs[i]);
	/* Every split point of the stream into two feeds, and one byte at a
	 * time: always the same three frames. */
	for (size_t cut = 0; cut <= len; cut++) {
		struct ctl_decoder d;
		json_t *frames[8];
		enum ctl_rc rc;
		int n;

		ctl_decoder_init(&d, 0);
		n = feed_all(&d, stream, cut, frames, 8, &rc);
		n += feed_all(&d, stream + cut, len - cut, frames + n, 8 - n, &rc);
		assert_int_equal(n, 3);
		assert_int_equal(rc, CTL_MORE);
		assert_string_equal(ctl_msg_type(frames[0]), "hello");
		assert_string_equal(ctl_msg_type(frames[1]), "counters");
		assert_string_equal(ctl_msg_type(frames[2]), "sighting");
		assert_string_equal(json_string_value(json_object_get(frames[2], "fqdn")),
				    "\xc3\xa9x.local");
		assert_int_equal(ctl_decoder_eof(&d), CTL_MORE);
		for (int i = 0; i < n; i++)
			json_decref(frames[i]);
		ctl_decoder_free(&d);
	}
	{
		struct ctl_decoder d;
		int n = 0;

		ctl_decoder_init(&d, 0);
		for (size_t i = 0; i < len; i++) {
			json_t *m;

			assert_int_equal(ctl_decoder_feed(&d, stream + i, 1), 1);
			while (ctl_decoder_next(&d, &m) == CTL_FRAME) {
				n++;
				json_decref(m);
			}
		}
		assert_int_equal(n, 3);
		ctl_decoder_free(&d);
	}
}

static void expect_error(const uint8_t *data, size_t len, size_t max, bool at_eof,
			 const char *needle)
{
	struct ctl_decoder d;
	json_t *frames[4];
	enum ctl_rc rc;
	int n;

	ctl_decoder_init(&d, max);
	n = feed_all(&d, data, len, frames, 4, &rc);
	for (int i = 0; i < n; i++)
		json_decref(frames[i]);
	if (at_eof) {
		assert_int_equal(rc, CTL_MORE);
		rc = ctl_decoder_eof(&d);
	}
	assert_int_equal(rc, CTL_ERROR);
	if (!strstr(d.err, needle))
		fail_msg("error \"%s\" lacks \"%s\"", d.err, needle);
	/* Sticky: the stream stays failed. */
	assert_int_equal(ctl_decoder_feed(&d, "xx", 2), 0);
	{
		json_t *m;

		assert_int_equal(ctl_decoder_next(&d, &m), CTL_ERROR);
		assert_null(m);
	}
	ctl_decoder_free(&d);
}

static void test_decoder_truncated(void **state)
{
	uint8_t buf[256];
	size_t len = make_frame(buf, "{\"v\":1,\"type\":\"hello\"}");

	(void)state;
	for (size_t cut = 1; cut < len; cut++)
		expect_error(buf, cut, 0, true, "truncated frame");
	expect_error(buf, 3, 0, true, "after 3 of 4 length octets");
	expect_error(buf, 10, 0, true, "after 6 of 22 payload octets");
}

static void test_decoder_oversized(void **state)
{
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, '{' };
	uint8_t limit[4] = { 0x00, 0x10, 0x00, 0x01 }; /* 1 MiB + 1 */
	uint8_t buf[256];
	size_t len;
	struct ctl_decoder d;

	(void)state;
	expect_error(huge, sizeof(huge), 0, false, "frame length 4294967295 exceeds the limit");
	expect_error(limit, sizeof(limit), 0, false, "1048577 exceeds the limit of 1048576");
	/* Rejected as soon as the length is in, before any payload. */
	ctl_decoder_init(&d, 0);
	assert_int_equal(ctl_decoder_feed(&d, huge, 4), 0);
	assert_true(d.failed);
	ctl_decoder_free(&d);
	/* A smaller limit, exactly at and one over. */
	len = make_frame(buf, "{\"v\":1,\"type\":\"x\"}");
	expect_error(buf, len, len - 5, false, "exceeds the limit");
	{
		json_t *m;

		ctl_decoder_init(&d, len - 4);
		assert_int_equal(ctl_decoder_feed(&d, buf, len), len);
		assert_int_equal(ctl_decoder_next(&d, &m), CTL_FRAME);
		json_decref(m);
		ctl_decoder_free(&d);
	}
}

static void test_decoder_garbage(void **state)
{
	static const struct {
		const char *payload;
		const char *err;
	} cases[] = {
		{ "{not json", "invalid JSON" },
		{ "[1,2,3]", "not a JSON object" },
		{ "\"v\"", "invalid JSON" },
		{ "{\"type\":\"hello\"}", "no integer protocol version" },
		{ "{\"v\":\"1\",\"type\":\"hello\"}", "no integer protocol version" },
		{ "{\"v\":2,\"type\":\"hello\"}",
		  "unknown protocol version 2 (this side speaks 1)" },
		{ "{\"v\":0}", "unknown protocol version 0" },
		{ "{\"v\":1,\"type\":\"a\\u0000b\"}", "invalid JSON" },
		{ "{\"v\":1,\"v\":1}", "invalid JSON" },
		{ "{\"v\":1} {\"v\":1}", "invalid JSON" },
		{ "{\"v\":1,\"x\":\"\xff\"}", "invalid JSON" },
		{ "", "empty frame" },
	};
	uint8_t buf[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = make_frame(buf, cases[i].payload);

		expect_error(buf, len, 0, false, cases[i].err);
	}
}

static void test_decoder_releases_big_buffers(void **state)
{
	size_t n = 200000;
	char *json = malloc(n + 64);
	uint8_t *buf = malloc(n + 64 + 4);
	struct ctl_decoder d;
	json_t *m;
	size_t len;

	(void)state;
	snprintf(json, n + 64, "{\"v\":1,\"type\":\"x\",\"pad\":\"%0*d\"}", (int)n, 0);
	len = make_frame(buf, json);
	ctl_decoder_init(&d, 0);
	assert_int_equal(ctl_decoder_feed(&d, buf, len), len);
	assert_int_equal(ctl_decoder_next(&d, &m), CTL_FRAME);
	json_decref(m);
	assert_true(d.cap <= 64 * 1024);
	ctl_decoder_free(&d);
	free(json);
	free(buf);
}

static void test_encode(void **state)
{
	json_t *m = ctl_msg_new("hello"), *back;
	char err[CTL_ERR_MAX];
	struct ctl_decoder d;
	uint8_t *f;
	size_t n;
	char *big;

	(void)state;
	assert_int_equal(ctl_frame_encode(m, &f, &n, err, sizeof(err)), 0);
	assert_int_equal(((size_t)f[0] << 24 | (size_t)f[1] << 16 | (size_t)f[2] << 8 | f[3]),
			 n - 4);
	assert_memory_equal(f + 4, "{\"v\":1,\"type\":\"hello\"}", n - 4);
	ctl_decoder_init(&d, 0);
	ctl_decoder_feed(&d, f, n);
	assert_int_equal(ctl_decoder_next(&d, &back), CTL_FRAME);
	assert_true(json_equal(m, back));
	json_decref(back);
	ctl_decoder_free(&d);
	free(f);
	/* Too big for a frame: refused with a reason, nothing allocated. */
	big = malloc(CTL_FRAME_MAX + 1);
	memset(big, 'a', CTL_FRAME_MAX);
	big[CTL_FRAME_MAX] = '\0';
	json_object_set_new(m, "pad", json_string(big));
	assert_int_equal(ctl_frame_encode(m, &f, &n, err, sizeof(err)), -1);
	assert_null(f);
	assert_non_null(strstr(err, "exceeds the frame limit"));
	free(big);
	json_decref(m);
}

/* ---- codecs ---- */

static void sample_server(struct tes_server *s)
{
	memset(s, 0, sizeof(*s));
	s->tenant_id = 4000000000u;
	snprintf(s->fqdn, sizeof(s->fqdn), "EX1.bear.local");
	assert_true(ex_build_from_str("15.01.2507.035", &s->build));
	s->family = EX_FAMILY_2016;
	s->resolved = true;
	s->first_detected = 1704067200;
	s->last_seen = 1706745600;
	s->resolved_at = 1706745600;
	s->pause_base = 86400;
	s->nsources = 2;
	assert_true(tes_addr_parse("198.51.100.7", &s->sources[0]));
	assert_true(tes_addr_parse("2001:db8::7", &s->sources[1]));
}

static void test_server_roundtrip(void **state)
{
	struct tes_server s, back;
	char err[CTL_ERR_MAX];
	json_t *j;

	(void)state;
	sample_server(&s);
	j = ctl_server_to_json(&s);
	assert_string_equal(json_string_value(json_object_get(j, "build")), "15.1.2507.35");
	assert_string_equal(json_string_value(json_object_get(j, "family")), "2016");
	assert_int_equal(ctl_server_from_json(j, &back, err, sizeof(err)), 0);
	assert_memory_equal(&s, &back, sizeof(s));
	json_decref(j);
}

static void expect_server_error(const char *json, const char *needle)
{
	json_error_t jerr;
	json_t *j = json_loads(json, 0, &jerr);
	struct tes_server s;
	char err[CTL_ERR_MAX];

	assert_non_null(j);
	memset(&s, 0x5a, sizeof(s));
	assert_int_equal(ctl_server_from_json(j, &s, err, sizeof(err)), -1);
	if (!strstr(err, needle))
		fail_msg("error \"%s\" lacks \"%s\"", err, needle);
	json_decref(j);
}

#define SRV_OK                                                               \
	"\"build\":\"15.1.2507.35\",\"family\":\"2016\",\"resolved\":false," \
	"\"first_detected\":1,\"last_seen\":2,\"resolved_at\":0,\"pause_base\":0"

static void test_server_rejects(void **state)
{
	char longname[400];

	(void)state;
	expect_server_error("{\"tenant\":1," SRV_OK "}", "missing \"fqdn\"");
	expect_server_error("{\"tenant\":1,\"fqdn\":\"\"," SRV_OK "}", "\"fqdn\" is empty");
	expect_server_error("{\"tenant\":-1,\"fqdn\":\"x\"," SRV_OK "}", "\"tenant\"");
	expect_server_error("{\"tenant\":4294967296,\"fqdn\":\"x\"," SRV_OK "}", "\"tenant\"");
	expect_server_error("{\"tenant\":1,\"fqdn\":\"x\",\"build\":\"15.1\",\"family\":\"2016\","
			    "\"resolved\":false,\"first_detected\":1,\"last_seen\":2,"
			    "\"resolved_at\":0,\"pause_base\":0}",
			    "is not a build");
	expect_server_error(
		"{\"tenant\":1,\"fqdn\":\"x\",\"build\":\"15.1.1.1\",\"family\":\"2099\","
		"\"resolved\":false,\"first_detected\":1,\"last_seen\":2,"
		"\"resolved_at\":0,\"pause_base\":0}",
		"not a product family");
	expect_server_error(
		"{\"tenant\":1,\"fqdn\":\"x\",\"build\":\"15.1.1.1\",\"family\":\"2016\","
		"\"resolved\":false,\"first_detected\":-5,\"last_seen\":2,"
		"\"resolved_at\":0,\"pause_base\":0}",
		"\"first_detected\"");
	expect_server_error(
		"{\"tenant\":1,\"fqdn\":\"x\",\"build\":\"15.1.1.1\",\"family\":\"2016\","
		"\"resolved\":1,\"first_detected\":1,\"last_seen\":2,"
		"\"resolved_at\":0,\"pause_base\":0}",
		"true or false");
	expect_server_error("{\"tenant\":1,\"fqdn\":\"x\"," SRV_OK ",\"sources\":[\"1.2.3.4\","
			    "\"1.2.3.5\",\"1.2.3.6\",\"1.2.3.7\",\"1.2.3.8\"]}",
			    "at most 4");
	expect_server_error("{\"tenant\":1,\"fqdn\":\"x\"," SRV_OK ",\"sources\":[\"1.2.3\"]}",
			    "bad address");
	memset(longname, 'a', 256);
	snprintf(longname + 256, sizeof(longname) - 256, "\"," SRV_OK "}");
	{
		char json[512];

		snprintf(json, sizeof(json), "{\"tenant\":1,\"fqdn\":\"%s", longname);
		expect_server_error(json, "longer than 255");
	}
}

static void test_tenant_roundtrip(void **state)
{
	struct tes_tenant t, back;
	char err[CTL_ERR_MAX];
	json_t *j;

	(void)state;
	memset(&t, 0, sizeof(t));
	t.id = 7;
	snprintf(t.name, sizeof(t.name), "Bear & Co");
	t.nconnectors = 2;
	assert_int_equal(tes_connector_parse("198.51.100.0/24", NULL, &t.connectors[0]), 0);
	assert_int_equal(tes_connector_parse("::/0", "mx.bear.example", &t.connectors[1]), 0);
	t.pause.start = 100;
	t.pause.end = 200;
	t.pause.paused_before = 50;
	t.pause.year = 2024;
	t.pause.days_used = 12;
	j = ctl_tenant_to_json(&t);
	assert_int_equal(ctl_tenant_from_json(j, &back, err, sizeof(err)), 0);
	assert_memory_equal(&t, &back, sizeof(t));
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(j, "connectors"), 1), "range")),
			    "::/0");
	json_decref(j);

	j = json_pack("{s:i, s:s, s:[{s:s}]}", "id", 1, "name", "x", "connectors", "range",
		      "10.0.0.1/8");
	assert_int_equal(ctl_tenant_from_json(j, &back, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bad connector range"));
	json_decref(j);
	j = json_pack("{s:i, s:s}", "id", 0, "name", "x");
	assert_int_equal(ctl_tenant_from_json(j, &back, err, sizeof(err)), -1);
	json_decref(j);
}

/* gen survives a frame round trip at its largest sizes, and a message
 * without one (or with a bad one) has none. */
static void test_generation(void **state)
{
	char err[CTL_ERR_MAX];
	struct ctl_decoder d;
	uint8_t *frame;
	size_t n;
	uint64_t gen = 0;
	json_t *j = ctl_msg_new(CTL_T_CLOCK), *back = NULL;

	(void)state;
	assert_false(ctl_msg_gen(j, &gen));
	ctl_msg_set_gen(j, UINT64_C(1796590975123456));
	assert_int_equal(ctl_frame_encode(j, &frame, &n, err, sizeof(err)), 0);
	ctl_decoder_init(&d, 0);
	assert_int_equal(ctl_decoder_feed(&d, frame, n), n);
	assert_int_equal(ctl_decoder_next(&d, &back), CTL_FRAME);
	assert_true(ctl_msg_gen(back, &gen));
	assert_true(gen == UINT64_C(1796590975123456));
	json_decref(back);
	ctl_decoder_free(&d);
	free(frame);
	json_object_set_new(j, "gen", json_string("7"));
	assert_false(ctl_msg_gen(j, &gen));
	json_object_set_new(j, "gen", json_integer(0));
	assert_false(ctl_msg_gen(j, &gen));
	json_decref(j);
}

static void test_messages(void **state)
{
	struct ctl_sighting s, sb;
	struct ctl_hello h = { "gw-1", "0.1.0" }, hb;
	struct ctl_delete del;
	char err[CTL_ERR_MAX];
	struct tes_server srv;
	json_t *j, *c;

	(void)state;
	memset(&s, 0, sizeof(s));
	s.seq = 42;
	s.tenant_id = 3;
	snprintf(s.fqdn, sizeof(s.fqdn), "ex.local");
	assert_true(ex_build_from_str("15.2.1748.36", &s.build));
	s.family = EX_FAMILY_2019;
	s.cls = TES_BUILD_VULNERABLE;
	assert_true(tes_addr_parse("::ffff:192.0.2.1", &s.source));
	s.time = 1704067200;
	s.count = 1; /* what a sighting without "count" decodes to */
	j = ctl_sighting_to_json(&s);
	assert_string_equal(ctl_msg_type(j), CTL_T_SIGHTING);
	assert_string_equal(json_string_value(json_object_get(j, "source")), "192.0.2.1");
	assert_null(json_object_get(j, "count")); /* one message: none on the wire */
	assert_int_equal(ctl_sighting_from_json(j, &sb, err, sizeof(err)), 0);
	assert_memory_equal(&s, &sb, sizeof(s));
	json_decref(j);
	/* a coalesced sighting carries its count */
	s.count = 4000000000u;
	j = ctl_sighting_to_json(&s);
	assert_int_equal(json_integer_value(json_object_get(j, "count")), 4000000000);
	assert_int_equal(ctl_sighting_from_json(j, &sb, err, sizeof(err)), 0);
	assert_int_equal(sb.count, 4000000000u);
	json_object_set_new(j, "count", json_integer(0));
	assert_int_equal(ctl_sighting_from_json(j, &sb, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "\"count\""));
	json_object_set_new(j, "count", json_integer(1ll << 32));
	assert_int_equal(ctl_sighting_from_json(j, &sb, err, sizeof(err)), -1);
	json_object_set_new(j, "count", json_integer(1));
	json_object_set_new(j, "class", json_string("dubious"));
	assert_int_equal(ctl_sighting_from_json(j, &sb, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "\"class\""));
	json_decref(j);

	j = ctl_hello_to_json(&h);
	assert_int_equal(ctl_hello_from_json(j, &hb, err, sizeof(err)), 0);
	assert_string_equal(hb.gateway, "gw-1");
	json_decref(j);

	j = ctl_delete_server_msg(3, "ex.local");
	assert_int_equal(ctl_delete_from_json(j, &del, err, sizeof(err)), 0);
	assert_true(del.server);
	assert_string_equal(del.fqdn, "ex.local");
	json_decref(j);
	j = ctl_delete_tenant_msg(9);
	assert_int_equal(ctl_delete_from_json(j, &del, err, sizeof(err)), 0);
	assert_false(del.server);
	assert_int_equal(del.tenant_id, 9);
	json_decref(j);

	c = json_pack("{s:i}", "accepted", 5);
	j = ctl_counters_to_json(c);
	json_decref(c);
	assert_int_equal(ctl_counters_from_json(j, &c, err, sizeof(err)), 0);
	assert_int_equal(json_integer_value(json_object_get(c, "accepted")), 5);
	json_decref(c);
	json_object_set_new(json_object_get(j, "counters"), "bad", json_string("x"));
	assert_int_equal(ctl_counters_from_json(j, &c, err, sizeof(err)), -1);
	json_decref(j);

	sample_server(&srv);
	j = ctl_server_msg(&srv, 3, TES_STATUS_THROTTLING, 99);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "Throttling");
	assert_int_equal(ctl_server_msg_from_json(j, &srv, err, sizeof(err)), 0);
	json_decref(j);

	j = ctl_ack_msg(42, false, "none", "unknown tenant 3");
	{
		struct ctl_ack a;

		assert_int_equal(ctl_ack_from_json(j, &a, err, sizeof(err)), 0);
		assert_false(a.ok);
		assert_int_equal(a.seq, 42);
		assert_string_equal(a.error, "unknown tenant 3");
	}
	json_decref(j);
	j = ctl_sync_begin_to_json(1704067200, true, 2, 3);
	{
		int64_t now;
		bool test;

		assert_int_equal(ctl_clock_from_json(j, &now, &test, err, sizeof(err)), 0);
		assert_int_equal(now, 1704067200);
		assert_true(test);
	}
	json_decref(j);
	{
		struct tes_tenant t, tb;

		memset(&t, 0, sizeof(t));
		t.id = 5;
		snprintf(t.name, sizeof(t.name), "T");
		j = ctl_tenant_msg(&t);
		assert_int_equal(ctl_tenant_msg_from_json(j, &tb, err, sizeof(err)), 0);
		assert_int_equal(tb.id, 5);
		json_decref(j);
		j = ctl_msg_new(CTL_T_TENANT);
		assert_int_equal(ctl_tenant_msg_from_json(j, &tb, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "tenant:"));
		json_decref(j);
	}
}

static char *slurp(const char *name)
{
	const char *src = getenv("TES_SRCDIR");
	char path[4096];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/data/%s", src ? src : ".", name);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static void test_policy_and_catalog_messages(void **state)
{
	char *builds = slurp("exchange-builds.csv"), *comp = slurp("compliance.conf");
	char *pol = slurp("policy.conf");
	struct tes_policy p, def;
	char err[CTL_ERR_MAX];
	struct catalog *cat;
	json_t *j;

	(void)state;
	j = ctl_policy_msg(pol, "policy.conf", "v1");
	assert_int_equal(ctl_policy_from_json(j, &p, err, sizeof(err)), 0);
	tes_policy_default(&def);
	assert_true(tes_policy_equal(&p, &def));
	json_decref(j);
	j = ctl_policy_msg("[stages]\n2 = 30 70 0\n", "bad.conf", "v2");
	assert_int_equal(ctl_policy_from_json(j, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bad.conf:2"));
	json_decref(j);

	j = ctl_catalog_msg(builds, "exchange-builds.csv", comp, "compliance.conf", "x");
	cat = ctl_catalog_from_json(j, err, sizeof(err));
	assert_non_null(cat);
	assert_true(catalog_size(cat) > 400);
	catalog_free(cat);
	json_decref(j);
	j = ctl_catalog_msg(builds, "b.csv", "2016 CU99 from 1.2.3.4\n", "c.conf", "x");
	assert_null(ctl_catalog_from_json(j, err, sizeof(err)));
	assert_non_null(strstr(err, "c.conf:1"));
	json_decref(j);
	/* The shipped catalog fits a frame with room to spare. */
	{
		uint8_t *f;
		size_t n;

		j = ctl_catalog_msg(builds, "exchange-builds.csv", comp, "compliance.conf", "x");
		assert_int_equal(ctl_frame_encode(j, &f, &n, err, sizeof(err)), 0);
		assert_true(n < CTL_FRAME_MAX / 8);
		free(f);
		json_decref(j);
	}
	free(builds);
	free(comp);
	free(pol);
}

/* Issue 13: the optional members a first-release peer ignores. */
static void test_issue13_members(void **state)
{
	struct tes_server s, back;
	struct tes_tenant t, tb;
	struct tes_policy p, q;
	char err[CTL_ERR_MAX];
	json_t *j, *m;
	const char *full = "[ageing]\nstale_after = 10\nforget_after = 20\n";

	(void)state;
	memset(&s, 0, sizeof(s));
	s.tenant_id = 7;
	snprintf(s.fqdn, sizeof(s.fqdn), "EX1.bear.local");
	assert_true(ex_build_from_str("15.1.2507.35", &s.build));
	s.family = EX_FAMILY_2016;
	s.first_detected = 1704067200;
	s.last_seen = 1704070000;
	s.nsources = 2;
	assert_true(tes_addr_parse("198.51.100.7", &s.sources[0]));
	assert_true(tes_addr_parse("2001:db8::7", &s.sources[1]));
	s.source_seen[0] = 1704069000;
	s.source_seen[1] = 1704070000;
	s.stale_seconds = 86400;
	j = ctl_server_to_json(&s);
	assert_int_equal(ctl_server_from_json(j, &back, err, sizeof(err)), 0);
	assert_memory_equal(&s, &back, sizeof(s));
	/* without them (a first-release tescontrol): unknown seen times, no
	 * stale time */
	json_object_del(j, "source_seen");
	json_object_del(j, "stale_seconds");
	assert_int_equal(ctl_server_from_json(j, &back, err, sizeof(err)), 0);
	assert_int_equal(back.source_seen[0], 0);
	assert_int_equal(back.stale_seconds, 0);
	/* one time per source, times only */
	json_object_set_new(j, "source_seen", json_pack("[i]", 5));
	assert_int_equal(ctl_server_from_json(j, &back, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "source_seen"));
	json_object_set_new(j, "source_seen", json_pack("[i, s]", 5, "x"));
	assert_int_equal(ctl_server_from_json(j, &back, err, sizeof(err)), -1);
	json_object_set_new(j, "source_seen", json_pack("[i, i]", 5, -1));
	assert_int_equal(ctl_server_from_json(j, &back, err, sizeof(err)), -1);
	json_object_del(j, "source_seen");
	json_object_set_new(j, "stale_seconds", json_integer(-5));
	assert_int_equal(ctl_server_from_json(j, &back, err, sizeof(err)), -1);
	json_decref(j);

	memset(&t, 0, sizeof(t));
	t.id = 3;
	snprintf(t.name, sizeof(t.name), "Owl");
	j = ctl_tenant_to_json(&t);
	assert_null(json_object_get(j, "at_server_cap"));
	json_decref(j);
	t.at_server_cap = true;
	m = ctl_tenant_msg(&t);
	assert_int_equal(ctl_tenant_msg_from_json(m, &tb, err, sizeof(err)), 0);
	assert_true(tb.at_server_cap);
	json_decref(m);

	/* policy: "text" holds what a first-release gateway parses, the
	 * whole file goes in "full_text" */
	m = ctl_policy_msg(full, "p.conf", "v");
	assert_non_null(json_object_get(m, "full_text"));
	assert_null(strstr(json_string_value(json_object_get(m, "text")), "ageing"));
	assert_int_equal(ctl_policy_from_json(m, &p, err, sizeof(err)), 0);
	assert_int_equal(p.stale_after_days, 10);
	assert_int_equal(p.forget_after_days, 20);
	json_object_del(m, "full_text");
	assert_int_equal(ctl_policy_from_json(m, &q, err, sizeof(err)), 0);
	tes_policy_default(&p);
	assert_true(tes_policy_equal(&p, &q));
	json_decref(m);
	assert_string_equal(ctl_change_name(TES_CHANGE_TRACKED), "tracked");
}

static void test_admin_messages(void **state)
{
	json_t *req = admin_request(ADMIN_REPORT, json_pack("{s:i}", "tenant", 7)), *args, *res;
	char err[CTL_ERR_MAX];
	const char *cmd, *e;
	bool ok;

	(void)state;
	assert_int_equal(admin_request_parse(req, &cmd, &args, err, sizeof(err)), 0);
	assert_string_equal(cmd, "report");
	assert_int_equal(json_integer_value(json_object_get(args, "tenant")), 7);
	json_decref(req);
	req = json_pack("{s:i, s:s, s:i}", "v", 1, "cmd", "x", "args", 3);
	assert_int_equal(admin_request_parse(req, &cmd, &args, err, sizeof(err)), -1);
	json_decref(req);

	res = admin_response_error("quota %d", 5);
	assert_int_equal(admin_response_parse(res, &ok, &args, &e, err, sizeof(err)), 0);
	assert_false(ok);
	assert_string_equal(e, "quota 5");
	json_decref(res);
	res = admin_response_ok(json_integer(3));
	assert_int_equal(admin_response_parse(res, &ok, &args, &e, err, sizeof(err)), 0);
	assert_true(ok);
	assert_int_equal(json_integer_value(args), 3);
	json_decref(res);
	res = json_pack("{s:i}", "v", 1);
	assert_int_equal(admin_response_parse(res, &ok, &args, &e, err, sizeof(err)), -1);
	json_decref(res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decoder_whole_and_split),
		cmocka_unit_test(test_decoder_truncated),
		cmocka_unit_test(test_decoder_oversized),
		cmocka_unit_test(test_decoder_garbage),
		cmocka_unit_test(test_decoder_releases_big_buffers),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_server_roundtrip),
		cmocka_unit_test(test_server_rejects),
		cmocka_unit_test(test_tenant_roundtrip),
		cmocka_unit_test(test_messages),
		cmocka_unit_test(test_generation),
		cmocka_unit_test(test_policy_and_catalog_messages),
		cmocka_unit_test(test_admin_messages),
		cmocka_unit_test(test_issue13_members),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
