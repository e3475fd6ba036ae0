/*
 * Liveness of the proxy, measured in inbound bytes (see liveness.h).
 */
#include <string.h>

#include "worker/liveness.h"
#include "worker/session.h"

void
liveness_init(struct liveness *l, uint32_t ka_ms, uint32_t ka_count,
    uint64_t now, uint64_t in_bytes)
{
	memset(l, 0, sizeof(*l));
	l->ka_ms = ka_ms;
	l->dead_ms = (uint64_t)ka_ms * ka_count;
	l->last_in = in_bytes;
	l->last_rx_ms = now;
}

void
liveness_note(struct liveness *l, uint64_t now, uint64_t in_bytes)
{
	if (in_bytes != l->last_in) {
		l->last_in = in_bytes;
		l->last_rx_ms = now;
	}
}

bool
liveness_dead(const struct liveness *l, uint64_t now)
{
	return now - l->last_rx_ms >= l->dead_ms;
}

uint64_t
liveness_rx_age(const struct liveness *l, uint64_t now)
{
	return now - l->last_rx_ms;
}

/* Idle: nothing read for ka_ms, and no keepalive of ours within ka_ms. */
static bool
idle(const struct liveness *l, uint64_t now)
{
	return now - l->last_rx_ms >= l->ka_ms &&
	    (l->ka_sent_ms == 0 || now - l->ka_sent_ms >= l->ka_ms);
}

void
liveness_step(struct liveness *l, struct session *ss, uint64_t now,
    bool enabled)
{
	if (l->ka_out) {
		/* The reply can only have come with new bytes. */
		if (l->last_in == l->in_at_ka)
			return;
		if (session_keepalive_resolve(ss)) {
			l->ka_out = false;
			ss->greq = GREQ_NONE;
		}
		l->in_at_ka = l->last_in;
		return;
	}
	if (!enabled || ss->greq != GREQ_NONE || !idle(l, now))
		return;
	ss->greq = GREQ_KEEPALIVE;
	l->ka_out = true;
	l->ka_sent_ms = now;
	l->in_at_ka = session_in_bytes(ss);
	l->keepalives++;
	if (session_keepalive_send(ss)) {
		l->ka_out = false;
		ss->greq = GREQ_NONE;
	}
}

uint64_t
liveness_next_ms(const struct liveness *l)
{
	uint64_t ka = l->last_rx_ms + l->ka_ms;

	if (l->ka_sent_ms != 0 && l->ka_sent_ms + l->ka_ms > ka)
		ka = l->ka_sent_ms + l->ka_ms;
	if (l->last_rx_ms + l->dead_ms < ka)
		ka = l->last_rx_ms + l->dead_ms;
	return ka;
}
