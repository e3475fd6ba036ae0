/*
 * The supervisor's main configuration file (YAML, libyaml document API).
 *
 * Parsing never logs: every problem becomes one line in a struct
 * cfg_errors, "FILE:LINE:COLUMN: message" (1-based, from the libyaml mark of
 * the offending node), and the parser keeps going so that one run of
 * `tunnelpool check-config` shows every mistake.  Problems with a file as a
 * whole (cannot open, too large, empty) have no position and read
 * "FILE: message".  The caller decides what to log and whether to keep its
 * previous configuration.
 *
 * The small schema walker used here (struct cfg_key, cfg_walk_map) is also
 * used by the tunnel file parser in tunnels.c, so both report errors alike.
 */
#ifndef TP_SUP_CONFIG_H
#define TP_SUP_CONFIG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <yaml.h>

#include "common/log.h"
#include "supervisor/etcd_config.h"

#define CONFIG_MAX_FILE		(1024 * 1024)	/* main config: 1 MiB */
#define CFG_ERRORS_MAX		1000	/* lines kept; the rest are counted */
#define CFG_NAME_MAX		127	/* safe names: [A-Za-z0-9._-] */

#define CONFIG_DEFAULT_FILE	"/etc/tunnelpool/tunnelpool.yaml"
#define CONFIG_DEFAULT_WORKER	"/usr/libexec/tunnelpool/tunnelpool-agent"

/* ---- error list ---------------------------------------------------- */

struct cfg_errors {
	char	**msg;		/* each a malloc'd line without newline */
	size_t	  n;
	size_t	  cap;
	size_t	  dropped;	/* lines not kept (limit or out of memory) */
};

void cfg_errors_init(struct cfg_errors *e);
void cfg_errors_free(struct cfg_errors *e);
/* Clears the list for reuse (frees the lines). */
void cfg_errors_clear(struct cfg_errors *e);
/* Appends one formatted line; never fails (counts it as dropped instead). */
void cfg_errors_add(struct cfg_errors *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cfg_errors_addv(struct cfg_errors *e, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Moves every line of src to the end of dst; src is left empty. */
void cfg_errors_move(struct cfg_errors *dst, struct cfg_errors *src);
/* Returns the number of errors reported, dropped ones included. */
size_t cfg_errors_count(const struct cfg_errors *e);
/* Returns the first line, or NULL if there is none. */
const char *cfg_errors_first(const struct cfg_errors *e);
/* Writes each line plus a newline (and a count of dropped lines) to f. */
void cfg_errors_print(const struct cfg_errors *e, FILE *f);

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
 * `tunnelpool check-config`: loads the main file, then the known_hosts
 * file and every tunnel file in tunnels_dir, collecting every error.
 * Returns 0 if everything is valid (and *cfgp set if cfgp is not NULL),
 * or TP_ESYNTAX with the errors in errs (*cfgp still set when the main
 * file itself was valid, NULL otherwise).  ntunnels (may be NULL) receives
 * the number of tunnels in the desired set.
 */
int config_check_all(const char *path, const struct config_defaults *defaults,
    struct config **cfgp, size_t *ntunnels, struct cfg_errors *errs);

/* ---- file and YAML helpers shared with tunnels.c and knownhosts.c ---- */

/*
 * Reads a whole regular file of at most max bytes into a NUL-terminated
 * malloc'd buffer.  Returns 0, or a negative tp_err with one "FILE:
 * message" line added to errs: TP_EAGAIN when another process has the
 * file open for writing (checked with a read lease; the caller must ignore
 * SIGIO, the lease-break signal).
 */
int cfg_read_file(const char *path, size_t max, char **bufp, size_t *lenp,
    struct cfg_errors *errs);

/*
 * A relative path in a file is taken relative to that file's directory,
 * not to the daemon's working directory ("/" under systemd): replaces *p
 * ("" and absolute paths stay).  Returns 0 or TP_ENOMEM.
 */
int cfg_resolve_path(char **p, const char *file);

/* One YAML document being checked against a schema. */
struct cfg_doc {
	const char		*file;
	yaml_document_t		*doc;
	struct cfg_errors	*errs;
	size_t			 nerr;	/* errors added through this doc */
};

/* Adds "FILE:LINE:COL: message" at the node's start mark. */
void cfg_node_error(struct cfg_doc *d, const yaml_node_t *node,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

enum cfg_type {
	CFG_STR,	/* char *, strdup'd */
	CFG_DUR,	/* uint64_t milliseconds, min..max */
	CFG_UINT,	/* unsigned, min..max */
	CFG_DOUBLE,	/* double, min..max */
	CFG_BOOL,	/* int 0/1 */
	CFG_MAP,	/* nested mapping: sub, same base */
	CFG_CUSTOM,	/* fn decides */
};

struct cfg_key;
typedef int cfg_custom_fn(struct cfg_doc *d, yaml_node_t *node, void *base,
    const char *keypath);
/* Returns NULL if s is acceptable, else a static reason ("must be ..."). */
typedef const char *cfg_check_fn(const char *s);

struct cfg_key {
	const char		*name;
	enum cfg_type		 type;
	size_t			 off;		/* into base */
	int			 required;
	double			 min, max;	/* DUR (ms), UINT, DOUBLE */
	const struct cfg_key	*sub;		/* CFG_MAP, NULL-name ended */
	cfg_custom_fn		*custom;	/* CFG_CUSTOM */
	cfg_check_fn		*check;		/* CFG_STR, optional */
};

/*
 * Walks a mapping node against keys (ended by an entry with a NULL name),
 * storing each value at base + off.  Reports unknown, duplicate and
 * missing required keys, wrong types and out-of-range values, naming each
 * key by its dotted path under prefix ("" at the top).  Returns the number
 * of errors it added.
 */
size_t cfg_walk_map(struct cfg_doc *d, yaml_node_t *map,
    const struct cfg_key *keys, const char *prefix, void *base);

/* Returns the value node at a dotted path under map ("a.b"), or NULL. */
yaml_node_t *cfg_find(yaml_document_t *doc, yaml_node_t *map,
    const char *path);

/* Formats s for an error message: at most ~64 bytes, controls escaped. */
const char *cfg_quote(const char *s, char *buf, size_t cap);

/*
 * Extracts a string scalar (not null, no NUL byte); on error reports it at
 * the node as "keypath: ..." and returns NULL.  The result points into the
 * document.
 */
const char *cfg_node_str(struct cfg_doc *d, yaml_node_t *node,
    const char *keypath);

/* Returns NULL if s is a safe name ([A-Za-z0-9._-], 1..127), else why not. */
const char *cfg_check_name(const char *s);

/*
 * Calls fn once per YAML document of buf (stopping early if fn returns
 * nonzero), reporting syntax errors as "FILE:LINE:COL: syntax error: ...".
 * Returns the number of documents seen, or -1 after a syntax error.
 */
typedef int cfg_doc_fn(struct cfg_doc *d, yaml_node_t *root, void *arg);
int cfg_each_doc(const char *file, const char *buf, size_t len,
    struct cfg_errors *errs, cfg_doc_fn *fn, void *arg);

#endif
