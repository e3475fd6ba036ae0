/*
 * Writing JSON text straight into an evbuffer, for the one large document
 * the supervisor serves (the status dump, one row per agent: building it as
 * jansson objects spent most of its time in malloc and free).
 */
#ifndef TP_SUPERVISOR_JSONW_H
#define TP_SUPERVISOR_JSONW_H

#include <event2/buffer.h>

/*
 * Appends s as a JSON string: quoted, with '"', '\\' and control
 * characters escaped, and every byte that does not start a valid UTF-8
 * sequence written as U+FFFD.  Strings a worker controls (proxy names,
 * errors) can therefore neither break the document nor drop a row.
 */
void jsonw_str(struct evbuffer *b, const char *s);

#endif
