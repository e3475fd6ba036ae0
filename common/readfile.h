/*
 * The project's one reader of a whole file: configuration, tunnel files,
 * known_hosts, the etcd snapshot and password (supervisor/cfgread.c), the
 * private key and certificate (supervisor/sshkey.c), the proxy list and
 * host certificate (proxy/proxies_file.c).
 *
 * Always: opened without following into a FIFO's or device's open wait
 * (O_NONBLOCK, then refused unless fstat says regular file), bounded both
 * by what fstat says and by what is actually read (a file may grow while
 * it is read), NUL-terminated.  It never logs: what went wrong comes back
 * in a struct tp_rf_result, so that each caller words its errors its own
 * way (their messages are part of their interfaces and golden files).
 */
#ifndef TP_READFILE_H
#define TP_READFILE_H

#include <stddef.h>
#include <stdint.h>

/* Flags of tp_read_file. */
#define TP_RF_LEASE	0x1	/* refuse a file being written (read lease) */
#define TP_RF_PRIVATE	0x2	/* refuse a file group or others may access */
#define TP_RF_SECRET	0x4	/* one buffer, never reallocated, wiped */

/* Which step failed. */
enum tp_rf_fail {
	TP_RF_OK = 0,
	TP_RF_OPEN,	/* open(2): err */
	TP_RF_STAT,	/* fstat(2): err */
	TP_RF_NOTREG,	/* not a regular file */
	TP_RF_MODE,	/* TP_RF_PRIVATE and mode & 077: mode */
	TP_RF_SIZE,	/* fstat says more than max bytes: size */
	TP_RF_GREW,	/* more than max bytes came (it grew since fstat) */
	TP_RF_READ,	/* read(2): err */
	TP_RF_NOMEM,
	TP_RF_WRITER,	/* TP_RF_LEASE: another process has it open to write */
	TP_RF_TORN,	/* TP_RF_LEASE: a writer opened it while it was read */
};

struct tp_rf_result {
	enum tp_rf_fail	 fail;
	int		 err;		/* errno of OPEN, STAT and READ */
	intmax_t	 size;		/* SIZE: st_size */
	unsigned	 mode;		/* MODE: st_mode & 07777 */
	/*
	 * TP_RF_LEASE asked for but not to be had (not the file's owner
	 * without CAP_LEASE, or a file system without leases): the errno,
	 * and the file was read without one.  0 otherwise.
	 */
	int		 lease_err;
};

/*
 * Reads the regular file at path, at most max bytes, into a malloc'd
 * buffer with a NUL after the contents.  Returns 0 with *bufp and *lenp
 * set, or a negative tp_err with *bufp NULL, *lenp 0 and res saying why:
 * TP_ESYS (OPEN, STAT, READ), TP_EINVAL (NOTREG), TP_EDENIED (MODE),
 * TP_ETOOBIG (SIZE, GREW), TP_ENOMEM, TP_EAGAIN (WRITER, TORN).
 *
 * TP_RF_LEASE: holds a read lease (F_SETLEASE F_RDLCK) while reading; the
 * kernel refuses it while any process has the file open for writing and
 * breaks it when one opens it, so a file caught half-written is not used.
 * A lease break raises SIGIO in the caller's process, which must ignore
 * SIGIO.
 * TP_RF_SECRET: the buffer is exactly max + 1 bytes, whatever was read,
 * and is never reallocated (no stale copies in the heap), so that the
 * caller can wipe it whole (OPENSSL_clear_free(buf, max + 1)); it is
 * wiped here on every error.
 */
int tp_read_file(const char *path, size_t max, int flags, char **bufp,
    size_t *lenp, struct tp_rf_result *res);

#endif
