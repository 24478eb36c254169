/* SPDX-License-Identifier: MIT */
/*
 * Bad input to every public call of liminal.h.  Each call must answer with a
 * clear negative errno, must not crash, hang or leak a slot, and must leave
 * its output parameters exactly as they were: every output is set to a
 * sentinel first and compared after the failing call.
 *
 * Servers are either a second lmn_bus_join() in this process (when the test
 * needs to hold a message itself) or th_echo_start()'s child process (when a
 * blocking lmn_call() needs someone to answer).  Nothing sleeps to
 * synchronise: every wait is bounded by a timeout.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define MAXMSG 64u

/* Sentinels for output parameters: addresses nobody else hands out. */
static int sentinel_obj[3];
#define BUS_SENTINEL ((lmn_bus *)(void *)&sentinel_obj[0])
#define CONV_SENTINEL ((lmn_conv *)(void *)&sentinel_obj[1])
#define MSG_SENTINEL ((lmn_msg *)(void *)&sentinel_obj[2])

/* ---- names ------------------------------------------------------------ */

struct bad_name {
	const char *name;
	int err;
};

static char name_max1[LMN_NAME_MAX + 2]; /* LMN_NAME_MAX + 1 bytes */
static char name_huge[4097];             /* far beyond any limit */
static char name_max[LMN_NAME_MAX + 1];  /* exactly LMN_NAME_MAX: valid */

static const struct bad_name bad_names_tab[] = {
	{"", -EINVAL},
	{name_max1, -ENAMETOOLONG},
	{name_huge, -ENAMETOOLONG},
	{"a/b", -EINVAL},
	{"/", -EINVAL},
	{"../etc", -EINVAL},
	{"a b", -EINVAL},
	{" a", -EINVAL},
	{"a ", -EINVAL},
	{".a", -EINVAL},
	{".", -EINVAL},
	{"..", -EINVAL},
	{"a\tb", -EINVAL},
	{"a\nb", -EINVAL},
	{"caf\xc3\xa9", -EINVAL},
	{"a*b", -EINVAL},
	{"a:b", -EINVAL},
	{"a\\b", -EINVAL},
	{NULL, 0},
};

static const struct bad_name *bad_names(void)
{
	memset(name_max1, 'a', LMN_NAME_MAX + 1);
	name_max1[LMN_NAME_MAX + 1] = '\0';
	memset(name_huge, 'b', sizeof(name_huge) - 1);
	name_huge[sizeof(name_huge) - 1] = '\0';
	return bad_names_tab;
}

static const char *max_name(char c)
{
	memset(name_max, c, LMN_NAME_MAX);
	name_max[LMN_NAME_MAX] = '\0';
	return name_max;
}

#define FOR_BAD_NAMES(b) for (const struct bad_name *b = bad_names(); b->name; b++)

