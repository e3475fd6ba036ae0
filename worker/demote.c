/*
 * Fail-closed demotion of a worker.  The order is fixed (see demote.h) and
 * each step verifies its own effect, because a privilege drop that silently
 * did not happen is worse than a worker that refuses to start.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/landlock.h>

#include "common/error.h"
#include "worker/demote.h"
#include "worker/sandbox.h"

#define MAX_CHANNELS		65535
#define CLOSE_LOOP_CAP		(1U << 20)

/* Landlock rights newer than the build's headers; values are kernel ABI. */
#define LL_FS_ABI1		((1ULL << 13) - 1)	/* EXECUTE..MAKE_SYM */
#define LL_FS_REFER		(1ULL << 13)		/* ABI 2 */
#define LL_FS_TRUNCATE		(1ULL << 14)		/* ABI 3 */
#define LL_FS_IOCTL_DEV		(1ULL << 15)		/* ABI 5 */
#define LL_NET_TCP		((1ULL << 0) | (1ULL << 1))	/* ABI 4 */
#define LL_SCOPE_ALL		((1ULL << 0) | (1ULL << 1))	/* ABI 6 */

/* struct landlock_ruleset_attr as of ABI 6; older kernels get a prefix. */
struct ll_attr {
	uint64_t	handled_access_fs;
	uint64_t	handled_access_net;
	uint64_t	scoped;
};

const char *
demote_step_name(enum demote_step step)
{
	switch (step) {
	case DEMOTE_STEP_NONE:		return "none";
	case DEMOTE_STEP_ARGS:		return "args";
	case DEMOTE_STEP_PREPARE:	return "prepare";
	case DEMOTE_STEP_CLOSE_FDS:	return "close-fds";
	case DEMOTE_STEP_FS:		return "fs";
	case DEMOTE_STEP_IDS:		return "ids";
	case DEMOTE_STEP_RLIMITS:	return "rlimits";
	case DEMOTE_STEP_DUMPABLE:	return "dumpable";
	case DEMOTE_STEP_NO_NEW_PRIVS:	return "no-new-privs";
	case DEMOTE_STEP_WARMUP:	return "warmup";
	case DEMOTE_STEP_SANDBOX:	return "sandbox";
	}
	return "?";
}

/* --- (a) close fds ------------------------------------------------------ */

/* Closes fds >= lowfd listed in /proc/self/fd; -1 if /proc is missing. */
static int
close_proc_walk(int lowfd)
{
	struct dirent *de;
	DIR *d;
	long fd;
	char *end;

	if ((d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		errno = 0;
		fd = strtol(de->d_name, &end, 10);
		if (errno != 0 || *end != '\0' || end == de->d_name)
			continue;
		if (fd >= lowfd && fd <= INT_MAX && fd != dirfd(d))
			(void)close((int)fd);
	}
	closedir(d);
	return 0;
}

/* Last resort: close every possible fd number up to the soft limit. */
static void
close_loop(int lowfd)
{
	struct rlimit rl;
	rlim_t max = CLOSE_LOOP_CAP;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < max)
		max = rl.rlim_cur;
	for (rlim_t fd = (rlim_t)lowfd; fd < max; fd++)
		(void)close((int)fd);
}

int
demote_close_fds(int lowfd)
{
	if (lowfd < 0)
		return TP_EINVAL;
#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0) == 0)
		return 0;
#endif
	/* Kernel < 5.9: same effect, more syscalls. */
	if (close_proc_walk(lowfd) == 0)
		return 0;
	close_loop(lowfd);
	return 0;
}

/* --- (b) empty root, or Landlock ---------------------------------------- */

