#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/error.h"
#include "common/sshbuf.h"
#include "common/sshpub.h"
#include "worker/hostcert.h"

#define CERT_TYPE_HOST		2	/* PROTOCOL.certkeys: SSH2_CERT_TYPE_HOST */
#define MAX_PRINCIPALS		256	/* as OpenSSH's SSHKEY_CERT_MAX_PRINCIPALS */
#define MAX_KEY_FIELDS		2
#define SHOW_LEN		96	/* untrusted text quoted in a reason */
#define PRINCIPAL_MAX		256	/* longer principals match no pattern */

/* The certificate types we accept and the plain key type each certifies. */
struct cert_type {
	const char	*name;
	const char	*base;
	int		 nfields;	/* public key strings/mpints after nonce */
};

static const struct cert_type cert_types[] = {
	{ "ssh-ed25519-cert-v01@openssh.com", "ssh-ed25519", 1 },
	{ "ecdsa-sha2-nistp256-cert-v01@openssh.com", "ecdsa-sha2-nistp256", 2 },
	{ "ecdsa-sha2-nistp384-cert-v01@openssh.com", "ecdsa-sha2-nistp384", 2 },
	{ "ecdsa-sha2-nistp521-cert-v01@openssh.com", "ecdsa-sha2-nistp521", 2 },
	{ "ssh-rsa-cert-v01@openssh.com", "ssh-rsa", 2 },
};

/* A parsed certificate: pointers into the caller's blob. */
struct cert {
	const struct cert_type	*ct;
	const uint8_t		*key[MAX_KEY_FIELDS];
	size_t			 key_len[MAX_KEY_FIELDS];
	uint32_t		 type;
	const uint8_t		*key_id, *principals, *crit, *sigkey, *sig;
	size_t			 key_id_len, principals_len, crit_len;
	size_t			 sigkey_len, sig_len;
	uint64_t		 valid_after, valid_before;
	size_t			 signed_len;	/* bytes covered by sig */
};

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

static const struct cert_type *
cert_type_lookup(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(cert_types) / sizeof(cert_types[0]); i++)
		if (n == strlen(cert_types[i].name) &&
		    memcmp(p, cert_types[i].name, n) == 0)
			return &cert_types[i];
	return NULL;
}

/*
 * Checks that p holds only back-to-back strings (principals), or name/data
 * string pairs (options and extensions) when pairs is set, with nothing
 * left over; returns how many strings, or -1.
 */
static int
count_packed(const uint8_t *p, size_t n, int pairs, int max)
{
	struct sshbuf_reader r;
	const uint8_t *s;
	size_t slen;
	int count = 0;

	sshbuf_reader_init(&r, p, n);
	while (r.len > 0) {
		if (count >= max || sshbuf_get_string(&r, &s, &slen) != 0)
			return -1;
		if (pairs && sshbuf_get_string(&r, &s, &slen) != 0)
			return -1;
		count++;
	}
	return count;
}

/* Type name, nonce and the certified public key fields. */
static int
cert_parse_head(struct sshbuf_reader *r, struct cert *c)
{
	const uint8_t *p;
	size_t n;
	int i;

	if (sshbuf_get_string(r, &p, &n) != 0)
		return TP_EPROTO;
	if ((c->ct = cert_type_lookup(p, n)) == NULL)
		return TP_EUNSUPP;
	if (sshbuf_get_string(r, &p, &n) != 0)		/* nonce */
		return TP_EPROTO;
	for (i = 0; i < c->ct->nfields; i++)
		if (sshbuf_get_string(r, &c->key[i], &c->key_len[i]) != 0)
			return TP_EPROTO;
	return 0;
}

