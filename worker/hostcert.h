/*
 * OpenSSH host certificates, checked by the worker itself.
 *
 * libssh cannot check host certificates (LIBSSH-NOTES.md, trap 10): it
 * strips the *-cert-v01 host key algorithms and ignores @cert-authority.
 * So the worker pins nothing in CA mode; it obtains the proxy's host
 * certificate another way (the discovery stream, after authentication)
 * and checks it here, with OpenSSL, against the key libssh used in the key
 * exchange, before it requests any forward.  The certificate comes from an
 * untrusted proxy: every field is bounds-checked, nothing trails, and the
 * whole certificate is capped at HOSTCERT_MAX bytes.  The wire format is
 * parsed by common/sshcert (as the supervisor's user certificate is);
 * what is here is the worker's policy for a host certificate.
 */
#ifndef TP_HOSTCERT_H
#define TP_HOSTCERT_H

#include <stddef.h>
#include <stdint.h>

#define HOSTCERT_MAX		8192	/* bytes of certificate blob */
#define HOSTCERT_WHY_LEN	256	/* enough for any reason we write */

/* What a certificate must satisfy to be trusted. */
struct hostcert_policy {
	const uint8_t *const	*ca;		/* trusted CA public key blobs */
	const size_t		*ca_len;
	size_t			 n_ca;
	const char *const	*names;		/* accepted principals (exact) */
	size_t			 n_names;
	const char *const	*patterns;	/* accepted principals (globs:
						 * '*', '?', case-insensitive) */
	size_t			 n_patterns;
	const uint8_t		*kex_key;	/* host key blob from the KEX */
	size_t			 kex_key_len;
	uint64_t		 now;		/* wall clock, seconds */
};

/*
 * Verifies the certificate blob against the policy: signed (validly) by one
 * of the trusted CAs, a host certificate, no critical options, at least one
 * principal among the accepted names or patterns (an empty principals list, which
 * OpenSSH reads as "any host", is refused), valid_after <= now <
 * valid_before, and certifying exactly the key used in the key exchange.
 *
 * Returns 0 if trusted.  Otherwise writes a reason into why (if why_cap > 0)
 * and returns TP_ETOOBIG (over HOSTCERT_MAX), TP_EPROTO (malformed),
 * TP_EUNSUPP (certificate, key or signature type not supported),
 * TP_ECRYPTO (bad signature), TP_EDENIED (refused by the policy) or
 * TP_EINVAL (bad arguments).
 */
int hostcert_verify(const uint8_t *cert, size_t len,
    const struct hostcert_policy *p, char *why, size_t why_cap);

/*
 * Parses the text form ("ssh-ed25519-cert-v01@openssh.com AAAA... comment")
 * into the certificate blob (malloc'd, caller frees).  Only syntax and the
 * type are checked here; trust is hostcert_verify's job.  Returns 0,
 * TP_ESYNTAX, TP_EUNSUPP (not a supported certificate type), TP_ETOOBIG
 * (over HOSTCERT_MAX) or TP_ENOMEM.
 */
int hostcert_from_line(const char *line, uint8_t **blob, size_t *len);

#endif
