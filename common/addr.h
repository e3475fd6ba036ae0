/* Parsing of "host:port", "[v6]:port" and unix socket paths. */
#ifndef TP_ADDR_H
#define TP_ADDR_H

#include <stdint.h>

#define TP_HOST_MAX	255
#define TP_PATH_MAX	108	/* sun_path */

struct tp_addr {
	int		is_unix;
	char		host[TP_HOST_MAX + 1];	/* no brackets for IPv6 */
	uint16_t	port;
	char		path[TP_PATH_MAX];
};

/*
 * Parses "host:port" or "[v6addr]:port" (port 1..65535, host a DNS name or
 * literal).  When allow_unix is set, an absolute path ("/...") is a unix
 * socket.  Returns 0, TP_ESYNTAX, TP_ERANGE or TP_ETOOBIG.
 */
int tp_addr_parse(const char *s, int allow_unix, struct tp_addr *a);
/* Formats a back into "host:port" / "[v6]:port" / path; returns 0 or TP_ETOOBIG. */
int tp_addr_format(const struct tp_addr *a, char *buf, size_t len);
/* Returns 1 if s is a plausible DNS name or IP literal (no spaces, controls, '/'). */
int tp_host_valid(const char *s);

#endif
