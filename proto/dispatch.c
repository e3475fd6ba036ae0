#include <unistd.h>

#include "common/error.h"
#include "dispatch.h"
#include "msg.h"

static int
lookup(const struct proto_handler *tbl, size_t n, uint32_t type, size_t *idx)
{
	for (size_t i = 0; i < n && i < PROTO_MAX_HANDLERS; i++)
		if (tbl[i].type == type) {
			*idx = i;
			return 0;
		}
	return TP_EPROTO;
}

/* Fixed one-second windows: cheap, and a flood is caught within a second. */
static int
rate_ok(struct proto_peer *peer, size_t idx, uint32_t max, uint64_t now_ms)
{
	if (now_ms / 1000 != peer->window_ms / 1000) {
		peer->window_ms = now_ms;
		for (size_t i = 0; i < PROTO_MAX_HANDLERS; i++)
			peer->count[i] = 0;
	}
	if (max != 0 && peer->count[idx] >= max)
		return 0;
	peer->count[idx]++;
	return 1;
}

static int
check(const struct proto_handler *h, struct proto_peer *peer, size_t idx,
    uint32_t state, uint64_t now_ms, const char **why)
{
	if (state >= 32 || (h->states & (1u << state)) == 0) {
		*why = "message not allowed in this state";
		return TP_ESTATE;
	}
	if ((h->flags & PH_ONCE) && (peer->once_seen & (1ULL << idx))) {
		*why = "once-only message repeated";
		return TP_ESTATE;
	}
	if (!rate_ok(peer, idx, h->max_per_sec, now_ms)) {
		*why = "message rate exceeded";
		return TP_ETOOBIG;
	}
	peer->once_seen |= 1ULL << idx;
	return 0;
}

int
proto_dispatch(const struct proto_handler *tbl, size_t n,
    struct proto_peer *peer, uint32_t state, enum msg_dir dir,
    const uint8_t *buf, size_t len, int fd, uint64_t now_ms,
    struct msg *scratch, void *ctx, const char **why)
{
	uint32_t type;
	size_t idx = 0;
	int rc;

	*why = "ok";
	peer->received++;
	if ((rc = msg_peek_type(buf, len, &type)) != 0) {
		*why = "malformed message";
		goto fail;
	}
	if ((rc = lookup(tbl, n, type, &idx)) != 0) {
		*why = "unexpected message type";
		goto fail;
	}
	if ((rc = check(&tbl[idx], peer, idx, state, now_ms, why)) != 0)
		goto fail;
	/* msg_decode owns fd from here: it closes it on error. */
	if ((rc = msg_decode(buf, len, fd, dir, scratch)) != 0) {
		*why = tp_strerror(rc);
		return rc;
	}
	if ((rc = tbl[idx].handle(ctx, scratch)) != 0)
		*why = "handler failed";
	return rc;
fail:
	if (fd >= 0)
		close(fd);
	return rc;
}
