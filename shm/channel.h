/* SPDX-License-Identifier: MIT */
/*
 * One direction of a conversation: cells travel from the producer to the
 * consumer through the data ring and come back through the free ring.  Both
 * are Concurrency Kit SPSC rings whose buffers live beside them in the
 * segment and carry cell indices.
 *
 * Who may call: the lmn__tx_* functions only from the channel's one
 * producer, the lmn__rx_* ones only from its one consumer (below).
 * lmn__chan_init() only while nobody else can reach the channel;
 * lmn__chan_give_back() only in place of a consumer that died.
 *
 * Nothing read from the segment is trusted: the ring geometry is compared
 * with the process's own validated layout before each use, and every cell
 * index that comes out of a ring is bounds-checked, so a corrupted segment
 * yields -EUCLEAN or -EBADMSG, never an access outside the segment.
 */
#ifndef LMN_SHM_CHANNEL_H
#define LMN_SHM_CHANNEL_H

#include <errno.h>
#include <stdint.h>

#include <ck_pr.h>
#include <ck_ring.h>

#include "layout.h"

/*
 * The rings are ck_ring's (the same struct, the same counters and fences),
 * used with the process's own validated ring size instead of the size and
 * mask stored in the segment: ck_ring reads its mask from the ring on every
 * call, and a mask damaged between a check and that read would index
 * outside the buffer.  Counters read from the segment are checked against
 * that size as well.  lmn__ring_put() is the plain put, through the
 * counters in the segment, for setting a channel up and for a reaper; the
 * ends below do the rest.
 */
static inline int lmn__ring_put(struct ck_ring *r, struct ck_ring_buffer *buf, uint32_t size,
				uintptr_t v)
{
	unsigned int c = ck_pr_load_uint(&r->c_head);
	unsigned int p = ck_pr_load_uint(&r->p_tail);

	if (p - c >= size)
		return -EUCLEAN; /* more published than the ring holds */
	if (p - c == size - 1)
		return -EAGAIN;
	ck_pr_store_ptr(&buf[p & (size - 1)].value, (void *)v);
	/* Orders the slot before the new tail that publishes it. */
	ck_pr_fence_store();
	ck_pr_store_uint(&r->p_tail, p + 1);
	return 0;
}

/* Set up an empty channel whose free ring holds every cell. */
static inline void lmn__chan_init(struct lmn__channel *ch, struct ck_ring_buffer *freebuf,
				  uint32_t depth, uint32_t size)
{
	ck_ring_init(&ch->data, size);
	ck_ring_init(&ch->free, size);
	for (uint32_t i = 0; i < depth; i++)
		(void)lmn__ring_put(&ch->free, freebuf, size, i);
	ch->producer_cpu = -1;
	/* The words keep their old sequence: a sleeper from a previous tenant
	 * of this slot must never see its expected value come back. */
	ck_pr_store_32(&ch->data_word, (ck_pr_load_32(&ch->data_word) + LMN__WORD_SEQ) &
					       ~LMN__WORD_SLEEPER);
	ck_pr_store_32(&ch->free_word, (ck_pr_load_32(&ch->free_word) + LMN__WORD_SEQ) &
					       ~LMN__WORD_SLEEPER);
}

/*
 * Each end of a channel keeps its own counters in its own process: struct
 * lmn__tx for the producer, struct lmn__rx for the consumer.  The copies in
 * the segment are there for the other side to read; an end never needs to
 * read back what it wrote, and reads the other side's counter only once
 * what it last read is used up.  That cuts the cache lines a message pulls
 * from the other core, which is what a stream's rate is made of
 * (perf/README.md).  It also means damage to an end's counter in the
 * segment is caught by the other end, which reads and checks it, and is
 * undone by the next store of the end that owns it; it never steers the
 * owner.
 *
 * Who may call: an lmn__tx only from the channel's one producer, an lmn__rx
 * only from its one consumer, each in the process that attached it.
 */
struct lmn__tx {
	uint32_t data_p; /* next data slot to fill: data.p_tail */
	uint32_t free_c; /* next free slot to take: free.c_head */
	uint32_t free_p; /* free.p_tail as last read */
};

