/*
 * The supervisor <-> worker contract.  This file is the whole protocol.
 *
 * Framing: one msgpack object per SOCK_SEQPACKET datagram, at most
 * PROTO_MAX_MSG bytes, checked on send and on receive.  The object is a
 * 2-element array [type, {payload map}].  Every payload field is required
 * and no other key is allowed: decoders demand the exact key set, exact
 * msgpack types, bounded string/array lengths, no NUL inside strings and
 * no trailing bytes.  A file descriptor travels with SCM_RIGHTS only on
 * the messages marked "+fd" below; one arriving on any other message is
 * closed and the message refused.
 *
 * Type numbers are never reused.  Names match across the wire: the
 * sender's stub and the receiver's handler share the message's name.
 */
#ifndef TP_PROTO_MSG_H
#define TP_PROTO_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION		3
#define PROTO_MAX_MSG		(64 * 1024)

#define PROTO_NAME_MAX		128	/* cluster, proxy and user names */
#define PROTO_ADDR_MAX		300	/* "host:port" */
#define PROTO_FP_MAX		64	/* "SHA256:" + 43 base64 chars */
#define PROTO_REASON_MAX	256
#define PROTO_ALGOS_MAX		512
#define PROTO_KEYBLOB_MAX	2048	/* SSH wire-format public key */
#define PROTO_CERT_MAX		8192	/* not sent here; documented bound */
#define PROTO_MAX_PINNED	32
#define PROTO_MAX_REVOKED	256	/* a deny list is never cut: more is refused */
#define PROTO_MAX_CA		8
#define PROTO_MAX_FORWARDS	32
#define PROTO_MAX_WANTED	64
#define PROTO_MAX_PROXIES	256
#define PROTO_MAX_PRINCIPALS	16
#define PROTO_SID_MAX		64	/* SHA-512, the largest exchange hash */
#define PROTO_SIG_MAX		4096	/* SSH signature blob (RSA-16384: ~2 KiB) */

enum msg_type {
	/* supervisor -> worker (1..63) */
	MSG_CONFIG		= 1,	/* everything the worker needs; once, after READY */
	MSG_CLOSE		= 2,	/* graceful close with a deadline */
	MSG_DIAL_RESULT		= 3,	/* answer to DIAL_REQUEST; +fd when ok */
	MSG_PING		= 4,	/* liveness of the worker itself */
	MSG_CLAIM_RESULT	= 5,	/* answer to CLAIM */
	MSG_BIND_RESULT		= 6,	/* answer to SESSION_BIND */
	MSG_TEST_HOOK		= 60,	/* test_hooks builds only: fault injection */

	/* worker -> supervisor (64..127) */
	MSG_READY		= 64,	/* first message; sent once the sandbox is in force */
	MSG_STATE		= 65,	/* every state transition */
	MSG_CLAIM		= 66,	/* "I trust this proxy; may I keep it?" */
	MSG_DISCOVERY		= 67,	/* full proxy set of the cluster */
	MSG_DIAL_REQUEST	= 68,	/* a forwarded channel arrived */
	MSG_STATS		= 69,	/* periodic counters */
	MSG_PONG		= 70,	/* answer to PING */
	MSG_FORWARD		= 71,	/* state of one remote forward */
	MSG_SANDBOX_VIOLATION	= 72,	/* trap-mode seccomp report, then exit */
	MSG_SESSION_BIND	= 73,	/* before user-auth: the host of this session */
};

/* Agent states, as reported in MSG_STATE (values are part of the wire). */
enum agent_state {
	AGENT_CONNECTING	= 1,
	AGENT_DISCOVERING	= 2,
	AGENT_CONNECTED		= 3,
	AGENT_DISCOVERED	= 4,
	AGENT_DISCONNECTED	= 5,
};
#define AGENT_STATE_MAX	5

/* Role of a worker, in MSG_CONFIG. */
enum agent_role {
	AGENT_ROLE_TUNNEL	= 1,	/* first agent of a key: any proxy will do */
	AGENT_ROLE_DISCOVERY	= 2,	/* must land on one of `wanted` */
};

