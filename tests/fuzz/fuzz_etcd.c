/*
 * libFuzzer harness for supervisor/etcd_json: what an etcd endpoint (or
 * anything answering in its place) sends.  Every input is decoded as a
 * range response, an authenticate response and an error body, and is
 * also fed as a watch stream, in chunks whose size the first byte picks,
 * through the frame splitter, each frame decoded as a watch message.
 * Seeds (corpus/etcd/): real etcd 3.4 gateway responses and streams.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor/etcd_json.h"

static volatile size_t sink;

static void
touch_kv(const struct etcd_kv *kv)
{
	sink += kv->key[kv->key_len] + kv->value[kv->value_len] +
	    (size_t)kv->mod_revision;
	if (kv->key_len > 0)
		sink += (unsigned char)kv->key[kv->key_len - 1];
	if (kv->value_len > 0)
		sink += (unsigned char)kv->value[kv->value_len - 1];
}

static void
watch_frame(const char *f, size_t n)
{
	struct etcd_error ee;
	struct etcd_watch w;
	char err[128];

	if (etcd_decode_watch(f, n, &w, &ee, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < w.n; i++)
			touch_kv(&w.events[i].kv);
		sink += strlen(w.cancel_reason) + (size_t)w.revision;
		etcd_watch_free(&w);
	} else
		sink += strlen(err) + strlen(ee.message);
}

static void
stream(const uint8_t *data, size_t size)
{
	struct etcd_stream s;
	size_t chunk = size > 0 ? (size_t)data[0] % 64 + 1 : 1, off = 0, n;
	const char *f;
	int rc;

	etcd_stream_init(&s);
	while (off < size) {
		n = size - off < chunk ? size - off : chunk;
		if (etcd_stream_feed(&s, data + off, n) != 0)
			break;
		off += n;
		while ((rc = etcd_stream_next(&s, &f, &n)) == 1)
			watch_frame(f, n);
		if (rc < 0)
			break;
	}
	etcd_stream_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct etcd_error ee;
	struct etcd_range r;
	char err[128], *token, *out;
	size_t olen;

	if (etcd_decode_range(buf, size, &r, &ee, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < r.n; i++)
			touch_kv(&r.kvs[i]);
		etcd_range_free(&r);
	}
	if (etcd_decode_auth(buf, size, &token, &ee, err, sizeof(err)) == 0) {
		sink += strlen(token);
		free(token);
	}
	sink += (size_t)etcd_decode_error(buf, size, &ee);
	if (etcd_b64_decode(buf, size, size, &out, &olen) == 0) {
		sink += out[olen];
		free(out);
	}
	stream(data, size);
	return 0;
}
