/* SPDX-License-Identifier: MIT */
/*
 * Sending and receiving on a conversation, initiator side.  The initiator is
 * the one producer of the command channel and the one consumer of the inbox
 * (of both, for a buffering conversation, which sends into its own inbox).
 */
#include <errno.h>
#include <string.h>

#include <ck_pr.h>

#include "internal.h"
#include "../shm/channel.h"
#include "../shm/freering.h"
#include "../shm/ready.h"
#include "../shm/word.h"

/* Has the server's part ended for good?  (Not while it is being moved to
 * another server: that is value 2, and the caller keeps waiting.) */
static int server_gone(const struct lmn__conv *c)
{
	return lmn__value_of(ck_pr_load_64((uint64_t *)&c->server_gone)) == 1;
}

/* The error a departed server leaves behind: -ECONNRESET, or -EHOSTUNREACH
 * when ROUTE_NEXT found no server to move to. */
static int gone_error(const struct lmn__conv *c)
{
	return ck_pr_load_32((uint32_t *)&c->fail_errno) == EHOSTUNREACH ? -EHOSTUNREACH
									  : -ECONNRESET;
}

/* The participant serving the conversation now (it moves under ROUTE_NEXT),
 * checked against the table size; UINT32_MAX for none. */
static uint32_t current_server(const struct lmn_bus *bus, const struct lmn__conv *c,
			       uint32_t *gen)
{
	uint32_t s = ck_pr_load_32((uint32_t *)&c->server);

	*gen = ck_pr_load_32((uint32_t *)&c->server_gen);
	return s < bus->l.participants ? s : UINT32_MAX;
}

/* The CPU the server last went to sleep on, a hint for spinning and
 * sleeping (any value read back is only compared). */
static int32_t server_cpu(const struct lmn_bus *bus, uint32_t s)
{
	if (s == UINT32_MAX)
		return -1;
	return (int32_t)ck_pr_load_32((uint32_t *)&lmn__part(&bus->l, bus->base, s)->doorbell_cpu);
}

/* The doorbell of server s, or NULL for none (UINT32_MAX). */
static uint32_t *server_doorbell(const struct lmn_bus *bus, uint32_t s)
{
	return s == UINT32_MAX ? NULL : &lmn__part(&bus->l, bus->base, s)->doorbell;
}

/* Wait for a futex word, and for the death of the peer we wait on: when
 * its pidfd fires, reap it, which applies the policy and wakes the word.
 *
 * A peer that last ran on our own CPU, when we may run on no other, will
 * run only once we sleep, and the wake it sends is a same-CPU wake: there
 * io_uring's asynchronous futex wait costs about as much again as the whole
 * futex(2) round trip (perf/README.md).  Such a wait sleeps in futex(2) and
 * leaves the peer's death to the sentinel thread, which watches the same
 * pidfd (all waits register it) and reaps, which wakes the word: two wakes
 * on the way to the caller's return, not one.  A thread free to move meets
 * its peer on one CPU by chance, now and then, and keeps the poll.
 *
 * wake_ahead (lmn__wait) is dropped there too: a peer on our CPU can run
 * only once we sleep again, so waking it sooner only costs it a look. */
static int wait_on(struct lmn_bus *bus, uint32_t *word, uint32_t expect, uint64_t deadline,
		   uint32_t peer, uint32_t peer_gen, int32_t peer_cpu, uint32_t *wake_ahead)
{
	bool same_cpu = lmn__peer_shares_our_cpu(peer_cpu);

	if (peer == UINT32_MAX)
		return lmn__wait(word, expect, deadline, -1, 0, NULL);
	return lmn__sentinel_wait(bus, word, expect, deadline, peer, peer_gen, !same_cpu,
				  same_cpu ? NULL : wake_ahead);
}

/* Why a call on this conversation cannot go on, or 0: the phase's error,
 * with a failure told apart by gone_error(). */
static int end_error(const struct lmn__conv *c)
{
	int r = lmn__phase_error(ck_pr_load_32((uint32_t *)&c->phase));

	return r == -ECONNRESET ? gone_error(c) : r;
}

