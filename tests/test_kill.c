/* SPDX-License-Identifier: MIT */
/*
 * kill -9 at many points leaves the bus whole.  Each round of the loop below
 * makes a fresh bus and real processes on it: two echo servers of one
 * service, a client calling on two conversations with the round's crash
 * policy, a process that watches the victim's exit, and the victim: one of
 * the two servers, or a client of its own that opens, sends, receives and
 * closes in a loop.  The victim tells us through a pipe when it reaches the
 * round's point (enum point); we wait a varying number of rounds of a busy
 * loop and kill it.  Then:
 *
 *  - every survivor finishes in bounded time, and exits 0;
 *  - the surviving client's conversation on a victim server ends as its
 *    policy says: FAIL, -ECONNRESET and phase FAILED; COMPENSATE,
 *    -ECONNRESET from receives with phase ACTIVE and the server CRASHED;
 *    ROUTE_NEXT, every call answered right, the conversation moved to the
 *    other server with the crash recorded.  Its other conversation, and every
 *    conversation when the victim is a client, never fails.  Short
 *    conversations to the victim server by name make it handle close
 *    notices too, and must fail the policy's way once it died;
 *  - the watch fires once with LMN_EXIT_CRASHED, a second wait says
 *    -EALREADY, a watch opened after the death replays the same exit, and
 *    the victim's name can be joined again at once.  Killed joining, the
 *    victim may never have had a name; killed leaving, it may have left;
 *  - once everybody left, lmn_bus_stat() shows no participant, conversation
 *    or cell in use, one crash (none if it left or never joined) and the
 *    clean leaves of the survivors.  Two leaks are allowed, of one
 *    participant slot each: a victim killed between claiming its slot and
 *    putting its name up (only its pid names it), and one killed leaving
 *    between logging its exit and giving its slot back, after the only
 *    process watching it had seen the exit and gone.  Nobody saw either
 *    death; the first joiner that finds the table full must get the slot
 *    back, which is checked.
 *
 * Survivors report through their exit code, one per kind of failure (the
 * E_* values below), and print what they saw to stderr.  A failed round is
 * reported, cleaned up, and the loop goes on, so that one run shows several
 * kill points that go wrong; the test fails at the end.
 *
 * To chase a failure: LMN_KILL_POINT=client-close runs only that point,
 * LMN_KILL_ROUNDS=N runs N rounds, LMN_KILL_MAX_FAILED=N goes on past N
 * failed rounds, and LMN_KILL_KEEP=DIR keeps the segment of each failed round.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* Rounds of the loop: every point with every policy, fifteen times over, with
 * the kill placed differently each time. */
#define ROUNDS (N_POINTS * 3 * 15)
/* Calls the surviving client makes at least, on each of its conversations. */
#define CALLS 12
/* Bound on every wait of a round: a survivor slower than this hangs. */
#define WAIT_MS 10000
/* Bound on one call. */
#define CALL_MS 5000
/* Stop the loop after this many failed rounds: each may cost timeouts. */
#define MAX_FAILED_ROUNDS 4

enum point {
	/* A server of the service is the victim. */
	SP_JOIN,     /* joining the bus */
	SP_NEXT,     /* waiting in lmn_next() */
	SP_HOLD,     /* holding a request, unanswered and unreleased */
	SP_REPLY,    /* replying */
	SP_ANSWERED, /* answered, the request not yet released */
	SP_CLOSED,   /* holding the notice that a client closed */
	/* A client of its own is the victim. */
	CP_JOIN,  /* joining the bus */
	CP_OPEN,  /* opening a conversation */
	CP_SEND,  /* sending requests */
	CP_RECV,  /* receiving replies */
	CP_CLOSE, /* closing the conversation */
	CP_LEAVE, /* leaving the bus with a conversation open */
	N_POINTS
};

static const char *const point_names[N_POINTS] = {
	"server-join", "server-next",  "server-hold",  "server-reply", "server-answered",
	"server-closed", "client-join", "client-open", "client-send",  "client-recv",
	"client-close",  "client-leave",
};

static const char *const policy_names[] = {"?", "FAIL", "ROUTE_NEXT", "COMPENSATE"};

/* Exit codes of the children. */
enum {
	/* echo servers, victim or not */
	E_SRV_JOIN = 10,
	E_SRV_SERVE,
	E_SRV_GO,
	E_SRV_NEXT,
	E_SRV_KIND,
	E_SRV_PEER_CRASHED, /* a crashed initiator where no client died */
	E_SRV_REDELIVERED,  /* a redelivery where nothing was rerouted */
	E_SRV_REPLY,
	E_SRV_BYE,
	E_SRV_SIZE,
	E_SRV_NOT_KILLED,
	/* the victim client */
	E_VIC_JOIN = 30,
	E_VIC_GO,
	E_VIC_OPEN,
	E_VIC_SEND,
	E_VIC_RECV,
	E_VIC_REPLY,
	E_VIC_CLOSE,
	E_VIC_NOT_KILLED,
	/* the surviving client */
	E_CLI_JOIN = 40,
	E_CLI_OPEN,
	E_CLI_STATE,
	E_CLI_BALANCE,       /* its two conversations did not go one to each server */
	E_CLI_CALL,          /* a call failed where no failure was due */
	E_CLI_REPLY,         /* a reply that is not the echo of its request */
	E_CLI_ROUTE_FAILED,  /* ROUTE_NEXT: a call failed with another server alive */
	E_CLI_ERRNO,         /* FAIL, COMPENSATE: the error was not -ECONNRESET */
	E_CLI_PHASE,         /* the phase after the crash is not the policy's */
	E_CLI_HEALTH,        /* the server is not shown CRASHED */
	E_CLI_RECORD,        /* the crash record is wrong */
	E_CLI_RECV_AFTER,    /* a receive after the crash did not say -ECONNRESET */
	E_CLI_SEND_AFTER,    /* a send after the crash did not say -ECONNRESET */
	E_CLI_TWICE,         /* a second failure */
	E_CLI_REOPEN,        /* a new conversation went to the dead server */
	E_CLI_NO_CRASH,      /* the victim server's death was never seen */
	E_CLI_ROUTED_STATE,  /* ROUTE_NEXT: state after the move is wrong */
	E_CLI_STRAY_CRASH,   /* a crash recorded on a conversation of a survivor */
	E_CLI_CHURN,         /* a short conversation to the victim server ended wrong */
	/* the watcher */
	E_W_JOIN = 60,
	E_W_OPEN,
	E_W_TIMEOUT,
	E_W_LEFT,
	E_W_OTHER,
	E_W_AGAIN,          /* a second lmn_watch_wait() did not say -EALREADY */
	E_W_FD_AGAIN,       /* the watch's fd readable after the one notification */
	E_W_REPLAY_OPEN,
	E_W_REPLAY,
	E_W_REPLAY_AGAIN,
	E_W_RESTART,        /* the victim's name could not be joined again */
	/* and what it saw, when more than one outcome is right */
	W_CRASHED = 0,
	W_NEVER_JOINED = 1, /* killed joining before its name was up */
	W_LEFT = 2,         /* killed after it had left */
	W_LEFT_EARLY = 3,   /* ... and we left before it was killed */
	/* the process that stops the servers */
	E_STOP_JOIN = 80,
	E_STOP_OPEN,
	E_STOP_CALL,
};

