/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Exchange build detection from a message's header section.
 *
 * Choices the contract in exdetect.h leaves open, made here:
 *
 * - The header section ends at the first empty line (CRLF or LF), or at the
 *   end of the input.  A lone CR inside a line is whitespace.  NUL and 8-bit
 *   octets end nothing (no line, no field, no word), so a word holding one
 *   is neither a host name nor a build.  A line that is neither a field nor
 *   a continuation (garbage, an mbox "From " line) ends the field before it
 *   and is otherwise ignored: the section goes on.
 * - "Received :" (whitespace before the colon) is accepted: it is RFC 5322's
 *   obsolete field syntax (section 4.5.3), which receivers must accept.
 *   "X-Received:" and "Received-SPF:" are other fields.
 * - Only the first EXDETECT_MAX_RECEIVED Received headers are examined,
 *   counting every one (own hops, Online hops, non-Microsoft hops); a
 *   Microsoft hop further down is not found.  Real chains have a handful of
 *   hops, and the cap keeps a header stuffed with Received lines cheap.
 * - Of each Received header only the first RECEIVED_BUF (4 KiB) octets of
 *   its unfolded value are parsed; real ones are below 1 KiB.  The rest of a
 *   longer header is still walked to find the next field, never copied.
 * - Within a hop: comments (nested, with quoted pairs), <angle-addr> and
 *   "quoted strings" are opaque, so a "by" or "id" inside them is never
 *   taken; parsing stops at the first ';' outside them (the date follows).
 *   Clause keywords (from, by, via, with, id, for) are case-insensitive
 *   words; the first word of the first non-empty `by` and `id` clause is
 *   taken, and the first non-empty `with` clause must be exactly
 *   "Microsoft SMTP Server" or "mapi" (so IIS's "Microsoft SMTPSVC" is not a
 *   Microsoft hop: it stamps no build).
 * - The `by` host must be dot-separated non-empty labels of letters, digits,
 *   '-' or '_' (after dropping one trailing dot); anything else, such as an
 *   address literal or 8-bit bytes, means the hop has no usable identity and
 *   is skipped like a missing one.
 * - Skip patterns know only '*' ('?' is literal) and ignore a trailing dot.
 *   Matching backtracks to the latest '*' only, so it costs at most
 *   len(pattern) * len(host) per pair, with no recursion.
 * - A Microsoft hop whose build parses but belongs to no known family (say
 *   6.5.7638.1, or a future 15.3) is still reported, with EX_FAMILY_NONE: it
 *   is the connecting server, and the hop behind it is not; the decision of
 *   what an unknown build means belongs to the catalog, not to the parser.
 */
#include "gateway/session/exdetect.h"

#include <string.h>

#define RECEIVED_BUF 4096

struct span {
	const char *p;
	size_t n;
};

static char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool span_ieq(struct span s, const char *lit)
{
	size_t i = 0;

	for (; i < s.n; i++) {
		if (lit[i] == '\0' || ascii_lower(s.p[i]) != lit[i])
			return false;
	}
	return lit[i] == '\0';
}

bool exdetect_add_skip(struct exdetect_config *cfg, const char *pattern)
{
	if (!cfg || !pattern || cfg->nskip >= EXDETECT_MAX_SKIP)
		return false;
	size_t n = strnlen(pattern, EXDETECT_HOST_MAX + 1);
	if (n > EXDETECT_HOST_MAX)
		return false;
	/* Hosts are compared without their trailing dot; so are patterns. */
	if (n > 0 && pattern[n - 1] == '.')
		n--;
	if (n == 0)
		return false;
	char *dst = cfg->skip[cfg->nskip];
	for (size_t i = 0; i < n; i++)
		dst[i] = ascii_lower(pattern[i]);
	dst[n] = '\0';
	cfg->nskip++;
	return true;
}

/*
 * '*' glob, case-insensitive.  Backtracking only to the latest '*' is
 * enough for a single wildcard character and bounds the work to
 * len(pattern) * len(host) in the worst case, with no recursion.
 */
static bool glob_match(const char *pat, size_t pn, const char *host, size_t hn)
{
	size_t p = 0, h = 0, star_p = 0, star_h = 0;
	bool star = false;

	while (h < hn) {
		if (p < pn && pat[p] == '*') {
			star = true;
			star_p = ++p;
			star_h = h;
		} else if (p < pn && ascii_lower(pat[p]) == host[h]) {
			p++;
			h++;
		} else if (star) {
			p = star_p;
			h = ++star_h;
		} else {
			return false;
		}
	}
	while (p < pn && pat[p] == '*')
		p++;
	return p == pn;
}

