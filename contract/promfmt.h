/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The Prometheus text exposition format (version 0.0.4), as a growing
 * buffer: metric families with HELP and TYPE, escaped label values, and
 * histograms with cumulative buckets.  Pure: no I/O, no globals, so the unit
 * test checks the format byte for byte.
 *
 * Threads: a buffer belongs to one thread.
 */
#ifndef TES_CONTRACT_PROMFMT_H
#define TES_CONTRACT_PROMFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct prom_buf {
	char *p; /* NUL-terminated while not failed */
	size_t len, cap;
	bool failed; /* out of memory: the text is incomplete, do not publish it */
};

void prom_buf_free(struct prom_buf *b);
void prom_append(struct prom_buf *b, const char *s, size_t n);
void prom_printf(struct prom_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "# HELP name help\n# TYPE name type\n", help escaped as the format asks. */
void prom_family(struct prom_buf *b, const char *name, const char *type, const char *help);
/* A label value with \, " and newline escaped (no quotes added). */
void prom_label_value(struct prom_buf *b, const char *v);
/* One sample: name{label="value"} value; label NULL for none. */
void prom_sample(struct prom_buf *b, const char *name, const char *label, const char *value,
		 uint64_t v);
/* A sample value as the format spells doubles (+Inf, NaN, shortest exact). */
void prom_double(struct prom_buf *b, double v);

/* Map anything to a valid metric name part: every octet outside
 * [a-zA-Z0-9_] becomes '_'.  out holds at least len octets; truncated
 * silently (the caller's names are short). */
void prom_sanitize(const char *in, char *out, size_t len);

/* A fixed-bucket histogram: counts[i] observations <= bounds[i] (not
 * cumulative; counts[nbounds] is above the last bound). */
#define PROM_HIST_MAX 24
struct prom_hist {
	uint64_t counts[PROM_HIST_MAX + 1];
	uint64_t count;
	double sum;
};
void prom_hist_observe(struct prom_hist *h, const double *bounds, size_t nbounds, double v);
/* The histogram's _bucket (cumulative, with le="+Inf"), _sum and _count
 * lines; the family line is the caller's. */
void prom_hist_write(struct prom_buf *b, const char *name, const double *bounds, size_t nbounds,
		     const struct prom_hist *h);

#endif
