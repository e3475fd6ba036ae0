/*
 * worker/cryptoprov: the worker's OpenSSL provider, in this process (every
 * case forks, so each starts with an OpenSSL that has fetched nothing).
 * Kept algorithms are there, and work through the calls libssh makes
 * (legacy EVP_aes_*() getters, EVP_PKEY_new_mac_key, the KDF and MAC
 * fetches by name); others are gone; the DRBG is the HASH-DRBG; and a
 * configuration that activates providers makes the filter step aside.
 * The worker with it against stock sshd: worker_algorithms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <openssl/core_dispatch.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "common/error.h"
#include "worker/cryptoprov.h"
#include "testutil.h"

static char tmpdir[] = "/tmp/test_cryptoprov.XXXXXX";

/* The worker's initialisation (worker_main), then the provider. */
static int
init_as_worker(void)
{
	ck_assert_int_eq(OPENSSL_init_crypto(CRYPTOPROV_OPENSSL_INIT, NULL), 1);
	return cryptoprov_install();
}

/* Whether name can be fetched for op from the default library context. */
static int
fetchable(int op, const char *name)
{
	void *p = NULL;

	switch (op) {
	case OSSL_OP_CIPHER:
		EVP_CIPHER_free(p = EVP_CIPHER_fetch(NULL, name, NULL));
		break;
	case OSSL_OP_DIGEST:
		EVP_MD_free(p = EVP_MD_fetch(NULL, name, NULL));
		break;
	case OSSL_OP_KEYMGMT:
		EVP_KEYMGMT_free(p = EVP_KEYMGMT_fetch(NULL, name, NULL));
		break;
	case OSSL_OP_KEYEXCH:
		EVP_KEYEXCH_free(p = EVP_KEYEXCH_fetch(NULL, name, NULL));
		break;
	case OSSL_OP_SIGNATURE:
		EVP_SIGNATURE_free(p = EVP_SIGNATURE_fetch(NULL, name, NULL));
		break;
	case OSSL_OP_MAC:
		EVP_MAC_free(p = EVP_MAC_fetch(NULL, name, NULL));
		break;
	case OSSL_OP_KDF:
		EVP_KDF_free(p = EVP_KDF_fetch(NULL, name, NULL));
		break;
	default:
		ck_abort_msg("operation %d", op);
	}
	return p != NULL;
}

static const int ops[] = {
	OSSL_OP_CIPHER, OSSL_OP_DIGEST, OSSL_OP_KEYMGMT, OSSL_OP_KEYEXCH,
	OSSL_OP_SIGNATURE, OSSL_OP_MAC, OSSL_OP_KDF,
};
#define NOPS	(sizeof(ops) / sizeof(ops[0]))

/* Of the default provider, not SSH's: each must be gone. */
static const struct {
	int		 op;
	const char	*name;
} dropped[] = {
	{ OSSL_OP_CIPHER, "CAMELLIA-128-CBC" }, { OSSL_OP_CIPHER, "ARIA-256-GCM" },
	{ OSSL_OP_CIPHER, "AES-128-OCB" }, { OSSL_OP_CIPHER, "AES-256-XTS" },
	{ OSSL_OP_CIPHER, "ChaCha20-Poly1305" }, { OSSL_OP_CIPHER, "SM4-CBC" },
	{ OSSL_OP_DIGEST, "SHA3-256" }, { OSSL_OP_DIGEST, "BLAKE2b512" },
	{ OSSL_OP_DIGEST, "SM3" }, { OSSL_OP_DIGEST, "SHA2-224" },
	{ OSSL_OP_KEYMGMT, "X448" }, { OSSL_OP_KEYMGMT, "RSA-PSS" },
	{ OSSL_OP_KEYMGMT, "SM2" }, { OSSL_OP_KEYEXCH, "X448" },
	{ OSSL_OP_SIGNATURE, "ED448" }, { OSSL_OP_SIGNATURE, "SM2" },
	{ OSSL_OP_MAC, "CMAC" }, { OSSL_OP_MAC, "KMAC128" },
	{ OSSL_OP_KDF, "HKDF" }, { OSSL_OP_KDF, "PBKDF2" },
};
#define NDROPPED	(sizeof(dropped) / sizeof(dropped[0]))

START_TEST(test_installed)
{
	ck_assert_int_eq(init_as_worker(), CRYPTOPROV_SSH);
	ck_assert_str_eq(cryptoprov_name(CRYPTOPROV_SSH), "ssh");
}
END_TEST

START_TEST(test_kept_fetchable)
{
	const char *const *names = cryptoprov_kept(ops[_i]);

	ck_assert_int_eq(init_as_worker(), CRYPTOPROV_SSH);
	ck_assert_ptr_nonnull(names);
	for (; *names != NULL; names++)
		ck_assert_msg(fetchable(ops[_i], *names),
		    "operation %d: %s was kept but cannot be fetched", ops[_i],
		    *names);
}
END_TEST

