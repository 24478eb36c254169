/* SPDX-License-Identifier: MIT */
/*
 * The raw baselines liminal is measured against, two processes each: a
 * client (the parent, on CPU A) and a server (a forked child, on CPU B).
 *
 *   bench_base --bench rtt    --impl spin|futex|uds|pipe|eventfd|zmq
 *   bench_base --bench stream --impl spinring|pipe|uds
 *              [--size BYTES] [--iters N] [--reps R] [--warmup N] [--cpus A,B]
 *              [--samples FILE]
 *
 * rtt: the client sends SIZE bytes, the server copies them out and sends
 * them back, the client copies the reply out; each round trip is timed with
 * CLOCK_MONOTONIC.  Implementations:
 *   spin     both sides busy-poll a sequence word in shared memory (the
 *            two words on separate cache lines), data in shared buffers
 *   futex    the same, but each side sleeps in FUTEX_WAIT (shared) on its
 *            word and the other always FUTEX_WAKEs it; no spinning
 *   uds      socketpair(AF_UNIX, SOCK_STREAM), write() and read()
 *   pipe     two pipes, write() and read()
 *   eventfd  data in shared buffers, one blocking eventfd per direction
 *            for the signal
 *   zmq      libzmq REQ/REP over ipc:// in a fresh directory under /tmp
 *
 * stream: the server produces ITERS messages of SIZE bytes one at a time,
 * the client consumes them; the rate is timed at the consumer.
 *   spinring an SPSC ring in shared memory (64 KiB of slots, as much as a
 *            pipe holds), both sides busy-poll
 *   pipe     one write() per message; the consumer read()s up to 64 KiB
 *   uds      the same over socketpair(AF_UNIX, SOCK_STREAM)
 *
 * CPU per op is the client's getrusage(RUSAGE_SELF) over the repetition
 * plus the server's, which the server samples at the same op boundaries
 * and leaves in shared memory.  Every message carries its index in its
 * first 8 bytes and is checked on arrival.
 *
 * A busy-poll on one core (--cpus A,A) only progresses when the scheduler
 * preempts the spinner, so spin is capped there at 200 round trips (and
 * spinring at 20000 messages) per repetition; "iters" in the output says
 * what was measured.
 *
 * --iters defaults to 20000 round trips or 1000000 messages, --warmup to a
 * tenth of that (at least 1; warm-up ops are not measured), --reps to 3.
 * --samples FILE (rtt) writes every measured round trip, "rep op ns".
 *
 * Exit status: 0, 1 on any error, 2 on bad usage, 3 when --impl zmq was
 * asked of a build without libzmq.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef HAVE_ZMQ
#include <zmq.h>
#endif

#include "bench_util.h"

#define MAX_SIZE 65536
#define ALARM_S 120
#define ONE_CORE_SPIN_ITERS 200
#define ONE_CORE_SPIN_WARMUP 20
#define ONE_CORE_RING_ITERS 20000
#define ONE_CORE_RING_WARMUP 2000
#define RING_BYTES 65536
#define READ_CHUNK 65536

enum bench { RTT, STREAM };
enum impl { SPIN, FUTEX, UDS, PIPE, EVENTFD, ZMQ, SPINRING };

static const char *const impl_names[] = { "spin", "futex", "uds", "pipe", "eventfd", "zmq", "spinring" };

static struct {
	enum bench bench;
	enum impl impl;
	size_t size;
	long iters, warmup;
	int reps;
	int cpu_a, cpu_b;
} O = { RTT, SPIN, 64, 0, -1, 3, -1, -1 };

/* Shared between the two processes. */
struct ctl {
	uint64_t srv_cpu[BU_MAX_REPS + 1]; /* server CPU ns at each op boundary */
};

struct rtt_shm {
	alignas(64) _Atomic uint32_t req; /* last request published by the client */
	alignas(64) _Atomic uint32_t rep; /* last reply published by the server */
	alignas(64) unsigned char req_buf[MAX_SIZE];
	alignas(64) unsigned char rep_buf[MAX_SIZE];
};

struct ring {
	alignas(64) _Atomic uint64_t head; /* messages produced */
	alignas(64) _Atomic uint64_t tail; /* messages consumed */
	alignas(64) unsigned char slots[];
};

