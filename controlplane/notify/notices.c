/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Notices before enforcement (notices.h).
 */
#include "controlplane/notify/notices.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "controlplane/log.h"
#include "controlplane/notify/sender.h"
#include "enforce/catalog.h"
#include "base/text.h"

/* A delivery's state in memory only: a restart tries every pending one at
 * once. */
struct drt {
	bool inflight;
	int64_t inflight_ms;
	int64_t next_ms; /* not before (monotonic) */
};

struct nrec {
	struct store_notice n;
	struct drt rt[STORE_DELIVERIES_MAX];
	uint64_t serial;
};

/* (tenant, name in lower case, kind, date): made already. */
struct dkey {
	uint32_t tenant_id;
	uint8_t kind;
	int64_t date;
	char key[TES_FQDN_MAX];
};

struct cp_notices {
	struct cp_state *st;
	struct cp_loop *loop;
	struct cp_notices_config cfg;
	char user_agent[64];
	struct cp_watch tick;
	struct cp_watch results;
	struct sender *sender;

	struct store_contacts *contacts; /* by tenant */
	size_t ncontacts;

	struct nrec **recs;
	size_t nrecs, caprecs;
	uint64_t next_serial;
	struct dkey *made; /* sorted */
	size_t nmade, capmade;

	bool scan_needed;
	int64_t prev_scan; /* tescontrol's clock at the last look */
	int64_t next_due;  /* the next notice due, by that clock */

	struct cp_notices_counts counts;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t real_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

/* ---- the set of notices made ---- */

static int cmp_dkey(const struct dkey *a, const struct dkey *b)
{
	if (a->tenant_id != b->tenant_id)
		return a->tenant_id < b->tenant_id ? -1 : 1;
	if (a->kind != b->kind)
		return a->kind < b->kind ? -1 : 1;
	if (a->date != b->date)
		return a->date < b->date ? -1 : 1;
	return strcmp(a->key, b->key);
}

static void dkey_of(uint32_t tenant_id, const char *fqdn, enum store_notice_kind kind, int64_t date,
		    struct dkey *k)
{
	size_t i;

