/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The delivery seam: where a finished transaction goes.  The spool backend
 * (spool.h) is the embedded default; the smtp relay backend plugs in here
 * later without touching the session glue.
 *
 * Threading: open, write, submit and abort are called on the worker thread
 * that owns the session.  A backend must not block there for long (no
 * fsync, no network round trip): it finishes the work elsewhere and calls
 * done() exactly once per submitted message, from any thread.
 */
#ifndef TES_GATEWAY_DELIVERY_DELIVERY_H
#define TES_GATEWAY_DELIVERY_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/session/smtp.h"

struct delivery_msg;

typedef void (*delivery_done_fn)(void *arg, const struct smtp_reply *r);

/* write's return when the octets would take the backend's storage below its
 * free-space floor (gateway/delivery/diskfloor.h): the message is lost and the answer
 * at its end is 452 4.3.1, not 451. */
#define DELIVERY_ENOSPC 2

struct delivery_backend {
	const char *name;
	void *be;
	/* At MAIL FROM: can a message of size octets (SIZE=, 0 if not declared)
	 * be taken now?  false: 452 4.3.1.  NULL: always.  No system call. */
	bool (*admit)(void *be, uint64_t size);
	/* A message starts; NULL when the backend cannot take one now. */
	struct delivery_msg *(*open)(void *be, unsigned worker);
	/* Content octets in order; non-zero: the message is lost (answer 451;
	 * DELIVERY_ENOSPC: 452 4.3.1). */
	int (*write)(struct delivery_msg *m, const uint8_t *p, size_t n);
	/* The content is complete.  The backend owns m from here on; env and
	 * peer are copied before submit returns. */
	void (*submit)(struct delivery_msg *m, const struct smtp_envelope *env, const char *peer,
		       delivery_done_fn done, void *arg);
	/* The transaction ended without a message: discard m. */
	void (*abort)(struct delivery_msg *m);
};

#endif
