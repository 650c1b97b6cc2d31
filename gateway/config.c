/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <sched.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef TES_DATADIR
#define TES_DATADIR "/usr/local/share/tesgate"
#endif

enum ktype {
	K_UINT,    /* plain count */
	K_SIZE,    /* octets, optional K/M/G suffix (powers of 1024) */
	K_SECS,    /* seconds, optional s/m/h/d suffix */
	K_HOST,    /* a host name for the greeting */
	K_TEXT,    /* printable ASCII on one line */
	K_PATH,    /* a path, required */
	K_PATHOPT, /* a path, or empty */
	K_LISTEN,
	K_LEVEL,
	K_CPUS,
	K_SKIP,
	K_DELIVERY,
	K_RELAYHOST, /* a host name or an IP address, or empty */
	K_BOOL,      /* yes or no */
	K_LISTENOPT, /* ADDRESS:PORT as for listen, kept as text, or empty */
	K_IO,        /* kernel or dpdk */
	K_ADDRLIST,  /* addresses of both families with prefixes, kept as text, or empty */
};

struct key {
	const char *name;
	enum ktype type;
	size_t off, size;
	uint64_t min, max;
	const char *def; /* NULL: computed (host name) */
	const char *help;
};

#define F(m) offsetof(struct tes_config, m), sizeof(((struct tes_config *)0)->m)

/* The one table of keys: defaults are applied through it, and the example
 * file and the docs are checked against it (tesgate --print-defaults). */
