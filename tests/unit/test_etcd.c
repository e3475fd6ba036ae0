/*
 * The etcd gateway decoders (supervisor/etcd_json.c), the snapshot file
 * (supervisor/snapshot.c) and the prefix range end: real etcd 3.4
 * responses from the fuzz corpus (tests/fuzz/corpus/etcd, $ETCD_CORPUS)
 * decoded field by field; the watch stream split at every byte; strict
 * base64; and every truncation, bit flip and byte substitution of every
 * corpus file through every decoder (an error, never a crash).
 */
#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <jansson.h>

#include "common/error.h"
#include "supervisor/etcd.h"
#include "supervisor/etcd_json.h"
#include "supervisor/snapshot.h"
#include "testutil.h"

static char *
corpus(const char *name, size_t *len)
{
	const char *dir = getenv("ETCD_CORPUS");
	char *buf;

	ck_assert_ptr_nonnull(dir);
	buf = tu_slurp(tu_path(dir, name), len);
	ck_assert_msg(buf != NULL, "%s/%s", dir, name);
	return buf;
}

START_TEST(test_range)
{
	struct etcd_error ee;
	struct etcd_range r;
	char err[128], *b;
	size_t n;

	b = corpus("range-two.json", &n);
	ck_assert_int_eq(etcd_decode_range(b, n, &r, &ee, err, sizeof(err)), 0);
	ck_assert_int_eq(r.revision, 7);
	ck_assert_int_eq(r.more, 1);
	ck_assert_uint_eq(r.n, 2);
	ck_assert_str_eq(r.kvs[0].key, "/tp/a");
	ck_assert_uint_eq(r.kvs[0].key_len, 5);
	ck_assert_str_eq(r.kvs[0].value, "hello");
	ck_assert_int_eq(r.kvs[1].mod_revision, 4);
	ck_assert_str_eq(r.kvs[1].value, "x");
	etcd_range_free(&r);
	free(b);
	b = corpus("range-empty.json", &n);
	ck_assert_int_eq(etcd_decode_range(b, n, &r, &ee, err, sizeof(err)), 0);
	ck_assert_uint_eq(r.n, 0);
	ck_assert_int_eq(r.revision, 2);
	etcd_range_free(&r);
	free(b);
	b = corpus("error-compacted.json", &n);
	ck_assert_int_eq(etcd_decode_range(b, n, &r, &ee, err, sizeof(err)),
	    ETCD_JSON_ERROR);
	ck_assert_int_eq(ee.code, ETCD_CODE_OUT_OF_RANGE);
	ck_assert_str_eq(ee.message, "etcdserver: mvcc: required revision has "
	    "been compacted");
	free(b);
}
END_TEST

START_TEST(test_range_bad)
{
	static const char *const bad[] = {
		"[]", "{}", "{\"header\":{\"revision\":\"x\"}}",
		"{\"header\":{\"revision\":\"99999999999999999999\"}}",
		"{\"header\":{\"revision\":\"5\"},\"kvs\":{}}",
		"{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":\"a\"}]}",
		"{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":\"\"}]}",
		("{\"header\":{\"revision\":\"5\"},\"kvs\":[{\"key\":"
		    "\"YQ==\",\"value\":7}]}"),
		"{\"header\":{\"revision\":\"5\"},\"more\":\"yes\"}",
		"{\"header\":{\"revision\":\"5\"},\"header\":{}}",
		"{\"header\":{\"revision\":\"5\"}} trailing",
	};
	struct etcd_error ee;
	struct etcd_range r;
	char err[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = etcd_decode_range(bad[i], strlen(bad[i]), &r, &ee, err,
		    sizeof(err));

		ck_assert_msg(rc < 0, "accepted %s", bad[i]);
		ck_assert_uint_eq(r.n, 0);
		ck_assert_ptr_null(r.kvs);
		ck_assert(err[0] != '\0');
	}
}
END_TEST

START_TEST(test_auth)
{
	struct etcd_error ee;
	char err[128], *tok, *b;
	size_t n;

	b = corpus("auth.json", &n);
	ck_assert_int_eq(etcd_decode_auth(b, n, &tok, &ee, err, sizeof(err)),
	    0);
	ck_assert_str_eq(tok, "WuZPVJKNPLLTPVLm.16");
	free(tok);
	free(b);
	b = corpus("error-token.json", &n);
	ck_assert_int_eq(etcd_decode_auth(b, n, &tok, &ee, err, sizeof(err)),
	    ETCD_JSON_ERROR);
	ck_assert_int_eq(ee.code, ETCD_CODE_UNAUTHENTICATED);
	ck_assert_ptr_null(tok);
	free(b);
	/* A token goes into a header: no controls, no spaces. */
	ck_assert_int_lt(etcd_decode_auth("{\"token\":\"a\\r\\nX: y\"}", 20,
	    &tok, &ee, err, sizeof(err)), 0);
	ck_assert_ptr_null(tok);
}
END_TEST

