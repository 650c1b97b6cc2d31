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

void cp_server_changed(struct cp *cp, uint32_t slot, int64_t now)
{
	struct cp_server *c = cp_server_at(&cp->st, slot);
	int64_t next;

	cp_xdp_request(cp);
	if (!c)
		return;
	next = tes_server_next_change(&c->v.s, cp_server_tenant(cp, &c->v.s), &cp->policy, now);
	if (next <= now)
		next = now + 1;
	cp_sched_set(&cp->st, slot, next);
	esc_arm(cp);
}

/* ---- start-up ---- */

static int load_tenant(const struct tes_tenant *t, void *ctx)
{
	return cp_tenant_put(&((struct cp *)ctx)->st, t);
}

static int load_server(const struct store_server *v, void *ctx)
{
	struct cp *cp = ctx;

	if (cp_server_find(&cp->st, v->s.tenant_id, v->s.fqdn) != CP_NO_SLOT)
		return 0; /* two spellings of one name: the key already merged them */
	return cp_server_add(&cp->st, v) == CP_NO_SLOT ? -1 : 0;
}

int cp_load_state(struct cp *cp)
{
	if (store_load_tenants(cp->store, load_tenant, cp)) {
		cp_err("loading tenants: %s", store_errmsg(cp->store));
		return -1;
	}
	if (store_load_servers(cp->store, load_server, cp)) {
		cp_err("loading servers: %s", store_errmsg(cp->store));
		return -1;
	}
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
	ch = tes_server_observe(c ? &c->v.s : NULL, in->tenant_id, in->fqdn, t, &d,
				in->source.family != TES_ADDR_NONE ? &in->source : NULL, when, &ns);
	*change = ch;
	switch (ch) {
	case TES_CHANGE_NONE:
		return 0;
	case TES_CHANGE_INVALID:
		snprintf(msg, len, "invalid server name");
		return -1;
	case TES_CHANGE_SEEN: {
		bool announce =
			ex_build_cmp(&c->v.s.build, &ns.build) != 0 || !same_sources(&c->v.s, &ns);

		c->v.s = ns;
		cp_server_mark_dirty(&cp->st, slot);
		if (announce) {
			gw_push_server(cp, slot, now);
			cp_xdp_request(cp); /* a new source of a dropped server */
		}
		return 0;
	}
	case TES_CHANGE_FIRST:
	case TES_CHANGE_REDETECTED:
	case TES_CHANGE_RESOLVED:
		break;
	}

	{
		struct store_server v;
		unsigned stage;
		enum tes_status status;

		memset(&v, 0, sizeof(v));
		v.s = ns;
		cp_server_view(cp, &ns, now, &stage, &status);
		v.stage_logged = (uint8_t)stage;
		v.status_logged = (uint8_t)status;
		/* Durable before anyone hears of it: the ack, the push to the
		 * gateways and any report all come after this commit. */
		if (store_put_server(cp->store, &v)) {
			cp->counts.store_errors++;
			cp_err("storing %s of %s: %s", ctl_change_name(ch), in->fqdn,
			       store_errmsg(cp->store));
			snprintf(msg, len, "tescontrol could not store the change; send it again");
			return -1;
		}
		if (c) {
			c->v = v;
			c->dirty = false;
		} else {
			slot = cp_server_add(&cp->st, &v);
			if (slot == CP_NO_SLOT) {
				cp_err("out of memory adding server %s (it is stored; a restart"
				       " loads it)",
				       in->fqdn);
				snprintf(msg, len, "tescontrol is out of memory");
				return -1;
			}
		}
	}
	if (ch == TES_CHANGE_FIRST)
		cp->counts.first++;
	else if (ch == TES_CHANGE_REDETECTED)
		cp->counts.redetected++;
	else
		cp->counts.resolved++;
	log_detection(cp, ch, &ns, &cls, in, when);
	{
		const struct cp_server *c2 = cp_server_at(&cp->st, slot);

		if (c2)
			cp_evlog_server(cp,
					ch == TES_CHANGE_FIRST        ? "first_detection"
					: ch == TES_CHANGE_REDETECTED ? "redetection"
								      : "resolved",
					&c2->v.s, c2->v.stage_logged,
					(enum tes_status)c2->v.status_logged,
					json_pack("{s:I}", "detected_at", (json_int_t)when));
	}
	gw_push_server(cp, slot, now);
	cp_server_changed(cp, slot, now);
	return 0;
}