static const struct key keys[] = {
	{ "listen", K_LISTEN, F(io.listen), 0, 0, "127.0.0.1:2525",
	  "address and port to accept SMTP on: 192.0.2.1:25 or [2001:db8::1]:25" },
	{ "workers", K_UINT, F(io.workers), 1, GW_MAX_WORKERS, "1",
	  "worker threads, one per core to use; each has its own listening socket" },
	{ "cpus", K_CPUS, F(io), 0, 0, "",
	  "CPUs to pin the workers to, one per worker (0,1,...); empty: not pinned" },
	{ "hostname", K_HOST, F(hostname), 0, 0, NULL,
	  "name in the greeting and the EHLO reply; default: the machine's host name" },
	{ "banner", K_TEXT, F(smtp.banner), 0, 0, "ESMTP tesgate",
	  "text after the host name in the 220 greeting" },
	{ "max_message_size", K_SIZE, F(smtp.limits.max_message_size), 1024, 1ull << 40, "36700160",
	  "largest message accepted, in octets (SIZE); K, M, G suffixes allowed" },
	{ "max_recipients", K_UINT, F(smtp.limits.max_recipients), 1, 100000, "100",
	  "recipients per message; more get 452 4.5.3" },
	{ "max_messages_per_connection", K_UINT, F(smtp.limits.max_messages), 1, 1000000, "100",
	  "messages per connection; then 421" },
	{ "max_errors", K_UINT, F(smtp.limits.max_errors), 1, 1000, "10",
	  "protocol errors in one session before 421 and close" },
	{ "max_header_bytes", K_SIZE, F(smtp.limits.max_header_bytes), 1024, 16u << 20, "65536",
	  "header section kept for Exchange build detection; beyond it the scan sees a prefix" },
	{ "tls_cert", K_PATHOPT, F(tls.cert), 0, 0, "",
	  "STARTTLS certificate (PEM, then its chain); empty, with tls_key: no STARTTLS" },
	{ "tls_key", K_PATHOPT, F(tls.key), 0, 0, "",
	  "private key of tls_cert (PEM, unencrypted; may be the same file)" },
	{ "tls_cert_rsa", K_PATHOPT, F(tls.rsa_cert), 0, 0, "",
	  "a second STARTTLS certificate with an RSA key, for clients without ECDSA; "
	  "tls_cert must then be ECDSA or EdDSA" },
	{ "tls_key_rsa", K_PATHOPT, F(tls.rsa_key), 0, 0, "", "private key of tls_cert_rsa" },
	{ "tls_request_client_cert", K_BOOL, F(tls.request_client_cert), 0, 0, "no",
	  "ask clients for a certificate and log its names (not verified)" },
	{ "tls_client_ca", K_PATHOPT, F(tls.client_ca), 0, 0, "",
	  "CAs (PEM) that vouch for client certificates: a certificate verified against them "
	  "matches certificate connectors by name; others, or none, still deliver; empty: "
	  "no verification" },
	{ "tls_ticket_lifetime", K_SECS, F(tls.ticket_lifetime), 0, TLS_TICKET_LIFETIME_MAX,
	  "43200",
	  "seconds a session ticket resumes; the ticket key rotates as often; 0: no tickets" },
	{ "idle_timeout", K_SECS, F(io.idle_timeout), 1, 86400, "300",
	  "seconds without progress either way (nothing sent, no reply read); s/m/h suffixes" },
	{ "session_timeout", K_SECS, F(io.session_timeout), 1, 7 * 86400, "1800",
	  "seconds a whole connection may last" },
	{ "shutdown_grace", K_SECS, F(shutdown_grace), 0, 3600, "30",
	  "on SIGTERM/SIGINT: seconds sessions in a transaction get to finish" },
	{ "max_connections", K_UINT, F(io.max_connections), 1, 1000000, "1000",
	  "connections open at once, all workers together; more get 421 4.7.0" },
	{ "max_connections_per_source", K_UINT, F(io.max_connections_per_source), 0, 1000000, "50",
	  "connections open at once from one IPv4 address or IPv6 /64; 0: no limit" },
	{ "min_data_rate", K_UINT, F(conn.min_data_rate), 0, 1000000000, "32",
	  "octets per second a client must send on average over each min_data_rate_window "
	  "(time waiting for delivery not counted); slower: 421 4.4.2 and close; 0: off" },
	{ "min_data_rate_window", K_SECS, F(conn.min_data_rate_window), 1, 86400, "30",
	  "seconds over which min_data_rate is measured" },
	{ "user", K_TEXT, F(user), 0, 0, "",
	  "after start-up run as this user with no capabilities (tesgate); empty: keep the "
	  "user it was started as (as root: warned)" },
	{ "delivery", K_DELIVERY, F(delivery.backend), 0, 0, "spool",
	  "delivery backend: spool, smtp (relay to a backend MTA) or discard (benchmarks only)" },
	{ "spool_dir", K_PATH, F(delivery.spool_dir), 0, 0, "/var/lib/tesgate/spool",
	  "spool backend: directory holding tmp/ and new/; messages appear as new/<id>.eml" },
	{ "spool_min_free", K_SIZE, F(delivery.spool_min_free), 0, 1ull << 50, "128M",
	  "free space kept on spool_dir's file system: below it (plus a declared SIZE) new "
	  "messages get 452 4.3.1; 0: no floor" },
	{ "delivery_threads", K_UINT, F(delivery.threads), 1, 64, "4",
	  "threads doing the durable writes (fsync), so workers never block" },
	{ "relay_host", K_RELAYHOST, F(delivery.relay.host), 0, 0, "",
	  "smtp backend: the backend MTA's host name or address (resolved at start)" },
	{ "relay_port", K_UINT, F(delivery.relay.port), 1, 65535, "25",
	  "smtp backend: the backend's port" },
	{ "relay_socket", K_PATHOPT, F(delivery.relay.socket), 0, 0, "",
	  "smtp backend: a unix socket to the backend, instead of relay_host and relay_port" },
	{ "relay_helo_name", K_RELAYHOST, F(delivery.relay.helo_name), 0, 0, "",
	  "smtp backend: name in EHLO to the backend; empty: hostname" },
	{ "relay_threads", K_UINT, F(delivery.relay.threads), 1, 64, "1",
	  "smtp backend: relay threads, each with its own pool of connections" },
	{ "relay_max_connections", K_UINT, F(delivery.relay.max_connections), 1, 10000, "16",
	  "smtp backend: connections to the backend per relay thread" },
	{ "relay_max_queue", K_UINT, F(delivery.relay.max_queue), 1, 1000000, "1000",
	  "smtp backend: messages per relay thread, waiting or in flight; more get 451 4.3.0" },
	{ "relay_connect_timeout", K_SECS, F(delivery.relay.connect_timeout), 1, 3600, "10",
	  "smtp backend: seconds for the connection and the backend's greeting" },
	{ "relay_command_timeout", K_SECS, F(delivery.relay.command_timeout), 1, 3600, "60",
	  "smtp backend: seconds for the reply to each command" },
	{ "relay_data_timeout", K_SECS, F(delivery.relay.data_timeout), 1, 3600, "120",
	  "smtp backend: seconds without content progress, for the final reply, and for a "
	  "message waiting for a free connection" },
	{ "relay_idle_timeout", K_SECS, F(delivery.relay.idle_timeout), 1, 86400, "30",
	  "smtp backend: seconds an unused connection stays open; then QUIT" },
	{ "relay_memory_per_message", K_SIZE, F(delivery.relay.memory_per_message), 0, 1ull << 30,
	  "1M",
	  "smtp backend: content kept in memory per message; beyond it, a temporary file in "
	  "spool_dir/tmp" },
	{ "relay_memory_total", K_SIZE, F(delivery.relay.memory_total), 0, 1ull << 40, "256M",
	  "smtp backend: content kept in memory for all messages together; beyond it, files" },
	{ "i_understand_discard_loses_mail", K_BOOL, F(delivery.i_understand_discard_loses_mail), 0,
	  0, "no", "must be yes for delivery = discard, which throws every message away" },
	{ "catalog_builds", K_PATHOPT, F(catalog_builds), 0, 0, "",
	  "Exchange build catalog (CSV); empty: exchange-builds.csv from the installed data "
	  "directory or the source tree" },
	{ "catalog_policy", K_PATHOPT, F(catalog_policy), 0, 0, "",
	  "compliance policy; empty: compliance.conf found the same way" },
	{ "control_socket", K_PATHOPT, F(control.socket), 0, 0, "/run/tescontrol/gateway.sock",
	  "tescontrol's gateway socket: enforcement state comes from it, sightings go to it; "
	  "empty: no control plane (detection is logged, nothing is enforced)" },
	{ "gateway_id", K_TEXT, F(control.gateway_id), 0, 0, "",
	  "this gateway's name in tescontrol's logs and tesctl status; empty: hostname" },
	{ "policy_file", K_PATHOPT, F(policy_file), 0, 0, "",
	  "enforcement policy used until tescontrol sends its own; empty: the built-in one" },
	{ "metrics_listen", K_LISTENOPT, F(metrics), 0, 0, "127.0.0.1:9465",
	  "Prometheus endpoint (http://ADDRESS:PORT/metrics), loopback by default; empty: off" },
	{ "verdict_log", K_PATHOPT, F(verdicts.path), 0, 0, "",
	  "one JSON line per throttle, block or drop verdict: an absolute path (reopened on "
	  "SIGHUP), stdout, or empty: off" },
	{ "follow_test_clock", K_BOOL, F(control.follow_test_clock), 0, 0, "no",
	  "FOR TESTS ONLY: decide at tescontrol's test clock; refused unless the environment "
	  "has TES_ALLOW_TEST_CLOCK=1" },
	{ "own_hop_skip", K_SKIP, F(exdetect), 0, 0, "",
	  "host patterns ('*' wildcard) of Received hops your own relays add, comma-separated" },
	{ "io", K_IO, F(io_dpdk), 0, 0, "kernel",
	  "kernel (sockets) or dpdk (the userspace TCP stack on a DPDK port: dpdk_args)" },
	{ "dpdk_args", K_TEXT, F(dpdk.args), 0, 0, "",
	  "io = dpdk: EAL arguments, split on spaces; must contain --no-pci (or -a PCI)" },
	{ "dpdk_addr", K_ADDRLIST, F(dpdk.addr), 0, 0, "",
	  "io = dpdk: the stack's addresses with their on-link prefixes, IPv4 and IPv6, "
	  "comma-separated (up to 8): 198.18.5.2/24, 2001:db8:5::2/64 (prefix 24 or 64 when "
	  "omitted)" },
	{ "dpdk_port", K_UINT, F(dpdk.port), 1, 65535, "25",
	  "io = dpdk: TCP port to accept SMTP on" },
	{ "dpdk_impair", K_TEXT, F(dpdk.impair), 0, 0, "",
	  "FOR TESTS ONLY: io = dpdk: lose, reorder, duplicate and corrupt packets on every "
	  "queue, loss=0.05,reorder=0.05,dup=0.01,corrupt=0.001,seed=42; empty: off" },
	{ "log_level", K_LEVEL, F(log_level), 0, 0, "info", "error, warn, info or debug" },
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct key *find_key(const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* Decimal with an optional one-letter unit; false on garbage or overflow. */
static bool parse_scaled(const char *s, const char *units, const uint64_t *mult, uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;
	if (!isdigit((unsigned char)*p))
		return false;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p) {
		const char *u = units ? strchr(units, *p) : NULL;
		if (!u || p[1] != '\0')
			return false;
		uint64_t m = mult[u - units];
		if (v > UINT64_MAX / m)
			return false;
		v *= m;
	}
	*out = v;
	return true;
}

static bool valid_host(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
			return false;
	return true;
}

bool config_parse_listen(const char *s, struct sockaddr_storage *out)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port;
	memset(out, 0, sizeof(*out));
	if (*s == '[') {
		const char *e = strchr(s, ']');
		if (!e || e[1] != ':' || (size_t)(e - s - 1) >= sizeof(host))
			return false;
		memcpy(host, s + 1, (size_t)(e - s - 1));
		host[e - s - 1] = '\0';
		port = e + 2;
	} else {
		const char *e = strrchr(s, ':');
		if (!e || (size_t)(e - s) >= sizeof(host))
			return false;
		memcpy(host, s, (size_t)(e - s));
		host[e - s] = '\0';
		port = e + 1;
	}
	uint64_t p;
	if (!parse_scaled(port, NULL, NULL, &p) || p > 65535)
		return false;
	struct sockaddr_in *sin = (struct sockaddr_in *)out;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
	if (*s != '[' && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		return true;
	}
	if (*s == '[' && inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)p);
		return true;
	}
	return false;
}

