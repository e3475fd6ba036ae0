/*
 * A running worker: its control socket, its deadlines, and the one
 * teardown every way of losing it ends in.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "common/addr.h"
#include "common/error.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "common/sshpub.h"
#include "common/tptime.h"
#include "proto/wire.h"
#include "child.h"
#include "config.h"
#include "knownhosts.h"
#include "pool.h"
#include "send.h"
#include "signer.h"
#include "spawn.h"
#include "sup.h"
#include "supervisor.h"
#include "trust.h"
#include "tunnels.h"

#define CHILD_DYING_GRACE_MS	2000	/* EOF or SIGTERM until SIGKILL */

/* Receiver states for the dispatch table (bits of proto_handler.states). */
#define S_READY		(1u << CH_WAIT_READY)
#define S_RUN		(1u << CH_RUNNING)
#define S_CLOSE		(1u << CH_CLOSING)

static struct msg *scratch;	/* one decoded message at a time (~50 KiB) */

static void arm_timer(struct child *c, uint64_t ms);

/* --- sending ---------------------------------------------------------------- */

static void
set_state_name(struct child *c, const char *name)
{
	snprintf(c->state_name, sizeof(c->state_name), "%s", name);
}

static int
recv_ready(void *arg, struct msg *m)
{
	struct child *c = arg;

	alog_info(&c->who, "worker ready (sandbox %s)", m->u.ready.sandbox);
	if (send_config(c) != 0)
		return 0;
	c->state = CH_RUNNING;
	set_state_name(c, "connecting");
	arm_timer(c, c->sup->cfg->timeouts.ping_interval_ms);
	return 0;
}

static int
recv_state(void *arg, struct msg *m)
{
	struct child *c = arg;
	const struct msg_state *st = &m->u.state;

	/*
	 * The proxy an agent holds is fixed by the claim decision: a STATE
	 * naming another host key afterwards is a worker lying about where
	 * its forwards are.
	 */
	if (c->agent != NULL && c->agent->claimed && st->fp[0] != '\0' &&
	    strcmp(st->fp, c->agent->fp) != 0)
		return TP_EPROTO;
	set_state_name(c, agent_state_name(st->state));
	if (st->name[0] != '\0')
		snprintf(c->proxy, sizeof(c->proxy), "%s", st->name);
	else if (st->fp[0] != '\0')
		snprintf(c->proxy, sizeof(c->proxy), "%s", st->fp);
	if (st->reason[0] != '\0')
		child_log(c, LOG_LVL_INFO, "state %s: %s", c->state_name,
		    st->reason);
	else
		child_log(c, LOG_LVL_INFO, "state %s", c->state_name);
	pool_agent_state(c->sup->pool, c->agent, st, tp_now_ms());
	return 0;
}

/*
 * The session binding: the worker shows the host key of its key exchange
 * and the host's signature over the session id.  A signature that does
 * not verify is a worker lying (a protocol violation); a host key not
 * trusted for this tunnel is refused.  Then the signer signs user-auth for
 * this session id only, and the claim must name this host key.
 */
static int
recv_session_bind(void *arg, struct msg *m)
{
	struct child *c = arg;
	const struct msg_session_bind *b = &m->u.session_bind;
	char fp[PROTO_FP_MAX], why[PROTO_REASON_MAX];

	if (c->signer == NULL ||
	    sshpub_verify(b->hostkey, b->hostkey_len, b->sig, b->sig_len,
	    b->sid, b->sid_len) != 0 ||
	    sshpub_fingerprint(b->hostkey, b->hostkey_len, fp, sizeof(fp)) != 0)
		return TP_EPROTO;
	if (!trust_host_key(c->sup, c->dial_addr, fp, why, sizeof(why))) {
		alog_warnx(&c->who, "session bind refused: %s", why);
		send_bind_result(c, false, why);
		return 0;
	}
	if (signer_conn_bind(c->signer, b->sid, b->sid_len) != 0)
		return TP_ESTATE;
	snprintf(c->bound_fp, sizeof(c->bound_fp), "%s", fp);
	alog_debug(&c->who, "session bound to host key %s", fp);
	send_bind_result(c, true, "bound");
	return 0;
}

