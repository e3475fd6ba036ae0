#include <sys/types.h>

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/log.h"
#include "common/tptime.h"
#include "config.h"
#include "pool.h"
#include "status.h"
#include "sup.h"
#include "tunnels.h"

/*
 * A forward id is its index in the tunnel spec the agent was started with;
 * once the spec changed (a newer key generation) the index may name another
 * forward, so the listen address is only given for the agent's own spec.
 */
static const char *
forward_listen(const struct pool_agent *a, uint32_t id)
{
	const struct tunnel *t = a->key->tunnel;

	if (t == NULL || a->gen != a->key->gen || id >= t->n_forwards)
		return "";
	return t->forwards[id].listen;
}

/* Before its first STATE message an agent is being dialled: connecting. */
static const char *
state_name(const struct pool_agent *a)
{
	return agent_state_name(a->state != 0 ? a->state : AGENT_CONNECTING);
}

static json_t *
agent_json(const struct pool_agent *a, uint64_t now)
{
	json_t *fw = json_array(), *o;

	for (uint32_t i = 0; i < a->n_forwards; i++)
		json_array_append_new(fw, json_pack("{s:I,s:s,s:b,s:I,s:s}",
		    "id", (json_int_t)a->forwards[i].id,
		    "listen", forward_listen(a, a->forwards[i].id),
		    "bound", a->forwards[i].bound,
		    "port", (json_int_t)a->forwards[i].port,
		    "error", a->forwards[i].error));
	o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:{s:s,s:s},s:I,s:I,s:I,s:I,s:I,"
	    "s:I,s:s,s:o}",
	    "cluster", a->key->cluster,
	    "dial_addr", a->key->dial_addr,
	    "pid", (json_int_t)a->pid,
	    "state", a->phase == PHASE_CLOSING ? "closing" : state_name(a),
	    "role", a->role == AGENT_ROLE_DISCOVERY ? "discovery" : "tunnel",
	    "proxy", "name", a->name, "host_key", a->fp,
	    "since_s", (json_int_t)((now - a->state_ms) / 1000),
	    "reconnects", (json_int_t)a->key->reconnects,
	    "channels", (json_int_t)a->stats.channels_open,
	    "channels_total", (json_int_t)a->stats.channels_total,
	    "rx_bytes", (json_int_t)a->stats.rx_bytes,
	    "tx_bytes", (json_int_t)a->stats.tx_bytes,
	    "last_error", a->key->last_error,
	    "forwards", fw);
	json_object_set_new(o, "retry_in_ms", json_integer(0));
	return o;
}

/*
 * A desired key without an agent (backoff after failures, or waiting for
 * the spawn limiter) still gets its row: pid 0, the key's last error, and
 * when the next attempt is due.
 */
static json_t *
idle_key_json(const struct pool_key *k, uint32_t state, uint64_t now)
{
	uint64_t due = k->discovery && k->next_disc_ms > k->next_dial_ms ?
	    k->next_disc_ms : k->next_dial_ms;

	return json_pack("{s:s,s:s,s:I,s:s,s:s,s:{s:s,s:s},s:I,s:I,s:I,s:I,"
	    "s:I,s:I,s:s,s:[],s:I}",
	    "cluster", k->cluster,
	    "dial_addr", k->dial_addr,
	    "pid", (json_int_t)0,
	    "state", agent_state_name(state),
	    "role", "tunnel",
	    "proxy", "name", "", "host_key", "",
	    "since_s", (json_int_t)(k->down && now > k->down_ms ?
		(now - k->down_ms) / 1000 : 0),
	    "reconnects", (json_int_t)k->reconnects,
	    "channels", (json_int_t)0,
	    "channels_total", (json_int_t)0,
	    "rx_bytes", (json_int_t)0,
	    "tx_bytes", (json_int_t)0,
	    "last_error", k->last_error,
	    "forwards",
	    "retry_in_ms", (json_int_t)(due > now ? due - now : 0));
}

static void
state_count(json_t *states, const char *s)
{
	json_object_set_new(states, s, json_integer(
	    json_integer_value(json_object_get(states, s)) + 1));
}

/* Per-cluster aggregate, keyed by cluster name in a JSON object. */
static void
cluster_add(json_t *clusters, const struct pool_key *k)
{
	json_t *c = json_object_get(clusters, k->cluster), *st;

	if (c == NULL) {
		c = json_pack("{s:s,s:I,s:I,s:I,s:{s:I,s:I,s:I,s:I,s:I}}",
		    "name", k->cluster, "proxies_announced", (json_int_t)0,
		    "proxies_claimed", (json_int_t)0, "discovery_misses",
		    (json_int_t)0, "states", "connecting", (json_int_t)0,
		    "discovering", (json_int_t)0, "connected", (json_int_t)0,
		    "discovered", (json_int_t)0, "disconnected", (json_int_t)0);
		json_object_set_new(clusters, k->cluster, c);
	}
	json_object_set_new(c, "proxies_announced", json_integer(
	    json_integer_value(json_object_get(c, "proxies_announced")) +
	    (json_int_t)k->n_proxies));
	json_object_set_new(c, "proxies_claimed", json_integer(
	    json_integer_value(json_object_get(c, "proxies_claimed")) +
	    pool_key_claimed(k)));
	json_object_set_new(c, "discovery_misses", json_integer(
	    json_integer_value(json_object_get(c, "discovery_misses")) +
	    (json_int_t)k->misses));
	st = json_object_get(c, "states");
	for (const struct pool_agent *a = k->agents; a != NULL; a = a->next)
		state_count(st, state_name(a));
	if (pool_key_idle_state(k) != 0)
		state_count(st, agent_state_name(pool_key_idle_state(k)));
}

