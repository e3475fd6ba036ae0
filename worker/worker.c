/*
 * tunnelpool-agent: the worker's life, from fds to exit.
 *
 *   sandbox -> READY -> CONFIG -> handshake -> host trust -> user-auth
 *   -> [CA mode: host certificate from the discovery stream] -> CLAIM
 *   -> forwards + channels + discovery + liveness -> CLOSE -> exit
 *
 * One poll(2) loop drives everything: the control socket, the proxy socket
 * (handed to libssh, which is only ever called from this loop) and the
 * local fds of forwarded channels.  libssh callbacks only record; the work
 * happens in the phase step after libssh returns (LIBSSH-NOTES trap 4).
 * Every way out goes through report_exit(), which tells the supervisor.
 * What goes to the supervisor is send.c's (send_<msg>); what comes from
 * it, the recv_<msg> handlers of the table below.  Test-hook builds add
 * one row and three seams (worker/testhook.h), production builds none.
 */
#include <sys/mman.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libssh/libssh.h>
#include <openssl/crypto.h>

#include "common/error.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "common/sshpub.h"
#include "common/tptime.h"
#include "proto/dispatch.h"
#include "proto/exitcode.h"
#include "proto/msg.h"
#include "proto/wire.h"
#include "proto/workerfd.h"
#include "worker/channels.h"
#include "worker/cryptoprov.h"
#include "worker/demote.h"
#include "worker/discovery.h"
#include "worker/forwards.h"
#include "worker/hostcert.h"
#include "worker/liveness.h"
#include "worker/report.h"
#include "worker/sandbox.h"
#include "worker/send.h"
#include "worker/session.h"
#include "worker/testhook.h"
#include "worker/worker.h"

/* Receiver states of the handler table (bit numbers, see proto/dispatch.h). */
enum phase {
	PH_AWAIT_CONFIG = 1,
	PH_HANDSHAKE,
	PH_BIND,		/* SESSION_BIND sent: waiting for BIND_RESULT */
	PH_AUTH,
	PH_CERT,		/* CA mode: waiting for the host certificate */
	PH_CLAIM,		/* waiting for CLAIM_RESULT */
	PH_RUNNING,
	PH_CLOSING,
};

#define CTL_BURST	64	/* control messages handled per loop turn */
#define POLL_MAX_MS	1000
#define PFD_FIXED	2	/* control socket, proxy socket */

struct worker {
	struct report		 rep;
	struct session		 ss;
	struct msg_config	 cfg;
	enum phase		 ph;
	bool			 ca_mode;
	uint64_t		 deadline;	/* of the current phase */
	struct forwards		 fw;
	struct liveness		 live;
	struct channels		*chs;
	struct discovery	*disc;
	uint64_t		 next_stats;
	struct proto_peer	 peer;
	struct pollfd		*pfd;
	size_t			 pfd_cap;
	char			 close_reason[PROTO_REASON_MAX];
	uint64_t		 idle_since;	/* last channel activity */
	uint64_t		 idle_bytes;	/* channel bytes seen then */
	bool			 trimmed;	/* since the last activity */
};

/*
 * An idle worker trims its memory once it has had no open channel and no
 * channel byte for this long (session_trim: libssh's empty buffers, then
 * malloc_trim).  Traffic or a new channel re-arms it.
 */
#define IDLE_TRIM_MS	2000

/* --- control messages ----------------------------------------------------- */

static uint32_t
up_state(const struct worker *w)
{
	return agent_up_state(w->cfg.role);
}

static int
config_valid(const struct msg_config *c, const char **why)
{
	*why = NULL;
	if (c->version != PROTO_VERSION)
		*why = "protocol version";
	else if (c->role != AGENT_ROLE_TUNNEL && c->role != AGENT_ROLE_DISCOVERY)
		*why = "role";
	else if (c->keepalive_ms < 100 || c->keepalive_count < 1)
		*why = "keepalive";
	else if (c->handshake_ms == 0 || c->max_channels == 0)
		*why = "handshake deadline or channel limit";
	else if (c->cluster[0] == '\0' || c->user[0] == '\0')
		*why = "cluster or user";
	return *why == NULL ? 0 : TP_EFIELD;
}