/* Splits the stream at every byte offset: the same frames each time. */
START_TEST(test_watch_stream)
{
	struct etcd_error ee;
	struct etcd_watch w;
	struct etcd_stream s;
	char err[128], *b;
	const char *f;
	size_t n, len, cut;
	int frames, rc;

	b = corpus("watch-stream.txt", &len);
	for (cut = 0; cut <= len; cut++) {
		etcd_stream_init(&s);
		frames = 0;
		ck_assert_int_eq(etcd_stream_feed(&s, b, cut), 0);
		while ((rc = etcd_stream_next(&s, &f, &n)) == 1)
			frames++;
		ck_assert_int_eq(rc, 0);
		ck_assert_int_eq(etcd_stream_feed(&s, b + cut, len - cut), 0);
		while ((rc = etcd_stream_next(&s, &f, &n)) == 1) {
			ck_assert_int_eq(etcd_decode_watch(f, n, &w, &ee, err,
			    sizeof(err)), 0);
			if (++frames == 3) {
				ck_assert_uint_eq(w.n, 1);
				ck_assert_int_eq(w.events[0].type,
				    ETCD_EV_DELETE);
				ck_assert_str_eq(w.events[0].kv.key, "/tp/a");
				ck_assert_int_eq(w.events[0].kv.mod_revision, 3);
			}
			etcd_watch_free(&w);
		}
		ck_assert_int_eq(rc, 0);
		ck_assert_int_eq(frames, 3);
		etcd_stream_free(&s);
	}
	free(b);
	/* Garbage between frames. */
	etcd_stream_init(&s);
	ck_assert_int_eq(etcd_stream_feed(&s, "{} x{}", 6), 0);
	ck_assert_int_eq(etcd_stream_next(&s, &f, &n), 1);
	ck_assert_int_eq(etcd_stream_next(&s, &f, &n), TP_EPROTO);
	etcd_stream_free(&s);
	/* Braces inside strings do not end a frame. */
	etcd_stream_init(&s);
	ck_assert_int_eq(etcd_stream_feed(&s, "{\"a\":\"}\\\"{\"}", 12), 0);
	ck_assert_int_eq(etcd_stream_next(&s, &f, &n), 1);
	ck_assert_uint_eq(n, 12);
	etcd_stream_free(&s);
}
END_TEST

START_TEST(test_watch_messages)
{
	struct etcd_error ee;
	struct etcd_watch w;
	struct etcd_stream s;
	char err[128], *b;
	const char *f;
	size_t n, len;

	b = corpus("watch-compacted.txt", &len);
	etcd_stream_init(&s);
	ck_assert_int_eq(etcd_stream_feed(&s, b, len), 0);
	ck_assert_int_eq(etcd_stream_next(&s, &f, &n), 1);
	ck_assert_int_eq(etcd_decode_watch(f, n, &w, &ee, err, sizeof(err)), 0);
	ck_assert_int_eq(w.created, 1);
	etcd_watch_free(&w);
	ck_assert_int_eq(etcd_stream_next(&s, &f, &n), 1);
	ck_assert_int_eq(etcd_decode_watch(f, n, &w, &ee, err, sizeof(err)), 0);
	ck_assert_int_eq(w.canceled, 1);
	ck_assert_int_eq(w.compact_revision, 3);
	etcd_watch_free(&w);
	etcd_stream_free(&s);
	free(b);
	b = corpus("watch-canceled.txt", &len);
	ck_assert_int_eq(etcd_decode_watch(b, len, &w, &ee, err, sizeof(err)),
	    0);
	ck_assert_int_eq(w.canceled, 1);
	ck_assert(strstr(w.cancel_reason, "user name is empty") != NULL);
	free(b);
	b = corpus("watch-error.txt", &len);
	ck_assert_int_eq(etcd_decode_watch(b, len, &w, &ee, err, sizeof(err)),
	    ETCD_JSON_ERROR);
	ck_assert_int_eq(ee.code, 14);
	ck_assert_str_eq(ee.message, "etcdserver: no leader");
	free(b);
}
END_TEST

