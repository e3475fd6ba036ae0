/*
 * The pool logic: diff (add / remove / unchanged / changed), claims, the
 * wanted-set rule (current lists, union under skew, remembered lists and
 * their TTL, trust filter, make before break), miss pacing, parallel
 * discovery dials, the spawn limiter and backoff.  The
 * effects are recorded by a test ops table; the pool code is the real one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "common/error.h"
#include "supervisor/pool.h"
#include "testutil.h"

#define MAXREC	4096

static struct pool_agent *spawned[MAXREC];
static int nspawned, nclosed, ngranted, nrefused, fail_spawn;
static pid_t next_pid = 100;

static int
op_spawn(void *arg, struct pool_agent *a)
{
	(void)arg;
	if (fail_spawn)
		return -1;
	ck_assert_int_lt(nspawned, MAXREC);
	spawned[nspawned++] = a;
	return 0;
}

static void
op_close(void *arg, struct pool_agent *a, const char *reason)
{
	(void)arg;
	(void)reason;
	ck_assert_int_eq(a->phase, PHASE_CLOSING);
	nclosed++;
}

static void
op_claim(void *arg, struct pool_agent *a, bool granted, const char *reason)
{
	(void)arg;
	(void)a;
	(void)reason;
	if (granted)
		ngranted++;
	else
		nrefused++;
}

/* Keys starting "SHA256:BAD" are ones this node could never trust. */
static void
op_trust(void *arg, const struct pool_key *k, const struct msg_discovery *d,
    bool *ok)
{
	(void)arg;
	(void)k;
	for (uint32_t i = 0; i < d->n_proxies; i++)
		ok[i] = strncmp(d->proxies[i].fp, "SHA256:BAD", 10) != 0;
}

static const struct pool_ops ops = { op_spawn, op_close, op_claim, op_trust };

static struct pool_config
cfg(void)
{
	struct pool_config c = {
		.backoff_min_ms = 1000, .backoff_max_ms = 30000,
		.backoff_reset_ms = 30000, .max_inflight_dials = 3,
		.spawn_rate = 1000, .spawn_burst = 1000,
		.proxy_ttl_ms = 180000, .miss_retry_ms = 500,
		.lag_probe_max_ms = 4000,
	};
	return c;
}

static void
reset(void)
{
	nspawned = nclosed = ngranted = nrefused = fail_spawn = 0;
}

static struct pool_want
want(const char *cluster, const char *dial, uint64_t hash, bool disc)
{
	struct pool_want w = { cluster, dial, hash, disc, NULL };
	return w;
}

/* Brings agent a to "claimed + connected" on proxy fp. */
static void
land(struct pool *p, struct pool_agent *a, const char *fp, uint64_t now)
{
	struct msg_claim c = { 0 };
	struct msg_state st = { 0 };

	pool_agent_spawned(p, a, next_pid++, now);
	strcpy(c.fp, fp);
	strcpy(c.name, fp);
	pool_agent_claim(p, a, &c, now);
	st.state = a->role == AGENT_ROLE_DISCOVERY ? AGENT_DISCOVERED :
	    AGENT_CONNECTED;
	strcpy(st.fp, fp);
	pool_agent_state(p, a, &st, now);
}

/*
 * A tick at t; every dial it starts lands on fp and is refused (a miss).
 * Returns how many it started.
 */
static int
miss_on(struct pool *p, const char *fp, uint64_t t)
{
	int from = nspawned;

	pool_tick(p, t);
	for (int j = from; j < nspawned; j++) {
		land(p, spawned[j], fp, t);
		pool_agent_lost(p, spawned[j], "claim refused", false, t);
	}
	return nspawned - from;
}

START_TEST(diff_add_remove_unchanged_changed)
{
	struct pool_config c = cfg();
	struct pool *p;
	struct pool_want w[3];

	reset();
	p = pool_new(&c, &ops, NULL, 0);
	w[0] = want("a", "lb-a:22", 1, false);
	w[1] = want("b", "lb-b:22", 2, false);
	ck_assert_int_eq(pool_sync(p, w, 2, 0), 0);
	ck_assert_int_eq(nspawned, 2);		/* added */
	land(p, spawned[0], "SHA256:A", 0);
	land(p, spawned[1], "SHA256:B", 0);
	/* Same set again: nothing touched. */
	ck_assert_int_eq(pool_sync(p, w, 2, 10), 0);
	ck_assert_int_eq(nspawned, 2);
	ck_assert_int_eq(nclosed, 0);
	/* b removed, c added, a's spec changed. */
	w[0].spec_hash = 99;
	w[1] = want("c", "lb-c:22", 3, false);
	ck_assert_int_eq(pool_sync(p, w, 2, 20), 0);
	ck_assert_int_eq(nclosed, 1);		/* b's agent */
	ck_assert_int_eq(nspawned, 4);		/* c's, and a's new generation */
	/* Keys tick in insertion order: a's new generation, then c. */
	ck_assert_str_eq(spawned[2]->key->cluster, "a");
	ck_assert_int_eq(spawned[2]->gen, 1);
	ck_assert_str_eq(spawned[3]->key->cluster, "c");
	/* The old agent of a stays until the new one holds a proxy. */
	pool_tick(p, 25);
	ck_assert_int_eq(nclosed, 1);
	land(p, spawned[2], "SHA256:A2", 30);
	pool_tick(p, 40);
	ck_assert_int_eq(nclosed, 2);
	ck_assert_int_eq(spawned[0]->phase, PHASE_CLOSING);
	/* Lost agents are unlinked; a removed key disappears when empty. */
	pool_agent_lost(p, spawned[1], "closed", false, 50);
	pool_agent_lost(p, spawned[0], "closed", false, 50);
	pool_tick(p, 60);
	ck_assert_uint_eq(pool_nkeys(p), 2);
	ck_assert_uint_eq(pool_nagents(p), 2);
	pool_free(p);
}
END_TEST

