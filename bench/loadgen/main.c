/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tes-loadgen: an SMTP load generator on the project's userspace TCP/IP
 * stack over one DPDK port, for benchmarking tesgate's DPDK path without the
 * kernel's TCP on the client side.  One lcore, one port, one queue.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>

#include "bench/loadgen/loadgen.h"
#include "dataplane/dpdk/port.h"
#include "dataplane/dpdk/worker.h"

#define EXIT_FAILED 1 /* some transaction or connection failed */
#define EXIT_USAGE 2
#define EXIT_SETUP 3 /* EAL, port, link or stack could not be set up */
#define EAL_MAX_ARGS 64
#define LINK_WAIT_S 10

static const char usage_text[] =
	"usage: tes-loadgen --server A.B.C.D[:PORT] --addr A.B.C.D/LEN --eal \"EAL ARGS\" "
	"[options]\n"
	"       (or over IPv6: --server [X::Y]:PORT --addr X::Y/LEN)\n"
	"\n"
	"SMTP load on tesgate (or any SMTP server) from the project's userspace TCP/IP stack\n"
	"on one DPDK port (the first port the EAL arguments create), on one lcore.\n"
	"\n"
	"Required:\n"
	"  --server A.B.C.D[:PORT]  the SMTP server (port 25 unless given)\n"
	"  --addr A.B.C.D/LEN       this generator's address on the port, and the on-link\n"
	"                           prefix (the server must be on-link: no gateway)\n"
	"  --eal \"ARGS\"             EAL arguments, split at spaces (no quoting); must contain\n"
	"                           --no-pci; --in-memory is added without --file-prefix.\n"
	"                           Example: \"--no-pci -l 1 --vdev=net_memif0,role=client,\n"
	"                           socket=/tmp/x/memif.sock,socket-abstract=no\"\n"
	"Load:\n"
	"  --sessions N             concurrent SMTP sessions (default 10, at most 4096)\n"
	"  --messages-per-conn N    transactions per connection before QUIT (default 1)\n"
	"  --size N[k|M]            message size in bytes as stored, headers included\n"
	"                           (k = 1024, M = 1048576; default 2k, at most 64M: the\n"
	"                           message is held in memory, dot-stuffed, once)\n"
	"  --count N                total transactions, then stop (default 1000)\n"
	"  --duration S             or: start transactions for S seconds, then stop\n"
	"  --rate R                 open loop: start R transactions/s in total (a session\n"
	"                           that is ready waits for the schedule; starts due while\n"
	"                           every session is busy are dropped and reported as\n"
	"                           'missed').  Default: closed loop, each session starts\n"
	"                           its next transaction as soon as the last one ended\n"
	"  --tls-resume             --starttls, resuming each connection with the newest\n"
	"                           session ticket the server sent (the first is full)\n"
	"  --starttls               STARTTLS after EHLO, then EHLO again (OpenSSL, TLS 1.2+,\n"
	"                           no certificate verification, no session resumption)\n"
	"Flood (alongside the sessions, same port and lcore):\n"
	"  --flood-rate R           also send R spoofed SYNs/s to the server's port, from\n"
	"                           --flood-src, starting once the server's MAC is known;\n"
	"                           the server's answers go to addresses that are not ours\n"
	"                           and are dropped.  Counted in the summary (\"flood\")\n"
	"  --flood-src A.B.C.D/LEN  the spoofed sources, walked in a scattered order, every\n"
	"                           address once per pass (default 198.19.0.0/16); must hold\n"
	"                           neither --addr nor --server\n"
	"Message:\n"
	"  --mail-from ADDR         envelope sender and From: (default loadgen@example.org)\n"
	"  --rcpt ADDR              envelope recipient and To: (default sink@example.net)\n"
	"  --helo NAME              EHLO name (default loadgen.example)\n"
	"  --header-file FILE       put the Received: fields of FILE (with continuation lines)\n"
	"                           at the top of every message, e.g. an Exchange header from\n"
	"                           tests/data/headers/\n"
	"  --print-message          print message 0 as the server should store it, then exit\n"
	"                           (messages differ only in the 12 digits of Message-ID:\n"
	"                           <lgNNNNNNNNNNNN@loadgen.invalid>, the transaction number)\n"
	"Outcome:\n"
	"  --timeout S              a session that waits longer than S seconds for a reply\n"
	"                           (or a connect) is reset and counted (default 30); also the\n"
	"                           grace period for open sessions at the end of the run\n"
	"  --allow-code C[,C...]    replies with these codes end the transaction without\n"
	"                           counting as a failure (e.g. 550 when testing rejects)\n"
	"  --json                   the summary as one line of JSON, the last line on stdout\n"
	"                           (the text summary goes to stderr then)\n"
	"  --quiet                  no progress line (one a second on stderr otherwise)\n"
	"  --trace                  print session 0's SMTP dialogue on stderr (not the data)\n"
	"  --server-pid PID         the server is local process PID: report its CPU seconds\n"
	"                           (utime + stime, all threads, from /proc) over the same\n"
	"                           window as the transaction rate, and transactions per\n"
	"                           server CPU second\n"
	"\n"
	"Latency is from MAIL FROM sent to the 250 after the data, over successful\n"
	"transactions, from a log-linear histogram (about 3 % resolution).\n"
	"\n"
	"Exit status: 0 when every transaction got 250 (or an --allow-code reply) and no\n"
	"connection failed; 1 when any transaction failed (an unexpected reply to MAIL, RCPT,\n"
	"DATA or the data, a 421, a reset, timeout or close in the middle), any connect failed\n"
	"(refused, timed out, no local port), any session broke (unexpected greeting, EHLO,\n"
	"RSET or QUIT reply, a reply that is not SMTP, a TLS error), STARTTLS was asked for\n"
	"and not offered, nothing progressed for twice --timeout (the run gives up), or\n"
	"fewer than --count transactions could be started, or none succeeded (e.g. a\n"
	"--duration too short for the first connection); 2 on a usage error; 3 when the\n"
	"EAL, the port, the link (within 10 s) or the stack could not be set up.\n"
	"SIGINT/SIGTERM stop starting transactions and end the run (the exit status then\n"
	"follows the same rules).\n"
	"\n"
	"IPv6: --server and --addr both IPv6 (the generator's address is used at once:\n"
	"no duplicate address detection); --flood-rate is IPv4 only.\n"
	"Not supported: pipelining, more than one lcore or queue, a next-hop gateway.\n";