static int
recv_config(void *ctx, struct msg *m)
{
	struct worker *w = ctx;
	char why[PROTO_REASON_MAX];
	const char *bad;

	if (config_valid(&m->u.config, &bad) != 0) {
		alog_warnx(report_agent(&w->rep), "CONFIG rejected: %s", bad);
		return TP_EFIELD;
	}
	/*
	 * Field by field into the zeroed w->cfg (CONFIG comes once): only
	 * the pages this configuration fills become resident, not the
	 * whole 47 KiB struct (docs/worker.md, "Idle memory").
	 */
	(void)msg_payload_copy(MSG_CONFIG, &w->cfg, &m->u.config);
	report_init(&w->rep, w->rep.ctl, w->cfg.cluster, w->cfg.dial_addr);
	w->rep.configured = true;
	w->ca_mode = w->cfg.n_ca > 0;
	if (session_configure(&w->ss, &w->cfg, why, sizeof(why)) != 0)
		report_exit(&w->rep, WEXIT_HANDSHAKE, "handshake failed: %s",
		    why);
	report_state(&w->rep, w->cfg.role == AGENT_ROLE_DISCOVERY ?
	    AGENT_DISCOVERING : AGENT_CONNECTING, "handshake", 0);
	w->ph = PH_HANDSHAKE;
	w->deadline = tp_now_ms() + w->cfg.handshake_ms;
	return 0;
}

static int
recv_close(void *ctx, struct msg *m)
{
	struct worker *w = ctx;
	uint64_t deadline = tp_now_ms() + m->u.close.deadline_ms;

	testhook_close();
	snprintf(w->close_reason, sizeof(w->close_reason), "%s",
	    m->u.close.reason);
	if (w->ph != PH_RUNNING && w->ph != PH_CLOSING) {
		/* Nothing to drain yet. */
		if (w->ph > PH_AWAIT_CONFIG)
			session_disconnect(&w->ss);
		report_exit(&w->rep, WEXIT_CLOSED, "closed: %s",
		    w->close_reason);
	}
	if (w->ph == PH_CLOSING && deadline >= w->deadline)
		return 0;
	w->deadline = deadline;
	if (w->ph == PH_RUNNING) {
		w->ph = PH_CLOSING;
		channels_accept(w->chs, false);
		report_state(&w->rep, up_state(w), "closing", 0);
	}
	return 0;
}

static int
recv_dial_result(void *ctx, struct msg *m)
{
	struct worker *w = ctx;
	int fd = m->fd;

	m->fd = -1;
	return channels_dial_result(w->chs, &m->u.dial_result, fd);
}

static int
recv_ping(void *ctx, struct msg *m)
{
	struct worker *w = ctx;

	send_pong(&w->rep, m->u.ping.seq);
	return 0;
}

static void start_running(struct worker *);

static int
recv_claim_result(void *ctx, struct msg *m)
{
	struct worker *w = ctx;

	if (!m->u.claim_result.granted)
		report_exit(&w->rep, WEXIT_CLAIM_REFUSED, "claim refused: %s",
		    m->u.claim_result.reason);
	start_running(w);
	return 0;
}


#define ST(p)		(1u << (p))
#define ST_SSH		(ST(PH_HANDSHAKE) | ST(PH_BIND) | ST(PH_AUTH) | ST(PH_CERT) | \
			 ST(PH_CLAIM) | ST(PH_RUNNING) | ST(PH_CLOSING))
#define ST_ANY		(ST(PH_AWAIT_CONFIG) | ST_SSH)

static int recv_bind_result(void *ctx, struct msg *m);

static const struct proto_handler handlers[] = {
	{ MSG_CONFIG,		ST(PH_AWAIT_CONFIG), PH_ONCE, 0, recv_config },
	{ MSG_CLOSE,		ST_ANY, 0, 10, recv_close },
	{ MSG_DIAL_RESULT,	ST(PH_RUNNING) | ST(PH_CLOSING), 0, 0,
				recv_dial_result },
	{ MSG_PING,		ST_ANY, 0, 100, recv_ping },
	{ MSG_CLAIM_RESULT,	ST(PH_CLAIM), PH_ONCE, 0, recv_claim_result },
	{ MSG_BIND_RESULT,	ST(PH_BIND), PH_ONCE, 0, recv_bind_result },
	TESTHOOK_HANDLER(ST_ANY)
};

/*
 * Reads and dispatches what the supervisor sent; protocol errors end us.
 * The datagram buffer and the decoded message (~50 KiB, most of it a
 * CONFIG's tables) live on the heap only while a batch is handled: as
 * .bss or stack they stayed dirty for the worker's whole life.
 */
