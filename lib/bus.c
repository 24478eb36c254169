/* SPDX-License-Identifier: MIT */
/* Buses: creating, removing, joining, leaving, serving. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <ck_pr.h>

#include "internal.h"
#include "../shm/table.h"
#include "../shm/word.h"

#define DEFAULT_PARTICIPANTS 64u
#define DEFAULT_CONVERSATIONS 256u
#define DEFAULT_DEPTH 8u
#define DEFAULT_MAX_MESSAGE 4096u
#define DEFAULT_SPIN_NS 50000u
#define MAX_SPIN_NS 1000000000u

/* Open the bus file at path with flags, and fstat it into *st.  Never
 * blocks: a FIFO put in a bus's place would hold an open for reading
 * until someone wrote to it, and every liminal ls with it.  Anything but a
 * regular file is not a bus: -EBADMSG. */
static int open_bus_file(const char *path, int flags, struct stat *st)
{
	int fd = open(path, flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		return errno == EISDIR ? -EBADMSG : -errno; /* for writing */
	if (fstat(fd, st) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		return -EBADMSG;
	}
	return fd;
}

/* Is anyone alive on the bus at path: its creator, or any participant?  A
 * file that is not a valid bus counts as live: it is not ours to remove;
 * so does a bus made to be kept (LMN_BUS_KEEP), whose creator is usually
 * gone by design (liminal create). */
static bool bus_is_live(const char *path)
{
	struct lmn__layout l;
	struct lmn__header *h;
	struct stat st;
	bool live = false;
	void *base;
	int fd;

	fd = open_bus_file(path, O_RDONLY, &st);
	if (fd < 0)
		return fd != -ENOENT;
	if (st.st_size < (off_t)sizeof(struct lmn__header)) {
		close(fd);
		return true;
	}
	base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED)
		return true;
	h = base;
	if (lmn__layout_validate(&l, base, (uint64_t)st.st_size) < 0) {
		live = true;
		goto out;
	}
	if ((ck_pr_load_32(&h->flags) & LMN_BUS_KEEP) ||
	    lmn__proc_alive(h->creator_pid, h->creator_start, 0, NULL)) {
		live = true;
		goto out;
	}
	for (uint32_t i = 0; i < l.participants && !live; i++) {
		struct lmn__participant *p = lmn__part(&l, base, i);
		uint64_t w = ck_pr_load_64(&p->slot);

		switch (lmn__slot_state(w)) {
		case LMN__SLOT_FREE:
			break;
		case LMN__SLOT_CLAIMED:
			live = lmn__proc_alive(lmn__slot_pid(w), 0, 0, NULL);
			break;
		default:
			live = lmn__proc_alive(p->pid, p->start_time, p->pidfs_ino, NULL);
		}
	}
out:
	munmap(base, (size_t)st.st_size);
	return live;
}

