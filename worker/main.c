/* tunnelpool-agent: see worker/worker.c. */
#include "worker/worker.h"

#if defined(__SANITIZE_ADDRESS__)
#define TP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TP_ASAN 1
#endif
#endif

#ifdef TP_ASAN
int __lsan_is_turned_off(void);

/*
 * Sanitizer builds only: LeakSanitizer's exit-time check needs to inspect
 * the process, which a demoted, non-dumpable, chrooted worker forbids; it
 * would turn every clean exit into status 1.  The supervisor keeps it.
 */
int
__lsan_is_turned_off(void)
{
	return 1;
}
#endif

int
main(int argc, char **argv)
{
	worker_main(argc, argv);
}