/* Entries in the test's private bus directory, "." and ".." aside. */
static int dir_entries(void)
{
	const char *d = getenv("LIMINAL_DIR");
	struct dirent *e;
	DIR *dp;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	dp = opendir(d);
	ck_assert_ptr_nonnull(dp);
	while ((e = readdir(dp)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(dp);
	return n;
}

/* ---- small helpers ---------------------------------------------------- */

static lmn_bus *join(const char *bus, const char *self)
{
	lmn_bus *b = NULL;

	ck_assert_int_eq(lmn_bus_join(bus, self, &b), 0);
	ck_assert_ptr_nonnull(b);
	return b;
}

static lmn_conv *open_conv(lmn_bus *bus, const char *target)
{
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_conv *c = NULL;

	ck_assert_int_eq(lmn_conv_open(bus, target, &cfg, &c), 0);
	ck_assert_ptr_nonnull(c);
	return c;
}

static struct lmn_conv_info state_of(lmn_conv *c)
{
	struct lmn_conv_info i;

	memset(&i, 0, sizeof(i));
	ck_assert_int_eq(lmn_conv_state(c, &i), 0);
	return i;
}

/* A bus with a server and a client in this very process: the client's
 * conversation goes to the server's service. */
struct duo {
	const char *name;
	lmn_bus *srv;
	lmn_bus *cli;
	lmn_conv *conv;
};

static void duo_open(struct duo *d)
{
	d->name = th_bus(4, 4, MAXMSG);
	d->srv = join(d->name, "srv");
	d->cli = join(d->name, "cli");
	ck_assert_int_eq(lmn_bus_serve(d->srv, "svc"), 0);
	d->conv = open_conv(d->cli, "svc");
}

static lmn_msg *duo_next(struct duo *d)
{
	lmn_msg *m = NULL;

	ck_assert_int_eq(lmn_next(d->srv, &m, TH_TIMEOUT_MS), 0);
	ck_assert_ptr_nonnull(m);
	return m;
}

static void duo_close(struct duo *d)
{
	ck_assert_int_eq(lmn_conv_free(d->conv), 0);
	ck_assert_int_eq(lmn_bus_leave(d->cli), 0);
	ck_assert_int_eq(lmn_bus_leave(d->srv), 0);
}

static pid_t echo_up(struct th_echo *e, const char *bus)
{
	memset(e, 0, sizeof(*e));
	e->bus = bus;
	e->self = "echo";
	e->service = "echo-svc";
	e->max_closes = 1;
	return th_echo_start(e);
}

/* ---- buses -------------------------------------------------------------- */

START_TEST(test_bus_create_names)
{
	const char *ok = th_bus_name();

	FOR_BAD_NAMES(b) {
		ck_assert_msg(lmn_bus_create(b->name, NULL) == b->err, "bad name #%d",
			      (int)(b - bad_names_tab));
	}
	ck_assert_int_eq(lmn_bus_create(NULL, NULL), -EINVAL);
	/* Nothing was created, not even a temporary file. */
	ck_assert_int_eq(dir_entries(), 0);

	/* The edges that are valid: LMN_NAME_MAX bytes, inner dots, a
	 * leading '-' or '_'. */
	ck_assert_int_eq(lmn_bus_create(max_name('m'), NULL), 0);
	ck_assert_int_eq(lmn_bus_create("a.b-c_D9", NULL), 0);
	ck_assert_int_eq(lmn_bus_create("-x", NULL), 0);
	ck_assert_int_eq(lmn_bus_create("_y", NULL), 0);
	ck_assert_int_eq(dir_entries(), 4);

	/* The same name twice. */
	ck_assert_int_eq(lmn_bus_create(ok, NULL), 0);
	ck_assert_int_eq(lmn_bus_create(ok, NULL), -EEXIST);
	ck_assert_int_eq(dir_entries(), 5);
}
END_TEST

START_TEST(test_bus_create_config)
{
	static const struct {
		struct lmn_bus_config cfg;
		const char *why;
	} bad[] = {
		{{.reserved = {1, 0}}, "reserved[0]"},
		{{.reserved = {0, 0x80000000u}}, "reserved[1]"},
		{{.flags = LMN_BUS_KEEP << 1}, "unknown flag"},
		{{.flags = UINT32_MAX}, "every flag"},
		{{.mode = 01000}, "sticky mode bit"},
		{{.mode = 02600}, "setgid mode bit"},
		{{.mode = 04600}, "setuid mode bit"},
		{{.mode = 01777}, "01777"},
		{{.mode = 0x80000000u}, "mode high bit"},
		{{.mode = UINT32_MAX}, "mode all bits"},
		{{.ring_depth = 3}, "depth 3"},
		{{.ring_depth = 12}, "depth 12"},
		{{.ring_depth = 4095}, "depth 4095"},
		{{.ring_depth = 8192}, "depth 8192 (power of two over the maximum)"},
		{{.ring_depth = 1u << 31}, "depth 2^31"},
		{{.ring_depth = UINT32_MAX}, "depth UINT32_MAX"},
		{{.participants = 4097}, "participants 4097"},
		{{.participants = UINT32_MAX}, "participants UINT32_MAX"},
		{{.conversations = (1u << 20) + 1}, "conversations 2^20+1"},
		{{.conversations = UINT32_MAX}, "conversations UINT32_MAX"},
		{{.max_message = (16u << 20) + 1}, "max_message 16MiB+1"},
		{{.max_message = UINT32_MAX}, "max_message UINT32_MAX"},
	};
	const char *name = th_bus_name();
	lmn_bus *bus = BUS_SENTINEL;
	struct stat st;
	char path[PATH_MAX];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(lmn_bus_create(name, &bad[i].cfg) == -EINVAL, "%s accepted",
			      bad[i].why);
	ck_assert_int_eq(dir_entries(), 0);
	ck_assert_int_eq(lmn_bus_join(name, "me", &bus), -ENOENT);
	ck_assert_ptr_eq(bus, BUS_SENTINEL);

	/* The documented maxima themselves are accepted (kept small in
	 * bytes: one conversation of tiny messages). */
	{
		struct lmn_bus_config edge = {
			.participants = 4096,
			.conversations = 1,
			.ring_depth = 4096,
			.max_message = 1,
			.mode = 0777,
		};

		ck_assert_int_eq(lmn_bus_create(name, &edge), 0);
		snprintf(path, sizeof(path), "%s/liminal.%s", getenv("LIMINAL_DIR"), name);
		ck_assert_int_eq(stat(path, &st), 0);
		ck_assert_uint_eq(st.st_mode & 07777, 0777);
		bus = join(name, "me");
		ck_assert_int_eq(lmn_bus_leave(bus), 0);
	}
}
END_TEST

START_TEST(test_bus_unlink_and_join_unknown)
{
	const char *name = th_bus_name();
	lmn_bus *bus = BUS_SENTINEL;

	ck_assert_int_eq(lmn_bus_unlink(name), -ENOENT);
	ck_assert_int_eq(lmn_bus_join(name, "me", &bus), -ENOENT);
	ck_assert_ptr_eq(bus, BUS_SENTINEL);

	ck_assert_int_eq(lmn_bus_create(name, NULL), 0);
	ck_assert_int_eq(lmn_bus_unlink(name), 0);
	ck_assert_int_eq(lmn_bus_unlink(name), -ENOENT);
	ck_assert_int_eq(lmn_bus_join(name, "me", &bus), -ENOENT);
	ck_assert_ptr_eq(bus, BUS_SENTINEL);

	FOR_BAD_NAMES(b) {
		ck_assert_msg(lmn_bus_unlink(b->name) == b->err, "bad name #%d",
			      (int)(b - bad_names_tab));
	}
	ck_assert_int_eq(lmn_bus_unlink(NULL), -EINVAL);
	ck_assert_int_eq(dir_entries(), 0);
}
END_TEST

/* Something other than a regular file under a bus's name is not a bus, and
 * never blocks a call: a FIFO opened for reading would wait for a writer. */
START_TEST(test_bus_not_a_file)
{
	const char *name = th_bus_name();
	char path[PATH_MAX];
	struct lmn_bus_stat st;
	lmn_bus *bus = BUS_SENTINEL;

	snprintf(path, sizeof(path), "%s/liminal.%s", getenv("LIMINAL_DIR"), name);
	for (int kind = 0; kind < 2; kind++) {
		ck_assert_int_eq(kind ? mkdir(path, 0700) : mkfifo(path, 0600), 0);
		ck_assert_int_eq(lmn_bus_stat(name, &st), -EBADMSG);
		ck_assert_int_eq(lmn_bus_gc(name), -EBADMSG);
		ck_assert_int_eq(lmn_bus_join(name, "me", &bus), -EBADMSG);
		ck_assert_ptr_eq(bus, BUS_SENTINEL);
		/* Not ours to replace. */
		ck_assert_int_eq(lmn_bus_create(name, NULL), -EEXIST);
		ck_assert_int_eq(kind ? rmdir(path) : unlink(path), 0);
	}
	ck_assert_int_eq(dir_entries(), 0);
}
END_TEST

START_TEST(test_bus_join_args)
{
	const char *name = th_bus(4, 4, MAXMSG);
	lmn_bus *bus = BUS_SENTINEL, *held[16];

	FOR_BAD_NAMES(b) {
		int i = (int)(b - bad_names_tab);

		ck_assert_msg(lmn_bus_join(b->name, "me", &bus) == b->err, "bus name #%d", i);
		ck_assert_ptr_eq(bus, BUS_SENTINEL);
		ck_assert_msg(lmn_bus_join(name, b->name, &bus) == b->err, "self name #%d", i);
		ck_assert_ptr_eq(bus, BUS_SENTINEL);
	}
	ck_assert_int_eq(lmn_bus_join(NULL, "me", &bus), -EINVAL);
	ck_assert_int_eq(lmn_bus_join(name, NULL, &bus), -EINVAL);
	ck_assert_ptr_eq(bus, BUS_SENTINEL);
	ck_assert_int_eq(lmn_bus_join(name, "me", NULL), -EINVAL);

	/* A name already taken. */
	held[0] = join(name, "me");
	ck_assert_int_eq(lmn_bus_join(name, "me", &bus), -EADDRINUSE);
	ck_assert_ptr_eq(bus, BUS_SENTINEL);

	/* None of the failures above kept a participant slot: the other 15
	 * of th_bus()'s 16 all join, then the table is full. */
	for (int i = 1; i < 16; i++) {
		char self[16];

		snprintf(self, sizeof(self), "p%d", i);
		held[i] = join(name, self);
	}
	ck_assert_int_eq(lmn_bus_join(name, "one-too-many", &bus), -ENOSPC);
	ck_assert_ptr_eq(bus, BUS_SENTINEL);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(lmn_bus_leave(held[i]), 0);

	/* LMN_NAME_MAX bytes is a valid self. */
	bus = join(name, max_name('s'));
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

START_TEST(test_bus_leave_null)
{
	ck_assert_int_eq(lmn_bus_leave(NULL), 0);
	/* The cleanup helpers tolerate NULL too. */
	lmn_bus_leavep(NULL);
	{
		lmn_bus *b = NULL;
		lmn_conv *c = NULL;
		lmn_msg *m = NULL;

		lmn_bus_leavep(&b);
		lmn_conv_freep(&c);
		lmn_msg_releasep(&m);
		ck_assert_ptr_null(b);
		ck_assert_ptr_null(c);
		ck_assert_ptr_null(m);
	}
}
END_TEST

START_TEST(test_bus_serve_args)
{
	const char *name = th_bus(4, 4, MAXMSG);
	lmn_bus *srv = join(name, "srv"), *cli = join(name, "cli");
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_conv *conv = CONV_SENTINEL;

	ck_assert_int_eq(lmn_bus_serve(NULL, "svc"), -EINVAL);
	ck_assert_int_eq(lmn_bus_serve(srv, NULL), -EINVAL);
	FOR_BAD_NAMES(b) {
		ck_assert_msg(lmn_bus_serve(srv, b->name) == b->err, "bad name #%d",
			      (int)(b - bad_names_tab));
	}
	/* No failed call took a service slot: all LMN_SERVICES_MAX fit. */
	for (int i = 0; i < LMN_SERVICES_MAX; i++) {
		char svc[16];

		snprintf(svc, sizeof(svc), "svc%d", i);
		ck_assert_int_eq(lmn_bus_serve(srv, svc), 0);
	}
	/* Serving again what is served is not an error; one more is. */
	ck_assert_int_eq(lmn_bus_serve(srv, "svc0"), 0);
	ck_assert_int_eq(lmn_bus_serve(srv, "svc-extra"), -ENOSPC);
	ck_assert_int_eq(lmn_conv_open(cli, "svc-extra", &cfg, &conv), -ENOENT);
	ck_assert_ptr_eq(conv, CONV_SENTINEL);
	conv = open_conv(cli, "svc7");
	ck_assert_int_eq(lmn_conv_free(conv), 0);

	ck_assert_int_eq(lmn_bus_leave(cli), 0);
	ck_assert_int_eq(lmn_bus_leave(srv), 0);

	/* LMN_NAME_MAX bytes is a valid service, and reachable. */
	srv = join(name, "srv");
	cli = join(name, "cli");
	ck_assert_int_eq(lmn_bus_serve(srv, max_name('v')), 0);
	conv = open_conv(cli, max_name('v'));
	ck_assert_int_eq(lmn_conv_free(conv), 0);
	ck_assert_int_eq(lmn_bus_leave(cli), 0);
	ck_assert_int_eq(lmn_bus_leave(srv), 0);
}
END_TEST

START_TEST(test_bus_set_spin_args)
{
	const char *name = th_bus(4, 4, MAXMSG);
	lmn_bus *bus = join(name, "me");

	ck_assert_int_eq(lmn_bus_set_spin(NULL, 0), -EINVAL);
	ck_assert_int_eq(lmn_bus_set_spin(NULL, 1000), -EINVAL);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 1000000001u), -EINVAL);
	ck_assert_int_eq(lmn_bus_set_spin(bus, UINT32_MAX), -EINVAL);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 0), 0);
	ck_assert_int_eq(lmn_bus_set_spin(bus, 1000000000u), 0);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

