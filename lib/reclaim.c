/* SPDX-License-Identifier: MIT */
/*
 * When a participant departs, by leaving or by dying, each conversation it
 * took part in gets what its crash policy says, sleepers that depend on it
 * are woken, and whatever it held goes back to the bus.
 *
 * A death is claimed once, by whoever notices it first (a blocked peer, a
 * peer's sentinel thread, a joiner that wants the name, an opener that finds
 * the table full): one CAS moves the participant's slot from its state to
 * DEAD, and only the winner reclaims.  Within a conversation, each side's
 * part ends once: a CAS on a generation-tagged flag, so that two reclaimers,
 * or a reclaimer and the side itself, never both act.
 *
 * Who may call: anyone, concurrently.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "internal.h"
#include "../shm/channel.h"
#include "../shm/freering.h"
#include "../shm/fence.h"
#include "../shm/table.h"
#include "../shm/word.h"

enum { GONE_NO = 0, GONE_YES = 1, GONE_MOVING = 2 };

static void crash_record(struct lmn__conv *c, const char *name, int32_t pid, uint32_t action,
			 uint64_t exit_ns)
{
	uint32_t n = ck_pr_faa_32(&c->ncrashes, 1);
	struct lmn__crash_rec *r;

	if (n >= LMN__CRASH_RECORDS)
		return;
	r = &c->crash[n];
	(void)lmn__name_copy(r->name, name);
	r->pid = pid;
	r->exit_ns = exit_ns;
	/* The record, then its action, which says it is complete: a reader
	 * may see the count before we get here (lmn_conv_state). */
	ck_pr_fence_store();
	ck_pr_store_32(&r->action, action);
}

/* The live server of the conversation's service a reroute would move it
 * to, or -1 when there is none or the conversation is past routing. */
static int route_target(const struct lmn__layout *l, void *base, struct lmn__conv *c,
			uint32_t *ret_idx, uint32_t *ret_gen)
{
	char service[LMN__NAME_SIZE];

	if (lmn__name_copy(service, c->service) < 0 || !service[0])
		return -1;
	if (ck_pr_load_32(&c->phase) >= LMN__PHASE_COMPLETING)
		return -1; /* closing or failed: nothing left to route */
	return lmn__part_find_server(l, base, service, ret_idx, ret_gen) < 0 ? -1 : 0;
}

/* Move a conversation whose server departed to the live server ns of the
 * same service.  Requests the old server took and had not answered are
 * marked for redelivery; ones it answered, and ones it released but had
 * not yet published back (RETURNING), go back to the free ring (we stand in
 * for its consumer end now: the old server is gone and the new one is not
 * yet installed).  Requests still in the ring simply wait for the new server. */
static void reroute(const struct lmn__layout *l, void *base, struct lmn__conv *c, uint32_t idx,
		    uint32_t gen, uint32_t ns, uint32_t ngen)
{
	uint32_t old = c->server, old_gen = c->server_gen, redeliver = 0;
	uint8_t *states = lmn__cell_states(l, base, idx);
	struct lmn__participant *np;

	/* A server marks a cell held before it moves the ring's head past
	 * it: one that died in between left the cell both marked and still
	 * queued.  Queued cells will be delivered anyway: unmark them, or the
	 * same cell would go out twice and come back twice.  Queued means
	 * what the slots say from the head on, not the tail: a server sees
	 * an entry as soon as it is stored, before the tail counts it. */
	{
		struct lmn__entry *rb = lmn__databuf(l, base, idx, 0);
		unsigned int head = ck_pr_load_uint(&c->cmd.data.c_head);

		for (unsigned int k = head; k - head < l->ring_size; k++) {
			uint64_t v;

			if (!lmn__published(rb, l->ring_size, k, &v))
				break;
			if (lmn__entry_cell(v) < l->ring_depth)
				ck_pr_store_8(&states[lmn__entry_cell(v)], LMN__CELL_IDLE);
		}
	}
	for (uint32_t i = 0; i < l->ring_depth; i++) {
		uint8_t st = ck_pr_load_8(&states[i]);

		if (st == LMN__CELL_HELD || st == LMN__CELL_REDELIVER) {
			ck_pr_store_8(&states[i], LMN__CELL_REDELIVER);
			redeliver++;
		} else if (st == LMN__CELL_ANSWERED || st == LMN__CELL_RETURNING) {
			ck_pr_store_8(&states[i], LMN__CELL_IDLE);
			(void)lmn__chan_give_back(&c->cmd, lmn__freebuf(l, base, idx, 0), l, i);
		}
	}
	np = lmn__part(l, base, ns);
	ck_pr_store_32(&c->redeliver, redeliver);
	/* The old server's polling flag would make senders skip the marks
	 * the new one needs. */
	ck_pr_store_32(&c->server_polling, 0);
	c->server_held = 0;
	c->close_delivered = 0;
	c->close_released = 0;
	(void)lmn__name_copy(c->server_name, np->name);
	c->server_pid = ck_pr_load_32((uint32_t *)&np->pid);
	c->server_health = LMN__HEALTH_ALIVE;
	c->server_exit_ns = 0;
	ck_pr_inc_32(&np->serving);
	lmn__part_unserve(l, base, old, old_gen);
	/* The new server's identity (and the crash record our caller made),
	 * then the all-clear: take_from() checks both, in the other order. */
	ck_pr_store_32(&c->server, ns);
	ck_pr_store_32(&c->server_gen, ngen);
	ck_pr_fence_store();
	ck_pr_store_64(&c->server_gone, lmn__gen_word(gen, GONE_NO));
	/* The new server may have departed while we moved in: its own scan
	 * could have missed us, so look, and move on again if so. */
	lmn__fence_full();
	if (!lmn__part_live(l, base, ns, ngen))
		lmn__server_departed(l, base, idx, gen, ns, ngen,
				     lmn__part_exit_health(l, base, ns, ngen));
	else
		lmn__conv_ring_server(l, base, c, idx, 0, NULL);
	/* Cells given back above may be what a blocked sender waits for. */
	if (lmn__word_signal(&c->cmd.free_word))
		lmn__wake(&c->cmd.free_word);
}

