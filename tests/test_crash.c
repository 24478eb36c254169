/* SPDX-License-Identifier: MIT */
/*
 * Crash handling: kill -9 of a server or an initiator, what each policy
 * does, who is woken, exit watches, reclamation, same-name restart, stale
 * buses, and a recycled pid that must not pass for the dead participant.
 */
#include <errno.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ck_pr.h>

#include "harness.h"
#include "../lib/internal.h"
#include "../shm/table.h"
#include "../shm/word.h"

/* A server child: echoes requests ("R:" in front of redelivered ones);
 * on a request "hold:SELF" it fires `holding` and stops answering, waiting
 * to be killed.  An alarm ends it if a test forgets to. */
struct srv {
	const char *bus;
	const char *self;
	const char *service;
	struct th_event ready, holding;
	struct th_event dropped; /* half_drop_main only */
};

static int srv_main(void *p)
{
	struct srv *s = p;
	lmn_bus *bus;

	alarm(60);
	if (lmn_bus_join(s->bus, s->self, &bus) < 0 || lmn_bus_serve(bus, s->service) < 0)
		return 10;
	th_event_fire(&s->ready);
	for (;;) {
		char out[80], hold[80], leave[80];
		lmn_msg *m;
		int n;

		snprintf(hold, sizeof(hold), "hold:%s", s->self);
		snprintf(leave, sizeof(leave), "leave:%s", s->self);
		if (lmn_next(bus, &m, -1) < 0)
			return 11;
		if (lmn_msg_kind(m) != LMN_MSG_REQUEST) {
			lmn_msg_release(m);
			continue;
		}
		if (lmn_msg_size(m) == strlen(leave) &&
		    !memcmp(lmn_msg_data(m), leave, strlen(leave))) {
			/* Leave cleanly with the request in hand, unanswered. */
			lmn_bus_leave(bus);
			lmn_msg_release(m);
			_exit(0);
		}
		if ((lmn_msg_size(m) == strlen(hold) && !memcmp(lmn_msg_data(m), hold, strlen(hold))) ||
		    (lmn_msg_size(m) == 6 && !memcmp(lmn_msg_data(m), "hold:*", 6))) {
			th_event_fire(&s->holding);
			pause();
		}
		n = snprintf(out, sizeof(out), "%s%.*s",
			     lmn_msg_flags(m) & LMN_MSG_REDELIVERED ? "R:" : "",
			     (int)lmn_msg_size(m), (const char *)lmn_msg_data(m));
		lmn_reply(m, out, (size_t)n);
		lmn_msg_release(m);
	}
}

static pid_t start_srv(struct srv *s, const char *bus, const char *self, const char *service)
{
	pid_t pid;

	*s = (struct srv){.bus = bus, .self = self, .service = service};
	th_event_new(&s->ready);
	th_event_new(&s->holding);
	pid = th_fork(srv_main, s);
	ck_assert_int_eq(th_event_await(&s->ready, TH_TIMEOUT_MS), 0);
	return pid;
}

static void kill_and_reap(pid_t pid)
{
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(th_wait(pid, TH_TIMEOUT_MS), -1);
}

struct receiver {
	lmn_conv *conv;
	ssize_t result;
	char buf[64];
};

static void *recv_main(void *p)
{
	struct receiver *r = p;

	r->result = lmn_recv(r->conv, r->buf, sizeof(r->buf), TH_TIMEOUT_MS);
	return NULL;
}

/* Bounded wait until a receiver has announced that it sleeps on the inbox:
 * then the kill lands on a real sleeper. */
static void await_sleeper(lmn_bus *bus, lmn_conv *conv)
{
	struct lmn__conv *c = lmn__conv_at(&bus->l, bus->base, conv->idx);
	uint64_t end = th_now_ms() + TH_TIMEOUT_MS;

	while (!(ck_pr_load_32(&c->inbox.data_word) & LMN__WORD_SLEEPER)) {
		ck_assert_uint_lt(th_now_ms(), end);
		sched_yield();
	}
}

static void assert_bus_empty(const char *name)
{
	struct lmn_bus_stat st;

	ck_assert_int_eq(lmn_bus_stat(name, &st), 0);
	ck_assert_uint_eq(st.participants_used, 0);
	ck_assert_uint_eq(st.conversations_used, 0);
	ck_assert_uint_eq(st.cells_used, 0);
}

static void pin_to(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(set), &set), 0);
}

/* FAIL: the blocked receive returns -ECONNRESET at once; the reply that had
 * landed before the crash is delivered first.  The server runs on CPU 0.
 * With one_cpu the receiver does too: it then sleeps in futex(2), not in
 * io_uring, and only the sentinel thread's watch on the server's pidfd can
 * wake it.  Without, the receiver runs on CPU 1 and (with the io_uring
 * backend) polls the server's pidfd in its own sleep. */
static void fail_wakes(bool one_cpu)
{
	const char *name = th_bus(8, 4, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct receiver r = {0};
	struct lmn_conv_info info;
	struct srv s;
	lmn_bus *bus;
	pthread_t t;
	pid_t pid;
	char buf[64];

	cpu_set_t all;
	bool pin;

	ck_assert_int_eq(sched_getaffinity(0, sizeof(all), &all), 0);
	/* Pinning needs CPUs 0 and 1; elsewhere the test still runs, on
	 * whichever path the scheduler picks. */
	pin = CPU_ISSET(0, &all) && CPU_ISSET(1, &all);
	if (pin)
		pin_to(0); /* inherited by the server forked below */
	pid = start_srv(&s, name, "srv", "svc");
	if (pin && !one_cpu)
		pin_to(1); /* inherited by the receiver thread */
	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 0), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &r.conv), 0);
	ck_assert_int_eq(lmn_send(r.conv, "one", 3, 0), 0);
	ck_assert_int_eq(lmn_send(r.conv, "hold:srv", 8, 0), 0);
	ck_assert_int_eq(th_event_await(&s.holding, TH_TIMEOUT_MS), 0);
	/* "one" was answered before the server began to hold. */
	ck_assert_int_eq(lmn_recv(r.conv, buf, sizeof(buf), TH_TIMEOUT_MS), 3);
	if (pin) {
		struct lmn__conv *c = lmn__conv_at(&bus->l, bus->base, r.conv->idx);

		/* The server last slept on CPU 0, which decides the path. */
		ck_assert_int_eq(lmn__part(&bus->l, bus->base, c->server)->doorbell_cpu, 0);
	}
	ck_assert_int_eq(pthread_create(&t, NULL, recv_main, &r), 0);
	await_sleeper(bus, r.conv);
	kill_and_reap(pid);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(r.result, -ECONNRESET);
	ck_assert_int_eq(lmn_conv_state(r.conv, &info), 0);
	ck_assert_int_eq(info.phase, LMN_PHASE_FAILED);
	ck_assert_int_eq(info.participants[1].health, LMN_HEALTH_CRASHED);
	ck_assert_uint_ne(info.participants[1].exit_ns, 0);
	ck_assert_uint_eq(info.n_crashes, 1);
	ck_assert_str_eq(info.crashes[0].name, "srv");
	ck_assert_int_eq(info.crashes[0].pid, pid);
	ck_assert_int_eq(info.crashes[0].action, LMN_CRASH_FAILED);
	ck_assert_int_eq(lmn_send(r.conv, "x", 1, 0), -ECONNRESET);
	lmn_conv_free(r.conv);
	lmn_bus_leave(bus);
	assert_bus_empty(name);
}

