/*
 * Control-plane benchmark: the real supervisor/pool.c and tunnels.c,
 * without processes.  pool_ops record and never spawn.
 *
 *   pool_bench sync N REPS
 *       N desired endpoints (N clusters, one dial address each).  Times the
 *       first sync (N keys added, N spawns recorded), then -- with every
 *       agent marked spawned and connected -- a resync of the unchanged set
 *       (what every resync_interval costs), one pool_tick, a resync with 1%
 *       of the specs changed, and one with 1% removed.  Also the first sync
 *       under the default spawn limiter (20/s, burst 10).
 *   pool_bench parse N REPS DIR
 *       Tunnel file parsing: one buffer of N documents through
 *       tunnel_parse_buffer, then DIR filled with N files of one document
 *       each through tunnel_cache_reload (cold: every file parsed; warm:
 *       nothing changed, mtimes in the past), then the supervisor's sync
 *       path (desired set -> want array -> pool_sync) on that cache.
 *
 * Output: one JSON object per measurement, one a line, times in µs.
 */
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "supervisor/config.h"
#include "supervisor/pool.h"
#include "supervisor/tunnels.h"

static struct pool_agent **agents;
static size_t n_agents, cap_agents, n_closes;

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
op_spawn(void *arg, struct pool_agent *a)
{
	(void)arg;
	if (n_agents == cap_agents) {
		cap_agents = cap_agents ? cap_agents * 2 : 1024;
		agents = realloc(agents, cap_agents * sizeof(*agents));
		if (agents == NULL)
			abort();
	}
	agents[n_agents++] = a;
	return 0;
}

static void
op_close(void *arg, struct pool_agent *a, const char *reason)
{
	(void)arg;
	(void)a;
	(void)reason;
	n_closes++;
}

static void
op_claim(void *arg, struct pool_agent *a, bool granted, const char *reason)
{
	(void)arg;
	(void)a;
	(void)granted;
	(void)reason;
}

static const struct pool_ops ops = { op_spawn, op_close, op_claim, NULL };

