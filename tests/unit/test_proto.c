/*
 * proto/: round trip of every message type across a real socketpair,
 * strictness of the decoder, mutation (bit flips, byte flips,
 * truncations, oversize), and fd passing rules.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <msgpack.h>

#include "common/error.h"
#include "proto/dispatch.h"
#include "proto/msg.h"
#include "proto/schema.h"
#include "proto/wire.h"
#include "testutil.h"

static struct msg *ma, *mb;

static void
setup(void)
{
	ma = calloc(1, sizeof(*ma));
	mb = calloc(1, sizeof(*mb));
	ck_assert_ptr_nonnull(ma);
	ck_assert_ptr_nonnull(mb);
}

static void
teardown(void)
{
	free(ma);
	free(mb);
}

/* Fills a message of each type with non-trivial values, all fields used. */
static void
fill(struct msg *m, enum msg_type t)
{
	msg_init(m, t);
	switch (t) {
	case MSG_CONFIG: {
		struct msg_config *c = &m->u.config;

		c->version = PROTO_VERSION;
		strcpy(c->cluster, "cluster-a");
		strcpy(c->dial_addr, "lb.example:2222");
		strcpy(c->dial_host, "lb.example");
		strcpy(c->user, "node-1");
		c->role = AGENT_ROLE_DISCOVERY;
		c->n_pinned = 2;
		strcpy(c->pinned[0].fp, "SHA256:aaaa");
		strcpy(c->pinned[1].fp, "SHA256:bbbb");
		c->n_ca = 1;
		c->ca[0].len = 3;
		memcpy(c->ca[0].blob, "\x01\x02\x03", 3);
		c->n_forwards = 2;
		c->forwards[0].id = 7;
		strcpy(c->forwards[0].listen_host, "127.0.0.1");
		c->forwards[0].listen_port = 22001;
		c->forwards[1].id = 8;
		c->forwards[1].listen_port = 65535;
		c->n_wanted = 1;
		strcpy(c->wanted[0].fp, "SHA256:cccc");
		c->discovery = true;
		c->keepalive_ms = 5000;
		c->keepalive_count = 3;
		c->handshake_ms = 15000;
		c->max_channels = 256;
		c->stats_ms = 2000;
		strcpy(c->ciphers, "aes128-gcm@openssh.com");
		break;
	}
	case MSG_CLOSE:
		m->u.close.deadline_ms = 5000;
		strcpy(m->u.close.reason, "removed");
		break;
	case MSG_DIAL_RESULT:
		m->u.dial_result.channel_id = 42;
		strcpy(m->u.dial_result.error, "refused");
		break;
	case MSG_PING:
	case MSG_PONG:
		m->u.ping.seq = 0x123456789abcULL;
		break;
	case MSG_CLAIM_RESULT:
		m->u.claim_result.granted = true;
		break;
	case MSG_TEST_HOOK:
		m->u.test_hook.action = HOOK_SOCKET;
		break;
	case MSG_READY:
		m->u.ready.version = PROTO_VERSION;
		strcpy(m->u.ready.sandbox, "seccomp");
		break;
	case MSG_STATE:
		m->u.state.state = AGENT_CONNECTED;
		strcpy(m->u.state.fp, "SHA256:dddd");
		strcpy(m->u.state.name, "proxy-1");
		strcpy(m->u.state.reason, "ok");
		break;
	case MSG_CLAIM:
		strcpy(m->u.claim.fp, "SHA256:eeee");
		strcpy(m->u.claim.name, "proxy-2");
		break;
	case MSG_DISCOVERY:
		strcpy(m->u.discovery.cluster, "cluster-a");
		m->u.discovery.n_proxies = PROTO_MAX_PROXIES;
		for (int i = 0; i < PROTO_MAX_PROXIES; i++) {
			snprintf(m->u.discovery.proxies[i].name, PROTO_NAME_MAX,
			    "proxy-%d", i);
			snprintf(m->u.discovery.proxies[i].fp, PROTO_FP_MAX,
			    "SHA256:%043d", i);
		}
		break;
	case MSG_DIAL_REQUEST:
		m->u.dial_request.forward_id = 7;
		m->u.dial_request.channel_id = 99;
		strcpy(m->u.dial_request.orig_host, "10.0.0.1");
		m->u.dial_request.orig_port = 50000;
		break;
	case MSG_STATS:
		m->u.stats.rx_bytes = UINT64_MAX;
		m->u.stats.tx_bytes = 1;
		m->u.stats.channels_open = 3;
		m->u.stats.channels_total = 1000;
		m->u.stats.rx_age_ms = 17;
		break;
	case MSG_FORWARD:
		m->u.forward.id = 7;
		m->u.forward.bound = true;
		m->u.forward.port = 22001;
		break;
	case MSG_SANDBOX_VIOLATION:
		m->u.sandbox_violation.nr = 41;
		strcpy(m->u.sandbox_violation.name, "socket");
		break;
	case MSG_BIND_RESULT:
		m->u.bind_result.ok = true;
		strcpy(m->u.bind_result.reason, "bound");
		break;
	case MSG_SESSION_BIND:
		/* ed25519 sizes: a 51-byte key, a SHA-256 id, an 83-byte sig. */
		m->u.session_bind.hostkey_len = 51;
		memset(m->u.session_bind.hostkey, 0x11, 51);
		m->u.session_bind.sid_len = 32;
		memset(m->u.session_bind.sid, 0x22, 32);
		m->u.session_bind.sig_len = 83;
		memset(m->u.session_bind.sig, 0x33, 83);
		break;
	}
}

