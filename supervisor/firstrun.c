/*
 * First-run preparation (see firstrun.h).  Paths are walked one component
 * at a time from "/" with openat(2), so the directory that was checked is
 * the one the next component is looked up in: a symlink swapped in between
 * two checks cannot redirect the walk (the chroot rules follow OpenSSH's
 * ChrootDirectory: every component root-owned and writable by root only).
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "firstrun.h"

#define DIR_MODE	0755

struct walk {
	const char	*setting;	/* the configuration key, for messages */
	const char	*path;		/* as configured */
	bool		 strict;	/* chroot rules (no symlinks, root-owned) */
	mode_t		 leaf_mode;	/* of the last component, if created */
	enum fr_mode	 mode;
	char		 first_made[PATH_MAX];	/* "" = nothing created */
	unsigned	 nmade;
	char		*msg;
	size_t		 cap;
};

static int __attribute__((format(printf, 3, 4)))
say(struct walk *w, int rc, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(w->msg, w->cap, "%s %s: ", w->setting, w->path);
	if (n < 0 || (size_t)n >= w->cap)
		return rc;
	va_start(ap, fmt);
	vsnprintf(w->msg + n, w->cap - (size_t)n, fmt, ap);
	va_end(ap);
	return rc;
}

/* What to do about a mkdir that failed, by errno. */
static const char *
mkdir_hint(int err)
{
	switch (err) {
	case EROFS:
		return " (read-only file system: under systemd's "
		    "ProtectSystem=strict run `systemd-tmpfiles --create "
		    "tunnelpool.conf`, or create it by hand)";
	case EACCES:
	case EPERM:
		return " (run tunnelpool as root, or create it by hand)";
	default:
		return "";
	}
}

