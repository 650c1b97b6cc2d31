/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tescontrol's configuration file: "key = value" lines, # comments.  Errors
 * name the file, the line and the key.  See docs/tescontrol.8.md.
 *
 * Threads: used at start-up only, by the main thread.
 */
#ifndef TES_CONTROLPLANE_CONFIG_H
#define TES_CONTROLPLANE_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "controlplane/log.h"

#define CP_PATH_MAX 4096
/* A unix socket address holds 107 octets and a NUL. */
#define CP_SOCK_PATH_MAX 108

struct cp_config {
	char state_dir[CP_PATH_MAX];
	char db_path[CP_PATH_MAX]; /* "" until defaulted from state_dir */
	char gateway_socket[CP_SOCK_PATH_MAX];
	char gateway_group[64]; /* "" : owner only */
	char admin_socket[CP_SOCK_PATH_MAX];
	char admin_group[64]; /* "" : root and tescontrol's own user only */
	char catalog_file[CP_PATH_MAX];
	char compliance_file[CP_PATH_MAX];
	char policy_file[CP_PATH_MAX]; /* "" : the built-in policy */
	enum cp_level log_level;
	unsigned flush_seconds;      /* how long a last-seen update may wait */
	char metrics_listen[128];    /* host:port of the Prometheus endpoint; "" : off */
	char event_log[CP_PATH_MAX]; /* a file, "-" (stdout) or "" (off) */
	char xdp_interfaces[1024];   /* comma-separated; "" : no XDP */
	char xdp_pin_root[CP_PATH_MAX];
	char xdp_mode[16];   /* auto, native or generic */
	bool xdp_required;   /* a refused load or attach stops start-up */
	char xdp_ports[256]; /* TCP ports a listed source is dropped on: "25, 587" */
	char user[64];       /* run as this user after start-up; "" : as started */

	/* The store (docs/fleet.md): "sqlite" (one box, the default) or
	 * "etcd" (a fleet of appliances sharing one state). */
	char store[16];
	char etcd_endpoints[2048]; /* URL,URL,...: http:// or https:// */
	char etcd_prefix[256];     /* every key of the fleet under it */
	char appliance[64];        /* this appliance's name in the fleet */
	char etcd_ca_file[CP_PATH_MAX];
	char etcd_cert_file[CP_PATH_MAX];
	char etcd_key_file[CP_PATH_MAX];
	char etcd_username[128];
	char etcd_password_file[CP_PATH_MAX];
	unsigned etcd_timeout_ms;         /* one request to one member */
	unsigned etcd_connect_timeout_ms; /* at most etcd_timeout_ms */
	unsigned etcd_lease_seconds;      /* liveness lease TTL */
	unsigned etcd_flush_seconds;      /* seen times and self, coalesced */
	char etcd_journal[CP_PATH_MAX];   /* "" : state_dir/fleet-journal.db */
	/* The report page (notify/report.h). */
	char report_listen[128]; /* host:port of its TLS listener; "" : none */
	char report_tls_cert[CP_PATH_MAX];
	char report_tls_key[CP_PATH_MAX];
	unsigned report_history_days; /* days of the stage chart kept */
	/* Notices (notify/notices.h). */
	char notice_smtp_relay[128]; /* host:port; "" : no mail */
	char notice_mail_from[256];  /* "" : tescontrol@ the host name */
	unsigned notice_retry_min;   /* seconds */
	unsigned notice_retry_max;
	unsigned notice_timeout;
	unsigned notice_expire_days;
};

void cp_config_defaults(struct cp_config *c);

/* Read path over the defaults.  0, or -1 with "file:line: key: problem" in
 * err. */
int cp_config_load(struct cp_config *c, const char *path, char *err, size_t errlen);

/* Fill what defaults from other keys (db_path and etcd_journal from
 * state_dir, appliance from the host name). */
void cp_config_finish(struct cp_config *c);

#endif
