/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The watch: one long POST to /v3/watch whose answer is a stream of JSON
 * messages, run on curl's multi interface so that nothing blocks.
 *
 * Why multi and not a thread of our own: tescontrol is one event loop
 * (epoll); a watch that is one more descriptor in that loop needs no
 * locking, no hand-off queue and no second owner of the callbacks' data.  A
 * caller that wants a thread anyway runs etcd_watch_wait() in it.  curl's
 * sockets and its timer (a timerfd) go into an epoll set of the watch's
 * own, and that epoll descriptor is what the caller polls; a second timerfd
 * paces reconnections and bounds how long an attempt may take to get its
 * "created" answer.
 *
 * Resuming: every delivered event moves next_rev to its mod_revision + 1,
 * and a new stream starts there, so nothing is lost or repeated across a
 * reconnection; events below next_rev that a member sends anyway are
 * dropped (and counted).  etcd never splits one revision's events over two
 * messages unless asked to (fragment), which this client does not ask.
 *
 * Each attempt goes to the next endpoint; after a full round of failures
 * the pause doubles from 100 ms up to 2 s, with +-25 % jitter so that a
 * fleet of appliances does not reconnect in step.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "etcd_int.h"
#include "etcd_parse.h"

#define AUTH_MAX_RESPONSE (64u << 10)
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000

enum wstate {
	W_IDLE,    /* waiting for the retry timer */
	W_AUTH,    /* authenticating (a POST of its own) */
	W_WATCH,   /* the stream is open or opening */
	W_STOPPED, /* COMPACTED or FAILED was delivered */
};

/* What the completion of the current transfer leads to. */
enum waction {
	A_NONE,      /* decide from the transfer's result */
	A_RECONNECT, /* reason says why; next endpoint */
	A_REAUTH,    /* the token is stale */
	A_STOP,      /* already reported as COMPACTED or FAILED */
};

struct etcd_watch {
	struct etcd_conf conf;
	char *token;
	etcd_watch_cb cb;
	void *ctx;
	char *key_b64;
	char *end_b64; /* NULL: the key alone */
	bool prev_kv;
	bool progress;
	char what[160]; /* "watch key '/a'" */

	int64_t next_rev;
	enum wstate state;
	size_t ep;
	unsigned fails; /* attempts since the last "created" */
	bool reauthed;  /* this attempt already got a fresh token */
	bool created;
	bool checked_status;
	enum waction action;
	char reason[400];

	CURLM *multi;
	CURL *easy;
	struct curl_slist *hdrs;
	char curl_err[CURL_ERROR_SIZE];
	struct etcd_stream stream;
	char *auth_buf;
	size_t auth_len;

	int epfd;
	int curl_tfd;
	int retry_tfd;
	bool in_process;
	uint64_t rng;
	uint64_t reconnects;
	uint64_t duplicates;
};

/* --- timers and sockets -------------------------------------------------------- */

static void arm(int tfd, long ms)
{
	struct itimerspec its = { 0 };
	if (ms == 0)
		its.it_value.tv_nsec = 1; /* as soon as possible; 0 would disarm */
	else if (ms > 0) {
		its.it_value.tv_sec = ms / 1000;
		its.it_value.tv_nsec = (ms % 1000) * 1000000L;
	}
	timerfd_settime(tfd, 0, &its, NULL);
}