static struct pool_config
pool_cfg(double rate, double burst)
{
	struct pool_config c = {
		.backoff_min_ms = 1000, .backoff_max_ms = 30000,
		.backoff_reset_ms = 30000, .max_inflight_dials = 3,
		.spawn_rate = rate, .spawn_burst = burst,
		.proxy_ttl_ms = 180000, .miss_retry_ms = 500,
	};
	return c;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
report(const char *what, size_t n, double *t, int reps)
{
	qsort(t, (size_t)reps, sizeof(*t), cmp_double);
	printf("{\"what\":\"%s\",\"n\":%zu,\"reps\":%d,\"median_us\":%.1f,"
	    "\"min_us\":%.1f,\"max_us\":%.1f}\n", what, n, reps,
	    t[reps / 2], t[0], t[reps - 1]);
	fflush(stdout);
}

/* Marks every recorded agent spawned and connected (a steady pool). */
static void
connect_all(struct pool *p, uint64_t now)
{
	struct msg_state st;

	memset(&st, 0, sizeof(st));
	st.state = AGENT_CONNECTED;
	for (size_t i = 0; i < n_agents; i++) {
		pool_agent_spawned(p, agents[i], (pid_t)(1000 + i), now);
		pool_agent_state(p, agents[i], &st, now);
	}
}

static int
cmd_sync(size_t n, int reps)
{
	struct pool_want *w = calloc(n, sizeof(*w));
	char (*names)[32] = calloc(n, sizeof(*names));
	char (*dials)[32] = calloc(n, sizeof(*dials));
	double *t = calloc((size_t)reps, sizeof(*t)), t0;
	struct pool_config cfg;
	struct pool *p;
	uint64_t now = 1000000;
	size_t pct = n / 100 ? n / 100 : 1;

	for (size_t i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "cluster-%07zu", i);
		snprintf(dials[i], sizeof(dials[i]), "10.%zu.%zu.%zu:22",
		    (i >> 16) & 255, (i >> 8) & 255, i & 255);
		w[i].cluster = names[i];
		w[i].dial_addr = dials[i];
		w[i].spec_hash = 0x9e3779b97f4a7c15ULL * (i + 1);
		w[i].discovery = false;
		w[i].tunnel = NULL;
	}

	/* Default limiter: the first sync adds every key, spawns a burst. */
	for (int r = 0; r < reps; r++) {
		cfg = pool_cfg(20, 10);
		if ((p = pool_new(&cfg, &ops, NULL, now)) == NULL)
			return 1;
		n_agents = 0;
		t0 = now_us();
		pool_sync(p, w, n, now);
		t[r] = now_us() - t0;
		pool_free(p);
	}
	report("first_sync_default_limiter", n, t, reps);

	/* Unlimited spawns: every key gets its agent. */
	cfg = pool_cfg(1e6, 1e6);
	if ((p = pool_new(&cfg, &ops, NULL, now)) == NULL)
		return 1;
	n_agents = 0;
	t0 = now_us();
	pool_sync(p, w, n, now);
	t[0] = now_us() - t0;
	report("first_sync_all_spawned", n, t, 1);
	connect_all(p, now);
	printf("{\"what\":\"agents\",\"n\":%zu,\"agents\":%zu}\n", n,
	    pool_nagents(p));

	for (int r = 0; r < reps; r++) {
		now += 1000;
		t0 = now_us();
		pool_sync(p, w, n, now);
		t[r] = now_us() - t0;
	}
	report("resync_unchanged", n, t, reps);

	for (int r = 0; r < reps; r++) {
		now += 1000;
		t0 = now_us();
		pool_tick(p, now);
		t[r] = now_us() - t0;
	}
	report("tick", n, t, reps);

	/* 1% of the specs change: new generations, replacement agents. */
	for (int r = 0; r < reps; r++) {
		for (size_t i = 0; i < pct; i++)
			w[(size_t)r * 7919 % n + i < n ? (size_t)r * 7919 % n +
			    i : i].spec_hash += 1;
		now += 1000;
		t0 = now_us();
		pool_sync(p, w, n, now);
		t[r] = now_us() - t0;
	}
	report("resync_1pct_changed", n, t, reps);

	/* 1% removed (the tail), then back. */
	for (int r = 0; r < reps; r++) {
		now += 1000;
		t0 = now_us();
		pool_sync(p, w, n - pct, now);
		t[r] = now_us() - t0;
		now += 1000;
		pool_sync(p, w, n, now);
	}
	report("resync_1pct_removed", n, t, reps);
	printf("{\"what\":\"closes\",\"n\":%zu,\"closes\":%zu}\n", n, n_closes);
	pool_free(p);
	free(w);
	free(names);
	free(dials);
	free(t);
	return 0;
}

static const char *
doc_text(char *buf, size_t cap, size_t i)
{
	snprintf(buf, cap,
	    "kind: reverse_tunnel\n"
	    "version: v2\n"
	    "metadata:\n"
	    "  name: t-%07zu\n"
	    "spec:\n"
	    "  cluster_name: cluster-%07zu\n"
	    "  dial_addrs:\n"
	    "    - \"proxy-%zu.example.net:2222\"\n"
	    "  forwards:\n"
	    "    - {listen: \"127.0.0.1:%zu\", target: \"127.0.0.1:22\"}\n"
	    "  discovery: true\n", i, i, i, 20000 + i % 40000);
	return buf;
}

static void
sync_from_cache(struct tunnel_cache *tc, struct pool *p, uint64_t now,
    struct pool_want **wp, size_t *capp)
{
	const struct tunnel *const *t;
	size_t n, m = 0, need = 0;

	/* The same loop as sup_sync() in supervisor/supervisor.c. */
	t = tunnel_cache_tunnels(tc, &n);
	for (size_t i = 0; i < n; i++)
		need += t[i]->n_dial_addrs;
	if (need > *capp) {
		*wp = realloc(*wp, need * sizeof(**wp));
		*capp = need;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < t[i]->n_dial_addrs; j++) {
			struct pool_want *w = &(*wp)[m++];

			w->cluster = t[i]->cluster_name;
			w->dial_addr = t[i]->dial_addrs[j];
			w->spec_hash = t[i]->spec_hash;
			w->discovery = t[i]->discovery != 0;
			w->tunnel = t[i];
		}
	pool_sync(p, *wp, m, now);
}

