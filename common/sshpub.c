#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "error.h"
#include "sshbuf.h"
#include "sshpub.h"

/*
 * Limits on what we accept from the wire.  RSA moduli are bounded like
 * OpenSSH does (16384 bits) so a hostile blob cannot make us spend seconds in
 * a verify; exponents beyond 64 bits appear in no real key and would only
 * make verification slower.
 */
#define RSA_MAX_BYTES		(SSHPUB_RSA_MAX_BITS / 8)
#define RSA_MAX_E_BYTES		8
#define ED25519_PK_LEN		32
#define ED25519_SIG_LEN		64
#define TYPE_NAME_MAX		64
#define B64_MAX			(1024 * 1024)

enum pub_kind {
	PUB_ED25519 = 1,
	PUB_ECDSA,
	PUB_RSA,
};

struct ec_curve {
	const char	*type;		/* key type and signature algorithm */
	const char	*curve;		/* identifier inside the blob */
	const char	*group;		/* OpenSSL group name */
	size_t		 field_len;	/* bytes per coordinate */
};

static const struct ec_curve ec_curves[] = {
	{ "ecdsa-sha2-nistp256", "nistp256", "prime256v1", 32 },
	{ "ecdsa-sha2-nistp384", "nistp384", "secp384r1", 48 },
	{ "ecdsa-sha2-nistp521", "nistp521", "secp521r1", 66 },
};

/*
 * The signature algorithms we verify (and the supervisor makes), the kind
 * of key each needs and its hash: RFC 8709 (Ed25519, no separate hash),
 * RFC 5656 section 6.2.1 (ECDSA), RFC 8332 (RSA; SHA-1 "ssh-rsa" is not
 * here, so it is refused).
 */
struct sig_alg {
	const char	*name;
	enum pub_kind	 kind;
	const EVP_MD	*(*md)(void);	/* NULL: Ed25519 */
};

static const struct sig_alg sig_algs[] = {
	{ "ssh-ed25519", PUB_ED25519, NULL },
	{ "ecdsa-sha2-nistp256", PUB_ECDSA, EVP_sha256 },
	{ "ecdsa-sha2-nistp384", PUB_ECDSA, EVP_sha384 },
	{ "ecdsa-sha2-nistp521", PUB_ECDSA, EVP_sha512 },
	{ "rsa-sha2-256", PUB_RSA, EVP_sha256 },
	{ "rsa-sha2-512", PUB_RSA, EVP_sha512 },
};

/* A parsed public key: what sshpub_verify needs to pick an algorithm. */
struct pubkey {
	EVP_PKEY		*pkey;
	enum pub_kind		 kind;
	const struct ec_curve	*ec;	/* PUB_ECDSA only */
	const char		*type;
};

static int
str_eq(const uint8_t *p, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(p, s, n) == 0;
}

/*
 * Reads an mpint that must be non-negative and minimally encoded (as
 * OpenSSH requires), and returns its magnitude without the sign byte.
 * Refusing alternative encodings keeps one key to one blob, which the
 * host-certificate check relies on when it compares blobs.
 */
static int
get_mpint(struct sshbuf_reader *r, const uint8_t **p, size_t *n, size_t max)
{
	const uint8_t *d;
	size_t len;
	int rc;

	if ((rc = sshbuf_get_string(r, &d, &len)) != 0)
		return TP_EPROTO;
	if (len > 0 && (d[0] & 0x80) != 0)
		return TP_EPROTO;		/* negative */
	if (len > 0 && d[0] == 0) {
		if (len == 1 || (d[1] & 0x80) == 0)
			return TP_EPROTO;	/* needless leading zero */
		d++;
		len--;
	}
	if (len > max)
		return TP_EPROTO;
	*p = d;
	*n = len;
	return 0;
}

static const struct ec_curve *
ec_curve_by_type(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(ec_curves) / sizeof(ec_curves[0]); i++)
		if (str_eq(p, n, ec_curves[i].type))
			return &ec_curves[i];
	return NULL;
}

static const struct sig_alg *
sig_alg_by_name(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(sig_algs) / sizeof(sig_algs[0]); i++)
		if (str_eq(p, n, sig_algs[i].name))
			return &sig_algs[i];
	return NULL;
}

