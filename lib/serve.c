/* SPDX-License-Identifier: MIT */
/*
 * The serving side, taking: lmn_next() hands out requests from every
 * conversation addressed to this participant, in place in their
 * command-ring cells.  Answering them and giving the cells back is
 * reply.c's; the handles themselves are msg.c's.
 *
 * The server is the one consumer of each command channel and the one
 * producer of each inbox.  The bus lock serializes those roles between the
 * threads of this process, and is never held while sleeping.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>

#include "internal.h"
#include "serve.h"
#include "../shm/channel.h"
#include "../shm/fence.h"
#include "../shm/ready.h"
#include "../shm/table.h"
#include "../shm/word.h"

static void pend_push(void *p, uint32_t conv)
{
	struct lmn_bus *bus = p;
	uint64_t bit = 1ull << (conv % 64);
	uint32_t at = bus->pend_head + bus->pend_len;

	if (bus->queued[conv / 64] & bit)
		return;
	bus->queued[conv / 64] |= bit;
	/* A wrap, not a division: the queue is on every request's way, and
	 * the table's size is no power of two. */
	if (at >= bus->l.conversations)
		at -= bus->l.conversations;
	bus->pending[at] = conv;
	bus->pend_len++;
}

static uint32_t pend_pop(struct lmn_bus *bus)
{
	uint32_t conv = bus->pending[bus->pend_head];

	bus->pend_head = bus->pend_head + 1 == bus->l.conversations ? 0 : bus->pend_head + 1;
	bus->pend_len--;
	bus->queued[conv / 64] &= ~(1ull << (conv % 64));
	return conv;
}

/* The oldest request whose server departed before answering it, if any:
 * they go out again first, marked redelivered, in their original order. */
static int take_redelivery(struct lmn_bus *bus, struct lmn__conv *c, uint32_t idx,
			   uint32_t *ret_cell)
{
	uint8_t *states = lmn__cell_states(&bus->l, bus->base, idx);
	uint64_t best_id = UINT64_MAX;
	uint32_t best = UINT32_MAX;

	if (!ck_pr_load_32(&c->redeliver))
		return -EAGAIN;
	for (uint32_t i = 0; i < bus->l.ring_depth; i++) {
		struct lmn__envelope *env;

		if (ck_pr_load_8(&states[i]) != LMN__CELL_REDELIVER)
			continue;
		env = (struct lmn__envelope *)lmn__cell(&bus->l, bus->base, idx, 0, i);
		if (ck_pr_load_64(&env->id) < best_id) {
			best_id = ck_pr_load_64(&env->id);
			best = i;
		}
	}
	if (best == UINT32_MAX) {
		ck_pr_store_32(&c->redeliver, 0); /* the count was off: damage */
		return -EAGAIN;
	}
	ck_pr_store_32(&c->redeliver, ck_pr_load_32(&c->redeliver) - 1);
	*ret_cell = best;
	return 0;
}

/* Bus lock held.  Is conversation idx, tenant gen, the one we poll? */
static bool is_hot(const struct lmn_bus *bus, uint32_t idx, uint32_t gen)
{
	return bus->hot && bus->hot_idx == idx && bus->hot_gen == gen;
}

/* Claim the command cell of the oldest entry of conversation idx, which
 * lmn__rx_peek() found (ent): copy the request's header into the cell,
 * mark the cell held, then move the ring past the entry.  The header first:
 * once we are past, the entry's slot may be reused, and a redelivery reads
 * the header from the cell.  The mark before the move: a server killed in
 * between leaves the cell both marked and queued (reroute sees that and
 * lets the ring deliver it), never neither. */
