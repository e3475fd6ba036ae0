/*
 * The tunnel_source block of the main configuration (see etcd_config.h),
 * walked with the same schema walker as the rest of the file so that its
 * errors read alike.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/addr.h"
#include "common/error.h"
#include "supervisor/cfgread.h"
#include "supervisor/cfgwalk.h"
#include "supervisor/etcd_config.h"

#define QBUF	96

static const char *
check_nonempty(const char *s)
{
	return s[0] == '\0' ? "must not be empty" : NULL;
}

int
etcd_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s < 0x21 || *s > 0x7e)
			return 0;
	return 1;
}

/* Printable ASCII only: the prefix is named in logs and error lines. */
static const char *
check_prefix(const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return "must not be empty (the whole key space is never read)";
	if (n > ETCD_PREFIX_MAX)
		return "is too long (limit 512 bytes)";
	return etcd_printable(s) ? NULL :
	    "may only contain printable ASCII without spaces";
}

static const char *
check_user(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 128)
		return "must be 1 to 128 characters";
	return etcd_printable(s) ? NULL :
	    "may only contain printable ASCII without spaces";
}

/* Parses "http://host:port" / "https://[v6]:port" into e; NULL or why not. */
static const char *
endpoint_parse(const char *s, struct etcd_endpoint *e)
{
	struct tp_addr a;
	const char *rest;

	if (strncmp(s, "http://", 7) == 0) {
		e->tls = 0;
		rest = s + 7;
	} else if (strncmp(s, "https://", 8) == 0) {
		e->tls = 1;
		rest = s + 8;
	} else
		return "expected http://host:port or https://host:port";
	if (tp_addr_parse(rest, 0, &a) != 0)
		return "expected http://host:port or https://host:port (port "
		    "1..65535, no path)";
	if ((e->url = strdup(s)) == NULL || (e->host = strdup(a.host)) == NULL)
		return "out of memory";
	e->port = a.port;
	return NULL;
}

static int
parse_endpoints(struct cfg_doc *d, yaml_node_t *seq, void *base,
    const char *keypath)
{
	struct etcd_config *c = base;
	char path[160], q[QBUF];
	const char *s, *why;
	yaml_node_t *n;
	size_t i, cnt;

	if (seq->type != YAML_SEQUENCE_NODE) {
		cfg_node_error(d, seq, "%s: expected a sequence", keypath);
		return -1;
	}
	cnt = (size_t)(seq->data.sequence.items.top -
	    seq->data.sequence.items.start);
	if (cnt == 0 || cnt > ETCD_MAX_ENDPOINTS) {
		cfg_node_error(d, seq, "%s: expected 1 to %d endpoints, got %zu",
		    keypath, ETCD_MAX_ENDPOINTS, cnt);
		return -1;
	}
	for (i = 0; i < cnt; i++) {
		struct etcd_endpoint *e = &c->endpoints[c->n_endpoints];

		snprintf(path, sizeof(path), "%s[%zu]", keypath, i);
		n = yaml_document_get_node(d->doc,
		    seq->data.sequence.items.start[i]);
		if ((s = cfg_node_str(d, n, path)) == NULL)
			continue;
		if ((why = endpoint_parse(s, e)) != NULL) {
			free(e->url);
			free(e->host);
			memset(e, 0, sizeof(*e));
			cfg_node_error(d, n, "%s: invalid endpoint \"%s\": %s",
			    path, cfg_quote(s, q, sizeof(q)), why);
			continue;
		}
		c->n_endpoints++;
	}
	return 0;
}

#define EOFF(f)		offsetof(struct etcd_config, f)
#define ESTR(n, f, req, chk) { n, CFG_STR, EOFF(f), req, 0, 0, NULL, NULL, chk }
#define EEND		{ NULL, CFG_STR, 0, 0, 0, 0, NULL, NULL, NULL }

