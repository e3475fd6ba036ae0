/*
 * Tunnel files and the tunnel cache: parsing, spec hashes, reload
 * semantics (add, remove, change, unchanged, broken file keeps its last
 * good contents, duplicates keep the first), the inotify watcher, mutation
 * of valid files, and a linear-time check with many tunnels.
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>

#include "common/error.h"
#include "supervisor/cfgerr.h"
#include "supervisor/cfgread.h"
#include "supervisor/tunneldoc.h"
#include "supervisor/tunnels.h"
#include "supervisor/tunnelwatch.h"
#include "testutil.h"

static const char base_doc[] =
    "kind: reverse_tunnel\n"
    "version: v2\n"
    "metadata: {name: cluster-a}\n"
    "spec:\n"
    "  cluster_name: cluster-a\n"
    "  dial_addrs: [\"lb.cluster-a.example:2222\", \"[2001:DB8::1]:3024\"]\n"
    "  forwards:\n"
    "    - {listen: \"127.0.0.1:22001\", target: \"127.0.0.1:22\"}\n"
    "    - {listen: \"[::1]:22002\", target: \"/run/ssh.sock\"}\n"
    "  discovery: true\n";

static char tmpdir[64];
static char curdir[128];	/* where put() and del() work */

static void
setup_tmp(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tp-tunnels-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(curdir, sizeof(curdir), "%s", tmpdir);
}

