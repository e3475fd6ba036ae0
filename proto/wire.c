#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"
#include "msg.h"
#include "schema.h"
#include "wire.h"

int
proto_send_bytes(int sock, const void *buf, size_t len, int fd)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cbuf;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (fd >= 0) {
		struct cmsghdr *c;

		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = sizeof(cbuf.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	for (;;) {
		if (sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) ==
		    (ssize_t)len)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return TP_EAGAIN;
		if (errno == EPIPE || errno == ECONNRESET)
			return TP_ECLOSED;
		return TP_ESYS;
	}
}

int
proto_send(int sock, const struct msg *m)
{
	const struct msg_desc *d = msg_desc_lookup(m->type);
	uint8_t buf[PROTO_MAX_MSG];
	int n;

	if (d == NULL)
		return TP_EINVAL;
	/* The sender keeps the receiver's fd rule too. */
	if ((m->fd >= 0) != msg_wants_fd(m))
		return TP_EFD;
	if ((n = msg_encode(m, buf, sizeof(buf))) < 0)
		return n;
	return proto_send_bytes(sock, buf, (size_t)n, m->fd);
}

/* Collects every descriptor in the control data; returns how many. */
static int
collect_fds(struct msghdr *mh, int *fds, int max)
{
	int n = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL;
	    c = CMSG_NXTHDR(mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (n < max)
				fds[n] = fd;
			else
				close(fd);
			n++;
		}
	}
	return n;
}

int
proto_recv(int sock, uint8_t *buf, size_t cap, size_t *len, int *fd)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(PROTO_MAX_FDS * sizeof(int))];
	} cbuf;
	int fds[PROTO_MAX_FDS], nfds;
	struct msghdr mh;
	struct iovec iov;
	ssize_t n;

	*fd = -1;
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = buf;
	iov.iov_len = cap < PROTO_MAX_MSG ? cap : PROTO_MAX_MSG;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf.buf;
	mh.msg_controllen = sizeof(cbuf.buf);
	do
		n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return (errno == EAGAIN || errno == EWOULDBLOCK) ? TP_EAGAIN :
		    errno == ECONNRESET ? TP_ECLOSED : TP_ESYS;
	nfds = collect_fds(&mh, fds, PROTO_MAX_FDS);
	if (n == 0 || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 ||
	    nfds > 1) {
		for (int i = 0; i < nfds && i < PROTO_MAX_FDS; i++)
			close(fds[i]);
		if (n == 0)
			return TP_ECLOSED;
		return (mh.msg_flags & MSG_TRUNC) ? TP_ETOOBIG : TP_EFD;
	}
	if (nfds == 1)
		*fd = fds[0];
	*len = (size_t)n;
	return 0;
}

int
proto_recv_msg(int sock, enum msg_dir dir, struct msg *m)
{
	uint8_t buf[PROTO_MAX_MSG];
	size_t len;
	int fd, rc;

	if ((rc = proto_recv(sock, buf, sizeof(buf), &len, &fd)) != 0)
		return rc;
	return msg_decode(buf, len, fd, dir, m);
}
