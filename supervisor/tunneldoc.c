/*
 * One reverse_tunnel document (tunneldoc.h): its schema, walked with
 * cfgwalk.c, the canonical forms of its addresses and its spec hash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "common/error.h"
#include "common/fnv.h"
#include "supervisor/cfgerr.h"
#include "supervisor/cfgwalk.h"
#include "supervisor/tunneldoc.h"

#define ADDR_BUF	(TP_HOST_MAX + 16)
#define QBUF		96

/* ---- hashing ------------------------------------------------------- */

static uint64_t
spec_hash(const struct tunnel *t)
{
	uint64_t h = TP_FNV1A_INIT, n;
	size_t i;

	h = tp_fnv1a_str(h, t->cluster_name);
	n = t->n_dial_addrs;
	h = tp_fnv1a(h, &n, sizeof(n));
	for (i = 0; i < t->n_dial_addrs; i++)
		h = tp_fnv1a_str(h, t->dial_addrs[i]);
	n = t->n_forwards;
	h = tp_fnv1a(h, &n, sizeof(n));
	for (i = 0; i < t->n_forwards; i++) {
		h = tp_fnv1a_str(h, t->forwards[i].listen);
		h = tp_fnv1a_str(h, t->forwards[i].target);
	}
	n = (uint64_t)t->discovery;
	h = tp_fnv1a(h, &n, sizeof(n));
	/* Whom a certificate may name is trust: a change replaces the agents. */
	n = t->n_proxy_principals;
	h = tp_fnv1a(h, &n, sizeof(n));
	for (i = 0; i < t->n_proxy_principals; i++)
		h = tp_fnv1a_str(h, t->proxy_principals[i]);
	return h;
}

/* ---- tunnels and lists ----------------------------------------------- */

static void
tunnel_clear(struct tunnel *t)
{
	size_t i;

	free(t->name);
	free(t->cluster_name);
	for (i = 0; i < t->n_dial_addrs; i++)
		free(t->dial_addrs[i]);
	free(t->dial_addrs);
	for (i = 0; i < t->n_forwards; i++) {
		free(t->forwards[i].listen);
		free(t->forwards[i].listen_host);
		free(t->forwards[i].target);
	}
	free(t->forwards);
	for (i = 0; i < t->n_proxy_principals; i++)
		free(t->proxy_principals[i]);
	free(t->proxy_principals);
	memset(t, 0, sizeof(*t));
}

