/* systemd's sd_notify protocol, without libsystemd (one datagram). */
#ifndef TP_SUPERVISOR_NOTIFY_H
#define TP_SUPERVISOR_NOTIFY_H

#include <stdint.h>

/* Sends state ("READY=1", "STATUS=...") to $NOTIFY_SOCKET; a no-op without it. */
void notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Watchdog interval in ms from $WATCHDOG_USEC (and $WATCHDOG_PID), or 0. */
uint64_t notify_watchdog_ms(void);

#endif
