/*
 * The etcd tunnel source (etcdsrc.h): etcd client batches in, tunnel
 * cache entries and a snapshot out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "common/error.h"
#include "common/log.h"
#include "common/tptime.h"
#include "supervisor/cfgerr.h"
#include "supervisor/cfgwalk.h"
#include "supervisor/config.h"
#include "supervisor/etcd.h"
#include "supervisor/etcdsrc.h"
#include "supervisor/snapshot.h"
#include "supervisor/tunnels.h"

#define SNAPSHOT_DELAY_MS	200
#define LABEL_MAX		(ETCD_KEY_MAX + 8)

struct etcdsrc {
	struct tunnel_cache	*tc;
	struct etcd_client	*client;
	struct etcd_config	 cfg;		/* what the client was given */
	char			*state_dir;
	etcdsrc_changed_fn	*changed;
	void			*arg;
	json_t			*good;		/* key -> last good value */
	int64_t			 revision;	/* of good */
	int			 from_snapshot;
	int			 said_outage;
	uint64_t		 snapshot_wall_ms;	/* 0 = none */
	struct event		*ev_snapshot;
	uint64_t		 bad_values;
	int			 batch_error;	/* this batch reported one */
	char			 value_error[512];
};

/* Keys go into logs, status and error lines: printable ASCII only. */
static int
key_ok(const char *k, size_t len)
{
	return len > 0 && len <= ETCD_KEY_MAX && strlen(k) == len &&
	    etcd_printable(k);
}

/* The first error of a batch becomes value_error (see on_apply). */
static void
note_value_error(struct etcdsrc *s, const char *line)
{
	log_warnx("%s", line);
	if (!s->batch_error) {
		snprintf(s->value_error, sizeof(s->value_error), "%.500s", line);
		s->batch_error = 1;
	}
}

/* One put: into the cache, and into good if the value is good. */
static void
put_one(struct etcdsrc *s, json_t *good, const struct etcd_kv *kv)
{
	struct cfg_errors e = { 0 };
	char label[LABEL_MAX], q[96];
	int rc;

	if (!key_ok(kv->key, kv->key_len)) {
		snprintf(label, sizeof(label), "etcd key \"%s\": not printable "
		    "ASCII (or too long): ignored", cfg_quote(kv->key, q,
		    sizeof(q)));
		note_value_error(s, label);
		s->bad_values++;
		return;
	}
	snprintf(label, sizeof(label), "etcd:%s", kv->key);
	rc = tunnel_cache_ext_put(s->tc, kv->key, label, kv->value,
	    kv->value_len, &e);
	if (rc == 0) {
		json_object_set_new(good, kv->key, json_stringn(kv->value,
		    kv->value_len));
	} else {
		for (size_t i = 0; i < e.n; i++)
			note_value_error(s, e.msg[i]);
		log_warnx("etcd key %s: rejected, %s", kv->key,
		    json_object_get(good, kv->key) != NULL ?
		    "its last good tunnels stay" : "it has no tunnels yet");
		s->bad_values++;
	}
	cfg_errors_free(&e);
}

/* A full set: keys that are not in it go, with their tunnels. */
static void
apply_full(struct etcdsrc *s, const struct etcd_batch *b)
{
	json_t *ngood = json_object();
	json_t *old;
	size_t gone;

	if (ngood == NULL)
		return;
	tunnel_cache_ext_mark(s->tc);
	for (size_t i = 0; i < b->n; i++) {
		/* The old good value first: a bad new one keeps it. */
		if (key_ok(b->events[i].kv.key, b->events[i].kv.key_len) &&
		    (old = json_object_get(s->good, b->events[i].kv.key)) != NULL)
			json_object_set(ngood, b->events[i].kv.key, old);
		put_one(s, ngood, &b->events[i].kv);
	}
	gone = tunnel_cache_ext_sweep(s->tc);
	if (gone > 0)
		log_info("etcd: %zu keys gone since the last full read", gone);
	json_decref(s->good);
	s->good = ngood;
}

