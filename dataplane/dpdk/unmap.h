/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A grace period before memory is unmapped under a poll-mode worker.
 *
 * DPDK 22.11's memif PMD, when its peer goes away, clears the port's
 * "connected" flag and at once unmaps the shared rings from its interrupt
 * thread, while a worker may be inside rx/tx burst reading them: the
 * gateway died with SIGSEGV in eth_memif_rx when a tes-loadgen exited in
 * the middle of a busy benchmark.  The PMD offers no hook to wait for the
 * datapath, so this module defines munmap(): called from any thread other
 * than a worker while workers run, it first waits until every worker has
 * begun a new loop iteration (each then sees the cleared flag and leaves
 * the rings alone), at most GUARD_WAIT_MS, then unmaps.  Workers' own
 * calls, and all calls while no worker runs, go straight through.
 *
 * Threading: dp_unmap_guard_enter/leave on the worker thread, around its
 * loop; loops is its loop counter, written by it with relaxed atomic
 * stores and read by the unmapping thread.
 */
#ifndef TES_DATAPLANE_DPDK_UNMAP_H
#define TES_DATAPLANE_DPDK_UNMAP_H

#include <stdint.h>

/* Returns a slot for leave, or -1 when all slots are taken (the worker
 * then runs unguarded). */
int dp_unmap_guard_enter(const uint64_t *loops);
void dp_unmap_guard_leave(int slot);

#endif