static int set_string(char *dst, size_t size, const char *v, char *err, size_t errlen)
{
	if (strlen(v) >= size) {
		snprintf(err, errlen, "too long (at most %zu characters)", size - 1);
		return -1;
	}
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

/* ---- one parser per key type: v into the key's field (k->off in struct
 * tes_config, k->size octets), or false with err set ---- */

typedef int (*parse_fn)(const struct key *k, void *field, const char *v, char *err, size_t errlen);

/* K_UINT, K_SIZE, K_SECS: a number in range, stored as the field's width. */
static int p_number(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	static const uint64_t size_mult[] = { 1024,       1024,       1ull << 20,
					      1ull << 20, 1ull << 30, 1ull << 30 };
	static const uint64_t secs_mult[] = { 1, 60, 3600, 86400 };
	uint64_t n;
	bool ok = k->type == K_UINT   ? parse_scaled(v, NULL, NULL, &n)
		  : k->type == K_SIZE ? parse_scaled(v, "kKmMgG", size_mult, &n)
				      : parse_scaled(v, "smhd", secs_mult, &n);

	if (!ok) {
		snprintf(err, errlen, "'%s' is not a %s", v,
			 k->type == K_UINT   ? "whole number"
			 : k->type == K_SIZE ? "size (a number, optionally K, M or G)"
					     : "duration (seconds, optionally s, m, h or d)");
		return -1;
	}
	if (n < k->min || n > k->max) {
		snprintf(err, errlen, "%llu is out of range %llu..%llu", (unsigned long long)n,
			 (unsigned long long)k->min, (unsigned long long)k->max);
		return -1;
	}
	if (k->size == sizeof(uint64_t))
		*(uint64_t *)field = n;
	else
		*(uint32_t *)field = (uint32_t)n;
	return 0;
}

static int p_host(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	if (!valid_host(v)) {
		snprintf(err, errlen, "'%s' is not a host name (letters, digits, '.', '-')", v);
		return -1;
	}
	return set_string(field, k->size, v, err, errlen);
}

static int p_text(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	for (const char *p = v; *p; p++) {
		if (*p < 0x20 || *p > 0x7e) {
			snprintf(err, errlen, "only printable ASCII is allowed");
			return -1;
		}
	}
	if (strlen(v) > 200) {
		snprintf(err, errlen, "too long (at most 200 characters)");
		return -1;
	}
	return set_string(field, k->size, v, err, errlen);
}

static int p_path(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	if (k->type == K_PATH && !*v) {
		snprintf(err, errlen, "a path is required");
		return -1;
	}
	return set_string(field, k->size, v, err, errlen);
}

static int p_listen(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	(void)k;
	if (!config_parse_listen(v, field)) {
		snprintf(err, errlen, "'%s' is not ADDRESS:PORT (192.0.2.1:25 or [2001:db8::1]:25)",
			 v);
		return -1;
	}
	return 0;
}

/* metrics_listen: the text as given, and parsed. */
static int p_metrics(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	struct metrics_settings *m = field;
	struct sockaddr_storage ss;

	(void)k;
	memset(&ss, 0, sizeof(ss));
	if (*v && !config_parse_listen(v, &ss)) {
		snprintf(err, errlen,
			 "'%s' is not ADDRESS:PORT (127.0.0.1:9465 or [::1]:9465) or empty", v);
		return -1;
	}
	if (set_string(m->listen, sizeof(m->listen), v, err, errlen))
		return -1;
	m->addr = ss;
	return 0;
}

static int p_io(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	(void)k;
	if (strcmp(v, "kernel") != 0 && strcmp(v, "dpdk") != 0) {
		snprintf(err, errlen, "'%s' is not kernel or dpdk", v);
		return -1;
	}
	*(bool *)field = strcmp(v, "dpdk") == 0;
	return 0;
}

/* "198.18.5.2/24, 2001:db8::2/64": at most 8 (the stack's STACK_MAX_ADDRS),
 * each A.B.C.D[/1..32] or an IPv6 unicast address[/1..128]. */
static int p_addrlist(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	char buf[512];
	if (strlen(v) >= sizeof(buf) || strlen(v) >= k->size) {
		snprintf(err, errlen, "address list too long");
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", v);
	unsigned n = 0;
	for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t;
	     t = strtok_r(NULL, ", ", &save)) {
		char *slash = strchr(t, '/');
		if (slash)
			*slash = '\0';
		uint8_t b[16];
		bool v6 = strchr(t, ':') != NULL;
		int plen = slash ? atoi(slash + 1) : v6 ? 64 : 24;
		if (inet_pton(v6 ? AF_INET6 : AF_INET, t, b) != 1 || plen < 1 ||
		    plen > (v6 ? 128 : 32) || (v6 && b[0] == 0xff) || ++n > 8) {
			snprintf(err, errlen,
				 "'%s' is not a list of up to 8 addresses (A.B.C.D/len or "
				 "IPv6/len, comma-separated) or empty",
				 v);
			return -1;
		}
	}
	return set_string(field, k->size, v, err, errlen);
}

static int p_level(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	(void)k;
	if (!log_level_from_name(v, field)) {
		snprintf(err, errlen, "'%s' is not one of error, warn, info, debug", v);
		return -1;
	}
	return 0;
}

static int p_delivery(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "spool") != 0 && strcmp(v, "smtp") != 0 && strcmp(v, "discard") != 0) {
		snprintf(err, errlen, "'%s' is not a delivery backend (spool, smtp, discard)", v);
		return -1;
	}
	return set_string(field, k->size, v, err, errlen);
}