START_TEST(fail_wakes_blocked_receiver)
{
	fail_wakes(false);
}
END_TEST

START_TEST(fail_wakes_receiver_on_server_cpu)
{
	fail_wakes(true);
}
END_TEST

/* The same with a reply already waiting: it comes out before the error. */
START_TEST(fail_delivers_inbox_first)
{
	const char *name = th_bus(8, 4, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct srv s;
	lmn_bus *bus;
	lmn_conv *conv;
	pid_t pid = start_srv(&s, name, "srv", "svc");
	char buf[64];

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &conv), 0);
	ck_assert_int_eq(lmn_send(conv, "one", 3, 0), 0);
	ck_assert_int_eq(lmn_send(conv, "hold:srv", 8, 0), 0);
	ck_assert_int_eq(th_event_await(&s.holding, TH_TIMEOUT_MS), 0);
	kill_and_reap(pid);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), TH_TIMEOUT_MS), 3);
	ck_assert_mem_eq(buf, "one", 3);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), TH_TIMEOUT_MS), -ECONNRESET);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	assert_bus_empty(name);
}
END_TEST

/* ROUTE_NEXT: the unanswered request goes to the other server, marked
 * redelivered, and the blocked caller gets that server's reply. */
START_TEST(route_next_redelivers)
{
	const char *name = th_bus(8, 4, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_ROUTE_NEXT);
	struct receiver r = {0};
	struct lmn_conv_info info;
	struct srv s1, s2;
	lmn_bus *bus;
	pthread_t t;
	pid_t p1 = start_srv(&s1, name, "s1", "svc"), p2;
	char buf[64];

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 0), 0);
	/* Only s1 serves yet: the conversation goes there. */
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &r.conv), 0);
	p2 = start_srv(&s2, name, "s2", "svc");
	ck_assert_int_eq(lmn_call(r.conv, "a", 1, buf, sizeof(buf), TH_TIMEOUT_MS), 1);
	ck_assert_int_eq(lmn_send(r.conv, "hold:s1", 7, 0), 0);
	ck_assert_int_eq(th_event_await(&s1.holding, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_send(r.conv, "b", 1, 0), 0); /* queued behind it */
	ck_assert_int_eq(pthread_create(&t, NULL, recv_main, &r), 0);
	await_sleeper(bus, r.conv);
	kill_and_reap(p1);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	/* The held request first, redelivered, then the queued one. */
	ck_assert_int_eq(r.result, 9);
	ck_assert_mem_eq(r.buf, "R:hold:s1", 9);
	ck_assert_int_eq(lmn_recv(r.conv, buf, sizeof(buf), TH_TIMEOUT_MS), 1);
	ck_assert_mem_eq(buf, "b", 1);
	ck_assert_int_eq(lmn_call(r.conv, "c", 1, buf, sizeof(buf), TH_TIMEOUT_MS), 1);
	ck_assert_int_eq(lmn_conv_state(r.conv, &info), 0);
	ck_assert_int_eq(info.phase, LMN_PHASE_ACTIVE);
	ck_assert_str_eq(info.participants[1].name, "s2");
	ck_assert_int_eq(info.participants[1].health, LMN_HEALTH_ALIVE);
	ck_assert_uint_eq(info.n_crashes, 1);
	ck_assert_str_eq(info.crashes[0].name, "s1");
	ck_assert_int_eq(info.crashes[0].action, LMN_CRASH_ROUTED);
	/* With no server left: -EHOSTUNREACH. */
	kill_and_reap(p2);
	ck_assert_int_eq(lmn_call(r.conv, "d", 1, buf, sizeof(buf), TH_TIMEOUT_MS), -EHOSTUNREACH);
	ck_assert_int_eq(lmn_conv_state(r.conv, &info), 0);
	ck_assert_int_eq(info.phase, LMN_PHASE_FAILED);
	ck_assert_uint_eq(info.n_crashes, 2);
	ck_assert_int_eq(info.crashes[1].action, LMN_CRASH_NO_SERVER);
	lmn_conv_free(r.conv);
	lmn_bus_leave(bus);
	assert_bus_empty(name);
}
END_TEST

/* ROUTE_NEXT, twice: the server the conversation moved to dies too, while
 * the caller waits.  The caller must be watching the new server by then,
 * in either backend, and learn at once that no server is left. */
START_TEST(route_next_second_death)
{
	const char *name = th_bus(8, 4, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_ROUTE_NEXT);
	struct receiver r = {0};
	struct srv s1, s2;
	lmn_bus *bus;
	pthread_t t;
	pid_t p1 = start_srv(&s1, name, "s1", "svc"), p2;

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 0), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &r.conv), 0);
	p2 = start_srv(&s2, name, "s2", "svc");
	ck_assert_int_eq(lmn_send(r.conv, "hold:*", 6, 0), 0);
	ck_assert_int_eq(th_event_await(&s1.holding, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, recv_main, &r), 0);
	await_sleeper(bus, r.conv);
	kill_and_reap(p1);
	/* s2 holds the redelivered request in its turn. */
	ck_assert_int_eq(th_event_await(&s2.holding, TH_TIMEOUT_MS), 0);
	kill_and_reap(p2);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(r.result, -EHOSTUNREACH);
	lmn_conv_free(r.conv);
	lmn_bus_leave(bus);
	assert_bus_empty(name);
}
END_TEST

