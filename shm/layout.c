/* SPDX-License-Identifier: MIT */
/*
 * Where everything sits in the segment.  The same pure function computes the
 * layout when a bus is created and again when a process attaches, so an
 * attaching process never takes an offset from the segment on trust: it
 * recomputes every offset from the four sizes and refuses a header that
 * disagrees.
 */
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "layout.h"

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static int is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int lmn__layout_compute(struct lmn__layout *l, uint32_t participants, uint32_t conversations,
			uint32_t depth, uint32_t max_message)
{
	uint64_t off, cells;

	if (participants < 1 || participants > LMN__MAX_PARTICIPANTS)
		return -EINVAL;
	if (conversations < 1 || conversations > LMN__MAX_CONVERSATIONS)
		return -EINVAL;
	if (depth < 1 || depth > LMN__MAX_DEPTH || !is_pow2(depth))
		return -EINVAL;
	if (max_message < 1 || max_message > LMN__MAX_MESSAGE)
		return -EINVAL;

	memset(l, 0, sizeof(*l));
	l->participants = participants;
	l->conversations = conversations;
	l->ring_depth = depth;
	/* A ck_ring of n slots holds n - 1 entries; twice the depth holds
	 * every cell of the channel with room to spare. */
	l->ring_size = depth * 2;
	l->max_message = max_message;
	l->cell_size = (uint32_t)align_up(sizeof(struct lmn__envelope) + max_message,
					  LMN__CACHELINE);
	l->ready_leaf_words = (conversations + 63) / 64;
	l->ready_summary_words = (l->ready_leaf_words + 63) / 64;
	l->ready_top_words = (l->ready_summary_words + 63) / 64;

	off = align_up(sizeof(struct lmn__header), 4096);
	l->off_participants = off;
	off += (uint64_t)participants * sizeof(struct lmn__participant);
	off = align_up(off, LMN__CACHELINE);
	l->off_ready = off;
	l->ready_stride = align_up(((uint64_t)l->ready_top_words + l->ready_summary_words +
				    l->ready_leaf_words) * 8,
				   LMN__CACHELINE);
	off += (uint64_t)participants * l->ready_stride;
	off = align_up(off, 4096);
	l->off_convs = off;
	off += (uint64_t)conversations * sizeof(struct lmn__conv);
	off = align_up(off, LMN__CACHELINE);
	l->off_ring_buffers = off;
	l->ring_buffers_stride = align_up(2 * lmn__ringbufs_size(l->ring_size), LMN__CACHELINE);
	off += (uint64_t)conversations * l->ring_buffers_stride;
	off = align_up(off, LMN__CACHELINE);
	l->off_cell_states = off;
	l->cell_states_stride = align_up(depth, LMN__CACHELINE);
	off += (uint64_t)conversations * l->cell_states_stride;
	off = align_up(off, 4096);
	l->off_cells = off;
	cells = (uint64_t)conversations * 2 * depth;
	off += cells * l->cell_size;
	l->total_size = align_up(off, 4096);
	return 0;
}

void lmn__layout_init_header(const struct lmn__layout *l, void *base, uint32_t mode)
{
	struct lmn__header *h = base;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	h->magic = LMN__MAGIC;
	h->version = LMN__LAYOUT_VERSION;
	h->header_size = sizeof(*h);
	h->total_size = l->total_size;
	h->participants = l->participants;
	h->conversations = l->conversations;
	h->ring_depth = l->ring_depth;
	h->max_message = l->max_message;
	h->cell_size = l->cell_size;
	h->mode = mode;
	h->off_participants = l->off_participants;
	h->off_ready = l->off_ready;
	h->ready_stride = l->ready_stride;
	h->off_convs = l->off_convs;
	h->off_cells = l->off_cells;
	h->creator_pid = (int32_t)getpid();
	/* creator_start is filled in by the caller, who knows how to read it. */
	h->created_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	h->conv_hint = 0;
}

int lmn__layout_validate(struct lmn__layout *ret, const void *base, uint64_t mapped_size)
{
	const volatile struct lmn__header *h = base;
	struct lmn__layout l;
	int r;

	if (mapped_size < sizeof(struct lmn__header))
		return -EBADMSG;
	if (h->magic != LMN__MAGIC)
		return -EBADMSG;
	if (h->version != LMN__LAYOUT_VERSION || h->header_size != sizeof(struct lmn__header))
		return -EPROTO;
	r = lmn__layout_compute(&l, h->participants, h->conversations, h->ring_depth,
				h->max_message);
	if (r < 0)
		return -EUCLEAN;
	if (h->total_size != l.total_size || l.total_size != mapped_size ||
	    h->cell_size != l.cell_size || h->off_participants != l.off_participants ||
	    h->off_ready != l.off_ready || h->ready_stride != l.ready_stride ||
	    h->off_convs != l.off_convs || h->off_cells != l.off_cells)
		return -EUCLEAN;
	*ret = l;
	return 0;
}
