/*
 * A non-blocking connect with a deadline on the supervisor's loop: the
 * proxy dial before a worker starts (spawn.c) and the target dial of a
 * forwarded channel (dialer.c).
 */
#ifndef TP_ACONNECT_H
#define TP_ACONNECT_H

#include <sys/socket.h>
#include <stdint.h>
#include <event2/event.h>

/*
 * Creates a non-blocking, close-on-exec stream socket in *fdp and starts
 * connecting it to sa.  Returns 0 when *evp now waits for the end of the
 * connect (EV_WRITE, at most timeout_ms): cb(fd, what, arg) runs once,
 * from the loop even when the connect completed at once, and
 * aconnect_result gives the outcome.  Otherwise returns the errno of what
 * failed.  *fdp and *evp stay the caller's to release (close, event_free)
 * on every path.
 */
int aconnect_start(struct event_base *base, const struct sockaddr *sa,
    socklen_t salen, uint64_t timeout_ms, int *fdp, struct event **evp,
    event_callback_fn cb, void *arg);

/*
 * In the callback: frees *evp and returns 0 when fd is connected, else an
 * errno (ETIMEDOUT when the deadline passed).
 */
int aconnect_result(evutil_socket_t fd, short what, struct event **evp);

#endif
