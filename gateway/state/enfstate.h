/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The gateway's enforcement state, read lock-free by the workers under RCU
 * (liburcu, QSBR flavour) and changed by one writer, the control thread.
 *
 * What it holds:
 * - servers:  (tenant id, server FQDN) -> struct tes_server.  FQDNs compare
 *             ASCII-case-insensitively; the stored copy keeps the case the
 *             writer gave;
 * - sources:  source address -> the servers it carried (up to
 *             ENFSTATE_SOURCE_SERVERS, compliant ones too), each with when
 *             it last carried it and its probe claim, for connect time and
 *             MAIL FROM.  The writer keeps it from the servers it puts (each
 *             server lists its sources); see docs/enforcement.md, "Shared
 *             sources";
 * - tenants:  tenant id -> struct tes_tenant;
 * - the policy (struct tes_policy) and the build catalog (struct catalog *):
 *   immutable snapshots swapped whole by pointer.
 * Every entry is an immutable node: the writer publishes a changed entry as a
 * new node (one pointer store into its slot) and frees the old one only after a grace
 * period (call_rcu), so a reader sees either the old value or the new one,
 * never a mix.  One field is the exception: a source's per-server probe
 * claim, which readers take with a compare-and-swap on the node they found
 * and the writer carries over into the node that replaces it (a claim made
 * on the old node in that moment may be lost: the next probe comes early on
 * this gateway, never late).  The three tables are open-addressed hash
 * tables of one cache line per bucket on huge pages (enfstate.c, "the
 * tables"), rebuilt beside the published one when they grow; keys are hashed with SipHash-1-3 under a random 128-bit key
 * drawn from getrandom() when the state is created, because senders choose
 * both their addresses and the names in their headers.
 *
 * ---- threads ----
 * Three kinds of thread touch a struct enfstate:
 *
 * Readers (the workers, any number).  Each registers once with
 * enfstate_thread_register() before its first lookup and unregisters before
 * it exits.  QSBR read-side sections cost nothing, but a registered thread is
 * "online" and counts as possibly holding references until it says
 * otherwise, so every reader must
 *   - call enfstate_quiescent() regularly (every few bursts of the poll
 *     loop), at a point where it holds nothing it got from here: memory the
 *     writer has retired is freed only once every online reader has passed
 *     a quiescent state, so a reader that never does makes memory grow
 *     without bound;
 *   - call enfstate_thread_offline() before anything that may block (epoll,
 *     a sleep, a lock), and enfstate_thread_online() after, before the next
 *     lookup;
 *   - never call synchronize_rcu, rcu_barrier, enfstate_free() or any
 *     writer function.
 * The reader functions below take their own read-side section and copy out
 * what they return, so nothing they hand back points into the tables, and
 * they are safe to call anywhere a registered thread is online.
 * enfstate_thread_* wrap liburcu's rcu_register_thread, rcu_quiescent_state,
 * rcu_thread_offline/online; calling those directly works the same, but the
 * wrappers also tell ThreadSanitizer about the grace period (liburcu itself
 * is not instrumented), so use them.
 *
 * The writer (the control thread; exactly one thread at a time).  It is a
 * registered QSBR thread too: enfstate_thread_register(), online while it
 * calls the writer functions, enfstate_quiescent() after each batch of
 * updates and offline while it waits for tescontrol.  The writer functions
 * never wait for a grace period; retired nodes and snapshots are freed by
 * liburcu's call_rcu thread.  liburcu's helper thread (call_rcu) is started lazily by the first thread that needs them and inherit
 * its CPU affinity: create the state and make the first updates from the
 * control thread after pinning it, and they stay off the workers' cores.
 *
 * Anyone: enfstate_stats().
 *
 * Lifetime: enfstate_new() from any thread before the readers start;
 * enfstate_free() from a registered, online thread (normally the writer)
 * once no reader will look anything up in it again.  It blocks until
 * liburcu has run every pending free,
 * those of other states included, so every other online thread must keep
 * passing quiescent states meanwhile; it goes offline itself while it waits.
 */
#ifndef TES_GATEWAY_STATE_ENFSTATE_H
#define TES_GATEWAY_STATE_ENFSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "enforce/build.h"
#include "enforce/catalog.h"
#include "enforce/decide.h"
#include "enforce/policy.h"

struct enfstate;

/* Servers a source lists at most.  One more evicts the least recently seen,
 * and the source then counts as shared (nothing refused early) for as long
 * as that one would still count (carried_days). */
#define ENFSTATE_SOURCE_SERVERS 16

/* What the gateway knows about a source address. */
struct enfstate_source {
	uint32_t tenant_id;
	char fqdn[TES_FQDN_MAX]; /* the server it carried most recently */
	/* Pinned by enfstate_source_put (tests, benchmarks): drop at connect
	 * time whatever the servers say.  The writer's own index never sets
	 * it; enfstate_source_drop decides from the servers. */
	bool drop;
	unsigned nservers;    /* servers it lists */
	int64_t shared_until; /* counts as shared by unlisted servers until then */
};

/* One server a source lists. */
struct enfstate_carried {
	uint32_t tenant_id;
	char fqdn[TES_FQDN_MAX];
	int64_t seen;       /* when the source last carried it; 0: unknown */
	int64_t probe_next; /* this gateway's next probe of it from there */
};

/* A catalog classification, copied out of the snapshot it came from. */
struct enfstate_class {
	char catalog_version[48]; /* catalog_version() of that snapshot */
	enum ex_family family;
	bool exact;
	bool compliant;
	char branch[16];
	bool has_nearest;
	struct catalog_entry nearest;
	unsigned nrecommended;
	struct catalog_entry recommended[CATALOG_MAX_RECOMMENDED];
};

struct enfstate_stats {
	size_t servers;
	size_t sources;
	size_t tenants;
	uint64_t policy_gen;  /* policies published, the initial one included */
	uint64_t catalog_gen; /* catalogs published (a NULL catalog counts) */
	uint64_t probes;      /* probes claimed at MAIL FROM (a full block let through) */
};

/* ---- lifetime ---- */

/* A state holding pol (the built-in default when NULL) and no catalog.
 * size_hint: the number of servers expected, to size the tables up front
 * (0 for small tables that grow).  NULL with errno set on failure
 * (getrandom or memory). */
struct enfstate *enfstate_new(const struct tes_policy *pol, size_t size_hint);

/* Frees everything, the current catalog included.  See "Lifetime" above. */
void enfstate_free(struct enfstate *st);

/* ---- threads ---- */

void enfstate_thread_register(void);
void enfstate_thread_unregister(void);
void enfstate_quiescent(void);
void enfstate_thread_offline(void);
void enfstate_thread_online(void);

/* ---- writer: the control thread only, registered and online ----
 * The put functions copy the value.  They return 0 when the key was new, 1
 * when they replaced an entry, -1 with errno EINVAL (bad key) or ENOMEM, in
 * which case nothing changed.  The del functions return true when there was
 * an entry to delete. */

/* Key: s->tenant_id and s->fqdn (1..255 octets).  Also updates the
 * source index: each of s->sources lists the server with its
 * s->source_seen time; sources the previous value had and s has not, and
 * every source on del, stop listing it. */
int enfstate_server_put(struct enfstate *st, const struct tes_server *s);
bool enfstate_server_del(struct enfstate *st, uint32_t tenant_id, const char *fqdn);

/* Set src's node directly to one server (v->tenant_id, v->fqdn; none when
 * v->fqdn is "") with an unknown seen time and v->drop pinned: for tests
 * and benchmarks, which exercise the table without servers.  A later
 * server put that lists src rebuilds the node from this one. */
int enfstate_source_put(struct enfstate *st, const struct tes_addr *src,
			const struct enfstate_source *v);
bool enfstate_source_del(struct enfstate *st, const struct tes_addr *src);

int enfstate_tenant_put(struct enfstate *st, const struct tes_tenant *t);
bool enfstate_tenant_del(struct enfstate *st, uint32_t tenant_id);

/* Publish a copy of pol.  0, or -1 (ENOMEM) leaving the old one. */
int enfstate_policy_set(struct enfstate *st, const struct tes_policy *pol);

/* Publish cat (NULL: no catalog) and take ownership of it; the one it
 * replaces goes to catalog_free after a grace period.  -1 (ENOMEM) when it
 * could not: then cat still belongs to the caller. */
int enfstate_catalog_set(struct enfstate *st, struct catalog *cat);

/* A full resynchronisation (tescontrol reconnected): enfstate_sync_begin(),
 * then put every entry tescontrol sends, then enfstate_sync_end() deletes
 * the servers, sources and tenants that were not put since sync_begin and
 * returns how many.  Readers keep finding the entries that survive all
 * along, unlike clearing first and refilling. */
void enfstate_sync_begin(struct enfstate *st);
size_t enfstate_sync_end(struct enfstate *st);

/* ---- readers: any registered, online thread ---- */

bool enfstate_lookup_server(struct enfstate *st, uint32_t tenant_id, const char *fqdn,
			    struct tes_server *out);
bool enfstate_lookup_source(struct enfstate *st, const struct tes_addr *src,
			    struct enfstate_source *out);
bool enfstate_lookup_tenant(struct enfstate *st, uint32_t tenant_id, struct tes_tenant *out);

/* Bursts: the same lookups for n keys at once (n at most
 * ENFSTATE_BURST_MAX: keys past it are not looked up, their outputs not
 * written), for a poll loop that has several connections at the
 * same step in one burst.  The keys are hashed and their buckets prefetched
 * first, then their nodes, then each is looked up: the cache misses of the n
 * lookups overlap instead of following one another.  found[i] / drop[i] as
 * the single calls return them. */
#define ENFSTATE_BURST_MAX 16
void enfstate_lookup_server_burst(struct enfstate *st, unsigned n, const uint32_t *tenant_id,
				  const char *const *fqdn, struct tes_server *out, bool *found);
void enfstate_source_drop_burst(struct enfstate *st, unsigned n, const struct tes_addr *const *src,
				int64_t now, bool *drop);

/* The tenant one of whose connectors src (and the client certificate name,
 * or NULL) matches; false and *tenant_id 0 when none does.  The lowest
 * tenant id wins where connectors overlap. */
bool enfstate_tenant_for_source(struct enfstate *st, const struct tes_addr *src,
				const char *cert_name, uint32_t *tenant_id);

/* The servers src lists (at most max), copied out; how many. */
unsigned enfstate_source_servers(struct enfstate *st, const struct tes_addr *src,
				 struct enfstate_carried *out, unsigned max);

/* The connect-time check at now: true when the source fronts servers that
 * would all be dropped (tes_decide_carried says DROP, which needs the
 * policy's full_block = drop) and no probe of any of them is due from it,
 * or when enfstate_source_put pinned it.  False when unknown.  With
 * full_block = reply it is the one lookup it always was. */
bool enfstate_source_drop(struct enfstate *st, const struct tes_addr *src, int64_t now);

void enfstate_policy(struct enfstate *st, struct tes_policy *out);

/* catalog_classify against the current catalog as of now (the compliance
 * rules carry dates), copied out; false (and out zeroed) when there is no
 * catalog. */
bool enfstate_classify(struct enfstate *st, const struct ex_build *b, int64_t now,
		       struct enfstate_class *out);

/* tes_decide() on the server (tenant_id, fqdn) (NULL fqdn, or not found: no
 * stored state), the tenant tenant_id (or none) and the current policy, all
 * read in one read-side section so they belong together.  Arguments as for
 * tes_decide. */
void enfstate_decide(struct enfstate *st, uint32_t tenant_id, const char *fqdn,
		     const struct tes_addr *src, const struct tes_detection *d, int64_t now,
		     bool via_connector, struct tes_verdict *out);

/* At MAIL FROM, before any header: tes_decide_carried over the servers of
 * tenant_id (the tenant the connection came in for) the source lists.  A
 * source listed as shared (more servers than it can list) is ACCEPT,
 * SHARED_SOURCE.  When the result is a full block and a probe of one of
 * those servers is due from this source, the probe is claimed (one
 * compare-and-swap: one transaction per server, source and probe_interval
 * on this gateway) and the result is ACCEPT, reason PROBE, with the stage:
 * the message is read to its headers and decided for the server they name.
 * False (and an ACCEPT for an unknown server in *out) when the source is
 * unknown. */
bool enfstate_decide_source(struct enfstate *st, const struct tes_addr *src, uint32_t tenant_id,
			    int64_t now, bool via_connector, struct tes_verdict *out);

/* What a sighting of (tenant_id, fqdn) would be to tescontrol: a server on
 * record, a new one, or a new one of a tenant tescontrol says is at its cap
 * (it would not be tracked: not worth sending). */
enum enfstate_sighting {
	ENFSTATE_SIGHTING_KNOWN,
	ENFSTATE_SIGHTING_NEW,
	ENFSTATE_SIGHTING_CAPPED,
};
enum enfstate_sighting enfstate_sighting_kind(struct enfstate *st, uint32_t tenant_id,
					      const char *fqdn);

/* The policy's scope (cheaper than copying the policy). */
enum tes_scope enfstate_scope(struct enfstate *st);

/* ---- anyone ---- */

/* Sizes as the writer last left them (relaxed reads: exact once the writer
 * is idle, a moment stale otherwise). */
void enfstate_stats(const struct enfstate *st, struct enfstate_stats *out);

/* Source nodes the writer could not publish (no memory): the index lags. */
size_t enfstate_index_errors(const struct enfstate *st);

#endif
