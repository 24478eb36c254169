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

static inline int lmn__ring_sane(const struct ck_ring *r, uint32_t size)
{
	return ck_pr_load_uint(&r->size) == size && ck_pr_load_uint(&r->mask) == size - 1;
}

/* Set up an empty channel whose free ring holds every cell. */
static inline void lmn__chan_init(struct lmn__channel *ch, struct ck_ring_buffer *freebuf,
				  uint32_t depth, uint32_t size)
{
	ck_ring_init(&ch->data, size);
	ck_ring_init(&ch->free, size);
	for (uint32_t i = 0; i < depth; i++)
		ck_ring_enqueue_spsc(&ch->free, freebuf, (void *)(uintptr_t)i);
	ch->consumer_cpu = -1;
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
	void *v;

	if (!lmn__ring_sane(&ch->free, l->ring_size))
		return -EUCLEAN;
	if (!ck_ring_dequeue_spsc(&ch->free, freebuf, &v))
		return -EAGAIN;
	if ((uintptr_t)v >= l->ring_depth)
		return -EUCLEAN;
	*cell = (uint32_t)(uintptr_t)v;
	return 0;
}

/* Producer: hand a filled cell to the consumer.  ck_ring's enqueue issues a
 * store fence between the cell's contents and the new tail, so the consumer
 * that sees the index also sees the message. */
static inline int lmn__chan_publish(struct lmn__channel *ch, struct ck_ring_buffer *databuf,
				    const struct lmn__layout *l, uint32_t cell)
{
	if (!lmn__ring_sane(&ch->data, l->ring_size))
		return -EUCLEAN;
	if (!ck_ring_enqueue_spsc(&ch->data, databuf, (void *)(uintptr_t)cell))
		return -EUCLEAN; /* more cells than the ring holds: damaged */
	return 0;
}

/* Consumer: look at the oldest published cell without taking it, so that a
 * receive whose buffer is too small can leave the message where it is.
 * 0 and *cell, -EAGAIN when empty. */
static inline int lmn__chan_peek(struct lmn__channel *ch, struct ck_ring_buffer *databuf,
				 const struct lmn__layout *l, uint32_t *cell)
{
	unsigned int c, p;
	uintptr_t v;

	if (!lmn__ring_sane(&ch->data, l->ring_size))
		return -EUCLEAN;
	c = ck_pr_load_uint(&ch->data.c_head);
	p = ck_pr_load_uint(&ch->data.p_tail);
	if (c == p)
		return -EAGAIN;
	/* Orders the tail load above before the slot load below, pairing with
	 * the producer's store fence in ck_ring_enqueue_spsc. */
	ck_pr_fence_load();
	if (p - c > l->ring_size)
		return -EUCLEAN;
	v = (uintptr_t)ck_pr_load_ptr(&databuf[c & (l->ring_size - 1)].value);
	if (v >= l->ring_depth)
		return -EUCLEAN;
	*cell = (uint32_t)v;
	return 0;
}

/* Consumer: take the oldest published cell (the one lmn__chan_peek showed). */
static inline int lmn__chan_take(struct lmn__channel *ch, struct ck_ring_buffer *databuf,
				 const struct lmn__layout *l, uint32_t *cell)
{
	void *v;

	if (!lmn__ring_sane(&ch->data, l->ring_size))
		return -EUCLEAN;
	if (!ck_ring_dequeue_spsc(&ch->data, databuf, &v))
		return -EAGAIN;
	if ((uintptr_t)v >= l->ring_depth)
		return -EUCLEAN;
	*cell = (uint32_t)(uintptr_t)v;
	return 0;
}

/* Consumer: give a cell back to the producer for reuse. */
static inline int lmn__chan_give_back(struct lmn__channel *ch, struct ck_ring_buffer *freebuf,
				      const struct lmn__layout *l, uint32_t cell)
{
	if (!lmn__ring_sane(&ch->free, l->ring_size))
		return -EUCLEAN;
	if (!ck_ring_enqueue_spsc(&ch->free, freebuf, (void *)(uintptr_t)cell))
		return -EUCLEAN;
	return 0;
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
