/*
 * One reverse_tunnel document: what a tunnel file (a .yaml file of
 * tunnels_dir, one or more documents) and a value of the etcd source hold.
 *
 *   kind: reverse_tunnel
 *   version: v2
 *   metadata: {name: NAME}
 *   spec: {cluster_name, dial_addrs, forwards, discovery, proxy_principals}
 *
 * The parser reports through cfgwalk.c like every configuration parser and
 * gives each tunnel its spec hash, so that the pool can tell "unchanged"
 * from "changed" without comparing fields.
 */
#ifndef TP_SUP_TUNNELDOC_H
#define TP_SUP_TUNNELDOC_H

#include <stddef.h>
#include <stdint.h>

#include "supervisor/cfgerr.h"

#define TUNNEL_MAX_FILE		(16 * 1024 * 1024)	/* per tunnel file */
#define TUNNEL_MAX_DIAL_ADDRS	16
#define TUNNEL_MAX_FORWARDS	32
#define TUNNEL_MAX_PRINCIPALS	16	/* = PROTO_MAX_PRINCIPALS */
#define TUNNEL_PRINCIPAL_MAX	128	/* = PROTO_NAME_MAX, with the NUL */

struct tunnel_forward {
	char		*listen;	/* canonical "host:port" / "[v6]:port" */
	char		*listen_host;	/* as sent in tcpip-forward */
	uint16_t	 listen_port;
	char		*target;	/* canonical "host:port" or "/unix/path" */
	int		 target_is_unix;
};

struct tunnel {
	char			*name;		/* metadata.name */
	char			*cluster_name;	/* unique in the desired set */
	char			**dial_addrs;	/* canonical host:port, 1..16 */
	size_t			 n_dial_addrs;
	struct tunnel_forward	*forwards;	/* 0..32 */
	size_t			 n_forwards;
	int			 discovery;
	/*
	 * Names (or globs) a proxy's host certificate may carry as principal
	 * besides the dial host: the proxies behind a load balancer.  0..16;
	 * only ever from configuration (docs/host-trust.md).
	 */
	char			**proxy_principals;
	size_t			 n_proxy_principals;
	/*
	 * 64-bit FNV-1a over cluster_name, dial_addrs, forwards, discovery
	 * and proxy_principals (length-prefixed, canonical forms): equal
	 * hashes mean an unchanged spec.  metadata.name and the location do
	 * not count.
	 */
	uint64_t		 spec_hash;
	const char		*file;	/* the file name given to the parser */
	unsigned		 line;	/* of the cluster_name value, 1-based */
	unsigned		 col;
};

/* A growable array of tunnels that owns their contents. */
struct tunnel_list {
	struct tunnel	*v;
	size_t		 n;
	size_t		 cap;
};

void tunnel_list_free(struct tunnel_list *l);

/*
 * Parses every document of one tunnel file from memory.  file names it in
 * error lines and becomes each tunnel's file pointer (it must outlive the
 * list).  Appends the tunnels to out and the errors to errs, and returns
 * the number of errors added (0 = the whole file is good).  Duplicate
 * cluster names are not checked here: the cache does that across files.
 */
size_t tunnel_parse_buffer(const char *file, const char *buf, size_t len,
    struct tunnel_list *out, struct cfg_errors *errs);

/* Returns 1 if name is a tunnel file name (*.yaml, no dotfile, no controls). */
int tunnel_file_name_ok(const char *name);

#endif
