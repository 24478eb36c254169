/* SPDX-License-Identifier: MIT */
/*
 * The shared segment: everything here lives in memory that other processes
 * write.  Only offsets, indices and counters are stored, because every
 * process maps the segment at its own address.  Nothing read back from it is
 * trusted: lmn__layout_validate() checks the header once at attach, and every
 * index or length read later is checked where it is used.
 */
#ifndef LMN_SHM_LAYOUT_H
#define LMN_SHM_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include <ck_ring.h>

#define LMN__MAGIC 0x6c696d696e616c31ull /* "liminal1" */
#define LMN__LAYOUT_VERSION 8u /* 8: ring entries carry the header, free.p_head a mark */
#define LMN__CACHELINE 64u
#define LMN__NAME_SIZE 64u
#define LMN__SERVICES 8u

#define LMN__MAX_PARTICIPANTS 4096u
#define LMN__MAX_CONVERSATIONS (1u << 20)
#define LMN__MAX_DEPTH 4096u
#define LMN__MAX_MESSAGE (16u << 20)

/* Slot states of participant and conversation entries.  The state and the
 * generation share one 64-bit word so that one CAS claims a slot and bumps
 * its generation together: a handle that remembers (index, generation) can
 * never be mistaken for a later tenant of the same slot. */
enum {
	LMN__SLOT_FREE = 0,
	LMN__SLOT_CLAIMED = 1, /* being set up by its claimer, not yet visible */
	LMN__SLOT_LIVE = 2,
	LMN__SLOT_CLOSING = 3, /* being torn down */
	LMN__SLOT_JOINING = 4, /* participants: name published, not yet settled */
	LMN__SLOT_DEAD = 5,    /* participants: death claimed, being reclaimed */
};

/* A claim also records the claimer's pid in the word (bits 8..31; pids
 * stay below 2^22), so that a claimer killed before it wrote anything else
 * can still be found dead. */
static inline uint64_t lmn__slot_word(uint32_t gen, uint32_t state)
{
	return ((uint64_t)gen << 32) | state;
}
static inline uint64_t lmn__slot_claim(uint32_t gen, int32_t pid)
{
	return ((uint64_t)gen << 32) | ((uint32_t)pid & 0xffffffu) << 8 | LMN__SLOT_CLAIMED;
}
/* A death claim records the reclaimer the same way, so that a reclaimer
 * killed half-way can be taken over. */
static inline uint64_t lmn__slot_dead(uint32_t gen, int32_t pid)
{
	return ((uint64_t)gen << 32) | ((uint32_t)pid & 0xffffffu) << 8 | LMN__SLOT_DEAD;
}
static inline uint32_t lmn__slot_gen(uint64_t w) { return (uint32_t)(w >> 32); }
static inline uint32_t lmn__slot_state(uint64_t w) { return (uint32_t)w & 0xffu; }
static inline int32_t lmn__slot_pid(uint64_t w) { return (int32_t)(((uint32_t)w >> 8) & 0xffffffu); }
/* Generation-tagged counters of a conversation: generation in the upper
 * half, the value in the lower. */
static inline uint64_t lmn__gen_word(uint32_t gen, uint32_t v) { return ((uint64_t)gen << 32) | v; }
static inline uint32_t lmn__gen_of(uint64_t w) { return (uint32_t)(w >> 32); }
static inline uint32_t lmn__value_of(uint64_t w) { return (uint32_t)w; }

/* Futex words carry a sequence in the upper 31 bits and, in bit 0, "someone
 * sleeps on this word".  A producer pays for a wake system call only when that
 * bit is set. */
#define LMN__WORD_SLEEPER 1u
#define LMN__WORD_SEQ 2u

