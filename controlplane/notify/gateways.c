/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The gateway socket: any number of tesgate processes connect, say hello,
 * receive a full state (sync-begin ... sync-end) and then incremental
 * updates; they send sightings and counters.  A gateway that sends anything
 * malformed is logged once and disconnected; nobody else notices.
 *
 * A full sync of many servers is produced as the socket drains (a cursor
 * over the server slots), so one slow gateway never makes tescontrol build
 * its whole state in memory at once.
 */
#include "controlplane/cp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* How much to queue ahead while producing a sync. */
#define SYNC_LOW_WATER (256u * 1024u)
/* A gateway that lets this much pile up is not reading: drop it (it
 * resynchronises when it reconnects). */
#define GW_OUTQ_MAX (64u * 1024u * 1024u)
/* Fairness: frames handled per wake-up before others get a turn. */
#define GW_READS_PER_EVENT 16

/* One connected tesgate.  Not gateway/'s struct gw_conn (an SMTP session
 * inside tesgate): a type's name means one thing in the tree. */
struct cp_gateway {
	struct cp_watch w;
	struct cp_gateway *next;
	unsigned id;
	struct ctl_decoder dec;
	struct cp_outq out;
	uint32_t events;
	bool hello;
	bool syncing;
	bool dead;
	uint32_t cursor; /* next server slot to send during a sync */
	struct ctl_hello info;
	struct ucred cred;
	int64_t connected_at;
	uint64_t sightings;
	json_t *counters;
	int64_t counters_at;
};

static struct cp_gateway *gw_of(struct cp_watch *w)
{
	/* w is the first member: the watch is the connection. */
	_Static_assert(offsetof(struct cp_gateway, w) == 0, "w must come first");
	return (struct cp_gateway *)w;
}

static const char *gw_name(const struct cp_gateway *g, char *buf, size_t len)
{
	if (g->hello)
		snprintf(buf, len, "gateway #%u \"%s\" (pid %d)", g->id, g->info.gateway,
			 (int)g->cred.pid);
	else
		snprintf(buf, len, "gateway #%u (pid %d)", g->id, (int)g->cred.pid);
	return buf;
}

static void gw_close(struct cp *cp, struct cp_gateway *g)
{
	if (g->dead)
		return;
	cp_watch_del(cp, &g->w);
	close(g->w.fd);
	g->w.fd = -1;
	g->dead = true;
	cp->ngws--;
}

/* Drop a peer that broke the protocol: one log line, a best-effort error
 * frame so its own log says why, and the connection closed. */
static void gw_reject(struct cp *cp, struct cp_gateway *g, const char *why)
{
	struct ctl_error err;
	char name[128];
	uint8_t *frame;
	size_t n;

	cp_warn("%s: bad input: %s; disconnecting it", gw_name(g, name, sizeof(name)), why);
	{
		json_t *m = ctl_error_msg(why);

		if (m && ctl_frame_encode(m, &frame, &n, &err) == 0) {
			ssize_t rc = send(g->w.fd, frame, n, MSG_NOSIGNAL | MSG_DONTWAIT);

			(void)rc;
			free(frame);
		}
		json_decref(m);
	}
	gw_close(cp, g);
}

static void set_events(struct cp *cp, struct cp_gateway *g)
{
	uint32_t ev = EPOLLIN | (g->out.len || g->syncing ? EPOLLOUT : 0);

	if (ev != g->events && !g->dead) {
		g->events = ev;
		cp_watch_mod(cp, &g->w, ev);
	}
}

static void fill_sync(struct cp *cp, struct cp_gateway *g)
{
	int64_t now = cp_now(cp);

	while (g->syncing && g->out.len < SYNC_LOW_WATER) {
		struct cp_server *c;

		while (g->cursor < cp->st.nslots && !cp->st.srv[g->cursor].live)
			g->cursor++;
		if (g->cursor >= cp->st.nslots) {
			char name[128];
			json_t *end = ctl_sync_end_to_json();

			if (end)
				ctl_msg_set_gen(end, cp->gen);
			cp_outq_push(&g->out, end);
			g->syncing = false;
			cp_info("%s: full state sent", gw_name(g, name, sizeof(name)));
			break;
		}
		c = &cp->st.srv[g->cursor++];
		{
			unsigned stage;
			enum tes_status status;

			cp_server_view(cp, &c->v.s, now, &stage, &status);
			cp_outq_push(&g->out, ctl_server_msg(&c->v.s, stage, status, now));
		}
	}
}

