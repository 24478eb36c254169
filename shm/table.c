/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include <ck_pr.h>

#include "channel.h"
#include "fence.h"
#include "table.h"

static uint64_t now_realtime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int lmn__name_copy(char *dst, const char *shm_name)
{
	char tmp[LMN__NAME_SIZE];

	/* Copy first, check after: the segment may change under us. */
	memcpy(tmp, shm_name, sizeof(tmp));
	if (!memchr(tmp, '\0', sizeof(tmp)))
		return -EUCLEAN;
	memcpy(dst, tmp, strlen(tmp) + 1);
	return 0;
}

int lmn__name_eq(const char *shm_name, const char *name)
{
	size_t n = strlen(name);

	return n < LMN__NAME_SIZE && memcmp(shm_name, name, n) == 0 && shm_name[n] == '\0';
}

/*
 * Who else wants the name.  Returns 1 when we must back off: a live holder,
 * or a joiner with a lower index.  Returns 0 when the name is ours to take.
 * Sets *wait_for when a joiner with a higher index is still settling: it may
 * have missed us (we were only CLAIMED when it scanned) and go live, so we
 * wait until it either backs off or goes live.  Waits only ever run from a
 * lower index to a higher one, so two joiners never wait for each other.
 */
static int name_taken(const struct lmn__layout *l, void *base, const char *name, uint32_t self,
		      uint32_t *wait_for)
{
	*wait_for = UINT32_MAX;
	for (uint32_t i = 0; i < l->participants; i++) {
		struct lmn__participant *p = lmn__part(l, base, i);
		uint32_t st;

		if (i == self)
			continue;
		/* Acquire: pairs with the release that published the name. */
		st = lmn__slot_state(ck_pr_load_64(&p->slot));
		ck_pr_fence_load();
		if (st != LMN__SLOT_LIVE && st != LMN__SLOT_JOINING)
			continue;
		if (!lmn__name_eq(p->name, name))
			continue;
		if (st == LMN__SLOT_LIVE || i < self)
			return 1;
		if (*wait_for == UINT32_MAX)
			*wait_for = i;
	}
	return 0;
}

/* Wait, bounded, until joiner idx leaves the JOINING state: 0 when it did.
 * A joiner settles within microseconds unless it was preempted or killed;
 * -1 for one that died half-way (seen through its pid) or that did not
 * settle within two seconds: the caller backs off rather than guess. */
static int await_settled(const struct lmn__layout *l, void *base, uint32_t idx)
{
	struct lmn__participant *p = lmn__part(l, base, idx);
	uint64_t w = ck_pr_load_64(&p->slot);
	int32_t pid = ck_pr_load_32((uint32_t *)&p->pid);
	struct timespec pause = {0, 100000};

	/* It may have settled between the caller's scan and our load: then
	 * w is already its settled word, and waiting for w to change would
	 * wait out the bound and back off for nothing (two seconds, and no
	 * winner at all when every rival had backed off). */
	if (lmn__slot_state(w) != LMN__SLOT_JOINING)
		return 0;
	for (int round = 0; round < 20000; round++) {
		if (ck_pr_load_64(&p->slot) != w)
			return 0;
		if (round < 100) {
			sched_yield();
			continue;
		}
		if (pid > 0 && kill(pid, 0) < 0 && errno == ESRCH)
			return -1;
		nanosleep(&pause, NULL);
	}
	return -1;
}

