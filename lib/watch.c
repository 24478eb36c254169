/* SPDX-License-Identifier: MIT */
/*
 * Exit watches: be told, once, when a named participant leaves the bus or
 * dies.  The truth is in the segment: a participant's slot moves on (its
 * generation changes, or it is freed) only after its exit was written to
 * the bus's exit log, and every exit bumps the bus's exits word.  A watch
 * remembers the participant's index and generation, so it can always tell
 * whether its exit happened, and the log says how; an exit that came before
 * the watch is found the same way, so it is never lost and never doubled.
 *
 * A thread per bus handle with watches sleeps on the exits word and makes
 * each fired watch's eventfd readable, for event loops; lmn_watch_wait()
 * sleeps on the same word itself.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <ck_pr.h>

#include "internal.h"
#include "../shm/table.h"
#include "../shm/word.h"

struct lmn_watch {
	struct lmn_bus *bus;
	uint32_t idx;
	uint32_t gen;
	int efd;
	int result;    /* 0 until the exit is seen, then LMN_EXIT_* */
	int delivered; /* lmn_watch_wait() has returned it */
	struct lmn_watch *next;
};

/* The exit record of (idx, gen), or of the latest exit under name when
 * name is not NULL: LMN_EXIT_* or 0 when the log has none. */
static int exit_lookup(struct lmn_bus *bus, uint32_t idx, uint32_t gen, const char *name)
{
	int r = lmn__exit_find(bus->base, idx, gen, name);

	return r == 2 ? LMN_EXIT_CRASHED : r == 1 ? LMN_EXIT_LEFT : 0;
}

/* Has the watched participant exited?  Bus watch lock held.  Makes the
 * eventfd readable the first time it has. */
static int evaluate(struct lmn_watch *w)
{
	struct lmn__participant *p;
	uint64_t s;
	uint32_t st;

	if (w->result)
		return w->result;
	p = lmn__part(&w->bus->l, w->bus->base, w->idx);
	s = ck_pr_load_64(&p->slot);
	st = lmn__slot_state(s);
	if (lmn__slot_gen(s) == w->gen && (st == LMN__SLOT_LIVE || st == LMN__SLOT_JOINING))
		return 0; /* still there */
	ck_pr_fence_load();
	/* Leaving (CLOSING) or being reaped (DEAD): the exit is logged, and
	 * the exits word bumped, before the slot is finally freed, so look at
	 * the log now rather than wait for a FREE that brings no wake-up. */
	w->result = exit_lookup(w->bus, w->idx, w->gen, NULL);
	if (!w->result) {
		if (lmn__slot_gen(s) == w->gen && st != LMN__SLOT_FREE)
			return 0; /* logged in a moment, with a bump */
		w->result = LMN_EXIT_LEFT; /* the log moved on: it did exit */
	}
	(void)eventfd_write(w->efd, 1);
	return w->result;
}

static void *watch_main(void *arg)
{
	struct lmn_bus *bus = arg;
	uint32_t *word = &lmn__hdr(bus->base)->roster_word;
	sigset_t all;

	/* Signals are the application's business, not this thread's. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		uint32_t expect;

		pthread_mutex_lock(&bus->wlock);
		for (struct lmn_watch *w = bus->watches; w; w = w->next)
			(void)evaluate(w);
		pthread_mutex_unlock(&bus->wlock);
		if (ck_pr_load_int(&bus->watch_stop))
			return NULL;
		expect = lmn__word_arm(word);
		pthread_mutex_lock(&bus->wlock);
		for (struct lmn_watch *w = bus->watches; w; w = w->next)
			(void)evaluate(w);
		pthread_mutex_unlock(&bus->wlock);
		if (ck_pr_load_int(&bus->watch_stop))
			return NULL;
		(void)lmn__futex_wait(word, expect, 0);
	}
}

void lmn__watches_stop(struct lmn_bus *bus)
{
	uint32_t *word = &lmn__hdr(bus->base)->roster_word;

	if (!bus->watch_thread_running)
		return;
	ck_pr_store_int(&bus->watch_stop, 1);
	/* Wakes watch threads of other processes too; they look and sleep
	 * again. */
	(void)lmn__word_bump(word);
	lmn__wake(word);
	pthread_join(bus->watch_thread, NULL);
	bus->watch_thread_running = 0;
}

/* A participant by that name that is leaving (CLOSING) or being reaped
 * (DEAD): its exit is not logged yet, but will be; watch it. */
