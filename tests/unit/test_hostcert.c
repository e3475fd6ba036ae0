/*
 * worker/hostcert: OpenSSH host certificates made by ssh-keygen at test time
 * (ed25519, ECDSA and RSA CAs; every supported host key type), plus
 * certificates built here field by field and signed through OpenSSL for the
 * cases ssh-keygen will not produce (a host certificate with a critical
 * option, malformed sections under a valid signature).  The built ones are
 * first shown to be valid by `ssh-keygen -L`, which checks the CA signature,
 * so the builder is known to speak the real format.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <openssl/evp.h>

#include "common/error.h"
#include "common/sshbuf.h"
#include "common/sshpub.h"
#include "worker/hostcert.h"
#include "testutil.h"

static char tmpdir[] = "/tmp/test_hostcert.XXXXXX";

static const char *ca_names[] = { "ca-ed25519", "ca-ecdsa", "ca-rsa" };
#define NCA	3

struct hostspec {
	const char	*name;
	const char	*args;
};

static const struct hostspec hosts[] = {
	{ "h-ed25519", "-t ed25519" },
	{ "h-ecdsa256", "-t ecdsa -b 256" },
	{ "h-ecdsa384", "-t ecdsa -b 384" },
	{ "h-ecdsa521", "-t ecdsa -b 521" },
	{ "h-rsa", "-t rsa -b 2048" },
};
#define NHOST	5

static const char *names[] = { "proxy-1", "proxy-1.example" };

/* Built certificates: signed here by an OpenSSL-generated ed25519 CA. */
static EVP_PKEY *tca;
static uint8_t tca_blob[51];

static uint8_t *
load(const char *file, size_t *len, int cert)
{
	char path[512], line[16384];
	uint8_t *blob = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, file);
	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	fclose(f);
	if (cert)
		ck_assert_int_eq(hostcert_from_line(line, &blob, len), 0);
	else
		ck_assert_int_eq(sshpub_from_line(line, &blob, len), 0);
	return blob;
}

/* A policy with all three CAs, both names, the given KEX key, now. */
struct pol {
	struct hostcert_policy	p;
	const uint8_t		*ca[NCA + 1];
	size_t			 ca_len[NCA + 1];
	uint8_t			*kex;
};

static void
pol_init(struct pol *x, const char *host)
{
	char file[128];
	int i;

	memset(x, 0, sizeof(*x));
	for (i = 0; i < NCA; i++) {
		snprintf(file, sizeof(file), "%s.pub", ca_names[i]);
		x->ca[i] = load(file, &x->ca_len[i], 0);
	}
	x->ca[NCA] = tca_blob;
	x->ca_len[NCA] = sizeof(tca_blob);
	snprintf(file, sizeof(file), "%s.pub", host);
	x->kex = load(file, &x->p.kex_key_len, 0);
	x->p.kex_key = x->kex;
	x->p.ca = x->ca;
	x->p.ca_len = x->ca_len;
	x->p.n_ca = NCA + 1;
	x->p.names = names;
	x->p.n_names = 2;
	x->p.now = (uint64_t)time(NULL);
}

static void
pol_free(struct pol *x)
{
	int i;

	for (i = 0; i < NCA; i++)
		free((void *)x->ca[i]);
	free(x->kex);
}

/* Verifies file against the default policy for host; checks the reason. */
static int
check_file(const char *file, const char *host, const char *why_has)
{
	char why[HOSTCERT_WHY_LEN];
	struct pol x;
	uint8_t *cert;
	size_t len;
	int rc;

	pol_init(&x, host);
	cert = load(file, &len, 1);
	rc = hostcert_verify(cert, len, &x.p, why, sizeof(why));
	ck_assert_msg(strstr(why, why_has) != NULL, "%s: why \"%s\", want "
	    "\"%s\"", file, why, why_has);
	free(cert);
	pol_free(&x);
	return rc;
}

/* Every CA type × every host key type: accepted. */
START_TEST(test_valid)
{
	char file[128];
	int ca = _i / NHOST, h = _i % NHOST;

	snprintf(file, sizeof(file), "c-%s-%s-cert.pub", ca_names[ca],
	    hosts[h].name);
	ck_assert_int_eq(check_file(file, hosts[h].name, "ok"), 0);
}
END_TEST

