/*
 * Notices changes of a few files (the proxies file, the host certificate).
 *
 * inotify watches each file's *directory*, because editors and deployment
 * tools replace files by rename, which a watch on the file itself would
 * miss.  Events are debounced (FILEWATCH_SETTLE_MS) so that a rename dance
 * (old file moved away, new one written) is read once, complete.
 *
 * Every heartbeat the caller also stat()s the files and compares them with
 * what was last loaded.  That catches what inotify cannot see (a symlink
 * swapped above the watched directory, as Kubernetes does with ConfigMaps;
 * a directory that was deleted and recreated) and is the only mechanism
 * when inotify is unavailable: each helper is one sshd session, and
 * fs.inotify.max_user_instances (128 by default) runs out long before a
 * busy proxy runs out of sessions.
 */
#ifndef TP_FILEWATCH_H
#define TP_FILEWATCH_H

#include <sys/stat.h>

#include <stdbool.h>
#include <stdint.h>

#define FILEWATCH_SLOTS		2
#define FILEWATCH_SETTLE_MS	200

/* What stat() said about a file at its last load. */
struct fsig {
	int		exists;
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	struct timespec	mtim;
	struct timespec	ctim;
};

struct filewatch_slot {
	char		*path;		/* NULL: slot unused */
	char		*dir;		/* its directory, watched */
	const char	*base;		/* file name inside path */
	int		 wd;		/* watch on the directory, or -1 */
	struct fsig	 sig;
	bool		 dirty;
};

struct filewatch {
	int			ifd;	/* inotify fd, or -1: polling only */
	struct filewatch_slot	slot[FILEWATCH_SLOTS];
	uint64_t		settle_at;	/* ms; valid while a slot is dirty */
};

/*
 * Returns 0, or TP_ESYS with errno set if inotify is unavailable; the
 * filewatch then works by polling alone (filewatch_poll).
 */
int filewatch_init(struct filewatch *fw);
void filewatch_free(struct filewatch *fw);

/*
 * Watches path in slot (NULL stops watching).  Returns 0, TP_ENOMEM, or
 * TP_ESYS if the directory cannot be watched (polling still covers it).
 */
int filewatch_set(struct filewatch *fw, int slot, const char *path);

/* Records the file's current state; call right before reading it. */
void filewatch_loading(struct filewatch *fw, int slot);

/* Drains inotify events (after poll() says the fd is readable). */
void filewatch_read(struct filewatch *fw, uint64_t now);

/*
 * stat()s every slot and marks the ones that differ from their last load;
 * re-arms watches whose directory had disappeared.
 */
void filewatch_poll(struct filewatch *fw, uint64_t now);

/* Returns true (once) if slot changed and has settled by now. */
bool filewatch_take(struct filewatch *fw, int slot, uint64_t now);

/* Returns when filewatch_take will next return true, or UINT64_MAX. */
uint64_t filewatch_deadline(const struct filewatch *fw);

#endif
