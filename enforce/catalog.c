/* SPDX-License-Identifier: BSD-3-Clause */
#include "enforce/catalog.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds on what the loaders accept.  The shipped catalog has a few hundred
 * rows of under 60 octets; these leave room for growth while keeping a
 * wrong or hostile file from costing more than a moment and some megabytes. */
#define CATALOG_ROWS_MAX 100000
#define CATALOG_LINE_MAX 1024
#define CATALOG_INPUT_MAX (64u << 20)

#define CSV_COLUMNS 5
#define YEAR_MIN 1990
#define YEAR_MAX 2999

static const char csv_header[] = "product,branch,update,build,date";

struct cat_branch {
	enum ex_family family;
	char name[sizeof(((struct catalog_entry *)0)->branch)];
	uint32_t lo, hi; /* its builds are entries[lo..hi) */
	bool can_comply;
	struct ex_build from;
	unsigned policy_line; /* 0: no rule names it */
};

struct catalog {
	struct catalog_entry *entries; /* by build, ascending */
	uint32_t *entry_branch;        /* entries[i] belongs to branches[entry_branch[i]] */
	size_t nentries;
	struct cat_branch *branches; /* by family, then name: binary-searchable */
	size_t nbranches;
	/* What any build that cannot reach compliance on its own branch should
	 * move to; the same for every such build, so computed once. */
	unsigned nrecommended;
	const struct catalog_entry *recommended[CATALOG_MAX_RECOMMENDED];
	char version[48];
};

/* A CSV row while loading: the line it came from is kept for error reports
 * that are only found after sorting. */
struct row {
	struct catalog_entry e;
	unsigned line;
	uint32_t branch;
};

static void __attribute__((format(printf, 4, 5)))
set_error(struct catalog_error *err, const char *file, unsigned line, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return;
	snprintf(err->file, sizeof(err->file), "%s", file);
	err->line = line;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
}

/* ---- lines ---- */

struct line_reader {
	const char *p, *end;
	unsigned no;
	const char *file;
};

/* Yields each line without its terminator (LF or CRLF).  Returns 1 for a
 * line, 0 at the end, -1 (error set) for a line that is too long or holds a
 * control character: a NUL would silently cut the C strings the fields
 * become, and a stray CR would make error messages quote invisible text. */
static int next_line(struct line_reader *lr, const char **s, size_t *len, struct catalog_error *err)
{
	if (lr->p >= lr->end)
		return 0;
	const char *start = lr->p;
	const char *nl = memchr(start, '\n', (size_t)(lr->end - start));
	const char *stop = nl ? nl : lr->end;

	lr->p = nl ? nl + 1 : lr->end;
	lr->no++;
	if (stop > start && stop[-1] == '\r')
		stop--;
	if ((size_t)(stop - start) > CATALOG_LINE_MAX) {
		set_error(err, lr->file, lr->no, "line longer than %d octets", CATALOG_LINE_MAX);
		return -1;
	}
	for (const char *q = start; q < stop; q++) {
		if ((unsigned char)*q < 0x20 && *q != '\t') {
			set_error(err, lr->file, lr->no, "control character 0x%02x in line",
				  (unsigned char)*q);
			return -1;
		}
	}
	*s = start;
	*len = (size_t)(stop - start);
	return 1;
}

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t';
}

/* Blank or a comment: nothing to parse. */
static bool is_skippable(const char *s, size_t len)
{
	size_t i = 0;

	while (i < len && is_blank(s[i]))
		i++;
	return i == len || s[i] == '#';
}

/* ---- builds CSV ---- */

static bool is_alnum(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static bool valid_branch_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= sizeof(((struct catalog_entry *)0)->branch))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_alnum(s[i]))
			return false;
	}
	return true;
}

static bool valid_update_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= sizeof(((struct catalog_entry *)0)->update))
		return false;
	if (s[0] == ' ' || s[n - 1] == ' ')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < 0x20 || s[i] > 0x7e)
			return false;
	}
	return true;
}

static bool parse_digits(const char *s, size_t n, unsigned *out)
{
	unsigned v = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	*out = v;
	return true;
}

