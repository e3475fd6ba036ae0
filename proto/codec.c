/*
 * Schema-driven msgpack encoder and strict decoder.
 *
 * The encoder writes into a caller-supplied buffer through msgpack-c's
 * packer with a fixed-buffer writer: no allocation, so it is usable from a
 * SIGSYS handler.  The decoder first pre-scans the bytes (msgpack-c would
 * otherwise allocate slots for a container's declared size before reading
 * it: a 5-byte header could ask for gigabytes), then unpacks with
 * msgpack-c and checks every field against the schema.
 */
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "common/error.h"
#include "msg.h"
#include "schema.h"

#define PRESCAN_MAX_DEPTH	16

/* --- pre-scan ------------------------------------------------------------ */

static int
need(size_t len, size_t off, size_t n)
{
	return n <= len - off ? 0 : TP_ETRUNC;
}

static uint64_t
be(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/*
 * Classifies the object whose first byte is at buf[*off]: advances *off over
 * its header and scalar payload and sets *children to the number of nested
 * objects that follow (2n for a map of n pairs).
 */
static int
prescan_one(const uint8_t *buf, size_t len, size_t *off, uint64_t *children)
{
	uint8_t b = buf[(*off)++];
	unsigned lenbytes = 0;
	uint64_t skip = 0;
	int rc;

	*children = 0;
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return 0;
	if ((b & 0xf0) == 0x80) {
		*children = 2 * (uint64_t)(b & 0x0f);
		return 0;
	}
	if ((b & 0xf0) == 0x90) {
		*children = b & 0x0f;
		return 0;
	}
	if ((b & 0xe0) == 0xa0)
		skip = b & 0x1f;
	else switch (b) {
	case 0xc4: case 0xd9: lenbytes = 1; break;
	case 0xc5: case 0xda: lenbytes = 2; break;
	case 0xc6: case 0xdb: lenbytes = 4; break;
	case 0xc7: lenbytes = 1; skip = 1; break;	/* ext: +type byte */
	case 0xc8: lenbytes = 2; skip = 1; break;
	case 0xc9: lenbytes = 4; skip = 1; break;
	case 0xca: skip = 4; break;
	case 0xcb: skip = 8; break;
	case 0xcc: case 0xd0: skip = 1; break;
	case 0xcd: case 0xd1: skip = 2; break;
	case 0xce: case 0xd2: skip = 4; break;
	case 0xcf: case 0xd3: skip = 8; break;
	case 0xd4: skip = 2; break;
	case 0xd5: skip = 3; break;
	case 0xd6: skip = 5; break;
	case 0xd7: skip = 9; break;
	case 0xd8: skip = 17; break;
	case 0xdc: case 0xde:
	case 0xdd: case 0xdf: {
		unsigned n = (b == 0xdc || b == 0xde) ? 2 : 4;

		if ((rc = need(len, *off, n)) != 0)
			return rc;
		*children = be(buf + *off, n) * ((b == 0xde || b == 0xdf) ? 2 : 1);
		*off += n;
		return 0;
	}
	default:
		return TP_EPROTO;	/* 0xc1: never used */
	}
	if (lenbytes > 0) {
		if ((rc = need(len, *off, lenbytes)) != 0)
			return rc;
		skip += be(buf + *off, lenbytes);
		*off += lenbytes;
	}
	if (skip > len - *off)
		return TP_ETRUNC;
	*off += (size_t)skip;
	return 0;
}

int
msgpack_prescan(const uint8_t *buf, size_t len, unsigned max_depth)
{
	uint64_t stack[PRESCAN_MAX_DEPTH + 1], children;
	unsigned depth = 0;
	size_t off = 0;
	int rc;

	if (max_depth > PRESCAN_MAX_DEPTH)
		max_depth = PRESCAN_MAX_DEPTH;
	stack[0] = 1;
	for (;;) {
		while (stack[depth] == 0) {
			if (depth == 0)
				return off == len ? 0 : TP_EPROTO;
			depth--;
		}
		stack[depth]--;
		if (off >= len)
			return TP_ETRUNC;
		if ((rc = prescan_one(buf, len, &off, &children)) != 0)
			return rc;
		if (children == 0)
			continue;
		/* Every nested object takes at least one byte. */
		if (children > len - off)
			return TP_ETRUNC;
		if (depth + 1 > max_depth)
			return TP_ETOOBIG;
		stack[++depth] = children;
	}
}

/* --- encoder ------------------------------------------------------------- */

struct fixbuf {
	uint8_t	*p;
	size_t	 len;
	size_t	 off;
	int	 overflow;
};

static int
fixbuf_write(void *data, const char *buf, size_t len)
{
	struct fixbuf *fb = data;

	if (len > fb->len - fb->off) {
		fb->overflow = 1;
		return -1;
	}
	memcpy(fb->p + fb->off, buf, len);
	fb->off += len;
	return 0;
}

static int encode_map(msgpack_packer *pk, const struct schema *s,
    const uint8_t *base);

static int
encode_field(msgpack_packer *pk, const struct field *f, const uint8_t *base)
{
	const uint8_t *p = base + f->off;
	uint32_t n;
	size_t sl;

	switch (f->kind) {
	case FK_U32:
		memcpy(&n, p, sizeof(n));
		if (n > f->max)
			return TP_ERANGE;
		return msgpack_pack_uint32(pk, n) == 0 ? 0 : TP_ETOOBIG;
	case FK_U64: {
		uint64_t v;

		memcpy(&v, p, sizeof(v));
		return msgpack_pack_uint64(pk, v) == 0 ? 0 : TP_ETOOBIG;
	}
	case FK_BOOL:
		return (*(const bool *)p ? msgpack_pack_true(pk) :
		    msgpack_pack_false(pk)) == 0 ? 0 : TP_ETOOBIG;
	case FK_STR:
		sl = strnlen((const char *)p, f->cap);
		if (sl >= f->cap)
			return TP_ETOOBIG;
		if (msgpack_pack_str(pk, sl) != 0 ||
		    msgpack_pack_str_body(pk, p, sl) != 0)
			return TP_ETOOBIG;
		return 0;
	case FK_BIN:
		memcpy(&n, base + f->len_off, sizeof(n));
		if (n == 0 || n > f->cap)
			return TP_ERANGE;
		if (msgpack_pack_bin(pk, n) != 0 ||
		    msgpack_pack_bin_body(pk, p, n) != 0)
			return TP_ETOOBIG;
		return 0;
	case FK_ARRAY:
		memcpy(&n, base + f->len_off, sizeof(n));
		if (n > f->cap)
			return TP_ETOOBIG;
		if (msgpack_pack_array(pk, n) != 0)
			return TP_ETOOBIG;
		for (uint32_t i = 0; i < n; i++) {
			int rc = encode_map(pk, f->elem, p + i * f->elem_size);

			if (rc != 0)
				return rc;
		}
		return 0;
	}
	return TP_EINVAL;
}

static int
encode_map(msgpack_packer *pk, const struct schema *s, const uint8_t *base)
{
	int rc;

	if (msgpack_pack_map(pk, s->nfields) != 0)
		return TP_ETOOBIG;
	for (size_t i = 0; i < s->nfields; i++) {
		const char *k = s->fields[i].name;

		if (msgpack_pack_str(pk, strlen(k)) != 0 ||
		    msgpack_pack_str_body(pk, k, strlen(k)) != 0)
			return TP_ETOOBIG;
		if ((rc = encode_field(pk, &s->fields[i], base)) != 0)
			return rc;
	}
	return 0;
}

int
msg_encode(const struct msg *m, uint8_t *buf, size_t len)
{
	const struct msg_desc *d = msg_desc_lookup(m->type);
	struct fixbuf fb = { buf, len > PROTO_MAX_MSG ? PROTO_MAX_MSG : len, 0, 0 };
	msgpack_packer pk;
	int rc;

	if (d == NULL)
		return TP_EINVAL;
	msgpack_packer_init(&pk, &fb, fixbuf_write);
	if (msgpack_pack_array(&pk, 2) != 0 ||
	    msgpack_pack_uint32(&pk, d->type) != 0)
		return TP_ETOOBIG;
	rc = encode_map(&pk, d->schema, (const uint8_t *)&m->u);
	if (fb.overflow)
		return TP_ETOOBIG;
	if (rc != 0)
		return rc;
	return (int)fb.off;
}

/* --- decoder ------------------------------------------------------------- */

static int decode_map(const msgpack_object *o, const struct schema *s,
    uint8_t *base);

static int
decode_str(const msgpack_object *o, const struct field *f, uint8_t *p)
{
	if (o->type != MSGPACK_OBJECT_STR)
		return TP_ETYPE;
	if (o->via.str.size >= f->cap)
		return TP_ETOOBIG;
	if (memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL)
		return TP_EPROTO;
	memcpy(p, o->via.str.ptr, o->via.str.size);
	p[o->via.str.size] = '\0';
	return 0;
}

static int
decode_array(const msgpack_object *o, const struct field *f, uint8_t *base)
{
	uint32_t n;
	int rc;

	if (o->type != MSGPACK_OBJECT_ARRAY)
		return TP_ETYPE;
	if (o->via.array.size > f->cap)
		return TP_ETOOBIG;
	n = o->via.array.size;
	for (uint32_t i = 0; i < n; i++) {
		rc = decode_map(&o->via.array.ptr[i], f->elem,
		    base + f->off + i * f->elem_size);
		if (rc != 0)
			return rc;
	}
	memcpy(base + f->len_off, &n, sizeof(n));
	return 0;
}

static int
decode_field(const msgpack_object *o, const struct field *f, uint8_t *base)
{
	uint8_t *p = base + f->off;
	uint32_t n;

	switch (f->kind) {
	case FK_U32:
		if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return TP_ETYPE;
		if (o->via.u64 > f->max)
			return TP_ERANGE;
		n = (uint32_t)o->via.u64;
		memcpy(p, &n, sizeof(n));
		return 0;
	case FK_U64:
		if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return TP_ETYPE;
		memcpy(p, &o->via.u64, sizeof(uint64_t));
		return 0;
	case FK_BOOL:
		if (o->type != MSGPACK_OBJECT_BOOLEAN)
			return TP_ETYPE;
		*(bool *)p = o->via.boolean;
		return 0;
	case FK_STR:
		return decode_str(o, f, p);
	case FK_BIN:
		if (o->type != MSGPACK_OBJECT_BIN)
			return TP_ETYPE;
		if (o->via.bin.size == 0 || o->via.bin.size > f->cap)
			return TP_ETOOBIG;
		memcpy(p, o->via.bin.ptr, o->via.bin.size);
		n = o->via.bin.size;
		memcpy(base + f->len_off, &n, sizeof(n));
		return 0;
	case FK_ARRAY:
		return decode_array(o, f, base);
	}
	return TP_EINVAL;
}

static const struct field *
find_field(const struct schema *s, const msgpack_object *key, size_t *idx)
{
	if (key->type != MSGPACK_OBJECT_STR)
		return NULL;
	for (size_t i = 0; i < s->nfields; i++) {
		const char *name = s->fields[i].name;

		if (strlen(name) == key->via.str.size &&
		    memcmp(name, key->via.str.ptr, key->via.str.size) == 0) {
			*idx = i;
			return &s->fields[i];
		}
	}
	return NULL;
}

/* Exact key set: as many keys as fields, each known, none twice. */
static int
decode_map(const msgpack_object *o, const struct schema *s, uint8_t *base)
{
	uint64_t seen = 0;
	size_t idx = 0;
	int rc;

	if (o->type != MSGPACK_OBJECT_MAP)
		return TP_ETYPE;
	if (o->via.map.size != s->nfields)
		return TP_EFIELD;
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		const struct field *f = find_field(s, &kv->key, &idx);

		if (f == NULL || (seen & (1ULL << idx)) != 0)
			return TP_EFIELD;
		seen |= 1ULL << idx;
		if ((rc = decode_field(&kv->val, f, base)) != 0)
			return rc;
	}
	return 0;
}

