/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The XDP drop list's sink (xdp.h): the maps follow cp_xdp_select.
 *
 * Ownership is told by the entry: reason BLOCKED and a cookie with
 * XDP_SYNC_BIT set belong to the sync.  Every sync pass writes its own
 * generation into the cookies it keeps and then sweeps the sync-owned
 * entries of any other generation, so entries left by an earlier run (pins
 * survive restarts) or by a server that stopped being blocked go without
 * remembering what was written before.
 *
 * Without the XDP build (TES_HAVE_XDP undefined) only the admin commands
 * exist, and they say so.
 */
#include "controlplane/notify/xdp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "contract/adminproto.h"
#include "controlplane/log.h"

#ifdef TES_HAVE_XDP
#include <arpa/inet.h>
#include <sys/socket.h>

#include "dataplane/xdp/xdp_loader.h"

#define XDP_SYNC_BIT 0x80000000u
#define XDP_MAX_IFACES 16

struct xdp_iface {
	char name[16];
	bool attached;
	bool fell_back;
	enum tes_xdp_mode mode;
	char error[256];
};

#define XDP_MAX_PORTS 64

struct cp_xdp {
	struct cp_loop *loop;
	struct cp_state *st;
	struct cp_watch tick; /* the one-second mark-and-sweep */
	bool pending;         /* state changed since the last sync */
	struct tes_xdp *x;
	uint16_t ports[XDP_MAX_PORTS]; /* xdp_ports, as written to the map */
	unsigned nports;
	struct xdp_iface ifs[XDP_MAX_IFACES];
	unsigned nifs;
	uint32_t gen;
	char mode[16]; /* xdp_mode, as configured */
	uint64_t syncs, sync_errors, added, removed, expired;
	char load_error[512];
};

static uint32_t next_gen(struct cp_xdp *s)
{
	s->gen = ((s->gen + 1) & ~XDP_SYNC_BIT) | XDP_SYNC_BIT;
	return s->gen;
}

static bool sync_owned(const struct tes_xdp_rule *r)
{
	return r->reason == TES_XDP_REASON_BLOCKED && (r->cookie & XDP_SYNC_BIT);
}

static void to_xdp_addr(const struct tes_addr *a, struct tes_xdp_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (a->family == TES_ADDR_V4) {
		out->family = AF_INET;
		out->prefixlen = 32;
		memcpy(out->addr, a->a, 4);
	} else {
		out->family = AF_INET6;
		out->prefixlen = 128;
		memcpy(out->addr, a->a, 16);
	}
}

/* A source into the map.  An admin entry on the same address is left as it
 * is: it drops anyway, and overwriting it would let the sweep delete the
 * operator's entry later. */
static void sync_source(struct cp_xdp *s, const struct tes_addr *src)
{
	struct tes_xdp_addr a;
	struct tes_xdp_rule old;
	char err[256];

	to_xdp_addr(src, &a);
	if (tes_xdp_get(s->x, &a, &old, NULL, 0) == 0) {
		if (!sync_owned(&old))
			return;
		if (old.cookie == s->gen)
			return;
	} else {
		s->added++;
	}
	if (tes_xdp_add(s->x, &a, TES_XDP_ORIGIN_ENFORCEMENT, 0, s->gen, err, sizeof(err))) {
		s->sync_errors++;
		cp_warn("xdp sync: %s", err);
	}
}

struct sweep {
	struct cp_xdp *s;
	struct tes_xdp_addr *del;
	size_t n, cap;
};

static int collect_stale(const struct tes_xdp_rule *r, void *arg)
{
	struct sweep *w = arg;

	if (!sync_owned(r) || r->cookie == w->s->gen)
		return 0;
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct tes_xdp_addr *d = realloc(w->del, cap * sizeof(*d));

		if (!d)
			return -ENOMEM;
		w->del = d;
		w->cap = cap;
	}
	w->del[w->n++] = r->addr;
	return 0;
}

