/*
 * known_hosts parsing and lookup, after OpenSSH's hostfile.c and match.c.
 *
 * Lookups happen once per spawn, so with large files they must not scan
 * every line: lines whose patterns are all literal names are indexed in a
 * sorted name table (binary search); only lines with wildcards, negations
 * or hashed names are tested one by one.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/error.h"
#include "common/sshpub.h"
#include "supervisor/cfgerr.h"
#include "supervisor/cfgread.h"
#include "supervisor/knownhosts.h"

#define SHA1_LEN	20
#define HOST_MAX	(255 + 8)	/* "[" host "]:" port */

enum kh_marker {
	KH_PLAIN = 0,
	KH_CA,
	KH_REVOKED,
};

struct kh_entry {
	enum kh_marker	 marker;
	int		 hashed;
	char		*patterns;	/* lowercased; NULL if hashed */
	uint8_t		 salt[SHA1_LEN];
	uint8_t		 hash[SHA1_LEN];
	uint8_t		*blob;
	size_t		 blob_len;
	char		 fp[SSHPUB_FP_LEN];
};

/* One literal host name of an indexed line. */
struct kh_name {
	const char	*name;	/* points into the entry's patterns */
	size_t		 len;
	size_t		 entry;
};

struct knownhosts {
	struct kh_entry	*e;
	size_t		 n, cap;
	struct kh_name	*names;		/* sorted by (name, entry) */
	size_t		 nnames, names_cap;
	size_t		*slow;		/* entries matched one by one */
	size_t		 nslow, slow_cap;
};

/* Grows *v (of *cap elements of size sz) to hold at least n + 1. */
static int
grow(void *vp, size_t *cap, size_t n, size_t sz)
{
	void **v = vp, *nv;
	size_t ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	if ((nv = reallocarray(*v, ncap, sz)) == NULL)
		return TP_ENOMEM;
	*v = nv;
	*cap = ncap;
	return 0;
}

/* ---- matching ------------------------------------------------------ */

/*
 * Glob match of s against the pattern p[0..plen) with '*' and '?', by
 * remembering the last star instead of recursing: O(len(s) * plen) at
 * worst, so a hostile pattern cannot blow up the stack or the CPU.
 */
static int
wild_match(const char *s, const char *p, size_t plen)
{
	const char *star_s = NULL;
	size_t pi = 0, star_p = 0;

	while (*s != '\0') {
		if (pi < plen && p[pi] == '*') {
			star_p = ++pi;
			star_s = s;
		} else if (pi < plen && (p[pi] == '?' || p[pi] == *s)) {
			pi++;
			s++;
		} else if (star_s != NULL) {
			pi = star_p;
			s = ++star_s;
		} else
			return 0;
	}
	while (pi < plen && p[pi] == '*')
		pi++;
	return pi == plen;
}

int
knownhosts_match_list(const char *name, const char *patterns)
{
	const char *p = patterns, *end;
	int found = 0, neg;
	size_t len;

	while (*p != '\0') {
		end = strchr(p, ',');
		len = end ? (size_t)(end - p) : strlen(p);
		neg = len > 0 && p[0] == '!';
		if (wild_match(name, p + neg, len - (size_t)neg)) {
			if (neg)
				return -1;
			found = 1;
		}
		if (end == NULL)
			break;
		p = end + 1;
	}
	return found;
}

static int
hashed_match(const struct kh_entry *e, const char *name)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (HMAC(EVP_sha1(), e->salt, SHA1_LEN, (const unsigned char *)name,
	    strlen(name), md, &mdlen) == NULL || mdlen != SHA1_LEN)
		return 0;
	return CRYPTO_memcmp(md, e->hash, SHA1_LEN) == 0;
}

static int
entry_matches(const struct kh_entry *e, const char *name)
{
	if (e->hashed)
		return hashed_match(e, name);
	return knownhosts_match_list(name, e->patterns) == 1;
}

/* ---- parsing ------------------------------------------------------- */

