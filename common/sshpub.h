/*
 * SSH public keys (wire-format blobs) with OpenSSL: parse, fingerprint,
 * verify an SSH signature.  Types: ssh-ed25519, ecdsa-sha2-nistp256/384/521,
 * ssh-rsa (signatures rsa-sha2-256/512; ssh-rsa SHA-1 signatures refused).
 */
#ifndef TP_SSHPUB_H
#define TP_SSHPUB_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define SSHPUB_FP_LEN	64	/* "SHA256:" + 43 chars + NUL fits */

/*
 * RSA moduli accepted (as OpenSSH 9 does), for peers' keys here and for
 * the node's own key in supervisor/sshkey.
 */
#define SSHPUB_RSA_MIN_BITS	2048
#define SSHPUB_RSA_MAX_BITS	16384

/* "SHA256:<unpadded base64 of sha256(blob)>", as ssh-keygen -l prints it. */
int sshpub_fingerprint(const uint8_t *blob, size_t len, char *fp, size_t cap);

/*
 * Parses a public key blob into an EVP_PKEY (caller frees) and copies its
 * type name ("ssh-ed25519", ...) into type.  Returns 0, TP_EPROTO,
 * TP_EUNSUPP or TP_ECRYPTO.
 */
int sshpub_parse(const uint8_t *blob, size_t len, EVP_PKEY **pkey,
    char *type, size_t type_cap);

/*
 * Verifies an SSH signature blob (string algo, string sig) over data with
 * the public key blob.  Returns 0 if valid, TP_ECRYPTO if not, TP_EPROTO /
 * TP_EUNSUPP for malformed or unsupported input.
 */
int sshpub_verify(const uint8_t *key, size_t key_len, const uint8_t *sig,
    size_t sig_len, const uint8_t *data, size_t data_len);

/*
 * The hash of an SSH signature algorithm ("ssh-ed25519",
 * "ecdsa-sha2-nistp256", "rsa-sha2-512", ...): sshpub_verify checks with
 * it and the supervisor's signer signs with it.  *md is NULL for Ed25519,
 * which hashes internally.  Returns 0, TP_EUNSUPP (unknown, or SHA-1
 * "ssh-rsa") or TP_EINVAL.
 */
int sshpub_sig_md(const char *alg, const EVP_MD **md);

/*
 * Parses one OpenSSH public key line ("ssh-ed25519 AAAA... comment") into
 * its wire blob (malloc'd, caller frees).  Returns 0, TP_ESYNTAX, TP_ENOMEM.
 */
int sshpub_from_line(const char *line, uint8_t **blob, size_t *len);

#endif
