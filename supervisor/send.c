/*
 * Everything the supervisor sends a worker, one send_<msg> per message,
 * named for the worker's recv_<msg> (worker/worker.c) that handles it, so
 * that one grep finds both ends; and the mechanism under them, child_send
 * with its per-worker queue.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/addr.h"
#include "common/error.h"
#include "common/log.h"
#include "proto/wire.h"
#include "child.h"
#include "config.h"
#include "knownhosts.h"
#include "pool.h"
#include "send.h"
#include "sup.h"
#include "trust.h"
#include "tunnels.h"

/* --- the mechanism -------------------------------------------------------- */

/*
 * A unix datagram socket queues only net.unix.max_dgram_qlen (10) messages
 * towards a reader: a burst of DIAL_RESULTs (connects that complete in one
 * loop turn) would find it full while the worker is merely busy.  What
 * does not fit waits here, in order, until the socket is writable; a
 * worker that lets CHILD_OUTQ_MAX of them pile up is hung or hostile.
 */
#define CHILD_OUTQ_MAX	1024

struct outmsg {
	struct outmsg	*next;
	int		 fd;		/* our own duplicate, or -1 */
	size_t		 len;
	uint8_t		 buf[];
};

void
send_queue_free(struct child *c)
{
	struct outmsg *o;

	while ((o = c->outq) != NULL) {
		c->outq = o->next;
		if (o->fd >= 0)
			close(o->fd);
		free(o);
	}
	c->outq_tail = NULL;
	c->outq_n = 0;
	if (c->ctl_wev != NULL) {
		event_free(c->ctl_wev);
		c->ctl_wev = NULL;
	}
}

/*
 * The worker closed its end: it is exiting (a CLOSE it obeyed, a fatal
 * error).  What it was sent it can no longer act on, and that is no
 * protocol violation: drop the queue and let the read side drain the
 * worker's last messages to EOF; the reap gives the reason.
 */
static void
peer_gone(struct child *c, const char *what)
{
	alog_debug(&c->who, "not sent %s: the worker closed its socket", what);
	send_queue_free(c);
}

/* Sends what is queued; returns 0, or -1 after killing the child. */
static int
outq_flush(struct child *c)
{
	struct outmsg *o;
	int rc;

	while ((o = c->outq) != NULL) {
		rc = proto_send_bytes(c->ctl, o->buf, o->len, o->fd);
		if (rc == TP_EAGAIN) {
			if (event_add(c->ctl_wev, NULL) != 0)
				fatalx("event_add failed");
			return 0;
		}
		if (rc == TP_ECLOSED) {
			peer_gone(c, "the queued messages");
			return 0;
		}
		if (rc != 0) {
			child_kill(c, SR_PROTOCOL, "cannot send: %s",
			    tp_strerror(rc));
			return -1;
		}
		c->outq = o->next;
		if (c->outq == NULL)
			c->outq_tail = NULL;
		c->outq_n--;
		if (o->fd >= 0)
			close(o->fd);
		free(o);
	}
	return 0;
}

static void
on_ctl_writable(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)outq_flush(arg);
}

/* Queues m behind what is waiting already; returns 0 or a tp_err. */
static int
outq_push(struct child *c, const struct msg *m)
{
	static uint8_t buf[PROTO_MAX_MSG];
	struct outmsg *o;
	int n;

	if ((n = msg_encode(m, buf, sizeof(buf))) < 0)
		return n;
	if (c->outq_n >= CHILD_OUTQ_MAX)
		return TP_ETOOBIG;
	if (c->ctl_wev == NULL && (c->ctl_wev = event_new(c->sup->base, c->ctl,
	    EV_WRITE, on_ctl_writable, c)) == NULL)
		return TP_ENOMEM;
	if ((o = malloc(sizeof(*o) + (size_t)n)) == NULL)
		return TP_ENOMEM;
	o->next = NULL;
	o->len = (size_t)n;
	memcpy(o->buf, buf, (size_t)n);
	/* The caller closes its own copy of the fd when we return. */
	if ((o->fd = m->fd >= 0 ? dup(m->fd) : -1) < 0 && m->fd >= 0) {
		free(o);
		return TP_ESYS;
	}
	if (c->outq_tail != NULL)
		c->outq_tail->next = o;
	else
		c->outq = o;
	c->outq_tail = o;
	c->outq_n++;
	if (event_add(c->ctl_wev, NULL) != 0)
		fatalx("event_add failed");
	return 0;
}

