/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Notices before enforcement (docs/tescontrol.8.md, NOTICES): each
 * tenant's contacts (a webhook, mail addresses: `tesctl notice set`) are
 * told days_before days before each of its servers starts being throttled
 * and blocked, and when a server is resolved.
 *
 * Durable and at least once: a notice is written to the journal in the
 * store (store/records.h) before its first delivery is tried, and each
 * delivery is marked done in the journal only after the receiver took it
 * (a 2xx from the webhook, 250 from the relay after the message).  At
 * start-up every delivery not done is tried again; a receiver that is down
 * is tried again with a doubling delay (notice_retry_min up to
 * notice_retry_max) until it takes it or notice_expire_days pass.  A
 * notice sent twice (tescontrol killed between the delivery and its
 * record) carries the same id both times, so a receiver can tell.
 *
 * When: a notice of a date is due days_before days before it (by
 * tescontrol's clock, so the test clock moves it); it is made when it
 * falls due, or, if tescontrol was not running or the clock jumped, at
 * the first look after that while the date is still ahead (or when the
 * jump went over both).  A date before the contacts were set gets no
 * notice.  A date that moves (a pause) is a new date: its notice comes
 * anew.
 *
 * The network I/O runs on a thread of its own (sender.h); the event loop
 * never waits for a receiver.
 *
 * Threads: the event loop's (the sender's thread is sender.c's).
 */
#ifndef TES_CONTROLPLANE_NOTIFY_NOTICES_H
#define TES_CONTROLPLANE_NOTIFY_NOTICES_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "contract/promfmt.h"
#include "controlplane/loop.h"
#include "controlplane/state/state.h"
#include "controlplane/store/records.h"

struct cp_notices_config {
	const char *smtp_relay; /* host:port for mail; "" : no mail */
	const char *mail_from;  /* the envelope and From: address */
	unsigned retry_min;     /* seconds before the first retry */
	unsigned retry_max;     /* the longest delay between retries */
	unsigned timeout;       /* seconds one delivery may take */
	unsigned expire_days;   /* give a delivery up after this many days */
	const char *version;    /* tescontrol's, for the User-Agent */
};

struct cp_notices_counts {
	uint64_t made[STORE_NOTICE_KINDS];
	uint64_t delivered_webhook, delivered_mail;
	uint64_t failed_webhook, failed_mail; /* attempts that failed */
	uint64_t expired;
	uint64_t store_errors;
};

struct cp_notices;

/* Load the contacts and the journal (before privileges are dropped); the
 * timers join loop.  0, or -1 (logged). */
int cp_notices_init(struct cp_notices **out, const struct cp_notices_config *c, struct cp_state *st,
		    struct cp_loop *loop);
/* Start the sender thread and send what the journal has pending (after
 * the drop).  0 or -1 (logged). */
int cp_notices_start(struct cp_notices *n);
void cp_notices_stop(struct cp_notices *n);

/* State's subscriber (ctx is the struct cp_notices): a change that may
 * move a date makes the next round look again. */
void cp_notices_on_note(void *ctx, const struct cp_note *n);
/* After a round of events: make the notices that fell due. */
void cp_notices_after_round(struct cp_notices *n);

/* ---- contacts (the admin commands) ---- */
/* Check and set a tenant's contacts (the tenant must exist; c->since is
 * kept from the contacts it replaces, else now).  0, or -1 with err. */
int cp_notices_set_contacts(struct cp_notices *n, const struct store_contacts *c, char *err,
			    size_t errlen);
int cp_notices_clear_contacts(struct cp_notices *n, uint32_t tenant_id, char *err, size_t errlen);
/* A tenant's contacts, or NULL. */
const struct store_contacts *cp_notices_contacts(const struct cp_notices *n, uint32_t tenant_id);
/* The contacts as tesctl shows them (the secret left out). */
json_t *cp_notices_contacts_json(const struct cp_notices *n, const struct store_contacts *c);
/* The journal: [{id, kind, tenant, server, date, due, deliveries: [...]}],
 * of one tenant or (0) all; only those not delivered yet with pending. */
json_t *cp_notices_list(const struct cp_notices *n, uint32_t tenant_id, bool pending);

/* ---- telemetry ---- */
const struct cp_notices_counts *cp_notices_counts(const struct cp_notices *n);
/* The tes_notice* families (NULL n: none). */
void cp_notices_metrics(const struct cp_notices *n, struct prom_buf *b);

/* ---- for tests ---- */
/* The body a notice of kind about server s (of tenant t) due at `due`
 * for date would carry; malloc'd JSON, NULL without memory. */
char *cp_notice_body(const struct cp_state *st, const char *id, enum store_notice_kind kind,
		     const struct tes_server *s, const struct tes_tenant *t, int64_t date,
		     int64_t due, unsigned days_before);
/* HMAC-SHA256 of body under secret, as "sha256=" and 64 hex digits. */
void cp_notice_signature(const char *secret, const char *body, char out[72]);
/* The delay before retry number `attempts` (1: the first retry). */
unsigned cp_notice_backoff(unsigned retry_min, unsigned retry_max, uint32_t attempts);

#endif
