/* SPDX-License-Identifier: MIT */
/*
 * The lifecycle of a conversation: every allowed and refused transition,
 * the buffering conversation, and state queries.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <ck_pr.h>

#include "harness.h"
#include "../lib/internal.h"
#include "../shm/table.h"

/* The lifecycle table, straight from DESIGN.md. */
static int allowed(uint32_t from, uint32_t to)
{
	if (from == to)
		return 1; /* a repeated transition is a no-op */
	if (to == LMN__PHASE_FAILED)
		return from != LMN__PHASE_CLOSED;
	return (from == LMN__PHASE_CREATED && to == LMN__PHASE_ACTIVE) ||
	       (from == LMN__PHASE_ACTIVE && to == LMN__PHASE_COMPLETING) ||
	       (from == LMN__PHASE_COMPLETING && to == LMN__PHASE_CLOSED);
}

START_TEST(every_transition)
{
	int checked = 0;

	for (uint32_t from = LMN__PHASE_CREATED; from <= LMN__PHASE_FAILED; from++) {
		for (uint32_t to = LMN__PHASE_CREATED; to <= LMN__PHASE_FAILED; to++) {
			uint32_t phase = from;
			int r = lmn__phase_step(&phase, to);

			if (allowed(from, to)) {
				ck_assert_msg(r == 0, "%u -> %u refused", from, to);
				ck_assert_uint_eq(phase, to);
			} else {
				ck_assert_msg(r == -EINVAL, "%u -> %u gave %d", from, to, r);
				ck_assert_uint_eq(phase, from); /* never a silent change */
			}
			checked++;
		}
	}
	ck_assert_int_eq(checked, 25);
}
END_TEST

START_TEST(garbage_phase_is_refused)
{
	uint32_t phase = 0;

	ck_assert_int_eq(lmn__phase_step(&phase, LMN__PHASE_ACTIVE), -EUCLEAN);
	phase = 77;
	ck_assert_int_eq(lmn__phase_step(&phase, LMN__PHASE_FAILED), -EUCLEAN);
	ck_assert_uint_eq(phase, 77);
	phase = LMN__PHASE_ACTIVE;
	ck_assert_int_eq(lmn__phase_step(&phase, 9), -EINVAL);
	ck_assert_uint_eq(phase, LMN__PHASE_ACTIVE);
}
END_TEST

static lmn_bus *join_new(const char **name)
{
	lmn_bus *bus = NULL;

	*name = th_bus(8, 4, 256);
	ck_assert_int_eq(lmn_bus_join(*name, "me", &bus), 0);
	return bus;
}

static enum lmn_phase phase_of(lmn_conv *conv)
{
	struct lmn_conv_info info;

	ck_assert_int_eq(lmn_conv_state(conv, &info), 0);
	return info.phase;
}

START_TEST(buffering_conversation)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct lmn_conv_info info;
	const char *name;
	lmn_bus *bus = join_new(&name);
	lmn_conv *conv;
	char buf[256];

	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &conv), 0);
	ck_assert_int_eq(phase_of(conv), LMN_PHASE_CREATED);
	ck_assert_int_eq(lmn_send(conv, "one", 3, 0), 0);
	ck_assert_int_eq(phase_of(conv), LMN_PHASE_ACTIVE);
	ck_assert_int_eq(lmn_send(conv, "two!", 4, 0), 0);
	ck_assert_int_eq(lmn_send(conv, "", 0, 0), 0);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), 3);
	ck_assert_mem_eq(buf, "one", 3);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), 4);
	ck_assert_mem_eq(buf, "two!", 4);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), 0);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), -ETIMEDOUT);

	ck_assert_int_eq(lmn_conv_state(conv, &info), 0);
	ck_assert_uint_eq(info.sent, 3);
	ck_assert_uint_eq(info.received, 3);
	ck_assert_uint_eq(info.n_participants, 0);
	ck_assert_int_eq(info.policy, LMN_POLICY_FAIL);
	ck_assert_uint_eq(info.deadline_ns, 0);

	ck_assert_int_eq(lmn_conv_close(conv), 0);
	ck_assert_int_eq(phase_of(conv), LMN_PHASE_CLOSED);
	ck_assert_int_eq(lmn_conv_close(conv), 0); /* same phase: no-op */
	ck_assert_int_eq(lmn_send(conv, "x", 1, 0), -EPIPE);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), -EPIPE);
	ck_assert_int_eq(lmn_call(conv, "x", 1, buf, sizeof(buf), 0), -EPIPE);
	ck_assert_int_eq(lmn_conv_state(conv, &info), 0);
	ck_assert_int_eq(info.phase, LMN_PHASE_CLOSED);
	ck_assert_uint_eq(info.sent, 3);
	lmn_conv_free(conv);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