static void drain(int fd)
{
	uint64_t v;
	while (read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
		;
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *ud)
{
	(void)m;
	struct etcd_watch *w = ud;
	arm(w->curl_tfd, timeout_ms);
	return 0;
}

static int on_curl_socket(CURL *e, curl_socket_t s, int what, void *ud, void *sp)
{
	(void)e;
	(void)sp;
	struct etcd_watch *w = ud;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	struct epoll_event ev = { .data.fd = s };
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, s, &ev) != 0 && errno == ENOENT)
		epoll_ctl(w->epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

/* --- delivering ---------------------------------------------------------------- */

static void deliver(struct etcd_watch *w, enum etcd_watch_kind kind, int64_t revision,
		    const char *message)
{
	struct etcd_watch_update u = {
		.kind = kind,
		.endpoint = w->conf.endpoints[w->ep],
		.revision = revision,
		.message = message,
	};
	w->cb(&u, w->ctx);
}

/* stage: "etcd canceled the watch", "authenticate". */
static void stop_failed(struct etcd_watch *w, const char *stage, const char *detail)
{
	char msg[600];
	snprintf(msg, sizeof(msg), "etcd %s at %s: %s: %s", w->what, w->conf.endpoints[w->ep],
		 stage, detail);
	w->state = W_STOPPED;
	w->action = A_STOP;
	deliver(w, ETCD_WATCH_FAILED, 0, msg);
}

static void drop_token(struct etcd_watch *w)
{
	if (w->token) {
		memset(w->token, 0, strlen(w->token));
		free(w->token);
		w->token = NULL;
	}
}

/* One message of the stream.  Returns 0 to go on, 1 to end the stream
 * (w->action says what next). */
static int on_message(const char *obj, size_t len, void *ud)
{
	struct etcd_watch *w = ud;
	json_error_t jerr;
	json_t *root = json_loadb(obj, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(w->reason, sizeof(w->reason), "not an etcd watch stream: bad JSON: %s",
			 jerr.text);
		w->action = A_RECONNECT;
		return 1;
	}
	struct etcd_watch_response r;
	struct etcd_rpc_error e;
	char perr[200];
	int rc = etcd_parse_watch_response(root, &r, &e, perr, sizeof(perr));
	json_decref(root);
	if (rc < 0) {
		snprintf(w->reason, sizeof(w->reason), "not an etcd watch message: %s", perr);
		w->action = A_RECONNECT;
		return 1;
	}
	if (rc == 1) {
		snprintf(w->reason, sizeof(w->reason), "%s (gRPC code %d)", e.message, e.code);
		w->action = w->conf.username && etcd_error_is_stale_token(e.code, e.message)
				    ? A_REAUTH
				    : A_RECONNECT;
		return 1;
	}
	int ret = 0;
	if (r.canceled) {
		if (r.compact_revision > 0) {
			w->state = W_STOPPED;
			w->action = A_STOP;
			struct etcd_watch_update u = {
				.kind = ETCD_WATCH_COMPACTED,
				.endpoint = w->conf.endpoints[w->ep],
				.revision = r.header.revision,
				.compact_revision = r.compact_revision,
			};
			w->cb(&u, w->ctx);
		} else if (w->conf.username && !w->reauthed &&
			   (strstr(r.cancel_reason, "Unauthenticated") ||
			    etcd_error_is_stale_token(0, r.cancel_reason))) {
			snprintf(w->reason, sizeof(w->reason), "%s", r.cancel_reason);
			w->action = A_REAUTH;
		} else if (strstr(r.cancel_reason, "no leader") ||
			   strstr(r.cancel_reason, "Unavailable")) {
			snprintf(w->reason, sizeof(w->reason), "%s", r.cancel_reason);
			w->action = A_RECONNECT;
		} else {
			stop_failed(w, "etcd canceled the watch",
				    r.cancel_reason[0] ? r.cancel_reason : "no reason given");
		}
		ret = 1;
	} else if (r.created) {
		w->created = true;
		w->fails = 0;
		arm(w->retry_tfd, -1);
		/* Without a start revision the watch begins after the
		 * revision it was created at. */
		if (w->next_rev == 0)
			w->next_rev = r.header.revision + 1;
		deliver(w, ETCD_WATCH_CREATED, r.header.revision, NULL);
	} else if (r.nevents > 0) {
		size_t first = 0;
		/* Revisions are in order (the parser checks), so anything
		 * already delivered is a prefix. */
		while (first < r.nevents && r.events[first].kv.mod_revision < w->next_rev)
			first++;
		w->duplicates += first;
		if (first < r.nevents) {
			w->next_rev = r.events[r.nevents - 1].kv.mod_revision + 1;
			struct etcd_watch_update u = {
				.kind = ETCD_WATCH_EVENTS,
				.endpoint = w->conf.endpoints[w->ep],
				.revision = r.header.revision,
				.events = r.events + first,
				.nevents = r.nevents - first,
			};
			w->cb(&u, w->ctx);
		}
	} else if (w->created) {
		/* A progress notification: etcd sends it only to a watcher
		 * that has caught up, so everything up to the header's
		 * revision has been delivered. */
		if (r.header.revision + 1 > w->next_rev)
			w->next_rev = r.header.revision + 1;
		deliver(w, ETCD_WATCH_PROGRESS, r.header.revision, NULL);
	}
	etcd_watch_response_free(&r);
	return ret;
}

static size_t on_stream_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct etcd_watch *w = ud;
	size_t n = size * nmemb;
	if (w->action != A_NONE)
		return 0;
	if (!w->checked_status) {
		long http = 0;
		curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &http);
		w->checked_status = true;
		if (http != 200) {
			char ex[100];
			etcd_key_text(ptr, n < 60 ? n : 60, ex, sizeof(ex));
			snprintf(w->reason, sizeof(w->reason),
				 "not an etcd watch stream (HTTP %ld, '%s')", http, ex);
			w->action = A_RECONNECT;
			return 0;
		}
	}
	int rc = etcd_stream_feed(&w->stream, ptr, n, on_message, w);
	if (rc < 0 && w->stream.too_big) {
		/* Every member would send the same batch again. */
		stop_failed(w, "cannot resume", w->stream.err);
		return 0;
	}
	if (rc < 0) {
		snprintf(w->reason, sizeof(w->reason), "not an etcd watch stream: %s",
			 w->stream.err);
		w->action = A_RECONNECT;
		return 0;
	}
	return rc == 0 ? n : 0;
}

