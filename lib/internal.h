/* SPDX-License-Identifier: MIT */
/*
 * The process side of liminal: handles, and the helpers shared by the files
 * of lib/.  Handles are process-local; only their indices and generations
 * point into the segment.
 */
#ifndef LMN_LIB_INTERNAL_H
#define LMN_LIB_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "liminal.h"
#include "lock.h"
#include "../shm/channel.h"
#include "../shm/copy.h"
#include "../shm/layout.h"

#define LMN__BUFFERING UINT32_MAX

struct lmn_bus {
	void *base;
	struct lmn__layout l;
	char name[LMN_NAME_MAX + 1];
	char self[LMN_NAME_MAX + 1];
	uint32_t self_idx;
	uint32_t self_gen;
	int32_t pid;
	uint32_t spin_ns;
	uint32_t spin_misses; /* spins in a row that found nothing (atomic) */
	uint32_t spin_skips;  /* waits that skipped their spin since (atomic) */
	int can_spin;           /* more than one CPU to run on (atomic) */
	struct lmn__lock lock;  /* guards everything below (lock.h) */
	struct lmn_conv *convs; /* open conversation handles, for leave */
	struct lmn_msg *msgs;   /* messages handed out and not released */
	/* Conversations taken from the ready bitmap and not yet drained: a
	 * FIFO of indices with a bitmap that keeps each in it at most once. */
	uint32_t *pending;
	uint64_t *queued;
	struct lmn__serve_end *ends; /* per conversation: our ends, as server */
	uint32_t return_batch;       /* command cells given back per flush */
	struct lmn_msg *spare_msgs; /* released handles kept for reuse */
	uint32_t n_spare;
	uint32_t pend_head, pend_len;
	uint32_t takes_unmarked; /* taken from the queue since the marks were read */
	int32_t last_peer_cpu;
	/* The conversation this server polls (see server_polling). */
	int hot;
	uint32_t hot_idx;
	uint32_t hot_gen;
	/* The conversation served last before lmn_next()'s previous sleep,
	 * and its count of requests served then (last_caller_word, serve.c). */
	uint32_t ahead_idx, ahead_gen;
	uint64_t ahead_served;
	/* Exit watches: their own lock, since the watch thread holds it while
	 * it looks at the segment. */
	pthread_mutex_t wlock;
	struct lmn_watch *watches;
	pthread_t watch_thread;
	int watch_thread_running;
	int watch_stop;
};

struct lmn_conv {
	struct lmn_bus *bus; /* NULL once the bus was left */
	uint32_t idx;
	uint32_t gen;
	bool buffering;  /* opened with no target: sends go to its own inbox
			  * (the server, which ROUTE_NEXT may change, is read
			  * from the segment) */
	uint64_t deadline_ns;
	uint64_t next_id;
	struct lmn__tx tx; /* our end of the command channel (of the inbox,
			    * when buffering); used by the one sending thread */
	struct lmn__rx rx; /* our end of the inbox; by the one receiving thread */
	uint64_t ahead_id; /* next_id when a sleep last woke the server ahead;
			    * by the one receiving thread */
	struct lmn__conv_addrs at; /* of slot idx */
	int closed;  /* set once by lmn_conv_close, read by other threads (atomic) */
	int closing; /* claimed by the one thread that records the final state */
	struct lmn_conv_info final; /* state as of the close */
	struct lmn_conv *prev, *next;
};

/* A server's own ends of a conversation it serves: it consumes the command
 * channel and produces the inbox.  Taken up from the segment the first time
 * this process serves the tenant gen, which may have been moved here from a
 * server that died.  Bus lock held for all use. */
struct lmn__serve_end {
	uint32_t gen;
	uint32_t attached;
	uint32_t watching; /* the sentinel watches this tenant's initiator */
	struct lmn__rx cmd;
	struct lmn__tx inbox;
	struct lmn__conv_addrs at; /* of the slot, once attached */
};

struct lmn_msg {
	struct lmn_bus *bus;
	uint32_t conv;
	uint32_t conv_gen;
	uint32_t cell;
	int kind;
	unsigned int flags;
	uint64_t id;
	uint32_t sender;
	uint32_t len;
	const void *data;
	int sender_known; /* sender_name filled in (lazily, by lmn_msg_sender) */
	struct lmn_msg *prev, *next;
	/* Last: lmn__msg_alloc() clears what comes before it, not this. */
	char sender_name[LMN_NAME_MAX + 1];
};

/* names.c */
int lmn__check_name(const char *name);
int lmn__bus_path(char *buf, size_t cap, const char *name, const char *prefix);
/* bus.c */
int lmn__bus_map(const char *name, bool writable, void **ret_base, struct lmn__layout *ret_l);
struct stat;
int lmn__bus_map_id(const char *name, bool writable, void **ret_base, struct lmn__layout *ret_l,
		    struct stat *ret_id);
