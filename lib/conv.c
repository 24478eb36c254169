/* SPDX-License-Identifier: MIT */
/* Conversations, initiator side: open, close, free, state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>

#include "internal.h"
#include "../shm/channel.h"
#include "../shm/fence.h"
#include "../shm/ready.h"
#include "../shm/table.h"
#include "../shm/word.h"

static void list_add(struct lmn_bus *bus, struct lmn_conv *conv)
{
	conv->prev = NULL;
	conv->next = bus->convs;
	if (bus->convs)
		bus->convs->prev = conv;
	bus->convs = conv;
}

static void list_del(struct lmn_bus *bus, struct lmn_conv *conv)
{
	if (conv->prev)
		conv->prev->next = conv->next;
	else
		bus->convs = conv->next;
	if (conv->next)
		conv->next->prev = conv->prev;
	conv->prev = conv->next = NULL;
}

/* Wake everybody who sleeps on any word of the conversation, so that each
 * looks at the phase again.  After a departure, make the wake calls
 * whatever the sleeper bits say: a process killed between taking a
 * sleeper's bit (lmn__word_signal) and its wake call leaves a sleeper that
 * no bit shows any more, and that every later signaller would skip too. */
void lmn__conv_wake_all(struct lmn__conv *c, bool departed)
{
	uint32_t *words[] = {&c->inbox.data_word, &c->inbox.free_word, &c->cmd.data_word,
			     &c->cmd.free_word};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (departed)
			lmn__word_bump_keep(words[i]);
		else if (!lmn__word_bump(words[i]))
			continue;
		lmn__wake(words[i]);
	}
}

/* Tell the conversation's current server that something changed on it.
 * One full fence orders the caller's stores (a published request, a phase)
 * before every load below; a caller that counts (count not NULL) has the
 * fence add one to its counter.  A sender passes LMN__RING_UNLESS_POLLING:
 * while the server polls this conversation (server_polling, cleared by the
 * server before its last look at the ring) the marks and the doorbell are
 * not needed.  The reaper of a departed initiator passes
 * LMN__RING_DEPARTED: the doorbell is woken whatever its sleeper bit says,
 * since the dead process may have taken the bit and not made its wake
 * call (lmn__conv_wake_all). */
void lmn__conv_ring_server(const struct lmn__layout *l, void *base, struct lmn__conv *c,
			   uint32_t idx, unsigned how, uint64_t *count)
{
	uint32_t server;
	struct lmn__participant *p;

	if (count)
		lmn__fence_full_counting(count);
	else
		lmn__fence_full();
	if ((how & LMN__RING_UNLESS_POLLING) && ck_pr_load_32(&c->server_polling))
		return;
	server = ck_pr_load_32(&c->server);
	if (server >= l->participants)
		return;
	p = lmn__part(l, base, server);
	lmn__ready_mark(lmn__ready(l, base, server), l, idx);
	if (how & LMN__RING_DEPARTED) {
		lmn__word_bump_keep(&p->doorbell);
		lmn__wake(&p->doorbell);
	} else if (lmn__word_signal(&p->doorbell)) {
		lmn__wake(&p->doorbell);
	}
}

/* Move the phase forward one step with a CAS.  A repeated transition into
 * the phase the conversation is already in is a no-op; any transition the
 * lifecycle does not allow is refused with -EINVAL. */
int lmn__phase_step(uint32_t *phase, uint32_t to)
{
	uint32_t cur = ck_pr_load_32(phase);

	for (;;) {
		bool ok;

		if (cur == to)
			return 0;
		switch (to) {
		case LMN__PHASE_ACTIVE:
			ok = cur == LMN__PHASE_CREATED;
			break;
		case LMN__PHASE_COMPLETING:
			ok = cur == LMN__PHASE_ACTIVE;
			break;
		case LMN__PHASE_CLOSED:
			ok = cur == LMN__PHASE_COMPLETING;
			break;
		case LMN__PHASE_FAILED:
			ok = cur >= LMN__PHASE_CREATED && cur <= LMN__PHASE_COMPLETING;
			break;
		default:
			ok = false;
		}
		if (!ok)
			return cur >= LMN__PHASE_CREATED && cur <= LMN__PHASE_FAILED ? -EINVAL
										   : -EUCLEAN;
		/* Stores before a phase change (a last message) are visible
		 * to whoever sees the new phase. */
		ck_pr_fence_store_atomic();
		if (ck_pr_cas_32_value(phase, cur, to, &cur)) {
			ck_pr_fence_atomic();
			return 0;
		}
	}
}

