/*
 * Tunnel files, the in-memory tunnel cache and its directory watcher.
 *
 * Sync must stay linear in the number of tunnels (benchmarks run 100,000):
 * files are merge-joined by name against the previous reload, unchanged
 * files are not parsed again, and duplicate cluster names are found with an
 * open-addressing hash table rather than by comparing pairs.
 */
#include <sys/inotify.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/addr.h"
#include "common/error.h"
#include "common/fnv.h"
#include "common/tptime.h"
#include "supervisor/cfgerr.h"
#include "supervisor/cfgread.h"
#include "supervisor/cfgwalk.h"
#include "supervisor/firstrun.h"
#include "supervisor/tunnels.h"

#define ADDR_BUF	(TP_HOST_MAX + 16)
#define QBUF		96

/*
 * A file whose mtime or ctime is this recent may still change within the
 * same timestamp tick, so its stat signature is not trusted ("racily
 * clean", as git calls it): the file is read and its content hash compared.
 */
#define RACY_SECONDS	2

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

/* ---- the cache ----------------------------------------------------- */

struct tfile {
	char			*name;
	char			*path;
	int			 parsed;	/* content_hash is valid */
	int			 sig_ok;	/* st_* are valid and trusted */
	dev_t			 dev;
	ino_t			 ino;
	off_t			 size;
	struct timespec		 mtim;
	struct timespec		 ctim;
	uint64_t		 content_hash;
	struct tunnel_list	 good;		/* last good contents */
	int			 seen;		/* keyed source: in this resync */
	struct cfg_errors	 errs;		/* of the current contents */
	/*
	 * Clusters this file contributed to the last desired set, sorted:
	 * on a duplicate the running definition stays, so a new file that
	 * redefines a running cluster cannot take it over.
	 */
	char			**owned;
	size_t			 nowned;
};

struct tunnel_cache {
	char			*dir;
	struct tfile		**files;	/* sorted by name */
	size_t			 nfiles;
	/*
	 * The keyed source (etcd): one entry per key, sorted by key, each
	 * with its last good tunnels like a file.  seen: mark-and-sweep.
	 */
	struct tfile		**ext;
	size_t			 next;
	size_t			 ext_cap;
	struct cfg_errors	 ext_errs;	/* its duplicates, last build */
	const struct tunnel	**set;
	size_t			 nset;
	uint32_t		*slots;		/* index into set + 1; 0 free */
	size_t			 nslots;	/* power of two */
	uint64_t		 set_hash;
	uint64_t		 generation;
	uint64_t		 reloads;
	uint64_t		 last_success_wall_ms;
	int			 last_ok;
	char			*first_error;
};

struct tunnel_cache *
tunnel_cache_new(void)
{
	return calloc(1, sizeof(struct tunnel_cache));
}

static void
tfile_free(struct tfile *f)
{
	if (f == NULL)
		return;
	tunnel_list_free(&f->good);
	cfg_errors_free(&f->errs);
	for (size_t i = 0; i < f->nowned; i++)
		free(f->owned[i]);
	free(f->owned);
	free(f->name);
	free(f->path);
	free(f);
}

static struct tfile *
tfile_new(const char *dir, const char *name)
{
	struct tfile *f;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	if ((f->name = strdup(name)) == NULL ||
	    asprintf(&f->path, "%s/%s", dir, name) < 0) {
		f->path = NULL;
		tfile_free(f);
		return NULL;
	}
	return f;
}

static void
drop_files(struct tunnel_cache *tc)
{
	size_t i;

	for (i = 0; i < tc->nfiles; i++)
		tfile_free(tc->files[i]);
	free(tc->files);
	tc->files = NULL;
	tc->nfiles = 0;
}

void
tunnel_cache_free(struct tunnel_cache *tc)
{
	if (tc == NULL)
		return;
	drop_files(tc);
	for (size_t i = 0; i < tc->next; i++)
		tfile_free(tc->ext[i]);
	free(tc->ext);
	cfg_errors_free(&tc->ext_errs);
	free(tc->set);
	free(tc->slots);
	free(tc->dir);
	free(tc->first_error);
	free(tc);
}

static int
sig_same(const struct tfile *f, const struct stat *st)
{
	return f->sig_ok && f->dev == st->st_dev && f->ino == st->st_ino &&
	    f->size == st->st_size &&
	    f->mtim.tv_sec == st->st_mtim.tv_sec &&
	    f->mtim.tv_nsec == st->st_mtim.tv_nsec &&
	    f->ctim.tv_sec == st->st_ctim.tv_sec &&
	    f->ctim.tv_nsec == st->st_ctim.tv_nsec;
}