static void
control_read(struct worker *w)
{
	uint8_t *buf = malloc(PROTO_MAX_MSG);
	struct msg *scratch = malloc(sizeof(*scratch));
	const char *why;
	size_t len;
	int fd, rc;

	if (buf == NULL || scratch == NULL)
		report_exit(&w->rep, WEXIT_INTERNAL, "out of memory");
	for (int i = 0; i < CTL_BURST; i++) {
		rc = proto_recv(w->rep.ctl, buf, PROTO_MAX_MSG, &len, &fd);
		if (rc == TP_EAGAIN)
			break;
		if (rc == TP_ECLOSED)
			report_exit(&w->rep, WEXIT_SUPERVISOR_GONE,
			    "supervisor gone");
		if (rc != 0)
			report_exit(&w->rep, WEXIT_PROTOCOL,
			    "protocol error: %s", tp_strerror(rc));
		rc = proto_dispatch(handlers, sizeof(handlers) /
		    sizeof(handlers[0]), &w->peer, w->ph, MSG_TO_WORKER, buf,
		    len, fd, tp_now_ms(), scratch, w, &why);
		if (rc != 0)
			report_exit(&w->rep, WEXIT_PROTOCOL,
			    "protocol error: %s", why);
	}
	free(scratch);
	free(buf);
}

/* --- phases --------------------------------------------------------------- */

/*
 * Before user-auth: the supervisor's signer signs only for a session whose
 * host it has checked -- the host key of our key exchange and its
 * signature over the session id (docs/signer.md).
 */
static void
bind_session(struct worker *w)
{
	struct msg *m = malloc(sizeof(*m));

	if (m == NULL)
		report_exit(&w->rep, WEXIT_INTERNAL, "out of memory");
	msg_init(m, MSG_SESSION_BIND);
	if (session_bind_data(&w->ss, &m->u.session_bind) != 0)
		report_exit(&w->rep, WEXIT_HANDSHAKE, "handshake failed: no "
		    "session id or server signature to bind");
	testhook_bind(&m->u.session_bind);
	send_session_bind(&w->rep, m);
	free(m);
	w->ph = PH_BIND;
}

static int
recv_bind_result(void *ctx, struct msg *m)
{
	struct worker *w = ctx;

	if (!m->u.bind_result.ok)
		report_exit(&w->rep, WEXIT_HOSTKEY, "host key not trusted: %s "
		    "(session bind refused: %s)", w->ss.fp,
		    m->u.bind_result.reason);
	w->ph = PH_AUTH;
	return 0;
}

static void
handshake_step(struct worker *w, uint64_t now)
{
	int rc = session_connect_step(&w->ss);

	if (rc == TP_EAGAIN) {
		if (now >= w->deadline)
			report_exit(&w->rep, WEXIT_HANDSHAKE,
			    "handshake timed out");
		return;
	}
	if (rc != 0)
		report_exit(&w->rep, WEXIT_HANDSHAKE, "handshake failed: %s",
		    session_error(&w->ss));
	if (session_load_host_key(&w->ss) != 0)
		report_exit(&w->rep, WEXIT_HOSTKEY,
		    "host key not trusted: unreadable host key");
	/*
	 * Trust before anything else is sent, not even the auth request:
	 * a revoked key never; a pinned key at once; otherwise only through
	 * a host certificate checked after auth, if a CA applies at all.
	 */
	if (session_revoked(&w->ss, &w->cfg))
		report_exit(&w->rep, WEXIT_HOSTKEY, "host key not trusted: %s "
		    "(revoked)", w->ss.fp);
	w->ca_mode = !session_pinned(&w->ss, &w->cfg);
	if (w->ca_mode && w->cfg.n_ca == 0)
		report_exit(&w->rep, WEXIT_HOSTKEY, "host key not trusted: %s",
		    w->ss.fp);
	alog_info(report_agent(&w->rep), "key exchange done, host key %s %s%s",
	    w->ss.kex_type, w->ss.fp, w->ca_mode ? " (certificate pending)" :
	    " (pinned)");
	if (!w->ca_mode)
		report_set_proxy(&w->rep, w->ss.fp, "");
	bind_session(w);
}

