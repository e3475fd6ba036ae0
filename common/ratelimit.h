/*
 * Token bucket: `rate` events per second with a burst of `burst`.  The
 * supervisor's global spawn limiter uses it so that a restart of every
 * proxy does not become a reconnect storm.
 */
#ifndef TP_RATELIMIT_H
#define TP_RATELIMIT_H

#include <stdint.h>

/* Integer micro-tokens: a float bucket drifts and loses events over time. */
struct ratelimit {
	uint64_t	per_ms;		/* micro-tokens added per millisecond */
	uint64_t	burst;		/* bucket size in micro-tokens */
	uint64_t	tokens;		/* micro-tokens */
	uint64_t	last_ms;
};

/* Returns 0 or TP_EINVAL. The bucket starts full. */
int ratelimit_init(struct ratelimit *r, double rate, double burst,
    uint64_t now_ms);
/* Takes one token: returns 1 if allowed now, 0 if not. */
int ratelimit_take(struct ratelimit *r, uint64_t now_ms);
/* Milliseconds until a token is available (0 if one is now). */
uint64_t ratelimit_wait_ms(struct ratelimit *r, uint64_t now_ms);

#endif
