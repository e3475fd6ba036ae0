/*
 * The worker's seccomp allowlist: the one reviewed list of what a
 * network-facing worker may ask of the kernel once it speaks SSH.
 *
 * Layout, in the order the kernel sees it:
 *   1. architecture check: anything but the native ABI kills (libseccomp
 *      also sends x32 syscall numbers on x86_64 to this action);
 *   2. harmless path probes fail with EACCES instead of killing: libssh
 *      opens known_hosts at every KEX and rekey (LIBSSH-NOTES trap 8);
 *   3. the alphabetical allowlist, then the argument-filtered syscalls;
 *   4. default: kill the process (trap-and-report in TP_SANDBOX_TRAP builds).
 * Every entry says why it is here: "seen" means observed after the filter
 * was loaded, under strace, with the real libssh workload
 * (tests/tools/sandbox-ssh-probe.c); the others name the code path that
 * needs them and are exercised by tests/unit/test_sandbox.c.  Each
 * addition is justified in its commit message and in docs/sandbox.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <seccomp.h>

#include "common/error.h"
#include "proto/exitcode.h"
#include "proto/msg.h"
#include "proto/workerfd.h"
#include "worker/sandbox.h"
#include "worker/send.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

#ifdef TP_SANDBOX_TRAP
#define SANDBOX_DEFAULT	SCMP_ACT_TRAP
#else
#define SANDBOX_DEFAULT	SCMP_ACT_KILL_PROCESS
#endif

/*
 * Path lookups that libc and libssh make on their own.  Returning EACCES
 * keeps a healthy tunnel alive through them; the kernel never runs the
 * call, so listing one here adds no attack surface.  "seen" entries were
 * observed with the real workload; the others are the same probes spelled
 * by other libc paths and are listed so a rarely taken error path fails
 * softly instead of killing the tunnel.
 */
static const int deny_eacces[] = {
	SCMP_SYS(access),	/* precaution: access(2) probes */
	SCMP_SYS(faccessat),	/* precaution */
	SCMP_SYS(faccessat2),	/* precaution */
	SCMP_SYS(fstat),	/* precaution: old-style fstat */
	SCMP_SYS(lstat),	/* precaution */
	SCMP_SYS(newfstatat),	/* precaution: glibc fstat/stat, stdio */
	SCMP_SYS(open),		/* precaution: open(2) on old call paths */
	SCMP_SYS(openat),	/* seen: known_hosts at every KEX/rekey;
				 * jansson's /dev/urandom (its hash seed) */
	SCMP_SYS(openat2),	/* precaution */
	SCMP_SYS(readlink),	/* precaution */
	SCMP_SYS(readlinkat),	/* precaution */
	SCMP_SYS(stat),		/* precaution */
	SCMP_SYS(statx),	/* precaution */
};

/*
 * Allowed with any arguments; alphabetical, one a line.  The worker is one
 * thread looping on poll(2) (worker.c), with libssh, OpenSSL, jansson and
 * glibc below it: no event library, no epoll, no signal handler that
 * returns (SIGPIPE is ignored, nothing else is caught; trap builds' SIGSYS
 * reporter never returns).
 */
