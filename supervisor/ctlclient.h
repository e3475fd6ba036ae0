/* Operator subcommands that talk to a running supervisor's control socket. */
#ifndef TP_SUPERVISOR_CTLCLIENT_H
#define TP_SUPERVISOR_CTLCLIENT_H

#include <jansson.h>

/*
 * Connects to the control socket at path; returns the fd, or -1 with the
 * reason (not running, permission denied) on stderr.
 */
int ctlclient_connect(const char *path);
/*
 * Connects to the control socket at path, sends req (one JSON line) and
 * returns the first answer line as JSON, or NULL with a message on stderr
 * (exit 1: "the supervisor is not running").
 */
json_t *ctlclient_call(const char *path, const json_t *req);
/* `tunnelpool status`: table, or --json. Returns the exit code. */
int ctlclient_status(const char *path, int as_json);
/* Human-readable byte count ("1.5 MiB") into buf. */
void ctlclient_bytes(char *buf, size_t len, double v);

#endif
