/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/observe/dptelemetry.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_telemetry.h>

#include "gateway/observe/log.h"
#include "gateway/observe/registry.h"

/* How a command shows its groups: one dictionary of every keyed row
 * summed over the instances (FLAT; SUM: or of the one instance its
 * parameter names), or one dictionary per instance (EACH). */
enum shape { FLAT, SUM, EACH };

static const struct tel_cmd {
	const char *cmd, *help;
	const char *groups[2];
	enum shape shape;
} cmds[] = {
	{ "/tesgate/stats",
	  "tesgate's gateway and connection counters. No parameters.",
	  { "conn" },
	  FLAT },
	{ "/tesgate/stack",
	  "TCP/IP stack counters summed over the workers. Parameter: a worker index for one "
	  "worker's.",
	  { "stack" },
	  SUM },
	{ "/tesgate/workers",
	  "Per worker: packets, poll loops, connections. No parameters.",
	  { "dpdk_workers" },
	  EACH },
	{ "/tesgate/enforcement",
	  "Enforcement table sizes and control plane state. No parameters.",
	  { "enfstate", "control" },
	  FLAT },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

/* The registry, live between dptel_start and dptel_stop.  The lock is only
 * ever taken by the telemetry thread and the main thread: never a worker. */
static pthread_mutex_t tel_lock = PTHREAD_MUTEX_INITIALIZER;
static const struct obs_registry *tel_reg;
static bool tel_registered;

/* An instance index in params; -1 when absent; -2 when not one. */
static long parse_instance(const char *params, unsigned n)
{
	char *end;
	unsigned long v;

	if (!params || !*params)
		return -1;
	if (*params < '0' || *params > '9')
		return -2;
	errno = 0;
	v = strtoul(params, &end, 10);
	if (errno || *end || v >= n)
		return -2;
	return (long)v;
}

/* The keyed rows of one group into d: instance `only` (-1: all, summed).
 * A list with OBS_NEST becomes a dictionary of its own; nothing is added
 * for it when out of memory (the reply is then shorter, never wrong). */
static void add_rows(struct rte_tel_data *d, const struct obs_snap *s, long only)
{
	const struct obs_group *g = s->g;
	char key[OBS_KEY_MAX];

	for (size_t ri = 0; ri < g->nrows; ri++) {
		const struct obs_row *r = &g->rows[ri];
		struct rte_tel_data *c = NULL;

		if (!r->key || (r->flags & OBS_HIDDEN))
			continue;
		if (r->flags & OBS_NEST) {
			c = rte_tel_data_alloc();
			if (!c)
				continue;
			rte_tel_data_start_dict(c);
		}
		for (unsigned j = 0; j < obs_row_len(r); j++) {
			uint64_t v = 0;

			for (unsigned i = 0; i < s->n; i++)
				if (s->ok[i] && (only < 0 || i == (unsigned)only))
					v += obs_row_value(r, obs_snap_inst(s, i), j);
			if (c) {
				rte_tel_data_add_dict_u64(c, obs_row_label(r, j), v);
			} else {
				obs_row_key(r, j, key, sizeof(key));
				rte_tel_data_add_dict_u64(d, key, v);
			}
		}
		if (c && rte_tel_data_add_dict_container(d, r->key, c, 0) != 0)
			rte_tel_data_free(c);
	}
}

static int run_cmd(const struct tel_cmd *tc, const char *params, struct rte_tel_data *d)
{
	rte_tel_data_start_dict(d);
	for (size_t gi = 0; gi < 2 && tc->groups[gi]; gi++) {
		const struct obs_group *g = obs_group_find(tel_reg, tc->groups[gi]);
		struct obs_snap s;
		long only = -1;

		if (!g || obs_snap_take(g, &s) != 0)
			continue;
		if (tc->shape == SUM)
			only = parse_instance(params, s.n);
		if (only == -2) {
			obs_snap_free(&s);
			return -EINVAL; /* DPDK answers null: the command's params are wrong */
		}
		if (tc->shape != EACH) {
			add_rows(d, &s, only);
			obs_snap_free(&s);
			continue;
		}
		for (unsigned i = 0; i < s.n && i < RTE_TEL_MAX_DICT_ENTRIES; i++) {
			struct rte_tel_data *c = rte_tel_data_alloc();

			if (!c)
				break;
			rte_tel_data_start_dict(c);
			add_rows(c, &s, i);
			if (rte_tel_data_add_dict_container(d, s.names[i], c, 0) != 0) {
				rte_tel_data_free(c);
				break;
			}
		}
		obs_snap_free(&s);
	}
	return 0;
}

static int cmd(const char *name, const char *params, struct rte_tel_data *d)
{
	const struct tel_cmd *tc = NULL;
	int rc;

	for (size_t i = 0; i < NCMDS && !tc; i++)
		if (strcmp(cmds[i].cmd, name) == 0)
			tc = &cmds[i];
	if (!tc)
		return -EINVAL;
	pthread_mutex_lock(&tel_lock);
	if (tel_reg)
		rc = run_cmd(tc, params, d);
	else
		rc = rte_tel_data_string(d, "tesgate is stopping");
	pthread_mutex_unlock(&tel_lock);
	return rc;
}

int dptel_start(const struct obs_registry *reg)
{
	int rc = 0;

	pthread_mutex_lock(&tel_lock);
	tel_reg = reg;
	pthread_mutex_unlock(&tel_lock);
	if (tel_registered)
		return 0;
	for (size_t i = 0; i < NCMDS; i++) {
		int e = rte_telemetry_register_cmd(cmds[i].cmd, cmd, cmds[i].help);

		if (e != 0) {
			log_msg(LOG_ERROR, "dpdk telemetry: cannot register %s (%d)", cmds[i].cmd,
				e);
			rc = -1;
		}
	}
	tel_registered = true;
	if (rc == 0)
		log_msg(LOG_INFO, "dpdk telemetry: /tesgate/stats, /tesgate/stack, "
				  "/tesgate/workers and /tesgate/enforcement registered");
	return rc;
}

void dptel_stop(void)
{
	pthread_mutex_lock(&tel_lock);
	tel_reg = NULL;
	pthread_mutex_unlock(&tel_lock);
}