static const struct cfg_key tls_keys[] = {
	ESTR("ca", tls.ca, 0, check_nonempty),
	ESTR("cert", tls.cert, 0, check_nonempty),
	ESTR("key", tls.key, 0, check_nonempty),
	EEND
};
static const struct cfg_key etcd_keys[] = {
	{ "endpoints", CFG_CUSTOM, 0, 1, 0, 0, NULL, parse_endpoints, NULL },
	ESTR("prefix", prefix, 1, check_prefix),
	{ "tls", CFG_MAP, 0, 0, 0, 0, tls_keys, NULL, NULL },
	ESTR("username", username, 0, check_user),
	ESTR("password_file", password_file, 0, check_nonempty),
	EEND
};

static int
parse_etcd(struct cfg_doc *d, yaml_node_t *node, void *base,
    const char *keypath)
{
	struct etcd_config *c = base;

	c->enabled = 1;
	return cfg_walk_map(d, node, etcd_keys, keypath, c) == 0 ? 0 : -1;
}

static const struct cfg_key source_keys[] = {
	{ "etcd", CFG_CUSTOM, 0, 0, 0, 0, NULL, parse_etcd, NULL },
	EEND
};

size_t
etcd_config_parse(struct cfg_doc *d, yaml_node_t *node, struct etcd_config *c,
    const char *keypath)
{
	return cfg_walk_map(d, node, source_keys, keypath, c);
}

/* ---- after the walk ------------------------------------------------ */

static int
fill(char **p)
{
	if (*p == NULL && (*p = strdup("")) == NULL)
		return TP_ENOMEM;
	return 0;
}

static yaml_node_t *
at(struct cfg_doc *d, yaml_node_t *root, const char *path)
{
	yaml_node_t *n = cfg_find(d->doc, root, path);

	if (n == NULL)
		n = cfg_find(d->doc, root, "tunnel_source.etcd");
	return n != NULL ? n : root;
}

static void
check_file(struct cfg_doc *d, yaml_node_t *root, const char *key,
    const char *path)
{
	char q[QBUF], kp[96];
	struct stat st;
	int fd;

	if (path[0] == '\0')
		return;
	snprintf(kp, sizeof(kp), "tunnel_source.etcd.%s", key);
	cfg_quote(path, q, sizeof(q));
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		cfg_node_error(d, at(d, root, kp), "%s: cannot read \"%s\": %s",
		    kp, q, strerror(errno));
		return;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		cfg_node_error(d, at(d, root, kp), "%s: \"%s\" is not a regular "
		    "file", kp, q);
	close(fd);
}

/* Checks that involve more than one key. */
static void
cross_checks(struct cfg_doc *d, yaml_node_t *root, struct etcd_config *c)
{
	size_t i, ntls = 0;

	for (i = 0; i < c->n_endpoints; i++)
		ntls += c->endpoints[i].tls != 0;
	if (ntls != 0 && ntls != c->n_endpoints)
		cfg_node_error(d, at(d, root, "tunnel_source.etcd.endpoints"),
		    "tunnel_source.etcd.endpoints: mixes http:// and https://");
	if (ntls == 0 && (c->tls.ca[0] || c->tls.cert[0] || c->tls.key[0]))
		cfg_node_error(d, at(d, root, "tunnel_source.etcd.tls"),
		    "tunnel_source.etcd.tls: given, but the endpoints are "
		    "http://");
	if ((c->tls.cert[0] == '\0') != (c->tls.key[0] == '\0'))
		cfg_node_error(d, at(d, root, "tunnel_source.etcd.tls"),
		    "tunnel_source.etcd.tls: cert and key go together");
	if ((c->username[0] == '\0') != (c->password_file[0] == '\0'))
		cfg_node_error(d, at(d, root, c->username[0] ?
		    "tunnel_source.etcd.username" :
		    "tunnel_source.etcd.password_file"),
		    "tunnel_source.etcd: username and password_file go "
		    "together");
}

int
etcd_config_finish(struct cfg_doc *d, yaml_node_t *root,
    struct etcd_config *c, const char *file, int fs)
{
	int rc = 0;