static int p_relayhost(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	struct in6_addr a6;
	if (*v && !valid_host(v) && inet_pton(AF_INET6, v, &a6) != 1) {
		snprintf(err, errlen, "'%s' is not a host name or an IP address", v);
		return -1;
	}
	return set_string(field, k->size, v, err, errlen);
}

static int p_bool(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	(void)k;
	if (strcmp(v, "yes") != 0 && strcmp(v, "no") != 0) {
		snprintf(err, errlen, "'%s' is not yes or no", v);
		return -1;
	}
	*(bool *)field = v[0] == 'y';
	return 0;
}

/* cpus: into the transports' settings (cpus and ncpus). */
static int p_cpus(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	struct gw_io_settings *io = field;
	unsigned cnt = 0;
	const char *p = v;

	(void)k;
	while (*p) {
		char *end;
		if (!isdigit((unsigned char)*p)) {
			snprintf(err, errlen, "'%s' is not a comma-separated list of CPUs", v);
			return -1;
		}
		errno = 0;
		unsigned long cpu = strtoul(p, &end, 10);
		if (errno || cpu >= CPU_SETSIZE) {
			snprintf(err, errlen, "CPU number out of range");
			return -1;
		}
		if (cnt >= GW_MAX_WORKERS) {
			snprintf(err, errlen, "more than %d CPUs", GW_MAX_WORKERS);
			return -1;
		}
		io->cpus[cnt++] = (int)cpu;
		p = end;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == ',') {
			p++;
			while (*p == ' ' || *p == '\t')
				p++;
			if (!*p) {
				snprintf(err, errlen, "trailing comma");
				return -1;
			}
		} else if (*p) {
			snprintf(err, errlen, "'%s' is not a comma-separated list of CPUs", v);
			return -1;
		}
	}
	io->ncpus = cnt;
	return 0;
}

