/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * State changes that involve the store, the in-memory state and the
 * gateways together, in that order: durable first, then visible.
 */
#include "controlplane/cp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cp_doc_version(const char *a, size_t alen, const char *b, size_t blen, char *out, size_t len)
{
	uint64_t h = UINT64_C(0xcbf29ce484222325);

	for (size_t i = 0; i < alen; i++)
		h = (h ^ (uint8_t)a[i]) * UINT64_C(0x100000001b3);
	h = (h ^ 0xff) * UINT64_C(0x100000001b3); /* "ab"+"c" differs from "a"+"bc" */
	for (size_t i = 0; i < blen; i++)
		h = (h ^ (uint8_t)b[i]) * UINT64_C(0x100000001b3);
	snprintf(out, len, "%016" PRIx64, h);
}

const struct tes_tenant *cp_server_tenant(struct cp *cp, const struct tes_server *s)
{
	return s->tenant_id ? cp_tenant_find(&cp->st, s->tenant_id) : NULL;
}

void cp_server_view(const struct cp *cp, const struct tes_server *s, int64_t now, unsigned *stage,
		    enum tes_status *status)
{
	const struct tes_tenant *t = cp_server_tenant((struct cp *)cp, s);

	*stage = tes_server_stage(s, t, &cp->policy, now);
	*status = tes_server_status(s, t, &cp->policy, now);
}

int64_t cp_server_next_event(struct cp *cp, const struct tes_server *s, int64_t now)
{
	int64_t next = tes_server_next_change(s, cp_server_tenant(cp, s), &cp->policy, now);
	int64_t forget = tes_server_forget_at(s, &cp->policy);

	if (forget < next)
		next = forget;
	if (next <= now)
		next = now + 1;
	return next;
}

void cp_server_changed(struct cp *cp, uint32_t slot, int64_t now)
{
	struct cp_server *c = cp_server_at(&cp->st, slot);

	cp_xdp_request(cp);
	if (!c)
		return;
	cp_sched_set(&cp->st, slot, cp_server_next_event(cp, &c->v.s, now));
	esc_arm(cp);
}

void cp_tenant_cap_check(struct cp *cp, uint32_t tenant_id)
{
	struct tes_tenant *t = tenant_id ? cp_tenant_find(&cp->st, tenant_id) : NULL;
	bool at;

	if (!t)
		return;
	at = cp_tenant_servers(&cp->st, tenant_id) >= cp->policy.servers_per_tenant;
	if (at == t->at_server_cap)
		return;
	t->at_server_cap = at;
	if (at)
		cp_warn("tenant %u (%s) reached its cap of %u servers: new servers are not tracked"
			" (tes_servers_not_tracked_total)",
			t->id, t->name, cp->policy.servers_per_tenant);
	else
		cp_info("tenant %u (%s) is below its cap of %u servers again", t->id, t->name,
			cp->policy.servers_per_tenant);
	gw_push_tenant(cp, t);
}

void cp_tenant_caps_check(struct cp *cp)
{
	for (size_t i = 0; i < cp->st.ntenants; i++)
		cp_tenant_cap_check(cp, cp->st.tenants[i].id);
}

int64_t cp_seen_granularity(const struct cp *cp)
{
	int64_t g = 3600, probe = (int64_t)cp->policy.probe_interval_min * 60;

	/* A probe's sighting is what tells other gateways a probe was made:
	 * it must not wait longer than the interval. */
	if (probe > 0 && probe < g)
		g = probe;
	return g;
}

void cp_server_forget(struct cp *cp, uint32_t slot, const char *why)
{
	struct cp_server *c = cp_server_at(&cp->st, slot);
	struct tes_server s;

	if (!c)
		return;
	s = c->v.s;
	/* Forgetting promises nothing to anyone: the row goes with the next
	 * batch (a crash before it forgets it again at start-up). */
	if (c->stored && cp_pending_delete(&cp->st, s.tenant_id, s.fqdn))
		cp_err("out of memory queueing the deletion of %s (it stays stored until it is"
		       " forgotten again)",
		       s.fqdn);
	if (s.tenant_id != 0)
		cp_evlog_server(cp, why, &s, c->v.stage_logged, (enum tes_status)c->v.status_logged,
				NULL);
	cp_server_delete(&cp->st, slot);
	cp_xdp_request(cp);
	gw_broadcast(cp, ctl_delete_server_msg(s.tenant_id, s.fqdn));
	cp_tenant_cap_check(cp, s.tenant_id);
	/* A flood of evictions writes in batches, not one commit each, and
	 * the list of rows to delete stays bounded. */
	if (cp->st.npending_del >= 4096)
		cp_flush_dirty(cp);
}