void
tunnel_list_free(struct tunnel_list *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		tunnel_clear(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* Moves *t (zeroed afterwards) to the end of l. */
static int
tunnel_list_push(struct tunnel_list *l, struct tunnel *t)
{
	struct tunnel *nv;
	size_t ncap;

	if (l->n == l->cap) {
		ncap = l->cap ? l->cap * 2 : 4;
		if ((nv = reallocarray(l->v, ncap, sizeof(*nv))) == NULL)
			return TP_ENOMEM;
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n++] = *t;
	memset(t, 0, sizeof(*t));
	return 0;
}

/* ---- parsing one document ------------------------------------------ */

/* The parse target of one document. */
struct tdoc {
	char		*kind;
	char		*version;
	struct tunnel	 t;
};

/* The parse target of one forward. */
struct fwd_raw {
	char	*listen;
	char	*target;
};

static const char *
check_kind(const char *s)
{
	return strcmp(s, "reverse_tunnel") == 0 ? NULL :
	    "must be \"reverse_tunnel\"";
}

static const char *
check_version(const char *s)
{
	return strcmp(s, "v2") == 0 ? NULL : "must be \"v2\"";
}

static const char *
check_listen(const char *s)
{
	struct tp_addr a;

	return tp_addr_parse(s, 0, &a) == 0 ? NULL :
	    "expected host:port or [v6]:port with port 1..65535";
}

static const char *
check_target(const char *s)
{
	struct tp_addr a;

	return tp_addr_parse(s, 1, &a) == 0 ? NULL :
	    "expected host:port, [v6]:port or an absolute unix socket path";
}

/* Canonical form of an address already accepted by a check function. */
static char *
canon_addr(const char *s, int allow_unix, struct tp_addr *a)
{
	char buf[ADDR_BUF];

	if (tp_addr_parse(s, allow_unix, a) != 0 ||
	    tp_addr_format(a, buf, sizeof(buf)) != 0)
		return NULL;
	return strdup(buf);
}

static int
seq_check(struct cfg_doc *d, yaml_node_t *seq, const char *keypath,
    size_t min, size_t max)
{
	size_t n;

	if (seq->type != YAML_SEQUENCE_NODE) {
		cfg_node_error(d, seq, "%s: expected a sequence", keypath);
		return -1;
	}
	n = (size_t)(seq->data.sequence.items.top -
	    seq->data.sequence.items.start);
	if (n < min) {
		cfg_node_error(d, seq, "%s: must not be empty", keypath);
		return -1;
	}
	if (n > max) {
		cfg_node_error(d, seq, "%s: too many entries (%zu, limit %zu)",
		    keypath, n, max);
		return -1;
	}
	return (int)n;
}

/* Adds one dial address; duplicates within a tunnel are an error. */
static void
dial_add(struct cfg_doc *d, yaml_node_t *n, struct tunnel *t,
    const char *path)
{
	const char *s, *why;
	char q[QBUF], *c;
	struct tp_addr a;
	size_t i;

	if ((s = cfg_node_str(d, n, path)) == NULL)
		return;
	if ((why = check_listen(s)) != NULL) {
		cfg_node_error(d, n, "%s: invalid address \"%s\": %s", path,
		    cfg_quote(s, q, sizeof(q)), why);
		return;
	}
	if ((c = canon_addr(s, 0, &a)) == NULL) {
		cfg_node_error(d, n, "%s: out of memory", path);
		return;
	}
	for (i = 0; i < t->n_dial_addrs; i++)
		if (strcmp(t->dial_addrs[i], c) == 0) {
			cfg_node_error(d, n, "%s: duplicate address \"%s\"",
			    path, c);
			free(c);
			return;
		}
	t->dial_addrs[t->n_dial_addrs++] = c;
}

static int
parse_dial_addrs(struct cfg_doc *d, yaml_node_t *seq, void *base,
    const char *keypath)
{
	struct tunnel *t = &((struct tdoc *)base)->t;
	char path[160];
	int i, n;

	if ((n = seq_check(d, seq, keypath, 1, TUNNEL_MAX_DIAL_ADDRS)) < 0)
		return -1;
	if ((t->dial_addrs = calloc((size_t)n, sizeof(char *))) == NULL) {
		cfg_node_error(d, seq, "%s: out of memory", keypath);
		return -1;
	}
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s[%d]", keypath, i);
		dial_add(d, yaml_document_get_node(d->doc,
		    seq->data.sequence.items.start[i]), t, path);
	}
	return 0;
}

static const struct cfg_key fwd_keys[] = {
	{ "listen", CFG_STR, offsetof(struct fwd_raw, listen), 1, 0, 0, NULL,
	    NULL, check_listen },
	{ "target", CFG_STR, offsetof(struct fwd_raw, target), 1, 0, 0, NULL,
	    NULL, check_target },
	{ NULL, CFG_STR, 0, 0, 0, 0, NULL, NULL, NULL },
};

/* Fills f from a validated raw forward; returns 0 or TP_ENOMEM. */
static int
fwd_fill(struct tunnel_forward *f, const struct fwd_raw *r)
{
	struct tp_addr a;

	if ((f->target = canon_addr(r->target, 1, &a)) == NULL)
		return TP_ENOMEM;
	f->target_is_unix = a.is_unix;
	if ((f->listen = canon_addr(r->listen, 0, &a)) == NULL ||
	    (f->listen_host = strdup(a.host)) == NULL)
		return TP_ENOMEM;
	f->listen_port = a.port;
	return 0;
}

static void
fwd_add(struct cfg_doc *d, yaml_node_t *n, struct tunnel *t,
    const char *path)
{
	struct tunnel_forward *f = &t->forwards[t->n_forwards];
	struct fwd_raw r = { NULL, NULL };
	size_t i;

	if (cfg_walk_map(d, n, fwd_keys, path, &r) != 0)
		goto out;
	t->n_forwards++;	/* so tunnel_clear frees a partial fill */
	if (fwd_fill(f, &r) != 0) {
		cfg_node_error(d, n, "%s: out of memory", path);
		goto out;
	}
	for (i = 0; i + 1 < t->n_forwards; i++)
		if (strcmp(t->forwards[i].listen, f->listen) == 0) {
			cfg_node_error(d, n, "%s.listen: duplicate listen "
			    "address \"%s\"", path, f->listen);
			break;
		}
out:
	free(r.listen);
	free(r.target);
}

static int
parse_forwards(struct cfg_doc *d, yaml_node_t *seq, void *base,
    const char *keypath)
{
	struct tunnel *t = &((struct tdoc *)base)->t;
	char path[160];
	int i, n;

	if ((n = seq_check(d, seq, keypath, 0, TUNNEL_MAX_FORWARDS)) <= 0)
		return n;
	t->forwards = calloc((size_t)n, sizeof(*t->forwards));
	if (t->forwards == NULL) {
		cfg_node_error(d, seq, "%s: out of memory", keypath);
		return -1;
	}
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s[%d]", keypath, i);
		fwd_add(d, yaml_document_get_node(d->doc,
		    seq->data.sequence.items.start[i]), t, path);
	}
	return 0;
}