int lmn__part_claim(const struct lmn__layout *l, void *base, const char *name, int32_t pid,
		    uint64_t start_time, uint64_t pidfs_ino, uint32_t *ret_idx, uint32_t *ret_gen)
{
	struct lmn__participant *p = NULL;
	uint32_t idx = 0, gen = 0;

	uint32_t wait_for;

	if (name_taken(l, base, name, UINT32_MAX, &wait_for))
		return -EADDRINUSE;
	for (idx = 0; idx < l->participants; idx++) {
		uint64_t w;

		p = lmn__part(l, base, idx);
		w = ck_pr_load_64(&p->slot);
		if (lmn__slot_state(w) != LMN__SLOT_FREE)
			continue;
		gen = lmn__slot_gen(w) + 1;
		if (ck_pr_cas_64(&p->slot, w, lmn__slot_claim(gen, pid)))
			break;
	}
	if (idx == l->participants)
		return -ENOSPC;

	p->pid = pid;
	p->start_time = start_time;
	p->pidfs_ino = pidfs_ino;
	p->joined_ns = now_realtime();
	p->exit_ns = 0;
	p->health = LMN__HEALTH_ALIVE;
	memset(p->name, 0, sizeof(p->name));
	memcpy(p->name, name, strlen(name));
	memset(p->services, 0, sizeof(p->services));
	ck_pr_store_32(&p->serving, 0);
	ck_pr_store_64(&p->sent, 0);
	ck_pr_store_64(&p->served, 0);
	ck_pr_store_32(&p->doorbell, (ck_pr_load_32(&p->doorbell) + LMN__WORD_SEQ) &
					     ~LMN__WORD_SLEEPER);
	p->doorbell_cpu = -1;
	memset(lmn__ready(l, base, idx), 0, l->ready_stride);

	/* Publish the name (release: the fields above first), then look for a
	 * rival.  The fence orders our store before the loads of the scan, so
	 * of two simultaneous joiners at least one sees the other. */
	ck_pr_fence_store();
	ck_pr_store_64(&p->slot, lmn__slot_word(gen, LMN__SLOT_JOINING));
	lmn__fence_full();
	for (;;) {
		if (name_taken(l, base, name, idx, &wait_for) ||
		    (wait_for != UINT32_MAX && await_settled(l, base, wait_for) < 0)) {
			ck_pr_store_64(&p->slot, lmn__slot_word(gen, LMN__SLOT_FREE));
			return -EADDRINUSE;
		}
		if (wait_for == UINT32_MAX)
			break;
	}
	ck_pr_store_64(&p->slot, lmn__slot_word(gen, LMN__SLOT_LIVE));
	*ret_idx = idx;
	*ret_gen = gen;
	return 0;
}

void lmn__part_begin_leave(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen)
{
	struct lmn__participant *p = lmn__part(l, base, idx);

	ck_pr_cas_64(&p->slot, lmn__slot_word(gen, LMN__SLOT_LIVE),
		     lmn__slot_word(gen, LMN__SLOT_CLOSING));
	/* Orders the state change before the leaver's scan of the conversation
	 * table; an opener stores its conversation and then loads this state,
	 * so one of the two always sees the other. */
	lmn__fence_full();
}

void lmn__part_release(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen)
{
	struct lmn__participant *p = lmn__part(l, base, idx);

	p->exit_ns = now_realtime();
	p->health = LMN__HEALTH_LEFT;
	/* Release: the exit record is visible before the slot can be reused. */
	ck_pr_fence_store();
	ck_pr_cas_64(&p->slot, lmn__slot_word(gen, LMN__SLOT_CLOSING),
		     lmn__slot_word(gen, LMN__SLOT_FREE));
}

void lmn__part_unserve(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen)
{
	struct lmn__participant *p;
	uint32_t n;

	if (idx >= l->participants)
		return;
	p = lmn__part(l, base, idx);
	/* A later tenant of the slot starts from zero: not its count. */
	if (lmn__slot_gen(ck_pr_load_64(&p->slot)) != gen)
		return;
	n = ck_pr_load_32(&p->serving);
	while (n && !ck_pr_cas_32_value(&p->serving, n, n - 1, &n))
		;
}

int lmn__part_live(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen)
{
	if (idx >= l->participants)
		return 0;
	return ck_pr_load_64(&lmn__part(l, base, idx)->slot) ==
	       lmn__slot_word(gen, LMN__SLOT_LIVE);
}

int lmn__part_find(const struct lmn__layout *l, void *base, const char *name, uint32_t *ret_idx,
		   uint32_t *ret_gen)
{
	for (uint32_t i = 0; i < l->participants; i++) {
		struct lmn__participant *p = lmn__part(l, base, i);
		uint64_t w = ck_pr_load_64(&p->slot);

		/* Orders the state load before the name loads. */
		ck_pr_fence_load();
		if (lmn__slot_state(w) != LMN__SLOT_LIVE || !lmn__name_eq(p->name, name))
			continue;
		*ret_idx = i;
		*ret_gen = lmn__slot_gen(w);
		return 0;
	}
	return -ENOENT;
}

