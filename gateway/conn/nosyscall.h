/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What keeps a DPDK worker thread free of system calls beyond its own code
 * (gateway/conn/nosyscall.c says why each is needed).
 */
#ifndef TES_GATEWAY_CONN_NOSYSCALL_H
#define TES_GATEWAY_CONN_NOSYSCALL_H

#include <stddef.h>

/* On the worker thread, before its loop (it may make system calls): from
 * now on the thread allocates from a jemalloc arena of its own that never
 * gives pages back to the kernel.  Returns 0, or -1 with err set. */
int nosyscall_worker_arena(char *err, size_t errlen);

#endif
