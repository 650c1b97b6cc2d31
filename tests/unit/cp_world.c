/* SPDX-License-Identifier: BSD-3-Clause */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "controlplane/store/sqlite.h"
#include "cp_world.h"

void cp_world_init(struct cp_world *w, const char *prefix, int64_t now)
{
	snprintf(w->dir, sizeof(w->dir), "/tmp/%s-XXXXXX", prefix);
	assert_non_null(mkdtemp(w->dir));
	snprintf(w->path, sizeof(w->path), "%s/tc.db", w->dir);
	w->clock.test = true;
	w->clock.test_now = now;
}

void cp_world_open(struct cp_world *w)
{
	const char *src = getenv("TES_SRCDIR");
	char b[4096], c[4096], err[512];

	assert_non_null(src);
	snprintf(b, sizeof(b), "%s/data/exchange-builds.csv", src);
	snprintf(c, sizeof(c), "%s/data/compliance.conf", src);
	w->store = store_sqlite_open(w->path, err, sizeof(err));
	if (!w->store)
		fail_msg("%s", err);
	assert_int_equal(cp_loop_init(&w->loop), 0);
	assert_int_equal(cp_state_init(&w->st, w->store, &w->clock), 0);
	assert_int_equal(cp_state_load_documents(&w->st, b, c, ""), 0);
	assert_int_equal(cp_state_load(&w->st), 0);
	assert_int_equal(esc_init(&w->esc, &w->st, &w->clock, &w->loop), 0);
	assert_int_equal(cp_state_subscribe(&w->st, esc_on_note, &w->esc), 0);
	/* as tescontrol starts: what fell due is announced first */
	esc_evaluate_all(&w->esc, "start-up");
}

void cp_world_close(struct cp_world *w)
{
	esc_fini(&w->esc);
	cp_state_free(&w->st);
	store_close(w->store);
	cp_loop_fini(&w->loop);
}

void cp_world_remove(struct cp_world *w)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", w->dir);
	assert_int_equal(system(cmd), 0);
}