static unsigned days_in_month(unsigned year, unsigned month)
{
	static const unsigned char days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : days[month - 1];
}

/* YYYY-MM-DD, or YYYY-MM when the sources name only the month. */
static bool parse_date(const char *s, struct catalog_entry *e)
{
	size_t n = strlen(s);
	unsigned y, m, d = 0;

	if (n != 7 && n != 10)
		return false;
	if (!parse_digits(s, 4, &y) || s[4] != '-' || !parse_digits(s + 5, 2, &m))
		return false;
	if (n == 10 && (s[7] != '-' || !parse_digits(s + 8, 2, &d)))
		return false;
	if (y < YEAR_MIN || y > YEAR_MAX || m < 1 || m > 12)
		return false;
	if (n == 10 && (d < 1 || d > days_in_month(y, m)))
		return false;
	e->year = (uint16_t)y;
	e->month = (uint8_t)m;
	e->day = (uint8_t)d;
	return true;
}

static bool parse_row(const char *s, size_t len, struct row *r, const char *file, unsigned line,
		      struct catalog_error *err)
{
	char buf[CATALOG_LINE_MAX + 1];
	char *field[CSV_COLUMNS];
	int nfields = 1;

	memcpy(buf, s, len);
	buf[len] = '\0';
	field[0] = buf;
	for (char *p = buf; *p; p++) {
		if (*p != ',')
			continue;
		if (nfields < CSV_COLUMNS)
			field[nfields] = p + 1;
		nfields++;
		*p = '\0';
	}
	if (nfields != CSV_COLUMNS) {
		set_error(err, file, line, "expected %d columns, found %d", CSV_COLUMNS, nfields);
		return false;
	}

	memset(r, 0, sizeof(*r));
	r->line = line;
	r->e.family = ex_family_from_name(field[0]);
	if (r->e.family == EX_FAMILY_NONE || r->e.family == EX_FAMILY_ONLINE) {
		set_error(err, file, line,
			  "unknown product '%.32s' (2007, 2010, 2013, 2016, 2019, SE)", field[0]);
		return false;
	}
	if (!valid_branch_name(field[1])) {
		set_error(err, file, line, "bad branch '%.32s' (1 to %zu letters and digits)",
			  field[1], sizeof(r->e.branch) - 1);
		return false;
	}
	snprintf(r->e.branch, sizeof(r->e.branch), "%s", field[1]);
	if (!valid_update_name(field[2])) {
		set_error(
			err, file, line,
			"bad update name '%.40s' (1 to %zu printable characters, no outer spaces)",
			field[2], sizeof(r->e.update) - 1);
		return false;
	}
	snprintf(r->e.update, sizeof(r->e.update), "%s", field[2]);
	if (!ex_build_from_str(field[3], &r->e.build)) {
		set_error(err, file, line, "bad build '%.40s'", field[3]);
		return false;
	}
	enum ex_family actual = ex_family_of(&r->e.build);
	if (actual == EX_FAMILY_NONE || actual == EX_FAMILY_ONLINE) {
		set_error(err, file, line, "build %.40s is not an on-premises Exchange build",
			  field[3]);
		return false;
	}
	if (actual != r->e.family) {
		set_error(err, file, line, "build %.40s is Exchange %s, not %s", field[3],
			  ex_family_name(actual), ex_family_name(r->e.family));
		return false;
	}
	if (!parse_date(field[4], &r->e)) {
		set_error(err, file, line, "bad date '%.32s' (YYYY-MM-DD or YYYY-MM)", field[4]);
		return false;
	}
	return true;
}

static struct row *parse_rows(const char *text, size_t len, const char *file, size_t *nrows,
			      struct catalog_error *err)
{
	struct line_reader lr = { text, text + len, 0, file };
	struct row *rows = NULL;
	size_t n = 0, cap = 0;
	bool header = false;
	const char *s;
	size_t slen;
	int rc;

