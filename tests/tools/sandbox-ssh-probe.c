/*
 * sandbox-ssh-probe: proves the worker's seccomp allowlist against the real
 * workload.  It starts a stock OpenSSH sshd on 127.0.0.1, connects to it
 * the way the supervisor does, and forks a libssh client that sets its
 * fds up like a worker (0 /dev/null, 3 control, 4 agent, 5 proxy socket),
 * runs the worker's OpenSSL set-up (worker/cryptoprov.c), its demotion and
 * filter (demote_all), and only then does KEX, host-key check, public-key
 * auth, a remote forward (tcpip-forward), accepts forwarded channels,
 * receives the "dialed" local fd over SCM_RIGHTS like the dialer hands it,
 * pumps bulk data both ways through client- and server-initiated rekeys,
 * cancels the forward, disconnects and exits through libssh's and
 * OpenSSL's destructors.
 *
 * In a -Dsandbox_trap=true build a refused syscall arrives on the control
 * socket as MSG_SANDBOX_VIOLATION and is printed; in a kill build the client
 * dies of SIGSYS.  Either way the probe fails.  Run it under
 * `strace -f -qq -e trace=all` to see what the filter lets through.
 *
 * Needs root (chroot, sshd) and /usr/sbin/sshd; exits 77 (skip) without.
 * Usage: sandbox-ssh-probe [-v] [-W] [-b bytes-per-connection] [-n connections]
 * (-W: no OpenSSL warm-up before the filter, to check that it still works)
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <openssl/crypto.h>

#include "proto/exitcode.h"
#include "proto/msg.h"
#include "proto/workerfd.h"
#include "worker/cryptoprov.h"
#include "worker/demote.h"
#include "worker/sandbox.h"
#include "unit/testutil.h"

#define FD_CTL		WORKER_FD_CONTROL
#define FD_AGENT	WORKER_FD_AGENT
#define FD_NET		WORKER_FD_PROXY
#define SSHD		"/usr/sbin/sshd"
#define SSH_KEYGEN	"/usr/bin/ssh-keygen"
#define EXIT_SKIP	77
#define DEADLINE_S	90
#define CHUNK		16384

struct probe {
	char		 dir[64];	/* keys, sshd_config, sshd.log */
	char		 empty[64];	/* the client's empty root */
	unsigned	 port;		/* sshd */
	size_t		 bytes;		/* per forwarded connection */
	int		 conns;
	int		 verbose;
	int		 no_warmup;	/* -W: skip the OpenSSL warm-up */
	uid_t		 uid;
	gid_t		 gid;
	pid_t		 sshd;
	pid_t		 client;
	int		 ctl;		/* our end of the control socket */
};

static int verbose;
static pid_t kill_on_die[2];	/* sshd and the client, once started */

/* Fails the probe; never leaves sshd or the client behind. */
static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "sandbox-ssh-probe: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	for (int i = 0; i < 2; i++)
		if (kill_on_die[i] > 0) {
			kill(kill_on_die[i], SIGKILL);
			waitpid(kill_on_die[i], NULL, 0);
		}
	exit(1);
}

/* ====================================================================== */
/* The client: a worker in all but name.                                   */
/* ====================================================================== */

/* Sends one text datagram to the driver; works inside the sandbox. */
static void __attribute__((format(printf, 1, 2)))
ctl_send(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		(void)!write(FD_CTL, buf, (size_t)n < sizeof(buf) ? (size_t)n :
		    sizeof(buf) - 1);
}

static void __attribute__((noreturn))
client_fail(const char *what, ssh_session s)
{
	ctl_send("fail %s: %s", what, s != NULL ? ssh_get_error(s) : "");
	_exit(1);
}

/* libssh logs through write(2), as the worker's log does. */
static void
client_log(int prio, const char *func, const char *msg, void *arg)
{
	char line[1024];
	int n;

	(void)arg;
	if (!verbose)
		return;
	n = snprintf(line, sizeof(line), "client: libssh[%d] %s: %s\n", prio,
	    func, msg);
	if (n > 0)
		(void)!write(STDERR_FILENO, line, (size_t)n < sizeof(line) ?
		    (size_t)n : sizeof(line) - 1);
}