/* Write what we can; drop the gateway on a write error or when it has
 * stopped reading. */
static void gw_pump(struct cp *cp, struct cp_gateway *g)
{
	char name[128];

	for (int round = 0; round < 64 && !g->dead; round++) {
		int rc = cp_outq_flush(&g->out, g->w.fd);

		if (rc < 0) {
			cp_info("%s: write failed (%s); disconnecting it",
				gw_name(g, name, sizeof(name)), strerror(errno));
			gw_close(cp, g);
			return;
		}
		if (rc == 0 || !g->syncing)
			break;
		fill_sync(cp, g);
	}
	if (g->out.len > GW_OUTQ_MAX) {
		cp_warn("%s: %zu octets queued and not read; disconnecting it",
			gw_name(g, name, sizeof(name)), g->out.len);
		gw_close(cp, g);
		return;
	}
	set_events(cp, g);
}

static void start_sync(struct cp *cp, struct cp_gateway *g)
{
	int64_t now = cp_now(cp);

	cp_outq_push(&g->out,
		     ctl_sync_begin_to_json(now, cp->test_clock, cp->st.ntenants, cp->st.nlive));
	cp_outq_push(&g->out, ctl_policy_msg(cp->policy_doc.text, cp->policy_doc.name,
					     cp->policy_doc.version));
	cp_outq_push(&g->out, ctl_catalog_msg(cp->builds.text, cp->builds.name, cp->compliance.text,
					      cp->compliance.name, catalog_version(cp->catalog)));
	for (size_t i = 0; i < cp->st.ntenants; i++)
		cp_outq_push(&g->out, ctl_tenant_msg(&cp->st.tenants[i]));
	g->syncing = true;
	g->cursor = 0;
	fill_sync(cp, g);
}

static void handle_sighting(struct cp *cp, struct cp_gateway *g, const json_t *m)
{
	struct ctl_sighting s;
	struct ctl_error err;
	enum tes_change change;
	char msg[256], name[128];

	if (ctl_sighting_from_json(m, &s, &err)) {
		char why[300];

		snprintf(why, sizeof(why), "bad sighting: %s", err.msg);
		gw_reject(cp, g, why);
		return;
	}
	g->sightings += s.count ? s.count : 1;
	if (cp_apply_sighting(cp, &s, &change, msg, sizeof(msg))) {
		cp->counts.sightings_refused++;
		cp_info("%s: sighting of %s refused: %s", gw_name(g, name, sizeof(name)), s.fqdn,
			msg);
		cp_outq_push(&g->out, ctl_ack_msg(s.seq, false, ctl_change_name(change), msg));
		return;
	}
	cp_outq_push(&g->out, ctl_ack_msg(s.seq, true, ctl_change_name(change), NULL));
}

static void handle_msg(struct cp *cp, struct cp_gateway *g, json_t *m)
{
	const char *type = ctl_msg_type(m);
	struct ctl_error err;
	char why[300], name[128];

	if (!type) {
		gw_reject(cp, g, "frame without a \"type\"");
		return;
	}
	if (!g->hello) {
		if (strcmp(type, CTL_T_HELLO) != 0) {
			snprintf(why, sizeof(why), "expected hello first, got \"%.40s\"", type);
			gw_reject(cp, g, why);
			return;
		}
		if (ctl_hello_from_json(m, &g->info, &err)) {
			snprintf(why, sizeof(why), "bad hello: %s", err.msg);
			gw_reject(cp, g, why);
			return;
		}
		g->hello = true;
		cp_info("%s: hello, version %s (uid %u); sending the full state",
			gw_name(g, name, sizeof(name)), g->info.version, (unsigned)g->cred.uid);
		start_sync(cp, g);
		return;
	}
	if (strcmp(type, CTL_T_SIGHTING) == 0) {
		handle_sighting(cp, g, m);
	} else if (strcmp(type, CTL_T_COUNTERS) == 0) {
		json_t *c;

		if (ctl_counters_from_json(m, &c, &err)) {
			snprintf(why, sizeof(why), "bad counters: %s", err.msg);
			gw_reject(cp, g, why);
			return;
		}
		json_decref(g->counters);
		g->counters = c;
		g->counters_at = cp_now(cp);
	} else if (strcmp(type, CTL_T_HELLO) == 0) {
		gw_reject(cp, g, "a second hello");
	} else {
		snprintf(why, sizeof(why), "unknown message type \"%.40s\"", type);
		gw_reject(cp, g, why);
	}
}

