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

#define CSV_COLUMNS_MAX 6
#define YEAR_MIN 1990
#define YEAR_MAX 2999

/* Rules, in all: a policy file is a few lines; this keeps the overlap
 * check (quadratic per branch) and the memory bounded for a hostile one. */
#define CATALOG_RULES_MAX 4096
/* A "current" rule's grace: ten years is already no rule at all. */
#define CURRENT_DAYS_MAX 3650
#define DAY_SECONDS INT64_C(86400)

/* The sixth column came later: files without it are all public releases. */
static const char csv_header5[] = "product,branch,update,build,date";
static const char csv_header6[] = "product,branch,update,build,date,channel";

struct cat_branch {
	enum ex_family family;
	char name[sizeof(((struct catalog_entry *)0)->branch)];
	uint32_t lo, hi;        /* its builds are entries[lo..hi) */
	uint32_t tlo, thi;      /* its public builds are by_time[tlo..thi) */
	uint32_t rlo, rhi;      /* its rules are rules[rlo..rhi), by since */
	uint32_t newest_public; /* entries index; hi - 1 when it has none */
};

/* A rule of the compliance file, resolved against the catalog. */
struct cat_rule {
	uint32_t branch;
	enum catalog_rule_kind kind; /* FROM or CURRENT */
	unsigned line;
	int64_t since, until;
	unsigned days;
	uint32_t from; /* FROM: entries index of its build */
};