static void
teardown_tmp(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Writes a file atomically (temp + rename), as config management does. */
static void
put(const char *name, const char *text)
{
	char path[256], tmp[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", curdir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", curdir, name);
	ck_assert_ptr_nonnull(f = fopen(tmp, "w"));
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(rename(tmp, path), 0);
}

static void
del(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", curdir, name);
	ck_assert_int_eq(unlink(path), 0);
}

static char *
tunnel_doc(const char *cluster, const char *addr)
{
	char *s;

	ck_assert_int_ge(asprintf(&s, "kind: reverse_tunnel\nversion: v2\n"
	    "metadata: {name: %s}\nspec:\n  cluster_name: %s\n"
	    "  dial_addrs: [\"%s\"]\n", cluster, cluster, addr), 0);
	return s;
}

static void
put_tunnel(const char *name, const char *cluster, const char *addr)
{
	char *s = tunnel_doc(cluster, addr);

	put(name, s);
	free(s);
}

static size_t
parse(const char *text, struct tunnel_list *l, struct cfg_errors *e)
{
	memset(l, 0, sizeof(*l));
	cfg_errors_init(e);
	return tunnel_parse_buffer("t.yaml", text, strlen(text), l, e);
}

START_TEST(test_parse)
{
	struct cfg_errors e;
	struct tunnel_list l;
	const struct tunnel *t;

	ck_assert_uint_eq(parse(base_doc, &l, &e), 0);
	ck_assert_uint_eq(l.n, 1);
	t = &l.v[0];
	ck_assert_str_eq(t->name, "cluster-a");
	ck_assert_str_eq(t->cluster_name, "cluster-a");
	ck_assert_uint_eq(t->n_dial_addrs, 2);
	ck_assert_str_eq(t->dial_addrs[0], "lb.cluster-a.example:2222");
	ck_assert_str_eq(t->dial_addrs[1], "[2001:DB8::1]:3024");
	ck_assert_uint_eq(t->n_forwards, 2);
	ck_assert_str_eq(t->forwards[0].listen, "127.0.0.1:22001");
	ck_assert_str_eq(t->forwards[0].listen_host, "127.0.0.1");
	ck_assert_uint_eq(t->forwards[0].listen_port, 22001);
	ck_assert_str_eq(t->forwards[0].target, "127.0.0.1:22");
	ck_assert_int_eq(t->forwards[0].target_is_unix, 0);
	ck_assert_str_eq(t->forwards[1].listen_host, "::1");
	ck_assert_str_eq(t->forwards[1].target, "/run/ssh.sock");
	ck_assert_int_eq(t->forwards[1].target_is_unix, 1);
	ck_assert_int_eq(t->discovery, 1);
	ck_assert_str_eq(t->file, "t.yaml");
	ck_assert_uint_eq(t->line, 5);
	ck_assert_uint_eq(t->col, 17);
	tunnel_list_free(&l);
	cfg_errors_free(&e);
}
END_TEST

START_TEST(test_parse_defaults)
{
	struct cfg_errors e;
	struct tunnel_list l;
	char *doc = tunnel_doc("c", "h:1");

	ck_assert_uint_eq(parse(doc, &l, &e), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_int_eq(l.v[0].discovery, 1);
	ck_assert_uint_eq(l.v[0].n_forwards, 0);
	tunnel_list_free(&l);
	cfg_errors_free(&e);
	free(doc);
}
END_TEST

/*
 * proxy_principals: names and globs from the file, in order; each
 * mistake named by its entry; and part of the spec hash (trust).
 */
START_TEST(test_parse_principals)
{
	static const char *bad[][2] = {
		{ "[\"*\"]", "t.yaml:6:22: spec.proxy_principals[0]: invalid "
		    "name \"*\": matches every name: list the proxies' names or "
		    "a pattern with a domain" },
		{ "[\"*.*\"]", "t.yaml:6:22: spec.proxy_principals[0]: invalid "
		    "name \"*.*\": matches every name: list the proxies' names "
		    "or a pattern with a domain" },
		{ "[a.example, \"b c\"]", "t.yaml:6:33: "
		    "spec.proxy_principals[1]: invalid name \"b c\": only "
		    "letters, digits, '.', '-', '_', ':' and the wildcards '*' "
		    "and '?'" },
		{ "[a.example, a.example]", "t.yaml:6:33: "
		    "spec.proxy_principals[1]: duplicate name \"a.example\"" },
		{ "a.example", "t.yaml:6:21: spec.proxy_principals: expected a "
		    "sequence" },
	};
#define HEAD "kind: reverse_tunnel\nversion: v2\n" \
	    "metadata: {name: x}\nspec:\n  cluster_name: x\n" \
	    "  proxy_principals: %s\n  dial_addrs: [\"h:1\"]\n"
	struct cfg_errors e;
	struct tunnel_list l;
	char doc[2048];
	uint64_t h0, h1;

	snprintf(doc, sizeof(doc), HEAD, "[\"*.proxies.example\", p1.lb]");
	ck_assert_uint_eq(parse(doc, &l, &e), 0);
	ck_assert_uint_eq(l.v[0].n_proxy_principals, 2);
	ck_assert_str_eq(l.v[0].proxy_principals[0], "*.proxies.example");
	ck_assert_str_eq(l.v[0].proxy_principals[1], "p1.lb");
	h0 = l.v[0].spec_hash;
	tunnel_list_free(&l);
	cfg_errors_free(&e);
	snprintf(doc, sizeof(doc), HEAD, "[\"*.proxies.example\"]");
	ck_assert_uint_eq(parse(doc, &l, &e), 0);
	h1 = l.v[0].spec_hash;
	ck_assert_uint_ne(h0, h1);
	tunnel_list_free(&l);
	cfg_errors_free(&e);
	snprintf(doc, sizeof(doc), HEAD, "[]");
	ck_assert_uint_eq(parse(doc, &l, &e), 0);
	ck_assert_uint_eq(l.v[0].n_proxy_principals, 0);
	ck_assert_uint_ne(l.v[0].spec_hash, h1);
	tunnel_list_free(&l);
	cfg_errors_free(&e);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(doc, sizeof(doc), HEAD, bad[i][0]);
		ck_assert_uint_eq(parse(doc, &l, &e), 1);
		ck_assert_str_eq(e.msg[0], bad[i][1]);
		ck_assert_uint_eq(l.n, 0);
		tunnel_list_free(&l);
		cfg_errors_free(&e);
	}
}
#undef HEAD
END_TEST

/* Limits: 16 dial addresses, 32 forwards, 127-character names. */
START_TEST(test_parse_limits)
{
	char doc[8192], name[200];
	struct cfg_errors e;
	struct tunnel_list l;
	size_t o;
	int i;

	o = (size_t)snprintf(doc, sizeof(doc), "kind: reverse_tunnel\n"
	    "version: v2\nmetadata: {name: x}\nspec:\n  cluster_name: x\n"
	    "  dial_addrs:\n");
	for (i = 0; i < 17; i++)
		o += (size_t)snprintf(doc + o, sizeof(doc) - o,
		    "    - h%d:1\n", i);
	o += (size_t)snprintf(doc + o, sizeof(doc) - o, "  forwards:\n");
	for (i = 0; i < 33; i++)
		o += (size_t)snprintf(doc + o, sizeof(doc) - o,
		    "    - {listen: \"127.0.0.1:%d\", target: \"h:1\"}\n",
		    i + 1);
	ck_assert_uint_eq(parse(doc, &l, &e), 2);
	ck_assert_str_eq(e.msg[0], "t.yaml:7:5: spec.dial_addrs: too many "
	    "entries (17, limit 16)");
	ck_assert_str_eq(e.msg[1], "t.yaml:25:5: spec.forwards: too many "
	    "entries (33, limit 32)");
	ck_assert_uint_eq(l.n, 0);
	tunnel_list_free(&l);
	cfg_errors_free(&e);

	memset(name, 'n', 128);
	name[128] = '\0';
	snprintf(doc, sizeof(doc), "kind: reverse_tunnel\nversion: v2\n"
	    "metadata: {name: x}\nspec:\n  cluster_name: %s\n"
	    "  dial_addrs: [\"h:1\"]\n", name);
	ck_assert_uint_eq(parse(doc, &l, &e), 1);
	name[127] = '\0';
	tunnel_list_free(&l);
	cfg_errors_free(&e);
	snprintf(doc, sizeof(doc), "kind: reverse_tunnel\nversion: v2\n"
	    "metadata: {name: x}\nspec:\n  cluster_name: %s\n"
	    "  dial_addrs: [\"h:1\"]\n", name);
	ck_assert_uint_eq(parse(doc, &l, &e), 0);
	tunnel_list_free(&l);
	cfg_errors_free(&e);
}
END_TEST

START_TEST(test_parse_empty)
{
	struct cfg_errors e;
	struct tunnel_list l;

	ck_assert_uint_eq(parse("", &l, &e), 1);
	ck_assert_str_eq(cfg_errors_first(&e), "t.yaml: empty file (delete "
	    "it to remove its tunnels)");
	tunnel_list_free(&l);
	cfg_errors_free(&e);
	/* Comments only, or empty documents: a valid file without tunnels. */
	ck_assert_uint_eq(parse("# all commented out\n---\n---\n", &l, &e), 0);
	ck_assert_uint_eq(l.n, 0);
	tunnel_list_free(&l);
	cfg_errors_free(&e);
}
END_TEST

START_TEST(test_packaging_example)
{
	const char *file = "../packaging/examples/tunnels.d/cluster-a.yaml";
	struct tunnel_list l = { NULL, 0, 0 };
	struct cfg_errors e;
	char buf[8192];
	size_t len;
	FILE *f;

	ck_assert_ptr_nonnull(f = fopen(file, "r"));
	len = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	cfg_errors_init(&e);
	ck_assert_uint_eq(tunnel_parse_buffer(file, buf, len, &l, &e), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_uint_eq(l.v[0].n_forwards, 2);
	tunnel_list_free(&l);
	cfg_errors_free(&e);
}
END_TEST

static uint64_t
hash_of(const char *text)
{
	struct cfg_errors e;
	struct tunnel_list l;
	uint64_t h;

	ck_assert_msg(parse(text, &l, &e) == 0, "%s", cfg_errors_first(&e));
	ck_assert_uint_eq(l.n, 1);
	h = l.v[0].spec_hash;
	tunnel_list_free(&l);
	cfg_errors_free(&e);
	return h;
}

/* Replaces the first occurrence of from in base_doc with to. */
static char *
variant(const char *from, const char *to)
{
	const char *p = strstr(base_doc, from);
	char *s;

	ck_assert_ptr_nonnull(p);
	ck_assert_int_ge(asprintf(&s, "%.*s%s%s", (int)(p - base_doc),
	    base_doc, to, p + strlen(from)), 0);
	return s;
}

START_TEST(test_spec_hash)
{
	static const char *const changes[][2] = {
		{ "cluster_name: cluster-a", "cluster_name: cluster-b" },
		{ "lb.cluster-a.example:2222", "lb.cluster-a.example:2223" },
		{ ", \"[2001:DB8::1]:3024\"", "" },
		{ "[\"lb.", "[\"x:1\", \"lb." },
		{ "127.0.0.1:22001", "127.0.0.1:22009" },
		{ "127.0.0.1:22\"}", "127.0.0.2:22\"}" },
		{ "/run/ssh.sock", "/run/ssh2.sock" },
		{ "discovery: true", "discovery: false" },
		{ "    - {listen: \"[::1]:22002\", target: \"/run/ssh.sock\"}\n",
		  "" },
	};
	static const char *const cosmetic[][2] = {
		{ "metadata: {name: cluster-a}", "metadata: {name: renamed}" },
		{ "127.0.0.1:22\"}", "127.0.0.1:022\"}" },
		{ "version: v2\n", "version: v2  # a comment\n" },
		{ "discovery: true\n", "" },	/* the default */
	};
	uint64_t base = hash_of(base_doc), h[16];
	size_t i, j, n = sizeof(changes) / sizeof(changes[0]);
	char *s;

	ck_assert_uint_eq(base, hash_of(base_doc));
	for (i = 0; i < n; i++) {
		s = variant(changes[i][0], changes[i][1]);
		h[i] = hash_of(s);
		ck_assert_msg(h[i] != base, "change %zu not seen", i);
		for (j = 0; j < i; j++)
			ck_assert_uint_ne(h[i], h[j]);
		free(s);
	}
	for (i = 0; i < sizeof(cosmetic) / sizeof(cosmetic[0]); i++) {
		s = variant(cosmetic[i][0], cosmetic[i][1]);
		ck_assert_msg(hash_of(s) == base, "cosmetic %zu changed", i);
		free(s);
	}
}
END_TEST

static const struct tunnel *
find(struct tunnel_cache *tc, const char *cluster)
{
	return tunnel_cache_find(tc, cluster);
}

static int
reload(struct tunnel_cache *tc, struct cfg_errors *e)
{
	cfg_errors_clear(e);
	return tunnel_cache_reload(tc, tmpdir, e);
}

START_TEST(test_cache_add_remove_change)
{
	const struct tunnel *const *set, *a, *b;
	struct tunnel_cache_status st;
	struct tunnel_cache *tc;
	struct cfg_errors e;
	uint64_t ha, hb, gen;
	size_t n;

	setup_tmp();
	cfg_errors_init(&e);
	ck_assert_ptr_nonnull(tc = tunnel_cache_new());
	put_tunnel("b.yaml", "b", "lb.b:1");
	put_tunnel("a.yaml", "a", "lb.a:1");
	ck_assert_int_eq(reload(tc, &e), 0);
	set = tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_str_eq(set[0]->cluster_name, "a");	/* sorted by file */
	ck_assert_str_eq(set[1]->cluster_name, "b");
	ha = set[0]->spec_hash;
	hb = set[1]->spec_hash;
	a = set[0];
	tunnel_cache_get_status(tc, &st);
	ck_assert_int_eq(st.last_reload_ok, 1);
	ck_assert_uint_gt(st.last_success_wall_ms, 0);
	ck_assert_ptr_null(st.first_error);
	gen = st.generation;

	/* Unchanged: same hashes, same generation, same objects. */
	ck_assert_int_eq(reload(tc, &e), 0);
	ck_assert_ptr_eq(find(tc, "a"), a);
	ck_assert_uint_eq(find(tc, "b")->spec_hash, hb);
	tunnel_cache_get_status(tc, &st);
	ck_assert_uint_eq(st.generation, gen);

	/* Changed: b's hash changes, a's does not. */
	put_tunnel("b.yaml", "b", "lb.b:2");
	ck_assert_int_eq(reload(tc, &e), 0);
	ck_assert_uint_eq(find(tc, "a")->spec_hash, ha);
	ck_assert_uint_ne(find(tc, "b")->spec_hash, hb);
	tunnel_cache_get_status(tc, &st);
	ck_assert_uint_gt(st.generation, gen);

	/* Removed and added. */
	del("b.yaml");
	put_tunnel("c.yaml", "c", "lb.c:1");
	ck_assert_int_eq(reload(tc, &e), 0);
	set = tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_ptr_null(find(tc, "b"));
	ck_assert_str_eq(set[1]->cluster_name, "c");
	b = find(tc, "c");
	ck_assert_ptr_nonnull(b);
	ck_assert_str_eq(b->dial_addrs[0], "lb.c:1");

	tunnel_cache_free(tc);
	cfg_errors_free(&e);
	teardown_tmp();
}
END_TEST

START_TEST(test_cache_broken_keeps_last_good)
{
	struct tunnel_cache_status st;
	struct tunnel_cache *tc;
	struct cfg_errors e;
	uint64_t ha, ok_ms;
	char want[256];
	size_t n;

	setup_tmp();
	cfg_errors_init(&e);
	tc = tunnel_cache_new();
	put_tunnel("a.yaml", "a", "lb.a:1");
	put_tunnel("b.yaml", "b", "lb.b:1");
	ck_assert_int_eq(reload(tc, &e), 0);
	ha = find(tc, "a")->spec_hash;
	tunnel_cache_get_status(tc, &st);
	ok_ms = st.last_success_wall_ms;

	/* Half-written: a syntax error. */
	put("a.yaml", "kind: reverse_tunnel\nspec: [\n");
	ck_assert_int_eq(reload(tc, &e), TP_ESYNTAX);
	ck_assert_uint_eq(e.n, 1);
	snprintf(want, sizeof(want), "%s/a.yaml:3:1: syntax error: did not "
	    "find expected node content (while parsing a flow node at line 3 "
	    "column 1)", tmpdir);
	ck_assert_str_eq(e.msg[0], want);
	ck_assert_ptr_nonnull(find(tc, "a"));
	ck_assert_uint_eq(find(tc, "a")->spec_hash, ha);
	tunnel_cache_get_status(tc, &st);
	ck_assert_int_eq(st.last_reload_ok, 0);
	ck_assert_str_eq(st.first_error, want);
	ck_assert_uint_eq(st.last_success_wall_ms, ok_ms);

	/* Still broken at the next reload, still reported, still kept. */
	ck_assert_int_eq(reload(tc, &e), TP_ESYNTAX);
	ck_assert_str_eq(cfg_errors_first(&e), want);
	ck_assert_ptr_nonnull(find(tc, "a"));

	/* Truncated to zero by a non-atomic writer. */
	put("a.yaml", "");
	ck_assert_int_eq(reload(tc, &e), TP_ESYNTAX);
	ck_assert_uint_eq(find(tc, "a")->spec_hash, ha);

	/* Valid YAML, invalid tunnel: also keeps the old contents. */
	put("a.yaml", "kind: reverse_tunnel\nversion: v2\n");
	ck_assert_int_eq(reload(tc, &e), TP_ESYNTAX);
	ck_assert_uint_eq(find(tc, "a")->spec_hash, ha);

	/* A broken directory keeps everything. */
	put_tunnel("a.yaml", "a", "lb.a:9");
	ck_assert_int_eq(reload(tc, &e), 0);
	ck_assert_int_eq(tunnel_cache_reload(tc, "/nonexistent/tp", &e),
	    TP_ESYS);
	tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 2);

	/* A new file that never parsed contributes nothing. */
	put("c.yaml", "garbage: [\n");
	ck_assert_int_eq(reload(tc, &e), TP_ESYNTAX);
	tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 2);

	tunnel_cache_free(tc);
	cfg_errors_free(&e);
	teardown_tmp();
}
END_TEST