static const int allow_plain[] = {
	SCMP_SYS(brk),		/* seen: malloc, main arena */
	SCMP_SYS(clock_gettime),/* deadlines (tp_now_ms), libssh timeouts, log
				 * time: vDSO, the syscall on clocksources
				 * the vDSO cannot read */
	SCMP_SYS(close),	/* seen: dialed fds, channels */
	SCMP_SYS(exit_group),	/* seen: exit(), _exit() */
	SCMP_SYS(getpid),	/* seen: OpenSSL RNG fork check; raise() */
	SCMP_SYS(getrandom),	/* seen: OpenSSL DRBG reseed */
	SCMP_SYS(gettid),	/* glibc raise(), for abort() */
	SCMP_SYS(gettimeofday),	/* wall time (OpenSSL, glibc): vDSO, the
				 * syscall where the vDSO cannot read */
	SCMP_SYS(mremap),	/* realloc of mmap'ed chunks under load */
	SCMP_SYS(munmap),	/* free of mmap'ed chunks (>= 128 KiB) */
	SCMP_SYS(poll),		/* seen: the worker's loop; libssh's polling */
	SCMP_SYS(read),		/* seen: agent socket, dialed fds */
	SCMP_SYS(recvfrom),	/* seen: libssh recv() on the proxy socket */
	SCMP_SYS(recvmsg),	/* seen: control messages, dialed fds with
				 * SCM_RIGHTS (proto_recv) */
	SCMP_SYS(restart_syscall),/* seen: poll resumed after SIGSTOP/SIGCONT,
				   * the cgroup freezer, suspend, CRIU */
	SCMP_SYS(rt_sigprocmask),/* glibc abort(): die of SIGABRT, not SIGSYS */
	SCMP_SYS(sendmsg),	/* every message to the supervisor (proto_send) */
	SCMP_SYS(sendto),	/* seen: libssh send() on the proxy socket;
				 * the trap reporter's send() */
	SCMP_SYS(shutdown),	/* seen: half-close of a forwarded channel */
	SCMP_SYS(write),	/* seen: log lines, agent socket, dialed fds */
	SCMP_SYS(writev),	/* glibc's fatal message (fortify, malloc) */
};

#define ARG_EQ(i, v) \
	{ .arg = (i), .op = SCMP_CMP_EQ, .datum_a = (v), .datum_b = 0 }
#define ARG_MASKED(i, m, v) \
	{ .arg = (i), .op = SCMP_CMP_MASKED_EQ, .datum_a = (m), .datum_b = (v) }

/*
 * Allowed only in the narrow form shown, alphabetical; each is dangerous
 * in general.  One row per allowed form (rows of a syscall are OR'ed, the
 * comparisons of a row AND'ed).
 */
static const struct {
	int			nr;
	unsigned		n;
	struct scmp_arg_cmp	cmp[3];
} filtered[] = {
	/* fcntl: seen; libssh clears O_NONBLOCK at connect, pumps set it. */
	{ SCMP_SYS(fcntl), 1, { ARG_EQ(1, F_GETFL) } },
	{ SCMP_SYS(fcntl), 1, { ARG_EQ(1, F_SETFL) } },
	/*
	 * futex: seen, pthread_once wake-ups in OpenSSL; glibc locks wait and
	 * wake.  Process-private wait/wake only: no requeue, no PI.
	 */
	{ SCMP_SYS(futex), 1, { ARG_EQ(1, FUTEX_WAIT_PRIVATE) } },
	{ SCMP_SYS(futex), 1, { ARG_EQ(1, FUTEX_WAKE_PRIVATE) } },
	{ SCMP_SYS(futex), 1, { ARG_EQ(1, FUTEX_WAIT_BITSET_PRIVATE) } },
	{ SCMP_SYS(futex), 1, { ARG_EQ(1, FUTEX_WAIT_BITSET_PRIVATE |
	    FUTEX_CLOCK_REALTIME) } },
	/*
	 * madvise: malloc_trim() when the worker goes idle gives free pages
	 * inside the heap back with MADV_DONTNEED.  Only that advice: it
	 * drops the caller's own private pages, nothing else.
	 */
	{ SCMP_SYS(madvise), 1, { ARG_EQ(2, MADV_DONTNEED) } },
	/* mmap: malloc of >= 128 KiB; anonymous, never executable (no JIT). */
	{ SCMP_SYS(mmap), 2, { ARG_MASKED(2, PROT_EXEC, 0),
	    ARG_MASKED(3, MAP_ANONYMOUS, MAP_ANONYMOUS) } },
	/*
	 * setsockopt: TCP_QUICKACK on the proxy socket, nothing else: after
	 * each bulk read the worker has its kernel ACK what arrived at once
	 * (session_pump; docs/sandbox.md has the measurements).
	 */
	{ SCMP_SYS(setsockopt), 3, { ARG_EQ(0, WORKER_FD_PROXY),
	    ARG_EQ(1, IPPROTO_TCP), ARG_EQ(2, TCP_QUICKACK) } },
};