struct lmn__header {
	uint64_t magic;
	uint32_t version;
	uint32_t header_size;
	uint64_t total_size;
	uint32_t participants;
	uint32_t conversations;
	uint32_t ring_depth;
	uint32_t max_message;
	uint32_t cell_size;
	uint32_t mode;
	uint64_t off_participants;
	uint64_t off_ready;
	uint64_t ready_stride;
	uint64_t off_convs;
	uint64_t off_cells;
	int32_t creator_pid;
	uint32_t flags; /* LMN_BUS_KEEP, or 0: lmn_bus_config.flags */
	uint64_t created_ns; /* CLOCK_REALTIME */
	uint64_t creator_start; /* field 22 of the creator's /proc/PID/stat */
	/* Where to start looking for a free conversation slot.  Only a hint:
	 * any value is safe, it is reduced modulo the table size. */
	uint32_t conv_hint __attribute__((aligned(LMN__CACHELINE)));
	/* Bumped (and woken) at every join, leave and death: exit watches and
	 * monitors (liminal watch) sleep on it. */
	uint32_t roster_word __attribute__((aligned(LMN__CACHELINE)));
	/* Exit log: the last LMN__EXIT_LOG exits, so that a watch set after an
	 * exit still hears of it.  Writers take a ticket with fetch-and-add;
	 * each record's seq is written last (ticket + 1), so a torn record
	 * left by a writer that died is skipped, never half-read. */
	uint64_t exit_head __attribute__((aligned(LMN__CACHELINE)));
	struct lmn__exit_rec {
		uint64_t seq;
		uint64_t exit_ns; /* CLOCK_REALTIME */
		int32_t pid;
		uint32_t idx;
		uint32_t gen;
		uint32_t crashed;
		char name[LMN__NAME_SIZE];
	} exits[64];
};

#define LMN__EXIT_LOG 64u
#define LMN__REF_INITIATOR 1u
#define LMN__REF_SERVER 2u
#define LMN__CRASH_RECORDS 4u

/* One participant.  Written by its owner, except the state word, which
 * others read and (for reclamation) may CAS. */
struct lmn__participant {
	uint64_t slot; /* gen | state */
	int32_t pid;
	uint32_t health;     /* enum lmn_health */
	uint64_t start_time; /* field 22 of /proc/PID/stat */
	uint64_t pidfs_ino;  /* inode of its pidfd on pidfs kernels, else 0 */
	uint64_t joined_ns;
	uint64_t exit_ns;
	/* Exits of this slot's tenants, for lmn_bus_stat(): the generation of
	 * the last tenant counted in the upper half, how many in the lower.
	 * One CAS both counts an exit and marks it counted, so a leaver killed
	 * between logging its exit and counting it, and whoever reaps it, count
	 * it exactly once.  Never reset by a join. */
	uint64_t leaves;
	uint64_t crashes;
	char name[LMN__NAME_SIZE];
	char services[LMN__SERVICES][LMN__NAME_SIZE];
	/* Conversations served now; opens pick the live server with the
	 * fewest.  Changed by openers (increment) and closers (decrement). */
	uint32_t serving __attribute__((aligned(LMN__CACHELINE)));
	/* Requests this tenant sent as an initiator, and took as a server,
	 * since it joined: for liminal top, whose totals must not fall when a
	 * conversation ends.  Written only by the tenant, one add per message,
	 * in a line that others write only when they open or close. */
	uint64_t sent;
	uint64_t served;
	/* The doorbell: a server blocked in lmn_next() sleeps on it; a sender
	 * rings it after it marked its conversation ready. */
	uint32_t doorbell __attribute__((aligned(LMN__CACHELINE)));
	int32_t doorbell_cpu; /* CPU the server last waited on, a spin hint */
} __attribute__((aligned(LMN__CACHELINE)));

/* States of a command cell, written by the conversation's server only (and
 * by whoever reclaims a dead server, once it is dead). */
enum {
	LMN__CELL_IDLE = 0,       /* free, or in the ring */
	LMN__CELL_HELD = 1,       /* taken by the server, not answered */
	LMN__CELL_ANSWERED = 2,   /* taken and answered, not yet released */
	LMN__CELL_REDELIVER = 3,  /* its server died unanswered: deliver again */
	LMN__CELL_RETURNING = 4,  /* released, in the free ring but not yet
				   * published there: a reaper gives it back */
};

