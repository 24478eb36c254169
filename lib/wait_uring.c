/* SPDX-License-Identifier: MIT */
/*
 * The io_uring backend: a blocking wait is one FUTEX_WAIT SQE, linked to a
 * timeout when there is a deadline, submitted and waited for with one
 * io_uring_enter.  Each thread that blocks gets its own small ring, made at
 * its first wait and torn down when it exits.  Rings do not survive fork:
 * a child finds its inherited ring stale and makes a new one.
 *
 * liburing 2.3 has no futex helpers, so the SQE is filled by hand: opcode
 * 51, fd carries the futex2 flags (FUTEX2_SIZE_U32, and no FUTEX2_PRIVATE
 * since the word is shared between processes), addr the word, off the
 * expected value, addr3 the wake mask; len and the op flags stay 0.
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
#define FUTEX2_SIZE_U32_FLAG 0x02
#define FUTEX_MASK_ANY 0xffffffffull
#define UD_FUTEX 1
#define UD_TIMEOUT 2
#define UD_POLL 3
#define UD_CANCEL 4

struct tl_ring {
	struct io_uring ring;
	unsigned long fork_gen;
	int ready;
};

static __thread struct tl_ring tl;
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
		if (io_uring_queue_init(4, &tl.ring, 0) < 0)
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

/* Completions left over from a wait that failed half-way must not be taken
 * for this wait's. */
static void drain(struct io_uring *ring)
{
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(ring, &cqe) == 0)
		io_uring_cqe_seen(ring, cqe);
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

/* Ask the kernel to cancel the op tagged ud; its completion still comes. */
static int cancel(struct io_uring *ring, uint64_t ud)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe)
		return -ENOSYS;
	io_uring_prep_cancel64(sqe, ud, 0);
	sqe->user_data = UD_CANCEL;
	return 0;
}

/*
 * One sleep for whichever comes first: the word changes (FUTEX_WAIT), the
 * deadline passes (a timeout linked to the wait), or the peer exits (a poll
 * on its pidfd).  The ops are not linked to each other, so when one ends we
 * cancel the other and reap everything before returning: nothing of this
 * wait is left in the ring for the next one to trip over.
 */
int lmn__uring_wait(uint32_t *word, uint32_t expected, uint64_t deadline_ns, int peer_fd)
{
	struct io_uring *ring = ring_get();
	struct __kernel_timespec ts;
	struct io_uring_sqe *sqe;
	bool futex_done = false, poll_done = peer_fd < 0, timeout_done = !deadline_ns;
	bool peer_exited = false;
	unsigned cancels_out = 0;
	int futex_res = 0;

	if (!ring)
		return -ENOSYS;
	drain(ring);
	sqe = io_uring_get_sqe(ring);
	if (!sqe)
		return -ENOSYS;
	prep_futex_wait(sqe, word, expected);
	if (deadline_ns) {
		sqe->flags |= IOSQE_IO_LINK;
		sqe = io_uring_get_sqe(ring);
		if (!sqe)
			return -ENOSYS;
		ts.tv_sec = (long long)(deadline_ns / 1000000000ull);
		ts.tv_nsec = (long long)(deadline_ns % 1000000000ull);
		io_uring_prep_link_timeout(sqe, &ts, IORING_TIMEOUT_ABS);
		sqe->user_data = UD_TIMEOUT;
	}
	if (peer_fd >= 0) {
		sqe = io_uring_get_sqe(ring);
		if (!sqe)
			return -ENOSYS;
		io_uring_prep_poll_add(sqe, peer_fd, POLLIN);
		sqe->user_data = UD_POLL;
	}
	while (!futex_done || !poll_done || !timeout_done || cancels_out) {
		struct io_uring_cqe *cqe;
		int r;

		/* Submit whatever is queued (the first ops, or a cancel) and
		 * wait for a completion in the same call. */
		if (io_uring_sq_ready(ring)) {
			r = io_uring_submit_and_wait(ring, 1);
			if (r < 0 && r != -EINTR)
				return -ENOSYS;
			continue;
		}
		r = io_uring_wait_cqe(ring, &cqe);
		if (r == -EINTR)
			continue; /* the ops are in the kernel; keep waiting */
		if (r < 0)
			return -ENOSYS;
		switch (cqe->user_data) {
		case UD_FUTEX:
			futex_done = true;
			futex_res = cqe->res;
			if (!poll_done && cancel(ring, UD_POLL) == 0)
				cancels_out++;
			break;
		case UD_TIMEOUT:
			timeout_done = true;
			break;
		case UD_POLL:
			poll_done = true;
			peer_exited = cqe->res > 0 && (cqe->res & POLLIN);
			/* A poll that failed (a bad fd) tells nothing: keep
			 * sleeping on the word. */
			if (peer_exited && !futex_done && cancel(ring, UD_FUTEX) == 0)
				cancels_out++;
			break;
		case UD_CANCEL:
			if (cancels_out)
				cancels_out--;
			break;
		}
		io_uring_cqe_seen(ring, cqe);
	}
	if (peer_exited)
		return 1;
	/* A wait cut short by its linked timeout completes as cancelled. */
	if (futex_res == -ETIME || (futex_res == -ECANCELED && deadline_ns))
		return -ETIMEDOUT;
	return 0;
}