/* Checks common to send and receive; the first of them activates. */
static int enter(struct lmn_conv *conv, struct lmn__conv **ret)
{
	struct lmn__conv *c = NULL;
	uint32_t phase;
	int r;

	/* A handle whose bus was left is stale, even though leaving closed it. */
	if (!conv->bus)
		return -ESTALE;
	if (ck_pr_load_int(&conv->closed))
		return -EPIPE;
	r = lmn__conv_check(conv, &c);
	if (r < 0)
		return r;
	phase = ck_pr_load_32(&c->phase);
	if (phase == LMN__PHASE_CREATED) {
		(void)lmn__phase_step(&c->phase, LMN__PHASE_ACTIVE);
		phase = ck_pr_load_32(&c->phase);
	}
	*ret = c;
	return lmn__phase_error(phase);
}

struct room_ctx {
	struct lmn_conv *conv;
	struct lmn__conv *c;
	struct lmn__channel *ch;
};

static int room_or_end(void *p)
{
	struct room_ctx *x = p;

	return lmn__tx_room(&x->conv->tx, x->ch) || end_error(x->c) || server_gone(x->c);
}

LMN_EXPORT int lmn_send(lmn_conv *conv, const void *data, size_t len, unsigned int flags)
{
	struct lmn_bus *bus;
	struct lmn__channel *ch;
	struct lmn__conv *c = NULL;
	unsigned dir;
	uint64_t *sent;
	uint32_t cell;
	bool spun = false;
	int r;

	if (!conv || (!data && len) || (flags & ~LMN_SEND_NONBLOCK))
		return -EINVAL;
	/* Refuse what cannot be sent before the conversation activates. */
	if (conv->bus && len > conv->bus->l.max_message)
		return -EMSGSIZE;
	r = enter(conv, &c);
	if (r == -ECONNRESET)
		return gone_error(c);
	if (r < 0)
		return r;
	bus = conv->bus;
	if (!conv->buffering && server_gone(c))
		return gone_error(c);
	if (conv->deadline_ns && lmn__now_ns() >= conv->deadline_ns)
		return -ETIMEDOUT;
	dir = conv->buffering ? 1 : 0;
	ch = dir ? &c->inbox : &c->cmd;

	for (;;) {
		struct room_ctx x = {conv, c, ch};
		uint64_t deadline;
		uint32_t expect;
		bool expired;

		r = lmn__tx_reserve(&conv->tx, ch, conv->at.freebuf[dir], &bus->l, &cell);
		if (r != -EAGAIN)
			break;
		if (flags & LMN_SEND_NONBLOCK)
			return -EAGAIN;
		/* Every cell is in use: wait for the consumer to give one back,
		 * for as long as the conversation's own timeout allows. */
		deadline = lmn__deadline(-1, conv->deadline_ns, &expired);
		if (expired)
			return -ETIMEDOUT;
		/* A server that is running gives cells back within
		 * microseconds: spin for one before sleeping, as a receive
		 * does for its reply (a stream fills the ring all the time). */
		if (!dir && !spun) {
			uint32_t sg, s = current_server(bus, c, &sg);

			spun = true;
			if (s != UINT32_MAX &&
			    lmn__spin_adaptive(bus, server_cpu(bus, s), room_or_end, &x))
				continue;
		}
		expect = lmn__word_arm(&ch->free_word);
		if (room_or_end(&x)) {
			r = end_error(c);
			if (r < 0)
				return r;
			if (server_gone(c))
				return gone_error(c);
			continue;
		}
		if (dir) {
			r = lmn__wait(&ch->free_word, expect, deadline, -1, 0, NULL);
		} else {
			uint32_t sg, s = current_server(bus, c, &sg);

			r = wait_on(bus, &ch->free_word, expect, deadline, s, sg,
				    server_cpu(bus, s), NULL);
		}
		if (r == -ETIMEDOUT)
			return -ETIMEDOUT;
		r = end_error(c);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;

	if (len)
		lmn__payload_copy(lmn__addrs_payload(&conv->at, &bus->l, dir, cell), data, len);
	lmn__tx_publish(&conv->tx, ch, conv->at.databuf[dir], &bus->l, cell, ++conv->next_id, 0,
			(uint32_t)len);
	ck_pr_store_64(&c->sent, c->sent + 1);
	/* Our participant's total, for liminal top.  Other threads of ours
	 * may send on other conversations: atomic adds. */
	sent = &lmn__part(&bus->l, bus->base, bus->self_idx)->sent;
	if (dir) {
		ck_pr_inc_64(sent);
		if (lmn__word_signal(&ch->data_word))
			lmn__wake(&ch->data_word);
	} else {
		int cpu = lmn__current_cpu();

		/* Written only when it changes: the line is read by the
		 * server, and a store on every send would bounce it. */
		if (ck_pr_load_int(&ch->producer_cpu) != cpu)
			ck_pr_store_int(&ch->producer_cpu, cpu);
		/* The handshake's fence counts the request. */
		lmn__conv_ring_server(&bus->l, bus->base, c, conv->idx, LMN__RING_UNLESS_POLLING,
				      sent);
	}
	return 0;
}

struct data_ctx {
	struct lmn_conv *conv;
	struct lmn__conv *c;
	bool careful; /* also tell damage (see lmn__rx_look) */
};

static int data_or_end(void *p)
{
	struct data_ctx *x = p;
	struct lmn_bus *bus = x->conv->bus;
	struct lmn__entry *db = x->conv->at.databuf[1];

	if (x->careful ? lmn__rx_any(&x->conv->rx, &x->c->inbox, db, &bus->l) != 0
		       : lmn__rx_ready_pull(&x->conv->rx, db, &bus->l, x->conv->at.cells[1]))
		return 1;
	return ck_pr_load_32(&x->c->phase) > LMN__PHASE_ACTIVE || server_gone(x->c);
}

/* Consume the oldest inbox entry, which lmn__rx_peek() found, and give its
 * cell back at once: replies come one at a time, there is nothing to batch.
 * Only a buffering conversation's sender ever waits for room in the inbox
 * (a server gets -EAGAIN instead), so only then is there anyone to signal:
 * the fence that signalling takes would otherwise sit on every call's
 * path. */
static void drop_one(struct lmn_conv *conv, struct lmn__conv *c, uint32_t cell)
{
	struct lmn_bus *bus = conv->bus;

	lmn__rx_advance(&conv->rx, &c->inbox);
	lmn__rx_return(&conv->rx, conv->at.freebuf[1], &bus->l, cell);
	(void)lmn__rx_flush(&conv->rx, &c->inbox, bus->l.ring_depth);
	if (conv->buffering && lmn__word_signal(&c->inbox.free_word))
		lmn__wake(&c->inbox.free_word);
}

/* Copy out the oldest inbox message if there is one: its length, -EAGAIN
 * when the inbox is empty, -EMSGSIZE (message kept) when it does not fit.
 * Replies that answer a request older than min_correlation are late answers
 * to a call that gave up: they are dropped.  A damaged entry is dropped too
 * and reported, so that it cannot block the inbox for good (when careful:
 * see lmn__rx_look). */
static ssize_t take_one(struct lmn_conv *conv, struct lmn__conv *c, void *buf, size_t cap,
			uint64_t min_correlation, bool careful)
{
	struct lmn_bus *bus = conv->bus;
	const struct lmn__entry *e;
	const char *payload;
	uint32_t cell, len;
	int r;

	for (;;) {
		r = lmn__rx_peek(&conv->rx, &c->inbox, conv->at.databuf[1], &bus->l, careful, &cell,
				 &e);
		if (r < 0)
			return r;
		payload = lmn__addrs_payload(&conv->at, &bus->l, 1, cell);
		/* The payload's line while the header is read, not after. */
		__builtin_prefetch(payload);
		len = ck_pr_load_32(&e->length);
		if (len > bus->l.max_message) {
			drop_one(conv, c, cell);
			return -EBADMSG;
		}
		if (min_correlation && ck_pr_load_64(&e->correlation) < min_correlation) {
			drop_one(conv, c, cell);
			continue;
		}
		break;
	}
	if (len > cap)
		return -EMSGSIZE;
	if (len)
		lmn__payload_copy(buf, payload, len);
	drop_one(conv, c, cell);
	ck_pr_store_64(&c->received, c->received + 1);
	return len;
}

static ssize_t recv_impl(lmn_conv *conv, void *buf, size_t cap, int timeout_ms,
			 uint64_t min_correlation)
{
	struct lmn__conv *c = NULL;
	struct lmn__timer timer = {0};
	ssize_t r;
	unsigned looks = 0;
	bool spun = false;

	r = enter(conv, &c);
	/* A failed conversation still delivers what had arrived first. */
	if (r < 0 && r != -ECONNRESET)
		return r;

	for (;;) {
		struct data_ctx x = {conv, c, false};
		uint32_t expect, phase, server, server_gen = 0, *ahead;
		uint64_t sent;
		int32_t peer_cpu = -1;

		/* The first look is quick, every later one careful. */
		r = take_one(conv, c, buf, cap, min_correlation, looks++ > 0);
		if (r != -EAGAIN)
			return r;
		/* The inbox is empty: is there anything left to wait for? */
		phase = ck_pr_load_32(&c->phase);
		if (ck_pr_load_int(&conv->closed) || lmn__phase_error(phase) == -EPIPE)
			return -EPIPE;
		if (phase == LMN__PHASE_FAILED ||
		    (!conv->buffering && server_gone(c))) {
			/* A reply may have landed just before the failure. */
			if (lmn__rx_any(&conv->rx, &c->inbox, conv->at.databuf[1],
					&conv->bus->l) != 0)
				continue;
			return gone_error(c);
		}
		if (lmn__phase_error(phase))
			return -EUCLEAN;
		/* The clock only once there is nothing to take: a reply that
		 * is already there should not pay for a read of it. */
		if (lmn__timer_passed(&timer, timeout_ms, conv->deadline_ns)) {
			if (looks < 2)
				continue; /* a careful look before giving up */
			return -ETIMEDOUT;
		}
		server = conv->buffering ? UINT32_MAX : current_server(conv->bus, c, &server_gen);
		peer_cpu = server_cpu(conv->bus, server);
		if (!spun && server != UINT32_MAX) {
			spun = true;
			if (lmn__spin_adaptive(conv->bus, peer_cpu, data_or_end, &x))
				continue;
		}
		/* Careful before sleeping: a damaged entry would otherwise
		 * hold back what follows it until the deadline. */
		x.careful = true;
		expect = lmn__word_arm(&c->inbox.data_word);
		if (data_or_end(&x))
			continue;
		/* Woken or timed out, the loop looks again (carefully) and
		 * decides.  The server is woken ahead when our reply lands:
		 * a caller that has its answer most likely calls again, and
		 * the server's wake-up then overlaps the time it takes us to
		 * get there (a Unix socket does the same: a read wakes the
		 * writer's side).  Once per request sent: a sleep after one
		 * that brought nothing, or a receive polled with timeouts,
		 * must not wake the server again, or the two could wake each
		 * other for nothing for good. */
		ahead = NULL;
		sent = ck_pr_load_64(&conv->next_id);
		if (conv->ahead_id != sent) {
			conv->ahead_id = sent;
			ahead = server_doorbell(conv->bus, server);
		}
		(void)wait_on(conv->bus, &c->inbox.data_word, expect, timer.deadline, server, server_gen,
			      peer_cpu, ahead);
	}
}

LMN_EXPORT ssize_t lmn_recv(lmn_conv *conv, void *buf, size_t cap, int timeout_ms)
{
	if (!conv || (!buf && cap) || timeout_ms < -1)
		return -EINVAL;
	return recv_impl(conv, buf, cap, timeout_ms, 0);
}

LMN_EXPORT ssize_t lmn_call(lmn_conv *conv, const void *req, size_t len, void *buf, size_t cap,
			    int timeout_ms)
{
	int r;

	if (!conv || (!req && len) || (!buf && cap) || timeout_ms < -1)
		return -EINVAL;
	if (conv->buffering && conv->bus && len > cap)
		return -EMSGSIZE;
	r = lmn_send(conv, req, len, 0);
	if (r < 0)
		return r;
	/* Our request has id next_id: a reply to anything older is the late
	 * answer to a call that timed out, not ours. */
	return recv_impl(conv, buf, cap, timeout_ms,
			 conv->buffering ? 0 : conv->next_id);
}
