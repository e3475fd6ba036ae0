/*
 * The tunnel cache: the supervisor's only read path of the tunnel sources
 * (every *.yaml file of tunnels_dir, and the keys of an etcd prefix fed in
 * by etcdsrc.c), held in memory.
 *
 * A file that fails to parse keeps its last good contents, a deleted file
 * removes its tunnels, a new good file adds them; the result is a flat,
 * deterministic desired set (files by name, documents in file order), each
 * tunnel with a spec hash so that the pool can tell "unchanged" from
 * "changed" without comparing fields.
 *
 * Also here: the parser of one tunnel file (from memory, for fuzzing) and
 * the inotify watcher that tells the supervisor when to reload.
 */
#ifndef TP_SUP_TUNNELS_H
#define TP_SUP_TUNNELS_H

#include <stddef.h>
#include <stdint.h>

#include "supervisor/cfgerr.h"

struct event_base;

#define TUNNEL_MAX_FILE		(16 * 1024 * 1024)	/* per tunnel file */
#define TUNNEL_MAX_DIAL_ADDRS	16
#define TUNNEL_MAX_FORWARDS	32
#define TUNNEL_MAX_PRINCIPALS	16	/* = PROTO_MAX_PRINCIPALS */
#define TUNNEL_PRINCIPAL_MAX	128	/* = PROTO_NAME_MAX, with the NUL */

struct tunnel_forward {
	char		*listen;	/* canonical "host:port" / "[v6]:port" */
	char		*listen_host;	/* as sent in tcpip-forward */
	uint16_t	 listen_port;
	char		*target;	/* canonical "host:port" or "/unix/path" */
	int		 target_is_unix;
};

struct tunnel {
	char			*name;		/* metadata.name */
	char			*cluster_name;	/* unique in the desired set */
	char			**dial_addrs;	/* canonical host:port, 1..16 */
	size_t			 n_dial_addrs;
	struct tunnel_forward	*forwards;	/* 0..32 */
	size_t			 n_forwards;
	int			 discovery;
	/*
	 * Names (or globs) a proxy's host certificate may carry as principal
	 * besides the dial host: the proxies behind a load balancer.  0..16;
	 * only ever from configuration (docs/host-trust.md).
	 */
	char			**proxy_principals;
	size_t			 n_proxy_principals;
	/*
	 * 64-bit FNV-1a over cluster_name, dial_addrs, forwards, discovery
	 * and proxy_principals (length-prefixed, canonical forms): equal
	 * hashes mean an unchanged spec.  metadata.name and the location do
	 * not count.
	 */
	uint64_t		 spec_hash;
	const char		*file;	/* the file name given to the parser */
	unsigned		 line;	/* of the cluster_name value, 1-based */
	unsigned		 col;
};

/* A growable array of tunnels that owns their contents. */
struct tunnel_list {
	struct tunnel	*v;
	size_t		 n;
	size_t		 cap;
};

void tunnel_list_free(struct tunnel_list *l);

/*
 * Parses every document of one tunnel file from memory.  file names it in
 * error lines and becomes each tunnel's file pointer (it must outlive the
 * list).  Appends the tunnels to out and the errors to errs, and returns
 * the number of errors added (0 = the whole file is good).  Duplicate
 * cluster names are not checked here: the cache does that across files.
 */
size_t tunnel_parse_buffer(const char *file, const char *buf, size_t len,
    struct tunnel_list *out, struct cfg_errors *errs);

struct tunnel_cache;

struct tunnel_cache_status {
	int		 last_reload_ok;	/* the last reload had no error */
	uint64_t	 last_success_wall_ms;	/* 0 = never */
	const char	*first_error;	/* of the last reload; NULL if ok */
	uint64_t	 generation;	/* bumped when the desired set changes */
	size_t		 n_files;
	size_t		 n_tunnels;
	uint64_t	 reloads;
};

/* Returns an empty cache, or NULL if out of memory. */
struct tunnel_cache *tunnel_cache_new(void);
void tunnel_cache_free(struct tunnel_cache *tc);

