/* SPDX-License-Identifier: MIT */
/*
 * The io_uring backend: a blocking wait is one FUTEX_WAIT SQE (with a
 * linked FUTEX_WAKE when it wakes a peer ahead, and a poll of the peer's
 * pidfd and a deadline timer, both left armed across waits), submitted and
 * waited for with one io_uring_enter.  Each thread
 * that blocks gets its own small ring, made at its first wait and torn
 * down when it exits.  Rings do not survive fork: a child finds its
 * inherited ring stale and makes a new one.
 *
 * liburing 2.3 has no futex helpers, so the SQEs are filled by hand:
 * opcode 51 (FUTEX_WAIT) or 52 (FUTEX_WAKE), fd carries the futex2 flags
 * (FUTEX2_SIZE_U32, and no FUTEX2_PRIVATE since the word is shared between
 * processes), addr the word, off the expected value (a wait) or how many to
 * wake (a wake), addr3 the mask; len and the op flags stay 0.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <liburing.h>

#include "internal.h"

#define OP_FUTEX_WAIT 51
#define OP_FUTEX_WAKE 52
#define FUTEX2_SIZE_U32_FLAG 0x02
#define FUTEX_MASK_ANY 0xffffffffull
#define UD_FUTEX 1
#define UD_POLL_LINK 3 /* the no-op linked to a poll */
#define UD_CANCEL 4
#define UD_TIMER_LINK 5 /* the no-op linked to the deadline timer */
#define UD_TIMER_MOVE 6
#define UD_POLL_FIRST 16 /* polls and wakes ahead are tagged from here up */

struct tl_ring {
	struct io_uring ring;
	unsigned long fork_gen;
	int ready;
	/* The poll on a peer's pidfd stays armed across waits on the same
	 * peer: most waits then cost one FUTEX_WAIT and nothing else.  Each
	 * arming gets its own tag, so the completion of a poll replaced since
	 * is told apart and ignored. */
	uint64_t poll_key;
	uint64_t poll_ud;
	uint64_t next_ud;
	int poll_armed;
	int poll_fired; /* the armed poll completed: that peer exited */
	/* The deadline timer (an IORING_OP_TIMEOUT at an absolute time) also
	 * stays armed across waits: arming and cancelling an hrtimer in
	 * every sleep put the cancel on the woken side's way back, on every
	 * hop of a round trip.  A wait whose deadline is at or after the
	 * armed expiry keeps it (queue_timer). */
	uint64_t timer_ud;
	uint64_t timer_at; /* its expiry, CLOCK_MONOTONIC ns; UINT64_MAX: not known */
	int timer_armed;
	int timer_refused; /* the kernel refused one: enter's own timeouts from now */
	int deferred; /* the ring runs task work only in our enters */
	struct __kernel_timespec timer_ts; /* read by the kernel at submission */
};

/* initial-exec: the ring is reached on every wait, and the default model for
 * a shared library costs a call to __tls_get_addr each time. */
static __thread struct tl_ring tl __attribute__((tls_model("initial-exec")));
static unsigned long fork_gen;
static pthread_key_t ring_key;
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
	/* Only the forking thread lives on in the child, and this handler
	 * runs in it before anything can reuse the ring's fd number: the one
	 * moment its inherited ring can be torn down without closing a
	 * stranger's descriptor. */
	if (tl.ready) {
		io_uring_queue_exit(&tl.ring);
		tl.ready = 0;
	}
	tl.poll_armed = 0;
	tl.poll_fired = 0;
	tl.timer_armed = 0;
	fork_gen++;
}

static void ring_destroy(void *p)
{
	struct tl_ring *t = p;

	if (t->ready && t->fork_gen == fork_gen)
		io_uring_queue_exit(&t->ring);
	t->ready = 0;
}

static void ring_once_init(void)
{
	pthread_key_create(&ring_key, ring_destroy);
	pthread_atfork(NULL, NULL, on_fork_child);
}

