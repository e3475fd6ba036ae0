/*
 * Decoders of etcd's JSON gateway (see etcd_json.h).  jansson parses; this
 * file checks the shape, decodes base64 and bounds every size.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/error.h"
#include "supervisor/etcd_json.h"

#define KVS_MAX		(1u << 20)	/* per response */

static int
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- base64 ----------------------------------------------------------- */

static const char b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
etcd_b64_decode(const char *in, size_t len, size_t max, char **out,
    size_t *outlen)
{
	size_t i, o = 0, pad = 0;
	unsigned char *buf;
	int v[4];

	*out = NULL;
	*outlen = 0;
	if (len % 4 != 0)
		return TP_EPROTO;
	if (len > 0 && in[len - 1] == '=')
		pad = (len > 1 && in[len - 2] == '=') ? 2 : 1;
	if (len / 4 * 3 - pad > max)
		return TP_ETOOBIG;
	if ((buf = malloc(len / 4 * 3 + 1)) == NULL)
		return TP_ENOMEM;
	for (i = 0; i < len; i += 4) {
		int last = i + 4 == len;

		for (int k = 0; k < 4; k++) {
			v[k] = b64_val((unsigned char)in[i + k]);
			if (v[k] < 0 && !(last && in[i + k] == '=' &&
			    k >= 4 - (int)pad))
				goto bad;
		}
		buf[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (last && pad == 2) {
			if (v[1] & 0x0f)	/* non-canonical trailing bits */
				goto bad;
			break;
		}
		buf[o++] = (unsigned char)((v[1] & 0x0f) << 4 | v[2] >> 2);
		if (last && pad == 1) {
			if (v[2] & 0x03)
				goto bad;
			break;
		}
		buf[o++] = (unsigned char)((v[2] & 0x03) << 6 | v[3]);
	}
	buf[o] = '\0';
	*out = (char *)buf;
	*outlen = o;
	return 0;
bad:
	free(buf);
	return TP_EPROTO;
}

char *
etcd_b64_encode(const void *in, size_t len)
{
	const unsigned char *p = in;
	size_t i, o = 0;
	char *out;

	if ((out = malloc((len + 2) / 3 * 4 + 1)) == NULL)
		return NULL;
	for (i = 0; i + 2 < len; i += 3) {
		out[o++] = b64_chars[p[i] >> 2];
		out[o++] = b64_chars[(p[i] & 3) << 4 | p[i + 1] >> 4];
		out[o++] = b64_chars[(p[i + 1] & 15) << 2 | p[i + 2] >> 6];
		out[o++] = b64_chars[p[i + 2] & 63];
	}
	if (i < len) {
		out[o++] = b64_chars[p[i] >> 2];
		if (i + 1 < len) {
			out[o++] = b64_chars[(p[i] & 3) << 4 | p[i + 1] >> 4];
			out[o++] = b64_chars[(p[i + 1] & 15) << 2];
		} else {
			out[o++] = b64_chars[(p[i] & 3) << 4];
			out[o++] = '=';
		}
		out[o++] = '=';
	}
	out[o] = '\0';
	return out;
}

/* ---- fields ----------------------------------------------------------- */

/* An int64 as a JSON integer or a string of digits; absent = 0. */
static int
get_i64(json_t *o, const char *name, int64_t *v, char *err, size_t errlen)
{
	json_t *f = json_object_get(o, name);
	const char *s;
	char *end;
	long long x;

	*v = 0;
	if (f == NULL || json_is_null(f))
		return 0;
	if (json_is_integer(f)) {
		*v = (int64_t)json_integer_value(f);
		return 0;
	}
	if (!json_is_string(f))
		return fail(err, errlen, TP_ETYPE, "%s: expected an integer",
		    name);
	s = json_string_value(f);
	if (s[0] == '\0' || strlen(s) != json_string_length(f) ||
	    !(isdigit((unsigned char)s[0]) || (s[0] == '-' &&
	    isdigit((unsigned char)s[1]))))
		return fail(err, errlen, TP_ETYPE, "%s: expected an integer",
		    name);
	errno = 0;
	x = strtoll(s, &end, 10);
	if (*end != '\0' || errno == ERANGE)
		return fail(err, errlen, TP_ERANGE, "%s: not a 64-bit integer",
		    name);
	*v = (int64_t)x;
	return 0;
}

static int
get_bool(json_t *o, const char *name, int *v, char *err, size_t errlen)
{
	json_t *f = json_object_get(o, name);

	*v = 0;
	if (f == NULL || json_is_null(f))
		return 0;
	if (!json_is_boolean(f))
		return fail(err, errlen, TP_ETYPE, "%s: expected a boolean",
		    name);
	*v = json_is_true(f);
	return 0;
}

/* Copies a string field as printable text (others become '?'). */
static void
get_text(json_t *o, const char *name, char *dst, size_t cap)
{
	json_t *f = json_object_get(o, name);
	const char *s = json_is_string(f) ? json_string_value(f) : "";
	size_t i, n = json_is_string(f) ? json_string_length(f) : 0;

	if (cap == 0)
		return;
	for (i = 0; i < n && i + 1 < cap; i++)
		dst[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
	dst[i] = '\0';
}

/* A base64 field; absent = empty. */
static int
get_b64(json_t *o, const char *name, size_t max, char **out, size_t *outlen,
    char *err, size_t errlen)
{
	json_t *f = json_object_get(o, name);
	int rc;

	if (f == NULL || json_is_null(f))
		return etcd_b64_decode("", 0, max, out, outlen);
	if (!json_is_string(f))
		return fail(err, errlen, TP_ETYPE, "%s: expected a base64 "
		    "string", name);
	rc = etcd_b64_decode(json_string_value(f), json_string_length(f), max,
	    out, outlen);
	if (rc == TP_ETOOBIG)
		return fail(err, errlen, rc, "%s: longer than %zu bytes", name,
		    max);
	if (rc != 0)
		return fail(err, errlen, rc, "%s: invalid base64", name);
	return 0;
}

static int
kv_decode(json_t *o, struct etcd_kv *kv, char *err, size_t errlen)
{
	int rc;

	memset(kv, 0, sizeof(*kv));
	if (!json_is_object(o))
		return fail(err, errlen, TP_ETYPE, "kv: expected an object");
	if ((rc = get_b64(o, "key", ETCD_KEY_MAX, &kv->key, &kv->key_len,
	    err, errlen)) != 0 ||
	    (rc = get_b64(o, "value", ETCD_VALUE_MAX, &kv->value,
	    &kv->value_len, err, errlen)) != 0 ||
	    (rc = get_i64(o, "mod_revision", &kv->mod_revision, err,
	    errlen)) != 0)
		return rc;
	if (kv->key_len == 0)
		return fail(err, errlen, TP_EPROTO, "kv: empty key");
	return 0;
}

static void
kv_clear(struct etcd_kv *kv)
{
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

/*
 * The gateway's error object: {"error":"...","message":"...","code":N}
 * (unary calls) or {"error":{"grpc_code":N,"http_code":N,"message":...}}
 * (streams).  Returns 1 if o is one.
 */
static int
error_of(json_t *o, struct etcd_error *ee)
{
	json_t *e = json_object_get(o, "error");
	json_t *code;

	if (e == NULL)
		return 0;
	memset(ee, 0, sizeof(*ee));
	if (json_is_object(e)) {
		code = json_object_get(e, "grpc_code");
		get_text(e, "message", ee->message, sizeof(ee->message));
	} else {
		code = json_object_get(o, "code");
		get_text(o, "message", ee->message, sizeof(ee->message));
		if (ee->message[0] == '\0')
			get_text(o, "error", ee->message, sizeof(ee->message));
	}
	if (json_is_integer(code) && json_integer_value(code) >= 0 &&
	    json_integer_value(code) < 1000)
		ee->code = (int)json_integer_value(code);
	if (ee->message[0] == '\0')
		snprintf(ee->message, sizeof(ee->message), "error code %d",
		    ee->code);
	return 1;
}

/* Parses buf as one JSON object. */
static json_t *
load(const char *buf, size_t len, char *err, size_t errlen)
{
	json_error_t je;
	json_t *o;

	o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (o == NULL) {
		fail(err, errlen, TP_EPROTO, "invalid JSON at byte %d: %s",
		    je.position, je.text);
		return NULL;
	}
	if (!json_is_object(o)) {
		json_decref(o);
		fail(err, errlen, TP_EPROTO, "expected a JSON object");
		return NULL;
	}
	return o;
}

static int
header_revision(json_t *o, int64_t *rev, char *err, size_t errlen)
{
	json_t *h = json_object_get(o, "header");

	*rev = 0;
	if (h == NULL)
		return 0;
	if (!json_is_object(h))
		return fail(err, errlen, TP_ETYPE, "header: expected an object");
	return get_i64(h, "revision", rev, err, errlen);
}

int
etcd_decode_error(const char *buf, size_t len, struct etcd_error *ee)
{
	char err[8];
	json_t *o = load(buf, len, err, sizeof(err));
	int rc;

	if (o == NULL)
		return 0;
	rc = error_of(o, ee);
	json_decref(o);
	return rc;
}

/* ---- range -------------------------------------------------------- */

static int
range_kvs(json_t *o, struct etcd_range *r, char *err, size_t errlen)
{
	json_t *a = json_object_get(o, "kvs");
	size_t i, n;
	int rc;

	if (a == NULL || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return fail(err, errlen, TP_ETYPE, "kvs: expected an array");
	if ((n = json_array_size(a)) > KVS_MAX)
		return fail(err, errlen, TP_ETOOBIG, "kvs: too many (%zu)", n);
	if (n == 0)
		return 0;
	if ((r->kvs = calloc(n, sizeof(*r->kvs))) == NULL)
		return fail(err, errlen, TP_ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		if ((rc = kv_decode(json_array_get(a, i), &r->kvs[i], err,
		    errlen)) != 0) {
			kv_clear(&r->kvs[i]);
			return rc;
		}
		r->n++;
	}
	return 0;
}

int
etcd_decode_range(const char *buf, size_t len, struct etcd_range *r,
    struct etcd_error *ee, char *err, size_t errlen)
{
	json_t *o;
	int rc;

	memset(r, 0, sizeof(*r));
	if ((o = load(buf, len, err, errlen)) == NULL)
		return TP_EPROTO;
	if (error_of(o, ee))
		rc = ETCD_JSON_ERROR;
	else if ((rc = header_revision(o, &r->revision, err, errlen)) == 0 &&
	    (rc = get_bool(o, "more", &r->more, err, errlen)) == 0 &&
	    (rc = range_kvs(o, r, err, errlen)) == 0 && r->revision <= 0)
		rc = fail(err, errlen, TP_EPROTO, "header.revision: missing");
	json_decref(o);
	if (rc != 0)
		etcd_range_free(r);
	return rc;
}

void
etcd_range_free(struct etcd_range *r)
{
	for (size_t i = 0; i < r->n; i++)
		kv_clear(&r->kvs[i]);
	free(r->kvs);
	memset(r, 0, sizeof(*r));
}

/* ---- watch -------------------------------------------------------- */

static int
event_decode(json_t *o, struct etcd_event *ev, char *err, size_t errlen)
{
	json_t *t;

	memset(ev, 0, sizeof(*ev));
	if (!json_is_object(o))
		return fail(err, errlen, TP_ETYPE, "events: expected objects");
	t = json_object_get(o, "type");
	if (t == NULL || json_is_null(t) || (json_is_string(t) &&
	    strcmp(json_string_value(t), "PUT") == 0))
		ev->type = ETCD_EV_PUT;
	else if (json_is_string(t) && strcmp(json_string_value(t),
	    "DELETE") == 0)
		ev->type = ETCD_EV_DELETE;
	else if (json_is_integer(t) && (json_integer_value(t) == 0 ||
	    json_integer_value(t) == 1))
		ev->type = (enum etcd_event_type)json_integer_value(t);
	else
		return fail(err, errlen, TP_EPROTO, "events: unknown type");
	return kv_decode(json_object_get(o, "kv"), &ev->kv, err, errlen);
}

static int
watch_events(json_t *res, struct etcd_watch *w, char *err, size_t errlen)
{
	json_t *a = json_object_get(res, "events");
	size_t i, n;
	int rc;

	if (a == NULL || json_is_null(a))
		return 0;
	if (!json_is_array(a))
		return fail(err, errlen, TP_ETYPE, "events: expected an array");
	if ((n = json_array_size(a)) > KVS_MAX)
		return fail(err, errlen, TP_ETOOBIG, "events: too many (%zu)",
		    n);
	if (n == 0)
		return 0;
	if ((w->events = calloc(n, sizeof(*w->events))) == NULL)
		return fail(err, errlen, TP_ENOMEM, "out of memory");
	for (i = 0; i < n; i++) {
		if ((rc = event_decode(json_array_get(a, i), &w->events[i], err,
		    errlen)) != 0) {
			kv_clear(&w->events[i].kv);
			return rc;
		}
		w->n++;
	}
	return 0;
}

static int
watch_result(json_t *res, struct etcd_watch *w, char *err, size_t errlen)
{
	int rc;

	if (!json_is_object(res))
		return fail(err, errlen, TP_ETYPE, "result: expected an object");
	if ((rc = header_revision(res, &w->revision, err, errlen)) != 0 ||
	    (rc = get_bool(res, "created", &w->created, err, errlen)) != 0 ||
	    (rc = get_bool(res, "canceled", &w->canceled, err, errlen)) != 0 ||
	    (rc = get_i64(res, "compact_revision", &w->compact_revision, err,
	    errlen)) != 0)
		return rc;
	get_text(res, "cancel_reason", w->cancel_reason,
	    sizeof(w->cancel_reason));
	return watch_events(res, w, err, errlen);
}

int
etcd_decode_watch(const char *buf, size_t len, struct etcd_watch *w,
    struct etcd_error *ee, char *err, size_t errlen)
{
	json_t *o, *res;
	int rc;

	memset(w, 0, sizeof(*w));
	if ((o = load(buf, len, err, errlen)) == NULL)
		return TP_EPROTO;
	if (error_of(o, ee))
		rc = ETCD_JSON_ERROR;
	else if ((res = json_object_get(o, "result")) == NULL)
		rc = fail(err, errlen, TP_EPROTO, "result: missing");
	else
		rc = watch_result(res, w, err, errlen);
	json_decref(o);
	if (rc != 0)
		etcd_watch_free(w);
	return rc;
}

void
etcd_watch_free(struct etcd_watch *w)
{
	for (size_t i = 0; i < w->n; i++)
		kv_clear(&w->events[i].kv);
	free(w->events);
	memset(w, 0, sizeof(*w));
}

/* ---- auth --------------------------------------------------------- */

int
etcd_decode_auth(const char *buf, size_t len, char **token,
    struct etcd_error *ee, char *err, size_t errlen)
{
	json_t *o, *t;
	const char *s;
	size_t i, n = 0;
	int rc = 0;

	*token = NULL;
	if ((o = load(buf, len, err, errlen)) == NULL)
		return TP_EPROTO;
	if (error_of(o, ee)) {
		json_decref(o);
		return ETCD_JSON_ERROR;
	}
	t = json_object_get(o, "token");
	if (!json_is_string(t) || (n = json_string_length(t)) == 0 ||
	    n > 4096)
		rc = fail(err, errlen, TP_EPROTO, "token: missing or too long");
	for (i = 0, s = rc == 0 ? json_string_value(t) : ""; rc == 0 && i < n;
	    i++)
		if (s[i] < 0x21 || s[i] > 0x7e)	/* it goes into a header */
			rc = fail(err, errlen, TP_EPROTO, "token: not printable");
	if (rc == 0 && (*token = strdup(s)) == NULL)
		rc = fail(err, errlen, TP_ENOMEM, "out of memory");
	json_decref(o);
	return rc;
}

/* ---- stream framing ----------------------------------------------- */

void
etcd_stream_init(struct etcd_stream *s)
{
	memset(s, 0, sizeof(*s));
}

void
etcd_stream_free(struct etcd_stream *s)
{
	free(s->buf);
	memset(s, 0, sizeof(*s));
}

void
etcd_stream_reset(struct etcd_stream *s)
{
	s->len = s->start = s->scan = 0;
	s->depth = s->in_str = s->esc = 0;
}

int
etcd_stream_feed(struct etcd_stream *s, const void *data, size_t len)
{
	size_t need, ncap;
	char *nb;

	if (s->start > 0) {	/* drop what was returned */
		memmove(s->buf, s->buf + s->start, s->len - s->start);
		s->len -= s->start;
		s->start = 0;
	}
	if (len > ETCD_FRAME_MAX || s->len + len > ETCD_FRAME_MAX + 2)
		return TP_ETOOBIG;
	need = s->len + len + 1;
	if (need > s->cap) {
		for (ncap = s->cap ? s->cap : 4096; ncap < need; ncap *= 2)
			;
		if ((nb = realloc(s->buf, ncap)) == NULL)
			return TP_ENOMEM;
		s->buf = nb;
		s->cap = ncap;
	}
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	return 0;
}

/* Scans the current frame from s->start + s->scan; 1 when it is closed. */
static int
scan_frame(struct etcd_stream *s)
{
	const char *p = s->buf + s->start;
	size_t n = s->len - s->start;

	for (; s->scan < n; s->scan++) {
		char c = p[s->scan];

		if (s->in_str) {
			if (s->esc)
				s->esc = 0;
			else if (c == '\\')
				s->esc = 1;
			else if (c == '"')
				s->in_str = 0;
		} else if (c == '"')
			s->in_str = 1;
		else if (c == '{' || c == '[')
			s->depth++;
		else if ((c == '}' || c == ']') && --s->depth == 0) {
			s->scan++;
			return 1;
		}
	}
	return 0;
}

int
etcd_stream_next(struct etcd_stream *s, const char **frame, size_t *flen)
{
	if (s->scan == 0) {
		while (s->start < s->len && strchr(" \t\r\n",
		    s->buf[s->start]) != NULL && s->buf[s->start] != '\0')
			s->start++;
		if (s->start == s->len)
			return 0;
		if (s->buf[s->start] != '{')
			return TP_EPROTO;
	}
	if (!scan_frame(s))
		return s->len - s->start > ETCD_FRAME_MAX ? TP_ETOOBIG : 0;
	*frame = s->buf + s->start;
	*flen = s->scan;
	s->start += s->scan;
	s->scan = 0;
	s->depth = s->in_str = s->esc = 0;
	return 1;
}
