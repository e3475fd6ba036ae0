#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/error.h"
#include "common/sshpub.h"
#include "worker/discovery_stream.h"

#define DS_BUF_MIN	4096
#define DS_ERRMSG_MAX	160
#define CERT_SUFFIX	"-cert-v01@openssh.com"

struct discovery_stream {
	char		*buf;		/* the pending partial line */
	size_t		 used;
	size_t		 cap;		/* grows by doubling up to LINE_MAX */
	uint64_t	 lines;		/* complete lines consumed */
	uint64_t	 seq;		/* last seq seen; 0 before the first */
	int		 err;		/* sticky */
	char		 errmsg[DS_ERRMSG_MAX];
};

/* Field sets of the known types: exactly these, nothing more. */
static const char *const proxies_fields[] =
    { "type", "seq", "cluster", "proxies", NULL };
static const char *const proxy_fields[] =
    { "name", "host_key", "fp", NULL };
static const char *const cert_fields[] = { "type", "seq", "cert", NULL };
static const char *const heartbeat_fields[] =
    { "type", "seq", "interval", NULL };

struct discovery_stream *
discovery_stream_new(void)
{
	return calloc(1, sizeof(struct discovery_stream));
}

void
discovery_stream_free(struct discovery_stream *ds)
{
	if (ds == NULL)
		return;
	free(ds->buf);
	free(ds);
}

const char *
discovery_stream_errmsg(const struct discovery_stream *ds)
{
	return ds->errmsg;
}

uint64_t
discovery_stream_lines(const struct discovery_stream *ds)
{
	return ds->lines;
}

/*
 * Records the first error and its description, prefixed with the line
 * number.  Callers only pass fixed text and words that passed safe_word(),
 * so the message can be logged as is.
 */
static int __attribute__((format(printf, 3, 4)))
ds_fail(struct discovery_stream *ds, int err, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (ds->err != 0)
		return ds->err;
	ds->err = err;
	n = snprintf(ds->errmsg, sizeof(ds->errmsg), "line %llu: ",
	    (unsigned long long)ds->lines + 1);
	if (n < 0 || (size_t)n >= sizeof(ds->errmsg))
		return err;
	va_start(ap, fmt);
	vsnprintf(ds->errmsg + n, sizeof(ds->errmsg) - (size_t)n, fmt, ap);
	va_end(ap);
	return err;
}

