/* SPDX-License-Identifier: MIT */
/* The liminal command. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liminal.h"
#include "verbs.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: liminal VERB [ARGS]\n"
		   "\n"
		   "verbs:\n"
		   "  demo [--calls N] [--size BYTES]   request-reply between two processes on a fresh bus\n"
		   "  create NAME [--participants N] [--conversations N] [--ring N]\n"
		   "              [--max-message BYTES] [--mode OCTAL]\n"
		   "  rm NAME                            remove a bus\n"
		   "\n"
		   "See liminal(7).\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "demo"))
		return lmn_tool_demo(argc - 1, argv + 1);
	if (!strcmp(argv[1], "create"))
		return lmn_tool_create(argc - 1, argv + 1);
	if (!strcmp(argv[1], "rm"))
		return lmn_tool_rm(argc - 1, argv + 1);
	fprintf(stderr, "liminal: unknown verb '%s' (try 'liminal --help')\n", argv[1]);
	return 2;
}
