#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ctlclient.h"

#define REPLY_MAX	(16 * 1024 * 1024)

int
ctlclient_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "tunnelpool: %s: path too long\n", path);
		return -1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		fprintf(stderr, "tunnelpool: socket: %s\n", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		if (errno == EACCES || errno == EPERM)
			fprintf(stderr, "tunnelpool: %s: permission denied (root "
			    "or members of control_group only)\n", path);
		else
			fprintf(stderr, "tunnelpool: cannot reach the supervisor "
			    "at %s: %s (is it running?)\n", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads up to the first newline; returns a malloc'd string or NULL. */
static char *
read_line(int fd)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap), *nl;
	ssize_t n;

	while (buf != NULL) {
		if (len + 1 >= cap) {
			char *nb = cap < REPLY_MAX ? realloc(buf, cap *= 2) : NULL;

			if (nb == NULL)
				break;
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		if ((nl = memchr(buf, '\n', len)) != NULL) {
			*nl = '\0';
			return buf;
		}
	}
	free(buf);
	return NULL;
}

json_t *
ctlclient_call(const char *path, const json_t *req)
{
	char *s = json_dumps(req, JSON_COMPACT), *line;
	json_error_t jerr;
	json_t *ans = NULL;
	int fd = ctlclient_connect(path), werr = 0;

	if (fd < 0 || s == NULL)
		goto out;
	/*
	 * A refused peer is answered and closed at once, so the request may
	 * meet EPIPE (no SIGPIPE: MSG_NOSIGNAL) while the refusal waits to be
	 * read: read it before reporting the write error.
	 */
	if (send(fd, s, strlen(s), MSG_NOSIGNAL) < 0 ||
	    send(fd, "\n", 1, MSG_NOSIGNAL) < 0)
		werr = errno;
	if ((line = read_line(fd)) == NULL) {
		if (werr != 0)
			fprintf(stderr, "tunnelpool: write to %s: %s\n", path,
			    strerror(werr));
		else
			fprintf(stderr, "tunnelpool: no answer from the "
			    "supervisor\n");
		goto out;
	}
	ans = json_loads(line, 0, &jerr);
	if (ans == NULL)
		fprintf(stderr, "tunnelpool: bad answer: %s\n", jerr.text);
	free(line);
out:
	free(s);
	if (fd >= 0)
		close(fd);
	return ans;
}

void
ctlclient_bytes(char *buf, size_t len, double v)
{
	const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
}

static const char *
str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s != NULL ? s : "";
}