static struct io_uring *ring_get(void)
{
	pthread_once(&ring_once, ring_once_init);
	if (tl.ready && tl.fork_gen != fork_gen) {
		/* Cannot happen (the fork handler tore it down); never touch a
		 * ring from another generation. */
		tl.ready = 0;
	}
	if (!tl.ready) {
		tl.poll_armed = 0;
		tl.poll_fired = 0;
		tl.timer_armed = 0;
		/* One ring per thread, so a single issuer; and completions
		 * run in our own io_uring_enter rather than as task work
		 * that interrupts us, which a waker pays for less.  A kernel
		 * older than 6.1 refuses the flags: plain ring then. */
		tl.deferred = io_uring_queue_init(8, &tl.ring,
						  IORING_SETUP_SINGLE_ISSUER |
							  IORING_SETUP_DEFER_TASKRUN) == 0;
		if (!tl.deferred && io_uring_queue_init(8, &tl.ring, 0) < 0)
			return NULL;
		tl.ready = 1;
		tl.fork_gen = fork_gen;
		pthread_setspecific(ring_key, &tl);
	}
	return &tl.ring;
}

static void prep_futex_wait(struct io_uring_sqe *sqe, uint32_t *word, uint32_t expected)
{
	io_uring_prep_rw(OP_FUTEX_WAIT, sqe, FUTEX2_SIZE_U32_FLAG, word, 0, expected);
	sqe->addr3 = FUTEX_MASK_ANY;
	sqe->user_data = UD_FUTEX;
}

/* Wake one sleeper on word. */
static void prep_futex_wake(struct io_uring_sqe *sqe, uint32_t *word, uint64_t user_data)
{
	io_uring_prep_rw(OP_FUTEX_WAKE, sqe, FUTEX2_SIZE_U32_FLAG, word, 0, 1);
	sqe->addr3 = FUTEX_MASK_ANY;
	sqe->user_data = user_data;
}

/* Submit what is queued and reap `want` completions; the futex result goes
 * to *futex_res.  Signals do not abandon the ops: they are in the kernel
 * and will complete, so we keep waiting for them. */
static int submit_and_reap(struct io_uring *ring, unsigned want, int *futex_res)
{
	unsigned got = 0;

	while (io_uring_sq_ready(ring)) {
		int r = io_uring_submit_and_wait(ring, 1);

		if (r < 0 && r != -EINTR)
			return r;
	}
	while (got < want) {
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(ring, &cqe);

		if (r == -EINTR)
			continue;
		if (r < 0)
			return r;
		if (cqe->user_data == UD_FUTEX)
			*futex_res = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		got++;
	}
	return 0;
}

/* A completion that is not this wait's futex: a poll (the current one, or
 * one replaced since), the deadline timer, the no-op linked to either, a
 * wake ahead, a cancel or a timer move. */
static void other_cqe(const struct io_uring_cqe *cqe)
{
	if (tl.timer_armed && cqe->user_data == tl.timer_ud) {
		/* It fired, or was refused, which must not make every wait
		 * from now on arm one again at once. */
		tl.timer_armed = 0;
		if (cqe->res != -ETIME && cqe->res != -ECANCELED)
			tl.timer_refused = 1;
		return;
	}
	if (cqe->user_data < UD_POLL_FIRST || cqe->user_data != tl.poll_ud)
		return; /* a cancel, or a poll replaced since: nothing to learn */
	tl.poll_armed = 0;
	if (cqe->res > 0 && (cqe->res & POLLIN))
		tl.poll_fired = 1;
}

/* Completions posted while no wait was looking (a cancel, a poll, the
 * timer).  With
 * deferred task work, one that has not been run yet shows up only in the
 * next io_uring_enter, which the wait's loop reads the same way. */
static void drain(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(ring, &cqe) == 0) {
		other_cqe(cqe);
		io_uring_cqe_seen(ring, cqe);
	}
}

