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
#include "signer.h"
#include "sup.h"
#include "supervisor.h"
#include "tunnels.h"

#define CHILD_DYING_GRACE_MS	2000	/* EOF or SIGTERM until SIGKILL */

/* Receiver states for the dispatch table (bits of proto_handler.states). */
#define S_READY		(1u << CH_WAIT_READY)
#define S_RUN		(1u << CH_RUNNING)
#define S_CLOSE		(1u << CH_CLOSING)

static struct msg *scratch;	/* one decoded message at a time (~50 KiB) */

static void arm_timer(struct child *c, uint64_t ms);

/* --- sending ---------------------------------------------------------------- */

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

static void
outq_free(struct child *c)
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
	if (rc != 0) {
		child_kill(c, SR_PROTOCOL, "cannot send %s: %s%s",
		    msg_name(m->type), tp_strerror(rc), rc == TP_ETOOBIG ?
		    " (the worker does not read its control socket)" : "");
		return -1;
	}
	return 0;
}

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
 * Whether known_hosts result r lets a worker trust host key fp: never a
 * revoked key; a pinned one, or any while a CA applies (the worker checks
 * the certificate itself before it claims).  *revoked says why not.
 */
static bool
kh_trusts(const struct kh_result *r, const char *fp, bool *revoked)
{
	bool pinned = r->n_cas > 0;

	*revoked = false;
	for (size_t j = 0; j < r->n_revoked && !*revoked; j++)
		*revoked = strcmp(r->revoked[j], fp) == 0;
	for (size_t j = 0; j < r->n_pinned && !pinned; j++)
		pinned = strcmp(r->pinned[j], fp) == 0;
	return pinned && !*revoked;
}

/* known_hosts for a dial address; returns 0, or -1 (r is then empty). */
static int
kh_lookup_dial(struct sup *sup, const char *dial, struct kh_result *r,
    struct tp_addr *a)
{
	memset(r, 0, sizeof(*r));
	if (tp_addr_parse(dial, 0, a) != 0 ||
	    knownhosts_lookup(sup->trust, a->host, a->port, r) != 0) {
		kh_result_free(r);
		return -1;
	}
	return 0;
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

	if (kh_lookup_dial(c->sup, c->dial_addr, &r, &a) != 0)
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

/*
 * pool_ops.trust: an announced host key counts only if a worker could ever
 * trust it for this dial address, so a list cannot make the pool hunt for
 * proxies it would refuse.  Lookup failures trust nothing.
 */
void
child_trust(void *arg, const struct pool_key *k, const struct msg_discovery *d,
    bool *ok)
{
	struct kh_result r;
	struct tp_addr a;
	bool revoked;

	if (kh_lookup_dial(arg, k->dial_addr, &r, &a) != 0) {
		memset(ok, 0, d->n_proxies * sizeof(*ok));
		return;
	}
	for (uint32_t i = 0; i < d->n_proxies; i++)
		ok[i] = kh_trusts(&r, d->proxies[i].fp, &revoked);
	kh_result_free(&r);
}

static void
fill_wanted(struct msg_config *mc, const struct pool_agent *ag)
{
	mc->n_wanted = 0;
	for (uint32_t i = 0; i < ag->n_wanted && i < PROTO_MAX_WANTED; i++)
		memcpy(mc->wanted[mc->n_wanted++].fp, ag->wanted[i],
		    PROTO_FP_MAX);
}

static int
send_config(struct child *c)
{
	const struct config *cfg = c->sup->cfg;
	struct pool_agent *ag = c->agent;
	struct msg_config *mc = &scratch->u.config;
	int rc;

	msg_init(scratch, MSG_CONFIG);
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
	return child_send(c, scratch);
}

/* --- handlers (names match the worker's senders) ------------------------------ */

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

/* Whether host key fp may be this child's proxy (kh_trusts); why if not. */
static bool
host_key_trusted(struct child *c, const char *fp, char *why, size_t cap)
{
	struct kh_result r;
	struct tp_addr a;
	bool trusted, revoked;

	if (kh_lookup_dial(c->sup, c->dial_addr, &r, &a) != 0) {
		snprintf(why, cap, "no trust anchor for %.200s", c->dial_addr);
		return false;
	}
	trusted = kh_trusts(&r, fp, &revoked);
	kh_result_free(&r);
	if (!trusted)
		snprintf(why, cap, "host key %.64s is %s for %.120s", fp,
		    revoked ? "revoked" : "not trusted", a.host);
	return trusted;
}

static void
send_bind_result(struct child *c, bool ok, const char *reason)
{
	struct msg m;

	msg_init(&m, MSG_BIND_RESULT);
	m.u.bind_result.ok = ok;
	snprintf(m.u.bind_result.reason, sizeof(m.u.bind_result.reason), "%s",
	    reason);
	child_send(c, &m);
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
	if (!host_key_trusted(c, fp, why, sizeof(why))) {
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

/* Stops reading and writing the control socket and closes it. */
static void
close_ctl(struct child *c)
{
	outq_free(c);
	if (c->ctl_ev != NULL) {
		event_free(c->ctl_ev);
		c->ctl_ev = NULL;
	}
	if (c->ctl >= 0) {
		close(c->ctl);
		c->ctl = -1;
	}
}

static void
on_eof(struct child *c)
{
	/* The process is exiting: the reap gives the reason.  Do not wait long. */
	close_ctl(c);
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
send_ping(struct child *c)
{
	struct msg m;

	msg_init(&m, MSG_PING);
	m.u.ping.seq = ++c->ping_seq;
	c->ping_outstanding = true;
	child_send(c, &m);
}

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
		send_ping(c);
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

static void
stop_io(struct child *c)
{
	close_ctl(c);
	signer_conn_free(c->signer);
	c->signer = NULL;
	dialer_cancel_all(c);
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
	stop_io(c);
	c->state = CH_DYING;
	if (c->pid > 0)
		kill(c->pid, SIGKILL);
	arm_timer(c, CHILD_DYING_GRACE_MS);
}

void
child_close(void *arg, struct pool_agent *agent, const char *reason)
{
	struct child *c = agent->owner;
	struct msg m;

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
	msg_init(&m, MSG_CLOSE);
	m.u.close.deadline_ms = (uint32_t)c->sup->cfg->timeouts.close_grace_ms;
	snprintf(m.u.close.reason, sizeof(m.u.close.reason), "%s", reason);
	if (c->state == CH_WAIT_READY) {
		kill(c->pid, SIGTERM);
		c->state = CH_DYING;
		arm_timer(c, CHILD_DYING_GRACE_MS);
		return;
	}
	if (child_send(c, &m) != 0)
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
	struct msg m;

	(void)arg;
	if (c == NULL || (c->state != CH_RUNNING && c->state != CH_CLOSING))
		return;
	if (!granted)
		alog_info(&c->who, "claim of %s refused: %s", c->proxy, reason);
	msg_init(&m, MSG_CLAIM_RESULT);
	m.u.claim_result.granted = granted;
	snprintf(m.u.claim_result.reason, sizeof(m.u.claim_result.reason), "%s",
	    reason);
	child_send(c, &m);
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

	/* The worker's last lines come before the line about its end. */
	workerlog_close(&c->log);
	stop_io(c);
	if (c->dns_req != NULL)
		evdns_getaddrinfo_cancel(c->dns_req);
	if (c->conn_ev != NULL)
		event_free(c->conn_ev);
	if (c->sock >= 0)
		close(c->sock);
	if (c->timer != NULL)
		event_free(c->timer);
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
