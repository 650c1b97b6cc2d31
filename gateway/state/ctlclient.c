/* SPDX-License-Identifier: BSD-3-Clause */
#include "gateway/state/ctlclient.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "gateway/observe/log.h"
#include "gateway/state/refring.h"
#include "gateway/state/sightcoal.h"
#include "gateway/state/sightring.h"

#define OUT_MAX (1u << 20)    /* bytes queued towards tescontrol */
#define OUT_LOW (OUT_MAX / 2) /* take sightings from the rings below this */
#define POLL_MS 100
/* While workers are sending: a ring of distinct sightings fills in
 * SIGHTRING_SIZE messages, and with coalescing no ack arrives to wake us. */
#define POLL_BUSY_MS 2
/* Identical sightings in this window after the first are sent as one. */
#define COALESCE_MS 1000
#define COALESCE_SETS 1024 /* x 4 keys: distinct servers a second */
#define COUNTERS_EVERY_MS 5000
/* Servers' refused messages per counters message (about 300 octets each). */
#define REFUSALS_PER_MSG 256
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 10000
/* Sightings of servers not on record (new names) a worker queues per
 * tenant and second: a tenant flooding its own connector with new names
 * takes at most this much of the ring (SIGHTRING_SIZE), so another tenant's
 * first detection still finds room.  Servers on record are not limited;
 * one over the budget is reported again by its next message. */
#define TENANT_BUDGET 128
#define BUDGET_SLOTS 64 /* tenants per worker with a budget of their own */

struct tenant_budget {
	uint32_t tenant;
	uint32_t used;
	int64_t sec;
};

struct ctlclient {
	struct ctlclient_params p;
	char socket_path[108];
	char gateway_id[64];
	pthread_t thread;
	int stop;

	/* Per worker: sightings of mail over a connector, and (scope "all")
	 * of mail over none, drained after the first, so that a flood of
	 * untrusted names cannot crowd a connector's sighting out. */
	struct sightring *rings;
	struct sightring *urings;
	/* Per worker, written only by it. */
	struct tenant_budget (*budget)[BUDGET_SLOTS];
	/* Per worker: refused messages by server (refring.h), and what the
	 * control thread took of them and has not sent yet. */
	struct refring *refrings;
	struct refagg refagg;
	struct ctl_server_count *refout;
	int fd;
	struct ctl_decoder dec;
	uint8_t *out;
	size_t out_len;
	int64_t next_try_ms;
	unsigned backoff_ms;
	int64_t next_counters_ms;
	bool warned_test_clock;
	uint64_t seq;
	struct sightcoal *coal;
	bool popped; /* the last pass took sightings: poll again soon */

