/*
 * The supervisor's shared state.  One instance, owned by supervisor.c; the
 * spawner, children, dialer, control socket and metrics hang off it.
 */
#ifndef TP_SUPERVISOR_SUP_H
#define TP_SUPERVISOR_SUP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/exitcode.h"
#include "proto/msg.h"

struct event_base;
struct evdns_base;
struct event;
struct config;
struct pool;
struct signer;
struct sshkey;
struct knownhosts;
struct tunnel_cache;
struct etcdsrc;
struct child;
struct control;
struct metrics;
struct supervisor_opts;

#define SUP_EXIT_REASONS	(WEXIT_MAX + 1 + 6)

/* Extra exit reasons beyond the worker's own exit codes. */
enum sup_reason {
	SR_SIGNAL = WEXIT_MAX + 1,	/* killed by a signal */
	SR_SANDBOX,			/* SIGSYS */
	SR_PROTOCOL,			/* killed: protocol violation */
	SR_TIMEOUT,			/* killed: ready / ping / close timeout */
	SR_SPAWN,			/* never started: dial or fork failed */
	SR_UNKNOWN,
};

/* Loop lag histogram buckets (upper bounds, microseconds). */
#define LAG_BUCKETS	14

struct sup_counters {
	uint64_t	exits[SUP_EXIT_REASONS];
	uint64_t	sandbox_violations;
	uint64_t	protocol_violations;
	uint64_t	messages;
	uint64_t	spawns;
	uint64_t	dial_requests;
	uint64_t	dial_failures;
	uint64_t	dials_rate_limited;	/* over worker.dial_rate */
	uint64_t	worker_log_suppressed;	/* workerlog.h */
	uint64_t	reloads;
	uint64_t	reload_failures;
	uint64_t	lag_count[LAG_BUCKETS + 1];
	uint64_t	lag_sum_us;
};

struct sup {
	struct event_base	*base;
	struct evdns_base	*dns;
	struct config		*cfg;
	char			*config_path;
	struct sshkey		*key;
	struct signer		*signer;
	struct knownhosts	*trust;
	struct tunnel_cache	*tunnels;
	struct etcdsrc		*etcd;		/* NULL: no tunnel_source.etcd */
	struct pool		*pool;
	struct child		*children;	/* every live worker process */
	struct control		*control;
	struct metrics		*metrics;
	int			 devnull;
	uid_t			 worker_uid;
	gid_t			 worker_gid;
	char			 worker_env[512];	/* TUNNELPOOL_WORKER=... */
	uint64_t		 started_ms;
	uint64_t		 started_wall_ms;
	const struct supervisor_opts *opts;	/* command line: wins over the file */
	/* config_ok / config_error are derived from the two below. */
	bool			 config_ok;
	char			 config_error[512];
	char			 main_error[512];	/* "" = main file good */
	char			 tunnels_error[512];	/* "" = every tunnel file good */
	uint64_t		 last_reload_ok_wall_ms;
	bool			 shutting_down;
	struct sup_counters	 counters;
};

/* Human-readable name of an exit reason index. */
const char *sup_reason_name(int reason);

/* Loop lag histogram bucket upper bounds, in microseconds. */
extern const uint64_t lag_bounds_us[LAG_BUCKETS];

#endif