struct lmn__rx {
	uint32_t data_c;   /* next data slot to take: data.c_head */
	uint32_t data_p;   /* data.p_tail as last read */
	uint32_t free_p;   /* next free slot to fill */
	uint32_t free_pub; /* free.p_tail as last stored */
};

/* Take up the producer's end from the segment (a new channel, or one whose
 * producer was replaced).  -EUCLEAN if the counters are damaged. */
static inline int lmn__tx_attach(struct lmn__tx *tx, struct lmn__channel *ch, uint32_t size)
{
	tx->data_p = ck_pr_load_uint(&ch->data.p_tail);
	tx->free_c = ck_pr_load_uint(&ch->free.c_head);
	tx->free_p = ck_pr_load_uint(&ch->free.p_tail);
	/* Orders the counter loads before any load of the slots they cover. */
	ck_pr_fence_load();
	return tx->free_p - tx->free_c < size ? 0 : -EUCLEAN;
}

/* The same for the consumer's end. */
static inline int lmn__rx_attach(struct lmn__rx *rx, struct lmn__channel *ch, uint32_t size)
{
	rx->data_c = ck_pr_load_uint(&ch->data.c_head);
	rx->data_p = ck_pr_load_uint(&ch->data.p_tail);
	rx->free_p = rx->free_pub = ck_pr_load_uint(&ch->free.p_tail);
	/* Orders the counter loads before any load of the slots they cover. */
	ck_pr_fence_load();
	return rx->data_p - rx->data_c < size ? 0 : -EUCLEAN;
}

/* Producer: take a free cell.  0 and *cell, -EAGAIN when every cell is in
 * use, -EUCLEAN when the segment is damaged. */
static inline int lmn__tx_reserve(struct lmn__tx *tx, struct lmn__channel *ch,
				  struct ck_ring_buffer *freebuf, const struct lmn__layout *l,
				  uint32_t *cell)
{
	uintptr_t v;

	if (tx->free_c == tx->free_p) {
		uint32_t p = ck_pr_load_uint(&ch->free.p_tail);

		if (p - tx->free_c >= l->ring_size)
			return -EUCLEAN; /* more returned than the ring holds */
		if (p == tx->free_c)
			return -EAGAIN;
		tx->free_p = p;
		/* Orders the tail load above before the slot loads below,
		 * pairing with the consumer's store fence in lmn__rx_flush. */
		ck_pr_fence_load();
	}
	v = (uintptr_t)ck_pr_load_ptr(&freebuf[tx->free_c & (l->ring_size - 1)].value);
	if (v >= l->ring_depth)
		return -EUCLEAN;
	tx->free_c++;
	/* Orders the slot load before the head store that lets the consumer
	 * fill the slot again. */
	ck_pr_fence_load_store();
	ck_pr_store_uint(&ch->free.c_head, tx->free_c);
	*cell = (uint32_t)v;
	return 0;
}

/* Producer: has the consumer returned a cell we have not taken?  Any
 * difference counts, damage included: the reserve that follows tells. */
static inline int lmn__tx_room(const struct lmn__tx *tx, const struct lmn__channel *ch)
{
	return ck_pr_load_uint(&ch->free.p_tail) != tx->free_c;
}

/* Producer: hand a filled cell to the consumer.  The data ring holds more
 * than there are cells, so it cannot be full, and the consumer's head is
 * never read. */
static inline void lmn__tx_publish(struct lmn__tx *tx, struct lmn__channel *ch,
				  struct ck_ring_buffer *databuf, const struct lmn__layout *l,
				  uint32_t cell)
{
	ck_pr_store_ptr(&databuf[tx->data_p & (l->ring_size - 1)].value, (void *)(uintptr_t)cell);
	/* Orders the slot, and the cell filled before it, before the tail
	 * that publishes them. */
	ck_pr_fence_store();
	tx->data_p++;
	ck_pr_store_uint(&ch->data.p_tail, tx->data_p);
}

/* Consumer: move past the oldest entry, which lmn__rx_peek() found. */
static inline void lmn__rx_advance(struct lmn__rx *rx, struct lmn__channel *ch)
{
	rx->data_c++;
	/* Orders the reads of the slot (and of the cell it named) before the
	 * head store that lets the producer reuse the slot. */
	ck_pr_fence_load_store();
	ck_pr_store_uint(&ch->data.c_head, rx->data_c);
}

