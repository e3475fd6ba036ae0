/*
 * worker-drive: a small proto peer that runs one tunnelpool-agent for
 * worker tests.  It is not the supervisor; it exists so that the worker's
 * behaviour can be tested in isolation against a real sshd:
 *
 *   - connects a TCP socket to the proxy (SO_SNDTIMEO 50 ms, trap 1),
 *   - serves the ssh-agent protocol with the real signer on fd 4,
 *   - forks and execs the agent with fds 3/4/5, sends CONFIG from options,
 *   - grants (or refuses) claims, answers DIAL_REQUEST by connecting to
 *     --target and passing the fd,
 *   - prints every message it receives as one JSON line on stdout, and
 *     {"event":"exit",...} when the agent exits (then exits itself),
 *   - reads commands on stdin: "close MS REASON", "ping SEQ", "hook N",
 *     "signal SIG".
 */
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "common/log.h"
#include "common/sshbuf.h"
#include "common/sshpub.h"
#include "proto/msg.h"
#include "proto/wire.h"
#include "supervisor/signer.h"
#include "supervisor/sshkey.h"

struct opts {
	const char	*agent;
	const char	*host;
	const char	*port;
	const char	*key;
	const char	*cert;
	const char	*target;
	const char	*deny_claim;
	const char	*wrap;
	int		 refuse_dials;
	struct msg	 config;
};

static struct opts	 o;
static struct msg	 rx;
static pid_t		 child = -1;

static void __attribute__((noreturn))
err_exit(const char *what)
{
	fprintf(stderr, "worker-drive: %s: %s\n", what, strerror(errno));
	if (child > 0)
		kill(child, SIGKILL);
	exit(1);
}

/* --- output --------------------------------------------------------------- */

