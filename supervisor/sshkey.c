#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "common/error.h"
#include "common/readfile.h"
#include "common/sshbuf.h"
#include "common/sshcert.h"
#include "common/sshpub.h"
#include "sshkey.h"

#define KEY_MAGIC	"openssh-key-v1"	/* followed by a NUL */
#define PEM_BEGIN	"-----BEGIN OPENSSH PRIVATE KEY-----"
#define PEM_END		"-----END OPENSSH PRIVATE KEY-----"
#define ED25519_LEN	32
#define NAME_MAX_LEN	64

/*
 * The types a node key may have.  Curves, groups and hashes are
 * common/sshpub's: it imports the public half and names each signature
 * algorithm's hash.
 */
struct keytype {
	enum sshkey_type	 type;
	const char		*name;		/* key type on the wire */
};

static const struct keytype keytypes[] = {
	{ SSHKEY_ED25519, "ssh-ed25519" },
	{ SSHKEY_ECDSA_P256, "ecdsa-sha2-nistp256" },
	{ SSHKEY_ECDSA_P384, "ecdsa-sha2-nistp384" },
	{ SSHKEY_ECDSA_P521, "ecdsa-sha2-nistp521" },
	{ SSHKEY_RSA, "ssh-rsa" },
};

struct sshkey {
	const struct keytype	*kt;
	EVP_PKEY		*pkey;
	uint8_t			*pub;
	size_t			 pub_len;
	uint8_t			*cert;		/* NULL when none */
	size_t			 cert_len;
	char			 cert_type[NAME_MAX_LEN + sizeof(SSHCERT_SUFFIX)];
	uint64_t		 cert_after;
	uint64_t		 cert_before;
	char			 fp[SSHPUB_FP_LEN];
	char			 comment[256];
};

/* Fills err with "name: reason" and returns rc, so callers can return it. */
static int __attribute__((format(printf, 5, 6)))
seterr(char *err, size_t errlen, const char *name, int rc, const char *fmt, ...)
{
	char msg[SSHKEY_ERR_LEN];
	va_list ap;

	if (err == NULL || errlen == 0)
		return rc;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s: %s", name != NULL ? name : "key", msg);
	return rc;
}

static const struct keytype *
keytype_by_name(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < sizeof(keytypes) / sizeof(keytypes[0]); i++)
		if (strlen(keytypes[i].name) == len &&
		    memcmp(keytypes[i].name, p, len) == 0)
			return &keytypes[i];
	return NULL;
}

/* ---- reading files ---- */

/*
 * Reads a whole small file into a NUL-terminated buffer of max bytes,
 * which the caller wipes (OPENSSL_clear_free(buf, max)).  A private key
 * must not be accessible by group or others -- like ssh(1), refuse a key
 * that others may already have copied.
 */
static int
read_file(const char *path, int private, size_t max, char **out, char *err,
    size_t errlen)
{
	struct tp_rf_result r;
	size_t len;
	int rc;

	/* At most max - 1 bytes: the secret's buffer is then max bytes. */
	rc = tp_read_file(path, max - 1, TP_RF_SECRET |
	    (private ? TP_RF_PRIVATE : 0), out, &len, &r);
	switch (r.fail) {
	case TP_RF_OK:
		return 0;
	case TP_RF_OPEN:
		return seterr(err, errlen, path, rc, "open: %s",
		    strerror(r.err));
	case TP_RF_STAT:
		return seterr(err, errlen, path, rc, "fstat: %s",
		    strerror(r.err));
	case TP_RF_NOTREG:
		return seterr(err, errlen, path, rc, "not a regular file");
	case TP_RF_MODE:
		return seterr(err, errlen, path, rc, "permissions %04o are too "
		    "open; a private key must not be accessible by others "
		    "(chmod 600)", r.mode);
	case TP_RF_SIZE:
	case TP_RF_GREW:
		return seterr(err, errlen, path, rc, "larger than %zu bytes",
		    max);
	case TP_RF_READ:
		return seterr(err, errlen, path, rc, "read: %s",
		    strerror(r.err));
	default:	/* TP_RF_NOMEM; no lease was asked for */
		return seterr(err, errlen, path, rc, "out of memory");
	}
}

/* ---- PEM armour ---- */

