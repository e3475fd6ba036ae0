#include "error.h"
#include "ratelimit.h"

#define MICRO	1000000ULL

int
ratelimit_init(struct ratelimit *r, double rate, double burst, uint64_t now_ms)
{
	if (!(rate > 0) || !(burst >= 1) || rate > 1e6 || burst > 1e6)
		return TP_EINVAL;
	r->per_ms = (uint64_t)(rate * 1000.0 + 0.5);
	if (r->per_ms == 0)
		r->per_ms = 1;
	r->burst = (uint64_t)burst * MICRO;
	r->tokens = r->burst;
	r->last_ms = now_ms;
	return 0;
}

static void
refill(struct ratelimit *r, uint64_t now_ms)
{
	if (now_ms > r->last_ms) {
		uint64_t add = (now_ms - r->last_ms) * r->per_ms;

		r->tokens = (add >= r->burst - r->tokens) ? r->burst :
		    r->tokens + add;
		r->last_ms = now_ms;
	}
}

int
ratelimit_take(struct ratelimit *r, uint64_t now_ms)
{
	refill(r, now_ms);
	if (r->tokens < MICRO)
		return 0;
	r->tokens -= MICRO;
	return 1;
}

uint64_t
ratelimit_wait_ms(struct ratelimit *r, uint64_t now_ms)
{
	refill(r, now_ms);
	if (r->tokens >= MICRO)
		return 0;
	return (MICRO - r->tokens + r->per_ms - 1) / r->per_ms;
}