/* ROUTE_NEXT: a server gives command cells back in batches while requests
 * are queued.  One killed with cells released but not yet handed back must
 * not take them with it: after the move the conversation still has every
 * cell of its ring. */
START_TEST(route_next_keeps_returning_cells)
{
	const char *name = th_bus(8, 8, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_ROUTE_NEXT);
	const char *req[] = {"a", "b", "c", "hold:s1", "d", "e", "f", "g"};
	const char *rep[] = {"a", "b", "c", "R:hold:s1", "d", "e", "f", "g"};
	struct srv s1, s2;
	lmn_bus *bus;
	lmn_conv *conv;
	pid_t p1 = start_srv(&s1, name, "s1", "svc"), p2;
	char buf[64];
	int st, sent = 0;

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &conv), 0);
	p2 = start_srv(&s2, name, "s2", "svc");
	/* Fill the ring while s1 is stopped, so that it finds requests
	 * queued behind each one it releases: it holds those cells back. */
	ck_assert_int_eq(kill(p1, SIGSTOP), 0);
	ck_assert_int_eq(waitpid(p1, &st, WUNTRACED), p1);
	ck_assert(WIFSTOPPED(st));
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(lmn_send(conv, req[i], strlen(req[i]), LMN_SEND_NONBLOCK), 0);
	ck_assert_int_eq(kill(p1, SIGCONT), 0);
	ck_assert_int_eq(th_event_await(&s1.holding, TH_TIMEOUT_MS), 0);
	kill_and_reap(p1);
	/* s1's three replies, then s2's: the held request again, the rest. */
	for (int i = 0; i < 8; i++) {
		ssize_t n = lmn_recv(conv, buf, sizeof(buf), TH_TIMEOUT_MS);

		ck_assert_int_eq(n, (ssize_t)strlen(rep[i]));
		ck_assert_mem_eq(buf, rep[i], (size_t)n);
	}
	/* s2 holds one request; every other cell must be free to send in. */
	ck_assert_int_eq(lmn_send(conv, "hold:s2", 7, 0), 0);
	ck_assert_int_eq(th_event_await(&s2.holding, TH_TIMEOUT_MS), 0);
	while (lmn_send(conv, "x", 1, LMN_SEND_NONBLOCK) == 0)
		sent++;
	ck_assert_int_eq(sent, 7);
	ck_assert_int_eq(lmn_send(conv, "x", 1, LMN_SEND_NONBLOCK), -EAGAIN);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	/* Nobody depends on s2 now: gc reclaims it. */
	kill_and_reap(p2);
	ck_assert_int_eq(lmn_bus_gc(name), 1);
	assert_bus_empty(name);
}
END_TEST

/* ROUTE_NEXT on a clean leave: a server that leaves with a request in hand
 * does not lose it; the next server answers it, marked redelivered. */
START_TEST(route_next_on_leave)
{
	const char *name = th_bus(8, 4, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_ROUTE_NEXT);
	struct lmn_conv_info info;
	struct srv s1, s2;
	lmn_bus *bus;
	lmn_conv *conv;
	pid_t p1 = start_srv(&s1, name, "s1", "svc"), p2;
	char buf[64];

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &conv), 0);
	p2 = start_srv(&s2, name, "s2", "svc");
	ck_assert_int_eq(lmn_call(conv, "leave:s1", 8, buf, sizeof(buf), TH_TIMEOUT_MS), 10);
	ck_assert_mem_eq(buf, "R:leave:s1", 10);
	ck_assert_int_eq(th_wait(p1, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_conv_state(conv, &info), 0);
	ck_assert_str_eq(info.participants[1].name, "s2");
	ck_assert_uint_eq(info.n_crashes, 0); /* a leave is not a crash */
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	kill_and_reap(p2);
	/* Nobody depends on s2 any more, so nobody reaped it: the stats say
	 * so, read-only, and lmn_bus_gc reclaims it, with the conversation it
	 * may not have finished closing. */
	{
		struct lmn_bus_stat st;

		ck_assert_int_eq(lmn_bus_stat(name, &st), 0);
		ck_assert_uint_eq(st.participants_used, 1);
		ck_assert_uint_eq(st.participants_dead, 1);
		ck_assert_int_eq(lmn_bus_gc(name), 1);
		ck_assert_int_eq(lmn_bus_gc(name), 0);
		assert_bus_empty(name);
		ck_assert_int_eq(lmn_bus_gc("no-such-bus"), -ENOENT);
	}
}
END_TEST

/* COMPENSATE: the death is recorded, the phase stays, the caller decides. */
START_TEST(compensate_records)
{
	const char *name = th_bus(8, 4, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_COMPENSATE);
	struct lmn_conv_info info;
	struct srv s;
	lmn_bus *bus;
	lmn_conv *conv;
	pid_t pid = start_srv(&s, name, "srv", "svc");
	char buf[64];

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &conv), 0);
	ck_assert_int_eq(lmn_send(conv, "hold:srv", 8, 0), 0);
	ck_assert_int_eq(th_event_await(&s.holding, TH_TIMEOUT_MS), 0);
	kill_and_reap(pid);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), TH_TIMEOUT_MS), -ECONNRESET);
	ck_assert_int_eq(lmn_conv_state(conv, &info), 0);
	ck_assert_int_eq(info.phase, LMN_PHASE_ACTIVE);
	ck_assert_int_eq(info.participants[1].health, LMN_HEALTH_CRASHED);
	ck_assert_uint_eq(info.n_crashes, 1);
	ck_assert_int_eq(info.crashes[0].action, LMN_CRASH_RECORDED);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	assert_bus_empty(name);
}
END_TEST

/* An initiator dies: its conversation fails and the server, blocked in
 * lmn_next, is told with a CLOSED notice marked PEER_CRASHED. */
struct victim_client {
	const char *bus;
	struct th_event sent;
};

static int victim_client_main(void *p)
{
	struct victim_client *v = p;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_bus *bus;
	lmn_conv *conv;

	alarm(60);
	if (lmn_bus_join(v->bus, "victim", &bus) < 0 ||
	    lmn_conv_open(bus, "svc", &cfg, &conv) < 0)
		return 20;
	for (int i = 0; i < 3; i++)
		if (lmn_send(conv, "req", 3, 0) < 0)
			return 21;
	th_event_fire(&v->sent);
	pause();
	return 0;
}

