/*
 * The node's private key, held only by the supervisor.
 *
 * libssh 0.10 cannot sign arbitrary data (LIBSSH-NOTES trap 13), so the key
 * is read from an unencrypted OpenSSH private key file (openssh-key-v1, see
 * PROTOCOL.key in OpenSSH) into an OpenSSL EVP_PKEY, and signatures are made
 * with OpenSSL in the SSH wire format.  Types: ssh-ed25519,
 * ecdsa-sha2-nistp256/384/521, ssh-rsa (signing with rsa-sha2-256/512 only).
 * An OpenSSH user certificate for the key may be attached.
 *
 * Functions that can fail return 0 or a negative tp_err code and, when given
 * an err buffer, fill it with "FILE: reason" for the operator.
 */
#ifndef TP_SSHKEY_H
#define TP_SSHKEY_H

#include <stddef.h>
#include <stdint.h>

/* ssh-agent sign request flags (draft-miller-ssh-agent, section 4.5.1). */
#define SSH_AGENT_RSA_SHA2_256	0x02
#define SSH_AGENT_RSA_SHA2_512	0x04

/* Largest private key file read; a 16384-bit RSA key is about 13 KiB. */
#define SSHKEY_FILE_MAX		(64 * 1024)
/* Largest certificate line read. */
#define SSHKEY_CERT_MAX		(64 * 1024)

#define SSHKEY_ERR_LEN		256

enum sshkey_type {
	SSHKEY_ED25519 = 1,
	SSHKEY_ECDSA_P256,
	SSHKEY_ECDSA_P384,
	SSHKEY_ECDSA_P521,
	SSHKEY_RSA,
};

struct sshkey;

/*
 * Loads an unencrypted OpenSSH private key from path.  The file must be a
 * regular file not accessible by group or others (as ssh(1) demands).
 * Returns 0 and *key (free with sshkey_free), or TP_ESYS (open/read
 * failed), TP_EINVAL (not a regular file), TP_EDENIED (permissions),
 * TP_ETOOBIG, TP_ESYNTAX (not an OpenSSH private key), TP_EUNSUPP
 * (encrypted, unknown type, RSA size, several keys), TP_EPROTO /
 * TP_ETRUNC (malformed), TP_ECRYPTO (key material inconsistent),
 * TP_ENOMEM; err (may be NULL) gets "path: reason".
 */
int sshkey_load(const char *path, struct sshkey **key, char *err,
    size_t errlen);

/*
 * As sshkey_load, from the text of a key file in memory; name is used in
 * error messages only.  Same return codes except TP_ESYS, TP_EINVAL and
 * TP_EDENIED.
 */
int sshkey_parse(const char *text, size_t len, const char *name,
    struct sshkey **key, char *err, size_t errlen);

/*
 * Attaches the OpenSSH user certificate read from path (one line,
 * "<type>-cert-v01@openssh.com AAAA... [comment]").  The certificate must
 * be a user certificate, well formed, signed by its CA (signature checked)
 * and certify exactly this key's public key.  Returns 0 or TP_ESYS,
 * TP_ETOOBIG, TP_ESYNTAX, TP_EPROTO, TP_EINVAL (not a user certificate
 * or it certifies another key), TP_ECRYPTO (bad CA signature),
 * TP_EUNSUPP, TP_ENOMEM; err gets "path: reason".  On error the key is
 * left without a certificate.
 */
int sshkey_load_cert(struct sshkey *key, const char *path, char *err,
    size_t errlen);

/* As sshkey_load_cert, from one certificate line in memory. */
int sshkey_parse_cert(struct sshkey *key, const char *line, const char *name,
    char *err, size_t errlen);

/* Zeroes and frees the key; NULL is allowed. */
void sshkey_free(struct sshkey *key);

/* The accessors below never fail; returned pointers live as long as key. */
enum sshkey_type sshkey_type(const struct sshkey *key);
/* Key type name as on the wire: "ssh-ed25519", "ecdsa-sha2-nistp256", ... */
const char *sshkey_type_name(const struct sshkey *key);
/* The public key blob (wire format); never NULL.  len may be NULL. */
const uint8_t *sshkey_pub_blob(const struct sshkey *key, size_t *len);
/*
 * The certificate blob, or NULL (and *len = 0) when none is attached.
 * len may be NULL.
 */
const uint8_t *sshkey_cert_blob(const struct sshkey *key, size_t *len);
/* The certificate type name ("ssh-ed25519-cert-v01@openssh.com") or NULL. */
const char *sshkey_cert_type_name(const struct sshkey *key);
/* Validity window of the certificate (seconds since the epoch); 0 / TP_ENOENT. */
int sshkey_cert_validity(const struct sshkey *key, uint64_t *after,
    uint64_t *before);
/* "SHA256:..." of the public key blob, as ssh-keygen -l prints it. */
const char *sshkey_fingerprint(const struct sshkey *key);
/* The comment stored in the private key file (may be ""). */
const char *sshkey_comment(const struct sshkey *key);

/*
 * The signature algorithm sshkey_sign would use with these agent flags:
 * the key type for ed25519/ecdsa (flags must be 0), "rsa-sha2-256" or
 * "rsa-sha2-512" for RSA (exactly one of the two flags must be set;
 * SHA-1 "ssh-rsa" is never produced).  Returns the name or NULL if the
 * flags are not acceptable for this key.
 */
const char *sshkey_sig_alg(const struct sshkey *key, uint32_t flags);

/*
 * Signs data and returns an SSH signature blob (string algorithm, string
 * signature) in *sig (malloc'd, caller frees) of *siglen bytes.  ECDSA
 * signatures hold (mpint r, mpint s).  Returns 0, TP_EUNSUPP (flags not
 * acceptable, see sshkey_sig_alg), TP_ECRYPTO or TP_ENOMEM.
 */
int sshkey_sign(const struct sshkey *key, const uint8_t *data, size_t len,
    uint32_t flags, uint8_t **sig, size_t *siglen);

#endif
