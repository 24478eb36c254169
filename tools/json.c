/* SPDX-License-Identifier: MIT */
/*
 * Just enough JSON for --json: objects, arrays, strings, numbers.  The
 * writer keeps the commas, so verbs only say what comes next.  Strings are
 * escaped: names come from a segment other processes write, and payloads
 * (liminal call) may hold anything.  Valid UTF-8 passes through as it is;
 * any other byte that is not printable ASCII goes out as \u00XX (its
 * Latin-1 reading) rather than break a parser.
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "verbs.h"

void lmn_json_init(struct lmn_json *j, FILE *f)
{
	j->f = f;
	j->depth = 0;
	j->need_comma[0] = false;
	j->after_key = false;
}

/* Before any value: a comma if a sibling came before, unless a key did. */
static void value_start(struct lmn_json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->need_comma[j->depth])
		fputc(',', j->f);
	j->need_comma[j->depth] = true;
}

static void open_(struct lmn_json *j, char c)
{
	value_start(j);
	fputc(c, j->f);
	if (j->depth < 31)
		j->depth++;
	j->need_comma[j->depth] = false;
}

static void close_(struct lmn_json *j, char c)
{
	if (j->depth > 0)
		j->depth--;
	fputc(c, j->f);
	if (j->depth == 0)
		fputc('\n', j->f);
}

void lmn_json_begin_obj(struct lmn_json *j) { open_(j, '{'); }
void lmn_json_end_obj(struct lmn_json *j) { close_(j, '}'); }
void lmn_json_begin_arr(struct lmn_json *j) { open_(j, '['); }
void lmn_json_end_arr(struct lmn_json *j) { close_(j, ']'); }

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1fu;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0fu;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07u;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3fu);
	}
	/* No overlong forms, no surrogates, nothing past U+10FFFF. */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static void put_string(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c >= 0x80 && utf8_len((const unsigned char *)s + i, n - i)) {
			size_t len = utf8_len((const unsigned char *)s + i, n - i);

			fwrite(s + i, 1, len, f);
			i += len - 1;
		} else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void lmn_json_key(struct lmn_json *j, const char *key)
{
	value_start(j);
	put_string(j->f, key, strlen(key));
	fputc(':', j->f);
	j->after_key = true;
}

void lmn_json_str(struct lmn_json *j, const char *s)
{
	lmn_json_strn(j, s, strlen(s));
}

void lmn_json_strn(struct lmn_json *j, const char *s, size_t n)
{
	value_start(j);
	put_string(j->f, s, n);
}

void lmn_json_u64(struct lmn_json *j, uint64_t v)
{
	value_start(j);
	fprintf(j->f, "%" PRIu64, v);
}

void lmn_json_i64(struct lmn_json *j, int64_t v)
{
	value_start(j);
	fprintf(j->f, "%" PRId64, v);
}

void lmn_json_double(struct lmn_json *j, double v)
{
	value_start(j);
	if (isfinite(v))
		fprintf(j->f, "%.3f", v);
	else
		fputs("null", j->f);
}

void lmn_json_bool(struct lmn_json *j, bool v)
{
	value_start(j);
	fputs(v ? "true" : "false", j->f);
}

void lmn_json_null(struct lmn_json *j)
{
	value_start(j);
	fputs("null", j->f);
}

void lmn_json_count(struct lmn_json *j, const char *key, uint64_t used, uint64_t total)
{
	lmn_json_key(j, key);
	lmn_json_begin_obj(j);
	lmn_json_key(j, "used");
	lmn_json_u64(j, used);
	lmn_json_key(j, "total");
	lmn_json_u64(j, total);
	lmn_json_end_obj(j);
}
