/*
 * tunnelpool-discovery: the proxy end of discovery.  Stock OpenSSH sshd runs
 * it as a subsystem for each worker that asks; it streams the cluster's
 * proxy set, this proxy's host certificate and heartbeats as JSON lines on
 * stdout (docs/discovery-protocol.md) until the session ends.
 *
 * One process per session, so it must cost next to nothing and never
 * outlive its session: sshd only closes our pipes when the client goes, so
 * we exit on EOF on stdin, on an error condition on stdout, and on any
 * failed write; the heartbeat guarantees a write at least every interval.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <jansson.h>

#include "common/error.h"
#include "common/tptime.h"
#include "proto/discovery.h"
#include "proxy/filewatch.h"
#include "proxy/proxies_file.h"

#define PROG			"tunnelpool-discovery"
#define INTERVAL_DEFAULT	5
#define SLOT_PROXIES		0
#define SLOT_CERT		1

struct disc {
	const char		*path;
	unsigned		 interval;	/* heartbeat, seconds */
	struct proxy_set	 set;		/* last good set; n == 0: none */
	char			*cert_line;	/* last announced certificate */
	uint64_t		 seq;		/* of the last line written */
	uint64_t		 next_hb;	/* ms */
	struct filewatch	 fw;
	char			 out[DISCOVERY_LINE_MAX];
};

/*
 * Problems with the files go to stderr, as "tunnelpool-discovery:
 * FILE:LINE:COL: msg", for runs by hand; and to syslog, because sshd reads
 * a subsystem's stderr only to discard it, so syslog is all the proxy's
 * operator will see.
 */
static void __attribute__((format(printf, 4, 5)))
report(const char *file, unsigned line, unsigned col, const char *fmt, ...)
{
	char msg[512], where[PATH_MAX + 32];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(where, sizeof(where), "%s:%u:%u", file, line, col);
	else
		snprintf(where, sizeof(where), "%s", file);
	fprintf(stderr, "%s: %s: %s\n", PROG, where, msg);
	syslog(LOG_ERR, "%s: %s", where, msg);
}

static void
report_pf(const char *file, const struct pf_error *err)
{
	report(file, err->line, err->col, "%s", err->msg);
}

/* The session is gone (or going): leave quietly, there is no one to tell. */
static void __attribute__((noreturn))
session_over(void)
{
	exit(0);
}

/* Writes all of buf to stdout, waiting out a non-blocking pipe if need be. */
static void
write_all(const char *buf, size_t len)
{
	struct pollfd pfd = { .fd = STDOUT_FILENO, .events = POLLOUT };
	ssize_t n;

	while (len > 0) {
		n = write(STDOUT_FILENO, buf, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			if (poll(&pfd, 1, -1) == -1 && errno != EINTR)
				session_over();
			if (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))
				session_over();
			continue;
		}
		if (n <= 0)
			session_over();		/* EPIPE, EIO, ... */
		buf += n;
		len -= (size_t)n;
	}
}

/*
 * Writes o (from line_new) as one line and takes its reference.  Returns 0,
 * or TP_ETOOBIG (nothing written, seq unchanged) if the line would exceed
 * DISCOVERY_LINE_MAX, or TP_ENOMEM (also for o == NULL).
 */
static int
emit(struct disc *d, json_t *o)
{
	size_t n;

	if (o == NULL)
		return TP_ENOMEM;
	n = json_dumpb(o, d->out, sizeof(d->out) - 1, JSON_COMPACT);
	json_decref(o);
	if (n == 0)
		return TP_ENOMEM;
	if (n > sizeof(d->out) - 1)
		return TP_ETOOBIG;
	d->out[n++] = '\n';
	write_all(d->out, n);
	d->seq++;
	return 0;
}

/* Every line starts with its type and the next seq; the payload follows. */
static json_t *
line_new(const struct disc *d, const char *type)
{
	return json_pack("{s:s,s:I}", "type", type, "seq",
	    (json_int_t)(d->seq + 1));
}

