/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * jemalloc's start-up options for tesgate, read before the first
 * allocation.  background_thread: dirty pages are returned to the kernel
 * (madvise) by jemalloc's own threads rather than by whichever thread
 * happened to free memory, so a DPDK worker never makes that system call
 * in its poll loop (tests/dpdk/test_dpdk_nosyscall.py found it doing so).
 */
const char *malloc_conf = "background_thread:true";
