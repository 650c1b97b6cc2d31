/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target for the control protocol: the frame decoder and every
 * message decoder either side runs on what the other sent (counters'
 * "servers" too).  The first octet
 * chooses how the input is split, so frames cross feed boundaries.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "contract/ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* counters' "servers" (since issue 19): each entry handed on is whole */
static int server_count(const struct ctl_server_count *c, void *ctx)
{
	(void)ctx;
	if (!memchr(c->fqdn, '\0', sizeof(c->fqdn)) || !c->fqdn[0])
		abort();
	return 0;
}

static void decode_message(json_t *msg)
{
	char err[CTL_ERR_MAX];
	const char *type = ctl_msg_type(msg);
	union {
		struct tes_server server;
		struct tes_tenant tenant;
		struct ctl_hello hello;
		struct ctl_sighting sighting;
		struct ctl_delete del;
		struct ctl_ack ack;
		struct tes_policy policy;
	} u;
	int64_t now;
	bool test_clock;
	json_t *counters = NULL;

	if (!type)
		return;
	/* every decoder on every message: a decoder must cope with the wrong type */
	ctl_hello_from_json(msg, &u.hello, err, sizeof(err));
	ctl_sighting_from_json(msg, &u.sighting, err, sizeof(err));
	ctl_server_msg_from_json(msg, &u.server, err, sizeof(err));
	ctl_tenant_msg_from_json(msg, &u.tenant, err, sizeof(err));
	ctl_delete_from_json(msg, &u.del, err, sizeof(err));
	ctl_ack_from_json(msg, &u.ack, err, sizeof(err));
	ctl_clock_from_json(msg, &now, &test_clock, err, sizeof(err));
	ctl_policy_from_json(msg, &u.policy, err, sizeof(err));
	if (ctl_counters_from_json(msg, &counters, err, sizeof(err)) == 0)
		json_decref(counters);
	ctl_server_counts_from_json(msg, server_count, NULL, err, sizeof(err));
	struct catalog *c = ctl_catalog_from_json(msg, err, sizeof(err));
	if (c)
		catalog_free(c);
	if (!memchr(err, '\0', sizeof(err)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_decoder d;

	if (size < 1)
		return 0;
	size_t piece = data[0] ? data[0] : size;
	data++;
	size--;

	ctl_decoder_init(&d, 65536);
	size_t pos = 0;
	while (pos < size) {
		size_t len = size - pos < piece ? size - pos : piece;
		size_t used = ctl_decoder_feed(&d, data + pos, len);
		pos += used;
		for (;;) {
			json_t *msg = NULL;
			enum ctl_rc rc = ctl_decoder_next(&d, &msg);
			if (rc == CTL_FRAME) {
				decode_message(msg);
				json_decref(msg);
				continue;
			}
			if (rc == CTL_ERROR)
				goto out;
			break;
		}
		if (used == 0)
			break;
	}
	ctl_decoder_eof(&d);
out:
	ctl_decoder_free(&d);
	return 0;
}