static void claim(struct lmn_bus *bus, struct lmn__conv *c, struct lmn__serve_end *e,
		  uint32_t cell, const struct lmn__entry *ent)
{
	struct lmn__entry *db = e->at.databuf[0];
	struct lmn__envelope *env = (struct lmn__envelope *)lmn__addrs_cell(&e->at, &bus->l, 0, cell);
	uint32_t next;

	/* The payload is read only after we return: start pulling it over
	 * from the sender's core now, rather than one miss after the other.
	 * The header line is ours (only servers write it). */
	__builtin_prefetch(env + 1);
	/* The next request is already known to be there: start pulling its
	 * payload over from the sender's core while this one is handled. */
	if (lmn__rx_peek_next(&e->cmd, db, &bus->l, &next) == 0)
		__builtin_prefetch(lmn__addrs_payload(&e->at, &bus->l, 0, next));
	ck_pr_store_64(&env->id, ck_pr_load_64(&ent->id));
	ck_pr_store_32(&env->length, ck_pr_load_32(&ent->length));
	ck_pr_store_8(&e->at.states[cell], LMN__CELL_HELD);
	/* Orders the header and the held mark before the head store that
	 * moves past the entry. */
	ck_pr_fence_store();
	lmn__rx_advance(&e->cmd, &c->cmd);
	lmn__serve_flush_if_drained(bus, c, e);
}

static int unhot(struct lmn_bus *bus, bool tail_damaged);

/* lmn__rx_peek() met damage.  A damaged entry it dropped, so that it
 * cannot block the ring (it moved past it, from position `was`): keep the
 * conversation pending for what follows, and if it was the last one
 * queued, let the cells held back for a batch go.  Counters out of range
 * (nothing taken, nothing can be): stop polling the conversation and leave
 * it until its sender marks it again, whose next publication stores a
 * true tail; pending or polled, it would make every later call fail at
 * once, whatever its timeout. */
static int dropped_damaged(struct lmn_bus *bus, struct lmn__conv *c, uint32_t idx, uint32_t gen,
			   struct lmn__serve_end *e, uint32_t was)
{
	if (e->cmd.data_c == was) {
		if (is_hot(bus, idx, gen))
			(void)unhot(bus, true);
		return -EBADMSG;
	}
	lmn__serve_flush_if_drained(bus, c, e);
	pend_push(bus, idx);
	return -EBADMSG;
}

/* The handle m, filled in, goes to the caller and onto the list of those
 * held. */
static void give_out(struct lmn_bus *bus, struct lmn_msg *m, uint32_t idx, uint32_t gen,
		     struct lmn_msg **ret)
{
	m->bus = bus;
	m->conv = idx;
	m->conv_gen = gen;
	m->sender_known = 0; /* copied from the segment when asked for */
	lmn__msgs_add(bus, m);
	*ret = m;
}

/* Hand out the request in command cell `cell` of conversation idx, which
 * we hold (claimed, or taken for redelivery).  A damaged message, or one we
 * cannot hand out for want of memory, is dropped: its cell goes back
 * (waking a sender that waits for room), and the conversation stays
 * pending so the requests behind it are not stranded.  The call says why. */
static int hand_out(struct lmn_bus *bus, struct lmn__conv *c, uint32_t idx, uint32_t gen,
		    struct lmn__serve_end *e, uint32_t cell, unsigned int flags,
		    struct lmn_msg **ret)
{
	struct lmn__envelope *env = (struct lmn__envelope *)lmn__addrs_cell(&e->at, &bus->l, 0, cell);
	uint32_t len = ck_pr_load_32(&env->length);
	struct lmn_msg *m = len <= bus->l.max_message ? lmn__msg_alloc(bus) : NULL;
	struct lmn__participant *self;

	if (!m) {
		lmn__serve_give_back(bus, c, e, cell);
		pend_push(bus, idx);
		return len > bus->l.max_message ? -EBADMSG : -ENOMEM;
	}
	m->kind = LMN_MSG_REQUEST;
	m->cell = cell;
	m->id = ck_pr_load_64(&env->id);
	m->flags = flags;
	m->len = len;
	m->data = env + 1;
	c->server_held++;
	ck_pr_store_64(&c->served, c->served + 1);
	/* Under the bus lock, as every take: a plain add. */
	self = lmn__part(&bus->l, bus->base, bus->self_idx);
	ck_pr_store_64(&self->served, self->served + 1);
	bus->last_peer_cpu = ck_pr_load_32((uint32_t *)&c->cmd.producer_cpu);
	/* The initiator is a peer we now depend on: hear of its death (once
	 * per conversation, not per request). */
	if (!e->watching) {
		e->watching = 1;
		lmn__sentinel_watch(bus, ck_pr_load_32(&c->initiator),
				    ck_pr_load_32(&c->initiator_gen));
	}
	give_out(bus, m, idx, gen, ret);
	return 0;
}

