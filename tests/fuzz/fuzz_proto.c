/*
 * libFuzzer harness for the proto decoder, both directions, through the
 * whole receive path (pre-scan, peek, strict decode) and through
 * proto_dispatch with an accept-all table, as a hostile worker would hit it.
 * Anything decoded must re-encode to something that decodes equal, and
 * msg_payload_copy() of it into zeroed memory must be it, byte for byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/dispatch.h"
#include "proto/msg.h"

static struct msg *m1, *m2;

static int
accept_all(void *ctx, struct msg *m)
{
	(void)ctx;
	(void)m;
	return 0;
}

static const struct proto_handler table[] = {
	{ MSG_READY, ~0u, 0, 0, accept_all },
	{ MSG_STATE, ~0u, 0, 0, accept_all },
	{ MSG_CLAIM, ~0u, 0, 0, accept_all },
	{ MSG_DISCOVERY, ~0u, 0, 0, accept_all },
	{ MSG_DIAL_REQUEST, ~0u, 0, 0, accept_all },
	{ MSG_STATS, ~0u, 0, 0, accept_all },
	{ MSG_PONG, ~0u, 0, 0, accept_all },
	{ MSG_FORWARD, ~0u, 0, 0, accept_all },
	{ MSG_SANDBOX_VIOLATION, ~0u, 0, 0, accept_all },
};

static void
roundtrip(const struct msg *m)
{
	static uint8_t buf[PROTO_MAX_MSG];
	static uint8_t copy[sizeof(m->u)];
	enum msg_dir dir = msg_direction(m->type);
	size_t size = msg_payload_size(m->type);
	int n = msg_encode(m, buf, sizeof(buf));

	if (n < 0)
		abort();	/* decoded means within bounds: must re-encode */
	if (msg_decode(buf, (size_t)n, -1, dir, m2) != 0 ||
	    memcmp(&m->u, &m2->u, size) != 0)
		abort();
	memset(copy, 0, size);
	if (msg_payload_copy(m->type, copy, &m->u) != 0 ||
	    memcmp(copy, &m->u, size) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_peer peer;
	const char *why;

	if (m1 == NULL) {
		m1 = calloc(1, sizeof(*m1));
		m2 = calloc(1, sizeof(*m2));
	}
	if (msg_decode(data, size, -1, MSG_TO_SUPERVISOR, m1) == 0)
		roundtrip(m1);
	if (msg_decode(data, size, -1, MSG_TO_WORKER, m1) == 0 &&
	    m1->type != MSG_DIAL_RESULT)	/* ok=true needs an fd */
		roundtrip(m1);
	memset(&peer, 0, sizeof(peer));
	(void)proto_dispatch(table, sizeof(table) / sizeof(table[0]), &peer, 1,
	    MSG_TO_SUPERVISOR, data, size, -1, 0, m1, NULL, &why);
	return 0;
}