/* Says why text is not an OpenSSH private key, and how to fix it. */
static int
not_openssh(const char *text, const char *name, char *err, size_t errlen)
{
	if (strstr(text, "ENCRYPTED") != NULL)
		return seterr(err, errlen, name, TP_EUNSUPP, "encrypted "
		    "private keys are not supported; remove the passphrase "
		    "and restrict the file instead");
	if (strstr(text, "-----BEGIN ") != NULL)
		return seterr(err, errlen, name, TP_ESYNTAX, "not in OpenSSH "
		    "format; convert it with 'ssh-keygen -p -f FILE' "
		    "(rewrites it as OpenSSH)");
	return seterr(err, errlen, name, TP_ESYNTAX, "not an OpenSSH "
	    "private key (no '%s' line)", PEM_BEGIN);
}

/*
 * Decodes the base64 between b and e, skipping line breaks.  Strict: only
 * the alphabet, '=' only as final padding.  The copy without whitespace
 * holds key material and is wiped.
 */
static int
b64_decode(const char *b, const char *e, uint8_t **out, size_t *outlen)
{
	size_t cap = (size_t)(e - b) + 4, n = 0, pad = 0;
	char *clean;
	int rc = TP_ESYNTAX;

	if ((clean = malloc(cap)) == NULL)
		return TP_ENOMEM;
	for (; b < e; b++)
		if (strchr(" \t\r\n", *b) == NULL)
			clean[n++] = *b;
	while (pad < 2 && pad < n && clean[n - 1 - pad] == '=')
		pad++;
	if (n == 0 || n % 4 != 0 || strspn(clean, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789+/") < n - pad)
		goto out;
	rc = TP_ENOMEM;
	if ((*out = malloc(n / 4 * 3)) == NULL)
		goto out;
	EVP_DecodeBlock(*out, (const unsigned char *)clean, (int)n);
	*outlen = n / 4 * 3 - pad;
	rc = 0;
out:
	OPENSSL_clear_free(clean, cap);
	return rc;
}

/*
 * Strips the OpenSSH armour and decodes the body into *blob (malloc'd;
 * wipe before freeing).
 */
static int
pem_decode(const char *text, size_t len, const char *name, uint8_t **blob,
    size_t *bloblen, char *err, size_t errlen)
{
	const char *b, *e;
	int rc;

	if (memchr(text, '\0', len) != NULL)
		return seterr(err, errlen, name, TP_ESYNTAX, "binary data; "
		    "not an OpenSSH private key");
	if ((b = strstr(text, PEM_BEGIN)) == NULL)
		return not_openssh(text, name, err, errlen);
	b += strlen(PEM_BEGIN);
	if ((e = strstr(b, PEM_END)) == NULL)
		return seterr(err, errlen, name, TP_ESYNTAX, "no '%s' line",
		    PEM_END);
	if ((size_t)(e - b) > SSHKEY_FILE_MAX * 2)
		return seterr(err, errlen, name, TP_ETOOBIG, "key too large");
	if ((rc = b64_decode(b, e, blob, bloblen)) != 0)
		return seterr(err, errlen, name, rc, "bad base64");
	return 0;
}

/* ---- SSH wire helpers ---- */

/* Reads a non-negative mpint into a (secure, wiped on free) BIGNUM. */
static int
get_bignum(struct sshbuf_reader *r, BIGNUM **bn)
{
	const uint8_t *p;
	size_t len;
	int rc;

	if ((rc = sshbuf_get_string(r, &p, &len)) != 0)
		return rc;
	if (len > SSHPUB_RSA_MAX_BITS / 8 + 1 ||
	    (len > 0 && (p[0] & 0x80) != 0))
		return TP_EPROTO;
	if ((*bn = BN_secure_new()) == NULL)
		return TP_ENOMEM;
	if (BN_bin2bn(p, (int)len, *bn) == NULL) {
		BN_clear_free(*bn);
		*bn = NULL;
		return TP_ENOMEM;
	}
	return 0;
}

/* Writes big-endian magnitude bytes as an SSH mpint (RFC 4251 section 5). */
static void
put_mpint_bytes(struct sshbuf_writer *w, const uint8_t *p, size_t len)
{
	while (len > 0 && p[0] == 0) {
		p++;
		len--;
	}
	if (len > 0 && (p[0] & 0x80) != 0) {
		sshbuf_put_u32(w, (uint32_t)len + 1);
		sshbuf_put_u8(w, 0);
		sshbuf_put_bytes(w, p, len);
	} else
		sshbuf_put_string(w, p, len);
}

static void
put_bignum(struct sshbuf_writer *w, const BIGNUM *bn)
{
	uint8_t buf[SSHPUB_RSA_MAX_BITS / 8 + 1];
	int n = BN_num_bytes(bn);

	if (n < 0 || (size_t)n > sizeof(buf)) {
		if (w->err == 0)
			w->err = TP_ETOOBIG;
		return;
	}
	BN_bn2bin(bn, buf);
	put_mpint_bytes(w, buf, (size_t)n);
	OPENSSL_cleanse(buf, sizeof(buf));
}

/* Copies a finished writer's contents into a right-sized malloc'd blob. */
static int
writer_take(struct sshbuf_writer *w, uint8_t **out, size_t *outlen)
{
	int rc;

	if ((rc = sshbuf_writer_error(w)) != 0)
		return rc;
	if ((*out = malloc(w->len ? w->len : 1)) == NULL)
		return TP_ENOMEM;
	if (w->len > 0)
		memcpy(*out, w->p, w->len);
	*outlen = w->len;
	return 0;
}

/* ---- key material to EVP_PKEY ---- */

/*
 * The public half of the node's key is imported like any peer's key, by
 * common/sshpub, from the public key blob written from the private part:
 * one import, and one set of checks (point on the curve, RSA size and
 * exponent, canonical encoding), for both.  Only the private numbers are
 * added here.  Returns 0 or sshpub_parse's codes.
 */
static int
public_half(const struct sshbuf_writer *pub, EVP_PKEY **pkey)
{
	int rc;

	if ((rc = sshbuf_writer_error(pub)) != 0)
		return rc;
	return sshpub_parse(pub->p, pub->len, pkey, NULL, 0);
}

/*
 * The key pair: the public key's own parameters plus the private ones in
 * bld.  0 or TP_ECRYPTO.
 */
static int
add_private(EVP_PKEY *pub, OSSL_PARAM_BLD *bld, EVP_PKEY **pair)
{
	OSSL_PARAM *pubp = NULL, *privp = NULL, *all = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	int rc = TP_ECRYPTO;

	if (EVP_PKEY_todata(pub, EVP_PKEY_PUBLIC_KEY, &pubp) != 1 ||
	    (privp = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (all = OSSL_PARAM_merge(pubp, privp)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL,
	    EVP_PKEY_get0_type_name(pub), NULL)) == NULL)
		goto out;
	if (EVP_PKEY_fromdata_init(ctx) == 1 &&
	    EVP_PKEY_fromdata(ctx, pair, EVP_PKEY_KEYPAIR, all) == 1)
		rc = 0;
out:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(all);		/* the array only: the data is theirs */
	/* Private BIGNUMs were secure, so their block is wiped here. */
	OSSL_PARAM_free(privp);
	OSSL_PARAM_free(pubp);
	return rc;
}

/*
 * ssh-ed25519 private part: string pk(32), string sk(64) where sk is the
 * 32-byte seed followed by pk.  The seed alone makes the OpenSSL key; the
 * public key it derives must equal pk.
 */
static int
parse_ed25519(struct sshbuf_reader *r, EVP_PKEY **pkey,
    struct sshbuf_writer *pub)
{
	const uint8_t *pk, *sk;
	EVP_PKEY *pubkey = NULL;
	size_t pklen, sklen;
	int rc;

	if (sshbuf_get_string(r, &pk, &pklen) != 0 ||
	    sshbuf_get_string(r, &sk, &sklen) != 0)
		return TP_ETRUNC;
	if (pklen != ED25519_LEN || sklen != 2 * ED25519_LEN ||
	    memcmp(sk + ED25519_LEN, pk, ED25519_LEN) != 0)
		return TP_EPROTO;
	sshbuf_put_cstring(pub, "ssh-ed25519");
	sshbuf_put_string(pub, pk, pklen);
	if ((rc = public_half(pub, &pubkey)) != 0)
		return rc;
	*pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, sk,
	    ED25519_LEN);
	if (*pkey == NULL || EVP_PKEY_eq(*pkey, pubkey) != 1)
		rc = TP_ECRYPTO;
	EVP_PKEY_free(pubkey);
	return rc;
}

/* ECDSA private part: string curve, string Q (uncompressed point), mpint d. */
static int
parse_ecdsa(const struct keytype *kt, struct sshbuf_reader *r,
    EVP_PKEY **pkey, struct sshbuf_writer *pub)
{
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pubkey = NULL;
	const uint8_t *curve, *q;
	size_t clen, qlen;
	BIGNUM *d = NULL;
	int rc;

	if ((rc = sshbuf_get_string(r, &curve, &clen)) != 0 ||
	    (rc = sshbuf_get_string(r, &q, &qlen)) != 0 ||
	    (rc = get_bignum(r, &d)) != 0)
		return rc == TP_ETRUNC ? rc : TP_EPROTO;
	/* sshpub checks the curve name, the point's form and the point. */
	sshbuf_put_cstring(pub, kt->name);
	sshbuf_put_string(pub, curve, clen);
	sshbuf_put_string(pub, q, qlen);
	if ((rc = public_half(pub, &pubkey)) != 0)
		goto out;
	rc = TP_ENOMEM;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d))
		goto out;
	rc = add_private(pubkey, bld, pkey);
