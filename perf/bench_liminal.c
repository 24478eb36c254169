/* SPDX-License-Identifier: MIT */
/*
 * liminal's side of the benchmarks; perf/bench_base.c holds the baselines
 * and perf/run.sh runs both in one go.  One JSON object per line.
 *
 *   bench_liminal --bench rtt    [--size B] [--iters N] [--reps R] [--warmup W]
 *                                [--cpus A,B] [--spin NS]
 *   bench_liminal --bench stream [--size B] [--iters N] [--reps R] [--cpus A,B]
 *   bench_liminal --bench fanin  --clients K [--iters N] [--reps R] [--spin NS]
 *   bench_liminal --bench scale  --convs C [--iters N] [--reps R]
 *   bench_liminal --bench idle   [--ms T]
 *
 * The wait backend is the library's choice (LIMINAL_WAIT=futex forces the
 * fallback); --spin sets the bounded spin of both sides (0: sleep at once).
 * --warmup (unmeasured calls first) defaults to a tenth of --iters, as in
 * bench_base.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "liminal.h"

struct opts {
	const char *bench;
	uint32_t size, iters, reps, warmup, clients, convs, ms;
	int cpu_client, cpu_server;
	long spin; /* -1: library default */
};

/* warmup UINT32_MAX: a tenth of iters (at least 1), as bench_base. */
static struct opts O = {"rtt", 64, 20000, 3, UINT32_MAX, 1, 1, 1000, -1, -1, -1};

/* Pinning, clocks and statistics come from bench_util, as for the
 * baselines, so that both sides are measured the same way. */
static void pin(int cpu)
{
	int r = bu_pin(cpu);

	if (r < 0) {
		fprintf(stderr, "bench_liminal: cannot pin to cpu %d: %s\n", cpu, strerror(-r));
		exit(2);
	}
}

/* The bus of this run, once made: a failed run takes it down with it
 * rather than leave its segment in /dev/shm. */
static char made_bus[64];

static void die(const char *what, int r)
{
	fprintf(stderr, "bench_liminal: %s: %s\n", what, strerror(r < 0 ? -r : r));
	if (made_bus[0])
		lmn_bus_unlink(made_bus);
	exit(1);
}

/* Shared between the processes of one run, made before fork. */
struct shared {
	uint64_t server_cpu_ns;
	uint64_t stream_first, stream_last, stream_count;
	volatile int ready;
	uint64_t lat[]; /* fan-in: every client's latencies */
};

static struct shared *S;

static lmn_bus *join(const char *bus, const char *self)
{
	lmn_bus *b;
	int r = lmn_bus_join(bus, self, &b);

	if (r < 0)
		die("join", r);
	if (O.spin >= 0 && (r = lmn_bus_set_spin(b, (uint32_t)O.spin)) < 0)
		die("spin", r);
	return b;
}

/* The server: answer (or, for a stream, count) until `closes` conversations
 * closed, then report its own CPU time. */
static int server(const char *bus_name, int closes, int fd, int stream)
{
	lmn_bus *bus;
	uint64_t cpu0;
	int seen = 0;

	pin(O.cpu_server);
	bus = join(bus_name, "server");
	if (lmn_bus_serve(bus, "bench") < 0)
		return 1;
	if (write(fd, "r", 1) != 1)
		return 1;
	cpu0 = bu_cpu_ns();
	while (seen < closes) {
		lmn_msg *m;
		int r = lmn_next(bus, &m, 60000);

		if (r < 0)
			return 2;
		if (lmn_msg_kind(m) == LMN_MSG_CLOSED) {
			seen++;
		} else if (stream) {
			/* Only the first and the last message read the clock,
			 * as the baselines' consumers do. */
			S->stream_count++;
			if (S->stream_count == 1)
				S->stream_first = bu_now_ns();
			if (S->stream_count == O.iters)
				S->stream_last = bu_now_ns();
		} else if (lmn_reply(m, lmn_msg_data(m), lmn_msg_size(m)) < 0) {
			return 3;
		}
		lmn_msg_release(m);
	}
	S->server_cpu_ns = bu_cpu_ns() - cpu0;
	lmn_bus_leave(bus);
	return 0;
}

static pid_t start_server(const char *bus, int closes, int stream)
{
	int fds[2];
	char c;
	pid_t pid;

	if (pipe(fds) < 0)
		die("pipe", errno);
	pid = fork();
	if (pid == 0) {
		close(fds[0]);
		alarm(600);
		_exit(server(bus, closes, fds[1], stream));
	}
	close(fds[1]);
	if (read(fds[0], &c, 1) != 1)
		die("server start", EIO);
	close(fds[0]);
	return pid;
}

static void finish(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "bench_liminal: server failed\n");
		exit(1);
	}
}

