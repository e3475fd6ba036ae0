/*
 * supervisor/sshkey: loading OpenSSH private keys and certificates made by
 * the real ssh-keygen, and signing in the SSH wire format (checked with
 * common/sshpub, i.e. OpenSSL).
 */
#include <sys/stat.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/error.h"
#include "common/sshbuf.h"
#include "common/sshpub.h"
#include "supervisor/sshkey.h"
#include "testutil.h"

static char dir[64];

static const char *
path(const char *name)
{
	return tu_path(dir, name);
}

struct ktype {
	const char	*file;
	const char	*args;		/* ssh-keygen -t ... */
	const char	*name;
	enum sshkey_type type;
};

static const struct ktype ktypes[] = {
	{ "ed25519", "-t ed25519", "ssh-ed25519", SSHKEY_ED25519 },
	{ "ecdsa256", "-t ecdsa -b 256", "ecdsa-sha2-nistp256",
	    SSHKEY_ECDSA_P256 },
	{ "ecdsa384", "-t ecdsa -b 384", "ecdsa-sha2-nistp384",
	    SSHKEY_ECDSA_P384 },
	{ "ecdsa521", "-t ecdsa -b 521", "ecdsa-sha2-nistp521",
	    SSHKEY_ECDSA_P521 },
	{ "rsa", "-t rsa -b 2048", "ssh-rsa", SSHKEY_RSA },
};
#define NTYPES	(int)(sizeof(ktypes) / sizeof(ktypes[0]))

/* Generates every key and certificate the tests use, once. */
static void
make_keys(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tp-sshkey-XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	for (int i = 0; i < NTYPES; i++)
		tu_sh("ssh-keygen -q %s -N '' -C test-%s -f %s", ktypes[i].args,
		    ktypes[i].file, path(ktypes[i].file));
	tu_sh("ssh-keygen -q -t ed25519 -N secret -f %s", path("enc"));
	tu_sh("ssh-keygen -q -t ed25519 -N '' -f %s", path("other"));
	tu_sh("ssh-keygen -q -t rsa -b 2048 -m PEM -N '' -f %s", path("pem"));
	tu_sh("ssh-keygen -q -t ed25519 -N '' -f %s", path("ca"));
	tu_sh("ssh-keygen -q -s %s -I user -n tptest %s.pub", path("ca"),
	    path("ed25519"));
	tu_sh("ssh-keygen -q -s %s -I other -n tptest %s.pub", path("ca"),
	    path("other"));
	tu_sh("cp %s.pub %s.pub && ssh-keygen -q -s %s -I host -h %s.pub",
	    path("ed25519"), path("host"), path("ca"), path("host"));
	tu_sh("cp %s.pub %s.pub && ssh-keygen -q -s %s -I old "
	    "-V 20000101:20000102 %s.pub", path("ed25519"), path("old"),
	    path("ca"), path("old"));
	tu_sh("ssh-keygen -q -s %s -I r -n tptest %s.pub", path("ca"),
	    path("rsa"));
}

static struct sshkey *
load(const char *name)
{
	struct sshkey *k;
	char err[SSHKEY_ERR_LEN] = "";
	int rc = sshkey_load(path(name), &k, err, sizeof(err));

	ck_assert_msg(rc == 0, "%s: %d %s", name, rc, err);
	return k;
}

/* The fingerprint ssh-keygen -l prints for a public key file. */
static void
keygen_fp(const char *pub, char *fp, size_t cap)
{
	char cmd[512];
	FILE *f;

	snprintf(cmd, sizeof(cmd), "ssh-keygen -l -E sha256 -f %s", pub);
	ck_assert_ptr_nonnull(f = popen(cmd, "r"));
	ck_assert_int_eq(fscanf(f, "%*d %63s", fp), 1);
	pclose(f);
	(void)cap;
}

