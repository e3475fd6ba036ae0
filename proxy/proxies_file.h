/*
 * The proxies file read by tunnelpool-discovery (YAML, libyaml):
 *
 *   cluster: prod-eu
 *   proxies:
 *     - name: proxy-1
 *       host_key: "ssh-ed25519 AAAA... root@proxy-1"
 *   self_certificate: /etc/ssh/ssh_host_ed25519_key-cert.pub   # optional
 *
 * Loading is all-or-nothing: the caller keeps serving its previous set
 * whenever a load fails, so a half-written or mistyped file never reaches
 * the nodes.
 */
#ifndef TP_PROXIES_FILE_H
#define TP_PROXIES_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/sshpub.h"
#include "proto/discovery.h"

#define PROXIES_FILE_MAX	(1024 * 1024)	/* bytes */
#define CERT_FILE_MAX		(64 * 1024)

struct proxy_entry {
	char	 name[DISCOVERY_NAME_MAX + 1];
	char	*key_line;		/* normalised "type base64" */
	char	 fp[SSHPUB_FP_LEN];
};

/* Entries are sorted by name, so equal sets compare equal. */
struct proxy_set {
	char			 cluster[DISCOVERY_NAME_MAX + 1];
	struct proxy_entry	*v;
	size_t			 n;
	char			*cert_path;	/* NULL if not configured */
};

/* Where and why a load failed; line and col are 1-based, 0 if unknown. */
struct pf_error {
	unsigned	 line;
	unsigned	 col;
	char		 msg[256];
};

/*
 * Reads and validates path into *set (which the caller later frees with
 * proxy_set_free).  Returns 0; or TP_ESYS (cannot read), TP_ETOOBIG,
 * TP_ESYNTAX (YAML, structure or a bad value) or TP_ENOMEM, with *err
 * filled in and *set left empty.
 */
int proxies_file_load(const char *path, struct proxy_set *set,
    struct pf_error *err);

void proxy_set_free(struct proxy_set *set);

/* Returns true if both sets would be announced identically. */
bool proxy_set_equal(const struct proxy_set *a, const struct proxy_set *b);

/*
 * Reads an OpenSSH certificate file (its first line) into a normalised
 * "type-cert-v01@openssh.com base64" line (malloc'd).  Returns 0, or
 * TP_ESYS, TP_ETOOBIG, TP_ESYNTAX, TP_ENOMEM with *err filled in.
 */
int cert_file_load(const char *path, char **line, struct pf_error *err);

#endif
