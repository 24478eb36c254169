/* SPDX-License-Identifier: MIT */
/* The bus lock's contended path (lock.h): spin a little, then sleep. */
#include "internal.h"

/* Rounds of spinning before sleeping: the lock is held for well under a
 * microsecond, so a holder that is running lets go within them; one that
 * was preempted does not, and then sleeping gives it the CPU. */
#define LOCK_SPINS 128

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
