/*
 * The agent pool: the agent-key map, the diff against the desired set,
 * discovery sets and claims.  Pure bookkeeping: every effect (start a
 * worker, close one, answer a claim) goes through struct pool_ops, so the
 * logic is tested and benchmarked without processes.
 *
 * Key = (cluster name, dial address).  A key holds its agents: at most one
 * "tunnel" agent dialled to any proxy, plus discovery agents that must land
 * on a proxy that was announced and is not claimed yet.
 */
#ifndef TP_SUPERVISOR_POOL_H
#define TP_SUPERVISOR_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/backoff.h"
#include "common/ratelimit.h"
#include "proto/msg.h"
#include "supervisor/wanted.h"

struct pool;
struct pool_key;

/* One desired tunnel endpoint, as the tunnel cache provides it. */
struct pool_want {
	const char	*cluster;
	const char	*dial_addr;
	uint64_t	 spec_hash;	/* changes iff the tunnel's spec changed */
	bool		 discovery;
	const void	*tunnel;	/* opaque, handed back in pool_ops.spawn */
};

enum agent_phase {
	PHASE_STARTING = 0,	/* being dialled / spawned */
	PHASE_RUNNING,		/* process up; state from its STATE messages */
	PHASE_CLOSING,		/* CLOSE sent */
	PHASE_GONE,		/* lost; freed by pool_agent_free() */
};

struct pool_agent {
	struct pool_key		*key;
	uint64_t		 id;		/* unique, never reused */
	pid_t			 pid;		/* 0 until spawned */
	enum agent_role		 role;
	enum agent_phase	 phase;
	uint32_t		 state;		/* enum agent_state */
	uint32_t		 gen;		/* key generation it was started for */
	char			 fp[PROTO_FP_MAX];	/* claimed proxy, "" if none */
	char			 name[PROTO_NAME_MAX];
	bool			 claimed;
	bool			 missed;	/* its claim was refused */
	uint64_t		 started_ms;
	uint64_t		 state_ms;	/* time of the last state change */
	char			 last_error[PROTO_REASON_MAX];
	struct msg_stats	 stats;
	uint32_t		 n_forwards;
	struct msg_forward	 forwards[PROTO_MAX_FORWARDS];
	uint32_t		 n_wanted;	/* discovery role: targets */
	char			 (*wanted)[PROTO_FP_MAX];
	void			*owner;		/* the spawner's worker object */
	struct pool_agent	*next;		/* in key->agents */
};

