/* SPDX-License-Identifier: MIT */
/*
 * One direction of a conversation: cells travel from the producer to the
 * consumer through the data ring and come back through the free ring.  Both
 * are Concurrency Kit SPSC rings whose buffers live beside them in the
 * segment.  The free ring's carry cell indices; the data ring's carry
 * entries, each a message's header and its cell's index, tagged with the
 * entry's position (below).  This file is the data ring and the two ends;
 * the free ring's side of them is shm/freering.h.
 *
 * Who may call: the lmn__tx_* functions only from the channel's one
 * producer, the lmn__rx_* ones only from its one consumer (below).
 * lmn__chan_init() only while nobody else can reach the channel.
 *
 * Nothing read from the segment is trusted: the ring geometry is compared
 * with the process's own validated layout before each use, and every cell
 * index that comes out of a ring is bounds-checked, so a corrupted segment
 * yields -EUCLEAN or -EBADMSG, never an access outside the segment.
 */
#ifndef LMN_SHM_CHANNEL_H
#define LMN_SHM_CHANNEL_H

#include <errno.h>
#include <stdbool.h>
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

/*
 * A data ring entry's tag names its cell and the position it was published
 * at, plus one, so that a zeroed slot never passes for position 0.  The
 * consumer polls the tag at its own position and takes the entry once it
 * names that position: the entry's line, which also brings the message's
 * header, is then the only one a message's arrival needs besides its
 * payload, where reading the tail first would put one more cache miss in
 * line before it (perf/README.md).  The tail is still published after the
 * entry, for everyone else: a sleeper's re-check, a reaper, a monitor, and
 * the consumer's own check, when its slot shows nothing, that the tail
 * does not contradict it.  The free ring's entries are plain cell numbers:
 * its tail publishes a batch of them at once.
 *
 * A slot is not reused while its consumer may still read it: the position
 * ring_size on needs ring_size more cells published, and the ring has half
 * as many cells, none of which come back before the consumer moves past.
 */
_Static_assert(sizeof(struct ck_ring_buffer) == sizeof(uint64_t), "ring slots hold 64 bits");

static inline struct lmn__entry *lmn__entry_of(struct lmn__entry *buf, uint32_t size,
					       uint32_t pos)
{
	return &buf[pos & (size - 1)];
}
static inline uint64_t *lmn__slot(struct lmn__entry *buf, uint32_t size, uint32_t pos)
{
	return &lmn__entry_of(buf, size, pos)->tag;
}
static inline uint64_t lmn__entry(uint32_t pos, uint32_t cell)
{
	return (uint64_t)(pos + 1) << 32 | cell;
}
static inline int lmn__entry_at(uint64_t v, uint32_t pos)
{
	return (uint32_t)(v >> 32) == pos + 1;
}
static inline uint32_t lmn__entry_cell(uint64_t v)
{
	return (uint32_t)v;
}
/* Does the slot of position pos hold pos's entry?  *v gets its tag. */
static inline int lmn__published(struct lmn__entry *buf, uint32_t size, uint32_t pos,
				 uint64_t *v)
{
	*v = ck_pr_load_64(lmn__slot(buf, size, pos));
	return lmn__entry_at(*v, pos);
}
/* What a data tail p says to a consumer at c: 0 nothing beyond c, 1 more
 * published, -EUCLEAN damage.  The tail may trail the consumer by one:
 * the producer stores an entry before the tail that counts it, and the
 * consumer may have taken the entry in between. */
static inline int lmn__tail_says(uint32_t p, uint32_t c, uint32_t size)
{
	if (p == c || p == c - 1)
		return 0;
	return p - c < size ? 1 : -EUCLEAN;
}

/* Set up an empty channel whose free ring holds every cell.  The data
 * ring's slots are cleared: the counters start again at 0, and an entry a
 * previous tenant left at the same position would pass for a new one. */
