/*
 * common/sshcert: the OpenSSH certificate wire format, parsed once for
 * the supervisor's user certificate and the worker's host certificates.
 * Certificates are made by the real ssh-keygen (user and host, every
 * supported key type, an ed25519 CA); the cases it will not produce are
 * built here from a real one.  The policies built on top are tested in
 * test_sshkey.c (user) and test_hostcert.c (host).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "common/error.h"
#include "common/sshbuf.h"
#include "common/sshcert.h"
#include "common/sshpub.h"
#include "testutil.h"

/* -V 20240101Z:20340101Z */
#define VALID_AFTER	1704067200ULL
#define VALID_BEFORE	2019686400ULL

static char dir[] = "/tmp/test_sshcert.XXXXXX";

struct kspec {
	const char	*file;
	const char	*args;
	const char	*type;
};

static const struct kspec keys[] = {
	{ "ed25519", "-t ed25519", "ssh-ed25519" },
	{ "ecdsa256", "-t ecdsa -b 256", "ecdsa-sha2-nistp256" },
	{ "ecdsa384", "-t ecdsa -b 384", "ecdsa-sha2-nistp384" },
	{ "ecdsa521", "-t ecdsa -b 521", "ecdsa-sha2-nistp521" },
	{ "rsa", "-t rsa -b 2048", "ssh-rsa" },
};
#define NKEYS	(int)(sizeof(keys) / sizeof(keys[0]))

static void
make_keys(void)
{
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	tu_sh("ssh-keygen -q -N '' -t ed25519 -f %s/ca", dir);
	for (int i = 0; i < NKEYS; i++) {
		tu_sh("ssh-keygen -q -N '' %s -f %s/%s", keys[i].args, dir,
		    keys[i].file);
		tu_sh("cp %s/%s.pub %s/%s-host.pub", dir, keys[i].file, dir,
		    keys[i].file);
		tu_sh("ssh-keygen -q -s %s/ca -I user-%s -n alice,bob "
		    "-V 20240101Z:20340101Z %s/%s.pub", dir, keys[i].file, dir,
		    keys[i].file);
		tu_sh("ssh-keygen -q -s %s/ca -h -I host-%s -n proxy-1 "
		    "-V 20240101Z:20340101Z %s/%s-host.pub", dir, keys[i].file,
		    dir, keys[i].file);
	}
	tu_sh("cp %s/ed25519.pub %s/forced.pub && ssh-keygen -q -s %s/ca "
	    "-I forced -n alice -O force-command=/bin/true %s/forced.pub",
	    dir, dir, dir, dir);
}

/* The first line of a file in dir, decoded (certificate or plain key). */
static uint8_t *
load(const char *file, size_t *len)
{
	char *text = tu_slurp(tu_path(dir, file), len);
	uint8_t *blob;

	ck_assert_msg(text != NULL, "%s", file);
	ck_assert_int_eq(sshpub_from_line(text, &blob, len), 0);
	free(text);
	return blob;
}

static void
expect_string(struct sshbuf_reader *r, const char *want)
{
	const uint8_t *p;
	size_t n;

	ck_assert_int_eq(sshbuf_get_string(r, &p, &n), 0);
	ck_assert_uint_eq(n, strlen(want));
	ck_assert_mem_eq(p, want, n);
}

/* Every field of a user certificate, for every key type. */
START_TEST(parse_user_each_type)
{
	const struct kspec *k = &keys[_i];
	char file[64], id[64], name[96];
	uint8_t *cert, *pub, *ca;
	size_t len, publen, calen;
	struct sshcert c;
	struct sshbuf_writer w;
	struct sshbuf_reader r;

	snprintf(file, sizeof(file), "%s-cert.pub", k->file);
	cert = load(file, &len);
	snprintf(file, sizeof(file), "%s.pub", k->file);
	pub = load(file, &publen);
	ca = load("ca.pub", &calen);
	ck_assert_int_eq(sshcert_parse(cert, len, &c), 0);
	snprintf(name, sizeof(name), "%s%s", k->type, SSHCERT_SUFFIX);
	ck_assert_str_eq(c.name, name);
	ck_assert_str_eq(c.key_type, k->type);
	ck_assert_uint_eq(c.type, SSHCERT_TYPE_USER);
	snprintf(id, sizeof(id), "user-%s", k->file);
	ck_assert_uint_eq(c.key_id_len, strlen(id));
	ck_assert_mem_eq(c.key_id, id, c.key_id_len);
	sshbuf_reader_init(&r, c.principals, c.principals_len);
	expect_string(&r, "alice");
	expect_string(&r, "bob");
	ck_assert_uint_eq(r.len, 0);
	ck_assert_uint_eq(c.valid_after, VALID_AFTER);
	ck_assert_uint_eq(c.valid_before, VALID_BEFORE);
	ck_assert_uint_eq(c.crit_len, 0);
	/* ssh-keygen's default user extensions, permit-pty among them. */
	ck_assert_uint_gt(c.ext_len, 0);
	ck_assert_ptr_nonnull(memmem(c.ext, c.ext_len, "permit-pty", 10));
	ck_assert_uint_eq(c.ca_len, calen);
	ck_assert_mem_eq(c.ca, ca, calen);
	/* The signature closes the blob and covers all before it. */
	ck_assert_ptr_eq(c.signed_data, cert);
	ck_assert_uint_eq(c.signed_len + 4 + c.sig_len, len);
	ck_assert_int_eq(sshcert_verify(&c), 0);
	/* The certified key, as a plain blob, is the key's own. */
	sshbuf_writer_init(&w, 0);
	sshcert_put_key(&c, &w);
	ck_assert_int_eq(sshbuf_writer_error(&w), 0);
	ck_assert_uint_eq(w.len, publen);
	ck_assert_mem_eq(w.p, pub, publen);
	sshbuf_writer_free(&w);
	free(ca);
	free(pub);
	free(cert);
}
END_TEST

