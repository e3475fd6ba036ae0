/*
 * libssh as the worker's SSH client (read LIBSSH-NOTES.md first).
 *
 * Everything here runs non-blocking on the socket the supervisor connected:
 * the main loop polls the socket and calls back in.  The one blocking piece
 * is the agent socket, which the supervisor's signer answers at once.
 */
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include "common/error.h"
#include "common/log.h"
#include "common/sshpub.h"
#include "proto/msg.h"
#include "proto/workerfd.h"
#include "worker/session.h"

/*
 * libssh only says whether a keepalive got its reply through its log:
 * ssh_send_keepalive() hides the result, and calling it once too often
 * sends another request.  The log callback watches for the two lines the
 * reply produces, so the slot is handed on only when it is really free.
 */
static int	ka_resolved;

static void
libssh_log(int prio, const char *func, const char *buf, void *arg)
{
	if (strstr(buf, "Global request keepalive@openssh.com success") ||
	    strstr(buf, "Global request keepalive@openssh.com failed"))
		ka_resolved = 1;
	/* libssh's own lines go to our log: never its stdio default. */
	log_emit(LOG_LVL_DEBUG, "libssh", NULL, NULL, "%s (prio %d)", buf, prio);
}

/* Options that keep libssh away from files and the user database. */
static int
set_harmless_options(ssh_session s, int sock)
{
	bool no = false;
	socket_t fd = sock;

	if (ssh_options_set(s, SSH_OPTIONS_FD, &fd) < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_PROCESS_CONFIG, &no) < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_USER, "tunnelpool") < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_SSH_DIR, "/nonexistent") < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, "/dev/null") < 0 ||
	    ssh_options_set(s, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null") < 0)
		return TP_EINVAL;
	/*
	 * No SSH_OPTIONS_HOST: without a host name libssh does not even try
	 * to read known_hosts at KEX (it cannot look the host up), and trust
	 * is decided by us from the key anyway.
	 */
	return 0;
}

int
session_prepare(struct session *ss, int sock, int agent)
{
	memset(ss, 0, sizeof(*ss));
	ss->fd = sock;
	/* The sandbox allows TCP_QUICKACK on this one fd number only. */
	ss->quickack = sock == WORKER_FD_PROXY;
	if (ssh_init() < 0)
		return TP_ENOMEM;
	ssh_set_log_callback(libssh_log);
	ssh_set_log_level(SSH_LOG_WARN);
	if ((ss->s = ssh_new()) == NULL)
		return TP_ENOMEM;
	if (set_harmless_options(ss->s, sock) < 0)
		return TP_EINVAL;
	/* ssh_free() closes the agent fd; the proxy socket stays ours. */
	if (ssh_set_agent_socket(ss->s, agent) != SSH_OK)
		return TP_EINVAL;
	ssh_set_counters(ss->s, &ss->sock_ctr, &ss->pkt_ctr);
	ssh_set_blocking(ss->s, 0);
	return 0;
}

static int
set_algos(ssh_session s, enum ssh_options_e opt, const char *v)
{
	return v[0] == '\0' ? 0 : ssh_options_set(s, opt, v);
}

int
session_configure(struct session *ss, const struct msg_config *cfg,
    char *why, size_t cap)
{
	if (cfg->user[0] == '\0' ||
	    ssh_options_set(ss->s, SSH_OPTIONS_USER, cfg->user) < 0) {
		snprintf(why, cap, "bad user name");
		return TP_EINVAL;
	}
	if (set_algos(ss->s, SSH_OPTIONS_CIPHERS_C_S, cfg->ciphers) < 0 ||
	    set_algos(ss->s, SSH_OPTIONS_CIPHERS_S_C, cfg->ciphers) < 0 ||
	    set_algos(ss->s, SSH_OPTIONS_KEY_EXCHANGE, cfg->kex) < 0 ||
	    set_algos(ss->s, SSH_OPTIONS_HOSTKEYS, cfg->hostkeys) < 0) {
		snprintf(why, cap, "unsupported algorithm list: %s",
		    ssh_get_error(ss->s));
		return TP_EINVAL;
	}
	return 0;
}