static inline void lmn__chan_init(struct lmn__channel *ch, struct lmn__entry *databuf,
				  struct ck_ring_buffer *freebuf, uint32_t depth, uint32_t size)
{
	ck_ring_init(&ch->data, size);
	ck_ring_init(&ch->free, size);
	for (uint32_t i = 0; i < size; i++)
		ck_pr_store_64(lmn__slot(databuf, size, i), 0);
	for (uint32_t i = 0; i < depth; i++)
		(void)lmn__ring_put(&ch->free, freebuf, size, i);
	/* The in-order mark (below) starts after the cells put here. */
	ck_pr_store_uint(&ch->free.p_head, depth);
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
#define LMN__TX_AHEAD 8u /* one cache line of free ring slots */
#define LMN__HIST_DEPTH 8u /* rings this deep or less compute free cells */

/* What an end remembers of the cells at the last depth free positions
 * (taken, by a producer; given back, by a consumer), by position mod
 * depth, for rings of up to LMN__HIST_DEPTH cells: valid from free
 * position `from` on (shm/freering.h). */
struct lmn__free_hist {
	uint16_t cell[LMN__HIST_DEPTH];
	uint32_t from;
};

struct lmn__tx {
	uint32_t data_p; /* next data slot to fill: data.p_tail */
	uint32_t free_c; /* next free slot to take: free.c_head */
	uint32_t free_p; /* free.p_tail as last read */
	uint32_t free_m; /* free.p_head (the in-order mark, below) as last read */
	/* The cells of free slots free_c, free_c + 1, ... read ahead: the
	 * consumer writes each slot just before it returns the cell, so
	 * reading them one per reserve would miss once per message, and
	 * reading the returned ones together misses once per line.  They
	 * stay in the ring until taken (free_c moves one by one), so an end
	 * that dies with some read ahead loses none of them. */
	uint16_t ahead[LMN__TX_AHEAD];
	uint32_t ahead_i, ahead_n;
	struct lmn__free_hist hist; /* the cells taken */
};
_Static_assert(LMN__MAX_DEPTH <= UINT16_MAX + 1u, "a cell number fits in ahead[]");

struct lmn__rx {
	uint32_t data_c;   /* next data slot to take: data.c_head */
	uint32_t free_p;   /* next free slot to fill */
	uint32_t free_pub; /* free.p_tail as last stored */
	uint32_t free_m;   /* the in-order mark (below), free.p_head once flushed */
	uint32_t skew;     /* free position minus data position of a cell (below) */
	struct lmn__free_hist hist; /* the cells given back */
};

/*
 * Guessing the next cell.  The producer takes free cells in the order the
 * consumer returned them and publishes each in the next data slot, so the
 * cell of data position c is the one the consumer itself wrote at free
 * position c + skew, where skew is 0 unless a producer died between a take
 * and its publication.  The guess costs a load of the consumer's own line.
 *
 * Why guess at all: the entry names the cell, so the loads of the cell
 * depend on the entry's, and its miss follows the entry's one after the
 * other.  Given a guess that the CPU takes through a predicted branch,
 * those loads start before the entry's value is known and the two misses
 * overlap: in a model of the channel's lines, 197 -> 125 ns round trip, the
 * raw ping-pong 112 (perf/README.md).  The value used is always the
 * entry's; the guess only steers what the CPU does meanwhile, and the
 * fence between the entry's load and the cell's still orders them where
 * the memory model needs it.
 */
/* The free ring's slot at position pos, as the consumer wrote it (bounds
 * are for the caller to check). */
static inline uint32_t lmn__free_slot(struct ck_ring_buffer *freebuf, uint32_t size, uint32_t pos)
{
	return (uint32_t)(uintptr_t)ck_pr_load_ptr(&freebuf[pos & (size - 1)].value);
}

/* The free ring's buffer of the channel whose data ring buffer is databuf:
 * it follows it (lmn__freebuf). */
static inline struct ck_ring_buffer *lmn__freebuf_of(struct lmn__entry *databuf, uint32_t size)
{
	return (struct ck_ring_buffer *)(databuf + size);
}

static inline uint32_t lmn__rx_guess(const struct lmn__rx *rx, struct lmn__entry *databuf,
				     uint32_t size)
{
	return lmn__free_slot(lmn__freebuf_of(databuf, size), size, rx->data_c + rx->skew);
}

/* got, the cell the entry names, as the guess when they agree: the
 * compiler must not see that they are equal, or it would use got and keep
 * the dependency the guess is there to break. */
static inline uint32_t lmn__rx_as_guessed(uint32_t got, uint32_t guess)
{
	if (__builtin_expect(got == guess, 1)) {
		__asm__("" : "+r"(guess));
		return guess;
	}
	return got;
}

/* A wrong guess: find the free position that held got near the one we
 * guessed, and guess from there on.  Within fewer positions than there
 * are cells, each cell appears once in the free ring. */
static inline void lmn__rx_reguess(struct lmn__rx *rx, struct lmn__entry *databuf,
				   const struct lmn__layout *l, uint32_t got)
{
	struct ck_ring_buffer *freebuf = lmn__freebuf_of(databuf, l->ring_size);
	uint32_t span = l->ring_depth < 64 ? l->ring_depth : 64;
	uint32_t at = rx->data_c + rx->skew;

	for (uint32_t k = 1; k < span; k++) {
		if (lmn__free_slot(freebuf, l->ring_size, at + k) == got) {
			rx->skew += k;
			return;
		}
		if (lmn__free_slot(freebuf, l->ring_size, at - k) == got) {
			rx->skew -= k;
			return;
		}
	}
}

/* Take up the producer's end from the segment (a new channel, or one whose
 * producer was replaced).  -EUCLEAN if the counters are damaged. */
static inline int lmn__tx_attach(struct lmn__tx *tx, struct lmn__channel *ch,
				 struct lmn__entry *databuf, uint32_t size)
{
	tx->data_p = ck_pr_load_uint(&ch->data.p_tail);
	tx->free_c = ck_pr_load_uint(&ch->free.c_head);
	tx->free_p = ck_pr_load_uint(&ch->free.p_tail);
	tx->ahead_i = tx->ahead_n = 0;
	/* What we remember of the cells taken starts here (below). */
	tx->hist.from = tx->free_c + size / 2;
	/* Orders the counter loads before any load of the slots they cover,
	 * and the tail's before the mark's, as in lmn__tx_reserve. */
	ck_pr_fence_load();
	tx->free_m = ck_pr_load_uint(&ch->free.p_head);
	/* A producer that died between an entry and the tail that counts it
	 * published that entry all the same: the consumer may have taken it
	 * already.  Start after it (after each, if producers died so in a
	 * row), or the next entry would land behind the consumer and never be
	 * seen; and count them, so that the tail does not trail further. */
	for (uint32_t i = 0; i < size; i++) {
		uint64_t v;

		if (!lmn__published(databuf, size, tx->data_p, &v))
			break;
		tx->data_p++;
		ck_pr_store_uint(&ch->data.p_tail, tx->data_p);
	}
	return tx->free_p - tx->free_c < size ? 0 : -EUCLEAN;
}

/* The same for the consumer's end. */
static inline int lmn__rx_attach(struct lmn__rx *rx, struct lmn__channel *ch, uint32_t size)
{
	uint32_t p;

	rx->data_c = ck_pr_load_uint(&ch->data.c_head);
	p = ck_pr_load_uint(&ch->data.p_tail);
	rx->free_p = rx->free_pub = ck_pr_load_uint(&ch->free.p_tail);
	/* The mark is not read back: what we remember of the cells given
	 * back starts here, and no period is claimed before it is full.  A
	 * mark stored by a consumer that died before its tail lies at most
	 * depth positions on, so this one does not move back. */
	rx->hist.from = rx->free_p + size / 2;
	rx->free_m = rx->hist.from;
	rx->skew = 0;
	/* Orders the counter loads before any load of the slots they cover. */
	ck_pr_fence_load();
	return lmn__tail_says(p, rx->data_c, size) < 0 ? -EUCLEAN : 0;
}

/* Producer: hand a filled cell to the consumer, with its header: id,
 * correlation and payload length.  The data ring holds more than there are
 * cells, so it cannot be full, and the consumer's head is never read. */
static inline void lmn__tx_publish(struct lmn__tx *tx, struct lmn__channel *ch,
				  struct lmn__entry *databuf, const struct lmn__layout *l,
				  uint32_t cell, uint64_t id, uint64_t correlation, uint32_t length)
{
	struct lmn__entry *e = lmn__entry_of(databuf, l->ring_size, tx->data_p);

	ck_pr_store_64(&e->id, id);
	ck_pr_store_64(&e->correlation, correlation);
	ck_pr_store_32(&e->length, length);
	ck_pr_store_32(&e->flags, 0);
	/* Release: orders the cell, filled before, and the header above
	 * before the tag that hands them to the consumer polling it. */
	ck_pr_fence_store();
	ck_pr_store_64(&e->tag, lmn__entry(tx->data_p, cell));
	/* Orders the entry before the tail, which others read as the
	 * publication (lmn__chan_has_data, lmn__rx_any's check). */
	ck_pr_fence_store();
	tx->data_p++;
	ck_pr_store_uint(&ch->data.p_tail, tx->data_p);
}

/* Consumer: move past the oldest entry, which lmn__rx_peek() found. */
static inline void lmn__rx_advance(struct lmn__rx *rx, struct lmn__channel *ch)
{
	uint32_t c = rx->data_c + 1;

	/* Atomic: lmn__rx_ready() may read it from another thread. */
	ck_pr_store_32(&rx->data_c, c);
	/* Orders the reads of the slot (and of the cell it named) before the
	 * head store that lets the producer reuse the slot. */
	ck_pr_fence_load_store();
	ck_pr_store_uint(&ch->data.c_head, c);
}

/* Consumer: has the oldest entry arrived?  Looks at its slot only, for a
 * polling loop; a damaged slot reads as nothing here, and the careful look
 * (lmn__rx_any, lmn__rx_peek) that the caller makes before it sleeps or
 * gives up reports it.  Callable from another thread of the consumer's
 * process, as a hint. */
static inline int lmn__rx_ready(const struct lmn__rx *rx, struct lmn__entry *databuf,
				uint32_t size)
{
	uint64_t v;

	return lmn__published(databuf, size, ck_pr_load_32((uint32_t *)&rx->data_c), &v);
}

/* Consumer: lmn__rx_ready(), and when the entry is there, start pulling
 * the first line of its cell's payload over from the producer's core.  For
 * a polling loop: the cell's miss then overlaps the way from the poll to
 * the take, instead of following it.  The cell number is only
 * bounds-checked, as a prefetch needs.  cells: cell 0 of the channel. */
static inline int lmn__rx_ready_pull(const struct lmn__rx *rx, struct lmn__entry *databuf,
				     const struct lmn__layout *l, char *cells)
{
	uint32_t c = ck_pr_load_32((uint32_t *)&rx->data_c), got;
	uint64_t v;

	if (!lmn__published(databuf, l->ring_size, c, &v))
		return 0;
	got = lmn__entry_cell(v);
	if (got < l->ring_depth)
		__builtin_prefetch(lmn__payload_in(
			cells, l, lmn__rx_as_guessed(got, lmn__rx_guess(rx, databuf, l->ring_size))));
	return 1;
}

/* Consumer: the oldest entry.  1 and *entry, 0 when nothing is published,
 * -EUCLEAN when the tail is damaged (left as it is: reported at each look
 * until it is repaired), -EBADMSG when the entry is.
 *
 * Only a careful look reads the tail when the slot shows nothing, to tell
 * an empty channel from a damaged entry.  The tail's line is the
 * producer's, written at every message: a consumer that looks once more
 * before it spins, which is every request-reply round, would miss on it
 * each time, and make the producer's next store of it miss as well.  So
 * the first look of a call is quick, and whatever looks again before
 * sleeping or giving up looks carefully. */
static inline int lmn__rx_look(const struct lmn__rx *rx, struct lmn__channel *ch,
			       struct lmn__entry *databuf, const struct lmn__layout *l,
			       bool careful, uint64_t *entry)
{
	uint64_t v;
	int r;

	if (!lmn__published(databuf, l->ring_size, rx->data_c, &v)) {
		if (!careful)
			return 0;
		/* Nothing at our position, which the tail must not deny. */
		r = lmn__tail_says(ck_pr_load_uint(&ch->data.p_tail), rx->data_c, l->ring_size);
		if (r <= 0)
			return r;
		/* Orders the tail load before the second look at the slot,
		 * pairing with the store fence between them in
		 * lmn__tx_publish: a tail past us means our entry is there. */
		ck_pr_fence_load();
		if (!lmn__published(databuf, l->ring_size, rx->data_c, &v))
			return -EBADMSG;
	}
	/* Orders the tag load before the loads of the header beside it and
	 * of the cell it names, pairing with the store fence before the tag
	 * in lmn__tx_publish. */
	ck_pr_fence_load();
	if (lmn__entry_cell(v) >= l->ring_depth)
		return -EBADMSG;
	*entry = v;
	return 1;
}

/* Consumer: is anything published and not taken, or is the channel
 * damaged?  1 yes, 0 no, negative for damage. */
static inline int lmn__rx_any(const struct lmn__rx *rx, struct lmn__channel *ch,
			      struct lmn__entry *databuf, const struct lmn__layout *l)
{
	uint64_t v;
	int r = lmn__rx_look(rx, ch, databuf, l, true, &v);

