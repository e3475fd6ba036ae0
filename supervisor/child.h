/*
 * A worker process as the supervisor sees it: dialled, forked and exec'd
 * by spawn.c (spawn.h), then driven by child.c through its control socket
 * (the receive table; the senders are in send.c), its deadlines (ready,
 * ping, close) and its single teardown.  Its target dials belong to
 * dialer.c (dialer.h), its log relay to workerlog.c.
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
#include "dialer.h"
#include "workerlog.h"

struct sup;
struct pool_agent;
struct pool_key;
struct event;
struct signer_conn;
struct evdns_getaddrinfo_request;
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
	struct child_dials	 dials;		/* its target dials (dialer.c) */
	struct workerlog	 log;		/* its stderr, and lines quoting it */
	struct child		*next;
	struct child		*prev;
};

/* pool_ops.close: CLOSE with the grace deadline, then SIGTERM, then SIGKILL. */
void child_close(void *sup, struct pool_agent *agent, const char *reason);
/* pool_ops.claim_result. */
void child_claim_result(void *sup, struct pool_agent *agent, bool granted,
    const char *reason);

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
 * Lets go of parts of a child, each at most once (they are reset): what
 * every path of losing a worker shares.  CR_LOG drains the stderr pipe
 * before closing it.
 */
#define CR_CONTROL	0x01	/* control socket, its events, its send queue */
#define CR_AGENT	0x02	/* the signer's connection (agent socketpair) */
#define CR_DIALS	0x04	/* pending target dials (dialer.c) */
#define CR_PROXY_DIAL	0x08	/* the proxy dial: DNS, connect event, socket */
#define CR_TIMER	0x10	/* the deadline timer */
#define CR_LOG		0x20	/* the stderr pipe, drained first */
#define CR_ALL		0x3f
void child_release(struct child *c, unsigned what);
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
/* Finds a child by worker pid, or NULL. */
struct child *child_by_pid(struct sup *sup, pid_t pid);

#endif