static void xdp_sync(struct cp_xdp *s)
{
	struct sweep w = { .s = s };
	struct tes_addr *drop;
	char err[256];
	long rc, n;

	if (!s->x)
		return;
	s->pending = false;
	s->syncs++;
	next_gen(s);
	n = cp_xdp_select(s->st, cp_state_now(s->st), &drop);
	if (n < 0) {
		/* Without the selection nothing is known to be droppable: the
		 * sweep below empties the sync's part of the map, which only
		 * lets traffic through. */
		s->sync_errors++;
		cp_warn("xdp sync: out of memory judging sources");
	}
	for (long i = 0; i < n; i++)
		sync_source(s, &drop[i]);
	free(drop);
	/* Collected first, deleted after: deleting while walking a hash map
	 * can restart the walk. */
	rc = tes_xdp_list(s->x, collect_stale, &w, err, sizeof(err));
	if (rc < 0) {
		s->sync_errors++;
		cp_warn("xdp sync: listing the drop list: %s",
			rc == -ENOMEM ? "out of memory" : err);
	}
	for (size_t i = 0; i < w.n; i++) {
		if (tes_xdp_del(s->x, &w.del[i], err, sizeof(err)) == 0)
			s->removed++;
	}
	free(w.del);
}

static void xdp_tick(struct cp_watch *w, uint32_t events)
{
	struct cp_xdp *s = cp_container_of(w, struct cp_xdp, tick);
	uint64_t n;
	ssize_t r = read(w->fd, &n, sizeof(n));
	long e;

	(void)r;
	(void)events;
	xdp_sync(s);
	e = tes_xdp_expire(s->x, 0, NULL, 0);
	if (e > 0)
		s->expired += (uint64_t)e;
}

void cp_xdp_on_note(void *ctx, const struct cp_note *n)
{
	struct cp_xdp *s = ctx;

	switch (n->kind) {
	case CP_NOTE_SERVER:
	case CP_NOTE_SERVER_GONE:
	case CP_NOTE_SERVER_EVALUATED:
	case CP_NOTE_TENANT:
	case CP_NOTE_TENANT_GONE:
		s->pending = true;
		return;
	default:
		return;
	}
}

bool cp_xdp_running(const struct cp_xdp *s)
{
	return s && s->x;
}

int cp_xdp_probe_maps(struct cp_xdp *s)
{
	struct tes_xdp_counter cnt[TES_XDP_CNT_COUNT];

	if (!cp_xdp_running(s))
		return -ENOENT;
	return tes_xdp_counters(s->x, cnt, NULL, 0);
}

void cp_xdp_sync_pending(struct cp_xdp *s)
{
	if (s && s->pending)
		xdp_sync(s);
}

static enum tes_xdp_mode want_mode(const char *m)
{
	if (strcmp(m, "native") == 0)
		return TES_XDP_MODE_NATIVE;
	if (strcmp(m, "generic") == 0)
		return TES_XDP_MODE_GENERIC;
	return TES_XDP_MODE_AUTO;
}

int cp_xdp_start(struct cp_xdp **out, const struct cp_xdp_config *c, struct cp_loop *loop,
		 struct cp_state *st)
{
	struct tes_xdp_opts o = { .pin_root = c->pin_root };
	struct cp_xdp *s;
	struct itimerspec its = { { 1, 0 }, { 1, 0 } };
	const char *p;
	int rc;

