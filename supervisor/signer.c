#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "common/error.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/sshbuf.h"
#include "common/tptime.h"
#include "signer.h"
#include "sshkey.h"

#define USER_MAX		255
#define SESSION_ID_MAX		64	/* SHA-512, the largest KEX hash */
#define SSH2_MSG_USERAUTH_REQUEST 50
#define CERT_SUFFIX		"-cert-v01@openssh.com"
#define WHY_LEN			160

/*
 * A compromised worker may send refused requests in a loop: the counter
 * sees them all, the log only a bounded rate of them (with a count of what
 * was suppressed), so one worker cannot drown every other agent's lines.
 */
#define LOG_RATE		5.0	/* lines per second */
#define LOG_BURST		20.0

/* Output queued towards a worker before we stop reading its requests. */
#define CONN_OUT_HIGH		(256 * 1024)
#define CONN_OUT_LOW		(64 * 1024)

struct signer {
	const struct sshkey	*key;
	char			 user[USER_MAX + 1];
	uint64_t		 refusals;
	uint64_t		 signatures;
	struct ratelimit	 log_rl;
	uint64_t		 log_suppressed;
};

/*
 * What one worker's authentication has used so far.  As sshd's monitor
 * answers its one-shot requests only before authentication, a connection
 * lists the identities once, signs each identity at most once, every
 * signature for the same session id (the first one's), and nothing at all
 * once the authentication is over (signer_conn_end).
 */
struct auth_once {
	bool			 listed;
	unsigned		 signed_mask;	/* 1 << IDENT_KEY / IDENT_CERT */
	uint8_t			 sid[SESSION_ID_MAX];	/* bound, or the first's */
	size_t			 sid_len;
	bool			 need_bind;	/* sign only a bound session */
	bool			 bound;
	bool			 over;
};

struct signer_conn {
	struct signer		*s;
	struct bufferevent	*bev;
	int			 fd;
	const struct log_agent	*who;
	void			(*on_error)(void *, const char *);
	void			*arg;
	struct auth_once	 once;
	int			 paused;	/* output over CONN_OUT_HIGH */
	int			 dead;		/* on_error was called */
	char			 why[128];
};

/* ---- signer ---- */

static int
user_valid(const char *user)
{
	size_t n = user != NULL ? strlen(user) : 0;

	return n > 0 && n <= USER_MAX;
}

struct signer *
signer_new(const struct sshkey *key, const char *user)
{
	struct signer *s;

	if (key == NULL || !user_valid(user))
		return NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->key = key;
	memcpy(s->user, user, strlen(user) + 1);
	ratelimit_init(&s->log_rl, LOG_RATE, LOG_BURST, tp_now_ms());
	return s;
}

void
signer_free(struct signer *s)
{
	free(s);
}

int
signer_set_user(struct signer *s, const char *user)
{
	if (!user_valid(user))
		return TP_EINVAL;
	memcpy(s->user, user, strlen(user) + 1);
	return 0;
}

uint64_t
signer_refusals(const struct signer *s)
{
	return s->refusals;
}

uint64_t
signer_signatures(const struct signer *s)
{
	return s->signatures;
}

/* ---- the policy ---- */

/* Copies untrusted bytes for a log line: printable, bounded. */
static void
printable(char *dst, size_t cap, const uint8_t *p, size_t len)
{
	size_t i, n = len < cap - 1 ? len : cap - 1;

	for (i = 0; i < n; i++)
		dst[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	dst[i] = '\0';
}

static int __attribute__((format(printf, 3, 4)))
deny(char *why, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, WHY_LEN, fmt, ap);
	va_end(ap);
	return rc;
}

/* Checks the user name field against the configured proxy user. */
static int
check_user(const struct signer *s, struct sshbuf_reader *r, char *why)
{
	const uint8_t *u;
	size_t ulen;
	char shown[48];

	if (sshbuf_get_string(r, &u, &ulen) != 0)
		return deny(why, TP_ETRUNC, "truncated userauth request");
	if (ulen != strlen(s->user) || memcmp(u, s->user, ulen) != 0) {
		printable(shown, sizeof(shown), u, ulen);
		return deny(why, TP_EDENIED, "user \"%s\" is not the proxy "
		    "user \"%s\"", shown, s->user);
	}
	return 0;
}