START_TEST(test_untrusted_ca)
{
	ck_assert_int_eq(check_file("neg-otherca-cert.pub", "h-ed25519",
	    "signed by an untrusted CA"), TP_EDENIED);
}
END_TEST

START_TEST(test_user_cert)
{
	ck_assert_int_eq(check_file("neg-user-cert.pub", "h-ed25519",
	    "not a host certificate"), TP_EDENIED);
	ck_assert_int_eq(check_file("neg-userforce-cert.pub", "h-ed25519",
	    "not a host certificate"), TP_EDENIED);
}
END_TEST

START_TEST(test_wrong_principal)
{
	ck_assert_int_eq(check_file("neg-name-cert.pub", "h-ed25519",
	    "principal mismatch"), TP_EDENIED);
}
END_TEST

START_TEST(test_no_principals)
{
	ck_assert_int_eq(check_file("neg-nonames-cert.pub", "h-ed25519",
	    "no principals"), TP_EDENIED);
}
END_TEST

START_TEST(test_expired)
{
	ck_assert_int_eq(check_file("neg-expired-cert.pub", "h-ed25519",
	    "expired"), TP_EDENIED);
	ck_assert_int_eq(check_file("neg-future-cert.pub", "h-ed25519",
	    "not yet valid"), TP_EDENIED);
}
END_TEST

START_TEST(test_sha1_ca_signature)
{
	ck_assert_int_eq(check_file("neg-sha1-cert.pub", "h-ed25519",
	    "not supported"), TP_EUNSUPP);
}
END_TEST

/* The certificate is fine but certifies another key than the KEX one. */
START_TEST(test_kex_key_mismatch)
{
	int h;

	for (h = 1; h < NHOST; h++)
		ck_assert_int_eq(check_file("c-ca-ed25519-h-ed25519-cert.pub",
		    hosts[h].name, "not the key used in the key exchange"),
		    TP_EDENIED);
	ck_assert_int_eq(check_file("c-ca-ed25519-h-ed25519-cert.pub",
	    "ca-ed25519", "not the key used"), TP_EDENIED);
}
END_TEST

/* valid_after <= now < valid_before, exactly at the edges. */
START_TEST(test_validity_edges)
{
	const uint64_t after = 1893456000, before = 1896134400;	/* 2030 */
	static const struct {
		int64_t delta_after, delta_before;
		int want;
	} cases[] = { { -1, 0, TP_EDENIED }, { 0, 0, 0 }, { 1, 0, 0 } };
	char why[HOSTCERT_WHY_LEN];
	struct pol x;
	uint8_t *cert;
	size_t len, i;

	pol_init(&x, "h-ed25519");
	cert = load("fixed-cert.pub", &len, 1);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		x.p.now = after + (uint64_t)cases[i].delta_after;
		ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why,
		    sizeof(why)), cases[i].want);
	}
	x.p.now = before - 1;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    0);
	x.p.now = before;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    TP_EDENIED);
	ck_assert_ptr_nonnull(strstr(why, "expired"));
	x.p.now = 0;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    TP_EDENIED);
	ck_assert_ptr_nonnull(strstr(why, "not yet valid"));
	free(cert);
	pol_free(&x);
}
END_TEST

/* Policy variations: CA order, one name, no CA, no names, exact match. */
START_TEST(test_policy)
{
	static const char *n2[] = { "other", "proxy-1.example" };
	static const char *n_case[] = { "PROXY-1", "proxy-1.", "proxy-" };
	char why[HOSTCERT_WHY_LEN];
	struct pol x;
	uint8_t *cert;
	size_t len;

	pol_init(&x, "h-ecdsa256");
	cert = load("c-ca-rsa-h-ecdsa256-cert.pub", &len, 1);
	x.p.names = n2;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    0);
	x.p.n_names = 1;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    TP_EDENIED);
	x.p.names = n_case;
	x.p.n_names = 3;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    TP_EDENIED);
	x.p.n_names = 0;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    TP_EDENIED);
	x.p.names = names;
	x.p.n_names = 2;
	x.p.n_ca = 2;		/* ed25519 and ecdsa CAs only */
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    TP_EDENIED);
	ck_assert_str_eq(why, "signed by an untrusted CA");
	x.p.n_ca = 0;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    TP_EDENIED);
	x.p.ca += 2;		/* only the RSA one */
	x.p.ca_len += 2;
	x.p.n_ca = 1;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, NULL, 0), 0);
	free(cert);
	pol_free(&x);
}
END_TEST

