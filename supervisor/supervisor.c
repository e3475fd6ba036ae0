/*
 * The supervisor role.  One libevent loop owns the configuration, the
 * tunnel cache, the pool and every worker.  Signals are libevent events
 * whose handlers only flag or schedule work; deadlines are timers.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "common/error.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "common/tptime.h"
#include "child.h"
#include "config.h"
#include "control.h"
#include "etcdsrc.h"
#include "firstrun.h"
#include "knownhosts.h"
#include "metrics.h"
#include "notify.h"
#include "pool.h"
#include "reaper.h"
#include "signer.h"
#include "spawn.h"
#include "sshkey.h"
#include "status.h"
#include "sup.h"
#include "supervisor.h"
#include "trust.h"
#include "tunnels.h"
#include "tunnelwatch.h"

#define LAG_PERIOD_MS		100
#define STATS_LOG_MS		(5 * 60 * 1000)
#define TUNNEL_DEBOUNCE_MS	200
#define SHUTDOWN_EXTRA_MS	2500

const uint64_t lag_bounds_us[LAG_BUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000,
	250000, 500000, 1000000, 2500000,
};

static struct sup S;
static struct event *ev_tick, *ev_lag, *ev_resync, *ev_stats, *ev_dog;
static struct event *ev_sig[4], *ev_shutdown;
static struct tunnel_watch *watch;
static uint64_t lag_expected_us;
static struct pool_want *wants;
static size_t wants_cap;

const char *
sup_reason_name(int reason)
{
	switch (reason) {
	case SR_SIGNAL:		return "killed by signal";
	case SR_SANDBOX:	return "sandbox violation";
	case SR_PROTOCOL:	return "protocol violation";
	case SR_TIMEOUT:	return "timeout";
	case SR_SPAWN:		return "dial failed";
	case SR_UNKNOWN:	return "unknown exit";
	}
	return worker_exit_reason(reason);
}

static void worker_env_update(struct sup *sup);

static void
log_errors(const struct cfg_errors *errs)
{
	for (size_t i = 0; i < errs->n; i++)
		log_errorx("%s", errs->msg[i]);
}

/*
 * config_ok is good only while both the main file and every tunnel file
 * are: a tunnel file fixed and picked up by the watcher clears its error
 * without an explicit reload.
 */
static void
config_state_update(struct sup *sup)
{
	bool was_ok = sup->config_ok;

	sup->config_ok = sup->main_error[0] == '\0' &&
	    sup->tunnels_error[0] == '\0';
	snprintf(sup->config_error, sizeof(sup->config_error), "%s",
	    sup->main_error[0] != '\0' ? sup->main_error : sup->tunnels_error);
	if (sup->config_ok && (!was_ok || sup->last_reload_ok_wall_ms == 0))
		sup->last_reload_ok_wall_ms = tp_wall_ms();
}

static void
note_error(char *dst, size_t cap, const struct cfg_errors *errs)
{
	snprintf(dst, cap, "%s", errs->n > 0 ? errs->msg[0] : "unknown error");
}

/* The command line's --log-level/--log-format win over the file's. */
static void
apply_log_settings(struct sup *sup)
{
	const struct supervisor_opts *o = sup->opts;

	log_set_level(o->log_level_set ? o->log_level : sup->cfg->log.level);
	log_set_format(o->log_format_set ? o->log_format : sup->cfg->log.format);
}

/* --- sync ------------------------------------------------------------------ */

void
sup_sync(struct sup *sup)
{
	const struct tunnel *const *t;
	size_t n, m = 0, need = 0;
	uint64_t t0 = tp_now_us();

	t = tunnel_cache_tunnels(sup->tunnels, &n);
	for (size_t i = 0; i < n; i++)
		need += t[i]->n_dial_addrs;
	if (need > wants_cap) {
		struct pool_want *nw = realloc(wants, need * sizeof(*nw));

		if (nw == NULL) {
			log_errorx("out of memory: sync skipped");
			return;
		}
		wants = nw;
		wants_cap = need;
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < t[i]->n_dial_addrs; j++) {
			struct pool_want *w = &wants[m++];

			w->cluster = t[i]->cluster_name;
			w->dial_addr = t[i]->dial_addrs[j];
			w->spec_hash = t[i]->spec_hash;
			w->discovery = t[i]->discovery != 0;
			w->tunnel = t[i];
		}
	if (sup->shutting_down)
		return;
	if (pool_sync(sup->pool, wants, m, tp_now_ms()) != 0)
		log_errorx("sync incomplete: out of memory");
	log_debug("sync of %zu endpoints took %llu us", m,
	    (unsigned long long)(tp_now_us() - t0));
	sup_kick(sup);
}

