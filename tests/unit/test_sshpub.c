/*
 * common/sshpub: parsing, fingerprints and signature checks against keys and
 * signatures made by OpenSSH's own ssh-keygen at test time.  ssh-keygen has
 * no "sign raw data" mode (-Y sign wraps in SSHSIG), but a host certificate
 * carries a plain SSH signature by the CA over the certificate body, so
 * certificates are our source of real signatures.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "common/error.h"
#include "common/sshbuf.h"
#include "common/sshpub.h"
#include "testutil.h"

static char tmpdir[] = "/tmp/test_sshpub.XXXXXX";

struct keyspec {
	const char	*name;		/* file name in tmpdir */
	const char	*args;		/* ssh-keygen -t/-b */
	const char	*type;		/* expected type name */
	int		 bits;
};

static const struct keyspec keys[] = {
	{ "ed25519", "-t ed25519", "ssh-ed25519", 256 },
	{ "ecdsa256", "-t ecdsa -b 256", "ecdsa-sha2-nistp256", 256 },
	{ "ecdsa384", "-t ecdsa -b 384", "ecdsa-sha2-nistp384", 384 },
	{ "ecdsa521", "-t ecdsa -b 521", "ecdsa-sha2-nistp521", 521 },
	{ "rsa2048", "-t rsa -b 2048", "ssh-rsa", 2048 },
	{ "rsa3072", "-t rsa -b 3072", "ssh-rsa", 3072 },
};
#define NKEYS	(int)(sizeof(keys) / sizeof(keys[0]))

/* Certificates: CA key name, extra ssh-keygen -s options. */
struct certspec {
	const char	*ca;
	const char	*opts;
	const char	*sig_algo;
};

static const struct certspec certs[] = {
	{ "ed25519", "", "ssh-ed25519" },
	{ "ecdsa256", "", "ecdsa-sha2-nistp256" },
	{ "ecdsa384", "", "ecdsa-sha2-nistp384" },
	{ "ecdsa521", "", "ecdsa-sha2-nistp521" },
	{ "rsa2048", "-t rsa-sha2-256", "rsa-sha2-256" },
	{ "rsa3072", "-t rsa-sha2-512", "rsa-sha2-512" },
};
#define NCERTS	(int)(sizeof(certs) / sizeof(certs[0]))

/* Blob of tmpdir/<file> (an OpenSSH public key or certificate line). */
static uint8_t *
load_blob(const char *file, size_t *len)
{
	char path[512];
	uint8_t *blob = NULL;
	char *text;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, file);
	ck_assert_ptr_nonnull(text = tu_slurp(path, NULL));
	ck_assert_int_eq(sshpub_from_line(text, &blob, len), 0);
	free(text);
	return blob;
}

static uint8_t *
load_pub(const char *name, size_t *len)
{
	char file[128];

	snprintf(file, sizeof(file), "%s.pub", name);
	return load_blob(file, len);
}

/*
 * Walks a certificate (PROTOCOL.certkeys) far enough to find the CA key and
 * signature, and where the signed part ends.
 */
struct cert_parts {
	const uint8_t	*sigkey, *sig;
	size_t		 sigkey_len, sig_len, signed_len;
};

static void
cert_split(const uint8_t *c, size_t len, struct cert_parts *cp)
{
	struct sshbuf_reader r;
	const uint8_t *p;
	size_t n;
	uint64_t u64;
	uint32_t u32;
	int i, nfields;

	sshbuf_reader_init(&r, c, len);
	ck_assert_int_eq(sshbuf_get_string(&r, &p, &n), 0);
	nfields = memcmp(p, "ssh-ed25519", 11) == 0 ? 1 : 2;
	ck_assert_int_eq(sshbuf_get_string(&r, &p, &n), 0);	/* nonce */
	for (i = 0; i < nfields; i++)
		ck_assert_int_eq(sshbuf_get_string(&r, &p, &n), 0);
	ck_assert_int_eq(sshbuf_get_u64(&r, &u64), 0);
	ck_assert_int_eq(sshbuf_get_u32(&r, &u32), 0);
	ck_assert_int_eq(sshbuf_get_string(&r, &p, &n), 0);	/* key id */
	ck_assert_int_eq(sshbuf_get_string(&r, &p, &n), 0);	/* principals */
	ck_assert_int_eq(sshbuf_get_u64(&r, &u64), 0);
	ck_assert_int_eq(sshbuf_get_u64(&r, &u64), 0);
	for (i = 0; i < 3; i++)		/* crit, extensions, reserved */
		ck_assert_int_eq(sshbuf_get_string(&r, &p, &n), 0);
	ck_assert_int_eq(sshbuf_get_string(&r, &cp->sigkey, &cp->sigkey_len),
	    0);
	cp->signed_len = len - r.len;
	ck_assert_int_eq(sshbuf_get_string(&r, &cp->sig, &cp->sig_len), 0);
	ck_assert_uint_eq(r.len, 0);
}

