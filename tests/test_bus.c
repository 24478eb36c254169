/* SPDX-License-Identifier: MIT */
/*
 * Buses and participants: create and unlink, the file and its mode, joining
 * and leaving, unique names across processes (including a race of joiners),
 * table limits, and services.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static void bus_path(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/liminal.%s", getenv("LIMINAL_DIR"), name);
}

START_TEST(create_unlink_and_exists)
{
	const char *name = th_bus_name();
	char path[PATH_MAX];
	struct stat st;

	ck_assert_int_eq(lmn_bus_create(name, NULL), 0);
	bus_path(path, sizeof(path), name);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(lmn_bus_create(name, NULL), -EEXIST);
	ck_assert_int_eq(lmn_bus_unlink(name), 0);
	ck_assert_int_eq(stat(path, &st), -1);
	ck_assert_int_eq(lmn_bus_unlink(name), -ENOENT);
	ck_assert_int_eq(lmn_bus_join(name, "me", &(lmn_bus *){NULL}), -ENOENT);
	/* The name is free again. */
	ck_assert_int_eq(lmn_bus_create(name, NULL), 0);
}
END_TEST

START_TEST(mode_is_honoured)
{
	struct lmn_bus_config cfg = {.mode = 0640};
	const char *name = th_bus_name();
	char path[PATH_MAX];
	struct stat st;

	ck_assert_int_eq(lmn_bus_create(name, &cfg), 0);
	bus_path(path, sizeof(path), name);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0640);
}
END_TEST

