/*
 * Main configuration file: error list, file reading, the schema walker
 * shared with the tunnel parser, the schema of tunnelpool.yaml, printing
 * the effective configuration, and check-config.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "common/addr.h"
#include "common/error.h"
#include "common/log.h"
#include "common/tptime.h"
#include "supervisor/config.h"
#include "supervisor/knownhosts.h"
#include "supervisor/tunnels.h"

#define KEYPATH_MAX	128
#define QUOTE_MAX	80
#define KEYS_MAX	64	/* entries of one cfg_key table */

/* ---- error list ---------------------------------------------------- */

void
cfg_errors_init(struct cfg_errors *e)
{
	memset(e, 0, sizeof(*e));
}

void
cfg_errors_clear(struct cfg_errors *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		free(e->msg[i]);
	e->n = 0;
	e->dropped = 0;
}

void
cfg_errors_free(struct cfg_errors *e)
{
	cfg_errors_clear(e);
	free(e->msg);
	memset(e, 0, sizeof(*e));
}

/* Takes ownership of line (may be NULL: counted as dropped). */
static void
cfg_errors_push(struct cfg_errors *e, char *line)
{
	char **nv;
	size_t ncap;

	if (line == NULL || e->n >= CFG_ERRORS_MAX) {
		free(line);
		e->dropped++;
		return;
	}
	if (e->n == e->cap) {
		ncap = e->cap ? e->cap * 2 : 8;
		nv = reallocarray(e->msg, ncap, sizeof(*nv));
		if (nv == NULL) {
			free(line);
			e->dropped++;
			return;
		}
		e->msg = nv;
		e->cap = ncap;
	}
	e->msg[e->n++] = line;
}

void
cfg_errors_addv(struct cfg_errors *e, const char *fmt, va_list ap)
{
	char *line;

	if (vasprintf(&line, fmt, ap) < 0)
		line = NULL;
	cfg_errors_push(e, line);
}

void
cfg_errors_add(struct cfg_errors *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_errors_addv(e, fmt, ap);
	va_end(ap);
}

void
cfg_errors_move(struct cfg_errors *dst, struct cfg_errors *src)
{
	size_t i;

	for (i = 0; i < src->n; i++)
		cfg_errors_push(dst, src->msg[i]);
	dst->dropped += src->dropped;
	src->n = 0;
	src->dropped = 0;
}

size_t
cfg_errors_count(const struct cfg_errors *e)
{
	return e->n + e->dropped;
}

const char *
cfg_errors_first(const struct cfg_errors *e)
{
	return e->n > 0 ? e->msg[0] : NULL;
}

void
cfg_errors_print(const struct cfg_errors *e, FILE *f)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		fprintf(f, "%s\n", e->msg[i]);
	if (e->dropped > 0)
		fprintf(f, "(%zu more errors not shown)\n", e->dropped);
}

/* ---- files --------------------------------------------------------- */

/*
 * O_NONBLOCK so that a FIFO planted in place of a file cannot hang the
 * supervisor; fstat on the open fd so the checks apply to what we read.
 */
static int
open_regular(const char *path, size_t max, int *fdp, size_t *sizep,
    struct cfg_errors *errs)
{
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		cfg_errors_add(errs, "%s: cannot open: %s", path,
		    strerror(errno));
		return TP_ESYS;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		cfg_errors_add(errs, "%s: not a regular file", path);
		close(fd);
		return TP_EINVAL;
	}
	if ((uintmax_t)st.st_size > max) {
		cfg_errors_add(errs, "%s: file too large (%jd bytes, limit %zu)",
		    path, (intmax_t)st.st_size, max);
		close(fd);
		return TP_ETOOBIG;
	}
	*fdp = fd;
	*sizep = (size_t)st.st_size;
	return 0;
}

/* Makes room for at least one more byte; 0 or TP_ENOMEM. */
static int
buf_room(char **buf, size_t *cap, size_t len)
{
	char *nb;

	if (len + 1 < *cap)
		return 0;
	if ((nb = realloc(*buf, *cap * 2)) == NULL)
		return TP_ENOMEM;
	*buf = nb;
	*cap *= 2;
	return 0;
}

/*
 * Reads until EOF into a buffer sized from fstat; the file may have grown
 * since, so the limit is checked against what was actually read.
 */
