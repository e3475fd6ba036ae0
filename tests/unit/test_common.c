/* common/: backoff bounds and spread, rate limiter, addresses, durations, log lines. */
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "common/addr.h"
#include "common/backoff.h"
#include "common/error.h"
#include "common/fnv.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/tptime.h"
#include "testutil.h"

START_TEST(backoff_bounds)
{
	struct backoff b;
	uint64_t d;

	ck_assert_int_eq(backoff_init(&b, 0, 10, 0), TP_EINVAL);
	ck_assert_int_eq(backoff_init(&b, 20, 10, 0), TP_EINVAL);
	ck_assert_int_eq(backoff_init(&b, 1000, 30000, 30000), 0);
	/* rnd = 0 gives the floor, rnd = max gives the cap, at every step. */
	for (int i = 0; i < 10; i++) {
		struct backoff lo = b, hi = b;
		uint64_t cap = backoff_cap(&b);

		ck_assert_uint_eq(backoff_next(&lo, 0, 0), 1000);
		ck_assert_uint_eq(backoff_next(&hi, 0, UINT32_MAX), cap);
		d = backoff_next(&b, 0, arc4random());
		ck_assert_uint_ge(d, 1000);
		ck_assert_uint_le(d, cap);
	}
	ck_assert_uint_eq(backoff_cap(&b), 30000);
}
END_TEST

/* Full jitter: delays spread over the whole window, not clumped at an end. */
START_TEST(backoff_spread)
{
	unsigned buckets[10] = { 0 };
	struct backoff b;

	for (int i = 0; i < 10000; i++) {
		backoff_init(&b, 1000, 11000, 30000);
		for (int k = 0; k < 5; k++)	/* cap reaches 11000 */
			backoff_next(&b, 0, 0);
		uint64_t d = backoff_next(&b, 0, arc4random());
		ck_assert_uint_ge(d, 1000);
		ck_assert_uint_le(d, 11000);
		buckets[(d - 1000) * 10 / 10001]++;
	}
	for (int i = 0; i < 10; i++) {
		ck_assert_uint_gt(buckets[i], 800);
		ck_assert_uint_lt(buckets[i], 1200);
	}
}
END_TEST

START_TEST(backoff_reset_after)
{
	struct backoff b;

	backoff_init(&b, 1000, 64000, 30000);
	for (int i = 0; i < 6; i++)
		backoff_next(&b, 0, 0);
	ck_assert_uint_eq(backoff_cap(&b), 64000);
	/* Up for 10 s: not long enough, the sequence goes on. */
	backoff_up(&b, 100000);
	backoff_next(&b, 110000, 0);
	ck_assert_uint_eq(backoff_cap(&b), 64000);
	/* Up for 30 s: reset, the next delay is capped at min again. */
	backoff_up(&b, 200000);
	ck_assert_uint_eq(backoff_next(&b, 230000, UINT32_MAX), 1000);
}
END_TEST

START_TEST(ratelimit_rate)
{
	struct ratelimit r;
	int allowed = 0;

	ck_assert_int_eq(ratelimit_init(&r, 0, 1, 0), TP_EINVAL);
	ck_assert_int_eq(ratelimit_init(&r, 10, 5, 0), 0);
	/* Burst of 5 at t=0, then 10/s: over 2 s, 5 + 20 events. */
	for (uint64_t t = 0; t <= 2000; t += 10)
		while (ratelimit_take(&r, t))
			allowed++;
	ck_assert_int_eq(allowed, 25);
	ck_assert_uint_gt(ratelimit_wait_ms(&r, 2000), 0);
	ck_assert_uint_le(ratelimit_wait_ms(&r, 2000), 101);
}
END_TEST