/* Test hook actions (MSG_TEST_HOOK.action). */
enum test_hook_action {
	HOOK_OPEN_FILE		= 1,	/* open("/etc/passwd"): expect EACCES */
	HOOK_SOCKET		= 2,	/* expect SIGSYS */
	HOOK_EXECVE		= 3,
	HOOK_PTRACE		= 4,
	HOOK_FORK		= 5,
	HOOK_MMAP_WX		= 6,
	HOOK_HOSTILE		= 7,	/* send the supervisor garbage */
	/* hostile worker (rel_hostile_worker): each one ends the worker */
	HOOK_GARBAGE		= 8,	/* random-byte datagrams */
	HOOK_READY_AGAIN	= 9,	/* a second READY */
	HOOK_CLAIM_TWICE	= 10,	/* CLAIM again (twice) after the claim */
	HOOK_STATS_FLOOD	= 11,	/* thousands of STATS at once */
	HOOK_OVERSIZE		= 12,	/* one datagram > PROTO_MAX_MSG */
	HOOK_FD_ON_STATE	= 13,	/* STATE with an SCM_RIGHTS fd attached */
	/* hostile worker on the agent socket: refused, the worker stays */
	HOOK_SIGN_OTHER		= 14,	/* sign a blob that is not a userauth */
	HOOK_SIGN_WRONG_USER	= 15,	/* sign a userauth for another user */
	HOOK_SIGN_VALID		= 16,	/* a valid userauth, for a session of its own */
	/* hostile worker bounded by limits (rel_hostile_limits): the worker stays */
	HOOK_DIAL_FLOOD		= 17,	/* 1000 DIAL_REQUESTs at once */
	HOOK_LOG_FLOOD		= 18,	/* 5000 log lines, a forged one first */
	HOOK_STATE_FP		= 19,	/* STATE naming another host key (ends it) */
	/* close races (rel_close_race): sent as if CLOSE was read too late */
	HOOK_CLAIM_AT_CLOSE	= 20,	/* hold the CLAIM, send it when CLOSE comes */
	HOOK_DIAL_AT_CLOSE	= 21,	/* a DIAL_REQUEST when CLOSE comes */
	/* session binding (trust_session_bind), armed before the bind */
	HOOK_BIND_FORGED	= 22,	/* SESSION_BIND with an altered signature */
	HOOK_SIGN_UNBOUND	= 23,	/* a valid sign request before the bind */
};

/* --- payloads ----------------------------------------------------------- */

struct msg_fp {				/* one host-key fingerprint */
	char		fp[PROTO_FP_MAX];		/* "fp": str */
};

struct msg_keyblob {			/* one CA public key, SSH wire format */
	uint8_t		blob[PROTO_KEYBLOB_MAX];	/* "blob": bin, 1..2048 */
	uint32_t	len;
};

struct msg_name {			/* one configured name or glob */
	char		name[PROTO_NAME_MAX];		/* "name": str */
};

struct msg_forward_spec {		/* one remote forward of the tunnel */
	uint32_t	id;				/* "id": u32 */
	char		listen_host[PROTO_NAME_MAX];	/* "host": str, may be "" = all */
	uint32_t	listen_port;			/* "port": u32, 0..65535 */
};

/*
 * MSG_CONFIG: "v" u32 (must be PROTO_VERSION), "cluster" str, "dial" str
 * (host:port), "dial_host" str (host part, for known_hosts matching and
 * certificate principals), "user" str, "role" u32 (agent_role), "pinned"
 * [ {fp} ] <= 32, "ca" [ {blob} ] <= 8, "forwards" [ {id,host,port} ] <= 32,
 * "wanted" [ {fp} ] <= 64 (discovery role only), "discovery" bool,
 * "principals" [ {name} ] <= 16 (CA mode: names or globs a host
 * certificate may carry besides dial_host; from the tunnel's
 * proxy_principals, never from the network),
 * "ka_ms" u32 (keepalive interval, 100..3600000), "ka_count" u32 (1..100),
 * "revoked" [ {fp} ] <= 256 (@revoked keys: never trusted, even with a
 * valid certificate; a host with more is never configured: the supervisor
 * refuses to start its worker rather than cut the list), "hs_ms" u32 (handshake deadline), "max_ch" u32 (1..65535), "stats_ms" u32,
 * "ciphers", "kex", "hostkeys" str (comma lists, "" = libssh default).
 */
struct msg_config {
	/*
	 * Scalars, counts and strings first, the arrays after them, the
	 * small ones first: a receiver that keeps its CONFIG with
	 * msg_payload_copy() into zeroed memory writes only the pages its
	 * configuration fills (a pinned tunnel with a few forwards: 2 or 3
	 * of the struct's 12).
	 * The order here is not the wire's: that is msg.c's table.
	 */
	uint32_t		version;
	uint32_t		role;
	bool			discovery;
	uint32_t		keepalive_ms;
	uint32_t		keepalive_count;
	uint32_t		handshake_ms;
	uint32_t		max_channels;
	uint32_t		stats_ms;
	uint32_t		n_pinned;
	uint32_t		n_forwards;
	uint32_t		n_wanted;
	uint32_t		n_principals;
	uint32_t		n_ca;
	uint32_t		n_revoked;
	char			cluster[PROTO_NAME_MAX];
	char			dial_addr[PROTO_ADDR_MAX];
	char			dial_host[PROTO_ADDR_MAX];
	char			user[PROTO_NAME_MAX];
	char			ciphers[PROTO_ALGOS_MAX];
	char			kex[PROTO_ALGOS_MAX];
	char			hostkeys[PROTO_ALGOS_MAX];
	struct msg_fp		pinned[PROTO_MAX_PINNED];
	struct msg_forward_spec	forwards[PROTO_MAX_FORWARDS];
	struct msg_fp		wanted[PROTO_MAX_WANTED];
	struct msg_name		principals[PROTO_MAX_PRINCIPALS];
	struct msg_keyblob	ca[PROTO_MAX_CA];
	struct msg_fp		revoked[PROTO_MAX_REVOKED];
};

