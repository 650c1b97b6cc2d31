/* SPDX-License-Identifier: BSD-3-Clause */
#include "contract/promfmt.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void prom_buf_free(struct prom_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static bool reserve(struct prom_buf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->failed)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->failed = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void prom_append(struct prom_buf *b, const char *s, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void prom_printf(struct prom_buf *b, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		prom_append(b, small, (size_t)n);
		return;
	}
	if (!reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* HELP text escapes only \ and newline; label values also ". */
static void escaped(struct prom_buf *b, const char *s, bool quote)
{
	for (; *s; s++) {
		if (*s == '\\')
			prom_append(b, "\\\\", 2);
		else if (*s == '\n')
			prom_append(b, "\\n", 2);
		else if (quote && *s == '"')
			prom_append(b, "\\\"", 2);
		else
			prom_append(b, s, 1);
	}
}

void prom_family(struct prom_buf *b, const char *name, const char *type, const char *help)
{
	prom_printf(b, "# HELP %s ", name);
	escaped(b, help, false);
	prom_printf(b, "\n# TYPE %s %s\n", name, type);
}

void prom_label_value(struct prom_buf *b, const char *v)
{
	escaped(b, v, true);
}

void prom_sample(struct prom_buf *b, const char *name, const char *label, const char *value,
		 uint64_t v)
{
	prom_append(b, name, strlen(name));
	if (label) {
		prom_printf(b, "{%s=\"", label);
		prom_label_value(b, value);
		prom_append(b, "\"}", 2);
	}
	prom_printf(b, " %llu\n", (unsigned long long)v);
}

void prom_double(struct prom_buf *b, double v)
{
	char buf[40];

	if (isnan(v)) {
		prom_append(b, "NaN", 3);
		return;
	}
	if (isinf(v)) {
		prom_append(b, v > 0 ? "+Inf" : "-Inf", 4);
		return;
	}
	/* The shortest form that reads back to the same double. */
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	prom_append(b, buf, strlen(buf));
}

void prom_sanitize(const char *in, char *out, size_t len)
{
	size_t i = 0;

	if (!len)
		return;
	for (; in[i] && i + 1 < len; i++) {
		char c = in[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_';

		out[i] = ok ? c : '_';
	}
	out[i] = '\0';
}

void prom_hist_observe(struct prom_hist *h, const double *bounds, size_t nbounds, double v)
{
	size_t i = 0;

	if (nbounds > PROM_HIST_MAX)
		nbounds = PROM_HIST_MAX;
	while (i < nbounds && v > bounds[i])
		i++;
	h->counts[i]++;
	h->count++;
	h->sum += v;
}

void prom_hist_write(struct prom_buf *b, const char *name, const double *bounds, size_t nbounds,
		     const struct prom_hist *h)
{
	uint64_t cum = 0;

	if (nbounds > PROM_HIST_MAX)
		nbounds = PROM_HIST_MAX;
	for (size_t i = 0; i < nbounds; i++) {
		cum += h->counts[i];
		prom_printf(b, "%s_bucket{le=\"", name);
		prom_double(b, bounds[i]);
		prom_printf(b, "\"} %llu\n", (unsigned long long)cum);
	}
	prom_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
	prom_printf(b, "%s_sum ", name);
	prom_double(b, h->sum);
	prom_printf(b, "\n%s_count %llu\n", name, (unsigned long long)h->count);
}
