/* SPDX-License-Identifier: MIT */
/*
 * The wake ahead (lmn__wait's wake_ahead): a sleep that is woken wakes one
 * sleeper on another word, in the kernel, before it is back in user space.
 * First the mechanism, between processes that sleep on words in a shared
 * page; then its two uses: a caller's sleep for its reply wakes its
 * server's doorbell, and a server's sleep wakes the caller it served last,
 * if it served that caller last before its previous sleep too.
 *
 * Whether a process is asleep is read from /proc: a task in state S inside
 * the futex or io_uring_enter system call has queued itself (between the
 * call's entry and its queueing it is running).  The futex(2) fallback has
 * no wake ahead; where it would matter, the tests check that none is sent.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "../lib/internal.h"

/* Two futex words in a page every process of the test shares. */
struct words {
	uint32_t word;  /* what the waker sleeps on */
	uint32_t ahead; /* what the sleeper we watch sleeps on */
	uint32_t server_idx;
	uint32_t sent; /* the request the test watches has been sent */
	uint32_t spare[2]; /* words nobody sleeps on */
};

static struct words *words_new(void)
{
	struct words *w = mmap(NULL, sizeof(*w), PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(w, MAP_FAILED);
	memset(w, 0, sizeof(*w));
	return w;
}

static int uring(void)
{
	return strcmp(lmn_wait_backend(), "io_uring") == 0;
}

/* The system call a sleep of this backend is made in. */
static long sleep_call(void)
{
	return uring() ? SYS_io_uring_enter : SYS_futex;
}

/* A sleeper on w->ahead, which nobody changes: exits 0 once woken, 1 if its
 * own deadline passed first. */
static int ahead_sleeper_main(void *p)
{
	struct words *w = p;
	int r = lmn__futex_wait(&w->ahead, 0, lmn__now_ns() + 10000000000ull);

	return r == 0 && ck_pr_load_32(&w->ahead) == 0 ? 0 : 1;
}

static pid_t start_ahead_sleeper(struct words *w)
{
	pid_t pid = th_fork(ahead_sleeper_main, w);

	ck_assert_int_eq(th_await_asleep(pid, SYS_futex, TH_TIMEOUT_MS), 0);
	return pid;
}

/* The sleeper on w->ahead is still asleep: wake it by hand and reap it. */
static void expect_still_asleep(struct words *w, pid_t sleeper)
{
	ck_assert(th_asleep_in(sleeper, sleeper, SYS_futex));
	lmn__futex_wake(&w->ahead);
	ck_assert_int_eq(th_wait(sleeper, TH_TIMEOUT_MS), 0);
}

/* Reap the sleeper on w->ahead, waking it if nothing has. */
static void reap_sleeper(struct words *w, pid_t sleeper)
{
	lmn__futex_wake(&w->ahead);
	ck_assert_int_eq(th_wait(sleeper, TH_TIMEOUT_MS), 0);
}

/* A waker: sleeps on w->word with a wake ahead on w->ahead, says it is
 * back, and parks until `done`, entering the kernel for nothing else: a
 * wake that the kernel kept for its next io_uring_enter, or for the ring's
 * teardown at exit, would not go out in time. */
struct waker {
	struct words *w;
	bool irregular; /* first, waits that end in other ways */
	struct th_event ready, back, done;
};

/* Waits that leave the most behind in the ring: a poll armed on a live
 * peer and a wait the word had already left, both with a wake ahead; then
 * the poll replaced (a cancel, a poll, a no-op) by a wait that times out. */
static int irregular_waits(struct words *w)
{
	int fd = (int)syscall(SYS_pidfd_open, getppid(), 0);
	int r1, r2;

	if (fd < 0)
		return -1;
	r1 = lmn__wait(&w->spare[0], 5, lmn__now_ns() + 10000000000ull, fd, 7, &w->spare[1]);
	r2 = lmn__wait(&w->spare[0], 0, lmn__now_ns() + 20000000ull, fd, 8, &w->spare[1]);
	close(fd);
	return r1 == 0 && r2 == -ETIMEDOUT ? 0 : -1;
}

static int waker_main(void *p)
{
	struct waker *k = p;
	int r;

	if (k->irregular && irregular_waits(k->w) < 0)
		return 3;
	th_event_fire(&k->ready);
	r = lmn__wait(&k->w->word, 0, lmn__now_ns() + 10000000000ull, -1, 0, &k->w->ahead);

	th_event_fire(&k->back);
	if (th_event_await(&k->done, TH_TIMEOUT_MS) < 0)
		return 2;
	return r == 0 ? 0 : 1;
}

static void woken_sleep_wakes_ahead_after(bool irregular)
{
	struct waker k = {.w = words_new(), .irregular = irregular};
	pid_t sleeper = start_ahead_sleeper(k.w), waker;

	th_event_new(&k.ready);
	th_event_new(&k.back);
	th_event_new(&k.done);
	waker = th_fork(waker_main, &k);
	ck_assert_int_eq(th_event_await(&k.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(th_await_asleep(waker, sleep_call(), TH_TIMEOUT_MS), 0);
	/* Wake the waker without changing its word: its sleep ends woken,
	 * not on a word that moved on. */
	lmn__futex_wake(&k.w->word);
	ck_assert_int_eq(th_event_await(&k.back, TH_TIMEOUT_MS), 0);
	if (uring())
		ck_assert_int_eq(th_wait(sleeper, TH_TIMEOUT_MS), 0);
	else
		expect_still_asleep(k.w, sleeper);
	th_event_fire(&k.done);
	ck_assert_int_eq(th_wait(waker, TH_TIMEOUT_MS), 0);
}

START_TEST(woken_sleep_wakes_ahead)
{
	woken_sleep_wakes_ahead_after(false);
}
END_TEST

/* What other waits left in the thread's ring must not hold the wake back
 * to the next sleep, nor count as this sleep's. */
START_TEST(woken_sleep_wakes_ahead_after_irregular_ones)
{
	woken_sleep_wakes_ahead_after(true);
}
END_TEST

START_TEST(word_moved_on_wakes_nobody)
{
	struct words *w = words_new();
	pid_t sleeper = start_ahead_sleeper(w);

	/* The word holds 0, the wait expects 5: it ends at once, and the
	 * wake linked to it is cancelled, not sent. */
	ck_assert_int_eq(lmn__wait(&w->word, 5, lmn__now_ns() + 10000000000ull, -1, 0, &w->ahead),
			 0);
	expect_still_asleep(w, sleeper);
}
END_TEST

/* A sleep that wakes ahead waits for two completions: one that ends at its
 * deadline must not wait for more.  (The kernel completes a cancelled
 * FUTEX_WAIT without failing its link, so the wake may go out: one wake
 * for nothing, which here ends the sleeper.) */
START_TEST(timeout_ends_a_sleep_that_wakes_ahead)
{
	struct words *w = words_new();
	pid_t sleeper = start_ahead_sleeper(w);
	uint64_t t0 = lmn__now_ns();

	ck_assert_int_eq(lmn__wait(&w->word, 0, t0 + 50000000ull, -1, 0, &w->ahead), -ETIMEDOUT);
	ck_assert_uint_ge(lmn__now_ns() - t0, 50000000ull);
	/* What the cancelled sleep left in the ring does not confuse the
	 * next: one the word has left ends at once and wakes nobody. */
	reap_sleeper(w, sleeper);
	sleeper = start_ahead_sleeper(w);
	ck_assert_int_eq(lmn__wait(&w->word, 5, lmn__now_ns() + 10000000000ull, -1, 0, &w->ahead),
			 0);
	expect_still_asleep(w, sleeper);
}
END_TEST

/* Dies once its parent sleeps. */
static int dying_peer_main(void *p)
{
	(void)p;
	return th_await_asleep(getppid(), sleep_call(), TH_TIMEOUT_MS) == 0 ? 0 : 1;
}

START_TEST(death_ends_a_sleep_that_wakes_ahead)
{
	struct words *w = words_new();
	pid_t sleeper = start_ahead_sleeper(w);
	pid_t peer = th_fork(dying_peer_main, NULL);
	int fd = (int)syscall(SYS_pidfd_open, peer, 0);
	uint64_t t0 = lmn__now_ns();
	int r;

	ck_assert_int_ge(fd, 0);
	/* io_uring polls the pidfd in the same sleep, which must end at the
	 * death although it waits for two completions; the fallback leaves
	 * deaths to the sentinel thread and sleeps until its deadline. */
	r = lmn__wait(&w->word, 0, t0 + (uring() ? 40000000000ull : 200000000ull), fd, 1,
		      &w->ahead);
	ck_assert_int_eq(r, uring() ? 1 : -ETIMEDOUT);
	/* Ended by the death, well before its deadline. */
	if (uring())
		ck_assert_uint_lt(lmn__now_ns() - t0, (uint64_t)TH_TIMEOUT_MS * 1000000ull);
	ck_assert_int_eq(th_wait(peer, TH_TIMEOUT_MS), 0);
	reap_sleeper(w, sleeper);
	close(fd);
}
END_TEST

/* A server for the two tests below.  Its first `answered` requests it
 * answers at once; the next it takes and holds, until its caller sleeps
 * for the reply (hold_reply) or for good; then it waits on a pipe, not on
 * its doorbell, so that the only sleeper left there is the test's.
 * `taken` fires when it holds that request. */
struct server {
	const char *bus;
	struct words *w;
	int answered;
	bool hold_reply;
	struct th_event ready, taken, done;
};

static int server_main(void *p)
{
	struct server *s = p;
	lmn_bus *bus;
	lmn_msg *m;

	if (lmn_bus_join(s->bus, "server", &bus) < 0 || lmn_bus_serve(bus, "svc") < 0)
		return 10;
	ck_pr_store_32(&s->w->server_idx, bus->self_idx);
	th_event_fire(&s->ready);
	for (int n = 0; n <= s->answered; n++) {
		if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0 || lmn_msg_kind(m) != LMN_MSG_REQUEST)
			return 11;
		if (n == s->answered) {
			th_event_fire(&s->taken);
			if (!s->hold_reply)
				break;
			if (th_await_asleep(getppid(), sleep_call(), TH_TIMEOUT_MS) < 0)
				return 12;
		}
		if (lmn_reply(m, "pong", 4) < 0)
			return 13;
		lmn_msg_release(m);
	}
	if (th_event_await(&s->done, TH_TIMEOUT_MS) < 0)
		return 14;
	return 0;
}

static pid_t server_start(struct server *s, int answered, bool hold_reply)
{
	pid_t pid;

	s->bus = th_bus(8, 4, 64);
	s->w = words_new();
	s->answered = answered;
	s->hold_reply = hold_reply;
	th_event_new(&s->ready);
	th_event_new(&s->taken);
	th_event_new(&s->done);
	pid = th_fork(server_main, s);
	ck_assert_int_eq(th_event_await(&s->ready, TH_TIMEOUT_MS), 0);
	return pid;
}

/* What a sleeper watches: one word of the bus, with the value it holds. */
struct watched {
	const char *bus;
	uint32_t server_idx; /* the server's doorbell, or */
	uint32_t conv_idx;   /* this conversation's reply word (UINT32_MAX: none) */
	uint32_t *sent;      /* if not NULL, wakes before it is set do not count */
};

static uint32_t *watched_word(const struct watched *x, lmn_bus *bus)
{
	if (x->conv_idx != UINT32_MAX)
		return &lmn__conv_at(&bus->l, bus->base, x->conv_idx)->inbox.data_word;
	return &lmn__part(&bus->l, bus->base, x->server_idx)->doorbell;
}

/* Sleeps on x's word, with the value it holds, until a wake that leaves
 * the word as it was (a wake, not a bump) comes after x->sent is set (or
 * at all, with no x->sent): 0 then, with *early the wakes before; -1 on a
 * bump, a deadline or no bus. */
static int sleep_on_watched(const struct watched *x, int *early)
{
	uint64_t deadline = lmn__now_ns() + 10000000000ull;
	lmn_bus *bus;
	uint32_t *word, v;

	if (lmn_bus_join(x->bus, "watcher", &bus) < 0)
		return -1;
	word = watched_word(x, bus);
	v = ck_pr_load_32(word);
	for (;;) {
		if (lmn__futex_wait(word, v, deadline) != 0 || ck_pr_load_32(word) != v)
			return -1;
		if (!x->sent || ck_pr_load_32(x->sent))
			return 0;
		(*early)++;
	}
}

/* Exits 0 once woken (wakes before x->sent do not count), 1 otherwise. */
static int word_sleeper_main(void *p)
{
	int early = 0;

	return sleep_on_watched(p, &early) == 0 ? 0 : 1;
}

static pid_t start_word_sleeper(struct watched *x)
{
	pid_t pid = th_fork(word_sleeper_main, x);

	ck_assert_int_eq(th_await_asleep(pid, SYS_futex, TH_TIMEOUT_MS), 0);
	return pid;
}

/* The fallback sent no wake: the sleeper is still asleep; wake it by hand. */
static void expect_word_sleeper_asleep(const struct watched *x, lmn_bus *bus, pid_t sleeper)
{
	ck_assert(th_asleep_in(sleeper, sleeper, SYS_futex));
	lmn__futex_wake(watched_word(x, bus));
	ck_assert_int_eq(th_wait(sleeper, TH_TIMEOUT_MS), 0);
}

/* A call whose caller never sleeps, so that it sends no wake ahead: it
 * looks for the reply without waiting. */
static void call_awake(lmn_conv *conv)
{
	uint64_t end = th_now_ms() + TH_TIMEOUT_MS;
	char buf[8];
	ssize_t n;

	ck_assert_int_eq(lmn_send(conv, "a", 1, 0), 0);
	while ((n = lmn_recv(conv, buf, sizeof(buf), 0)) == -ETIMEDOUT) {
		ck_assert_uint_lt(th_now_ms(), end);
		sched_yield();
	}
	ck_assert_int_eq(n, 4);
}

/* Join as a caller, open a conversation to the server and make the calls
 * it answers at once.  Unless it is 0, wait for server (a pid) to sleep
 * after each before the next, and make them without sleeping: a caller's
 * wake ahead would wake the server from that sleep for nothing, and its
 * next sleep would then have none. */
static lmn_conv *first_calls(const struct server *s, pid_t server, lmn_bus **ret_bus)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_conv *conv;
	char buf[8];

	ck_assert_int_eq(lmn_bus_join(s->bus, "client", ret_bus), 0);
	ck_assert_int_eq(lmn_conv_open(*ret_bus, "svc", &cfg, &conv), 0);
	for (int i = 0; i < s->answered; i++) {
		if (!server) {
			ck_assert_int_eq(lmn_call(conv, "a", 1, buf, sizeof(buf), TH_TIMEOUT_MS), 4);
			continue;
		}
		call_awake(conv);
		if (i + 1 < s->answered)
			ck_assert_int_eq(th_await_asleep(server, -1, TH_TIMEOUT_MS), 0);
	}
	return conv;
}

/* Let the server go, and leave. */
static void finish(struct server *s, pid_t server, lmn_conv *conv, lmn_bus *bus)
{
	th_event_fire(&s->done);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}

START_TEST(caller_wakes_its_server_ahead)
{
	struct server s;
	pid_t server = server_start(&s, 1, true);
	struct watched x = {.bus = s.bus, .conv_idx = UINT32_MAX};
	lmn_bus *bus;
	lmn_conv *conv = first_calls(&s, 0, &bus);
	char buf[8];
	pid_t sleeper;

	ck_assert_int_eq(lmn_send(conv, "b", 1, 0), 0);
	/* Once the server holds the request it never touches its doorbell
	 * again: the sleeper is the only one there. */
	ck_assert_int_eq(th_event_await(&s.taken, TH_TIMEOUT_MS), 0);
	x.server_idx = ck_pr_load_32(&s.w->server_idx);
	sleeper = start_word_sleeper(&x);
	/* The server replies once we sleep; our sleep, woken, wakes the
	 * server's doorbell ahead. */
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), TH_TIMEOUT_MS), 4);
	ck_assert_int_eq(memcmp(buf, "pong", 4), 0);
	if (uring())
		ck_assert_int_eq(th_wait(sleeper, TH_TIMEOUT_MS), 0);
	else
		expect_word_sleeper_asleep(&x, bus, sleeper);
	finish(&s, server, conv, bus);
}
END_TEST

