/*
 * The worker's identity towards the world: its log identity, its process
 * title, the state it last reported (STATE goes out through send_state
 * only when it changed), and the one way out, report_exit().  What goes on
 * the wire is send.c's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "proto/exitcode.h"
#include "proto/msg.h"
#include "worker/report.h"
#include "worker/send.h"

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
	if (state == r->state && strcmp(reason, r->reason) == 0)
		return;
	r->state = state;
	snprintf(r->reason, sizeof(r->reason), "%s", reason);
	r->agent.state = agent_state_name(state);
	report_title(r);
	alog_info(&r->agent, "state %s: %s", agent_state_name(state), reason);
	if (r->configured)
		send_state(r, state, reason, (uint32_t)code);
}

void
report_exit(struct report *r, int code, const char *fmt, ...)
{
	char reason[PROTO_REASON_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	if (!r->exiting) {
		r->exiting = true;
		/* Forced out even if the same reason was reported before. */
		r->reason[0] = '\0';
		r->state = 0;
		report_state(r, AGENT_DISCONNECTED, reason, code);
	}
	alog_info(&r->agent, "exit %d (%s)", code, worker_exit_reason(code));
	_exit(code);
}
