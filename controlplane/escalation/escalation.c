/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Escalation: the stage clock of every server runs in the model
 * (enforce/decide.h); nothing needs to change for a stage to start.  What
 * tescontrol adds is the announcement: when a server's stage or status
 * changes, at the time it falls due, the change is logged and the server is
 * pushed to the gateways.  One timerfd (CLOCK_REALTIME, absolute) fires at
 * the earliest next change of all servers.  A change that fell due while
 * tescontrol was down is found at start-up by comparing each server with
 * the stage and status it last announced.
 */
#include "controlplane/cp.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static void fmt_time(const struct cp *cp, int64_t t, char *buf, size_t len)
{
	tes_time_format(t, cp->policy.utc_offset_min, buf, len);
}

static void log_stage(struct cp *cp, const struct tes_server *s, unsigned from, unsigned to,
		      int64_t due, int64_t now, const char *why)
{
	const struct tes_stage *st = &cp->policy.stage[to - 1];
	char when[40], late[96] = "";

	fmt_time(cp, due, when, sizeof(when));
	if (now - due > 1)
		snprintf(late, sizeof(late), ", applied %lld s late%s%s%s", (long long)(now - due),
			 why ? " (" : "", why ? why : "", why ? ")" : "");
	cp_info("stage change: tenant %u server %s: stage %u -> %u (%u min/h throttled, %u min/h"
		" blocked), due %s%s",
		s->tenant_id, s->fqdn, from, to, st->throttle_min, st->block_min, when, late);
}

/* Log every stage the server went through since the one it last announced,
 * each with the time it fell due, walking the model's change times. */
static void log_changes(struct cp *cp, const struct cp_server *c, unsigned stage,
			enum tes_status status, int64_t now, const char *why)
{
	const struct tes_server *s = &c->v.s;
	const struct tes_tenant *t = cp_server_tenant(cp, s);
	unsigned prev = c->v.stage_logged;

	if (status != TES_STATUS_RESOLVED && stage > prev) {
		int64_t at = s->first_detected;

		for (int i = 0; i < 4 * TES_STAGE_COUNT && prev < stage; i++) {
			int64_t due = tes_server_next_change(s, t, &cp->policy, at);
			unsigned k;

			if (due == INT64_MAX || due > now || due <= at)
				break;
			k = tes_server_stage(s, t, &cp->policy, due);
			if (k > prev) {
				log_stage(cp, s, prev, k, due, now, why);
				prev = k;
			}
			at = due;
		}
		if (prev != stage) /* the walk could not place it: say when it was seen */
			log_stage(cp, s, prev, stage, now, now, why);
	} else if (stage != prev) {
		cp_info("stage change: tenant %u server %s: stage %u -> %u (%s)", s->tenant_id,
			s->fqdn, prev, stage, why ? why : "policy");
	}
	if (status != c->v.status_logged)
		cp_info("status change: tenant %u server %s: %s -> %s%s%s%s", s->tenant_id, s->fqdn,
			tes_status_name(c->v.status_logged), tes_status_name(status),
			why ? " (" : "", why ? why : "", why ? ")" : "");
}

void esc_evaluate(struct cp *cp, uint32_t slot, int64_t now, const char *why)
{
	struct cp_server *c = cp_server_at(&cp->st, slot);
	const struct tes_tenant *t;
	enum tes_status status;
	unsigned stage;
	int64_t next;

	cp_xdp_request(cp);
	if (!c)
		return;
	if (now >= tes_server_forget_at(&c->v.s, &cp->policy)) {
		char when[40];

		fmt_time(cp, c->v.s.last_seen, when, sizeof(when));
		if (c->v.s.tenant_id != 0)
			cp_info("forgotten: tenant %u server %s, not seen since %s (forget_after %u"
				" days)",
				c->v.s.tenant_id, c->v.s.fqdn, when, cp->policy.forget_after_days);
		cp->counts.forgotten++;
		cp_server_forget(cp, slot, "forgotten");
		return;
	}
	t = cp_server_tenant(cp, &c->v.s);
	stage = tes_server_stage(&c->v.s, t, &cp->policy, now);
	status = tes_server_status(&c->v.s, t, &cp->policy, now);
	if (stage != c->v.stage_logged || status != c->v.status_logged) {
		log_changes(cp, c, stage, status, now, why);
		if (stage != c->v.stage_logged && stage <= TES_STAGE_COUNT)
			cp->counts.stage_entered[stage]++;
		if (status != c->v.status_logged && (unsigned)status < TES_STATUS_COUNT)
			cp->counts.status_entered[status]++;
		cp_evlog_server(cp, stage != c->v.stage_logged ? "stage_change" : "status_change",
				&c->v.s, stage, status,
				json_pack("{s:i, s:s, s:s*}", "from_stage", (int)c->v.stage_logged,
					  "from_status",
					  tes_status_name((enum tes_status)c->v.status_logged),
					  "reason", why));
		c->v.stage_logged = (uint8_t)stage;
		c->v.status_logged = (uint8_t)status;
		cp->counts.stage_changes++;
		/* What was announced is bookkeeping, not a first detection:
		 * the periodic flush writes it; a crash before then only
		 * repeats the log line at start-up. */
		cp_server_mark_dirty(&cp->st, slot);
		gw_push_server(cp, slot, now);
	}
	next = cp_server_next_event(cp, &c->v.s, now);
	cp_sched_set(&cp->st, slot, next);
}

