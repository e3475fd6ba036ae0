/*
 * Is the proxy still there?  TCP cannot tell (a stopped sshd keeps its
 * socket open) and libssh's keepalive reports nothing (LIBSSH-NOTES trap
 * 7), so liveness is our own: every byte read from the proxy counts; after
 * ka_ms of silence we send a keepalive (never while a forward request owns
 * the global-request slot, trap 6); after ka_ms * ka_count of silence the
 * proxy is dead.
 */
#ifndef TP_WORKER_LIVENESS_H
#define TP_WORKER_LIVENESS_H

#include <stdbool.h>
#include <stdint.h>

struct session;

struct liveness {
	uint64_t	ka_ms;
	uint64_t	dead_ms;	/* ka_ms * ka_count */
	uint64_t	last_in;	/* socket byte count at last_rx_ms */
	uint64_t	last_rx_ms;
	uint64_t	ka_sent_ms;	/* 0 = none yet */
	uint64_t	in_at_ka;	/* byte count when the keepalive left */
	bool		ka_out;		/* our keepalive holds the slot */
	uint64_t	keepalives;	/* sent, for the log */
};

/* Starts counting silence at now. */
void liveness_init(struct liveness *l, uint32_t ka_ms, uint32_t ka_count,
    uint64_t now, uint64_t in_bytes);

/* Records the socket's inbound byte count (call after every pump). */
void liveness_note(struct liveness *l, uint64_t now, uint64_t in_bytes);

/* Returns true once the proxy has been silent for ka_ms * ka_count. */
bool liveness_dead(const struct liveness *l, uint64_t now);

/*
 * Sends a keepalive when idle and the global-request slot is free, and
 * frees the slot once its reply is in.  enabled = false only collects.
 */
void liveness_step(struct liveness *l, struct session *ss, uint64_t now,
    bool enabled);

/* Milliseconds since the last inbound byte. */
uint64_t liveness_rx_age(const struct liveness *l, uint64_t now);

/* The next time liveness_step or liveness_dead has something to do. */
uint64_t liveness_next_ms(const struct liveness *l);

#endif
