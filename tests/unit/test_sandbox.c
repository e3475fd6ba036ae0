/*
 * The worker's demotion and sandbox on the real kernel, with the real
 * filter.  Demotion is irreversible and closes every fd above 5 (Check's
 * own result channel included), so each case forks a *subject*: a process
 * with the worker's fd layout (0 /dev/null, 3 control, 4 agent, 5 a TCP
 * socket) that demotes itself and then runs commands sent on fd 3.  Every
 * assertion is made by the Check child, which stays unconfined.
 *
 * As root the subject chroots into a fresh empty directory and drops to
 * "tunnelpool" (or "nobody"); otherwise it keeps its ids and uses Landlock.
 * In -Dsandbox=none builds the seccomp cases are skipped with a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <check.h>
#include <msgpack.h>

#include "common/error.h"
#include "proto/exitcode.h"
#include "proto/msg.h"
#include "proto/workerfd.h"
#include "worker/demote.h"
#include "worker/sandbox.h"
#include "testutil.h"

#define FD_CTL		WORKER_FD_CONTROL
#define FD_AGENT	WORKER_FD_AGENT
#define FD_NET		WORKER_FD_PROXY
#define MAX_CH		4

#ifdef TP_SANDBOX_SECCOMP
#define HAVE_FILTER	1
#else
#define HAVE_FILTER	0
#endif

/* --- what a subject can be asked to do -------------------------------- */

enum action {
	/* expected to work (or fail softly) under the filter */
	A_OPEN_PASSWD = 1, A_OPENAT_PASSWD, A_STAT_PASSWD, A_ALLOWED,
	A_RECV_FD, A_FORK_EAGAIN, A_EXIT, A_ABORT, A_CHK_FAIL,
	/* forbidden: SIGSYS (kill builds) or report + exit 12 (trap) */
	A_SOCKET, A_SOCKETPAIR, A_CONNECT, A_BIND, A_LISTEN, A_ACCEPT,
	A_EXECVE, A_FORK, A_CLONE3, A_PTRACE, A_PROCESS_VM_READV,
	A_MMAP_WX, A_MMAP_X, A_MMAP_FILE, A_MPROTECT_X, A_SETUID, A_CHROOT,
	A_MOUNT, A_OPEN_BY_HANDLE, A_KILL_PARENT, A_TGKILL_OTHER_SIG,
	A_IOCTL, A_FCNTL_DUPFD, A_SETSOCKOPT, A_SETSOCKOPT_NODELAY,
	A_SETSOCKOPT_QUICKACK_FD, A_FUTEX_REQUEUE, A_PRCTL,
	A_MADVISE, A_RT_SIGACTION, A_EPOLL_CTL, A_EPOLL_WAIT, A_RT_SIGRETURN,
};

/* One fixed-size reply datagram; anything else on fd 3 is a violation. */
struct reply {
	int32_t	kind;		/* 'R' ready, 'F' demotion failed, 'A' action */
	int32_t	rc;
	int32_t	err;
	int32_t	extra;
};

struct subject {
	pid_t	pid;
	int	ctl;		/* our end of fd 3 */
	int	agent;		/* our end of fd 4 */
};

enum mode {
	M_DEMOTE_ALL,		/* the worker's full demotion */
	M_LANDLOCK_ONLY,	/* demote_landlock() alone */
	M_CLOSE_ONLY,		/* demote_close_fds(6) alone */
	M_IDS_RLIMITS,		/* demote_ids + demote_rlimits */
	M_ROOT_ALLOWED,		/* demote_all with uid 0 and allow_root */
	M_WARMUP,		/* demote_all with a warm-up hook */
};

/* Not in glibc's headers; the fortify failure path. */
extern void __chk_fail(void) __attribute__((noreturn));

/* Filled in by the fixture; read by subjects after fork. */
static char	empty_dir[64];
static pid_t	parent_pid;	/* getppid is not allowed: pinned here */
static bool	in_subject;

/*
 * LeakSanitizer's exit-time check needs clone and /proc, which a demoted
 * process no longer has: it would turn every confined exit() into a fatal
 * error in sanitizer builds.  Its documented hook switches it off, in
 * subjects only.
 */
int __lsan_is_turned_off(void);

int
__lsan_is_turned_off(void)
{
	return in_subject;
}
static uid_t	test_uid;
static gid_t	test_gid;
static bool	as_root;

/* --- the subject's side ----------------------------------------------- */

static void
reply(int32_t kind, int32_t rc, int32_t err, int32_t extra)
{
	struct reply r = { kind, rc, err, extra };

	(void)!write(FD_CTL, &r, sizeof(r));
}

