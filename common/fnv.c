#include <string.h>

#include "fnv.h"

#define FNV_PRIME	0x100000001b3ULL

uint64_t
tp_fnv1a(uint64_t h, const void *p, size_t len)
{
	const unsigned char *c = p;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= c[i];
		h *= FNV_PRIME;
	}
	return h;
}

uint64_t
tp_fnv1a_str(uint64_t h, const char *s)
{
	uint64_t len = strlen(s);

	h = tp_fnv1a(h, &len, sizeof(len));
	return tp_fnv1a(h, s, (size_t)len);
}
