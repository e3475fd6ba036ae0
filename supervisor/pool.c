#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/fnv.h"
#include "common/log.h"
#include "pool.h"

#define POOL_MIN_BUCKETS	64
#define POOL_TICK_IDLE_MS	1000
#define NOT_NAMED		"no longer wanted: no current list names it"

struct pool {
	struct pool_config	 cfg;
	struct pool_ops		 ops;
	void			*arg;
	struct pool_key		**buckets;
	struct pool_key		**cbuckets;	/* by cluster alone (siblings) */
	size_t			 nbuckets;
	size_t			 nkeys;
	size_t			 nagents;
	struct pool_key		*keys;		/* insertion order */
	struct pool_key		*keys_tail;
	uint64_t		 epoch;
	uint64_t		 next_agent_id;
	struct ratelimit	 limiter;
	struct pool_stats	 stats;
};

/* --- the key map ---------------------------------------------------------- */

static uint64_t
key_hash(const char *cluster, const char *dial)
{
	uint64_t h = tp_fnv1a(TP_FNV1A_INIT, cluster, strlen(cluster));

	h = tp_fnv1a(h, "\xff", 1);
	return tp_fnv1a(h, dial, strlen(dial));
}

static struct pool_key *
key_find(struct pool *p, const char *cluster, const char *dial)
{
	struct pool_key *k = p->buckets[key_hash(cluster, dial) % p->nbuckets];

	for (; k != NULL; k = k->hnext)
		if (strcmp(k->cluster, cluster) == 0 &&
		    strcmp(k->dial_addr, dial) == 0)
			return k;
	return NULL;
}

static size_t
cluster_slot(const char *cluster, size_t n)
{
	return key_hash(cluster, "") % n;
}

/*
 * The keys of one cluster (its dial addresses) share what their proxies
 * announce: the next key of k's cluster after s (NULL: the first), or
 * NULL at the end.
 */
static struct pool_key *
sibling_next(const struct pool *p, const struct pool_key *k,
    struct pool_key *s)
{
	s = s == NULL ? p->cbuckets[cluster_slot(k->cluster, p->nbuckets)] :
	    s->cnext;
	for (; s != NULL; s = s->cnext)
		if (strcmp(s->cluster, k->cluster) == 0)
			return s;
	return NULL;
}

#define FOR_CLUSTER(p, k, s) \
	for ((s) = sibling_next((p), (k), NULL); (s) != NULL; \
	    (s) = sibling_next((p), (k), (s)))

static int
map_grow(struct pool *p)
{
	size_t n = p->nbuckets * 2;
	struct pool_key **b = calloc(n, sizeof(*b));
	struct pool_key **cb = calloc(n, sizeof(*cb));

	if (b == NULL || cb == NULL) {
		free(b);
		free(cb);
		return TP_ENOMEM;
	}
	for (struct pool_key *k = p->keys; k != NULL; k = k->lnext) {
		size_t i = key_hash(k->cluster, k->dial_addr) % n;
		size_t j = cluster_slot(k->cluster, n);

		k->hnext = b[i];
		b[i] = k;
		k->cnext = cb[j];
		cb[j] = k;
	}
	free(p->buckets);
	free(p->cbuckets);
	p->buckets = b;
	p->cbuckets = cb;
	p->nbuckets = n;
	return 0;
}

/* A pacing that steps from min_ms up to max_ms, never below min_ms. */
static int
steps_init(struct backoff *b, uint64_t min_ms, uint64_t max_ms)
{
	return backoff_init(b, min_ms, max_ms > min_ms ? max_ms : min_ms, 0);
}

/*
 * Misses back off from miss_retry_ms up to the failure backoff's cap; lag
 * probes step from backoff.min up to discovery.lag_probe_max.
 */
static int
pacing_init(struct pool_key *k, const struct pool_config *cfg)
{
	if (steps_init(&k->miss, cfg->miss_retry_ms, cfg->backoff_max_ms) != 0)
		return TP_EINVAL;
	return steps_init(&k->lag, cfg->backoff_min_ms, cfg->lag_probe_max_ms);
}

static struct pool_key *
key_add(struct pool *p, const struct pool_want *w)
{
	struct pool_key *k;
	size_t i;

	if (p->nkeys + 1 > p->nbuckets * 3 / 4 && map_grow(p) != 0)
		return NULL;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return NULL;
	k->cluster = strdup(w->cluster);
	k->dial_addr = strdup(w->dial_addr);
	if (k->cluster == NULL || k->dial_addr == NULL ||
	    backoff_init(&k->backoff, p->cfg.backoff_min_ms,
	    p->cfg.backoff_max_ms, p->cfg.backoff_reset_ms) != 0 ||
	    pacing_init(k, &p->cfg) != 0) {
		free(k->cluster);
		free(k->dial_addr);
		free(k);
		return NULL;
	}
	i = key_hash(k->cluster, k->dial_addr) % p->nbuckets;
	k->hnext = p->buckets[i];
	p->buckets[i] = k;
	i = cluster_slot(k->cluster, p->nbuckets);
	k->cnext = p->cbuckets[i];
	p->cbuckets[i] = k;
	k->lprev = p->keys_tail;
	if (p->keys_tail != NULL)
		p->keys_tail->lnext = k;
	else
		p->keys = k;
	p->keys_tail = k;
	p->nkeys++;
	return k;
}

