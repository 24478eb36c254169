/* SPDX-License-Identifier: MIT */
/* liminal status and liminal stats: one picture of a bus, for people
 * (status), for scripts (--json) and for Prometheus (stats). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liminal.h"
#include "verbs.h"
#include "../lib/inspect.h"

const char *lmn_tool_phase(enum lmn_phase p)
{
	switch (p) {
	case LMN_PHASE_CREATED: return "created";
	case LMN_PHASE_ACTIVE: return "active";
	case LMN_PHASE_COMPLETING: return "completing";
	case LMN_PHASE_CLOSED: return "closed";
	case LMN_PHASE_FAILED: return "failed";
	}
	return "failed";
}

const char *lmn_tool_policy(enum lmn_policy p)
{
	switch (p) {
	case LMN_POLICY_FAIL: return "fail";
	case LMN_POLICY_ROUTE_NEXT: return "route-next";
	case LMN_POLICY_COMPENSATE: return "compensate";
	}
	return "fail";
}

const char *lmn_tool_health(int h)
{
	switch (h) {
	case LMN__INSP_ALIVE: return "alive";
	case LMN__INSP_JOINING: return "joining";
	case LMN__INSP_LEAVING: return "leaving";
	default: return "dead";
	}
}

/* The distinct services of the picture, each with its servers. */
static void print_services(const struct lmn__insp *s, struct lmn_json *j)
{
	const char **seen = calloc(s->n_parts * 8u + 1u, sizeof(*seen));
	uint32_t n_seen = 0;

	if (j) {
		lmn_json_key(j, "services");
		lmn_json_begin_arr(j);
	} else {
		printf("\nservices\n  %-24s %s\n", "SERVICE", "SERVERS");
	}
	for (uint32_t i = 0; i < s->n_parts; i++) {
		for (uint32_t k = 0; k < s->parts[i].n_services; k++) {
			const char *svc = s->parts[i].services[k];
			bool dup = false;

			for (uint32_t d = 0; d < n_seen; d++)
				dup = dup || !strcmp(seen[d], svc);
			if (dup || !seen)
				continue;
			seen[n_seen++] = svc;
			if (j) {
				lmn_json_begin_obj(j);
				lmn_json_key(j, "name");
				lmn_json_str(j, svc);
				lmn_json_key(j, "servers");
				lmn_json_begin_arr(j);
			} else {
				printf("  %-24s", svc);
			}
			for (uint32_t p = 0, first = 1; p < s->n_parts; p++) {
				for (uint32_t q = 0; q < s->parts[p].n_services; q++) {
					if (strcmp(s->parts[p].services[q], svc))
						continue;
					if (j)
						lmn_json_str(j, s->parts[p].name);
					else
						printf("%s%s", first ? " " : ", ", s->parts[p].name);
					first = 0;
				}
			}
			if (j) {
				lmn_json_end_arr(j);
				lmn_json_end_obj(j);
			} else {
				printf("\n");
			}
		}
	}
	if (j)
		lmn_json_end_arr(j);
	free(seen);
}

void lmn_tool_json_part(struct lmn_json *j, const struct lmn__insp_part *p)
{
	lmn_json_key(j, "name");
	lmn_json_str(j, p->name);
	lmn_json_key(j, "pid");
	lmn_json_i64(j, p->pid);
	lmn_json_key(j, "health");
	lmn_json_str(j, lmn_tool_health(p->health));
}

void lmn_tool_json_conv(struct lmn_json *j, const struct lmn__insp_conv *c)
{
	lmn_json_key(j, "id");
	lmn_json_u64(j, c->id);
	lmn_json_key(j, "initiator");
	lmn_json_str(j, c->initiator);
	lmn_json_key(j, "server");
	if (c->buffering)
		lmn_json_null(j);
	else
		lmn_json_str(j, c->server);
	lmn_json_key(j, "service");
	lmn_json_str(j, c->service);
	lmn_json_key(j, "phase");
	lmn_json_str(j, lmn_tool_phase(c->phase));
	lmn_json_key(j, "sent");
	lmn_json_u64(j, c->sent);
	lmn_json_key(j, "received");
	lmn_json_u64(j, c->received);
}

