#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "tptime.h"

uint64_t
tp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
tp_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

struct timeval
tp_timeval_ms(uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000),
	    (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

uint64_t
tp_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
tp_parse_duration(const char *s, uint64_t *ms)
{
	unsigned long long v;
	uint64_t mult;
	char *end;

	if (s == NULL || !isdigit((unsigned char)s[0]))
		return TP_ESYNTAX;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return TP_ERANGE;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mult = 3600 * 1000;
	else
		return TP_ESYNTAX;
	/* Cap at 30 days: anything longer is a typo, not a timeout. */
	if (v > (30ULL * 86400 * 1000) / mult)
		return TP_ERANGE;
	*ms = v * mult;
	return 0;
}
