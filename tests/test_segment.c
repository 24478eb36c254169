/* SPDX-License-Identifier: MIT */
/*
 * Never trust the segment: a damaged header, ring, cell index, envelope,
 * phase, name or ready bitmap is an error for the call that meets it, never
 * a crash, an out-of-bounds access or an endless loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ck_pr.h>

#include "harness.h"
#include "../lib/internal.h"
#include "../shm/freering.h"
#include "../shm/table.h"

static void *map_file(const char *name, size_t *size, int *fd_out)
{
	char path[PATH_MAX];
	struct stat st;
	void *p;
	int fd;

	snprintf(path, sizeof(path), "%s/liminal.%s", getenv("LIMINAL_DIR"), name);
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	*size = (size_t)st.st_size;
	*fd_out = fd;
	return p;
}

static int join_after(const char *name, void (*damage)(struct lmn__header *h, int fd))
{
	size_t size;
	int fd, r;
	struct lmn__header *h = map_file(name, &size, &fd);
	lmn_bus *bus = NULL;

	damage(h, fd);
	munmap(h, size);
	close(fd);
	r = lmn_bus_join(name, "victim", &bus);
	if (r == 0)
		lmn_bus_leave(bus);
	return r;
}

static void bad_magic(struct lmn__header *h, int fd) { (void)fd; h->magic ^= 1; }
static void bad_version(struct lmn__header *h, int fd) { (void)fd; h->version = 99; }
static void bad_count(struct lmn__header *h, int fd) { (void)fd; h->conversations = 1u << 30; }
static void bad_offset(struct lmn__header *h, int fd) { (void)fd; h->off_cells += 64; }
static void bad_depth(struct lmn__header *h, int fd) { (void)fd; h->ring_depth = 3; }
static void truncated(struct lmn__header *h, int fd)
{
	(void)h;
	ck_assert_int_eq(ftruncate(fd, 8192), 0);
}
static void tiny(struct lmn__header *h, int fd)
{
	(void)h;
	ck_assert_int_eq(ftruncate(fd, 16), 0);
}
static void grown(struct lmn__header *h, int fd)
{
	struct stat st;

	(void)h;
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(ftruncate(fd, st.st_size + 4096), 0);
}

START_TEST(damaged_header_refused)
{
	struct {
		void (*damage)(struct lmn__header *, int);
		int want;
	} cases[] = {
		{bad_magic, -EBADMSG},  {bad_version, -EPROTO}, {bad_count, -EUCLEAN},
		{bad_offset, -EUCLEAN}, {bad_depth, -EUCLEAN},  {truncated, -EUCLEAN},
		{tiny, -EBADMSG},       {grown, -EUCLEAN},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *name = th_bus(4, 4, 64);

		ck_assert_int_eq(join_after(name, cases[i].damage), cases[i].want);
	}
}
END_TEST

struct fixture {
	lmn_bus *bus;
	lmn_conv *conv;
	struct lmn__conv *c;
};

static void open_buffering(struct fixture *f)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const char *name = th_bus(4, 4, 64);

	ck_assert_int_eq(lmn_bus_join(name, "me", &f->bus), 0);
	ck_assert_int_eq(lmn_conv_open(f->bus, NULL, &cfg, &f->conv), 0);
	f->c = lmn__conv_at(&f->bus->l, f->bus->base, f->conv->idx);
}

static void close_fixture(struct fixture *f)
{
	lmn_conv_free(f->conv);
	lmn_bus_leave(f->bus);
}

/* The size and mask stored in a ring are never used: the process's own
 * validated size is.  Damaging them changes nothing.  A damaged counter is
 * caught by the end that reads it, and never steers the end that owns it:
 * that end keeps its counter in its own memory, and its next store puts the
 * segment's copy right. */