START_TEST(initiator_death_tells_server)
{
	const char *name = th_bus(8, 4, 64);
	struct victim_client v = {.bus = name};
	lmn_bus *srv;
	lmn_msg *m;
	pid_t pid;

	ck_assert_int_eq(lmn_bus_join(name, "srv", &srv), 0);
	ck_assert_int_eq(lmn_bus_serve(srv, "svc"), 0);
	th_event_new(&v.sent);
	pid = th_fork(victim_client_main, &v);
	ck_assert_int_eq(th_event_await(&v.sent, TH_TIMEOUT_MS), 0);
	/* Take one request: now we depend on that client. */
	ck_assert_int_eq(lmn_next(srv, &m, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_msg_kind(m), LMN_MSG_REQUEST);
	kill_and_reap(pid);
	/* The notice comes.  Requests still queued are dropped once the
	 * death is reaped; the sentinel reaps it an instant after the kill,
	 * so one of them may still come out first. */
	{
		lmn_msg *n;
		int requests = 0;

		for (;;) {
			ck_assert_int_eq(lmn_next(srv, &n, TH_TIMEOUT_MS), 0);
			if (lmn_msg_kind(n) == LMN_MSG_CLOSED)
				break;
			ck_assert_int_le(++requests, 2);
			lmn_msg_release(n);
		}
		ck_assert_uint_ne(lmn_msg_flags(n) & LMN_MSG_PEER_CRASHED, 0);
		ck_assert_uint_eq(lmn_msg_conv_id(n), lmn_msg_conv_id(m));
		ck_assert_int_eq(lmn_reply(m, "late", 4), -ECONNRESET);
		lmn_msg_release(n);
	}
	lmn_msg_release(m);
	ck_assert_int_eq(lmn_next(srv, &m, 20), -ETIMEDOUT);
	lmn_bus_leave(srv);
	assert_bus_empty(name);
}
END_TEST

/* A participant killed while holding its name: a restarted process gets
 * the name at once, and the dead one's conversations are reclaimed. */
struct holder {
	const char *bus;
	struct th_event ready;
};

static int holder_main(void *p)
{
	struct holder *h = p;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_bus *bus;
	lmn_conv *conv;

	alarm(60);
	if (lmn_bus_join(h->bus, "worker", &bus) < 0)
		return 30;
	for (int i = 0; i < 3; i++)
		if (lmn_conv_open(bus, NULL, &cfg, &conv) < 0 || lmn_send(conv, "x", 1, 0) < 0)
			return 31;
	th_event_fire(&h->ready);
	pause();
	return 0;
}

START_TEST(same_name_restart)
{
	const char *name = th_bus(4, 4, 64);
	struct holder h = {.bus = name};
	struct lmn_bus_stat st;
	lmn_bus *bus;
	pid_t pid;

	th_event_new(&h.ready);
	pid = th_fork(holder_main, &h);
	ck_assert_int_eq(th_event_await(&h.ready, TH_TIMEOUT_MS), 0);
	kill_and_reap(pid);
	ck_assert_int_eq(lmn_bus_stat(name, &st), 0);
	ck_assert_uint_eq(st.participants_used, 1);
	ck_assert_uint_eq(st.participants_dead, 1);
	ck_assert_uint_eq(st.conversations_used, 3);
	ck_assert_int_eq(lmn_bus_join(name, "worker", &bus), 0);
	ck_assert_int_eq(lmn_bus_stat(name, &st), 0);
	ck_assert_uint_eq(st.participants_used, 1);
	ck_assert_uint_eq(st.participants_dead, 0);
	ck_assert_uint_eq(st.conversations_used, 0);
	ck_assert_uint_eq(st.cells_used, 0);
	ck_assert_uint_eq(st.crashes, 1);
	lmn_bus_leave(bus);
	assert_bus_empty(name);
}
END_TEST

/* A bus whose every process died is created again by name. */
static int stale_main(void *p)
{
	const char *name = p;
	lmn_bus *bus;

	if (lmn_bus_create(name, &(struct lmn_bus_config){.conversations = 4}) < 0 ||
	    lmn_bus_join(name, "lonely", &bus) < 0)
		return 40;
	raise(SIGKILL);
	return 41;
}

START_TEST(stale_bus_recreated)
{
	const char *name = th_bus_name();
	lmn_bus *bus;
	pid_t pid = th_fork(stale_main, (void *)name);

	ck_assert_int_eq(th_wait(pid, TH_TIMEOUT_MS), -1);
	/* Reopen works (and reclaims the dead)... */
	ck_assert_int_eq(lmn_bus_join(name, "lonely", &bus), 0);
	ck_assert_int_eq(lmn_bus_create(name, NULL), -EEXIST); /* we are alive on it */
	lmn_bus_leave(bus);
	/* ...and with nobody alive, create replaces it. */
	pid = th_fork(stale_main, (void *)name);
	ck_assert_int_eq(th_wait(pid, TH_TIMEOUT_MS), -1);
	ck_assert_int_eq(lmn_bus_create(name, NULL), 0);
	ck_assert_int_eq(lmn_bus_join(name, "lonely", &bus), 0);
	lmn_bus_leave(bus);
}
END_TEST

/* A bus made to be kept (as liminal create makes it) outlives its creator
 * and every participant: create does not replace it, whatever its config,
 * join takes it up, and only unlink removes it.  Its stat tells the flag,
 * and that the creator is gone as soon as it has exited, before its parent
 * reaps it. */
static int keeper_main(void *p)
{
	const char *name = p;
	lmn_bus *bus;

	if (lmn_bus_create(name, &(struct lmn_bus_config){.conversations = 4,
							  .max_message = 65536,
							  .flags = LMN_BUS_KEEP}) < 0 ||
	    lmn_bus_join(name, "lonely", &bus) < 0)
		return 40;
	raise(SIGKILL);
	return 41;
}

START_TEST(kept_bus_outlives_its_processes)
{
	const char *name = th_bus_name();
	struct lmn_bus_stat st;
	struct pollfd pfd = {.events = POLLIN};
	lmn_bus *bus;
	pid_t pid = th_fork(keeper_main, (void *)name);

	/* Exited, not reaped: a zombie, which kill(2) would call alive. */
	pfd.fd = (int)syscall(SYS_pidfd_open, pid, 0);
	ck_assert_int_ge(pfd.fd, 0);
	ck_assert_int_eq(poll(&pfd, 1, TH_TIMEOUT_MS), 1);
	close(pfd.fd);
	ck_assert_int_eq(lmn_bus_stat(name, &st), 0);
	ck_assert_uint_eq(st.flags, LMN_BUS_KEEP);
	ck_assert_int_eq(st.creator_pid, pid);
	ck_assert_uint_eq(st.creator_alive, 0);
	ck_assert_uint_eq(st.participants_dead, 1);
	ck_assert_int_eq(lmn_bus_create(name, NULL), -EEXIST);
	ck_assert_int_eq(th_wait(pid, TH_TIMEOUT_MS), -1);
	ck_assert_int_eq(lmn_bus_create(name, NULL), -EEXIST);
	ck_assert_int_eq(lmn_bus_create(name, &(struct lmn_bus_config){.flags = LMN_BUS_KEEP}),
			 -EEXIST);
	/* Still the first bus, with its sizes; joining reclaims the dead. */
	ck_assert_int_eq(lmn_bus_join(name, "lonely", &bus), 0);
	ck_assert_int_eq(lmn_bus_stat(name, &st), 0);
	ck_assert_uint_eq(st.max_message, 65536);
	ck_assert_uint_eq(st.participants_dead, 0);
	lmn_bus_leave(bus);
	ck_assert_int_eq(lmn_bus_create(name, NULL), -EEXIST);
	/* Removed by name, then made anew: not kept, and its creator is us. */
	ck_assert_int_eq(lmn_bus_unlink(name), 0);
	ck_assert_int_eq(lmn_bus_create(name, NULL), 0);
	ck_assert_int_eq(lmn_bus_stat(name, &st), 0);
	ck_assert_uint_eq(st.flags, 0);
	ck_assert_int_eq(st.creator_pid, getpid());
	ck_assert_uint_eq(st.creator_alive, 1);
	ck_assert_uint_eq(st.max_message, 4096);
}
END_TEST

/* Exit watches: exactly one notification, pollable, replayed when the exit
 * came first; a clean leave is an exit too. */
static int leaver_main(void *p)
{
	struct holder *h = p;
	lmn_bus *bus;

	if (lmn_bus_join(h->bus, "leaver", &bus) < 0)
		return 50;
	th_event_fire(&h->ready);
	return lmn_bus_leave(bus) == 0 ? 0 : 51;
}

START_TEST(watches_fire_once)
{
	const char *name = th_bus(4, 4, 64);
	struct holder h = {.bus = name}, l = {.bus = name};
	lmn_watch *w, *late, *lw;
	struct pollfd pfd;
	lmn_bus *bus;
	pid_t pid;

	ck_assert_int_eq(lmn_bus_join(name, "watcher", &bus), 0);
	ck_assert_int_eq(lmn_watch_open(bus, "nobody", &w), -ENOENT);
	th_event_new(&h.ready);
	pid = th_fork(holder_main, &h);
	ck_assert_int_eq(th_event_await(&h.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_watch_open(bus, "worker", &w), 0);
	ck_assert_int_eq(lmn_watch_wait(w, 0), -ETIMEDOUT);
	kill_and_reap(pid);
	/* The fd becomes readable without anyone calling the library. */
	pfd = (struct pollfd){.fd = lmn_watch_fd(w), .events = POLLIN};
	ck_assert_int_eq(poll(&pfd, 1, TH_TIMEOUT_MS), 1);
	ck_assert_int_eq(lmn_watch_wait(w, TH_TIMEOUT_MS), LMN_EXIT_CRASHED);
	ck_assert_int_eq(lmn_watch_wait(w, 0), -EALREADY);
	ck_assert_int_eq(poll(&pfd, 1, 0), 0);
	/* A watch opened after the exit hears it at once, once. */
	ck_assert_int_eq(lmn_watch_open(bus, "worker", &late), 0);
	ck_assert_int_eq(lmn_watch_wait(late, 0), LMN_EXIT_CRASHED);
	ck_assert_int_eq(lmn_watch_wait(late, 0), -EALREADY);
	/* A clean leave. */
	th_event_new(&l.ready);
	pid = th_fork(leaver_main, &l);
	ck_assert_int_eq(th_event_await(&l.ready, TH_TIMEOUT_MS), 0);
	if (lmn_watch_open(bus, "leaver", &lw) == 0) {
		ck_assert_int_eq(lmn_watch_wait(lw, TH_TIMEOUT_MS), LMN_EXIT_LEFT);
		lmn_watch_close(lw);
	}
	ck_assert_int_eq(th_wait(pid, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_watch_open(bus, "leaver", &lw), 0);
	ck_assert_int_eq(lmn_watch_wait(lw, 0), LMN_EXIT_LEFT);
	lmn_watch_close(lw);
	lmn_watch_close(w);
	lmn_watch_close(late);
	lmn_bus_leave(bus);
}
END_TEST

/* A recycled pid must not pass for the dead participant: the dead one's
 * pid is given to a new process (clone3 with set_tid, as root), and the
 * name must still be reclaimable. */
static pid_t clone_with_pid(pid_t want)
{
	struct clone_args args;

	memset(&args, 0, sizeof(args));
	args.exit_signal = SIGCHLD;
	args.set_tid = (uint64_t)(uintptr_t)&want;
	args.set_tid_size = 1;
	return (pid_t)syscall(SYS_clone3, &args, sizeof(args));
}

START_TEST(recycled_pid_not_mistaken)
{
	const char *name = th_bus(4, 4, 64);
	struct holder h = {.bus = name};
	struct th_event hold;
	lmn_bus *bus;
	pid_t pid, impostor;

	th_event_new(&h.ready);
	pid = th_fork(holder_main, &h);
	ck_assert_int_eq(th_event_await(&h.ready, TH_TIMEOUT_MS), 0);
	kill_and_reap(pid);
	th_event_new(&hold);
	impostor = clone_with_pid(pid);
	if (impostor < 0 && (errno == EPERM || errno == ENOSYS)) {
		/* Not root, or no clone3: this check cannot run here. */
		fprintf(stderr, "recycled_pid_not_mistaken: clone3 set_tid: %s\n", strerror(errno));
		return;
	}
	if (impostor == 0) {
		th_event_await(&hold, TH_TIMEOUT_MS);
		_exit(0);
	}
	ck_assert_int_eq(impostor, pid);
	/* The entry says pid P; P is alive again, but it is someone else. */
	ck_assert_int_eq(lmn_bus_join(name, "worker", &bus), 0);
	lmn_bus_leave(bus);
	th_event_fire(&hold);
	ck_assert_int_eq(th_wait(impostor, TH_TIMEOUT_MS), 0);
	assert_bus_empty(name);
}
END_TEST

/* A server sees a request as soon as its entry is stored, before the
 * sender's tail counts it.  One killed after marking such a request held,
 * before moving the ring past it, leaves it both marked and queued: the
 * move (ROUTE_NEXT) must see it queued by its slot, or the next server
 * gets it twice (redelivered, then from the ring) and its cell goes back
 * twice.  The window is a few instructions wide, so the segment is put in
 * that state by hand, in one process: the counters are set back as the
 * killed server and the half-way sender would have left them. */
START_TEST(reroute_sees_a_request_beyond_the_tail)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_ROUTE_NEXT);
	const char *name = th_bus(4, 4, 64);
	lmn_bus *a, *b, *cli;
	lmn_conv *conv;
	lmn_msg *m1, *m2, *m3;
	struct lmn__conv *c;

	ck_assert_int_eq(lmn_bus_join(name, "a", &a), 0);
	ck_assert_int_eq(lmn_bus_serve(a, "svc"), 0);
	ck_assert_int_eq(lmn_bus_join(name, "cli", &cli), 0);
	ck_assert_int_eq(lmn_conv_open(cli, "svc", &cfg, &conv), 0);
	ck_assert_int_eq(lmn_bus_join(name, "b", &b), 0);
	ck_assert_int_eq(lmn_bus_serve(b, "svc"), 0);
	c = lmn__conv_at(&cli->l, cli->base, conv->idx);
	ck_assert_uint_eq(c->server, a->self_idx);
	ck_assert_int_eq(lmn_send(conv, "x", 1, 0), 0);
	c->cmd.data.p_tail--; /* the sender has not counted it yet */
	ck_assert_int_eq(lmn_next(a, &m1, 0), 0);
	c->cmd.data.c_head--; /* a is killed before moving past it */
	ck_assert_int_eq(lmn_bus_leave(a), 0);
	c->cmd.data.p_tail++; /* the sender counts it */
	ck_assert_uint_eq(c->server, b->self_idx);
	ck_assert_int_eq(lmn_next(b, &m2, TH_TIMEOUT_MS), 0);
	ck_assert_uint_eq(lmn_msg_size(m2), 1);
	ck_assert_int_eq(lmn_next(b, &m3, 0), -ETIMEDOUT);
	ck_assert_int_eq(lmn_reply(m2, "y", 1), 0);
	lmn_msg_release(m2);
	lmn_msg_release(m1);
	{
		char buf[8];

		ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), TH_TIMEOUT_MS), 1);
		ck_assert_int_eq(buf[0], 'y');
	}
	/* Every cell came back once: a full ring's worth of sends fits, and
	 * one more does not. */
	for (uint32_t i = 0; i < cli->l.ring_depth; i++)
		ck_assert_int_eq(lmn_send(conv, "z", 1, LMN_SEND_NONBLOCK), 0);
	ck_assert_int_eq(lmn_send(conv, "z", 1, LMN_SEND_NONBLOCK), -EAGAIN);
	lmn_conv_free(conv);
	lmn_bus_leave(b);
	lmn_bus_leave(cli);
}
END_TEST