	int64_t fixed_now; /* tescontrol's test clock; 0 when following real time */
	struct ctlclient_stats st;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ctlclient_now(const struct ctlclient *cc)
{
	int64_t fixed = cc ? __atomic_load_n(&cc->fixed_now, __ATOMIC_RELAXED) : 0;
	return fixed ? fixed : (int64_t)time(NULL);
}

#define STAT_INC(cc, field) __atomic_fetch_add(&(cc)->st.field, 1, __ATOMIC_RELAXED)

void ctlclient_stats(const struct ctlclient *cc, struct ctlclient_stats *out)
{
	const struct ctlclient_stats *s = &cc->st;
	out->connected = __atomic_load_n(&s->connected, __ATOMIC_RELAXED);
	out->synced = __atomic_load_n(&s->synced, __ATOMIC_RELAXED);
	out->connects = __atomic_load_n(&s->connects, __ATOMIC_RELAXED);
	out->syncs = __atomic_load_n(&s->syncs, __ATOMIC_RELAXED);
	out->updates = __atomic_load_n(&s->updates, __ATOMIC_RELAXED);
	out->rejected = __atomic_load_n(&s->rejected, __ATOMIC_RELAXED);
	out->sightings_sent = __atomic_load_n(&s->sightings_sent, __ATOMIC_RELAXED);
	out->acks = __atomic_load_n(&s->acks, __ATOMIC_RELAXED);
	out->generation = __atomic_load_n(&s->generation, __ATOMIC_ACQUIRE);
	out->sightings_coalesced = __atomic_load_n(&s->sightings_coalesced, __ATOMIC_RELAXED);
	out->sightings_dropped = 0;
	out->sightings_untrusted = 0;
	out->sightings_capped = 0;
	out->sightings_untrusted_dropped = 0;
	out->sightings_limited = 0;
	for (unsigned w = 0; w < cc->p.workers; w++) {
		out->sightings_dropped += sightring_dropped(&cc->rings[w]);
		out->sightings_dropped += sightring_dropped(&cc->urings[w]);
		out->sightings_untrusted_dropped += sightring_dropped(&cc->urings[w]);
		out->sightings_untrusted += sightring_untrusted(&cc->rings[w]);
		out->sightings_capped += sightring_capped(&cc->rings[w]);
		out->sightings_limited += sightring_limited(&cc->rings[w]);
	}
}

/* ---- the workers' side ---------------------------------------------- */

bool ctlclient_sighting(struct ctlclient *cc, unsigned w, const struct ctl_sighting *s)
{
	if (!cc || w >= cc->p.workers)
		return false;
	/* Mail over no connector is not enforced under this scope: tescontrol
	 * would only count it, so it is counted here and goes nowhere, and a
	 * stream of forged names costs neither side anything more. */
	if (s->tenant_id == 0) {
		if (enfstate_scope(cc->p.st) == TES_SCOPE_CONNECTORS) {
			sightring_count_untrusted(&cc->rings[w]);
			return true;
		}
		return sightring_push(&cc->urings[w], s);
	}
	if (sightring_fold(&cc->rings[w], s))
		return true;
	switch (enfstate_sighting_kind(cc->p.st, s->tenant_id, s->fqdn)) {
	case ENFSTATE_SIGHTING_KNOWN:
		return sightring_push(&cc->rings[w], s);
	case ENFSTATE_SIGHTING_CAPPED:
		/* a server not on record would not be tracked: a tenant's own
		 * connector flooding names costs a counter here */
		sightring_count_capped(&cc->rings[w]);
		return true;
	case ENFSTATE_SIGHTING_NEW:
		break;
	}
	{
		struct tenant_budget *b = &cc->budget[w][s->tenant_id % BUDGET_SLOTS];
		struct timespec ts;

		/* the vDSO's coarse clock: no system call on a worker */
		clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
		if (b->sec != ts.tv_sec || b->tenant != s->tenant_id) {
			b->sec = ts.tv_sec;
			b->tenant = s->tenant_id;
			b->used = 0;
		}
		if (b->used >= TENANT_BUDGET) {
			sightring_count_limited(&cc->rings[w]);
			return true;
		}
		b->used++;
	}
	return sightring_push(&cc->rings[w], s);
}

bool ctlclient_refusal(struct ctlclient *cc, unsigned w, uint32_t tenant_id, const char *fqdn,
		       bool throttle)
{
	if (!cc || w >= cc->p.workers || !fqdn[0])
		return false;
	return refring_push(&cc->refrings[w], tenant_id, fqdn, throttle);
}

/* ---- connection ----------------------------------------------------- */

static void disconnect(struct ctlclient *cc, const char *why)
{
	if (cc->fd < 0)
		return;
	log_msg(LOG_WARN, "control: lost tescontrol at %s (%s); enforcing with the last state",
		cc->socket_path, why);
	close(cc->fd);
	cc->fd = -1;
	cc->out_len = 0;
	ctl_decoder_free(&cc->dec);
	__atomic_store_n(&cc->st.connected, false, __ATOMIC_RELAXED);
	cc->next_try_ms = mono_ms() + cc->backoff_ms;
}

/* Queue one message (takes the reference).  False when the output is over
 * its bound: the connection is then hopelessly behind and is dropped. */
static bool send_msg(struct ctlclient *cc, json_t *msg)
{
	char err[CTL_ERR_MAX];
	uint8_t *frame;
	size_t len;

	if (!msg)
		return false;
	int rc = ctl_frame_encode(msg, &frame, &len, err, sizeof(err));
	json_decref(msg);
	if (rc != 0) {
		log_msg(LOG_ERROR, "control: cannot encode a message: %s", err);
		return true;
	}
	if (cc->out_len + len > OUT_MAX) {
		free(frame);
		disconnect(cc, "output to tescontrol over its bound");
		return false;
	}
	memcpy(cc->out + cc->out_len, frame, len);
	cc->out_len += len;
	free(frame);
	return true;
}

static void try_connect(struct ctlclient *cc)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cc->socket_path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		/* log the first failure of a run of them, not every retry */
		if (cc->backoff_ms == BACKOFF_MIN_MS)
			log_msg(LOG_WARN, "control: cannot reach tescontrol at %s: %s; retrying",
				cc->socket_path, strerror(e));
		cc->next_try_ms = mono_ms() + cc->backoff_ms;
		cc->backoff_ms =
			cc->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : cc->backoff_ms * 2;
		return;
	}
	cc->fd = fd;
	cc->backoff_ms = BACKOFF_MIN_MS;
	ctl_decoder_init(&cc->dec, 0);
	STAT_INC(cc, connects);
	__atomic_store_n(&cc->st.connected, true, __ATOMIC_RELAXED);
	log_msg(LOG_INFO, "control: connected to tescontrol at %s", cc->socket_path);

	struct ctl_hello h;
	snprintf(h.gateway, sizeof(h.gateway), "%s", cc->gateway_id);
	snprintf(h.version, sizeof(h.version), "%s", TES_VERSION);
	send_msg(cc, ctl_hello_to_json(&h));
	cc->next_counters_ms = mono_ms() + 1000;
}

