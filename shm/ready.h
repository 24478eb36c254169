/* SPDX-License-Identifier: MIT */
/*
 * Each participant has a three-level bitmap of "this conversation may have
 * something for you": one leaf bit per conversation, one summary bit per
 * leaf word, one top bit per summary word (a million conversations need
 * four top words, so a server that looks for work reads a handful of words
 * however many conversations are open).  Any number of senders set bits with atomic OR; the one server
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
 * skip an OR (and its cache-line transfer) when the bit is already set.
 *
 * The caller issues a full fence between its ring publication (a store) and
 * this call: otherwise we might see the leaf bit still set from an earlier
 * mark and skip ours while the server, which takes that bit an instant
 * later, still finds the ring empty, a lost wake-up seen in tests. */
/* Set bit in *word unless it is set already, then order that before the
 * caller's next load: after an OR, a fence for atomics then loads (free on
 * x86, where the locked OR is already a full barrier); after a load that
 * found the bit set, loads in order (we stored nothing to order). */
static inline void mark_one(uint64_t *word, uint64_t bit)
{
	if (!(ck_pr_load_64(word) & bit)) {
		ck_pr_or_64(word, bit);
		ck_pr_fence_atomic_load();
	} else {
		ck_pr_fence_load();
	}
}

static inline void lmn__ready_mark(uint64_t *bits, const struct lmn__layout *l, uint32_t conv)
{
	uint64_t *top = bits;
	uint64_t *summary = bits + l->ready_top_words;
	uint64_t *leaf = summary + l->ready_summary_words;
	uint32_t w = conv / 64, s = w / 64, t = s / 64;
	uint64_t lb = 1ull << (conv % 64), sb = 1ull << (w % 64), tb = 1ull << (s % 64);

	mark_one(&leaf[w], lb);
	mark_one(&summary[s], sb);
	mark_one(&top[t], tb);
}

/* The owner: is anything marked?  Used to re-check after arming a sleep,
 * and in a spin: a few loads. */
static inline int lmn__ready_any(const uint64_t *bits, const struct lmn__layout *l)
{
	for (uint32_t i = 0; i < l->ready_top_words; i++)
		if (ck_pr_load_64(&bits[i]))
			return 1;
	return 0;
}

/* The owner: take marked conversations, calling emit(ctx, conv) for each.
 * Every marked one is emitted in one take, so none starves.  Indices are
 * bounds-checked: bits past the table are dropped. */
static inline uint32_t lmn__ready_take(uint64_t *bits, const struct lmn__layout *l,
				       void (*emit)(void *, uint32_t), void *ctx)
{
	uint64_t *top = bits;
	uint64_t *summary = bits + l->ready_top_words;
	uint64_t *leaf = summary + l->ready_summary_words;
	uint32_t n = 0;

	for (uint32_t t = 0; t < l->ready_top_words; t++) {
		uint64_t tw = ck_pr_load_64(&top[t]);

		if (!tw)
			continue;
		tw = ck_pr_fas_64(&top[t], 0);
		/* Orders the top clear before the summary takes below. */
		ck_pr_fence_atomic();
		while (tw) {
			uint32_t s = t * 64 + (uint32_t)__builtin_ctzll(tw);
			uint64_t sw;

			tw &= tw - 1;
			if (s >= l->ready_summary_words)
				continue;
			sw = ck_pr_fas_64(&summary[s], 0);
			/* Orders the summary clear before the leaf takes. */
			ck_pr_fence_atomic();
			while (sw) {
				uint32_t w = s * 64 + (uint32_t)__builtin_ctzll(sw);
				uint64_t lw;

				sw &= sw - 1;
				if (w >= l->ready_leaf_words)
					continue;
				lw = ck_pr_fas_64(&leaf[w], 0);
				/* Orders the take before the loads of the rings
				 * it points the caller to. */
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
		}
	}
	return n;
}

#endif
