/*
 * Bounded reading of configuration files (cfgread.h).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "supervisor/cfgread.h"

/*
 * O_NONBLOCK so that a FIFO planted in place of a file cannot hang the
 * supervisor; fstat on the open fd so the checks apply to what we read.
 */
static int
open_regular(const char *path, size_t max, int *fdp, size_t *sizep,
    struct cfg_errors *errs)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		cfg_errors_add(errs, "%s: cannot open: %s", path,
		    strerror(errno));
		return TP_ESYS;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		cfg_errors_add(errs, "%s: not a regular file", path);
		close(fd);
		return TP_EINVAL;
	}
	if ((uintmax_t)st.st_size > max) {
		cfg_errors_add(errs, "%s: file too large (%jd bytes, limit %zu)",
		    path, (intmax_t)st.st_size, max);
		close(fd);
		return TP_ETOOBIG;
	}
	*fdp = fd;
	*sizep = (size_t)st.st_size;
	return 0;
}

/* Makes room for at least one more byte; 0 or TP_ENOMEM. */
static int
buf_room(char **buf, size_t *cap, size_t len)
{
	char *nb;

	if (len + 1 < *cap)
		return 0;
	if ((nb = realloc(*buf, *cap * 2)) == NULL)
		return TP_ENOMEM;
	*buf = nb;
	*cap *= 2;
	return 0;
}

/*
 * Reads until EOF into a buffer sized from fstat; the file may have grown
 * since, so the limit is checked against what was actually read.
 */
static int
read_all(int fd, const char *path, size_t size, size_t max, char **bufp,
    size_t *lenp, struct cfg_errors *errs)
{
	size_t len = 0, cap = size + 2;
	char *buf = malloc(cap);
	ssize_t r;

	while (buf != NULL && buf_room(&buf, &cap, len) == 0 &&
	    (r = read(fd, buf + len, cap - 1 - len)) != 0) {
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			cfg_errors_add(errs, "%s: read: %s", path,
			    strerror(errno));
			free(buf);
			return TP_ESYS;
		}
		if ((len += (size_t)r) > max) {
			cfg_errors_add(errs, "%s: file too large (limit %zu)",
			    path, max);
			free(buf);
			return TP_ETOOBIG;
		}
	}
	if (buf == NULL || len + 1 >= cap) {	/* malloc or buf_room failed */
		cfg_errors_add(errs, "%s: out of memory", path);
		free(buf);
		return TP_ENOMEM;
	}
	buf[len] = '\0';
	*bufp = buf;
	*lenp = len;
	return 0;
}

/*
 * A file some process holds open for writing is being written: what it
 * holds now may be a valid prefix of what is coming (a tunnel file cut
 * after its first document parses fine and would drop every later
 * tunnel).  The kernel answers "is it open for writing?" exactly: a read
 * lease (F_SETLEASE F_RDLCK) is refused with EAGAIN while any writer has
 * it open, and is broken when a writer opens it while we read.  Leases
 * need the file's owner or CAP_LEASE and a file system that has them;
 * where they are refused for that reason the file is read without one
 * (said once in the log).  A lease break signals SIGIO to us: whoever
 * calls this ignores SIGIO (the supervisor and the CLI do at start).
 */
static int
lease_take(int fd, const char *path, struct cfg_errors *errs, int *leased)
{
	static int said;

	*leased = 0;
	if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
		*leased = 1;
		return 0;
	}
	if (errno == EAGAIN) {
		cfg_errors_add(errs, "%s: open for writing by another process "
		    "(being written?): not read; its last good contents stay "
		    "in effect until the writer closes it", path);
		return TP_EAGAIN;
	}
	if (!said) {
		said = 1;
		log_info("file leases unavailable (%s: %s): a file read "
		    "while being written is caught only by its parse",
		    path, strerror(errno));
	}
	return 0;
}

int
cfg_read_file(const char *path, size_t max, char **bufp, size_t *lenp,
    struct cfg_errors *errs)
{
	size_t size;
	int fd, rc, leased;

	*bufp = NULL;
	*lenp = 0;
	if ((rc = open_regular(path, max, &fd, &size, errs)) != 0)
		return rc;
	if ((rc = lease_take(fd, path, errs, &leased)) != 0) {
		close(fd);
		return rc;
	}
	rc = read_all(fd, path, size, max, bufp, lenp, errs);
	if (leased && rc == 0 && fcntl(fd, F_GETLEASE) != F_RDLCK) {
		/* A writer opened it while we read: its bytes may be torn. */
		cfg_errors_add(errs, "%s: opened for writing while being read: "
		    "not used; its last good contents stay in effect", path);
		free(*bufp);
		*bufp = NULL;
		*lenp = 0;
		rc = TP_EAGAIN;
	}
	if (leased)
		(void)fcntl(fd, F_SETLEASE, F_UNLCK);
	close(fd);
	return rc;
}

/*
 * Relative paths are taken relative to the configuration file's directory,
 * not to the daemon's working directory (which is "/" under systemd).
 */
int
cfg_resolve_path(char **p, const char *file)
{
	const char *slash = strrchr(file, '/');
	char *res;

	if ((*p)[0] == '/' || (*p)[0] == '\0' || slash == NULL)
		return 0;
	if (asprintf(&res, "%.*s/%s", (int)(slash - file), file, *p) < 0)
		return TP_ENOMEM;
	free(*p);
	*p = res;
	return 0;
}