static void
apply_events(struct etcdsrc *s, const struct etcd_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		const struct etcd_kv *kv = &b->events[i].kv;

		if (b->events[i].type == ETCD_EV_PUT) {
			log_debug("etcd: put %s (revision %lld)", kv->key,
			    (long long)kv->mod_revision);
			put_one(s, s->good, kv);
		} else if (key_ok(kv->key, kv->key_len)) {
			log_debug("etcd: delete %s (revision %lld)", kv->key,
			    (long long)kv->mod_revision);
			(void)tunnel_cache_ext_delete(s->tc, kv->key);
			json_object_del(s->good, kv->key);
		}
	}
}

/* Rebuilds the desired set; duplicates found in keys are reported. */
static void
commit(struct etcdsrc *s)
{
	struct cfg_errors e = { 0 };

	tunnel_cache_commit(s->tc, &e);
	for (size_t i = 0; i < e.n; i++)
		note_value_error(s, e.msg[i]);
	cfg_errors_free(&e);
	s->changed(s->arg);
}

static void
schedule_snapshot(struct etcdsrc *s)
{
	struct timeval tv = tp_timeval_ms(SNAPSHOT_DELAY_MS);

	if (!evtimer_pending(s->ev_snapshot, NULL))
		evtimer_add(s->ev_snapshot, &tv);
}

static void
on_apply(void *arg, const struct etcd_batch *b)
{
	struct etcdsrc *s = arg;
	size_t bad;

	s->batch_error = 0;
	if (b->full) {
		apply_full(s, b);
		if (s->from_snapshot)
			log_info("etcd: in sync at revision %lld; the snapshot "
			    "is no longer used", (long long)b->revision);
		s->from_snapshot = 0;
		s->said_outage = 0;
	} else
		apply_events(s, b);
	s->revision = b->revision;
	commit(s);
	/* The last error stays until a clean batch leaves no key rejected. */
	tunnel_cache_ext_count(s->tc, &bad);
	if (!s->batch_error && bad == 0)
		s->value_error[0] = '\0';
	schedule_snapshot(s);
}

static void
on_state(void *arg)
{
	struct etcdsrc *s = arg;
	struct etcd_client_status st;

	etcd_client_get_status(s->client, &st);
	if (!st.healthy && s->from_snapshot && !s->said_outage) {
		s->said_outage = 1;
		log_warnx("etcd unreachable (%s): running from the snapshot "
		    "of revision %lld written %llu s ago", st.last_error,
		    (long long)s->revision, (unsigned long long)
		    ((tp_wall_ms() - s->snapshot_wall_ms) / 1000));
	}
}

static void
on_snapshot(evutil_socket_t fd, short what, void *arg)
{
	struct etcdsrc *s = arg;
	char err[512];

	(void)fd;
	(void)what;
	if (snapshot_write(s->state_dir, s->cfg.prefix, s->revision, s->good,
	    err, sizeof(err)) != 0) {
		log_warnx("etcd snapshot not written: %s", err);
		return;
	}
	s->snapshot_wall_ms = tp_wall_ms();
	log_debug("etcd snapshot: %zu keys at revision %lld",
	    json_object_size(s->good), (long long)s->revision);
}

