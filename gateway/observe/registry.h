/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The counters registry: every part of the gateway registers what it
 * exports, and the exports render from here, knowing none of the parts:
 * the Prometheus endpoint (metrics.h), the DPDK telemetry commands
 * (dptelemetry.h) and the stop line of the log (obs_line).  observe/
 * includes no other room; the parts include this header.
 *
 * A part registers a group: a snapshot function that fills a struct the
 * part owns (its counters, read with relaxed loads, any thread) and a table
 * of rows, one per exported series or list of series, each saying where in
 * that struct its figure is.  A group may have instances (DPDK workers,
 * mempools): then it is read once per instance and every series gets the
 * instance's label first.
 *
 * A row is on /metrics when it has a name (rows of one family are
 * consecutive; the family's HELP and TYPE come from its first row); it is
 * in the telemetry dictionaries and found by obs_value and obs_line when it
 * has a key.  A row with a list (n > 1, or one named value) stands for n
 * series: value i is at off + i * stride, its label l2 is names[i] (or
 * name_of(i)), and its key is key followed by that name, or, with
 * OBS_NEST, a dictionary named key holding one entry per name (looked up as
 * "key/name").
 *
 * Threading: obs_new, obs_add and obs_free on the main thread (obs_add may
 * run while readers run: groups are only appended); every reader on any
 * thread.  What a group's arg points to must outlive every reader: stop
 * the exports (gw_metrics_stop, dptel_stop) before freeing the parts.
 */
#ifndef TES_GATEWAY_OBSERVE_REGISTRY_H
#define TES_GATEWAY_OBSERVE_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OBS_MAX_GROUPS 32
#define OBS_KEY_MAX 64

enum obs_type { OBS_COUNTER, OBS_GAUGE, OBS_HISTOGRAM };

/* Row flags. */
#define OBS_NEST 1u   /* the list's keys are a dictionary named key */
#define OBS_HIDDEN 2u /* the key is for obs_value and obs_line only, not telemetry */

/* A histogram's buckets are the row's list: nbounds + 1 uint64_t counts at
 * off (not cumulative; the last is above every bound); its sum is the
 * uint64_t at sum_off divided by sum_div. */
struct obs_hist {
	const double *bounds;
	size_t nbounds;
	size_t sum_off;
	double sum_div;
};

struct obs_row {
	const char *name; /* Prometheus family; NULL: not on /metrics */
	const char *help; /* with the family's first row */
	enum obs_type type;
	const char *key; /* telemetry and obs_value key (a list: its prefix); NULL: none */
	unsigned flags;
	size_t off; /* the (first) figure: a uint64_t in the snapshot */
	/* >1: the figure is the sum of this many uint64_t from off (per list
	 * value) */
	unsigned sum;
	/* non-zero: /metrics shows figure / div as a double (seconds) */
	double div;
	const char *l1, *v1; /* a label with one value, after the instance's; or NULL */
	const char *l2;      /* the list's label, or NULL */
	unsigned n;          /* list values (0 is read as 1) */
	const char *const *names;
	const char *(*name_of)(unsigned i); /* when names is NULL */
	size_t stride;
	const struct obs_hist *hist; /* OBS_HISTOGRAM */
};

struct obs_group {
	const char *name; /* how telemetry commands and obs_line find it */
	const struct obs_row *rows;
	size_t nrows;
	size_t size; /* of one instance's snapshot */
	/* Instance i's figures into snap (size bytes, zeroed).  false: nothing
	 * to show for it now (it is left out). */
	bool (*read)(const void *arg, unsigned i, void *snap);
	const void *arg;
	/* Instances: with inst_label NULL, one, unlabelled. */
	const char *inst_label;
	unsigned (*count)(const void *arg);
	/* The instance's label value; NULL: its index. */
	void (*inst_name)(const void *arg, unsigned i, char *buf, size_t len);
};

struct obs_registry;

struct obs_registry *obs_new(void);
void obs_free(struct obs_registry *r);
/* g is copied (its rows are not: they must outlive r).  0, or -1 when
 * full. */
int obs_add(struct obs_registry *r, const struct obs_group *g);

/* ---- reading ---- */

size_t obs_ngroups(const struct obs_registry *r);
const struct obs_group *obs_group_at(const struct obs_registry *r, size_t i);
const struct obs_group *obs_group_find(const struct obs_registry *r, const char *name);

/* Every instance of a group, read once. */
struct obs_snap {
	const struct obs_group *g;
	unsigned n;    /* instances */
	uint8_t *data; /* n * g->size */
	bool *ok;      /* read said true */
	char (*names)[OBS_KEY_MAX];
	unsigned nok;
};
/* 0, or -1 when out of memory. */
int obs_snap_take(const struct obs_group *g, struct obs_snap *s);
void obs_snap_free(struct obs_snap *s);
static inline const void *obs_snap_inst(const struct obs_snap *s, unsigned i)
{
	return s->data + (size_t)i * s->g->size;
}

unsigned obs_row_len(const struct obs_row *row);
/* The list value i's label ("" for a row without a list). */
const char *obs_row_label(const struct obs_row *row, unsigned i);
/* The list value i's figure in one instance's snapshot. */
uint64_t obs_row_value(const struct obs_row *row, const void *snap, unsigned i);
/* The list value i's key ("" when the row has none). */
void obs_row_key(const struct obs_row *row, unsigned i, char *buf, size_t len);

/* The figure under key ("name", or "dict/name" for OBS_NEST) in group,
 * summed over its instances.  false when the group or key is unknown. */
bool obs_value(const struct obs_registry *r, const char *group, const char *key, uint64_t *v);

/* A line of figures: "as=value" for each item, after prefix and a space,
 * a figure of a group not registered (a part this gateway does not run)
 * as 0. */
struct obs_item {
	const char *as;
	const char *group;
	const char *key;
};
void obs_line(const struct obs_registry *r, const char *prefix, const struct obs_item *items,
	      size_t n, char *buf, size_t len);

#endif
