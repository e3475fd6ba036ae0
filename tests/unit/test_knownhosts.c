/*
 * known_hosts: patterns, negation, ports, hashed names (precomputed with
 * ssh-keygen -H, and generated at test time when ssh-keygen is there),
 * @cert-authority, @revoked, errors, mutation.  The fingerprints below are
 * what `ssh-keygen -lf` printed for the keys in golden/knownhosts/.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "common/error.h"
#include "common/sshpub.h"
#include "supervisor/cfgerr.h"
#include "supervisor/knownhosts.h"
#include "testutil.h"

#define KH_FILE		"unit/golden/knownhosts/known_hosts"
#define KH_BAD		"unit/golden/knownhosts/bad_known_hosts"

#define FP_A	"SHA256:FiAZg26hRSaHQY8h/DYZgNN+G9X7Nvi27VwLH4JEz2s"
#define FP_B	"SHA256:bhrSBVt4Xd0jYbgeVCgkd0fPVfgbCGAIFg/bVtQjCuA"
#define FP_C	"SHA256:spBCuPRQcZQbpTU8N9ZE2b3LzwXiX/0NFFM+T0FnLno"
#define FP_CA	"SHA256:qtEEL+jw4mUi3g/ZVje1Yk5kEWlabpDSa0NhLDBdPXk"
#define FP_EC	"SHA256:G3XvpHMfVj5y1vwq+W9z00sMPwxqI2QJZ7pmWizMCfY"
#define FP_RSA	"SHA256:GqDYXrYASPX5ey7TEfGlrKRS2O+vX74O472bV9EVAUg"

#define KEY_A	"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE0aWPzeVtOCu6w/DW4I/Jkdcp1y/MK30qK0UytQZOy5"

static struct knownhosts *kh;

static void
load_good(void)
{
	struct cfg_errors e;

	cfg_errors_init(&e);
	if (knownhosts_load(KH_FILE, &kh, &e) != 0)
		cfg_errors_print(&e, stderr);
	ck_assert_ptr_nonnull(kh);
	cfg_errors_free(&e);
}

static void
unload(void)
{
	knownhosts_free(kh);
	kh = NULL;
}

/*
 * Looks host:port up and compares each list with a space-separated
 * expectation ("" = empty); CAs are given by fingerprint.
 */
static void
expect(const char *host, unsigned port, const char *pinned, const char *cas,
    const char *revoked)
{
	char got_p[1024] = "", got_c[1024] = "", got_r[1024] = "";
	char fp[SSHPUB_FP_LEN];
	struct kh_result r;
	size_t i;

	ck_assert_int_eq(knownhosts_lookup(kh, host, (uint16_t)port, &r), 0);
	for (i = 0; i < r.n_pinned; i++)
		snprintf(got_p + strlen(got_p), sizeof(got_p) - strlen(got_p),
		    "%s%s", i ? " " : "", r.pinned[i]);
	for (i = 0; i < r.n_cas; i++) {
		ck_assert_int_eq(sshpub_fingerprint(r.cas[i].p, r.cas[i].len,
		    fp, sizeof(fp)), 0);
		snprintf(got_c + strlen(got_c), sizeof(got_c) - strlen(got_c),
		    "%s%s", i ? " " : "", fp);
	}
	for (i = 0; i < r.n_revoked; i++)
		snprintf(got_r + strlen(got_r), sizeof(got_r) - strlen(got_r),
		    "%s%s", i ? " " : "", r.revoked[i]);
	ck_assert_msg(strcmp(got_p, pinned) == 0, "%s:%u pinned: %s", host,
	    port, got_p);
	ck_assert_msg(strcmp(got_c, cas) == 0, "%s:%u cas: %s", host, port,
	    got_c);
	ck_assert_msg(strcmp(got_r, revoked) == 0, "%s:%u revoked: %s", host,
	    port, got_r);
	kh_result_free(&r);
}

START_TEST(test_plain_and_ports)
{
	load_good();
	/* Two lines for proxy1 (two keys); the ssh-dss line is skipped. */
	expect("proxy1.example", 22, FP_A " " FP_EC, FP_CA, FP_C);
	expect("proxy1.example", 0, FP_A " " FP_EC, FP_CA, FP_C);
	expect("10.0.0.1", 22, FP_A, "", FP_C);
	/* A non-22 port is looked up as [host]:port only. */
	expect("proxy1.example", 2222, "", "", FP_C);
	expect("proxy2.example", 22, "", FP_CA, FP_C);
	expect("unknown.org", 22, "", "", FP_C);
	unload();
}
END_TEST

