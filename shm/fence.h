/* SPDX-License-Identifier: MIT */
/*
 * The full barrier: every load and store before it is ordered before every
 * load and store after it.  The library needs one wherever two sides each
 * store and then load what the other stored (a sender publishes and then
 * looks for a sleeper; a sleeper announces itself and then looks for data),
 * so that at least one of them sees the other.
 *
 * On x86-64, any locked instruction is such a barrier for ordinary
 * write-back memory, which is all the segment is.  MFENCE, which
 * ck_pr_fence_memory() issues, also orders non-temporal stores and
 * write-combining memory, and costs far more.  The library has neither
 * (glibc's memcpy uses non-temporal stores for very large copies, and
 * fences them itself before it returns).  MFENCE took
 * 43 cycles against 5 for a locked OR on the machine of perf/README.md, and
 * was most of the CPU time of lmn_send(), lmn_reply() and
 * lmn_msg_release().  The locked OR targets a local variable, so it touches
 * a line no other thread shares and changes nothing.  Other architectures
 * keep ck's fence.
 *
 * Who may call: anyone.
 */
#ifndef LMN_SHM_FENCE_H
#define LMN_SHM_FENCE_H

#include <stdint.h>

#include <ck_pr.h>

static inline void lmn__fence_full(void)
{
#if defined(__x86_64__)
	int here = 0;

	__asm__ __volatile__("lock orl $0, %0" : "+m"(here) : : "memory", "cc");
#else
	ck_pr_fence_memory();
#endif
}

/* The same barrier, made of an atomic add of one to *counter (which other
 * threads may add to as well): on x86-64 the locked add is the barrier, so
 * a count kept where a fence is needed anyway costs nothing more than the
 * fence; elsewhere, the add and then ck's fence. */
static inline void lmn__fence_full_counting(uint64_t *counter)
{
#if defined(__x86_64__)
	__asm__ __volatile__("lock incq %0" : "+m"(*counter) : : "memory", "cc");
#else
	ck_pr_inc_64(counter);
	ck_pr_fence_memory();
#endif
}

#endif