/* Names of the exit codes, for the report. */
#define NAME(e) [e] = #e
static const char *const exit_names[128] = {
	NAME(E_SRV_JOIN), NAME(E_SRV_SERVE), NAME(E_SRV_GO), NAME(E_SRV_NEXT),
	NAME(E_SRV_KIND), NAME(E_SRV_PEER_CRASHED), NAME(E_SRV_REDELIVERED),
	NAME(E_SRV_REPLY), NAME(E_SRV_BYE), NAME(E_SRV_SIZE), NAME(E_SRV_NOT_KILLED),
	NAME(E_VIC_JOIN), NAME(E_VIC_GO), NAME(E_VIC_OPEN), NAME(E_VIC_SEND),
	NAME(E_VIC_RECV), NAME(E_VIC_REPLY), NAME(E_VIC_CLOSE), NAME(E_VIC_NOT_KILLED),
	NAME(E_CLI_JOIN), NAME(E_CLI_OPEN), NAME(E_CLI_STATE), NAME(E_CLI_BALANCE),
	NAME(E_CLI_CALL), NAME(E_CLI_REPLY), NAME(E_CLI_ROUTE_FAILED), NAME(E_CLI_ERRNO),
	NAME(E_CLI_PHASE), NAME(E_CLI_HEALTH), NAME(E_CLI_RECORD), NAME(E_CLI_RECV_AFTER),
	NAME(E_CLI_SEND_AFTER), NAME(E_CLI_TWICE), NAME(E_CLI_REOPEN),
	NAME(E_CLI_NO_CRASH), NAME(E_CLI_ROUTED_STATE), NAME(E_CLI_STRAY_CRASH),
	NAME(E_CLI_CHURN), NAME(E_W_JOIN), NAME(E_W_OPEN), NAME(E_W_TIMEOUT),
	NAME(E_W_LEFT), NAME(E_W_OTHER), NAME(E_W_AGAIN), NAME(E_W_FD_AGAIN),
	NAME(E_W_REPLAY_OPEN), NAME(E_W_REPLAY), NAME(E_W_REPLAY_AGAIN), NAME(E_W_RESTART),
	NAME(E_STOP_JOIN), NAME(E_STOP_OPEN), NAME(E_STOP_CALL),
};
#undef NAME

static const char *exit_name(int code)
{
	if (code == -2)
		return "hung, killed";
	if (code == -1)
		return "killed by a signal";
	return code >= 0 && code < 128 && exit_names[code] ? exit_names[code] : "exit";
}


/* Everything a round's processes need; each child gets a copy at fork. */
struct round {
	int n;
	const char *bus;
	enum point point;
	enum lmn_policy policy;
	int at;          /* which request (server) or round (client) the point is at */
	uint32_t spins;  /* busy-loop rounds between the point and the kill */
	uint32_t lead;   /* the join victim: busy-loop rounds between the point and the join */
	bool server_victim;
	bool join;       /* the kill is during the victim's join */
	const char *victim;
	pid_t victim_pid;
	struct th_event ready[2], vready, go, at_point, never, armed, opened, killed;
};

struct server {
	struct round *r;
	const char *self;
	bool victim;
	struct th_event *ready;
};

static void busy(uint32_t spins)
{
	for (volatile uint32_t k = 0; k < spins; k++)
		;
}

static bool fired(struct th_event *e)
{
	struct pollfd p = {.fd = e->fd[0], .events = POLLIN};

	return poll(&p, 1, 0) == 1;
}

/* ------------------------------------------------------------------ */
/* The echo server: a survivor, or the victim when victim is set.      */