/*
 * A proxy_principals entry: a host name or a glob of one ('*' and '?'),
 * from the characters host names use.  A pattern of wildcards alone would
 * accept any certificate the CA ever signed: it is refused.
 */
static const char *
check_principal(const char *s)
{
	size_t n = strlen(s), literal = 0;

	if (n == 0 || n >= TUNNEL_PRINCIPAL_MAX)
		return "must be 1..127 characters";
	for (const char *p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '*' || c == '?')
			continue;
		if (!(c == '.' || c == '-' || c == '_' || c == ':' ||
		    (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' &&
		    (c | 0x20) <= 'z')))
			return "only letters, digits, '.', '-', '_', ':' and the "
			    "wildcards '*' and '?'";
		if (c != '.')
			literal++;
	}
	return literal == 0 ? "matches every name: list the proxies' names or "
	    "a pattern with a domain" : NULL;
}

static void
principal_add(struct cfg_doc *d, yaml_node_t *n, struct tunnel *t,
    const char *path)
{
	const char *s, *why;
	char q[QBUF];
	size_t i;

	if ((s = cfg_node_str(d, n, path)) == NULL)
		return;
	if ((why = check_principal(s)) != NULL) {
		cfg_node_error(d, n, "%s: invalid name \"%s\": %s", path,
		    cfg_quote(s, q, sizeof(q)), why);
		return;
	}
	for (i = 0; i < t->n_proxy_principals; i++)
		if (strcmp(t->proxy_principals[i], s) == 0) {
			cfg_node_error(d, n, "%s: duplicate name \"%s\"", path,
			    cfg_quote(s, q, sizeof(q)));
			return;
		}
	if ((t->proxy_principals[t->n_proxy_principals] = strdup(s)) == NULL) {
		cfg_node_error(d, n, "%s: out of memory", path);
		return;
	}
	t->n_proxy_principals++;
}

static int
parse_principals(struct cfg_doc *d, yaml_node_t *seq, void *base,
    const char *keypath)
{
	struct tunnel *t = &((struct tdoc *)base)->t;
	char path[160];
	int i, n;

	if ((n = seq_check(d, seq, keypath, 0, TUNNEL_MAX_PRINCIPALS)) <= 0)
		return n;
	t->proxy_principals = calloc((size_t)n, sizeof(char *));
	if (t->proxy_principals == NULL) {
		cfg_node_error(d, seq, "%s: out of memory", keypath);
		return -1;
	}
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s[%d]", keypath, i);
		principal_add(d, yaml_document_get_node(d->doc,
		    seq->data.sequence.items.start[i]), t, path);
	}
	return 0;
}

