/* SPDX-License-Identifier: MIT */
/*
 * The futex word protocol.  A word holds a sequence (upper 31 bits) and a
 * sleeper bit (bit 0).  It is a Dekker handshake between a waiter and a
 * signaller, each of which stores and then loads with a full fence between:
 *
 *   waiter:     set the sleeper bit (CAS); fence; look at the condition;
 *               sleep only if it is still false, expecting word|sleeper.
 *   signaller:  make the condition true; fence; load the word; if the
 *               sleeper bit is set, bump the sequence and clear the bit, then
 *               wake.
 *
 * Either the waiter sees the condition, or the signaller sees the bit; and a
 * waiter that armed before a bump finds its expected value gone, so the
 * kernel returns at once.  The signaller pays only a fence and a load when
 * nobody sleeps.
 *
 * A signaller killed between its CAS and its wake call leaves a sleeper
 * that no bit shows, and that every later signaller skips: whoever reaps
 * a departed process wakes its conversations' words, its servers'
 * doorbells and the roster whatever the bits say (lmn__word_bump_keep),
 * and a server asleep on its doorbell looks again now and then, for a
 * death nobody reaps (LMN__DOORBELL_LOOK_NS).
 *
 * Who may call: anyone, concurrently; several waiters may share a word.
 */
#ifndef LMN_SHM_WORD_H
#define LMN_SHM_WORD_H

#include <stdint.h>

#include <ck_pr.h>

#include "fence.h"
#include "layout.h"

/* Waiter: announce a sleeper.  Returns the value to pass to the futex wait.
 * ck's CAS is not a full barrier everywhere (plain cas or ll/sc on arm64),
 * so an explicit fence orders the bit before the caller's re-check of the
 * condition; on x86 the locked CAS already does and the fence is free. */
static inline uint32_t lmn__word_arm(uint32_t *word)
{
	uint32_t w = ck_pr_load_32(word);

	while (!(w & LMN__WORD_SLEEPER)) {
		if (ck_pr_cas_32_value(word, w, w | LMN__WORD_SLEEPER, &w)) {
			ck_pr_fence_atomic_load();
			return w | LMN__WORD_SLEEPER;
		}
	}
	lmn__fence_full(); /* the bit was already set: still order our re-check */
	return w;
}

/* Signaller: after making the condition true, returns nonzero when a wake
 * system call is needed.  The fence orders the caller's stores (a ring tail,
 * a phase) before the load of the sleeper bit. */
static inline int lmn__word_signal(uint32_t *word)
{
	uint32_t w;

	lmn__fence_full();
	w = ck_pr_load_32(word);
	while (w & LMN__WORD_SLEEPER) {
		if (ck_pr_cas_32_value(word, w, (w + LMN__WORD_SEQ) & ~LMN__WORD_SLEEPER, &w))
			return 1;
	}
	return 0;
}

/* Signaller after a departure, which makes the wake call whatever the bit
 * says: bump the sequence and leave the bit as it is.  A sleeper that has
 * armed but not yet slept finds its expected value gone; and if this
 * signaller is killed before its own wake call, the bit is still there for
 * the next one (one wake for nothing later, at worst). */
static inline void lmn__word_bump_keep(uint32_t *word)
{
	/* Orders the caller's stores (a phase, a gone flag, a ready mark,
	 * an exit record) before the bump that tells sleepers to look. */
	ck_pr_fence_store_atomic();
	ck_pr_add_32(word, LMN__WORD_SEQ);
}

/* Signaller that must wake everyone whatever the bit says (close, failure):
 * always bump, report whether anybody had announced sleep. */
static inline int lmn__word_bump(uint32_t *word)
{
	uint32_t w;

	/* Orders the caller's stores (a phase, a gone flag) before the bump
	 * that tells sleepers to look at them. */
	ck_pr_fence_store_atomic();
	w = ck_pr_load_32(word);

	while (!ck_pr_cas_32_value(word, w, (w + LMN__WORD_SEQ) & ~LMN__WORD_SLEEPER, &w))
		;
	return (w & LMN__WORD_SLEEPER) != 0;
}

#endif
