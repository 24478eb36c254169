/* SPDX-License-Identifier: MIT */
/* liminal call and liminal serve: request and reply from a shell. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "liminal.h"
#include "verbs.h"

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* All of standard input, up to max bytes: -EMSGSIZE beyond. */
static ssize_t read_stdin(char *buf, size_t max)
{
	size_t n = 0;

	for (;;) {
		char extra;
		ssize_t r = n < max ? read(STDIN_FILENO, buf + n, max - n)
				    : read(STDIN_FILENO, &extra, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return (ssize_t)n;
		if (n >= max)
			return -EMSGSIZE;
		n += (size_t)r;
	}
}

int lmn_tool_call(int argc, char **argv)
{
	uint32_t timeout_ms = 5000;
	bool json = false;
	const struct lmn_tool_opt opts[] = {
		{"--timeout", LMN_OPT_U32, &timeout_ms, 1, INT32_MAX},
		{"--json", LMN_OPT_FLAG, &json, 0, 0},
		{0},
	};
	struct lmn_conv_config cfg = {.policy = LMN_POLICY_FAIL};
	struct lmn_bus_stat st;
	lmn_bus *bus = NULL;
	lmn_conv *conv = NULL;
	const char *pos[3];
	char self[LMN_NAME_MAX + 1];
	char *req = NULL, *rep = NULL;
	size_t req_len;
	ssize_t got;
	uint64_t t0, rtt;
	int n, r, rc = LMN_TOOL_FAILED;

	r = lmn_tool_args(argc, argv, opts, pos, 3, 3, &n,
			  "liminal call NAME SERVICE MESSAGE [--timeout MS] [--json]  "
			  "(MESSAGE '-' reads standard input)");
	if (r)
		return lmn_tool_args_exit(r);
	r = lmn_bus_stat(pos[0], &st);
	if (r < 0)
		return lmn_tool_fail("call", pos[0], r);
	req = malloc(st.max_message + 1u);
	rep = malloc(st.max_message + 1u);
	if (!req || !rep) {
		r = -ENOMEM;
		goto fail;
	}
	if (!strcmp(pos[2], "-")) {
		got = read_stdin(req, st.max_message);
		if (got < 0) {
			r = (int)got;
			goto fail;
		}
		req_len = (size_t)got;
	} else {
		req_len = strlen(pos[2]);
		if (req_len > st.max_message) {
			r = -EMSGSIZE;
			goto fail;
		}
		memcpy(req, pos[2], req_len);
	}
	snprintf(self, sizeof(self), "liminal-call-%d", (int)getpid());
	r = lmn_bus_join(pos[0], self, &bus);
	if (r < 0)
		goto fail;
	r = lmn_conv_open(bus, pos[1], &cfg, &conv);
	if (r < 0) {
		lmn_tool_err("liminal call: bus '%s': service '%s': %s\n", pos[0], pos[1],
			strerror(-r));
		goto out;
	}
	t0 = mono_ns();
	got = lmn_call(conv, req, req_len, rep, st.max_message, (int)timeout_ms);
	rtt = mono_ns() - t0;
	if (got < 0) {
		lmn_tool_err("liminal call: bus '%s': service '%s': %s\n", pos[0], pos[1],
			strerror((int)-got));
		goto out;
	}
	if (json) {
		struct lmn_json j;

		lmn_json_init(&j, stdout);
		lmn_json_begin_obj(&j);
		lmn_json_key(&j, "reply");
		lmn_json_strn(&j, rep, (size_t)got);
		lmn_json_key(&j, "bytes");
		lmn_json_u64(&j, (uint64_t)got);
		lmn_json_key(&j, "rtt_ns");
		lmn_json_u64(&j, rtt);
		lmn_json_end_obj(&j);
	} else {
		fwrite(rep, 1, (size_t)got, stdout);
		fputc('\n', stdout);
	}
	rc = fflush(stdout) == 0 ? LMN_TOOL_OK : LMN_TOOL_FAILED;
out:
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	free(req);
	free(rep);
	return rc;
fail:
	free(req);
	free(rep);
	return lmn_tool_fail("call", pos[0], r);
}

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int lmn_tool_serve(int argc, char **argv)
{
	uint32_t count = 0;
	bool echo = false;
	const struct lmn_tool_opt opts[] = {
		{"--echo", LMN_OPT_FLAG, &echo, 0, 0},
		{"--count", LMN_OPT_U32, &count, 1, UINT32_MAX},
		{0},
	};
	struct sigaction sa = {.sa_handler = on_signal};
	char self[LMN_NAME_MAX + 1];
	const char *pos[2];
	uint64_t answered = 0;
	lmn_bus *bus;
	int n, r;

	r = lmn_tool_args(argc, argv, opts, pos, 2, 2, &n,
			  "liminal serve NAME SERVICE --echo [--count N]");
	if (r)
		return lmn_tool_args_exit(r);
	if (!echo)
		return lmn_tool_usage_error("serve", "say what to answer with: --echo (answer "
						     "each request with its own bytes) is the one "
						     "behaviour");
	snprintf(self, sizeof(self), "liminal-serve-%d", (int)getpid());
	r = lmn_bus_join(pos[0], self, &bus);
	if (r < 0)
		return lmn_tool_fail("serve", pos[0], r);
	r = lmn_bus_serve(bus, pos[1]);
	if (r < 0) {
		lmn_tool_err("liminal serve: bus '%s': service '%s': %s\n", pos[0], pos[1],
			strerror(-r));
		lmn_bus_leave(bus);
		return LMN_TOOL_FAILED;
	}
	/* No SA_RESTART: the flag is looked at between requests. */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	printf("serving '%s' on bus '%s' as '%s'\n", pos[1], pos[0], self);
	/* Scripts wait for that line: one that cannot be written is a
	 * failure, said at once (main() says why). */
	if (fflush(stdout) != 0) {
		lmn_bus_leave(bus);
		return LMN_TOOL_FAILED;
	}
	while (!stop && (!count || answered < count)) {
		lmn_msg *m;

		/* A bounded wait, so that a signal is seen within a quarter
		 * of a second: the library's sleeps resume after a signal. */
		r = lmn_next(bus, &m, 250);
		if (r == -ETIMEDOUT || r == -EINTR)
			continue;
		/* A damaged request or ring of one conversation (lmn_next(3)):
		 * say so, and serve the rest.  One caller that scribbles on
		 * its own rings must not stop the service for everyone.  A
		 * lack of memory is not that, and ends it below. */
		if (r == -EBADMSG) {
			lmn_tool_err("liminal serve: bus '%s': %s; serving on\n", pos[0], strerror(-r));
			continue;
		}
		if (r < 0) {
			lmn_tool_fail("serve", pos[0], r);
			lmn_bus_leave(bus);
			return LMN_TOOL_FAILED;
		}
		if (lmn_msg_kind(m) == LMN_MSG_REQUEST) {
			r = lmn_reply(m, lmn_msg_data(m), lmn_msg_size(m));
			/* A caller that went away meanwhile is not our
			 * failure: its conversation says so. */
			if (r == 0)
				answered++;
		}
		lmn_msg_release(m);
	}
	lmn_bus_leave(bus);
	return LMN_TOOL_OK;
}
