/*
 * The worker's syscall sandbox: a two-function interface (prepare, enter)
 * over one reviewed allowlist (sandbox_seccomp.c), or over the null backend
 * (sandbox_null.c, -Dsandbox=none) for sanitizer builds, which cannot run
 * under a filter that kills on the sanitizer runtime's own syscalls.
 *
 * The filter is built by sandbox_prepare() while the filesystem is still
 * reachable and loaded by sandbox_enter() as the very last demotion step
 * (see demote.h), before the worker reads a byte from the network.  Both
 * must run in the process that will be confined: the filter pins that
 * process's pid (tgkill for abort() is allowed to itself only).
 *
 * Anything outside the allowlist kills the process (SIGSYS).  A debug build
 * (-Dsandbox_trap=true, TP_SANDBOX_TRAP) traps instead: the SIGSYS handler
 * sends MSG_SANDBOX_VIOLATION on the control fd and exits with
 * WEXIT_SANDBOX_VIOLATION (proto/exitcode.h), so the supervisor can log
 * which syscall was refused.
 */
#ifndef TP_WORKER_SANDBOX_H
#define TP_WORKER_SANDBOX_H

struct sandbox_opts {
	int	control_fd;	/* SEQPACKET to the supervisor; -1: none */
};

/*
 * Builds the filter for the calling process (kept in memory until
 * sandbox_enter).  May be called again; the previous filter is discarded.
 * Returns 0, TP_EINVAL (bad opts, or the allowlist names a forbidden
 * syscall) or TP_ESYS (libseccomp failed; errno set).
 */
int sandbox_prepare(const struct sandbox_opts *opts);

/*
 * Loads the prepared filter; irreversible.  In trap builds it installs the
 * SIGSYS reporter first.  Returns 0, TP_ESTATE (not prepared, or prepared
 * by another process) or TP_ESYS (errno set).
 */
int sandbox_enter(void);

/* Returns the backend's name: "seccomp", "seccomp-trap" or "none". */
const char *sandbox_name(void);

#endif
