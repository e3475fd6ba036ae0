/*
 * A worker's lines, relayed (see workerlog.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/error.h"
#include "common/tptime.h"
#include "workerlog.h"

#define READ_CHUNK	4096
#define READ_TURN_MAX	(16 * 1024)	/* per wakeup: one worker cannot starve the loop */
#define DRAIN_MAX	(256 * 1024)	/* read after the worker exited */
#define FUNC_MAX	64

int
workerlog_init(struct workerlog *wl, const struct log_agent *who,
    uint64_t *suppressed_total)
{
	memset(wl, 0, sizeof(*wl));
	wl->fd = -1;
	wl->who = who;
	wl->suppressed_total = suppressed_total;
	return ratelimit_init(&wl->rl, WORKERLOG_RATE, WORKERLOG_BURST,
	    tp_now_ms());
}

/* One token for a line of worker text; reports what was dropped before. */
static bool
take(struct workerlog *wl, enum log_level level)
{
	if (level < log_get_level())
		return false;	/* would not be written anyway: costs nothing */
	if (!ratelimit_take(&wl->rl, tp_now_ms())) {
		wl->suppressed++;
		if (wl->suppressed_total != NULL)
			(*wl->suppressed_total)++;
		return false;
	}
	if (wl->suppressed > 0) {
		log_emit(LOG_LVL_WARN, "workerlog", wl->who, NULL, "%llu lines "
		    "from this worker suppressed (more than %.0f a second)",
		    (unsigned long long)wl->suppressed, WORKERLOG_RATE);
		wl->suppressed = 0;
	}
	return true;
}

void
workerlog_emit(struct workerlog *wl, enum log_level level, const char *func,
    const char *fmt, ...)
{
	va_list ap;

	if (!take(wl, level))
		return;
	va_start(ap, fmt);
	log_vemit(level, func, wl->who, NULL, fmt, ap);
	va_end(ap);
}

static int
level_of(char c, enum log_level *level)
{
	static const char letters[] = "DIWE";
	const char *p = c != '\0' ? strchr(letters, c) : NULL;

	if (p == NULL)
		return -1;
	*level = (enum log_level)(p - letters);
	return 0;
}

void
workerlog_line(struct workerlog *wl, const char *line, size_t len)
{
	char func[FUNC_MAX], msg[WORKERLOG_LINE_MAX];
	enum log_level level = LOG_LVL_WARN;
	size_t i = 1, f = 0, m = 0;
	bool ok = len >= 2 && level_of(line[0], &level) == 0;

	/* The function: [A-Za-z0-9_]+ up to the first space. */
	for (; ok && i < len && line[i] != ' ' && f < sizeof(func) - 1; i++) {
		unsigned char c = (unsigned char)line[i];

		if (!(c == '_' || (c >= '0' && c <= '9') ||
		    ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')))
			break;
		func[f++] = (char)c;
	}
	func[f] = '\0';
	if (!ok || f == 0 || i >= len || line[i] != ' ') {
		/* Not the relay format: shown as the worker's, and marked so. */
		level = LOG_LVL_WARN;
		snprintf(func, sizeof(func), "?");
		i = 0;
		m = (size_t)snprintf(msg, sizeof(msg), "unformatted: ");
	} else
		i++;
	/* Printable ASCII only: the text is the worker's, not ours. */
	for (; i < len && m < sizeof(msg) - 1; i++) {
		unsigned char c = (unsigned char)line[i];

		msg[m++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	msg[m] = '\0';
	if (take(wl, level))
		log_emit_as("tunnelpool-agent", level, func, wl->who, msg);
}

void
workerlog_feed(struct workerlog *wl, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			if (!wl->skipping)
				workerlog_line(wl, wl->buf, wl->len);
			wl->len = 0;
			wl->skipping = 0;
			continue;
		}
		if (wl->skipping)
			continue;
		wl->buf[wl->len++] = p[i];
		if (wl->len == sizeof(wl->buf)) {
			workerlog_line(wl, wl->buf, wl->len);
			wl->len = 0;
			wl->skipping = 1;
		}
	}
}

/* Reads up to max bytes; returns 1 at EOF or error, 0 when drained. */
static int
read_some(struct workerlog *wl, size_t max)
{
	char chunk[READ_CHUNK];
	size_t got = 0;
	ssize_t n;

	while (got < max) {
		n = read(wl->fd, chunk, sizeof(chunk));
		if (n > 0) {
			workerlog_feed(wl, chunk, (size_t)n);
			got += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && errno == EAGAIN ? 0 : 1;
	}
	return 0;
}

static void
stop(struct workerlog *wl)
{
	if (wl->ev != NULL) {
		event_free(wl->ev);
		wl->ev = NULL;
	}
	if (wl->fd >= 0) {
		close(wl->fd);
		wl->fd = -1;
	}
}

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	struct workerlog *wl = arg;

	(void)fd;
	(void)what;
	if (read_some(wl, READ_TURN_MAX) != 0)
		stop(wl);
}

int
workerlog_attach(struct workerlog *wl, struct event_base *base, int fd)
{
	wl->fd = fd;
	wl->ev = event_new(base, fd, EV_READ | EV_PERSIST, on_read, wl);
	if (wl->ev == NULL || event_add(wl->ev, NULL) != 0) {
		stop(wl);
		return -1;
	}
	return 0;
}

void
workerlog_close(struct workerlog *wl)
{
	if (wl->fd >= 0)
		(void)read_some(wl, DRAIN_MAX);
	if (wl->len > 0 && !wl->skipping)
		workerlog_line(wl, wl->buf, wl->len);
	wl->len = 0;
	stop(wl);
}
