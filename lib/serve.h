/* SPDX-License-Identifier: MIT */
/*
 * What the two halves of the serving side share: serve.c takes requests,
 * reply.c answers them and gives their cells back.  Bus lock held for all
 * of it.
 */
#ifndef LMN_LIB_SERVE_H
#define LMN_LIB_SERVE_H

#include "internal.h"

struct lmn__serve_end *lmn__serve_attach(struct lmn_bus *bus, struct lmn__conv *c, uint32_t idx,
					 uint32_t gen);

/* Our ends of conversation idx, tenant gen, taken up on first use.  NULL
 * when the counters in the segment are damaged.  Every take, reply and
 * release asks, so the usual answer is a check in line. */
static inline struct lmn__serve_end *lmn__serve_ends(struct lmn_bus *bus, struct lmn__conv *c,
						     uint32_t idx, uint32_t gen)
{
	struct lmn__serve_end *e = &bus->ends[idx];

	if (e->attached && e->gen == gen)
		return e;
	return lmn__serve_attach(bus, c, idx, gen);
}

void lmn__serve_flush_returns(struct lmn_bus *bus, struct lmn__conv *c, struct lmn__serve_end *e);
void lmn__serve_flush_if_drained(struct lmn_bus *bus, struct lmn__conv *c,
				 struct lmn__serve_end *e);
void lmn__serve_give_back(struct lmn_bus *bus, struct lmn__conv *c, struct lmn__serve_end *e,
			  uint32_t cell);

#endif