START_TEST(test_bad_args)
{
	char why[HOSTCERT_WHY_LEN];
	struct pol x;
	uint8_t *cert, *big;
	size_t len;

	pol_init(&x, "h-ed25519");
	cert = load("c-ca-ed25519-h-ed25519-cert.pub", &len, 1);
	ck_assert_int_eq(hostcert_verify(NULL, len, &x.p, why, sizeof(why)),
	    TP_EINVAL);
	ck_assert_int_eq(hostcert_verify(cert, len, NULL, why, sizeof(why)),
	    TP_EINVAL);
	x.p.kex_key = NULL;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    TP_EINVAL);
	x.p.kex_key = x.kex;
	ck_assert_ptr_nonnull(big = calloc(1, HOSTCERT_MAX + 1));
	memcpy(big, cert, len);
	ck_assert_int_eq(hostcert_verify(big, HOSTCERT_MAX + 1, &x.p, why,
	    sizeof(why)), TP_ETOOBIG);
	ck_assert_int_eq(hostcert_verify(big, HOSTCERT_MAX, &x.p, why,
	    sizeof(why)), TP_EPROTO);	/* trailing zeros */
	ck_assert_str_eq(why, "malformed certificate");
	/* A tiny why buffer is truncated, not overrun. */
	ck_assert_int_eq(hostcert_verify(big, HOSTCERT_MAX, &x.p, why, 4),
	    TP_EPROTO);
	ck_assert_str_eq(why, "mal");
	free(big);
	free(cert);
	pol_free(&x);
}
END_TEST

START_TEST(test_from_line)
{
	char line[16384], path[512];
	uint8_t *blob = NULL;
	size_t len;
	FILE *f;

	snprintf(path, sizeof(path), "%s/h-ed25519.pub", tmpdir);
	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	fclose(f);
	ck_assert_int_eq(hostcert_from_line(line, &blob, &len), TP_EUNSUPP);
	ck_assert_ptr_null(blob);
	ck_assert_int_eq(hostcert_from_line("ssh-ed25519-cert-v01@openssh.com"
	    " !!!!", &blob, &len), TP_ESYNTAX);
	ck_assert_int_eq(hostcert_from_line("", &blob, &len), TP_ESYNTAX);
}
END_TEST

/*
 * Tampering: every single-bit flip anywhere in a real certificate of each
 * CA type is refused, as is every truncation.  Under ASan this also shows
 * that no mutation reads out of bounds.
 */
START_TEST(test_tamper)
{
	char file[128], why[HOSTCERT_WHY_LEN];
	int ca = _i / NHOST, h = _i % NHOST, bit;
	struct pol x;
	uint8_t *cert;
	size_t len, i;

	snprintf(file, sizeof(file), "c-%s-%s-cert.pub", ca_names[ca],
	    hosts[h].name);
	pol_init(&x, hosts[h].name);
	cert = load(file, &len, 1);
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    0);
	for (i = 0; i < len; i++) {
		ck_assert_int_ne(hostcert_verify(cert, i, &x.p, why,
		    sizeof(why)), 0);
		for (bit = 0; bit < 8; bit++) {
			cert[i] ^= 1u << bit;
			ck_assert_msg(hostcert_verify(cert, len, &x.p, why,
			    sizeof(why)) != 0, "flip %zu.%d accepted", i, bit);
			cert[i] ^= 1u << bit;
		}
	}
	free(cert);
	pol_free(&x);
}
END_TEST

/* ---- certificates built here ---- */