START_TEST(parse_host_and_options)
{
	struct sshbuf_reader r;
	struct sshcert c;
	const uint8_t *data;
	uint8_t *cert;
	size_t len, dlen;

	cert = load("ecdsa384-host-cert.pub", &len);
	ck_assert_int_eq(sshcert_parse(cert, len, &c), 0);
	ck_assert_uint_eq(c.type, SSHCERT_TYPE_HOST);
	ck_assert_uint_eq(c.crit_len, 0);
	ck_assert_uint_eq(c.ext_len, 0);
	sshbuf_reader_init(&r, c.principals, c.principals_len);
	expect_string(&r, "proxy-1");
	ck_assert_uint_eq(r.len, 0);
	ck_assert_int_eq(sshcert_verify(&c), 0);
	free(cert);

	/* A critical option is reported, as a (name, data) pair. */
	cert = load("forced-cert.pub", &len);
	ck_assert_int_eq(sshcert_parse(cert, len, &c), 0);
	sshbuf_reader_init(&r, c.crit, c.crit_len);
	expect_string(&r, "force-command");
	ck_assert_int_eq(sshbuf_get_string(&r, &data, &dlen), 0);
	ck_assert_uint_gt(dlen, 0);
	ck_assert_uint_eq(r.len, 0);
	free(cert);
}
END_TEST

/*
 * What is not a certificate we know: a plain key, an unknown type, bad
 * arguments.  The type is known before the rest is read, so a caller can
 * say "wrong type" even of a truncated certificate.
 */
START_TEST(refused_shapes)
{
	struct sshcert c;
	uint8_t *cert, *pub, *big;
	size_t len, publen;

	pub = load("ed25519.pub", &publen);
	ck_assert_int_eq(sshcert_parse(pub, publen, &c), TP_EUNSUPP);
	ck_assert_ptr_null(c.name);
	ck_assert_ptr_null(c.key_type);
	free(pub);

	cert = load("rsa-cert.pub", &len);
	ck_assert_int_eq(sshcert_parse(cert, 40, &c), TP_EPROTO);
	ck_assert_str_eq(c.name, "ssh-rsa" SSHCERT_SUFFIX);
	ck_assert_str_eq(c.key_type, "ssh-rsa");
	/* Nothing may follow the signature. */
	big = malloc(len + 1);
	memcpy(big, cert, len);
	big[len] = 0;
	ck_assert_int_eq(sshcert_parse(big, len + 1, &c), TP_EPROTO);
	ck_assert_int_eq(sshcert_parse(NULL, 0, &c), TP_EINVAL);
	ck_assert_int_eq(sshcert_parse(cert, len, NULL), TP_EINVAL);
	free(big);
	free(cert);
}
END_TEST

/*
 * Rebuilds a host certificate with other principals and extensions
 * (unsigned: only the shape matters here).
 */
static void
rebuild(const struct sshcert *c, const struct sshbuf_writer *principals,
    const void *ext, size_t ext_len, struct sshbuf_writer *w)
{
	sshbuf_writer_init(w, 0);
	sshbuf_put_cstring(w, c->name);
	sshbuf_put_string(w, "nonce", 5);
	sshbuf_put_bytes(w, c->key, c->key_len);
	sshbuf_put_u64(w, 1);
	sshbuf_put_u32(w, c->type);
	sshbuf_put_string(w, c->key_id, c->key_id_len);
	sshbuf_put_string(w, principals->p, principals->len);
	sshbuf_put_u64(w, c->valid_after);
	sshbuf_put_u64(w, c->valid_before);
	sshbuf_put_string(w, c->crit, c->crit_len);
	sshbuf_put_string(w, ext, ext_len);
	sshbuf_put_string(w, NULL, 0);
	sshbuf_put_string(w, c->ca, c->ca_len);
	sshbuf_put_string(w, c->sig, c->sig_len);
	ck_assert_int_eq(sshbuf_writer_error(w), 0);
}