static struct ctl *ctl;
static struct rtt_shm *sh;
static struct ring *ring;
static size_t ring_stride, ring_slots;
static int c2s[2] = { -1, -1 }, s2c[2] = { -1, -1 }; /* pipes ([0] reads); stream: s2c only */
static int sock[2] = { -1, -1 };                      /* [0] client, [1] server */
static int efd_req = -1, efd_rep = -1;
static int ready[2] = { -1, -1 };
static pid_t server_pid;
static bool in_server;
static char zdir[64];
static char zendpoint[96];
#ifdef HAVE_ZMQ
static void *zctx, *zsock;
#endif

/* each process's own message buffer */
static alignas(64) unsigned char buf[MAX_SIZE + READ_CHUNK];

/* ---------------------------------------------------------------- helpers */

static void put_stamp(unsigned char *p, uint64_t i)
{
	memcpy(p, &i, sizeof(i));
}

static uint64_t get_stamp(const unsigned char *p)
{
	uint64_t i;

	memcpy(&i, p, sizeof(i));
	return i;
}

static void check_stamp(const unsigned char *p, uint64_t want)
{
	uint64_t got = get_stamp(p);

	if (got != want)
		bu_die(0, "%s: message %llu arrived where %llu was due", in_server ? "server" : "client",
		       (unsigned long long)got, (unsigned long long)want);
}

/* The server went away while the client waited on it.  A server that failed
 * has said why on stderr already. */