int
session_connect_step(struct session *ss)
{
	switch (ssh_connect(ss->s)) {
	case SSH_OK:
		return 0;
	case SSH_AGAIN:
		return TP_EAGAIN;
	default:
		return TP_ECLOSED;
	}
}

/* Decodes libssh's base64 export of a key into its wire blob. */
static int
blob_from_base64(const char *b64, uint8_t *out, size_t cap, size_t *len)
{
	size_t in = strlen(b64), pad = 0;
	int n;

	if (in == 0 || in % 4 != 0 || in / 4 * 3 > cap)
		return TP_EPROTO;
	while (pad < 2 && b64[in - 1 - pad] == '=')
		pad++;
	n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)in);
	if (n < 0 || (size_t)n < pad)
		return TP_EPROTO;
	*len = (size_t)n - pad;
	return 0;
}

int
session_load_host_key(struct session *ss)
{
	ssh_key key = NULL;
	char *b64 = NULL;
	int rc = TP_EPROTO;

	/* libssh 0.10 exports no blob function: go through its base64. */
	if (ssh_get_server_publickey(ss->s, &key) != SSH_OK ||
	    ssh_pki_export_pubkey_base64(key, &b64) != SSH_OK)
		goto out;
	if ((rc = blob_from_base64(b64, ss->kex_key, sizeof(ss->kex_key),
	    &ss->kex_key_len)) != 0)
		goto out;
	snprintf(ss->kex_type, sizeof(ss->kex_type), "%s",
	    ssh_key_type_to_char(ssh_key_type(key)));
	/* The supervisor computes fingerprints the same way: one format. */
	rc = sshpub_fingerprint(ss->kex_key, ss->kex_key_len, ss->fp,
	    sizeof(ss->fp));
out:
	ssh_string_free_char(b64);
	ssh_key_free(key);
	return rc;
}

int
session_bind_data(struct session *ss, struct msg_session_bind *b)
{
	const unsigned char *sid, *sig;
	size_t sid_len, sig_len;

	if (ssh_get_session_id(ss->s, &sid, &sid_len) != SSH_OK ||
	    ssh_get_server_kex_signature(ss->s, &sig, &sig_len) != SSH_OK ||
	    sid_len == 0 || sid_len > sizeof(b->sid) || sig_len == 0 ||
	    sig_len > sizeof(b->sig) || ss->kex_key_len == 0 ||
	    ss->kex_key_len > sizeof(b->hostkey))
		return TP_EPROTO;
	memcpy(b->hostkey, ss->kex_key, ss->kex_key_len);
	b->hostkey_len = (uint32_t)ss->kex_key_len;
	memcpy(b->sid, sid, sid_len);
	b->sid_len = (uint32_t)sid_len;
	memcpy(b->sig, sig, sig_len);
	b->sig_len = (uint32_t)sig_len;
	return 0;
}

bool
session_pinned(const struct session *ss, const struct msg_config *cfg)
{
	for (uint32_t i = 0; i < cfg->n_pinned; i++)
		if (strcmp(cfg->pinned[i].fp, ss->fp) == 0)
			return true;
	return false;
}

bool
session_revoked(const struct session *ss, const struct msg_config *cfg)
{
	for (uint32_t i = 0; i < cfg->n_revoked; i++)
		if (strcmp(cfg->revoked[i].fp, ss->fp) == 0)
			return true;
	return false;
}

int
session_auth_step(struct session *ss, const char *user)
{
	(void)user;	/* set as SSH_OPTIONS_USER by session_configure */
	switch (ssh_userauth_agent(ss->s, NULL)) {
	case SSH_AUTH_SUCCESS:
		return 0;
	case SSH_AUTH_AGAIN:
		return TP_EAGAIN;
	case SSH_AUTH_DENIED:
	case SSH_AUTH_PARTIAL:
		return TP_EDENIED;
	default:
		return session_alive(ss) ? TP_EDENIED : TP_ECLOSED;
	}
}

