/*
 * The last good set of a keyed tunnel source (etcd), on disk: what lets a
 * supervisor that starts while etcd is unreachable bring its tunnels up.
 *
 * One JSON file, written atomically (a temporary file in the same
 * directory, fsync, rename, fsync of the directory), mode 0600:
 *
 *   {"format":"tunnelpool-etcd-snapshot","version":1,"prefix":"/p/",
 *    "revision":42,"written_ms":1700000000000,"kvs":{"/p/a":"kind: ..."}}
 *
 * kvs holds the last good value of every key, as etcd had it.
 */
#ifndef TP_SUP_SNAPSHOT_H
#define TP_SUP_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define SNAPSHOT_FILE	"etcd-snapshot.json"
#define SNAPSHOT_MAX	(512 * 1024 * 1024)

/*
 * Writes kvs (an object of key -> string value) for prefix at revision to
 * dir/SNAPSHOT_FILE, creating dir (0700) if missing.  Returns 0 or a
 * negative tp_err with a reason in err.
 */
int snapshot_write(const char *dir, const char *prefix, int64_t revision,
    json_t *kvs, char *err, size_t errlen);

/*
 * Reads dir/SNAPSHOT_FILE.  Returns 0 with a new reference in *kvs, the
 * revision and the time it was written; TP_ENOENT if there is none; or
 * another negative tp_err with a reason in err (a file of another prefix
 * is TP_EINVAL: not ours to use).
 */
int snapshot_read(const char *dir, const char *prefix, int64_t *revision,
    uint64_t *written_ms, json_t **kvs, char *err, size_t errlen);

#endif