/* Serial through the CA signature; nothing may follow it. */
static int
cert_parse_body(struct sshbuf_reader *r, struct cert *c, size_t total)
{
	const uint8_t *p;
	size_t n;
	uint64_t serial;

	if (sshbuf_get_u64(r, &serial) != 0 ||
	    sshbuf_get_u32(r, &c->type) != 0 ||
	    sshbuf_get_string(r, &c->key_id, &c->key_id_len) != 0 ||
	    sshbuf_get_string(r, &c->principals, &c->principals_len) != 0 ||
	    sshbuf_get_u64(r, &c->valid_after) != 0 ||
	    sshbuf_get_u64(r, &c->valid_before) != 0 ||
	    sshbuf_get_string(r, &c->crit, &c->crit_len) != 0 ||
	    sshbuf_get_string(r, &p, &n) != 0 ||		/* extensions */
	    count_packed(p, n, 1, INT32_MAX) < 0 ||
	    count_packed(c->crit, c->crit_len, 1, INT32_MAX) < 0 ||
	    count_packed(c->principals, c->principals_len, 0,
	    MAX_PRINCIPALS) < 0 ||
	    sshbuf_get_string(r, &p, &n) != 0 ||		/* reserved */
	    sshbuf_get_string(r, &c->sigkey, &c->sigkey_len) != 0)
		return TP_EPROTO;
	c->signed_len = total - r->len;
	if (sshbuf_get_string(r, &c->sig, &c->sig_len) != 0 || r->len != 0)
		return TP_EPROTO;
	return 0;
}

static int
cert_parse(const uint8_t *blob, size_t len, struct cert *c)
{
	struct sshbuf_reader r;
	int rc;

	memset(c, 0, sizeof(*c));
	sshbuf_reader_init(&r, blob, len);
	if ((rc = cert_parse_head(&r, c)) != 0)
		return rc;
	return cert_parse_body(&r, c, len);
}

static int
ca_trusted(const struct cert *c, const struct hostcert_policy *p)
{
	size_t i;

	for (i = 0; i < p->n_ca; i++)
		if (p->ca[i] != NULL && p->ca_len[i] == c->sigkey_len &&
		    memcmp(p->ca[i], c->sigkey, c->sigkey_len) == 0)
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
principal_matches(const struct cert *c, const struct hostcert_policy *p)
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
certified_key_matches(const struct cert *c, const struct hostcert_policy *p)
{
	struct sshbuf_writer w;
	EVP_PKEY *pkey = NULL;
	int i, rc;

	sshbuf_writer_init(&w, HOSTCERT_MAX);
	sshbuf_put_cstring(&w, c->ct->base);
	for (i = 0; i < c->ct->nfields; i++)
		sshbuf_put_string(&w, c->key[i], c->key_len[i]);
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
check_signature(const uint8_t *blob, const struct cert *c,
    const struct hostcert_policy *p, char *why, size_t cap)
{
	int rc;

	if (!ca_trusted(c, p)) {
		set_why(why, cap, "signed by an untrusted CA");
		return TP_EDENIED;
	}
	rc = sshpub_verify(c->sigkey, c->sigkey_len, c->sig, c->sig_len,
	    blob, c->signed_len);
	if (rc == TP_EUNSUPP)
		set_why(why, cap, "CA signature algorithm not supported");
	else if (rc != 0)
		set_why(why, cap, "bad CA signature");
	return rc;
}

/* Explains why the certificate's names do not fit. */
static int
deny_principals(const struct cert *c, char *why, size_t cap)
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
check_fields(const struct cert *c, const struct hostcert_policy *p,
    char *why, size_t cap)
{
	char opt[SHOW_LEN];
	struct sshbuf_reader r;
	const uint8_t *s = NULL;
	size_t n = 0;

	if (c->type != CERT_TYPE_HOST) {
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
	struct cert c;
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
	if ((rc = cert_parse(cert, len, &c)) != 0) {
		set_why(why, why_cap, rc == TP_EUNSUPP ?
		    "unsupported certificate type" : "malformed certificate");
		return rc;
	}
	/*
	 * Nothing but the signature is believed before the signature is
	 * checked: a reason like "principal mismatch" on a forged certificate
	 * would send an operator after the wrong problem.
	 */
	if ((rc = check_signature(cert, &c, p, why, why_cap)) != 0 ||
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
	struct sshbuf_reader r;
	const uint8_t *t;
	size_t tlen;
	int rc;

	if ((rc = sshpub_from_line(line, blob, len)) != 0)
		return rc;
	/* sshpub_from_line checked that the blob starts with a string. */
	sshbuf_reader_init(&r, *blob, *len);
	if (sshbuf_get_string(&r, &t, &tlen) != 0 ||
	    cert_type_lookup(t, tlen) == NULL)
		rc = TP_EUNSUPP;
	else if (*len > HOSTCERT_MAX)
		rc = TP_ETOOBIG;
	if (rc != 0) {
		free(*blob);
		*blob = NULL;
		*len = 0;
	}
	return rc;
}
