/* SPDX-License-Identifier: MIT */
/*
 * liminal: a conversation bus between processes on one host, over shared
 * memory.  This is the one public header.  Every call returns 0 or a
 * non-negative count on success and a negative errno value on failure; no
 * call sets errno, prints, or aborts on bad input, and output parameters are
 * left untouched on failure.  See liminal(7) for the model.
 */
#ifndef LIMINAL_H
#define LIMINAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LMN_BUILDING_LIBRARY)
#define LMN_EXPORT __attribute__((visibility("default")))
#else
#define LMN_EXPORT
#endif

/* Limits of names: a bus, participant or service name is 1..LMN_NAME_MAX
 * bytes of [A-Za-z0-9._-], not starting with '.'. */
#define LMN_NAME_MAX 63
/* How many services one participant may serve. */
#define LMN_SERVICES_MAX 8

/* Opaque handles.  A bus handle is one participant's attachment to a bus; a
 * conversation handle is the initiator's end of one conversation; a message
 * handle is one request handed to a server by lmn_next(). */
typedef struct lmn_bus lmn_bus;
typedef struct lmn_conv lmn_conv;
typedef struct lmn_msg lmn_msg;
typedef struct lmn_watch lmn_watch;

/* Sizes of a new bus.  A zero field takes the default shown. */
struct lmn_bus_config {
	uint32_t participants;  /* participant slots, default 64, at most 4096 */
	uint32_t conversations; /* conversation slots, default 256, at most 1048576 */
	uint32_t ring_depth;    /* cells per ring, power of two, default 8, at most 4096 */
	uint32_t max_message;   /* largest payload in bytes, default 4096, at most 16 MiB */
	uint32_t mode;          /* file mode of the segment, default 0600 */
	uint32_t flags;         /* LMN_BUS_KEEP, or 0 */
	uint32_t reserved[2];   /* must be zero */
};

/* lmn_bus_config.flags: never replace this bus, even once every process on
 * it is gone; only lmn_bus_unlink() removes it. */
#define LMN_BUS_KEEP (1u << 0)

/* What happens to a conversation when its server dies.  There is no default:
 * a conversation config must name one. */
enum lmn_policy {
	LMN_POLICY_FAIL = 1,       /* the conversation fails; waiting receives return -ECONNRESET */
	LMN_POLICY_ROUTE_NEXT = 2, /* move to another server of the service, redeliver unanswered requests */
	LMN_POLICY_COMPENSATE = 3, /* record the death, change nothing, let the caller decide */
};

/* Lifecycle of a conversation. */
enum lmn_phase {
	LMN_PHASE_CREATED = 1,
	LMN_PHASE_ACTIVE = 2,
	LMN_PHASE_COMPLETING = 3,
	LMN_PHASE_CLOSED = 4,
	LMN_PHASE_FAILED = 5,
};

/* Health of a participant as last seen. */
enum lmn_health {
	LMN_HEALTH_NONE = 0,    /* no such participant (buffering conversation) */
	LMN_HEALTH_ALIVE = 1,   /* attached */
	LMN_HEALTH_LEFT = 2,    /* left the bus cleanly */
	LMN_HEALTH_CRASHED = 3, /* died while attached */
};

/* What a conversation's policy did about one crash. */
enum lmn_crash_action {
	LMN_CRASH_FAILED = 1,    /* FAIL: the conversation failed */
	LMN_CRASH_ROUTED = 2,    /* ROUTE_NEXT: moved to another server */
	LMN_CRASH_RECORDED = 3,  /* COMPENSATE: recorded, nothing changed */
	LMN_CRASH_NO_SERVER = 4, /* ROUTE_NEXT with no server left: failed */
	LMN_CRASH_INITIATOR = 5, /* the initiator died: the conversation failed */
};

struct lmn_crash_info {
	char name[LMN_NAME_MAX + 1]; /* the participant that died */
	pid_t pid;
	enum lmn_crash_action action;
	uint64_t exit_ns; /* CLOCK_REALTIME when the death was handled */
};

#define LMN_CRASH_RECORDS 4

struct lmn_conv_config {
	enum lmn_policy policy; /* required */
	int32_t timeout_ms;     /* deadline of every call, from the open; 0: none */
	uint32_t reserved[6];   /* must be zero */
};

/* lmn_send() flags. */
#define LMN_SEND_NONBLOCK 0x1u /* a full ring returns -EAGAIN instead of waiting */

/* Kinds of message lmn_next() hands to a server. */
enum lmn_msg_kind {
	LMN_MSG_REQUEST = 1, /* a request: read it, reply if you like, release it */
	LMN_MSG_CLOSED = 2,  /* the initiator closed the conversation; release it */
};

/* lmn_msg_flags() bits. */
#define LMN_MSG_REDELIVERED 0x1u  /* delivered before to a server that departed unanswered */
#define LMN_MSG_PEER_CRASHED 0x2u /* on LMN_MSG_CLOSED: the initiator died */

struct lmn_participant_info {
	char name[LMN_NAME_MAX + 1];
	pid_t pid;
	enum lmn_health health;
	uint64_t exit_ns; /* CLOCK_REALTIME of the exit, 0 while alive */
};