static int
recv_claim(void *arg, struct msg *m)
{
	struct child *c = arg;
	unsigned late;

	/* The proxy it claims is the one its session was bound to. */
	if (strcmp(m->u.claim.fp, c->bound_fp) != 0)
		return TP_EPROTO;
	/*
	 * A claim means the worker is authenticated: the signer has answered
	 * everything it will ever answer this worker.  Whatever it sent the
	 * signer and was not answered yet is refused; the socket is closed.
	 */
	if ((late = signer_conn_end(c->signer)) > 0)
		alog_warnx(&c->who, "%u agent requests refused at the claim",
		    late);
	c->signer = NULL;
	snprintf(c->proxy, sizeof(c->proxy), "%s",
	    m->u.claim.name[0] != '\0' ? m->u.claim.name : m->u.claim.fp);
	pool_agent_claim(c->sup->pool, c->agent, &m->u.claim, tp_now_ms());
	/* A claim changes what is wanted (granted) or when to retry (miss). */
	sup_kick(c->sup);
	return 0;
}

static int
recv_discovery(void *arg, struct msg *m)
{
	struct child *c = arg;

	if (strcmp(m->u.discovery.cluster, c->cluster) != 0) {
		/* A proxy of another cluster behind this address: not ours. */
		child_log(c, LOG_LVL_WARN, "discovery set for cluster \"%s\" "
		    "ignored", m->u.discovery.cluster);
		return 0;
	}
	/* New proxies are wanted now, not at the next idle tick. */
	if (pool_agent_discovery(c->sup->pool, c->agent, &m->u.discovery,
	    tp_now_ms()))
		sup_kick(c->sup);
	return 0;
}

static int
recv_dial_request(void *arg, struct msg *m)
{
	struct child *c = arg;

	return dialer_request(c, &m->u.dial_request);
}

static int
recv_stats(void *arg, struct msg *m)
{
	struct child *c = arg;

	pool_agent_stats(c->sup->pool, c->agent, &m->u.stats);
	return 0;
}

static int
recv_pong(void *arg, struct msg *m)
{
	struct child *c = arg;

	if (m->u.pong.seq == c->ping_seq)
		c->ping_outstanding = false;
	return 0;
}

static int
recv_forward(void *arg, struct msg *m)
{
	struct child *c = arg;
	const struct msg_forward *f = &m->u.forward;

	if (f->bound)
		child_log(c, LOG_LVL_INFO, "forward %u bound on port %u", f->id,
		    f->port);
	else
		child_log(c, LOG_LVL_WARN, "forward %u pending: %s", f->id,
		    f->error);
	pool_agent_forward(c->sup->pool, c->agent, f);
	return 0;
}

static int
recv_sandbox_violation(void *arg, struct msg *m)
{
	struct child *c = arg;

	snprintf(c->syscall, sizeof(c->syscall), "%.31s(%u)",
	    m->u.sandbox_violation.name, m->u.sandbox_violation.nr);
	return 0;
}

static const struct proto_handler child_handlers[] = {
	{ MSG_READY, S_READY, PH_ONCE, 0, recv_ready },
	{ MSG_SESSION_BIND, S_RUN, PH_ONCE, 0, recv_session_bind },
	{ MSG_STATE, S_RUN | S_CLOSE, 0, 50, recv_state },
	/*
	 * CLAIM and DIAL_REQUEST may have been sent before the worker read
	 * CLOSE: accepted while closing, and answered with a refusal (the
	 * pool refuses a closing agent's claim; the dialer its dials).
	 */
	{ MSG_CLAIM, S_RUN | S_CLOSE, PH_ONCE, 0, recv_claim },
	{ MSG_DISCOVERY, S_RUN | S_CLOSE, 0, 20, recv_discovery },
	{ MSG_DIAL_REQUEST, S_RUN | S_CLOSE, 0, 2000, recv_dial_request },
	{ MSG_STATS, S_RUN | S_CLOSE, 0, 20, recv_stats },
	{ MSG_PONG, S_RUN | S_CLOSE, 0, 20, recv_pong },
	{ MSG_FORWARD, S_RUN | S_CLOSE, 0, 100, recv_forward },
	{ MSG_SANDBOX_VIOLATION, S_READY | S_RUN | S_CLOSE, PH_ONCE, 0,
	    recv_sandbox_violation },
};

