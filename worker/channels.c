/*
 * Forwarded channels and the byte pump (see channels.h).
 *
 * Per channel, two bounded buffers: rbuf (proxy -> local fd) and tbuf
 * (local fd -> proxy).  The data callback copies into rbuf what fits and
 * leaves the rest in libssh (which then holds at most one window); once
 * rbuf drains, ssh_channel_read_nonblocking fetches the rest, because
 * libssh will not call the callback again for it (trap 3).  While such a
 * backlog exists the callback takes nothing, so bytes stay in order.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>

#include "common/error.h"
#include "common/log.h"
#include "common/tptime.h"
#include "worker/channels.h"
#include "worker/forwards.h"
#include "worker/report.h"
#include "worker/session.h"

enum chan_state {
	CH_NEW = 1,		/* accepted; DIAL_REQUEST not sent yet */
	CH_DIALING,		/* waiting for DIAL_RESULT */
	CH_OPEN,		/* pumping */
	CH_CLOSING,		/* both ways done, CLOSE sent: awaiting the proxy's */
	CH_DEAD,		/* to be freed by the sweep */
};

/* How long a finished channel waits for the proxy's CLOSE. */
#define CHAN_LINGER_MS	5000

struct chan {
	TAILQ_ENTRY(chan)	 entry;
	uint32_t		 id;
	uint32_t		 fwd_id;
	enum chan_state		 st;
	ssh_channel		 ch;
	int			 fd;
	int			 pfd;		/* pollfd index or -1 */
	struct ssh_channel_callbacks_struct cb;
	struct channels		*chs;
	uint8_t			*rbuf;		/* proxy -> local */
	uint32_t		 roff, rlen;
	uint8_t			*tbuf;		/* local -> proxy */
	uint32_t		 toff, tlen;
	bool			 backlog;	/* libssh holds bytes for rbuf */
	bool			 remote_eof;
	bool			 remote_closed;
	bool			 shut_wr;	/* local fd half-closed */
	bool			 local_eof;
	bool			 eof_sent;
	bool			 close_sent;
	uint64_t		 linger_until;	/* CH_CLOSING */
	char			 orig_host[PROTO_NAME_MAX];
	uint32_t		 orig_port;
	const char		*why;		/* why it died, for the log */
};

TAILQ_HEAD(chan_list, chan);

struct channels {
	struct chan_list	 list;
	struct session		*ss;
	struct report		*rep;
	const struct forwards	*fw;
	uint32_t		 max;
	uint32_t		 n_open;
	uint32_t		 next_id;
	bool			 accepting;
	bool			 dirty;		/* new or dead channels */
	uint64_t		 budget;	/* queued into libssh */
	uint64_t		 rx, tx, total, dial_fail, refused;
};

static void
chan_kill(struct chan *c, const char *why)
{
	if (c->st == CH_DEAD)
		return;
	c->st = CH_DEAD;
	c->why = why;
	c->chs->dirty = true;
}

/* --- libssh callbacks: record only (trap 4) ------------------------------ */

static int
cb_data(ssh_session s, ssh_channel ch, void *data, uint32_t len,
    int is_stderr, void *arg)
{
	struct chan *c = arg;
	uint32_t room, n;

	if (is_stderr)
		return (int)len;	/* forwarded-tcpip has none; drop it */
	if (c->backlog || c->st == CH_DEAD)
		return 0;
	if (c->rlen == 0)
		c->roff = 0;
	room = CHAN_BUF - c->roff - c->rlen;
	n = len < room ? len : room;
	memcpy(c->rbuf + c->roff + c->rlen, data, n);
	c->rlen += n;
	c->chs->rx += n;
	if (n < len)
		c->backlog = true;
	return (int)n;
}

static void
cb_eof(ssh_session s, ssh_channel ch, void *arg)
{
	((struct chan *)arg)->remote_eof = true;
}

static void
cb_close(ssh_session s, ssh_channel ch, void *arg)
{
	struct chan *c = arg;

	/* Never free here (trap 2): the sweep does, after libssh returns. */
	c->remote_closed = true;
	c->remote_eof = true;
}

/* --- accepting ------------------------------------------------------------ */

struct channels *
channels_new(struct session *ss, struct report *rep,
    const struct forwards *fw, uint32_t max)
{
	struct channels *chs = calloc(1, sizeof(*chs));

	if (chs == NULL)
		return NULL;
	TAILQ_INIT(&chs->list);
	chs->ss = ss;
	chs->rep = rep;
	chs->fw = fw;
	chs->max = max;
	chs->next_id = 1;
	return chs;
}

