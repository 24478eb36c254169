/* SPDX-License-Identifier: MIT */
/*
 * Crash detection, measured: from SIGKILL of a server to the return of the
 * caller blocked in lmn_recv() on it (policy FAIL), next to the raw
 * detection of the same kill by a thread blocked in poll() on the server's
 * pidfd, in the same run; and the ROUTE_NEXT gap, from the kill of the
 * server holding a request to that request's reply from the next server.
 *
 * Prints one JSON object per line.  Usage: bench_crash [ITERATIONS]
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "liminal.h"

/* A server that holds a request "hold" (unless it is a redelivery): it
 * fires the pipe, then waits to be killed.  Anything else is echoed. */
static int holder(const char *bus_name, const char *self, int fd)
{
	lmn_bus *bus;
	lmn_msg *m;

	alarm(30);
	if (lmn_bus_join(bus_name, self, &bus) < 0 || lmn_bus_serve(bus, "svc") < 0)
		return 1;
	if (write(fd, "r", 1) != 1)
		return 1;
	for (;;) {
		if (lmn_next(bus, &m, -1) < 0)
			return 1;
		if (lmn_msg_kind(m) != LMN_MSG_REQUEST)
			continue;
		if (lmn_msg_size(m) == 4 && !memcmp(lmn_msg_data(m), "hold", 4) &&
		    !(lmn_msg_flags(m) & LMN_MSG_REDELIVERED)) {
			if (write(fd, "h", 1) != 1)
				return 1;
			pause();
		}
		lmn_reply(m, lmn_msg_data(m), lmn_msg_size(m));
		lmn_msg_release(m);
	}
}

static pid_t start(const char *bus, const char *self, int fds[2])
{
	char c;
	pid_t pid;

	if (pipe(fds) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		_exit(holder(bus, self, fds[1]));
	}
	close(fds[1]);
	if (read(fds[0], &c, 1) != 1 || c != 'r')
		return -1;
	return pid;
}

/* Until thread tid sleeps in the kernel (state S in /proc). */
static void await_sleeping(pid_t tid)
{
	char path[64], buf[256];

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	for (;;) {
		FILE *f = fopen(path, "r");
		char *p;

		if (!f)
			return;
		p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (p && p[1] == ' ' && p[2] == 'S')
			return;
		sched_yield();
	}
}

struct blocked {
	pid_t tid;
	int pidfd;
	lmn_conv *conv;
	uint64_t done;
	ssize_t result;
	volatile int started;
};

/* Start fn(b) on a thread and return once it sleeps in the kernel. */
static void start_blocked(pthread_t *t, void *(*fn)(void *), struct blocked *b)
{
	pthread_create(t, NULL, fn, b);
	while (!__atomic_load_n(&b->started, __ATOMIC_ACQUIRE))
		sched_yield();
	await_sleeping(b->tid);
}

static void *raw_thread(void *p)
{
	struct blocked *b = p;
	struct pollfd pfd = {.fd = b->pidfd, .events = POLLIN};

	b->tid = (pid_t)syscall(SYS_gettid);
	__atomic_store_n(&b->started, 1, __ATOMIC_RELEASE);
	poll(&pfd, 1, 10000);
	b->done = bu_now_ns();
	return NULL;
}

static void *recv_thread(void *p)
{
	struct blocked *b = p;
	char buf[64];

	b->tid = (pid_t)syscall(SYS_gettid);
	__atomic_store_n(&b->started, 1, __ATOMIC_RELEASE);
	b->result = lmn_recv(b->conv, buf, sizeof(buf), 10000);
	b->done = bu_now_ns();
	return NULL;
}

/* A failed run takes its bus down rather than leave it in /dev/shm. */
static int failed_run(const char *name, int code)
{
	lmn_bus_unlink(name);
	return code;
}

