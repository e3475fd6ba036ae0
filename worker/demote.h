/*
 * The worker's fail-closed demotion, in a fixed order:
 *
 *   prepare the filter -> close fds -> empty root (root) or Landlock
 *   (non-root) -> groups/gid/uid (+ capabilities) -> rlimits ->
 *   not dumpable -> no_new_privs -> caller's warm-up -> seccomp
 *
 * after which the worker sends MSG_READY and only then reads the network.
 * Every step returns 0 or a TP_E* code (errno kept for TP_ESYS); the worker
 * turns any failure into a fatal error.  The steps are exported one by one
 * for tests; the worker calls demote_all().
 */
#ifndef TP_WORKER_DEMOTE_H
#define TP_WORKER_DEMOTE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/workerfd.h"

#define DEMOTE_KEEP_FDS		(WORKER_FD_PROXY + 1)	/* 0..5: the fd contract */
#define DEMOTE_EMPTY_DIR	"/var/empty/tunnelpool"
/*
 * RLIMIT_DATA (heap, anonymous mmap, .data/.bss) = BASE + max_channels x
 * PER_CHANNEL: 224 MiB for the default 256 channels.  What the worker
 * buffers is bounded well below it (worker/channels.h: CHAN_RX_BUDGET plus
 * CHAN_WINDOW_MIN and CHAN_BUF per channel, each at most doubled by
 * libssh's power-of-two buffers); the limit is the wall behind that bound,
 * so a bug or a hostile peer gets ENOMEM, not the node's memory.
 */
#define DEMOTE_DATA_BASE	(128ull << 20)
#define DEMOTE_DATA_PER_CHANNEL	(384ull << 10)

enum demote_step {
	DEMOTE_STEP_NONE = 0,		/* nothing failed */
	DEMOTE_STEP_ARGS,		/* opts rejected before any change */
	DEMOTE_STEP_PREPARE,		/* sandbox_prepare */
	DEMOTE_STEP_CLOSE_FDS,
	DEMOTE_STEP_FS,			/* chroot or Landlock */
	DEMOTE_STEP_IDS,
	DEMOTE_STEP_RLIMITS,
	DEMOTE_STEP_DUMPABLE,
	DEMOTE_STEP_NO_NEW_PRIVS,
	DEMOTE_STEP_WARMUP,		/* the caller's hook */
	DEMOTE_STEP_SANDBOX,		/* sandbox_enter */
};

struct demote_opts {
	const char	*empty_dir;	/* root: chroot here; NULL: default */
	uid_t		 uid;		/* resolved by the caller pre-chroot */
	gid_t		 gid;
	bool		 allow_root;	/* permit uid/gid 0; not recommended */
	uint32_t	 max_channels;	/* sizes RLIMIT_NOFILE; 1..65535 */
	int		 control_fd;	/* trap-mode reports; -1 = none */
	/*
	 * Runs after no_new_privs, just before the filter: the last moment
	 * with the full syscall surface, to create the event base and warm up
	 * anything that probes the system once.  Its fds survive (it runs
	 * after the close step).  Returns 0 or a TP_E* code.  May be NULL.
	 */
	int		(*warmup)(void *arg);
	void		*warmup_arg;
};

struct demote_result {
	enum demote_step failed;	/* DEMOTE_STEP_NONE on success */
	int		 err;		/* the failed step's TP_E* code */
	int		 sys_errno;	/* errno when err == TP_ESYS */
	bool		 fs_unconfined;	/* non-root, kernel without Landlock */
	bool		 fsize_kept;	/* log is a file: RLIMIT_FSIZE kept */
};

/*
 * Runs every step in order and stops at the first failure.  A missing
 * Landlock (non-root only) is not a failure: it sets fs_unconfined, and the
 * caller logs it once; seccomp still refuses every open.  Returns 0, or the
 * failed step's error with res->failed naming the step.  res may be NULL.
 */
int demote_all(const struct demote_opts *o, struct demote_result *res);

/* Returns a short name for a step ("close-fds", ...), or "?". */
const char *demote_step_name(enum demote_step step);

/*
 * (a) Closes every fd >= lowfd (close_range, else a /proc/self/fd walk,
 * else a loop to the fd limit).  Returns 0, TP_EINVAL or TP_ESYS.
 */
int demote_close_fds(int lowfd);

/*
 * (b, root) Checks that dir is a directory owned by root, not writable by
 * group or others, and empty, then chroots into that very inode and chdirs
 * to "/".  Returns 0, TP_EINVAL, TP_EDENIED (ownership, mode, not empty,
 * symlink, not a directory; nothing changed) or TP_ESYS.
 */
int demote_chroot(const char *dir);

/*
 * (b, non-root) Landlock ruleset that handles every filesystem right the
 * kernel knows (and TCP bind/connect, abstract sockets and signals when its
 * ABI has them) and grants none.  Sets no_new_privs first, which Landlock
 * requires of unprivileged callers.  Returns 0, TP_EUNSUPP (kernel without
 * Landlock, or disabled at boot) or TP_ESYS.
 */
int demote_landlock(void);

/*
 * (c) Drops supplementary groups (root only), sets real/effective/saved gid
 * and uid, clears capabilities, and verifies: getres[ug]id match, no
 * capability left, and setuid(0)/setgid(0) fail.  uid or gid 0 needs
 * allow_root.  Returns 0, TP_EDENIED (uid/gid 0 refused, or a non-root
 * caller asked for another identity), TP_ESTATE (the drop did not stick)
 * or TP_ESYS.
 */
int demote_ids(uid_t uid, gid_t gid, bool allow_root);

/*
 * (d) RLIMIT_NPROC 0, RLIMIT_FSIZE 0, RLIMIT_CORE 0, RLIMIT_NOFILE
 * 16 + 2 * max_channels (capped at the current hard limit), RLIMIT_DATA
 * demote_data_limit(max_channels).  FSIZE is left
 * alone when fd 1 or 2 is a regular file (the log would die of SIGXFSZ);
 * *fsize_kept says so.  Returns 0, TP_EINVAL or TP_ESYS.
 */
int demote_rlimits(uint32_t max_channels, bool *fsize_kept);

/* (e) PR_SET_DUMPABLE 0, verified.  Returns 0, TP_ESTATE or TP_ESYS. */
int demote_dumpable(void);

/* (f) PR_SET_NO_NEW_PRIVS 1, verified.  Returns 0, TP_ESTATE or TP_ESYS. */
int demote_no_new_privs(void);

/*
 * Returns the RLIMIT_DATA value demote_rlimits sets, or 0 when it sets none
 * (ASan builds: their shadow memory would exceed any limit).
 */
uint64_t demote_data_limit(uint32_t max_channels);

/* Returns the RLIMIT_NOFILE value demote_rlimits asks for. */
uint32_t demote_nofile(uint32_t max_channels);

#endif
