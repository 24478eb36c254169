/* SPDX-License-Identifier: MIT */
/*
 * The serving side, answering: lmn_reply() writes into the conversation's
 * inbox; lmn_msg_release() gives the request's command cell back to the
 * initiator, in batches while more requests wait; leaving detaches what is
 * still held.  Taking requests is serve.c's.
 *
 * The server is the one producer of each inbox and the one consumer of each
 * command channel; the bus lock serializes those roles between the threads
 * of this process.
 */
#include <errno.h>
#include <stdlib.h>

#include <ck_pr.h>

#include "internal.h"
#include "serve.h"
#include "../shm/channel.h"
#include "../shm/freering.h"
#include "../shm/fence.h"
#include "../shm/table.h"
#include "../shm/word.h"

/* The server's part of a conversation is over: it saw the close and holds
 * nothing.  Give back its reference, once. */
static void server_done(struct lmn_bus *bus, struct lmn__conv *c, uint32_t idx, uint32_t gen)
{
	if (!ck_pr_cas_64(&c->server_gone, lmn__gen_word(gen, 0), lmn__gen_word(gen, 1)))
		return;
	lmn__part_unserve(&bus->l, bus->base, bus->self_idx, bus->self_gen);
	lmn__conv_unref(&bus->l, bus->base, idx, gen, LMN__REF_SERVER);
}

/* Take up our ends of conversation idx for tenant gen (lmn__serve_ends). */
struct lmn__serve_end *lmn__serve_attach(struct lmn_bus *bus, struct lmn__conv *c, uint32_t idx, uint32_t gen)
{
	struct lmn__serve_end *e = &bus->ends[idx];

	e->attached = 0;
	lmn__conv_addrs_of(&bus->l, bus->base, idx, &e->at);
	if (lmn__rx_attach(&e->cmd, &c->cmd, bus->l.ring_size) < 0 ||
	    lmn__tx_attach(&e->inbox, &c->inbox, e->at.databuf[1], bus->l.ring_size) < 0)
		return NULL;
	e->gen = gen;
	e->attached = 1;
	e->watching = 0;
	return e;
}

/* Publish the command cells given back since the last flush, and wake the
 * initiator if it waits for room: one fence for the batch.  The cells are
 * marked idle first, so that a reaper finding one still RETURNING knows it
 * never reached the initiator (a server killed between the marks and the
 * tail loses those cells instead, until the conversation ends; never the
 * other way round, which would hand one cell out twice).  A cell number
 * read back from the free ring is trusted only as far as the state says
 * it was ours to return. */
void lmn__serve_flush_returns(struct lmn_bus *bus, struct lmn__conv *c, struct lmn__serve_end *e)
{
	uint8_t *states = e->at.states;
	struct ck_ring_buffer *fb = e->at.freebuf[0];
	uint32_t n = lmn__rx_unflushed(&e->cmd);

	if (!n)
		return;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t cell = lmn__rx_unflushed_cell(&e->cmd, fb, bus->l.ring_size, i);

		if (cell < bus->l.ring_depth && ck_pr_load_8(&states[cell]) == LMN__CELL_RETURNING)
			ck_pr_store_8(&states[cell], LMN__CELL_IDLE);
	}
	/* lmn__rx_flush() orders the idle marks before the tail. */
	if (lmn__rx_flush(&e->cmd, &c->cmd, bus->l.ring_depth) && lmn__word_signal(&c->cmd.free_word))
		lmn__wake(&c->cmd.free_word);
}

/* Let the cells held back for a batch go once nothing more is queued (see
 * give_back).  The slot tells: the tail's line is the sender's, and
 * reading it here would put a miss on every request's path; a damaged
 * slot only makes the batch go early. */
void lmn__serve_flush_if_drained(struct lmn_bus *bus, struct lmn__conv *c,
				 struct lmn__serve_end *e)
{
	if (lmn__rx_unflushed(&e->cmd) &&
	    !lmn__rx_ready(&e->cmd, e->at.databuf[0], bus->l.ring_size))
		lmn__serve_flush_returns(bus, c, e);
}

/* Give a command cell back to the initiator.  Cells go back in batches
 * while more requests wait in the ring (a stream), which saves a fence and
 * a cache line per request, and at once when the ring is empty.  So cells
 * are held back only while a request is queued that this server will take,
 * and taking the last one flushes them (take_from): a sender never waits
 * for room that a server idle on its conversation keeps. */
void lmn__serve_give_back(struct lmn_bus *bus, struct lmn__conv *c, struct lmn__serve_end *e,
			  uint32_t cell)
{
	ck_pr_store_8(&e->at.states[cell], LMN__CELL_RETURNING);
	lmn__rx_return(&e->cmd, e->at.freebuf[0], &bus->l, cell);
	if (lmn__rx_unflushed(&e->cmd) >= bus->return_batch)
		lmn__serve_flush_returns(bus, c, e);
	else
		lmn__serve_flush_if_drained(bus, c, e);
}

