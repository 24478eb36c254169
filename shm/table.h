/* SPDX-License-Identifier: MIT */
/*
 * The participant and conversation tables: claiming and freeing slots.
 * Slots are claimed with one CAS on their state word, which also bumps the
 * generation, so no lock is ever held across processes.
 *
 * Who may call: anyone, concurrently.
 */
#ifndef LMN_SHM_TABLE_H
#define LMN_SHM_TABLE_H

#include <stdint.h>

#include "layout.h"


int lmn__part_claim(const struct lmn__layout *l, void *base, const char *name, int32_t pid,
		    uint64_t start_time, uint64_t pidfs_ino, uint32_t *ret_idx, uint32_t *ret_gen);
void lmn__part_begin_leave(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen);
void lmn__part_release(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen);
/* The live participant with exactly this name, or -ENOENT. */
int lmn__part_find(const struct lmn__layout *l, void *base, const char *name, uint32_t *ret_idx,
		   uint32_t *ret_gen);
/* The live server of service with the fewest open conversations. */
int lmn__part_find_server(const struct lmn__layout *l, void *base, const char *service,
			  uint32_t *ret_idx, uint32_t *ret_gen);
/* One conversation fewer for server (idx, gen), if it is still that tenant. */
void lmn__part_unserve(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen);
/* Is (idx, gen) still the live tenant of its slot? */
int lmn__part_live(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen);

int lmn__conv_claim(const struct lmn__layout *l, void *base, int32_t pid, uint32_t *ret_idx,
		    uint32_t *ret_gen);
/* Drop one side's reference (LMN__REF_*); idempotent; the last one frees
 * the slot.  Returns 1 if it did. */
int lmn__conv_unref(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen,
		    uint32_t side);
/* Free slot idx, live for tenant gen, whose references the caller saw all
 * dropped: the second half of the last drop, also for a dropper that died
 * between the two.  Returns 1 if it did. */
int lmn__conv_free_unreferenced(const struct lmn__layout *l, void *base, uint32_t idx,
				uint32_t gen);

/* Copy a name out of the segment, refusing one that is not terminated. */
int lmn__name_copy(char *dst, const char *shm_name);
int lmn__name_eq(const char *shm_name, const char *name);

#endif
