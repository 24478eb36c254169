/* SPDX-License-Identifier: MIT */
/*
 * Is a participant's process still the one that joined?  A pid alone is not
 * enough, since pids are recycled: the entry also records the process start
 * time and, on kernels with pidfs (6.9+), the inode of its pidfd, which is
 * unique for the life of the system.  We open a pidfd first and check
 * identity through it, so the answer is about one process for good.
 */
#include <errno.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define PIDFS_MAGIC 0x50494446

static int pidfd_open(int32_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

uint64_t lmn__self_pidfs_ino(void)
{
	struct statfs sfs;
	struct stat st;
	uint64_t ino = 0;
	int fd = pidfd_open(getpid());

	if (fd < 0)
		return 0;
	/* Before pidfs, every pidfd shares one anonymous inode: useless. */
	if (fstatfs(fd, &sfs) == 0 && sfs.f_type == PIDFS_MAGIC && fstat(fd, &st) == 0)
		ino = st.st_ino;
	close(fd);
	return ino;
}

int lmn__proc_alive(int32_t pid, uint64_t start_time, uint64_t pidfs_ino, int *ret_pidfd)
{
	struct pollfd pfd;
	struct stat st;
	int fd;

	if (pid <= 0)
		return 0;
	fd = pidfd_open(pid);
	if (fd < 0)
		/* No such process is the one certain answer; anything else
		 * (out of descriptors) cannot tell, so do not kill it. */
		return errno == ESRCH ? 0 : 1;
	if (pidfs_ino) {
		if (fstat(fd, &st) == 0 && (uint64_t)st.st_ino != pidfs_ino)
			goto dead;
	} else if (start_time) {
		/* Read after the pidfd was opened: if the pid was recycled
		 * in between, the pidfd is the old process's and reads as
		 * exited below; if before, the start time differs.  A stat we
		 * cannot read (hidepid, another user) tells nothing. */
		uint64_t now = lmn__proc_start_time(pid);

		if (now && now != start_time)
			goto dead;
	}
	/* A pidfd is readable once the process has exited, reaped or not. */
	pfd.fd = fd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, 0) == 1)
		goto dead;
	if (ret_pidfd)
		*ret_pidfd = fd;
	else
		close(fd);
	return 1;
dead:
	close(fd);
	return 0;
}
