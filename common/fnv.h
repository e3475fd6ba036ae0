/*
 * FNV-1a, 64 bits: the project's one non-cryptographic hash, for hash
 * tables and for telling changed from unchanged data (tunnel specs, file
 * contents).  Its inputs are the operator's own configuration; nothing
 * here may rely on it against a party choosing collisions.
 */
#ifndef TP_FNV_H
#define TP_FNV_H

#include <stddef.h>
#include <stdint.h>

#define TP_FNV1A_INIT	0xcbf29ce484222325ULL	/* the offset basis */

/* Continues hash h over len bytes at p; returns the new hash. */
uint64_t tp_fnv1a(uint64_t h, const void *p, size_t len);

/*
 * Continues hash h over the string s, length-prefixed (the length as a
 * uint64_t in host order, then the bytes), so that the pairs ("ab", "c")
 * and ("a", "bc") hash differently.
 */
uint64_t tp_fnv1a_str(uint64_t h, const char *s);

#endif