START_TEST(load_each_type)
{
	const struct ktype *t = &ktypes[_i];
	struct sshkey *k = load(t->file);
	char pubfile[300], fp[64];
	uint8_t *blob;
	size_t len, klen;
	FILE *f;
	char line[4096];

	ck_assert_str_eq(sshkey_type_name(k), t->name);
	ck_assert_int_eq(sshkey_type(k), t->type);
	ck_assert_ptr_null(sshkey_cert_blob(k, &len));
	ck_assert_uint_eq(len, 0);
	ck_assert_ptr_null(sshkey_cert_type_name(k));
	snprintf(pubfile, sizeof(pubfile), "%s.pub", path(t->file));
	keygen_fp(pubfile, fp, sizeof(fp));
	ck_assert_str_eq(sshkey_fingerprint(k), fp);
	ck_assert_ptr_nonnull(f = fopen(pubfile, "r"));
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	fclose(f);
	ck_assert_int_eq(sshpub_from_line(line, &blob, &len), 0);
	ck_assert_mem_eq(sshkey_pub_blob(k, &klen), blob, len);
	ck_assert_uint_eq(klen, len);
	free(blob);
	snprintf(line, sizeof(line), "test-%s", t->file);
	ck_assert_str_eq(sshkey_comment(k), line);
	sshkey_free(k);
}
END_TEST

/* Signs random data with every acceptable flag and verifies with OpenSSL. */
START_TEST(sign_verify_each_type)
{
	const struct ktype *t = &ktypes[_i];
	struct sshkey *k = load(t->file);
	uint32_t flags[] = { 0, SSH_AGENT_RSA_SHA2_256, SSH_AGENT_RSA_SHA2_512 };
	const char *algs[] = { t->name, "rsa-sha2-256", "rsa-sha2-512" };
	uint8_t data[300], *sig;
	size_t siglen, publen;
	const uint8_t *pub = sshkey_pub_blob(k, &publen);
	struct sshbuf_reader r;
	const uint8_t *a;
	size_t alen;

	for (int f = t->type == SSHKEY_RSA ? 1 : 0;
	    f < (t->type == SSHKEY_RSA ? 3 : 1); f++) {
		RAND_bytes(data, sizeof(data));
		ck_assert_str_eq(sshkey_sig_alg(k, flags[f]), algs[f]);
		ck_assert_int_eq(sshkey_sign(k, data, sizeof(data), flags[f],
		    &sig, &siglen), 0);
		sshbuf_reader_init(&r, sig, siglen);
		ck_assert_int_eq(sshbuf_get_string(&r, &a, &alen), 0);
		ck_assert_uint_eq(alen, strlen(algs[f]));
		ck_assert_int_eq(memcmp(a, algs[f], alen), 0);
		ck_assert_int_eq(sshpub_verify(pub, publen, sig, siglen, data,
		    sizeof(data)), 0);
		data[0] ^= 1;
		ck_assert_int_eq(sshpub_verify(pub, publen, sig, siglen, data,
		    sizeof(data)), TP_ECRYPTO);
		free(sig);
	}
	sshkey_free(k);
}
END_TEST

/* Flags that name no acceptable algorithm: SHA-1, both hashes, unknown. */
START_TEST(sign_bad_flags)
{
	struct sshkey *ed = load("ed25519"), *rsa = load("rsa");
	uint8_t *sig = (uint8_t *)1;
	size_t siglen = 1;

	ck_assert_ptr_null(sshkey_sig_alg(ed, SSH_AGENT_RSA_SHA2_256));
	ck_assert_int_eq(sshkey_sign(ed, (const uint8_t *)"x", 1,
	    SSH_AGENT_RSA_SHA2_256, &sig, &siglen), TP_EUNSUPP);
	ck_assert_ptr_null(sig);
	ck_assert_ptr_null(sshkey_sig_alg(rsa, 0));
	ck_assert_ptr_null(sshkey_sig_alg(rsa, 6));
	ck_assert_ptr_null(sshkey_sig_alg(rsa, 1));
	ck_assert_int_eq(sshkey_sign(rsa, (const uint8_t *)"x", 1, 0, &sig,
	    &siglen), TP_EUNSUPP);
	sshkey_free(ed);
	sshkey_free(rsa);
}
END_TEST