static void status_json(const struct lmn__insp *s)
{
	struct lmn_json j;

	lmn_json_init(&j, stdout);
	lmn_json_begin_obj(&j);
	lmn_json_key(&j, "bus");
	lmn_json_begin_obj(&j);
	lmn_json_key(&j, "name");
	lmn_json_str(&j, s->name);
	lmn_json_key(&j, "size");
	lmn_json_u64(&j, s->stat.size);
	lmn_json_key(&j, "created_ns");
	lmn_json_u64(&j, s->stat.created_ns);
	lmn_json_key(&j, "creator");
	lmn_json_begin_obj(&j);
	lmn_json_key(&j, "pid");
	lmn_json_i64(&j, s->stat.creator_pid);
	lmn_json_key(&j, "alive");
	lmn_json_bool(&j, s->stat.creator_alive);
	lmn_json_end_obj(&j);
	lmn_json_key(&j, "kept");
	lmn_json_bool(&j, s->stat.flags & LMN_BUS_KEEP);
	lmn_json_key(&j, "ring_depth");
	lmn_json_u64(&j, s->stat.ring_depth);
	lmn_json_key(&j, "max_message");
	lmn_json_u64(&j, s->stat.max_message);
	lmn_json_end_obj(&j);

	lmn_json_key(&j, "participants");
	lmn_json_begin_arr(&j);
	for (uint32_t i = 0; i < s->n_parts; i++) {
		const struct lmn__insp_part *p = &s->parts[i];

		lmn_json_begin_obj(&j);
		lmn_json_key(&j, "slot");
		lmn_json_u64(&j, p->slot);
		lmn_tool_json_part(&j, p);
		lmn_json_key(&j, "services");
		lmn_json_begin_arr(&j);
		for (uint32_t k = 0; k < p->n_services; k++)
			lmn_json_str(&j, p->services[k]);
		lmn_json_end_arr(&j);
		lmn_json_key(&j, "serving");
		lmn_json_u64(&j, p->serving);
		lmn_json_key(&j, "joined_ns");
		lmn_json_u64(&j, p->joined_ns);
		lmn_json_key(&j, "age_s");
		lmn_json_double(&j, lmn_tool_age_s(p->joined_ns));
		lmn_json_end_obj(&j);
	}
	lmn_json_end_arr(&j);

	print_services(s, &j);

	lmn_json_key(&j, "conversations");
	lmn_json_begin_arr(&j);
	for (uint32_t i = 0; i < s->n_convs; i++) {
		const struct lmn__insp_conv *c = &s->convs[i];

		lmn_json_begin_obj(&j);
		lmn_tool_json_conv(&j, c);
		lmn_json_key(&j, "policy");
		lmn_json_str(&j, lmn_tool_policy(c->policy));
		lmn_json_key(&j, "served");
		lmn_json_u64(&j, c->served);
		lmn_json_key(&j, "replied");
		lmn_json_u64(&j, c->replied);
		lmn_json_key(&j, "opened_ns");
		lmn_json_u64(&j, c->opened_ns);
		lmn_json_key(&j, "age_s");
		lmn_json_double(&j, lmn_tool_age_s(c->opened_ns));
		lmn_json_key(&j, "crashes");
		lmn_json_u64(&j, c->n_crashes);
		lmn_json_key(&j, "cells_used");
		lmn_json_u64(&j, c->cells_used);
		lmn_json_end_obj(&j);
	}
	lmn_json_end_arr(&j);

	lmn_json_key(&j, "memory");
	lmn_json_begin_obj(&j);
	lmn_json_key(&j, "size");
	lmn_json_u64(&j, s->stat.size);
	lmn_json_count(&j, "cells", s->stat.cells_used, s->stat.cells_total);
	lmn_json_count(&j, "participants", s->stat.participants_used,
		       s->stat.participants_total);
	lmn_json_count(&j, "conversations", s->stat.conversations_used,
		       s->stat.conversations_total);
	lmn_json_end_obj(&j);
	lmn_json_end_obj(&j);
}

