/*
 * supervisor/workerlog.c: a worker's relay-format lines re-emitted with the
 * supervisor's fields, the shapes it refuses, the per-worker bucket, and
 * mutations of a valid stream (never a crash, never a line of the
 * worker's own making).  Output is captured through log_init's fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "common/log.h"
#include "supervisor/workerlog.h"
#include "testutil.h"

static const struct log_agent who = { .cluster = "c1", .addr = "lb:3024",
    .pid = 4242, .state = "connected", .proxy = "p1" };
static int cap_fd[2];
static char out[1 << 20];

static void
setup(void)
{
	ck_assert_int_eq(pipe2(cap_fd, O_NONBLOCK), 0);
	ck_assert_int_eq(fcntl(cap_fd[0], F_SETPIPE_SZ, 1 << 20) > 0, 1);
	log_init("tunnelpool", LOG_LVL_INFO, LOG_FMT_LOGFMT, cap_fd[1]);
}

static void
teardown(void)
{
	close(cap_fd[0]);
	close(cap_fd[1]);
	log_init("test_workerlog", LOG_LVL_ERROR, LOG_FMT_LOGFMT, 2);
}

/* Everything logged since the last call, NUL-terminated. */
static const char *
captured(void)
{
	ssize_t n = read(cap_fd[0], out, sizeof(out) - 1);

	out[n > 0 ? n : 0] = '\0';
	return out;
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static void
feed_str(struct workerlog *wl, const char *s)
{
	workerlog_feed(wl, s, strlen(s));
}

START_TEST(test_relay_line)
{
	struct workerlog wl;
	const char *o;

	ck_assert_int_eq(workerlog_init(&wl, &who, NULL), 0);
	feed_str(&wl, "Ireport_state state connected: forwards bound\n");
	o = captured();
	ck_assert_str_eq(strstr(o, "level="), "level=info prog=tunnelpool-agent "
	    "func=report_state msg=\"state connected: forwards bound\" "
	    "cluster=c1 addr=lb:3024 pid=4242 state=connected proxy=p1\n");
	/* Split across reads, two lines in one. */
	feed_str(&wl, "Wa b");
	ck_assert_str_eq(captured(), "");
	feed_str(&wl, "c\nEx y\n");
	o = captured();
	ck_assert_ptr_nonnull(strstr(o, "level=warn prog=tunnelpool-agent func=a "
	    "msg=bc "));
	ck_assert_ptr_nonnull(strstr(o, "level=error prog=tunnelpool-agent "
	    "func=x msg=y "));
	/* Below the level: dropped, costs no token. */
	feed_str(&wl, "Dx hidden\n");
	ck_assert_str_eq(captured(), "");
	workerlog_close(&wl);
}
END_TEST

/* A line that is not the relay format is the worker's quoted text. */
START_TEST(test_unformatted)
{
	static const char *bad[] = {
		"ts=2026-01-01T00:00:00.000Z level=error prog=tunnelpool "
		    "msg=\"forged\" cluster=other pid=1",
		"X", "Qfunc msg", "I", "Ino_space", "I msg", "I-f msg",
		"Ifunc", "I\x01" "f msg",
	};
	struct workerlog wl;
	char line[256];

	ck_assert_int_eq(workerlog_init(&wl, &who, NULL), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *o;

		snprintf(line, sizeof(line), "%s\n", bad[i]);
		feed_str(&wl, line);
		o = captured();
		ck_assert_msg(strncmp(strstr(o, "level="), "level=warn "
		    "prog=tunnelpool-agent func=? msg=\"unformatted: ", 56) == 0,
		    "%zu: %s", i, o);
		ck_assert_ptr_nonnull(strstr(o, " cluster=c1 addr=lb:3024 "
		    "pid=4242 "));
		ck_assert_uint_eq(count(o, "\n"), 1);
	}
}
END_TEST

/* Control and non-ASCII bytes never reach the log; long lines are cut. */
START_TEST(test_sanitised_and_cut)
{
	struct workerlog wl;
	char big[3 * WORKERLOG_LINE_MAX];
	const char *o;

	ck_assert_int_eq(workerlog_init(&wl, &who, NULL), 0);
	feed_str(&wl, "Ifn a\tb\x1b[31m\xc3\xa9z\n");
	o = captured();
	ck_assert_ptr_nonnull(strstr(o, "msg=a?b?[31m??z "));
	memset(big, 'x', sizeof(big));
	memcpy(big, "Ifn ", 4);
	big[sizeof(big) - 1] = '\n';
	workerlog_feed(&wl, big, sizeof(big));
	feed_str(&wl, "Ifn after\n");
	o = captured();
	ck_assert_uint_eq(count(o, "\n"), 2);
	ck_assert_ptr_nonnull(strstr(o, "msg=after"));
	ck_assert_uint_lt(strlen(o), 2 * WORKERLOG_LINE_MAX);
}
END_TEST

/* The bucket: a burst, then the rate; one line tells what was dropped. */
START_TEST(test_rate_limit)
{
	struct workerlog wl;
	uint64_t total = 0;
	const char *o;

	double t0 = tu_now_s(), took;
	size_t relayed;
	uint64_t before;

	ck_assert_int_eq(workerlog_init(&wl, &who, &total), 0);
	for (int i = 0; i < 1000; i++)
		feed_str(&wl, "Ifn flood\n");
	took = tu_now_s() - t0;
	o = captured();
	relayed = count(o, "msg=flood");
	ck_assert_uint_ge(relayed, (size_t)WORKERLOG_BURST);
	ck_assert_uint_le(relayed, (size_t)(WORKERLOG_BURST +
	    WORKERLOG_RATE * took + 1));
	ck_assert_uint_eq(total, 1000 - relayed);
	/* The supervisor's own lines quoting the worker share the bucket. */
	do {
		before = total;
		workerlog_emit(&wl, LOG_LVL_WARN, "recv_state", "state %s", "x");
	} while (total == before);
	(void)captured();
	usleep(200 * 1000);		/* 20/s: four tokens back */
	workerlog_emit(&wl, LOG_LVL_WARN, "recv_state", "state %s", "x");
	o = captured();
	ck_assert_ptr_nonnull(strstr(o, "lines from this worker suppressed"));
	ck_assert_ptr_nonnull(strstr(o, "func=recv_state msg=\"state x\""));
	ck_assert_ptr_nonnull(strstr(o, "prog=tunnelpool func=workerlog"));
}
END_TEST

static void
check_mutant(const char *buf, size_t n, void *arg)
{
	struct workerlog *wl = arg;
	const char *o;

	workerlog_feed(wl, buf, n);
	workerlog_feed(wl, "\n", 1);
	o = captured();
	/* Every line out is ours: it starts with our timestamp field. */
	for (const char *p = o; *p != '\0'; p = strchr(p, '\n') + 1) {
		ck_assert_msg(strncmp(p, "ts=", 3) == 0, "line %.80s", p);
		ck_assert_ptr_nonnull(strchr(p, '\n'));
	}
	/* Refill the bucket so that later mutants are seen too. */
	ck_assert_int_eq(ratelimit_init(&wl->rl, WORKERLOG_RATE,
	    WORKERLOG_BURST, 0), 0);
}

START_TEST(test_mutations)
{
	static const char valid[] = "Ireport_state state connected: ok\n"
	    "Wchannels_pump channel 3: dial failed\n";
	static const unsigned char subst[] = { 0, '\n', ' ', 'I', 0x7f, 0xff };
	struct workerlog wl;

	ck_assert_int_eq(workerlog_init(&wl, &who, NULL), 0);
	tu_mutate(valid, sizeof(valid) - 1, subst, sizeof(subst), 0,
	    check_mutant, &wl);
}
END_TEST

static Suite *
workerlog_suite(void)
{
	Suite *s = suite_create("workerlog");
	TCase *tc = tcase_create("relay");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_relay_line);
	tcase_add_test(tc, test_unformatted);
	tcase_add_test(tc, test_sanitised_and_cut);
	tcase_add_test(tc, test_rate_limit);
	tcase_add_test(tc, test_mutations);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(workerlog_suite());
}
