/*
 * Which host keys a tunnel trusts, from known_hosts for its dial address:
 * the one rule the CONFIG's trust anchors, the pool's wanted lists and the
 * session bind all follow.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/addr.h"
#include "knownhosts.h"
#include "pool.h"
#include "sup.h"
#include "trust.h"

bool
trust_allows(const struct kh_result *r, const char *fp, bool *revoked)
{
	bool pinned = r->n_cas > 0;

	*revoked = false;
	for (size_t j = 0; j < r->n_revoked && !*revoked; j++)
		*revoked = strcmp(r->revoked[j], fp) == 0;
	for (size_t j = 0; j < r->n_pinned && !pinned; j++)
		pinned = strcmp(r->pinned[j], fp) == 0;
	return pinned && !*revoked;
}

int
trust_lookup(struct sup *sup, const char *dial, struct kh_result *r,
    struct tp_addr *a)
{
	memset(r, 0, sizeof(*r));
	if (tp_addr_parse(dial, 0, a) != 0 ||
	    knownhosts_lookup(sup->trust, a->host, a->port, r) != 0) {
		kh_result_free(r);
		return -1;
	}
	return 0;
}

/* Lookup failures trust nothing. */
void
trust_announced(void *arg, const struct pool_key *k,
    const struct msg_discovery *d, bool *ok)
{
	struct kh_result r;
	struct tp_addr a;
	bool revoked;

	if (trust_lookup(arg, k->dial_addr, &r, &a) != 0) {
		memset(ok, 0, d->n_proxies * sizeof(*ok));
		return;
	}
	for (uint32_t i = 0; i < d->n_proxies; i++)
		ok[i] = trust_allows(&r, d->proxies[i].fp, &revoked);
	kh_result_free(&r);
}

bool
trust_host_key(struct sup *sup, const char *dial, const char *fp, char *why,
    size_t cap)
{
	struct kh_result r;
	struct tp_addr a;
	bool trusted, revoked;

	if (trust_lookup(sup, dial, &r, &a) != 0) {
		snprintf(why, cap, "no trust anchor for %.200s", dial);
		return false;
	}
	trusted = trust_allows(&r, fp, &revoked);
	kh_result_free(&r);
	if (!trusted)
		snprintf(why, cap, "host key %.64s is %s for %.120s", fp,
		    revoked ? "revoked" : "not trusted", a.host);
	return trusted;
}