static void
expect_load_error(const char *file, int want, const char *msg)
{
	struct sshkey *k = (struct sshkey *)1;
	char err[SSHKEY_ERR_LEN] = "";
	int rc = sshkey_load(file, &k, err, sizeof(err));

	ck_assert_msg(rc == want, "%s: got %d want %d (%s)", file, rc, want,
	    err);
	ck_assert_ptr_null(k);
	ck_assert_msg(strncmp(err, file, strlen(file)) == 0, "%s", err);
	ck_assert_msg(strstr(err, msg) != NULL, "%s lacks \"%s\"", err, msg);
}

START_TEST(encrypted_refused)
{
	expect_load_error(path("enc"), TP_EUNSUPP,
	    "encrypted private keys are not supported");
}
END_TEST

START_TEST(pem_refused)
{
	expect_load_error(path("pem"), TP_ESYNTAX, "ssh-keygen -p");
}
END_TEST

START_TEST(missing_and_public_refused)
{
	expect_load_error(path("nonexistent"), TP_ESYS, "No such file");
	tu_sh("cp %s.pub %s && chmod 600 %s", path("ed25519"), path("pubonly"),
	    path("pubonly"));
	expect_load_error(path("pubonly"), TP_ESYNTAX, "not an OpenSSH");
	expect_load_error(dir, TP_EINVAL, "not a regular file");
}
END_TEST

START_TEST(open_permissions_refused)
{
	tu_sh("cp -p %s %s && chmod 644 %s", path("ed25519"), path("open"),
	    path("open"));
	expect_load_error(path("open"), TP_EDENIED, "chmod 600");
}
END_TEST

/* Decodes the armour of a key file so tests can mutate the binary. */
static uint8_t *
key_binary(const char *file, size_t *len)
{
	size_t tlen;
	char *text = tu_slurp(file, &tlen), *b, *e;
	EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
	uint8_t *out;
	int n1, n2;

	ck_assert_ptr_nonnull(text);
	out = malloc(tlen);
	b = strchr(text, '\n') + 1;
	e = strstr(text, "-----END");
	EVP_DecodeInit(ctx);
	ck_assert_int_ne(EVP_DecodeUpdate(ctx, out, &n1, (uint8_t *)b,
	    (int)(e - b)), -1);
	ck_assert_int_eq(EVP_DecodeFinal(ctx, out + n1, &n2), 1);
	EVP_ENCODE_CTX_free(ctx);
	free(text);
	*len = (size_t)(n1 + n2);
	return out;
}

/* Parses a mutated binary; err (cap SSHKEY_ERR_LEN) gets the reason. */
static int
parse_binary_err(const uint8_t *bin, size_t len, char *err)
{
	char *text = malloc(len * 2 + 200);
	struct sshkey *k;
	int n, rc;

	n = sprintf(text, "-----BEGIN OPENSSH PRIVATE KEY-----\n");
	n += EVP_EncodeBlock((uint8_t *)text + n, bin, (int)len);
	n += sprintf(text + n, "\n-----END OPENSSH PRIVATE KEY-----\n");
	rc = sshkey_parse(text, (size_t)n, "mutant", &k, err, SSHKEY_ERR_LEN);
	if (rc == 0)
		sshkey_free(k);
	else
		ck_assert_msg(strncmp(err, "mutant: ", 8) == 0, "%s", err);
	free(text);
	return rc;
}

static int
parse_binary(const uint8_t *bin, size_t len)
{
	char err[SSHKEY_ERR_LEN];

	return parse_binary_err(bin, len, err);
}

/* Replaces every copy of from (n bytes) in bin by to; returns how many. */
static int
replace_all(uint8_t *bin, size_t len, const uint8_t *from, const uint8_t *to,
    size_t n)
{
	int count = 0;

	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(bin + i, from, n) == 0) {
			memcpy(bin + i, to, n);
			count++;
			i += n - 1;
		}
	return count;
}