void
status_self_usage(struct self_usage *u)
{
	long long pages = 0, rss = 0, n = 0;
	DIR *d = opendir("/proc/self/fd");
	FILE *f = fopen("/proc/self/statm", "r");

	u->open_fds = u->rss_bytes = u->vsz_bytes = -1;
	if (d != NULL) {
		while (readdir(d) != NULL)
			n++;
		closedir(d);
		u->open_fds = n - 3;	/* ".", "..", and the DIR's own fd */
	}
	if (f != NULL) {
		if (fscanf(f, "%lld %lld", &pages, &rss) == 2) {
			u->vsz_bytes = pages * sysconf(_SC_PAGESIZE);
			u->rss_bytes = rss * sysconf(_SC_PAGESIZE);
		}
		fclose(f);
	}
}

static json_t *
lag_json(const struct sup *sup)
{
	json_t *b = json_array();
	uint64_t cum = 0;

	for (int i = 0; i <= LAG_BUCKETS; i++) {
		cum += sup->counters.lag_count[i];
		json_array_append_new(b, json_pack("{s:I,s:I}", "le_us",
		    i < LAG_BUCKETS ? (json_int_t)lag_bounds_us[i] : (json_int_t)-1,
		    "count", (json_int_t)cum));
	}
	return json_pack("{s:o,s:I}", "buckets", b, "sum_us",
	    (json_int_t)sup->counters.lag_sum_us);
}

static json_t *
supervisor_json(struct sup *sup, uint64_t now)
{
	const struct pool_stats *ps = pool_get_stats(sup->pool);
	struct self_usage u;

	status_self_usage(&u);

	return json_pack("{s:I,s:s,s:I,s:b,s:s?,s:I,s:I,s:I,s:I,s:I,s:I,s:o}",
	    "pid", (json_int_t)getpid(),
	    "version", TP_VERSION,
	    "uptime_s", (json_int_t)((now - sup->started_ms) / 1000),
	    "config_ok", sup->config_ok,
	    "config_error", sup->config_ok ? NULL : sup->config_error,
	    "rss_bytes", (json_int_t)u.rss_bytes,
	    "open_fds", (json_int_t)u.open_fds,
	    "workers", (json_int_t)pool_nagents(sup->pool),
	    "spawns", (json_int_t)ps->spawns,
	    "messages", (json_int_t)sup->counters.messages,
	    "sandbox_violations", (json_int_t)sup->counters.sandbox_violations,
	    "loop_lag", lag_json(sup));
}

json_t *
status_json(struct sup *sup)
{
	json_t *agents = json_array(), *clusters = json_object(), *list, *o;
	uint64_t now = tp_now_ms();
	const char *name;
	json_t *v;

	for (struct pool_key *k = pool_keys(sup->pool); k != NULL; k = k->lnext) {
		uint32_t idle = pool_key_idle_state(k);

		cluster_add(clusters, k);
		for (struct pool_agent *a = k->agents; a != NULL; a = a->next)
			json_array_append_new(agents, agent_json(a, now));
		if (idle != 0)
			json_array_append_new(agents,
			    idle_key_json(k, idle, now));
	}
	list = json_array();
	json_object_foreach(clusters, name, v)
		json_array_append(list, v);
	json_decref(clusters);
	o = json_pack("{s:o,s:o,s:o}", "supervisor", supervisor_json(sup, now),
	    "agents", agents, "clusters", list);
	return o;
}

void
status_log_stats(struct sup *sup)
{
	json_t *st = status_json(sup), *c;
	size_t i;

	if (st == NULL)
		return;
	json_array_foreach(json_object_get(st, "clusters"), i, c) {
		json_t *s = json_object_get(c, "states");

		log_info("cluster %s: connecting=%lld discovering=%lld "
		    "connected=%lld discovered=%lld disconnected=%lld "
		    "announced=%lld claimed=%lld",
		    json_string_value(json_object_get(c, "name")),
		    json_integer_value(json_object_get(s, "connecting")),
		    json_integer_value(json_object_get(s, "discovering")),
		    json_integer_value(json_object_get(s, "connected")),
		    json_integer_value(json_object_get(s, "discovered")),
		    json_integer_value(json_object_get(s, "disconnected")),
		    json_integer_value(json_object_get(c, "proxies_announced")),
		    json_integer_value(json_object_get(c, "proxies_claimed")));
	}
	json_decref(st);
}