START_TEST(server_wakes_its_last_caller_ahead)
{
	struct server s;
	pid_t server = server_start(&s, 2, false);
	struct watched x = {.bus = s.bus, .sent = &s.w->sent};
	lmn_bus *bus;
	/* Two calls, with a sleep of the server after each, make us the
	 * caller it served last before each of its last two sleeps. */
	lmn_conv *conv = first_calls(&s, server, &bus);
	pid_t sleeper;

	x.conv_idx = conv->idx;
	/* Nobody sleeps on our reply word but the sleeper, and nobody will
	 * signal it: the server holds our next request unanswered.  Our
	 * calls never slept, so they sent the server no wake ahead that
	 * could wake it, and through it the sleeper, early; a wake before
	 * `sent` would not count anyway. */
	sleeper = start_word_sleeper(&x);
	ck_assert_int_eq(th_await_asleep(server, sleep_call(), TH_TIMEOUT_MS), 0);
	/* Our request wakes the server, whose sleep wakes the sleeper. */
	ck_assert_int_eq(th_await_asleep(sleeper, SYS_futex, TH_TIMEOUT_MS), 0);
	ck_pr_store_32(&s.w->sent, 1);
	ck_assert_int_eq(lmn_send(conv, "b", 1, 0), 0);
	if (uring()) {
		ck_assert_int_eq(th_wait(sleeper, TH_TIMEOUT_MS), 0);
	} else {
		ck_assert_int_eq(th_event_await(&s.taken, TH_TIMEOUT_MS), 0);
		expect_word_sleeper_asleep(&x, bus, sleeper);
	}
	finish(&s, server, conv, bus);
}
END_TEST

