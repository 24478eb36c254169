/* SPDX-License-Identifier: MIT */
/*
 * The sentinel: one thread per process, made at the first need, that sleeps
 * in epoll on the pidfds of the participants this process depends on (the
 * servers of its conversations, the initiators of the conversations it
 * serves, the targets of its watches).  When one becomes readable, that
 * process has exited: the sentinel reaps it, which applies each affected
 * conversation's policy and wakes every sleeper, in this process and in
 * others.  It is what makes a death noticed at once with the futex backend,
 * and by processes that are not blocked at all; an io_uring waiter also
 * polls its peer's pidfd itself, to skip this hop.
 *
 * No heartbeat and no daemon: a pidfd is readable as soon as its process
 * exits, and the thread sleeps in the kernel until then.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <ck_pr.h>

#include "internal.h"
#include "../shm/table.h"

struct sentry {
	struct lmn_bus *bus;
	uint32_t idx;
	uint32_t gen;
	int pidfd;
	uint64_t id;
	uint32_t users;   /* waiters asleep with pidfd now: it must stay open */
	uint32_t pollers; /* those of them whose sleep polls it (io_uring):
			   * they reap the death themselves */
	int pending;    /* dead, but its reaper (another process) has not
			 * finished: look again until the slot moves on */
	uint64_t pending_ns; /* when it became pending */
};

/* How long a death is left to the waiters that poll it (reap_pending). */
#define DEFER_NS 100000000ull

static struct {
	/* Guards everything here.  The sentinel thread does not hold it while
	 * it reaps: a waiter woken by the same death takes it (to give its
	 * pidfd back) and must not queue behind that reap.  (A waiter that
	 * finds its peer already dying at registration reaps under it, in
	 * find_or_add: rare, and on that waiter's own path.) */
	pthread_mutex_t lock;
	/* Held by the sentinel while it reaps, by a bus that leaves while it
	 * forgets its entries (the bus stays mapped under a reap), and across
	 * fork.  Taken before lock, never after. */
	pthread_mutex_t reap_lock;
	int epfd;
	bool running;
	struct sentry *v;
	size_t n, cap;
	uint64_t next_id;
} S = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, -1, false, NULL, 0, 0, 1};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
	pthread_mutex_lock(&S.reap_lock);
	pthread_mutex_lock(&S.lock);
}

static void fork_parent(void)
{
	pthread_mutex_unlock(&S.lock);
	pthread_mutex_unlock(&S.reap_lock);
}

/* The child has no sentinel thread and must not share the parent's epoll
 * instance: start from nothing. */
static void fork_child(void)
{
	for (size_t i = 0; i < S.n; i++)
		close(S.v[i].pidfd);
	if (S.epfd >= 0)
		close(S.epfd);
	free(S.v);
	S.v = NULL;
	S.n = S.cap = 0;
	S.epfd = -1;
	S.running = false;
	pthread_mutex_init(&S.lock, NULL);
	pthread_mutex_init(&S.reap_lock, NULL);
}

