/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static char dir[256];
static char base_dir[256];
static unsigned counter;

/* Each test runs in a process Check forks, and Check skips the teardown of
 * a test that failed; so every test's directory lives inside one made by
 * th_run() in the parent, which removes it whatever happened. */
void th_setup(void)
{
	const char *base = getenv("LMN_TEST_BASE");

	snprintf(dir, sizeof(dir), "%s/t-XXXXXX", base && *base ? base : "/dev/shm");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	setenv("LIMINAL_DIR", dir, 1);
}

static void remove_tree(const char *path)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", path);
}

void th_teardown(void)
{
	if (!dir[0])
		return;
	remove_tree(dir);
	dir[0] = '\0';
}

const char *th_bus_name(void)
{
	/* A few dozen live at once in a test; each stays valid that long. */
	static char names[64][32];
	char *name = names[counter % 64];

	snprintf(name, sizeof(names[0]), "t%d-%u", (int)getpid(), counter);
	counter++;
	return name;
}

const char *th_bus(uint32_t conversations, uint32_t depth, uint32_t max_message)
{
	struct lmn_bus_config cfg = {
		.participants = 16,
		.conversations = conversations,
		.ring_depth = depth,
		.max_message = max_message,
	};
	const char *name = th_bus_name();

	ck_assert_int_eq(lmn_bus_create(name, &cfg), 0);
	return name;
}

pid_t th_fork(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(fn(arg));
	return pid;
}

uint64_t th_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

uint64_t th_now_ms(void)
{
	return th_now_ns() / 1000000;
}

/* Is thread tid of process pid asleep inside system call nr (-1: in
 * either of the two a wait sleeps in)? */
int th_asleep_in(pid_t pid, pid_t tid, long nr)
{
	char path[64], buf[512];
	const char *paren;
	FILE *f;
	long call;
	int asleep;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	asleep = fgets(buf, sizeof(buf), f) && (paren = strrchr(buf, ')')) && paren[1] == ' ' &&
		 paren[2] == 'S';
	fclose(f);
	if (!asleep)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", (int)pid, (int)tid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	asleep = fscanf(f, "%ld", &call) == 1 &&
		 (nr == -1 ? call == SYS_futex || call == SYS_io_uring_enter : call == nr);
	fclose(f);
	return asleep;
}

/* Wait until the main thread of pid sleeps in system call nr: 0, or -1
 * after timeout_ms. */
int th_await_asleep(pid_t pid, long nr, int timeout_ms)
{
	uint64_t end = th_now_ms() + (uint64_t)timeout_ms;

	while (!th_asleep_in(pid, pid, nr)) {
		if (th_now_ms() >= end)
			return -1;
		sched_yield();
	}
	return 0;
}

int th_wait(pid_t pid, int timeout_ms)
{
	uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
	int status;

	/* A pidfd would let us block with a timeout; poll it. */
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0)
			return -1;
		if (th_now_ms() >= end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -2;
		}
		/* Sleep in the kernel until the child changes state, bounded:
		 * a pidfd becomes readable when the child exits. */
		{
			int pfd = (int)syscall(SYS_pidfd_open, pid, 0);

			if (pfd >= 0) {
				struct pollfd p = {.fd = pfd, .events = POLLIN};
				int left = (int)(end - th_now_ms());

				poll(&p, 1, left > 0 ? left : 0);
				close(pfd);
			}
		}
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return -1;
}

void th_event_new(struct th_event *e)
{
	ck_assert_int_eq(pipe2(e->fd, O_CLOEXEC), 0);
}

void th_event_fire(struct th_event *e)
{
	ssize_t n = write(e->fd[1], "!", 1);

	(void)n;
}

int th_event_await(struct th_event *e, int timeout_ms)
{
	struct pollfd p = {.fd = e->fd[0], .events = POLLIN};
	char c;

	if (poll(&p, 1, timeout_ms) != 1)
		return -1;
	return read(e->fd[0], &c, 1) == 1 ? 0 : -1;
}

static int echo_main(void *arg)
{
	struct th_echo *e = arg;
	lmn_bus *bus = NULL;
	int closes = 0, r;

	r = lmn_bus_join(e->bus, e->self, &bus);
	if (r < 0)
		return 10;
	if (e->service && lmn_bus_serve(bus, e->service) < 0)
		return 11;
	th_event_fire(&e->ready);
	for (;;) {
		lmn_msg *m;

		r = lmn_next(bus, &m, e->idle_timeout_ms ? e->idle_timeout_ms : TH_TIMEOUT_MS);
		if (r == -ETIMEDOUT && !e->max_closes)
			break;
		if (r < 0)
			return 12;
		if (lmn_msg_kind(m) == LMN_MSG_REQUEST) {
			r = lmn_reply(m, lmn_msg_data(m), lmn_msg_size(m));
			if (r < 0 && r != -EPIPE)
				return 13;
		} else if (lmn_msg_kind(m) == LMN_MSG_CLOSED) {
			closes++;
		}
		lmn_msg_release(m);
		if (e->max_closes && closes >= e->max_closes)
			break;
	}
	lmn_bus_leave(bus);
	return 0;
}

pid_t th_echo_start(struct th_echo *e)
{
	pid_t pid;

	th_event_new(&e->ready);
	pid = th_fork(echo_main, e);
	ck_assert_int_eq(th_event_await(&e->ready, TH_TIMEOUT_MS), 0);
	return pid;
}

int th_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	snprintf(base_dir, sizeof(base_dir), "/dev/shm/lmn-test-XXXXXX");
	if (!mkdtemp(base_dir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	setenv("LMN_TEST_BASE", base_dir, 1);
	srunner_run_all(sr, CK_NORMAL);
	remove_tree(base_dir);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
