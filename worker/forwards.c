/*
 * Remote forwards: requested one at a time, retried with backoff while
 * refused (see forwards.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh/libssh.h>

#include "common/backoff.h"
#include "common/log.h"
#include "worker/forwards.h"
#include "worker/report.h"
#include "worker/send.h"
#include "worker/session.h"

void
forwards_init(struct forwards *fw, const struct msg_config *cfg)
{
	memset(fw, 0, sizeof(*fw));
	fw->n = cfg->n_forwards;
	for (uint32_t i = 0; i < fw->n; i++) {
		fw->f[i].spec = cfg->forwards[i];
		fw->f[i].state = FWD_WANTED;
		(void)backoff_init(&fw->f[i].bo, FWD_RETRY_MIN_MS,
		    FWD_RETRY_MAX_MS, FWD_RETRY_MAX_MS);
	}
}

static const char *
listen_host(const struct fwd *f)
{
	return f->spec.listen_host[0] != '\0' ? f->spec.listen_host : NULL;
}

/* The proxy said yes. */
static void
forward_bound(struct fwd *f, struct report *rep, int bound, uint64_t now)
{
	/* libssh reports the port only when we asked for port 0. */
	f->port = f->spec.listen_port != 0 ? f->spec.listen_port :
	    (uint32_t)bound;
	f->state = FWD_BOUND;
	f->answered = true;
	backoff_up(&f->bo, now);
	alog_info(report_agent(rep), "forward %u bound on %s:%u", f->spec.id,
	    f->spec.listen_host, f->port);
	send_forward(rep, f->spec.id, true, f->port, "");
}

/* The proxy said no: the connection stays, the forward is retried. */
static void
forward_refused(struct fwd *f, struct report *rep, const char *err,
    uint64_t now)
{
	char why[PROTO_REASON_MAX];
	uint64_t delay = backoff_next(&f->bo, now, arc4random());

	snprintf(why, sizeof(why), "refused by proxy: %s", err);
	f->state = FWD_WANTED;
	f->answered = true;
	f->next_ms = now + delay;
	alog_warnx(report_agent(rep), "forward %u on %s:%u %s; retry in %llu ms",
	    f->spec.id, f->spec.listen_host, f->spec.listen_port, why,
	    (unsigned long long)delay);
	send_forward(rep, f->spec.id, false, 0, why);
}

/* Sends or polls f's request; returns true once it was answered. */
static bool
request_poll(struct fwd *f, struct session *ss, struct report *rep,
    uint64_t now)
{
	int bound = 0, rc;

	rc = ssh_channel_listen_forward(ss->s, listen_host(f),
	    (int)f->spec.listen_port, &bound);
	if (rc == SSH_AGAIN)
		return false;
	ss->greq = GREQ_NONE;
	if (rc == SSH_OK)
		forward_bound(f, rep, bound, now);
	else if (session_alive(ss))
		forward_refused(f, rep, session_error(ss), now);
	else
		f->state = FWD_WANTED;	/* the caller sees the dead session */
	return true;
}

bool
forwards_step(struct forwards *fw, struct session *ss, struct report *rep,
    uint64_t now)
{
	for (uint32_t i = 0; i < fw->n; i++)
		if (fw->f[i].state == FWD_REQUESTING)
			return request_poll(&fw->f[i], ss, rep, now);
	if (ss->greq != GREQ_NONE)
		return false;
	for (uint32_t i = 0; i < fw->n; i++) {
		struct fwd *f = &fw->f[i];

		if (f->state != FWD_WANTED || f->next_ms > now)
			continue;
		ss->greq = GREQ_FORWARD;
		f->state = FWD_REQUESTING;
		return request_poll(f, ss, rep, now);
	}
	return false;
}

bool
forwards_all_answered(const struct forwards *fw)
{
	for (uint32_t i = 0; i < fw->n; i++)
		if (!fw->f[i].answered)
			return false;
	return true;
}

bool
forwards_all_bound(const struct forwards *fw)
{
	for (uint32_t i = 0; i < fw->n; i++)
		if (fw->f[i].state != FWD_BOUND)
			return false;
	return true;
}

/*
 * A forward being requested on a fixed port matches too.  sshd binds the
 * listener, answers REQUEST_SUCCESS and may at once send a forwarded-tcpip
 * open for the first client; one pump can process both before
 * forwards_step has seen the reply and marked the forward bound.  Refusing
 * that open ("administratively prohibited") reset a client that connected
 * as soon as the port listened (seen in CI, rel_valgrind).  sshd only
 * opens channels on listeners it bound for this session, so a fixed-port
 * request in flight can only be answered yes by the time such an open
 * arrives.  (A port-0 request has no port to match until its reply.)
 */
bool
forwards_match(const struct forwards *fw, uint32_t port, uint32_t *id)
{
	for (uint32_t i = 0; i < fw->n; i++) {
		const struct fwd *f = &fw->f[i];

		if ((f->state == FWD_BOUND && f->port == port) ||
		    (f->state == FWD_REQUESTING && f->spec.listen_port != 0 &&
		    f->spec.listen_port == port)) {
			*id = f->spec.id;
			return true;
		}
	}
	return false;
}

uint64_t
forwards_next_ms(const struct forwards *fw)
{
	uint64_t next = UINT64_MAX;

	for (uint32_t i = 0; i < fw->n; i++)
		if (fw->f[i].state == FWD_WANTED && fw->f[i].next_ms < next)
			next = fw->f[i].next_ms;
	return next;
}

/* Sends or polls the cancel of f; returns true once answered. */
static bool
cancel_poll(struct fwd *f, struct session *ss)
{
	if (ssh_channel_cancel_forward(ss->s, listen_host(f), (int)f->port) ==
	    SSH_AGAIN)
		return false;
	ss->greq = GREQ_NONE;
	f->state = FWD_DONE;
	return true;
}

bool
forwards_cancel_step(struct forwards *fw, struct session *ss)
{
	bool done = true;

	for (uint32_t i = 0; i < fw->n; i++) {
		struct fwd *f = &fw->f[i];
		int bound = 0;

		if (f->state == FWD_REQUESTING) {
			/* A request in flight must be answered before a cancel. */
			if (ssh_channel_listen_forward(ss->s, listen_host(f),
			    (int)f->spec.listen_port, &bound) == SSH_AGAIN)
				return false;
			ss->greq = GREQ_NONE;
			f->state = FWD_BOUND;	/* cancel it either way */
			f->port = f->spec.listen_port != 0 ?
			    f->spec.listen_port : (uint32_t)bound;
		}
		if (f->state == FWD_CANCELLING && !cancel_poll(f, ss))
			return false;
		if (f->state == FWD_WANTED)
			f->state = FWD_DONE;
		if (f->state == FWD_BOUND && ss->greq == GREQ_NONE) {
			ss->greq = GREQ_FORWARD;
			f->state = FWD_CANCELLING;
			if (!cancel_poll(f, ss))
				return false;
		}
		if (f->state != FWD_DONE)
			done = false;
	}
	return done;
}