	while ((rc = next_line(&lr, &s, &slen, err)) > 0) {
		if (is_skippable(s, slen))
			continue;
		if (!header) {
			if (slen != sizeof(csv_header) - 1 || memcmp(s, csv_header, slen) != 0) {
				set_error(err, file, lr.no, "missing header: expected '%s'",
					  csv_header);
				goto fail;
			}
			header = true;
			continue;
		}
		if (n == CATALOG_ROWS_MAX) {
			set_error(err, file, lr.no, "more than %d builds", CATALOG_ROWS_MAX);
			goto fail;
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			struct row *nr = realloc(rows, ncap * sizeof(*rows));

			if (nr == NULL) {
				set_error(err, file, lr.no, "out of memory");
				goto fail;
			}
			rows = nr;
			cap = ncap;
		}
		if (!parse_row(s, slen, &rows[n], file, lr.no, err))
			goto fail;
		n++;
	}
	if (rc < 0)
		goto fail;
	if (!header) {
		set_error(err, file, 0, "missing header: expected '%s'", csv_header);
		goto fail;
	}
	if (n == 0) {
		/* An empty catalog would make every server non-compliant. */
		set_error(err, file, 0, "no builds after the header");
		goto fail;
	}
	*nrows = n;
	return rows;
fail:
	free(rows);
	return NULL;
}

/* ---- branches and lines ---- */

/* A "line" is what a branch's builds have in common: the service pack
 * (major.minor) for 2007 and 2010, the CU (major.minor.build) from 2013 on. */
static unsigned line_depth(enum ex_family f)
{
	return f == EX_FAMILY_2007 || f == EX_FAMILY_2010 ? 2 : 3;
}

static bool same_line(const struct ex_build *a, const struct ex_build *b, enum ex_family f)
{
	for (unsigned i = 0; i < line_depth(f); i++) {
		if (a->v[i] != b->v[i])
			return false;
	}
	return true;
}

static void format_line(const struct ex_build *b, enum ex_family f, char *buf, size_t len)
{
	if (line_depth(f) == 2)
		snprintf(buf, len, "%u.%u.x.x", b->v[0], b->v[1]);
	else
		snprintf(buf, len, "%u.%u.%u.x", b->v[0], b->v[1], b->v[2]);
}

static int cmp_row_build(const void *pa, const void *pb)
{
	const struct row *a = pa, *b = pb;
	int c = ex_build_cmp(&a->e.build, &b->e.build);

	if (c != 0)
		return c;
	return a->line < b->line ? -1 : a->line > b->line;
}

static int cmp_branch_key(enum ex_family fa, const char *na, enum ex_family fb, const char *nb)
{
	if (fa != fb)
		return fa < fb ? -1 : 1;
	return strcmp(na, nb);
}

static int cmp_row_branch(const void *pa, const void *pb)
{
	const struct row *a = pa, *b = pb;
	int c = cmp_branch_key(a->e.family, a->e.branch, b->e.family, b->e.branch);

	return c != 0 ? c : cmp_row_build(pa, pb);
}

/* Cross-row checks report the earliest offending line of the file, so the
 * operator fixes errors top-down whatever order the loader found them in. */
struct first_error {
	unsigned line;
	char msg[sizeof(((struct catalog_error *)0)->msg)];
};

static void __attribute__((format(printf, 3, 4)))
note_error(struct first_error *fe, unsigned line, const char *fmt, ...)
{
	va_list ap;

	if (line >= fe->line)
		return;
	fe->line = line;
	va_start(ap, fmt);
	vsnprintf(fe->msg, sizeof(fe->msg), fmt, ap);
	va_end(ap);
}

static bool report_first(const struct first_error *fe, const char *file, struct catalog_error *err)
{
	if (fe->line == UINT_MAX)
		return true;
	set_error(err, file, fe->line, "%s", fe->msg);
	return false;
}

/* Sorted by build: two rows for one build are a mistake, whatever they say. */
static bool check_duplicates(const struct row *rows, size_t n, const char *file,
			     struct catalog_error *err)
{
	struct first_error fe = { .line = UINT_MAX };
	char b[48];

