/* SPDX-License-Identifier: MIT */
/*
 * Message handles: what lmn_next() hands out.  A handle points into the
 * segment (a request read in place) and lives on its bus's list until it is
 * released; released handles are kept for reuse, since one comes and goes
 * with every request.  Bus lock held for everything but the accessors.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "../shm/table.h"

void lmn__msgs_add(struct lmn_bus *bus, struct lmn_msg *m)
{
	m->prev = NULL;
	m->next = bus->msgs;
	if (bus->msgs)
		bus->msgs->prev = m;
	bus->msgs = m;
}

void lmn__msgs_del(struct lmn_bus *bus, struct lmn_msg *m)
{
	if (m->prev)
		m->prev->next = m->next;
	else
		bus->msgs = m->next;
	if (m->next)
		m->next->prev = m->prev;
}

/* Message handles come and go with every request: keep a few for reuse
 * rather than going to malloc each time.  Bus lock held.  A reused handle
 * is cleared up to the sender's name, which lmn_msg_sender() fills in only
 * when asked (sender_known).  Clearing the whole handle, name and all, cost
 * about 13 ns of a 220 ns spin round trip, on the way from a request to its
 * reply (perf/README.md). */
struct lmn_msg *lmn__msg_alloc(struct lmn_bus *bus)
{
	struct lmn_msg *m = bus->spare_msgs;

	if (!m)
		return calloc(1, sizeof(*m));
	bus->spare_msgs = m->next;
	bus->n_spare--;
	memset(m, 0, offsetof(struct lmn_msg, sender_name));
	return m;
}

void lmn__msg_free(struct lmn_bus *bus, struct lmn_msg *m)
{
	if (bus->n_spare >= 64) {
		free(m);
		return;
	}
	m->next = bus->spare_msgs;
	bus->spare_msgs = m;
	bus->n_spare++;
}

void lmn__msgs_spare_free(struct lmn_bus *bus)
{
	while (bus->spare_msgs) {
		struct lmn_msg *m = bus->spare_msgs;

		bus->spare_msgs = m->next;
		free(m);
	}
	bus->n_spare = 0;
}

LMN_EXPORT const void *lmn_msg_data(const lmn_msg *msg)
{
	return msg ? msg->data : NULL;
}

LMN_EXPORT size_t lmn_msg_size(const lmn_msg *msg)
{
	return msg ? msg->len : 0;
}

LMN_EXPORT int lmn_msg_kind(const lmn_msg *msg)
{
	return msg ? msg->kind : -EINVAL;
}

LMN_EXPORT unsigned int lmn_msg_flags(const lmn_msg *msg)
{
	return msg ? msg->flags : 0;
}

LMN_EXPORT uint64_t lmn_msg_conv_id(const lmn_msg *msg)
{
	return msg ? ((uint64_t)msg->conv_gen << 32) | msg->conv : 0;
}

LMN_EXPORT const char *lmn_msg_sender(const lmn_msg *msg)
{
	struct lmn_msg *m = (struct lmn_msg *)msg;
	struct lmn__conv *c;

	if (!m)
		return NULL;
	/* Copied on first use, not for every request: most servers never
	 * ask.  The server's reference pins the conversation while the
	 * message is held, so the name read here is the sender's. */
	if (!m->sender_known) {
		m->sender_name[0] = '\0';
		if (m->bus) {
			c = lmn__conv_at(&m->bus->l, m->bus->base, m->conv);
			if (lmn__name_copy(m->sender_name, c->initiator_name) < 0)
				m->sender_name[0] = '\0';
		}
		m->sender_known = 1;
	}
	return m->sender_name;
}