struct spec {
	const char	*host;		/* host key file (plain .pub) */
	uint32_t	 type;
	struct sshbuf_writer principals, crit, ext;
	uint64_t	 va, vb;
};

static void
spec_init(struct spec *s)
{
	uint64_t now = (uint64_t)time(NULL);

	memset(s, 0, sizeof(*s));
	s->host = "h-ed25519.pub";
	s->type = 2;
	sshbuf_writer_init(&s->principals, 0);
	sshbuf_writer_init(&s->crit, 0);
	sshbuf_writer_init(&s->ext, 0);
	sshbuf_put_cstring(&s->principals, "proxy-1");
	s->va = now - 60;
	s->vb = now + 3600;
}

static void
spec_free(struct spec *s)
{
	sshbuf_writer_free(&s->principals);
	sshbuf_writer_free(&s->crit);
	sshbuf_writer_free(&s->ext);
}

static void
sign_tca(struct sshbuf_writer *w)
{
	uint8_t sig[64];
	size_t sig_len = sizeof(sig);
	struct sshbuf_writer sw;
	EVP_MD_CTX *m = EVP_MD_CTX_new();

	ck_assert_int_eq(EVP_DigestSignInit(m, NULL, NULL, NULL, tca), 1);
	ck_assert_int_eq(EVP_DigestSign(m, sig, &sig_len, w->p, w->len), 1);
	EVP_MD_CTX_free(m);
	sshbuf_writer_init(&sw, 0);
	sshbuf_put_cstring(&sw, "ssh-ed25519");
	sshbuf_put_string(&sw, sig, sig_len);
	sshbuf_put_string(w, sw.p, sw.len);
	sshbuf_writer_free(&sw);
}

/* Writes a certificate for s->host, signed by the test CA, into w. */
static void
build_cert(const struct spec *s, struct sshbuf_writer *w)
{
	char type[96];
	struct sshbuf_reader r;
	const uint8_t *t;
	uint8_t *key;
	size_t key_len, tlen;

	key = load(s->host, &key_len, 0);
	sshbuf_reader_init(&r, key, key_len);
	ck_assert_int_eq(sshbuf_get_string(&r, &t, &tlen), 0);
	snprintf(type, sizeof(type), "%.*s-cert-v01@openssh.com", (int)tlen,
	    (const char *)t);
	sshbuf_writer_init(w, 0);
	sshbuf_put_cstring(w, type);
	sshbuf_put_string(w, "0123456789abcdef0123456789abcdef", 32);
	sshbuf_put_bytes(w, r.p, r.len);	/* the key's own fields */
	sshbuf_put_u64(w, 42);
	sshbuf_put_u32(w, s->type);
	sshbuf_put_cstring(w, "built");
	sshbuf_put_string(w, s->principals.p, s->principals.len);
	sshbuf_put_u64(w, s->va);
	sshbuf_put_u64(w, s->vb);
	sshbuf_put_string(w, s->crit.p, s->crit.len);
	sshbuf_put_string(w, s->ext.p, s->ext.len);
	sshbuf_put_string(w, NULL, 0);
	sshbuf_put_string(w, tca_blob, sizeof(tca_blob));
	sign_tca(w);
	ck_assert_int_eq(sshbuf_writer_error(w), 0);
	free(key);
}

static int
verify_built(const struct sshbuf_writer *w, const char *host, char *why)
{
	struct pol x;
	char file[128];
	int rc;

	snprintf(file, sizeof(file), "%.*s", (int)(strlen(host) - 4), host);
	pol_init(&x, file);
	rc = hostcert_verify(w->p, w->len, &x.p, why, HOSTCERT_WHY_LEN);
	pol_free(&x);
	return rc;
}