/* Everything libssh would otherwise look up from the filesystem (trap 8). */
static ssh_session
client_session(const struct probe *p)
{
	ssh_session s = ssh_new();
	int fd = FD_NET;
	int verbosity = p->verbose ? SSH_LOG_PROTOCOL : SSH_LOG_WARN;
	bool no = false;
	uint64_t rekey = 1024 * 1024;
	long timeout = 20;

	if (s == NULL)
		client_fail("ssh_new", NULL);
	ssh_set_log_callback(client_log);
	if (ssh_options_set(s, SSH_OPTIONS_FD, &fd) < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_HOST, "127.0.0.1") < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_USER, "root") < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_SSH_DIR, "/nonexistent") < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, "/nonexistent/kh") < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS,
	    "/nonexistent/gkh") < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &no) < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_LOG_VERBOSITY, &verbosity) < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_REKEY_DATA, &rekey) < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &timeout) < 0)
		client_fail("options", s);
	return s;
}

/*
 * The warm-up the worker should do too: OpenSSL reads openssl.cnf and runs
 * its one-time inits lazily, at the first KEX, which would be inside the
 * sandbox (the open then fails with EACCES and the config is ignored).
 */
static int
client_warmup(void *arg)
{
	(void)arg;
	if (OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1)
		return -1;
	return 0;
}

/* The worker's demotion, verbatim. */
static void
client_demote(const struct probe *p)
{
	struct demote_opts o = {
		.empty_dir = p->empty, .uid = p->uid, .gid = p->gid,
		.max_channels = 4, .control_fd = FD_CTL,
		.warmup = p->no_warmup ? NULL : client_warmup,
	};
	struct demote_result r;

	if (demote_all(&o, &r) != 0) {
		ctl_send("fail demote step %s: %d errno %d",
		    demote_step_name(r.failed), r.err, r.sys_errno);
		_exit(1);
	}
	ctl_send("ready %s", sandbox_name());
}

/* KEX, pinned host key, public-key auth. */
static void
client_handshake(ssh_session s, ssh_key hostpub, ssh_key priv)
{
	ssh_key srv = NULL;
	unsigned char *hash = NULL;
	size_t hlen;
	char *fp;

	if (ssh_connect(s) != SSH_OK)
		client_fail("connect", s);
	if (ssh_get_server_publickey(s, &srv) != SSH_OK ||
	    ssh_key_cmp(srv, hostpub, SSH_KEY_CMP_PUBLIC) != 0)
		client_fail("host key mismatch", s);
	if (ssh_get_publickey_hash(srv, SSH_PUBLICKEY_HASH_SHA256, &hash,
	    &hlen) != 0)
		client_fail("fingerprint", s);
	fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
	ctl_send("trusted %s", fp != NULL ? fp : "?");
	ssh_string_free_char(fp);
	ssh_clean_pubkey_hash(&hash);
	ssh_key_free(srv);
	if (ssh_userauth_publickey(s, NULL, priv) != SSH_AUTH_SUCCESS)
		client_fail("auth", s);
}