/* One direction of a conversation.  Cells are handed from producer to
 * consumer through the data ring and back through the free ring; both rings
 * are single-producer single-consumer, so a process killed at any
 * instruction loses at most the cell it was filling or holding.  A ring
 * carries cell indices, never pointers. */
struct lmn__channel {
	struct ck_ring data;    /* producer -> consumer: filled cells */
	struct ck_ring free;    /* consumer -> producer: cells to reuse */
	/* The consumer sleeps on data_word when data is empty. */
	uint32_t data_word __attribute__((aligned(LMN__CACHELINE)));
	/* The producer sleeps on free_word when every cell is in use. */
	uint32_t free_word __attribute__((aligned(LMN__CACHELINE)));
	int32_t producer_cpu;
} __attribute__((aligned(LMN__CACHELINE)));

/*
 * One data ring slot: a message's header, travelling in the ring rather
 * than in its cell.  The consumer polls the slot for the message anyway,
 * so the header comes with that line; a cell then holds only payload the
 * producer writes, and a 64-byte message moves two lines from core to core
 * instead of three (perf/README.md).  The producer stores the other fields,
 * then tag last: (position + 1) << 32 | cell, so that a zeroed slot never
 * passes for position 0 (shm/channel.h).
 */
struct lmn__entry {
	uint64_t tag;
	uint64_t id;          /* per channel sequence number, from 1 */
	uint64_t correlation; /* for a reply: the id of the request */
	uint32_t length;      /* payload bytes in the cell */
	uint32_t flags;       /* zero */
};
_Static_assert(sizeof(struct lmn__entry) == 32, "two entries per cache line");

/* The header line at the start of every cell.  A command cell's is written
 * by the server that takes it, from the entry, before it moves past the
 * entry: the request's id and length then stay with the cell while it is
 * held, for a redelivery, after the entry's slot is reused.  An inbox
 * cell's is not used. */
struct lmn__envelope {
	uint64_t id;          /* per channel sequence number, from 1 */
	uint32_t length;      /* payload bytes that follow the header */
	uint32_t pad[13];
};
_Static_assert(sizeof(struct lmn__envelope) == 64, "envelope is one cache line");

/* Health values mirror enum lmn_health. */
enum {
	LMN__HEALTH_NONE = 0,
	LMN__HEALTH_ALIVE = 1,
	LMN__HEALTH_LEFT = 2,
	LMN__HEALTH_CRASHED = 3,
};

/* Conversation phases mirror enum lmn_phase. */
enum {
	LMN__PHASE_CREATED = 1,
	LMN__PHASE_ACTIVE = 2,
	LMN__PHASE_COMPLETING = 3,
	LMN__PHASE_CLOSED = 4,
	LMN__PHASE_FAILED = 5,
};