static void flush_out(struct ctlclient *cc)
{
	while (cc->fd >= 0 && cc->out_len > 0) {
		ssize_t n = send(cc->fd, cc->out, cc->out_len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				disconnect(cc, strerror(errno));
			return;
		}
		memmove(cc->out, cc->out + n, cc->out_len - (size_t)n);
		cc->out_len -= (size_t)n;
	}
}

/* ---- applying what tescontrol sends --------------------------------- */

/* The server and, through enfstate's source index, which sources carry it:
 * the connect-time drop and the MAIL FROM verdict are decided from those
 * when they are needed (enfstate_source_drop, enfstate_decide_source), so
 * nothing here depends on the time it is applied. */
static void apply_server(struct ctlclient *cc, const struct tes_server *s)
{
	if (enfstate_server_put(cc->p.st, s) < 0)
		log_msg(LOG_ERROR, "control: cannot store server %s: %s", s->fqdn, strerror(errno));
}

static void apply_delete_server(struct ctlclient *cc, uint32_t tenant_id, const char *fqdn)
{
	enfstate_server_del(cc->p.st, tenant_id, fqdn);
}

static void apply_clock(struct ctlclient *cc, const json_t *msg)
{
	char err[CTL_ERR_MAX];
	int64_t now;
	bool test_clock;

	if (ctl_clock_from_json(msg, &now, &test_clock, err, sizeof(err)) != 0)
		return;
	if (!test_clock) {
		__atomic_store_n(&cc->fixed_now, 0, __ATOMIC_RELAXED);
		return;
	}
	if (!cc->p.follow_test_clock) {
		if (!cc->warned_test_clock)
			log_msg(LOG_WARN,
				"control: tescontrol runs a test clock; this gateway "
				"keeps the real one (start it with a test clock to follow)");
		cc->warned_test_clock = true;
		return;
	}
	__atomic_store_n(&cc->fixed_now, now > 0 ? now : 1, __ATOMIC_RELAXED);
}

static void reject(struct ctlclient *cc, const char *type, const char *err)
{
	STAT_INC(cc, rejected);
	log_msg(LOG_WARN, "control: ignoring a %s message from tescontrol: %s", type, err);
}

static void emit_sighting(void *arg, const struct ctl_sighting *s)
{
	struct ctlclient *cc = arg;
	struct ctl_sighting out = *s;

	if (cc->fd < 0)
		return;
	out.seq = ++cc->seq;
	if (send_msg(cc, ctl_sighting_to_json(&out)))
		STAT_INC(cc, sightings_sent);
}

/* tescontrol's view of some server may have changed (a test clock that
 * moves changes every stage): report afresh. */
static bool changes_state(const char *type)
{
	return !strcmp(type, CTL_T_SERVER) || !strcmp(type, CTL_T_TENANT) ||
	       !strcmp(type, CTL_T_DELETE) || !strcmp(type, CTL_T_POLICY) ||
	       !strcmp(type, CTL_T_CATALOG) || !strcmp(type, CTL_T_SYNC_BEGIN) ||
	       !strcmp(type, CTL_T_CLOCK);
}

/* After msg took effect: readers already see what it changed (the RCU
 * publish happened), so a test that waits for this number can trust the
 * next verdict. */