	*out = NULL;
	if (!c->interfaces[0])
		return 0;
	s = calloc(1, sizeof(*s));
	if (!s) {
		cp_err("xdp: out of memory");
		return -1;
	}
	*out = s;
	s->loop = loop;
	s->st = st;
	s->tick.fd = -1;
	snprintf(s->mode, sizeof(s->mode), "%s", c->mode);
	s->gen = (uint32_t)time(NULL);
	rc = tes_xdp_ports_parse(c->ports, s->ports, XDP_MAX_PORTS, s->load_error,
				 sizeof(s->load_error));
	if (rc < 0) {
		cp_err("xdp_ports: %s", s->load_error);
		return -1;
	}
	s->nports = (unsigned)rc;
	for (p = c->interfaces; *p && s->nifs < XDP_MAX_IFACES;) {
		size_t n = strcspn(p, ","), b = 0, e = n;

		while (b < e && (p[b] == ' ' || p[b] == '\t'))
			b++;
		while (e > b && (p[e - 1] == ' ' || p[e - 1] == '\t'))
			e--;
		snprintf(s->ifs[s->nifs++].name, 16, "%.*s", (int)(e - b), p + b);
		p += n;
		if (*p == ',')
			p++;
	}
	rc = tes_xdp_load(&o, &s->x, s->load_error, sizeof(s->load_error));
	if (rc) {
		s->x = NULL;
		cp_err("xdp: cannot load the early-drop program (%s): %s%s", strerror(-rc),
		       s->load_error,
		       c->required ? "" : "; running without XDP (xdp_required = no)");
		return c->required ? -1 : 0;
	}
	cp_info("xdp: program loaded, maps %s in %s",
		tes_xdp_maps_reused(s->x) ? "reused" : "created", tes_xdp_pin_dir(s->x));
	/* The list is about mail: listed sources lose TCP to these ports only. */
	rc = tes_xdp_set_ports(s->x, s->ports, s->nports, s->load_error, sizeof(s->load_error));
	if (rc) {
		cp_err("xdp: cannot set the protected ports: %s", s->load_error);
		tes_xdp_close(s->x);
		s->x = NULL;
		return c->required ? -1 : 0;
	}
	cp_info("xdp: listed sources are dropped on TCP ports %s only", c->ports);
	for (unsigned i = 0; i < s->nifs; i++) {
		struct xdp_iface *f = &s->ifs[i];
		struct tes_xdp_attach_info info;

		rc = tes_xdp_attach(s->x, f->name, want_mode(c->mode), &info, f->error,
				    sizeof(f->error));
		if (rc) {
			cp_err("xdp: cannot attach to %s (%s): %s%s", f->name, strerror(-rc),
			       f->error, c->required ? "" : "; that interface runs without XDP");
			if (c->required)
				return -1;
			continue;
		}
		f->attached = true;
		f->mode = info.mode;
		f->fell_back = info.fell_back;
		f->error[0] = '\0';
		if (info.fell_back)
			cp_warn("xdp: %s: native mode refused, attached in generic mode (slower): "
				"%s",
				f->name, info.warning);
		else
			cp_info("xdp: attached to %s in %s mode%s", f->name,
				tes_xdp_mode_name(info.mode), info.replaced ? " (replaced)" : "");
	}
	s->tick.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	s->tick.fn = xdp_tick;
	if (s->tick.fd < 0 || timerfd_settime(s->tick.fd, 0, &its, NULL) ||
	    cp_watch_add(loop, &s->tick, EPOLLIN)) {
		cp_err("xdp: sync timer: %s", strerror(errno));
		return -1;
	}
	xdp_sync(s);
	return 0;
}

void cp_xdp_stop(struct cp_xdp *s)
{
	if (!s)
		return;
	if (s->tick.fd >= 0) {
		cp_watch_del(s->loop, &s->tick);
		close(s->tick.fd);
	}
	/* Attachments and pins stay: drops remain in force while tescontrol
	 * restarts. */
	if (s->x)
		tes_xdp_close(s->x);
	free(s);
}

static const char *reason_name(enum tes_xdp_reason r)
{
	switch (r) {
	case TES_XDP_REASON_BLOCKED:
		return "enforcement";
	case TES_XDP_REASON_ADMIN_EXACT:
		return "admin_exact";
	case TES_XDP_REASON_ADMIN_PREFIX:
		return "admin_prefix";
	default:
		return "invalid";
	}
}

