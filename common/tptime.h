/* Monotonic and wall-clock time in milliseconds. */
#ifndef TP_TPTIME_H
#define TP_TPTIME_H

#include <stdint.h>
#include <sys/time.h>

/* Returns CLOCK_MONOTONIC in milliseconds; never fails on Linux. */
uint64_t tp_now_ms(void);
/* Returns CLOCK_MONOTONIC in microseconds. */
uint64_t tp_now_us(void);
/* A duration in milliseconds as a struct timeval (for libevent timers). */
struct timeval tp_timeval_ms(uint64_t ms);
/* Returns CLOCK_REALTIME in milliseconds since the epoch. */
uint64_t tp_wall_ms(void);

/*
 * Parses a duration such as "500ms", "5s", "3m", "1h" (a bare number is
 * seconds) into milliseconds.  Returns 0, TP_ESYNTAX or TP_ERANGE.
 */
int tp_parse_duration(const char *s, uint64_t *ms);

#endif