/* Receives the fd the driver "dialed", as a worker gets it from the dialer. */
static int
client_recv_fd(void)
{
	char data[16], cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { data, sizeof(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int fd;

	if (recvmsg(FD_CTL, &mh, MSG_CMSG_CLOEXEC) <= 0)
		return -1;
	c = CMSG_FIRSTHDR(&mh);
	if (c == NULL || c->cmsg_level != SOL_SOCKET ||
	    c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(fd));
	return fd;
}

struct pump {
	char	 buf[CHUNK];		/* channel -> fd, not yet written */
	size_t	 off, len;
	bool	 ch_eof, fd_eof, fd_shut;
	uint64_t bytes;
};

/* Channel -> local fd; never blocks on the fd.  True if it moved data. */
static bool
pump_to_fd(ssh_session s, ssh_channel ch, int fd, struct pump *pp)
{
	ssize_t n = 0;
	int r = 0;

	if (pp->len == 0 && !pp->ch_eof) {
		r = ssh_channel_read_nonblocking(ch, pp->buf, sizeof(pp->buf),
		    0);
		if (r == SSH_ERROR)
			client_fail("channel read", s);
		if (r > 0) {
			pp->off = 0;
			pp->len = (size_t)r;
		} else if (ssh_channel_is_eof(ch)) {
			pp->ch_eof = true;
		}
	}
	if (pp->len > 0) {
		n = write(fd, pp->buf + pp->off, pp->len);
		if (n < 0 && errno != EAGAIN)
			client_fail("fd write", NULL);
		if (n > 0) {
			pp->off += (size_t)n;
			pp->len -= (size_t)n;
		}
	}
	if (pp->ch_eof && pp->len == 0 && !pp->fd_shut) {
		shutdown(fd, SHUT_WR);
		pp->fd_shut = true;
	}
	return r > 0 || n > 0;
}

/*
 * Local fd -> channel; ssh_channel_write blocks until the window allows.
 * True if it moved data.
 */
static bool
pump_to_channel(ssh_session s, ssh_channel ch, int fd, struct pump *pp)
{
	char buf[CHUNK];
	ssize_t n;

	if (pp->fd_eof)
		return false;
	n = read(fd, buf, sizeof(buf));
	if (n < 0 && errno == EAGAIN)
		return false;
	if (n < 0)
		client_fail("fd read", NULL);
	if (n == 0) {
		pp->fd_eof = true;
		ssh_channel_send_eof(ch);
		return true;
	}
	if (ssh_channel_write(ch, buf, (uint32_t)n) != n)
		client_fail("channel write", s);
	pp->bytes += (uint64_t)n;
	return true;
}

/* Pumps one forwarded channel against the dialed fd until both EOFs. */
static uint64_t
client_pump(ssh_session s, ssh_channel ch, int fd)
{
	struct pump pp = { .len = 0 };
	struct pollfd pfd[2];
	bool moved = false;

	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == -1)
		client_fail("fcntl", NULL);
	while (!(pp.fd_eof && pp.fd_shut)) {
		pfd[0].fd = fd;
		pfd[0].events = POLLIN | (pp.len > 0 ? POLLOUT : 0);
		pfd[1].fd = ssh_get_fd(s);
		pfd[1].events = POLLIN;
		/* libssh may hold decrypted data the socket no longer shows. */
		if (poll(pfd, 2, moved ? 0 : 100) < 0 && errno != EINTR)
			client_fail("poll", NULL);
		moved = pump_to_fd(s, ch, fd, &pp);
		moved |= pump_to_channel(s, ch, fd, &pp);
	}
	return pp.bytes;
}

/*
 * Waits for a forwarded channel the way the worker does: poll the session
 * fd, then ask libssh with timeout 0.  A timeout > 0 makes libssh sleep in
 * nanosleep(2) between rounds, which the filter does not allow.
 */
static ssh_channel
client_accept(ssh_session s, int *dport, char **orig, int *oport)
{
	struct pollfd pfd = { .fd = ssh_get_fd(s), .events = POLLIN };
	ssh_channel ch;

	for (int i = 0; i < 300; i++) {
		ch = ssh_channel_open_forward_port(s, 0, dport, orig, oport);
		if (ch != NULL)
			return ch;
		if (ssh_get_status(s) & (SSH_CLOSED | SSH_CLOSED_ERROR))
			break;
		if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
			break;
	}
	client_fail("accept forward", s);
}

/* One forwarded connection: accept, ask for a dial, pump, close. */
static void
client_serve(ssh_session s)
{
	ssh_channel ch;
	char *orig = NULL;
	int dport = 0, oport = 0, fd;
	uint64_t n;

	ch = client_accept(s, &dport, &orig, &oport);
	ctl_send("dial %d from %s:%d", dport, orig != NULL ? orig : "?", oport);
	ssh_string_free_char(orig);
	if ((fd = client_recv_fd()) < 0)
		client_fail("recv fd", NULL);
	n = client_pump(s, ch, fd);
	close(fd);
	ssh_channel_close(ch);
	ssh_channel_free(ch);
	ctl_send("served %llu", (unsigned long long)n);
}

static int
client_main(const struct probe *p, const char *privpath, const char *hostpath)
{
	ssh_session s;
	ssh_key priv = NULL, hostpub = NULL;
	int bound = 0;

	/*
	 * The worker's OpenSSL (worker_main): no legacy tables, only SSH's
	 * algorithms (worker/cryptoprov.c).  Not with -W, which checks the
	 * lazy configuration load inside the filter.
	 */
	if (!p->no_warmup &&
	    (OPENSSL_init_crypto(CRYPTOPROV_OPENSSL_INIT, NULL) != 1 ||
	    cryptoprov_install() != CRYPTOPROV_SSH))
		client_fail("OpenSSL as the worker has it", NULL);
	/* Keys are read before the filesystem goes away. */
	if (ssh_pki_import_privkey_file(privpath, NULL, NULL, NULL,
	    &priv) != 0 || ssh_pki_import_pubkey_file(hostpath, &hostpub) != 0)
		client_fail("keys", NULL);
	s = client_session(p);
	client_demote(p);
	client_handshake(s, hostpub, priv);
	if (ssh_channel_listen_forward(s, "127.0.0.1", 0, &bound) != SSH_OK)
		client_fail("tcpip-forward", s);
	ctl_send("port %d", bound);
	for (int i = 0; i < p->conns; i++)
		client_serve(s);
	ssh_send_keepalive(s);
	if (ssh_channel_cancel_forward(s, "127.0.0.1", bound) != SSH_OK)
		client_fail("cancel-tcpip-forward", s);
	ssh_disconnect(s);
	ssh_free(s);
	ssh_key_free(priv);
	ssh_key_free(hostpub);
	ctl_send("done");
	return 0;	/* exit(): libssh, OpenSSL destructors run confined */
}

/* ====================================================================== */
/* The driver: sshd, the "supervisor" end of the fds, the remote user.     */
/* ====================================================================== */

/* Runs argv to completion; dies unless it exits 0. */
static void
run(char *const argv[])
{
	int st;
	pid_t pid = fork();

	if (pid == -1)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) == -1 || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		die("%s failed", argv[0]);
}