/* Take the next message of conversation idx, if it is ours and has one. */
static int take_from(struct lmn_bus *bus, uint32_t idx, struct lmn_msg **ret)
{
	struct lmn__conv *c = lmn__conv_at(&bus->l, bus->base, idx);
	uint64_t w = ck_pr_load_64(&c->slot);
	struct lmn__entry *db = lmn__databuf(&bus->l, bus->base, idx, 0);
	const struct lmn__entry *ent;
	struct lmn__serve_end *e;
	struct lmn_msg *m;
	uint32_t phase, cell, gen = lmn__slot_gen(w);
	unsigned int flags = 0;
	bool initiator_gone;
	uint32_t was;
	int r;

	if (lmn__slot_state(w) != LMN__SLOT_LIVE)
		return -EAGAIN;
	/* Orders the slot load before the loads of the entry's fields, which
	 * the opener stored before publishing the slot. */
	ck_pr_fence_load();
	if (ck_pr_load_64(&c->server_gone) != lmn__gen_word(gen, 0) ||
	    ck_pr_load_32(&c->server) != bus->self_idx ||
	    ck_pr_load_32(&c->server_gen) != bus->self_gen)
		return -EAGAIN;
	/* The fields above belong to the tenant we loaded only if the slot
	 * still holds it: a slot freed and reopened in between would hand us
	 * a stranger's request under the old generation.  Once this check
	 * passes, our own reference pins the tenant. */
	ck_pr_fence_load();
	if (ck_pr_load_64(&c->slot) != w)
		return -EAGAIN;
	/* Counters out of range: nothing can be taken (see dropped_damaged). */
	e = lmn__serve_ends(bus, c, idx, gen);
	if (!e)
		return -EBADMSG;
	was = e->cmd.data_c;
	/* The phase first: a close is published after the initiator's last
	 * request, so an empty ring seen after a closed phase is final. */
	phase = ck_pr_load_32(&c->phase);
	initiator_gone = lmn__value_of(ck_pr_load_64(&c->initiator_gone)) != 0 &&
			 ck_pr_load_32(&c->initiator_health) == LMN__HEALTH_CRASHED;
	ck_pr_fence_load();
	if (initiator_gone) {
		/* Nobody will read the answers: drop what is queued, then
		 * tell the server the conversation is gone. */
		while (lmn__rx_peek(&e->cmd, &c->cmd, db, &bus->l, true, &cell, &ent) == 0) {
			lmn__rx_advance(&e->cmd, &c->cmd);
			lmn__serve_give_back(bus, c, e, cell);
		}
		lmn__serve_flush_returns(bus, c, e);
		ck_pr_store_32(&c->redeliver, 0);
		r = -EAGAIN;
	} else if (take_redelivery(bus, c, idx, &cell) == 0) {
		ck_pr_store_8(&lmn__cell_states(&bus->l, bus->base, idx)[cell], LMN__CELL_HELD);
		flags = LMN_MSG_REDELIVERED;
		r = 0;
	} else {
		/* Quick on the conversation we poll, which comes round
		 * again after every request it gives: only the look before
		 * sleeping or giving up (unhot) reads its sender's tail.
		 * Careful on a conversation that was marked ready, and
		 * before a close notice, which must not overtake a request
		 * behind a damaged entry (see lmn__rx_look). */
		bool careful = !is_hot(bus, idx, gen);

		r = lmn__rx_peek(&e->cmd, &c->cmd, db, &bus->l, careful, &cell, &ent);
		if (r == -EAGAIN && !careful && phase >= LMN__PHASE_COMPLETING)
			r = lmn__rx_peek(&e->cmd, &c->cmd, db, &bus->l, true, &cell, &ent);
		/* Counters out of range on a closing conversation: its
		 * sender will not publish again to put them right, and
		 * nothing behind them can be taken.  The close notice goes
		 * out, or the conversation would never end. */
		if (r < 0 && r != -EAGAIN && e->cmd.data_c == was &&
		    phase >= LMN__PHASE_COMPLETING)
			r = -EAGAIN;
		if (r == 0)
			claim(bus, c, e, cell, ent);
	}
	if (r == -EAGAIN) {
		if (phase < LMN__PHASE_COMPLETING || c->close_delivered)
			return -EAGAIN;
		m = lmn__msg_alloc(bus);
		if (!m) {
			pend_push(bus, idx); /* the notice is still owed */
			return -ENOMEM;
		}
		c->close_delivered = 1;
		m->kind = LMN_MSG_CLOSED;
		m->flags = initiator_gone ? LMN_MSG_PEER_CRASHED : 0;
		m->cell = UINT32_MAX;
		m->data = "";
		give_out(bus, m, idx, gen, ret);
		return 0;
	}
	if (r < 0)
		return dropped_damaged(bus, c, idx, gen, e, was);
	return hand_out(bus, c, idx, gen, e, cell, flags, ret);
}