struct lmn__conv {
	uint64_t slot; /* gen | state */
	uint32_t phase;
	uint32_t policy;
	uint32_t initiator;     /* participant index */
	uint32_t initiator_gen; /* its generation when the conversation opened */
	uint32_t server;        /* participant index, UINT32_MAX: buffering */
	uint32_t server_gen;
	uint64_t opened_ns;   /* CLOCK_REALTIME */
	uint64_t deadline_ns; /* CLOCK_MONOTONIC, 0: none */
	/* References, one bit per side: LMN__REF_INITIATOR, LMN__REF_SERVER.
	 * Whoever clears the last bit returns the slot to the free state.  The
	 * upper half holds the generation, so that a late drop meant for an
	 * earlier tenant of the slot fails its CAS instead of landing here.
	 * Bits rather than a count: a side whose part ended (its gone flag
	 * set) but whose process died before it dropped its reference can be
	 * told apart, and the reaper drops it. */
	uint64_t refs;
	/* Generation in the upper half, and in the lower a flag set once (CAS
	 * (gen, 0) -> (gen, 1)) by whoever ends the server's part: the server
	 * when it is done or leaves, or an opener that finds it gone.  Makes
	 * the server's reference drop exactly once, for this tenant only. */
	uint64_t server_gone;
	uint32_t server_health; /* enum lmn_health once gone */
	uint64_t server_exit_ns;
	/* The same for the initiator: (gen, 1) once its part ended. */
	uint64_t initiator_gone;
	uint32_t initiator_health;
	uint32_t fail_errno;    /* why it failed: ECONNRESET or EHOSTUNREACH */
	uint64_t initiator_exit_ns;
	int32_t initiator_pid;
	int32_t server_pid;
	char initiator_name[LMN__NAME_SIZE];
	char server_name[LMN__NAME_SIZE];
	char service[LMN__NAME_SIZE]; /* the service it was opened to, or "" */
	/* Crash records: ncrashes counts them all, crash[] keeps the first
	 * LMN__CRASH_RECORDS.  Written by whoever reclaims the death. */
	uint32_t ncrashes;
	uint32_t redeliver; /* command cells in state REDELIVER */
	struct lmn__crash_rec {
		char name[LMN__NAME_SIZE];
		int32_t pid;
		uint32_t action; /* enum lmn_crash_action */
		uint64_t exit_ns;
	} crash[4];
	/* Initiator-written counters. */
	uint64_t sent __attribute__((aligned(LMN__CACHELINE)));
	uint64_t received;
	/* Server-written state. */
	uint64_t served __attribute__((aligned(LMN__CACHELINE)));
	uint64_t replied;
	uint32_t server_held;     /* requests the server holds unreleased */
	uint32_t close_delivered; /* the CLOSED notice was handed out */
	uint32_t close_released;  /* and released */
	/* Set by the server while it polls this conversation's ring (it just
	 * took a request from it), cleared before it stops: a sender that
	 * sees it set skips the ready marks and the doorbell.  Store, fence,
	 * load on both sides, like the doorbell's sleeper bit. */
	uint32_t server_polling __attribute__((aligned(LMN__CACHELINE)));
	struct lmn__channel cmd;  /* initiator -> server */
	struct lmn__channel inbox; /* server -> initiator */
} __attribute__((aligned(LMN__CACHELINE)));

/* The process-local, validated description of a segment.  Every address the
 * library computes comes from here, never from the segment itself. */
struct lmn__layout {
	uint64_t total_size;
	uint32_t participants;
	uint32_t conversations;
	uint32_t ring_depth;
	uint32_t ring_size; /* ck_ring size: a ring of n slots holds n - 1 */
	uint32_t max_message;
	uint32_t cell_size;
	uint32_t ready_leaf_words;
	uint32_t ready_summary_words;
	uint32_t ready_top_words;
	uint64_t off_participants;
	uint64_t off_ready;
	uint64_t ready_stride;
	uint64_t off_convs;
	uint64_t off_ring_buffers; /* per conversation: 2 data, 2 free rings */
	uint64_t ring_buffers_stride;
	uint64_t off_cell_states; /* per conversation: ring_depth bytes */
	uint64_t cell_states_stride;
	uint64_t off_cells;
};

int lmn__layout_compute(struct lmn__layout *l, uint32_t participants, uint32_t conversations,
			uint32_t depth, uint32_t max_message);
void lmn__layout_init_header(const struct lmn__layout *l, void *base, uint32_t mode);
int lmn__layout_validate(struct lmn__layout *ret, const void *base, uint64_t mapped_size);

static inline struct lmn__header *lmn__hdr(void *base)
{
	return (struct lmn__header *)base;
}
static inline struct lmn__participant *lmn__part(const struct lmn__layout *l, void *base,
						uint32_t i)
{
	return (struct lmn__participant *)((char *)base + l->off_participants) + i;
}
static inline struct lmn__conv *lmn__conv_at(const struct lmn__layout *l, void *base, uint32_t i)
{
	return (struct lmn__conv *)((char *)base + l->off_convs) + i;
}
static inline uint64_t *lmn__ready(const struct lmn__layout *l, void *base, uint32_t part)
{
	return (uint64_t *)((char *)base + l->off_ready + (uint64_t)part * l->ready_stride);
}
/* Ring buffers of one direction (0 cmd, 1 inbox) of a conversation: the
 * data ring's ring_size entries, then the free ring's ring_size slots
 * (lmn__freebuf_of). */
