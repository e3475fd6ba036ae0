#include <sys/types.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "common/error.h"
#include "common/fnv.h"
#include "common/log.h"
#include "common/tptime.h"
#include "config.h"
#include "etcdsrc.h"
#include "jsonw.h"
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

/* The fields every row starts with, up to "reconnects". */
static void
row_head(struct evbuffer *b, const struct pool_key *k, long long pid,
    const char *state, const char *role, const char *name, const char *fp,
    uint64_t since_s)
{
	evbuffer_add_printf(b, "{\"cluster\":");
	jsonw_str(b, k->cluster);
	evbuffer_add_printf(b, ",\"dial_addr\":");
	jsonw_str(b, k->dial_addr);
	evbuffer_add_printf(b, ",\"pid\":%lld,\"state\":\"%s\",\"role\":"
	    "\"%s\",\"proxy\":{\"name\":", pid, state, role);
	jsonw_str(b, name);
	evbuffer_add_printf(b, ",\"host_key\":");
	jsonw_str(b, fp);
	evbuffer_add_printf(b, "},\"since_s\":%llu,\"reconnects\":%llu,",
	    (unsigned long long)since_s, (unsigned long long)k->reconnects);
}

static void
agent_write(struct evbuffer *b, const struct pool_agent *a, uint64_t now)
{
	row_head(b, a->key, (long long)a->pid,
	    a->phase == PHASE_CLOSING ? "closing" : state_name(a),
	    a->role == AGENT_ROLE_DISCOVERY ? "discovery" : "tunnel",
	    a->name, a->fp, (now - a->state_ms) / 1000);
	evbuffer_add_printf(b, "\"wanted\":%s,", pool_agent_wanted(a) ? "true" :
	    "false");
	evbuffer_add_printf(b, "\"channels\":%llu,\"channels_total\":%llu,"
	    "\"rx_bytes\":%llu,\"tx_bytes\":%llu,\"last_error\":",
	    (unsigned long long)a->stats.channels_open,
	    (unsigned long long)a->stats.channels_total,
	    (unsigned long long)a->stats.rx_bytes,
	    (unsigned long long)a->stats.tx_bytes);
	jsonw_str(b, a->key->last_error);
	evbuffer_add_printf(b, ",\"forwards\":[");
	for (uint32_t i = 0; i < a->n_forwards; i++) {
		evbuffer_add_printf(b, "%s{\"id\":%u,\"listen\":",
		    i > 0 ? "," : "", a->forwards[i].id);
		jsonw_str(b, forward_listen(a, a->forwards[i].id));
		evbuffer_add_printf(b, ",\"bound\":%s,\"port\":%u,"
		    "\"error\":", a->forwards[i].bound ? "true" : "false",
		    (unsigned)a->forwards[i].port);
		jsonw_str(b, a->forwards[i].error);
		evbuffer_add(b, "}", 1);
	}
	evbuffer_add_printf(b, "],\"retry_in_ms\":0}");
}

/*
 * A desired key without an agent (backoff after failures, or waiting for
 * the spawn limiter) still gets its row: pid 0, the key's last error, and
 * when the next attempt is due.
 */
static void
idle_key_write(struct evbuffer *b, const struct pool_key *k, uint32_t state,
    uint64_t now)
{
	uint64_t due = k->discovery && k->next_disc_ms > k->next_dial_ms ?
	    k->next_disc_ms : k->next_dial_ms;

	row_head(b, k, 0, agent_state_name(state), "tunnel", "", "",
	    k->down && now > k->down_ms ? (now - k->down_ms) / 1000 : 0);
	evbuffer_add_printf(b, "\"wanted\":true,\"channels\":0,\"channels_total\":0,"
	    "\"rx_bytes\":0,\"tx_bytes\":0,\"last_error\":");
	jsonw_str(b, k->last_error);
	evbuffer_add_printf(b, ",\"forwards\":[],\"retry_in_ms\":%llu}",
	    (unsigned long long)(due > now ? due - now : 0));
}