START_TEST(test_case_insensitive)
{
	load_good();
	expect("proxy3.example", 22, FP_A, FP_CA, FP_C);
	expect("PROXY1.EXAMPLE", 22, FP_A " " FP_EC, FP_CA, FP_C);
	unload();
}
END_TEST

START_TEST(test_wildcards_and_negation)
{
	load_good();
	expect("x.wild.example", 22, FP_B, FP_CA, FP_C);
	expect("a.b.wild.example", 22, FP_B, FP_CA, FP_C);
	/* The negated pattern excludes the whole line, not just itself. */
	expect("bad.wild.example", 22, "", FP_CA, FP_C);
	expect("wild.example", 22, "", FP_CA, FP_C);
	/* '?' is one character; [p?.multi.example]:* any port. */
	expect("p1.multi.example", 22, FP_B, FP_CA, FP_C);
	expect("p12.multi.example", 22, "", FP_CA, FP_C);
	expect("p1.multi.example", 2022, FP_B, "", FP_C);
	unload();
}
END_TEST

START_TEST(test_hashed)
{
	load_good();
	expect("hashed.example", 22, FP_RSA, FP_CA, FP_C);
	expect("hashed.example", 2222, FP_A, "", FP_C);
	expect("hashed.example", 2223, "", "", FP_C);
	expect("Hashed.Example", 22, FP_RSA, FP_CA, FP_C);
	unload();
}
END_TEST

START_TEST(test_revoked)
{
	load_good();
	/* c is pinned for [proxy2.example]:2222 but revoked everywhere. */
	expect("proxy2.example", 2222, "", "", FP_C);
	/* A revoked CA is not offered, for the hosts the revocation names. */
	expect("x.test", 22, "", FP_CA, FP_C);
	expect("revokedca.test", 22, "", "", FP_C " " FP_CA);
	unload();
}
END_TEST

START_TEST(test_match_list)
{
	char s[4096];

	ck_assert_int_eq(knownhosts_match_list("a.example", "a.example"), 1);
	ck_assert_int_eq(knownhosts_match_list("a.example", "b,a.example"), 1);
	ck_assert_int_eq(knownhosts_match_list("a.example", "*.example"), 1);
	ck_assert_int_eq(knownhosts_match_list("a.example", "*.example,"
	    "!a.example"), -1);
	ck_assert_int_eq(knownhosts_match_list("a.example", "!b.example"), 0);
	ck_assert_int_eq(knownhosts_match_list("a.example", "?.example"), 1);
	ck_assert_int_eq(knownhosts_match_list("ab.example", "?.example"), 0);
	ck_assert_int_eq(knownhosts_match_list("", "*"), 1);
	ck_assert_int_eq(knownhosts_match_list("abc", "a*c*"), 1);
	ck_assert_int_eq(knownhosts_match_list("abc", "a*b"), 0);
	/* A pattern built to make naive backtracking exponential. */
	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	ck_assert_int_eq(knownhosts_match_list(s, "*a*a*a*a*a*a*a*a*a*b"), 0);
	ck_assert_int_eq(knownhosts_match_list(s, "*a*a*a*a*a*a*a*a*a*a"), 1);
}
END_TEST

