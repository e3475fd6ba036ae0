/*
 * The tunnel cache: the supervisor's only read path of the tunnel sources
 * (every *.yaml file of tunnels_dir, and the keys of an etcd prefix fed in
 * by etcdsrc.c), held in memory.
 *
 * A file that fails to parse keeps its last good contents, a deleted file
 * removes its tunnels, a new good file adds them; the result is a flat,
 * deterministic desired set (files by name, documents in file order).
 * A cluster defined twice keeps its running definition.
 *
 * The documents themselves are parsed by tunneldoc.c; the directory is
 * watched by tunnelwatch.c.
 */
#ifndef TP_SUP_TUNNELS_H
#define TP_SUP_TUNNELS_H

#include <stddef.h>
#include <stdint.h>

#include "supervisor/cfgerr.h"
#include "supervisor/tunneldoc.h"

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

#endif
