/*
 * `tunnelpool check-config`: the main file and every file it names,
 * checked the way `run` would load them, every error collected.
 */
#ifndef TP_SUP_CHECKCONFIG_H
#define TP_SUP_CHECKCONFIG_H

#include <stddef.h>

#include "supervisor/cfgerr.h"
#include "supervisor/config.h"

/*
 * Loads the main file, then the known_hosts file and every tunnel file in
 * tunnels_dir, collecting every error.  Returns 0 if everything is valid
 * (and *cfgp set if cfgp is not NULL), or TP_ESYNTAX with the errors in
 * errs (*cfgp still set when the main file itself was valid, NULL
 * otherwise), or TP_ENOMEM.  ntunnels (may be NULL) receives the number
 * of tunnels in the desired set.
 */
int config_check_all(const char *path, const struct config_defaults *defaults,
    struct config **cfgp, size_t *ntunnels, struct cfg_errors *errs);

#endif
