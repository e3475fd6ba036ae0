/*
 * Decoding what etcd v3's JSON gateway sends (untrusted bytes: anyone who
 * can answer on an endpoint can send anything): /v3/kv/range and
 * /v3/auth/authenticate responses, error bodies, and the /v3/watch
 * stream, a sequence of JSON objects ({"result":{...}} or {"error":...}),
 * each ended by a newline in practice but framed here by its braces.
 *
 * Keys and values are base64 in JSON; 64-bit integers are JSON strings
 * ("revision":"42") or, from other gateways, numbers: both are accepted.
 * Unknown fields are ignored (the gateway adds some between releases);
 * fields that are read must have the right type.  Every decoder returns 0,
 * ETCD_JSON_ERROR when the body is etcd's own error object (code and
 * message filled in), or a negative tp_err with a reason in err.
 */
#ifndef TP_SUP_ETCD_JSON_H
#define TP_SUP_ETCD_JSON_H

#include <stddef.h>
#include <stdint.h>

#define ETCD_JSON_ERROR		1
#define ETCD_FRAME_MAX		(64 * 1024 * 1024)	/* one watch message */
#define ETCD_KEY_MAX		4096
#define ETCD_VALUE_MAX		(16 * 1024 * 1024)	/* as a tunnel file */

/* etcd's (gRPC's) codes that the client acts on. */
#define ETCD_CODE_INVALID_ARGUMENT	3
#define ETCD_CODE_OUT_OF_RANGE		11	/* revision compacted */
#define ETCD_CODE_UNAUTHENTICATED	16	/* token invalid or expired */

struct etcd_error {
	int	 code;		/* gRPC code, 0 if absent */
	char	 message[256];	/* printable, truncated */
};

struct etcd_kv {
	char		*key;		/* decoded, NUL-terminated, key_len bytes */
	size_t		 key_len;
	char		*value;		/* decoded, NUL-terminated; "" for delete */
	size_t		 value_len;
	int64_t		 mod_revision;
};

struct etcd_range {
	int64_t		 revision;	/* header.revision */
	struct etcd_kv	*kvs;
	size_t		 n;
	int		 more;
};

enum etcd_event_type {
	ETCD_EV_PUT = 0,
	ETCD_EV_DELETE = 1,
};

struct etcd_event {
	enum etcd_event_type	 type;
	struct etcd_kv		 kv;
};

struct etcd_watch {
	int64_t			 revision;	/* header.revision, 0 if absent */
	int			 created;
	int			 canceled;
	int64_t			 compact_revision;	/* > 0: compacted */
	char			 cancel_reason[256];
	struct etcd_event	*events;
	size_t			 n;
};

int etcd_decode_range(const char *buf, size_t len, struct etcd_range *r,
    struct etcd_error *ee, char *err, size_t errlen);
void etcd_range_free(struct etcd_range *r);

/* One frame of the watch stream. */
int etcd_decode_watch(const char *buf, size_t len, struct etcd_watch *w,
    struct etcd_error *ee, char *err, size_t errlen);
void etcd_watch_free(struct etcd_watch *w);

/* *token: malloc'd, printable ASCII. */
int etcd_decode_auth(const char *buf, size_t len, char **token,
    struct etcd_error *ee, char *err, size_t errlen);

/* Any body that may be an error object: 1 (ee filled) or 0. */
int etcd_decode_error(const char *buf, size_t len, struct etcd_error *ee);

/*
 * Strict base64 (RFC 4648, padding required): 0 and a malloc'd,
 * NUL-terminated *out, or TP_EPROTO.  max bounds the decoded length
 * (TP_ETOOBIG).
 */
int etcd_b64_decode(const char *in, size_t len, size_t max, char **out,
    size_t *outlen);
/* Returns a malloc'd base64 text of in (NUL-terminated), or NULL. */
char *etcd_b64_encode(const void *in, size_t len);

/* ---- the watch stream's framing --------------------------------------- */

struct etcd_stream {
	char		*buf;
	size_t		 len;
	size_t		 cap;
	size_t		 start;		/* first byte not yet returned */
	size_t		 scan;		/* bytes of the current frame scanned */
	int		 depth;
	int		 in_str;
	int		 esc;
};

void etcd_stream_init(struct etcd_stream *s);
void etcd_stream_free(struct etcd_stream *s);
/* Drops everything buffered (a new stream). */
void etcd_stream_reset(struct etcd_stream *s);
/* Appends bytes; 0, TP_ENOMEM, or TP_ETOOBIG (a frame over the limit). */
int etcd_stream_feed(struct etcd_stream *s, const void *data, size_t len);
/*
 * Returns 1 and the next complete frame (valid until the next call), 0
 * if more bytes are needed, or TP_EPROTO if something other than
 * whitespace or an object is between frames.
 */
int etcd_stream_next(struct etcd_stream *s, const char **frame,
    size_t *flen);

#endif
