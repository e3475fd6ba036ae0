#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <yaml.h>

#include "common/error.h"
#include "common/readfile.h"
#include "common/sshpub.h"
#include "proxy/proxies_file.h"

#define CERT_SUFFIX	"-cert-v01@openssh.com"

/* A libyaml event parser over a whole file held in memory. */
struct yp {
	yaml_parser_t	 parser;
	yaml_event_t	 ev;
	int		 have;		/* ev must be deleted */
	struct pf_error	*err;
};

static int __attribute__((format(printf, 4, 0)))
pf_vfail(struct pf_error *err, size_t line, size_t col, const char *fmt,
    va_list ap)
{
	err->line = (unsigned)line;
	err->col = (unsigned)col;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	return TP_ESYNTAX;
}

/* Fills *err; line and col are 1-based, 0 for none.  Returns TP_ESYNTAX. */
static int __attribute__((format(printf, 4, 5)))
pf_fail(struct pf_error *err, size_t line, size_t col, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = pf_vfail(err, line, col, fmt, ap);
	va_end(ap);
	return rc;
}

/* Reads a whole file of at most max bytes into a NUL-terminated buffer. */
static int
read_file(const char *path, size_t max, char **out, size_t *len,
    struct pf_error *err)
{
	struct tp_rf_result r;
	int rc;

	/* A FIFO or device would block the helper's loop: refused there. */
	if ((rc = tp_read_file(path, max, 0, out, len, &r)) == 0)
		return 0;
	if (r.fail == TP_RF_OPEN || r.fail == TP_RF_STAT ||
	    r.fail == TP_RF_READ)
		pf_fail(err, 0, 0, "%s", strerror(r.err));
	else if (r.fail == TP_RF_NOTREG)
		pf_fail(err, 0, 0, "not a regular file");
	else if (r.fail == TP_RF_SIZE || r.fail == TP_RF_GREW)
		pf_fail(err, 0, 0, "larger than %zu bytes", max);
	else
		pf_fail(err, 0, 0, "out of memory");
	return rc;
}

/* Same rule as the worker's parser: [A-Za-z0-9][A-Za-z0-9._-]{0,126}. */
static int
name_valid(const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		char c = s[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
			return 0;
	}
	return i > 0 && i <= DISCOVERY_NAME_MAX;
}

static int
has_cert_suffix(const char *type, size_t len)
{
	size_t sl = strlen(CERT_SUFFIX);

	return len > sl && memcmp(type + len - sl, CERT_SUFFIX, sl) == 0;
}

/* Writes "<type> <base64 of blob>" into a new string of at most max bytes. */
static int
encode_key_line(const char *type, size_t tl, const uint8_t *blob, size_t len,
    size_t max, char **line, struct pf_error *err)
{
	size_t need = tl + 1 + (len + 2) / 3 * 4;

	if (need > max)
		return pf_fail(err, 0, 0, "key line longer than %zu bytes", max);
	if ((*line = malloc(need + 1)) == NULL)
		return TP_ENOMEM;
	memcpy(*line, type, tl);
	(*line)[tl] = ' ';
	EVP_EncodeBlock((unsigned char *)*line + tl + 1, blob, (int)len);
	return 0;
}

/*
 * Turns an OpenSSH key line into "type base64" without the comment: a
 * comment edit is then no change, and no host name leaks to the nodes.
 * For host keys (cert == 0) the key must also parse, so a truncated paste
 * fails here, on the proxy, instead of as a silent mismatch on every node.
 */
static int
normalise_key(const char *in, int cert, size_t max, char **line, char *fp,
    struct pf_error *err)
{
	const char *t = in + strspn(in, " \t");
	size_t tl = strcspn(t, " \t"), len;
	uint8_t *blob = NULL;
	EVP_PKEY *pkey = NULL;
	char type[64];
	int rc;