/* Exits with the count of the wakes of x's word before x->sent, or 101. */
static int counting_sleeper_main(void *p)
{
	int wakes = 0;

	return sleep_on_watched(p, &wakes) == 0 ? wakes : 101;
}

/* A caller that polls for a reply with short timeouts wakes its server
 * ahead once for the request, not once for each poll. */
START_TEST(polling_caller_wakes_its_server_once)
{
	struct server s;
	pid_t server = server_start(&s, 1, false);
	struct watched x = {.bus = s.bus, .conv_idx = UINT32_MAX, .sent = &s.w->sent};
	lmn_bus *bus;
	lmn_conv *conv = first_calls(&s, 0, &bus);
	char buf[8];
	pid_t sleeper;
	int wakes;

	ck_assert_int_eq(lmn_send(conv, "b", 1, 0), 0);
	ck_assert_int_eq(th_event_await(&s.taken, TH_TIMEOUT_MS), 0);
	x.server_idx = ck_pr_load_32(&s.w->server_idx);
	sleeper = th_fork(counting_sleeper_main, &x);
	ck_assert_int_eq(th_await_asleep(sleeper, SYS_futex, TH_TIMEOUT_MS), 0);
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 2), -ETIMEDOUT);
	ck_pr_store_32(&s.w->sent, 1);
	lmn__futex_wake(&lmn__part(&bus->l, bus->base, x.server_idx)->doorbell);
	wakes = th_wait(sleeper, TH_TIMEOUT_MS);
	if (uring())
		ck_assert_int_le(wakes, 1);
	else
		ck_assert_int_eq(wakes, 0);
	finish(&s, server, conv, bus);
}
END_TEST