START_TEST(test_base64)
{
	static const char *const bad[] = { "a", "ab=", "a===", "ab=c", "YQ=a",
	    "YR==", "YWI=YQ==", "Y Q=", "\xc3\xa9==" };
	char *out, *enc;
	size_t n;

	for (size_t len = 0; len < 40; len++) {
		unsigned char raw[40];

		for (size_t i = 0; i < len; i++)
			raw[i] = (unsigned char)(i * 37 + len);
		ck_assert_ptr_nonnull(enc = etcd_b64_encode(raw, len));
		ck_assert_int_eq(etcd_b64_decode(enc, strlen(enc), 64, &out,
		    &n), 0);
		ck_assert_uint_eq(n, len);
		ck_assert(memcmp(out, raw, len) == 0);
		free(out);
		free(enc);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(etcd_b64_decode(bad[i], strlen(bad[i]), 64, &out,
		    &n) < 0, "accepted %s", bad[i]);
	ck_assert_int_eq(etcd_b64_decode("YWJj", 4, 2, &out, &n), TP_ETOOBIG);
}
END_TEST

START_TEST(test_prefix_end)
{
	size_t n;
	char *e;

	e = etcd_prefix_end("/tp/", 4, &n);
	ck_assert_uint_eq(n, 4);
	ck_assert(memcmp(e, "/tp0", 4) == 0);
	free(e);
	e = etcd_prefix_end("a\xff\xff", 3, &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(e[0], 'b');
	free(e);
}
END_TEST

START_TEST(test_snapshot)
{
	char dir[] = "/tmp/tp-snap-XXXXXX", sub[64], err[256], path[96];
	uint64_t written;
	json_t *kvs, *got;
	int64_t rev;
	struct stat st;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/state", dir);
	ck_assert_int_eq(snapshot_read(sub, "/p/", &rev, &written, &got, err,
	    sizeof(err)), TP_ENOENT);
	kvs = json_pack("{s:s,s:s}", "/p/a", "kind: x\n", "/p/b", "é");
	ck_assert_int_eq(snapshot_write(sub, "/p/", 42, kvs, err, sizeof(err)),
	    0);
	snprintf(path, sizeof(path), "%s/%s", sub, SNAPSHOT_FILE);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(snapshot_read(sub, "/p/", &rev, &written, &got, err,
	    sizeof(err)), 0);
	ck_assert_int_eq(rev, 42);
	ck_assert(json_equal(kvs, got));
	json_decref(got);
	/* Another prefix's snapshot is not used. */
	ck_assert_int_eq(snapshot_read(sub, "/q/", &rev, &written, &got, err,
	    sizeof(err)), TP_EINVAL);
	ck_assert(strstr(err, "/p/") != NULL);
	/* A torn or foreign file is refused. */
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs("{\"format\":\"tunnelpool-etcd-snapshot\",\"version\":1,", f);
	fclose(f);
	ck_assert_int_eq(snapshot_read(sub, "/p/", &rev, &written, &got, err,
	    sizeof(err)), TP_EPROTO);
	ck_assert_ptr_null(got);
	json_decref(kvs);
	tu_sh("rm -rf '%s'", dir);
}
END_TEST

/* ---- mutation ------------------------------------------------------- */

static void
decode_all(const char *buf, size_t n, void *arg)
{
	struct etcd_error ee;
	struct etcd_range r;
	struct etcd_watch w;
	struct etcd_stream s;
	char err[128], *tok;
	const char *f;
	size_t fl;

	(void)arg;
	if (etcd_decode_range(buf, n, &r, &ee, err, sizeof(err)) == 0)
		etcd_range_free(&r);
	if (etcd_decode_auth(buf, n, &tok, &ee, err, sizeof(err)) == 0)
		free(tok);
	(void)etcd_decode_error(buf, n, &ee);
	etcd_stream_init(&s);
	if (etcd_stream_feed(&s, buf, n) == 0)
		while (etcd_stream_next(&s, &f, &fl) == 1)
			if (etcd_decode_watch(f, fl, &w, &ee, err,
			    sizeof(err)) == 0)
				etcd_watch_free(&w);
	etcd_stream_free(&s);
}

START_TEST(test_mutations)
{
	static const char *const files[] = { "range-two.json",
	    "range-empty.json", "error-compacted.json", "auth.json",
	    "watch-stream.txt", "watch-compacted.txt", "watch-canceled.txt",
	    "watch-error.txt" };
	static const unsigned char subst[] = { 0, '"', '{', '}', '[', ']',
	    '\\', ':', ',', '=', '-', '9', 0xff, '\n' };
	char *b;
	size_t n;

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		b = corpus(files[i], &n);
		tu_mutate(b, n, subst, sizeof(subst), 0, decode_all, NULL);
		free(b);
	}
}
END_TEST

static Suite *
etcd_suite(void)
{
	Suite *s = suite_create("etcd");
	TCase *tc = tcase_create("decode");

	tcase_add_test(tc, test_range);
	tcase_add_test(tc, test_range_bad);
	tcase_add_test(tc, test_auth);
	tcase_add_test(tc, test_watch_stream);
	tcase_add_test(tc, test_watch_messages);
	tcase_add_test(tc, test_base64);
	tcase_add_test(tc, test_prefix_end);
	tcase_add_test(tc, test_snapshot);
	suite_add_tcase(s, tc);
	tc = tcase_create("mutation");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_mutations);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(etcd_suite());
}
