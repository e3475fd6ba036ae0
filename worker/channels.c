/*
 * Forwarded channels and the byte pump (see channels.h).
 *
 * Proxy -> local: the patched libssh calls cb_data with the payload where
 * it lies in the decrypted packet, and cb_data writes it to the local fd
 * (non-blocking) at once: no copy in user space.  What the fd does not
 * take stays in libssh's channel buffer; the callback is not offered those
 * bytes again until a packet arrives (trap 3), so once the fd is writable
 * the pump calls ssh_channel_deliver(), which offers them again and tops
 * the window up.  libssh grants window only while window + buffered is
 * under the channel's maximum, and the maximum comes from a shared budget
 * (pool_step), which is what bounds the worker's memory.
 *
 * Local -> proxy: read(2) into tbuf, ssh_channel_write() within the
 * remote window and the write budget of trap 1 (libssh packs it: the one
 * copy; the patch encrypts straight into the socket buffer).
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

#include "common/error.h"
#include "common/log.h"
#include "common/tptime.h"
#include "worker/channels.h"
#include "worker/forwards.h"
#include "worker/report.h"
#include "worker/send.h"
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
	uint32_t		 rx_max;	/* window maximum set in libssh */
	uint8_t			*tbuf;		/* local -> proxy */
	uint32_t		 toff, tlen;
	bool			 rx_blocked;	/* local fd full: wait for POLLOUT */
	bool			 deliver;	/* offer libssh's buffer again */
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

/*
 * Writes the payload to the local fd where libssh holds it.  A write(2) to
 * our own fd is the one thing a callback does beyond recording: it calls
 * nothing in libssh (trap 4 is about libssh re-entrancy), and it is what
 * saves the copy.  Returns the bytes taken; libssh keeps the rest.
 */
static int
cb_data(ssh_session s, ssh_channel ch, void *data, uint32_t len,
    int is_stderr, void *arg)
{
	struct chan *c = arg;
	ssize_t n;

	if (is_stderr)
		return (int)len;	/* forwarded-tcpip has none; drop it */
	if (c->st != CH_OPEN || c->rx_blocked || len == 0)
		return 0;
	n = write(c->fd, data, len);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		n = 0;
	else if (n < 0) {
		/* The channel is ending: what it was sent goes nowhere. */
		chan_kill(c, "local write failed");
		return (int)len;
	}
	if ((uint32_t)n < len)
		c->rx_blocked = true;
	c->chs->rx += (uint64_t)n;
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

	if (c == NULL)
		return NULL;
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
		free(c);
		chs->refused++;
		return 0;
	}
	/* Until the supervisor dialed: little more than the first window. */
	c->rx_max = CHAN_WINDOW_MIN;
	(void)ssh_channel_set_window_max(c->ch, c->rx_max);
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

/* Asks the supervisor to dial the channel's target (DIAL_REQUEST). */
static void
chan_dial(struct channels *chs, struct chan *c)
{
	send_dial_request(chs->rep, c->fwd_id, c->id, c->orig_host,
	    c->orig_port);
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
	/* What arrived while dialing waits in libssh: hand it over. */
	c->deliver = true;
	alog_debug(report_agent(chs->rep), "channel %u (%s:%u) open", c->id,
	    c->orig_host, c->orig_port);
	return 0;
}

/* --- pumping -------------------------------------------------------------- */

/* Bytes libssh holds for this channel: not yet taken by cb_data. */
static uint32_t
chan_buffered(const struct chan *c)
{
	uint32_t buffered;

	(void)ssh_channel_get_rx_held(c->ch, &buffered);
	return buffered;
}

/*
 * Proxy -> local: once the fd is writable again (or just attached), offer
 * what libssh kept (trap 3); libssh tops the window up as it drains.
 * Half-closes the fd after the remote EOF once nothing is left.
 */
static void
chan_to_local(struct chan *c, short rev)
{
	if (c->rx_blocked && (rev & (POLLOUT | POLLERR | POLLHUP))) {
		c->rx_blocked = false;
		c->deliver = true;
	}
	if (c->deliver && !c->rx_blocked) {
		c->deliver = false;
		if (ssh_channel_deliver(c->ch) != SSH_OK) {
			chan_kill(c, "channel error");
			return;
		}
	}
	if (c->st == CH_OPEN && !c->rx_blocked && c->remote_eof &&
	    !c->shut_wr && chan_buffered(c) == 0) {
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
	else if (c->remote_closed && chan_buffered(c) == 0)
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
	chan_to_local(c, rev);
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
			chan_dial(chs, c);
		else if (c->st == CH_DEAD)
			chan_free(chs, c);
	}
}

/* What a channel may hold under its current maximum: the pool's charge. */
static uint64_t
chan_charge(const struct chan *c)
{
	uint32_t held = ssh_channel_get_rx_held(c->ch, NULL);

	return held > c->rx_max ? held : c->rx_max;
}

/*
 * Shares CHAN_RX_BUDGET among the channels (channels.h).  A channel is
 * charged max(its maximum, what it holds): lowering a maximum takes back
 * nothing already granted, so the charge falls only as the channel drains.
 * A maximum is raised only out of what is left, so the charges never sum
 * past the budget, except for the CHAN_WINDOW_MIN each channel starts with.
 */
static void
pool_step(struct channels *chs)
{
	uint64_t share, charged = 0, room;
	struct chan *c;

	if (chs->n_open == 0)
		return;
	share = CHAN_RX_BUDGET / chs->n_open;
	share = share < CHAN_WINDOW_MIN ? CHAN_WINDOW_MIN :
	    share > CHAN_WINDOW ? CHAN_WINDOW : share;
	TAILQ_FOREACH(c, &chs->list, entry)
		if (c->st != CH_DEAD)
			charged += chan_charge(c);
	TAILQ_FOREACH(c, &chs->list, entry) {
		uint64_t before, want;

		if (c->st != CH_OPEN || c->rx_max == share)
			continue;
		if (c->rx_max > share) {
			c->rx_max = (uint32_t)share;
			(void)ssh_channel_set_window_max(c->ch, c->rx_max);
			continue;
		}
		room = charged < CHAN_RX_BUDGET ? CHAN_RX_BUDGET - charged : 0;
		before = chan_charge(c);
		want = share - c->rx_max;
		if (room == 0)
			continue;
		c->rx_max += (uint32_t)(want < room ? want : room);
		(void)ssh_channel_set_window_max(c->ch, c->rx_max);
		charged += chan_charge(c) - before;
	}
}

void
channels_pump(struct channels *chs, const struct pollfd *pfd)
{
	struct chan *c;

	if (!session_write_pending(chs->ss))
		chs->budget = 0;
	pool_step(chs);
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
		if (c->rx_blocked)
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
		if (c->st == CH_OPEN && c->deliver && !c->rx_blocked)
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
