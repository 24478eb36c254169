/* SPDX-License-Identifier: MIT */
/*
 * liminal top: message rates per conversation and per participant, from
 * two pictures of the bus an interval apart.  On a terminal it redraws
 * until q or Ctrl-C; piped, it prints one snapshot (or --count of them).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "liminal.h"
#include "verbs.h"
#include "../lib/inspect.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

struct rate {
	uint64_t sent, served;
	double sent_per_s, served_per_s;
};

static const struct lmn__insp_conv *find_conv(const struct lmn__insp *s, uint64_t id)
{
	for (uint32_t i = 0; i < s->n_convs; i++)
		if (s->convs[i].id == id)
			return &s->convs[i];
	return NULL;
}

/* Per second, from a counter in two pictures; a conversation new in the
 * second one counts from zero. */
static double per_s(uint64_t now, uint64_t before, double dt)
{
	return now >= before && dt > 0 ? (double)(now - before) / dt : 0.0;
}

/* The same tenant of a participant slot in another picture, if any. */
static const struct lmn__insp_part *find_part(const struct lmn__insp *s,
					      const struct lmn__insp_part *p)
{
	for (uint32_t i = 0; i < s->n_parts; i++)
		if (s->parts[i].slot == p->slot && s->parts[i].gen == p->gen)
			return &s->parts[i];
	return NULL;
}