int lmn__uring_probe(void)
{
	struct io_uring *ring = ring_get();
	struct io_uring_sqe *sqe;
	uint32_t word = 0;
	int res = 0, r;

	if (!ring)
		return -ENOSYS;
	sqe = io_uring_get_sqe(ring);
	if (!sqe)
		return -ENOSYS;
	/* Expect a value the word does not hold: a kernel that knows the op
	 * answers -EAGAIN at once; one that does not says -EINVAL. */
	prep_futex_wait(sqe, &word, 1);
	r = submit_and_reap(ring, 1, &res);
	if (r < 0 || res != -EAGAIN)
		return -ENOSYS;
	return 0;
}


/* This wait cannot go on (no SQE, or io_uring_enter failed): tear the
 * ring down, with whatever it had queued or armed.  A poll left queued but
 * not submitted would be submitted by a later wait under its old key, on
 * whatever file then holds the descriptor's number, and its completion
 * read as the peer's death. */
static int give_up(struct io_uring *ring)
{
	io_uring_queue_exit(ring);
	tl.ready = 0;
	tl.poll_armed = 0;
	tl.poll_fired = 0;
	tl.timer_armed = 0;
	return -ENOSYS;
}

static void ns_to_ts(uint64_t ns, struct __kernel_timespec *ts)
{
	ts->tv_sec = (long long)(ns / 1000000000ull);
	ts->tv_nsec = (long long)(ns % 1000000000ull);
}

/* Time left until an absolute CLOCK_MONOTONIC deadline; false once passed. */
static bool time_left(uint64_t deadline_ns, struct __kernel_timespec *ts)
{
	uint64_t now = lmn__now_ns();

	if (now >= deadline_ns)
		return false;
	ns_to_ts(deadline_ns - now, ts);
	return true;
}

/* Link a no-op tagged nop_ud to sqe (prepared already: a prep clears the
 * flags), so that sqe's completion makes two and ends an enter that waits
 * for a futex wait and its wake ahead.  False when no SQE is free. */
static bool link_nop(struct io_uring *ring, struct io_uring_sqe *sqe, uint64_t nop_ud)
{
	struct io_uring_sqe *nop = io_uring_get_sqe(ring);

	if (!nop)
		return false;
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_prep_nop(nop);
	nop->user_data = nop_ud;
	return true;
}

/*
 * See that the deadline timer fires no later than deadline_ns: arm it
 * (linked to a no-op, as a poll is), or move an armed one that would fire later (counted in *moves
 * until the move's completion is reaped).  One that fires earlier is
 * kept: when it does, the wait goes on with the enter's own timeout, and
 * the next wait arms it again.  A move fails if it comes after the timer
 * fired (whose completion is then on its way) or if the kernel refuses
 * it; the wait then falls back to the enter's own timeout too, and the
 * expiry is marked unknown.  False when no SQE is free.
 */
static bool queue_timer(struct io_uring *ring, uint64_t deadline_ns, unsigned *moves)
{
	struct io_uring_sqe *sqe;

	if (tl.timer_armed && tl.timer_at <= deadline_ns)
		return true;
	sqe = io_uring_get_sqe(ring);
	if (!sqe)
		return false;
	ns_to_ts(deadline_ns, &tl.timer_ts);
	if (tl.timer_armed) {
		io_uring_prep_timeout_update(sqe, &tl.timer_ts, tl.timer_ud, IORING_TIMEOUT_ABS);
		sqe->user_data = UD_TIMER_MOVE;
		(*moves)++;
	} else {
		io_uring_prep_timeout(sqe, &tl.timer_ts, 0, IORING_TIMEOUT_ABS);
		tl.timer_ud = UD_POLL_FIRST + tl.next_ud++;
		sqe->user_data = tl.timer_ud;
		if (!link_nop(ring, sqe, UD_TIMER_LINK))
			return false;
		tl.timer_armed = 1;
	}
	tl.timer_at = deadline_ns;
	return true;
}