void esc_run_due(struct cp *cp, const char *why)
{
	int64_t now = cp_now(cp);
	uint32_t slot;

	cp_catalog_boundaries(cp, false, why); /* a compliance rule's date */
	while ((slot = cp_sched_pop_due(&cp->st, now)) != CP_NO_SLOT) {
		cp->counts.escalations_due++;
		esc_evaluate(cp, slot, now, why);
	}
	esc_arm(cp);
}

void esc_evaluate_all(struct cp *cp, const char *why)
{
	int64_t now = cp_now(cp);

	cp_catalog_boundaries(cp, true, why); /* dates passed meanwhile */
	cp_sched_clear(&cp->st);
	for (uint32_t i = 0; i < cp->st.nslots; i++)
		esc_evaluate(cp, i, now, why);
	esc_arm(cp);
}

void esc_evaluate_tenant(struct cp *cp, uint32_t tenant_id, const char *why)
{
	int64_t now = cp_now(cp);

	for (uint32_t i = 0; i < cp->st.nslots; i++) {
		struct cp_server *c = cp_server_at(&cp->st, i);

		if (c && c->v.s.tenant_id == tenant_id)
			esc_evaluate(cp, i, now, why);
	}
	esc_arm(cp);
}

void esc_arm(struct cp *cp)
{
	struct itimerspec its;
	int64_t due;

	memset(&its, 0, sizeof(its));
	/* The test clock only moves by command, and the command runs what
	 * fell due itself: the real-time timer stays disarmed. */
	due = cp->test_clock ? INT64_MAX : cp_sched_peek(&cp->st);
	if (!cp->test_clock && cp->catalog_due < due)
		due = cp->catalog_due;
	if (due != INT64_MAX)
		its.it_value.tv_sec = (time_t)(due > 0 ? due : 1);
	if (due != INT64_MAX && due != cp->armed_due)
		cp->counts.timer_armed++;
	cp->armed_due = due;
	/* CANCEL_ON_SET: a wall-clock step (NTP, an operator) wakes us so
	 * that changes now due are not missed until the old deadline. */
	if (timerfd_settime(cp->timer.fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL))
		cp_err("arming the escalation timer: %s", strerror(errno));
}

static void on_timer(struct cp *cp, struct cp_watch *w, uint32_t events)
{
	uint64_t n;

	(void)events;
	cp->armed_due = INT64_MAX;
	if (read(w->fd, &n, sizeof(n)) < 0 && errno == ECANCELED) {
		cp_info("the system clock was set: re-evaluating every server");
		esc_evaluate_all(cp, "system clock set");
		return;
	}
	cp->counts.timer_fired++;
	esc_run_due(cp, NULL);
}

int cp_flush_dirty(struct cp *cp)
{
	struct cp_tables *st = &cp->st;
	size_t n = 0;

	if (!st->ndirty && !st->npending_del)
		return 0;
	if (store_begin(cp->store))
		goto fail;
	/* Deletions first: a server forgotten and seen again since the last
	 * flush is deleted and written anew. */
	for (size_t i = 0; i < st->npending_del; i++) {
		if (store_delete_server(cp->store, st->pending_del[i].tenant_id,
					st->pending_del[i].fqdn))
			goto fail;
	}
	for (size_t i = 0; i < st->ndirty; i++) {
		struct cp_server *c = cp_server_at(st, st->dirty[i]);

		if (!c || !c->dirty)
			continue;
		if (store_put_server(cp->store, &c->v))
			goto fail;
		n++;
	}
	if (store_commit(cp->store))
		goto fail;
	for (size_t i = 0; i < st->ndirty; i++) {
		struct cp_server *c = cp_server_at(st, st->dirty[i]);

		if (c && c->dirty) {
			c->dirty = false;
			c->stored = true;
		}
	}
	cp_debug("flushed %zu servers, deleted %zu", n, st->npending_del);
	st->ndirty = 0;
	st->npending_del = 0;
	return 0;
fail:
	store_rollback(cp->store);
	cp->counts.store_errors++;
	cp_err("writing last-seen times and sources of %zu servers, %zu deletions: %s (will"
	       " retry)",
	       st->ndirty, st->npending_del, store_errmsg(cp->store));
	return -1;
}

static void on_flush(struct cp *cp, struct cp_watch *w, uint32_t events)
{
	uint64_t n;

	(void)events;
	if (read(w->fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		cp_debug("flush timer: %s", strerror(errno));
	cp_flush_dirty(cp);
	/* Resets, deletions and policy loads change who is at a cap too: the
	 * gateways hear of it within flush_seconds. */
	cp_tenant_caps_check(cp);
}

int esc_init(struct cp *cp)
{
	struct itimerspec its;

	cp->timer.fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	cp->timer.fn = on_timer;
	cp->flush.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	cp->flush.fn = on_flush;
	if (cp->timer.fd < 0 || cp->flush.fd < 0) {
		cp_err("timerfd_create: %s", strerror(errno));
		return -1;
	}
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = cp->cfg.flush_seconds;
	its.it_interval.tv_sec = cp->cfg.flush_seconds;
	if (timerfd_settime(cp->flush.fd, 0, &its, NULL) || cp_watch_add(cp, &cp->timer, EPOLLIN) ||
	    cp_watch_add(cp, &cp->flush, EPOLLIN)) {
		cp_err("setting up timers: %s", strerror(errno));
		return -1;
	}
	return 0;
}
