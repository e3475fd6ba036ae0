/*
 * The tunnel_source key of the main configuration file: where, besides
 * tunnels_dir, desired tunnels come from.  Today one kind, etcd v3:
 *
 *   tunnel_source:
 *     etcd:
 *       endpoints: ["http://127.0.0.1:2379", ...]   1..16, one scheme
 *       prefix: "/tunnelpool/node-1/"               one key per tunnel
 *       tls: {ca: FILE, cert: FILE, key: FILE}      https endpoints
 *       username: NAME                              with password_file
 *       password_file: FILE
 *
 * config.c hands the tunnel_source node to etcd_config_parse and calls the
 * rest of this interface for defaults, paths, checks and printing, so the
 * main file's schema walker does not grow a second schema.
 */
#ifndef TP_SUP_ETCD_CONFIG_H
#define TP_SUP_ETCD_CONFIG_H

#include <stdio.h>

#include <yaml.h>

struct cfg_doc;

#define ETCD_MAX_ENDPOINTS	16
#define ETCD_PREFIX_MAX		512

struct etcd_endpoint {
	char		*url;		/* as written, "http://host:port" */
	char		*host;		/* no brackets for IPv6 */
	unsigned	 port;
	int		 tls;		/* https */
};

/* Strings are never NULL once parsed ("" = unset). */
struct etcd_config {
	int			 enabled;	/* tunnel_source.etcd is present */
	struct etcd_endpoint	 endpoints[ETCD_MAX_ENDPOINTS];
	size_t			 n_endpoints;
	char			*prefix;
	struct {
		char	*ca;		/* resolved paths or "" */
		char	*cert;
		char	*key;
	} tls;
	char			*username;	/* "" = no authentication */
	char			*password_file;
};

/*
 * Parses the tunnel_source mapping into c (which must be zeroed first),
 * reporting problems through d as "FILE:LINE:COL: tunnel_source....".
 * Returns the number of errors added.
 */
size_t etcd_config_parse(struct cfg_doc *d, yaml_node_t *node,
    struct etcd_config *c, const char *keypath);

/*
 * After the walk: NULL strings become "", relative paths are resolved
 * against the main file's directory (file), and the checks that involve
 * more than one key run (reported at root).  fs: also check that the
 * files named are readable.  Returns 0 or TP_ENOMEM.
 */
int etcd_config_finish(struct cfg_doc *d, yaml_node_t *root,
    struct etcd_config *c, const char *file, int fs);

void etcd_config_free(struct etcd_config *c);

/* Deep copy of s into d; 0 or TP_ENOMEM (d left empty). */
int etcd_config_copy(struct etcd_config *d, const struct etcd_config *s);

/* Returns 1 if a and b describe the same source (endpoints, prefix, ...). */
int etcd_config_equal(const struct etcd_config *a,
    const struct etcd_config *b);

/* Returns 1 if s is printable ASCII without spaces (0x21..0x7e only). */
int etcd_printable(const char *s);

/* Prints the tunnel_source block the way the parser reads it back. */
void etcd_config_print(const struct etcd_config *c, FILE *f);

#endif