static void __attribute__((noreturn)) server_gone(void)
{
	int st;

	while (waitpid(server_pid, &st, 0) < 0) {
		if (errno != EINTR)
			bu_die(errno, "server vanished; waitpid");
	}
	if (WIFSIGNALED(st))
		bu_die(0, "server killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	if (WEXITSTATUS(st))
		exit(1);
	bu_die(0, "server exited before the end of the run");
}

/* EINTR from a blocking read: carry on, unless the server is gone and has
 * left nothing to read (it may have written its last message and exited;
 * a pipe or socket then also reads end of file, an eventfd never would). */
static void interrupted(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (!bu_peer_gone || in_server)
		return;
	if (fd < 0 || poll(&p, 1, 1000) <= 0)
		server_gone();
}

static void write_all(int fd, const void *p, size_t n)
{
	const unsigned char *c = p;

	while (n) {
		ssize_t r = write(fd, c, n);

		if (r < 0) {
			if (errno == EINTR) /* a dead reader shows as EPIPE */
				continue;
			if ((errno == EPIPE || errno == ECONNRESET) && !in_server)
				server_gone();
			bu_die(errno, "%s: write", in_server ? "server" : "client");
		}
		c += r;
		n -= (size_t)r;
	}
}

/* Reads exactly n bytes; end of file means the peer is gone. */
static void read_all(int fd, void *p, size_t n)
{
	unsigned char *c = p;

	while (n) {
		ssize_t r = read(fd, c, n);

		if (r < 0) {
			if (errno == EINTR) {
				interrupted(fd);
				continue;
			}
			if (errno == ECONNRESET && !in_server)
				server_gone();
			bu_die(errno, "%s: read", in_server ? "server" : "client");
		}
		if (r == 0) {
			if (!in_server)
				server_gone();
			bu_die(0, "server: client went away");
		}
		c += r;
		n -= (size_t)r;
	}
}

static long futex(_Atomic uint32_t *w, int op, uint32_t val)
{
	return syscall(SYS_futex, (uint32_t *)w, op, val, NULL, NULL, 0);
}

/* futex and spin words carry a 31-bit sequence; the top bit is set by the
 * client's SIGCHLD handler when the server dies, which both changes the
 * word (so a FUTEX_WAIT about to start returns at once) and marks it. */
#define SEQ_MASK 0x7fffffffu
#define SEQ_GONE 0x80000000u

/* Sleeps until the sequence in *w is want.  A shared futex: no
 * FUTEX_PRIVATE_FLAG, the word is in memory both processes map. */
static void futex_await(_Atomic uint32_t *w, uint32_t want)
{
	uint32_t v;

	while (((v = atomic_load_explicit(w, memory_order_acquire)) & SEQ_MASK) != want) {
		if ((v & SEQ_GONE) || (bu_peer_gone && !in_server)) {
			/* the last reply may have landed since v was read */
			if ((atomic_load_explicit(w, memory_order_acquire) & SEQ_MASK) == want)
				break;
			server_gone();
		}
		if (futex(w, FUTEX_WAIT, v) < 0 && errno != EAGAIN && errno != EINTR)
			bu_die(errno, "futex wait");
	}
}

static void futex_wake(_Atomic uint32_t *w)
{
	if (futex(w, FUTEX_WAKE, 1) < 0)
		bu_die(errno, "futex wake");
}

static void spin_until(_Atomic uint32_t *w, uint32_t want)
{
	uint32_t v;

	while (((v = atomic_load_explicit(w, memory_order_acquire)) & SEQ_MASK) != want) {
		if ((v & SEQ_GONE) || (bu_peer_gone && !in_server)) {
			if ((atomic_load_explicit(w, memory_order_acquire) & SEQ_MASK) == want)
				break;
			server_gone();
		}
		bu_relax();
	}
}

/* An eventfd count this large is no reply: the handler's mark. */
#define EFD_GONE (1ull << 40)

/* In the client's SIGCHLD handler: make the wait on the reply end now, even
 * one that has not started yet.  A reply already published is kept. */
static void mark_server_gone(void)
{
	int e = errno;

	if (sh) {
		atomic_fetch_or_explicit(&sh->rep, SEQ_GONE, memory_order_release);
		futex(&sh->rep, FUTEX_WAKE, 1);
	}
	if (efd_rep >= 0) {
		uint64_t v = EFD_GONE;

		if (write(efd_rep, &v, sizeof(v)) < 0) {
			/* the count is full already: the reader wakes anyway */
		}
	}
	errno = e;
}

static void efd_signal(int fd)
{
	uint64_t one = 1;

	write_all(fd, &one, sizeof(one));
}

static void efd_wait(int fd)
{
	uint64_t v;

	read_all(fd, &v, sizeof(v));
	if (v == EFD_GONE) /* the mark alone: no reply came */
		server_gone();
}

/* ------------------------------------------------------- rtt: one op each */

static void cli_spin(uint64_t i)
{
	uint32_t seq = (uint32_t)(i + 1) & SEQ_MASK;

	put_stamp(buf, i);
	memcpy(sh->req_buf, buf, O.size);
	atomic_store_explicit(&sh->req, seq, memory_order_release);
	spin_until(&sh->rep, seq);
	memcpy(buf, sh->rep_buf, O.size);
	check_stamp(buf, i);
}

static void srv_spin(uint64_t i)
{
	uint32_t seq = (uint32_t)(i + 1) & SEQ_MASK;

	spin_until(&sh->req, seq);
	memcpy(buf, sh->req_buf, O.size);
	memcpy(sh->rep_buf, buf, O.size);
	atomic_store_explicit(&sh->rep, seq, memory_order_release);
}

static void cli_futex(uint64_t i)
{
	uint32_t seq = (uint32_t)(i + 1) & SEQ_MASK;

	put_stamp(buf, i);
	memcpy(sh->req_buf, buf, O.size);
	atomic_store_explicit(&sh->req, seq, memory_order_release);
	futex_wake(&sh->req);
	futex_await(&sh->rep, seq);
	memcpy(buf, sh->rep_buf, O.size);
	check_stamp(buf, i);
}

static void srv_futex(uint64_t i)
{
	uint32_t seq = (uint32_t)(i + 1) & SEQ_MASK;

	futex_await(&sh->req, seq);
	memcpy(buf, sh->req_buf, O.size);
	memcpy(sh->rep_buf, buf, O.size);
	atomic_store_explicit(&sh->rep, seq, memory_order_release);
	futex_wake(&sh->rep);
}

static void cli_eventfd(uint64_t i)
{
	put_stamp(buf, i);
	memcpy(sh->req_buf, buf, O.size);
	efd_signal(efd_req);
	efd_wait(efd_rep);
	memcpy(buf, sh->rep_buf, O.size);
	check_stamp(buf, i);
}

static void srv_eventfd(uint64_t i)
{
	(void)i;
	efd_wait(efd_req);
	memcpy(buf, sh->req_buf, O.size);
	memcpy(sh->rep_buf, buf, O.size);
	efd_signal(efd_rep);
}

static void cli_uds(uint64_t i)
{
	put_stamp(buf, i);
	write_all(sock[0], buf, O.size);
	read_all(sock[0], buf, O.size);
	check_stamp(buf, i);
}

static void srv_uds(uint64_t i)
{
	(void)i;
	read_all(sock[1], buf, O.size);
	write_all(sock[1], buf, O.size);
}

static void cli_pipe(uint64_t i)
{
	put_stamp(buf, i);
	write_all(c2s[1], buf, O.size);
	read_all(s2c[0], buf, O.size);
	check_stamp(buf, i);
}

static void srv_pipe(uint64_t i)
{
	(void)i;
	read_all(c2s[0], buf, O.size);
	write_all(s2c[1], buf, O.size);
}

#ifdef HAVE_ZMQ
static void zmq_fail(const char *what)
{
	bu_die(0, "%s: %s: %s", in_server ? "server" : "client", what, zmq_strerror(zmq_errno()));
}

/* Like interrupted(), for a zmq socket. */
static void zinterrupted(void)
{
	zmq_pollitem_t p = { .socket = zsock, .events = ZMQ_POLLIN };

	if (bu_peer_gone && !in_server && zmq_poll(&p, 1, 1000) <= 0)
		server_gone();
}

static void zsend(void)
{
	while (zmq_send(zsock, buf, O.size, 0) < 0) {
		if (zmq_errno() != EINTR)
			zmq_fail("zmq_send");
		if (bu_peer_gone && !in_server) /* unsent: no reply will come */
			server_gone();
	}
}

static void zrecv(void)
{
	int n;

	/* the client's receive timeout (1 s) closes the window where SIGCHLD
	 * lands just before zmq_recv blocks */
	while ((n = zmq_recv(zsock, buf, O.size, 0)) < 0) {
		if (zmq_errno() != EINTR && zmq_errno() != EAGAIN)
			zmq_fail("zmq_recv");
		zinterrupted();
	}
	if ((size_t)n != O.size)
		bu_die(0, "%s: zmq message of %d bytes, %zu expected", in_server ? "server" : "client", n, O.size);
}

static void cli_zmq(uint64_t i)
{
	put_stamp(buf, i);
	zsend();
	zrecv();
	check_stamp(buf, i);
}

static void srv_zmq(uint64_t i)
{
	(void)i;
	zrecv();
	zsend();
}

/* A context's threads inherit the creator's affinity and signal mask: it
 * is made after pinning, with SIGCHLD blocked so that the death of the
 * server interrupts the main thread and no other. */
static void zmq_open(int type)
{
	sigset_t set, old;
	int linger = in_server ? 2000 : 0, timeo = 1000;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, &old);
	zctx = zmq_ctx_new();
	if (!zctx)
		zmq_fail("zmq_ctx_new");
	zsock = zmq_socket(zctx, type);
	if (!zsock)
		zmq_fail("zmq_socket");
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (zmq_setsockopt(zsock, ZMQ_LINGER, &linger, sizeof(linger)) < 0)
		zmq_fail("ZMQ_LINGER");
	if (!in_server && zmq_setsockopt(zsock, ZMQ_RCVTIMEO, &timeo, sizeof(timeo)) < 0)
		zmq_fail("ZMQ_RCVTIMEO");
	if (type == ZMQ_REP ? zmq_bind(zsock, zendpoint) < 0 : zmq_connect(zsock, zendpoint) < 0)
		zmq_fail(type == ZMQ_REP ? "zmq_bind" : "zmq_connect");
}