/* An io_uring waiter keeps its poll on a peer's pidfd armed across waits,
 * and tells by key whether the poll it has is on the peer it waits for
 * now.  A key must never come back for another descriptor: a poll left on
 * a dead peer of a bus since left would otherwise pass for the death of a
 * live peer now (a new bus handle can land at the old one's address, its
 * participants at the old indices and generations), and the live peer
 * would be reaped.  The keys name sentinel entries, never reused. */
START_TEST(pidfd_keys_are_never_reused)
{
	const char *name = th_bus(8, 4, 64);
	uint64_t k1 = 0, k2 = 0, k3 = 0;
	uint32_t idx, gen;
	struct srv s1;
	lmn_bus *bus;
	pid_t p1 = start_srv(&s1, name, "s1", "svc");
	int fd;

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn__part_find(&bus->l, bus->base, "s1", &idx, &gen), 0);
	fd = lmn__sentinel_pidfd(bus, idx, gen, false, &k1);
	ck_assert_int_ge(fd, 0);
	lmn__sentinel_put(bus, idx, gen, false);
	/* The same entry while it lasts... */
	ck_assert_int_ge(lmn__sentinel_pidfd(bus, idx, gen, false, &k2), 0);
	lmn__sentinel_put(bus, idx, gen, false);
	ck_assert_uint_eq(k1, k2);
	/* ...and a new key once it is forgotten, as when a bus is left. */
	lmn__sentinel_forget(bus);
	ck_assert_int_ge(lmn__sentinel_pidfd(bus, idx, gen, false, &k3), 0);
	lmn__sentinel_put(bus, idx, gen, false);
	ck_assert_uint_ne(k1, k3);
	kill_and_reap(p1);
	lmn_bus_leave(bus);
}
END_TEST