/* Is the conversation of msg still the tenant it came from, and still
 * served by us (ROUTE_NEXT may have moved it: then its cell is marked for
 * redelivery and no longer ours)? */
static bool still_ours(const struct lmn_bus *bus, struct lmn__conv *c, const struct lmn_msg *msg)
{
	return ck_pr_load_64(&c->slot) == lmn__slot_word(msg->conv_gen, LMN__SLOT_LIVE) &&
	       ck_pr_load_32(&c->server) == bus->self_idx &&
	       ck_pr_load_32(&c->server_gen) == bus->self_gen;
}

LMN_EXPORT int lmn_reply(lmn_msg *msg, const void *data, size_t len)
{
	struct lmn_bus *bus;
	struct lmn__serve_end *e;
	struct lmn__conv *c;
	uint32_t cell;
	int r;

	if (!msg || (!data && len))
		return -EINVAL;
	if (msg->kind != LMN_MSG_REQUEST)
		return -EINVAL;
	bus = msg->bus;
	if (!bus)
		return -ESTALE;
	if (len > bus->l.max_message)
		return -EMSGSIZE;
	c = lmn__conv_at(&bus->l, bus->base, msg->conv);
	lmn__lock_take(&bus->lock);
	if (!still_ours(bus, c, msg)) {
		r = -ESTALE;
		goto out;
	}
	r = lmn__phase_error(ck_pr_load_32(&c->phase));
	if (r < 0)
		goto out;
	e = lmn__serve_ends(bus, c, msg->conv, msg->conv_gen);
	if (!e) {
		r = -EUCLEAN;
		goto out;
	}
	/* A server never waits for a client: a full inbox is the client's
	 * problem, reported to the server as -EAGAIN. */
	r = lmn__tx_reserve(&e->inbox, &c->inbox, e->at.freebuf[1], &bus->l, &cell);
	if (r < 0)
		goto out;
	if (len)
		lmn__payload_copy(lmn__addrs_payload(&e->at, &bus->l, 1, cell), data, len);
	lmn__tx_publish(&e->inbox, &c->inbox, e->at.databuf[1], &bus->l, cell, c->replied + 1,
			msg->id, (uint32_t)len);
	ck_pr_store_64(&c->replied, c->replied + 1);
	ck_pr_store_8(&e->at.states[msg->cell], LMN__CELL_ANSWERED);
	if (lmn__word_signal(&c->inbox.data_word))
		lmn__wake(&c->inbox.data_word);
out:
	lmn__lock_drop(&bus->lock);
	return r;
}

/* Bus lock held. */
static void release_locked(struct lmn_bus *bus, struct lmn_msg *msg)
{
	struct lmn__conv *c = lmn__conv_at(&bus->l, bus->base, msg->conv);

	lmn__msgs_del(bus, msg);
	if (!still_ours(bus, c, msg))
		return;
	if (msg->kind == LMN_MSG_REQUEST) {
		struct lmn__serve_end *e = lmn__serve_ends(bus, c, msg->conv, msg->conv_gen);

		if (e)
			lmn__serve_give_back(bus, c, e, msg->cell);
		if (c->server_held)
			c->server_held--;
	} else {
		c->close_released = 1;
	}
	if (c->close_released && !c->server_held)
		server_done(bus, c, msg->conv, msg->conv_gen);
}

LMN_EXPORT int lmn_msg_release(lmn_msg *msg)
{
	struct lmn_bus *bus;

	if (!msg)
		return 0;
	bus = msg->bus;
	if (!bus) {
		free(msg);
		return 0;
	}
	lmn__lock_take(&bus->lock);
	release_locked(bus, msg);
	lmn__msg_free(bus, msg);
	lmn__lock_drop(&bus->lock);
	return 0;
}

/* Leaving: messages still held are detached, not released: their cells
 * keep their state (held, answered), so that the policy applied next can
 * redeliver what was not answered (ROUTE_NEXT) instead of losing it.  The
 * handles stay allocated until lmn_msg_release() frees them, and read as
 * empty meanwhile, since the segment they pointed into is gone.  Then every
 * conversation of this participant gets its policy, as for a death. */
void lmn__serve_leave(struct lmn_bus *bus)
{
	lmn__lock_take(&bus->lock);
	while (bus->msgs) {
		struct lmn_msg *m = bus->msgs;

		lmn__msgs_del(bus, m);
		/* The sender's name stays readable after the detach. */
		(void)lmn_msg_sender(m);
		m->bus = NULL;
		m->data = NULL;
		m->len = 0;
	}
	lmn__lock_drop(&bus->lock);
	lmn__part_begin_leave(&bus->l, bus->base, bus->self_idx, bus->self_gen);
	lmn__part_departed(&bus->l, bus->base, bus->self_idx, bus->self_gen, LMN__HEALTH_LEFT);
}
