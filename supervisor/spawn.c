/*
 * Spawner: resolves the dial name (evdns, every address used in turn),
 * connects non-blocking with a deadline, then forks and execs the worker
 * with its three descriptors at fixed numbers.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "common/addr.h"
#include "common/log.h"
#include "common/tptime.h"
#include "proto/workerfd.h"
#include "aconnect.h"
#include "child.h"
#include "config.h"
#include "pool.h"
#include "spawn.h"
#include "sup.h"

/* LIBSSH-NOTES trap 1: bounded blocking send, so sshd and libssh cannot deadlock. */
#define PROXY_SNDTIMEO_MS	50

static void spawn_fail(struct child *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
spawn_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct child *c = arg;

	(void)fd;
	(void)what;
	child_lost(c, c->close_requested ? WEXIT_CLOSED : SR_SPAWN, c->detail);
}

/*
 * Spawn failures are torn down from a fresh loop iteration: a failure can
 * happen inside evdns_getaddrinfo's synchronous callback, itself inside the
 * pool's tick, and neither may see the agent vanish under it.
 */
static void
spawn_fail(struct child *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
	c->state = CH_DYING;
	child_release(c, CR_PROXY_DIAL);
	if (event_base_once(c->sup->base, -1, EV_TIMEOUT, spawn_fail_cb, c,
	    NULL) != 0)
		fatalx("event_base_once failed");
}

static void
tune_proxy_socket(int fd)
{
	struct timeval tv = { 0, PROXY_SNDTIMEO_MS * 1000 };
	int one = 1, idle = 30, intvl = 10, cnt = 3;

	/* Failures here cost robustness, not correctness: log and go on. */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		log_warn("setsockopt on proxy socket");
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Moves fd to a number >= 10 so that the dup2 into 3..5 cannot clobber. */
static int
lift(int fd)
{
	return fcntl(fd, F_DUPFD, 10);
}

/* In the child after fork: only async-signal-safe calls until execve. */
static void
exec_worker(struct child *c, const char *path, char *logenv, int ctl,
    int agent, int proxy, int logw, pid_t parent, int devnull)
{
	char *argv[] = { "tunnelpool-agent", c->cluster, c->dial_addr, NULL };
	char *envp[] = { logenv, logenv + 32, c->sup->worker_env, NULL };
	sigset_t none;
	int a, b, d;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
		_exit(WEXIT_SUPERVISOR_GONE);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGIO, SIG_DFL);		/* ignored for file leases */
	/*
	 * stdin and stdout read and write /dev/null; stderr is the pipe the
	 * supervisor relays (workerlog.c): a worker never writes our journal.
	 */
	if ((a = lift(ctl)) < 0 || (b = lift(agent)) < 0 || (d = lift(proxy)) < 0 ||
	    dup2(devnull, 0) < 0 || dup2(devnull, 1) < 0 || dup2(logw, 2) < 0 ||
	    dup2(a, WORKER_FD_CONTROL) < 0 ||
	    dup2(b, WORKER_FD_AGENT) < 0 || dup2(d, WORKER_FD_PROXY) < 0)
		_exit(WEXIT_USAGE);
	/* Everything else goes: the worker must not inherit a single extra fd. */
	if (close_range(WORKER_FD_PROXY + 1, ~0U, 0) != 0)
		_exit(WEXIT_USAGE);
	execve(path, argv, envp);
	_exit(WEXIT_USAGE);
}

static void
fork_worker(struct child *c)
{
	struct sup *sup = c->sup;
	int ctl[2], agent[2], logp[2];
	pid_t pid, self = getpid();
	static const char *const levels[] = { "debug", "info", "warn", "error" };
	char logenv[64];

	/* Two strings in one buffer: TP_LOG_LEVEL at 0, TP_LOG_FORMAT at 32. */
	/* Workers log at the supervisor's level, to it (workerlog.c). */
	snprintf(logenv, 32, "TP_LOG_LEVEL=%s", levels[log_get_level()]);
	snprintf(logenv + 32, 32, "TP_LOG_FORMAT=relay");

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) != 0) {
		spawn_fail(c, "socketpair: %s", strerror(errno));
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, agent) != 0) {
		close(ctl[0]);
		close(ctl[1]);
		spawn_fail(c, "socketpair: %s", strerror(errno));
		return;
	}
	/* Non-blocking both ways: a full pipe loses a worker's line, never blocks it. */
	if (pipe2(logp, O_CLOEXEC | O_NONBLOCK) != 0) {
		close(ctl[0]);
		close(ctl[1]);
		close(agent[0]);
		close(agent[1]);
		spawn_fail(c, "pipe: %s", strerror(errno));
		return;
	}
	pid = fork();
	if (pid == 0)
		exec_worker(c, sup->cfg->worker.path, logenv, ctl[1], agent[1],
		    c->sock, logp[1], self, sup->devnull);
	close(ctl[1]);
	close(agent[1]);
	close(logp[1]);
	close(c->sock);
	c->sock = -1;
	if (pid < 0) {
		close(ctl[0]);
		close(agent[0]);
		close(logp[0]);
		spawn_fail(c, "fork: %s", strerror(errno));
		return;
	}
	sup->counters.spawns++;
	if (child_started(c, pid, ctl[0], agent[0], logp[0]) != 0)
		child_kill(c, SR_SPAWN, "cannot watch the new worker");
}