START_TEST(close_straight_from_created)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_COMPENSATE);
	const char *name;
	lmn_bus *bus = join_new(&name);
	lmn_conv *conv;

	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &conv), 0);
	ck_assert_int_eq(phase_of(conv), LMN_PHASE_CREATED);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	ck_assert_int_eq(phase_of(conv), LMN_PHASE_CLOSED);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}
END_TEST

START_TEST(buffering_ring_full_and_order)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const char *name;
	lmn_bus *bus = join_new(&name);
	lmn_conv *conv;
	uint32_t v;

	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &conv), 0);
	for (v = 0; v < 4; v++) /* depth 4 */
		ck_assert_int_eq(lmn_send(conv, &v, sizeof(v), LMN_SEND_NONBLOCK), 0);
	ck_assert_int_eq(lmn_send(conv, &v, sizeof(v), LMN_SEND_NONBLOCK), -EAGAIN);
	for (uint32_t want = 0; want < 4; want++) {
		ck_assert_int_eq(lmn_recv(conv, &v, sizeof(v), 0), (ssize_t)sizeof(v));
		ck_assert_uint_eq(v, want);
	}
	/* Room again, and the cells come back around many times. */
	for (v = 0; v < 1000; v++) {
		uint32_t got;

		ck_assert_int_eq(lmn_send(conv, &v, sizeof(v), LMN_SEND_NONBLOCK), 0);
		ck_assert_int_eq(lmn_recv(conv, &got, sizeof(got), 0), (ssize_t)sizeof(got));
		ck_assert_uint_eq(got, v);
	}
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}
END_TEST

START_TEST(small_buffer_keeps_message)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const char *name;
	lmn_bus *bus = join_new(&name);
	lmn_conv *conv;
	char small[4], big[64];

	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &conv), 0);
	ck_assert_int_eq(lmn_send(conv, "hello world", 11, 0), 0);
	ck_assert_int_eq(lmn_recv(conv, small, sizeof(small), 0), -EMSGSIZE);
	ck_assert_int_eq(lmn_recv(conv, big, sizeof(big), 0), 11);
	ck_assert_mem_eq(big, "hello world", 11);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}
END_TEST

START_TEST(timeouts_and_deadline)
{
	struct lmn_conv_config cfg = {.policy = LMN_POLICY_FAIL, .timeout_ms = 100};
	struct lmn_conv_info info;
	const char *name;
	lmn_bus *bus = join_new(&name);
	lmn_conv *conv, *plain;
	uint64_t t0;
	char buf[8];

	/* A receive's own timeout. */
	ck_assert_int_eq(lmn_conv_open(bus, NULL, &(struct lmn_conv_config){.policy = LMN_POLICY_FAIL},
				       &plain), 0);
	t0 = th_now_ms();
	ck_assert_int_eq(lmn_recv(plain, buf, sizeof(buf), 30), -ETIMEDOUT);
	ck_assert_uint_ge(th_now_ms() - t0, 30);

	/* The conversation's deadline bounds an endless receive and a send
	 * into a full ring alike. */
	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &conv), 0);
	ck_assert_int_eq(lmn_conv_state(conv, &info), 0);
	ck_assert_uint_ne(info.deadline_ns, 0);
	t0 = th_now_ms();
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(lmn_send(conv, "x", 1, LMN_SEND_NONBLOCK), 0);
	ck_assert_int_eq(lmn_send(conv, "x", 1, 0), -ETIMEDOUT);
	ck_assert_uint_ge(th_now_ms() - t0, 90);
	/* Past the deadline, what had arrived is still delivered; then every
	 * receive and send says -ETIMEDOUT at once. */
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), -1), 1);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), -1), -ETIMEDOUT);
	ck_assert_int_eq(lmn_send(conv, "x", 1, LMN_SEND_NONBLOCK), -ETIMEDOUT);
	lmn_conv_free(conv);
	lmn_conv_free(plain);
	lmn_bus_leave(bus);
}
END_TEST

