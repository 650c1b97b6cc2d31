/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The admin socket's connections (admin.h): frames in, one command each,
 * responses out.
 */
#include "controlplane/admin/admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "contract/adminproto.h"
#include "controlplane/admin/admin_int.h"
#include "controlplane/log.h"

/* Replies waiting for a client to read them, at most: four of the largest
 * frames.  A client that keeps asking and never reads is cut off there
 * (as Redis's client-output-buffer-limit does), instead of growing
 * tescontrol's memory without bound; one that reads gets everything. */
#define ADMIN_OUTQ_MAX (4u * CTL_FRAME_MAX)

struct cp_admin_conn {
	struct cp_watch w;
	struct cp_admin *admin;
	struct cp_admin_conn *next;
	unsigned id;
	struct ctl_decoder dec;
	struct cp_outq out;
	uint32_t events;
	bool dead;
	struct ucred cred;
};

json_t *cp_admin_run(struct cp_admin *a, const char *cmd, const json_t *args,
		     const struct ucred *caller)
{
	json_t *none = NULL, *result = NULL, *resp;
	char err[1024] = "";

	if (!args)
		args = none = json_object();
	for (size_t i = 0; i < admin_ncommands; i++) {
		int rc;

		if (strcmp(cmd, admin_commands[i].name) != 0)
			continue;
		a->caller = caller;
		rc = admin_commands[i].fn(a, args, &result, err, sizeof(err));
		a->caller = NULL;
		json_decref(none);
		if (rc)
			return admin_response_error("%s", err[0] ? err : "failed");
		return admin_response_ok(result);
	}
	resp = admin_response_error("unknown command \"%.60s\"", cmd);
	json_decref(none);
	return resp;
}

static struct cp_admin_conn *conn_of(struct cp_watch *w)
{
	/* w is the first member: the watch is the connection. */
	_Static_assert(offsetof(struct cp_admin_conn, w) == 0, "w must come first");
	return (struct cp_admin_conn *)w;
}

static void conn_close(struct cp_admin_conn *c)
{
	if (c->dead)
		return;
	cp_watch_del(c->admin->loop, &c->w);
	close(c->w.fd);
	c->w.fd = -1;
	c->dead = true;
}

static void conn_reject(struct cp_admin_conn *c, const char *why)
{
	json_t *m = admin_response_error("bad request: %s", why);
	char err[CTL_ERR_MAX];
	uint8_t *frame;
	size_t n;

	cp_warn("admin #%u (pid %d, uid %u): bad input: %s; disconnecting it", c->id,
		(int)c->cred.pid, (unsigned)c->cred.uid, why);
	if (m && ctl_frame_encode(m, &frame, &n, err, sizeof(err)) == 0) {
		ssize_t rc = send(c->w.fd, frame, n, MSG_NOSIGNAL | MSG_DONTWAIT);

		(void)rc;
		free(frame);
	}
	json_decref(m);
	conn_close(c);
}

static void handle_request(struct cp_admin_conn *c, const json_t *req)
{
	const char *cmd;
	json_t *args, *resp;
	char cerr[CTL_ERR_MAX];

	if (admin_request_parse(req, &cmd, &args, cerr, sizeof(cerr))) {
		conn_reject(c, cerr);
		return;
	}
	resp = cp_admin_run(c->admin, cmd, args, &c->cred);
	cp_debug("admin #%u: %s -> %s", c->id, cmd,
		 json_is_true(json_object_get(resp, "ok")) ? "ok" : "error");
	/* A result too big for one frame becomes an error, not a dropped
	 * connection: the client learns to ask for less. */
	if (cp_outq_push(&c->out, resp))
		cp_outq_push(&c->out, admin_response_error("the result of %s does not fit in one"
							   " frame; ask for less (report --limit)",
							   cmd));
	/* what the socket takes now is not waiting */
	if (c->out.len > ADMIN_OUTQ_MAX && cp_outq_flush(&c->out, c->w.fd) < 0) {
		conn_close(c);
		return;
	}
	if (c->out.len > ADMIN_OUTQ_MAX) {
		cp_warn("admin #%u (pid %d, uid %u): %zu octets of replies unread (at most %u): "
			"the client does not read them; disconnecting it",
			c->id, (int)c->cred.pid, (unsigned)c->cred.uid, c->out.len, ADMIN_OUTQ_MAX);
		conn_close(c);
	}
}

static void conn_pump(struct cp_admin_conn *c)
{
	uint32_t ev;

	if (cp_outq_flush(&c->out, c->w.fd) < 0) {
		conn_close(c);
		return;
	}
	ev = EPOLLIN | (c->out.len ? EPOLLOUT : 0);
	if (ev != c->events) {
		c->events = ev;
		cp_watch_mod(c->admin->loop, &c->w, ev);
	}
}