static void set_generation(struct ctlclient *cc, const json_t *msg)
{
	uint64_t gen;

	if (ctl_msg_gen(msg, &gen))
		__atomic_store_n(&cc->st.generation, gen, __ATOMIC_RELEASE);
}

static void apply(struct ctlclient *cc, json_t *msg)
{
	char err[CTL_ERR_MAX] = "";
	const char *type = ctl_msg_type(msg);

	if (!type) {
		reject(cc, "typeless", err);
		return;
	}
	if (changes_state(type))
		sightcoal_reset(cc->coal, mono_ms(), emit_sighting, cc);
	if (!strcmp(type, CTL_T_SERVER)) {
		struct tes_server s;
		if (ctl_server_msg_from_json(msg, &s, err, sizeof(err)) != 0) {
			reject(cc, type, err);
			return;
		}
		apply_server(cc, &s);
	} else if (!strcmp(type, CTL_T_TENANT)) {
		struct tes_tenant t;
		if (ctl_tenant_msg_from_json(msg, &t, err, sizeof(err)) != 0) {
			reject(cc, type, err);
			return;
		}
		enfstate_tenant_put(cc->p.st, &t);
	} else if (!strcmp(type, CTL_T_DELETE)) {
		struct ctl_delete d;
		if (ctl_delete_from_json(msg, &d, err, sizeof(err)) != 0) {
			reject(cc, type, err);
			return;
		}
		if (d.server)
			apply_delete_server(cc, d.tenant_id, d.fqdn);
		else
			enfstate_tenant_del(cc->p.st, d.tenant_id);
	} else if (!strcmp(type, CTL_T_POLICY)) {
		struct tes_policy pol;
		if (ctl_policy_from_json(msg, &pol, err, sizeof(err)) != 0) {
			reject(cc, type, err);
			return;
		}
		enfstate_policy_set(cc->p.st, &pol);
		log_msg(LOG_INFO, "control: policy updated");
	} else if (!strcmp(type, CTL_T_CATALOG)) {
		struct catalog *c = ctl_catalog_from_json(msg, err, sizeof(err));
		if (!c) {
			reject(cc, type, err);
			return;
		}
		log_msg(LOG_INFO, "control: catalog %s in force", catalog_version(c));
		if (enfstate_catalog_set(cc->p.st, c) != 0)
			catalog_free(c);
	} else if (!strcmp(type, CTL_T_SYNC_BEGIN)) {
		__atomic_store_n(&cc->st.generation, 0, __ATOMIC_RELEASE);
		apply_clock(cc, msg);
		enfstate_sync_begin(cc->p.st);
		return;
	} else if (!strcmp(type, CTL_T_SYNC_END)) {
		size_t gone = enfstate_sync_end(cc->p.st);
		struct enfstate_stats es;
		enfstate_stats(cc->p.st, &es);
		STAT_INC(cc, syncs);
		__atomic_store_n(&cc->st.synced, true, __ATOMIC_RELAXED);
		log_msg(LOG_INFO, "control: synchronised: %zu tenants, %zu servers, %zu removed",
			es.tenants, es.servers, gone);
		set_generation(cc, msg);
		return;
	} else if (!strcmp(type, CTL_T_CLOCK)) {
		apply_clock(cc, msg);
	} else if (!strcmp(type, CTL_T_ACK)) {
		struct ctl_ack a;
		if (ctl_ack_from_json(msg, &a, err, sizeof(err)) == 0) {
			STAT_INC(cc, acks);
			if (!a.ok)
				log_msg(LOG_WARN, "control: sighting %llu refused: %s",
					(unsigned long long)a.seq, a.error);
		}
		return;
	} else if (!strcmp(type, CTL_T_ERROR)) {
		const char *m = "";
		ctl_get_str(msg, "message", &m, err, sizeof(err));
		log_msg(LOG_WARN, "control: tescontrol says: %.200s", m);
		return;
	} else {
		/* a newer tescontrol may send more: not an error */
		log_msg(LOG_DEBUG, "control: ignoring message type %.40s", type);
		return;
	}
	STAT_INC(cc, updates);
	set_generation(cc, msg);
}

