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

enum cryptoprov_mode {
	CRYPTOPROV_SSH = 1,	/* installed: only SSH's algorithms */
	CRYPTOPROV_SYSTEM,	/* the system configuration chose providers:
				 * left as it is */
};

/*
 * Installs the provider in the process's default library context.  Call
 * once, after OPENSSL_init_crypto() has loaded the configuration and before
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