START_TEST(damaged_ring_geometry)
{
	struct fixture f;
	char buf[64];

	open_buffering(&f);
	f.c->inbox.data.mask = 0xffffffu;
	f.c->inbox.data.size = 3;
	f.c->inbox.free.mask = 0x7fffffffu;
	for (int i = 0; i < 50; i++) {
		ck_assert_int_eq(lmn_send(f.conv, "x", 1, 0), 0);
		ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), 1);
	}
	/* A producer tail that runs far past the consumer: the consumer
	 * refuses it, and again, without moving. */
	f.c->inbox.data.p_tail += 100000;
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -EUCLEAN);
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -EUCLEAN);
	/* The producer never read it back: its send succeeds, and the tail
	 * it stores is the true one, so the message arrives. */
	ck_assert_int_eq(lmn_send(f.conv, "x", 1, 0), 0);
	ck_assert_int_eq(f.c->inbox.data.p_tail - f.c->inbox.data.c_head, 1);
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), 1);
	ck_assert_int_eq(buf[0], 'x');
	/* A free ring claiming more cells than exist: the producer reads
	 * the consumer's tail once the cells it knew of are used, and then
	 * refuses it rather than take a cell that is not there. */
	f.c->inbox.free.p_tail += 100000;
	{
		int r = 0, sent = 0;

		for (uint32_t i = 0; i <= f.bus->l.ring_depth && r == 0; i++) {
			r = lmn_send(f.conv, "x", 1, LMN_SEND_NONBLOCK);
			sent += r == 0;
		}
		ck_assert_int_eq(r, -EUCLEAN);
		ck_assert_int_le(sent, (int)f.bus->l.ring_depth);
		/* The consumer's next give-back stores the true tail. */
		f.c->inbox.free.p_tail -= 100000;
		for (int i = 0; i < sent; i++)
			ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), 1);
	}
	ck_assert_int_eq(lmn_send(f.conv, "y", 1, 0), 0);
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), 1);
	ck_assert_int_eq(buf[0], 'y');
	close_fixture(&f);
}
END_TEST

START_TEST(damaged_cell_index)
{
	struct fixture f;
	struct lmn__entry *rb;
	char buf[64];

	open_buffering(&f);
	ck_assert_int_eq(lmn_send(f.conv, "x", 1, 0), 0);
	rb = lmn__databuf(&f.bus->l, f.bus->base, f.conv->idx, 1);
	/* The right position, a cell that does not exist. */
	rb[0].tag = 1ull << 32 | 999999;
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -EUCLEAN);
	/* The damaged entry was dropped; the channel goes on. */
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -ETIMEDOUT);
	ck_assert_int_eq(lmn_send(f.conv, "y", 1, 0), 0);
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), 1);
	ck_assert_int_eq(buf[0], 'y');
	/* An entry whose position is not the one it sits at: dropped. */
	ck_assert_int_eq(lmn_send(f.conv, "z", 1, 0), 0);
	rb[2].tag += 1ull << 32;
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -EUCLEAN);
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -ETIMEDOUT);
	/* A tail far past the head is damage too, not a long queue, and is
	 * left alone. */
	f.c->inbox.data.p_tail += 1000;
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -EUCLEAN);
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -EUCLEAN);
	f.c->inbox.data.p_tail -= 1000;
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -ETIMEDOUT);
	ck_assert_int_eq(lmn_send(f.conv, "w", 1, 0), 0);
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), 1);
	ck_assert_int_eq(buf[0], 'w');
	close_fixture(&f);
}
END_TEST

/* A data ring entry says where it was published, and a slot's next tenant
 * starts its counters again at 0: an entry the previous tenant left
 * unread must not pass for the new tenant's first message. */
START_TEST(next_tenant_sees_no_old_entry)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_bus *bus;
	lmn_conv *a, *b;
	char buf[64];

	ck_assert_int_eq(lmn_bus_join(th_bus(1, 4, 64), "me", &bus), 0);
	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &a), 0);
	ck_assert_int_eq(lmn_send(a, "old", 3, 0), 0);
	lmn_conv_free(a);
	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &b), 0);
	ck_assert_int_eq(lmn_recv(b, buf, sizeof(buf), 0), -ETIMEDOUT);
	ck_assert_int_eq(lmn_send(b, "new", 3, 0), 0);
	ck_assert_int_eq(lmn_recv(b, buf, sizeof(buf), 0), 3);
	ck_assert_mem_eq(buf, "new", 3);
	lmn_conv_free(b);
	lmn_bus_leave(bus);
}
END_TEST

/* A producer killed between an entry and the tail that counts it has
 * published that entry: the consumer may take it.  The end that takes over
 * (a server moved under ROUTE_NEXT re-attaches the inbox) must start after
 * it, or its first message would land behind the consumer, unseen. */