/* ---- start-up ---- */

static int load_tenant(const struct tes_tenant *t, void *ctx)
{
	return cp_tenant_put(&((struct cp *)ctx)->st, t);
}

static int load_server(const struct store_server *v, void *ctx)
{
	struct cp *cp = ctx;
	uint32_t slot;
	struct cp_server *c;

	if (cp_server_find(&cp->st, v->s.tenant_id, v->s.fqdn) != CP_NO_SLOT)
		return 0; /* two spellings of one name: the key already merged them */
	slot = cp_server_add(&cp->st, v);
	c = cp_server_at(&cp->st, slot);
	if (!c)
		return -1;
	c->stored = true;
	c->pushed_last_seen = v->s.last_seen;
	memcpy(c->pushed_source_seen, v->s.source_seen, sizeof(c->pushed_source_seen));
	return 0;
}

int cp_load_state(struct cp *cp)
{
	if (store_load_tenants(cp->store, load_tenant, cp)) {
		cp_err("loading tenants: %s", store_errmsg(cp->store));
		return -1;
	}
	cp_untrusted_prefixes(&cp->st, cp->policy.untrusted_prefix_v4,
			      cp->policy.untrusted_prefix_v6);
	if (store_load_servers(cp->store, load_server, cp)) {
		cp_err("loading servers: %s", store_errmsg(cp->store));
		return -1;
	}
	cp_untrusted_rebuild(&cp->st);
	cp_tenant_caps_check(cp);
	cp_info("state: %zu tenants, %u servers (schema version %d)", cp->st.ntenants, cp->st.nlive,
		store_schema_version(cp->store));
	return 0;
}

