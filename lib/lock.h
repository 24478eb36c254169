/* SPDX-License-Identifier: MIT */
/*
 * The bus lock: it serializes the threads of one process over that
 * process's ends of the bus (the server's queue and channel ends, the
 * handle lists).  It is held only for short, bounded work and never while
 * sleeping on the bus, so it is almost never contended; what matters is the
 * uncontended cost, which lies on every request's path (lmn_next, then
 * lmn_reply).  Taken and dropped inline, it costs one locked instruction
 * each way and no call; pthread_mutex_t cost about 75 instructions and two
 * calls per pair (perf/README.md).  A thread that finds it held spins
 * briefly, then sleeps on the futex (wait_futex.c).
 *
 * Who may call: any thread of the process; the lock is not recursive.
 */
#ifndef LMN_LIB_LOCK_H
#define LMN_LIB_LOCK_H

#include <stdint.h>

#include <ck_pr.h>

/* 0 free, 1 held, 2 held and a thread may sleep on it. */
struct lmn__lock {
	uint32_t state;
};

#define LMN__LOCK_INIT {0}

void lmn__lock_take_slow(struct lmn__lock *l);
void lmn__lock_wake(struct lmn__lock *l);

static inline void lmn__lock_take(struct lmn__lock *l)
{
	if (!ck_pr_cas_32(&l->state, 0, 1))
		lmn__lock_take_slow(l);
	/* Orders the accesses of the critical section after the take. */
	ck_pr_fence_lock();
}

static inline void lmn__lock_drop(struct lmn__lock *l)
{
	/* Orders the accesses of the critical section before the release. */
	ck_pr_fence_unlock();
	if (ck_pr_fas_32(&l->state, 0) == 2)
		lmn__lock_wake(l);
}

#endif