struct waiter {
	lmn_conv *conv;
	ssize_t result;
};

static void *recv_thread(void *p)
{
	struct waiter *w = p;
	char buf[16];

	w->result = lmn_recv(w->conv, buf, sizeof(buf), TH_TIMEOUT_MS);
	return NULL;
}

/* Wait, bounded, until a receiver has announced that it sleeps on the
 * inbox word: then the close below really wakes a sleeper. */
static void await_sleeper(lmn_bus *bus, lmn_conv *conv)
{
	struct lmn__conv *c = lmn__conv_at(&bus->l, bus->base, conv->idx);
	uint64_t end = th_now_ms() + TH_TIMEOUT_MS;

	while (!(ck_pr_load_32(&c->inbox.data_word) & LMN__WORD_SLEEPER)) {
		ck_assert_uint_lt(th_now_ms(), end);
		sched_yield();
	}
}

START_TEST(close_wakes_receiver_in_other_thread)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const char *name;
	lmn_bus *bus = join_new(&name);
	struct waiter w = {0};
	pthread_t t;

	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &w.conv), 0);
	/* Activate first, so the other thread only receives. */
	ck_assert_int_eq(lmn_send(w.conv, "a", 1, 0), 0);
	ck_assert_int_eq(lmn_recv(w.conv, (char[4]){0}, 4, 0), 1);
	ck_assert_int_eq(pthread_create(&t, NULL, recv_thread, &w), 0);
	await_sleeper(bus, w.conv);
	ck_assert_int_eq(lmn_conv_close(w.conv), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(w.result, -EPIPE);
	lmn_conv_free(w.conv);
	lmn_bus_leave(bus);
}
END_TEST

START_TEST(send_wakes_receiver_in_other_thread)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const char *name;
	lmn_bus *bus = join_new(&name);
	struct waiter w = {0};
	pthread_t t;

	ck_assert_int_eq(lmn_bus_set_spin(bus, 0), 0);
	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &w.conv), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, recv_thread, &w), 0);
	await_sleeper(bus, w.conv);
	ck_assert_int_eq(lmn_send(w.conv, "wake", 4, 0), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(w.result, 4);
	lmn_conv_free(w.conv);
	lmn_bus_leave(bus);
}
END_TEST

START_TEST(state_after_leave_and_stale_handles)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct lmn_conv_info info;
	const char *name;
	lmn_bus *bus = join_new(&name);
	lmn_conv *conv;
	char buf[8];

	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &conv), 0);
	ck_assert_int_eq(lmn_send(conv, "x", 1, 0), 0);
	/* Leaving closes what is open; the handle stays for state and free. */
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
	ck_assert_int_eq(lmn_conv_state(conv, &info), 0);
	ck_assert_int_eq(info.phase, LMN_PHASE_CLOSED);
	ck_assert_uint_eq(info.sent, 1);
	ck_assert_int_eq(lmn_send(conv, "x", 1, 0), -ESTALE);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), -ESTALE);
	ck_assert_int_eq(lmn_conv_free(conv), 0);
}
END_TEST

START_TEST(stale_generation_is_refused)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const char *name;
	lmn_bus *bus = join_new(&name);
	struct lmn__conv *c;
	lmn_conv *conv;
	struct lmn_conv_info info;
	char buf[8];

	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &conv), 0);
	/* Pretend the slot was reclaimed and handed to a new tenant. */
	c = lmn__conv_at(&bus->l, bus->base, conv->idx);
	c->slot = lmn__slot_word(conv->gen + 1, LMN__SLOT_LIVE);
	ck_assert_int_eq(lmn_send(conv, "x", 1, 0), -ESTALE);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), -ESTALE);
	ck_assert_int_eq(lmn_conv_state(conv, &info), -ESTALE);
	ck_assert_int_eq(lmn_conv_close(conv), -ESTALE);
	c->slot = lmn__slot_word(conv->gen, LMN__SLOT_LIVE);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}