/* Receives one fd over fd 3 and reads what it carries. */
static int
act_recv_fd(void)
{
	char data[8], cbuf[CMSG_SPACE(sizeof(int))], buf[16];
	struct iovec iov = { data, sizeof(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int fd, n;

	if (recvmsg(FD_CTL, &mh, MSG_CMSG_CLOEXEC) <= 0 ||
	    (c = CMSG_FIRSTHDR(&mh)) == NULL || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	n = (int)read(fd, buf, sizeof(buf));
	close(fd);
	return n;
}

/* Memory and randomness as malloc and OpenSSL use them; 0 or a step. */
static int
act_allowed_mem(void)
{
	char rnd[32];
	void *p;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return 1;
	p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 2;
	memset(p, 0xa5, 1 << 20);
	if ((p = mremap(p, 1 << 20, 4 << 20, MREMAP_MAYMOVE)) == MAP_FAILED ||
	    munmap(p, 4 << 20) != 0)
		return 3;
	/* Above the mmap threshold: mmap, then munmap on free. */
	if ((p = malloc(8 << 20)) == NULL)
		return 4;
	memset(p, 1, 8 << 20);
	free(p);
	/* The idle worker's trim: brk down, free heap pages MADV_DONTNEED. */
	if ((p = malloc(64 << 10)) == NULL)
		return 15;
	memset(p, 2, 64 << 10);
	if (madvise((void *)(((uintptr_t)p + 8191) & ~(uintptr_t)4095), 4096,
	    MADV_DONTNEED) != 0)
		return 16;
	free(p);
	(void)malloc_trim(0);
	return 0;
}

/*
 * The rest of a worker's steady state, each through the real syscall where
 * libc might use the vDSO.  Returns 0, or the number of the failed step.
 */
static int
act_allowed_io(void)
{
	static uint32_t futex_word;
	struct pollfd pfd = { FD_CTL, POLLOUT, 0 };
	struct timespec ts;
	struct timeval tv;
	struct iovec iov = { "", 0 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	char one = 'x';
	int fl;

	if (poll(&pfd, 1, 0) != 1)
		return 5;
	if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0 ||
	    syscall(SYS_gettimeofday, &tv, NULL) != 0)
		return 6;
	if (syscall(SYS_getpid) != getpid() || syscall(SYS_gettid) != getpid())
		return 7;
	if ((fl = fcntl(FD_AGENT, F_GETFL)) == -1 ||
	    fcntl(FD_AGENT, F_SETFL, fl | O_NONBLOCK) != 0)
		return 8;
	if (write(FD_AGENT, &one, 1) != 1 || sendmsg(FD_AGENT, &mh, 0) != 0)
		return 9;
	if (recv(FD_AGENT, &one, 1, 0) != -1 || errno != EAGAIN)
		return 10;
	if (syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL,
	    NULL, 0) != 0)
		return 11;
	if (shutdown(FD_NET, SHUT_RDWR) != -1 || errno != ENOTCONN)
		return 12;
	/* The one setsockopt there is: TCP_QUICKACK on the proxy socket. */
	fl = 1;
	if (setsockopt(FD_NET, IPPROTO_TCP, TCP_QUICKACK, &fl,
	    sizeof(fl)) != 0)
		return 15;
	if (writev(STDERR_FILENO, &iov, 1) != 0)
		return 13;
	return 0;
}

/* Both of the above, and a signal mask change (abort() does one). */
static int
act_allowed(void)
{
	sigset_t set;
	int rc;

	if ((rc = act_allowed_mem()) != 0 || (rc = act_allowed_io()) != 0)
		return rc;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	return sigprocmask(SIG_BLOCK, &set, NULL) == 0 ? 0 : 14;
}

/* Forbidden calls; each should never return. */
static long
act_forbidden(enum action a)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	char *const argv[] = { "/bin/true", NULL };
	char buf[8];
	struct iovec l = { buf, sizeof(buf) }, r = { buf, sizeof(buf) };
	int sv[2], word = 0;
	void *p;

	switch (a) {
	case A_SOCKET:		return socket(AF_INET, SOCK_STREAM, 0);
	case A_SOCKETPAIR:	return socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	case A_CONNECT:
		return connect(FD_NET, (void *)&sin, sizeof(sin));
	case A_BIND:		return bind(FD_NET, (void *)&sin, sizeof(sin));
	case A_LISTEN:		return listen(FD_NET, 1);
	case A_ACCEPT:		return accept(FD_NET, NULL, NULL);
	case A_EXECVE:		return execve(argv[0], argv, NULL);
	case A_FORK:		return fork();
	case A_CLONE3:		return syscall(SYS_clone3, NULL, 0);
	case A_PTRACE:		return ptrace(PTRACE_TRACEME, 0, NULL, NULL);
	case A_PROCESS_VM_READV:
		return process_vm_readv(parent_pid, &l, 1, &r, 1, 0);
	case A_MMAP_WX:
		return (long)mmap(NULL, 4096, PROT_READ | PROT_WRITE |
		    PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	case A_MMAP_X:
		return (long)mmap(NULL, 4096, PROT_READ | PROT_EXEC,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	case A_MMAP_FILE:
		return (long)mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 0, 0);
	case A_MPROTECT_X:
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		return mprotect(p, 4096, PROT_READ | PROT_EXEC);
	case A_SETUID:		return setuid(0);
	case A_CHROOT:		return chroot("/");
	case A_MOUNT:		return mount("none", "/", "tmpfs", 0, NULL);
	case A_OPEN_BY_HANDLE:
		return syscall(SYS_open_by_handle_at, 0, NULL, 0);
	case A_KILL_PARENT:	return kill(parent_pid, 0);
	case A_TGKILL_OTHER_SIG:
		return syscall(SYS_tgkill, getpid(), getpid(), SIGUSR1);
	case A_IOCTL:		return ioctl(FD_NET, FIONREAD, &word);
	case A_FCNTL_DUPFD:	return fcntl(FD_CTL, F_DUPFD, 10);
	case A_SETSOCKOPT:
		return setsockopt(FD_NET, SOL_SOCKET, SO_KEEPALIVE, &word,
		    sizeof(word));
	case A_SETSOCKOPT_NODELAY:
		/* TCP, the proxy socket, but another option. */
		return setsockopt(FD_NET, IPPROTO_TCP, TCP_NODELAY, &word,
		    sizeof(word));
	case A_SETSOCKOPT_QUICKACK_FD:
		/* The allowed option on another fd. */
		return setsockopt(FD_AGENT, IPPROTO_TCP, TCP_QUICKACK, &word,
		    sizeof(word));
	case A_FUTEX_REQUEUE:
		return syscall(SYS_futex, &word, FUTEX_CMP_REQUEUE_PRIVATE, 1,
		    1, &word, 0);
	case A_PRCTL:		return prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
	case A_EPOLL_CTL:
		/* No event library in the worker: no epoll at all. */
		return syscall(SYS_epoll_ctl, -1, EPOLL_CTL_ADD, -1, NULL);
	case A_EPOLL_WAIT:
		return syscall(SYS_epoll_wait, -1, NULL, 1, 0);
	case A_RT_SIGRETURN:
		/* No handler ever returns (none is installed): nor may this. */
		return syscall(SYS_rt_sigreturn);
	case A_MADVISE:
		/* Only MADV_DONTNEED is allowed (malloc_trim). */
		p = malloc(1 << 20);
		return madvise((void *)(((uintptr_t)p + 4095) & ~(uintptr_t)4095),
		    4096, MADV_WILLNEED);
	case A_RT_SIGACTION:	return (long)signal(SIGUSR2, SIG_IGN);
	default:		return -1;
	}
}

/* Replies with rc and the errno it left (read after the call). */
static void
reply_rc(long rc)
{
	int err = errno;

	reply('A', (int32_t)rc, err, 0);
}

/* Runs one command; may not return. */
static void
subject_act(enum action a)
{

	switch (a) {
	case A_OPEN_PASSWD:
		reply_rc(open("/etc/passwd", O_RDONLY));
		break;
	case A_OPENAT_PASSWD:
		reply_rc(openat(AT_FDCWD, "/etc/passwd", O_RDONLY));
		break;
	case A_STAT_PASSWD: {
		struct stat st;

		reply_rc(stat("/etc/passwd", &st));
		break;
	}
	case A_ALLOWED:		reply_rc(act_allowed()); break;
	case A_RECV_FD:		reply_rc(act_recv_fd()); break;
	case A_FORK_EAGAIN: {
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		reply_rc(pid);
		break;
	}
	case A_EXIT:		exit(0);
	case A_ABORT:		abort();
	case A_CHK_FAIL:	__chk_fail();
	default:
		reply_rc(act_forbidden(a));
		break;
	}
}

static int
warmup_hook(void *arg)
{
	int *fd = arg;
	int p[2];

	/* Runs after the drop and NNP: prove it, and keep an fd. */
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 || pipe(p) != 0)
		return TP_ESTATE;
	*fd = p[0];
	return 0;
}

/* Demotes as mode says; reports 'F' and exits on failure. */
static void
subject_demote(enum mode mode)
{
	struct demote_opts o = {
		.empty_dir = empty_dir, .uid = test_uid, .gid = test_gid,
		.max_channels = MAX_CH, .control_fd = FD_CTL,
	};
	struct demote_result r = { .failed = DEMOTE_STEP_NONE };
	bool kept = false;
	int rc = 0, warm_fd = -1;

	switch (mode) {
	case M_LANDLOCK_ONLY:	rc = demote_landlock(); break;
	case M_CLOSE_ONLY:	rc = demote_close_fds(DEMOTE_KEEP_FDS); break;
	case M_IDS_RLIMITS:
		if ((rc = demote_ids(test_uid, test_gid, false)) == 0)
			rc = demote_rlimits(MAX_CH, &kept);
		break;
	case M_ROOT_ALLOWED:
		o.uid = 0;
		o.gid = 0;
		o.allow_root = true;
		rc = demote_all(&o, &r);
		break;
	case M_WARMUP:
		o.warmup = warmup_hook;
		o.warmup_arg = &warm_fd;
		rc = demote_all(&o, &r);
		break;
	case M_DEMOTE_ALL:
		rc = demote_all(&o, &r);
		break;
	}
	if (rc != 0) {
		reply('F', rc, errno, (int32_t)r.failed);
		_exit(2);
	}
	reply('R', warm_fd, 0, (r.fs_unconfined ? 1 : 0) |
	    (r.fsize_kept || kept ? 2 : 0));
}

static void __attribute__((noreturn))
subject_main(enum mode mode)
{
	uint8_t cmd;
	ssize_t n;

	in_subject = true;
	subject_demote(mode);
	while ((n = read(FD_CTL, &cmd, 1)) == 1)
		subject_act((enum action)cmd);
	_exit(n == 0 ? 0 : 3);
}

/* --- the Check child's side ------------------------------------------- */


/* Forks a subject with the worker's fd layout plus a stray fd 42. */
static void
subject_spawn(struct subject *s, enum mode mode)
{
	int ctl[2], agent[2], net, devnull;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
	    ctl), 0);
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
	    agent), 0);
	net = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(net, 0);
	parent_pid = getpid();
	ck_assert_int_ne(s->pid = fork(), -1);
	if (s->pid == 0) {
		devnull = tu_child_worker_fds(ctl[1], agent[1], net, FD_CTL);
		/* a leaked fd demotion must close */
		if (dup2(devnull, 42) == -1)
			_exit(126);
		subject_main(mode);
	}
	close(ctl[1]);
	close(agent[1]);
	close(net);
	s->ctl = ctl[0];
	s->agent = agent[0];
}