static void
keygen(const char *dir, const char *name)
{
	char path[128];
	char *argv[] = { SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f",
	    path, NULL };

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	run(argv);
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0)
		die("write %s: %s", path, strerror(errno));
}

static char *
read_file(const char *path)
{
	static char buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd == -1)
		die("open %s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* A free loopback port, found by binding port 0 (racy, fine for a probe). */
static unsigned
free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		die("free port: %s", strerror(errno));
	close(fd);
	return ntohs(sin.sin_port);
}

static int
dial(unsigned port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	if (fd == -1)
		die("socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

static void
setup_files(struct probe *p)
{
	char path[128], conf[1024];

	snprintf(p->dir, sizeof(p->dir), "/tmp/tp-sshprobe-XXXXXX");
	snprintf(p->empty, sizeof(p->empty), "/tmp/tp-empty-XXXXXX");
	if (mkdtemp(p->dir) == NULL || mkdtemp(p->empty) == NULL)
		die("mkdtemp: %s", strerror(errno));
	keygen(p->dir, "hostkey");
	keygen(p->dir, "userkey");
	snprintf(path, sizeof(path), "%s/userkey.pub", p->dir);
	strcpy(conf, read_file(path));
	snprintf(path, sizeof(path), "%s/authorized_keys", p->dir);
	write_file(path, conf);
	p->port = free_port();
	snprintf(conf, sizeof(conf),
	    "ListenAddress 127.0.0.1:%u\nHostKey %s/hostkey\nPidFile none\n"
	    "AuthorizedKeysFile %s/authorized_keys\nStrictModes no\n"
	    "UsePAM no\nPermitRootLogin prohibit-password\n"
	    "AuthenticationMethods publickey\nPasswordAuthentication no\n"
	    "KbdInteractiveAuthentication no\nAllowTcpForwarding remote\n"
	    "X11Forwarding no\nPrintMotd no\nLogLevel DEBUG1\n"
	    "RekeyLimit 1M 1\n", p->port, p->dir, p->dir);
	snprintf(path, sizeof(path), "%s/sshd_config", p->dir);
	write_file(path, conf);
	/* sshd's privilege separation directory. */
	if (mkdir("/run/sshd", 0755) == -1 && errno != EEXIST)
		die("mkdir /run/sshd: %s", strerror(errno));
}

static void
start_sshd(struct probe *p)
{
	char conf[128], log[128];
	int fd;

	snprintf(conf, sizeof(conf), "%s/sshd_config", p->dir);
	snprintf(log, sizeof(log), "%s/sshd.log", p->dir);
	if ((p->sshd = fork()) == -1)
		die("fork: %s", strerror(errno));
	if (p->sshd == 0) {
		/* Hold none of our stdio: a caller's pipe must see EOF. */
		fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd == -1 || dup2(fd, STDOUT_FILENO) == -1 ||
		    dup2(fd, STDERR_FILENO) == -1 ||
		    (fd = open("/dev/null", O_RDONLY)) == -1 ||
		    dup2(fd, STDIN_FILENO) == -1)
			_exit(127);
		execl(SSHD, SSHD, "-D", "-e", "-f", conf, (char *)NULL);
		_exit(127);
	}
	kill_on_die[0] = p->sshd;
	for (int i = 0; i < 100; i++) {
		if ((fd = dial(p->port)) != -1) {
			close(fd);
			return;
		}
		usleep(50000);
	}
	die("sshd did not come up; see %s", log);
}

static void
spawn_client(struct probe *p, int net, const char *priv, const char *hostpub)
{
	int ctl[2], agent[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) == -1 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, agent) == -1)
		die("socketpair: %s", strerror(errno));
	if ((p->client = fork()) == -1)
		die("fork: %s", strerror(errno));
	if (p->client == 0) {
		(void)tu_child_worker_fds(ctl[1], agent[1], net, FD_CTL);
		_exit(client_main(p, priv, hostpub));
	}
	kill_on_die[1] = p->client;
	close(ctl[1]);
	close(agent[1]);
	close(agent[0]);	/* no agent in this probe: auth uses a key */
	p->ctl = ctl[0];
}