/* own_hop_skip: the whole exdetect_config, replaced. */
static int p_skip(const struct key *k, void *field, const char *v, char *err, size_t errlen)
{
	struct exdetect_config x;
	const char *p = v;

	(void)k;
	memset(&x, 0, sizeof(x));
	while (*p) {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		size_t len = strcspn(p, ", \t");
		if (len == 0)
			break;
		char pat[EXDETECT_HOST_MAX + 1];
		if (len > EXDETECT_HOST_MAX) {
			snprintf(err, errlen, "a pattern is longer than %d characters",
				 EXDETECT_HOST_MAX);
			return -1;
		}
		memcpy(pat, p, len);
		pat[len] = '\0';
		if (!exdetect_add_skip(&x, pat)) {
			snprintf(err, errlen, "more than %d patterns", EXDETECT_MAX_SKIP);
			return -1;
		}
		p += len;
	}
	*(struct exdetect_config *)field = x;
	return 0;
}

static const parse_fn parsers[] = {
	[K_UINT] = p_number,         [K_SIZE] = p_number,
	[K_SECS] = p_number,         [K_HOST] = p_host,
	[K_TEXT] = p_text,           [K_PATH] = p_path,
	[K_PATHOPT] = p_path,        [K_LISTEN] = p_listen,
	[K_LEVEL] = p_level,         [K_CPUS] = p_cpus,
	[K_SKIP] = p_skip,           [K_DELIVERY] = p_delivery,
	[K_RELAYHOST] = p_relayhost, [K_BOOL] = p_bool,
	[K_LISTENOPT] = p_metrics,   [K_IO] = p_io,
	[K_ADDRLIST] = p_addrlist,
};