/* At most 256 principals, as OpenSSH; packed sections must be whole. */
START_TEST(packed_sections_strict)
{
	static const uint8_t half_pair[] = { 0, 0, 0, 1, 'x' };
	struct sshbuf_writer pr, w;
	struct sshcert c, d;
	uint8_t *cert;
	size_t len;

	cert = load("ed25519-host-cert.pub", &len);
	ck_assert_int_eq(sshcert_parse(cert, len, &c), 0);
	sshbuf_writer_init(&pr, 0);
	for (int i = 0; i < 256; i++)
		sshbuf_put_cstring(&pr, "p");
	rebuild(&c, &pr, NULL, 0, &w);
	ck_assert_int_eq(sshcert_parse(w.p, w.len, &d), 0);
	ck_assert_int_eq(sshcert_verify(&d), TP_ECRYPTO);	/* rebuilt */
	sshbuf_writer_free(&w);
	sshbuf_put_cstring(&pr, "p");
	rebuild(&c, &pr, NULL, 0, &w);
	ck_assert_int_eq(sshcert_parse(w.p, w.len, &d), TP_EPROTO);
	sshbuf_writer_free(&w);
	/* An extension name without its data. */
	pr.len = 0;
	sshbuf_put_cstring(&pr, "proxy-1");
	rebuild(&c, &pr, half_pair, sizeof(half_pair), &w);
	ck_assert_int_eq(sshcert_parse(w.p, w.len, &d), TP_EPROTO);
	sshbuf_writer_free(&w);
	/* A principal list with a torn string. */
	pr.len = 0;
	sshbuf_put_cstring(&pr, "proxy-1");
	sshbuf_put_u32(&pr, 9);
	rebuild(&c, &pr, NULL, 0, &w);
	ck_assert_int_eq(sshcert_parse(w.p, w.len, &d), TP_EPROTO);
	sshbuf_writer_free(&w);
	sshbuf_writer_free(&pr);
	free(cert);
}
END_TEST

struct mut {
	const uint8_t	*orig;
	size_t		 len;
	int		 parsed;	/* mutants that still parse */
};

/*
 * A mutant either does not parse or its signature does not verify: the
 * CA's signature covers every byte up to it, and a flip inside the
 * signature breaks the signature.
 */
static void
check_mutant(const char *buf, size_t n, void *arg)
{
	struct mut *m = arg;
	struct sshcert c;

	if (n == m->len && memcmp(buf, m->orig, n) == 0)
		return;		/* the substitution was the byte itself */
	if (sshcert_parse((const uint8_t *)buf, n, &c) != 0)
		return;
	m->parsed++;
	ck_assert_msg(n == m->len, "truncation to %zu parsed", n);
	ck_assert_msg(sshcert_verify(&c) != 0, "mutant of %zu bytes verifies",
	    n);
}

START_TEST(mutations_never_verify)
{
	static const unsigned char subst[] = { 0x00, 0xff };
	char file[64];
	struct mut m;
	uint8_t *cert;
	size_t len;

	snprintf(file, sizeof(file), "%s-host-cert.pub", keys[_i].file);
	cert = load(file, &len);
	m = (struct mut){ .orig = cert, .len = len };
	tu_mutate((const char *)cert, len, subst, sizeof(subst), 0,
	    check_mutant, &m);
	/* Flips in the nonce, key id or signature bytes still parse. */
	ck_assert_int_gt(m.parsed, 0);
	free(cert);
}
END_TEST

START_TEST(from_line)
{
	char *text;
	uint8_t *blob;
	size_t len, tlen;

	text = tu_slurp(tu_path(dir, "ed25519-cert.pub"), &tlen);
	ck_assert_ptr_nonnull(text);
	ck_assert_int_eq(sshcert_from_line(text, 8192, &blob, &len), 0);
	free(blob);
	ck_assert_int_eq(sshcert_from_line(text, len - 1, &blob, &len),
	    TP_ETOOBIG);
	ck_assert_ptr_null(blob);
	ck_assert_uint_eq(len, 0);
	free(text);
	text = tu_slurp(tu_path(dir, "ed25519.pub"), &tlen);
	ck_assert_ptr_nonnull(text);
	ck_assert_int_eq(sshcert_from_line(text, 8192, &blob, &len),
	    TP_EUNSUPP);
	ck_assert_ptr_null(blob);
	free(text);
	ck_assert_int_eq(sshcert_from_line("", 8192, &blob, &len),
	    TP_ESYNTAX);
}
END_TEST

static Suite *
sshcert_suite(void)
{
	Suite *s = suite_create("sshcert");
	TCase *tc = tcase_create("parse");

	tcase_add_loop_test(tc, parse_user_each_type, 0, NKEYS);
	tcase_add_test(tc, parse_host_and_options);
	tcase_add_test(tc, refused_shapes);
	tcase_add_test(tc, packed_sections_strict);
	tcase_add_test(tc, from_line);
	suite_add_tcase(s, tc);
	tc = tcase_create("mutation");
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, mutations_never_verify, 0, NKEYS);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	int rc;

	make_keys();
	rc = tu_run(sshcert_suite());
	tu_sh("rm -rf %s", dir);
	return rc;
}