/* Which of our identities a key blob is: IDENT_KEY, IDENT_CERT or -1. */
enum { IDENT_KEY = 0, IDENT_CERT = 1 };

static int
identity_of(const struct signer *s, const uint8_t *blob, size_t len)
{
	const uint8_t *pub, *cert;
	size_t publen, certlen;

	pub = sshkey_pub_blob(s->key, &publen);
	cert = sshkey_cert_blob(s->key, &certlen);
	if (len == publen && memcmp(blob, pub, publen) == 0)
		return IDENT_KEY;
	if (cert != NULL && len == certlen && memcmp(blob, cert, certlen) == 0)
		return IDENT_CERT;
	return -1;
}

/*
 * The tail of the request: algorithm and key blob.  The key in the data
 * must be the identity asked to sign -- or our certificate when the plain
 * key was asked: OpenSSH's ssh signs a certificate's request with the
 * matching plain key when the agent lists both (the signature is the
 * same either way).  The algorithm is the signature algorithm the flags
 * select, with the certificate suffix when the data names the certificate.
 */
static int
check_key_alg(const struct signer *s, struct sshbuf_reader *r, int asked,
    const char *sigalg, char *why)
{
	const uint8_t *alg, *kb;
	size_t alglen, kblen;
	char want[96], shown[48];
	int named;

	if (sshbuf_get_string(r, &alg, &alglen) != 0 ||
	    sshbuf_get_string(r, &kb, &kblen) != 0)
		return deny(why, TP_EDENIED, "truncated userauth request");
	named = identity_of(s, kb, kblen);
	if (named < 0 || (named != asked && asked == IDENT_CERT))
		return deny(why, TP_EDENIED, "key in the request differs from "
		    "the key asked to sign");
	snprintf(want, sizeof(want), "%s%s", sigalg,
	    named == IDENT_CERT ? CERT_SUFFIX : "");
	if (alglen != strlen(want) || memcmp(alg, want, alglen) != 0) {
		printable(shown, sizeof(shown), alg, alglen);
		return deny(why, TP_EDENIED, "algorithm \"%s\" is not %s",
		    shown, want);
	}
	return 0;
}

/*
 * The data to sign must be exactly what an SSH client signs for publickey
 * user authentication (RFC 4252 section 7), for our user, our key and the
 * algorithm the key and flags imply -- nothing that could be replayed as
 * anything else.
 */
static int
check_userauth(const struct signer *s, const uint8_t *data, size_t len,
    int asked, const char *sigalg, const uint8_t **sid, size_t *sidlen,
    char *why)
{
	struct sshbuf_reader r;
	uint8_t type, sigflag;
	int rc;

	sshbuf_reader_init(&r, data, len);
	if (sshbuf_get_string(&r, sid, sidlen) != 0 || *sidlen == 0 ||
	    *sidlen > SESSION_ID_MAX || sshbuf_get_u8(&r, &type) != 0 ||
	    type != SSH2_MSG_USERAUTH_REQUEST)
		return deny(why, TP_EDENIED, "data is not a userauth request");
	if ((rc = check_user(s, &r, why)) != 0)
		return rc;
	if (sshbuf_expect_cstring(&r, "ssh-connection") != 0)
		return deny(why, TP_EDENIED, "service is not ssh-connection");
	if (sshbuf_expect_cstring(&r, "publickey") != 0)
		return deny(why, TP_EDENIED, "method is not publickey");
	if (sshbuf_get_u8(&r, &sigflag) != 0 || sigflag != 1)
		return deny(why, TP_EDENIED, "not a signed publickey request");
	if ((rc = check_key_alg(s, &r, asked, sigalg, why)) != 0)
		return rc;
	if (r.len != 0)
		return deny(why, TP_EDENIED, "%zu trailing bytes after the "
		    "userauth request", r.len);
	return 0;
}

/*
 * The one-shot rule of a connection (NULL: none, signer_handle): each
 * identity once, and every signature for the session of the first.
 */
static int
check_once(const struct auth_once *once, int asked, const uint8_t *sid,
    size_t sidlen, char *why)
{
	if (once == NULL)
		return 0;
	if (once->need_bind && !once->bound)
		return deny(why, TP_EDENIED, "the session is not bound");
	if (once->signed_mask & (1u << asked))
		return deny(why, TP_EDENIED, "a second signature for the same "
		    "identity");
	if (once->sid_len != 0 && (sidlen != once->sid_len ||
	    memcmp(sid, once->sid, sidlen) != 0))
		return deny(why, TP_EDENIED, once->bound ? "session id is not "
		    "the bound session's" : "session id differs from the first "
		    "signature's");
	return 0;
}