/* A full list from agent a's proxy: the fps given, each named after its fp. */
static bool
announce(struct pool *p, struct pool_agent *a, uint64_t now, ...)
{
	struct msg_discovery *d = calloc(1, sizeof(*d));
	const char *fp;
	va_list ap;
	bool grew;

	va_start(ap, now);
	while ((fp = va_arg(ap, const char *)) != NULL) {
		snprintf(d->proxies[d->n_proxies].fp, PROTO_FP_MAX, "%s", fp);
		snprintf(d->proxies[d->n_proxies].name, PROTO_NAME_MAX, "n-%s",
		    fp + 7);
		d->n_proxies++;
	}
	va_end(ap);
	snprintf(d->cluster, sizeof(d->cluster), "%s", a->key->cluster);
	grew = pool_agent_discovery(p, a, d, now);
	free(d);
	return grew;
}

static bool
wanted(struct pool_key *k, const char *fp)
{
	return wanted_find(&k->set, fp) != NULL;
}

/* A pool with one discovery key (a, lb:22); its first agent is spawned. */
static struct pool *
disc_pool(void)
{
	struct pool_config c = cfg();
	struct pool_want w = want("a", "lb:22", 1, true);
	struct pool *p;

	reset();
	p = pool_new(&c, &ops, NULL, 0);
	pool_sync(p, &w, 1, 0);
	ck_assert_int_eq(nspawned, 1);
	return p;
}

/*
 * The key with an agent up on each of the n fps: the first one's list
 * names them all, discovery dials land on the others.
 */
static struct pool *
held(int n, const char *const *fps, uint64_t now)
{
	struct pool *p = disc_pool();
	struct msg_discovery *d = calloc(1, sizeof(*d));

	land(p, spawned[0], fps[0], now);
	for (int j = 0; j < n; j++)
		snprintf(d->proxies[d->n_proxies++].fp, PROTO_FP_MAX, "%s",
		    fps[j]);
	pool_agent_discovery(p, spawned[0], d, now);
	free(d);
	pool_tick(p, now);
	for (int i = 1; i < n; i++) {
		ck_assert_int_gt(nspawned, i);
		land(p, spawned[i], fps[i], now);
	}
	ck_assert_uint_eq(pool_key_claimed(pool_keys(p)), (uint32_t)n);
	return p;
}

START_TEST(claims_and_discovery_fanout)
{
	struct pool *p = disc_pool();

	land(p, spawned[0], "SHA256:P0", 0);
	ck_assert_int_eq(ngranted, 1);
	/* The tunnel agent announces 5 proxies: 4 wanted, 3 dialled at once. */
	ck_assert(announce(p, spawned[0], 0, "SHA256:P0", "SHA256:P1",
	    "SHA256:P2", "SHA256:P3", "SHA256:P4", NULL));
	pool_tick(p, 0);
	ck_assert_int_eq(nspawned, 4);
	ck_assert_int_eq(spawned[1]->role, AGENT_ROLE_DISCOVERY);
	ck_assert_uint_eq(spawned[1]->n_wanted, 4);
	ck_assert_uint_eq(pool_keys(p)->dials, 4);
	/* One lands on P0, already claimed: a miss, refused. */
	land(p, spawned[1], "SHA256:P0", 10);
	ck_assert_int_eq(nrefused, 1);
	ck_assert(spawned[1]->missed);
	/* A proxy outside the announced set is refused too. */
	land(p, spawned[2], "SHA256:ROGUE", 10);
	ck_assert_int_eq(nrefused, 2);
	ck_assert_uint_eq(pool_keys(p)->claims_refused, 2);
	ck_assert_uint_eq(pool_keys(p)->misses, 2);
	/* Both were in flight together: one round; on a new proxy: no step. */
	ck_assert_uint_eq(pool_keys(p)->miss_streak, 1);
	ck_assert_uint_eq(pool_keys(p)->miss.attempt, 0);
	pool_agent_lost(p, spawned[1], "claim refused", false, 10);
	pool_agent_lost(p, spawned[2], "claim refused", false, 10);
	/* In a miss streak, one dial at a time, after the pacing delay. */
	pool_tick(p, 20);
	ck_assert_int_eq(nspawned, 4);
	pool_tick(p, 10 + 500);
	ck_assert_int_eq(nspawned, 4);		/* spawned[3] still in flight */
	/* A grant ends the streak: the rest go out at once, in parallel. */
	land(p, spawned[3], "SHA256:P1", 600);
	ck_assert_int_eq(ngranted, 2);
	ck_assert_uint_eq(pool_keys(p)->miss_streak, 0);
	ck_assert_uint_eq(pool_key_claimed(spawned[0]->key), 2);
	pool_tick(p, 600);
	ck_assert_int_eq(nspawned, 7);		/* wanted P2 P3 P4, 3 at once */
	pool_free(p);
}
END_TEST

/* Scale-in: a proxy no current list names is closed at once, no TTL wait. */
START_TEST(dropped_proxy_closed_at_once)
{
	const char *fps[] = { "SHA256:P0", "SHA256:P1", "SHA256:P2" };
	struct pool *p = held(3, fps, 0);
	struct pool_key *k = pool_keys(p);

	announce(p, spawned[1], 0, fps[0], fps[1], fps[2], NULL);
	announce(p, spawned[2], 0, fps[0], fps[1], fps[2], NULL);
	ck_assert_int_eq(nclosed, 0);
	/* Two lists drop P2; P2's own list still names it: still wanted. */
	announce(p, spawned[0], 1000, fps[0], fps[1], NULL);
	announce(p, spawned[1], 1000, fps[0], fps[1], NULL);
	ck_assert(wanted(k, fps[2]));
	ck_assert_int_eq(nclosed, 0);
	/* P2's list drops it too (it "does not contain itself"): closed. */
	announce(p, spawned[2], 1000, fps[0], fps[1], NULL);
	ck_assert(!wanted(k, fps[2]));
	ck_assert_int_eq(nclosed, 1);
	ck_assert_int_eq(spawned[2]->phase, PHASE_CLOSING);
	ck_assert(!pool_agent_wanted(spawned[2]));
	ck_assert_uint_eq(k->set.n, 2);
	/* Its loss is not a failure: no backoff, no reconnect. */
	pool_agent_lost(p, spawned[2], "proxy closed", true, 1100);
	ck_assert_uint_eq(k->reconnects, 0);
	ck_assert_uint_eq(k->backoff.attempt, 0);
	/* Nothing is wanted and unclaimed: no dial. */
	pool_tick(p, 5000);
	ck_assert_int_eq(nspawned, 3);
	/*
	 * A dial that authenticates P2 (still behind the balancer) and then
	 * fails before any claim is a failure like any other: backoff, or
	 * a drained proxy that refuses our key would be dialled in a loop.
	 */
	pool_agent_lost(p, spawned[0], "killed", true, 6000);
	pool_tick(p, 6000 + 1000);
	ck_assert_int_eq(nspawned, 4);
	{
		struct msg_state st = { 0 };

		pool_agent_spawned(p, spawned[3], next_pid++, 7000);
		st.state = AGENT_CONNECTING;
		strcpy(st.fp, fps[2]);
		pool_agent_state(p, spawned[3], &st, 7000);
	}
	ck_assert_uint_eq(k->backoff.attempt, 1);
	pool_agent_lost(p, spawned[3], "auth failed", true, 7100);
	ck_assert_uint_eq(k->backoff.attempt, 2);
	ck_assert_uint_ge(k->next_disc_ms, 7100 + 1000);
	pool_free(p);
}
END_TEST

