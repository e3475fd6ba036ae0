#include <sys/inotify.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "proxy/filewatch.h"

/*
 * Writers we care about end with close-after-write or a rename into place;
 * deletes and renames away are watched so a vanished file is reported.
 * IN_CREATE is not: the content arrives later, with IN_CLOSE_WRITE.
 */
#define WATCH_MASK	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | \
			 IN_DELETE | IN_ONLYDIR)

int
filewatch_init(struct filewatch *fw)
{
	int i;

	memset(fw, 0, sizeof(*fw));
	for (i = 0; i < FILEWATCH_SLOTS; i++)
		fw->slot[i].wd = -1;
	if ((fw->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1)
		return TP_ESYS;
	return 0;
}

static void
fsig_read(const char *path, struct fsig *sig)
{
	struct stat st;

	memset(sig, 0, sizeof(*sig));
	if (stat(path, &st) == -1)
		return;
	sig->exists = 1;
	sig->dev = st.st_dev;
	sig->ino = st.st_ino;
	sig->size = st.st_size;
	sig->mtim = st.st_mtim;
	sig->ctim = st.st_ctim;
}

static int
fsig_equal(const struct fsig *a, const struct fsig *b)
{
	return a->exists == b->exists && a->dev == b->dev &&
	    a->ino == b->ino && a->size == b->size &&
	    a->mtim.tv_sec == b->mtim.tv_sec &&
	    a->mtim.tv_nsec == b->mtim.tv_nsec &&
	    a->ctim.tv_sec == b->ctim.tv_sec &&
	    a->ctim.tv_nsec == b->ctim.tv_nsec;
}

/* Drops slot's watch unless another slot shares it (same directory). */
static void
slot_clear(struct filewatch *fw, int slot)
{
	struct filewatch_slot *s = &fw->slot[slot];
	int i, shared = 0;

	for (i = 0; i < FILEWATCH_SLOTS; i++)
		if (i != slot && fw->slot[i].wd == s->wd)
			shared = 1;
	if (s->wd != -1 && !shared && fw->ifd != -1)
		inotify_rm_watch(fw->ifd, s->wd);
	free(s->path);
	free(s->dir);
	memset(s, 0, sizeof(*s));
	s->wd = -1;
}

/* Watches the slot's directory; returns 0 or TP_ESYS. */
static int
slot_arm(struct filewatch *fw, struct filewatch_slot *s)
{
	if (fw->ifd == -1)
		return 0;
	s->wd = inotify_add_watch(fw->ifd, s->dir, WATCH_MASK);
	return s->wd == -1 ? TP_ESYS : 0;
}

int
filewatch_set(struct filewatch *fw, int slot, const char *path)
{
	struct filewatch_slot *s = &fw->slot[slot];
	char *slash;

	if (s->path != NULL && path != NULL && strcmp(s->path, path) == 0)
		return 0;
	slot_clear(fw, slot);
	if (path == NULL)
		return 0;
	if ((s->path = strdup(path)) == NULL ||
	    (s->dir = strdup(path)) == NULL) {
		slot_clear(fw, slot);
		return TP_ENOMEM;
	}
	if ((slash = strrchr(s->dir, '/')) == NULL) {
		s->base = s->path;
		strcpy(s->dir, ".");
	} else {
		s->base = s->path + (slash - s->dir) + 1;
		if (slash == s->dir)
			slash[1] = '\0';	/* "/file" lives in "/" */
		else
			*slash = '\0';
	}
	return slot_arm(fw, s);
}

void
filewatch_loading(struct filewatch *fw, int slot)
{
	fsig_read(fw->slot[slot].path, &fw->slot[slot].sig);
}

/* Marks slot changed; the newest event decides when all have settled. */
static void
mark(struct filewatch *fw, int slot, uint64_t when)
{
	if (filewatch_deadline(fw) == UINT64_MAX || when > fw->settle_at)
		fw->settle_at = when;
	fw->slot[slot].dirty = true;
}

/* Matches one event against the slots; a queue overflow matches all. */
static void
dispatch(struct filewatch *fw, const struct inotify_event *ev, uint64_t now)
{
	struct filewatch_slot *s;
	int i;

	for (i = 0; i < FILEWATCH_SLOTS; i++) {
		s = &fw->slot[i];
		if (s->path == NULL)
			continue;
		if (ev->mask & IN_Q_OVERFLOW)
			mark(fw, i, now + FILEWATCH_SETTLE_MS);
		else if (ev->wd == s->wd && (ev->mask & IN_IGNORED))
			s->wd = -1;	/* directory gone: polling covers it */
		else if (ev->wd == s->wd && ev->len > 0 &&
		    strcmp(ev->name, s->base) == 0)
			mark(fw, i, now + FILEWATCH_SETTLE_MS);
	}
}

void
filewatch_read(struct filewatch *fw, uint64_t now)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	ssize_t n, off;

	for (;;) {
		n = read(fw->ifd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		for (off = 0; off < n;
		    off += (ssize_t)sizeof(*ev) + (ssize_t)ev->len) {
			ev = (const struct inotify_event *)(buf + off);
			dispatch(fw, ev, now);
		}
	}
}

void
filewatch_poll(struct filewatch *fw, uint64_t now)
{
	struct fsig sig;
	int i;

	for (i = 0; i < FILEWATCH_SLOTS; i++) {
		if (fw->slot[i].path == NULL)
			continue;
		if (fw->slot[i].wd == -1)
			slot_arm(fw, &fw->slot[i]);
		fsig_read(fw->slot[i].path, &sig);
		if (!fsig_equal(&sig, &fw->slot[i].sig))
			mark(fw, i, now);
	}
}

bool
filewatch_take(struct filewatch *fw, int slot, uint64_t now)
{
	if (!fw->slot[slot].dirty || now < fw->settle_at)
		return false;
	fw->slot[slot].dirty = false;
	return true;
}

uint64_t
filewatch_deadline(const struct filewatch *fw)
{
	int i;

	for (i = 0; i < FILEWATCH_SLOTS; i++)
		if (fw->slot[i].dirty)
			return fw->settle_at;
	return UINT64_MAX;
}

void
filewatch_free(struct filewatch *fw)
{
	int i;

	for (i = 0; i < FILEWATCH_SLOTS; i++)
		slot_clear(fw, i);
	if (fw->ifd != -1)
		close(fw->ifd);
	fw->ifd = -1;
}
