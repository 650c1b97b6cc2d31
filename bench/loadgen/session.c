/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tes-loadgen sessions: one SMTP client per session on the userspace stack,
 * without pipelining: greeting, EHLO, optional STARTTLS (OpenSSL over memory
 * BIOs), then MAIL, RCPT, DATA and the message --messages-per-conn times,
 * QUIT, and a new connection.
 *
 * The server closes first after its 221 (as SMTP servers do), and only then
 * does the session close, so TIME_WAIT stays on the server side and the
 * generator's local ports are free again at once.
 */
#include "bench/loadgen/loadgen.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

#define NS 1000000000ull
#define RECONNECT_DELAY (100 * 1000000ull) /* after a failure: no tight loop */
#define TLS_OUT_HIGH (32u << 10)           /* ciphertext held before tcp_send takes it */
#define TLS_RECORD 16384

enum sstate {
	S_IDLE,       /* no connection */
	S_CONNECTING, /* SYN sent */
	S_GREETING,
	S_EHLO,
	S_STARTTLS,
	S_TLS_HS,
	S_WAIT_START, /* open loop: waiting for the schedule */
	S_MAIL,
	S_RCPT,
	S_DATA,
	S_BODY,
	S_RSET,
	S_QUIT,
	S_CLOSING, /* waiting for the server's FIN, then closing */
};

enum out_kind { OUT_NONE, OUT_CMD, OUT_BODY };

struct lg_sess {
	struct lg *lg;
	unsigned id;
	struct tcp_conn *c;
	enum sstate state;
	bool conn_counted; /* reached ESTABLISHED */
	bool saw_starttls, tls;
	bool in_txn; /* MAIL sent, outcome not yet known */
	SSL *ssl;
	BIO *rbio, *wbio; /* network side of the TLS engine: in, out */
	unsigned msgs;    /* transactions on this connection */
	uint64_t t_mail, deadline, reconnect_at;
	/* reply reader */
	char line[LG_LINE_MAX];
	unsigned line_len;
	/* what is being sent */
	enum out_kind out;
	size_t out_off;
	unsigned cmd_len;
	char cmd[LG_ADDR_MAX + 32];
	char seq[LG_SEQ_DIGITS];
};

const char *lg_err_name(enum lg_err e)
{
	static const char *const n[LG_E_NKINDS] = {
		[LG_E_TIMEOUT] = "timeout",
		[LG_E_RESET] = "reset",
		[LG_E_REFUSED] = "refused",
		[LG_E_CONNTO] = "connect-timeout",
		[LG_E_CLOSED] = "closed",
		[LG_E_PROTOCOL] = "protocol",
		[LG_E_TLS] = "tls",
		[LG_E_NOSTARTTLS] = "no-starttls",
		[LG_E_NOCONN] = "no-connection",
	};
	return (unsigned)e < LG_E_NKINDS ? n[e] : "?";
}

static void sess_connect(struct lg_sess *s);
static void start_the_rest(struct lg *lg);
static void start_txn(struct lg_sess *s);

static void txn_end(struct lg_sess *s, bool ok)
{
	if (!s->in_txn)
		return;
	s->in_txn = false;
	if (ok)
		s->lg->s.txn_ok++;
	else
		s->lg->s.txn_failed++;
}

/* ---- output: plain or through TLS ---- */

static void tls_flush(struct lg_sess *s)
{
	static char scratch[TLS_OUT_HIGH];
	for (;;) {
		char *p;
		long n = BIO_get_mem_data(s->wbio, &p);
		if (n <= 0)
			return;
		long took = tcp_send(s->c, p, (size_t)n);
		if (took <= 0)
			return;
		/* Drop what the stack copied. */
		while (took > 0) {
			int r = BIO_read(s->wbio, scratch,
					 took < (long)sizeof(scratch) ? (int)took
								      : (int)sizeof(scratch));
			if (r <= 0)
				return;
			took -= r;
		}
	}
}

/* Bytes of p the connection took (0: come back on writable). */
static size_t xmit(struct lg_sess *s, const char *p, size_t n)
{
	if (!s->tls) {
		long took = tcp_send(s->c, p, n);
		return took > 0 ? (size_t)took : 0;
	}
	tls_flush(s);
	if (BIO_ctrl_pending(s->wbio) >= TLS_OUT_HIGH)
		return 0;
	if (n > TLS_RECORD)
		n = TLS_RECORD;
	int r = SSL_write(s->ssl, p, (int)n);
	tls_flush(s);
	return r > 0 ? (size_t)r : 0;
}

