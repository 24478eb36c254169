/* SPDX-License-Identifier: MIT */
/*
 * A picture of a bus taken from outside, for the liminal command: see
 * inspect.h.  Everything is copied out of the segment and checked; the
 * only store ever made is the sleeper bit of the roster word, by a monitor
 * that waits for joins and exits (and only if it could map the bus for
 * writing).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <ck_pr.h>

#include "inspect.h"
#include "internal.h"
#include "../shm/table.h"
#include "../shm/word.h"

struct lmn__insp_view {
	char name[LMN_NAME_MAX + 1];
	void *base;
	struct lmn__layout l;
	bool writable; /* may arm the roster word's sleeper bit */
	dev_t dev;
	ino_t ino;
};

/* A name copied out of the segment, or "?" when it is not a valid one. */
static void copy_name(char *dst, const char *shm_name)
{
	char tmp[LMN__NAME_SIZE];

	if (lmn__name_copy(tmp, shm_name) < 0 || (tmp[0] && lmn__check_name(tmp) < 0)) {
		strcpy(dst, "?");
		return;
	}
	memcpy(dst, tmp, strlen(tmp) + 1);
}

static int file_id(const char *name, dev_t *dev, ino_t *ino)
{
	char path[PATH_MAX];
	struct stat st;
	int r = lmn__bus_path(path, sizeof(path), name, "");

	if (r < 0)
		return r;
	if (stat(path, &st) < 0)
		return -errno;
	*dev = st.st_dev;
	*ino = st.st_ino;
	return 0;
}

int lmn__insp_view_open(const char *name, struct lmn__insp_view **ret)
{
	struct lmn__insp_view *v;
	struct stat st;
	int r = lmn__check_name(name);

	if (r < 0)
		return r;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	strcpy(v->name, name);
	/* Writable if we may: only to arm the roster word.  The identity is
	 * the mapped file's, so that a bus replaced just before cannot pass
	 * for the one we see. */
	v->writable = true;
	r = lmn__bus_map_id(name, true, &v->base, &v->l, &st);
	if (r == -EACCES || r == -EPERM) {
		v->writable = false;
		r = lmn__bus_map_id(name, false, &v->base, &v->l, &st);
	}
	if (r < 0) {
		free(v);
		return r;
	}
	v->dev = st.st_dev;
	v->ino = st.st_ino;
	*ret = v;
	return 0;
}

void lmn__insp_view_close(struct lmn__insp_view *v)
{
	if (!v)
		return;
	munmap(v->base, v->l.total_size);
	free(v);
}

const char *lmn__insp_view_gone(struct lmn__insp_view *v)
{
	dev_t dev;
	ino_t ino;

	if (file_id(v->name, &dev, &ino) < 0)
		return "removed";
	return dev == v->dev && ino == v->ino ? NULL : "replaced by a new bus";
}

static void take_part(const struct lmn__layout *l, void *base, uint32_t i,
		      struct lmn__insp_part *out, bool *used)
{
	struct lmn__participant *p = lmn__part(l, base, i);
	uint64_t w = ck_pr_load_64(&p->slot);
	uint32_t state = lmn__slot_state(w);
	uint64_t start, ino;

	*used = state != LMN__SLOT_FREE;
	if (!*used)
		return;
	memset(out, 0, sizeof(*out));
	out->slot = i;
	out->gen = lmn__slot_gen(w);
	if (state == LMN__SLOT_CLAIMED) {
		/* Nothing but the claimer's pid is written yet. */
		out->pid = lmn__slot_pid(w);
		out->health = lmn__proc_alive(out->pid, 0, 0, NULL) ? LMN__INSP_JOINING
								   : LMN__INSP_DEAD;
		return;
	}
	out->pid = (pid_t)ck_pr_load_32((uint32_t *)&p->pid);
	start = ck_pr_load_64(&p->start_time);
	ino = ck_pr_load_64(&p->pidfs_ino);
	out->joined_ns = ck_pr_load_64(&p->joined_ns);
	out->serving = ck_pr_load_32(&p->serving);
	out->sent = ck_pr_load_64(&p->sent);
	out->served = ck_pr_load_64(&p->served);
	copy_name(out->name, p->name);
	for (uint32_t s = 0; s < LMN__SERVICES && s < 8; s++) {
		char svc[LMN_NAME_MAX + 1];

		copy_name(svc, p->services[s]);
		if (svc[0])
			strcpy(out->services[out->n_services++], svc);
	}
	if (!lmn__proc_alive(out->pid, start, ino, NULL))
		out->health = LMN__INSP_DEAD;
	else if (state == LMN__SLOT_JOINING)
		out->health = LMN__INSP_JOINING;
	else if (state == LMN__SLOT_CLOSING || state == LMN__SLOT_DEAD)
		out->health = LMN__INSP_LEAVING;
	else
		out->health = LMN__INSP_ALIVE;
}

