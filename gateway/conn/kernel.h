/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The kernel-socket transport: kio (dataplane/kio.h) adapted to the
 * transport seam (gateway/conn/transport.h).  kio's epoll workers, one
 * SO_REUSEPORT socket each, run the sessions of conn.c; its limits, idle,
 * session and linger deadlines and graceful shutdown are the transport's.
 *
 * Binding comes first and apart from the gateway (gw_kernel_bind), so that
 * tesgate binds while it is the only thread and may still drop a
 * capability needed only to bind; the gateway that sessions run in is
 * attached later (gw_kernel_attach), before the workers start.
 *
 * Threading: main thread only; what it makes is driven through struct
 * gw_io (transport.h).
 */
#ifndef TES_GATEWAY_CONN_KERNEL_H
#define TES_GATEWAY_CONN_KERNEL_H

#include <stddef.h>

#include "gateway/conn/transport.h"

struct gw;

/* Bind the listening sockets of s->workers workers on s->listen; no
 * thread yet.  linger_ms: how long the last output of a closing connection
 * may take.  0 with *io filled, or -1 with err set. */
int gw_kernel_bind(const struct gw_io_settings *s, unsigned linger_ms, struct gw_io *io, char *err,
		   size_t errlen);
/* The gateway the sessions run in, and its refusal lines.  Before start. */
void gw_kernel_attach(struct gw_io *io, struct gw *g);
/* The address bound ("127.0.0.1:2525", port 0 resolved), for the log. */
void gw_kernel_where(const struct gw_io *io, char *buf, size_t len);

#endif