LMN_EXPORT int lmn_bus_create(const char *name, const struct lmn_bus_config *config)
{
	struct lmn_bus_config cfg = {0};
	char path[PATH_MAX], tmp[PATH_MAX];
	struct lmn__layout l;
	struct statvfs vfs;
	void *base;
	int fd, r;

	r = lmn__check_name(name);
	if (r < 0)
		return r;
	if (config) {
		cfg = *config;
		for (size_t i = 0; i < sizeof(cfg.reserved) / sizeof(cfg.reserved[0]); i++)
			if (cfg.reserved[i])
				return -EINVAL;
	}
	if ((cfg.mode & ~0777u) || (cfg.flags & ~LMN_BUS_KEEP))
		return -EINVAL;
	r = lmn__layout_compute(&l, cfg.participants ? cfg.participants : DEFAULT_PARTICIPANTS,
				cfg.conversations ? cfg.conversations : DEFAULT_CONVERSATIONS,
				cfg.ring_depth ? cfg.ring_depth : DEFAULT_DEPTH,
				cfg.max_message ? cfg.max_message : DEFAULT_MAX_MESSAGE);
	if (r < 0)
		return r;
	r = lmn__bus_path(path, sizeof(path), name, "");
	if (r < 0)
		return r;
	r = lmn__bus_path(tmp, sizeof(tmp), name, ".");
	if (r < 0 || strlen(tmp) + 7 >= sizeof(tmp))
		return -ENAMETOOLONG;
	strcat(tmp, ".XXXXXX");

	/* Build the segment under a temporary name and publish it with link(),
	 * which fails if the name exists: nobody ever maps a half-made bus, and
	 * of two simultaneous creators exactly one wins. */
	fd = mkstemp(tmp);
	if (fd < 0)
		return -errno;
	if (fstatvfs(fd, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < l.total_size) {
		r = -ENOSPC;
		goto fail;
	}
	if (fchmod(fd, cfg.mode ? cfg.mode : 0600) < 0) {
		r = -errno;
		goto fail;
	}
	/* Reserve every page now.  A sparse file on a tmpfs that fills up
	 * later would kill whoever first touches a missing page with SIGBUS;
	 * better to refuse the bus here with -ENOSPC. */
	r = posix_fallocate(fd, 0, (off_t)l.total_size);
	if (r) {
		r = r == EFBIG ? -ENOSPC : -r;
		goto fail;
	}
	base = mmap(NULL, sizeof(struct lmn__header), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	lmn__layout_init_header(&l, base, cfg.mode ? cfg.mode : 0600);
	lmn__hdr(base)->creator_start = lmn__proc_start_time(getpid());
	lmn__hdr(base)->flags = cfg.flags;
	munmap(base, sizeof(struct lmn__header));
	for (int attempt = 0;; attempt++) {
		if (link(tmp, path) == 0)
			break;
		r = -errno;
		/* A bus whose every process is gone is replaced, so that a
		 * crashed application starts again without anyone removing
		 * files by hand.  Unlink, then link again: if another creator
		 * got there first, its bus is live and we say so. */
		if (r != -EEXIST || attempt > 0 || bus_is_live(path))
			goto fail;
		if (unlink(path) < 0 && errno != ENOENT) {
			r = -errno;
			goto fail;
		}
	}
	unlink(tmp);
	close(fd);
	return 0;
fail:
	unlink(tmp);
	close(fd);
	return r;
}

LMN_EXPORT int lmn_bus_unlink(const char *name)
{
	char path[PATH_MAX];
	int r = lmn__check_name(name);

	if (r < 0)
		return r;
	r = lmn__bus_path(path, sizeof(path), name, "");
	if (r < 0)
		return r;
	if (unlink(path) < 0)
		return -errno;
	return 0;
}

static uint32_t env_spin_ns(void)
{
	const char *s = getenv("LIMINAL_SPIN_NS");
	char *end;
	unsigned long v;

	if (!s || !*s)
		return DEFAULT_SPIN_NS;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || v > MAX_SPIN_NS)
		return DEFAULT_SPIN_NS;
	return (uint32_t)v;
}

/* A machine with one CPU can never run a peer beside a spinner.  (A process
 * pinned to one CPU still can, when its peer is pinned elsewhere: that case
 * is decided per wait, by where the peer last ran.) */
static bool more_than_one_cpu(void)
{
	return sysconf(_SC_NPROCESSORS_ONLN) >= 2;
}

/* Map the bus file called name, for reading and writing or read-only, and
 * validate its header into *ret_l; *ret_id, if not NULL, gets the file's
 * identity (device and inode), taken from the file mapped.  The one way
 * into a segment. */
int lmn__bus_map_id(const char *name, bool writable, void **ret_base, struct lmn__layout *ret_l,
		    struct stat *ret_id)
{
	char path[PATH_MAX];
	struct stat st;
	void *base;
	int fd, r;

	r = lmn__bus_path(path, sizeof(path), name, "");
	if (r < 0)
		return r;
	fd = open_bus_file(path, writable ? O_RDWR : O_RDONLY, &st);
	if (fd < 0)
		return fd;
	if (st.st_size < (off_t)sizeof(struct lmn__header)) {
		close(fd);
		return -EBADMSG;
	}
	base = mmap(NULL, (size_t)st.st_size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED,
		    fd, 0);
	close(fd);
	if (base == MAP_FAILED)
		return -errno;
	r = lmn__layout_validate(ret_l, base, (uint64_t)st.st_size);
	if (r < 0) {
		munmap(base, (size_t)st.st_size);
		return r;
	}
	*ret_base = base;
	if (ret_id)
		*ret_id = st;
	return 0;
}

int lmn__bus_map(const char *name, bool writable, void **ret_base, struct lmn__layout *ret_l)
{
	return lmn__bus_map_id(name, writable, ret_base, ret_l, NULL);
}

/* Reclaim every dead holder of a name; how many there were. */
static int reap_name(const struct lmn__layout *l, void *base, const char *name)
{
	int n = 0;

	for (uint32_t i = 0; i < l->participants; i++) {
		struct lmn__participant *p = lmn__part(l, base, i);
		uint64_t w = ck_pr_load_64(&p->slot);
		uint32_t st = lmn__slot_state(w);

		if (st != LMN__SLOT_LIVE && st != LMN__SLOT_JOINING && st != LMN__SLOT_CLOSING)
			continue;
		ck_pr_fence_load();
		if (!lmn__name_eq(p->name, name))
			continue;
		if (lmn__part_reap(l, base, i, lmn__slot_gen(w)) &&
		    ck_pr_load_64(&p->slot) != w)
			n++;
	}
	return n;
}

LMN_EXPORT int lmn_bus_join(const char *name, const char *self, lmn_bus **ret)
{
	struct lmn_bus *bus;
	int r;

	r = lmn__check_name(name);
	if (r < 0)
		return r;
	r = lmn__check_name(self);
	if (r < 0)
		return r;
	if (!ret)
		return -EINVAL;
	bus = calloc(1, sizeof(*bus));
	if (!bus)
		return -ENOMEM;
	r = lmn__bus_map(name, true, &bus->base, &bus->l);
	if (r < 0)
		goto fail;
	bus->pid = (int32_t)getpid();
	/* A process killed while leaving left its entry behind under this
	 * name without holding it: reclaim it now rather than when the table
	 * fills. */
	(void)reap_name(&bus->l, bus->base, self);
	for (int attempt = 0;; attempt++) {
		r = lmn__part_claim(&bus->l, bus->base, self, bus->pid,
				    lmn__proc_start_time(bus->pid), lmn__self_pidfs_ino(),
				    &bus->self_idx, &bus->self_gen);
		/* A holder of the name, or of every slot, may be dead and not yet
		 * reclaimed: a restarted process must get its name back at once. */
		if (attempt > 0 || (r != -EADDRINUSE && r != -ENOSPC))
			break;
		if (r == -EADDRINUSE ? reap_name(&bus->l, bus->base, self) == 0
				     : lmn__bus_reap(&bus->l, bus->base) == 0)
			break;
	}
	if (r < 0) {
		munmap(bus->base, bus->l.total_size);
		goto fail;
	}
	/* Tell monitors sleeping on the roster that someone joined. */
	if (lmn__word_bump(&lmn__hdr(bus->base)->roster_word))
		lmn__wake(&lmn__hdr(bus->base)->roster_word);
	strcpy(bus->name, name);
	strcpy(bus->self, self);
	bus->spin_ns = env_spin_ns();
	ck_pr_store_int(&bus->can_spin, more_than_one_cpu());
	bus->last_peer_cpu = -1;
	bus->lock = (struct lmn__lock)LMN__LOCK_INIT;
	pthread_mutex_init(&bus->wlock, NULL);
	*ret = bus;
	return 0;
fail:
	free(bus);
	return r;
}

LMN_EXPORT int lmn_bus_leave(lmn_bus *bus)
{
	if (!bus)
		return 0;
	lmn__lock_take(&bus->lock);
	/* Conversations this process opened are closed and their slots given
	 * back; the handles stay valid for lmn_conv_state() and lmn_conv_free(). */
	while (bus->convs)
		lmn__conv_detach(bus->convs);
	lmn__lock_drop(&bus->lock);
	lmn__watches_stop(bus);
	lmn__watches_detach(bus);
	lmn__sentinel_forget(bus);
	lmn__serve_leave(bus);
	lmn__exit_record(&bus->l, bus->base, bus->self_idx, bus->self_gen, 0);
	lmn__part_release(&bus->l, bus->base, bus->self_idx, bus->self_gen);
	munmap(bus->base, bus->l.total_size);
	pthread_mutex_destroy(&bus->wlock);
	lmn__msgs_spare_free(bus);
	free(bus->pending);
	free(bus->queued);
	free(bus->ends);
	free(bus);
	return 0;
}

LMN_EXPORT int lmn_bus_gc(const char *name)
{
	struct lmn__layout l;
	void *base;
	int r = lmn__check_name(name);

	if (r < 0)
		return r;
	r = lmn__bus_map(name, true, &base, &l);
	if (r < 0)
		return r;
	/* Every participant whose process is gone is reaped as if a peer had
	 * noticed its death, and openers that died mid-open are undone. */
	r = lmn__bus_reap(&l, base);
	munmap(base, l.total_size);
	return r;
}

LMN_EXPORT int lmn_bus_serve(lmn_bus *bus, const char *service)
{
	struct lmn__participant *p;
	int r, free_slot = -1;

	if (!bus)
		return -EINVAL;
	r = lmn__check_name(service);
	if (r < 0)
		return r;
	p = lmn__part(&bus->l, bus->base, bus->self_idx);
	lmn__lock_take(&bus->lock);
	for (int s = 0; s < (int)LMN__SERVICES; s++) {
		if (lmn__name_eq(p->services[s], service)) {
			lmn__lock_drop(&bus->lock);
			return 0;
		}
		if (free_slot < 0 && p->services[s][0] == '\0')
			free_slot = s;
	}
	if (free_slot < 0) {
		lmn__lock_drop(&bus->lock);
		return -ENOSPC;
	}
	/* Write the tail first and the first byte last, with a store fence
	 * between: a reader never matches a half-written name. */
	memset(p->services[free_slot], 0, LMN__NAME_SIZE);
	memcpy(p->services[free_slot] + 1, service + 1, strlen(service));
	ck_pr_fence_store();
	ck_pr_store_char(&p->services[free_slot][0], service[0]);
	lmn__lock_drop(&bus->lock);
	return 0;
}

LMN_EXPORT int lmn_bus_set_spin(lmn_bus *bus, uint32_t spin_ns)
{
	if (!bus || spin_ns > MAX_SPIN_NS)
		return -EINVAL;
	ck_pr_store_int(&bus->can_spin, more_than_one_cpu());
	ck_pr_store_32(&bus->spin_ns, spin_ns);
	return 0;
}
