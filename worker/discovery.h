/*
 * The tunnelpool-discovery subsystem channel: opens it, feeds what it
 * streams to the strict parser (discovery_stream.h), keeps the latest
 * proxy set, the announced name of the proxy we are on, and the proxy's
 * host certificate (CA mode), and sends DISCOVERY whenever the set changes.
 * Heartbeat lines need nothing here: their bytes count for liveness.
 */
#ifndef TP_WORKER_DISCOVERY_H
#define TP_WORKER_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libssh/libssh.h>

#include "proto/msg.h"

struct report;
struct session;
struct discovery;

#define DISCOVERY_SUBSYSTEM	"tunnelpool-discovery"

/*
 * Creates the reader for our proxy (fp) and cluster.  Returns NULL when out
 * of memory.
 */
struct discovery *discovery_new(struct session *ss, struct report *rep,
    const char *cluster, const char *fp);

/*
 * Opens the channel and requests the subsystem, without blocking.  Returns
 * 0 once open, TP_EAGAIN, or TP_ECLOSED (refused; see discovery_error).
 */
int discovery_open_step(struct discovery *d);

/*
 * After each session pump: sends DISCOVERY if the set changed and send is
 * true (never before the proxy is trusted: its announcements would reach
 * the supervisor).  Returns 0, or a negative tp_err once the stream is
 * broken or ended (sticky).
 */
int discovery_poll(struct discovery *d, bool send);

/* Why the stream failed ("" if it did not). */
const char *discovery_error(const struct discovery *d);

/* The announced name of our proxy, or "" while unknown. */
const char *discovery_own_name(const struct discovery *d);

/* The last host certificate announced, or NULL. */
const uint8_t *discovery_cert(const struct discovery *d, size_t *len);

#endif