/*
 * The public half of the node key is imported by common/sshpub, with the
 * checks a peer's key gets: a point off the curve, or an even RSA
 * exponent, written into both copies of the public key (the outer blob
 * and the private section, so that they still agree) is refused at load
 * as a bad key, before any signature is tried.
 */
START_TEST(public_half_checked_by_sshpub)
{
	static const uint8_t e_good[] = { 0, 0, 0, 3, 0x01, 0x00, 0x01 };
	static const uint8_t e_even[] = { 0, 0, 0, 3, 0x01, 0x00, 0x00 };
	char err[SSHKEY_ERR_LEN], pubfile[300], *line;
	struct sshbuf_reader r;
	const uint8_t *t, *c, *q;
	uint8_t *bin, *blob, *bad;
	size_t len, blen, tl, cl, ql;

	/* ECDSA: flip the last byte of Q (its y) in both copies. */
	bin = key_binary(path("ecdsa256"), &len);
	snprintf(pubfile, sizeof(pubfile), "%s.pub", path("ecdsa256"));
	ck_assert_ptr_nonnull(line = tu_slurp(pubfile, &tl));
	ck_assert_int_eq(sshpub_from_line(line, &blob, &blen), 0);
	sshbuf_reader_init(&r, blob, blen);
	ck_assert_int_eq(sshbuf_get_string(&r, &t, &tl), 0);
	ck_assert_int_eq(sshbuf_get_string(&r, &c, &cl), 0);
	ck_assert_int_eq(sshbuf_get_string(&r, &q, &ql), 0);
	ck_assert_uint_eq(ql, 65);
	bad = malloc(ql);
	memcpy(bad, q, ql);
	bad[ql - 1] ^= 0x01;
	ck_assert_int_eq(replace_all(bin, len, q, bad, ql), 2);
	ck_assert_int_eq(parse_binary_err(bin, len, err), TP_ECRYPTO);
	ck_assert_msg(strstr(err, "bad ecdsa-sha2-nistp256 private key") !=
	    NULL, "%s", err);
	free(bad);
	free(blob);
	free(line);
	free(bin);

	/* RSA: e = 65537 becomes 65536 in both copies. */
	bin = key_binary(path("rsa"), &len);
	ck_assert_int_eq(replace_all(bin, len, e_good, e_even,
	    sizeof(e_good)), 2);
	ck_assert_int_eq(parse_binary_err(bin, len, err), TP_EPROTO);
	ck_assert_msg(strstr(err, "bad ssh-rsa private key") != NULL, "%s",
	    err);
	free(bin);
}
END_TEST

START_TEST(parse_roundtrip_in_memory)
{
	size_t len;
	uint8_t *bin = key_binary(path(ktypes[_i].file), &len);

	ck_assert_int_eq(parse_binary(bin, len), 0);
	free(bin);
}
END_TEST

/*
 * Bit flips, byte flips and truncations of every key type's binary: the
 * parser returns an error or (for a flip in the comment) a key that still
 * signs correctly -- never a crash, never a key whose private part does not
 * match its public part (the load self-test rules that out).
 */
START_TEST(mutations_never_crash)
{
	size_t len;
	uint8_t *bin = key_binary(path(ktypes[_i].file), &len);
	size_t step = len > 600 ? 7 : 1;

	for (size_t i = 0; i < len; i += step) {
		for (int b = 0; b < 8; b += (step > 1 ? 3 : 1)) {
			bin[i] ^= (uint8_t)(1 << b);
			parse_binary(bin, len);
			bin[i] ^= (uint8_t)(1 << b);
		}
		uint8_t save = bin[i];
		bin[i] = 0xff;
		parse_binary(bin, len);
		bin[i] = 0;
		parse_binary(bin, len);
		bin[i] = save;
	}
	for (size_t n = 0; n < len; n += step)
		ck_assert_int_ne(parse_binary(bin, n), 0);
	free(bin);
}
END_TEST