static int server_main(void *p)
{
	struct server *s = p;
	struct round *r = s->r;
	bool at_point = false;
	lmn_bus *bus;
	int taken = 0, closes = 0;

#define POINT(pt)                                                                  \
	do {                                                                       \
		if (s->victim && !at_point && r->point == (pt) && taken == r->at) { \
			at_point = true;                                           \
			th_event_fire(&r->at_point);                               \
		}                                                                  \
	} while (0)

	if (s->victim && r->point == SP_JOIN) {
		th_event_fire(&r->at_point);
		busy(r->lead);
	}
	if (lmn_bus_join(r->bus, s->self, &bus) < 0)
		return E_SRV_JOIN;
	if (lmn_bus_serve(bus, "echo") < 0)
		return E_SRV_SERVE;
	th_event_fire(s->ready);
	if (s->victim && th_event_await(&r->go, WAIT_MS) < 0)
		return E_SRV_GO;
	for (;;) {
		lmn_msg *m;
		int rc;

		POINT(SP_NEXT);
		rc = lmn_next(bus, &m, 2 * WAIT_MS);
		if (rc < 0) {
			fprintf(stderr, "round %d: %s: lmn_next: %s\n", r->n, s->self, strerror(-rc));
			return s->victim ? E_SRV_NOT_KILLED : E_SRV_NEXT;
		}
		if (lmn_msg_kind(m) == LMN_MSG_CLOSED) {
			/* Only the victim client can have died under a
			 * conversation of ours. */
			if ((lmn_msg_flags(m) & LMN_MSG_PEER_CRASHED) && r->server_victim)
				return E_SRV_PEER_CRASHED;
			if (s->victim && !at_point && r->point == SP_CLOSED && closes == r->at) {
				at_point = true;
				th_event_fire(&r->at_point);
			}
			lmn_msg_release(m);
			closes++;
			continue;
		}
		if (lmn_msg_kind(m) != LMN_MSG_REQUEST)
			return E_SRV_KIND;
		if ((lmn_msg_flags(m) & LMN_MSG_REDELIVERED) &&
		    !(r->server_victim && r->policy == LMN_POLICY_ROUTE_NEXT))
			return E_SRV_REDELIVERED;
		if (lmn_msg_size(m) == 4 && !memcmp(lmn_msg_data(m), "quit", 4) && !s->victim) {
			if (lmn_reply(m, "bye", 3) < 0)
				return E_SRV_BYE;
			lmn_msg_release(m);
			lmn_bus_leave(bus);
			return 0;
		}
		if (lmn_msg_size(m) != 12)
			return E_SRV_SIZE;
		if (s->victim && r->point == SP_HOLD && taken == r->at) {
			/* Hold it, unanswered and unreleased, until killed. */
			th_event_fire(&r->at_point);
			(void)th_event_await(&r->never, 2 * WAIT_MS);
			return E_SRV_NOT_KILLED;
		}
		POINT(SP_REPLY);
		rc = lmn_reply(m, lmn_msg_data(m), lmn_msg_size(m));
		/* Only the victim client leaves conversations we still answer
		 * on: it closed (-EPIPE) or died (-ECONNRESET). */
		if (rc < 0 && (r->server_victim || (rc != -EPIPE && rc != -ECONNRESET))) {
			fprintf(stderr, "round %d: %s: lmn_reply: %s\n", r->n, s->self, strerror(-rc));
			return E_SRV_REPLY;
		}
		POINT(SP_ANSWERED);
		lmn_msg_release(m);
		taken++;
	}
#undef POINT
}

/* ------------------------------------------------------------------ */
/* The victim client: open, send two, receive two, close, over and over. */

static int victim_client_main(void *p)
{
	struct round *r = p;
	struct lmn_conv_config cfg = th_cfg(r->policy);
	uint64_t end;
	bool at_point = false;
	lmn_bus *bus;

#define POINT(pt, round)                                                      \
	do {                                                                  \
		if (!at_point && r->point == (pt) && (round) == r->at) {      \
			at_point = true;                                      \
			th_event_fire(&r->at_point);                          \
		}                                                             \
	} while (0)

	if (r->point == CP_JOIN) {
		th_event_fire(&r->at_point);
		busy(r->lead);
	}
	if (lmn_bus_join(r->bus, "vic", &bus) < 0)
		return E_VIC_JOIN;
	th_event_fire(&r->vready);
	if (th_event_await(&r->go, WAIT_MS) < 0)
		return E_VIC_GO;
	end = th_now_ms() + 2 * WAIT_MS;
	for (int round = 0; th_now_ms() < end; round++) {
		lmn_conv *conv;
		int rc;

		POINT(CP_OPEN, round);
		rc = lmn_conv_open(bus, "echo", &cfg, &conv);
		if (rc < 0) {
			fprintf(stderr, "round %d: vic: open: %s\n", r->n, strerror(-rc));
			return E_VIC_OPEN;
		}
		POINT(CP_SEND, round);
		for (uint32_t k = 0; k < 2; k++) {
			uint32_t req[3] = {0x56494300u, (uint32_t)round, k};

			if (lmn_send(conv, req, sizeof(req), 0) < 0)
				return E_VIC_SEND;
		}
		POINT(CP_RECV, round);
		for (uint32_t k = 0; k < 2; k++) {
			uint32_t rep[3];
			ssize_t n = lmn_recv(conv, rep, sizeof(rep), CALL_MS);

			if (n != (ssize_t)sizeof(rep)) {
				fprintf(stderr, "round %d: vic: recv: %zd\n", r->n, n);
				return E_VIC_RECV;
			}
			if (rep[0] != 0x56494300u || rep[1] != (uint32_t)round || rep[2] != k)
				return E_VIC_REPLY;
		}
		if (r->point == CP_LEAVE && round == r->at) {
			/* Leave with the conversation open, and wait for
			 * the kill, which may come during the leave or after. */
			th_event_fire(&r->at_point);
			lmn_bus_leave(bus);
			(void)th_event_await(&r->never, 2 * WAIT_MS);
			return E_VIC_NOT_KILLED;
		}
		POINT(CP_CLOSE, round);
		if (lmn_conv_close(conv) < 0)
			return E_VIC_CLOSE;
		lmn_conv_free(conv);
	}
	return E_VIC_NOT_KILLED;
#undef POINT
}

/* ------------------------------------------------------------------ */
/* The surviving client.                                               */

static int conv_server(lmn_conv *conv, struct lmn_conv_info *info)
{
	return lmn_conv_state(conv, info) == 0 ? 0 : E_CLI_STATE;
}

/* A call on a conversation of the victim server failed with rc: is that
 * what FAIL or COMPENSATE promise? */