/* Names that are not NUL-terminated within LMN_NAME_MAX + 1 bytes must be
 * refused without reading past those bytes (the buffer is exactly that
 * long, so AddressSanitizer catches any over-read). */
START_TEST(test_names_unterminated)
{
	const char *name = th_bus(4, 4, MAXMSG);
	char *raw = malloc(LMN_NAME_MAX + 1);
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_bus *bus = BUS_SENTINEL, *me;
	lmn_conv *conv = CONV_SENTINEL;

	ck_assert_ptr_nonnull(raw);
	memset(raw, 'z', LMN_NAME_MAX + 1);
	ck_assert_int_eq(lmn_bus_create(raw, NULL), -ENAMETOOLONG);
	ck_assert_int_eq(lmn_bus_unlink(raw), -ENAMETOOLONG);
	ck_assert_int_eq(lmn_bus_join(raw, "me", &bus), -ENAMETOOLONG);
	ck_assert_int_eq(lmn_bus_join(name, raw, &bus), -ENAMETOOLONG);
	ck_assert_ptr_eq(bus, BUS_SENTINEL);
	me = join(name, "me");
	ck_assert_int_eq(lmn_bus_serve(me, raw), -ENAMETOOLONG);
	ck_assert_int_eq(lmn_conv_open(me, raw, &cfg, &conv), -ENAMETOOLONG);
	ck_assert_ptr_eq(conv, CONV_SENTINEL);
	ck_assert_int_eq(lmn_bus_leave(me), 0);
	free(raw);
}
END_TEST

/* LIMINAL_DIR too long for a path, or missing: refused, nothing made. */
START_TEST(test_bus_dir_bad)
{
	char *saved = strdup(getenv("LIMINAL_DIR"));
	const char *name = th_bus_name();
	char *longdir = malloc(8193);
	lmn_bus *bus = BUS_SENTINEL;

	ck_assert_ptr_nonnull(saved);
	ck_assert_ptr_nonnull(longdir);
	memset(longdir, 'd', 8192);
	longdir[0] = '/';
	longdir[8192] = '\0';
	ck_assert_int_eq(setenv("LIMINAL_DIR", longdir, 1), 0);
	ck_assert_int_eq(lmn_bus_create(name, NULL), -ENAMETOOLONG);
	ck_assert_int_eq(lmn_bus_join(name, "me", &bus), -ENAMETOOLONG);
	ck_assert_ptr_eq(bus, BUS_SENTINEL);
	ck_assert_int_eq(lmn_bus_unlink(name), -ENAMETOOLONG);

	ck_assert_int_eq(setenv("LIMINAL_DIR", "/nonexistent-liminal-test-dir/x", 1), 0);
	ck_assert_int_eq(lmn_bus_create(name, NULL), -ENOENT);
	ck_assert_int_eq(lmn_bus_join(name, "me", &bus), -ENOENT);
	ck_assert_ptr_eq(bus, BUS_SENTINEL);
	ck_assert_int_eq(lmn_bus_unlink(name), -ENOENT);

	ck_assert_int_eq(setenv("LIMINAL_DIR", saved, 1), 0);
	ck_assert_int_eq(dir_entries(), 0);
	free(longdir);
	free(saved);
}
END_TEST

