/*
 * The schema walker and YAML helpers of the configuration parsers
 * (cfgwalk.h).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "common/tptime.h"
#include "supervisor/cfgwalk.h"

#define QUOTE_MAX	80	/* bytes of a quoted value before "..." */
#define KEYS_MAX	64	/* entries of one cfg_key table */

/* cfg_quote stops at QUOTE_MAX, then adds at most an escape and "...". */
_Static_assert(CFG_QUOTE_BUF >= QUOTE_MAX + 16, "CFG_QUOTE_BUF too small");

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
	char q[CFG_QUOTE_BUF];

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
	char q[CFG_QUOTE_BUF];

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

const char *
cfg_fmt_dur(uint64_t ms, char *buf, size_t cap)
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
	char q[CFG_QUOTE_BUF], *copy;

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
	char q[CFG_QUOTE_BUF], a[32], b[32], c[32];
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
		    cfg_fmt_dur(ms, a, sizeof(a)),
		    cfg_fmt_dur((uint64_t)k->min, b, sizeof(b)),
		    cfg_fmt_dur((uint64_t)k->max, c, sizeof(c)));
		return;
	}
	*(uint64_t *)((char *)base + k->off) = ms;
}

static void
set_uint(struct cfg_doc *d, const struct cfg_key *k, yaml_node_t *v,
    void *base, const char *path)
{
	char q[CFG_QUOTE_BUF];
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
	char q[CFG_QUOTE_BUF];
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
	char q[CFG_QUOTE_BUF];
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
	char path[CFG_KEYPATH_MAX];
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
	char path[CFG_KEYPATH_MAX], q[CFG_QUOTE_BUF];
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
