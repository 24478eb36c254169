/* SPDX-License-Identifier: MIT */
/*
 * Request and reply across real processes: forked and exec'd participants,
 * many conversations at once, many clients, several servers of a service,
 * ring-full back-pressure, and what each side learns when the other closes
 * or leaves.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

START_TEST(echo_across_processes)
{
	const char *bus_name = th_bus(16, 8, 1024);
	struct th_echo e = {.bus = bus_name, .self = "server", .service = "echo", .max_closes = 1};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct lmn_conv_info info;
	pid_t server = th_echo_start(&e);
	lmn_bus *bus;
	lmn_conv *conv;

	ck_assert_int_eq(lmn_bus_join(bus_name, "client", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "echo", &cfg, &conv), 0);
	for (int i = 0; i < 2000; i++) {
		char req[1024], rep[1024];
		size_t n = (size_t)(i % 1000) + 1;

		memset(req, 'a' + i % 26, n);
		req[0] = (char)i;
		ck_assert_int_eq(lmn_call(conv, req, n, rep, sizeof(rep), TH_TIMEOUT_MS), (ssize_t)n);
		ck_assert_mem_eq(rep, req, n);
	}
	ck_assert_int_eq(lmn_conv_state(conv, &info), 0);
	ck_assert_uint_eq(info.sent, 2000);
	ck_assert_uint_eq(info.received, 2000);
	ck_assert_int_eq(info.phase, LMN_PHASE_ACTIVE);
	ck_assert_uint_eq(info.n_participants, 2);
	ck_assert_str_eq(info.participants[0].name, "client");
	ck_assert_int_eq(info.participants[0].pid, getpid());
	ck_assert_str_eq(info.participants[1].name, "server");
	ck_assert_int_eq(info.participants[1].pid, server);
	ck_assert_int_eq(info.participants[1].health, LMN_HEALTH_ALIVE);
	/* The server learns of the close and exits 0 only then. */
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}
END_TEST

/* Payloads of every size class, from and into buffers at every offset in
 * a page: the copies into and out of cells prefetch block by block above a
 * few lines, and nothing may be lost or moved at any boundary. */
START_TEST(large_payloads_across_processes)
{
	enum { MAX = 1u << 20 };
	const char *bus_name = th_bus(4, 2, MAX);
	struct th_echo e = {.bus = bus_name, .self = "server", .service = "echo", .max_closes = 1};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const size_t sizes[] = {0, 1, 255, 256, 257, 4095, 4096, 4097, 8191, 65539, MAX - 1, MAX};
	const size_t offs[] = {0, 1, 64, 4032, 4095};
	pid_t server = th_echo_start(&e);
	char *req = malloc(MAX + 8192), *rep = malloc(MAX + 8192);
	lmn_bus *bus;
	lmn_conv *conv;

	ck_assert_ptr_nonnull(req);
	ck_assert_ptr_nonnull(rep);
	for (size_t i = 0; i < MAX + 8192; i++)
		req[i] = (char)(i * 131 + i / 4093);
	ck_assert_int_eq(lmn_bus_join(bus_name, "client", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "echo", &cfg, &conv), 0);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		for (size_t o = 0; o < sizeof(offs) / sizeof(offs[0]); o++) {
			size_t n = sizes[k];
			char *in = req + offs[o], *out = rep + offs[(o + 1) % 5];

			memset(out, 0x5a, n + 1);
			ck_assert_int_eq(lmn_call(conv, in, n, out, MAX, TH_TIMEOUT_MS), (ssize_t)n);
			ck_assert_int_eq(memcmp(out, in, n), 0);
			ck_assert_int_eq(out[n], 0x5a); /* nothing past the end */
		}
	}
	/* One byte too many is refused, not cut. */
	ck_assert_int_eq(lmn_send(conv, req, MAX + 1, 0), -EMSGSIZE);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	free(req);
	free(rep);
}
END_TEST

START_TEST(participant_as_target)
{
	const char *bus_name = th_bus(16, 8, 256);
	struct th_echo e = {.bus = bus_name, .self = "alice", .max_closes = 1};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_COMPENSATE);
	pid_t server = th_echo_start(&e);
	lmn_bus *bus;
	lmn_conv *conv;
	char rep[8];

	ck_assert_int_eq(lmn_bus_join(bus_name, "bob", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "alice", &cfg, &conv), 0);
	ck_assert_int_eq(lmn_call(conv, "hi", 2, rep, sizeof(rep), TH_TIMEOUT_MS), 2);
	ck_assert_mem_eq(rep, "hi", 2);
	ck_assert_int_eq(lmn_conv_open(bus, "carol", &cfg, &(lmn_conv *){NULL}), -ENOENT);
	lmn_conv_free(conv); /* free closes */
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_bus_leave(bus);
}
END_TEST