static int need_xdp(const struct cp_xdp *s, char *err, size_t errlen)
{
	if (!s) {
		snprintf(err, errlen, "XDP is not configured (xdp_interfaces is empty)");
		return -1;
	}
	if (!s->x) {
		snprintf(err, errlen, "XDP is not running: %s", s->load_error);
		return -1;
	}
	return 0;
}

static int list_one(const struct tes_xdp_rule *r, void *arg)
{
	json_t *a = arg;
	char buf[TES_XDP_ADDR_STRLEN];
	json_t *o;

	tes_xdp_addr_format(&r->addr, buf, sizeof(buf));
	o = json_pack("{s:s, s:s, s:b, s:b}", "address", buf, "reason", reason_name(r->reason),
		      "sync", sync_owned(r), "expired", r->expired);
	if (!o)
		return -ENOMEM;
	if (r->expires_ns) {
		uint64_t now = tes_xdp_now_ns();
		int64_t left =
			r->expires_ns > now ? (int64_t)((r->expires_ns - now) / 1000000000u) : 0;

		json_object_set_new(o, "expires_in", json_integer(left));
	}
	json_array_append_new(a, o);
	return 0;
}

static int count_one(const struct tes_xdp_rule *r, void *arg)
{
	uint64_t *by = arg;

	if (r->reason < TES_XDP_REASON_COUNT)
		by[r->reason]++;
	return 0;
}

static json_t *status_json(struct cp_xdp *s)
{
	struct tes_xdp_counter cnt[TES_XDP_CNT_COUNT];
	uint64_t by[TES_XDP_REASON_COUNT] = { 0 };
	json_t *o = json_object(), *ifs = json_array(), *ent = json_object(), *c = json_object();

	for (unsigned i = 0; i < s->nifs; i++) {
		struct xdp_iface *f = &s->ifs[i];
		struct tes_xdp_attach_info info;
		bool ours = false;
		const char *mode = "none";

		if (tes_xdp_query_own(s->x, f->name, &info, &ours, NULL, 0) == 0 && ours)
			mode = tes_xdp_mode_name(info.mode);
		json_array_append_new(ifs, json_pack("{s:s, s:s, s:b, s:s}", "interface", f->name,
						     "mode", mode, "generic_fallback", f->fell_back,
						     "error", f->error));
	}
	tes_xdp_list(s->x, count_one, by, NULL, 0);
	for (unsigned r = TES_XDP_REASON_BLOCKED; r < TES_XDP_REASON_COUNT; r++)
		json_object_set_new(ent, reason_name(r), json_integer((json_int_t)by[r]));
	if (tes_xdp_counters(s->x, cnt, NULL, 0) == 0) {
		for (unsigned i = 0; i < TES_XDP_CNT_COUNT; i++)
			json_object_set_new(c, tes_xdp_counter_name(i),
					    json_pack("{s:I, s:I}", "packets",
						      (json_int_t)cnt[i].packets, "bytes",
						      (json_int_t)cnt[i].bytes));
	}
	json_object_set_new(o, "interfaces", ifs);
	json_object_set_new(o, "configured_mode", json_string(s->mode));
	{
		/* what the map holds, not what was configured */
		uint16_t p[XDP_MAX_PORTS];
		int n = tes_xdp_get_ports(s->x, p, XDP_MAX_PORTS, NULL, 0);
		json_t *ports = json_array();
		for (int i = 0; i < n && i < XDP_MAX_PORTS; i++)
			json_array_append_new(ports, json_integer(p[i]));
		json_object_set_new(o, "ports", ports);
	}
	json_object_set_new(o, "pin_dir", json_string(tes_xdp_pin_dir(s->x)));
	json_object_set_new(o, "entries", ent);
	json_object_set_new(o, "counters", c);
	json_object_set_new(o, "syncs", json_integer((json_int_t)s->syncs));
	json_object_set_new(o, "sync_errors", json_integer((json_int_t)s->sync_errors));
	return o;
}