/* The "local target": echoes its socket until EOF, in its own process. */
static int
spawn_echo(void)
{
	int sv[2];
	char buf[CHUNK];
	ssize_t n;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		die("socketpair: %s", strerror(errno));
	switch (fork()) {
	case -1:
		die("fork: %s", strerror(errno));
	case 0:
		/* Hold nothing else open, or EOFs elsewhere never arrive. */
		if (dup2(sv[1], 3) == -1 || demote_close_fds(4) != 0)
			_exit(1);
		while ((n = read(3, buf, sizeof(buf))) > 0)
			if (write(3, buf, (size_t)n) != n)
				_exit(1);
		_exit(n == 0 ? 0 : 1);
	}
	close(sv[1]);
	return sv[0];
}

static void
send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { "fd", 2 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
	    .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(fd));
	if (sendmsg(sock, &mh, 0) == -1)
		die("sendmsg: %s", strerror(errno));
}

/* Prints a MSG_SANDBOX_VIOLATION, read with the supervisor's decoder. */
static void
print_violation(const uint8_t *m, size_t len)
{
	static struct msg msg;

	if (msg_decode(m, len, -1, MSG_TO_SUPERVISOR, &msg) != 0 ||
	    msg.type != MSG_SANDBOX_VIOLATION) {
		fprintf(stderr, "sandbox-ssh-probe: malformed violation\n");
		return;
	}
	fprintf(stderr, "sandbox-ssh-probe: VIOLATION nr=%u name=%s\n",
	    msg.u.sandbox_violation.nr, msg.u.sandbox_violation.name);
}

/* The remote user's side of one forwarded connection. */
struct remote {
	int		 fd;
	const uint8_t	*data;
	size_t		 len, sent, rcvd;
	bool		 shut;
};

enum remote_state { R_BUSY, R_DONE, R_BROKEN };

/* One poll round on the remote connection. */
static enum remote_state
remote_step(struct remote *r, short revents)
{
	uint8_t buf[CHUNK];
	ssize_t n;

	if ((revents & POLLOUT) && r->sent < r->len) {
		n = write(r->fd, r->data + r->sent, r->len - r->sent < CHUNK ?
		    r->len - r->sent : CHUNK);
		if (n > 0)
			r->sent += (size_t)n;
	}
	if (r->sent == r->len && !r->shut) {
		shutdown(r->fd, SHUT_WR);
		r->shut = true;
	}
	if (!(revents & (POLLIN | POLLHUP | POLLERR)))
		return R_BUSY;
	n = read(r->fd, buf, sizeof(buf));
	if (n < 0 && errno == EAGAIN)
		return R_BUSY;
	/* A client that died cuts the tunnel: report, let reaping say why. */
	if (n <= 0) {
		if (n == 0 && r->rcvd == r->len)
			return R_DONE;
		fprintf(stderr, "sandbox-ssh-probe: remote: connection ended "
		    "after %zu of %zu bytes\n", r->rcvd, r->len);
		return R_BROKEN;
	}
	if (r->rcvd + (size_t)n > r->len ||
	    memcmp(buf, r->data + r->rcvd, (size_t)n) != 0)
		die("remote: echo differs at byte %zu", r->rcvd);
	r->rcvd += (size_t)n;
	return R_BUSY;
}