void lmn__server_departed(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen,
			  uint32_t server, uint32_t server_gen, uint32_t health)
{
	struct lmn__conv *c = lmn__conv_at(l, base, idx);
	uint32_t policy, action;
	uint64_t exit_ns = lmn__realtime_ns();
	char name[LMN__NAME_SIZE];

	if (ck_pr_load_64(&c->slot) != lmn__slot_word(gen, LMN__SLOT_LIVE))
		return;
	/* Take the server's part: GONE_MOVING keeps receivers waiting while
	 * we decide, and keeps every other reclaimer out. */
	if (!ck_pr_cas_64(&c->server_gone, lmn__gen_word(gen, GONE_NO),
			  lmn__gen_word(gen, GONE_MOVING)))
		return;
	ck_pr_fence_atomic_load();
	if (ck_pr_load_32(&c->server) != server || ck_pr_load_32(&c->server_gen) != server_gen) {
		/* Already moved to someone else: not ours to end. */
		ck_pr_store_64(&c->server_gone, lmn__gen_word(gen, GONE_NO));
		return;
	}
	if (lmn__name_copy(name, c->server_name) < 0)
		name[0] = '\0';
	policy = ck_pr_load_32(&c->policy);
	if (policy == LMN_POLICY_ROUTE_NEXT) {
		uint32_t ns, ngen;

		if (route_target(l, base, c, &ns, &ngen) == 0) {
			/* Recorded before the move: once the new server is
			 * in, the caller may have its reply and read the
			 * conversation's state before we get here again. */
			if (health == LMN__HEALTH_CRASHED)
				crash_record(c, name, c->server_pid, LMN_CRASH_ROUTED, exit_ns);
			/* The record before the new server's name and pid,
			 * which lmn_conv_state() reads before the count. */
			ck_pr_fence_store();
			reroute(l, base, c, idx, gen, ns, ngen);
			/* Waiters look again: they must watch the new server's
			 * pidfd now, not the old one's. */
			lmn__conv_wake_all(c, true);
			return;
		}
		c->fail_errno = EHOSTUNREACH;
		action = LMN_CRASH_NO_SERVER;
	} else {
		if (policy != LMN_POLICY_COMPENSATE)
			c->fail_errno = ECONNRESET;
		action = policy == LMN_POLICY_COMPENSATE ? LMN_CRASH_RECORDED : LMN_CRASH_FAILED;
	}
	if (health == LMN__HEALTH_CRASHED)
		crash_record(c, name, c->server_pid, action, exit_ns);
	c->server_health = health;
	c->server_exit_ns = exit_ns;
	if (policy != LMN_POLICY_COMPENSATE)
		(void)lmn__phase_step(&c->phase, LMN__PHASE_FAILED);
	lmn__part_unserve(l, base, server, server_gen);
	/* The record above before the flag, the flag before the wake-ups: a
	 * receiver that wakes sees both. */
	ck_pr_fence_store();
	ck_pr_store_64(&c->server_gone, lmn__gen_word(gen, GONE_YES));
	lmn__conv_wake_all(c, true);
	lmn__conv_unref(l, base, idx, gen, LMN__REF_SERVER);
}