void
channels_accept(struct channels *chs, bool on)
{
	chs->accepting = on;
}

static struct chan *
chan_new(struct channels *chs, uint32_t fwd_id, ssh_message m)
{
	struct chan *c = calloc(1, sizeof(*c));

	if (c == NULL || (c->rbuf = malloc(CHAN_BUF)) == NULL) {
		free(c);
		return NULL;
	}
	c->chs = chs;
	c->fd = -1;
	c->pfd = -1;
	c->fwd_id = fwd_id;
	c->st = CH_NEW;
	snprintf(c->orig_host, sizeof(c->orig_host), "%s",
	    ssh_message_channel_request_open_originator(m));
	c->orig_port = (uint32_t)ssh_message_channel_request_open_originator_port(m)
	    & 0xffff;
	c->cb.userdata = c;
	c->cb.channel_data_function = cb_data;
	c->cb.channel_eof_function = cb_eof;
	c->cb.channel_close_function = cb_close;
	ssh_callbacks_init(&c->cb);
	return c;
}

/* Decides on one forwarded-tcpip open; 0 = accepted, 1 = refuse. */
static int
chan_open(struct channels *chs, ssh_message m)
{
	uint32_t fwd_id;
	struct chan *c;

	if (!chs->accepting || chs->n_open >= chs->max ||
	    !forwards_match(chs->fw,
	    (uint32_t)ssh_message_channel_request_open_destination_port(m),
	    &fwd_id) || (c = chan_new(chs, fwd_id, m)) == NULL) {
		chs->refused++;
		return 1;
	}
	/*
	 * Accepting here, inside the callback, is the one exception to
	 * "callbacks only record": libssh frees the message when we return,
	 * and accepting at once is what keeps sshd's listen backlog short
	 * (trap 12).  It only queues one packet; no callback can run in it.
	 */
	if ((c->ch = ssh_message_channel_request_open_reply_accept(m)) == NULL) {
		free(c->rbuf);
		free(c);
		chs->refused++;
		return 0;
	}
	ssh_set_channel_callbacks(c->ch, &c->cb);
	c->id = chs->next_id++;
	TAILQ_INSERT_TAIL(&chs->list, c, entry);
	chs->n_open++;
	chs->total++;
	chs->dirty = true;
	return 0;
}

int
channels_on_message(ssh_session s, ssh_message m, void *arg)
{
	if (ssh_message_type(m) == SSH_REQUEST_CHANNEL_OPEN &&
	    ssh_message_subtype(m) == SSH_CHANNEL_FORWARDED_TCPIP)
		return chan_open(arg, m);
	return 1;
}

/* --- dialing -------------------------------------------------------------- */

static void
send_dial_request(struct channels *chs, struct chan *c)
{
	struct msg m;

	msg_init(&m, MSG_DIAL_REQUEST);
	m.u.dial_request.forward_id = c->fwd_id;
	m.u.dial_request.channel_id = c->id;
	snprintf(m.u.dial_request.orig_host, sizeof(m.u.dial_request.orig_host),
	    "%s", c->orig_host);
	m.u.dial_request.orig_port = c->orig_port;
	report_send(chs->rep, &m);
	c->st = CH_DIALING;
}