static long long
num(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void
print_agent(json_t *a)
{
	json_t *px = json_object_get(a, "proxy");
	char rx[32], tx[32], proxy[96], pid[24];
	const char *fp = str(px, "host_key");

	ctlclient_bytes(rx, sizeof(rx), (double)num(a, "rx_bytes"));
	ctlclient_bytes(tx, sizeof(tx), (double)num(a, "tx_bytes"));
	snprintf(proxy, sizeof(proxy), "%s %.14s", str(px, "name"),
	    strncmp(fp, "SHA256:", 7) == 0 ? fp + 7 : fp);
	/* pid 0: a key waiting for its next agent (backoff, limiter). */
	if (num(a, "pid") > 0)
		snprintf(pid, sizeof(pid), "%lld", num(a, "pid"));
	else
		snprintf(pid, sizeof(pid), "-");
	printf("%-16s %-24s %-24s %-13s %7s %7llds %5lld %6lld %10s %10s %s\n",
	    str(a, "cluster"), str(a, "dial_addr"), proxy, str(a, "state"),
	    pid, num(a, "since_s"), num(a, "reconnects"),
	    num(a, "channels"), rx, tx, str(a, "last_error"));
}

/* One line for the tunnel source; etcd adds revision, restarts, snapshot. */
static void
print_source(json_t *ts)
{
	const char *err = str(ts, "last_error");

	if (ts == NULL)
		return;
	printf("tunnel source %s %s: %s", str(ts, "type"), str(ts, "endpoint"),
	    json_is_true(json_object_get(ts, "healthy")) ? "healthy" :
	    "UNHEALTHY");
	if (strcmp(str(ts, "type"), "etcd") == 0) {
		printf(", revision %lld, %lld keys (%lld rejected), %lld watch "
		    "restarts", num(ts, "revision"), num(ts, "keys"),
		    num(ts, "bad_keys"), num(ts, "watch_restarts"));
		if (num(ts, "snapshot_age_s") >= 0)
			printf(", snapshot %llds old", num(ts, "snapshot_age_s"));
		if (json_is_true(json_object_get(ts, "from_snapshot")))
			printf(", RUNNING FROM THE SNAPSHOT");
	}
	printf("%s%s\n", err[0] ? "; last error: " : "", err);
}

/* The wanted sets: one row per proxy, with where it came from and when. */
static void
print_wanted(json_t *clusters)
{
	json_t *c, *w;
	size_t i, j;
	bool head = false;

	json_array_foreach(clusters, i, c) {
		json_array_foreach(json_object_get(c, "wanted"), j, w) {
			const char *fp = str(w, "host_key");

			if (!head)
				printf("\n%-16s %-24s %-16s %-16s %-7s %-16s "
				    "%7s\n", "CLUSTER", "DIAL ADDR", "WANTED",
				    "HOST KEY", "CLAIMED", "SOURCE", "AGE");
			head = true;
			printf("%-16s %-24s %-16s %-16.14s %-7s %-16s %6llds%s\n",
			    str(c, "name"), str(w, "dial_addr"), str(w, "name"),
			    strncmp(fp, "SHA256:", 7) == 0 ? fp + 7 : fp,
			    json_is_true(json_object_get(w, "claimed")) ? "yes" :
			    "no", str(w, "source"), num(w, "age_s"),
			    json_is_true(json_object_get(w, "current")) ? "" :
			    " (remembered)");
		}
	}
}

int
ctlclient_status(const char *path, int as_json)
{
	json_t *req = json_pack("{s:s}", "cmd", "status"), *st, *v;
	json_t *sup;
	size_t i;

	st = ctlclient_call(path, req);
	json_decref(req);
	if (st == NULL)
		return 1;
	/* A refusal ({"ok":false,...}) is not a status document. */
	if (json_is_false(json_object_get(st, "ok"))) {
		fprintf(stderr, "tunnelpool: %s\n", str(st, "error"));
		json_decref(st);
		return 1;
	}
	if (as_json) {
		json_dumpf(st, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		putchar('\n');
		json_decref(st);
		return 0;
	}
	sup = json_object_get(st, "supervisor");
	printf("supervisor pid %lld, up %llds, %lld workers, config %s%s%s\n",
	    num(sup, "pid"), num(sup, "uptime_s"), num(sup, "workers"),
	    json_is_true(json_object_get(sup, "config_ok")) ? "ok" : "BROKEN",
	    json_is_true(json_object_get(sup, "config_ok")) ? "" : ": ",
	    str(sup, "config_error"));
	print_source(json_object_get(st, "tunnel_source"));
	printf("%-16s %-24s %-24s %-13s %7s %8s %5s %6s %10s %10s %s\n",
	    "CLUSTER", "DIAL ADDR", "PROXY", "STATE", "PID", "UPTIME",
	    "RECON", "CHANS", "RX", "TX", "LAST ERROR");
	json_array_foreach(json_object_get(st, "agents"), i, v)
		print_agent(v);
	printf("\n%-16s %9s %7s %6s %7s %6s %8s  %s\n", "CLUSTER", "ANNOUNCED",
	    "CLAIMED", "DIALS", "MISSES", "REFUSED", "RETRY", "STATES");
	json_array_foreach(json_object_get(st, "clusters"), i, v) {
		json_t *s = json_object_get(v, "states");

		printf("%-16s %9lld %7lld %6lld %7lld %6lld %7.1fs  "
		    "connecting=%lld discovering=%lld connected=%lld "
		    "discovered=%lld disconnected=%lld\n",
		    str(v, "name"), num(v, "proxies_announced"),
		    num(v, "proxies_claimed"), num(v, "dials"),
		    num(v, "discovery_misses"), num(v, "claims_refused"),
		    (double)num(v, "discovery_retry_in_ms") / 1000.0,
		    num(s, "connecting"), num(s, "discovering"),
		    num(s, "connected"), num(s, "discovered"),
		    num(s, "disconnected"));
	}
	print_wanted(json_object_get(st, "clusters"));
	json_decref(st);
	return 0;
}
