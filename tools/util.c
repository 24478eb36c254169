/* SPDX-License-Identifier: MIT */
/* What the verbs share: options, error lines, sizes, times. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "verbs.h"

int lmn_tool_parse_u32(const char *s, int base, uint32_t max, uint32_t *ret)
{
	unsigned long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	v = strtoul(s, &end, base);
	if (errno || *end || v > max)
		return -1;
	*ret = (uint32_t)v;
	return 0;
}

/* One line on standard error, whatever the names in it hold: a name from
 * the command line or read from a bus may carry a newline or a terminal
 * escape, and each byte below 0x20 (but the last newline) or 0x7f is
 * shown as '?'.  A longer line is cut. */
static void err_line(const char *prefix, const char *fmt, va_list ap)
{
	char line[1024];
	size_t n;
	int len = snprintf(line, sizeof(line), "%s", prefix);

	if (len < 0 || (size_t)len >= sizeof(line))
		len = 0;
	vsnprintf(line + len, sizeof(line) - (size_t)len, fmt, ap);
	n = strlen(line);
	if (n && line[n - 1] == '\n')
		line[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	fprintf(stderr, "%s\n", line);
}

void lmn_tool_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err_line("", fmt, ap);
	va_end(ap);
}

int lmn_tool_fail(const char *verb, const char *bus, int err)
{
	if (bus)
		lmn_tool_err("liminal %s: bus '%s': %s", verb, bus, strerror(err < 0 ? -err : err));
	else
		lmn_tool_err("liminal %s: %s", verb, strerror(err < 0 ? -err : err));
	return LMN_TOOL_FAILED;
}

int lmn_tool_usage_error(const char *verb, const char *fmt, ...)
{
	char prefix[64];
	va_list ap;

	snprintf(prefix, sizeof(prefix), "liminal %s: ", verb);
	va_start(ap, fmt);
	err_line(prefix, fmt, ap);
	va_end(ap);
	return LMN_TOOL_USAGE;
}

static const struct lmn_tool_opt *find_opt(const struct lmn_tool_opt *opts, const char *name)
{
	for (; opts && opts->name; opts++)
		if (!strcmp(opts->name, name))
			return opts;
	return NULL;
}

int lmn_tool_args(int argc, char **argv, const struct lmn_tool_opt *opts, const char **pos,
		  int min_pos, int max_pos, int *n_pos, const char *usage)
{
	const char *verb = argv[0];
	bool only_pos = false;
	int n = 0;

	/* --help wins wherever it is, even after a mistake. */
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: %s\n", usage);
			return 1;
		}
	}
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const struct lmn_tool_opt *o;
		uint32_t v;

		if (!only_pos && !strcmp(a, "--")) {
			only_pos = true; /* a name or message may start with '-' */
			continue;
		}
		if (only_pos || a[0] != '-' || !strcmp(a, "-")) {
			if (n >= max_pos) {
				lmn_tool_usage_error(verb, "unexpected argument '%s' (usage: %s)", a,
						     usage);
				return -1;
			}
			pos[n++] = a;
			continue;
		}
		o = find_opt(opts, a);
		if (!o) {
			lmn_tool_usage_error(verb, "unknown option '%s' (usage: %s)", a, usage);
			return -1;
		}
		if (o->kind == LMN_OPT_FLAG) {
			*(bool *)o->dst = true;
			continue;
		}
		if (i + 1 >= argc) {
			lmn_tool_usage_error(verb, "%s needs a value", a);
			return -1;
		}
		if (lmn_tool_parse_u32(argv[i + 1], o->kind == LMN_OPT_OCTAL ? 8 : 10, o->max, &v) <
			    0 ||
		    v < o->min) {
			if (o->kind == LMN_OPT_OCTAL)
				lmn_tool_usage_error(verb,
						     "%s needs an octal number from %o to %o, got '%s'",
						     a, o->min, o->max, argv[i + 1]);
			else
				lmn_tool_usage_error(verb, "%s needs a number from %u to %u, got '%s'",
						     a, o->min, o->max, argv[i + 1]);
			return -1;
		}
		*(uint32_t *)o->dst = v;
		i++;
	}
	if (n < min_pos) {
		lmn_tool_usage_error(verb, "missing %s (usage: %s)",
				     n == 0 ? "bus NAME" : "argument", usage);
		return -1;
	}
	*n_pos = n;
	return 0;
}

void lmn_tool_size(uint64_t bytes, char *buf, size_t cap)
{
	static const char units[] = "KMGT";
	double v = (double)bytes;
	int u = -1;

	if (bytes < 1024) {
		snprintf(buf, cap, "%lluB", (unsigned long long)bytes);
		return;
	}
	while (v >= 1024 && u < 3) {
		v /= 1024;
		u++;
	}
	snprintf(buf, cap, "%.1f%c", v, units[u]);
}

uint64_t lmn_tool_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void lmn_tool_time(uint64_t ns, char *buf, size_t cap)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;

	if (!ns || !localtime_r(&t, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, cap, "-");
}

double lmn_tool_age_s(uint64_t ns)
{
	uint64_t now = lmn_tool_realtime_ns();

	return ns && ns < now ? (double)(now - ns) / 1e9 : 0.0;
}

void lmn_tool_age(uint64_t ns, char *buf, size_t cap)
{
	double s = lmn_tool_age_s(ns);
	unsigned long long t = (unsigned long long)s;

	if (!ns)
		snprintf(buf, cap, "-");
	else if (s < 60)
		snprintf(buf, cap, "%.1fs", s);
	else if (t < 3600)
		snprintf(buf, cap, "%llum%02llus", t / 60, t % 60);
	else if (t < 86400)
		snprintf(buf, cap, "%lluh%02llum", t / 3600, t / 60 % 60);
	else
		snprintf(buf, cap, "%llud%02lluh", t / 86400, t / 3600 % 24);
}

