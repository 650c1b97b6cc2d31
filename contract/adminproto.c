/* SPDX-License-Identifier: BSD-3-Clause */
#include "contract/adminproto.h"

#include <stdarg.h>
#include <stdio.h>

json_t *admin_request(const char *cmd, json_t *args)
{
	return json_pack("{s:i, s:s, s:o}", "v", ADMIN_PROTO_VERSION, "cmd", cmd, "args",
			 args ? args : json_object());
}

int admin_request_parse(const json_t *req, const char **cmd, json_t **args, char *err,
			size_t errlen)
{
	json_t *a;

	if (ctl_get_str(req, "cmd", cmd, err, errlen))
		return -1;
	a = json_object_get(req, "args");
	if (a && !json_is_object(a)) {
		if (err)
			snprintf(err, errlen, "\"args\" must be an object");
		return -1;
	}
	*args = a;
	return 0;
}

json_t *admin_response_ok(json_t *result)
{
	return json_pack("{s:i, s:b, s:o}", "v", ADMIN_PROTO_VERSION, "ok", 1, "result",
			 result ? result : json_null());
}

json_t *admin_response_error(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:i, s:b, s:s}", "v", ADMIN_PROTO_VERSION, "ok", 0, "error", msg);
}

int admin_response_parse(const json_t *resp, bool *ok, json_t **result, const char **error,
			 char *err, size_t errlen)
{
	json_t *o = json_object_get(resp, "ok");

	*result = NULL;
	*error = NULL;
	if (!json_is_boolean(o)) {
		if (err)
			snprintf(err, errlen, "response has no \"ok\"");
		return -1;
	}
	*ok = json_is_true(o);
	if (*ok) {
		*result = json_object_get(resp, "result");
		return 0;
	}
	*error = json_string_value(json_object_get(resp, "error"));
	if (!*error) {
		if (err)
			snprintf(err, errlen, "error response without an \"error\" text");
		return -1;
	}
	return 0;
}
