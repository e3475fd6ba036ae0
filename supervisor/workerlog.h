/*
 * What a worker says, in the supervisor's log.  A worker's own lines come
 * over a pipe (its stderr) in the relay format (common/log.h) and are
 * re-emitted here with the supervisor's fields for that agent: a worker
 * cannot write a line that claims to be about another agent, or write the
 * journal directly.  Every line carrying worker-supplied text -- relayed
 * lines and the supervisor's own lines quoting a STATE reason, a forward
 * error, a dial error -- draws on one token bucket per worker; what it
 * drops is counted and reported in one "suppressed" line.
 */
#ifndef TP_SUP_WORKERLOG_H
#define TP_SUP_WORKERLOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/log.h"
#include "common/ratelimit.h"

struct event;
struct event_base;

#define WORKERLOG_RATE		20.0	/* lines per second, per worker */
#define WORKERLOG_BURST		200.0
#define WORKERLOG_LINE_MAX	1024	/* longer lines are cut */

struct workerlog {
	int			 fd;		/* read end of the worker's stderr; -1 */
	struct event		*ev;
	const struct log_agent	*who;		/* borrowed: the child's fields */
	struct ratelimit	 rl;
	uint64_t		 suppressed;	/* since the last line let through */
	uint64_t		*suppressed_total;	/* the supervisor's counter */
	char			 buf[WORKERLOG_LINE_MAX];
	size_t			 len;
	int			 skipping;	/* inside a line that was cut */
};

/* Initialises the bucket; fd -1 (no pipe yet).  Returns 0 or TP_EINVAL. */
int workerlog_init(struct workerlog *wl, const struct log_agent *who,
    uint64_t *suppressed_total);
/*
 * Starts reading the worker's stderr pipe (read end fd, non-blocking,
 * owned from here on).  Returns 0, or -1 (fd closed).
 */
int workerlog_attach(struct workerlog *wl, struct event_base *base, int fd);
/* Reads what is left in the pipe (the worker exited), then closes it. */
void workerlog_close(struct workerlog *wl);

/*
 * Logs one line about the worker whose text came (in part) from it:
 * through the bucket.  func names the supervisor's function.
 */
void workerlog_emit(struct workerlog *wl, enum log_level level,
    const char *func, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * The decoder, exposed for tests and the fuzzer: workerlog_feed splits
 * bytes read from the pipe into lines (a line longer than
 * WORKERLOG_LINE_MAX is cut there and the rest of it dropped), and
 * workerlog_line re-emits one relay-format line (without its newline) as
 * the worker's, through the bucket.
 */
void workerlog_feed(struct workerlog *wl, const char *p, size_t n);
void workerlog_line(struct workerlog *wl, const char *line, size_t len);

#endif