END_TEST

START_TEST(slots_come_back)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const char *name;
	lmn_bus *bus = join_new(&name);
	lmn_conv *convs[8], *extra;

	/* Eight slots: fill them, see the ninth refused, free, fill again. */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 8; i++)
			ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &convs[i]), 0);
		ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &extra), -ENOSPC);
		for (int i = 0; i < 8; i++)
			ck_assert_int_eq(lmn_conv_free(convs[i]), 0);
	}
	lmn_bus_leave(bus);
}
END_TEST

/* Each participant counts the requests it sent and took since it joined,
 * conversations that ended included (liminal top's totals): one
 * conversation, closed, then two threads calling at once on their own,
 * against a server in another process. */
struct caller {
	lmn_bus *bus;
	lmn_conv *conv;
	int calls;
};

static void *call_many(void *p)
{
	struct caller *k = p;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	char rep[8];

	if (lmn_conv_open(k->bus, "echo", &cfg, &k->conv) < 0)
		return NULL;
	for (int i = 0; i < k->calls; i++)
		if (lmn_call(k->conv, "ping", 4, rep, sizeof(rep), TH_TIMEOUT_MS) != 4)
			return NULL;
	return k;
}

START_TEST(participants_count_requests)
{
	const char *name = th_bus(16, 8, 64);
	struct th_echo e = {.bus = name, .self = "server", .service = "echo", .max_closes = 3};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct caller k[2];
	pthread_t t[2];
	uint32_t srv_idx, srv_gen;
	pid_t server = th_echo_start(&e);
	lmn_bus *bus;
	lmn_conv *conv;
	char rep[8];

	ck_assert_int_eq(lmn_bus_join(name, "client", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "echo", &cfg, &conv), 0);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(lmn_call(conv, "ping", 4, rep, sizeof(rep), TH_TIMEOUT_MS), 4);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	ck_assert_int_eq(lmn_conv_free(conv), 0);
	for (int i = 0; i < 2; i++) {
		k[i] = (struct caller){.bus = bus, .calls = 500};
		ck_assert_int_eq(pthread_create(&t[i], NULL, call_many, &k[i]), 0);
	}
	for (int i = 0; i < 2; i++) {
		void *ok;

		ck_assert_int_eq(pthread_join(t[i], &ok), 0);
		ck_assert_ptr_eq(ok, &k[i]);
	}
	ck_assert_uint_eq(ck_pr_load_64(&lmn__part(&bus->l, bus->base, bus->self_idx)->sent), 1100);
	ck_assert_uint_eq(ck_pr_load_64(&lmn__part(&bus->l, bus->base, bus->self_idx)->served), 0);
	ck_assert_int_eq(lmn__part_find(&bus->l, bus->base, "server", &srv_idx, &srv_gen), 0);
	ck_assert_uint_eq(ck_pr_load_64(&lmn__part(&bus->l, bus->base, srv_idx)->served), 1100);
	ck_assert_uint_eq(ck_pr_load_64(&lmn__part(&bus->l, bus->base, srv_idx)->sent), 0);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(lmn_conv_close(k[i].conv), 0);
		ck_assert_int_eq(lmn_conv_free(k[i].conv), 0);
	}
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_bus_leave(bus);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("lifecycle");
	TCase *tc = tcase_create("lifecycle");

	tcase_add_checked_fixture(tc, th_setup, th_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, every_transition);
	tcase_add_test(tc, garbage_phase_is_refused);
	tcase_add_test(tc, buffering_conversation);
	tcase_add_test(tc, close_straight_from_created);
	tcase_add_test(tc, buffering_ring_full_and_order);
	tcase_add_test(tc, small_buffer_keeps_message);
	tcase_add_test(tc, timeouts_and_deadline);
	tcase_add_test(tc, close_wakes_receiver_in_other_thread);
	tcase_add_test(tc, send_wakes_receiver_in_other_thread);
	tcase_add_test(tc, state_after_leave_and_stale_handles);
	tcase_add_test(tc, stale_generation_is_refused);
	tcase_add_test(tc, slots_come_back);
	tcase_add_test(tc, participants_count_requests);
	suite_add_tcase(s, tc);
	return th_run(s);
}
