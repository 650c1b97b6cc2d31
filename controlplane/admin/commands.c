/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The admin protocol's commands (contract/adminproto.h): one function
 * each, found by name.
 */
#include "contract/adminproto.h"
#include "controlplane/admin/admin_int.h"

const struct admin_command admin_commands[] = {
	{ ADMIN_REPORT, cmd_report },
	{ ADMIN_SERVER_SHOW, cmd_server_show },
	{ ADMIN_SERVER_RESET, cmd_server_reset },
	{ ADMIN_TENANT_ADD, cmd_tenant_add },
	{ ADMIN_TENANT_SET, cmd_tenant_set },
	{ ADMIN_TENANT_DELETE, cmd_tenant_delete },
	{ ADMIN_TENANT_LIST, cmd_tenant_list },
	{ ADMIN_TENANT_SHOW, cmd_tenant_show },
	{ ADMIN_PAUSE_ADD, cmd_pause_add },
	{ ADMIN_PAUSE_SHOW, cmd_pause_show },
	{ ADMIN_PAUSE_RESUME, cmd_pause_resume },
	{ ADMIN_CATALOG_SHOW, cmd_catalog_show },
	{ ADMIN_CATALOG_LOAD, cmd_catalog_load },
	{ ADMIN_CATALOG_CHECK, cmd_catalog_check },
	{ ADMIN_POLICY_SHOW, cmd_policy_show },
	{ ADMIN_POLICY_LOAD, cmd_policy_load },
	{ ADMIN_STATUS, cmd_status },
	{ ADMIN_CLOCK, cmd_clock },
	{ ADMIN_FLEET_STATUS, cmd_fleet_status },
	{ ADMIN_STORE_EXPORT, cmd_store_export },
	{ ADMIN_STORE_IMPORT, cmd_store_import },
	{ ADMIN_XDP_STATUS, cmd_xdp_status },
	{ ADMIN_XDP_LIST, cmd_xdp_list },
	{ ADMIN_XDP_DENY, cmd_xdp_deny },
	{ ADMIN_XDP_ALLOW, cmd_xdp_allow },
	{ ADMIN_XDP_DETACH, cmd_xdp_detach },
	{ ADMIN_TOKEN_CREATE, cmd_token_create },
	{ ADMIN_TOKEN_LIST, cmd_token_list },
	{ ADMIN_TOKEN_REVOKE, cmd_token_revoke },
	{ ADMIN_NOTICE_SET, cmd_notice_set },
	{ ADMIN_NOTICE_SHOW, cmd_notice_show },
	{ ADMIN_NOTICE_CLEAR, cmd_notice_clear },
	{ ADMIN_NOTICE_LIST, cmd_notice_list },
};

const size_t admin_ncommands = sizeof(admin_commands) / sizeof(admin_commands[0]);