/* Bounded wait until participant (idx, gen) has been reaped and its slot
 * is free: a reaper frees it last, after the dead one's conversations. */
static void await_slot_free(lmn_bus *bus, uint32_t idx, uint32_t gen)
{
	uint64_t end = th_now_ms() + TH_TIMEOUT_MS;

	while (ck_pr_load_64(&lmn__part(&bus->l, bus->base, idx)->slot) !=
	       lmn__slot_word(gen, LMN__SLOT_FREE)) {
		ck_assert_uint_lt(th_now_ms(), end);
		sched_yield();
	}
}

/* The sentinel leaves a death to the waiters whose sleep polls the pidfd,
 * since they reap it themselves.  One counted as polling that never does
 * (its io_uring sleep fell back to futex(2)) must not leave the death
 * unreaped: the sentinel's look again, 100 ms on, reaps it. */
START_TEST(death_left_to_pollers_is_reaped)
{
	const char *name = th_bus(8, 4, 64);
	uint64_t key = 0;
	uint32_t idx, gen;
	struct srv s1;
	lmn_bus *bus;
	pid_t p1 = start_srv(&s1, name, "s1", "svc");

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn__part_find(&bus->l, bus->base, "s1", &idx, &gen), 0);
	ck_assert_int_ge(lmn__sentinel_pidfd(bus, idx, gen, true, &key), 0);
	kill_and_reap(p1);
	await_slot_free(bus, idx, gen);
	lmn__sentinel_put(bus, idx, gen, true);
	lmn_bus_leave(bus);
}
END_TEST