int
sshpub_sig_md(const char *alg, const EVP_MD **md)
{
	const struct sig_alg *sa;

	if (alg == NULL || md == NULL)
		return TP_EINVAL;
	if ((sa = sig_alg_by_name((const uint8_t *)alg, strlen(alg))) == NULL)
		return TP_EUNSUPP;
	*md = sa->md != NULL ? sa->md() : NULL;
	return 0;
}

static int
parse_ed25519(struct sshbuf_reader *r, EVP_PKEY **pkey)
{
	const uint8_t *pk;
	size_t n;

	if (sshbuf_get_string(r, &pk, &n) != 0 || n != ED25519_PK_LEN)
		return TP_EPROTO;
	*pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pk, n);
	return *pkey != NULL ? 0 : TP_ECRYPTO;
}

/* Builds a public EVP_PKEY of algorithm alg from params; 0 or TP_ECRYPTO. */
static int
pkey_fromdata(const char *alg, OSSL_PARAM *params, EVP_PKEY **pkey)
{
	EVP_PKEY_CTX *ctx;
	int rc = TP_ECRYPTO;

	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, alg, NULL)) == NULL)
		return TP_ECRYPTO;
	if (EVP_PKEY_fromdata_init(ctx) == 1 &&
	    EVP_PKEY_fromdata(ctx, pkey, EVP_PKEY_PUBLIC_KEY, params) == 1)
		rc = 0;
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

/*
 * Full public-key validation (point on the curve, not the identity, right
 * order): fromdata alone does not promise all of it.
 */
static int
ec_check_public(EVP_PKEY *pkey)
{
	EVP_PKEY_CTX *ctx;
	int ok;

	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL)
		return TP_ECRYPTO;
	ok = EVP_PKEY_public_check(ctx);
	EVP_PKEY_CTX_free(ctx);
	return ok == 1 ? 0 : TP_ECRYPTO;
}

static int
parse_ecdsa(struct sshbuf_reader *r, const struct ec_curve *c, EVP_PKEY **pkey)
{
	OSSL_PARAM params[3];
	const uint8_t *curve, *q;
	size_t clen, qlen;
	int rc;

	if (sshbuf_get_string(r, &curve, &clen) != 0 ||
	    sshbuf_get_string(r, &q, &qlen) != 0)
		return TP_EPROTO;
	if (!str_eq(curve, clen, c->curve))
		return TP_EPROTO;
	/* Uncompressed points only: that is all OpenSSH ever sends. */
	if (qlen != 1 + 2 * c->field_len || q[0] != 0x04)
		return TP_EPROTO;
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, (char *)c->group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(
	    OSSL_PKEY_PARAM_PUB_KEY, (void *)q, qlen);
	params[2] = OSSL_PARAM_construct_end();
	if ((rc = pkey_fromdata("EC", params, pkey)) != 0)
		return rc;
	if ((rc = ec_check_public(*pkey)) != 0) {
		EVP_PKEY_free(*pkey);
		*pkey = NULL;
	}
	return rc;
}

static int
rsa_fromdata(const uint8_t *e, size_t elen, const uint8_t *n, size_t nlen,
    EVP_PKEY **pkey)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	BIGNUM *bn_e = NULL, *bn_n = NULL;
	int rc = TP_ECRYPTO;

	if ((bn_e = BN_bin2bn(e, (int)elen, NULL)) == NULL ||
	    (bn_n = BN_bin2bn(n, (int)nlen, NULL)) == NULL ||
	    (bld = OSSL_PARAM_BLD_new()) == NULL)
		goto out;
	if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1 ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
		goto out;
	rc = pkey_fromdata("RSA", params, pkey);
out:
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_e);
	BN_free(bn_n);
	return rc;
}