static int
read_all(int fd, const char *path, size_t size, size_t max, char **bufp,
    size_t *lenp, struct cfg_errors *errs)
{
	size_t len = 0, cap = size + 2;
	char *buf = malloc(cap);
	ssize_t r;

	while (buf != NULL && buf_room(&buf, &cap, len) == 0 &&
	    (r = read(fd, buf + len, cap - 1 - len)) != 0) {
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			cfg_errors_add(errs, "%s: read: %s", path,
			    strerror(errno));
			free(buf);
			return TP_ESYS;
		}
		if ((len += (size_t)r) > max) {
			cfg_errors_add(errs, "%s: file too large (limit %zu)",
			    path, max);
			free(buf);
			return TP_ETOOBIG;
		}
	}
	if (buf == NULL || len + 1 >= cap) {	/* malloc or buf_room failed */
		cfg_errors_add(errs, "%s: out of memory", path);
		free(buf);
		return TP_ENOMEM;
	}
	buf[len] = '\0';
	*bufp = buf;
	*lenp = len;
	return 0;
}

/*
 * A file some process holds open for writing is being written: what it
 * holds now may be a valid prefix of what is coming (a tunnel file cut
 * after its first document parses fine and would drop every later
 * tunnel).  The kernel answers "is it open for writing?" exactly: a read
 * lease (F_SETLEASE F_RDLCK) is refused with EAGAIN while any writer has
 * it open, and is broken when a writer opens it while we read.  Leases
 * need the file's owner or CAP_LEASE and a file system that has them;
 * where they are refused for that reason the file is read without one
 * (said once in the log).  A lease break signals SIGIO to us: whoever
 * calls this ignores SIGIO (the supervisor and the CLI do at start).
 */
static int
lease_take(int fd, const char *path, struct cfg_errors *errs, int *leased)
{
	static int said;

	*leased = 0;
	if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
		*leased = 1;
		return 0;
	}
	if (errno == EAGAIN) {
		cfg_errors_add(errs, "%s: open for writing by another process "
		    "(being written?): not read; its last good contents stay "
		    "in effect until the writer closes it", path);
		return TP_EAGAIN;
	}
	if (!said) {
		said = 1;
		log_info("file leases unavailable (%s: %s): a file read "
		    "while being written is caught only by its parse",
		    path, strerror(errno));
	}
	return 0;
}

int
cfg_read_file(const char *path, size_t max, char **bufp, size_t *lenp,
    struct cfg_errors *errs)
{
	size_t size;
	int fd, rc, leased;

	*bufp = NULL;
	*lenp = 0;
	if ((rc = open_regular(path, max, &fd, &size, errs)) != 0)
		return rc;
	if ((rc = lease_take(fd, path, errs, &leased)) != 0) {
		close(fd);
		return rc;
	}
	rc = read_all(fd, path, size, max, bufp, lenp, errs);
	if (leased && rc == 0 && fcntl(fd, F_GETLEASE) != F_RDLCK) {
		/* A writer opened it while we read: its bytes may be torn. */
		cfg_errors_add(errs, "%s: opened for writing while being read: "
		    "not used; its last good contents stay in effect", path);
		free(*bufp);
		*bufp = NULL;
		*lenp = 0;
		rc = TP_EAGAIN;
	}
	if (leased)
		(void)fcntl(fd, F_SETLEASE, F_UNLCK);
	close(fd);
	return rc;
}

/* ---- YAML helpers -------------------------------------------------- */

