/*
 * The null sandbox (-Dsandbox=none), for sanitizer builds only: ASan, UBSan
 * and LSan make syscalls of their own (sigaltstack, /proc reads, clone for
 * leak checking) that no reviewed allowlist should contain.  It confines
 * nothing, and says so loudly each time a worker enters it.  The rest of
 * the demotion (empty root or Landlock, ids, rlimits, no_new_privs) still
 * happens.
 */
#include <stddef.h>

#include "common/error.h"
#include "common/log.h"
#include "worker/sandbox.h"

static int prepared;

const char *
sandbox_name(void)
{
	return "none";
}

int
sandbox_prepare(const struct sandbox_opts *opts)
{
	if (opts == NULL)
		return TP_EINVAL;
	prepared = 1;
	return 0;
}

int
sandbox_enter(void)
{
	if (!prepared)
		return TP_ESTATE;
	log_warnx("null sandbox (built with -Dsandbox=none): "
	    "no syscall filter, for sanitizer builds only");
	return 0;
}