static void
sig_save(struct tfile *f, const struct stat *st)
{
	time_t now = time(NULL);

	f->dev = st->st_dev;
	f->ino = st->st_ino;
	f->size = st->st_size;
	f->mtim = st->st_mtim;
	f->ctim = st->st_ctim;
	f->sig_ok = now - st->st_mtim.tv_sec >= RACY_SECONDS &&
	    now - st->st_ctim.tv_sec >= RACY_SECONDS;
}

/* Parses buf as f's new contents; a broken file keeps its old tunnels. */
static void
tfile_parse(struct tfile *f, const char *buf, size_t len)
{
	struct tunnel_list l = { NULL, 0, 0 };
	struct cfg_errors e;

	cfg_errors_init(&e);
	if (tunnel_parse_buffer(f->path, buf, len, &l, &e) != 0) {
		tunnel_list_free(&l);
		cfg_errors_free(&f->errs);
		f->errs = e;
		return;
	}
	tunnel_list_free(&f->good);
	f->good = l;
	cfg_errors_free(&f->errs);
}

/* Brings one file entry up to date with the file system. */
static void
tfile_refresh(struct tfile *f)
{
	struct cfg_errors e;
	struct stat st;
	uint64_t h;
	size_t len;
	char *buf;

	cfg_errors_init(&e);
	if (stat(f->path, &st) == -1) {
		cfg_errors_add(&e, "%s: cannot stat: %s", f->path,
		    strerror(errno));
		goto replace_errs;
	}
	if (f->parsed && sig_same(f, &st))
		return;
	if (cfg_read_file(f->path, TUNNEL_MAX_FILE, &buf, &len, &e) != 0)
		goto replace_errs;
	h = tp_fnv1a(TP_FNV1A_INIT, buf, len);
	if (!f->parsed || h != f->content_hash)
		tfile_parse(f, buf, len);
	free(buf);
	f->parsed = 1;
	f->content_hash = h;
	sig_save(f, &st);
	return;
replace_errs:
	/* Keep the good tunnels; force a full read next time. */
	f->sig_ok = 0;
	f->parsed = 0;
	cfg_errors_free(&f->errs);
	f->errs = e;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the tunnel file names of dir, sorted; returns 0 or a tp_err. */
static int
list_dir(const char *dir, char ***namesp, size_t *np, struct cfg_errors *e)
{
	size_t n = 0, cap = 0;
	char **names = NULL, **nv;
	struct dirent *de;
	DIR *dp;

	if ((dp = opendir(dir)) == NULL && errno == ENOENT) {
		char msg[FR_LINE_MAX];

		firstrun_tunnels_dir_missing(dir, msg, sizeof(msg));
		cfg_errors_add(e, "%s", msg);
		return TP_ESYS;
	}
	if (dp == NULL) {
		cfg_errors_add(e, "%s: cannot open directory: %s", dir,
		    strerror(errno));
		return TP_ESYS;
	}
	while ((de = readdir(dp)) != NULL) {
		if (de->d_type == DT_DIR || !tunnel_file_name_ok(de->d_name))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((nv = reallocarray(names, cap, sizeof(*nv))) == NULL)
				break;
			names = nv;
		}
		if ((names[n] = strdup(de->d_name)) == NULL)
			break;
		n++;
	}
	closedir(dp);
	if (de != NULL) {
		cfg_errors_add(e, "%s: out of memory", dir);
		while (n > 0)
			free(names[--n]);
		free(names);
		return TP_ENOMEM;
	}
	if (n > 1)	/* names is NULL for an empty directory */
		qsort(names, n, sizeof(*names), cmp_names);
	*namesp = names;
	*np = n;
	return 0;
}