/* Fingerprints agree with ssh-keygen -l -E sha256. */
START_TEST(test_fingerprint)
{
	const struct keyspec *k = &keys[_i];
	char cmd[512], out[512], want[128], fp[SSHPUB_FP_LEN];
	uint8_t *blob;
	size_t len;
	FILE *p;

	blob = load_pub(k->name, &len);
	ck_assert_int_eq(sshpub_fingerprint(blob, len, fp, sizeof(fp)), 0);
	snprintf(cmd, sizeof(cmd), "ssh-keygen -l -E sha256 -f %s/%s.pub",
	    tmpdir, k->name);
	ck_assert_ptr_nonnull(p = popen(cmd, "r"));
	ck_assert_ptr_nonnull(fgets(out, sizeof(out), p));
	pclose(p);
	ck_assert_int_eq(sscanf(out, "%*d %127s", want), 1);
	ck_assert_str_eq(fp, want);
	ck_assert_int_eq(sshpub_fingerprint(blob, len, fp, 50), TP_ETOOBIG);
	ck_assert_int_eq(sshpub_fingerprint(blob, len, fp, 51), 0);
	free(blob);
}
END_TEST

START_TEST(test_parse)
{
	const struct keyspec *k = &keys[_i];
	char type[32];
	EVP_PKEY *pkey;
	uint8_t *blob;
	size_t len;

	blob = load_pub(k->name, &len);
	ck_assert_int_eq(sshpub_parse(blob, len, &pkey, type, sizeof(type)),
	    0);
	ck_assert_str_eq(type, k->type);
	ck_assert_int_eq(EVP_PKEY_get_bits(pkey), k->bits);
	EVP_PKEY_free(pkey);
	/* The type is optional; a buffer too small is the caller's bug. */
	ck_assert_int_eq(sshpub_parse(blob, len, &pkey, NULL, 0), 0);
	EVP_PKEY_free(pkey);
	ck_assert_int_eq(sshpub_parse(blob, len, &pkey, type, 5), TP_EINVAL);
	ck_assert_ptr_null(pkey);
	free(blob);
}
END_TEST

/* Every truncation and every single-bit flip: an error or a key, no crash. */
START_TEST(test_parse_mutations)
{
	const struct keyspec *k = &keys[_i];
	EVP_PKEY *pkey;
	uint8_t *blob, *big;
	size_t len, i;
	int bit, rc;

	blob = load_pub(k->name, &len);
	for (i = 0; i < len; i++) {
		ck_assert_int_ne(sshpub_parse(blob, i, &pkey, NULL, 0), 0);
		ck_assert_ptr_null(pkey);
	}
	for (i = 0; i < len; i++)
		for (bit = 0; bit < 8; bit++) {
			blob[i] ^= 1u << bit;
			rc = sshpub_parse(blob, len, &pkey, NULL, 0);
			if (rc == 0)
				EVP_PKEY_free(pkey);
			else
				ck_assert_ptr_null(pkey);
			blob[i] ^= 1u << bit;
		}
	ck_assert_ptr_nonnull(big = malloc(len + 1));
	memcpy(big, blob, len);
	big[len] = 0;
	ck_assert_int_eq(sshpub_parse(big, len + 1, &pkey, NULL, 0),
	    TP_EPROTO);
	free(big);
	free(blob);
}
END_TEST

START_TEST(test_rsa_small_refused)
{
	EVP_PKEY *pkey;
	uint8_t *blob;
	size_t len;

	blob = load_pub("rsa1024", &len);
	ck_assert_int_eq(sshpub_parse(blob, len, &pkey, NULL, 0), TP_EUNSUPP);
	ck_assert_ptr_null(pkey);
	free(blob);
}
END_TEST

static void
put_mpint_raw(struct sshbuf_writer *w, const uint8_t *p, size_t n)
{
	sshbuf_put_string(w, p, n);
}