static int
cmd_parse(size_t n, int reps, const char *dir)
{
	char doc[1024], path[4096];
	size_t cap = n * 400 + 16, len = 0;
	char *buf = malloc(cap);
	double *t = calloc((size_t)reps, sizeof(*t)), t0;
	struct cfg_errors errs;
	struct tunnel_cache *tc;
	struct timeval old[2];
	struct pool_config cfg;
	struct pool_want *w = NULL;
	size_t wcap = 0;
	struct pool *p;

	cfg_errors_init(&errs);
	for (size_t i = 0; i < n; i++) {
		size_t l;

		doc_text(doc, sizeof(doc), i);
		l = strlen(doc);
		if (i > 0) {
			memcpy(buf + len, "---\n", 4);
			len += 4;
		}
		memcpy(buf + len, doc, l);
		len += l;
	}
	buf[len] = '\0';
	/* The parser refuses files over TUNNEL_MAX_FILE: say so, go on. */
	for (int r = 0; len <= TUNNEL_MAX_FILE && r < reps; r++) {
		struct tunnel_list tl = { NULL, 0, 0 };
		size_t ne;

		t0 = now_us();
		ne = tunnel_parse_buffer("bench.yaml", buf, len, &tl, &errs);
		t[r] = now_us() - t0;
		if (ne != 0 || tl.n != n) {
			fprintf(stderr, "parse: %zu errors, %zu tunnels: %s\n",
			    ne, tl.n, cfg_errors_first(&errs));
			return 1;
		}
		tunnel_list_free(&tl);
	}
	if (len <= TUNNEL_MAX_FILE)
		report("parse_one_file_n_docs", n, t, reps);
	else
		printf("{\"what\":\"parse_one_file_n_docs\",\"n\":%zu,"
		    "\"skipped\":\"%zu bytes is over the %d-byte file limit\"}\n",
		    n, len, TUNNEL_MAX_FILE);
	printf("{\"what\":\"one_file_bytes\",\"n\":%zu,\"bytes\":%zu}\n", n,
	    len);

	/* N files of one document each, mtimes an hour back. */
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		return 1;
	gettimeofday(&old[0], NULL);
	old[0].tv_sec -= 3600;
	old[1] = old[0];
	for (size_t i = 0; i < n; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/t-%07zu.yaml", dir, i);
		doc_text(doc, sizeof(doc), i);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, doc, strlen(doc)) < 0)
			return 1;
		close(fd);
		utimes(path, old);
	}
	for (int r = 0; r < reps; r++) {
		tc = tunnel_cache_new();
		t0 = now_us();
		if (tunnel_cache_reload(tc, dir, &errs) != 0) {
			fprintf(stderr, "reload: %s\n", cfg_errors_first(&errs));
			return 1;
		}
		t[r] = now_us() - t0;
		tunnel_cache_free(tc);
	}
	report("cache_reload_cold_n_files", n, t, reps);

	tc = tunnel_cache_new();
	tunnel_cache_reload(tc, dir, &errs);
	for (int r = 0; r < reps; r++) {
		t0 = now_us();
		tunnel_cache_reload(tc, dir, &errs);
		t[r] = now_us() - t0;
	}
	report("cache_reload_warm_n_files", n, t, reps);

	cfg = pool_cfg(1e6, 1e6);
	if ((p = pool_new(&cfg, &ops, NULL, 1000)) == NULL)
		return 1;
	n_agents = 0;
	sync_from_cache(tc, p, 1000, &w, &wcap);
	connect_all(p, 1000);
	for (int r = 0; r < reps; r++) {
		t0 = now_us();
		sync_from_cache(tc, p, 2000 + (uint64_t)r, &w, &wcap);
		t[r] = now_us() - t0;
	}
	report("sup_sync_path_unchanged", n, t, reps);
	for (int r = 0; r < reps; r++) {
		t0 = now_us();
		tunnel_cache_reload(tc, dir, &errs);
		sync_from_cache(tc, p, 3000 + (uint64_t)r, &w, &wcap);
		t[r] = now_us() - t0;
	}
	report("resync_interval_total", n, t, reps);
	pool_free(p);
	tunnel_cache_free(tc);
	cfg_errors_free(&errs);
	free(buf);
	free(w);
	free(t);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "sync") == 0)
		return cmd_sync(strtoul(argv[2], NULL, 10), atoi(argv[3]));
	if (argc == 5 && strcmp(argv[1], "parse") == 0)
		return cmd_parse(strtoul(argv[2], NULL, 10), atoi(argv[3]),
		    argv[4]);
	fprintf(stderr, "usage: pool_bench sync N REPS | parse N REPS DIR\n");
	return 2;
}