START_TEST(test_dropped)
{
	ck_assert_int_eq(init_as_worker(), CRYPTOPROV_SSH);
	ck_assert_msg(!fetchable(dropped[_i].op, dropped[_i].name),
	    "%s is still offered", dropped[_i].name);
}
END_TEST

/* Without the provider the same names are there: the test can fail. */
START_TEST(test_dropped_exist_without)
{
	ck_assert_int_eq(OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL), 1);
	ck_assert_msg(fetchable(dropped[_i].op, dropped[_i].name),
	    "%s is not in this OpenSSL's default provider", dropped[_i].name);
}
END_TEST

/* Operations the provider does not filter are the default provider's. */
START_TEST(test_unfiltered_whole)
{
	EVP_RAND *r;

	ck_assert_int_eq(init_as_worker(), CRYPTOPROV_SSH);
	ck_assert_ptr_null(cryptoprov_kept(OSSL_OP_RAND));
	ck_assert_ptr_nonnull(r = EVP_RAND_fetch(NULL, "CTR-DRBG", NULL));
	EVP_RAND_free(r);
	ck_assert_ptr_nonnull(r = EVP_RAND_fetch(NULL, "SEED-SRC", NULL));
	EVP_RAND_free(r);
}
END_TEST

/* Random bytes from a HASH-DRBG, in both library contexts. */
START_TEST(test_drbg)
{
	unsigned char a[64], b[64];
	EVP_RAND_CTX *primary;

	ck_assert_int_eq(init_as_worker(), CRYPTOPROV_SSH);
	ck_assert_int_eq(RAND_bytes(a, sizeof(a)), 1);
	ck_assert_int_eq(RAND_priv_bytes(b, sizeof(b)), 1);
	ck_assert_mem_ne(a, b, sizeof(a));
	ck_assert_ptr_nonnull(primary = RAND_get0_primary(NULL));
	ck_assert_str_eq(EVP_RAND_get0_name(EVP_RAND_CTX_get0_rand(primary)),
	    "HASH-DRBG");
}
END_TEST

/* AES-128-GCM through the legacy getter, as libssh calls it. */
static void
gcm_roundtrip(void)
{
	static const unsigned char key[16] = { 1 }, iv[12] = { 2 };
	unsigned char in[100], out[100], back[100], tag[16];
	EVP_CIPHER_CTX *e = EVP_CIPHER_CTX_new(), *d = EVP_CIPHER_CTX_new();
	int n;

	memset(in, 0x5a, sizeof(in));
	ck_assert_int_eq(EVP_EncryptInit_ex(e, EVP_aes_128_gcm(), NULL, key,
	    iv), 1);
	ck_assert_int_eq(EVP_EncryptUpdate(e, out, &n, in, sizeof(in)), 1);
	ck_assert_int_eq(EVP_EncryptFinal_ex(e, out + n, &n), 1);
	ck_assert_int_eq(EVP_CIPHER_CTX_ctrl(e, EVP_CTRL_GCM_GET_TAG, 16, tag),
	    1);
	ck_assert_int_eq(EVP_DecryptInit_ex(d, EVP_aes_128_gcm(), NULL, key,
	    iv), 1);
	ck_assert_int_eq(EVP_DecryptUpdate(d, back, &n, out, sizeof(out)), 1);
	ck_assert_int_eq(EVP_CIPHER_CTX_ctrl(d, EVP_CTRL_GCM_SET_TAG, 16, tag),
	    1);
	ck_assert_int_eq(EVP_DecryptFinal_ex(d, back + n, &n), 1);
	ck_assert_mem_eq(in, back, sizeof(in));
	EVP_CIPHER_CTX_free(e);
	EVP_CIPHER_CTX_free(d);
}

/* libssh's HMAC: a legacy MAC key through EVP_DigestSign (RFC 4231 #2). */
static void
hmac_sha256(void)
{
	static const unsigned char want[] = {
		0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04,
		0x24, 0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08,
		0x9d, 0x27, 0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec,
		0x38, 0x43,
	};
	static const char data[] = "what do ya want for nothing?";
	EVP_PKEY *k = EVP_PKEY_new_mac_key(EVP_PKEY_HMAC, NULL,
	    (const unsigned char *)"Jefe", 4);
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	unsigned char mac[32];
	size_t len = sizeof(mac);

	ck_assert_ptr_nonnull(k);
	ck_assert_int_eq(EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, k), 1);
	ck_assert_int_eq(EVP_DigestSignUpdate(m, data, strlen(data)), 1);
	ck_assert_int_eq(EVP_DigestSignFinal(m, mac, &len), 1);
	ck_assert_uint_eq(len, 32);
	ck_assert_mem_eq(mac, want, 32);
	EVP_MD_CTX_free(m);
	EVP_PKEY_free(k);
}

