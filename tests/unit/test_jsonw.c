/*
 * supervisor/jsonw.c: the string writer of the status dump.  Valid UTF-8
 * comes back unchanged through a real JSON parser (jansson), escapes are
 * the JSON ones, every invalid byte becomes exactly one U+FFFD, and no
 * input -- random bytes included -- yields a document a parser refuses.
 */
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/buffer.h>
#include <jansson.h>

#include "supervisor/jsonw.h"
#include "testutil.h"

/* jsonw_str(s) as a NUL-terminated malloc'd string. */
static char *
written(const char *s)
{
	struct evbuffer *b = evbuffer_new();
	size_t n;
	char *out;

	ck_assert_ptr_nonnull(b);
	jsonw_str(b, s);
	n = evbuffer_get_length(b);
	ck_assert_ptr_nonnull(out = malloc(n + 1));
	evbuffer_remove(b, out, n);
	out[n] = '\0';
	evbuffer_free(b);
	return out;
}

/* What a JSON parser reads back from jsonw_str(s), malloc'd. */
static char *
parsed(const char *s)
{
	char *text = written(s), *doc, *v;
	json_error_t e;
	json_t *j;

	ck_assert_int_ge(asprintf(&doc, "[%s]", text), 0);
	j = json_loads(doc, 0, &e);
	ck_assert_msg(j != NULL, "%s does not parse: %s", doc, e.text);
	ck_assert_ptr_nonnull(v = strdup(json_string_value(
	    json_array_get(j, 0))));
	json_decref(j);
	free(doc);
	free(text);
	return v;
}

START_TEST(test_plain_and_escapes)
{
	static const struct { const char *in, *out; } t[] = {
		{ "", "\"\"" },
		{ "cluster-a", "\"cluster-a\"" },
		{ "a\"b\\c", "\"a\\\"b\\\\c\"" },
		{ "tab\there\nnl", "\"tab\\u0009here\\u000anl\"" },
		{ "\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\"" },
		{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91",
		  "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91\"" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *w = written(t[i].in), *p = parsed(t[i].in);

		ck_assert_str_eq(w, t[i].out);
		ck_assert_str_eq(p, t[i].in);
		free(w);
		free(p);
	}
}
END_TEST

START_TEST(test_invalid_utf8)
{
	static const struct { const char *in, *out; } t[] = {
		{ "\xff", "\"\\ufffd\"" },			/* never valid */
		{ "a\x80z", "\"a\\ufffdz\"" },			/* lone continuation */
		{ "\xc3", "\"\\ufffd\"" },			/* cut at the end */
		{ "\xc0\xaf", "\"\\ufffd\\ufffd\"" },		/* overlong '/' */
		{ "\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"" },	/* overlong */
		{ "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },	/* surrogate */
		{ "\xf4\x90\x80\x80",				/* > U+10FFFF */
		  "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" },
		{ "\xe2\x82x", "\"\\ufffd\\ufffdx\"" },		/* short */
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char *w = written(t[i].in), *p = parsed(t[i].in);

		ck_assert_str_eq(w, t[i].out);
		free(w);
		free(p);
	}
}
END_TEST

/* Random bytes (the worker controls proxy names and errors). */
START_TEST(test_random_bytes_parse)
{
	char s[64];

	srandom(1);
	for (int round = 0; round < 20000; round++) {
		size_t n = (size_t)random() % (sizeof(s) - 1);

		for (size_t i = 0; i < n; i++)
			s[i] = (char)(1 + random() % 255);
		s[n] = '\0';
		free(parsed(s));
	}
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("jsonw");
	TCase *tc = tcase_create("jsonw");

	tcase_add_test(tc, test_plain_and_escapes);
	tcase_add_test(tc, test_invalid_utf8);
	tcase_add_test(tc, test_random_bytes_parse);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