/* --- reload --------------------------------------------------------------- */

static int
reload_tunnels(struct sup *sup)
{
	struct cfg_errors errs = { 0 };
	int rc;

	/*
	 * While shutting down no sync follows, so the pool would keep pointers
	 * into tunnels a reload frees: the desired set is frozen instead.
	 */
	if (sup->shutting_down)
		return 0;
	rc = tunnel_cache_reload(sup->tunnels, sup->cfg->tunnels_dir, &errs);
	if (rc != 0) {
		/* Broken files keep their last good contents: log, keep going. */
		log_errors(&errs);
		note_error(sup->tunnels_error, sizeof(sup->tunnels_error), &errs);
	} else
		sup->tunnels_error[0] = '\0';
	config_state_update(sup);
	cfg_errors_free(&errs);
	return rc;
}

/* The etcd source changed the desired set. */
static void
on_etcd_changed(void *arg)
{
	sup_sync(arg);
}

/*
 * Starts, restarts or stops the etcd source to match sup->cfg.  A source
 * that stays the same keeps running; a changed one is replaced (its keys
 * stay in the cache until the new client's first full read replaces
 * them); a removed one takes its tunnels with it.
 */
static void
etcd_apply_config(struct sup *sup, int at_start)
{
	struct etcdsrc *n;

	if (!sup->cfg->etcd.enabled) {
		if (sup->etcd != NULL)
			log_info("tunnel_source.etcd removed: dropping its "
			    "tunnels");
		etcdsrc_free(sup->etcd, 1);
		sup->etcd = NULL;
		return;
	}
	if (sup->etcd != NULL && !etcdsrc_differs(sup->etcd, sup->cfg))
		return;
	/* The new one first: if it cannot start, the old one goes on. */
	n = etcdsrc_new(sup->base, sup->dns, sup->tunnels, sup->cfg,
	    on_etcd_changed, sup);
	if (n == NULL) {
		if (at_start)
			fatalx("cannot start the etcd tunnel source");
		log_errorx("the new tunnel_source.etcd cannot start: the "
		    "previous one keeps running");
		return;
	}
	etcdsrc_free(sup->etcd, 0);
	sup->etcd = n;
}

static struct pool_config
pool_config_of(const struct config *cfg)
{
	struct pool_config pc = {
		.backoff_min_ms = cfg->backoff.min_ms,
		.backoff_max_ms = cfg->backoff.max_ms,
		.backoff_reset_ms = cfg->backoff.reset_after_ms,
		.max_inflight_dials = cfg->max_inflight_dials,
		.spawn_rate = cfg->spawn_rate,
		.spawn_burst = cfg->spawn_burst,
		.proxy_ttl_ms = cfg->discovery.ttl_ms,
		.miss_retry_ms = 250,
		.lag_probe_max_ms = cfg->discovery.lag_probe_max_ms,
	};
	return pc;
}

static int
load_trust(const struct config *cfg, struct knownhosts **kh)
{
	struct cfg_errors errs = { 0 };
	int rc = knownhosts_load(cfg->trust.known_hosts, kh, &errs);

	log_errors(&errs);
	cfg_errors_free(&errs);
	return rc;
}