int lmn__conv_check(struct lmn_conv *conv, struct lmn__conv **ret)
{
	struct lmn__conv *c;

	if (!conv->bus)
		return -ESTALE;
	c = conv->at.conv;
	if (ck_pr_load_64(&c->slot) != lmn__slot_word(conv->gen, LMN__SLOT_LIVE))
		return -ESTALE;
	*ret = c;
	return 0;
}

LMN_EXPORT int lmn_conv_open(lmn_bus *bus, const char *target,
			     const struct lmn_conv_config *config, lmn_conv **ret)
{
	uint32_t server = LMN__BUFFERING, server_gen = 0, idx, gen;
	struct lmn__participant *self, *sp = NULL;
	bool by_name = false;
	struct lmn_conv *conv;
	struct lmn__conv *c;
	int r;

	if (!bus || !config || !ret)
		return -EINVAL;
	if (config->policy < LMN_POLICY_FAIL || config->policy > LMN_POLICY_COMPENSATE ||
	    config->timeout_ms < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof(config->reserved) / sizeof(config->reserved[0]); i++)
		if (config->reserved[i])
			return -EINVAL;
	if (target) {
		r = lmn__check_name(target);
		if (r < 0)
			return r;
		r = lmn__part_find(&bus->l, bus->base, target, &server, &server_gen);
		by_name = r == 0;
		if (r < 0)
			r = lmn__part_find_server(&bus->l, bus->base, target, &server,
						  &server_gen);
		if (r < 0)
			return -ENOENT;
		sp = lmn__part(&bus->l, bus->base, server);
	}
	conv = calloc(1, sizeof(*conv));
	if (!conv)
		return -ENOMEM;
	r = lmn__conv_claim(&bus->l, bus->base, bus->pid, &idx, &gen);
	if (r == -ENOSPC && lmn__bus_reap(&bus->l, bus->base) > 0)
		r = lmn__conv_claim(&bus->l, bus->base, bus->pid, &idx, &gen);
	if (r < 0) {
		free(conv);
		return r;
	}

	c = lmn__conv_at(&bus->l, bus->base, idx);
	self = lmn__part(&bus->l, bus->base, bus->self_idx);
	c->phase = LMN__PHASE_CREATED;
	c->policy = (uint32_t)config->policy;
	c->initiator = bus->self_idx;
	c->initiator_gen = bus->self_gen;
	c->server = server;
	c->server_gen = server_gen;
	c->opened_ns = lmn__realtime_ns();
	c->deadline_ns = config->timeout_ms ? lmn__now_ns() + (uint64_t)config->timeout_ms * 1000000ull
					    : 0;
	c->refs = lmn__gen_word(gen, LMN__REF_INITIATOR | (sp ? LMN__REF_SERVER : 0));
	c->server_gone = lmn__gen_word(gen, 0);
	c->server_health = sp ? LMN__HEALTH_ALIVE : LMN__HEALTH_NONE;
	c->server_exit_ns = 0;
	c->initiator_gone = lmn__gen_word(gen, 0);
	c->initiator_health = LMN__HEALTH_ALIVE;
	c->initiator_exit_ns = 0;
	c->fail_errno = 0;
	c->ncrashes = 0;
	/* A record is complete once its action is set (crash_record). */
	for (uint32_t i = 0; i < LMN__CRASH_RECORDS; i++)
		c->crash[i].action = 0;
	c->server_polling = 0;
	c->redeliver = 0;
	memset(lmn__cell_states(&bus->l, bus->base, idx), 0, bus->l.ring_depth);
	memset(c->service, 0, sizeof(c->service));
	if (sp && !by_name)
		memcpy(c->service, target, strlen(target));
	c->initiator_pid = self->pid;
	memcpy(c->initiator_name, bus->self, sizeof(bus->self));
	memset(c->server_name, 0, sizeof(c->server_name));
	c->server_pid = 0;
	if (sp) {
		(void)lmn__name_copy(c->server_name, sp->name);
		c->server_pid = ck_pr_load_32((uint32_t *)&sp->pid);
	}
	c->sent = c->received = c->served = c->replied = 0;
	c->server_held = c->close_delivered = c->close_released = 0;
	lmn__chan_init(&c->cmd, lmn__databuf(&bus->l, bus->base, idx, 0),
		       lmn__freebuf(&bus->l, bus->base, idx, 0), bus->l.ring_depth, bus->l.ring_size);
	lmn__chan_init(&c->inbox, lmn__databuf(&bus->l, bus->base, idx, 1),
		       lmn__freebuf(&bus->l, bus->base, idx, 1), bus->l.ring_depth, bus->l.ring_size);
	/* Our ends: we produce the command channel (the inbox, when
	 * buffering) and consume the inbox.  Nobody else can reach the
	 * channels yet, so they cannot be damaged. */
	(void)lmn__tx_attach(&conv->tx, sp ? &c->cmd : &c->inbox,
			     lmn__databuf(&bus->l, bus->base, idx, sp ? 0 : 1), bus->l.ring_size);
	(void)lmn__rx_attach(&conv->rx, &c->inbox, bus->l.ring_size);
	if (sp)
		ck_pr_inc_32(&sp->serving);
	/* Release: the entry is complete before anyone can see it live. */
	ck_pr_fence_store();
	ck_pr_store_64(&c->slot, lmn__slot_word(gen, LMN__SLOT_LIVE));
	/* Orders the publication before the check of the server's state; the
	 * leaving server orders its state change before its scan.  If it
	 * left in between, we end its part ourselves. */
	lmn__fence_full();
	if (sp && !lmn__part_live(&bus->l, bus->base, server, server_gen))
		lmn__server_departed(&bus->l, bus->base, idx, gen, server, server_gen,
				     lmn__part_exit_health(&bus->l, bus->base, server, server_gen));

	if (sp)
		lmn__sentinel_watch(bus, server, server_gen);
	lmn__conv_addrs_of(&bus->l, bus->base, idx, &conv->at);
	conv->bus = bus;
	conv->idx = idx;
	conv->gen = gen;
	conv->buffering = !sp;
	conv->deadline_ns = c->deadline_ns;
	lmn__lock_take(&bus->lock);
	list_add(bus, conv);
	lmn__lock_drop(&bus->lock);
	*ret = conv;
	return 0;
}