START_TEST(test_errors)
{
	char *got = NULL, *want;
	struct cfg_errors e;
	size_t len = 0;
	FILE *f;
	long n;

	cfg_errors_init(&e);
	ck_assert_int_eq(knownhosts_load(KH_BAD, &kh, &e), TP_ESYNTAX);
	ck_assert_ptr_null(kh);
	f = open_memstream(&got, &len);
	cfg_errors_print(&e, f);
	fclose(f);
	f = fopen(KH_BAD ".err", "r");
	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	want = calloc(1, (size_t)n + 1);
	ck_assert_uint_eq(fread(want, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	ck_assert_str_eq(got, want);
	free(got);
	free(want);
	cfg_errors_free(&e);

	cfg_errors_init(&e);
	ck_assert_int_ne(knownhosts_load("unit/golden/knownhosts/absent", &kh,
	    &e), 0);
	ck_assert_uint_eq(cfg_errors_count(&e), 1);
	cfg_errors_free(&e);
}
END_TEST

START_TEST(test_empty_and_comments)
{
	static const char text[] = "# only\n\n   \n\t# comments\r\n";
	struct cfg_errors e;

	cfg_errors_init(&e);
	ck_assert_int_eq(knownhosts_parse_buffer("kh", text, strlen(text),
	    &kh, &e), 0);
	ck_assert_uint_eq(knownhosts_count(kh), 0);
	expect("a", 22, "", "", "");
	unload();
	ck_assert_int_eq(knownhosts_parse_buffer("kh", "", 0, &kh, &e), 0);
	unload();
	cfg_errors_free(&e);
}
END_TEST

/* Hash with the real ssh-keygen at test time, when it is installed. */
START_TEST(test_hashed_by_ssh_keygen)
{
	char dir[] = "/tmp/tp-kh-XXXXXX", path[128], cmd[512];
	struct cfg_errors e;
	FILE *f;

	if (system("command -v ssh-keygen >/dev/null 2>&1") != 0)
		return;
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/kh", dir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fprintf(f, "fresh.example.net " KEY_A "\n[fresh.example.net]:3022 "
	    KEY_A "\n");
	fclose(f);
	snprintf(cmd, sizeof(cmd), "ssh-keygen -H -f %s >/dev/null 2>&1 && "
	    "! grep -q fresh %s", path, path);
	ck_assert_int_eq(system(cmd), 0);
	cfg_errors_init(&e);
	ck_assert_int_eq(knownhosts_load(path, &kh, &e), 0);
	expect("fresh.example.net", 22, FP_A, "", "");
	expect("fresh.example.net", 3022, FP_A, "", "");
	expect("fresh.example.net", 3023, "", "", "");
	expect("other.example.net", 22, "", "", "");
	unload();
	cfg_errors_free(&e);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(test_lookup_bad_host)
{
	struct kh_result r;

	load_good();
	ck_assert_int_eq(knownhosts_lookup(kh, "", 22, &r), TP_EINVAL);
	ck_assert_int_eq(knownhosts_lookup(kh, "a b", 22, &r), TP_EINVAL);
	ck_assert_int_eq(knownhosts_lookup(kh, "a,b", 22, &r), TP_EINVAL);
	unload();
}
END_TEST

static int
has_line_location(const char *msg, const char *file)
{
	size_t n = strlen(file);
	const char *p = msg + n;

	if (strncmp(msg, file, n) != 0 || *p != ':')
		return 0;
	if (p[1] == ' ')
		return 1;	/* the whole file */
	if (!isdigit((unsigned char)*++p) || *p == '0')
		return 0;
	while (isdigit((unsigned char)*p))
		p++;
	return p[0] == ':' && p[1] == ' ';
}

static void
check_mutant(const char *buf, size_t len, void *arg)
{
	struct knownhosts *m = NULL;
	struct cfg_errors e;
	struct kh_result r;
	size_t i;
	int rc;

	(void)arg;
	cfg_errors_init(&e);
	rc = knownhosts_parse_buffer("m", buf, len, &m, &e);
	ck_assert_int_eq(rc != 0, cfg_errors_count(&e) != 0);
	ck_assert_int_eq(rc != 0, m == NULL);
	for (i = 0; i < e.n; i++)
		ck_assert_msg(has_line_location(e.msg[i], "m"),
		    "no location: %s", e.msg[i]);
	if (m != NULL) {
		ck_assert_int_eq(knownhosts_lookup(m, "proxy1.example", 22,
		    &r), 0);
		kh_result_free(&r);
	}
	knownhosts_free(m);
	cfg_errors_free(&e);
}

START_TEST(test_mutations)
{
	static const unsigned char subst[] = { 0, '\n', ' ', ',', '!', '*',
	    '?', '|', '@', '#', '[', ']', '=', 0xff };
	size_t len;
	char *orig;

	/* Every byte of the text, every third byte of the base64 blobs. */
	ck_assert_ptr_nonnull(orig = tu_slurp(KH_FILE, &len));
	tu_mutate(orig, len, subst, sizeof(subst), TU_MUTATE_SPARSE_ALNUM,
	    check_mutant, NULL);
	free(orig);
}
END_TEST

static Suite *
knownhosts_suite(void)
{
	Suite *s = suite_create("knownhosts");
	TCase *tc = tcase_create("lookup");

	tcase_add_test(tc, test_plain_and_ports);
	tcase_add_test(tc, test_case_insensitive);
	tcase_add_test(tc, test_wildcards_and_negation);
	tcase_add_test(tc, test_hashed);
	tcase_add_test(tc, test_revoked);
	tcase_add_test(tc, test_match_list);
	tcase_add_test(tc, test_errors);
	tcase_add_test(tc, test_empty_and_comments);
	tcase_add_test(tc, test_hashed_by_ssh_keygen);
	tcase_add_test(tc, test_lookup_bad_host);
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
	return tu_run(knownhosts_suite());
}
