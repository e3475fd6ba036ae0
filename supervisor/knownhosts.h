/*
 * OpenSSH known_hosts (the trust.known_hosts file): which host keys and
 * host CAs the workers may trust for a given proxy.
 *
 * Understood: "patterns keytype base64 [comment]" lines with
 * comma-separated patterns ('*' and '?' wildcards, "!pattern" negation,
 * "[host]:port" for ports other than 22), hashed "|1|salt|hash" names
 * (HMAC-SHA1), "@cert-authority" and "@revoked" markers, comments and
 * blank lines.  Matching follows OpenSSH: case-insensitive, and a line
 * whose negated pattern matches does not apply at all.  A parse error is
 * "FILE:LINE: message"; any error fails the whole file (fail closed: the
 * caller keeps its previous trust).
 */
#ifndef TP_SUP_KNOWNHOSTS_H
#define TP_SUP_KNOWNHOSTS_H

#include <stddef.h>
#include <stdint.h>

#include "supervisor/cfgerr.h"

#define KNOWNHOSTS_MAX_FILE	(16 * 1024 * 1024)
#define KNOWNHOSTS_MAX_LINE	16384

struct knownhosts;

struct kh_blob {
	uint8_t	*p;		/* SSH wire-format public key */
	size_t	 len;
};

/* What applies to one (host, port); each list in file order, no repeats. */
struct kh_result {
	char		**pinned;	/* "SHA256:..." of plain host keys */
	size_t		  n_pinned;
	struct kh_blob	 *cas;		/* @cert-authority keys */
	size_t		  n_cas;
	char		**revoked;	/* "SHA256:..." of @revoked keys */
	size_t		  n_revoked;
};

/*
 * Reads and parses path (at most KNOWNHOSTS_MAX_FILE bytes).  Returns 0
 * and a new object in *khp, or a negative tp_err with *khp NULL and the
 * errors added to errs.
 */
int knownhosts_load(const char *path, struct knownhosts **khp,
    struct cfg_errors *errs);

/* As knownhosts_load, from memory; file names the buffer in errors. */
int knownhosts_parse_buffer(const char *file, const char *buf, size_t len,
    struct knownhosts **khp, struct cfg_errors *errs);

void knownhosts_free(struct knownhosts *kh);

/* Returns the number of key lines held. */
size_t knownhosts_count(const struct knownhosts *kh);

/*
 * Fills res with what applies to host at port (0 or 22: the bare host
 * name, otherwise "[host]:port", as OpenSSH looks it up).  Revoked keys
 * are removed from pinned and cas and listed in revoked (a certificate
 * whose key is revoked must also be refused).  Returns 0, TP_EINVAL for
 * an unusable host name, or TP_ENOMEM; free res with kh_result_free.
 */
int knownhosts_lookup(const struct knownhosts *kh, const char *host,
    uint16_t port, struct kh_result *res);

void kh_result_free(struct kh_result *res);

/*
 * OpenSSH's host pattern list match on an already lowercased name: 1 if
 * some pattern matches and no negated one does, -1 if a negated pattern
 * matches, 0 otherwise.  Exposed for tests.
 */
int knownhosts_match_list(const char *name, const char *patterns);

#endif