static void zmq_close_all(void)
{
	if (zsock)
		zmq_close(zsock);
	if (zctx)
		zmq_ctx_term(zctx);
	zsock = zctx = NULL;
}
#endif

static void remove_zdir(void)
{
	char path[128];

	if (!zdir[0] || in_server)
		return;
	snprintf(path, sizeof(path), "%s/s", zdir);
	unlink(path);
	rmdir(zdir);
	zdir[0] = 0;
}

/* ------------------------------------------------------- stream: producer */

static uint64_t ring_head_local, ring_tail_cache;

static void prod_spinring(uint64_t i)
{
	uint64_t head = ring_head_local;

	while (head - ring_tail_cache == ring_slots) {
		ring_tail_cache = atomic_load_explicit(&ring->tail, memory_order_acquire);
		if (head - ring_tail_cache == ring_slots)
			bu_relax();
	}
	put_stamp(buf, i);
	memcpy(ring->slots + (head & (ring_slots - 1)) * ring_stride, buf, O.size);
	ring_head_local = head + 1;
	atomic_store_explicit(&ring->head, head + 1, memory_order_release);
}

static void prod_pipe(uint64_t i)
{
	put_stamp(buf, i);
	write_all(s2c[1], buf, O.size);
}

static void prod_uds(uint64_t i)
{
	put_stamp(buf, i);
	write_all(sock[1], buf, O.size);
}

