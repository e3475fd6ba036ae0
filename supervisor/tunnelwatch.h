/*
 * Watching tunnels_dir: tells the supervisor when to reload the tunnel
 * cache (inotify, debounced, on the supervisor's libevent loop).
 */
#ifndef TP_SUP_TUNNELWATCH_H
#define TP_SUP_TUNNELWATCH_H

struct event_base;

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