/* Asks OpenSSH's own parser, which checks the CA signature too. */
static void
ssh_keygen_accepts(const struct sshbuf_writer *w)
{
	char path[512];
	unsigned char *b64;
	FILE *f;

	ck_assert_ptr_nonnull(b64 = malloc(w->len * 2 + 4));
	EVP_EncodeBlock(b64, w->p, (int)w->len);
	snprintf(path, sizeof(path), "%s/built-cert.pub", tmpdir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fprintf(f, "ssh-ed25519-cert-v01@openssh.com %s\n", b64);
	fclose(f);
	free(b64);
	tu_sh("ssh-keygen -L -f %s >/dev/null", path);
}

/* The builder makes certificates OpenSSH and we both accept. */
START_TEST(test_built_valid)
{
	char why[HOSTCERT_WHY_LEN];
	struct sshbuf_writer w;
	struct spec s;

	spec_init(&s);
	sshbuf_put_cstring(&s.ext, "permit-pty");	/* ignored */
	sshbuf_put_string(&s.ext, NULL, 0);
	build_cert(&s, &w);
	ssh_keygen_accepts(&w);
	ck_assert_int_eq(verify_built(&w, s.host, why), 0);
	/* A byte after the signature (outside what it covers). */
	sshbuf_put_u8(&w, 0);
	ck_assert_int_eq(verify_built(&w, s.host, why), TP_EPROTO);
	sshbuf_writer_free(&w);
	spec_free(&s);
}
END_TEST

/* ssh-keygen accepts -O only for user certificates; build one for a host. */
START_TEST(test_critical_option)
{
	static const char *opts[] = { "force-command", "source-address",
	    "verify-required", "x\"\n\\y" };
	char why[HOSTCERT_WHY_LEN];
	struct sshbuf_writer w;
	struct spec s;
	size_t i;

	for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		spec_init(&s);
		/* The data is itself a string: force-command "x". */
		sshbuf_put_cstring(&s.crit, opts[i]);
		sshbuf_put_string(&s.crit, "\0\0\0\1x", 5);
		build_cert(&s, &w);
		if (i == 0)
			ssh_keygen_accepts(&w);
		ck_assert_int_eq(verify_built(&w, s.host, why), TP_EDENIED);
		ck_assert_ptr_nonnull(strstr(why, "unknown critical option"));
		/* Hostile names are quoted harmlessly. */
		ck_assert_ptr_null(strchr(why, '\n'));
		ck_assert_ptr_null(strchr(why, '\\'));
		sshbuf_writer_free(&w);
		spec_free(&s);
	}
}
END_TEST

/* Validly signed, but a section is not a well-formed list: malformed. */
START_TEST(test_built_malformed_sections)
{
	char why[HOSTCERT_WHY_LEN];
	struct sshbuf_writer w;
	struct spec s;
	int which;

	for (which = 0; which < 3; which++) {
		spec_init(&s);
		if (which == 0)
			sshbuf_put_u8(&s.principals, 1);
		else if (which == 1)
			sshbuf_put_cstring(&s.crit, "name-without-data");
		else
			sshbuf_put_cstring(&s.ext, "name-without-data");
		build_cert(&s, &w);
		ck_assert_int_eq(verify_built(&w, s.host, why), TP_EPROTO);
		ck_assert_str_eq(why, "malformed certificate");
		sshbuf_writer_free(&w);
		spec_free(&s);
	}
}
END_TEST

/*
 * Configured patterns (proxy_principals): globs, case-insensitive, tried
 * after the exact names; a principal holding a NUL matches none.
 */
