/*
 * The SSH session to the proxy: libssh setup that touches no file, the
 * handshake, the host key libssh saw in the key exchange, user-auth through
 * the supervisor's agent socket, the event pump, and the arbitration of
 * global requests (LIBSSH-NOTES traps 6 and 7: libssh keeps one state for
 * every global request, so forwards and keepalives must take turns).
 */
#ifndef TP_WORKER_SESSION_H
#define TP_WORKER_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libssh/libssh.h>

#include "proto/msg.h"

/* Who owns libssh's single global-request slot. */
enum greq_owner {
	GREQ_NONE = 0,
	GREQ_KEEPALIVE,
	GREQ_FORWARD,
};

struct session {
	ssh_session			 s;
	ssh_event			 ev;		/* after auth */
	int				 fd;		/* the proxy socket */
	bool				 quickack;	/* TCP_QUICKACK after reads */
	struct ssh_counter_struct	 sock_ctr;	/* raw socket bytes */
	struct ssh_counter_struct	 pkt_ctr;	/* payload bytes */
	uint8_t				 kex_key[PROTO_KEYBLOB_MAX];
	size_t				 kex_key_len;
	char				 kex_type[64];
	char				 fp[PROTO_FP_MAX];
	enum greq_owner			 greq;
};

/*
 * Creates the libssh session on the proxy socket and the agent socket and
 * sets every option that would otherwise make libssh read a file or the
 * password database (trap 8).  Runs before the sandbox.  Returns 0,
 * TP_ENOMEM or TP_EINVAL (libssh refused an option).
 */
int session_prepare(struct session *ss, int sock, int agent);

/*
 * Applies CONFIG: user and algorithm lists ("" = libssh default).  Returns
 * 0 or TP_EINVAL, with the reason in why.
 */
int session_configure(struct session *ss, const struct msg_config *cfg,
    char *why, size_t cap);

/*
 * Advances the handshake.  Returns 0 when the key exchange is complete,
 * TP_EAGAIN to be called again once the socket is ready, or TP_ECLOSED.
 */
int session_connect_step(struct session *ss);

/*
 * Exports the host key used in the key exchange into kex_key / fp.
 * Returns 0, TP_EPROTO or TP_ENOMEM.
 */
int session_load_host_key(struct session *ss);

/*
 * The session binding (docs/signer.md): fills b with the KEX host key, the
 * session id and the server's signature over it (from the project's
 * libssh, docs/libssh-patch.md).  Returns 0, or TP_EPROTO when libssh has
 * none of it (before the key exchange) or it does not fit.
 */
int session_bind_data(struct session *ss, struct msg_session_bind *b);

/* Returns true if the KEX host key's fingerprint is in CONFIG.pinned. */
bool session_pinned(const struct session *ss, const struct msg_config *cfg);
/* True if the KEX host key is listed as @revoked: never trusted. */
bool session_revoked(const struct session *ss, const struct msg_config *cfg);

/*
 * Advances user-auth through the agent.  Returns 0 (authenticated),
 * TP_EAGAIN, TP_EDENIED (the proxy refused every identity) or TP_ECLOSED.
 */
int session_auth_step(struct session *ss, const char *user);

/* Switches to the event pump used once authenticated; 0 or TP_ENOMEM. */
int session_start_events(struct session *ss);

/* poll(2) events the proxy socket needs now (POLLIN, + POLLOUT if queued). */
short session_poll_events(const struct session *ss);

/* True while libssh has output the socket has not taken yet. */
bool session_write_pending(const struct session *ss);

/*
 * Lets libssh read, process and flush what revents (the loop's poll(2) of
 * the socket) allow; callbacks run inside.  Returns 0, or TP_ECLOSED once
 * the connection is gone.
 */
int session_pump(struct session *ss, short revents);

/*
 * Returns what an idle session keeps allocated: libssh's empty buffers
 * (the 256 KiB read buffer after a burst) and the free heap.  Costs a few
 * syscalls; call it when the worker goes idle, not per loop turn.
 */
void session_trim(struct session *ss);

/* True while the connection is usable. */
bool session_alive(const struct session *ss);

/* Bytes read from the proxy socket so far (liveness). */
uint64_t session_in_bytes(const struct session *ss);

/* libssh's last error message. */
const char *session_error(const struct session *ss);

/*
 * Sends keepalive@openssh.com; the caller owns the global-request slot
 * (GREQ_KEEPALIVE).  Returns true if the reply already arrived.
 */
bool session_keepalive_send(struct session *ss);

/*
 * Collects the keepalive's reply if it arrived.  Returns true when the
 * global-request slot is free again.
 */
bool session_keepalive_resolve(struct session *ss);

/* Sends SSH_MSG_DISCONNECT (best effort) and frees the session. */
void session_disconnect(struct session *ss);

#endif