static void take_conv(const struct lmn__layout *l, void *base, uint32_t i,
		      struct lmn__insp_conv *out, bool *used)
{
	struct lmn__conv *c = lmn__conv_at(l, base, i);
	uint64_t w = ck_pr_load_64(&c->slot);
	uint32_t phase, policy;

	*used = lmn__slot_state(w) == LMN__SLOT_LIVE;
	if (!*used)
		return;
	/* Orders the slot load before the loads of the fields the opener
	 * stored before it published the slot. */
	ck_pr_fence_load();
	memset(out, 0, sizeof(*out));
	out->slot = i;
	out->gen = lmn__slot_gen(w);
	out->id = ((uint64_t)out->gen << 32) | i;
	out->buffering = ck_pr_load_32(&c->server) == UINT32_MAX;
	copy_name(out->initiator, c->initiator_name);
	copy_name(out->service, c->service);
	out->initiator_pid = (pid_t)ck_pr_load_32((uint32_t *)&c->initiator_pid);
	if (!out->buffering) {
		copy_name(out->server, c->server_name);
		out->server_pid = (pid_t)ck_pr_load_32((uint32_t *)&c->server_pid);
	}
	phase = ck_pr_load_32(&c->phase);
	out->phase = phase >= LMN__PHASE_CREATED && phase <= LMN__PHASE_FAILED
			     ? (enum lmn_phase)phase
			     : LMN_PHASE_FAILED; /* damage reads as failure */
	policy = ck_pr_load_32(&c->policy);
	out->policy = policy >= LMN_POLICY_FAIL && policy <= LMN_POLICY_COMPENSATE
			      ? (enum lmn_policy)policy
			      : LMN_POLICY_FAIL;
	out->sent = ck_pr_load_64(&c->sent);
	out->received = ck_pr_load_64(&c->received);
	out->served = ck_pr_load_64(&c->served);
	out->replied = ck_pr_load_64(&c->replied);
	out->opened_ns = ck_pr_load_64(&c->opened_ns);
	out->n_crashes = ck_pr_load_32(&c->ncrashes);
	out->cells_used = lmn__cells_in_use(&c->cmd, l->ring_depth) +
			  lmn__cells_in_use(&c->inbox, l->ring_depth);
	/* A slot reopened while we read gives a picture of two tenants:
	 * leave it out rather than mix them. */
	ck_pr_fence_load();
	if (ck_pr_load_64(&c->slot) != w)
		*used = false;
}