START_TEST(test_patterns)
{
	static const char *ok1[] = { "proxy-?" }, *ok2[] = { "*.example" },
	    *ok3[] = { "PROXY-1.EXAMPLE" }, *bad[] = { "*.other", "proxy",
	    "proxy-1.example.*" };
	char why[HOSTCERT_WHY_LEN];
	struct sshbuf_writer w;
	struct spec sp;
	struct pol x;
	uint8_t *cert;
	size_t len;

	pol_init(&x, "h-ecdsa256");
	cert = load("c-ca-rsa-h-ecdsa256-cert.pub", &len, 1);
	x.p.n_names = 0;
	x.p.patterns = ok1;
	x.p.n_patterns = 1;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)), 0);
	x.p.patterns = ok2;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)), 0);
	x.p.patterns = ok3;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)), 0);
	x.p.patterns = bad;
	x.p.n_patterns = 3;
	ck_assert_int_eq(hostcert_verify(cert, len, &x.p, why, sizeof(why)),
	    TP_EDENIED);
	ck_assert_ptr_nonnull(strstr(why, "principal mismatch"));
	free(cert);
	pol_free(&x);
	/* "proxy-1\0x" against a pattern that would match "proxy-1". */
	spec_init(&sp);
	sshbuf_writer_free(&sp.principals);
	sshbuf_writer_init(&sp.principals, 0);
	sshbuf_put_string(&sp.principals, "proxy-1\0x", 9);
	build_cert(&sp, &w);
	pol_init(&x, "h-ed25519");
	x.p.n_names = 0;
	x.p.patterns = ok1;
	x.p.n_patterns = 1;
	ck_assert_int_eq(hostcert_verify(w.p, w.len, &x.p, why, sizeof(why)),
	    TP_EDENIED);
	pol_free(&x);
	sshbuf_writer_free(&w);
	spec_free(&sp);
}
END_TEST

/* More principals than OpenSSH allows; one of them matching. */
START_TEST(test_built_principals)
{
	char why[HOSTCERT_WHY_LEN], name[32];
	struct sshbuf_writer w;
	struct spec s;
	int i;

	spec_init(&s);
	for (i = 0; i < 255; i++) {
		snprintf(name, sizeof(name), "p%d", i);
		sshbuf_put_cstring(&s.principals, name);
	}
	build_cert(&s, &w);		/* 256 principals, proxy-1 first */
	ck_assert_int_eq(verify_built(&w, s.host, why), 0);
	sshbuf_writer_free(&w);
	sshbuf_put_cstring(&s.principals, "p256");
	build_cert(&s, &w);
	ck_assert_int_eq(verify_built(&w, s.host, why), TP_EPROTO);
	sshbuf_writer_free(&w);
	spec_free(&s);
	/* A principal with a NUL never equals a name. */
	spec_init(&s);
	sshbuf_writer_free(&s.principals);
	sshbuf_writer_init(&s.principals, 0);
	sshbuf_put_string(&s.principals, "proxy-1\0x", 9);
	build_cert(&s, &w);
	ck_assert_int_eq(verify_built(&w, s.host, why), TP_EDENIED);
	sshbuf_writer_free(&w);
	spec_free(&s);
}
END_TEST

/* A certified 1024-bit RSA key is refused even when it matches the KEX. */
START_TEST(test_built_weak_host_key)
{
	char why[HOSTCERT_WHY_LEN];
	struct sshbuf_writer w;
	struct spec s;

	spec_init(&s);
	s.host = "h-rsa1024.pub";
	build_cert(&s, &w);
	ck_assert_int_eq(verify_built(&w, s.host, why), TP_EUNSUPP);
	ck_assert_ptr_nonnull(strstr(why, "certified key invalid"));
	sshbuf_writer_free(&w);
	spec_free(&s);
}
END_TEST