/* SSH_AGENTC_SIGN_REQUEST: string key blob, string data, uint32 flags. */
static int
sign_request(struct signer *s, struct auth_once *once, const uint8_t *p,
    size_t len, struct sshbuf_writer *reply, char *why)
{
	struct sshbuf_reader r;
	const uint8_t *blob, *data, *sid;
	size_t bloblen, datalen, siglen, sidlen;
	const char *sigalg;
	uint8_t *sig;
	uint32_t flags;
	int asked, rc;

	sshbuf_reader_init(&r, p, len);
	if (sshbuf_get_string(&r, &blob, &bloblen) != 0 ||
	    sshbuf_get_string(&r, &data, &datalen) != 0 ||
	    sshbuf_get_u32(&r, &flags) != 0)
		return deny(why, TP_ETRUNC, "truncated sign request");
	if (r.len != 0)
		return deny(why, TP_EPROTO, "trailing bytes in sign request");
	if ((asked = identity_of(s, blob, bloblen)) < 0)
		return deny(why, TP_EDENIED, "key is not the node key");
	if ((sigalg = sshkey_sig_alg(s->key, flags)) == NULL)
		return deny(why, TP_EDENIED, "flags 0x%x not acceptable for %s",
		    flags, sshkey_type_name(s->key));
	if ((rc = check_userauth(s, data, datalen, asked, sigalg, &sid,
	    &sidlen, why)) != 0 ||
	    (rc = check_once(once, asked, sid, sidlen, why)) != 0)
		return rc;
	if ((rc = sshkey_sign(s->key, data, datalen, flags, &sig,
	    &siglen)) != 0)
		return deny(why, rc, "signing failed: %s", tp_strerror(rc));
	sshbuf_put_u8(reply, SSH_AGENT_SIGN_RESPONSE);
	sshbuf_put_string(reply, sig, siglen);
	free(sig);
	s->signatures++;
	if (once != NULL) {
		once->signed_mask |= 1u << asked;
		memcpy(once->sid, sid, sidlen);
		once->sid_len = sidlen;
	}
	return 0;
}

/* SSH_AGENT_IDENTITIES_ANSWER: the certificate (if any), then the key. */
static void
identities(const struct signer *s, struct sshbuf_writer *reply)
{
	const uint8_t *pub, *cert;
	size_t publen, certlen;
	const char *comment = sshkey_comment(s->key);

	if (comment[0] == '\0')
		comment = "tunnelpool";
	pub = sshkey_pub_blob(s->key, &publen);
	cert = sshkey_cert_blob(s->key, &certlen);
	sshbuf_put_u8(reply, SSH_AGENT_IDENTITIES_ANSWER);
	sshbuf_put_u32(reply, cert != NULL ? 2 : 1);
	if (cert != NULL) {
		sshbuf_put_string(reply, cert, certlen);
		sshbuf_put_cstring(reply, comment);
	}
	sshbuf_put_string(reply, pub, publen);
	sshbuf_put_cstring(reply, comment);
}

static const char *
request_name(uint8_t type, char *buf, size_t cap)
{
	if (type == SSH_AGENTC_REQUEST_IDENTITIES)
		return "identities request";
	if (type == SSH_AGENTC_SIGN_REQUEST)
		return "sign request";
	snprintf(buf, cap, "request type %u", type);
	return buf;
}

/* Counts, logs (rate-limited) and answers a refused request. */
static void
refuse(struct signer *s, const struct log_agent *who, uint8_t type,
    const char *why, struct sshbuf_writer *reply)
{
	char name[32];

	s->refusals++;
	if (!ratelimit_take(&s->log_rl, tp_now_ms()))
		s->log_suppressed++;
	else if (s->log_suppressed > 0) {
		log_emit(LOG_LVL_WARN, __func__, who, NULL, "refused agent %s: "
		    "%s (%llu similar lines suppressed)",
		    request_name(type, name, sizeof(name)), why,
		    (unsigned long long)s->log_suppressed);
		s->log_suppressed = 0;
	} else
		log_emit(LOG_LVL_WARN, __func__, who, NULL, "refused agent %s: "
		    "%s", request_name(type, name, sizeof(name)), why);
	sshbuf_put_u8(reply, SSH_AGENT_FAILURE);
}