/* ------------------------------------------------------------ the server */

/* The server samples its CPU after op (warmup + k * iters) for k = 0..reps,
 * which is where the client starts and ends its repetitions. */
static void server_run(void (*op)(uint64_t))
{
	uint64_t total = (uint64_t)O.warmup + (uint64_t)O.iters * (uint64_t)O.reps;
	uint64_t next = (uint64_t)O.warmup;
	int k = 0;

	for (uint64_t i = 0; i < total; i++) {
		op(i);
		if (i + 1 == next) {
			ctl->srv_cpu[k++] = bu_cpu_ns();
			next += (uint64_t)O.iters;
			alarm(ALARM_S);
		}
	}
}

static int server_main(pid_t parent)
{
	in_server = true;
	bu_set_prog("bench_base server");
	bu_child_setup(parent, ALARM_S);
	if (bu_pin(O.cpu_b) < 0)
		bu_die(errno, "cannot pin to cpu %d", O.cpu_b);
	close(ready[0]);
	if (c2s[1] >= 0)
		close(c2s[1]);
	if (s2c[0] >= 0)
		close(s2c[0]);
	if (sock[0] >= 0)
		close(sock[0]);
#ifdef HAVE_ZMQ
	if (O.impl == ZMQ)
		zmq_open(ZMQ_REP);
#endif
	write_all(ready[1], "r", 1);
	close(ready[1]);

	switch (O.impl) {
	case SPIN: server_run(srv_spin); break;
	case FUTEX: server_run(srv_futex); break;
	case UDS: server_run(O.bench == RTT ? srv_uds : prod_uds); break;
	case PIPE: server_run(O.bench == RTT ? srv_pipe : prod_pipe); break;
	case EVENTFD: server_run(srv_eventfd); break;
	case SPINRING: server_run(prod_spinring); break;
	case ZMQ:
#ifdef HAVE_ZMQ
		server_run(srv_zmq);
		zmq_close_all();
#endif
		break;
	}
	return 0;
}

/* ------------------------------------------------------------ the client */

static struct bu_result res;
static uint64_t *lat;              /* reps * iters samples */
static const char *samples_path;  /* --samples */

/* The repetitions run back to back (the server spins through any gap, so
 * the samples are sorted only once all are taken). */
static void client_rtt(void (*op)(uint64_t))
{
	uint64_t i = 0;

	for (long k = 0; k < O.warmup; k++)
		op(i++);
	remove_zdir(); /* zmq: connected now, the path is no longer needed */
	for (int r = 0; r < O.reps; r++) {
		uint64_t c0, c1, t, prev, *l = lat + (size_t)r * (size_t)O.iters;

		alarm(ALARM_S);
		c0 = bu_cpu_ns();
		prev = bu_now_ns();
		for (long k = 0; k < O.iters; k++) {
			op(i++);
			t = bu_now_ns();
			l[k] = t - prev;
			prev = t;
		}
		c1 = bu_cpu_ns();
		res.rep[r].cpu_ns_per_op = (double)(c1 - c0);
	}
	if (samples_path) {
		FILE *f = fopen(samples_path, "w");

		if (!f)
			bu_die(errno, "%s", samples_path);
		fprintf(f, "# rep op latency_ns (%s, %zu bytes)\n", impl_names[O.impl], O.size);
		for (int r = 0; r < O.reps; r++)
			for (long k = 0; k < O.iters; k++)
				fprintf(f, "%d %ld %llu\n", r, k,
					(unsigned long long)lat[(size_t)r * (size_t)O.iters + (size_t)k]);
		if (fclose(f) != 0)
			bu_die(errno, "%s", samples_path);
	}
	for (int r = 0; r < O.reps; r++)
		bu_rep_latency(&res.rep[r], lat + (size_t)r * (size_t)O.iters, (size_t)O.iters);
}