/* Reads one datagram: a reply (returns true) or a violation (false). */
static bool
subject_read(struct subject *s, struct reply *r, uint8_t *raw, size_t *rawlen)
{
	uint8_t buf[256];
	ssize_t n = recv(s->ctl, buf, sizeof(buf), 0);

	memset(r, 0, sizeof(*r));
	if (n == (ssize_t)sizeof(*r)) {
		memcpy(r, buf, sizeof(*r));
		return true;
	}
	if (raw != NULL && n > 0) {
		memcpy(raw, buf, (size_t)n);
		*rawlen = (size_t)n;
	}
	return false;
}

/* Spawns a subject and waits for it to be confined. */
static struct reply
subject_start(struct subject *s, enum mode mode)
{
	struct reply r;

	subject_spawn(s, mode);
	ck_assert_msg(subject_read(s, &r, NULL, NULL), "no reply from subject");
	ck_assert_msg(r.kind == 'R', "demotion failed: step %d rc %d errno %d",
	    r.extra, r.rc, r.err);
	return r;
}

/* Sends one command; returns true and the reply, or false if it died. */
static bool
subject_cmd(struct subject *s, enum action a, struct reply *r, uint8_t *raw,
    size_t *rawlen)
{
	uint8_t cmd = (uint8_t)a;

	ck_assert_int_eq(send(s->ctl, &cmd, 1, MSG_NOSIGNAL), 1);
	return subject_read(s, r, raw, rawlen);
}

