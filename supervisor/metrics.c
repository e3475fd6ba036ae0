#include <sys/resource.h>
#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "common/addr.h"
#include "common/log.h"
#include "common/tptime.h"
#include "config.h"
#include "metrics.h"
#include "pool.h"
#include "signer.h"
#include "status.h"
#include "sup.h"

struct metrics {
	struct sup		*sup;
	struct evhttp		*http;
};

/* Label values are escaped as the exposition format requires. */
static void
put_label(struct evbuffer *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			evbuffer_add_printf(b, "\\%c", *v);
		else if (*v == '\n')
			evbuffer_add(b, "\\n", 2);
		else
			evbuffer_add(b, v, 1);
	}
}

static void
header(struct evbuffer *b, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
	    type);
}

/* A sample with one label; value as an unsigned integer. */
static void
sample1(struct evbuffer *b, const char *name, const char *l, const char *v,
    unsigned long long val)
{
	evbuffer_add_printf(b, "%s{%s=\"", name, l);
	put_label(b, v);
	evbuffer_add_printf(b, "\"} %llu\n", val);
}

/* A per-cluster sample with a second, fixed label (a state, a kind). */
static void
sample2(struct evbuffer *b, const char *name, const char *cluster,
    const char *l2, const char *v2, unsigned long long val)
{
	evbuffer_add_printf(b, "%s{cluster=\"", name);
	put_label(b, cluster);
	evbuffer_add_printf(b, "\",%s=\"%s\"} %llu\n", l2, v2, val);
}

/*
 * One series per proxy of each wanted set: seconds since a list naming it
 * was heard.  host_key keeps series unique (names need not be).
 */
static void
render_wanted(struct evbuffer *b, struct cluster_sum *v, size_t n)
{
	uint64_t now = tp_now_ms();

	header(b, "tunnelpool_discovery_wanted_age_seconds", "gauge",
	    "Proxies of the wanted set: seconds since a list naming them was "
	    "heard (source: the list naming it longest).");
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < v[i].n_dkeys; j++) {
			const struct pool_key *k = v[i].dkeys[j];

			for (uint32_t e = 0; e < k->set.n; e++) {
				const struct wanted_proxy *px = &k->set.v[e];

				evbuffer_add_printf(b, "tunnelpool_discovery_"
				    "wanted_age_seconds{cluster=\"");
				put_label(b, v[i].name);
				evbuffer_add_printf(b, "\",dial_addr=\"");
				put_label(b, k->dial_addr);
				evbuffer_add_printf(b, "\",proxy=\"");
				put_label(b, px->name);
				evbuffer_add_printf(b, "\",host_key=\"");
				put_label(b, px->fp);
				evbuffer_add_printf(b, "\",source=\"");
				put_label(b, px->source_name[0] != '\0' ?
				    px->source_name : px->source_fp);
				evbuffer_add_printf(b, "\",current=\"%s\"} %.3f\n",
				    px->current ? "true" : "false",
				    now > px->last_seen_ms ? (double)(now -
				    px->last_seen_ms) / 1000.0 : 0.0);
			}
		}
}

