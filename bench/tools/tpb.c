/*
 * tpb: the traffic ends of the benchmarks, in C so that the load generator
 * costs next to nothing next to the tunnel it measures.
 *
 *   tpb server sink|echo|source PORT
 *       Listens on 127.0.0.1:PORT (0 = any free port), prints "port N" on
 *       stdout, serves each connection in its own thread.  sink: reads and
 *       discards until EOF, then writes the byte count (8 bytes, big
 *       endian) and closes.  echo: writes back what it reads.  source:
 *       reads a byte count (8 bytes, big endian), writes that many bytes,
 *       half-closes, reads until EOF and closes.
 *   tpb blast HOST PORT BYTES NCONN
 *       Opens NCONN connections at once, pushes BYTES/NCONN through each,
 *       half-closes, waits for the sink's count.  Prints one JSON line
 *       {"seconds":S,"bytes":B,"conns":N}.  Exit 1 on a short count.
 *   tpb pull HOST PORT BYTES NCONN
 *       The other direction, from a source: opens NCONN connections, asks
 *       each for BYTES/NCONN, reads until EOF.  Same JSON line; exit 1 if
 *       a connection got fewer or more bytes than it asked for.
 *   tpb ping HOST PORT COUNT SIZE [WARMUP]
 *       One connection, TCP_NODELAY; COUNT request/response round trips of
 *       SIZE bytes to an echo.  Prints each round trip time in ns, one a
 *       line.
 *   tpb lag SECONDS
 *       The machine's share of event-loop lag: a 100 ms timer measured the
 *       way the supervisor measures its own (lateness of each expiry, the
 *       next one armed from "now"), for SECONDS.  Prints the cumulative
 *       histogram as JSON, same buckets as the supervisor's loop_lag.
 */
#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ	(256 * 1024)

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void
die(const char *what)
{
	fprintf(stderr, "tpb: %s: %s\n", what, strerror(errno));
	exit(2);
}

static int
write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
read_all(int fd, void *p, size_t n)
{
	char *c = p;

	while (n > 0) {
		ssize_t r = read(fd, c, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c += r;
		n -= (size_t)r;
	}
	return 0;
}

/* The byte counts on the wire: 8 bytes, big endian. */
static void
put_count(unsigned char cnt[8], uint64_t v)
{
	for (int i = 0; i < 8; i++)
		cnt[i] = (unsigned char)(v >> (56 - 8 * i));
}

static uint64_t
get_count(const unsigned char cnt[8])
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | cnt[i];
	return v;
}

/* --- server ---------------------------------------------------------------- */

static int echo_mode, source_mode;

/* The payload of blast and source: not zeros (nothing on the path
 * compresses, but stay honest). */
static void
fill(char *buf)
{
	for (size_t i = 0; i < BUFSZ; i++)
		buf[i] = (char)(i * 2654435761u >> 13);
}

/* The sending side of blast and source: left bytes of fill()ed buf, then
 * the write side half-closed.  -1 if a write failed. */
static int
push(int fd, char *buf, uint64_t left)
{
	fill(buf);
	while (left > 0) {
		size_t n = left < BUFSZ ? (size_t)left : BUFSZ;

		if (write_all(fd, buf, n) != 0)
			return -1;
		left -= n;
	}
	shutdown(fd, SHUT_WR);
	return 0;
}

/* source: the count asked for, then that many bytes, then drain. */
static void
serve_source(int fd, char *buf)
{
	unsigned char cnt[8];

	if (read_all(fd, cnt, sizeof(cnt)) != 0 ||
	    push(fd, buf, get_count(cnt)) != 0)
		return;
	while (read(fd, buf, BUFSZ) > 0)
		;
}

