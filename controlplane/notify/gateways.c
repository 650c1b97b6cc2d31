/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The gateway socket (gateways.h).
 *
 * A full sync of many servers is produced as the socket drains (a cursor
 * over the server slots), so one slow gateway never makes tescontrol build
 * its whole state in memory at once.
 */
#include "controlplane/notify/gateways.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "controlplane/log.h"

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
	struct cp_gateways *all;
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

static void gw_close(struct cp_gateway *g)
{
	if (g->dead)
		return;
	cp_watch_del(g->all->loop, &g->w);
	close(g->w.fd);
	g->w.fd = -1;
	g->dead = true;
	g->all->n--;
}

/* Drop a peer that broke the protocol: one log line, a best-effort error
 * frame so its own log says why, and the connection closed. */
static void gw_reject(struct cp_gateway *g, const char *why)
{
	char err[CTL_ERR_MAX];
	char name[128];
	uint8_t *frame;
	size_t n;

	cp_warn("%s: bad input: %s; disconnecting it", gw_name(g, name, sizeof(name)), why);
	{
		json_t *m = ctl_error_msg(why);

		if (m && ctl_frame_encode(m, &frame, &n, err, sizeof(err)) == 0) {
			ssize_t rc = send(g->w.fd, frame, n, MSG_NOSIGNAL | MSG_DONTWAIT);

			(void)rc;
			free(frame);
		}
		json_decref(m);
	}
	gw_close(g);
}

static void set_events(struct cp_gateway *g)
{
	uint32_t ev = EPOLLIN | (g->out.len || g->syncing ? EPOLLOUT : 0);

	if (ev != g->events && !g->dead) {
		g->events = ev;
		cp_watch_mod(g->all->loop, &g->w, ev);
	}
}

static void fill_sync(struct cp_gateway *g)
{
	const struct cp_state *st = g->all->st;
	int64_t now = cp_state_now(st);

	while (g->syncing && g->out.len < SYNC_LOW_WATER) {
		const struct cp_server *c;

		while (g->cursor < st->tab.nslots && !st->tab.srv[g->cursor].live)
			g->cursor++;
		if (g->cursor >= st->tab.nslots) {
			char name[128];
			json_t *end = ctl_sync_end_to_json();

			if (end)
				ctl_msg_set_gen(end, g->all->gen);
			cp_outq_push(&g->out, end);
			g->syncing = false;
			cp_info("%s: full state sent", gw_name(g, name, sizeof(name)));
			break;
		}
		c = &st->tab.srv[g->cursor++];
		{
			unsigned stage;
			enum tes_status status;

			cp_state_server_view(st, &c->v.s, now, &stage, &status);
			cp_outq_push(&g->out, ctl_server_msg(&c->v.s, stage, status, now));
		}
	}
}

/* Write what we can; drop the gateway on a write error or when it has
 * stopped reading. */
static void gw_pump(struct cp_gateway *g)
{
	char name[128];

	for (int round = 0; round < 64 && !g->dead; round++) {
		int rc = cp_outq_flush(&g->out, g->w.fd);

		if (rc < 0) {
			cp_info("%s: write failed (%s); disconnecting it",
				gw_name(g, name, sizeof(name)), strerror(errno));
			gw_close(g);
			return;
		}
		if (rc == 0 || !g->syncing)
			break;
		fill_sync(g);
	}
	if (g->out.len > GW_OUTQ_MAX) {
		cp_warn("%s: %zu octets queued and not read; disconnecting it",
			gw_name(g, name, sizeof(name)), g->out.len);
		gw_close(g);
		return;
	}
	set_events(g);
}

static json_t *policy_msg(const struct cp_state *st)
{
	return ctl_policy_msg(st->policy_doc.text, st->policy_doc.name, st->policy_doc.version);
}

static json_t *catalog_msg(const struct cp_state *st)
{
	return ctl_catalog_msg(st->builds.text, st->builds.name, st->compliance.text,
			       st->compliance.name, catalog_version(st->catalog));
}

static void start_sync(struct cp_gateway *g)
{
	const struct cp_state *st = g->all->st;

	cp_outq_push(&g->out, ctl_sync_begin_to_json(cp_state_now(st), st->clock->test,
						     st->tab.ntenants, st->tab.nlive));
	cp_outq_push(&g->out, policy_msg(st));
	cp_outq_push(&g->out, catalog_msg(st));
	for (size_t i = 0; i < st->tab.ntenants; i++)
		cp_outq_push(&g->out, ctl_tenant_msg(&st->tab.tenants[i]));
	g->syncing = true;
	g->cursor = 0;
	fill_sync(g);
}