static bool skip_host(const struct exdetect_config *cfg, const char *host, size_t hn)
{
	if (!cfg)
		return false;
	/* The config may be filled by a loader rather than exdetect_add_skip,
	 * so its count and strings are not trusted to be in range. */
	unsigned nskip = cfg->nskip < EXDETECT_MAX_SKIP ? cfg->nskip : EXDETECT_MAX_SKIP;
	for (unsigned i = 0; i < nskip; i++) {
		const char *pat = cfg->skip[i];
		size_t pn = strnlen(pat, EXDETECT_HOST_MAX + 1);
		if (pn > 0 && pat[pn - 1] == '.')
			pn--;
		if (pn > 0 && glob_match(pat, pn, host, hn))
			return true;
	}
	return false;
}

static size_t skip_comment(const char *b, size_t n, size_t i)
{
	unsigned depth = 0;

	while (i < n) {
		char c = b[i++];
		if (c == '\\')
			i++;
		else if (c == '(')
			depth++;
		else if (c == ')' && --depth == 0)
			break;
	}
	return i < n ? i : n;
}

static size_t skip_delimited(const char *b, size_t n, size_t i, char close)
{
	for (i++; i < n; i++) {
		if (b[i] == '\\' && close == '"')
			i++;
		else if (b[i] == close)
			return i + 1;
	}
	return n;
}

/* Next word of a hop's value (b holds only ' ' as whitespace).  False at the
 * end of the value: the end of the buffer or a ';' outside comments. */
static bool next_word(const char *b, size_t n, size_t *pos, struct span *w)
{
	size_t i = *pos;

	for (;;) {
		while (i < n && b[i] == ' ')
			i++;
		if (i >= n || b[i] == ';') {
			*pos = i;
			return false;
		}
		if (b[i] == '(')
			i = skip_comment(b, n, i);
		else if (b[i] == ')')
			i++; /* unbalanced: only a separator */
		else
			break;
	}
	size_t start = i;
	if (b[i] == '<') {
		i = skip_delimited(b, n, i, '>');
	} else if (b[i] == '"') {
		i = skip_delimited(b, n, i, '"');
	} else {
		while (i < n && b[i] != ' ' && b[i] != '(' && b[i] != ')' && b[i] != ';')
			i++;
	}
	w->p = b + start;
	w->n = i - start;
	*pos = i;
	return true;
}

enum clause { CL_NONE, CL_FROM, CL_BY, CL_VIA, CL_WITH, CL_ID, CL_FOR };

static enum clause keyword(struct span w)
{
	static const struct {
		const char *word;
		enum clause cl;
	} kw[] = {
		{ "from", CL_FROM }, { "by", CL_BY }, { "via", CL_VIA },
		{ "with", CL_WITH }, { "id", CL_ID }, { "for", CL_FOR },
	};

	if (w.n > 4)
		return CL_NONE;
	for (size_t i = 0; i < sizeof(kw) / sizeof(kw[0]); i++) {
		if (span_ieq(w, kw[i].word))
			return kw[i].cl;
	}
	return CL_NONE;
}

struct hop {
	struct span by, id;
	bool microsoft; /* with Microsoft SMTP Server */
	bool mapi;      /* with mapi */
};

static void parse_hop(const char *b, size_t n, struct hop *h)
{
	static const char *const ms_words[] = { "microsoft", "smtp", "server" };
	enum clause cl = CL_NONE;
	unsigned cl_words = 0;
	enum { WITH_UNSEEN, WITH_OPEN, WITH_DONE } with = WITH_UNSEEN;
	unsigned with_n = 0;
	bool ms_ok = true, mapi_ok = true;
	size_t pos = 0;
	struct span w;

	memset(h, 0, sizeof(*h));
	while (next_word(b, n, &pos, &w)) {
		enum clause k = keyword(w);
		if (k != CL_NONE) {
			if (with == WITH_OPEN)
				with = WITH_DONE;
			cl = k;
			cl_words = 0;
			continue;
		}
		if (cl == CL_BY && cl_words == 0 && !h->by.p)
			h->by = w;
		else if (cl == CL_ID && cl_words == 0 && !h->id.p)
			h->id = w;
		else if (cl == CL_WITH && with != WITH_DONE) {
			with = WITH_OPEN;
			ms_ok = ms_ok && with_n < 3 && span_ieq(w, ms_words[with_n]);
			mapi_ok = mapi_ok && with_n == 0 && span_ieq(w, "mapi");
			with_n++;
		}
		cl_words++;
	}
	h->microsoft = with != WITH_UNSEEN && ms_ok && with_n == 3;
	h->mapi = with != WITH_UNSEEN && mapi_ok && with_n == 1;
}

