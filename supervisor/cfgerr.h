/*
 * The error list of every configuration parser (the main file, tunnel
 * files and etcd values, known_hosts): one line per problem, in the order
 * found, so that one run of `tunnelpool check-config` shows every mistake.
 *
 * Lines read "FILE:LINE:COLUMN: message" (1-based) when they have a
 * position, "FILE: message" for a file as a whole.  Parsers never log:
 * the caller decides what to print and whether to keep its previous
 * state.
 */
#ifndef TP_SUP_CFGERR_H
#define TP_SUP_CFGERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#define CFG_ERRORS_MAX		1000	/* lines kept; the rest are counted */

struct cfg_errors {
	char	**msg;		/* each a malloc'd line without newline */
	size_t	  n;
	size_t	  cap;
	size_t	  dropped;	/* lines not kept (limit or out of memory) */
};

void cfg_errors_init(struct cfg_errors *e);
void cfg_errors_free(struct cfg_errors *e);
/* Clears the list for reuse (frees the lines). */
void cfg_errors_clear(struct cfg_errors *e);
/* Appends one formatted line; never fails (counts it as dropped instead). */
void cfg_errors_add(struct cfg_errors *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cfg_errors_addv(struct cfg_errors *e, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Moves every line of src to the end of dst; src is left empty. */
void cfg_errors_move(struct cfg_errors *dst, struct cfg_errors *src);
/* Returns the number of errors reported, dropped ones included. */
size_t cfg_errors_count(const struct cfg_errors *e);
/* Returns the first line, or NULL if there is none. */
const char *cfg_errors_first(const struct cfg_errors *e);
/* Writes each line plus a newline (and a count of dropped lines) to f. */
void cfg_errors_print(const struct cfg_errors *e, FILE *f);

#endif
