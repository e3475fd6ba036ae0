#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/error.h"
#include "common/sshbuf.h"
#include "common/sshcert.h"
#include "common/sshpub.h"
#include "worker/hostcert.h"

#define SHOW_LEN		96	/* untrusted text quoted in a reason */
#define PRINCIPAL_MAX		256	/* longer principals match no pattern */

static void
set_why(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_why(char *why, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || cap == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
}

/*
 * Copies untrusted bytes for a log line: printable ASCII only (no quotes,
 * no backslashes), so a hostile proxy cannot forge log fields.
 */
static const char *
show(const uint8_t *p, size_t n, char *buf, size_t cap)
{
	size_t i, o = 0;

	for (i = 0; i < n && o + 1 < cap; i++)
		buf[o++] = (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' &&
		    p[i] != '\\') ? (char)p[i] : '?';
	buf[o] = '\0';
	return buf;
}

static int
ca_trusted(const struct sshcert *c, const struct hostcert_policy *p)
{
	size_t i;

	for (i = 0; i < p->n_ca; i++)
		if (p->ca[i] != NULL && p->ca_len[i] == c->ca_len &&
		    memcmp(p->ca[i], c->ca, c->ca_len) == 0)
			return 1;
	return 0;
}

static int
name_accepted(const uint8_t *s, size_t n, const struct hostcert_policy *p)
{
	char name[PRINCIPAL_MAX];
	size_t i;

	for (i = 0; i < p->n_names; i++)
		if (p->names[i] != NULL && strlen(p->names[i]) == n &&
		    memcmp(p->names[i], s, n) == 0)
			return 1;
	/* A principal with a NUL inside, or too long, matches no pattern. */
	if (p->n_patterns == 0 || n == 0 || n >= sizeof(name) ||
	    memchr(s, '\0', n) != NULL)
		return 0;
	memcpy(name, s, n);
	name[n] = '\0';
	for (i = 0; i < p->n_patterns; i++)
		if (p->patterns[i] != NULL &&
		    fnmatch(p->patterns[i], name, FNM_CASEFOLD) == 0)
			return 1;
	return 0;
}

/* True if any principal is an accepted name (the list is well-formed). */
static int
principal_matches(const struct sshcert *c, const struct hostcert_policy *p)
{
	struct sshbuf_reader r;
	const uint8_t *s;
	size_t n;

	sshbuf_reader_init(&r, c->principals, c->principals_len);
	while (sshbuf_get_string(&r, &s, &n) == 0)
		if (name_accepted(s, n, p))
			return 1;
	return 0;
}

/*
 * The certified key rebuilt as a plain public key blob: the base type name
 * followed by the same fields, byte for byte.  Both encodings are canonical
 * (sshpub refuses alternative mpint forms), so equal keys give equal blobs.
 */
static int
certified_key_matches(const struct sshcert *c, const struct hostcert_policy *p)
{
	struct sshbuf_writer w;
	EVP_PKEY *pkey = NULL;
	int rc;

	sshbuf_writer_init(&w, HOSTCERT_MAX);
	sshcert_put_key(c, &w);
	if ((rc = sshbuf_writer_error(&w)) == 0)
		rc = sshpub_parse(w.p, w.len, &pkey, NULL, 0);
	EVP_PKEY_free(pkey);
	if (rc == 0 && (w.len != p->kex_key_len ||
	    memcmp(w.p, p->kex_key, w.len) != 0))
		rc = TP_EDENIED;
	sshbuf_writer_free(&w);
	return rc;
}

/* The CA key must be trusted, then its signature must verify. */
static int
check_signature(const struct sshcert *c, const struct hostcert_policy *p,
    char *why, size_t cap)
{
	int rc;

	if (!ca_trusted(c, p)) {
		set_why(why, cap, "signed by an untrusted CA");
		return TP_EDENIED;
	}
	rc = sshcert_verify(c);
	if (rc == TP_EUNSUPP)
		set_why(why, cap, "CA signature algorithm not supported");
	else if (rc != 0)
		set_why(why, cap, "bad CA signature");
	return rc;
}

/* Explains why the certificate's names do not fit. */
static int
deny_principals(const struct sshcert *c, char *why, size_t cap)
{
	char id[SHOW_LEN];

	show(c->key_id, c->key_id_len, id, sizeof(id));
	/*
	 * OpenSSH reads an empty list as "valid for any host".  A proxy is
	 * known by its name, and a nameless certificate would let any host
	 * the CA ever certified stand in for every proxy: refuse it.
	 */
	if (c->principals_len == 0)
		set_why(why, cap, "certificate has no principals "
		    "(any-host certificates are refused), key id \"%s\"", id);
	else
		set_why(why, cap, "principal mismatch, key id \"%s\"", id);
	return TP_EDENIED;
}

/* Host type, options, names and validity of a signature-checked cert. */
static int
check_fields(const struct sshcert *c, const struct hostcert_policy *p,
    char *why, size_t cap)
{
	char opt[SHOW_LEN];
	struct sshbuf_reader r;
	const uint8_t *s = NULL;
	size_t n = 0;

	if (c->type != SSHCERT_TYPE_HOST) {
		set_why(why, cap, "not a host certificate (type %" PRIu32 ")",
		    c->type);
		return TP_EDENIED;
	}
	/* No critical option is defined for host certificates. */
	if (c->crit_len != 0) {
		sshbuf_reader_init(&r, c->crit, c->crit_len);
		(void)sshbuf_get_string(&r, &s, &n);	/* well-formed */
		set_why(why, cap, "unknown critical option \"%s\"",
		    show(s, n, opt, sizeof(opt)));
		return TP_EDENIED;
	}
	if (c->principals_len == 0 || !principal_matches(c, p))
		return deny_principals(c, why, cap);
	if (p->now < c->valid_after) {
		set_why(why, cap, "not yet valid (valid after %" PRIu64
		    ", now %" PRIu64 ")", c->valid_after, p->now);
		return TP_EDENIED;
	}
	if (p->now >= c->valid_before) {
		set_why(why, cap, "expired (valid before %" PRIu64
		    ", now %" PRIu64 ")", c->valid_before, p->now);
		return TP_EDENIED;
	}
	return 0;
}

static int
policy_valid(const struct hostcert_policy *p)
{
	return p != NULL && (p->n_ca == 0 || (p->ca != NULL &&
	    p->ca_len != NULL)) && (p->n_names == 0 || p->names != NULL) &&
	    (p->n_patterns == 0 || p->patterns != NULL) &&
	    p->kex_key != NULL;
}

int
hostcert_verify(const uint8_t *cert, size_t len,
    const struct hostcert_policy *p, char *why, size_t why_cap)
{
	struct sshcert c;
	int rc;

	set_why(why, why_cap, "ok");
	if (cert == NULL || !policy_valid(p)) {
		set_why(why, why_cap, "invalid arguments");
		return TP_EINVAL;
	}
	if (len > HOSTCERT_MAX) {
		set_why(why, why_cap, "certificate too large (%zu bytes)", len);
		return TP_ETOOBIG;
	}
	if ((rc = sshcert_parse(cert, len, &c)) != 0) {
		set_why(why, why_cap, rc == TP_EUNSUPP ?
		    "unsupported certificate type" : "malformed certificate");
		return rc;
	}
	/*
	 * Nothing but the signature is believed before the signature is
	 * checked: a reason like "principal mismatch" on a forged certificate
	 * would send an operator after the wrong problem.
	 */
	if ((rc = check_signature(&c, p, why, why_cap)) != 0 ||
	    (rc = check_fields(&c, p, why, why_cap)) != 0)
		return rc;
	if ((rc = certified_key_matches(&c, p)) != 0) {
		set_why(why, why_cap, rc == TP_EDENIED ?
		    "certified key is not the key used in the key exchange" :
		    "certified key invalid or not supported");
		return rc;
	}
	return 0;
}

int
hostcert_from_line(const char *line, uint8_t **blob, size_t *len)
{
	return sshcert_from_line(line, HOSTCERT_MAX, blob, len);
}