/* Feed what was read to the decoder and run every whole request. */
static void conn_feed(struct cp_admin_conn *c, const uint8_t *buf, size_t n)
{
	size_t off = 0;

	while (!c->dead && off < n) {
		size_t took = ctl_decoder_feed(&c->dec, buf + off, n - off);
		enum ctl_rc rc = CTL_MORE;
		json_t *m;

		off += took;
		while (!c->dead && (rc = ctl_decoder_next(&c->dec, &m)) == CTL_FRAME) {
			handle_request(c, m);
			json_decref(m);
		}
		if (c->dead)
			return;
		if (rc == CTL_ERROR || (took == 0 && off < n)) {
			conn_reject(c, c->dec.err);
			return;
		}
	}
}

static void on_conn(struct cp_watch *w, uint32_t events)
{
	struct cp_admin_conn *c = conn_of(w);
	uint8_t buf[65536];

	if (c->dead)
		return;
	if (events & EPOLLOUT)
		conn_pump(c);
	if (c->dead || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	for (int r = 0; r < 32 && !c->dead; r++) {
		ssize_t n = recv(c->w.fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				conn_close(c);
			break;
		}
		if (n == 0) {
			if (ctl_decoder_eof(&c->dec) == CTL_ERROR)
				conn_reject(c, c->dec.err);
			else
				conn_close(c);
			return;
		}
		conn_feed(c, buf, (size_t)n);
	}
	if (!c->dead)
		conn_pump(c);
}

static void on_accept(struct cp_watch *w, uint32_t events)
{
	struct cp_admin *a = cp_container_of(w, struct cp_admin, listen);

	(void)events;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct cp_admin_conn *c;
		struct ucred cred;
		char why[256];

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				cp_warn("admin socket: accept: %s", strerror(errno));
			return;
		}
		if (cp_peer_check(fd, a->with_group, a->gid, &cred, why, sizeof(why))) {
			cp_warn("admin socket: refused a connection: %s", why);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->w.fd = fd;
		c->w.fn = on_conn;
		c->admin = a;
		c->id = ++a->loop->next_conn_id;
		c->cred = cred;
		c->events = EPOLLIN;
		ctl_decoder_init(&c->dec, CTL_FRAME_MAX);
		if (cp_watch_add(a->loop, &c->w, EPOLLIN)) {
			close(fd);
			free(c);
			continue;
		}
		c->next = a->conns;
		a->conns = c;
	}
}

void cp_admin_reap(struct cp_admin *a)
{
	struct cp_admin_conn **pp = &a->conns;

	while (*pp) {
		struct cp_admin_conn *c = *pp;

		if (!c->dead) {
			pp = &c->next;
			continue;
		}
		*pp = c->next;
		ctl_decoder_free(&c->dec);
		cp_outq_free(&c->out);
		free(c);
	}
}

void cp_admin_init(struct cp_admin *a, struct cp_loop *loop, struct cp_state *st,
		   struct cp_esc *esc, const struct cp_gateways *gws, struct cp_xdp *xdp,
		   const char *db_path)
{
	memset(a, 0, sizeof(*a));
	a->loop = loop;
	a->st = st;
	a->esc = esc;
	a->gws = gws;
	a->xdp = xdp;
	a->db_path = db_path;
	a->listen.fd = -1;
	a->listen.fn = on_accept;
}

int cp_admin_listen(struct cp_admin *a, const char *path, bool with_group, gid_t gid)
{
	char err[512];
	int fd = cp_listen_unix(path, with_group, gid, err, sizeof(err));

	if (fd < 0) {
		cp_err("admin socket: %s", err);
		return -1;
	}
	a->path = path;
	a->with_group = with_group;
	a->gid = gid;
	a->listen.fd = fd;
	if (cp_watch_add(a->loop, &a->listen, EPOLLIN)) {
		cp_err("admin socket: epoll: %s", strerror(errno));
		return -1;
	}
	cp_info("admin socket %s (%s)", path,
		with_group ? "mode 0660, root and the admin group" : "mode 0600");
	return 0;
}

void cp_admin_stop(struct cp_admin *a)
{
	for (struct cp_admin_conn *c = a->conns; c; c = c->next) {
		cp_outq_flush(&c->out, c->w.fd);
		conn_close(c);
	}
	cp_admin_reap(a);
	if (a->listen.fd >= 0) {
		close(a->listen.fd);
		unlink(a->path);
		a->listen.fd = -1;
	}
}