static void pump(struct lg_sess *s)
{
	if (s->tls)
		tls_flush(s);
	if (s->out == OUT_CMD) {
		while (s->out_off < s->cmd_len) {
			size_t t = xmit(s, s->cmd + s->out_off, s->cmd_len - s->out_off);
			if (t == 0)
				return;
			s->out_off += t;
		}
		s->out = OUT_NONE;
	} else if (s->out == OUT_BODY) {
		const struct lg_msg *m = &s->lg->msg;
		size_t total = m->wire_a_len + LG_SEQ_DIGITS + m->wire_b_len;
		while (s->out_off < total) {
			const char *p;
			size_t n, o = s->out_off;
			if (o < m->wire_a_len) {
				p = m->wire_a + o;
				n = m->wire_a_len - o;
			} else if (o < m->wire_a_len + LG_SEQ_DIGITS) {
				p = s->seq + (o - m->wire_a_len);
				n = LG_SEQ_DIGITS - (o - m->wire_a_len);
			} else {
				o -= m->wire_a_len + LG_SEQ_DIGITS;
				p = m->wire_b + o;
				n = m->wire_b_len - o;
			}
			size_t t = xmit(s, p, n);
			if (t == 0)
				return;
			s->out_off += t;
		}
		s->out = OUT_NONE;
	}
}

__attribute__((format(printf, 3, 4))) static void send_cmd(struct lg_sess *s, enum sstate next,
							   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(s->cmd, sizeof(s->cmd), fmt, ap);
	va_end(ap);
	if (s->lg->o.trace && s->id == 0)
		fprintf(stderr, "trace: C: %.*s\n", n > 2 ? n - 2 : 0, s->cmd);
	s->cmd_len = n > 0 && (size_t)n < sizeof(s->cmd) ? (unsigned)n : 0;
	s->out = OUT_CMD;
	s->out_off = 0;
	s->state = next;
	s->deadline = s->lg->now + (uint64_t)(s->lg->o.timeout * NS);
	pump(s);
}

/* ---- ending a connection ---- */

static void free_tls(struct lg_sess *s)
{
	/* SMTP ends with QUIT, not close_notify: marked shut down, OpenSSL
	 * keeps the connection's session (the ticket it received, with
	 * --tls-resume still in the pool) resumable instead of marking it bad
	 * at SSL_free. */
	if (s->ssl && s->lg->o.tls_resume)
		SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
	if (s->ssl)
		SSL_free(s->ssl); /* frees both BIOs */
	s->ssl = NULL;
	s->rbio = s->wbio = NULL;
	s->tls = false;
}

static void forget_conn(struct lg_sess *s, uint64_t reconnect_delay)
{
	struct lg *lg = s->lg;
	free_tls(s);
	if (s->c)
		lg->live--;
	s->c = NULL;
	s->state = S_IDLE;
	s->out = OUT_NONE;
	s->line_len = 0;
	s->reconnect_at = lg->now + reconnect_delay;
}

/* A failure that ends the connection: counted once, RST sent. */
static void fail_conn(struct lg_sess *s, enum lg_err e)
{
	struct lg *lg = s->lg;
	lg->s.errs[e]++;
	txn_end(s, false);
	if (s->conn_counted)
		lg->s.conn_dropped++;
	else
		lg->s.conn_failed++;
	if (s->c)
		tcp_abort(s->c);
	forget_conn(s, RECONNECT_DELAY);
}

static void quit(struct lg_sess *s)
{
	send_cmd(s, S_QUIT, "QUIT\r\n");
}

/* ---- replies ---- */

static bool txn_may_start(struct lg_sess *s)
{
	struct lg *lg = s->lg;
	if (lg->stopping || lg->fatal || s->msgs >= lg->o.mpc)
		return false;
	if (lg->o.count && lg->s.txn_started >= lg->o.count)
		return false;
	return true;
}

static void begin_mail(struct lg_sess *s)
{
	struct lg *lg = s->lg;
	lg_msg_seq(s->seq, lg->s.txn_started);
	lg->s.txn_started++;
	s->msgs++;
	s->in_txn = true;
	s->t_mail = lg->now;
	send_cmd(s, S_MAIL, "MAIL FROM:<%s>\r\n", lg->o.mail_from);
}

