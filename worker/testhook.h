/*
 * The worker's seam to test-hook fault injection (worker/testhook.c, built
 * only with -Dtest_hooks=true).  The worker calls these at the places a
 * hook acts; in production builds they expand to nothing and
 * TESTHOOK_HANDLER adds no row, so the worker compiles to no hook code at
 * all (MSG_TEST_HOOK itself does not exist there: proto/msg.c).
 */
#ifndef TP_WORKER_TESTHOOK_H
#define TP_WORKER_TESTHOOK_H

#include <stdbool.h>

#include "proto/msg.h"

struct report;

#ifdef TP_TEST_HOOKS
/*
 * What the hooks act on: the control channel and identity, the session's
 * host-key fingerprint (a string that lives as long as the worker) and the
 * CONFIG it will receive.  Once, at start.
 */
void testhook_init(struct report *rep, const char *fp,
    const struct msg_config *cfg);

/* The receive-table handler of MSG_TEST_HOOK; TP_EINVAL for an unknown action. */
int recv_test_hook(void *ctx, struct msg *m);

/* At CLOSE, before it is handled: what a close-race hook sends late. */
void testhook_close(void);

/* At the claim: true if a close-race hook holds the CLAIM until CLOSE. */
bool testhook_hold_claim(void);

/* At the session bind, before it is sent: may alter it, or sign first. */
void testhook_bind(struct msg_session_bind *b);

/* The receive-table row, accepted in the given receiver states. */
#define TESTHOOK_HANDLER(states) \
	{ MSG_TEST_HOOK, (states), 0, 0, recv_test_hook },

#else
/*
 * Production: nothing, not even an empty function (whose name would
 * still be in the debug information).
 */
#define testhook_init(rep, fp, cfg)	((void)0)
#define testhook_close()		((void)0)
#define testhook_hold_claim()		false
#define testhook_bind(b)		((void)0)
#define TESTHOOK_HANDLER(states)

#endif

#endif
