/*
 * Worker exit codes: part of the contract, the supervisor turns them into
 * the reason it logs and exports (tunnelpool_worker_exits_total{reason}).
 * Numbers are never reused.
 */
#ifndef TP_PROTO_EXITCODE_H
#define TP_PROTO_EXITCODE_H

enum worker_exit {
	WEXIT_CLOSED		= 0,	/* closed on CLOSE, drained */
	WEXIT_INTERNAL		= 1,	/* internal error (out of memory, bug) */
	WEXIT_USAGE		= 2,	/* started wrongly (fds missing, argv) */
	WEXIT_PROTOCOL		= 3,	/* bad message from the supervisor */
	WEXIT_HANDSHAKE		= 4,	/* SSH handshake failed or timed out */
	WEXIT_HOSTKEY		= 5,	/* host key not trusted */
	WEXIT_AUTH		= 6,	/* user authentication failed */
	WEXIT_PROXY_DEAD	= 7,	/* no byte from the proxy for ka x count */
	WEXIT_PROXY_CLOSED	= 8,	/* the proxy closed the connection */
	WEXIT_SUPERVISOR_GONE	= 9,	/* control socket EOF */
	WEXIT_CLAIM_REFUSED	= 10,	/* landed on a proxy already claimed */
	WEXIT_SANDBOX_SETUP	= 11,	/* demotion or filter setup failed */
	WEXIT_SANDBOX_VIOLATION	= 12,	/* trap-mode seccomp report */
	WEXIT_FORWARD		= 13,	/* forwards could not be kept up */
	WEXIT_DISCOVERY		= 14,	/* discovery stream broken or missing */
};
#define WEXIT_MAX	14

/* Reason string for an exit code ("closed", "host key not trusted", ...). */
static inline const char *
worker_exit_reason(int code)
{
	static const char *const reasons[] = {
		"closed", "internal error", "usage error", "protocol error",
		"handshake failed", "host key not trusted", "auth failed",
		"proxy dead", "proxy closed", "supervisor gone",
		"claim refused", "sandbox setup failed", "sandbox violation",
		"forward failed", "discovery failed",
	};

	return (code >= 0 && code <= WEXIT_MAX) ? reasons[code] : "unknown exit";
}

#endif
