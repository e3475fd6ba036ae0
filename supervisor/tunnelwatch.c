/*
 * The tunnel directory's watcher (tunnelwatch.h): inotify, debounced on
 * libevent's loop.
 */
#include <sys/inotify.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/error.h"
#include "common/tptime.h"
#include "supervisor/tunneldoc.h"
#include "supervisor/tunnelwatch.h"

#define WATCH_MASK	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | \
			 IN_DELETE | IN_CREATE | IN_DELETE_SELF | \
			 IN_MOVE_SELF | IN_ONLYDIR)

struct tunnel_watch {
	char			*dir;
	int			 fd;
	int			 wd;		/* -1: not watching */
	struct event		*ev_read;
	struct event		*ev_timer;
	unsigned		 debounce_ms;
	int			 pending;
	uint64_t		 burst_start_ms;
	tunnel_watch_cb		*cb;
	void			*arg;
};

/*
 * Trailing-edge debounce: every event pushes the callback back, so an
 * editor's write-temp-then-rename burst yields one reload.  A writer that
 * never pauses still gets a reload every 4 debounce periods.
 */
static void
watch_kick(struct tunnel_watch *w)
{
	uint64_t now = tp_now_ms();
	struct timeval tv;

	if (!w->pending) {
		w->pending = 1;
		w->burst_start_ms = now;
	} else if (now - w->burst_start_ms >= 4ULL * w->debounce_ms)
		return;
	tv.tv_sec = w->debounce_ms / 1000;
	tv.tv_usec = (w->debounce_ms % 1000) * 1000;
	evtimer_add(w->ev_timer, &tv);
}

static void
watch_timer(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel_watch *w = arg;

	w->pending = 0;
	w->cb(w->arg);
}

/* Returns 1 if ev concerns the tunnel source; drops a vanished watch. */
static int
watch_event(struct tunnel_watch *w, const struct inotify_event *ev)
{
	if (ev->mask & IN_Q_OVERFLOW)
		return 1;
	if (ev->wd != w->wd)
		return 0;
	if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
		if (!(ev->mask & IN_IGNORED))
			inotify_rm_watch(w->fd, w->wd);
		w->wd = -1;
		return 1;
	}
	return ev->len > 0 && tunnel_file_name_ok(ev->name);
}

static void
watch_read(evutil_socket_t fd, short what, void *arg)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct tunnel_watch *w = arg;
	const struct inotify_event *ev;
	int relevant = 0;
	ssize_t n;
	char *p;

	while ((n = read(w->fd, buf, sizeof(buf))) > 0) {
		for (p = buf; p < buf + n;
		    p += sizeof(struct inotify_event) + ev->len) {
			ev = (const struct inotify_event *)(void *)p;
			relevant |= watch_event(w, ev);
		}
	}
	if (relevant)
		watch_kick(w);
}

int
tunnel_watch_retry(struct tunnel_watch *w)
{
	if (w->wd >= 0)
		return 0;
	w->wd = inotify_add_watch(w->fd, w->dir, WATCH_MASK);
	if (w->wd >= 0)
		return 0;
	return (errno == ENOENT || errno == ENOTDIR) ? TP_ENOENT : TP_ESYS;
}

int
tunnel_watch_active(const struct tunnel_watch *w)
{
	return w->wd >= 0;
}

struct tunnel_watch *
tunnel_watch_new(struct event_base *base, const char *dir,
    unsigned debounce_ms, tunnel_watch_cb *cb, void *arg)
{
	struct tunnel_watch *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->fd = -1;
	w->wd = -1;
	w->debounce_ms = debounce_ms;
	w->cb = cb;
	w->arg = arg;
	if ((w->dir = strdup(dir)) == NULL ||
	    (w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1 ||
	    (w->ev_read = event_new(base, w->fd, EV_READ | EV_PERSIST,
	    watch_read, w)) == NULL ||
	    (w->ev_timer = evtimer_new(base, watch_timer, w)) == NULL ||
	    event_add(w->ev_read, NULL) == -1) {
		tunnel_watch_free(w);
		return NULL;
	}
	tunnel_watch_retry(w);
	return w;
}

void
tunnel_watch_free(struct tunnel_watch *w)
{
	if (w == NULL)
		return;
	if (w->ev_read != NULL)
		event_free(w->ev_read);
	if (w->ev_timer != NULL)
		event_free(w->ev_timer);
	if (w->fd != -1)
		close(w->fd);
	free(w->dir);
	free(w);
}
