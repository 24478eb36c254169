/* SPDX-License-Identifier: MIT */
/*
 * liminal watch: joins, leaves and crashes as they happen.
 *
 * Three sources, one loop.  The bus's roster word is bumped at every join,
 * leave and reclaimed death; a thread sleeps on it and pokes an eventfd.
 * The exit log tells a leave from a crash.  And a pidfd per participant
 * tells of a death that nobody has reclaimed yet (nobody depended on the
 * dead process), which the log would only show after `liminal gc`.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "liminal.h"
#include "verbs.h"
#include "../lib/inspect.h"

struct known {
	uint32_t slot, gen;
	char name[LMN_NAME_MAX + 1];
	pid_t pid;
	int pidfd;   /* -1 when none could be had */
	bool ended;  /* its leave or crash was printed */
	bool seen;   /* in the latest picture */
};

struct watch {
	const char *bus;
	const char *only; /* PARTICIPANT, or NULL */
	bool json;
	uint32_t count, printed;
	struct lmn__insp_view *view;
	struct known *k;
	uint32_t n_k, cap_k;
	uint64_t last_seq;
	int epfd, evfd;
};

/* The library's name rule (lib/names.c), from the static library. */
int lmn__check_name(const char *name);

static volatile sig_atomic_t stop;
static int roster_stop; /* tells the roster thread to end */

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int done(struct watch *w)
{
	return w->count && w->printed >= w->count;
}

static void emit(struct watch *w, const char *event, const struct known *k, uint64_t t_ns,
		 const char *health)
{
	if (done(w) || (w->only && strcmp(w->only, k->name)))
		return;
	if (w->json) {
		struct lmn_json j;

		lmn_json_init(&j, stdout);
		lmn_json_begin_obj(&j);
		lmn_json_key(&j, "event");
		lmn_json_str(&j, event);
		lmn_json_key(&j, "name");
		lmn_json_str(&j, k->name);
		lmn_json_key(&j, "pid");
		lmn_json_i64(&j, k->pid);
		lmn_json_key(&j, "slot");
		lmn_json_u64(&j, k->slot);
		if (health) {
			lmn_json_key(&j, "health");
			lmn_json_str(&j, health);
		}
		lmn_json_key(&j, "time_ns");
		lmn_json_u64(&j, t_ns);
		lmn_json_end_obj(&j);
	} else {
		time_t s = (time_t)(t_ns / 1000000000ull);
		struct tm tm;
		char hms[16] = "--:--:--";

		if (localtime_r(&s, &tm))
			strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
		printf("%s.%03u %-8s %s pid %d%s%s\n", hms,
		       (unsigned)(t_ns / 1000000ull % 1000), event, k->name, (int)k->pid,
		       health ? " " : "", health ? health : "");
	}
	fflush(stdout);
	w->printed++;
}

static struct known *find(struct watch *w, uint32_t slot, uint32_t gen)
{
	for (uint32_t i = 0; i < w->n_k; i++)
		if (w->k[i].slot == slot && w->k[i].gen == gen)
			return &w->k[i];
	return NULL;
}

static void forget_pidfd(struct watch *w, struct known *k)
{
	if (k->pidfd < 0)
		return;
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, k->pidfd, NULL);
	close(k->pidfd);
	k->pidfd = -1;
}

static struct known *add(struct watch *w, const struct lmn__insp_part *p)
{
	struct known *k;

	if (w->n_k == w->cap_k) {
		struct known *nk = realloc(w->k, (w->cap_k ? w->cap_k * 2 : 16) * sizeof(*nk));

		if (!nk)
			return NULL;
		w->k = nk;
		w->cap_k = w->cap_k ? w->cap_k * 2 : 16;
	}
	k = &w->k[w->n_k++];
	memset(k, 0, sizeof(*k));
	k->slot = p->slot;
	k->gen = p->gen;
	k->pid = p->pid;
	strcpy(k->name, p->name);
	k->pidfd = p->pid > 0 ? (int)syscall(SYS_pidfd_open, p->pid, 0) : -1;
	if (k->pidfd >= 0) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = w->n_k - 1};

		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, k->pidfd, &ev) < 0) {
			close(k->pidfd);
			k->pidfd = -1;
		}
	}
	return k;
}

