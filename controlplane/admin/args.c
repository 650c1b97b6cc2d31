/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A command's arguments, checked before anything is done with them: each
 * refusal names the argument and what it must be.
 */
#include <stdio.h>

#include "controlplane/admin/admin_int.h"

int arg_int(const json_t *args, const char *key, int64_t lo, int64_t hi, bool required,
	    int64_t dflt, int64_t *out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(args, key);

	if (!v || json_is_null(v)) {
		if (required) {
			snprintf(err, errlen, "missing argument \"%s\"", key);
			return -1;
		}
		*out = dflt;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		snprintf(err, errlen, "\"%s\" must be a whole number from %lld to %lld", key,
			 (long long)lo, (long long)hi);
		return -1;
	}
	*out = json_integer_value(v);
	return 0;
}

int arg_str(const json_t *args, const char *key, const char **out, char *err, size_t errlen)
{
	const json_t *v = json_object_get(args, key);

	if (!json_is_string(v)) {
		snprintf(err, errlen, v ? "\"%s\" must be a string" : "missing argument \"%s\"",
			 key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

bool arg_bool(const json_t *args, const char *key)
{
	return json_is_true(json_object_get(args, key));
}

struct tes_tenant *arg_tenant(struct cp_admin *a, const json_t *args, const char *key, char *err,
			      size_t len)
{
	struct tes_tenant *t;
	int64_t id;

	if (arg_int(args, key, 1, UINT32_MAX, true, 0, &id, err, len))
		return NULL;
	t = cp_tenant_find(&a->st->tab, (uint32_t)id);
	if (!t)
		snprintf(err, len, "no tenant %lld", (long long)id);
	return t;
}

int arg_server(struct cp_admin *a, const json_t *args, uint32_t *slot, char *err, size_t errlen)
{
	int64_t tenant;
	const char *fqdn;

	if (arg_int(args, "tenant", 0, UINT32_MAX, true, 0, &tenant, err, errlen) ||
	    arg_str(args, "fqdn", &fqdn, err, errlen))
		return -1;
	*slot = cp_server_find(&a->st->tab, (uint32_t)tenant, fqdn);
	if (*slot == CP_NO_SLOT) {
		snprintf(err, errlen, "tenant %lld has no server %s on record", (long long)tenant,
			 fqdn);
		return -1;
	}
	return 0;
}

json_t *admin_who(const struct cp_admin *a)
{
	const struct ucred *c = a->caller;

	if (!c)
		return json_pack("{s:n, s:n, s:n}", "uid", "gid", "pid");
	return json_pack("{s:I, s:I, s:I}", "uid", (json_int_t)c->uid, "gid", (json_int_t)c->gid,
			 "pid", (json_int_t)c->pid);
}