/* A cluster name's hash, for the sums' index. */
static uint64_t
name_hash(const char *s)
{
	return tp_fnv1a(TP_FNV1A_INIT, s, strlen(s));
}

static int
sum_key(struct cluster_sum *c, struct pool_key *k, uint64_t now)
{
	uint32_t idle = pool_key_idle_state(k);
	uint64_t retry = pool_key_disc_retry_ms(k, now);

	if (k->discovery && k->set.n > 0) {
		struct pool_key **grown = realloc(c->dkeys, (c->n_dkeys + 1) *
		    sizeof(*grown));

		if (grown == NULL)
			return -1;
		c->dkeys = grown;
		c->dkeys[c->n_dkeys++] = k;
	}
	c->connects += k->connects;
	c->announced += k->set.n;
	c->claimed += pool_key_claimed(k);
	c->misses += k->misses;
	c->refused += k->claims_refused;
	c->dials += k->dials;
	if (k->miss_streak > c->miss_streak)
		c->miss_streak = k->miss_streak;
	if (k->discovery && retry > c->disc_retry_ms)
		c->disc_retry_ms = retry;
	if (pool_key_lagging(k))
		c->lagging = true;
	c->rx += k->rx_done;
	c->tx += k->tx_done;
	c->ch_total += k->channels_done;
	c->dial_fail += k->dial_failures_done;
	if (idle != 0)
		c->states[idle]++;
	for (struct pool_agent *a = k->agents; a != NULL; a = a->next) {
		/* Not reported yet: being dialled, as status says. */
		if (a->state == 0)
			c->states[AGENT_CONNECTING]++;
		else if (a->state <= AGENT_STATE_MAX)
			c->states[a->state]++;
		c->ch_open += a->stats.channels_open;
		c->ch_total += a->stats.channels_total;
		c->rx += a->stats.rx_bytes;
		c->tx += a->stats.tx_bytes;
		c->dial_fail += a->stats.dial_failures;
	}
	return 0;
}

/* Linear in the keys: an open-addressing index from name to sum. */
struct cluster_sum *
status_cluster_sums(struct sup *sup, size_t *n)
{
	size_t nk = pool_nkeys(sup->pool), cap = 16, m = 0;
	uint64_t now = tp_now_ms();
	struct cluster_sum *v;
	uint32_t *slot;

	while (cap < 2 * nk)
		cap *= 2;
	v = calloc(nk + 1, sizeof(*v));
	slot = calloc(cap, sizeof(*slot));		/* 0 = free, else i + 1 */
	if (v == NULL || slot == NULL) {
		free(v);
		free(slot);
		return NULL;
	}
	for (struct pool_key *k = pool_keys(sup->pool); k != NULL; k = k->lnext) {
		size_t i = (size_t)name_hash(k->cluster) & (cap - 1);

		while (slot[i] != 0 &&
		    strcmp(v[slot[i] - 1].name, k->cluster) != 0)
			i = (i + 1) & (cap - 1);
		if (slot[i] == 0) {
			v[m].name = k->cluster;
			slot[i] = (uint32_t)++m;
		}
		if (sum_key(&v[slot[i] - 1], k, now) != 0) {
			free(slot);
			status_cluster_sums_free(v, m);
			return NULL;
		}
	}
	free(slot);
	*n = m;
	return v;
}

void
status_cluster_sums_free(struct cluster_sum *v, size_t n)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(v[i].dkeys);
	free(v);
}