static void *
serve(void *arg)
{
	int fd = (int)(intptr_t)arg, one = 1;
	char *buf = malloc(BUFSZ);
	uint64_t total = 0;
	unsigned char cnt[8];
	ssize_t r;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (source_mode) {
		if (buf != NULL)
			serve_source(fd, buf);
		close(fd);
		free(buf);
		return NULL;
	}
	while (buf != NULL && (r = read(fd, buf, BUFSZ)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		total += (uint64_t)r;
		if (echo_mode && write_all(fd, buf, (size_t)r) != 0)
			break;
	}
	if (!echo_mode) {
		put_count(cnt, total);
		(void)write_all(fd, cnt, sizeof(cnt));
	}
	shutdown(fd, SHUT_WR);
	close(fd);
	free(buf);
	return NULL;
}

static int
cmd_server(int argc, char **argv)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int ls, one = 1;

	if (argc != 2)
		return 2;
	echo_mode = strcmp(argv[0], "echo") == 0;
	source_mode = strcmp(argv[0], "source") == 0;
	if ((ls = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		die("socket");
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)atoi(argv[1]));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("bind");
	if (listen(ls, 1024) < 0)
		die("listen");
	getsockname(ls, (struct sockaddr *)&sa, &sl);
	printf("port %d\n", ntohs(sa.sin_port));
	fflush(stdout);
	for (;;) {
		pthread_t th;
		pthread_attr_t at;
		int fd = accept(ls, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&at, 256 * 1024);
		if (pthread_create(&th, &at, serve, (void *)(intptr_t)fd) != 0)
			close(fd);
		pthread_attr_destroy(&at);
	}
}

/* --- clients --------------------------------------------------------------- */

static int
dial(const char *host, int port)
{
	struct sockaddr_in sa;
	int fd, one = 1;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "tpb: bad address %s\n", host);
		exit(2);
	}
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
		die("socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect");
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

struct blast {
	int		 fd;
	uint64_t	 bytes;
	uint64_t	 got;
	int		 ok;
};

static void *
blast_one(void *arg)
{
	struct blast *b = arg;
	char *buf = malloc(BUFSZ);
	unsigned char cnt[8];

	if (buf == NULL)
		return NULL;
	if (push(b->fd, buf, b->bytes) != 0 ||
	    read_all(b->fd, cnt, sizeof(cnt)) != 0)
		goto out;
	b->got = get_count(cnt);
	b->ok = b->got == b->bytes;
out:
	close(b->fd);
	free(buf);
	return NULL;
}

/* pull: ask the source for b->bytes, count what arrives until EOF. */
static void *
pull_one(void *arg)
{
	struct blast *b = arg;
	char *buf = malloc(BUFSZ);
	unsigned char cnt[8];
	ssize_t r;

	if (buf == NULL)
		return NULL;
	put_count(cnt, b->bytes);
	if (write_all(b->fd, cnt, sizeof(cnt)) != 0)
		goto out;
	while ((r = read(b->fd, buf, BUFSZ)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		b->got += (uint64_t)r;
	}
	b->ok = b->got == b->bytes;
out:
	close(b->fd);
	free(buf);
	return NULL;
}

/* blast or pull (one: the thread run per connection). */
static int
cmd_transfer(int argc, char **argv, void *(*one)(void *))
{
	uint64_t total, t0, t1;
	struct blast *b;
	pthread_t *th;
	int n, ok = 1;

	if (argc != 4)
		return 2;
	total = strtoull(argv[2], NULL, 10);
	n = atoi(argv[3]);
	if (n < 1 || n > 1024)
		return 2;
	b = calloc((size_t)n, sizeof(*b));
	th = calloc((size_t)n, sizeof(*th));
	t0 = now_ns();
	for (int i = 0; i < n; i++) {
		b[i].fd = dial(argv[0], atoi(argv[1]));
		b[i].bytes = total / (uint64_t)n +
		    (i == 0 ? total % (uint64_t)n : 0);
	}
	for (int i = 0; i < n; i++)
		pthread_create(&th[i], NULL, one, &b[i]);
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		if (!b[i].ok) {
			fprintf(stderr, "tpb: conn %d: %llu of %llu bytes\n", i,
			    (unsigned long long)b[i].got,
			    (unsigned long long)b[i].bytes);
			ok = 0;
		}
	}
	t1 = now_ns();
	printf("{\"seconds\":%.6f,\"bytes\":%llu,\"conns\":%d,\"ok\":%s}\n",
	    (double)(t1 - t0) / 1e9, (unsigned long long)total, n,
	    ok ? "true" : "false");
	return ok ? 0 : 1;
}