/* Lower-cases the host into dst (EXDETECT_HOST_MAX + 1 octets); its length,
 * or 0 if it is no usable host name. */
static size_t normalise_host(struct span by, char *dst)
{
	size_t n = by.n;

	if (n > 0 && by.p[n - 1] == '.')
		n--;
	if (n == 0 || n > EXDETECT_HOST_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = ascii_lower(by.p[i]);
		if (c == '.') {
			/* An empty label ("..", a leading or second trailing
			 * dot) names no host. */
			if (i == 0 || i == n - 1 || by.p[i - 1] == '.')
				return 0;
		} else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
			     c == '_')) {
			return 0;
		}
		dst[i] = c;
	}
	dst[n] = '\0';
	return n;
}

/* Decide one Received header; true (and *out filled) if it is the
 * connecting on-premises server. */
static bool examine(const struct exdetect_config *cfg, const char *b, size_t n, unsigned line,
		    unsigned hop, struct exdetect_result *out)
{
	struct hop h;
	char host[EXDETECT_HOST_MAX + 1];
	struct ex_build build;

	parse_hop(b, n, &h);
	if (!h.microsoft && !h.mapi)
		return false;
	if (!h.by.p || !h.id.p)
		return false;
	size_t hn = normalise_host(h.by, host);
	if (hn == 0)
		return false;
	if (ex_build_parse(h.id.p, h.id.n, &build) != h.id.n)
		return false;
	enum ex_family fam = ex_family_of(&build);
	if (fam == EX_FAMILY_ONLINE)
		return false;
	if (skip_host(cfg, host, hn))
		return false;

	out->exchange = true;
	memcpy(out->server, host, hn + 1);
	out->build = build;
	out->family = fam;
	out->line = line;
	out->hop = hop;
	out->mapi = h.mapi;
	return true;
}

/* Unfolding: the line break before a continuation goes, its leading
 * whitespace stays, so words never merge across a fold.  Every whitespace
 * octet becomes ' ' so the tokenizer has one separator to look for. */
static void append(char *buf, size_t *blen, const char *s, size_t n)
{
	size_t room = RECEIVED_BUF - *blen;

	if (n > room)
		n = room;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		buf[*blen + i] = (c == '\t' || c == '\r' || c == '\n') ? ' ' : c;
	}
	*blen += n;
}

/* Offset of the value if the line starts a Received field, else 0 (a value
 * never starts at offset 0). */
static size_t received_value(const char *ln, size_t n)
{
	static const char name[] = "received";
	size_t i = sizeof(name) - 1;

	if (n < i)
		return 0;
	for (size_t k = 0; k < i; k++) {
		if (ascii_lower(ln[k]) != name[k])
			return 0;
	}
	while (i < n && (ln[i] == ' ' || ln[i] == '\t'))
		i++;
	return (i < n && ln[i] == ':') ? i + 1 : 0;
}

bool exdetect_scan(const struct exdetect_config *cfg, const char *hdr, size_t len,
		   struct exdetect_result *out)
{
	char buf[RECEIVED_BUF];
	size_t blen = 0;
	bool in_received = false;
	unsigned received_line = 0, nreceived = 0, lineno = 0;
	size_t pos = 0;

	memset(out, 0, sizeof(*out));
	out->family = EX_FAMILY_NONE;
	if (!hdr)
		len = 0;

	while (pos < len) {
		const char *ln = hdr + pos;
		const char *nl = memchr(ln, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - ln) : len - pos;

		pos += nl ? n + 1 : n;
		lineno++;
		if (n > 0 && ln[n - 1] == '\r')
			n--;
		if (n == 0)
			break; /* the empty line: the body follows */
		if (ln[0] == ' ' || ln[0] == '\t') {
			if (in_received)
				append(buf, &blen, ln, n);
			continue;
		}
		if (in_received) {
			in_received = false;
			if (examine(cfg, buf, blen, received_line, nreceived, out))
				return true;
			if (++nreceived == EXDETECT_MAX_RECEIVED)
				return false;
		}
		size_t v = received_value(ln, n);
		if (v) {
			in_received = true;
			received_line = lineno;
			blen = 0;
			append(buf, &blen, ln + v, n - v);
		}
	}
	if (in_received)
		return examine(cfg, buf, blen, received_line, nreceived, out);
	return false;
}