START_TEST(reattached_producer_counts_an_uncounted_entry)
{
	struct fixture f;
	char buf[64];

	open_buffering(&f);
	ck_assert_int_eq(lmn_send(f.conv, "a", 1, 0), 0);
	ck_assert_int_eq(lmn_send(f.conv, "b", 1, 0), 0);
	/* As if the producer had died before storing its tail for "b". */
	f.c->inbox.data.p_tail--;
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), 1);
	ck_assert_int_eq(buf[0], 'a');
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), 1);
	ck_assert_int_eq(buf[0], 'b');
	ck_assert_int_eq(lmn__tx_attach(&f.conv->tx, &f.c->inbox,
					lmn__databuf(&f.bus->l, f.bus->base, f.conv->idx, 1),
					f.bus->l.ring_size),
			 0);
	ck_assert_int_eq(lmn_send(f.conv, "c", 1, 0), 0);
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), 1);
	ck_assert_int_eq(buf[0], 'c');
	ck_assert_int_eq(f.c->inbox.data.p_tail, f.c->inbox.data.c_head);
	close_fixture(&f);
}
END_TEST

/* Cells given back out of order, in every order: the producer, which
 * computes free cells from the in-order mark where it can, never takes a
 * cell still in use, and once cells go back in order again it computes
 * again.  Both ends of one channel, driven by hand in random steps; now
 * and then an end is taken over afresh, and a reaper gives the held cells
 * back in its own order, as after a death. */
START_TEST(free_cells_follow_the_mark)
{
	struct fixture f;
	const struct lmn__layout *l;
	struct lmn__entry *db;
	struct ck_ring_buffer *fb;
	struct lmn__tx tx;
	struct lmn__rx rx;
	bool busy[4] = {false};
	uint32_t held[4], cell;
	unsigned int seed = 20261124, nheld = 0, taken = 0, computed = 0;
	uint64_t last_id = 0;

	open_buffering(&f);
	l = &f.bus->l;
	ck_assert_uint_eq(l->ring_depth, 4);
	db = lmn__databuf(l, f.bus->base, f.conv->idx, 1);
	fb = lmn__freebuf(l, f.bus->base, f.conv->idx, 1);
	ck_assert_int_eq(lmn__tx_attach(&tx, &f.c->inbox, db, l->ring_size), 0);
	ck_assert_int_eq(lmn__rx_attach(&rx, &f.c->inbox, l->ring_size), 0);
	for (int step = 0; step < 40000; step++) {
		const struct lmn__entry *e;
		bool in_order = step >= 30000;
		int r;

		if (rand_r(&seed) % 500 == 0) {
			/* A new producer end. */
			ck_assert_int_eq(lmn__tx_attach(&tx, &f.c->inbox, db, l->ring_size), 0);
		} else if (!in_order && rand_r(&seed) % 700 == 0) {
			/* The consumer dies: what it gave back is published,
			 * what it held a reaper gives back, then a new end. */
			(void)lmn__rx_flush(&rx, &f.c->inbox, l->ring_depth);
			for (unsigned int k = nheld; k-- > 0;) {
				ck_assert_int_eq(lmn__chan_give_back(&f.c->inbox, fb, l, held[k]), 0);
				busy[held[k]] = false;
			}
			nheld = 0;
			ck_assert_int_eq(lmn__rx_attach(&rx, &f.c->inbox, l->ring_size), 0);
		}
		switch (rand_r(&seed) % 3) {
		case 0:
			computed += lmn__free_in_order(tx.free_c, tx.free_m) &&
				    lmn__hist_knows(&tx.hist, tx.free_c, l->ring_depth);
			r = lmn__tx_reserve(&tx, &f.c->inbox, fb, l, &cell);
			if (r == -EAGAIN)
				break;
			ck_assert_int_eq(r, 0);
			ck_assert_msg(!busy[cell], "cell %u taken while in use", cell);
			busy[cell] = true;
			lmn__tx_publish(&tx, &f.c->inbox, db, l, cell, (uint64_t)step + 1, 0, 0);
			taken++;
			break;
		case 1:
			if (lmn__rx_peek(&rx, &f.c->inbox, db, l, true, &cell, &e) != 0)
				break;
			/* In the order published, each once. */
			ck_assert_uint_gt(ck_pr_load_64(&e->id), last_id);
			last_id = ck_pr_load_64(&e->id);
			lmn__rx_advance(&rx, &f.c->inbox);
			held[nheld++] = cell;
			break;
		default:
			if (nheld) {
				unsigned int k = in_order ? 0 : (unsigned int)rand_r(&seed) % nheld;

				cell = held[k];
				memmove(held + k, held + k + 1, (nheld - k - 1) * sizeof(held[0]));
				nheld--;
				busy[cell] = false;
				lmn__rx_return(&rx, fb, l, cell);
			}
			if (rand_r(&seed) % 2)
				(void)lmn__rx_flush(&rx, &f.c->inbox, l->ring_depth);
			break;
		}
	}
	/* Out of order most of the way, computed some of the way, and
	 * computed again at the end. */
	ck_assert_uint_gt(taken, 5000);
	ck_assert_uint_gt(computed, 100);
	ck_assert(lmn__free_in_order(tx.free_c, tx.free_m) &&
		  lmn__hist_knows(&tx.hist, tx.free_c, l->ring_depth));
	close_fixture(&f);
}
END_TEST