/* Sequencing of the remote user's connections, one at a time. */
struct drive {
	struct remote	r;
	unsigned	fwd_port;	/* 0 until the forward is bound */
	int		started, served;
};

/* Opens the next remote connection once the previous one is verified. */
static void
maybe_start(struct probe *p, struct drive *d)
{
	if (d->fwd_port == 0 || d->r.fd != -1 || d->started >= p->conns ||
	    d->served != d->started)
		return;
	if ((d->r.fd = dial(d->fwd_port)) == -1)
		die("connect to forwarded port %u failed", d->fwd_port);
	fcntl(d->r.fd, F_SETFL, O_NONBLOCK);
	d->r.sent = d->r.rcvd = 0;
	d->r.shut = false;
	d->started++;
}

/* Handles one datagram from the client; returns false when it is done. */
static bool
handle_ctl(struct probe *p, struct drive *d, const uint8_t *data, size_t n)
{
	const char *m = (const char *)data;
	unsigned v;
	int fd;

	if (data[0] == 0x92) {
		print_violation(data, n);
		return false;
	}
	fprintf(stderr, "sandbox-ssh-probe: client: %s\n", m);
	if (strncmp(m, "fail", 4) == 0 || strcmp(m, "done") == 0)
		return false;
	if (sscanf(m, "port %u", &v) == 1)
		d->fwd_port = v;
	if (strncmp(m, "dial", 4) == 0) {
		fd = spawn_echo();
		send_fd(p->ctl, fd);
		close(fd);
	}
	if (strncmp(m, "served", 6) == 0)
		d->served++;
	return true;
}

