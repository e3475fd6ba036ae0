/*
 * Encoders that a signal handler may call: no allocation, no locks, no
 * library that might take either (msgpack-c's packer allocates), nothing
 * but stores into the caller's buffer.  Each produces exactly the bytes
 * msg_encode() would (msgpack's smallest encoding of every item, the keys
 * in the schema's order), so the receiver decodes it with the one strict
 * decoder; tests/unit/test_proto.c holds them to that.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "msg.h"

/* Appends a msgpack unsigned integer in its smallest encoding. */
static uint8_t *
mp_uint(uint8_t *p, uint32_t v)
{
	if (v < 0x80) {
		*p++ = (uint8_t)v;
	} else if (v <= 0xff) {
		*p++ = 0xcc;
		*p++ = (uint8_t)v;
	} else if (v <= 0xffff) {
		*p++ = 0xcd;
		*p++ = (uint8_t)(v >> 8);
		*p++ = (uint8_t)v;
	} else {
		*p++ = 0xce;
		for (int shift = 24; shift >= 0; shift -= 8)
			*p++ = (uint8_t)(v >> shift);
	}
	return p;
}

/* Appends a msgpack fixstr; callers guarantee n < 32. */
static uint8_t *
mp_fixstr(uint8_t *p, const char *s, size_t n)
{
	*p++ = (uint8_t)(0xa0 | n);
	memcpy(p, s, n);
	return p + n;
}

size_t
msg_encode_sandbox_violation(uint8_t *buf, size_t len, uint32_t nr,
    const char *name)
{
	/* The payload's name is a char[32]: at most 31 bytes, a fixstr. */
	const size_t cap = sizeof(((struct msg_sandbox_violation *)0)->name);
	size_t n = 0;
	uint8_t *p = buf;

	if (len < PROTO_VIOLATION_MAX)
		return 0;
	while (name != NULL && n < cap && name[n] != '\0')
		n++;
	if (name == NULL || n >= cap) {
		name = "?";
		n = 1;
	}
	*p++ = 0x92;				/* [type, {payload}] */
	p = mp_uint(p, MSG_SANDBOX_VIOLATION);
	*p++ = 0x82;				/* {"nr", "name"} */
	p = mp_fixstr(p, "nr", 2);
	p = mp_uint(p, nr);
	p = mp_fixstr(p, "name", 4);
	p = mp_fixstr(p, name, n);
	return (size_t)(p - buf);
}
