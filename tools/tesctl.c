/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tesctl: the operator's command line for tescontrol.  It speaks only the
 * admin protocol (contract/adminproto.h) over tescontrol's admin socket and
 * links nothing of the daemon: what it can do is what the protocol offers.
 * See docs/tesctl.8.md.
 *
 * Exit status: 0 done, 1 tescontrol refused or failed the command, 2 usage
 * error, 3 tescontrol could not be reached or broke the protocol.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "contract/adminproto.h"
#include "contract/ctlproto.h"
#include "enforce/catalog.h"

#define DEFAULT_SOCKET "/run/tescontrol/admin.sock"
#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

struct opts {
	const char *socket;
	bool json;
	int timeout;
};

static struct opts g_opts = { DEFAULT_SOCKET, false, 30 };
static int g_fd = -1;
static struct ctl_decoder g_dec;

static void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

static void die(int status, const char *fmt, ...)
{
	va_list ap;

	fputs("tesctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

/* ---- talking to tescontrol ---- */

static void connect_daemon(void)
{
	struct sockaddr_un sa;
	struct timeval tv = { .tv_sec = g_opts.timeout };

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(g_opts.socket) >= sizeof(sa.sun_path))
		die(EXIT_USAGE, "%s: socket path too long", g_opts.socket);
	memcpy(sa.sun_path, g_opts.socket, strlen(g_opts.socket));
	g_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (g_fd < 0)
		die(EXIT_UNREACHABLE, "socket: %s", strerror(errno));
	if (connect(g_fd, (struct sockaddr *)&sa, sizeof(sa)))
		die(EXIT_UNREACHABLE, "cannot reach tescontrol at %s: %s%s", g_opts.socket,
		    strerror(errno),
		    errno == EACCES ? " (only root and the admin group may use it)" : "");
	setsockopt(g_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(g_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	ctl_decoder_init(&g_dec, CTL_FRAME_MAX);
}

/* Send one request and wait for its response; returns the result (owned
 * by the returned response *resp) or exits with the error. */
static json_t *call(const char *cmd, json_t *args, json_t **resp)
{
	json_t *req = admin_request(cmd, args), *r = NULL, *result;
	char err[CTL_ERR_MAX];
	uint8_t *frame, buf[65536];
	size_t n, off = 0;
	const char *error;
	bool ok;

	if (g_fd < 0)
		connect_daemon();
	if (!req || ctl_frame_encode(req, &frame, &n, err, sizeof(err)))
		die(EXIT_FAILED, "cannot send %s: %s", cmd, req ? err : "out of memory");
	json_decref(req);
	while (off < n) {
		ssize_t w = send(g_fd, frame + off, n - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die(EXIT_UNREACHABLE, "sending to tescontrol: %s", strerror(errno));
		off += (size_t)w;
	}
	free(frame);
	for (;;) {
		enum ctl_rc rc = ctl_decoder_next(&g_dec, &r);
		ssize_t got;
		size_t used = 0;

		if (rc == CTL_FRAME)
			break;
		if (rc == CTL_ERROR)
			die(EXIT_UNREACHABLE, "bad response from tescontrol: %s", g_dec.err);
		got = recv(g_fd, buf, sizeof(buf), 0);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			die(EXIT_UNREACHABLE, "waiting for tescontrol: %s",
			    errno == EAGAIN ? "timed out" : strerror(errno));
		if (got == 0)
			die(EXIT_UNREACHABLE, "tescontrol closed the connection");
		while (used < (size_t)got) {
			size_t t = ctl_decoder_feed(&g_dec, buf + used, (size_t)got - used);

			if (t == 0)
				break; /* a whole frame is buffered (or an error): take it first */
			used += t;
		}
		if (used < (size_t)got)
			die(EXIT_UNREACHABLE, "tescontrol sent more than one response");
	}
	if (admin_response_parse(r, &ok, &result, &error, err, sizeof(err)))
		die(EXIT_UNREACHABLE, "bad response from tescontrol: %s", err);
	if (!ok)
		die(EXIT_FAILED, "%s", error);
	*resp = r;
	return result;
}

/* ---- output helpers ---- */

static void print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (!s)
		die(EXIT_FAILED, "cannot print the result");
	puts(s);
	free(s);
}

static const char *str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static long long num(const json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}

/* "2024-05-06" from an ISO time, "-" for none. */
static void day_of(const json_t *o, const char *key, char *buf, size_t len)
{
	const char *s = json_string_value(json_object_get(o, key));

	if (!s)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.10s", s);
}

static void recommended_text(const json_t *o, char *buf, size_t len, const char *sep,
			     bool with_update)
{
	const json_t *arr = json_object_get(o, "recommended"), *e;
	size_t i, used = 0;

	buf[0] = '\0';
	json_array_foreach(arr, i, e)
	{
		int n;

		if (with_update)
			n = snprintf(buf + used, len - used, "%s%s (%s)", i ? sep : "",
				     str(e, "build"), str(e, "update"));
		else
			n = snprintf(buf + used, len - used, "%s%s", i ? sep : "", str(e, "build"));
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	if (!buf[0])
		snprintf(buf, len, "-");
}

/* A text table: rows of cells, widths from the content. */
#define MAXCOLS 16
/* mail addresses a tenant's notices may go to (store/records.h) */
#define STORE_MAIL_MAX_CLI 8
struct table {
	unsigned ncols;
	size_t width[MAXCOLS];
	char ***rows;
	size_t nrows;
};

static void table_add(struct table *t, const char *const *cells)
{
	char **row = calloc(t->ncols, sizeof(*row));

	t->rows = realloc(t->rows, (t->nrows + 1) * sizeof(*t->rows));
	if (!row || !t->rows)
		die(EXIT_FAILED, "out of memory");
	for (unsigned i = 0; i < t->ncols; i++) {
		row[i] = strdup(cells[i] ? cells[i] : "");
		if (!row[i])
			die(EXIT_FAILED, "out of memory");
		if (strlen(row[i]) > t->width[i])
			t->width[i] = strlen(row[i]);
	}
	t->rows[t->nrows++] = row;
}

static void table_print(struct table *t)
{
	for (size_t r = 0; r < t->nrows; r++) {
		for (unsigned i = 0; i < t->ncols; i++) {
			if (i + 1 < t->ncols)
				printf("%-*s  ", (int)t->width[i], t->rows[r][i]);
			else
				printf("%s", t->rows[r][i]);
			free(t->rows[r][i]);
		}
		putchar('\n');
		free(t->rows[r]);
	}
	free(t->rows);
	t->rows = NULL;
	t->nrows = 0;
}

static void csv_field(const char *s, bool last)
{
	if (strpbrk(s, ",\"\r\n")) {
		putchar('"');
		for (; *s; s++) {
			if (*s == '"')
				putchar('"');
			putchar(*s);
		}
		putchar('"');
	} else {
		fputs(s, stdout);
	}
	fputs(last ? "\r\n" : ",", stdout);
}

/* ---- argument helpers ---- */

static long long parse_num(const char *s, long long lo, long long hi, const char *what)
{
	char *end;
	long long x;

	errno = 0;
	x = strtoll(s, &end, 10);
	if (!*s || *end || errno || x < lo || x > hi)
		die(EXIT_USAGE, "%s: \"%s\" is not a number from %lld to %lld", what, s, lo, hi);
	return x;
}

/* Seconds, or a number with a unit: 90d, 12h, 30m, 45s. */
static long long parse_duration(const char *s)
{
	char *end;
	long long x, mult = 1;

	errno = 0;
	x = strtoll(s, &end, 10);
	if (end == s || errno || x < 0)
		die(EXIT_USAGE, "\"%s\" is not a duration (SECONDS, or N with d, h, m or s)", s);
	if (*end) {
		if (end[1])
			die(EXIT_USAGE,
			    "\"%s\" is not a duration (SECONDS, or N with d, h, m or s)", s);
		switch (*end) {
		case 'd':
			mult = 86400;
			break;
		case 'h':
			mult = 3600;
			break;
		case 'm':
			mult = 60;
			break;
		case 's':
			break;
		default:
			die(EXIT_USAGE, "\"%s\": unknown unit '%c' (d, h, m or s)", s, *end);
		}
	}
	if (x > TES_TIME_MAX / mult)
		die(EXIT_USAGE, "\"%s\" is too long", s);
	return x * mult;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0;

	if (!f)
		die(EXIT_FAILED, "%s: %s", path, strerror(errno));
	for (;;) {
		size_t got;

		if (n + 65536 + 1 > cap) {
			cap = cap ? cap * 2 : 131072;
			buf = realloc(buf, cap);
			if (!buf)
				die(EXIT_FAILED, "out of memory");
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (n > CTL_FRAME_MAX)
			die(EXIT_FAILED, "%s: larger than the %u octets one request may carry",
			    path, CTL_FRAME_MAX);
		if (got == 0)
			break;
	}
	if (ferror(f))
		die(EXIT_FAILED, "%s: read error", path);
	fclose(f);
	buf[n] = '\0';
	if (strlen(buf) != n)
		die(EXIT_FAILED, "%s: holds a NUL octet (not a text file)", path);
	*len = n;
	return buf;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/* ---- commands ---- */

struct command {
	const char *name; /* "server show" */
	const char *usage;
	const char *help;
	int min_args, max_args; /* positional arguments after the name */
	bool opts;              /* takes options: counts its own arguments */
	int (*run)(int argc, char **argv);
};

static const struct command *g_cmd;

static void command_usage(const struct command *c, FILE *f)
{
	fprintf(f, "Usage: tesctl [--socket PATH] [--json] %s\n\n%s", c->usage, c->help);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("tesctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (g_cmd)
		fprintf(stderr, "Usage: tesctl %s\n(tesctl %s --help for more)\n", g_cmd->usage,
			g_cmd->name);
	exit(EXIT_USAGE);
}

/* Split command options (given after the command name) from positional
 * arguments.  Options with a value take it from the next word or after
 * '='. */
struct cmdopt {
	const char *name; /* "--tenant" */
	bool has_value;
	const char **values; /* where values go */
	int nvalues, maxvalues;
	bool seen;
};

static int split_args(int argc, char **argv, struct cmdopt *o, int no, char **pos)
{
	int npos = 0;
	bool only_pos = false;

	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		int k;

		if (!only_pos && strcmp(a, "--") == 0) {
			only_pos = true;
			continue;
		}
		if (only_pos || a[0] != '-' || a[1] == '\0' || (a[1] >= '0' && a[1] <= '9')) {
			pos[npos++] = argv[i];
			continue;
		}
		for (k = 0; k < no; k++) {
			size_t l = strlen(o[k].name);

			if (strncmp(a, o[k].name, l) == 0 && (a[l] == '\0' || a[l] == '='))
				break;
		}
		if (k == no)
			usage_error("%s: unknown option %s", g_cmd->name, a);
		o[k].seen = true;
		if (o[k].has_value) {
			const char *v = strchr(a, '=');

			if (v) {
				v++;
			} else if (i + 1 < argc) {
				v = argv[++i];
			} else {
				usage_error("%s needs a value", o[k].name);
			}
			if (o[k].nvalues == o[k].maxvalues)
				usage_error("%s given too often", o[k].name);
			o[k].values[o[k].nvalues++] = v;
		}
	}
	return npos;
}

/* ---- report ---- */

static json_t *fetch_report(json_t *args)
{
	json_t *all = NULL, *servers = json_array();
	long long offset = 0;

	/* tescontrol pages the report so no response outgrows a frame. */
	for (;;) {
		json_t *a = json_deep_copy(args), *resp, *r;

		json_object_set_new(a, "offset", json_integer(offset));
		r = call(ADMIN_REPORT, a, &resp);
		json_array_extend(servers, json_object_get(r, "servers"));
		if (!all) {
			all = json_pack("{s:O, s:O}", "clock", json_object_get(r, "clock"), "total",
					json_object_get(r, "total"));
		}
		if (!json_is_integer(json_object_get(r, "next_offset"))) {
			json_decref(resp);
			break;
		}
		offset = num(r, "next_offset");
		json_decref(resp);
	}
	json_object_set_new(all, "servers", servers);
	json_decref(args);
	return all;
}

static const char *const report_fields[] = {
	"tenant",
	"tenant_name",
	"fqdn",
	"build",
	"family",
	"first_detected",
	"recommended",
	"throttle_enabled",
	"blocking_enabled",
	"next_stage_throttle_min",
	"next_stage_block_min",
	"next_stage_start",
	"status",
	"stage",
	"last_seen",
};

static void field_text(const json_t *s, const char *key, char *buf, size_t len)
{
	const json_t *v;

	if (strcmp(key, "recommended") == 0) {
		recommended_text(s, buf, len, " ", false);
		if (strcmp(buf, "-") == 0)
			buf[0] = '\0';
		return;
	}
	v = json_object_get(s, key);
	if (json_is_string(v))
		snprintf(buf, len, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	else
		buf[0] = '\0';
}

static int run_report(int argc, char **argv)
{
	const char *fmt_v[1] = { NULL }, *tenant_v[1] = { NULL };
	struct cmdopt o[] = {
		{ "--format", true, fmt_v, 0, 1, false },
		{ "--tenant", true, tenant_v, 0, 1, false },
		{ "--all", false, NULL, 0, 0, false },
	};
	char *pos[64];
	const char *format = g_opts.json ? "json" : "table";
	json_t *args = json_object(), *rep, *srv, *servers;
	size_t i;

	if (split_args(argc, argv, o, 3, pos) > 0)
		usage_error("report takes no positional arguments");
	if (fmt_v[0])
		format = fmt_v[0];
	if (strcmp(format, "table") && strcmp(format, "json") && strcmp(format, "csv"))
		usage_error("--format must be table, json or csv, not \"%s\"", format);
	if (tenant_v[0])
		json_object_set_new(
			args, "tenant",
			json_integer(parse_num(tenant_v[0], 0, UINT32_MAX, "--tenant")));
	if (o[2].seen)
		json_object_set_new(args, "all", json_true());
	rep = fetch_report(args);
	servers = json_object_get(rep, "servers");
	if (strcmp(format, "json") == 0) {
		print_json(rep);
	} else if (strcmp(format, "csv") == 0) {
		char buf[1024];

		for (size_t k = 0; k < sizeof(report_fields) / sizeof(report_fields[0]); k++)
			csv_field(report_fields[k],
				  k + 1 == sizeof(report_fields) / sizeof(report_fields[0]));
		json_array_foreach(servers, i, srv)
		{
			for (size_t k = 0; k < sizeof(report_fields) / sizeof(report_fields[0]);
			     k++) {
				field_text(srv, report_fields[k], buf, sizeof(buf));
				csv_field(buf, k + 1 == sizeof(report_fields) /
								sizeof(report_fields[0]));
			}
		}
	} else {
		struct table t = { .ncols = 12 };
		static const char *const head[] = {
			"TENANT",     "SERVER",      "BUILD",         "FAMILY",
			"FIRST SEEN", "RECOMMENDED", "THROTTLE FROM", "BLOCK FROM",
			"NEXT STAGE", "NEXT START",  "STATUS",        "LAST SEEN",
		};

		table_add(&t, head);
		json_array_foreach(servers, i, srv)
		{
			char tenant[32], first[16], thr[16], blk[16], next[48], nstart[16],
				rec[512], last[16];
			const char *cells[12];

			snprintf(tenant, sizeof(tenant), "%lld", num(srv, "tenant"));
			day_of(srv, "first_detected", first, sizeof(first));
			day_of(srv, "throttle_enabled", thr, sizeof(thr));
			day_of(srv, "blocking_enabled", blk, sizeof(blk));
			day_of(srv, "next_stage_start", nstart, sizeof(nstart));
			day_of(srv, "last_seen", last, sizeof(last));
			if (json_is_integer(json_object_get(srv, "next_stage")))
				snprintf(next, sizeof(next), "%lld: %lld/%lld min/h",
					 num(srv, "next_stage"),
					 num(srv, "next_stage_throttle_min"),
					 num(srv, "next_stage_block_min"));
			else
				snprintf(next, sizeof(next), "-");
			recommended_text(srv, rec, sizeof(rec), ", ", true);
			cells[0] = tenant;
			cells[1] = str(srv, "fqdn");
			cells[2] = str(srv, "build");
			cells[3] = str(srv, "family");
			cells[4] = first;
			cells[5] = rec;
			cells[6] = thr;
			cells[7] = blk;
			cells[8] = next;
			cells[9] = nstart;
			cells[10] = str(srv, "status");
			cells[11] = last;
			table_add(&t, cells);
		}
		table_print(&t);
		if (json_array_size(servers) == 0)
			printf("(no servers on record)\n");
		printf("next stage: throttled/blocked minutes per hour; now %s%s\n",
		       str(json_object_get(rep, "clock"), "now_iso"),
		       json_is_true(json_object_get(json_object_get(rep, "clock"), "test_clock"))
			       ? " (TEST CLOCK)"
			       : "");
	}
	json_decref(rep);
	return 0;
}

/* ---- servers ---- */

static json_t *server_args(char **pos)
{
	return json_pack("{s:I, s:s}", "tenant",
			 (json_int_t)parse_num(pos[0], 0, UINT32_MAX, "TENANT"), "fqdn", pos[1]);
}

static void print_kv(const char *k, const char *v)
{
	printf("%-22s %s\n", k, v && v[0] ? v : "-");
}

static int run_server_show(int argc, char **argv)
{
	json_t *resp, *r = call(ADMIN_SERVER_SHOW, server_args(argv), &resp);
	char rec[1024], buf[128];
	size_t i;

	(void)argc;
	if (g_opts.json) {
		print_json(r);
		json_decref(resp);
		return 0;
	}
	snprintf(buf, sizeof(buf), "%lld (%s)", num(r, "tenant"), str(r, "tenant_name"));
	print_kv("tenant", buf);
	print_kv("server", str(r, "fqdn"));
	snprintf(buf, sizeof(buf), "%s (%s %s, %s)", str(r, "build"), str(r, "family"),
		 str(r, "branch"),
		 json_is_true(json_object_get(r, "compliant")) ? "compliant" : "out of date");
	print_kv("build", buf);
	snprintf(buf, sizeof(buf), "%s (stage %lld)", str(r, "status"), num(r, "stage"));
	print_kv("status", buf);
	print_kv("first detected", str(r, "first_detected"));
	print_kv("last seen", str(r, "last_seen"));
	if (json_is_string(json_object_get(r, "resolved_at")))
		print_kv("resolved", str(r, "resolved_at"));
	print_kv("throttling from", str(r, "throttle_enabled"));
	print_kv("blocking from", str(r, "blocking_enabled"));
	if (json_is_integer(json_object_get(r, "next_stage"))) {
		snprintf(buf, sizeof(buf), "%lld from %s: %lld min/h throttled, %lld blocked",
			 num(r, "next_stage"), str(r, "next_stage_start"),
			 num(r, "next_stage_throttle_min"), num(r, "next_stage_block_min"));
		print_kv("next stage", buf);
	}
	snprintf(buf, sizeof(buf), "%.1f days (%.1f paused)",
		 (double)num(r, "elapsed_seconds") / 86400.0,
		 (double)num(r, "paused_seconds") / 86400.0);
	print_kv("stage clock", buf);
	recommended_text(r, rec, sizeof(rec), ", ", true);
	print_kv("recommended", rec);
	rec[0] = '\0';
	{
		size_t used = 0;
		const json_t *e;

		json_array_foreach(json_object_get(r, "sources"), i, e)
		{
			int n = snprintf(rec + used, sizeof(rec) - used, "%s%s", i ? ", " : "",
					 json_string_value(e));

			if (n < 0 || (size_t)n >= sizeof(rec) - used)
				break;
			used += (size_t)n;
		}
	}
	print_kv("sources", rec);
	json_decref(resp);
	return 0;
}

static int run_server_reset(int argc, char **argv)
{
	json_t *resp, *r = call(ADMIN_SERVER_RESET, server_args(argv), &resp);

	(void)argc;
	if (g_opts.json)
		print_json(r);
	else
		printf("tenant %lld server %s reset: forgotten; a new detection starts a new "
		       "clock\n",
		       num(r, "tenant"), str(r, "fqdn"));
	json_decref(resp);
	return 0;
}

/* ---- tenants ---- */

static void print_tenant(const json_t *t)
{
	const json_t *c, *pz = json_object_get(t, "pause");
	char buf[512];
	size_t i;

	snprintf(buf, sizeof(buf), "%lld", num(t, "id"));
	print_kv("tenant", buf);
	print_kv("name", str(t, "name"));
	snprintf(buf, sizeof(buf), "%lld", num(t, "servers"));
	print_kv("servers on record", buf);
	json_array_foreach(json_object_get(t, "connectors"), i, c)
	{
		snprintf(buf, sizeof(buf), "%s%s%s", str(c, "range"),
			 json_object_get(c, "cert") ? ", certificate " : "", str(c, "cert"));
		print_kv(i ? "" : "connectors", buf);
	}
	if (json_array_size(json_object_get(t, "connectors")) == 0)
		print_kv("connectors", "none");
	if (json_is_true(json_object_get(pz, "active")))
		snprintf(buf, sizeof(buf), "paused until %s; %lld of %lld days left in %lld",
			 str(pz, "end"), num(pz, "days_left"), num(pz, "quota_days"),
			 num(pz, "year"));
	else
		snprintf(buf, sizeof(buf), "not paused; %lld of %lld days left in %lld",
			 num(pz, "days_left"), num(pz, "quota_days"), num(pz, "year"));
	print_kv("pause", buf);
}

/* --connector RANGE[,CERTNAME] values as the protocol's connector list. */
static json_t *connectors_json(const char *const *v, int n)
{
	json_t *conns = json_array();

	for (int i = 0; i < n; i++) {
		const char *comma = strchr(v[i], ',');
		json_t *c;

		if (comma) {
			char range[128];

			if ((size_t)(comma - v[i]) >= sizeof(range))
				usage_error("--connector %s: range too long", v[i]);
			memcpy(range, v[i], (size_t)(comma - v[i]));
			range[comma - v[i]] = '\0';
			if (!comma[1])
				usage_error(
					"--connector %s: empty certificate name after the comma",
					v[i]);
			c = json_pack("{s:s, s:s}", "range", range, "cert", comma + 1);
		} else {
			c = json_pack("{s:s}", "range", v[i]);
		}
		json_array_append_new(conns, c);
	}
	return conns;
}

static int run_tenant_add(int argc, char **argv)
{
	const char *conn_v[TES_TENANT_CONNECTORS_MAX];
	struct cmdopt o[] = {
		{ "--connector", true, conn_v, 0, TES_TENANT_CONNECTORS_MAX, false },
	};
	char *pos[64];
	int npos = argc <= 64 ? split_args(argc, argv, o, 1, pos) : -1;
	json_t *conns, *resp, *r;

	if (npos != 2)
		usage_error("tenant add needs ID and NAME");
	conns = connectors_json(conn_v, o[0].nvalues);
	r = call(ADMIN_TENANT_ADD,
		 json_pack("{s:I, s:s, s:o}", "id",
			   (json_int_t)parse_num(pos[0], 1, UINT32_MAX, "ID"), "name", pos[1],
			   "connectors", conns),
		 &resp);
	if (g_opts.json)
		print_json(r);
	else
		print_tenant(r);
	json_decref(resp);
	return 0;
}

static int run_tenant_set(int argc, char **argv)
{
	const char *conn_v[TES_TENANT_CONNECTORS_MAX], *name_v[1] = { NULL };
	struct cmdopt o[] = {
		{ "--connector", true, conn_v, 0, TES_TENANT_CONNECTORS_MAX, false },
		{ "--name", true, name_v, 0, 1, false },
		{ "--no-connectors", false, NULL, 0, 0, false },
	};
	char *pos[64];
	int npos = argc <= 64 ? split_args(argc, argv, o, 3, pos) : -1;
	json_t *args, *resp, *r;

	if (npos != 1)
		usage_error("tenant set needs one ID");
	if (o[2].seen && o[0].nvalues)
		usage_error("--no-connectors and --connector contradict each other");
	if (!name_v[0] && !o[0].nvalues && !o[2].seen)
		usage_error("nothing to change: give --name, --connector or --no-connectors");
	args = json_pack("{s:I}", "id", (json_int_t)parse_num(pos[0], 1, UINT32_MAX, "ID"));
	if (name_v[0])
		json_object_set_new(args, "name", json_string(name_v[0]));
	if (o[0].nvalues || o[2].seen)
		json_object_set_new(args, "connectors", connectors_json(conn_v, o[0].nvalues));
	r = call(ADMIN_TENANT_SET, args, &resp);
	if (g_opts.json) {
		print_json(r);
	} else {
		if (!json_is_true(json_object_get(r, "changed")))
			printf("tenant %lld unchanged (it already had those values)\n",
			       num(r, "id"));
		print_tenant(r);
	}
	json_decref(resp);
	return 0;
}

static int run_tenant_delete(int argc, char **argv)
{
	struct cmdopt o[] = { { "--force", false, NULL, 0, 0, false } };
	char *pos[64];
	int npos = argc <= 64 ? split_args(argc, argv, o, 1, pos) : -1;
	json_t *resp, *r;

	if (npos != 1)
		usage_error("tenant delete needs one ID");
	r = call(ADMIN_TENANT_DELETE,
		 json_pack("{s:I, s:b}", "id", (json_int_t)parse_num(pos[0], 1, UINT32_MAX, "ID"),
			   "force", o[0].seen),
		 &resp);
	if (g_opts.json)
		print_json(r);
	else
		printf("tenant %lld (%s) deleted, with %lld server%s on record\n", num(r, "id"),
		       str(r, "name"), num(r, "servers_deleted"),
		       num(r, "servers_deleted") == 1 ? "" : "s");
	json_decref(resp);
	return 0;
}

static int run_tenant_list(int argc, char **argv)
{
	json_t *resp, *r = call(ADMIN_TENANT_LIST, NULL, &resp), *t;
	struct table tb = { .ncols = 5 };
	static const char *const head[] = { "ID", "NAME", "CONNECTORS", "SERVERS", "PAUSED" };
	size_t i;

	(void)argc;
	(void)argv;
	if (g_opts.json) {
		print_json(r);
		json_decref(resp);
		return 0;
	}
	table_add(&tb, head);
	json_array_foreach(json_object_get(r, "tenants"), i, t)
	{
		char id[32], nc[32], ns[32], paused[64];
		const char *cells[5];

		snprintf(id, sizeof(id), "%lld", num(t, "id"));
		snprintf(nc, sizeof(nc), "%zu", json_array_size(json_object_get(t, "connectors")));
		snprintf(ns, sizeof(ns), "%lld", num(t, "servers"));
		if (json_is_true(json_object_get(t, "paused")))
			snprintf(paused, sizeof(paused), "until %.10s",
				 str(json_object_get(t, "pause"), "end"));
		else
			snprintf(paused, sizeof(paused), "no");
		cells[0] = id;
		cells[1] = str(t, "name");
		cells[2] = nc;
		cells[3] = ns;
		cells[4] = paused;
		table_add(&tb, cells);
	}
	table_print(&tb);
	json_decref(resp);
	return 0;
}

static int run_tenant_show(int argc, char **argv)
{
	json_t *resp, *r;

	(void)argc;
	r = call(ADMIN_TENANT_SHOW,
		 json_pack("{s:I}", "id", (json_int_t)parse_num(argv[0], 1, UINT32_MAX, "ID")),
		 &resp);
	if (g_opts.json)
		print_json(r);
	else
		print_tenant(r);
	json_decref(resp);
	return 0;
}

/* ---- pauses ---- */

static void print_pause(const json_t *p)
{
	if (json_is_true(json_object_get(p, "active")))
		printf("tenant %lld is paused from %s until %s\n", num(p, "tenant"),
		       str(p, "start"), str(p, "end"));
	else
		printf("tenant %lld is not paused\n", num(p, "tenant"));
	printf("pause days: %lld used, %lld left of %lld in %lld\n", num(p, "days_used"),
	       num(p, "days_left"), num(p, "quota_days"), num(p, "year"));
}

static int run_pause_add(int argc, char **argv)
{
	json_t *resp, *r;

	(void)argc;
	r = call(ADMIN_PAUSE_ADD,
		 json_pack("{s:I, s:I}", "tenant",
			   (json_int_t)parse_num(argv[0], 1, UINT32_MAX, "TENANT"), "days",
			   (json_int_t)parse_num(argv[1], 1, 366, "DAYS")),
		 &resp);
	if (g_opts.json)
		print_json(r);
	else
		print_pause(r);
	json_decref(resp);
	return 0;
}

static int run_pause_tenant(const char *cmd, char **argv)
{
	json_t *resp, *r;

	r = call(cmd,
		 json_pack("{s:I}", "tenant",
			   (json_int_t)parse_num(argv[0], 1, UINT32_MAX, "TENANT")),
		 &resp);
	if (g_opts.json)
		print_json(r);
	else
		print_pause(r);
	json_decref(resp);
	return 0;
}

static int run_pause_show(int argc, char **argv)
{
	(void)argc;
	return run_pause_tenant(ADMIN_PAUSE_SHOW, argv);
}

static int run_pause_resume(int argc, char **argv)
{
	(void)argc;
	return run_pause_tenant(ADMIN_PAUSE_RESUME, argv);
}

/* ---- catalog and policy ---- */

static void print_changes(const json_t *r, bool dry)
{
	const json_t *c;
	size_t i, n = json_array_size(json_object_get(r, "changes"));

	if (n == 0) {
		printf("%s no known server's status\n", dry ? "would change" : "changed");
		return;
	}
	printf("%s the status of %zu known server%s:\n", dry ? "would change" : "changed", n,
	       n == 1 ? "" : "s");
	json_array_foreach(json_object_get(r, "changes"), i, c)
		printf("  tenant %lld  %s  (%s)  %s stage %lld -> %s stage %lld\n",
		       num(c, "tenant"), str(c, "fqdn"), str(c, "build"), str(c, "old_status"),
		       num(c, "old_stage"), str(c, "new_status"), num(c, "new_stage"));
}

static int run_catalog_show(int argc, char **argv)
{
	json_t *resp, *r = call(ADMIN_CATALOG_SHOW, NULL, &resp);
	char buf[64];

	(void)argc;
	(void)argv;
	if (g_opts.json) {
		print_json(r);
	} else {
		print_kv("version", str(r, "version"));
		snprintf(buf, sizeof(buf), "%lld", num(r, "builds"));
		print_kv("builds", buf);
		print_kv("loaded", str(r, "loaded_at"));
		print_kv("builds file", str(r, "builds_name"));
		print_kv("compliance file", str(r, "compliance_name"));
		printf("\n%s", str(r, "compliance"));
	}
	json_decref(resp);
	return 0;
}

static int run_catalog_load(int argc, char **argv)
{
	struct cmdopt o[] = { { "--dry-run", false, NULL, 0, 0, false } };
	char *pos[64];
	int npos = split_args(argc, argv, o, 1, pos);
	size_t bl, cl;
	char *b, *c;
	json_t *resp, *r;

	if (npos != 2)
		usage_error("catalog load needs BUILDS_CSV and COMPLIANCE_CONF");
	b = slurp(pos[0], &bl);
	c = slurp(pos[1], &cl);
	r = call(ADMIN_CATALOG_LOAD,
		 json_pack("{s:s, s:s, s:s, s:s, s:b}", "builds", b, "builds_name",
			   base_name(pos[0]), "compliance", c, "compliance_name", base_name(pos[1]),
			   "dry_run", o[0].seen),
		 &resp);
	free(b);
	free(c);
	if (g_opts.json) {
		print_json(r);
	} else {
		printf("%s catalog version %s (%lld builds)\n",
		       o[0].seen ? "dry run: would load" : "loaded", str(r, "version"),
		       num(r, "builds"));
		print_changes(r, o[0].seen);
	}
	json_decref(resp);
	return 0;
}

/* --at: a date as compliance rules write them (YYYY-MM-DD is 00:00 UTC,
 * or YYYY-MM-DDTHH:MM:SSZ), or @SECONDS. */
static long long parse_at(const char *s)
{
	int64_t t;

	if (s[0] == '@')
		return parse_num(s + 1, 0, TES_TIME_MAX, "--at");
	if (!catalog_parse_time(s, &t))
		usage_error("--at: \"%s\" is not a date (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ in UTC,"
			    " or @SECONDS)",
			    s);
	return t;
}

static int run_catalog_check(int argc, char **argv)
{
	const char *at_v[1] = { NULL };
	struct cmdopt o[] = { { "--at", true, at_v, 0, 1, false } };
	char *pos[64];
	int npos = argc <= 64 ? split_args(argc, argv, o, 1, pos) : -1;
	json_t *args, *resp, *r, *rule;
	char rec[1024], buf[512];

	if (npos != 1)
		usage_error("catalog check needs one BUILD");
	args = json_pack("{s:s}", "build", pos[0]);
	if (at_v[0])
		json_object_set_new(args, "at", json_integer(parse_at(at_v[0])));
	r = call(ADMIN_CATALOG_CHECK, args, &resp);
	if (g_opts.json) {
		print_json(r);
		json_decref(resp);
		return 0;
	}
	print_kv("build", str(r, "build"));
	print_kv("family", str(r, "family"));
	if (!json_is_true(json_object_get(r, "on_premises"))) {
		print_kv("verdict", "not an on-premises Exchange build: never enforced");
		json_decref(resp);
		return 0;
	}
	print_kv("branch", str(r, "branch"));
	if (json_is_object(json_object_get(r, "nearest"))) {
		const json_t *n = json_object_get(r, "nearest");

		snprintf(buf, sizeof(buf), "%s%s (%s, %s)",
			 json_is_true(json_object_get(r, "exact")) ? "" : "nearest lower: ",
			 str(n, "build"), str(n, "update"), str(n, "date"));
		print_kv("catalog entry", buf);
	} else {
		print_kv("catalog entry", "none (unknown build)");
	}
	print_kv("at", str(r, "at"));
	print_kv("verdict", json_is_true(json_object_get(r, "compliant"))
				    ? "compliant"
				    : "out of date (reported, then throttled and blocked)");
	rule = json_object_get(r, "rule");
	if (num(rule, "line") > 0) {
		const char *kind = str(rule, "kind");

		snprintf(buf, sizeof(buf), "%s:%lld: %s%s", str(rule, "file"), num(rule, "line"),
			 str(rule, "text"),
			 strcmp(kind, "none") == 0 ? " (not in force at that time)" : "");
		print_kv("rule", buf);
	} else {
		print_kv("rule", "none: no rule names this branch, so it is never compliant");
	}
	if (json_is_string(json_object_get(rule, "since")) ||
	    json_is_string(json_object_get(rule, "until"))) {
		snprintf(buf, sizeof(buf), "from %s until %s",
			 json_is_string(json_object_get(rule, "since")) ? str(rule, "since")
									: "the start",
			 json_is_string(json_object_get(rule, "until")) ? str(rule, "until")
									: "no end");
		print_kv("rule in force", buf);
	}
	if (json_is_object(json_object_get(rule, "floor"))) {
		const json_t *f = json_object_get(rule, "floor");

		snprintf(buf, sizeof(buf), "%s (%s, %s)", str(f, "build"), str(f, "update"),
			 str(f, "date"));
		print_kv("compliant from", buf);
	} else if (strcmp(str(rule, "kind"), "current") == 0) {
		print_kv("compliant from", "any build (no release old enough yet)");
	}
	snprintf(buf, sizeof(buf), "since %s, until %s",
		 json_is_string(json_object_get(r, "verdict_since")) ? str(r, "verdict_since")
								     : "always",
		 json_is_string(json_object_get(r, "verdict_until")) ? str(r, "verdict_until")
								     : "no end");
	print_kv("this verdict holds", buf);
	recommended_text(r, rec, sizeof(rec), ", ", true);
	print_kv("recommended", rec);
	json_decref(resp);
	return 0;
}

static int run_policy_show(int argc, char **argv)
{
	json_t *resp, *r = call(ADMIN_POLICY_SHOW, NULL, &resp);

	(void)argc;
	(void)argv;
	if (g_opts.json) {
		print_json(r);
	} else {
		printf("# policy version %s, loaded %s from %s\n", str(r, "version"),
		       str(r, "loaded_at"), str(r, "name"));
		fputs(str(r, "text"), stdout);
	}
	json_decref(resp);
	return 0;
}

static int run_policy_load(int argc, char **argv)
{
	struct cmdopt o[] = { { "--dry-run", false, NULL, 0, 0, false } };
	char *pos[64];
	int npos = split_args(argc, argv, o, 1, pos);
	size_t len;
	char *text;
	json_t *resp, *r;

	if (npos != 1)
		usage_error("policy load needs FILE");
	text = slurp(pos[0], &len);
	r = call(ADMIN_POLICY_LOAD,
		 json_pack("{s:s, s:s, s:b}", "text", text, "name", base_name(pos[0]), "dry_run",
			   o[0].seen),
		 &resp);
	free(text);
	if (g_opts.json) {
		print_json(r);
	} else {
		if (o[0].seen)
			printf("dry run: %s is valid\n", pos[0]);
		else
			printf("loaded policy version %s\n", str(r, "version"));
		print_changes(r, o[0].seen);
	}
	json_decref(resp);
	return 0;
}

/* ---- the fleet (docs/fleet.md) ---- */

/* What tesctl status says of the fleet: this appliance, and whether it is
 * cut off from etcd and since when. */
static void fleet_status_lines(const json_t *f)
{
	char buf[768];

	if (!json_is_object(f))
		return;
	print_kv("appliance", str(f, "appliance"));
	if (json_is_true(json_object_get(f, "cut_off"))) {
		snprintf(buf, sizeof(buf),
			 "CUT OFF from etcd since %s (%llds); enforcing the last"
			 " state, %lld detections in the local journal; %s",
			 str(f, "cut_off_since"), num(f, "cut_off_seconds"), num(f, "journal"),
			 str(f, "last_error"));
	} else {
		snprintf(buf, sizeof(buf), "connected to etcd at %s (revision %lld); journal %lld",
			 str(f, "endpoint"), num(f, "revision"), num(f, "journal"));
	}
	print_kv("fleet", buf);
}

static int run_fleet_status(int argc, char **argv)
{
	json_t *resp, *r = call(ADMIN_FLEET_STATUS, NULL, &resp), *m;
	struct table t = { .ncols = 7 };
	static const char *const head[] = { "APPLIANCE", "ALIVE", "LAST ALIVE", "CATALOG",
					    "POLICY",    "DRIFT", "JOURNAL" };
	size_t i;

	(void)argc;
	(void)argv;
	if (g_opts.json) {
		print_json(r);
		json_decref(resp);
		return 0;
	}
	printf("fleet of %s: catalog %s, policy %s; %lld appliances known, %lld alive, %lld"
	       " drifting\n",
	       str(r, "store"), str(json_object_get(r, "catalog"), "version"),
	       str(json_object_get(r, "policy"), "version"), num(r, "appliances_known"),
	       num(r, "appliances_alive"), num(r, "drift"));
	table_add(&t, head);
	json_array_foreach(json_object_get(r, "appliances"), i, m)
	{
		bool cd = json_is_true(json_object_get(m, "catalog_drift"));
		bool pd = json_is_true(json_object_get(m, "policy_drift"));
		char journal[32];
		const char *cells[7];

		snprintf(journal, sizeof(journal), "%lld", num(m, "journal"));
		cells[0] = str(m, "appliance");
		cells[1] = json_is_true(json_object_get(m, "alive")) ? "yes" : "no";
		cells[2] = str(m, "last_alive");
		cells[3] = str(m, "catalog");
		cells[4] = str(m, "policy");
		cells[5] = cd && pd ? "catalog+policy" : cd ? "catalog" : pd ? "policy" : "-";
		cells[6] = journal;
		table_add(&t, cells);
	}
	table_print(&t);
	json_decref(resp);
	return 0;
}

/* The whole state as one JSON document, page by page. */
static int run_store_export(int argc, char **argv)
{
	json_t *doc = NULL, *servers = json_array();
	long long offset = 0;
	FILE *out = stdout;
	char *text;

	if (argc > 1)
		usage_error("store export takes at most a FILE");
	for (;;) {
		json_t *resp, *r = call(ADMIN_STORE_EXPORT,
					json_pack("{s:I}", "offset", (json_int_t)offset), &resp);

		json_array_extend(servers, json_object_get(r, "servers"));
		if (!doc) {
			doc = json_deep_copy(r);
			json_object_del(doc, "servers");
			json_object_del(doc, "offset");
			json_object_del(doc, "next_offset");
		}
		if (!json_is_integer(json_object_get(r, "next_offset"))) {
			json_decref(resp);
			break;
		}
		offset = num(r, "next_offset");
		json_decref(resp);
	}
	json_object_set_new(doc, "servers", servers);
	json_object_set_new(doc, "total", json_integer((json_int_t)json_array_size(servers)));
	text = json_dumps(doc, JSON_INDENT(1));
	if (!text)
		die(EXIT_FAILED, "cannot write the export");
	if (argc == 1 && strcmp(argv[0], "-") != 0) {
		out = fopen(argv[0], "w");
		if (!out)
			die(EXIT_FAILED, "%s: %s", argv[0], strerror(errno));
	}
	if (fputs(text, out) < 0 || fputc('\n', out) < 0 || (out != stdout && fclose(out)))
		die(EXIT_FAILED, "writing %s: %s", argc == 1 ? argv[0] : "stdout", strerror(errno));
	if (out != stdout)
		fprintf(stderr, "tesctl: exported %zu tenants and %zu servers to %s\n",
			json_array_size(json_object_get(doc, "tenants")),
			json_array_size(json_object_get(doc, "servers")), argv[0]);
	free(text);
	json_decref(doc);
	return 0;
}

#define IMPORT_BATCH 200

static int run_store_import(int argc, char **argv)
{
	struct cmdopt o[] = { { "--no-documents", false, NULL, 0, 0, false } };
	char *pos[4];
	json_error_t je;
	json_t *doc, *servers, *first, *resp, *r, *e;
	long long written = 0, unchanged = 0, failed = 0;
	size_t n, i;

	if (argc > 3 || split_args(argc, argv, o, 1, pos) != 1)
		usage_error("store import takes one FILE");
	doc = json_load_file(pos[0], JSON_REJECT_DUPLICATES, &je);
	if (!doc)
		die(EXIT_FAILED, "%s:%d: %s", pos[0], je.line, je.text);
	if (!json_is_object(doc) || strcmp(str(doc, "format"), "tesgate-state") != 0 ||
	    num(doc, "version") != 1)
		die(EXIT_FAILED, "%s: not a tesctl store export (format tesgate-state, version 1)",
		    pos[0]);
	servers = json_object_get(doc, "servers");
	if (!json_is_array(servers))
		die(EXIT_FAILED, "%s: no \"servers\" list", pos[0]);
	/* Tenants and documents first: servers need their tenants. */
	first = json_pack("{s:O}", "tenants",
			  json_object_get(doc, "tenants") ? json_object_get(doc, "tenants")
							  : json_array());
	if (!o[0].seen) {
		if (json_object_get(doc, "policy"))
			json_object_set(first, "policy", json_object_get(doc, "policy"));
		if (json_object_get(doc, "catalog"))
			json_object_set(first, "catalog", json_object_get(doc, "catalog"));
	}
	r = call(ADMIN_STORE_IMPORT, first, &resp);
	if (g_opts.json)
		print_json(r);
	else
		printf("tenants: %zu created, %zu the same, %zu kept as the fleet has them; policy"
		       " %s; catalog %s\n",
		       json_array_size(json_object_get(json_object_get(r, "tenants"), "created")),
		       json_array_size(json_object_get(json_object_get(r, "tenants"), "same")),
		       json_array_size(json_object_get(json_object_get(r, "tenants"), "kept")),
		       str(r, "policy"), str(r, "catalog"));
	json_decref(resp);
	n = json_array_size(servers);
	for (i = 0; i < n; i += IMPORT_BATCH) {
		json_t *batch = json_array(), *res;
		size_t k;

		for (size_t j = i; j < n && j < i + IMPORT_BATCH; j++)
			json_array_append(batch, json_array_get(servers, j));
		r = call(ADMIN_STORE_IMPORT, json_pack("{s:o}", "servers", batch), &resp);
		res = json_object_get(r, "servers");
		written += num(res, "written");
		unchanged += num(res, "unchanged");
		failed += num(res, "failed");
		json_array_foreach(json_object_get(res, "errors"), k, e)
			fprintf(stderr, "tesctl: %s\n", json_string_value(e));
		json_decref(resp);
	}
	printf("servers: %lld written, %lld the fleet had already, %lld failed\n", written,
	       unchanged, failed);
	json_decref(doc);
	return failed ? EXIT_FAILED : 0;
}

/* ---- status and clock ---- */

static int run_status(int argc, char **argv)
{
	json_t *resp, *r = call(ADMIN_STATUS, NULL, &resp), *g, *s, *clk;
	char buf[256];
	size_t i;

	(void)argc;
	(void)argv;
	if (g_opts.json) {
		print_json(r);
		json_decref(resp);
		return 0;
	}
	clk = json_object_get(r, "clock");
	snprintf(buf, sizeof(buf), "%s (pid %lld, up since %s)", str(r, "version"), num(r, "pid"),
		 str(r, "started_at"));
	print_kv("tescontrol", buf);
	snprintf(buf, sizeof(buf), "%s%s", str(clk, "now_iso"),
		 json_is_true(json_object_get(clk, "test_clock"))
			 ? " (TEST CLOCK: moved only by tesctl clock)"
			 : " (system clock)");
	print_kv("clock", buf);
	snprintf(buf, sizeof(buf), "%lld", num(r, "gateways_connected"));
	print_kv("gateways connected", buf);
	json_array_foreach(json_object_get(r, "gateways"), i, g)
	{
		snprintf(buf, sizeof(buf), "#%lld %s %s (pid %lld)%s, %lld sightings",
			 num(g, "conn"), str(g, "gateway"), str(g, "version"), num(g, "pid"),
			 json_is_true(json_object_get(g, "synced")) ? "" : " syncing",
			 num(g, "sightings"));
		print_kv("", buf);
	}
	snprintf(buf, sizeof(buf), "%lld", num(r, "tenants"));
	print_kv("tenants", buf);
	s = json_object_get(r, "servers");
	snprintf(
		buf, sizeof(buf),
		"%lld (reporting %lld, throttling %lld, blocking %lld, paused %lld, resolved %lld)",
		num(s, "total"), num(s, "reporting"), num(s, "throttling"), num(s, "blocking"),
		num(s, "paused"), num(s, "resolved"));
	print_kv("servers", buf);
	snprintf(buf, sizeof(buf), "%s (%lld builds)",
		 str(json_object_get(r, "catalog"), "version"),
		 num(json_object_get(r, "catalog"), "builds"));
	print_kv("catalog", buf);
	print_kv("policy", str(json_object_get(r, "policy"), "version"));
	snprintf(buf, sizeof(buf), "%s (schema %lld)", str(json_object_get(r, "store"), "path"),
		 num(json_object_get(r, "store"), "schema_version"));
	print_kv("store", buf);
	fleet_status_lines(json_object_get(r, "fleet"));
	json_decref(resp);
	return 0;
}

static int run_clock(int argc, char **argv)
{
	json_t *args, *resp, *r;

	if (strcmp(argv[0], "show") == 0) {
		if (argc != 1)
			usage_error("clock show takes no argument");
		args = json_pack("{s:s}", "op", "show");
	} else if (strcmp(argv[0], "set") == 0 || strcmp(argv[0], "advance") == 0) {
		if (argc != 2)
			usage_error("clock %s needs SECONDS", argv[0]);
		args = json_pack(
			"{s:s, s:I}", "op", argv[0], "seconds",
			(json_int_t)(strcmp(argv[0], "set") == 0
					     ? parse_num(argv[1], 0, TES_TIME_MAX, "SECONDS")
					     : parse_duration(argv[1])));
	} else {
		usage_error("clock: \"%s\" is not show, set or advance", argv[0]);
	}
	r = call(ADMIN_CLOCK, args, &resp);
	if (g_opts.json)
		print_json(r);
	else
		printf("%s%s\n", str(r, "now_iso"),
		       json_is_true(json_object_get(r, "test_clock")) ? " (test clock)" : "");
	json_decref(resp);
	return 0;
}

/* ---- xdp ---- */

static int run_xdp_status(int argc, char **argv)
{
	json_t *resp, *r = call(ADMIN_XDP_STATUS, NULL, &resp), *f, *v;
	const char *k;
	char buf[512];
	size_t i;

	(void)argc;
	(void)argv;
	if (g_opts.json) {
		print_json(r);
		json_decref(resp);
		return 0;
	}
	print_kv("pin directory", str(r, "pin_dir"));
	print_kv("configured mode", str(r, "configured_mode"));
	json_array_foreach(json_object_get(r, "interfaces"), i, f)
	{
		snprintf(buf, sizeof(buf), "%s: %s%s%s%s", str(f, "interface"), str(f, "mode"),
			 json_is_true(json_object_get(f, "generic_fallback"))
				 ? " (native refused: generic fallback)"
				 : "",
			 str(f, "error")[0] ? ", " : "", str(f, "error"));
		print_kv("interface", buf);
	}
	json_object_foreach(json_object_get(r, "entries"), k, v)
	{
		snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
		printf("  entries %-14s %s\n", k, buf);
	}
	json_object_foreach(json_object_get(r, "counters"), k, v)
	{
		printf("  %-22s %lld packets, %lld bytes\n", k, num(v, "packets"), num(v, "bytes"));
	}
	json_decref(resp);
	return 0;
}

static int run_xdp_list(int argc, char **argv)
{
	json_t *resp, *r = call(ADMIN_XDP_LIST, NULL, &resp), *e;
	size_t i;

	(void)argc;
	(void)argv;
	if (g_opts.json) {
		print_json(r);
		json_decref(resp);
		return 0;
	}
	printf("%-44s %-13s %s\n", "ADDRESS", "REASON", "EXPIRES");
	json_array_foreach(json_object_get(r, "entries"), i, e)
	{
		char exp[64] = "never";

		if (json_is_true(json_object_get(e, "expired")))
			snprintf(exp, sizeof(exp), "expired");
		else if (json_object_get(e, "expires_in"))
			snprintf(exp, sizeof(exp), "in %llds", num(e, "expires_in"));
		printf("%-44s %-13s %s\n", str(e, "address"), str(e, "reason"), exp);
	}
	json_decref(resp);
	return 0;
}

static int run_xdp_deny(int argc, char **argv)
{
	const char *ttl_v[1] = { NULL };
	struct cmdopt o[] = { { "--ttl", true, ttl_v, 0, 1, false } };
	char *pos[8];
	int npos;
	json_t *args, *resp, *r;

	if (argc > 8)
		usage_error("xdp deny takes one address");
	npos = split_args(argc, argv, o, 1, pos);
	if (npos != 1)
		usage_error("xdp deny takes one address");
	args = json_pack("{s:s}", "address", pos[0]);
	if (ttl_v[0])
		json_object_set_new(
			args, "ttl",
			json_integer(parse_num(ttl_v[0], 1, 10LL * 365 * 86400, "--ttl")));
	r = call(ADMIN_XDP_DENY, args, &resp);
	if (g_opts.json)
		print_json(r);
	else
		printf("denied %s%s%s%s\n", str(r, "denied"), ttl_v[0] ? " for " : "",
		       ttl_v[0] ? ttl_v[0] : "", ttl_v[0] ? " seconds" : "");
	json_decref(resp);
	return 0;
}

static int run_xdp_one(const char *cmd, const char *key, const char *value, const char *done)
{
	json_t *resp, *r = call(cmd, json_pack("{s:s}", key, value), &resp);

	if (g_opts.json)
		print_json(r);
	else
		printf("%s %s\n", done, value);
	json_decref(resp);
	return 0;
}

static int run_xdp_allow(int argc, char **argv)
{
	(void)argc;
	return run_xdp_one(ADMIN_XDP_ALLOW, "address", argv[0], "allowed");
}

static int run_xdp_detach(int argc, char **argv)
{
	(void)argc;
	return run_xdp_one(ADMIN_XDP_DETACH, "interface", argv[0], "detached from");
}

/* ---- report tokens ---- */

static int run_token_create(int argc, char **argv)
{
	json_t *resp, *r;

	(void)argc;
	r = call(ADMIN_TOKEN_CREATE,
		 json_pack("{s:I}", "tenant",
			   (json_int_t)parse_num(argv[0], 1, UINT32_MAX, "TENANT")),
		 &resp);
	if (g_opts.json) {
		print_json(r);
	} else {
		/* the token is shown this once: tescontrol keeps only its hash */
		printf("report token %s for tenant %lld (shown once; tescontrol keeps only its "
		       "SHA-256):\n%s\nthe tenant's page is %s on report_listen (https) and on "
		       "metrics_listen\n",
		       str(r, "id"), num(r, "tenant"), str(r, "token"), str(r, "path"));
	}
	json_decref(resp);
	return 0;
}

static int run_token_list(int argc, char **argv)
{
	const char *tenant_v[1] = { NULL };
	struct cmdopt o[] = { { "--tenant", true, tenant_v, 0, 1, false } };
	char *pos[64];
	int npos = argc <= 64 ? split_args(argc, argv, o, 1, pos) : -1;
	static const char *const head[] = { "ID", "TENANT", "CREATED" };
	struct table tb = { .ncols = 3 };
	json_t *args = json_object(), *resp, *r, *t;
	size_t i;

	if (npos != 0)
		usage_error("token list takes no positional argument");
	if (tenant_v[0])
		json_object_set_new(
			args, "tenant",
			json_integer(parse_num(tenant_v[0], 1, UINT32_MAX, "--tenant")));
	r = call(ADMIN_TOKEN_LIST, args, &resp);
	if (g_opts.json) {
		print_json(r);
		json_decref(resp);
		return 0;
	}
	table_add(&tb, head);
	json_array_foreach(json_object_get(r, "tokens"), i, t)
	{
		char tenant[32];
		const char *cells[3];

		snprintf(tenant, sizeof(tenant), "%lld", num(t, "tenant"));
		cells[0] = str(t, "id");
		cells[1] = tenant;
		cells[2] = str(t, "created");
		table_add(&tb, cells);
	}
	table_print(&tb);
	json_decref(resp);
	return 0;
}

static int run_token_revoke(int argc, char **argv)
{
	json_t *resp, *r;

	(void)argc;
	r = call(ADMIN_TOKEN_REVOKE, json_pack("{s:s}", "id", argv[0]), &resp);
	if (g_opts.json)
		print_json(r);
	else
		printf("report token %s of tenant %lld revoked\n", str(r, "revoked"),
		       num(r, "tenant"));
	json_decref(resp);
	return 0;
}

/* ---- notices ---- */

static void print_contacts(const json_t *c)
{
	const json_t *m;
	char buf[512];
	size_t i;

	snprintf(buf, sizeof(buf), "%lld", num(c, "tenant"));
	print_kv("tenant", buf);
	snprintf(buf, sizeof(buf),
		 "%lld days before each throttle and block date, and at a "
		 "resolution",
		 num(c, "days_before"));
	print_kv("notices", buf);
	if (json_is_string(json_object_get(c, "webhook")))
		snprintf(buf, sizeof(buf), "%s (signed: X-Tesgate-Signature-256)",
			 str(c, "webhook"));
	else
		snprintf(buf, sizeof(buf), "none");
	print_kv("webhook", buf);
	json_array_foreach(json_object_get(c, "mail"), i, m)
		print_kv(i ? "" : "mail", json_string_value(m));
	if (json_array_size(json_object_get(c, "mail")) == 0)
		print_kv("mail", "none");
	print_kv("dates from", str(c, "since"));
}

static int run_notice_set(int argc, char **argv)
{
	const char *days_v[1] = { NULL }, *hook_v[1] = { NULL }, *secret_v[1] = { NULL };
	const char *mail_v[STORE_MAIL_MAX_CLI];
	struct cmdopt o[] = {
		{ "--days", true, days_v, 0, 1, false },
		{ "--webhook", true, hook_v, 0, 1, false },
		{ "--secret-file", true, secret_v, 0, 1, false },
		{ "--mail", true, mail_v, 0, STORE_MAIL_MAX_CLI, false },
	};
	char *pos[64];
	int npos = argc <= 64 ? split_args(argc, argv, o, 4, pos) : -1;
	json_t *args, *mail = json_array(), *resp, *r;

	if (npos != 1)
		usage_error("notice set needs one TENANT");
	if (!hook_v[0] && !o[3].nvalues)
		usage_error("nobody to tell: give --webhook or --mail");
	if (hook_v[0] && !secret_v[0])
		usage_error("--webhook needs --secret-file (the key its signatures are made with)");
	if (secret_v[0] && !hook_v[0])
		usage_error("--secret-file goes with --webhook");
	args = json_pack("{s:I}", "tenant", (json_int_t)parse_num(pos[0], 1, UINT32_MAX, "TENANT"));
	if (days_v[0])
		json_object_set_new(args, "days_before",
				    json_integer(parse_num(days_v[0], 0, 365, "--days")));
	if (hook_v[0]) {
		size_t len;
		char *secret = slurp(secret_v[0], &len);

		/* one line: a trailing newline is the editor's, not the key's */
		secret[strcspn(secret, "\r\n")] = '\0';
		json_object_set_new(args, "webhook", json_string(hook_v[0]));
		json_object_set_new(args, "secret", json_string(secret));
		memset(secret, 0, len);
		free(secret);
	}
	for (int i = 0; i < o[3].nvalues; i++)
		json_array_append_new(mail, json_string(mail_v[i]));
	json_object_set_new(args, "mail", mail);
	r = call(ADMIN_NOTICE_SET, args, &resp);
	if (g_opts.json)
		print_json(r);
	else
		print_contacts(r);
	json_decref(resp);
	return 0;
}

static int run_notice_show(int argc, char **argv)
{
	json_t *resp, *r;

	(void)argc;
	r = call(ADMIN_NOTICE_SHOW,
		 json_pack("{s:I}", "tenant",
			   (json_int_t)parse_num(argv[0], 1, UINT32_MAX, "TENANT")),
		 &resp);
	if (g_opts.json)
		print_json(r);
	else
		print_contacts(r);
	json_decref(resp);
	return 0;
}

static int run_notice_clear(int argc, char **argv)
{
	json_t *resp, *r;

	(void)argc;
	r = call(ADMIN_NOTICE_CLEAR,
		 json_pack("{s:I}", "tenant",
			   (json_int_t)parse_num(argv[0], 1, UINT32_MAX, "TENANT")),
		 &resp);
	if (g_opts.json)
		print_json(r);
	else
		printf("tenant %lld: notice contacts cleared; notices not delivered yet are "
		       "cancelled\n",
		       num(r, "cleared"));
	json_decref(resp);
	return 0;
}

static int run_notice_list(int argc, char **argv)
{
	const char *tenant_v[1] = { NULL };
	struct cmdopt o[] = {
		{ "--tenant", true, tenant_v, 0, 1, false },
		{ "--pending", false, NULL, 0, 0, false },
	};
	char *pos[64];
	int npos = argc <= 64 ? split_args(argc, argv, o, 2, pos) : -1;
	static const char *const head[] = { "ID",   "KIND", "TENANT",    "SERVER",
					    "DATE", "DUE",  "DELIVERIES" };
	struct table tb = { .ncols = 7 };
	json_t *args = json_object(), *resp, *r, *n, *d;
	size_t i, k;

	if (npos != 0)
		usage_error("notice list takes no positional argument");
	if (tenant_v[0])
		json_object_set_new(
			args, "tenant",
			json_integer(parse_num(tenant_v[0], 1, UINT32_MAX, "--tenant")));
	json_object_set_new(args, "pending", json_boolean(o[1].seen));
	r = call(ADMIN_NOTICE_LIST, args, &resp);
	if (g_opts.json) {
		print_json(r);
		json_decref(resp);
		return 0;
	}
	table_add(&tb, head);
	json_array_foreach(json_object_get(r, "notices"), i, n)
	{
		char tenant[32], date[16], due[16], ds[1024] = "";
		const char *cells[7];
		size_t used = 0;

		snprintf(tenant, sizeof(tenant), "%lld", num(n, "tenant"));
		day_of(n, "date", date, sizeof(date));
		day_of(n, "due", due, sizeof(due));
		json_array_foreach(json_object_get(n, "deliveries"), k, d)
		{
			int w = snprintf(ds + used, sizeof(ds) - used, "%s%s %s %s (%lld)",
					 k ? ", " : "", str(d, "via"), str(d, "target"),
					 str(d, "state"), num(d, "attempts"));

			if (w < 0 || (size_t)w >= sizeof(ds) - used)
				break;
			used += (size_t)w;
		}
		cells[0] = str(n, "id");
		cells[1] = str(n, "kind");
		cells[2] = tenant;
		cells[3] = str(n, "server");
		cells[4] = date;
		cells[5] = due;
		cells[6] = ds;
		table_add(&tb, cells);
	}
	table_print(&tb);
	json_decref(resp);
	return 0;
}

static const struct command commands[] = {
	{ "report", "report [--format table|json|csv] [--tenant ID] [--all]",
	  "The out-of-date servers report: server FQDN, build, product family, first detected,\n"
	  "recommended builds, throttle-enabled and blocking-enabled dates, the next stage's\n"
	  "throttle and block rates and start, the status (Reporting, Throttling, Blocking,\n"
	  "Paused, Resolved, Stale: not seen for stale_after days, not enforced) and when the\n"
	  "server was last seen.  --all adds the servers compliant since first seen (status\n"
	  "Compliant), tracked for the shared-source decision.  --format json (the default with\n"
	  "--json) prints every field with ISO 8601 times and Unix seconds (*_unix); csv prints\n"
	  "one row per server.\n",
	  0, 64, true, run_report },
	{ "server show", "server show TENANT FQDN",
	  "Everything tescontrol knows of one server: build, status, stage clock, dates,\n"
	  "recommended builds and the source addresses it was seen from.\n",
	  2, 2, false, run_server_show },
	{ "server reset", "server reset TENANT FQDN",
	  "Forget a server: its first-detection date, stage clock and sources are deleted.  If\n"
	  "it is seen again with an out-of-date build a new clock starts (30 days report-only).\n",
	  2, 2, false, run_server_reset },
	{ "tenant add", "tenant add ID NAME [--connector RANGE[,CERTNAME]]...",
	  "Add a tenant (a customer) with its inbound connectors: source address ranges\n"
	  "(198.51.100.0/24, 2001:db8::/48, a bare address) and optionally the name its TLS\n"
	  "client certificate must carry.  Up to 16 connectors; ID is 1 to 4294967295.\n",
	  2, 64, true, run_tenant_add },
	{ "tenant set",
	  "tenant set ID [--name NAME] [--connector RANGE[,CERTNAME]]... [--no-connectors]",
	  "Change a tenant: --name renames it; --connector (repeatable) replaces its whole list\n"
	  "of connectors with the ones given; --no-connectors removes them all.  What is not\n"
	  "given stays.  The gateways are told at once; connections already open keep the\n"
	  "tenant they were matched to.\n",
	  1, 64, true, run_tenant_set },
	{ "tenant delete", "tenant delete ID [--force]",
	  "Delete a tenant, its connectors and its pause.  Refused while it has servers on\n"
	  "record (their first detections and stage clocks cannot be recreated) unless\n"
	  "--force is given: then they are forgotten with it, in one transaction.\n",
	  1, 2, true, run_tenant_delete },
	{ "tenant list", "tenant list", "Every tenant, with its connector and server counts.\n", 0,
	  0, false, run_tenant_list },
	{ "tenant show", "tenant show ID", "One tenant: connectors, servers on record, pause.\n", 1,
	  1, false, run_tenant_show },
	{ "pause add", "pause add TENANT DAYS",
	  "Pause throttling and blocking for a tenant for DAYS more days (extending an active\n"
	  "pause).  Stage clocks stop while paused and resume where they were.  The policy's\n"
	  "quota (90 days per calendar year by default, any split) is enforced: asking for more\n"
	  "than is left fails and says how many days are left.\n",
	  2, 2, false, run_pause_add },
	{ "pause show", "pause show TENANT", "A tenant's pause and its days used and left.\n", 1, 1,
	  false, run_pause_show },
	{ "pause resume", "pause resume TENANT",
	  "End a tenant's pause now.  The days granted stay counted against the quota.\n", 1, 1,
	  false, run_pause_resume },
	{ "catalog show", "catalog show",
	  "The catalog in force: version, number of builds, source files and compliance rules.\n",
	  0, 0, false, run_catalog_show },
	{ "catalog load", "catalog load [--dry-run] BUILDS_CSV COMPLIANCE_CONF",
	  "Replace the build catalog and the compliance policy.  Both files are validated\n"
	  "first; an invalid file changes nothing and the error names file, line and problem.\n"
	  "Every known server's last build is classified again: a server whose build becomes\n"
	  "compliant is resolved, one whose build stops being compliant is re-detected (a new\n"
	  "clock).  --dry-run lists those changes (old -> new status) and changes nothing.\n",
	  2, 3, true, run_catalog_load },
	{ "catalog check", "catalog check BUILD [--at DATE]",
	  "Classify a build (15.1.2507.39 or 15.01.2507.039) with the catalog in force, as of\n"
	  "now or of DATE (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ in UTC, or @SECONDS): the verdict,\n"
	  "the compliance rule that decides it (file:line and its text), the dates that rule is\n"
	  "in force, the lowest compliant build then, when this verdict began and when it ends,\n"
	  "and the recommended builds.\n",
	  1, 3, true, run_catalog_check },
	{ "policy show", "policy show", "The enforcement policy in force, as its file.\n", 0, 0,
	  false, run_policy_show },
	{ "policy load", "policy load [--dry-run] FILE",
	  "Replace the enforcement policy (stage table, window, scope, replies, pause quota;\n"
	  "see data/policy.conf).  An invalid file changes nothing.  --dry-run lists which known\n"
	  "servers would change stage or status (old -> new) and changes nothing.\n",
	  1, 2, true, run_policy_load },
	{ "status", "status",
	  "tescontrol's state: gateways connected, tenants and servers by status, catalog and\n"
	  "policy versions, the store, and the clock (and whether it is a test clock).  In a\n"
	  "fleet (store = etcd): this appliance, and whether it is cut off from etcd and since\n"
	  "when.\n",
	  0, 0, false, run_status },
	{ "fleet status", "fleet status",
	  "The fleet (store = etcd, docs/fleet.md): every appliance that shares the store,\n"
	  "whether it is alive (its lease is held) or when it last was, the catalog and policy\n"
	  "versions it enforces, and drift from the newest ones.\n",
	  0, 0, false, run_fleet_status },
	{ "store export", "store export [FILE]",
	  "Write tescontrol's whole state (tenants, catalog, policy, servers) as one JSON\n"
	  "document to FILE or stdout: a single box's SQLite state, to import into a fleet.\n",
	  0, 1, false, run_store_export },
	{ "store import", "store import [--no-documents] FILE",
	  "Import a store export into the fleet this tescontrol runs on (store = etcd): tenants\n"
	  "it lacks, the catalog and policy (unless --no-documents), and every server, merged\n"
	  "with what the fleet holds (the earliest first detection wins).\n",
	  1, 2, true, run_store_import },
	{ "clock", "clock show | clock set SECONDS | clock advance DURATION",
	  "The daemon's clock.  set and advance work only on a tescontrol started with\n"
	  "--test-clock (tests): set takes Unix seconds, advance SECONDS or N with a unit\n"
	  "(30d, 12h, 5m, 10s).  Stage changes that fall due are applied at once.\n",
	  1, 2, false, run_clock },
	{ "token create", "token create TENANT",
	  "A report token for a tenant: its admin opens the tenant's page at\n"
	  "/report/tenant/TOKEN (report_listen, or the metrics listener) and sees its servers\n"
	  "and nothing else.  The token is printed once; tescontrol keeps only its SHA-256.\n",
	  1, 1, false, run_token_create },
	{ "token list", "token list [--tenant ID]",
	  "The report tokens (their ids, tenants and dates; never the tokens).\n", 0, 2, true,
	  run_token_list },
	{ "token revoke", "token revoke ID",
	  "Revoke a report token: its page answers 403 from now on.\n", 1, 1, false,
	  run_token_revoke },
	{ "notice set",
	  "notice set TENANT [--days N] [--webhook URL --secret-file FILE] [--mail ADDR]...",
	  "Who is told before a tenant's servers are throttled and blocked (N days before each\n"
	  "date, default 7) and when one is resolved: a webhook (a JSON POST signed with\n"
	  "HMAC-SHA256 under the key in FILE, header X-Tesgate-Signature-256) and up to 8 mail\n"
	  "addresses (through notice_smtp_relay).  Replaces the tenant's contacts.\n",
	  1, 64, true, run_notice_set },
	{ "notice show", "notice show TENANT", "A tenant's notice contacts (not the secret).\n", 1,
	  1, false, run_notice_show },
	{ "notice clear", "notice clear TENANT",
	  "Tell a tenant nothing more; its notices not delivered yet are cancelled.\n", 1, 1, false,
	  run_notice_clear },
	{ "notice list", "notice list [--tenant ID] [--pending]",
	  "The notice journal: each notice (throttle, block, resolved) with its server, date,\n"
	  "when it fell due, and its deliveries (delivered, pending with attempts, expired).\n"
	  "--pending: only those not delivered yet.\n",
	  0, 3, true, run_notice_list },
	{ "xdp status", "xdp status",
	  "The XDP early drop run by tescontrol: the pin directory, each configured interface\n"
	  "and the mode it is attached in (and whether native mode was refused), the drop\n"
	  "list's entries by reason and the program's counters.\n",
	  0, 0, false, run_xdp_status },
	{ "xdp list", "xdp list",
	  "Every entry of the XDP drop list: address or range, reason (enforcement: a source of\n"
	  "a fully blocked server, kept by tescontrol; admin_exact, admin_prefix: tesctl xdp\n"
	  "deny) and expiry.\n",
	  0, 0, false, run_xdp_list },
	{ "xdp deny", "xdp deny ADDR[/PREFIX] [--ttl SECONDS]",
	  "Drop every packet from an address or range at the XDP hook, for SECONDS or until\n"
	  "xdp allow.  tescontrol's enforcement sync never removes these entries.\n",
	  1, 3, true, run_xdp_deny },
	{ "xdp allow", "xdp allow ADDR[/PREFIX]",
	  "Remove an entry added with xdp deny (the exact address or range given there).\n"
	  "Entries of blocked servers follow the enforcement state: pause the tenant or reset\n"
	  "the server instead.\n",
	  1, 1, false, run_xdp_allow },
	{ "xdp detach", "xdp detach IFACE",
	  "Detach tesgate's XDP program from an interface (nothing else's).  The drop list\n"
	  "stays pinned; a tescontrol restart attaches again.\n",
	  1, 1, false, run_xdp_detach },
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "Usage: tesctl [--socket PATH] [--json] [--timeout SECONDS] COMMAND [ARGS]\n\n"
		   "Operate tescontrol, the tesgate control plane, over its admin socket\n"
		   "(default " DEFAULT_SOCKET ", or $TESCTL_SOCKET).\n\nCommands:\n");
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %s\n", commands[i].usage);
	fprintf(f, "\nOptions:\n"
		   "  --socket PATH      tescontrol's admin socket\n"
		   "  --json             print results as JSON\n"
		   "  --timeout SECONDS  how long to wait for tescontrol (default 30)\n"
		   "  -h, --help         this text; tesctl COMMAND --help for one command\n"
		   "  -V, --version      print the version\n"
		   "\nExit status: 0 done, 1 the command failed, 2 usage error,\n"
		   "3 tescontrol unreachable.\n");
}

static bool is_help(const char *s)
{
	return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0;
}

int main(int argc, char **argv)
{
	const struct command *c = NULL;
	const char *env = getenv("TESCTL_SOCKET");
	int i = 1, rest, nwords = 0;

	if (env && env[0])
		g_opts.socket = env;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *a = argv[i];

		if (is_help(a)) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf("tesctl %s (admin protocol %d)\n", TES_VERSION, ADMIN_PROTO_VERSION);
			return 0;
		} else if (strcmp(a, "--json") == 0) {
			g_opts.json = true;
		} else if (strcmp(a, "--socket") == 0 || strcmp(a, "--timeout") == 0) {
			if (i + 1 >= argc) {
				fprintf(stderr, "tesctl: %s needs a value\n", a);
				return EXIT_USAGE;
			}
			if (a[2] == 's')
				g_opts.socket = argv[++i];
			else
				g_opts.timeout = (int)parse_num(argv[++i], 1, 3600, "--timeout");
		} else if (strncmp(a, "--socket=", 9) == 0) {
			g_opts.socket = a + 9;
		} else if (strncmp(a, "--timeout=", 10) == 0) {
			g_opts.timeout = (int)parse_num(a + 10, 1, 3600, "--timeout");
		} else {
			fprintf(stderr, "tesctl: unknown option %s\n", a);
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[i], "help") == 0) {
		usage(stdout);
		return 0;
	}
	/* The longest command name that matches the words given. */
	for (size_t k = 0; k < NCOMMANDS; k++) {
		const char *name = commands[k].name, *sp = strchr(name, ' ');

		if (sp) {
			if (i + 1 < argc && strncmp(argv[i], name, (size_t)(sp - name)) == 0 &&
			    argv[i][sp - name] == '\0' && strcmp(argv[i + 1], sp + 1) == 0) {
				c = &commands[k];
				nwords = 2;
				break;
			}
		} else if (strcmp(argv[i], name) == 0) {
			c = &commands[k];
			nwords = 1;
			break;
		}
	}
	if (!c) {
		bool group = false;

		for (size_t k = 0; k < NCOMMANDS; k++) {
			const char *sp = strchr(commands[k].name, ' ');

			if (sp &&
			    strncmp(argv[i], commands[k].name, (size_t)(sp - commands[k].name)) ==
				    0 &&
			    argv[i][sp - commands[k].name] == '\0') {
				if (!group)
					fprintf(i + 1 < argc && !is_help(argv[i + 1]) ? stderr
										      : stdout,
						"Usage:\n");
				group = true;
				fprintf(i + 1 < argc && !is_help(argv[i + 1]) ? stderr : stdout,
					"  tesctl %s\n", commands[k].usage);
			}
		}
		if (group) {
			if (i + 1 < argc && is_help(argv[i + 1]))
				return 0;
			if (i + 1 < argc)
				fprintf(stderr, "tesctl: unknown command \"%s %s\"\n", argv[i],
					argv[i + 1]);
			return EXIT_USAGE;
		}
		fprintf(stderr, "tesctl: unknown command \"%s\" (tesctl --help lists them)\n",
			argv[i]);
		return EXIT_USAGE;
	}
	g_cmd = c;
	i += nwords;
	/* --json is accepted after the command too ("tesctl report --json"). */
	for (int k = i, out = i; k <= argc; k++) {
		if (k == argc) {
			argc = out;
			break;
		}
		if (strcmp(argv[k], "--") == 0) {
			memmove(&argv[out], &argv[k], (size_t)(argc - k) * sizeof(*argv));
			argc = out + (argc - k);
			break;
		}
		if (strcmp(argv[k], "--json") == 0) {
			g_opts.json = true;
			continue;
		}
		argv[out++] = argv[k];
	}
	rest = argc - i;
	for (int k = i; k < argc; k++) {
		if (strcmp(argv[k], "--") == 0)
			break;
		if (is_help(argv[k])) {
			command_usage(c, stdout);
			return 0;
		}
	}
	/* Commands with options count their own positional arguments. */
	if (!c->opts && (rest < c->min_args || rest > c->max_args))
		usage_error("%s takes %s%d argument%s", c->name,
			    c->min_args == c->max_args ? "" : "at least ", c->min_args,
			    c->min_args == 1 ? "" : "s");
	return c->run(rest, argv + i);
}