static void report(const char *bench, const char *impl, uint64_t *v, int n)
{
	bu_sort_u64(v, (size_t)n);
	printf("{\"bench\":\"%s\",\"impl\":\"%s\",\"backend\":\"%s\",\"reps\":%d,"
	       "\"p50_ns\":%llu,\"p99_ns\":%llu,\"max_ns\":%llu}\n",
	       bench, impl, lmn_wait_backend(), n, (unsigned long long)bu_pct_sorted(v, (size_t)n, 50),
	       (unsigned long long)bu_pct_sorted(v, (size_t)n, 99), (unsigned long long)v[n - 1]);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100;
	uint64_t *raw = calloc((size_t)n, 8), *lmn = calloc((size_t)n, 8), *gap = calloc((size_t)n, 8);
	char name[64];

	if (n < 1 || !raw || !lmn || !gap)
		return 2;
	snprintf(name, sizeof(name), "bench-crash-%d", (int)getpid());
	for (int i = 0; i < n; i++) {
		struct lmn_conv_config fail = {.policy = LMN_POLICY_FAIL};
		struct blocked r = {0}, l = {0};
		pthread_t tr, tl;
		lmn_bus *bus;
		int fds[2];
		uint64_t t0;
		char c;
		pid_t pid;

		if (lmn_bus_create(name, &(struct lmn_bus_config){.conversations = 8}) < 0)
			return 3;
		pid = start(name, "victim", fds);
		if (pid < 0 || lmn_bus_join(name, "bench", &bus) < 0 ||
		    lmn_bus_set_spin(bus, 0) < 0 || lmn_conv_open(bus, "svc", &fail, &l.conv) < 0 ||
		    lmn_send(l.conv, "hold", 4, 0) < 0 || read(fds[0], &c, 1) != 1)
			return failed_run(name, 4);
		r.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		/* The kernel wakes the sleepers on a pidfd one after the
		 * other, in an order set by when each began to wait, and on
		 * two CPUs the one woken first tends to finish first: take
		 * turns at starting first, so neither detector has the edge. */
		if (i % 2) {
			start_blocked(&tl, recv_thread, &l);
			start_blocked(&tr, raw_thread, &r);
		} else {
			start_blocked(&tr, raw_thread, &r);
			start_blocked(&tl, recv_thread, &l);
		}
		t0 = bu_now_ns();
		kill(pid, SIGKILL);
		pthread_join(tr, NULL);
		pthread_join(tl, NULL);
		if (l.result != -ECONNRESET)
			return failed_run(name, 5);
		raw[i] = r.done - t0;
		lmn[i] = l.done - t0;
		close(r.pidfd);
		waitpid(pid, NULL, 0);
		close(fds[0]);
		lmn_conv_free(l.conv);
		lmn_bus_leave(bus);
		lmn_bus_unlink(name);
	}
	for (int i = 0; i < n; i++) {
		struct lmn_conv_config route = {.policy = LMN_POLICY_ROUTE_NEXT};
		int f1[2], f2[2];
		lmn_bus *bus;
		lmn_conv *conv;
		char buf[64], c;
		uint64_t t0;
		pid_t p1, p2;

		if (lmn_bus_create(name, &(struct lmn_bus_config){.conversations = 8}) < 0)
			return 6;
		p1 = start(name, "first", f1);
		if (p1 < 0 || lmn_bus_join(name, "bench", &bus) < 0 ||
		    lmn_conv_open(bus, "svc", &route, &conv) < 0)
			return failed_run(name, 7);
		p2 = start(name, "second", f2);
		if (p2 < 0 || lmn_send(conv, "hold", 4, 0) < 0 || read(f1[0], &c, 1) != 1)
			return failed_run(name, 8);
		t0 = bu_now_ns();
		kill(p1, SIGKILL);
		/* The second server answers the redelivered request. */
		if (lmn_recv(conv, buf, sizeof(buf), 10000) != 4)
			return failed_run(name, 9);
		gap[i] = bu_now_ns() - t0;
		kill(p2, SIGKILL);
		waitpid(p1, NULL, 0);
		waitpid(p2, NULL, 0);
		close(f1[0]);
		close(f2[0]);
		lmn_conv_free(conv);
		lmn_bus_leave(bus);
		lmn_bus_unlink(name);
	}
	report("crash_detect", "raw_pidfd_poll", raw, n);
	report("crash_detect", "liminal_recv_fail", lmn, n);
	printf("{\"bench\":\"crash_detect\",\"ratio_p50\":%.3f}\n",
	       (double)bu_pct_sorted(lmn, (size_t)n, 50) / (double)bu_pct_sorted(raw, (size_t)n, 50));
	report("route_next_gap", "liminal_route_next", gap, n);
	free(raw);
	free(lmn);
	free(gap);
	return 0;
}