static void on_gw(struct cp *cp, struct cp_watch *w, uint32_t events)
{
	struct cp_gateway *g = gw_of(w);
	char name[128];
	uint8_t buf[65536];

	if (g->dead)
		return;
	if (events & EPOLLOUT)
		gw_pump(cp, g);
	if (g->dead || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	for (int r = 0; r < GW_READS_PER_EVENT && !g->dead; r++) {
		ssize_t n = recv(g->w.fd, buf, sizeof(buf), MSG_DONTWAIT);
		size_t off = 0;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			cp_info("%s: read failed (%s); disconnecting it",
				gw_name(g, name, sizeof(name)), strerror(errno));
			gw_close(cp, g);
			return;
		}
		if (n == 0) {
			if (ctl_decoder_eof(&g->dec) == CTL_ERROR) {
				gw_reject(cp, g, g->dec.err.msg);
			} else {
				cp_info("%s: disconnected", gw_name(g, name, sizeof(name)));
				gw_close(cp, g);
			}
			return;
		}
		while (!g->dead && off < (size_t)n) {
			size_t took = ctl_decoder_feed(&g->dec, buf + off, (size_t)n - off);
			json_t *m;
			enum ctl_rc rc;

			off += took;
			while (!g->dead && (rc = ctl_decoder_next(&g->dec, &m)) == CTL_FRAME) {
				handle_msg(cp, g, m);
				json_decref(m);
			}
			if (g->dead)
				return;
			if (rc == CTL_ERROR) {
				gw_reject(cp, g, g->dec.err.msg);
				return;
			}
			if (took == 0 && off < (size_t)n) {
				gw_reject(cp, g,
					  g->dec.failed ? g->dec.err.msg : "decoder stalled");
				return;
			}
		}
	}
	if (!g->dead)
		gw_pump(cp, g);
}

static void on_accept(struct cp *cp, struct cp_watch *w, uint32_t events)
{
	(void)events;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct cp_gateway *g;
		char why[256];
		struct ucred cred;

		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				cp_warn("gateway socket: accept: %s", strerror(errno));
			return;
		}
		if (cp_peer_check(fd, cp->gateway_gid_set, cp->gateway_gid, &cred, why,
				  sizeof(why))) {
			cp_warn("gateway socket: refused a connection: %s", why);
			close(fd);
			continue;
		}
		g = calloc(1, sizeof(*g));
		if (!g) {
			cp_err("gateway socket: out of memory");
			close(fd);
			continue;
		}
		g->w.fd = fd;
		g->w.fn = on_gw;
		g->id = ++cp->next_conn_id;
		g->cred = cred;
		g->connected_at = cp_now(cp);
		g->events = EPOLLIN;
		ctl_decoder_init(&g->dec, CTL_FRAME_MAX);
		if (cp_watch_add(cp, &g->w, EPOLLIN)) {
			cp_err("gateway socket: epoll: %s", strerror(errno));
			close(fd);
			free(g);
			continue;
		}
		g->next = cp->gws;
		cp->gws = g;
		cp->ngws++;
		cp_debug("gateway #%u connected (pid %d, uid %u)", g->id, (int)cred.pid,
			 (unsigned)cred.uid);
	}
}

void gw_reap(struct cp *cp)
{
	struct cp_gateway **pp = &cp->gws;

	while (*pp) {
		struct cp_gateway *g = *pp;

		if (!g->dead) {
			pp = &g->next;
			continue;
		}
		*pp = g->next;
		ctl_decoder_free(&g->dec);
		cp_outq_free(&g->out);
		json_decref(g->counters);
		free(g);
	}
}

