/*
 * Main configuration: golden files (tests/unit/golden/config/NAME.yaml
 * with the expected errors in NAME.err and, for good files, the printed
 * effective configuration in NAME.out), defaults, round trip, file-level
 * errors, and mutation (bit flips, byte flips, truncation) of a valid file.
 *
 * Runs with the tests/ source directory as its working directory, so the
 * paths in the golden files are stable.  GOLDEN_UPDATE=1 rewrites the
 * expected files instead of comparing (review the diff before committing).
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "common/error.h"
#include "supervisor/cfgerr.h"
#include "supervisor/checkconfig.h"
#include "supervisor/config.h"
#include "testutil.h"

#define GOLDEN		"unit/golden/config"
#define WORKER		"/usr/libexec/tunnelpool/tunnelpool-agent"

static const struct config_defaults defaults = { WORKER };

static const char *const goldens[] = {
	"good", "minimal", "root_allowed", "syntax", "wrong_type",
	"unknown_key", "bad_duration", "out_of_range", "missing_required",
	"missing_key_file", "unreadable", "bad_address", "dup_cluster",
	"bad_kind", "empty", "comments_only", "multidoc", "root_user", "tags",
	"missing_tunnels_dir", "bad_known_hosts", "bad_utf8", "numbers",
	"etcd_good", "etcd_bad", "etcd_cross", "etcd_empty",
};
#define NGOLDEN	(int)(sizeof(goldens) / sizeof(goldens[0]))

static void
spit(const char *path, const char *s)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(s, f);
	fclose(f);
}

static char *
errors_text(const struct cfg_errors *e)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	cfg_errors_print(e, f);
	fclose(f);
	if (buf == NULL)
		abort();
	return buf;
}

static char *
config_text(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	config_print(cfg, f);
	fclose(f);
	if (buf == NULL)
		abort();
	return buf;
}

/* Compares got with the golden file (absent = empty), or rewrites it. */
static void
golden_compare(const char *path, const char *got)
{
	char *want;

	if (getenv("GOLDEN_UPDATE") != NULL) {
		if (got[0] != '\0' || access(path, F_OK) == 0)
			spit(path, got);
		return;
	}
	if ((want = tu_slurp(path, NULL)) == NULL) {
		ck_assert_msg(got[0] == '\0', "%s is missing; got:\n%s", path,
		    got);
		return;
	}
	if (strcmp(want, got) != 0) {
		fprintf(stderr, "--- %s (expected)\n", path);
		fputs(want, stderr);
		fputs("--- got\n", stderr);
		fputs(got, stderr);
	}
	ck_assert_str_eq(got, want);
	free(want);
}

START_TEST(test_golden)
{
	const char *name = goldens[_i];
	char path[256], out[256];
	struct cfg_errors e;
	struct config *cfg;
	char *got;
	int rc;

	snprintf(path, sizeof(path), GOLDEN "/%s.yaml", name);
	cfg_errors_init(&e);
	rc = config_check_all(path, &defaults, &cfg, NULL, &e);
	ck_assert_int_eq(rc != 0, cfg_errors_count(&e) != 0);
	got = errors_text(&e);
	snprintf(out, sizeof(out), GOLDEN "/%s.err", name);
	golden_compare(out, got);
	free(got);
	snprintf(out, sizeof(out), GOLDEN "/%s.out", name);
	if (cfg != NULL && (access(out, F_OK) == 0 || rc == 0)) {
		got = config_text(cfg);
		golden_compare(out, got);
		free(got);
	}
	config_free(cfg);
	cfg_errors_free(&e);
}
END_TEST

/* Every NAME.yaml in the golden directory is in the list above. */
START_TEST(test_golden_complete)
{
	char cmd[512], line[256];
	FILE *p;
	int i, found;

	snprintf(cmd, sizeof(cmd), "cd " GOLDEN " && ls *.yaml");
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	while (fgets(line, sizeof(line), p) != NULL) {
		line[strcspn(line, ".")] = '\0';
		for (found = 0, i = 0; i < NGOLDEN; i++)
			found |= strcmp(goldens[i], line) == 0;
		ck_assert_msg(found, "golden %s.yaml is not run", line);
	}
	pclose(p);
}
END_TEST

