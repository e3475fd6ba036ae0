/*
 * Exponential backoff with full jitter, per key.
 *
 * The n-th consecutive failure waits a uniformly random time in
 * [min, min(max, min * 2^n)].  A connection that lasted at least
 * reset_after resets the sequence, so a flapping proxy is throttled while
 * a long-lived one that drops reconnects quickly.
 */
#ifndef TP_BACKOFF_H
#define TP_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint64_t	min_ms;
	uint64_t	max_ms;
	uint64_t	reset_after_ms;
	unsigned	attempt;	/* consecutive failures so far */
	uint64_t	up_since_ms;	/* 0 when not connected */
};

/* Initialises b; returns 0 or TP_EINVAL when min is 0 or min > max. */
int backoff_init(struct backoff *b, uint64_t min_ms, uint64_t max_ms,
    uint64_t reset_after_ms);
/* Records that a connection came up at now_ms. */
void backoff_up(struct backoff *b, uint64_t now_ms);
/*
 * Records a loss at now_ms and returns the delay before the next attempt.
 * rnd is a uniform random 32-bit value (arc4random() in production; tests
 * pass chosen values to check the bounds).
 */
uint64_t backoff_next(struct backoff *b, uint64_t now_ms, uint32_t rnd);
/* Upper bound of the delay the next backoff_next() may return. */
uint64_t backoff_cap(const struct backoff *b);
/*
 * A delay at the current step, without recording a failure: uniform in
 * [min, backoff_cap(b)] (rnd as for backoff_next).
 */
uint64_t backoff_delay(const struct backoff *b, uint32_t rnd);

#endif