static int
parse_rsa(struct sshbuf_reader *r, EVP_PKEY **pkey)
{
	const uint8_t *e, *n;
	size_t elen, nlen;
	int rc;

	if ((rc = get_mpint(r, &e, &elen, RSA_MAX_E_BYTES)) != 0 ||
	    (rc = get_mpint(r, &n, &nlen, RSA_MAX_BYTES)) != 0)
		return rc;
	/* An even or tiny exponent is no RSA key anyone generated. */
	if (elen == 0 || (e[elen - 1] & 1) == 0 || (elen == 1 && e[0] < 3))
		return TP_EPROTO;
	/* Small keys are refused outright, as OpenSSH 9 does. */
	if (nlen * 8 < SSHPUB_RSA_MIN_BITS)
		return TP_EUNSUPP;
	if ((rc = rsa_fromdata(e, elen, n, nlen, pkey)) != 0)
		return rc;
	if (EVP_PKEY_get_bits(*pkey) < SSHPUB_RSA_MIN_BITS) {
		EVP_PKEY_free(*pkey);
		*pkey = NULL;
		return TP_EUNSUPP;
	}
	return 0;
}

/* Parses a plain public key blob; on success pk->pkey is set (caller frees). */
static int
pub_parse(const uint8_t *blob, size_t len, struct pubkey *pk)
{
	struct sshbuf_reader r;
	const uint8_t *t;
	size_t tlen;
	int rc;

	memset(pk, 0, sizeof(*pk));
	sshbuf_reader_init(&r, blob, len);
	if (blob == NULL || sshbuf_get_string(&r, &t, &tlen) != 0)
		return TP_EPROTO;
	if (str_eq(t, tlen, "ssh-ed25519")) {
		pk->kind = PUB_ED25519;
		pk->type = "ssh-ed25519";
		rc = parse_ed25519(&r, &pk->pkey);
	} else if ((pk->ec = ec_curve_by_type(t, tlen)) != NULL) {
		pk->kind = PUB_ECDSA;
		pk->type = pk->ec->type;
		rc = parse_ecdsa(&r, pk->ec, &pk->pkey);
	} else if (str_eq(t, tlen, "ssh-rsa")) {
		pk->kind = PUB_RSA;
		pk->type = "ssh-rsa";
		rc = parse_rsa(&r, &pk->pkey);
	} else
		return TP_EUNSUPP;
	if (rc == 0 && r.len != 0)
		rc = TP_EPROTO;		/* trailing bytes */
	if (rc != 0) {
		EVP_PKEY_free(pk->pkey);
		pk->pkey = NULL;
		ERR_clear_error();
	}
	return rc;
}

int
sshpub_parse(const uint8_t *blob, size_t len, EVP_PKEY **pkey,
    char *type, size_t type_cap)
{
	struct pubkey pk;
	int rc;

	if (pkey == NULL)
		return TP_EINVAL;
	*pkey = NULL;
	if ((rc = pub_parse(blob, len, &pk)) != 0)
		return rc;
	if (type != NULL) {
		if (strlen(pk.type) >= type_cap) {
			EVP_PKEY_free(pk.pkey);
			return TP_EINVAL;
		}
		strcpy(type, pk.type);
	}
	*pkey = pk.pkey;
	return 0;
}

/* One-shot verify; md is NULL for Ed25519.  0 if valid, else TP_ECRYPTO. */
static int
verify_raw(EVP_PKEY *pkey, const EVP_MD *md, int rsa, const uint8_t *sig,
    size_t sig_len, const uint8_t *data, size_t data_len)
{
	EVP_MD_CTX *mctx;
	EVP_PKEY_CTX *pctx = NULL;
	int ok = 0;

	if ((mctx = EVP_MD_CTX_new()) == NULL)
		return TP_ECRYPTO;
	if (EVP_DigestVerifyInit(mctx, &pctx, md, NULL, pkey) == 1 &&
	    (!rsa || EVP_PKEY_CTX_set_rsa_padding(pctx,
	    RSA_PKCS1_PADDING) == 1))
		ok = EVP_DigestVerify(mctx, sig, sig_len, data, data_len);
	EVP_MD_CTX_free(mctx);
	if (ok != 1)
		ERR_clear_error();
	return ok == 1 ? 0 : TP_ECRYPTO;
}

/*
 * SSH carries an ECDSA signature as (mpint r, mpint s); OpenSSL wants the
 * DER encoding of ECDSA-Sig-Value.
 */
