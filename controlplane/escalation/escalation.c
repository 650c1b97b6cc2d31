/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Escalation: what falls due when, and its announcement (escalation.h).
 */
#include "controlplane/escalation/escalation.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "controlplane/log.h"

static void fmt_time(const struct cp_esc *e, int64_t t, char *buf, size_t len)
{
	tes_time_format(t, e->st->policy.utc_offset_min, buf, len);
}

static void log_stage(const struct cp_esc *e, const struct tes_server *s, unsigned from,
		      unsigned to, int64_t due, int64_t now, const char *why)
{
	const struct tes_stage *stg = &e->st->policy.stage[to - 1];
	char when[40], late[96] = "";

	fmt_time(e, due, when, sizeof(when));
	if (now - due > 1)
		snprintf(late, sizeof(late), ", applied %lld s late%s%s%s", (long long)(now - due),
			 why ? " (" : "", why ? why : "", why ? ")" : "");
	cp_info("stage change: tenant %u server %s: stage %u -> %u (%u min/h throttled, %u min/h"
		" blocked), due %s%s",
		s->tenant_id, s->fqdn, from, to, stg->throttle_min, stg->block_min, when, late);
}

/* Log every stage the server went through since the one it last announced,
 * each with the time it fell due, walking the model's change times. */
static void log_changes(const struct cp_esc *e, const struct cp_server *c, unsigned stage,
			enum tes_status status, int64_t now, const char *why)
{
	const struct tes_policy *pol = &e->st->policy;
	const struct tes_server *s = &c->v.s;
	const struct tes_tenant *t = cp_state_server_tenant(e->st, s);
	unsigned prev = c->v.stage_logged;

	if (status != TES_STATUS_RESOLVED && stage > prev) {
		int64_t at = s->first_detected;

		for (int i = 0; i < 4 * TES_STAGE_COUNT && prev < stage; i++) {
			int64_t due = tes_server_next_change(s, t, pol, at);
			unsigned k;

			if (due == INT64_MAX || due > now || due <= at)
				break;
			k = tes_server_stage(s, t, pol, due);
			if (k > prev) {
				log_stage(e, s, prev, k, due, now, why);
				prev = k;
			}
			at = due;
		}
		if (prev != stage) /* the walk could not place it: say when it was seen */
			log_stage(e, s, prev, stage, now, now, why);
	} else if (stage != prev) {
		cp_info("stage change: tenant %u server %s: stage %u -> %u (%s)", s->tenant_id,
			s->fqdn, prev, stage, why ? why : "policy");
	}
	if (status != c->v.status_logged)
		cp_info("status change: tenant %u server %s: %s -> %s%s%s%s", s->tenant_id, s->fqdn,
			tes_status_name(c->v.status_logged), tes_status_name(status),
			why ? " (" : "", why ? why : "", why ? ")" : "");
}

/* Past forget_after: the server goes (state notifies). */
static void age_out(struct cp_esc *e, uint32_t slot, const struct cp_server *c)
{
	char when[40];

	fmt_time(e, c->v.s.last_seen, when, sizeof(when));
	if (c->v.s.tenant_id != 0)
		cp_info("forgotten: tenant %u server %s, not seen since %s (forget_after %u days)",
			c->v.s.tenant_id, c->v.s.fqdn, when, e->st->policy.forget_after_days);
	e->counts.forgotten++;
	cp_state_forget(e->st, slot, "forgotten");
}

/* The stage or status differs from what was announced: log, count and
 * announce it. */
static void announce(struct cp_esc *e, uint32_t slot, struct cp_server *c, unsigned stage,
		     enum tes_status status, int64_t now, const char *why)
{
	struct cp_note n = {
		.kind = CP_NOTE_SERVER,
		.now = now,
		.slot = slot,
		.server = &c->v.s,
		.stage = stage,
		.status = status,
		.event = stage != c->v.stage_logged ? "stage_change" : "status_change",
	};

	log_changes(e, c, stage, status, now, why);
	if (stage != c->v.stage_logged && stage <= TES_STAGE_COUNT)
		e->counts.stage_entered[stage]++;
	if (status != c->v.status_logged && (unsigned)status < TES_STATUS_COUNT)
		e->counts.status_entered[status]++;
	n.fields =
		json_pack("{s:i, s:s, s:s*}", "from_stage", (int)c->v.stage_logged, "from_status",
			  tes_status_name((enum tes_status)c->v.status_logged), "reason", why);
	c->v.stage_logged = (uint8_t)stage;
	c->v.status_logged = (uint8_t)status;
	e->counts.stage_changes++;
	/* What was announced is bookkeeping, not a first detection: the
	 * periodic flush writes it; a crash before then only repeats the log
	 * line at start-up. */
	cp_server_mark_dirty(&e->st->tab, slot);
	cp_state_emit(e->st, &n);
	json_decref(n.fields);
}

void esc_evaluate(struct cp_esc *e, uint32_t slot, int64_t now, const char *why)
{
	struct cp_state *st = e->st;
	struct cp_server *c = cp_server_at(&st->tab, slot);
	struct cp_note looked = {
		.kind = CP_NOTE_SERVER_EVALUATED,
		.now = now,
		.slot = slot,
		.why = why,
	};
	enum tes_status status;
	unsigned stage;

	if (c) {
		looked.server = &c->v.s;
		looked.stage = c->v.stage_logged;
		looked.status = (enum tes_status)c->v.status_logged;
	}
	cp_state_emit(st, &looked);
	if (!c)
		return;
	if (now >= tes_server_forget_at(&c->v.s, &st->policy)) {
		age_out(e, slot, c);
		return;
	}
	cp_state_server_view(st, &c->v.s, now, &stage, &status);
	if (stage != c->v.stage_logged || status != c->v.status_logged)
		announce(e, slot, c, stage, status, now, why);
	cp_sched_set(&st->tab, slot, cp_state_next_event(st, &c->v.s, now));
}

