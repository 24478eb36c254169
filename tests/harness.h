/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers for the Check suites.  Every test gets a private bus
 * directory (LIMINAL_DIR) and unique bus names, so suites run in parallel
 * without meeting.  Processes synchronise through pipes, never by sleeping;
 * every wait is bounded by a timeout or by Check's per-test timeout.
 */
#ifndef LMN_TESTS_HARNESS_H
#define LMN_TESTS_HARNESS_H

#include <check.h>
#include <stdint.h>
#include <sys/types.h>

#include "liminal.h"

/* Call in each test's set-up: makes a private bus directory. */
void th_setup(void);
/* Call in each test's tear-down: removes it and everything in it. */
void th_teardown(void);

/* A fresh bus name, unique in this run. */
const char *th_bus_name(void);
/* Create a bus with small sizes good for tests; returns its name. */
const char *th_bus(uint32_t conversations, uint32_t depth, uint32_t max_message);

/* CLOCK_MONOTONIC, in nanoseconds and in milliseconds. */
uint64_t th_now_ns(void);
uint64_t th_now_ms(void);

/* Run fn(arg) in a child process.  The child's exit status is fn's return
 * value; an abort or a failed assertion in it is a non-zero status. */
pid_t th_fork(int (*fn)(void *), void *arg);
/* Wait for a child, at most timeout_ms; returns its exit code, or -1 if it
 * died by a signal, or -2 if it is still running (then it is killed). */
int th_wait(pid_t pid, int timeout_ms);

/* Is thread tid of process pid asleep inside system call nr (-1: in
 * either of the two a wait sleeps in, futex or io_uring_enter)?  Read from
 * /proc: a task in state S inside the call has queued itself. */
int th_asleep_in(pid_t pid, pid_t tid, long nr);
/* Wait until the main thread of pid sleeps in system call nr: 0, or -1
 * after timeout_ms. */
int th_await_asleep(pid_t pid, long nr, int timeout_ms);

/* A one-shot event between processes: a pipe.  th_event_new before fork;
 * one side th_event_fire, the other th_event_await (bounded). */
struct th_event {
	int fd[2];
};
void th_event_new(struct th_event *e);
void th_event_fire(struct th_event *e);
/* 0 when fired, -1 on timeout. */
int th_event_await(struct th_event *e, int timeout_ms);

/* An echo server in a child: joins as `self`, serves `service` (unless
 * NULL), fires `ready`, then echoes every request until `max_closes`
 * conversations closed (0: until the timeout of an idle lmn_next). */
struct th_echo {
	const char *bus;
	const char *self;
	const char *service;
	struct th_event ready;
	int max_closes;
	int idle_timeout_ms;
};
pid_t th_echo_start(struct th_echo *e);

/* Suite runner: runs s in Check, returns the process exit code. */
int th_run(Suite *s);

/* A conversation config with a policy, for brevity. */
static inline struct lmn_conv_config th_cfg(enum lmn_policy p)
{
	struct lmn_conv_config c = {.policy = p};
	return c;
}

#define TH_TIMEOUT_MS 20000

#endif
