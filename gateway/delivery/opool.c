/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/delivery/opool.h"

#include <stdbool.h>
#include <stdlib.h>

int opool_init(struct opool *p, size_t size, unsigned keep, unsigned prefill)
{
	p->local = NULL;
	p->size = size < sizeof(struct opool_node) ? sizeof(struct opool_node) : size;
	p->keep = keep;
	p->misses = 0;
	atomic_init(&p->back, NULL);
	atomic_init(&p->idle, 0);
	for (unsigned i = 0; i < prefill && i < keep; i++) {
		struct opool_node *n = malloc(p->size);
		if (!n)
			return -1;
		n->next = p->local;
		p->local = n;
		atomic_fetch_add_explicit(&p->idle, 1, memory_order_relaxed);
	}
	return 0;
}

static void free_list(struct opool_node *n)
{
	while (n) {
		struct opool_node *next = n->next;
		free(n);
		n = next;
	}
}

void opool_fini(struct opool *p)
{
	free_list(p->local);
	free_list(atomic_exchange(&p->back, NULL));
	p->local = NULL;
	atomic_store(&p->idle, 0);
}

void *opool_get(struct opool *p)
{
	struct opool_node *n = p->local;
	if (!n) /* the whole return stack at once: no ABA, one atomic */
		n = atomic_exchange_explicit(&p->back, NULL, memory_order_acquire);
	if (n) {
		p->local = n->next;
		atomic_fetch_sub_explicit(&p->idle, 1, memory_order_relaxed);
		return n;
	}
	p->misses++;
	return malloc(p->size);
}

/* Claim a place among the kept objects; false: the pool is full. */
static int reserve(struct opool *p)
{
	unsigned idle = atomic_load_explicit(&p->idle, memory_order_relaxed);
	do
		if (idle >= p->keep)
			return 0;
	while (!atomic_compare_exchange_weak_explicit(&p->idle, &idle, idle + 1,
						      memory_order_relaxed, memory_order_relaxed));
	return 1;
}

/* true: obj has a place among the kept; otherwise it is freed here. */
static bool kept(struct opool *p, void *obj)
{
	if (!obj)
		return false;
	if (!reserve(p)) {
		free(obj);
		return false;
	}
	return true;
}

void opool_put(struct opool *p, void *obj)
{
	if (!kept(p, obj))
		return;
	struct opool_node *n = obj;
	struct opool_node *head = atomic_load_explicit(&p->back, memory_order_relaxed);
	do
		n->next = head;
	while (!atomic_compare_exchange_weak_explicit(&p->back, &head, n, memory_order_release,
						      memory_order_relaxed));
}

void opool_put_local(struct opool *p, void *obj)
{
	if (!kept(p, obj))
		return;
	struct opool_node *n = obj;
	n->next = p->local;
	p->local = n;
}