int lmn__part_find_server(const struct lmn__layout *l, void *base, const char *service,
			  uint32_t *ret_idx, uint32_t *ret_gen)
{
	uint32_t best = UINT32_MAX, best_gen = 0, best_load = UINT32_MAX;

	for (uint32_t i = 0; i < l->participants; i++) {
		struct lmn__participant *p = lmn__part(l, base, i);
		uint64_t w = ck_pr_load_64(&p->slot);
		uint32_t load;
		int serves = 0;

		ck_pr_fence_load();
		if (lmn__slot_state(w) != LMN__SLOT_LIVE)
			continue;
		for (uint32_t s = 0; s < LMN__SERVICES && !serves; s++)
			serves = lmn__name_eq(p->services[s], service);
		if (!serves)
			continue;
		load = ck_pr_load_32(&p->serving);
		if (best == UINT32_MAX || load < best_load) {
			best = i;
			best_gen = lmn__slot_gen(w);
			best_load = load;
		}
	}
	if (best == UINT32_MAX)
		return -ENOENT;
	*ret_idx = best;
	*ret_gen = best_gen;
	return 0;
}

int lmn__conv_claim(const struct lmn__layout *l, void *base, int32_t pid, uint32_t *ret_idx,
		    uint32_t *ret_gen)
{
	struct lmn__header *h = lmn__hdr(base);
	uint32_t start = ck_pr_load_32(&h->conv_hint) % l->conversations;

	for (uint32_t k = 0; k < l->conversations; k++) {
		uint32_t i = (start + k) % l->conversations;
		struct lmn__conv *c = lmn__conv_at(l, base, i);
		uint64_t w = ck_pr_load_64(&c->slot);
		uint32_t gen;

		if (lmn__slot_state(w) != LMN__SLOT_FREE)
			continue;
		gen = lmn__slot_gen(w) + 1;
		if (!ck_pr_cas_64(&c->slot, w, lmn__slot_claim(gen, pid)))
			continue;
		ck_pr_store_32(&h->conv_hint, i + 1);
		*ret_idx = i;
		*ret_gen = gen;
		return 0;
	}
	return -ENOSPC;
}

int lmn__conv_unref(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen,
		    uint32_t side)
{
	struct lmn__conv *c = lmn__conv_at(l, base, idx);
	uint64_t r = ck_pr_load_64(&c->refs);

	/* Orders this side's earlier stores to the conversation before the
	 * drop, so whoever frees the slot sees them. */
	ck_pr_fence_store_atomic();
	for (;;) {
		if (lmn__gen_of(r) != gen)
			return 0; /* not this tenant's */
		if (!(lmn__value_of(r) & side)) {
			/* Dropped already.  If no reference is left, the last
			 * dropper may have been killed between its drop and the
			 * free below: whoever ends its part for it (a reaper, a
			 * second drop) finishes the free. */
			if (lmn__value_of(r) != 0)
				return 0;
			return lmn__conv_free_unreferenced(l, base, idx, gen);
		}
		if (ck_pr_cas_64_value(&c->refs, r, r & ~(uint64_t)side, &r))
			break;
	}
	if ((lmn__value_of(r) & ~side) != 0)
		return 0;
	return lmn__conv_free_unreferenced(l, base, idx, gen);
}

int lmn__conv_free_unreferenced(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen)
{
	struct lmn__conv *c = lmn__conv_at(l, base, idx);

	/* The CAS fails if the slot was freed already, or freed and taken by
	 * a later tenant, whose references carry its own generation. */
	if (!ck_pr_cas_64(&c->slot, lmn__slot_word(gen, LMN__SLOT_LIVE),
			  lmn__slot_word(gen, LMN__SLOT_FREE)))
		return 0;
	/* Hint the next opener here: freed slots are warm. */
	ck_pr_store_32(&lmn__hdr(base)->conv_hint, idx);
	return 1;
}