/* Bus lock held.  Stop polling the hot conversation: clear its flag, then
 * look at its ring once more (a sender publishes, then loads the flag), and
 * queue it if a request came in between.  Returns 1 if it did.  With
 * tail_damaged, the look is at the slot our end takes next, not at the
 * sender's tail, which would queue the conversation again for good. */
static int unhot(struct lmn_bus *bus, bool tail_damaged)
{
	struct lmn__conv *c;
	bool queued;

	if (!bus->hot)
		return 0;
	ck_pr_store_int(&bus->hot, 0);
	c = lmn__conv_at(&bus->l, bus->base, bus->hot_idx);
	if (ck_pr_load_64(&c->slot) != lmn__slot_word(bus->hot_gen, LMN__SLOT_LIVE))
		return 0;
	ck_pr_store_32(&c->server_polling, 0);
	lmn__fence_full();
	/* With a damaged tail, look at the slot our end would take next. */
	queued = tail_damaged ? lmn__rx_ready(&bus->ends[bus->hot_idx].cmd,
					      bus->ends[bus->hot_idx].at.databuf[0], bus->l.ring_size)
			      : lmn__chan_has_data(&c->cmd, bus->l.ring_size);
	if (!queued)
		return 0;
	pend_push(bus, bus->hot_idx);
	return 1;
}

/* Bus lock held.  Poll conversation idx from now on (it just gave us a
 * request): its sender may skip the ready marks. */
static void make_hot(struct lmn_bus *bus, struct lmn__conv *c, uint32_t idx, uint32_t gen)
{
	if (is_hot(bus, idx, gen))
		return;
	(void)unhot(bus, false);
	bus->hot_idx = idx;
	bus->hot_gen = gen;
	ck_pr_store_int(&bus->hot, 1);
	ck_pr_store_32(&c->server_polling, 1);
}

/* Has the hot conversation a request waiting?  Any thread, lock or not:
 * a hint read from our end without the lock (take_from looks properly),
 * and never the last word before sleeping (unhot is). */
static int hot_has_data(struct lmn_bus *bus)
{
	uint32_t idx;

	if (!ck_pr_load_int(&bus->hot))
		return 0;
	idx = ck_pr_load_32(&bus->hot_idx);
	return lmn__rx_ready_pull(&bus->ends[idx].cmd, lmn__databuf(&bus->l, bus->base, idx, 0),
				  &bus->l, lmn__cell(&bus->l, bus->base, idx, 0, 0));
}

/* Marks are read when the pending queue empties, and also after this many
 * takes from a queue that never does: a conversation whose sender keeps its
 * ring filled (a stream) stays queued for good, and the others' marks would
 * wait for it to pause.  Reading them costs a load while nothing is marked. */
#define MARKS_EVERY 8u

/* Queue every conversation marked ready, behind those queued already. */
static uint32_t take_marks(struct lmn_bus *bus)
{
	bus->takes_unmarked = 0;
	return lmn__ready_take(lmn__ready(&bus->l, bus->base, bus->self_idx), &bus->l, pend_push,
			       bus);
}