	rc |= fill(&c->prefix);
	rc |= fill(&c->tls.ca);
	rc |= fill(&c->tls.cert);
	rc |= fill(&c->tls.key);
	rc |= fill(&c->username);
	rc |= fill(&c->password_file);
	if (rc != 0)
		return TP_ENOMEM;
	rc |= cfg_resolve_path(&c->tls.ca, file);
	rc |= cfg_resolve_path(&c->tls.cert, file);
	rc |= cfg_resolve_path(&c->tls.key, file);
	rc |= cfg_resolve_path(&c->password_file, file);
	if (rc != 0)
		return TP_ENOMEM;
	if (!c->enabled)
		return 0;
	cross_checks(d, root, c);
	if (fs) {
		check_file(d, root, "tls.ca", c->tls.ca);
		check_file(d, root, "tls.cert", c->tls.cert);
		check_file(d, root, "tls.key", c->tls.key);
		check_file(d, root, "password_file", c->password_file);
	}
	return 0;
}

void
etcd_config_free(struct etcd_config *c)
{
	size_t i;

	for (i = 0; i < c->n_endpoints; i++) {
		free(c->endpoints[i].url);
		free(c->endpoints[i].host);
	}
	free(c->prefix);
	free(c->tls.ca);
	free(c->tls.cert);
	free(c->tls.key);
	free(c->username);
	free(c->password_file);
	memset(c, 0, sizeof(*c));
}

static char *
dup0(const char *s)
{
	return strdup(s != NULL ? s : "");
}

int
etcd_config_copy(struct etcd_config *d, const struct etcd_config *s)
{
	int bad = 0;

	memset(d, 0, sizeof(*d));
	d->enabled = s->enabled;
	for (size_t i = 0; i < s->n_endpoints; i++) {
		d->endpoints[i] = s->endpoints[i];
		d->endpoints[i].url = dup0(s->endpoints[i].url);
		d->endpoints[i].host = dup0(s->endpoints[i].host);
		d->n_endpoints++;
		bad |= d->endpoints[i].url == NULL ||
		    d->endpoints[i].host == NULL;
	}
	d->prefix = dup0(s->prefix);
	d->tls.ca = dup0(s->tls.ca);
	d->tls.cert = dup0(s->tls.cert);
	d->tls.key = dup0(s->tls.key);
	d->username = dup0(s->username);
	d->password_file = dup0(s->password_file);
	if (bad || !d->prefix || !d->tls.ca || !d->tls.cert || !d->tls.key ||
	    !d->username || !d->password_file) {
		etcd_config_free(d);
		return TP_ENOMEM;
	}
	return 0;
}

static int
str_eq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

int
etcd_config_equal(const struct etcd_config *a, const struct etcd_config *b)
{
	size_t i;

	if (a->enabled != b->enabled || a->n_endpoints != b->n_endpoints)
		return 0;
	for (i = 0; i < a->n_endpoints; i++)
		if (!str_eq(a->endpoints[i].url, b->endpoints[i].url))
			return 0;
	return str_eq(a->prefix, b->prefix) && str_eq(a->tls.ca, b->tls.ca) &&
	    str_eq(a->tls.cert, b->tls.cert) && str_eq(a->tls.key, b->tls.key) &&
	    str_eq(a->username, b->username) &&
	    str_eq(a->password_file, b->password_file);
}

/* key NULL: a sequence item. */
static void
print_q(FILE *f, const char *indent, const char *key, const char *s)
{
	if (key != NULL)
		fprintf(f, "%s%s: \"", indent, key);
	else
		fprintf(f, "%s- \"", indent);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputs("\"\n", f);
}

void
etcd_config_print(const struct etcd_config *c, FILE *f)
{
	size_t i;

	if (!c->enabled)
		return;
	fputs("tunnel_source:\n  etcd:\n    endpoints:\n", f);
	for (i = 0; i < c->n_endpoints; i++)
		print_q(f, "      ", NULL, c->endpoints[i].url);
	print_q(f, "    ", "prefix", c->prefix);
	if (c->tls.ca[0] || c->tls.cert[0] || c->tls.key[0]) {
		fputs("    tls:\n", f);
		if (c->tls.ca[0])
			print_q(f, "      ", "ca", c->tls.ca);
		if (c->tls.cert[0])
			print_q(f, "      ", "cert", c->tls.cert);
		if (c->tls.key[0])
			print_q(f, "      ", "key", c->tls.key);
	}
	if (c->username[0]) {
		print_q(f, "    ", "username", c->username);
		print_q(f, "    ", "password_file", c->password_file);
	}
}