static int
ecdsa_sig_to_der(const uint8_t *sig, size_t sig_len, size_t max,
    uint8_t **der, int *der_len)
{
	struct sshbuf_reader r;
	const uint8_t *rp, *sp;
	size_t rlen, slen;
	ECDSA_SIG *es = NULL;
	BIGNUM *br = NULL, *bs = NULL;
	int rc;

	sshbuf_reader_init(&r, sig, sig_len);
	if ((rc = get_mpint(&r, &rp, &rlen, max)) != 0 ||
	    (rc = get_mpint(&r, &sp, &slen, max)) != 0)
		return rc;
	if (r.len != 0 || rlen == 0 || slen == 0)
		return TP_EPROTO;
	rc = TP_ECRYPTO;
	if ((es = ECDSA_SIG_new()) == NULL ||
	    (br = BN_bin2bn(rp, (int)rlen, NULL)) == NULL ||
	    (bs = BN_bin2bn(sp, (int)slen, NULL)) == NULL ||
	    ECDSA_SIG_set0(es, br, bs) != 1)
		goto out;
	br = bs = NULL;		/* owned by es now */
	*der = NULL;
	if ((*der_len = i2d_ECDSA_SIG(es, der)) > 0)
		rc = 0;
out:
	BN_free(br);
	BN_free(bs);
	ECDSA_SIG_free(es);
	return rc;
}

static int
verify_ecdsa(const struct pubkey *pk, const EVP_MD *md, const uint8_t *sig,
    size_t sig_len, const uint8_t *data, size_t data_len)
{
	uint8_t *der = NULL;
	int der_len, rc;

	if ((rc = ecdsa_sig_to_der(sig, sig_len, pk->ec->field_len, &der,
	    &der_len)) != 0)
		return rc;
	rc = verify_raw(pk->pkey, md, 0, der, (size_t)der_len, data,
	    data_len);
	OPENSSL_free(der);
	return rc;
}

/*
 * RSA signatures may arrive shorter than the modulus (leading zeros
 * dropped by some signers); OpenSSH pads them back, so do we.
 */
static int
verify_rsa(const struct pubkey *pk, const EVP_MD *md, const uint8_t *sig,
    size_t sig_len, const uint8_t *data, size_t data_len)
{
	uint8_t padded[RSA_MAX_BYTES];
	int mod_len = EVP_PKEY_get_size(pk->pkey);

	if (mod_len <= 0 || (size_t)mod_len > sizeof(padded))
		return TP_ECRYPTO;
	if (sig_len == 0 || sig_len > (size_t)mod_len)
		return TP_ECRYPTO;
	memset(padded, 0, (size_t)mod_len - sig_len);
	memcpy(padded + (size_t)mod_len - sig_len, sig, sig_len);
	return verify_raw(pk->pkey, md, 1, padded, (size_t)mod_len,
	    data, data_len);
}

/* Dispatches on the signature algorithm name; it must suit the key. */
static int
verify_by_algo(const struct pubkey *pk, const uint8_t *algo, size_t alen,
    const uint8_t *s, size_t slen, const uint8_t *data, size_t data_len)
{
	const struct sig_alg *sa;
	const EVP_MD *md;

	if ((sa = sig_alg_by_name(algo, alen)) == NULL)
		return TP_EUNSUPP;	/* includes SHA-1 "ssh-rsa" */
	if (sa->kind != pk->kind)
		return TP_ECRYPTO;
	md = sa->md != NULL ? sa->md() : NULL;
	switch (pk->kind) {
	case PUB_ED25519:
		if (slen != ED25519_SIG_LEN)
			return TP_ECRYPTO;
		return verify_raw(pk->pkey, NULL, 0, s, slen, data, data_len);
	case PUB_ECDSA:
		/* The curve is part of the name: it must be the key's. */
		if (!str_eq(algo, alen, pk->ec->type))
			return TP_ECRYPTO;
		return verify_ecdsa(pk, md, s, slen, data, data_len);
	case PUB_RSA:
		return verify_rsa(pk, md, s, slen, data, data_len);
	}
	return TP_EUNSUPP;
}

