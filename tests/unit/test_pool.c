/*
 * The pool logic: diff (add / remove / unchanged / changed), claims, TTL
 * expiry, parallel discovery dials, the spawn limiter and backoff.  The
 * effects are recorded by a test ops table; the pool code is the real one.
 */
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

static const struct pool_ops ops = { op_spawn, op_close, op_claim };

static struct pool_config
cfg(void)
{
	struct pool_config c = {
		.backoff_min_ms = 1000, .backoff_max_ms = 30000,
		.backoff_reset_ms = 30000, .max_inflight_dials = 3,
		.spawn_rate = 1000, .spawn_burst = 1000,
		.proxy_ttl_ms = 180000, .miss_retry_ms = 500,
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

START_TEST(claims_and_discovery_fanout)
{
	struct pool_config c = cfg();
	struct pool_want w = want("a", "lb:22", 1, true);
	struct msg_discovery *d = calloc(1, sizeof(*d));
	struct pool *p;

	reset();
	p = pool_new(&c, &ops, NULL, 0);
	pool_sync(p, &w, 1, 0);
	ck_assert_int_eq(nspawned, 1);
	land(p, spawned[0], "SHA256:P0", 0);
	ck_assert_int_eq(ngranted, 1);
	/* The tunnel agent announces 5 proxies: 4 wanted, 3 dialled at once. */
	d->n_proxies = 5;
	for (int i = 0; i < 5; i++) {
		snprintf(d->proxies[i].fp, PROTO_FP_MAX, "SHA256:P%d", i);
		snprintf(d->proxies[i].name, PROTO_NAME_MAX, "proxy-%d", i);
	}
	pool_agent_discovery(p, spawned[0], d, 0);
	pool_tick(p, 0);
	ck_assert_int_eq(nspawned, 4);
	ck_assert_int_eq(spawned[1]->role, AGENT_ROLE_DISCOVERY);
	ck_assert_uint_eq(spawned[1]->n_wanted, 4);
	/* One lands on P0, already claimed: a miss, refused. */
	land(p, spawned[1], "SHA256:P0", 0);
	ck_assert_int_eq(nrefused, 1);
	ck_assert(spawned[1]->missed);
	/* A proxy outside the announced set is refused too. */
	land(p, spawned[2], "SHA256:ROGUE", 0);
	ck_assert_int_eq(nrefused, 2);
	land(p, spawned[3], "SHA256:P1", 0);
	ck_assert_int_eq(ngranted, 2);
	ck_assert_uint_eq(pool_key_claimed(spawned[0]->key), 2);
	/* Misses do not back off: after the jittered retry, 3 more dials. */
	pool_agent_lost(p, spawned[1], "claim refused", true, 0);
	pool_agent_lost(p, spawned[2], "claim refused", true, 0);
	pool_tick(p, 10);
	ck_assert_int_eq(nspawned, 4);		/* retry delay not yet over */
	pool_tick(p, 1000);
	ck_assert_int_eq(nspawned, 7);		/* wanted P2 P3 P4, 3 at once */
	free(d);
	pool_free(p);
}
END_TEST

START_TEST(ttl_expiry_closes_agent)
{
	struct pool_config c = cfg();
	struct pool_want w = want("a", "lb:22", 1, true);
	struct msg_discovery *d = calloc(1, sizeof(*d));
	struct pool *p;

	reset();
	p = pool_new(&c, &ops, NULL, 0);
	pool_sync(p, &w, 1, 0);
	land(p, spawned[0], "SHA256:P0", 0);
	d->n_proxies = 2;
	strcpy(d->proxies[0].fp, "SHA256:P0");
	strcpy(d->proxies[1].fp, "SHA256:P1");
	pool_agent_discovery(p, spawned[0], d, 0);
	pool_tick(p, 0);
	ck_assert_int_eq(nspawned, 2);
	land(p, spawned[1], "SHA256:P1", 0);
	/* P1 vanishes from the lists; P0 keeps being announced. */
	d->n_proxies = 1;
	pool_agent_discovery(p, spawned[0], d, 179000);
	pool_tick(p, 180000);
	ck_assert_int_eq(nclosed, 0);
	pool_tick(p, 180001);
	ck_assert_int_eq(nclosed, 1);
	ck_assert_int_eq(spawned[1]->phase, PHASE_CLOSING);
	ck_assert_int_eq(spawned[0]->phase, PHASE_RUNNING);
	/*
	 * The tunnel agent dies; its replacement lands (through the balancer)
	 * on the expired P1: outside the announced set, refused as a miss,
	 * for the tunnel role too, and retried without backoff.
	 */
	pool_agent_lost(p, spawned[1], "closed", false, 180002);
	pool_agent_lost(p, spawned[0], "killed", true, 180002);
	pool_tick(p, 180002 + 30001);
	ck_assert_int_eq(nspawned, 3);
	ck_assert_int_eq(spawned[2]->role, AGENT_ROLE_TUNNEL);
	land(p, spawned[2], "SHA256:P1", 210003);
	ck_assert_int_eq(nrefused, 1);
	ck_assert(spawned[2]->missed);
	ck_assert_uint_eq(spawned[2]->key->misses, 1);
	pool_agent_lost(p, spawned[2], "claim refused", false, 210003);
	pool_tick(p, 210003 + 600);
	ck_assert_int_eq(nspawned, 4);
	free(d);
	pool_free(p);
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
	tcase_add_test(tc, ttl_expiry_closes_agent);
	tcase_add_test(tc, stale_holder_hands_over);
	tcase_add_test(tc, backoff_after_failures);
	tcase_add_test(tc, spawn_limiter_spreads);
	tcase_add_test(tc, sync_many);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