/*
 * A rolling replacement: every list names only the new fleet.  The old
 * agents stay until a new proxy is up (make before break), then all go.
 */
START_TEST(replacement_make_before_break)
{
	const char *fps[] = { "SHA256:P0", "SHA256:P1", "SHA256:P2" };
	struct pool *p = held(3, fps, 0);
	struct pool_key *k = pool_keys(p);
	int before;
	struct msg_claim cl = { 0 };
	struct msg_state st = { 0 };

	for (int i = 0; i < 3; i++)
		announce(p, spawned[i], 100, "SHA256:N0", "SHA256:N1",
		    "SHA256:N2", NULL);
	ck_assert(!wanted(k, fps[0]) && wanted(k, "SHA256:N1"));
	ck_assert_int_eq(nclosed, 0);		/* no wanted proxy up yet */
	before = nspawned;
	pool_tick(p, 100);
	/* Holding only proxies announced away: one probe, not three. */
	ck_assert_int_eq(nspawned, before + 1);
	ck_assert_uint_eq(spawned[before]->n_wanted, 3);
	/* Claimed is not enough: the new agent must be up. */
	pool_agent_spawned(p, spawned[before], next_pid++, 200);
	strcpy(cl.fp, "SHA256:N1");
	pool_agent_claim(p, spawned[before], &cl, 200);
	pool_tick(p, 200);
	ck_assert_int_eq(nclosed, 0);
	st.state = AGENT_DISCOVERED;
	strcpy(st.fp, "SHA256:N1");
	pool_agent_state(p, spawned[before], &st, 300);
	pool_tick(p, 300);
	ck_assert_int_eq(nclosed, 3);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(spawned[i]->phase, PHASE_CLOSING);
	/* A wanted proxy is up, the old ones close: the other two together. */
	ck_assert_int_eq(nspawned, before + 3);
	/* The old sshds die: no failure, nothing re-dialled for them. */
	for (int i = 0; i < 3; i++)
		pool_agent_lost(p, spawned[i], "proxy closed", true, 400);
	ck_assert_uint_eq(k->reconnects, 0);
	ck_assert_uint_eq(k->set.n, 3);
	pool_free(p);
}
END_TEST

/*
 * The announcement runs far ahead of the balancer: every dial lands on
 * the old fleet the key still holds, the same proxies again and again,
 * and the miss delay grows.  Then the operator kills the old fleet: the
 * balancer has moved on, so the key, holding nothing now, dials at once
 * instead of waiting out a miss streak that no longer means anything.
 */
START_TEST(old_fleet_gone_ends_the_miss_streak)
{
	const char *fps[] = { "SHA256:P0", "SHA256:P1", "SHA256:P2" };
	struct pool *p = held(3, fps, 0);
	struct pool_key *k = pool_keys(p);
	uint64_t t = 100, last = 0;
	int from, old[3];

	for (int i = 0; i < 3; i++) {
		old[i] = i;
		announce(p, spawned[i], t, "SHA256:N0", "SHA256:N1",
		    "SHA256:N2", NULL);
	}
	for (int n = 0; n < 12; n++) {
		from = nspawned;
		pool_tick(p, t);
		ck_assert_int_ge(nspawned - from, 1);
		for (int j = from; j < nspawned; j++) {
			land(p, spawned[j], fps[n % 3], t);
			pool_agent_lost(p, spawned[j], "claim refused", false,
			    t);
		}
		last = t;
		t = k->miss_until_ms > t ? k->miss_until_ms : t + 1;
	}
	ck_assert_uint_ge(k->lag.attempt, 3);
	ck_assert_int_eq(nclosed, 0);		/* make before break */
	/* The old sshds are killed, the balancer points at the new fleet. */
	t = last + 10;
	ck_assert_uint_gt(k->miss_until_ms, t);	/* a wait is pending */
	for (int i = 0; i < 3; i++)
		pool_agent_lost(p, spawned[old[i]], "proxy closed", true, t);
	ck_assert_uint_eq(k->miss_streak, 0);
	ck_assert_uint_eq(k->reconnects, 0);	/* no failure either */
	from = nspawned;
	pool_tick(p, t);
	ck_assert_int_eq(nspawned - from, 1);
	ck_assert_int_eq(spawned[from]->role, AGENT_ROLE_TUNNEL);
	pool_free(p);
}
END_TEST

/*
 * The balancer lags a rolling replacement: every probe lands on an old
 * proxy the key holds.  One probe at a time, each such miss doubling the
 * gap from backoff.min (1 s) up to discovery.lag_probe_max (4 s), plus at
 * most a quarter; when one lands on the new fleet, the old agents close
 * and the other two new proxies are dialled together.
 */