/* clusters[].wanted: every discovery key's wanted set, in key order. */
static void
wanted_write(struct evbuffer *b, const struct cluster_sum *c, uint64_t now)
{
	bool first = true;

	evbuffer_add_printf(b, ",\"wanted\":[");
	for (size_t i = 0; i < c->n_dkeys; i++) {
		const struct pool_key *k = c->dkeys[i];

		for (uint32_t j = 0; j < k->set.n; j++) {
			const struct wanted_proxy *px = &k->set.v[j];

			evbuffer_add_printf(b, "%s{\"dial_addr\":",
			    first ? "" : ",");
			jsonw_str(b, k->dial_addr);
			evbuffer_add_printf(b, ",\"name\":");
			jsonw_str(b, px->name);
			evbuffer_add_printf(b, ",\"host_key\":");
			jsonw_str(b, px->fp);
			evbuffer_add_printf(b, ",\"claimed\":%s,\"current\":%s,"
			    "\"source\":", pool_key_holds(k, px->fp) ? "true" :
			    "false", px->current ? "true" : "false");
			jsonw_str(b, px->source_name[0] != '\0' ?
			    px->source_name : px->source_fp);
			evbuffer_add_printf(b, ",\"age_s\":%llu,\"since_s\":%llu}",
			    (unsigned long long)(now > px->last_seen_ms ?
			    (now - px->last_seen_ms) / 1000 : 0),
			    (unsigned long long)(now > px->since_ms ?
			    (now - px->since_ms) / 1000 : 0));
			first = false;
		}
	}
	evbuffer_add(b, "]", 1);
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

void
status_source(struct sup *sup, struct source_status *ss)
{
	struct tunnel_cache_status tcs;
	struct etcdsrc_status es;

	memset(ss, 0, sizeof(*ss));
	if (sup->etcd == NULL) {
		tunnel_cache_get_status(sup->tunnels, &tcs);
		ss->type = "files";
		ss->endpoint = sup->cfg->tunnels_dir;
		ss->healthy = sup->tunnels_error[0] == '\0';
		ss->last_error = sup->tunnels_error;
		ss->snapshot_age_s = -1;
		ss->keys = tcs.n_files;
		return;
	}
	etcdsrc_get_status(sup->etcd, &es);
	ss->type = "etcd";
	ss->endpoint = es.endpoint;
	ss->healthy = es.healthy;
	ss->revision = es.revision;
	ss->watch_restarts = es.watch_restarts;
	ss->last_error = es.last_error;
	ss->snapshot_age_s = es.snapshot_age_s;
	ss->from_snapshot = es.from_snapshot;
	ss->keys = es.keys;
	ss->bad_keys = es.bad_keys;
	ss->bad_values = es.bad_values;
}

/* tunnel_source: where the desired set comes from, and how it is doing. */
static json_t *
source_json(struct sup *sup)
{
	struct source_status ss;

	status_source(sup, &ss);
	return json_pack("{s:s,s:s,s:b,s:I,s:I,s:s,s:I,s:b,s:I,s:I,s:I}",
	    "type", ss.type, "endpoint", ss.endpoint, "healthy", ss.healthy,
	    "revision", (json_int_t)ss.revision,
	    "watch_restarts", (json_int_t)ss.watch_restarts,
	    "last_error", ss.last_error,
	    "snapshot_age_s", (json_int_t)ss.snapshot_age_s,
	    "from_snapshot", ss.from_snapshot,
	    "keys", (json_int_t)ss.keys, "bad_keys", (json_int_t)ss.bad_keys,
	    "rejected_values", (json_int_t)ss.bad_values);
}

/* clusters[]: one object per cluster name, in the order keys were added. */
static int
clusters_write(struct evbuffer *b, struct sup *sup, uint64_t now)
{
	struct cluster_sum *v;
	size_t n;

	if ((v = status_cluster_sums(sup, &n)) == NULL)
		return -1;
	evbuffer_add(b, "[", 1);
	for (size_t i = 0; i < n; i++) {
		evbuffer_add_printf(b, "%s{\"name\":", i > 0 ? "," : "");
		jsonw_str(b, v[i].name);
		evbuffer_add_printf(b, ",\"proxies_announced\":%llu,"
		    "\"proxies_claimed\":%llu,\"discovery_misses\":%llu,"
		    "\"claims_refused\":%llu,\"dials\":%llu,"
		    "\"discovery_miss_streak\":%llu,"
		    "\"discovery_retry_in_ms\":%llu,"
		    "\"discovery_lagging\":%s",
		    (unsigned long long)v[i].announced,
		    (unsigned long long)v[i].claimed,
		    (unsigned long long)v[i].misses,
		    (unsigned long long)v[i].refused,
		    (unsigned long long)v[i].dials,
		    (unsigned long long)v[i].miss_streak,
		    (unsigned long long)v[i].disc_retry_ms,
		    v[i].lagging ? "true" : "false");
		wanted_write(b, &v[i], now);
		evbuffer_add_printf(b, ",\"states\":{");
		for (uint32_t st = 1; st <= AGENT_STATE_MAX; st++)
			evbuffer_add_printf(b, "%s\"%s\":%llu", st > 1 ? "," : "",
			    agent_state_name(st),
			    (unsigned long long)v[i].states[st]);
		evbuffer_add(b, "}}", 2);
	}
	evbuffer_add(b, "]", 1);
	status_cluster_sums_free(v, n);
	return 0;
}

/* Appends o as compact JSON text and drops it; -1 if o is NULL. */
static int
add_dump(struct evbuffer *b, json_t *o)
{
	char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (s == NULL)
		return -1;
	evbuffer_add(b, s, strlen(s));
	free(s);
	return 0;
}

/*
 * The agent rows, the bulk of the document, are written as text; the two
 * small parts are built with jansson.  Everything goes to a buffer of its
 * own first, so out never holds half a document.
 */
int
status_write(struct sup *sup, struct evbuffer *out)
{
	struct evbuffer *b = evbuffer_new();
	uint64_t now = tp_now_ms();
	bool first = true;
	int rc = TP_ENOMEM;

	if (b == NULL)
		return TP_ENOMEM;
	evbuffer_add_printf(b, "{\"supervisor\":");
	if (add_dump(b, supervisor_json(sup, now)) != 0)
		goto out;
	evbuffer_add_printf(b, ",\"tunnel_source\":");
	if (add_dump(b, source_json(sup)) != 0)
		goto out;
	evbuffer_add_printf(b, ",\"agents\":[");
	for (struct pool_key *k = pool_keys(sup->pool); k != NULL; k = k->lnext) {
		uint32_t idle = pool_key_idle_state(k);

		for (struct pool_agent *a = k->agents; a != NULL; a = a->next) {
			if (!first)
				evbuffer_add(b, ",", 1);
			agent_write(b, a, now);
			first = false;
		}
		if (idle != 0) {
			if (!first)
				evbuffer_add(b, ",", 1);
			idle_key_write(b, k, idle, now);
			first = false;
		}
	}
	evbuffer_add_printf(b, "],\"clusters\":");
	if (clusters_write(b, sup, now) != 0)
		goto out;
	evbuffer_add_printf(b, "}\n");
	rc = evbuffer_add_buffer(out, b) == 0 ? 0 : TP_ENOMEM;
out:
	evbuffer_free(b);
	return rc;
}

void
status_log_stats(struct sup *sup)
{
	struct cluster_sum *v;
	size_t n;

	if ((v = status_cluster_sums(sup, &n)) == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		log_info("cluster %s: connecting=%llu discovering=%llu "
		    "connected=%llu discovered=%llu disconnected=%llu "
		    "announced=%llu claimed=%llu", v[i].name,
		    (unsigned long long)v[i].states[AGENT_CONNECTING],
		    (unsigned long long)v[i].states[AGENT_DISCOVERING],
		    (unsigned long long)v[i].states[AGENT_CONNECTED],
		    (unsigned long long)v[i].states[AGENT_DISCOVERED],
		    (unsigned long long)v[i].states[AGENT_DISCONNECTED],
		    (unsigned long long)v[i].announced,
		    (unsigned long long)v[i].claimed);
	status_cluster_sums_free(v, n);
}
