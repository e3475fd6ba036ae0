/*
 * Forwarded channels: each forwarded-tcpip open the proxy sends becomes a
 * DIAL_REQUEST to the supervisor, whose DIAL_RESULT brings the local fd (or
 * a refusal, and the channel is closed cleanly).  Bytes are then pumped
 * both ways with bounded buffers and flow control (LIBSSH-NOTES traps
 * 1-5): libssh callbacks only record, the work happens after libssh
 * returns, and what is queued into libssh is capped by a write budget.
 */
#ifndef TP_WORKER_CHANNELS_H
#define TP_WORKER_CHANNELS_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libssh/libssh.h>

#include "proto/msg.h"

struct forwards;
struct report;
struct session;
struct channels;

/*
 * Memory, proxy -> local (docs/worker.md, "Memory bound").  libssh (with
 * the project's patch) hands each packet's payload to the data callback,
 * which writes it to the local fd at once; what the fd does not take stays
 * in libssh, which grants a channel window only while window + buffered
 * is under the channel's maximum.  The worker shares CHAN_RX_BUDGET among
 * the open channels: each gets at most CHAN_WINDOW (OpenSSH's 2 MiB), at
 * least CHAN_WINDOW_MIN, and a raise only from what the others do not
 * hold.  So all channels together hold at most
 * CHAN_RX_BUDGET + channels x CHAN_WINDOW_MIN from the proxy.
 */
#define CHAN_WINDOW		(2u * 1024 * 1024)
#define CHAN_WINDOW_MIN		(64u * 1024)
#define CHAN_RX_BUDGET		(32u * 1024 * 1024)
/* Bytes read from the local fd at a time (local -> proxy). */
#define CHAN_BUF		(64 * 1024)
/* What may be queued into libssh before its output drains (trap 1). */
#define CHAN_WRITE_BUDGET	(256 * 1024)

/*
 * Creates the channel table; max is CONFIG.max_ch.  Returns NULL when out
 * of memory.
 */
struct channels *channels_new(struct session *ss, struct report *rep,
    const struct forwards *fw, uint32_t max);

/*
 * libssh message callback (ssh_set_message_callback): accepts or refuses
 * forwarded-tcpip opens at once (trap 12), answers everything else with
 * libssh's default reply.  Returns 0 (handled) or 1 (default reply).
 */
int channels_on_message(ssh_session s, ssh_message m, void *arg);

/* Starts accepting channel opens (once the forwards may be requested). */
void channels_accept(struct channels *chs, bool on);

/*
 * Handles DIAL_RESULT: attaches fd (owned from here) or closes the channel.
 * Returns 0, or TP_EPROTO for a channel id we never issued.
 */
int channels_dial_result(struct channels *chs,
    const struct msg_dial_result *r, int fd);

/* Adds the pollfds the channels need; returns how many were added. */
size_t channels_pollfds(struct channels *chs, struct pollfd *pfd,
    size_t base, size_t cap);

/*
 * After poll and the session pump: sends DIAL_REQUESTs for new channels,
 * moves bytes both ways, half-closes and frees finished channels.  pfd is
 * the array channels_pollfds filled (revents set).
 */
void channels_pump(struct channels *chs, const struct pollfd *pfd);

/* True if there is work that must not wait for poll (timeout 0). */
bool channels_busy(const struct channels *chs);

/* Open channels (accepted and not yet freed). */
uint32_t channels_open(const struct channels *chs);

/* Fills the channel counters of STATS. */
void channels_stats(const struct channels *chs, struct msg_stats *st);

/* Closes every channel now (close deadline, exit). */
void channels_close_all(struct channels *chs);

/* Upper bound of the pollfds channels_pollfds may add. */
size_t channels_max_pollfds(const struct channels *chs);

#endif
