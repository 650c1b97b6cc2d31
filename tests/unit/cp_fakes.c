/* SPDX-License-Identifier: BSD-3-Clause */
/* Fakes for the control plane's unit tests (cp_fakes.h). */
#include "cp_fakes.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

void fake_journal_add(struct fake_journal *j, const char *fmt, ...)
{
	va_list ap;

	if (!j || j->n == FAKE_JOURNAL_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(j->line[j->n++], sizeof(j->line[0]), fmt, ap);
	va_end(ap);
}

int fake_journal_find(const struct fake_journal *j, const char *prefix, unsigned from)
{
	for (unsigned i = from; i < j->n; i++) {
		if (strncmp(j->line[i], prefix, strlen(prefix)) == 0)
			return (int)i;
	}
	return -1;
}

static struct fake_store *fs_of(struct tes_store *st)
{
	return (struct fake_store *)st;
}

/* Whether the call named op fails now (once). */
static bool failing(struct fake_store *fs, const char *op)
{
	if (fs->fail && strcmp(fs->fail, op) == 0) {
		fs->fail = NULL;
		snprintf(fs->base.err, sizeof(fs->base.err), "fake %s failure", op);
		return true;
	}
	return false;
}

static void f_close(struct tes_store *st)
{
	(void)st;
}

static int f_begin(struct tes_store *st)
{
	struct fake_store *fs = fs_of(st);

	fake_journal_add(fs->j, "begin");
	if (failing(fs, "begin"))
		return -1;
	fs->in_tx = true;
	return 0;
}

static int f_commit(struct tes_store *st)
{
	struct fake_store *fs = fs_of(st);

	fake_journal_add(fs->j, "commit");
	if (failing(fs, "commit"))
		return -1;
	fs->in_tx = false;
	fs->commits++;
	return 0;
}

static void f_rollback(struct tes_store *st)
{
	fake_journal_add(fs_of(st)->j, "rollback");
	fs_of(st)->in_tx = false;
}

static int f_load_tenants(struct tes_store *st, store_tenant_cb cb, void *ctx)
{
	struct fake_store *fs = fs_of(st);

	for (unsigned i = 0; i < fs->ntenants; i++) {
		if (cb(&fs->tenants[i], ctx))
			return -1;
	}
	return 0;
}

static int f_put_tenant(struct tes_store *st, const struct tes_tenant *t)
{
	struct fake_store *fs = fs_of(st);
	unsigned i;

	fake_journal_add(fs->j, "put_tenant %u", t->id);
	if (failing(fs, "put_tenant"))
		return -1;
	for (i = 0; i < fs->ntenants && fs->tenants[i].id != t->id; i++)
		;
	if (i == FAKE_TENANTS_MAX)
		return -1;
	fs->tenants[i] = *t;
	if (i == fs->ntenants)
		fs->ntenants++;
	return 0;
}

static int f_delete_tenant(struct tes_store *st, uint32_t id)
{
	struct fake_store *fs = fs_of(st);

	fake_journal_add(fs->j, "delete_tenant %u", id);
	if (failing(fs, "delete_tenant"))
		return -1;
	for (unsigned i = 0; i < fs->ntenants; i++) {
		if (fs->tenants[i].id == id) {
			fs->tenants[i] = fs->tenants[--fs->ntenants];
			break;
		}
	}
	return 0;
}

static int f_load_servers(struct tes_store *st, store_server_cb cb, void *ctx)
{
	struct fake_store *fs = fs_of(st);

	for (unsigned i = 0; i < fs->nservers; i++) {
		if (cb(&fs->servers[i], ctx))
			return -1;
	}
	return 0;
}

static int find_server(const struct fake_store *fs, uint32_t tenant, const char *fqdn)
{
	for (unsigned i = 0; i < fs->nservers; i++) {
		if (fs->servers[i].s.tenant_id == tenant &&
		    strcasecmp(fs->servers[i].s.fqdn, fqdn) == 0)
			return (int)i;
	}
	return -1;
}

static int f_put_server(struct tes_store *st, const struct store_server *s)
{
	struct fake_store *fs = fs_of(st);
	int i;

	fake_journal_add(fs->j, "put_server %u %s", s->s.tenant_id, s->s.fqdn);
	if (fs->watch) {
		const struct cp_server *c =
			cp_server_at((struct cp_tables *)&fs->watch->tab,
				     cp_server_find((struct cp_tables *)&fs->watch->tab,
						    s->s.tenant_id, s->s.fqdn));

		/* "in memory" means memory already has what is being stored */
		fs->in_memory_at_put = c && memcmp(&c->v, s, sizeof(*s)) == 0;
	}
	if (failing(fs, "put_server"))
		return -1;
	i = find_server(fs, s->s.tenant_id, s->s.fqdn);
	if (i < 0) {
		if (fs->nservers == FAKE_SERVERS_MAX)
			return -1;
		i = (int)fs->nservers++;
	}
	fs->servers[i] = *s;
	return 0;
}

static int f_delete_server(struct tes_store *st, uint32_t tenant_id, const char *fqdn)
{
	struct fake_store *fs = fs_of(st);
	int i;

	fake_journal_add(fs->j, "delete_server %u %s", tenant_id, fqdn);
	if (failing(fs, "delete_server"))
		return -1;
	i = find_server(fs, tenant_id, fqdn);
	if (i >= 0)
		fs->servers[i] = fs->servers[--fs->nservers];
	return 0;
}

static int doc_index(const char *key)
{
	if (strcmp(key, STORE_DOC_BUILDS) == 0)
		return 0;
	if (strcmp(key, STORE_DOC_COMPLIANCE) == 0)
		return 1;
	return 2;
}

static int f_get_doc(struct tes_store *st, const char *key, struct store_doc *out)
{
	const struct store_doc *d = &fs_of(st)->docs[doc_index(key)];

	if (!d->text)
		return 0;
	*out = *d;
	out->text = strdup(d->text);
	return out->text ? 1 : -1;
}

static int f_put_doc(struct tes_store *st, const char *key, const struct store_doc *doc)
{
	struct fake_store *fs = fs_of(st);
	struct store_doc *d = &fs->docs[doc_index(key)];

	fake_journal_add(fs->j, "put_doc %s", key);
	if (failing(fs, "put_doc"))
		return -1;
	store_doc_free(d);
	*d = *doc;
	d->text = strdup(doc->text);
	return 0;
}

static int f_schema_version(struct tes_store *st)
{
	(void)st;
	return 99;
}

static const struct store_ops fake_ops = {
	.close = f_close,
	.begin = f_begin,
	.commit = f_commit,
	.rollback = f_rollback,
	.load_tenants = f_load_tenants,
	.put_tenant = f_put_tenant,
	.delete_tenant = f_delete_tenant,
	.load_servers = f_load_servers,
	.put_server = f_put_server,
	.delete_server = f_delete_server,
	.get_doc = f_get_doc,
	.put_doc = f_put_doc,
	.schema_version = f_schema_version,
};

void fake_store_init(struct fake_store *fs, struct fake_journal *j)
{
	memset(fs, 0, sizeof(*fs));
	fs->base.ops = &fake_ops;
	fs->j = j;
}

void fake_store_free(struct fake_store *fs)
{
	for (int i = 0; i < 3; i++)
		store_doc_free(&fs->docs[i]);
}

const struct store_server *fake_store_server(const struct fake_store *fs, uint32_t tenant,
					     const char *fqdn)
{
	int i = find_server(fs, tenant, fqdn);

	return i < 0 ? NULL : &fs->servers[i];
}

static const char *const kind_name[] = {
	[CP_NOTE_SERVER] = "server",
	[CP_NOTE_SERVER_GONE] = "server_gone",
	[CP_NOTE_SERVER_EVALUATED] = "evaluated",
	[CP_NOTE_SERVER_RESUMED] = "resumed",
	[CP_NOTE_TENANT] = "tenant",
	[CP_NOTE_TENANT_GONE] = "tenant_gone",
	[CP_NOTE_POLICY] = "policy",
	[CP_NOTE_CATALOG] = "catalog",
	[CP_NOTE_CLOCK] = "clock",
	[CP_NOTE_EVENT] = "event",
};

void fake_sub_on_note(void *ctx, const struct cp_note *n)
{
	struct fake_sub *sub = ctx;
	char name[TES_FQDN_MAX + 16] = "-";

	sub->count[n->kind]++;
	if (n->server) {
		snprintf(name, sizeof(name), "%s", n->server->fqdn);
		if (sub->st)
			sub->server_in_memory =
				cp_server_find((struct cp_tables *)&sub->st->tab,
					       n->server->tenant_id, n->server->fqdn) != CP_NO_SLOT;
	} else if (n->tenant) {
		snprintf(name, sizeof(name), "%u", n->tenant->id);
	}
	fake_journal_add(sub->j, "note %s %s %s", kind_name[n->kind], name,
			 n->event ? n->event : "-");
	sub->last_fields[0] = '\0';
	if (n->fields) {
		char *s = json_dumps(n->fields, JSON_COMPACT | JSON_PRESERVE_ORDER);

		if (s)
			snprintf(sub->last_fields, sizeof(sub->last_fields), "%s", s);
		free(s);
	}
}

void fake_state(struct cp_state *st, struct fake_store *fs, struct cp_clock *clock,
		struct fake_sub *sub)
{
	const char *src = getenv("TES_SRCDIR");
	char b[4096], c[4096];

	assert_non_null(src);
	snprintf(b, sizeof(b), "%s/data/exchange-builds.csv", src);
	snprintf(c, sizeof(c), "%s/data/compliance.conf", src);
	assert_int_equal(cp_state_init(st, &fs->base, clock), 0);
	if (sub) {
		sub->st = st;
		assert_int_equal(cp_state_subscribe(st, fake_sub_on_note, sub), 0);
	}
	assert_int_equal(cp_state_load_documents(st, b, c, ""), 0);
	assert_int_equal(cp_state_load(st), 0);
	fs->watch = st;
}

void fake_tenant(struct cp_state *st, uint32_t id, const char *name)
{
	struct tes_tenant t;
	char range[64], err[256];

	memset(&t, 0, sizeof(t));
	t.id = id;
	snprintf(t.name, sizeof(t.name), "%s", name);
	snprintf(range, sizeof(range), "198.51.%u.0/24", 99 + id);
	assert_int_equal(tes_connector_parse(range, "", &t.connectors[0]), 0);
	t.nconnectors = 1;
	if (cp_state_put_tenant(st, &t, NULL, err, sizeof(err)))
		fail_msg("tenant %u: %s", id, err);
}

struct ctl_sighting fake_sighting(uint32_t tenant, const char *fqdn, const char *build,
				  const char *source)
{
	struct ctl_sighting s;

	memset(&s, 0, sizeof(s));
	s.tenant_id = tenant;
	snprintf(s.fqdn, sizeof(s.fqdn), "%s", fqdn);
	if (!ex_build_from_str(build, &s.build))
		fail_msg("bad build %s", build);
	s.family = ex_family_of(&s.build);
	s.cls = TES_BUILD_VULNERABLE;
	if (source && !tes_addr_parse(source, &s.source))
		fail_msg("bad address %s", source);
	return s;
}