/* RSA blobs with hand-made mpints: only the one canonical encoding passes. */
START_TEST(test_rsa_mpint_encoding)
{
	static const uint8_t e_ok[] = { 0x01, 0x00, 0x01 };
	static const uint8_t e_zero[] = { 0x00, 0x01, 0x00, 0x01 };
	static const uint8_t e_neg[] = { 0x81, 0x00, 0x01 };
	static const uint8_t e_even[] = { 0x01, 0x00, 0x02 };
	uint8_t n[257];
	struct {
		const uint8_t *e;
		size_t elen;
		int lead0;
		int want;
	} cases[] = {
		{ e_ok, sizeof(e_ok), 1, 0 },
		{ e_zero, sizeof(e_zero), 1, TP_EPROTO },
		{ e_neg, sizeof(e_neg), 1, TP_EPROTO },
		{ e_even, sizeof(e_even), 1, TP_EPROTO },
		{ e_ok, sizeof(e_ok), 0, TP_EPROTO },	/* n negative */
	};
	struct sshbuf_writer w;
	EVP_PKEY *pkey;
	size_t i;

	n[0] = 0;
	memset(n + 1, 0xc5, 256);	/* odd, top bit set: 2048 bits */
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sshbuf_writer_init(&w, 0);
		sshbuf_put_cstring(&w, "ssh-rsa");
		put_mpint_raw(&w, cases[i].e, cases[i].elen);
		if (cases[i].lead0)
			put_mpint_raw(&w, n, sizeof(n));
		else
			put_mpint_raw(&w, n + 1, sizeof(n) - 1);
		ck_assert_int_eq(sshbuf_writer_error(&w), 0);
		ck_assert_int_eq(sshpub_parse(w.p, w.len, &pkey, NULL, 0),
		    cases[i].want);
		EVP_PKEY_free(pkey);
		sshbuf_writer_free(&w);
	}
}
END_TEST

START_TEST(test_unsupported_types)
{
	static const char *types[] = { "ssh-dss", "ssh-ed448",
	    "sk-ssh-ed25519@openssh.com", "ssh-ed25519-cert-v01@openssh.com",
	    "ecdsa-sha2-nistp224", "" };
	struct sshbuf_writer w;
	EVP_PKEY *pkey;
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		sshbuf_writer_init(&w, 0);
		sshbuf_put_cstring(&w, types[i]);
		sshbuf_put_string(&w, "0123456789abcdef0123456789abcdef",
		    32);
		ck_assert_int_eq(sshpub_parse(w.p, w.len, &pkey, NULL, 0),
		    TP_EUNSUPP);
		sshbuf_writer_free(&w);
	}
}
END_TEST

/* An EC point that is not on the curve is refused. */
START_TEST(test_ecdsa_bad_point)
{
	uint8_t q[65];
	struct sshbuf_writer w;
	EVP_PKEY *pkey;

	q[0] = 0x04;
	memset(q + 1, 0x11, 64);
	sshbuf_writer_init(&w, 0);
	sshbuf_put_cstring(&w, "ecdsa-sha2-nistp256");
	sshbuf_put_cstring(&w, "nistp256");
	sshbuf_put_string(&w, q, sizeof(q));
	ck_assert_int_ne(sshpub_parse(w.p, w.len, &pkey, NULL, 0), 0);
	ck_assert_ptr_null(pkey);
	sshbuf_writer_free(&w);
	/* Curve name disagreeing with the type. */
	sshbuf_writer_init(&w, 0);
	sshbuf_put_cstring(&w, "ecdsa-sha2-nistp256");
	sshbuf_put_cstring(&w, "nistp384");
	sshbuf_put_string(&w, q, sizeof(q));
	ck_assert_int_eq(sshpub_parse(w.p, w.len, &pkey, NULL, 0), TP_EPROTO);
	sshbuf_writer_free(&w);
}
END_TEST