/*
 * Never allowed, whatever the list above says: sandbox_prepare refuses to
 * build a filter that names one of these, so a careless edit fails the
 * build's tests instead of shipping.  The default action catches them.
 */
static const int never[] = {
	SCMP_SYS(accept), SCMP_SYS(accept4), SCMP_SYS(bind), SCMP_SYS(chroot),
	SCMP_SYS(clone), SCMP_SYS(clone3), SCMP_SYS(connect),
	SCMP_SYS(execve), SCMP_SYS(execveat), SCMP_SYS(fork),
	SCMP_SYS(listen), SCMP_SYS(mount), SCMP_SYS(open_by_handle_at),
	SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev),
	SCMP_SYS(ptrace), SCMP_SYS(setgid), SCMP_SYS(setgroups),
	SCMP_SYS(setregid), SCMP_SYS(setresgid), SCMP_SYS(setresuid),
	SCMP_SYS(setreuid), SCMP_SYS(setuid), SCMP_SYS(setfsuid),
	SCMP_SYS(setfsgid), SCMP_SYS(socket), SCMP_SYS(socketpair),
	SCMP_SYS(vfork),
};

#ifdef TP_SANDBOX_TRAP
#define SYSNAME(x)	{ SCMP_SYS(x), #x }
/*
 * Names the trap reporter can give without libseccomp (which allocates):
 * the forbidden calls, the usual suspects, and the allowlist itself (so a
 * call dropped from it by mistake is named).  Anything else is reported as
 * "?" with its number; resolve it with scmp_sys_resolver(1).
 */
static const struct { int nr; const char *name; } sysnames[] = {
	SYSNAME(accept), SYSNAME(accept4), SYSNAME(bind), SYSNAME(brk),
	SYSNAME(capget), SYSNAME(chdir), SYSNAME(chroot),
	SYSNAME(clock_gettime), SYSNAME(clock_nanosleep), SYSNAME(clone),
	SYSNAME(clone3), SYSNAME(close), SYSNAME(connect), SYSNAME(dup),
	SYSNAME(dup2), SYSNAME(dup3), SYSNAME(epoll_create1),
	SYSNAME(epoll_ctl), SYSNAME(epoll_pwait), SYSNAME(epoll_wait),
	SYSNAME(eventfd2), SYSNAME(execve), SYSNAME(execveat), SYSNAME(exit),
	SYSNAME(exit_group), SYSNAME(fcntl), SYSNAME(fork), SYSNAME(futex),
	SYSNAME(getdents64), SYSNAME(getegid), SYSNAME(geteuid),
	SYSNAME(getgid), SYSNAME(getpeername), SYSNAME(getpid),
	SYSNAME(getppid), SYSNAME(getrandom), SYSNAME(getrlimit),
	SYSNAME(getsockname), SYSNAME(getsockopt), SYSNAME(gettid),
	SYSNAME(gettimeofday), SYSNAME(getuid), SYSNAME(ioctl), SYSNAME(kill),
	SYSNAME(listen), SYSNAME(lseek), SYSNAME(madvise), SYSNAME(mkdir),
	SYSNAME(mmap), SYSNAME(mount), SYSNAME(mprotect), SYSNAME(mremap),
	SYSNAME(munmap), SYSNAME(nanosleep), SYSNAME(open_by_handle_at),
	SYSNAME(pipe2), SYSNAME(pkey_mprotect), SYSNAME(poll), SYSNAME(ppoll),
	SYSNAME(prctl), SYSNAME(pread64), SYSNAME(prlimit64),
	SYSNAME(process_vm_readv), SYSNAME(process_vm_writev),
	SYSNAME(ptrace), SYSNAME(pwrite64), SYSNAME(read), SYSNAME(readv),
	SYSNAME(recvfrom), SYSNAME(recvmmsg), SYSNAME(recvmsg),
	SYSNAME(rename), SYSNAME(restart_syscall), SYSNAME(rseq),
	SYSNAME(rt_sigaction),
	SYSNAME(rt_sigprocmask), SYSNAME(rt_sigreturn),
	SYSNAME(sched_getaffinity), SYSNAME(sched_yield), SYSNAME(select),
	SYSNAME(sendmmsg), SYSNAME(sendmsg), SYSNAME(sendto),
	SYSNAME(setgid), SYSNAME(setgroups), SYSNAME(setitimer),
	SYSNAME(setresgid), SYSNAME(setresuid), SYSNAME(setrlimit),
	SYSNAME(setsockopt), SYSNAME(setuid), SYSNAME(shutdown),
	SYSNAME(sigaltstack), SYSNAME(socket), SYSNAME(socketpair),
	SYSNAME(sysinfo), SYSNAME(tgkill), SYSNAME(time),
	SYSNAME(timerfd_create), SYSNAME(tkill), SYSNAME(umask),
	SYSNAME(uname), SYSNAME(unlink), SYSNAME(vfork), SYSNAME(wait4),
	SYSNAME(write), SYSNAME(writev),
};
#endif

