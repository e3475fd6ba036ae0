/*
 * Test-hook fault injection (-Dtest_hooks=true builds only; production
 * builds compile none of this, and MSG_TEST_HOOK does not exist there).
 * Joined to the worker by one row of its receive table (recv_test_hook)
 * and three seams that act where a hook must: at CLOSE, at the claim and
 * at the session bind (testhook.h).
 *
 * The sandbox and reliability tests drive it through the supervisor's
 * control socket ({"cmd": "test_hook"}).  The forbidden calls are made for
 * real, with arguments that do no harm if no filter stops them.  The
 * hostile actions play a compromised worker: they break the protocol
 * towards the supervisor (which must end this worker and nothing else) or
 * ask the signer for signatures it must refuse.  They use only what the
 * sandbox allows: sendmsg/recvmsg, read/write and poll on the fds the
 * worker already holds, and bypass worker/send.c on purpose (a second
 * ssh-agent client, raw datagrams, sends past the fd rule).
 */
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/sshbuf.h"
#include "common/tptime.h"
#include "proto/msg.h"
#include "proto/wire.h"
#include "proto/workerfd.h"
#include "worker/report.h"
#include "worker/sandbox.h"
#include "worker/send.h"
#include "worker/testhook.h"

#define HOOK_AGENT_MAX		8192
#define HOOK_AGENT_MS		3000
#define HOOK_FLOOD		5000
#define HOOK_AGENTC_IDENTITIES	11
#define HOOK_AGENT_IDENTITIES	12
#define HOOK_AGENTC_SIGN	13
#define HOOK_USERAUTH_REQUEST	50
#define HOOK_RSA_SHA2_256	2
#define HOOK_AGENT_CLOSED	(-2)	/* the supervisor closed the agent socket */
#define HOOK_DIALS		1000
#define HOOK_LOG_LINES		5000

/* What the hooks act on, set once by testhook_init; what is armed. */
static struct {
	struct report			*rep;
	const char			*fp;	/* the session's host key */
	const struct msg_config		*cfg;
	uint32_t			 at_close;	/* HOOK_*_AT_CLOSE, or 0 */
	bool				 claim_held;
	uint32_t			 at_bind;	/* HOOK_BIND_FORGED, ..._UNBOUND */
} hk;

void
testhook_init(struct report *rep, const char *fp,
    const struct msg_config *cfg)
{
	hk.rep = rep;
	hk.fp = fp;
	hk.cfg = cfg;
}

/*
 * Encodes m and sends it, optionally with fd attached, past proto_send's
 * fd rule; 0 or a tp_err.
 */
static long
hook_send_raw(const struct msg *m, int fd)
{
	static uint8_t buf[PROTO_MAX_MSG];
	int n = msg_encode(m, buf, sizeof(buf));

	if (n < 0)
		return n;
	return proto_send_bytes(hk.rep->ctl, buf, (size_t)n, fd);
}

/* Random datagrams: the first one is already a protocol violation. */
static long
hook_garbage(void)
{
	uint8_t buf[512];
	long sent = 0;

	for (int i = 0; i < 16; i++) {
		size_t len = 1 + arc4random_uniform(sizeof(buf));

		arc4random_buf(buf, len);
		if (proto_send_bytes(hk.rep->ctl, buf, len, -1) < 0)
			break;
		sent++;
	}
	return sent;
}

/* READY again, in the running state: once-only and out of state. */
static long
hook_ready_again(void)
{
	struct msg m;

	msg_init(&m, MSG_READY);
	m.u.ready.version = PROTO_VERSION;
	snprintf(m.u.ready.sandbox, sizeof(m.u.ready.sandbox), "%s",
	    sandbox_name());
	return hook_send_raw(&m, -1);
}

/* The claim was made at auth; two more of the same. */
static long
hook_claim_twice(void)
{
	struct msg m;

	msg_init(&m, MSG_CLAIM);
	snprintf(m.u.claim.fp, sizeof(m.u.claim.fp), "%s", hk.fp);
	snprintf(m.u.claim.name, sizeof(m.u.claim.name), "%s", hk.rep->name);
	if (hook_send_raw(&m, -1) < 0)
		return -1;
	return hook_send_raw(&m, -1);
}

/* Reads and drops what the supervisor sent (DIAL_RESULTs and their fds). */
static void
hook_drain_control(void)
{
	static uint8_t buf[PROTO_MAX_MSG];
	size_t len;
	int fd;

	while (proto_recv(hk.rep->ctl, buf, sizeof(buf), &len, &fd) == 0)
		if (fd >= 0)
			close(fd);
}

