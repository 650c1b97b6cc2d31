/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Start-up: the catalog and policy in force (the store's, else the
 * configured files, then stored), and the tenants and servers on record.
 */
#include "controlplane/state/state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "controlplane/log.h"

static int load_tenant(const struct tes_tenant *t, void *ctx)
{
	return cp_tenant_put(&((struct cp_state *)ctx)->tab, t);
}

static int load_server(const struct store_server *v, void *ctx)
{
	struct cp_state *st = ctx;
	uint32_t slot;
	struct cp_server *c;

	if (cp_server_find(&st->tab, v->s.tenant_id, v->s.fqdn) != CP_NO_SLOT)
		return 0; /* two spellings of one name: the key already merged them */
	slot = cp_server_add(&st->tab, v);
	c = cp_server_at(&st->tab, slot);
	if (!c)
		return -1;
	c->stored = true;
	c->pushed_last_seen = v->s.last_seen;
	memcpy(c->pushed_source_seen, v->s.source_seen, sizeof(c->pushed_source_seen));
	if (store_shared(st->store)) {
		/* What was announced is each appliance's own; the others
		 * announced what fell due while this one was down. */
		unsigned stage;
		enum tes_status status;

		cp_state_server_view(st, &v->s, cp_state_now(st), &stage, &status);
		c->v.stage_logged = (uint8_t)stage;
		c->v.status_logged = (uint8_t)status;
		c->shared_last_seen = v->s.last_seen;
	}
	return 0;
}

int cp_state_load(struct cp_state *st)
{
	if (store_load_tenants(st->store, load_tenant, st)) {
		cp_err("loading tenants: %s", store_errmsg(st->store));
		return -1;
	}
	cp_untrusted_prefixes(&st->tab, st->policy.untrusted_prefix_v4,
			      st->policy.untrusted_prefix_v6);
	if (store_load_servers(st->store, load_server, st)) {
		cp_err("loading servers: %s", store_errmsg(st->store));
		return -1;
	}
	cp_untrusted_rebuild(&st->tab);
	cp_state_caps_check(st);
	cp_info("state: %zu tenants, %u servers (schema version %d)", st->tab.ntenants,
		st->tab.nlive, store_schema_version(st->store));
	return 0;
}

