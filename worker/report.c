/*
 * The worker's reports to the supervisor, its log identity and its
 * process title.  The control socket is the only channel the worker has to
 * the outside, so every message goes through report_send(), which treats a
 * supervisor that went away as the end of this worker.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "common/tptime.h"
#include "proto/exitcode.h"
#include "proto/msg.h"
#include "proto/wire.h"
#include "worker/report.h"

static int exiting;

void
report_init(struct report *r, int ctl, const char *cluster, const char *dial)
{
	memset(r, 0, sizeof(*r));
	r->ctl = ctl;
	snprintf(r->cluster, sizeof(r->cluster), "%s", cluster);
	snprintf(r->dial, sizeof(r->dial), "%s", dial);
	r->agent.cluster = r->cluster;
	r->agent.addr = r->dial;
	r->agent.pid = getpid();
	r->agent.state = "starting";
	r->agent.proxy = r->name;
}

const struct log_agent *
report_agent(const struct report *r)
{
	return &r->agent;
}

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

void
report_send(struct report *r, const struct msg *m)
{
	uint64_t deadline = tp_now_ms() + REPORT_SEND_MS;
	int rc;

	while ((rc = proto_send(r->ctl, m)) == TP_EAGAIN)
		if (wait_writable(r->ctl, deadline) < 0)
			break;
	if (rc == 0)
		return;
	if (exiting)
		return;		/* already on the way out with its own code */
	if (rc == TP_EAGAIN || rc == TP_ECLOSED || rc == TP_ESYS) {
		exiting = 1;
		alog_warnx(&r->agent, "cannot send %s: %s", msg_name(m->type),
		    rc == TP_EAGAIN ? "supervisor not reading" :
		    tp_strerror(rc));
		_exit(WEXIT_SUPERVISOR_GONE);
	}
	/* An encoder refusal means we built a bad message: our bug. */
	exiting = 1;
	alog_warnx(&r->agent, "cannot encode %s: %s", msg_name(m->type),
	    tp_strerror(rc));
	_exit(WEXIT_INTERNAL);
}

void
report_set_proxy(struct report *r, const char *fp, const char *name)
{
	if (fp != NULL)
		snprintf(r->fp, sizeof(r->fp), "%s", fp);
	if (name != NULL)
		snprintf(r->name, sizeof(r->name), "%s", name);
	r->agent.proxy = r->name[0] != '\0' ? r->name : r->fp;
}

void
report_title(const struct report *r)
{
	const char *st = r->state != 0 ? agent_state_name(r->state) :
	    r->agent.state;

	if (r->name[0] != '\0')
		proctitle_set("tunnelpool-agent: %s %s %s %s", r->cluster,
		    r->dial, r->name, st);
	else
		proctitle_set("tunnelpool-agent: %s %s %s", r->cluster,
		    r->dial, st);
}

void
report_state(struct report *r, uint32_t state, const char *reason, int code)
{
	struct msg m;

	if (state == r->state && strcmp(reason, r->reason) == 0)
		return;
	r->state = state;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
	r->agent.state = agent_state_name(state);
	report_title(r);
	alog_info(&r->agent, "state %s: %s", agent_state_name(state), reason);
	if (!r->configured)
		return;
	msg_init(&m, MSG_STATE);
	m.u.state.state = state;
	snprintf(m.u.state.fp, sizeof(m.u.state.fp), "%s", r->fp);
	snprintf(m.u.state.name, sizeof(m.u.state.name), "%s", r->name);
	snprintf(m.u.state.reason, sizeof(m.u.state.reason), "%s", reason);
	m.u.state.code = (uint32_t)code;
	report_send(r, &m);
}

void
report_forward(struct report *r, uint32_t id, bool bound, uint32_t port,
    const char *error)
{
	struct msg m;

	msg_init(&m, MSG_FORWARD);
	m.u.forward.id = id;
	m.u.forward.bound = bound;
	m.u.forward.port = port;
	snprintf(m.u.forward.error, sizeof(m.u.forward.error), "%s",
	    error != NULL ? error : "");
	report_send(r, &m);
}

void
report_stats(struct report *r, const struct msg_stats *st)
{
	struct msg m;

	msg_init(&m, MSG_STATS);
	m.u.stats = *st;
	report_send(r, &m);
}

void
report_exit(struct report *r, int code, const char *fmt, ...)
{
	char reason[PROTO_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (!exiting) {
		exiting = 1;
		/* Forced out even if the same reason was reported before. */
		r->reason[0] = '\0';
		r->state = 0;
		report_state(r, AGENT_DISCONNECTED, reason, code);
	}
	alog_info(&r->agent, "exit %d (%s)", code, worker_exit_reason(code));
	_exit(code);
}