/*
 * A tunnel file some process holds open for writing is not read: what it
 * holds may be a valid prefix (here: the first of two documents, or only
 * a comment) that would drop tunnels.  Its last good contents stay until
 * the writer closes it.  (Needs file leases: the test owns its files.)
 */
START_TEST(test_cache_being_written)
{
	struct cfg_errors e;
	struct tunnel_cache *tc;
	char path[256], *a, *b, *both, *buf;
	size_t n, len;
	int fd;

	setup_tmp();
	cfg_errors_init(&e);
	tc = tunnel_cache_new();
	a = tunnel_doc("a", "lb.a:1");
	b = tunnel_doc("b", "lb.b:1");
	ck_assert_int_ge(asprintf(&both, "%s---\n%s", a, b), 0);
	put("ab.yaml", both);
	ck_assert_int_eq(reload(tc, &e), 0);
	tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 2);

	/* A non-atomic writer: truncate, the first document, still open. */
	snprintf(path, sizeof(path), "%s/ab.yaml", tmpdir);
	ck_assert_int_ge(fd = open(path, O_WRONLY | O_TRUNC), 0);
	ck_assert_int_eq(write(fd, a, strlen(a)), (ssize_t)strlen(a));
	ck_assert_int_eq(reload(tc, &e), TP_ESYNTAX);
	ck_assert_ptr_nonnull(strstr(cfg_errors_first(&e), "ab.yaml: open "
	    "for writing by another process"));
	tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 2);
	ck_assert_ptr_nonnull(find(tc, "b"));
	ck_assert_int_eq(cfg_read_file(path, 1 << 20, &buf, &len, &e),
	    TP_EAGAIN);
	ck_assert_ptr_null(buf);

	/* Closed: the writer's contents (now only "a") take effect. */
	ck_assert_int_eq(close(fd), 0);
	ck_assert_int_eq(reload(tc, &e), 0);
	tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_ptr_nonnull(find(tc, "a"));
	ck_assert_ptr_null(find(tc, "b"));

	/* An open read-only descriptor elsewhere is no writer. */
	ck_assert_int_ge(fd = open(path, O_RDONLY), 0);
	put("ab.yaml", both);
	ck_assert_int_eq(reload(tc, &e), 0);
	tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 2);
	close(fd);

	free(a);
	free(b);
	free(both);
	tunnel_cache_free(tc);
	cfg_errors_free(&e);
	teardown_tmp();
}
END_TEST

