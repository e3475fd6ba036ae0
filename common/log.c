#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"

#define LOG_LINE_MAX	4096

static const char	*log_prog = "tunnelpool";
static enum log_level	 log_level = LOG_LVL_INFO;
static enum log_format	 log_fmt = LOG_FMT_LOGFMT;
static int		 log_fd = 2;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void
log_init(const char *prog, enum log_level level, enum log_format fmt, int fd)
{
	if (prog != NULL)
		log_prog = prog;
	log_level = level;
	log_fmt = fmt;
	log_fd = fd;
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

void
log_set_format(enum log_format fmt)
{
	log_fmt = fmt;
}

int
log_parse_level(const char *s, enum log_level *level)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(s, level_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	return TP_EINVAL;
}

int
log_parse_format(const char *s, enum log_format *fmt)
{
	if (strcmp(s, "logfmt") == 0)
		*fmt = LOG_FMT_LOGFMT;
	else if (strcmp(s, "json") == 0)
		*fmt = LOG_FMT_JSON;
	else
		return TP_EINVAL;
	return 0;
}

/* Appends with truncation; o tracks the logical end, capped at len - 2. */
struct lbuf {
	char	*b;
	size_t	 len;
	size_t	 o;
};

static void
lb_putc(struct lbuf *l, char c)
{
	if (l->o + 2 < l->len)
		l->b[l->o++] = c;
}

static void
lb_puts(struct lbuf *l, const char *s)
{
	while (*s != '\0')
		lb_putc(l, *s++);
}

/* logfmt values are quoted when they hold spaces, quotes, '=' or controls. */
static void
lb_logfmt_value(struct lbuf *l, const char *v)
{
	int quote = (*v == '\0');

	for (const char *p = v; *p != '\0' && !quote; p++)
		if (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' ||
		    (unsigned char)*p < 0x20)
			quote = 1;
	if (!quote) {
		lb_puts(l, v);
		return;
	}
	lb_putc(l, '"');
	for (const char *p = v; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"' || c == '\\') {
			lb_putc(l, '\\');
			lb_putc(l, (char)c);
		} else if (c == '\n') {
			lb_puts(l, "\\n");
		} else if (c < 0x20) {
			lb_putc(l, '?');
		} else
			lb_putc(l, (char)c);
	}
	lb_putc(l, '"');
}

static void
lb_json_string(struct lbuf *l, const char *v)
{
	static const char hex[] = "0123456789abcdef";

	lb_putc(l, '"');
	for (const char *p = v; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"' || c == '\\') {
			lb_putc(l, '\\');
			lb_putc(l, (char)c);
		} else if (c < 0x20) {
			lb_puts(l, "\\u00");
			lb_putc(l, hex[c >> 4]);
			lb_putc(l, hex[c & 15]);
		} else
			lb_putc(l, (char)c);
	}
	lb_putc(l, '"');
}

static void
lb_field(struct lbuf *l, enum log_format fmt, const char *k, const char *v,
    int first)
{
	if (fmt == LOG_FMT_JSON) {
		if (!first)
			lb_putc(l, ',');
		lb_json_string(l, k);
		lb_putc(l, ':');
		lb_json_string(l, v);
	} else {
		if (!first)
			lb_putc(l, ' ');
		lb_puts(l, k);
		lb_putc(l, '=');
		lb_logfmt_value(l, v);
	}
}

/* LOG_FMT_RELAY: the level letter, the function, the message; no fields. */
static size_t
relay_line(struct lbuf *l, enum log_level level, const char *func,
    const char *msg)
{
	lb_putc(l, "DIWE"[level]);
	lb_puts(l, func != NULL ? func : "-");
	lb_putc(l, ' ');
	for (const char *p = msg; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '\n')
			lb_puts(l, "\\n");
		else
			lb_putc(l, c < 0x20 ? '?' : (char)c);
	}
	l->b[l->o++] = '\n';
	l->b[l->o] = '\0';
	return l->o;
}