static void status_text(const struct lmn__insp *s)
{
	char size[16], when[32], age[24];

	lmn_tool_size(s->stat.size, size, sizeof(size));
	lmn_tool_time(s->stat.created_ns, when, sizeof(when));
	printf("bus %s: %s (%llu bytes), created %s by pid %d%s%s\n", s->name, size,
	       (unsigned long long)s->stat.size, when, (int)s->stat.creator_pid,
	       s->stat.creator_alive ? "" : " (gone)",
	       s->stat.flags & LMN_BUS_KEEP ? ", kept until removed" : "");
	printf("  ring depth %u, max message %u bytes\n", s->stat.ring_depth, s->stat.max_message);

	/* Names run to 63 characters: columns as wide as the longest. */
	int wn = 4, wi = 9, ws = 6, wv = 7;

	for (uint32_t i = 0; i < s->n_parts; i++)
		wn = (int)strlen(s->parts[i].name) > wn ? (int)strlen(s->parts[i].name) : wn;
	for (uint32_t i = 0; i < s->n_convs; i++) {
		const struct lmn__insp_conv *c = &s->convs[i];

		wi = (int)strlen(c->initiator) > wi ? (int)strlen(c->initiator) : wi;
		ws = (int)strlen(c->server) > ws ? (int)strlen(c->server) : ws;
		wv = (int)strlen(c->service) > wv ? (int)strlen(c->service) : wv;
	}
	printf("\nparticipants (%u/%u)\n", s->stat.participants_used, s->stat.participants_total);
	printf("  %4s %-*s %8s %-8s %-24s %7s %s\n", "SLOT", wn, "NAME", "PID", "HEALTH",
	       "SERVICES", "SERVING", "AGE");
	for (uint32_t i = 0; i < s->n_parts; i++) {
		const struct lmn__insp_part *p = &s->parts[i];
		char svcs[256] = "";
		size_t off = 0;

		for (uint32_t k = 0; k < p->n_services && off < sizeof(svcs); k++)
			off += (size_t)snprintf(svcs + off, sizeof(svcs) - off, "%s%s", k ? "," : "",
						p->services[k]);
		lmn_tool_age(p->joined_ns, age, sizeof(age));
		printf("  %4u %-*s %8d %-8s %-24s %7u %s\n", p->slot, wn, p->name[0] ? p->name : "-",
		       (int)p->pid, lmn_tool_health(p->health), svcs[0] ? svcs : "-", p->serving,
		       age);
	}

	print_services(s, NULL);

	printf("\nconversations (%u/%u)\n", s->stat.conversations_used,
	       s->stat.conversations_total);
	printf("  %-18s %-*s %-*s %-*s %-10s %-10s %8s %8s %s\n", "ID", wi, "INITIATOR", ws,
	       "SERVER", wv, "SERVICE", "PHASE", "POLICY", "SENT", "RECEIVED", "AGE");
	for (uint32_t i = 0; i < s->n_convs; i++) {
		const struct lmn__insp_conv *c = &s->convs[i];

		lmn_tool_age(c->opened_ns, age, sizeof(age));
		printf("  0x%016llx %-*s %-*s %-*s %-10s %-10s %8llu %8llu %s\n",
		       (unsigned long long)c->id, wi, c->initiator, ws,
		       c->buffering ? "-" : c->server, wv, c->service[0] ? c->service : "-",
		       lmn_tool_phase(c->phase),
		       lmn_tool_policy(c->policy), (unsigned long long)c->sent,
		       (unsigned long long)c->received, age);
	}

	printf("\nmemory\n");
	printf("  segment        %llu bytes\n", (unsigned long long)s->stat.size);
	printf("  cells          %u used, %u free\n", s->stat.cells_used,
	       s->stat.cells_total - s->stat.cells_used);
	printf("  participants   %u used, %u free\n", s->stat.participants_used,
	       s->stat.participants_total - s->stat.participants_used);
	printf("  conversations  %u used, %u free\n", s->stat.conversations_used,
	       s->stat.conversations_total - s->stat.conversations_used);
}

int lmn_tool_status(int argc, char **argv)
{
	bool json = false;
	const struct lmn_tool_opt opts[] = {{"--json", LMN_OPT_FLAG, &json, 0, 0}, {0}};
	struct lmn__insp s;
	const char *pos[1];
	int n, r;

	r = lmn_tool_args(argc, argv, opts, pos, 1, 1, &n, "liminal status NAME [--json]");
	if (r)
		return lmn_tool_args_exit(r);
	r = lmn__inspect(pos[0], &s);
	if (r < 0)
		return lmn_tool_fail("status", pos[0], r);
	if (json)
		status_json(&s);
	else
		status_text(&s);
	lmn__inspect_free(&s);
	return LMN_TOOL_OK;
}

/* Prometheus: a label value is a quoted string with \, " and newline
 * escaped; names here never hold them, but the bus is not trusted. */
static void prom_label(const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			printf("\\%c", *v);
		else if (*v == '\n')
			printf("\\n");
		else
			putchar(*v);
	}
}

