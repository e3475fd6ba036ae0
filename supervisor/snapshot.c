/*
 * The on-disk snapshot of a keyed source's last good set (snapshot.h).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/error.h"
#include "common/tptime.h"
#include "supervisor/cfgerr.h"
#include "supervisor/cfgread.h"
#include "supervisor/snapshot.h"

#define FORMAT	"tunnelpool-etcd-snapshot"

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, p, n)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int
fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* Writes text to dir/name through dir/.name.tmp, replacing it at once. */
static int
replace_file(const char *dir, const char *name, const char *text,
    char *err, size_t errlen)
{
	char path[4200], tmp[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: cannot create: %s", dir,
		    strerror(errno));
		return TP_ESYS;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0 || write_all(fd, text, strlen(text)) != 0 ||
	    fsync(fd) != 0) {
		snprintf(err, errlen, "%s: cannot write: %s", tmp,
		    strerror(errno));
		if (fd >= 0) {
			close(fd);
			unlink(tmp);
		}
		return TP_ESYS;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "%s: cannot rename to %s: %s", tmp, path,
		    strerror(errno));
		unlink(tmp);
		return TP_ESYS;
	}
	(void)fsync_dir(dir);
	return 0;
}

int
snapshot_write(const char *dir, const char *prefix, int64_t revision,
    json_t *kvs, char *err, size_t errlen)
{
	json_t *o;
	char *text;
	int rc;

	o = json_pack("{s:s,s:i,s:s,s:I,s:I,s:O}", "format", FORMAT,
	    "version", 1, "prefix", prefix, "revision", (json_int_t)revision,
	    "written_ms", (json_int_t)tp_wall_ms(), "kvs", kvs);
	text = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(o);
	if (text == NULL) {
		snprintf(err, errlen, "snapshot: out of memory");
		return TP_ENOMEM;
	}
	rc = replace_file(dir, SNAPSHOT_FILE, text, err, errlen);
	free(text);
	return rc;
}

/* Checks the document's shape; returns 0 or TP_EPROTO (reason in err). */
static int
check_doc(json_t *o, const char *prefix, char *err, size_t errlen)
{
	json_t *kvs = json_object_get(o, "kvs"), *v;
	const char *fmt = json_string_value(json_object_get(o, "format"));
	const char *pfx = json_string_value(json_object_get(o, "prefix"));
	const char *k;

	if (fmt == NULL || strcmp(fmt, FORMAT) != 0 ||
	    json_integer_value(json_object_get(o, "version")) != 1 ||
	    pfx == NULL || !json_is_integer(json_object_get(o, "revision")) ||
	    !json_is_integer(json_object_get(o, "written_ms")) ||
	    !json_is_object(kvs)) {
		snprintf(err, errlen, "not a tunnelpool etcd snapshot "
		    "(version 1)");
		return TP_EPROTO;
	}
	if (strcmp(pfx, prefix) != 0) {
		snprintf(err, errlen, "of prefix %.200s, not %.200s", pfx,
		    prefix);
		return TP_EINVAL;
	}
	json_object_foreach(kvs, k, v)
		if (!json_is_string(v) || strncmp(k, prefix,
		    strlen(prefix)) != 0) {
			snprintf(err, errlen, "kvs: bad entry");
			return TP_EPROTO;
		}
	return 0;
}

int
snapshot_read(const char *dir, const char *prefix, int64_t *revision,
    uint64_t *written_ms, json_t **kvs, char *err, size_t errlen)
{
	struct cfg_errors e = { 0 };
	char path[4200];
	json_error_t je;
	json_t *o;
	size_t len;
	char *buf;
	int rc;

	*kvs = NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, SNAPSHOT_FILE);
	if (access(path, F_OK) != 0 && errno == ENOENT)
		return TP_ENOENT;
	if ((rc = cfg_read_file(path, SNAPSHOT_MAX, &buf, &len, &e)) != 0) {
		snprintf(err, errlen, "%s", cfg_errors_first(&e) ?
		    cfg_errors_first(&e) : "cannot be read");
		cfg_errors_free(&e);
		return rc;
	}
	o = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (o == NULL) {
		snprintf(err, errlen, "%s: invalid JSON at line %d: %s", path,
		    je.line, je.text);
		return TP_EPROTO;
	}
	if ((rc = check_doc(o, prefix, err, errlen)) == 0) {
		*revision = json_integer_value(json_object_get(o, "revision"));
		*written_ms = (uint64_t)json_integer_value(json_object_get(o,
		    "written_ms"));
		*kvs = json_incref(json_object_get(o, "kvs"));
	}
	json_decref(o);
	return rc;
}