/* Trusted: CLAIM the proxy, then wait for CLAIM_RESULT. */
static void
ask_claim(struct worker *w)
{
	const char *name = w->disc != NULL ? discovery_own_name(w->disc) : "";
	bool listed = w->cfg.n_wanted == 0;

	/*
	 * The wanted list is the supervisor's view when we were started; it
	 * may have changed since (a proxy announced, claimed, or dropped while
	 * we dialled).  The supervisor decides the claim against the set of
	 * now, so a proxy off the list is asked about, not dropped.
	 */
	for (uint32_t i = 0; i < w->cfg.n_wanted; i++)
		if (strcmp(w->cfg.wanted[i].fp, w->ss.fp) == 0)
			listed = true;
	if (!listed)
		alog_info(report_agent(&w->rep), "landed on %s, not on the "
		    "wanted list at start (%u): asking", w->ss.fp,
		    w->cfg.n_wanted);
	report_set_proxy(&w->rep, w->ss.fp, name);
	w->ph = PH_CLAIM;
	if (testhook_hold_claim())
		return;
	send_claim(&w->rep, w->ss.fp, name);
}

static void
auth_done(struct worker *w, uint64_t now)
{
	if (session_start_events(&w->ss) != 0 ||
	    (w->chs = channels_new(&w->ss, &w->rep, &w->fw,
	    w->cfg.max_channels)) == NULL)
		report_exit(&w->rep, WEXIT_INTERNAL, "out of memory");
	forwards_init(&w->fw, &w->cfg);
	ssh_set_message_callback(w->ss.s, channels_on_message, w->chs);
	liveness_init(&w->live, w->cfg.keepalive_ms, w->cfg.keepalive_count,
	    now, session_in_bytes(&w->ss));
	w->idle_since = now;	/* the first trim once set up and idle */
	w->next_stats = now + w->cfg.stats_ms;
	if (w->ca_mode || w->cfg.discovery) {
		w->disc = discovery_new(&w->ss, &w->rep, w->cfg.cluster,
		    w->ss.fp);
		if (w->disc == NULL)
			report_exit(&w->rep, WEXIT_INTERNAL, "out of memory");
	}
	alog_info(report_agent(&w->rep), "authenticated as %s", w->cfg.user);
	if (w->ca_mode) {
		w->ph = PH_CERT;
		w->deadline = now + w->cfg.handshake_ms;
	} else
		ask_claim(w);
}

static void
auth_step(struct worker *w, uint64_t now)
{
	int rc = session_auth_step(&w->ss, w->cfg.user);

	if (rc == TP_EAGAIN) {
		if (now >= w->deadline)
			report_exit(&w->rep, WEXIT_AUTH, "auth timed out");
		return;
	}
	if (rc == TP_ECLOSED)
		report_exit(&w->rep, WEXIT_PROXY_CLOSED, "proxy closed: %s",
		    session_error(&w->ss));
	if (rc != 0)
		report_exit(&w->rep, WEXIT_AUTH, "auth failed: %s",
		    session_error(&w->ss));
	auth_done(w, now);
}

/* CA mode: the host certificate must certify the KEX key (trap 10). */
static int
cert_verify(struct worker *w, char *why, size_t cap)
{
	const uint8_t *ca[PROTO_MAX_CA];
	size_t ca_len[PROTO_MAX_CA], len;
	const char *names[1], *patterns[PROTO_MAX_PRINCIPALS];
	struct hostcert_policy p;
	const uint8_t *cert = discovery_cert(w->disc, &len);

	for (uint32_t i = 0; i < w->cfg.n_ca; i++) {
		ca[i] = w->cfg.ca[i].blob;
		ca_len[i] = w->cfg.ca[i].len;
	}
	/*
	 * Principals come from configuration only: the dial host and the
	 * tunnel's proxy_principals.  Nothing the peer said before it was
	 * trusted (its announced name) may widen whom we trust.
	 */
	names[0] = w->cfg.dial_host;
	for (uint32_t i = 0; i < w->cfg.n_principals; i++)
		patterns[i] = w->cfg.principals[i].name;
	memset(&p, 0, sizeof(p));
	p.ca = ca;
	p.ca_len = ca_len;
	p.n_ca = w->cfg.n_ca;
	p.names = names;
	p.n_names = 1;
	p.patterns = patterns;
	p.n_patterns = w->cfg.n_principals;
	p.kex_key = w->ss.kex_key;
	p.kex_key_len = w->ss.kex_key_len;
	p.now = (uint64_t)time(NULL);
	return hostcert_verify(cert, len, &p, why, cap);
}

