/* SPDX-License-Identifier: MIT */
/* Names of buses, participants and services, and where buses live. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int lmn__check_name(const char *name)
{
	size_t n;

	if (!name)
		return -EINVAL;
	n = strnlen(name, LMN_NAME_MAX + 1);
	if (n > LMN_NAME_MAX)
		return -ENAMETOOLONG;
	if (n == 0 || name[0] == '.')
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return -EINVAL;
	}
	return 0;
}

/* Buses are files in /dev/shm, or in $LIMINAL_DIR when set (tests use a
 * private directory so that parallel runs never meet). */
int lmn__bus_path(char *buf, size_t cap, const char *name, const char *prefix)
{
	const char *dir = getenv("LIMINAL_DIR");
	int n;

	if (!dir || !*dir)
		dir = "/dev/shm";
	n = snprintf(buf, cap, "%s/%sliminal.%s", dir, prefix, name);
	if (n < 0 || (size_t)n >= cap)
		return -ENAMETOOLONG;
	return 0;
}

/* Field 22 of /proc/PID/stat: the start time in clock ticks since boot.
 * With the pid it names one process for good, since pids are recycled but
 * not within the same tick.  0 when it cannot be read. */
uint64_t lmn__proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long long v = 0;
	ssize_t n;
	char *p;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: skip to the last
	 * ')' and count fields from field 3. */
	p = strrchr(buf, ')');
	if (!p)
		return 0;
	p++;
	for (int field = 3; field <= 22 && p; field++) {
		while (*p == ' ')
			p++;
		if (field == 22) {
			v = strtoull(p, NULL, 10);
			break;
		}
		p = strchr(p, ' ');
	}
	return v;
}
