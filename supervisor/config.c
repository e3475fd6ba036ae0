/*
 * The main configuration file, tunnelpool.yaml: its schema (walked with
 * cfgwalk.c), defaults, the checks that involve several keys or the file
 * system, and printing the effective configuration in the same schema.
 * The tunnel_source block has its schema in etcd_config.c.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "common/addr.h"
#include "common/error.h"
#include "common/log.h"
#include "supervisor/cfgread.h"
#include "supervisor/cfgwalk.h"
#include "supervisor/config.h"

/* ---- the schema of tunnelpool.yaml ----------------------------------- */

static const char *
check_nonempty(const char *s)
{
	return s[0] == '\0' ? "must not be empty" : NULL;
}

static const char *
check_abs_path(const char *s)
{
	if (s[0] != '/')
		return "must be an absolute path";
	return strlen(s) >= 4096 ? "is too long" : NULL;
}

static const char *
check_socket_path(const char *s)
{
	if (s[0] != '/')
		return "must be an absolute path";
	return strlen(s) >= TP_PATH_MAX ? "is too long for a unix socket" :
	    NULL;
}

static const char *
check_name_or_empty(const char *s)
{
	return s[0] == '\0' ? NULL : cfg_check_name(s);
}

static const char *
check_listen(const char *s)
{
	struct tp_addr a;

	if (s[0] == '\0')
		return NULL;
	if (tp_addr_parse(s, 0, &a) != 0)
		return "expected host:port or [v6]:port with port 1..65535";
	return NULL;
}

static const char *
check_algos(const char *s)
{
	if (strlen(s) > 1024)
		return "is too long";
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("@._+-,", *s) == NULL)
			return "expected a comma-separated list of algorithm names";
	return NULL;
}

static const char *
check_log_level(const char *s)
{
	enum log_level l;

	return log_parse_level(s, &l) == 0 ? NULL :
	    "expected debug, info, warn or error";
}

static const char *
check_log_format(const char *s)
{
	enum log_format f;

	return log_parse_format(s, &f) == 0 ? NULL : "expected logfmt or json";
}

/* The parse target: strings for log.* are converted after the walk. */
struct cfg_raw {
	struct config	 c;
	char		*log_level;
	char		*log_format;
	char		*proxy_user;	/* NULL = default to host_uuid */
	int		 walked;	/* the document was a checked mapping */
	int		 kh_bad;	/* trust.known_hosts is not readable */
};

/* The tunnel_source block has a schema of its own (etcd_config.c). */
static int
parse_tunnel_source(struct cfg_doc *d, yaml_node_t *node, void *base,
    const char *keypath)
{
	return etcd_config_parse(d, node, &((struct cfg_raw *)base)->c.etcd,
	    keypath) == 0 ? 0 : -1;
}

#define OFF(f)		offsetof(struct cfg_raw, f)
#define MS_S		1000.0
#define MS_M		60000.0
#define MS_H		3600000.0
#define MS_D		86400000.0
#define STR(n, f, req, chk)	{ n, CFG_STR, OFF(f), req, 0, 0, NULL, NULL, chk }
#define DUR(n, f, lo, hi)	{ n, CFG_DUR, OFF(f), 0, lo, hi, NULL, NULL, NULL }
#define UINT(n, f, lo, hi)	{ n, CFG_UINT, OFF(f), 0, lo, hi, NULL, NULL, NULL }
#define MAP(n, sub, req)	{ n, CFG_MAP, 0, req, 0, 0, sub, NULL, NULL }
#define END			{ NULL, CFG_STR, 0, 0, 0, 0, NULL, NULL, NULL }