/* A server killed inside its last drop of a conversation's reference:
 * after the bit is cleared, before the slot is freed.  It does by hand what
 * lmn_msg_release() of the close notice does up to that instant. */
static int half_drop_main(void *p)
{
	struct srv *s = p;
	uint64_t end;
	lmn_bus *bus;
	lmn_msg *m;

	alarm(60);
	if (lmn_bus_join(s->bus, s->self, &bus) < 0 || lmn_bus_serve(bus, s->service) < 0)
		return 10;
	th_event_fire(&s->ready);
	for (;;) {
		struct lmn__conv *c;

		if (lmn_next(bus, &m, -1) < 0)
			return 11;
		if (lmn_msg_kind(m) != LMN_MSG_CLOSED) {
			lmn_msg_release(m);
			continue;
		}
		c = lmn__conv_at(&bus->l, bus->base, m->conv);
		/* Our part is over (server_done)... */
		if (!ck_pr_cas_64(&c->server_gone, lmn__gen_word(m->conv_gen, 0),
				  lmn__gen_word(m->conv_gen, 1)))
			return 12;
		/* ... and our reference, the last once the closer has dropped
		 * its own (it may not have yet: it tells us first), is
		 * dropped. */
		end = th_now_ms() + TH_TIMEOUT_MS;
		while (!ck_pr_cas_64(&c->refs, lmn__gen_word(m->conv_gen, LMN__REF_SERVER),
				     lmn__gen_word(m->conv_gen, 0))) {
			if (th_now_ms() > end)
				return 13;
			sched_yield();
		}
		/* The test learns that the kill lands between the two. */
		th_event_fire(&s->dropped);
		raise(SIGKILL);
		return 14;
	}
}

/* A process killed inside its wake of a sleeper: after it took the
 * sleeper's bit (lmn__word_signal), before its wake call.  No bit shows
 * the sleeper any more, so no later signaller wakes it: the reaper of the
 * dead process must.  The victims below do by hand what lmn_send() and
 * lmn_reply() do up to that instant. */
struct half_wake {
	const char *bus;
	pid_t server; /* the sleeper, for the initiator's case */
	bool answered_first; /* the initiator's case: the server watches it */
	struct th_event ready; /* the server's and the roster's case */
};

/* Once sleeper's main thread sleeps, take its bit on word, and die before
 * the wake call.  Returns only if something failed on the way. */
static int die_inside_wake(pid_t sleeper, uint32_t *word)
{
	if (th_await_asleep(sleeper, -1, TH_TIMEOUT_MS) < 0)
		return 30;
	if (!lmn__word_signal(word))
		return 31;
	raise(SIGKILL);
	return 32;
}

/* An initiator, on its server's doorbell. */
static int half_ring_main(void *p)
{
	struct half_wake *h = p;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	uint32_t *doorbell;
	char rep[8];
	lmn_bus *bus;
	lmn_conv *conv;

	alarm(60);
	if (lmn_bus_join(h->bus, "victim", &bus) < 0 ||
	    lmn_conv_open(bus, "svc", &cfg, &conv) < 0)
		return 20;
	/* Answered: the server depends on us now, and watches us.  Or not:
	 * then nobody watches us, and nobody reaps us. */
	if (h->answered_first && lmn_call(conv, "one", 3, rep, sizeof(rep), TH_TIMEOUT_MS) != 3)
		return 21;
	doorbell = &lmn__part(&bus->l, bus->base,
			      lmn__conv_at(&bus->l, bus->base, conv->idx)->server)->doorbell;
	return die_inside_wake(h->server, doorbell);
}

/* The server sleeps on with its bit gone; our call must reach it: woken
 * by the reaper of the dead initiator, well before the server would look
 * again by itself, or, when nobody watched that initiator, by that look. */
static void initiator_killed_inside_its_ring(bool answered_first)
{
	const char *name = th_bus(8, 4, 64);
	struct half_wake h = {.bus = name, .answered_first = answered_first};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_conv *conv;
	lmn_bus *bus;
	char rep[8];
	struct srv s;
	uint64_t t0;
	pid_t server;

	server = start_srv(&s, name, "srv", "svc");
	h.server = server;
	ck_assert_int_eq(th_wait(th_fork(half_ring_main, &h), TH_TIMEOUT_MS), -1);
	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &conv), 0);
	t0 = th_now_ns();
	ck_assert_int_eq(lmn_call(conv, "two", 3, rep, sizeof(rep), TH_TIMEOUT_MS), 3);
	ck_assert_mem_eq(rep, "two", 3);
	if (answered_first)
		ck_assert_uint_lt(th_now_ns() - t0, LMN__DOORBELL_LOOK_NS / 2);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	kill_and_reap(server);
}

START_TEST(initiator_killed_inside_its_wake)
{
	initiator_killed_inside_its_ring(true);
}
END_TEST

START_TEST(initiator_killed_inside_its_first_ring)
{
	initiator_killed_inside_its_ring(false);
}
END_TEST

/* A server, on the reply word its caller (our parent) sleeps on. */
static int half_reply_main(void *p)
{
	struct half_wake *h = p;
	lmn_bus *bus;
	lmn_msg *m;

	alarm(60);
	if (lmn_bus_join(h->bus, "srv", &bus) < 0 || lmn_bus_serve(bus, "svc") < 0)
		return 10;
	th_event_fire(&h->ready);
	if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0 || lmn_msg_kind(m) != LMN_MSG_REQUEST)
		return 11;
	return die_inside_wake(getppid(), &lmn__conv_at(&bus->l, bus->base, m->conv)->inbox.data_word);
}

/* With the futex backend the caller's own sleep does not watch the
 * server: only the reaper in its sentinel thread can wake it. */
START_TEST(server_killed_inside_its_wake)
{
	const char *name = th_bus(8, 4, 64);
	struct half_wake h = {.bus = name};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_conv *conv;
	lmn_bus *bus;
	char rep[8];
	uint64_t t0;
	pid_t server;

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 0), 0);
	th_event_new(&h.ready);
	server = th_fork(half_reply_main, &h);
	ck_assert_int_eq(th_event_await(&h.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &conv), 0);
	t0 = th_now_ms();
	ck_assert_int_eq(lmn_call(conv, "hold", 4, rep, sizeof(rep), TH_TIMEOUT_MS), -ECONNRESET);
	ck_assert_uint_lt(th_now_ms() - t0, TH_TIMEOUT_MS / 2);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), -1);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}
