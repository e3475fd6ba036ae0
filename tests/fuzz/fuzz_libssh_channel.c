/*
 * libFuzzer harness for the parts of libssh that packaging/libssh/
 * tunnelpool.patch changes on the receive side: the socket layer's 256 KiB
 * reads, packet framing (one packet per call, no recursion), and channel
 * data handed to the data callback in place, with data beyond the window
 * dropped, the per-channel window maximum, ssh_channel_deliver() and
 * ssh_session_shrink_buffers(), and ssh_session_handle_revents(), which
 * runs the socket's poll callback for the worker's own poll result.
 *
 * The bytes arrive through a real socketpair and libssh's own poll
 * callback (through ssh_session_handle_revents, as in the worker), as
 * from a proxy after authentication (no cipher: the framing
 * is the plaintext one, so the fuzzer reaches CHANNEL_DATA quickly).  One
 * forwarded channel is open.  Input: byte 0 picks how much the data
 * callback takes (all, none, half, 1 byte), byte 1 the window maximum,
 * the rest is the stream.  After every chunk the harness checks the
 * patch's promise: what a channel holds (window + buffered) never exceeds
 * the larger of its first window and its maximum.
 */
#include <sys/socket.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "libssh/priv.h"
#include "libssh/buffer.h"
#include "libssh/callbacks.h"
#include "libssh/channels.h"
#include "libssh/packet.h"
#include "libssh/session.h"
#include "libssh/socket.h"

#define FIRST_WINDOW	64000u

static unsigned take_mode;
static volatile uint8_t sink;	/* the bytes must be readable where they lie */

static int
on_data(ssh_session s, ssh_channel ch, void *data, uint32_t len,
    int is_stderr, void *arg)
{
	(void)s;
	(void)ch;
	(void)is_stderr;
	(void)arg;
	if (len > 0)
		sink ^= ((uint8_t *)data)[0] ^ ((uint8_t *)data)[len - 1];
	switch (take_mode) {
	case 0:		return (int)len;
	case 1:		return 0;
	case 2:		return (int)(len / 2);
	default:	return len > 0 ? 1 : 0;
	}
}

static struct ssh_channel_callbacks_struct cb = {
	.channel_data_function = on_data,
};

static void
check_held(ssh_channel ch, uint32_t max)
{
	uint32_t buffered, held = ssh_channel_get_rx_held(ch, &buffered);
	uint32_t limit = max > FIRST_WINDOW ? max : FIRST_WINDOW;

	if (held > limit || buffered > held)
		__builtin_trap();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	ssh_init();
	ssh_callbacks_init(&cb);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t maxes[] = { 0, 32768, 65536, 1 << 20, 2 << 20 };
	ssh_session session;
	ssh_channel ch;
	ssh_poll_handle p;
	uint32_t max;
	int sv[2];

	if (size < 2)
		return 0;
	take_mode = data[0] & 3;
	max = maxes[data[1] % (sizeof(maxes) / sizeof(maxes[0]))];
	data += 2;
	size -= 2;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 0;
	(void)fcntl(sv[0], F_SETFL, O_NONBLOCK);
	(void)fcntl(sv[1], F_SETFL, O_NONBLOCK);
	if ((session = ssh_new()) == NULL)
		goto out;
	ssh_socket_set_fd(session->socket, sv[0]);
	p = ssh_socket_get_poll_handle(session->socket);
	ssh_socket_set_connected(session->socket, p);
	ssh_packet_register_socket_callback(session, session->socket);
	ssh_packet_set_default_callbacks(session);
	session->session_state = SSH_SESSION_STATE_AUTHENTICATED;
	session->flags |= SSH_SESSION_FLAG_AUTHENTICATED;
	session->alive = 1;
	if ((ch = ssh_channel_new(session)) == NULL)
		goto free_session;
	ch->state = SSH_CHANNEL_STATE_OPEN;
	ch->local_channel = 1;	/* what the corpus addresses */
	ch->remote_channel = 7;
	ch->local_window = FIRST_WINDOW;
	ch->local_maxpacket = 32768;
	ch->remote_window = 1 << 20;
	ch->remote_maxpacket = 32768;
	ssh_channel_set_window_max(ch, max);
	ssh_set_channel_callbacks(ch, &cb);

	/*
	 * The stream in pieces, each read as the worker has libssh read it:
	 * ssh_session_handle_revents() with the POLLIN its poll(2) saw.
	 */
	while (size > 0 && ssh_socket_is_open(session->socket)) {
		size_t n = size < 8192 ? size : 8192;
		ssize_t w = write(sv[1], data, n);

		if (w <= 0)
			break;
		data += w;
		size -= (size_t)w;
		if (ssh_session_handle_revents(session, POLLIN) != SSH_OK)
			break;
		check_held(ch, max ? max : 1280000);
		(void)ssh_channel_deliver(ch);
		check_held(ch, max ? max : 1280000);
	}
	take_mode = 0;
	(void)ssh_channel_deliver(ch);
	ssh_session_shrink_buffers(session);
	ssh_remove_channel_callbacks(ch, &cb);
	ssh_channel_free(ch);
free_session:
	ssh_free(session);	/* closes sv[0] with its socket */
	sv[0] = -1;
out:
	if (sv[0] >= 0)
		close(sv[0]);
	close(sv[1]);
	return 0;
}
