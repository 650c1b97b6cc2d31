/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/delivery/discard.h"

#include <stdlib.h>

/* Nothing of the message is kept but its length, for the counters. */
struct delivery_msg {
	uint64_t size;
};

static struct discard_stats totals; /* atomics */

static struct delivery_msg *dc_open(void *be, unsigned worker)
{
	(void)be;
	(void)worker;
	return calloc(1, sizeof(struct delivery_msg));
}

static int dc_write(struct delivery_msg *m, const uint8_t *p, size_t n)
{
	(void)p;
	m->size += n;
	return 0;
}

static void dc_submit(struct delivery_msg *m, const struct smtp_envelope *env, const char *peer,
		      delivery_done_fn done, void *arg)
{
	(void)env;
	(void)peer;
	struct smtp_reply r;
	__atomic_fetch_add(&totals.discarded, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&totals.bytes, m->size, __ATOMIC_RELAXED);
	free(m);
	smtp_reply_set(&r, 250, "2.0.0", "Ok: discarded (benchmark backend, nothing kept)");
	done(arg, &r);
}

static void dc_abort(struct delivery_msg *m)
{
	free(m);
}

void discard_backend(struct delivery_backend *out)
{
	out->name = "discard";
	out->be = NULL;
	out->admit = NULL;
	out->open = dc_open;
	out->write = dc_write;
	out->submit = dc_submit;
	out->abort = dc_abort;
}

void discard_stats(struct discard_stats *out)
{
	out->discarded = __atomic_load_n(&totals.discarded, __ATOMIC_RELAXED);
	out->bytes = __atomic_load_n(&totals.bytes, __ATOMIC_RELAXED);
}
