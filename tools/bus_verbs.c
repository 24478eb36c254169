/* SPDX-License-Identifier: MIT */
/* liminal create, rm, ls, gc: buses as a whole. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liminal.h"
#include "verbs.h"
#include "../lib/inspect.h"
#include "../shm/layout.h"

int lmn_tool_create(int argc, char **argv)
{
	struct lmn_bus_config cfg = {0};
	const struct lmn_tool_opt opts[] = {
		/* The library's own limits: beyond them is a usage error. */
		{"--participants", LMN_OPT_U32, &cfg.participants, 1, LMN__MAX_PARTICIPANTS},
		{"--conversations", LMN_OPT_U32, &cfg.conversations, 1, LMN__MAX_CONVERSATIONS},
		{"--ring", LMN_OPT_U32, &cfg.ring_depth, 1, LMN__MAX_DEPTH},
		{"--max-message", LMN_OPT_U32, &cfg.max_message, 1, LMN__MAX_MESSAGE},
		/* 0 would mean the library's default, not "no access". */
		{"--mode", LMN_OPT_OCTAL, &cfg.mode, 1, 0777},
		{0},
	};
	const char *pos[1];
	int n, r;

	r = lmn_tool_args(argc, argv, opts, pos, 1, 1, &n,
			  "liminal create NAME [--participants N] [--conversations N] [--ring N] "
			  "[--max-message BYTES] [--mode OCTAL]");
	if (r)
		return lmn_tool_args_exit(r);
	/* Made from the shell, it outlives this command by design: an
	 * application's lmn_bus_create() must find it (-EEXIST), not
	 * replace it as the bus of a crashed creator. */
	cfg.flags = LMN_BUS_KEEP;
	r = lmn_bus_create(pos[0], &cfg);
	if (r < 0)
		return lmn_tool_fail("create", pos[0], r);
	return LMN_TOOL_OK;
}

int lmn_tool_rm(int argc, char **argv)
{
	const char *pos[1];
	int n, r;

	r = lmn_tool_args(argc, argv, NULL, pos, 1, 1, &n, "liminal rm NAME");
	if (r)
		return lmn_tool_args_exit(r);
	r = lmn_bus_unlink(pos[0]);
	if (r < 0)
		return lmn_tool_fail("rm", pos[0], r);
	return LMN_TOOL_OK;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the buses in the bus directory, sorted; -errno. */
static int list_buses(char ***ret, size_t *n_ret)
{
	const char *dir = getenv("LIMINAL_DIR");
	char **v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	DIR *d;

	if (!dir || !*dir)
		dir = "/dev/shm";
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		/* A bus is "liminal.NAME"; ".liminal.NAME" is one being made. */
		if (strncmp(e->d_name, "liminal.", 8) || !e->d_name[8])
			continue;
		if (n == cap) {
			char **nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv)
				goto nomem;
			v = nv;
		}
		if (!(v[n] = strdup(e->d_name + 8)))
			goto nomem;
		n++;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), name_cmp);
	*ret = v;
	*n_ret = n;
	return 0;
nomem:
	closedir(d);
	while (n)
		free(v[--n]);
	free(v);
	return -ENOMEM;
}

int lmn_tool_ls(int argc, char **argv)
{
	bool json = false;
	const struct lmn_tool_opt opts[] = {{"--json", LMN_OPT_FLAG, &json, 0, 0}, {0}};
	struct lmn_json j;
	const char *pos[1];
	char **names = NULL;
	size_t count = 0;
	int n, r;

	r = lmn_tool_args(argc, argv, opts, pos, 0, 0, &n, "liminal ls [--json]");
	if (r)
		return lmn_tool_args_exit(r);
	r = list_buses(&names, &count);
	if (r < 0) {
		lmn_tool_err("liminal ls: bus directory %s: %s\n",
			getenv("LIMINAL_DIR") && *getenv("LIMINAL_DIR") ? getenv("LIMINAL_DIR")
									 : "/dev/shm",
			strerror(-r));
		return LMN_TOOL_FAILED;
	}
	lmn_json_init(&j, stdout);
	if (json) {
		lmn_json_begin_obj(&j);
		lmn_json_key(&j, "buses");
		lmn_json_begin_arr(&j);
	} else {
		printf("%-24s %8s %12s %5s %13s %-14s %s\n", "NAME", "SIZE", "PARTICIPANTS", "DEAD",
		       "CONVERSATIONS", "CREATOR", "CREATED");
	}
	for (size_t i = 0; i < count; i++) {
		struct lmn_bus_stat st;
		char size[16], created[32], creator[32];

		r = lmn_bus_stat(names[i], &st);
		if (r < 0) {
			if (json) {
				lmn_json_begin_obj(&j);
				lmn_json_key(&j, "name");
				lmn_json_str(&j, names[i]);
				lmn_json_key(&j, "error");
				lmn_json_str(&j, strerror(-r));
				lmn_json_end_obj(&j);
			} else {
				printf("%-24s (%s)\n", names[i], strerror(-r));
			}
			free(names[i]);
			continue;
		}
		if (json) {
			lmn_json_begin_obj(&j);
			lmn_json_key(&j, "name");
			lmn_json_str(&j, names[i]);
			lmn_json_key(&j, "size");
			lmn_json_u64(&j, st.size);
			lmn_json_key(&j, "participants");
			lmn_json_begin_obj(&j);
			lmn_json_key(&j, "used");
			lmn_json_u64(&j, st.participants_used);
			lmn_json_key(&j, "total");
			lmn_json_u64(&j, st.participants_total);
			lmn_json_key(&j, "alive");
			lmn_json_u64(&j, st.participants_used - st.participants_dead);
			lmn_json_key(&j, "dead");
			lmn_json_u64(&j, st.participants_dead);
			lmn_json_end_obj(&j);
			lmn_json_count(&j, "conversations", st.conversations_used,
				       st.conversations_total);
			lmn_json_count(&j, "cells", st.cells_used, st.cells_total);
			lmn_json_key(&j, "creator");
			lmn_json_begin_obj(&j);
			lmn_json_key(&j, "pid");
			lmn_json_i64(&j, st.creator_pid);
			lmn_json_key(&j, "alive");
			lmn_json_bool(&j, st.creator_alive);
			lmn_json_end_obj(&j);
			lmn_json_key(&j, "kept");
			lmn_json_bool(&j, st.flags & LMN_BUS_KEEP);
			lmn_json_key(&j, "created_ns");
			lmn_json_u64(&j, st.created_ns);
			lmn_json_key(&j, "leaves");
			lmn_json_u64(&j, st.leaves);
			lmn_json_key(&j, "crashes");
			lmn_json_u64(&j, st.crashes);
			lmn_json_end_obj(&j);
		} else {
			char parts[24], convs[24];

			lmn_tool_size(st.size, size, sizeof(size));
			lmn_tool_time(st.created_ns, created, sizeof(created));
			snprintf(parts, sizeof(parts), "%u/%u", st.participants_used,
				 st.participants_total);
			snprintf(convs, sizeof(convs), "%u/%u", st.conversations_used,
				 st.conversations_total);
			snprintf(creator, sizeof(creator), "%d%s", (int)st.creator_pid,
				 st.creator_alive ? "" : " (gone)");
			printf("%-24s %8s %12s %5u %13s %-14s %s\n", names[i], size, parts,
			       st.participants_dead, convs, creator, created);
		}
		free(names[i]);
	}
	free(names);
	if (json) {
		lmn_json_end_arr(&j);
		lmn_json_end_obj(&j);
	}
	return LMN_TOOL_OK;
}