START_TEST(no_temporary_files_left)
{
	const char *name = th_bus_name();
	char cmd[PATH_MAX];
	FILE *f;
	int n = -1;

	ck_assert_int_eq(lmn_bus_create(name, NULL), 0);
	ck_assert_int_eq(lmn_bus_create(name, NULL), -EEXIST);
	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", getenv("LIMINAL_DIR"));
	f = popen(cmd, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%d", &n), 1);
	pclose(f);
	ck_assert_int_eq(n, 1);
}
END_TEST

START_TEST(config_is_checked)
{
	const char *name = th_bus_name();

	ck_assert_int_eq(lmn_bus_create(name, &(struct lmn_bus_config){.ring_depth = 3}), -EINVAL);
	ck_assert_int_eq(lmn_bus_create(name, &(struct lmn_bus_config){.ring_depth = 8192}),
			 -EINVAL);
	ck_assert_int_eq(lmn_bus_create(name, &(struct lmn_bus_config){.participants = 5000}),
			 -EINVAL);
	ck_assert_int_eq(
		lmn_bus_create(name, &(struct lmn_bus_config){.conversations = (1u << 20) + 1}),
		-EINVAL);
	ck_assert_int_eq(
		lmn_bus_create(name, &(struct lmn_bus_config){.max_message = (16u << 20) + 1}),
		-EINVAL);
	ck_assert_int_eq(lmn_bus_create(name, &(struct lmn_bus_config){.mode = 01777}), -EINVAL);
	ck_assert_int_eq(lmn_bus_create(name, &(struct lmn_bus_config){.reserved = {0, 1}}),
			 -EINVAL);
	ck_assert_int_eq(lmn_bus_create(name, &(struct lmn_bus_config){.flags = 2}), -EINVAL);
	/* Nothing was left behind by the refusals. */
	ck_assert_int_eq(lmn_bus_unlink(name), -ENOENT);
}
END_TEST

struct joiner {
	const char *bus;
	const char *self;
	struct th_event ready, go, done;
};

/* Joins, says whether it got the name, holds it until told to go. */
static int joiner_main(void *p)
{
	struct joiner *j = p;
	lmn_bus *bus = NULL;
	int r;

	if (th_event_await(&j->ready, TH_TIMEOUT_MS) < 0)
		return 70;
	r = lmn_bus_join(j->bus, j->self, &bus);
	th_event_fire(&j->done);
	if (th_event_await(&j->go, TH_TIMEOUT_MS) < 0)
		return 71;
	if (r == 0)
		lmn_bus_leave(bus);
	return r == 0 ? 0 : r == -EADDRINUSE ? 1 : 72;
}

START_TEST(names_unique_across_processes)
{
	const char *name = th_bus(8, 4, 64);
	struct joiner j = {.bus = name, .self = "unique"};
	lmn_bus *mine, *again;
	pid_t pid;

	ck_assert_int_eq(lmn_bus_join(name, "unique", &mine), 0);
	th_event_new(&j.ready);
	th_event_new(&j.go);
	th_event_new(&j.done);
	pid = th_fork(joiner_main, &j);
	th_event_fire(&j.ready);
	ck_assert_int_eq(th_event_await(&j.done, TH_TIMEOUT_MS), 0);
	th_event_fire(&j.go);
	ck_assert_int_eq(th_wait(pid, TH_TIMEOUT_MS), 1); /* -EADDRINUSE there */
	/* Here too, and a different name is fine. */
	ck_assert_int_eq(lmn_bus_join(name, "unique", &again), -EADDRINUSE);
	ck_assert_int_eq(lmn_bus_join(name, "other", &again), 0);
	lmn_bus_leave(again);
	/* After leaving, the name can be taken at once. */
	ck_assert_int_eq(lmn_bus_leave(mine), 0);
	ck_assert_int_eq(lmn_bus_join(name, "unique", &mine), 0);
	lmn_bus_leave(mine);
}
END_TEST

/* Many processes join under one name at the same moment: exactly one wins,
 * every round. */
START_TEST(join_race_has_one_winner)
{
	enum { RACERS = 6, ROUNDS = 20 };
	const char *name = th_bus(8, 4, 64);

	for (int round = 0; round < ROUNDS; round++) {
		struct joiner j[RACERS];
		pid_t pids[RACERS];
		int winners = 0, losers = 0;

		for (int i = 0; i < RACERS; i++) {
			j[i] = (struct joiner){.bus = name, .self = "contested"};
			th_event_new(&j[i].ready);
			th_event_new(&j[i].go);
			th_event_new(&j[i].done);
			pids[i] = th_fork(joiner_main, &j[i]);
		}
		for (int i = 0; i < RACERS; i++)
			th_event_fire(&j[i].ready);
		for (int i = 0; i < RACERS; i++)
			ck_assert_int_eq(th_event_await(&j[i].done, TH_TIMEOUT_MS), 0);
		for (int i = 0; i < RACERS; i++)
			th_event_fire(&j[i].go);
		for (int i = 0; i < RACERS; i++) {
			int rc = th_wait(pids[i], TH_TIMEOUT_MS);

			ck_assert_msg(rc == 0 || rc == 1, "joiner exit %d", rc);
			winners += rc == 0;
			losers += rc == 1;
			close(j[i].ready.fd[0]);
			close(j[i].ready.fd[1]);
			close(j[i].go.fd[0]);
			close(j[i].go.fd[1]);
			close(j[i].done.fd[0]);
			close(j[i].done.fd[1]);
		}
		ck_assert_int_eq(winners, 1);
		ck_assert_int_eq(losers, RACERS - 1);
	}
}
END_TEST

START_TEST(participant_table_limit)
{
	struct lmn_bus_config cfg = {.participants = 3, .conversations = 4};
	const char *name = th_bus_name();
	lmn_bus *b[3], *extra;
	char self[16];

	ck_assert_int_eq(lmn_bus_create(name, &cfg), 0);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 3; i++) {
			snprintf(self, sizeof(self), "p%d", i);
			ck_assert_int_eq(lmn_bus_join(name, self, &b[i]), 0);
		}
		ck_assert_int_eq(lmn_bus_join(name, "p3", &extra), -ENOSPC);
		for (int i = 0; i < 3; i++)
			ck_assert_int_eq(lmn_bus_leave(b[i]), 0);
	}
}
END_TEST

START_TEST(serving_services)
{
	const char *name = th_bus(8, 4, 64);
	lmn_bus *bus;
	char svc[16];

	ck_assert_int_eq(lmn_bus_join(name, "srv", &bus), 0);
	ck_assert_int_eq(lmn_bus_serve(bus, "a"), 0);
	ck_assert_int_eq(lmn_bus_serve(bus, "a"), 0); /* again: no-op */
	for (int i = 1; i < LMN_SERVICES_MAX; i++) {
		snprintf(svc, sizeof(svc), "s%d", i);
		ck_assert_int_eq(lmn_bus_serve(bus, svc), 0);
	}
	ck_assert_int_eq(lmn_bus_serve(bus, "one-too-many"), -ENOSPC);
	lmn_bus_leave(bus);
}
END_TEST

/* A participant may serve itself: a conversation opened to its own service
 * comes back through its own lmn_next. */