/* X25519 both ways, and an Ed25519 signature verified. */
static void
x25519_ed25519(void)
{
	EVP_PKEY *a = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	EVP_PKEY *b = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	unsigned char s1[32], s2[32], sig[64];
	size_t l1 = sizeof(s1), l2 = sizeof(s2), sl = sizeof(sig);
	EVP_PKEY_CTX *c;
	EVP_MD_CTX *m;

	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_nonnull(ed);
	ck_assert_ptr_nonnull(c = EVP_PKEY_CTX_new(a, NULL));
	ck_assert_int_eq(EVP_PKEY_derive_init(c), 1);
	ck_assert_int_eq(EVP_PKEY_derive_set_peer(c, b), 1);
	ck_assert_int_eq(EVP_PKEY_derive(c, s1, &l1), 1);
	EVP_PKEY_CTX_free(c);
	ck_assert_ptr_nonnull(c = EVP_PKEY_CTX_new(b, NULL));
	ck_assert_int_eq(EVP_PKEY_derive_init(c), 1);
	ck_assert_int_eq(EVP_PKEY_derive_set_peer(c, a), 1);
	ck_assert_int_eq(EVP_PKEY_derive(c, s2, &l2), 1);
	EVP_PKEY_CTX_free(c);
	ck_assert_mem_eq(s1, s2, 32);
	ck_assert_ptr_nonnull(m = EVP_MD_CTX_new());
	ck_assert_int_eq(EVP_DigestSignInit(m, NULL, NULL, NULL, ed), 1);
	ck_assert_int_eq(EVP_DigestSign(m, sig, &sl, s1, 32), 1);
	EVP_MD_CTX_free(m);
	ck_assert_ptr_nonnull(m = EVP_MD_CTX_new());
	ck_assert_int_eq(EVP_DigestVerifyInit(m, NULL, NULL, NULL, ed), 1);
	ck_assert_int_eq(EVP_DigestVerify(m, sig, sl, s1, 32), 1);
	sig[0] ^= 1;
	ck_assert_int_ne(EVP_DigestVerify(m, sig, sl, s1, 32), 1);
	EVP_MD_CTX_free(m);
	EVP_PKEY_free(a);
	EVP_PKEY_free(b);
	EVP_PKEY_free(ed);
}

START_TEST(test_libssh_calls)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	static const unsigned char key[32], iv[16];
	EVP_KDF *kdf;
	EVP_MAC *mac;

	ck_assert_int_eq(init_as_worker(), CRYPTOPROV_SSH);
	gcm_roundtrip();
	hmac_sha256();
	x25519_ed25519();
	ck_assert_int_eq(EVP_EncryptInit_ex(c, EVP_chacha20(), NULL, key, iv),
	    1);
	ck_assert_int_eq(EVP_EncryptInit_ex(c, EVP_des_ede3_cbc(), NULL, key,
	    iv), 1);
	EVP_CIPHER_CTX_free(c);
	ck_assert_ptr_nonnull(kdf = EVP_KDF_fetch(NULL, "SSHKDF", NULL));
	EVP_KDF_free(kdf);
	ck_assert_ptr_nonnull(mac = EVP_MAC_fetch(NULL, "poly1305", NULL));
	EVP_MAC_free(mac);
}
END_TEST

/* A configuration that activates providers keeps them: no filter. */
START_TEST(test_system_providers)
{
	const char *conf = tu_path(tmpdir, "openssl.cnf");
	FILE *f;

	ck_assert_ptr_nonnull(f = fopen(conf, "w"));
	fputs("openssl_conf = openssl_init\n[openssl_init]\n"
	    "providers = provider_sect\n[provider_sect]\n"
	    "default = default_sect\n[default_sect]\nactivate = 1\n", f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(setenv("OPENSSL_CONF", conf, 1), 0);
	ck_assert_int_eq(init_as_worker(), CRYPTOPROV_SYSTEM);
	ck_assert_str_eq(cryptoprov_name(CRYPTOPROV_SYSTEM), "system");
	ck_assert(fetchable(OSSL_OP_CIPHER, "CAMELLIA-128-CBC"));
	ck_assert(fetchable(OSSL_OP_CIPHER, "AES-128-GCM"));
	gcm_roundtrip();
}
END_TEST

static Suite *
cryptoprov_suite(void)
{
	Suite *s = suite_create("cryptoprov");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_installed);
	tcase_add_loop_test(tc, test_kept_fetchable, 0, NOPS);
	tcase_add_loop_test(tc, test_dropped, 0, NDROPPED);
	tcase_add_loop_test(tc, test_dropped_exist_without, 0, NDROPPED);
	tcase_add_test(tc, test_unfiltered_whole);
	tcase_add_test(tc, test_drbg);
	tcase_add_test(tc, test_libssh_calls);
	tcase_add_test(tc, test_system_providers);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr;
	int failed;

	if (mkdtemp(tmpdir) == NULL)
		return 2;
	/* The system's own configuration must not decide the cases. */
	tu_sh("printf 'openssl_conf = x\\n[x]\\n' > %s/empty.cnf", tmpdir);
	setenv("OPENSSL_CONF", tu_path(tmpdir, "empty.cnf"), 1);
	sr = srunner_create(cryptoprov_suite());
	/* Each case needs an OpenSSL that has fetched nothing yet. */
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	tu_sh("rm -rf %s", tmpdir);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
