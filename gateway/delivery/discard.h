/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The discard delivery backend: for benchmarks only.  Every message is
 * answered 250 at once and thrown away, so a benchmark measures the front
 * end, the engine and enforcement without a disk or a backend MTA.  It LOSES
 * EVERY MESSAGE: the configuration must say both `delivery = discard` and
 * `i_understand_discard_loses_mail = yes` (config_check), and the gateway
 * logs a warning at start and at stop.
 *
 * Threading: discard_backend on the main thread; the backend functions as
 * delivery.h says (done runs inside submit, on the worker).
 */
#ifndef TES_GATEWAY_DELIVERY_DISCARD_H
#define TES_GATEWAY_DELIVERY_DISCARD_H

#include <stdint.h>

#include "gateway/delivery/delivery.h"

struct discard_stats {
	uint64_t discarded; /* messages answered 250 and thrown away */
	uint64_t bytes;
};

void discard_backend(struct delivery_backend *out);

/* Any thread. */
void discard_stats(struct discard_stats *out);

#endif