START_TEST(test_defaults)
{
	struct cfg_errors e;
	struct config *cfg;

	cfg_errors_init(&e);
	ck_assert_int_eq(config_load(GOLDEN "/minimal.yaml", NULL, &cfg, &e),
	    0);
	ck_assert_str_eq(cfg->host_uuid, "node-2");
	ck_assert_str_eq(cfg->proxy_user, "node-2");
	ck_assert_str_eq(cfg->identity.private_key, GOLDEN "/keys/id_ed25519");
	ck_assert_str_eq(cfg->identity.certificate, "");
	ck_assert_str_eq(cfg->worker.path, CONFIG_DEFAULT_WORKER);
	ck_assert_str_eq(cfg->worker.user, "tunnelpool");
	ck_assert_int_eq(cfg->worker.allow_root, 0);
	ck_assert_uint_eq(cfg->resync_interval_ms, 5000);
	ck_assert_uint_eq(cfg->keepalive.count, 3);
	ck_assert_uint_eq(cfg->backoff.reset_after_ms, 30000);
	ck_assert_uint_eq(cfg->max_inflight_dials, 3);
	ck_assert(cfg->spawn_rate == 20.0);
	ck_assert_uint_eq(cfg->spawn_burst, 10);
	ck_assert_str_eq(cfg->metrics_listen, "127.0.0.1:9465");
	ck_assert_str_eq(cfg->control_group, "");
	ck_assert_int_eq(cfg->log.level, LOG_LVL_INFO);
	ck_assert_int_eq(cfg->log.format, LOG_FMT_LOGFMT);
	ck_assert_uint_eq(cfg->timeouts.handshake_ms, 15000);
	ck_assert_uint_eq(cfg->discovery.ttl_ms, 180000);
	ck_assert_uint_eq(cfg->discovery.lag_probe_max_ms, 4000);
	config_free(cfg);
	cfg_errors_free(&e);
}
END_TEST

/* The printed configuration parses back to the same configuration. */
START_TEST(test_round_trip)
{
	char *first, *second;
	struct cfg_errors e;
	struct config *a, *b;

	cfg_errors_init(&e);
	ck_assert_int_eq(config_load(GOLDEN "/good.yaml", &defaults, &a, &e),
	    0);
	first = config_text(a);
	/* No directory in the name: the resolved paths stay as printed. */
	ck_assert_int_eq(config_parse_buffer("printed.yaml", first,
	    strlen(first), &defaults, CONFIG_NO_FS_CHECKS, &b, &e), 0);
	second = config_text(b);
	ck_assert_str_eq(strchr(first, '\n'), strchr(second, '\n'));
	ck_assert(b->spawn_rate == 2.5);
	free(first);
	free(second);
	config_free(a);
	config_free(b);
	cfg_errors_free(&e);
}
END_TEST

/* The shipped example parses, and shows the defaults it claims to. */
START_TEST(test_packaging_example)
{
	const char *file = "../packaging/examples/tunnelpool.yaml";
	struct config *cfg, *min;
	char *text, *a, *b;
	const char *dtext;
	struct cfg_errors e;
	size_t len;

	cfg_errors_init(&e);
	ck_assert_ptr_nonnull(text = tu_slurp(file, &len));
	ck_assert_int_eq(config_parse_buffer(file, text, len, &defaults,
	    CONFIG_NO_FS_CHECKS, &cfg, &e), 0);
	free(text);
	dtext = "host_uuid: node-1.example.com\nidentity: {private_key: "
	    "/etc/tunnelpool/id_ed25519}\ntrust: {known_hosts: "
	    "/etc/tunnelpool/known_hosts}\n";
	ck_assert_int_eq(config_parse_buffer(file, dtext, strlen(dtext),
	    &defaults, CONFIG_NO_FS_CHECKS, &min, &e), 0);
	a = config_text(cfg);
	b = config_text(min);
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	config_free(cfg);
	config_free(min);
	cfg_errors_free(&e);
}
END_TEST

static char tmpdir[64];