/* Queue a cancel of the request tagged target (its completion says when
 * it is gone), and count it in *pending until that completion is reaped.
 * False when no SQE is free. */
static bool queue_cancel(struct io_uring *ring, uint64_t target, unsigned *pending)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		return false;
	io_uring_prep_cancel64(sqe, target, 0);
	sqe->user_data = UD_CANCEL;
	(*pending)++;
	return true;
}

/*
 * One sleep for whichever comes first: the word changes (FUTEX_WAIT), the
 * deadline passes, or the peer exits (a poll on its pidfd, armed once per
 * peer and left armed across waits).  The deadline is the thread's timer,
 * left armed across waits too (queue_timer), not a timeout request linked
 * to the futex wait (a second request and completion on every sleep,
 * about 1 us a round trip here, perf/README.md) nor io_uring_enter's own
 * timeout (an hrtimer armed and cancelled in every sleep; about 0.3 us a
 * round trip).  A ring without deferred task work keeps the latter: there
 * a timer that fires while we are elsewhere would interrupt whatever
 * system call the thread is in.  When the deadline passes or the poll
 * fires first, the futex wait is cancelled and reaped before we return,
 * so nothing of this wait is left for the next one to trip over.
 *
 * The wake ahead is a FUTEX_WAKE linked to the FUTEX_WAIT: the kernel
 * issues it when the wait completes, in our own io_uring_enter, before we
 * are back in user space.  With deferred task work the kernel runs it only
 * while the enter still waits for completions, so such a sleep waits for
 * the wake's completion too (from the start: two), and each poll is
 * linked to a no-op, so that a peer's death also makes two and ends the
 * first enter.  A wait the word had already left
 * (-EAGAIN) fails, which cancels the wake; that completes too.  A wait we
 * cancel (deadline, death) does not fail: the kernel completes it with
 * -ECANCELED and runs its link, so the wake goes out, once, for nothing.
 */