/* A producer killed between taking a free cell and publishing it leaves
 * that cell's free position with no data position: from then on the
 * consumer's guess of the next cell (lmn__rx_guess) is one position off,
 * until lmn__rx_reguess finds where the cells went and the guesses are
 * right again.  One wrong guess, then right ones; whatever the guess, the
 * cell used is the one the entry names. */
START_TEST(guess_follows_a_take_lost_with_its_producer)
{
	struct fixture f;
	const struct lmn__layout *l;
	struct lmn__entry *db;
	struct ck_ring_buffer *fb;
	struct lmn__tx tx;
	struct lmn__rx rx;
	uint32_t cell, got, guess;
	unsigned int wrong = 0;
	int status;
	pid_t pid;

	open_buffering(&f);
	l = &f.bus->l;
	db = lmn__databuf(l, f.bus->base, f.conv->idx, 1);
	fb = lmn__freebuf(l, f.bus->base, f.conv->idx, 1);
	ck_assert_int_eq(lmn__rx_attach(&rx, &f.c->inbox, l->ring_size), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct lmn__tx dying;
		uint32_t c;

		if (lmn__tx_attach(&dying, &f.c->inbox, db, l->ring_size) < 0 ||
		    lmn__tx_reserve(&dying, &f.c->inbox, fb, l, &c) < 0)
			_exit(1);
		raise(SIGKILL);
		_exit(2);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* A new producer end takes over from the counters the dead one left. */
	ck_assert_int_eq(lmn__tx_attach(&tx, &f.c->inbox, db, l->ring_size), 0);
	for (int i = 0; i < 64; i++) {
		const struct lmn__entry *e;

		ck_assert_int_eq(lmn__tx_reserve(&tx, &f.c->inbox, fb, l, &cell), 0);
		lmn__tx_publish(&tx, &f.c->inbox, db, l, cell, (uint64_t)i + 1, 0, 0);
		guess = lmn__rx_guess(&rx, db, l->ring_size);
		ck_assert_int_eq(lmn__rx_peek(&rx, &f.c->inbox, db, l, i % 2, &got, &e), 0);
		ck_assert_uint_eq(got, cell);
		ck_assert_uint_eq(ck_pr_load_64(&e->id), (uint64_t)i + 1);
		wrong += guess != got;
		lmn__rx_advance(&rx, &f.c->inbox);
		lmn__rx_return(&rx, fb, l, got);
		ck_assert_int_eq(lmn__rx_flush(&rx, &f.c->inbox, l->ring_depth), 1);
	}
	ck_assert_uint_eq(wrong, 1);
	ck_assert_uint_eq(rx.skew, 1);
	close_fixture(&f);
}
END_TEST

START_TEST(damaged_envelope_length)
{
	struct fixture f;
	struct lmn__entry *ent;
	char buf[64];

	open_buffering(&f);
	ck_assert_int_eq(lmn_send(f.conv, "x", 1, 0), 0);
	ent = lmn__databuf(&f.bus->l, f.bus->base, f.conv->idx, 1);
	ck_assert_uint_eq(ent->length, 1);
	ent->length = 1u << 31;
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -EBADMSG);
	/* Dropped, not stuck: the next message comes through. */
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -ETIMEDOUT);
	ck_assert_int_eq(lmn_send(f.conv, "z", 1, 0), 0);
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), 1);
	ck_assert_int_eq(buf[0], 'z');
	close_fixture(&f);
}
END_TEST

