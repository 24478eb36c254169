/* SPDX-License-Identifier: MIT */
/*
 * The deadline of a sleep (lmn__wait's deadline_ns).  The io_uring backend
 * keeps one timer per thread armed across waits, at the earliest deadline
 * it was asked for, and moves or re-arms it as waits come: each wait must
 * still end at its own deadline, neither before nor long after.  The first
 * wait of each test finds its word already moved on, so it returns at once
 * and leaves the timer armed for its deadline; the second sleeps.  The
 * futex(2) fallback arms a timer in each sleep; the same checks hold.
 */
#include <errno.h>
#include <stdint.h>

#include "harness.h"
#include "../lib/internal.h"

#define MS 1000000ull

/* A word, and one nobody sleeps on for the wake ahead, which puts the
 * sleep on io_uring where the machine has it. */
static uint32_t word, nobody;

/* Leaves the timer armed for now + ms. */
static void wait_moved_on(uint64_t ms)
{
	ck_assert_int_eq(lmn__wait(&word, word + 1, lmn__now_ns() + ms * MS, -1, 0, &nobody), 0);
}

/* Sleeps on the word, which nobody changes, until now + ms; returns how
 * long it slept, in ms. */
static uint64_t sleep_until_deadline(uint64_t ms)
{
	uint64_t t0 = lmn__now_ns();

	ck_assert_int_eq(lmn__wait(&word, word, t0 + ms * MS, -1, 0, &nobody), -ETIMEDOUT);
	return (lmn__now_ns() - t0) / MS;
}

/* A timer armed for ten minutes must move for a 30 ms deadline; left
 * where it was, the sleep would outlast the test's time limit. */
START_TEST(near_deadline_after_a_far_one)
{
	uint64_t slept;

	wait_moved_on(600000);
	slept = sleep_until_deadline(30);
	ck_assert_uint_ge(slept, 30);
	ck_assert_uint_lt(slept, TH_TIMEOUT_MS);
	/* Armed far, moved near by a wait that did not sleep, then kept by
	 * a sleep with a later deadline: it fires first and is armed again. */
	wait_moved_on(600000);
	wait_moved_on(30);
	slept = sleep_until_deadline(60);
	ck_assert_uint_ge(slept, 60);
	ck_assert_uint_lt(slept, TH_TIMEOUT_MS);
}
END_TEST

/* A timer armed for 20 ms fires during a sleep until 100 ms: the sleep
 * must neither end then nor sleep on without a deadline. */
START_TEST(far_deadline_after_a_near_one)
{
	uint64_t slept;

	wait_moved_on(20);
	slept = sleep_until_deadline(100);
	ck_assert_uint_ge(slept, 100);
	ck_assert_uint_lt(slept, TH_TIMEOUT_MS);
}
END_TEST

/* Deadlines one after another, each sleep ending at its own. */
START_TEST(deadlines_in_turn)
{
	static const uint64_t ms[] = {40, 10, 30, 5, 50, 20};

	for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
		uint64_t slept = sleep_until_deadline(ms[i]);

		ck_assert_uint_ge(slept, ms[i]);
		ck_assert_uint_lt(slept, TH_TIMEOUT_MS);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("timer");
	TCase *tc = tcase_create("deadline");

	tcase_add_checked_fixture(tc, th_setup, th_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, near_deadline_after_a_far_one);
	tcase_add_test(tc, far_deadline_after_a_near_one);
	tcase_add_test(tc, deadlines_in_turn);
	suite_add_tcase(s, tc);
	return th_run(s);
}