static scmp_filter_ctx	filter;
static pid_t		filter_pid = -1;
static int		trap_fd = -1;

const char *
sandbox_name(void)
{
#ifdef TP_SANDBOX_TRAP
	return "seccomp-trap";
#else
	return "seccomp";
#endif
}

#ifdef TP_SANDBOX_TRAP
/* Looks a syscall number up in sysnames[]; async-signal-safe. */
static const char *
sys_name(int nr)
{
	for (size_t i = 0; i < NELEM(sysnames); i++)
		if (sysnames[i].nr == nr)
			return sysnames[i].name;
	return "?";
}

/* Formats "sandbox: trapped syscall NR (NAME)\n" without stdio. */
static size_t
trap_line(char *buf, size_t len, unsigned nr, const char *name)
{
	static const char head[] =
	    "tunnelpool-agent: sandbox: trapped syscall ";
	char digits[12];
	size_t n = 0, d = 0, nl = strlen(name);

	if (len < sizeof(head) + sizeof(digits) + nl + 4)
		return 0;
	do {
		digits[d++] = (char)('0' + nr % 10);
		nr /= 10;
	} while (nr != 0);
	memcpy(buf, head, sizeof(head) - 1);
	n = sizeof(head) - 1;
	while (d > 0)
		buf[n++] = digits[--d];
	buf[n++] = ' ';
	buf[n++] = '(';
	memcpy(buf + n, name, nl);
	n += nl;
	buf[n++] = ')';
	buf[n++] = '\n';
	return n;
}

/*
 * SIGSYS from SCMP_ACT_TRAP.  Async-signal-safe only: no malloc, no stdio,
 * and no syscall outside the allowlist (sendto, write, exit_group), since a
 * second SIGSYS inside the handler would kill us without a report.
 */
static void
sigsys_report(int sig, siginfo_t *si, void *uctx)
{
	char line[128];
	const char *name = sys_name(si->si_syscall);
	size_t n;

	(void)sig;
	(void)uctx;
	send_sandbox_violation(trap_fd, (uint32_t)si->si_syscall, name);
	n = trap_line(line, sizeof(line), (unsigned)si->si_syscall, name);
	if (n > 0)
		(void)!write(STDERR_FILENO, line, n);
	_exit(WEXIT_SANDBOX_VIOLATION);
}

/* Installs the reporter and makes sure SIGSYS is not blocked. */
static int
trap_install(void)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = sigsys_report;
	sa.sa_flags = SA_SIGINFO;
	sigfillset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) == -1)
		return TP_ESYS;
	sigemptyset(&set);
	sigaddset(&set, SIGSYS);
	if (sigprocmask(SIG_UNBLOCK, &set, NULL) == -1)
		return TP_ESYS;
	return 0;
}
#endif