/* Read a whole file of at most max octets. */
static int read_text(const char *path, size_t max, struct store_doc *out, char *err, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	size_t got = 0;

	memset(out, 0, sizeof(*out));
	if (fd < 0) {
		snprintf(err, len, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
		snprintf(err, len, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	if ((size_t)sb.st_size > max) {
		snprintf(err, len, "%s: larger than %zu octets", path, max);
		close(fd);
		return -1;
	}
	out->text = malloc((size_t)sb.st_size + 1);
	if (!out->text) {
		snprintf(err, len, "%s: out of memory", path);
		close(fd);
		return -1;
	}
	while (got < (size_t)sb.st_size) {
		ssize_t n = read(fd, out->text + got, (size_t)sb.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, len, "%s: read error", path);
			store_doc_free(out);
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	out->text[got] = '\0';
	out->len = got;
	snprintf(out->name, sizeof(out->name), "%s", path);
	return 0;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

static int load_catalog(struct cp *cp)
{
	struct store_doc b, c;
	struct catalog_error cerr;
	int hb, hc;
	char err[512];
	int64_t now = cp_now(cp);

	hb = store_get_doc(cp->store, STORE_DOC_BUILDS, &b);
	hc = hb < 0 ? -1 : store_get_doc(cp->store, STORE_DOC_COMPLIANCE, &c);
	if (hb < 0 || hc < 0) {
		cp_err("reading the stored catalog: %s", store_errmsg(cp->store));
		if (hb > 0)
			store_doc_free(&b);
		return -1;
	}
	if (hb > 0 && hc > 0) {
		cp->catalog = catalog_parse(b.text, b.len, b.name, c.text, c.len, c.name, &cerr);
		if (!cp->catalog) {
			cp_err("the stored catalog does not load: %s:%u: %s", cerr.file, cerr.line,
			       cerr.msg);
			store_doc_free(&b);
			store_doc_free(&c);
			return -1;
		}
		cp->builds = b;
		cp->compliance = c;
		cp_info("catalog in force: version %s (%zu builds), loaded from %s and %s",
			catalog_version(cp->catalog), catalog_size(cp->catalog), b.name, c.name);
		/* The files named in the configuration only seed the first
		 * start; later changes go through tesctl catalog load.  Say so
		 * when they differ, or an edited file would seem ignored. */
		if (read_text(cp->cfg.catalog_file, CTL_FRAME_MAX, &b, err, sizeof(err)) == 0) {
			if (read_text(cp->cfg.compliance_file, CTL_FRAME_MAX, &c, err,
				      sizeof(err)) == 0) {
				if (b.len != cp->builds.len || c.len != cp->compliance.len ||
				    memcmp(b.text, cp->builds.text, b.len) ||
				    memcmp(c.text, cp->compliance.text, c.len))
					cp_info("catalog_file/compliance_file differ from the "
						"catalog"
						" in force; tesctl catalog load applies them");
				store_doc_free(&c);
			}
			store_doc_free(&b);
		}
		return 0;
	}
	if (hb > 0)
		store_doc_free(&b);
	if (hc > 0)
		store_doc_free(&c);
	if (read_text(cp->cfg.catalog_file, CTL_FRAME_MAX, &b, err, sizeof(err))) {
		cp_err("catalog_file: %s", err);
		return -1;
	}
	if (read_text(cp->cfg.compliance_file, CTL_FRAME_MAX, &c, err, sizeof(err))) {
		cp_err("compliance_file: %s", err);
		store_doc_free(&b);
		return -1;
	}
	cp->catalog = catalog_parse(b.text, b.len, base_name(b.name), c.text, c.len,
				    base_name(c.name), &cerr);
	if (!cp->catalog) {
		cp_err("catalog: %s:%u: %s", cerr.file, cerr.line, cerr.msg);
		store_doc_free(&b);
		store_doc_free(&c);
		return -1;
	}
	snprintf(b.version, sizeof(b.version), "%s", catalog_version(cp->catalog));
	snprintf(c.version, sizeof(c.version), "%s", catalog_version(cp->catalog));
	b.loaded_at = c.loaded_at = now;
	if (store_begin(cp->store) || store_put_doc(cp->store, STORE_DOC_BUILDS, &b) ||
	    store_put_doc(cp->store, STORE_DOC_COMPLIANCE, &c) || store_commit(cp->store)) {
		cp_err("storing the catalog: %s", store_errmsg(cp->store));
		store_rollback(cp->store);
		store_doc_free(&b);
		store_doc_free(&c);
		return -1;
	}
	cp->builds = b;
	cp->compliance = c;
	cp_info("catalog loaded from %s and %s: version %s (%zu builds)", b.name, c.name,
		catalog_version(cp->catalog), catalog_size(cp->catalog));
	return 0;
}

static int load_policy(struct cp *cp)
{
	struct tes_policy_error perr;
	struct store_doc d;
	char err[512];
	int h = store_get_doc(cp->store, STORE_DOC_POLICY, &d);

	if (h < 0) {
		cp_err("reading the stored policy: %s", store_errmsg(cp->store));
		return -1;
	}
	if (h > 0) {
		if (tes_policy_parse(d.text, d.len, d.name, &cp->policy, &perr)) {
			tes_policy_error_format(&perr, err, sizeof(err));
			cp_err("the stored policy does not load: %s", err);
			store_doc_free(&d);
			return -1;
		}
		cp->policy_doc = d;
		cp_info("policy in force: version %s, loaded from %s", d.version, d.name);
		return 0;
	}
	if (cp->cfg.policy_file[0]) {
		if (read_text(cp->cfg.policy_file, 64 * 1024, &d, err, sizeof(err))) {
			cp_err("policy_file: %s", err);
			return -1;
		}
		if (tes_policy_parse(d.text, d.len, cp->cfg.policy_file, &cp->policy, &perr)) {
			tes_policy_error_format(&perr, err, sizeof(err));
			cp_err("policy: %s", err);
			store_doc_free(&d);
			return -1;
		}
	} else {
		char buf[8192];
		int n;

		tes_policy_default(&cp->policy);
		n = tes_policy_format(&cp->policy, buf, sizeof(buf));
		if (n < 0 || (size_t)n >= sizeof(buf) || !(d.text = strdup(buf))) {
			cp_err("cannot format the built-in policy");
			return -1;
		}
		d.len = (size_t)n;
		snprintf(d.name, sizeof(d.name), "<built-in>");
	}
	cp_doc_version(d.text, d.len, "", 0, d.version, sizeof(d.version));
	d.loaded_at = cp_now(cp);
	if (store_put_doc(cp->store, STORE_DOC_POLICY, &d)) {
		cp_err("storing the policy: %s", store_errmsg(cp->store));
		store_doc_free(&d);
		return -1;
	}
	cp->policy_doc = d;
	cp_info("policy loaded from %s: version %s", d.name, d.version);
	return 0;
}

int cp_load_documents(struct cp *cp)
{
	if (load_policy(cp) || load_catalog(cp))
		return -1;
	return 0;
}

/* ---- sightings ---- */

static bool same_sources(const struct tes_server *a, const struct tes_server *b)
{
	if (a->nsources != b->nsources)
		return false;
	for (unsigned i = 0; i < a->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
		if (!tes_addr_equal(&a->sources[i], &b->sources[i]))
			return false;
	}
	return true;
}

static void log_detection(struct cp *cp, enum tes_change change, const struct tes_server *s,
			  const struct catalog_class *cls, const struct ctl_sighting *in,
			  int64_t when)
{
	const struct tes_tenant *t = cp_server_tenant(cp, s);
	char build[48], at[40], src[64] = "?", thr[40] = "-", blk[40] = "-";
	struct tes_report r;

	ex_build_format(&s->build, build, sizeof(build));
	tes_time_format(when, cp->policy.utc_offset_min, at, sizeof(at));
	if (in->source.family != TES_ADDR_NONE)
		tes_addr_format(&in->source, src, sizeof(src));
	if (change == TES_CHANGE_RESOLVED) {
		cp_info("resolved: tenant %u (%s) server %s now runs %s (%s %s, compliant), seen"
			" from %s at %s",
			s->tenant_id, t ? t->name : "-", s->fqdn, build, ex_family_name(s->family),
			cls->branch[0] ? cls->branch : "?", src, at);
		return;
	}
	tes_server_report(s, t, &cp->policy, cp_now(cp), &r);
	if (r.has_throttle_date)
		tes_time_format(r.throttle_enabled, cp->policy.utc_offset_min, thr, sizeof(thr));
	if (r.has_block_date)
		tes_time_format(r.blocking_enabled, cp->policy.utc_offset_min, blk, sizeof(blk));
	cp_info("%s: tenant %u (%s) server %s build %s (%s %s, out of date) from %s at %s;"
		" throttling from %s, blocking from %s",
		change == TES_CHANGE_FIRST ? "first detection" : "re-detection", s->tenant_id,
		t ? t->name : "-", s->fqdn, build, ex_family_name(s->family),
		cls->branch[0] ? cls->branch : "?", src, at, thr, blk);
}

/* Whether the update only moves seen times, and not far enough to tell the
 * gateways on its own. */
static bool seen_moved(const struct cp *cp, const struct cp_server *c, const struct tes_server *ns)
{
	int64_t g = cp_seen_granularity(cp);

	if (ns->last_seen - c->pushed_last_seen >= g)
		return true;
	for (unsigned i = 0; i < ns->nsources && i < TES_SERVER_SOURCES_MAX; i++) {
		if (ns->source_seen[i] - c->pushed_source_seen[i] >= g)
			return true;
	}
	return false;
}

/* Room for a new tenant-0 server first seen from src: the least recently
 * seen one of its prefix, then overall, goes when a cap is reached. */
static void untrusted_make_room(struct cp *cp, const struct tes_addr *src)
{
	uint32_t n, slot;

	cp_untrusted_prefixes(&cp->st, cp->policy.untrusted_prefix_v4,
			      cp->policy.untrusted_prefix_v6);
	for (int i = 0; i < 64; i++) {
		slot = cp_untrusted_oldest_in(&cp->st, src, &n);
		if (slot == CP_NO_SLOT || n < cp->policy.untrusted_per_prefix)
			break;
		cp->counts.untrusted_evicted++;
		cp_server_forget(cp, slot, "evicted");
	}
	for (int i = 0; i < 64; i++) {
		slot = cp_untrusted_oldest(&cp->st, &n);
		if (slot == CP_NO_SLOT || n < cp->policy.untrusted_servers)
			break;
		cp->counts.untrusted_evicted++;
		cp_server_forget(cp, slot, "evicted");
	}
}

static void pending_cancel(struct cp_tables *st, uint32_t tenant_id, const char *fqdn)
{
	for (size_t i = 0; i < st->npending_del;) {
		if (st->pending_del[i].tenant_id == tenant_id &&
		    strcasecmp(st->pending_del[i].fqdn, fqdn) == 0)
			st->pending_del[i] = st->pending_del[--st->npending_del];
		else
			i++;
	}
}

int cp_apply_sighting(struct cp *cp, const struct ctl_sighting *in, enum tes_change *change,
		      char *msg, size_t len)
{
	const struct tes_tenant *t = NULL;
	struct catalog_class cls;
	struct tes_detection d;
	struct tes_server ns;
	struct cp_server *c;
	uint32_t slot;
	int64_t now = cp_now(cp), when;
	enum tes_change ch;
	uint64_t n;
	bool untrusted = in->tenant_id == 0;

	*change = TES_CHANGE_NONE;
	n = in->count ? in->count : 1;
	cp->counts.sightings += n;
	if (in->tenant_id) {
		t = cp_tenant_find(&cp->st, in->tenant_id);
		if (!t) {
			snprintf(msg, len, "unknown tenant %u", in->tenant_id);
			return -1;
		}
	}
	/* Mail over no connector is never enforced under this scope, so
	 * nothing of it is kept: what a forged header names costs a counter. */
	if (untrusted && cp->policy.scope == TES_SCOPE_CONNECTORS) {
		cp->counts.untrusted_ignored += n;
		return 0;
	}
	/* A sighting may arrive late (queued while tescontrol was down), never
	 * from the future: a gateway clock ahead of ours must not push a
	 * first detection forward. */
	when = in->time && in->time < now ? in->time : now;
	/* tescontrol's catalog decides (a gateway may still hold an older one
	 * for a moment after a load), as of when the message was seen:
	 * compliance rules carry dates. */
	catalog_classify(cp->catalog, &in->build, when, &cls);
	if (cls.family == EX_FAMILY_NONE || cls.family == EX_FAMILY_ONLINE) {
		cp->counts.sightings_by_class[CP_SIGHT_IGNORED] += n;
		return 0;
	}
	cp->counts.sightings_by_class[cls.compliant ? CP_SIGHT_COMPLIANT : CP_SIGHT_VULNERABLE] +=
		n;
	d.cls = cls.compliant ? TES_BUILD_COMPLIANT : TES_BUILD_VULNERABLE;
	d.family = cls.family;
	d.build = in->build;
	if (d.cls != in->cls)
		cp_debug("sighting of %s: the gateway said %s, the catalog in force says %s",
			 in->fqdn, ctl_class_name(in->cls), ctl_class_name(d.cls));
	slot = cp_server_find(&cp->st, in->tenant_id, in->fqdn);
	c = cp_server_at(&cp->st, slot);
	if (!c) {
		/* A new name.  A tenant's own connector fills only its own cap
		 * and nothing it carries is refused for it; mail over no
		 * connector competes for the bounded table. */
		if (!untrusted &&
		    cp_tenant_servers(&cp->st, in->tenant_id) >= cp->policy.servers_per_tenant) {
			cp->counts.not_tracked += n;
			if (now - cp->cap_logged_at >= 60 || now < cp->cap_logged_at) {
				cp->cap_logged_at = now;
				cp_warn("tenant %u (%s) is at its cap of %u servers: %s and any "
					"other"
					" new server is not tracked "
					"(tes_servers_not_tracked_total)",
					in->tenant_id, t ? t->name : "-",
					cp->policy.servers_per_tenant, in->fqdn);
			}
			return 0;
		}
		if (untrusted && cp->policy.untrusted_servers == 0) {
			cp->counts.not_tracked += n;
			return 0;
		}
	}
	ch = tes_server_observe(c ? &c->v.s : NULL, in->tenant_id, in->fqdn, t, &cp->policy, &d,
				in->source.family != TES_ADDR_NONE ? &in->source : NULL, when, &ns);
	*change = ch;
	switch (ch) {
	case TES_CHANGE_NONE:
		return 0;
	case TES_CHANGE_INVALID:
		snprintf(msg, len, "invalid server name");
		return -1;
	case TES_CHANGE_SEEN: {
		bool back = c->v.status_logged == TES_STATUS_STALE ||
			    ns.stale_seconds != c->v.s.stale_seconds;
		bool announce = ex_build_cmp(&c->v.s.build, &ns.build) != 0 ||
				!same_sources(&c->v.s, &ns) || back || seen_moved(cp, c, &ns);

		c->v.s = ns;
		cp_server_mark_dirty(&cp->st, slot);
		if (untrusted)
			cp_untrusted_touch(&cp->st, slot);
		if (back) {
			/* Seen again: its clock resumes; say so and push it. */
			esc_evaluate(cp, slot, now, "seen again");
			esc_arm(cp);
		}
		/* Only moving times later, a sighting leaves the escalation
		 * queue alone: an entry due too early is looked at and
		 * queued again. */
		if (announce) {
			gw_push_server(cp, slot, now);
			cp_xdp_request(cp); /* a new source of a dropped server */
		}
		return 0;
	}
	case TES_CHANGE_FIRST:
	case TES_CHANGE_REDETECTED:
	case TES_CHANGE_RESOLVED:
	case TES_CHANGE_TRACKED:
		break;
	}

	{
		struct store_server v;
		unsigned stage;
		enum tes_status status;
		/* Only what a connector carried is promised durable before the
		 * ack: tenant 0's table and servers that were never vulnerable
		 * go with the next batch, so that a stream of new names costs
		 * no synchronous write each. */
		bool lazy = untrusted || ch == TES_CHANGE_TRACKED;

		memset(&v, 0, sizeof(v));
		v.s = ns;
		cp_server_view(cp, &ns, now, &stage, &status);
		v.stage_logged = (uint8_t)stage;
		v.status_logged = (uint8_t)status;
		if (!lazy) {
			/* Durable before anyone hears of it: the ack, the push to
			 * the gateways and any report all come after this
			 * commit. */
			pending_cancel(&cp->st, ns.tenant_id, ns.fqdn);
			if (store_put_server(cp->store, &v)) {
				cp->counts.store_errors++;
				cp_err("storing %s of %s: %s", ctl_change_name(ch), in->fqdn,
				       store_errmsg(cp->store));
				snprintf(msg, len,
					 "tescontrol could not store the change; send it again");
				return -1;
			}
		}
		if (c) {
			c->v = v;
			c->dirty = false;
			if (!lazy)
				c->stored = true;
			else
				cp_server_mark_dirty(&cp->st, slot);
			if (untrusted)
				cp_untrusted_touch(&cp->st, slot);
		} else {
			if (untrusted)
				untrusted_make_room(cp, &in->source);
			slot = cp_server_add(&cp->st, &v);
			c = cp_server_at(&cp->st, slot);
			if (!c) {
				cp_err("out of memory adding server %s%s", in->fqdn,
				       lazy ? "" : " (it is stored; a restart loads it)");
				snprintf(msg, len, "tescontrol is out of memory");
				return -1;
			}
			c->stored = !lazy;
			if (lazy)
				cp_server_mark_dirty(&cp->st, slot);
			cp_tenant_cap_check(cp, ns.tenant_id);
		}
	}
	if (ch == TES_CHANGE_FIRST)
		cp->counts.first++;
	else if (ch == TES_CHANGE_REDETECTED)
		cp->counts.redetected++;
	else if (ch == TES_CHANGE_RESOLVED)
		cp->counts.resolved++;
	else
		cp->counts.tracked++;
	/* Untrusted input does not get to write a line per new name. */
	if (untrusted || ch == TES_CHANGE_TRACKED) {
		cp_debug("%s: tenant %u server %s from %s", ctl_change_name(ch), in->tenant_id,
			 in->fqdn, in->source.family != TES_ADDR_NONE ? "a source" : "-");
	} else {
		log_detection(cp, ch, &ns, &cls, in, when);
		cp_evlog_server(cp,
				ch == TES_CHANGE_FIRST        ? "first_detection"
				: ch == TES_CHANGE_REDETECTED ? "redetection"
							      : "resolved",
				&c->v.s, c->v.stage_logged, (enum tes_status)c->v.status_logged,
				json_pack("{s:I}", "detected_at", (json_int_t)when));
	}
	gw_push_server(cp, slot, now);
	cp_server_changed(cp, slot, now);
	return 0;
}
