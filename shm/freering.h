/* SPDX-License-Identifier: MIT */
/*
 * The free ring of a channel (shm/channel.h): cells going back from the
 * consumer to the producer, and how the producer finds the next one.
 *
 * Who may call: the lmn__tx_* functions only from the channel's one
 * producer, the lmn__rx_* ones only from its one consumer, each in the
 * process that attached it; lmn__chan_give_back() only in place of a
 * consumer that died.
 */
#ifndef LMN_SHM_FREERING_H
#define LMN_SHM_FREERING_H

#include "channel.h"

/*
 * Free cells in order.  A consumer that gives cells back in the order they
 * came, as a request-reply round or a stream does, fills the free ring with
 * a period of depth positions: each message takes the next free position
 * and the next data position, so the cell given back at free position f is
 * the one taken at f - depth.  A producer that remembers the cells it took
 * at the last depth positions then knows the cell of the next one without
 * reading its slot, a line the consumer writes: reading the slots a line at
 * a time still cost a round trip about 20 ns (perf/README.md).  It keeps
 * that memory (tx->hist) for rings of up to LMN__HIST_DEPTH cells, the
 * default; deeper rings read the slots.
 *
 * The consumer publishes in the free ring's p_head (which an SPSC ring does
 * not use) the in-order mark m: from m on, every slot holds the cell of the
 * slot depth positions before it.  It checks each cell it gives back
 * against the one it gave back depth positions before, which it remembers
 * (rx->hist: nothing read back from the segment decides), and when one
 * breaks the period (a request held while later ones were released) moves
 * the mark past it.  The mark starts at depth, after the cells a channel
 * starts with.  The consumer stores it before the tail that publishes the
 * positions, and only ever moves it forward, past positions not yet
 * published: a producer that reads a newer mark than the tail it read only
 * reads more slots.  It also keeps it within depth positions of the tail,
 * which lets the producer refuse a mark far behind as damage (it then reads
 * slots).  A mark damaged within that window makes the producer take a
 * cell that may still be in use, as a damaged slot would: always one of
 * the channel's own cells.  A reaper giving cells back moves the mark past
 * each: it has no memory of the order.
 */
static inline bool lmn__free_in_order(uint32_t pos, uint32_t mark)
{
	return (int32_t)(pos - mark) >= 0;
}

/* The mark moved past pos, never back. */
static inline uint32_t lmn__free_past(uint32_t mark, uint32_t pos)
{
	return lmn__free_in_order(pos + 1, mark) ? pos + 1 : mark;
}

/* Does h know the cell of free position pos: the one at pos - depth? */
static inline bool lmn__hist_knows(const struct lmn__free_hist *h, uint32_t pos, uint32_t depth)
{
	return depth <= LMN__HIST_DEPTH && lmn__free_in_order(pos, h->from);
}

static inline uint32_t lmn__hist_cell(const struct lmn__free_hist *h, uint32_t pos,
				      uint32_t depth)
{
	return h->cell[pos & (depth - 1)];
}

/* Remember the cell of free position pos.  `from` is kept within a
 * position of it once valid, so that it never drifts half a counter's
 * range behind. */
static inline void lmn__hist_note(struct lmn__free_hist *h, uint32_t pos, uint32_t depth,
				  uint32_t cell)
{
	if (depth > LMN__HIST_DEPTH)
		return;
	h->cell[pos & (depth - 1)] = (uint16_t)cell;
	if (lmn__free_in_order(pos, h->from))
		h->from = pos + 1;
}

/* Producer: read the cells of the next free slots, up to LMN__TX_AHEAD of
 * those published, into tx->ahead.  -EUCLEAN if the first is damaged: a
 * damaged slot ends the read-ahead; reached, it is refused, and stays in
 * the ring. */
static inline int lmn__tx_read_ahead(struct lmn__tx *tx, struct ck_ring_buffer *freebuf,
				     const struct lmn__layout *l)
{
	uint32_t n = tx->free_p - tx->free_c;

	if (n > LMN__TX_AHEAD)
		n = LMN__TX_AHEAD;
	tx->ahead_i = tx->ahead_n = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t v = lmn__free_slot(freebuf, l->ring_size, tx->free_c + i);

		if (v >= l->ring_depth)
			break;
		tx->ahead[tx->ahead_n++] = (uint16_t)v;
	}
	return tx->ahead_n ? 0 : -EUCLEAN;
}

/* Producer: take a free cell.  0 and *cell, -EAGAIN when every cell is in
 * use, -EUCLEAN when the segment is damaged. */