	if (has_cert_suffix(t, tl) != cert)
		return pf_fail(err, 0, 0, cert ? "not a certificate" :
		    "a certificate, not a public key");
	if ((rc = sshpub_from_line(in, &blob, &len)) != 0)
		return rc == TP_ENOMEM ? TP_ENOMEM :
		    pf_fail(err, 0, 0, "not an OpenSSH public key line");
	if (!cert && sshpub_parse(blob, len, &pkey, type, sizeof(type)) != 0)
		rc = pf_fail(err, 0, 0, "malformed or unsupported key");
	else
		rc = encode_key_line(t, tl, blob, len, max, line, err);
	if (rc == 0 && fp != NULL &&
	    sshpub_fingerprint(blob, len, fp, SSHPUB_FP_LEN) != 0)
		rc = pf_fail(err, 0, 0, "cannot fingerprint the key");
	EVP_PKEY_free(pkey);
	free(blob);
	return rc;
}

/* Fetches the next event, turning libyaml's errors into ours. */
static int
yp_next(struct yp *y)
{
	const yaml_mark_t *m = &y->parser.problem_mark;

	if (y->have)
		yaml_event_delete(&y->ev);
	y->have = 0;
	if (!yaml_parser_parse(&y->parser, &y->ev))
		return pf_fail(y->err, m->line + 1, m->column + 1, "%s%s%s",
		    y->parser.problem ? y->parser.problem : "YAML error",
		    y->parser.context ? " " : "",
		    y->parser.context ? y->parser.context : "");
	y->have = 1;
	if (y->ev.type == YAML_ALIAS_EVENT)
		return pf_fail(y->err, y->ev.start_mark.line + 1,
		    y->ev.start_mark.column + 1, "aliases are not supported");
	return 0;
}

/* As pf_fail, at the start of the current event. */
static int __attribute__((format(printf, 2, 3)))
yp_fail(struct yp *y, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = pf_vfail(y->err, y->ev.start_mark.line + 1,
	    y->ev.start_mark.column + 1, fmt, ap);
	va_end(ap);
	return rc;
}

/* Reads the next event and fails unless it is of type t. */
static int
yp_expect(struct yp *y, yaml_event_type_t t, const char *what)
{
	int rc;

	if ((rc = yp_next(y)) != 0)
		return rc;
	return y->ev.type == t ? 0 : yp_fail(y, "expected %s", what);
}

/* Reads a scalar value; *s points into the event (valid until yp_next). */
static int
yp_scalar(struct yp *y, const char *what, const char **s)
{
	int rc;

	if ((rc = yp_expect(y, YAML_SCALAR_EVENT, what)) != 0)
		return rc;
	*s = (const char *)y->ev.data.scalar.value;
	if (strlen(*s) != y->ev.data.scalar.length)
		return yp_fail(y, "NUL byte in %s", what);
	return 0;
}

/* Errors from normalise_key carry no position: give them the event's. */
static int
yp_key(struct yp *y, struct proxy_entry *e)
{
	const char *s;
	int rc;

	if ((rc = yp_scalar(y, "a host_key line", &s)) != 0)
		return rc;
	if ((rc = normalise_key(s, 0, DISCOVERY_KEY_LINE_MAX, &e->key_line,
	    e->fp, y->err)) == TP_ESYNTAX) {
		y->err->line = (unsigned)y->ev.start_mark.line + 1;
		y->err->col = (unsigned)y->ev.start_mark.column + 1;
	}
	return rc;
}

static int
yp_name(struct yp *y, const char *what, char *out)
{
	const char *s;
	int rc;

	if ((rc = yp_scalar(y, what, &s)) != 0)
		return rc;
	if (!name_valid(s))
		return yp_fail(y, "bad %s: want 1-%d of [A-Za-z0-9._-], "
		    "starting with a letter or digit", what,
		    DISCOVERY_NAME_MAX);
	strcpy(out, s);
	return 0;
}

