/*
 * First-run preparation (supervisor/firstrun.c) on a real file system:
 * missing paths made with their parents, and every refusal one line that
 * names the component and the fix.  The chroot rules need root-owned
 * directories, so most cases run only as root (the project's suite runs as
 * root; a package build's does not, and checks the non-root refusal).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "common/error.h"
#include "supervisor/firstrun.h"
#include "testutil.h"

static char top[64];
static char msg[FR_LINE_MAX];

static void
setup(void)
{
	snprintf(top, sizeof(top), "/tmp/tp-firstrun-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(top));
	ck_assert_int_eq(chmod(top, 0755), 0);
}

static void
teardown(void)
{
	tu_sh("rm -rf '%s'", top);
}

static void
assert_dir(const char *path, unsigned mode)
{
	struct stat st;

	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, mode);
	ck_assert_uint_eq(st.st_uid, 0);
	ck_assert_uint_eq(st.st_gid, 0);
}

/* Missing parents are made 0755 root:root, whatever the umask says. */
START_TEST(test_creates_parents)
{
	const char *leaf = tu_path(top, "a/b/empty");
	mode_t old = umask(0077);
	int rc;

	if (geteuid() != 0)
		return;
	ck_assert_int_eq(firstrun_empty_root(leaf, FR_CHECK, msg, sizeof(msg)),
	    TP_ENOENT);
	ck_assert_ptr_nonnull(strstr(msg, "does not exist"));
	ck_assert_ptr_nonnull(strstr(msg, tu_path(top, "a")));
	ck_assert_int_ne(access(tu_path(top, "a"), F_OK), 0);	/* check made nothing */
	rc = firstrun_empty_root(leaf, FR_CREATE, msg, sizeof(msg));
	umask(old);
	ck_assert_msg(rc == 0, "%s", msg);
	ck_assert_ptr_nonnull(strstr(msg, "created, with 2 missing parents"));
	assert_dir(tu_path(top, "a"), 0755);
	assert_dir(tu_path(top, "a/b"), 0755);
	assert_dir(leaf, 0755);
	/* The second run finds it as it left it and has nothing to say. */
	ck_assert_int_eq(firstrun_empty_root(leaf, FR_CREATE, msg, sizeof(msg)),
	    0);
	ck_assert_str_eq(msg, "");
	ck_assert_int_eq(firstrun_empty_root(leaf, FR_CHECK, msg, sizeof(msg)),
	    0);
}
END_TEST

/* A symlink anywhere in the path is refused, in both modes, by name. */
START_TEST(test_symlink_refused)
{
	if (geteuid() != 0)
		return;
	tu_sh("mkdir -p '%s/real/x' && ln -s real '%s/link'", top, top);
	for (int mode = FR_CHECK; mode <= FR_CREATE; mode++) {
		ck_assert_int_eq(firstrun_empty_root(tu_path(top, "link/x"),
		    (enum fr_mode)mode, msg, sizeof(msg)), TP_EINVAL);
		ck_assert_ptr_nonnull(strstr(msg, "is a symlink"));
		ck_assert_ptr_nonnull(strstr(msg, tu_path(top, "link")));
		/* The leaf itself, too. */
		ck_assert_int_eq(firstrun_empty_root(tu_path(top, "link"),
		    (enum fr_mode)mode, msg, sizeof(msg)), TP_EINVAL);
		ck_assert_ptr_nonnull(strstr(msg, "is a symlink"));
	}
}
END_TEST

START_TEST(test_existing_bad)
{
	const char *d = tu_path(top, "d");

	if (geteuid() != 0)
		return;
	ck_assert_int_eq(mkdir(d, 0755), 0);
	/* Not empty. */
	tu_sh("touch '%s/d/stray'", top);
	ck_assert_int_eq(firstrun_empty_root(d, FR_CREATE, msg, sizeof(msg)),
	    TP_EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "is not empty (has stray)"));
	tu_sh("rm '%s/d/stray'", top);
	/* Writable by others, with the fix. */
	ck_assert_int_eq(chmod(d, 0777), 0);
	ck_assert_int_eq(firstrun_empty_root(d, FR_CREATE, msg, sizeof(msg)),
	    TP_EDENIED);
	ck_assert_ptr_nonnull(strstr(msg, "writable by group or others"));
	ck_assert_ptr_nonnull(strstr(msg, "chmod go-w"));
	/* Sticky is fine for a parent (/tmp), never for the leaf. */
	ck_assert_int_eq(chmod(d, 01777), 0);
	ck_assert_int_eq(firstrun_empty_root(d, FR_CREATE, msg, sizeof(msg)),
	    TP_EDENIED);
	ck_assert_int_eq(firstrun_empty_root(tu_path(top, "d/e"), FR_CREATE,
	    msg, sizeof(msg)), 0);
	ck_assert_int_eq(chmod(d, 0755), 0);
	/* Owned by someone else, with the fix. */
	ck_assert_int_eq(chown(d, 65534, 65534), 0);
	ck_assert_int_eq(firstrun_empty_root(tu_path(top, "d/e"), FR_CHECK,
	    msg, sizeof(msg)), TP_EDENIED);
	ck_assert_ptr_nonnull(strstr(msg, "owned by uid 65534, not root"));
	ck_assert_ptr_nonnull(strstr(msg, "chown root:root"));
	/* A file where a directory belongs. */
	tu_sh("touch '%s/f'", top);
	ck_assert_int_eq(firstrun_empty_root(tu_path(top, "f/x"), FR_CREATE,
	    msg, sizeof(msg)), TP_EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "is not a directory"));
}
END_TEST

