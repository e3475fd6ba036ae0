/*
 * common/readfile.c, the one whole-file reader: limits by fstat and by
 * what is read, refusals (missing, directory, FIFO, too open, being
 * written), and the secret buffer's fixed size.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "common/error.h"
#include "common/readfile.h"
#include "testutil.h"

static char tmpdir[64];

static void
setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tp-readfile-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
teardown(void)
{
	tu_sh("rm -rf '%s'", tmpdir);
}

/* Writes len bytes of text to dir/name with mode; returns the path. */
static const char *
put(const char *name, const char *text, size_t len, mode_t mode)
{
	const char *path = tu_path(tmpdir, name);
	int fd;

	ck_assert_int_ge(fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode),
	    0);
	ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
	ck_assert_int_eq(fchmod(fd, mode), 0);	/* whatever the umask */
	ck_assert_int_eq(close(fd), 0);
	return path;
}

START_TEST(reads_whole_file)
{
	const char *path = put("a", "hello\nworld\n", 12, 0644);
	struct tp_rf_result r;
	size_t len = 99;
	char *buf;

	ck_assert_int_eq(tp_read_file(path, 1024, 0, &buf, &len, &r), 0);
	ck_assert_int_eq(r.fail, TP_RF_OK);
	ck_assert_uint_eq(len, 12);
	ck_assert_str_eq(buf, "hello\nworld\n");
	free(buf);
	/* Bytes after a NUL are still read: len, not strlen, is the size. */
	path = put("nul", "a\0b", 3, 0644);
	ck_assert_int_eq(tp_read_file(path, 1024, 0, &buf, &len, &r), 0);
	ck_assert_uint_eq(len, 3);
	ck_assert_int_eq(memcmp(buf, "a\0b", 4), 0);
	free(buf);
}
END_TEST

START_TEST(empty_file)
{
	const char *path = put("empty", "", 0, 0644);
	struct tp_rf_result r;
	size_t len = 99;
	char *buf;

	ck_assert_int_eq(tp_read_file(path, 1024, TP_RF_LEASE, &buf, &len, &r),
	    0);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(buf[0], '\0');
	free(buf);
}
END_TEST

/* max bytes are fine, one more is refused by what fstat says. */
START_TEST(size_limit)
{
	struct tp_rf_result r;
	const char *path;
	size_t len;
	char *buf = (char *)1;

	path = put("ten", "0123456789", 10, 0644);
	ck_assert_int_eq(tp_read_file(path, 10, 0, &buf, &len, &r), 0);
	ck_assert_uint_eq(len, 10);
	free(buf);
	ck_assert_int_eq(tp_read_file(path, 9, 0, &buf, &len, &r), TP_ETOOBIG);
	ck_assert_int_eq(r.fail, TP_RF_SIZE);
	ck_assert_int_eq(r.size, 10);
	ck_assert_ptr_null(buf);
	ck_assert_uint_eq(len, 0);
}
END_TEST

/*
 * A file that is longer than fstat said (a /proc file says 0 bytes): the
 * buffer grows as it is read, and the limit holds against what came.
 */
START_TEST(grows_while_read)
{
	struct tp_rf_result r;
	size_t len;
	char *buf;

	ck_assert_int_eq(tp_read_file("/proc/self/status", 1 << 20, 0, &buf,
	    &len, &r), 0);
	ck_assert_uint_gt(len, 100);
	ck_assert_uint_eq(strlen(buf), len);
	ck_assert_ptr_nonnull(strstr(buf, "Pid:"));
	free(buf);
	ck_assert_int_eq(tp_read_file("/proc/self/status", 20, 0, &buf, &len,
	    &r), TP_ETOOBIG);
	ck_assert_int_eq(r.fail, TP_RF_GREW);
	ck_assert_ptr_null(buf);
}
END_TEST

START_TEST(refusals)
{
	const char *fifo = tu_path(tmpdir, "fifo");
	struct tp_rf_result r;
	size_t len;
	char *buf;

	ck_assert_int_eq(tp_read_file(tu_path(tmpdir, "missing"), 10, 0, &buf,
	    &len, &r), TP_ESYS);
	ck_assert_int_eq(r.fail, TP_RF_OPEN);
	ck_assert_int_eq(r.err, ENOENT);
	ck_assert_ptr_null(buf);
	ck_assert_int_eq(tp_read_file(tmpdir, 10, 0, &buf, &len, &r),
	    TP_EINVAL);
	ck_assert_int_eq(r.fail, TP_RF_NOTREG);
	/* A FIFO without a writer: refused at once, not waited on. */
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	ck_assert_int_eq(tp_read_file(fifo, 10, TP_RF_SECRET, &buf, &len, &r),
	    TP_EINVAL);
	ck_assert_int_eq(r.fail, TP_RF_NOTREG);
	ck_assert_int_eq(tp_read_file("/dev/null", 10, 0, &buf, &len, &r),
	    TP_EINVAL);
	ck_assert_int_eq(r.fail, TP_RF_NOTREG);
}
END_TEST