START_TEST(test_from_line)
{
	static const struct {
		const char *fmt;
		int want;
	} cases[] = {
		{ "ssh-ed25519 %s", 0 },
		{ "  ssh-ed25519\t%s  a comment with spaces\n", 0 },
		{ "ssh-ed25519 %s\r\n", 0 },
		{ "ssh-rsa %s", TP_ESYNTAX },		/* type mismatch */
		{ "ssh-ed25519", TP_ESYNTAX },
		{ "ssh-ed25519 ", TP_ESYNTAX },
		{ "", TP_ESYNTAX },
		{ "ssh-ed25519 %s=", TP_ESYNTAX },
		{ "ssh-ed25519 A%s", TP_ESYNTAX },
		{ "ssh-ed25519 %s*", TP_ESYNTAX },
		{ "ssh-ed25519 !!!!", TP_ESYNTAX },
		{ "ssh-ed25519 AAAA", TP_ESYNTAX },
	};
	char line[4096], path[512], l[4096], *b64, *text;
	uint8_t *blob, *ref;
	size_t len, ref_len, i;

	snprintf(path, sizeof(path), "%s/ed25519.pub", tmpdir);
	ck_assert_ptr_nonnull(text = tu_slurp(path, NULL));
	ck_assert_uint_lt(strlen(text), sizeof(line));
	memcpy(line, text, strlen(text) + 1);
	free(text);
	ref = load_pub("ed25519", &ref_len);
	line[strcspn(line, "\n")] = '\0';
	b64 = strchr(line, ' ') + 1;
	b64[strcspn(b64, " ")] = '\0';
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		snprintf(l, sizeof(l), cases[i].fmt, b64);
#pragma GCC diagnostic pop
		blob = NULL;
		ck_assert_msg(sshpub_from_line(l, &blob, &len) ==
		    cases[i].want, "case %zu: %s", i, l);
		if (cases[i].want == 0) {
			ck_assert_uint_eq(len, ref_len);
			ck_assert_mem_eq(blob, ref, len);
		} else
			ck_assert_ptr_null(blob);
		free(blob);
	}
	free(ref);
}
END_TEST

/*
 * A certificate line parses too: sshpub_from_line is the text form only,
 * callers decide which types they accept.
 */
START_TEST(test_from_line_cert)
{
	EVP_PKEY *pkey;
	uint8_t *blob;
	size_t len;

	blob = load_blob("host-ed25519-cert.pub", &len);
	ck_assert_int_eq(sshpub_parse(blob, len, &pkey, NULL, 0), TP_EUNSUPP);
	free(blob);
}
END_TEST

static uint8_t *
load_cert(int i, size_t *len)
{
	char file[128];

	snprintf(file, sizeof(file), "host-%s-cert.pub", certs[i].ca);
	return load_blob(file, len);
}

/* The CA signature on a real certificate verifies; the sig algo is right. */
START_TEST(test_verify_cert_sig)
{
	struct cert_parts cp;
	struct sshbuf_reader r;
	uint8_t *cert, *ca;
	size_t len, ca_len;

	cert = load_cert(_i, &len);
	ca = load_pub(certs[_i].ca, &ca_len);
	cert_split(cert, len, &cp);
	ck_assert_uint_eq(cp.sigkey_len, ca_len);
	ck_assert_mem_eq(cp.sigkey, ca, ca_len);
	sshbuf_reader_init(&r, cp.sig, cp.sig_len);
	ck_assert_int_eq(sshbuf_expect_cstring(&r, certs[_i].sig_algo), 0);
	ck_assert_int_eq(sshpub_verify(ca, ca_len, cp.sig, cp.sig_len, cert,
	    cp.signed_len), 0);
	/* Shorter or longer data. */
	ck_assert_int_eq(sshpub_verify(ca, ca_len, cp.sig, cp.sig_len, cert,
	    cp.signed_len - 1), TP_ECRYPTO);
	ck_assert_int_eq(sshpub_verify(ca, ca_len, cp.sig, cp.sig_len, cert,
	    cp.signed_len + 1), TP_ECRYPTO);
	free(ca);
	free(cert);
}
END_TEST

/* Another key of any type never verifies the signature. */
START_TEST(test_verify_wrong_key)
{
	struct cert_parts cp;
	uint8_t *cert, *other;
	size_t len, olen;
	int k;

	cert = load_cert(_i, &len);
	cert_split(cert, len, &cp);
	for (k = 0; k < NKEYS; k++) {
		if (strcmp(keys[k].name, certs[_i].ca) == 0)
			continue;
		other = load_pub(keys[k].name, &olen);
		ck_assert_int_eq(sshpub_verify(other, olen, cp.sig,
		    cp.sig_len, cert, cp.signed_len), TP_ECRYPTO);
		free(other);
	}
	free(cert);
}
END_TEST

