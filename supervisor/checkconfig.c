/*
 * check-config (checkconfig.h): the one place that knows the main file,
 * known_hosts and the tunnel files together, so that none of their
 * parsers has to know the others.
 */
#include <stdlib.h>

#include "common/error.h"
#include "supervisor/checkconfig.h"
#include "supervisor/knownhosts.h"
#include "supervisor/tunnels.h"

/* Checks the files a (possibly partly invalid) configuration names. */
static size_t
check_referenced(const struct config *c, int kh_ok, struct cfg_errors *errs)
{
	struct tunnel_cache *tc;
	struct knownhosts *kh;
	size_t n = 0;

	if (kh_ok && c->trust.known_hosts[0] != '\0' &&
	    knownhosts_load(c->trust.known_hosts, &kh, errs) == 0)
		knownhosts_free(kh);
	if (c->tunnels_dir[0] == '\0')
		return 0;
	if ((tc = tunnel_cache_new()) == NULL) {
		cfg_errors_add(errs, "%s: out of memory", c->tunnels_dir);
		return 0;
	}
	tunnel_cache_reload(tc, c->tunnels_dir, errs);
	tunnel_cache_tunnels(tc, &n);
	tunnel_cache_free(tc);
	return n;
}

int
config_check_all(const char *path, const struct config_defaults *defaults,
    struct config **cfgp, size_t *ntunnels, struct cfg_errors *errs)
{
	size_t before = cfg_errors_count(errs), n;
	struct config *cfg;
	int rc, kh_ok;

	if (cfgp != NULL)
		*cfgp = NULL;
	if (ntunnels != NULL)
		*ntunnels = 0;
	rc = config_load_partial(path, defaults, &cfg, &kh_ok, errs);
	if (cfg == NULL)
		return rc;
	n = check_referenced(cfg, kh_ok, errs);
	if (ntunnels != NULL)
		*ntunnels = n;
	if (rc == 0 && cfgp != NULL)
		*cfgp = cfg;
	else
		config_free(cfg);
	return cfg_errors_count(errs) == before ? 0 : TP_ESYNTAX;
}