/* Consumer: is anything published beyond what was taken?  Reads the
 * producer's tail only once what was last read is used up.  1 yes, 0 no,
 * -EUCLEAN when the tail is damaged (the last good reading is kept, and the
 * damage is reported at each look until it is repaired). */
static inline int lmn__rx_any(struct lmn__rx *rx, struct lmn__channel *ch, uint32_t size)
{
	uint32_t p;

	if (rx->data_c != rx->data_p)
		return 1;
	p = ck_pr_load_uint(&ch->data.p_tail);
	if (p - rx->data_c >= size)
		return -EUCLEAN;
	rx->data_p = p;
	/* Orders the tail load above before the slot loads that follow,
	 * pairing with the producer's store fence in lmn__tx_publish. */
	ck_pr_fence_load();
	return p != rx->data_c;
}

/* Consumer: look at the oldest published cell without taking it, so that a
 * receive whose buffer is too small can leave the message where it is.
 * 0 and *cell, -EAGAIN when empty, -EUCLEAN when damaged: a damaged tail is
 * left as it is (see lmn__rx_any), a damaged entry is dropped so that it
 * cannot block the channel for good. */
static inline int lmn__rx_peek(struct lmn__rx *rx, struct lmn__channel *ch,
			       struct ck_ring_buffer *databuf, const struct lmn__layout *l,
			       uint32_t *cell)
{
	uintptr_t v;
	int r = lmn__rx_any(rx, ch, l->ring_size);

	if (r <= 0)
		return r < 0 ? r : -EAGAIN;
	v = (uintptr_t)ck_pr_load_ptr(&databuf[rx->data_c & (l->ring_size - 1)].value);
	if (v >= l->ring_depth) {
		lmn__rx_advance(rx, ch);
		return -EUCLEAN;
	}
	*cell = (uint32_t)v;
	return 0;
}

/* Consumer: the cell after the oldest, if it is known to be published
 * without reading the producer's tail again.  A hint for prefetching, so
 * only bounds-checked.  -EAGAIN when not known. */
static inline int lmn__rx_peek_next(const struct lmn__rx *rx, struct ck_ring_buffer *databuf,
				    const struct lmn__layout *l, uint32_t *cell)
{
	uintptr_t v;

	if (rx->data_p - rx->data_c < 2)
		return -EAGAIN;
	v = (uintptr_t)ck_pr_load_ptr(&databuf[(rx->data_c + 1) & (l->ring_size - 1)].value);
	if (v >= l->ring_depth)
		return -EAGAIN;
	*cell = (uint32_t)v;
	return 0;
}

/* Consumer: put a cell in the free ring without publishing it yet; it goes
 * to the producer at the next lmn__rx_flush().  The ring holds more than
 * there are cells, so it cannot be full, and the producer's head is never
 * read. */
static inline void lmn__rx_return(struct lmn__rx *rx, struct ck_ring_buffer *freebuf,
				  uint32_t size, uint32_t cell)
{
	ck_pr_store_ptr(&freebuf[rx->free_p & (size - 1)].value, (void *)(uintptr_t)cell);
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
	return (uint32_t)(uintptr_t)ck_pr_load_ptr(&freebuf[(rx->free_pub + i) & (size - 1)].value);
}

/* Consumer: publish the returned cells; the caller then signals the
 * producer's free word, one fence for the whole batch.  Returns whether
 * anything was published. */
static inline int lmn__rx_flush(struct lmn__rx *rx, struct lmn__channel *ch)
{
	if (rx->free_p == rx->free_pub)
		return 0;
	/* Release: orders the slots written by lmn__rx_return(), and
	 * everything the caller stored and loaded before (the cell states,
	 * the reads of the released cells), before the tail that hands the
	 * cells to the producer for refilling.  A store fence would leave
	 * the loads unordered where stores may pass them (arm64). */
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
	int r = lmn__ring_put(&ch->free, freebuf, l->ring_size, cell);

	return r == -EAGAIN ? -EUCLEAN : r;
}

/* Either side: is anything published and not yet taken? */
static inline int lmn__chan_has_data(const struct lmn__channel *ch)
{
	return ck_pr_load_uint(&ch->data.c_head) != ck_pr_load_uint(&ch->data.p_tail);
}


#endif