int lmn__insp_view_take(struct lmn__insp_view *v, struct lmn__insp *ret)
{
	const struct lmn__layout *l = &v->l;
	struct lmn__insp s;
	uint32_t cap = 0;

	memset(&s, 0, sizeof(s));
	strcpy(s.name, v->name);
	lmn__stat_fill(l, v->base, &s.stat);
	s.parts = calloc(l->participants, sizeof(*s.parts));
	if (!s.parts)
		return -ENOMEM;
	for (uint32_t i = 0; i < l->participants; i++) {
		bool used;

		take_part(l, v->base, i, &s.parts[s.n_parts], &used);
		if (used)
			s.n_parts++;
	}
	/* Only the open conversations are kept: a big idle bus may have a
	 * million slots. */
	for (uint32_t i = 0; i < l->conversations; i++) {
		bool used;

		if (s.n_convs == cap) {
			uint32_t ncap = cap ? cap * 2 : 64;
			struct lmn__insp_conv *nc = realloc(s.convs, ncap * sizeof(*nc));

			if (!nc) {
				lmn__inspect_free(&s);
				return -ENOMEM;
			}
			s.convs = nc;
			cap = ncap;
		}
		take_conv(l, v->base, i, &s.convs[s.n_convs], &used);
		if (used)
			s.n_convs++;
	}
	/* The counts come from the same scans as the lists, so that they
	 * agree with each other: the totals pass above ran a moment earlier,
	 * and anyone may have joined or opened since. */
	s.stat.participants_used = s.n_parts;
	s.stat.participants_dead = 0;
	for (uint32_t i = 0; i < s.n_parts; i++)
		s.stat.participants_dead += s.parts[i].health == LMN__INSP_DEAD;
	s.stat.conversations_used = s.n_convs;
	s.stat.cells_used = 0;
	for (uint32_t i = 0; i < s.n_convs; i++)
		s.stat.cells_used += s.convs[i].cells_used;
	*ret = s;
	return 0;
}

int lmn__inspect(const char *name, struct lmn__insp *ret)
{
	struct lmn__insp_view *v;
	int r = lmn__insp_view_open(name, &v);

	if (r < 0)
		return r;
	r = lmn__insp_view_take(v, ret);
	lmn__insp_view_close(v);
	return r;
}

void lmn__inspect_free(struct lmn__insp *insp)
{
	if (!insp)
		return;
	free(insp->parts);
	free(insp->convs);
	insp->parts = NULL;
	insp->convs = NULL;
}

static int exit_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct lmn__insp_exit *)a)->seq;
	uint64_t y = ((const struct lmn__insp_exit *)b)->seq;

	return x < y ? -1 : x > y;
}

int lmn__insp_view_exits(struct lmn__insp_view *v, uint64_t after, struct lmn__insp_exit *ret,
			 uint32_t cap)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < LMN__EXIT_LOG && n < cap; i++) {
		struct lmn__exit_rec r;
		bool named;

		if (lmn__exit_read(v->base, i, &r, &named) < 0 || r.seq <= after)
			continue;
		ret[n] = (struct lmn__insp_exit){.seq = r.seq, .exit_ns = r.exit_ns, .pid = r.pid,
						 .slot = r.idx, .gen = r.gen,
						 .crashed = r.crashed != 0};
		/* The same check as every name read back from the segment. */
		copy_name(ret[n].name, r.name);
		n++;
	}
	qsort(ret, n, sizeof(*ret), exit_cmp);
	return (int)n;
}

uint32_t lmn__insp_view_roster(struct lmn__insp_view *v)
{
	return ck_pr_load_32(&lmn__hdr(v->base)->roster_word) & ~LMN__WORD_SLEEPER;
}

int lmn__insp_view_wait(struct lmn__insp_view *v, uint32_t *seen, int timeout_ms)
{
	uint32_t *word = &lmn__hdr(v->base)->roster_word;
	uint64_t deadline = lmn__deadline(timeout_ms, 0, NULL);
	uint32_t now, expect;

	now = ck_pr_load_32(word) & ~LMN__WORD_SLEEPER;
	if (now != *seen) {
		*seen = now;
		return 0;
	}
	if (!v->writable) {
		/* Wakers call futex_wake only for a sleeper that set the
		 * bit, which a read-only view cannot: look again soon. */
		if (timeout_ms < 0 || timeout_ms > 100)
			deadline = lmn__deadline(100, 0, NULL);
		(void)lmn__futex_wait(word, ck_pr_load_32(word), deadline);
	} else {
		expect = lmn__word_arm(word);
		if ((expect & ~LMN__WORD_SLEEPER) == *seen)
			(void)lmn__futex_wait(word, expect, deadline);
	}
	*seen = ck_pr_load_32(word) & ~LMN__WORD_SLEEPER;
	return 0;
}