/* One "- name: ..., host_key: ..." mapping; its MAPPING_START is read. */
static int
parse_entry(struct yp *y, struct proxy_entry *e)
{
	yaml_mark_t start = y->ev.start_mark;
	const char *k;
	int rc, seen_name = 0, seen_key = 0;

	for (;;) {
		if ((rc = yp_next(y)) != 0)
			return rc;
		if (y->ev.type == YAML_MAPPING_END_EVENT)
			break;
		if (y->ev.type != YAML_SCALAR_EVENT)
			return yp_fail(y, "expected a key");
		k = (const char *)y->ev.data.scalar.value;
		if (strcmp(k, "name") == 0 && !seen_name++)
			rc = yp_name(y, "proxy name", e->name);
		else if (strcmp(k, "host_key") == 0 && !seen_key++)
			rc = yp_key(y, e);
		else
			rc = yp_fail(y, "%s key \"%.64s\" in a proxy",
			    strcmp(k, "name") == 0 || strcmp(k, "host_key") == 0 ?
			    "duplicate" : "unknown", k);
		if (rc != 0)
			return rc;
	}
	if (!seen_name || !seen_key)
		return pf_fail(y->err, start.line + 1, start.column + 1,
		    "proxy without %s", seen_name ? "host_key" : "name");
	return 0;
}

/* Refuses an entry whose name or host key an earlier entry has. */
static int
check_dup(struct proxy_set *set, const yaml_mark_t *m, struct pf_error *err)
{
	const struct proxy_entry *e = &set->v[set->n];
	size_t i;

	for (i = 0; i < set->n; i++) {
		if (strcmp(set->v[i].name, e->name) == 0)
			return pf_fail(err, m->line + 1, m->column + 1,
			    "duplicate proxy name \"%s\"", e->name);
		if (strcmp(set->v[i].fp, e->fp) == 0)
			return pf_fail(err, m->line + 1, m->column + 1,
			    "proxy \"%s\" has the host key of \"%s\"",
			    e->name, set->v[i].name);
	}
	return 0;
}

static int
cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct proxy_entry *)a)->name,
	    ((const struct proxy_entry *)b)->name);
}

/* One list item: a proxy mapping, unique by name and by key. */
static int
parse_item(struct yp *y, struct proxy_set *set)
{
	yaml_mark_t m = y->ev.start_mark;
	int rc;

	if (y->ev.type != YAML_MAPPING_START_EVENT)
		return yp_fail(y, "expected a proxy (name, host_key)");
	if (set->n == DISCOVERY_PROXIES_MAX)
		return yp_fail(y, "more than %d proxies", DISCOVERY_PROXIES_MAX);
	rc = parse_entry(y, &set->v[set->n]);
	if (rc == 0)
		rc = check_dup(set, &m, y->err);
	set->n++;	/* even on error: proxy_set_free frees its key_line */
	return rc;
}

static int
parse_proxies(struct yp *y, struct proxy_set *set)
{
	yaml_mark_t start;
	int rc;

	if ((rc = yp_expect(y, YAML_SEQUENCE_START_EVENT,
	    "a list of proxies")) != 0)
		return rc;
	start = y->ev.start_mark;
	if (set->v == NULL && (set->v = calloc(DISCOVERY_PROXIES_MAX,
	    sizeof(*set->v))) == NULL)
		return TP_ENOMEM;
	for (;;) {
		if ((rc = yp_next(y)) != 0)
			return rc;
		if (y->ev.type == YAML_SEQUENCE_END_EVENT)
			break;
		if ((rc = parse_item(y, set)) != 0)
			return rc;
	}
	if (set->n == 0)
		return pf_fail(y->err, start.line + 1, start.column + 1,
		    "no proxies");
	qsort(set->v, set->n, sizeof(*set->v), cmp_entry);
	return 0;
}

static int
parse_cert_path(struct yp *y, struct proxy_set *set)
{
	const char *s;
	int rc;

	if ((rc = yp_scalar(y, "a certificate path", &s)) != 0)
		return rc;
	if (s[0] != '/' || strlen(s) >= PATH_MAX)
		return yp_fail(y, "self_certificate must be an absolute path");
	if ((set->cert_path = strdup(s)) == NULL)
		return TP_ENOMEM;
	return 0;
}

