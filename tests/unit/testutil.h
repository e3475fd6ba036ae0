/*
 * Helpers shared by the Check suites: shell steps for fixtures (ssh-keygen),
 * files, the "FILE:LINE:COL: " error location check, the byte-mutation
 * driver of the parser suites, and the suite runner.
 */
#ifndef TP_TESTUTIL_H
#define TP_TESTUTIL_H

#include <stddef.h>
#include <check.h>

/* Runs a shell command (fixture set-up); exits 2 when it fails. */
void tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "dir/name" in one of eight rotating static buffers. */
const char *tu_path(const char *dir, const char *name);

/* The whole file, malloc'd and NUL-terminated; NULL if it cannot be read. */
char *tu_slurp(const char *path, size_t *lenp);

/* Whether line starts with "file:LINE:COL: " or "file: ". */
int tu_has_location(const char *line, const char *file);

/* CLOCK_MONOTONIC in seconds. */
double tu_now_s(void);

/* tu_mutate flags: on the second and later of a run of alphanumerics
 * (base64 blobs), only every third byte is mutated. */
#define TU_MUTATE_SPARSE_ALNUM	0x1

/*
 * Calls check(buf, n, arg) for every truncation of orig, then for every
 * byte mutated in place: its eight single-bit flips and each byte of
 * subst.  The mutants are not NUL-terminated.
 */
void tu_mutate(const char *orig, size_t len, const unsigned char *subst,
    size_t nsubst, int flags,
    void (*check)(const char *buf, size_t n, void *arg), void *arg);

/*
 * In a forked child, before it plays a worker: ctl, agent and net become
 * fds base, base + 1 and base + 2 (the worker's layout: 3, 4, 5) and stdin
 * reads /dev/null.  Returns a descriptor open on /dev/null (for tests that
 * want a stray fd); _exit(126) on any failure.
 */
int tu_child_worker_fds(int ctl, int agent, int net, int base);

/* Runs the suite (CK_ENV: $CK_VERBOSITY, default normal); EXIT_SUCCESS
 * when nothing failed. */
int tu_run(Suite *s);

#endif