static void atfork_init(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static void remove_at(size_t i)
{
	epoll_ctl(S.epfd, EPOLL_CTL_DEL, S.v[i].pidfd, NULL);
	close(S.v[i].pidfd);
	S.v[i] = S.v[--S.n];
}

/* reap_lock held.  Reap every pending entry, without the table lock, in
 * the order of their ids (never reused): the table may change meanwhile
 * (waiters add entries and drop stale ones, which moves others), so each
 * step looks the next one up again.
 *
 * With defer, leave entries that a waiter's sleep polls: that waiter wakes
 * on the same death and reaps it at once, and the one that reaps is the one
 * whose caller returns first; this thread, woken beside it, would compete
 * for the CPU and win the reap, and the waiter, finding the death claimed
 * but not finished, would sleep again until it was.  The last poller to
 * leave reaps what is still pending (lmn__sentinel_put), and once a death
 * has been pending for DEFER_NS this thread reaps it whatever the pollers,
 * for a poller whose sleep fell back to futex(2). */
static void reap_pending(void)
{
	uint64_t last = 0, now = lmn__now_ns();

	for (;;) {
		struct sentry e = {0};
		uint64_t w;

		pthread_mutex_lock(&S.lock);
		for (size_t i = 0; i < S.n; i++)
			if (S.v[i].pending && S.v[i].id > last && (!e.id || S.v[i].id < e.id) &&
			    !(S.v[i].pollers && now - S.v[i].pending_ns < DEFER_NS))
				e = S.v[i];
		pthread_mutex_unlock(&S.lock);
		if (!e.id)
			return;
		last = e.id;
		(void)lmn__part_reap_exited(&e.bus->l, e.bus->base, e.idx, e.gen);
		w = ck_pr_load_64(&lmn__part(&e.bus->l, e.bus->base, e.idx)->slot);
		if (lmn__slot_gen(w) != e.gen || lmn__slot_state(w) == LMN__SLOT_FREE) {
			pthread_mutex_lock(&S.lock);
			for (size_t i = 0; i < S.n; i++)
				if (S.v[i].id == e.id)
					S.v[i].pending = 0;
			pthread_mutex_unlock(&S.lock);
		}
	}
}

static void *sentinel_main(void *arg)
{
	sigset_t all;

	(void)arg;
	/* Signals are the application's business, not this thread's. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		struct epoll_event ev[16];
		int n, any_pending = 0;

		pthread_mutex_lock(&S.lock);
		for (size_t i = 0; i < S.n; i++)
			any_pending |= S.v[i].pending;
		pthread_mutex_unlock(&S.lock);
		/* Sleep until a peer exits; while a death is claimed by a
		 * reaper that has not finished, look again now and then: if
		 * that reaper died too, lmn__part_reap_exited takes over. */
		n = epoll_wait(S.epfd, ev, 16, any_pending ? 100 : -1);
		if (n < 0 && errno != EINTR)
			return NULL;
		pthread_mutex_lock(&S.reap_lock);
		pthread_mutex_lock(&S.lock);
		for (int k = 0; k < n; k++) {
			for (size_t i = 0; i < S.n; i++) {
				struct sentry *e = &S.v[i];

				if (e->id != ev[k].data.u64)
					continue;
				/* Stop listening (it stays readable); keep the
				 * fd open for waiters that may poll it. */
				epoll_ctl(S.epfd, EPOLL_CTL_DEL, e->pidfd, NULL);
				e->pending = 1;
				e->pending_ns = lmn__now_ns();
				break;
			}
		}
		pthread_mutex_unlock(&S.lock);
		reap_pending();
		pthread_mutex_unlock(&S.reap_lock);
	}
}