/* Bus lock held.  Has the polled conversation, c, something only the long
 * way (take_from) handles: a new tenant in its slot, a close, a crash, a
 * redelivery?  Then it must be queued even with no request in its ring:
 * the marks that told of it may have been read before the request that
 * made it the polled one was taken. */
static bool hot_needs_care(const struct lmn_bus *bus, struct lmn__conv *c)
{
	if (ck_pr_load_64(&c->slot) != lmn__slot_word(bus->hot_gen, LMN__SLOT_LIVE))
		return true;
	/* Orders the slot load before the loads of the fields below. */
	ck_pr_fence_load();
	return ck_pr_load_32(&c->phase) >= LMN__PHASE_COMPLETING || ck_pr_load_32(&c->redeliver) ||
	       lmn__value_of(ck_pr_load_64(&c->initiator_gone)) != 0;
}

/* Bus lock held.  The request waiting in the polled conversation, taken
 * the short way when nothing else calls for the long one (try_next): no
 * other conversation queued, the marks not due, our ends attached for its
 * tenant, and no close, crash or redelivery to handle.  -EAGAIN (having
 * changed nothing) sends the caller the long way.
 *
 * Polled means that we took a request from this tenant and have not been
 * handed its close notice (try_next drops the poll then).  Until then our
 * reference as its server pins the tenant, and nobody else changes who
 * serves it while we live: a new server is chosen only for a dead one.
 * So the checks take_from makes of the server and the gone flag hold here
 * already; what may change under us, and is looked at, is the slot, the
 * phase, the initiator's gone flag and the redelivery count. */
static int take_hot(struct lmn_bus *bus, struct lmn_msg **ret)
{
	uint32_t idx = bus->hot_idx, gen = bus->hot_gen, cell, was;
	const struct lmn__entry *ent;
	struct lmn__serve_end *e;
	struct lmn__conv *c;
	int r;

	if (!bus->hot || bus->pend_len || bus->takes_unmarked >= MARKS_EVERY)
		return -EAGAIN;
	e = &bus->ends[idx];
	if (!e->attached || e->gen != gen)
		return -EAGAIN;
	c = e->at.conv;
	if (hot_needs_care(bus, c))
		return -EAGAIN;
	/* Orders the phase load before the look at the ring, as take_from
	 * does: a close is published after the initiator's last request. */
	ck_pr_fence_load();
	was = e->cmd.data_c;
	r = lmn__rx_peek(&e->cmd, &c->cmd, e->at.databuf[0], &bus->l, false, &cell, &ent);
	if (r == -EAGAIN)
		return -EAGAIN;
	if (r < 0)
		return dropped_damaged(bus, c, idx, gen, e, was);
	claim(bus, c, e, cell, ent);
	r = hand_out(bus, c, idx, gen, e, cell, 0, ret);
	if (r == 0)
		bus->takes_unmarked++;
	return r;
}

/* Look at every conversation taken from the ready bitmap until one yields
 * a message or the bitmap is empty.  Returning with indices still pending
 * would be a lost wake-up: the caller then sleeps until a new mark. */
static int try_next(struct lmn_bus *bus, struct lmn_msg **ret)
{
	int r = take_hot(bus, ret);

	if (r != -EAGAIN)
		return r;
	/* The hot conversation's sender may not have marked it, and what
	 * needs the long way may have been marked before it became hot. */
	if (bus->hot && (hot_has_data(bus) ||
			 hot_needs_care(bus, lmn__conv_at(&bus->l, bus->base, bus->hot_idx))))
		pend_push(bus, bus->hot_idx);
	/* Those marked join the queue behind the ones in it: each gets its
	 * turn within one round of the queue. */
	if (bus->takes_unmarked >= MARKS_EVERY)
		(void)take_marks(bus);
	for (;;) {
		while (bus->pend_len) {
			uint32_t idx = pend_pop(bus);

			r = take_from(bus, idx, ret);

			if (r == 0) {
				bus->takes_unmarked++;
				/* Back to the tail, behind the others queued: it
				 * may hold more, and they get their turn first.
				 * Alone, it needs no queue: the polled
				 * conversation is looked at first anyway
				 * (take_hot, then hot_has_data). */
				if ((*ret)->kind == LMN_MSG_REQUEST) {
					make_hot(bus, lmn__conv_at(&bus->l, bus->base, idx), idx,
						 (*ret)->conv_gen);
					if (bus->pend_len)
						pend_push(bus, idx);
				} else if (is_hot(bus, idx, (*ret)->conv_gen)) {
					(void)unhot(bus, false);
				}
				return 0;
			}
			if (r != -EAGAIN)
				return r;
		}
		if (!take_marks(bus))
			return -EAGAIN;
	}
}