START_TEST(private_mode)
{
	struct tp_rf_result r;
	const char *path;
	size_t len;
	char *buf;

	path = put("key", "secret", 6, 0640);
	ck_assert_int_eq(tp_read_file(path, 10, TP_RF_PRIVATE, &buf, &len, &r),
	    TP_EDENIED);
	ck_assert_int_eq(r.fail, TP_RF_MODE);
	ck_assert_uint_eq(r.mode, 0640);
	ck_assert_ptr_null(buf);
	/* Without the flag the same file is read. */
	ck_assert_int_eq(tp_read_file(path, 10, 0, &buf, &len, &r), 0);
	free(buf);
	/* Others' bits count too; the owner's alone are fine. */
	ck_assert_int_eq(chmod(path, 0604), 0);
	ck_assert_int_eq(tp_read_file(path, 10, TP_RF_PRIVATE, &buf, &len, &r),
	    TP_EDENIED);
	ck_assert_uint_eq(r.mode, 0604);
	ck_assert_int_eq(chmod(path, 0400), 0);
	ck_assert_int_eq(tp_read_file(path, 10, TP_RF_PRIVATE, &buf, &len, &r),
	    0);
	ck_assert_str_eq(buf, "secret");
	free(buf);
}
END_TEST

/*
 * With a lease, a file some process has open for writing is not read;
 * an open read-only descriptor is no writer.  (The test owns the file,
 * so the lease can be had without CAP_LEASE.)
 */
START_TEST(lease_refuses_writer)
{
	const char *path = put("t.yaml", "a: 1\n", 5, 0644);
	struct tp_rf_result r;
	size_t len;
	char *buf;
	int fd;

	ck_assert_int_ge(fd = open(path, O_WRONLY | O_APPEND), 0);
	ck_assert_int_eq(tp_read_file(path, 100, TP_RF_LEASE, &buf, &len, &r),
	    TP_EAGAIN);
	ck_assert_int_eq(r.fail, TP_RF_WRITER);
	ck_assert_ptr_null(buf);
	/* Without the flag nothing asks who else has it open. */
	ck_assert_int_eq(tp_read_file(path, 100, 0, &buf, &len, &r), 0);
	free(buf);
	ck_assert_int_eq(close(fd), 0);

	ck_assert_int_ge(fd = open(path, O_RDONLY), 0);
	ck_assert_int_eq(tp_read_file(path, 100, TP_RF_LEASE, &buf, &len, &r),
	    0);
	ck_assert_int_eq(r.lease_err, 0);
	ck_assert_str_eq(buf, "a: 1\n");
	free(buf);
	ck_assert_int_eq(close(fd), 0);
	/* The lease is given back: a writer can open the file again. */
	ck_assert_int_ge(fd = open(path, O_WRONLY | O_NONBLOCK), 0);
	ck_assert_int_eq(close(fd), 0);
}
END_TEST

/*
 * A secret's buffer is max + 1 bytes whatever the file holds (the caller
 * wipes that many), and the limit is the same as without the flag.
 */
START_TEST(secret_buffer)
{
	struct tp_rf_result r;
	const char *path;
	size_t len;
	char *buf;

	path = put("k", "key", 3, 0600);
	ck_assert_int_eq(tp_read_file(path, 4095, TP_RF_SECRET | TP_RF_PRIVATE,
	    &buf, &len, &r), 0);
	ck_assert_uint_eq(len, 3);
	ck_assert_str_eq(buf, "key");
	ck_assert_uint_ge(malloc_usable_size(buf), 4096);
	memset(buf, 0, 4096);	/* what OPENSSL_clear_free(buf, 4096) does */
	free(buf);
	ck_assert_int_eq(tp_read_file(path, 3, TP_RF_SECRET, &buf, &len, &r),
	    0);
	free(buf);
	ck_assert_int_eq(tp_read_file(path, 2, TP_RF_SECRET, &buf, &len, &r),
	    TP_ETOOBIG);
	ck_assert_int_eq(r.fail, TP_RF_SIZE);
	/* More than fstat said, into the fixed buffer: refused, no overrun. */
	ck_assert_int_eq(tp_read_file("/proc/self/status", 64, TP_RF_SECRET,
	    &buf, &len, &r), TP_ETOOBIG);
	ck_assert_int_eq(r.fail, TP_RF_GREW);
	ck_assert_ptr_null(buf);
	ck_assert_int_eq(tp_read_file("/proc/self/status", 1 << 16,
	    TP_RF_SECRET, &buf, &len, &r), 0);
	ck_assert_uint_eq(strlen(buf), len);
	free(buf);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("readfile");
	TCase *tc = tcase_create("readfile");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, reads_whole_file);
	tcase_add_test(tc, empty_file);
	tcase_add_test(tc, size_limit);
	tcase_add_test(tc, grows_while_read);
	tcase_add_test(tc, refusals);
	tcase_add_test(tc, private_mode);
	tcase_add_test(tc, lease_refuses_writer);
	tcase_add_test(tc, secret_buffer);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
