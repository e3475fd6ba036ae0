/*
 * Dialer: a worker that received a forwarded channel asks for a connection
 * to a local target.  The target is the tunnel's own forward, looked up by
 * the forward id the supervisor gave the worker: a worker never chooses an
 * address.  Connects non-blocking with a deadline and passes the fd back.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "common/addr.h"
#include "common/error.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/tptime.h"
#include "aconnect.h"
#include "child.h"
#include "config.h"
#include "dialer.h"
#include "pool.h"
#include "send.h"
#include "sup.h"
#include "tunnels.h"

struct dial {
	struct child		*child;
	uint32_t		 channel_id;
	int			 sock;
	struct event		*ev;	/* the connect, or the deferred failure */
	struct evdns_getaddrinfo_request *dns;
	char			 target[PROTO_ADDR_MAX];
	char			 error[PROTO_REASON_MAX];
	struct dial		*next;
};

static void
dial_unlink(struct dial *d)
{
	struct dial **pp = &d->child->dials.list;

	while (*pp != NULL && *pp != d)
		pp = &(*pp)->next;
	if (*pp == d) {
		*pp = d->next;
		d->child->dials.n--;
	}
}

static void
dial_free(struct dial *d)
{
	if (d->ev != NULL)
		event_free(d->ev);
	if (d->sock >= 0)
		close(d->sock);
	free(d);
}

/* Answers the worker and forgets the dial. */
static void
dial_finish(struct dial *d, const char *error)
{
	struct child *c = d->child;

	dial_unlink(d);
	if (error == NULL) {
		int one = 1;

		/* Interactive traffic; fails harmlessly on a unix socket. */
		(void)setsockopt(d->sock, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
		send_dial_result(c, d->channel_id, d->sock, NULL);
	} else {
		c->sup->counters.dial_failures++;
		if (c->agent != NULL)
			c->agent->stats.dial_failures++;
		child_log(c, LOG_LVL_WARN, "dial %s for channel %u failed: %s",
		    d->target, d->channel_id, error);
		send_dial_result(c, d->channel_id, -1, error);
	}
	dial_free(d);
}

static void
on_dial_failed(evutil_socket_t fd, short what, void *arg)
{
	struct dial *d = arg;

	(void)fd;
	(void)what;
	dial_finish(d, d->error);
}

/*
 * Every failure completes from a fresh loop turn, never inside the frame
 * that found it: a numeric target resolves inside evdns_getaddrinfo, and
 * a connect can fail at once (ENETUNREACH, EADDRNOTAVAIL, EMFILE), both
 * while dialer_request's caller still holds the dial.  The dial stays
 * linked (dialer_cancel_all frees it) until its event runs.
 */
static void
dial_fail(struct dial *d, const char *error)
{
	struct timeval now = { 0, 0 };

	snprintf(d->error, sizeof(d->error), "%s", error);
	if (d->ev != NULL)
		event_free(d->ev);
	if (d->sock >= 0) {
		close(d->sock);
		d->sock = -1;
	}
	d->ev = evtimer_new(d->child->sup->base, on_dial_failed, d);
	if (d->ev == NULL || evtimer_add(d->ev, &now) != 0)
		fatalx("cannot schedule a dial's failure");
}

static void
on_dial_done(evutil_socket_t fd, short what, void *arg)
{
	struct dial *d = arg;
	int err = aconnect_result(fd, what, &d->ev);

	dial_finish(d, err == 0 ? NULL : err == ETIMEDOUT ? "timed out" :
	    strerror(err));
}

static void
dial_connect(struct dial *d, const struct sockaddr *sa, socklen_t salen)
{
	struct sup *sup = d->child->sup;
	int rc;

	rc = aconnect_start(sup->base, sa, salen, sup->cfg->timeouts.dial_ms,
	    &d->sock, &d->ev, on_dial_done, d);
	if (rc != 0)
		dial_fail(d, strerror(rc));
}

static void
on_target_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
	struct dial *d = arg;

	/* A cancelled request may be reported after d was freed: touch nothing. */
	if (err == EVUTIL_EAI_CANCEL)
		return;
	d->dns = NULL;
	if (err != 0 || res == NULL) {
		dial_fail(d, err != 0 ? evutil_gai_strerror(err) : "no address");
		return;
	}
	dial_connect(d, res->ai_addr, (socklen_t)res->ai_addrlen);
	evutil_freeaddrinfo(res);
}

