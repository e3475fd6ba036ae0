/*
 * The etcd v3 gateway client (see etcd.h).
 *
 * Two HTTP/1.1 connections to the endpoint in use: ctl carries the unary
 * calls one at a time (authenticate, range pages, probes), watch carries
 * the one long /v3/watch response, read chunk by chunk into a frame
 * splitter.  A connection is never reused after a failure, and none is
 * freed inside one of its own callbacks: a failure only flags the client
 * and activates ev_restart, which tears both down from the loop.
 *
 * The revision: a range says which revision its snapshot is of (every
 * page is read at the first page's revision); a watch event carries its
 * own.  The client re-watches from the highest revision it applied + 1.
 * A watch response's header revision is not used for that: a watcher
 * that is catching up gets headers newer than the events still to come.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/backoff.h"
#include "common/error.h"
#include "common/log.h"
#include "common/tptime.h"
#include "supervisor/cfgerr.h"
#include "supervisor/cfgread.h"
#include "supervisor/etcd.h"

#define CTL_BODY_MAX	(64 * 1024 * 1024)
#define PASSWORD_MAX	4096
/* The watch connection is idle for as long as nothing changes. */
#define WATCH_TIMEOUT_S	(24 * 3600)

enum phase {
	PH_IDLE,	/* waiting for the retry timer */
	PH_AUTH,
	PH_RANGE,
	PH_WATCH_START,	/* watch sent, not created yet */
	PH_WATCHING,
};

enum ctl_kind { CTL_NONE, CTL_AUTH, CTL_RANGE, CTL_PROBE };

struct etcd_client {
	struct event_base	*base;
	struct evdns_base	*dns;
	struct etcd_config	 cfg;		/* a copy */
	SSL_CTX			*ssl;
	const struct etcd_client_ops *ops;
	void			*arg;

	char			*key_b64;	/* the prefix */
	char			*end_b64;	/* its range end */
	size_t			 ep;		/* endpoint in use */
	enum phase		 phase;
	struct evhttp_connection *ctl;
	struct evhttp_connection *wconn;
	struct bufferevent	*ctl_bev;	/* TLS errors are read here */
	struct bufferevent	*w_bev;
	enum ctl_kind		 ctl_busy;
	struct evhttp_request	*wreq;
	struct etcd_stream	 stream;
	char			*token;
	int			 auth_retried;	/* one fresh token per call */

	/* a range in pages */
	int64_t			 range_rev;
	char			*range_from;	/* raw key bytes */
	size_t			 range_from_len;
	struct etcd_event	*acc;
	size_t			 nacc, acc_cap;

	int64_t			 rev;		/* last revision applied */
	int			 synced;	/* rev is from a full set */
	int			 need_full;
	int			 watched;	/* a watch was created once */
	int			 failed;	/* restart pending */
	struct backoff		 bo;
	struct event		*ev_retry;
	struct event		*ev_restart;
	struct event		*ev_probe;

	int			 healthy;
	uint64_t		 watch_restarts;
	uint64_t		 failures;
	uint64_t		 last_ok_wall_ms;
	char			 last_error[512];
};

