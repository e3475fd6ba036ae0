/*
 * The supervisor's state as one JSON document (`tunnelpool status --json`,
 * the control socket's "status" and "top"), and the periodic stats line.
 * The schema is documented in docs/operators.md and is stable.
 */
#ifndef TP_SUPERVISOR_STATUS_H
#define TP_SUPERVISOR_STATUS_H

#include <jansson.h>

struct sup;

/* Returns a new status object (caller decrefs), or NULL if out of memory. */
json_t *status_json(struct sup *sup);
/* The supervisor's own resources, from /proc/self; -1 where unreadable. */
struct self_usage {
	long long	open_fds;
	long long	rss_bytes;
	long long	vsz_bytes;
};

/* Fills u (status, top and metrics report the same figures). */
void status_self_usage(struct self_usage *u);
/* Logs one info line per cluster with its per-state agent counts. */
void status_log_stats(struct sup *sup);

#endif
