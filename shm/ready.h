/* SPDX-License-Identifier: MIT */
/*
 * Each participant has a two-level bitmap of "this conversation may have
 * something for you": one leaf bit per conversation and one summary bit per
 * leaf word.  Any number of senders set bits with atomic OR; the one server
 * that owns the bitmap takes them with atomic exchange.  There is no lock and
 * no list a dead process could leave half-linked: a sender killed between
 * its two ORs leaves a leaf bit that the next summary bit or scan finds.
 *
 * Order: a sender sets the leaf bit, then the summary bit; the server clears
 * the summary word, then takes the leaf words it covered.  A leaf bit set
 * before the server's clear is seen by the take that follows it; one set
 * after it sets the summary bit again.
 */
#ifndef LMN_SHM_READY_H
#define LMN_SHM_READY_H

#include <stdint.h>

#include <ck_pr.h>

#include "layout.h"

/* Any sender: mark conversation conv ready in the bitmap at bits.  The loads
 * skip an OR (and its cache-line transfer) when the bit is already set. */
static inline void lmn__ready_mark(uint64_t *bits, const struct lmn__layout *l, uint32_t conv)
{
	uint64_t *summary = bits;
	uint64_t *leaf = bits + l->ready_summary_words;
	uint32_t w = conv / 64, s = w / 64;
	uint64_t lb = 1ull << (conv % 64), sb = 1ull << (w % 64);

	/* A full fence: the caller's ring publication (a store) must be
	 * visible before we load the leaf.  Otherwise we might see the bit
	 * still set from an earlier mark and skip ours while the server, which
	 * takes that bit an instant later, still finds the ring empty: a lost
	 * wake-up, seen in tests before this fence was here. */
	ck_pr_fence_memory();
	if (!(ck_pr_load_64(&leaf[w]) & lb))
		ck_pr_or_64(&leaf[w], lb);
	/* Orders the leaf mark before the summary load (the OR alone does
	 * not on every architecture). */
	ck_pr_fence_memory();
	if (!(ck_pr_load_64(&summary[s]) & sb))
		ck_pr_or_64(&summary[s], sb);
}

/* The owner: is anything marked?  Used to re-check after arming a sleep. */
static inline int lmn__ready_any(const uint64_t *bits, const struct lmn__layout *l)
{
	for (uint32_t i = 0; i < l->ready_summary_words; i++)
		if (ck_pr_load_64(&bits[i]))
			return 1;
	return 0;
}

/* The owner: take marked conversations, calling emit(ctx, conv) for each,
 * starting at summary word *cursor so that no range starves.  Indices are
 * bounds-checked: bits past the table are dropped. */
static inline uint32_t lmn__ready_take(uint64_t *bits, const struct lmn__layout *l,
				       uint32_t *cursor, void (*emit)(void *, uint32_t), void *ctx)
{
	uint64_t *summary = bits;
	uint64_t *leaf = bits + l->ready_summary_words;
	uint32_t n = 0, start = *cursor % l->ready_summary_words;

	for (uint32_t k = 0; k < l->ready_summary_words; k++) {
		uint32_t s = (start + k) % l->ready_summary_words;
		uint64_t sw = ck_pr_load_64(&summary[s]);

		if (!sw)
			continue;
		sw = ck_pr_fas_64(&summary[s], 0);
		/* Orders the summary clear before the leaf takes below. */
		ck_pr_fence_atomic();
		while (sw) {
			uint32_t w = s * 64 + (uint32_t)__builtin_ctzll(sw);
			uint64_t lw;

			sw &= sw - 1;
			if (w >= l->ready_leaf_words)
				continue;
			lw = ck_pr_fas_64(&leaf[w], 0);
			/* Orders the take before the loads of the rings it
			 * points the caller to. */
			ck_pr_fence_atomic_load();
			while (lw) {
				uint32_t conv = w * 64 + (uint32_t)__builtin_ctzll(lw);

				lw &= lw - 1;
				if (conv < l->conversations) {
					emit(ctx, conv);
					n++;
				}
			}
		}
		*cursor = s + 1;
	}
	return n;
}

#endif