/* Every bit flip of data, signature or key fails; truncations too. */
START_TEST(test_verify_mutations)
{
	struct cert_parts cp;
	uint8_t *cert, *sig, *key;
	size_t len, i;
	int bit;

	cert = load_cert(_i, &len);
	cert_split(cert, len, &cp);
	ck_assert_ptr_nonnull(sig = malloc(cp.sig_len));
	ck_assert_ptr_nonnull(key = malloc(cp.sigkey_len));
	memcpy(sig, cp.sig, cp.sig_len);
	memcpy(key, cp.sigkey, cp.sigkey_len);
	for (i = 0; i < cp.sig_len; i++) {
		ck_assert_int_ne(sshpub_verify(key, cp.sigkey_len, sig, i,
		    cert, cp.signed_len), 0);
		for (bit = 0; bit < 8; bit++) {
			sig[i] ^= 1u << bit;
			ck_assert_int_ne(sshpub_verify(key, cp.sigkey_len,
			    sig, cp.sig_len, cert, cp.signed_len), 0);
			sig[i] ^= 1u << bit;
		}
	}
	for (i = 0; i < cp.sigkey_len; i++)
		for (bit = 0; bit < 8; bit++) {
			key[i] ^= 1u << bit;
			ck_assert_int_ne(sshpub_verify(key, cp.sigkey_len,
			    sig, cp.sig_len, cert, cp.signed_len), 0);
			key[i] ^= 1u << bit;
		}
	/* The data: one flip per byte, rotating the bit. */
	for (i = 0; i < cp.signed_len; i++) {
		cert[i] ^= 1u << (i % 8);
		ck_assert_int_eq(sshpub_verify(key, cp.sigkey_len, sig,
		    cp.sig_len, cert, cp.signed_len), TP_ECRYPTO);
		cert[i] ^= 1u << (i % 8);
	}
	ck_assert_int_eq(sshpub_verify(key, cp.sigkey_len, sig, cp.sig_len,
	    cert, cp.signed_len), 0);
	free(key);
	free(sig);
	free(cert);
}
END_TEST

/* A CA signature made with SHA-1 ("ssh-rsa") is refused as unsupported. */
START_TEST(test_verify_sha1_refused)
{
	struct cert_parts cp;
	uint8_t *cert, *ca;
	size_t len, ca_len;

	cert = load_blob("host-sha1-cert.pub", &len);
	ca = load_pub("rsa2048", &ca_len);
	cert_split(cert, len, &cp);
	ck_assert_int_eq(sshpub_verify(ca, ca_len, cp.sig, cp.sig_len, cert,
	    cp.signed_len), TP_EUNSUPP);
	free(ca);
	free(cert);
}
END_TEST

/* Trailing bytes after the signature, or after the inner ECDSA mpints. */
START_TEST(test_verify_trailing)
{
	struct cert_parts cp;
	struct sshbuf_writer w;
	struct sshbuf_reader r;
	const uint8_t *algo, *inner;
	size_t alen, ilen, len, ca_len;
	uint8_t *cert, *ca;

	cert = load_cert(1, &len);	/* ecdsa256 */
	ca = load_pub(certs[1].ca, &ca_len);
	cert_split(cert, len, &cp);
	sshbuf_writer_init(&w, 0);
	sshbuf_put_bytes(&w, cp.sig, cp.sig_len);
	sshbuf_put_u8(&w, 0);
	ck_assert_int_eq(sshpub_verify(ca, ca_len, w.p, w.len, cert,
	    cp.signed_len), TP_EPROTO);
	sshbuf_writer_free(&w);

	sshbuf_reader_init(&r, cp.sig, cp.sig_len);
	ck_assert_int_eq(sshbuf_get_string(&r, &algo, &alen), 0);
	ck_assert_int_eq(sshbuf_get_string(&r, &inner, &ilen), 0);
	sshbuf_writer_init(&w, 0);
	sshbuf_put_string(&w, algo, alen);
	sshbuf_put_u32(&w, (uint32_t)ilen + 1);
	sshbuf_put_bytes(&w, inner, ilen);
	sshbuf_put_u8(&w, 0);
	ck_assert_int_eq(sshpub_verify(ca, ca_len, w.p, w.len, cert,
	    cp.signed_len), TP_EPROTO);
	sshbuf_writer_free(&w);
	free(ca);
	free(cert);
}
END_TEST