/* Was participant (slot, gen) in the picture? */
static bool has_part(const struct lmn__insp *s, uint32_t slot, uint32_t gen)
{
	for (uint32_t i = 0; i < s->n_parts; i++)
		if (s->parts[i].slot == slot && s->parts[i].gen == gen)
			return true;
	return false;
}

int lmn_tool_gc(int argc, char **argv)
{
	bool json = false;
	const struct lmn_tool_opt opts[] = {{"--json", LMN_OPT_FLAG, &json, 0, 0}, {0}};
	struct lmn__insp before, after;
	uint32_t freed_convs, freed_cells, n_freed = 0;
	const char *pos[1];
	int n, r, reaped;

	r = lmn_tool_args(argc, argv, opts, pos, 1, 1, &n, "liminal gc NAME [--json]");
	if (r)
		return lmn_tool_args_exit(r);
	r = lmn__inspect(pos[0], &before);
	if (r < 0)
		return lmn_tool_fail("gc", pos[0], r);
	reaped = lmn_bus_gc(pos[0]);
	if (reaped < 0) {
		lmn__inspect_free(&before);
		return lmn_tool_fail("gc", pos[0], reaped);
	}
	r = lmn__inspect(pos[0], &after);
	if (r < 0) {
		lmn__inspect_free(&before);
		return lmn_tool_fail("gc", pos[0], r);
	}
	/* What the dead left and is gone now.  Others may open and close at
	 * the same time, so the counts are what went away, never negative. */
	freed_convs = before.stat.conversations_used > after.stat.conversations_used
			      ? before.stat.conversations_used - after.stat.conversations_used
			      : 0;
	freed_cells = before.stat.cells_used > after.stat.cells_used
			      ? before.stat.cells_used - after.stat.cells_used
			      : 0;
	for (uint32_t i = 0; i < before.n_parts; i++) {
		struct lmn__insp_part *p = &before.parts[i];

		if (p->health == LMN__INSP_DEAD && !has_part(&after, p->slot, p->gen))
			before.parts[n_freed++] = *p;
	}
	if (json) {
		struct lmn_json j;

		lmn_json_init(&j, stdout);
		lmn_json_begin_obj(&j);
		lmn_json_key(&j, "participants");
		lmn_json_begin_arr(&j);
		for (uint32_t i = 0; i < n_freed; i++) {
			lmn_json_begin_obj(&j);
			lmn_json_key(&j, "name");
			lmn_json_str(&j, before.parts[i].name);
			lmn_json_key(&j, "pid");
			lmn_json_i64(&j, before.parts[i].pid);
			lmn_json_end_obj(&j);
		}
		lmn_json_end_arr(&j);
		lmn_json_key(&j, "reclaimed");
		lmn_json_u64(&j, (uint64_t)reaped);
		lmn_json_key(&j, "conversations");
		lmn_json_u64(&j, freed_convs);
		lmn_json_key(&j, "cells");
		lmn_json_u64(&j, freed_cells);
		lmn_json_end_obj(&j);
	} else if (!n_freed && !reaped && !freed_convs && !freed_cells) {
		printf("nothing to free\n");
	} else {
		printf("freed %u participant%s", n_freed, n_freed == 1 ? "" : "s");
		for (uint32_t i = 0; i < n_freed; i++)
			printf("%s%s pid %d", i ? ", " : " (", before.parts[i].name[0]
							       ? before.parts[i].name
							       : "(unnamed)",
			       (int)before.parts[i].pid);
		printf("%s, %u conversation%s, %u cell%s\n", n_freed ? ")" : "", freed_convs,
		       freed_convs == 1 ? "" : "s", freed_cells, freed_cells == 1 ? "" : "s");
	}
	lmn__inspect_free(&before);
	lmn__inspect_free(&after);
	return LMN_TOOL_OK;
}
