/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The notices' sender thread (sender.h).
 */
#include "controlplane/notify/sender.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <curl/curl.h>

#include "controlplane/log.h"

struct result_node {
	struct sender_result r;
	struct result_node *next;
};

struct sender {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;                         /* under mu */
	struct sender_job *head, *tail;    /* under mu */
	struct result_node *rhead, *rtail; /* under mu */
	int efd;
	unsigned timeout;
	char *user_agent;
};

void sender_job_free(struct sender_job *j)
{
	if (!j)
		return;
	free(j->url);
	free(j->body);
	for (size_t i = 0; i < j->nheaders; i++)
		free(j->headers[i]);
	free(j->headers);
	free(j->mail_from);
	free(j->rcpt);
	free(j->message);
	free(j);
}

/* ---- one delivery ---- */

struct upload {
	const char *p;
	size_t left;
};

static size_t read_message(char *buf, size_t size, size_t n, void *arg)
{
	struct upload *u = arg;
	size_t k = size * n < u->left ? size * n : u->left;

	memcpy(buf, u->p, k);
	u->p += k;
	u->left -= k;
	return k;
}

/* The receiver's answer body is not wanted, only its status. */
static size_t discard(char *buf, size_t size, size_t n, void *arg)
{
	(void)buf;
	(void)arg;
	return size * n;
}

void sender_run(const struct sender_job *j, unsigned timeout, const char *user_agent,
		struct sender_result *out)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *hdrs = NULL, *rcpt = NULL;
	struct upload up = { 0 };
	CURL *c = curl_easy_init();
	CURLcode rc;
	long code = 0;

	memset(out, 0, sizeof(*out));
	out->tag = j->tag;
	if (!c) {
		snprintf(out->error, sizeof(out->error), "out of memory");
		return;
	}
	curl_easy_setopt(c, CURLOPT_URL, j->url);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)timeout);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)timeout);
	/* only what was configured: no redirects, no other scheme */
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	if (j->mail) {
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp");
		/* STARTTLS when the relay offers it */
		curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY);
		curl_easy_setopt(c, CURLOPT_MAIL_FROM, j->mail_from);
		rcpt = curl_slist_append(NULL, j->rcpt);
		curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
		up.p = j->message;
		up.left = strlen(j->message);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, read_message);
		curl_easy_setopt(c, CURLOPT_READDATA, &up);
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	} else {
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		for (size_t i = 0; i < j->nheaders; i++)
			hdrs = curl_slist_append(hdrs, j->headers[i]);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, j->body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
		curl_easy_setopt(c, CURLOPT_USERAGENT, user_agent);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	}
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		snprintf(out->error, sizeof(out->error), "%s",
			 errbuf[0] ? errbuf : curl_easy_strerror(rc));
	} else if (!j->mail) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 200 && code <= 299)
			out->ok = true;
		else
			snprintf(out->error, sizeof(out->error), "HTTP status %ld", code);
	} else {
		out->ok = true; /* libcurl saw the 250 after the message */
	}
	/* one line for the log and the journal */
	out->error[strcspn(out->error, "\r\n")] = '\0';
	curl_slist_free_all(hdrs);
	curl_slist_free_all(rcpt);
	curl_easy_cleanup(c);
}

/* ---- the thread ---- */

static void *run(void *arg)
{
	struct sender *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		struct sender_job *j;
		struct result_node *rn;
		uint64_t one = 1;

		while (!s->stop && !s->head)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->stop)
			break;
		j = s->head;
		s->head = j->next;
		if (!s->head)
			s->tail = NULL;
		pthread_mutex_unlock(&s->mu);

		rn = calloc(1, sizeof(*rn));
		if (rn)
			sender_run(j, s->timeout, s->user_agent, &rn->r);
		sender_job_free(j);

		pthread_mutex_lock(&s->mu);
		if (rn) {
			if (s->rtail)
				s->rtail->next = rn;
			else
				s->rhead = rn;
			s->rtail = rn;
		}
		/* an outcome lost to no memory is retried: the loop sees the
		 * delivery still pending once its attempt times out */
		if (write(s->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			cp_debug("sender: eventfd: %s", strerror(errno));
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

struct sender *sender_start(unsigned timeout, const char *user_agent)
{
	struct sender *s = calloc(1, sizeof(*s));
	sigset_t all, old;
	int rc;

	if (!s) {
		cp_err("notices: out of memory");
		return NULL;
	}
	s->timeout = timeout;
	s->user_agent = strdup(user_agent);
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0 || !s->user_agent) {
		cp_err("notices: eventfd: %s", strerror(errno));
		goto fail;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	/* libcurl's global set-up is not thread-safe: here, on the loop's
	 * thread, before the sender exists */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		cp_err("notices: libcurl would not initialise");
		goto fail_sync;
	}
	/* The sender takes no signal: the loop's signalfd must get them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&s->thread, NULL, run, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		cp_err("notices: cannot start the sender thread: %s", strerror(rc));
		curl_global_cleanup();
		goto fail_sync;
	}
	return s;
fail_sync:
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
fail:
	if (s->efd >= 0)
		close(s->efd);
	free(s->user_agent);
	free(s);
	return NULL;
}

void sender_stop(struct sender *s)
{
	struct sender_job *j;
	struct result_node *rn;

	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	while ((j = s->head)) {
		s->head = j->next;
		sender_job_free(j);
	}
	while ((rn = s->rhead)) {
		s->rhead = rn->next;
		free(rn);
	}
	curl_global_cleanup();
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	close(s->efd);
	free(s->user_agent);
	free(s);
}

void sender_push(struct sender *s, struct sender_job *j)
{
	j->next = NULL;
	pthread_mutex_lock(&s->mu);
	if (s->tail)
		s->tail->next = j;
	else
		s->head = j;
	s->tail = j;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

int sender_fd(const struct sender *s)
{
	return s->efd;
}

bool sender_pop(struct sender *s, struct sender_result *out)
{
	struct result_node *rn;
	uint64_t n;

	pthread_mutex_lock(&s->mu);
	rn = s->rhead;
	if (rn) {
		s->rhead = rn->next;
		if (!s->rhead)
			s->rtail = NULL;
	} else if (read(s->efd, &n, sizeof(n)) < 0 && errno != EAGAIN) {
		cp_debug("sender: eventfd: %s", strerror(errno));
	}
	pthread_mutex_unlock(&s->mu);
	if (!rn)
		return false;
	*out = rn->r;
	free(rn);
	return true;
}