static void read_in(struct ctlclient *cc)
{
	uint8_t buf[65536];

	for (;;) {
		ssize_t n = recv(cc->fd, buf, sizeof(buf), 0);
		if (n == 0) {
			disconnect(cc, "tescontrol closed the connection");
			return;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				disconnect(cc, strerror(errno));
			return;
		}
		size_t pos = 0;
		while (pos < (size_t)n && cc->fd >= 0) {
			size_t used = ctl_decoder_feed(&cc->dec, buf + pos, (size_t)n - pos);
			pos += used;
			for (;;) {
				json_t *msg = NULL;
				enum ctl_rc rc = ctl_decoder_next(&cc->dec, &msg);
				if (rc == CTL_MORE)
					break;
				if (rc == CTL_ERROR) {
					char why[300];
					snprintf(why, sizeof(why), "bad frame: %s", cc->dec.err);
					disconnect(cc, why);
					return;
				}
				apply(cc, msg);
				json_decref(msg);
			}
			if (used == 0 && cc->dec.failed) {
				disconnect(cc, cc->dec.err);
				return;
			}
		}
		/* readers may now reclaim what this batch retired */
		enfstate_quiescent();
	}
}

/* ---- the thread ------------------------------------------------------ */

static void send_sightings(struct ctlclient *cc, int64_t now, struct sightring *rings)
{
	struct ctl_sighting s;

	for (unsigned w = 0; w < cc->p.workers; w++) {
		while (cc->fd >= 0 && cc->out_len < OUT_LOW && sightring_pop(&rings[w], &s)) {
			cc->popped = true;
			/* messages that get no sighting of their own: those the
			 * ring folded into this one, and this one if held */
			uint64_t folded = s.count > 1 ? s.count - 1 : 0;
			if (sightcoal_offer(cc->coal, &s, now))
				emit_sighting(cc, &s);
			else
				folded++;
			if (folded)
				__atomic_fetch_add(&cc->st.sightings_coalesced, folded,
						   __ATOMIC_RELAXED);
		}
	}
}

static void send_all_sightings(struct ctlclient *cc, int64_t now)
{
	cc->popped = false;
	/* Connector mail first: untrusted names only get what is left. */
	send_sightings(cc, now, cc->rings);
	send_sightings(cc, now, cc->urings);
	if (cc->fd >= 0)
		sightcoal_flush(cc->coal, now, false, emit_sighting, cc);
}

static void send_counters(struct ctlclient *cc)
{
	struct ctlclient_stats st;
	json_t *c = json_object();

	if (!c)
		return;
	ctlclient_stats(cc, &st);
	json_object_set_new(c, "control_sightings_sent",
			    json_integer((json_int_t)st.sightings_sent));
	json_object_set_new(c, "control_sightings_dropped",
			    json_integer((json_int_t)st.sightings_dropped));
	json_object_set_new(c, "control_connects", json_integer((json_int_t)st.connects));
	json_object_set_new(c, "control_sightings_untrusted",
			    json_integer((json_int_t)st.sightings_untrusted));
	json_object_set_new(c, "control_sightings_capped",
			    json_integer((json_int_t)st.sightings_capped));
	json_object_set_new(c, "control_sightings_limited",
			    json_integer((json_int_t)st.sightings_limited));
	if (cc->p.counters)
		cc->p.counters(cc->p.counters_arg, c);
	uint64_t dropped = cc->refagg.dropped;
	for (unsigned w = 0; w < cc->p.workers; w++)
		dropped += refring_dropped(&cc->refrings[w]);
	json_object_set_new(c, "control_refusals_dropped", json_integer((json_int_t)dropped));
	json_t *m = ctl_counters_to_json(c);
	size_t n =
		cc->out_len < OUT_LOW ? refagg_take(&cc->refagg, cc->refout, REFUSALS_PER_MSG) : 0;
	/* deltas: once queued they are tescontrol's (a connection lost with
	 * them in the buffer loses them: counts for a report, not state) */
	if (m && n && ctl_counters_add_servers(m, cc->refout, n))
		log_msg(LOG_WARN, "control: out of memory sending refused-message counts");
	send_msg(cc, m);
	json_decref(c);
}

/* What the workers refused, into the table the next counters message
 * sends from. */
static void take_refusals(struct ctlclient *cc)
{
	struct refusal r;
	uint32_t n;

	for (unsigned w = 0; w < cc->p.workers; w++) {
		while (refring_pop(&cc->refrings[w], &r, &n))
			refagg_add(&cc->refagg, &r, n);
	}
}