static int find_departing(struct lmn_bus *bus, const char *name, uint32_t *ret_idx,
			  uint32_t *ret_gen)
{
	for (uint32_t i = 0; i < bus->l.participants; i++) {
		struct lmn__participant *p = lmn__part(&bus->l, bus->base, i);
		uint64_t w = ck_pr_load_64(&p->slot);
		uint32_t st = lmn__slot_state(w);

		if (st != LMN__SLOT_CLOSING && st != LMN__SLOT_DEAD)
			continue;
		ck_pr_fence_load();
		if (!lmn__name_eq(p->name, name))
			continue;
		*ret_idx = i;
		*ret_gen = lmn__slot_gen(w);
		return 0;
	}
	return -ENOENT;
}

LMN_EXPORT int lmn_watch_open(lmn_bus *bus, const char *participant, lmn_watch **ret)
{
	struct lmn_watch *w;
	uint32_t idx = 0, gen = 0;
	int r, replay = 0;

	if (!bus || !ret)
		return -EINVAL;
	r = lmn__check_name(participant);
	if (r < 0)
		return r;
	if (lmn__part_find(&bus->l, bus->base, participant, &idx, &gen) < 0 &&
	    find_departing(bus, participant, &idx, &gen) < 0) {
		/* Nobody by that name now: replay its last exit, if any. */
		replay = exit_lookup(bus, 0, 0, participant);
		if (!replay)
			return -ENOENT;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->efd < 0) {
		r = -errno;
		free(w);
		return r;
	}
	w->bus = bus;
	w->idx = idx;
	w->gen = gen;
	if (replay) {
		w->result = replay;
		(void)eventfd_write(w->efd, 1);
	} else {
		/* Make sure its death is noticed even if nobody else waits
		 * on it. */
		lmn__sentinel_watch(bus, idx, gen);
	}
	pthread_mutex_lock(&bus->wlock);
	w->next = bus->watches;
	bus->watches = w;
	(void)evaluate(w);
	if (!bus->watch_thread_running) {
		ck_pr_store_int(&bus->watch_stop, 0);
		r = -pthread_create(&bus->watch_thread, NULL, watch_main, bus);
		if (r < 0) {
			bus->watches = w->next;
			pthread_mutex_unlock(&bus->wlock);
			close(w->efd);
			free(w);
			return r;
		}
		bus->watch_thread_running = 1;
	}
	pthread_mutex_unlock(&bus->wlock);
	*ret = w;
	return 0;
}

LMN_EXPORT int lmn_watch_wait(lmn_watch *watch, int timeout_ms)
{
	struct lmn_bus *bus;
	uint64_t deadline;
	uint32_t *word;

	if (!watch || timeout_ms < -1)
		return -EINVAL;
	bus = watch->bus;
	if (!bus)
		return -ESTALE;
	word = &lmn__hdr(bus->base)->roster_word;
	deadline = lmn__deadline(timeout_ms, 0, NULL);
	for (;;) {
		uint32_t expect;
		eventfd_t v;
		int r;

		pthread_mutex_lock(&bus->wlock);
		if (watch->delivered) {
			pthread_mutex_unlock(&bus->wlock);
			return -EALREADY;
		}
		r = evaluate(watch);
		if (r) {
			(void)eventfd_read(watch->efd, &v);
			watch->delivered = 1;
		}
		pthread_mutex_unlock(&bus->wlock);
		if (r)
			return r;
		if (deadline && lmn__now_ns() >= deadline)
			return -ETIMEDOUT;
		expect = lmn__word_arm(word);
		pthread_mutex_lock(&bus->wlock);
		r = evaluate(watch);
		pthread_mutex_unlock(&bus->wlock);
		if (r)
			continue;
		(void)lmn__sentinel_wait(bus, word, expect, deadline, watch->idx, watch->gen, true,
					 NULL);
	}
}

LMN_EXPORT int lmn_watch_fd(const lmn_watch *watch)
{
	return watch ? watch->efd : -EINVAL;
}

LMN_EXPORT int lmn_watch_close(lmn_watch *watch)
{
	struct lmn_bus *bus;

	if (!watch)
		return 0;
	bus = watch->bus;
	if (bus) {
		pthread_mutex_lock(&bus->wlock);
		for (struct lmn_watch **pp = &bus->watches; *pp; pp = &(*pp)->next) {
			if (*pp == watch) {
				*pp = watch->next;
				break;
			}
		}
		pthread_mutex_unlock(&bus->wlock);
	}
	close(watch->efd);
	free(watch);
	return 0;
}

/* Leaving detaches the watches still open: their handles stay for
 * lmn_watch_close(), and wait on them says -ESTALE. */
void lmn__watches_detach(struct lmn_bus *bus)
{
	pthread_mutex_lock(&bus->wlock);
	while (bus->watches) {
		struct lmn_watch *w = bus->watches;

		bus->watches = w->next;
		w->next = NULL;
		w->bus = NULL;
	}
	pthread_mutex_unlock(&bus->wlock);
}
