/* SPDX-License-Identifier: MIT */
/*
 * liminal demo: a serving process and a client process on a fresh bus, a
 * few thousand calls, and the round-trip percentiles.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "liminal.h"
#include "verbs.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* A server: echo every request until `closes` conversations have closed. */
static int serve(const char *bus_name, const char *self, int closes, int ready_fd)
{
	lmn_bus *bus = NULL;
	int r, seen = 0;

	r = lmn_bus_join(bus_name, self, &bus);
	if (r == 0)
		r = lmn_bus_serve(bus, "echo");
	if (write(ready_fd, r == 0 ? "1" : "0", 1) != 1 || r < 0) {
		lmn_bus_leave(bus);
		return 1;
	}
	close(ready_fd);
	while (seen < closes) {
		lmn_msg *msg;
		int kind;

		r = lmn_next(bus, &msg, 10000);
		if (r < 0)
			break;
		kind = lmn_msg_kind(msg);
		if (kind == LMN_MSG_REQUEST)
			r = lmn_reply(msg, lmn_msg_data(msg), lmn_msg_size(msg));
		else
			seen++;
		lmn_msg_release(msg);
		if (r < 0)
			break;
	}
	lmn_bus_leave(bus);
	return r < 0 ? 1 : 0;
}

/* Fork a server and wait until it says it serves: no guessing, no sleeping. */
static pid_t start_server(const char *bus_name, const char *self, int closes)
{
	char ok = '0';
	int fds[2];
	pid_t pid;

	if (pipe(fds) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		_exit(serve(bus_name, self, closes, fds[1]));
	}
	close(fds[1]);
	if (pid < 0 || read(fds[0], &ok, 1) != 1 || ok != '1') {
		close(fds[0]);
		return -1;
	}
	close(fds[0]);
	return pid;
}

/* Part two: a server is killed with a call in flight, and the conversation
 * (ROUTE_NEXT) goes on with the other server.  The gap is the time from the
 * kill to the reply, which the second server sends to the redelivered
 * request. */
static int crash_part(const char *name, lmn_bus *bus, pid_t first, pid_t *second, uint32_t size)
{
	struct lmn_conv_config cc = {.policy = LMN_POLICY_ROUTE_NEXT};
	struct lmn_conv_info info;
	lmn_conv *conv = NULL;
	char req[64] = "in flight", rep[64];
	const char *victim_name;
	pid_t victim, survivor;
	uint64_t t0, gap = 0;
	int r, rc = 1, after = 0;

	(void)size;
	*second = start_server(name, "demo-server-2", 1);
	if (*second < 0) {
		lmn_tool_err("liminal demo: bus '%s': the second server did not start\n", name);
		return 1;
	}
	r = lmn_conv_open(bus, "echo", &cc, &conv);
	if (r == 0)
		r = lmn_call(conv, "hello", 5, rep, sizeof(rep), 10000) == 5 ? 0 : -EIO;
	if (r == 0)
		r = lmn_conv_state(conv, &info);
	if (r < 0) {
		lmn_tool_err("liminal demo: bus '%s': %s\n", name, strerror(-r));
		goto out;
	}
	victim_name = info.participants[1].name;
	victim = strcmp(victim_name, "demo-server-2") == 0 ? *second : first;
	survivor = victim == first ? *second : first;
	printf("crash: conversation on %s (pid %d), policy ROUTE_NEXT\n", victim_name, (int)victim);
	/* Stop the victim first, so that the request in flight cannot be
	 * answered by it: the reply must come from the other server. */
	kill(victim, SIGSTOP);
	r = lmn_send(conv, req, strlen(req), 0);
	if (r == 0) {
		t0 = now_ns();
		kill(victim, SIGKILL);
		r = (int)lmn_recv(conv, rep, sizeof(rep), 10000);
		gap = now_ns() - t0;
	}
	if (r != (int)strlen(req) || memcmp(rep, req, strlen(req)) != 0) {
		lmn_tool_err("liminal demo: the call in flight failed: %s\n",
			r < 0 ? strerror(-r) : "wrong reply");
		goto out;
	}
	waitpid(victim, NULL, 0);
	for (; after < 1000; after++)
		if (lmn_call(conv, "after", 5, rep, sizeof(rep), 10000) != 5)
			break;
	lmn_conv_state(conv, &info);
	printf("crash: killed it with SIGKILL during a call; the call returned %.1f us after the "
	       "kill,\n       answered by %s (pid %d); %d calls after it all answered; "
	       "crashes recorded: %u\n",
	       (double)gap / 1000.0, info.participants[1].name, (int)survivor, after,
	       info.n_crashes);
	rc = after == 1000 && info.n_crashes == 1 &&
			     info.crashes[0].action == LMN_CRASH_ROUTED
		     ? 0
		     : 1;
out:
	lmn_conv_free(conv);
	return rc;
}