/* ---- conversations: open, close, free, state ---------------------------- */

START_TEST(test_conv_open_args)
{
	const char *name = th_bus(2, 4, MAXMSG);
	lmn_bus *bus = join(name, "me"), *gone;
	struct lmn_conv_config ok = th_cfg(LMN_POLICY_FAIL), cfg;
	lmn_conv *conv = CONV_SENTINEL, *a, *b;

	ck_assert_int_eq(lmn_conv_open(NULL, NULL, &ok, &conv), -EINVAL);
	ck_assert_int_eq(lmn_conv_open(bus, NULL, NULL, &conv), -EINVAL);
	ck_assert_int_eq(lmn_conv_open(bus, NULL, &ok, NULL), -EINVAL);
	ck_assert_ptr_eq(conv, CONV_SENTINEL);

	/* Policies: there is no default, and nothing outside 1..3. */
	{
		static const int bad_policy[] = {0, 4, 5, 255, -1, INT_MAX};

		for (size_t i = 0; i < sizeof(bad_policy) / sizeof(bad_policy[0]); i++) {
			cfg = ok;
			cfg.policy = (enum lmn_policy)bad_policy[i];
			ck_assert_msg(lmn_conv_open(bus, NULL, &cfg, &conv) == -EINVAL,
				      "policy %d accepted", bad_policy[i]);
			ck_assert_ptr_eq(conv, CONV_SENTINEL);
		}
		cfg = (struct lmn_conv_config){0};
		ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &conv), -EINVAL);
		ck_assert_ptr_eq(conv, CONV_SENTINEL);
	}
	/* Negative lifetimes. */
	{
		static const int32_t bad_timeout[] = {-1, -2, -1000, INT32_MIN};

		for (size_t i = 0; i < sizeof(bad_timeout) / sizeof(bad_timeout[0]); i++) {
			cfg = ok;
			cfg.timeout_ms = bad_timeout[i];
			ck_assert_msg(lmn_conv_open(bus, NULL, &cfg, &conv) == -EINVAL,
				      "timeout_ms %d accepted", (int)bad_timeout[i]);
			ck_assert_ptr_eq(conv, CONV_SENTINEL);
		}
	}
	/* Every reserved word must be zero. */
	for (size_t i = 0; i < sizeof(ok.reserved) / sizeof(ok.reserved[0]); i++) {
		cfg = ok;
		cfg.reserved[i] = i % 2 ? 0x80000000u : 1u;
		ck_assert_msg(lmn_conv_open(bus, NULL, &cfg, &conv) == -EINVAL,
			      "reserved[%zu] accepted", i);
		ck_assert_ptr_eq(conv, CONV_SENTINEL);
	}
	/* Bad target names. */
	FOR_BAD_NAMES(bn) {
		ck_assert_msg(lmn_conv_open(bus, bn->name, &ok, &conv) == bn->err,
			      "bad name #%d", (int)(bn - bad_names_tab));
		ck_assert_ptr_eq(conv, CONV_SENTINEL);
	}
	/* Unknown targets: nobody by that name, nobody serving it, and a
	 * participant that has left. */
	ck_assert_int_eq(lmn_conv_open(bus, "nobody", &ok, &conv), -ENOENT);
	ck_assert_int_eq(lmn_conv_open(bus, max_name('q'), &ok, &conv), -ENOENT);
	gone = join(name, "gone");
	ck_assert_int_eq(lmn_bus_serve(gone, "gone-svc"), 0);
	ck_assert_int_eq(lmn_bus_leave(gone), 0);
	ck_assert_int_eq(lmn_conv_open(bus, "gone", &ok, &conv), -ENOENT);
	ck_assert_int_eq(lmn_conv_open(bus, "gone-svc", &ok, &conv), -ENOENT);
	ck_assert_ptr_eq(conv, CONV_SENTINEL);

	/* No failure above kept a conversation slot: both of the bus's two
	 * open, then it is full, and a freed slot is usable again. */
	a = open_conv(bus, NULL);
	b = open_conv(bus, NULL);
	ck_assert_int_eq(lmn_conv_open(bus, NULL, &ok, &conv), -ENOSPC);
	ck_assert_ptr_eq(conv, CONV_SENTINEL);
	ck_assert_int_eq(lmn_conv_free(a), 0);
	a = open_conv(bus, NULL);
	/* The largest lifetime is fine. */
	ck_assert_int_eq(lmn_conv_free(b), 0);
	cfg = ok;
	cfg.timeout_ms = INT32_MAX;
	cfg.policy = LMN_POLICY_COMPENSATE;
	ck_assert_int_eq(lmn_conv_open(bus, NULL, &cfg, &b), 0);
	ck_assert_int_eq(state_of(b).policy, LMN_POLICY_COMPENSATE);
	ck_assert_uint_ne(state_of(b).deadline_ns, 0);

	ck_assert_int_eq(lmn_conv_free(a), 0);
	ck_assert_int_eq(lmn_conv_free(b), 0);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