static int apply(struct tes_config *c, const struct key *k, const char *v, char *err, size_t errlen)
{
	if ((size_t)k->type >= sizeof(parsers) / sizeof(parsers[0]) || !parsers[k->type]) {
		snprintf(err, errlen, "unknown key type");
		return -1;
	}
	return parsers[k->type](k, (char *)c + k->off, v, err, errlen);
}

int config_set(struct tes_config *c, const char *key, const char *value, char *err, size_t errlen)
{
	const struct key *k = find_key(key);
	if (!k) {
		snprintf(err, errlen, "unknown key");
		return -1;
	}
	return apply(c, k, value, err, errlen);
}

void config_defaults(struct tes_config *c)
{
	char err[256];
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].def && apply(c, &keys[i], keys[i].def, err, sizeof(err))) {
			/* A bad default is a bug in the table above, caught by any run. */
			fprintf(stderr, "tesgate: bad default for %s: %s\n", keys[i].name, err);
			abort();
		}
	}
	char host[256] = { 0 };
	/* gethostname need not terminate a name it truncates. */
	if (gethostname(host, sizeof(host) - 1) != 0 || !valid_host(host))
		snprintf(host, sizeof(host), "localhost");
	snprintf(c->hostname, sizeof(c->hostname), "%s", host);
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n > 0 &&
	       (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
		s[--n] = '\0';
	return s;
}