/* Brings the last good set of a previous run into the cache. */
static void
load_snapshot(struct etcdsrc *s)
{
	struct etcd_event *ev;
	struct etcd_batch b = { 1, 0, NULL, 0 };
	uint64_t written = 0;
	const char *k;
	char err[512];
	json_t *kvs, *v;
	int rc;

	s->batch_error = 0;
	rc = snapshot_read(s->state_dir, s->cfg.prefix, &b.revision, &written,
	    &kvs, err, sizeof(err));
	if (rc == TP_ENOENT)
		return;
	if (rc != 0) {
		log_warnx("etcd snapshot in %s not used: %s", s->state_dir, err);
		return;
	}
	if ((ev = calloc(json_object_size(kvs) + 1, sizeof(*ev))) == NULL) {
		json_decref(kvs);
		return;
	}
	json_object_foreach(kvs, k, v) {
		ev[b.n].kv.key = (char *)k;
		ev[b.n].kv.key_len = strlen(k);
		ev[b.n].kv.value = (char *)json_string_value(v);
		ev[b.n++].kv.value_len = json_string_length(v);
	}
	b.events = ev;
	s->snapshot_wall_ms = written;
	log_info("etcd: %zu keys from the snapshot of revision %lld written "
	    "%llu s ago, until etcd answers", b.n, (long long)b.revision,
	    (unsigned long long)((tp_wall_ms() - written) / 1000));
	apply_full(s, &b);
	s->revision = b.revision;
	s->from_snapshot = 1;
	commit(s);
	free(ev);
	json_decref(kvs);
}

static const struct etcd_client_ops client_ops = { on_apply, on_state };

struct etcdsrc *
etcdsrc_new(struct event_base *base, struct evdns_base *dns,
    struct tunnel_cache *tc, const struct config *cfg,
    etcdsrc_changed_fn *changed, void *arg)
{
	struct etcdsrc *s;
	char err[512];

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->tc = tc;
	s->changed = changed;
	s->arg = arg;
	if ((s->good = json_object()) == NULL ||
	    (s->state_dir = strdup(cfg->state_dir)) == NULL ||
	    (s->ev_snapshot = evtimer_new(base, on_snapshot, s)) == NULL ||
	    etcd_config_copy(&s->cfg, &cfg->etcd) != 0) {
		etcdsrc_free(s, 0);
		return NULL;
	}
	load_snapshot(s);
	s->client = etcd_client_new(base, dns, &cfg->etcd, &client_ops, s, err,
	    sizeof(err));
	if (s->client == NULL) {
		log_errorx("etcd: %s", err);
		etcdsrc_free(s, 0);
		return NULL;
	}
	log_info("etcd: reading %s from %zu endpoints", cfg->etcd.prefix,
	    cfg->etcd.n_endpoints);
	return s;
}

void
etcdsrc_free(struct etcdsrc *s, int drop)
{
	if (s == NULL)
		return;
	etcd_client_free(s->client);
	if (s->ev_snapshot != NULL) {
		if (evtimer_pending(s->ev_snapshot, NULL) && !drop)
			on_snapshot(-1, 0, s);	/* do not lose the last change */
		event_free(s->ev_snapshot);
	}
	if (drop) {
		tunnel_cache_ext_mark(s->tc);
		tunnel_cache_ext_sweep(s->tc);
		tunnel_cache_commit(s->tc, NULL);
		s->changed(s->arg);
	}
	json_decref(s->good);
	etcd_config_free(&s->cfg);
	free(s->state_dir);
	free(s);
}

int
etcdsrc_differs(const struct etcdsrc *s, const struct config *cfg)
{
	return !etcd_config_equal(&s->cfg, &cfg->etcd) ||
	    strcmp(s->state_dir, cfg->state_dir) != 0;
}

void
etcdsrc_get_status(const struct etcdsrc *s, struct etcdsrc_status *st)
{
	struct etcd_client_status cs;

	memset(st, 0, sizeof(*st));
	etcd_client_get_status(s->client, &cs);
	st->endpoint = cs.endpoint;
	st->healthy = cs.healthy;
	st->revision = s->revision;
	st->watch_restarts = cs.watch_restarts;
	st->last_error = cs.last_error[0] != '\0' ? cs.last_error :
	    s->value_error;
	st->snapshot_age_s = s->snapshot_wall_ms == 0 ? -1 :
	    (int64_t)((tp_wall_ms() - s->snapshot_wall_ms) / 1000);
	st->from_snapshot = s->from_snapshot;
	st->keys = tunnel_cache_ext_count(s->tc, &st->bad_keys);
	st->bad_values = s->bad_values;
}