START_TEST(serve_yourself)
{
	const char *name = th_bus(8, 4, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_bus *bus;
	lmn_conv *conv;
	lmn_msg *m;
	char rep[8];

	ck_assert_int_eq(lmn_bus_join(name, "self", &bus), 0);
	ck_assert_int_eq(lmn_bus_serve(bus, "loop"), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "loop", &cfg, &conv), 0);
	ck_assert_int_eq(lmn_send(conv, "ping", 4, 0), 0);
	ck_assert_int_eq(lmn_next(bus, &m, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_msg_kind(m), LMN_MSG_REQUEST);
	ck_assert_uint_eq(lmn_msg_size(m), 4);
	ck_assert_mem_eq(lmn_msg_data(m), "ping", 4);
	ck_assert_str_eq(lmn_msg_sender(m), "self");
	ck_assert_uint_eq(lmn_msg_flags(m), 0);
	ck_assert_int_eq(lmn_reply(m, "pong", 4), 0);
	lmn_msg_release(m);
	ck_assert_int_eq(lmn_recv(conv, rep, sizeof(rep), TH_TIMEOUT_MS), 4);
	ck_assert_mem_eq(rep, "pong", 4);
	ck_assert_int_eq(lmn_next(bus, &m, 0), -ETIMEDOUT);
	lmn_conv_close(conv);
	ck_assert_int_eq(lmn_next(bus, &m, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_msg_kind(m), LMN_MSG_CLOSED);
	lmn_msg_release(m);
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
}
END_TEST

/* The conversation table comes back to empty after conversations end in
 * every order of close, free and leave. */
START_TEST(slots_return_in_every_order)
{
	const char *name = th_bus(2, 4, 64);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);

	for (int order = 0; order < 3; order++) {
		lmn_bus *srv, *cli;
		lmn_conv *a, *b;
		lmn_msg *m;

		ck_assert_int_eq(lmn_bus_join(name, "srv", &srv), 0);
		ck_assert_int_eq(lmn_bus_serve(srv, "svc"), 0);
		ck_assert_int_eq(lmn_bus_join(name, "cli", &cli), 0);
		ck_assert_int_eq(lmn_conv_open(cli, "svc", &cfg, &a), 0);
		ck_assert_int_eq(lmn_conv_open(cli, "svc", &cfg, &b), 0);
		ck_assert_int_eq(lmn_conv_open(cli, "svc", &cfg, &(lmn_conv *){NULL}), -ENOSPC);
		ck_assert_int_eq(lmn_send(a, "x", 1, 0), 0);
		ck_assert_int_eq(lmn_next(srv, &m, TH_TIMEOUT_MS), 0);
		switch (order) {
		case 0: /* client closes and frees, server drains, then both leave */
			lmn_conv_free(a);
			lmn_conv_free(b);
			lmn_msg_release(m);
			for (int k = 0; k < 2; k++) {
				ck_assert_int_eq(lmn_next(srv, &m, TH_TIMEOUT_MS), 0);
				ck_assert_int_eq(lmn_msg_kind(m), LMN_MSG_CLOSED);
				lmn_msg_release(m);
			}
			lmn_bus_leave(srv);
			lmn_bus_leave(cli);
			break;
		case 1: /* server leaves holding a message, then the client */
			lmn_bus_leave(srv);
			/* The held message is detached, empty, still ours to free. */
			ck_assert_ptr_null(lmn_msg_data(m));
			ck_assert_int_eq(lmn_reply(m, "x", 1), -ESTALE);
			lmn_msg_release(m);
			lmn_bus_leave(cli);
			lmn_conv_free(a);
			lmn_conv_free(b);
			break;
		case 2: /* client leaves with conversations open, then server */
			lmn_bus_leave(cli);
			lmn_msg_release(m);
			lmn_bus_leave(srv);
			lmn_conv_free(a);
			lmn_conv_free(b);
			break;
		}
	}
	/* Both slots are free again. */
	{
		lmn_bus *b;
		lmn_conv *x, *y;

		ck_assert_int_eq(lmn_bus_join(name, "last", &b), 0);
		ck_assert_int_eq(lmn_conv_open(b, NULL, &cfg, &x), 0);
		ck_assert_int_eq(lmn_conv_open(b, NULL, &cfg, &y), 0);
		lmn_conv_free(x);
		lmn_conv_free(y);
		lmn_bus_leave(b);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("bus");
	TCase *tc = tcase_create("bus");

	tcase_add_checked_fixture(tc, th_setup, th_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, create_unlink_and_exists);
	tcase_add_test(tc, mode_is_honoured);
	tcase_add_test(tc, no_temporary_files_left);
	tcase_add_test(tc, config_is_checked);
	tcase_add_test(tc, names_unique_across_processes);
	tcase_add_test(tc, join_race_has_one_winner);
	tcase_add_test(tc, participant_table_limit);
	tcase_add_test(tc, serving_services);
	tcase_add_test(tc, serve_yourself);
	tcase_add_test(tc, slots_return_in_every_order);
	suite_add_tcase(s, tc);
	return th_run(s);
}