static void
on_connected(evutil_socket_t fd, short what, void *arg)
{
	struct child *c = arg;
	int err = aconnect_result(fd, what, &c->conn_ev);

	if (err != 0) {
		spawn_fail(c, "dial %s: %s", c->dial_addr,
		    err == ETIMEDOUT ? "timed out" : strerror(err));
		return;
	}
	tune_proxy_socket(fd);
	fork_worker(c);
}

static void
connect_to(struct child *c, const struct sockaddr *sa, socklen_t salen)
{
	int rc = aconnect_start(c->sup->base, sa, salen,
	    c->sup->cfg->timeouts.dial_ms, &c->sock, &c->conn_ev,
	    on_connected, c);

	if (rc != 0)
		spawn_fail(c, "dial %s: %s", c->dial_addr, strerror(rc));
}

/* Every address a name resolves to is used: the key rotates through them. */
static void
on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
	struct child *c = arg;
	struct evutil_addrinfo *ai;
	unsigned n = 0, pick;

	/* A cancelled request may be reported after c was freed: touch nothing. */
	if (err == EVUTIL_EAI_CANCEL)
		return;
	c->dns_req = NULL;
	if (err != 0) {
		spawn_fail(c, "resolve %s: %s", c->dial_addr,
		    evutil_gai_strerror(err));
		return;
	}
	if (c->state != CH_DIALING) {
		evutil_freeaddrinfo(res);
		return;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next)
		n++;
	if (n == 0) {
		spawn_fail(c, "resolve %s: no address", c->dial_addr);
		evutil_freeaddrinfo(res);
		return;
	}
	pick = c->agent->key->addr_rr++ % n;
	for (ai = res; pick > 0; pick--)
		ai = ai->ai_next;
	connect_to(c, ai->ai_addr, (socklen_t)ai->ai_addrlen);
	evutil_freeaddrinfo(res);
}

void
spawn_cancel(struct child *c)
{
	if (c->state == CH_DIALING)
		spawn_fail(c, "closed before the worker started");
}

int
child_spawn(void *arg, struct pool_agent *agent)
{
	struct sup *sup = arg;
	struct evutil_addrinfo hints;
	struct evdns_getaddrinfo_request *req;
	struct tp_addr addr;
	struct child *c;
	char port[8];

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return -1;
	c->sup = sup;
	c->agent = agent;
	c->ctl = c->sock = -1;
	c->state = CH_DIALING;
	agent->owner = c;
	snprintf(c->cluster, sizeof(c->cluster), "%s", agent->key->cluster);
	snprintf(c->dial_addr, sizeof(c->dial_addr), "%s", agent->key->dial_addr);
	snprintf(c->state_name, sizeof(c->state_name), "dialing");
	c->who.cluster = c->cluster;
	c->who.addr = c->dial_addr;
	c->who.state = c->state_name;
	c->who.proxy = c->proxy;
	if (workerlog_init(&c->log, &c->who,
	    &sup->counters.worker_log_suppressed) != 0 ||
	    dialer_init(&c->dials, sup->cfg) != 0) {
		free(c);
		agent->owner = NULL;
		return -1;
	}
	c->next = sup->children;
	if (sup->children != NULL)
		sup->children->prev = c;
	sup->children = c;
	if (tp_addr_parse(c->dial_addr, 0, &addr) != 0) {
		spawn_fail(c, "bad dial address %s", c->dial_addr);
		return 0;
	}
	snprintf(port, sizeof(port), "%u", addr.port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/*
	 * May call back at once (literal addresses, hosts file) and then
	 * returns NULL; c is still alive then, since failures are deferred.
	 */
	req = evdns_getaddrinfo(sup->dns, addr.host, port, &hints,
	    on_resolved, c);
	if (c->state == CH_DIALING && c->sock < 0 && c->conn_ev == NULL)
		c->dns_req = req;
	return 0;
}