START_TEST(test_conv_null_handles)
{
	struct lmn_conv_info info, copy;
	char buf[8] = "sentinl";
	const char *name = th_bus(4, 4, MAXMSG);
	lmn_bus *bus = join(name, "me");
	lmn_conv *conv = open_conv(bus, NULL);

	ck_assert_int_eq(lmn_conv_close(NULL), -EINVAL);
	ck_assert_int_eq(lmn_conv_free(NULL), 0);
	memset(&info, 0x5a, sizeof(info));
	copy = info;
	ck_assert_int_eq(lmn_conv_state(NULL, &info), -EINVAL);
	ck_assert_mem_eq(&info, &copy, sizeof(info));
	ck_assert_int_eq(lmn_conv_state(conv, NULL), -EINVAL);
	ck_assert_int_eq(lmn_send(NULL, "x", 1, 0), -EINVAL);
	ck_assert_int_eq(lmn_send(NULL, NULL, 0, 0), -EINVAL);
	ck_assert_int_eq(lmn_recv(NULL, buf, sizeof(buf), 0), -EINVAL);
	ck_assert_int_eq(lmn_recv(NULL, NULL, 0, -1), -EINVAL);
	ck_assert_int_eq(lmn_call(NULL, "x", 1, buf, sizeof(buf), 0), -EINVAL);
	ck_assert_mem_eq(buf, "sentinl", sizeof(buf));

	/* None of it touched the real conversation. */
	info = state_of(conv);
	ck_assert_int_eq(info.phase, LMN_PHASE_CREATED);
	ck_assert_uint_eq(info.sent, 0);
	ck_assert_int_eq(lmn_conv_free(conv), 0);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

/* ---- send --------------------------------------------------------------- */

START_TEST(test_send_args)
{
	static const unsigned int bad_flags[] = {0x2u, 0x4u, 0x100u, 0x80000000u, ~0u,
						 LMN_SEND_NONBLOCK | 0x2u};
	const char *name = th_bus(4, 4, MAXMSG);
	lmn_bus *bus = join(name, "me");
	lmn_conv *conv = open_conv(bus, NULL);
	char big[MAXMSG + 1], out[MAXMSG + 1];

	memset(big, 'x', sizeof(big));
	ck_assert_int_eq(lmn_send(conv, NULL, 1, 0), -EINVAL);
	ck_assert_int_eq(lmn_send(conv, NULL, SIZE_MAX, 0), -EINVAL);
	for (size_t i = 0; i < sizeof(bad_flags) / sizeof(bad_flags[0]); i++)
		ck_assert_msg(lmn_send(conv, "x", 1, bad_flags[i]) == -EINVAL, "flags %#x accepted",
			      bad_flags[i]);
	ck_assert_int_eq(lmn_send(conv, big, MAXMSG + 1, 0), -EMSGSIZE);
	ck_assert_int_eq(lmn_send(conv, big, MAXMSG + 1, LMN_SEND_NONBLOCK), -EMSGSIZE);
	ck_assert_int_eq(lmn_send(conv, big, SIZE_MAX, 0), -EMSGSIZE);
	ck_assert_int_eq(lmn_send(conv, big, (size_t)UINT32_MAX + 2, 0), -EMSGSIZE);

	/* Nothing was sent. */
	ck_assert_uint_eq(state_of(conv).sent, 0);
	ck_assert_int_eq(lmn_recv(conv, out, sizeof(out), 0), -ETIMEDOUT);

	/* The valid edges: an empty message from NULL, and exactly the
	 * largest message. */
	ck_assert_int_eq(lmn_send(conv, NULL, 0, 0), 0);
	ck_assert_int_eq(lmn_send(conv, big, MAXMSG, LMN_SEND_NONBLOCK), 0);
	ck_assert_int_eq(lmn_recv(conv, NULL, 0, 0), 0);
	ck_assert_int_eq(lmn_recv(conv, out, sizeof(out), 0), MAXMSG);
	ck_assert_mem_eq(out, big, MAXMSG);
	ck_assert_uint_eq(state_of(conv).sent, 2);

	/* A full ring with LMN_SEND_NONBLOCK says so at once, sends nothing. */
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(lmn_send(conv, "f", 1, LMN_SEND_NONBLOCK), 0);
	ck_assert_int_eq(lmn_send(conv, "f", 1, LMN_SEND_NONBLOCK), -EAGAIN);
	ck_assert_uint_eq(state_of(conv).sent, 6);

	ck_assert_int_eq(lmn_conv_free(conv), 0);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

/* A send refused for its arguments is not a send: it must not move the
 * conversation out of CREATED ("the first send or receive activates"). */
START_TEST(test_send_refused_no_activation)
{
	const char *name = th_bus(4, 4, MAXMSG);
	lmn_bus *bus = join(name, "me");
	lmn_conv *conv = open_conv(bus, NULL);
	char big[MAXMSG + 1];

	memset(big, 'x', sizeof(big));
	ck_assert_int_eq(lmn_send(conv, "x", 1, 0x2u), -EINVAL);
	ck_assert_int_eq(state_of(conv).phase, LMN_PHASE_CREATED);
	ck_assert_int_eq(lmn_send(conv, big, sizeof(big), 0), -EMSGSIZE);
	ck_assert_int_eq(state_of(conv).phase, LMN_PHASE_CREATED);
	ck_assert_int_eq(lmn_conv_free(conv), 0);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

/* ---- recv --------------------------------------------------------------- */

START_TEST(test_recv_args)
{
	const char *name = th_bus(4, 4, MAXMSG);
	lmn_bus *bus = join(name, "me");
	lmn_conv *conv = open_conv(bus, NULL);
	char buf[32], pattern[32];
	struct lmn_conv_info info;

	memset(pattern, 0xa5, sizeof(pattern));
	memcpy(buf, pattern, sizeof(buf));
	ck_assert_int_eq(lmn_recv(conv, NULL, 1, 0), -EINVAL);
	ck_assert_int_eq(lmn_recv(conv, NULL, SIZE_MAX, 0), -EINVAL);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), -2), -EINVAL);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), INT_MIN), -EINVAL);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), -ETIMEDOUT);
	ck_assert_mem_eq(buf, pattern, sizeof(buf));

	/* Too small a buffer: -EMSGSIZE, the buffer untouched, the message
	 * kept for a call with room. */
	ck_assert_int_eq(lmn_send(conv, "hello world", 11, 0), 0);
	ck_assert_int_eq(lmn_recv(conv, buf, 10, 0), -EMSGSIZE);
	ck_assert_mem_eq(buf, pattern, sizeof(buf));
	ck_assert_int_eq(lmn_recv(conv, buf, 1, -1), -EMSGSIZE);
	ck_assert_int_eq(lmn_recv(conv, NULL, 0, 0), -EMSGSIZE);
	ck_assert_mem_eq(buf, pattern, sizeof(buf));
	info = state_of(conv);
	ck_assert_uint_eq(info.received, 0);
	ck_assert_int_eq(lmn_recv(conv, buf, 11, 0), 11);
	ck_assert_mem_eq(buf, "hello world", 11);
	ck_assert_mem_eq(buf + 11, pattern + 11, sizeof(buf) - 11);
	ck_assert_uint_eq(state_of(conv).received, 1);
	/* Taken exactly once. */
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), -ETIMEDOUT);

	ck_assert_int_eq(lmn_conv_free(conv), 0);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

/* The same with a real server: a reply too large for the buffer stays in
 * the inbox until a receive with room takes it. */
START_TEST(test_recv_reply_too_big)
{
	struct duo d;
	char buf[64], pattern[64], reply[40];
	lmn_msg *m;

	duo_open(&d);
	memset(pattern, 0x3c, sizeof(pattern));
	memcpy(buf, pattern, sizeof(buf));
	for (size_t i = 0; i < sizeof(reply); i++)
		reply[i] = (char)('A' + i % 26);
	ck_assert_int_eq(lmn_send(d.conv, "q", 1, 0), 0);
	m = duo_next(&d);
	ck_assert_int_eq(lmn_reply(m, reply, sizeof(reply)), 0);
	ck_assert_int_eq(lmn_msg_release(m), 0);

	ck_assert_int_eq(lmn_recv(d.conv, buf, sizeof(reply) - 1, 0), -EMSGSIZE);
	ck_assert_int_eq(lmn_recv(d.conv, NULL, 0, TH_TIMEOUT_MS), -EMSGSIZE);
	ck_assert_mem_eq(buf, pattern, sizeof(buf));
	ck_assert_uint_eq(state_of(d.conv).received, 0);
	ck_assert_int_eq(lmn_recv(d.conv, buf, sizeof(buf), 0), (ssize_t)sizeof(reply));
	ck_assert_mem_eq(buf, reply, sizeof(reply));
	ck_assert_uint_eq(state_of(d.conv).received, 1);
	ck_assert_int_eq(lmn_recv(d.conv, buf, sizeof(buf), 0), -ETIMEDOUT);
	duo_close(&d);
}
END_TEST