START_TEST(test_path_forms)
{
	ck_assert_int_eq(firstrun_empty_root("relative/x", FR_CREATE, msg,
	    sizeof(msg)), TP_EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "not an absolute path"));
	ck_assert_int_eq(firstrun_empty_root(tu_path(top, "a/../b"), FR_CREATE,
	    msg, sizeof(msg)), geteuid() == 0 ? TP_EINVAL : TP_EDENIED);
	if (geteuid() == 0)
		ck_assert_ptr_nonnull(strstr(msg, "\"..\""));
	ck_assert_int_ne(access(tu_path(top, "b"), F_OK), 0);
}
END_TEST

/* Not root: the directory a non-root user made is not root's. */
START_TEST(test_non_root_owner)
{
	if (geteuid() == 0)
		return;
	ck_assert_int_eq(firstrun_empty_root(tu_path(top, "x"), FR_CHECK, msg,
	    sizeof(msg)), TP_EDENIED);
	ck_assert_ptr_nonnull(strstr(msg, "not root"));
}
END_TEST

/* The control socket's directory: made with its parents; symlinks followed. */
START_TEST(test_runtime_dir)
{
	char sock[128];
	struct stat st;

	snprintf(sock, sizeof(sock), "%s/run/tp/control.sock", top);
	ck_assert_int_eq(firstrun_runtime_dir(sock, FR_CHECK, msg, sizeof(msg)),
	    TP_ENOENT);
	ck_assert_int_eq(firstrun_runtime_dir(sock, FR_CREATE, msg, sizeof(msg)),
	    0);
	ck_assert_ptr_nonnull(strstr(msg, "created"));
	ck_assert_int_eq(stat(tu_path(top, "run/tp"), &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	tu_sh("ln -s run '%s/varrun'", top);
	snprintf(sock, sizeof(sock), "%s/varrun/tp/control.sock", top);
	ck_assert_int_eq(firstrun_runtime_dir(sock, FR_CREATE, msg, sizeof(msg)),
	    0);
	ck_assert_str_eq(msg, "");
	tu_sh("touch '%s/file'", top);
	snprintf(sock, sizeof(sock), "%s/file/control.sock", top);
	ck_assert_int_eq(firstrun_runtime_dir(sock, FR_CREATE, msg, sizeof(msg)),
	    TP_EINVAL);
	ck_assert_ptr_nonnull(strstr(msg, "is not a directory"));
}
END_TEST

/* The state directory: 0700, its missing parents 0755. */
START_TEST(test_state_dir)
{
	const char *dir = tu_path(top, "lib/tp");
	struct stat st;

	ck_assert_int_eq(firstrun_state_dir(dir, FR_CHECK, msg, sizeof(msg)),
	    TP_ENOENT);
	ck_assert_int_eq(firstrun_state_dir(dir, FR_CREATE, msg, sizeof(msg)),
	    0);
	ck_assert_ptr_nonnull(strstr(msg, "created, with 1 missing parent"));
	ck_assert_ptr_nonnull(strstr(msg, "mode 0700"));
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0700);
	ck_assert_int_eq(stat(tu_path(top, "lib"), &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0755);
	ck_assert_int_eq(firstrun_state_dir(dir, FR_CREATE, msg, sizeof(msg)),
	    0);
	ck_assert_str_eq(msg, "");
}
END_TEST

START_TEST(test_worker_user)
{
	uid_t uid = 1;
	gid_t gid = 1;

	ck_assert_int_eq(firstrun_worker_user("tp-no-such-user-x", false, &uid,
	    &gid, msg, sizeof(msg)), TP_ENOENT);
	ck_assert_ptr_nonnull(strstr(msg, "no such user"));
	ck_assert_ptr_nonnull(strstr(msg, "useradd --system"));
	ck_assert_int_eq(firstrun_worker_user("root", false, &uid, &gid, msg,
	    sizeof(msg)), TP_EDENIED);
	ck_assert_ptr_nonnull(strstr(msg, "worker.allow_root"));
	ck_assert_int_eq(firstrun_worker_user("root", true, &uid, &gid, msg,
	    sizeof(msg)), 0);
	ck_assert_uint_eq(uid, 0);
	ck_assert_uint_eq(gid, 0);
}
END_TEST

static Suite *
firstrun_suite(void)
{
	Suite *s = suite_create("firstrun");
	TCase *tc = tcase_create("paths");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_creates_parents);
	tcase_add_test(tc, test_symlink_refused);
	tcase_add_test(tc, test_existing_bad);
	tcase_add_test(tc, test_path_forms);
	tcase_add_test(tc, test_non_root_owner);
	tcase_add_test(tc, test_runtime_dir);
	tcase_add_test(tc, test_state_dir);
	tcase_add_test(tc, test_worker_user);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(firstrun_suite());
}