static void
cert_step(struct worker *w, uint64_t now)
{
	char why[HOSTCERT_WHY_LEN] = "";
	size_t len;
	int rc = discovery_open_step(w->disc);

	if (rc == 0)
		rc = discovery_poll(w->disc, false);
	if (rc != 0 && rc != TP_EAGAIN)
		report_exit(&w->rep, WEXIT_HOSTKEY, "host key not trusted: %s "
		    "(no certificate: %s)", w->ss.fp, discovery_error(w->disc));
	if (discovery_cert(w->disc, &len) == NULL) {
		if (now >= w->deadline)
			report_exit(&w->rep, WEXIT_HOSTKEY,
			    "host key not trusted: %s (no certificate)",
			    w->ss.fp);
		return;
	}
	if (cert_verify(w, why, sizeof(why)) != 0)
		report_exit(&w->rep, WEXIT_HOSTKEY,
		    "host key not trusted: %s (%s)", w->ss.fp, why);
	alog_info(report_agent(&w->rep), "host certificate verified for %s",
	    w->ss.fp);
	ask_claim(w);
}

static void
start_running(struct worker *w)
{
	w->ph = PH_RUNNING;
	channels_accept(w->chs, true);
	if (w->fw.n == 0)
		report_state(&w->rep, up_state(w), "no forwards", 0);
}

/* STATE connected/discovered, with "forward pending" until all bound. */
static void
report_up(struct worker *w)
{
	if (!forwards_all_answered(&w->fw))
		return;
	report_state(&w->rep, up_state(w), forwards_all_bound(&w->fw) ?
	    "forwards bound" : "forward pending", 0);
}

static void
discovery_step(struct worker *w)
{
	int rc;

	if (w->disc == NULL)
		return;
	rc = discovery_open_step(w->disc);
	if (rc == 0)
		rc = discovery_poll(w->disc, true);
	if (rc != 0 && rc != TP_EAGAIN)
		report_exit(&w->rep, WEXIT_DISCOVERY, "discovery failed: %s",
		    discovery_error(w->disc));
	/* A name learnt after the claim still belongs in our reports. */
	if (strcmp(discovery_own_name(w->disc), w->rep.name) != 0) {
		report_set_proxy(&w->rep, NULL, discovery_own_name(w->disc));
		w->rep.reason[0] = '\0';
		if (w->rep.state == up_state(w))
			report_up(w);
		else
			report_title(&w->rep);
	}
}

static void
running_step(struct worker *w, uint64_t now)
{
	if (forwards_step(&w->fw, &w->ss, &w->rep, now))
		report_up(w);
	discovery_step(w);
}

static void
closing_step(struct worker *w, uint64_t now)
{
	bool fw_done = forwards_cancel_step(&w->fw, &w->ss);

	if (now < w->deadline && (!fw_done || channels_open(w->chs) > 0 ||
	    session_write_pending(&w->ss)))
		return;
	if (channels_open(w->chs) > 0)
		alog_warnx(report_agent(&w->rep), "close deadline: %u channels "
		    "cut", channels_open(w->chs));
	channels_close_all(w->chs);
	session_disconnect(&w->ss);
	report_exit(&w->rep, WEXIT_CLOSED, "closed: %s", w->close_reason);
}

static void
stats_step(struct worker *w, uint64_t now)
{
	struct msg_stats st;

	if (w->cfg.stats_ms == 0 || now < w->next_stats || w->chs == NULL)
		return;
	w->next_stats = now + w->cfg.stats_ms;
	memset(&st, 0, sizeof(st));
	channels_stats(w->chs, &st);
	st.rx_age_ms = liveness_rx_age(&w->live, now);
	send_stats(&w->rep, &st);
}

/* --- the loop ------------------------------------------------------------- */

static size_t
build_pollfds(struct worker *w)
{
	size_t need = PFD_FIXED + (w->chs != NULL ?
	    channels_max_pollfds(w->chs) : 0), n = 1;

	if (need > w->pfd_cap) {
		struct pollfd *p = reallocarray(w->pfd, need + 64, sizeof(*p));

		if (p == NULL)
			report_exit(&w->rep, WEXIT_INTERNAL, "out of memory");
		w->pfd = p;
		w->pfd_cap = need + 64;
	}
	w->pfd[0] = (struct pollfd){ .fd = w->rep.ctl, .events = POLLIN };
	if (w->ph >= PH_HANDSHAKE)
		w->pfd[n++] = (struct pollfd){ .fd = w->ss.fd,
		    .events = session_poll_events(&w->ss) };
	if (w->chs != NULL)
		n += channels_pollfds(w->chs, w->pfd, n, w->pfd_cap);
	return n;
}