/* Read a whole file of at most max octets. */
static int read_text(const char *path, size_t max, struct store_doc *out, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	size_t got = 0;

	memset(out, 0, sizeof(*out));
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	if ((size_t)sb.st_size > max) {
		snprintf(err, errlen, "%s: larger than %zu octets", path, max);
		close(fd);
		return -1;
	}
	out->text = malloc((size_t)sb.st_size + 1);
	if (!out->text) {
		snprintf(err, errlen, "%s: out of memory", path);
		close(fd);
		return -1;
	}
	while (got < (size_t)sb.st_size) {
		ssize_t n = read(fd, out->text + got, (size_t)sb.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "%s: read error", path);
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

/* The files named in the configuration only seed the first start; later
 * changes go through tesctl catalog load.  Say so when they differ from
 * the stored catalog, or an edited file would seem ignored. */
static void compare_files(const struct cp_state *st, const char *catalog_file,
			  const char *compliance_file)
{
	struct store_doc b, c;
	char err[512];

	if (read_text(catalog_file, CTL_FRAME_MAX, &b, err, sizeof(err)))
		return;
	if (read_text(compliance_file, CTL_FRAME_MAX, &c, err, sizeof(err)) == 0) {
		if (b.len != st->builds.len || c.len != st->compliance.len ||
		    memcmp(b.text, st->builds.text, b.len) ||
		    memcmp(c.text, st->compliance.text, c.len))
			cp_info("catalog_file/compliance_file differ from the catalog in force;"
				" tesctl catalog load applies them");
		store_doc_free(&c);
	}
	store_doc_free(&b);
}

static int load_stored_catalog(struct cp_state *st, struct store_doc *b, struct store_doc *c)
{
	struct catalog_error cerr;

	st->catalog = catalog_parse(b->text, b->len, b->name, c->text, c->len, c->name, &cerr);
	if (!st->catalog) {
		cp_err("the stored catalog does not load: %s:%u: %s", cerr.file, cerr.line,
		       cerr.msg);
		store_doc_free(b);
		store_doc_free(c);
		return -1;
	}
	st->builds = *b;
	st->compliance = *c;
	cp_info("catalog in force: version %s (%zu builds), loaded from %s and %s",
		catalog_version(st->catalog), catalog_size(st->catalog), b->name, c->name);
	return 0;
}

static int load_catalog_files(struct cp_state *st, const char *catalog_file,
			      const char *compliance_file)
{
	struct store_doc b, c;
	struct catalog_error cerr;
	char err[512];

	if (read_text(catalog_file, CTL_FRAME_MAX, &b, err, sizeof(err))) {
		cp_err("catalog_file: %s", err);
		return -1;
	}
	if (read_text(compliance_file, CTL_FRAME_MAX, &c, err, sizeof(err))) {
		cp_err("compliance_file: %s", err);
		store_doc_free(&b);
		return -1;
	}
	st->catalog = catalog_parse(b.text, b.len, base_name(b.name), c.text, c.len,
				    base_name(c.name), &cerr);
	if (!st->catalog) {
		cp_err("catalog: %s:%u: %s", cerr.file, cerr.line, cerr.msg);
		store_doc_free(&b);
		store_doc_free(&c);
		return -1;
	}
	snprintf(b.version, sizeof(b.version), "%s", catalog_version(st->catalog));
	snprintf(c.version, sizeof(c.version), "%s", catalog_version(st->catalog));
	b.loaded_at = c.loaded_at = cp_state_now(st);
	if (store_begin(st->store) || store_put_doc(st->store, STORE_DOC_BUILDS, &b) ||
	    store_put_doc(st->store, STORE_DOC_COMPLIANCE, &c) || store_commit(st->store)) {
		cp_err("storing the catalog: %s", store_errmsg(st->store));
		store_rollback(st->store);
		store_doc_free(&b);
		store_doc_free(&c);
		return -1;
	}
	st->builds = b;
	st->compliance = c;
	cp_info("catalog loaded from %s and %s: version %s (%zu builds)", b.name, c.name,
		catalog_version(st->catalog), catalog_size(st->catalog));
	return 0;
}

static int load_catalog(struct cp_state *st, const char *catalog_file, const char *compliance_file)
{
	struct store_doc b, c;
	int hb, hc;

	hb = store_get_doc(st->store, STORE_DOC_BUILDS, &b);
	hc = hb < 0 ? -1 : store_get_doc(st->store, STORE_DOC_COMPLIANCE, &c);
	if (hb < 0 || hc < 0) {
		cp_err("reading the stored catalog: %s", store_errmsg(st->store));
		if (hb > 0)
			store_doc_free(&b);
		return -1;
	}
	if (hb > 0 && hc > 0) {
		if (load_stored_catalog(st, &b, &c))
			return -1;
		compare_files(st, catalog_file, compliance_file);
		return 0;
	}
	if (hb > 0)
		store_doc_free(&b);
	if (hc > 0)
		store_doc_free(&c);
	return load_catalog_files(st, catalog_file, compliance_file);
}

/* The policy text from policy_file, or the built-in policy's. */
static int policy_text(struct cp_state *st, const char *policy_file, struct store_doc *d)
{
	struct tes_policy_error perr;
	char err[512], buf[8192];
	int n;

	if (policy_file[0]) {
		if (read_text(policy_file, 64 * 1024, d, err, sizeof(err))) {
			cp_err("policy_file: %s", err);
			return -1;
		}
		if (tes_policy_parse(d->text, d->len, policy_file, &st->policy, &perr)) {
			tes_policy_error_format(&perr, err, sizeof(err));
			cp_err("policy: %s", err);
			store_doc_free(d);
			return -1;
		}
		return 0;
	}
	tes_policy_default(&st->policy);
	n = tes_policy_format(&st->policy, buf, sizeof(buf));
	if (n < 0 || (size_t)n >= sizeof(buf) || !(d->text = strdup(buf))) {
		cp_err("cannot format the built-in policy");
		return -1;
	}
	d->len = (size_t)n;
	snprintf(d->name, sizeof(d->name), "<built-in>");
	return 0;
}

static int load_policy(struct cp_state *st, const char *policy_file)
{
	struct tes_policy_error perr;
	struct store_doc d;
	char err[512];
	int h = store_get_doc(st->store, STORE_DOC_POLICY, &d);

	if (h < 0) {
		cp_err("reading the stored policy: %s", store_errmsg(st->store));
		return -1;
	}
	if (h > 0) {
		if (tes_policy_parse(d.text, d.len, d.name, &st->policy, &perr)) {
			tes_policy_error_format(&perr, err, sizeof(err));
			cp_err("the stored policy does not load: %s", err);
			store_doc_free(&d);
			return -1;
		}
		st->policy_doc = d;
		cp_info("policy in force: version %s, loaded from %s", d.version, d.name);
		return 0;
	}
	memset(&d, 0, sizeof(d));
	if (policy_text(st, policy_file, &d))
		return -1;
	cp_doc_version(d.text, d.len, "", 0, d.version, sizeof(d.version));
	d.loaded_at = cp_state_now(st);
	if (store_put_doc(st->store, STORE_DOC_POLICY, &d)) {
		cp_err("storing the policy: %s", store_errmsg(st->store));
		store_doc_free(&d);
		return -1;
	}
	st->policy_doc = d;
	cp_info("policy loaded from %s: version %s", d.name, d.version);
	return 0;
}

int cp_state_load_documents(struct cp_state *st, const char *catalog_file,
			    const char *compliance_file, const char *policy_file)
{
	if (load_policy(st, policy_file) || load_catalog(st, catalog_file, compliance_file))
		return -1;
	return 0;
}
