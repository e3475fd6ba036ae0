/*
 * Internal: the field tables that drive both the encoder and the strict
 * decoder, so that the two can never disagree about a message's shape.
 */
#ifndef TP_PROTO_SCHEMA_H
#define TP_PROTO_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

enum field_kind {
	FK_U32,		/* uint32_t at off, <= max */
	FK_U64,		/* uint64_t at off */
	FK_BOOL,	/* bool at off */
	FK_STR,		/* char[cap] at off: no NUL inside, < cap bytes */
	FK_BIN,		/* uint8_t[cap] at off, uint32_t length at len_off, >= 1 */
	FK_ARRAY,	/* elem[cap] at off, uint32_t count at len_off */
};

struct schema;

struct field {
	const char		*name;
	enum field_kind		 kind;
	size_t			 off;
	size_t			 cap;
	size_t			 len_off;
	uint64_t		 max;		/* FK_U32 upper bound */
	const struct schema	*elem;		/* FK_ARRAY element schema */
	size_t			 elem_size;
};

struct schema {
	const struct field	*fields;
	size_t			 nfields;	/* <= 64 */
};

/* Per-type description: name, direction, whether it may carry an fd. */
struct msg_desc {
	uint32_t		 type;
	const char		*name;
	enum msg_dir		 dir;
	int			 fd_rule;	/* FD_NEVER, FD_IF_FLAG */
	size_t			 fd_flag;	/* FD_IF_FLAG: offset of its bool */
	const struct schema	*schema;
	size_t			 payload_size;
};

/*
 * FD_NEVER: no fd, ever.  FD_IF_FLAG: an fd exactly when the payload's
 * bool at fd_flag is true (DIAL_RESULT's "ok").
 */
enum { FD_NEVER = 0, FD_IF_FLAG = 1 };

/* Returns the descriptor for a type, or NULL. */
const struct msg_desc *msg_desc_lookup(uint32_t type);

/*
 * The fd rule, from the message table, for both ends: true if m (its type
 * and payload) must travel with an fd, false if it must travel without.
 * An unknown type carries none.
 */
bool msg_wants_fd(const struct msg *m);

#endif