START_TEST(lagging_balancer_probes_double)
{
	const char *fps[] = { "SHA256:P0", "SHA256:P1", "SHA256:P2" };
	const uint64_t step[] = { 1000, 2000, 4000, 4000, 4000 };
	struct pool *p = held(3, fps, 0);
	struct pool_key *k = pool_keys(p);
	uint64_t t = 100, prev = 0;
	int from, n = 0;
	struct msg_state st = { 0 };
	struct msg_claim cl = { 0 };

	for (int i = 0; i < 3; i++)
		announce(p, spawned[i], t, "SHA256:N0", "SHA256:N1",
		    "SHA256:N2", NULL);
	while (n < 6) {
		from = nspawned;
		pool_tick(p, t);
		if (nspawned == from) {
			t += 10;
			continue;
		}
		ck_assert_int_eq(nspawned - from, 1);	/* one probe */
		if (n > 0) {
			ck_assert_uint_ge(t - prev, step[n - 1]);
			ck_assert_uint_le(t - prev, step[n - 1] * 5 / 4 + 10);
		}
		prev = t;
		land(p, spawned[from], fps[n % 3], t);	/* an old proxy */
		pool_agent_lost(p, spawned[from], "claim refused", false, t);
		n++;
	}
	ck_assert_uint_eq(k->misses, 6);
	ck_assert_uint_eq(k->miss.attempt, 0);	/* not the spread pacing */
	ck_assert_int_eq(nclosed, 0);		/* make before break */
	/* The balancer moved: the next probe lands on N0. */
	t = k->miss_until_ms;
	from = nspawned;
	pool_tick(p, t);
	ck_assert_int_eq(nspawned - from, 1);
	pool_agent_spawned(p, spawned[from], next_pid++, t);
	strcpy(cl.fp, "SHA256:N0");
	pool_agent_claim(p, spawned[from], &cl, t);
	ck_assert_uint_eq(k->lag.attempt, 0);
	st.state = AGENT_DISCOVERED;
	strcpy(st.fp, "SHA256:N0");
	pool_agent_state(p, spawned[from], &st, t);
	pool_tick(p, t);
	ck_assert_int_eq(nclosed, 3);
	ck_assert_int_eq(nspawned - from, 3);	/* N1 and N2 together */
	pool_free(p);
}
END_TEST

/*
 * The rewrite of the proxies files is in progress: P0 already announces
 * the new fleet, P1 and P2 still the old one, so the union still wants
 * all six.  P0 leaves itself out: it is on its way out, so one probe, and
 * a probe that lands on a proxy already held is paced as a lag.  Then
 * the other lists follow, and the old three are announced away.
 */
START_TEST(rewrite_in_progress_probes_once)
{
	const char *fps[] = { "SHA256:P0", "SHA256:P1", "SHA256:P2" };
	struct pool *p = held(3, fps, 0);
	struct pool_key *k = pool_keys(p);
	uint64_t t = 100;
	int from;

	announce(p, spawned[1], t, fps[0], fps[1], fps[2], NULL);
	announce(p, spawned[2], t, fps[0], fps[1], fps[2], NULL);
	ck_assert(announce(p, spawned[0], t, "SHA256:N0", "SHA256:N1",
	    "SHA256:N2", NULL));
	ck_assert(wanted(k, fps[0]) && wanted(k, "SHA256:N0"));
	ck_assert_int_eq(miss_on(p, fps[1], t), 1);	/* one probe */
	ck_assert_uint_eq(k->lag.attempt, 1);
	ck_assert_uint_ge(k->miss_until_ms, t + 1000);
	ck_assert_uint_le(k->miss_until_ms, t + 1250);
	/* The rewrite completes: still one probe at a time, still lagging. */
	announce(p, spawned[1], t + 10, "SHA256:N0", "SHA256:N1", "SHA256:N2",
	    NULL);
	announce(p, spawned[2], t + 10, "SHA256:N0", "SHA256:N1", "SHA256:N2",
	    NULL);
	ck_assert(!wanted(k, fps[0]) && !wanted(k, fps[1]));
	t = k->miss_until_ms;
	from = nspawned;
	pool_tick(p, t);
	ck_assert_int_eq(nspawned - from, 1);
	land(p, spawned[from], fps[2], t);
	ck_assert_uint_eq(k->lag.attempt, 2);
	ck_assert_int_eq(nclosed, 0);
	pool_free(p);
}
END_TEST

/*
 * The old fleet dies before any old agent relays the new lists: they are
 * remembered (TTL), but cannot veto the new proxy the next agent lands
 * on; its list becomes current and replaces them at once.
 */
START_TEST(remembered_lists_do_not_veto)
{
	const char *fps[] = { "SHA256:P0", "SHA256:P1" };
	struct pool *p = held(2, fps, 0);
	struct pool_key *k = pool_keys(p);
	int before;

	announce(p, spawned[1], 0, fps[0], fps[1], NULL);
	pool_agent_lost(p, spawned[0], "proxy closed", true, 1000);
	ck_assert(k->set.have_current);		/* P1's list */
	pool_agent_lost(p, spawned[1], "proxy closed", true, 1000);
	/* Nobody connected: the last lists stay in force, remembered. */
	ck_assert(!k->set.have_current);
	ck_assert_uint_eq(k->set.n, 2);
	ck_assert(!k->set.v[0].current);
	before = nspawned;
	pool_tick(p, 1000 + 30001);
	ck_assert_int_eq(nspawned, before + 1);
	ck_assert_int_eq(spawned[before]->role, AGENT_ROLE_TUNNEL);
	/* It lands on a new proxy: granted, whatever the memory says. */
	land(p, spawned[before], "SHA256:N0", 31002);
	ck_assert(spawned[before]->claimed);
	announce(p, spawned[before], 31003, "SHA256:N0", "SHA256:N1", NULL);
	ck_assert(k->set.have_current);
	ck_assert_uint_eq(k->set.n, 2);
	ck_assert(wanted(k, "SHA256:N1") && !wanted(k, fps[0]));
	ck_assert_uint_eq(k->set.n_lists, 1);
	pool_free(p);
}
END_TEST