static double pct(const uint64_t *v, uint32_t n, double p)
{
	uint32_t i = (uint32_t)(p / 100.0 * (n - 1) + 0.5);

	return (double)v[i] / 1000.0;
}

int lmn_tool_demo(int argc, char **argv)
{
	uint32_t calls = 5000, size = 64;
	struct lmn_conv_config cc = {.policy = LMN_POLICY_FAIL};
	lmn_bus *bus = NULL;
	lmn_conv *conv = NULL;
	char name[64];
	uint64_t *rtt, t0;
	char *req, *rep;
	int status, r, rc = 1;
	pid_t pid, second = -1;

	const struct lmn_tool_opt opts[] = {
		{"--calls", LMN_OPT_U32, &calls, 1, 10000000},
		{"--size", LMN_OPT_U32, &size, 0, 4096},
		{0},
	};
	const char *pos[1];
	int n_pos;

	r = lmn_tool_args(argc, argv, opts, pos, 0, 0, &n_pos,
			  "liminal demo [--calls N] [--size BYTES]");
	if (r)
		return lmn_tool_args_exit(r);
	snprintf(name, sizeof(name), "demo-%d", (int)getpid());
	r = lmn_bus_create(name, &(struct lmn_bus_config){.conversations = 16});
	if (r < 0) {
		lmn_tool_err("liminal demo: bus '%s': cannot create: %s\n", name, strerror(-r));
		return 1;
	}
	pid = start_server(name, "demo-server-1", 2);
	if (pid < 0) {
		lmn_tool_err("liminal demo: bus '%s': the server did not start\n", name);
		lmn_bus_unlink(name);
		return 1;
	}

	rtt = calloc(calls, sizeof(*rtt));
	req = calloc(1, size + 1);
	rep = calloc(1, size + 1);
	if (!rtt || !req || !rep) {
		lmn_tool_err("liminal demo: out of memory\n");
		goto out;
	}
	memset(req, 'x', size);
	r = lmn_bus_join(name, "demo-client", &bus);
	if (r == 0)
		r = lmn_conv_open(bus, "echo", &cc, &conv);
	if (r < 0) {
		lmn_tool_err("liminal demo: bus '%s': %s\n", name, strerror(-r));
		goto out;
	}
	printf("liminal demo: bus %s, wait backend %s, %u calls of %u bytes\n", name,
	       lmn_wait_backend(), calls, size);
	for (uint32_t i = 0; i < calls; i++) {
		ssize_t n;

		req[0] = (char)('a' + i % 26);
		t0 = now_ns();
		n = lmn_call(conv, req, size, rep, size, 10000);
		rtt[i] = now_ns() - t0;
		if (n < 0 || (size_t)n != size || memcmp(req, rep, size) != 0) {
			lmn_tool_err("liminal demo: call %u failed: %s\n", i,
				n < 0 ? strerror((int)-n) : "wrong reply");
			goto out;
		}
	}
	qsort(rtt, calls, sizeof(*rtt), cmp_u64);
	printf("round trip (us): p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
	       pct(rtt, calls, 50), pct(rtt, calls, 90), pct(rtt, calls, 99),
	       pct(rtt, calls, 99.9), (double)rtt[calls - 1] / 1000.0);
	lmn_conv_free(conv);
	conv = NULL;
	rc = crash_part(name, bus, pid, &second, size);
out:
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	/* The survivor exits once its conversations closed; the victim was
	 * reaped already. */
	for (int i = 0; i < 2; i++) {
		pid_t p = i ? second : pid;

		if (p > 0 && waitpid(p, &status, 0) == p &&
		    !(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) &&
		    (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
			lmn_tool_err("liminal demo: a server process failed\n");
			rc = 1;
		}
	}
	lmn_bus_unlink(name);
	free(rtt);
	free(req);
	free(rep);
	if (rc == 0)
		printf("closed cleanly; bus %s removed\n", name);
	return rc;
}