/* Print the exits logged since the last look. */
static void read_exits(struct watch *w)
{
	struct lmn__insp_exit e[64];
	int n = lmn__insp_view_exits(w->view, w->last_seq, e, 64);

	for (int i = 0; i < n; i++) {
		struct known *k = find(w, e[i].slot, e[i].gen);

		w->last_seq = e[i].seq;
		if (!k) {
			/* Joined and gone between two looks: the record tells
			 * both. */
			struct lmn__insp_part p = {.slot = e[i].slot, .gen = e[i].gen, .pid = 0};
			uint64_t t = e[i].exit_ns;

			strcpy(p.name, e[i].name);
			k = add(w, &p);
			if (!k)
				continue;
			k->pid = e[i].pid;
			emit(w, "join", k, t, NULL);
		}
		if (k->ended)
			continue;
		k->ended = true;
		forget_pidfd(w, k);
		emit(w, e[i].crashed ? "crash" : "leave", k, e[i].exit_ns, NULL);
	}
}

/* Look at the roster: new participants, and ones gone without a record. */
static int read_roster(struct watch *w, bool first)
{
	struct lmn__insp s;
	int r = lmn__insp_view_take(w->view, &s);

	if (r < 0)
		return r;
	for (uint32_t i = 0; i < w->n_k; i++)
		w->k[i].seen = false;
	for (uint32_t i = 0; i < s.n_parts; i++) {
		const struct lmn__insp_part *p = &s.parts[i];
		struct known *k = find(w, p->slot, p->gen);

		if (!k) {
			/* A slot still being claimed has no name yet: wait for
			 * the join to settle. */
			if (p->health == LMN__INSP_JOINING && !p->name[0])
				continue;
			k = add(w, p);
			if (!k)
				break;
			emit(w, first ? "present" : "join", k, first ? lmn_tool_realtime_ns()
								   : p->joined_ns,
			     first ? lmn_tool_health(p->health) : NULL);
		}
		k->seen = true;
	}
	for (uint32_t i = 0; i < w->n_k; i++) {
		struct known *k = &w->k[i];

		if (k->seen || k->ended)
			continue;
		/* Gone from the table with no record we could read (the log
		 * holds the last 64): call it what the log would have, if it
		 * was logged since; else a leave. */
		k->ended = true;
		forget_pidfd(w, k);
		emit(w, "leave", k, lmn_tool_realtime_ns(), NULL);
	}
	lmn__inspect_free(&s);
	return 0;
}

/* Participant k's process has ended.  Unless the log says how by now, it
 * died without leaving: a crash nobody has reclaimed yet. */
static void on_death(struct watch *w, struct known *k)
{
	read_exits(w);
	if (k->ended)
		return;
	k->ended = true;
	forget_pidfd(w, k);
	emit(w, "crash", k, lmn_tool_realtime_ns(), NULL);
}

static void *roster_thread(void *p)
{
	struct watch *w = p;
	uint32_t seen = lmn__insp_view_roster(w->view);
	uint64_t one = 1;

	/* Bounded sleeps: the thread is joined at the end, and nothing may
	 * be written to the bus just to wake it. */
	while (!__atomic_load_n(&roster_stop, __ATOMIC_ACQUIRE)) {
		uint32_t before = seen;

		(void)lmn__insp_view_wait(w->view, &seen, 200);
		if (seen != before && write(w->evfd, &one, sizeof(one)) < 0)
			return NULL;
	}
	return NULL;
}