int
sup_reload(struct sup *sup)
{
	struct config_defaults defs = { .worker_path = TP_WORKER_PATH };
	struct cfg_errors errs = { 0 };
	struct knownhosts *kh = NULL;
	struct config *ncfg = NULL;

	sup->counters.reloads++;
	/* MONOTONIC_USEC: systemd >= 253 (Type=notify-reload) wants it. */
	notify_send("RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)tp_now_us());
	log_info("reloading %s", sup->config_path);
	if (config_load(sup->config_path, &defs, &ncfg, &errs) != 0 ||
	    load_trust(ncfg, &kh) != 0) {
		/* A broken main file keeps the whole running configuration. */
		log_errors(&errs);
		if (errs.n == 0)
			cfg_errors_add(&errs, "%s: cannot load known_hosts",
			    sup->config_path);
		note_error(sup->main_error, sizeof(sup->main_error), &errs);
		config_state_update(sup);
		cfg_errors_free(&errs);
		config_free(ncfg);
		sup->counters.reload_failures++;
		log_warnx("reload failed: keeping the running configuration");
		notify_send("READY=1");
		return -1;
	}
	if (strcmp(ncfg->identity.private_key, sup->cfg->identity.private_key) ||
	    strcmp(ncfg->identity.certificate, sup->cfg->identity.certificate))
		log_warnx("identity changes take effect at the next restart");
	signer_set_user(sup->signer, ncfg->proxy_user);
	knownhosts_free(sup->trust);
	sup->trust = kh;
	config_free(sup->cfg);
	sup->cfg = ncfg;
	sup->main_error[0] = '\0';
	apply_log_settings(sup);
	worker_env_update(sup);
	{
		struct pool_config pc = pool_config_of(ncfg);

		pool_reconfigure(sup->pool, &pc, tp_now_ms());
	}
	etcd_apply_config(sup, 0);
	if (reload_tunnels(sup) != 0)
		sup->counters.reload_failures++;
	else if (sup->config_ok)
		sup->last_reload_ok_wall_ms = tp_wall_ms();
	sup_sync(sup);
	notify_send("READY=1");
	return sup->config_ok ? 0 : -1;
}

/* --- timers ----------------------------------------------------------------- */

static void
arm(struct event *ev, uint64_t ms)
{
	struct timeval tv = tp_timeval_ms(ms);

	if (evtimer_add(ev, &tv) != 0)
		fatalx("evtimer_add failed");
}

void
sup_kick(struct sup *sup)
{
	if (sup->shutting_down) {
		if (sup->children == NULL)
			event_base_loopexit(sup->base, NULL);
		return;
	}
	arm(ev_tick, 0);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sup *sup = arg;
	uint64_t wait;

	(void)fd;
	(void)what;
	if (sup->shutting_down)
		return;
	wait = pool_tick(sup->pool, tp_now_ms());
	proctitle_set("tunnelpool: supervisor %zu agents",
	    pool_nagents(sup->pool));
	arm(ev_tick, wait);
}

static void
on_lag(evutil_socket_t fd, short what, void *arg)
{
	struct sup *sup = arg;
	uint64_t now = tp_now_us(), lag;
	int b = 0;

	(void)fd;
	(void)what;
	lag = now > lag_expected_us ? now - lag_expected_us : 0;
	lag_expected_us = now + LAG_PERIOD_MS * 1000;
	while (b < LAG_BUCKETS && lag > lag_bounds_us[b])
		b++;
	sup->counters.lag_count[b]++;
	sup->counters.lag_sum_us += lag;
}

static void
on_resync(evutil_socket_t fd, short what, void *arg)
{
	struct sup *sup = arg;

	(void)fd;
	(void)what;
	if (watch != NULL)
		(void)tunnel_watch_retry(watch);
	reload_tunnels(sup);
	sup_sync(sup);
	arm(ev_resync, sup->cfg->resync_interval_ms);
}

static void
on_tunnels_changed(void *arg)
{
	struct sup *sup = arg;

	log_info("tunnel files changed");
	reload_tunnels(sup);
	sup_sync(sup);
}

/* The per-cluster stats line's period; test-hooks builds may shorten it. */
static uint64_t
stats_interval_ms(void)
{
#ifdef TP_TEST_HOOKS
	const char *s = getenv("TP_TEST_STATS_MS");

	if (s != NULL && atoi(s) > 0)
		return (uint64_t)atoi(s);
#endif
	return STATS_LOG_MS;
}

static void
on_stats(evutil_socket_t fd, short what, void *arg)
{
	struct sup *sup = arg;

	(void)fd;
	(void)what;
	status_log_stats(sup);
	arm(ev_stats, stats_interval_ms());
}

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	notify_send("WATCHDOG=1");
	arm(ev_dog, notify_watchdog_ms() / 2);
}

/* --- signals and shutdown ------------------------------------------------------ */

static void
on_shutdown_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct sup *sup = arg;

	(void)fd;
	(void)what;
	for (struct child *c = sup->children; c != NULL; c = c->next)
		if (c->pid > 0)
			kill(c->pid, SIGKILL);
	/* Reaping SIGKILLed children is immediate; give it a moment. */
	event_base_loopexit(sup->base, &(struct timeval){ 0, 300000 });
}

static void
begin_shutdown(struct sup *sup, int sig)
{
	if (sup->shutting_down)
		return;
	log_info("received signal %d: closing %zu agents", sig,
	    pool_nagents(sup->pool));
	notify_send("STOPPING=1");
	sup->shutting_down = true;
	/* The desired set is frozen from here on (see reload_tunnels). */
	etcdsrc_free(sup->etcd, 0);
	sup->etcd = NULL;
	pool_close_all(sup->pool, "supervisor shutting down");
	ev_shutdown = evtimer_new(sup->base, on_shutdown_deadline, sup);
	arm(ev_shutdown, sup->cfg->timeouts.close_grace_ms + SHUTDOWN_EXTRA_MS);
	sup_kick(sup);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sup *sup = arg;

	(void)what;
	switch (sig) {
	case SIGCHLD:
		reaper_run(sup);
		break;
	case SIGHUP:
		sup_reload(sup);
		break;
	default:
		begin_shutdown(sup, (int)sig);
		break;
	}
}

