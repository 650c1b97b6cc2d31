/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * xdp status, list, deny, allow, detach: the XDP sink's own commands
 * (notify/xdp.c), with an event log line for each change.
 */
#include <stdio.h>
#include <string.h>

#include "contract/adminproto.h"
#include "controlplane/admin/admin_int.h"

/* The entries of the drop list now (xdp.list's result), or NULL. */
static json_t *xdp_list(struct cp_admin *a)
{
	json_t *list = NULL;
	char err[256];

	return cp_xdp_cmd(a->xdp, "list", NULL, &list, err, sizeof(err)) ? NULL : list;
}

/* The entry for address (as xdp.list spells it) in list, or NULL. */
static json_t *xdp_entry(const json_t *list, const char *address)
{
	const json_t *e;
	size_t i;

	json_array_foreach(json_object_get(list, "entries"), i, e)
	{
		const char *a = json_string_value(json_object_get(e, "address"));

		if (a && address && strcmp(a, address) == 0) {
			json_t *found = json_deep_copy(e);

			json_object_del(found, "expires_in"); /* a countdown, not a value */
			return found;
		}
	}
	return NULL;
}

/* An interface as xdp.status shows it, or NULL. */
static json_t *xdp_iface(struct cp_admin *a, const char *ifname)
{
	json_t *st = NULL, *e, *found = NULL;
	char err[256];
	size_t i;

	if (!ifname || cp_xdp_cmd(a->xdp, "status", NULL, &st, err, sizeof(err)))
		return NULL;
	json_array_foreach(json_object_get(st, "interfaces"), i, e)
	{
		const char *n = json_string_value(json_object_get(e, "interface"));

		if (n && strcmp(n, ifname) == 0) {
			found = json_pack("{s:s, s:O}", "interface", ifname, "mode",
					  json_object_get(e, "mode"));
			break;
		}
	}
	json_decref(st);
	return found;
}

/* One event log line for an operator's action on the drop list: who, the
 * entry or interface before and after (consumed), then extra (consumed). */
static void audit(struct cp_admin *a, const char *event, json_t *before, json_t *after,
		  json_t *extra)
{
	json_t *o = admin_who(a);

	json_object_set_new(o, "before", before ? before : json_null());
	json_object_set_new(o, "after", after ? after : json_null());
	if (extra) {
		json_object_update(o, extra);
		json_decref(extra);
	}
	cp_state_event(a->st, event, o);
}

/* The xdp.* commands are notify/xdp.c's; the ones that change something get
 * their line here, with the entry or interface before and after. */
static int cmd_xdp(struct cp_admin *a, const char *cmd, const json_t *args, json_t **result,
		   char *err, size_t errlen)
{
	const char *op = cmd + strlen("xdp.");
	const char *ifname = json_string_value(json_object_get(args, "interface"));
	bool deny = strcmp(op, "deny") == 0, allow = strcmp(op, "allow") == 0;
	bool detach = strcmp(op, "detach") == 0;
	json_t *list = NULL, *before = NULL;
	const char *addr;

	if (!deny && !allow && !detach)
		return cp_xdp_cmd(a->xdp, op, args, result, err, errlen);
	/* The address as the map spells it is only known after the command:
	 * keep the whole list to find its entry before. */
	if (deny || allow)
		list = xdp_list(a);
	else
		before = xdp_iface(a, ifname);
	if (cp_xdp_cmd(a->xdp, op, args, result, err, errlen)) {
		json_decref(list);
		json_decref(before);
		return -1;
	}
	if (detach) {
		audit(a, "xdp_detach", before, xdp_iface(a, ifname),
		      json_pack("{s:s}", "interface", ifname ? ifname : ""));
		return 0;
	}
	addr = json_string_value(json_object_get(*result, deny ? "denied" : "allowed"));
	before = xdp_entry(list, addr);
	json_decref(list);
	list = xdp_list(a);
	audit(a, deny ? "xdp_deny" : "xdp_allow", before, xdp_entry(list, addr),
	      json_pack("{s:s}", "address", addr ? addr : ""));
	json_decref(list);
	return 0;
}

int cmd_xdp_status(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		   size_t errlen)
{
	return cmd_xdp(a, ADMIN_XDP_STATUS, args, result, err, errlen);
}

int cmd_xdp_list(struct cp_admin *a, const json_t *args, json_t **result, char *err, size_t errlen)
{
	return cmd_xdp(a, ADMIN_XDP_LIST, args, result, err, errlen);
}

int cmd_xdp_deny(struct cp_admin *a, const json_t *args, json_t **result, char *err, size_t errlen)
{
	return cmd_xdp(a, ADMIN_XDP_DENY, args, result, err, errlen);
}

int cmd_xdp_allow(struct cp_admin *a, const json_t *args, json_t **result, char *err, size_t errlen)
{
	return cmd_xdp(a, ADMIN_XDP_ALLOW, args, result, err, errlen);
}

int cmd_xdp_detach(struct cp_admin *a, const json_t *args, json_t **result, char *err,
		   size_t errlen)
{
	return cmd_xdp(a, ADMIN_XDP_DETACH, args, result, err, errlen);
}
