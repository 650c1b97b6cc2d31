/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/conn/dpdk.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <rte_cycles.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mempool.h>
#include <rte_pause.h>

#include "dataplane/dpdk/impair.h"
#include "dataplane/dpdk/port.h"
#include "dataplane/dpdk/worker.h"
#include "dataplane/srclimit.h"
#include "dataplane/stack/stack.h"
#include "enforce/build.h"
#include "enforce/decide.h"
#include "gateway/conn/conn.h"
#include "gateway/observe/log.h"
#include "gateway/observe/registry.h"
#include "gateway/conn/nosyscall.h"

/* Iterations between RCU quiescent states: often enough that what the
 * control thread retires with call_rcu (replaced server records, policy and
 * catalog snapshots) is freed soon after, rare enough to cost nothing. */
#define QS_EVERY 64
/* Deadlines are checked by a scan of the worker's connections this often:
 * a 421 a tenth of a second late costs nothing, a per-iteration check would
 * cost every packet. */
#define SCAN_NS 100000000ull
#define EAL_MAX_ARGS 64
#define MS 1000000ull

#define STAT_ADD(w, field) __atomic_store_n(&(w)->st.field, (w)->st.field + 1, __ATOMIC_RELAXED)

struct dpw;

struct dconn {
	struct dpw *w;
	struct tcp_conn *tc; /* NULL once the stack has let it go */
	struct gw_conn *gc;  /* NULL once gw_conn_closed was called */
	bool paused;
	bool closing;   /* the transport was asked to close: no more input */
	bool fin_sent;  /* tcp_close called */
	bool in_resume; /* on the worker's resume list */
	bool counted;   /* in the global count */
	bool src_counted;
	uint8_t srckey[16];
	uint64_t idle_at, session_at, linger_at;
	struct dconn *prev, *next; /* every connection of the worker */
	struct dconn *rnext;       /* the resume list */
};

/* One worker: its own queue pair, stack and connections.  Only its own
 * thread touches anything here but the atomics. */
struct dpw {
	struct dp_worker w; /* the stack's io_ctx: early_drop finds us from it */
	struct dpgw *d;
	unsigned index;
	unsigned lcore;
	struct stack_listener *lst;
	/* Verdicts pushed by delivery threads (a Treiber stack of gw_post
	 * nodes: one CAS per push, one exchange per loop to take them all). */
	struct gw_post *_Atomic posts;
	struct dconn *conns;
	struct dconn *resume;
	unsigned nconns;
	uint64_t now, next_scan, deadline;
	unsigned iter, stop_gen;
	bool stopping;
	atomic_bool stop_loop;
	atomic_bool exited;
	struct gw_io_stats st; /* relaxed stores here, relaxed loads anywhere */
	struct stack_mem mem;  /* snapshot for other threads */
	char pad[64];
};

struct dpgw {
	struct dpgw_params p;
	char refuse_global[GW_LINE_MAX];
	char refuse_source[GW_LINE_MAX];
	struct stack_io io;
	struct dp_port port;
	struct dp_steer *steer; /* more than one worker: flows to their owner */
	struct dpw *w;
	unsigned nworkers;
	char *eal_buf;
	char *eal_argv[EAL_MAX_ARGS + 1];
	atomic_uint nconns;
	atomic_bool stop_req;
	atomic_uint stop_gen;
	atomic_uint grace_ms;
	struct srclimit *src; /* connections per source, all workers */
	bool launched;
	bool impaired;
	struct dp_impair_conf imp;
	/* the stack's addresses (dpdk_addr), both families */
	unsigned naddrs;
	struct stack_ifaddr addrs[STACK_MAX_ADDRS];
	unsigned idle_ms, session_ms;
	/* the port's distinct mempools, for the exports */
	const struct rte_mempool *pools[DP_MAX_SOCKETS];
	unsigned npools;
};

/* ---- connections ---- */

static void idle_touch(struct dconn *dc)
{
	if (!dc->closing)
		dc->idle_at = dc->w->now + (uint64_t)dc->w->d->idle_ms * MS;
}

/* The end of a connection on our side: conn.c is told (if it still has the
 * session), the limits are released, the struct goes. */
static void conn_free(struct dconn *dc, enum gw_close_reason why)
{
	struct dpw *w = dc->w;
	struct dpgw *d = w->d;
	switch (why) {
	case GW_CLOSE_PEER:
		STAT_ADD(w, closed_peer);
		break;
	case GW_CLOSE_ERROR:
		STAT_ADD(w, closed_error);
		break;
	case GW_CLOSE_LINGER:
		STAT_ADD(w, linger_expired);
		break;
	case GW_CLOSE_SHUTDOWN:
		STAT_ADD(w, shutdown_forced);
		break;
	default:
		break;
	}
	if (dc->gc) {
		struct gw_conn *gc = dc->gc;
		dc->gc = NULL;
		gw_conn_closed(gc, why);
	}
	if (dc->in_resume) {
		struct dconn **pp = &w->resume;
		while (*pp != dc)
			pp = &(*pp)->rnext;
		*pp = dc->rnext;
	}
	if (dc->prev)
		dc->prev->next = dc->next;
	else
		w->conns = dc->next;
	if (dc->next)
		dc->next->prev = dc->prev;
	w->nconns--;
	if (dc->src_counted)
		srclimit_release(d->src, dc->srckey);
	if (dc->counted)
		atomic_fetch_sub(&d->nconns, 1);
	free(dc);
}

static void send_fin(struct dconn *dc)
{
	if (dc->fin_sent || !dc->tc)
		return;
	dc->fin_sent = true;
	tcp_close(dc->tc);
}

/* The client closed its side (all its input read): as kio, the session
 * ends; what is queued still goes out before our FIN. */
static void peer_eof(struct dconn *dc)
{
	if (dc->gc) {
		struct gw_conn *gc = dc->gc;
		dc->gc = NULL;
		STAT_ADD(dc->w, closed_peer);
		gw_conn_closed(gc, GW_CLOSE_PEER);
	}
	dc->closing = true;
	dc->linger_at = dc->w->now + (uint64_t)dc->w->d->p.linger_ms * MS;
	send_fin(dc);
}