int
msg_peek_type(const uint8_t *buf, size_t len, uint32_t *type)
{
	/* [type, {...}]: fixarray(2), then a positive fixint or uint8. */
	if (len < 3 || buf[0] != 0x92)
		return TP_EPROTO;
	if (buf[1] <= 0x7f) {
		*type = buf[1];
		return 0;
	}
	if (buf[1] == 0xcc) {
		*type = buf[2];
		return 0;
	}
	return TP_EPROTO;
}

static int
decode_body(const uint8_t *buf, size_t len, const struct msg_desc *d,
    struct msg *m)
{
	msgpack_unpacked up;
	size_t off = 0;
	int rc;

	msgpack_unpacked_init(&up);
	if (msgpack_unpack_next(&up, (const char *)buf, len, &off) !=
	    MSGPACK_UNPACK_SUCCESS) {
		rc = TP_EPROTO;
		goto out;
	}
	if (off != len || up.data.type != MSGPACK_OBJECT_ARRAY ||
	    up.data.via.array.size != 2) {
		rc = TP_EPROTO;
		goto out;
	}
	rc = decode_map(&up.data.via.array.ptr[1], d->schema,
	    (uint8_t *)&m->u);
out:
	msgpack_unpacked_destroy(&up);
	return rc;
}

int
msg_decode(const uint8_t *buf, size_t len, int fd, enum msg_dir dir,
    struct msg *m)
{
	const struct msg_desc *d;
	uint32_t type;
	int rc;

	if (len > PROTO_MAX_MSG) {
		rc = TP_ETOOBIG;
		goto out;
	}
	if ((rc = msgpack_prescan(buf, len, PRESCAN_MAX_DEPTH)) != 0 ||
	    (rc = msg_peek_type(buf, len, &type)) != 0)
		goto out;
	if ((d = msg_desc_lookup(type)) == NULL || d->dir != dir) {
		rc = TP_EPROTO;
		goto out;
	}
	msg_init(m, (enum msg_type)type);
	if ((rc = decode_body(buf, len, d, m)) != 0)
		goto out;
	if (msg_wants_fd(m) != (fd >= 0)) {
		rc = TP_EFD;
		goto out;
	}
	if (type == MSG_CONFIG && m->u.config.version != PROTO_VERSION)
		rc = TP_EVERSION;
	else if (type == MSG_READY && m->u.ready.version != PROTO_VERSION)
		rc = TP_EVERSION;
out:
	if (rc != 0) {
		if (fd >= 0)
			close(fd);
		return rc;
	}
	m->fd = fd;
	return 0;
}