int config_load(struct tes_config *c, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	unsigned seen[NKEYS] = { 0 }; /* line each key was set on */
	char line[4096];
	unsigned lineno = 0;
	bool ok = true;
	while (ok && fgets(line, sizeof(line), f)) {
		lineno++;
		size_t n = strlen(line);
		if (n == sizeof(line) - 1 && line[n - 1] != '\n' && !feof(f)) {
			snprintf(err, errlen, "%s:%u: line longer than %zu characters", path,
				 lineno, sizeof(line) - 2);
			ok = false;
			break;
		}
		char *s = trim(line);
		if (*s == '\0' || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%u: expected 'key = value'", path, lineno);
			ok = false;
			break;
		}
		*eq = '\0';
		char *key = trim(s);
		char *val = trim(eq + 1);
		size_t vl = strlen(val);
		if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
			val[vl - 1] = '\0';
			val++;
		}
		const struct key *k = find_key(key);
		if (!k) {
			snprintf(err, errlen, "%s:%u: %s: unknown key", path, lineno, key);
			ok = false;
			break;
		}
		size_t ki = (size_t)(k - keys);
		if (seen[ki]) {
			snprintf(err, errlen, "%s:%u: %s: already set on line %u", path, lineno,
				 key, seen[ki]);
			ok = false;
			break;
		}
		seen[ki] = lineno;
		char why[256];
		if (apply(c, k, val, why, sizeof(why))) {
			snprintf(err, errlen, "%s:%u: %s: %s", path, lineno, key, why);
			ok = false;
		}
	}
	if (ok && ferror(f)) {
		snprintf(err, errlen, "%s: read error", path);
		ok = false;
	}
	fclose(f);
	return ok ? 0 : -1;
}

