/* SPDX-License-Identifier: MIT */
/*
 * What every benchmark in perf/ shares: clocks, CPU time, pinning, the two
 * process scaffolding (peer death noticed at once), percentiles, and the one
 * JSON line per result.
 *
 * A result is R repetitions of a measured loop (warm-up excluded).  Each
 * figure printed is the median of that figure across the repetitions; the
 * spread is (max - min) / median of the headline figure (p50 for latency,
 * msgs_per_s for throughput).
 */
#ifndef LIMINAL_BENCH_UTIL_H
#define LIMINAL_BENCH_UTIL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define BU_MAX_REPS 64

/* CLOCK_MONOTONIC in ns. */
uint64_t bu_now_ns(void);

/* getrusage(RUSAGE_SELF): ru_utime + ru_stime in ns (every thread). */
uint64_t bu_cpu_ns(void);

/* Pins the calling process to one CPU; cpu < 0 does nothing.  0 or -errno. */
int bu_pin(int cpu);

/* "A,B" into *a, *b (both >= 0).  0, or -1 when malformed. */
int bu_parse_cpus(const char *s, int *a, int *b);

/* Busy-wait hint for spin loops. */
static inline void bu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/* Prints "PROG: message" (and ": strerror(err)" when err > 0) on stderr
 * and exits with status 1. */
void bu_die(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
void bu_set_prog(const char *name);

/* MAP_SHARED | MAP_ANONYMOUS, zeroed, inherited across fork(); dies on failure. */
void *bu_shared_alloc(size_t size);

/*
 * Two processes.  bu_watch_child() (in the parent, before fork) installs a
 * SIGCHLD handler without SA_RESTART, so a blocking call of the parent
 * returns EINTR when the child dies and bu_peer_gone becomes non-zero; spin
 * loops test bu_peer_gone.  bu_child_setup() (in the child, first thing)
 * asks for SIGKILL when the parent dies.  Both arm alarm(seconds) as the
 * last safety net (one line on stderr, exit status 1; re-arm with alarm()).
 * The parent ignores SIGPIPE: a write to a dead child fails with EPIPE.  Rule for every wait: when the peer is gone, test the
 * awaited condition once more before calling it a failure (a peer may
 * publish its last message and exit).
 */
extern volatile sig_atomic_t bu_peer_gone;
void bu_watch_child(unsigned alarm_s);
/* fn runs inside the SIGCHLD handler (async-signal-safe calls only): it is
 * how a waiter that is about to block, and so would miss the EINTR, is
 * woken anyway (for instance by changing the futex word it will wait on). */
void bu_on_peer_gone(void (*fn)(void));
void bu_child_setup(pid_t parent, unsigned alarm_s);

/* Reaps the child; dies with a message unless it exited with status 0. */
void bu_reap(pid_t pid, const char *what);

/* Sorts v and returns the nearest-rank percentile p (0 < p <= 100). */
void bu_sort_u64(uint64_t *v, size_t n);
uint64_t bu_pct_sorted(const uint64_t *v, size_t n, double p);

/* Median of n doubles (v is not modified); (max - min) / median. */
double bu_median(const double *v, int n);
double bu_spread(const double *v, int n);

/* One repetition's figures. */
struct bu_rep {
	double p50_ns, p99_ns, p999_ns;
	double msgs_per_s;
	double cpu_ns_per_op;
};

/* Fills the latency part of r from n samples (sorts them). */
void bu_rep_latency(struct bu_rep *r, uint64_t *lat_ns, size_t n);

enum bu_kind { BU_LATENCY, BU_RATE };

struct bu_result {
	const char *bench;      /* "rtt", "stream", ... */
	const char *impl;       /* "spin", "liminal", ... */
	const char *extra;      /* appended as is (",\"k\":v" pairs) or NULL */
	enum bu_kind kind;
	size_t size;            /* message bytes */
	long iters;             /* ops per repetition actually measured */
	int cpu_a, cpu_b;       /* pinning; -1 when not pinned */
	int reps;
	struct bu_rep rep[BU_MAX_REPS];
};

/* One JSON object on one line: bench, impl, size, iters, reps, the medians
 * of the figures that apply to kind, cpu_ns_per_op, spread, and "cpus":"A,B"
 * when pinned.  Flushes. */
void bu_print(FILE *f, const struct bu_result *res);

#endif