/* lmn_bus_stat() of a mapped segment. */
void lmn__stat_fill(const struct lmn__layout *l, void *base, struct lmn_bus_stat *ret);
/* Cells of a channel not in its free ring: published, or held. */
uint32_t lmn__cells_in_use(const struct lmn__channel *ch, uint32_t depth);
uint64_t lmn__proc_start_time(pid_t pid);

/* How long a server sleeps on its doorbell before it looks at its marks
 * again, for a death nobody reaps (serve.c: sleep_on_doorbell). */
#define LMN__DOORBELL_LOOK_NS 2000000000ull

/* time */
static inline uint64_t lmn__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline uint64_t lmn__realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
/* The absolute CLOCK_MONOTONIC deadline of a call: the sooner of its own
 * timeout (-1: none, 0: do not wait) and the conversation's, 0 for none.
 * With passed, also whether it has passed already, from the same clock
 * read (none is made when there is no deadline). */
uint64_t lmn__deadline(int timeout_ms, uint64_t conv_deadline_ns, bool *passed);

/* A wait loop's deadline, set by the first look that finds nothing to take
 * (a call with work waiting never reads the clock), and whether it has
 * passed: one clock read per look, the first one included. */
struct lmn__timer {
	uint64_t deadline; /* 0: none */
	bool set;
};

static inline bool lmn__timer_passed(struct lmn__timer *t, int timeout_ms,
				     uint64_t conv_deadline_ns)
{
	bool passed;

	if (t->set)
		return t->deadline && lmn__now_ns() >= t->deadline;
	t->deadline = lmn__deadline(timeout_ms, conv_deadline_ns, &passed);
	t->set = true;
	return passed;
}

/* wait.c: sleeping on a futex word until it changes, a deadline passes (0:
 * none) or, when peer_fd is a pidfd, that process exits.  Returns 0 when
 * woken or the word had moved on, -ETIMEDOUT, or 1 when the peer exited.
 * The futex backend leaves peer deaths to the sentinel thread, whose reaping
 * wakes the word.
 *
 * wake_ahead, when not NULL, is the futex word of the peer most likely to
 * have work for us next: the io_uring backend wakes one sleeper on it as
 * soon as this sleep ends, in the kernel, so that the peer's wake-up
 * overlaps our way back to user space and the work we then do for it
 * (perf/README.md, *The wake ahead*).  It goes out however the sleep ends,
 * woken, at the deadline or at the peer's death.  A sleeper woken for
 * nothing looks at its condition and sleeps again; the callers pass a word
 * only where that cannot turn into two sleepers waking each other for
 * nothing for good. */
int lmn__wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns, int peer_fd,
	      uint64_t peer_key, uint32_t *wake_ahead);
/* Whether lmn__wait() polls a peer_fd it is given, and sends a wake ahead
 * (both: the io_uring backend). */
bool lmn__wait_polls(void);
void lmn__wake(uint32_t *word);
/* Spin while cond(ctx) is false, for at most spin_ns; nonzero when cond
 * came true. */
int lmn__spin(uint32_t spin_ns, int (*cond)(void *), void *ctx);
/* Spin if it can pay, and stop spinning while spins keep failing: nonzero
 * when cond came true. */
int lmn__spin_adaptive(struct lmn_bus *bus, int32_t peer_cpu, int (*cond)(void *), void *ctx);
int lmn__current_cpu(void);
/* Whether the calling thread may run on one CPU only (cached a while). */
bool lmn__pinned_alone(void);
/* Whether a peer that last ran on peer_cpu (-1: unknown) can run only once
 * we sleep: it ran on our CPU, and we may run on no other. */
bool lmn__peer_shares_our_cpu(int32_t peer_cpu);

/* wait_uring.c, wait_futex.c: the two backends. */
int lmn__uring_probe(void);
int lmn__uring_wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns, int peer_fd,
		    uint64_t peer_key, uint32_t *wake_ahead);
int lmn__futex_wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns);
void lmn__futex_wake(uint32_t *word);

/* conv.c */
int lmn__conv_check(struct lmn_conv *conv, struct lmn__conv **ret);
void lmn__conv_fill_info(struct lmn_conv *conv, struct lmn__conv *c, struct lmn_conv_info *ret);
void lmn__conv_detach(struct lmn_conv *conv);
int lmn__phase_step(uint32_t *phase, uint32_t to);
/* Why a call on a conversation in this phase cannot go on, or 0: -EPIPE
 * once it completes, -ECONNRESET once it failed, -EUCLEAN for a phase
 * that is none (damage). */
