/*
 * The worker's OpenSSL, cut down to the algorithms SSH uses.
 *
 * OpenSSL 3 keeps, from the first fetch of an operation on, a method for
 * every algorithm its providers offer for that operation: ~130 ciphers and
 * ~30 digests, most of an idle worker's heap.  cryptoprov_install() puts
 * a provider in front of the default one that offers only the ciphers,
 * digests, key types, signatures, key exchanges, MACs and KDFs SSH uses
 * (the default provider's own implementations, unchanged), and every other
 * operation of the default provider as it is.
 */
#ifndef TP_CRYPTOPROV_H
#define TP_CRYPTOPROV_H

#include <stddef.h>

#include <openssl/crypto.h>

/*
 * The OPENSSL_init_crypto() options that go with the provider: the
 * configuration loaded (a system crypto policy is kept), no error strings
 * (a 52 KiB table), and no legacy name tables (the first fetch would copy
 * every legacy cipher and digest name into the name map: cryptoprov.c).
 */
#define CRYPTOPROV_OPENSSL_INIT	(OPENSSL_INIT_LOAD_CONFIG | \
	OPENSSL_INIT_NO_LOAD_CRYPTO_STRINGS | \
	OPENSSL_INIT_NO_ADD_ALL_CIPHERS | OPENSSL_INIT_NO_ADD_ALL_DIGESTS)

enum cryptoprov_mode {
	CRYPTOPROV_SSH = 1,	/* installed: only SSH's algorithms */
	CRYPTOPROV_SYSTEM,	/* the system configuration chose providers:
				 * left as it is */
};

/*
 * Installs the provider in the process's default library context.  Call
 * once, after OPENSSL_init_crypto(CRYPTOPROV_OPENSSL_INIT) and before
 * anything fetches an algorithm or draws random bytes.  Returns a
 * cryptoprov_mode, or TP_ECRYPTO if OpenSSL refused a step (the default
 * library context then loads the default provider by itself, as it would
 * without this call).
 */
int cryptoprov_install(void);

/* "ssh", "system", or "default" for TP_ECRYPTO: the worker's ready line. */
const char *cryptoprov_name(int mode);

/*
 * The names kept for an OSSL_OP_* operation (OpenSSL's first, canonical
 * names; NULL-terminated), or NULL if the operation is not filtered.
 */
const char *const *cryptoprov_kept(int op);

#endif