static size_t
format_line(char *buf, size_t len, enum log_format fmt, const char *prog,
    enum log_level level, const char *func, const struct log_agent *agent,
    const char *const *kv, const char *msg)
{
	struct lbuf l = { buf, len, 0 };
	char ts[40], pid[24];
	struct timespec now;
	struct tm tm;

	if (len < 2)
		return 0;
	if (fmt == LOG_FMT_RELAY)
		return relay_line(&l, level, func, msg);
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	    (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
	    tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
	    tm.tm_sec % 100, (int)(now.tv_nsec / 1000000) % 1000);
	if (fmt == LOG_FMT_JSON)
		lb_putc(&l, '{');
	lb_field(&l, fmt, "ts", ts, 1);
	lb_field(&l, fmt, "level", level_names[level], 0);
	lb_field(&l, fmt, "prog", prog, 0);
	if (func != NULL)
		lb_field(&l, fmt, "func", func, 0);
	lb_field(&l, fmt, "msg", msg, 0);
	if (agent != NULL) {
		if (agent->cluster != NULL)
			lb_field(&l, fmt, "cluster", agent->cluster, 0);
		if (agent->addr != NULL)
			lb_field(&l, fmt, "addr", agent->addr, 0);
		if (agent->pid > 0) {
			snprintf(pid, sizeof(pid), "%ld", (long)agent->pid);
			lb_field(&l, fmt, "pid", pid, 0);
		}
		if (agent->state != NULL)
			lb_field(&l, fmt, "state", agent->state, 0);
		if (agent->proxy != NULL && agent->proxy[0] != '\0')
			lb_field(&l, fmt, "proxy", agent->proxy, 0);
	}
	for (; kv != NULL && kv[0] != NULL && kv[1] != NULL; kv += 2)
		lb_field(&l, fmt, kv[0], kv[1], 0);
	if (fmt == LOG_FMT_JSON)
		lb_putc(&l, '}');
	buf[l.o++] = '\n';
	buf[l.o] = '\0';
	return l.o;
}

size_t
log_format_line(char *buf, size_t len, enum log_format fmt,
    enum log_level level, const char *func, const struct log_agent *agent,
    const char *const *kv, const char *msg)
{
	return format_line(buf, len, fmt, log_prog, level, func, agent, kv,
	    msg);
}

void
log_emit_as(const char *prog, enum log_level level, const char *func,
    const struct log_agent *agent, const char *msg)
{
	char line[LOG_LINE_MAX];
	int saved = errno;
	size_t n;

	if (level < log_level)
		return;
	n = format_line(line, sizeof(line), log_fmt, prog, level, func, agent,
	    NULL, msg);
	if (write(log_fd, line, n) < 0)
		(void)0;
	errno = saved;
}

void
log_vemit(enum log_level level, const char *func,
    const struct log_agent *agent, const char *const *kv, const char *fmt,
    va_list ap)
{
	char msg[LOG_LINE_MAX / 2], line[LOG_LINE_MAX];
	int saved = errno;
	size_t n;

	if (level < log_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = log_format_line(line, sizeof(line), log_fmt, level, func, agent,
	    kv, msg);
	/* A lost log line must not become an error path of its own. */
	if (write(log_fd, line, n) < 0)
		(void)0;
	errno = saved;
}

void
log_emit(enum log_level level, const char *func,
    const struct log_agent *agent, const char *const *kv, const char *fmt,
    ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(level, func, agent, kv, fmt, ap);
	va_end(ap);
}

static void log_with_errno(enum log_level level, const char *func, int err,
    const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void
log_with_errno(enum log_level level, const char *func, int err,
    const char *fmt, va_list ap)
{
	char msg[LOG_LINE_MAX / 2];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_emit(level, func, NULL, NULL, "%s: %s", msg, strerror(err));
}

void
log_warn_errno(const char *func, const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	log_with_errno(LOG_LVL_WARN, func, err, fmt, ap);
	va_end(ap);
	errno = err;
}

void
fatal_errno(const char *func, const char *fmt, ...)
{
	int err = errno;
	va_list ap;

	va_start(ap, fmt);
	log_with_errno(LOG_LVL_ERROR, func, err, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx_func(const char *func, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LVL_ERROR, func, NULL, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