/* Runs the remote user and answers the client until it is done. */
static bool
drive(struct probe *p, const uint8_t *data, size_t len)
{
	struct drive d = { .r = { .fd = -1, .data = data, .len = len } };
	struct pollfd pfd[2];
	uint8_t msg[512];
	ssize_t n;
	enum remote_state rs = R_BUSY;
	time_t end = time(NULL) + DEADLINE_S;

	while (time(NULL) < end) {
		maybe_start(p, &d);
		pfd[0] = (struct pollfd){ .fd = p->ctl, .events = POLLIN };
		pfd[1] = (struct pollfd){ .fd = d.r.fd, .events = POLLIN |
		    (d.r.sent < d.r.len ? POLLOUT : 0) };
		if (poll(pfd, 2, 1000) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (d.r.fd != -1 && pfd[1].revents != 0 &&
		    (rs = remote_step(&d.r, pfd[1].revents)) != R_BUSY) {
			close(d.r.fd);
			d.r.fd = -1;
			if (rs == R_BROKEN)
				return false;
		}
		if (!(pfd[0].revents & (POLLIN | POLLHUP)))
			continue;
		if ((n = recv(p->ctl, msg, sizeof(msg) - 1, 0)) <= 0)
			return false;
		msg[n] = '\0';
		if (!handle_ctl(p, &d, msg, (size_t)n))
			return strcmp((char *)msg, "done") == 0 &&
			    d.served == p->conns;
	}
	fprintf(stderr, "sandbox-ssh-probe: timed out\n");
	return false;
}

/* Prints what the client said last (a violation report, a failure). */
static void
drain_ctl(struct probe *p)
{
	uint8_t msg[512];
	ssize_t n;

	while ((n = recv(p->ctl, msg, sizeof(msg) - 1, MSG_DONTWAIT)) > 0) {
		msg[n] = '\0';
		if (msg[0] == 0x92)
			print_violation(msg, (size_t)n);
		else
			fprintf(stderr, "sandbox-ssh-probe: client: %s\n", msg);
	}
}

/* Reaps the client and judges how it ended. */
static bool
reap_client(struct probe *p, bool ok)
{
	int st;

	if (!ok) {
		usleep(200000);		/* a dying client may still report */
		drain_ctl(p);
		kill(p->client, SIGKILL);
	}
	if (waitpid(p->client, &st, 0) == -1)
		die("waitpid: %s", strerror(errno));
	kill_on_die[1] = 0;
	if (WIFSIGNALED(st)) {
		fprintf(stderr,
		    "sandbox-ssh-probe: client killed by signal %d%s\n",
		    WTERMSIG(st), WTERMSIG(st) == SIGSYS ? " (seccomp: rebuild "
		    "with -Dsandbox_trap=true to see the syscall)" : "");
		return false;
	}
	if (WEXITSTATUS(st) != 0) {
		fprintf(stderr, "sandbox-ssh-probe: client exited %d%s\n",
		    WEXITSTATUS(st), WEXITSTATUS(st) == WEXIT_SANDBOX_VIOLATION ?
		    " (sandbox violation)" : "");
		return false;
	}
	return ok;
}

/* Counts server-side rekeys in sshd's debug log. */
static int
count_rekeys(const struct probe *p)
{
	char path[128];
	const char *s;
	int n = 0;

	snprintf(path, sizeof(path), "%s/sshd.log", p->dir);
	for (s = read_file(path); (s = strstr(s, "rekeying")) != NULL; s++)
		n++;
	return n;
}

static void
cleanup(struct probe *p, bool keep)
{
	char *argv[] = { "/bin/rm", "-rf", p->dir, NULL };

	if (p->sshd > 0) {
		kill(p->sshd, SIGTERM);
		waitpid(p->sshd, NULL, 0);
		kill_on_die[0] = 0;
	}
	rmdir(p->empty);
	if (keep)
		fprintf(stderr, "sandbox-ssh-probe: kept %s\n", p->dir);
	else
		run(argv);
}

/* Resolves the unprivileged user before anything is chrooted. */
static void
resolve_user(struct probe *p)
{
	struct passwd *pw = getpwnam("tunnelpool");

	if (pw == NULL)
		pw = getpwnam("nobody");
	if (pw == NULL)
		die("no tunnelpool or nobody user");
	p->uid = pw->pw_uid;
	p->gid = pw->pw_gid;
}

int
main(int argc, char **argv)
{
	struct probe p = { .bytes = 4 << 20, .conns = 2, .ctl = -1 };
	char priv[128], hostpub[128];
	uint8_t *data;
	int c, net;
	bool ok;

	while ((c = getopt(argc, argv, "b:n:vW")) != -1) {
		switch (c) {
		case 'b': p.bytes = strtoul(optarg, NULL, 0); break;
		case 'n': p.conns = atoi(optarg); break;
		case 'v': p.verbose = verbose = 1; break;
		case 'W': p.no_warmup = 1; break;
		default:
			fprintf(stderr,
			    "usage: %s [-vW] [-b bytes] [-n conns]\n", argv[0]);
			return 2;
		}
	}
	if (geteuid() != 0 || access(SSHD, X_OK) != 0 ||
	    access(SSH_KEYGEN, X_OK) != 0) {
		fprintf(stderr, "sandbox-ssh-probe: SKIP: needs root and %s\n",
		    SSHD);
		return EXIT_SKIP;
	}
	signal(SIGPIPE, SIG_IGN);
	resolve_user(&p);
	if ((data = malloc(p.bytes)) == NULL ||
	    getrandom(data, p.bytes, 0) < 0)
		die("no test data");
	setup_files(&p);
	start_sshd(&p);
	if ((net = dial(p.port)) == -1)
		die("connect to sshd: %s", strerror(errno));
	/* As the supervisor does it (LIBSSH-NOTES trap 1). */
	struct timeval tv = { 0, 50000 };
	setsockopt(net, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	snprintf(priv, sizeof(priv), "%s/userkey", p.dir);
	snprintf(hostpub, sizeof(hostpub), "%s/hostkey.pub", p.dir);
	spawn_client(&p, net, priv, hostpub);
	close(net);
	ok = reap_client(&p, drive(&p, data, p.bytes));
	if (ok)
		fprintf(stderr, "sandbox-ssh-probe: %d x %zu bytes echoed, "
		    "sshd logged %d rekey lines: PASS\n", p.conns, p.bytes,
		    count_rekeys(&p));
	else
		fprintf(stderr, "sandbox-ssh-probe: FAIL\n");
	cleanup(&p, !ok);
	free(data);
	return ok ? 0 : 1;
}