void lmn__initiator_departed(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen,
			     uint32_t health)
{
	struct lmn__conv *c = lmn__conv_at(l, base, idx);
	char name[LMN__NAME_SIZE];

	if (ck_pr_load_64(&c->slot) != lmn__slot_word(gen, LMN__SLOT_LIVE))
		return;
	if (!ck_pr_cas_64(&c->initiator_gone, lmn__gen_word(gen, 0), lmn__gen_word(gen, 1)))
		return;
	c->initiator_health = health;
	c->initiator_exit_ns = lmn__realtime_ns();
	if (health == LMN__HEALTH_CRASHED && lmn__name_copy(name, c->initiator_name) == 0)
		crash_record(c, name, c->initiator_pid, LMN_CRASH_INITIATOR, c->initiator_exit_ns);
	(void)lmn__phase_step(&c->phase, LMN__PHASE_FAILED);
	ck_pr_fence_store();
	lmn__conv_wake_all(c, true);
	/* The server learns through its ready bitmap, and drops its own
	 * reference when it releases the notice. */
	if (ck_pr_load_32(&c->server) < l->participants)
		lmn__conv_ring_server(l, base, c, idx, LMN__RING_DEPARTED, NULL);
	lmn__conv_unref(l, base, idx, gen, LMN__REF_INITIATOR);
}

void lmn__part_departed(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen,
			uint32_t health)
{
	int32_t pid = ck_pr_load_32((uint32_t *)&lmn__part(l, base, idx)->pid);

	for (uint32_t i = 0; i < l->conversations; i++) {
		struct lmn__conv *c = lmn__conv_at(l, base, i);
		uint64_t w = ck_pr_load_64(&c->slot);
		uint32_t st = lmn__slot_state(w);

		if (st == LMN__SLOT_CLAIMED && health == LMN__HEALTH_CRASHED &&
		    lmn__slot_pid(w) == (pid & 0xffffff) &&
		    !lmn__proc_alive(lmn__slot_pid(w), 0, 0, NULL)) {
			/* It died opening this one. */
			ck_pr_cas_64(&c->slot, w, lmn__slot_word(lmn__slot_gen(w), LMN__SLOT_FREE));
			continue;
		}
		if (st != LMN__SLOT_LIVE)
			continue;
		/* The slot before the fields its opener stored before it. */
		ck_pr_fence_load();
		if (ck_pr_load_32(&c->server) == idx && ck_pr_load_32(&c->server_gen) == gen) {
			lmn__server_departed(l, base, i, lmn__slot_gen(w), idx, gen, health);
			/* It may have ended its part itself (the close notice
			 * released) and died before dropping its reference. */
			if (ck_pr_load_64(&c->server_gone) ==
			    lmn__gen_word(lmn__slot_gen(w), GONE_YES))
				lmn__conv_unref(l, base, i, lmn__slot_gen(w), LMN__REF_SERVER);
		}
		if (ck_pr_load_32(&c->initiator) == idx && ck_pr_load_32(&c->initiator_gen) == gen) {
			lmn__initiator_departed(l, base, i, lmn__slot_gen(w), health);
			/* Likewise for an initiator killed inside lmn_conv_free. */
			if (lmn__value_of(ck_pr_load_64(&c->initiator_gone)) == 1)
				lmn__conv_unref(l, base, i, lmn__slot_gen(w), LMN__REF_INITIATOR);
		}
	}
}

/* Count the exit of tenant gen of slot idx, once however often called. */
static void exit_count(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen,
		       int crashed)
{
	struct lmn__participant *p = lmn__part(l, base, idx);
	uint64_t *word = crashed ? &p->crashes : &p->leaves;
	uint64_t v = ck_pr_load_64(word);

	while (lmn__gen_of(v) != gen &&
	       !ck_pr_cas_64_value(word, v, lmn__gen_word(gen, lmn__value_of(v) + 1), &v))
		;
}

