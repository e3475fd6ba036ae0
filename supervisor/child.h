/*
 * A worker process as the supervisor sees it: dialled, forked and exec'd
 * by spawn.c, then driven here through its control socket (the dispatch
 * table), its deadlines (ready, ping, close) and its single teardown.
 */
#ifndef TP_SUPERVISOR_CHILD_H
#define TP_SUPERVISOR_CHILD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/log.h"
#include "common/ratelimit.h"
#include "proto/dispatch.h"
#include "proto/msg.h"
#include "workerlog.h"

struct sup;
struct pool_agent;
struct pool_key;
struct event;
struct signer_conn;
struct evdns_getaddrinfo_request;
struct dial;
struct outmsg;

enum child_state {
	CH_DIALING = 0,		/* resolving / connecting to the proxy */
	CH_WAIT_READY,		/* forked; waiting for READY */
	CH_RUNNING,		/* CONFIG sent */
	CH_CLOSING,		/* CLOSE sent */
	CH_DYING,		/* killed or exited; waiting for the reap */
};

struct child {
	struct sup		*sup;
	struct pool_agent	*agent;
	pid_t			 pid;
	enum child_state	 state;
	int			 ctl;		/* -1 when closed */
	struct event		*ctl_ev;
	struct event		*ctl_wev;	/* the queue below is waiting */
	struct outmsg		*outq;		/* sends that did not fit (child.c) */
	struct outmsg		*outq_tail;
	unsigned		 outq_n;
	struct signer_conn	*signer;
	struct event		*timer;		/* the current deadline */
	struct proto_peer	 peer;
	struct log_agent	 who;
	char			 cluster[PROTO_NAME_MAX];
	char			 dial_addr[PROTO_ADDR_MAX];
	char			 state_name[16];
	char			 proxy[PROTO_NAME_MAX];
	char			 bound_fp[PROTO_FP_MAX];	/* SESSION_BIND's */
	/* dialling */
	int			 sock;
	struct event		*conn_ev;
	struct evdns_getaddrinfo_request *dns_req;
	/* liveness */
	uint64_t		 ping_seq;
	bool			 ping_outstanding;
	/* why we ended it, when we did (else the exit status decides) */
	int			 kill_reason;	/* 0 = none */
	char			 detail[PROTO_REASON_MAX];
	char			 syscall[48];	/* from SANDBOX_VIOLATION */
	bool			 close_requested;
	struct dial		*dials;		/* pending target dials */
	unsigned		 ndials;
	struct ratelimit	 dial_rl;	/* worker.dial_rate / dial_burst */
	struct workerlog	 log;		/* its stderr, and lines quoting it */
	struct child		*next;
	struct child		*prev;
};

/* pool_ops.spawn: starts dialling for agent; returns 0 or -1 (nothing started). */
int child_spawn(void *sup, struct pool_agent *agent);
/* pool_ops.close: CLOSE with the grace deadline, then SIGTERM, then SIGKILL. */
void child_close(void *sup, struct pool_agent *agent, const char *reason);
/* pool_ops.claim_result. */
void child_claim_result(void *sup, struct pool_agent *agent, bool granted,
    const char *reason);

/* pool_ops.trust: which announced host keys a worker could trust. */
void child_trust(void *sup, const struct pool_key *k,
    const struct msg_discovery *d, bool *ok);

/* Stops a child that is still dialling; it is torn down as closed. */
void spawn_cancel(struct child *c);
/*
 * Called by spawn.c once the process exists, with the supervisor's ends of
 * its control and agent socketpairs and of its stderr pipe.
 */
int child_started(struct child *c, pid_t pid, int ctl, int agent_fd,
    int log_fd);
/* Logs a line that quotes the worker (rate-limited per worker: workerlog.h). */
#define child_log(c, lvl, ...) \
	workerlog_emit(&(c)->log, (lvl), __func__, __VA_ARGS__)
/*
 * Ends a running child now: records why, stops reading it, SIGKILL.  The
 * teardown happens when it is reaped.
 */
void child_kill(struct child *c, int reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The single teardown: logs once, frees, tells the pool. */
void child_lost(struct child *c, int reason, const char *detail);
/* Reaper entry point: a pid exited with status. Returns 1 if it was ours. */
int child_reaped(struct sup *sup, pid_t pid, int status);
/* Sends a message to the child; failure ends the child. Returns 0 or -1. */
int child_send(struct child *c, struct msg *m);
/* Finds a child by worker pid, or NULL. */
struct child *child_by_pid(struct sup *sup, pid_t pid);

/* dialer.c: a DIAL_REQUEST from c; answers with DIAL_RESULT eventually. */
int dialer_request(struct child *c, const struct msg_dial_request *r);
/* Cancels every pending dial of c (teardown). */
void dialer_cancel_all(struct child *c);

#endif