/* Converts an OpenSSL DER ECDSA signature into SSH's (mpint r, mpint s). */
static void
put_ecdsa_sig(struct sshbuf_writer *w, const char *algo, const uint8_t *der,
    size_t der_len)
{
	const unsigned char *p = der;
	ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	const BIGNUM *r, *s;
	struct sshbuf_writer inner;
	uint8_t buf[80];
	const BIGNUM *bns[2];
	int i, n;

	ck_assert_ptr_nonnull(es);
	ECDSA_SIG_get0(es, &r, &s);
	bns[0] = r;
	bns[1] = s;
	sshbuf_writer_init(&inner, 0);
	for (i = 0; i < 2; i++) {
		buf[0] = 0;
		n = BN_bn2bin(bns[i], buf + 1);
		/* mpint: a leading zero only when the top bit is set */
		if (buf[1] & 0x80)
			sshbuf_put_string(&inner, buf, (size_t)n + 1);
		else
			sshbuf_put_string(&inner, buf + 1, (size_t)n);
	}
	sshbuf_put_cstring(w, algo);
	sshbuf_put_string(w, inner.p, inner.len);
	sshbuf_writer_free(&inner);
	ECDSA_SIG_free(es);
}

/*
 * Many ECDSA signatures made with OpenSSL: about half of r and s have the
 * top bit set (mpint with a leading zero), some are shorter than the field.
 */
START_TEST(test_verify_ecdsa_many)
{
	static const char *curve[] = { "P-256", "P-384", "P-521" };
	static const char *type[] = { "ecdsa-sha2-nistp256",
	    "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521" };
	static const char *id[] = { "nistp256", "nistp384", "nistp521" };
	static const char *md[] = { "SHA256", "SHA384", "SHA512" };
	struct sshbuf_writer kw, sw;
	uint8_t q[160], der[160], msg[32];
	size_t qlen, der_len;
	EVP_PKEY *pkey;
	EVP_MD_CTX *mctx;
	int c, i;

	for (c = 0; c < 3; c++) {
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve[c]);
		ck_assert_ptr_nonnull(pkey);
		ck_assert_int_eq(EVP_PKEY_get_octet_string_param(pkey,
		    OSSL_PKEY_PARAM_PUB_KEY, q, sizeof(q), &qlen), 1);
		sshbuf_writer_init(&kw, 0);
		sshbuf_put_cstring(&kw, type[c]);
		sshbuf_put_cstring(&kw, id[c]);
		sshbuf_put_string(&kw, q, qlen);
		for (i = 0; i < 64; i++) {
			memset(msg, i, sizeof(msg));
			mctx = EVP_MD_CTX_new();
			der_len = sizeof(der);
			ck_assert_int_eq(EVP_DigestSignInit_ex(mctx, NULL,
			    md[c], NULL, NULL, pkey, NULL), 1);
			ck_assert_int_eq(EVP_DigestSign(mctx, der, &der_len,
			    msg, sizeof(msg)), 1);
			EVP_MD_CTX_free(mctx);
			sshbuf_writer_init(&sw, 0);
			put_ecdsa_sig(&sw, type[c], der, der_len);
			ck_assert_int_eq(sshpub_verify(kw.p, kw.len, sw.p,
			    sw.len, msg, sizeof(msg)), 0);
			msg[0] ^= 1;
			ck_assert_int_eq(sshpub_verify(kw.p, kw.len, sw.p,
			    sw.len, msg, sizeof(msg)), TP_ECRYPTO);
			sshbuf_writer_free(&sw);
		}
		sshbuf_writer_free(&kw);
		EVP_PKEY_free(pkey);
	}
}
END_TEST

/* Wraps an OpenSSL RSA public key as an ssh-rsa blob. */
static void
put_rsa_key(struct sshbuf_writer *w, EVP_PKEY *pkey)
{
	static const char *params[] = { OSSL_PKEY_PARAM_RSA_E,
	    OSSL_PKEY_PARAM_RSA_N };
	uint8_t buf[520];
	BIGNUM *bn;
	int i, n;

	sshbuf_put_cstring(w, "ssh-rsa");
	for (i = 0; i < 2; i++) {
		bn = NULL;
		ck_assert_int_eq(EVP_PKEY_get_bn_param(pkey, params[i], &bn),
		    1);
		buf[0] = 0;
		n = BN_bn2bin(bn, buf + 1);
		if (buf[1] & 0x80)
			sshbuf_put_string(w, buf, (size_t)n + 1);
		else
			sshbuf_put_string(w, buf + 1, (size_t)n);
		BN_free(bn);
	}
}

