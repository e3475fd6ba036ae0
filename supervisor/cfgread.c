/*
 * Reading configuration files (cfgread.h): common/readfile.c with a read
 * lease, its failures worded as configuration errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/log.h"
#include "common/readfile.h"
#include "supervisor/cfgread.h"

/*
 * A file some process holds open for writing is being written: what it
 * holds now may be a valid prefix of what is coming (a tunnel file cut
 * after its first document parses fine and would drop every later
 * tunnel).  The kernel answers "is it open for writing?" exactly, with a
 * read lease (TP_RF_LEASE, common/readfile.h).  Leases need the file's
 * owner or CAP_LEASE and a file system that has them; where they are
 * refused for that reason the file is read without one (said once in the
 * log).  A lease break signals SIGIO to us: whoever calls this ignores
 * SIGIO (the supervisor and the CLI do at start).
 */
static void
note_no_lease(const char *path, int err)
{
	static int said;

	if (err == 0 || said)
		return;
	said = 1;
	log_info("file leases unavailable (%s: %s): a file read while being "
	    "written is caught only by its parse", path, strerror(err));
}

int
cfg_read_file(const char *path, size_t max, char **bufp, size_t *lenp,
    struct cfg_errors *errs)
{
	struct tp_rf_result r;
	int rc;

	rc = tp_read_file(path, max, TP_RF_LEASE, bufp, lenp, &r);
	note_no_lease(path, r.lease_err);
	switch (r.fail) {
	case TP_RF_OK:
		break;
	case TP_RF_OPEN:
		cfg_errors_add(errs, "%s: cannot open: %s", path,
		    strerror(r.err));
		break;
	case TP_RF_STAT:
	case TP_RF_NOTREG:
	case TP_RF_MODE:	/* not asked for */
		cfg_errors_add(errs, "%s: not a regular file", path);
		break;
	case TP_RF_SIZE:
		cfg_errors_add(errs, "%s: file too large (%jd bytes, limit %zu)",
		    path, r.size, max);
		break;
	case TP_RF_GREW:
		cfg_errors_add(errs, "%s: file too large (limit %zu)", path,
		    max);
		break;
	case TP_RF_READ:
		cfg_errors_add(errs, "%s: read: %s", path, strerror(r.err));
		break;
	case TP_RF_NOMEM:
		cfg_errors_add(errs, "%s: out of memory", path);
		break;
	case TP_RF_WRITER:
		cfg_errors_add(errs, "%s: open for writing by another process "
		    "(being written?): not read; its last good contents stay "
		    "in effect until the writer closes it", path);
		break;
	case TP_RF_TORN:
		cfg_errors_add(errs, "%s: opened for writing while being read: "
		    "not used; its last good contents stay in effect", path);
		break;
	}
	return rc;
}

/*
 * Relative paths are taken relative to the configuration file's directory,
 * not to the daemon's working directory (which is "/" under systemd).
 */
int
cfg_resolve_path(char **p, const char *file)
{
	const char *slash = strrchr(file, '/');
	char *res;

	if ((*p)[0] == '/' || (*p)[0] == '\0' || slash == NULL)
		return 0;
	if (asprintf(&res, "%.*s/%s", (int)(slash - file), file, *p) < 0)
		return TP_ENOMEM;
	free(*p);
	*p = res;
	return 0;
}
