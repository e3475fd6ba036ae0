/*
 * libFuzzer harness for the supervisor's reader of a worker's stderr
 * (supervisor/workerlog.c): every byte a compromised worker can write to
 * it, split into lines and re-emitted.  Output goes to /dev/null; the
 * bucket is refilled per input so that every line is decoded.
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include "common/log.h"
#include "supervisor/workerlog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct log_agent who = { .cluster = "c1", .addr = "lb:3024",
    .pid = 4242, .state = "connected", .proxy = "p1" };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int devnull = -1;
	struct workerlog wl;

	if (devnull < 0) {
		devnull = open("/dev/null", O_WRONLY);
		log_init("fuzz", LOG_LVL_DEBUG, LOG_FMT_JSON, devnull);
	}
	if (workerlog_init(&wl, &who, NULL) != 0)
		return 0;
	workerlog_feed(&wl, (const char *)data, size);
	workerlog_close(&wl);
	return 0;
}
