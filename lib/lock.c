/* SPDX-License-Identifier: MIT */
/*
 * The bus lock's rarer paths (lock.h): the contended take, which spins a
 * little and then sleeps, and the bias: choosing the owner, and revoking
 * the bias when a second thread comes.
 */
#include <linux/membarrier.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "../shm/fence.h"

/* Rounds of spinning before sleeping: the lock is held for well under a
 * microsecond, so a holder that is running lets go within them; one that
 * was preempted does not, and then sleeping gives it the CPU. */
#define LOCK_SPINS 128

/* One per thread, for its address (lmn__lock_self); initial-exec, so that
 * the owner's take reaches it without a call. */
__thread char lmn__lock_me __attribute__((tls_model("initial-exec")));

void lmn__lock_take_slow(struct lmn__lock *l)
{
	for (int i = 0; i < LOCK_SPINS; i++) {
		ck_pr_stall();
		if (ck_pr_load_32(&l->state) == 0 && ck_pr_cas_32(&l->state, 0, 1))
			return;
	}
	/* Taken from now on as 2, "held, maybe with sleepers", since we
	 * cannot tell whether others sleep too: the drop then wakes them. */
	while (ck_pr_fas_32(&l->state, 2) != 0)
		(void)lmn__futex_wait(&l->state, 2, 0);
}

void lmn__lock_wake(struct lmn__lock *l)
{
	lmn__futex_wake(&l->state);
}

static int membarrier(int cmd)
{
	return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

/* Make every running thread of the process execute a full barrier.  The
 * expedited command needs the process registered; registering again is
 * harmless, so a refusal is answered by registering and asking once more
 * (in case the registration did not survive, as across execve).  The
 * global one needs nothing and takes milliseconds, which a revocation can
 * afford. */
static int barrier_everywhere(void)
{
	if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
		return 0;
	if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
	    membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
		return 0;
	return membarrier(MEMBARRIER_CMD_GLOBAL);
}

/* Can barrier_everywhere() be counted on?  Asked before biasing. */
static bool barriers_work(void)
{
	int cmds = membarrier(MEMBARRIER_CMD_QUERY);

	return cmds > 0 && (cmds & MEMBARRIER_CMD_GLOBAL) &&
	       membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

/* Wait for the owner to leave a critical section it is in. */
static void wait_owner_out(struct lmn__lock *l)
{
	for (unsigned i = 0; ck_pr_load_32(&l->owner_in); i++) {
		if (i < LOCK_SPINS)
			ck_pr_stall();
		else
			sched_yield();
	}
}

/* State word held, owner not NULL.  The first taker becomes the owner, if
 * the barrier that revoking needs is to be had; a later taker of the state
 * word, while an owner is set, revokes. */
void lmn__lock_settle(struct lmn__lock *l)
{
	const void *owner = l->owner;

	if (owner == LMN__LOCK_UNCHOSEN) {
		ck_pr_store_ptr(&l->owner, barriers_work() ? lmn__lock_self() : NULL);
		return;
	}
	if (owner == lmn__lock_self())
		return;
	/* Our half of the store-then-load: the store of owner before the
	 * load of owner_in below, ordered for both threads by the barrier
	 * that every thread of the process runs in barrier_everywhere(). */
	ck_pr_store_ptr(&l->owner, NULL);
	if (barrier_everywhere() < 0) {
		/* Refused although it worked when the owner was chosen: a
		 * seccomp filter installed since.  This is no guarantee, only
		 * the best left: our own fence, then time for the owner's
		 * store of owner_in to leave its store buffer (which an
		 * interrupt or a context switch also empties; no architecture
		 * promises a bound), then look. */
		struct timespec ms = {0, 1000000};

		lmn__fence_full();
		wait_owner_out(l);
		(void)nanosleep(&ms, NULL);
	}
	/* The owner sees owner cleared at its next take; one inside now
	 * lets go within the short work the lock guards. */
	wait_owner_out(l);
	/* Orders the owner's critical section, seen ended, before ours. */
	ck_pr_fence_acquire();
}