END_TEST

/* A process killed inside its wake of the roster (as a leaver logging its
 * own exit would be): a watch asleep on the roster must still hear of the
 * death, from the reaper's record of it.  With the futex backend the
 * watch's sleep does not poll the victim's pidfd. */
static int half_roster_main(void *p)
{
	struct half_wake *h = p;
	lmn_bus *bus;

	alarm(60);
	if (lmn_bus_join(h->bus, "victim", &bus) < 0)
		return 40;
	th_event_fire(&h->ready);
	return die_inside_wake(getppid(), &lmn__hdr(bus->base)->roster_word);
}

START_TEST(roster_waker_killed_inside_its_wake)
{
	const char *name = th_bus(4, 4, 64);
	struct half_wake h = {.bus = name};
	lmn_watch *w;
	lmn_bus *bus;
	uint64_t t0;
	pid_t pid;

	ck_assert_int_eq(lmn_bus_join(name, "watcher", &bus), 0);
	th_event_new(&h.ready);
	pid = th_fork(half_roster_main, &h);
	ck_assert_int_eq(th_event_await(&h.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_watch_open(bus, "victim", &w), 0);
	t0 = th_now_ms();
	ck_assert_int_eq(lmn_watch_wait(w, TH_TIMEOUT_MS), LMN_EXIT_CRASHED);
	ck_assert_uint_lt(th_now_ms() - t0, TH_TIMEOUT_MS / 2);
	ck_assert_int_eq(th_wait(pid, TH_TIMEOUT_MS), -1);
	lmn_watch_close(w);
	lmn_bus_leave(bus);
}
END_TEST

static uint32_t conversations_used(const char *name)
{
	struct lmn_bus_stat st;

	ck_assert_int_eq(lmn_bus_stat(name, &st), 0);
	return st.conversations_used;
}

/* The reaper of a dropper killed between its drop and the free finishes
 * the free: the slot does not stay in use with nobody referring to it. */
START_TEST(last_drop_killed_before_the_free)
{
	const char *name = th_bus(8, 4, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	uint32_t idx, gen;
	lmn_conv *conv;
	lmn_bus *bus;
	struct srv s = {.bus = name, .self = "srv", .service = "svc"};
	pid_t pid;

	th_event_new(&s.ready);
	th_event_new(&s.dropped);
	pid = th_fork(half_drop_main, &s);
	ck_assert_int_eq(th_event_await(&s.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn__part_find(&bus->l, bus->base, "srv", &idx, &gen), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &conv), 0);
	/* Our reference goes; the server's is the last. */
	lmn_conv_free(conv);
	ck_assert_int_eq(th_event_await(&s.dropped, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(th_wait(pid, TH_TIMEOUT_MS), -1);
	/* Reap it here, or see the sentinel do it: either way through the
	 * dead server's conversations, not through a scan of them all. */
	(void)lmn__part_reap(&bus->l, bus->base, idx, gen);
	await_slot_free(bus, idx, gen);
	ck_assert_uint_eq(conversations_used(name), 0);
	lmn_bus_leave(bus);
	assert_bus_empty(name);
}
END_TEST

/* A process that dropped the last reference for another side (a reaper
 * ending a dead participant's part) and was killed before the free has no
 * reaper that looks at that conversation: lmn_bus_gc() finds the slot in
 * use with no reference, and frees it.  The state is made by hand. */
START_TEST(unreferenced_slot_freed_by_gc)
{
	const char *name = th_bus(8, 4, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct lmn__conv *c;
	lmn_conv *conv;
	lmn_bus *bus;

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &conv), 0);
	c = lmn__conv_at(&bus->l, bus->base, conv->idx);
	ck_assert(ck_pr_cas_64(&c->initiator_gone, lmn__gen_word(conv->gen, 0),
			       lmn__gen_word(conv->gen, 1)));
	ck_assert(ck_pr_cas_64(&c->refs, lmn__gen_word(conv->gen, LMN__REF_INITIATOR),
			       lmn__gen_word(conv->gen, 0)));
	ck_assert_uint_eq(conversations_used(name), 1);
	ck_assert_int_eq(lmn_bus_gc(name), 1);
	ck_assert_uint_eq(conversations_used(name), 0);
	/* Our handle sees the slot gone, and gives nothing back twice. */
	ck_assert_int_eq(lmn_send(conv, "x", 1, 0), -ESTALE);
	lmn_conv_free(conv);
	ck_assert_int_eq(lmn_bus_gc(name), 0);
	lmn_bus_leave(bus);
	assert_bus_empty(name);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("crash");

	tcase_add_checked_fixture(tc, th_setup, th_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, fail_wakes_blocked_receiver);
	tcase_add_test(tc, fail_wakes_receiver_on_server_cpu);
	tcase_add_test(tc, fail_delivers_inbox_first);
	tcase_add_test(tc, initiator_killed_inside_its_wake);
	tcase_add_test(tc, initiator_killed_inside_its_first_ring);
	tcase_add_test(tc, roster_waker_killed_inside_its_wake);
	tcase_add_test(tc, server_killed_inside_its_wake);
	tcase_add_test(tc, route_next_redelivers);
	tcase_add_test(tc, route_next_second_death);
	tcase_add_test(tc, route_next_on_leave);
	tcase_add_test(tc, route_next_keeps_returning_cells);
	tcase_add_test(tc, compensate_records);
	tcase_add_test(tc, initiator_death_tells_server);
	tcase_add_test(tc, same_name_restart);
	tcase_add_test(tc, stale_bus_recreated);
	tcase_add_test(tc, kept_bus_outlives_its_processes);
	tcase_add_test(tc, watches_fire_once);
	tcase_add_test(tc, recycled_pid_not_mistaken);
	tcase_add_test(tc, reroute_sees_a_request_beyond_the_tail);
	tcase_add_test(tc, pidfd_keys_are_never_reused);
	tcase_add_test(tc, death_left_to_pollers_is_reaped);
	tcase_add_test(tc, last_drop_killed_before_the_free);
	tcase_add_test(tc, unreferenced_slot_freed_by_gc);
	suite_add_tcase(s, tc);
	return th_run(s);
}