/* The top-level mapping; its MAPPING_START is read. */
static int
parse_top(struct yp *y, struct proxy_set *set)
{
	yaml_mark_t start = y->ev.start_mark;
	const char *k;
	int rc, seen_c = 0, seen_p = 0, seen_s = 0;

	for (;;) {
		if ((rc = yp_next(y)) != 0)
			return rc;
		if (y->ev.type == YAML_MAPPING_END_EVENT)
			break;
		if (y->ev.type != YAML_SCALAR_EVENT)
			return yp_fail(y, "expected a key");
		k = (const char *)y->ev.data.scalar.value;
		if (strcmp(k, "cluster") == 0 && !seen_c++)
			rc = yp_name(y, "cluster name", set->cluster);
		else if (strcmp(k, "proxies") == 0 && !seen_p++)
			rc = parse_proxies(y, set);
		else if (strcmp(k, "self_certificate") == 0 && !seen_s++)
			rc = parse_cert_path(y, set);
		else
			rc = yp_fail(y, "%s key \"%.64s\"",
			    strcmp(k, "cluster") == 0 || strcmp(k, "proxies") == 0 ||
			    strcmp(k, "self_certificate") == 0 ? "duplicate" :
			    "unknown", k);
		if (rc != 0)
			return rc;
	}
	if (!seen_c || !seen_p)
		return pf_fail(y->err, start.line + 1, start.column + 1,
		    "missing key \"%s\"", seen_c ? "proxies" : "cluster");
	return 0;
}

/* Exactly one document whose root is the mapping parse_top reads. */
static int
parse_stream(struct yp *y, struct proxy_set *set)
{
	int rc;

	if ((rc = yp_expect(y, YAML_STREAM_START_EVENT, "a YAML stream")) != 0 ||
	    (rc = yp_next(y)) != 0)
		return rc;
	if (y->ev.type == YAML_STREAM_END_EVENT)
		return yp_fail(y, "empty file");
	if ((rc = yp_expect(y, YAML_MAPPING_START_EVENT,
	    "a mapping (cluster, proxies) at the top level")) != 0 ||
	    (rc = parse_top(y, set)) != 0 ||
	    (rc = yp_expect(y, YAML_DOCUMENT_END_EVENT, "end of document")) != 0)
		return rc;
	return yp_expect(y, YAML_STREAM_END_EVENT, "end of file (one document only)");
}

int
proxies_file_load(const char *path, struct proxy_set *set,
    struct pf_error *err)
{
	struct yp y;
	char *buf;
	size_t len;
	int rc;

	memset(set, 0, sizeof(*set));
	memset(err, 0, sizeof(*err));
	if ((rc = read_file(path, PROXIES_FILE_MAX, &buf, &len, err)) != 0)
		return rc;
	memset(&y, 0, sizeof(y));
	y.err = err;
	if (!yaml_parser_initialize(&y.parser)) {
		free(buf);
		return TP_ENOMEM;
	}
	yaml_parser_set_input_string(&y.parser, (const unsigned char *)buf, len);
	rc = parse_stream(&y, set);
	if (y.have)
		yaml_event_delete(&y.ev);
	yaml_parser_delete(&y.parser);
	free(buf);
	if (rc == TP_ENOMEM && err->msg[0] == '\0')
		snprintf(err->msg, sizeof(err->msg), "out of memory");
	if (rc != 0)
		proxy_set_free(set);
	return rc;
}

void
proxy_set_free(struct proxy_set *set)
{
	size_t i;

	for (i = 0; i < set->n; i++)
		free(set->v[i].key_line);
	free(set->v);
	free(set->cert_path);
	memset(set, 0, sizeof(*set));
}

bool
proxy_set_equal(const struct proxy_set *a, const struct proxy_set *b)
{
	size_t i;

	if (strcmp(a->cluster, b->cluster) != 0 || a->n != b->n)
		return false;
	for (i = 0; i < a->n; i++)
		if (strcmp(a->v[i].name, b->v[i].name) != 0 ||
		    strcmp(a->v[i].key_line, b->v[i].key_line) != 0)
			return false;
	return true;
}

int
cert_file_load(const char *path, char **line, struct pf_error *err)
{
	char *buf;
	size_t len;
	int rc;

	memset(err, 0, sizeof(*err));
	if ((rc = read_file(path, CERT_FILE_MAX, &buf, &len, err)) != 0)
		return rc;
	buf[strcspn(buf, "\r\n")] = '\0';
	rc = normalise_key(buf, 1, DISCOVERY_CERT_LINE_MAX, line, NULL, err);
	if (rc == TP_ENOMEM)
		snprintf(err->msg, sizeof(err->msg), "out of memory");
	free(buf);
	return rc;
}