static size_t on_auth_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct etcd_watch *w = ud;
	size_t n = size * nmemb;
	if (n > AUTH_MAX_RESPONSE - w->auth_len)
		return 0;
	if (!w->auth_buf) {
		w->auth_buf = malloc(AUTH_MAX_RESPONSE + 1);
		if (!w->auth_buf)
			return 0;
	}
	memcpy(w->auth_buf + w->auth_len, ptr, n);
	w->auth_len += n;
	w->auth_buf[w->auth_len] = '\0';
	return n;
}

/* --- attempts ----------------------------------------------------------------- */

static void end_transfer(struct etcd_watch *w)
{
	if (w->easy) {
		curl_multi_remove_handle(w->multi, w->easy);
		curl_easy_cleanup(w->easy);
		w->easy = NULL;
	}
	curl_slist_free_all(w->hdrs);
	w->hdrs = NULL;
	etcd_stream_reset(&w->stream);
	w->auth_len = 0;
}

static char *watch_body(const struct etcd_watch *w)
{
	json_t *cr = json_object(), *req = json_object();
	char *s = NULL;
	if (!cr || !req || json_object_set_new(cr, "key", json_string(w->key_b64)) ||
	    (w->end_b64 && json_object_set_new(cr, "range_end", json_string(w->end_b64))) ||
	    (w->next_rev > 0 &&
	     json_object_set_new(cr, "start_revision", etcd_json_int(w->next_rev))) ||
	    (w->prev_kv && json_object_set_new(cr, "prev_kv", json_true())) ||
	    (w->progress && json_object_set_new(cr, "progress_notify", json_true()))) {
		json_decref(cr);
		json_decref(req);
		return NULL;
	}
	json_object_set_new(req, "create_request", cr);
	s = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	return s;
}

static void schedule(struct etcd_watch *w, bool next_endpoint);

/* Starts a transfer on the current endpoint: authentication first when a
 * user is configured and there is no token. */
static void start_attempt(struct etcd_watch *w)
{
	bool auth = w->conf.username && !w->token;
	char url[600];
	char *body = NULL;
	snprintf(url, sizeof(url), "%s%s", w->conf.endpoints[w->ep],
		 auth ? "/v3/auth/authenticate" : "/v3/watch");
	if (auth) {
		json_t *j = json_pack("{s:s, s:s}", "name", w->conf.username, "password",
				      w->conf.password);
		body = j ? json_dumps(j, JSON_COMPACT) : NULL;
		json_decref(j);
	} else {
		body = watch_body(w);
	}
	w->easy = curl_easy_init();
	w->hdrs = etcd_headers(auth ? NULL : w->token, true);
	if (!body || !w->easy || !w->hdrs) {
		free(body);
		snprintf(w->reason, sizeof(w->reason), "out of memory");
		end_transfer(w);
		deliver(w, ETCD_WATCH_DISCONNECTED, 0, w->reason);
		schedule(w, false);
		return;
	}
	CURL *e = w->easy;
	etcd_curl_common(e, &w->conf);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, w->hdrs);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, w->curl_err);
	curl_easy_setopt(e, CURLOPT_PRIVATE, w);
	if (auth) {
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)w->conf.timeout_ms);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_auth_data);
	} else {
		long idle = w->conf.watch_keepalive_s;
		curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, idle);
		curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, idle / 3 > 0 ? idle / 3 : 1L);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_stream_data);
	}
	curl_easy_setopt(e, CURLOPT_WRITEDATA, w);
	memset(body, 0, strlen(body)); /* it may hold the password */
	free(body);
	w->curl_err[0] = '\0';
	w->reason[0] = '\0';
	w->action = A_NONE;
	w->created = false;
	w->checked_status = false;
	w->state = auth ? W_AUTH : W_WATCH;
	/* The answer ("created", or the token) must come within the timeout;
	 * after that the stream may stay silent for as long as it likes. */
	arm(w->retry_tfd, w->conf.timeout_ms);
	if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
		snprintf(w->reason, sizeof(w->reason), "curl_multi_add_handle failed");
		end_transfer(w);
		deliver(w, ETCD_WATCH_DISCONNECTED, 0, w->reason);
		schedule(w, false);
	}
}