/* A short lowercase word from the wire that is safe to quote in errmsg. */
static const char *
safe_word(const char *s)
{
	size_t i;

	for (i = 0; i < 32 && s[i] != '\0'; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		    (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return "?";
	return (s[i] == '\0' && i > 0) ? s : "?";
}

/*
 * Names end up in process titles, log lines and metrics labels on the
 * node, so they get a charset that is inert in all of them.
 */
static bool
name_valid(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > DISCOVERY_NAME_MAX)
		return false;
	for (i = 0; i < len; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return false;
	}
	return true;
}

/* "SHA256:" and 43 characters of unpadded standard base64. */
static bool
fp_format_valid(const char *s, size_t len)
{
	size_t i;

	if (len != DISCOVERY_FP_LEN || strncmp(s, "SHA256:", 7) != 0)
		return false;
	for (i = 7; i < len; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return false;
	}
	return true;
}

/*
 * Every member of o must be one of the NULL-terminated fields; where
 * prefixes the message ("" or "proxies[3]: ").
 */
static int
check_fields(struct discovery_stream *ds, json_t *o, const char *const *fields,
    const char *where)
{
	const char *key, *const *f;
	json_t *v;

	json_object_foreach(o, key, v) {
		for (f = fields; *f != NULL; f++)
			if (strcmp(key, *f) == 0)
				break;
		if (*f == NULL)
			return ds_fail(ds, TP_EFIELD, "%sunknown field \"%s\"",
			    where, safe_word(key));
	}
	return 0;
}

/* Fetches a required string member of at most max bytes. */
static int
get_string(struct discovery_stream *ds, json_t *o, const char *key,
    size_t max, const char *ctx, const char **s, size_t *len)
{
	json_t *v;

	if ((v = json_object_get(o, key)) == NULL)
		return ds_fail(ds, TP_EFIELD, "%s%s: missing", ctx, key);
	if (!json_is_string(v))
		return ds_fail(ds, TP_ETYPE, "%s%s: not a string", ctx, key);
	*s = json_string_value(v);
	*len = json_string_length(v);
	if (*len > max)
		return ds_fail(ds, TP_ETOOBIG, "%s%s: longer than %zu bytes",
		    ctx, key, max);
	return 0;
}

/* Fetches a required integer member within [min, max]. */
static int
get_int(struct discovery_stream *ds, json_t *o, const char *key,
    json_int_t min, json_int_t max, json_int_t *out)
{
	json_t *v;

	if ((v = json_object_get(o, key)) == NULL)
		return ds_fail(ds, TP_EFIELD, "%s: missing", key);
	if (!json_is_integer(v))
		return ds_fail(ds, TP_ETYPE, "%s: not an integer", key);
	*out = json_integer_value(v);
	if (*out < min || *out > max)
		return ds_fail(ds, TP_ERANGE, "%s: out of range", key);
	return 0;
}

/*
 * The key line must be exactly "type base64" in printable ASCII: the helper
 * normalises what it sends, so anything else is not from it.
 */
static bool
key_line_shape(const char *s, size_t len, size_t *type_len)
{
	const char *sp = memchr(s, ' ', len);
	size_t i;

	if (sp == NULL || sp == s || (size_t)(sp - s) + 1 == len)
		return false;
	for (i = 0; i < len; i++)
		if ((s[i] <= ' ' || s[i] > '~') && s + i != sp)
			return false;
	*type_len = (size_t)(sp - s);
	return true;
}

static bool
has_cert_suffix(const char *type, size_t len)
{
	size_t sl = strlen(CERT_SUFFIX);

	return len > sl && memcmp(type + len - sl, CERT_SUFFIX, sl) == 0;
}

/*
 * Decodes a key line into its blob (malloc'd; sshpub_from_line also checks
 * that the blob's own type string is the line's) and checks that it is
 * (or, for host keys, is not) a certificate.  Key algorithms are not
 * restricted here: a set may announce proxies with types this node cannot
 * use, which is harmless.
 */
static int
decode_key_line(struct discovery_stream *ds, const char *line, size_t len,
    bool cert, const char *ctx, uint8_t **blob, size_t *blen)
{
	size_t type_len;
	int rc;

	if (!key_line_shape(line, len, &type_len) ||
	    has_cert_suffix(line, type_len) != cert)
		return ds_fail(ds, TP_EPROTO, "%s: not a %s line", ctx,
		    cert ? "certificate" : "public key");
	if ((rc = sshpub_from_line(line, blob, blen)) == TP_ENOMEM)
		return ds_fail(ds, rc, "out of memory");
	if (rc != 0)
		return ds_fail(ds, TP_EPROTO, "%s: undecodable key", ctx);
	return 0;
}

/* The announced fingerprint must be the one of the announced key. */
static int
check_fp(struct discovery_stream *ds, size_t i,
    const struct discovery_proxy *px)
{
	char fp[SSHPUB_FP_LEN];

	if (sshpub_fingerprint(px->host_key, px->host_key_len, fp,
	    sizeof(fp)) != 0)
		return ds_fail(ds, TP_ECRYPTO, "proxies[%zu]: fingerprint "
		    "failed", i);
	if (strcmp(fp, px->fp) != 0)
		return ds_fail(ds, TP_ECRYPTO, "proxies[%zu].fp: does not match "
		    "host_key", i);
	return 0;
}

/* Fills px from one element of "proxies"; px->host_key is malloc'd. */
static int
parse_proxy(struct discovery_stream *ds, json_t *o, size_t i,
    struct discovery_proxy *px)
{
	char ctx[48], where[32];
	size_t len, klen, flen;
	uint8_t *blob;
	int rc;

	snprintf(ctx, sizeof(ctx), "proxies[%zu].", i);
	snprintf(where, sizeof(where), "proxies[%zu]: ", i);
	if (!json_is_object(o))
		return ds_fail(ds, TP_ETYPE, "%snot an object", where);
	if ((rc = check_fields(ds, o, proxy_fields, where)) != 0 ||
	    (rc = get_string(ds, o, "name", DISCOVERY_NAME_MAX, ctx,
	    &px->name, &len)) != 0 ||
	    (rc = get_string(ds, o, "host_key", DISCOVERY_KEY_LINE_MAX, ctx,
	    &px->host_key_line, &klen)) != 0 ||
	    (rc = get_string(ds, o, "fp", DISCOVERY_FP_LEN, ctx,
	    &px->fp, &flen)) != 0)
		return rc;
	if (!name_valid(px->name, len))
		return ds_fail(ds, TP_EPROTO, "%sname: bad name", ctx);
	if (!fp_format_valid(px->fp, flen))
		return ds_fail(ds, TP_EPROTO, "%sfp: bad format", ctx);
	snprintf(ctx, sizeof(ctx), "proxies[%zu].host_key", i);
	if ((rc = decode_key_line(ds, px->host_key_line, klen, false, ctx,
	    &blob, &px->host_key_len)) != 0)
		return rc;
	px->host_key = blob;
	return check_fp(ds, i, px);
}

/*
 * Proxies are identified by host key and reported by name, so both must be
 * unique; a set that repeats either is not a set.
 */
static int
check_unique(struct discovery_stream *ds, const struct discovery_proxy *v,
    size_t n)
{
	size_t i, j;

	for (i = 1; i < n; i++)
		for (j = 0; j < i; j++) {
			if (strcmp(v[i].name, v[j].name) == 0)
				return ds_fail(ds, TP_EPROTO, "proxies[%zu]: "
				    "duplicate name", i);
			if (strcmp(v[i].fp, v[j].fp) == 0)
				return ds_fail(ds, TP_EPROTO, "proxies[%zu]: "
				    "duplicate host key", i);
		}
	return 0;
}

static void
free_proxies(struct discovery_proxy *v, size_t n)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; i < n; i++)
		free((void *)v[i].host_key);
	free(v);
}