/* Turns a libseccomp error (-errno) into TP_ESYS with errno set. */
static int
scmp_err(int rc)
{
	errno = -rc;
	return TP_ESYS;
}

/* True if nr is in never[]. */
static bool
is_never(int nr)
{
	for (size_t i = 0; i < NELEM(never); i++)
		if (never[i] == nr)
			return true;
	return false;
}

/*
 * Refuses lists that name a forbidden syscall, in any section: one in the
 * EACCES list would quietly stop being a kill.
 */
static int
check_never(void)
{
	for (size_t i = 0; i < NELEM(allow_plain); i++)
		if (is_never(allow_plain[i]))
			return TP_EINVAL;
	for (size_t i = 0; i < NELEM(deny_eacces); i++)
		if (is_never(deny_eacces[i]))
			return TP_EINVAL;
	for (size_t i = 0; i < NELEM(filtered); i++)
		if (is_never(filtered[i].nr))
			return TP_EINVAL;
	return 0;
}

/* Adds one action for each syscall in list. */
static int
add_list(scmp_filter_ctx ctx, uint32_t action, const int *list, size_t n)
{
	int rc;

	for (size_t i = 0; i < n; i++)
		if ((rc = seccomp_rule_add(ctx, action, list[i], 0)) < 0)
			return rc;
	return 0;
}

/* Adds the argument-filtered rules; tgkill needs the pid, known only now. */
static int
add_filtered(scmp_filter_ctx ctx, pid_t pid)
{
	const struct scmp_arg_cmp tgkill_self[2] = {
		ARG_EQ(0, (scmp_datum_t)pid), ARG_EQ(2, SIGABRT),
	};
	int rc;

	for (size_t i = 0; i < NELEM(filtered); i++)
		if ((rc = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW,
		    filtered[i].nr, filtered[i].n, filtered[i].cmp)) < 0)
			return rc;
	/* tgkill: glibc abort() raises SIGABRT at itself, and only that. */
	return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 2,
	    tgkill_self);
}

/* Builds the whole filter into a fresh context. */
static int
build(scmp_filter_ctx *out, pid_t pid)
{
	scmp_filter_ctx ctx;
	int rc;

	if ((ctx = seccomp_init(SANDBOX_DEFAULT)) == NULL)
		return -ENOMEM;
	/* Non-native ABIs (i386, x32 on x86_64) die before any rule. */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
	    SCMP_ACT_KILL_PROCESS)) < 0)
		goto out;
	/* Any thread someone starts later is covered too. */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) < 0)
		goto out;
	if ((rc = add_list(ctx, SCMP_ACT_ERRNO(EACCES), deny_eacces,
	    NELEM(deny_eacces))) < 0)
		goto out;
	if ((rc = add_list(ctx, SCMP_ACT_ALLOW, allow_plain,
	    NELEM(allow_plain))) < 0)
		goto out;
	rc = add_filtered(ctx, pid);
out:
	if (rc < 0) {
		seccomp_release(ctx);
		return rc;
	}
	*out = ctx;
	return 0;
}

int
sandbox_prepare(const struct sandbox_opts *opts)
{
	scmp_filter_ctx ctx;
	int rc;

	if (opts == NULL || check_never() != 0)
		return TP_EINVAL;
	if ((rc = build(&ctx, getpid())) < 0)
		return scmp_err(rc);
	if (filter != NULL)
		seccomp_release(filter);
	filter = ctx;
	filter_pid = getpid();
	trap_fd = opts->control_fd;
	return 0;
}

int
sandbox_enter(void)
{
	int rc;

	if (filter == NULL || filter_pid != getpid())
		return TP_ESTATE;
#ifdef TP_SANDBOX_TRAP
	if (trap_install() != 0)
		return TP_ESYS;
#endif
	if ((rc = seccomp_load(filter)) < 0)
		return scmp_err(rc);
	/* Freeing the context only needs brk and munmap: both allowed. */
	seccomp_release(filter);
	filter = NULL;
	return 0;
}
