/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The fleet store: tescontrol's state in an etcd cluster that several
 * appliances share (docs/fleet.md), behind store.h's interface and its
 * shared-store operations.  It stands on libtesetcd (etcd/etcd.h) and keeps
 * a small local SQLite journal of what was detected while etcd could not be
 * reached.  The key layout is versioned under the prefix:
 *
 *   PREFIX/layout                        {"layout":1}: which layout the rest is
 *   PREFIX/v1/tenants/ID                 a tenant, its connectors and pause
 *   PREFIX/v1/servers/TENANT/FQDN        a server (FQDN in lower case)
 *   PREFIX/v1/docs/policy                the policy in force
 *   PREFIX/v1/docs/catalog.builds        the catalog's two files, written in
 *   PREFIX/v1/docs/catalog.compliance      one transaction
 *   PREFIX/v1/appliances/NAME            what an appliance last said of itself
 *   PREFIX/v1/alive/NAME                 present while its lease is held
 *
 * Threads: as store.h (one thread, the event loop's).
 */
#ifndef TES_CONTROLPLANE_STORE_ETCDSTORE_H
#define TES_CONTROLPLANE_STORE_ETCDSTORE_H

#include <stdbool.h>
#include <stddef.h>

#include "controlplane/store/store.h"

/* The layout this build reads and writes. */
#define STORE_ETCD_LAYOUT 1

struct store_etcd_config {
	const char *const *endpoints; /* http:// or https:// client URLs */
	size_t nendpoints;
	const char *prefix;    /* "/tesgate": every key of this fleet starts with it */
	const char *appliance; /* this appliance's name, unique in the fleet */
	const char *ca_file;   /* NULL: the system's CAs */
	const char *cert_file; /* a client certificate (etcd --client-cert-auth) */
	const char *key_file;
	const char *username; /* etcd authentication; both or neither */
	const char *password;
	int timeout_ms;           /* one request to one endpoint */
	int connect_timeout_ms;   /* at most timeout_ms */
	unsigned lease_seconds;   /* the liveness lease's TTL */
	unsigned flush_seconds;   /* how often this appliance writes itself */
	const char *journal_path; /* the local journal (SQLite) */
};

/* Connect, check (or, in an empty prefix, write) the layout, and read the
 * tenants and documents; the servers are read by load_servers at the same
 * revision, and the watch starts after it.  NULL with errbuf filled when
 * etcd cannot be reached (every endpoint named), the layout is another
 * one, or a record is not one this build can read (its key named): nothing
 * is written then. */
struct tes_store *store_etcd_open(const struct store_etcd_config *c, char *errbuf, size_t errlen);

#endif
