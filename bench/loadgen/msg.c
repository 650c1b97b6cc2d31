/* SPDX-License-Identifier: BSD-3-Clause */
/* tes-loadgen: the message it sends, and the latency histogram. */
#include "bench/loadgen/loadgen.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HDR_FILE_MAX (256u << 10)

size_t lg_dot_stuff(char *out, const char *in, size_t n, bool *at_bol)
{
	size_t o = 0;
	bool bol = *at_bol;
	for (size_t i = 0; i < n; i++) {
		if (bol && in[i] == '.')
			out[o++] = '.';
		out[o++] = in[i];
		bol = in[i] == '\n';
	}
	*at_bol = bol;
	return o;
}

void lg_msg_seq(char out[LG_SEQ_DIGITS], uint64_t seq)
{
	for (int i = LG_SEQ_DIGITS - 1; i >= 0; i--) {
		out[i] = (char)('0' + seq % 10);
		seq /= 10;
	}
}

/* Growable text with a hard cap; *ok goes false on overflow. */
struct sbuf {
	char *p;
	size_t n, cap;
	bool ok;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (!b->ok || b->n + n + 1 > b->cap) {
		b->ok = false;
		return;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

/* The Received: fields of the file, each line ended with CRLF whatever the
 * file used.  A field continues on lines starting with space or tab. */
static int read_received(struct sbuf *b, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "--header-file %s: %s", path, strerror(errno));
		return -1;
	}
	char *data = malloc(HDR_FILE_MAX + 1);
	if (!data) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	size_t len = fread(data, 1, HDR_FILE_MAX + 1, f);
	fclose(f);
	if (len > HDR_FILE_MAX) {
		free(data);
		snprintf(err, errlen, "--header-file %s: larger than %u KB", path,
			 HDR_FILE_MAX >> 10);
		return -1;
	}
	bool in_received = false;
	unsigned fields = 0;
	for (size_t i = 0; i < len;) {
		size_t e = i;
		while (e < len && data[e] != '\n')
			e++;
		size_t ll = e - i;
		if (ll && data[i + ll - 1] == '\r')
			ll--;
		const char *line = data + i;
		i = e < len ? e + 1 : e;
		if (ll == 0)
			break; /* end of the header section */
		if (line[0] == ' ' || line[0] == '\t') {
			if (!in_received)
				continue;
		} else {
			in_received = ll >= 9 && strncasecmp(line, "Received:", 9) == 0;
			if (!in_received)
				continue;
			fields++;
		}
		sb_put(b, line, ll);
		sb_str(b, "\r\n");
	}
	free(data);
	if (fields == 0) {
		snprintf(err, errlen, "--header-file %s: no Received: field", path);
		return -1;
	}
	return 0;
}

/* Body line k: printable text, some lines starting with a dot (one that is
 * a lone dot) so that dot-stuffing is exercised in every message. */
static size_t body_line(char *out, size_t want, unsigned k, bool may_be_short)
{
	static const char fill[] =
		"abcdefghijklmnopqrstuvwxyz0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ ";
	if (k == 3 && may_be_short) {
		out[0] = '.';
		return 1;
	}
	size_t n = 0;
	if (k % 13 == 5 && want >= 1)
		out[n++] = '.';
	while (n < want) {
		out[n] = fill[(n + k * 7) % (sizeof(fill) - 1)];
		n++;
	}
	return n;
}