/* Unlinks and frees a key that has no agent left. */
static void
key_free(struct pool *p, struct pool_key *k)
{
	struct pool_key **pp = &p->buckets[key_hash(k->cluster, k->dial_addr) %
	    p->nbuckets];

	while (*pp != k)
		pp = &(*pp)->hnext;
	*pp = k->hnext;
	pp = &p->cbuckets[cluster_slot(k->cluster, p->nbuckets)];
	while (*pp != k)
		pp = &(*pp)->cnext;
	*pp = k->cnext;
	if (k->lprev != NULL)
		k->lprev->lnext = k->lnext;
	else
		p->keys = k->lnext;
	if (k->lnext != NULL)
		k->lnext->lprev = k->lprev;
	else
		p->keys_tail = k->lprev;
	p->nkeys--;
	wanted_clear(&k->set);
	free(k->cluster);
	free(k->dial_addr);
	free(k);
}

/* --- pool lifecycle -------------------------------------------------------- */

static int
limiter_init(struct pool *p, uint64_t now_ms)
{
	return ratelimit_init(&p->limiter, p->cfg.spawn_rate,
	    p->cfg.spawn_burst, now_ms);
}

struct pool *
pool_new(const struct pool_config *cfg, const struct pool_ops *ops, void *arg,
    uint64_t now_ms)
{
	struct pool *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->cfg = *cfg;
	p->ops = *ops;
	p->arg = arg;
	p->nbuckets = POOL_MIN_BUCKETS;
	p->buckets = calloc(p->nbuckets, sizeof(*p->buckets));
	p->cbuckets = calloc(p->nbuckets, sizeof(*p->cbuckets));
	if (p->buckets == NULL || p->cbuckets == NULL ||
	    cfg->max_inflight_dials == 0 || limiter_init(p, now_ms) != 0) {
		free(p->buckets);
		free(p->cbuckets);
		free(p);
		return NULL;
	}
	return p;
}

int
pool_reconfigure(struct pool *p, const struct pool_config *cfg,
    uint64_t now_ms)
{
	struct pool_config old = p->cfg;

	if (cfg->max_inflight_dials == 0)
		return TP_EINVAL;
	p->cfg = *cfg;
	if (limiter_init(p, now_ms) != 0) {
		p->cfg = old;
		return TP_EINVAL;
	}
	for (struct pool_key *k = p->keys; k != NULL; k = k->lnext) {
		k->backoff.min_ms = cfg->backoff_min_ms;
		k->backoff.max_ms = cfg->backoff_max_ms;
		k->backoff.reset_after_ms = cfg->backoff_reset_ms;
		(void)pacing_init(k, cfg);
	}
	return 0;
}

static void
agent_free(struct pool_agent *a)
{
	free(a->wanted);
	free(a);
}

void
pool_free(struct pool *p)
{
	struct pool_key *k, *kn;

	if (p == NULL)
		return;
	for (k = p->keys; k != NULL; k = kn) {
		struct pool_agent *a, *an;

		kn = k->lnext;
		for (a = k->agents; a != NULL; a = an) {
			an = a->next;
			agent_free(a);
		}
		wanted_clear(&k->set);
		free(k->cluster);
		free(k->dial_addr);
		free(k);
	}
	free(p->buckets);
	free(p->cbuckets);
	free(p);
}

/* --- sync ------------------------------------------------------------------ */

static void
agent_close(struct pool *p, struct pool_agent *a, const char *reason)
{
	if (a->phase == PHASE_CLOSING || a->phase == PHASE_GONE)
		return;
	a->phase = PHASE_CLOSING;
	p->ops.close(p->arg, a, reason);
}

static void
key_close_all(struct pool *p, struct pool_key *k, const char *reason)
{
	struct pool_agent *a, *an;

	/* ops.close may lose an agent synchronously: walk with a saved next. */
	for (a = k->agents; a != NULL; a = an) {
		an = a->next;
		agent_close(p, a, reason);
	}
}

static int
sync_one(struct pool *p, const struct pool_want *w)
{
	struct pool_key *k = key_find(p, w->cluster, w->dial_addr);

	if (k == NULL) {
		if ((k = key_add(p, w)) == NULL)
			return TP_ENOMEM;
		k->spec_hash = w->spec_hash;
	} else if (k->spec_hash != w->spec_hash || k->removed) {
		/* New generation: agents of the old one are replaced in tick. */
		k->spec_hash = w->spec_hash;
		k->gen++;
		k->removed = false;
	}
	/* Without discovery there is no set: a stale one would be shown. */
	if (!w->discovery)
		wanted_clear(&k->set);
	k->discovery = w->discovery;
	k->tunnel = w->tunnel;
	k->epoch = p->epoch;
	return 0;
}

