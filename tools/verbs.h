/* SPDX-License-Identifier: MIT */
/*
 * The liminal command: one function per verb (argv[0] is the verb), and
 * the few helpers they share (options, errors, JSON, sizes and times).
 *
 * Exit codes, the same for every verb: 0 done, 1 the operation failed
 * (the bus, the library or the peer said no), 2 the command line is wrong.
 */
#ifndef LMN_TOOLS_VERBS_H
#define LMN_TOOLS_VERBS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

enum { LMN_TOOL_OK = 0, LMN_TOOL_FAILED = 1, LMN_TOOL_USAGE = 2 };

int lmn_tool_demo(int argc, char **argv);
int lmn_tool_create(int argc, char **argv);
int lmn_tool_rm(int argc, char **argv);
int lmn_tool_ls(int argc, char **argv);
int lmn_tool_gc(int argc, char **argv);
int lmn_tool_status(int argc, char **argv);
int lmn_tool_stats(int argc, char **argv);
int lmn_tool_top(int argc, char **argv);
int lmn_tool_watch(int argc, char **argv);
int lmn_tool_call(int argc, char **argv);
int lmn_tool_serve(int argc, char **argv);

/* Parse an unsigned number in base (0: auto) no greater than max; -1 on
 * anything else. */
int lmn_tool_parse_u32(const char *s, int base, uint32_t max, uint32_t *ret);

/* Options of a verb.  A flag sets *(bool *)dst; a number sets
 * *(uint32_t *)dst and must lie in [min, max]. */
enum lmn_tool_opt_kind { LMN_OPT_FLAG, LMN_OPT_U32, LMN_OPT_OCTAL };
struct lmn_tool_opt {
	const char *name; /* "--json" */
	enum lmn_tool_opt_kind kind;
	void *dst;
	uint32_t min, max;
};

/* Parse argv (argv[0] is the verb) against opts, collecting between
 * min_pos and max_pos positional arguments into pos[].  Prints usage and
 * returns 1 for --help, prints one error line and returns -1 for a bad
 * command line, returns 0 otherwise. */
int lmn_tool_args(int argc, char **argv, const struct lmn_tool_opt *opts, const char **pos,
		  int min_pos, int max_pos, int *n_pos, const char *usage);

/* What the verbs return from lmn_tool_args: 0 to go on, or an exit code. */
static inline int lmn_tool_args_exit(int r)
{
	return r > 0 ? LMN_TOOL_OK : LMN_TOOL_USAGE;
}

/* "liminal VERB: bus 'NAME': strerror(-err)" on stderr; returns 1. */
int lmn_tool_fail(const char *verb, const char *bus, int err);
/* One line to standard error, control characters shown as '?'. */
void lmn_tool_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "liminal VERB: ..." on stderr; returns 2. */
int lmn_tool_usage_error(const char *verb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* 17727488 -> "16.9M" */
void lmn_tool_size(uint64_t bytes, char *buf, size_t cap);
/* CLOCK_REALTIME ns -> "2026-11-24 10:31:07" (local time) */
void lmn_tool_time(uint64_t ns, char *buf, size_t cap);
/* Seconds since a CLOCK_REALTIME ns, and the same as "3m12s". */
double lmn_tool_age_s(uint64_t ns);
void lmn_tool_age(uint64_t ns, char *buf, size_t cap);
uint64_t lmn_tool_realtime_ns(void);

/* Words for the library's enums, as --json and the tables print them. */
#include "liminal.h"
const char *lmn_tool_phase(enum lmn_phase p);
const char *lmn_tool_policy(enum lmn_policy p);
const char *lmn_tool_health(int insp_health);

/* A small JSON writer: commas and escapes are its business. */
struct lmn_json {
	FILE *f;
	int depth;
	bool need_comma[32];
	bool after_key;
};
void lmn_json_init(struct lmn_json *j, FILE *f);
void lmn_json_begin_obj(struct lmn_json *j);
void lmn_json_end_obj(struct lmn_json *j);
void lmn_json_begin_arr(struct lmn_json *j);
void lmn_json_end_arr(struct lmn_json *j);
void lmn_json_key(struct lmn_json *j, const char *key);
void lmn_json_str(struct lmn_json *j, const char *s);
void lmn_json_strn(struct lmn_json *j, const char *s, size_t n);
void lmn_json_u64(struct lmn_json *j, uint64_t v);
void lmn_json_i64(struct lmn_json *j, int64_t v);
void lmn_json_double(struct lmn_json *j, double v);
void lmn_json_bool(struct lmn_json *j, bool v);
void lmn_json_null(struct lmn_json *j);
/* "key":{"used":U,"total":T} */
void lmn_json_count(struct lmn_json *j, const char *key, uint64_t used, uint64_t total);

/* The fields of a conversation that status and top both print, inside an
 * object the caller opened: id, initiator, server, service, phase, sent,
 * received. */
struct lmn__insp_conv;
struct lmn__insp_part;
void lmn_tool_json_conv(struct lmn_json *j, const struct lmn__insp_conv *c);
/* A participant's name, pid and health, as keys of the open object. */
void lmn_tool_json_part(struct lmn_json *j, const struct lmn__insp_part *p);

#endif