/* SSH_AGENTC_REQUEST_IDENTITIES: no payload; once per connection. */
static int
identities_request(struct auth_once *once, size_t len, char *why)
{
	if (len != 1)
		return deny(why, TP_EPROTO, "trailing bytes in identities "
		    "request");
	if (once != NULL && once->listed)
		return deny(why, TP_EDENIED, "identities already listed");
	if (once != NULL)
		once->listed = true;
	return 0;
}

/* The whole request path; once is the connection's one-shot state or NULL. */
static int
signer_process(struct signer *s, const struct log_agent *who,
    struct auth_once *once, const uint8_t *req, size_t len,
    struct sshbuf_writer *reply)
{
	char why[WHY_LEN];
	uint8_t type = len > 0 ? req[0] : 0;
	int rc;

	if (len == 0)
		rc = deny(why, TP_EPROTO, "empty request");
	else if (once != NULL && once->over)
		rc = deny(why, TP_EDENIED, "the worker's authentication is over");
	else if (type == SSH_AGENTC_REQUEST_IDENTITIES)
		rc = identities_request(once, len, why);
	else if (type == SSH_AGENTC_SIGN_REQUEST)
		rc = sign_request(s, once, req + 1, len - 1, reply, why);
	else
		rc = deny(why, TP_EUNSUPP, "unsupported request type");
	if (rc == 0 && type == SSH_AGENTC_REQUEST_IDENTITIES)
		identities(s, reply);
	else if (rc == 0)
		log_emit(LOG_LVL_DEBUG, __func__, who, NULL, "signed userauth "
		    "request for user %s", s->user);
	else
		refuse(s, who, type, why, reply);
	if (sshbuf_writer_error(reply) != 0)
		return sshbuf_writer_error(reply);
	return rc;
}

int
signer_handle(struct signer *s, const uint8_t *req, size_t len,
    struct sshbuf_writer *reply)
{
	return signer_process(s, NULL, NULL, req, len, reply);
}

/* ---- connections ---- */

/* Reports the end of the connection once; the callee may free c. */
static void
conn_fail(struct signer_conn *c, const char *why)
{
	if (c->dead)
		return;
	c->dead = 1;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	snprintf(c->why, sizeof(c->why), "%s", why);
	c->on_error(c->arg, c->why);
}

/* Handles one complete frame body and queues the framed reply. */
static int
conn_request(struct signer_conn *c, const uint8_t *req, size_t len)
{
	struct sshbuf_writer w;
	int rc;

	sshbuf_writer_init(&w, SIGNER_REPLY_MAX);
	sshbuf_put_u32(&w, 0);		/* length, patched below */
	rc = signer_process(c->s, c->who, &c->once, req, len, &w);
	if (sshbuf_writer_error(&w) == 0) {
		w.p[0] = (uint8_t)((w.len - 4) >> 24);
		w.p[1] = (uint8_t)((w.len - 4) >> 16);
		w.p[2] = (uint8_t)((w.len - 4) >> 8);
		w.p[3] = (uint8_t)(w.len - 4);
		rc = bufferevent_write(c->bev, w.p, w.len) == 0 ? 0 : TP_ENOMEM;
	} else
		rc = sshbuf_writer_error(&w);
	sshbuf_writer_free(&w);
	return rc == TP_ENOMEM || rc == TP_ETOOBIG ? rc : 0;
}

/*
 * Handles every complete frame in the input buffer.  Returns 0, or -1
 * after on_error (c may be gone).  Stops early, with reading disabled,
 * when the worker does not read its replies.
 */
static int
conn_drain(struct signer_conn *c, struct evbuffer *in)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	uint8_t hdr[4];
	uint32_t len;
	uint8_t *body;

	while (evbuffer_get_length(in) >= sizeof(hdr)) {
		if (evbuffer_get_length(out) > CONN_OUT_HIGH) {
			c->paused = 1;
			bufferevent_disable(c->bev, EV_READ);
			return 0;
		}
		evbuffer_copyout(in, hdr, sizeof(hdr));
		len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
		    (uint32_t)hdr[2] << 8 | hdr[3];
		if (len > SIGNER_REQUEST_MAX) {
			conn_fail(c, "request too large");
			return -1;
		}
		if (evbuffer_get_length(in) < sizeof(hdr) + len)
			return 0;
		evbuffer_drain(in, sizeof(hdr));
		body = evbuffer_pullup(in, len);
		if (len > 0 && body == NULL) {
			conn_fail(c, "out of memory");
			return -1;
		}
		if (conn_request(c, body, len) != 0) {
			conn_fail(c, "cannot queue reply");
			return -1;
		}
		evbuffer_drain(in, len);
	}
	return 0;
}

