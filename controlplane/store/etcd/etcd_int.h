/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Inside libtesetcd: what the client (etcd_client.c) and the watch
 * (etcd_watch.c) share.  Not installed, not for callers.
 */
#ifndef TES_ETCD_ETCD_INT_H
#define TES_ETCD_ETCD_INT_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>

#include "etcd.h"

#if defined(__GNUC__)
#define ETCD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define ETCD_PRINTF(a, b)
#endif

/* The client's configuration, copied and with defaults applied. */
struct etcd_conf {
	char *endpoints[ETCD_MAX_ENDPOINTS];
	size_t n;
	int timeout_ms;
	int connect_timeout_ms;
	size_t max_response;
	char *ca_file;
	char *cert_file;
	char *key_file;
	bool tls_no_verify;
	char *username;
	char *password;
	size_t watch_max_batch;
	int watch_keepalive_s;
};

/* Validates (URLs, limits, credentials both or neither) and copies. */
int etcd_conf_init(struct etcd_conf *dst, const struct etcd_config *src, char *err, size_t errlen);
int etcd_conf_dup(struct etcd_conf *dst, const struct etcd_conf *src);
void etcd_conf_free(struct etcd_conf *c);

/* curl_global_init, once per process. */
int etcd_global_init(char *err, size_t errlen);

/* Options every transfer gets: protocols, no signals, no redirects,
 * connect timeout, TLS. */
void etcd_curl_common(CURL *e, const struct etcd_conf *c);

/* The request headers: JSON body, no Expect, the token if any, and etcd's
 * "fail at once when this member has no leader" metadata when hasleader. */
struct curl_slist *etcd_headers(const char *token, bool hasleader);

/* The client's state the watch starts from. */
const struct etcd_conf *etcd_client_conf(const struct etcd_client *c);
const char *etcd_client_token(const struct etcd_client *c);
size_t etcd_client_current(const struct etcd_client *c);

/* JSON for a byte string (base64) and for an int64 (a string, as proto3
 * JSON writes it); NULL on allocation failure. */
json_t *etcd_json_b64(const void *p, size_t n);
json_t *etcd_json_int(int64_t v);

/* The gRPC status etcd gives for an invalid or expired token (and for an
 * auth store that moved on since the token was issued): authenticate again. */
bool etcd_error_is_stale_token(int code, const char *message);

void etcd_errf(char *err, size_t errlen, const char *fmt, ...) ETCD_PRINTF(3, 4);

#endif