START_TEST(test_cache_duplicates)
{
	const struct tunnel *t;
	struct tunnel_cache *tc;
	struct cfg_errors e;
	char want[512], *two, *d1, *d2;
	size_t n;

	setup_tmp();
	cfg_errors_init(&e);
	tc = tunnel_cache_new();
	put_tunnel("a.yaml", "x", "lb.first:1");
	put_tunnel("b.yaml", "x", "lb.second:1");
	ck_assert_int_eq(reload(tc, &e), TP_ESYNTAX);
	ck_assert_uint_eq(e.n, 1);
	snprintf(want, sizeof(want), "%s/b.yaml:5:17: spec.cluster_name: "
	    "duplicate cluster \"x\" (first defined at %s/a.yaml:5:17)",
	    tmpdir, tmpdir);
	ck_assert_str_eq(e.msg[0], want);
	t = find(tc, "x");
	ck_assert_str_eq(t->dial_addrs[0], "lb.first:1");
	tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 1);

	/* Within one file: the later document loses, the rest stays. */
	d1 = tunnel_doc("y", "h:1");
	d2 = tunnel_doc("y", "h:2");
	ck_assert_int_ge(asprintf(&two, "%s---\n%s", d1, d2), 0);
	put("b.yaml", two);
	free(two);
	free(d1);
	free(d2);
	ck_assert_int_eq(reload(tc, &e), TP_ESYNTAX);
	ck_assert_str_eq(find(tc, "y")->dial_addrs[0], "h:1");
	ck_assert_str_eq(find(tc, "x")->dial_addrs[0], "lb.first:1");
	tunnel_cache_free(tc);
	cfg_errors_free(&e);
	teardown_tmp();
}
END_TEST