static int
cmd_ping(int argc, char **argv)
{
	int fd, count, size, warm;
	char *buf, *rbuf;
	uint64_t *rtt;

	if (argc < 4)
		return 2;
	count = atoi(argv[2]);
	size = atoi(argv[3]);
	warm = argc > 4 ? atoi(argv[4]) : 50;
	if (count < 1 || size < 1 || size > BUFSZ || warm < 0)
		return 2;
	buf = malloc((size_t)size);
	rbuf = malloc((size_t)size);
	rtt = calloc((size_t)count, sizeof(*rtt));
	memset(buf, 'x', (size_t)size);
	fd = dial(argv[0], atoi(argv[1]));
	for (int i = -warm; i < count; i++) {
		uint64_t t0 = now_ns();

		if (write_all(fd, buf, (size_t)size) != 0 ||
		    read_all(fd, rbuf, (size_t)size) != 0) {
			fprintf(stderr, "tpb: ping %d failed\n", i);
			return 1;
		}
		if (i >= 0)
			rtt[i] = now_ns() - t0;
	}
	close(fd);
	for (int i = 0; i < count; i++)
		printf("%llu\n", (unsigned long long)rtt[i]);
	return 0;
}

static const uint64_t lag_bounds_us[] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
	250000, 500000, 1000000, 2500000,
};
#define NLAG	(sizeof(lag_bounds_us) / sizeof(lag_bounds_us[0]))

static int
cmd_lag(int argc, char **argv)
{
	uint64_t count[NLAG + 1] = { 0 }, end, expected, now, lag, sum = 0, cum;
	size_t b;

	if (argc != 1)
		return 2;
	end = now_ns() + (uint64_t)(atof(argv[0]) * 1e9);
	expected = now_ns() + 100000000ULL;
	while ((now = now_ns()) < end) {
		if (now < expected) {
			struct timespec ts;

			ts.tv_sec = (time_t)((expected - now) / 1000000000ULL);
			ts.tv_nsec = (long)((expected - now) % 1000000000ULL);
			ppoll(NULL, 0, &ts, NULL);
			continue;
		}
		lag = (now - expected) / 1000;
		for (b = 0; b < NLAG && lag > lag_bounds_us[b]; b++)
			;
		count[b]++;
		sum += lag;
		expected = now + 100000000ULL;
	}
	printf("{\"sum_us\":%llu,\"buckets\":[", (unsigned long long)sum);
	cum = 0;
	for (b = 0; b <= NLAG; b++) {
		cum += count[b];
		printf("%s{\"le_us\":%lld,\"count\":%llu}", b ? "," : "",
		    b < NLAG ? (long long)lag_bounds_us[b] : -1LL,
		    (unsigned long long)cum);
	}
	printf("]}\n");
	return 0;
}

int
main(int argc, char **argv)
{
	int rc = 2;

	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && strcmp(argv[1], "server") == 0)
		rc = cmd_server(argc - 2, argv + 2);
	else if (argc >= 2 && strcmp(argv[1], "blast") == 0)
		rc = cmd_transfer(argc - 2, argv + 2, blast_one);
	else if (argc >= 2 && strcmp(argv[1], "pull") == 0)
		rc = cmd_transfer(argc - 2, argv + 2, pull_one);
	else if (argc >= 2 && strcmp(argv[1], "ping") == 0)
		rc = cmd_ping(argc - 2, argv + 2);
	else if (argc >= 2 && strcmp(argv[1], "lag") == 0)
		rc = cmd_lag(argc - 2, argv + 2);
	if (rc == 2)
		fprintf(stderr, "usage: tpb server sink|echo|source PORT | "
		    "blast|pull HOST PORT BYTES NCONN | ping HOST PORT COUNT "
		    "SIZE [WARMUP] | lag SECONDS\n");
	return rc;
}