static void
free_names(char **names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/*
 * Merge-joins the sorted names with the sorted file entries of the last
 * reload: entries are kept (and refreshed), created or freed.
 */
static int
merge_files(struct tunnel_cache *tc, const char *dir, char **names, size_t n)
{
	struct tfile **nf, *f;
	size_t i = 0, j, k = 0;
	int c;

	if ((nf = calloc(n ? n : 1, sizeof(*nf))) == NULL)
		return TP_ENOMEM;
	for (j = 0; j < n; j++) {
		while (i < tc->nfiles &&
		    (c = strcmp(tc->files[i]->name, names[j])) < 0)
			tfile_free(tc->files[i++]);
		if (i < tc->nfiles && strcmp(tc->files[i]->name, names[j]) == 0)
			f = tc->files[i++];
		else if ((f = tfile_new(dir, names[j])) == NULL)
			continue;	/* retried at the next reload */
		tfile_refresh(f);
		nf[k++] = f;
	}
	while (i < tc->nfiles)
		tfile_free(tc->files[i++]);
	free(tc->files);
	tc->files = nf;
	tc->nfiles = k;
	return k == n ? 0 : TP_ENOMEM;
}

static size_t
slot_of(const struct tunnel_cache *tc, const char *name)
{
	size_t mask = tc->nslots - 1, s;

	s = (size_t)tp_fnv1a_str(TP_FNV1A_INIT, name) & mask;
	while (tc->slots[s] != 0 &&
	    strcmp(tc->set[tc->slots[s] - 1]->cluster_name, name) != 0)
		s = (s + 1) & mask;
	return s;
}

static int
set_alloc(struct tunnel_cache *tc, size_t total)
{
	size_t ns = 16;

	while (ns < total * 2)
		ns *= 2;
	free(tc->set);
	free(tc->slots);
	tc->nset = 0;
	tc->set = calloc(total ? total : 1, sizeof(*tc->set));
	tc->slots = calloc(ns, sizeof(*tc->slots));
	tc->nslots = ns;
	if (tc->set == NULL || tc->slots == NULL || total >= UINT32_MAX) {
		free(tc->set);
		free(tc->slots);
		tc->set = NULL;
		tc->slots = NULL;
		tc->nslots = 0;
		return TP_ENOMEM;
	}
	return 0;
}

/* Adds t to the set unless its cluster is already there (an error). */
static void
set_add(struct tunnel_cache *tc, const struct tunnel *t, struct cfg_errors *e)
{
	const struct tunnel *first;
	size_t s = slot_of(tc, t->cluster_name);

	if (tc->slots[s] != 0) {
		first = tc->set[tc->slots[s] - 1];
		cfg_errors_add(e, "%s:%u:%u: spec.cluster_name: duplicate "
		    "cluster \"%s\" (first defined at %s:%u:%u)", t->file,
		    t->line, t->col, t->cluster_name, first->file, first->line,
		    first->col);
		return;
	}
	tc->set[tc->nset++] = t;
	tc->slots[s] = (uint32_t)tc->nset;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
owned_has(const struct tfile *f, const char *cluster)
{
	return f->nowned > 0 && bsearch(&cluster, f->owned, f->nowned,
	    sizeof(*f->owned), cmp_str) != NULL;
}

/* Records, per file or key, the clusters of the set it defines (sorted). */
static void
owned_rebuild(struct tunnel_cache *tc, struct tfile **v, size_t nv)
{
	for (size_t i = 0; i < nv; i++) {
		struct tfile *f = v[i];
		size_t n = 0;

		for (size_t k = 0; k < f->nowned; k++)
			free(f->owned[k]);
		free(f->owned);
		f->owned = calloc(f->good.n ? f->good.n : 1, sizeof(*f->owned));
		for (size_t j = 0; f->owned != NULL && j < f->good.n; j++) {
			const struct tunnel *t = &f->good.v[j];
			size_t s = slot_of(tc, t->cluster_name);

			if (tc->slots[s] != 0 && tc->set[tc->slots[s] - 1] == t &&
			    (f->owned[n] = strdup(t->cluster_name)) != NULL)
				n++;
		}
		f->nowned = n;
		if (n > 1)
			qsort(f->owned, n, sizeof(*f->owned), cmp_str);
	}
}

/* Adds the definitions of v[0..n) that are (not) running, per owned. */
static void
add_entries(struct tunnel_cache *tc, struct tfile **v, size_t n, int owned,
    struct cfg_errors *e)
{
	size_t i, j;

	for (i = 0; i < n; i++)
		for (j = 0; j < v[i]->good.n; j++)
			if (owned_has(v[i], v[i]->good.v[j].cluster_name) == owned)
				set_add(tc, &v[i]->good.v[j], e);
}

/*
 * Rebuilds the desired set from every file's and every key's good
 * tunnels: first the definitions that were already running (so a
 * duplicate never displaces a running tunnel, whichever source it comes
 * from), then the rest, files by name before keys by key.  File errors
 * and duplicates found in files go to e, duplicates found in keys to
 * ext_errs (the keyed source reports its own parse errors).
 */
static int
build_set(struct tunnel_cache *tc, struct cfg_errors *e)
{
	size_t i, j, total = 0;
	uint64_t h = TP_FNV1A_INIT;

	for (i = 0; i < tc->nfiles; i++)
		total += tc->files[i]->good.n;
	for (i = 0; i < tc->next; i++)
		total += tc->ext[i]->good.n;
	if (set_alloc(tc, total) != 0)
		return TP_ENOMEM;
	cfg_errors_clear(&tc->ext_errs);
	add_entries(tc, tc->files, tc->nfiles, 1, e);
	add_entries(tc, tc->ext, tc->next, 1, &tc->ext_errs);
	for (i = 0; i < tc->nfiles; i++)
		for (j = 0; j < tc->files[i]->errs.n; j++)
			cfg_errors_add(e, "%s", tc->files[i]->errs.msg[j]);
	add_entries(tc, tc->files, tc->nfiles, 0, e);
	add_entries(tc, tc->ext, tc->next, 0, &tc->ext_errs);
	owned_rebuild(tc, tc->files, tc->nfiles);
	owned_rebuild(tc, tc->ext, tc->next);
	for (i = 0; i < tc->nset; i++)
		h = tp_fnv1a(h, &tc->set[i]->spec_hash, sizeof(uint64_t));
	if (h != tc->set_hash || tc->reloads == 0)
		tc->generation++;
	tc->set_hash = h;
	return 0;
}

/* Records the outcome of a reload for status. */
static void
note_result(struct tunnel_cache *tc, const struct cfg_errors *e)
{
	const char *first = cfg_errors_first(e);

	tc->reloads++;
	tc->last_ok = cfg_errors_count(e) == 0;
	free(tc->first_error);
	tc->first_error = NULL;
	if (tc->last_ok)
		tc->last_success_wall_ms = tp_wall_ms();
	else
		tc->first_error = strdup(first ? first : "out of memory");
}

/* A new directory: nothing of the old one applies. */
static int
switch_dir(struct tunnel_cache *tc, const char *dir)
{
	char *copy;

	if (tc->dir != NULL && strcmp(tc->dir, dir) == 0)
		return 0;
	if ((copy = strdup(dir)) == NULL)
		return TP_ENOMEM;
	drop_files(tc);
	free(tc->dir);
	tc->dir = copy;
	return 0;
}

int
tunnel_cache_reload(struct tunnel_cache *tc, const char *dir,
    struct cfg_errors *errs)
{
	struct cfg_errors e;
	char **names = NULL;
	size_t n = 0;
	int rc;

	cfg_errors_init(&e);
	/* "": no tunnel files (another source only). */
	if (dir[0] != '\0' && (rc = list_dir(dir, &names, &n, &e)) != 0)
		goto out;
	if ((rc = switch_dir(tc, dir)) != 0 ||
	    (rc = merge_files(tc, dir, names, n)) != 0 ||
	    (rc = build_set(tc, &e)) != 0)
		cfg_errors_add(&e, "%s: out of memory", dir);
	else if (cfg_errors_count(&e) != 0)
		rc = TP_ESYNTAX;
	free_names(names, n);
out:
	note_result(tc, &e);
	if (errs != NULL)
		cfg_errors_move(errs, &e);
	cfg_errors_free(&e);
	return rc;
}

/* ---- the keyed source ---------------------------------------------- */

/* Index of key in ext, or where it would go (*found says which). */
static size_t
ext_find(const struct tunnel_cache *tc, const char *key, int *found)
{
	size_t lo = 0, hi = tc->next, mid;
	int c;

	*found = 0;
	/* Keys usually arrive in order (a range): try the end first. */
	if (hi > 0 && strcmp(tc->ext[hi - 1]->name, key) < 0)
		return hi;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((c = strcmp(tc->ext[mid]->name, key)) == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct tfile *
ext_insert(struct tunnel_cache *tc, size_t at, const char *key,
    const char *label)
{
	struct tfile *f, **nv;
	size_t ncap;

	if (tc->next == tc->ext_cap) {
		ncap = tc->ext_cap ? tc->ext_cap * 2 : 64;
		if ((nv = reallocarray(tc->ext, ncap, sizeof(*nv))) == NULL)
			return NULL;
		tc->ext = nv;
		tc->ext_cap = ncap;
	}
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	if ((f->name = strdup(key)) == NULL ||
	    (f->path = strdup(label)) == NULL) {
		tfile_free(f);
		return NULL;
	}
	memmove(&tc->ext[at + 1], &tc->ext[at],
	    (tc->next - at) * sizeof(*tc->ext));
	tc->ext[at] = f;
	tc->next++;
	return f;
}

int
tunnel_cache_ext_put(struct tunnel_cache *tc, const char *key,
    const char *label, const char *buf, size_t len, struct cfg_errors *errs)
{
	uint64_t h = tp_fnv1a(TP_FNV1A_INIT, buf, len);
	struct tfile *f;
	size_t at;
	int found;

	at = ext_find(tc, key, &found);
	if (found)
		f = tc->ext[at];
	else if ((f = ext_insert(tc, at, key, label)) == NULL) {
		cfg_errors_add(errs, "%s: out of memory", label);
		return TP_ENOMEM;
	}
	f->seen = 1;
	if (!f->parsed || h != f->content_hash) {
		tfile_parse(f, buf, len);
		f->parsed = 1;
		f->content_hash = h;
	}
	for (size_t i = 0; i < f->errs.n; i++)
		cfg_errors_add(errs, "%s", f->errs.msg[i]);
	return f->errs.n != 0 ? TP_ESYNTAX : 0;
}

int
tunnel_cache_ext_delete(struct tunnel_cache *tc, const char *key)
{
	size_t at;
	int found;

	at = ext_find(tc, key, &found);
	if (!found)
		return TP_ENOENT;
	tfile_free(tc->ext[at]);
	memmove(&tc->ext[at], &tc->ext[at + 1],
	    (tc->next - at - 1) * sizeof(*tc->ext));
	tc->next--;
	return 0;
}

void
tunnel_cache_ext_mark(struct tunnel_cache *tc)
{
	for (size_t i = 0; i < tc->next; i++)
		tc->ext[i]->seen = 0;
}

size_t
tunnel_cache_ext_sweep(struct tunnel_cache *tc)
{
	size_t i, k = 0, gone = 0;

	for (i = 0; i < tc->next; i++) {
		if (tc->ext[i]->seen)
			tc->ext[k++] = tc->ext[i];
		else {
			tfile_free(tc->ext[i]);
			gone++;
		}
	}
	tc->next = k;
	return gone;
}

size_t
tunnel_cache_ext_count(const struct tunnel_cache *tc, size_t *nbad)
{
	size_t i, bad = 0;

	/* Rejected: a value with errors, or a cluster defined before. */
	for (i = 0; i < tc->next; i++)
		bad += tc->ext[i]->errs.n != 0 ||
		    tc->ext[i]->nowned < tc->ext[i]->good.n;
	if (nbad != NULL)
		*nbad = bad;
	return tc->next;
}

int
tunnel_cache_commit(struct tunnel_cache *tc, struct cfg_errors *errs)
{
	struct cfg_errors e;
	int rc;

	/* File errors stay with the files' last reload: discarded here. */
	cfg_errors_init(&e);
	rc = build_set(tc, &e);
	cfg_errors_free(&e);
	if (errs == NULL)
		return rc;
	if (rc != 0) {
		cfg_errors_add(errs, "tunnel cache: out of memory");
		return rc;
	}
	for (size_t i = 0; i < tc->ext_errs.n; i++)
		cfg_errors_add(errs, "%s", tc->ext_errs.msg[i]);
	return 0;
}

const struct tunnel *const *
tunnel_cache_tunnels(const struct tunnel_cache *tc, size_t *n)
{
	*n = tc->nset;
	return tc->set;
}

const struct tunnel *
tunnel_cache_find(const struct tunnel_cache *tc, const char *cluster_name)
{
	size_t s;

	if (tc->nslots == 0)
		return NULL;
	s = slot_of(tc, cluster_name);
	return tc->slots[s] ? tc->set[tc->slots[s] - 1] : NULL;
}

void
tunnel_cache_get_status(const struct tunnel_cache *tc,
    struct tunnel_cache_status *st)
{
	memset(st, 0, sizeof(*st));
	st->last_reload_ok = tc->last_ok;
	st->last_success_wall_ms = tc->last_success_wall_ms;
	st->first_error = tc->first_error;
	st->generation = tc->generation;
	st->n_files = tc->nfiles;
	st->n_tunnels = tc->nset;
	st->reloads = tc->reloads;
}

/* ---- the watcher --------------------------------------------------- */

#define WATCH_MASK	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | \
			 IN_DELETE | IN_CREATE | IN_DELETE_SELF | \
			 IN_MOVE_SELF | IN_ONLYDIR)

struct tunnel_watch {
	char			*dir;
	int			 fd;
	int			 wd;		/* -1: not watching */
	struct event		*ev_read;
	struct event		*ev_timer;
	unsigned		 debounce_ms;
	int			 pending;
	uint64_t		 burst_start_ms;
	tunnel_watch_cb		*cb;
	void			*arg;
};

/*
 * Trailing-edge debounce: every event pushes the callback back, so an
 * editor's write-temp-then-rename burst yields one reload.  A writer that
 * never pauses still gets a reload every 4 debounce periods.
 */
static void
watch_kick(struct tunnel_watch *w)
{
	uint64_t now = tp_now_ms();
	struct timeval tv;

	if (!w->pending) {
		w->pending = 1;
		w->burst_start_ms = now;
	} else if (now - w->burst_start_ms >= 4ULL * w->debounce_ms)
		return;
	tv.tv_sec = w->debounce_ms / 1000;
	tv.tv_usec = (w->debounce_ms % 1000) * 1000;
	evtimer_add(w->ev_timer, &tv);
}

static void
watch_timer(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel_watch *w = arg;

	w->pending = 0;
	w->cb(w->arg);
}

/* Returns 1 if ev concerns the tunnel source; drops a vanished watch. */
static int
watch_event(struct tunnel_watch *w, const struct inotify_event *ev)
{
	if (ev->mask & IN_Q_OVERFLOW)
		return 1;
	if (ev->wd != w->wd)
		return 0;
	if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
		if (!(ev->mask & IN_IGNORED))
			inotify_rm_watch(w->fd, w->wd);
		w->wd = -1;
		return 1;
	}
	return ev->len > 0 && tunnel_file_name_ok(ev->name);
}

static void
watch_read(evutil_socket_t fd, short what, void *arg)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct tunnel_watch *w = arg;
	const struct inotify_event *ev;
	int relevant = 0;
	ssize_t n;
	char *p;

	while ((n = read(w->fd, buf, sizeof(buf))) > 0) {
		for (p = buf; p < buf + n;
		    p += sizeof(struct inotify_event) + ev->len) {
			ev = (const struct inotify_event *)(void *)p;
			relevant |= watch_event(w, ev);
		}
	}
	if (relevant)
		watch_kick(w);
}

int
tunnel_watch_retry(struct tunnel_watch *w)
{
	if (w->wd >= 0)
		return 0;
	w->wd = inotify_add_watch(w->fd, w->dir, WATCH_MASK);
	if (w->wd >= 0)
		return 0;
	return (errno == ENOENT || errno == ENOTDIR) ? TP_ENOENT : TP_ESYS;
}

int
tunnel_watch_active(const struct tunnel_watch *w)
{
	return w->wd >= 0;
}

struct tunnel_watch *
tunnel_watch_new(struct event_base *base, const char *dir,
    unsigned debounce_ms, tunnel_watch_cb *cb, void *arg)
{
	struct tunnel_watch *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->fd = -1;
	w->wd = -1;
	w->debounce_ms = debounce_ms;
	w->cb = cb;
	w->arg = arg;
	if ((w->dir = strdup(dir)) == NULL ||
	    (w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1 ||
	    (w->ev_read = event_new(base, w->fd, EV_READ | EV_PERSIST,
	    watch_read, w)) == NULL ||
	    (w->ev_timer = evtimer_new(base, watch_timer, w)) == NULL ||
	    event_add(w->ev_read, NULL) == -1) {
		tunnel_watch_free(w);
		return NULL;
	}
	tunnel_watch_retry(w);
	return w;
}

void
tunnel_watch_free(struct tunnel_watch *w)
{
	if (w == NULL)
		return;
	if (w->ev_read != NULL)
		event_free(w->ev_read);
	if (w->ev_timer != NULL)
		event_free(w->ev_timer);
	if (w->fd != -1)
		close(w->fd);
	free(w->dir);
	free(w);
}
