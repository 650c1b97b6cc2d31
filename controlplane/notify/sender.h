/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The notices' sender: one thread that does the network I/O of a delivery
 * (an HTTP POST to a webhook, or one mail through the SMTP relay, both
 * with libcurl and a time limit), so that a slow or dead receiver never
 * holds up tescontrol's event loop.  The loop hands it complete requests
 * (the body, the headers, the signature are made on the loop) and reads
 * the outcomes back: sender_fd() becomes readable when one is waiting.
 * The sender keeps nothing: what was delivered is recorded by the loop, in
 * the store, when it reads the outcome.
 *
 * Threads: sender_start, sender_push, sender_pop, sender_fd and
 * sender_stop are the event loop's; the sender's own thread runs the jobs.
 */
#ifndef TES_CONTROLPLANE_NOTIFY_SENDER_H
#define TES_CONTROLPLANE_NOTIFY_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sender;

/* One delivery to make.  Everything is owned by the job (sender_job_free). */
struct sender_job {
	uint64_t tag; /* the caller's: comes back in the result */
	bool mail;
	char *url; /* the webhook; for mail smtp://relay:port */
	/* webhook: the JSON body and the extra header lines ("Name: value") */
	char *body;
	char **headers;
	size_t nheaders;
	/* mail: the envelope and the whole message (CRLF lines) */
	char *mail_from;
	char *rcpt;
	char *message;
	struct sender_job *next;
};

struct sender_result {
	uint64_t tag;
	bool ok;
	char error[256]; /* "" when ok */
};

void sender_job_free(struct sender_job *j);

/* timeout: seconds each delivery may take.  NULL when the thread cannot be
 * made (logged). */
struct sender *sender_start(unsigned timeout, const char *user_agent);
/* Stop after the delivery in progress (at most timeout seconds); jobs not
 * started are dropped (the journal still has them). */
void sender_stop(struct sender *s);
/* Queue a job (taken: the sender frees it).  Never blocks on I/O. */
void sender_push(struct sender *s, struct sender_job *j);
/* Readable when outcomes wait. */
int sender_fd(const struct sender *s);
/* The next outcome; false when none waits. */
bool sender_pop(struct sender *s, struct sender_result *out);

/* Run one job here and now (the thread's body; tests call it directly). */
void sender_run(const struct sender_job *j, unsigned timeout, const char *user_agent,
		struct sender_result *out);

#endif
