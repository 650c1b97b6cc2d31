/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/observe/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/text.h"

struct obs_registry {
	struct obs_group g[OBS_MAX_GROUPS];
	size_t n; /* published with release: readers see whole groups only */
};

struct obs_registry *obs_new(void)
{
	return calloc(1, sizeof(struct obs_registry));
}

void obs_free(struct obs_registry *r)
{
	free(r);
}

int obs_add(struct obs_registry *r, const struct obs_group *g)
{
	size_t n = __atomic_load_n(&r->n, __ATOMIC_RELAXED);

	if (n >= OBS_MAX_GROUPS)
		return -1;
	r->g[n] = *g;
	__atomic_store_n(&r->n, n + 1, __ATOMIC_RELEASE);
	return 0;
}

size_t obs_ngroups(const struct obs_registry *r)
{
	return __atomic_load_n(&r->n, __ATOMIC_ACQUIRE);
}

const struct obs_group *obs_group_at(const struct obs_registry *r, size_t i)
{
	return i < obs_ngroups(r) ? &r->g[i] : NULL;
}

const struct obs_group *obs_group_find(const struct obs_registry *r, const char *name)
{
	size_t n = obs_ngroups(r);

	for (size_t i = 0; i < n; i++)
		if (strcmp(r->g[i].name, name) == 0)
			return &r->g[i];
	return NULL;
}

static unsigned instances(const struct obs_group *g)
{
	if (!g->inst_label)
		return 1;
	return g->count ? g->count(g->arg) : 1;
}

int obs_snap_take(const struct obs_group *g, struct obs_snap *s)
{
	unsigned n = instances(g);

	memset(s, 0, sizeof(*s));
	s->g = g;
	s->n = n;
	s->data = calloc(n ? n : 1, g->size ? g->size : 1);
	s->ok = calloc(n ? n : 1, sizeof(*s->ok));
	s->names = calloc(n ? n : 1, sizeof(*s->names));
	if (!s->data || !s->ok || !s->names) {
		obs_snap_free(s);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		s->ok[i] = g->read(g->arg, i, s->data + (size_t)i * g->size);
		s->nok += s->ok[i];
		if (g->inst_name)
			g->inst_name(g->arg, i, s->names[i], sizeof(s->names[i]));
		else
			snprintf(s->names[i], sizeof(s->names[i]), "%u", i);
	}
	return 0;
}

void obs_snap_free(struct obs_snap *s)
{
	free(s->data);
	free(s->ok);
	free(s->names);
	memset(s, 0, sizeof(*s));
}

unsigned obs_row_len(const struct obs_row *row)
{
	return row->n ? row->n : 1;
}

const char *obs_row_label(const struct obs_row *row, unsigned i)
{
	if (row->names)
		return row->names[i];
	if (row->name_of)
		return row->name_of(i);
	return "";
}

uint64_t obs_row_value(const struct obs_row *row, const void *snap, unsigned i)
{
	const uint8_t *p = (const uint8_t *)snap + row->off + (size_t)i * row->stride;
	unsigned words = row->sum > 1 ? row->sum : 1;
	uint64_t v = 0;

	for (unsigned w = 0; w < words; w++) {
		uint64_t x;

		memcpy(&x, p + w * sizeof(uint64_t), sizeof(x));
		v += x;
	}
	return v;
}

void obs_row_key(const struct obs_row *row, unsigned i, char *buf, size_t len)
{
	size_t at;

	if (!row->key) {
		tes_str_copy(buf, len, "");
		return;
	}
	at = tes_str_copy(buf, len, row->key);
	if (row->flags & OBS_NEST)
		at = tes_str_append(buf, len, at, "/");
	tes_str_append(buf, len, at, obs_row_label(row, i));
}

/* The row and list value under key, or NULL. */
static const struct obs_row *find_key(const struct obs_group *g, const char *key, unsigned *idx)
{
	char k[OBS_KEY_MAX];

	for (size_t r = 0; r < g->nrows; r++) {
		const struct obs_row *row = &g->rows[r];

		if (!row->key)
			continue;
		for (unsigned i = 0; i < obs_row_len(row); i++) {
			obs_row_key(row, i, k, sizeof(k));
			if (strcmp(k, key) == 0) {
				*idx = i;
				return row;
			}
		}
	}
	return NULL;
}

static bool group_value(const struct obs_group *g, const char *key, uint64_t *v)
{
	struct obs_snap s;
	const struct obs_row *row;
	unsigned idx;

	*v = 0;
	row = find_key(g, key, &idx);
	if (!row || obs_snap_take(g, &s) != 0)
		return false;
	for (unsigned i = 0; i < s.n; i++)
		if (s.ok[i])
			*v += obs_row_value(row, obs_snap_inst(&s, i), idx);
	obs_snap_free(&s);
	return true;
}

bool obs_value(const struct obs_registry *r, const char *group, const char *key, uint64_t *v)
{
	const struct obs_group *g = obs_group_find(r, group);

	*v = 0;
	return g && group_value(g, key, v);
}

void obs_line(const struct obs_registry *r, const char *prefix, const struct obs_item *items,
	      size_t n, char *buf, size_t len)
{
	size_t at = tes_str_copy(buf, len, prefix);

	for (size_t i = 0; i < n; i++) {
		uint64_t v = 0;

		obs_value(r, items[i].group, items[i].key, &v);
		at = tes_str_append(buf, len, at, " ");
		at = tes_str_append(buf, len, at, items[i].as);
		at = tes_str_append(buf, len, at, "=");
		at = tes_str_append_u64(buf, len, at, v);
	}
}