static inline int lmn__tx_reserve(struct lmn__tx *tx, struct lmn__channel *ch,
				  struct ck_ring_buffer *freebuf, const struct lmn__layout *l,
				  uint32_t *cell)
{
	if (tx->free_c == tx->free_p) {
		uint32_t p = ck_pr_load_uint(&ch->free.p_tail);

		if (p - tx->free_c >= l->ring_size)
			return -EUCLEAN; /* more returned than the ring holds */
		if (p == tx->free_c)
			return -EAGAIN;
		tx->free_p = p;
		/* Orders the tail load above before the loads of the mark
		 * and the slots below, pairing with the consumer's release
		 * fence in lmn__rx_flush. */
		ck_pr_fence_load();
		tx->free_m = ck_pr_load_uint(&ch->free.p_head);
		/* The consumer keeps its mark within depth of its tail: one
		 * further behind is damage, and this batch reads slots. */
		if (p - tx->free_m > l->ring_size && lmn__free_in_order(p, tx->free_m))
			tx->free_m = p;
	}
	if (lmn__free_in_order(tx->free_c, tx->free_m) &&
	    lmn__hist_knows(&tx->hist, tx->free_c, l->ring_depth)) {
		/* The cell we took depth positions ago, which stays the one
		 * remembered for this position. */
		*cell = lmn__hist_cell(&tx->hist, tx->free_c, l->ring_depth);
		tx->hist.from = tx->free_c + 1;
		tx->ahead_i = tx->ahead_n = 0; /* positions moved past them */
	} else {
		if (tx->ahead_i == tx->ahead_n && lmn__tx_read_ahead(tx, freebuf, l) < 0)
			return -EUCLEAN;
		*cell = tx->ahead[tx->ahead_i++];
		lmn__hist_note(&tx->hist, tx->free_c, l->ring_depth, *cell);
	}
	tx->free_c++;
	/* Orders the tail and slot loads before the head store that lets
	 * the consumer fill the slot again, and before the caller's stores
	 * into the cell: on the computed way no slot load depends on the
	 * tail, so this fence alone keeps the cell's refill after it. */
	ck_pr_fence_load_store();
	ck_pr_store_uint(&ch->free.c_head, tx->free_c);
	return 0;
}

/* Producer: has the consumer returned a cell we have not taken?  Any
 * difference counts, damage included: the reserve that follows tells. */
static inline int lmn__tx_room(const struct lmn__tx *tx, const struct lmn__channel *ch)
{
	return ck_pr_load_uint(&ch->free.p_tail) != tx->free_c;
}

/* Consumer: put a cell in the free ring without publishing it yet; it goes
 * to the producer at the next lmn__rx_flush().  The ring holds more than
 * there are cells, so it cannot be full, and the producer's head is never
 * read.  A cell out of order moves the in-order mark past it. */
static inline void lmn__rx_return(struct lmn__rx *rx, struct ck_ring_buffer *freebuf,
				  const struct lmn__layout *l, uint32_t cell)
{
	ck_pr_store_ptr(&freebuf[rx->free_p & (l->ring_size - 1)].value, (void *)(uintptr_t)cell);
	if (!lmn__hist_knows(&rx->hist, rx->free_p, l->ring_depth) ||
	    lmn__hist_cell(&rx->hist, rx->free_p, l->ring_depth) != cell)
		rx->free_m = lmn__free_past(rx->free_m, rx->free_p);
	lmn__hist_note(&rx->hist, rx->free_p, l->ring_depth, cell);
	rx->free_p++;
}

/* Consumer: how many returned cells wait for lmn__rx_flush(). */
static inline uint32_t lmn__rx_unflushed(const struct lmn__rx *rx)
{
	return rx->free_p - rx->free_pub;
}

/* Consumer: the i-th cell waiting for lmn__rx_flush(), as we wrote it
 * (bounds-checked by the caller before use). */
static inline uint32_t lmn__rx_unflushed_cell(const struct lmn__rx *rx,
					      struct ck_ring_buffer *freebuf, uint32_t size,
					      uint32_t i)
{
	return lmn__free_slot(freebuf, size, rx->free_pub + i);
}

/* Consumer: publish the returned cells; the caller then signals the
 * producer's free word, one fence for the whole batch.  Returns whether
 * anything was published. */
static inline int lmn__rx_flush(struct lmn__rx *rx, struct lmn__channel *ch, uint32_t depth)
{
	if (rx->free_p == rx->free_pub)
		return 0;
	/* Kept within depth of the tail (the period held since it, so a
	 * later mark says no more), for the producer's check. */
	if (lmn__free_in_order(rx->free_p - depth, rx->free_m))
		rx->free_m = rx->free_p - depth;
	/* The mark shares the tail's line, and goes before it: the release
	 * below orders it too. */
	ck_pr_store_uint(&ch->free.p_head, rx->free_m);
	/* Release: orders the slots written by lmn__rx_return(), the mark,
	 * and everything the caller stored and loaded before (the cell
	 * states, the reads of the released cells), before the tail that
	 * hands the cells to the producer for refilling.  A store fence would
	 * leave the loads unordered where stores may pass them (arm64). */
	ck_pr_fence_release();
	ck_pr_store_uint(&ch->free.p_tail, rx->free_p);
	rx->free_pub = rx->free_p;
	return 1;
}

/* Whoever stands in for a dead server (reclaim): give a command cell back
 * to the producer through the counters in the segment, the server's own
 * end having died with it. */
static inline int lmn__chan_give_back(struct lmn__channel *ch, struct ck_ring_buffer *freebuf,
				      const struct lmn__layout *l, uint32_t cell)
{
	unsigned int p = ck_pr_load_uint(&ch->free.p_tail);
	int r;

	/* No memory of the order here: the mark goes past the position the
	 * put fills, before the tail (lmn__ring_put fences the two). */
	ck_pr_store_uint(&ch->free.p_head, lmn__free_past(ck_pr_load_uint(&ch->free.p_head), p));
	r = lmn__ring_put(&ch->free, freebuf, l->ring_size, cell);
	return r == -EAGAIN ? -EUCLEAN : r;
}

#endif