int gw_init(struct cp *cp)
{
	char err[512];
	int fd = cp_listen_unix(cp->cfg.gateway_socket, cp->gateway_gid_set, cp->gateway_gid, err,
				sizeof(err));

	if (fd < 0) {
		cp_err("gateway socket: %s", err);
		return -1;
	}
	cp->gw_listen.fd = fd;
	cp->gw_listen.fn = on_accept;
	if (cp_watch_add(cp, &cp->gw_listen, EPOLLIN)) {
		cp_err("gateway socket: epoll: %s", strerror(errno));
		return -1;
	}
	cp_info("gateway socket %s", cp->cfg.gateway_socket);
	return 0;
}

void gw_shutdown(struct cp *cp)
{
	for (struct cp_gateway *g = cp->gws; g; g = g->next) {
		/* What is queued (acks, updates) still goes out if it can. */
		cp_outq_flush(&g->out, g->w.fd);
		gw_close(cp, g);
	}
	gw_reap(cp);
	if (cp->gw_listen.fd >= 0) {
		close(cp->gw_listen.fd);
		unlink(cp->cfg.gateway_socket);
		cp->gw_listen.fd = -1;
	}
}

void gw_broadcast(struct cp *cp, json_t *msg)
{
	struct ctl_error err;
	uint8_t *frame;
	size_t n;

	if (!msg)
		return;
	ctl_msg_set_gen(msg, ++cp->gen);
	if (ctl_frame_encode(msg, &frame, &n, &err)) {
		cp_err("cannot send an update to the gateways: %s", err.msg);
		json_decref(msg);
		return;
	}
	json_decref(msg);
	for (struct cp_gateway *g = cp->gws; g; g = g->next) {
		if (g->dead || !g->hello)
			continue;
		if (cp_outq_push_raw(&g->out, frame, n)) {
			char name[128];

			cp_err("%s: out of memory queueing an update; disconnecting it",
			       gw_name(g, name, sizeof(name)));
			gw_close(cp, g);
			continue;
		}
		gw_pump(cp, g);
	}
	free(frame);
}

void gw_push_server(struct cp *cp, uint32_t slot, int64_t now)
{
	struct cp_server *c = cp_server_at(&cp->st, slot);
	unsigned stage;
	enum tes_status status;

	if (!c)
		return;
	/* What every gateway now has (one that syncs later gets the current
	 * values anyway). */
	c->pushed_last_seen = c->v.s.last_seen;
	memcpy(c->pushed_source_seen, c->v.s.source_seen, sizeof(c->pushed_source_seen));
	if (!cp->gws)
		return;
	cp_server_view(cp, &c->v.s, now, &stage, &status);
	gw_broadcast(cp, ctl_server_msg(&c->v.s, stage, status, now));
}

void gw_push_tenant(struct cp *cp, const struct tes_tenant *t)
{
	if (cp->gws)
		gw_broadcast(cp, ctl_tenant_msg(t));
}

void gw_push_policy(struct cp *cp)
{
	gw_broadcast(cp, ctl_policy_msg(cp->policy_doc.text, cp->policy_doc.name,
					cp->policy_doc.version));
}

void gw_push_catalog(struct cp *cp)
{
	gw_broadcast(cp, ctl_catalog_msg(cp->builds.text, cp->builds.name, cp->compliance.text,
					 cp->compliance.name, catalog_version(cp->catalog)));
}

json_t *gw_status_json(struct cp *cp)
{
	json_t *arr = json_array();

	for (struct cp_gateway *g = cp->gws; g; g = g->next) {
		json_t *o;

		if (g->dead)
			continue;
		o = json_pack("{s:i, s:s, s:s, s:i, s:i, s:I, s:b, s:I}", "conn", (int)g->id,
			      "gateway", g->hello ? g->info.gateway : "", "version",
			      g->hello ? g->info.version : "", "pid", (int)g->cred.pid, "uid",
			      (int)g->cred.uid, "connected_at", (json_int_t)g->connected_at,
			      "synced", g->hello && !g->syncing, "sightings",
			      (json_int_t)g->sightings);
		if (o && g->counters)
			json_object_set(o, "counters", g->counters);
		json_array_append_new(arr, o);
	}
	return arr;
}
