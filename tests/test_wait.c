/* SPDX-License-Identifier: MIT */
/*
 * Waiting and waking: the backend in use, wakes across processes and
 * threads, signals during a wait, waits after fork, and the spin setting.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static int io_uring_futex_expected(void)
{
	struct utsname u;
	int major = 0, minor = 0, disabled = 0;
	FILE *f = fopen("/proc/sys/kernel/io_uring_disabled", "r");

	if (f) {
		if (fscanf(f, "%d", &disabled) != 1)
			disabled = 1;
		fclose(f);
	}
	if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return 0;
	/* IORING_OP_FUTEX_WAIT came with Linux 6.7. */
	return !disabled && (major > 6 || (major == 6 && minor >= 7));
}

START_TEST(backend_follows_environment)
{
	const char *env = getenv("LIMINAL_WAIT");
	const char *b = lmn_wait_backend();

	ck_assert_ptr_nonnull(b);
	if (env && !strcmp(env, "futex"))
		ck_assert_str_eq(b, "futex");
	else if (io_uring_futex_expected())
		ck_assert_str_eq(b, "io_uring");
	else
		ck_assert_str_eq(b, "futex");
	/* The choice is stable. */
	ck_assert_str_eq(lmn_wait_backend(), b);
}
END_TEST

struct sleeper {
	lmn_conv *conv;
	ssize_t result;
	char buf[16];
};

static void *sleeper_main(void *p)
{
	struct sleeper *s = p;

	s->result = lmn_recv(s->conv, s->buf, sizeof(s->buf), TH_TIMEOUT_MS);
	return NULL;
}

/* Several threads asleep on their own conversations, woken one by one by
 * replies from a server in another process. */
START_TEST(threads_woken_from_another_process)
{
	enum { THREADS = 4 };
	const char *name = th_bus(8, 4, 64);
	struct th_echo e = {.bus = name, .self = "srv", .service = "echo", .max_closes = THREADS};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct sleeper s[THREADS];
	pthread_t t[THREADS];
	lmn_bus *bus;
	pid_t server;

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 0), 0); /* sleep at once */
	server = th_echo_start(&e);
	for (int i = 0; i < THREADS; i++) {
		ck_assert_int_eq(lmn_conv_open(bus, "echo", &cfg, &s[i].conv), 0);
		/* Activate on this thread, receive on the other. */
		ck_assert_int_eq(lmn_send(s[i].conv, "t", 1, 0), 0);
		ck_assert_int_eq(pthread_create(&t[i], NULL, sleeper_main, &s[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_int_eq(s[i].result, 1);
		ck_assert_int_eq(s[i].buf[0], 't');
		lmn_conv_free(s[i].conv);
	}
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_bus_leave(bus);
}
END_TEST

static volatile sig_atomic_t signals;

static void on_signal(int sig)
{
	(void)sig;
	signals++;
}

/* A signal that lands during a wait does not end the wait early or lose
 * the message that follows. */
START_TEST(signal_during_wait)
{
	const char *name = th_bus(8, 4, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct sigaction sa = {.sa_handler = on_signal};
	struct sleeper s = {0};
	lmn_bus *bus;
	pthread_t t;

	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
	ck_assert_int_eq(lmn_bus_join(name, "me", &bus), 0);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 0), 0);
	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &s.conv), 0);
	ck_assert_int_eq(lmn_send(s.conv, "a", 1, 0), 0);
	ck_assert_int_eq(lmn_recv(s.conv, s.buf, sizeof(s.buf), 0), 1);
	ck_assert_int_eq(pthread_create(&t, NULL, sleeper_main, &s), 0);
	/* Signal it until the handler has run at least three times. */
	while (signals < 3) {
		pthread_kill(t, SIGUSR1);
		sched_yield();
	}
	ck_assert_int_eq(lmn_send(s.conv, "after", 5, 0), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(s.result, 5);
	ck_assert_mem_eq(s.buf, "after", 5);
	lmn_conv_free(s.conv);
	lmn_bus_leave(bus);
}
END_TEST

static int child_after_fork(void *p)
{
	const char *name = p;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_bus *bus;
	lmn_conv *conv;
	char rep[8];

	/* This process inherited the parent's ring; it must make its own. */
	if (lmn_bus_join(name, "child", &bus) < 0 || lmn_bus_set_spin(bus, 0) < 0)
		return 80;
	if (lmn_conv_open(bus, "echo", &cfg, &conv) < 0)
		return 81;
	for (int i = 0; i < 50; i++)
		if (lmn_call(conv, "fork", 4, rep, sizeof(rep), TH_TIMEOUT_MS) != 4)
			return 82;
	if (lmn_recv(conv, rep, sizeof(rep), 20) != -ETIMEDOUT)
		return 83;
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	return 0;
}

START_TEST(waits_after_fork)
{
	const char *name = th_bus(8, 4, 64);
	struct th_echo e = {.bus = name, .self = "srv", .service = "echo", .max_closes = 2};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	pid_t server, child;
	lmn_bus *bus;
	lmn_conv *conv;
	char rep[8];

	server = th_echo_start(&e);
	ck_assert_int_eq(lmn_bus_join(name, "parent", &bus), 0);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 0), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "echo", &cfg, &conv), 0);
	/* Block at least once here, so this thread has a ring to inherit. */
	ck_assert_int_eq(lmn_recv(conv, rep, sizeof(rep), 1), -ETIMEDOUT);
	ck_assert_int_eq(lmn_call(conv, "p", 1, rep, sizeof(rep), TH_TIMEOUT_MS), 1);
	child = th_fork(child_after_fork, (void *)name);
	ck_assert_int_eq(th_wait(child, TH_TIMEOUT_MS), 0);
	/* And the parent's ring still works. */
	ck_assert_int_eq(lmn_call(conv, "q", 1, rep, sizeof(rep), TH_TIMEOUT_MS), 1);
	lmn_conv_free(conv);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_bus_leave(bus);
}
END_TEST

