/*
 * First-run preparation: what `tunnelpool run` needs on disk and in the
 * user database before it starts its first worker -- the workers' empty
 * root, the control socket's directory, the state directory, the worker
 * user, tunnels_dir.
 * What the daemon owns is created when missing; what the operator owns is
 * named.  Every refusal is one line that names the setting, the path, the
 * check that failed and the fix.  check-config runs the same checks in
 * FR_CHECK mode, which never changes anything.
 */
#ifndef TP_SUP_FIRSTRUN_H
#define TP_SUP_FIRSTRUN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define FR_LINE_MAX	640

enum fr_mode {
	FR_CHECK = 0,	/* look only: a missing path is reported, not made */
	FR_CREATE,	/* make what is missing, then check it */
};

/*
 * worker.empty_root, for root-started workers (they chroot into it).
 * Every component of the absolute path must be a real directory (no
 * symlink, no "..") owned by root and not writable by group or others --
 * a parent may be a root-owned sticky directory such as /tmp -- and the
 * leaf must be empty.  FR_CREATE makes missing components 0755 root:root.
 * Returns 0 (msg: what was created, or ""), TP_ENOENT in FR_CHECK mode
 * when a component is missing (msg says `run` creates it), or another
 * negative tp_err with the refusal in msg.
 */
int firstrun_empty_root(const char *path, enum fr_mode mode, char *msg,
    size_t cap);

/*
 * The directory of the control socket (control_socket's parent).  It must
 * be a directory (symlinks are followed: /var/run is one).  FR_CREATE
 * makes missing components 0755 (root:root when run as root).  Returns as
 * firstrun_empty_root.
 */
int firstrun_runtime_dir(const char *socket_path, enum fr_mode mode,
    char *msg, size_t cap);

/*
 * state_dir (the etcd source's snapshot): must be a directory; FR_CREATE
 * makes it 0700 (parents 0755), root's when run as root.  Returns as
 * firstrun_empty_root.
 */
int firstrun_state_dir(const char *path, enum fr_mode mode, char *msg,
    size_t cap);

/*
 * worker.user: must exist, and must not be root unless allow_root.  Sets
 * *uid and *gid (may be NULL).  Returns 0, TP_ENOENT (no such user: msg
 * says how to create it) or TP_EDENIED (root).
 */
int firstrun_worker_user(const char *user, bool allow_root, uid_t *uid,
    gid_t *gid, char *msg, size_t cap);

/*
 * The line that names a missing tunnels_dir and its fix; the tunnel cache
 * and check-config both use it, so both say the same.
 */
void firstrun_tunnels_dir_missing(const char *dir, char *msg, size_t cap);

#endif