/* --- the receive path ----------------------------------------------------------- */

void
child_release(struct child *c, unsigned what)
{
	/* The worker's last lines come before the line about its end. */
	if (what & CR_LOG)
		workerlog_close(&c->log);
	if (what & CR_CONTROL) {
		send_queue_free(c);
		if (c->ctl_ev != NULL)
			event_free(c->ctl_ev);
		c->ctl_ev = NULL;
		if (c->ctl >= 0)
			close(c->ctl);
		c->ctl = -1;
	}
	if (what & CR_AGENT) {
		signer_conn_free(c->signer);
		c->signer = NULL;
	}
	if (what & CR_DIALS)
		dialer_cancel_all(c);
	if (what & CR_PROXY_DIAL) {
		if (c->dns_req != NULL)
			evdns_getaddrinfo_cancel(c->dns_req);
		c->dns_req = NULL;
		if (c->conn_ev != NULL)
			event_free(c->conn_ev);
		c->conn_ev = NULL;
		if (c->sock >= 0)
			close(c->sock);
		c->sock = -1;
	}
	if ((what & CR_TIMER) && c->timer != NULL) {
		event_free(c->timer);
		c->timer = NULL;
	}
}

static void
on_eof(struct child *c)
{
	/* The process is exiting: the reap gives the reason.  Do not wait long. */
	child_release(c, CR_CONTROL);
	if (c->state != CH_DYING) {
		c->state = CH_DYING;
		arm_timer(c, CHILD_DYING_GRACE_MS);
	}
}

static void
on_ctl(evutil_socket_t fd, short what, void *arg)
{
	uint8_t buf[PROTO_MAX_MSG];
	struct child *c = arg;
	const char *why;
	size_t len;
	int rc, mfd;

	(void)what;
	/* Bounded batch per wakeup: one flooding worker cannot starve the loop. */
	for (int i = 0; i < 64 && c->ctl >= 0 && c->state != CH_DYING; i++) {
		rc = proto_recv(fd, buf, sizeof(buf), &len, &mfd);
		if (rc == TP_EAGAIN)
			return;
		if (rc == TP_ECLOSED) {
			on_eof(c);
			return;
		}
		if (rc != 0) {
			child_kill(c, SR_PROTOCOL, "receive: %s", tp_strerror(rc));
			return;
		}
		c->sup->counters.messages++;
		rc = proto_dispatch(child_handlers, sizeof(child_handlers) /
		    sizeof(child_handlers[0]), &c->peer, (uint32_t)c->state,
		    MSG_TO_SUPERVISOR, buf, len, mfd, tp_now_ms(), scratch, c,
		    &why);
		if (rc != 0 && c->state != CH_DYING)
			child_kill(c, SR_PROTOCOL, "protocol violation: %s", why);
	}
}

/* --- deadlines ------------------------------------------------------------------- */

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct child *c = arg;

	(void)fd;
	(void)what;
	switch (c->state) {
	case CH_WAIT_READY:
		child_kill(c, SR_TIMEOUT, "no READY within the deadline");
		break;
	case CH_RUNNING:
		if (c->ping_outstanding) {
			child_kill(c, SR_TIMEOUT, "no PONG within the deadline");
			break;
		}
		c->ping_outstanding = true;
		send_ping(c, ++c->ping_seq);
		arm_timer(c, c->sup->cfg->timeouts.ping_interval_ms);
		break;
	case CH_CLOSING:
		/* CLOSE deadline passed: SIGTERM, then SIGKILL after a grace. */
		kill(c->pid, SIGTERM);
		c->state = CH_DYING;
		arm_timer(c, CHILD_DYING_GRACE_MS);
		break;
	case CH_DYING:
		if (c->pid > 0)
			kill(c->pid, SIGKILL);
		break;
	case CH_DIALING:
		break;
	}
}