int
channels_dial_result(struct channels *chs, const struct msg_dial_result *r,
    int fd)
{
	struct chan *c;

	if (r->channel_id == 0 || r->channel_id >= chs->next_id) {
		if (fd >= 0)
			close(fd);
		return TP_EPROTO;
	}
	TAILQ_FOREACH(c, &chs->list, entry)
		if (c->id == r->channel_id)
			break;
	if (c == NULL || c->st != CH_DIALING) {
		/* The channel ended while the supervisor dialed: not an error. */
		if (fd >= 0)
			close(fd);
		return 0;
	}
	if (!r->ok || fd < 0 || (c->tbuf = malloc(CHAN_BUF)) == NULL) {
		chs->dial_fail++;
		alog_debug(report_agent(chs->rep), "channel %u: dial failed: %s",
		    c->id, r->error);
		if (fd >= 0)
			close(fd);
		chan_kill(c, "dial failed");
		return 0;
	}
	(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c->fd = fd;
	c->st = CH_OPEN;
	alog_debug(report_agent(chs->rep), "channel %u (%s:%u) open", c->id,
	    c->orig_host, c->orig_port);
	return 0;
}

/* --- pumping -------------------------------------------------------------- */

/* Fetches what libssh kept back once rbuf is empty (trap 3). */
static void
chan_drain(struct chan *c)
{
	uint32_t room;
	int n;

	c->roff = 0;
	room = CHAN_BUF - c->rlen;
	n = ssh_channel_read_nonblocking(c->ch, c->rbuf + c->rlen, room, 0);
	if (n == SSH_ERROR) {
		c->backlog = false;
		chan_kill(c, "read error");
		return;
	}
	if (n == SSH_EOF || n < (int)room)
		c->backlog = false;
	if (n > 0) {
		c->rlen += (uint32_t)n;
		c->chs->rx += (uint64_t)n;
	}
}

/* Moves rbuf to the local fd; half-closes it after the remote EOF. */
static void
chan_to_local(struct chan *c)
{
	for (int round = 0; round < 4 && c->st == CH_OPEN; round++) {
		while (c->rlen > 0) {
			ssize_t n = write(c->fd, c->rbuf + c->roff, c->rlen);

			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			if (n <= 0) {
				chan_kill(c, "local write failed");
				return;
			}
			c->roff += (uint32_t)n;
			c->rlen -= (uint32_t)n;
		}
		c->roff = 0;
		if (!c->backlog)
			break;
		chan_drain(c);
	}
	if (c->st == CH_OPEN && c->rlen == 0 && !c->backlog && c->remote_eof &&
	    !c->shut_wr) {
		(void)shutdown(c->fd, SHUT_WR);
		c->shut_wr = true;
	}
}

static void
chan_read_local(struct chan *c)
{
	uint32_t room;
	ssize_t n;

	if (c->tlen == 0)
		c->toff = 0;
	room = CHAN_BUF - c->toff - c->tlen;
	if (room == 0 || c->local_eof)
		return;
	n = read(c->fd, c->tbuf + c->toff + c->tlen, room);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0) {
		chan_kill(c, "local read failed");
		return;
	}
	if (n == 0)
		c->local_eof = true;
	c->tlen += (uint32_t)n;
}

/* Moves tbuf into libssh within the remote window and the budget. */
static void
chan_to_proxy(struct chan *c)
{
	struct channels *chs = c->chs;

	while (c->tlen > 0 && !c->remote_closed &&
	    chs->budget < CHAN_WRITE_BUDGET) {
		uint32_t win = ssh_channel_window_size(c->ch), len;
		int n;

		if (win == 0)
			return;
		len = c->tlen < win ? c->tlen : win;
		/* 0 during a rekey, short when the window ends (trap 5). */
		if ((n = ssh_channel_write(c->ch, c->tbuf + c->toff, len)) < 0) {
			chan_kill(c, "channel write failed");
			return;
		}
		if (n == 0)
			return;
		c->toff += (uint32_t)n;
		c->tlen -= (uint32_t)n;
		chs->budget += (uint64_t)n;
		chs->tx += (uint64_t)n;
		if (c->tlen == 0)
			c->toff = 0;
	}
	if (c->tlen == 0 && c->local_eof && !c->eof_sent && !c->remote_closed) {
		(void)ssh_channel_send_eof(c->ch);
		c->eof_sent = true;
	}
}

/*
 * Both directions ended: CLOSE now, free once the proxy's CLOSE came.
 * OpenSSH sends it only after writing out what it still buffers for its
 * own client (it drains a channel's output before closing it), and an SSH
 * disconnect before that throws those bytes away: the graceful close of
 * an agent waits until every channel is past here (channels_open).
 */
static void
chan_finish(struct chan *c)
{
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	(void)ssh_channel_close(c->ch);
	c->close_sent = true;
	c->st = CH_CLOSING;
	c->linger_until = tp_now_ms() + CHAN_LINGER_MS;
}

/* Done when both directions ended, or the proxy closed and rbuf drained. */
static void
chan_check_done(struct chan *c)
{
	if (c->st == CH_CLOSING && (c->remote_closed ||
	    tp_now_ms() >= c->linger_until))
		chan_kill(c, c->remote_closed ? "closed" :
		    "closed (no CLOSE from the proxy)");
	if (c->st != CH_OPEN)
		return;
	if (c->eof_sent && c->shut_wr)
		chan_finish(c);
	else if (c->remote_closed && c->rlen == 0 && !c->backlog)
		chan_kill(c, "closed by proxy");
	else if (c->remote_closed && c->shut_wr)
		chan_kill(c, "closed by proxy");
}