const char *
cfg_quote(const char *s, char *buf, size_t cap)
{
	size_t o = 0;

	for (; *s != '\0' && o + 8 < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (o >= QUOTE_MAX) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
			o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	buf[o] = '\0';
	return buf;
}

void
cfg_node_error(struct cfg_doc *d, const yaml_node_t *node, const char *fmt,
    ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cfg_errors_add(d->errs, "%s:%zu:%zu: %s", d->file,
	    node->start_mark.line + 1, node->start_mark.column + 1, msg);
	d->nerr++;
}

static int
is_null(const yaml_node_t *n)
{
	const char *v = (const char *)n->data.scalar.value;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	return strcmp(v, "") == 0 || strcmp(v, "~") == 0 ||
	    strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
	    strcmp(v, "NULL") == 0;
}

static const char *
type_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return is_null(n) ? "null" : "a scalar";
	case YAML_SEQUENCE_NODE:
		return "a sequence";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

/*
 * libyaml gives every untagged node its kind's default tag; anything else
 * was written by hand ("!!int", "!foo") and we would silently ignore its
 * meaning, so refuse it.
 */
static int
check_tag(struct cfg_doc *d, yaml_node_t *n, const char *keypath)
{
	const char *want, *tag = (const char *)n->tag;
	char q[QUOTE_MAX + 16];

	switch (n->type) {
	case YAML_SCALAR_NODE:	 want = YAML_DEFAULT_SCALAR_TAG; break;
	case YAML_SEQUENCE_NODE: want = YAML_DEFAULT_SEQUENCE_TAG; break;
	default:		 want = YAML_DEFAULT_MAPPING_TAG; break;
	}
	if (tag == NULL || strcmp(tag, want) == 0)
		return 0;
	cfg_node_error(d, n, "%s: unsupported tag \"%s\"", keypath,
	    cfg_quote(tag, q, sizeof(q)));
	return -1;
}

/* A scalar's value as a C string; NULL (reported) if it holds a NUL. */
static const char *
scalar_cstr(struct cfg_doc *d, yaml_node_t *n, const char *keypath)
{
	const char *v = (const char *)n->data.scalar.value;

	if (strlen(v) != n->data.scalar.length) {
		cfg_node_error(d, n, "%s: contains a NUL byte", keypath);
		return NULL;
	}
	return v;
}

const char *
cfg_node_str(struct cfg_doc *d, yaml_node_t *n, const char *keypath)
{
	if (check_tag(d, n, keypath) != 0)
		return NULL;
	if (n->type != YAML_SCALAR_NODE || is_null(n)) {
		cfg_node_error(d, n, "%s: expected a string, got %s", keypath,
		    type_name(n));
		return NULL;
	}
	return scalar_cstr(d, n, keypath);
}

/* Like cfg_node_str, but numbers and booleans must be plain scalars. */
static const char *
node_plain(struct cfg_doc *d, yaml_node_t *n, const char *keypath,
    const char *what)
{
	char q[QUOTE_MAX + 16];

	if (check_tag(d, n, keypath) != 0)
		return NULL;
	if (n->type != YAML_SCALAR_NODE || is_null(n)) {
		cfg_node_error(d, n, "%s: expected %s, got %s", keypath, what,
		    type_name(n));
		return NULL;
	}
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
		cfg_node_error(d, n, "%s: expected %s, got the string \"%s\"",
		    keypath, what, cfg_quote((const char *)n->data.scalar.value,
		    q, sizeof(q)));
		return NULL;
	}
	return scalar_cstr(d, n, keypath);
}

const char *
cfg_check_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CFG_NAME_MAX)
		return "must be 1 to 127 characters";
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("._-", *s) == NULL)
			return "may only contain letters, digits, '.', '_' and '-'";
	return NULL;
}

/* Prints a duration the way tp_parse_duration reads it back. */
static const char *
fmt_dur(uint64_t ms, char *buf, size_t cap)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, cap, "%juh", (uintmax_t)(ms / 3600000));
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, cap, "%jum", (uintmax_t)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(buf, cap, "%jus", (uintmax_t)(ms / 1000));
	else
		snprintf(buf, cap, "%jums", (uintmax_t)ms);
	return buf;
}

/* ---- the schema walker --------------------------------------------- */

static void
set_str(struct cfg_doc *d, const struct cfg_key *k, yaml_node_t *v,
    void *base, const char *path)
{
	char **dst = (char **)((char *)base + k->off);
	const char *s, *why;
	char q[QUOTE_MAX + 16], *copy;

	if ((s = cfg_node_str(d, v, path)) == NULL)
		return;
	if (k->check != NULL && (why = k->check(s)) != NULL) {
		cfg_node_error(d, v, "%s: invalid value \"%s\": %s", path,
		    cfg_quote(s, q, sizeof(q)), why);
		return;
	}
	if ((copy = strdup(s)) == NULL) {
		cfg_node_error(d, v, "%s: out of memory", path);
		return;
	}
	free(*dst);
	*dst = copy;
}

static void
set_dur(struct cfg_doc *d, const struct cfg_key *k, yaml_node_t *v,
    void *base, const char *path)
{
	char q[QUOTE_MAX + 16], a[32], b[32], c[32];
	const char *s;
	uint64_t ms;

	if ((s = cfg_node_str(d, v, path)) == NULL)
		return;
	if (tp_parse_duration(s, &ms) != 0) {
		cfg_node_error(d, v, "%s: invalid duration \"%s\"", path,
		    cfg_quote(s, q, sizeof(q)));
		return;
	}
	if ((double)ms < k->min || (double)ms > k->max) {
		cfg_node_error(d, v, "%s: %s is out of range (%s..%s)", path,
		    fmt_dur(ms, a, sizeof(a)),
		    fmt_dur((uint64_t)k->min, b, sizeof(b)),
		    fmt_dur((uint64_t)k->max, c, sizeof(c)));
		return;
	}
	*(uint64_t *)((char *)base + k->off) = ms;
}

