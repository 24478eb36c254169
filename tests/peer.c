/* SPDX-License-Identifier: MIT */
/*
 * A separate program that the suites exec, so that participants are real,
 * unrelated images and not only forks sharing the test's memory.
 *
 *   lmn_test_peer serve BUS SELF SERVICE CLOSES READY_FD
 *       serve SERVICE, write one byte to READY_FD once serving, reply to
 *       each request with its bytes reversed, exit 0 after CLOSES closes.
 *   lmn_test_peer call BUS SELF TARGET CALLS
 *       make CALLS calls and check every reply; exit 0 if all were right.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "liminal.h"

static int serve(char **argv)
{
	int closes = 0, want = atoi(argv[4]), ready = atoi(argv[5]);
	lmn_bus *bus;
	char out[4096];

	if (lmn_bus_join(argv[1], argv[2], &bus) < 0 || lmn_bus_serve(bus, argv[3]) < 0)
		return 10;
	if (write(ready, "!", 1) != 1)
		return 11;
	close(ready);
	while (closes < want) {
		lmn_msg *m;
		size_t n;
		int r = lmn_next(bus, &m, 30000);

		if (r < 0)
			return 12;
		if (lmn_msg_kind(m) == LMN_MSG_CLOSED) {
			closes++;
		} else {
			const char *in = lmn_msg_data(m);

			n = lmn_msg_size(m);
			if (n > sizeof(out))
				return 13;
			for (size_t i = 0; i < n; i++)
				out[i] = in[n - 1 - i];
			if (lmn_reply(m, out, n) < 0)
				return 14;
		}
		lmn_msg_release(m);
	}
	return lmn_bus_leave(bus) == 0 ? 0 : 15;
}

static int call(char **argv)
{
	struct lmn_conv_config cfg = {.policy = LMN_POLICY_FAIL};
	int calls = atoi(argv[4]);
	lmn_bus *bus;
	lmn_conv *conv;

	if (lmn_bus_join(argv[1], argv[2], &bus) < 0)
		return 20;
	if (lmn_conv_open(bus, argv[3], &cfg, &conv) < 0)
		return 21;
	for (int i = 0; i < calls; i++) {
		char req[32], rep[32], want[32];
		int n = snprintf(req, sizeof(req), "%s:%d", argv[2], i);
		ssize_t got = lmn_call(conv, req, (size_t)n, rep, sizeof(rep), 30000);

		for (int k = 0; k < n; k++)
			want[k] = req[n - 1 - k];
		if (got != n || memcmp(rep, want, (size_t)n) != 0)
			return 22;
	}
	if (lmn_conv_close(conv) < 0)
		return 23;
	lmn_conv_free(conv);
	return lmn_bus_leave(bus) == 0 ? 0 : 24;
}

int main(int argc, char **argv)
{
	if (argc == 7 && !strcmp(argv[1], "serve"))
		return serve(argv + 1);
	if (argc == 6 && !strcmp(argv[1], "call"))
		return call(argv + 1);
	fprintf(stderr, "usage: lmn_test_peer serve BUS SELF SERVICE CLOSES READY_FD\n"
			"       lmn_test_peer call BUS SELF TARGET CALLS\n");
	return 2;
}