/* ---- call --------------------------------------------------------------- */

START_TEST(test_call_args)
{
	const char *name = th_bus(4, 4, MAXMSG);
	lmn_bus *bus = join(name, "me");
	lmn_conv *conv = open_conv(bus, NULL);
	char buf[16], pattern[16], big[MAXMSG + 1];

	memset(big, 'y', sizeof(big));
	memset(pattern, 0x77, sizeof(pattern));
	memcpy(buf, pattern, sizeof(buf));
	ck_assert_int_eq(lmn_call(conv, NULL, 1, buf, sizeof(buf), 0), -EINVAL);
	ck_assert_int_eq(lmn_call(conv, "x", 1, NULL, 1, 0), -EINVAL);
	ck_assert_int_eq(lmn_call(conv, "x", 1, buf, sizeof(buf), -2), -EINVAL);
	ck_assert_int_eq(lmn_call(conv, "x", 1, buf, sizeof(buf), INT_MIN), -EINVAL);
	/* A buffering conversation answers with the request itself: a
	 * buffer smaller than the request can never hold the answer. */
	ck_assert_int_eq(lmn_call(conv, "abcdef", 6, buf, 5, 0), -EMSGSIZE);
	ck_assert_int_eq(lmn_call(conv, big, sizeof(big), big, sizeof(big), 0), -EMSGSIZE);
	ck_assert_int_eq(lmn_call(conv, big, SIZE_MAX, buf, sizeof(buf), 0), -EMSGSIZE);
	ck_assert_mem_eq(buf, pattern, sizeof(buf));
	ck_assert_uint_eq(state_of(conv).sent, 0);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), -ETIMEDOUT);

	/* And the valid edges. */
	ck_assert_int_eq(lmn_call(conv, "ping", 4, buf, 4, 0), 4);
	ck_assert_mem_eq(buf, "ping", 4);
	ck_assert_int_eq(lmn_call(conv, NULL, 0, NULL, 0, 0), 0);
	ck_assert_int_eq(lmn_conv_free(conv), 0);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

START_TEST(test_call_oversize_with_server)
{
	const char *name = th_bus(4, 4, MAXMSG);
	struct th_echo e;
	pid_t pid = echo_up(&e, name);
	lmn_bus *bus = join(name, "cli");
	lmn_conv *conv = open_conv(bus, "echo-svc");
	char big[MAXMSG + 1], buf[MAXMSG], pattern[MAXMSG], req[32];

	memset(big, 'z', sizeof(big));
	memset(pattern, 0x11, sizeof(pattern));
	memcpy(buf, pattern, sizeof(buf));
	for (size_t i = 0; i < sizeof(req); i++)
		req[i] = (char)('a' + i % 26);

	/* A request over the bus's maximum is refused and not sent. */
	ck_assert_int_eq(lmn_call(conv, big, sizeof(big), buf, sizeof(buf), TH_TIMEOUT_MS),
			 -EMSGSIZE);
	ck_assert_int_eq(lmn_call(conv, big, SIZE_MAX, buf, sizeof(buf), TH_TIMEOUT_MS), -EMSGSIZE);
	ck_assert_uint_eq(state_of(conv).sent, 0);
	ck_assert_mem_eq(buf, pattern, sizeof(buf));

	/* A reply larger than the buffer: -EMSGSIZE, buffer untouched, the
	 * reply kept for the next receive. */
	ck_assert_int_eq(lmn_call(conv, req, sizeof(req), buf, sizeof(req) - 1, TH_TIMEOUT_MS),
			 -EMSGSIZE);
	ck_assert_mem_eq(buf, pattern, sizeof(buf));
	ck_assert_uint_eq(state_of(conv).sent, 1);
	ck_assert_uint_eq(state_of(conv).received, 0);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), TH_TIMEOUT_MS), (ssize_t)sizeof(req));
	ck_assert_mem_eq(buf, req, sizeof(req));

	/* The conversation is still good; the largest request goes through. */
	ck_assert_int_eq(lmn_call(conv, big, MAXMSG, buf, sizeof(buf), TH_TIMEOUT_MS), MAXMSG);
	ck_assert_mem_eq(buf, big, MAXMSG);

	ck_assert_int_eq(lmn_conv_close(conv), 0);
	ck_assert_int_eq(th_wait(pid, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(lmn_conv_free(conv), 0);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

/* ---- closed conversations ----------------------------------------------- */

static void assert_closed_refuses(lmn_conv *conv)
{
	char buf[16];

	ck_assert_int_eq(lmn_send(conv, "x", 1, 0), -EPIPE);
	ck_assert_int_eq(lmn_send(conv, "x", 1, LMN_SEND_NONBLOCK), -EPIPE);
	ck_assert_int_eq(lmn_send(conv, NULL, 0, 0), -EPIPE);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), -EPIPE);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), -1), -EPIPE);
	ck_assert_int_eq(lmn_call(conv, "x", 1, buf, sizeof(buf), -1), -EPIPE);
	/* Bad arguments are still bad arguments. */
	ck_assert_int_eq(lmn_send(conv, "x", 1, 0x2u), -EINVAL);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), -2), -EINVAL);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
}

START_TEST(test_closed_buffering)
{
	const char *name = th_bus(4, 4, MAXMSG);
	lmn_bus *bus = join(name, "me");
	lmn_conv *conv = open_conv(bus, NULL);
	struct lmn_conv_info info;
	char buf[8];

	/* One message read, one left behind at the close. */
	ck_assert_int_eq(lmn_send(conv, "one", 3, 0), 0);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), 3);
	ck_assert_int_eq(lmn_send(conv, "two", 3, 0), 0);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	assert_closed_refuses(conv);
	info = state_of(conv);
	ck_assert_int_eq(info.phase, LMN_PHASE_CLOSED);
	ck_assert_int_eq(info.policy, LMN_POLICY_FAIL);
	ck_assert_uint_eq(info.sent, 2);
	ck_assert_uint_eq(info.received, 1);
	ck_assert_uint_eq(info.n_participants, 0);
	ck_assert_uint_ne(info.id, 0);
	ck_assert_int_eq(lmn_conv_free(conv), 0);

	/* Closed before anything happened: CREATED -> ACTIVE -> ... CLOSED. */
	conv = open_conv(bus, NULL);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	assert_closed_refuses(conv);
	ck_assert_int_eq(state_of(conv).phase, LMN_PHASE_CLOSED);
	ck_assert_int_eq(lmn_conv_free(conv), 0);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

