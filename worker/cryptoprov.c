/*
 * The worker's OpenSSL provider: the default provider's algorithms, filtered
 * to SSH's (see cryptoprov.h).
 *
 * Why: OpenSSL 3.0 constructs, on the first fetch of an operation, a method
 * for every algorithm of that operation that its providers offer, and keeps
 * them with their names for the life of the process.  A worker needs ten
 * ciphers and five digests; the default provider offers ~130 and ~30, and
 * dozens of key types, signatures and MACs; their stores, names and method
 * objects were ~160 KiB of every idle worker's ~310 KiB heap (measured:
 * bench/README.md, "Idle worker private dirty").  OpenSSL has no switch for
 * that, but what a provider offers is the provider's choice, through public
 * API only:
 *
 * - the default provider is loaded into a library context of its own
 *   (`deflt_ctx`), never into the process's default one;
 * - a built-in provider, "tunnelpool-ssh", is the only provider of the
 *   default library context.  Its query function answers with the default
 *   provider's own algorithm tables: filtered for the operations below
 *   (ciphers, digests, key types, key exchange, signatures, MACs, KDFs),
 *   whole for every other (RAND, encoders, decoders, ...).  Its provider
 *   context is the default provider's, so every implementation is the
 *   default provider's code with the default provider's context: nothing
 *   is reimplemented, and what an implementation fetches inside (HMAC's
 *   digest, a signature's hash) it fetches from `deflt_ctx`, where the
 *   default provider is whole;
 * - the DRBGs of both contexts are HASH-DRBG over SHA-256 (SP 800-90A, as
 *   the default CTR-DRBG over AES-256 is): the CTR-DRBG would fetch
 *   AES-256-CTR inside `deflt_ctx` and so build all ~130 ciphers there;
 * - OPENSSL_INIT_NO_ADD_ALL_CIPHERS/DIGESTS (worker.c): without them the
 *   first fetch copies every legacy cipher and digest name into the name
 *   map anyway (32 KiB).  Nothing in the worker or its libssh looks an
 *   algorithm up by legacy name (EVP_get_cipherbyname()).
 *
 * Fail closed: an algorithm not kept here cannot be used (the handshake or
 * the check that needs it fails); none is ever replaced by another.  The
 * lists are what libssh 0.10 asks OpenSSL for (EVP_aes_*(),
 * EVP_des_ede3_cbc(), EVP_chacha20(), EVP_md5(), EVP_sha*(), "DHX", "RSA",
 * X25519, Ed25519, EC keys, HMAC keys for its MACs, "SSHKDF", "poly1305")
 * and what the worker's own code uses (SHA-256, -384, -512; RSA, ECDSA and
 * Ed25519 verification of host certificates); worker_algorithms runs every
 * cipher, MAC, key exchange, host key and CA type the worker can negotiate
 * against stock sshd with this in place, and fails without any one entry.
 * A system whose OpenSSL configuration activates providers itself (a FIPS
 * provider, a crypto policy) keeps them: the filter steps aside and the
 * worker runs as OpenSSL was configured.
 */
#include <string.h>
#include <strings.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "common/error.h"
#include "worker/cryptoprov.h"

#define CRYPTOPROV_NAME	"tunnelpool-ssh"
#define KEPT_MAX	16	/* table slots per filtered operation */

static const char *const keep_ciphers[] = {
	"AES-128-CBC", "AES-192-CBC", "AES-256-CBC",
	"AES-128-CTR", "AES-192-CTR", "AES-256-CTR",
	"AES-128-GCM", "AES-256-GCM",
	"ChaCha20",		/* chacha20-poly1305@openssh.com, with POLY1305 */
	"DES-EDE3-CBC",		/* 3des-cbc */
	NULL
};

static const char *const keep_digests[] = {
	"MD5",			/* libssh's hmac-md5 and MD5 fingerprints */
	"SHA1",			/* ssh-rsa, the *-sha1 key exchanges, hmac-sha1 */
	"SHA2-256", "SHA2-384", "SHA2-512",
	NULL
};

