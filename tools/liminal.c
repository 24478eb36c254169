/* SPDX-License-Identifier: MIT */
/* The liminal command: look at buses, try them out, clean up after the
 * dead.  See liminal(1). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "liminal.h"
#include "verbs.h"

static const struct verb {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *args;
	const char *what;
} verbs[] = {
	{"create", lmn_tool_create, "NAME [--participants N] [--conversations N] [--ring N]\n"
				    "         [--max-message BYTES] [--mode OCTAL]",
	 "make a bus, kept until rm"},
	{"rm", lmn_tool_rm, "NAME", "remove a bus"},
	{"ls", lmn_tool_ls, "[--json]", "every bus on this host"},
	{"status", lmn_tool_status, "NAME [--json]",
	 "participants, services, conversations, memory"},
	{"top", lmn_tool_top, "NAME [--interval MS] [--count N] [--json]",
	 "live message rates"},
	{"watch", lmn_tool_watch, "NAME [PARTICIPANT] [--json] [--count N] [--timeout MS]",
	 "joins, leaves and crashes as they happen"},
	{"call", lmn_tool_call, "NAME SERVICE MESSAGE [--timeout MS] [--json]",
	 "send one request, print the reply"},
	{"serve", lmn_tool_serve, "NAME SERVICE --echo [--count N]",
	 "answer requests with their own bytes"},
	{"gc", lmn_tool_gc, "NAME [--json]", "reclaim what dead processes left"},
	{"stats", lmn_tool_stats, "NAME [--prometheus | --json]", "counters"},
	{"demo", lmn_tool_demo, "[--calls N] [--size BYTES]",
	 "request-reply and a crash on a fresh bus"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: liminal VERB [ARGS]   (liminal VERB --help for one verb)\n\nverbs:\n");
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		fprintf(f, "  %-7s %s\n          %s\n", verbs[i].name, verbs[i].what, verbs[i].args);
	fprintf(f, "\nExit status: 0 done, 1 the operation failed, 2 bad command line.\n"
		   "See liminal(1) and liminal(7).\n");
}

/* Output that could not be written is a failure, said on one line: a
 * redirect to a full disk must not pass for success (stats > f && mv). */
static int finish(const char *verb, int rc)
{
	int e;

	errno = 0;
	if (fflush(stdout) == 0 && !ferror(stdout))
		return rc;
	e = errno ? errno : EIO;
	lmn_tool_err("liminal%s%s: standard output: %s\n", verb ? " " : "", verb ? verb : "",
		strerror(e));
	return rc == LMN_TOOL_OK ? LMN_TOOL_FAILED : rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		lmn_tool_err("usage: liminal VERB [ARGS]   (liminal --help lists the verbs)\n");
		return LMN_TOOL_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return finish(NULL, LMN_TOOL_OK);
	}
	if (!strcmp(argv[1], "--version")) {
		printf("liminal %s\n", LIMINAL_VERSION_STRING);
		return finish(NULL, LMN_TOOL_OK);
	}
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return finish(argv[1], verbs[i].run(argc - 1, argv + 1));
	lmn_tool_err("liminal: unknown verb '%s' (try 'liminal --help')\n", argv[1]);
	return LMN_TOOL_USAGE;
}