void lmn__exit_record(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen,
		      int crashed)
{
	struct lmn__header *h = lmn__hdr(base);
	struct lmn__participant *p = lmn__part(l, base, idx);
	uint64_t t = ck_pr_faa_64(&h->exit_head, 1);
	struct lmn__exit_rec *r = &h->exits[t % LMN__EXIT_LOG];

	/* Torn while we write: a reader checks seq before and after. */
	ck_pr_store_64(&r->seq, 0);
	ck_pr_fence_store();
	r->exit_ns = lmn__realtime_ns();
	r->pid = p->pid;
	r->idx = idx;
	r->gen = gen;
	r->crashed = (uint32_t)crashed;
	if (lmn__name_copy(r->name, p->name) < 0)
		r->name[0] = '\0';
	ck_pr_fence_store();
	ck_pr_store_64(&r->seq, t + 1);
	exit_count(l, base, idx, gen, crashed);
	lmn__roster_wake(base);
}

/* Wake the roster's sleepers (watches, monitors) whatever its bit says:
 * once per departure, and a recorder killed between the bit and its wake
 * call (a leaver logging its own exit) leaves sleepers no bit shows. */
void lmn__roster_wake(void *base)
{
	uint32_t *word = &lmn__hdr(base)->roster_word;

	lmn__word_bump_keep(word);
	lmn__wake(word);
}

int lmn__exit_read(void *base, uint32_t i, struct lmn__exit_rec *out, bool *named)
{
	struct lmn__exit_rec *r = &lmn__hdr(base)->exits[i % LMN__EXIT_LOG];
	uint64_t s1 = ck_pr_load_64(&r->seq);

	if (!s1)
		return -ENOENT;
	/* seq before and after the fields: a record rewritten while we read
	 * it (the writer zeroes seq first and stores it last) is skipped. */
	ck_pr_fence_load();
	out->exit_ns = ck_pr_load_64(&r->exit_ns);
	out->pid = (int32_t)ck_pr_load_32((uint32_t *)&r->pid);
	out->idx = ck_pr_load_32(&r->idx);
	out->gen = ck_pr_load_32(&r->gen);
	out->crashed = ck_pr_load_32(&r->crashed);
	*named = lmn__name_copy(out->name, r->name) == 0;
	if (!*named)
		out->name[0] = '\0';
	ck_pr_fence_load();
	if (ck_pr_load_64(&r->seq) != s1)
		return -EAGAIN;
	out->seq = s1;
	return 0;
}

int lmn__exit_find(void *base, uint32_t idx, uint32_t gen, const char *name)
{
	uint64_t best_seq = 0;
	int result = 0;

	for (uint32_t i = 0; i < LMN__EXIT_LOG; i++) {
		struct lmn__exit_rec r;
		bool named;

		if (lmn__exit_read(base, i, &r, &named) < 0)
			continue;
		if (name ? !named || strcmp(r.name, name) != 0 : r.idx != idx || r.gen != gen)
			continue;
		if (r.seq > best_seq) {
			best_seq = r.seq;
			result = r.crashed ? 2 : 1;
		}
	}
	return result;
}

uint32_t lmn__part_exit_health(const struct lmn__layout *l, void *base, uint32_t idx,
			       uint32_t gen)
{
	struct lmn__participant *p;
	uint64_t w;

	if (idx >= l->participants)
		return LMN__HEALTH_LEFT;
	p = lmn__part(l, base, idx);
	w = ck_pr_load_64(&p->slot);
	if (lmn__slot_gen(w) == gen && lmn__slot_state(w) == LMN__SLOT_DEAD)
		return LMN__HEALTH_CRASHED;
	if (lmn__slot_gen(w) == gen && lmn__slot_state(w) == LMN__SLOT_CLOSING)
		return LMN__HEALTH_LEFT;
	return lmn__exit_find(base, idx, gen, NULL) == 2 ? LMN__HEALTH_CRASHED : LMN__HEALTH_LEFT;
}