/* Ends the subject (EOF on its fd 3) and returns its wait status. */
static int
subject_end(struct subject *s)
{
	int st;

	close(s->ctl);
	close(s->agent);
	ck_assert_int_eq(waitpid(s->pid, &st, 0), s->pid);
	return st;
}

/* Returns the value after "key:" in /proc/<pid>/<file>, or "". */
static const char *
proc_field(pid_t pid, const char *file, const char *key)
{
	static char val[256];
	char path[64], line[512];
	size_t kl = strlen(key);
	FILE *f;

	val[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	if ((f = fopen(path, "r")) == NULL)
		return val;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, kl) == 0) {
			snprintf(val, sizeof(val), "%s", line + kl +
			    strspn(line + kl, ": \t"));
			val[strcspn(val, "\n")] = '\0';
			break;
		}
	fclose(f);
	return val;
}

/* "soft hard" of one line of /proc/<pid>/limits, e.g. "0 0". */
static const char *
proc_limit(pid_t pid, const char *name)
{
	static char out[64];
	char soft[24] = "", hard[24] = "";

	sscanf(proc_field(pid, "limits", name), "%23s %23s", soft, hard);
	snprintf(out, sizeof(out), "%s %s", soft, hard);
	return out;
}

/* RLIMIT_DATA as demote_data_limit says (none in ASan builds). */
static void
check_data_limit(pid_t pid)
{
	uint64_t want = demote_data_limit(MAX_CH);
	char buf[64];

	if (want == 0)
		snprintf(buf, sizeof(buf), "unlimited unlimited");
	else
		snprintf(buf, sizeof(buf), "%llu %llu", (unsigned long long)want,
		    (unsigned long long)want);
	ck_assert_str_eq(proc_limit(pid, "Max data size"), buf);
}

/* The numbers of the fds open in pid, as a bitmap of 0..63. */
static uint64_t
proc_fds(pid_t pid)
{
	char path[64];
	uint64_t bits = 0;

	for (int fd = 0; fd < 64; fd++) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
		if (access(path, F_OK) == 0)
			bits |= 1ULL << fd;
	}
	return bits;
}

/* --- fixture ---------------------------------------------------------- */