/* Offer the input in the stack's receive buffer until the session stops
 * taking it.  Never from inside a conn.c call. */
static void offer(struct dconn *dc)
{
	for (unsigned round = 0; round < 64; round++) {
		if (!dc->tc || !dc->gc || dc->paused || dc->closing)
			return;
		const uint8_t *p1, *p2;
		size_t n1, n2;
		tcp_peek(dc->tc, &p1, &n1, &p2, &n2);
		if (n1 == 0) {
			if (tcp_eof(dc->tc))
				peer_eof(dc);
			return;
		}
		size_t used = gw_conn_data(dc->gc, p1, n1);
		if (!dc->tc)
			return;
		if (used > n1)
			used = n1;
		if (used > 0) {
			tcp_consume(dc->tc, used);
			__atomic_store_n(&dc->w->st.bytes_in, dc->w->st.bytes_in + used,
					 __ATOMIC_RELAXED);
			idle_touch(dc);
		}
		if (used < n1)
			return; /* paused, or the session took what it can for now */
	}
}

/* ---- the transport conn.c sees ---- */

static size_t t_write(void *tc, const void *p, size_t n)
{
	struct dconn *dc = tc;
	if (!dc->tc || dc->fin_sent || n == 0)
		return 0;
	long took = tcp_send(dc->tc, p, n);
	if (took <= 0)
		return 0;
	__atomic_store_n(&dc->w->st.bytes_out, dc->w->st.bytes_out + (uint64_t)took,
			 __ATOMIC_RELAXED);
	return (size_t)took;
}

static void t_pause(void *tc)
{
	struct dconn *dc = tc;
	dc->paused = true;
}

/* Deferred: the input is offered on the worker's next loop iteration, so
 * conn.c is never re-entered from inside its own call. */
static void t_resume(void *tc)
{
	struct dconn *dc = tc;
	if (!dc->paused)
		return;
	dc->paused = false;
	if (dc->closing)
		return;
	idle_touch(dc);
	if (!dc->in_resume) {
		dc->in_resume = true;
		dc->rnext = dc->w->resume;
		dc->w->resume = dc;
	}
}

static void t_close(void *tc)
{
	struct dconn *dc = tc;
	if (dc->closing)
		return;
	dc->closing = true;
	dc->linger_at = dc->w->now + (uint64_t)dc->w->d->p.linger_ms * MS;
	/* A session still waiting for its verdict (a timeout, a shutdown)
	 * gets it written within the linger time: the FIN waits for it. */
	if (!dc->gc || !gw_conn_waiting(dc->gc))
		send_fin(dc);
}

static void t_post(void *tw, struct gw_post *p)
{
	struct dpw *w = tw;
	struct gw_post *head = atomic_load_explicit(&w->posts, memory_order_relaxed);
	do
		__atomic_store_n(&p->link[0], head, __ATOMIC_RELAXED);
	while (!atomic_compare_exchange_weak_explicit(&w->posts, &head, p, memory_order_release,
						      memory_order_relaxed));
}

static const struct gw_transport dp_transport = {
	.write = t_write,
	.pause = t_pause,
	.resume = t_resume,
	.close = t_close,
	.post = t_post,
};

/* ---- stack callbacks (inside stack_input/stack_timers on the worker) ---- */

static void refuse(struct dconn *dc, const char *line)
{
	if (line && *line)
		tcp_send(dc->tc, line, strlen(line));
	dc->closing = true;
	dc->linger_at = dc->w->now + (uint64_t)dc->w->d->p.linger_ms * MS;
	send_fin(dc);
}

static int a_accept(void *lctx, struct stack_listener *l, struct tcp_conn *c)
{
	struct dpw *w = lctx;
	struct dpgw *d = w->d;
	(void)l;
	if (w->stopping)
		return -1;
	struct dconn *dc = calloc(1, sizeof(*dc));
	if (!dc)
		return -1;
	dc->w = w;
	dc->tc = c;
	tcp_set_ctx(c, dc);
	dc->next = w->conns;
	if (w->conns)
		w->conns->prev = dc;
	w->conns = dc;
	w->nconns++;
	dc->session_at = w->now + (uint64_t)d->session_ms * MS;
	dc->idle_at = w->now + (uint64_t)d->idle_ms * MS;

	const struct stack_tuple *t = tcp_tuple(c);
	struct sockaddr_storage peer;
	memset(&peer, 0, sizeof(peer));
	if (t->raddr.family == STACK_AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&peer;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, t->raddr.a, 16);
		s6->sin6_port = htons(t->rport);
		/* The per-source limit counts an IPv6 source by its /64, as the
		 * kernel path does: one host commonly holds a whole /64. */
		memset(dc->srckey, 0, sizeof(dc->srckey));
		memcpy(dc->srckey, t->raddr.a, 8);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&peer;
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, t->raddr.a, 4);
		sin->sin_port = htons(t->rport);
		static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
		memcpy(dc->srckey, v4mapped, 12);
		memcpy(dc->srckey + 12, t->raddr.a, 4);
	}

	dc->counted = true;
	if (atomic_fetch_add(&d->nconns, 1) >= d->p.io->max_connections) {
		STAT_ADD(w, refused_global);
		refuse(dc, d->refuse_global);
		return 0;
	}
	if (d->p.io->max_connections_per_source) {
		if (!srclimit_acquire(d->src, dc->srckey)) {
			STAT_ADD(w, refused_source);
			refuse(dc, d->refuse_source);
			return 0;
		}
		dc->src_counted = true;
	}
	STAT_ADD(w, accepted);
	const char *why = NULL;
	struct gw_conn *gc = gw_conn_open(d->p.g, &dp_transport, dc, w, w->index, &peer, &why);
	if (!gc) {
		STAT_ADD(w, refused_app);
		refuse(dc, why);
		return 0;
	}
	dc->gc = gc;
	return 0;
}