int lmn_tool_watch(int argc, char **argv)
{
	uint32_t timeout_ms = 0;
	struct watch w = {.epfd = -1, .evfd = -1};
	const struct lmn_tool_opt opts[] = {
		{"--json", LMN_OPT_FLAG, &w.json, 0, 0},
		{"--count", LMN_OPT_U32, &w.count, 1, UINT32_MAX},
		{"--timeout", LMN_OPT_U32, &timeout_ms, 1, INT32_MAX},
		{0},
	};
	struct sigaction sa = {.sa_handler = on_signal};
	struct lmn__insp_exit e[64];
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
	const char *pos[2];
	uint64_t deadline = 0;
	pthread_t t;
	bool thread = false;
	sigset_t block;
	int n, r, rc = LMN_TOOL_OK;

	r = lmn_tool_args(argc, argv, opts, pos, 1, 2, &n,
			  "liminal watch NAME [PARTICIPANT] [--json] [--count N] [--timeout MS]");
	if (r)
		return lmn_tool_args_exit(r);
	w.bus = pos[0];
	w.only = n > 1 ? pos[1] : NULL;
	if (w.only && lmn__check_name(w.only) < 0)
		return lmn_tool_usage_error("watch", "'%s' is not a participant name", w.only);
	r = lmn__insp_view_open(w.bus, &w.view);
	if (r < 0)
		return lmn_tool_fail("watch", w.bus, r);
	w.epfd = epoll_create1(EPOLL_CLOEXEC);
	w.evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w.epfd < 0 || w.evfd < 0 || epoll_ctl(w.epfd, EPOLL_CTL_ADD, w.evfd, &ev) < 0) {
		rc = lmn_tool_fail("watch", w.bus, errno);
		goto out;
	}
	/* Old exits are history: start after the newest one logged. */
	n = lmn__insp_view_exits(w.view, 0, e, 64);
	w.last_seq = n > 0 ? e[n - 1].seq : 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* The roster thread takes no signals: they must interrupt the
	 * main thread's epoll_wait. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	r = pthread_create(&t, NULL, roster_thread, &w);
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);
	if (r) {
		rc = lmn_tool_fail("watch", w.bus, r);
		goto out;
	}
	thread = true;
	if (timeout_ms)
		deadline = lmn_tool_realtime_ns() + (uint64_t)timeout_ms * 1000000ull;
	if ((r = read_roster(&w, true)) < 0) {
		rc = lmn_tool_fail("watch", w.bus, r);
		goto out;
	}
	while (!stop && !done(&w)) {
		struct epoll_event evs[16];
		int wait_ms = 1000, got;
		const char *gone;

		if (deadline) {
			uint64_t now = lmn_tool_realtime_ns();

			if (now >= deadline)
				break;
			if ((deadline - now) / 1000000ull < (uint64_t)wait_ms)
				wait_ms = (int)((deadline - now) / 1000000ull) + 1;
		}
		got = epoll_wait(w.epfd, evs, 16, wait_ms);
		if (got < 0 && errno != EINTR) {
			rc = lmn_tool_fail("watch", w.bus, errno);
			break;
		}
		if ((gone = lmn__insp_view_gone(w.view))) {
			lmn_tool_err("liminal watch: bus '%s': %s\n", w.bus, gone);
			rc = LMN_TOOL_FAILED;
			break;
		}
		/* Exits first: a leave logged before the process ended must
		 * not be taken for a crash. */
		read_exits(&w);
		for (int i = 0; i < got && !done(&w); i++) {
			if (evs[i].data.u32 == UINT32_MAX) {
				uint64_t v;

				if (read(w.evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					break;
			} else if (evs[i].data.u32 < w.n_k) {
				on_death(&w, &w.k[evs[i].data.u32]);
			}
		}
		if (!done(&w) && (r = read_roster(&w, false)) < 0) {
			rc = lmn_tool_fail("watch", w.bus, r);
			break;
		}
	}
	if (rc == LMN_TOOL_OK && w.count && !done(&w) && !stop) {
		lmn_tool_err("liminal watch: bus '%s': timed out after %u of %u events\n", w.bus,
			w.printed, w.count);
		rc = LMN_TOOL_FAILED;
	}
out:
	if (thread) {
		__atomic_store_n(&roster_stop, 1, __ATOMIC_RELEASE);
		pthread_join(t, NULL);
	}
	for (uint32_t i = 0; i < w.n_k; i++)
		if (w.k[i].pidfd >= 0)
			close(w.k[i].pidfd);
	free(w.k);
	if (w.epfd >= 0)
		close(w.epfd);
	if (w.evfd >= 0)
		close(w.evfd);
	lmn__insp_view_close(w.view);
	fflush(stdout);
	return rc;
}