/* A component that is not a directory: a symlink, or something else. */
static int
not_a_dir(struct walk *w, int dirfd, const char *comp, const char *sofar)
{
	struct stat st;

	if (fstatat(dirfd, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		return say(w, TP_EINVAL, "%s is a symlink: the path workers "
		    "chroot into must consist of real directories (name the "
		    "target instead)", sofar);
	return say(w, TP_EINVAL, "%s is not a directory: remove it or choose "
	    "another path", sofar);
}

/* The ownership and mode rules of one existing component. */
static int
check_dir(struct walk *w, int fd, const char *sofar, bool parent)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return say(w, TP_ESYS, "%s: %s", sofar, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return say(w, TP_EINVAL, "%s is not a directory", sofar);
	if (!w->strict)
		return 0;
	if (st.st_uid != 0)
		return say(w, TP_EDENIED, "%s is owned by uid %u, not root: "
		    "chown root:root %s", sofar, (unsigned)st.st_uid, sofar);
	/* A root-owned sticky parent (/tmp) lets nobody rename our entries. */
	if ((st.st_mode & 022) != 0 && !(parent && (st.st_mode & S_ISVTX)))
		return say(w, TP_EDENIED, "%s is writable by group or others "
		    "(mode %04o): chmod go-w %s", sofar,
		    (unsigned)(st.st_mode & 07777), sofar);
	return 0;
}

/* Makes one missing component (0755 or the leaf's mode, root's as root). */
static int
make_component(struct walk *w, int dirfd, const char *comp, const char *sofar,
    int flags, bool leaf, int *fdp)
{
	mode_t mode = leaf && w->leaf_mode != 0 ? w->leaf_mode : DIR_MODE;
	bool made = mkdirat(dirfd, comp, mode) == 0;
	int fd;

	if (!made && errno != EEXIST)
		return say(w, TP_ESYS, "cannot create %s: %s%s", sofar,
		    strerror(errno), mkdir_hint(errno));
	if ((fd = openat(dirfd, comp, flags)) < 0)
		return say(w, TP_ESYS, "%s: %s", sofar, strerror(errno));
	/* The umask must not decide the mode; the owner is root, not our gid. */
	if (made && (fchmod(fd, mode) != 0 ||
	    (geteuid() == 0 && fchown(fd, 0, 0) != 0))) {
		close(fd);
		return say(w, TP_ESYS, "%s: %s", sofar, strerror(errno));
	}
	if (made && w->nmade++ == 0)
		snprintf(w->first_made, sizeof(w->first_made), "%s", sofar);
	*fdp = fd;
	return 0;
}

/* Opens one component below dirfd, creating it when the mode says so. */
static int
open_component(struct walk *w, int dirfd, const char *comp, const char *sofar,
    bool leaf, int *fdp)
{
	int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC |
	    (w->strict ? O_NOFOLLOW : 0);

	if ((*fdp = openat(dirfd, comp, flags)) >= 0)
		return 0;
	if (errno == ENOENT && w->mode == FR_CREATE)
		return make_component(w, dirfd, comp, sofar, flags, leaf, fdp);
	if (errno == ENOENT)
		return say(w, TP_ENOENT, "does not exist (from %s on): "
		    "`tunnelpool run` creates it", sofar);
	if (errno == ENOTDIR || errno == ELOOP)
		return not_a_dir(w, dirfd, comp, sofar);
	return say(w, TP_ESYS, "%s: %s", sofar, strerror(errno));
}

/*
 * Walks w->path from "/", checking (and in FR_CREATE mode making) every
 * component.  Returns 0 with the leaf's fd in *leaf, or a tp_err with
 * w->msg set.
 */
static int
walk_path(struct walk *w, int *leaf)
{
	char buf[PATH_MAX], sofar[PATH_MAX] = "";
	char *save = NULL, *comp, *next;
	int dirfd, fd, rc;
	size_t len = 0;

	if (w->path[0] != '/')
		return say(w, TP_EINVAL, "not an absolute path");
	if (strlen(w->path) >= sizeof(buf))
		return say(w, TP_ETOOBIG, "path too long");
	memcpy(buf, w->path, strlen(w->path) + 1);
	if ((dirfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return say(w, TP_ESYS, "/: %s", strerror(errno));
	if ((rc = check_dir(w, dirfd, "/", true)) != 0)
		goto fail;
	for (comp = strtok_r(buf, "/", &save); comp != NULL; comp = next) {
		next = strtok_r(NULL, "/", &save);
		if (strcmp(comp, ".") == 0)
			continue;
		if (strcmp(comp, "..") == 0) {
			rc = say(w, TP_EINVAL, "must not contain \"..\"");
			goto fail;
		}
		len += (size_t)snprintf(sofar + len, sizeof(sofar) - len, "/%s",
		    comp);
		if ((rc = open_component(w, dirfd, comp, sofar, next == NULL,
		    &fd)) != 0)
			goto fail;
		close(dirfd);
		dirfd = fd;
		if ((rc = check_dir(w, dirfd, sofar, next != NULL)) != 0)
			goto fail;
	}
	*leaf = dirfd;
	return 0;
fail:
	close(dirfd);
	return rc;
}

/* The leaf of a chroot must be empty: checked through the walked fd. */
static int
check_empty(struct walk *w, int fd)
{
	struct dirent *de;
	DIR *d;
	int dfd, rc = 0;

	if ((dfd = dup(fd)) < 0 || (d = fdopendir(dfd)) == NULL) {
		if (dfd >= 0)
			close(dfd);
		return say(w, TP_ESYS, "%s", strerror(errno));
	}
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			rc = say(w, TP_EINVAL, "is not empty (has %s): workers "
			    "chroot into it; empty it or choose another path",
			    de->d_name);
			break;
		}
	closedir(d);
	return rc;
}

/* The success line: what was created, if anything. */
static void
note_made(struct walk *w)
{
	unsigned mode = w->leaf_mode != 0 ? (unsigned)w->leaf_mode : DIR_MODE;

	if (w->nmade == 0)
		w->msg[0] = '\0';
	else if (w->nmade == 1)
		say(w, 0, "created (mode %04o%s)", mode, geteuid() == 0 ?
		    ", root:root" : "");
	else
		say(w, 0, "created, with %u missing parent%s from %s on (mode "
		    "%04o%s)", w->nmade - 1, w->nmade == 2 ? "" : "s",
		    w->first_made, mode, geteuid() == 0 ? ", root:root" : "");
}

/* A directory with no further rule: walked, made as the mode says. */
static int
walk_dir(struct walk *w)
{
	int fd, rc;

	if ((rc = walk_path(w, &fd)) != 0)
		return rc;
	close(fd);
	note_made(w);
	return 0;
}

int
firstrun_empty_root(const char *path, enum fr_mode mode, char *msg,
    size_t cap)
{
	struct walk w = { .setting = "worker.empty_root", .path = path,
	    .strict = true, .mode = mode, .msg = msg, .cap = cap };
	int fd, rc;

	msg[0] = '\0';
	if ((rc = walk_path(&w, &fd)) != 0)
		return rc;
	rc = check_empty(&w, fd);
	close(fd);
	if (rc == 0)
		note_made(&w);
	return rc;
}

int
firstrun_runtime_dir(const char *socket_path, enum fr_mode mode, char *msg,
    size_t cap)
{
	char dir[PATH_MAX], *slash;
	struct walk w = { .setting = "control_socket", .path = socket_path,
	    .strict = false, .mode = mode, .msg = msg, .cap = cap };

	msg[0] = '\0';
	if (strlen(socket_path) >= sizeof(dir))
		return say(&w, TP_ETOOBIG, "path too long");
	memcpy(dir, socket_path, strlen(socket_path) + 1);
	if ((slash = strrchr(dir, '/')) == NULL)
		return say(&w, TP_EINVAL, "not an absolute path");
	if (slash == dir)
		return 0;	/* directly in "/" */
	*slash = '\0';
	w.path = dir;
	w.setting = "control_socket directory";
	return walk_dir(&w);
}

int
firstrun_state_dir(const char *path, enum fr_mode mode, char *msg, size_t cap)
{
	struct walk w = { .setting = "state_dir", .path = path,
	    .strict = false, .leaf_mode = 0700, .mode = mode, .msg = msg,
	    .cap = cap };

	msg[0] = '\0';
	return walk_dir(&w);
}

int
firstrun_worker_user(const char *user, bool allow_root, uid_t *uid,
    gid_t *gid, char *msg, size_t cap)
{
	struct passwd *pw;

	msg[0] = '\0';
	errno = 0;
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(msg, cap, "worker.user \"%s\": no such user: create it "
		    "(useradd --system --no-create-home --home-dir /nonexistent "
		    "--shell /usr/sbin/nologin %s, or systemd-sysusers with the "
		    "package's sysusers.d entry) or set worker.user to an "
		    "existing unprivileged user", user, user);
		return TP_ENOENT;
	}
	if (uid != NULL)
		*uid = pw->pw_uid;
	if (gid != NULL)
		*gid = pw->pw_gid;
	if ((pw->pw_uid == 0 || pw->pw_gid == 0) && !allow_root) {
		snprintf(msg, cap, "worker.user \"%s\" is root: refusing to run "
		    "workers as root (set worker.allow_root: true to override)",
		    user);
		return TP_EDENIED;
	}
	return 0;
}

void
firstrun_tunnels_dir_missing(const char *dir, char *msg, size_t cap)
{
	snprintf(msg, cap, "%s: tunnels_dir does not exist: no tunnels until it "
	    "does (mkdir -p %s and add *.yaml tunnel files; a running "
	    "supervisor picks it up when it appears)", dir, dir);
}