int
child_send(struct child *c, struct msg *m)
{
	int rc = TP_EAGAIN;

	if (c->ctl < 0)
		return -1;
	if (c->outq == NULL)
		rc = proto_send(c->ctl, m);
	if (rc == TP_EAGAIN)
		rc = outq_push(c, m);
	if (rc == TP_ECLOSED) {
		peer_gone(c, msg_name(m->type));
		return 0;
	}
	if (rc != 0) {
		child_kill(c, SR_PROTOCOL, "cannot send %s: %s%s",
		    msg_name(m->type), tp_strerror(rc), rc == TP_ETOOBIG ?
		    " (the worker does not read its control socket)" : "");
		return -1;
	}
	return 0;
}


/* --- one sender per message ----------------------------------------------- */

static void
fill_forwards(struct msg_config *mc, const struct tunnel *t)
{
	mc->n_forwards = 0;
	for (size_t i = 0; t != NULL && i < t->n_forwards &&
	    i < PROTO_MAX_FORWARDS; i++) {
		struct msg_forward_spec *f = &mc->forwards[mc->n_forwards++];

		f->id = (uint32_t)i;
		snprintf(f->listen_host, sizeof(f->listen_host), "%s",
		    t->forwards[i].listen_host);
		f->listen_port = t->forwards[i].listen_port;
	}
}

/*
 * Trust anchors for the dial host, with known_hosts semantics: the pinned
 * keys (revoked ones already removed) and the @cert-authority keys.  A host
 * with neither cannot be trusted, so no worker is configured for it.
 */
static int
fill_trust(struct child *c, struct msg_config *mc)
{
	struct kh_result r;
	struct tp_addr a;

	if (trust_lookup(c->sup, c->dial_addr, &r, &a) != 0)
		return TP_ENOENT;
	snprintf(mc->dial_host, sizeof(mc->dial_host), "%s", a.host);
	/* A deny list is carried whole or not at all: never cut it. */
	if (r.n_revoked > PROTO_MAX_REVOKED) {
		child_kill(c, SR_SPAWN, "known_hosts has %zu @revoked keys for "
		    "%s, more than the %d a worker can be given: not trusting "
		    "it at all", r.n_revoked, a.host, PROTO_MAX_REVOKED);
		kh_result_free(&r);
		return TP_ETOOBIG;
	}
	for (size_t i = 0; i < r.n_pinned && mc->n_pinned < PROTO_MAX_PINNED; i++)
		snprintf(mc->pinned[mc->n_pinned++].fp, PROTO_FP_MAX, "%s",
		    r.pinned[i]);
	for (size_t i = 0; i < r.n_revoked; i++)
		snprintf(mc->revoked[mc->n_revoked++].fp, PROTO_FP_MAX, "%s",
		    r.revoked[i]);
	for (size_t i = 0; i < r.n_cas && mc->n_ca < PROTO_MAX_CA; i++) {
		if (r.cas[i].len == 0 || r.cas[i].len > PROTO_KEYBLOB_MAX)
			continue;
		memcpy(mc->ca[mc->n_ca].blob, r.cas[i].p, r.cas[i].len);
		mc->ca[mc->n_ca++].len = (uint32_t)r.cas[i].len;
	}
	kh_result_free(&r);
	return (mc->n_pinned + mc->n_ca) > 0 ? 0 : TP_ENOENT;
}

/* CA mode: the names a certificate may carry besides the dial host. */
static void
fill_principals(struct msg_config *mc, const struct tunnel *t)
{
	mc->n_principals = 0;
	for (size_t i = 0; t != NULL && i < t->n_proxy_principals &&
	    i < PROTO_MAX_PRINCIPALS; i++)
		snprintf(mc->principals[mc->n_principals++].name,
		    PROTO_NAME_MAX, "%s", t->proxy_principals[i]);
}

