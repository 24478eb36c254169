/* SPDX-License-Identifier: MIT */
/*
 * The bus lock: it serializes the threads of one process over that
 * process's ends of the bus (the server's queue and channel ends, the
 * handle lists).  It is held only for short, bounded work and never while
 * sleeping on the bus, so it is almost never contended; what matters is the
 * uncontended cost, which lies on every request's path (lmn_next, then
 * lmn_reply).  A thread that finds it held spins briefly, then sleeps on
 * the futex (lock.c).
 *
 * Most processes serve a bus from one thread, and for them even one locked
 * instruction each way is too much: a locked instruction waits for every
 * load before it, the request's own cache miss included, so the two on the
 * way from a request to its reply put that miss and what follows it in
 * single file (perf/README.md).  So the lock is biased to the first thread
 * that takes it.  That thread, the owner, takes it by announcing itself in
 * owner_in and checking that the bias still holds, with plain stores and
 * loads.  Any other thread takes the state word, and the first one to do so
 * revokes the bias for good: it clears owner, makes every thread of the
 * process run a full barrier (membarrier(2)), and waits for owner_in to
 * fall.  The barrier stands in for the fence that the owner's store and
 * load would need: either the owner sees the revocation, or the revoker
 * sees it inside.  From then on everyone, the owner too, takes the state
 * word.  Where membarrier(2) is refused, the lock is never biased.
 *
 * Who may call: any thread of the process; the lock is not recursive (an
 * owner taking it twice would not deadlock, as before, but the inner drop
 * would let the outer hold go).
 */
#ifndef LMN_LIB_LOCK_H
#define LMN_LIB_LOCK_H

#include <stdint.h>

#include <ck_pr.h>

struct lmn__lock {
	uint32_t state;    /* 0 free, 1 held, 2 held and a thread may sleep on it */
	uint32_t owner_in; /* the owner holds it without the state word (atomic) */
	/* The holder took the state word: written by holders of the state
	 * word, read by the owner's drop (set only once a revocation has
	 * seen the owner out, so the owner always reads 0). */
	uint32_t by_state;
	/* lmn__lock_self() of the owner; NULL unbiased (revoked, or bias
	 * ruled out); LMN__LOCK_UNCHOSEN before the first take.  Written
	 * only while holding the state word, read by anyone (atomic). */
	const void *owner;
};

/* No thread-local lives at address 1. */
#define LMN__LOCK_UNCHOSEN ((const void *)1)
#define LMN__LOCK_INIT {0, 0, 0, LMN__LOCK_UNCHOSEN}

void lmn__lock_take_slow(struct lmn__lock *l);
void lmn__lock_settle(struct lmn__lock *l);
void lmn__lock_wake(struct lmn__lock *l);

/* A value that tells the threads of a process apart: the address of a
 * thread-local, so no system call.  A thread that ends hands its value to
 * a later one, which is harmless: ownership is only ever held by one
 * thread at a time. */
extern __thread char lmn__lock_me __attribute__((tls_model("initial-exec")));

static inline const void *lmn__lock_self(void)
{
	return &lmn__lock_me;
}

static inline void lmn__lock_take(struct lmn__lock *l)
{
	if (ck_pr_load_ptr(&l->owner) == lmn__lock_self()) {
		ck_pr_store_32(&l->owner_in, 1);
		/* No fence between the store and the load: the revoker's
		 * membarrier(2) supplies it (above).  The compiler must still
		 * keep them in this order. */
		ck_pr_barrier();
		/* No acquire fence after it either: the only thread that
		 * could be inside besides us is a revoker, and it waits for
		 * owner_in to fall after its barrier. */
		if (ck_pr_load_ptr(&l->owner) == lmn__lock_self())
			return;
		ck_pr_store_32(&l->owner_in, 0);
	}
	if (!ck_pr_cas_32(&l->state, 0, 1))
		lmn__lock_take_slow(l);
	/* Orders the accesses of the critical section after the take. */
	ck_pr_fence_lock();
	/* A plain read: owner is written only under the state word.  Once
	 * unbiased, the lock stays so and skips the call. */
	if (l->owner)
		lmn__lock_settle(l);
	/* After settling, whose wait has seen the owner out (lock.c). */
	l->by_state = 1;
}

static inline void lmn__lock_drop(struct lmn__lock *l)
{
	if (!l->by_state) {
		/* Orders the accesses of the critical section before the
		 * release, which a revoker waits for. */
		ck_pr_fence_unlock();
		ck_pr_store_32(&l->owner_in, 0);
		return;
	}
	l->by_state = 0;
	/* Orders the accesses of the critical section before the release. */
	ck_pr_fence_unlock();
	if (ck_pr_fas_32(&l->state, 0) == 2)
		lmn__lock_wake(l);
}

#endif