static int
poll_timeout(struct worker *w, uint64_t now)
{
	uint64_t next = now + POLL_MAX_MS;

	if (w->chs != NULL && channels_busy(w->chs))
		return 0;
	if (w->ph >= PH_HANDSHAKE && w->ph != PH_RUNNING && w->deadline < next)
		next = w->deadline;
	if (w->ph >= PH_CERT) {
		if (liveness_next_ms(&w->live) < next)
			next = liveness_next_ms(&w->live);
		if (w->cfg.stats_ms != 0 && w->next_stats < next)
			next = w->next_stats;
		if (forwards_next_ms(&w->fw) < next)
			next = forwards_next_ms(&w->fw);
		if (!w->trimmed && w->idle_since + IDLE_TRIM_MS < next)
			next = w->idle_since + IDLE_TRIM_MS;
	}
	return next <= now ? 0 : (int)(next - now);
}

/*
 * The stack pages below the idle loop's frames hold nothing live, but the
 * deepest call so far (the key exchange, host-key and certificate checks)
 * left them resident: ~24 KiB per worker, measured.  Drops them with the
 * one madvise advice the allowlist has, a page at a time from two pages
 * below this frame (room for the wrapper's frame, the red zone and a
 * signal arriving meanwhile: a handler's frame is dead once it returns)
 * down to the first page that is not mapped (ENOMEM): the end of the
 * stack's mapping, so nothing below it is ever touched.  A later deep
 * call faults zeroed pages in again.
 */
#define STACK_TRIM_MAX_PAGES	2048	/* 8 MiB, the default RLIMIT_STACK */

static void __attribute__((noinline))
stack_trim(void)
{
	uintptr_t pg = (uintptr_t)getpagesize();
	uintptr_t p = ((uintptr_t)__builtin_frame_address(0) & ~(pg - 1)) -
	    2 * pg;

	for (int i = 0; i < STACK_TRIM_MAX_PAGES && p >= pg; i++, p -= pg)
		if (madvise((void *)p, pg, MADV_DONTNEED) != 0)
			break;
}

/*
 * Trims memory once per idle period (IDLE_TRIM_MS without an open channel
 * or a channel byte).  Keepalives do not count as activity.
 */
static void
idle_step(struct worker *w, uint64_t now)
{
	struct msg_stats st;
	uint64_t bytes;

	if (w->chs == NULL)
		return;
	memset(&st, 0, sizeof(st));
	channels_stats(w->chs, &st);
	bytes = st.rx_bytes + st.tx_bytes;
	if (channels_open(w->chs) > 0 || bytes != w->idle_bytes) {
		w->idle_since = now;
		w->idle_bytes = bytes;
		w->trimmed = false;
		return;
	}
	if (w->trimmed || now - w->idle_since < IDLE_TRIM_MS)
		return;
	session_trim(&w->ss);
	stack_trim();
	w->trimmed = true;
	alog_debug(report_agent(&w->rep), "idle: memory trimmed, %zu KiB of "
	    "heap in use", mallinfo2().uordblks >> 10);
}

static void
ssh_work(struct worker *w, uint64_t now)
{
	/*
	 * libssh is pumped only when poll saw the proxy socket, with what poll
	 * saw: it has nothing to do otherwise (its queued output waits for the
	 * POLLOUT we ask for).
	 */
	if (w->ph >= PH_CERT && w->pfd[1].revents != 0) {
		if (session_pump(&w->ss, w->pfd[1].revents) != 0)
			report_exit(&w->rep, WEXIT_PROXY_CLOSED,
			    "proxy closed: %s", session_error(&w->ss));
		liveness_note(&w->live, now, session_in_bytes(&w->ss));
	}
	switch (w->ph) {
	case PH_HANDSHAKE:
		handshake_step(w, now);
		break;
	case PH_BIND:
		if (now >= w->deadline)
			report_exit(&w->rep, WEXIT_HANDSHAKE, "handshake timed "
			    "out (no answer to the session bind)");
		break;
	case PH_AUTH:
		auth_step(w, now);
		break;
	case PH_CERT:
		cert_step(w, now);
		break;
	case PH_RUNNING:
		running_step(w, now);
		break;
	case PH_CLOSING:
		closing_step(w, now);
		break;
	default:
		break;
	}
}