static int parse_addr(const json_t *args, struct tes_xdp_addr *a, char *err, size_t errlen)
{
	const char *s = json_string_value(json_object_get(args, "address"));
	char why[256];

	if (!s) {
		snprintf(err, errlen, "address: missing");
		return -1;
	}
	if (tes_xdp_addr_parse(s, a, why, sizeof(why))) {
		snprintf(err, errlen, "address: %s", why);
		return -1;
	}
	return 0;
}

int cp_xdp_cmd(struct cp_xdp *s, const char *op, const json_t *args, json_t **result, char *err,
	       size_t len)
{
	struct tes_xdp_addr a;
	char why[512];
	int rc;

	if (strcmp(op, "detach") == 0) {
		const char *ifname = json_string_value(json_object_get(args, "interface"));

		if (!ifname || !ifname[0]) {
			snprintf(err, len, "interface: missing");
			return -1;
		}
		/* Works without a loaded program too: detaching is how an
		 * operator recovers from an earlier run.  Our own program is
		 * recognised by its fd, which needs no CAP_SYS_ADMIN. */
		rc = tes_xdp_detach_own(s ? s->x : NULL, ifname, why, sizeof(why));
		if (rc) {
			snprintf(err, len, "detach %s: %s", ifname, why);
			return -1;
		}
		if (s) {
			for (unsigned i = 0; i < s->nifs; i++)
				if (strcmp(s->ifs[i].name, ifname) == 0) {
					s->ifs[i].attached = false;
					s->ifs[i].fell_back = false;
				}
		}
		cp_info("xdp: detached from %s by an operator", ifname);
		*result = json_pack("{s:s}", "detached", ifname);
		return 0;
	}
	if (need_xdp(s, err, len))
		return -1;
	if (strcmp(op, "status") == 0) {
		*result = status_json(s);
		return 0;
	}
	if (strcmp(op, "list") == 0) {
		json_t *arr = json_array();
		long n = tes_xdp_list(s->x, list_one, arr, why, sizeof(why));

		if (n < 0) {
			json_decref(arr);
			snprintf(err, len, "list: %s", n == -ENOMEM ? "out of memory" : why);
			return -1;
		}
		*result = json_pack("{s:o}", "entries", arr);
		return 0;
	}
	if (parse_addr(args, &a, err, len))
		return -1;
	if (strcmp(op, "deny") == 0) {
		json_t *ttl = json_object_get(args, "ttl");
		uint64_t exp = 0;

		if (ttl) {
			if (!json_is_integer(ttl) || json_integer_value(ttl) < 1 ||
			    json_integer_value(ttl) > 10 * 365 * 86400) {
				snprintf(err, len,
					 "ttl: not a number of seconds from 1 to 10 years");
				return -1;
			}
			exp = tes_xdp_expiry_in((uint64_t)json_integer_value(ttl));
		}
		rc = tes_xdp_add(s->x, &a, TES_XDP_ORIGIN_ADMIN, exp, 0, why, sizeof(why));
		if (rc) {
			snprintf(err, len, "deny: %s", why);
			return -1;
		}
		tes_xdp_addr_format(&a, why, sizeof(why));
		cp_info("xdp: operator deny %s%s", why, exp ? " (with expiry)" : "");
		*result = json_pack("{s:s}", "denied", why);
		return 0;
	}
	if (strcmp(op, "allow") == 0) {
		struct tes_xdp_rule r;

		if (tes_xdp_get(s->x, &a, &r, NULL, 0) || r.reason == TES_XDP_REASON_BLOCKED) {
			/* Enforcement entries follow the state: an operator
			 * lifts them with a pause or a reset, not here. */
			snprintf(err, len, "allow: no operator deny entry for that address");
			return -1;
		}
		rc = tes_xdp_del(s->x, &a, why, sizeof(why));
		if (rc) {
			snprintf(err, len, "allow: %s", why);
			return -1;
		}
		tes_xdp_addr_format(&a, why, sizeof(why));
		cp_info("xdp: operator allow %s", why);
		/* The address may be a blocked server's source too. */
		s->pending = true;
		*result = json_pack("{s:s}", "allowed", why);
		return 0;
	}
	snprintf(err, len, "xdp: unknown operation \"%s\"", op);
	return -1;
}