static void prom_head(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_value(const char *name, const char *bus, const char *extra, uint64_t v)
{
	printf("%s{bus=\"", name);
	prom_label(bus);
	printf("\"%s} %llu\n", extra ? extra : "", (unsigned long long)v);
}

static void stats_prometheus(const struct lmn__insp *s)
{
	static const enum lmn_phase phases[] = {LMN_PHASE_CREATED, LMN_PHASE_ACTIVE,
						LMN_PHASE_COMPLETING, LMN_PHASE_CLOSED,
						LMN_PHASE_FAILED};
	uint32_t dead = s->stat.participants_dead;
	char extra[256];

	prom_head("liminal_bus_size_bytes", "gauge", "Bytes of shared segment.");
	prom_value("liminal_bus_size_bytes", s->name, NULL, s->stat.size);
	prom_head("liminal_participants", "gauge", "Participant slots in use, by health.");
	prom_value("liminal_participants", s->name, ",state=\"alive\"",
		   s->stat.participants_used - dead);
	prom_value("liminal_participants", s->name, ",state=\"dead\"", dead);
	prom_head("liminal_participants_capacity", "gauge", "Participant slots in all.");
	prom_value("liminal_participants_capacity", s->name, NULL, s->stat.participants_total);
	prom_head("liminal_conversations", "gauge", "Open conversations, by phase.");
	for (size_t k = 0; k < sizeof(phases) / sizeof(phases[0]); k++) {
		uint64_t count = 0;

		for (uint32_t i = 0; i < s->n_convs; i++)
			count += s->convs[i].phase == phases[k];
		snprintf(extra, sizeof(extra), ",phase=\"%s\"", lmn_tool_phase(phases[k]));
		prom_value("liminal_conversations", s->name, extra, count);
	}
	prom_head("liminal_conversations_capacity", "gauge", "Conversation slots in all.");
	prom_value("liminal_conversations_capacity", s->name, NULL, s->stat.conversations_total);
	prom_head("liminal_cells_used", "gauge", "Message cells holding a message or held.");
	prom_value("liminal_cells_used", s->name, NULL, s->stat.cells_used);
	prom_head("liminal_cells_capacity", "gauge", "Message cells in all, both directions.");
	prom_value("liminal_cells_capacity", s->name, NULL, s->stat.cells_total);
	prom_head("liminal_leaves_total", "counter", "Clean leaves since the bus was created.");
	prom_value("liminal_leaves_total", s->name, NULL, s->stat.leaves);
	prom_head("liminal_crashes_total", "counter", "Deaths handled since the bus was created.");
	prom_value("liminal_crashes_total", s->name, NULL, s->stat.crashes);
	prom_head("liminal_conversation_messages_total", "counter",
		  "Messages of each open conversation: requests sent, replies sent.");
	for (uint32_t i = 0; i < s->n_convs; i++) {
		const struct lmn__insp_conv *c = &s->convs[i];

		for (int dir = 0; dir < 2; dir++) {
			printf("liminal_conversation_messages_total{bus=\"");
			prom_label(s->name);
			printf("\",conversation=\"0x%016llx\",service=\"", (unsigned long long)c->id);
			prom_label(c->service);
			printf("\",direction=\"%s\"} %llu\n", dir ? "reply" : "request",
			       (unsigned long long)(dir ? c->replied : c->sent));
		}
	}
}

static void stats_plain(const struct lmn__insp *s, bool json)
{
	const struct {
		const char *key;
		uint64_t v;
	} kv[] = {
		{"size_bytes", s->stat.size},
		{"participants_used", s->stat.participants_used},
		{"participants_dead", s->stat.participants_dead},
		{"participants_total", s->stat.participants_total},
		{"conversations_used", s->stat.conversations_used},
		{"conversations_total", s->stat.conversations_total},
		{"cells_used", s->stat.cells_used},
		{"cells_total", s->stat.cells_total},
		{"leaves", s->stat.leaves},
		{"crashes", s->stat.crashes},
	};
	uint64_t requests = 0, replies = 0;
	struct lmn_json j;

	for (uint32_t i = 0; i < s->n_convs; i++) {
		requests += s->convs[i].sent;
		replies += s->convs[i].replied;
	}
	lmn_json_init(&j, stdout);
	if (json)
		lmn_json_begin_obj(&j);
	for (size_t k = 0; k < sizeof(kv) / sizeof(kv[0]); k++) {
		if (json) {
			lmn_json_key(&j, kv[k].key);
			lmn_json_u64(&j, kv[k].v);
		} else {
			printf("%s %llu\n", kv[k].key, (unsigned long long)kv[k].v);
		}
	}
	if (json) {
		lmn_json_key(&j, "open_requests");
		lmn_json_u64(&j, requests);
		lmn_json_key(&j, "open_replies");
		lmn_json_u64(&j, replies);
		lmn_json_end_obj(&j);
	} else {
		printf("open_requests %llu\nopen_replies %llu\n", (unsigned long long)requests,
		       (unsigned long long)replies);
	}
}

int lmn_tool_stats(int argc, char **argv)
{
	bool json = false, prom = false;
	const struct lmn_tool_opt opts[] = {
		{"--json", LMN_OPT_FLAG, &json, 0, 0},
		{"--prometheus", LMN_OPT_FLAG, &prom, 0, 0},
		{0},
	};
	struct lmn__insp s;
	const char *pos[1];
	int n, r;

	r = lmn_tool_args(argc, argv, opts, pos, 1, 1, &n,
			  "liminal stats NAME [--prometheus | --json]");
	if (r)
		return lmn_tool_args_exit(r);
	if (json && prom)
		return lmn_tool_usage_error("stats", "--json and --prometheus exclude each other");
	r = lmn__inspect(pos[0], &s);
	if (r < 0)
		return lmn_tool_fail("stats", pos[0], r);
	if (prom)
		stats_prometheus(&s);
	else
		stats_plain(&s, json);
	lmn__inspect_free(&s);
	return LMN_TOOL_OK;
}
