/* SPDX-License-Identifier: BSD-3-Clause */
#include "controlplane/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TES_DATADIR
#define TES_DATADIR "/usr/share/tesgate"
#endif

void cp_config_defaults(struct cp_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->state_dir, sizeof(c->state_dir), "/var/lib/tescontrol");
	snprintf(c->gateway_socket, sizeof(c->gateway_socket), "/run/tescontrol/gateway.sock");
	snprintf(c->admin_socket, sizeof(c->admin_socket), "/run/tescontrol/admin.sock");
	snprintf(c->catalog_file, sizeof(c->catalog_file), "%s/exchange-builds.csv", TES_DATADIR);
	snprintf(c->compliance_file, sizeof(c->compliance_file), "%s/compliance.conf", TES_DATADIR);
	c->log_level = CP_INFO;
	c->flush_seconds = 2;
	snprintf(c->metrics_listen, sizeof(c->metrics_listen), "127.0.0.1:9464");
	snprintf(c->xdp_pin_root, sizeof(c->xdp_pin_root), "/sys/fs/bpf/tesgate");
	snprintf(c->xdp_mode, sizeof(c->xdp_mode), "auto");
	snprintf(c->xdp_ports, sizeof(c->xdp_ports), "25");
	snprintf(c->store, sizeof(c->store), "sqlite");
	snprintf(c->etcd_prefix, sizeof(c->etcd_prefix), "/tesgate");
	c->etcd_timeout_ms = 1000;
	c->etcd_connect_timeout_ms = 500;
	c->etcd_lease_seconds = 10;
	c->etcd_flush_seconds = 60;
	c->report_history_days = 400;
	c->notice_retry_min = 30;
	c->notice_retry_max = 3600;
	c->notice_timeout = 10;
	c->notice_expire_days = 14;
}

