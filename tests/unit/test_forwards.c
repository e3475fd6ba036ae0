/*
 * worker/forwards.c: which forward a forwarded-tcpip open belongs to.  A
 * bound forward matches its port; a fixed-port forward whose request is in
 * flight matches too (sshd may send the first open in the same read as its
 * REQUEST_SUCCESS, before the worker has marked the forward bound: the
 * race that reset a client in CI); nothing else does.
 */
#include <string.h>

#include <check.h>

#include "worker/forwards.h"
#include "testutil.h"

static void
setup(struct forwards *fw)
{
	struct msg_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.n_forwards = 3;
	for (uint32_t i = 0; i < 3; i++) {
		cfg.forwards[i].id = i;
		cfg.forwards[i].listen_port = 22000 + i;
	}
	cfg.forwards[2].listen_port = 0;		/* dynamic port */
	forwards_init(fw, &cfg);
}

START_TEST(test_match_states)
{
	struct forwards fw;
	uint32_t id = 99;

	setup(&fw);
	/* Wanted, nothing requested yet: no listener can exist. */
	ck_assert(!forwards_match(&fw, 22000, &id));
	/* Requested on a fixed port, reply not polled yet: matches. */
	fw.f[0].state = FWD_REQUESTING;
	ck_assert(forwards_match(&fw, 22000, &id));
	ck_assert_uint_eq(id, 0);
	ck_assert(!forwards_match(&fw, 22001, &id));
	/* Bound: matches on the bound port. */
	fw.f[1].state = FWD_BOUND;
	fw.f[1].port = 22001;
	ck_assert(forwards_match(&fw, 22001, &id));
	ck_assert_uint_eq(id, 1);
	/* Port 0 in flight: its port is unknown until the reply. */
	fw.f[2].state = FWD_REQUESTING;
	ck_assert(!forwards_match(&fw, 0, &id));
	fw.f[2].state = FWD_BOUND;
	fw.f[2].port = 40000;
	ck_assert(forwards_match(&fw, 40000, &id));
	ck_assert_uint_eq(id, 2);
	/* Refused (back to wanted), cancelling, done: no match. */
	fw.f[0].state = FWD_WANTED;
	ck_assert(!forwards_match(&fw, 22000, &id));
	fw.f[1].state = FWD_CANCELLING;
	ck_assert(!forwards_match(&fw, 22001, &id));
	fw.f[1].state = FWD_DONE;
	ck_assert(!forwards_match(&fw, 22001, &id));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("forwards");
	TCase *tc = tcase_create("forwards");

	tcase_add_test(tc, test_match_states);
	suite_add_tcase(s, tc);
	return tu_run(s);
}