/* MSG_CLOSE: "deadline_ms" u32, "reason" str. */
struct msg_close {
	uint32_t	deadline_ms;
	char		reason[PROTO_REASON_MAX];
};

/* MSG_DIAL_RESULT: "ch" u32, "ok" bool, "error" str; +fd exactly when ok. */
struct msg_dial_result {
	uint32_t	channel_id;
	bool		ok;
	char		error[PROTO_REASON_MAX];
};

/* MSG_PING / MSG_PONG: "seq" u64. */
struct msg_ping {
	uint64_t	seq;
};

/* MSG_CLAIM_RESULT: "granted" bool, "reason" str. */
struct msg_claim_result {
	bool		granted;
	char		reason[PROTO_REASON_MAX];
};

/* MSG_BIND_RESULT: "ok" bool, "reason" str. */
struct msg_bind_result {
	bool		ok;
	char		reason[PROTO_REASON_MAX];
};

/* MSG_TEST_HOOK: "action" u32 (test_hook_action). */
struct msg_test_hook {
	uint32_t	action;
};

/* MSG_READY: "v" u32, "sandbox" str (backend name). */
struct msg_ready {
	uint32_t	version;
	char		sandbox[32];
};

/*
 * MSG_STATE: "state" u32 (agent_state), "fp" str (proxy host-key
 * fingerprint, "" before trust), "name" str (announced proxy name or ""),
 * "reason" str, "code" u32 (worker exit code it is about to use, or 0).
 */
struct msg_state {
	uint32_t	state;
	char		fp[PROTO_FP_MAX];
	char		name[PROTO_NAME_MAX];
	char		reason[PROTO_REASON_MAX];
	uint32_t	code;
};

/* MSG_CLAIM: "fp" str (authenticated host key), "name" str (announced or ""). */
struct msg_claim {
	char		fp[PROTO_FP_MAX];
	char		name[PROTO_NAME_MAX];
};

struct msg_proxy {
	char		name[PROTO_NAME_MAX];		/* "name": str */
	char		fp[PROTO_FP_MAX];		/* "fp": str */
};

/* MSG_DISCOVERY: "cluster" str, "proxies" [ {name,fp} ] <= 256 (full set). */
struct msg_discovery {
	char		cluster[PROTO_NAME_MAX];
	uint32_t	n_proxies;
	struct msg_proxy proxies[PROTO_MAX_PROXIES];
};

/* MSG_DIAL_REQUEST: "fwd" u32, "ch" u32, "orig_host" str, "orig_port" u32. */
struct msg_dial_request {
	uint32_t	forward_id;
	uint32_t	channel_id;
	char		orig_host[PROTO_NAME_MAX];
	uint32_t	orig_port;
};

/*
 * MSG_STATS: "rx" u64, "tx" u64 (tunnel payload bytes from/to the proxy),
 * "ch_open" u32, "ch_total" u64, "dial_fail" u64, "refused" u64,
 * "rx_age_ms" u64 (time since the last inbound byte).
 */
struct msg_stats {
	uint64_t	rx_bytes;
	uint64_t	tx_bytes;
	uint32_t	channels_open;
	uint64_t	channels_total;
	uint64_t	dial_failures;
	uint64_t	channels_refused;
	uint64_t	rx_age_ms;
};

/* MSG_FORWARD: "id" u32, "bound" bool, "port" u32, "error" str. */
struct msg_forward {
	uint32_t	id;
	bool		bound;
	uint32_t	port;
	char		error[PROTO_REASON_MAX];
};

/*
 * MSG_SESSION_BIND: "hostkey" bin (the host key of the key exchange, SSH
 * wire format, 1..2048), "sid" bin (the session id, 1..64), "sig" bin (the
 * server's signature over the session id from that key exchange, an SSH
 * signature blob, 1..4096).  Once, after the key exchange and before any
 * user-auth request: the supervisor checks the signature and the key and
 * from then on its signer signs user-auth for this session id only.
 */
struct msg_session_bind {
	uint8_t		hostkey[PROTO_KEYBLOB_MAX];
	uint32_t	hostkey_len;
	uint8_t		sid[PROTO_SID_MAX];
	uint32_t	sid_len;
	uint8_t		sig[PROTO_SIG_MAX];
	uint32_t	sig_len;
};