static void *run(void *arg)
{
	struct ctlclient *cc = arg;

	enfstate_thread_register();
	while (!__atomic_load_n(&cc->stop, __ATOMIC_RELAXED)) {
		int64_t now = mono_ms();
		take_refusals(cc);
		if (cc->fd < 0 && now >= cc->next_try_ms)
			try_connect(cc);
		if (cc->fd >= 0) {
			send_all_sightings(cc, now);
			if (cc->fd >= 0 && now >= cc->next_counters_ms) {
				send_counters(cc);
				cc->next_counters_ms = now + COUNTERS_EVERY_MS;
			}
			flush_out(cc);
		}

		struct pollfd pfd = { .fd = cc->fd, .events = POLLIN };
		if (cc->out_len > 0)
			pfd.events |= POLLOUT;
		enfstate_thread_offline();
		int wait = cc->popped ? POLL_BUSY_MS : POLL_MS;
		int n = cc->fd >= 0 ? poll(&pfd, 1, wait) : poll(NULL, 0, wait);
		enfstate_thread_online();
		if (n > 0 && cc->fd >= 0) {
			if (pfd.revents & (POLLIN | POLLHUP | POLLERR))
				read_in(cc);
			if (cc->fd >= 0 && (pfd.revents & POLLOUT))
				flush_out(cc);
		}
		enfstate_quiescent();
	}
	if (cc->fd >= 0) {
		/* what was held for the current second: best effort, the
		 * socket does not block */
		sightcoal_flush(cc->coal, mono_ms(), true, emit_sighting, cc);
		flush_out(cc);
	}
	if (cc->fd >= 0) {
		close(cc->fd);
		cc->fd = -1;
		ctl_decoder_free(&cc->dec);
	}
	enfstate_thread_unregister();
	return NULL;
}

struct ctlclient *ctlclient_start(const struct ctlclient_params *p)
{
	struct ctlclient *cc = calloc(1, sizeof(*cc));

	if (!cc)
		return NULL;
	if (strlen(p->socket_path) >= sizeof(cc->socket_path)) {
		log_msg(LOG_ERROR, "control: socket path too long for a unix socket: %s",
			p->socket_path);
		free(cc);
		return NULL;
	}
	cc->p = *p;
	snprintf(cc->socket_path, sizeof(cc->socket_path), "%s", p->socket_path);
	snprintf(cc->gateway_id, sizeof(cc->gateway_id), "%s", p->gateway_id);
	cc->p.socket_path = cc->socket_path;
	cc->p.gateway_id = cc->gateway_id;
	cc->fd = -1;
	cc->backoff_ms = BACKOFF_MIN_MS;
	cc->rings = calloc(p->workers ? p->workers : 1, sizeof(*cc->rings));
	cc->urings = calloc(p->workers ? p->workers : 1, sizeof(*cc->urings));
	cc->budget = calloc(p->workers ? p->workers : 1, sizeof(*cc->budget));
	cc->refrings = calloc(p->workers ? p->workers : 1, sizeof(*cc->refrings));
	cc->refout = calloc(REFUSALS_PER_MSG, sizeof(*cc->refout));
	cc->out = malloc(OUT_MAX);
	cc->coal = sightcoal_create(COALESCE_SETS, COALESCE_MS);
	if (!cc->rings || !cc->urings || !cc->budget || !cc->out || !cc->coal || !cc->refrings ||
	    !cc->refout) {
		free(cc->refrings);
		free(cc->refout);
		sightcoal_free(cc->coal);
		free(cc->rings);
		free(cc->urings);
		free(cc->budget);
		free(cc->out);
		free(cc);
		return NULL;
	}
	int e = pthread_create(&cc->thread, NULL, run, cc);
	if (e != 0) {
		log_msg(LOG_ERROR, "control: cannot start the control thread: %s", strerror(e));
		free(cc->refrings);
		free(cc->refout);
		sightcoal_free(cc->coal);
		free(cc->rings);
		free(cc->urings);
		free(cc->budget);
		free(cc->out);
		free(cc);
		return NULL;
	}
	pthread_setname_np(cc->thread, "tes-control");
	return cc;
}

void ctlclient_stop(struct ctlclient *cc)
{
	if (!cc)
		return;
	__atomic_store_n(&cc->stop, 1, __ATOMIC_RELAXED);
	pthread_join(cc->thread, NULL);
	free(cc->refrings);
	free(cc->refout);
	refagg_free(&cc->refagg);
	sightcoal_free(cc->coal);
	free(cc->rings);
	free(cc->urings);
	free(cc->budget);
	free(cc->out);
	free(cc);
}