static void a_readable(void *ctx, struct tcp_conn *c)
{
	struct dconn *dc = ctx;
	(void)c;
	offer(dc);
}

static void a_writable(void *ctx, struct tcp_conn *c)
{
	struct dconn *dc = ctx;
	(void)c;
	if (!dc->gc || dc->closing)
		return;
	idle_touch(dc);
	gw_conn_writable(dc->gc);
}

static void a_closed(void *ctx, struct tcp_conn *c, enum tcp_close_reason why)
{
	struct dconn *dc = ctx;
	(void)c;
	dc->tc = NULL;
	enum gw_close_reason r;
	switch (why) {
	case TCP_CLOSE_NORMAL:
		r = dc->closing ? GW_CLOSE_LOCAL : GW_CLOSE_PEER;
		break;
	case TCP_CLOSE_IDLE:
		r = GW_CLOSE_IDLE;
		break;
	default:
		r = GW_CLOSE_ERROR;
		break;
	}
	conn_free(dc, r);
}

/* A SYN to the listener: a "drop" source gets nothing, not even a SYN-ACK,
 * and costs no state. */
static bool early_drop(void *ctx, const struct stack_addr *src)
{
	struct dpw *w = container_of(ctx, struct dpw, w);
	struct tes_addr a;
	if (src->family == STACK_AF_INET6)
		tes_addr_v6(&a, src->a);
	else if (src->family == STACK_AF_INET)
		tes_addr_v4(&a, src->a);
	else
		return false;
	if (!gw_source_drop(w->d->p.g, &a))
		return false;
	gw_count_early_drop(w->d->p.g, w->index);
	return true;
}

/* ---- the worker's own polling, once per loop iteration ---- */

static void run_posts(struct dpw *w)
{
	/* A post's link[0] is the next one down the stack. */
	struct gw_post *p = atomic_exchange_explicit(&w->posts, NULL, memory_order_acquire);
	/* Pushed newest first: reverse, so verdicts run in arrival order. */
	struct gw_post *rev = NULL;
	while (p) {
		struct gw_post *next = __atomic_load_n(&p->link[0], __ATOMIC_RELAXED);
		p->link[0] = rev;
		rev = p;
		p = next;
	}
	while (rev) {
		struct gw_post *next = rev->link[0];
		rev->fn(rev);
		rev = next;
	}
}

static void run_resumes(struct dpw *w)
{
	/* Bounded: a connection resumed while offering goes on the new list. */
	struct dconn *dc = w->resume;
	w->resume = NULL;
	while (dc) {
		struct dconn *next = dc->rnext;
		dc->in_resume = false;
		dc->rnext = NULL;
		offer(dc);
		dc = next;
	}
}

static void scan(struct dpw *w)
{
	for (struct dconn *dc = w->conns, *next; dc; dc = next) {
		next = dc->next; /* only dc itself may go */
		if (dc->closing) {
			if (!dc->fin_sent && (!dc->gc || !gw_conn_waiting(dc->gc)))
				send_fin(dc);
			if (w->now >= dc->linger_at) {
				if (dc->tc)
					tcp_abort(dc->tc);
				dc->tc = NULL;
				conn_free(dc, GW_CLOSE_LINGER);
			}
			continue;
		}
		if (!dc->gc)
			continue;
		if (w->now >= dc->session_at) {
			STAT_ADD(w, timeouts_session);
			gw_conn_timeout(dc->gc, GW_TIMEOUT_SESSION);
			t_close(dc);
		} else if (w->now >= dc->idle_at) {
			STAT_ADD(w, timeouts_idle);
			gw_conn_timeout(dc->gc, GW_TIMEOUT_IDLE);
			t_close(dc);
		}
	}
	struct stack_mem m;
	stack_mem(w->w.st, &m);
	const uint64_t *src = (const uint64_t *)(const void *)&m;
	uint64_t *dst = (uint64_t *)(void *)&w->mem;
	_Static_assert(sizeof(m) % sizeof(uint64_t) == 0, "stack_mem is 64-bit words");
	for (size_t i = 0; i < sizeof(m) / sizeof(uint64_t); i++)
		__atomic_store_n(&dst[i], src[i], __ATOMIC_RELAXED);
}

static void begin_shutdown(struct dpw *w)
{
	w->stopping = true;
	if (w->lst)
		stack_unlisten(w->w.st, w->lst);
	w->lst = NULL;
	for (struct dconn *dc = w->conns, *next; dc; dc = next) {
		next = dc->next;
		if (dc->gc && !dc->closing)
			gw_conn_shutdown(dc->gc);
	}
}

static void on_poll(void *arg, uint64_t now)
{
	struct dpw *w = arg;
	struct dpgw *d = w->d;
	w->now = now;
	if (atomic_load_explicit(&w->posts, memory_order_relaxed))
		run_posts(w);
	if (w->resume)
		run_resumes(w);
	if (++w->iter % QS_EVERY == 0)
		gw_worker_quiescent(d->p.g);
	unsigned gen = atomic_load_explicit(&d->stop_gen, memory_order_acquire);
	if (gen != w->stop_gen) {
		uint64_t dl = now + (uint64_t)atomic_load(&d->grace_ms) * MS;
		if (!w->stopping) {
			w->deadline = dl;
			begin_shutdown(w);
		} else if (dl < w->deadline) {
			w->deadline = dl;
		}
		w->stop_gen = gen;
	}
	if (now >= w->next_scan) {
		scan(w);
		w->next_scan = now + SCAN_NS;
	}
	if (w->stopping) {
		if (w->nconns == 0) {
			atomic_store(&w->stop_loop, true);
		} else if (now >= w->deadline) {
			while (w->conns) {
				struct dconn *dc = w->conns;
				if (dc->tc)
					tcp_abort(dc->tc);
				dc->tc = NULL;
				conn_free(dc, GW_CLOSE_SHUTDOWN);
			}
			atomic_store(&w->stop_loop, true);
		}
	}
}

