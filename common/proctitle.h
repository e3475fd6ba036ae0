/*
 * Process titles visible in ps(1) and top(1).  Linux has no
 * setproctitle(3): we move the environment out of the way at start and
 * then overwrite the argv area, as OpenSSH's compat code does.
 */
#ifndef TP_PROCTITLE_H
#define TP_PROCTITLE_H

/* Must be called from main before anything uses environ; returns 0 or TP_ENOMEM. */
int proctitle_init(int argc, char **argv);
/* Sets the title (printf-style); a no-op before proctitle_init. */
void proctitle_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