/*
 * Re-reads dir ("" = no tunnel files) and rebuilds the desired set from
 * it and the keyed source.  Unchanged files are not parsed again.  Every problem is
 * added to errs (may be NULL) as "FILE:LINE:COL: message" (or "PATH:
 * message" for a whole file or the directory); a broken file keeps its
 * last good tunnels, an unreadable directory keeps everything.  Returns 0
 * if there was no error, TP_ESYNTAX if some file had errors or a cluster
 * name was duplicated, TP_ESYS if dir could not be read, TP_ENOMEM.
 */
int tunnel_cache_reload(struct tunnel_cache *tc, const char *dir,
    struct cfg_errors *errs);

/*
 * The desired set: *n tunnels in a deterministic order.  The array and the
 * tunnels stay valid until the next reload or free.
 */
const struct tunnel *const *tunnel_cache_tunnels(const struct tunnel_cache *tc,
    size_t *n);

/* Returns the tunnel of a cluster in the desired set, or NULL. */
const struct tunnel *tunnel_cache_find(const struct tunnel_cache *tc,
    const char *cluster_name);

void tunnel_cache_get_status(const struct tunnel_cache *tc,
    struct tunnel_cache_status *st);

/* ---- a keyed source (etcd) beside the files ----------------------- */

/*
 * Sets the value of key in the keyed source (a new key is added), parsed
 * like a tunnel file that error lines call label (e.g. "etcd:KEY"; the
 * cache keeps a copy).  An unchanged value is not parsed again.  A value
 * with errors keeps the key's last good tunnels (none for a new key) and
 * adds its errors to errs.  Also marks the key seen (ext_sweep).  The
 * desired set changes only at tunnel_cache_commit.  Returns 0 if the value
 * is good, TP_ESYNTAX if it has errors, TP_ENOMEM.
 */
int tunnel_cache_ext_put(struct tunnel_cache *tc, const char *key,
    const char *label, const char *buf, size_t len, struct cfg_errors *errs);

/* Removes key and its tunnels (at the next commit); 0 or TP_ENOENT. */
int tunnel_cache_ext_delete(struct tunnel_cache *tc, const char *key);

/*
 * A full resync of the keyed source: ext_mark, then ext_put of every key
 * there is, then ext_sweep removes the keys that were not put and returns
 * how many.
 */
void tunnel_cache_ext_mark(struct tunnel_cache *tc);
size_t tunnel_cache_ext_sweep(struct tunnel_cache *tc);

/*
 * Number of keys; *nbad (may be NULL): keys whose value has errors or
 * whose cluster is defined elsewhere already (as of the last build).
 */
size_t tunnel_cache_ext_count(const struct tunnel_cache *tc, size_t *nbad);

/*
 * Rebuilds the desired set from both sources (files as of their last
 * reload).  A cluster defined twice keeps its running definition, else the
 * first in order (files by name, then keys); a duplicate in a key is added
 * to errs (may be NULL) ("LABEL:LINE:COL: spec.cluster_name: duplicate
 * cluster ...").
 * Returns 0 or TP_ENOMEM (the old set is gone: sync anyway).
 */
int tunnel_cache_commit(struct tunnel_cache *tc, struct cfg_errors *errs);

/* Returns 1 if name is a tunnel file name (*.yaml, no dotfile, no controls). */
int tunnel_file_name_ok(const char *name);

/* ---- watching the directory ---------------------------------------- */

struct tunnel_watch;
typedef void tunnel_watch_cb(void *arg);

/*
 * Watches dir with inotify and calls cb once, debounce_ms after the last
 * event of a burst that touched a tunnel file (or the directory itself).
 * A directory that does not exist yet is not an error: call
 * tunnel_watch_retry later.  Returns NULL only on failure of inotify or
 * libevent (errno set).
 */
struct tunnel_watch *tunnel_watch_new(struct event_base *base,
    const char *dir, unsigned debounce_ms, tunnel_watch_cb *cb, void *arg);

/*
 * Adds the directory watch if it is missing.  Returns 0 if the directory
 * is watched, TP_ENOENT if it still does not exist, TP_ESYS otherwise.
 */
int tunnel_watch_retry(struct tunnel_watch *w);

/* Returns 1 if the directory is currently watched. */
int tunnel_watch_active(const struct tunnel_watch *w);

void tunnel_watch_free(struct tunnel_watch *w);

#endif