static int reap(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen, bool exited)
{
	struct lmn__participant *p;
	uint64_t w, start = 0, ino = 0;
	uint32_t st;
	int32_t pid;

	if (idx >= l->participants)
		return 0;
	p = lmn__part(l, base, idx);
	w = ck_pr_load_64(&p->slot);
	st = lmn__slot_state(w);
	if (lmn__slot_gen(w) != gen || st == LMN__SLOT_FREE)
		return 1; /* gone already */
	if (st == LMN__SLOT_DEAD) {
		/* Being reclaimed: by a live process, leave it; by one that died
		 * half-way, take over (every step is guarded, so redoing them is
		 * safe). */
		if (lmn__proc_alive(lmn__slot_pid(w), 0, 0, NULL) ||
		    !ck_pr_cas_64(&p->slot, w, lmn__slot_dead(gen, getpid())))
			return 1;
		goto reclaim;
	}
	ck_pr_fence_load();
	if (st == LMN__SLOT_CLAIMED) {
		pid = lmn__slot_pid(w);
	} else {
		pid = ck_pr_load_32((uint32_t *)&p->pid);
		start = ck_pr_load_64(&p->start_time);
		ino = ck_pr_load_64(&p->pidfs_ino);
	}
	/* A caller that saw this tenant's own pidfd readable knows: the
	 * check would cost four system calls on the way to every caller
	 * blocked on the death (perf/README.md). */
	if (!exited && lmn__proc_alive(pid, start, ino, NULL))
		return 0;
	if (!ck_pr_cas_64(&p->slot, w, lmn__slot_dead(gen, getpid())))
		return 1;
	if (st == LMN__SLOT_CLAIMED || st == LMN__SLOT_JOINING)
		goto free_slot; /* never joined: nothing to reclaim, no exit */
reclaim:
	/* Killed while leaving, after it had logged its exit: it left, and
	 * its exit is not logged twice; we only finish its leave, and count it
	 * in case it was killed before it did (exit_count() counts it once). */
	if (lmn__exit_find(base, idx, gen, NULL) == 1) {
		p->health = LMN__HEALTH_LEFT;
		exit_count(l, base, idx, gen, 0);
		lmn__part_departed(l, base, idx, gen, LMN__HEALTH_LEFT);
		/* It may have died between its record's bit and its wake. */
		lmn__roster_wake(base);
		goto free_slot;
	}
	p->health = LMN__HEALTH_CRASHED;
	p->exit_ns = lmn__realtime_ns();
	lmn__part_departed(l, base, idx, gen, LMN__HEALTH_CRASHED);
	if (!lmn__exit_find(base, idx, gen, NULL))
		lmn__exit_record(l, base, idx, gen, 1);
	else { /* logged by a reaper killed before it counted */
		exit_count(l, base, idx, gen, 1);
		lmn__roster_wake(base);
	}
free_slot:
	ck_pr_fence_store();
	ck_pr_store_64(&p->slot, lmn__slot_word(gen, LMN__SLOT_FREE));
	return 1;
}

int lmn__part_reap(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen)
{
	return reap(l, base, idx, gen, false);
}

int lmn__part_reap_exited(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen)
{
	return reap(l, base, idx, gen, true);
}

int lmn__bus_reap(const struct lmn__layout *l, void *base)
{
	int n = 0;

	for (uint32_t i = 0; i < l->participants; i++) {
		uint64_t w = ck_pr_load_64(&lmn__part(l, base, i)->slot);
		uint32_t st = lmn__slot_state(w);

		if (st == LMN__SLOT_FREE)
			continue;
		if (lmn__part_reap(l, base, i, lmn__slot_gen(w)) &&
		    lmn__slot_state(ck_pr_load_64(&lmn__part(l, base, i)->slot)) == LMN__SLOT_FREE)
			n++;
	}
	/* Conversations whose opener died before publishing them, and those
	 * whose last reference was dropped by a process killed before it
	 * freed the slot.  A dropper dies so only on behalf of a side not its
	 * own (ending the part of a participant it reaped): its own sides are
	 * finished by its reaper, through lmn__conv_unref(). */
	for (uint32_t i = 0; i < l->conversations; i++) {
		struct lmn__conv *c = lmn__conv_at(l, base, i);
		uint64_t w = ck_pr_load_64(&c->slot), r;
		uint32_t gen = lmn__slot_gen(w);

		if (lmn__slot_state(w) == LMN__SLOT_LIVE) {
			/* The slot before the references: a later tenant's
			 * carry its own generation. */
			ck_pr_fence_load();
			r = ck_pr_load_64(&c->refs);
			if (lmn__gen_of(r) == gen && lmn__value_of(r) == 0 &&
			    lmn__conv_free_unreferenced(l, base, i, gen))
				n++;
			continue;
		}
		if (lmn__slot_state(w) != LMN__SLOT_CLAIMED)
			continue;
		if (!lmn__proc_alive(lmn__slot_pid(w), 0, 0, NULL) &&
		    ck_pr_cas_64(&c->slot, w, lmn__slot_word(gen, LMN__SLOT_FREE)))
			n++;
	}
	return n;
}