out:
	EVP_PKEY_free(pubkey);
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(d);
	return rc;
}

/*
 * The CRT exponents are not stored in OpenSSH files; OpenSSL wants them:
 * dmp1 = d mod (p-1), dmq1 = d mod (q-1).
 */
static int
rsa_crt(const BIGNUM *d, const BIGNUM *p, const BIGNUM *q, BIGNUM **dmp1,
    BIGNUM **dmq1)
{
	BN_CTX *ctx = BN_CTX_secure_new();
	BIGNUM *t = BN_secure_new();
	int ok;

	*dmp1 = BN_secure_new();
	*dmq1 = BN_secure_new();
	ok = ctx != NULL && t != NULL && *dmp1 != NULL && *dmq1 != NULL &&
	    BN_sub(t, p, BN_value_one()) &&
	    BN_mod(*dmp1, d, t, ctx) &&
	    BN_sub(t, q, BN_value_one()) &&
	    BN_mod(*dmq1, d, t, ctx);
	BN_clear_free(t);
	BN_CTX_free(ctx);
	return ok ? 0 : TP_ECRYPTO;
}

/* Indexes of the RSA numbers, in the order of the OpenSSH private part. */
enum { RSA_N, RSA_E, RSA_D, RSA_IQMP, RSA_P, RSA_Q, RSA_NUMS };

