#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "proctitle.h"

extern char **environ;

static char	*title_start;
static size_t	 title_len;
/* Our copy of the environment; kept so it stays reachable (valgrind). */
static char	**env_copy;

int
proctitle_init(int argc, char **argv)
{
	char *end, **newenv;
	size_t n = 0;

	if (argc < 1 || argv[0] == NULL)
		return TP_EINVAL;
	/* The argv strings and, after them, the environ strings are contiguous. */
	end = argv[0] + strlen(argv[0]) + 1;
	for (int i = 1; i < argc; i++)
		if (argv[i] == end)
			end = argv[i] + strlen(argv[i]) + 1;
	for (; environ[n] != NULL; n++)
		;
	newenv = calloc(n + 1, sizeof(*newenv));
	if (newenv == NULL)
		return TP_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (environ[i] == end)
			end = environ[i] + strlen(environ[i]) + 1;
		if ((newenv[i] = strdup(environ[i])) == NULL)
			return TP_ENOMEM;	/* leaks the copies; fatal anyway */
	}
	environ = env_copy = newenv;
	/* argv[] itself keeps pointing at the original strings, which we own now. */
	for (int i = 1; i < argc; i++)
		if ((argv[i] = strdup(argv[i])) == NULL)
			return TP_ENOMEM;
	title_start = argv[0];
	title_len = (size_t)(end - argv[0]);
	return 0;
}

void
proctitle_set(const char *fmt, ...)
{
	va_list ap;
	int n;

	if (title_start == NULL || title_len < 2)
		return;
	va_start(ap, fmt);
	n = vsnprintf(title_start, title_len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* Clear the tail so ps does not show remnants of the old title. */
	if ((size_t)n + 1 < title_len)
		memset(title_start + n, 0, title_len - (size_t)n - 1);
	title_start[title_len - 1] = '\0';
}