static int worker_main(void *arg)
{
	struct dpw *w = arg;
	char name[16];
	snprintf(name, sizeof(name), "tes-dp-%u", w->index);
	pthread_setname_np(pthread_self(), name); /* for ps, perf and the tests */
	log_thread_async(true);                   /* a log line must not be a write(2) here */
	char err[160];
	if (nosyscall_worker_arena(err, sizeof(err)) != 0)
		log_msg(LOG_WARN, "worker %u: %s: its allocations may make system calls", w->index,
			err);
	gw_worker_start(w->d->p.g);
	w->now = dp_worker_now(&w->w);
	w->next_scan = w->now + SCAN_NS;
	dp_worker_run(&w->w, &w->stop_loop);
	dp_worker_drain(&w->w);
	gw_worker_stop(w->d->p.g);
	atomic_store(&w->exited, true);
	return 0;
}

/* ---- start and stop ---- */

static int split_args(struct dpgw *d)
{
	d->eal_buf = strdup(d->p.set->args);
	if (!d->eal_buf)
		return -1;
	int n = 0;
	d->eal_argv[n++] = (char *)"tesgate";
	for (char *save = NULL, *t = strtok_r(d->eal_buf, " ", &save); t;
	     t = strtok_r(NULL, " ", &save)) {
		if (n >= EAL_MAX_ARGS) {
			fprintf(stderr, "tesgate: dpdk_args: more than %d arguments\n",
				EAL_MAX_ARGS - 1);
			return -1;
		}
		d->eal_argv[n++] = t;
	}
	d->eal_argv[n] = NULL;
	return n;
}

/* dpdk_addr: "198.18.5.2/24, 2001:db8:5::2/64"; prefix 24 (IPv4) or 64
 * (IPv6) when omitted.  The number of addresses, or -1. */