/* Key types: host keys, key exchanges, and libssh's HMAC keys. */
static const char *const keep_keymgmt[] = {
	"DH", "DHX", "EC", "ED25519", "HMAC", "RSA", "X25519", NULL
};
static const char *const keep_keyexch[] = { "DH", "ECDH", "X25519", NULL };
/* Host key and certificate signatures; HMAC through EVP_DigestSign. */
static const char *const keep_signature[] = {
	"ECDSA", "ED25519", "HMAC", "RSA", NULL
};
static const char *const keep_mac[] = { "HMAC", "POLY1305", NULL };
static const char *const keep_kdf[] = { "SSHKDF", NULL };

/* The operations filtered; any other is the default provider's, whole. */
static struct filtered {
	int			 op;
	const char *const	*keep;
	OSSL_ALGORITHM		 tab[KEPT_MAX + 1];
} filtered[] = {
	{ OSSL_OP_CIPHER, keep_ciphers, { { NULL, NULL, NULL, NULL } } },
	{ OSSL_OP_DIGEST, keep_digests, { { NULL, NULL, NULL, NULL } } },
	{ OSSL_OP_KEYMGMT, keep_keymgmt, { { NULL, NULL, NULL, NULL } } },
	{ OSSL_OP_KEYEXCH, keep_keyexch, { { NULL, NULL, NULL, NULL } } },
	{ OSSL_OP_SIGNATURE, keep_signature,
	    { { NULL, NULL, NULL, NULL } } },
	{ OSSL_OP_MAC, keep_mac, { { NULL, NULL, NULL, NULL } } },
	{ OSSL_OP_KDF, keep_kdf, { { NULL, NULL, NULL, NULL } } },
};
#define N_FILTERED	(sizeof(filtered) / sizeof(filtered[0]))

/* Held for the process's life (and so reachable at exit, for LSan). */
static OSSL_LIB_CTX	*deflt_ctx;
static OSSL_PROVIDER	*deflt;
static OSSL_PROVIDER	*ours;

/* True if the first of the colon-separated names is one of keep. */
static int
kept(const char *const *keep, const char *names)
{
	size_t len = strcspn(names, ":");

	for (; *keep != NULL; keep++)
		if (strlen(*keep) == len && strncasecmp(*keep, names, len) == 0)
			return 1;
	return 0;
}

/*
 * Copies the entries of the default provider's table for op that keep
 * names into out (terminated).  Returns how many, or -1 if the provider
 * has no table for op.
 */
static int
filter_table(int op, const char *const *keep, OSSL_ALGORITHM *out)
{
	const OSSL_ALGORITHM *tab, *a;
	int no_cache = 0, n = 0;

	if ((tab = OSSL_PROVIDER_query_operation(deflt, op, &no_cache)) == NULL)
		return -1;
	for (a = tab; a->algorithm_names != NULL; a++)
		if (n < KEPT_MAX && kept(keep, a->algorithm_names))
			out[n++] = *a;
	memset(&out[n], 0, sizeof(out[n]));
	OSSL_PROVIDER_unquery_operation(deflt, op, tab);
	return n;
}

/* --- the provider --------------------------------------------------------- */

static struct filtered *
filtered_op(int op)
{
	size_t i;

	for (i = 0; i < N_FILTERED; i++)
		if (filtered[i].op == op)
			return &filtered[i];
	return NULL;
}

static const OSSL_ALGORITHM *
prov_query(void *provctx, int op, int *no_cache)
{
	struct filtered *f = filtered_op(op);

	(void)provctx;
	if (f == NULL)
		return OSSL_PROVIDER_query_operation(deflt, op, no_cache);
	*no_cache = 0;
	return f->tab;
}

static void
prov_unquery(void *provctx, int op, const OSSL_ALGORITHM *algs)
{
	(void)provctx;
	if (filtered_op(op) == NULL)
		OSSL_PROVIDER_unquery_operation(deflt, op, algs);
}

static const OSSL_PARAM prov_param_types[] = {
	OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
	OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
	OSSL_PARAM_END
};

static const OSSL_PARAM *
prov_gettable_params(void *provctx)
{
	(void)provctx;
	return prov_param_types;
}

static int
prov_get_params(void *provctx, OSSL_PARAM params[])
{
	OSSL_PARAM *p;

	(void)provctx;
	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL &&
	    !OSSL_PARAM_set_utf8_ptr(p, "tunnelpool: the default provider, "
	    "limited to SSH's algorithms"))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL &&
	    !OSSL_PARAM_set_int(p, 1))
		return 0;
	return 1;
}