static int check_failed(struct round *r, lmn_conv *conv, ssize_t rc)
{
	bool fail = r->policy == LMN_POLICY_FAIL;
	struct lmn_conv_info info;
	char buf[16];

	if (rc != -ECONNRESET) {
		fprintf(stderr, "round %d: cli: %s call: %zd\n", r->n, policy_names[r->policy], rc);
		return E_CLI_ERRNO;
	}
	if (conv_server(conv, &info))
		return E_CLI_STATE;
	if (info.phase != (fail ? LMN_PHASE_FAILED : LMN_PHASE_ACTIVE)) {
		fprintf(stderr, "round %d: cli: %s phase %d\n", r->n, policy_names[r->policy],
			info.phase);
		return E_CLI_PHASE;
	}
	if (info.participants[1].health != LMN_HEALTH_CRASHED ||
	    strcmp(info.participants[1].name, r->victim) != 0) {
		fprintf(stderr, "round %d: cli: %s server %s health %d\n", r->n,
			policy_names[r->policy], info.participants[1].name,
			info.participants[1].health);
		return E_CLI_HEALTH;
	}
	if (info.n_crashes != 1 || strcmp(info.crashes[0].name, r->victim) != 0 ||
	    info.crashes[0].pid != r->victim_pid ||
	    info.crashes[0].action != (fail ? LMN_CRASH_FAILED : LMN_CRASH_RECORDED)) {
		fprintf(stderr, "round %d: cli: %s crashes %u [0] %s pid %d action %d\n", r->n,
			policy_names[r->policy], info.n_crashes, info.crashes[0].name,
			info.crashes[0].pid, info.crashes[0].action);
		return E_CLI_RECORD;
	}
	rc = lmn_recv(conv, buf, sizeof(buf), 0);
	if (rc != -ECONNRESET) {
		fprintf(stderr, "round %d: cli: recv after crash: %zd\n", r->n, rc);
		return E_CLI_RECV_AFTER;
	}
	rc = lmn_recv(conv, buf, sizeof(buf), CALL_MS);
	if (rc != -ECONNRESET)
		return E_CLI_RECV_AFTER;
	rc = lmn_send(conv, "x", 1, 0);
	if (rc != -ECONNRESET) {
		fprintf(stderr, "round %d: cli: send after crash: %zd\n", r->n, rc);
		return E_CLI_SEND_AFTER;
	}
	/* Nothing above changed the phase. */
	if (conv_server(conv, &info))
		return E_CLI_STATE;
	if (info.phase != (fail ? LMN_PHASE_FAILED : LMN_PHASE_ACTIVE))
		return E_CLI_PHASE;
	return 0;
}

/* ROUTE_NEXT moved a conversation off the victim: is its state right?
 * 1 when it has moved, 0 when not yet, or an error code. */
static int check_routed(struct round *r, lmn_conv *conv)
{
	struct lmn_conv_info info;

	if (conv_server(conv, &info))
		return E_CLI_STATE;
	/* Not moved yet (the record may be written already: it comes
	 * first).  Moved without a record would be a defect: the crash is
	 * recorded before the new server is named. */
	if (strcmp(info.participants[1].name, "srvB") != 0)
		return 0;
	if (info.n_crashes != 1 || strcmp(info.crashes[0].name, r->victim) != 0 ||
	    info.crashes[0].pid != r->victim_pid || info.crashes[0].action != LMN_CRASH_ROUTED ||
	    info.phase != LMN_PHASE_ACTIVE || strcmp(info.participants[1].name, "srvB") != 0 ||
	    info.participants[1].health != LMN_HEALTH_ALIVE) {
		fprintf(stderr,
			"round %d: cli: routed: crashes %u [0] %s pid %d action %d, phase %d, "
			"server %s health %d\n",
			r->n, info.n_crashes, info.crashes[0].name, info.crashes[0].pid,
			info.crashes[0].action, info.phase, info.participants[1].name,
			info.participants[1].health);
		return E_CLI_ROUTED_STATE;
	}
	return 1;
}

/* A short conversation to the victim server by its name: one call, then
 * close, so that it handles close notices too.  Once it died, the call
 * fails the policy's way (a conversation opened by name has nowhere to be
 * routed: -EHOSTUNREACH), or its name is gone.  1 when the victim is gone,
 * 0 when not yet, or an error code. */
static int churn(struct round *r, lmn_bus *bus, uint32_t i)
{
	struct lmn_conv_config cfg = th_cfg(r->policy);
	uint32_t req[3] = {0x43485200u, 0, i}, rep[3] = {0};
	struct lmn_conv_info info;
	lmn_conv *conv;
	ssize_t n;
	int rc;

	rc = lmn_conv_open(bus, r->victim, &cfg, &conv);
	if (rc == -ENOENT)
		return 1;
	if (rc < 0) {
		fprintf(stderr, "round %d: cli: open by name: %s\n", r->n, strerror(-rc));
		return E_CLI_CHURN;
	}
	/* After the death, the watcher takes the victim's name again for a
	 * moment: that is not the victim. */
	if (lmn_conv_state(conv, &info) < 0 || info.participants[1].pid != r->victim_pid) {
		lmn_conv_free(conv);
		return 1;
	}
	n = lmn_call(conv, req, sizeof(req), rep, sizeof(rep), CALL_MS);
	if (n == (ssize_t)sizeof(rep)) {
		rc = memcmp(req, rep, sizeof(req)) ? E_CLI_REPLY : 0;
	} else if (n != (r->policy == LMN_POLICY_ROUTE_NEXT ? -EHOSTUNREACH : -ECONNRESET)) {
		fprintf(stderr, "round %d: cli: %s call by name: %zd\n", r->n,
			policy_names[r->policy], n);
		rc = E_CLI_CHURN;
	} else if (lmn_conv_state(conv, &info) < 0 ||
		   info.participants[1].health != LMN_HEALTH_CRASHED) {
		fprintf(stderr, "round %d: cli: %s call by name: %zd, then phase %d, server %s "
			"health %d, crashes %u\n", r->n, policy_names[r->policy], n, info.phase,
			info.participants[1].name, info.participants[1].health, info.n_crashes);
		rc = E_CLI_CHURN;
	} else {
		rc = 1;
	}
	lmn_conv_free(conv);
	return rc;
}