/* TP_EDENIED unless the directory open at fd has no entry but . and .. */
static int
dir_is_empty(int fd)
{
	struct dirent *de;
	DIR *d;
	int dfd, rc = 0;

	if ((dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return TP_ESYS;
	if ((d = fdopendir(dfd)) == NULL) {
		close(dfd);
		return TP_ESYS;
	}
	errno = 0;
	while (rc == 0 && (de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			rc = TP_EDENIED;
	if (rc == 0 && errno != 0)
		rc = TP_ESYS;
	closedir(d);
	return rc;
}

/*
 * An empty root is only empty if nobody but root can put something in it:
 * the same rule as sshd's ChrootDirectory, applied to the inode itself.
 */
static int
check_empty_root(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == -1)
		return TP_ESYS;
	if (!S_ISDIR(st.st_mode) || st.st_uid != 0 ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
		return TP_EDENIED;
	return dir_is_empty(fd);
}

int
demote_chroot(const char *dir)
{
	int fd, rc, saved;

	if (dir == NULL || dir[0] != '/')
		return TP_EINVAL;
	/*
	 * Check and chroot the same inode (fchdir + chroot ".") so that
	 * nothing can swap the path between the check and the chroot.
	 */
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return (errno == ELOOP || errno == ENOTDIR) ? TP_EDENIED :
		    TP_ESYS;
	if ((rc = check_empty_root(fd)) == 0 &&
	    (fchdir(fd) == -1 || chroot(".") == -1 || chdir("/") == -1))
		rc = TP_ESYS;
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/* Returns the Landlock ABI version, or 0 when the kernel has none. */
static int
landlock_abi(void)
{
#ifdef SYS_landlock_create_ruleset
	long v = syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);

	return v > 0 ? (int)v : 0;
#else
	return 0;
#endif
}

/* Fills attr with every right of this ABI; returns the size to pass. */
static size_t
landlock_attr(int abi, struct ll_attr *attr)
{
	memset(attr, 0, sizeof(*attr));
	attr->handled_access_fs = LL_FS_ABI1;
	if (abi >= 2)
		attr->handled_access_fs |= LL_FS_REFER;
	if (abi >= 3)
		attr->handled_access_fs |= LL_FS_TRUNCATE;
	if (abi >= 5)
		attr->handled_access_fs |= LL_FS_IOCTL_DEV;
	if (abi >= 4)
		attr->handled_access_net = LL_NET_TCP;
	if (abi >= 6)
		attr->scoped = LL_SCOPE_ALL;
	if (abi >= 6)
		return sizeof(*attr);
	return abi >= 4 ? offsetof(struct ll_attr, scoped) :
	    offsetof(struct ll_attr, handled_access_net);
}

int
demote_landlock(void)
{
	struct ll_attr attr;
	size_t size;
	int abi, fd, rc = 0, saved;

	if ((abi = landlock_abi()) == 0)
		return TP_EUNSUPP;
	size = landlock_attr(abi, &attr);
	/* Unprivileged processes may only self-restrict under NNP. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		return TP_ESYS;
	fd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
	if (fd == -1)
		return TP_ESYS;
	/* No rules added: every handled access is denied everywhere. */
	if (syscall(SYS_landlock_restrict_self, fd, 0) == -1)
		rc = TP_ESYS;
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/* Chroot as root, Landlock otherwise; a missing Landlock is only noted. */
static int
demote_fs(const struct demote_opts *o, struct demote_result *res)
{
	int rc;

	if (geteuid() == 0)
		return demote_chroot(o->empty_dir != NULL ? o->empty_dir :
		    DEMOTE_EMPTY_DIR);
	rc = demote_landlock();
	if (rc == TP_EUNSUPP) {
		res->fs_unconfined = true;
		rc = 0;
	}
	return rc;
}

/* --- (c) ids and capabilities ------------------------------------------- */

/* Clears ambient, permitted, effective and inheritable capabilities. */
static int
drop_caps(void)
{
	struct __user_cap_header_struct hdr = {
		_LINUX_CAPABILITY_VERSION_3, 0
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	/* EINVAL: a kernel without ambient capabilities has none to clear. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == -1 &&
	    errno != EINVAL)
		return TP_ESYS;
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) == -1)
		return TP_ESYS;
	return 0;
}

/* TP_ESTATE unless no capability is left, in any set. */
static int
verify_no_caps(void)
{
	struct __user_cap_header_struct hdr = {
		_LINUX_CAPABILITY_VERSION_3, 0
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &hdr, data) == -1)
		return TP_ESYS;
	for (size_t i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		if (data[i].effective != 0 || data[i].permitted != 0 ||
		    data[i].inheritable != 0)
			return TP_ESTATE;
	return 0;
}

/* TP_ESTATE unless every id is the target and root is out of reach. */
static int
verify_ids(uid_t uid, gid_t gid)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1)
		return TP_ESYS;
	if (ru != uid || eu != uid || su != uid ||
	    rg != gid || eg != gid || sg != gid)
		return TP_ESTATE;
	if (uid != 0 && (setuid(0) != -1 || setgid(0) != -1))
		return TP_ESTATE;
	return verify_no_caps();
}

int
demote_ids(uid_t uid, gid_t gid, bool allow_root)
{
	int rc;

	if ((uid == 0 || gid == 0) && !allow_root)
		return TP_EDENIED;
	if (geteuid() == 0) {
		if (setgroups(0, NULL) == -1)
			return TP_ESYS;
	} else if (uid != getuid() || gid != getgid()) {
		/*
		 * Unprivileged: we can only shed saved ids.  Supplementary
		 * groups stay, but Landlock leaves them nothing to grant.
		 */
		return TP_EDENIED;
	}
	if (setresgid(gid, gid, gid) == -1 || setresuid(uid, uid, uid) == -1)
		return TP_ESYS;
	if ((rc = drop_caps()) != 0)
		return rc;
	return verify_ids(uid, gid);
}

/* --- (d) rlimits -------------------------------------------------------- */

uint32_t
demote_nofile(uint32_t max_channels)
{
	/* 0-5 + event base + a few spare, then a dialed fd per channel x2. */
	return 16 + 2 * max_channels;
}

/*
 * ASan reserves terabytes of shadow memory before main(); every later
 * mapping would count against RLIMIT_DATA on top of it and fail.  The
 * sanitizer builds run with the null sandbox anyway.
 */
#if defined(__SANITIZE_ADDRESS__)
#define TP_NO_DATA_LIMIT 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define TP_NO_DATA_LIMIT 1
#endif
#endif

uint64_t
demote_data_limit(uint32_t max_channels)
{
#ifdef TP_NO_DATA_LIMIT
	(void)max_channels;
	return 0;
#else
	return DEMOTE_DATA_BASE + (uint64_t)max_channels *
	    DEMOTE_DATA_PER_CHANNEL;
#endif
}

/* Sets both limits of resource to v. */
static int
limit(int resource, rlim_t v)
{
	struct rlimit rl = { v, v };

	return setrlimit(resource, &rl) == -1 ? TP_ESYS : 0;
}

/* True if fd is open on a regular file. */
static bool
fd_is_file(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
}

int
demote_rlimits(uint32_t max_channels, bool *fsize_kept)
{
	struct rlimit rl;
	rlim_t nofile = demote_nofile(max_channels);
	bool keep = fd_is_file(STDOUT_FILENO) || fd_is_file(STDERR_FILENO);

	if (max_channels == 0 || max_channels > MAX_CHANNELS)
		return TP_EINVAL;
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return TP_ESYS;
	/* Without privileges the hard limit can only go down. */
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < nofile)
		nofile = rl.rlim_max;
	if (limit(RLIMIT_NPROC, 0) != 0 || limit(RLIMIT_CORE, 0) != 0 ||
	    limit(RLIMIT_NOFILE, nofile) != 0)
		return TP_ESYS;
	/* A bound on heap + mmap: the worker's buffers are bounded below it. */
	if (demote_data_limit(max_channels) != 0 &&
	    limit(RLIMIT_DATA, (rlim_t)demote_data_limit(max_channels)) != 0)
		return TP_ESYS;
	/* A log written to a file would die of SIGXFSZ at its first line. */
	if (!keep && limit(RLIMIT_FSIZE, 0) != 0)
		return TP_ESYS;
	if (fsize_kept != NULL)
		*fsize_kept = keep;
	return 0;
}

/* --- (e) dumpable, (f) no_new_privs ------------------------------------- */

int
demote_dumpable(void)
{
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		return TP_ESYS;
	return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : TP_ESTATE;
}

int
demote_no_new_privs(void)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		return TP_ESYS;
	return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 ? 0 : TP_ESTATE;
}

/* --- all of it ---------------------------------------------------------- */

/* Records a failed step in res and returns its error. */
static int
failed(struct demote_result *res, enum demote_step step, int rc)
{
	res->failed = step;
	res->err = rc;
	res->sys_errno = rc == TP_ESYS ? errno : 0;
	return rc;
}

/* Rejects opts before anything irreversible happens. */
static int
check_opts(const struct demote_opts *o)
{
	if (o->max_channels == 0 || o->max_channels > MAX_CHANNELS)
		return TP_EINVAL;
	if ((o->uid == 0 || o->gid == 0) && !o->allow_root)
		return TP_EDENIED;
	if (o->empty_dir != NULL && o->empty_dir[0] != '/')
		return TP_EINVAL;
	return 0;
}

int
demote_all(const struct demote_opts *o, struct demote_result *res)
{
	struct demote_result dummy;
	struct sandbox_opts so;
	int rc;

	if (res == NULL)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (o == NULL)
		return failed(res, DEMOTE_STEP_ARGS, TP_EINVAL);
	if ((rc = check_opts(o)) != 0)
		return failed(res, DEMOTE_STEP_ARGS, rc);
	so.control_fd = o->control_fd;
	if ((rc = sandbox_prepare(&so)) != 0)
		return failed(res, DEMOTE_STEP_PREPARE, rc);
	if ((rc = demote_close_fds(DEMOTE_KEEP_FDS)) != 0)
		return failed(res, DEMOTE_STEP_CLOSE_FDS, rc);
	if ((rc = demote_fs(o, res)) != 0)
		return failed(res, DEMOTE_STEP_FS, rc);
	if ((rc = demote_ids(o->uid, o->gid, o->allow_root)) != 0)
		return failed(res, DEMOTE_STEP_IDS, rc);
	if ((rc = demote_rlimits(o->max_channels, &res->fsize_kept)) != 0)
		return failed(res, DEMOTE_STEP_RLIMITS, rc);
	if ((rc = demote_dumpable()) != 0)
		return failed(res, DEMOTE_STEP_DUMPABLE, rc);
	if ((rc = demote_no_new_privs()) != 0)
		return failed(res, DEMOTE_STEP_NO_NEW_PRIVS, rc);
	if (o->warmup != NULL && (rc = o->warmup(o->warmup_arg)) != 0)
		return failed(res, DEMOTE_STEP_WARMUP, rc);
	if ((rc = sandbox_enter()) != 0)
		return failed(res, DEMOTE_STEP_SANDBOX, rc);
	return 0;
}