static const char *impl_name(void)
{
	static char name[64];
	const char *mode = O.spin == 0 ? "sleep" : "spin";

	snprintf(name, sizeof(name), "liminal_%s_%s", lmn_wait_backend(), mode);
	return name;
}

static void print_cpus(void)
{
	if (O.cpu_client >= 0)
		printf(",\"cpus\":\"%d,%d\"", O.cpu_client, O.cpu_server);
}

/* Round trips on one conversation; lat gets iters latencies. */
static void calls(lmn_conv *conv, uint32_t n, uint64_t *lat)
{
	char req[65536], rep[65536];

	memset(req, 'q', O.size);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t t0 = bu_now_ns();
		ssize_t r = lmn_call(conv, req, O.size, rep, sizeof(rep), 60000);

		if (r != (ssize_t)O.size)
			die("call", r < 0 ? (int)r : EIO);
		if (lat)
			lat[i] = bu_now_ns() - t0;
	}
}

static void bench_rtt(const char *bus_name)
{
	struct lmn_conv_config cfg = {.policy = LMN_POLICY_FAIL};
	double p50[64], p99[64], p999[64], cpu[64];
	uint64_t *lat = calloc(O.iters, sizeof(*lat));
	pid_t pid = start_server(bus_name, 1, 0);
	lmn_bus *bus;
	lmn_conv *conv;
	int r;

	pin(O.cpu_client);
	bus = join(bus_name, "client");
	if ((r = lmn_conv_open(bus, "bench", &cfg, &conv)) < 0)
		die("open", r);
	calls(conv, O.warmup, NULL);
	for (uint32_t k = 0; k < O.reps; k++) {
		uint64_t c0 = bu_cpu_ns(), s0;

		S->server_cpu_ns = 0;
		s0 = 0;
		calls(conv, O.iters, lat);
		cpu[k] = (double)(bu_cpu_ns() - c0 + s0) / O.iters;
		bu_sort_u64(lat, O.iters);
		p50[k] = (double)bu_pct_sorted(lat, O.iters, 50);
		p99[k] = (double)bu_pct_sorted(lat, O.iters, 99);
		p999[k] = (double)bu_pct_sorted(lat, O.iters, 99.9);
	}
	lmn_conv_free(conv);
	lmn_bus_leave(bus);
	finish(pid);
	/* The server's CPU over all repetitions and the warm-up, per call. */
	{
		double server_per_op = (double)S->server_cpu_ns / (O.iters * O.reps + O.warmup);

		for (uint32_t k = 0; k < O.reps; k++)
			cpu[k] += server_per_op;
	}
	printf("{\"bench\":\"rtt\",\"impl\":\"%s\",\"size\":%u,\"p50_ns\":%.0f,\"p99_ns\":%.0f,"
	       "\"p999_ns\":%.0f,\"cpu_ns_per_op\":%.0f,\"reps\":%u,\"spread\":%.3f",
	       impl_name(), O.size, bu_median(p50, (int)O.reps), bu_median(p99, (int)O.reps),
	       bu_median(p999, (int)O.reps), bu_median(cpu, (int)O.reps), O.reps, bu_spread(p50, (int)O.reps));
	print_cpus();
	printf("}\n");
	free(lat);
}

static void bench_stream(const char *bus_name)
{
	struct lmn_conv_config cfg = {.policy = LMN_POLICY_FAIL};
	double rate[64];
	char msg[65536];

	memset(msg, 's', O.size);
	for (uint32_t k = 0; k < O.reps; k++) {
		pid_t pid;
		lmn_bus *bus;
		lmn_conv *conv;
		int r;

		S->stream_count = 0;
		pid = start_server(bus_name, 1, 1);
		pin(O.cpu_client);
		bus = join(bus_name, "client");
		if ((r = lmn_conv_open(bus, "bench", &cfg, &conv)) < 0)
			die("open", r);
		for (uint32_t i = 0; i < O.iters; i++)
			if ((r = lmn_send(conv, msg, O.size, 0)) < 0)
				die("send", r);
		lmn_conv_free(conv);
		lmn_bus_leave(bus);
		finish(pid);
		if (S->stream_count != O.iters)
			die("stream lost messages", EIO);
		rate[k] = (double)(O.iters - 1) * 1e9 / (double)(S->stream_last - S->stream_first);
	}
	printf("{\"bench\":\"stream\",\"impl\":\"%s\",\"size\":%u,\"msgs_per_s\":%.0f,\"reps\":%u,"
	       "\"spread\":%.3f",
	       impl_name(), O.size, bu_median(rate, (int)O.reps), O.reps, bu_spread(rate, (int)O.reps));
	print_cpus();
	printf("}\n");
}

