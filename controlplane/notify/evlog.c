/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The enforcement event log: one JSON object per line for every change an
 * operator's log pipeline may act on.  Each line is one write(2) on an
 * O_APPEND descriptor, so a reader (or a second writer) never sees half a
 * line.  The time is tescontrol's clock (the test clock in tests), the one
 * every enforcement date is computed with.
 */
#include "controlplane/cp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int open_log(const char *path)
{
	if (strcmp(path, "-") == 0)
		return dup(STDOUT_FILENO);
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int cp_evlog_open(struct cp *cp)
{
	cp->evlog_fd = -1;
	if (!cp->cfg.event_log[0])
		return 0;
	cp->evlog_fd = open_log(cp->cfg.event_log);
	if (cp->evlog_fd < 0) {
		cp_err("event_log %s: %s", cp->cfg.event_log, strerror(errno));
		return -1;
	}
	cp_info("event log: %s", strcmp(cp->cfg.event_log, "-") ? cp->cfg.event_log : "stdout");
	return 0;
}

void cp_evlog_reopen(struct cp *cp)
{
	int fd;

	if (!cp->cfg.event_log[0] || strcmp(cp->cfg.event_log, "-") == 0)
		return;
	fd = open_log(cp->cfg.event_log);
	if (fd < 0) {
		/* Keep writing to the old file rather than lose events. */
		cp_err("event_log %s: reopening: %s; still writing to the previous file",
		       cp->cfg.event_log, strerror(errno));
		return;
	}
	if (cp->evlog_fd >= 0)
		close(cp->evlog_fd);
	cp->evlog_fd = fd;
	cp_info("event log %s reopened", cp->cfg.event_log);
}

void cp_evlog_close(struct cp *cp)
{
	if (cp->evlog_fd >= 0)
		close(cp->evlog_fd);
	cp->evlog_fd = -1;
}

static void emit(struct cp *cp, json_t *o)
{
	char *line;
	size_t n;

	if (!o)
		return;
	line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!line) {
		cp_err("event log: out of memory");
		return;
	}
	n = strlen(line);
	line[n] = '\n'; /* json_dumps's NUL becomes the line end */
	for (size_t off = 0; off < n + 1;) {
		ssize_t w = write(cp->evlog_fd, line + off, n + 1 - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			cp_err("event log: write: %s", w < 0 ? strerror(errno) : "short write");
			break;
		}
		off += (size_t)w;
	}
	free(line);
}

static json_t *head(struct cp *cp, const char *event)
{
	int64_t now = cp_now(cp);
	char at[40];

	/* UTC whatever the policy's display offset: log pipelines compare
	 * times across hosts. */
	tes_time_format(now, 0, at, sizeof(at));
	return json_pack("{s:s, s:I, s:s}", "time", at, "epoch", (json_int_t)now, "event", event);
}

static void merge(json_t *o, json_t *extra)
{
	if (o && extra)
		json_object_update(o, extra);
	json_decref(extra);
}

void cp_evlog_server(struct cp *cp, const char *event, const struct tes_server *s, unsigned stage,
		     enum tes_status status, json_t *extra)
{
	const struct tes_tenant *t;
	char build[48];
	json_t *o;

	if (cp->evlog_fd < 0) {
		json_decref(extra);
		return;
	}
	t = cp_server_tenant(cp, s);
	ex_build_format(&s->build, build, sizeof(build));
	o = head(cp, event);
	if (o) {
		json_object_set_new(o, "tenant", json_integer(s->tenant_id));
		json_object_set_new(o, "tenant_name", t ? json_string(t->name) : json_null());
		json_object_set_new(o, "server", json_string(s->fqdn));
		json_object_set_new(o, "build", json_string(build));
		json_object_set_new(o, "family", json_string(ex_family_name(s->family)));
		json_object_set_new(o, "stage", json_integer(stage));
		json_object_set_new(o, "status", json_string(tes_status_name(status)));
	}
	merge(o, extra);
	emit(cp, o);
}

void cp_evlog_tenant(struct cp *cp, const char *event, const struct tes_tenant *t, json_t *extra)
{
	json_t *o;

	if (cp->evlog_fd < 0) {
		json_decref(extra);
		return;
	}
	o = head(cp, event);
	if (o) {
		json_object_set_new(o, "tenant", json_integer(t->id));
		json_object_set_new(o, "tenant_name", json_string(t->name));
	}
	merge(o, extra);
	emit(cp, o);
}

void cp_evlog_event(struct cp *cp, const char *event, json_t *fields)
{
	json_t *o;

	if (cp->evlog_fd < 0) {
		json_decref(fields);
		return;
	}
	o = head(cp, event);
	merge(o, fields);
	emit(cp, o);
}