	for (size_t i = 1; i < n; i++) {
		if (ex_build_cmp(&rows[i - 1].e.build, &rows[i].e.build) != 0)
			continue;
		ex_build_format(&rows[i].e.build, b, sizeof(b));
		note_error(&fe, rows[i].line, "duplicate build %s (already on line %u)", b,
			   rows[i - 1].line);
	}
	return report_first(&fe, file, err);
}

/* Sorted by family and branch: numbers the branches and checks that each
 * sits on one line.  The branch's line is the one of its first row in the
 * file; a row elsewhere is the likely typo. */
static struct cat_branch *group_branches(struct row *rows, size_t n, size_t *nbranches,
					 const char *file, struct catalog_error *err)
{
	struct first_error fe = { .line = UINT_MAX };
	struct cat_branch *br;
	size_t nb = 0;

	for (size_t i = 0; i < n; i++) {
		if (i == 0 || cmp_branch_key(rows[i - 1].e.family, rows[i - 1].e.branch,
					     rows[i].e.family, rows[i].e.branch) != 0)
			nb++;
	}
	br = calloc(nb, sizeof(*br));
	if (br == NULL) {
		set_error(err, file, 0, "out of memory");
		return NULL;
	}
	for (size_t lo = 0, id = 0; lo < n; id++) {
		size_t hi = lo + 1, first = lo;

		while (hi < n && cmp_branch_key(rows[lo].e.family, rows[lo].e.branch,
						rows[hi].e.family, rows[hi].e.branch) == 0)
			hi++;
		for (size_t i = lo; i < hi; i++) {
			rows[i].branch = (uint32_t)id;
			if (rows[i].line < rows[first].line)
				first = i;
		}
		for (size_t i = lo; i < hi; i++) {
			enum ex_family f = rows[i].e.family;
			char got[48], want[48], b[48];

			if (same_line(&rows[i].e.build, &rows[first].e.build, f))
				continue;
			ex_build_format(&rows[i].e.build, b, sizeof(b));
			format_line(&rows[i].e.build, f, got, sizeof(got));
			format_line(&rows[first].e.build, f, want, sizeof(want));
			note_error(
				&fe, rows[i].line,
				"build %s belongs to %s, but the builds of %s %s are %s (line %u)",
				b, got, ex_family_name(f), rows[i].e.branch, want,
				rows[first].line);
		}
		br[id].family = rows[lo].e.family;
		snprintf(br[id].name, sizeof(br[id].name), "%s", rows[lo].e.branch);
		lo = hi;
	}
	if (!report_first(&fe, file, err)) {
		free(br);
		return NULL;
	}
	*nbranches = nb;
	return br;
}

/* Sorted by build: two branches may share a line (2016's Preview and RTM are
 * both 15.1.225) as long as they do not interleave, so that the nearest
 * lower build decides the branch without ambiguity.  Records each branch's
 * range in the sorted order. */
static bool place_branches(const struct row *rows, size_t n, struct cat_branch *br, size_t nb,
			   const char *file, struct catalog_error *err)
{
	struct first_error fe = { .line = UINT_MAX };
	bool *seen = calloc(nb, sizeof(*seen));

	if (seen == NULL) {
		set_error(err, file, 0, "out of memory");
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t id = rows[i].branch;

		if (i > 0 && rows[i - 1].branch == id) {
			br[id].hi = (uint32_t)i + 1;
			continue;
		}
		if (seen[id]) {
			const struct row *prev = &rows[i - 1];
			char l[48];

			format_line(&rows[i].e.build, rows[i].e.family, l, sizeof(l));
			note_error(&fe, rows[i].line,
				   "builds of %s %s and %s interleave within %s (line %u)",
				   ex_family_name(rows[i].e.family), rows[i].e.branch,
				   prev->e.branch, l, prev->line);
			continue;
		}
		seen[id] = true;
		br[id].lo = (uint32_t)i;
		br[id].hi = (uint32_t)i + 1;
	}
	free(seen);
	return report_first(&fe, file, err);
}

/* ---- policy ---- */