/*
 * Sends m up to max times as fast as the socket takes them (at most 500 ms
 * of waiting for room each time), first reading and dropping what the
 * supervisor sent when drain is set; a STATS carries its own count.
 * Returns how many were sent.
 */
static long
hook_flood(struct msg *m, long max, bool drain)
{
	struct pollfd p = { .fd = hk.rep->ctl, .events = POLLOUT };
	long sent = 0;
	int rc;

	while (sent < max) {
		if (drain)
			hook_drain_control();
		if (m->type == MSG_STATS)
			m->u.stats.channels_total = (uint64_t)sent;
		rc = proto_send(hk.rep->ctl, m);
		if (rc == 0) {
			sent++;
			continue;
		}
		if (rc != TP_EAGAIN || poll(&p, 1, 500) <= 0)
			break;
	}
	return sent;
}

/* Thousands of STATS as fast as the socket takes them. */
static long
hook_stats_flood(void)
{
	struct msg m;

	msg_init(&m, MSG_STATS);
	return hook_flood(&m, HOOK_FLOOD, false);
}

/* One datagram larger than any message may be. */
static long
hook_oversize(void)
{
	static uint8_t big[PROTO_MAX_MSG + 4096];

	memset(big, 0xa5, sizeof(big));
	big[0] = 0x92;		/* looks like the start of a message */
	big[1] = MSG_STATS;
	return proto_send_bytes(hk.rep->ctl, big, sizeof(big), -1);
}

/* A valid STATE carrying a descriptor it must not carry (our stdin). */
static long
hook_fd_on_state(void)
{
	struct msg m;

	msg_init(&m, MSG_STATE);
	m.u.state.state = agent_up_state(hk.cfg->role);
	snprintf(m.u.state.fp, sizeof(m.u.state.fp), "%s", hk.rep->fp);
	snprintf(m.u.state.reason, sizeof(m.u.state.reason), "test hook");
	return hook_send_raw(&m, STDIN_FILENO);
}

/*
 * Moves all len bytes between p and fd (the agent socket), written when
 * out is set, else read, before deadline; 0, or -1 on error, EOF or time.
 */