static void snapshot(const struct lmn__insp *a, const struct lmn__insp *b, double dt, bool json,
		     bool tty)
{
	/* Names run to 63 characters: columns as wide as the longest. */
	int wi = 9, ws = 6, wv = 7, wn = 11;
	struct lmn_json j;
	char hdr[64];

	for (uint32_t i = 0; i < b->n_convs; i++) {
		const struct lmn__insp_conv *c = &b->convs[i];

		wi = (int)strlen(c->initiator) > wi ? (int)strlen(c->initiator) : wi;
		ws = (int)strlen(c->server) > ws ? (int)strlen(c->server) : ws;
		wv = (int)strlen(c->service) > wv ? (int)strlen(c->service) : wv;
	}
	for (uint32_t i = 0; i < b->n_parts; i++)
		wn = (int)strlen(b->parts[i].name) > wn ? (int)strlen(b->parts[i].name) : wn;
	lmn_json_init(&j, stdout);
	if (json) {
		lmn_json_begin_obj(&j);
		lmn_json_key(&j, "bus");
		lmn_json_str(&j, b->name);
		lmn_json_key(&j, "time_ns");
		lmn_json_u64(&j, lmn_tool_realtime_ns());
		lmn_json_key(&j, "interval_s");
		lmn_json_double(&j, dt);
		lmn_json_key(&j, "conversations");
		lmn_json_begin_arr(&j);
	} else {
		lmn_tool_time(lmn_tool_realtime_ns(), hdr, sizeof(hdr));
		if (tty)
			printf("\033[H\033[2J");
		printf("liminal top - bus %s - %s - %u participants, %u conversations%s\n\n",
		       b->name, hdr, b->stat.participants_used, b->stat.conversations_used,
		       tty ? " - q quits" : "");
		printf("%-18s %-*s %-*s %-*s %-10s %10s %10s %10s %10s\n", "CONVERSATION", wi,
		       "INITIATOR", ws, "SERVER", wv, "SERVICE", "PHASE", "REQ/S", "REPLY/S",
		       "SENT", "RECEIVED");
	}
	for (uint32_t i = 0; i < b->n_convs; i++) {
		const struct lmn__insp_conv *c = &b->convs[i];
		const struct lmn__insp_conv *o = find_conv(a, c->id);
		double rq = per_s(c->sent, o ? o->sent : 0, dt);
		double rp = per_s(c->received, o ? o->received : 0, dt);

		if (json) {
			lmn_json_begin_obj(&j);
			lmn_tool_json_conv(&j, c);
			lmn_json_key(&j, "sent_per_s");
			lmn_json_double(&j, rq);
			lmn_json_key(&j, "received_per_s");
			lmn_json_double(&j, rp);
			lmn_json_end_obj(&j);
		} else {
			printf("0x%016llx %-*s %-*s %-*s %-10s %10.0f %10.0f %10llu %10llu\n",
			       (unsigned long long)c->id, wi, c->initiator, ws,
			       c->buffering ? "-" : c->server, wv,
			       c->service[0] ? c->service : "-",
			       lmn_tool_phase(c->phase), rq, rp, (unsigned long long)c->sent,
			       (unsigned long long)c->received);
		}
	}
	if (json) {
		lmn_json_end_arr(&j);
		lmn_json_key(&j, "participants");
		lmn_json_begin_arr(&j);
	} else {
		printf("\n%-*s %8s %-8s %10s %10s %10s %10s\n", wn, "PARTICIPANT", "PID",
		       "HEALTH", "SENT/S", "SERVED/S", "SENT", "SERVED");
	}
	for (uint32_t i = 0; i < b->n_parts; i++) {
		const struct lmn__insp_part *p = &b->parts[i];
		const struct lmn__insp_part *o = find_part(a, p);
		/* Counted by the participant since it joined, so conversations
		 * that ended between the pictures still count; a participant
		 * new in the second one counts from zero. */
		uint64_t s1 = p->sent, v1 = p->served;
		double rs = per_s(s1, o ? o->sent : 0, dt);
		double rv = per_s(v1, o ? o->served : 0, dt);

		if (json) {
			lmn_json_begin_obj(&j);
			lmn_tool_json_part(&j, p);
			lmn_json_key(&j, "sent");
			lmn_json_u64(&j, s1);
			lmn_json_key(&j, "served");
			lmn_json_u64(&j, v1);
			lmn_json_key(&j, "sent_per_s");
			lmn_json_double(&j, rs);
			lmn_json_key(&j, "served_per_s");
			lmn_json_double(&j, rv);
			lmn_json_end_obj(&j);
		} else {
			printf("%-*s %8d %-8s %10.0f %10.0f %10llu %10llu\n", wn, p->name, (int)p->pid,
			       lmn_tool_health(p->health), rs, rv, (unsigned long long)s1,
			       (unsigned long long)v1);
		}
	}
	if (json) {
		lmn_json_end_arr(&j);
		lmn_json_end_obj(&j);
	}
	fflush(stdout);
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait up to ms for a key on a terminal; true when it was q. */
static bool wait_key(bool tty_in, int ms)
{
	struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
	char c;

	if (!tty_in)
		return poll(NULL, 0, ms), false;
	if (poll(&p, 1, ms) == 1 && read(STDIN_FILENO, &c, 1) == 1)
		return c == 'q' || c == 'Q';
	return false;
}

int lmn_tool_top(int argc, char **argv)
{
	uint32_t interval_ms = 1000, count = 0;
	bool json = false;
	const struct lmn_tool_opt opts[] = {
		{"--interval", LMN_OPT_U32, &interval_ms, 10, 3600000},
		{"--count", LMN_OPT_U32, &count, 1, UINT32_MAX},
		{"--json", LMN_OPT_FLAG, &json, 0, 0},
		{0},
	};
	struct sigaction sa = {.sa_handler = on_signal};
	struct lmn__insp_view *v;
	struct lmn__insp a, b;
	struct termios saved, raw;
	bool tty_out, tty_in;
	const char *pos[1];
	uint32_t shown = 0;
	double t_a;
	int n, r, rc = LMN_TOOL_OK;

	r = lmn_tool_args(argc, argv, opts, pos, 1, 1, &n,
			  "liminal top NAME [--interval MS] [--count N] [--json]");
	if (r)
		return lmn_tool_args_exit(r);
	/* --json is for programs: one line per snapshot, as when piped. */
	tty_out = isatty(STDOUT_FILENO) && !json;
	tty_in = tty_out && isatty(STDIN_FILENO);
	/* Piped, one snapshot unless more are asked for. */
	if (!tty_out && !count)
		count = 1;
	r = lmn__insp_view_open(pos[0], &v);
	if (r < 0)
		return lmn_tool_fail("top", pos[0], r);
	r = lmn__insp_view_take(v, &a);
	if (r < 0) {
		lmn__insp_view_close(v);
		return lmn_tool_fail("top", pos[0], r);
	}
	t_a = mono_s();
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (tty_in && tcgetattr(STDIN_FILENO, &saved) == 0) {
		/* Keys without Enter and without echo; Ctrl-C still signals. */
		raw = saved;
		raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
		raw.c_cc[VMIN] = 0;
		raw.c_cc[VTIME] = 0;
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	} else {
		tty_in = false;
	}
	while (!stop && (!count || shown < count)) {
		const char *gone;
		double t_b;

		if (wait_key(tty_in, (int)interval_ms))
			break;
		if (stop)
			break;
		if ((gone = lmn__insp_view_gone(v))) {
			lmn_tool_err("liminal top: bus '%s': %s\n", pos[0], gone);
			rc = LMN_TOOL_FAILED;
			break;
		}
		r = lmn__insp_view_take(v, &b);
		if (r < 0) {
			rc = lmn_tool_fail("top", pos[0], r);
			break;
		}
		t_b = mono_s();
		snapshot(&a, &b, t_b - t_a, json, tty_out);
		lmn__inspect_free(&a);
		a = b;
		t_a = t_b;
		shown++;
	}
	if (tty_in)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
	lmn__inspect_free(&a);
	lmn__insp_view_close(v);
	return rc;
}
