/*
 * Who the worker is and what it last said: the struct log_agent carried
 * on every log line, the process title, the last STATE reported, and the
 * exit path.  The messages themselves are worker/send.h's.
 */
#ifndef TP_WORKER_REPORT_H
#define TP_WORKER_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/log.h"
#include "proto/msg.h"

/* How long a send (send.h) may wait for room on the control socket. */
#define REPORT_SEND_MS	5000

struct report {
	int		 ctl;			/* control socket (fd 3) */
	char		 cluster[PROTO_NAME_MAX];
	char		 dial[PROTO_ADDR_MAX];
	uint32_t	 state;			/* last reported; 0 = none yet */
	char		 reason[PROTO_REASON_MAX];
	char		 fp[PROTO_FP_MAX];	/* "" until trusted */
	char		 name[PROTO_NAME_MAX];	/* announced proxy name or "" */
	bool		 configured;		/* STATE may be sent */
	bool		 exiting;		/* on the way out: no more exits */
	struct log_agent agent;			/* points into the fields above */
};

/* Initialises r; cluster and dial come from argv until CONFIG arrives. */
void report_init(struct report *r, int ctl, const char *cluster,
    const char *dial);

/* The log identity of this agent, kept current by the functions below. */
const struct log_agent *report_agent(const struct report *r);

/* Records the trusted proxy (fp) and its announced name (may be ""). */
void report_set_proxy(struct report *r, const char *fp, const char *name);

/*
 * Records, logs and (once CONFIG has arrived) sends STATE (state, current
 * fp and name, reason, code), and updates the process title.  A repeat of
 * the same state and reason is not sent.
 */
void report_state(struct report *r, uint32_t state, const char *reason,
    int code);

/* Rewrites the process title from the current state. */
void report_title(const struct report *r);

/*
 * Reports STATE disconnected with reason and code (once CONFIG has
 * arrived), logs it, and exits the process with code.  Never returns.
 */
void report_exit(struct report *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));

#endif