static void
setup(void)
{
	struct passwd *pw;

	as_root = geteuid() == 0;
	test_uid = getuid();
	test_gid = getgid();
	if (as_root) {
		if ((pw = getpwnam("tunnelpool")) == NULL)
			pw = getpwnam("nobody");
		ck_assert_msg(pw != NULL, "no tunnelpool or nobody user");
		test_uid = pw->pw_uid;
		test_gid = pw->pw_gid;
	}
	snprintf(empty_dir, sizeof(empty_dir), "/tmp/tp-empty-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(empty_dir));
	signal(SIGPIPE, SIG_IGN);
}

static void
teardown(void)
{
	rmdir(empty_dir);
}

/* --- demotion --------------------------------------------------------- */

START_TEST(demote_status)
{
	struct subject s;
	struct reply r = subject_start(&s, M_DEMOTE_ALL);
	struct stat st;
	char path[64], root[256];
	ssize_t n;

	ck_assert_str_eq(proc_field(s.pid, "status", "NoNewPrivs"), "1");
	ck_assert_str_eq(proc_field(s.pid, "status", "Seccomp"),
	    HAVE_FILTER ? "2" : "0");
	ck_assert_str_eq(proc_field(s.pid, "status", "CapEff"),
	    "0000000000000000");
	ck_assert_str_eq(proc_field(s.pid, "status", "CapPrm"),
	    "0000000000000000");
	ck_assert_str_eq(proc_limit(s.pid, "Max processes"), "0 0");
	ck_assert_str_eq(proc_limit(s.pid, "Max core file size"), "0 0");
	ck_assert_str_eq(proc_limit(s.pid, "Max open files"), "24 24");
	check_data_limit(s.pid);
	if (!(r.extra & 2))
		ck_assert_str_eq(proc_limit(s.pid, "Max file size"), "0 0");
	if (as_root) {
		/* Only 0-5 survive: the stray fd 42 is gone. */
		ck_assert_uint_eq(proc_fds(s.pid), 0x3f);
		char want[64];

		snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", test_uid,
		    test_uid, test_uid, test_uid);
		ck_assert_str_eq(proc_field(s.pid, "status", "Uid"), want);
		snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", test_gid,
		    test_gid, test_gid, test_gid);
		ck_assert_str_eq(proc_field(s.pid, "status", "Gid"), want);
		ck_assert_str_eq(proc_field(s.pid, "status", "Groups"), "");
		ck_assert_uint_ne(test_uid, 0);
		/* Not dumpable: its /proc files belong to root, not to it. */
		snprintf(path, sizeof(path), "/proc/%d/status", (int)s.pid);
		ck_assert_int_eq(stat(path, &st), 0);
		ck_assert_uint_eq(st.st_uid, 0);
		snprintf(path, sizeof(path), "/proc/%d/root", (int)s.pid);
		n = readlink(path, root, sizeof(root) - 1);
		ck_assert_int_gt(n, 0);
		root[n] = '\0';
		ck_assert_str_eq(root, empty_dir);
	}
	ck_assert_int_eq(WEXITSTATUS(subject_end(&s)), 0);
}
END_TEST

START_TEST(demote_open_denied)
{
	static const enum action probes[] = { A_OPEN_PASSWD, A_OPENAT_PASSWD,
	    A_STAT_PASSWD };
	struct subject s;
	struct reply r;

	subject_start(&s, M_DEMOTE_ALL);
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		ck_assert(subject_cmd(&s, probes[i], &r, NULL, NULL));
		/* Landlock has no right for stat(); only the filter. */
		if (!HAVE_FILTER && !as_root && probes[i] == A_STAT_PASSWD)
			continue;
		ck_assert_int_eq(r.rc, -1);
		/*
		 * EACCES from the filter or Landlock; without a filter, the
		 * chroot says EACCES (our 0700 root) or ENOENT.
		 */
		if (HAVE_FILTER || !as_root)
			ck_assert_int_eq(r.err, EACCES);
		else
			ck_assert(r.err == EACCES || r.err == ENOENT);
	}
	/* ... and it keeps working. */
	ck_assert(subject_cmd(&s, A_ALLOWED, &r, NULL, NULL));
	ck_assert_msg(r.rc == 0, "allowed step %d failed, errno %d", r.rc,
	    r.err);
	ck_assert_int_eq(WEXITSTATUS(subject_end(&s)), 0);
}
END_TEST

START_TEST(demote_allowed_and_fd_passing)
{
	struct subject s;
	struct reply r;
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { "fd", 2 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	int p[2];

	subject_start(&s, M_DEMOTE_ALL);
	ck_assert(subject_cmd(&s, A_ALLOWED, &r, NULL, NULL));
	ck_assert_msg(r.rc == 0, "allowed step %d failed, errno %d", r.rc,
	    r.err);
	/* The dialer's path: a connected fd arrives with SCM_RIGHTS. */
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(write(p[1], "hello", 5), 5);
	close(p[1]);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &p[0], sizeof(int));
	ck_assert_int_eq(send(s.ctl, (uint8_t[]){ A_RECV_FD }, 1, 0), 1);
	ck_assert_int_eq(sendmsg(s.ctl, &mh, 0), 2);
	close(p[0]);
	ck_assert(subject_read(&s, &r, NULL, NULL));
	ck_assert_int_eq(r.rc, 5);
	/* A normal exit runs libc's and libraries' destructors confined. */
	ck_assert_int_eq(send(s.ctl, (uint8_t[]){ A_EXIT }, 1, 0), 1);
	ck_assert_int_eq(waitpid(s.pid, &p[0], 0), s.pid);
	ck_assert(WIFEXITED(p[0]) && WEXITSTATUS(p[0]) == 0);
	close(s.ctl);
	close(s.agent);
}
END_TEST

/* abort() and fortify failures must die of SIGABRT, not of the filter. */
START_TEST(demote_abort_is_sigabrt)
{
	struct subject s;
	struct reply r;
	int st;

	subject_start(&s, M_DEMOTE_ALL);
	if (_i == 1)
		fprintf(stderr, "(a \"buffer overflow detected\" line is "
		    "expected next)\n");
	ck_assert(!subject_cmd(&s, _i == 0 ? A_ABORT : A_CHK_FAIL, &r, NULL,
	    NULL));
	st = subject_end(&s);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
	    "status %#x", st);
}
END_TEST

START_TEST(demote_warmup_hook)
{
	struct subject s;
	struct reply r = subject_start(&s, M_WARMUP);

	/* The hook ran after NNP and its fd survived. */
	ck_assert_int_ge(r.rc, DEMOTE_KEEP_FDS);
	if (as_root)
		ck_assert(proc_fds(s.pid) & (1ULL << r.rc));
	ck_assert_int_eq(WEXITSTATUS(subject_end(&s)), 0);
}
END_TEST

