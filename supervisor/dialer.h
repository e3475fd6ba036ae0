/*
 * Dialer: a worker that received a forwarded channel asks for a connection
 * to a local target; the supervisor dials the tunnel's own forward (never
 * an address the worker chose) and passes the fd back (dialer.c).  The
 * dials of a child are the dialer's: the child only holds them.
 */
#ifndef TP_SUP_DIALER_H
#define TP_SUP_DIALER_H

#include "common/ratelimit.h"
#include "proto/msg.h"

struct child;
struct config;
struct dial;

/* A child's dials: pending ones and its token bucket (worker.dial_rate). */
struct child_dials {
	struct dial		*list;
	unsigned		 n;
	struct ratelimit	 rl;
};

/* Empty, with a full bucket; returns 0 or TP_EINVAL (bad rate). */
int dialer_init(struct child_dials *d, const struct config *cfg);
/*
 * A DIAL_REQUEST from c, answered with DIAL_RESULT from the loop (always
 * from a fresh turn when it fails).  Returns 0, or a tp_err for a
 * request a correct worker never sends (a protocol violation): a forward
 * id it was not given, more dials than worker.max_channels.
 */
int dialer_request(struct child *c, const struct msg_dial_request *r);
/* Cancels every pending dial of c (teardown). */
void dialer_cancel_all(struct child *c);

#endif