/*
 * MSG_SANDBOX_VIOLATION: "nr" u32, "name" str (< 32 bytes).  Sent from a
 * signal handler: msg_encode_sandbox_violation, at most
 * PROTO_VIOLATION_MAX bytes.
 */
struct msg_sandbox_violation {
	uint32_t	nr;
	char		name[32];
};
/* array(2), type, map(2), "nr", u32, "name", fixstr(31) */
#define PROTO_VIOLATION_MAX	(1 + 1 + 1 + 3 + 5 + 5 + 32)

struct msg {
	enum msg_type	type;
	int		fd;		/* -1 unless the message carries one */
	union {
		struct msg_config		config;
		struct msg_close		close;
		struct msg_dial_result		dial_result;
		struct msg_ping			ping;
		struct msg_claim_result		claim_result;
		struct msg_bind_result		bind_result;
		struct msg_test_hook		test_hook;
		struct msg_ready		ready;
		struct msg_state		state;
		struct msg_claim		claim;
		struct msg_discovery		discovery;
		struct msg_dial_request		dial_request;
		struct msg_stats		stats;
		struct msg_ping			pong;
		struct msg_forward		forward;
		struct msg_sandbox_violation	sandbox_violation;
		struct msg_session_bind		session_bind;
	} u;
};

enum msg_dir {
	MSG_TO_WORKER = 1,
	MSG_TO_SUPERVISOR = 2,
};

/* Initialises m as an empty message of the given type (fd = -1). */
void msg_init(struct msg *m, enum msg_type type);
/*
 * Copies the payload of a decoded message of this type from src to dst,
 * field by field as msg.c's table names them: strings up to their NUL,
 * binaries and arrays up to their length; the bytes past those are left
 * as dst had them.  Copied into zeroed memory, the result is the decoded
 * payload, and only the pages it fills are written (the worker keeps its
 * CONFIG this way: a whole-struct copy made all 47 KiB of it resident).
 * Returns 0, or TP_EINVAL for an unknown type.
 */
int msg_payload_copy(uint32_t type, void *dst, const void *src);
/* Returns the size of a type's payload struct, or 0 if the type does not exist. */
size_t msg_payload_size(uint32_t type);
/* Returns the message's name ("CONFIG", ...) or "?" */
const char *msg_name(uint32_t type);
/* Returns the name of an agent state ("connecting", ...) or "?" */
const char *agent_state_name(uint32_t state);
/*
 * Returns the state an agent of this role (agent_role) reports once it is
 * up: AGENT_DISCOVERED for a discovery agent, else AGENT_CONNECTED.
 */
uint32_t agent_up_state(uint32_t role);
/* Returns the direction of a type, or 0 if the type does not exist. */
enum msg_dir msg_direction(uint32_t type);

/*
 * Encodes m into buf (at most len bytes).  Returns the encoded length, or
 * TP_ETOOBIG / TP_EINVAL (a field violates its own bounds: the sender is
 * held to the same rules as the receiver).
 */
int msg_encode(const struct msg *m, uint8_t *buf, size_t len);

/*
 * Encodes MSG_SANDBOX_VIOLATION ({"nr": nr, "name": name}) into buf
 * exactly as msg_encode would, async-signal-safe: no allocation, for the
 * worker's SIGSYS handler (trap mode).  A NULL name or one longer than 31
 * bytes is sent as "?".  Returns the encoded length, or 0 if len is under
 * PROTO_VIOLATION_MAX.
 */
size_t msg_encode_sandbox_violation(uint8_t *buf, size_t len, uint32_t nr,
    const char *name);

/*
 * Decodes one datagram addressed to `dir`.  fd is the descriptor that came
 * with it or -1; on success m->fd owns it.  On error any fd is closed.
 * Returns 0, TP_EPROTO, TP_ETYPE, TP_EFIELD, TP_ETOOBIG, TP_ETRUNC,
 * TP_EVERSION or TP_EFD.
 */
int msg_decode(const uint8_t *buf, size_t len, int fd, enum msg_dir dir,
    struct msg *m);

/*
 * Reads the type of an encoded message without decoding it (the first
 * step of dispatch: look up, check, then decode).  Returns 0 or TP_EPROTO.
 */
int msg_peek_type(const uint8_t *buf, size_t len, uint32_t *type);

/*
 * Structural pre-scan of a msgpack buffer: every container's declared
 * element count must fit in the remaining bytes, nesting at most
 * max_depth, exactly one object, no trailing bytes.  Protects msgpack-c,
 * which allocates a container's slots before reading them.  Returns 0,
 * TP_ETRUNC, TP_ETOOBIG or TP_EPROTO.
 */
int msgpack_prescan(const uint8_t *buf, size_t len, unsigned max_depth);

#endif