static inline int lmn__phase_error(uint32_t phase)
{
	switch (phase) {
	case LMN__PHASE_CREATED:
	case LMN__PHASE_ACTIVE:
		return 0;
	case LMN__PHASE_COMPLETING:
	case LMN__PHASE_CLOSED:
		return -EPIPE;
	case LMN__PHASE_FAILED:
		return -ECONNRESET;
	default:
		return -EUCLEAN;
	}
}
void lmn__conv_wake_all(struct lmn__conv *c, bool departed);
#define LMN__RING_UNLESS_POLLING 1u /* not while the server polls it */
#define LMN__RING_DEPARTED 2u	    /* the initiator departed: wake anyway */
void lmn__conv_ring_server(const struct lmn__layout *l, void *base, struct lmn__conv *c,
			   uint32_t idx, unsigned how, uint64_t *count);

/* reclaim.c: what happens when a participant departs, by leaving or dying. */
void lmn__roster_wake(void *base);
void lmn__server_departed(const struct lmn__layout *l, void *base, uint32_t conv, uint32_t gen,
			  uint32_t server, uint32_t server_gen, uint32_t health);
void lmn__initiator_departed(const struct lmn__layout *l, void *base, uint32_t conv,
			     uint32_t gen, uint32_t health);
void lmn__part_departed(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen,
			uint32_t health);
int lmn__part_reap(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen);
/* The same, for a caller that saw the pidfd of this very tenant (whose
 * identity was checked through that pidfd when it was opened) readable:
 * it has exited, and is not asked again. */
int lmn__part_reap_exited(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen);
/* How a participant that is no longer live went: LMN__HEALTH_CRASHED or
 * LMN__HEALTH_LEFT. */
uint32_t lmn__part_exit_health(const struct lmn__layout *l, void *base, uint32_t idx,
			       uint32_t gen);
/* The latest logged exit of (idx, gen), or under name when name is not
 * NULL: 1 left, 2 crashed, 0 none. */
int lmn__exit_find(void *base, uint32_t idx, uint32_t gen, const char *name);
/* Copy exit record i out of the log: 0, -ENOENT for an empty record,
 * -EAGAIN for one being rewritten.  *named: its name was a valid string. */
int lmn__exit_read(void *base, uint32_t i, struct lmn__exit_rec *out, bool *named);
int lmn__bus_reap(const struct lmn__layout *l, void *base);
void lmn__exit_record(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen,
		      int crashed);

/* liveness.c */
int lmn__proc_alive(int32_t pid, uint64_t start_time, uint64_t pidfs_ino, int *ret_pidfd);
uint64_t lmn__self_pidfs_ino(void);

/* reply.c */
void lmn__serve_leave(struct lmn_bus *bus);

/* msg.c: message handles, bus lock held. */
void lmn__msgs_spare_free(struct lmn_bus *bus);
struct lmn_msg *lmn__msg_alloc(struct lmn_bus *bus);
void lmn__msg_free(struct lmn_bus *bus, struct lmn_msg *m);
void lmn__msgs_add(struct lmn_bus *bus, struct lmn_msg *m);
void lmn__msgs_del(struct lmn_bus *bus, struct lmn_msg *m);

/* sentinel.c: a thread per process that sleeps on the pidfds of the
 * participants this process depends on, and reaps them when they die. */
void lmn__sentinel_watch(struct lmn_bus *bus, uint32_t idx, uint32_t gen);
void lmn__sentinel_forget(struct lmn_bus *bus);
/* A pidfd for (idx, gen) that stays open until the bus is left, for a
 * waiter to poll (polls: its sleep will, and it reaps what it sees die);
 * -1 if none.  *ret_key names it for the io_uring backend
 * (lmn__wait's peer_key), to tell whether the poll it has armed is on this
 * very descriptor: never reused in the process, where a bus handle's
 * address and a participant's (idx, gen) come back with the next bus. */
int lmn__sentinel_pidfd(struct lmn_bus *bus, uint32_t idx, uint32_t gen, bool polls,
			uint64_t *ret_key);
/* Give back what lmn__sentinel_pidfd() took; polled says it counted us as
 * polling.  The last poller reaps a death the sentinel left to pollers. */
void lmn__sentinel_put(struct lmn_bus *bus, uint32_t idx, uint32_t gen, bool polled);
/* lmn__wait() on word, with (idx, gen) watched by the sentinel, and its
 * pidfd polled in the same sleep when poll is true; a death seen there is
 * reaped before returning 1.  wake_ahead as for lmn__wait(). */
int lmn__sentinel_wait(struct lmn_bus *bus, uint32_t *word, uint32_t expect, uint64_t deadline,
		       uint32_t idx, uint32_t gen, bool poll, uint32_t *wake_ahead);

/* watch.c */
void lmn__watches_stop(struct lmn_bus *bus);
void lmn__watches_detach(struct lmn_bus *bus);

#endif
