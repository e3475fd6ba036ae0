/*
 * Structured logging: one line per event, logfmt by default
 * ("ts=... level=info func=... msg=\"...\" cluster=... addr=... pid=...
 * state=..."), JSON lines as an option.  Each line is written with a single
 * write(2) so lines from the supervisor and its workers never interleave,
 * and so it works inside the worker's sandbox (no stdio, no fstat).
 *
 * Every line about an agent carries cluster, dial address, pid and state via
 * struct log_agent, so an operator can grep one agent's whole life.
 */
#ifndef TP_LOG_H
#define TP_LOG_H

#include <stdarg.h>
#include <sys/types.h>

enum log_level {
	LOG_LVL_DEBUG = 0,
	LOG_LVL_INFO,
	LOG_LVL_WARN,
	LOG_LVL_ERROR,
};

enum log_format {
	LOG_FMT_LOGFMT = 0,
	LOG_FMT_JSON,
	/*
	 * A supervised worker's lines to the supervisor, which re-emits them
	 * with fields of its own (supervisor/workerlog.c): "Lfunc msg\n",
	 * L one of "DIWE", no timestamp, no agent fields, no control bytes.
	 */
	LOG_FMT_RELAY,
};

/* Identifies the agent a line is about; any member may be NULL/0. */
struct log_agent {
	const char	*cluster;
	const char	*addr;
	pid_t		 pid;
	const char	*state;
	const char	*proxy;
};

/* Sets the program name, threshold, format and destination fd (default 2). */
void log_init(const char *prog, enum log_level level, enum log_format fmt,
    int fd);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
void log_set_format(enum log_format fmt);
/* Parses "debug|info|warn|error" / "logfmt|json"; returns 0 or TP_EINVAL. */
int log_parse_level(const char *s, enum log_level *level);
int log_parse_format(const char *s, enum log_format *fmt);

/*
 * Emits one line.  kv is an optional NULL-terminated list of extra
 * "key", "value" string pairs appended after the agent fields.
 */
void log_emit(enum log_level level, const char *func,
    const struct log_agent *agent, const char *const *kv, const char *fmt,
    ...) __attribute__((format(printf, 5, 6)));
void log_vemit(enum log_level level, const char *func,
    const struct log_agent *agent, const char *const *kv, const char *fmt,
    va_list ap) __attribute__((format(printf, 5, 0)));

/*
 * Emits one line under another program's name (the supervisor re-emitting
 * a worker's line as "tunnelpool-agent"); msg is used as is.
 */
void log_emit_as(const char *prog, enum log_level level, const char *func,
    const struct log_agent *agent, const char *msg);

/*
 * Formats one line into buf (always NUL-terminated, newline-terminated,
 * truncated if needed); returns its length.  Exposed for tests.
 */
size_t log_format_line(char *buf, size_t len, enum log_format fmt,
    enum log_level level, const char *func, const struct log_agent *agent,
    const char *const *kv, const char *msg);

#define log_debug(...)	log_emit(LOG_LVL_DEBUG, __func__, NULL, NULL, __VA_ARGS__)
#define log_info(...)	log_emit(LOG_LVL_INFO, __func__, NULL, NULL, __VA_ARGS__)
#define log_warnx(...)	log_emit(LOG_LVL_WARN, __func__, NULL, NULL, __VA_ARGS__)
#define log_errorx(...)	log_emit(LOG_LVL_ERROR, __func__, NULL, NULL, __VA_ARGS__)
/* The agent variants take a struct log_agent * first. */
#define alog_debug(a, ...) log_emit(LOG_LVL_DEBUG, __func__, (a), NULL, __VA_ARGS__)
#define alog_info(a, ...)  log_emit(LOG_LVL_INFO, __func__, (a), NULL, __VA_ARGS__)
#define alog_warnx(a, ...) log_emit(LOG_LVL_WARN, __func__, (a), NULL, __VA_ARGS__)

/*
 * Process code only (supervisor/, worker/, tools): log_warn appends
 * strerror(errno); fatal logs with strerror(errno) and exits 1; fatalx
 * logs without errno and exits 1.  common/ and proto/ never call these.
 */
void log_warn_errno(const char *func, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void fatal_errno(const char *func, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));
void fatalx_func(const char *func, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

#define log_warn(...)	log_warn_errno(__func__, __VA_ARGS__)
#define fatal(...)	fatal_errno(__func__, __VA_ARGS__)
#define fatalx(...)	fatalx_func(__func__, __VA_ARGS__)

#endif
