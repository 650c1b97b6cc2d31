/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * token create, list, revoke (the report page's per-tenant tokens,
 * notify/report.c) and notice set, show, clear, list (notify/notices.c),
 * with an event log line for each change.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "contract/adminproto.h"
#include "controlplane/admin/admin_int.h"
#include "base/text.h"

/* One event log line for a change: who, before and after (consumed), the
 * tenant. */
static void audit(struct cp_admin *a, const char *event, uint32_t tenant_id, json_t *before,
		  json_t *after)
{
	json_t *o = admin_who(a);
	const struct tes_tenant *t = cp_tenant_find(&a->st->tab, tenant_id);

	json_object_set_new(o, "tenant", json_integer(tenant_id));
	json_object_set_new(o, "tenant_name", t ? json_string(t->name) : json_null());
	json_object_set_new(o, "before", before ? before : json_null());
	json_object_set_new(o, "after", after ? after : json_null());
	cp_state_event(a->st, event, o);
}

static int no_report(char *err, size_t errlen)
{
	snprintf(err, errlen, "the report page is not running");
	return -1;
}

static json_t *token_json(struct cp_admin *a, const struct store_token *t)
{
	char iso[40];

	tes_time_format(t->created, a->st->policy.utc_offset_min, iso, sizeof(iso));
	return json_pack("{s:s, s:I, s:s, s:I}", "id", t->id, "tenant", (json_int_t)t->tenant_id,
			 "created", iso, "created_unix", (json_int_t)t->created);
}

int cmd_token_create(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		     size_t errlen)
{
	char token[CP_REPORT_TOKEN_LEN + 1];
	struct store_token t;
	const struct tes_tenant *tenant;
	json_t *o;

	if (!a->report)
		return no_report(err, errlen);
	tenant = arg_tenant(a, args, "tenant", err, errlen);
	if (!tenant || cp_report_token_create(a->report, tenant->id, token, &t, err, errlen))
		return -1;
	o = token_json(a, &t);
	json_object_set_new(o, "token", json_string(token));
	json_object_set_new(o, "path", json_sprintf("/report/tenant/%s", token));
	*result = o;
	/* the token itself never reaches a log */
	audit(a, "token_create", t.tenant_id, NULL, token_json(a, &t));
	return 0;
}

int cmd_token_list(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		   size_t errlen)
{
	int64_t tenant;

	if (!a->report)
		return no_report(err, errlen);
	if (arg_int(args, "tenant", 1, UINT32_MAX, false, 0, &tenant, err, errlen))
		return -1;
	*result = json_pack("{s:o}", "tokens", cp_report_token_list(a->report, (uint32_t)tenant));
	return 0;
}

int cmd_token_revoke(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		     size_t errlen)
{
	struct store_token t;
	const char *id;

	if (!a->report)
		return no_report(err, errlen);
	if (arg_str(args, "id", &id, err, errlen) ||
	    cp_report_token_revoke(a->report, id, &t, err, errlen))
		return -1;
	*result = json_pack("{s:s, s:I}", "revoked", t.id, "tenant", (json_int_t)t.tenant_id);
	audit(a, "token_revoke", t.tenant_id, token_json(a, &t), NULL);
	return 0;
}

static int no_notices(char *err, size_t errlen)
{
	snprintf(err, errlen, "notices are not running");
	return -1;
}

static int copy_str(const json_t *args, const char *key, char *buf, size_t size, char *err,
		    size_t len)
{
	const json_t *v = json_object_get(args, key);

	buf[0] = '\0';
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) >= size ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(err, len, "\"%s\" must be a string of at most %zu octets", key, size - 1);
		return -1;
	}
	tes_str_copy(buf, size, json_string_value(v));
	return 0;
}

int cmd_notice_set(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		   size_t errlen)
{
	struct store_contacts c;
	const struct store_contacts *old;
	const struct tes_tenant *t;
	const json_t *mail, *v;
	json_t *before = NULL;
	int64_t days;
	size_t i;

	if (!a->notices)
		return no_notices(err, errlen);
	t = arg_tenant(a, args, "tenant", err, errlen);
	if (!t || arg_int(args, "days_before", 0, 365, false, 7, &days, err, errlen))
		return -1;
	memset(&c, 0, sizeof(c));
	c.tenant_id = t->id;
	c.days_before = (unsigned)days;
	if (copy_str(args, "webhook", c.webhook, sizeof(c.webhook), err, errlen) ||
	    copy_str(args, "secret", c.secret, sizeof(c.secret), err, errlen))
		return -1;
	mail = json_object_get(args, "mail");
	if (mail && !json_is_null(mail)) {
		if (!json_is_array(mail) || json_array_size(mail) > STORE_MAIL_MAX) {
			snprintf(err, errlen, "\"mail\" must be a list of at most %d addresses",
				 STORE_MAIL_MAX);
			return -1;
		}
		json_array_foreach(mail, i, v)
		{
			if (!json_is_string(v) || json_string_length(v) >= STORE_ADDR_MAX) {
				snprintf(err, errlen, "mail[%zu] is not an address", i);
				return -1;
			}
			tes_str_copy(c.mail[c.nmail++], STORE_ADDR_MAX, json_string_value(v));
		}
	}
	old = cp_notices_contacts(a->notices, t->id);
	if (old)
		before = cp_notices_contacts_json(a->notices, old);
	if (cp_notices_set_contacts(a->notices, &c, err, errlen)) {
		json_decref(before);
		return -1;
	}
	*result = cp_notices_contacts_json(a->notices, cp_notices_contacts(a->notices, t->id));
	audit(a, "notice_set", t->id, before, json_incref(*result));
	return 0;
}

int cmd_notice_show(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		    size_t errlen)
{
	const struct store_contacts *c;
	const struct tes_tenant *t;

	if (!a->notices)
		return no_notices(err, errlen);
	t = arg_tenant(a, args, "tenant", err, errlen);
	if (!t)
		return -1;
	c = cp_notices_contacts(a->notices, t->id);
	if (!c) {
		snprintf(err, errlen, "tenant %" PRIu32 " has no notice contacts", t->id);
		return -1;
	}
	*result = cp_notices_contacts_json(a->notices, c);
	return 0;
}

int cmd_notice_clear(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		     size_t errlen)
{
	const struct store_contacts *c;
	const struct tes_tenant *t;
	json_t *before;

	if (!a->notices)
		return no_notices(err, errlen);
	t = arg_tenant(a, args, "tenant", err, errlen);
	if (!t)
		return -1;
	c = cp_notices_contacts(a->notices, t->id);
	before = c ? cp_notices_contacts_json(a->notices, c) : NULL;
	if (cp_notices_clear_contacts(a->notices, t->id, err, errlen)) {
		json_decref(before);
		return -1;
	}
	*result = json_pack("{s:I}", "cleared", (json_int_t)t->id);
	audit(a, "notice_clear", t->id, before, NULL);
	return 0;
}

int cmd_notice_list(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		    size_t errlen)
{
	int64_t tenant;

	if (!a->notices)
		return no_notices(err, errlen);
	if (arg_int(args, "tenant", 1, UINT32_MAX, false, 0, &tenant, err, errlen))
		return -1;
	*result =
		json_pack("{s:o}", "notices",
			  cp_notices_list(a->notices, (uint32_t)tenant, arg_bool(args, "pending")));
	return 0;
}