struct pool_key {
	char			*cluster;
	char			*dial_addr;
	uint64_t		 spec_hash;
	bool			 discovery;
	bool			 removed;	/* no longer desired; closing */
	uint64_t		 epoch;		/* last sync that wanted it */
	uint32_t		 gen;		/* bumped when the spec changes */
	const void		*tunnel;
	struct pool_agent	*agents;
	struct backoff		 backoff;
	uint64_t		 next_dial_ms;	/* tunnel agent: not before */
	uint64_t		 next_disc_ms;	/* discovery agents: not before */
	uint64_t		 fail_round_ms;	/* time of the last backoff step */
	uint64_t		 fail_until_ms;	/* its delay runs until */
	uint64_t		 reconnects;
	uint64_t		 misses;	/* dials that found nothing to claim */
	uint64_t		 claims_refused;
	uint64_t		 dials;		/* agents started */
	/*
	 * Miss pacing (pool_agent_missed): the dials in flight together are
	 * one round; a round that lands on a proxy already missed since the
	 * last step doubles the delay (miss.attempt), one on a proxy not seen
	 * yet keeps it (the balancer is still spreading).  Misses on wanted
	 * proxies the key holds keep it up to the spread allowance (n_spread),
	 * repeats too, unless all since the step were on one proxy: what a
	 * balancer spreading over the wanted set makes by chance.  A granted
	 * claim or a set that gains a proxy ends the streak.
	 */
	struct backoff		 miss;
	uint32_t		 miss_streak;	/* rounds missed in a row */
	uint64_t		 miss_round_ms;	/* time of the last round */
	uint64_t		 miss_until_ms;	/* no dial before */
	uint8_t			 n_miss_seen;
	uint8_t			 n_spread;	/* misses the allowance took */
	uint64_t		 miss_seen[16];	/* fp hashes missed since the step */
	/*
	 * Lag pacing: a miss on a proxy this key already holds, while it
	 * holds one on its way out (no current list names it, or its own
	 * list leaves it out), says the balancer still points at the fleet
	 * being replaced.  Such misses double the gap every time (from
	 * backoff.min up to discovery.lag_probe_max), one probe at a time.
	 */
	struct backoff		 lag;
	bool			 down;		/* lost its last agent */
	uint64_t		 down_ms;	/* when */
	uint64_t		 connects;
	char			 last_error[PROTO_REASON_MAX];
	/* counters of agents already gone, so totals survive reconnects */
	uint64_t		 rx_done;
	uint64_t		 tx_done;
	uint64_t		 channels_done;
	uint64_t		 dial_failures_done;
	unsigned		 addr_rr;	/* rotates over resolved addresses */
	struct wanted_set	 set;		/* discovery: lists, wanted set */
	bool			 refreshing;	/* in key_refresh (no re-entry) */
	struct pool_key		*hnext;		/* hash chain */
	struct pool_key		*cnext;		/* chain by cluster name */
	struct pool_key		*lnext;		/* all keys, insertion order */
	struct pool_key		*lprev;
};

struct pool_ops {
	/* Start a worker for a (already linked) agent; nonzero = failed now. */
	int	(*spawn)(void *arg, struct pool_agent *a);
	/* Ask a running agent to close (CLOSE, then kill after the grace). */
	void	(*close)(void *arg, struct pool_agent *a, const char *reason);
	/* Answer a CLAIM. */
	void	(*claim_result)(void *arg, struct pool_agent *a, bool granted,
		    const char *reason);
	/*
	 * Which announced host keys this node could ever trust for the key's
	 * dial address: ok[i] for d->proxies[i].  NULL: all of them.
	 */
	void	(*trust)(void *arg, const struct pool_key *k,
		    const struct msg_discovery *d, bool *ok);
};

struct pool_config {
	uint64_t	backoff_min_ms;
	uint64_t	backoff_max_ms;
	uint64_t	backoff_reset_ms;
	uint32_t	max_inflight_dials;	/* discovery agents per key */
	double		spawn_rate;		/* global, per second */
	double		spawn_burst;
	uint64_t	proxy_ttl_ms;		/* remembered lists, see wanted.h */
	uint64_t	miss_retry_ms;		/* first retry after a miss round */
	uint64_t	lag_probe_max_ms;	/* cap of the lag pacing */
};

struct pool_stats {
	uint64_t	spawns;
	uint64_t	spawn_deferred;		/* held back by the limiter */
	uint64_t	misses;
};

/* Creates a pool; returns NULL on allocation failure or a bad config. */
struct pool *pool_new(const struct pool_config *cfg, const struct pool_ops *ops,
    void *arg, uint64_t now_ms);
void pool_free(struct pool *p);
/* Applies new tunables (backoff, limiter, TTL); existing agents untouched. */
int pool_reconfigure(struct pool *p, const struct pool_config *cfg,
    uint64_t now_ms);

/*
 * Diffs the desired set against the map: removed keys get their agents
 * closed; new keys are added; keys whose spec_hash changed get a new
 * generation (their agents are replaced one at a time); unchanged keys are
 * not touched.  Then runs pool_tick.  Returns 0 or TP_ENOMEM (the map is
 * left consistent: what was applied stays applied).
 */
int pool_sync(struct pool *p, const struct pool_want *want, size_t n,
    uint64_t now_ms);