/*
 * An RSA signature whose top byte is zero may arrive without it; OpenSSH
 * pads it back to the modulus size and so must we.  Longer than the
 * modulus is refused.
 */
START_TEST(test_verify_rsa_short_sig)
{
	struct sshbuf_writer kw, sw;
	uint8_t sig[256], msg[8];
	size_t sig_len;
	EVP_PKEY *pkey;
	EVP_MD_CTX *m;
	uint32_t i;

	ck_assert_ptr_nonnull(pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA",
	    (size_t)2048));
	sshbuf_writer_init(&kw, 0);
	put_rsa_key(&kw, pkey);
	for (i = 0; i < 20000; i++) {
		memcpy(msg, &i, sizeof(i));
		sig_len = sizeof(sig);
		ck_assert_ptr_nonnull(m = EVP_MD_CTX_new());
		ck_assert_int_eq(EVP_DigestSignInit_ex(m, NULL, "SHA512",
		    NULL, NULL, pkey, NULL), 1);
		ck_assert_int_eq(EVP_DigestSign(m, sig, &sig_len, msg,
		    sizeof(msg)), 1);
		EVP_MD_CTX_free(m);
		if (sig[0] == 0)
			break;
	}
	ck_assert_uint_eq(sig[0], 0);
	sshbuf_writer_init(&sw, 0);
	sshbuf_put_cstring(&sw, "rsa-sha2-512");
	sshbuf_put_string(&sw, sig + 1, sig_len - 1);
	ck_assert_int_eq(sshpub_verify(kw.p, kw.len, sw.p, sw.len, msg,
	    sizeof(msg)), 0);
	sshbuf_writer_free(&sw);
	sshbuf_writer_init(&sw, 0);
	sshbuf_put_cstring(&sw, "rsa-sha2-512");
	sshbuf_put_string(&sw, sig, sig_len);
	ck_assert_int_eq(sshpub_verify(kw.p, kw.len, sw.p, sw.len, msg,
	    sizeof(msg)), 0);
	sshbuf_writer_free(&sw);
	sshbuf_writer_init(&sw, 0);
	sshbuf_put_cstring(&sw, "rsa-sha2-512");
	sshbuf_put_u32(&sw, (uint32_t)sig_len + 1);
	sshbuf_put_u8(&sw, 0);
	sshbuf_put_bytes(&sw, sig, sig_len);
	ck_assert_int_eq(sshpub_verify(kw.p, kw.len, sw.p, sw.len, msg,
	    sizeof(msg)), TP_ECRYPTO);
	/* The same bytes claimed as SHA-256 or SHA-1. */
	sw.len = 0;
	sshbuf_put_cstring(&sw, "rsa-sha2-256");
	sshbuf_put_string(&sw, sig, sig_len);
	ck_assert_int_eq(sshpub_verify(kw.p, kw.len, sw.p, sw.len, msg,
	    sizeof(msg)), TP_ECRYPTO);
	sw.len = 0;
	sshbuf_put_cstring(&sw, "ssh-rsa");
	sshbuf_put_string(&sw, sig, sig_len);
	ck_assert_int_eq(sshpub_verify(kw.p, kw.len, sw.p, sw.len, msg,
	    sizeof(msg)), TP_EUNSUPP);
	sshbuf_writer_free(&sw);
	sshbuf_writer_free(&kw);
	EVP_PKEY_free(pkey);
}
END_TEST

/*
 * One table names each signature algorithm's hash, for the verifier here
 * and for the supervisor's signer: RFC 8709, RFC 5656 6.2.1, RFC 8332.
 */
START_TEST(test_sig_md)
{
	static const struct { const char *alg; const char *md; } t[] = {
		{ "ssh-ed25519", NULL },
		{ "ecdsa-sha2-nistp256", "SHA256" },
		{ "ecdsa-sha2-nistp384", "SHA384" },
		{ "ecdsa-sha2-nistp521", "SHA512" },
		{ "rsa-sha2-256", "SHA256" },
		{ "rsa-sha2-512", "SHA512" },
	};
	const EVP_MD *md;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		md = EVP_md5();
		ck_assert_int_eq(sshpub_sig_md(t[i].alg, &md), 0);
		if (t[i].md == NULL)
			ck_assert_ptr_null(md);
		else
			ck_assert_msg(md != NULL && EVP_MD_is_a(md, t[i].md),
			    "%s", t[i].alg);
	}
	ck_assert_int_eq(sshpub_sig_md("ssh-rsa", &md), TP_EUNSUPP);
	ck_assert_int_eq(sshpub_sig_md("ssh-ed25519-cert-v01@openssh.com",
	    &md), TP_EUNSUPP);
	ck_assert_int_eq(sshpub_sig_md("", &md), TP_EUNSUPP);
	ck_assert_int_eq(sshpub_sig_md(NULL, &md), TP_EINVAL);
	ck_assert_int_eq(sshpub_sig_md("ssh-ed25519", NULL), TP_EINVAL);
}
END_TEST