START_TEST(callers_in_turn_get_no_wake_ahead)
{
	struct server s;
	pid_t server = server_start(&s, 2, false);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_bus *bus;
	lmn_conv *a, *b;

	ck_assert_int_eq(lmn_bus_join(s.bus, "client", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &a), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &b), 0);
	call_awake(a);
	ck_assert_int_eq(th_await_asleep(server, -1, TH_TIMEOUT_MS), 0);
	call_awake(b);
	/* Served a before its previous sleep and b before this one: the
	 * server sleeps without a wake ahead, so in futex(2) with either
	 * backend. */
	ck_assert_int_eq(th_await_asleep(server, SYS_futex, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_send(b, "b", 1, 0), 0);
	ck_assert_int_eq(th_event_await(&s.taken, TH_TIMEOUT_MS), 0);
	th_event_fire(&s.done);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_conv_free(a);
	lmn_conv_free(b);
	lmn_bus_leave(bus);
}
END_TEST

/* Voluntary context switches of the main thread of pid: its sleeps. */
static long sleeps_of(pid_t pid)
{
	char path[64], line[128];
	long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", (int)pid, (int)pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "voluntary_ctxt_switches: %ld", &n) == 1)
			break;
	fclose(f);
	ck_assert_int_ge(n, 0);
	return n;
}