/*
 * A new file that redefines a running cluster must not take it over, even
 * when its name sorts first: the running definition stays, the newcomer
 * is the duplicate.  Once the running file goes away, the newcomer wins.
 */
START_TEST(test_cache_duplicate_keeps_running)
{
	struct tunnel_cache *tc;
	struct cfg_errors e;
	char want[512];

	setup_tmp();
	cfg_errors_init(&e);
	tc = tunnel_cache_new();
	put_tunnel("running.yaml", "x", "lb.running:1");
	ck_assert_int_eq(reload(tc, &e), 0);
	put_tunnel("aaa_dup.yaml", "x", "lb.newcomer:1");
	ck_assert_int_eq(reload(tc, &e), TP_ESYNTAX);
	ck_assert_uint_eq(e.n, 1);
	snprintf(want, sizeof(want), "%s/aaa_dup.yaml:5:17: spec.cluster_name: "
	    "duplicate cluster \"x\" (first defined at %s/running.yaml:5:17)",
	    tmpdir, tmpdir);
	ck_assert_str_eq(e.msg[0], want);
	ck_assert_str_eq(find(tc, "x")->dial_addrs[0], "lb.running:1");
	/* Reloading again changes nothing: still the running one. */
	ck_assert_int_eq(reload(tc, &e), TP_ESYNTAX);
	ck_assert_str_eq(find(tc, "x")->dial_addrs[0], "lb.running:1");
	del("running.yaml");
	ck_assert_int_eq(reload(tc, &e), 0);
	ck_assert_str_eq(find(tc, "x")->dial_addrs[0], "lb.newcomer:1");
	tunnel_cache_free(tc);
	cfg_errors_free(&e);
	teardown_tmp();
}
END_TEST

START_TEST(test_cache_ignored_files)
{
	struct tunnel_cache *tc;
	struct cfg_errors e;
	char path[256];
	size_t n;

	setup_tmp();
	cfg_errors_init(&e);
	tc = tunnel_cache_new();
	put_tunnel("a.yaml", "a", "h:1");
	put("a.yaml~", "broken: [");
	put(".#a.yaml", "broken: [");
	put(".a.yaml.swp", "broken: [");
	put(".hidden.yaml", "broken: [");
	put("notes.txt", "broken: [");
	put("a.yml", "broken: [");
	put("#a.yaml#", "broken: [");
	snprintf(path, sizeof(path), "%s/dir.yaml", tmpdir);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	ck_assert_int_eq(reload(tc, &e), 0);
	tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(tunnel_file_name_ok("x.yaml"), 1);
	ck_assert_int_eq(tunnel_file_name_ok(".yaml"), 0);
	ck_assert_int_eq(tunnel_file_name_ok("x.yaml.swp"), 0);
	tunnel_cache_free(tc);
	cfg_errors_free(&e);
	teardown_tmp();
}
END_TEST

/*
 * A rewrite with the same size in the same second must still be seen: the
 * stat signature is not trusted for recently modified files.
 */
START_TEST(test_cache_same_size_rewrite)
{
	struct tunnel_cache *tc;
	struct cfg_errors e;
	char path[256], *doc;
	FILE *f;

	setup_tmp();
	cfg_errors_init(&e);
	tc = tunnel_cache_new();
	put_tunnel("a.yaml", "a", "lb.a:1");
	ck_assert_int_eq(reload(tc, &e), 0);
	snprintf(path, sizeof(path), "%s/a.yaml", tmpdir);
	doc = tunnel_doc("a", "lb.a:2");
	ck_assert_ptr_nonnull(f = fopen(path, "r+"));	/* same inode */
	fputs(doc, f);
	fclose(f);
	free(doc);
	ck_assert_int_eq(reload(tc, &e), 0);
	ck_assert_str_eq(find(tc, "a")->dial_addrs[0], "lb.a:2");
	tunnel_cache_free(tc);
	cfg_errors_free(&e);
	teardown_tmp();
}
END_TEST

/* ---- watcher ------------------------------------------------------- */

struct watch_ctx {
	struct event_base	*base;
	int			 calls;
};

static void
on_change(void *arg)
{
	struct watch_ctx *w = arg;

	w->calls++;
	event_base_loopbreak(w->base);
}

