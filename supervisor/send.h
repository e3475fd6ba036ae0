/*
 * What the supervisor sends a worker: one send_<msg> per message, named
 * for the worker's recv_<msg>; child_send underneath.  A send that fails
 * ends the worker (child_kill, a protocol violation); the senders return
 * nothing, or 0 / -1 where a caller must stop.
 */
#ifndef TP_SUP_SEND_H
#define TP_SUP_SEND_H

#include <stdbool.h>
#include <stdint.h>

struct child;
struct msg;

/*
 * Sends m now, or queues it behind what waits already (a unix datagram
 * socket holds only 10 messages towards its reader; the queue holds up to
 * 1024, flushed when the socket is writable); an fd travelling with m is
 * duplicated, so the caller closes its own.  Returns 0, or -1 after
 * ending the child (an error, or a full queue: it does not read).
 */
int child_send(struct child *c, struct msg *m);
/* Drops what is queued and the writable event (the control socket closes). */
void send_queue_free(struct child *c);

/*
 * CONFIG: everything the worker needs, from the configuration, the
 * tunnel and known_hosts (trust.c).  Returns 0, or -1 when the child was
 * ended (no trust anchor, too many revoked keys, a failed send).
 */
int send_config(struct child *c);
int send_close(struct child *c, uint32_t deadline_ms, const char *reason);
/* fd >= 0: the dialled connection (ok); fd < 0: error says why not. */
void send_dial_result(struct child *c, uint32_t channel_id, int fd,
    const char *error);
void send_ping(struct child *c, uint64_t seq);
void send_claim_result(struct child *c, bool granted, const char *reason);
void send_bind_result(struct child *c, bool ok, const char *reason);
#ifdef TP_TEST_HOOKS
int send_test_hook(struct child *c, uint32_t action);
#endif

#endif