/* A server that takes a request and holds it while it polls lmn_next()
 * with short timeouts, as a worker pool's dispatcher does.  It waits for
 * the caller; the caller waits for it.  Neither may wake the other for
 * nothing, round after round. */
#define POLLS 50

struct holder {
	const char *bus;
	pid_t server;
	struct th_event ready, taken, start, polled, answer;
};

static int holder_main(void *p)
{
	struct holder *h = p;
	lmn_bus *bus;
	lmn_msg *m, *other;

	if (lmn_bus_join(h->bus, "server", &bus) < 0 || lmn_bus_serve(bus, "svc") < 0)
		return 10;
	th_event_fire(&h->ready);
	/* Two answered at once, then the one held: we served its caller
	 * last before our previous sleep and again since, and only the
	 * request we hold keeps our polls from waking it ahead. */
	for (int i = 0; i < 2; i++) {
		if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0 || lmn_reply(m, "pong", 4) < 0)
			return 15;
		lmn_msg_release(m);
	}
	if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0)
		return 11;
	th_event_fire(&h->taken);
	if (th_event_await(&h->start, TH_TIMEOUT_MS) < 0)
		return 12;
	for (int i = 0; i < POLLS; i++)
		if (lmn_next(bus, &other, 2) != -ETIMEDOUT)
			return 13;
	th_event_fire(&h->polled);
	if (th_event_await(&h->answer, TH_TIMEOUT_MS) < 0 || lmn_reply(m, "pong", 4) < 0)
		return 14;
	lmn_msg_release(m);
	lmn_bus_leave(bus);
	return 0;
}

