/*
 * The discovery stream as the worker reads it: JSON lines written by the
 * proxy's tunnelpool-discovery subsystem (docs/discovery-protocol.md).
 *
 * The proxy is untrusted until the stream says otherwise, and even then it
 * only *announces*: bytes arrive in arbitrary chunks, and every line is
 * checked strictly (sizes, field sets, types, charsets, sequence numbers,
 * each fingerprint recomputed from its host key) before a callback sees it.
 * The first error is sticky: the stream is dead and the worker should drop
 * the connection.  Nothing here logs, exits or touches the filesystem (the
 * worker runs it under seccomp).
 */
#ifndef TP_DISCOVERY_STREAM_H
#define TP_DISCOVERY_STREAM_H

#include <stddef.h>
#include <stdint.h>

/* The protocol's limits (proto/discovery.h) are this parser's. */
#include "proto/discovery.h"

enum discovery_event_type {
	DISCOVERY_EV_PROXIES = 1,	/* the cluster's full proxy set */
	DISCOVERY_EV_CERT,		/* this proxy's OpenSSH host certificate */
	DISCOVERY_EV_HEARTBEAT,		/* liveness, every interval seconds */
};

/* One announced proxy.  fp has been recomputed from host_key and matches. */
struct discovery_proxy {
	const char	*name;		/* [A-Za-z0-9][A-Za-z0-9._-]{0,126} */
	const char	*fp;		/* "SHA256:..." as ssh-keygen -l prints */
	const char	*host_key_line;	/* "type base64", no comment */
	const uint8_t	*host_key;	/* wire blob */
	size_t		 host_key_len;
};

/*
 * Everything an event points to belongs to the parser and is valid only
 * during the callback: copy what you keep.
 */
struct discovery_event {
	enum discovery_event_type	 type;
	uint64_t			 seq;
	union {
		struct {
			const char			*cluster;
			const struct discovery_proxy	*v;
			size_t				 n;	/* 1..256 */
		} proxies;
		struct {
			const char	*line;	/* "type base64", no comment */
			const uint8_t	*blob;	/* certificate wire blob */
			size_t		 len;
		} cert;
		struct {
			uint32_t	 interval;	/* seconds, 1..3600 */
		} heartbeat;
	};
};

/*
 * Called once per accepted event, in stream order.  Return 0 to go on; a
 * negative tp_err stops the feed, becomes the stream's sticky error and is
 * returned by discovery_stream_feed().
 */
typedef int (*discovery_cb)(const struct discovery_event *ev, void *arg);

struct discovery_stream;

/* Returns a new stream expecting seq 1 first, or NULL (out of memory). */
struct discovery_stream *discovery_stream_new(void);
void discovery_stream_free(struct discovery_stream *ds);

/*
 * Consumes len bytes (any chunking) and calls cb for each complete line
 * that is a known event; lines of unknown types are checked for "type" and
 * "seq" only, and skipped.  Returns 0, or the first error (sticky; every
 * later call returns it again without reading):
 *   TP_ETOOBIG  line, string or array over its limit
 *   TP_ESYNTAX  not JSON, not one bare object, or an empty line
 *   TP_ETYPE    a field of the wrong JSON type
 *   TP_EFIELD   a missing, unknown or duplicate field
 *   TP_ERANGE   seq or interval out of range
 *   TP_EPROTO   bad name, fp or key line, duplicate proxy, seq not prev + 1
 *   TP_ECRYPTO  fp does not match its host_key
 *   TP_ENOMEM   out of memory
 *   or whatever cb returned.
 */
int discovery_stream_feed(struct discovery_stream *ds, const void *buf,
    size_t len, discovery_cb cb, void *arg);

/*
 * Call at end of stream.  Returns the sticky error if any, TP_ETRUNC if a
 * partial line is pending, else 0.
 */
int discovery_stream_finish(struct discovery_stream *ds);

/*
 * A one-line description of the sticky error ("line 3: proxies[1].fp: does
 * not match host_key"), safe to log: text from the wire appears in it only
 * as a short [a-z0-9_] word, anything else as "?".  Returns "" while there
 * is no error.
 */
const char *discovery_stream_errmsg(const struct discovery_stream *ds);

/* Returns the number of complete lines consumed so far. */
uint64_t discovery_stream_lines(const struct discovery_stream *ds);

#endif
