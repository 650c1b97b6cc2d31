/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * status, clock.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "controlplane/admin/admin_int.h"

/* The fleet's part of status: whether this appliance reaches etcd, and
 * since when not; null with the SQLite store. */
static json_t *fleet_json(const struct cp_admin *a)
{
	struct store_fleet_status fs;
	struct timespec ts;
	json_t *o;

	if (!store_shared(a->st->store))
		return json_null();
	a->st->store->fleet->status(a->st->store, &fs);
	clock_gettime(CLOCK_REALTIME, &ts);
	o = json_pack("{s:s, s:s, s:s, s:b, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
		      " s:I, s:I}",
		      "appliance", fs.appliance, "store", fs.where, "endpoint", fs.endpoint,
		      "cut_off", fs.cut_off, "cut_off_seconds",
		      (json_int_t)(fs.cut_off ? (int64_t)ts.tv_sec - fs.cut_off_since : 0),
		      "last_error", fs.last_error, "journal", (json_int_t)fs.journal, "revision",
		      (json_int_t)fs.revision, "writes", (json_int_t)fs.writes, "keys_written",
		      (json_int_t)fs.keys_written, "conflicts", (json_int_t)fs.conflicts,
		      "reconciled", (json_int_t)fs.reconciled, "watch_events",
		      (json_int_t)fs.watch_events, "watch_reconnects",
		      (json_int_t)fs.watch_reconnects, "remote_changes",
		      (json_int_t)a->st->counts.fleet_remote, "journaled",
		      (json_int_t)a->st->counts.fleet_journaled, "bad_records",
		      (json_int_t)fs.bad_records);
	set_time(a, o, "cut_off_since", fs.cut_off, fs.cut_off_since);
	return o;
}

int cmd_status(struct cp_admin *a, const json_t *args, json_t **result, char *err, size_t errlen)
{
	unsigned by[TES_STATUS_COUNT] = { 0 };
	int64_t now = cp_state_now(a->st);
	json_t *o, *gws;

	(void)args;
	(void)err;
	(void)errlen;
	for (uint32_t i = 0; i < a->st->tab.nslots; i++) {
		const struct cp_server *c = cp_server_at(&a->st->tab, i);
		unsigned stage;
		enum tes_status st;

		if (!c)
			continue;
		cp_state_server_view(a->st, &c->v.s, now, &stage, &st);
		if ((unsigned)st < TES_STATUS_COUNT)
			by[st]++;
	}
	gws = cp_gateways_status(a->gws);
	o = json_pack("{s:s, s:I, s:o, s:i, s:o, s:I, s:{s:I, s:i, s:i, s:i, s:i, s:i}}", "version",
		      TES_VERSION, "pid", (json_int_t)getpid(), "clock", esc_clock_json(a->esc),
		      "gateways_connected", (int)json_array_size(gws), "gateways", gws, "tenants",
		      (json_int_t)a->st->tab.ntenants, "servers", "total",
		      (json_int_t)a->st->tab.nlive, "reporting", by[TES_STATUS_REPORTING],
		      "throttling", by[TES_STATUS_THROTTLING], "blocking", by[TES_STATUS_BLOCKING],
		      "resolved", by[TES_STATUS_RESOLVED], "paused", by[TES_STATUS_PAUSED]);
	json_object_set_new(json_object_get(o, "servers"), "stale",
			    json_integer(by[TES_STATUS_STALE]));
	json_object_set_new(json_object_get(o, "servers"), "compliant",
			    json_integer(by[TES_STATUS_COMPLIANT]));
	json_object_set_new(o, "catalog",
			    json_pack("{s:s, s:I}", "version", catalog_version(a->st->catalog),
				      "builds", (json_int_t)catalog_size(a->st->catalog)));
	json_object_set_new(o, "policy", json_pack("{s:s}", "version", a->st->policy_doc.version));
	json_object_set_new(o, "store",
			    json_pack("{s:s, s:s, s:i}", "kind",
				      store_shared(a->st->store) ? "etcd" : "sqlite", "path",
				      a->db_path, "schema_version",
				      store_schema_version(a->st->store)));
	json_object_set_new(o, "fleet", fleet_json(a));
	json_object_set_new(o, "counts",
			    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "sightings",
				      (json_int_t)a->st->counts.sightings, "first_detections",
				      (json_int_t)a->st->counts.first, "redetections",
				      (json_int_t)a->st->counts.redetected, "resolutions",
				      (json_int_t)a->st->counts.resolved, "stage_changes",
				      (json_int_t)a->esc->counts.stage_changes, "store_errors",
				      (json_int_t)a->st->counts.store_errors));
	set_time(a, o, "started_at", true, a->st->started_at);
	json_object_set_new(o, "generation", json_integer((json_int_t)a->gws->gen));
	*result = o;
	return 0;
}

int cmd_clock(struct cp_admin *a, const json_t *args, json_t **result, char *err, size_t errlen)
{
	const char *op = "show";
	int64_t seconds;

	if (json_object_get(args, "op") && arg_str(args, "op", &op, err, errlen))
		return -1;
	if (strcmp(op, "show") == 0) {
		*result = esc_clock_json(a->esc);
		return 0;
	}
	if (strcmp(op, "set") != 0 && strcmp(op, "advance") != 0) {
		snprintf(err, errlen, "clock: \"%s\" is not set, advance or show", op);
		return -1;
	}
	if (arg_int(args, "seconds", 0, TES_TIME_MAX, true, 0, &seconds, err, errlen))
		return -1;
	if (esc_clock_move(a->esc, strcmp(op, "advance") == 0, seconds, err, errlen))
		return -1;
	*result = esc_clock_json(a->esc);
	return 0;
}
