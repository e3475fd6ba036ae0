/* A non-blocking connect with a deadline; see aconnect.h. */
#include <sys/socket.h>
#include <errno.h>
#include "common/tptime.h"
#include "aconnect.h"

int
aconnect_start(struct event_base *base, const struct sockaddr *sa,
    socklen_t salen, uint64_t timeout_ms, int *fdp, struct event **evp,
    event_callback_fn cb, void *arg)
{
	struct timeval tv = tp_timeval_ms(timeout_ms);

	*fdp = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (*fdp < 0)
		return errno;
	/* Connected at once (a unix socket): the callback still runs from
	 * the loop, so callers are never re-entered from their own call. */
	if (connect(*fdp, sa, salen) != 0 && errno != EINPROGRESS)
		return errno;
	if ((*evp = event_new(base, *fdp, EV_WRITE, cb, arg)) == NULL ||
	    event_add(*evp, &tv) != 0)
		return ENOMEM;
	return 0;
}

int
aconnect_result(evutil_socket_t fd, short what, struct event **evp)
{
	socklen_t len = sizeof(int);
	int err = 0;

	event_free(*evp);
	*evp = NULL;
	if (what & EV_TIMEOUT)
		return ETIMEDOUT;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	return err;
}