void lmn__conv_fill_info(struct lmn_conv *conv, struct lmn__conv *c, struct lmn_conv_info *ret)
{
	const struct lmn__layout *l = &conv->bus->l;
	struct lmn_conv_info info;
	uint32_t phase = ck_pr_load_32(&c->phase);

	memset(&info, 0, sizeof(info));
	info.id = ((uint64_t)conv->gen << 32) | conv->idx;
	info.phase = phase >= LMN__PHASE_CREATED && phase <= LMN__PHASE_FAILED
			     ? (enum lmn_phase)phase
			     : LMN_PHASE_FAILED;
	info.policy = (enum lmn_policy)ck_pr_load_32(&c->policy);
	info.sent = ck_pr_load_64(&c->sent);
	info.received = ck_pr_load_64(&c->received);
	info.deadline_ns = conv->deadline_ns;
	info.max_message = l->max_message;
	info.ring_depth = l->ring_depth;
	if (conv->buffering)
		return (void)(*ret = info);
	info.n_participants = 2;
	memcpy(info.participants[0].name, conv->bus->self, sizeof(conv->bus->self));
	info.participants[0].pid = c->initiator_pid;
	info.participants[0].health = LMN_HEALTH_ALIVE;
	if (lmn__name_copy(info.participants[1].name, c->server_name) < 0)
		info.participants[1].name[0] = '\0';
	info.participants[1].pid = c->server_pid;
	/* The server before the crash count: a reroute records the crash
	 * before it names the new server, so a moved conversation never
	 * shows without the record of the move. */
	ck_pr_fence_load();
	info.n_crashes = ck_pr_load_32(&c->ncrashes);
	for (uint32_t i = 0; i < info.n_crashes && i < LMN_CRASH_RECORDS; i++) {
		struct lmn__crash_rec *r = &c->crash[i];
		uint32_t a = ck_pr_load_32(&r->action);

		/* Counted but not yet written: report the records that are
		 * complete, and only those. */
		if (!a) {
			info.n_crashes = i;
			break;
		}
		/* The action before the fields its writer stored first. */
		ck_pr_fence_load();
		if (lmn__name_copy(info.crashes[i].name, r->name) < 0)
			info.crashes[i].name[0] = '\0';
		info.crashes[i].pid = r->pid;
		info.crashes[i].action = a >= LMN_CRASH_FAILED && a <= LMN_CRASH_INITIATOR
						 ? (enum lmn_crash_action)a
						 : LMN_CRASH_FAILED;
		info.crashes[i].exit_ns = r->exit_ns;
	}
	if (lmn__value_of(ck_pr_load_64(&c->server_gone)) == 1) {
		uint32_t h = ck_pr_load_32(&c->server_health);

		info.participants[1].health =
			h == LMN__HEALTH_CRASHED ? LMN_HEALTH_CRASHED : LMN_HEALTH_LEFT;
		info.participants[1].exit_ns = ck_pr_load_64(&c->server_exit_ns);
	} else {
		/* The server now: ROUTE_NEXT may have moved the conversation. */
		info.participants[1].health =
			lmn__part_live(l, conv->bus->base, ck_pr_load_32(&c->server),
				       ck_pr_load_32(&c->server_gen))
				? LMN_HEALTH_ALIVE
				: LMN_HEALTH_LEFT;
	}
	*ret = info;
}