static void handle_sighting(struct cp_gateway *g, const json_t *m)
{
	struct ctl_sighting s;
	char err[CTL_ERR_MAX];
	enum tes_change change;
	char msg[256], name[128];

	if (ctl_sighting_from_json(m, &s, err, sizeof(err))) {
		char why[300];

		snprintf(why, sizeof(why), "bad sighting: %s", err);
		gw_reject(g, why);
		return;
	}
	g->sightings += s.count ? s.count : 1;
	if (cp_state_apply_sighting(g->all->st, &s, &change, msg, sizeof(msg))) {
		cp_info("%s: sighting of %s refused: %s", gw_name(g, name, sizeof(name)), s.fqdn,
			msg);
		cp_outq_push(&g->out, ctl_ack_msg(s.seq, false, ctl_change_name(change), msg));
		return;
	}
	cp_outq_push(&g->out, ctl_ack_msg(s.seq, true, ctl_change_name(change), NULL));
}

static int no_count(const struct ctl_server_count *c, void *ctx)
{
	(void)c;
	(void)ctx;
	return 0;
}

static void handle_msg(struct cp_gateway *g, json_t *m)
{
	const char *type = ctl_msg_type(m);
	char err[CTL_ERR_MAX];
	char why[300], name[128];

	if (!type) {
		gw_reject(g, "frame without a \"type\"");
		return;
	}
	if (!g->hello) {
		if (strcmp(type, CTL_T_HELLO) != 0) {
			snprintf(why, sizeof(why), "expected hello first, got \"%.40s\"", type);
			gw_reject(g, why);
			return;
		}
		if (ctl_hello_from_json(m, &g->info, err, sizeof(err))) {
			snprintf(why, sizeof(why), "bad hello: %s", err);
			gw_reject(g, why);
			return;
		}
		g->hello = true;
		cp_info("%s: hello, version %s (uid %u); sending the full state",
			gw_name(g, name, sizeof(name)), g->info.version, (unsigned)g->cred.uid);
		start_sync(g);
		return;
	}
	if (strcmp(type, CTL_T_SIGHTING) == 0) {
		handle_sighting(g, m);
	} else if (strcmp(type, CTL_T_COUNTERS) == 0) {
		json_t *c;

		if (ctl_counters_from_json(m, &c, err, sizeof(err))) {
			snprintf(why, sizeof(why), "bad counters: %s", err);
			gw_reject(g, why);
			return;
		}
		if (ctl_server_counts_from_json(m, g->all->on_count ? g->all->on_count : no_count,
						g->all->on_count_ctx, err, sizeof(err))) {
			snprintf(why, sizeof(why), "bad counters: %s", err);
			json_decref(c);
			gw_reject(g, why);
			return;
		}
		json_decref(g->counters);
		g->counters = c;
		g->counters_at = cp_state_now(g->all->st);
	} else if (strcmp(type, CTL_T_HELLO) == 0) {
		gw_reject(g, "a second hello");
	} else {
		snprintf(why, sizeof(why), "unknown message type \"%.40s\"", type);
		gw_reject(g, why);
	}
}

static void on_gw(struct cp_watch *w, uint32_t events)
{
	struct cp_gateway *g = gw_of(w);
	char name[128];
	uint8_t buf[65536];

	if (g->dead)
		return;
	if (events & EPOLLOUT)
		gw_pump(g);
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
			gw_close(g);
			return;
		}
		if (n == 0) {
			if (ctl_decoder_eof(&g->dec) == CTL_ERROR) {
				gw_reject(g, g->dec.err);
			} else {
				cp_info("%s: disconnected", gw_name(g, name, sizeof(name)));
				gw_close(g);
			}
			return;
		}
		while (!g->dead && off < (size_t)n) {
			size_t took = ctl_decoder_feed(&g->dec, buf + off, (size_t)n - off);
			json_t *m;
			enum ctl_rc rc;

			off += took;
			while (!g->dead && (rc = ctl_decoder_next(&g->dec, &m)) == CTL_FRAME) {
				handle_msg(g, m);
				json_decref(m);
			}
			if (g->dead)
				return;
			if (rc == CTL_ERROR) {
				gw_reject(g, g->dec.err);
				return;
			}
			if (took == 0 && off < (size_t)n) {
				gw_reject(g, g->dec.failed ? g->dec.err : "decoder stalled");
				return;
			}
		}
	}
	if (!g->dead)
		gw_pump(g);
}