static uint64_t next_rand(struct etcd_watch *w)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return w->rng;
}

/* After a failed attempt: the next endpoint at once while a round is not
 * complete, then a growing pause. */
static void schedule(struct etcd_watch *w, bool next_endpoint)
{
	if (w->state == W_STOPPED)
		return;
	if (next_endpoint && w->conf.n > 1)
		w->ep = (w->ep + 1) % w->conf.n;
	w->fails++;
	w->reconnects++;
	w->state = W_IDLE;
	long ms = 0;
	if (w->fails >= w->conf.n) {
		unsigned rounds = (unsigned)(w->fails / w->conf.n) - 1;
		ms = RETRY_MIN_MS << (rounds > 5 ? 5 : rounds);
		if (ms > RETRY_MAX_MS)
			ms = RETRY_MAX_MS;
		ms = ms * 3 / 4 + (long)(next_rand(w) % (uint64_t)(ms / 2 + 1));
	}
	arm(w->retry_tfd, ms);
}

/* An authentication transfer ended. */
static void auth_done(struct etcd_watch *w, CURLcode cc)
{
	long http = 0;
	curl_easy_getinfo(w->easy, CURLINFO_RESPONSE_CODE, &http);
	char why[400];
	json_t *root = NULL;
	if (cc != CURLE_OK) {
		snprintf(why, sizeof(why), "authenticate: %s",
			 w->curl_err[0] ? w->curl_err : curl_easy_strerror(cc));
		goto retry;
	}
	json_error_t jerr;
	root = json_loadb(w->auth_buf ? w->auth_buf : "", w->auth_len, JSON_REJECT_DUPLICATES,
			  &jerr);
	struct etcd_rpc_error e;
	if (!json_is_object(root)) {
		snprintf(why, sizeof(why), "authenticate: not an etcd answer (HTTP %ld)", http);
		goto retry;
	}
	if (etcd_parse_error(root, &e)) {
		if (strstr(e.message, "authentication failed")) {
			json_decref(root);
			end_transfer(w);
			stop_failed(w, "authenticate", e.message);
			return;
		}
		snprintf(why, sizeof(why), "authenticate: %s (gRPC code %d)", e.message, e.code);
		goto retry;
	}
	char perr[200];
	char *tok;
	if (etcd_parse_auth(root, &tok, perr, sizeof(perr)) != 0) {
		snprintf(why, sizeof(why), "authenticate: %s", perr);
		goto retry;
	}
	json_decref(root);
	drop_token(w);
	w->token = tok;
	end_transfer(w);
	start_attempt(w);
	return;
retry:
	json_decref(root);
	end_transfer(w);
	char msg[700];
	snprintf(msg, sizeof(msg), "etcd %s at %s: %s; resuming from revision %lld", w->what,
		 w->conf.endpoints[w->ep], why, (long long)w->next_rev);
	deliver(w, ETCD_WATCH_DISCONNECTED, 0, msg);
	schedule(w, true);
}