/* The TTL only runs while no agent is connected to hear a fresher list. */
START_TEST(ttl_only_without_agents)
{
	struct pool_config c = cfg();
	struct pool *p = disc_pool();
	struct pool_key *k = pool_keys(p);

	land(p, spawned[0], "SHA256:P0", 0);
	announce(p, spawned[0], 0, "SHA256:P0", "SHA256:P1", NULL);
	/* Held, its list never repeated: still in force long after the TTL. */
	pool_tick(p, 10 * c.proxy_ttl_ms);
	ck_assert_uint_eq(k->set.n, 2);
	/* Remembered once no agent can hear a fresher list: TTL from then. */
	fail_spawn = 1;
	pool_agent_lost(p, spawned[0], "proxy dead", true, 10 * c.proxy_ttl_ms);
	ck_assert_uint_eq(k->set.n, 2);
	ck_assert(!k->set.have_current);
	pool_tick(p, 11 * c.proxy_ttl_ms);
	ck_assert_uint_eq(k->set.n, 2);
	pool_tick(p, 11 * c.proxy_ttl_ms + 1);
	ck_assert_uint_eq(k->set.n, 0);
	pool_free(p);
}
END_TEST

START_TEST(ttl_remembered_expiry_edge)
{
	struct pool_config c = cfg();
	struct pool *p = disc_pool();
	struct pool_key *k = pool_keys(p);

	land(p, spawned[0], "SHA256:P0", 0);
	announce(p, spawned[0], 500, "SHA256:P0", "SHA256:P1", NULL);
	fail_spawn = 1;
	pool_agent_lost(p, spawned[0], "proxy dead", true, 600);
	ck_assert_uint_eq(wanted_next_expiry(&k->set, c.proxy_ttl_ms),
	    600 + c.proxy_ttl_ms + 1);
	pool_tick(p, 600 + c.proxy_ttl_ms);
	ck_assert_uint_eq(k->set.n, 2);
	pool_tick(p, 600 + c.proxy_ttl_ms + 1);
	ck_assert_uint_eq(k->set.n, 0);
	ck_assert_uint_eq(k->set.n_lists, 0);
	pool_free(p);
}
END_TEST

/*
 * Two dial addresses of one cluster: their proxies announce the cluster's
 * set, so both keys hear every list, and a list stays current while an
 * agent of either holds its sender (no TTL for the key left alone).
 */
START_TEST(cluster_keys_share_lists)
{
	struct pool_config c = cfg();
	struct pool_want w[2];
	struct pool *p;
	struct pool_key *k1, *k2;

	reset();
	p = pool_new(&c, &ops, NULL, 0);
	w[0] = want("a", "lb1:22", 1, true);
	w[1] = want("a", "lb2:22", 2, true);
	pool_sync(p, w, 2, 0);
	ck_assert_int_eq(nspawned, 2);
	k1 = spawned[0]->key;
	k2 = spawned[1]->key;
	ck_assert_ptr_ne(k1, k2);
	land(p, spawned[0], "SHA256:P0", 0);
	land(p, spawned[1], "SHA256:P1", 0);
	announce(p, spawned[0], 10, "SHA256:P0", "SHA256:P1", "SHA256:P2",
	    NULL);
	ck_assert_uint_eq(k1->set.n, 3);
	ck_assert_uint_eq(k2->set.n, 3);
	ck_assert(k2->set.have_current);
	/* lb2 loses its only agent: P0's list, held through lb1, is current. */
	fail_spawn = 1;
	pool_agent_lost(p, spawned[1], "proxy dead", true, 100);
	ck_assert(k2->set.have_current);
	pool_tick(p, 100 + 2 * c.proxy_ttl_ms);
	ck_assert_uint_eq(k2->set.n, 3);
	/* A change heard through lb1 applies to lb2 as well. */
	announce(p, spawned[0], 200 + 2 * c.proxy_ttl_ms, "SHA256:P0",
	    "SHA256:P1", NULL);
	ck_assert_uint_eq(k1->set.n, 2);
	ck_assert_uint_eq(k2->set.n, 2);
	ck_assert(!wanted(k2, "SHA256:P2"));
	pool_free(p);
}
END_TEST

/* Version skew: two proxies announce different sets; the union is wanted. */
START_TEST(skew_union_of_current_lists)
{
	const char *fps[] = { "SHA256:P0", "SHA256:P1", "SHA256:P2" };
	struct pool *p = held(3, fps, 0);
	struct pool_key *k = pool_keys(p);
	const struct wanted_proxy *px;

	announce(p, spawned[0], 10, fps[0], fps[1], fps[2], NULL);
	announce(p, spawned[1], 20, fps[0], fps[1], fps[2], NULL);
	announce(p, spawned[2], 30, fps[0], fps[1], fps[2], NULL);
	/* P1 has the new file: P2 out, N3 in; the others do not yet. */
	ck_assert(announce(p, spawned[1], 40, fps[0], fps[1], "SHA256:N3",
	    NULL));
	ck_assert_uint_eq(k->set.n, 4);
	ck_assert(wanted(k, fps[2]) && wanted(k, "SHA256:N3"));
	ck_assert_int_eq(nclosed, 0);
	px = wanted_find(&k->set, "SHA256:N3");
	ck_assert_str_eq(px->source_fp, fps[1]);
	ck_assert_uint_eq(px->last_seen_ms, 40);
	/* Stable source: the list that names it longest, not the last heard. */
	px = wanted_find(&k->set, fps[0]);
	ck_assert_str_eq(px->source_fp, fps[0]);
	announce(p, spawned[2], 50, fps[0], fps[1], fps[2], NULL);
	px = wanted_find(&k->set, fps[0]);
	ck_assert_str_eq(px->source_fp, fps[0]);
	ck_assert_uint_eq(px->last_seen_ms, 50);
	/* The rest catch up (P2 too, dropping itself): P2 closed. */
	announce(p, spawned[0], 60, fps[0], fps[1], "SHA256:N3", NULL);
	ck_assert(wanted(k, fps[2]));
	announce(p, spawned[2], 60, fps[0], fps[1], "SHA256:N3", NULL);
	ck_assert(!wanted(k, fps[2]));
	ck_assert_int_eq(nclosed, 1);
	pool_free(p);
}
END_TEST

