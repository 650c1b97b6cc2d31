/* SPDX-License-Identifier: BSD-3-Clause */
/* What the admin room's files share; nothing outside admin/ includes this. */
#ifndef TES_CONTROLPLANE_ADMIN_ADMIN_INT_H
#define TES_CONTROLPLANE_ADMIN_ADMIN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "controlplane/admin/admin.h"

/* A command fills *result, or writes one line to err and returns -1. */
typedef int (*admin_fn)(struct cp_admin *a, const json_t *args, json_t **result, char *err,
			size_t len);

struct admin_command {
	const char *name; /* contract/adminproto.h's ADMIN_* */
	admin_fn fn;
};

/* The table (commands.c), in the order tesctl's help lists them. */
extern const struct admin_command admin_commands[];
extern const size_t admin_ncommands;

/* The commands, each in the file of its subject. */
#define ADMIN_CMD(name) \
	int name(struct cp_admin *a, const json_t *args, json_t **result, char *err, size_t errlen)
ADMIN_CMD(cmd_report);
ADMIN_CMD(cmd_server_show);
ADMIN_CMD(cmd_server_reset);
ADMIN_CMD(cmd_tenant_add);
ADMIN_CMD(cmd_tenant_set);
ADMIN_CMD(cmd_tenant_delete);
ADMIN_CMD(cmd_tenant_list);
ADMIN_CMD(cmd_tenant_show);
ADMIN_CMD(cmd_pause_add);
ADMIN_CMD(cmd_pause_show);
ADMIN_CMD(cmd_pause_resume);
ADMIN_CMD(cmd_catalog_show);
ADMIN_CMD(cmd_catalog_load);
ADMIN_CMD(cmd_catalog_check);
ADMIN_CMD(cmd_policy_show);
ADMIN_CMD(cmd_policy_load);
ADMIN_CMD(cmd_status);
ADMIN_CMD(cmd_clock);
ADMIN_CMD(cmd_fleet_status);
ADMIN_CMD(cmd_store_export);
ADMIN_CMD(cmd_store_import);
ADMIN_CMD(cmd_xdp_status);
ADMIN_CMD(cmd_xdp_list);
ADMIN_CMD(cmd_xdp_deny);
ADMIN_CMD(cmd_xdp_allow);
ADMIN_CMD(cmd_xdp_detach);
ADMIN_CMD(cmd_token_create);
ADMIN_CMD(cmd_token_list);
ADMIN_CMD(cmd_token_revoke);
ADMIN_CMD(cmd_notice_set);
ADMIN_CMD(cmd_notice_show);
ADMIN_CMD(cmd_notice_clear);
ADMIN_CMD(cmd_notice_list);

/* ---- arguments (args.c) ---- */
/* An integer in [lo, hi]; absent or null: dflt unless required. */
int arg_int(const json_t *args, const char *key, int64_t lo, int64_t hi, bool required,
	    int64_t dflt, int64_t *out, char *err, size_t errlen);
int arg_str(const json_t *args, const char *key, const char **out, char *err, size_t errlen);
/* True only for JSON true. */
bool arg_bool(const json_t *args, const char *key);
/* The tenant named by args[key], or NULL with err. */
struct tes_tenant *arg_tenant(struct cp_admin *a, const json_t *args, const char *key, char *err,
			      size_t len);
/* The server named by args "tenant" and "fqdn", or -1 with err. */
int arg_server(struct cp_admin *a, const json_t *args, uint32_t *slot, char *err, size_t errlen);
/* Who asks: {"uid","gid","pid"} of the caller, for the event log. */
json_t *admin_who(const struct cp_admin *a);

/* ---- views of the state (views.c) ---- */
/* key (ISO 8601 in the policy's offset) and key_unix; both null when !has. */
void set_time(const struct cp_admin *a, json_t *o, const char *key, bool has, int64_t t);
json_t *build_str(const struct ex_build *b);
json_t *entry_json(const struct catalog_entry *e);
json_t *recommended_json(const struct catalog_class *cls);
json_t *server_json(const struct cp_admin *a, const struct cp_server *c, int64_t now, bool detail);
json_t *pause_json(const struct cp_admin *a, const struct tes_tenant *t, int64_t now);
json_t *tenant_json(const struct cp_admin *a, const struct tes_tenant *t, int64_t now);

#endif