/* The stream ended (the member went away, or on_message ended it). */
static void watch_done(struct etcd_watch *w, CURLcode cc)
{
	enum waction a = w->action;
	char why[500];
	if (a == A_STOP || w->state == W_STOPPED) {
		end_transfer(w);
		return;
	}
	if (a == A_NONE) {
		if (cc == CURLE_OK)
			snprintf(why, sizeof(why), "the member ended the stream");
		else
			snprintf(why, sizeof(why), "%s",
				 w->curl_err[0] ? w->curl_err : curl_easy_strerror(cc));
	} else {
		snprintf(why, sizeof(why), "%s", w->reason);
	}
	end_transfer(w);
	char msg[700];
	snprintf(msg, sizeof(msg), "etcd %s at %s: %s; resuming from revision %lld", w->what,
		 w->conf.endpoints[w->ep], why, (long long)w->next_rev);
	deliver(w, ETCD_WATCH_DISCONNECTED, 0, msg);
	if (a == A_REAUTH && !w->reauthed) {
		drop_token(w);
		w->reauthed = true;
		schedule(w, false);
		return;
	}
	w->reauthed = false;
	schedule(w, true);
}

static void check_done(struct etcd_watch *w)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(w->multi, &left))) {
		if (m->msg != CURLMSG_DONE || m->easy_handle != w->easy)
			continue;
		CURLcode cc = m->data.result;
		if (w->state == W_AUTH)
			auth_done(w, cc);
		else
			watch_done(w, cc);
	}
}

/* The retry timer: start the next attempt, or give up on one that has not
 * been answered in time. */
static void on_retry_timer(struct etcd_watch *w)
{
	if (w->state == W_IDLE) {
		start_attempt(w);
		return;
	}
	if ((w->state == W_AUTH || w->state == W_WATCH) && !w->created) {
		char msg[600];
		snprintf(msg, sizeof(msg),
			 "etcd %s at %s: no answer within %d ms; resuming from "
			 "revision %lld",
			 w->what, w->conf.endpoints[w->ep], w->conf.timeout_ms,
			 (long long)w->next_rev);
		end_transfer(w);
		deliver(w, ETCD_WATCH_DISCONNECTED, 0, msg);
		w->reauthed = false;
		schedule(w, true);
	}
}

/* --- the API -------------------------------------------------------------------- */

struct etcd_watch *etcd_watch_new(struct etcd_client *c, const struct etcd_watch_opts *o,
				  etcd_watch_cb cb, void *ctx, char *err, size_t errlen)
{
	if (!o || !cb || (o->key_len == 0 && !o->prefix && !o->range_end_len) ||
	    o->start_revision < 0) {
		etcd_errf(err, errlen, "etcd watch: no callback, empty key or negative revision");
		return NULL;
	}
	if (etcd_global_init(err, errlen) != 0)
		return NULL;
	struct etcd_watch *w = calloc(1, sizeof(*w));
	if (!w) {
		etcd_errf(err, errlen, "etcd watch: out of memory");
		return NULL;
	}
	w->epfd = w->curl_tfd = w->retry_tfd = -1;
	char kt[120];
	etcd_key_text(o->key, o->key_len, kt, sizeof(kt));
	snprintf(w->what, sizeof(w->what), "watch %s '%s'",
		 o->prefix || o->range_end_len ? "prefix" : "key", kt);
	if (etcd_conf_dup(&w->conf, etcd_client_conf(c)) != 0)
		goto oom;
	if (etcd_client_token(c) && !(w->token = strdup(etcd_client_token(c))))
		goto oom;
	w->cb = cb;
	w->ctx = ctx;
	w->prev_kv = o->prev_kv;
	w->progress = o->progress_notify;
	w->next_rev = o->start_revision;
	w->ep = etcd_client_current(c);
	w->rng = (uint64_t)(uintptr_t)w ^ (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ 1;
	if (!(w->key_b64 = etcd_b64_encode(o->key, o->key_len)))
		goto oom;
	if (o->range_end_len) {
		if (!(w->end_b64 = etcd_b64_encode(o->range_end, o->range_end_len)))
			goto oom;
	} else if (o->prefix) {
		uint8_t *end = malloc(o->key_len ? o->key_len : 1);
		if (!end)
			goto oom;
		size_t el = etcd_prefix_end(o->key, o->key_len, end);
		w->end_b64 = etcd_b64_encode(end, el);
		free(end);
		if (!w->end_b64)
			goto oom;
	}
	etcd_stream_init(&w->stream, w->conf.watch_max_batch);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->curl_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	w->retry_tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (w->epfd < 0 || w->curl_tfd < 0 || w->retry_tfd < 0) {
		etcd_errf(err, errlen, "etcd %s: epoll/timerfd: %s", w->what, strerror(errno));
		etcd_watch_free(w);
		return NULL;
	}
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = w->curl_tfd };
	struct epoll_event ev2 = { .events = EPOLLIN, .data.fd = w->retry_tfd };
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->curl_tfd, &ev) != 0 ||
	    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->retry_tfd, &ev2) != 0) {
		etcd_errf(err, errlen, "etcd %s: epoll_ctl: %s", w->what, strerror(errno));
		etcd_watch_free(w);
		return NULL;
	}
	w->multi = curl_multi_init();
	if (!w->multi)
		goto oom;
	curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
	curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
	/* The first attempt starts from the retry timer, on the caller's first
	 * etcd_watch_process: callbacks never run inside etcd_watch_new. */
	w->state = W_IDLE;
	arm(w->retry_tfd, 0);
	return w;
