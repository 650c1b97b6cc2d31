/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The enforcement event log (evlog.h).
 */
#include "controlplane/notify/evlog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "controlplane/log.h"

static int open_log(const char *path)
{
	if (strcmp(path, "-") == 0)
		return dup(STDOUT_FILENO);
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int cp_evlog_open(struct cp_evlog *e, const char *path, const struct cp_clock *clock)
{
	e->fd = -1;
	e->path = path;
	e->clock = clock;
	if (!path[0])
		return 0;
	e->fd = open_log(path);
	if (e->fd < 0) {
		cp_err("event_log %s: %s", path, strerror(errno));
		return -1;
	}
	cp_info("event log: %s", strcmp(path, "-") ? path : "stdout");
	return 0;
}

void cp_evlog_reopen(struct cp_evlog *e)
{
	int fd;

	if (!e->path || !e->path[0] || strcmp(e->path, "-") == 0)
		return;
	fd = open_log(e->path);
	if (fd < 0) {
		/* Keep writing to the old file rather than lose events. */
		cp_err("event_log %s: reopening: %s; still writing to the previous file", e->path,
		       strerror(errno));
		return;
	}
	if (e->fd >= 0)
		close(e->fd);
	e->fd = fd;
	cp_info("event log %s reopened", e->path);
}

void cp_evlog_close(struct cp_evlog *e)
{
	if (e->fd >= 0)
		close(e->fd);
	e->fd = -1;
}

/* time, epoch and event: what every line starts with. */
static json_t *head(int64_t now, const char *event)
{
	char at[40];

	/* UTC whatever the policy's display offset: log pipelines compare
	 * times across hosts. */
	tes_time_format(now, 0, at, sizeof(at));
	return json_pack("{s:s, s:I, s:s}", "time", at, "epoch", (json_int_t)now, "event", event);
}

static void add_server(json_t *o, const struct cp_note *n)
{
	const struct tes_server *s = n->server;
	char build[48];

	ex_build_format(&s->build, build, sizeof(build));
	json_object_set_new(o, "tenant", json_integer(s->tenant_id));
	json_object_set_new(o, "tenant_name",
			    n->tenant ? json_string(n->tenant->name) : json_null());
	json_object_set_new(o, "server", json_string(s->fqdn));
	json_object_set_new(o, "build", json_string(build));
	json_object_set_new(o, "family", json_string(ex_family_name(s->family)));
	json_object_set_new(o, "stage", json_integer(n->stage));
	json_object_set_new(o, "status", json_string(tes_status_name(n->status)));
}

static void add_tenant(json_t *o, const struct tes_tenant *t)
{
	json_object_set_new(o, "tenant", json_integer(t->id));
	json_object_set_new(o, "tenant_name", json_string(t->name));
}

char *cp_evlog_format(const struct cp_note *n, int64_t now)
{
	json_t *o;
	char *line;
	size_t len;

	if (!n->event)
		return NULL;
	o = head(now, n->event);
	if (!o)
		return NULL;
	if (n->server && (n->kind == CP_NOTE_SERVER || n->kind == CP_NOTE_SERVER_GONE))
		add_server(o, n);
	else if (n->tenant && (n->kind == CP_NOTE_TENANT || n->kind == CP_NOTE_TENANT_GONE))
		add_tenant(o, n->tenant);
	if (n->fields)
		json_object_update(o, n->fields);
	line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (!line)
		return NULL;
	len = strlen(line);
	/* json_dumps's NUL becomes the line end */
	{
		char *l = realloc(line, len + 2);

		if (!l) {
			free(line);
			return NULL;
		}
		line = l;
	}
	line[len] = '\n';
	line[len + 1] = '\0';
	return line;
}

static void write_line(struct cp_evlog *e, const char *line)
{
	size_t n = strlen(line);

	for (size_t off = 0; off < n;) {
		ssize_t w = write(e->fd, line + off, n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			cp_err("event log: write: %s", w < 0 ? strerror(errno) : "short write");
			break;
		}
		off += (size_t)w;
	}
}

void cp_evlog_on_note(void *ctx, const struct cp_note *n)
{
	struct cp_evlog *e = ctx;
	char *line;

	if (e->fd < 0 || !n->event)
		return;
	/* Now by the clock, not the note: a line says when it was written,
	 * as it always has (the two differ only within one command). */
	line = cp_evlog_format(n, cp_clock_now(e->clock));
	if (!line) {
		cp_err("event log: out of memory");
		return;
	}
	write_line(e, line);
	free(line);
}