static void
make_tca(void)
{
	struct sshbuf_writer w;
	uint8_t pk[32];
	size_t pk_len = sizeof(pk);

	if ((tca = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")) == NULL ||
	    EVP_PKEY_get_raw_public_key(tca, pk, &pk_len) != 1)
		exit(2);
	sshbuf_writer_init(&w, 0);
	sshbuf_put_cstring(&w, "ssh-ed25519");
	sshbuf_put_string(&w, pk, pk_len);
	if (w.len != sizeof(tca_blob))
		exit(2);
	memcpy(tca_blob, w.p, w.len);
	sshbuf_writer_free(&w);
}

/* Signs tmpdir/<host>.pub as <out>-cert.pub with ca and ssh-keygen opts. */
static void
make_cert(const char *out, const char *ca, const char *host,
    const char *opts)
{
	tu_sh("cp %s/%s.pub %s/%s.pub", tmpdir, host, tmpdir, out);
	tu_sh("TZ=UTC ssh-keygen -q -s %s/%s -I id-%s %s %s/%s.pub 2>/dev/null",
	    tmpdir, ca, out, opts, tmpdir, out);
}

static void
make_certs(void)
{
	const char *std = "-h -n proxy-1,proxy-1.example -V -5m:+1h";
	char out[128];
	int c, h;

	for (c = 0; c < NCA; c++)
		for (h = 0; h < NHOST; h++) {
			snprintf(out, sizeof(out), "c-%s-%s", ca_names[c],
			    hosts[h].name);
			make_cert(out, ca_names[c], hosts[h].name, std);
		}
	make_cert("neg-otherca", "ca-other", "h-ed25519", std);
	make_cert("neg-user", "ca-ed25519", "h-ed25519",
	    "-n proxy-1 -V -5m:+1h");
	make_cert("neg-userforce", "ca-ed25519", "h-ed25519",
	    "-n proxy-1 -O force-command=x -V -5m:+1h");
	make_cert("neg-name", "ca-ed25519", "h-ed25519",
	    "-h -n proxy-2,proxy-1.example.org -V -5m:+1h");
	make_cert("neg-nonames", "ca-ed25519", "h-ed25519", "-h -V -5m:+1h");
	make_cert("neg-expired", "ca-ed25519", "h-ed25519",
	    "-h -n proxy-1 -V -2d:-1d");
	make_cert("neg-future", "ca-ed25519", "h-ed25519",
	    "-h -n proxy-1 -V +1d:+2d");
	make_cert("neg-sha1", "ca-rsa", "h-ed25519",
	    "-t ssh-rsa -h -n proxy-1 -V -5m:+1h");
	make_cert("fixed", "ca-ed25519", "h-ed25519",
	    "-h -n proxy-1 -V 20300101000000:20300201000000");
}

static void
setup(void)
{
	static const char *cas[] = { "ca-ed25519 -t ed25519",
	    "ca-ecdsa -t ecdsa", "ca-rsa -t rsa -b 3072",
	    "ca-other -t ed25519", "h-rsa1024 -t rsa -b 1024" };
	size_t i;

	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		exit(2);
	}
	for (i = 0; i < sizeof(cas) / sizeof(cas[0]); i++)
		tu_sh("ssh-keygen -q -N '' -C '' -f %s/%s", tmpdir, cas[i]);
	for (i = 0; i < NHOST; i++)
		tu_sh("ssh-keygen -q -N '' -C '' %s -f %s/%s", hosts[i].args,
		    tmpdir, hosts[i].name);
	make_certs();
	make_tca();
}

static Suite *
hostcert_suite(void)
{
	Suite *s = suite_create("hostcert");
	TCase *tc = tcase_create("keygen");
	TCase *tm = tcase_create("tamper");
	TCase *tb = tcase_create("built");

	tcase_add_loop_test(tc, test_valid, 0, NCA * NHOST);
	tcase_add_test(tc, test_untrusted_ca);
	tcase_add_test(tc, test_user_cert);
	tcase_add_test(tc, test_wrong_principal);
	tcase_add_test(tc, test_no_principals);
	tcase_add_test(tc, test_expired);
	tcase_add_test(tc, test_sha1_ca_signature);
	tcase_add_test(tc, test_kex_key_mismatch);
	tcase_add_test(tc, test_validity_edges);
	tcase_add_test(tc, test_policy);
	tcase_add_test(tc, test_patterns);
	tcase_add_test(tc, test_bad_args);
	tcase_add_test(tc, test_from_line);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	tcase_add_loop_test(tm, test_tamper, 0, NCA * NHOST);
	tcase_set_timeout(tm, 300);
	suite_add_tcase(s, tm);
	tcase_add_test(tb, test_built_valid);
	tcase_add_test(tb, test_critical_option);
	tcase_add_test(tb, test_built_malformed_sections);
	tcase_add_test(tb, test_built_principals);
	tcase_add_test(tb, test_built_weak_host_key);
	tcase_set_timeout(tb, 120);
	suite_add_tcase(s, tb);
	return s;
}

int
main(void)
{
	int rc;

	setup();
	rc = tu_run(hostcert_suite());
	EVP_PKEY_free(tca);
	tu_sh("rm -rf %s", tmpdir);
	return rc;
}