static void
set_uint(struct cfg_doc *d, const struct cfg_key *k, yaml_node_t *v,
    void *base, const char *path)
{
	char q[QUOTE_MAX + 16];
	unsigned long long u;
	const char *s;
	char *end;

	if ((s = node_plain(d, v, path, "an integer")) == NULL)
		return;
	if (s[0] == '-' && isdigit((unsigned char)s[1]) &&
	    s[strspn(s + 1, "0123456789") + 1] == '\0') {
		cfg_node_error(d, v, "%s: %s is out of range (%.0f..%.0f)",
		    path, cfg_quote(s, q, sizeof(q)), k->min, k->max);
		return;
	}
	errno = 0;
	u = strtoull(s, &end, 10);
	if (!isdigit((unsigned char)s[0]) || *end != '\0') {
		cfg_node_error(d, v, "%s: expected an integer, got \"%s\"",
		    path, cfg_quote(s, q, sizeof(q)));
		return;
	}
	if (errno == ERANGE || (double)u < k->min || (double)u > k->max) {
		cfg_node_error(d, v, "%s: %s is out of range (%.0f..%.0f)",
		    path, cfg_quote(s, q, sizeof(q)), k->min, k->max);
		return;
	}
	*(unsigned *)((char *)base + k->off) = (unsigned)u;
}

static void
set_double(struct cfg_doc *d, const struct cfg_key *k, yaml_node_t *v,
    void *base, const char *path)
{
	char q[QUOTE_MAX + 16];
	const char *s;
	char *end;
	double x;

	if ((s = node_plain(d, v, path, "a number")) == NULL)
		return;
	/* Decimal only: strtod would also take "0x1p3", "inf" and "nan". */
	errno = 0;
	x = strtod(s, &end);
	if (s[strspn(s, "0123456789.eE+-")] != '\0' || *end != '\0' ||
	    end == s || !isfinite(x)) {
		cfg_node_error(d, v, "%s: expected a number, got \"%s\"", path,
		    cfg_quote(s, q, sizeof(q)));
		return;
	}
	if (x < k->min || x > k->max) {
		cfg_node_error(d, v, "%s: %s is out of range (%g..%g)", path,
		    cfg_quote(s, q, sizeof(q)), k->min, k->max);
		return;
	}
	*(double *)((char *)base + k->off) = x;
}

static void
set_bool(struct cfg_doc *d, const struct cfg_key *k, yaml_node_t *v,
    void *base, const char *path)
{
	char q[QUOTE_MAX + 16];
	const char *s;
	int b;

	if ((s = node_plain(d, v, path, "true or false")) == NULL)
		return;
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 ||
	    strcmp(s, "TRUE") == 0)
		b = 1;
	else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 ||
	    strcmp(s, "FALSE") == 0)
		b = 0;
	else {
		cfg_node_error(d, v, "%s: expected true or false, got \"%s\"",
		    path, cfg_quote(s, q, sizeof(q)));
		return;
	}
	*(int *)((char *)base + k->off) = b;
}

static void
set_value(struct cfg_doc *d, const struct cfg_key *k, yaml_node_t *v,
    void *base, const char *path)
{
	switch (k->type) {
	case CFG_STR:
		set_str(d, k, v, base, path);
		break;
	case CFG_DUR:
		set_dur(d, k, v, base, path);
		break;
	case CFG_UINT:
		set_uint(d, k, v, base, path);
		break;
	case CFG_DOUBLE:
		set_double(d, k, v, base, path);
		break;
	case CFG_BOOL:
		set_bool(d, k, v, base, path);
		break;
	case CFG_MAP:
		cfg_walk_map(d, v, k->sub, path, base);
		break;
	case CFG_CUSTOM:
		if (check_tag(d, v, path) == 0)
			k->custom(d, v, base, path);
		break;
	}
}

static void
key_path(char *buf, size_t cap, const char *prefix, const char *name)
{
	if (prefix[0] == '\0')
		snprintf(buf, cap, "%s", name);
	else
		snprintf(buf, cap, "%s.%s", prefix, name);
}

/* Returns the index of name in keys (at most KEYS_MAX of them), or -1. */
static int
find_key(const struct cfg_key *keys, const char *name)
{
	int i;

	for (i = 0; i < KEYS_MAX && keys[i].name != NULL; i++)
		if (strcmp(keys[i].name, name) == 0)
			return i;
	return -1;
}

