/*
 * An etcd v3 client for one key prefix, over the JSON gateway on
 * HTTP/1.1 (libevent's evhttp; TLS through libevent_openssl): ranges the
 * prefix, then watches it from the next revision, and hands every change
 * to its owner as a batch.  It knows nothing of tunnels.
 *
 * Never blocks the loop and never gives up: a failure (refused, reset,
 * TLS, HTTP or etcd error, a stream that ends, a probe that times out)
 * marks the client unhealthy, moves to the next endpoint and tries again
 * after a backoff with jitter, re-watching from the last revision seen.
 * A compacted revision triggers a full re-range (a batch with full set).
 * With a username, a token from /v3/auth/authenticate goes with every
 * request; an expired or invalid token is replaced.
 */
#ifndef TP_SUP_ETCD_H
#define TP_SUP_ETCD_H

#include <stddef.h>
#include <stdint.h>

#include "supervisor/etcd_config.h"
#include "supervisor/etcd_json.h"

struct event_base;
struct evdns_base;
struct etcd_client;

/*
 * One change set.  full: the events are the whole prefix (all puts) and
 * every key not among them is gone.  Otherwise puts and deletes in
 * revision order.  Keys are whole etcd keys, prefix included.
 */
struct etcd_batch {
	int			 full;
	int64_t			 revision;
	const struct etcd_event	*events;
	size_t			 n;
};

struct etcd_client_ops {
	void	(*apply)(void *arg, const struct etcd_batch *b);
	/* healthy, endpoint or last_error changed */
	void	(*state)(void *arg);
};

struct etcd_client_status {
	const char	*endpoint;	/* in use (or being tried) */
	int		 healthy;	/* in sync and watching */
	int64_t		 revision;	/* last revision applied; 0 = none */
	uint64_t	 watch_restarts;
	uint64_t	 failures;
	const char	*last_error;	/* "" = none since the last success */
	uint64_t	 last_ok_wall_ms;	/* last time it was healthy */
};

/* Client timing; tests and benchmarks use the defaults. */
#define ETCD_REQUEST_TIMEOUT_S	5
#define ETCD_PROBE_MS		2000
#define ETCD_BACKOFF_MIN_MS	200
#define ETCD_BACKOFF_MAX_MS	5000
#define ETCD_BACKOFF_RESET_MS	10000
#define ETCD_RANGE_PAGE		500

/*
 * Starts a client (its first attempt runs from the loop).  cfg is copied.
 * Returns NULL with a reason in err (TLS files that cannot be loaded, out
 * of memory).
 */
struct etcd_client *etcd_client_new(struct event_base *base,
    struct evdns_base *dns, const struct etcd_config *cfg,
    const struct etcd_client_ops *ops, void *arg, char *err, size_t errlen);
void etcd_client_free(struct etcd_client *c);
void etcd_client_get_status(const struct etcd_client *c,
    struct etcd_client_status *st);

/* "KEY" + 1 in etcd's sense: the end of a prefix range (malloc'd). */
char *etcd_prefix_end(const char *prefix, size_t len, size_t *outlen);

#endif