static void bench_fanin(const char *bus_name)
{
	double tput[64], p99[64];
	uint32_t n = O.iters;

	for (uint32_t k = 0; k < O.reps; k++) {
		pid_t server = start_server(bus_name, (int)O.clients, 0), kids[64];
		uint64_t t0, t1;
		int go[2];

		if (pipe(go) < 0)
			die("pipe", errno);
		for (uint32_t c = 0; c < O.clients; c++) {
			kids[c] = fork();
			if (kids[c] == 0) {
				struct lmn_conv_config cfg = {.policy = LMN_POLICY_FAIL};
				char self[32], b;
				lmn_bus *bus;
				lmn_conv *conv;

				alarm(600);
				close(go[1]);
				snprintf(self, sizeof(self), "client%u", c);
				bus = join(bus_name, self);
				if (lmn_conv_open(bus, "bench", &cfg, &conv) < 0)
					_exit(1);
				calls(conv, O.warmup / O.clients + 1, NULL);
				if (read(go[0], &b, 1) != 0) /* the start line: EOF */
					_exit(1);
				calls(conv, n, S->lat + (size_t)c * n);
				lmn_conv_free(conv);
				lmn_bus_leave(bus);
				_exit(0);
			}
		}
		close(go[0]);
		t0 = bu_now_ns();
		close(go[1]);
		for (uint32_t c = 0; c < O.clients; c++) {
			int st;

			if (waitpid(kids[c], &st, 0) != kids[c] || !WIFEXITED(st) || WEXITSTATUS(st))
				die("client", EIO);
		}
		t1 = bu_now_ns();
		finish(server);
		tput[k] = (double)n * O.clients * 1e9 / (double)(t1 - t0);
		bu_sort_u64(S->lat, (size_t)n * O.clients);
		p99[k] = (double)bu_pct_sorted(S->lat, (size_t)n * O.clients, 99);
	}
	printf("{\"bench\":\"fanin\",\"impl\":\"%s\",\"clients\":%u,\"size\":%u,\"msgs_per_s\":%.0f,"
	       "\"p99_ns\":%.0f,\"reps\":%u,\"spread\":%.3f}\n",
	       impl_name(), O.clients, O.size, bu_median(tput, (int)O.reps), bu_median(p99, (int)O.reps), O.reps,
	       bu_spread(tput, (int)O.reps));
}

/* Many open conversations, one busy: the busy one's round trip must not
 * depend on how many are idle. */
static void bench_scale(const char *bus_name)
{
	struct lmn_conv_config cfg = {.policy = LMN_POLICY_FAIL};
	uint64_t *lat = calloc(O.iters, sizeof(*lat));
	lmn_conv **idle = calloc(O.convs, sizeof(*idle));
	double p50[64], oc[64];
	struct lmn_bus_stat st;
	pid_t pid = start_server(bus_name, 1, 0);
	lmn_bus *bus;
	lmn_conv *busy;
	uint64_t t0;
	int r;

	pin(O.cpu_client);
	bus = join(bus_name, "client");
	if ((r = lmn_bus_stat(bus_name, &st)) < 0)
		die("stat", r);
	for (uint32_t k = 0; k < O.reps; k++) {
		uint32_t batch = O.convs < 1000 ? O.convs : 1000;

		/* Open and close rate, on a batch of buffering conversations. */
		t0 = bu_now_ns();
		for (uint32_t i = 0; i < batch; i++)
			if ((r = lmn_conv_open(bus, NULL, &cfg, &idle[i])) < 0)
				die("open", r);
		for (uint32_t i = 0; i < batch; i++)
			lmn_conv_free(idle[i]);
		oc[k] = (double)batch * 1e9 / (double)(bu_now_ns() - t0);
	}
	/* The idle ones: opened to the server, never used. */
	for (uint32_t i = 0; i + 1 < O.convs; i++)
		if ((r = lmn_conv_open(bus, "bench", &cfg, &idle[i])) < 0)
			die("open idle", r);
	if ((r = lmn_conv_open(bus, "bench", &cfg, &busy)) < 0)
		die("open busy", r);
	calls(busy, O.warmup, NULL);
	for (uint32_t k = 0; k < O.reps; k++) {
		calls(busy, O.iters, lat);
		bu_sort_u64(lat, O.iters);
		p50[k] = (double)bu_pct_sorted(lat, O.iters, 50);
	}
	lmn_conv_free(busy);
	for (uint32_t i = 0; i + 1 < O.convs; i++)
		lmn_conv_free(idle[i]);
	/* The server counts closes: the busy one and every idle one. */
	lmn_bus_leave(bus);
	finish(pid);
	printf("{\"bench\":\"scale\",\"impl\":\"%s\",\"convs\":%u,\"size\":%u,\"p50_ns\":%.0f,"
	       "\"bytes_per_conv\":%.0f,\"open_close_per_s\":%.0f,\"reps\":%u,\"spread\":%.3f}\n",
	       impl_name(), O.convs, O.size, bu_median(p50, (int)O.reps),
	       (double)st.size / st.conversations_total, bu_median(oc, (int)O.reps), O.reps,
	       bu_spread(p50, (int)O.reps));
	free(lat);
	free(idle);
}