static inline uint64_t lmn__ringbufs_size(uint32_t ring_size)
{
	uint64_t n = (uint64_t)ring_size * (sizeof(struct lmn__entry) + sizeof(struct ck_ring_buffer));

	return (n + LMN__CACHELINE - 1) & ~(uint64_t)(LMN__CACHELINE - 1);
}
static inline struct lmn__entry *lmn__databuf(const struct lmn__layout *l, void *base,
					      uint32_t conv, unsigned dir)
{
	return (struct lmn__entry *)((char *)base + l->off_ring_buffers +
				     (uint64_t)conv * l->ring_buffers_stride +
				     dir * lmn__ringbufs_size(l->ring_size));
}
static inline struct ck_ring_buffer *lmn__freebuf(const struct lmn__layout *l, void *base,
						  uint32_t conv, unsigned dir)
{
	return (struct ck_ring_buffer *)(lmn__databuf(l, base, conv, dir) + l->ring_size);
}
/* States of the command cells of a conversation. */
static inline uint8_t *lmn__cell_states(const struct lmn__layout *l, void *base, uint32_t conv)
{
	return (uint8_t *)base + l->off_cell_states + (uint64_t)conv * l->cell_states_stride;
}
/* Cells of one direction (0 cmd, 1 inbox) of a conversation. */
static inline char *lmn__cell(const struct lmn__layout *l, void *base, uint32_t conv,
			      unsigned dir, uint32_t cell)
{
	uint64_t idx = ((uint64_t)conv * 2 + dir) * l->ring_depth + cell;
	return (char *)base + l->off_cells + idx * l->cell_size;
}
/* The payload of a cell: after its header line. */
static inline char *lmn__payload(const struct lmn__layout *l, void *base, uint32_t conv,
				 unsigned dir, uint32_t cell)
{
	return lmn__cell(l, base, conv, dir, cell) + sizeof(struct lmn__envelope);
}

/* The addresses of one conversation's parts, as the functions above give
 * them, worked out once by a process that uses them on every message: the
 * arithmetic, a dozen instructions a use, lay on each message's path a few
 * times over (perf/README.md).  They depend only on the validated layout
 * and the slot's index, never on what the segment holds. */
struct lmn__conv_addrs {
	struct lmn__conv *conv;
	struct lmn__entry *databuf[2];     /* 0 cmd, 1 inbox */
	struct ck_ring_buffer *freebuf[2];
	char *cells[2];                    /* cell 0 of each direction */
	uint8_t *states;                   /* of the command cells */
};

static inline void lmn__conv_addrs_of(const struct lmn__layout *l, void *base, uint32_t conv,
				      struct lmn__conv_addrs *ret)
{
	ret->conv = lmn__conv_at(l, base, conv);
	for (unsigned dir = 0; dir < 2; dir++) {
		ret->databuf[dir] = lmn__databuf(l, base, conv, dir);
		ret->freebuf[dir] = lmn__freebuf(l, base, conv, dir);
		ret->cells[dir] = lmn__cell(l, base, conv, dir, 0);
	}
	ret->states = lmn__cell_states(l, base, conv);
}

/* Cell `cell`, and its payload, of the direction whose cell 0 is at cells. */
static inline char *lmn__cell_in(char *cells, const struct lmn__layout *l, uint32_t cell)
{
	return cells + (uint64_t)cell * l->cell_size;
}
static inline char *lmn__payload_in(char *cells, const struct lmn__layout *l, uint32_t cell)
{
	return lmn__cell_in(cells, l, cell) + sizeof(struct lmn__envelope);
}

static inline char *lmn__addrs_cell(const struct lmn__conv_addrs *a, const struct lmn__layout *l,
				    unsigned dir, uint32_t cell)
{
	return lmn__cell_in(a->cells[dir], l, cell);
}

static inline char *lmn__addrs_payload(const struct lmn__conv_addrs *a,
				       const struct lmn__layout *l, unsigned dir, uint32_t cell)
{
	return lmn__payload_in(a->cells[dir], l, cell);
}

#endif