/* Consumer boundaries: after message warmup + k * iters, k = 0..reps. */
static uint64_t bound_t[BU_MAX_REPS + 1], bound_cpu[BU_MAX_REPS + 1];

static void boundary(int k)
{
	bound_t[k] = bu_now_ns();
	bound_cpu[k] = bu_cpu_ns();
	alarm(ALARM_S);
}

static void consume_ring(uint64_t total)
{
	uint64_t tail = 0, head_cache = 0;
	uint64_t next = (uint64_t)O.warmup;
	int k = 0;

	while (tail < total) {
		while (tail == head_cache) {
			head_cache = atomic_load_explicit(&ring->head, memory_order_acquire);
			if (tail == head_cache) {
				if (bu_peer_gone) {
					head_cache = atomic_load_explicit(&ring->head, memory_order_acquire);
					if (tail == head_cache)
						server_gone();
					break;
				}
				bu_relax();
			}
		}
		memcpy(buf, ring->slots + (tail & (ring_slots - 1)) * ring_stride, O.size);
		check_stamp(buf, tail);
		tail++;
		atomic_store_explicit(&ring->tail, tail, memory_order_release);
		if (tail == next) {
			boundary(k++);
			next += (uint64_t)O.iters;
		}
	}
}

/* Reads as much as there is (up to 64 KiB), counts whole messages. */
static void consume_fd(int fd, uint64_t total)
{
	uint64_t count = 0, next = (uint64_t)O.warmup;
	size_t have = 0;
	int k = 0;

	while (count < total) {
		ssize_t n = read(fd, buf + have, READ_CHUNK);
		size_t off = 0;

		if (n < 0) {
			if (errno == EINTR) {
				interrupted(fd);
				continue;
			}
			if (errno == ECONNRESET)
				server_gone();
			bu_die(errno, "client: read");
		}
		if (n == 0)
			server_gone();
		have += (size_t)n;
		while (have - off >= O.size) {
			check_stamp(buf + off, count);
			off += O.size;
			count++;
		}
		while (count >= next && k <= O.reps) {
			boundary(k++);
			next += (uint64_t)O.iters;
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
}

static void client_stream(void)
{
	uint64_t total = (uint64_t)O.warmup + (uint64_t)O.iters * (uint64_t)O.reps;

	if (O.impl == SPINRING)
		consume_ring(total);
	else
		consume_fd(O.impl == PIPE ? s2c[0] : sock[0], total);
	for (int r = 0; r < O.reps; r++) {
		uint64_t dt = bound_t[r + 1] - bound_t[r];

		res.rep[r].msgs_per_s = dt ? (double)O.iters * 1e9 / (double)dt : 0;
		res.rep[r].cpu_ns_per_op = (double)(bound_cpu[r + 1] - bound_cpu[r]);
	}
}

static int client_main(void)
{
	char c;
	ssize_t n;

	if (bu_pin(O.cpu_a) < 0)
		bu_die(errno, "cannot pin to cpu %d", O.cpu_a);
	close(ready[1]);
	if (c2s[0] >= 0)
		close(c2s[0]);
	if (s2c[1] >= 0)
		close(s2c[1]);
	if (sock[1] >= 0)
		close(sock[1]);
	while ((n = read(ready[0], &c, 1)) < 0 && errno == EINTR)
		;
	if (n != 1)
		server_gone();
	close(ready[0]);
#ifdef HAVE_ZMQ
	if (O.impl == ZMQ)
		zmq_open(ZMQ_REQ);
#endif

	if (O.bench == RTT) {
		size_t bytes = (size_t)O.reps * (size_t)O.iters * sizeof(*lat);

		lat = malloc(bytes);
		if (!lat)
			bu_die(ENOMEM, "%zu bytes of latency samples", bytes);
		memset(lat, 0, bytes); /* fault the pages in now */
		switch (O.impl) {
		case SPIN: client_rtt(cli_spin); break;
		case FUTEX: client_rtt(cli_futex); break;
		case UDS: client_rtt(cli_uds); break;
		case PIPE: client_rtt(cli_pipe); break;
		case EVENTFD: client_rtt(cli_eventfd); break;
#ifdef HAVE_ZMQ
		case ZMQ: client_rtt(cli_zmq); break;
#endif
		default: break;
		}
		free(lat);
	} else {
		client_stream();
	}
#ifdef HAVE_ZMQ
	zmq_close_all();
#endif
	bu_reap(server_pid, "server");

	/* add the server's CPU over the same repetitions, then per op */
	for (int r = 0; r < O.reps; r++) {
		res.rep[r].cpu_ns_per_op += (double)(ctl->srv_cpu[r + 1] - ctl->srv_cpu[r]);
		res.rep[r].cpu_ns_per_op /= (double)O.iters;
	}
	res.bench = O.bench == RTT ? "rtt" : "stream";
	res.impl = impl_names[O.impl];
	res.kind = O.bench == RTT ? BU_LATENCY : BU_RATE;
	res.size = O.size;
	res.iters = O.iters;
	res.reps = O.reps;
	res.cpu_a = O.cpu_a;
	res.cpu_b = O.cpu_b;
	bu_print(stdout, &res);
	return 0;
}

/* ------------------------------------------------------------- the setup */

static void setup(void)
{
	ctl = bu_shared_alloc(sizeof(*ctl));
	if (pipe(ready) < 0)
		bu_die(errno, "pipe");
	switch (O.impl) {
	case SPIN:
	case FUTEX:
		sh = bu_shared_alloc(sizeof(*sh));
		break;
	case EVENTFD:
		sh = bu_shared_alloc(sizeof(*sh));
		efd_req = eventfd(0, EFD_CLOEXEC);
		efd_rep = eventfd(0, EFD_CLOEXEC);
		if (efd_req < 0 || efd_rep < 0)
			bu_die(errno, "eventfd");
		break;
	case UDS:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sock) < 0)
			bu_die(errno, "socketpair");
		break;
	case PIPE:
		if (pipe2(s2c, O_CLOEXEC) < 0 || (O.bench == RTT && pipe2(c2s, O_CLOEXEC) < 0))
			bu_die(errno, "pipe");
		break;
	case SPINRING:
		ring_stride = (O.size + 63) & ~(size_t)63;
		ring_slots = 16;
		while (ring_slots * 2 * ring_stride <= RING_BYTES)
			ring_slots *= 2;
		ring = bu_shared_alloc(sizeof(*ring) + ring_slots * ring_stride);
		break;
	case ZMQ:
		snprintf(zdir, sizeof(zdir), "/tmp/liminal-bench-XXXXXX");
		if (!mkdtemp(zdir)) {
			zdir[0] = 0;
			bu_die(errno, "mkdtemp /tmp/liminal-bench-XXXXXX");
		}
		snprintf(zendpoint, sizeof(zendpoint), "ipc://%s/s", zdir);
		atexit(remove_zdir);
		break;
	}
}