/* --- start-up ---------------------------------------------------------------------- */

static void
load_identity(struct sup *sup)
{
	char err[512];

	if (sshkey_load(sup->cfg->identity.private_key, &sup->key, err,
	    sizeof(err)) != 0)
		fatalx("%s", err);
	if (sup->cfg->identity.certificate[0] != '\0' &&
	    sshkey_load_cert(sup->key, sup->cfg->identity.certificate, err,
	    sizeof(err)) != 0)
		fatalx("%s", err);
	if ((sup->signer = signer_new(sup->key, sup->cfg->proxy_user)) == NULL)
		fatalx("cannot create the signer");
	log_info("identity %s %s%s", sshkey_type_name(sup->key),
	    sshkey_fingerprint(sup->key),
	    sshkey_cert_blob(sup->key, NULL) != NULL ? " (with certificate)" : "");
}

/*
 * What a worker needs before it can read CONFIG: whom to become and where
 * to chroot.  It demotes itself before its first message, so this travels
 * in the environment: uid:gid:allow_root:max_channels:empty_root.
 */
static void
worker_env_update(struct sup *sup)
{
	snprintf(sup->worker_env, sizeof(sup->worker_env),
	    "TUNNELPOOL_WORKER=%u:%u:%d:%u:%s", (unsigned)sup->worker_uid,
	    (unsigned)sup->worker_gid, sup->cfg->worker.allow_root ? 1 : 0,
	    sup->cfg->worker.max_channels, sup->cfg->worker.empty_root);
}

/* One first-run step: its refusal is fatal, what it made is logged. */
static void
first_run_step(int rc, const char *msg)
{
	if (rc != 0)
		fatalx("%s", msg);
	if (msg[0] != '\0')
		log_info("%s", msg);
}

/*
 * What must exist before the first worker (firstrun.c): the worker user;
 * as root, the workers' empty root; the control socket's directory
 * (/run/tunnelpool on a machine without systemd); with the etcd source,
 * the state directory for its snapshot.  Not root: workers confine
 * themselves with Landlock instead of a chroot.
 */
static void
prepare_first_run(struct sup *sup)
{
	const struct config *cfg = sup->cfg;
	char msg[FR_LINE_MAX];

	first_run_step(firstrun_worker_user(cfg->worker.user,
	    cfg->worker.allow_root, &sup->worker_uid, &sup->worker_gid, msg,
	    sizeof(msg)), msg);
	worker_env_update(sup);
	if (geteuid() == 0)
		first_run_step(firstrun_empty_root(cfg->worker.empty_root,
		    FR_CREATE, msg, sizeof(msg)), msg);
	first_run_step(firstrun_runtime_dir(cfg->control_socket, FR_CREATE,
	    msg, sizeof(msg)), msg);
	if (cfg->etcd.enabled)
		first_run_step(firstrun_state_dir(cfg->state_dir, FR_CREATE,
		    msg, sizeof(msg)), msg);
}

static void
setup_dns(struct sup *sup)
{
	sup->dns = evdns_base_new(sup->base, 0);
	if (sup->dns == NULL)
		fatalx("evdns_base_new failed");
	/* No resolv.conf (or no nameserver) still leaves literals and /etc/hosts. */
	if (evdns_base_resolv_conf_parse(sup->dns, DNS_OPTIONS_ALL,
	    "/etc/resolv.conf") != 0)
		log_debug("no usable /etc/resolv.conf");
	(void)evdns_base_load_hosts(sup->dns, NULL);
}

static struct event *
add_signal(struct sup *sup, int sig)
{
	struct event *ev = evsignal_new(sup->base, sig, on_signal, sup);

	if (ev == NULL || event_add(ev, NULL) != 0)
		fatalx("cannot watch signal %d", sig);
	return ev;
}

static struct event *
new_timer(struct sup *sup, event_callback_fn fn, short flags)
{
	struct event *ev = event_new(sup->base, -1, flags, fn, sup);

	if (ev == NULL)
		fatalx("event_new failed");
	return ev;
}