/* Many conversations at once from one process, requests pipelined on each,
 * replies checked in order per conversation. */
START_TEST(many_conversations_pipelined)
{
	enum { CONVS = 24, DEPTH = 8, ROUNDS = 20 };
	const char *bus_name = th_bus(32, DEPTH, 64);
	struct th_echo e = {.bus = bus_name, .self = "server", .service = "echo",
			    .max_closes = CONVS};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	pid_t server = th_echo_start(&e);
	lmn_conv *convs[CONVS];
	lmn_bus *bus;

	ck_assert_int_eq(lmn_bus_join(bus_name, "client", &bus), 0);
	for (int i = 0; i < CONVS; i++)
		ck_assert_int_eq(lmn_conv_open(bus, "echo", &cfg, &convs[i]), 0);
	for (uint32_t round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < CONVS; i++)
			for (uint32_t k = 0; k < DEPTH; k++) {
				uint32_t v[2] = {(uint32_t)i, round * DEPTH + k};

				ck_assert_int_eq(lmn_send(convs[i], v, sizeof(v), 0), 0);
			}
		for (int i = 0; i < CONVS; i++)
			for (uint32_t k = 0; k < DEPTH; k++) {
				uint32_t v[2];

				ck_assert_int_eq(lmn_recv(convs[i], v, sizeof(v), TH_TIMEOUT_MS),
						 (ssize_t)sizeof(v));
				ck_assert_uint_eq(v[0], (uint32_t)i);
				ck_assert_uint_eq(v[1], round * DEPTH + k);
			}
	}
	for (int i = 0; i < CONVS; i++)
		ck_assert_int_eq(lmn_conv_free(convs[i]), 0);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_bus_leave(bus);
}
END_TEST

struct client_arg {
	const char *bus;
	int id;
	int calls;
};

static int client_main(void *p)
{
	struct client_arg *a = p;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_bus *bus;
	lmn_conv *conv;
	char self[32];

	snprintf(self, sizeof(self), "client%d", a->id);
	if (lmn_bus_join(a->bus, self, &bus) < 0)
		return 30;
	if (lmn_conv_open(bus, "echo", &cfg, &conv) < 0)
		return 31;
	for (int i = 0; i < a->calls; i++) {
		int req[2] = {a->id, i}, rep[2];

		ssize_t n = lmn_call(conv, req, sizeof(req), rep, sizeof(rep), TH_TIMEOUT_MS);

		if (n != sizeof(rep)) {
			fprintf(stderr, "client %d call %d: %zd\n", a->id, i, n);
			return 32;
		}
		if (rep[0] != a->id || rep[1] != i)
			return 33;
	}
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	return 0;
}

START_TEST(many_client_processes)
{
	enum { CLIENTS = 6 };
	const char *bus_name = th_bus(32, 4, 64);
	struct th_echo e = {.bus = bus_name, .self = "server", .service = "echo",
			    .max_closes = CLIENTS};
	pid_t server = th_echo_start(&e), pids[CLIENTS];
	struct client_arg args[CLIENTS];

	for (int i = 0; i < CLIENTS; i++) {
		args[i] = (struct client_arg){bus_name, i, 500};
		pids[i] = th_fork(client_main, &args[i]);
	}
	for (int i = 0; i < CLIENTS; i++)
		ck_assert_int_eq(th_wait(pids[i], TH_TIMEOUT_MS * 2), 0);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
}
END_TEST

/* The same with nobody spinning: every call goes through a real sleep and
 * wake on both sides, with several conversations ready at once in the
 * server, which is where a lost wake-up shows. */
START_TEST(sleeping_clients)
{
	enum { CLIENTS = 4 };
	const char *bus_name = th_bus(32, 4, 64);
	struct th_echo e = {.bus = bus_name, .self = "server", .service = "echo",
			    .max_closes = CLIENTS};
	struct client_arg args[CLIENTS];
	pid_t server, pids[CLIENTS];

	setenv("LIMINAL_SPIN_NS", "0", 1);
	server = th_echo_start(&e);
	for (int i = 0; i < CLIENTS; i++) {
		args[i] = (struct client_arg){bus_name, i, 2000};
		pids[i] = th_fork(client_main, &args[i]);
	}
	for (int i = 0; i < CLIENTS; i++)
		ck_assert_int_eq(th_wait(pids[i], TH_TIMEOUT_MS * 2), 0);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	unsetenv("LIMINAL_SPIN_NS");
}
END_TEST