/* A server blocked in lmn_next with nothing to do: its CPU per second. */
static void bench_idle(const char *bus_name)
{
	int fds[2];
	pid_t pid;
	char c;

	if (pipe(fds) < 0)
		die("pipe", errno);
	pid = fork();
	if (pid == 0) {
		lmn_bus *bus = join(bus_name, "idle");
		uint64_t c0, t0;
		lmn_msg *m;

		close(fds[0]);
		lmn_bus_serve(bus, "bench");
		c0 = bu_cpu_ns();
		t0 = bu_now_ns();
		/* Short timeouts in a loop, the worst case for a spin: each
		 * call may spin before it sleeps. */
		while (bu_now_ns() - t0 < (uint64_t)O.ms * 1000000ull)
			if (lmn_next(bus, &m, 10) == 0)
				lmn_msg_release(m);
		S->server_cpu_ns = bu_cpu_ns() - c0;
		S->stream_last = bu_now_ns() - t0;
		if (write(fds[1], "d", 1) != 1)
			_exit(1);
		lmn_bus_leave(bus);
		_exit(0);
	}
	close(fds[1]);
	if (read(fds[0], &c, 1) != 1)
		die("idle", EIO);
	finish(pid);
	printf("{\"bench\":\"idle\",\"impl\":\"%s\",\"cpu_fraction\":%.5f,\"ms\":%u}\n", impl_name(),
	       (double)S->server_cpu_ns / (double)S->stream_last, O.ms);
}

static uint32_t num(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (!*s || *end || v > 100000000ul) {
		fprintf(stderr, "bench_liminal: bad number '%s'\n", s);
		exit(2);
	}
	return (uint32_t)v;
}

int main(int argc, char **argv)
{
	struct lmn_bus_config bc = {.participants = 80};
	char bus_name[64];
	size_t lat_bytes;
	int r;

	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];

		if (!strcmp(k, "--bench"))
			O.bench = v;
		else if (!strcmp(k, "--size"))
			O.size = num(v);
		else if (!strcmp(k, "--iters"))
			O.iters = num(v);
		else if (!strcmp(k, "--reps"))
			O.reps = num(v);
		else if (!strcmp(k, "--warmup"))
			O.warmup = num(v);
		else if (!strcmp(k, "--clients"))
			O.clients = num(v);
		else if (!strcmp(k, "--convs"))
			O.convs = num(v);
		else if (!strcmp(k, "--ms"))
			O.ms = num(v);
		else if (!strcmp(k, "--spin"))
			O.spin = num(v);
		else if (!strcmp(k, "--cpus") && sscanf(v, "%d,%d", &O.cpu_client, &O.cpu_server) == 2)
			;
		else {
			fprintf(stderr, "bench_liminal: bad option '%s'\n", k);
			return 2;
		}
	}
	if (O.warmup == UINT32_MAX)
		O.warmup = O.iters / 10 ? O.iters / 10 : 1;
	if (O.reps < 1 || O.reps > 64 || O.clients < 1 || O.clients > 64 || O.size > 65536 ||
	    O.iters < 1) {
		fprintf(stderr, "bench_liminal: option out of range\n");
		return 2;
	}
	lat_bytes = sizeof(struct shared) + (size_t)O.iters * O.clients * sizeof(uint64_t);
	S = mmap(NULL, lat_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (S == MAP_FAILED)
		die("mmap", errno);
	snprintf(bus_name, sizeof(bus_name), "bench-%d", (int)getpid());
	bc.conversations = O.convs + 8 > 1024 ? O.convs + 8 : 1024;
	bc.max_message = O.size > 64 ? O.size : 64;
	bc.ring_depth = 8; /* the same at every scale point, so that only the count changes */
	if ((r = lmn_bus_create(bus_name, &bc)) < 0)
		die("create", r);
	memcpy(made_bus, bus_name, sizeof(made_bus));
	if (!strcmp(O.bench, "rtt"))
		bench_rtt(bus_name);
	else if (!strcmp(O.bench, "stream"))
		bench_stream(bus_name);
	else if (!strcmp(O.bench, "fanin"))
		bench_fanin(bus_name);
	else if (!strcmp(O.bench, "scale"))
		bench_scale(bus_name);
	else if (!strcmp(O.bench, "idle"))
		bench_idle(bus_name);
	else
		fprintf(stderr, "bench_liminal: unknown bench '%s'\n", O.bench);
	lmn_bus_unlink(bus_name);
	return 0;
}