struct catalog {
	struct catalog_entry *entries; /* by build, ascending */
	uint32_t *entry_branch;        /* entries[i] belongs to branches[entry_branch[i]] */
	int64_t *entry_time;           /* catalog_entry_time(&entries[i]) */
	size_t nentries;
	struct cat_branch *branches; /* by family, then name: binary-searchable */
	size_t nbranches;
	/* Per branch, its public builds by release time, and for each the
	 * highest build released up to then (entries indexes): a "current"
	 * floor is one binary search. */
	uint32_t *by_time, *by_time_max;
	struct cat_rule *rules;
	size_t nrules;
	uint32_t *ruled; /* the branches that have rules */
	size_t nruled;
	unsigned never_line[EX_FAMILY_COUNT];
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

static bool parse_row(const char *s, size_t len, int columns, struct row *r, const char *file,
		      unsigned line, struct catalog_error *err)
{
	char buf[CATALOG_LINE_MAX + 1];
	char *field[CSV_COLUMNS_MAX];
	int nfields = 1;

	memcpy(buf, s, len);
	buf[len] = '\0';
	field[0] = buf;
	for (char *p = buf; *p; p++) {
		if (*p != ',')
			continue;
		if (nfields < CSV_COLUMNS_MAX)
			field[nfields] = p + 1;
		nfields++;
		*p = '\0';
	}
	if (nfields != columns) {
		set_error(err, file, line, "expected %d columns, found %d", columns, nfields);
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
	if (columns > 5) {
		if (strcmp(field[5], "esu") == 0) {
			r->e.esu = true;
		} else if (strcmp(field[5], "public") != 0) {
			set_error(err, file, line, "bad channel '%.32s' (public or esu)", field[5]);
			return false;
		}
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
	int columns = 0;
	const char *s;
	size_t slen;
	int rc;

	while ((rc = next_line(&lr, &s, &slen, err)) > 0) {
		if (is_skippable(s, slen))
			continue;
		if (!header) {
			if (slen == sizeof(csv_header5) - 1 && memcmp(s, csv_header5, slen) == 0)
				columns = 5;
			else if (slen == sizeof(csv_header6) - 1 &&
				 memcmp(s, csv_header6, slen) == 0)
				columns = 6;
			if (columns == 0) {
				set_error(err, file, lr.no, "missing header: expected '%s'",
					  csv_header6);
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
		if (!parse_row(s, slen, columns, &rows[n], file, lr.no, err))
			goto fail;
		n++;
	}
	if (rc < 0)
		goto fail;
	if (!header) {
		set_error(err, file, 0, "missing header: expected '%s'", csv_header6);
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

/* ---- time ---- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil, restated). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

int64_t catalog_entry_time(const struct catalog_entry *e)
{
	/* A month-only date counts from its last day: a rule never asks
	 * for an update before it surely existed. */
	unsigned day = e->day ? e->day : days_in_month(e->year, e->month);

	return days_from_civil(e->year, e->month, day) * DAY_SECONDS;
}

bool catalog_parse_time(const char *s, int64_t *out)
{
	size_t n = strlen(s);
	unsigned y, m, d, hh = 0, mm = 0, ss = 0;

	if (n != 10 && n != 20)
		return false;
	if (!parse_digits(s, 4, &y) || s[4] != '-' || !parse_digits(s + 5, 2, &m) || s[7] != '-' ||
	    !parse_digits(s + 8, 2, &d))
		return false;
	if (y < YEAR_MIN || y > YEAR_MAX || m < 1 || m > 12 || d < 1 || d > days_in_month(y, m))
		return false;
	if (n == 20) {
		if (s[10] != 'T' || !parse_digits(s + 11, 2, &hh) || s[13] != ':' ||
		    !parse_digits(s + 14, 2, &mm) || s[16] != ':' ||
		    !parse_digits(s + 17, 2, &ss) || s[19] != 'Z')
			return false;
		if (hh > 23 || mm > 59 || ss > 59)
			return false;
	}
	*out = days_from_civil(y, m, d) * DAY_SECONDS + hh * 3600 + mm * 60 + ss;
	return true;
}

int catalog_format_time(int64_t t, char *buf, size_t len)
{
	int64_t days, y, secs;
	unsigned m, d;

	if (t == CATALOG_TIME_MIN || t == CATALOG_TIME_MAX)
		return snprintf(buf, len, "%s", "");
	days = t >= 0 ? t / DAY_SECONDS : -((-t + DAY_SECONDS - 1) / DAY_SECONDS);
	secs = t - days * DAY_SECONDS;
	civil_from_days(days, &y, &m, &d);
	if (secs == 0)
		return snprintf(buf, len, "%04lld-%02u-%02u", (long long)y, m, d);
	return snprintf(buf, len, "%04lld-%02u-%02uT%02u:%02u:%02uZ", (long long)y, m, d,
			(unsigned)(secs / 3600), (unsigned)(secs / 60 % 60), (unsigned)(secs % 60));
}

const char *catalog_rule_kind_name(enum catalog_rule_kind k)
{
	switch (k) {
	case CATALOG_RULE_NEVER:
		return "never";
	case CATALOG_RULE_FROM:
		return "from";
	case CATALOG_RULE_CURRENT:
		return "current";
	case CATALOG_RULE_NONE:
		break;
	}
	return "none";
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

/* The longest rule: family branch from build since DATE until DATE. */
#define POLICY_TOKENS_MAX 8

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

static bool overlaps(const struct cat_rule *a, const struct cat_rule *b)
{
	return a->since < b->until && b->since < a->until;
}

static int cmp_rule(const void *pa, const void *pb)
{
	const struct cat_rule *a = pa, *b = pb;

	if (a->branch != b->branch)
		return a->branch < b->branch ? -1 : 1;
	return a->since < b->since ? -1 : a->since > b->since;
}

/* "since DATE" and "until DATE", in either order, each at most once. */
static bool parse_dates(char **tok, int ntok, struct cat_rule *r, const char *file, unsigned line,
			struct catalog_error *err)
{
	const char *since_s = NULL, *until_s = NULL;

	r->since = CATALOG_TIME_MIN;
	r->until = CATALOG_TIME_MAX;
	for (int i = 0; i < ntok; i += 2) {
		bool since = strcmp(tok[i], "since") == 0;
		int64_t t;

		if (!since && strcmp(tok[i], "until") != 0) {
			set_error(err, file, line,
				  "expected 'since <date>' or 'until <date>' after the rule, found "
				  "'%.32s'",
				  tok[i]);
			return false;
		}
		if (i + 1 >= ntok) {
			set_error(err, file, line, "'%s' needs a date", tok[i]);
			return false;
		}
		if (since ? since_s != NULL : until_s != NULL) {
			set_error(err, file, line, "'%s' given twice", tok[i]);
			return false;
		}
		if (!catalog_parse_time(tok[i + 1], &t)) {
			set_error(err, file, line,
				  "unknown date form '%.40s' after '%s' (YYYY-MM-DD or "
				  "YYYY-MM-DDTHH:MM:SSZ, UTC)",
				  tok[i + 1], tok[i]);
			return false;
		}
		if (since) {
			since_s = tok[i + 1];
			r->since = t;
		} else {
			until_s = tok[i + 1];
			r->until = t;
		}
	}
	if (r->since >= r->until) {
		set_error(err, file, line, "since %.40s is not before until %.40s", since_s,
			  until_s);
		return false;
	}
	return true;
}

static bool parse_days(const char *s, unsigned *out)
{
	size_t n = strlen(s);
	unsigned v;

	if (n < 2 || n > 5 || s[n - 1] != 'd' || !parse_digits(s, n - 1, &v) ||
	    v > CURRENT_DAYS_MAX)
		return false;
	*out = v;
	return true;
}

static bool parse_policy(struct catalog *c, const char *text, size_t len, const char *file,
			 struct catalog_error *err)
{
	struct line_reader lr = { text, text + len, 0, file };
	unsigned rule_line[EX_FAMILY_COUNT] = { 0 };
	size_t cap = 0;
	const char *s;
	size_t slen;
	int rc;

	while ((rc = next_line(&lr, &s, &slen, err)) > 0) {
		char buf[CATALOG_LINE_MAX + 1];
		char *tok[POLICY_TOKENS_MAX + 1];
		struct cat_rule r;
		int ntok;

		if (is_skippable(s, slen))
			continue;
		memcpy(buf, s, slen);
		buf[slen] = '\0';
		ntok = split_tokens(buf, tok);
		if (!(ntok == 2 && strcmp(tok[1], "never") == 0) &&
		    !(ntok >= 4 && ntok <= POLICY_TOKENS_MAX &&
		      (strcmp(tok[2], "from") == 0 || strcmp(tok[2], "current") == 0))) {
			set_error(err, file, lr.no,
				  "expected '<family> never', '<family> <branch> from <build>' or "
				  "'<family> <branch> current <N>d', each of the last two "
				  "optionally with 'since <date>' and 'until <date>'");
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
			if (c->never_line[f] != 0) {
				set_error(err, file, lr.no, "duplicate policy for %s (line %u)",
					  ex_family_name(f), c->never_line[f]);
				return false;
			}
			if (rule_line[f] != 0) {
				set_error(err, file, lr.no,
					  "conflicting policy: %s has a branch rule (line %u)",
					  ex_family_name(f), rule_line[f]);
				return false;
			}
			c->never_line[f] = lr.no;
			continue;
		}
		if (c->never_line[f] != 0) {
			set_error(err, file, lr.no, "conflicting policy: %s is never (line %u)",
				  ex_family_name(f), c->never_line[f]);
			return false;
		}

		struct cat_branch *b = find_branch(c->branches, c->nbranches, f, tok[1]);
		if (b == NULL) {
			set_error(err, file, lr.no, "%s has no branch '%.32s' in the catalog",
				  ex_family_name(f), tok[1]);
			return false;
		}
		memset(&r, 0, sizeof(r));
		r.branch = (uint32_t)(b - c->branches);
		r.line = lr.no;
		if (strcmp(tok[2], "from") == 0) {
			struct ex_build from;
			bool known = false;

			r.kind = CATALOG_RULE_FROM;
			if (!ex_build_from_str(tok[3], &from)) {
				set_error(err, file, lr.no, "bad build '%.40s'", tok[3]);
				return false;
			}
			for (uint32_t i = b->lo; i < b->hi && !known; i++) {
				known = ex_build_cmp(&c->entries[i].build, &from) == 0;
				if (known)
					r.from = i;
			}
			if (!known) {
				set_error(err, file, lr.no,
					  "%.40s is not a build of %s %s in the catalog", tok[3],
					  ex_family_name(f), b->name);
				return false;
			}
		} else {
			r.kind = CATALOG_RULE_CURRENT;
			if (!parse_days(tok[3], &r.days)) {
				set_error(err, file, lr.no,
					  "bad grace '%.32s' for current: days from 0 to %d, "
					  "written like 60d",
					  tok[3], CURRENT_DAYS_MAX);
				return false;
			}
		}
		if (!parse_dates(tok + 4, ntok - 4, &r, file, lr.no, err))
			return false;
		/* Rules of one branch may follow each other in time, never
		 * overlap: which one decides must not depend on the order. */
		for (size_t i = 0; i < c->nrules; i++) {
			if (c->rules[i].branch == r.branch && overlaps(&c->rules[i], &r)) {
				set_error(err, file, lr.no,
					  "duplicate policy for %s %s (line %u): their dates "
					  "overlap",
					  ex_family_name(f), b->name, c->rules[i].line);
				return false;
			}
		}
		if (c->nrules == CATALOG_RULES_MAX) {
			set_error(err, file, lr.no, "more than %d rules", CATALOG_RULES_MAX);
			return false;
		}
		if (c->nrules == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct cat_rule *nr = realloc(c->rules, ncap * sizeof(*nr));

			if (nr == NULL) {
				set_error(err, file, lr.no, "out of memory");
				return false;
			}
			c->rules = nr;
			cap = ncap;
		}
		c->rules[c->nrules++] = r;
		if (rule_line[f] == 0)
			rule_line[f] = lr.no;
	}
	if (rc < 0)
		return false;

	/* A policy without rules leaves c->rules NULL, which qsort may not
	 * be given even for no elements. */
	if (c->nrules)
		qsort(c->rules, c->nrules, sizeof(*c->rules), cmp_rule);
	c->ruled = calloc(c->nrules + 1, sizeof(*c->ruled));
	if (c->ruled == NULL) {
		set_error(err, file, 0, "out of memory");
		return false;
	}
	for (size_t i = 0; i < c->nrules; i++) {
		struct cat_branch *b = &c->branches[c->rules[i].branch];

		if (i == 0 || c->rules[i - 1].branch != c->rules[i].branch) {
			b->rlo = (uint32_t)i;
			c->ruled[c->nruled++] = c->rules[i].branch;
		}
		b->rhi = (uint32_t)i + 1;
	}
	return true;
}

/* ---- release order ---- */

static int cmp_by_time(const void *pa, const void *pb, void *ctx)
{
	const struct catalog *c = ctx;
	uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;

	if (c->entry_time[a] != c->entry_time[b])
		return c->entry_time[a] < c->entry_time[b] ? -1 : 1;
	return a < b ? -1 : a > b;
}

/* Per branch: its public releases by date, with the highest build
 * released up to each. */
static bool order_by_time(struct catalog *c)
{
	size_t k = 0;

	c->entry_time = malloc((c->nentries + 1) * sizeof(*c->entry_time));
	c->by_time = malloc((c->nentries + 1) * sizeof(*c->by_time));
	c->by_time_max = malloc((c->nentries + 1) * sizeof(*c->by_time_max));
	if (c->entry_time == NULL || c->by_time == NULL || c->by_time_max == NULL)
		return false;
	for (size_t i = 0; i < c->nentries; i++)
		c->entry_time[i] = catalog_entry_time(&c->entries[i]);
	for (size_t bi = 0; bi < c->nbranches; bi++) {
		struct cat_branch *b = &c->branches[bi];

		b->tlo = (uint32_t)k;
		b->newest_public = b->hi - 1;
		for (uint32_t i = b->lo; i < b->hi; i++) {
			if (c->entries[i].esu)
				continue;
			c->by_time[k++] = i;
			b->newest_public = i;
		}
		b->thi = (uint32_t)k;
		qsort_r(c->by_time + b->tlo, b->thi - b->tlo, sizeof(*c->by_time), cmp_by_time, c);
		for (uint32_t i = b->tlo; i < b->thi; i++) {
			uint32_t e = c->by_time[i];

			c->by_time_max[i] =
				i > b->tlo && c->by_time_max[i - 1] > e ? c->by_time_max[i - 1] : e;
		}
	}
	return true;
}

/* ---- rules in time ---- */

static const struct cat_rule *rule_at(const struct catalog *c, const struct cat_branch *b,
				      int64_t t)
{
	for (uint32_t i = b->rlo; i < b->rhi; i++) {
		if (c->rules[i].since <= t && t < c->rules[i].until)
			return &c->rules[i];
	}
	return NULL;
}

/* A "current" rule's reach: a release counts from this long after it. */
static int64_t grace(const struct cat_rule *r)
{
	return (int64_t)r->days * DAY_SECONDS;
}

/* Number of the branch's public releases released at least `days` before
 * t: by_time[b->tlo .. result). */
static uint32_t released_by(const struct catalog *c, const struct cat_branch *b, int64_t t,
			    int64_t g)
{
	uint32_t lo = b->tlo, hi = b->thi;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		/* entry times and graces are bounded; t may be anything */
		if (c->entry_time[c->by_time[mid]] + g <= t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The lowest compliant build under r at t (entries index), or -1 when
 * every build of the branch complies. */
static int64_t floor_at(const struct catalog *c, const struct cat_branch *b,
			const struct cat_rule *r, int64_t t)
{
	uint32_t n;

	if (r->kind == CATALOG_RULE_FROM)
		return r->from;
	n = released_by(c, b, t, grace(r));
	return n > b->tlo ? (int64_t)c->by_time_max[n - 1] : -1;
}

/* Whether a build of branch b complies at t. */
static bool complies_at(const struct catalog *c, const struct cat_branch *b,
			const struct ex_build *build, int64_t t)
{
	const struct cat_rule *r = rule_at(c, b, t);
	int64_t fl;

	if (r == NULL)
		return false;
	fl = floor_at(c, b, r, t);
	return fl < 0 || ex_build_cmp(build, &c->entries[fl].build) >= 0;
}

/* The branch's first boundary after t: a rule starting or ending, or a
 * release reaching a "current" rule's grace inside that rule's dates. */
static int64_t branch_next(const struct catalog *c, const struct cat_branch *b, int64_t t)
{
	int64_t best = CATALOG_TIME_MAX;

	for (uint32_t i = b->rlo; i < b->rhi; i++) {
		const struct cat_rule *r = &c->rules[i];

		if (r->since > t && r->since < best)
			best = r->since;
		if (r->until > t && r->until < best)
			best = r->until;
		if (r->kind == CATALOG_RULE_CURRENT && r->until > t) {
			int64_t from = t > r->since ? t : r->since;
			uint32_t k = released_by(c, b, from, grace(r));

			/* the first release whose grace ends after max(t, since) */
			if (k < b->thi) {
				int64_t at = c->entry_time[c->by_time[k]] + grace(r);

				if (at < r->until && at > t && at < best)
					best = at;
			}
		}
	}
	return best;
}

/* The branch's last boundary at or before t, or CATALOG_TIME_MIN. */
static int64_t branch_prev(const struct catalog *c, const struct cat_branch *b, int64_t t)
{
	int64_t best = CATALOG_TIME_MIN;

	for (uint32_t i = b->rlo; i < b->rhi; i++) {
		const struct cat_rule *r = &c->rules[i];

		if (r->since != CATALOG_TIME_MIN && r->since <= t && r->since > best)
			best = r->since;
		if (r->until != CATALOG_TIME_MAX && r->until <= t && r->until > best)
			best = r->until;
		if (r->kind == CATALOG_RULE_CURRENT && r->since < t) {
			int64_t to = t < r->until - 1 ? t : r->until - 1;
			uint32_t k = released_by(c, b, to, grace(r));

			/* the last release whose grace ended by min(t, until - 1) */
			if (k > b->tlo) {
				int64_t at = c->entry_time[c->by_time[k - 1]] + grace(r);

				if (at > r->since && at > best)
					best = at;
			}
		}
	}
	return best;
}

/* ---- recommendations ---- */

/* What to move to on branch b under rule r: its newest public release,
 * unless the rule asks for more than any public one offers (a floor an
 * operator set on an ESU-only build): then its newest. */
static const struct catalog_entry *branch_target(const struct catalog *c,
						 const struct cat_branch *b,
						 const struct cat_rule *r, int64_t t)
{
	const struct catalog_entry *e = &c->entries[b->newest_public];

	(void)t;
	/* A "current" floor is a public release, never above the newest one. */
	if (e->esu || (r->kind == CATALOG_RULE_FROM &&
		       ex_build_cmp(&e->build, &c->entries[r->from].build) < 0))
		e = &c->entries[b->hi - 1];
	return e;
}

/* Rank of a candidate: rules without an end first (the branch a server
 * can stay on: SE), then the server's own branch, then newest family and
 * newest build. */
static bool ranks_before(const struct cat_branch *ba, const struct catalog_entry *ea, bool open_a,
			 bool own_a, const struct cat_branch *bb, const struct catalog_entry *eb,
			 bool open_b, bool own_b)
{
	if (open_a != open_b)
		return open_a;
	if (own_a != own_b)
		return own_a;
	if (ba->family != bb->family)
		return ba->family > bb->family;
	return ex_build_cmp(&ea->build, &eb->build) > 0;
}

/* own_rule: the rule of the server's branch in force at t, or NULL. */
static void recommend(const struct catalog *c, const struct cat_branch *own,
		      const struct cat_rule *own_rule, int64_t t, struct catalog_class *out)
{
	/* The best candidates so far, best first: one pass over the branches
	 * that have rules (this runs for every message). */
	struct cand {
		const struct cat_branch *b;
		const struct catalog_entry *e;
		bool open, own;
	} best[CATALOG_MAX_RECOMMENDED];
	unsigned n = 0;

	out->nrecommended = 0;
	if (own_rule != NULL && own_rule->until == CATALOG_TIME_MAX) {
		/* Staying on the branch is the smallest step. */
		out->recommended[0] = branch_target(c, own, own_rule, t);
		out->nrecommended = 1;
		return;
	}
	for (size_t i = 0; i < c->nruled; i++) {
		const struct cat_branch *b = &c->branches[c->ruled[i]];
		const struct cat_rule *r = b == own ? own_rule : rule_at(c, b, t);
		struct cand k;
		unsigned pos;

		if (r == NULL)
			continue;
		k.b = b;
		k.e = branch_target(c, b, r, t);
		k.open = r->until == CATALOG_TIME_MAX;
		k.own = b == own;
		pos = n;
		while (pos > 0 &&
		       ranks_before(k.b, k.e, k.open, k.own, best[pos - 1].b, best[pos - 1].e,
				    best[pos - 1].open, best[pos - 1].own))
			pos--;
		if (pos == CATALOG_MAX_RECOMMENDED)
			continue;
		if (n < CATALOG_MAX_RECOMMENDED)
			n++;
		memmove(&best[pos + 1], &best[pos], (n - 1 - pos) * sizeof(best[0]));
		best[pos] = k;
	}
	for (unsigned i = 0; i < n; i++)
		out->recommended[i] = best[i].e;
	out->nrecommended = n;
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
	free(c->entry_time);
	free(c->by_time);
	free(c->by_time_max);
	free(c->branches);
	free(c->rules);
	free(c->ruled);
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
	if (!order_by_time(c))
		goto oom;

	if (!parse_policy(c, policy, policy_len, pname, err))
		goto fail;

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

/* The branch a build belongs to, and its nearest known build. */
static const struct cat_branch *locate(const struct catalog *c, const struct ex_build *b,
				       enum ex_family f, const struct catalog_entry **nearest)
{
	size_t lo = 0, hi = c->nentries;

	*nearest = NULL;
	/* First entry above b; the one before it is the nearest lower-or-equal. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (ex_build_cmp(&c->entries[mid].build, b) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0 && same_line(&c->entries[lo - 1].build, b, f)) {
		*nearest = &c->entries[lo - 1];
		return &c->branches[c->entry_branch[lo - 1]];
	}
	/* Below every known build of its line (an RTM's transport binary can
	 * stamp one): the branch is known, nothing nearer. */
	if (lo < c->nentries && same_line(&c->entries[lo].build, b, f))
		return &c->branches[c->entry_branch[lo]];
	return NULL;
}

void catalog_classify(const struct catalog *c, const struct ex_build *b, int64_t now,
		      struct catalog_class *out)
{
	enum ex_family f = ex_family_of(b);
	const struct cat_branch *br;
	const struct cat_rule *r;

	/* Field by field, not memset: this runs for every message, and the
	 * recommendations are filled (or counted zero) below anyway. */
	out->family = f;
	out->nearest = NULL;
	out->exact = false;
	out->compliant = false;
	out->branch = "";
	out->rule = (struct catalog_rule){ .since = CATALOG_TIME_MIN, .until = CATALOG_TIME_MAX };
	out->nrecommended = 0;
	if (c == NULL || f == EX_FAMILY_NONE || f == EX_FAMILY_ONLINE)
		return;

	br = locate(c, b, f, &out->nearest);
	out->exact = out->nearest && ex_build_cmp(&out->nearest->build, b) == 0;
	r = br ? rule_at(c, br, now) : NULL;
	if (br != NULL)
		out->branch = br->name;
	if (r != NULL) {
		int64_t fl = floor_at(c, br, r, now);

		out->rule.kind = r->kind;
		out->rule.line = r->line;
		out->rule.since = r->since;
		out->rule.until = r->until;
		out->rule.days = r->days;
		out->rule.floor = fl >= 0 ? &c->entries[fl] : NULL;
		out->compliant = fl < 0 || ex_build_cmp(b, &c->entries[fl].build) >= 0;
	} else if (br != NULL && br->rlo < br->rhi) {
		/* Rules are by since: the last one that ended, else the first. */
		const struct cat_rule *k = &c->rules[br->rlo];

		for (uint32_t i = br->rlo; i < br->rhi; i++) {
			if (c->rules[i].until <= now)
				k = &c->rules[i];
		}
		out->rule.line = k->line;
		out->rule.since = k->since;
		out->rule.until = k->until;
		out->rule.days = k->days;
	} else if (c->never_line[f] != 0) {
		out->rule.kind = CATALOG_RULE_NEVER;
		out->rule.line = c->never_line[f];
	}
	recommend(c, br, r, now, out);
}

void catalog_verdict_span(const struct catalog *c, const struct ex_build *b, int64_t now,
			  int64_t *from, int64_t *until)
{
	enum ex_family f = ex_family_of(b);
	const struct catalog_entry *nearest;
	const struct cat_branch *br = NULL;
	bool v;

	*from = CATALOG_TIME_MIN;
	*until = CATALOG_TIME_MAX;
	if (c != NULL && f != EX_FAMILY_NONE && f != EX_FAMILY_ONLINE)
		br = locate(c, b, f, &nearest);
	if (br == NULL || br->rlo == br->rhi)
		return; /* no rule ever names it: never compliant, at any time */
	v = complies_at(c, br, b, now);
	/* Each step passes one boundary of the branch: bounded by its rules
	 * and public releases. */
	for (int64_t t = now;;) {
		int64_t nb = branch_next(c, br, t);

		if (nb == CATALOG_TIME_MAX || complies_at(c, br, b, nb) != v) {
			*until = nb;
			break;
		}
		t = nb;
	}
	for (int64_t t = now;;) {
		int64_t pb = branch_prev(c, br, t);

		if (pb == CATALOG_TIME_MIN || complies_at(c, br, b, pb - 1) != v) {
			*from = pb;
			break;
		}
		t = pb - 1;
	}
}

int64_t catalog_next_change(const struct catalog *c, int64_t after)
{
	int64_t best = CATALOG_TIME_MAX;

	if (c == NULL)
		return best;
	for (size_t i = 0; i < c->nruled; i++) {
		int64_t t = branch_next(c, &c->branches[c->ruled[i]], after);

		if (t < best)
			best = t;
	}
	return best;
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