/* Adds d, the factors and the CRT numbers to the public key (n, e). */
static int
rsa_private(EVP_PKEY *pub, BIGNUM *const bn[RSA_NUMS], EVP_PKEY **pkey)
{
	OSSL_PARAM_BLD *bld = NULL;
	BIGNUM *dmp1 = NULL, *dmq1 = NULL;
	int rc;

	if ((rc = rsa_crt(bn[RSA_D], bn[RSA_P], bn[RSA_Q], &dmp1,
	    &dmq1)) != 0)
		goto out;
	rc = TP_ENOMEM;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, bn[RSA_D]) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1,
	    bn[RSA_P]) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2,
	    bn[RSA_Q]) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dmp1) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dmq1) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	    bn[RSA_IQMP]))
		goto out;
	rc = add_private(pub, bld, pkey);
out:
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(dmp1);
	BN_clear_free(dmq1);
	return rc;
}

/* ssh-rsa private part: mpint n, e, d, iqmp, p, q. */
static int
parse_rsa(struct sshbuf_reader *r, EVP_PKEY **pkey, struct sshbuf_writer *pub)
{
	BIGNUM *bn[RSA_NUMS] = { NULL };
	EVP_PKEY *pubkey = NULL;
	int rc = 0, bits;

	for (size_t i = 0; i < RSA_NUMS && rc == 0; i++)
		rc = get_bignum(r, &bn[i]);
	if (rc != 0)
		goto out;
	bits = BN_num_bits(bn[RSA_N]);
	if (bits < SSHPUB_RSA_MIN_BITS || bits > SSHPUB_RSA_MAX_BITS) {
		rc = TP_EUNSUPP;
		goto out;
	}
	/* The public blob has e before n. */
	sshbuf_put_cstring(pub, "ssh-rsa");
	put_bignum(pub, bn[RSA_E]);
	put_bignum(pub, bn[RSA_N]);
	if ((rc = public_half(pub, &pubkey)) == 0)
		rc = rsa_private(pubkey, bn, pkey);
out:
	EVP_PKEY_free(pubkey);
	for (size_t i = 0; i < RSA_NUMS; i++)
		BN_clear_free(bn[i]);
	return rc;
}