void cp_config_finish(struct cp_config *c)
{
	if (!c->db_path[0])
		snprintf(c->db_path, sizeof(c->db_path), "%.*s/tescontrol.db",
			 (int)(sizeof(c->db_path) - 16), c->state_dir);
	if (!c->etcd_journal[0])
		snprintf(c->etcd_journal, sizeof(c->etcd_journal), "%.*s/fleet-journal.db",
			 (int)(sizeof(c->etcd_journal) - 20), c->state_dir);
	if (!c->appliance[0]) {
		char host[256] = "";
		size_t n = 0;

		gethostname(host, sizeof(host) - 1);
		for (size_t i = 0; host[i] && n < sizeof(c->appliance) - 1; i++) {
			char ch = host[i];

			c->appliance[n++] =
				isalnum((unsigned char)ch) || ch == '-' || ch == '.' || ch == '_'
					? ch
					: '_';
		}
		c->appliance[n] = '\0';
		if (!n)
			snprintf(c->appliance, sizeof(c->appliance), "appliance");
	}
	if (c->etcd_connect_timeout_ms > c->etcd_timeout_ms)
		c->etcd_connect_timeout_ms = c->etcd_timeout_ms;
	if (!c->notice_mail_from[0]) {
		char host[200] = "localhost";

		gethostname(host, sizeof(host) - 1);
		host[sizeof(host) - 1] = '\0';
		snprintf(c->notice_mail_from, sizeof(c->notice_mail_from), "tescontrol@%s", host);
	}
	if (c->notice_retry_max < c->notice_retry_min)
		c->notice_retry_max = c->notice_retry_min;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

enum kind {
	K_PATH,
	K_SOCK,
	K_GROUP,
	K_LEVEL,
	K_UINT,
	K_LISTEN,
	K_EVLOG,
	K_IFACES,
	K_XMODE,
	K_BOOL,
	K_NAME,
	K_PORTS,
	K_STORE,
	K_URLS,
	K_PREFIX,
	K_APPLIANCE,
	K_MS,
	K_OPTPATH
};

struct key {
	const char *name;
	enum kind kind;
	size_t off;
	size_t size;
};

#define F(name, kind, field)                                   \
	{                                                      \
		name, kind, offsetof(struct cp_config, field), \
			sizeof(((struct cp_config *)0)->field) \
	}

static const struct key keys[] = {
	F("state_dir", K_PATH, state_dir),
	F("db_path", K_PATH, db_path),
	F("gateway_socket", K_SOCK, gateway_socket),
	F("gateway_group", K_GROUP, gateway_group),
	F("admin_socket", K_SOCK, admin_socket),
	F("admin_group", K_GROUP, admin_group),
	F("catalog_file", K_PATH, catalog_file),
	F("compliance_file", K_PATH, compliance_file),
	F("policy_file", K_PATH, policy_file),
	F("log_level", K_LEVEL, log_level),
	F("flush_seconds", K_UINT, flush_seconds),
	F("metrics_listen", K_LISTEN, metrics_listen),
	F("event_log", K_EVLOG, event_log),
	F("xdp_interfaces", K_IFACES, xdp_interfaces),
	F("xdp_pin_root", K_PATH, xdp_pin_root),
	F("xdp_mode", K_XMODE, xdp_mode),
	F("xdp_required", K_BOOL, xdp_required),
	F("xdp_ports", K_PORTS, xdp_ports),
	F("user", K_NAME, user),
	F("store", K_STORE, store),
	F("etcd_endpoints", K_URLS, etcd_endpoints),
	F("etcd_prefix", K_PREFIX, etcd_prefix),
	F("appliance", K_APPLIANCE, appliance),
	F("etcd_ca_file", K_OPTPATH, etcd_ca_file),
	F("etcd_cert_file", K_OPTPATH, etcd_cert_file),
	F("etcd_key_file", K_OPTPATH, etcd_key_file),
	F("etcd_username", K_NAME, etcd_username),
	F("etcd_password_file", K_OPTPATH, etcd_password_file),
	F("etcd_timeout_ms", K_MS, etcd_timeout_ms),
	F("etcd_connect_timeout_ms", K_MS, etcd_connect_timeout_ms),
	F("etcd_lease_seconds", K_UINT, etcd_lease_seconds),
	F("etcd_flush_seconds", K_UINT, etcd_flush_seconds),
	F("etcd_journal", K_PATH, etcd_journal),
	F("report_listen", K_LISTEN, report_listen),
	F("report_tls_cert", K_PATH, report_tls_cert),
	F("report_tls_key", K_PATH, report_tls_key),
	F("report_history_days", K_UINT, report_history_days),
	F("notice_smtp_relay", K_LISTEN, notice_smtp_relay),
	F("notice_mail_from", K_NAME, notice_mail_from),
	F("notice_retry_min", K_UINT, notice_retry_min),
	F("notice_retry_max", K_UINT, notice_retry_max),
	F("notice_timeout", K_UINT, notice_timeout),
	F("notice_expire_days", K_UINT, notice_expire_days),
};

static int set(struct cp_config *c, const struct key *k, const char *v, char *err, size_t errlen)
{
	char *field = (char *)c + k->off;

	switch (k->kind) {
	case K_PATH:
	case K_SOCK:
		if (!v[0]) {
			snprintf(err, errlen, "empty path");
			return -1;
		}
		if (v[0] != '/') {
			snprintf(err, errlen, "\"%s\" is not an absolute path", v);
			return -1;
		}
		if (strlen(v) >= k->size) {
			snprintf(err, errlen, "path longer than %zu octets%s", k->size - 1,
				 k->kind == K_SOCK ? " (the limit of a unix socket address)" : "");
			return -1;
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	case K_GROUP:
		if (strlen(v) >= k->size) {
			snprintf(err, errlen, "group name too long");
			return -1;
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	case K_LEVEL:
		if (!cp_log_level_parse(v, &c->log_level)) {
			snprintf(err, errlen, "\"%s\" is not one of error, warn, info, debug", v);
			return -1;
		}
		return 0;
	case K_LISTEN:
		/* Checked fully (numeric address, port) when the server starts;
		 * here only what makes the value unusable as text. */
		if (v[0] && !strrchr(v, ':')) {
			snprintf(err, errlen, "\"%s\" is not host:port", v);
			return -1;
		}
		if (strlen(v) >= k->size) {
			snprintf(err, errlen, "longer than %zu octets", k->size - 1);
			return -1;
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	case K_EVLOG:
		if (v[0] && strcmp(v, "-") != 0 && v[0] != '/') {
			snprintf(err, errlen, "\"%s\" is not an absolute path, \"-\" or empty", v);
			return -1;
		}
		if (strlen(v) >= k->size) {
			snprintf(err, errlen, "path longer than %zu octets", k->size - 1);
			return -1;
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	case K_IFACES:
		/* Names are checked against the kernel at attach time; here only
		 * what no interface name can be (IFNAMSIZ is 16 with the NUL). */
		for (const char *p = v; *p;) {
			size_t n = strcspn(p, ",");
			size_t b = 0, e = n;

			while (b < e && isspace((unsigned char)p[b]))
				b++;
			while (e > b && isspace((unsigned char)p[e - 1]))
				e--;
			if (e == b || e - b > 15) {
				snprintf(err, errlen, "\"%.*s\" is not an interface name", (int)n,
					 p);
				return -1;
			}
			p += n;
			if (*p == ',')
				p++;
		}
		if (strlen(v) >= k->size) {
			snprintf(err, errlen, "longer than %zu octets", k->size - 1);
			return -1;
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	case K_XMODE:
		if (strcmp(v, "auto") && strcmp(v, "native") && strcmp(v, "generic")) {
			snprintf(err, errlen, "\"%s\" is not one of auto, native, generic", v);
			return -1;
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	case K_BOOL:
		if (!strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
			*(bool *)(void *)field = true;
		else if (!strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
			*(bool *)(void *)field = false;
		else {
			snprintf(err, errlen, "\"%s\" is not yes or no", v);
			return -1;
		}
		return 0;
	case K_NAME:
		if (strlen(v) >= k->size) {
			snprintf(err, errlen, "name too long");
			return -1;
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	case K_PORTS: {
		/* ports 1-65535, comma-separated, at least one */
		unsigned n = 0;
		for (const char *p = v; *p;) {
			char *end;
			unsigned long x;

			while (*p == ',' || isspace((unsigned char)*p))
				p++;
			if (!*p)
				break;
			errno = 0;
			x = strtoul(p, &end, 10);
			if (!isdigit((unsigned char)*p) || errno || x < 1 || x > 65535 ||
			    (*end && *end != ',' && !isspace((unsigned char)*end))) {
				snprintf(err, errlen, "\"%s\" is not a list of TCP ports (25, 587)",
					 v);
				return -1;
			}
			n++;
			p = end;
		}
		if (!n || strlen(v) >= k->size) {
			snprintf(err, errlen, "\"%s\" is not a list of TCP ports (25, 587)", v);
			return -1;
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	}
	case K_STORE:
		if (strcmp(v, "sqlite") && strcmp(v, "etcd")) {
			snprintf(err, errlen, "\"%s\" is not sqlite or etcd", v);
			return -1;
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	case K_URLS: {
		/* Checked again by the etcd client; here what makes a list. */
		unsigned n = 0;

		for (const char *p = v; *p;) {
			size_t l = strcspn(p, ","), b = 0, e = l;

			while (b < e && isspace((unsigned char)p[b]))
				b++;
			while (e > b && isspace((unsigned char)p[e - 1]))
				e--;
			if (!(e - b > 7 && strncmp(p + b, "http://", 7) == 0) &&
			    !(e - b > 8 && strncmp(p + b, "https://", 8) == 0)) {
				snprintf(err, errlen, "\"%.*s\" is not an http:// or https:// URL",
					 (int)(e - b), p + b);
				return -1;
			}
			for (size_t i = b; i < e; i++) {
				if (isspace((unsigned char)p[i])) {
					snprintf(err, errlen, "\"%.*s\" holds a space",
						 (int)(e - b), p + b);
					return -1;
				}
			}
			n++;
			p += l;
			if (*p == ',')
				p++;
		}
		if (n == 0 || n > 16 || strlen(v) >= k->size) {
			snprintf(err, errlen, "give 1 to 16 URLs, comma-separated");
			return -1;
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	}
	case K_PREFIX: {
		size_t n = strlen(v);

		if (n == 0 || v[0] != '/' || v[n - 1] == '/' || n > 200) {
			snprintf(
				err, errlen,
				"\"%s\" must start with / and not end with it (at most 200 octets)",
				v);
			return -1;
		}
		for (size_t i = 0; i < n; i++) {
			if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f) {
				snprintf(err, errlen, "\"%s\" holds a space or a non-ASCII octet",
					 v);
				return -1;
			}
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	}
	case K_APPLIANCE:
		if (!v[0] || strlen(v) >= k->size) {
			snprintf(err, errlen, "a name of 1 to %zu characters", k->size - 1);
			return -1;
		}
		for (const char *p = v; *p; p++) {
			if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.' && *p != '_') {
				snprintf(err, errlen,
					 "\"%s\": only letters, digits, '-', '.' and '_'", v);
				return -1;
			}
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	case K_MS: {
		char *end;
		unsigned long x;

		errno = 0;
		x = strtoul(v, &end, 10);
		if (!isdigit((unsigned char)v[0]) || *end || errno || x < 10 || x > 60000) {
			snprintf(err, errlen,
				 "\"%s\" is not a number of milliseconds from 10 to 60000", v);
			return -1;
		}
		*(unsigned *)(void *)field = (unsigned)x;
		return 0;
	}
	case K_OPTPATH:
		if (v[0] && v[0] != '/') {
			snprintf(err, errlen, "\"%s\" is not an absolute path", v);
			return -1;
		}
		if (strlen(v) >= k->size) {
			snprintf(err, errlen, "path longer than %zu octets", k->size - 1);
			return -1;
		}
		snprintf(field, k->size, "%s", v);
		return 0;
	case K_UINT: {
		char *end;
		unsigned long x;

		errno = 0;
		x = strtoul(v, &end, 10);
		if (!isdigit((unsigned char)v[0]) || *end || errno || x < 1 || x > 3600) {
			snprintf(err, errlen, "\"%s\" is not a number from 1 to 3600", v);
			return -1;
		}
		*(unsigned *)(void *)field = (unsigned)x;
		return 0;
	}
	}
	return -1;
}

int cp_config_load(struct cp_config *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[8192], msg[256];
	bool seen[sizeof(keys) / sizeof(keys[0])] = { false };
	unsigned lineno = 0;

	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *s, *eq, *key, *val;
		size_t i;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line longer than %zu octets", path, lineno,
				 sizeof(line) - 2);
			goto fail;
		}
		s = trim(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%u: expected \"key = value\"", path, lineno);
			goto fail;
		}
		*eq = '\0';
		key = trim(s);
		val = trim(eq + 1);
		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
			if (strcmp(key, keys[i].name) == 0)
				break;
		}
		if (i == sizeof(keys) / sizeof(keys[0])) {
			snprintf(err, errlen, "%s:%u: %s: unknown key", path, lineno, key);
			goto fail;
		}
		if (seen[i]) {
			snprintf(err, errlen, "%s:%u: %s: given twice", path, lineno, key);
			goto fail;
		}
		seen[i] = true;
		if (set(c, &keys[i], val, msg, sizeof(msg))) {
			snprintf(err, errlen, "%s:%u: %s: %s", path, lineno, key, msg);
			goto fail;
		}
	}
	if (ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		goto fail;
	}
	fclose(f);
	return 0;
fail:
	fclose(f);
	return -1;
}
