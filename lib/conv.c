/* SPDX-License-Identifier: MIT */
/* Conversations, initiator side: open, close, free, state. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ck_pr.h>

#include "internal.h"
#include "../shm/channel.h"
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
 * looks at the phase again. */
static void wake_all(struct lmn__conv *c)
{
	uint32_t *words[] = {&c->inbox.data_word, &c->inbox.free_word, &c->cmd.data_word,
			     &c->cmd.free_word};

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (lmn__word_bump(words[i]))
			lmn__wake(words[i]);
}

/* Tell the server that something changed on this conversation. */
static void ring_server(struct lmn_bus *bus, struct lmn__conv *c, uint32_t idx, uint32_t server)
{
	struct lmn__participant *p;

	if (server >= bus->l.participants)
		return;
	p = lmn__part(&bus->l, bus->base, server);
	lmn__ready_mark(lmn__ready(&bus->l, bus->base, server), &bus->l, idx);
	if (lmn__word_signal(&p->doorbell))
		lmn__wake(&p->doorbell);
	(void)c;
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
	c = lmn__conv_at(&conv->bus->l, conv->bus->base, conv->idx);
	if (ck_pr_load_64(&c->slot) != lmn__slot_word(conv->gen, LMN__SLOT_LIVE))
		return -ESTALE;
	*ret = c;
	return 0;
}

/* The server's part ends (it left, or was found gone): record it, apply the
 * policy, wake the initiator, drop the server's reference.  Exactly once,
 * whoever calls it first. */
void lmn__conv_end_server(const struct lmn__layout *l, void *base, uint32_t idx, uint32_t gen,
			  uint32_t health)
{
	struct lmn__conv *c = lmn__conv_at(l, base, idx);

	if (!ck_pr_cas_64(&c->server_gone, lmn__gen_word(gen, 0), lmn__gen_word(gen, 1)))
		return;
	c->server_health = health;
	c->server_exit_ns = lmn__realtime_ns();
	if (ck_pr_load_32(&c->policy) == LMN_POLICY_FAIL ||
	    ck_pr_load_32(&c->policy) == LMN_POLICY_ROUTE_NEXT)
		(void)lmn__phase_step(&c->phase, LMN__PHASE_FAILED);
	lmn__part_unserve(l, base, c->server, c->server_gen);
	/* Orders the record above before the wake-ups: a receiver that wakes
	 * sees server_gone. */
	ck_pr_fence_store();
	wake_all(c);
	lmn__conv_unref(l, base, idx, gen);
}

LMN_EXPORT int lmn_conv_open(lmn_bus *bus, const char *target,
			     const struct lmn_conv_config *config, lmn_conv **ret)
{
	uint32_t server = LMN__BUFFERING, server_gen = 0, idx, gen;
	struct lmn__participant *self, *sp = NULL;
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
	r = lmn__conv_claim(&bus->l, bus->base, &idx, &gen);
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
	c->refs = lmn__gen_word(gen, sp ? 2 : 1);
	c->server_gone = lmn__gen_word(gen, 0);
	c->server_health = sp ? LMN__HEALTH_ALIVE : LMN__HEALTH_NONE;
	c->server_exit_ns = 0;
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
	lmn__chan_init(&c->cmd, lmn__ringbuf(&bus->l, bus->base, idx, 1), bus->l.ring_depth,
		       bus->l.ring_size);
	lmn__chan_init(&c->inbox, lmn__ringbuf(&bus->l, bus->base, idx, 3), bus->l.ring_depth,
		       bus->l.ring_size);
	if (sp)
		ck_pr_inc_32(&sp->serving);
	/* Release: the entry is complete before anyone can see it live. */
	ck_pr_fence_store();
	ck_pr_store_64(&c->slot, lmn__slot_word(gen, LMN__SLOT_LIVE));
	/* Orders the publication before the check of the server's state; the
	 * leaving server orders its state change before its scan.  If it
	 * left in between, we end its part ourselves. */
	ck_pr_fence_memory();
	if (sp && !lmn__part_live(&bus->l, bus->base, server, server_gen))
		lmn__conv_end_server(&bus->l, bus->base, idx, gen, LMN__HEALTH_LEFT);

	conv->bus = bus;
	conv->idx = idx;
	conv->gen = gen;
	conv->server = server;
	conv->server_gen = server_gen;
	conv->deadline_ns = c->deadline_ns;
	pthread_mutex_lock(&bus->lock);
	list_add(bus, conv);
	pthread_mutex_unlock(&bus->lock);
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
	if (conv->server == LMN__BUFFERING)
		return (void)(*ret = info);
	info.n_participants = 2;
	memcpy(info.participants[0].name, conv->bus->self, sizeof(conv->bus->self));
	info.participants[0].pid = c->initiator_pid;
	info.participants[0].health = LMN_HEALTH_ALIVE;
	if (lmn__name_copy(info.participants[1].name, c->server_name) < 0)
		info.participants[1].name[0] = '\0';
	info.participants[1].pid = c->server_pid;
	if (lmn__value_of(ck_pr_load_64(&c->server_gone))) {
		uint32_t h = ck_pr_load_32(&c->server_health);

		info.participants[1].health =
			h == LMN__HEALTH_CRASHED ? LMN_HEALTH_CRASHED : LMN_HEALTH_LEFT;
		info.participants[1].exit_ns = ck_pr_load_64(&c->server_exit_ns);
	} else {
		info.participants[1].health =
			lmn__part_live(l, conv->bus->base, conv->server, conv->server_gen)
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
	wake_all(c);
	if (conv->server != LMN__BUFFERING)
		ring_server(conv->bus, c, conv->idx, conv->server);
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
	lmn__conv_unref(&bus->l, bus->base, conv->idx, conv->gen);
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
		pthread_mutex_lock(&bus->lock);
		lmn__conv_detach(conv);
		pthread_mutex_unlock(&bus->lock);
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