int
pool_sync(struct pool *p, const struct pool_want *want, size_t n,
    uint64_t now_ms)
{
	int rc = 0;

	p->epoch++;
	for (size_t i = 0; i < n; i++)
		if ((rc = sync_one(p, &want[i])) != 0)
			break;
	/* On a partial failure nothing is removed: fail closed, keep tunnels. */
	for (struct pool_key *k = p->keys; rc == 0 && k != NULL; k = k->lnext)
		if (k->epoch != p->epoch && !k->removed) {
			k->removed = true;
			k->tunnel = NULL;
			key_close_all(p, k, "tunnel removed");
		}
	pool_tick(p, now_ms);
	return rc;
}

/* --- agents ---------------------------------------------------------------- */

static uint32_t unclaimed_wanted(const struct pool_key *k,
    char (*out)[PROTO_FP_MAX]);
static void agent_fill_name(struct pool_agent *a);

static struct pool_agent *
agent_new(struct pool *p, struct pool_key *k, enum agent_role role,
    uint64_t now_ms)
{
	struct pool_agent *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->key = k;
	a->id = ++p->next_agent_id;
	a->role = role;
	a->phase = PHASE_STARTING;
	a->state = AGENT_CONNECTING;
	a->gen = k->gen;
	a->started_ms = a->state_ms = now_ms;
	a->next = k->agents;
	k->agents = a;
	p->nagents++;
	return a;
}

static void
agent_unlink(struct pool *p, struct pool_agent *a)
{
	struct pool_agent **pp = &a->key->agents;

	while (*pp != NULL && *pp != a)
		pp = &(*pp)->next;
	if (*pp == a) {
		*pp = a->next;
		p->nagents--;
	}
}

static int
spawn_agent(struct pool *p, struct pool_key *k, enum agent_role role,
    uint64_t now_ms)
{
	struct pool_agent *a = agent_new(p, k, role, now_ms);

	if (a == NULL)
		return TP_ENOMEM;
	if (role == AGENT_ROLE_DISCOVERY && k->set.n > 0) {
		a->wanted = calloc(k->set.n, sizeof(*a->wanted));
		if (a->wanted == NULL) {
			agent_unlink(p, a);
			agent_free(a);
			return TP_ENOMEM;
		}
		a->n_wanted = unclaimed_wanted(k, a->wanted);
	}
	p->stats.spawns++;
	k->dials++;
	if (p->ops.spawn(p->arg, a) != 0)
		pool_agent_lost(p, a, "spawn failed", true, now_ms);
	return 0;
}

void
pool_agent_spawned(struct pool *p, struct pool_agent *a, pid_t pid,
    uint64_t now_ms)
{
	(void)p;
	a->pid = pid;
	if (a->phase == PHASE_STARTING)
		a->phase = PHASE_RUNNING;
	a->state_ms = now_ms;
}

static bool
is_claimed(const struct pool_key *k, const char *fp,
    const struct pool_agent *except)
{
	for (const struct pool_agent *a = k->agents; a != NULL; a = a->next)
		if (a != except && a->claimed && a->phase != PHASE_GONE &&
		    strcmp(a->fp, fp) == 0)
			return true;
	return false;
}

bool
pool_key_holds(const struct pool_key *k, const char *fp)
{
	return is_claimed(k, fp, NULL);
}

uint32_t
pool_key_claimed(const struct pool_key *k)
{
	uint32_t n = 0;

	for (const struct pool_agent *a = k->agents; a != NULL; a = a->next)
		if (a->claimed && a->phase != PHASE_GONE)
			n++;
	return n;
}

uint32_t
pool_key_idle_state(const struct pool_key *k)
{
	if (k->agents != NULL || k->removed)
		return 0;
	return k->down ? AGENT_DISCONNECTED : AGENT_CONNECTING;
}

/*
 * Fills a discovery agent's wanted list (CONFIG): wanted proxies nobody
 * claims.  A snapshot, for the worker's log: every CLAIM is decided
 * against the set at that moment (claim_decide), so a list that went
 * stale while the agent was dialling never grants or refuses wrongly.
 */
static uint32_t
unclaimed_wanted(const struct pool_key *k, char (*out)[PROTO_FP_MAX])
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < k->set.n; i++)
		if (!is_claimed(k, k->set.v[i].fp, NULL)) {
			if (out != NULL)
				memcpy(out[n], k->set.v[i].fp, PROTO_FP_MAX);
			n++;
		}
	return n;
}

/* --- the wanted set (rule: wanted.h, docs/discovery-protocol.md) ------------- */

