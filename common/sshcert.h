/*
 * OpenSSH certificates (PROTOCOL.certkeys in OpenSSH): the wire format,
 * parsed once for both roles.  The supervisor checks the node's user
 * certificate with it (supervisor/sshkey.c), the worker a proxy's host
 * certificate (worker/hostcert.c).  Parsing is strict -- every length
 * checked, the principals, critical options and extensions well formed,
 * at most SSHCERT_MAX_PRINCIPALS names, nothing after the signature -- and
 * says only what the certificate says.  Which CA, which type, whose key,
 * which names and when are the caller's policy.
 */
#ifndef TP_SSHCERT_H
#define TP_SSHCERT_H

#include <stddef.h>
#include <stdint.h>

struct sshbuf_writer;

#define SSHCERT_SUFFIX		"-cert-v01@openssh.com"
#define SSHCERT_TYPE_USER	1	/* SSH2_CERT_TYPE_USER */
#define SSHCERT_TYPE_HOST	2	/* SSH2_CERT_TYPE_HOST */
#define SSHCERT_MAX_PRINCIPALS	256	/* as SSHKEY_CERT_MAX_PRINCIPALS */

/*
 * A parsed certificate.  Every pointer points into the parsed blob, which
 * must outlive it; the packed fields are known to be well formed, so a
 * caller walks them with sshbuf_get_string without further checks.
 */
struct sshcert {
	const char	*name;		/* "ssh-ed25519-cert-v01@openssh.com" */
	const char	*key_type;	/* the certified key's: "ssh-ed25519" */
	const uint8_t	*key;		/* its public fields, encoded as in its
					 * public key blob after the type */
	size_t		 key_len;
	uint32_t	 type;		/* as the CA wrote it: SSHCERT_TYPE_* */
	const uint8_t	*key_id;
	size_t		 key_id_len;
	const uint8_t	*principals;	/* packed strings */
	size_t		 principals_len;
	uint64_t	 valid_after;
	uint64_t	 valid_before;
	const uint8_t	*crit;		/* packed (name, data) string pairs */
	size_t		 crit_len;
	const uint8_t	*ext;		/* packed (name, data) string pairs */
	size_t		 ext_len;
	const uint8_t	*ca;		/* the signature key's public blob */
	size_t		 ca_len;
	const uint8_t	*sig;		/* the CA's SSH signature blob */
	size_t		 sig_len;
	const uint8_t	*signed_data;	/* what sig covers: the blob up to */
	size_t		 signed_len;	/* and including the signature key */
};

/*
 * Parses a certificate blob into c.  Types: ssh-ed25519,
 * ecdsa-sha2-nistp256/384/521 and ssh-rsa certificates.  Returns 0,
 * TP_EUNSUPP (not one of those types), TP_EPROTO (malformed) or TP_EINVAL.
 * c->name and c->key_type are set as soon as the type is read, so a caller
 * can refuse a certificate of the wrong type before a malformed one.
 */
int sshcert_parse(const uint8_t *blob, size_t len, struct sshcert *c);

/*
 * Writes the certified key as a plain public key blob (its type, then its
 * fields, byte for byte) to w; errors are w's (sshbuf_writer_error).
 */
void sshcert_put_key(const struct sshcert *c, struct sshbuf_writer *w);

/*
 * Verifies the signature of the parsed certificate with the signature key
 * it names; whether that key is trusted is the caller's question.
 * Returns sshpub_verify's codes: 0 if valid, TP_ECRYPTO if not,
 * TP_EPROTO / TP_EUNSUPP for a malformed or unsupported key or signature.
 */
int sshcert_verify(const struct sshcert *c);

/*
 * Parses the text form ("ssh-ed25519-cert-v01@openssh.com AAAA... comment")
 * into the certificate blob (malloc'd, caller frees) of at most max bytes.
 * Only syntax and the type are checked.  Returns 0, TP_ESYNTAX, TP_EUNSUPP
 * (not a supported certificate type), TP_ETOOBIG or TP_ENOMEM.
 */
int sshcert_from_line(const char *line, size_t max, uint8_t **blob,
    size_t *len);

#endif