static void
conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct signer_conn *c = arg;

	if (!c->dead)
		conn_drain(c, bufferevent_get_input(c->bev));
}

/* The output fell below the low watermark: resume a paused connection. */
static void
conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct signer_conn *c = arg;

	if (c->dead || !c->paused)
		return;
	c->paused = 0;
	if (conn_drain(c, bufferevent_get_input(c->bev)) == 0 && !c->paused)
		bufferevent_enable(c->bev, EV_READ);
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct signer_conn *c = arg;
	char why[96];

	if (what & BEV_EVENT_EOF)
		conn_fail(c, "eof");
	else if (what & BEV_EVENT_ERROR) {
		snprintf(why, sizeof(why), "%s error: %s",
		    (what & BEV_EVENT_READING) ? "read" : "write",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		conn_fail(c, why);
	}
}

struct signer_conn *
signer_conn_new(struct signer *s, struct event_base *base, int fd,
    const struct log_agent *who, void (*on_error)(void *arg, const char *why),
    void *arg)
{
	struct signer_conn *c;

	if (s == NULL || base == NULL || fd < 0 || on_error == NULL)
		return NULL;
	if (evutil_make_socket_nonblocking(fd) == -1 ||
	    (c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	c->s = s;
	c->fd = fd;
	c->who = who;
	c->on_error = on_error;
	c->arg = arg;
	if ((c->bev = bufferevent_socket_new(base, fd, 0)) == NULL) {
		free(c);
		return NULL;
	}
	/*
	 * Never buffer more than one maximal frame from the worker, and be
	 * told when queued replies have drained (see conn_drain).
	 */
	bufferevent_setwatermark(c->bev, EV_READ, 0, 4 + SIGNER_REQUEST_MAX);
	bufferevent_setwatermark(c->bev, EV_WRITE, CONN_OUT_LOW, 0);
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb,
	    c);
	if (bufferevent_enable(c->bev, EV_READ | EV_WRITE) == -1) {
		bufferevent_free(c->bev);
		free(c);
		return NULL;
	}
	return c;
}

void
signer_conn_require_bind(struct signer_conn *c)
{
	c->once.need_bind = true;
}

int
signer_conn_bind(struct signer_conn *c, const uint8_t *sid, size_t len)
{
	if (len == 0 || len > SESSION_ID_MAX)
		return TP_EINVAL;
	if (c->once.bound || c->once.signed_mask != 0 || c->once.over)
		return TP_ESTATE;
	memcpy(c->once.sid, sid, len);
	c->once.sid_len = len;
	c->once.bound = true;
	return 0;
}

unsigned
signer_conn_end(struct signer_conn *c)
{
	struct signer *s;
	struct evbuffer *in;
	uint64_t before;

	if (c == NULL)
		return 0;
	s = c->s;
	before = s->refusals;
	c->once.over = true;
	/* No callback from here on: the caller frees c itself. */
	c->dead = 1;
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	/*
	 * What the worker sent and nobody read yet is refused (and counted),
	 * never answered: a request racing the claim gains nothing.
	 */
	/* The bufferevent's input only takes what it reads itself: a copy. */
	if ((in = evbuffer_new()) != NULL) {
		evbuffer_add_buffer(in, bufferevent_get_input(c->bev));
		while (evbuffer_get_length(in) <= 4 + SIGNER_REQUEST_MAX &&
		    evbuffer_read(in, c->fd, 65536) > 0)
			;
		(void)conn_drain(c, in);
		evbuffer_free(in);
	}
	signer_conn_free(c);
	return (unsigned)(s->refusals - before);
}

void
signer_conn_free(struct signer_conn *c)
{
	if (c == NULL)
		return;
	bufferevent_free(c->bev);
	close(c->fd);
	free(c);
}
