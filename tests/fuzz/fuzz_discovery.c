/*
 * libFuzzer harness for worker/discovery_stream: the bytes are a discovery
 * stream as a hostile proxy would send it, fed whole and then again in
 * chunks whose size the first byte picks, so the fuzzer explores line
 * reassembly across chunk boundaries as well as the line parser.  The
 * seeds (corpus/discovery/) are plain streams: real helper output
 * (good-*, also fed by the unit test) and hand-made edge cases.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "worker/discovery_stream.h"

/* Reads everything an event points to, so ASan sees a bad pointer. */
static int
touch(const struct discovery_event *ev, void *arg)
{
	volatile size_t *sink = arg;
	size_t i;

	switch (ev->type) {
	case DISCOVERY_EV_PROXIES:
		*sink += strlen(ev->proxies.cluster);
		for (i = 0; i < ev->proxies.n; i++)
			*sink += strlen(ev->proxies.v[i].name) +
			    strlen(ev->proxies.v[i].fp) +
			    strlen(ev->proxies.v[i].host_key_line) +
			    ev->proxies.v[i].host_key[
			    ev->proxies.v[i].host_key_len - 1];
		break;
	case DISCOVERY_EV_CERT:
		*sink += strlen(ev->cert.line) +
		    ev->cert.blob[ev->cert.len - 1];
		break;
	case DISCOVERY_EV_HEARTBEAT:
		*sink += ev->heartbeat.interval;
		break;
	}
	return 0;
}

/* Feeds the whole input in chunks of chunk bytes; a fresh stream each time. */
static void
run(const uint8_t *data, size_t size, size_t chunk)
{
	struct discovery_stream *ds;
	volatile size_t sink = 0;
	size_t off = 0, n;
	int rc = 0;

	if ((ds = discovery_stream_new()) == NULL)
		return;
	while (rc == 0 && off < size) {
		n = size - off < chunk ? size - off : chunk;
		rc = discovery_stream_feed(ds, data + off, n, touch,
		    (void *)&sink);
		off += n;
	}
	if (rc == 0)
		discovery_stream_finish(ds);
	discovery_stream_free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	run(data, size, size);
	run(data, size, 1 + data[0] % 64);
	return 0;
}