static int parse_addrs(const char *s, struct stack_ifaddr *out, unsigned max)
{
	char buf[512];
	if (strlen(s) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", s);
	unsigned n = 0;
	for (char *save = NULL, *t = strtok_r(buf, ", ", &save); t;
	     t = strtok_r(NULL, ", ", &save)) {
		char *slash = strchr(t, '/');
		if (slash)
			*slash = '\0';
		bool v6 = strchr(t, ':') != NULL;
		int plen = slash ? atoi(slash + 1) : v6 ? 64 : 24;
		uint8_t b[16];
		if (n == max || inet_pton(v6 ? AF_INET6 : AF_INET, t, b) != 1 || plen < 1 ||
		    plen > (v6 ? 128 : 32))
			return -1;
		if (v6)
			stack_addr_ipv6(&out[n].addr, b);
		else
			stack_addr_ipv4(&out[n].addr, (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
							      b[2] << 8 | b[3]);
		out[n++].prefix_len = (uint8_t)plen;
	}
	return n ? (int)n : -1;
}

static void free_all(struct dpgw *d)
{
	srclimit_free(d->src);
	free(d->w);
	free(d->eal_buf);
	free(d);
}

/* Start-up, one step a function; each undoes nothing of the others (the
 * ladder in dpgw_start does), and says on stderr why it failed. */

/* The settings checked and the memory that does not need the EAL. */
static struct dpgw *dpgw_new(const struct dpgw_params *p)
{
	const struct gw_io_settings *io = p->io;
	struct dp_impair_conf imp;
	struct stack_ifaddr addrs[STACK_MAX_ADDRS];
	int naddrs = parse_addrs(p->set->addr, addrs, STACK_MAX_ADDRS);
	struct dpgw *d;

	if (naddrs < 0) {
		fprintf(stderr,
			"tesgate: dpdk_addr '%s' is not a list of up to %d addresses "
			"(A.B.C.D/len, IPv6/len)\n",
			p->set->addr, STACK_MAX_ADDRS);
		return NULL;
	}
	if (io->workers < 1 || io->workers > DP_MAX_QUEUES) {
		fprintf(stderr, "tesgate: io = dpdk runs 1..%d workers, not %u\n", DP_MAX_QUEUES,
			io->workers);
		return NULL;
	}
	if (p->set->impair[0]) {
		char err[160];
		if (dp_impair_parse(p->set->impair, &imp, err, sizeof(err)) != 0) {
			fprintf(stderr, "tesgate: dpdk_impair: %s\n", err);
			return NULL;
		}
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->p = *p;
	d->naddrs = (unsigned)naddrs;
	memcpy(d->addrs, addrs, sizeof(addrs));
	d->impaired = p->set->impair[0] != '\0';
	if (d->impaired)
		d->imp = imp;
	d->nworkers = io->workers;
	d->idle_ms = io->idle_timeout * 1000u;
	d->session_ms = io->session_timeout * 1000u;
	snprintf(d->refuse_global, sizeof(d->refuse_global), "%s",
		 p->refuse_global ? p->refuse_global : "");
	snprintf(d->refuse_source, sizeof(d->refuse_source), "%s",
		 p->refuse_source ? p->refuse_source : "");
	d->src = io->max_connections_per_source
			 ? srclimit_new(io->max_connections, io->max_connections_per_source)
			 : NULL;
	d->w = calloc(io->workers, sizeof(*d->w));
	if ((io->max_connections_per_source && !d->src) || !d->w) {
		free_all(d);
		return NULL;
	}
	d->io = dp_worker_io;
	d->io.early_drop = early_drop;
	return d;
}

/* The EAL, with an lcore for every worker besides the main one. */
static int eal_up(struct dpgw *d)
{
	int argc = split_args(d);
	if (argc < 0 || dp_eal_init(argc, d->eal_argv) != 0)
		return -1;
	/* The main lcore does not poll (it waits for signals, as on the
	 * kernel path): each worker needs an lcore of its own. */
	if (rte_lcore_count() < d->nworkers + 1) {
		fprintf(stderr,
			"tesgate: workers = %u with io = dpdk needs %u lcores in dpdk_args "
			"(the main lcore and one per worker, e.g. -l 0-%u); the EAL has %u\n",
			d->nworkers, d->nworkers + 1, d->nworkers, rte_lcore_count());
		dp_eal_cleanup();
		return -1;
	}
	return 0;
}

/* The first port, a queue pair per worker, the impairment (tests) and, with
 * more than one worker, the steering between them. */
static int port_up(struct dpgw *d)
{
	uint16_t pid = 0;
	bool have = false;
	RTE_ETH_FOREACH_DEV (pid) {
		have = true;
		break;
	}
	if (!have) {
		fprintf(stderr, "tesgate: no DPDK port (give one in dpdk_args, --vdev)\n");
		return -1;
	}
	struct dp_port_conf pc = { .port_id = pid, .nb_queues = (uint16_t)d->nworkers };
	if (dp_port_setup(&d->port, &pc) != 0)
		return -1;
	for (unsigned q = 0; d->impaired && q < d->nworkers; q++) {
		if (dp_impair_attach(&d->port, (uint16_t)q, &d->imp) != 0)
			goto fail;
		log_msg(LOG_WARN, "dpdk_impair on queue %u: %s (for tests only)", q,
			d->p.set->impair);
	}
	if (d->nworkers > 1) {
		/* A segment that arrives on another worker's queue (RSS and
		 * the tap's queue choice do not know our stacks) is passed to
		 * the worker owning its 4-tuple. */
		d->steer = dp_steer_create(&d->port, d->nworkers);
		if (!d->steer)
			goto fail;
	}
	return 0;
fail:
	dp_port_close(&d->port);
	return -1;
}

static void port_down(struct dpgw *d)
{
	if (d->steer)
		dp_steer_free(d->steer);
	dp_port_close(&d->port);
}

/* Worker i: its lcore, its queue, its stack and its listener. */
static int worker_up(struct dpgw *d, unsigned i, unsigned lcore, const uint8_t hash_key[16],
		     const uint8_t isn_key[16])
{
	static const struct stack_app app = {
		.accept = a_accept,
		.readable = a_readable,
		.writable = a_writable,
		.closed = a_closed,
	};
	struct dpw *w = &d->w[i];
	struct stack_config cfg;
	char err[256] = "";

	w->d = d;
	w->index = i;
	w->lcore = lcore;
	dp_worker_init(&w->w, &d->port, (uint16_t)i);
	if (d->steer)
		dp_worker_set_steer(&w->w, d->steer, i);
	stack_config_defaults(&cfg);
	dp_worker_stack_config(&w->w, &cfg);
	/* The listener below is on every address of both families. */
	cfg.naddrs = d->naddrs;
	memcpy(cfg.addrs, d->addrs, sizeof(cfg.addrs));
	cfg.max_conns = d->p.io->max_connections ? d->p.io->max_connections : 1;
	cfg.rcvbuf = 65536;
	cfg.sndbuf = 65536;
	memcpy(cfg.hash_key, hash_key, 16);
	memcpy(cfg.isn_key, isn_key, 16);
	w->w.st = stack_create(&cfg, &d->io, &w->w, &app, err, sizeof(err));
	if (!w->w.st) {
		fprintf(stderr, "tesgate: stack_create: %s\n", err[0] ? err : "?");
		return -1;
	}
	w->lst = stack_listen(w->w.st, NULL, (uint16_t)d->p.set->port, 1024, w);
	if (!w->lst) {
		fprintf(stderr, "tesgate: cannot listen on port %u of the stack\n", d->p.set->port);
		stack_destroy(w->w.st);
		return -1;
	}
	w->w.poll = on_poll;
	w->w.poll_arg = w;
	return 0;
}

/* Every worker's stack, with keys they share (so a flow hashes alike on
 * each). */
static int stacks_up(struct dpgw *d)
{
	uint8_t hash_key[16], isn_key[16];
	if (getrandom(hash_key, sizeof(hash_key), 0) != sizeof(hash_key) ||
	    getrandom(isn_key, sizeof(isn_key), 0) != sizeof(isn_key)) {
		fprintf(stderr, "tesgate: getrandom failed\n");
		return -1;
	}
	unsigned lcore = rte_get_next_lcore(-1, 1, 0);
	for (unsigned made = 0; made < d->nworkers; made++) {
		if (worker_up(d, made, lcore, hash_key, isn_key) != 0) {
			while (made-- > 0)
				stack_destroy(d->w[made].w.st);
			return -1;
		}
		lcore = rte_get_next_lcore(lcore, 1, 0);
	}
	return 0;
}

struct dpgw *dpgw_start(const struct dpgw_params *p)
{
	struct dpgw *d = dpgw_new(p);

	if (!d)
		return NULL;
	if (eal_up(d) != 0)
		goto fail_alloc;
	if (port_up(d) != 0)
		goto fail_eal;
	if (stacks_up(d) != 0)
		goto fail_port;
	return d;
fail_port:
	port_down(d);
fail_eal:
	dp_eal_cleanup();
fail_alloc:
	free_all(d);
	return NULL;
}

int dpgw_launch(struct dpgw *d)
{
	for (unsigned i = 0; i < d->nworkers; i++) {
		int rc = rte_eal_remote_launch(worker_main, &d->w[i], d->w[i].lcore);
		if (rc != 0) {
			fprintf(stderr, "tesgate: cannot start worker %u on lcore %u: %s\n", i,
				d->w[i].lcore, strerror(-rc));
			/* the ones started stop at once */
			atomic_store(&d->grace_ms, 0);
			atomic_store(&d->stop_req, true);
			atomic_fetch_add(&d->stop_gen, 1);
			for (unsigned j = i; j < d->nworkers; j++)
				atomic_store(&d->w[j].exited, true);
			d->launched = true;
			return -1;
		}
	}
	d->launched = true;
	return 0;
}

void dpgw_stop(struct dpgw *d, unsigned grace_ms)
{
	unsigned old = atomic_load(&d->grace_ms);
	if (atomic_load(&d->stop_req) && grace_ms >= old)
		return;
	atomic_store(&d->grace_ms, grace_ms);
	atomic_store(&d->stop_req, true);
	atomic_fetch_add_explicit(&d->stop_gen, 1, memory_order_release);
}

bool dpgw_wait(struct dpgw *d, unsigned timeout_ms)
{
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		bool all = true;
		for (unsigned i = 0; i < d->nworkers && all; i++)
			all = atomic_load(&d->w[i].exited);
		if (all || !d->launched)
			return true;
		clock_gettime(CLOCK_MONOTONIC, &t);
		uint64_t ms = (uint64_t)(t.tv_sec - t0.tv_sec) * 1000 +
			      (uint64_t)((t.tv_nsec - t0.tv_nsec) / 1000000);
		if (ms >= timeout_ms)
			return false;
		struct timespec nap = { 0, 5 * 1000 * 1000 };
		nanosleep(&nap, NULL);
	}
}

void dpgw_destroy(struct dpgw *d)
{
	if (d->launched)
		rte_eal_mp_wait_lcore();
	for (unsigned i = 0; i < d->nworkers; i++) {
		struct dpw *w = &d->w[i];
		/* Verdicts that found the worker gone: their sessions were all
		 * closed, so each is an orphan conn.c frees. */
		run_posts(w);
		while (w->conns) { /* never launched */
			struct dconn *dc = w->conns;
			dc->tc = NULL;
			conn_free(dc, GW_CLOSE_SHUTDOWN);
		}
		dp_worker_log_stats(&w->w, stderr);
		if (d->impaired)
			dp_impair_log_stats(&d->port, (uint16_t)i, stderr);
	}
	dp_port_log_stats(&d->port, stderr);
	for (unsigned i = 0; i < d->nworkers; i++)
		stack_destroy(d->w[i].w.st);
	if (d->steer)
		dp_steer_free(d->steer);
	dp_port_close(&d->port);
	dp_eal_cleanup();
	free_all(d);
}

/* ---- statistics, any thread ---- */

void dpgw_conn_stats(const struct dpgw *d, struct gw_io_stats *out)
{
	_Static_assert(sizeof(struct gw_io_stats) % sizeof(uint64_t) == 0, "gw_io_stats is words");
	uint64_t *o = (uint64_t *)(void *)out;
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i < d->nworkers; i++) {
		const uint64_t *s = (const uint64_t *)(const void *)&d->w[i].st;
		for (size_t j = 0; j < sizeof(*out) / sizeof(uint64_t); j++)
			o[j] += __atomic_load_n(&s[j], __ATOMIC_RELAXED);
	}
	out->open = atomic_load_explicit(&((struct dpgw *)d)->nconns, memory_order_relaxed);
}

unsigned dpgw_workers(const struct dpgw *d)
{
	return d->nworkers;
}

const struct dp_port *dpgw_port(const struct dpgw *d)
{
	return &d->port;
}

static void copy_words(void *dst, const void *src, size_t len)
{
	uint64_t *o = dst;
	const uint64_t *s = src;
	for (size_t i = 0; i < len / sizeof(uint64_t); i++)
		o[i] = __atomic_load_n(&s[i], __ATOMIC_RELAXED);
}

void dpgw_stack_stats(const struct dpgw *d, unsigned worker, struct stack_stats *out)
{
	_Static_assert(sizeof(struct stack_stats) % sizeof(uint64_t) == 0, "stack_stats words");
	if (worker >= d->nworkers) {
		memset(out, 0, sizeof(*out));
		return;
	}
	copy_words(out, stack_stats(d->w[worker].w.st), sizeof(*out));
}

void dpgw_stack_mem(const struct dpgw *d, unsigned worker, struct stack_mem *out)
{
	if (worker >= d->nworkers) {
		memset(out, 0, sizeof(*out));
		return;
	}
	copy_words(out, &d->w[worker].mem, sizeof(*out));
}

void dpgw_worker_stats(const struct dpgw *d, unsigned worker, struct dp_worker_stats *out)
{
	_Static_assert(sizeof(struct dp_worker_stats) % sizeof(uint64_t) == 0, "words");
	if (worker >= d->nworkers) {
		memset(out, 0, sizeof(*out));
		return;
	}
	copy_words(out, &d->w[worker].w.stats, sizeof(*out));
}

/* ---- the seam's whole-transport side ---- */

static int io_start(void *t)
{
	return dpgw_launch(t);
}

static void io_stop(void *t, unsigned grace_ms)
{
	dpgw_stop(t, grace_ms);
}

static bool io_wait(void *t, unsigned timeout_ms)
{
	return dpgw_wait(t, timeout_ms);
}

static void io_destroy(void *t)
{
	dpgw_destroy(t);
}

static void io_stats(const void *t, struct gw_io_stats *out)
{
	dpgw_conn_stats(t, out);
}

static const struct gw_io_ops dpdk_io_ops = {
	.start = io_start,
	.stop = io_stop,
	.wait = io_wait,
	.destroy = io_destroy,
	.stats = io_stats,
};

void dpgw_io(struct dpgw *d, struct gw_io *out)
{
	out->ops = &dpdk_io_ops;
	out->t = d;
}

/* ---- exports (gateway/observe/registry.h) ----
 * The port (rte_eth_stats, read the way DPDK's own telemetry thread reads
 * it while the workers poll), its mempools, and per worker the poll loop's,
 * the stack's and the stack's memory counters, all with relaxed loads. */

static bool port_read(const void *arg, unsigned i, void *snap)
{
	const struct dpgw *d = arg;

	(void)i;
	return rte_eth_stats_get(d->port.port_id, snap) == 0;
}

static void port_name(const void *arg, unsigned i, char *buf, size_t len)
{
	const struct dpgw *d = arg;

	(void)i;
	snprintf(buf, len, "%u", d->port.port_id);
}

static unsigned one(const void *arg)
{
	(void)arg;
	return 1;
}

#define PF(m, f, h)                                                             \
	{                                                                       \
		.name = m, .help = h, .off = offsetof(struct rte_eth_stats, f), \
	}

static const struct obs_row port_rows[] = {
	PF("tes_dpdk_port_received_packets_total", ipackets,
	   "Packets the port received (rte_eth_stats ipackets)"),
	PF("tes_dpdk_port_sent_packets_total", opackets,
	   "Packets the port sent (rte_eth_stats opackets)"),
	PF("tes_dpdk_port_received_bytes_total", ibytes, "Octets the port received"),
	PF("tes_dpdk_port_sent_bytes_total", obytes, "Octets the port sent"),
	PF("tes_dpdk_port_missed_packets_total", imissed,
	   "Packets the port dropped because the receive queues were full (imissed)"),
	PF("tes_dpdk_port_receive_errors_total", ierrors, "Erroneous packets received"),
	PF("tes_dpdk_port_send_errors_total", oerrors, "Packets the port failed to send"),
	PF("tes_dpdk_port_receive_no_mbuf_total", rx_nombuf,
	   "Receive buffer allocation failures (the mempool was empty)"),
};

#undef PF

struct pool_snap {
	uint64_t avail, in_use;
};

static unsigned pools_count(const void *arg)
{
	const struct dpgw *d = arg;

	return d->npools;
}

static bool pool_read(const void *arg, unsigned i, void *snap)
{
	const struct dpgw *d = arg;
	struct pool_snap *s = snap;

	s->avail = rte_mempool_avail_count(d->pools[i]);
	s->in_use = rte_mempool_in_use_count(d->pools[i]);
	return true;
}

static void pool_name(const void *arg, unsigned i, char *buf, size_t len)
{
	const struct dpgw *d = arg;

	snprintf(buf, len, "%s", d->pools[i]->name);
}

static const struct obs_row pool_rows[] = {
	{ .name = "tes_dpdk_mempool_available_mbufs",
	  .help = "Packet buffers free in the mempool (per-lcore caches included)",
	  .type = OBS_GAUGE,
	  .off = offsetof(struct pool_snap, avail) },
	{ .name = "tes_dpdk_mempool_in_use_mbufs",
	  .help = "Packet buffers of the mempool in use",
	  .type = OBS_GAUGE,
	  .off = offsetof(struct pool_snap, in_use) },
};

/* One worker: its loop's counters, its stack's, and its stack's memory
 * (the snapshot the worker takes every scan) as words. */
struct worker_snap {
	struct dp_worker_stats ws;
	struct stack_stats ss;
	uint64_t mem_used, mem_budget, mem_preallocated, mem_conns_used, mem_bufs_used;
};

static unsigned workers_count(const void *arg)
{
	return dpgw_workers(arg);
}

static bool worker_read(const void *arg, unsigned i, void *snap)
{
	const struct dpgw *d = arg;
	struct worker_snap *s = snap;
	struct stack_mem m;

	dpgw_worker_stats(d, i, &s->ws);
	dpgw_stack_stats(d, i, &s->ss);
	dpgw_stack_mem(d, i, &m);
	s->mem_used = m.used;
	s->mem_budget = m.budget;
	s->mem_preallocated = m.preallocated;
	s->mem_conns_used = m.conns_used;
	s->mem_bufs_used = m.bufs_used;
	return true;
}

static const char *state_name(unsigned i)
{
	return tcp_state_name((enum tcp_state)i);
}

#define WS(f) offsetof(struct worker_snap, ws.f)
#define SS(f) offsetof(struct worker_snap, ss.f)
#define WF(m, f, k, h)                                        \
	{                                                     \
		.name = m, .help = h, .key = k, .off = WS(f), \
	}
/* Stack counters exported per worker: the ones an operator watches for
 * loss, floods and abuse.  The rest are on the telemetry socket
 * (/tesgate/stack, the "stack" group below). */
#define SF(m, f, k, h)                                        \
	{                                                     \
		.name = m, .help = h, .key = k, .off = SS(f), \
	}

static const struct obs_row worker_rows[] = {
	WF("tes_dpdk_worker_received_packets_total", rx_pkts, "rx_pkts",
	   "Packets the worker took from its receive queue"),
	WF("tes_dpdk_worker_sent_packets_total", tx_pkts, "tx_pkts",
	   "Packets the worker put on its transmit queue"),
	WF("tes_dpdk_worker_send_dropped_packets_total", tx_drops, "tx_drops",
	   "Packets the transmit queue would not take after retries"),
	WF("tes_dpdk_worker_checksum_bad_packets_total", rx_csum_bad, "rx_csum_bad",
	   "Packets the NIC marked with a bad checksum"),
	WF("tes_dpdk_worker_poll_loops_total", loops, "loops", "Iterations of the poll loop"),
	WF("tes_dpdk_worker_steered_out_packets_total", steered_out, "steered_out",
	   "Packets received by this worker and handed to the worker owning their flow"),
	WF("tes_dpdk_worker_steered_in_packets_total", steered_in, "steered_in",
	   "Packets taken from this worker's steering ring (other workers received them)"),
	WF("tes_dpdk_worker_steer_dropped_packets_total", steer_drops, "steer_drops",
	   "Packets dropped because the owning worker's steering ring was full"),
	WF("tes_dpdk_worker_arp_shared_total", arp_shared, "arp_shared",
	   "Copies of ARP replies passed to the other workers"),
	/* seconds, as Prometheus wants time */
	{ .name = "tes_dpdk_worker_busy_seconds_total",
	  .help = "Time in poll loop iterations that received or sent packets (the rest is "
		  "spent polling empty queues)",
	  .off = WS(busy_ns),
	  .div = 1e9 },
	SF("tes_stack_received_frames_total", rx_frames, NULL, "Frames the stack received"),
	SF("tes_stack_sent_frames_total", tx_frames, NULL, "Frames the stack sent"),
	SF("tes_stack_connections_accepted_total", accepts, "accepts",
	   "TCP connections accepted by the stack's listener"),
	SF("tes_stack_connections_established_total", established, "established",
	   "TCP connections that reached ESTABLISHED"),
	SF("tes_stack_retransmits_total", retransmits, NULL,
	   "TCP segments sent again (data, FIN, SYN; fast retransmits included)"),
	SF("tes_stack_rto_expirations_total", rto_expired, NULL, "TCP retransmission timeouts"),
	SF("tes_stack_syn_cookies_sent_total", syn_cookies_sent, NULL,
	   "SYN-ACKs with a SYN cookie (no half-open entry: the half-open cap or backlog reached, "
	   "or no slot or memory)"),
	SF("tes_stack_syn_cookies_validated_total", syn_cookies_validated, NULL,
	   "ACKs that carried a valid SYN cookie (a connection made from it)"),
	SF("tes_stack_syn_cookies_failed_total", syn_cookies_failed, NULL,
	   "ACKs whose SYN cookie did not validate"),
	SF("tes_stack_checksum_errors_total", checksum_errors, NULL,
	   "Packets dropped for a bad IPv4, ICMP or TCP checksum"),
	SF("tes_stack_out_of_order_segments_total", ooo_segments, NULL,
	   "TCP segments received out of order and kept"),
	SF("tes_stack_out_of_order_dropped_total", ooo_dropped, NULL,
	   "Out-of-order TCP segments dropped (over the per-connection cap)"),
	SF("tes_stack_early_drops_total", early_drops, NULL,
	   "SYNs from sources in drop, discarded before any state existed"),
	SF("tes_stack_syn_queue_full_total", syn_queue_full, NULL,
	   "SYNs past the half-open cap (syn_rcvd_max) or the listener's backlog, answered with a "
	   "cookie"),
	SF("tes_stack_resets_received_total", rst_rx, NULL, "TCP resets received"),
	SF("tes_stack_resets_sent_total", rst_tx, NULL, "TCP resets sent"),
	SF("tes_stack_idle_timeouts_total", idle_timeouts, NULL,
	   "TCP connections closed by the stack's idle timeout"),
	{ .name = "tes_stack_connections",
	  .help = "TCP connections of the stack by state",
	  .type = OBS_GAUGE,
	  .off = SS(conns_by_state),
	  .l2 = "state",
	  .n = TCP_NSTATES,
	  .name_of = state_name,
	  .stride = sizeof(uint64_t) },
	{ .name = "tes_stack_memory_used_bytes",
	  .help = "Memory the stack has accounted to connections and buffers",
	  .type = OBS_GAUGE,
	  .key = "mem_used_bytes",
	  .off = offsetof(struct worker_snap, mem_used) },
	{ .name = "tes_stack_memory_budget_bytes",
	  .help = "The stack's memory budget; beyond it new connections are refused",
	  .type = OBS_GAUGE,
	  .off = offsetof(struct worker_snap, mem_budget) },
	/* /tesgate/workers only */
	{ .key = "rx_copied", .off = WS(rx_copied) },
	{ .key = "busy_ns", .off = WS(busy_ns) },
	{ .key = "conns_used", .off = offsetof(struct worker_snap, mem_conns_used) },
};

/* /tesgate/stack: every counter of stack_stats.h under its own name (and
 * the connections by state as state_<NAME>), and the memory. */
static const char *stack_name(unsigned i)
{
	return stack_stat_name(i);
}

static const struct obs_row stack_rows[] = {
	{ .key = "",
	  .off = offsetof(struct worker_snap, ss),
	  .n = sizeof(struct stack_stats) / sizeof(uint64_t),
	  .name_of = stack_name,
	  .stride = sizeof(uint64_t) },
	{ .key = "mem_used_bytes", .off = offsetof(struct worker_snap, mem_used) },
	{ .key = "mem_budget_bytes", .off = offsetof(struct worker_snap, mem_budget) },
	{ .key = "mem_preallocated_bytes", .off = offsetof(struct worker_snap, mem_preallocated) },
	{ .key = "mem_conns_used", .off = offsetof(struct worker_snap, mem_conns_used) },
	{ .key = "mem_bufs_used", .off = offsetof(struct worker_snap, mem_bufs_used) },
};

#undef WS
#undef SS
#undef WF
#undef SF

int dpgw_export(struct dpgw *d, struct obs_registry *r)
{
	const size_t nstack = sizeof(struct stack_stats) / sizeof(uint64_t);
	struct obs_group port = {
		.name = "dpdk_port",
		.rows = port_rows,
		.nrows = sizeof(port_rows) / sizeof(port_rows[0]),
		.size = sizeof(struct rte_eth_stats),
		.read = port_read,
		.arg = d,
		.inst_label = "port",
		.count = one,
		.inst_name = port_name,
	};
	struct obs_group pools = {
		.name = "dpdk_mempools",
		.rows = pool_rows,
		.nrows = sizeof(pool_rows) / sizeof(pool_rows[0]),
		.size = sizeof(struct pool_snap),
		.read = pool_read,
		.arg = d,
		.inst_label = "pool",
		.count = pools_count,
		.inst_name = pool_name,
	};
	struct obs_group workers = {
		.name = "dpdk_workers",
		.rows = worker_rows,
		.nrows = sizeof(worker_rows) / sizeof(worker_rows[0]),
		.size = sizeof(struct worker_snap),
		.read = worker_read,
		.arg = d,
		.inst_label = "worker",
		.count = workers_count,
	};
	struct obs_group stack = workers;

	/* the stack's names must cover its struct, word for word */
	if (!stack_stat_name(nstack - 1) || stack_stat_name(nstack)) {
		log_msg(LOG_ERROR,
			"dpdk exports: stack_stat_name does not match struct stack_stats");
		return -1;
	}
	stack.name = "stack";
	stack.rows = stack_rows;
	stack.nrows = sizeof(stack_rows) / sizeof(stack_rows[0]);
	d->npools = 0;
	for (int s = 0; s < DP_MAX_SOCKETS; s++) {
		const struct rte_mempool *mp = d->port.pool[s];
		bool dup = false;

		for (unsigned i = 0; i < d->npools; i++)
			dup |= d->pools[i] == mp;
		if (mp && !dup)
			d->pools[d->npools++] = mp;
	}
	if (obs_add(r, &port) != 0 || obs_add(r, &pools) != 0 || obs_add(r, &workers) != 0 ||
	    obs_add(r, &stack) != 0)
		return -1;
	return 0;
}