/* Fetches the "proxies" array and its size, 1..DISCOVERY_PROXIES_MAX. */
static int
get_proxies(struct discovery_stream *ds, json_t *o, json_t **arr, size_t *n)
{
	if ((*arr = json_object_get(o, "proxies")) == NULL)
		return ds_fail(ds, TP_EFIELD, "proxies: missing");
	if (!json_is_array(*arr))
		return ds_fail(ds, TP_ETYPE, "proxies: not an array");
	if ((*n = json_array_size(*arr)) == 0)
		return ds_fail(ds, TP_ERANGE, "proxies: empty");
	if (*n > DISCOVERY_PROXIES_MAX)
		return ds_fail(ds, TP_ETOOBIG, "proxies: more than %d",
		    DISCOVERY_PROXIES_MAX);
	return 0;
}

static int
on_proxies(struct discovery_stream *ds, json_t *o, struct discovery_event *ev,
    discovery_cb cb, void *arg)
{
	struct discovery_proxy *v = NULL;
	json_t *arr;
	size_t i, n = 0, len;
	int rc;

	if ((rc = check_fields(ds, o, proxies_fields, "")) != 0 ||
	    (rc = get_string(ds, o, "cluster", DISCOVERY_NAME_MAX, "",
	    &ev->proxies.cluster, &len)) != 0)
		return rc;
	if (!name_valid(ev->proxies.cluster, len))
		return ds_fail(ds, TP_EPROTO, "cluster: bad name");
	if ((rc = get_proxies(ds, o, &arr, &n)) != 0)
		return rc;
	if ((v = calloc(n, sizeof(*v))) == NULL)
		return ds_fail(ds, TP_ENOMEM, "out of memory");
	for (i = 0; i < n; i++)
		if ((rc = parse_proxy(ds, json_array_get(arr, i), i,
		    &v[i])) != 0)
			goto out;
	if ((rc = check_unique(ds, v, n)) != 0)
		goto out;
	ev->proxies.v = v;
	ev->proxies.n = n;
	rc = cb(ev, arg);
out:
	free_proxies(v, n);
	return rc;
}

static int
on_cert(struct discovery_stream *ds, json_t *o, struct discovery_event *ev,
    discovery_cb cb, void *arg)
{
	uint8_t *blob;
	size_t len = 0;
	int rc;

	if ((rc = check_fields(ds, o, cert_fields, "")) != 0 ||
	    (rc = get_string(ds, o, "cert", DISCOVERY_CERT_LINE_MAX, "",
	    &ev->cert.line, &len)) != 0 ||
	    (rc = decode_key_line(ds, ev->cert.line, len, true, "cert",
	    &blob, &ev->cert.len)) != 0)
		return rc;
	ev->cert.blob = blob;
	rc = cb(ev, arg);
	free(blob);
	return rc;
}

static int
on_heartbeat(struct discovery_stream *ds, json_t *o,
    struct discovery_event *ev, discovery_cb cb, void *arg)
{
	json_int_t interval = 0;
	int rc;

	if ((rc = check_fields(ds, o, heartbeat_fields, "")) != 0 ||
	    (rc = get_int(ds, o, "interval", 1, DISCOVERY_INTERVAL_MAX,
	    &interval)) != 0)
		return rc;
	ev->heartbeat.interval = (uint32_t)interval;
	return cb(ev, arg);
}

/*
 * Every line, known type or not, carries a string "type" and a "seq" one
 * above the previous line's: a gap or replay on a reliable stream means the
 * writer is not the helper.
 */
static int
check_envelope(struct discovery_stream *ds, json_t *o, const char **type)
{
	json_int_t seq = 0;
	size_t len = 0;
	int rc;

	if (!json_is_object(o))
		return ds_fail(ds, TP_ETYPE, "not an object");
	if ((rc = get_string(ds, o, "type", DISCOVERY_LINE_MAX, "", type,
	    &len)) != 0 ||
	    (rc = get_int(ds, o, "seq", 1, LLONG_MAX, &seq)) != 0)
		return rc;
	if ((uint64_t)seq != ds->seq + 1)
		return ds_fail(ds, TP_EPROTO, "seq: not previous + 1");
	ds->seq = (uint64_t)seq;
	return 0;
}

