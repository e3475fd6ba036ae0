/*
 * The worker's senders (send.h): one function per message it sends, and
 * the one transport they share.  The receive side is worker.c's handler
 * table; the supervisor's recv_<msg> handles each of these.
 */
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/tptime.h"
#include "proto/exitcode.h"
#include "proto/msg.h"
#include "proto/wire.h"
#include "worker/report.h"
#include "worker/send.h"

/* Waits for room on the control socket until deadline; 0 or -1. */
static int
wait_writable(int fd, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	uint64_t now = tp_now_ms();

	if (now >= deadline)
		return -1;
	if (poll(&p, 1, (int)(deadline - now)) < 0 && errno != EINTR)
		return -1;
	return 0;
}

/*
 * The transport: sends m (its fd stays the caller's), waiting up to
 * REPORT_SEND_MS for room.  The control socket is the worker's only way
 * out, so a supervisor that went away ends the worker here.
 */
static void
send_msg(struct report *r, const struct msg *m)
{
	uint64_t deadline = tp_now_ms() + REPORT_SEND_MS;
	int rc;

	while ((rc = proto_send(r->ctl, m)) == TP_EAGAIN)
		if (wait_writable(r->ctl, deadline) < 0)
			break;
	if (rc == 0)
		return;
	if (r->exiting)
		return;		/* already on the way out with its own code */
	if (rc == TP_EAGAIN || rc == TP_ECLOSED || rc == TP_ESYS) {
		r->exiting = true;
		alog_warnx(&r->agent, "cannot send %s: %s", msg_name(m->type),
		    rc == TP_EAGAIN ? "supervisor not reading" :
		    tp_strerror(rc));
		_exit(WEXIT_SUPERVISOR_GONE);
	}
	/* An encoder refusal means we built a bad message: our bug. */
	r->exiting = true;
	alog_warnx(&r->agent, "cannot encode %s: %s", msg_name(m->type),
	    tp_strerror(rc));
	_exit(WEXIT_INTERNAL);
}

/* A whole message handed in must be of the type its sender is named for. */
static void
send_whole(struct report *r, const struct msg *m, enum msg_type type)
{
	if (m->type != type) {
		r->exiting = true;
		alog_warnx(&r->agent, "cannot send %s as %s", msg_name(m->type),
		    msg_name(type));
		_exit(WEXIT_INTERNAL);
	}
	send_msg(r, m);
}

void
send_ready(struct report *r, const char *sandbox)
{
	struct msg m;

	msg_init(&m, MSG_READY);
	m.u.ready.version = PROTO_VERSION;
	snprintf(m.u.ready.sandbox, sizeof(m.u.ready.sandbox), "%s", sandbox);
	send_msg(r, &m);
}

void
send_state(struct report *r, uint32_t state, const char *reason,
    uint32_t code)
{
	struct msg m;

	msg_init(&m, MSG_STATE);
	m.u.state.state = state;
	snprintf(m.u.state.fp, sizeof(m.u.state.fp), "%s", r->fp);
	snprintf(m.u.state.name, sizeof(m.u.state.name), "%s", r->name);
	snprintf(m.u.state.reason, sizeof(m.u.state.reason), "%s", reason);
	m.u.state.code = code;
	send_msg(r, &m);
}

void
send_claim(struct report *r, const char *fp, const char *name)
{
	struct msg m;

	msg_init(&m, MSG_CLAIM);
	snprintf(m.u.claim.fp, sizeof(m.u.claim.fp), "%s", fp);
	snprintf(m.u.claim.name, sizeof(m.u.claim.name), "%s", name);
	send_msg(r, &m);
}

void
send_discovery(struct report *r, const struct msg *m)
{
	send_whole(r, m, MSG_DISCOVERY);
}

void
send_dial_request(struct report *r, uint32_t fwd_id, uint32_t ch_id,
    const char *orig_host, uint32_t orig_port)
{
	struct msg m;

	msg_init(&m, MSG_DIAL_REQUEST);
	m.u.dial_request.forward_id = fwd_id;
	m.u.dial_request.channel_id = ch_id;
	snprintf(m.u.dial_request.orig_host, sizeof(m.u.dial_request.orig_host),
	    "%s", orig_host);
	m.u.dial_request.orig_port = orig_port;
	send_msg(r, &m);
}

void
send_stats(struct report *r, const struct msg_stats *st)
{
	struct msg m;

	msg_init(&m, MSG_STATS);
	m.u.stats = *st;
	send_msg(r, &m);
}

void
send_pong(struct report *r, uint64_t seq)
{
	struct msg m;

	msg_init(&m, MSG_PONG);
	m.u.pong.seq = seq;
	send_msg(r, &m);
}

void
send_forward(struct report *r, uint32_t id, bool bound, uint32_t port,
    const char *error)
{
	struct msg m;

	msg_init(&m, MSG_FORWARD);
	m.u.forward.id = id;
	m.u.forward.bound = bound;
	m.u.forward.port = port;
	snprintf(m.u.forward.error, sizeof(m.u.forward.error), "%s",
	    error != NULL ? error : "");
	send_msg(r, &m);
}

void
send_sandbox_violation(int fd, uint32_t nr, const char *name)
{
	uint8_t buf[PROTO_VIOLATION_MAX];
	size_t n = msg_encode_sandbox_violation(buf, sizeof(buf), nr, name);

	if (fd >= 0 && n > 0)
		(void)send(fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

void
send_session_bind(struct report *r, const struct msg *m)
{
	send_whole(r, m, MSG_SESSION_BIND);
}