static bool
is_wanted(const struct pool_key *k, const char *fp)
{
	return wanted_find(&k->set, fp) != NULL;
}

/*
 * Whether a claim on fp fits the set.  Only current lists can refuse one:
 * while none is, the remembered lists are older than what the proxy the
 * agent landed on is about to announce (it is authenticated, and its list
 * becomes current with the claim), so they keep the pool looking but
 * never turn a trusted proxy away.
 */
static bool
claim_fits(const struct pool_key *k, const char *fp)
{
	return !k->discovery || !k->set.have_current || is_wanted(k, fp);
}

bool
pool_agent_wanted(const struct pool_agent *a)
{
	return a->fp[0] == '\0' || claim_fits(a->key, a->fp);
}

struct holds_ctx {
	struct pool		*p;
	const struct pool_key	*k;
};

/* wanted_mark's view: does an agent of the cluster hold this proxy? */
static bool
agent_holds(void *arg, const char *fp)
{
	const struct holds_ctx *c = arg;
	struct pool_key *s;

	FOR_CLUSTER(c->p, c->k, s)
		if (is_claimed(s, fp, NULL))
			return true;
	return false;
}

struct note_ctx {
	const struct pool_key	*k;
	const char		*why;	/* of a removal */
};

static void
note_change(void *arg, const struct wanted_proxy *px, bool added)
{
	const struct note_ctx *c = arg;
	const char *src = px->source_name[0] != '\0' ? px->source_name :
	    px->source_fp;

	if (added)
		log_info("proxy %s (%s) of %s wanted: announced by %s%s",
		    px->name, px->fp, c->k->cluster, src,
		    px->current ? "" : " (remembered)");
	else
		log_info("proxy %s (%s) of %s %s", px->name, px->fp,
		    c->k->cluster, c->why);
}

static void
miss_reset(struct pool_key *k)
{
	k->miss.attempt = 0;
	k->lag.attempt = 0;
	k->miss_streak = 0;
	k->miss_round_ms = 0;
	k->miss_until_ms = 0;
	k->n_miss_seen = 0;
	k->n_spread = 0;
}

/*
 * Make before break: an agent on a proxy no current list names is closed
 * (CLOSE: its live channels drain for timeouts.close_grace) as soon as
 * the key holds a wanted proxy that is up; until then it stays, so an
 * announcement that runs ahead of the load balancer never leaves the node
 * without a path.
 */
static void
sweep_unwanted(struct pool *p, struct pool_key *k)
{
	struct pool_agent *a, *an;
	bool up = false;

	if (!k->discovery || !k->set.have_current)
		return;
	for (a = k->agents; a != NULL && !up; a = a->next)
		up = a->claimed && a->phase == PHASE_RUNNING &&
		    (a->state == AGENT_CONNECTED ||
		    a->state == AGENT_DISCOVERED) && is_wanted(k, a->fp);
	if (!up)
		return;
	for (a = k->agents; a != NULL; a = an) {
		an = a->next;
		if (a->claimed && a->phase == PHASE_RUNNING &&
		    !is_wanted(k, a->fp))
			agent_close(p, a, "proxy no longer announced");
	}
}

/*
 * Whether the proxy is on its way out: no current list names it, or its
 * own current list leaves it out (its file was rewritten first: during a
 * rewrite the union still names it from the lists not yet rewritten).
 */
static bool
leaving(const struct pool_key *k, const char *fp)
{
	const struct wanted_list *l;

	if (!is_wanted(k, fp))
		return true;
	if ((l = wanted_list_of(&k->set, fp)) == NULL || !l->current)
		return false;
	for (uint32_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].px.fp, fp) == 0)
			return false;
	return true;
}

/*
 * Whether an agent other than except holds a proxy that is leaving and
 * still up: a fleet being replaced, kept until a wanted proxy is up
 * (sweep_unwanted), and a balancer that may not have moved yet.
 */
static bool
holds_leaving(const struct pool_key *k, const struct pool_agent *except)
{
	if (!k->discovery || !k->set.have_current)
		return false;
	for (const struct pool_agent *a = k->agents; a != NULL; a = a->next)
		if (a != except && a->claimed && a->phase == PHASE_RUNNING &&
		    leaving(k, a->fp))
			return true;
	return false;
}

bool
pool_key_lagging(const struct pool_key *k)
{
	return holds_leaving(k, NULL);
}

/*
 * Re-applies the rule after lists or holders changed (or a remembered list
 * expired, force): currency, the set, the miss pacing, the sweep.  Returns
 * true when the set gained a proxy.
 */