static const struct cfg_key identity_keys[] = {
	STR("private_key", c.identity.private_key, 1, check_nonempty),
	STR("certificate", c.identity.certificate, 0, NULL),
	END
};
static const struct cfg_key trust_keys[] = {
	STR("known_hosts", c.trust.known_hosts, 1, check_nonempty),
	END
};
static const struct cfg_key keepalive_keys[] = {
	DUR("interval", c.keepalive.interval_ms, 100, MS_H),
	UINT("count", c.keepalive.count, 1, 100),
	END
};
static const struct cfg_key backoff_keys[] = {
	DUR("min", c.backoff.min_ms, 10, MS_H),
	DUR("max", c.backoff.max_ms, 10, MS_D),
	DUR("reset_after", c.backoff.reset_after_ms, 0, MS_D),
	END
};
static const struct cfg_key worker_keys[] = {
	STR("user", c.worker.user, 0, cfg_check_name),
	STR("path", c.worker.path, 0, check_abs_path),
	{ "allow_root", CFG_BOOL, OFF(c.worker.allow_root), 0, 0, 0, NULL,
	    NULL, NULL },
	UINT("max_channels", c.worker.max_channels, 1, 65535),
	STR("empty_root", c.worker.empty_root, 0, check_abs_path),
	{ "dial_rate", CFG_DOUBLE, OFF(c.worker.dial_rate), 0, 1, 100000,
	    NULL, NULL, NULL },
	UINT("dial_burst", c.worker.dial_burst, 1, 100000),
	END
};
static const struct cfg_key log_keys[] = {
	STR("level", log_level, 0, check_log_level),
	STR("format", log_format, 0, check_log_format),
	END
};
static const struct cfg_key ssh_keys[] = {
	STR("ciphers", c.ssh.ciphers, 0, check_algos),
	STR("kex", c.ssh.kex, 0, check_algos),
	STR("hostkeys", c.ssh.hostkeys, 0, check_algos),
	END
};
static const struct cfg_key timeout_keys[] = {
	DUR("handshake", c.timeouts.handshake_ms, 100, MS_H),
	DUR("ready", c.timeouts.ready_ms, 100, MS_H),
	DUR("close_grace", c.timeouts.close_grace_ms, 0, MS_H),
	DUR("dial", c.timeouts.dial_ms, 100, MS_H),
	DUR("ping_interval", c.timeouts.ping_interval_ms, 100, MS_H),
	END
};
static const struct cfg_key discovery_keys[] = {
	DUR("ttl", c.discovery.ttl_ms, MS_S, MS_D),
	DUR("lag_probe_max", c.discovery.lag_probe_max_ms, 10, MS_H),
	END
};
static const struct cfg_key top_keys[] = {
	STR("host_uuid", c.host_uuid, 1, cfg_check_name),
	MAP("identity", identity_keys, 1),
	STR("proxy_user", proxy_user, 0, cfg_check_name),
	MAP("trust", trust_keys, 1),
	STR("tunnels_dir", c.tunnels_dir, 0, check_nonempty),
	STR("state_dir", c.state_dir, 0, check_nonempty),
	{ "tunnel_source", CFG_CUSTOM, 0, 0, 0, 0, NULL, parse_tunnel_source,
	    NULL },
	DUR("resync_interval", c.resync_interval_ms, 100, MS_H),
	MAP("keepalive", keepalive_keys, 0),
	MAP("backoff", backoff_keys, 0),
	UINT("max_inflight_dials", c.max_inflight_dials, 1, 64),
	{ "spawn_rate", CFG_DOUBLE, OFF(c.spawn_rate), 0, 0.01, 10000, NULL,
	    NULL, NULL },
	UINT("spawn_burst", c.spawn_burst, 1, 10000),
	MAP("worker", worker_keys, 0),
	STR("control_socket", c.control_socket, 0, check_socket_path),
	STR("control_group", c.control_group, 0, check_name_or_empty),
	STR("metrics_listen", c.metrics_listen, 0, check_listen),
	MAP("log", log_keys, 0),
	MAP("ssh", ssh_keys, 0),
	MAP("timeouts", timeout_keys, 0),
	MAP("discovery", discovery_keys, 0),
	END
};

