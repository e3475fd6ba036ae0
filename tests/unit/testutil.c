/* Helpers shared by the Check suites; see testutil.h. */
#include <ctype.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "testutil.h"

void
tu_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (system(cmd) != 0) {
		fprintf(stderr, "command failed: %s\n", cmd);
		exit(2);
	}
}

const char *
tu_path(const char *dir, const char *name)
{
	static char buf[8][256];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

char *
tu_slurp(const char *path, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *nb;
	FILE *f;
	size_t r;

	if (buf == NULL || (f = fopen(path, "rb")) == NULL) {
		free(buf);
		return NULL;
	}
	while ((r = fread(buf + len, 1, cap - 1 - len, f)) > 0) {
		len += r;
		if (len + 1 == cap) {
			if ((nb = realloc(buf, cap * 2)) == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
	}
	fclose(f);
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return buf;
}

int
tu_has_location(const char *line, const char *file)
{
	size_t n = strlen(file);
	const char *p = line + n;
	int fields;

	if (strncmp(line, file, n) != 0 || *p != ':')
		return 0;
	if (p[1] == ' ')
		return 1;
	for (fields = 0; fields < 2; fields++) {
		if (*p++ != ':' || !isdigit((unsigned char)*p) || *p == '0')
			return 0;
		while (isdigit((unsigned char)*p))
			p++;
	}
	return p[0] == ':' && p[1] == ' ';
}

double
tu_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
tu_mutate(const char *orig, size_t len, const unsigned char *subst,
    size_t nsubst, int flags,
    void (*check)(const char *buf, size_t n, void *arg), void *arg)
{
	char *buf = malloc(len + 1);
	size_t i, k, step;

	if (buf == NULL)
		abort();
	for (i = 0; i <= len; i++)
		check(orig, i, arg);		/* truncations */
	for (i = 0; i < len; i += step) {
		step = (flags & TU_MUTATE_SPARSE_ALNUM) && i > 0 &&
		    isalnum((unsigned char)orig[i]) &&
		    isalnum((unsigned char)orig[i - 1]) ? 3 : 1;
		memcpy(buf, orig, len);
		for (k = 0; k < 8; k++) {
			buf[i] = (char)(orig[i] ^ (1 << k));
			check(buf, len, arg);
		}
		for (k = 0; k < nsubst; k++) {
			buf[i] = (char)subst[k];
			check(buf, len, arg);
		}
	}
	free(buf);
}

static void
place_fd(int fd, int want)
{
	if (dup2(fd, want) == -1)
		_exit(126);
}

int
tu_child_worker_fds(int ctl, int agent, int net, int base)
{
	int hi[3], devnull;

	/* Out of the way first, so dup2 into base.. clobbers nothing. */
	hi[0] = fcntl(ctl, F_DUPFD_CLOEXEC, 20);
	hi[1] = fcntl(agent, F_DUPFD_CLOEXEC, 20);
	hi[2] = fcntl(net, F_DUPFD_CLOEXEC, 20);
	devnull = open("/dev/null", O_RDONLY);
	if (hi[0] < 0 || hi[1] < 0 || hi[2] < 0 || devnull < 0)
		_exit(126);
	place_fd(devnull, STDIN_FILENO);
	for (int i = 0; i < 3; i++)
		place_fd(hi[i], base + i);
	return devnull;
}

int
tu_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_ENV);	/* CK_VERBOSITY, default normal */
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