/* What a list names cannot widen what the pool dials or trusts. */
START_TEST(untrusted_and_foreign_entries)
{
	const char *fps[] = { "SHA256:P0", "SHA256:P1" };
	struct pool *p = held(2, fps, 0);
	struct pool_key *k = pool_keys(p);
	int before = nspawned;

	announce(p, spawned[0], 10, fps[0], fps[1], NULL);
	/* P1 lists itself out and two keys nobody trusts in. */
	announce(p, spawned[1], 10, fps[0], "SHA256:BAD1", "SHA256:BAD2",
	    NULL);
	ck_assert(!wanted(k, "SHA256:BAD1") && !wanted(k, "SHA256:BAD2"));
	ck_assert_uint_eq(wanted_list_of(&k->set, fps[1])->untrusted, 2);
	/* P0's list still names P1: wanted, kept. */
	ck_assert(wanted(k, fps[1]));
	ck_assert_int_eq(nclosed, 0);
	pool_tick(p, 1000);
	ck_assert_int_eq(nspawned, before);	/* nothing to look for */
	/* A list from an agent holding nothing is not a list of the cluster. */
	pool_tick(p, 40000);
	ck_assert_int_eq(nspawned, before);
	pool_free(p);
}
END_TEST

START_TEST(list_needs_a_claim)
{
	struct pool *p = disc_pool();

	pool_agent_spawned(p, spawned[0], next_pid++, 0);
	ck_assert(!announce(p, spawned[0], 0, "SHA256:P0", "SHA256:P1", NULL));
	ck_assert_uint_eq(pool_keys(p)->set.n, 0);
	ck_assert_uint_eq(pool_keys(p)->set.n_lists, 0);
	pool_free(p);
}
END_TEST

/*
 * A balancer that sends every dial to the same proxy (sticky, `balance
 * source`): each dial misses.  One dial at a time, the gaps double up to
 * backoff_max: bounded, never a tight loop.  New information (the set
 * gains a proxy) starts over at once.
 */
START_TEST(sticky_misses_paced)
{
	const char *fps[] = { "SHA256:P0" };
	struct pool *p = held(1, fps, 0);
	struct pool_key *k = pool_keys(p);
	int dials = 0, from;
	uint64_t t, last = 0, gap_max = 0;

	announce(p, spawned[0], 0, "SHA256:P0", "SHA256:P1", "SHA256:P2",
	    NULL);
	for (t = 0; t <= 600000; t += 50) {
		int before = nspawned;

		pool_tick(p, t);
		/* The first round: both wanted at once; then one at a time. */
		ck_assert_int_le(nspawned - before, dials == 0 ? 2 : 1);
		for (int i = before; i < nspawned; i++) {
			if (last != 0 && t - last > gap_max)
				gap_max = t - last;
			last = t;
			dials++;
			land(p, spawned[i], "SHA256:P0", t + 20);
			pool_agent_lost(p, spawned[i], "claim refused", false,
			    t + 20);
		}
	}
	/* 10 minutes, gaps up to 30 s (15 s on average): ~50, never hundreds. */
	ck_assert_int_le(dials, 70);
	ck_assert_int_ge(dials, 15);
	ck_assert_uint_le(gap_max, 30000 + 100);
	ck_assert_uint_eq(k->misses, (uint64_t)dials);
	ck_assert_uint_gt(k->miss.attempt, 5);
	/* The set gains a proxy: the pacing starts over, a dial goes at once. */
	t += 50;
	ck_assert(announce(p, spawned[0], t, "SHA256:P0", "SHA256:P1",
	    "SHA256:P2", "SHA256:P3", NULL));
	ck_assert_uint_eq(k->miss.attempt, 0);
	from = nspawned;
	pool_tick(p, t);
	ck_assert_int_eq(nspawned - from, 3);
	pool_free(p);
}
END_TEST

/*
 * A balancer that spreads (random over five, three of them claimed): the
 * misses land on the held proxies by chance, repeats too, even twice in
 * a row.  Within the spread allowance (3 x 5 wanted / 2 unclaimed = 7)
 * the delay does not grow; past it, a repeat doubles.  Only a balancer
 * that sent every miss to one proxy counts as sticking at once.
 * haproxy's random replays one sequence per process, and 11 dials in a
 * row on held proxies is one of its paths (bench/README.md).
 */
START_TEST(spread_misses_do_not_escalate)
{
	const char *fps[] = { "SHA256:P0", "SHA256:P1", "SHA256:P2" };
	struct pool *p = held(3, fps, 0);
	struct pool_key *k = pool_keys(p);
	uint64_t t = 100;
	const int order[] = { 0, 1, 1, 2, 0, 2, 2 };

	announce(p, spawned[0], t, fps[0], fps[1], fps[2], "SHA256:N3",
	    "SHA256:N4", NULL);
	for (int i = 0; i < 7; i++) {
		t += 600;
		ck_assert_int_ge(miss_on(p, fps[order[i]], t), 1);
		/* The first step's delay: exactly miss_retry_ms (500). */
		ck_assert_uint_eq(k->miss.attempt, 0);
		ck_assert_uint_eq(k->miss_until_ms, t + 500);
	}
	ck_assert_uint_eq(k->miss_streak, 7);
	/* Past the allowance: P1 again is a balancer repeating itself. */
	t += 600;
	ck_assert_int_ge(miss_on(p, fps[1], t), 1);
	ck_assert_uint_eq(k->miss.attempt, 1);
	/* New information (the set gains a proxy): the streak starts over. */
	t += 5000;
	ck_assert(announce(p, spawned[0], t, fps[0], fps[1], fps[2],
	    "SHA256:N3", "SHA256:N4", "SHA256:N5", NULL));
	ck_assert_uint_eq(k->miss_streak, 0);
	ck_assert_uint_eq(k->n_spread, 0);
	/* The same held proxy twice in a row sticks: the delay grows. */
	ck_assert_int_ge(miss_on(p, fps[2], t), 1);
	ck_assert_uint_eq(k->miss.attempt, 0);
	t += 600;
	ck_assert_int_ge(miss_on(p, fps[2], t), 1);
	ck_assert_uint_eq(k->miss.attempt, 1);
	pool_free(p);
}
END_TEST

/*
 * In-flight discovery agents are not replaced when the set changes: the
 * supervisor decides each claim against the set of the moment.
 */
