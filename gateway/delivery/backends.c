/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/delivery/backends.h"

#include <stdio.h>
#include <string.h>

#include "gateway/delivery/discard.h"
#include "gateway/observe/log.h"
#include "gateway/observe/registry.h"
#include "gateway/delivery/smtpc.h"

static struct relay *open_relay(const struct delivery_settings *s, const struct backends_env *env,
				struct backends *b)
{
	const struct relay_settings *rs = &s->relay;
	char tmp[PATH_MAX + 8], err[1024], why[512];
	snprintf(tmp, sizeof(tmp), "%s/tmp", s->spool_dir);
	struct relay_config rc = {
		.host = rs->host,
		.port = rs->port,
		.socket_path = rs->socket,
		.helo_name = rs->helo_name[0] ? rs->helo_name : env->hostname,
		.tmp_dir = tmp,
		.threads = rs->threads,
		.max_connections = rs->max_connections,
		.max_queue = rs->max_queue,
		.connect_timeout_ms = rs->connect_timeout * 1000u,
		.command_timeout_ms = rs->command_timeout * 1000u,
		.data_timeout_ms = rs->data_timeout * 1000u,
		.idle_timeout_ms = rs->idle_timeout * 1000u,
		.memory_per_message = rs->memory_per_message,
		.memory_total = rs->memory_total,
	};
	struct relay *rl = relay_open(&rc, err, sizeof(err));
	if (!rl) {
		fprintf(stderr, "tesgate: %s\n", err);
		return NULL;
	}
	if (rs->socket[0])
		snprintf(b->where, sizeof(b->where), "to unix:%s", rs->socket);
	else
		snprintf(b->where, sizeof(b->where), "to %s:%u", rs->host, rs->port);
	/* SMTPUTF8 is offered only when the backend takes it: otherwise it
	 * would bounce what the gateway accepted. */
	unsigned ext;
	uint64_t size_max;
	if (relay_probe(rl, &ext, &size_max, why, sizeof(why)) == 0) {
		b->smtputf8 = (ext & SMTPC_EXT_SMTPUTF8) != 0;
		log_msg(LOG_INFO, "relay: backend %s offers%s%s%s%s%s; SMTPUTF8 %s to clients",
			b->where + 3, ext & SMTPC_EXT_PIPELINING ? " PIPELINING" : "",
			ext & SMTPC_EXT_CHUNKING ? " CHUNKING" : "",
			ext & SMTPC_EXT_8BITMIME ? " 8BITMIME" : "",
			ext & SMTPC_EXT_SMTPUTF8 ? " SMTPUTF8" : "",
			ext & SMTPC_EXT_SIZE ? " SIZE" : "",
			b->smtputf8 ? "offered" : "not offered");
		if ((ext & SMTPC_EXT_SIZE) && size_max && size_max < env->max_message_size)
			log_msg(LOG_WARN,
				"relay: the backend takes at most %llu octets, max_message_size is "
				"%llu: larger messages will get 554 5.3.4 after their content",
				(unsigned long long)size_max,
				(unsigned long long)env->max_message_size);
	} else {
		b->smtputf8 = false;
		log_msg(LOG_WARN,
			"relay: backend not reachable at start (%s); messages get 451 until it is, "
			"and SMTPUTF8 is not offered until a restart finds it",
			why);
	}
	return rl;
}

static int open_backend(const struct delivery_settings *s, const struct backends_env *env,
			struct backends *b, struct delivery_backend *be)
{
	char err[1024];
	memset(b, 0, sizeof(*b));
	if (strcmp(s->backend, "smtp") == 0) {
		b->rl = open_relay(s, env, b);
		if (!b->rl)
			return -1;
		relay_backend(b->rl, be);
		return 0;
	}
	if (strcmp(s->backend, "discard") == 0) {
		for (int i = 0; i < 3; i++)
			log_msg(LOG_WARN, "DISCARD BACKEND: every message gets 250 and is THROWN "
					  "AWAY. For benchmarks only; never on real mail.");
		discard_backend(be);
		b->smtputf8 = true;
		snprintf(b->where, sizeof(b->where), "(nothing is kept)");
		return 0;
	}
	b->sp = spool_open(s->spool_dir, s->threads, env->workers, err, sizeof(err));
	if (!b->sp) {
		fprintf(stderr, "tesgate: %s\n", err);
		return -1;
	}
	/* DPDK workers make no system calls, so nobody may wake the spool */
	spool_set_polling(b->sp, env->polling);
	spool_backend(b->sp, be);
	b->smtputf8 = true;
	snprintf(b->where, sizeof(b->where), "%s", s->spool_dir);
	return 0;
}

int backends_open(const struct delivery_settings *s, const struct backends_env *env,
		  struct backends *b, struct delivery_backend *be)
{
	char err[1024];

	if (open_backend(s, env, b, be) != 0)
		return -1;
	if ((b->sp && spool_set_min_free(b->sp, s->spool_min_free, err, sizeof(err)) != 0) ||
	    (b->rl && relay_set_min_free(b->rl, s->spool_min_free, err, sizeof(err)) != 0)) {
		fprintf(stderr, "tesgate: %s\n", err);
		backends_stop(b);
		backends_close(b);
		return -1;
	}
	return 0;
}

void backends_stop(struct backends *b)
{
	if (b->sp)
		spool_stop(b->sp);
	if (b->rl)
		relay_stop(b->rl);
}

void backends_close(struct backends *b)
{
	spool_close(b->sp);
	relay_close(b->rl);
}

int backends_export(const struct backends *b, struct obs_registry *r)
{
	if (b->sp)
		return spool_export(b->sp, r);
	if (b->rl)
		return relay_export(b->rl, r);
	return 0;
}

void backends_log_stats(const struct backends *b, const struct obs_registry *r)
{
	static const struct obs_item relay_line[] = {
		{ "relayed", "relay", "relayed" },     { "temp_fail", "relay", "temp_fail" },
		{ "perm_fail", "relay", "perm_fail" }, { "queue_full", "relay", "queue_full" },
		{ "aborted", "relay", "aborted" },     { "spilled", "relay", "spilled" },
		{ "retried", "relay", "retried" },     { "connections", "relay", "connections" },
		{ "bytes", "relay", "bytes" },
	};
	char line[512];

	if (b->rl) {
		obs_line(r, "stats relay", relay_line, sizeof(relay_line) / sizeof(relay_line[0]),
			 line, sizeof(line));
		log_msg(LOG_INFO, "%s", line);
	}
	if (!b->sp && !b->rl) {
		struct discard_stats ds;
		discard_stats(&ds);
		log_msg(LOG_WARN, "stats DISCARD BACKEND threw away %llu messages (%llu octets)",
			(unsigned long long)ds.discarded, (unsigned long long)ds.bytes);
	}
}