static int
emit_heartbeat(struct disc *d)
{
	json_t *o = line_new(d, "heartbeat");

	if (o != NULL &&
	    json_object_set_new(o, "interval", json_integer(d->interval))) {
		json_decref(o);
		o = NULL;
	}
	return emit(d, o);
}

static int
emit_cert(struct disc *d, const char *line)
{
	json_t *o = line_new(d, "cert");

	if (o != NULL && json_object_set_new(o, "cert", json_string(line))) {
		json_decref(o);
		o = NULL;
	}
	return emit(d, o);
}

static json_t *
proxies_array(const struct proxy_set *set)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a != NULL && i < set->n; i++)
		if (json_array_append_new(a, json_pack("{s:s,s:s,s:s}",
		    "name", set->v[i].name, "host_key", set->v[i].key_line,
		    "fp", set->v[i].fp)) != 0) {
			json_decref(a);
			a = NULL;
		}
	return a;
}

static int
emit_proxies(struct disc *d, const struct proxy_set *set)
{
	json_t *o = line_new(d, "proxies"), *a = proxies_array(set);

	if (o == NULL || a == NULL ||
	    json_object_set_new(o, "cluster", json_string(set->cluster)) ||
	    json_object_set(o, "proxies", a)) {
		json_decref(o);
		o = NULL;
	}
	json_decref(a);
	return emit(d, o);
}

static void
oom(void)
{
	fprintf(stderr, "%s: out of memory\n", PROG);
	syslog(LOG_ERR, "out of memory");
	exit(1);
}

/* Re-reads the certificate; announces it if it differs from the last one. */
static void
reload_cert(struct disc *d)
{
	struct pf_error err;
	char *line;
	int rc;

	if (d->set.cert_path == NULL)
		return;
	filewatch_loading(&d->fw, SLOT_CERT);
	if ((rc = cert_file_load(d->set.cert_path, &line, &err)) != 0) {
		if (rc == TP_ENOMEM)
			oom();
		report_pf(d->set.cert_path, &err);
		return;
	}
	if (d->cert_line != NULL && strcmp(d->cert_line, line) == 0) {
		free(line);
		return;
	}
	if ((rc = emit_cert(d, line)) == TP_ENOMEM)
		oom();
	free(d->cert_line);
	d->cert_line = line;
}

/* Follows a changed self_certificate path: new watch, fresh announcement. */
static void
cert_path_changed(struct disc *d, const char *old)
{
	const char *cur = d->set.cert_path;

	if ((old == NULL && cur == NULL) ||
	    (old != NULL && cur != NULL && strcmp(old, cur) == 0))
		return;
	free(d->cert_line);
	d->cert_line = NULL;
	if (filewatch_set(&d->fw, SLOT_CERT, cur) == TP_ENOMEM)
		oom();
	reload_cert(d);
}

/*
 * Re-reads the proxies file.  A file that does not load, or whose set does
 * not fit in one line, is reported and otherwise ignored: the previous good
 * set stays in force.  An unchanged set is not announced again.
 */
static void
reload_proxies(struct disc *d)
{
	struct proxy_set nset, old;
	struct pf_error err;
	int rc;

	filewatch_loading(&d->fw, SLOT_PROXIES);
	if ((rc = proxies_file_load(d->path, &nset, &err)) != 0) {
		if (rc == TP_ENOMEM)
			oom();
		report_pf(d->path, &err);
		return;
	}
	if (d->set.n == 0 || !proxy_set_equal(&d->set, &nset)) {
		if ((rc = emit_proxies(d, &nset)) == TP_ENOMEM)
			oom();
		if (rc == TP_ETOOBIG) {
			report(d->path, 0, 0, "the set of %zu proxies does not "
			    "fit in one %d-byte line", nset.n,
			    DISCOVERY_LINE_MAX);
			proxy_set_free(&nset);
			return;
		}
	}
	old = d->set;
	d->set = nset;
	cert_path_changed(d, old.cert_path);
	proxy_set_free(&old);
}