/* The part of a loop turn that needs the authenticated session. */
static void
session_work(struct worker *w, uint64_t now)
{
	if (w->ph < PH_CERT)
		return;
	if (w->chs != NULL)
		channels_pump(w->chs, w->pfd);
	liveness_note(&w->live, now, session_in_bytes(&w->ss));
	liveness_step(&w->live, &w->ss, now, w->ph != PH_CLOSING);
	if (!session_alive(&w->ss))
		report_exit(&w->rep, WEXIT_PROXY_CLOSED, "proxy closed: %s",
		    session_error(&w->ss));
	if (liveness_dead(&w->live, now))
		report_exit(&w->rep, WEXIT_PROXY_DEAD, "proxy dead");
	stats_step(w, now);
	idle_step(w, now);
}

static void __attribute__((noreturn))
worker_loop(struct worker *w)
{
	for (;;) {
		uint64_t now = tp_now_ms();
		size_t n = build_pollfds(w);

		if (poll(w->pfd, (nfds_t)n, poll_timeout(w, now)) < 0 &&
		    errno != EINTR)
			report_exit(&w->rep, WEXIT_INTERNAL, "poll: %s",
			    strerror(errno));
		if (w->pfd[0].revents != 0)
			control_read(w);
		now = tp_now_ms();
		if (w->ph >= PH_HANDSHAKE)
			ssh_work(w, now);
		session_work(w, now);
	}
}

/* --- start ---------------------------------------------------------------- */

/* fd must be an open socket of the given type. */
static int
check_fd(int fd, int type)
{
	int t = 0;
	socklen_t len = sizeof(t);

	if (fcntl(fd, F_GETFD) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &len) < 0)
		return -1;
	return t == type ? 0 : -1;
}

static void
log_setup(void)
{
	enum log_level level = LOG_LVL_INFO;
	enum log_format fmt = LOG_FMT_LOGFMT;
	const char *s;

	if ((s = getenv("TP_LOG_LEVEL")) != NULL)
		(void)log_parse_level(s, &level);
	/* Under the supervisor: lines it re-emits (supervisor/workerlog.c). */
	if ((s = getenv("TP_LOG_FORMAT")) != NULL && strcmp(s, "relay") == 0)
		fmt = LOG_FMT_RELAY;
	else if (s != NULL)
		(void)log_parse_format(s, &fmt);
	log_init("tunnelpool-agent", level, fmt, 2);
}

/*
 * The supervisor says whom to become, resolved from worker.user before the
 * fork: TUNNELPOOL_WORKER="uid:gid:allow_root:max_channels:empty_root".
 * Returns 1 if it was set and valid, 0 if absent, -1 if malformed (fatal:
 * a worker must never guess when the supervisor meant something else).
 */
static int
supervisor_identity(struct demote_opts *o, char *root, size_t cap)
{
	const char *s = getenv("TUNNELPOOL_WORKER");
	unsigned long uid, gid, allow, maxch;
	int n = 0;

	if (s == NULL)
		return 0;
	if (sscanf(s, "%lu:%lu:%lu:%lu:%n", &uid, &gid, &allow, &maxch, &n) != 4 ||
	    n == 0 || uid > 0xfffffffe || gid > 0xfffffffe || allow > 1 ||
	    maxch == 0 || maxch > 65535 || strlen(s + n) >= cap)
		return -1;
	o->uid = (uid_t)uid;
	o->gid = (gid_t)gid;
	o->allow_root = allow == 1;
	o->max_channels = (uint32_t)maxch;
	snprintf(root, cap, "%s", s + n);
	o->empty_dir = root[0] != '\0' ? root : NULL;
	return 1;
}