static void
fill_wanted(struct msg_config *mc, const struct pool_agent *ag)
{
	mc->n_wanted = 0;
	for (uint32_t i = 0; i < ag->n_wanted && i < PROTO_MAX_WANTED; i++)
		memcpy(mc->wanted[mc->n_wanted++].fp, ag->wanted[i],
		    PROTO_FP_MAX);
}

int
send_config(struct child *c)
{
	static struct msg *cfgmsg;	/* ~70 KiB: once, not on the stack */
	const struct config *cfg = c->sup->cfg;
	struct pool_agent *ag = c->agent;
	struct msg_config *mc;
	int rc;

	if (cfgmsg == NULL && (cfgmsg = malloc(sizeof(*cfgmsg))) == NULL)
		fatalx("out of memory");
	mc = &cfgmsg->u.config;
	msg_init(cfgmsg, MSG_CONFIG);
	mc->version = PROTO_VERSION;
	snprintf(mc->cluster, sizeof(mc->cluster), "%s", c->cluster);
	snprintf(mc->dial_addr, sizeof(mc->dial_addr), "%s", c->dial_addr);
	snprintf(mc->user, sizeof(mc->user), "%s", cfg->proxy_user);
	mc->role = ag->role;
	if ((rc = fill_trust(c, mc)) != 0) {
		if (rc != TP_ETOOBIG)
			child_kill(c, SR_SPAWN, "no trust anchor for %s",
			    c->dial_addr);
		return -1;
	}
	fill_forwards(mc, ag->key->tunnel);
	fill_principals(mc, ag->key->tunnel);
	fill_wanted(mc, ag);
	mc->discovery = ag->key->discovery;
	mc->keepalive_ms = (uint32_t)cfg->keepalive.interval_ms;
	mc->keepalive_count = cfg->keepalive.count;
	mc->handshake_ms = (uint32_t)cfg->timeouts.handshake_ms;
	mc->max_channels = cfg->worker.max_channels;
	mc->stats_ms = 2000;
	snprintf(mc->ciphers, sizeof(mc->ciphers), "%s", cfg->ssh.ciphers);
	snprintf(mc->kex, sizeof(mc->kex), "%s", cfg->ssh.kex);
	snprintf(mc->hostkeys, sizeof(mc->hostkeys), "%s", cfg->ssh.hostkeys);
	return child_send(c, cfgmsg);
}

/* --- handlers (names match the worker's senders) ------------------------------ */


int
send_close(struct child *c, uint32_t deadline_ms, const char *reason)
{
	struct msg m;

	msg_init(&m, MSG_CLOSE);
	m.u.close.deadline_ms = deadline_ms;
	snprintf(m.u.close.reason, sizeof(m.u.close.reason), "%s", reason);
	return child_send(c, &m);
}

void
send_dial_result(struct child *c, uint32_t channel_id, int fd,
    const char *error)
{
	struct msg m;

	msg_init(&m, MSG_DIAL_RESULT);
	m.u.dial_result.channel_id = channel_id;
	m.u.dial_result.ok = fd >= 0;
	m.fd = fd;
	snprintf(m.u.dial_result.error, sizeof(m.u.dial_result.error), "%s",
	    error != NULL ? error : "");
	child_send(c, &m);
}

void
send_ping(struct child *c, uint64_t seq)
{
	struct msg m;

	msg_init(&m, MSG_PING);
	m.u.ping.seq = seq;
	child_send(c, &m);
}

void
send_claim_result(struct child *c, bool granted, const char *reason)
{
	struct msg m;

	msg_init(&m, MSG_CLAIM_RESULT);
	m.u.claim_result.granted = granted;
	snprintf(m.u.claim_result.reason, sizeof(m.u.claim_result.reason), "%s",
	    reason);
	child_send(c, &m);
}

void
send_bind_result(struct child *c, bool ok, const char *reason)
{
	struct msg m;

	msg_init(&m, MSG_BIND_RESULT);
	m.u.bind_result.ok = ok;
	snprintf(m.u.bind_result.reason, sizeof(m.u.bind_result.reason), "%s",
	    reason);
	child_send(c, &m);
}

#ifdef TP_TEST_HOOKS
int
send_test_hook(struct child *c, uint32_t action)
{
	struct msg m;

	msg_init(&m, MSG_TEST_HOOK);
	m.u.test_hook.action = action;
	return child_send(c, &m);
}
#endif