/* Compliance rules carry dates: when one passes (or always, with force:
 * start-up, a clock set back), the state re-classifies; the next date is
 * due then. */
static void catalog_dates(struct cp_esc *e, bool force, const char *why)
{
	int64_t now = cp_clock_now(e->clock);

	if (!force && e->catalog_due > now)
		return;
	if (cp_state_catalog_dates(e->st, now, why)) {
		e->catalog_due = now + 10;
		return;
	}
	e->catalog_due = catalog_next_change(e->st->catalog, now);
}

void esc_run_due(struct cp_esc *e, const char *why)
{
	int64_t now = cp_clock_now(e->clock);
	uint32_t slot;

	catalog_dates(e, false, why);
	while ((slot = cp_sched_pop_due(&e->st->tab, now)) != CP_NO_SLOT) {
		e->counts.escalations_due++;
		esc_evaluate(e, slot, now, why);
	}
	esc_arm(e);
}

void esc_evaluate_all(struct cp_esc *e, const char *why)
{
	int64_t now = cp_clock_now(e->clock);

	catalog_dates(e, true, why); /* dates passed meanwhile */
	cp_sched_clear(&e->st->tab);
	for (uint32_t i = 0; i < e->st->tab.nslots; i++)
		esc_evaluate(e, i, now, why);
	esc_arm(e);
}

void esc_evaluate_tenant(struct cp_esc *e, uint32_t tenant_id, const char *why)
{
	int64_t now = cp_clock_now(e->clock);

	for (uint32_t i = 0; i < e->st->tab.nslots; i++) {
		struct cp_server *c = cp_server_at(&e->st->tab, i);

		if (c && c->v.s.tenant_id == tenant_id)
			esc_evaluate(e, i, now, why);
	}
	esc_arm(e);
}

void esc_catalog_loaded(struct cp_esc *e)
{
	e->catalog_due = catalog_next_change(e->st->catalog, cp_clock_now(e->clock));
	esc_arm(e);
}

void esc_on_note(void *ctx, const struct cp_note *n)
{
	struct cp_esc *e = ctx;
	struct cp_server *c;

	switch (n->kind) {
	case CP_NOTE_SERVER:
		if (!n->reschedule)
			return;
		c = cp_server_at(&e->st->tab, n->slot);
		if (c)
			cp_sched_set(&e->st->tab, n->slot,
				     cp_state_next_event(e->st, &c->v.s, n->now));
		esc_arm(e);
		return;
	case CP_NOTE_SERVER_RESUMED:
		esc_evaluate(e, n->slot, n->now, n->why);
		esc_arm(e);
		return;
	/* Another appliance changed it (a shared store): what the operator's
	 * command does here after the state's call, the note does there. */
	case CP_NOTE_TENANT:
		if (n->reschedule && n->tenant)
			esc_evaluate_tenant(e, n->tenant->id, "changed on another appliance");
		return;
	case CP_NOTE_POLICY:
		if (n->reschedule)
			esc_evaluate_all(e, "policy from another appliance");
		return;
	case CP_NOTE_CATALOG:
		if (n->reschedule)
			esc_catalog_loaded(e);
		return;
	default:
		return;
	}
}

void esc_arm(struct cp_esc *e)
{
	struct itimerspec its;
	int64_t due;

	memset(&its, 0, sizeof(its));
	/* The test clock only moves by command, and the command runs what
	 * fell due itself: the real-time timer stays disarmed. */
	due = e->clock->test ? INT64_MAX : cp_sched_peek(&e->st->tab);
	if (!e->clock->test && e->catalog_due < due)
		due = e->catalog_due;
	if (due != INT64_MAX)
		its.it_value.tv_sec = (time_t)(due > 0 ? due : 1);
	if (due != INT64_MAX && due != e->armed_due)
		e->counts.timer_armed++;
	e->armed_due = due;
	/* CANCEL_ON_SET: a wall-clock step (NTP, an operator) wakes us so
	 * that changes now due are not missed until the old deadline. */
	if (timerfd_settime(e->timer.fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL))
		cp_err("arming the escalation timer: %s", strerror(errno));
}

static void on_timer(struct cp_watch *w, uint32_t events)
{
	struct cp_esc *e = cp_container_of(w, struct cp_esc, timer);
	uint64_t n;

	(void)events;
	e->armed_due = INT64_MAX;
	if (read(w->fd, &n, sizeof(n)) < 0 && errno == ECANCELED) {
		cp_info("the system clock was set: re-evaluating every server");
		esc_evaluate_all(e, "system clock set");
		return;
	}
	e->counts.timer_fired++;
	esc_run_due(e, NULL);
}

int esc_init(struct cp_esc *e, struct cp_state *st, struct cp_clock *clock, struct cp_loop *loop)
{
	memset(e, 0, sizeof(*e));
	e->st = st;
	e->clock = clock;
	e->loop = loop;
	e->armed_due = INT64_MAX;
	e->timer.fn = on_timer;
	e->timer.fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
	if (e->timer.fd < 0) {
		cp_err("timerfd_create: %s", strerror(errno));
		return -1;
	}
	if (cp_watch_add(loop, &e->timer, EPOLLIN)) {
		cp_err("setting up the escalation timer: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void esc_fini(struct cp_esc *e)
{
	if (e->timer.fd >= 0) {
		cp_watch_del(e->loop, &e->timer);
		close(e->timer.fd);
	}
	e->timer.fd = -1;
}