int lg_msg_build(struct lg_msg *m, const char *hdr_file, const char *from, const char *rcpt,
		 size_t size, char *err, size_t errlen)
{
	memset(m, 0, sizeof(*m));
	struct sbuf h = { .p = malloc(HDR_FILE_MAX + 4096),
			  .cap = HDR_FILE_MAX + 4096,
			  .ok = true };
	if (!h.p) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	h.p[0] = '\0';
	if (hdr_file && read_received(&h, hdr_file, err, errlen) != 0) {
		free(h.p);
		return -1;
	}
	sb_str(&h, "From: <");
	sb_str(&h, from);
	sb_str(&h, ">\r\nTo: <");
	sb_str(&h, rcpt);
	sb_str(&h, ">\r\nSubject: tes-loadgen test message\r\n"
		   "Date: Sat, 1 Jan 2000 00:00:00 +0000\r\nMessage-ID: <lg");
	size_t seq_off = h.n;
	char digits[LG_SEQ_DIGITS];
	lg_msg_seq(digits, 0);
	sb_put(&h, digits, LG_SEQ_DIGITS);
	sb_str(&h, "@loadgen.invalid>\r\n\r\n");
	if (!h.ok) {
		free(h.p);
		snprintf(err, errlen, "headers too long");
		return -1;
	}
	if (size < h.n + 2) {
		snprintf(err, errlen,
			 "--size %zu is smaller than the headers (%zu bytes) plus a line", size,
			 h.n + 2);
		free(h.p);
		return -1;
	}
	char *p = malloc(size + 1);
	if (!p) {
		free(h.p);
		snprintf(err, errlen, "out of memory for a %zu-byte message", size);
		return -1;
	}
	memcpy(p, h.p, h.n);
	size_t n = h.n;
	free(h.p);
	for (unsigned k = 0; n < size; k++) {
		size_t rem = size - n;
		/* 78 text octets a line; the last line takes what is left. */
		size_t want = rem <= 82 ? rem - 2 : 78;
		n += body_line(p + n, want, k, rem > 82);
		p[n++] = '\r';
		p[n++] = '\n';
	}
	p[n] = '\0';
	m->plain = p;
	m->plain_len = n;
	m->seq_off = seq_off;

	size_t a_len = seq_off, b_len = n - seq_off - LG_SEQ_DIGITS;
	m->wire_a = malloc(2 * a_len + 1);
	m->wire_b = malloc(2 * b_len + 4);
	if (!m->wire_a || !m->wire_b) {
		lg_msg_free(m);
		snprintf(err, errlen, "out of memory for a %zu-byte message", size);
		return -1;
	}
	bool bol = true;
	m->wire_a_len = lg_dot_stuff(m->wire_a, p, a_len, &bol);
	bol = false; /* the digits are mid-line */
	m->wire_b_len = lg_dot_stuff(m->wire_b, p + seq_off + LG_SEQ_DIGITS, b_len, &bol);
	memcpy(m->wire_b + m->wire_b_len, ".\r\n", 3);
	m->wire_b_len += 3;
	return 0;
}

void lg_msg_free(struct lg_msg *m)
{
	free(m->plain);
	free(m->wire_a);
	free(m->wire_b);
	memset(m, 0, sizeof(*m));
}

static unsigned bucket_of(uint64_t v)
{
	if (v < (1u << LG_HIST_SUB_BITS))
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v);
	unsigned sub = (unsigned)(v >> (e - LG_HIST_SUB_BITS)) & ((1u << LG_HIST_SUB_BITS) - 1);
	return ((e - LG_HIST_SUB_BITS + 1) << LG_HIST_SUB_BITS) + sub;
}

/* Lowest value of a bucket and its width. */
static void bucket_range(unsigned b, uint64_t *lo, uint64_t *width)
{
	if (b < (1u << LG_HIST_SUB_BITS)) {
		*lo = b;
		*width = 1;
		return;
	}
	unsigned e = (b >> LG_HIST_SUB_BITS) + LG_HIST_SUB_BITS - 1;
	uint64_t sub = b & ((1u << LG_HIST_SUB_BITS) - 1);
	*width = 1ull << (e - LG_HIST_SUB_BITS);
	*lo = (1ull << e) + sub * *width;
}

void lg_hist_add(struct lg_hist *h, uint64_t v)
{
	h->b[bucket_of(v)]++;
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
}

uint64_t lg_hist_quantile(const struct lg_hist *h, double q)
{
	if (h->n == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->n);
	if (rank >= h->n)
		rank = h->n - 1;
	uint64_t seen = 0;
	for (unsigned b = 0; b < LG_HIST_BUCKETS; b++) {
		seen += h->b[b];
		if (seen > rank) {
			uint64_t lo, w;
			bucket_range(b, &lo, &w);
			uint64_t mid = lo + w / 2;
			return mid > h->max ? h->max : mid;
		}
	}
	return h->max;
}