static void start_txn(struct lg_sess *s)
{
	struct lg *lg = s->lg;
	if (!txn_may_start(s)) {
		quit(s);
		return;
	}
	if (lg->o.rate > 0) {
		if (lg->credit < 1.0) {
			s->state = S_WAIT_START;
			lg->wait_q[(lg->wq_head + lg->wq_n) % lg->o.sessions] = s->id;
			lg->wq_n++;
			return;
		}
		lg->credit -= 1.0;
	}
	begin_mail(s);
}

/* A reply that ends the transaction as failed: by code, and whether it
 * counts as a failure (--allow-code). */
static void txn_rejected(struct lg_sess *s, int code)
{
	struct lg *lg = s->lg;
	lg->s.codes[code]++;
	if (!s->in_txn)
		return;
	s->in_txn = false;
	if (lg->o.allow[code])
		lg->s.txn_allowed++;
	else
		lg->s.txn_failed++;
}

/* SSL_CTX_sess_set_new_cb: a ticket arrived; keep it (taking the reference
 * OpenSSL hands over), the oldest going when the pool is full. */
int lg_tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct lg *lg = SSL_get_app_data(ssl);

	if (lg == NULL || !lg->o.tls_resume)
		return 0;
	lg->s.tls_tickets++;
	if (lg->nticket == LG_TICKETS) {
		SSL_SESSION_free(lg->tickets[0]);
		memmove(lg->tickets, lg->tickets + 1, (LG_TICKETS - 1) * sizeof(lg->tickets[0]));
		lg->nticket--;
	}
	lg->tickets[lg->nticket++] = sess;
	return 1;
}

static void begin_tls(struct lg_sess *s)
{
	struct lg *lg = s->lg;
	s->ssl = SSL_new(lg->ssl_ctx);
	s->rbio = BIO_new(BIO_s_mem());
	s->wbio = BIO_new(BIO_s_mem());
	if (!s->ssl || !s->rbio || !s->wbio) {
		if (!s->ssl) {
			BIO_free(s->rbio);
			BIO_free(s->wbio);
		} else {
			SSL_set_bio(s->ssl, s->rbio, s->wbio);
		}
		fail_conn(s, LG_E_TLS);
		return;
	}
	/* EOF on an empty read BIO means "no data yet", not end of stream. */
	BIO_set_mem_eof_return(s->rbio, -1);
	SSL_set_bio(s->ssl, s->rbio, s->wbio);
	SSL_set_connect_state(s->ssl);
	SSL_set_app_data(s->ssl, lg);
	/* The newest ticket not used yet, as an MTA resumes with the last
	 * session it has for the host; none left: a full handshake. */
	if (lg->nticket > 0) {
		SSL_SESSION *t = lg->tickets[--lg->nticket];
		int ok = SSL_set_session(s->ssl, t);

		SSL_SESSION_free(t);
		if (ok != 1) {
			fail_conn(s, LG_E_TLS);
			return;
		}
	}
	s->tls = true;
	s->state = S_TLS_HS;
	s->deadline = lg->now + (uint64_t)(lg->o.timeout * NS);
	SSL_do_handshake(s->ssl);
	tls_flush(s);
}