/* Reports required keys of keys that the mapping did not have. */
static void
check_required(struct cfg_doc *d, yaml_node_t *map, const struct cfg_key *keys,
    const char *prefix, const unsigned char *seen)
{
	char path[KEYPATH_MAX];
	int i;

	for (i = 0; i < KEYS_MAX && keys[i].name != NULL; i++) {
		if (!keys[i].required || seen[i])
			continue;
		key_path(path, sizeof(path), prefix, keys[i].name);
		cfg_node_error(d, map, "missing required key \"%s\"", path);
	}
}

/* One key: value pair of a mapping walked against keys. */
static void
walk_pair(struct cfg_doc *d, yaml_node_pair_t *p, const struct cfg_key *keys,
    const char *prefix, void *base, unsigned char *seen)
{
	char path[KEYPATH_MAX], q[QUOTE_MAX + 16];
	yaml_node_t *kn, *vn;
	const char *name;
	int i;

	kn = yaml_document_get_node(d->doc, p->key);
	vn = yaml_document_get_node(d->doc, p->value);
	if (kn == NULL || vn == NULL)
		return;
	if (kn->type != YAML_SCALAR_NODE) {
		cfg_node_error(d, kn, "%s: keys must be strings",
		    prefix[0] ? prefix : "document");
		return;
	}
	if ((name = scalar_cstr(d, kn, "key")) == NULL)
		return;
	key_path(path, sizeof(path), prefix, name);
	if ((i = find_key(keys, name)) < 0)
		cfg_node_error(d, kn, "unknown key \"%s\"",
		    cfg_quote(path, q, sizeof(q)));
	else if (seen[i]++)
		cfg_node_error(d, kn, "duplicate key \"%s\"", path);
	else
		set_value(d, &keys[i], vn, base, path);
}

size_t
cfg_walk_map(struct cfg_doc *d, yaml_node_t *map, const struct cfg_key *keys,
    const char *prefix, void *base)
{
	const char *what = prefix[0] ? prefix : "document";
	unsigned char seen[KEYS_MAX] = { 0 };
	size_t before = d->nerr;
	yaml_node_pair_t *p;

	if (check_tag(d, map, what) != 0)
		return d->nerr - before;
	if (map->type != YAML_MAPPING_NODE) {
		cfg_node_error(d, map, "%s: expected a mapping, got %s", what,
		    type_name(map));
		return d->nerr - before;
	}
	for (p = map->data.mapping.pairs.start;
	    p < map->data.mapping.pairs.top; p++)
		walk_pair(d, p, keys, prefix, base, seen);
	check_required(d, map, keys, prefix, seen);
	return d->nerr - before;
}

yaml_node_t *
cfg_find(yaml_document_t *doc, yaml_node_t *map, const char *path)
{
	const char *dot, *seg = path;
	yaml_node_pair_t *p;
	yaml_node_t *kn, *found;
	size_t len;

	while (map != NULL && map->type == YAML_MAPPING_NODE) {
		dot = strchr(seg, '.');
		len = dot ? (size_t)(dot - seg) : strlen(seg);
		found = NULL;
		for (p = map->data.mapping.pairs.start;
		    p < map->data.mapping.pairs.top && found == NULL; p++) {
			kn = yaml_document_get_node(doc, p->key);
			if (kn != NULL && kn->type == YAML_SCALAR_NODE &&
			    kn->data.scalar.length == len &&
			    memcmp(kn->data.scalar.value, seg, len) == 0)
				found = yaml_document_get_node(doc, p->value);
		}
		if (dot == NULL || found == NULL)
			return found;
		map = found;
		seg = dot + 1;
	}
	return NULL;
}

/*
 * libyaml does not set problem_mark for reader errors (bad UTF-8, control
 * characters); derive the position from the byte offset instead.
 */
static void
syntax_error(const char *file, const char *buf, size_t len, yaml_parser_t *p,
    struct cfg_errors *errs)
{
	size_t line = p->problem_mark.line + 1, col = p->problem_mark.column + 1;
	size_t i, off = p->problem_offset;
	const char *problem = p->problem ? p->problem : "out of memory";