static void
json_str(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void
kv_str(const char *k, const char *v)
{
	printf(",\"%s\":", k);
	json_str(v);
}

static void
kv_num(const char *k, unsigned long long v)
{
	printf(",\"%s\":%llu", k, v);
}

static void
print_msg(const struct msg *m)
{
	printf("{\"msg\":");
	json_str(msg_name(m->type));
	switch (m->type) {
	case MSG_READY:
		kv_num("v", m->u.ready.version);
		kv_str("sandbox", m->u.ready.sandbox);
		break;
	case MSG_STATE:
		kv_str("state", agent_state_name(m->u.state.state));
		kv_str("fp", m->u.state.fp);
		kv_str("name", m->u.state.name);
		kv_str("reason", m->u.state.reason);
		kv_num("code", m->u.state.code);
		break;
	case MSG_CLAIM:
		kv_str("fp", m->u.claim.fp);
		kv_str("name", m->u.claim.name);
		break;
	case MSG_DISCOVERY:
		kv_str("cluster", m->u.discovery.cluster);
		printf(",\"proxies\":[");
		for (uint32_t i = 0; i < m->u.discovery.n_proxies; i++) {
			printf("%s{\"name\":", i > 0 ? "," : "");
			json_str(m->u.discovery.proxies[i].name);
			printf(",\"fp\":");
			json_str(m->u.discovery.proxies[i].fp);
			printf("}");
		}
		printf("]");
		break;
	case MSG_DIAL_REQUEST:
		kv_num("fwd", m->u.dial_request.forward_id);
		kv_num("ch", m->u.dial_request.channel_id);
		kv_str("orig_host", m->u.dial_request.orig_host);
		kv_num("orig_port", m->u.dial_request.orig_port);
		break;
	case MSG_STATS:
		kv_num("rx", m->u.stats.rx_bytes);
		kv_num("tx", m->u.stats.tx_bytes);
		kv_num("ch_open", m->u.stats.channels_open);
		kv_num("ch_total", m->u.stats.channels_total);
		kv_num("dial_fail", m->u.stats.dial_failures);
		kv_num("refused", m->u.stats.channels_refused);
		kv_num("rx_age_ms", m->u.stats.rx_age_ms);
		break;
	case MSG_PONG:
		kv_num("seq", m->u.pong.seq);
		break;
	case MSG_FORWARD:
		kv_num("id", m->u.forward.id);
		printf(",\"bound\":%s", m->u.forward.bound ? "true" : "false");
		kv_num("port", m->u.forward.port);
		kv_str("error", m->u.forward.error);
		break;
	case MSG_SANDBOX_VIOLATION:
		kv_num("nr", m->u.sandbox_violation.nr);
		kv_str("name", m->u.sandbox_violation.name);
		break;
	case MSG_SESSION_BIND:
		kv_num("sid_len", m->u.session_bind.sid_len);
		kv_num("sig_len", m->u.session_bind.sig_len);
		break;
	default:
		break;
	}
	printf("}\n");
	fflush(stdout);
}

static void event(const char *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

static void
event(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("{\"event\":\"%s\"", name);
	if (fmt != NULL) {
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	printf("}\n");
	fflush(stdout);
}

/* --- options -------------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr, "usage: worker-drive --agent PATH --port N --key FILE "
	    "[--cert FILE] [--user U] [--pin FP]... [--ca PUBFILE]... "
	    "[--forward ID:HOST:PORT]... [--target HOST:PORT] [--cluster C] "
	    "[--dial ADDR] [--dial-host H] [--role tunnel|discovery] "
	    "[--wanted FP]... [--discovery] [--ka-ms N] [--ka-count N] "
	    "[--hs-ms N] [--max-ch N] [--stats-ms N] [--ciphers L] [--kex L] "
	    "[--hostkeys L] [--deny-claim REASON] [--refuse-dials] "
	    "[--wrap 'CMD ARGS']\n");
	exit(2);
}

static void
add_forward(struct msg_config *c, const char *spec)
{
	char buf[PROTO_ADDR_MAX], *host, *port = NULL;
	struct msg_forward_spec *f;

	if (c->n_forwards >= PROTO_MAX_FORWARDS)
		usage();
	snprintf(buf, sizeof(buf), "%s", spec);
	if ((host = strchr(buf, ':')) == NULL)
		usage();
	if ((port = strrchr(buf, ':')) == host)
		usage();
	*host++ = '\0';
	*port++ = '\0';
	f = &c->forwards[c->n_forwards++];
	f->id = (uint32_t)strtoul(buf, NULL, 10);
	snprintf(f->listen_host, sizeof(f->listen_host), "%s", host);
	f->listen_port = (uint32_t)strtoul(port, NULL, 10);
}

static void
add_ca(struct msg_config *c, const char *path)
{
	char line[8192];
	uint8_t *blob;
	size_t len;
	FILE *f = NULL;

	if (c->n_ca >= PROTO_MAX_CA || (f = fopen(path, "r")) == NULL)
		usage();
	if (fgets(line, sizeof(line), f) == NULL)
		usage();
	fclose(f);
	line[strcspn(line, "\r\n")] = '\0';
	if (sshpub_from_line(line, &blob, &len) != 0 ||
	    len > PROTO_KEYBLOB_MAX)
		usage();
	memcpy(c->ca[c->n_ca].blob, blob, len);
	c->ca[c->n_ca++].len = (uint32_t)len;
	free(blob);
}

enum {
	O_AGENT = 256, O_HOST, O_PORT, O_KEY, O_CERT, O_USER, O_PIN, O_CA,
	O_FORWARD, O_TARGET, O_CLUSTER, O_DIAL, O_DIAL_HOST, O_ROLE, O_WANTED,
	O_DISCOVERY, O_KA_MS, O_KA_COUNT, O_HS_MS, O_MAX_CH, O_STATS_MS,
	O_CIPHERS, O_KEX, O_HOSTKEYS, O_DENY_CLAIM, O_REFUSE_DIALS, O_WRAP,
};

static const struct option longopts[] = {
	{ "agent", 1, NULL, O_AGENT }, { "host", 1, NULL, O_HOST },
	{ "port", 1, NULL, O_PORT }, { "key", 1, NULL, O_KEY },
	{ "cert", 1, NULL, O_CERT }, { "user", 1, NULL, O_USER },
	{ "pin", 1, NULL, O_PIN }, { "ca", 1, NULL, O_CA },
	{ "forward", 1, NULL, O_FORWARD }, { "target", 1, NULL, O_TARGET },
	{ "cluster", 1, NULL, O_CLUSTER }, { "dial", 1, NULL, O_DIAL },
	{ "dial-host", 1, NULL, O_DIAL_HOST }, { "role", 1, NULL, O_ROLE },
	{ "wanted", 1, NULL, O_WANTED }, { "discovery", 0, NULL, O_DISCOVERY },
	{ "ka-ms", 1, NULL, O_KA_MS }, { "ka-count", 1, NULL, O_KA_COUNT },
	{ "hs-ms", 1, NULL, O_HS_MS }, { "max-ch", 1, NULL, O_MAX_CH },
	{ "stats-ms", 1, NULL, O_STATS_MS }, { "ciphers", 1, NULL, O_CIPHERS },
	{ "kex", 1, NULL, O_KEX }, { "hostkeys", 1, NULL, O_HOSTKEYS },
	{ "deny-claim", 1, NULL, O_DENY_CLAIM },
	{ "refuse-dials", 0, NULL, O_REFUSE_DIALS }, { "wrap", 1, NULL, O_WRAP },
	{ NULL, 0, NULL, 0 },
};

#define CPY(dst, src)	snprintf((dst), sizeof(dst), "%s", (src))

static void
parse_opts(int argc, char **argv)
{
	struct msg_config *c = &o.config.u.config;
	int ch;

	msg_init(&o.config, MSG_CONFIG);
	c->version = PROTO_VERSION;
	CPY(c->cluster, "test");
	CPY(c->user, "tunnel");
	c->role = AGENT_ROLE_TUNNEL;
	c->keepalive_ms = 2000;
	c->keepalive_count = 3;
	c->handshake_ms = 10000;
	c->max_channels = 1024;
	c->stats_ms = 0;
	o.host = "127.0.0.1";
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case O_AGENT: o.agent = optarg; break;
		case O_HOST: o.host = optarg; break;
		case O_PORT: o.port = optarg; break;
		case O_KEY: o.key = optarg; break;
		case O_CERT: o.cert = optarg; break;
		case O_USER: CPY(c->user, optarg); break;
		case O_PIN:
			if (c->n_pinned >= PROTO_MAX_PINNED)
				usage();
			CPY(c->pinned[c->n_pinned++].fp, optarg);
			break;
		case O_CA: add_ca(c, optarg); break;
		case O_FORWARD: add_forward(c, optarg); break;
		case O_TARGET: o.target = optarg; break;
		case O_CLUSTER: CPY(c->cluster, optarg); break;
		case O_DIAL: CPY(c->dial_addr, optarg); break;
		case O_DIAL_HOST: CPY(c->dial_host, optarg); break;
		case O_ROLE:
			c->role = strcmp(optarg, "discovery") == 0 ?
			    AGENT_ROLE_DISCOVERY : AGENT_ROLE_TUNNEL;
			break;
		case O_WANTED:
			if (c->n_wanted >= PROTO_MAX_WANTED)
				usage();
			CPY(c->wanted[c->n_wanted++].fp, optarg);
			break;
		case O_DISCOVERY: c->discovery = true; break;
		case O_KA_MS: c->keepalive_ms = (uint32_t)atoi(optarg); break;
		case O_KA_COUNT: c->keepalive_count = (uint32_t)atoi(optarg); break;
		case O_HS_MS: c->handshake_ms = (uint32_t)atoi(optarg); break;
		case O_MAX_CH: c->max_channels = (uint32_t)atoi(optarg); break;
		case O_STATS_MS: c->stats_ms = (uint32_t)atoi(optarg); break;
		case O_CIPHERS: CPY(c->ciphers, optarg); break;
		case O_KEX: CPY(c->kex, optarg); break;
		case O_HOSTKEYS: CPY(c->hostkeys, optarg); break;
		case O_DENY_CLAIM: o.deny_claim = optarg; break;
		case O_REFUSE_DIALS: o.refuse_dials = 1; break;
		case O_WRAP: o.wrap = optarg; break;
		default: usage();
		}
	}
	if (o.agent == NULL || o.port == NULL || o.key == NULL)
		usage();
	if (c->dial_addr[0] == '\0')
		snprintf(c->dial_addr, sizeof(c->dial_addr), "%s:%s", o.host,
		    o.port);
	if (c->dial_host[0] == '\0')
		CPY(c->dial_host, o.host);
}

/* --- sockets -------------------------------------------------------------- */

static int
tcp_connect(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
	int fd = -1;

	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC,
		    0)) < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static int
proxy_connect(void)
{
	struct timeval tv = { .tv_sec = 0, .tv_usec = 50000 };
	int fd = tcp_connect(o.host, o.port);

	if (fd < 0)
		err_exit("connect to proxy");
	/* The supervisor's job (LIBSSH-NOTES trap 1). */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		err_exit("SO_SNDTIMEO");
	return fd;
}

/* Forks and execs the agent with fds 3 (control), 4 (agent), 5 (proxy). */
static void
spawn(int ctl, int agent, int proxy)
{
	char *argv[64];
	int argc = 0;
	char *wrap = o.wrap != NULL ? strdup(o.wrap) : NULL;

	for (char *t = wrap != NULL ? strtok(wrap, " ") : NULL; t != NULL &&
	    argc < 58; t = strtok(NULL, " "))
		argv[argc++] = t;
	argv[argc++] = (char *)o.agent;
	argv[argc++] = o.config.u.config.cluster;
	argv[argc++] = o.config.u.config.dial_addr;
	argv[argc] = NULL;
	if ((child = fork()) < 0)
		err_exit("fork");
	if (child > 0)
		return;
	/* Move the three fds clear of 3..5 first, then into place. */
	ctl = fcntl(ctl, F_DUPFD, 10);
	agent = fcntl(agent, F_DUPFD, 10);
	proxy = fcntl(proxy, F_DUPFD, 10);
	if (ctl < 0 || agent < 0 || proxy < 0 || dup2(ctl, 3) < 0 ||
	    dup2(agent, 4) < 0 || dup2(proxy, 5) < 0)
		_exit(2);
	for (int fd = 6; fd < 1024; fd++)
		close(fd);
	execvp(argv[0], argv);
	_exit(127);
}

/* --- the ssh-agent protocol, served with the real signer ------------------ */

struct agentbuf {
	uint8_t		buf[SIGNER_REQUEST_MAX + 4];
	size_t		len;
};

static void
write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

/* Answers every complete request in ab; returns -1 on EOF or error. */
static int
agent_serve(int fd, struct agentbuf *ab, struct signer *sg)
{
	ssize_t n = read(fd, ab->buf + ab->len, sizeof(ab->buf) - ab->len);
	uint32_t blen;

	if (n <= 0)
		return n < 0 && errno == EINTR ? 0 : -1;
	ab->len += (size_t)n;
	while (ab->len >= 4) {
		struct sshbuf_writer w;
		uint8_t hdr[4];

		blen = (uint32_t)ab->buf[0] << 24 | (uint32_t)ab->buf[1] << 16 |
		    (uint32_t)ab->buf[2] << 8 | ab->buf[3];
		if (blen > SIGNER_REQUEST_MAX)
			return -1;
		if (ab->len < 4 + (size_t)blen)
			return 0;
		sshbuf_writer_init(&w, SIGNER_REPLY_MAX);
		(void)signer_handle(sg, ab->buf + 4, blen, &w);
		if (sshbuf_writer_error(&w) == 0) {
			hdr[0] = (uint8_t)(w.len >> 24);
			hdr[1] = (uint8_t)(w.len >> 16);
			hdr[2] = (uint8_t)(w.len >> 8);
			hdr[3] = (uint8_t)w.len;
			write_all(fd, hdr, 4);
			write_all(fd, w.p, w.len);
		}
		sshbuf_writer_free(&w);
		memmove(ab->buf, ab->buf + 4 + blen, ab->len - 4 - blen);
		ab->len -= 4 + blen;
	}
	return 0;
}

/* --- the control socket --------------------------------------------------- */

static void
send_msg(int ctl, const struct msg *m)
{
	int rc;

	while ((rc = proto_send(ctl, m)) == TP_EAGAIN)
		usleep(1000);
	if (rc != 0)
		event("send_failed", ",\"msg\":\"%s\",\"error\":\"%s\"",
		    msg_name(m->type), tp_strerror(rc));
}

static void
dial(int ctl, const struct msg_dial_request *r)
{
	struct msg m;
	char host[PROTO_ADDR_MAX], *port;
	int fd = -1;

	msg_init(&m, MSG_DIAL_RESULT);
	m.u.dial_result.channel_id = r->channel_id;
	if (o.refuse_dials || o.target == NULL) {
		CPY(m.u.dial_result.error, "refused by worker-drive");
	} else {
		CPY(host, o.target);
		if ((port = strrchr(host, ':')) != NULL)
			*port++ = '\0';
		if (port == NULL || (fd = tcp_connect(host, port)) < 0)
			snprintf(m.u.dial_result.error,
			    sizeof(m.u.dial_result.error), "connect: %s",
			    strerror(errno));
	}
	m.u.dial_result.ok = fd >= 0;
	m.fd = fd;
	send_msg(ctl, &m);
	if (fd >= 0)
		close(fd);
}

static void
control(int ctl)
{
	struct msg reply;
	int rc;

	for (;;) {
		if ((rc = proto_recv_msg(ctl, MSG_TO_SUPERVISOR, &rx)) ==
		    TP_EAGAIN || rc == TP_ECLOSED)
			return;
		if (rc != 0) {
			event("bad_message", ",\"error\":\"%s\"",
			    tp_strerror(rc));
			continue;
		}
		print_msg(&rx);
		switch (rx.type) {
		case MSG_READY:
			send_msg(ctl, &o.config);
			break;
		case MSG_CLAIM:
			msg_init(&reply, MSG_CLAIM_RESULT);
			reply.u.claim_result.granted = o.deny_claim == NULL;
			CPY(reply.u.claim_result.reason,
			    o.deny_claim != NULL ? o.deny_claim : "");
			send_msg(ctl, &reply);
			break;
		case MSG_DIAL_REQUEST:
			dial(ctl, &rx.u.dial_request);
			break;
		case MSG_SESSION_BIND:
			/* As the supervisor: the host's signature must verify. */
			msg_init(&reply, MSG_BIND_RESULT);
			reply.u.bind_result.ok = sshpub_verify(
			    rx.u.session_bind.hostkey,
			    rx.u.session_bind.hostkey_len, rx.u.session_bind.sig,
			    rx.u.session_bind.sig_len, rx.u.session_bind.sid,
			    rx.u.session_bind.sid_len) == 0;
			CPY(reply.u.bind_result.reason,
			    reply.u.bind_result.ok ? "bound" :
			    "signature does not verify");
			send_msg(ctl, &reply);
			break;
		default:
			break;
		}
	}
}

/* One stdin command: close MS REASON | ping SEQ | hook N | signal SIG. */
static void
command(int ctl, char *line)
{
	struct msg m;
	char *arg = strchr(line, ' '), *rest;

	if (arg != NULL)
		*arg++ = '\0';
	if (strcmp(line, "close") == 0 && arg != NULL) {
		msg_init(&m, MSG_CLOSE);
		m.u.close.deadline_ms = (uint32_t)strtoul(arg, &rest, 10);
		CPY(m.u.close.reason, *rest == ' ' ? rest + 1 : "test");
		send_msg(ctl, &m);
	} else if (strcmp(line, "ping") == 0 && arg != NULL) {
		msg_init(&m, MSG_PING);
		m.u.ping.seq = strtoull(arg, NULL, 10);
		send_msg(ctl, &m);
	} else if (strcmp(line, "hook") == 0 && arg != NULL) {
		static const uint8_t hook[] = { 0x92, 0x3c, 0x81, 0xa6, 'a', 'c',
		    't', 'i', 'o', 'n', 0x00 };
		uint8_t buf[sizeof(hook)];

		/* Raw: TEST_HOOK only exists in test_hooks builds of proto/. */
		memcpy(buf, hook, sizeof(hook));
		buf[sizeof(buf) - 1] = (uint8_t)atoi(arg);
		(void)send(ctl, buf, sizeof(buf), MSG_NOSIGNAL);
	} else if (strcmp(line, "signal") == 0 && arg != NULL) {
		kill(child, atoi(arg));
	} else
		event("bad_command", "%s", "");
}

static void
read_commands(int ctl, int *open)
{
	static char buf[4096];
	static size_t len;
	ssize_t n = read(0, buf + len, sizeof(buf) - 1 - len);
	char *nl;

	if (n <= 0) {
		*open = 0;
		return;
	}
	len += (size_t)n;
	buf[len] = '\0';
	while ((nl = strchr(buf, '\n')) != NULL) {
		*nl = '\0';
		if (buf[0] != '\0')
			command(ctl, buf);
		len -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, len + 1);
	}
}

static struct signer *
load_signer(struct sshkey **keyp)
{
	char err[SSHKEY_ERR_LEN];
	struct sshkey *key;
	struct signer *sg;

	if (sshkey_load(o.key, &key, err, sizeof(err)) != 0) {
		fprintf(stderr, "worker-drive: %s\n", err);
		exit(1);
	}
	if (o.cert != NULL && sshkey_load_cert(key, o.cert, err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "worker-drive: %s\n", err);
		exit(1);
	}
	if ((sg = signer_new(key, o.config.u.config.user)) == NULL)
		err_exit("signer_new");
	*keyp = key;		/* the signer borrows it */
	return sg;
}

/* Reaps the agent; returns 1 once it exited (after printing the event). */
static int
reap(void)
{
	int status;

	if (waitpid(child, &status, WNOHANG) != child)
		return 0;
	if (WIFEXITED(status))
		event("exit", ",\"pid\":%d,\"code\":%d,\"signal\":0", (int)child,
		    WEXITSTATUS(status));
	else
		event("exit", ",\"pid\":%d,\"code\":-1,\"signal\":%d",
		    (int)child, WTERMSIG(status));
	return 1;
}

int
main(int argc, char **argv)
{
	static struct agentbuf ab;
	int ctlp[2], agp[2], proxy, in_open = 1, ag_open = 1;
	struct signer *sg;
	struct sshkey *key;

	signal(SIGPIPE, SIG_IGN);
	log_init("worker-drive", LOG_LVL_WARN, LOG_FMT_LOGFMT, 2);
	parse_opts(argc, argv);
	sg = load_signer(&key);
	proxy = proxy_connect();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctlp) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, agp) < 0)
		err_exit("socketpair");
	spawn(ctlp[1], agp[1], proxy);
	close(ctlp[1]);
	close(agp[1]);
	close(proxy);
	event("spawned", ",\"pid\":%d", (int)child);
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = ctlp[0], .events = POLLIN },
			{ .fd = ag_open ? agp[0] : -1, .events = POLLIN },
			{ .fd = in_open ? 0 : -1, .events = POLLIN },
		};

		if (poll(p, 3, 100) < 0 && errno != EINTR)
			err_exit("poll");
		if (p[0].revents != 0)
			control(ctlp[0]);
		if (p[1].revents != 0 && agent_serve(agp[0], &ab, sg) < 0)
			ag_open = 0;
		if (p[2].revents != 0)
			read_commands(ctlp[0], &in_open);
		if (reap()) {
			control(ctlp[0]);	/* what it sent before dying */
			signer_free(sg);
			sshkey_free(key);
			return 0;
		}
	}
}