int
sshpub_verify(const uint8_t *key, size_t key_len, const uint8_t *sig,
    size_t sig_len, const uint8_t *data, size_t data_len)
{
	struct sshbuf_reader r;
	struct pubkey pk;
	const uint8_t *algo, *s;
	size_t alen, slen;
	int rc;

	if (sig == NULL || (data == NULL && data_len != 0))
		return TP_EINVAL;
	sshbuf_reader_init(&r, sig, sig_len);
	if (sshbuf_get_string(&r, &algo, &alen) != 0 ||
	    sshbuf_get_string(&r, &s, &slen) != 0 || r.len != 0)
		return TP_EPROTO;
	if ((rc = pub_parse(key, key_len, &pk)) != 0)
		return rc;
	if (data == NULL)
		data = (const uint8_t *)"";
	rc = verify_by_algo(&pk, algo, alen, s, slen, data, data_len);
	EVP_PKEY_free(pk.pkey);
	return rc;
}

int
sshpub_fingerprint(const uint8_t *blob, size_t len, char *fp, size_t cap)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned char b64[EVP_MAX_MD_SIZE * 2];
	unsigned int md_len;
	int n;

	if (blob == NULL || fp == NULL)
		return TP_EINVAL;
	if (EVP_Digest(blob, len, md, &md_len, EVP_sha256(), NULL) != 1)
		return TP_ECRYPTO;
	n = EVP_EncodeBlock(b64, md, (int)md_len);
	/* ssh-keygen prints the base64 unpadded. */
	while (n > 0 && b64[n - 1] == '=')
		n--;
	if (sizeof("SHA256:") - 1 + (size_t)n >= cap)
		return TP_ETOOBIG;
	memcpy(fp, "SHA256:", 7);
	memcpy(fp + 7, b64, (size_t)n);
	fp[7 + n] = '\0';
	return 0;
}

/* Not isalnum(): the alphabet must not depend on the locale. */
static int
is_b64(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/*
 * Strict base64: alphabet only, '=' only as final padding, length a
 * multiple of 4.  EVP_DecodeBlock is laxer (it skips whitespace and does
 * not report padding), so validate first and compute the length here.
 */
static int
b64_decode(const char *s, size_t n, uint8_t **out, size_t *out_len)
{
	size_t i, pad = 0;
	uint8_t *buf;

	if (n == 0 || n % 4 != 0 || n > B64_MAX)
		return TP_ESYNTAX;
	while (pad < 2 && s[n - 1 - pad] == '=')
		pad++;
	for (i = 0; i < n - pad; i++)
		if (!is_b64(s[i]))
			return TP_ESYNTAX;
	if ((buf = malloc(n / 4 * 3 + 1)) == NULL)
		return TP_ENOMEM;
	if (EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n) < 0) {
		free(buf);
		return TP_ESYNTAX;
	}
	*out = buf;
	*out_len = n / 4 * 3 - pad;
	return 0;
}

/* The blob's own type name must be the one the line announces. */
static int
blob_type_matches(const uint8_t *blob, size_t len, const char *t, size_t tlen)
{
	struct sshbuf_reader r;
	const uint8_t *p;
	size_t n;

	sshbuf_reader_init(&r, blob, len);
	if (sshbuf_get_string(&r, &p, &n) != 0)
		return 0;
	return n == tlen && memcmp(p, t, n) == 0;
}

int
sshpub_from_line(const char *line, uint8_t **blob, size_t *len)
{
	const char *t, *b;
	size_t tlen, blen;
	int rc;

	if (line == NULL || blob == NULL || len == NULL)
		return TP_ESYNTAX;
	t = line + strspn(line, " \t");
	tlen = strcspn(t, " \t\r\n");
	if (tlen == 0 || tlen > TYPE_NAME_MAX)
		return TP_ESYNTAX;
	b = t + tlen;
	if (*b != ' ' && *b != '\t')
		return TP_ESYNTAX;
	b += strspn(b, " \t");
	blen = strcspn(b, " \t\r\n");
	/* Anything after whitespace is a comment. */
	if ((rc = b64_decode(b, blen, blob, len)) != 0)
		return rc;
	if (!blob_type_matches(*blob, *len, t, tlen)) {
		free(*blob);
		*blob = NULL;
		*len = 0;
		return TP_ESYNTAX;
	}
	return 0;
}