START_TEST(addr_parse)
{
	struct tp_addr a;
	char buf[300];

	ck_assert_int_eq(tp_addr_parse("lb.example:2222", 0, &a), 0);
	ck_assert_str_eq(a.host, "lb.example");
	ck_assert_uint_eq(a.port, 2222);
	ck_assert_int_eq(tp_addr_parse("[::1]:22", 0, &a), 0);
	ck_assert_str_eq(a.host, "::1");
	ck_assert_int_eq(tp_addr_format(&a, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "[::1]:22");
	ck_assert_int_eq(tp_addr_parse("/run/x.sock", 1, &a), 0);
	ck_assert(a.is_unix);
	ck_assert_int_eq(tp_addr_parse("/run/x.sock", 0, &a), TP_ESYNTAX);
	ck_assert_int_eq(tp_addr_parse("::1:22", 0, &a), TP_ESYNTAX);
	ck_assert_int_eq(tp_addr_parse("host:0", 0, &a), TP_ERANGE);
	ck_assert_int_eq(tp_addr_parse("host:65536", 0, &a), TP_ERANGE);
	ck_assert_int_eq(tp_addr_parse("host:22x", 0, &a), TP_ESYNTAX);
	ck_assert_int_eq(tp_addr_parse(":22", 0, &a), TP_ESYNTAX);
	ck_assert_int_eq(tp_addr_parse("ho st:22", 0, &a), TP_ESYNTAX);
	ck_assert_int_eq(tp_addr_parse("host", 0, &a), TP_ESYNTAX);
	ck_assert_int_eq(tp_addr_parse("", 0, &a), TP_ESYNTAX);
}
END_TEST

START_TEST(durations)
{
	uint64_t ms;

	ck_assert_int_eq(tp_parse_duration("500ms", &ms), 0);
	ck_assert_uint_eq(ms, 500);
	ck_assert_int_eq(tp_parse_duration("5s", &ms), 0);
	ck_assert_uint_eq(ms, 5000);
	ck_assert_int_eq(tp_parse_duration("3m", &ms), 0);
	ck_assert_uint_eq(ms, 180000);
	ck_assert_int_eq(tp_parse_duration("7", &ms), 0);
	ck_assert_uint_eq(ms, 7000);
	ck_assert_int_eq(tp_parse_duration("5x", &ms), TP_ESYNTAX);
	ck_assert_int_eq(tp_parse_duration("-5s", &ms), TP_ESYNTAX);
	ck_assert_int_eq(tp_parse_duration("", &ms), TP_ESYNTAX);
	ck_assert_int_eq(tp_parse_duration("99999999999h", &ms), TP_ERANGE);
}
END_TEST

START_TEST(log_lines)
{
	struct log_agent a = { "c-a", "lb:22", 42, "connected", NULL };
	const char *kv[] = { "reason", "a \"quoted\" x=y", NULL };
	char buf[1024];
	size_t n;

	n = log_format_line(buf, sizeof(buf), LOG_FMT_LOGFMT, LOG_LVL_WARN,
	    "fn", &a, kv, "hello world");
	ck_assert_uint_eq(n, strlen(buf));
	ck_assert_ptr_nonnull(strstr(buf, " level=warn "));
	ck_assert_ptr_nonnull(strstr(buf, " msg=\"hello world\""));
	ck_assert_ptr_nonnull(strstr(buf, " cluster=c-a addr=lb:22 pid=42 "
	    "state=connected"));
	ck_assert_ptr_nonnull(strstr(buf, "reason=\"a \\\"quoted\\\" x=y\""));
	ck_assert(strncmp(buf, "ts=", 3) == 0);
	ck_assert_int_eq(buf[n - 1], '\n');
	n = log_format_line(buf, sizeof(buf), LOG_FMT_JSON, LOG_LVL_INFO,
	    "fn", &a, kv, "tab\there");
	ck_assert_ptr_nonnull(strstr(buf, "\"msg\":\"tab\\u0009here\""));
	ck_assert_ptr_nonnull(strstr(buf, "\"pid\":\"42\""));
	ck_assert(buf[0] == '{' && buf[n - 2] == '}');
	/* Truncation keeps the line terminated. */
	n = log_format_line(buf, 40, LOG_FMT_LOGFMT, LOG_LVL_INFO, "fn", &a,
	    kv, "x");
	ck_assert_uint_le(n, 39);
	ck_assert_int_eq(buf[n - 1], '\n');
}
END_TEST

START_TEST(errors)
{
	ck_assert_str_eq(tp_strerror(TP_EPROTO), "malformed message");
	ck_assert_str_eq(tp_strerror(-999), "unknown error");
}
END_TEST

/* The published FNV-1a 64-bit test vectors, and how the pieces compose. */
START_TEST(fnv1a)
{
	uint64_t len = 3, h;

	ck_assert_uint_eq(tp_fnv1a(TP_FNV1A_INIT, "", 0), 0xcbf29ce484222325ULL);
	ck_assert_uint_eq(tp_fnv1a(TP_FNV1A_INIT, "a", 1), 0xaf63dc4c8601ec8cULL);
	ck_assert_uint_eq(tp_fnv1a(TP_FNV1A_INIT, "foobar", 6),
	    0x85944171f73967e8ULL);
	/* Incremental: hashing in pieces is hashing the whole. */
	ck_assert_uint_eq(tp_fnv1a(tp_fnv1a(TP_FNV1A_INIT, "foo", 3), "bar", 3),
	    0x85944171f73967e8ULL);
	/* A string is its length (8 bytes, host order), then its bytes. */
	h = tp_fnv1a(TP_FNV1A_INIT, &len, sizeof(len));
	ck_assert_uint_eq(tp_fnv1a_str(TP_FNV1A_INIT, "foo"),
	    tp_fnv1a(h, "foo", 3));
	/* ... so that moving a byte between two strings changes the hash. */
	ck_assert_uint_ne(tp_fnv1a_str(tp_fnv1a_str(TP_FNV1A_INIT, "ab"), "c"),
	    tp_fnv1a_str(tp_fnv1a_str(TP_FNV1A_INIT, "a"), "bc"));
	ck_assert_uint_ne(tp_fnv1a_str(TP_FNV1A_INIT, ""), TP_FNV1A_INIT);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("common");
	TCase *tc = tcase_create("common");

	tcase_add_test(tc, backoff_bounds);
	tcase_add_test(tc, backoff_spread);
	tcase_add_test(tc, backoff_reset_after);
	tcase_add_test(tc, ratelimit_rate);
	tcase_add_test(tc, addr_parse);
	tcase_add_test(tc, durations);
	tcase_add_test(tc, log_lines);
	tcase_add_test(tc, errors);
	tcase_add_test(tc, fnv1a);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