static void
render_clusters(struct evbuffer *b, struct cluster_sum *v, size_t n)
{
	header(b, "tunnelpool_agents", "gauge", "Agents per cluster and state.");
	for (size_t i = 0; i < n; i++)
		for (uint32_t s = 1; s <= AGENT_STATE_MAX; s++)
			sample2(b, "tunnelpool_agents", v[i].name, "state",
			    agent_state_name(s), v[i].states[s]);
	header(b, "tunnelpool_agent_connects_total", "counter",
	    "Agents that reached connected or discovered.");
	for (size_t i = 0; i < n; i++)
		sample1(b, "tunnelpool_agent_connects_total", "cluster", v[i].name,
		    v[i].connects);
	header(b, "tunnelpool_discovery_proxies", "gauge",
	    "Proxies announced on discovery streams and claimed by an agent.");
	for (size_t i = 0; i < n; i++) {
		sample2(b, "tunnelpool_discovery_proxies", v[i].name, "kind",
		    "announced", v[i].announced);
		sample2(b, "tunnelpool_discovery_proxies", v[i].name, "kind",
		    "claimed", v[i].claimed);
	}
	header(b, "tunnelpool_discovery_misses_total", "counter",
	    "Dials that landed on a proxy they may not claim (already claimed "
	    "or not wanted).");
	for (size_t i = 0; i < n; i++)
		sample1(b, "tunnelpool_discovery_misses_total", "cluster",
		    v[i].name, v[i].misses);
	header(b, "tunnelpool_discovery_claims_refused_total", "counter",
	    "Claims the supervisor refused.");
	for (size_t i = 0; i < n; i++)
		sample1(b, "tunnelpool_discovery_claims_refused_total",
		    "cluster", v[i].name, v[i].refused);
	header(b, "tunnelpool_agent_dials_total", "counter",
	    "Agents started, each a dial to the proxy address (rate: dials "
	    "per second).");
	for (size_t i = 0; i < n; i++)
		sample1(b, "tunnelpool_agent_dials_total", "cluster", v[i].name,
		    v[i].dials);
	header(b, "tunnelpool_discovery_retry_seconds", "gauge",
	    "Time until the next discovery dial may start (miss pacing, "
	    "backoff).");
	for (size_t i = 0; i < n; i++) {
		evbuffer_add_printf(b, "tunnelpool_discovery_retry_seconds"
		    "{cluster=\"");
		put_label(b, v[i].name);
		evbuffer_add_printf(b, "\"} %.3f\n",
		    (double)v[i].disc_retry_ms / 1000.0);
	}
	header(b, "tunnelpool_discovery_lagging", "gauge",
	    "1 while a tunnel of the cluster holds a proxy on its way out "
	    "and probes the balancer one dial at a time (lag pacing).");
	for (size_t i = 0; i < n; i++)
		sample1(b, "tunnelpool_discovery_lagging", "cluster", v[i].name,
		    v[i].lagging ? 1 : 0);
	render_wanted(b, v, n);
	header(b, "tunnelpool_forward_channels", "gauge",
	    "Forwarded channels open now.");
	for (size_t i = 0; i < n; i++)
		sample1(b, "tunnelpool_forward_channels", "cluster", v[i].name,
		    v[i].ch_open);
	header(b, "tunnelpool_forward_channels_total", "counter",
	    "Forwarded channels accepted.");
	for (size_t i = 0; i < n; i++)
		sample1(b, "tunnelpool_forward_channels_total", "cluster",
		    v[i].name, v[i].ch_total);
	header(b, "tunnelpool_tunnel_bytes_total", "counter",
	    "Payload bytes through the tunnels (rx: from the proxy).");
	for (size_t i = 0; i < n; i++) {
		sample2(b, "tunnelpool_tunnel_bytes_total", v[i].name,
		    "direction", "rx", v[i].rx);
		sample2(b, "tunnelpool_tunnel_bytes_total", v[i].name,
		    "direction", "tx", v[i].tx);
	}
	header(b, "tunnelpool_dial_failures_total", "counter",
	    "Local target dials that failed.");
	for (size_t i = 0; i < n; i++)
		sample1(b, "tunnelpool_dial_failures_total", "cluster", v[i].name,
		    v[i].dial_fail);
}

static void
render_lag(struct evbuffer *b, const struct sup *sup)
{
	uint64_t cum = 0;

	header(b, "tunnelpool_loop_lag_seconds", "histogram",
	    "Lateness of the supervisor's 100 ms timer: event-loop lag.");
	for (int i = 0; i < LAG_BUCKETS; i++) {
		cum += sup->counters.lag_count[i];
		evbuffer_add_printf(b, "tunnelpool_loop_lag_seconds_bucket"
		    "{le=\"%g\"} %llu\n", (double)lag_bounds_us[i] / 1e6,
		    (unsigned long long)cum);
	}
	cum += sup->counters.lag_count[LAG_BUCKETS];
	evbuffer_add_printf(b, "tunnelpool_loop_lag_seconds_bucket{le=\"+Inf\"} "
	    "%llu\ntunnelpool_loop_lag_seconds_sum %.6f\n"
	    "tunnelpool_loop_lag_seconds_count %llu\n", (unsigned long long)cum,
	    (double)sup->counters.lag_sum_us / 1e6, (unsigned long long)cum);
}

