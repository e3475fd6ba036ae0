/*
 * The schema walker and YAML helpers every configuration parser shares
 * (the main file in config.c, its tunnel_source block in etcd_config.c,
 * tunnel documents in tunneldoc.c), so that all of them report errors
 * alike: "FILE:LINE:COLUMN: key.path: message", at the libyaml mark of
 * the offending node, into a struct cfg_errors (cfgerr.h).
 *
 * A schema is a table of struct cfg_key: name, type, where the value goes
 * (an offset into a parse target), whether it is required, its range or a
 * check function.  The walker reports unknown, duplicate and missing keys,
 * wrong types, unsupported tags and out-of-range values, and keeps going.
 */
#ifndef TP_SUP_CFGWALK_H
#define TP_SUP_CFGWALK_H

#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#include "supervisor/cfgerr.h"

#define CFG_NAME_MAX		127	/* safe names: [A-Za-z0-9._-] */
#define CFG_KEYPATH_MAX		128	/* "a.b[3].c" */
#define CFG_QUOTE_BUF		96	/* enough for any cfg_quote result */

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
 * Formats a duration the way tp_parse_duration reads it back ("5s",
 * "1500ms", "2h") into buf; returns buf.
 */
const char *cfg_fmt_dur(uint64_t ms, char *buf, size_t cap);

/*
 * Calls fn once per YAML document of buf (stopping early if fn returns
 * nonzero), reporting syntax errors as "FILE:LINE:COL: syntax error: ...".
 * Returns the number of documents seen, or -1 after a syntax error.
 */
typedef int cfg_doc_fn(struct cfg_doc *d, yaml_node_t *root, void *arg);
int cfg_each_doc(const char *file, const char *buf, size_t len,
    struct cfg_errors *errs, cfg_doc_fn *fn, void *arg);

#endif
