/*
 * The discovery stream's limits: the contract between the proxy's
 * tunnelpool-discovery helper (proxy/), which writes the stream, and the
 * worker's strict parser (worker/discovery_stream.c), which reads it, so
 * that what one writes is exactly what the other accepts.  The stream
 * itself is described in docs/discovery-protocol.md.
 */
#ifndef TP_PROTO_DISCOVERY_H
#define TP_PROTO_DISCOVERY_H

#define DISCOVERY_LINE_MAX	65536	/* bytes per line, including '\n' */
#define DISCOVERY_NAME_MAX	127	/* cluster and proxy names */
#define DISCOVERY_PROXIES_MAX	256	/* proxies in one set */
#define DISCOVERY_KEY_LINE_MAX	4096	/* "type base64" host key line */
#define DISCOVERY_CERT_LINE_MAX	16384	/* "type-cert-v01@openssh.com base64" */
#define DISCOVERY_INTERVAL_MAX	3600	/* heartbeat interval, seconds */
#define DISCOVERY_FP_LEN	50	/* "SHA256:" + 43 base64 chars */

#endif