static void on_reply(struct lg_sess *s, int code)
{
	struct lg *lg = s->lg;
	if (code == 421) {
		/* The server is closing: the transaction (if any) failed. */
		txn_rejected(s, code);
		s->state = S_CLOSING;
		return;
	}
	switch (s->state) {
	case S_GREETING:
		if (code != 220) {
			lg->s.codes[code]++;
			quit(s);
			return;
		}
		send_cmd(s, S_EHLO, "EHLO %s\r\n", lg->o.helo);
		return;
	case S_EHLO:
		if (code != 250) {
			lg->s.codes[code]++;
			quit(s);
			return;
		}
		if (lg->o.starttls && !s->tls) {
			if (!s->saw_starttls) {
				lg->fatal = true;
				lg->fatal_why = "the server did not offer STARTTLS";
				fail_conn(s, LG_E_NOSTARTTLS);
				return;
			}
			send_cmd(s, S_STARTTLS, "STARTTLS\r\n");
			return;
		}
		start_txn(s);
		return;
	case S_STARTTLS:
		if (code != 220) {
			lg->s.codes[code]++;
			lg->fatal = true;
			lg->fatal_why = "the server refused STARTTLS";
			fail_conn(s, LG_E_NOSTARTTLS);
			return;
		}
		begin_tls(s);
		return;
	case S_MAIL:
		if (code != 250) {
			txn_rejected(s, code);
			send_cmd(s, S_RSET, "RSET\r\n");
			return;
		}
		send_cmd(s, S_RCPT, "RCPT TO:<%s>\r\n", lg->o.rcpt);
		return;
	case S_RCPT:
		if (code != 250 && code != 251) {
			txn_rejected(s, code);
			send_cmd(s, S_RSET, "RSET\r\n");
			return;
		}
		send_cmd(s, S_DATA, "DATA\r\n");
		return;
	case S_DATA:
		if (code != 354) {
			txn_rejected(s, code);
			send_cmd(s, S_RSET, "RSET\r\n");
			return;
		}
		s->state = S_BODY;
		s->out = OUT_BODY;
		s->out_off = 0;
		s->deadline = lg->now + (uint64_t)(lg->o.timeout * NS);
		pump(s);
		return;
	case S_BODY:
		if (s->out != OUT_NONE) { /* a reply before the end of the data */
			fail_conn(s, LG_E_PROTOCOL);
			return;
		}
		if (code != 250) {
			txn_rejected(s, code);
		} else {
			lg_hist_add(&lg->s.lat, (lg->now - s->t_mail) / 1000);
			lg->s.msg_bytes += lg->msg.plain_len;
			txn_end(s, true);
		}
		start_txn(s);
		return;
	case S_RSET:
		if (code != 250) {
			lg->s.codes[code]++;
			quit(s);
			return;
		}
		start_txn(s);
		return;
	case S_QUIT:
		if (code != 221)
			lg->s.codes[code]++;
		s->state = S_CLOSING;
		return;
	default: /* a reply nothing asked for */
		fail_conn(s, LG_E_PROTOCOL);
		return;
	}
}

/* One complete reply line (CRLF stripped).  -1: the connection is gone. */
static int on_line(struct lg_sess *s, const char *l, unsigned n)
{
	if (s->lg->o.trace && s->id == 0 && n < 3)
		fprintf(stderr, "trace: S: %.*s\n", (int)n, l);
	if (n < 3 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0' ||
	    l[2] > '9' || (n > 3 && l[3] != ' ' && l[3] != '-')) {
		fail_conn(s, LG_E_PROTOCOL);
		return -1;
	}
	if (s->lg->o.trace && s->id == 0)
		fprintf(stderr, "trace: S: %.*s\n", (int)n, l);
	int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (s->state == S_EHLO && n >= 12 && strncasecmp(l + 4, "STARTTLS", 8) == 0 &&
	    (n == 12 || l[12] == ' '))
		s->saw_starttls = true;
	if (n > 3 && l[3] == '-')
		return 0;
	on_reply(s, code);
	return s->c ? 0 : -1;
}

/* Plaintext from the server.  -1: the connection is gone. */
static int feed(struct lg_sess *s, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!s->c)
			return -1;
		if (p[i] != '\n') {
			if (s->line_len >= sizeof(s->line)) {
				fail_conn(s, LG_E_PROTOCOL);
				return -1;
			}
			s->line[s->line_len++] = (char)p[i];
			continue;
		}
		unsigned ll = s->line_len;
		if (ll && s->line[ll - 1] == '\r')
			ll--;
		s->line_len = 0;
		bool was_plain = !s->tls;
		if (on_line(s, s->line, ll) != 0)
			return -1;
		if (was_plain && s->tls && i + 1 < n) {
			/* Plaintext after the 220 to STARTTLS would be read
			 * as if it came through TLS (CVE-2011-0411 class). */
			fail_conn(s, LG_E_PROTOCOL);
			return -1;
		}
	}
	return 0;
}

