/* SPDX-License-Identifier: MIT */
/*
 * lmn_bus_stat(): the usage of a bus, read without joining and without
 * writing, so that tools and tests can see that nothing leaked.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ck_pr.h>

#include "internal.h"

/* Cells of a channel not in its free ring: published, or held. */
uint32_t lmn__cells_in_use(const struct lmn__channel *ch, uint32_t depth)
{
	uint32_t free_cells = ck_pr_load_uint(&ch->free.p_tail) - ck_pr_load_uint(&ch->free.c_head);

	return free_cells > depth ? depth : depth - free_cells;
}

void lmn__stat_fill(const struct lmn__layout *lp, void *base, struct lmn_bus_stat *ret)
{
	const struct lmn__layout l = *lp;
	struct lmn__header *h = base;
	struct lmn_bus_stat s;

	memset(&s, 0, sizeof(s));
	s.size = l.total_size;
	s.participants_total = l.participants;
	s.conversations_total = l.conversations;
	s.cells_total = l.conversations * 2 * l.ring_depth;
	s.max_message = l.max_message;
	s.ring_depth = l.ring_depth;
	s.creator_pid = ck_pr_load_32((uint32_t *)&h->creator_pid);
	s.created_ns = ck_pr_load_64(&h->created_ns);
	/* Only the flags this build knows: the rest is damage. */
	s.flags = ck_pr_load_32(&h->flags) & LMN_BUS_KEEP;
	/* The library's own test (start time, and exited counts as dead even
	 * before the parent reaps it), not kill(2), which a zombie passes. */
	s.creator_alive = lmn__proc_alive(s.creator_pid, ck_pr_load_64(&h->creator_start), 0, NULL);
	for (uint32_t i = 0; i < l.participants; i++) {
		struct lmn__participant *p = lmn__part(&l, base, i);
		uint64_t w = ck_pr_load_64(&p->slot);
		uint32_t state = lmn__slot_state(w);

		s.leaves += lmn__value_of(ck_pr_load_64(&p->leaves));
		s.crashes += lmn__value_of(ck_pr_load_64(&p->crashes));
		if (state == LMN__SLOT_FREE)
			continue;
		s.participants_used++;
		if (state == LMN__SLOT_CLAIMED
			    ? !lmn__proc_alive(lmn__slot_pid(w), 0, 0, NULL)
			    : !lmn__proc_alive(p->pid, p->start_time, p->pidfs_ino, NULL))
			s.participants_dead++;
	}
	for (uint32_t i = 0; i < l.conversations; i++) {
		struct lmn__conv *c = lmn__conv_at(&l, base, i);
		uint32_t state = lmn__slot_state(ck_pr_load_64(&c->slot));

		if (state == LMN__SLOT_FREE)
			continue;
		s.conversations_used++;
		if (state != LMN__SLOT_LIVE)
			continue;
		s.cells_used += lmn__cells_in_use(&c->cmd, l.ring_depth);
		s.cells_used += lmn__cells_in_use(&c->inbox, l.ring_depth);
	}
	*ret = s;
}

LMN_EXPORT int lmn_bus_stat(const char *name, struct lmn_bus_stat *ret)
{
	struct lmn__layout l;
	void *base;
	int r;

	r = lmn__check_name(name);
	if (r < 0)
		return r;
	if (!ret)
		return -EINVAL;
	r = lmn__bus_map(name, false, &base, &l);
	if (r < 0)
		return r;
	lmn__stat_fill(&l, base, ret);
	munmap(base, l.total_size);
	return 0;
}
