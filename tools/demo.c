/* SPDX-License-Identifier: MIT */
/*
 * liminal demo: a serving process and a client process on a fresh bus, a
 * few thousand calls, and the round-trip percentiles.
 */
#include <errno.h>
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

/* The server: echo every request until the client closes. */
static int serve(const char *bus_name, int ready_fd)
{
	lmn_bus *bus = NULL;
	int r;

	r = lmn_bus_join(bus_name, "demo-server", &bus);
	if (r == 0)
		r = lmn_bus_serve(bus, "echo");
	if (write(ready_fd, r == 0 ? "1" : "0", 1) != 1 || r < 0) {
		lmn_bus_leave(bus);
		return 1;
	}
	close(ready_fd);
	for (;;) {
		lmn_msg *msg;
		int kind;

		r = lmn_next(bus, &msg, 10000);
		if (r < 0)
			break;
		kind = lmn_msg_kind(msg);
		if (kind == LMN_MSG_REQUEST)
			r = lmn_reply(msg, lmn_msg_data(msg), lmn_msg_size(msg));
		lmn_msg_release(msg);
		if (kind == LMN_MSG_CLOSED || r < 0)
			break;
	}
	lmn_bus_leave(bus);
	return r < 0 ? 1 : 0;
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
	char name[64], ok = '0';
	uint64_t *rtt, t0;
	char *req, *rep;
	int fds[2], status, r, rc = 1;
	pid_t pid;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help")) {
			printf("usage: liminal demo [--calls N] [--size BYTES]\n");
			return 0;
		}
		if (!strcmp(argv[i], "--calls") && i + 1 < argc &&
		    lmn_tool_parse_u32(argv[i + 1], 10, 10000000, &calls) == 0 && calls > 0) {
			i++;
			continue;
		}
		if (!strcmp(argv[i], "--size") && i + 1 < argc &&
		    lmn_tool_parse_u32(argv[i + 1], 10, 4096, &size) == 0) {
			i++;
			continue;
		}
		fprintf(stderr, "liminal demo: bad argument '%s' (try 'liminal demo --help')\n",
			argv[i]);
		return 2;
	}
	snprintf(name, sizeof(name), "demo-%d", (int)getpid());
	r = lmn_bus_create(name, &(struct lmn_bus_config){.conversations = 16});
	if (r < 0) {
		fprintf(stderr, "liminal demo: bus '%s': cannot create: %s\n", name, strerror(-r));
		return 1;
	}
	if (pipe(fds) < 0) {
		fprintf(stderr, "liminal demo: pipe: %s\n", strerror(errno));
		lmn_bus_unlink(name);
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "liminal demo: fork: %s\n", strerror(errno));
		lmn_bus_unlink(name);
		return 1;
	}
	if (pid == 0) {
		close(fds[0]);
		_exit(serve(name, fds[1]));
	}
	close(fds[1]);
	/* The server says when it serves: no guessing, no sleeping. */
	if (read(fds[0], &ok, 1) != 1 || ok != '1') {
		fprintf(stderr, "liminal demo: bus '%s': the server did not start\n", name);
		goto out;
	}
	close(fds[0]);

	rtt = calloc(calls, sizeof(*rtt));
	req = calloc(1, size + 1);
	rep = calloc(1, size + 1);
	if (!rtt || !req || !rep) {
		fprintf(stderr, "liminal demo: out of memory\n");
		goto out;
	}
	memset(req, 'x', size);
	r = lmn_bus_join(name, "demo-client", &bus);
	if (r == 0)
		r = lmn_conv_open(bus, "echo", &cc, &conv);
	if (r < 0) {
		fprintf(stderr, "liminal demo: bus '%s': %s\n", name, strerror(-r));
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
			fprintf(stderr, "liminal demo: call %u failed: %s\n", i,
				n < 0 ? strerror((int)-n) : "wrong reply");
			goto out;
		}
	}
	qsort(rtt, calls, sizeof(*rtt), cmp_u64);
	printf("round trip (us): p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
	       pct(rtt, calls, 50), pct(rtt, calls, 90), pct(rtt, calls, 99),
	       pct(rtt, calls, 99.9), (double)rtt[calls - 1] / 1000.0);
	rc = 0;
out:
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	if (waitpid(pid, &status, 0) == pid && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
		fprintf(stderr, "liminal demo: the server process failed\n");
		rc = 1;
	}
	lmn_bus_unlink(name);
	if (rc == 0)
		printf("closed cleanly; bus %s removed\n", name);
	return rc;
}