START_TEST(demote_close_fds_only)
{
	struct subject s;

	subject_start(&s, M_CLOSE_ONLY);
	ck_assert_uint_eq(proc_fds(s.pid), 0x3f);
	ck_assert_int_eq(WEXITSTATUS(subject_end(&s)), 0);
}
END_TEST

START_TEST(demote_ids_and_rlimits)
{
	struct subject s;
	struct reply r;

	if (!as_root) {
		fprintf(stderr, "demote_ids_and_rlimits: not root, skipped\n");
		return;
	}
	subject_start(&s, M_IDS_RLIMITS);
	ck_assert_str_eq(proc_limit(s.pid, "Max open files"), "24 24");
	check_data_limit(s.pid);
	ck_assert_uint_eq(demote_nofile(MAX_CH), 24);
	/* RLIMIT_NPROC 0 stops fork even where seccomp is not loaded. */
	ck_assert(subject_cmd(&s, A_FORK_EAGAIN, &r, NULL, NULL));
	ck_assert_int_eq(r.rc, -1);
	ck_assert_int_eq(r.err, EAGAIN);
	ck_assert(subject_cmd(&s, A_SETUID, &r, NULL, NULL));
	ck_assert_int_eq(r.rc, -1);
	ck_assert_int_eq(r.err, EPERM);
	ck_assert_int_eq(WEXITSTATUS(subject_end(&s)), 0);
}
END_TEST

START_TEST(demote_root_allowed)
{
	struct subject s;

	if (!as_root) {
		fprintf(stderr, "demote_root_allowed: not root, skipped\n");
		return;
	}
	subject_start(&s, M_ROOT_ALLOWED);
	/* uid 0 on request, but no capability and still confined. */
	ck_assert_str_eq(proc_field(s.pid, "status", "Uid"), "0\t0\t0\t0");
	ck_assert_str_eq(proc_field(s.pid, "status", "CapEff"),
	    "0000000000000000");
	ck_assert_str_eq(proc_field(s.pid, "status", "NoNewPrivs"), "1");
	ck_assert_int_eq(WEXITSTATUS(subject_end(&s)), 0);
}
END_TEST

START_TEST(demote_landlock_only)
{
	struct subject s;
	struct reply r;

	subject_spawn(&s, M_LANDLOCK_ONLY);
	ck_assert(subject_read(&s, &r, NULL, NULL));
	if (r.kind == 'F' && r.rc == TP_EUNSUPP) {
		fprintf(stderr, "demote_landlock_only: no Landlock, skipped\n");
		subject_end(&s);
		return;
	}
	ck_assert_int_eq(r.kind, 'R');
	ck_assert(subject_cmd(&s, A_OPEN_PASSWD, &r, NULL, NULL));
	ck_assert_int_eq(r.rc, -1);
	ck_assert_int_eq(r.err, EACCES);
	ck_assert_int_eq(WEXITSTATUS(subject_end(&s)), 0);
}
END_TEST

START_TEST(demote_refusals)
{
	struct demote_opts o = { .uid = 0, .gid = 0, .max_channels = 1,
	    .control_fd = -1 };
	struct demote_result r;

	/* Refused before anything irreversible: we are still ourselves. */
	ck_assert_int_eq(demote_all(&o, &r), TP_EDENIED);
	ck_assert_int_eq(r.failed, DEMOTE_STEP_ARGS);
	o.uid = o.gid = 65534;
	o.max_channels = 0;
	ck_assert_int_eq(demote_all(&o, &r), TP_EINVAL);
	ck_assert_int_eq(r.failed, DEMOTE_STEP_ARGS);
	o.max_channels = 1;
	o.empty_dir = "relative";
	ck_assert_int_eq(demote_all(&o, &r), TP_EINVAL);
	ck_assert_int_eq(demote_all(NULL, &r), TP_EINVAL);
	ck_assert_int_eq(demote_ids(0, 0, false), TP_EDENIED);
	ck_assert_int_eq(demote_rlimits(0, NULL), TP_EINVAL);
	ck_assert_int_eq(demote_rlimits(65536, NULL), TP_EINVAL);
	ck_assert_int_eq(demote_close_fds(-1), TP_EINVAL);
	ck_assert_str_eq(demote_step_name(DEMOTE_STEP_FS), "fs");
	ck_assert_str_eq(demote_step_name((enum demote_step)99), "?");
	ck_assert_uint_eq(geteuid(), as_root ? 0 : getuid());
}
END_TEST

