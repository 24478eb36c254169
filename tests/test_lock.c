/* SPDX-License-Identifier: MIT */
/*
 * The bus lock (lib/lock.h): biased to the first thread that takes it,
 * revoked when a second one comes, and exclusive throughout, including
 * while the owner is inside at the moment of the revocation.
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "../lib/internal.h"

/* Whether lock.c can bias here: the commands its revocation uses. */
static int barriers_available(void)
{
	long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

	return cmds > 0 && (cmds & MEMBARRIER_CMD_GLOBAL) &&
	       (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED);
}

struct contest {
	struct lmn__lock lock;
	unsigned rounds;         /* each thread's takes */
	unsigned started;        /* threads past their first take (atomic) */
	unsigned owner_progress; /* the owner's takes so far (atomic) */
	/* Guarded by the lock, and deliberately plain: two holders at once
	 * lose increments, and see each other's mark. */
	unsigned long count;
	int inside;
	unsigned overlaps;
};

static void critical_section(struct contest *x)
{
	if (x->inside)
		x->overlaps++;
	x->inside = 1;
	/* A few stores, so that an overlap has room to show. */
	for (int i = 0; i < 4; i++)
		x->count++;
	x->count -= 3;
	x->inside = 0;
}

static void *contender_main(void *p)
{
	struct contest *x = p;

	/* Start while the owner is in its loop, so that the revocation
	 * meets it taking and dropping, inside or about to be. */
	while (ck_pr_load_uint(&x->owner_progress) < x->rounds / 4)
		ck_pr_stall();
	for (unsigned i = 0; i < x->rounds; i++) {
		lmn__lock_take(&x->lock);
		critical_section(x);
		lmn__lock_drop(&x->lock);
		if (i == 0)
			ck_pr_inc_uint(&x->started);
	}
	return NULL;
}

/* The owner's takes need no locked instruction (lock.h): after the first
 * take the lock names this thread, and a later take is the owner's way. */
START_TEST(first_taker_owns)
{
	struct lmn__lock l = LMN__LOCK_INIT;

	if (!barriers_available())
		return; /* never biased there: nothing to see */
	lmn__lock_take(&l);
	ck_assert_ptr_eq(l.owner, lmn__lock_self());
	ck_assert_uint_eq(l.by_state, 1); /* the first take is the state word's */
	lmn__lock_drop(&l);
	ck_assert_uint_eq(l.state, 0);
	lmn__lock_take(&l);
	ck_assert_uint_eq(l.owner_in, 1);
	ck_assert_uint_eq(l.by_state, 0);
	ck_assert_uint_eq(l.state, 0); /* the state word stays free */
	lmn__lock_drop(&l);
	ck_assert_uint_eq(l.owner_in, 0);
}
END_TEST

/* One contest: this thread owns the lock, two others come while it keeps
 * taking it. */
static void contest_once(unsigned rounds)
{
	enum { THREADS = 2 };
	struct contest x = {.lock = LMN__LOCK_INIT, .rounds = rounds};
	pthread_t t[THREADS];

	lmn__lock_take(&x.lock); /* this thread owns it, where bias works */
	lmn__lock_drop(&x.lock);
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, contender_main, &x), 0);
	for (unsigned i = 0; i < x.rounds; i++) {
		lmn__lock_take(&x.lock);
		critical_section(&x);
		lmn__lock_drop(&x.lock);
		ck_pr_inc_uint(&x.owner_progress);
	}
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
	ck_assert_uint_eq(x.started, THREADS);
	ck_assert_uint_eq(x.overlaps, 0);
	ck_assert_uint_eq(x.count, (unsigned long)x.rounds * (THREADS + 1));
	ck_assert_ptr_null(x.lock.owner);
	ck_assert_uint_eq(x.lock.owner_in, 0);
	ck_assert_uint_eq(x.lock.state, 0);
}

/* A second thread revokes the bias while the owner keeps taking the lock,
 * and a third joins: no two are ever inside at once, no increment is lost,
 * and once revoked the lock stays unbiased.  The revocation is the moment
 * that matters, so it is staged many times. */
START_TEST(revocation_keeps_exclusion)
{
	for (int trial = 0; trial < 40; trial++)
		contest_once(20000);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("lock");
	TCase *tc = tcase_create("lock");

	tcase_add_checked_fixture(tc, th_setup, th_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, first_taker_owns);
	tcase_add_test(tc, revocation_keeps_exclusion);
	suite_add_tcase(s, tc);
	return th_run(s);
}