int lmn__uring_wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns, int peer_fd,
		    uint64_t peer_key, uint32_t *wake_ahead)
{
	struct io_uring *ring = ring_get();
	struct __kernel_timespec ts;
	struct io_uring_sqe *sqe;
	bool futex_done = false, ahead_done = true, cancelled = false, timed_out = false,
	     peer_exited = false, use_timer;
	unsigned cancels = 0; /* our cancels not yet completed */
	unsigned moves = 0; /* our timer moves not yet completed */
	uint64_t ahead_ud = 0;
	int futex_res = 0;

	if (!ring)
		return -ENOSYS;
	use_timer = deadline_ns && tl.deferred && !tl.timer_refused;
	drain(ring);
	if (peer_fd >= 0) {
		if (tl.poll_key == peer_key && tl.poll_fired) {
			tl.poll_fired = 0;
			return 1;
		}
		if (!tl.poll_armed || tl.poll_key != peer_key) {
			if (tl.poll_armed && !queue_cancel(ring, tl.poll_ud, &cancels))
				return give_up(ring);
			sqe = io_uring_get_sqe(ring);
			if (!sqe)
				return give_up(ring);
			io_uring_prep_poll_add(sqe, peer_fd, POLLIN);
			tl.poll_ud = UD_POLL_FIRST + tl.next_ud++;
			sqe->user_data = tl.poll_ud;
			if (!link_nop(ring, sqe, UD_POLL_LINK))
				return give_up(ring);
			tl.poll_key = peer_key;
			tl.poll_armed = 1;
			tl.poll_fired = 0;
		}
	}
	/* Before the futex wait: a link joins an SQE to the next one queued. */
	if (use_timer && !queue_timer(ring, deadline_ns, &moves))
		return give_up(ring);
	sqe = io_uring_get_sqe(ring);
	if (!sqe)
		return give_up(ring);
	prep_futex_wait(sqe, word, expected);
	if (wake_ahead) {
		struct io_uring_sqe *wake = io_uring_get_sqe(ring);

		/* No room: sleep without it, it is only a head start. */
		if (wake) {
			sqe->flags |= IOSQE_IO_LINK;
			/* Its own tag: a completion is known for this wake's. */
			ahead_ud = UD_POLL_FIRST + tl.next_ud++;
			prep_futex_wake(wake, wake_ahead, ahead_ud);
			ahead_done = false;
		}
	}
	/*
	 * Until everything this wait submitted has completed but the poll
	 * and the timer (which stay armed) and their no-ops: the futex wait,
	 * its wake ahead, our cancels and timer moves.  Each enter waits for
	 * as many completions as are still to come, so that the kernel runs
	 * the linked wake inside it (a timer's firing makes two); a
	 * completion left over from an earlier wait only costs a pass more.
	 * Nothing is left queued or running for the next wait to count.
	 */
	while (!futex_done || !ahead_done || cancels || moves) {
		struct io_uring_cqe *cqe;
		bool cancel = false;
		int r;

		if (!futex_done && deadline_ns && !cancelled && !time_left(deadline_ns, &ts)) {
			/* The deadline passed with the futex wait still armed
			 * (or completing as we speak): cancel it and reap it. */
			timed_out = true;
			cancelled = true;
			if (!queue_cancel(ring, UD_FUTEX, &cancels))
				return give_up(ring);
		}
		/* Submit whatever is queued and wait in the same call, with
		 * the enter's own timeout unless the armed timer fires by the
		 * deadline: it does while armed for this wait (a move that
		 * failed clears use_timer; until a move is known to have
		 * worked, both).  Once it has fired, for an earlier deadline,
		 * or was refused, the enter's timeout takes over.  Its -ETIME
		 * is only a cue to look at the clock above. */
		r = io_uring_submit_and_wait_timeout(
			ring, &cqe, !futex_done + !ahead_done + cancels + moves,
			!futex_done && deadline_ns && !cancelled &&
					(!(use_timer && tl.timer_armed) || moves)
				? &ts
				: NULL,
			NULL);
		if (r == -EINTR || r == -ETIME)
			continue; /* the ops are in the kernel; keep waiting */
		if (r < 0)
			return give_up(ring);
		while (io_uring_peek_cqe(ring, &cqe) == 0) {
			if (cqe->user_data == UD_FUTEX) {
				futex_done = true;
				futex_res = cqe->res;
			} else if (ahead_ud && cqe->user_data == ahead_ud) {
				ahead_done = true;
			} else if (cqe->user_data == UD_CANCEL) {
				if (cancels)
					cancels--;
			} else if (cqe->user_data == UD_TIMER_MOVE) {
				if (moves)
					moves--;
				if (cqe->res < 0) {
					tl.timer_at = UINT64_MAX;
					use_timer = false;
				}
			} else {
				other_cqe(cqe);
				if (tl.poll_fired && peer_fd >= 0 && tl.poll_key == peer_key &&
				    !peer_exited) {
					peer_exited = true;
					tl.poll_fired = 0;
					cancel = true;
				}
			}
			io_uring_cqe_seen(ring, cqe);
		}
		/* The peer died: cancel the futex wait, unless it completed in
		 * the same batch (a cancel queued then would be left for the
		 * next wait to submit). */
		if (cancel && !futex_done && !cancelled) {
			cancelled = true;
			if (!queue_cancel(ring, UD_FUTEX, &cancels))
				return give_up(ring);
		}
	}
	if (peer_exited)
		return 1;
	/* Only a wait the cancel ended timed out: one that was woken, or
	 * found the word moved on, while the cancel was on its way says so. */
	if (timed_out && futex_res == -ECANCELED)
		return -ETIMEDOUT;
	return 0;
}