/* The initiator's half of a close: the lifecycle steps and the wake-ups.
 * The slot itself is given back by lmn_conv_free(), once no other thread of
 * this process can be inside a call on the handle. */
static int conv_close(struct lmn_conv *conv)
{
	struct lmn__conv *c;
	uint32_t phase;
	int r;

	if (ck_pr_load_int(&conv->closed))
		return 0;
	r = lmn__conv_check(conv, &c);
	if (r < 0)
		return r;
	phase = ck_pr_load_32(&c->phase);
	if (phase != LMN__PHASE_FAILED) {
		/* CREATED -> ACTIVE if needed, then COMPLETING -> CLOSED. */
		r = lmn__phase_step(&c->phase, LMN__PHASE_ACTIVE);
		if (r == 0 || ck_pr_load_32(&c->phase) == LMN__PHASE_ACTIVE)
			r = lmn__phase_step(&c->phase, LMN__PHASE_COMPLETING);
		r = lmn__phase_step(&c->phase, LMN__PHASE_CLOSED);
		if (r < 0 && ck_pr_load_32(&c->phase) != LMN__PHASE_FAILED)
			return r;
	}
	/* One closer records the final state; the store fence publishes it
	 * before the flag that lmn_conv_state() reads first. */
	if (ck_pr_cas_int(&conv->closing, 0, 1)) {
		lmn__conv_fill_info(conv, c, &conv->final);
		ck_pr_fence_store();
		ck_pr_store_int(&conv->closed, 1);
	}
	lmn__conv_wake_all(c, false);
	if (!conv->buffering)
		lmn__conv_ring_server(&conv->bus->l, conv->bus->base, c, conv->idx, 0, NULL);
	return 0;
}

/* Close if needed and give the initiator's reference back.  Bus lock held. */
void lmn__conv_detach(struct lmn_conv *conv)
{
	struct lmn_bus *bus = conv->bus;

	if (!bus)
		return;
	(void)conv_close(conv);
	if (!ck_pr_load_int(&conv->closed)) {
		/* The slot went stale under us: keep what we know. */
		conv->final.phase = LMN_PHASE_FAILED;
		ck_pr_store_int(&conv->closed, 1);
	}
	/* The initiator's part ends once: a reaper may have ended it already
	 * if this process was taken for dead. */
	if (ck_pr_cas_64(&conv->at.conv->initiator_gone,
			 lmn__gen_word(conv->gen, 0), lmn__gen_word(conv->gen, 1)))
		lmn__conv_unref(&bus->l, bus->base, conv->idx, conv->gen, LMN__REF_INITIATOR);
	list_del(bus, conv);
	conv->bus = NULL;
}

LMN_EXPORT int lmn_conv_close(lmn_conv *conv)
{
	if (!conv)
		return -EINVAL;
	if (ck_pr_load_int(&conv->closed))
		return 0;
	return conv_close(conv);
}

LMN_EXPORT int lmn_conv_free(lmn_conv *conv)
{
	struct lmn_bus *bus;

	if (!conv)
		return 0;
	bus = conv->bus;
	if (bus) {
		lmn__lock_take(&bus->lock);
		lmn__conv_detach(conv);
		lmn__lock_drop(&bus->lock);
	}
	free(conv);
	return 0;
}

LMN_EXPORT int lmn_conv_state(lmn_conv *conv, struct lmn_conv_info *ret)
{
	struct lmn__conv *c;
	int r;

	if (!conv || !ret)
		return -EINVAL;
	if (ck_pr_load_int(&conv->closed)) {
		ck_pr_fence_load(); /* the flag before the record it guards */
		*ret = conv->final;
		return 0;
	}
	r = lmn__conv_check(conv, &c);
	if (r < 0)
		return r;
	lmn__conv_fill_info(conv, c, ret);
	return 0;
}