static void
render_process(struct evbuffer *b, const struct sup *sup)
{
	struct self_usage u;
	struct rusage ru;
	struct rlimit rl;

	getrusage(RUSAGE_SELF, &ru);
	header(b, "process_cpu_seconds_total", "counter",
	    "User and system CPU time spent in seconds.");
	evbuffer_add_printf(b, "process_cpu_seconds_total %.3f\n",
	    (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	/* Unreadable figures are exported as 0, never as a negative gauge. */
	status_self_usage(&u);
	header(b, "process_resident_memory_bytes", "gauge",
	    "Resident memory size in bytes.");
	evbuffer_add_printf(b, "process_resident_memory_bytes %lld\n",
	    u.rss_bytes > 0 ? u.rss_bytes : 0);
	header(b, "process_virtual_memory_bytes", "gauge",
	    "Virtual memory size in bytes.");
	evbuffer_add_printf(b, "process_virtual_memory_bytes %lld\n",
	    u.vsz_bytes > 0 ? u.vsz_bytes : 0);
	header(b, "process_open_fds", "gauge", "Number of open file descriptors.");
	evbuffer_add_printf(b, "process_open_fds %lld\n",
	    u.open_fds > 0 ? u.open_fds : 0);
	getrlimit(RLIMIT_NOFILE, &rl);
	header(b, "process_max_fds", "gauge",
	    "Maximum number of open file descriptors.");
	evbuffer_add_printf(b, "process_max_fds %llu\n",
	    (unsigned long long)rl.rlim_cur);
	header(b, "process_start_time_seconds", "gauge",
	    "Start time of the process since unix epoch in seconds.");
	evbuffer_add_printf(b, "process_start_time_seconds %.3f\n",
	    (double)sup->started_wall_ms / 1000.0);
}

/*
 * Two exit reasons share a name ("sandbox violation": the worker's own
 * trap-mode report and a SIGSYS kill), and a series may appear only once:
 * each name is emitted at its first index with the sum over all of them.
 */
static void
render_exits(struct evbuffer *b, const struct sup *sup)
{
	header(b, "tunnelpool_worker_exits_total", "counter",
	    "Worker exits by reason.");
	for (int r = 0; r < SUP_EXIT_REASONS; r++) {
		const char *name = sup_reason_name(r);
		unsigned long long n = 0;
		int first = r;

		for (int o = 0; o < SUP_EXIT_REASONS; o++)
			if (strcmp(sup_reason_name(o), name) == 0) {
				if (o < first)
					first = o;
				n += sup->counters.exits[o];
			}
		if (first == r)
			sample1(b, "tunnelpool_worker_exits_total", "reason",
			    name, n);
	}
}

static void
render_supervisor(struct evbuffer *b, struct sup *sup)
{
	render_exits(b, sup);
	header(b, "tunnelpool_signer_refusals_total", "counter",
	    "Sign requests the signer refused.");
	evbuffer_add_printf(b, "tunnelpool_signer_refusals_total %llu\n",
	    (unsigned long long)signer_refusals(sup->signer));
	header(b, "tunnelpool_signatures_total", "counter",
	    "User-auth requests the signer signed.");
	evbuffer_add_printf(b, "tunnelpool_signatures_total %llu\n",
	    (unsigned long long)signer_signatures(sup->signer));
	header(b, "tunnelpool_dials_rate_limited_total", "counter",
	    "Target dials refused: over worker.dial_rate.");
	evbuffer_add_printf(b, "tunnelpool_dials_rate_limited_total %llu\n",
	    (unsigned long long)sup->counters.dials_rate_limited);
	header(b, "tunnelpool_worker_log_lines_suppressed_total", "counter",
	    "Worker log lines dropped by the per-worker rate limit.");
	evbuffer_add_printf(b,
	    "tunnelpool_worker_log_lines_suppressed_total %llu\n",
	    (unsigned long long)sup->counters.worker_log_suppressed);
	header(b, "tunnelpool_sandbox_violations_total", "counter",
	    "Workers killed by the seccomp filter.");
	evbuffer_add_printf(b, "tunnelpool_sandbox_violations_total %llu\n",
	    (unsigned long long)sup->counters.sandbox_violations);
	header(b, "tunnelpool_config_last_reload_successful", "gauge",
	    "Whether the last configuration reload succeeded.");
	evbuffer_add_printf(b, "tunnelpool_config_last_reload_successful %d\n",
	    sup->config_ok ? 1 : 0);
	header(b, "tunnelpool_config_last_reload_success_timestamp_seconds",
	    "gauge", "Time of the last successful configuration reload.");
	evbuffer_add_printf(b,
	    "tunnelpool_config_last_reload_success_timestamp_seconds %.3f\n",
	    (double)sup->last_reload_ok_wall_ms / 1000.0);
	header(b, "tunnelpool_build_info", "gauge", "Build information.");
	evbuffer_add_printf(b, "tunnelpool_build_info{version=\"%s\"} 1\n",
	    TP_VERSION);
}

/* An unlabelled sample with its HELP and TYPE lines. */
static void
plain(struct evbuffer *b, const char *name, const char *type,
    const char *help, long long val)
{
	header(b, name, type, help);
	evbuffer_add_printf(b, "%s %lld\n", name, val);
}

static void
render_source(struct evbuffer *b, struct sup *sup)
{
	struct source_status ss;

	status_source(sup, &ss);
	header(b, "tunnelpool_tunnel_source_info", "gauge",
	    "Where the desired tunnels come from (type files or etcd) and the "
	    "endpoint in use.");
	evbuffer_add_printf(b, "tunnelpool_tunnel_source_info{type=\"%s\","
	    "endpoint=\"", ss.type);
	put_label(b, ss.endpoint);
	evbuffer_add_printf(b, "\"} 1\n");
	plain(b, "tunnelpool_tunnel_source_healthy", "gauge", "1 while the "
	    "tunnel source is read without error (etcd: in sync and "
	    "watching).", ss.healthy ? 1 : 0);
	plain(b, "tunnelpool_tunnel_source_revision", "gauge", "etcd revision "
	    "of the desired set in use.", (long long)ss.revision);
	plain(b, "tunnelpool_tunnel_source_watch_restarts_total", "counter",
	    "etcd watches started again after a broken stream or a "
	    "compaction.", (long long)ss.watch_restarts);
	header(b, "tunnelpool_tunnel_source_keys", "gauge",
	    "Keys (etcd) or files of the tunnel source, and those whose "
	    "current value is rejected.");
	evbuffer_add_printf(b, "tunnelpool_tunnel_source_keys{kind=\"all\"} "
	    "%zu\ntunnelpool_tunnel_source_keys{kind=\"rejected\"} %zu\n",
	    ss.keys, ss.bad_keys);
	plain(b, "tunnelpool_tunnel_source_rejected_values_total", "counter",
	    "etcd values rejected (malformed; the key's last good tunnels "
	    "stay).", (long long)ss.bad_values);
	plain(b, "tunnelpool_tunnel_source_from_snapshot", "gauge", "1 while "
	    "the desired set is the snapshot (etcd not read since the start).",
	    ss.from_snapshot ? 1 : 0);
	if (ss.snapshot_age_s >= 0)
		plain(b, "tunnelpool_tunnel_source_snapshot_age_seconds",
		    "gauge", "Age of the last good snapshot written to "
		    "state_dir.", (long long)ss.snapshot_age_s);
}

void
metrics_render(struct sup *sup, struct evbuffer *b)
{
	struct cluster_sum *v;
	size_t n = 0;

	if ((v = status_cluster_sums(sup, &n)) != NULL) {
		render_clusters(b, v, n);
		status_cluster_sums_free(v, n);
	}
	render_supervisor(b, sup);
	render_source(b, sup);
	render_lag(b, sup);
	render_process(b, sup);
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct metrics *m = arg;
	const char *uri = evhttp_request_get_uri(req);
	struct evbuffer *b;

	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		evhttp_send_error(req, 405, "Method Not Allowed");
		return;
	}
	if ((b = evbuffer_new()) == NULL) {
		evhttp_send_error(req, 500, "Internal Server Error");
		return;
	}
	if (strcmp(uri, "/metrics") == 0) {
		metrics_render(m->sup, b);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
		evhttp_send_reply(req, 200, "OK", b);
	} else if (strcmp(uri, "/healthz") == 0) {
		evbuffer_add_printf(b, "%s\n", m->sup->config_ok ? "ok" :
		    "ok (configuration reload failed)");
		evhttp_send_reply(req, 200, "OK", b);
	} else
		evhttp_send_error(req, 404, "Not Found");
	evbuffer_free(b);
}

struct metrics *
metrics_new(struct sup *sup, int *err)
{
	const char *listen = sup->cfg->metrics_listen;
	struct metrics *m;
	struct tp_addr a;

	*err = 0;
	if (listen[0] == '\0')
		return NULL;
	if (tp_addr_parse(listen, 0, &a) != 0 || (m = calloc(1, sizeof(*m))) == NULL) {
		*err = -1;
		return NULL;
	}
	m->sup = sup;
	if ((m->http = evhttp_new(sup->base)) == NULL ||
	    evhttp_bind_socket(m->http, a.host, a.port) != 0) {
		log_warn("metrics_listen %s", listen);
		metrics_free(m);
		*err = -1;
		return NULL;
	}
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET);
	evhttp_set_gencb(m->http, on_request, m);
	log_info("metrics on http://%s/metrics", listen);
	return m;
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	if (m->http != NULL)
		evhttp_free(m->http);
	free(m);
}