/* Lock held.  Start the thread if this process has none yet. */
static int ensure_running(void)
{
	pthread_attr_t attr;
	pthread_t t;
	int r;

	if (S.running)
		return 0;
	if (S.epfd < 0) {
		S.epfd = epoll_create1(EPOLL_CLOEXEC);
		if (S.epfd < 0)
			return -errno;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	r = pthread_create(&t, &attr, sentinel_main, NULL);
	pthread_attr_destroy(&attr);
	if (r)
		return -r;
	S.running = true;
	return 0;
}

/* Lock held.  The entry for (bus, idx, gen), adding it if needed; NULL if
 * the participant is already gone (then it has been reaped). */
static struct sentry *find_or_add(struct lmn_bus *bus, uint32_t idx, uint32_t gen)
{
	struct lmn__participant *p;
	struct epoll_event ev;
	int fd = -1;

	for (size_t i = 0; i < S.n; i++)
		if (S.v[i].bus == bus && S.v[i].idx == idx && S.v[i].gen == gen)
			return &S.v[i];
	if (idx >= bus->l.participants || (idx == bus->self_idx && gen == bus->self_gen))
		return NULL;
	/* Entries for participants that have moved on are dead weight: drop
	 * them once there are many, but never one a waiter is polling. */
	for (size_t i = 0; S.n >= 64 && i < S.n;) {
		struct sentry *e = &S.v[i];

		if (e->bus == bus && !e->users && !e->pending &&
		    !lmn__part_live(&bus->l, bus->base, e->idx, e->gen))
			remove_at(i);
		else
			i++;
	}
	p = lmn__part(&bus->l, bus->base, idx);
	if (!lmn__part_live(&bus->l, bus->base, idx, gen)) {
		/* Dying or leaving: make sure it gets reaped (this takes over
		 * from a reaper that died half-way). */
		(void)lmn__part_reap(&bus->l, bus->base, idx, gen);
		return NULL;
	}
	ck_pr_fence_load();
	if (!lmn__proc_alive(ck_pr_load_32((uint32_t *)&p->pid), ck_pr_load_64(&p->start_time),
			     ck_pr_load_64(&p->pidfs_ino), &fd)) {
		(void)lmn__part_reap(&bus->l, bus->base, idx, gen);
		return NULL;
	}
	if (ensure_running() < 0) {
		close(fd);
		return NULL;
	}
	if (S.n == S.cap) {
		size_t cap = S.cap * 2 + 8;
		struct sentry *v = realloc(S.v, cap * sizeof(*v));

		if (!v) {
			close(fd);
			return NULL;
		}
		S.v = v;
		S.cap = cap;
	}
	S.v[S.n] = (struct sentry){bus, idx, gen, fd, S.next_id++, 0, 0, 0, 0};
	ev.events = EPOLLIN;
	ev.data.u64 = S.v[S.n].id;
	if (epoll_ctl(S.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		close(fd);
		return NULL;
	}
	return &S.v[S.n++];
}

void lmn__sentinel_watch(struct lmn_bus *bus, uint32_t idx, uint32_t gen)
{
	pthread_once(&atfork_once, atfork_init);
	pthread_mutex_lock(&S.lock);
	(void)find_or_add(bus, idx, gen);
	pthread_mutex_unlock(&S.lock);
}

int lmn__sentinel_pidfd(struct lmn_bus *bus, uint32_t idx, uint32_t gen, bool polls,
			uint64_t *ret_key)
{
	struct sentry *e;
	int fd;

	pthread_once(&atfork_once, atfork_init);
	pthread_mutex_lock(&S.lock);
	e = find_or_add(bus, idx, gen);
	fd = -1;
	if (e) {
		fd = e->pidfd;
		*ret_key = e->id;
		e->users++;
		e->pollers += polls;
	}
	pthread_mutex_unlock(&S.lock);
	return fd;
}

int lmn__sentinel_wait(struct lmn_bus *bus, uint32_t *word, uint32_t expect, uint64_t deadline,
			uint32_t idx, uint32_t gen, bool poll, uint32_t *wake_ahead)
{
	bool polls = poll && lmn__wait_polls();
	uint64_t key = 0;
	int fd = lmn__sentinel_pidfd(bus, idx, gen, polls, &key);
	int r = lmn__wait(word, expect, deadline, polls ? fd : -1, key, wake_ahead);

	/* Reap first: the caller's return waits for it, the pidfd's release
	 * does not. */
	if (r == 1)
		(void)lmn__part_reap_exited(&bus->l, bus->base, idx, gen);
	if (fd >= 0)
		lmn__sentinel_put(bus, idx, gen, polls);
	return r;
}

void lmn__sentinel_put(struct lmn_bus *bus, uint32_t idx, uint32_t gen, bool polled)
{
	bool reap = false;

	pthread_mutex_lock(&S.lock);
	for (size_t i = 0; i < S.n; i++) {
		struct sentry *e = &S.v[i];

		if (e->bus == bus && e->idx == idx && e->gen == gen) {
			if (e->users)
				e->users--;
			if (polled && e->pollers)
				e->pollers--;
			/* The sentinel left this death to pollers, and we
			 * were the last (woken by something else first). */
			reap = e->pending && !e->pollers;
			break;
		}
	}
	pthread_mutex_unlock(&S.lock);
	if (reap)
		(void)lmn__part_reap_exited(&bus->l, bus->base, idx, gen);
}

void lmn__sentinel_forget(struct lmn_bus *bus)
{
	pthread_once(&atfork_once, atfork_init);
	pthread_mutex_lock(&S.reap_lock);
	pthread_mutex_lock(&S.lock);
	for (size_t i = 0; i < S.n;) {
		struct sentry *e = &S.v[i];
		struct pollfd pfd = {.fd = e->pidfd, .events = POLLIN};

		if (e->bus != bus) {
			i++;
			continue;
		}
		/* A death seen (or due) but not yet reaped would be nobody's
		 * once we stop watching: we may be the only process that
		 * watched it.  The bus is still mapped. */
		if (e->pending || poll(&pfd, 1, 0) == 1)
			(void)lmn__part_reap_exited(&bus->l, bus->base, e->idx, e->gen);
		remove_at(i);
	}
	pthread_mutex_unlock(&S.lock);
	pthread_mutex_unlock(&S.reap_lock);
}
