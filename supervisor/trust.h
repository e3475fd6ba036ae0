/*
 * Which host keys a tunnel trusts, from known_hosts for its dial address.
 * The CONFIG's trust anchors (send.c), the pool's wanted lists
 * (pool_ops.trust) and the session bind (child.c) follow this one rule:
 * never a revoked key; a pinned one; or, while a CA applies to the host,
 * any other (the worker checks its certificate before it claims).
 */
#ifndef TP_SUP_TRUST_H
#define TP_SUP_TRUST_H

#include <stdbool.h>
#include <stddef.h>

struct kh_result;
struct msg_discovery;
struct pool_key;
struct sup;
struct tp_addr;

/* The rule on one known_hosts result; *revoked tells a refusal's reason. */
bool trust_allows(const struct kh_result *r, const char *fp, bool *revoked);

/*
 * known_hosts for a dial address ("host:port") into r, its parts into a.
 * Returns 0, or -1 (a bad address or a failed lookup; r is then empty).
 */
int trust_lookup(struct sup *sup, const char *dial, struct kh_result *r,
    struct tp_addr *a);

/* pool_ops.trust: ok[i] for each announced host key of d (arg: the sup). */
void trust_announced(void *sup, const struct pool_key *k,
    const struct msg_discovery *d, bool *ok);

/*
 * Whether host key fp may be the proxy at dial; if not, why (one line,
 * at most cap bytes).
 */
bool trust_host_key(struct sup *sup, const char *dial, const char *fp,
    char *why, size_t cap);

#endif
