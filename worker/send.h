/*
 * Everything the worker sends the supervisor, one send_<msg> per message,
 * named for the message whose handler on the other side is recv_<msg>
 * (supervisor/), as the worker's own handlers of the supervisor's messages
 * are recv_<msg> in worker.c: one grep for a message's name finds both
 * ends.  The receive side mirrors this file: worker.c's handler table.
 *
 * Every sender but send_sandbox_violation goes through one transport on
 * the control socket (struct report's ctl), which waits up to
 * REPORT_SEND_MS for room and ends the worker with WEXIT_SUPERVISOR_GONE
 * when the supervisor is gone or does not read (WEXIT_INTERNAL if the
 * encoder refuses the message: our bug).  They never return an error.
 *
 * Small messages take their fields; the two large ones (DISCOVERY, about
 * 50 KiB, and SESSION_BIND) take the whole message their owner built, so
 * that it is not copied again.  Test-hook builds send malformed messages
 * past this file on purpose (worker/testhook.c): nothing else may.
 */
#ifndef TP_WORKER_SEND_H
#define TP_WORKER_SEND_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/msg.h"

struct report;

/* READY: the protocol version and the sandbox backend now in force. */
void send_ready(struct report *r, const char *sandbox);

/*
 * STATE: state, reason and code, with the trusted host key and announced
 * name r holds (report_state decides when; it is the only caller).
 */
void send_state(struct report *r, uint32_t state, const char *reason,
    uint32_t code);

/* CLAIM: the authenticated host key and the name the proxy announced. */
void send_claim(struct report *r, const char *fp, const char *name);

/* DISCOVERY: m is a whole MSG_DISCOVERY (the cluster's full proxy set). */
void send_discovery(struct report *r, const struct msg *m);

/* DIAL_REQUEST: a forwarded channel arrived on forward fwd_id. */
void send_dial_request(struct report *r, uint32_t fwd_id, uint32_t ch_id,
    const char *orig_host, uint32_t orig_port);

/* STATS: the periodic counters. */
void send_stats(struct report *r, const struct msg_stats *st);

/* PONG: the answer to PING seq. */
void send_pong(struct report *r, uint64_t seq);

/* FORWARD: one remote forward bound (on port) or not (with error). */
void send_forward(struct report *r, uint32_t id, bool bound, uint32_t port,
    const char *error);

/*
 * SANDBOX_VIOLATION on fd, from the trap-mode SIGSYS handler:
 * async-signal-safe (proto's msg_encode_sandbox_violation into a fixed
 * buffer, one non-blocking send), best effort, and not through the
 * transport above: the worker exits right after.
 */
void send_sandbox_violation(int fd, uint32_t nr, const char *name);

/* SESSION_BIND: m is a whole MSG_SESSION_BIND (before user-auth). */
void send_session_bind(struct report *r, const struct msg *m);

#endif