#define TOFF(f)		offsetof(struct tdoc, f)
#define TSTR(n, f, chk)	{ n, CFG_STR, TOFF(f), 1, 0, 0, NULL, NULL, chk }
#define TEND		{ NULL, CFG_STR, 0, 0, 0, 0, NULL, NULL, NULL }

static const struct cfg_key meta_keys[] = {
	TSTR("name", t.name, cfg_check_name),
	TEND
};
static const struct cfg_key spec_keys[] = {
	TSTR("cluster_name", t.cluster_name, cfg_check_name),
	{ "dial_addrs", CFG_CUSTOM, 0, 1, 0, 0, NULL, parse_dial_addrs, NULL },
	{ "forwards", CFG_CUSTOM, 0, 0, 0, 0, NULL, parse_forwards, NULL },
	{ "discovery", CFG_BOOL, TOFF(t.discovery), 0, 0, 0, NULL, NULL, NULL },
	{ "proxy_principals", CFG_CUSTOM, 0, 0, 0, 0, NULL, parse_principals,
	    NULL },
	TEND
};
static const struct cfg_key doc_keys[] = {
	TSTR("kind", kind, check_kind),
	TSTR("version", version, check_version),
	{ "metadata", CFG_MAP, 0, 1, 0, 0, meta_keys, NULL, NULL },
	{ "spec", CFG_MAP, 0, 1, 0, 0, spec_keys, NULL, NULL },
	TEND
};

struct parse_state {
	struct tunnel_list	*out;
};

/* One document: a good one is appended to the output, a bad one dropped. */
static int
tunnel_doc(struct cfg_doc *d, yaml_node_t *root, void *arg)
{
	struct parse_state *ps = arg;
	struct tdoc td;
	yaml_node_t *cn;

	/* "---" with nothing after it (generated multi-document files). */
	if (root->type == YAML_SCALAR_NODE && root->data.scalar.length == 0 &&
	    root->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
		return 0;
	memset(&td, 0, sizeof(td));
	td.t.discovery = 1;
	if (cfg_walk_map(d, root, doc_keys, "", &td) == 0) {
		if ((cn = cfg_find(d->doc, root, "spec.cluster_name")) == NULL)
			cn = root;
		td.t.file = d->file;
		td.t.line = (unsigned)cn->start_mark.line + 1;
		td.t.col = (unsigned)cn->start_mark.column + 1;
		td.t.spec_hash = spec_hash(&td.t);
		if (tunnel_list_push(ps->out, &td.t) != 0)
			cfg_node_error(d, root, "out of memory");
	}
	tunnel_clear(&td.t);
	free(td.kind);
	free(td.version);
	return 0;
}

size_t
tunnel_parse_buffer(const char *file, const char *buf, size_t len,
    struct tunnel_list *out, struct cfg_errors *errs)
{
	struct parse_state ps = { out };
	size_t before = cfg_errors_count(errs);

	if (len > TUNNEL_MAX_FILE) {
		cfg_errors_add(errs, "%s: file too large (%zu bytes, limit %d)",
		    file, len, TUNNEL_MAX_FILE);
		return 1;
	}
	/*
	 * A zero-length file is what a non-atomic writer leaves behind
	 * between truncate and write; treating it as "no tunnels" would tear
	 * every tunnel of the file down.  (A file of comments is fine.)
	 */
	if (len == 0) {
		cfg_errors_add(errs, "%s: empty file (delete it to remove its "
		    "tunnels)", file);
		return 1;
	}
	cfg_each_doc(file, buf, len, errs, tunnel_doc, &ps);
	return cfg_errors_count(errs) - before;
}

int
tunnel_file_name_ok(const char *name)
{
	size_t i, n = strlen(name);

	/* Dotfiles also cover editor temporaries such as .#x and .x.swp. */
	if (name[0] == '.' || n <= 5 || strcmp(name + n - 5, ".yaml") != 0)
		return 0;
	/* A control character would forge lines in every error we report. */
	for (i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return 0;
	return 1;
}