static int client_main(void *p)
{
	struct round *r = p;
	struct lmn_conv_config cfg = th_cfg(r->policy);
	/* The victim server serves one of our two conversations from the
	 * start (not when it died joining: it never served us). */
	bool expect_crash = r->server_victim && !r->join;
	bool on_victim[2] = {false, false};
	uint32_t serial[2] = {0, 0};
	struct lmn_conv_info info;
	int crashes = 0, rc;
	bool churning = r->server_victim && !r->join;
	lmn_conv *conv[2];
	uint64_t end;
	lmn_bus *bus;

	if (lmn_bus_join(r->bus, "cli", &bus) < 0)
		return E_CLI_JOIN;
	for (int k = 0; k < 2; k++) {
		if (lmn_conv_open(bus, "echo", &cfg, &conv[k]) < 0)
			return E_CLI_OPEN;
		if (conv_server(conv[k], &info))
			return E_CLI_STATE;
		on_victim[k] = r->server_victim && !strcmp(info.participants[1].name, r->victim);
	}
	/* Both servers had no conversation: one each. */
	if (expect_crash && on_victim[0] == on_victim[1])
		return E_CLI_BALANCE;
	th_event_fire(&r->opened);

	end = th_now_ms() + 2 * WAIT_MS;
	for (uint32_t i = 0;; i++) {
		/* Go on until the victim is dead and its death was seen. */
		if (i >= CALLS && fired(&r->killed) && (!expect_crash || crashes))
			break;
		if (th_now_ms() > end)
			return expect_crash && !crashes ? E_CLI_NO_CRASH : E_CLI_CALL;
		for (int k = 0; k < 2; k++) {
			uint32_t req[3] = {0x434c4900u | (uint32_t)k, serial[k], i}, rep[3] = {0};
			ssize_t n = lmn_call(conv[k], req, sizeof(req), rep, sizeof(rep), CALL_MS);

			if (n == (ssize_t)sizeof(rep)) {
				if (memcmp(req, rep, sizeof(req)) != 0)
					return E_CLI_REPLY;
				if (on_victim[k] && r->policy == LMN_POLICY_ROUTE_NEXT && !crashes) {
					rc = check_routed(r, conv[k]);
					if (rc > 1)
						return rc;
					crashes += rc;
				}
				continue;
			}
			if (n >= 0)
				return E_CLI_REPLY;
			if (!on_victim[k] || !expect_crash) {
				fprintf(stderr, "round %d: cli: call on a live server: %zd\n", r->n, n);
				return E_CLI_CALL;
			}
			if (r->policy == LMN_POLICY_ROUTE_NEXT) {
				fprintf(stderr, "round %d: cli: ROUTE_NEXT call %u: %zd (%s)\n", r->n,
					i, n, strerror((int)-n));
				return E_CLI_ROUTE_FAILED;
			}
			if (crashes)
				return E_CLI_TWICE;
			rc = check_failed(r, conv[k], n);
			if (rc)
				return rc;
			crashes++;
			/* The caller decides: here, a new conversation, which
			 * must go to the server that is left. */
			lmn_conv_free(conv[k]);
			if (lmn_conv_open(bus, "echo", &cfg, &conv[k]) < 0)
				return E_CLI_OPEN;
			if (conv_server(conv[k], &info))
				return E_CLI_STATE;
			if (strcmp(info.participants[1].name, "srvB") != 0) {
				fprintf(stderr, "round %d: cli: reopened on %s\n", r->n,
					info.participants[1].name);
				return E_CLI_REOPEN;
			}
			on_victim[k] = false;
			serial[k]++;
			/* And it works at once. */
			req[1] = serial[k];
			n = lmn_call(conv[k], req, sizeof(req), rep, sizeof(rep), CALL_MS);
			if (n != (ssize_t)sizeof(rep) || memcmp(req, rep, sizeof(req)) != 0) {
				fprintf(stderr, "round %d: cli: call after reopening: %zd\n", r->n, n);
				return E_CLI_CALL;
			}
		}
		if (churning) {
			rc = churn(r, bus, i);
			if (rc > 1)
				return rc;
			churning = !rc;
		}
	}
	/* Conversations of live servers saw no crash; a rerouted one saw one. */
	for (int k = 0; k < 2; k++) {
		if (on_victim[k] && r->policy == LMN_POLICY_ROUTE_NEXT) {
			if (check_routed(r, conv[k]) != 1)
				return E_CLI_ROUTED_STATE;
		} else {
			if (conv_server(conv[k], &info))
				return E_CLI_STATE;
			if (info.n_crashes != 0 || info.phase != LMN_PHASE_ACTIVE) {
				fprintf(stderr,
					"round %d: cli: conversation %d on %s (health %d): phase %d, "
					"crashes %u [0] %s action %d\n",
					r->n, k, info.participants[1].name,
					info.participants[1].health, info.phase, info.n_crashes,
					info.crashes[0].name, info.crashes[0].action);
				return E_CLI_STRAY_CRASH;
			}
		}
		lmn_conv_free(conv[k]);
	}
	lmn_bus_leave(bus);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The watcher: exactly one LMN_EXIT_CRASHED, also when replayed.      */

static int watcher_main(void *p)
{
	struct round *r = p;
	lmn_bus *bus, *again;
	lmn_watch *w;
	int rc, result = 0;
	bool early;

	if (lmn_bus_join(r->bus, "watch", &bus) < 0)
		return E_W_JOIN;
	rc = lmn_watch_open(bus, r->victim, &w);
	/* Killed joining, the victim may never have been on the bus. */
	if (rc == -ENOENT && r->join)
		goto restart;
	if (rc < 0) {
		fprintf(stderr, "round %d: watch: open %s: %s\n", r->n, r->victim, strerror(-rc));
		return E_W_OPEN;
	}
	th_event_fire(&r->armed);
	rc = lmn_watch_wait(w, WAIT_MS);
	/* Killed after it left the bus, the victim did leave. */
	if (rc != LMN_EXIT_CRASHED && !(rc == LMN_EXIT_LEFT && r->point == CP_LEAVE)) {
		fprintf(stderr, "round %d: watch: wait: %d\n", r->n, rc);
		return rc == -ETIMEDOUT ? E_W_TIMEOUT : rc == LMN_EXIT_LEFT ? E_W_LEFT : E_W_OTHER;
	}
	result = rc;
	if (lmn_watch_wait(w, 0) != -EALREADY || lmn_watch_wait(w, 20) != -EALREADY)
		return E_W_AGAIN;
	{
		struct pollfd pfd = {.fd = lmn_watch_fd(w), .events = POLLIN};

		if (poll(&pfd, 1, 0) != 0)
			return E_W_FD_AGAIN;
	}
	lmn_watch_close(w);
	/* An exit that came before the watch is replayed, once. */
	rc = lmn_watch_open(bus, r->victim, &w);
	if (rc < 0)
		return E_W_REPLAY_OPEN;
	rc = lmn_watch_wait(w, 0);
	if (rc != result) {
		fprintf(stderr, "round %d: watch: replayed %d, first %d\n", r->n, rc, result);
		return E_W_REPLAY;
	}
	if (lmn_watch_wait(w, 0) != -EALREADY)
		return E_W_REPLAY_AGAIN;
	lmn_watch_close(w);
restart:
	/* A restarted process gets the name back at once. */
	rc = lmn_bus_join(r->bus, r->victim, &again);
	if (rc < 0) {
		fprintf(stderr, "round %d: watch: rejoin as %s: %s\n", r->n, r->victim,
			strerror(-rc));
		return E_W_RESTART;
	}
	lmn_bus_leave(again);
	/* Leaving after the kill, we must reap what is left of the victim
	 * (it may be killed between logging its exit and giving its slot
	 * back, and we may be the only one watching it); leaving before,
	 * nobody may see that death. */
	early = !fired(&r->killed);
	lmn_bus_leave(bus);
	return result == LMN_EXIT_CRASHED ? W_CRASHED
	       : result == LMN_EXIT_LEFT  ? (early ? W_LEFT_EARLY : W_LEFT)
					  : W_NEVER_JOINED;
}

/* ------------------------------------------------------------------ */
/* Stopping the servers that are left: a "quit" call to each by name.  */

static int stopper_main(void *p)
{
	struct round *r = p;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	const char *names[2] = {"srvA", "srvB"};
	lmn_bus *bus;

	if (lmn_bus_join(r->bus, "stop", &bus) < 0)
		return E_STOP_JOIN;
	for (int k = r->server_victim ? 1 : 0; k < 2; k++) {
		lmn_conv *conv;
		char rep[8];

		if (lmn_conv_open(bus, names[k], &cfg, &conv) < 0)
			return E_STOP_OPEN;
		if (lmn_call(conv, "quit", 4, rep, sizeof(rep), CALL_MS) != 3)
			return E_STOP_CALL;
		lmn_conv_free(conv);
	}
	lmn_bus_leave(bus);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Reclaiming by use: join until the participant table is full, and    */
/* open conversations until that one is.  Exit code: bit 0, a           */
/* participant slot did not come back; bit 1, a conversation slot.      */

static int refill_main(void *p)
{
	struct round *r = p;
	struct lmn_conv_config cfg = th_cfg(LMN_POLICY_FAIL);
	struct lmn_bus_stat st;
	lmn_conv *convs[64];
	lmn_bus *buses[64];
	uint32_t nb = 0, nc = 0;
	int res = 0;

	if (lmn_bus_stat(r->bus, &st) < 0 || st.participants_total > 64 ||
	    st.conversations_total > 64)
		return 100;
	/* The victim's name first: a join reclaims dead holders of a name. */
	if (lmn_bus_join(r->bus, r->victim, &buses[0]) == 0)
		nb = 1;
	while (nb < st.participants_total) {
		char name[16];

		snprintf(name, sizeof(name), "fill%u", nb);
		if (lmn_bus_join(r->bus, name, &buses[nb]) < 0)
			break;
		nb++;
	}
	if (nb < st.participants_total)
		res |= 1;
	if (nb) {
		while (nc < st.conversations_total &&
		       lmn_conv_open(buses[0], NULL, &cfg, &convs[nc]) == 0)
			nc++;
		if (nc < st.conversations_total)
			res |= 2;
	}
	while (nc)
		lmn_conv_free(convs[--nc]);
	while (nb)
		lmn_bus_leave(buses[--nb]);
	return res;
}

/* ------------------------------------------------------------------ */
/* The parent: one round.                                              */

struct tally {
	int kills[N_POINTS];
	int join_unseen;   /* killed joining before its name was visible */
	int join_leaked;   /* ... and a slot came back only by refilling */
	int left_first;    /* killed after it had left the bus */
	int left_leaked;   /* ... with only its slot to give back: refilled */
	int failed_rounds;
	char report[16384];
	size_t used;
};

/* The backend by its environment variable: asking the library would make
 * an io_uring in this process, which forks every child. */
static const char *backend(void)
{
	const char *b = getenv("LIMINAL_WAIT");

	return b && *b ? b : "default";
}

static void say(struct tally *t, const struct round *r, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "round %d (%s, %s, at %d, spins %u, backend %s): %s\n", r->n,
		point_names[r->point], policy_names[r->policy], r->at, r->spins,
		backend(), msg);
	n = snprintf(t->report + t->used, sizeof(t->report) - t->used,
		     "round %d (%s, %s, at %d, spins %u): %s\n", r->n, point_names[r->point],
		     policy_names[r->policy], r->at, r->spins, msg);
	if (n > 0 && (size_t)n < sizeof(t->report) - t->used)
		t->used += (size_t)n;
}

static uint32_t mix(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

static void plan(struct round *r, int n)
{
	uint32_t h = mix((uint32_t)n + 0x9e3779b9u), g = mix(h);

	r->n = n;
	r->point = (enum point)(n % N_POINTS);
	r->policy = (enum lmn_policy)(LMN_POLICY_FAIL + (n / N_POINTS) % 3);
	r->at = (n / (N_POINTS * 3)) % 3;
	/* From no delay at all up to a few hundred microseconds, spread over
	 * every order of magnitude. */
	r->spins = (h & 7) == 0 ? 0 : (1u << (h >> 3) % 18) + (h >> 16) % 1024;
	r->lead = (g & 3) == 0 ? 0 : (1u << (g >> 2) % 17) + (g >> 16) % 512;
	r->server_victim = r->point <= SP_CLOSED;
	r->join = r->point == SP_JOIN || r->point == CP_JOIN;
	r->victim = r->server_victim ? "srvA" : "vic";
}

static void events(struct round *r, bool make)
{
	struct th_event *all[] = {&r->ready[0], &r->ready[1], &r->vready, &r->go,
				  &r->at_point, &r->never,    &r->armed,  &r->opened,
				  &r->killed};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (make) {
			th_event_new(all[i]);
		} else {
			close(all[i]->fd[0]);
			close(all[i]->fd[1]);
		}
	}
}

/* Children of the round, so that every one is reaped whatever happens. */
enum { K_VICTIM, K_SRV_A, K_SRV_B, K_WATCH, K_CLIENT, K_STOP, K_REFILL, K_N };
static const char *const kid_names[K_N] = {"victim", "srvA", "srvB", "watcher",
					   "client", "stopper", "refill"};

static int await_kid(pid_t *kids, int k, int timeout_ms)
{
	int code = th_wait(kids[k], timeout_ms);

	kids[k] = 0;
	return code;
}

#define FAIL_ROUND(...)                     \
	do {                                \
		say(t, &r, __VA_ARGS__);    \
		failed = true;              \
		goto out;                   \
	} while (0)

#define AWAIT(ev, what)                                                          \
	do {                                                                     \
		if (th_event_await(&r.ev, WAIT_MS) < 0)                          \
			FAIL_ROUND("%s never happened", what);                   \
	} while (0)

#define EXPECT_EXIT(k, timeout, want)                                               \
	do {                                                                        \
		int code_ = await_kid(kids, k, timeout);                            \
		if (code_ != (want))                                                \
			FAIL_ROUND("%s: %s (%d)", kid_names[k], exit_name(code_), code_); \
	} while (0)

static void run_round(int n, struct tally *t)
{
	struct server sa, sb;
	struct round r = {0};
	struct lmn_bus_stat st;
	pid_t kids[K_N] = {0};
	bool failed = false;
	int status, code, watched, leaves;
	bool left;

	plan(&r, n);
	r.bus = th_bus(16, 4, 64);
	events(&r, true);
	sa = (struct server){&r, "srvA", r.server_victim, &r.ready[0]};
	sb = (struct server){&r, "srvB", false, &r.ready[1]};

	if (!r.join) {
		/* Everyone is there, the watch armed and the client's two
		 * conversations open, before the victim goes on to its point. */
		if (r.server_victim) {
			kids[K_VICTIM] = th_fork(server_main, &sa);
			AWAIT(ready[0], "srvA ready");
			r.victim_pid = kids[K_VICTIM];
			kids[K_SRV_B] = th_fork(server_main, &sb);
			AWAIT(ready[1], "srvB ready");
		} else {
			kids[K_SRV_A] = th_fork(server_main, &sa);
			kids[K_SRV_B] = th_fork(server_main, &sb);
			AWAIT(ready[0], "srvA ready");
			AWAIT(ready[1], "srvB ready");
			kids[K_VICTIM] = th_fork(victim_client_main, &r);
			AWAIT(vready, "victim client joined");
			r.victim_pid = kids[K_VICTIM];
		}
		kids[K_WATCH] = th_fork(watcher_main, &r);
		AWAIT(armed, "watch armed");
		kids[K_CLIENT] = th_fork(client_main, &r);
		AWAIT(opened, "client's conversations open");
		th_event_fire(&r.go);
	} else {
		/* The victim joins while the others already work. */
		kids[K_SRV_B] = th_fork(server_main, &sb);
		AWAIT(ready[1], "srvB ready");
		if (!r.server_victim) {
			kids[K_SRV_A] = th_fork(server_main, &sa);
			AWAIT(ready[0], "srvA ready");
		}
		kids[K_CLIENT] = th_fork(client_main, &r);
		AWAIT(opened, "client's conversations open");
		kids[K_VICTIM] = th_fork(r.server_victim ? server_main : victim_client_main,
					 r.server_victim ? (void *)&sa : (void *)&r);
		r.victim_pid = kids[K_VICTIM];
	}

	if (th_event_await(&r.at_point, WAIT_MS) < 0) {
		code = await_kid(kids, K_VICTIM, 0);
		FAIL_ROUND("the victim never reached its point: %s (%d)", exit_name(code), code);
	}
	busy(r.spins);
	kill(kids[K_VICTIM], SIGKILL);
	if (waitpid(kids[K_VICTIM], &status, 0) != kids[K_VICTIM])
		FAIL_ROUND("waitpid victim: %s", strerror(errno));
	kids[K_VICTIM] = 0;
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		FAIL_ROUND("the victim was not killed but exited: %s (%d)",
			   exit_name(WIFEXITED(status) ? WEXITSTATUS(status) : -1),
			   WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	t->kills[r.point]++;
	th_event_fire(&r.killed);

	/* Killed joining, the watch comes after the death: replayed, or
	 * nothing to watch if the victim never got its name up. */
	if (r.join)
		kids[K_WATCH] = th_fork(watcher_main, &r);
	watched = await_kid(kids, K_WATCH, WAIT_MS);
	left = watched == W_LEFT || watched == W_LEFT_EARLY;
	if (watched != W_CRASHED && !(watched == W_NEVER_JOINED && r.join) &&
	    !(left && r.point == CP_LEAVE))
		FAIL_ROUND("watcher: %s (%d)", exit_name(watched), watched);
	t->join_unseen += watched == W_NEVER_JOINED;
	t->left_first += left;
	EXPECT_EXIT(K_CLIENT, 2 * WAIT_MS, 0);
	kids[K_STOP] = th_fork(stopper_main, &r);
	EXPECT_EXIT(K_STOP, WAIT_MS, 0);
	if (!r.server_victim)
		EXPECT_EXIT(K_SRV_A, WAIT_MS, 0);
	EXPECT_EXIT(K_SRV_B, WAIT_MS, 0);

	/* Everybody left: the bus must be back at full capacity. */
	if (lmn_bus_stat(r.bus, &st) < 0)
		FAIL_ROUND("lmn_bus_stat failed");
	/* Servers left, the client, the watcher twice (itself and the
	 * victim's name taken again), the stopper. */
	leaves = (r.server_victim ? 1 : 2) + 4;
	if (st.participants_used || st.conversations_used || st.cells_used) {
		bool one_slot = st.crashes == 0 && st.participants_used == 1 &&
				st.participants_dead == 1 && !st.conversations_used && !st.cells_used;
		bool claimed_only = r.join && one_slot;
		/* Killed leaving, after its exit was logged (which woke the
		 * watcher) and before its slot was given back: when the
		 * watcher, the only one watching it, was through and gone
		 * before the kill, nobody saw the death, and the slot comes
		 * back when the table fills, as for claimed_only. */
		bool left_only = r.point == CP_LEAVE && watched == W_LEFT_EARLY && one_slot;
		struct lmn_bus_stat before = st;

		/* What joining and opening until full gets back. */
		kids[K_REFILL] = th_fork(refill_main, &r);
		code = await_kid(kids, K_REFILL, WAIT_MS);
		if (lmn_bus_stat(r.bus, &st) < 0)
			FAIL_ROUND("lmn_bus_stat failed");
		/* Killed joining, after its claim and before its name went
		 * up: nothing names the slot but its pid, and the first
		 * joiner or opener that finds the table full reclaims it. */
		if ((claimed_only || left_only) && code == 0 && !st.participants_used &&
		    !st.conversations_used && !st.cells_used) {
			t->join_leaked += claimed_only;
			t->left_leaked += left_only;
		} else {
			FAIL_ROUND("after everybody left: participants %u (dead %u), conversations %u, "
				   "cells %u, crashes %llu, leaves %llu; after refilling (exit %d): "
				   "participants %u (dead %u), conversations %u, cells %u",
				   before.participants_used, before.participants_dead,
				   before.conversations_used, before.cells_used,
				   (unsigned long long)before.crashes,
				   (unsigned long long)before.leaves, code, st.participants_used,
				   st.participants_dead, st.conversations_used, st.cells_used);
		}
	} else {
		if (st.participants_dead)
			FAIL_ROUND("participants_dead %u with none used", st.participants_dead);
		/* One death, handled once; none when the victim had left, or
		 * died joining before anything of it was visible. */
		if (watched == W_CRASHED ? st.crashes != 1
		    : left               ? st.crashes != 0
					 : st.crashes > 1)
			FAIL_ROUND("crashes %llu (watch said %d)", (unsigned long long)st.crashes,
				   watched);
		/* The victim's own leave counts when the watch says it left;
		 * one exit is one record, never a leave and a crash. */
		if (left)
			leaves++;
		if (st.leaves != (uint64_t)leaves)
			FAIL_ROUND("leaves %llu, want %d (watch said %d)", (unsigned long long)st.leaves,
				   leaves, watched);
	}
out:
	for (int k = 0; k < K_N; k++) {
		if (kids[k] > 0) {
			kill(kids[k], SIGKILL);
			waitpid(kids[k], &status, 0);
		}
	}
	events(&r, false);
	if (failed && getenv("LMN_KILL_KEEP")) {
		/* Keep the segment of a failed round for a post-mortem. */
		char cmd[512];

		snprintf(cmd, sizeof(cmd), "cp '%s/liminal.%s' '%s/round-%d.bus'",
			 getenv("LIMINAL_DIR"), r.bus, getenv("LMN_KILL_KEEP"), n);
		if (system(cmd) != 0)
			fprintf(stderr, "could not keep the segment of round %d\n", n);
	}
	if (lmn_bus_unlink(r.bus) < 0 && !failed) {
		say(t, &r, "lmn_bus_unlink failed");
		failed = true;
	}
	if (failed)
		t->failed_rounds++;
}

START_TEST(kill_at_every_point)
{
	/* The knobs described at the top. */
	const char *only = getenv("LMN_KILL_POINT");
	const char *rounds_env = getenv("LMN_KILL_ROUNDS");
	const char *max_env = getenv("LMN_KILL_MAX_FAILED");
	int rounds = rounds_env ? atoi(rounds_env) : ROUNDS;
	int max_failed = max_env ? atoi(max_env) : MAX_FAILED_ROUNDS;
	static struct tally t;
	uint64_t start = th_now_ms();
	int n, done = 0;

	memset(&t, 0, sizeof(t));
	for (n = 0; n < rounds && t.failed_rounds < max_failed; n++) {
		if (only && strcmp(only, point_names[n % N_POINTS]) != 0)
			continue;
		run_round(n, &t);
		done++;
	}
	fprintf(stderr, "test_kill (%s): %d rounds in %llu ms; kills per point:", backend(), done,
		(unsigned long long)(th_now_ms() - start));
	for (int p = 0; p < N_POINTS; p++)
		fprintf(stderr, " %s %d", point_names[p], t.kills[p]);
	fprintf(stderr,
		"; killed joining before the name was up: %d, of which a slot came back only by "
		"refilling: %d; killed after leaving: %d, of which a slot came back only by "
		"refilling: %d\n",
		t.join_unseen, t.join_leaked, t.left_first, t.left_leaked);
	ck_assert_msg(t.failed_rounds == 0, "%d failed rounds:\n%s", t.failed_rounds, t.report);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kill");
	TCase *tc = tcase_create("kill");

	tcase_add_checked_fixture(tc, th_setup, th_teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, kill_at_every_point);
	suite_add_tcase(s, tc);
	return th_run(s);
}