/* Bad arguments are refused, not dereferenced. */
START_TEST(test_null_args)
{
	uint8_t *blob;
	size_t len;
	EVP_PKEY *pkey;
	char fp[SSHPUB_FP_LEN];

	ck_assert_int_eq(sshpub_from_line(NULL, &blob, &len), TP_ESYNTAX);
	ck_assert_int_ne(sshpub_parse(NULL, 0, &pkey, NULL, 0), 0);
	ck_assert_int_eq(sshpub_parse((const uint8_t *)"", 0, NULL, NULL, 0),
	    TP_EINVAL);
	ck_assert_int_eq(sshpub_fingerprint(NULL, 0, fp, sizeof(fp)),
	    TP_EINVAL);
	ck_assert_int_ne(sshpub_verify(NULL, 0, NULL, 0, NULL, 0), 0);
}
END_TEST

static void
make_keys(void)
{
	int i;

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	for (i = 0; i < NKEYS; i++)
		tu_sh("ssh-keygen -q -N '' %s -C test-%s -f %s/%s",
		    keys[i].args, keys[i].name, tmpdir, keys[i].name);
	tu_sh("ssh-keygen -q -N '' -t rsa -b 1024 -f %s/rsa1024", tmpdir);
	tu_sh("ssh-keygen -q -N '' -t ed25519 -f %s/host", tmpdir);
	for (i = 0; i < NCERTS; i++) {
		tu_sh("cp %s/host.pub %s/host-%s.pub", tmpdir, tmpdir,
		    certs[i].ca);
		tu_sh("ssh-keygen -q -s %s/%s %s -h -I id -n proxy-1 "
		    "-V -5m:+1h %s/host-%s.pub 2>/dev/null", tmpdir, certs[i].ca,
		    certs[i].opts, tmpdir, certs[i].ca);
	}
	tu_sh("cp %s/host.pub %s/host-sha1.pub", tmpdir, tmpdir);
	tu_sh("ssh-keygen -q -s %s/rsa2048 -t ssh-rsa -h -I id -n proxy-1 "
	    "%s/host-sha1.pub 2>/dev/null", tmpdir, tmpdir);
}

static Suite *
sshpub_suite(void)
{
	Suite *s = suite_create("sshpub");
	TCase *tc = tcase_create("keys");
	TCase *tv = tcase_create("verify");

	tcase_add_loop_test(tc, test_fingerprint, 0, NKEYS);
	tcase_add_loop_test(tc, test_parse, 0, NKEYS);
	tcase_add_loop_test(tc, test_parse_mutations, 0, NKEYS);
	tcase_add_test(tc, test_rsa_small_refused);
	tcase_add_test(tc, test_rsa_mpint_encoding);
	tcase_add_test(tc, test_unsupported_types);
	tcase_add_test(tc, test_ecdsa_bad_point);
	tcase_add_test(tc, test_from_line);
	tcase_add_test(tc, test_from_line_cert);
	tcase_add_test(tc, test_null_args);
	tcase_add_test(tc, test_sig_md);
	suite_add_tcase(s, tc);
	tcase_add_loop_test(tv, test_verify_cert_sig, 0, NCERTS);
	tcase_add_loop_test(tv, test_verify_wrong_key, 0, NCERTS);
	tcase_add_loop_test(tv, test_verify_mutations, 0, NCERTS);
	tcase_add_test(tv, test_verify_sha1_refused);
	tcase_add_test(tv, test_verify_trailing);
	tcase_add_test(tv, test_verify_ecdsa_many);
	tcase_add_test(tv, test_verify_rsa_short_sig);
	tcase_set_timeout(tc, 120);
	tcase_set_timeout(tv, 120);
	suite_add_tcase(s, tv);
	return s;
}

int
main(void)
{
	int rc;

	make_keys();
	rc = tu_run(sshpub_suite());
	tu_sh("rm -rf %s", tmpdir);
	return rc;
}
