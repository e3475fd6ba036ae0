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
/* Logs one info line per cluster with its per-state agent counts. */
void status_log_stats(struct sup *sup);

#endif
