/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Messages refused per server, on their way to tescontrol's report
 * (counters' "servers", docs/control-protocol.md).
 *
 * A worker records each refusal (a 450 of a throttle window, a 550 or a
 * drop of a block) in a queue of its own (struct refring): single
 * producer, single consumer, fixed size, no lock, no system call, so the
 * DPDK workers can use it.  As in gateway/state/sightring.h the newest waiting
 * slot absorbs refusals of the same server and kind, so a flood from one
 * server is one slot however long the consumer waits; only a ring full of
 * distinct servers drops (counted).
 *
 * The control thread adds what it takes from the rings to a table
 * (struct refagg, bounded too) and sends the table's deltas with each
 * counters message, then forgets them.
 *
 * Threads: refring_push from the ring's worker, refring_pop from the
 * control thread, refring_dropped from any; a refagg is the control
 * thread's.  Zero-filled memory is an empty ring.
 */
#ifndef TES_GATEWAY_STATE_REFRING_H
#define TES_GATEWAY_STATE_REFRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contract/ctlproto.h"

#define REFRING_SIZE 256u

struct refusal {
	uint32_t tenant_id;
	bool throttle; /* a 450; otherwise a 550 or a drop */
	char fqdn[TES_FQDN_MAX];
};

struct refring {
	_Alignas(64) uint32_t head; /* written by the producer */
	_Alignas(64) uint32_t tail; /* written by the consumer */
	uint64_t dropped;           /* written by the producer */
	uint32_t count[REFRING_SIZE];
	struct refusal slot[REFRING_SIZE];
};

/* Count one refusal of (tenant_id, fqdn); fqdn is cut at TES_FQDN_MAX - 1
 * octets.  false when the ring is full of other servers (counted). */
bool refring_push(struct refring *r, uint32_t tenant_id, const char *fqdn, bool throttle);
/* The oldest; *n is how many refusals it stands for. */
bool refring_pop(struct refring *r, struct refusal *out, uint32_t *n);
uint64_t refring_dropped(const struct refring *r);

/* What the control thread has taken and not sent yet, by server. */
#define REFAGG_MAX 4096
struct refagg {
	struct ctl_server_count *v; /* sorted by (tenant, fqdn) */
	size_t n, cap;
	uint64_t dropped; /* refusals of servers beyond REFAGG_MAX (or no memory) */
};

void refagg_add(struct refagg *a, const struct refusal *r, uint32_t n);
/* Move up to max entries into out (the lowest first); returns how many. */
size_t refagg_take(struct refagg *a, struct ctl_server_count *out, size_t max);
void refagg_free(struct refagg *a);

#endif