	memset(k, 0, sizeof(*k));
	k->tenant_id = tenant_id;
	k->kind = (uint8_t)kind;
	k->date = date;
	for (i = 0; fqdn[i] && i < TES_FQDN_MAX - 1; i++)
		k->key[i] = (char)tolower((unsigned char)fqdn[i]);
}

static size_t made_find(const struct cp_notices *nt, const struct dkey *k, bool *found)
{
	size_t lo = 0, hi = nt->nmade;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_dkey(&nt->made[mid], k);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static int made_add(struct cp_notices *nt, const struct store_notice *n)
{
	struct dkey k;
	bool found;
	size_t i;

	dkey_of(n->tenant_id, n->fqdn, n->kind, n->date, &k);
	i = made_find(nt, &k, &found);
	if (found)
		return 0;
	if (nt->nmade == nt->capmade) {
		size_t cap = nt->capmade ? nt->capmade * 2 : 64;
		struct dkey *m = realloc(nt->made, cap * sizeof(*m));

		if (!m)
			return -1;
		nt->made = m;
		nt->capmade = cap;
	}
	memmove(&nt->made[i + 1], &nt->made[i], (nt->nmade - i) * sizeof(*nt->made));
	nt->made[i] = k;
	nt->nmade++;
	return 0;
}

static void made_del(struct cp_notices *nt, const struct store_notice *n)
{
	struct dkey k;
	bool found;
	size_t i;

	dkey_of(n->tenant_id, n->fqdn, n->kind, n->date, &k);
	i = made_find(nt, &k, &found);
	if (!found)
		return;
	memmove(&nt->made[i], &nt->made[i + 1], (nt->nmade - i - 1) * sizeof(*nt->made));
	nt->nmade--;
}

/* ---- contacts ---- */

static size_t contacts_find(const struct cp_notices *nt, uint32_t tenant_id, bool *found)
{
	size_t lo = 0, hi = nt->ncontacts;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (nt->contacts[mid].tenant_id == tenant_id) {
			*found = true;
			return mid;
		}
		if (nt->contacts[mid].tenant_id < tenant_id)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

const struct store_contacts *cp_notices_contacts(const struct cp_notices *nt, uint32_t tenant_id)
{
	bool found;
	size_t i = contacts_find(nt, tenant_id, &found);

	return found ? &nt->contacts[i] : NULL;
}

static int contacts_put_mem(struct cp_notices *nt, const struct store_contacts *c)
{
	bool found;
	size_t i = contacts_find(nt, c->tenant_id, &found);
	struct store_contacts *n;

	if (found) {
		nt->contacts[i] = *c;
		return 0;
	}
	n = realloc(nt->contacts, (nt->ncontacts + 1) * sizeof(*n));
	if (!n)
		return -1;
	nt->contacts = n;
	memmove(&nt->contacts[i + 1], &nt->contacts[i], (nt->ncontacts - i) * sizeof(*n));
	nt->contacts[i] = *c;
	nt->ncontacts++;
	return 0;
}

static void contacts_del_mem(struct cp_notices *nt, uint32_t tenant_id)
{
	bool found;
	size_t i = contacts_find(nt, tenant_id, &found);

	if (!found)
		return;
	memmove(&nt->contacts[i], &nt->contacts[i + 1],
		(nt->ncontacts - i - 1) * sizeof(*nt->contacts));
	nt->ncontacts--;
}

/* What may go into an URL we POST to: http(s), printable, no spaces. */
static bool url_ok(const char *u)
{
	if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
		return false;
	for (const char *p = u; *p; p++) {
		if (*p <= ' ' || *p > '~')
			return false;
	}
	return strlen(u) > 8;
}

/* A plain address: local@domain, printable, nothing a mail header or an
 * SMTP command line would read as syntax. */
static bool addr_ok(const char *a)
{
	const char *at = strchr(a, '@');

	if (!at || at == a || !at[1] || strchr(at + 1, '@') || strlen(a) > 254)
		return false;
	for (const char *p = a; *p; p++) {
		if (*p <= ' ' || *p > '~' || strchr("<>()[]\\,;:\"", *p))
			return false;
	}
	return true;
}

static bool secret_ok(const char *s)
{
	if (!s[0])
		return false;
	for (const char *p = s; *p; p++) {
		if (*p < ' ' || *p > '~')
			return false;
	}
	return true;
}

/* Deliveries not done of a tenant's notices stop: nobody is to be told. */
static void cancel_pending(struct cp_notices *nt, uint32_t tenant_id, const char *why)
{
	for (size_t i = 0; i < nt->nrecs; i++) {
		struct store_notice *n = &nt->recs[i]->n;
		bool changed = false;

		if (n->tenant_id != tenant_id)
			continue;
		for (unsigned k = 0; k < n->ndeliveries; k++) {
			if (n->d[k].done || n->d[k].expired)
				continue;
			n->d[k].expired = true;
			tes_str_copy(n->d[k].last_error, sizeof(n->d[k].last_error), why);
			changed = true;
		}
		if (changed && store_put_notice(nt->st->store, n)) {
			nt->counts.store_errors++;
			cp_warn("notice %s: store: %s", n->id, store_errmsg(nt->st->store));
		}
	}
}

int cp_notices_set_contacts(struct cp_notices *nt, const struct store_contacts *c, char *err,
			    size_t errlen)
{
	struct store_contacts v = *c;
	const struct store_contacts *old;

	if (!cp_tenant_find(&nt->st->tab, c->tenant_id)) {
		snprintf(err, errlen, "no tenant %" PRIu32, c->tenant_id);
		return -1;
	}
	if (c->days_before > 365) {
		snprintf(err, errlen, "days before: %u is more than 365", c->days_before);
		return -1;
	}
	if (!c->webhook[0] && !c->nmail) {
		snprintf(err, errlen, "no webhook and no mail address: nobody to tell");
		return -1;
	}
	if (c->webhook[0] && !url_ok(c->webhook)) {
		snprintf(err, errlen, "webhook \"%.200s\" is not an http:// or https:// URL",
			 c->webhook);
		return -1;
	}
	if (c->webhook[0] && !secret_ok(c->secret)) {
		snprintf(err, errlen,
			 "a webhook needs a secret: printable ASCII, 1 to %d characters (its "
			 "signatures are HMAC-SHA256 under it)",
			 STORE_SECRET_MAX - 1);
		return -1;
	}
	if (c->nmail && !nt->cfg.smtp_relay[0]) {
		snprintf(err, errlen,
			 "mail addresses given, but notice_smtp_relay is not set in "
			 "tescontrol's configuration");
		return -1;
	}
	for (unsigned i = 0; i < c->nmail; i++) {
		if (!addr_ok(c->mail[i])) {
			snprintf(err, errlen, "\"%.200s\" is not a mail address (local@domain)",
				 c->mail[i]);
			return -1;
		}
	}
	if (!c->webhook[0])
		v.secret[0] = '\0';
	old = cp_notices_contacts(nt, c->tenant_id);
	/* dates before the first set got no notice; a change keeps that */
	v.since = old ? old->since : cp_state_now(nt->st);
	if (store_put_contacts(nt->st->store, &v)) {
		snprintf(err, errlen, "store: %s", store_errmsg(nt->st->store));
		return -1;
	}
	if (contacts_put_mem(nt, &v)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	nt->scan_needed = true;
	return 0;
}

int cp_notices_clear_contacts(struct cp_notices *nt, uint32_t tenant_id, char *err, size_t errlen)
{
	if (!cp_notices_contacts(nt, tenant_id)) {
		snprintf(err, errlen, "tenant %" PRIu32 " has no notice contacts", tenant_id);
		return -1;
	}
	if (store_delete_contacts(nt->st->store, tenant_id)) {
		snprintf(err, errlen, "store: %s", store_errmsg(nt->st->store));
		return -1;
	}
	contacts_del_mem(nt, tenant_id);
	cancel_pending(nt, tenant_id, "cancelled: the tenant's contacts were cleared");
	return 0;
}

json_t *cp_notices_contacts_json(const struct cp_notices *nt, const struct store_contacts *c)
{
	json_t *mail = json_array();
	char iso[40];

	for (unsigned i = 0; i < c->nmail; i++)
		json_array_append_new(mail, json_string(c->mail[i]));
	tes_time_format(c->since, nt->st->policy.utc_offset_min, iso, sizeof(iso));
	return json_pack("{s:I, s:I, s:s?, s:b, s:o, s:s, s:I}", "tenant", (json_int_t)c->tenant_id,
			 "days_before", (json_int_t)c->days_before, "webhook",
			 c->webhook[0] ? c->webhook : NULL, "signed", c->secret[0] != 0, "mail",
			 mail, "since", iso, "since_unix", (json_int_t)c->since);
}

/* ---- what a notice says ---- */

static const char *kind_text(enum store_notice_kind k)
{
	switch (k) {
	case STORE_NOTICE_THROTTLE:
		return "will be throttled from";
	case STORE_NOTICE_BLOCK:
		return "will be blocked from";
	default:
		return "was resolved on";
	}
}

char *cp_notice_body(const struct cp_state *st, const char *id, enum store_notice_kind kind,
		     const struct tes_server *s, const struct tes_tenant *t, int64_t date,
		     int64_t due, unsigned days_before)
{
	int off = st->policy.utc_offset_min;
	char date_iso[40], due_iso[40], build[48], text[800];
	struct catalog_class cls;
	struct tes_report rep;
	json_t *o, *rec = json_array();
	char *out;

	tes_time_format(date, off, date_iso, sizeof(date_iso));
	tes_time_format(due, off, due_iso, sizeof(due_iso));
	ex_build_format(&s->build, build, sizeof(build));
	tes_server_report(s, t, &st->policy, due, &rep);
	catalog_classify(st->catalog, &s->build, due, &cls);
	for (unsigned i = 0; i < cls.nrecommended && i < CATALOG_MAX_RECOMMENDED; i++) {
		char b[48];

		ex_build_format(&cls.recommended[i]->build, b, sizeof(b));
		json_array_append_new(rec, json_pack("{s:s, s:s}", "build", b, "update",
						     cls.recommended[i]->update));
	}
	if (kind == STORE_NOTICE_RESOLVED)
		snprintf(text, sizeof(text),
			 "Exchange server %s (tenant %s) %s %.10s: it now runs build %s, and its "
			 "mail is no longer throttled or blocked.",
			 s->fqdn, t ? t->name : "", kind_text(kind), date_iso, build);
	else
		snprintf(text, sizeof(text),
			 "Exchange server %s (tenant %s) runs build %s, which is out of date: its "
			 "mail %s %.10s unless it is updated.",
			 s->fqdn, t ? t->name : "", build, kind_text(kind), date_iso);
	o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:s, s:i, s:o, s:s}",
		      "id", id, "kind", store_notice_kind_name(kind), "tenant",
		      (json_int_t)s->tenant_id, "tenant_name", t ? t->name : "", "server", s->fqdn,
		      "build", build, "family", ex_family_name(s->family), "date", date_iso,
		      "date_unix", (json_int_t)date, "due", due_iso, "due_unix", (json_int_t)due,
		      "status", tes_status_name(rep.status), "stage", (int)rep.stage, "recommended",
		      rec, "text", text);
	if (!o)
		return NULL;
	if (kind != STORE_NOTICE_RESOLVED)
		json_object_set_new(o, "days_before", json_integer(days_before));
	out = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	return out;
}

void cp_notice_signature(const char *secret, const char *body, char out[72])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	size_t n = 7;

	memcpy(out, "sha256=", 7);
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, strlen(body),
	     mac, &len);
	for (unsigned i = 0; i < len && i < 32; i++) {
		out[n++] = digits[mac[i] >> 4];
		out[n++] = digits[mac[i] & 15];
	}
	out[n] = '\0';
}