static void tls_input(struct lg_sess *s)
{
	if (s->state == S_TLS_HS) {
		int r = SSL_do_handshake(s->ssl);
		tls_flush(s);
		if (r != 1) {
			int e = SSL_get_error(s->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				fail_conn(s, LG_E_TLS);
			return;
		}
		s->lg->s.tls_handshakes++;
		if (SSL_session_reused(s->ssl))
			s->lg->s.tls_resumed++;
		s->saw_starttls = false;
		send_cmd(s, S_EHLO, "EHLO %s\r\n", s->lg->o.helo);
		if (!s->c)
			return;
	}
	uint8_t buf[4096];
	while (s->c && s->ssl) {
		int r = SSL_read(s->ssl, buf, sizeof(buf));
		if (r <= 0) {
			int e = SSL_get_error(s->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_ZERO_RETURN)
				fail_conn(s, LG_E_TLS);
			break;
		}
		if (feed(s, buf, (size_t)r) != 0)
			return;
	}
	if (s->c && s->ssl)
		tls_flush(s);
}

/* ---- stack callbacks ---- */

static void a_connected(void *ctx, struct tcp_conn *c)
{
	struct lg_sess *s = ctx;
	(void)c;
	s->conn_counted = true;
	s->lg->s.conn_opened++;
	start_the_rest(s->lg);
	s->state = S_GREETING;
	s->deadline = s->lg->now + (uint64_t)(s->lg->o.timeout * NS);
}

static void a_readable(void *ctx, struct tcp_conn *c)
{
	struct lg_sess *s = ctx;
	for (;;) {
		const uint8_t *p1, *p2;
		size_t n1, n2;
		tcp_peek(c, &p1, &n1, &p2, &n2);
		if (n1 == 0)
			break;
		int r = 0;
		if (s->tls) {
			if (BIO_write(s->rbio, p1, (int)n1) != (int)n1) {
				fail_conn(s, LG_E_TLS);
				return;
			}
			tcp_consume(c, n1);
			continue;
		}
		tcp_consume(c, n1);
		r = feed(s, p1, n1);
		if (r != 0)
			return; /* aborted: c is gone */
	}
	if (s->tls) {
		tls_input(s);
		if (!s->c)
			return;
	}
	if (tcp_eof(c) && tcp_readable(c) == 0) {
		if (s->state == S_CLOSING || s->state == S_QUIT) {
			s->state = S_CLOSING;
			tcp_close(c);
		} else {
			s->lg->s.errs[LG_E_CLOSED]++;
			txn_end(s, false);
			s->lg->s.conn_dropped++;
			s->conn_counted = false; /* counted once */
			s->state = S_CLOSING;
			tcp_close(c);
		}
	}
}

static void a_writable(void *ctx, struct tcp_conn *c)
{
	struct lg_sess *s = ctx;
	(void)c;
	pump(s);
}

static void a_closed(void *ctx, struct tcp_conn *c, enum tcp_close_reason why)
{
	struct lg_sess *s = ctx;
	struct lg *lg = s->lg;
	(void)c;
	if (why == TCP_CLOSE_NORMAL && s->state == S_CLOSING) {
		lg->s.conn_closed++;
		forget_conn(s, 0);
		sess_connect(s);
		return;
	}
	enum lg_err e = LG_E_RESET;
	if (why == TCP_CLOSE_REFUSED)
		e = LG_E_REFUSED;
	else if (why == TCP_CLOSE_TIMEOUT || why == TCP_CLOSE_IDLE)
		e = s->conn_counted ? LG_E_TIMEOUT : LG_E_CONNTO;
	else if (why == TCP_CLOSE_NORMAL)
		e = LG_E_CLOSED;
	if (s->state == S_CLOSING && !s->conn_counted) {
		/* Already counted as dropped when the server closed. */
		forget_conn(s, RECONNECT_DELAY);
		return;
	}
	lg->s.errs[e]++;
	txn_end(s, false);
	if (s->conn_counted)
		lg->s.conn_dropped++;
	else
		lg->s.conn_failed++;
	forget_conn(s, RECONNECT_DELAY);
}

const struct stack_app lg_app = {
	.connected = a_connected,
	.readable = a_readable,
	.writable = a_writable,
	.closed = a_closed,
};

/* ---- the session table ---- */

static bool more_work(const struct lg *lg)
{
	if (lg->stopping || lg->fatal)
		return false;
	return lg->o.count == 0 || lg->s.txn_started < lg->o.count;
}

static void sess_connect(struct lg_sess *s)
{
	struct lg *lg = s->lg;
	if (!more_work(lg))
		return;
	struct stack_addr raddr;
	lg_server_addr(&lg->o, &raddr);
	s->conn_counted = false;
	s->saw_starttls = false;
	s->msgs = 0;
	s->line_len = 0;
	s->out = OUT_NONE;
	s->state = S_CONNECTING;
	s->deadline = lg->now + (uint64_t)(lg->o.timeout * NS);
	s->c = stack_connect(lg->st, NULL, &raddr, lg->o.server_port, s, lg->now);
	if (!s->c) {
		lg->s.errs[LG_E_NOCONN]++;
		lg->s.conn_failed++;
		s->state = S_IDLE;
		s->reconnect_at = lg->now + RECONNECT_DELAY;
		return;
	}
	lg->live++;
}

int lg_sessions_init(struct lg *lg)
{
	lg->sess = calloc(lg->o.sessions, sizeof(*lg->sess));
	lg->wait_q = calloc(lg->o.sessions, sizeof(*lg->wait_q));
	if (!lg->sess || !lg->wait_q)
		return -1;
	for (unsigned i = 0; i < lg->o.sessions; i++) {
		lg->sess[i].lg = lg;
		lg->sess[i].id = i;
	}
	return 0;
}

void lg_sessions_free(struct lg *lg)
{
	for (unsigned i = 0; lg->sess && i < lg->o.sessions; i++)
		free_tls(&lg->sess[i]);
	free(lg->sess);
	free(lg->wait_q);
	lg->sess = NULL;
	lg->wait_q = NULL;
}

/* Session 0 connects alone first: its handshake resolves the server's MAC
 * (and the server learns ours), so the other sessions' first segments are
 * not queued behind ARP on either side, where a burst of hundreds of SYNs
 * would overflow the stacks' unresolved-neighbour queues and cost a
 * retransmission timeout each. */
void lg_sessions_start(struct lg *lg)
{
	sess_connect(&lg->sess[0]);
}

static void start_the_rest(struct lg *lg)
{
	if (lg->all_started)
		return;
	lg->all_started = true;
	for (unsigned i = 1; i < lg->o.sessions; i++)
		sess_connect(&lg->sess[i]);
}

void lg_sessions_abort_all(struct lg *lg)
{
	for (unsigned i = 0; i < lg->o.sessions; i++) {
		struct lg_sess *s = &lg->sess[i];
		if (s->c)
			fail_conn(s, LG_E_TIMEOUT);
	}
}

void lg_sessions_poll(struct lg *lg)
{
	if (lg->o.rate > 0) {
		double dt = (double)(lg->now - lg->t_credit) / 1e9;
		lg->t_credit = lg->now;
		if (!lg->stopping) {
			lg->credit += dt * lg->o.rate;
			/* A burst of at most one start per session: beyond
			 * that the schedule has slipped, and it is counted. */
			double cap = (double)lg->o.sessions;
			if (lg->credit > cap) {
				lg->s.rate_missed += (uint64_t)(lg->credit - cap);
				lg->credit = cap;
			}
		}
		while (lg->wq_n && (lg->credit >= 1.0 || lg->stopping)) {
			struct lg_sess *s = &lg->sess[lg->wait_q[lg->wq_head]];
			lg->wq_head = (lg->wq_head + 1) % lg->o.sessions;
			lg->wq_n--;
			if (s->state != S_WAIT_START)
				continue;
			if (!txn_may_start(s)) {
				quit(s);
				continue;
			}
			lg->credit -= 1.0;
			begin_mail(s);
		}
	}
	if (lg->now < lg->next_scan)
		return;
	lg->next_scan = lg->now + 10 * 1000000ull;
	for (unsigned i = 0; i < lg->o.sessions; i++) {
		struct lg_sess *s = &lg->sess[i];
		if (s->state == S_IDLE) {
			if ((lg->all_started || i == 0) && lg->now >= s->reconnect_at)
				sess_connect(s);
			continue;
		}
		if (s->state == S_WAIT_START)
			continue;
		if (lg->now >= s->deadline) {
			if (s->state == S_CONNECTING) {
				lg->s.errs[LG_E_CONNTO]++;
				lg->s.conn_failed++;
				tcp_abort(s->c);
				forget_conn(s, RECONNECT_DELAY);
			} else {
				fail_conn(s, LG_E_TIMEOUT);
			}
		}
	}
}

bool lg_done(const struct lg *lg)
{
	return !more_work(lg) && lg->live == 0;
}