typedef int (*line_handler)(struct discovery_stream *, json_t *,
    struct discovery_event *, discovery_cb, void *);

/* The known types.  Any other type is skipped after its envelope check. */
static const struct {
	const char			*type;
	enum discovery_event_type	 ev;
	line_handler			 handle;
} handlers[] = {
	{ "proxies",	DISCOVERY_EV_PROXIES,	on_proxies },
	{ "cert",	DISCOVERY_EV_CERT,	on_cert },
	{ "heartbeat",	DISCOVERY_EV_HEARTBEAT,	on_heartbeat },
};

static int
parse_line(struct discovery_stream *ds, const char *line, size_t len,
    discovery_cb cb, void *arg)
{
	struct discovery_event ev;
	json_error_t jerr;
	const char *type;
	json_t *o;
	size_t i;
	int rc;

	/* One bare object: no padding, no CR, no empty keep-alive lines. */
	if (len < 2 || line[0] != '{' || line[len - 1] != '}')
		return ds_fail(ds, TP_ESYNTAX, "not a bare JSON object");
	if ((o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL)
		return ds_fail(ds, json_error_code(&jerr) ==
		    json_error_duplicate_key ? TP_EFIELD : TP_ESYNTAX,
		    "invalid JSON at column %d", jerr.column);
	if ((rc = check_envelope(ds, o, &type)) != 0)
		goto out;
	for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
		if (strcmp(type, handlers[i].type) == 0) {
			memset(&ev, 0, sizeof(ev));
			ev.type = handlers[i].ev;
			ev.seq = ds->seq;
			rc = handlers[i].handle(ds, o, &ev, cb, arg);
			break;
		}
out:
	json_decref(o);
	return rc;
}

/* Appends to the pending line, growing the buffer up to LINE_MAX. */
static int
buf_append(struct discovery_stream *ds, const char *p, size_t n)
{
	size_t cap = ds->cap ? ds->cap : DS_BUF_MIN;
	char *nb;

	while (cap < ds->used + n)
		cap *= 2;
	if (cap != ds->cap) {
		if ((nb = realloc(ds->buf, cap)) == NULL)
			return ds_fail(ds, TP_ENOMEM, "out of memory");
		ds->buf = nb;
		ds->cap = cap;
	}
	memcpy(ds->buf + ds->used, p, n);
	ds->used += n;
	return 0;
}

/* Handles one complete line; seg bytes at p end just before its '\n'. */
static int
complete_line(struct discovery_stream *ds, const char *p, size_t seg,
    discovery_cb cb, void *arg)
{
	int rc;

	if (ds->used == 0) {
		/* The common case: a whole line in one chunk, no copy. */
		rc = parse_line(ds, p, seg, cb, arg);
	} else {
		if ((rc = buf_append(ds, p, seg)) != 0)
			return rc;
		rc = parse_line(ds, ds->buf, ds->used, cb, arg);
		ds->used = 0;
		/* Big lines (sets) are rare: an idle worker keeps 4 KiB. */
		if (ds->cap > DS_BUF_MIN) {
			free(ds->buf);
			ds->buf = NULL;
			ds->cap = 0;
		}
	}
	if (rc != 0)
		return ds_fail(ds, rc, "rejected by the event handler");
	ds->lines++;
	return 0;
}

int
discovery_stream_feed(struct discovery_stream *ds, const void *buf,
    size_t len, discovery_cb cb, void *arg)
{
	const char *p = buf, *nl;
	size_t seg;
	int rc;

	if (ds->err != 0)
		return ds->err;
	while (len > 0) {
		nl = memchr(p, '\n', len);
		seg = nl != NULL ? (size_t)(nl - p) : len;
		if (ds->used + seg > DISCOVERY_LINE_MAX - 1)
			return ds_fail(ds, TP_ETOOBIG, "longer than %d bytes",
			    DISCOVERY_LINE_MAX);
		if (nl == NULL)
			return buf_append(ds, p, seg);
		if ((rc = complete_line(ds, p, seg, cb, arg)) != 0)
			return rc;
		p += seg + 1;
		len -= seg + 1;
	}
	return 0;
}

int
discovery_stream_finish(struct discovery_stream *ds)
{
	if (ds->err != 0)
		return ds->err;
	if (ds->used != 0)
		return ds_fail(ds, TP_ETRUNC, "stream ends inside a line");
	return 0;
}