/* Discards whatever the client sends; returns at EOF or a read error. */
static int
drain_stdin(void)
{
	char buf[512];
	ssize_t n;

	n = read(STDIN_FILENO, buf, sizeof(buf));
	if (n == -1 && (errno == EINTR || errno == EAGAIN))
		return 0;
	return n > 0 ? 0 : -1;
}

static int
poll_timeout(const struct disc *d, uint64_t now)
{
	uint64_t deadline = filewatch_deadline(&d->fw);

	if (d->next_hb < deadline)
		deadline = d->next_hb;
	if (deadline <= now)
		return 0;
	return deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

/* Runs due work: settled file changes, then the heartbeat and its poll. */
static void
run_due(struct disc *d, uint64_t now)
{
	if (filewatch_take(&d->fw, SLOT_PROXIES, now))
		reload_proxies(d);
	if (filewatch_take(&d->fw, SLOT_CERT, now))
		reload_cert(d);
	if (now < d->next_hb)
		return;
	if (emit_heartbeat(d) == TP_ENOMEM)
		oom();
	d->next_hb = now + (uint64_t)d->interval * 1000;
	filewatch_poll(&d->fw, now);
}

static void __attribute__((noreturn))
loop(struct disc *d)
{
	struct pollfd pfd[3];
	int n;

	for (;;) {
		run_due(d, tp_now_ms());
		pfd[0] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };
		/* No events: poll still reports POLLERR once the reader left. */
		pfd[1] = (struct pollfd){ .fd = STDOUT_FILENO, .events = 0 };
		pfd[2] = (struct pollfd){ .fd = d->fw.ifd, .events = POLLIN };
		n = poll(pfd, 3, poll_timeout(d, tp_now_ms()));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			fprintf(stderr, "%s: poll: %s\n", PROG, strerror(errno));
			exit(1);
		}
		if (pfd[1].revents & (POLLERR | POLLHUP | POLLNVAL))
			session_over();
		if (pfd[0].revents != 0 && drain_stdin() == -1)
			session_over();
		if (pfd[2].revents & POLLIN)
			filewatch_read(&d->fw, tp_now_ms());
	}
}

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: %s [-V] [-i seconds] -f proxies.yaml\n", PROG);
	exit(2);
}

static unsigned
parse_interval(const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 ||
	    v > DISCOVERY_INTERVAL_MAX) {
		fprintf(stderr, "%s: -i: want 1-%d seconds\n", PROG,
		    DISCOVERY_INTERVAL_MAX);
		exit(2);
	}
	return (unsigned)v;
}

int
main(int argc, char *argv[])
{
	static struct disc d;
	int ch;

	d.interval = INTERVAL_DEFAULT;
	while ((ch = getopt(argc, argv, "f:i:V")) != -1) {
		switch (ch) {
		case 'f':
			d.path = optarg;
			break;
		case 'i':
			d.interval = parse_interval(optarg);
			break;
		case 'V':
			printf("%s %s\n", PROG, TP_VERSION);
			return 0;
		default:
			usage();
		}
	}
	if (d.path == NULL || optind != argc)
		usage();
	/* Write errors are handled where they happen: EPIPE, not SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	openlog(PROG, LOG_PID, LOG_AUTH);
	if (filewatch_init(&d.fw) != 0)
		syslog(LOG_INFO, "inotify unavailable (%s); checking %s every "
		    "%u s", strerror(errno), d.path, d.interval);
	if (filewatch_set(&d.fw, SLOT_PROXIES, d.path) == TP_ENOMEM)
		oom();
	reload_proxies(&d);
	d.next_hb = tp_now_ms() + (uint64_t)d.interval * 1000;
	loop(&d);
}