static atomic_bool sig_stop, loop_stop;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&sig_stop, true);
}

static int parse_size(const char *s, size_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	unsigned long long mult = 1;
	if (*end == 'k' || *end == 'K')
		mult = 1024, end++;
	else if (*end == 'M' || *end == 'm')
		mult = 1024 * 1024, end++;
	if (*end != '\0' || v == 0 || v > LG_SIZE_MAX / mult)
		return -1;
	*out = (size_t)(v * mult);
	return 0;
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	if (*s == '-')
		return -1;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end != '\0' || v == 0 || v > max)
		return -1;
	*out = v;
	return 0;
}

static int parse_pos_double(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !(v > 0) || !isfinite(v) || v > 1e9)
		return -1;
	*out = v;
	return 0;
}

static int parse_ipv4(const char *s, uint32_t *a)
{
	struct in_addr ia;
	if (inet_pton(AF_INET, s, &ia) != 1)
		return -1;
	*a = ntohl(ia.s_addr);
	return 0;
}

static int parse_server(const char *s, uint32_t *a, uint16_t *port)
{
	char buf[64];
	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	*port = 25;
	char *colon = strchr(buf, ':');
	if (colon) {
		unsigned long long p;
		*colon = '\0';
		if (parse_uint(colon + 1, 65535, &p) != 0)
			return -1;
		*port = (uint16_t)p;
	}
	return parse_ipv4(buf, a);
}

static int parse_prefix(const char *s, uint32_t *a, uint8_t *plen)
{
	char buf[64];
	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	char *slash = strchr(buf, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	unsigned long long n;
	if (parse_uint(slash + 1, 32, &n) != 0)
		return -1;
	*plen = (uint8_t)n;
	return parse_ipv4(buf, a);
}

static int parse_codes(const char *s, bool *allow)
{
	char buf[256];
	if (strlen(s) >= sizeof(buf))
		return -1;
	strcpy(buf, s);
	for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		unsigned long long c;
		if (parse_uint(t, 599, &c) != 0 || c < 200)
			return -1;
		allow[c] = true;
	}
	return 0;
}

/* Addresses go into commands and headers verbatim: printable, no <>, no
 * spaces, bounded. */
static bool addr_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= LG_ADDR_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] >= 127 || s[i] == '<' || s[i] == '>')
			return false;
	return true;
}

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "tes-loadgen: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(tes-loadgen --help for the options)\n");
	return EXIT_USAGE;
}

