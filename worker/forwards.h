/*
 * The tunnel's remote forwards (tcpip-forward), requested one at a time
 * (libssh has one global-request slot, LIBSSH-NOTES trap 6) and retried
 * with backoff while the proxy refuses them, typically because a dead
 * session of ours still holds the port.  The connection stays up
 * meanwhile; FORWARD messages and the "forward pending" reason say so.
 */
#ifndef TP_WORKER_FORWARDS_H
#define TP_WORKER_FORWARDS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/backoff.h"
#include "proto/msg.h"

struct report;
struct session;

#define FWD_RETRY_MIN_MS	500
#define FWD_RETRY_MAX_MS	15000

enum fwd_state {
	FWD_WANTED = 0,		/* to be requested at next_ms */
	FWD_REQUESTING,		/* our request holds the global slot */
	FWD_BOUND,
	FWD_CANCELLING,		/* closing: cancel-tcpip-forward in flight */
	FWD_DONE,		/* closing: cancelled or never bound */
};

struct fwd {
	struct msg_forward_spec	 spec;
	enum fwd_state		 state;
	uint32_t		 port;		/* bound port */
	struct backoff		 bo;
	uint64_t		 next_ms;
	bool			 answered;	/* had at least one reply */
};

struct forwards {
	uint32_t	 n;
	struct fwd	 f[PROTO_MAX_FORWARDS];
	bool		 pending_reported;	/* last STATE said "forward pending" */
};

/* Takes the forwards from CONFIG; all are to be requested at once. */
void forwards_init(struct forwards *fw, const struct msg_config *cfg);

/*
 * Requests, polls and retries forwards, one global request at a time, and
 * reports each outcome with FORWARD.  Returns true when some forward
 * changed state (the caller re-evaluates its STATE reason).
 */
bool forwards_step(struct forwards *fw, struct session *ss,
    struct report *rep, uint64_t now);

/* True once every forward had at least one reply. */
bool forwards_all_answered(const struct forwards *fw);

/* True when every forward is bound. */
bool forwards_all_bound(const struct forwards *fw);

/*
 * Finds the forward listening on port (bound, or requested on that fixed
 * port with the reply not seen yet); returns true and its id.
 */
bool forwards_match(const struct forwards *fw, uint32_t port, uint32_t *id);

/* The next retry time, or UINT64_MAX. */
uint64_t forwards_next_ms(const struct forwards *fw);

/*
 * Closing: cancels bound forwards one global request at a time and gives
 * up on the others.  Returns true once nothing is left in flight.
 */
bool forwards_cancel_step(struct forwards *fw, struct session *ss);

#endif