static bool
key_refresh(struct pool *p, struct pool_key *k, uint64_t now_ms, bool force,
    const char *why)
{
	struct note_ctx ctx = { k, why };
	struct holds_ctx held = { p, k };
	int added = 0;

	if (!k->discovery || k->refreshing)
		return false;
	k->refreshing = true;
	if (wanted_mark(&k->set, agent_holds, &held, now_ms) || force) {
		added = wanted_rebuild(&k->set, now_ms, p->cfg.proxy_ttl_ms,
		    note_change, &ctx);
		if (added < 0)
			log_warnx("%s %s: wanted set not rebuilt: %s",
			    k->cluster, k->dial_addr, tp_strerror(added));
		/* New information: what the last misses taught is moot. */
		if (added > 0)
			miss_reset(k);
	}
	sweep_unwanted(p, k);
	k->refreshing = false;
	return added > 0;
}

/* After a claim or a loss: the lists of the whole cluster may change. */
static void
cluster_refresh(struct pool *p, struct pool_key *k, uint64_t now_ms)
{
	struct pool_key *s;

	FOR_CLUSTER(p, k, s)
		key_refresh(p, s, now_ms, false, NOT_NAMED);
}

uint64_t
pool_key_disc_retry_ms(const struct pool_key *k, uint64_t now_ms)
{
	uint64_t due = k->next_disc_ms > k->miss_until_ms ? k->next_disc_ms :
	    k->miss_until_ms;

	return due > now_ms ? due - now_ms : 0;
}

/* --- tick ------------------------------------------------------------------- */

/* Counts agents of the current generation; *unclaimed = those still looking. */
static uint32_t
count_current(const struct pool_key *k, uint32_t *discovering,
    bool *have_claim)
{
	uint32_t n = 0;

	*discovering = 0;
	*have_claim = false;
	for (const struct pool_agent *a = k->agents; a != NULL; a = a->next) {
		if (a->gen != k->gen || a->phase == PHASE_CLOSING ||
		    a->phase == PHASE_GONE)
			continue;
		n++;
		if (a->claimed)
			*have_claim = true;
		else if (a->role == AGENT_ROLE_DISCOVERY)
			(*discovering)++;
	}
	return n;
}

/* One stale agent at a time is closed, once the new generation holds a proxy. */
static void
replace_stale(struct pool *p, struct pool_key *k, bool have_claim)
{
	struct pool_agent *victim = NULL;

	for (struct pool_agent *a = k->agents; a != NULL; a = a->next) {
		if (a->gen == k->gen)
			continue;
		if (a->phase == PHASE_CLOSING)
			return;
		if (a->phase != PHASE_GONE)
			victim = a;
	}
	if (victim != NULL && (have_claim || !victim->claimed))
		agent_close(p, victim, "tunnel spec changed");
}

/* Returns 0 if spawning may go on, else the wait imposed by the limiter. */
static uint64_t
limiter_wait(struct pool *p, uint64_t now_ms)
{
	uint64_t w;

	if (ratelimit_take(&p->limiter, now_ms))
		return 0;
	p->stats.spawn_deferred++;
	w = ratelimit_wait_ms(&p->limiter, now_ms);
	return w > 0 ? w : 1;
}