static int
hook_io_all(int fd, bool out, uint8_t *p, size_t len, uint64_t deadline)
{
	struct pollfd pf = { .fd = fd, .events = out ? POLLOUT : POLLIN };
	ssize_t n;

	while (len > 0) {
		if ((n = out ? write(fd, p, len) : read(fd, p, len)) > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if ((n == 0 && !out) ||
		    (n < 0 && errno != EAGAIN && errno != EINTR))
			return -1;
		if (tp_now_ms() >= deadline ||
		    poll(&pf, 1, (int)(deadline - tp_now_ms())) < 0)
			return -1;
	}
	return 0;
}

/*
 * One ssh-agent round trip on the agent socket (idle after user-auth:
 * libssh talks to it only while authenticating).  The reply body goes to
 * out (at most cap bytes).  Returns the body length or -1.
 */
static long
hook_agent_call(const struct sshbuf_writer *req, uint8_t *out, size_t cap)
{
	uint64_t deadline = tp_now_ms() + HOOK_AGENT_MS;
	uint8_t hdr[4];
	uint32_t len;

	hdr[0] = (uint8_t)(req->len >> 24);
	hdr[1] = (uint8_t)(req->len >> 16);
	hdr[2] = (uint8_t)(req->len >> 8);
	hdr[3] = (uint8_t)req->len;
	if (hook_io_all(WORKER_FD_AGENT, true, hdr, 4, deadline) != 0 ||
	    hook_io_all(WORKER_FD_AGENT, true, req->p, req->len, deadline) != 0 ||
	    hook_io_all(WORKER_FD_AGENT, false, hdr, 4, deadline) != 0)
		return HOOK_AGENT_CLOSED;
	len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
	    (uint32_t)hdr[2] << 8 | hdr[3];
	if (len == 0 || len > cap ||
	    hook_io_all(WORKER_FD_AGENT, false, out, len, deadline) != 0)
		return -1;
	return (long)len;
}

/* The node key's public blob (the last identity: the plain key). */
static int
hook_agent_key(uint8_t *blob, size_t cap, size_t *bloblen)
{
	static uint8_t reply[HOOK_AGENT_MAX];
	struct sshbuf_writer req;
	struct sshbuf_reader r;
	const uint8_t *kb = NULL, *p;
	size_t kblen = 0, plen;
	uint32_t n;
	uint8_t type;
	long len;

	sshbuf_writer_init(&req, 16);
	sshbuf_put_u8(&req, HOOK_AGENTC_IDENTITIES);
	len = hook_agent_call(&req, reply, sizeof(reply));
	sshbuf_writer_free(&req);
	if (len < 0)
		return (int)len;
	sshbuf_reader_init(&r, reply, (size_t)len);
	if (sshbuf_get_u8(&r, &type) != 0 || type != HOOK_AGENT_IDENTITIES ||
	    sshbuf_get_u32(&r, &n) != 0 || n == 0)
		return -1;
	for (uint32_t i = 0; i < n; i++)
		if (sshbuf_get_string(&r, &kb, &kblen) != 0 ||
		    sshbuf_get_string(&r, &p, &plen) != 0)
			return -1;
	if (kblen > cap)
		return -1;
	memcpy(blob, kb, kblen);
	*bloblen = kblen;
	return 0;
}

/*
 * Asks the signer to sign something it must refuse: HOOK_SIGN_OTHER,
 * bytes that are no userauth request at all; HOOK_SIGN_WRONG_USER, a
 * well-formed publickey userauth request for the node key, but for the
 * user "root"; HOOK_SIGN_VALID, one for the proxy user, over a session id
 * of its own (a relay to another server).  Returns the reply's message
 * type (5 = SSH_AGENT_FAILURE), HOOK_AGENT_CLOSED or -1.
 */
static long
hook_sign(uint32_t action)
{
	bool other_data = action == HOOK_SIGN_OTHER;
	const char *user = action == HOOK_SIGN_VALID ? hk.cfg->user : "root";
	static uint8_t blob[HOOK_AGENT_MAX], reply[HOOK_AGENT_MAX];
	struct sshbuf_writer data, req;
	struct sshbuf_reader r;
	const uint8_t *kt;
	size_t bloblen = 0, ktlen;
	char alg[64];
	uint8_t sid[32];
	uint32_t flags = 0;
	long len;

	if ((len = hook_agent_key(blob, sizeof(blob), &bloblen)) != 0)
		return len;
	sshbuf_reader_init(&r, blob, bloblen);
	if (sshbuf_get_string(&r, &kt, &ktlen) != 0 || ktlen >= sizeof(alg))
		return -1;
	snprintf(alg, sizeof(alg), "%.*s", (int)ktlen, (const char *)kt);
	if (strcmp(alg, "ssh-rsa") == 0) {
		snprintf(alg, sizeof(alg), "rsa-sha2-256");
		flags = HOOK_RSA_SHA2_256;
	}
	arc4random_buf(sid, sizeof(sid));
	sshbuf_writer_init(&data, HOOK_AGENT_MAX);
	if (other_data) {
		sshbuf_put_bytes(&data, "tunnelpool test hook: sign this ", 32);
		sshbuf_put_bytes(&data, sid, sizeof(sid));
	} else {
		sshbuf_put_string(&data, sid, sizeof(sid));
		sshbuf_put_u8(&data, HOOK_USERAUTH_REQUEST);
		sshbuf_put_cstring(&data, user);
		sshbuf_put_cstring(&data, "ssh-connection");
		sshbuf_put_cstring(&data, "publickey");
		sshbuf_put_u8(&data, 1);
		sshbuf_put_cstring(&data, alg);
		sshbuf_put_string(&data, blob, bloblen);
	}
	sshbuf_writer_init(&req, HOOK_AGENT_MAX);
	sshbuf_put_u8(&req, HOOK_AGENTC_SIGN);
	sshbuf_put_string(&req, blob, bloblen);
	sshbuf_put_string(&req, data.p, data.len);
	sshbuf_put_u32(&req, flags);
	len = sshbuf_writer_error(&req) != 0 ? -1 :
	    hook_agent_call(&req, reply, sizeof(reply));
	sshbuf_writer_free(&data);
	sshbuf_writer_free(&req);
	return len > 0 ? (long)reply[0] : len < 0 ? len : -1;
}

/*
 * DIAL_REQUESTs as fast as the socket takes them, for forward 0 and
 * channel 1 (which the scenario opened and closed), reading the answers
 * as a careful attacker would, so that only the dial limit stops it.
 * Returns how many were sent.
 */
static long
hook_dial_flood(void)
{
	struct msg m;

	msg_init(&m, MSG_DIAL_REQUEST);
	m.u.dial_request.forward_id = 0;
	m.u.dial_request.channel_id = 1;
	snprintf(m.u.dial_request.orig_host, sizeof(m.u.dial_request.orig_host),
	    "127.0.0.1");
	m.u.dial_request.orig_port = 9;
	return hook_flood(&m, HOOK_DIALS, true);
}

/*
 * A line that pretends to be the supervisor's about another agent, written
 * straight to stderr, then thousands of the worker's own lines.
 */
static long
hook_log_flood(void)
{
	static const char forged[] = "ts=2026-01-01T00:00:00.000Z level=error "
	    "prog=tunnelpool func=child_lost msg=\"forged by a worker\" "
	    "cluster=someone-else pid=1\n";

	if (write(STDERR_FILENO, forged, sizeof(forged) - 1) < 0)
		(void)0;
	for (long i = 0; i < HOOK_LOG_LINES; i++)
		alog_warnx(report_agent(hk.rep), "test hook log flood line %ld",
		    i);
	return HOOK_LOG_LINES;
}

/*
 * The close races: what a worker sent just before it read CLOSE, sent
 * just after instead, so that it reaches a supervisor already closing us.
 */
void
testhook_close(void)
{
	int what = hk.at_close;

	hk.at_close = 0;
	if (what == 0 || (what == HOOK_CLAIM_AT_CLOSE && !hk.claim_held))
		return;
	if (what == HOOK_CLAIM_AT_CLOSE) {
		/*
		 * A worker that has not claimed has nothing to drain and
		 * exits at once.  Stop reading first, so that the
		 * supervisor's refusal finds the socket shut (EPIPE)
		 * whatever the timing: a worker that exits with a request in
		 * flight is no protocol violation.  (The DIAL case keeps
		 * reading: its live channel drains.)
		 */
		(void)shutdown(WORKER_FD_CONTROL, SHUT_RD);
		alog_warnx(report_agent(hk.rep), "test hook: the held CLAIM "
		    "goes out after CLOSE");
		send_claim(hk.rep, hk.fp, hk.rep->name);
	} else if (what == HOOK_DIAL_AT_CLOSE) {
		alog_warnx(report_agent(hk.rep), "test hook: a DIAL_REQUEST "
		    "goes out after CLOSE");
		send_dial_request(hk.rep, 0, 1, "127.0.0.1", 9);
	}
}

/*
 * At the session bind: HOOK_SIGN_UNBOUND asks the signer for a valid
 * user-auth signature before the session is bound (refused);
 * HOOK_BIND_FORGED sends the bind with the server's signature altered
 * (the supervisor ends us).
 */
void
testhook_bind(struct msg_session_bind *b)
{
	long rc;

	if (hk.at_bind == HOOK_SIGN_UNBOUND) {
		rc = hook_sign(HOOK_SIGN_VALID);
		alog_warnx(report_agent(hk.rep), "test hook 23: before the "
		    "bind, agent answered type %ld", rc);
	} else if (hk.at_bind == HOOK_BIND_FORGED) {
		b->sig[b->sig_len - 1] ^= 0x01;
		alog_warnx(report_agent(hk.rep), "test hook 22: session bind "
		    "with an altered signature");
	}
	hk.at_bind = 0;
}

/* STATE naming a host key the claim never granted: the supervisor ends us. */
static long
hook_state_fp(void)
{
	struct msg m;

	msg_init(&m, MSG_STATE);
	m.u.state.state = agent_up_state(hk.cfg->role);
	snprintf(m.u.state.fp, sizeof(m.u.state.fp),
	    "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	snprintf(m.u.state.reason, sizeof(m.u.state.reason), "test hook");
	return hook_send_raw(&m, -1);
}

/*
 * The sandbox hooks: each forbidden call made for real, with arguments
 * that do no harm if no filter stops it.  open() is expected to fail with
 * EACCES and is logged; the others are expected to end in SIGSYS.
 * Returns the call's result (the caller logs a survivor).
 */
static long
hook_forbidden(uint32_t action)
{
	char *const argv[] = { "tunnelpool-hook", NULL };
	long rc = 0;
	void *p;

	switch (action) {
	case HOOK_OPEN_FILE:
		rc = open("/etc/passwd", O_RDONLY);
		alog_warnx(report_agent(hk.rep), "test hook: open(/etc/passwd) "
		    "= %ld, errno %d (%s)", rc, errno, strerror(errno));
		if (rc >= 0)
			close((int)rc);
		break;
	case HOOK_SOCKET:
		if ((rc = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0)) >= 0)
			close((int)rc);
		break;
	case HOOK_EXECVE:
		rc = execve("/nonexistent/tunnelpool-hook", argv, NULL);
		break;
	case HOOK_PTRACE:
		rc = ptrace(PTRACE_CONT, 0, NULL, NULL);
		break;
	case HOOK_FORK:
		if ((rc = fork()) == 0)
			_exit(0);
		break;
	case HOOK_MMAP_WX:
		p = mmap(NULL, 4096, PROT_WRITE | PROT_EXEC,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p != MAP_FAILED)
			munmap(p, 4096);
		break;
	}
	return rc;
}

/* The hostile worker: one protocol break or flood; returns its count. */
static long
hook_hostile(uint32_t action)
{
	static const uint8_t garbage[] = { 0xc1, 0xc1, 'n', 'o', 't', 0x00 };

	switch (action) {
	case HOOK_HOSTILE:
		return send(hk.rep->ctl, garbage, sizeof(garbage),
		    MSG_DONTWAIT | MSG_NOSIGNAL);
	case HOOK_GARBAGE:
		return hook_garbage();
	case HOOK_READY_AGAIN:
		return hook_ready_again();
	case HOOK_CLAIM_TWICE:
		return hook_claim_twice();
	case HOOK_STATS_FLOOD:
		return hook_stats_flood();
	case HOOK_OVERSIZE:
		return hook_oversize();
	case HOOK_FD_ON_STATE:
		return hook_fd_on_state();
	case HOOK_DIAL_FLOOD:
		return hook_dial_flood();
	case HOOK_LOG_FLOOD:
		return hook_log_flood();
	case HOOK_STATE_FP:
		return hook_state_fp();
	}
	return 0;
}

int
recv_test_hook(void *ctx, struct msg *m)
{
	const struct log_agent *a = report_agent(hk.rep);
	uint32_t action = m->u.test_hook.action;
	long rc;

	(void)ctx;
	errno = 0;
	switch (action) {
	case HOOK_OPEN_FILE:
		(void)hook_forbidden(action);
		return 0;
	case HOOK_SOCKET:
	case HOOK_EXECVE:
	case HOOK_PTRACE:
	case HOOK_FORK:
	case HOOK_MMAP_WX:
		rc = hook_forbidden(action);
		break;
	case HOOK_HOSTILE:
	case HOOK_GARBAGE:
	case HOOK_READY_AGAIN:
	case HOOK_CLAIM_TWICE:
	case HOOK_STATS_FLOOD:
	case HOOK_OVERSIZE:
	case HOOK_FD_ON_STATE:
	case HOOK_DIAL_FLOOD:
	case HOOK_LOG_FLOOD:
	case HOOK_STATE_FP:
		rc = hook_hostile(action);
		break;
	case HOOK_SIGN_OTHER:
	case HOOK_SIGN_WRONG_USER:
	case HOOK_SIGN_VALID:
		rc = hook_sign(action);
		if (rc == HOOK_AGENT_CLOSED)
			alog_warnx(a, "test hook %u: agent socket closed",
			    action);
		else
			alog_warnx(a, "test hook %u: agent answered type %ld",
			    action, rc);
		return 0;
	case HOOK_CLAIM_AT_CLOSE:
	case HOOK_DIAL_AT_CLOSE:
		hk.at_close = action;
		alog_warnx(a, "test hook %u: armed", hk.at_close);
		return 0;
	case HOOK_BIND_FORGED:
	case HOOK_SIGN_UNBOUND:
		hk.at_bind = action;
		alog_warnx(a, "test hook %u: armed", hk.at_bind);
		return 0;
	default:
		return TP_EINVAL;
	}
	alog_warnx(a, "test hook %u: survived (rc %ld, errno %d)", action, rc,
	    errno);
	return 0;
}

bool
testhook_hold_claim(void)
{
	if (hk.at_close != HOOK_CLAIM_AT_CLOSE)
		return false;
	hk.claim_held = true;
	alog_warnx(report_agent(hk.rep), "test hook: CLAIM held until CLOSE");
	return true;
}
