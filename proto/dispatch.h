/*
 * The receive path, one function: look up, check, decode, handle.
 *
 * Each receiving side has one table saying which message it accepts, in
 * which of its states, how often, and which handler runs.  Anything not in
 * the table, sent in the wrong state, sent twice when once-only, sent too
 * often, or malformed is an error that the caller turns into "end this
 * worker" (supervisor side) or "exit" (worker side).
 */
#ifndef TP_PROTO_DISPATCH_H
#define TP_PROTO_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"

#define PH_ONCE		0x1	/* at most once per peer */
#define PROTO_MAX_HANDLERS	32

struct proto_handler {
	uint32_t	 type;
	uint32_t	 states;	/* bitmask: 1u << receiver state */
	unsigned	 flags;		/* PH_ONCE */
	uint32_t	 max_per_sec;	/* 0 = unlimited */
	int		(*handle)(void *ctx, struct msg *m);
};

/* Per-peer bookkeeping for once-only and rate checks; zero-initialise. */
struct proto_peer {
	uint64_t	once_seen;
	uint64_t	window_ms;
	uint32_t	count[PROTO_MAX_HANDLERS];
	uint64_t	received;
};

/*
 * Dispatches one datagram.  scratch holds the decoded message while the
 * handler runs.  On error *why names the violation for the log, any fd is
 * closed, and the return value is a tp_err; a handler's own negative return
 * is passed through with *why = "handler failed".
 */
int proto_dispatch(const struct proto_handler *tbl, size_t n,
    struct proto_peer *peer, uint32_t state, enum msg_dir dir,
    const uint8_t *buf, size_t len, int fd, uint64_t now_ms,
    struct msg *scratch, void *ctx, const char **why);

#endif