static void
dial_start(struct dial *d, const struct tp_addr *a)
{
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	char port[8];

	if (a->is_unix) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };

		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", a->path);
		dial_connect(d, (struct sockaddr *)&sun, sizeof(sun));
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	snprintf(port, sizeof(port), "%u", a->port);
	/*
	 * May call back at once (numeric targets), and then returns NULL:
	 * d is still alive then, since failures are deferred (dial_fail).
	 */
	req = evdns_getaddrinfo(d->child->sup->dns, a->host, port, &hints,
	    on_target_resolved, d);
	if (req != NULL)
		d->dns = req;
}

/* Why a dial request is refused before anything is dialled, or NULL. */
static const char *
dial_refusal(struct child *c, bool stale)
{
	if (c->state == CH_CLOSING)
		return "the agent is closing";
	if (stale)
		return "the tunnel's spec changed: this agent is being replaced";
	/* A compromised worker must not exhaust ports for every tunnel. */
	if (!ratelimit_take(&c->dials.rl, tp_now_ms())) {
		c->sup->counters.dials_rate_limited++;
		return "dial rate limit (worker.dial_rate) exceeded";
	}
	return NULL;
}

int
dialer_request(struct child *c, const struct msg_dial_request *r)
{
	const struct pool_agent *ag = c->agent;
	const struct tunnel *t = ag != NULL ? ag->key->tunnel : NULL;
	/*
	 * An agent started for an older spec of its key (being replaced) or
	 * for a removed tunnel holds forward ids of a spec that is gone: the
	 * same index may name another forward now.  Its dials are refused,
	 * never routed by the current spec, and are not hostile.
	 */
	bool stale = ag != NULL && (ag->gen != ag->key->gen || t == NULL);
	const char *refused;
	struct tp_addr a;
	struct dial *d;

	c->sup->counters.dial_requests++;
	/* The worker only knows the ids we gave it: anything else is hostile. */
	if (!stale && (t == NULL || r->forward_id >= t->n_forwards))
		return TP_EPROTO;
	if (c->dials.n >= c->sup->cfg->worker.max_channels)
		return TP_ETOOBIG;
	if ((d = calloc(1, sizeof(*d))) == NULL)
		return TP_ENOMEM;
	d->child = c;
	d->channel_id = r->channel_id;
	d->sock = -1;
	snprintf(d->target, sizeof(d->target), "%s", stale ?
	    "(previous spec)" : t->forwards[r->forward_id].target);
	d->next = c->dials.list;
	c->dials.list = d;
	c->dials.n++;
	if ((refused = dial_refusal(c, stale)) != NULL)
		dial_fail(d, refused);
	else if (tp_addr_parse(d->target, 1, &a) != 0)
		dial_fail(d, "bad target address");
	else
		dial_start(d, &a);
	return 0;
}

int
dialer_init(struct child_dials *d, const struct config *cfg)
{
	d->list = NULL;
	d->n = 0;
	return ratelimit_init(&d->rl, cfg->worker.dial_rate,
	    cfg->worker.dial_burst, tp_now_ms());
}

void
dialer_cancel_all(struct child *c)
{
	while (c->dials.list != NULL) {
		struct dial *d = c->dials.list;

		c->dials.list = d->next;
		c->dials.n--;
		if (d->dns != NULL) {
			struct evdns_getaddrinfo_request *req = d->dns;

			d->dns = NULL;
			/* The cancel callback sees d->dns == NULL and returns. */
			evdns_getaddrinfo_cancel(req);
		}
		dial_free(d);
	}
}
