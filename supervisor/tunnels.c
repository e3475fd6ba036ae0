/*
 * The tunnel cache (tunnels.h): the desired set, built from the last good
 * contents of every tunnel file and every key of the keyed source.
 *
 * Sync must stay linear in the number of tunnels (benchmarks run 100,000):
 * files are merge-joined by name against the previous reload, unchanged
 * files are not parsed again, and duplicate cluster names are found with an
 * open-addressing hash table rather than by comparing pairs.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "common/fnv.h"
#include "common/tptime.h"
#include "supervisor/cfgerr.h"
#include "supervisor/cfgread.h"
#include "supervisor/firstrun.h"
#include "supervisor/tunnels.h"

/*
 * A file whose mtime or ctime is this recent may still change within the
 * same timestamp tick, so its stat signature is not trusted ("racily
 * clean", as git calls it): the file is read and its content hash compared.
 */
#define RACY_SECONDS	2

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