/* utime + stime of a process in seconds; -1 when it cannot be read. */
static double proc_cpu(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields count
	 * from the last ')'. */
	char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

#define LINGER_NS 300000000ull

struct run {
	struct lg lg;
	struct dp_worker w;
	struct lg_flood flood;
	bool started;
	uint64_t t_stop;      /* when stopping began */
	uint64_t t_end;       /* when the run ended */
	uint64_t next_report; /* progress */
	uint64_t last_ok, last_rx, last_tx, last_t;
	uint64_t progress_mark, t_progress; /* watchdog */
	double cpu0, cpu1;                  /* --server-pid: its CPU seconds at start and end */
};

static void progress(struct run *r)
{
	struct lg *lg = &r->lg;
	double dt = (double)(lg->now - r->last_t) / 1e9;
	if (dt <= 0)
		return;
	uint64_t errs = 0;
	for (unsigned i = 0; i < LG_E_NKINDS; i++)
		errs += lg->s.errs[i];
	fprintf(stderr,
		"[%6.1fs] ok %" PRIu64 " (%.0f/s) failed %" PRIu64 " conns %" PRIu64
		" failed %" PRIu64 " live %u errors %" PRIu64 " pkts in %.0f/s out %.0f/s\n",
		(double)(lg->now - lg->t_start) / 1e9, lg->s.txn_ok,
		(double)(lg->s.txn_ok - r->last_ok) / dt, lg->s.txn_failed, lg->s.conn_opened,
		lg->s.conn_failed, lg->live, errs, (double)(r->w.stats.rx_pkts - r->last_rx) / dt,
		(double)(r->w.stats.tx_pkts - r->last_tx) / dt);
	r->last_ok = lg->s.txn_ok;
	r->last_rx = r->w.stats.rx_pkts;
	r->last_tx = r->w.stats.tx_pkts;
	r->last_t = lg->now;
}

static void on_poll(void *arg, uint64_t now)
{
	struct run *r = arg;
	struct lg *lg = &r->lg;
	lg->now = now;
	if (!r->started) {
		r->started = true;
		lg->t_start = now;
		lg->t_credit = now;
		r->last_t = now;
		r->t_progress = now;
		if (lg->o.server_pid)
			r->cpu0 = proc_cpu(lg->o.server_pid);
		r->next_report = now + 1000000000ull;
		lg_sessions_start(lg);
	}
	/* Watchdog: a dead peer or link would otherwise have the sessions
	 * reconnect for ever in --count mode. */
	uint64_t progress_mark = lg->s.txn_ok + lg->s.txn_failed + lg->s.txn_allowed +
				 lg->s.conn_opened + lg->s.conn_closed;
	if (progress_mark != r->progress_mark) {
		r->progress_mark = progress_mark;
		r->t_progress = now;
	} else if (!lg->stopping && now - r->t_progress >= (uint64_t)(2 * lg->o.timeout * 1e9)) {
		lg->fatal = true;
		lg->fatal_why = "no progress for twice --timeout (no reply, no new connection)";
	}
	if (!lg->stopping) {
		bool by_count = lg->o.count && lg->s.txn_started >= lg->o.count;
		bool by_time =
			lg->o.duration > 0 && now - lg->t_start >= (uint64_t)(lg->o.duration * 1e9);
		if (by_count || by_time || lg->fatal || atomic_load(&sig_stop)) {
			lg->stopping = true;
			r->t_stop = now;
		}
	}
	lg_sessions_poll(lg);
	if (!lg->stopping)
		lg_flood_poll(&r->flood, lg->st, &r->w, now);
	if (lg->stopping && lg->live && now - r->t_stop >= (uint64_t)(lg->o.timeout * 1e9))
		lg_sessions_abort_all(lg);
	if (!lg->o.quiet && now >= r->next_report) {
		progress(r);
		r->next_report += 1000000000ull;
	}
	if (lg->stopping && lg->live == 0 && !r->t_end) {
		r->t_end = now;
		if (lg->o.server_pid)
			r->cpu1 = proc_cpu(lg->o.server_pid);
	}
	/* The port stays up a little after the last session, so the last
	 * FINs and ACKs are through before the link goes: DPDK 22.11's memif
	 * unmaps its rings on disconnect while the peer's poll loop may be
	 * reading them (a gateway busy in its burst then faults), and a
	 * quiet peer is in its burst for far less time. */
	if (r->t_end && now - r->t_end >= LINGER_NS)
		atomic_store(&loop_stop, true);
}

static void codes_text(const struct lg_stats *s, char *buf, size_t len, bool json)
{
	size_t o = 0;
	buf[0] = '\0';
	bool first = true;
	for (unsigned c = 0; c < 600; c++) {
		if (!s->codes[c])
			continue;
		o += (size_t)snprintf(buf + o, len - o,
				      json ? "%s\"%u\": %" PRIu64 : "%s%u: %" PRIu64,
				      first ? "" : ", ", c, s->codes[c]);
		first = false;
		if (o >= len)
			return;
	}
	for (unsigned e = 0; e < LG_E_NKINDS; e++) {
		if (!s->errs[e])
			continue;
		o += (size_t)snprintf(buf + o, len - o,
				      json ? "%s\"%s\": %" PRIu64 : "%s%s: %" PRIu64,
				      first ? "" : ", ", lg_err_name(e), s->errs[e]);
		first = false;
		if (o >= len)
			return;
	}
}

static bool run_failed(const struct lg *lg)
{
	const struct lg_stats *s = &lg->s;
	uint64_t errs = 0;
	for (unsigned i = 0; i < LG_E_NKINDS; i++)
		errs += s->errs[i];
	uint64_t bad_codes = 0;
	for (unsigned c = 0; c < 600; c++)
		if (!lg->o.allow[c])
			bad_codes += s->codes[c];
	bool short_count = lg->o.count && s->txn_started < lg->o.count;
	bool none = s->txn_ok + s->txn_allowed == 0;
	return s->txn_failed || s->conn_failed || s->conn_dropped || errs || bad_codes ||
	       lg->fatal || short_count || none;
}

static void summary(struct run *r, FILE *text, FILE *json)
{
	struct lg *lg = &r->lg;
	const struct lg_stats *s = &lg->s;
	double secs = (double)(r->t_end - lg->t_start) / 1e9;
	if (secs <= 0)
		secs = 1e-9;
	char codes[2048];
	codes_text(s, codes, sizeof(codes), false);
	uint64_t p50 = lg_hist_quantile(&s->lat, 0.50), p99 = lg_hist_quantile(&s->lat, 0.99);
	double tps = (double)s->txn_ok / secs;
	fprintf(text,
		"tes-loadgen summary: %u sessions, %u messages/conn, %zu bytes, %s\n"
		"  elapsed        %.3f s\n"
		"  transactions   ok %" PRIu64 ", failed %" PRIu64 ", allowed rejects %" PRIu64
		", started %" PRIu64 "\n"
		"  rate           %.1f transactions/s (%.1f MB/s of messages)\n"
		"  latency        p50 %" PRIu64 " us, p99 %" PRIu64 " us, max %" PRIu64
		" us (MAIL FROM to 250 after DATA)\n"
		"  connections    opened %" PRIu64 ", closed %" PRIu64 ", failed %" PRIu64
		", dropped %" PRIu64 ", TLS handshakes %" PRIu64 " (resumed %" PRIu64 ")\n"
		"  packets        in %" PRIu64 " (%.0f/s), out %" PRIu64
		" (%.0f/s), tx drops %" PRIu64 "\n"
		"  errors         %s\n",
		lg->o.sessions, lg->o.mpc, lg->o.size, lg->o.starttls ? "STARTTLS" : "plain", secs,
		s->txn_ok, s->txn_failed, s->txn_allowed, s->txn_started, tps,
		(double)s->msg_bytes / secs / 1e6, p50, p99, s->lat.max, s->conn_opened,
		s->conn_closed, s->conn_failed, s->conn_dropped, s->tls_handshakes, s->tls_resumed,
		r->w.stats.rx_pkts, (double)r->w.stats.rx_pkts / secs, r->w.stats.tx_pkts,
		(double)r->w.stats.tx_pkts / secs, r->w.stats.tx_drops, codes[0] ? codes : "none");
	double scpu = -1;
	if (lg->o.server_pid && r->cpu0 >= 0 && r->cpu1 >= r->cpu0)
		scpu = r->cpu1 - r->cpu0;
	if (lg->o.server_pid && scpu < 0)
		fprintf(text, "  server cpu     pid %d: could not be read\n", lg->o.server_pid);
	else if (lg->o.server_pid)
		fprintf(text, "  server cpu     pid %d: %.2f s, %.1f transactions per CPU second\n",
			lg->o.server_pid, scpu, scpu > 0 ? (double)s->txn_ok / scpu : 0.0);
	if (lg->o.rate > 0)
		fprintf(text,
			"  open loop      target %.1f/s, starts missed (every session busy) "
			"%" PRIu64 "\n",
			lg->o.rate, s->rate_missed);
	const struct stack_stats *ss = stack_stats(lg->st);
	fprintf(text,
		"  client tcp     retransmits %" PRIu64 " (SYN %" PRIu64 ", timeouts %" PRIu64
		"), no mbuf %" PRIu64 ", resets in %" PRIu64 ", ARP ignored %" PRIu64 "\n",
		ss->retransmits, ss->syn_retransmits, ss->rto_expired, ss->tx_nobuf, ss->rst_rx,
		ss->arp_ignored);
	const struct lg_flood *fl = &r->flood;
	double fsecs = fl->started && r->t_end > fl->t0 ? (double)(r->t_end - fl->t0) / 1e9 : 0;
	if (fl->rate > 0)
		fprintf(text,
			"  flood          target %.0f SYN/s: sent %" PRIu64
			" (%.0f/s) from %" PRIu64 " addresses, no mbuf %" PRIu64 ", behind %" PRIu64
			", answers dropped %" PRIu64 "\n",
			fl->rate, fl->sent, fsecs > 0 ? (double)fl->sent / fsecs : 0.0,
			lg_flood_sources(fl), fl->nobuf, fl->behind, ss->ip_not_ours);
	if (lg->fatal)
		fprintf(text, "  gave up: %s\n", lg->fatal_why ? lg->fatal_why : "?");
	if (!json)
		return;
	codes_text(s, codes, sizeof(codes), true);
	fprintf(json,
		"{\"sessions\": %u, \"messages_per_conn\": %u, \"size\": %zu, \"starttls\": %s, "
		"\"rate_target\": %.1f, \"elapsed_s\": %.6f, "
		"\"transactions\": {\"ok\": %" PRIu64 ", \"failed\": %" PRIu64
		", \"allowed\": %" PRIu64 ", \"started\": %" PRIu64 ", \"per_s\": %.3f}, "
		"\"latency_us\": {\"p50\": %" PRIu64 ", \"p99\": %" PRIu64 ", \"max\": %" PRIu64
		", \"mean\": %.1f}, "
		"\"connections\": {\"opened\": %" PRIu64 ", \"closed\": %" PRIu64
		", \"failed\": %" PRIu64 ", \"dropped\": %" PRIu64 ", \"tls_handshakes\": %" PRIu64
		", \"tls_resumed\": %" PRIu64 ", \"tls_tickets\": %" PRIu64 "}, "
		"\"packets\": {\"in\": %" PRIu64 ", \"out\": %" PRIu64 ", \"in_per_s\": %.1f, "
		"\"out_per_s\": %.1f, \"tx_drops\": %" PRIu64 "}, "
		"\"message_bytes\": %" PRIu64 ", \"rate_missed\": %" PRIu64 ", \"errors\": {%s}, "
		"\"client_tcp\": {\"retransmits\": %" PRIu64 ", \"syn_retransmits\": %" PRIu64
		", \"rto_expired\": %" PRIu64 ", \"tx_nobuf\": %" PRIu64 ", \"rst_rx\": %" PRIu64
		", \"arp_ignored\": %" PRIu64 "}, "
		"\"flood\": {\"rate_target\": %.1f, \"sent\": %" PRIu64 ", \"per_s\": %.1f, "
		"\"sources\": %" PRIu64 ", \"nobuf\": %" PRIu64 ", \"behind\": %" PRIu64 "}, "
		"\"server_cpu_s\": %.3f, \"gave_up\": %s, \"failed\": %s}\n",
		lg->o.sessions, lg->o.mpc, lg->o.size, lg->o.starttls ? "true" : "false",
		lg->o.rate, secs, s->txn_ok, s->txn_failed, s->txn_allowed, s->txn_started, tps,
		p50, p99, s->lat.max, s->lat.n ? (double)s->lat.sum / (double)s->lat.n : 0.0,
		s->conn_opened, s->conn_closed, s->conn_failed, s->conn_dropped, s->tls_handshakes,
		s->tls_resumed, s->tls_tickets, r->w.stats.rx_pkts, r->w.stats.tx_pkts,
		(double)r->w.stats.rx_pkts / secs, (double)r->w.stats.tx_pkts / secs,
		r->w.stats.tx_drops, s->msg_bytes, s->rate_missed, codes, ss->retransmits,
		ss->syn_retransmits, ss->rto_expired, ss->tx_nobuf, ss->rst_rx, ss->arp_ignored,
		fl->rate, fl->sent, fsecs > 0 ? (double)fl->sent / fsecs : 0.0,
		lg_flood_sources(fl), fl->nobuf, fl->behind, scpu, lg->fatal ? "true" : "false",
		run_failed(lg) ? "true" : "false");
}

static int wait_link(uint16_t port)
{
	for (unsigned i = 0; i < LINK_WAIT_S * 100; i++) {
		struct rte_eth_link link;
		if (rte_eth_link_get_nowait(port, &link) == 0 && link.link_status)
			return 0;
		rte_delay_ms(10);
		if (atomic_load(&sig_stop))
			break;
	}
	return -1;
}

int main(int argc, char **argv)
{
	static struct run r; /* large (the histogram): not on the stack */
	struct lg *lg = &r.lg;
	struct lg_opts *o = &lg->o;
	const char *eal = NULL;
	bool have_server = false, have_addr = false, print_msg = false, have_count = false;
	bool server6 = false;
	o->sessions = 10;
	o->mpc = 1;
	o->size = 2048;
	o->count = 1000;
	o->timeout = 30;
	o->mail_from = "loadgen@example.org";
	o->rcpt = "sink@example.net";
	o->helo = "loadgen.example";

	enum {
		O_SERVER = 256,
		O_ADDR,
		O_EAL,
		O_SESSIONS,
		O_MPC,
		O_SIZE,
		O_COUNT,
		O_DURATION,
		O_RATE,
		O_STARTTLS,
		O_TLS_RESUME,
		O_FROM,
		O_RCPT,
		O_HELO,
		O_HDR,
		O_PRINT,
		O_TIMEOUT,
		O_ALLOW,
		O_JSON,
		O_QUIET,
		O_TRACE,
		O_SPID,
		O_FLOOD_RATE,
		O_FLOOD_SRC,
		O_HELP,
	};
	static const struct option opts[] = {
		{ "server", required_argument, NULL, O_SERVER },
		{ "addr", required_argument, NULL, O_ADDR },
		{ "eal", required_argument, NULL, O_EAL },
		{ "sessions", required_argument, NULL, O_SESSIONS },
		{ "messages-per-conn", required_argument, NULL, O_MPC },
		{ "size", required_argument, NULL, O_SIZE },
		{ "count", required_argument, NULL, O_COUNT },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "rate", required_argument, NULL, O_RATE },
		{ "starttls", no_argument, NULL, O_STARTTLS },
		{ "tls-resume", no_argument, NULL, O_TLS_RESUME },
		{ "mail-from", required_argument, NULL, O_FROM },
		{ "rcpt", required_argument, NULL, O_RCPT },
		{ "helo", required_argument, NULL, O_HELO },
		{ "header-file", required_argument, NULL, O_HDR },
		{ "print-message", no_argument, NULL, O_PRINT },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "allow-code", required_argument, NULL, O_ALLOW },
		{ "json", no_argument, NULL, O_JSON },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "trace", no_argument, NULL, O_TRACE },
		{ "server-pid", required_argument, NULL, O_SPID },
		{ "flood-rate", required_argument, NULL, O_FLOOD_RATE },
		{ "flood-src", required_argument, NULL, O_FLOOD_SRC },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int oc;
	unsigned long long u;
	opterr = 0;
	while ((oc = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (oc) {
		case O_SERVER:
			if (parse_server(optarg, &o->server, &o->server_port) == 0)
				server6 = false;
			else if (lg_parse_server6(optarg, o->server6, &o->server_port) == 0)
				server6 = true;
			else
				return usage_error("--server '%s' is not A.B.C.D[:PORT] or "
						   "[X::Y]:PORT",
						   optarg);
			have_server = true;
			break;
		case O_ADDR:
			if (parse_prefix(optarg, &o->addr, &o->plen) == 0)
				o->v6 = false;
			else if (lg_parse_prefix6(optarg, o->addr6, &o->plen) == 0)
				o->v6 = true;
			else
				return usage_error("--addr '%s' is not A.B.C.D/LEN or X::Y/LEN",
						   optarg);
			have_addr = true;
			break;
		case O_EAL:
			eal = optarg;
			break;
		case O_SESSIONS:
			if (parse_uint(optarg, LG_MAX_SESSIONS, &u) != 0)
				return usage_error("--sessions '%s' is not 1..4096", optarg);
			o->sessions = (unsigned)u;
			break;
		case O_MPC:
			if (parse_uint(optarg, 1000000, &u) != 0)
				return usage_error("--messages-per-conn '%s' is not 1..1000000",
						   optarg);
			o->mpc = (unsigned)u;
			break;
		case O_SIZE:
			if (parse_size(optarg, &o->size) != 0)
				return usage_error("--size '%s' is not N, Nk or NM (up to 64M)",
						   optarg);
			break;
		case O_COUNT:
			if (parse_uint(optarg, UINT64_MAX / 2, &u) != 0)
				return usage_error("--count '%s' is not a positive integer",
						   optarg);
			o->count = u;
			have_count = true;
			break;
		case O_DURATION:
			if (parse_pos_double(optarg, &o->duration) != 0)
				return usage_error(
					"--duration '%s' is not a positive number of seconds",
					optarg);
			break;
		case O_RATE:
			if (parse_pos_double(optarg, &o->rate) != 0)
				return usage_error("--rate '%s' is not a positive number", optarg);
			break;
		case O_STARTTLS:
			o->starttls = true;
			break;
		case O_TLS_RESUME:
			o->starttls = true;
			o->tls_resume = true;
			break;
		case O_FROM:
			if (!addr_ok(optarg))
				return usage_error("--mail-from '%s': printable, no spaces or <>",
						   optarg);
			o->mail_from = optarg;
			break;
		case O_RCPT:
			if (!addr_ok(optarg))
				return usage_error("--rcpt '%s': printable, no spaces or <>",
						   optarg);
			o->rcpt = optarg;
			break;
		case O_HELO:
			if (!addr_ok(optarg))
				return usage_error("--helo '%s': printable, no spaces or <>",
						   optarg);
			o->helo = optarg;
			break;
		case O_HDR:
			o->header_file = optarg;
			break;
		case O_PRINT:
			print_msg = true;
			break;
		case O_TIMEOUT:
			if (parse_pos_double(optarg, &o->timeout) != 0)
				return usage_error(
					"--timeout '%s' is not a positive number of seconds",
					optarg);
			break;
		case O_ALLOW:
			if (parse_codes(optarg, o->allow) != 0)
				return usage_error(
					"--allow-code '%s' is not a list of codes 200..599",
					optarg);
			break;
		case O_JSON:
			o->json = true;
			break;
		case O_QUIET:
			o->quiet = true;
			break;
		case O_SPID:
			if (parse_uint(optarg, 1u << 30, &u) != 0)
				return usage_error("--server-pid '%s' is not a process id", optarg);
			o->server_pid = (int)u;
			break;
		case O_TRACE:
			o->trace = true;
			break;
		case O_FLOOD_RATE:
			if (parse_pos_double(optarg, &o->flood_rate) != 0 || o->flood_rate > 1e7)
				return usage_error(
					"--flood-rate '%s' is not a positive number up to "
					"10000000",
					optarg);
			break;
		case O_FLOOD_SRC:
			if (parse_prefix(optarg, &o->flood_src, &o->flood_plen) != 0 ||
			    o->flood_plen < 8)
				return usage_error(
					"--flood-src '%s' is not A.B.C.D/LEN (LEN 8..32)", optarg);
			break;
		case O_HELP:
			fputs(usage_text, stdout);
			return 0;
		default:
			if (optopt)
				fprintf(stderr,
					"tes-loadgen: option -%c: unknown or missing its value\n",
					optopt);
			else
				fprintf(stderr,
					"tes-loadgen: '%s': unknown option or missing value\n",
					argv[optind - 1]);
			fprintf(stderr, "(tes-loadgen --help for the options)\n");
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (o->duration > 0 && have_count)
		return usage_error("%s", "give --count or --duration, not both");
	if (o->duration > 0)
		o->count = 0;

	char err[512];
	if (lg_msg_build(&lg->msg, o->header_file, o->mail_from, o->rcpt, o->size, err,
			 sizeof(err)) != 0) {
		fprintf(stderr, "tes-loadgen: %s\n", err);
		return EXIT_USAGE;
	}
	if (print_msg) {
		fwrite(lg->msg.plain, 1, lg->msg.plain_len, stdout);
		lg_msg_free(&lg->msg);
		return 0;
	}
	if (!have_server || !have_addr || !eal) {
		lg_msg_free(&lg->msg);
		return usage_error("%s", "--server, --addr and --eal are required");
	}
	if (server6 != o->v6) {
		lg_msg_free(&lg->msg);
		return usage_error("%s", "--server and --addr must be of one family");
	}
	if (o->v6 && o->flood_rate > 0) {
		lg_msg_free(&lg->msg);
		return usage_error("%s", "--flood-rate is IPv4 only");
	}
	if (o->v6 && (!lg_same_prefix6(o->addr6, o->server6, o->plen) ||
		      memcmp(o->addr6, o->server6, 16) == 0)) {
		lg_msg_free(&lg->msg);
		return usage_error("%s", "--server must be on the --addr prefix (and not --addr)");
	}
	uint32_t mask = o->plen >= 32 ? 0xffffffffu : ~(0xffffffffu >> o->plen);
	if (!o->v6 && ((o->addr & mask) != (o->server & mask) || o->addr == o->server)) {
		lg_msg_free(&lg->msg);
		return usage_error("%s", "--server must be on the --addr prefix (and not --addr)");
	}
	if (o->flood_plen == 0) {
		o->flood_src = 198u << 24 | 19u << 16; /* 198.19.0.0/16 */
		o->flood_plen = 16;
	}
	uint32_t fmask = o->flood_plen == 32 ? 0xffffffffu : ~(0xffffffffu >> o->flood_plen);
	if (!o->v6 && ((o->addr & fmask) == (o->flood_src & fmask) ||
		       (o->server & fmask) == (o->flood_src & fmask))) {
		lg_msg_free(&lg->msg);
		return usage_error("%s", "--flood-src must hold neither --addr nor --server");
	}

	/* The EAL arguments: argv[0] then the words of --eal. */
	char *eal_buf = strdup(eal);
	char *eargv[EAL_MAX_ARGS + 1];
	int eargc = 0;
	bool no_pci = false;
	if (!eal_buf) {
		lg_msg_free(&lg->msg);
		return EXIT_SETUP;
	}
	eargv[eargc++] = argv[0];
	for (char *save = NULL, *t = strtok_r(eal_buf, " \t", &save); t;
	     t = strtok_r(NULL, " \t", &save)) {
		if (eargc >= EAL_MAX_ARGS) {
			free(eal_buf);
			lg_msg_free(&lg->msg);
			return usage_error("%s", "--eal: too many arguments");
		}
		if (strcmp(t, "--no-pci") == 0)
			no_pci = true;
		eargv[eargc++] = t;
	}
	eargv[eargc] = NULL;
	if (!no_pci) {
		free(eal_buf);
		lg_msg_free(&lg->msg);
		return usage_error("%s",
				   "--eal must contain --no-pci (this generator drives virtual "
				   "devices only; the machine's own NIC is PCI)");
	}

	int rc = EXIT_SETUP;
	if (dp_eal_init(eargc, eargv) != 0) {
		free(eal_buf);
		lg_msg_free(&lg->msg);
		return EXIT_SETUP;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	uint16_t pid = 0;
	bool have_port = false;
	RTE_ETH_FOREACH_DEV (pid) {
		have_port = true;
		break;
	}
	if (!have_port) {
		fprintf(stderr, "tes-loadgen: no DPDK port (give one in --eal with --vdev)\n");
		goto out_eal;
	}
	struct dp_port dport;
	struct dp_port_conf pc = { .port_id = pid, .nb_queues = 1 };
	if (dp_port_setup(&dport, &pc) != 0)
		goto out_eal;
	if (wait_link(pid) != 0) {
		fprintf(stderr, "tes-loadgen: port %u: link not up within %d s (is the peer up?)\n",
			pid, LINK_WAIT_S);
		goto out_port;
	}

	if (o->starttls) {
		lg->ssl_ctx = SSL_CTX_new(TLS_client_method());
		if (!lg->ssl_ctx) {
			fprintf(stderr, "tes-loadgen: SSL_CTX_new failed\n");
			goto out_port;
		}
		SSL_CTX_set_min_proto_version(lg->ssl_ctx, TLS1_2_VERSION);
		/* A benchmark of the server: no verification; without
		 * --tls-resume no tickets, so every connection pays a full
		 * handshake; with it, each resumes with the newest ticket. */
		SSL_CTX_set_verify(lg->ssl_ctx, SSL_VERIFY_NONE, NULL);
		if (o->tls_resume) {
			SSL_CTX_set_session_cache_mode(
				lg->ssl_ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
			SSL_CTX_sess_set_new_cb(lg->ssl_ctx, lg_tls_new_session);
		} else {
			SSL_CTX_set_session_cache_mode(lg->ssl_ctx, SSL_SESS_CACHE_OFF);
			SSL_CTX_set_options(lg->ssl_ctx, SSL_OP_NO_TICKET);
		}
	}

	dp_worker_init(&r.w, &dport, 0);
	struct stack_config cfg;
	stack_config_defaults(&cfg);
	dp_worker_stack_config(&r.w, &cfg);
	cfg.naddrs = 1;
	lg_local_addr(o, &cfg.addrs[0]);
	/* A generator on its own test link: its IPv6 address is used at once
	 * (a run would otherwise wait out duplicate address detection). */
	cfg.dad_transmits = 0;
	/* A connection per session, and room for TIME_WAITs (recycled). */
	cfg.max_conns = o->sessions * 2 + 64;
	cfg.max_bufs = o->sessions + 16;
	cfg.rcvbuf = 16384; /* replies and the TLS handshake only */
	cfg.sndbuf = 65536;
	cfg.msl = 1000000000ull;
	/* The first SYN of a run goes out before either side has resolved the
	 * other's MAC and can be lost to that; the RFC 6298 initial RTO of 1 s
	 * would then eat a short run. A load generator on a LAN can retry
	 * sooner. */
	cfg.rto_initial = 100000000ull;
	if (getrandom(cfg.hash_key, sizeof(cfg.hash_key), 0) != sizeof(cfg.hash_key) ||
	    getrandom(cfg.isn_key, sizeof(cfg.isn_key), 0) != sizeof(cfg.isn_key)) {
		fprintf(stderr, "tes-loadgen: getrandom failed\n");
		goto out_ssl;
	}
	char serr[256] = "";
	r.w.st = stack_create(&cfg, &dp_worker_io, &r.w, &lg_app, serr, sizeof(serr));
	if (!r.w.st) {
		fprintf(stderr, "tes-loadgen: stack_create: %s\n", serr[0] ? serr : "?");
		goto out_ssl;
	}
	lg->st = r.w.st;
	lg_flood_init(&r.flood, o, (uint64_t)r.w.tsc0 ^ 0x5deece66dull);
	if (lg_sessions_init(lg) != 0) {
		fprintf(stderr, "tes-loadgen: out of memory for %u sessions\n", o->sessions);
		goto out_stack;
	}
	r.w.poll = on_poll;
	r.w.poll_arg = &r;
	char sbuf[64];
	fprintf(stderr,
		"tes-loadgen: %u sessions to %s:%u on lcore %u, %u messages/conn, %zu bytes%s\n",
		o->sessions, lg_server_str(o, sbuf, sizeof(sbuf)), o->server_port, rte_lcore_id(),
		o->mpc, o->size, o->starttls ? ", STARTTLS" : "");

	dp_worker_run(&r.w, &loop_stop);
	dp_worker_drain(&r.w);
	if (!r.t_end)
		r.t_end = lg->now;

	summary(&r, o->json ? stderr : stdout, o->json ? stdout : NULL);
	fflush(stdout);
	rc = run_failed(lg) ? EXIT_FAILED : 0;
	lg_sessions_free(lg);
out_stack:
	stack_destroy(r.w.st);
out_ssl:
	while (lg->nticket > 0)
		SSL_SESSION_free(lg->tickets[--lg->nticket]);
	if (lg->ssl_ctx)
		SSL_CTX_free(lg->ssl_ctx);
out_port:
	dp_port_close(&dport);
out_eal:
	dp_eal_cleanup();
	free(eal_buf);
	lg_msg_free(&lg->msg);
	return rc;
}