static void
make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tp-config-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
remove_tmpdir(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static void
expect_single_error(const char *path, const char *want)
{
	struct cfg_errors e;
	struct config *cfg;

	cfg_errors_init(&e);
	ck_assert_int_ne(config_load(path, &defaults, &cfg, &e), 0);
	ck_assert_ptr_null(cfg);
	ck_assert_uint_eq(cfg_errors_count(&e), 1);
	ck_assert_str_eq(cfg_errors_first(&e), want);
	cfg_errors_free(&e);
}

START_TEST(test_huge_file)
{
	char path[128], want[256];
	FILE *f;

	make_tmpdir();
	snprintf(path, sizeof(path), "%s/huge.yaml", tmpdir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fprintf(f, "host_uuid: x\n");
	while (ftell(f) <= CONFIG_MAX_FILE)
		fprintf(f, "# padding padding padding padding padding\n");
	fclose(f);
	f = fopen(path, "r");
	fseek(f, 0, SEEK_END);
	snprintf(want, sizeof(want), "%s: file too large (%ld bytes, limit "
	    "1048576)", path, ftell(f));
	fclose(f);
	expect_single_error(path, want);
	remove_tmpdir();
}
END_TEST

START_TEST(test_file_errors)
{
	char path[128], want[256];

	make_tmpdir();
	snprintf(want, sizeof(want), "%s: not a regular file", tmpdir);
	expect_single_error(tmpdir, want);
	snprintf(path, sizeof(path), "%s/absent.yaml", tmpdir);
	snprintf(want, sizeof(want), "%s: cannot open: %s", path,
	    strerror(ENOENT));
	expect_single_error(path, want);
	remove_tmpdir();
}
END_TEST

/* Only root can be refused nothing: check the refusal when not root. */
START_TEST(test_unreadable_non_root)
{
	char path[128], want[256];

	if (geteuid() == 0)
		return;	/* root reads mode 000 files: see unreadable.yaml */
	make_tmpdir();
	snprintf(path, sizeof(path), "%s/c.yaml", tmpdir);
	spit(path, "host_uuid: x\n");
	chmod(path, 0);
	snprintf(want, sizeof(want), "%s: cannot open: %s", path,
	    strerror(EACCES));
	expect_single_error(path, want);
	remove_tmpdir();
}
END_TEST

static void
check_mutant(const char *buf, size_t len, void *arg)
{
	const char *file = arg;
	struct cfg_errors e;
	struct config *cfg;
	size_t i;
	int rc;

	cfg_errors_init(&e);
	rc = config_parse_buffer(file, buf, len, &defaults,
	    CONFIG_NO_FS_CHECKS, &cfg, &e);
	if (rc == 0)
		ck_assert_ptr_nonnull(cfg);
	else {
		ck_assert_ptr_null(cfg);
		ck_assert_uint_gt(cfg_errors_count(&e), 0);
	}
	for (i = 0; i < e.n; i++)
		ck_assert_msg(tu_has_location(e.msg[i], file), "no location: %s",
		    e.msg[i]);
	config_free(cfg);
	cfg_errors_free(&e);
}

START_TEST(test_mutations)
{
	static const unsigned char subst[] = { 0, '\n', ':', '[', '{', '"',
	    '\'', '-', ' ', '&', '*', '!', '#', '|', '>', '%', '@', 0xff,
	    0x80, '\t', '\\', ',', '?' };
	const char *file = GOLDEN "/good.yaml";
	size_t len;
	char *orig;

	ck_assert_ptr_nonnull(orig = tu_slurp(file, &len));
	tu_mutate(orig, len, subst, sizeof(subst), 0, check_mutant,
	    (void *)(uintptr_t)file);
	free(orig);
}
END_TEST

/* Every error carries a location, and all of them are reported. */
START_TEST(test_collects_all)
{
	struct cfg_errors e;
	struct config *cfg;
	size_t i;

	cfg_errors_init(&e);
	ck_assert_int_ne(config_load(GOLDEN "/out_of_range.yaml", &defaults,
	    &cfg, &e), 0);
	ck_assert_uint_ge(e.n, 8);
	for (i = 0; i < e.n; i++)
		ck_assert(tu_has_location(e.msg[i],
		    GOLDEN "/out_of_range.yaml"));
	cfg_errors_free(&e);
}
END_TEST

START_TEST(test_error_list_limit)
{
	struct cfg_errors e, f;
	int i;

	cfg_errors_init(&e);
	cfg_errors_init(&f);
	for (i = 0; i < CFG_ERRORS_MAX + 5; i++)
		cfg_errors_add(&e, "error %d", i);
	ck_assert_uint_eq(e.n, CFG_ERRORS_MAX);
	ck_assert_uint_eq(cfg_errors_count(&e), CFG_ERRORS_MAX + 5);
	cfg_errors_add(&f, "first");
	cfg_errors_move(&f, &e);
	ck_assert_uint_eq(cfg_errors_count(&e), 0);
	ck_assert_uint_eq(cfg_errors_count(&f), CFG_ERRORS_MAX + 6);
	ck_assert_str_eq(cfg_errors_first(&f), "first");
	cfg_errors_free(&e);
	cfg_errors_free(&f);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("golden");

	tcase_add_loop_test(tc, test_golden, 0, NGOLDEN);
	tcase_add_test(tc, test_golden_complete);
	suite_add_tcase(s, tc);
	tc = tcase_create("load");
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_packaging_example);
	tcase_add_test(tc, test_huge_file);
	tcase_add_test(tc, test_file_errors);
	tcase_add_test(tc, test_unreadable_non_root);
	tcase_add_test(tc, test_collects_all);
	tcase_add_test(tc, test_error_list_limit);
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
	return tu_run(config_suite());
}