static int
prov_get_capabilities(void *provctx, const char *capability,
    OSSL_CALLBACK *cb, void *arg)
{
	(void)provctx;
	return OSSL_PROVIDER_get_capabilities(deflt, capability, cb, arg);
}

/* The default provider stays loaded in deflt_ctx for the process's life. */
static void
prov_teardown(void *provctx)
{
	(void)provctx;
}

static const OSSL_DISPATCH prov_dispatch[] = {
	{ OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))prov_teardown },
	{ OSSL_FUNC_PROVIDER_GETTABLE_PARAMS,
	    (void (*)(void))prov_gettable_params },
	{ OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))prov_get_params },
	{ OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))prov_query },
	{ OSSL_FUNC_PROVIDER_UNQUERY_OPERATION, (void (*)(void))prov_unquery },
	{ OSSL_FUNC_PROVIDER_GET_CAPABILITIES,
	    (void (*)(void))prov_get_capabilities },
	{ 0, NULL }
};

static int
prov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
    const OSSL_DISPATCH **out, void **provctx)
{
	(void)handle;
	(void)in;
	if (deflt == NULL)
		return 0;
	/* The default provider's implementations get their own context. */
	*provctx = OSSL_PROVIDER_get0_provider_ctx(deflt);
	*out = prov_dispatch;
	return 1;
}

/* --- installing ----------------------------------------------------------- */

static int
count_provider(OSSL_PROVIDER *p, void *arg)
{
	(void)p;
	(*(int *)arg)++;
	return 1;
}

static void
drop_deflt(void)
{
	if (deflt != NULL)
		(void)OSSL_PROVIDER_unload(deflt);
	deflt = NULL;
	OSSL_LIB_CTX_free(deflt_ctx);
	deflt_ctx = NULL;
}

/* The default provider in a context of its own, and the filtered tables. */
static int
load_deflt(void)
{
	size_t i;

	if ((deflt_ctx = OSSL_LIB_CTX_new()) == NULL)
		return TP_ECRYPTO;
	/* Before anything in deflt_ctx draws random bytes. */
	if (RAND_set_DRBG_type(deflt_ctx, "HASH-DRBG", NULL, NULL,
	    "SHA256") != 1 ||
	    (deflt = OSSL_PROVIDER_load(deflt_ctx, "default")) == NULL)
		goto fail;
	for (i = 0; i < N_FILTERED; i++)
		if (filter_table(filtered[i].op, filtered[i].keep,
		    filtered[i].tab) <= 0)
			goto fail;
	return 0;
fail:
	drop_deflt();
	return TP_ECRYPTO;
}

int
cryptoprov_install(void)
{
	int n = 0;

	if (EVP_default_properties_is_fips_enabled(NULL))
		return CRYPTOPROV_SYSTEM;
	if (load_deflt() != 0)
		return TP_ECRYPTO;
	if (OSSL_PROVIDER_add_builtin(NULL, CRYPTOPROV_NAME, prov_init) != 1 ||
	    (ours = OSSL_PROVIDER_load(NULL, CRYPTOPROV_NAME)) == NULL) {
		drop_deflt();
		return TP_ECRYPTO;
	}
	/*
	 * Only now can the configuration's providers be counted: asking
	 * earlier would have made OpenSSL activate its fallback (the default
	 * provider) in the default context.  Ours is one of them.
	 */
	(void)OSSL_PROVIDER_do_all(NULL, count_provider, &n);
	if (n > 1 || RAND_set_DRBG_type(NULL, "HASH-DRBG", NULL, NULL,
	    "SHA256") != 1) {
		(void)OSSL_PROVIDER_unload(ours);
		ours = NULL;
		drop_deflt();
		if (n > 1)
			return CRYPTOPROV_SYSTEM;
		/* Nothing else is loaded: what the fallback would have done. */
		(void)OSSL_PROVIDER_load(NULL, "default");
		return TP_ECRYPTO;
	}
	return CRYPTOPROV_SSH;
}

const char *const *
cryptoprov_kept(int op)
{
	struct filtered *f = filtered_op(op);

	return f != NULL ? f->keep : NULL;
}

const char *
cryptoprov_name(int mode)
{
	switch (mode) {
	case CRYPTOPROV_SSH:
		return "ssh";
	case CRYPTOPROV_SYSTEM:
		return "system";
	default:
		return "default";
	}
}