START_TEST(stale_wanted_list_decided_now)
{
	const char *fps[] = { "SHA256:P0" };
	struct pool *p = held(1, fps, 0);
	struct pool_key *k = pool_keys(p);
	int from = nspawned;

	announce(p, spawned[0], 0, "SHA256:P0", "SHA256:P1", "SHA256:P2",
	    NULL);
	pool_tick(p, 0);
	ck_assert_int_eq(nspawned - from, 2);
	ck_assert_uint_eq(spawned[from]->n_wanted, 2);	/* P1, P2 */
	/* While they dial, the set changes: P2 leaves, P3 joins. */
	announce(p, spawned[0], 10, "SHA256:P0", "SHA256:P1", "SHA256:P3",
	    NULL);
	ck_assert_int_eq(nclosed, 0);			/* nobody replaced */
	pool_tick(p, 10);
	ck_assert_int_eq(nspawned - from, 2);		/* room: P1, P3 in flight */
	/* One lands on P3, not on its list: granted (wanted now). */
	land(p, spawned[from], "SHA256:P3", 20);
	ck_assert(spawned[from]->claimed);
	/* The other lands on P2, on its list: refused (not wanted now). */
	land(p, spawned[from + 1], "SHA256:P2", 20);
	ck_assert(!spawned[from + 1]->claimed);
	ck_assert_uint_eq(k->claims_refused, 1);
	pool_free(p);
}
END_TEST

/* Hostile lists: duplicates, the size limits, and many senders. */
START_TEST(wanted_set_limits)
{
	struct wanted_set s;
	struct msg_discovery *d = calloc(1, sizeof(*d));
	bool changed;
	char fp[PROTO_FP_MAX];

	memset(&s, 0, sizeof(s));
	d->n_proxies = PROTO_MAX_PROXIES;
	for (int i = 0; i < PROTO_MAX_PROXIES; i++)
		snprintf(d->proxies[i].fp, PROTO_FP_MAX, "SHA256:D%d", i % 7);
	ck_assert_int_eq(wanted_put(&s, "SHA256:S", d, NULL, 1, &changed), 0);
	ck_assert(changed);
	s.lists[0].current = true;
	ck_assert_int_eq(wanted_rebuild(&s, 1, 1000, NULL, NULL), 7);
	ck_assert_uint_eq(s.n, 7);
	/* The same list again: a repeat, no rebuild needed. */
	ck_assert_int_eq(wanted_put(&s, "SHA256:S", d, NULL, 2, &changed), 0);
	ck_assert(!changed);
	ck_assert_uint_eq(s.v[0].last_seen_ms, 2);
	/* 256 distinct entries each from 256 senders: capped, no failure. */
	for (int i = 0; i < PROTO_MAX_PROXIES; i++)
		snprintf(d->proxies[i].fp, PROTO_FP_MAX, "SHA256:E%d", i);
	for (int j = 0; j < PROTO_MAX_PROXIES + 5; j++) {
		snprintf(fp, sizeof(fp), "SHA256:S%d", j);
		snprintf(d->proxies[0].fp, PROTO_FP_MAX, "SHA256:X%d", j);
		ck_assert_int_eq(wanted_put(&s, fp, d, NULL, 3, &changed),
		    j < PROTO_MAX_PROXIES - 1 ? 0 : TP_ERANGE);
		if (j < PROTO_MAX_PROXIES - 1)
			s.lists[s.n_lists - 1].current = true;
	}
	ck_assert_uint_eq(s.n_lists, PROTO_MAX_PROXIES);
	ck_assert_int_ge(wanted_rebuild(&s, 3, 1000, NULL, NULL), 0);
	ck_assert_uint_eq(s.n, PROTO_MAX_PROXIES);
	for (uint32_t i = 1; i < s.n; i++)
		ck_assert_int_lt(strcmp(s.v[i - 1].fp, s.v[i].fp), 0);
	/* A stale remembered list is evicted for a new sender. */
	s.lists[5].current = false;
	ck_assert_int_eq(wanted_put(&s, "SHA256:NEW", d, NULL, 4, &changed), 0);
	ck_assert_ptr_nonnull(wanted_list_of(&s, "SHA256:NEW"));
	/* Unterminated strings from a hostile worker stay in bounds. */
	memset(d->proxies[0].name, 'x', PROTO_NAME_MAX);
	memset(d->proxies[0].fp, 'y', PROTO_FP_MAX);
	ck_assert_int_eq(wanted_put(&s, "SHA256:NEW", d, NULL, 5, &changed), 0);
	ck_assert_uint_eq(strlen(wanted_list_of(&s, "SHA256:NEW")->v[0].px.fp),
	    PROTO_FP_MAX - 1);
	wanted_clear(&s);
	ck_assert_uint_eq(s.n, 0);
	free(d);
}
END_TEST

START_TEST(stale_holder_hands_over)
{
	struct pool_config c = cfg();
	struct pool_want w = want("a", "lb:22", 1, false);
	struct pool *p;

	reset();
	p = pool_new(&c, &ops, NULL, 0);
	pool_sync(p, &w, 1, 0);
	land(p, spawned[0], "SHA256:P0", 0);
	w.spec_hash = 2;
	pool_sync(p, &w, 1, 10);
	ck_assert_int_eq(nspawned, 2);
	/* The new generation lands on the same proxy: granted, old one closed. */
	land(p, spawned[1], "SHA256:P0", 20);
	ck_assert_int_eq(ngranted, 2);
	ck_assert_int_eq(nclosed, 1);
	ck_assert_int_eq(spawned[0]->phase, PHASE_CLOSING);
	pool_free(p);
}
END_TEST

