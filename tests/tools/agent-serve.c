/*
 * agent-serve: serves the supervisor's signer on a unix socket, so that
 * real OpenSSH clients (ssh -o IdentityAgent=SOCK) can prove it
 * interoperates with stock sshd.  Test tool only.
 *
 *   agent-serve [-c CERT] [-u USER] KEY SOCKET
 *
 * Runs until SIGTERM or SIGINT, then prints "signatures=N refusals=M" on
 * stdout and removes the socket.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "supervisor/signer.h"
#include "supervisor/sshkey.h"

struct client {
	struct signer_conn	*conn;
	struct log_agent	 who;
	char			 name[32];
};

static struct signer *signer;
static struct event_base *base;

static void
client_gone(void *arg, const char *why)
{
	struct client *c = arg;

	log_emit(LOG_LVL_INFO, __func__, &c->who, NULL, "client done: %s",
	    why);
	signer_conn_free(c->conn);
	free(c);
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	static unsigned n;
	struct client *c;
	int fd;

	if ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) == -1) {
		log_warn("accept");
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		fatal("calloc");
	snprintf(c->name, sizeof(c->name), "client-%u", ++n);
	c->who.cluster = "agent-serve";
	c->who.addr = c->name;
	if ((c->conn = signer_conn_new(signer, base, fd, &c->who, client_gone,
	    c)) == NULL)
		fatalx("signer_conn_new failed");
}

static int
listen_unix(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path))
		fatalx("socket path too long: %s", path);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		fatal("socket");
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		fatal("bind %s", path);
	if (chmod(path, 0600) == -1 || listen(fd, 16) == -1)
		fatal("listen %s", path);
	return fd;
}

static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopbreak(base);
}

static void
usage(void)
{
	fprintf(stderr, "usage: agent-serve [-c CERT] [-u USER] KEY SOCKET\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *cert = NULL, *user = "root";
	struct event *ev, *sigterm, *sigint;
	struct sshkey *key;
	char err[SSHKEY_ERR_LEN];
	int ch, lfd;

	log_init("agent-serve", LOG_LVL_INFO, LOG_FMT_LOGFMT, 2);
	while ((ch = getopt(argc, argv, "c:u:")) != -1) {
		if (ch == 'c')
			cert = optarg;
		else if (ch == 'u')
			user = optarg;
		else
			usage();
	}
	if (argc - optind != 2)
		usage();
	if (sshkey_load(argv[optind], &key, err, sizeof(err)) != 0)
		fatalx("%s", err);
	if (cert != NULL && sshkey_load_cert(key, cert, err, sizeof(err)) != 0)
		fatalx("%s", err);
	if ((signer = signer_new(key, user)) == NULL)
		fatalx("signer_new failed");
	log_info("serving %s %s%s on %s for user %s", sshkey_type_name(key),
	    sshkey_fingerprint(key), cert != NULL ? " with certificate" : "",
	    argv[optind + 1], user);
	signal(SIGPIPE, SIG_IGN);
	if ((base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	lfd = listen_unix(argv[optind + 1]);
	ev = event_new(base, lfd, EV_READ | EV_PERSIST, accept_cb, NULL);
	sigterm = evsignal_new(base, SIGTERM, stop_cb, NULL);
	sigint = evsignal_new(base, SIGINT, stop_cb, NULL);
	if (ev == NULL || sigterm == NULL || sigint == NULL ||
	    event_add(ev, NULL) == -1 || event_add(sigterm, NULL) == -1 ||
	    event_add(sigint, NULL) == -1)
		fatalx("cannot set up events");
	event_base_dispatch(base);
	printf("signatures=%llu refusals=%llu\n",
	    (unsigned long long)signer_signatures(signer),
	    (unsigned long long)signer_refusals(signer));
	fflush(stdout);
	unlink(argv[optind + 1]);
	event_free(ev);
	event_free(sigterm);
	event_free(sigint);
	close(lfd);
	signer_free(signer);
	sshkey_free(key);
	event_base_free(base);
	return 0;
}