static void __attribute__((noreturn)) usage(const char *fmt, const char *arg)
{
	if (fmt) {
		fprintf(stderr, "bench_base: ");
		fprintf(stderr, fmt, arg);
		fputc('\n', stderr);
	}
	fprintf(stderr,
		"usage: bench_base --bench rtt --impl spin|futex|uds|pipe|eventfd|zmq\n"
		"       bench_base --bench stream --impl spinring|pipe|uds\n"
		"         [--size BYTES (8..%d, default 64)] [--iters N] [--reps R (1..%d, default 3)]\n"
		"         [--warmup N (at least 1)] [--cpus A,B (client on A, server on B)]\n"
		"         [--samples FILE (rtt: every round trip, \"rep op ns\" per line)]\n",
		MAX_SIZE, BU_MAX_REPS);
	exit(2);
}

static long number(const char *s, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0)
		usage("bad %s", what);
	return v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "bench", required_argument, NULL, 'b' }, { "impl", required_argument, NULL, 'i' },
		{ "size", required_argument, NULL, 's' },  { "iters", required_argument, NULL, 'n' },
		{ "reps", required_argument, NULL, 'r' },  { "warmup", required_argument, NULL, 'w' },
		{ "cpus", required_argument, NULL, 'c' },  { "samples", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_impl = false;
	pid_t parent;
	int ch;

	bu_set_prog(argv[0]);
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'b':
			if (!strcmp(optarg, "rtt"))
				O.bench = RTT;
			else if (!strcmp(optarg, "stream"))
				O.bench = STREAM;
			else
				usage("unknown bench '%s'", optarg);
			break;
		case 'i':
			have_impl = false;
			for (size_t k = 0; k < sizeof(impl_names) / sizeof(impl_names[0]); k++) {
				if (!strcmp(optarg, impl_names[k])) {
					O.impl = (enum impl)k;
					have_impl = true;
				}
			}
			if (!have_impl)
				usage("unknown impl '%s'", optarg);
			break;
		case 's': O.size = (size_t)number(optarg, "size"); break;
		case 'n': O.iters = number(optarg, "iters"); break;
		case 'r': O.reps = (int)number(optarg, "reps"); break;
		case 'w': O.warmup = number(optarg, "warmup"); break;
		case 'c':
			if (bu_parse_cpus(optarg, &O.cpu_a, &O.cpu_b) < 0)
				usage("bad --cpus '%s' (want A,B)", optarg);
			break;
		case 'S': samples_path = optarg; break;
		case 'h': usage(NULL, NULL);
		default: usage(NULL, NULL);
		}
	}
	if (optind < argc)
		usage("unexpected argument '%s'", argv[optind]);
	if (!have_impl)
		usage("--impl is required%s", "");
	if (O.bench == RTT ? O.impl == SPINRING : !(O.impl == SPINRING || O.impl == PIPE || O.impl == UDS))
		usage("--impl %s does not apply to this bench", impl_names[O.impl]);
	if (O.size < 8 || O.size > MAX_SIZE)
		usage("--size must be 8..65536%s", "");
	if (O.reps < 1 || O.reps > BU_MAX_REPS)
		usage("--reps must be 1..64%s", "");
