/* SPDX-License-Identifier: MIT */
/*
 * Waiting: which backend sleeps, and the bounded spin before it.
 *
 * The backend is chosen once per process, at the first wait: io_uring's
 * FUTEX_WAIT if the kernel takes it, else futex(2).  LIMINAL_WAIT=futex
 * forces the fallback.  Wakes are FUTEX_WAKE on the shared (not private)
 * futex, from futex(2) or, for a wake ahead, from io_uring: either reaches
 * sleepers of both backends alike.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>

#include "internal.h"

enum { BACKEND_UNSET = 0, BACKEND_URING = 1, BACKEND_FUTEX = 2 };

static int backend = BACKEND_UNSET;

static int pick_backend(void)
{
	int b = ck_pr_load_int(&backend);
	const char *env;

	if (b != BACKEND_UNSET)
		return b;
	env = getenv("LIMINAL_WAIT");
	if (env && strcmp(env, "futex") == 0)
		b = BACKEND_FUTEX;
	else
		b = lmn__uring_probe() == 0 ? BACKEND_URING : BACKEND_FUTEX;
	/* Any thread may race here; they all reach the same answer. */
	ck_pr_store_int(&backend, b);
	return b;
}

LMN_EXPORT const char *lmn_wait_backend(void)
{
	return pick_backend() == BACKEND_URING ? "io_uring" : "futex";
}

uint64_t lmn__deadline(int timeout_ms, uint64_t conv_deadline_ns, bool *passed)
{
	uint64_t d = 0, now = 0;

	/* The clock only where the answer needs it. */
	if (timeout_ms >= 0 || (passed && conv_deadline_ns))
		now = lmn__now_ns();
	if (timeout_ms >= 0)
		d = now + (uint64_t)timeout_ms * 1000000ull;
	if (conv_deadline_ns && (!d || conv_deadline_ns < d))
		d = conv_deadline_ns;
	if (passed)
		*passed = d && now >= d;
	return d;
}

int lmn__wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns, int peer_fd,
	      uint64_t peer_key, uint32_t *wake_ahead)
{
	/* io_uring earns its place when there is a peer's pidfd to poll in
	 * the same sleep, or a wake to send ahead the moment the sleep ends.
	 * A wait with neither (a sender waiting for room in a buffering
	 * conversation) sleeps in futex(2), whose wait is the cheaper of the
	 * two.  futex(2) has no way to send a wake ahead: a wake sent from
	 * user space after the sleep returns measured no faster than none
	 * (perf/README.md), so the fallback sends none. */
	if (pick_backend() == BACKEND_URING && (peer_fd >= 0 || wake_ahead)) {
		int r = lmn__uring_wait(word, expected, deadline_ns, peer_fd, peer_key, wake_ahead);

		if (r != -ENOSYS)
			return r;
		/* This thread could not get a ring (out of memory, locked
		 * memory limits): sleep the plain way rather than fail. */
	}
	return lmn__futex_wait(word, expected, deadline_ns);
}

bool lmn__wait_polls(void)
{
	return pick_backend() == BACKEND_URING;
}

void lmn__wake(uint32_t *word)
{
	lmn__futex_wake(word);
}

int lmn__current_cpu(void)
{
	return sched_getcpu();
}

/* Whether this thread may run on one CPU only.  Asked on every sleep beside
 * a peer on our CPU, so the answer is kept per thread and asked of the
 * kernel again every PINNED_REFRESH questions: an application that moves a
 * thread is seen soon, and a wait pays a system call rarely. */
#define PINNED_REFRESH 256u

bool lmn__pinned_alone(void)
{
	/* initial-exec, as the ring's: no __tls_get_addr on the way to a
	 * sleep (wait_uring.c). */
	static __thread unsigned int asked __attribute__((tls_model("initial-exec")));
	static __thread bool pinned __attribute__((tls_model("initial-exec")));

	if (asked++ % PINNED_REFRESH == 0) {
		cpu_set_t set;

		pinned = sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) == 1;
	}
	return pinned;
}

bool lmn__peer_shares_our_cpu(int32_t peer_cpu)
{
	return peer_cpu >= 0 && peer_cpu == lmn__current_cpu() && lmn__pinned_alone();
}

/* A spin can pay off only while the peer runs on another CPU: on one CPU
 * the spinner would burn the very time slice the peer needs. */
static bool spin_pays(const struct lmn_bus *bus, int32_t peer_cpu)
{
	if (!ck_pr_load_32(&bus->spin_ns) || !ck_pr_load_int(&bus->can_spin))
		return false;
	if (peer_cpu >= 0 && peer_cpu == lmn__current_cpu())
		return false;
	return true;
}

/*
 * A spin that keeps finding nothing is pure cost: an idle server polled with
 * short timeouts, or a peer that answers slower than the spin lasts.  After
 * MISSES_MAX such spins in a row, only one wait in PROBE_EVERY spins, to
 * notice when spinning pays again; one spin that pays restores them all.
 * The counters are a per-bus heuristic: threads racing on them only shift
 * when spinning resumes.
 */
#define MISSES_MAX 8u
#define PROBE_EVERY 16u

int lmn__spin_adaptive(struct lmn_bus *bus, int32_t peer_cpu, int (*cond)(void *), void *ctx)
{
	uint32_t misses = ck_pr_load_32(&bus->spin_misses);
	int hit;

	if (!spin_pays(bus, peer_cpu))
		return 0;
	if (misses >= MISSES_MAX) {
		uint32_t skips = ck_pr_load_32(&bus->spin_skips) + 1;

		ck_pr_store_32(&bus->spin_skips, skips);
		if (skips % PROBE_EVERY)
			return 0;
	}
	hit = lmn__spin(ck_pr_load_32(&bus->spin_ns), cond, ctx);
	if (hit)
		ck_pr_store_32(&bus->spin_misses, 0);
	else if (misses < MISSES_MAX)
		ck_pr_store_32(&bus->spin_misses, misses + 1);
	return hit;
}

int lmn__spin(uint32_t spin_ns, int (*cond)(void *), void *ctx)
{
	uint64_t end = 0;

	for (;;) {
		/* Look at the clock only every few rounds: reading it costs
		 * more than a round.  The first rounds go before any clock
		 * read, since a spin that pays mostly pays in them: a server
		 * gets back to its poll while the next request is on its way,
		 * and a read of the clock there is one the request waits for
		 * (perf/README.md).  The spin lasts up to one batch longer. */
		for (int i = 0; i < 32; i++) {
			if (cond(ctx))
				return 1;
			ck_pr_stall();
		}
		if (!end)
			end = lmn__now_ns() + spin_ns;
		else if (lmn__now_ns() >= end)
			return 0;
	}
}