/* Without the supervisor (a worker driven by hand in tests). */
static void
resolve_ids(uid_t *uid, gid_t *gid)
{
	struct passwd *pw;

	*uid = getuid();
	*gid = getgid();
	if (geteuid() != 0)
		return;
	if ((pw = getpwnam("tunnelpool")) == NULL &&
	    (pw = getpwnam("nobody")) == NULL) {
		*uid = 65534;
		*gid = 65534;
		return;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
}

/* Last moment with every syscall: touch what probes the system once. */
static int
warmup(void *arg)
{
	static const uint8_t probe[] = "tunnelpool";
	char fp[SSHPUB_FP_LEN];

	(void)arg;
	/*
	 * OpenSSL reads openssl.cnf on first use: do it now, or the first
	 * KEX inside the sandbox gets EACCES and silently runs unconfigured.
	 */
	if (OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1)
		return TP_ECRYPTO;
	if (arc4random() == 0)
		(void)0;	/* only its first-use probing matters */
	(void)sshpub_fingerprint(probe, sizeof(probe), fp, sizeof(fp));
	(void)tp_wall_ms();
	return 0;
}

static void
enter_sandbox(struct worker *w)
{
	static char root[256];
	struct demote_opts o;
	struct demote_result res;
	int rc;

	memset(&o, 0, sizeof(o));
	if ((rc = supervisor_identity(&o, root, sizeof(root))) < 0) {
		alog_warnx(report_agent(&w->rep), "malformed TUNNELPOOL_WORKER");
		_exit(WEXIT_USAGE);
	}
	if (rc == 0) {
		resolve_ids(&o.uid, &o.gid);
		/* CONFIG (and its channel limit) comes after the sandbox. */
		o.max_channels = 65535;
	}
	o.control_fd = w->rep.ctl;
	/*
	 * jansson seeds its hash on the first object: from /dev/urandom
	 * now, before the chroot (warmup() runs inside it), not from time
	 * and pid in the sandbox, so a discovery stream cannot aim its keys
	 * at one bucket.
	 */
	json_object_seed(0);
	o.warmup = warmup;
	if (demote_all(&o, &res) != 0) {
		errno = res.sys_errno;
		alog_warnx(report_agent(&w->rep), "sandbox setup failed at %s: "
		    "%s%s%s", demote_step_name(res.failed), tp_strerror(res.err),
		    res.err == TP_ESYS ? ": " : "",
		    res.err == TP_ESYS ? strerror(res.sys_errno) : "");
		_exit(WEXIT_SANDBOX_SETUP);
	}
	if (res.fs_unconfined)
		alog_warnx(report_agent(&w->rep), "no Landlock in this kernel: "
		    "filesystem confined by seccomp only");
	if (res.fsize_kept)
		alog_info(report_agent(&w->rep), "log goes to a regular file: "
		    "RLIMIT_FSIZE left as is");
}

int
worker_main(int argc, char **argv)
{
	static struct worker w;
	int cmode;

	if (proctitle_init(argc, argv) != 0)
		_exit(WEXIT_INTERNAL);
	log_setup();
	if (argc != 3 || check_fd(WORKER_FD_CONTROL, SOCK_SEQPACKET) != 0 ||
	    check_fd(WORKER_FD_AGENT, SOCK_STREAM) != 0 ||
	    check_fd(WORKER_FD_PROXY, SOCK_STREAM) != 0) {
		log_errorx("usage: tunnelpool-agent CLUSTER DIALADDR, with fd 3 "
		    "control (seqpacket), 4 agent and 5 proxy (stream)");
		_exit(WEXIT_USAGE);
	}
	report_init(&w.rep, WORKER_FD_CONTROL, argv[1], argv[2]);
	report_title(&w.rep);
	/* A local peer that went away must be an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	/* glibc reads /etc/localtime on the first gmtime_r: not in the sandbox. */
	tzset();
	/*
	 * OpenSSL before libssh touches it: without its error strings (a
	 * 52 KiB hash table per worker, measured; libcrypto errors then
	 * print as codes) and its legacy name tables (cryptoprov.c), with
	 * its configuration.  Skipping the config (OPENSSL_INIT_NO_LOAD_CONFIG)
	 * saved nothing measurable once the heap is trimmed, and would
	 * silently drop a system crypto policy such as a FIPS provider: kept
	 * (docs/worker.md, "Memory").  Then only SSH's algorithms
	 * (cryptoprov.h); if OpenSSL refuses that, the worker runs as it
	 * would without it, only larger.
	 */
	if (OPENSSL_init_crypto(CRYPTOPROV_OPENSSL_INIT, NULL) != 1) {
		alog_warnx(report_agent(&w.rep), "OpenSSL initialisation failed");
		_exit(WEXIT_INTERNAL);
	}
	if ((cmode = cryptoprov_install()) < 0)
		alog_warnx(report_agent(&w.rep), "OpenSSL: could not limit the "
		    "algorithms to SSH's; using all of the default provider");
	if (session_prepare(&w.ss, WORKER_FD_PROXY, WORKER_FD_AGENT) != 0) {
		alog_warnx(report_agent(&w.rep), "libssh setup failed");
		_exit(WEXIT_INTERNAL);
	}
	testhook_init(&w.rep, w.ss.fp, &w.cfg);
	enter_sandbox(&w);
	w.ph = PH_AWAIT_CONFIG;
	send_ready(&w.rep, sandbox_name());
	alog_info(report_agent(&w.rep), "ready (sandbox %s, openssl %s)",
	    sandbox_name(), cryptoprov_name(cmode));
	worker_loop(&w);
}