static void
chan_pump(struct chan *c, const struct pollfd *pfd)
{
	short rev = c->pfd >= 0 ? pfd[c->pfd].revents : 0;

	c->pfd = -1;
	if (c->st == CH_DIALING && c->remote_closed)
		chan_kill(c, "closed by proxy while dialing");
	if (c->st == CH_CLOSING)
		chan_check_done(c);
	if (c->st != CH_OPEN)
		return;
	chan_to_local(c);
	if (c->st == CH_OPEN && (rev & (POLLIN | POLLHUP | POLLERR)) &&
	    !c->remote_closed)
		chan_read_local(c);
	if (c->st == CH_OPEN)
		chan_to_proxy(c);
	chan_check_done(c);
}

/* Frees a finished channel, outside any callback (trap 2). */
static void
chan_free(struct channels *chs, struct chan *c)
{
	TAILQ_REMOVE(&chs->list, c, entry);
	alog_debug(report_agent(chs->rep), "channel %u (%s:%u) %s", c->id,
	    c->orig_host, c->orig_port, c->why != NULL ? c->why : "freed");
	/* Callbacks first: a late CLOSE would reach freed memory. */
	ssh_remove_channel_callbacks(c->ch, &c->cb);
	if (session_alive(chs->ss) && !c->close_sent)
		(void)ssh_channel_close(c->ch);
	ssh_channel_free(c->ch);
	if (c->fd >= 0)
		close(c->fd);
	free(c->rbuf);
	free(c->tbuf);
	free(c);
	chs->n_open--;
}

static void
sweep(struct channels *chs)
{
	struct chan *c, *next;

	for (c = TAILQ_FIRST(&chs->list); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		if (c->st == CH_NEW)
			send_dial_request(chs, c);
		else if (c->st == CH_DEAD)
			chan_free(chs, c);
	}
}

void
channels_pump(struct channels *chs, const struct pollfd *pfd)
{
	struct chan *c;

	if (!session_write_pending(chs->ss))
		chs->budget = 0;
	TAILQ_FOREACH(c, &chs->list, entry)
		chan_pump(c, pfd);
	/* Callbacks above may have added or ended channels. */
	while (chs->dirty) {
		chs->dirty = false;
		sweep(chs);
	}
}

size_t
channels_pollfds(struct channels *chs, struct pollfd *p, size_t base,
    size_t cap)
{
	struct chan *c;
	size_t n = 0;

	TAILQ_FOREACH(c, &chs->list, entry) {
		short ev = 0;

		c->pfd = -1;
		if (c->st != CH_OPEN || base + n >= cap)
			continue;
		if (c->rlen > 0)
			ev |= POLLOUT;
		if (!c->local_eof && !c->remote_closed &&
		    c->toff + c->tlen < CHAN_BUF)
			ev |= POLLIN;
		if (ev == 0)
			continue;
		p[base + n].fd = c->fd;
		p[base + n].events = ev;
		p[base + n].revents = 0;
		c->pfd = (int)(base + n);
		n++;
	}
	return n;
}

bool
channels_busy(const struct channels *chs)
{
	const struct chan *c;

	if (chs->dirty)
		return true;
	TAILQ_FOREACH(c, &chs->list, entry)
		if (c->st == CH_OPEN && c->backlog && c->rlen == 0)
			return true;
	return false;
}

uint32_t
channels_open(const struct channels *chs)
{
	return chs->n_open;
}

size_t
channels_max_pollfds(const struct channels *chs)
{
	return chs->n_open;
}

void
channels_stats(const struct channels *chs, struct msg_stats *st)
{
	st->rx_bytes = chs->rx;
	st->tx_bytes = chs->tx;
	st->channels_open = chs->n_open;
	st->channels_total = chs->total;
	st->dial_failures = chs->dial_fail;
	st->channels_refused = chs->refused;
}

void
channels_close_all(struct channels *chs)
{
	struct chan *c, *next;

	for (c = TAILQ_FIRST(&chs->list); c != NULL; c = next) {
		next = TAILQ_NEXT(c, entry);
		chan_kill(c, "closed at deadline");
		chan_free(chs, c);
	}
	chs->dirty = false;
}