oom:
	etcd_errf(err, errlen, "etcd %s: out of memory", w->what);
	etcd_watch_free(w);
	return NULL;
}

void etcd_watch_free(struct etcd_watch *w)
{
	if (!w)
		return;
	end_transfer(w);
	if (w->multi)
		curl_multi_cleanup(w->multi);
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->curl_tfd >= 0)
		close(w->curl_tfd);
	if (w->retry_tfd >= 0)
		close(w->retry_tfd);
	etcd_stream_free(&w->stream);
	free(w->auth_buf);
	drop_token(w);
	free(w->key_b64);
	free(w->end_b64);
	etcd_conf_free(&w->conf);
	free(w);
}

int etcd_watch_fd(const struct etcd_watch *w)
{
	return w->epfd;
}

int64_t etcd_watch_next_revision(const struct etcd_watch *w)
{
	return w->next_rev;
}

void etcd_watch_stats(const struct etcd_watch *w, uint64_t *reconnects, uint64_t *duplicates)
{
	if (reconnects)
		*reconnects = w->reconnects;
	if (duplicates)
		*duplicates = w->duplicates;
}

int etcd_watch_process(struct etcd_watch *w, char *err, size_t errlen)
{
	if (w->in_process) {
		etcd_errf(err, errlen, "etcd %s: etcd_watch_process called from its own callback",
			  w->what);
		return -1;
	}
	w->in_process = true;
	/* A few rounds, so that what one step makes ready (a connection, then
	 * its data) is handled now rather than on the next wake-up; bounded,
	 * so a busy stream cannot hold the caller's loop. */
	for (int round = 0; round < 8 && w->state != W_STOPPED; round++) {
		struct epoll_event evs[8];
		int n = epoll_wait(w->epfd, evs, 8, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			etcd_errf(err, errlen, "etcd %s: epoll_wait: %s", w->what, strerror(errno));
			w->in_process = false;
			return -1;
		}
		if (n == 0)
			break;
		int running;
		for (int i = 0; i < n && w->state != W_STOPPED; i++) {
			int fd = evs[i].data.fd;
			if (fd == w->curl_tfd) {
				drain(fd);
				curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0,
							 &running);
			} else if (fd == w->retry_tfd) {
				drain(fd);
				on_retry_timer(w);
			} else {
				int flags = 0;
				if (evs[i].events & EPOLLIN)
					flags |= CURL_CSELECT_IN;
				if (evs[i].events & EPOLLOUT)
					flags |= CURL_CSELECT_OUT;
				if (evs[i].events & (EPOLLERR | EPOLLHUP))
					flags |= CURL_CSELECT_ERR;
				curl_multi_socket_action(w->multi, fd, flags, &running);
			}
			check_done(w);
		}
	}
	if (w->state == W_STOPPED && w->easy)
		end_transfer(w);
	w->in_process = false;
	return w->state == W_STOPPED ? 1 : 0;
}

int etcd_watch_wait(struct etcd_watch *w, int timeout_ms, char *err, size_t errlen)
{
	struct pollfd p = { .fd = w->epfd, .events = POLLIN };
	if (poll(&p, 1, timeout_ms) < 0 && errno != EINTR) {
		etcd_errf(err, errlen, "etcd %s: poll: %s", w->what, strerror(errno));
		return -1;
	}
	return etcd_watch_process(w, err, errlen);
}
