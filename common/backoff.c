#include "backoff.h"
#include "error.h"

int
backoff_init(struct backoff *b, uint64_t min_ms, uint64_t max_ms,
    uint64_t reset_after_ms)
{
	if (min_ms == 0 || min_ms > max_ms)
		return TP_EINVAL;
	b->min_ms = min_ms;
	b->max_ms = max_ms;
	b->reset_after_ms = reset_after_ms;
	b->attempt = 0;
	b->up_since_ms = 0;
	return 0;
}

void
backoff_up(struct backoff *b, uint64_t now_ms)
{
	b->up_since_ms = now_ms;
}

uint64_t
backoff_cap(const struct backoff *b)
{
	uint64_t cap = b->min_ms;

	for (unsigned i = 0; i < b->attempt && cap < b->max_ms; i++)
		cap *= 2;
	return cap < b->max_ms ? cap : b->max_ms;
}

uint64_t
backoff_delay(const struct backoff *b, uint32_t rnd)
{
	uint64_t span = backoff_cap(b) - b->min_ms;

	/* rnd / 2^32 scaled onto [0, span], inclusive of both ends. */
	return b->min_ms + (uint64_t)(((unsigned __int128)rnd * (span + 1)) >> 32);
}

uint64_t
backoff_next(struct backoff *b, uint64_t now_ms, uint32_t rnd)
{
	uint64_t d;

	if (b->up_since_ms != 0 && now_ms >= b->up_since_ms &&
	    now_ms - b->up_since_ms >= b->reset_after_ms)
		b->attempt = 0;
	b->up_since_ms = 0;
	d = backoff_delay(b, rnd);
	if (b->attempt < 63)
		b->attempt++;
	return d;
}
