/*
 * Reading the files a configuration is made of (the main file, tunnel
 * files, known_hosts, the etcd snapshot and password file), and the paths
 * it names.
 */
#ifndef TP_SUP_CFGREAD_H
#define TP_SUP_CFGREAD_H

#include <stddef.h>

#include "supervisor/cfgerr.h"

/*
 * Reads a whole regular file of at most max bytes into a NUL-terminated
 * malloc'd buffer.  Returns 0, or a negative tp_err with one "FILE:
 * message" line added to errs: TP_EAGAIN when another process has the
 * file open for writing (checked with a read lease; the caller must ignore
 * SIGIO, the lease-break signal).
 */
int cfg_read_file(const char *path, size_t max, char **bufp, size_t *lenp,
    struct cfg_errors *errs);

/*
 * A relative path in a file is taken relative to that file's directory,
 * not to the daemon's working directory ("/" under systemd): replaces *p
 * ("" and absolute paths stay).  Returns 0 or TP_ENOMEM.
 */
int cfg_resolve_path(char **p, const char *file);

#endif
