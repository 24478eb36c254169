/* SPDX-License-Identifier: MIT */
/* liminal create, liminal rm. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liminal.h"
#include "verbs.h"

int lmn_tool_parse_u32(const char *s, int base, uint32_t max, uint32_t *ret)
{
	unsigned long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	v = strtoul(s, &end, base);
	if (errno || *end || v > max)
		return -1;
	*ret = (uint32_t)v;
	return 0;
}

int lmn_tool_create(int argc, char **argv)
{
	struct lmn_bus_config cfg = {0};
	const char *name = NULL;
	int r;

	for (int i = 1; i < argc; i++) {
		uint32_t *field = NULL;
		int base = 10;

		if (!strcmp(argv[i], "--help")) {
			printf("usage: liminal create NAME [--participants N] [--conversations N] "
			       "[--ring N] [--max-message BYTES] [--mode OCTAL]\n");
			return 0;
		}
		if (!strcmp(argv[i], "--participants"))
			field = &cfg.participants;
		else if (!strcmp(argv[i], "--conversations"))
			field = &cfg.conversations;
		else if (!strcmp(argv[i], "--ring"))
			field = &cfg.ring_depth;
		else if (!strcmp(argv[i], "--max-message"))
			field = &cfg.max_message;
		else if (!strcmp(argv[i], "--mode")) {
			field = &cfg.mode;
			base = 8;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "liminal create: unknown option '%s'\n", argv[i]);
			return 2;
		} else if (!name) {
			name = argv[i];
			continue;
		} else {
			fprintf(stderr, "liminal create: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
		if (i + 1 >= argc || lmn_tool_parse_u32(argv[i + 1], base, UINT32_MAX, field) < 0) {
			fprintf(stderr, "liminal create: %s needs a number\n", argv[i]);
			return 2;
		}
		i++;
	}
	if (!name) {
		fprintf(stderr, "liminal create: missing bus NAME\n");
		return 2;
	}
	r = lmn_bus_create(name, &cfg);
	if (r < 0) {
		fprintf(stderr, "liminal create: bus '%s': %s\n", name, strerror(-r));
		return 1;
	}
	return 0;
}

int lmn_tool_rm(int argc, char **argv)
{
	int r;

	if (argc == 2 && !strcmp(argv[1], "--help")) {
		printf("usage: liminal rm NAME\n");
		return 0;
	}
	if (argc != 2) {
		fprintf(stderr, "liminal rm: expected one bus NAME\n");
		return 2;
	}
	r = lmn_bus_unlink(argv[1]);
	if (r < 0) {
		fprintf(stderr, "liminal rm: bus '%s': %s\n", argv[1], strerror(-r));
		return 1;
	}
	return 0;
}
