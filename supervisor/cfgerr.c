/*
 * The error list of the configuration parsers (cfgerr.h).  Bounded: a
 * hostile file of a million bad lines costs CFG_ERRORS_MAX lines of
 * memory and a count.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supervisor/cfgerr.h"

void
cfg_errors_init(struct cfg_errors *e)
{
	memset(e, 0, sizeof(*e));
}

void
cfg_errors_clear(struct cfg_errors *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		free(e->msg[i]);
	e->n = 0;
	e->dropped = 0;
}

void
cfg_errors_free(struct cfg_errors *e)
{
	cfg_errors_clear(e);
	free(e->msg);
	memset(e, 0, sizeof(*e));
}

/* Takes ownership of line (may be NULL: counted as dropped). */
static void
cfg_errors_push(struct cfg_errors *e, char *line)
{
	char **nv;
	size_t ncap;

	if (line == NULL || e->n >= CFG_ERRORS_MAX) {
		free(line);
		e->dropped++;
		return;
	}
	if (e->n == e->cap) {
		ncap = e->cap ? e->cap * 2 : 8;
		nv = reallocarray(e->msg, ncap, sizeof(*nv));
		if (nv == NULL) {
			free(line);
			e->dropped++;
			return;
		}
		e->msg = nv;
		e->cap = ncap;
	}
	e->msg[e->n++] = line;
}

void
cfg_errors_addv(struct cfg_errors *e, const char *fmt, va_list ap)
{
	char *line;

	if (vasprintf(&line, fmt, ap) < 0)
		line = NULL;
	cfg_errors_push(e, line);
}

void
cfg_errors_add(struct cfg_errors *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_errors_addv(e, fmt, ap);
	va_end(ap);
}

void
cfg_errors_move(struct cfg_errors *dst, struct cfg_errors *src)
{
	size_t i;

	for (i = 0; i < src->n; i++)
		cfg_errors_push(dst, src->msg[i]);
	dst->dropped += src->dropped;
	src->n = 0;
	src->dropped = 0;
}

size_t
cfg_errors_count(const struct cfg_errors *e)
{
	return e->n + e->dropped;
}

const char *
cfg_errors_first(const struct cfg_errors *e)
{
	return e->n > 0 ? e->msg[0] : NULL;
}

void
cfg_errors_print(const struct cfg_errors *e, FILE *f)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		fprintf(f, "%s\n", e->msg[i]);
	if (e->dropped > 0)
		fprintf(f, "(%zu more errors not shown)\n", e->dropped);
}
