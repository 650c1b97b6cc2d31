/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The admin protocol between tesctl (or any operator tool) and tescontrol,
 * over tescontrol's admin socket.  Same framing as the control protocol
 * (contract/ctlproto.h: 4-byte big-endian length, one JSON object, "v",
 * at most CTL_FRAME_MAX octets); one request, one response, in order, any
 * number per connection:
 *
 *   request   {"v":1, "cmd":"report", "args":{"tenant":7}}
 *   response  {"v":1, "ok":true, "result":...}
 *             {"v":1, "ok":false, "error":"pause quota exceeded: ..."}
 *
 * The commands and their arguments and results are listed in
 * docs/control-protocol.md and docs/tescontrol.8.md.
 *
 * Threads: reentrant, no global state; json_t values belong to the caller
 * and are used by one thread at a time.
 */
#ifndef TES_CONTRACT_ADMINPROTO_H
#define TES_CONTRACT_ADMINPROTO_H

#include <stdbool.h>

#include <jansson.h>

#include "contract/ctlproto.h"

#define ADMIN_PROTO_VERSION CTL_PROTO_VERSION

/* Command names (the value of "cmd"). */
#define ADMIN_REPORT "report"
#define ADMIN_SERVER_SHOW "server.show"
#define ADMIN_SERVER_RESET "server.reset"
#define ADMIN_TENANT_ADD "tenant.add"
/* {"id":N, "name":S?, "connectors":[...]?}: what is given replaces the
 * tenant's name or its whole connector list. */
#define ADMIN_TENANT_SET "tenant.set"
/* {"id":N, "force":B?}: refused while the tenant has servers on record,
 * unless force (then they are forgotten with it, in one transaction). */
#define ADMIN_TENANT_DELETE "tenant.delete"
#define ADMIN_TENANT_LIST "tenant.list"
#define ADMIN_TENANT_SHOW "tenant.show"
#define ADMIN_PAUSE_ADD "pause.add"
#define ADMIN_PAUSE_SHOW "pause.show"
#define ADMIN_PAUSE_RESUME "pause.resume"
#define ADMIN_CATALOG_SHOW "catalog.show"
#define ADMIN_CATALOG_LOAD "catalog.load"
/* {"build":S, "at":T?}: classified as of T (Unix seconds; default now),
 * with the rule that decided and the dates its verdict holds between. */
#define ADMIN_CATALOG_CHECK "catalog.check"
#define ADMIN_POLICY_SHOW "policy.show"
#define ADMIN_POLICY_LOAD "policy.load"
#define ADMIN_STATUS "status"
#define ADMIN_CLOCK "clock"
/* The fleet (docs/fleet.md): every appliance sharing the store, when each
 * was last alive, the versions it enforces and any drift. */
#define ADMIN_FLEET_STATUS "fleet.status"
/* {"offset":N?, "limit":N?}: the store's state as one document, in pages
 * (tenants and documents with the first). */
#define ADMIN_STORE_EXPORT "store.export"
/* {"tenants":[...]?, "policy":{}?, "catalog":{}?, "servers":[...]?}: into a
 * shared store, merged (the earliest first detection wins). */
#define ADMIN_STORE_IMPORT "store.import"
/* The XDP drop list (docs/xdp.md); answered only when tescontrol runs it. */
#define ADMIN_XDP_STATUS "xdp.status"
#define ADMIN_XDP_LIST "xdp.list"
#define ADMIN_XDP_DENY "xdp.deny"     /* {"address":"A[/P]", "ttl":S?} */
#define ADMIN_XDP_ALLOW "xdp.allow"   /* {"address":"A[/P]"}: operator entries only */
#define ADMIN_XDP_DETACH "xdp.detach" /* {"interface":"eth1"} */
/* Report tokens (the per-tenant report page, since issue 19). */
#define ADMIN_TOKEN_CREATE "token.create" /* {"tenant":N}: the token, shown once */
#define ADMIN_TOKEN_LIST "token.list"     /* {"tenant":N?} */
#define ADMIN_TOKEN_REVOKE "token.revoke" /* {"id":S} */
/* Notice contacts and the notice journal (since issue 19). */
#define ADMIN_NOTICE_SET "notice.set"   /* {"tenant","days_before","webhook","secret","mail":[]} */
#define ADMIN_NOTICE_SHOW "notice.show" /* {"tenant":N} */
#define ADMIN_NOTICE_CLEAR "notice.clear" /* {"tenant":N} */
#define ADMIN_NOTICE_LIST "notice.list"   /* {"tenant":N?, "pending":B?} */

/* A request object; takes the reference to args (NULL: {}). */
json_t *admin_request(const char *cmd, json_t *args);

/* Split a decoded request.  *cmd and *args point into req (args is {} when
 * absent).  -1 with err when "cmd" is missing or "args" is not an object. */
int admin_request_parse(const json_t *req, const char **cmd, json_t **args, char *err,
			size_t errlen);

/* Responses; ok takes the reference to result (NULL: null). */
json_t *admin_response_ok(json_t *result);
json_t *admin_response_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Split a decoded response: *ok, and *result (borrowed) or *error. -1 with
 * err when it is neither shape. */
int admin_response_parse(const json_t *resp, bool *ok, json_t **result, const char **error,
			 char *err, size_t errlen);

#endif
