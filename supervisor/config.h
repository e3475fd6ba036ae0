/*
 * The supervisor's main configuration file (YAML, libyaml document API).
 *
 * Parsing never logs: every problem becomes one line in a struct
 * cfg_errors (cfgerr.h), "FILE:LINE:COLUMN: message" (1-based, from the
 * libyaml mark of the offending node), and the parser keeps going so that
 * one run of `tunnelpool check-config` shows every mistake.  Problems with
 * a file as a whole (cannot open, too large, empty) have no position and
 * read "FILE: message".  The caller decides what to log and whether to
 * keep its previous configuration.
 *
 * The schema is walked with cfgwalk.c, the walker the tunnel documents
 * (tunneldoc.c) and the tunnel_source block (etcd_config.c) use too, so
 * that all of them report errors alike.
 */
#ifndef TP_SUP_CONFIG_H
#define TP_SUP_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/log.h"
#include "supervisor/cfgerr.h"
#include "supervisor/etcd_config.h"

#define CONFIG_MAX_FILE		(1024 * 1024)	/* main config: 1 MiB */
#define CONFIG_DEFAULT_FILE	"/etc/tunnelpool/tunnelpool.yaml"
#define CONFIG_DEFAULT_WORKER	"/usr/libexec/tunnelpool/tunnelpool-agent"

/* ---- the configuration --------------------------------------------- */

/* Durations are in milliseconds.  Strings are never NULL ("" = unset). */
struct config {
	char		*file;		/* the path it was loaded from */
	char		*host_uuid;
	struct {
		char	*private_key;	/* resolved path */
		char	*certificate;	/* resolved path or "" */
	} identity;
	char		*proxy_user;
	struct {
		char	*known_hosts;	/* resolved path */
	} trust;
	char		*tunnels_dir;	/* resolved path; "" = no tunnel files */
	char		*state_dir;	/* resolved path: the etcd snapshot */
	struct etcd_config etcd;	/* tunnel_source.etcd */
	uint64_t	 resync_interval_ms;
	struct {
		uint64_t interval_ms;
		unsigned count;
	} keepalive;
	struct {
		uint64_t min_ms;
		uint64_t max_ms;
		uint64_t reset_after_ms;
	} backoff;
	unsigned	 max_inflight_dials;
	double		 spawn_rate;
	unsigned	 spawn_burst;
	struct {
		char	*user;
		char	*path;
		int	 allow_root;
		unsigned max_channels;
		char	*empty_root;
		double	 dial_rate;	/* target dials per second, per worker */
		unsigned dial_burst;
	} worker;
	char		*control_socket;
	char		*control_group;	/* "" = root only */
	char		*metrics_listen;	/* "" = off */
	struct {
		enum log_level	level;
		enum log_format	format;
	} log;
	struct {
		char	*ciphers;	/* comma lists, "" = libssh default */
		char	*kex;
		char	*hostkeys;
	} ssh;
	struct {
		uint64_t handshake_ms;
		uint64_t ready_ms;
		uint64_t close_grace_ms;
		uint64_t dial_ms;
		uint64_t ping_interval_ms;
	} timeouts;
	struct {
		uint64_t ttl_ms;
		uint64_t lag_probe_max_ms;
	} discovery;
};

/* What the caller knows better than the config file. */
struct config_defaults {
	const char	*worker_path;	/* NULL = CONFIG_DEFAULT_WORKER */
};

/* Flags for config_parse_buffer. */
#define CONFIG_NO_FS_CHECKS	0x1	/* do not look at referenced files */

/*
 * Reads and parses the main configuration file at path (size limit
 * CONFIG_MAX_FILE) and checks that the files it names exist and are
 * readable.  Relative paths in the file are resolved against the file's
 * directory.  defaults may be NULL.  Returns 0 and a new config in *cfgp,
 * or a negative tp_err with *cfgp NULL and at least one line added to errs.
 */
int config_load(const char *path, const struct config_defaults *defaults,
    struct config **cfgp, struct cfg_errors *errs);

/*
 * As config_load, from memory: file names the buffer in error lines and
 * anchors relative paths.  flags: CONFIG_NO_FS_CHECKS (fuzzing, tests).
 */
int config_parse_buffer(const char *file, const char *buf, size_t len,
    const struct config_defaults *defaults, int flags, struct config **cfgp,
    struct cfg_errors *errs);

void config_free(struct config *cfg);

/*
 * Prints the effective configuration (every key, defaults resolved) as
 * YAML that config_parse_buffer accepts again.
 */
void config_print(const struct config *cfg, FILE *f);

/*
 * check-config's first step (checkconfig.c): as config_load, but a file
 * with errors still yields what could be parsed, so that the files it
 * names can be checked too.  Returns 0 if the file is valid, TP_ESYNTAX
 * (errors in errs) or TP_ENOMEM.  *cfgp: the configuration, also after
 * TP_ESYNTAX when the file was a mapping (every string set, possibly to
 * ""; free it with config_free), else NULL.  *kh_ok: trust.known_hosts
 * names a readable file (when it does not, that is among the errors).
 */
int config_load_partial(const char *path,
    const struct config_defaults *defaults, struct config **cfgp, int *kh_ok,
    struct cfg_errors *errs);

#endif
