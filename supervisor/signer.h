/*
 * The ssh-agent protocol server that lets workers authenticate with the
 * node's key without ever holding it (draft-miller-ssh-agent).
 *
 * It lists exactly the configured identity (the certificate first, if one
 * is configured, then the plain key) and signs nothing but an SSH
 * publickey USERAUTH_REQUEST (RFC 4252 section 7) for the configured user
 * and one of those identities.  Everything else gets SSH_AGENT_FAILURE,
 * a warning and a refusal count.
 *
 * One signer serves every worker; each worker's agent socketpair gets a
 * signer_conn on the supervisor's event loop, which answers only what one
 * authentication needs, once: the identities once, at most one signature
 * per identity, all for the session id of the first, and nothing after
 * the worker's claim, when the supervisor ends the connection
 * (signer_conn_end).  signer_handle applies the policy without that rule.
 */
#ifndef TP_SIGNER_H
#define TP_SIGNER_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct log_agent;
struct sshbuf_writer;
struct sshkey;

/* ssh-agent message numbers used here. */
#define SSH_AGENT_FAILURE		5
#define SSH_AGENTC_REQUEST_IDENTITIES	11
#define SSH_AGENT_IDENTITIES_ANSWER	12
#define SSH_AGENTC_SIGN_REQUEST		13
#define SSH_AGENT_SIGN_RESPONSE		14

/* Largest request body accepted on a connection. */
#define SIGNER_REQUEST_MAX	(256 * 1024)
/* Largest reply body the signer produces (identities + cert). */
#define SIGNER_REPLY_MAX	(128 * 1024)

struct signer;
struct signer_conn;

/*
 * Creates a signer for key (borrowed: it must outlive the signer) and the
 * proxy user name.  Returns NULL if user is empty, longer than 255 bytes,
 * or memory runs out.
 */
struct signer *signer_new(const struct sshkey *key, const char *user);
/* Frees the signer; its connections must be freed first.  NULL is allowed. */
void signer_free(struct signer *s);
/* Changes the proxy user (on reload); returns 0, TP_EINVAL or TP_ENOMEM. */
int signer_set_user(struct signer *s, const char *user);

/*
 * Handles one request body (type byte + payload, without the length
 * prefix) and appends exactly one reply body to reply, unless the writer
 * fails.  Returns 0 when the request was answered positively (identities
 * or a signature), or a negative tp_err giving why it was refused, in
 * which case the reply is SSH_AGENT_FAILURE: TP_EDENIED (policy: other
 * data, user, key, algorithm, flags), TP_EPROTO / TP_ETRUNC (malformed),
 * TP_EUNSUPP (unknown request type), TP_ECRYPTO.  If appending the reply
 * itself failed, returns sshbuf_writer_error(reply) (TP_ENOMEM or
 * TP_ETOOBIG).  Refusals are logged (warn) and counted.
 */
int signer_handle(struct signer *s, const uint8_t *req, size_t len,
    struct sshbuf_writer *reply);

/* Number of requests refused / signatures made since signer_new. */
uint64_t signer_refusals(const struct signer *s);
uint64_t signer_signatures(const struct signer *s);

/*
 * Serves the ssh-agent protocol on fd (one end of a worker's agent
 * socketpair; made non-blocking, owned and closed by the connection) on
 * base.  who (borrowed, must outlive the connection; may be NULL) tags log
 * lines.  on_error(arg, why) is called once when the connection must end:
 * "eof", a read/write error, or a request over SIGNER_REQUEST_MAX; it may
 * free the connection.  Returns NULL on error (fd is then left open).
 */
struct signer_conn *signer_conn_new(struct signer *s, struct event_base *base,
    int fd, const struct log_agent *who,
    void (*on_error)(void *arg, const char *why), void *arg);
/*
 * Session binding (docs/signer.md).  After signer_conn_require_bind, the
 * connection signs nothing until signer_conn_bind names the session --
 * the session id whose server signature the caller has verified -- and
 * then only user-auth requests for that session id.  signer_conn_bind
 * returns 0, TP_EINVAL (length), or TP_ESTATE (bound already, or a
 * signature was made).
 */
void signer_conn_require_bind(struct signer_conn *c);
int signer_conn_bind(struct signer_conn *c, const uint8_t *sid, size_t len);

/*
 * The worker's authentication is over (its CLAIM arrived): every request
 * it sent and the connection has not answered is refused and counted,
 * then the connection is freed and the socketpair closed for good.
 * Returns the number of requests refused this way; NULL is allowed.
 */
unsigned signer_conn_end(struct signer_conn *c);
/* Stops serving and closes the fd; NULL is allowed. */
void signer_conn_free(struct signer_conn *c);

#endif
