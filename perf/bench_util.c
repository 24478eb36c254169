/* SPDX-License-Identifier: MIT */
#include "bench_util.h"

#include <errno.h>
#include <stddef.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t bu_peer_gone;
static const char *prog = "bench";
static void (*gone_hook)(void);

void bu_on_peer_gone(void (*fn)(void))
{
	gone_hook = fn;
}

void bu_set_prog(const char *name)
{
	const char *s = strrchr(name, '/');

	prog = s ? s + 1 : name;
}

void bu_die(int err, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (err > 0)
		fprintf(stderr, ": %s", strerror(err));
	fputc('\n', stderr);
	exit(1);
}

uint64_t bu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t bu_cpu_ns(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) < 0)
		bu_die(errno, "getrusage");
	return ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) * 1000000000ull +
	       ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ull;
}

int bu_pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return 0;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
}

int bu_parse_cpus(const char *s, int *a, int *b)
{
	char *end;
	long x, y;

	errno = 0;
	x = strtol(s, &end, 10);
	if (errno || end == s || *end != ',' || x < 0 || x >= CPU_SETSIZE)
		return -1;
	s = end + 1;
	y = strtol(s, &end, 10);
	if (errno || end == s || *end || y < 0 || y >= CPU_SETSIZE)
		return -1;
	*a = (int)x;
	*b = (int)y;
	return 0;
}

void *bu_shared_alloc(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		bu_die(errno, "mmap %zu bytes", size);
	return p;
}

static void on_sigchld(int sig)
{
	(void)sig;
	bu_peer_gone = 1;
	if (gone_hook)
		gone_hook();
}

/* The safety net went off: say so in one line and leave. */
static void on_sigalrm(int sig)
{
	char msg[160];
	size_t n = 0, l = strlen(prog);
	static const char tail[] = ": timed out (a wait outlasted its alarm)\n";

	(void)sig;
	if (l > sizeof(msg) - sizeof(tail))
		l = sizeof(msg) - sizeof(tail);
	memcpy(msg, prog, l);
	n = l;
	memcpy(msg + n, tail, sizeof(tail) - 1);
	n += sizeof(tail) - 1;
	if (write(STDERR_FILENO, msg, n) < 0) {
		/* nothing more to do */
	}
	_exit(1);
}

static void arm_alarm(unsigned alarm_s)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigalrm;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGALRM, &sa, NULL) < 0)
		bu_die(errno, "sigaction");
	alarm(alarm_s);
}

void bu_watch_child(unsigned alarm_s)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigchld;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_NOCLDSTOP; /* no SA_RESTART: blocking calls return EINTR */
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		bu_die(errno, "sigaction");
	signal(SIGPIPE, SIG_IGN); /* a write to a dead peer fails with EPIPE */
	bu_peer_gone = 0;
	arm_alarm(alarm_s);
}

void bu_child_setup(pid_t parent, unsigned alarm_s)
{
	signal(SIGCHLD, SIG_DFL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		bu_die(errno, "prctl(PR_SET_PDEATHSIG)");
	if (getppid() != parent) /* the parent died before prctl */
		_exit(1);
	signal(SIGPIPE, SIG_DFL);
	arm_alarm(alarm_s);
}

void bu_reap(pid_t pid, const char *what)
{
	int st;

	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			bu_die(errno, "waitpid %s", what);
	}
	if (WIFSIGNALED(st))
		bu_die(0, "%s killed by signal %d", what, WTERMSIG(st));
	if (WEXITSTATUS(st))
		bu_die(0, "%s exited with status %d", what, WEXITSTATUS(st));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void bu_sort_u64(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
}

uint64_t bu_pct_sorted(const uint64_t *v, size_t n, double p)
{
	/* nearest rank: the smallest sample with at least p% at or below it */
	double r = p / 100.0 * (double)n;
	size_t k = (size_t)r;

	if ((double)k < r)
		k++;
	if (k < 1)
		k = 1;
	if (k > n)
		k = n;
	return n ? v[k - 1] : 0;
}

double bu_median(const double *v, int n)
{
	double s[BU_MAX_REPS];

	if (n <= 0)
		return 0;
	if (n > BU_MAX_REPS)
		n = BU_MAX_REPS;
	memcpy(s, v, (size_t)n * sizeof(*s));
	qsort(s, (size_t)n, sizeof(*s), cmp_dbl);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

double bu_spread(const double *v, int n)
{
	double lo, hi, m = bu_median(v, n);

	if (n <= 0 || m == 0)
		return 0;
	lo = hi = v[0];
	for (int i = 1; i < n && i < BU_MAX_REPS; i++) {
		if (v[i] < lo)
			lo = v[i];
		if (v[i] > hi)
			hi = v[i];
	}
	return (hi - lo) / m;
}

void bu_rep_latency(struct bu_rep *r, uint64_t *lat_ns, size_t n)
{
	bu_sort_u64(lat_ns, n);
	r->p50_ns = (double)bu_pct_sorted(lat_ns, n, 50);
	r->p99_ns = (double)bu_pct_sorted(lat_ns, n, 99);
	r->p999_ns = (double)bu_pct_sorted(lat_ns, n, 99.9);
}

static double median_of(const struct bu_result *res, int n, size_t off)
{
	double v[BU_MAX_REPS];

	for (int i = 0; i < n; i++)
		v[i] = *(const double *)(const void *)((const char *)&res->rep[i] + off);
	return bu_median(v, n);
}

void bu_print(FILE *f, const struct bu_result *res)
{
	double v[BU_MAX_REPS];
	int n = res->reps < BU_MAX_REPS ? res->reps : BU_MAX_REPS;

	fprintf(f, "{\"bench\":\"%s\",\"impl\":\"%s\",\"size\":%zu,\"iters\":%ld,\"reps\":%d",
		res->bench, res->impl, res->size, res->iters, n);
	if (res->kind == BU_LATENCY) {
		fprintf(f, ",\"p50_ns\":%.0f", median_of(res, n, offsetof(struct bu_rep, p50_ns)));
		fprintf(f, ",\"p99_ns\":%.0f", median_of(res, n, offsetof(struct bu_rep, p99_ns)));
		fprintf(f, ",\"p999_ns\":%.0f", median_of(res, n, offsetof(struct bu_rep, p999_ns)));
	} else {
		fprintf(f, ",\"msgs_per_s\":%.0f", median_of(res, n, offsetof(struct bu_rep, msgs_per_s)));
	}
	fprintf(f, ",\"cpu_ns_per_op\":%.1f", median_of(res, n, offsetof(struct bu_rep, cpu_ns_per_op)));
	for (int i = 0; i < n; i++)
		v[i] = res->kind == BU_LATENCY ? res->rep[i].p50_ns : res->rep[i].msgs_per_s;
	fprintf(f, ",\"spread\":%.3f", bu_spread(v, n));
	if (res->cpu_a >= 0 && res->cpu_b >= 0)
		fprintf(f, ",\"cpus\":\"%d,%d\"", res->cpu_a, res->cpu_b);
	if (res->extra)
		fputs(res->extra, f);
	fputs("}\n", f);
	fflush(f);
}