/* Separate threads of one client, each on its own conversation, against a
 * server that runs lmn_next in two threads of its own. */
struct thread_client {
	lmn_bus *bus;
	int id;
	int ok;
};

static void *thread_client_main(void *p)
{
	struct thread_client *t = p;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_conv *conv;

	if (lmn_conv_open(t->bus, "echo", &cfg, &conv) < 0)
		return NULL;
	for (int i = 0; i < 1000; i++) {
		int req[2] = {t->id, i}, rep[2];

		if (lmn_call(conv, req, sizeof(req), rep, sizeof(rep), TH_TIMEOUT_MS) != sizeof(rep) ||
		    rep[0] != t->id || rep[1] != i)
			return NULL;
	}
	t->ok = lmn_conv_close(conv) == 0;
	lmn_conv_free(conv);
	return NULL;
}

struct two_thread_server {
	const char *bus;
	int closes;
	struct th_event ready;
	lmn_bus *b;
	pthread_mutex_t lock;
	int want;
};

static void *server_thread(void *p)
{
	struct two_thread_server *s = p;

	for (;;) {
		lmn_msg *m;
		int done;

		if (lmn_next(s->b, &m, 200) < 0) {
			pthread_mutex_lock(&s->lock);
			done = s->closes >= s->want;
			pthread_mutex_unlock(&s->lock);
			if (done)
				return NULL;
			continue;
		}
		if (lmn_msg_kind(m) == LMN_MSG_REQUEST) {
			lmn_reply(m, lmn_msg_data(m), lmn_msg_size(m));
		} else {
			pthread_mutex_lock(&s->lock);
			s->closes++;
			pthread_mutex_unlock(&s->lock);
		}
		lmn_msg_release(m);
	}
}

static int two_thread_server_main(void *p)
{
	struct two_thread_server *s = p;
	pthread_t t[2];

	pthread_mutex_init(&s->lock, NULL);
	if (lmn_bus_join(s->bus, "server", &s->b) < 0 || lmn_bus_serve(s->b, "echo") < 0)
		return 90;
	th_event_fire(&s->ready);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, server_thread, s);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	lmn_bus_leave(s->b);
	return s->closes == s->want ? 0 : 91;
}

