#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "error.h"

int
tp_host_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > TP_HOST_MAX)
		return 0;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (!(isalnum(c) || c == '.' || c == '-' || c == '_' ||
		    c == ':' || c == '%'))
			return 0;
	}
	return 1;
}

static int
parse_port(const char *s, uint16_t *port)
{
	unsigned long v;
	char *end;

	if (*s == '\0' || !isdigit((unsigned char)*s))
		return TP_ESYNTAX;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end != '\0')
		return TP_ESYNTAX;
	if (errno != 0 || v == 0 || v > 65535)
		return TP_ERANGE;
	*port = (uint16_t)v;
	return 0;
}

int
tp_addr_parse(const char *s, int allow_unix, struct tp_addr *a)
{
	const char *colon, *host;
	size_t hlen;

	memset(a, 0, sizeof(*a));
	if (s == NULL || *s == '\0')
		return TP_ESYNTAX;
	if (s[0] == '/') {
		if (!allow_unix)
			return TP_ESYNTAX;
		if (strlen(s) >= sizeof(a->path))
			return TP_ETOOBIG;
		a->is_unix = 1;
		strcpy(a->path, s);
		return 0;
	}
	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return TP_ESYNTAX;
		host = s + 1;
		hlen = (size_t)(close - host);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return TP_ESYNTAX;
		host = s;
		hlen = (size_t)(colon - s);
		/* An unbracketed IPv6 literal is ambiguous. */
		if (memchr(host, ':', hlen) != NULL)
			return TP_ESYNTAX;
	}
	if (hlen == 0)
		return TP_ESYNTAX;
	if (hlen > TP_HOST_MAX)
		return TP_ETOOBIG;
	memcpy(a->host, host, hlen);
	a->host[hlen] = '\0';
	if (!tp_host_valid(a->host))
		return TP_ESYNTAX;
	return parse_port(colon + 1, &a->port);
}

int
tp_addr_format(const struct tp_addr *a, char *buf, size_t len)
{
	int n;

	if (a->is_unix)
		n = snprintf(buf, len, "%s", a->path);
	else if (strchr(a->host, ':') != NULL)
		n = snprintf(buf, len, "[%s]:%u", a->host, a->port);
	else
		n = snprintf(buf, len, "%s:%u", a->host, a->port);
	return (n < 0 || (size_t)n >= len) ? TP_ETOOBIG : 0;
}
