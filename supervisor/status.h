/*
 * The supervisor's state as one JSON document (`tunnelpool status --json`,
 * the control socket's "status" and "top"), and the periodic stats line.
 * The schema is documented in docs/operators.md and is stable.
 */
#ifndef TP_SUPERVISOR_STATUS_H
#define TP_SUPERVISOR_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "proto/msg.h"

struct sup;
struct pool_key;

/*
 * Appends the status document and a newline to out (compact JSON, the
 * documented schema); 0, or TP_ENOMEM with out unchanged.
 */
int status_write(struct sup *sup, struct evbuffer *out);
/* The supervisor's own resources, from /proc/self; -1 where unreadable. */
struct self_usage {
	long long	open_fds;
	long long	rss_bytes;
	long long	vsz_bytes;
};

/* Fills u (status, top and metrics report the same figures). */
void status_self_usage(struct self_usage *u);
/*
 * Per-cluster sums over its keys and agents (a cluster can span several
 * dial addresses), in the order the clusters' first keys were added.
 * States count as status shows them: an agent before its first report is
 * connecting, a key waiting for its next agent counts once (index 0 of
 * states is unused).
 */
struct cluster_sum {
	const char	*name;
	uint64_t	 states[AGENT_STATE_MAX + 1];
	uint64_t	 connects, announced, claimed, misses;
	uint64_t	 refused, dials;
	uint64_t	 miss_streak;		/* the longest of its keys */
	uint64_t	 disc_retry_ms;		/* the latest of its keys */
	bool		 lagging;		/* a key probes a lagging balancer */
	uint64_t	 ch_open, ch_total, rx, tx, dial_fail;
	struct pool_key	**dkeys;	/* its discovery keys with a wanted set */
	size_t		 n_dkeys;
};

/* The tunnel source as status, top and metrics show it. */
struct source_status {
	const char	*type;		/* "files" or "etcd" */
	const char	*endpoint;	/* etcd endpoint in use, or tunnels_dir */
	int		 healthy;
	int64_t		 revision;	/* etcd: last applied; files: 0 */
	uint64_t	 watch_restarts;
	const char	*last_error;	/* "" = none */
	int64_t		 snapshot_age_s;	/* -1 = none */
	int		 from_snapshot;
	size_t		 keys;		/* etcd keys, or tunnel files */
	size_t		 bad_keys;	/* keys whose value is rejected */
	uint64_t	 bad_values;	/* values rejected, total */
};

void status_source(struct sup *sup, struct source_status *ss);

/*
 * Returns an array of *n sums (free it with status_cluster_sums_free), or
 * NULL (no memory).
 */
struct cluster_sum *status_cluster_sums(struct sup *sup, size_t *n);
void status_cluster_sums_free(struct cluster_sum *v, size_t n);
/* Logs one info line per cluster with its per-state agent counts. */
void status_log_stats(struct sup *sup);

#endif