int config_check(const struct tes_config *c, char *err, size_t errlen)
{
	if (c->io.ncpus && c->io.ncpus != c->io.workers) {
		snprintf(err, errlen, "cpus lists %u CPUs for %u workers", c->io.ncpus,
			 c->io.workers);
		return -1;
	}
	if (c->io_dpdk && (!c->dpdk.addr[0] || !c->dpdk.args[0])) {
		snprintf(err, errlen, "io = dpdk needs dpdk_addr and dpdk_args");
		return -1;
	}
	if (c->io.max_connections_per_source > c->io.max_connections) {
		snprintf(err, errlen,
			 "max_connections_per_source (%u) exceeds max_connections (%u)",
			 c->io.max_connections_per_source, c->io.max_connections);
		return -1;
	}
	if (c->smtp.limits.max_header_bytes > c->smtp.limits.max_message_size) {
		snprintf(err, errlen, "max_header_bytes exceeds max_message_size");
		return -1;
	}
	if (strcmp(c->delivery.backend, "smtp") == 0 &&
	    !c->delivery.relay.host[0] == !c->delivery.relay.socket[0]) {
		snprintf(err, errlen,
			 "delivery = smtp needs relay_host or relay_socket (one of them)");
		return -1;
	}
	/* A verdict must reach the client before its idle timeout closes it. */
	if (strcmp(c->delivery.backend, "smtp") == 0 &&
	    (c->delivery.relay.command_timeout >= c->io.idle_timeout ||
	     c->delivery.relay.data_timeout >= c->io.idle_timeout)) {
		snprintf(err, errlen,
			 "relay_command_timeout and relay_data_timeout must be below "
			 "idle_timeout");
		return -1;
	}
	const char *vl = c->verdicts.path;
	if (vl[0] && vl[0] != '/' && strcmp(vl, "stdout") != 0 && strcmp(vl, "-") != 0) {
		snprintf(err, errlen, "verdict_log must be an absolute path, stdout or empty");
		return -1;
	}
	if (c->control.follow_test_clock) {
		const char *allow = getenv("TES_ALLOW_TEST_CLOCK");
		if (!allow || strcmp(allow, "1") != 0) {
			snprintf(err, errlen,
				 "follow_test_clock is for tests only and needs "
				 "TES_ALLOW_TEST_CLOCK=1 in the environment");
			return -1;
		}
	}
	if (!c->tls.cert[0] != !c->tls.key[0]) {
		snprintf(err, errlen,
			 "%s is empty while %s is set: set both for STARTTLS, or neither",
			 c->tls.cert[0] ? "tls_key" : "tls_cert",
			 c->tls.cert[0] ? "tls_cert" : "tls_key");
		return -1;
	}
	if (!c->tls.rsa_cert[0] != !c->tls.rsa_key[0] || (c->tls.rsa_cert[0] && !c->tls.cert[0])) {
		snprintf(err, errlen,
			 "tls_cert_rsa and tls_key_rsa go together, and beside tls_cert and "
			 "tls_key");
		return -1;
	}
	if (c->tls.client_ca[0] && !c->tls.cert[0]) {
		snprintf(err, errlen,
			 "tls_client_ca is set without tls_cert and tls_key: client "
			 "certificates come with STARTTLS");
		return -1;
	}
	if (strcmp(c->delivery.backend, "discard") == 0 &&
	    !c->delivery.i_understand_discard_loses_mail) {
		snprintf(err, errlen,
			 "delivery = discard throws every message away (benchmarks "
			 "only); it also needs i_understand_discard_loses_mail = yes");
		return -1;
	}
	return 0;
}

static bool readable(const char *p)
{
	return access(p, R_OK) == 0;
}

bool config_catalog_paths(const struct tes_config *c, char *builds, char *policy, size_t len)
{
	if (c->catalog_builds[0] || c->catalog_policy[0]) {
		snprintf(builds, len, "%s", c->catalog_builds);
		snprintf(policy, len, "%s", c->catalog_policy);
		if (!c->catalog_builds[0] || !c->catalog_policy[0])
			return false; /* one without the other is a mistake, said by caller */
		return true;
	}
	static const char *const dirs[] = { TES_DATADIR,
#ifdef TES_SRCDIR
					    TES_SRCDIR "/data",
#endif
					    "data" };
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(builds, len, "%s/exchange-builds.csv", dirs[i]);
		snprintf(policy, len, "%s/compliance.conf", dirs[i]);
		if (readable(builds) && readable(policy))
			return true;
	}
	builds[0] = policy[0] = '\0';
	return false;
}

void config_print_keys(void)
{
	for (size_t i = 0; i < NKEYS; i++)
		printf("# %s\n%s = %s\n\n", keys[i].help, keys[i].name,
		       keys[i].def ? keys[i].def : "(host name)");
}