/*
 * Time-driven work: expire announced proxies, start tunnel agents whose
 * backoff elapsed, start discovery agents for wanted proxies, replace stale
 * agents.  Returns the number of milliseconds until it wants to run again.
 */
uint64_t pool_tick(struct pool *p, uint64_t now_ms);

/* Events from workers. */
void pool_agent_spawned(struct pool *p, struct pool_agent *a, pid_t pid,
    uint64_t now_ms);
void pool_agent_state(struct pool *p, struct pool_agent *a,
    const struct msg_state *st, uint64_t now_ms);
/*
 * A dial landed on a proxy it may not claim (refused by the pool): counted
 * as a miss.  The failure backoff does not grow; the miss pacing does, per
 * round of dials (see struct pool_key), and one discovery dial at a time
 * goes out until a claim is granted or the wanted set gains a proxy.
 */
void pool_agent_missed(struct pool *p, struct pool_agent *a, uint64_t now_ms);
/*
 * Whether the key holds a proxy on its way out (a fleet being replaced,
 * the balancer possibly behind): its discovery dials go one at a time and
 * misses on proxies it holds follow the lag pacing (struct pool_key).
 */
bool pool_key_lagging(const struct pool_key *k);
/* Decides a CLAIM and answers it through ops->claim_result. */
void pool_agent_claim(struct pool *p, struct pool_agent *a,
    const struct msg_claim *c, uint64_t now_ms);
/*
 * A full list from the proxy the agent holds (ignored from an agent that
 * holds none, or for a key without discovery).  Every discovery key of the
 * cluster hears it (its proxies announce the cluster's set, whichever
 * dial address reached them), and a list is current while an agent of any
 * of them holds its sender.  Applies the wanted-set rule, closes agents on
 * proxies no longer wanted.  Returns true when a set gained a proxy (the
 * pool has work to do).
 */
bool pool_agent_discovery(struct pool *p, struct pool_agent *a,
    const struct msg_discovery *d, uint64_t now_ms);
void pool_agent_stats(struct pool *p, struct pool_agent *a,
    const struct msg_stats *s);
void pool_agent_forward(struct pool *p, struct pool_agent *a,
    const struct msg_forward *f);
/*
 * The agent is gone (process reaped or never started).  Unlinks and frees
 * it, schedules the key's next dial with backoff.  `failed` is false for a
 * clean, requested close.
 */
void pool_agent_lost(struct pool *p, struct pool_agent *a, const char *reason,
    bool failed, uint64_t now_ms);

/* Asks every agent of every key, or of one key, or one agent, to close. */
void pool_close_all(struct pool *p, const char *reason);
/* Closes the agent whose worker has this pid; returns 0 or TP_ENOENT. */
int pool_close_pid(struct pool *p, pid_t pid, const char *reason);
int pool_close_key(struct pool *p, const char *cluster, const char *dial,
    const char *reason);

/* Iteration for status and metrics. */
struct pool_key *pool_keys(struct pool *p);
size_t pool_nkeys(const struct pool *p);
size_t pool_nagents(const struct pool *p);
const struct pool_stats *pool_get_stats(const struct pool *p);
/* Whether an agent of the key holds (has claimed) the proxy fp. */
bool pool_key_holds(const struct pool_key *k, const char *fp);
/* Number of claimed proxies of a key. */
uint32_t pool_key_claimed(const struct pool_key *k);
/* Whether a key's agent holds a proxy that is in its wanted set (always true without discovery or before any list). */
bool pool_agent_wanted(const struct pool_agent *a);
/* Milliseconds until the key's next discovery dial may start (0: due). */
uint64_t pool_key_disc_retry_ms(const struct pool_key *k, uint64_t now_ms);
/*
 * The state status and metrics show for a desired key that has no agent
 * (waiting out its backoff or the spawn limiter): AGENT_DISCONNECTED once
 * it lost an agent, AGENT_CONNECTING before its first; 0 when it has
 * agents or is being removed.
 */
uint32_t pool_key_idle_state(const struct pool_key *k);

#endif