/* Every string member of struct cfg_raw, for defaults and freeing. */
static const size_t str_offsets[] = {
	OFF(c.file), OFF(c.host_uuid), OFF(c.identity.private_key),
	OFF(c.identity.certificate), OFF(c.proxy_user),
	OFF(c.trust.known_hosts), OFF(c.tunnels_dir), OFF(c.state_dir),
	OFF(c.worker.user),
	OFF(c.worker.path), OFF(c.worker.empty_root), OFF(c.control_socket),
	OFF(c.control_group), OFF(c.metrics_listen), OFF(c.ssh.ciphers),
	OFF(c.ssh.kex), OFF(c.ssh.hostkeys), OFF(log_level), OFF(log_format),
	OFF(proxy_user),
};
#define NSTR	(sizeof(str_offsets) / sizeof(str_offsets[0]))

static char **
raw_str(struct cfg_raw *r, size_t i)
{
	return (char **)((char *)r + str_offsets[i]);
}

static void
raw_free(struct cfg_raw *r)
{
	size_t i;

	for (i = 0; i < NSTR; i++)
		free(*raw_str(r, i));
	etcd_config_free(&r->c.etcd);
	free(r);
}

static int
raw_set(char **dst, const char *s)
{
	free(*dst);
	*dst = strdup(s);
	return *dst == NULL ? TP_ENOMEM : 0;
}

static int
raw_defaults(struct cfg_raw *r, const char *file,
    const struct config_defaults *def)
{
	struct config *c = &r->c;
	const char *wp = def && def->worker_path ? def->worker_path :
	    CONFIG_DEFAULT_WORKER;
	int rc = 0;

	rc |= raw_set(&c->file, file);
	rc |= raw_set(&c->state_dir, "/var/lib/tunnelpool");
	rc |= raw_set(&c->worker.user, "tunnelpool");
	rc |= raw_set(&c->worker.path, wp);
	rc |= raw_set(&c->worker.empty_root, "/var/empty/tunnelpool");
	rc |= raw_set(&c->control_socket, "/run/tunnelpool/control.sock");
	rc |= raw_set(&c->metrics_listen, "127.0.0.1:9465");
	rc |= raw_set(&r->log_level, "info");
	rc |= raw_set(&r->log_format, "logfmt");
	c->resync_interval_ms = 5000;
	c->keepalive.interval_ms = 5000;
	c->keepalive.count = 3;
	c->backoff.min_ms = 1000;
	c->backoff.max_ms = 30000;
	c->backoff.reset_after_ms = 30000;
	c->max_inflight_dials = 3;
	c->spawn_rate = 20;
	c->spawn_burst = 10;
	c->worker.max_channels = 256;
	c->worker.dial_rate = 200;
	c->worker.dial_burst = 400;
	c->timeouts.handshake_ms = 15000;
	c->timeouts.ready_ms = 5000;
	c->timeouts.close_grace_ms = 5000;
	c->timeouts.dial_ms = 5000;
	c->timeouts.ping_interval_ms = 10000;
	c->discovery.ttl_ms = 180000;
	c->discovery.lag_probe_max_ms = 4000;
	return rc ? TP_ENOMEM : 0;
}

/* Every remaining NULL string becomes "" so consumers never see NULL. */
static int
raw_fill_empty(struct cfg_raw *r)
{
	size_t i;

	for (i = 0; i < NSTR; i++)
		if (*raw_str(r, i) == NULL && raw_set(raw_str(r, i), "") != 0)
			return TP_ENOMEM;
	return 0;
}

/* Reports at the key's node if present, else at the enclosing mapping. */
static yaml_node_t *
where(struct cfg_doc *d, yaml_node_t *root, const char *path)
{
	char parent[CFG_KEYPATH_MAX];
	yaml_node_t *n;
	char *dot;

	if ((n = cfg_find(d->doc, root, path)) != NULL)
		return n;
	snprintf(parent, sizeof(parent), "%s", path);
	if ((dot = strrchr(parent, '.')) != NULL) {
		*dot = '\0';
		if ((n = cfg_find(d->doc, root, parent)) != NULL)
			return n;
	}
	return root;
}