static int
b64_char(int c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Strict base64 of exactly want bytes (the SHA-1 salt and hash). */
static int
b64_exact(const char *s, size_t n, uint8_t *out, size_t want)
{
	uint32_t acc = 0;
	size_t i, bits = 0, o = 0;
	int v;

	while (n > 0 && s[n - 1] == '=')
		n--;
	for (i = 0; i < n; i++) {
		if ((v = b64_char((unsigned char)s[i])) < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o == want)
				return -1;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	return o == want ? 0 : -1;
}

/* "|1|salt|hash" */
static const char *
parse_hashed(struct kh_entry *e, const char *f)
{
	const char *salt = f + 3, *bar;

	if (strncmp(f, "|1|", 3) != 0)
		return "unsupported hashed host name format";
	if ((bar = strchr(salt, '|')) == NULL ||
	    b64_exact(salt, (size_t)(bar - salt), e->salt, SHA1_LEN) != 0 ||
	    b64_exact(bar + 1, strlen(bar + 1), e->hash, SHA1_LEN) != 0)
		return "invalid hashed host name";
	e->hashed = 1;
	return NULL;
}

/* Plain comma-separated patterns: lowercased, no empty element. */
static const char *
parse_patterns(struct kh_entry *e, const char *f)
{
	const char *p, *end;
	size_t i, len;

	for (p = f; ; p = end + 1) {
		end = strchr(p, ',');
		len = end ? (size_t)(end - p) : strlen(p);
		if (len == 0 || (len == 1 && p[0] == '!'))
			return "empty host pattern";
		if (end == NULL)
			break;
	}
	if ((e->patterns = strdup(f)) == NULL)
		return "out of memory";
	for (i = 0; e->patterns[i] != '\0'; i++) {
		unsigned char c = (unsigned char)e->patterns[i];

		if (c < 0x21 || c == 0x7f)
			return "invalid character in host pattern";
		e->patterns[i] = (char)tolower(c);
	}
	return NULL;
}

/* The key part; an unsupported key type is not an error (see caller). */
static const char *
parse_key(struct kh_entry *e, const char *rest, int *skip)
{
	EVP_PKEY *pk = NULL;
	char type[64];
	int rc;

	if (*rest == '\0')
		return "missing key";
	if (sshpub_from_line(rest, &e->blob, &e->blob_len) != 0)
		return "invalid public key";
	rc = sshpub_parse(e->blob, e->blob_len, &pk, type, sizeof(type));
	EVP_PKEY_free(pk);
	if (rc == TP_EUNSUPP) {
		*skip = 1;
		return NULL;
	}
	if (rc != 0)
		return "invalid public key";
	if (sshpub_fingerprint(e->blob, e->blob_len, e->fp, sizeof(e->fp)))
		return "cannot fingerprint key";
	return NULL;
}

/* Splits off the next whitespace-separated field of *sp into buf. */
static int
next_field(const char **sp, char *buf, size_t cap)
{
	const char *s = *sp + strspn(*sp, " \t");
	size_t n = strcspn(s, " \t");

	if (n == 0 || n >= cap)
		return -1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	*sp = s + n + strspn(s + n, " \t");
	return 0;
}

static void
entry_clear(struct kh_entry *e)
{
	free(e->patterns);
	free(e->blob);
	memset(e, 0, sizeof(*e));
}

/*
 * Parses one non-comment line into e.  Returns NULL, or why the line is
 * invalid; *skip is set for a valid line of an unsupported key type.
 */
static const char *
parse_line(struct kh_entry *e, const char *line, int *skip)
{
	char field[KNOWNHOSTS_MAX_LINE];
	const char *s = line, *why;

	if (next_field(&s, field, sizeof(field)) != 0)
		return "missing host patterns";
	if (field[0] == '@') {
		if (strcmp(field, "@cert-authority") == 0)
			e->marker = KH_CA;
		else if (strcmp(field, "@revoked") == 0)
			e->marker = KH_REVOKED;
		else
			return "unknown marker";
		if (next_field(&s, field, sizeof(field)) != 0)
			return "missing host patterns";
	}
	why = field[0] == '|' ? parse_hashed(e, field) :
	    parse_patterns(e, field);
	return why ? why : parse_key(e, s, skip);
}

/* Indexes entry i: by literal names, or in the slow list. */
static int
index_entry(struct knownhosts *kh, size_t i)
{
	const char *p = kh->e[i].patterns, *end;
	size_t len;

	if (kh->e[i].hashed || strpbrk(p, "*?!") != NULL) {
		if (grow(&kh->slow, &kh->slow_cap, kh->nslow, sizeof(size_t)))
			return TP_ENOMEM;
		kh->slow[kh->nslow++] = i;
		return 0;
	}
	for (; *p != '\0'; p = end + 1) {
		end = strchr(p, ',');
		len = end ? (size_t)(end - p) : strlen(p);
		if (grow(&kh->names, &kh->names_cap, kh->nnames,
		    sizeof(struct kh_name)))
			return TP_ENOMEM;
		kh->names[kh->nnames++] = (struct kh_name){ p, len, i };
		if (end == NULL)
			break;
	}
	return 0;
}

static int
cmp_name(const struct kh_name *a, const char *s, size_t len)
{
	size_t n = a->len < len ? a->len : len;
	int c = memcmp(a->name, s, n);

	if (c != 0)
		return c;
	return a->len < len ? -1 : a->len > len;
}

static int
cmp_names(const void *va, const void *vb)
{
	const struct kh_name *a = va, *b = vb;
	int c = cmp_name(a, b->name, b->len);

	if (c != 0)
		return c;
	return a->entry < b->entry ? -1 : a->entry > b->entry;
}

/* Parses one line; returns 0, or -1 after adding an error. */
static int
add_line(struct knownhosts *kh, const char *file, size_t lineno,
    const char *line, struct cfg_errors *errs)
{
	struct kh_entry e;
	const char *why;
	int skip = 0;

	memset(&e, 0, sizeof(e));
	if ((why = parse_line(&e, line, &skip)) == NULL && !skip &&
	    grow(&kh->e, &kh->cap, kh->n, sizeof(e)) != 0)
		why = "out of memory";
	if (why != NULL || skip) {
		entry_clear(&e);
		if (why != NULL)
			cfg_errors_add(errs, "%s:%zu: %s", file, lineno, why);
		return why != NULL ? -1 : 0;
	}
	kh->e[kh->n++] = e;
	return 0;
}

/* Copies the line [p, end) without "\r"; NULL if empty, a comment or bad. */
static const char *
line_text(const char *p, const char *end, char *buf, size_t cap,
    const char **why)
{
	size_t n = (size_t)(end - p);
	const char *s;

	*why = NULL;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (n >= cap) {
		*why = "line too long";
		return NULL;
	}
	if (memchr(p, '\0', n) != NULL) {
		*why = "contains a NUL byte";
		return NULL;
	}
	memcpy(buf, p, n);
	buf[n] = '\0';
	s = buf + strspn(buf, " \t");
	return (*s == '\0' || *s == '#') ? NULL : s;
}

static void
parse_lines(struct knownhosts *kh, const char *file, const char *buf,
    size_t len, struct cfg_errors *errs)
{
	const char *p = buf, *end, *s, *why;
	size_t lineno = 0;
	char *line;

	if ((line = malloc(KNOWNHOSTS_MAX_LINE + 1)) == NULL) {
		cfg_errors_add(errs, "%s: out of memory", file);
		return;
	}
	while (p < buf + len) {
		lineno++;
		if ((end = memchr(p, '\n', (size_t)(buf + len - p))) == NULL)
			end = buf + len;
		if ((s = line_text(p, end, line, KNOWNHOSTS_MAX_LINE + 1,
		    &why)) != NULL)
			add_line(kh, file, lineno, s, errs);
		else if (why != NULL)
			cfg_errors_add(errs, "%s:%zu: %s", file, lineno, why);
		p = end + 1;
	}
	free(line);
}

static int
build_index(struct knownhosts *kh)
{
	size_t i;

	for (i = 0; i < kh->n; i++)
		if (index_entry(kh, i) != 0)
			return TP_ENOMEM;
	if (kh->nnames > 0)
		qsort(kh->names, kh->nnames, sizeof(*kh->names), cmp_names);
	return 0;
}

int
knownhosts_parse_buffer(const char *file, const char *buf, size_t len,
    struct knownhosts **khp, struct cfg_errors *errs)
{
	size_t before = cfg_errors_count(errs);
	struct knownhosts *kh;

	*khp = NULL;
	if (len > KNOWNHOSTS_MAX_FILE) {
		cfg_errors_add(errs, "%s: file too large (%zu bytes, limit %d)",
		    file, len, KNOWNHOSTS_MAX_FILE);
		return TP_ETOOBIG;
	}
	if ((kh = calloc(1, sizeof(*kh))) == NULL) {
		cfg_errors_add(errs, "%s: out of memory", file);
		return TP_ENOMEM;
	}
	parse_lines(kh, file, buf, len, errs);
	if (cfg_errors_count(errs) == before && build_index(kh) != 0)
		cfg_errors_add(errs, "%s: out of memory", file);
	if (cfg_errors_count(errs) != before) {
		knownhosts_free(kh);
		return TP_ESYNTAX;
	}
	*khp = kh;
	return 0;
}

int
knownhosts_load(const char *path, struct knownhosts **khp,
    struct cfg_errors *errs)
{
	size_t len;
	char *buf;
	int rc;

	*khp = NULL;
	rc = cfg_read_file(path, KNOWNHOSTS_MAX_FILE, &buf, &len, errs);
	if (rc != 0)
		return rc;
	rc = knownhosts_parse_buffer(path, buf, len, khp, errs);
	free(buf);
	return rc;
}

void
knownhosts_free(struct knownhosts *kh)
{
	size_t i;

	if (kh == NULL)
		return;
	for (i = 0; i < kh->n; i++)
		entry_clear(&kh->e[i]);
	free(kh->e);
	free(kh->names);
	free(kh->slow);
	free(kh);
}

size_t
knownhosts_count(const struct knownhosts *kh)
{
	return kh->n;
}

/* ---- lookup -------------------------------------------------------- */

/* The name OpenSSH looks up: lowercased, "[host]:port" unless port 22. */
static int
lookup_name(const char *host, uint16_t port, char *buf, size_t cap)
{
	size_t i, n = strlen(host);
	int r;

	if (n == 0 || n > 255)
		return TP_EINVAL;
	for (i = 0; i < n; i++)
		if ((unsigned char)host[i] < 0x21 || host[i] == ',')
			return TP_EINVAL;
	if (port == 0 || port == 22)
		r = snprintf(buf, cap, "%s", host);
	else
		r = snprintf(buf, cap, "[%s]:%u", host, port);
	if (r < 0 || (size_t)r >= cap)
		return TP_EINVAL;
	for (i = 0; buf[i] != '\0'; i++)
		buf[i] = (char)tolower((unsigned char)buf[i]);
	return 0;
}

static int
cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

/* First index of names equal to name (binary search), or nnames. */
static size_t
names_lower_bound(const struct knownhosts *kh, const char *name)
{
	size_t lo = 0, hi = kh->nnames, mid, len = strlen(name);

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (cmp_name(&kh->names[mid], name, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Indices of the entries that apply to name, sorted (file order). */
static int
matching_entries(const struct knownhosts *kh, const char *name,
    size_t **outp, size_t *np)
{
	size_t i, n = 0, cap = 0, len = strlen(name), *out = NULL;

	for (i = names_lower_bound(kh, name); i < kh->nnames &&
	    cmp_name(&kh->names[i], name, len) == 0; i++) {
		if (n > 0 && out[n - 1] == kh->names[i].entry)
			continue;	/* the name twice on one line */
		if (grow(&out, &cap, n, sizeof(size_t)) != 0)
			goto nomem;
		out[n++] = kh->names[i].entry;
	}
	for (i = 0; i < kh->nslow; i++) {
		if (!entry_matches(&kh->e[kh->slow[i]], name))
			continue;
		if (grow(&out, &cap, n, sizeof(size_t)) != 0)
			goto nomem;
		out[n++] = kh->slow[i];
	}
	if (n > 1)
		qsort(out, n, sizeof(size_t), cmp_size);
	*outp = out;
	*np = n;
	return 0;
nomem:
	free(out);
	return TP_ENOMEM;
}

static int
in_list(char **v, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return 1;
	return 0;
}

/* Result lists are short: grow them one element at a time. */
static int
push_fp(char ***v, size_t *n, const char *fp)
{
	char **nv, *copy;

	if (in_list(*v, *n, fp))
		return 0;
	if ((nv = reallocarray(*v, *n + 1, sizeof(char *))) == NULL)
		return TP_ENOMEM;
	*v = nv;
	if ((copy = strdup(fp)) == NULL)
		return TP_ENOMEM;
	nv[(*n)++] = copy;
	return 0;
}

static int
push_ca(struct kh_result *res, const struct kh_entry *e)
{
	struct kh_blob *nv;
	uint8_t *copy;
	size_t i;

	for (i = 0; i < res->n_cas; i++)
		if (res->cas[i].len == e->blob_len &&
		    memcmp(res->cas[i].p, e->blob, e->blob_len) == 0)
			return 0;
	nv = reallocarray(res->cas, res->n_cas + 1, sizeof(*nv));
	if (nv == NULL)
		return TP_ENOMEM;
	res->cas = nv;
	if ((copy = malloc(e->blob_len)) == NULL)
		return TP_ENOMEM;
	memcpy(copy, e->blob, e->blob_len);
	nv[res->n_cas++] = (struct kh_blob){ copy, e->blob_len };
	return 0;
}

/* Revoked keys first, so that they can be left out of the other lists. */
static int
fill_result(const struct knownhosts *kh, const size_t *idx, size_t n,
    struct kh_result *res)
{
	const struct kh_entry *e;
	size_t i;
	int rc = 0;

	for (i = 0; i < n && rc == 0; i++)
		if (kh->e[idx[i]].marker == KH_REVOKED)
			rc = push_fp(&res->revoked, &res->n_revoked,
			    kh->e[idx[i]].fp);
	for (i = 0; i < n && rc == 0; i++) {
		e = &kh->e[idx[i]];
		if (e->marker == KH_REVOKED ||
		    in_list(res->revoked, res->n_revoked, e->fp))
			continue;
		if (e->marker == KH_CA)
			rc = push_ca(res, e);
		else
			rc = push_fp(&res->pinned, &res->n_pinned, e->fp);
	}
	return rc;
}

int
knownhosts_lookup(const struct knownhosts *kh, const char *host,
    uint16_t port, struct kh_result *res)
{
	char name[HOST_MAX + 1];
	size_t *idx = NULL, n = 0;
	int rc;

	memset(res, 0, sizeof(*res));
	if ((rc = lookup_name(host, port, name, sizeof(name))) != 0)
		return rc;
	if ((rc = matching_entries(kh, name, &idx, &n)) != 0)
		return rc;
	rc = fill_result(kh, idx, n, res);
	free(idx);
	if (rc != 0)
		kh_result_free(res);
	return rc;
}

void
kh_result_free(struct kh_result *res)
{
	size_t i;

	for (i = 0; i < res->n_pinned; i++)
		free(res->pinned[i]);
	for (i = 0; i < res->n_revoked; i++)
		free(res->revoked[i]);
	for (i = 0; i < res->n_cas; i++)
		free(res->cas[i].p);
	free(res->pinned);
	free(res->revoked);
	free(res->cas);
	memset(res, 0, sizeof(*res));
}