void cp_xdp_metrics(struct cp_xdp *s, struct prom_buf *b)
{
	struct tes_xdp_counter cnt[TES_XDP_CNT_COUNT];
	static const char *const pass_label[] = { "ipv4",     "ipv6",      "not_ip",
						  "fragment", "malformed", "other" };

	if (!s)
		return;
	prom_family(b, "tes_xdp_generic_fallback", "gauge",
		    "1 when native XDP was refused on the interface and generic mode taken");
	for (unsigned i = 0; i < s->nifs; i++)
		prom_sample(b, "tes_xdp_generic_fallback", "interface", s->ifs[i].name,
			    s->ifs[i].attached && s->ifs[i].fell_back);
	prom_family(b, "tes_xdp_attached", "gauge", "1 when the early-drop program is attached");
	for (unsigned i = 0; i < s->nifs; i++)
		prom_sample(b, "tes_xdp_attached", "interface", s->ifs[i].name, s->ifs[i].attached);
	if (!s->x || tes_xdp_counters(s->x, cnt, NULL, 0))
		return;
	prom_family(b, "tes_xdp_drops_total", "counter", "Packets dropped by XDP, by reason");
	for (unsigned r = TES_XDP_REASON_BLOCKED; r < TES_XDP_REASON_COUNT; r++)
		prom_sample(b, "tes_xdp_drops_total", "reason", reason_name(r),
			    cnt[TES_XDP_CNT_DROP_OF(r)].packets);
	prom_family(b, "tes_xdp_passes_total", "counter", "Packets XDP let through, by kind");
	for (unsigned i = 0; i < sizeof(pass_label) / sizeof(pass_label[0]); i++)
		prom_sample(b, "tes_xdp_passes_total", "kind", pass_label[i], cnt[i].packets);
	prom_family(b, "tes_xdp_syncs_total", "counter", "Drop-list sync passes");
	prom_sample(b, "tes_xdp_syncs_total", NULL, NULL, s->syncs);
	prom_family(b, "tes_xdp_sync_errors_total", "counter", "Failed drop-list map writes");
	prom_sample(b, "tes_xdp_sync_errors_total", NULL, NULL, s->sync_errors);
}

#else /* !TES_HAVE_XDP */

int cp_xdp_start(struct cp_xdp **out, const struct cp_xdp_config *c, struct cp_loop *loop,
		 struct cp_state *st)
{
	(void)loop;
	(void)st;
	*out = NULL;
	if (!c->interfaces[0])
		return 0;
	cp_err("xdp: xdp_interfaces is set but this tescontrol was built without XDP (-Dxdp)%s",
	       c->required ? "" : "; running without XDP");
	return c->required ? -1 : 0;
}

void cp_xdp_stop(struct cp_xdp *x)
{
	(void)x;
}

void cp_xdp_on_note(void *ctx, const struct cp_note *n)
{
	(void)ctx;
	(void)n;
}

bool cp_xdp_running(const struct cp_xdp *x)
{
	(void)x;
	return false;
}

int cp_xdp_probe_maps(struct cp_xdp *x)
{
	(void)x;
	return -ENOENT;
}

void cp_xdp_sync_pending(struct cp_xdp *x)
{
	(void)x;
}

int cp_xdp_cmd(struct cp_xdp *x, const char *op, const json_t *args, json_t **result, char *err,
	       size_t len)
{
	(void)x;
	(void)op;
	(void)args;
	(void)result;
	snprintf(err, len, "this tescontrol was built without XDP (-Dxdp)");
	return -1;
}

void cp_xdp_metrics(struct cp_xdp *x, struct prom_buf *b)
{
	(void)x;
	(void)b;
}

#endif