static void attempt(struct etcd_client *c);
static void fail(struct etcd_client *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static const char *
ep_url(const struct etcd_client *c)
{
	return c->cfg.endpoints[c->ep].url;
}

static void
set_healthy(struct etcd_client *c, int h)
{
	int changed = c->healthy != h;

	c->healthy = h;
	if (h) {
		c->last_error[0] = '\0';
		c->last_ok_wall_ms = tp_wall_ms();
		backoff_up(&c->bo, tp_now_ms());
	}
	if (changed && c->ops->state != NULL)
		c->ops->state(c->arg);
}

/* ---- connections ------------------------------------------------------ */

static int
is_ip(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 ||
	    inet_pton(AF_INET6, host, buf) == 1;
}

static struct bufferevent *
tls_bev(struct etcd_client *c, const struct etcd_endpoint *e)
{
	X509_VERIFY_PARAM *vp;
	SSL *ssl;

	if ((ssl = SSL_new(c->ssl)) == NULL)
		return NULL;
	vp = SSL_get0_param(ssl);
	if (is_ip(e->host))
		X509_VERIFY_PARAM_set1_ip_asc(vp, e->host);
	else {
		SSL_set_tlsext_host_name(ssl, e->host);
		X509_VERIFY_PARAM_set1_host(vp, e->host, 0);
	}
	return bufferevent_openssl_socket_new(c->base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
}

static struct evhttp_connection *
conn_new(struct etcd_client *c, int timeout_s, struct bufferevent **bevp)
{
	const struct etcd_endpoint *e = &c->cfg.endpoints[c->ep];
	struct evhttp_connection *conn;
	struct bufferevent *bev = NULL;

	*bevp = NULL;
	if (e->tls && (bev = tls_bev(c, e)) == NULL)
		return NULL;
	conn = evhttp_connection_base_bufferevent_new(c->base, c->dns, bev,
	    e->host, (unsigned short)e->port);
	if (conn == NULL) {
		if (bev != NULL)
			bufferevent_free(bev);
		return NULL;
	}
	evhttp_connection_set_timeout(conn, timeout_s);
	evhttp_connection_set_retries(conn, 0);
	*bevp = bev;
	return conn;
}

/* The OpenSSL reason of a failed TLS connection, or "". */
static const char *
tls_reason(struct bufferevent *bev, char *buf, size_t cap)
{
	unsigned long e;

	buf[0] = '\0';
	if (bev == NULL)
		return buf;
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		ERR_error_string_n(e, buf, cap);
	return buf;
}

static void
conns_close(struct etcd_client *c)
{
	c->ctl_busy = CTL_NONE;
	c->wreq = NULL;
	if (c->ctl != NULL)
		evhttp_connection_free(c->ctl);
	if (c->wconn != NULL)
		evhttp_connection_free(c->wconn);
	c->ctl = c->wconn = NULL;
	c->ctl_bev = c->w_bev = NULL;
	etcd_stream_reset(&c->stream);
	evtimer_del(c->ev_probe);
}

/* ---- failure and retry ---------------------------------------------- */

static void
fail(struct etcd_client *c, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	if (c->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->last_error, sizeof(c->last_error), "etcd %s: %s",
	    ep_url(c), msg);
	log_warnx("%s", c->last_error);
	c->failed = 1;
	c->failures++;
	c->ctl_busy = CTL_NONE;
	c->wreq = NULL;
	event_active(c->ev_restart, EV_TIMEOUT, 0);
	c->healthy = 0;
	if (c->ops->state != NULL)
		c->ops->state(c->arg);
}

/* From the loop: drop the connections, next endpoint, wait, try again. */
static void
on_restart(evutil_socket_t fd, short what, void *arg)
{
	struct etcd_client *c = arg;
	struct timeval tv;
	uint64_t ms;

	(void)fd;
	(void)what;
	conns_close(c);
	c->failed = 0;
	c->phase = PH_IDLE;
	c->ep = (c->ep + 1) % c->cfg.n_endpoints;
	ms = backoff_next(&c->bo, tp_now_ms(), arc4random());
	tv = tp_timeval_ms(ms);
	evtimer_add(c->ev_retry, &tv);
}

/* A restart that is not a failure (compaction): at once, same endpoint. */
static void
restart_now(struct etcd_client *c)
{
	c->ctl_busy = CTL_NONE;
	c->wreq = NULL;
	c->failed = 1;
	c->ep = (c->ep + c->cfg.n_endpoints - 1) % c->cfg.n_endpoints;
	c->bo.attempt = 0;
	event_active(c->ev_restart, EV_TIMEOUT, 0);
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	attempt(arg);
}

/* ---- requests ------------------------------------------------------- */

static struct evhttp_request *
request(struct etcd_client *c, struct evhttp_connection *conn,
    void (*cb)(struct evhttp_request *, void *), const char *path,
    json_t *body, int with_token)
{
	struct evhttp_request *req;
	struct evkeyvalq *h;
	char hostport[300], *s;
	const struct etcd_endpoint *e = &c->cfg.endpoints[c->ep];

	s = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (s == NULL || (req = evhttp_request_new(cb, c)) == NULL) {
		free(s);
		return NULL;
	}
	h = evhttp_request_get_output_headers(req);
	snprintf(hostport, sizeof(hostport), strchr(e->host, ':') ?
	    "[%s]:%u" : "%s:%u", e->host, e->port);
	evhttp_add_header(h, "Host", hostport);
	evhttp_add_header(h, "Content-Type", "application/json");
	/*
	 * clientv3's WithRequireLeader, through the gateway (it passes
	 * Grpc-Metadata-* headers on as gRPC metadata): a member cut off from
	 * its quorum refuses the call at once ("etcdserver: no leader") and
	 * cancels a watch it serves when it loses its leader, instead of
	 * creating or keeping a watch that can never deliver a change.
	 */
	evhttp_add_header(h, "Grpc-Metadata-hasleader", "true");
	if (with_token && c->token != NULL)
		evhttp_add_header(h, "Authorization", c->token);
	evbuffer_add(evhttp_request_get_output_buffer(req), s, strlen(s));
	free(s);
	if (evhttp_make_request(conn, req, EVHTTP_REQ_POST, path) != 0)
		return NULL;	/* evhttp freed req */
	return req;
}

/*
 * The body of a finished unary call (an etcd error object too: the
 * caller decodes it), or NULL after reporting a transport failure, or
 * when the call was abandoned.
 */
static struct evbuffer *
ctl_result(struct etcd_client *c, struct evhttp_request *req,
    enum ctl_kind kind, const char *what)
{
	char tls[256];

	if (c->ctl_busy != kind)
		return NULL;	/* abandoned */
	c->ctl_busy = CTL_NONE;
	if (req == NULL || evhttp_request_get_response_code(req) == 0) {
		tls_reason(c->ctl_bev, tls, sizeof(tls));
		fail(c, "%s: %s%s", what, tls[0] ? "TLS: " : "",
		    tls[0] ? tls : "connection failed or timed out");
		return NULL;
	}
	return evhttp_request_get_input_buffer(req);
}

/*
 * A reply that is not what the call returns: etcd's error object, or
 * something else (a proxy's error page, a gateway's plain text), shown
 * as an excerpt.
 */
static void
bad_reply(struct etcd_client *c, struct evhttp_request *req,
    struct evbuffer *b, const char *what, const char *why)
{
	size_t n = evbuffer_get_length(b), i;
	char ex[121];

	if (n > sizeof(ex) - 1)
		n = sizeof(ex) - 1;
	evbuffer_copyout(b, ex, n);
	for (i = 0; i < n; i++)
		if (ex[i] < 0x20 || ex[i] > 0x7e)
			ex[i] = ' ';
	ex[n] = '\0';
	fail(c, "%s: HTTP %d, %s: \"%s\"", what,
	    evhttp_request_get_response_code(req), why, ex);
}

/* Decodes an error body of a unary call; returns 1 if it asked for a token. */
static int
ctl_etcd_error(struct etcd_client *c, const struct etcd_error *ee,
    int http, const char *what)
{
	if (ee->code == ETCD_CODE_UNAUTHENTICATED && c->cfg.username[0] &&
	    !c->auth_retried) {
		/* Expired or revoked: one new token, then the same call. */
		free(c->token);
		c->token = NULL;
		c->auth_retried = 1;
		log_info("etcd %s: token refused (%s): authenticating again",
		    ep_url(c), ee->message);
		return 1;
	}
	fail(c, "%s: HTTP %d: %s (code %d)", what, http, ee->message,
	    ee->code);
	return 0;
}

static int
ensure_ctl(struct etcd_client *c)
{
	if (c->ctl == NULL &&
	    (c->ctl = conn_new(c, ETCD_REQUEST_TIMEOUT_S, &c->ctl_bev)) == NULL) {
		fail(c, "cannot create a connection");
		return -1;
	}
	if (c->ctl != NULL)
		evhttp_connection_set_max_body_size(c->ctl, CTL_BODY_MAX);
	return 0;
}

/* ---- authenticate ----------------------------------------------------- */

static char *
read_password(struct etcd_client *c)
{
	struct cfg_errors e = { 0 };
	size_t len;
	char *buf;

	if (cfg_read_file(c->cfg.password_file, PASSWORD_MAX, &buf, &len,
	    &e) != 0) {
		fail(c, "password_file %s", cfg_errors_first(&e) ?
		    cfg_errors_first(&e) : "cannot be read");
		cfg_errors_free(&e);
		return NULL;
	}
	cfg_errors_free(&e);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	return buf;
}

static void
on_auth(struct evhttp_request *req, void *arg)
{
	struct etcd_client *c = arg;
	struct etcd_error ee;
	struct evbuffer *b;
	char err[256], *token;
	int rc;

	if ((b = ctl_result(c, req, CTL_AUTH, "authenticate")) == NULL)
		return;
	rc = etcd_decode_auth((const char *)evbuffer_pullup(b, -1),
	    evbuffer_get_length(b), &token, &ee, err, sizeof(err));
	if (rc == ETCD_JSON_ERROR) {
		fail(c, "authentication as \"%s\" failed: %s (HTTP %d, code %d)"
		    "; keeping the last good tunnels", c->cfg.username,
		    ee.message, evhttp_request_get_response_code(req), ee.code);
		return;
	}
	if (rc != 0) {
		bad_reply(c, req, b, "authenticate", err);
		return;
	}
	free(c->token);
	c->token = token;
	log_debug("etcd %s: authenticated as %s", ep_url(c), c->cfg.username);
	if (c->phase == PH_WATCHING) {	/* a new token for the probes */
		struct timeval now = { 0, 0 };

		evtimer_add(c->ev_probe, &now);
		return;
	}
	attempt(c);
}

static void
start_auth(struct etcd_client *c)
{
	char *pw;

	if ((pw = read_password(c)) == NULL)
		return;
	if (c->phase != PH_WATCHING)
		c->phase = PH_AUTH;
	c->ctl_busy = CTL_AUTH;
	if (request(c, c->ctl, on_auth, "/v3/auth/authenticate",
	    json_pack("{s:s,s:s}", "name", c->cfg.username, "password", pw),
	    0) == NULL)
		fail(c, "authenticate: cannot send the request");
	explicit_bzero(pw, strlen(pw));
	free(pw);
}

/* ---- range ---------------------------------------------------------- */

static void
acc_clear(struct etcd_client *c)
{
	for (size_t i = 0; i < c->nacc; i++) {
		free(c->acc[i].kv.key);
		free(c->acc[i].kv.value);
	}
	free(c->acc);
	c->acc = NULL;
	c->nacc = c->acc_cap = 0;
	free(c->range_from);
	c->range_from = NULL;
	c->range_from_len = 0;
	c->range_rev = 0;
}

/* Moves the page's kvs into the accumulated set (r is emptied). */
static int
acc_take(struct etcd_client *c, struct etcd_range *r)
{
	struct etcd_event *nv;
	size_t ncap;

	if (c->nacc + r->n > c->acc_cap) {
		for (ncap = c->acc_cap ? c->acc_cap : 256;
		    ncap < c->nacc + r->n; ncap *= 2)
			;
		if ((nv = reallocarray(c->acc, ncap, sizeof(*nv))) == NULL)
			return TP_ENOMEM;
		c->acc = nv;
		c->acc_cap = ncap;
	}
	for (size_t i = 0; i < r->n; i++) {
		c->acc[c->nacc].type = ETCD_EV_PUT;
		c->acc[c->nacc++].kv = r->kvs[i];
		memset(&r->kvs[i], 0, sizeof(r->kvs[i]));
	}
	r->n = 0;
	return 0;
}

static void send_range(struct etcd_client *c);
static void start_watch(struct etcd_client *c);

/* The last page: hand the whole set over, then watch. */
static void
range_done(struct etcd_client *c)
{
	struct etcd_batch b = { 1, c->range_rev, c->acc, c->nacc };

	log_info("etcd %s: %zu keys under %s at revision %lld", ep_url(c),
	    c->nacc, c->cfg.prefix, (long long)c->range_rev);
	c->rev = c->range_rev;
	c->synced = 1;
	c->need_full = 0;
	c->ops->apply(c->arg, &b);
	acc_clear(c);
	set_healthy(c, 1);
	start_watch(c);
}

/* The next page starts right after the last key: last + "\0". */
static int
range_next_from(struct etcd_client *c)
{
	const struct etcd_kv *last = &c->acc[c->nacc - 1].kv;

	free(c->range_from);
	if ((c->range_from = malloc(last->key_len + 1)) == NULL)
		return TP_ENOMEM;
	memcpy(c->range_from, last->key, last->key_len);
	c->range_from[last->key_len] = '\0';
	c->range_from_len = last->key_len + 1;
	return 0;
}

static void
on_range(struct evhttp_request *req, void *arg)
{
	struct etcd_client *c = arg;
	struct etcd_error ee;
	struct etcd_range r;
	struct evbuffer *b;
	char err[256];
	int rc, more;

	if ((b = ctl_result(c, req, CTL_RANGE, "range")) == NULL)
		return;
	rc = etcd_decode_range((const char *)evbuffer_pullup(b, -1),
	    evbuffer_get_length(b), &r, &ee, err, sizeof(err));
	if (rc == ETCD_JSON_ERROR) {
		if (ee.code == ETCD_CODE_OUT_OF_RANGE && c->range_rev != 0) {
			/* Compacted between two pages: start over. */
			acc_clear(c);
			send_range(c);
		} else if (ctl_etcd_error(c, &ee,
		    evhttp_request_get_response_code(req), "range"))
			attempt(c);
		return;
	}
	if (rc != 0) {
		bad_reply(c, req, b, "range", err);
		return;
	}
	c->auth_retried = 0;
	if (c->range_rev == 0)
		c->range_rev = r.revision;
	more = r.more && r.n > 0;
	rc = acc_take(c, &r);
	etcd_range_free(&r);
	if (rc != 0 || (more && range_next_from(c) != 0)) {
		fail(c, "range: out of memory");
		return;
	}
	if (more)
		send_range(c);
	else
		range_done(c);
}

static void
send_range(struct etcd_client *c)
{
	char *from = NULL, limit[24], rev[24];
	json_t *body;

	c->phase = PH_RANGE;
	c->ctl_busy = CTL_RANGE;
	from = c->range_from != NULL ?
	    etcd_b64_encode(c->range_from, c->range_from_len) :
	    strdup(c->key_b64);
	if (from == NULL) {
		fail(c, "range: out of memory");
		return;
	}
	snprintf(limit, sizeof(limit), "%d", ETCD_RANGE_PAGE);
	body = json_pack("{s:s,s:s,s:s}", "key", from, "range_end", c->end_b64,
	    "limit", limit);
	free(from);
	if (body != NULL && c->range_rev != 0) {
		snprintf(rev, sizeof(rev), "%lld", (long long)c->range_rev);
		json_object_set_new(body, "revision", json_string(rev));
	}
	if (body == NULL ||
	    request(c, c->ctl, on_range, "/v3/kv/range", body, 1) == NULL)
		fail(c, "range: cannot send the request");
}

/* ---- probe ---------------------------------------------------------- */

/*
 * While watching, a cheap range every ETCD_PROBE_MS proves the endpoint
 * alive (a watch stream is silent while nothing changes) and keeps the
 * token fresh.
 */
static void
on_probe_reply(struct evhttp_request *req, void *arg)
{
	struct etcd_client *c = arg;
	struct timeval tv = tp_timeval_ms(ETCD_PROBE_MS);
	struct etcd_error ee;
	struct evbuffer *b;

	if ((b = ctl_result(c, req, CTL_PROBE, "probe")) == NULL)
		return;
	if (evhttp_request_get_response_code(req) != 200) {
		if (!etcd_decode_error((const char *)evbuffer_pullup(b, -1),
		    evbuffer_get_length(b), &ee)) {
			bad_reply(c, req, b, "probe", "not an etcd reply");
			return;
		}
		if (ctl_etcd_error(c, &ee, evhttp_request_get_response_code(req),
		    "probe"))
			start_auth(c);	/* the watch goes on meanwhile */
		return;
	}
	c->auth_retried = 0;
	evtimer_add(c->ev_probe, &tv);
}

static void
on_probe(evutil_socket_t fd, short what, void *arg)
{
	struct etcd_client *c = arg;
	struct timeval tv = tp_timeval_ms(ETCD_PROBE_MS);

	(void)fd;
	(void)what;
	if (c->failed)
		return;
	if (c->phase == PH_WATCH_START) {
		fail(c, "watch: not created within %d s",
		    ETCD_REQUEST_TIMEOUT_S);
		return;
	}
	if (c->phase != PH_WATCHING)
		return;
	if (c->ctl_busy != CTL_NONE) {	/* authenticating: probe later */
		evtimer_add(c->ev_probe, &tv);
		return;
	}
	c->ctl_busy = CTL_PROBE;
	if (request(c, c->ctl, on_probe_reply, "/v3/kv/range",
	    json_pack("{s:s,s:s,s:b}", "key", c->key_b64, "limit", "1",
	    "keys_only", 1), 1) == NULL)
		fail(c, "probe: cannot send the request");
}

/* ---- watch ---------------------------------------------------------- */

/* Returns the highest mod_revision of the events (0 if none). */
static int64_t
events_rev(const struct etcd_watch *w)
{
	int64_t r = 0;

	for (size_t i = 0; i < w->n; i++)
		if (w->events[i].kv.mod_revision > r)
			r = w->events[i].kv.mod_revision;
	return r;
}

static void
watch_created(struct etcd_client *c)
{
	struct timeval tv = tp_timeval_ms(ETCD_PROBE_MS);

	c->phase = PH_WATCHING;
	log_info("etcd %s: watching %s from revision %lld", ep_url(c),
	    c->cfg.prefix, (long long)c->rev + 1);
	set_healthy(c, 1);
	evtimer_del(c->ev_probe);
	evtimer_add(c->ev_probe, &tv);
}

/* One frame; returns -1 when the stream must end. */
static int
watch_frame(struct etcd_client *c, const char *f, size_t n)
{
	struct etcd_error ee;
	struct etcd_watch w;
	struct etcd_batch b;
	char err[256];
	int rc;

	rc = etcd_decode_watch(f, n, &w, &ee, err, sizeof(err));
	if (rc == ETCD_JSON_ERROR) {
		if (ee.code == ETCD_CODE_UNAUTHENTICATED) {
			free(c->token);
			c->token = NULL;
		}
		fail(c, "watch: %s (code %d)", ee.message, ee.code);
		return -1;
	}
	if (rc != 0) {
		fail(c, "watch: bad message: %s", err);
		return -1;
	}
	if (w.compact_revision > 0) {
		log_warnx("etcd %s: revision %lld was compacted (oldest is "
		    "%lld): reading %s again", ep_url(c), (long long)c->rev + 1,
		    (long long)w.compact_revision, c->cfg.prefix);
		c->need_full = 1;
		c->watch_restarts++;
		etcd_watch_free(&w);
		restart_now(c);
		return -1;
	}
	if (w.canceled) {
		if (strstr(w.cancel_reason, "auth") != NULL ||
		    strstr(w.cancel_reason, "token") != NULL ||
		    strstr(w.cancel_reason, "user name") != NULL) {
			free(c->token);
			c->token = NULL;
		}
		fail(c, "watch canceled: %s", w.cancel_reason[0] ?
		    w.cancel_reason : "no reason given");
		etcd_watch_free(&w);
		return -1;
	}
	if (w.created && c->phase == PH_WATCH_START)
		watch_created(c);
	if (w.n > 0) {
		b = (struct etcd_batch){ 0, events_rev(&w), w.events, w.n };
		if (b.revision > c->rev)
			c->rev = b.revision;
		c->ops->apply(c->arg, &b);
	} else if (!w.created && w.revision > c->rev)
		c->rev = w.revision;	/* a progress notification */
	etcd_watch_free(&w);
	return 0;
}

static void
watch_feed(struct etcd_client *c, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const char *f;
	size_t n;
	int rc;

	rc = etcd_stream_feed(&c->stream, evbuffer_pullup(in, -1),
	    evbuffer_get_length(in));
	evbuffer_drain(in, evbuffer_get_length(in));
	if (rc != 0) {
		fail(c, "watch: %s", rc == TP_ETOOBIG ? "message too large" :
		    "out of memory");
		return;
	}
	while (c->wreq == req && (rc = etcd_stream_next(&c->stream, &f,
	    &n)) == 1)
		if (watch_frame(c, f, n) != 0)
			return;
	if (rc < 0 && c->wreq == req)
		fail(c, "watch: %s", rc == TP_ETOOBIG ? "message too large" :
		    "garbage between messages");
}

static void
on_watch_chunk(struct evhttp_request *req, void *arg)
{
	struct etcd_client *c = arg;

	if (req == c->wreq && !c->failed)
		watch_feed(c, req);
}

static void
on_watch_end(struct evhttp_request *req, void *arg)
{
	struct etcd_client *c = arg;
	char tls[256];
	int code;

	if (c->wreq == NULL || c->failed)
		return;
	if (req == NULL || (code = evhttp_request_get_response_code(req)) == 0) {
		tls_reason(c->w_bev, tls, sizeof(tls));
		fail(c, "watch: %s%s", tls[0] ? "TLS: " : "", tls[0] ? tls :
		    "connection lost");
		return;
	}
	if (req != c->wreq)
		return;
	watch_feed(c, req);	/* a body that was not chunked */
	if (!c->failed)
		fail(c, "watch stream ended (HTTP %d)", code);
}

static void
start_watch(struct etcd_client *c)
{
	struct timeval start_deadline = { ETCD_REQUEST_TIMEOUT_S, 0 };
	char rev[24];
	json_t *body;

	if (c->wconn == NULL &&
	    (c->wconn = conn_new(c, WATCH_TIMEOUT_S, &c->w_bev)) == NULL) {
		fail(c, "cannot create a connection");
		return;
	}
	etcd_stream_reset(&c->stream);
	snprintf(rev, sizeof(rev), "%lld", (long long)c->rev + 1);
	body = json_pack("{s:{s:s,s:s,s:s,s:b}}", "create_request", "key",
	    c->key_b64, "range_end", c->end_b64, "start_revision", rev,
	    "progress_notify", 1);
	c->phase = PH_WATCH_START;
	/* The watch connection has no useful timeout: bound its start here. */
	evtimer_del(c->ev_probe);
	evtimer_add(c->ev_probe, &start_deadline);
	if (c->watched)
		c->watch_restarts++;
	c->watched = 1;
	c->wreq = body == NULL ? NULL :
	    request(c, c->wconn, on_watch_end, "/v3/watch", body, 1);
	if (c->wreq == NULL) {
		fail(c, "watch: cannot send the request");
		return;
	}
	evhttp_request_set_chunked_cb(c->wreq, on_watch_chunk);
}

/* ---- the sequence ----------------------------------------------------- */

/* The next step from wherever the client is: auth, range, watch. */
static void
attempt(struct etcd_client *c)
{
	if (c->failed)
		return;
	if (ensure_ctl(c) != 0)
		return;
	if (c->cfg.username[0] != '\0' && c->token == NULL) {
		start_auth(c);
		return;
	}
	if (!c->synced || c->need_full) {
		if (c->range_rev == 0)
			acc_clear(c);
		send_range(c);
		return;
	}
	start_watch(c);
}

/* ---- setup -------------------------------------------------------- */

static int
tls_setup(struct etcd_client *c, char *err, size_t errlen)
{
	const struct etcd_config *k = &c->cfg;
	char e[256] = "";

	if (k->n_endpoints == 0 || !k->endpoints[0].tls)
		return 0;
	if ((c->ssl = SSL_CTX_new(TLS_client_method())) == NULL)
		goto bad;
	SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION);
	SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
	if (k->tls.ca[0] != '\0' ? SSL_CTX_load_verify_locations(c->ssl,
	    k->tls.ca, NULL) != 1 : SSL_CTX_set_default_verify_paths(c->ssl) !=
	    1) {
		snprintf(err, errlen, "tunnel_source.etcd.tls.ca %s: %s",
		    k->tls.ca, ERR_error_string(ERR_get_error(), e));
		return -1;
	}
	if (k->tls.cert[0] != '\0' &&
	    (SSL_CTX_use_certificate_chain_file(c->ssl, k->tls.cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(c->ssl, k->tls.key,
	    SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(c->ssl) != 1)) {
		snprintf(err, errlen, "tunnel_source.etcd.tls.cert/key %s, %s: "
		    "%s", k->tls.cert, k->tls.key,
		    ERR_error_string(ERR_get_error(), e));
		return -1;
	}
	return 0;
bad:
	snprintf(err, errlen, "TLS: %s", ERR_error_string(ERR_get_error(), e));
	return -1;
}

char *
etcd_prefix_end(const char *prefix, size_t len, size_t *outlen)
{
	char *end = malloc(len + 1);
	size_t n = len;

	if (end == NULL)
		return NULL;
	memcpy(end, prefix, len);
	while (n > 0 && (unsigned char)end[n - 1] == 0xff)
		n--;
	if (n == 0) {		/* all 0xff: to the end of the key space */
		end[0] = '\0';
		*outlen = 1;
		return end;
	}
	end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
	end[n] = '\0';
	*outlen = n;
	return end;
}

struct etcd_client *
etcd_client_new(struct event_base *base, struct evdns_base *dns,
    const struct etcd_config *cfg, const struct etcd_client_ops *ops,
    void *arg, char *err, size_t errlen)
{
	struct timeval tv0 = { 0, 0 };
	struct etcd_client *c;
	size_t elen;
	char *end;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto nomem;
	c->base = base;
	c->dns = dns;
	c->ops = ops;
	c->arg = arg;
	etcd_stream_init(&c->stream);
	backoff_init(&c->bo, ETCD_BACKOFF_MIN_MS, ETCD_BACKOFF_MAX_MS,
	    ETCD_BACKOFF_RESET_MS);
	if (etcd_config_copy(&c->cfg, cfg) != 0 || c->cfg.n_endpoints == 0)
		goto nomem;
	if (tls_setup(c, err, errlen) != 0) {
		etcd_client_free(c);
		return NULL;
	}
	if ((end = etcd_prefix_end(c->cfg.prefix, strlen(c->cfg.prefix),
	    &elen)) == NULL)
		goto nomem;
	c->end_b64 = etcd_b64_encode(end, elen);
	free(end);
	c->key_b64 = etcd_b64_encode(c->cfg.prefix, strlen(c->cfg.prefix));
	c->ev_retry = evtimer_new(base, on_retry, c);
	c->ev_restart = evtimer_new(base, on_restart, c);
	c->ev_probe = evtimer_new(base, on_probe, c);
	if (c->end_b64 == NULL || c->key_b64 == NULL || c->ev_retry == NULL ||
	    c->ev_restart == NULL || c->ev_probe == NULL)
		goto nomem;
	evtimer_add(c->ev_retry, &tv0);
	return c;
nomem:
	snprintf(err, errlen, "out of memory");
	etcd_client_free(c);
	return NULL;
}

void
etcd_client_free(struct etcd_client *c)
{
	if (c == NULL)
		return;
	if (c->ev_probe != NULL)
		conns_close(c);
	acc_clear(c);
	etcd_stream_free(&c->stream);
	if (c->ev_retry != NULL)
		event_free(c->ev_retry);
	if (c->ev_restart != NULL)
		event_free(c->ev_restart);
	if (c->ev_probe != NULL)
		event_free(c->ev_probe);
	if (c->ssl != NULL)
		SSL_CTX_free(c->ssl);
	free(c->key_b64);
	free(c->end_b64);
	free(c->token);
	etcd_config_free(&c->cfg);
	free(c);
}

void
etcd_client_get_status(const struct etcd_client *c,
    struct etcd_client_status *st)
{
	memset(st, 0, sizeof(*st));
	st->endpoint = ep_url(c);
	st->healthy = c->healthy;
	st->revision = c->rev;
	st->watch_restarts = c->watch_restarts;
	st->failures = c->failures;
	st->last_error = c->last_error;
	st->last_ok_wall_ms = c->last_ok_wall_ms;
}
