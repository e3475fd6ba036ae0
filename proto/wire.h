/*
 * Datagram transport of messages over a SOCK_SEQPACKET socketpair, with
 * file descriptors passed by SCM_RIGHTS.
 */
#ifndef TP_PROTO_WIRE_H
#define TP_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

/* At most this many descriptors are accepted (then closed) in one datagram. */
#define PROTO_MAX_FDS	4

/*
 * Encodes and sends m on sock, with m->fd attached when it is >= 0 (the fd
 * stays owned by the caller).  Never raises SIGPIPE.  Returns 0,
 * TP_EAGAIN (socket full), TP_ECLOSED, TP_ESYS, or an encoder error.
 */
int proto_send(int sock, const struct msg *m);

/*
 * Sends len bytes as one datagram, with fd attached when it is >= 0:
 * proto_send's transport, with no encoding and no fd rule (the worker's
 * test hooks send malformed datagrams through it).  Same returns.
 */
int proto_send_bytes(int sock, const void *buf, size_t len, int fd);

/*
 * Receives one datagram into buf (cap >= PROTO_MAX_MSG).  On success *len is
 * its size and *fd the descriptor that came with it, or -1.  More than one
 * descriptor, a truncated control message or an oversize datagram are
 * errors, and every descriptor received is closed.  Returns 0, TP_EAGAIN,
 * TP_ECLOSED (EOF), TP_ETOOBIG, TP_EFD or TP_ESYS.
 */
int proto_recv(int sock, uint8_t *buf, size_t cap, size_t *len, int *fd);

/* proto_recv + msg_decode; returns 0 or the first error. */
int proto_recv_msg(int sock, enum msg_dir dir, struct msg *m);

#endif