START_TEST(test_closed_served)
{
	const char *name = th_bus(4, 4, MAXMSG);
	struct th_echo e;
	pid_t pid = echo_up(&e, name);
	lmn_bus *bus = join(name, "cli");
	lmn_conv *conv = open_conv(bus, "echo-svc");
	struct lmn_conv_info info;
	char buf[8];

	ck_assert_int_eq(lmn_call(conv, "abc", 3, buf, sizeof(buf), TH_TIMEOUT_MS), 3);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	assert_closed_refuses(conv);
	info = state_of(conv);
	ck_assert_int_eq(info.phase, LMN_PHASE_CLOSED);
	ck_assert_uint_eq(info.sent, 1);
	ck_assert_uint_eq(info.received, 1);
	ck_assert_uint_eq(info.n_participants, 2);
	ck_assert_str_eq(info.participants[0].name, "cli");
	ck_assert_str_eq(info.participants[1].name, "echo");
	ck_assert_int_eq(info.participants[1].pid, pid);
	/* The server saw the close and left. */
	ck_assert_int_eq(th_wait(pid, TH_TIMEOUT_MS), 0);
	ck_assert_int_eq(state_of(conv).phase, LMN_PHASE_CLOSED);
	assert_closed_refuses(conv);
	ck_assert_int_eq(lmn_conv_free(conv), 0);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

/* A conversation handle outlives its bus: leaving closed it; state still
 * answers, close and free still succeed, the rest is refused. */
START_TEST(test_conv_after_leave)
{
	const char *name = th_bus(4, 4, MAXMSG);
	lmn_bus *bus = join(name, "me");
	lmn_conv *conv = open_conv(bus, NULL);
	char buf[8];

	ck_assert_int_eq(lmn_send(conv, "x", 1, 0), 0);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
	ck_assert_int_eq(lmn_send(conv, "x", 1, 0), -ESTALE);
	ck_assert_int_eq(lmn_recv(conv, buf, sizeof(buf), 0), -ESTALE);
	ck_assert_int_eq(lmn_call(conv, "x", 1, buf, sizeof(buf), 0), -ESTALE);
	ck_assert_int_eq(lmn_call(conv, "xyz", 3, buf, 1, 0), -ESTALE);
	ck_assert_int_eq(lmn_conv_close(conv), 0);
	ck_assert_int_eq(state_of(conv).phase, LMN_PHASE_CLOSED);
	ck_assert_uint_eq(state_of(conv).sent, 1);
	ck_assert_int_eq(lmn_conv_free(conv), 0);
}
END_TEST

/* ---- serving side ------------------------------------------------------- */

START_TEST(test_next_args)
{
	const char *name = th_bus(4, 4, MAXMSG);
	lmn_bus *bus = join(name, "srv");
	lmn_msg *m = MSG_SENTINEL;

	ck_assert_int_eq(lmn_bus_serve(bus, "svc"), 0);
	ck_assert_int_eq(lmn_next(NULL, &m, 0), -EINVAL);
	ck_assert_int_eq(lmn_next(NULL, &m, -1), -EINVAL);
	ck_assert_int_eq(lmn_next(bus, NULL, 0), -EINVAL);
	ck_assert_int_eq(lmn_next(bus, &m, -2), -EINVAL);
	ck_assert_int_eq(lmn_next(bus, &m, INT_MIN), -EINVAL);
	ck_assert_ptr_eq(m, MSG_SENTINEL);
	/* Nothing to hand out. */
	ck_assert_int_eq(lmn_next(bus, &m, 0), -ETIMEDOUT);
	ck_assert_int_eq(lmn_next(bus, &m, 1), -ETIMEDOUT);
	ck_assert_ptr_eq(m, MSG_SENTINEL);
	ck_assert_int_eq(lmn_bus_leave(bus), 0);
}
END_TEST

START_TEST(test_reply_args)
{
	struct duo d;
	char big[MAXMSG + 1], buf[MAXMSG];
	lmn_msg *m;

	memset(big, 'r', sizeof(big));
	duo_open(&d);
	ck_assert_int_eq(lmn_send(d.conv, "req", 3, 0), 0);
	m = duo_next(&d);

	/* The accessors on a real request. */
	ck_assert_int_eq(lmn_msg_kind(m), LMN_MSG_REQUEST);
	ck_assert_uint_eq(lmn_msg_size(m), 3);
	ck_assert_mem_eq(lmn_msg_data(m), "req", 3);
	ck_assert_uint_eq(lmn_msg_flags(m), 0);
	ck_assert_str_eq(lmn_msg_sender(m), "cli");
	ck_assert_uint_eq(lmn_msg_conv_id(m), state_of(d.conv).id);

	ck_assert_int_eq(lmn_reply(NULL, "x", 1), -EINVAL);
	ck_assert_int_eq(lmn_reply(NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(lmn_reply(m, NULL, 1), -EINVAL);
	ck_assert_int_eq(lmn_reply(m, NULL, SIZE_MAX), -EINVAL);
	ck_assert_int_eq(lmn_reply(m, big, MAXMSG + 1), -EMSGSIZE);
	ck_assert_int_eq(lmn_reply(m, big, SIZE_MAX), -EMSGSIZE);
	ck_assert_int_eq(lmn_reply(m, big, (size_t)UINT32_MAX + 2), -EMSGSIZE);
	/* Nothing reached the client. */
	ck_assert_int_eq(lmn_recv(d.conv, buf, sizeof(buf), 0), -ETIMEDOUT);

	/* The valid edges: empty from NULL, and the largest. */
	ck_assert_int_eq(lmn_reply(m, NULL, 0), 0);
	ck_assert_int_eq(lmn_reply(m, big, MAXMSG), 0);
	ck_assert_int_eq(lmn_recv(d.conv, NULL, 0, 0), 0);
	ck_assert_int_eq(lmn_recv(d.conv, buf, sizeof(buf), 0), MAXMSG);
	ck_assert_mem_eq(buf, big, MAXMSG);
	ck_assert_int_eq(lmn_msg_release(m), 0);
	duo_close(&d);
}
END_TEST

START_TEST(test_reply_after_close_and_on_notice)
{
	struct duo d;
	lmn_msg *m;

	duo_open(&d);
	ck_assert_int_eq(lmn_send(d.conv, "req", 3, 0), 0);
	ck_assert_int_eq(lmn_conv_close(d.conv), 0);

	/* The request sent before the close is still handed out, but its
	 * conversation is closed: the reply has nowhere to go. */
	m = duo_next(&d);
	ck_assert_int_eq(lmn_msg_kind(m), LMN_MSG_REQUEST);
	ck_assert_int_eq(lmn_reply(m, "rep", 3), -EPIPE);
	ck_assert_int_eq(lmn_msg_release(m), 0);

	/* Then the close notice: not a request, so no reply of any kind. */
	m = duo_next(&d);
	ck_assert_int_eq(lmn_msg_kind(m), LMN_MSG_CLOSED);
	ck_assert_int_eq(lmn_reply(m, "x", 1), -EINVAL);
	ck_assert_int_eq(lmn_reply(m, NULL, 0), -EINVAL);
	ck_assert_int_eq(lmn_reply(m, NULL, 1), -EINVAL);
	ck_assert_uint_eq(lmn_msg_size(m), 0);
	ck_assert_ptr_nonnull(lmn_msg_data(m));
	ck_assert_uint_eq(lmn_msg_flags(m), 0);
	ck_assert_str_eq(lmn_msg_sender(m), "cli");
	ck_assert_uint_eq(lmn_msg_conv_id(m), state_of(d.conv).id);
	ck_assert_int_eq(lmn_msg_release(m), 0);

	/* And nothing after it. */
	m = MSG_SENTINEL;
	ck_assert_int_eq(lmn_next(d.srv, &m, 0), -ETIMEDOUT);
	ck_assert_ptr_eq(m, MSG_SENTINEL);
	duo_close(&d);
}
END_TEST

START_TEST(test_msg_null)
{
	ck_assert_int_eq(lmn_msg_release(NULL), 0);
	ck_assert_ptr_null(lmn_msg_data(NULL));
	ck_assert_uint_eq(lmn_msg_size(NULL), 0);
	ck_assert_int_eq(lmn_msg_kind(NULL), -EINVAL);
	ck_assert_uint_eq(lmn_msg_flags(NULL), 0);
	ck_assert_uint_eq(lmn_msg_conv_id(NULL), 0);
	ck_assert_ptr_null(lmn_msg_sender(NULL));
}
END_TEST

/* A message handle held across lmn_bus_leave(): leaving releases what the
 * server held and detaches the handle: it stays allocated, reads as empty,
 * refuses a reply as stale, and lmn_msg_release() frees it without touching
 * the bus that is gone.  Run in a child so that a crash is
 * reported as a failure and the fixture still cleans up. */
struct after_leave {
	const char *bus;
	int reply_first;
};

static int msg_after_leave_child(void *arg)
{
	const struct after_leave *a = arg;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	lmn_bus *srv, *cli;
	lmn_conv *conv;
	lmn_msg *m;

	if (lmn_bus_join(a->bus, "srv", &srv) < 0 || lmn_bus_join(a->bus, "cli", &cli) < 0 ||
	    lmn_bus_serve(srv, "svc") < 0 || lmn_conv_open(cli, "svc", &cfg, &conv) < 0)
		return 10;
	if (lmn_send(conv, "req", 3, 0) < 0 || lmn_next(srv, &m, TH_TIMEOUT_MS) < 0)
		return 11;
	if (lmn_bus_leave(srv) != 0)
		return 12;
	/* Detached: still a request from "cli", but empty, since the segment
	 * its bytes lived in is gone from this participant. */
	if (lmn_msg_kind(m) != LMN_MSG_REQUEST || lmn_msg_size(m) != 0 || lmn_msg_data(m) ||
	    strcmp(lmn_msg_sender(m), "cli") != 0)
		return 13;
	if (a->reply_first && lmn_reply(m, "rep", 3) != -ESTALE)
		return 20;
	if (lmn_msg_release(m) != 0)
		return 21;
	if (lmn_conv_free(conv) != 0 || lmn_bus_leave(cli) != 0)
		return 22;
	return 0;
}

static void run_after_leave(int reply_first)
{
	struct after_leave a = {th_bus(4, 4, MAXMSG), reply_first};
	int rc = th_wait(th_fork(msg_after_leave_child, &a), TH_TIMEOUT_MS);

	ck_assert_msg(rc == 0, "child %s (%d)",
		      rc == -1    ? "crashed (signal)"
		      : rc == -2  ? "hung"
		      : rc == 1   ? "failed (sanitizer report?)"
		      : rc == 13  ? "accessors on a detached message are wrong"
		      : rc == 20  ? "lmn_reply after leave did not return -ESTALE"
		      : rc == 21  ? "lmn_msg_release after leave did not return 0"
				  : "failed",
		      rc);
}

START_TEST(test_msg_release_after_leave)
{
	run_after_leave(0);
}
END_TEST

START_TEST(test_msg_reply_after_leave)
{
	run_after_leave(1);
}
END_TEST

/* ---- misc --------------------------------------------------------------- */

START_TEST(test_wait_backend)
{
	const char *env = getenv("LIMINAL_WAIT");
	const char *b = lmn_wait_backend();

	ck_assert_ptr_nonnull(b);
	ck_assert_msg(!strcmp(b, "io_uring") || !strcmp(b, "futex"), "backend %s", b);
	if (env && !strcmp(env, "futex"))
		ck_assert_str_eq(b, "futex");
	/* Chosen once: the answer does not change. */
	ck_assert_str_eq(lmn_wait_backend(), b);
}
END_TEST

static Suite *args_suite(void)
{
	Suite *s = suite_create("args");
	TCase *tc = tcase_create("args");

	tcase_add_checked_fixture(tc, th_setup, th_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_bus_create_names);
	tcase_add_test(tc, test_bus_create_config);
	tcase_add_test(tc, test_bus_unlink_and_join_unknown);
	tcase_add_test(tc, test_bus_not_a_file);
	tcase_add_test(tc, test_bus_join_args);
	tcase_add_test(tc, test_bus_leave_null);
	tcase_add_test(tc, test_bus_serve_args);
	tcase_add_test(tc, test_bus_set_spin_args);
	tcase_add_test(tc, test_names_unterminated);
	tcase_add_test(tc, test_bus_dir_bad);
	tcase_add_test(tc, test_conv_open_args);
	tcase_add_test(tc, test_conv_null_handles);
	tcase_add_test(tc, test_send_args);
	tcase_add_test(tc, test_send_refused_no_activation);
	tcase_add_test(tc, test_recv_args);
	tcase_add_test(tc, test_recv_reply_too_big);
	tcase_add_test(tc, test_call_args);
	tcase_add_test(tc, test_call_oversize_with_server);
	tcase_add_test(tc, test_closed_buffering);
	tcase_add_test(tc, test_closed_served);
	tcase_add_test(tc, test_conv_after_leave);
	tcase_add_test(tc, test_next_args);
	tcase_add_test(tc, test_reply_args);
	tcase_add_test(tc, test_reply_after_close_and_on_notice);
	tcase_add_test(tc, test_msg_null);
	tcase_add_test(tc, test_msg_release_after_leave);
	tcase_add_test(tc, test_msg_reply_after_leave);
	tcase_add_test(tc, test_wait_backend);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return th_run(args_suite());
}