/* ---- openssh-key-v1 container ---- */

/*
 * The outer structure: magic, cipher, kdf, kdf options, key count, public
 * key blobs, private section.  Only one key, neither cipher nor kdf.
 */
static int
parse_container(struct sshbuf_reader *r, const uint8_t **pub, size_t *publen,
    const uint8_t **priv, size_t *privlen, const char *name, char *err,
    size_t errlen)
{
	const uint8_t *magic, *opts;
	size_t optslen;
	uint32_t nkeys;

	if (sshbuf_get_bytes(r, &magic, sizeof(KEY_MAGIC)) != 0 ||
	    memcmp(magic, KEY_MAGIC, sizeof(KEY_MAGIC)) != 0)
		return seterr(err, errlen, name, TP_ESYNTAX, "bad magic; not "
		    "an openssh-key-v1 private key");
	if (sshbuf_expect_cstring(r, "none") != 0)
		return seterr(err, errlen, name, TP_EUNSUPP, "encrypted "
		    "private keys are not supported; remove the passphrase "
		    "with 'ssh-keygen -p -N \"\" -f FILE' and restrict the "
		    "file instead (the key never leaves the supervisor)");
	if (sshbuf_expect_cstring(r, "none") != 0 ||
	    sshbuf_get_string(r, &opts, &optslen) != 0 || optslen != 0)
		return seterr(err, errlen, name, TP_EUNSUPP, "key derivation "
		    "without a cipher is not supported");
	if (sshbuf_get_u32(r, &nkeys) != 0)
		return seterr(err, errlen, name, TP_ETRUNC, "truncated");
	if (nkeys != 1)
		return seterr(err, errlen, name, TP_EUNSUPP, "holds %u keys; "
		    "exactly one is supported", nkeys);
	if (sshbuf_get_string(r, pub, publen) != 0 ||
	    sshbuf_get_string(r, priv, privlen) != 0)
		return seterr(err, errlen, name, TP_ETRUNC, "truncated");
	if (r->len != 0)
		return seterr(err, errlen, name, TP_EPROTO, "trailing data");
	return 0;
}

/* Deterministic padding 1, 2, 3, ... up to the 8-byte cipher block. */
static int
check_padding(const struct sshbuf_reader *r)
{
	if (r->len >= 8)
		return TP_EPROTO;
	for (size_t i = 0; i < r->len; i++)
		if (r->p[i] != (uint8_t)(i + 1))
			return TP_EPROTO;
	return 0;
}

/*
 * The comment is only shown to people (identity answers, logs): keep it
 * printable and short rather than refuse an odd one.
 */