static const enum msg_type all_types[] = {
	MSG_CONFIG, MSG_CLOSE, MSG_DIAL_RESULT, MSG_PING, MSG_CLAIM_RESULT,
	MSG_BIND_RESULT,
#ifdef TP_TEST_HOOKS
	MSG_TEST_HOOK,
#endif
	MSG_READY, MSG_STATE, MSG_CLAIM, MSG_DISCOVERY, MSG_DIAL_REQUEST,
	MSG_STATS, MSG_PONG, MSG_FORWARD, MSG_SANDBOX_VIOLATION,
	MSG_SESSION_BIND,
};
#define NTYPES	(int)(sizeof(all_types) / sizeof(all_types[0]))

static int
seqpair(int sv[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
}

START_TEST(roundtrip_every_type)
{
	enum msg_type t = all_types[_i];
	int sv[2];

	ck_assert_int_eq(seqpair(sv), 0);
	fill(ma, t);
	ck_assert_int_eq(proto_send(sv[0], ma), 0);
	ck_assert_int_eq(proto_recv_msg(sv[1], msg_direction(t), mb), 0);
	ck_assert_int_eq(mb->type, t);
	ck_assert_int_eq(mb->fd, -1);
	/* Unused tails are zero on both sides (msg_init), so memcmp is exact. */
	ck_assert_int_eq(memcmp(&ma->u, &mb->u, msg_payload_size(t)), 0);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(wrong_direction_refused)
{
	uint8_t buf[PROTO_MAX_MSG];
	enum msg_type t = all_types[_i];
	enum msg_dir other;
	int n;

	fill(ma, t);
	n = msg_encode(ma, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	other = msg_direction(t) == MSG_TO_WORKER ? MSG_TO_SUPERVISOR :
	    MSG_TO_WORKER;
	ck_assert_int_eq(msg_decode(buf, (size_t)n, -1, other, mb), TP_EPROTO);
}
END_TEST

/* Every single-bit flip of every valid frame: an error or a valid message, never a crash. */
START_TEST(mutation_bitflips)
{
	uint8_t buf[PROTO_MAX_MSG], mut[PROTO_MAX_MSG];
	enum msg_type t = all_types[_i];
	size_t len, errors = 0;
	int n;

	fill(ma, t);
	/* DISCOVERY at full size is 50 KB: flip a bounded prefix only. */
	n = msg_encode(ma, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	len = (size_t)n < 4096 ? (size_t)n : 4096;
	for (size_t i = 0; i < len * 8; i++) {
		memcpy(mut, buf, (size_t)n);
		mut[i / 8] ^= (uint8_t)(1u << (i % 8));
		if (msg_decode(mut, (size_t)n, -1, msg_direction(t), mb) != 0)
			errors++;
	}
	/* Most flips hit structure or keys; a decoder accepting all is broken. */
	ck_assert_uint_gt(errors, len);
}
END_TEST

/* SESSION_BIND at its bounds: the largest of each fits, one more does not. */
START_TEST(session_bind_bounds)
{
	uint8_t buf[PROTO_MAX_MSG];
	struct msg_session_bind *b = &ma->u.session_bind;
	int n;

	msg_init(ma, MSG_SESSION_BIND);
	b->hostkey_len = PROTO_KEYBLOB_MAX;
	memset(b->hostkey, 0x11, PROTO_KEYBLOB_MAX);
	b->sid_len = PROTO_SID_MAX;
	memset(b->sid, 0x22, PROTO_SID_MAX);
	b->sig_len = PROTO_SIG_MAX;
	memset(b->sig, 0x33, PROTO_SIG_MAX);
	n = msg_encode(ma, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(msg_decode(buf, (size_t)n, -1, MSG_TO_SUPERVISOR, mb),
	    0);
	ck_assert_uint_eq(mb->u.session_bind.sig_len, PROTO_SIG_MAX);
	ck_assert_int_eq(memcmp(mb->u.session_bind.sig, b->sig, PROTO_SIG_MAX),
	    0);
	b->sid_len = PROTO_SID_MAX + 1;
	ck_assert_int_lt(msg_encode(ma, buf, sizeof(buf)), 0);
	b->sid_len = 0;
	ck_assert_int_lt(msg_encode(ma, buf, sizeof(buf)), 0);
}
END_TEST

START_TEST(mutation_byteflips_truncations)
{
	uint8_t buf[PROTO_MAX_MSG], mut[PROTO_MAX_MSG];
	enum msg_type t = all_types[_i];
	size_t len;
	int n;

	fill(ma, t);
	n = msg_encode(ma, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	len = (size_t)n < 2048 ? (size_t)n : 2048;
	for (size_t i = 0; i < len; i++)
		for (unsigned v = 0; v < 256; v += 17) {
			memcpy(mut, buf, (size_t)n);
			mut[i] = (uint8_t)v;
			(void)msg_decode(mut, (size_t)n, -1, msg_direction(t), mb);
		}
	/* Every strict prefix is truncated: must fail. */
	for (size_t cut = 0; cut < (size_t)n; cut += (n > 4096 ? 97 : 1))
		ck_assert_int_ne(msg_decode(buf, cut, -1, msg_direction(t), mb), 0);
	/* Trailing garbage. */
	buf[n] = 0xc0;
	ck_assert_int_eq(msg_decode(buf, (size_t)n + 1, -1, msg_direction(t), mb),
	    TP_EPROTO);
}
END_TEST

/* Builds a frame by hand with msgpack-c, for shapes the encoder won't make. */
static size_t
pack_state(uint8_t *out, int nfields, int extra_key, int wrong_type)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t len;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_uint32(&pk, MSG_STATE);
	msgpack_pack_map(&pk, (size_t)nfields + (extra_key ? 1 : 0));
	const char *keys[] = { "state", "fp", "name", "reason", "code" };
	for (int i = 0; i < nfields; i++) {
		msgpack_pack_str(&pk, strlen(keys[i]));
		msgpack_pack_str_body(&pk, keys[i], strlen(keys[i]));
		if (i == 0 || i == 4) {
			if (wrong_type && i == 0)
				msgpack_pack_str(&pk, 0);
			else
				msgpack_pack_uint32(&pk, 1);
		} else {
			msgpack_pack_str(&pk, 1);
			msgpack_pack_str_body(&pk, "x", 1);
		}
	}
	if (extra_key) {
		msgpack_pack_str(&pk, 5);
		msgpack_pack_str_body(&pk, "bogus", 5);
		msgpack_pack_nil(&pk);
	}
	len = sb.size;
	memcpy(out, sb.data, len);
	msgpack_sbuffer_destroy(&sb);
	return len;
}

START_TEST(strict_fields)
{
	uint8_t buf[1024];
	size_t n;

	n = pack_state(buf, 5, 0, 0);
	ck_assert_int_eq(msg_decode(buf, n, -1, MSG_TO_SUPERVISOR, mb), 0);
	n = pack_state(buf, 4, 0, 0);	/* missing "code" */
	ck_assert_int_eq(msg_decode(buf, n, -1, MSG_TO_SUPERVISOR, mb), TP_EFIELD);
	n = pack_state(buf, 5, 1, 0);	/* unknown key */
	ck_assert_int_eq(msg_decode(buf, n, -1, MSG_TO_SUPERVISOR, mb), TP_EFIELD);
	n = pack_state(buf, 4, 1, 0);	/* right count, unknown key */
	ck_assert_int_eq(msg_decode(buf, n, -1, MSG_TO_SUPERVISOR, mb), TP_EFIELD);
	n = pack_state(buf, 5, 0, 1);	/* wrong type */
	ck_assert_int_eq(msg_decode(buf, n, -1, MSG_TO_SUPERVISOR, mb), TP_ETYPE);
}
END_TEST

START_TEST(strict_values)
{
	uint8_t buf[PROTO_MAX_MSG];
	int n;

	/* Out-of-range state is refused by encoder and decoder alike. */
	fill(ma, MSG_STATE);
	ma->u.state.state = AGENT_STATE_MAX + 1;
	ck_assert_int_eq(msg_encode(ma, buf, sizeof(buf)), TP_ERANGE);
	/* A NUL inside a string. */
	fill(ma, MSG_CLAIM);
	n = msg_encode(ma, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	uint8_t *p = memmem(buf, (size_t)n, "proxy-2", 7);
	ck_assert_ptr_nonnull(p);
	p[3] = '\0';
	ck_assert_int_eq(msg_decode(buf, (size_t)n, -1, MSG_TO_SUPERVISOR, mb),
	    TP_EPROTO);
	/* Version mismatch in the hello. */
	fill(ma, MSG_READY);
	ma->u.ready.version = PROTO_VERSION + 1;
	n = msg_encode(ma, buf, sizeof(buf));
	ck_assert_int_eq(msg_decode(buf, (size_t)n, -1, MSG_TO_SUPERVISOR, mb),
	    TP_EVERSION);
	/* Unknown type number. */
	buf[1] = 0x7f;
	ck_assert_int_eq(msg_decode(buf, (size_t)n, -1, MSG_TO_SUPERVISOR, mb),
	    TP_EPROTO);
}
END_TEST

/* A 5-byte header claiming 2^32 elements must not reach msgpack-c's allocator. */
START_TEST(prescan_huge_counts)
{
	uint8_t arr32[] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 0x00 };
	uint8_t map32[] = { 0x92, 0x41, 0xdf, 0x7f, 0xff, 0xff, 0xff };
	uint8_t str32[] = { 0x92, 0x41, 0xdb, 0xff, 0xff, 0xff, 0xf0, 'a' };
	uint8_t deep[64];

	ck_assert_int_eq(msgpack_prescan(arr32, sizeof(arr32), 16), TP_ETRUNC);
	ck_assert_int_ne(msg_decode(map32, sizeof(map32), -1, MSG_TO_SUPERVISOR,
	    mb), 0);
	ck_assert_int_ne(msg_decode(str32, sizeof(str32), -1, MSG_TO_SUPERVISOR,
	    mb), 0);
	memset(deep, 0x91, sizeof(deep));
	deep[63] = 0x01;
	ck_assert_int_eq(msgpack_prescan(deep, sizeof(deep), 16), TP_ETOOBIG);
	ck_assert_int_eq(msgpack_prescan((const uint8_t *)"\xc1", 1, 16),
	    TP_EPROTO);
}
END_TEST

START_TEST(oversize_frames)
{
	uint8_t *big = calloc(1, PROTO_MAX_MSG + 100);
	uint8_t buf[PROTO_MAX_MSG];
	size_t len;
	int sv[2], fd;

	ck_assert_int_eq(seqpair(sv), 0);
	big[0] = 0x92;
	ck_assert_int_eq(send(sv[0], big, PROTO_MAX_MSG + 100, 0),
	    PROTO_MAX_MSG + 100);
	ck_assert_int_eq(proto_recv(sv[1], buf, sizeof(buf), &len, &fd),
	    TP_ETOOBIG);
	ck_assert_int_eq(msg_decode(big, PROTO_MAX_MSG + 1, -1,
	    MSG_TO_SUPERVISOR, mb), TP_ETOOBIG);
	/* The sender refuses to exceed the cap too. */
	fill(ma, MSG_DISCOVERY);
	ck_assert_int_eq(msg_encode(ma, buf, 1000), TP_ETOOBIG);
	free(big);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

static int
fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

/* Sends a raw frame with n descriptors attached. */
static void
send_with_fds(int sock, const uint8_t *buf, size_t len, const int *fds, int n)
{
	char cbuf[CMSG_SPACE(4 * sizeof(int))];
	struct msghdr mh = { 0 };
	struct iovec iov = { (void *)buf, len };
	struct cmsghdr *c;

	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = CMSG_SPACE((size_t)n * sizeof(int));
	c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
	memcpy(CMSG_DATA(c), fds, (size_t)n * sizeof(int));
	ck_assert_int_eq(sendmsg(sock, &mh, 0), (ssize_t)len);
}

START_TEST(fd_passing)
{
	int sv[2], pipefd[2];
	char c = 0;

	ck_assert_int_eq(seqpair(sv), 0);
	ck_assert_int_eq(pipe(pipefd), 0);
	fill(ma, MSG_DIAL_RESULT);
	ma->u.dial_result.ok = true;
	ma->u.dial_result.error[0] = '\0';
	ma->fd = pipefd[1];
	ck_assert_int_eq(proto_send(sv[0], ma), 0);
	ck_assert_int_eq(proto_recv_msg(sv[1], MSG_TO_WORKER, mb), 0);
	ck_assert_int_ge(mb->fd, 0);
	ck_assert_int_ne(mb->fd, pipefd[1]);
	ck_assert_int_eq(write(mb->fd, "z", 1), 1);
	ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	ck_assert_int_eq(c, 'z');
	ck_assert(fcntl(mb->fd, F_GETFD) & FD_CLOEXEC);
	close(mb->fd);
	/* ok without an fd is refused by the sender and the receiver. */
	ma->fd = -1;
	ck_assert_int_eq(proto_send(sv[0], ma), TP_EFD);
	close(pipefd[0]);
	close(pipefd[1]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/*
 * The fd rule comes from the message table alone: DIAL_RESULT carries an
 * fd exactly when ok, nothing else ever does, and both ends apply it.
 */
START_TEST(fd_rule_from_table)
{
	uint8_t buf[PROTO_MAX_MSG];
	int sv[2], pipefd[2], n;

	for (int i = 0; i < NTYPES; i++) {
		fill(ma, all_types[i]);
		ck_assert_msg(msg_wants_fd(ma) == (all_types[i] ==
		    MSG_DIAL_RESULT && ma->u.dial_result.ok), "%s",
		    msg_name(all_types[i]));
	}
	ma->type = 9999;
	ck_assert(!msg_wants_fd(ma));
	ck_assert_int_eq(seqpair(sv), 0);
	ck_assert_int_eq(pipe(pipefd), 0);
	fill(ma, MSG_DIAL_RESULT);
	ma->u.dial_result.ok = false;
	ck_assert(!msg_wants_fd(ma));
	/* A refusal with an fd: refused by the sender, and by the receiver. */
	ma->fd = pipefd[0];
	ck_assert_int_eq(proto_send(sv[0], ma), TP_EFD);
	n = msg_encode(ma, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(msg_decode(buf, (size_t)n, dup(pipefd[0]),
	    MSG_TO_WORKER, mb), TP_EFD);
	ma->fd = -1;
	ck_assert_int_eq(proto_send(sv[0], ma), 0);
	ck_assert_int_eq(proto_recv_msg(sv[1], MSG_TO_WORKER, mb), 0);
	ck_assert_int_eq(mb->fd, -1);
	/* ok on the wire without an fd: the receiver refuses it. */
	ma->u.dial_result.ok = true;
	n = msg_encode(ma, buf, sizeof(buf));
	ck_assert_int_eq(msg_decode(buf, (size_t)n, -1, MSG_TO_WORKER, mb),
	    TP_EFD);
	close(pipefd[0]);
	close(pipefd[1]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

/* An fd on a message that must not carry one is closed, not leaked. */
START_TEST(fd_refused_and_closed)
{
	uint8_t buf[PROTO_MAX_MSG];
	int sv[2], fds[3], n, rc;
	size_t len;
	int fd;

	ck_assert_int_eq(seqpair(sv), 0);
	fill(ma, MSG_STATE);
	n = msg_encode(ma, buf, sizeof(buf));
	for (int i = 0; i < 3; i++)
		fds[i] = open("/dev/null", O_RDONLY);
	/* One fd on STATE: received, then refused and closed by the decoder. */
	send_with_fds(sv[0], buf, (size_t)n, fds, 1);
	ck_assert_int_eq(proto_recv(sv[1], buf, sizeof(buf), &len, &fd), 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(msg_decode(buf, len, fd, MSG_TO_SUPERVISOR, mb), TP_EFD);
	ck_assert(!fd_is_open(fd));
	/* Three fds in one datagram: all closed by proto_recv. */
	n = msg_encode(ma, buf, sizeof(buf));
	send_with_fds(sv[0], buf, (size_t)n, fds, 3);
	{
		int before = open("/dev/null", O_RDONLY);

		close(before);
		rc = proto_recv(sv[1], buf, sizeof(buf), &len, &fd);
		ck_assert_int_eq(rc, TP_EFD);
		ck_assert_int_eq(fd, -1);
		/* The lowest free descriptor is unchanged: nothing leaked. */
		int after = open("/dev/null", O_RDONLY);
		ck_assert_int_eq(after, before);
		close(after);
	}
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	close(sv[0]);
	close(sv[1]);
}
END_TEST

START_TEST(eof_is_closed)
{
	uint8_t buf[64];
	size_t len;
	int sv[2], fd;

	ck_assert_int_eq(seqpair(sv), 0);
	close(sv[0]);
	ck_assert_int_eq(proto_recv(sv[1], buf, sizeof(buf), &len, &fd),
	    TP_ECLOSED);
	close(sv[1]);
}
END_TEST

/* --- dispatch ------------------------------------------------------------ */

enum { ST_WAIT_READY = 0, ST_RUNNING = 1 };
static int handled_ready, handled_state;

static int
h_ready(void *ctx, struct msg *m)
{
	(void)ctx;
	handled_ready++;
	return m->u.ready.version == PROTO_VERSION ? 0 : -1;
}

static int
h_state(void *ctx, struct msg *m)
{
	(void)ctx;
	(void)m;
	handled_state++;
	return 0;
}

static const struct proto_handler table[] = {
	{ MSG_READY, 1u << ST_WAIT_READY, PH_ONCE, 0, h_ready },
	{ MSG_STATE, 1u << ST_RUNNING, 0, 5, h_state },
};

static int
dispatch_one(struct proto_peer *peer, uint32_t state, enum msg_type t,
    uint64_t now, const char **why)
{
	uint8_t buf[PROTO_MAX_MSG];
	int n;

	fill(ma, t);
	n = msg_encode(ma, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	return proto_dispatch(table, 2, peer, state, MSG_TO_SUPERVISOR, buf,
	    (size_t)n, -1, now, mb, NULL, why);
}

START_TEST(dispatch_rules)
{
	struct proto_peer peer = { 0 };
	const char *why;

	handled_ready = handled_state = 0;
	ck_assert_int_eq(dispatch_one(&peer, ST_WAIT_READY, MSG_READY, 0, &why), 0);
	ck_assert_int_eq(handled_ready, 1);
	/* READY again: once-only. */
	ck_assert_int_eq(dispatch_one(&peer, ST_WAIT_READY, MSG_READY, 0, &why),
	    TP_ESTATE);
	/* STATE before running: wrong state. */
	ck_assert_int_eq(dispatch_one(&peer, ST_WAIT_READY, MSG_STATE, 0, &why),
	    TP_ESTATE);
	ck_assert_str_eq(why, "message not allowed in this state");
	/* Not in the table at all. */
	ck_assert_int_eq(dispatch_one(&peer, ST_RUNNING, MSG_STATS, 0, &why),
	    TP_EPROTO);
	/* Rate: 5 per second allowed, the 6th refused, next second fine. */
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(dispatch_one(&peer, ST_RUNNING, MSG_STATE,
		    1000, &why), 0);
	ck_assert_int_eq(dispatch_one(&peer, ST_RUNNING, MSG_STATE, 1500, &why),
	    TP_ETOOBIG);
	ck_assert_int_eq(dispatch_one(&peer, ST_RUNNING, MSG_STATE, 2000, &why), 0);
	ck_assert_int_eq(handled_state, 6);
}
END_TEST

/*
 * The signal handler's encoder: what the supervisor's decoder reads back,
 * byte for byte what msg_encode makes of the same message, and a name
 * that does not fit sent as "?".
 */
static void
check_violation(uint32_t nr, const char *name, const char *sent)
{
	uint8_t sig[PROTO_VIOLATION_MAX], ref[PROTO_MAX_MSG];
	size_t n = msg_encode_sandbox_violation(sig, sizeof(sig), nr, name);
	int rn;

	ck_assert_uint_gt(n, 0);
	ck_assert_uint_le(n, PROTO_VIOLATION_MAX);
	ck_assert_int_eq(msg_decode(sig, n, -1, MSG_TO_SUPERVISOR, mb), 0);
	ck_assert_int_eq(mb->type, MSG_SANDBOX_VIOLATION);
	ck_assert_uint_eq(mb->u.sandbox_violation.nr, nr);
	ck_assert_str_eq(mb->u.sandbox_violation.name, sent);
	msg_init(ma, MSG_SANDBOX_VIOLATION);
	ma->u.sandbox_violation.nr = nr;
	snprintf(ma->u.sandbox_violation.name,
	    sizeof(ma->u.sandbox_violation.name), "%s", sent);
	rn = msg_encode(ma, ref, sizeof(ref));
	ck_assert_int_eq(rn, (int)n);
	ck_assert_mem_eq(sig, ref, n);
}

START_TEST(violation_sigsafe_encoder)
{
	static const uint32_t nrs[] = { 0, 1, 41, 127, 128, 255, 256, 65535,
	    65536, 0x40000000, UINT32_MAX };
	static const char long31[] = "0123456789012345678901234567890";
	static const char long32[] = "01234567890123456789012345678901";
	uint8_t buf[PROTO_VIOLATION_MAX];

	for (size_t i = 0; i < sizeof(nrs) / sizeof(nrs[0]); i++) {
		check_violation(nrs[i], "socket", "socket");
		check_violation(nrs[i], "", "");
		check_violation(nrs[i], "?", "?");
		check_violation(nrs[i], long31, long31);
		check_violation(nrs[i], long32, "?");
		check_violation(nrs[i], NULL, "?");
	}
	/* The worst case fits PROTO_VIOLATION_MAX exactly; less is refused. */
	ck_assert_uint_eq(msg_encode_sandbox_violation(buf, sizeof(buf),
	    UINT32_MAX, long31), PROTO_VIOLATION_MAX);
	ck_assert_uint_eq(msg_encode_sandbox_violation(buf,
	    PROTO_VIOLATION_MAX - 1, 1, "x"), 0);
}
END_TEST

/* Its frames, mutated, go through the strict decoder without a crash. */
START_TEST(violation_sigsafe_mutations)
{
	uint8_t buf[PROTO_VIOLATION_MAX], mut[PROTO_VIOLATION_MAX];
	size_t n = msg_encode_sandbox_violation(buf, sizeof(buf), 65536,
	    "process_vm_readv");
	size_t errors = 0;

	ck_assert_uint_gt(n, 0);
	for (size_t i = 0; i < n * 8; i++) {
		memcpy(mut, buf, n);
		mut[i / 8] ^= (uint8_t)(1u << (i % 8));
		if (msg_decode(mut, n, -1, MSG_TO_SUPERVISOR, mb) != 0)
			errors++;
	}
	ck_assert_uint_gt(errors, n);
	for (size_t len = 0; len < n; len++)
		ck_assert_int_ne(msg_decode(buf, len, -1, MSG_TO_SUPERVISOR, mb),
		    0);
}
END_TEST

/*
 * msg_payload_copy: into zeroed memory the copy is the decoded payload,
 * byte for byte; into memory full of 0xEE it encodes the same and leaves
 * every byte past a string's NUL, a blob's length and an array's count
 * as it was (what keeps the worker's CONFIG from making its whole struct
 * resident).
 */
START_TEST(payload_copy_every_type)
{
	enum msg_type t = all_types[_i];
	static uint8_t a[PROTO_MAX_MSG], b[PROTO_MAX_MSG];
	size_t size = msg_payload_size(t);
	struct msg *mc = malloc(sizeof(*mc));
	uint8_t *zero = calloc(1, size);
	int na, nb;

	ck_assert_ptr_nonnull(mc);
	ck_assert_ptr_nonnull(zero);
	fill(ma, t);
	if (t == MSG_CONFIG) {
		ma->u.config.n_principals = 1;
		strcpy(ma->u.config.principals[0].name, "proxy-*.example");
		ma->u.config.n_revoked = 1;
		strcpy(ma->u.config.revoked[0].fp, "SHA256:ffff");
	}
	na = msg_encode(ma, a, sizeof(a));
	ck_assert_int_gt(na, 0);
	ck_assert_int_eq(msg_decode(a, (size_t)na, -1, msg_direction(t), mb), 0);

	ck_assert_int_eq(msg_payload_copy(t, zero, &mb->u), 0);
	ck_assert_int_eq(memcmp(zero, &mb->u, size), 0);

	memset(mc, 0xEE, sizeof(*mc));
	mc->type = t;
	mc->fd = -1;
	ck_assert_int_eq(msg_payload_copy(t, &mc->u, &mb->u), 0);
	nb = msg_encode(mc, b, sizeof(b));
	ck_assert_int_eq(nb, na);
	ck_assert_int_eq(memcmp(a, b, (size_t)na), 0);
	if (t == MSG_CONFIG) {
		const struct msg_config *c = &mc->u.config;
		const uint8_t *tail[] = {
			(const uint8_t *)&c->cluster[strlen("cluster-a") + 1],
			(const uint8_t *)&c->kex[1],
			(const uint8_t *)c->pinned[2].fp,
			(const uint8_t *)&c->forwards[2].id,
			(const uint8_t *)c->wanted[1].fp,
			(const uint8_t *)c->principals[1].name,
			&c->ca[0].blob[3],
			(const uint8_t *)&c->ca[1].len,
			(const uint8_t *)c->revoked[1].fp,
			(const uint8_t *)c->revoked[PROTO_MAX_REVOKED - 1].fp,
		};

		for (size_t i = 0; i < sizeof(tail) / sizeof(tail[0]); i++)
			ck_assert_msg(*tail[i] == 0xEE, "byte %zu written", i);
	}
	ck_assert_int_eq(msg_payload_copy(9999, zero, &mb->u), TP_EINVAL);
	free(zero);
	free(mc);
}
END_TEST

START_TEST(names)
{
	ck_assert_str_eq(msg_name(MSG_CONFIG), "CONFIG");
	ck_assert_str_eq(msg_name(9999), "?");
	ck_assert_str_eq(agent_state_name(AGENT_DISCOVERED), "discovered");
	ck_assert_str_eq(agent_state_name(99), "?");
}
END_TEST

static Suite *
proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc = tcase_create("codec");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, roundtrip_every_type, 0, NTYPES);
	tcase_add_loop_test(tc, wrong_direction_refused, 0, NTYPES);
	tcase_add_loop_test(tc, mutation_bitflips, 0, NTYPES);
	tcase_add_test(tc, session_bind_bounds);
	tcase_add_loop_test(tc, mutation_byteflips_truncations, 0, NTYPES);
	tcase_add_test(tc, strict_fields);
	tcase_add_test(tc, strict_values);
	tcase_add_test(tc, prescan_huge_counts);
	tcase_add_test(tc, oversize_frames);
	tcase_add_test(tc, fd_passing);
	tcase_add_test(tc, fd_refused_and_closed);
	tcase_add_test(tc, fd_rule_from_table);
	tcase_add_test(tc, eof_is_closed);
	tcase_add_test(tc, dispatch_rules);
	tcase_add_test(tc, violation_sigsafe_encoder);
	tcase_add_test(tc, violation_sigsafe_mutations);
	tcase_add_loop_test(tc, payload_copy_every_type, 0, NTYPES);
	tcase_add_test(tc, names);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(proto_suite());
}