START_TEST(garbage_text_refused)
{
	struct sshkey *k;
	char err[SSHKEY_ERR_LEN];
	const char *cases[] = {
		"",
		"-----BEGIN OPENSSH PRIVATE KEY-----\n",
		"-----BEGIN OPENSSH PRIVATE KEY-----\n!!!!\n"
		    "-----END OPENSSH PRIVATE KEY-----\n",
		"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n"
		    "-----END OPENSSH PRIVATE KEY-----\n",
		"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n",
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_int_lt(sshkey_parse(cases[i], strlen(cases[i]), "g",
		    &k, err, sizeof(err)), 0);
	ck_assert_int_eq(sshkey_parse("a\0b", 3, "g", &k, err, sizeof(err)),
	    TP_ESYNTAX);
}
END_TEST

static int
load_cert(struct sshkey *k, const char *file, char *err, size_t errlen)
{
	err[0] = '\0';
	return sshkey_load_cert(k, path(file), err, errlen);
}

START_TEST(cert_loads)
{
	struct sshkey *k = load("ed25519");
	char err[SSHKEY_ERR_LEN];
	uint64_t after, before;
	size_t len;

	ck_assert_int_eq(sshkey_cert_validity(k, &after, &before), TP_ENOENT);
	ck_assert_int_eq(load_cert(k, "ed25519-cert.pub", err, sizeof(err)),
	    0);
	ck_assert_str_eq(sshkey_cert_type_name(k),
	    "ssh-ed25519-cert-v01@openssh.com");
	ck_assert_ptr_nonnull(sshkey_cert_blob(k, &len));
	ck_assert_uint_gt(len, 100);
	ck_assert_ptr_nonnull(sshkey_cert_blob(k, NULL));
	ck_assert_ptr_nonnull(sshkey_pub_blob(k, NULL));
	ck_assert_int_eq(sshkey_cert_validity(k, &after, &before), 0);
	ck_assert_uint_eq(before, UINT64_MAX);
	sshkey_free(k);

	k = load("rsa");
	ck_assert_int_eq(load_cert(k, "rsa-cert.pub", err, sizeof(err)), 0);
	ck_assert_str_eq(sshkey_cert_type_name(k),
	    "ssh-rsa-cert-v01@openssh.com");
	sshkey_free(k);
}
END_TEST

static void
expect_cert_error(const char *key, const char *file, int want,
    const char *msg)
{
	struct sshkey *k = load(key);
	char err[SSHKEY_ERR_LEN];
	size_t len;
	int rc = load_cert(k, file, err, sizeof(err));

	ck_assert_msg(rc == want, "%s: got %d want %d (%s)", file, rc, want,
	    err);
	ck_assert_msg(strstr(err, msg) != NULL, "%s lacks \"%s\"", err, msg);
	ck_assert_msg(strncmp(err, path(file), strlen(path(file))) == 0,
	    "%s", err);
	ck_assert_ptr_null(sshkey_cert_blob(k, &len));
	sshkey_free(k);
}

START_TEST(wrong_cert_refused)
{
	expect_cert_error("ed25519", "other-cert.pub", TP_EINVAL,
	    "another key");
	expect_cert_error("ecdsa256", "ed25519-cert.pub", TP_EINVAL,
	    "not a ecdsa-sha2-nistp256-cert");
	expect_cert_error("ed25519", "host-cert.pub", TP_EINVAL,
	    "not a user certificate");
	expect_cert_error("ed25519", "old-cert.pub", TP_EINVAL, "expired");
	expect_cert_error("ed25519", "ed25519.pub", TP_EINVAL, "not a ");
	expect_cert_error("ed25519", "missing-cert.pub", TP_ESYS, "open");
}
END_TEST

/* The blob of ed25519-cert.pub, and room for a line of it (cert_line). */
static uint8_t *
cert_blob(size_t *len, char **line)
{
	size_t tlen;
	char *text = tu_slurp(path("ed25519-cert.pub"), &tlen);
	uint8_t *blob;

	ck_assert_ptr_nonnull(text);
	ck_assert_int_eq(sshpub_from_line(text, &blob, len), 0);
	free(text);
	*line = malloc(*len * 2 + 100);
	return blob;
}

/* Writes the certificate line of the first n bytes of blob into line. */
static const char *
cert_line(char *line, const uint8_t *blob, size_t n)
{
	int k = sprintf(line, "ssh-ed25519-cert-v01@openssh.com ");

	EVP_EncodeBlock((uint8_t *)line + k, blob, (int)n);
	return line;
}

/* A certificate whose CA signature was tampered with is refused. */
START_TEST(tampered_cert_refused)
{
	struct sshkey *k = load("ed25519");
	char err[SSHKEY_ERR_LEN], *b64;
	uint8_t *blob;
	size_t len;

	blob = cert_blob(&len, &b64);
	blob[len - 10] ^= 0x01;		/* inside the CA signature */
	ck_assert_int_eq(sshkey_parse_cert(k, cert_line(b64, blob, len), "t",
	    err, sizeof(err)), TP_ECRYPTO);
	ck_assert_msg(strstr(err, "CA signature") != NULL, "%s", err);
	/* And truncations never crash nor load. */
	for (size_t i = 0; i < len; i++)
		ck_assert_int_ne(sshkey_parse_cert(k, cert_line(b64, blob, i),
		    "t", err, sizeof(err)), 0);
	free(b64);
	free(blob);
	sshkey_free(k);
}
END_TEST

/*
 * The certificate's type is judged before its shape: a truncated
 * certificate of another key type is "not a ... certificate", one of the
 * key's own type "malformed".
 */
START_TEST(cert_type_before_shape)
{
	struct sshkey *ed = load("ed25519"), *ec = load("ecdsa256");
	char err[SSHKEY_ERR_LEN], *b64;
	uint8_t *blob;
	size_t len;

	blob = cert_blob(&len, &b64);
	cert_line(b64, blob, len / 2);
	ck_assert_int_eq(sshkey_parse_cert(ec, b64, "t", err, sizeof(err)),
	    TP_EINVAL);
	ck_assert_msg(strstr(err, "not a ecdsa-sha2-nistp256-cert") != NULL,
	    "%s", err);
	ck_assert_int_eq(sshkey_parse_cert(ed, b64, "t", err, sizeof(err)),
	    TP_EPROTO);
	ck_assert_msg(strstr(err, "malformed certificate") != NULL, "%s",
	    err);
	ck_assert_ptr_null(sshkey_cert_blob(ed, NULL));
	free(b64);
	free(blob);
	sshkey_free(ec);
	sshkey_free(ed);
}
END_TEST

static Suite *
sshkey_suite(void)
{
	Suite *s = suite_create("sshkey");
	TCase *tc = tcase_create("load");

	tcase_add_loop_test(tc, load_each_type, 0, NTYPES);
	tcase_add_loop_test(tc, parse_roundtrip_in_memory, 0, NTYPES);
	tcase_add_test(tc, encrypted_refused);
	tcase_add_test(tc, pem_refused);
	tcase_add_test(tc, missing_and_public_refused);
	tcase_add_test(tc, open_permissions_refused);
	tcase_add_test(tc, garbage_text_refused);
	tcase_add_test(tc, public_half_checked_by_sshpub);
	suite_add_tcase(s, tc);

	tc = tcase_create("sign");
	tcase_add_loop_test(tc, sign_verify_each_type, 0, NTYPES);
	tcase_add_test(tc, sign_bad_flags);
	suite_add_tcase(s, tc);

	tc = tcase_create("cert");
	tcase_add_test(tc, cert_loads);
	tcase_add_test(tc, wrong_cert_refused);
	tcase_add_test(tc, tampered_cert_refused);
	tcase_add_test(tc, cert_type_before_shape);
	suite_add_tcase(s, tc);

	tc = tcase_create("mutation");
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, mutations_never_crash, 0, NTYPES);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	int rc;

	make_keys();
	rc = tu_run(sshkey_suite());
	tu_sh("rm -rf %s", dir);
	return rc;
}