START_TEST(spin_settings)
{
	const char *name = th_bus(8, 4, 64);
	struct th_echo e = {.bus = name, .self = "srv", .service = "echo", .max_closes = 1};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	pid_t server = th_echo_start(&e);
	uint32_t spins[] = {0, 1000, 200000, 1000000000u};
	lmn_bus *bus;
	lmn_conv *conv;
	char rep[8];

	ck_assert_int_eq(lmn_bus_join(name, "cli", &bus), 0);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 1000000001u), -EINVAL);
	ck_assert_int_eq(lmn_bus_set_spin(NULL, 0), -EINVAL);
	ck_assert_int_eq(lmn_conv_open(bus, "echo", &cfg, &conv), 0);
	for (size_t k = 0; k < sizeof(spins) / sizeof(spins[0]); k++) {
		ck_assert_int_eq(lmn_bus_set_spin(bus, spins[k]), 0);
		for (int i = 0; i < 200; i++)
			ck_assert_int_eq(lmn_call(conv, "s", 1, rep, sizeof(rep), TH_TIMEOUT_MS), 1);
	}
	lmn_conv_free(conv);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_bus_leave(bus);
}
END_TEST

struct slow_server {
	const char *bus;
	struct th_event ready, go;
};

/* Takes one request, answers it only when told to, then waits for the
 * close notice. */
static int slow_server_main(void *p)
{
	struct slow_server *s = p;
	lmn_bus *bus;
	lmn_msg *m;

	if (lmn_bus_join(s->bus, "slow", &bus) < 0 || lmn_bus_serve(bus, "slow") < 0)
		return 90;
	th_event_fire(&s->ready);
	if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0 || lmn_msg_kind(m) != LMN_MSG_REQUEST)
		return 91;
	if (th_event_await(&s->go, TH_TIMEOUT_MS) < 0)
		return 92;
	if (lmn_reply(m, "late", 4) < 0)
		return 93;
	lmn_msg_release(m);
	if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0 || lmn_msg_kind(m) != LMN_MSG_CLOSED)
		return 94;
	lmn_msg_release(m);
	lmn_bus_leave(bus);
	return 0;
}

static long ms_since(const struct timespec *a)
{
	struct timespec b;

	clock_gettime(CLOCK_MONOTONIC, &b);
	return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

/* A caller asleep on a live server's reply: each timeout ends its wait on
 * time and leaves nothing armed that would swallow the reply, which comes
 * through to the next receive. */
START_TEST(recv_times_out_on_a_live_server)
{
	struct slow_server s = {.bus = th_bus(8, 4, 64)};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct timespec t0;
	lmn_bus *bus;
	lmn_conv *conv;
	char rep[8];
	pid_t server;

	th_event_new(&s.ready);
	th_event_new(&s.go);
	server = th_fork(slow_server_main, &s);
	ck_assert_int_eq(th_event_await(&s.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_bus_join(s.bus, "cli", &bus), 0);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 0), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "slow", &cfg, &conv), 0);
	ck_assert_int_eq(lmn_send(conv, "q", 1, 0), 0);
	for (int i = 0; i < 3; i++) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
		ck_assert_int_eq(lmn_recv(conv, rep, sizeof(rep), 30), -ETIMEDOUT);
		ck_assert_int_ge(ms_since(&t0), 29);
	}
	th_event_fire(&s.go);
	ck_assert_int_eq(lmn_recv(conv, rep, sizeof(rep), TH_TIMEOUT_MS), 4);
	ck_assert_mem_eq(rep, "late", 4);
	lmn_conv_free(conv);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_bus_leave(bus);
}
END_TEST

/* A server blocked in lmn_next with a timeout returns on time when idle,
 * and at once when a request comes. */
START_TEST(next_times_out_when_idle)
{
	const char *name = th_bus(8, 4, 64);
	struct timespec a, b;
	lmn_bus *bus;
	lmn_msg *m = (lmn_msg *)&a;
	long ms;

	ck_assert_int_eq(lmn_bus_join(name, "srv", &bus), 0);
	ck_assert_int_eq(lmn_bus_serve(bus, "svc"), 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	ck_assert_int_eq(lmn_next(bus, &m, 40), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ck_assert_ptr_eq(m, (lmn_msg *)&a); /* untouched on failure */
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	ck_assert_int_ge(ms, 39);
	lmn_bus_leave(bus);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("wait");
	TCase *tc = tcase_create("wait");

	tcase_add_checked_fixture(tc, th_setup, th_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, backend_follows_environment);
	tcase_add_test(tc, threads_woken_from_another_process);
	tcase_add_test(tc, signal_during_wait);
	tcase_add_test(tc, waits_after_fork);
	tcase_add_test(tc, spin_settings);
	tcase_add_test(tc, next_times_out_when_idle);
	tcase_add_test(tc, recv_times_out_on_a_live_server);
	suite_add_tcase(s, tc);
	return th_run(s);
}