START_TEST(threads_on_both_sides)
{
	enum { THREADS = 4 };
	const char *bus_name = th_bus(16, 4, 64);
	struct two_thread_server srv = {.bus = bus_name, .want = THREADS};
	struct thread_client tc[THREADS];
	pthread_t t[THREADS];
	lmn_bus *bus;
	pid_t server;

	th_event_new(&srv.ready);
	server = th_fork(two_thread_server_main, &srv);
	ck_assert_int_eq(th_event_await(&srv.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_bus_join(bus_name, "client", &bus), 0);
	for (int i = 0; i < THREADS; i++) {
		tc[i] = (struct thread_client){bus, i, 0};
		ck_assert_int_eq(pthread_create(&t[i], NULL, thread_client_main, &tc[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_msg(tc[i].ok, "client thread %d failed", i);
	}
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_bus_leave(bus);
}
END_TEST

/* Two servers of one service: opens go to the one with fewer conversations. */
START_TEST(service_balances_servers)
{
	const char *bus_name = th_bus(32, 4, 64);
	struct th_echo a = {.bus = bus_name, .self = "s1", .service = "echo", .max_closes = 2};
	struct th_echo b = {.bus = bus_name, .self = "s2", .service = "echo", .max_closes = 2};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	pid_t pa = th_echo_start(&a), pb = th_echo_start(&b);
	lmn_conv *convs[4];
	int on_s1 = 0, on_s2 = 0;
	lmn_bus *bus;

	ck_assert_int_eq(lmn_bus_join(bus_name, "client", &bus), 0);
	for (int i = 0; i < 4; i++) {
		struct lmn_conv_info info;
		char rep[8];

		ck_assert_int_eq(lmn_conv_open(bus, "echo", &cfg, &convs[i]), 0);
		ck_assert_int_eq(lmn_call(convs[i], "ping", 4, rep, sizeof(rep), TH_TIMEOUT_MS), 4);
		ck_assert_int_eq(lmn_conv_state(convs[i], &info), 0);
		on_s1 += !strcmp(info.participants[1].name, "s1");
		on_s2 += !strcmp(info.participants[1].name, "s2");
	}
	ck_assert_int_eq(on_s1, 2);
	ck_assert_int_eq(on_s2, 2);
	for (int i = 0; i < 4; i++)
		lmn_conv_free(convs[i]);
	ck_assert_int_eq(th_wait(pa, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(th_wait(pb, TH_TIMEOUT_MS), 0);
	lmn_bus_leave(bus);
}
END_TEST

/* A call that timed out leaves its reply to come late: the next call must
 * get its own reply, not that one.  The server here answers the first
 * request only after the client gave up on it. */
struct slow {
	const char *bus;
	struct th_event ready, gave_up;
};

static int slow_main(void *p)
{
	struct slow *s = p;
	lmn_bus *bus;
	lmn_msg *m;
	int closes = 0;

	if (lmn_bus_join(s->bus, "slow", &bus) < 0 || lmn_bus_serve(bus, "slow") < 0)
		return 100;
	th_event_fire(&s->ready);
	if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0)
		return 101;
	if (th_event_await(&s->gave_up, TH_TIMEOUT_MS) < 0)
		return 102;
	if (lmn_reply(m, "late", 4) < 0)
		return 103;
	lmn_msg_release(m);
	while (closes == 0) {
		if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0)
			return 104;
		if (lmn_msg_kind(m) == LMN_MSG_CLOSED)
			closes++;
		else if (lmn_reply(m, lmn_msg_data(m), lmn_msg_size(m)) < 0)
			return 105;
		lmn_msg_release(m);
	}
	lmn_bus_leave(bus);
	return 0;
}

START_TEST(late_reply_not_taken_for_next_call)
{
	const char *bus_name = th_bus(4, 4, 64);
	struct slow s = {.bus = bus_name};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct lmn_conv_info info;
	lmn_conv *conv;
	lmn_bus *bus;
	pid_t server;
	char rep[8];

	th_event_new(&s.ready);
	th_event_new(&s.gave_up);
	server = th_fork(slow_main, &s);
	ck_assert_int_eq(th_event_await(&s.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_bus_join(bus_name, "client", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "slow", &cfg, &conv), 0);
	ck_assert_int_eq(lmn_call(conv, "first", 5, rep, sizeof(rep), 0), -ETIMEDOUT);
	th_event_fire(&s.gave_up);
	for (int i = 0; i < 20; i++) {
		char req[8];
		int n = snprintf(req, sizeof(req), "c%d", i);

		ck_assert_int_eq(lmn_call(conv, req, (size_t)n, rep, sizeof(rep), TH_TIMEOUT_MS), n);
		ck_assert_mem_eq(rep, req, (size_t)n);
	}
	ck_assert_int_eq(lmn_conv_state(conv, &info), 0);
	ck_assert_uint_eq(info.sent, 21);
	ck_assert_uint_eq(info.received, 20); /* the late one was dropped */
	ck_assert_uint_eq(info.max_message, 64);
	ck_assert_uint_eq(info.ring_depth, 4);
	lmn_conv_free(conv);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_bus_leave(bus);
}
END_TEST

/* Participants that are separate programs, started with exec. */
static pid_t exec_peer(char *const argv[])
{
	const char *peer = getenv("LMN_TEST_PEER");
	pid_t pid;

	ck_assert_ptr_nonnull(peer);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execv(peer, argv);
		_exit(127);
	}
	return pid;
}

START_TEST(exec_server_and_clients)
{
	const char *bus_name = th_bus(16, 4, 256);
	const char *peer = getenv("LMN_TEST_PEER");
	struct th_event ready;
	char fd[16];
	pid_t server, c1, c2;

	ck_assert_ptr_nonnull(peer);
	/* The ready pipe must survive exec: make it without O_CLOEXEC. */
	ck_assert_int_eq(pipe(ready.fd), 0);
	snprintf(fd, sizeof(fd), "%d", ready.fd[1]);
	server = exec_peer((char *const[]){(char *)peer, "serve", (char *)bus_name, "srv",
					    "reverse", "3", fd, NULL});
	close(ready.fd[1]);
	ck_assert_int_eq(th_event_await(&ready, TH_TIMEOUT_MS), 0);
	c1 = exec_peer((char *const[]){(char *)peer, "call", (char *)bus_name, "c1", "reverse",
					"300", NULL});
	c2 = exec_peer((char *const[]){(char *)peer, "call", (char *)bus_name, "c2", "srv",
					"300", NULL});
	/* And this process as a third client. */
	{
		struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
		lmn_bus *bus;
		lmn_conv *conv;
		char rep[8];

		ck_assert_int_eq(lmn_bus_join(bus_name, "c3", &bus), 0);
		ck_assert_int_eq(lmn_conv_open(bus, "reverse", &cfg, &conv), 0);
		ck_assert_int_eq(lmn_call(conv, "abc", 3, rep, sizeof(rep), TH_TIMEOUT_MS), 3);
		ck_assert_mem_eq(rep, "cba", 3);
		lmn_conv_free(conv);
		lmn_bus_leave(bus);
	}
	ck_assert_int_eq(th_wait(c1, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(th_wait(c2, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
}
END_TEST

/* A server that holds requests: the client's ring fills, a non-blocking
 * send says -EAGAIN, a blocking one waits until the server lets go. */
struct holder {
	const char *bus;
	struct th_event ready, full, drained;
};

static int holder_main(void *p)
{
	struct holder *h = p;
	lmn_msg *held[4];
	lmn_bus *bus;

	if (lmn_bus_join(h->bus, "holder", &bus) < 0 || lmn_bus_serve(bus, "hold") < 0)
		return 40;
	th_event_fire(&h->ready);
	for (int i = 0; i < 4; i++)
		if (lmn_next(bus, &held[i], TH_TIMEOUT_MS) < 0 ||
		    lmn_msg_kind(held[i]) != LMN_MSG_REQUEST)
			return 41;
	/* Wait until the client has seen its ring full, then let go. */
	if (th_event_await(&h->full, TH_TIMEOUT_MS) < 0)
		return 42;
	for (int i = 0; i < 4; i++) {
		if (*(const int *)lmn_msg_data(held[i]) != i)
			return 43;
		lmn_msg_release(held[i]);
	}
	/* The blocked send and the rest arrive, in order. */
	for (int want = 4; want < 8; want++) {
		lmn_msg *m;

		if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0 || lmn_msg_kind(m) != LMN_MSG_REQUEST ||
		    *(const int *)lmn_msg_data(m) != want)
			return 44;
		lmn_msg_release(m);
	}
	th_event_fire(&h->drained);
	lmn_bus_leave(bus);
	return 0;
}

START_TEST(ring_full_back_pressure)
{
	const char *bus_name = th_bus(4, 4, 64);
	struct holder h = {.bus = bus_name};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_conv *conv;
	lmn_bus *bus;
	pid_t server;

	th_event_new(&h.ready);
	th_event_new(&h.full);
	th_event_new(&h.drained);
	server = th_fork(holder_main, &h);
	ck_assert_int_eq(th_event_await(&h.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_bus_join(bus_name, "client", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "hold", &cfg, &conv), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(lmn_send(conv, &i, sizeof(i), 0), 0);
	/* Four cells, all held by the server (or still in the ring): full. */
	ck_assert_int_eq(lmn_send(conv, &(int){4}, sizeof(int), LMN_SEND_NONBLOCK), -EAGAIN);
	th_event_fire(&h.full);
	/* Blocks until the server releases a cell. */
	for (int i = 4; i < 8; i++)
		ck_assert_int_eq(lmn_send(conv, &i, sizeof(i), 0), 0);
	ck_assert_int_eq(th_event_await(&h.drained, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}
END_TEST

/* A server that holds some requests while it answers and releases the
 * ones after them gives cells back out of order.  The client must then
 * never fill a cell the server still holds (it reads requests in place):
 * the held payloads stay intact while many rounds of cells go by, and
 * every answer matches its call, before, during and after.  Requests whose
 * first byte is HOLD_A or HOLD_B are held until LET_A and LET_B requests
 * later. */
#define OOO_N 64
#define HOLD_A 0
#define LET_A 21
#define HOLD_B 30
#define LET_B 47

static void ooo_fill(unsigned char *b, int i)
{
	for (int k = 0; k < 64; k++)
		b[k] = (unsigned char)(i + k * 7);
}

static int ooo_intact(lmn_msg *m, int i)
{
	unsigned char want[64];

	ooo_fill(want, i);
	return m && lmn_msg_size(m) == 64 && memcmp(lmn_msg_data(m), want, 64) == 0;
}

struct ooo {
	const char *bus;
	struct th_event ready;
};

static int ooo_main(void *p)
{
	struct ooo *o = p;
	lmn_msg *a = NULL, *b = NULL;
	lmn_bus *bus;

	if (lmn_bus_join(o->bus, "ooo", &bus) < 0 || lmn_bus_serve(bus, "ooo") < 0)
		return 60;
	th_event_fire(&o->ready);
	for (int i = 0; i < OOO_N; i++) {
		lmn_msg *m;

		if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0 || lmn_msg_kind(m) != LMN_MSG_REQUEST ||
		    !ooo_intact(m, i))
			return 61;
		if (i == HOLD_A) {
			a = m;
		} else if (i == HOLD_B) {
			b = m;
		} else {
			if (lmn_reply(m, lmn_msg_data(m), 64) < 0)
				return 62;
			lmn_msg_release(m);
		}
		if ((a && !ooo_intact(a, HOLD_A)) || (b && !ooo_intact(b, HOLD_B)))
			return 63; /* a held cell was filled again */
		if (i == LET_A) {
			lmn_msg_release(a);
			a = NULL;
		}
		if (i == LET_B) {
			lmn_msg_release(b);
			b = NULL;
		}
	}
	lmn_bus_leave(bus);
	return 0;
}

START_TEST(held_cells_not_reused_after_out_of_order_release)
{
	struct ooo o = {.bus = th_bus(4, 4, 64)};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	unsigned char req[64], rep[64];
	lmn_conv *conv;
	lmn_bus *bus;
	pid_t server;

	th_event_new(&o.ready);
	server = th_fork(ooo_main, &o);
	ck_assert_int_eq(th_event_await(&o.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_bus_join(o.bus, "client", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "ooo", &cfg, &conv), 0);
	for (int i = 0; i < OOO_N; i++) {
		ooo_fill(req, i);
		if (i == HOLD_A || i == HOLD_B) {
			ck_assert_int_eq(lmn_send(conv, req, 64, 0), 0);
			continue;
		}
		ck_assert_int_eq(lmn_call(conv, req, 64, rep, sizeof(rep), TH_TIMEOUT_MS), 64);
		ck_assert_mem_eq(rep, req, 64);
	}
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}
END_TEST

/* The server holds a request while the client closes: its reply is refused
 * with -EPIPE, and it then gets the CLOSED notice. */
struct late {
	const char *bus;
	struct th_event ready, got, closed;
};

static int late_main(void *p)
{
	struct late *l = p;
	lmn_msg *m, *n;
	lmn_bus *bus;

	if (lmn_bus_join(l->bus, "late", &bus) < 0 || lmn_bus_serve(bus, "late") < 0)
		return 50;
	th_event_fire(&l->ready);
	if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0 || lmn_msg_kind(m) != LMN_MSG_REQUEST)
		return 51;
	if (strcmp(lmn_msg_sender(m), "client") != 0 || lmn_msg_conv_id(m) == 0)
		return 52;
	th_event_fire(&l->got);
	if (th_event_await(&l->closed, TH_TIMEOUT_MS) < 0)
		return 53;
	if (lmn_reply(m, "late", 4) != -EPIPE)
		return 54;
	if (lmn_next(bus, &n, TH_TIMEOUT_MS) < 0 || lmn_msg_kind(n) != LMN_MSG_CLOSED ||
	    lmn_msg_conv_id(n) != lmn_msg_conv_id(m))
		return 55;
	lmn_msg_release(m);
	lmn_msg_release(n);
	/* Nothing more: the conversation is over for the server too. */
	if (lmn_next(bus, &n, 50) != -ETIMEDOUT)
		return 56;
	lmn_bus_leave(bus);
	return 0;
}

START_TEST(reply_after_close_and_close_notice)
{
	const char *bus_name = th_bus(4, 4, 64);
	struct late l = {.bus = bus_name};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_conv *conv;
	lmn_bus *bus;
	pid_t server;

	th_event_new(&l.ready);
	th_event_new(&l.got);
	th_event_new(&l.closed);
	server = th_fork(late_main, &l);
	ck_assert_int_eq(th_event_await(&l.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_bus_join(bus_name, "client", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "late", &cfg, &conv), 0);
	ck_assert_int_eq(lmn_send(conv, "q", 1, 0), 0);
	ck_assert_int_eq(th_event_await(&l.got, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	th_event_fire(&l.closed);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}
END_TEST

/* A server that leaves while a client waits: the client wakes at once;
 * under FAIL the conversation fails, under COMPENSATE it stays as it was. */
struct leaver {
	const char *bus;
	struct th_event ready, go;
};

static int leaver_main(void *p)
{
	struct leaver *l = p;
	lmn_bus *bus;
	lmn_msg *m;

	if (lmn_bus_join(l->bus, "leaver", &bus) < 0 || lmn_bus_serve(bus, "svc") < 0)
		return 60;
	th_event_fire(&l->ready);
	/* Take the request, answer the first, then leave without answering
	 * the second. */
	if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0 || lmn_reply(m, "r1", 2) < 0)
		return 61;
	lmn_msg_release(m);
	if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0)
		return 62;
	if (th_event_await(&l->go, TH_TIMEOUT_MS) < 0)
		return 63;
	lmn_bus_leave(bus);
	return 0;
}

static void server_leaves(enum lmn_policy policy, enum lmn_phase after)
{
	const char *bus_name = th_bus(4, 4, 64);
	struct leaver l = {.bus = bus_name};
	struct lmn_conv_config cfg = th_cfg(policy);
	struct lmn_conv_info info;
	lmn_conv *conv;
	lmn_bus *bus;
	pid_t server;
	char rep[8];

	th_event_new(&l.ready);
	th_event_new(&l.go);
	server = th_fork(leaver_main, &l);
	ck_assert_int_eq(th_event_await(&l.ready, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_bus_join(bus_name, "client", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &conv), 0);
	ck_assert_int_eq(lmn_send(conv, "q1", 2, 0), 0);
	ck_assert_int_eq(lmn_send(conv, "q2", 2, 0), 0);
	th_event_fire(&l.go);
	/* The reply that landed first is still delivered, then the error. */
	ck_assert_int_eq(lmn_recv(conv, rep, sizeof(rep), TH_TIMEOUT_MS), 2);
	ck_assert_mem_eq(rep, "r1", 2);
	ck_assert_int_eq(lmn_recv(conv, rep, sizeof(rep), TH_TIMEOUT_MS), -ECONNRESET);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_conv_state(conv, &info), 0);
	ck_assert_int_eq(info.phase, after);
	ck_assert_int_eq(info.participants[1].health, LMN_HEALTH_LEFT);
	ck_assert_uint_ne(info.participants[1].exit_ns, 0);
	ck_assert_int_eq(lmn_send(conv, "q3", 2, 0), -ECONNRESET);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}

START_TEST(server_leaves_fail)
{
	server_leaves(LMN_POLICY_FAIL, LMN_PHASE_FAILED);
}
END_TEST

START_TEST(server_leaves_compensate)
{
	server_leaves(LMN_POLICY_COMPENSATE, LMN_PHASE_ACTIVE);
}
END_TEST

/* One conversation that never lets its ring empty must not starve the
 * others: a caller gets its answers while a stream runs on the same server.
 * The server answers the caller and only works on the stream's requests,
 * 20 us each; the streamer spins for room, so it refills the ring long
 * before it drains, and never reads.  Each call carries the time it was
 * sent, and the server counts the stream's requests it took after that
 * time: a few at most, however loaded the machine, since a server that is
 * not running takes none.  Before the server read the ready marks while
 * one conversation kept it busy, calls here waited for thousands of them,
 * until the streamer happened to lose its core. */
struct stream_fair {
	const char *bus;
	struct th_event ready, streaming, done;
};

/* Put this process on the n-th CPU it may use (n = 0, 1), when it may use
 * two: the server and the streamer each get a core of their own, so that
 * the stream never pauses for want of one.  With one CPU the test still
 * checks the caller is answered, only less sharply. */
static void own_core(int n)
{
	cpu_set_t allowed, one;
	int seen = 0;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) < 0 || CPU_COUNT(&allowed) < 2)
		return;
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &allowed) || seen++ != n)
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		(void)sched_setaffinity(0, sizeof(one), &one);
		return;
	}
}

#define FAIR_KEPT 256 /* the times of the stream's last requests taken */
#define FAIR_MAX 64   /* of them, taken after a call was sent */

static int fair_server_main(void *p)
{
	struct stream_fair *f = p;
	uint64_t taken[FAIR_KEPT] = {0};
	unsigned ntaken = 0;
	lmn_bus *bus;
	int closes = 0;

	own_core(0);
	if (lmn_bus_join(f->bus, "server", &bus) < 0 || lmn_bus_serve(bus, "svc") < 0)
		return 60;
	th_event_fire(&f->ready);
	while (closes < 2) {
		lmn_msg *m;

		if (lmn_next(bus, &m, TH_TIMEOUT_MS) < 0)
			return 61;
		if (lmn_msg_kind(m) == LMN_MSG_CLOSED) {
			closes++;
		} else if (lmn_msg_size(m) == 1) {
			uint64_t t = th_now_ns();

			taken[ntaken++ % FAIR_KEPT] = t;
			while (th_now_ns() - t < 20000)
				;
		} else {
			uint64_t sent;
			int after = 0;

			if (lmn_msg_size(m) != sizeof(sent))
				return 62;
			memcpy(&sent, lmn_msg_data(m), sizeof(sent));
			for (int i = 0; i < FAIR_KEPT; i++)
				after += taken[i] > sent;
			if (after > FAIR_MAX)
				return 63;
			if (lmn_reply(m, "ok", 2) < 0)
				return 64;
		}
		lmn_msg_release(m);
	}
	lmn_bus_leave(bus);
	return 0;
}

static int streamer_main(void *p)
{
	struct stream_fair *f = p;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	uint64_t start;
	lmn_conv *conv;
	lmn_bus *bus;

	own_core(1);
	if (lmn_bus_join(f->bus, "streamer", &bus) < 0 || lmn_bus_set_spin(bus, 200000) < 0 ||
	    lmn_conv_open(bus, "svc", &cfg, &conv) < 0)
		return 70;
	/* Fill the ring before the caller starts, then keep it filled. */
	for (int i = 0; i < 8; i++)
		if (lmn_send(conv, "s", 1, 0) < 0)
			return 71;
	th_event_fire(&f->streaming);
	start = th_now_ms();
	for (unsigned i = 0;; i++) {
		if (lmn_send(conv, "s", 1, 0) < 0)
			return 72;
		if (i % 256)
			continue;
		if (th_event_await(&f->done, 0) == 0)
			break;
		/* Bounded even if the caller failed and never says done. */
		if (th_now_ms() - start > TH_TIMEOUT_MS)
			return 73;
	}
	lmn_conv_close(conv);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	return 0;
}

START_TEST(stream_does_not_starve_caller)
{
	struct stream_fair f = {.bus = th_bus(8, 8, 64)};
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	pid_t server, streamer;
	lmn_conv *conv;
	lmn_bus *bus;

	th_event_new(&f.ready);
	th_event_new(&f.streaming);
	th_event_new(&f.done);
	server = th_fork(fair_server_main, &f);
	ck_assert_int_eq(th_event_await(&f.ready, TH_TIMEOUT_MS), 0);
	streamer = th_fork(streamer_main, &f);
	ck_assert_int_eq(th_event_await(&f.streaming, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_bus_join(f.bus, "caller", &bus), 0);
	/* The caller sleeps at once, leaving both cores to the stream. */
	ck_assert_int_eq(lmn_bus_set_spin(bus, 0), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "svc", &cfg, &conv), 0);
	for (int i = 0; i < 200; i++) {
		uint64_t sent = th_now_ns();
		char rep[8];

		ck_assert_int_eq(lmn_call(conv, &sent, sizeof(sent), rep, sizeof(rep), TH_TIMEOUT_MS),
				 2);
		ck_assert_mem_eq(rep, "ok", 2);
	}
	th_event_fire(&f.done);
	ck_assert_int_eq(th_wait(streamer, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	ck_assert_int_eq(th_wait(server, TH_TIMEOUT_MS), 0);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rpc");
	TCase *tc = tcase_create("rpc");

	tcase_add_checked_fixture(tc, th_setup, th_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, echo_across_processes);
	tcase_add_test(tc, large_payloads_across_processes);
	tcase_add_test(tc, sleeping_clients);
	tcase_add_test(tc, participant_as_target);
	tcase_add_test(tc, many_conversations_pipelined);
	tcase_add_test(tc, many_client_processes);
	tcase_add_test(tc, threads_on_both_sides);
	tcase_add_test(tc, service_balances_servers);
	tcase_add_test(tc, exec_server_and_clients);
	tcase_add_test(tc, ring_full_back_pressure);
	tcase_add_test(tc, held_cells_not_reused_after_out_of_order_release);
	tcase_add_test(tc, late_reply_not_taken_for_next_call);
	tcase_add_test(tc, reply_after_close_and_close_notice);
	tcase_add_test(tc, server_leaves_fail);
	tcase_add_test(tc, server_leaves_compensate);
	tcase_add_test(tc, stream_does_not_starve_caller);
	suite_add_tcase(s, tc);
	return th_run(s);
}