START_TEST(damaged_phase)
{
	struct fixture f;
	struct lmn_conv_info info;
	char buf[64];

	open_buffering(&f);
	f.c->phase = 42;
	ck_assert_int_eq(lmn_send(f.conv, "x", 1, 0), -EUCLEAN);
	ck_assert_int_eq(lmn_recv(f.conv, buf, sizeof(buf), 0), -EUCLEAN);
	/* A query still answers, and does not pass the garbage on. */
	ck_assert_int_eq(lmn_conv_state(f.conv, &info), 0);
	ck_assert_int_eq(info.phase, LMN_PHASE_FAILED);
	f.c->phase = LMN__PHASE_ACTIVE;
	close_fixture(&f);
}
END_TEST

/* A server meets a damaged request: that call fails, the next works. */
START_TEST(server_survives_damaged_request)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const char *name = th_bus(4, 4, 64);
	struct lmn__entry *ent;
	lmn_bus *srv, *cli;
	lmn_conv *conv;
	lmn_msg *m;

	ck_assert_int_eq(lmn_bus_join(name, "srv", &srv), 0);
	ck_assert_int_eq(lmn_bus_serve(srv, "svc"), 0);
	ck_assert_int_eq(lmn_bus_join(name, "cli", &cli), 0);
	ck_assert_int_eq(lmn_conv_open(cli, "svc", &cfg, &conv), 0);
	ck_assert_int_eq(lmn_send(conv, "bad", 3, 0), 0);
	ent = lmn__databuf(&cli->l, cli->base, conv->idx, 0);
	ent->length = 0xffffffffu;
	ck_assert_int_eq(lmn_next(srv, &m, 0), -EBADMSG);
	ck_assert_int_eq(lmn_send(conv, "good", 4, 0), 0);
	ck_assert_int_eq(lmn_next(srv, &m, TH_TIMEOUT_MS), 0);
	ck_assert_uint_eq(lmn_msg_size(m), 4);
	ck_assert_mem_eq(lmn_msg_data(m), "good", 4);
	lmn_msg_release(m);
	lmn_conv_free(conv);
	lmn_bus_leave(cli);
	lmn_bus_leave(srv);
}
END_TEST

/* A conversation whose command ring's counters are out of range gives its
 * server one -EBADMSG, polled or not yet looked at, and then no more until
 * its sender publishes again: before, every later lmn_next() failed at
 * once, whatever its timeout, and a server that carried on spun.  Its
 * sender's next request stores a true tail and is served; the other
 * conversations are served throughout. */