int
session_start_events(struct session *ss)
{
	if ((ss->ev = ssh_event_new()) == NULL)
		return TP_ENOMEM;
	if (ssh_event_add_session(ss->ev, ss->s) != SSH_OK)
		return TP_ENOMEM;
	return 0;
}

short
session_poll_events(const struct session *ss)
{
	return POLLIN | (session_write_pending(ss) ? POLLOUT : 0);
}

bool
session_write_pending(const struct session *ss)
{
	return (ssh_get_poll_flags(ss->s) & SSH_WRITE_PENDING) != 0;
}

/*
 * The worker's poll(2) already saw the socket's events: the patched
 * libssh runs its socket callback for them without a poll of its own
 * (ssh_event_dopoll would add one per wakeup, and one more that finds
 * nothing).  One read of up to 256 KiB per loop turn, then the local fds.
 *
 * After a read of bulk data (QUICKACK_MIN_READ or more), TCP_QUICKACK:
 * the kernel sends the ACK it was holding back now and leaves its
 * delayed-ACK ("pingpong") mode, which it enters because the worker
 * answers what it reads (window adjusts) and which delays the ACKs of bulk
 * data on their way to the proxy.  Measured with one channel to a stock
 * sshd on loopback: the sender's TCP stack then paces less and sshd spends
 * 5-25% less CPU per GiB (docs/worker.md, "ACKs").  The option does not
 * stick (the kernel re-enters the mode), so it is set again after every
 * such read; the filter allows exactly this call.  Smaller reads (window
 * adjusts while the worker sends, interactive traffic) keep the delayed
 * ACK, which rides on the worker's next packet.  A socket that refuses the
 * option (not TCP) is not asked again.
 */
#define QUICKACK_MIN_READ	16384

int
session_pump(struct session *ss, short revents)
{
	uint64_t before = ss->sock_ctr.in_bytes;
	int one = 1;

	(void)ssh_session_handle_revents(ss->s, revents);
	if (ss->quickack &&
	    ss->sock_ctr.in_bytes - before >= QUICKACK_MIN_READ &&
	    setsockopt(ss->fd, IPPROTO_TCP, TCP_QUICKACK, &one,
	    sizeof(one)) != 0)
		ss->quickack = false;
	return session_alive(ss) ? 0 : TP_ECLOSED;
}

void
session_trim(struct session *ss)
{
	if (ss->s != NULL)
		ssh_session_shrink_buffers(ss->s);
	/*
	 * Give freed heap back: the top of the heap with brk, free pages
	 * inside it with madvise(MADV_DONTNEED) (docs/sandbox.md).
	 */
	(void)malloc_trim(0);
}

bool
session_alive(const struct session *ss)
{
	return ssh_is_connected(ss->s) &&
	    (ssh_get_status(ss->s) & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0;
}

uint64_t
session_in_bytes(const struct session *ss)
{
	return ss->sock_ctr.in_bytes;
}

const char *
session_error(const struct session *ss)
{
	return ssh_get_error(ss->s);
}

bool
session_keepalive_send(struct session *ss)
{
	ka_resolved = 0;
	/* PROTOCOL level makes libssh log the "success" reply too. */
	ssh_set_log_level(SSH_LOG_PROTOCOL);
	ssh_send_keepalive(ss->s);
	return session_keepalive_resolve(ss);
}

bool
session_keepalive_resolve(struct session *ss)
{
	if (!ka_resolved)
		ssh_send_keepalive(ss->s);	/* collects a reply, sends nothing */
	if (!ka_resolved)
		return false;
	ssh_set_log_level(SSH_LOG_WARN);
	return true;
}

void
session_disconnect(struct session *ss)
{
	if (ss->s == NULL)
		return;
	if (ss->ev != NULL) {
		ssh_event_remove_session(ss->ev, ss->s);
		ssh_event_free(ss->ev);
		ss->ev = NULL;
	}
	ssh_disconnect(ss->s);
	ssh_free(ss->s);
	ss->s = NULL;
}