static int held_caller_main(void *p)
{
	struct holder *h = p;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_bus *bus;
	lmn_conv *conv;
	char buf[8];

	if (lmn_bus_join(h->bus, "client", &bus) < 0 || lmn_conv_open(bus, "svc", &cfg, &conv) < 0)
		return 10;
	for (int i = 0; i < 2; i++) {
		call_awake(conv);
		if (th_await_asleep(h->server, -1, TH_TIMEOUT_MS) < 0)
			return 12;
	}
	if (lmn_call(conv, "a", 1, buf, sizeof(buf), TH_TIMEOUT_MS) != 4)
		return 11;
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	return 0;
}

START_TEST(held_request_wakes_nobody_for_nothing)
{
	struct holder h = {.bus = th_bus(8, 4, 64)};
	pid_t server, caller;
	long s0, c0, s1, c1;

	th_event_new(&h.ready);
	th_event_new(&h.taken);
	th_event_new(&h.start);
	th_event_new(&h.polled);
	th_event_new(&h.answer);
	server = th_fork(holder_main, &h);
	h.server = server;
	ck_assert_int_eq(th_event_await(&h.ready, TH_TIMEOUT_MS), 0);
	caller = th_fork(held_caller_main, &h);
	ck_assert_int_eq(th_event_await(&h.taken, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(th_await_asleep(caller, -1, TH_TIMEOUT_MS), 0);
	s0 = sleeps_of(server);
	c0 = sleeps_of(caller);
	th_event_fire(&h.start);
	ck_assert_int_eq(th_event_await(&h.polled, TH_TIMEOUT_MS), 0);
	s1 = sleeps_of(server);
	c1 = sleeps_of(caller);
	/* One sleep per poll, a few for the events; the caller, asleep for
	 * the held request the whole time, none. */
	ck_assert_int_le(s1 - s0, POLLS + 10);
	ck_assert_int_eq(c1 - c0, 0);
	th_event_fire(&h.answer);
	ck_assert_int_eq(th_wait(caller, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
}
END_TEST

static Suite *wake_suite(void)
{
	Suite *s = suite_create("wake");
	TCase *tc = tcase_create("ahead");

	tcase_add_checked_fixture(tc, th_setup, th_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, woken_sleep_wakes_ahead);
	tcase_add_test(tc, woken_sleep_wakes_ahead_after_irregular_ones);
	tcase_add_test(tc, word_moved_on_wakes_nobody);
	tcase_add_test(tc, timeout_ends_a_sleep_that_wakes_ahead);
	tcase_add_test(tc, death_ends_a_sleep_that_wakes_ahead);
	tcase_add_test(tc, caller_wakes_its_server_ahead);
	tcase_add_test(tc, server_wakes_its_last_caller_ahead);
	tcase_add_test(tc, callers_in_turn_get_no_wake_ahead);
	tcase_add_test(tc, polling_caller_wakes_its_server_once);
	tcase_add_test(tc, held_request_wakes_nobody_for_nothing);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(wake_suite());
}