	if (p->error == YAML_READER_ERROR) {
		line = 1;
		col = 1;
		for (i = 0; i < off && i < len; i++, col++)
			if (buf[i] == '\n') {
				line++;
				col = 0;
			}
	}
	if (p->context != NULL)
		cfg_errors_add(errs, "%s:%zu:%zu: syntax error: %s (%s at "
		    "line %zu column %zu)", file, line, col, problem,
		    p->context, p->context_mark.line + 1,
		    p->context_mark.column + 1);
	else
		cfg_errors_add(errs, "%s:%zu:%zu: syntax error: %s", file,
		    line, col, problem);
}

int
cfg_each_doc(const char *file, const char *buf, size_t len,
    struct cfg_errors *errs, cfg_doc_fn *fn, void *arg)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	struct cfg_doc d;
	int n = 0, stop = 0;

	if (!yaml_parser_initialize(&parser)) {
		cfg_errors_add(errs, "%s: out of memory", file);
		return -1;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	while (!stop) {
		if (!yaml_parser_load(&parser, &doc)) {
			syntax_error(file, buf, len, &parser, errs);
			n = -1;
			break;
		}
		if ((root = yaml_document_get_root_node(&doc)) == NULL) {
			yaml_document_delete(&doc);
			break;
		}
		n++;
		d = (struct cfg_doc){ file, &doc, errs, 0 };
		stop = fn(&d, root, arg);
		yaml_document_delete(&doc);
	}
	yaml_parser_delete(&parser);
	return n;
}

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

/*
 * Relative paths are taken relative to the configuration file's directory,
 * not to the daemon's working directory (which is "/" under systemd).
 */
int
cfg_resolve_path(char **p, const char *file)
{
	const char *slash = strrchr(file, '/');
	char *res;

	if ((*p)[0] == '/' || (*p)[0] == '\0' || slash == NULL)
		return 0;
	if (asprintf(&res, "%.*s/%s", (int)(slash - file), file, *p) < 0)
		return TP_ENOMEM;
	free(*p);
	*p = res;
	return 0;
}

/* Reports at the key's node if present, else at the enclosing mapping. */
static yaml_node_t *
where(struct cfg_doc *d, yaml_node_t *root, const char *path)
{
	char parent[KEYPATH_MAX];
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
	char q[QUOTE_MAX + 16];
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

	fprintf(f, "%s%s: %s\n", indent, key, fmt_dur(ms, b, sizeof(b)));
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
}

void
config_print(const struct config *cfg, FILE *f)
{
	fprintf(f, "# effective configuration of %s\n", cfg->file);
	print_top(cfg, f);
	print_rest(cfg, f);
}

/* ---- check-config -------------------------------------------------- */

/* Checks the files a (possibly partly invalid) configuration names. */
static size_t
check_referenced(const struct cfg_raw *raw, struct cfg_errors *errs)
{
	const struct config *c = &raw->c;
	struct tunnel_cache *tc;
	struct knownhosts *kh;
	size_t n = 0;

	if (!raw->walked)
		return 0;	/* names nothing we could trust */
	if (!raw->kh_bad && c->trust.known_hosts[0] != '\0' &&
	    knownhosts_load(c->trust.known_hosts, &kh, errs) == 0)
		knownhosts_free(kh);
	if (c->tunnels_dir[0] == '\0')
		return 0;
	if ((tc = tunnel_cache_new()) == NULL) {
		cfg_errors_add(errs, "%s: out of memory", c->tunnels_dir);
		return 0;
	}
	tunnel_cache_reload(tc, c->tunnels_dir, errs);
	tunnel_cache_tunnels(tc, &n);
	tunnel_cache_free(tc);
	return n;
}

int
config_check_all(const char *path, const struct config_defaults *defaults,
    struct config **cfgp, size_t *ntunnels, struct cfg_errors *errs)
{
	size_t before = cfg_errors_count(errs), len, n;
	struct cfg_raw *raw;
	int main_ok;
	char *buf;

	if (cfgp != NULL)
		*cfgp = NULL;
	if (ntunnels != NULL)
		*ntunnels = 0;
	if (cfg_read_file(path, CONFIG_MAX_FILE, &buf, &len, errs) != 0)
		return TP_ESYNTAX;
	raw = parse_raw(path, buf, len, defaults, 0, errs);
	free(buf);
	if (raw == NULL)
		return TP_ENOMEM;
	main_ok = cfg_errors_count(errs) == before;
	n = check_referenced(raw, errs);
	if (ntunnels != NULL)
		*ntunnels = n;
	if (main_ok && cfgp != NULL)
		*cfgp = &raw->c;
	else
		raw_free(raw);
	return cfg_errors_count(errs) == before ? 0 : TP_ESYNTAX;
}