START_TEST(server_waits_past_a_damaged_ring)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const char *name = th_bus(4, 4, 64);
	lmn_conv *conv[3];
	struct lmn__conv *c[3];
	lmn_bus *srv, *cli;
	unsigned int bad = 0, taken = 0;
	lmn_msg *m;

	ck_assert_int_eq(lmn_bus_join(name, "srv", &srv), 0);
	ck_assert_int_eq(lmn_bus_serve(srv, "svc"), 0);
	ck_assert_int_eq(lmn_bus_join(name, "cli", &cli), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(lmn_conv_open(cli, "svc", &cfg, &conv[i]), 0);
		c[i] = lmn__conv_at(&cli->l, cli->base, conv[i]->idx);
	}
	/* conv[0] is served once, and polled; conv[1] never looked at. */
	ck_assert_int_eq(lmn_send(conv[0], "a", 1, 0), 0);
	ck_assert_int_eq(lmn_next(srv, &m, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_reply(m, "A", 1), 0);
	lmn_msg_release(m);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(lmn_send(conv[i], "x", 1, 0), 0);
		c[i]->cmd.data.p_tail = 0x7fffffffu;
	}
	/* The polled one's request published before the damage is taken
	 * (its entry is there; the other's server end refuses the counters
	 * before it looks); then each damaged ring fails a call or two, and
	 * the rest wait (a timeout of 0: -ETIMEDOUT). */
	for (int k = 0; k < 40; k++) {
		int r = lmn_next(srv, &m, 0);

		ck_assert_msg(r == 0 || r == -EBADMSG || r == -ETIMEDOUT, "lmn_next gave %d", r);
		if (r == 0) {
			ck_assert_mem_eq(lmn_msg_data(m), "x", 1);
			lmn_msg_release(m);
			taken++;
		}
		bad += r == -EBADMSG;
	}
	ck_assert_uint_eq(taken, 1);
	ck_assert_uint_ge(bad, 1);
	ck_assert_uint_le(bad, 4);
	/* The third conversation is served meanwhile. */
	ck_assert_int_eq(lmn_send(conv[2], "c", 1, 0), 0);
	ck_assert_int_eq(lmn_next(srv, &m, TH_TIMEOUT_MS), 0);
	ck_assert_mem_eq(lmn_msg_data(m), "c", 1);
	lmn_msg_release(m);
	/* The next send on a damaged one puts its tail right: what it had
	 * queued is served, in order. */
	ck_assert_int_eq(lmn_send(conv[0], "y", 1, 0), 0);
	ck_assert_int_eq(lmn_next(srv, &m, TH_TIMEOUT_MS), 0);
	ck_assert_mem_eq(lmn_msg_data(m), "y", 1);
	lmn_msg_release(m);
	ck_assert_int_eq(lmn_send(conv[1], "z", 1, 0), 0);
	for (int k = 0; k < 2; k++) {
		ck_assert_int_eq(lmn_next(srv, &m, TH_TIMEOUT_MS), 0);
		ck_assert_mem_eq(lmn_msg_data(m), k ? "z" : "x", 1);
		lmn_msg_release(m);
	}
	/* A conversation closed behind a damaged tail, whose sender will
	 * never publish again: its close notice still comes, and its slot
	 * goes back. */
	c[2]->cmd.data.p_tail = 0x7fffffffu;
	lmn_conv_free(conv[2]);
	for (int k = 0;; k++) {
		int r = lmn_next(srv, &m, TH_TIMEOUT_MS);

		ck_assert_int_lt(k, 3);
		if (r == -EBADMSG)
			continue;
		ck_assert_int_eq(r, 0);
		ck_assert_int_eq(lmn_msg_kind(m), LMN_MSG_CLOSED);
		lmn_msg_release(m);
		break;
	}
	{
		struct lmn_bus_stat st;

		ck_assert_int_eq(lmn_bus_stat(name, &st), 0);
		ck_assert_uint_eq(st.conversations_used, 2);
	}
	for (int i = 0; i < 2; i++)
		lmn_conv_free(conv[i]);
	lmn_bus_leave(cli);
	lmn_bus_leave(srv);
}
END_TEST

/* Ready bits for conversations that are not ours, free, or past the table
 * are skipped; names without a terminator are never read past their field. */
START_TEST(stray_bits_and_unterminated_names)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const char *name = th_bus(4, 4, 64);
	struct lmn__participant *p;
	lmn_bus *srv, *other;
	lmn_conv *conv;
	uint64_t *bits;
	lmn_msg *m;

	ck_assert_int_eq(lmn_bus_join(name, "srv", &srv), 0);
	bits = lmn__ready(&srv->l, srv->base, srv->self_idx);
	memset(bits, 0xff, srv->l.ready_stride);
	ck_assert_int_eq(lmn_next(srv, &m, 10), -ETIMEDOUT);

	/* A participant entry whose name fills its field with no end. */
	p = lmn__part(&srv->l, srv->base, srv->self_idx);
	memset(p->name, 'A', sizeof(p->name));
	ck_assert_int_eq(lmn_bus_join(name, "other", &other), 0);
	ck_assert_int_eq(lmn_conv_open(other, "AAAA", &cfg, &conv), -ENOENT);
	memcpy(p->name, "srv", 4);
	lmn_bus_leave(other);
	lmn_bus_leave(srv);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("segment");
	TCase *tc = tcase_create("segment");

	tcase_add_checked_fixture(tc, th_setup, th_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, damaged_header_refused);
	tcase_add_test(tc, damaged_ring_geometry);
	tcase_add_test(tc, damaged_cell_index);
	tcase_add_test(tc, next_tenant_sees_no_old_entry);
	tcase_add_test(tc, reattached_producer_counts_an_uncounted_entry);
	tcase_add_test(tc, damaged_envelope_length);
	tcase_add_test(tc, free_cells_follow_the_mark);
	tcase_add_test(tc, guess_follows_a_take_lost_with_its_producer);
	tcase_add_test(tc, damaged_phase);
	tcase_add_test(tc, server_survives_damaged_request);
	tcase_add_test(tc, server_waits_past_a_damaged_ring);
	tcase_add_test(tc, stray_bits_and_unterminated_names);
	suite_add_tcase(s, tc);
	return th_run(s);
}