/* Each bad empty root is refused, and nothing changes. */
START_TEST(demote_chroot_checks)
{
	char path[128], link[128];
	int fd;

	ck_assert_int_eq(demote_chroot("relative"), TP_EINVAL);
	ck_assert_int_eq(demote_chroot(NULL), TP_EINVAL);
	ck_assert_int_eq(demote_chroot("/nonexistent/tp"), TP_ESYS);
	ck_assert_int_eq(demote_chroot("/etc/passwd"), TP_EDENIED);
	ck_assert_int_eq(demote_chroot("/"), TP_EDENIED);	/* not empty */
	snprintf(link, sizeof(link), "%s.lnk", empty_dir);
	ck_assert_int_eq(symlink(empty_dir, link), 0);
	ck_assert_int_eq(demote_chroot(link), TP_EDENIED);
	unlink(link);
	if (!as_root) {
		ck_assert_int_eq(demote_chroot(empty_dir), TP_EDENIED);
		return;
	}
	ck_assert_int_eq(chmod(empty_dir, 0770), 0);
	ck_assert_int_eq(demote_chroot(empty_dir), TP_EDENIED);
	ck_assert_int_eq(chmod(empty_dir, 0702), 0);
	ck_assert_int_eq(demote_chroot(empty_dir), TP_EDENIED);
	ck_assert_int_eq(chmod(empty_dir, 0755), 0);
	ck_assert_int_eq(chown(empty_dir, test_uid, 0), 0);
	ck_assert_int_eq(demote_chroot(empty_dir), TP_EDENIED);
	ck_assert_int_eq(chown(empty_dir, 0, 0), 0);
	snprintf(path, sizeof(path), "%s/f", empty_dir);
	ck_assert_int_ge(fd = open(path, O_CREAT | O_WRONLY, 0600), 0);
	close(fd);
	ck_assert_int_eq(demote_chroot(empty_dir), TP_EDENIED);
	unlink(path);
	ck_assert_ptr_nonnull(getcwd(path, sizeof(path)));
	/* Nothing happened: still outside any chroot. */
	ck_assert_int_eq(access("/etc/passwd", F_OK), 0);
}
END_TEST

/* The log on a regular file must not die of SIGXFSZ. */
START_TEST(demote_fsize_log_file)
{
	struct subject s;
	struct reply r;
	FILE *log = tmpfile();
	int saved = dup(STDERR_FILENO);

	ck_assert_ptr_nonnull(log);
	ck_assert_int_eq(dup2(fileno(log), STDERR_FILENO), STDERR_FILENO);
	subject_spawn(&s, M_DEMOTE_ALL);
	dup2(saved, STDERR_FILENO);
	ck_assert(subject_read(&s, &r, NULL, NULL));
	ck_assert_int_eq(r.kind, 'R');
	ck_assert_int_eq(r.extra & 2, 2);
	ck_assert_str_ne(proc_limit(s.pid, "Max file size"), "0 0");
	ck_assert_int_eq(WEXITSTATUS(subject_end(&s)), 0);
	fclose(log);
}
END_TEST

/* --- the sandbox API -------------------------------------------------- */

START_TEST(sandbox_api)
{
	struct sandbox_opts so = { .control_fd = -1 };
	pid_t pid;
	int st;

	ck_assert_str_eq(sandbox_name(), !HAVE_FILTER ? "none" :
#ifdef TP_SANDBOX_TRAP
	    "seccomp-trap");
#else
	    "seccomp");
#endif
	ck_assert_int_eq(sandbox_prepare(NULL), TP_EINVAL);
	if (!HAVE_FILTER)
		ck_assert_int_eq(sandbox_enter(), TP_ESTATE);
	ck_assert_int_eq(sandbox_prepare(&so), 0);
	ck_assert_int_eq(sandbox_prepare(&so), 0);	/* again: replaces */
	if (!HAVE_FILTER)
		return;
	/* The filter pins the preparing process: a child may not load it. */
	ck_assert_int_ne(pid = fork(), -1);
	if (pid == 0)
		_exit(sandbox_enter() == TP_ESTATE ? 0 : 1);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}
END_TEST

#ifdef TP_SANDBOX_SECCOMP
/* The handler's hand-encoding must equal what msgpack-c would produce. */
static void
check_encoding(uint32_t nr, const char *name, const char *sent)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	uint8_t buf[64];
	size_t n = msg_encode_sandbox_violation(buf, sizeof(buf), nr,
	    name);

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_uint32(&pk, 72);
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str_with_body(&pk, "nr", 2);
	msgpack_pack_uint32(&pk, nr);
	msgpack_pack_str_with_body(&pk, "name", 4);
	msgpack_pack_str_with_body(&pk, sent, strlen(sent));
	ck_assert_uint_eq(n, sb.size);
	ck_assert_mem_eq(buf, sb.data, n);
	msgpack_sbuffer_destroy(&sb);
}

START_TEST(sandbox_violation_wire)
{
	static const uint32_t nrs[] = { 0, 41, 127, 128, 255, 256, 65535,
	    65536, 0x40000000, UINT32_MAX };
	uint8_t small[8];

	for (size_t i = 0; i < sizeof(nrs) / sizeof(nrs[0]); i++) {
		check_encoding(nrs[i], "socket", "socket");
		check_encoding(nrs[i], "?", "?");
		check_encoding(nrs[i], "", "");
		check_encoding(nrs[i], "0123456789012345678901234567890",
		    "0123456789012345678901234567890");
		check_encoding(nrs[i], "01234567890123456789012345678901", "?");
		check_encoding(nrs[i], NULL, "?");
	}
	ck_assert_uint_eq(msg_encode_sandbox_violation(small, sizeof(small), 1,
	    "x"), 0);
}
END_TEST

/* --- forbidden syscalls, one subject each ----------------------------- */

