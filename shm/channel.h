/* SPDX-License-Identifier: MIT */
/*
 * One direction of a conversation: cells travel from the producer to the
 * consumer through the data ring and come back through the free ring.  Both
 * are Concurrency Kit SPSC rings whose buffers live beside them in the
 * segment and carry cell indices.
 *
 * Who may call: the lmn__chan_reserve/publish pair only from the channel's
 * one producer, the lmn__chan_peek/take/give_back trio only from its one
 * consumer.  lmn__chan_init() only while nobody else can reach the channel.
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
 * The SPSC operations are ck_ring's (the same struct, the same counters and
 * fences), done here with the process's own validated ring size instead of
 * the size and mask stored in the segment: ck_ring reads its mask from the
 * ring on every call, and a mask damaged between a check and that read would
 * index outside the buffer.  Counters read from the segment are checked
 * against that size as well.
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

static inline int lmn__ring_look(struct ck_ring *r, struct ck_ring_buffer *buf, uint32_t size,
				 uint32_t limit, uintptr_t *v)
{
	unsigned int c = ck_pr_load_uint(&r->c_head);
	unsigned int p = ck_pr_load_uint(&r->p_tail);

	if (c == p)
		return -EAGAIN;
	if (p - c >= size)
		return -EUCLEAN;
	/* Orders the tail load above before the slot load below, pairing
	 * with the producer's store fence. */
	ck_pr_fence_load();
	*v = (uintptr_t)ck_pr_load_ptr(&buf[c & (size - 1)].value);
	if (*v >= limit)
		return -EUCLEAN;
	return 0;
}

static inline void lmn__ring_advance(struct ck_ring *r)
{
	/* Orders the reads of the slot (and of the cell it named) before
	 * the head store that lets the producer reuse them. */
	ck_pr_fence_load_store();
	ck_pr_store_uint(&r->c_head, ck_pr_load_uint(&r->c_head) + 1);
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

/* Producer: take a free cell.  0 and *cell, -EAGAIN when every cell is in
 * use, -EUCLEAN when the segment is damaged. */
static inline int lmn__chan_reserve(struct lmn__channel *ch, struct ck_ring_buffer *freebuf,
				    const struct lmn__layout *l, uint32_t *cell)
{
	uintptr_t v;
	int r = lmn__ring_look(&ch->free, freebuf, l->ring_size, l->ring_depth, &v);

	if (r < 0)
		return r;
	lmn__ring_advance(&ch->free);
	*cell = (uint32_t)v;
	return 0;
}

/* Producer: hand a filled cell to the consumer. */
static inline int lmn__chan_publish(struct lmn__channel *ch, struct ck_ring_buffer *databuf,
				    const struct lmn__layout *l, uint32_t cell)
{
	int r = lmn__ring_put(&ch->data, databuf, l->ring_size, cell);

	/* Full cannot happen: the ring holds more than there are cells. */
	return r == -EAGAIN ? -EUCLEAN : r;
}

/* Consumer: look at the oldest published cell without taking it, so that a
 * receive whose buffer is too small can leave the message where it is.
 * 0 and *cell, -EAGAIN when empty. */
static inline int lmn__chan_peek(struct lmn__channel *ch, struct ck_ring_buffer *databuf,
				 const struct lmn__layout *l, uint32_t *cell)
{
	uintptr_t v;
	int r = lmn__ring_look(&ch->data, databuf, l->ring_size, l->ring_depth, &v);

	if (r == 0)
		*cell = (uint32_t)v;
	return r;
}

/* Consumer: take the oldest published cell. */
static inline int lmn__chan_take(struct lmn__channel *ch, struct ck_ring_buffer *databuf,
				 const struct lmn__layout *l, uint32_t *cell)
{
	int r = lmn__chan_peek(ch, databuf, l, cell);

	if (r == 0)
		lmn__ring_advance(&ch->data);
	return r;
}

/* Consumer: drop the oldest published entry whatever it holds (a damaged
 * one), so that one bad entry cannot block the channel for good. */
static inline void lmn__chan_skip(struct lmn__channel *ch, uint32_t size)
{
	unsigned int c = ck_pr_load_uint(&ch->data.c_head);
	unsigned int p = ck_pr_load_uint(&ch->data.p_tail);

	/* Only past an entry that is there: damaged counters are left as
	 * they are, since moving them would only spread the damage. */
	if (p != c && p - c < size)
		lmn__ring_advance(&ch->data);
}

/* Consumer: give a cell back to the producer for reuse. */
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


/* Either side: is any cell free for the producer? */
static inline int lmn__chan_has_room(const struct lmn__channel *ch)
{
	return ck_pr_load_uint(&ch->free.c_head) != ck_pr_load_uint(&ch->free.p_tail);
}

#endif