/* Returns 0 if path is a readable regular file, else -1 (reported). */
static int
check_readable(struct cfg_doc *d, yaml_node_t *root, const char *key,
    const char *path)
{
	char q[CFG_QUOTE_BUF];
	struct stat st;
	int fd;

	if (path[0] == '\0')	/* missing or invalid: already reported */
		return -1;
	cfg_quote(path, q, sizeof(q));
	if (stat(path, &st) == -1) {
		cfg_node_error(d, where(d, root, key), "%s: cannot read \"%s\": "
		    "%s", key, q, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		cfg_node_error(d, where(d, root, key), "%s: \"%s\" is not a "
		    "regular file", key, q);
		return -1;
	}
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		cfg_node_error(d, where(d, root, key), "%s: cannot read \"%s\": "
		    "%s", key, q, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

/* Checks that involve more than one key, or the file system. */
static void
cross_checks(struct cfg_doc *d, yaml_node_t *root, struct cfg_raw *r,
    int flags)
{
	struct config *c = &r->c;

	if (c->backoff.min_ms > c->backoff.max_ms)
		cfg_node_error(d, where(d, root, cfg_find(d->doc, root,
		    "backoff.max") ? "backoff.max" : "backoff.min"),
		    "backoff.max must not be less than backoff.min");
	if (strcmp(c->worker.user, "root") == 0 && !c->worker.allow_root)
		cfg_node_error(d, where(d, root, "worker.user"), "worker.user: "
		    "refusing to run workers as root without "
		    "worker.allow_root: true");
	if (flags & CONFIG_NO_FS_CHECKS)
		return;
	check_readable(d, root, "identity.private_key",
	    c->identity.private_key);
	if (c->identity.certificate[0] != '\0')
		check_readable(d, root, "identity.certificate",
		    c->identity.certificate);
	if (check_readable(d, root, "trust.known_hosts",
	    c->trust.known_hosts) != 0)
		r->kh_bad = 1;
}

static int
raw_finish(struct cfg_raw *r)
{
	struct config *c = &r->c;
	int rc = 0;

	/* With an etcd source, tunnel files are used only when asked for. */
	if (c->tunnels_dir == NULL && !c->etcd.enabled &&
	    raw_set(&c->tunnels_dir, "/etc/tunnelpool/tunnels.d") != 0)
		return TP_ENOMEM;
	if (raw_fill_empty(r) != 0)
		return TP_ENOMEM;
	if (r->proxy_user[0] == '\0')
		rc |= raw_set(&r->proxy_user, c->host_uuid);
	free(c->proxy_user);
	c->proxy_user = r->proxy_user;
	r->proxy_user = NULL;
	if (c->proxy_user == NULL)
		return TP_ENOMEM;
	log_parse_level(r->log_level, &c->log.level);
	log_parse_format(r->log_format, &c->log.format);
	rc |= cfg_resolve_path(&c->identity.private_key, c->file);
	rc |= cfg_resolve_path(&c->identity.certificate, c->file);
	rc |= cfg_resolve_path(&c->trust.known_hosts, c->file);
	rc |= cfg_resolve_path(&c->tunnels_dir, c->file);
	rc |= cfg_resolve_path(&c->state_dir, c->file);
	return rc ? TP_ENOMEM : 0;
}

struct parse_ctx {
	struct cfg_raw	*raw;
	int		 flags;
	int		 ndocs;
};

static int
config_doc(struct cfg_doc *d, yaml_node_t *root, void *arg)
{
	struct parse_ctx *pc = arg;

	if (++pc->ndocs > 1) {
		cfg_node_error(d, root, "the configuration must be a single "
		    "YAML document");
		return 1;
	}
	/* Keep going after errors: check-config should show them all. */
	cfg_walk_map(d, root, top_keys, "", pc->raw);
	if (raw_finish(pc->raw) != 0 ||
	    etcd_config_finish(d, root, &pc->raw->c.etcd, pc->raw->c.file,
	    !(pc->flags & CONFIG_NO_FS_CHECKS)) != 0) {
		cfg_node_error(d, root, "out of memory");
		return 0;
	}
	cross_checks(d, root, pc->raw, pc->flags);
	pc->raw->walked = root->type == YAML_MAPPING_NODE;
	return 0;
}

/*
 * Parses into a cfg_raw that is returned even when there were errors, so
 * that check-config can go on to the tunnel and known_hosts files.
 * Returns NULL only when out of memory (reported).
 */
static struct cfg_raw *
parse_raw(const char *file, const char *buf, size_t len,
    const struct config_defaults *defaults, int flags,
    struct cfg_errors *errs)
{
	struct parse_ctx pc = { NULL, flags, 0 };

	if ((pc.raw = calloc(1, sizeof(*pc.raw))) == NULL ||
	    raw_defaults(pc.raw, file, defaults) != 0) {
		cfg_errors_add(errs, "%s: out of memory", file);
		if (pc.raw != NULL)
			raw_free(pc.raw);
		return NULL;
	}
	if (len > CONFIG_MAX_FILE)
		cfg_errors_add(errs, "%s: file too large (%zu bytes, limit %d)",
		    file, len, CONFIG_MAX_FILE);
	else if (cfg_each_doc(file, buf, len, errs, config_doc, &pc) == 0)
		cfg_errors_add(errs, "%s: empty configuration file", file);
	return pc.raw;
}

int
config_parse_buffer(const char *file, const char *buf, size_t len,
    const struct config_defaults *defaults, int flags, struct config **cfgp,
    struct cfg_errors *errs)
{
	size_t before = cfg_errors_count(errs);
	struct cfg_raw *raw;

	*cfgp = NULL;
	if ((raw = parse_raw(file, buf, len, defaults, flags, errs)) == NULL)
		return TP_ENOMEM;
	if (cfg_errors_count(errs) != before) {
		raw_free(raw);
		return TP_ESYNTAX;
	}
	*cfgp = &raw->c;	/* c is the first member: config_free frees raw */
	return 0;
}

int
config_load(const char *path, const struct config_defaults *defaults,
    struct config **cfgp, struct cfg_errors *errs)
{
	size_t len;
	char *buf;
	int rc;

	*cfgp = NULL;
	if ((rc = cfg_read_file(path, CONFIG_MAX_FILE, &buf, &len, errs)) != 0)
		return rc;
	rc = config_parse_buffer(path, buf, len, defaults, 0, cfgp, errs);
	free(buf);
	return rc;
}

int
config_load_partial(const char *path, const struct config_defaults *defaults,
    struct config **cfgp, int *kh_ok, struct cfg_errors *errs)
{
	size_t before = cfg_errors_count(errs), len;
	struct cfg_raw *raw;
	char *buf;

	*cfgp = NULL;
	*kh_ok = 0;
	if (cfg_read_file(path, CONFIG_MAX_FILE, &buf, &len, errs) != 0)
		return TP_ESYNTAX;
	raw = parse_raw(path, buf, len, defaults, 0, errs);
	free(buf);
	if (raw == NULL)
		return TP_ENOMEM;
	if (!raw->walked) {	/* names nothing we could trust */
		raw_free(raw);
		return TP_ESYNTAX;
	}
	/* What raw_finish could not fill (out of memory) must not be NULL. */
	if (raw_fill_empty(raw) != 0) {
		cfg_errors_add(errs, "%s: out of memory", path);
		raw_free(raw);
		return TP_ENOMEM;
	}
	*kh_ok = !raw->kh_bad;
	*cfgp = &raw->c;
	return cfg_errors_count(errs) == before ? 0 : TP_ESYNTAX;
}

void
config_free(struct config *cfg)
{
	if (cfg != NULL)
		raw_free((struct cfg_raw *)(void *)cfg);
}

/* ---- printing ------------------------------------------------------ */

static void
print_str(FILE *f, const char *indent, const char *key, const char *s)
{
	fprintf(f, "%s%s: \"", indent, key);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
	fputs("\"\n", f);
}

static void
print_dur(FILE *f, const char *indent, const char *key, uint64_t ms)
{
	char b[32];

	fprintf(f, "%s%s: %s\n", indent, key, cfg_fmt_dur(ms, b, sizeof(b)));
}

static const char *
level_name(enum log_level l)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };

	return (unsigned)l < 4 ? names[l] : "info";
}

static void
print_top(const struct config *c, FILE *f)
{
	print_str(f, "", "host_uuid", c->host_uuid);
	fputs("identity:\n", f);
	print_str(f, "  ", "private_key", c->identity.private_key);
	print_str(f, "  ", "certificate", c->identity.certificate);
	print_str(f, "", "proxy_user", c->proxy_user);
	fputs("trust:\n", f);
	print_str(f, "  ", "known_hosts", c->trust.known_hosts);
	if (c->tunnels_dir[0] != '\0')
		print_str(f, "", "tunnels_dir", c->tunnels_dir);
	print_str(f, "", "state_dir", c->state_dir);
	etcd_config_print(&c->etcd, f);
	print_dur(f, "", "resync_interval", c->resync_interval_ms);
	fputs("keepalive:\n", f);
	print_dur(f, "  ", "interval", c->keepalive.interval_ms);
	fprintf(f, "  count: %u\n", c->keepalive.count);
	fputs("backoff:\n", f);
	print_dur(f, "  ", "min", c->backoff.min_ms);
	print_dur(f, "  ", "max", c->backoff.max_ms);
	print_dur(f, "  ", "reset_after", c->backoff.reset_after_ms);
	fprintf(f, "max_inflight_dials: %u\n", c->max_inflight_dials);
	fprintf(f, "spawn_rate: %.15g\n", c->spawn_rate);
	fprintf(f, "spawn_burst: %u\n", c->spawn_burst);
}

static void
print_rest(const struct config *c, FILE *f)
{
	fputs("worker:\n", f);
	print_str(f, "  ", "user", c->worker.user);
	print_str(f, "  ", "path", c->worker.path);
	fprintf(f, "  allow_root: %s\n", c->worker.allow_root ? "true" : "false");
	fprintf(f, "  max_channels: %u\n", c->worker.max_channels);
	print_str(f, "  ", "empty_root", c->worker.empty_root);
	fprintf(f, "  dial_rate: %.15g\n", c->worker.dial_rate);
	fprintf(f, "  dial_burst: %u\n", c->worker.dial_burst);
	print_str(f, "", "control_socket", c->control_socket);
	print_str(f, "", "control_group", c->control_group);
	print_str(f, "", "metrics_listen", c->metrics_listen);
	fputs("log:\n", f);
	fprintf(f, "  level: %s\n", level_name(c->log.level));
	fprintf(f, "  format: %s\n",
	    c->log.format == LOG_FMT_JSON ? "json" : "logfmt");
	fputs("ssh:\n", f);
	print_str(f, "  ", "ciphers", c->ssh.ciphers);
	print_str(f, "  ", "kex", c->ssh.kex);
	print_str(f, "  ", "hostkeys", c->ssh.hostkeys);
	fputs("timeouts:\n", f);
	print_dur(f, "  ", "handshake", c->timeouts.handshake_ms);
	print_dur(f, "  ", "ready", c->timeouts.ready_ms);
	print_dur(f, "  ", "close_grace", c->timeouts.close_grace_ms);
	print_dur(f, "  ", "dial", c->timeouts.dial_ms);
	print_dur(f, "  ", "ping_interval", c->timeouts.ping_interval_ms);
	fputs("discovery:\n", f);
	print_dur(f, "  ", "ttl", c->discovery.ttl_ms);
	print_dur(f, "  ", "lag_probe_max", c->discovery.lag_probe_max_ms);
}

void
config_print(const struct config *cfg, FILE *f)
{
	fprintf(f, "# effective configuration of %s\n", cfg->file);
	print_top(cfg, f);
	print_rest(cfg, f);
}