	return r == -EBADMSG ? -EUCLEAN : r;
}

/* Consumer: look at the oldest published cell without taking it, so that a
 * receive whose buffer is too small can leave the message where it is.
 * 0, *cell and *entry (its header, to be read before lmn__rx_advance()
 * lets the slot go; nothing in it is checked), -EAGAIN when empty,
 * -EUCLEAN when damaged: a damaged tail is left as it is (see lmn__rx_look,
 * and careful there), a damaged entry is dropped so that it cannot block
 * the channel for good. */
static inline int lmn__rx_peek(struct lmn__rx *rx, struct lmn__channel *ch,
			       struct lmn__entry *databuf, const struct lmn__layout *l,
			       bool careful, uint32_t *cell, const struct lmn__entry **entry)
{
	uint32_t got, guess;
	uint64_t v;
	int r = lmn__rx_look(rx, ch, databuf, l, careful, &v);

	if (r == 0)
		return -EAGAIN;
	if (r == -EBADMSG) {
		lmn__rx_advance(rx, ch);
		return -EUCLEAN;
	}
	if (r < 0)
		return r;
	got = lmn__entry_cell(v);
	guess = lmn__rx_guess(rx, databuf, l->ring_size);
	if (got != guess)
		lmn__rx_reguess(rx, databuf, l, got);
	*cell = lmn__rx_as_guessed(got, guess);
	*entry = lmn__entry_of(databuf, l->ring_size, rx->data_c);
	return 0;
}

/* Consumer: the cell after the oldest, if its entry is there already.  A
 * hint for prefetching, so only bounds-checked.  -EAGAIN when not. */
static inline int lmn__rx_peek_next(const struct lmn__rx *rx, struct lmn__entry *databuf,
				    const struct lmn__layout *l, uint32_t *cell)
{
	uint64_t v;

	if (!lmn__published(databuf, l->ring_size, rx->data_c + 1, &v) ||
	    lmn__entry_cell(v) >= l->ring_depth)
		return -EAGAIN;
	*cell = lmn__entry_cell(v);
	return 0;
}

/* Either side: is anything published and not yet taken, or are the
 * counters damaged (which the consumer's careful look then reports)? */
static inline int lmn__chan_has_data(const struct lmn__channel *ch, uint32_t size)
{
	unsigned int c = ck_pr_load_uint(&ch->data.c_head);

	return lmn__tail_says(ck_pr_load_uint(&ch->data.p_tail), c, size) != 0;
}

#endif