struct lmn_conv_info {
	uint64_t id;             /* the conversation's id on its bus */
	enum lmn_phase phase;
	enum lmn_policy policy;
	uint64_t sent;           /* messages sent by the initiator */
	uint64_t received;       /* messages received by the initiator */
	uint64_t deadline_ns;    /* CLOCK_MONOTONIC deadline, 0: none */
	uint32_t n_participants; /* 2, or 0 for a buffering conversation */
	struct lmn_participant_info participants[2]; /* [0] initiator, [1] server */
	uint32_t max_message;    /* largest message the bus carries, in bytes */
	uint32_t ring_depth;     /* messages a ring holds */
	uint32_t n_crashes;      /* crashes this conversation saw */
	struct lmn_crash_info crashes[LMN_CRASH_RECORDS]; /* the first of them */
	uint32_t reserved[6];
};

/* lmn_watch_wait() results. */
#define LMN_EXIT_LEFT 1    /* the participant left the bus */
#define LMN_EXIT_CRASHED 2 /* its process died while it was attached */

/* Usage of a bus, for tools and for proving that nothing leaked. */
struct lmn_bus_stat {
	uint64_t size;                /* bytes of segment */
	uint32_t participants_total;
	uint32_t participants_used;   /* live, joining or not yet reclaimed */
	uint32_t participants_dead;   /* of those, whose process is gone */
	uint32_t conversations_total;
	uint32_t conversations_used;
	uint32_t cells_total;         /* message cells, both directions */
	uint32_t cells_used;          /* cells holding a message or held */
	uint32_t max_message;
	uint32_t ring_depth;
	uint64_t leaves;              /* clean leaves since creation */
	uint64_t crashes;             /* deaths handled since creation */
	pid_t creator_pid;
	uint64_t created_ns;          /* CLOCK_REALTIME */
	uint32_t flags;               /* as created: LMN_BUS_KEEP, or 0 */
	uint32_t creator_alive;       /* 1 while the creating process runs */
	uint32_t reserved[6];
};

/* Buses. */
LMN_EXPORT int lmn_bus_create(const char *name, const struct lmn_bus_config *config);
LMN_EXPORT int lmn_bus_unlink(const char *name);
LMN_EXPORT int lmn_bus_join(const char *name, const char *self, lmn_bus **ret);
LMN_EXPORT int lmn_bus_leave(lmn_bus *bus);
LMN_EXPORT int lmn_bus_serve(lmn_bus *bus, const char *service);
LMN_EXPORT int lmn_bus_set_spin(lmn_bus *bus, uint32_t spin_ns);

/* Conversations, initiator side. */
LMN_EXPORT int lmn_conv_open(lmn_bus *bus, const char *target,
			     const struct lmn_conv_config *config, lmn_conv **ret);
LMN_EXPORT int lmn_conv_close(lmn_conv *conv);
LMN_EXPORT int lmn_conv_free(lmn_conv *conv);
LMN_EXPORT int lmn_conv_state(lmn_conv *conv, struct lmn_conv_info *ret);
LMN_EXPORT int lmn_send(lmn_conv *conv, const void *data, size_t len, unsigned int flags);
LMN_EXPORT ssize_t lmn_recv(lmn_conv *conv, void *buf, size_t cap, int timeout_ms);
LMN_EXPORT ssize_t lmn_call(lmn_conv *conv, const void *req, size_t len, void *buf,
			    size_t cap, int timeout_ms);

/* Serving side. */
LMN_EXPORT int lmn_next(lmn_bus *bus, lmn_msg **ret, int timeout_ms);
LMN_EXPORT int lmn_reply(lmn_msg *msg, const void *data, size_t len);
LMN_EXPORT int lmn_msg_release(lmn_msg *msg);
LMN_EXPORT const void *lmn_msg_data(const lmn_msg *msg);
LMN_EXPORT size_t lmn_msg_size(const lmn_msg *msg);
LMN_EXPORT int lmn_msg_kind(const lmn_msg *msg);
LMN_EXPORT unsigned int lmn_msg_flags(const lmn_msg *msg);
LMN_EXPORT uint64_t lmn_msg_conv_id(const lmn_msg *msg);
LMN_EXPORT const char *lmn_msg_sender(const lmn_msg *msg);

/* Exit watches. */
LMN_EXPORT int lmn_watch_open(lmn_bus *bus, const char *participant, lmn_watch **ret);
LMN_EXPORT int lmn_watch_wait(lmn_watch *watch, int timeout_ms);
LMN_EXPORT int lmn_watch_fd(const lmn_watch *watch);
LMN_EXPORT int lmn_watch_close(lmn_watch *watch);

/* Usage, by name, without joining; and reclaiming what dead processes left. */
LMN_EXPORT int lmn_bus_stat(const char *name, struct lmn_bus_stat *ret);
LMN_EXPORT int lmn_bus_gc(const char *name);

/* Which backend blocking calls sleep in: "io_uring" or "futex". */
LMN_EXPORT const char *lmn_wait_backend(void);

/* Cleanup helpers for __attribute__((cleanup)), in the manner of sd-bus. */
static inline void lmn_bus_leavep(lmn_bus **bus)
{
	if (bus && *bus)
		(void)lmn_bus_leave(*bus);
}
static inline void lmn_conv_freep(lmn_conv **conv)
{
	if (conv && *conv)
		(void)lmn_conv_free(*conv);
}
static inline void lmn_msg_releasep(lmn_msg **msg)
{
	if (msg && *msg)
		(void)lmn_msg_release(*msg);
}
static inline void lmn_watch_closep(lmn_watch **watch)
{
	if (watch && *watch)
		(void)lmn_watch_close(*watch);
}

#ifdef __cplusplus
}
#endif

#endif /* LIMINAL_H */