#ifndef HAVE_ZMQ
	if (O.impl == ZMQ) {
		fprintf(stderr, "bench_base: --impl zmq: built without libzmq (pkg-config libzmq was not found)\n");
		return 3;
	}
#endif
	if (O.iters == 0)
		O.iters = O.bench == RTT ? 20000 : 1000000;
	if (O.warmup < 0)
		O.warmup = O.iters / 10;
	if (O.warmup < 1)
		O.warmup = 1;
	if (O.cpu_a >= 0 && O.cpu_a == O.cpu_b) {
		long cap = O.impl == SPIN ? ONE_CORE_SPIN_ITERS : O.impl == SPINRING ? ONE_CORE_RING_ITERS : 0;
		long wcap = O.impl == SPIN ? ONE_CORE_SPIN_WARMUP : ONE_CORE_RING_WARMUP;

		if (cap && O.iters > cap) {
			fprintf(stderr, "bench_base: %s with both processes on cpu %d: %ld iterations per repetition instead of %ld\n",
				impl_names[O.impl], O.cpu_a, cap, O.iters);
			O.iters = cap;
		}
		if (cap && O.warmup > wcap)
			O.warmup = wcap;
	}

	setup();
	fflush(NULL);
	bu_on_peer_gone(mark_server_gone);
	bu_watch_child(ALARM_S);
	parent = getpid();
	server_pid = fork();
	if (server_pid < 0)
		bu_die(errno, "fork");
	if (server_pid == 0)
		_exit(server_main(parent));
	return client_main();
}