static void
arm_timer(struct child *c, uint64_t ms)
{
	struct timeval tv = tp_timeval_ms(ms);

	if (c->timer == NULL)
		c->timer = evtimer_new(c->sup->base, on_timer, c);
	if (c->timer == NULL || evtimer_add(c->timer, &tv) != 0)
		fatalx("cannot arm a worker timer");
}

/* --- start, close, kill -------------------------------------------------------------- */

static void
on_signer_error(void *arg, const char *why)
{
	struct child *c = arg;
	char reason[128];
	bool eof = strcmp(why, "eof") == 0;

	/* why may point into the connection: copy it before freeing. */
	snprintf(reason, sizeof(reason), "%s", why);
	signer_conn_free(c->signer);
	c->signer = NULL;
	/* EOF on the agent socket is normal at exit; anything else is not. */
	if (!eof && c->state != CH_DYING)
		child_kill(c, SR_PROTOCOL, "agent socket: %s", reason);
}

int
child_started(struct child *c, pid_t pid, int ctl, int agent_fd, int log_fd)
{
	struct sup *sup = c->sup;

	if (scratch == NULL && (scratch = malloc(sizeof(*scratch))) == NULL)
		fatalx("out of memory");
	c->pid = pid;
	c->who.pid = pid;
	c->ctl = ctl;
	c->state = CH_WAIT_READY;
	set_state_name(c, "starting");
	evutil_make_socket_nonblocking(ctl);
	c->ctl_ev = event_new(sup->base, ctl, EV_READ | EV_PERSIST, on_ctl, c);
	c->signer = signer_conn_new(sup->signer, sup->base, agent_fd, &c->who,
	    on_signer_error, c);
	if (c->signer == NULL)
		close(agent_fd);
	else
		signer_conn_require_bind(c->signer);
	pool_agent_spawned(sup->pool, c->agent, pid, tp_now_ms());
	alog_debug(&c->who, "worker started (%s)",
	    c->agent->role == AGENT_ROLE_DISCOVERY ? "discovery" : "tunnel");
	arm_timer(c, sup->cfg->timeouts.ready_ms);
	if (workerlog_attach(&c->log, sup->base, log_fd) != 0 ||
	    c->ctl_ev == NULL || event_add(c->ctl_ev, NULL) != 0 ||
	    c->signer == NULL)
		return -1;
	return 0;
}


void
child_kill(struct child *c, int reason, const char *fmt, ...)
{
	va_list ap;

	if (c->kill_reason == 0) {
		c->kill_reason = reason;
		va_start(ap, fmt);
		vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
		va_end(ap);
	}
	if (reason == SR_PROTOCOL)
		c->sup->counters.protocol_violations++;
	child_release(c, CR_CONTROL | CR_AGENT | CR_DIALS);
	c->state = CH_DYING;
	if (c->pid > 0)
		kill(c->pid, SIGKILL);
	arm_timer(c, CHILD_DYING_GRACE_MS);
}

void
child_close(void *arg, struct pool_agent *agent, const char *reason)
{
	struct child *c = agent->owner;

	(void)arg;
	if (c == NULL)
		return;
	c->close_requested = true;
	snprintf(c->detail, sizeof(c->detail), "%s", reason);
	if (c->state == CH_DIALING) {
		spawn_cancel(c);
		return;
	}
	if (c->state != CH_RUNNING && c->state != CH_WAIT_READY)
		return;
	alog_info(&c->who, "closing: %s", reason);
	if (c->state == CH_WAIT_READY) {
		kill(c->pid, SIGTERM);
		c->state = CH_DYING;
		arm_timer(c, CHILD_DYING_GRACE_MS);
		return;
	}
	if (send_close(c, (uint32_t)c->sup->cfg->timeouts.close_grace_ms,
	    reason) != 0)
		return;
	c->state = CH_CLOSING;
	set_state_name(c, "closing");
	arm_timer(c, c->sup->cfg->timeouts.close_grace_ms + 500);
}