static void
setup_events(struct sup *sup)
{
	static const struct pool_ops ops = { child_spawn, child_close,
	    child_claim_result, trust_announced };
	struct pool_config pc = pool_config_of(sup->cfg);
	struct timeval lag = { 0, LAG_PERIOD_MS * 1000 };

	if ((sup->base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	setup_dns(sup);
	if ((sup->pool = pool_new(&pc, &ops, sup, tp_now_ms())) == NULL)
		fatalx("cannot create the pool");
	ev_sig[0] = add_signal(sup, SIGCHLD);
	ev_sig[1] = add_signal(sup, SIGHUP);
	ev_sig[2] = add_signal(sup, SIGTERM);
	ev_sig[3] = add_signal(sup, SIGINT);
	ev_tick = new_timer(sup, on_tick, 0);
	ev_resync = new_timer(sup, on_resync, 0);
	ev_stats = new_timer(sup, on_stats, 0);
	ev_lag = new_timer(sup, on_lag, EV_PERSIST);
	lag_expected_us = tp_now_us() + LAG_PERIOD_MS * 1000;
	if (event_add(ev_lag, &lag) != 0)
		fatalx("event_add failed");
	arm(ev_resync, sup->cfg->resync_interval_ms);
	arm(ev_stats, stats_interval_ms());
	if (notify_watchdog_ms() > 0) {
		ev_dog = new_timer(sup, on_watchdog, 0);
		arm(ev_dog, notify_watchdog_ms() / 2);
	}
	if (sup->cfg->tunnels_dir[0] == '\0')
		return;		/* no tunnel files: etcd only */
	watch = tunnel_watch_new(sup->base, sup->cfg->tunnels_dir,
	    TUNNEL_DEBOUNCE_MS, on_tunnels_changed, sup);
	if (watch == NULL)
		log_warn("cannot watch %s; relying on resync_interval",
		    sup->cfg->tunnels_dir);
}

static void
teardown(struct sup *sup)
{
	etcdsrc_free(sup->etcd, 0);
	control_free(sup->control);
	metrics_free(sup->metrics);
	tunnel_watch_free(watch);
	for (size_t i = 0; i < 4; i++)
		event_free(ev_sig[i]);
	event_free(ev_tick);
	event_free(ev_lag);
	event_free(ev_resync);
	event_free(ev_stats);
	if (ev_dog != NULL)
		event_free(ev_dog);
	if (ev_shutdown != NULL)
		event_free(ev_shutdown);
	while (sup->children != NULL)
		child_lost(sup->children, SR_SIGNAL, "supervisor exit");
	pool_free(sup->pool);
	evdns_base_free(sup->dns, 0);
	event_base_free(sup->base);
	tunnel_cache_free(sup->tunnels);
	knownhosts_free(sup->trust);
	signer_free(sup->signer);
	sshkey_free(sup->key);
	config_free(sup->cfg);
	free(wants);
	close(sup->devnull);
}

int
supervisor_main(const struct supervisor_opts *opts)
{
	struct config_defaults defs = { .worker_path = TP_WORKER_PATH };
	struct cfg_errors errs = { 0 };
	struct sup *sup = &S;

	signal(SIGPIPE, SIG_IGN);
	sup->config_path = (char *)opts->config_path;
	sup->opts = opts;
	sup->started_ms = tp_now_ms();
	sup->started_wall_ms = tp_wall_ms();
	if (config_load(opts->config_path, &defs, &sup->cfg, &errs) != 0) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		cfg_errors_free(&errs);
		return 1;
	}
	log_init("tunnelpool", LOG_LVL_INFO, LOG_FMT_LOGFMT, 2);
	apply_log_settings(sup);
	if ((sup->devnull = open("/dev/null", O_RDWR | O_CLOEXEC)) < 0)
		fatal("/dev/null");
	prepare_first_run(sup);
	load_identity(sup);
	if (load_trust(sup->cfg, &sup->trust) != 0)
		fatalx("%s: cannot load known_hosts", sup->cfg->trust.known_hosts);
	if ((sup->tunnels = tunnel_cache_new()) == NULL)
		fatalx("out of memory");
	setup_events(sup);
	reload_tunnels(sup);
	etcd_apply_config(sup, 1);
	if ((sup->control = control_new(sup)) == NULL)
		fatalx("cannot open the control socket %s",
		    sup->cfg->control_socket);
	{
		int merr;

		sup->metrics = metrics_new(sup, &merr);
		if (merr != 0)
			fatalx("cannot serve metrics on %s", sup->cfg->metrics_listen);
	}
	sup_sync(sup);
	log_info("supervisor started: %zu tunnel endpoints, worker %s",
	    pool_nkeys(sup->pool), sup->cfg->worker.path);
	notify_send("READY=1\nSTATUS=%zu agents", pool_nagents(sup->pool));
	event_base_dispatch(sup->base);
	log_info("supervisor stopped");
	teardown(sup);
	return 0;
}