unsigned cp_notice_backoff(unsigned retry_min, unsigned retry_max, uint32_t attempts)
{
	uint64_t d = retry_min ? retry_min : 1;

	for (uint32_t i = 1; i < attempts && d < retry_max; i++)
		d *= 2;
	return (unsigned)(d < retry_max ? d : retry_max);
}

/* A header value: what came from outside made printable ASCII. */
static void header_text(const char *in, char *out, size_t len)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)in; *p && n + 1 < len; p++)
		out[n++] = (*p >= ' ' && *p <= '~') ? (char)*p : '?';
	out[n] = '\0';
}

/* The whole mail of a notice to one recipient, CRLF lines. */
static char *mail_message(const struct cp_notices *nt, const struct store_notice *n,
			  const char *rcpt)
{
	char from[STORE_ADDR_MAX], to[STORE_ADDR_MAX], server[TES_FQDN_MAX], date[64], when[40];
	const char *domain = strchr(nt->cfg.mail_from, '@');
	json_t *body;
	char *pretty = NULL, *msg = NULL, *text = NULL;
	struct tm tm;
	time_t created = (time_t)n->created;
	size_t len;
	FILE *f;

	header_text(nt->cfg.mail_from, from, sizeof(from));
	header_text(rcpt, to, sizeof(to));
	header_text(n->fqdn, server, sizeof(server));
	gmtime_r(&created, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	tes_time_format(n->date, nt->st->policy.utc_offset_min, when, sizeof(when));
	body = json_loads(n->body, 0, NULL);
	if (body) {
		text = strdup(json_string_value(json_object_get(body, "text")) ?: "");
		pretty = json_dumps(body, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		json_decref(body);
	}
	f = open_memstream(&msg, &len);
	if (!f) {
		free(text);
		free(pretty);
		return NULL;
	}
	/* The same text every time it is sent (Date is when it was made),
	 * so a duplicate is the same message with the same Message-ID. */
	fprintf(f,
		"From: tesgate notices <%s>\r\nTo: <%s>\r\nSubject: [tesgate] %s: %s %.10s\r\n"
		"Date: %s\r\nMessage-ID: <%s@%s>\r\nX-Tesgate-Notice-Id: %s\r\n"
		"X-Tesgate-Notice-Kind: %s\r\nAuto-Submitted: auto-generated\r\n"
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
		"Content-Transfer-Encoding: 8bit\r\n\r\n",
		from, to, server, kind_text(n->kind), when, date, n->id,
		domain && domain[1] ? domain + 1 : "tescontrol.invalid", n->id,
		store_notice_kind_name(n->kind));
	if (text)
		fprintf(f, "%s\r\n\r\n", text);
	fprintf(f, "Notice %s as JSON:\r\n\r\n", n->id);
	/* the JSON's lines are short (indented), CRLF for SMTP; a leading
	 * dot is libcurl's to stuff */
	for (const char *p = pretty ? pretty : n->body; *p; p++) {
		if (*p == '\n')
			fputc('\r', f);
		fputc(*p, f);
	}
	fputs("\r\n", f);
	fclose(f);
	free(text);
	free(pretty);
	return msg;
}

/* ---- deliveries ---- */

static void persist(struct cp_notices *nt, const struct store_notice *n)
{
	if (store_put_notice(nt->st->store, n)) {
		/* memory keeps the state; a restart sends it again at worst */
		nt->counts.store_errors++;
		cp_warn("notice %s: store: %s", n->id, store_errmsg(nt->st->store));
	}
}

static char *xstrdup(const char *s)
{
	return strdup(s ? s : "");
}

static char *printf_dup(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *printf_dup(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

static void dispatch(struct cp_notices *nt, struct nrec *r, unsigned k)
{
	struct store_notice *n = &r->n;
	struct store_delivery *d = &n->d[k];
	struct sender_job *j;

	if (!nt->sender || r->rt[k].inflight || d->done || d->expired)
		return;
	j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->tag = (r->serial << 8) | k;
	j->mail = d->mail;
	if (d->mail) {
		j->url = printf_dup("smtp://%s", nt->cfg.smtp_relay);
		j->mail_from = printf_dup("<%s>", nt->cfg.mail_from);
		j->rcpt = printf_dup("<%s>", d->target);
		j->message = mail_message(nt, n, d->target);
		if (!j->url || !j->mail_from || !j->rcpt || !j->message)
			goto nomem;
	} else {
		char sig[72];

		j->url = xstrdup(d->target);
		j->body = xstrdup(n->body);
		j->headers = calloc(3, sizeof(*j->headers));
		if (!j->url || !j->body || !j->headers)
			goto nomem;
		j->headers[j->nheaders++] = printf_dup("X-Tesgate-Notice-Id: %s", n->id);
		j->headers[j->nheaders++] =
			printf_dup("X-Tesgate-Notice-Kind: %s", store_notice_kind_name(n->kind));
		cp_notice_signature(n->secret, n->body, sig);
		j->headers[j->nheaders++] = printf_dup("X-Tesgate-Signature-256: %s", sig);
		for (size_t i = 0; i < j->nheaders; i++) {
			if (!j->headers[i])
				goto nomem;
		}
	}
	r->rt[k].inflight = true;
	r->rt[k].inflight_ms = mono_ms();
	sender_push(nt->sender, j);
	return;
nomem:
	sender_job_free(j);
	cp_warn("notice %s: out of memory; retrying", n->id);
}

static struct nrec *rec_by_serial(struct cp_notices *nt, uint64_t serial)
{
	for (size_t i = 0; i < nt->nrecs; i++) {
		if (nt->recs[i]->serial == serial)
			return nt->recs[i];
	}
	return NULL;
}

static void on_result(struct cp_notices *nt, const struct sender_result *res)
{
	struct nrec *r = rec_by_serial(nt, res->tag >> 8);
	unsigned k = (unsigned)(res->tag & 0xff);
	struct store_delivery *d;

	if (!r || k >= r->n.ndeliveries)
		return; /* pruned meanwhile */
	d = &r->n.d[k];
	r->rt[k].inflight = false;
	d->attempts++;
	d->last_attempt = real_now();
	if (res->ok) {
		d->done = true;
		d->done_at = d->last_attempt;
		d->last_error[0] = '\0';
		if (d->mail)
			nt->counts.delivered_mail++;
		else
			nt->counts.delivered_webhook++;
		cp_info("notice %s (%s, tenant %" PRIu32 " server %s): delivered to %s %s after %u "
			"attempt%s",
			r->n.id, store_notice_kind_name(r->n.kind), r->n.tenant_id, r->n.fqdn,
			d->mail ? "mail" : "webhook", d->target, d->attempts,
			d->attempts == 1 ? "" : "s");
	} else {
		unsigned delay =
			cp_notice_backoff(nt->cfg.retry_min, nt->cfg.retry_max, d->attempts);

		tes_str_copy(d->last_error, sizeof(d->last_error), res->error);
		if (d->mail)
			nt->counts.failed_mail++;
		else
			nt->counts.failed_webhook++;
		r->rt[k].next_ms = mono_ms() + (int64_t)delay * 1000;
		cp_warn("notice %s: %s %s: %s; attempt %u failed, next in %u s", r->n.id,
			d->mail ? "mail" : "webhook", d->target, res->error, d->attempts, delay);
	}
	/* done only once it is in the journal; a crash before then sends it
	 * again, with the same id */
	persist(nt, &r->n);
}

static void on_results(struct cp_watch *w, uint32_t events)
{
	struct cp_notices *nt = cp_container_of(w, struct cp_notices, results);
	struct sender_result res;

	(void)events;
	while (sender_pop(nt->sender, &res))
		on_result(nt, &res);
}

/* ---- making notices ---- */

static int random_hex(char *out, size_t nbytes)
{
	static const char digits[] = "0123456789abcdef";
	uint8_t b[32];
	size_t got = 0;

	if (nbytes > sizeof(b))
		return -1;
	while (got < nbytes) {
		ssize_t k = getrandom(b + got, nbytes - got, 0);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * nbytes] = '\0';
	return 0;
}

static int recs_add(struct cp_notices *nt, struct nrec *r)
{
	if (nt->nrecs == nt->caprecs) {
		size_t cap = nt->caprecs ? nt->caprecs * 2 : 32;
		struct nrec **n = realloc(nt->recs, cap * sizeof(*n));

		if (!n)
			return -1;
		nt->recs = n;
		nt->caprecs = cap;
	}
	r->serial = ++nt->next_serial;
	nt->recs[nt->nrecs++] = r;
	return 0;
}

static void make(struct cp_notices *nt, const struct store_contacts *c, const struct tes_server *s,
		 const struct tes_tenant *t, enum store_notice_kind kind, int64_t date, int64_t due)
{
	struct nrec *r = calloc(1, sizeof(*r));
	struct store_notice *n;
	char when[40];

	if (!r || random_hex(r->n.id, STORE_NOTICE_ID_LEN / 2)) {
		free(r);
		cp_warn("notices: cannot make a notice id; retrying");
		nt->scan_needed = true;
		return;
	}
	n = &r->n;
	n->tenant_id = s->tenant_id;
	tes_str_copy(n->fqdn, sizeof(n->fqdn), s->fqdn);
	n->kind = kind;
	n->date = date;
	n->due = due;
	n->created = real_now();
	tes_str_copy(n->secret, sizeof(n->secret), c->secret);
	n->body = cp_notice_body(nt->st, n->id, kind, s, t, date, due, c->days_before);
	if (c->webhook[0]) {
		n->d[n->ndeliveries].mail = false;
		tes_str_copy(n->d[n->ndeliveries].target, STORE_URL_MAX, c->webhook);
		n->ndeliveries++;
	}
	for (unsigned i = 0; i < c->nmail && nt->cfg.smtp_relay[0]; i++) {
		n->d[n->ndeliveries].mail = true;
		tes_str_copy(n->d[n->ndeliveries].target, STORE_URL_MAX, c->mail[i]);
		n->ndeliveries++;
	}
	if (!n->body || !n->ndeliveries) {
		store_notice_free(n);
		free(r);
		return;
	}
	/* in the journal before anything is sent */
	if (store_put_notice(nt->st->store, n)) {
		nt->counts.store_errors++;
		cp_warn("notice for tenant %" PRIu32 " server %s: store: %s; retrying",
			n->tenant_id, n->fqdn, store_errmsg(nt->st->store));
		store_notice_free(n);
		free(r);
		nt->scan_needed = true;
		return;
	}
	if (recs_add(nt, r) || made_add(nt, n)) {
		/* journaled: a restart sends it */
		cp_warn("notice %s: out of memory; it is sent after a restart", n->id);
		return;
	}
	nt->counts.made[kind]++;
	tes_time_format(date, nt->st->policy.utc_offset_min, when, sizeof(when));
	cp_info("notice %s: %s, tenant %" PRIu32 " server %s, date %s, %u deliver%s", n->id,
		store_notice_kind_name(kind), n->tenant_id, n->fqdn, when, n->ndeliveries,
		n->ndeliveries == 1 ? "y" : "ies");
	for (unsigned k = 0; k < n->ndeliveries; k++)
		dispatch(nt, r, k);
}

/* One date of one server: due days before it (a resolution: at once). */
static void consider(struct cp_notices *nt, const struct store_contacts *c,
		     const struct tes_server *s, const struct tes_tenant *t,
		     enum store_notice_kind kind, int64_t date, int64_t now)
{
	int64_t due = kind == STORE_NOTICE_RESOLVED ? date : date - (int64_t)c->days_before * 86400;
	struct dkey k;
	bool found;

	if (date < c->since)
		return; /* before anyone asked to be told */
	if (due > now) {
		if (due < nt->next_due)
			nt->next_due = due;
		return;
	}
	/* A date already passed whose notice fell due before the last look
	 * (tescontrol was not running, or the date moved back): too late to
	 * warn of it.  A resolution is told whenever it is found. */
	if (kind != STORE_NOTICE_RESOLVED && date < now && due <= nt->prev_scan)
		return;
	dkey_of(s->tenant_id, s->fqdn, kind, date, &k);
	made_find(nt, &k, &found);
	if (!found)
		make(nt, c, s, t, kind, date, due);
}

/* Finished notices of servers no longer on record go. */
static void prune(struct cp_notices *nt)
{
	size_t out = 0;

	for (size_t i = 0; i < nt->nrecs; i++) {
		struct nrec *r = nt->recs[i];

		if (store_notice_finished(&r->n) &&
		    cp_server_find(&nt->st->tab, r->n.tenant_id, r->n.fqdn) == CP_NO_SLOT &&
		    store_delete_notice(nt->st->store, r->n.id) == 0) {
			made_del(nt, &r->n);
			store_notice_free(&r->n);
			free(r);
			continue;
		}
		nt->recs[out++] = r;
	}
	nt->nrecs = out;
}

static void scan(struct cp_notices *nt)
{
	struct cp_state *st = nt->st;
	int64_t now = cp_state_now(st);

	nt->scan_needed = false;
	nt->next_due = INT64_MAX;
	if (nt->ncontacts) {
		for (uint32_t i = 0; i < st->tab.nslots; i++) {
			const struct cp_server *c = &st->tab.srv[i];
			const struct store_contacts *ct;
			const struct tes_tenant *t;
			struct tes_report rep;

			if (!c->live || !c->v.s.tenant_id || tes_server_compliant_only(&c->v.s))
				continue;
			ct = cp_notices_contacts(nt, c->v.s.tenant_id);
			if (!ct)
				continue;
			t = cp_state_server_tenant(st, &c->v.s);
			if (c->v.s.resolved) {
				consider(nt, ct, &c->v.s, t, STORE_NOTICE_RESOLVED,
					 c->v.s.resolved_at, now);
				continue;
			}
			tes_server_report(&c->v.s, t, &st->policy, now, &rep);
			if (rep.status == TES_STATUS_STALE)
				continue; /* its dates are not known */
			if (rep.has_throttle_date)
				consider(nt, ct, &c->v.s, t, STORE_NOTICE_THROTTLE,
					 rep.throttle_enabled, now);
			if (rep.has_block_date)
				consider(nt, ct, &c->v.s, t, STORE_NOTICE_BLOCK,
					 rep.blocking_enabled, now);
		}
	}
	prune(nt);
	nt->prev_scan = now;
}

/* ---- the loop's side ---- */

void cp_notices_on_note(void *ctx, const struct cp_note *n)
{
	struct cp_notices *nt = ctx;

	switch (n->kind) {
	case CP_NOTE_SERVER_EVALUATED:
	case CP_NOTE_SERVER_RESUMED:
	case CP_NOTE_EVENT:
		return;
	case CP_NOTE_TENANT_GONE:
		if (n->tenant && cp_notices_contacts(nt, n->tenant->id)) {
			if (store_delete_contacts(nt->st->store, n->tenant->id)) {
				nt->counts.store_errors++;
				cp_warn("notices: tenant %" PRIu32 ": store: %s", n->tenant->id,
					store_errmsg(nt->st->store));
			}
			contacts_del_mem(nt, n->tenant->id);
			cancel_pending(nt, n->tenant->id, "cancelled: the tenant was deleted");
		}
		break;
	default:
		break;
	}
	nt->scan_needed = true;
}

void cp_notices_after_round(struct cp_notices *nt)
{
	if (nt && nt->scan_needed)
		scan(nt);
}

static void on_tick(struct cp_watch *w, uint32_t events)
{
	struct cp_notices *nt = cp_container_of(w, struct cp_notices, tick);
	int64_t now_ms = mono_ms(), now = real_now();
	uint64_t x;
	/* an attempt whose outcome never came (the sender lost it) is made
	 * again once it is well past its time limit */
	int64_t lost_ms = ((int64_t)nt->cfg.timeout * 2 + 10) * 1000;

	(void)events;
	if (read(w->fd, &x, sizeof(x)) < 0 && errno != EAGAIN)
		cp_debug("notices timer: %s", strerror(errno));
	if (nt->scan_needed || cp_state_now(nt->st) >= nt->next_due)
		scan(nt);
	for (size_t i = 0; i < nt->nrecs; i++) {
		struct nrec *r = nt->recs[i];

		for (unsigned k = 0; k < r->n.ndeliveries; k++) {
			struct store_delivery *d = &r->n.d[k];

			if (d->done || d->expired)
				continue;
			if (r->rt[k].inflight) {
				if (now_ms - r->rt[k].inflight_ms > lost_ms)
					r->rt[k].inflight = false;
				continue;
			}
			if (now_ms < r->rt[k].next_ms)
				continue;
			if (now - r->n.created > (int64_t)nt->cfg.expire_days * 86400) {
				d->expired = true;
				nt->counts.expired++;
				cp_warn("notice %s: %s %s: given up after %u attempts over %u days "
					"(last: %s)",
					r->n.id, d->mail ? "mail" : "webhook", d->target,
					d->attempts, nt->cfg.expire_days, d->last_error);
				persist(nt, &r->n);
				continue;
			}
			dispatch(nt, r, k);
		}
	}
}

static int load_contacts(const struct store_contacts *c, void *ctx)
{
	return contacts_put_mem(ctx, c);
}

static int load_notice(struct store_notice *n, void *ctx)
{
	struct cp_notices *nt = ctx;
	struct nrec *r = calloc(1, sizeof(*r));

	if (!r) {
		store_notice_free(n);
		return -1;
	}
	r->n = *n;
	if (recs_add(nt, r) || made_add(nt, &r->n)) {
		store_notice_free(&r->n);
		free(r);
		return -1;
	}
	return 0;
}

/* The journal in the order notices fell due (the store gives it by id). */
static int cmp_rec(const void *a, const void *b)
{
	const struct store_notice *x = &(*(struct nrec *const *)a)->n;
	const struct store_notice *y = &(*(struct nrec *const *)b)->n;

	if (x->due != y->due)
		return x->due < y->due ? -1 : 1;
	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(x->id, y->id);
}

int cp_notices_init(struct cp_notices **out, const struct cp_notices_config *c, struct cp_state *st,
		    struct cp_loop *loop)
{
	struct cp_notices *nt = calloc(1, sizeof(*nt));
	struct itimerspec its;
	size_t pending = 0;

	*out = NULL;
	if (!nt) {
		cp_err("notices: out of memory");
		return -1;
	}
	nt->st = st;
	nt->loop = loop;
	nt->cfg = *c;
	nt->tick.fd = -1;
	nt->results.fd = -1;
	nt->tick.fn = on_tick;
	nt->results.fn = on_results;
	nt->prev_scan = cp_state_now(st);
	nt->next_due = INT64_MAX;
	snprintf(nt->user_agent, sizeof(nt->user_agent), "tescontrol/%s",
		 c->version ? c->version : "");
	*out = nt;
	if (store_load_contacts(st->store, load_contacts, nt) ||
	    store_load_notices(st->store, load_notice, nt)) {
		cp_err("notices: loading from the store: %s", store_errmsg(st->store));
		return -1;
	}
	if (nt->nrecs)
		qsort(nt->recs, nt->nrecs, sizeof(*nt->recs), cmp_rec);
	for (size_t i = 0; i < nt->nrecs; i++) {
		nt->recs[i]->serial = i + 1;
		pending += !store_notice_finished(&nt->recs[i]->n);
	}
	nt->next_serial = nt->nrecs;
	nt->tick.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = 1;
	its.it_interval.tv_sec = 1;
	if (nt->tick.fd < 0 || timerfd_settime(nt->tick.fd, 0, &its, NULL) ||
	    cp_watch_add(loop, &nt->tick, EPOLLIN)) {
		cp_err("notices timer: %s", strerror(errno));
		return -1;
	}
	cp_info("notices: %zu tenant%s with contacts, %zu notice%s in the journal, %zu not "
		"delivered yet%s%s",
		nt->ncontacts, nt->ncontacts == 1 ? "" : "s", nt->nrecs, nt->nrecs == 1 ? "" : "s",
		pending, c->smtp_relay[0] ? "; mail through " : "",
		c->smtp_relay[0] ? c->smtp_relay : "");
	nt->scan_needed = true;
	return 0;
}

int cp_notices_start(struct cp_notices *nt)
{
	nt->sender = sender_start(nt->cfg.timeout, nt->user_agent);
	if (!nt->sender)
		return -1;
	nt->results.fd = sender_fd(nt->sender);
	if (cp_watch_add(nt->loop, &nt->results, EPOLLIN)) {
		cp_err("notices: %s", strerror(errno));
		return -1;
	}
	/* what the journal has pending goes out now */
	for (size_t i = 0; i < nt->nrecs; i++) {
		for (unsigned k = 0; k < nt->recs[i]->n.ndeliveries; k++)
			dispatch(nt, nt->recs[i], k);
	}
	return 0;
}

void cp_notices_stop(struct cp_notices *nt)
{
	if (!nt)
		return;
	if (nt->sender) {
		struct sender_result res;

		sender_stop(nt->sender);
		(void)res;
	}
	if (nt->results.fd >= 0)
		cp_watch_del(nt->loop, &nt->results);
	if (nt->tick.fd >= 0) {
		cp_watch_del(nt->loop, &nt->tick);
		close(nt->tick.fd);
	}
	for (size_t i = 0; i < nt->nrecs; i++) {
		store_notice_free(&nt->recs[i]->n);
		free(nt->recs[i]);
	}
	free(nt->recs);
	free(nt->made);
	free(nt->contacts);
	free(nt);
}

/* ---- views ---- */

json_t *cp_notices_list(const struct cp_notices *nt, uint32_t tenant_id, bool pending)
{
	json_t *a = json_array();
	int off = nt->st->policy.utc_offset_min;

	for (size_t i = 0; a && i < nt->nrecs; i++) {
		const struct store_notice *n = &nt->recs[i]->n;
		json_t *ds = json_array(), *o;
		char date[40], due[40];

		if ((tenant_id && n->tenant_id != tenant_id) ||
		    (pending && store_notice_finished(n))) {
			json_decref(ds);
			continue;
		}
		for (unsigned k = 0; k < n->ndeliveries; k++) {
			const struct store_delivery *d = &n->d[k];

			json_array_append_new(
				ds, json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "via",
					      d->mail ? "mail" : "webhook", "target", d->target,
					      "state",
					      d->done      ? "delivered"
					      : d->expired ? "expired"
							   : "pending",
					      "attempts", (json_int_t)d->attempts, "delivered_unix",
					      (json_int_t)d->done_at, "last_error", d->last_error));
		}
		tes_time_format(n->date, off, date, sizeof(date));
		tes_time_format(n->due, off, due, sizeof(due));
		o = json_pack("{s:s, s:s, s:I, s:s, s:s, s:I, s:s, s:I, s:I, s:o}", "id", n->id,
			      "kind", store_notice_kind_name(n->kind), "tenant",
			      (json_int_t)n->tenant_id, "server", n->fqdn, "date", date,
			      "date_unix", (json_int_t)n->date, "due", due, "due_unix",
			      (json_int_t)n->due, "created_unix", (json_int_t)n->created,
			      "deliveries", ds);
		json_array_append_new(a, o);
	}
	return a;
}

const struct cp_notices_counts *cp_notices_counts(const struct cp_notices *nt)
{
	return &nt->counts;
}

void cp_notices_metrics(const struct cp_notices *nt, struct prom_buf *b)
{
	uint64_t pending = 0;

	if (!nt)
		return;
	prom_family(b, "tes_notices_total", "counter",
		    "Notices made (journaled) by kind: days before throttling, before blocking, "
		    "at a resolution");
	for (int k = 0; k < STORE_NOTICE_KINDS; k++)
		prom_sample(b, "tes_notices_total", "kind",
			    store_notice_kind_name((enum store_notice_kind)k), nt->counts.made[k]);
	prom_family(b, "tes_notice_deliveries_total", "counter",
		    "Delivery attempts of notices by channel and result");
	prom_printf(b,
		    "tes_notice_deliveries_total{via=\"webhook\",result=\"delivered\"} %" PRIu64
		    "\ntes_notice_deliveries_total{via=\"webhook\",result=\"failed\"} %" PRIu64
		    "\ntes_notice_deliveries_total{via=\"mail\",result=\"delivered\"} %" PRIu64
		    "\ntes_notice_deliveries_total{via=\"mail\",result=\"failed\"} %" PRIu64 "\n",
		    nt->counts.delivered_webhook, nt->counts.failed_webhook,
		    nt->counts.delivered_mail, nt->counts.failed_mail);
	prom_family(b, "tes_notice_deliveries_expired_total", "counter",
		    "Deliveries of notices given up after notice_expire_days");
	prom_sample(b, "tes_notice_deliveries_expired_total", NULL, NULL, nt->counts.expired);
	for (size_t i = 0; i < nt->nrecs; i++) {
		for (unsigned k = 0; k < nt->recs[i]->n.ndeliveries; k++)
			pending += !nt->recs[i]->n.d[k].done && !nt->recs[i]->n.d[k].expired;
	}
	prom_family(b, "tes_notice_deliveries_pending", "gauge",
		    "Deliveries of notices not made yet (a receiver down, or being retried)");
	prom_sample(b, "tes_notice_deliveries_pending", NULL, NULL, pending);
	prom_family(b, "tes_notice_store_errors_total", "counter",
		    "Failed writes of the notice journal or contacts");
	prom_sample(b, "tes_notice_store_errors_total", NULL, NULL, nt->counts.store_errors);
}