static struct cat_branch *find_branch(struct cat_branch *br, size_t nb, enum ex_family f,
				      const char *name)
{
	size_t lo = 0, hi = nb;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_branch_key(br[mid].family, br[mid].name, f, name);

		if (c == 0)
			return &br[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

#define POLICY_TOKENS_MAX 4

static int split_tokens(char *s, char **tok)
{
	int n = 0;

	for (char *p = s; *p;) {
		while (is_blank(*p))
			p++;
		if (*p == '\0' || *p == '#')
			break;
		if (n < POLICY_TOKENS_MAX + 1)
			tok[n] = p;
		n++;
		while (*p && !is_blank(*p) && *p != '#')
			p++;
		if (*p == '#') {
			*p = '\0';
			break;
		}
		if (*p)
			*p++ = '\0';
	}
	return n;
}

static bool parse_policy(struct catalog *c, const char *text, size_t len, const char *file,
			 struct catalog_error *err)
{
	struct line_reader lr = { text, text + len, 0, file };
	unsigned never_line[EX_FAMILY_COUNT] = { 0 };
	unsigned rule_line[EX_FAMILY_COUNT] = { 0 };
	const char *s;
	size_t slen;
	int rc;

	while ((rc = next_line(&lr, &s, &slen, err)) > 0) {
		char buf[CATALOG_LINE_MAX + 1];
		char *tok[POLICY_TOKENS_MAX + 1];
		struct ex_build from;
		int ntok;

		if (is_skippable(s, slen))
			continue;
		memcpy(buf, s, slen);
		buf[slen] = '\0';
		ntok = split_tokens(buf, tok);
		if (!(ntok == 2 && strcmp(tok[1], "never") == 0) &&
		    !(ntok == 4 && strcmp(tok[2], "from") == 0)) {
			set_error(err, file, lr.no,
				  "expected '<family> never' or '<family> <branch> from <build>'");
			return false;
		}
		enum ex_family f = ex_family_from_name(tok[0]);
		if (f == EX_FAMILY_NONE || f == EX_FAMILY_ONLINE) {
			set_error(err, file, lr.no,
				  "unknown family '%.32s' (2007, 2010, 2013, 2016, 2019, SE)",
				  tok[0]);
			return false;
		}
		if (ntok == 2) {
			if (never_line[f] != 0) {
				set_error(err, file, lr.no, "duplicate policy for %s (line %u)",
					  ex_family_name(f), never_line[f]);
				return false;
			}
			if (rule_line[f] != 0) {
				set_error(err, file, lr.no,
					  "conflicting policy: %s has a branch rule (line %u)",
					  ex_family_name(f), rule_line[f]);
				return false;
			}
			never_line[f] = lr.no;
			continue;
		}
		if (never_line[f] != 0) {
			set_error(err, file, lr.no, "conflicting policy: %s is never (line %u)",
				  ex_family_name(f), never_line[f]);
			return false;
		}

		struct cat_branch *b = find_branch(c->branches, c->nbranches, f, tok[1]);
		if (b == NULL) {
			set_error(err, file, lr.no, "%s has no branch '%.32s' in the catalog",
				  ex_family_name(f), tok[1]);
			return false;
		}
		if (b->policy_line != 0) {
			set_error(err, file, lr.no, "duplicate policy for %s %s (line %u)",
				  ex_family_name(f), b->name, b->policy_line);
			return false;
		}
		if (!ex_build_from_str(tok[3], &from)) {
			set_error(err, file, lr.no, "bad build '%.40s'", tok[3]);
			return false;
		}
		bool known = false;
		for (uint32_t i = b->lo; i < b->hi && !known; i++)
			known = ex_build_cmp(&c->entries[i].build, &from) == 0;
		if (!known) {
			set_error(err, file, lr.no, "%.40s is not a build of %s %s in the catalog",
				  tok[3], ex_family_name(f), b->name);
			return false;
		}
		b->policy_line = lr.no;
		b->can_comply = true;
		b->from = from;
		if (rule_line[f] == 0)
			rule_line[f] = lr.no;
	}
	return rc == 0;
}

/* Newest family first, and within a family the newest branch first: the
 * order in which an operator would prefer to move. */
static void compute_recommended(struct catalog *c)
{
	bool taken_any = true;

	c->nrecommended = 0;
	while (c->nrecommended < CATALOG_MAX_RECOMMENDED && taken_any) {
		const struct cat_branch *best = NULL;
		const struct catalog_entry *best_e = NULL;

		for (size_t i = 0; i < c->nbranches; i++) {
			const struct cat_branch *b = &c->branches[i];
			const struct catalog_entry *e = &c->entries[b->hi - 1];
			bool done = false;

			if (!b->can_comply)
				continue;
			for (unsigned k = 0; k < c->nrecommended && !done; k++)
				done = c->recommended[k] == e;
			if (done)
				continue;
			if (best == NULL || b->family > best->family ||
			    (b->family == best->family &&
			     ex_build_cmp(&e->build, &best_e->build) > 0)) {
				best = b;
				best_e = e;
			}
		}
		taken_any = best != NULL;
		if (taken_any)
			c->recommended[c->nrecommended++] = best_e;
	}
}

/* ---- public ---- */

static uint64_t fnv1a64(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

void catalog_free(struct catalog *c)
{
	if (c == NULL)
		return;
	free(c->entries);
	free(c->entry_branch);
	free(c->branches);
	free(c);
}

struct catalog *catalog_parse(const char *builds, size_t builds_len, const char *builds_name,
			      const char *policy, size_t policy_len, const char *policy_name,
			      struct catalog_error *err)
{
	const char *bname = builds_name ? builds_name : "<memory>";
	const char *pname = policy_name ? policy_name : "<memory>";
	struct catalog *c = NULL;
	struct row *rows = NULL;
	size_t n = 0;
	uint64_t h;

	if ((builds == NULL && builds_len != 0) || (policy == NULL && policy_len != 0)) {
		set_error(err, builds == NULL && builds_len != 0 ? bname : pname, 0,
			  "NULL input of non-zero length");
		return NULL;
	}
	if (builds_len > CATALOG_INPUT_MAX || policy_len > CATALOG_INPUT_MAX) {
		set_error(err, builds_len > CATALOG_INPUT_MAX ? bname : pname, 0,
			  "input larger than %u octets", CATALOG_INPUT_MAX);
		return NULL;
	}
	/* Empty inputs may come as NULL; pointer arithmetic on NULL is not C. */
	if (builds == NULL)
		builds = "";
	if (policy == NULL)
		policy = "";
	rows = parse_rows(builds, builds_len, bname, &n, err);
	if (rows == NULL)
		return NULL;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		goto oom;
	qsort(rows, n, sizeof(*rows), cmp_row_build);
	if (!check_duplicates(rows, n, bname, err))
		goto fail;
	qsort(rows, n, sizeof(*rows), cmp_row_branch);
	c->branches = group_branches(rows, n, &c->nbranches, bname, err);
	if (c->branches == NULL)
		goto fail;
	qsort(rows, n, sizeof(*rows), cmp_row_build);
	if (!place_branches(rows, n, c->branches, c->nbranches, bname, err))
		goto fail;

	c->entries = malloc(n * sizeof(*c->entries));
	c->entry_branch = malloc(n * sizeof(*c->entry_branch));
	if (c->entries == NULL || c->entry_branch == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		c->entries[i] = rows[i].e;
		c->entry_branch[i] = rows[i].branch;
	}
	c->nentries = n;
	free(rows);
	rows = NULL;

	if (!parse_policy(c, policy, policy_len, pname, err))
		goto fail;
	compute_recommended(c);

	/* A NUL between the two inputs keeps text moved from the end of one to
	 * the start of the other from hashing the same. */
	h = 0xcbf29ce484222325ull;
	h = fnv1a64(h, builds, builds_len);
	h = fnv1a64(h, "", 1);
	h = fnv1a64(h, policy, policy_len);
	snprintf(c->version, sizeof(c->version), "%zu:%016llx", n, (unsigned long long)h);
	return c;

oom:
	set_error(err, bname, 0, "out of memory");
fail:
	free(rows);
	catalog_free(c);
	return NULL;
}

/* Reads a whole file, bounded, in chunks so that pipes and special files
 * work as well as regular ones. */
static char *read_file(const char *path, size_t *len, struct catalog_error *err)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t n = 0, cap = 0;

	if (f == NULL) {
		char eb[128];

		set_error(err, path, 0, "cannot open: %s", strerror_r(errno, eb, sizeof(eb)));
		return NULL;
	}
	for (;;) {
		if (n == cap) {
			/* One octet past the limit is enough to know it is
			 * exceeded, without holding twice the limit. */
			size_t ncap = cap ? cap * 2 : 65536;
			char *nb;

			if (ncap > (size_t)CATALOG_INPUT_MAX + 1)
				ncap = (size_t)CATALOG_INPUT_MAX + 1;
			if (cap > CATALOG_INPUT_MAX) {
				set_error(err, path, 0, "file larger than %u octets",
					  CATALOG_INPUT_MAX);
				goto fail;
			}
			nb = realloc(buf, ncap);
			if (nb == NULL) {
				set_error(err, path, 0, "out of memory");
				goto fail;
			}
			buf = nb;
			cap = ncap;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0) {
			if (ferror(f)) {
				set_error(err, path, 0, "read error");
				goto fail;
			}
			break;
		}
	}
	if (n > CATALOG_INPUT_MAX) {
		set_error(err, path, 0, "file larger than %u octets", CATALOG_INPUT_MAX);
		goto fail;
	}
	fclose(f);
	*len = n;
	return buf;
fail:
	fclose(f);
	free(buf);
	return NULL;
}

struct catalog *catalog_load(const char *builds_path, const char *policy_path,
			     struct catalog_error *err)
{
	size_t blen = 0, plen = 0;
	char *b = read_file(builds_path, &blen, err);
	char *p = NULL;
	struct catalog *c = NULL;

	if (b == NULL)
		return NULL;
	p = read_file(policy_path, &plen, err);
	if (p != NULL)
		c = catalog_parse(b, blen, builds_path, p, plen, policy_path, err);
	free(b);
	free(p);
	return c;
}

void catalog_classify(const struct catalog *c, const struct ex_build *b, struct catalog_class *out)
{
	enum ex_family f = ex_family_of(b);
	const struct cat_branch *br = NULL;
	size_t lo = 0, hi;

	memset(out, 0, sizeof(*out));
	out->family = f;
	out->branch = "";
	if (c == NULL || f == EX_FAMILY_NONE || f == EX_FAMILY_ONLINE)
		return;

	/* First entry above b; the one before it is the nearest lower-or-equal. */
	hi = c->nentries;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ex_build_cmp(&c->entries[mid].build, b) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0 && same_line(&c->entries[lo - 1].build, b, f)) {
		out->nearest = &c->entries[lo - 1];
		out->exact = ex_build_cmp(&out->nearest->build, b) == 0;
		br = &c->branches[c->entry_branch[lo - 1]];
	} else if (lo < c->nentries && same_line(&c->entries[lo].build, b, f)) {
		/* Below every known build of its line (an RTM's transport
		 * binary can stamp one): the branch is known, nothing nearer. */
		br = &c->branches[c->entry_branch[lo]];
	}

	if (br != NULL) {
		out->branch = br->name;
		if (br->can_comply) {
			out->compliant = ex_build_cmp(b, &br->from) >= 0;
			out->recommended[0] = &c->entries[br->hi - 1];
			out->nrecommended = 1;
			return;
		}
	}
	out->nrecommended = c->nrecommended;
	memcpy(out->recommended, c->recommended, sizeof(out->recommended));
}

size_t catalog_size(const struct catalog *c)
{
	return c ? c->nentries : 0;
}

const struct catalog_entry *catalog_entry_at(const struct catalog *c, size_t i)
{
	return c && i < c->nentries ? &c->entries[i] : NULL;
}

const char *catalog_version(const struct catalog *c)
{
	return c ? c->version : "";
}
