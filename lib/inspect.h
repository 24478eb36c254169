/* SPDX-License-Identifier: MIT */
/*
 * A picture of a bus taken from outside: who is attached, which
 * conversations are open and what has flowed through them.  For the liminal
 * command (status, top, watch, stats, gc), which links the static library;
 * not part of the public API.
 *
 * The picture is copied out of a read-only mapping, field by field, and
 * every name is checked before it is kept: a damaged or hostile segment
 * gives odd figures, never a crash or a string that is not a valid name.
 * Nothing is written to the bus.
 */
#ifndef LMN_LIB_INSPECT_H
#define LMN_LIB_INSPECT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "liminal.h"

/* What a participant slot holds, as far as an outsider can tell. */
enum lmn__insp_health {
	LMN__INSP_ALIVE = 0,   /* attached, its process alive */
	LMN__INSP_JOINING = 1, /* claimed or joining, not yet settled */
	LMN__INSP_LEAVING = 2, /* leaving, or being reclaimed */
	LMN__INSP_DEAD = 3,    /* its process is gone; not yet reclaimed */
};

struct lmn__insp_part {
	uint32_t slot;
	uint32_t gen;
	char name[LMN_NAME_MAX + 1];
	pid_t pid;
	enum lmn__insp_health health;
	uint32_t n_services;
	char services[8][LMN_NAME_MAX + 1];
	uint32_t serving;   /* conversations it serves now */
	uint64_t joined_ns; /* CLOCK_REALTIME */
	uint64_t sent;      /* requests sent since it joined */
	uint64_t served;    /* requests taken since it joined */
};

struct lmn__insp_conv {
	uint32_t slot;
	uint32_t gen;
	uint64_t id; /* as lmn_msg_conv_id() gives it */
	bool buffering;
	char initiator[LMN_NAME_MAX + 1];
	char server[LMN_NAME_MAX + 1]; /* "" when buffering */
	char service[LMN_NAME_MAX + 1];
	pid_t initiator_pid;
	pid_t server_pid;
	enum lmn_phase phase;
	enum lmn_policy policy;
	uint64_t sent, received, served, replied;
	uint64_t opened_ns; /* CLOCK_REALTIME */
	uint32_t n_crashes;
	uint32_t cells_used;
};

struct lmn__insp {
	char name[LMN_NAME_MAX + 1];
	struct lmn_bus_stat stat;
	uint32_t n_parts;
	struct lmn__insp_part *parts;
	uint32_t n_convs;
	struct lmn__insp_conv *convs;
};

/* Take the picture.  0, or -errno as lmn_bus_stat(3) gives them. */
int lmn__inspect(const char *name, struct lmn__insp *ret);
void lmn__inspect_free(struct lmn__insp *insp);

/* The last exits the bus logged, oldest first, up to cap of them, with a
 * sequence number greater than after.  For monitors that follow the log. */
struct lmn__insp_exit {
	uint64_t seq;
	uint64_t exit_ns; /* CLOCK_REALTIME */
	pid_t pid;
	uint32_t slot;
	uint32_t gen;
	bool crashed;
	char name[LMN_NAME_MAX + 1];
};

/* An open read-only view of a bus, for monitors that look many times. */
struct lmn__insp_view;

int lmn__insp_view_open(const char *name, struct lmn__insp_view **ret);
void lmn__insp_view_close(struct lmn__insp_view *v);
/* The same picture as lmn__inspect(), from an open view. */
int lmn__insp_view_take(struct lmn__insp_view *v, struct lmn__insp *ret);
/* Exits logged after sequence number `after`, oldest first. */
int lmn__insp_view_exits(struct lmn__insp_view *v, uint64_t after, struct lmn__insp_exit *ret,
			 uint32_t cap);
/* Sleep until someone joins, leaves or dies on the bus, or timeout_ms pass
 * (-1: no limit).  Returns after the roster changed since `*seen`, which
 * it updates; 0 on a change or a timeout alike: the caller looks again. */
int lmn__insp_view_wait(struct lmn__insp_view *v, uint32_t *seen, int timeout_ms);
/* The roster word's value now, to pass to the first wait. */
uint32_t lmn__insp_view_roster(struct lmn__insp_view *v);
/* Is the bus file still the one this view mapped?  NULL if so, else what
 * became of it, in words: "removed", or "replaced by a new bus" (removed,
 * and made again under its name, as lmn_bus_create() does a stale one). */
const char *lmn__insp_view_gone(struct lmn__insp_view *v);

#endif