static uint64_t
min_wait(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint64_t
tick_key(struct pool *p, struct pool_key *k, uint64_t now_ms)
{
	uint32_t discovering, want, room;
	uint64_t wait = POOL_TICK_IDLE_MS, w;
	bool have_claim;

	if (k->discovery) {
		w = wanted_next_expiry(&k->set, p->cfg.proxy_ttl_ms);
		if (now_ms >= w)
			key_refresh(p, k, now_ms, true, "expired from the "
			    "discovery set (no agent heard a fresher list "
			    "within discovery.ttl)");
		else if (w != UINT64_MAX)
			wait = min_wait(wait, w - now_ms);
	}
	if (k->removed)
		return wait;
	if (count_current(k, &discovering, &have_claim) == 0) {
		w = k->next_dial_ms > k->miss_until_ms ? k->next_dial_ms :
		    k->miss_until_ms;
		if (now_ms < w)
			return min_wait(wait, w - now_ms);
		if ((w = limiter_wait(p, now_ms)) != 0)
			return w;
		spawn_agent(p, k, AGENT_ROLE_TUNNEL, now_ms);
		return wait;
	}
	replace_stale(p, k, have_claim);
	sweep_unwanted(p, k);
	if (!k->discovery || !have_claim)
		return wait;
	want = unclaimed_wanted(k, NULL);
	room = want < p->cfg.max_inflight_dials ? want :
	    p->cfg.max_inflight_dials;
	/*
	 * In a miss streak, one dial at a time: what is left is hard to hit.
	 * So too while the key holds a proxy on its way out (the sweep leaves
	 * such agents only while no wanted one is up): the fleet is being
	 * replaced, and the balancer may not have moved yet.  One probe finds
	 * out; once it lands on a wanted proxy the rest go together.
	 */
	if (room > 1 && (k->miss_streak > 0 || holds_leaving(k, NULL)))
		room = 1;
	if (room <= discovering)
		return wait;
	if ((w = pool_key_disc_retry_ms(k, now_ms)) > 0)
		return min_wait(wait, w);
	for (uint32_t i = discovering; i < room; i++) {
		if ((w = limiter_wait(p, now_ms)) != 0)
			return w;
		spawn_agent(p, k, AGENT_ROLE_DISCOVERY, now_ms);
	}
	return wait;
}

uint64_t
pool_tick(struct pool *p, uint64_t now_ms)
{
	uint64_t wait = POOL_TICK_IDLE_MS;
	struct pool_key *k, *kn;

	for (k = p->keys; k != NULL; k = kn) {
		kn = k->lnext;
		if (k->removed && k->agents == NULL) {
			key_free(p, k);
			continue;
		}
		wait = min_wait(wait, tick_key(p, k, now_ms));
	}
	return wait;
}

/* --- events from workers ------------------------------------------------------ */

void
pool_agent_state(struct pool *p, struct pool_agent *a,
    const struct msg_state *st, uint64_t now_ms)
{
	(void)p;
	if (a->state != st->state)
		a->state_ms = now_ms;
	a->state = st->state;
	if (st->fp[0] != '\0')
		memcpy(a->fp, st->fp, sizeof(a->fp));
	if (st->name[0] != '\0')
		memcpy(a->name, st->name, sizeof(a->name));
	agent_fill_name(a);
	if (st->state == AGENT_DISCONNECTED && st->reason[0] != '\0')
		memcpy(a->last_error, st->reason, sizeof(a->last_error));
	if (st->state == AGENT_CONNECTED || st->state == AGENT_DISCOVERED) {
		a->key->connects++;
		backoff_up(&a->key->backoff, now_ms);
	}
}

/*
 * A proxy is known by its host key; its name comes from the announced set
 * when the agent has not learned it yet (its own stream may lag its claim).
 */
static void
agent_fill_name(struct pool_agent *a)
{
	const struct wanted_proxy *px;

	if (a->name[0] == '\0' && a->fp[0] != '\0' &&
	    (px = wanted_find(&a->key->set, a->fp)) != NULL)
		memcpy(a->name, px->name, sizeof(a->name));
}

/* The decision alone; returns the refusal reason or NULL to grant. */
static const char *
claim_decide(struct pool *p, struct pool_agent *a, const char *fp)
{
	struct pool_key *k = a->key;

	if (a->phase == PHASE_CLOSING || a->phase == PHASE_GONE)
		return "agent is closing";
	if (k->removed)
		return "tunnel removed";
	for (struct pool_agent *o = k->agents; o != NULL; o = o->next) {
		if (o == a || !o->claimed || o->phase == PHASE_GONE ||
		    strcmp(o->fp, fp) != 0)
			continue;
		if (o->gen == k->gen && o->phase != PHASE_CLOSING)
			return "proxy already claimed";
		/* A stale or closing holder hands over to the new agent. */
		agent_close(p, o, "replaced by a newer agent");
	}
	/*
	 * Once current lists exist, a proxy none of them names is not wanted
	 * by any role: whoever lands there through the balancer would hold
	 * a proxy the cluster says is gone.
	 */
	if (!claim_fits(k, fp))
		return "proxy not in the announced set";
	return NULL;
}

/* Whether the key missed on fp since its last step; records it if not. */
static bool
miss_seen(struct pool_key *k, const char *fp)
{
	uint64_t h = key_hash(fp, "");

	for (uint8_t i = 0; i < k->n_miss_seen; i++)
		if (k->miss_seen[i] == h)
			return true;
	if (k->n_miss_seen == sizeof(k->miss_seen) / sizeof(k->miss_seen[0]))
		k->n_miss_seen = 0;
	k->miss_seen[k->n_miss_seen++] = h;
	return false;
}

/*
 * The spread allowance: a balancer that spreads over the n wanted proxies,
 * u of them unclaimed, sends a dial to a proxy the key holds with chance
 * 1 - u/n; 3n/u such misses in a row happen by chance about once in 20
 * (e^-3) and cost a handful of quick dials (at most MISS_SPREAD_MAX).
 * Within it, a miss on a wanted proxy another agent of the key holds
 * keeps the delay, repeats too, unless every miss since the last step
 * was on that one proxy (the balancer sticks to it: the spread rule, so
 * a sticky balancer doubles from its second miss as before).  Past it,
 * the balancer is not spreading over the set (the new proxies are not
 * behind it yet, or are down there): the spread rule doubles on repeats,
 * up to backoff.max, as for any miss.
 */
#define MISS_SPREAD_MAX	16

static bool
miss_spreads(const struct pool_key *k, const struct pool_agent *a)
{
	uint32_t u = unclaimed_wanted(k, NULL), allow;
	uint64_t h = key_hash(a->fp, "");

	if (u == 0 || !is_wanted(k, a->fp) || !is_claimed(k, a->fp, a))
		return false;
	/* Every miss since the last step on this one proxy: it sticks. */
	if (k->n_miss_seen == 1 && k->miss_seen[0] == h)
		return false;
	allow = 3 * k->set.n / u;
	if (allow > MISS_SPREAD_MAX)
		allow = MISS_SPREAD_MAX;
	return k->n_spread < allow;
}

/*
 * The lag pacing's next gap: the step's full delay plus up to a quarter of
 * it.  Not full jitter as for failures: a probe earlier than the step
 * would probe a lagging balancer at the rate the doubling is there to
 * avoid; the upward quarter keeps nodes that heard one announcement at
 * the same moment from probing in step.
 */
static uint64_t
lag_delay(const struct backoff *b, uint32_t rnd)
{
	uint64_t cap = backoff_cap(b);

	return cap + (uint64_t)(((unsigned __int128)rnd * (cap / 4 + 1)) >> 32);
}

void
pool_agent_missed(struct pool *p, struct pool_agent *a, uint64_t now_ms)
{
	struct pool_key *k = a->key;
	uint64_t delay;
	bool spread;

	if (a->missed)
		return;
	a->missed = true;
	k->misses++;
	p->stats.misses++;
	/*
	 * Dials started before the last round's miss were in flight with it:
	 * one round.  A balancer that sends the next dial to a proxy it
	 * already sent one to since the last step is repeating itself (sticky,
	 * or nothing else left): the delay doubles, up to backoff.max.  One
	 * that lands somewhere new is still spreading: same delay again; so
	 * too, within the spread allowance, one on a held proxy (miss_spreads).
	 */
	if (k->miss_streak > 0 && a->started_ms <= k->miss_round_ms &&
	    now_ms < k->miss_until_ms)
		return;
	if (is_claimed(k, a->fp, a) && holds_leaving(k, a)) {
		/*
		 * It landed on a proxy we already hold while a fleet we hold
		 * is on its way out: the balancer still points at the old
		 * fleet, and the next dial is as likely to land there again.
		 * Every such miss doubles the gap (lag pacing); a claim, a set
		 * that gains a proxy or the old fleet's death ends it.
		 */
		delay = lag_delay(&k->lag, arc4random());
		if (k->lag.attempt < 63)
			k->lag.attempt++;
	} else {
		/* Within the allowance it is recorded, so a repeat may step. */
		spread = miss_spreads(k, a);
		if (spread)
			k->n_spread++;
		if (miss_seen(k, a->fp) && !spread) {
			if (k->miss.attempt < 63)
				k->miss.attempt++;
			k->n_miss_seen = 0;
			(void)miss_seen(k, a->fp); /* the first of the step */
		}
		delay = backoff_delay(&k->miss, arc4random());
	}
	k->miss_streak++;
	k->miss_round_ms = now_ms;
	k->miss_until_ms = now_ms + delay;
}

void
pool_agent_claim(struct pool *p, struct pool_agent *a,
    const struct msg_claim *c, uint64_t now_ms)
{
	const char *why = claim_decide(p, a, c->fp);

	memcpy(a->fp, c->fp, sizeof(a->fp));
	memcpy(a->name, c->name, sizeof(a->name));
	if (why != NULL) {
		a->key->claims_refused++;
		pool_agent_missed(p, a, now_ms);
		p->ops.claim_result(p->arg, a, false, why);
		return;
	}
	a->claimed = true;
	miss_reset(a->key);
	agent_fill_name(a);
	p->ops.claim_result(p->arg, a, true, "granted");
	/* A remembered list of this proxy is current again. */
	cluster_refresh(p, a->key, now_ms);
}

/* Key k (a's or a sibling) hears a's list, filtered by k's own trust. */
static bool
key_hear(struct pool *p, struct pool_key *k, const struct pool_agent *a,
    const struct msg_discovery *d, uint64_t now_ms)
{
	const struct wanted_list *l;
	bool ok[PROTO_MAX_PROXIES], changed, grew;
	int rc;

	for (uint32_t i = 0; i < PROTO_MAX_PROXIES; i++)
		ok[i] = true;
	if (p->ops.trust != NULL)
		p->ops.trust(p->arg, k, d, ok);
	if ((rc = wanted_put(&k->set, a->fp, d, ok, now_ms, &changed)) != 0) {
		log_warnx("%s %s: list of %s dropped: %s", k->cluster,
		    k->dial_addr, a->fp, tp_strerror(rc));
		return false;
	}
	if (changed && (l = wanted_list_of(&k->set, a->fp)) != NULL &&
	    l->untrusted > 0)
		log_warnx("%s %s: the list of %s names %u host key%s this node "
		    "does not trust: not wanted", k->cluster, k->dial_addr,
		    a->name[0] != '\0' ? a->name : a->fp, l->untrusted,
		    l->untrusted == 1 ? "" : "s");
	grew = key_refresh(p, k, now_ms, changed, NOT_NAMED);
	for (struct pool_agent *o = k->agents; o != NULL; o = o->next)
		agent_fill_name(o);
	return grew;
}

bool
pool_agent_discovery(struct pool *p, struct pool_agent *a,
    const struct msg_discovery *d, uint64_t now_ms)
{
	struct pool_key *s;
	bool grew = false;

	/* Only a held proxy's list counts (the worker sends none before). */
	if (!a->key->discovery || !a->claimed || a->phase == PHASE_GONE)
		return false;
	/* Its proxies announce the cluster's set: every dial address hears it. */
	FOR_CLUSTER(p, a->key, s)
		if (s->discovery)
			grew |= key_hear(p, s, a, d, now_ms);
	return grew;
}

void
pool_agent_stats(struct pool *p, struct pool_agent *a,
    const struct msg_stats *s)
{
	(void)p;
	a->stats = *s;
}

void
pool_agent_forward(struct pool *p, struct pool_agent *a,
    const struct msg_forward *f)
{
	(void)p;
	for (uint32_t i = 0; i < a->n_forwards; i++)
		if (a->forwards[i].id == f->id) {
			a->forwards[i] = *f;
			return;
		}
	if (a->n_forwards < PROTO_MAX_FORWARDS)
		a->forwards[a->n_forwards++] = *f;
}

/*
 * Agents that were out together and fail together (a fleet going away, a
 * balancer restart) are one failure, not one each: a loss is a backoff
 * step unless its agent was started before the current step and that
 * step's delay still runs.  Returns when the next dial may go.
 */
static uint64_t
fail_step(struct pool_key *k, const struct pool_agent *a, uint64_t now_ms)
{
	if (now_ms < k->fail_until_ms && a->started_ms <= k->fail_round_ms)
		return k->fail_until_ms;
	k->fail_round_ms = now_ms;
	k->fail_until_ms = now_ms + backoff_next(&k->backoff, now_ms,
	    arc4random());
	return k->fail_until_ms;
}

void
pool_agent_lost(struct pool *p, struct pool_agent *a, const char *reason,
    bool failed, uint64_t now_ms)
{
	struct pool_key *k = a->key;
	/* Only a proxy we held can be let go of; a dial that failed did fail. */
	bool let_go = a->claimed && !pool_agent_wanted(a);
	uint64_t until, *t;

	agent_unlink(p, a);
	if (k->agents == NULL) {
		k->down = true;
		k->down_ms = now_ms;
	}
	k->rx_done += a->stats.rx_bytes;
	k->tx_done += a->stats.tx_bytes;
	k->channels_done += a->stats.channels_total;
	k->dial_failures_done += a->stats.dial_failures;
	/*
	 * A reconnect is a wanted proxy we held and lost, not a discovery
	 * dial; losing a proxy the cluster no longer announces is no failure.
	 */
	if (a->claimed && failed && !let_go)
		k->reconnects++;
	if (let_go) {
		/*
		 * A proxy the cluster announced away is gone: the fleet the
		 * balancer kept sending our misses to is going.  What those
		 * misses taught is moot, and the key may hold nothing now:
		 * the next dial goes at once, not at the end of a miss
		 * streak grown while the balancer lagged the announcement.
		 */
		miss_reset(k);
	} else if (a->missed) {
		/* A miss is paced by pool_agent_missed, not the backoff. */
	} else if (failed) {
		until = fail_step(k, a, now_ms);
		t = a->role == AGENT_ROLE_DISCOVERY ? &k->next_disc_ms :
		    &k->next_dial_ms;
		if (until > *t)
			*t = until;
	}
	(void)reason;
	/* Its proxy's list is no longer current (unless another holds it). */
	if (a->claimed)
		cluster_refresh(p, k, now_ms);
	agent_free(a);
}

void
pool_close_all(struct pool *p, const char *reason)
{
	for (struct pool_key *k = p->keys; k != NULL; k = k->lnext)
		key_close_all(p, k, reason);
}

int
pool_close_pid(struct pool *p, pid_t pid, const char *reason)
{
	for (struct pool_key *k = p->keys; k != NULL; k = k->lnext)
		for (struct pool_agent *a = k->agents; a != NULL; a = a->next)
			if (pid > 0 && a->pid == pid) {
				agent_close(p, a, reason);
				return 0;
			}
	return TP_ENOENT;
}

int
pool_close_key(struct pool *p, const char *cluster, const char *dial,
    const char *reason)
{
	struct pool_key *k = key_find(p, cluster, dial);

	if (k == NULL)
		return TP_ENOENT;
	key_close_all(p, k, reason);
	return 0;
}

struct pool_key *
pool_keys(struct pool *p)
{
	return p->keys;
}

size_t
pool_nkeys(const struct pool *p)
{
	return p->nkeys;
}

size_t
pool_nagents(const struct pool *p)
{
	return p->nagents;
}

const struct pool_stats *
pool_get_stats(const struct pool *p)
{
	return &p->stats;
}
