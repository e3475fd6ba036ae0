/*
 * The etcd tunnel source: feeds the keys of tunnel_source.etcd.prefix
 * into the tunnel cache's keyed source, keeps their last good values and
 * writes them as the snapshot in state_dir.  At start it loads the
 * snapshot first, so tunnels come up even while etcd is unreachable; the
 * first full read from etcd then replaces it (a diff: unchanged keys keep
 * their agents).
 *
 * The pool never waits on it: every change ends in the changed callback,
 * after which the caller syncs the pool from the cache.
 */
#ifndef TP_SUP_ETCDSRC_H
#define TP_SUP_ETCDSRC_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct tunnel_cache;
struct config;
struct etcdsrc;

typedef void etcdsrc_changed_fn(void *arg);

/* Returns NULL (logged) only when the client cannot be set up. */
struct etcdsrc *etcdsrc_new(struct event_base *base, struct evdns_base *dns,
    struct tunnel_cache *tc, const struct config *cfg,
    etcdsrc_changed_fn *changed, void *arg);

/*
 * Stops the client.  drop: also remove the source's tunnels from the
 * cache (etcd was taken out of the configuration) and call changed.
 */
void etcdsrc_free(struct etcdsrc *s, int drop);

/* Returns 1 if cfg asks for another source than s reads. */
int etcdsrc_differs(const struct etcdsrc *s, const struct config *cfg);

struct etcdsrc_status {
	const char	*endpoint;
	int		 healthy;
	int64_t		 revision;
	uint64_t	 watch_restarts;
	const char	*last_error;		/* "" = none */
	int64_t		 snapshot_age_s;	/* -1 = no snapshot */
	int		 from_snapshot;		/* etcd not read since start */
	size_t		 keys;
	size_t		 bad_keys;
	uint64_t	 bad_values;		/* rejected puts, total */
};

void etcdsrc_get_status(const struct etcdsrc *s, struct etcdsrc_status *st);

#endif