struct ready_ctx {
	struct lmn_bus *bus;
};

static int ready_now(void *p)
{
	struct lmn_bus *bus = ((struct ready_ctx *)p)->bus;

	/* Work may also sit in this process's pending queue, put there by
	 * another thread's lmn_next: then there is no mark left to see. */
	return ck_pr_load_32(&bus->pend_len) || hot_has_data(bus) ||
	       lmn__ready_any(lmn__ready(&bus->l, bus->base, bus->self_idx), &bus->l);
}

/* The word the caller we served last sleeps on for its reply, for the
 * wake ahead of our sleep (lmn__wait): the request that wakes us is most
 * likely its next one, and its own wake-up then overlaps our work on the
 * request.  Only for a caller we served before our previous sleep too,
 * and again since: with several callers taking turns, the one served last
 * is seldom the next, and a wake for nothing on each sleep raised fan-in's
 * p99 by a fifth (perf/README.md); and a sleep that took nothing since the
 * last (a timeout, a wake for nothing) must not wake anybody, or a caller
 * and its server would wake each other for nothing for good.  None while
 * we hold a request of that caller's (it waits for us, not we for it),
 * for a conversation gone since, or when that caller last ran on our CPU
 * and we may run on no other: there it can run only once we sleep again.
 * The bus lock orders this against other server threads' takes. */
static uint32_t *last_caller_word(struct lmn_bus *bus)
{
	uint32_t *word = NULL, idx, gen;
	struct lmn__conv *c;
	uint64_t served;
	bool again;

	/* Only the io_uring backend sends a wake ahead; and the CPU test may
	 * ask the kernel, which is done before the lock, not under it. */
	if (!lmn__wait_polls() || lmn__peer_shares_our_cpu(ck_pr_load_32(
					  (uint32_t *)&bus->last_peer_cpu)))
		return NULL;
	lmn__lock_take(&bus->lock);
	idx = bus->hot_idx;
	gen = bus->hot_gen;
	if (!gen)
		goto out;
	/* hot_idx was made hot from our end, whose address is kept. */
	c = bus->ends[idx].at.conv;
	/* Written by us, under this lock, but read back from the segment:
	 * only a hint, which at worst sends a wake for nothing or none. */
	served = ck_pr_load_64(&c->served);
	again = bus->ahead_idx == idx && bus->ahead_gen == gen && bus->ahead_served != served;
	bus->ahead_idx = idx;
	bus->ahead_gen = gen;
	bus->ahead_served = served;
	if (again && !ck_pr_load_32(&c->server_held) &&
	    ck_pr_load_64(&c->slot) == lmn__slot_word(gen, LMN__SLOT_LIVE))
		word = &c->inbox.data_word;
out:
	lmn__lock_drop(&bus->lock);
	return word;
}

/* lmn_next()'s sleep, out of line and cold: a busy server runs
 * lmn_next()'s loop around a spin, and with this code inlined there the
 * spin round trip's p50 measured a step of the clock (10 ns) slower; with
 * the loop's own code as it was, it did not (perf/README.md).
 *
 * It lasts LMN__DOORBELL_LOOK_NS at most, after which lmn_next() looks at
 * its marks again.  An initiator killed inside its ring of the doorbell,
 * after taking our bit and before its wake call, leaves us asleep with no
 * bit for later senders to see; its reaper wakes us, but until we have
 * taken one of its requests nobody watches it, and nobody reaps it. */