static int
get_comment(struct sshbuf_reader *r, char *buf, size_t cap)
{
	const uint8_t *p;
	size_t len, i;

	if (sshbuf_get_string(r, &p, &len) != 0)
		return TP_ETRUNC;
	for (i = 0; i < len && i + 1 < cap; i++)
		buf[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
	buf[i] = '\0';
	return 0;
}

/* Dispatches on the key type named at the start of the private part. */
static int
parse_private_key(struct sshkey *k, struct sshbuf_reader *r,
    struct sshbuf_writer *pub, const char *name, char *err, size_t errlen)
{
	const uint8_t *tname;
	size_t tlen;
	int rc;

	if (sshbuf_get_string(r, &tname, &tlen) != 0)
		return seterr(err, errlen, name, TP_ETRUNC, "truncated");
	if ((k->kt = keytype_by_name(tname, tlen)) == NULL)
		return seterr(err, errlen, name, TP_EUNSUPP, "unsupported key "
		    "type \"%.*s\"", (int)(tlen < 40 ? tlen : 40), tname);
	switch (k->kt->type) {
	case SSHKEY_ED25519:
		rc = parse_ed25519(r, &k->pkey, pub);
		break;
	case SSHKEY_RSA:
		rc = parse_rsa(r, &k->pkey, pub);
		if (rc == TP_EUNSUPP)
			return seterr(err, errlen, name, rc, "RSA keys must "
			    "have %d to %d bits", SSHPUB_RSA_MIN_BITS,
			    SSHPUB_RSA_MAX_BITS);
		break;
	default:
		rc = parse_ecdsa(k->kt, r, &k->pkey, pub);
		break;
	}
	if (rc != 0)
		return seterr(err, errlen, name, rc, "bad %s private key: %s",
		    k->kt->name, tp_strerror(rc));
	return 0;
}

/*
 * The private section: two equal check words (they differ when a wrong
 * passphrase decrypted it), the key, its comment, and padding.  The public
 * key rebuilt from the private part must equal the outer public blob.
 */
static int
parse_private(struct sshkey *k, const uint8_t *outer, size_t outerlen,
    const uint8_t *priv, size_t privlen, const char *name, char *err,
    size_t errlen)
{
	struct sshbuf_reader r;
	struct sshbuf_writer pub;
	uint32_t c1, c2;
	int rc;

	sshbuf_reader_init(&r, priv, privlen);
	sshbuf_writer_init(&pub, 0);
	if (privlen % 8 != 0 || sshbuf_get_u32(&r, &c1) != 0 ||
	    sshbuf_get_u32(&r, &c2) != 0 || c1 != c2) {
		rc = seterr(err, errlen, name, TP_EPROTO, "bad private "
		    "section (check words differ)");
		goto out;
	}
	if ((rc = parse_private_key(k, &r, &pub, name, err, errlen)) != 0)
		goto out;
	if (get_comment(&r, k->comment, sizeof(k->comment)) != 0 ||
	    check_padding(&r) != 0) {
		rc = seterr(err, errlen, name, TP_EPROTO, "bad comment or "
		    "padding");
		goto out;
	}
	if ((rc = writer_take(&pub, &k->pub, &k->pub_len)) != 0)
		goto out;
	if (k->pub_len != outerlen || memcmp(k->pub, outer, outerlen) != 0)
		rc = seterr(err, errlen, name, TP_ECRYPTO, "public key does "
		    "not match the private key");
out:
	sshbuf_writer_free(&pub);
	return rc;
}

/*
 * Signs a fixed message and checks it with the public blob, through the
 * same code the peers use: a key that loads is a key that works.
 */
static int
self_test(const struct sshkey *k)
{
	static const uint8_t msg[] = "tunnelpool key self-test";
	uint32_t flags = k->kt->type == SSHKEY_RSA ? SSH_AGENT_RSA_SHA2_256 : 0;
	uint8_t *sig = NULL;
	size_t siglen = 0;
	int rc;

	if ((rc = sshkey_sign(k, msg, sizeof(msg), flags, &sig, &siglen)) != 0)
		return rc;
	rc = sshpub_verify(k->pub, k->pub_len, sig, siglen, msg, sizeof(msg));
	free(sig);
	return rc;
}

/* Decodes the key blob once the armour is off; fills k or err. */
static int
parse_blob(struct sshkey *k, const uint8_t *blob, size_t len,
    const char *name, char *err, size_t errlen)
{
	struct sshbuf_reader r;
	const uint8_t *pub, *priv;
	size_t publen, privlen;
	int rc;

	sshbuf_reader_init(&r, blob, len);
	if ((rc = parse_container(&r, &pub, &publen, &priv, &privlen, name,
	    err, errlen)) != 0)
		return rc;
	if ((rc = parse_private(k, pub, publen, priv, privlen, name, err,
	    errlen)) != 0)
		return rc;
	if ((rc = sshpub_fingerprint(k->pub, k->pub_len, k->fp,
	    sizeof(k->fp))) != 0)
		return seterr(err, errlen, name, rc, "fingerprint: %s",
		    tp_strerror(rc));
	if ((rc = self_test(k)) != 0)
		return seterr(err, errlen, name, TP_ECRYPTO, "signature "
		    "self-test failed (%s)", tp_strerror(rc));
	return 0;
}

int
sshkey_parse(const char *text, size_t len, const char *name,
    struct sshkey **key, char *err, size_t errlen)
{
	struct sshkey *k;
	uint8_t *blob = NULL;
	size_t bloblen = 0;
	int rc;

	*key = NULL;
	if ((rc = pem_decode(text, len, name, &blob, &bloblen, err,
	    errlen)) != 0)
		return rc;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		rc = seterr(err, errlen, name, TP_ENOMEM, "out of memory");
	else
		rc = parse_blob(k, blob, bloblen, name, err, errlen);
	OPENSSL_clear_free(blob, bloblen);
	if (rc != 0) {
		sshkey_free(k);
		return rc;
	}
	*key = k;
	return 0;
}

int
sshkey_load(const char *path, struct sshkey **key, char *err, size_t errlen)
{
	char *text;
	int rc;

	*key = NULL;
	if ((rc = read_file(path, 1, SSHKEY_FILE_MAX, &text, err,
	    errlen)) != 0)
		return rc;
	rc = sshkey_parse(text, strlen(text), path, key, err, errlen);
	OPENSSL_clear_free(text, SSHKEY_FILE_MAX);
	return rc;
}

/* ---- certificates ---- */

/*
 * Checks a certificate blob against the key, after common/sshcert has
 * parsed it: a certificate of the key's type, well formed, certifying
 * exactly this key's public key, a user certificate, and the CA's
 * signature over it valid.
 */
static int
cert_check(const struct sshkey *k, const uint8_t *cert, size_t len,
    struct sshcert *c, const char *name, char *err, size_t errlen)
{
	struct sshbuf_writer w;
	int rc, parsed;

	parsed = sshcert_parse(cert, len, c);
	if (c->key_type == NULL || strcmp(c->key_type, k->kt->name) != 0)
		return seterr(err, errlen, name, TP_EINVAL, "not a %s%s "
		    "certificate", k->kt->name, SSHCERT_SUFFIX);
	if (parsed != 0)
		return seterr(err, errlen, name, TP_EPROTO, "malformed "
		    "certificate");
	sshbuf_writer_init(&w, 0);
	sshcert_put_key(c, &w);
	if ((rc = sshbuf_writer_error(&w)) != 0)
		rc = seterr(err, errlen, name, rc, "%s", tp_strerror(rc));
	else if (w.len != k->pub_len || memcmp(w.p, k->pub, w.len) != 0)
		rc = seterr(err, errlen, name, TP_EINVAL, "certificate is "
		    "for another key (private key is %s)", k->fp);
	sshbuf_writer_free(&w);
	if (rc != 0)
		return rc;
	if (c->type != SSHCERT_TYPE_USER)
		return seterr(err, errlen, name, TP_EINVAL, "not a user "
		    "certificate");
	if ((rc = sshcert_verify(c)) != 0)
		return seterr(err, errlen, name, rc, "CA signature does not "
		    "verify (%s)", tp_strerror(rc));
	return 0;
}

int
sshkey_parse_cert(struct sshkey *key, const char *line, const char *name,
    char *err, size_t errlen)
{
	struct sshcert c;
	uint8_t *blob = NULL;
	size_t len = 0;
	int rc;

	free(key->cert);
	key->cert = NULL;
	key->cert_len = 0;
	if ((rc = sshpub_from_line(line, &blob, &len)) != 0)
		return seterr(err, errlen, name, rc, "not an OpenSSH "
		    "certificate line (\"TYPE-cert-v01@openssh.com BASE64\")");
	if ((rc = cert_check(key, blob, len, &c, name, err, errlen)) != 0) {
		free(blob);
		return rc;
	}
	if (c.valid_before <= (uint64_t)time(NULL)) {
		free(blob);
		return seterr(err, errlen, name, TP_EINVAL, "certificate "
		    "has expired");
	}
	snprintf(key->cert_type, sizeof(key->cert_type), "%s", c.name);
	key->cert = blob;
	key->cert_len = len;
	key->cert_after = c.valid_after;
	key->cert_before = c.valid_before;
	return 0;
}

int
sshkey_load_cert(struct sshkey *key, const char *path, char *err,
    size_t errlen)
{
	char *text, *line;
	int rc;

	if ((rc = read_file(path, 0, SSHKEY_CERT_MAX, &text, err,
	    errlen)) != 0)
		return rc;
	/* The first line that is neither blank nor a comment. */
	line = text + strspn(text, " \t\r\n");
	while (*line == '#') {
		line += strcspn(line, "\n");
		line += strspn(line, " \t\r\n");
	}
	rc = sshkey_parse_cert(key, line, path, err, errlen);
	free(text);
	return rc;
}

/* ---- accessors ---- */

void
sshkey_free(struct sshkey *key)
{
	if (key == NULL)
		return;
	/* OpenSSL wipes the private key material it owns on free. */
	EVP_PKEY_free(key->pkey);
	free(key->pub);
	free(key->cert);
	OPENSSL_cleanse(key, sizeof(*key));
	free(key);
}

enum sshkey_type
sshkey_type(const struct sshkey *key)
{
	return key->kt->type;
}

const char *
sshkey_type_name(const struct sshkey *key)
{
	return key->kt->name;
}

const uint8_t *
sshkey_pub_blob(const struct sshkey *key, size_t *len)
{
	if (len != NULL)
		*len = key->pub_len;
	return key->pub;
}

const uint8_t *
sshkey_cert_blob(const struct sshkey *key, size_t *len)
{
	if (len != NULL)
		*len = key->cert_len;
	return key->cert;
}

const char *
sshkey_cert_type_name(const struct sshkey *key)
{
	return key->cert != NULL ? key->cert_type : NULL;
}

int
sshkey_cert_validity(const struct sshkey *key, uint64_t *after,
    uint64_t *before)
{
	if (key->cert == NULL)
		return TP_ENOENT;
	*after = key->cert_after;
	*before = key->cert_before;
	return 0;
}

const char *
sshkey_fingerprint(const struct sshkey *key)
{
	return key->fp;
}

const char *
sshkey_comment(const struct sshkey *key)
{
	return key->comment;
}

/* ---- signing ---- */

const char *
sshkey_sig_alg(const struct sshkey *key, uint32_t flags)
{
	if (key->kt->type != SSHKEY_RSA)
		return flags == 0 ? key->kt->name : NULL;
	/* One hash, named explicitly: SHA-1 "ssh-rsa" is never produced. */
	if (flags == SSH_AGENT_RSA_SHA2_256)
		return "rsa-sha2-256";
	if (flags == SSH_AGENT_RSA_SHA2_512)
		return "rsa-sha2-512";
	return NULL;
}

/* One-shot EVP signature; md is NULL for Ed25519. */
static int
sign_raw(EVP_PKEY *pkey, const EVP_MD *md, const uint8_t *data, size_t len,
    uint8_t **out, size_t *outlen)
{
	EVP_MD_CTX *ctx;
	size_t n = 0;
	int rc = TP_ECRYPTO;

	*out = NULL;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return TP_ENOMEM;
	if (EVP_DigestSignInit(ctx, NULL, md, NULL, pkey) != 1 ||
	    EVP_DigestSign(ctx, NULL, &n, data, len) != 1)
		goto out;
	if ((*out = malloc(n)) == NULL) {
		rc = TP_ENOMEM;
		goto out;
	}
	if (EVP_DigestSign(ctx, *out, &n, data, len) != 1) {
		free(*out);
		*out = NULL;
		goto out;
	}
	*outlen = n;
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* Turns OpenSSL's DER ECDSA-Sig-Value into SSH's (mpint r, mpint s). */
static int
ecdsa_der_to_ssh(const uint8_t *der, size_t len, struct sshbuf_writer *w)
{
	const unsigned char *p = der;
	ECDSA_SIG *es;
	struct sshbuf_writer inner;
	int rc;

	if ((es = d2i_ECDSA_SIG(NULL, &p, (long)len)) == NULL)
		return TP_ECRYPTO;
	sshbuf_writer_init(&inner, 0);
	put_bignum(&inner, ECDSA_SIG_get0_r(es));
	put_bignum(&inner, ECDSA_SIG_get0_s(es));
	if ((rc = sshbuf_writer_error(&inner)) == 0)
		sshbuf_put_string(w, inner.p, inner.len);
	sshbuf_writer_free(&inner);
	ECDSA_SIG_free(es);
	return rc;
}

int
sshkey_sign(const struct sshkey *key, const uint8_t *data, size_t len,
    uint32_t flags, uint8_t **sig, size_t *siglen)
{
	struct sshbuf_writer w;
	const EVP_MD *md;
	const char *alg;
	uint8_t *raw = NULL;
	size_t rawlen = 0;
	int rc;

	*sig = NULL;
	*siglen = 0;
	if ((alg = sshkey_sig_alg(key, flags)) == NULL)
		return TP_EUNSUPP;
	if ((rc = sshpub_sig_md(alg, &md)) != 0 ||
	    (rc = sign_raw(key->pkey, md, data, len, &raw, &rawlen)) != 0)
		return rc;
	sshbuf_writer_init(&w, 0);
	sshbuf_put_cstring(&w, alg);
	if (key->kt->type != SSHKEY_ED25519 && key->kt->type != SSHKEY_RSA)
		rc = ecdsa_der_to_ssh(raw, rawlen, &w);
	else
		sshbuf_put_string(&w, raw, rawlen);
	if (rc == 0)
		rc = writer_take(&w, sig, siglen);
	sshbuf_writer_free(&w);
	free(raw);
	return rc;
}