static const struct {
	enum action	a;
	long		nr;		/* the syscall the filter sees */
	const char	*name;
} forbidden[] = {
	{ A_SOCKET,		SYS_socket,		"socket" },
	{ A_SOCKETPAIR,		SYS_socketpair,		"socketpair" },
	{ A_CONNECT,		SYS_connect,		"connect" },
	{ A_BIND,		SYS_bind,		"bind" },
	{ A_LISTEN,		SYS_listen,		"listen" },
	{ A_ACCEPT,		SYS_accept,		"accept" },
	{ A_EXECVE,		SYS_execve,		"execve" },
	{ A_FORK,		SYS_clone,		"clone" },
	{ A_CLONE3,		SYS_clone3,		"clone3" },
	{ A_PTRACE,		SYS_ptrace,		"ptrace" },
	{ A_PROCESS_VM_READV,	SYS_process_vm_readv,	"process_vm_readv" },
	{ A_MMAP_WX,		SYS_mmap,		"mmap" },
	{ A_MMAP_X,		SYS_mmap,		"mmap" },
	{ A_MMAP_FILE,		SYS_mmap,		"mmap" },
	{ A_MPROTECT_X,		SYS_mprotect,		"mprotect" },
	{ A_SETUID,		SYS_setuid,		"setuid" },
	{ A_CHROOT,		SYS_chroot,		"chroot" },
	{ A_MOUNT,		SYS_mount,		"mount" },
	{ A_OPEN_BY_HANDLE,	SYS_open_by_handle_at,	"open_by_handle_at" },
	{ A_KILL_PARENT,	SYS_kill,		"kill" },
	{ A_TGKILL_OTHER_SIG,	SYS_tgkill,		"tgkill" },
	{ A_IOCTL,		SYS_ioctl,		"ioctl" },
	{ A_FCNTL_DUPFD,	SYS_fcntl,		"fcntl" },
	{ A_SETSOCKOPT,		SYS_setsockopt,		"setsockopt" },
	{ A_SETSOCKOPT_NODELAY,	SYS_setsockopt,		"setsockopt" },
	{ A_SETSOCKOPT_QUICKACK_FD, SYS_setsockopt,	"setsockopt" },
	{ A_FUTEX_REQUEUE,	SYS_futex,		"futex" },
	{ A_PRCTL,		SYS_prctl,		"prctl" },
	{ A_MADVISE,		SYS_madvise,		"madvise" },
	{ A_RT_SIGACTION,	SYS_rt_sigaction,	"rt_sigaction" },
	{ A_EPOLL_CTL,		SYS_epoll_ctl,		"epoll_ctl" },
	{ A_EPOLL_WAIT,		SYS_epoll_wait,		"epoll_wait" },
	{ A_RT_SIGRETURN,	SYS_rt_sigreturn,	"rt_sigreturn" },
};

/* Kill builds: SIGSYS.  Trap builds: the report, then exit 12. */
START_TEST(sandbox_forbidden)
{
	struct subject s;
	struct reply r;
	uint8_t raw[256];
	size_t rawlen = 0;
	int st;

	subject_start(&s, M_DEMOTE_ALL);
	ck_assert_msg(!subject_cmd(&s, forbidden[_i].a, &r, raw, &rawlen),
	    "%s returned %d (errno %d) instead of dying", forbidden[_i].name,
	    r.rc, r.err);
	st = subject_end(&s);
#ifdef TP_SANDBOX_TRAP
	ck_assert_msg(WIFEXITED(st) &&
	    WEXITSTATUS(st) == WEXIT_SANDBOX_VIOLATION,
	    "%s: status %#x", forbidden[_i].name, st);
	check_encoding((uint32_t)forbidden[_i].nr, forbidden[_i].name,
	    forbidden[_i].name);
	{
		uint8_t want[64];
		size_t n = msg_encode_sandbox_violation(want, sizeof(want),
		    (uint32_t)forbidden[_i].nr, forbidden[_i].name);

		ck_assert_uint_eq(rawlen, n);
		ck_assert_mem_eq(raw, want, n);
	}
#else
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS,
	    "%s: status %#x", forbidden[_i].name, st);
	ck_assert_uint_eq(rawlen, 0);
#endif
}
END_TEST
#endif

static Suite *
sandbox_suite(void)
{
	Suite *s = suite_create("sandbox");
	TCase *tc = tcase_create("demote");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, demote_status);
	tcase_add_test(tc, demote_open_denied);
	tcase_add_test(tc, demote_allowed_and_fd_passing);
	tcase_add_test(tc, demote_warmup_hook);
	tcase_add_test(tc, demote_close_fds_only);
	tcase_add_test(tc, demote_ids_and_rlimits);
	tcase_add_test(tc, demote_root_allowed);
	tcase_add_test(tc, demote_landlock_only);
	tcase_add_test(tc, demote_refusals);
	tcase_add_test(tc, demote_chroot_checks);
	tcase_add_test(tc, demote_fsize_log_file);
	tcase_add_test(tc, sandbox_api);
	tcase_add_loop_test(tc, demote_abort_is_sigabrt, 0, 2);
	suite_add_tcase(s, tc);

	tc = tcase_create("seccomp");
	tcase_add_checked_fixture(tc, setup, teardown);
#ifdef TP_SANDBOX_SECCOMP
	tcase_add_test(tc, sandbox_violation_wire);
	tcase_add_loop_test(tc, sandbox_forbidden, 0,
	    (int)(sizeof(forbidden) / sizeof(forbidden[0])));
#else
	fprintf(stderr, "test_sandbox: -Dsandbox=none: the seccomp cases "
	    "(forbidden syscalls, violation report) are skipped\n");
#endif
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(sandbox_suite());
	int failed;

	/* Demotion is irreversible: every case in its own process. */
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
