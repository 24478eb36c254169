/* SPDX-License-Identifier: MIT */
/*
 * Copying a payload into or out of a cell.
 *
 * A cell's lines were last written or read on the other side's core, so
 * every line of the copy is a cross-core miss; what makes a copy fast is
 * how many of those misses are in flight at once.  memcpy issues its loads
 * far enough ahead only when they do not alias its recent stores: when the
 * source and the destination sit at nearly the same offset within a 4 KiB
 * page, each load waits for the store before it, and the misses come one
 * after the other.  A 4 KiB round trip took 1.3 us or 5.0 us depending
 * only on where the caller's buffer sat in its page (perf/README.md).
 * Prefetching a block's lines first puts its misses in flight together,
 * wherever the buffers sit.
 *
 * Who may call: anyone; it touches only the two ranges.
 */
#ifndef LMN_SHM_COPY_H
#define LMN_SHM_COPY_H

#include <stddef.h>
#include <string.h>

#include "layout.h"

/* Below this, a copy is a few lines, and the prefetches would cost more
 * than they hide. */
#define LMN__COPY_PREFETCH_MIN 256u
/* Prefetched and copied a block at a time: a block's misses fit in what a
 * core keeps in flight, and a large message does not push its own first
 * lines out before they are copied. */
#define LMN__COPY_BLOCK 4096u

static inline void lmn__payload_copy(void *dst, const void *src, size_t len)
{
	char *d = dst;
	const char *s = src;

	if (len < LMN__COPY_PREFETCH_MIN) {
		memcpy(d, s, len);
		return;
	}
	while (len) {
		size_t n = len < LMN__COPY_BLOCK ? len : LMN__COPY_BLOCK;

		for (size_t off = 0; off < n; off += LMN__CACHELINE) {
			__builtin_prefetch(s + off, 0);
			__builtin_prefetch(d + off, 1);
		}
		memcpy(d, s, n);
		d += n;
		s += n;
		len -= n;
	}
}

#endif