static void
run_loop(struct event_base *base, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

START_TEST(test_watch)
{
	struct watch_ctx ctx = { NULL, 0 };
	struct tunnel_watch *w;
	char sub[128];

	setup_tmp();
	ck_assert_ptr_nonnull(ctx.base = event_base_new());
	snprintf(sub, sizeof(sub), "%s/tunnels.d", tmpdir);
	w = tunnel_watch_new(ctx.base, sub, 50, on_change, &ctx);
	ck_assert_ptr_nonnull(w);
	ck_assert_int_eq(tunnel_watch_active(w), 0);	/* not there yet */
	ck_assert_int_eq(tunnel_watch_retry(w), TP_ENOENT);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	ck_assert_int_eq(tunnel_watch_retry(w), 0);
	ck_assert_int_eq(tunnel_watch_active(w), 1);

	/* An editor's burst: temp file, write, rename, backup: one call. */
	snprintf(curdir, sizeof(curdir), "%s", sub);
	put("a.yaml", base_doc);
	put("a.yaml~", "backup");
	put("b.yaml", base_doc);
	run_loop(ctx.base, 2000);
	ck_assert_int_eq(ctx.calls, 1);
	run_loop(ctx.base, 200);
	ck_assert_int_eq(ctx.calls, 1);

	/* Changes to ignored files alone do not call back. */
	put("notes.txt", "x");
	put("c.yaml~", "x");
	run_loop(ctx.base, 200);
	ck_assert_int_eq(ctx.calls, 1);

	del("a.yaml");
	run_loop(ctx.base, 2000);
	ck_assert_int_eq(ctx.calls, 2);

	/* The directory goes away: one call, and the watch is gone. */
	del("b.yaml");
	del("a.yaml~");
	del("notes.txt");
	del("c.yaml~");
	ck_assert_int_eq(rmdir(sub), 0);
	run_loop(ctx.base, 2000);
	ck_assert_int_eq(ctx.calls, 3);
	ck_assert_int_eq(tunnel_watch_active(w), 0);
	ck_assert_int_eq(tunnel_watch_retry(w), TP_ENOENT);

	tunnel_watch_free(w);
	event_base_free(ctx.base);
	teardown_tmp();
}
END_TEST

/* ---- mutation ------------------------------------------------------ */

static void
check_mutant(const char *buf, size_t len, void *arg)
{
	struct tunnel_list l = { NULL, 0, 0 };
	struct cfg_errors e;
	size_t i, nerr;

	(void)arg;
	cfg_errors_init(&e);
	nerr = tunnel_parse_buffer("m.yaml", buf, len, &l, &e);
	ck_assert_uint_eq(nerr, cfg_errors_count(&e));
	for (i = 0; i < e.n; i++)
		ck_assert_msg(tu_has_location(e.msg[i], "m.yaml"),
		    "no location: %s", e.msg[i]);
	for (i = 0; i < l.n; i++)
		ck_assert_uint_ge(l.v[i].n_dial_addrs, 1);
	tunnel_list_free(&l);
	cfg_errors_free(&e);
}

START_TEST(test_mutations)
{
	static const unsigned char subst[] = { 0, '\n', ':', '[', ']', '{',
	    '}', '"', '-', ' ', '&', '*', '!', '#', '|', 0xff, 0x80, ',',
	    '/', '0' };
	char *doc;

	ck_assert_int_ge(asprintf(&doc, "%s---\n%s", base_doc, base_doc), 0);
	tu_mutate(doc, strlen(doc), subst, sizeof(subst), 0, check_mutant,
	    NULL);
	free(doc);
}
END_TEST

/* ---- scale --------------------------------------------------------- */

/* Writes n tunnels into files of per_file documents each. */
static void
write_many(size_t n, size_t per_file)
{
	char name[64], *doc;
	size_t i, fileno;
	FILE *f = NULL;
	char path[256];

	for (i = 0; i < n; i++) {
		if (i % per_file == 0) {
			if (f != NULL)
				fclose(f);
			fileno = i / per_file;
			snprintf(path, sizeof(path), "%s/t%06zu.yaml", tmpdir,
			    fileno);
			ck_assert_ptr_nonnull(f = fopen(path, "w"));
		}
		snprintf(name, sizeof(name), "cluster-%zu", i);
		doc = tunnel_doc(name, "lb.example.com:3024");
		fprintf(f, "%s---\n", doc);
		free(doc);
	}
	if (f != NULL)
		fclose(f);
}

/*
 * TP_SCALE (default 20000) tunnels load, and a second reload of the
 * unchanged files parses nothing again: the same tunnel objects, the same
 * generation.  Times are printed for the record (figures belong to
 * bench/, not to a pass/fail bound here).
 */
START_TEST(test_scale)
{
	const char *env = getenv("TP_SCALE");
	size_t n = env ? strtoul(env, NULL, 10) : 20000, got;
	struct tunnel_cache_status st;
	const struct tunnel *first;
	struct tunnel_cache *tc;
	struct cfg_errors e;
	double t0, t1, t2;
	uint64_t gen;

	setup_tmp();
	cfg_errors_init(&e);
	write_many(n, 500);
	tc = tunnel_cache_new();
	t0 = tu_now_s();
	ck_assert_int_eq(reload(tc, &e), 0);
	t1 = tu_now_s();
	ck_assert_ptr_nonnull(first = find(tc, "cluster-0"));
	tunnel_cache_get_status(tc, &st);
	gen = st.generation;
	ck_assert_int_eq(reload(tc, &e), 0);
	t2 = tu_now_s();
	tunnel_cache_tunnels(tc, &got);
	ck_assert_uint_eq(got, n);
	ck_assert_ptr_eq(find(tc, "cluster-0"), first);
	tunnel_cache_get_status(tc, &st);
	ck_assert_uint_eq(st.generation, gen);
	fprintf(stderr, "scale: %zu tunnels: first reload %.1f ms, "
	    "reload of recently written files %.1f ms\n", n,
	    (t1 - t0) * 1e3, (t2 - t1) * 1e3);
	tunnel_cache_free(tc);
	cfg_errors_free(&e);
	teardown_tmp();
}
END_TEST

/* ---- the keyed source (etcd keys beside the files) ------------------- */

/* Puts key's value (a tunnel of cluster at addr, or text) into the cache. */
static int
ext_put(struct tunnel_cache *tc, const char *key, const char *cluster,
    const char *addr, struct cfg_errors *e)
{
	char label[128], *doc = tunnel_doc(cluster, addr);
	int rc;

	snprintf(label, sizeof(label), "etcd:%s", key);
	rc = tunnel_cache_ext_put(tc, key, label, doc, strlen(doc), e);
	free(doc);
	return rc;
}

START_TEST(test_keyed_put_delete_change)
{
	const struct tunnel *a, *b;
	struct tunnel_cache *tc;
	struct cfg_errors e;
	size_t n, bad;

	cfg_errors_init(&e);
	tc = tunnel_cache_new();
	ck_assert_int_eq(ext_put(tc, "/p/b", "b", "h:2", &e), 0);
	ck_assert_int_eq(ext_put(tc, "/p/a", "a", "h:1", &e), 0);
	/* Nothing changes before the commit. */
	tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(tunnel_cache_commit(tc, &e), 0);
	ck_assert_uint_eq(e.n, 0);
	ck_assert_uint_eq(tunnel_cache_ext_count(tc, &bad), 2);
	ck_assert_uint_eq(bad, 0);
	a = find(tc, "a");
	b = find(tc, "b");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_str_eq(a->file, "etcd:/p/a");
	/* The same value again: the tunnel is not even parsed again. */
	ck_assert_int_eq(ext_put(tc, "/p/a", "a", "h:1", &e), 0);
	ck_assert_int_eq(tunnel_cache_commit(tc, &e), 0);
	ck_assert_ptr_eq(find(tc, "a"), a);
	/* A change replaces it; a delete removes it. */
	ck_assert_int_eq(ext_put(tc, "/p/a", "a", "h:9", &e), 0);
	ck_assert_int_eq(tunnel_cache_ext_delete(tc, "/p/b"), 0);
	ck_assert_int_eq(tunnel_cache_ext_delete(tc, "/p/b"), TP_ENOENT);
	ck_assert_int_eq(tunnel_cache_commit(tc, &e), 0);
	ck_assert_str_eq(find(tc, "a")->dial_addrs[0], "h:9");
	ck_assert_ptr_null(find(tc, "b"));
	tunnel_cache_free(tc);
	cfg_errors_free(&e);
}
END_TEST

START_TEST(test_keyed_bad_keeps_last_good)
{
	static const char bad_value[] = "kind: reverse_tunnel\nversion: v3\n";
	struct tunnel_cache *tc;
	struct cfg_errors e;
	size_t bad;

	cfg_errors_init(&e);
	tc = tunnel_cache_new();
	ck_assert_int_eq(ext_put(tc, "/p/a", "a", "h:1", &e), 0);
	ck_assert_int_eq(tunnel_cache_commit(tc, &e), 0);
	ck_assert_int_eq(tunnel_cache_ext_put(tc, "/p/a", "etcd:/p/a",
	    bad_value, strlen(bad_value), &e), TP_ESYNTAX);
	ck_assert_uint_ge(e.n, 1);
	ck_assert_str_eq(e.msg[0], "etcd:/p/a:2:10: version: invalid value "
	    "\"v3\": must be \"v2\"");
	ck_assert_int_eq(tunnel_cache_commit(tc, &e), 0);
	ck_assert_str_eq(find(tc, "a")->dial_addrs[0], "h:1");
	tunnel_cache_ext_count(tc, &bad);
	ck_assert_uint_eq(bad, 1);
	/* A new key that is bad from the start has no tunnels. */
	cfg_errors_clear(&e);
	ck_assert_int_eq(tunnel_cache_ext_put(tc, "/p/new", "etcd:/p/new",
	    "spec: [", 7, &e), TP_ESYNTAX);
	ck_assert_int_eq(tunnel_cache_commit(tc, &e), 0);
	ck_assert_uint_eq(tunnel_cache_ext_count(tc, &bad), 2);
	ck_assert_uint_eq(bad, 2);
	/* Fixed: good again. */
	ck_assert_int_eq(ext_put(tc, "/p/a", "a", "h:2", &e), 0);
	ck_assert_int_eq(tunnel_cache_commit(tc, &e), 0);
	ck_assert_str_eq(find(tc, "a")->dial_addrs[0], "h:2");
	tunnel_cache_free(tc);
	cfg_errors_free(&e);
}
END_TEST

START_TEST(test_keyed_mark_sweep)
{
	struct tunnel_cache *tc;
	struct cfg_errors e;
	const struct tunnel *keep;

	cfg_errors_init(&e);
	tc = tunnel_cache_new();
	ck_assert_int_eq(ext_put(tc, "/p/keep", "keep", "h:1", &e), 0);
	ck_assert_int_eq(ext_put(tc, "/p/gone", "gone", "h:1", &e), 0);
	ck_assert_int_eq(tunnel_cache_commit(tc, &e), 0);
	keep = find(tc, "keep");
	tunnel_cache_ext_mark(tc);
	ck_assert_int_eq(ext_put(tc, "/p/keep", "keep", "h:1", &e), 0);
	ck_assert_int_eq(ext_put(tc, "/p/new", "new", "h:1", &e), 0);
	ck_assert_uint_eq(tunnel_cache_ext_sweep(tc), 1);
	ck_assert_int_eq(tunnel_cache_commit(tc, &e), 0);
	ck_assert_ptr_eq(find(tc, "keep"), keep);	/* untouched */
	ck_assert_ptr_null(find(tc, "gone"));
	ck_assert_ptr_nonnull(find(tc, "new"));
	tunnel_cache_free(tc);
	cfg_errors_free(&e);
}
END_TEST

/*
 * A cluster in a file and in a key: the later definition is the error,
 * whichever source it comes from, and a running one is never displaced.
 */
START_TEST(test_keyed_duplicates_across_sources)
{
	struct tunnel_cache *tc;
	struct cfg_errors e;
	char want[512];
	size_t bad;

	setup_tmp();
	cfg_errors_init(&e);
	tc = tunnel_cache_new();
	put_tunnel("f.yaml", "x", "file:1");
	ck_assert_int_eq(reload(tc, &e), 0);
	ck_assert_int_eq(ext_put(tc, "/p/x", "x", "key:1", &e), 0);
	ck_assert_int_eq(tunnel_cache_commit(tc, &e), 0);
	ck_assert_uint_eq(e.n, 1);
	snprintf(want, sizeof(want), "etcd:/p/x:5:17: spec.cluster_name: "
	    "duplicate cluster \"x\" (first defined at %s/f.yaml:5:17)", tmpdir);
	ck_assert_str_eq(e.msg[0], want);
	ck_assert_str_eq(find(tc, "x")->dial_addrs[0], "file:1");
	tunnel_cache_ext_count(tc, &bad);
	ck_assert_uint_eq(bad, 1);
	/* A file reload does not report the key's duplicate as its own. */
	ck_assert_int_eq(reload(tc, &e), 0);
	ck_assert_str_eq(find(tc, "x")->dial_addrs[0], "file:1");
	/* The file goes: the key's definition takes over. */
	del("f.yaml");
	ck_assert_int_eq(reload(tc, &e), 0);
	ck_assert_str_eq(find(tc, "x")->dial_addrs[0], "key:1");
	/* Now a file that redefines the running key's cluster loses. */
	put_tunnel("a.yaml", "x", "file:2");
	ck_assert_int_eq(reload(tc, &e), TP_ESYNTAX);
	snprintf(want, sizeof(want), "%s/a.yaml:5:17: spec.cluster_name: "
	    "duplicate cluster \"x\" (first defined at etcd:/p/x:5:17)", tmpdir);
	ck_assert_str_eq(e.msg[0], want);
	ck_assert_str_eq(find(tc, "x")->dial_addrs[0], "key:1");
	/* No tunnel files at all ("" dir): only the keys remain. */
	ck_assert_int_eq(tunnel_cache_reload(tc, "", &e), 0);
	ck_assert_str_eq(find(tc, "x")->dial_addrs[0], "key:1");
	tunnel_cache_free(tc);
	cfg_errors_free(&e);
	teardown_tmp();
}
END_TEST

/* 10,000 keys arriving in order, then random single puts: linear. */
START_TEST(test_keyed_scale)
{
	struct tunnel_cache *tc;
	struct cfg_errors e;
	char key[64], cl[64];
	double t0, t1;
	size_t n;

	cfg_errors_init(&e);
	tc = tunnel_cache_new();
	t0 = tu_now_s();
	for (int i = 0; i < 10000; i++) {
		snprintf(key, sizeof(key), "/p/t%05d", i);
		snprintf(cl, sizeof(cl), "c%05d", i);
		ck_assert_int_eq(ext_put(tc, key, cl, "h:1", &e), 0);
	}
	ck_assert_int_eq(tunnel_cache_commit(tc, &e), 0);
	t1 = tu_now_s();
	tunnel_cache_tunnels(tc, &n);
	ck_assert_uint_eq(n, 10000);
	fprintf(stderr, "keyed source: 10,000 keys put and committed in "
	    "%.1f ms\n", (t1 - t0) * 1e3);
	tunnel_cache_free(tc);
	cfg_errors_free(&e);
}
END_TEST

static Suite *
tunnels_suite(void)
{
	Suite *s = suite_create("tunnels");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_parse);
	tcase_add_test(tc, test_parse_defaults);
	tcase_add_test(tc, test_parse_principals);
	tcase_add_test(tc, test_parse_limits);
	tcase_add_test(tc, test_parse_empty);
	tcase_add_test(tc, test_spec_hash);
	tcase_add_test(tc, test_packaging_example);
	suite_add_tcase(s, tc);
	tc = tcase_create("cache");
	tcase_add_test(tc, test_cache_add_remove_change);
	tcase_add_test(tc, test_cache_broken_keeps_last_good);
	tcase_add_test(tc, test_cache_being_written);
	tcase_add_test(tc, test_cache_duplicates);
	tcase_add_test(tc, test_cache_duplicate_keeps_running);
	tcase_add_test(tc, test_cache_ignored_files);
	tcase_add_test(tc, test_cache_same_size_rewrite);
	suite_add_tcase(s, tc);
	tc = tcase_create("keyed");
	tcase_add_test(tc, test_keyed_put_delete_change);
	tcase_add_test(tc, test_keyed_bad_keeps_last_good);
	tcase_add_test(tc, test_keyed_mark_sweep);
	tcase_add_test(tc, test_keyed_duplicates_across_sources);
	tcase_add_test(tc, test_keyed_scale);
	suite_add_tcase(s, tc);
	tc = tcase_create("watch");
	tcase_add_test(tc, test_watch);
	suite_add_tcase(s, tc);
	tc = tcase_create("mutation");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_mutations);
	suite_add_tcase(s, tc);
	tc = tcase_create("scale");
	tcase_set_timeout(tc, 600);
	tcase_add_test(tc, test_scale);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	signal(SIGIO, SIG_IGN);		/* the file-lease break signal */
	return tu_run(tunnels_suite());
}
