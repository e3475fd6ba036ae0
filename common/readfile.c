/*
 * The one whole-file reader (readfile.h).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "readfile.h"

static int
fail(struct tp_rf_result *res, enum tp_rf_fail what, int err, int rc)
{
	res->fail = what;
	res->err = err;
	return rc;
}

/* The checks that fstat can answer before a byte is read. */
static int
check_stat(int fd, size_t max, int flags, size_t *sizep,
    struct tp_rf_result *res)
{
	struct stat st;

	if (fstat(fd, &st) == -1)
		return fail(res, TP_RF_STAT, errno, TP_ESYS);
	if (!S_ISREG(st.st_mode))
		return fail(res, TP_RF_NOTREG, 0, TP_EINVAL);
	if ((flags & TP_RF_PRIVATE) && (st.st_mode & 077) != 0) {
		res->mode = (unsigned)(st.st_mode & 07777);
		return fail(res, TP_RF_MODE, 0, TP_EDENIED);
	}
	if ((uintmax_t)st.st_size > max) {
		res->size = (intmax_t)st.st_size;
		return fail(res, TP_RF_SIZE, 0, TP_ETOOBIG);
	}
	*sizep = (size_t)st.st_size;
	return 0;
}

static void
drop(char *buf, size_t cap, int flags)
{
	if (buf != NULL && (flags & TP_RF_SECRET))
		explicit_bzero(buf, cap);
	free(buf);
}

/*
 * Reads until EOF into a buffer sized from fstat (a secret's: max + 1,
 * never grown); the file may have grown since, so the limit is checked
 * against what was actually read.
 */
static int
read_all(int fd, size_t max, size_t size, int flags, char **bufp,
    size_t *lenp, struct tp_rf_result *res)
{
	int secret = flags & TP_RF_SECRET;
	size_t len = 0, cap = secret ? max + 1 : size + 2;
	char *buf = malloc(cap), *nb;
	ssize_t r;

	if (buf == NULL)
		return fail(res, TP_RF_NOMEM, 0, TP_ENOMEM);
	for (;;) {
		if (!secret && len + 1 >= cap) {
			if ((nb = realloc(buf, cap * 2)) == NULL) {
				free(buf);
				return fail(res, TP_RF_NOMEM, 0, TP_ENOMEM);
			}
			buf = nb;
			cap *= 2;
		}
		/* A secret's buffer may fill up: that is one byte too many. */
		r = read(fd, buf + len, cap - len - (secret ? 0 : 1));
		if (r == 0)
			break;
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			r = errno;
			drop(buf, cap, flags);
			return fail(res, TP_RF_READ, (int)r, TP_ESYS);
		}
		if ((len += (size_t)r) > max) {
			drop(buf, cap, flags);
			return fail(res, TP_RF_GREW, 0, TP_ETOOBIG);
		}
	}
	buf[len] = '\0';
	*bufp = buf;
	*lenp = len;
	return 0;
}

/*
 * Takes a read lease if it can be had.  EAGAIN: some process has the
 * file open for writing.  Any other refusal (not the owner, no
 * CAP_LEASE, no leases on this file system) leaves it unleased.
 */
static int
lease_take(int fd, int *leased, struct tp_rf_result *res)
{
	*leased = 0;
	if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
		*leased = 1;
		return 0;
	}
	if (errno == EAGAIN)
		return fail(res, TP_RF_WRITER, 0, TP_EAGAIN);
	res->lease_err = errno;
	return 0;
}

int
tp_read_file(const char *path, size_t max, int flags, char **bufp,
    size_t *lenp, struct tp_rf_result *res)
{
	int fd, rc, leased = 0;
	size_t size = 0;

	memset(res, 0, sizeof(*res));
	*bufp = NULL;
	*lenp = 0;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd == -1)
		return fail(res, TP_RF_OPEN, errno, TP_ESYS);
	if ((rc = check_stat(fd, max, flags, &size, res)) != 0 ||
	    ((flags & TP_RF_LEASE) && (rc = lease_take(fd, &leased,
	    res)) != 0))
		goto out;
	rc = read_all(fd, max, size, flags, bufp, lenp, res);
	if (leased && rc == 0 && fcntl(fd, F_GETLEASE) != F_RDLCK) {
		/* A writer opened it while we read: its bytes may be torn. */
		drop(*bufp, max + 1, flags);	/* the size matters if secret */
		*bufp = NULL;
		*lenp = 0;
		rc = fail(res, TP_RF_TORN, 0, TP_EAGAIN);
	}
out:
	if (leased)
		(void)fcntl(fd, F_SETLEASE, F_UNLCK);
	close(fd);
	return rc;
}