static void on_accept(struct cp_watch *w, uint32_t events)
{
	struct cp_gateways *all = cp_container_of(w, struct cp_gateways, listen);

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
		if (cp_peer_check(fd, all->with_group, all->gid, &cred, why, sizeof(why))) {
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
		g->all = all;
		g->id = ++all->loop->next_conn_id;
		g->cred = cred;
		g->connected_at = cp_state_now(all->st);
		g->events = EPOLLIN;
		ctl_decoder_init(&g->dec, CTL_FRAME_MAX);
		if (cp_watch_add(all->loop, &g->w, EPOLLIN)) {
			cp_err("gateway socket: epoll: %s", strerror(errno));
			close(fd);
			free(g);
			continue;
		}
		g->next = all->list;
		all->list = g;
		all->n++;
		cp_debug("gateway #%u connected (pid %d, uid %u)", g->id, (int)cred.pid,
			 (unsigned)cred.uid);
	}
}

void cp_gateways_reap(struct cp_gateways *all)
{
	struct cp_gateway **pp = &all->list;

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

void cp_gateways_init(struct cp_gateways *all, struct cp_loop *loop, struct cp_state *st,
		      uint64_t gen0)
{
	memset(all, 0, sizeof(*all));
	all->loop = loop;
	all->st = st;
	all->listen.fd = -1;
	all->listen.fn = on_accept;
	all->gen = gen0;
}

int cp_gateways_listen(struct cp_gateways *all, const char *path, bool with_group, gid_t gid)
{
	char err[512];
	int fd = cp_listen_unix(path, with_group, gid, err, sizeof(err));

	if (fd < 0) {
		cp_err("gateway socket: %s", err);
		return -1;
	}
	all->path = path;
	all->with_group = with_group;
	all->gid = gid;
	all->listen.fd = fd;
	if (cp_watch_add(all->loop, &all->listen, EPOLLIN)) {
		cp_err("gateway socket: epoll: %s", strerror(errno));
		return -1;
	}
	cp_info("gateway socket %s", path);
	return 0;
}

void cp_gateways_stop(struct cp_gateways *all)
{
	for (struct cp_gateway *g = all->list; g; g = g->next) {
		/* What is queued (acks, updates) still goes out if it can. */
		cp_outq_flush(&g->out, g->w.fd);
		gw_close(g);
	}
	cp_gateways_reap(all);
	if (all->listen.fd >= 0) {
		close(all->listen.fd);
		unlink(all->path);
		all->listen.fd = -1;
	}
}

/* Queue msg to every gateway that said hello (consumes the reference). */
static void broadcast(struct cp_gateways *all, json_t *msg)
{
	char err[CTL_ERR_MAX];
	uint8_t *frame;
	size_t n;

	if (!msg)
		return;
	ctl_msg_set_gen(msg, ++all->gen);
	if (ctl_frame_encode(msg, &frame, &n, err, sizeof(err))) {
		cp_err("cannot send an update to the gateways: %s", err);
		json_decref(msg);
		return;
	}
	json_decref(msg);
	for (struct cp_gateway *g = all->list; g; g = g->next) {
		if (g->dead || !g->hello)
			continue;
		if (cp_outq_push_raw(&g->out, frame, n)) {
			char name[128];

			cp_err("%s: out of memory queueing an update; disconnecting it",
			       gw_name(g, name, sizeof(name)));
			gw_close(g);
			continue;
		}
		gw_pump(g);
	}
	free(frame);
}

void cp_gateways_on_note(void *ctx, const struct cp_note *n)
{
	struct cp_gateways *all = ctx;
	const struct cp_state *st = all->st;
	unsigned stage;
	enum tes_status status;

	switch (n->kind) {
	case CP_NOTE_SERVER:
		/* Nobody to tell is no new generation: one that connects
		 * later gets the current values in its sync. */
		if (!all->list)
			return;
		cp_state_server_view(st, n->server, n->now, &stage, &status);
		broadcast(all, ctl_server_msg(n->server, stage, status, n->now));
		return;
	case CP_NOTE_SERVER_GONE:
		broadcast(all, ctl_delete_server_msg(n->server->tenant_id, n->server->fqdn));
		return;
	case CP_NOTE_TENANT:
		if (all->list)
			broadcast(all, ctl_tenant_msg(n->tenant));
		return;
	case CP_NOTE_TENANT_GONE:
		broadcast(all, ctl_delete_tenant_msg(n->tenant->id));
		return;
	case CP_NOTE_POLICY:
		broadcast(all, policy_msg(st));
		return;
	case CP_NOTE_CATALOG:
		broadcast(all, catalog_msg(st));
		return;
	case CP_NOTE_CLOCK:
		broadcast(all, ctl_clock_msg(n->now, true));
		return;
	case CP_NOTE_SERVER_EVALUATED:
	case CP_NOTE_SERVER_RESUMED:
	case CP_NOTE_EVENT:
		return;
	}
}

json_t *cp_gateways_status(const struct cp_gateways *all)
{
	json_t *arr = json_array();

	for (const struct cp_gateway *g = all->list; g; g = g->next) {
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