static __attribute__((noinline, cold)) void sleep_on_doorbell(struct lmn_bus *bus,
							      uint32_t *doorbell, uint32_t expect,
							      uint64_t deadline)
{
	uint64_t look = lmn__now_ns() + LMN__DOORBELL_LOOK_NS;

	(void)lmn__wait(doorbell, expect, deadline && deadline < look ? deadline : look, -1, 0,
			last_caller_word(bus));
}

/* The server's tables, made on the first lmn_next(): the pending queue,
 * its bitmap, and our ends of every conversation. */
static int serve_tables(struct lmn_bus *bus)
{
	uint32_t *pending;
	int r = 0;

	lmn__lock_take(&bus->lock);
	if (bus->pending)
		goto out;
	pending = calloc(bus->l.conversations, sizeof(*pending));
	bus->queued = calloc(bus->l.ready_leaf_words, sizeof(*bus->queued));
	bus->ends = calloc(bus->l.conversations, sizeof(*bus->ends));
	/* Half a ring per batch: the sender keeps the other half to fill
	 * meanwhile.  Batches of more than 16 save no more. */
	bus->return_batch = bus->l.ring_depth / 2 > 16 ? 16 : bus->l.ring_depth / 2;
	if (!bus->return_batch)
		bus->return_batch = 1;
	if (!pending || !bus->queued || !bus->ends) {
		free(pending);
		free(bus->queued);
		free(bus->ends);
		bus->queued = NULL;
		bus->ends = NULL;
		r = -ENOMEM;
		goto out;
	}
	/* Last: lmn_next() reads it without the lock (see there). */
	ck_pr_store_ptr(&bus->pending, pending);
out:
	lmn__lock_drop(&bus->lock);
	return r;
}

LMN_EXPORT int lmn_next(lmn_bus *bus, lmn_msg **ret, int timeout_ms)
{
	struct lmn__participant *self;
	struct ready_ctx x = {bus};
	struct lmn__timer timer = {0};
	bool spun = false;
	int r;

	if (!bus || !ret || timeout_ms < -1)
		return -EINVAL;
	self = lmn__part(&bus->l, bus->base, bus->self_idx);
	/* Set once, last, under the lock: a pointer seen here means tables
	 * that are ready, and the lock taken below orders their contents.
	 * Every call but the first skips a lock round this way. */
	if (!ck_pr_load_ptr(&bus->pending)) {
		r = serve_tables(bus);
		if (r < 0)
			return r;
	}

	for (;;) {
		uint32_t expect;
		bool expired;

		lmn__lock_take(&bus->lock);
		r = try_next(bus, ret);
		lmn__lock_drop(&bus->lock);
		if (r == 0)
			return 0;
		if (r != -EAGAIN)
			return r;
		/* The clock is read only once there is nothing to take: a
		 * busy server would otherwise pay for it on every request. */
		expired = lmn__timer_passed(&timer, timeout_ms, 0);
		/* Where we wait, for senders deciding whether to spin: set
		 * here, on the way to waiting, not after each request taken,
		 * where the lookup lay between a request and its reply.  And
		 * only when it changes: senders read this line (the doorbell)
		 * on every send, and a store on every request would make each
		 * of those loads a miss. */
		if (!spun) {
			int cpu = lmn__current_cpu();

			if (ck_pr_load_int(&self->doorbell_cpu) != cpu)
				ck_pr_store_int(&self->doorbell_cpu, cpu);
		}
		if (!expired && !spun) {
			spun = true;
			if (lmn__spin_adaptive(bus, bus->last_peer_cpu, ready_now, &x))
				continue;
		}
		/* Before sleeping or giving up, stop polling: from now on
		 * senders mark, and unhot reads the tail, which the quick
		 * look at the polled conversation does not (take_from). */
		lmn__lock_take(&bus->lock);
		r = unhot(bus, false);
		lmn__lock_drop(&bus->lock);
		if (r)
			continue;
		if (expired)
			return -ETIMEDOUT;
		expect = lmn__word_arm(&self->doorbell);
		if (ready_now(&x))
			continue;
		sleep_on_doorbell(bus, &self->doorbell, expect, timer.deadline);
	}
}