void
child_claim_result(void *arg, struct pool_agent *agent, bool granted,
    const char *reason)
{
	struct child *c = agent->owner;

	(void)arg;
	if (c == NULL || (c->state != CH_RUNNING && c->state != CH_CLOSING))
		return;
	if (!granted)
		alog_info(&c->who, "claim of %s refused: %s", c->proxy, reason);
	send_claim_result(c, granted, reason);
}

/* --- reap and teardown -------------------------------------------------------------- */

struct child *
child_by_pid(struct sup *sup, pid_t pid)
{
	for (struct child *c = sup->children; c != NULL; c = c->next)
		if (c->pid == pid)
			return c;
	return NULL;
}

/* Maps a wait status to a reason index and detail. */
static int
status_reason(struct child *c, int status, char *detail, size_t cap)
{
	if (c->kill_reason != 0) {
		snprintf(detail, cap, "%s", c->detail);
		return c->kill_reason;
	}
	if (WIFEXITED(status)) {
		int code = WEXITSTATUS(status);

		snprintf(detail, cap, "exit %d", code);
		return code <= WEXIT_MAX ? code : SR_UNKNOWN;
	}
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
		snprintf(detail, cap, "killed by SIGSYS%s%s",
		    c->syscall[0] ? " in " : "", c->syscall);
		return SR_SANDBOX;
	}
	snprintf(detail, cap, "killed by signal %d",
	    WIFSIGNALED(status) ? WTERMSIG(status) : -1);
	return SR_SIGNAL;
}

int
child_reaped(struct sup *sup, pid_t pid, int status)
{
	struct child *c = child_by_pid(sup, pid);
	char detail[PROTO_REASON_MAX];
	int reason;

	if (c == NULL)
		return 0;
	reason = status_reason(c, status, detail, sizeof(detail));
	if (reason == WEXIT_SANDBOX_VIOLATION || reason == SR_SANDBOX)
		sup->counters.sandbox_violations++;
	if (reason == WEXIT_SANDBOX_VIOLATION && c->syscall[0] != '\0')
		snprintf(detail, sizeof(detail), "sandbox violation in %s",
		    c->syscall);
	child_lost(c, reason, detail);
	return 1;
}

void
child_lost(struct child *c, int reason, const char *detail)
{
	struct sup *sup = c->sup;
	bool missed = reason == WEXIT_CLAIM_REFUSED;
	bool failed = !missed && !(c->close_requested && reason == WEXIT_CLOSED);

	child_release(c, CR_ALL);
	set_state_name(c, "disconnected");
	if (reason >= 0 && reason < SUP_EXIT_REASONS)
		sup->counters.exits[reason]++;
	if (missed)
		alog_info(&c->who, "discovery miss: %s (%s)",
		    sup_reason_name(reason), detail);
	else if (failed)
		alog_warnx(&c->who, "worker lost: %s (%s)",
		    sup_reason_name(reason), detail);
	else
		alog_info(&c->who, "worker closed (%s)", detail);
	if (c->agent != NULL) {
		if (failed)
			snprintf(c->agent->key->last_error,
			    sizeof(c->agent->key->last_error), "%s: %s",
			    sup_reason_name(reason), detail);
		c->agent->owner = NULL;
		/* Landing on an unwanted proxy is expected behind a balancer. */
		if (missed)
			pool_agent_missed(sup->pool, c->agent, tp_now_ms());
		pool_agent_lost(sup->pool, c->agent, sup_reason_name(reason),
		    failed, tp_now_ms());
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		sup->children = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c);
}