START_TEST(backoff_after_failures)
{
	struct pool_config c = cfg();
	struct pool_want w = want("a", "lb:22", 1, false);
	struct pool *p;

	reset();
	p = pool_new(&c, &ops, NULL, 0);
	pool_sync(p, &w, 1, 0);
	ck_assert_int_eq(nspawned, 1);
	ck_assert_uint_eq(pool_key_idle_state(pool_keys(p)), 0);
	pool_agent_spawned(p, spawned[0], 1, 0);
	pool_agent_lost(p, spawned[0], "handshake failed", true, 500);
	/* Without an agent the key shows as disconnected since the loss. */
	ck_assert_uint_eq(pool_key_idle_state(pool_keys(p)),
	    AGENT_DISCONNECTED);
	ck_assert_uint_eq(pool_keys(p)->down_ms, 500);
	ck_assert_uint_ge(pool_keys(p)->next_dial_ms, 500 + 1000);
	/* Not before min backoff (1 s). */
	pool_tick(p, 1499);
	ck_assert_int_eq(nspawned, 1);
	pool_tick(p, 1001 + 500 + 1000);
	ck_assert_int_eq(nspawned, 2);
	ck_assert_uint_eq(pool_key_idle_state(pool_keys(p)), 0);
	/* A spawn that fails at once is handled like a loss, not a crash. */
	fail_spawn = 1;
	pool_agent_lost(p, spawned[1], "dial failed", true, 2501);
	pool_tick(p, 100000);
	ck_assert_uint_eq(pool_nagents(p), 0);
	pool_free(p);
}
END_TEST

/*
 * A fleet that dies at once is one failure: one backoff step, not one per
 * agent; a failure of the retry that follows is the next step.
 */
START_TEST(simultaneous_losses_one_step)
{
	const char *fps[] = { "SHA256:P0", "SHA256:P1", "SHA256:P2" };
	struct pool *p = held(3, fps, 0);
	struct pool_key *k = pool_keys(p);
	int before = nspawned;

	for (int i = 0; i < 3; i++)
		pool_agent_lost(p, spawned[i], "proxy closed", true, 5000);
	ck_assert_uint_eq(k->backoff.attempt, 1);
	ck_assert_uint_eq(k->next_dial_ms, 5000 + 1000);	/* min, exactly */
	ck_assert_uint_eq(k->reconnects, 3);
	pool_tick(p, 5999);
	ck_assert_int_eq(nspawned, before);
	pool_tick(p, 6000);
	ck_assert_int_eq(nspawned, before + 1);
	pool_agent_spawned(p, spawned[before], next_pid++, 6000);
	pool_agent_lost(p, spawned[before], "handshake failed", true, 6100);
	ck_assert_uint_eq(k->backoff.attempt, 2);
	ck_assert_uint_ge(k->next_dial_ms, 6100 + 1000);
	pool_free(p);
}
END_TEST

/* 50 tunnels all needing an agent, 10 spawns/s with a burst of 5. */
START_TEST(spawn_limiter_spreads)
{
	struct pool_config c = cfg();
	struct pool_want *w = calloc(50, sizeof(*w));
	char names[50][16];
	struct pool *p;
	int per_second[6] = { 0 };

	reset();
	c.spawn_rate = 10;
	c.spawn_burst = 5;
	p = pool_new(&c, &ops, NULL, 0);
	for (int i = 0; i < 50; i++) {
		snprintf(names[i], sizeof(names[i]), "c%d", i);
		w[i] = want(names[i], "lb:22", 1, false);
	}
	pool_sync(p, w, 50, 0);
	for (uint64_t t = 0; t < 6000; t += 50) {
		int before = nspawned;

		pool_tick(p, t);
		per_second[t / 1000] += nspawned - before;
	}
	ck_assert_int_eq(nspawned, 50);
	ck_assert_int_le(per_second[0], 5 + 10 + 1);
	for (int s = 1; s < 4; s++)
		ck_assert_int_le(per_second[s], 11);
	ck_assert_uint_gt(pool_get_stats(p)->spawn_deferred, 0);
	free(w);
	pool_free(p);
}
END_TEST

/* 10,000 keys: sync is linear (a hash map), resync of an unchanged set spawns nothing. */
START_TEST(sync_many)
{
	struct pool_config c = cfg();
	int n = 10000;
	struct pool_want *w = calloc((size_t)n, sizeof(*w));
	char (*names)[24] = calloc((size_t)n, 24);
	struct pool *p;

	reset();
	fail_spawn = 1;		/* no agents: control plane only */
	p = pool_new(&c, &ops, NULL, 0);
	for (int i = 0; i < n; i++) {
		snprintf(names[i], 24, "cluster-%d", i);
		w[i] = want(names[i], "lb:22", (uint64_t)i, false);
	}
	ck_assert_int_eq(pool_sync(p, w, (size_t)n, 0), 0);
	ck_assert_uint_eq(pool_nkeys(p), (size_t)n);
	ck_assert_int_eq(pool_sync(p, w, (size_t)n, 1), 0);
	ck_assert_uint_eq(pool_nkeys(p), (size_t)n);
	ck_assert_int_eq(pool_sync(p, w, (size_t)n / 2, 2), 0);
	pool_tick(p, 3);
	ck_assert_uint_eq(pool_nkeys(p), (size_t)n / 2);
	free(w);
	free(names);
	pool_free(p);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("pool");

	tcase_add_test(tc, diff_add_remove_unchanged_changed);
	tcase_add_test(tc, claims_and_discovery_fanout);
	tcase_add_test(tc, dropped_proxy_closed_at_once);
	tcase_add_test(tc, replacement_make_before_break);
	tcase_add_test(tc, old_fleet_gone_ends_the_miss_streak);
	tcase_add_test(tc, lagging_balancer_probes_double);
	tcase_add_test(tc, rewrite_in_progress_probes_once);
	tcase_add_test(tc, remembered_lists_do_not_veto);
	tcase_add_test(tc, ttl_only_without_agents);
	tcase_add_test(tc, ttl_remembered_expiry_edge);
	tcase_add_test(tc, cluster_keys_share_lists);
	tcase_add_test(tc, skew_union_of_current_lists);
	tcase_add_test(tc, untrusted_and_foreign_entries);
	tcase_add_test(tc, list_needs_a_claim);
	tcase_add_test(tc, sticky_misses_paced);
	tcase_add_test(tc, spread_misses_do_not_escalate);
	tcase_add_test(tc, stale_wanted_list_decided_now);
	tcase_add_test(tc, wanted_set_limits);
	tcase_add_test(tc, stale_holder_hands_over);
	tcase_add_test(tc, backoff_after_failures);
	tcase_add_test(tc, simultaneous_losses_one_step);
	tcase_add_test(tc, spawn_limiter_spreads);
	tcase_add_test(tc, sync_many);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
