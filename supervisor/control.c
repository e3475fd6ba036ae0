#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "common/log.h"
#include "child.h"
#include "config.h"
#include "control.h"
#include "pool.h"
#include "send.h"
#include "status.h"
#include "sup.h"
#include "supervisor.h"

#define CONTROL_LINE_MAX	4096
#define CONTROL_OUT_MAX		(8 * 1024 * 1024)	/* slow readers are dropped */
#define CONTROL_MAX_CLIENTS	64

struct client {
	struct control		*ctl;
	struct bufferevent	*bev;
	struct event		*top;		/* "top" subscription timer */
	struct client		*next;
};

struct control {
	struct sup		*sup;
	struct evconnlistener	*lis;
	char			*path;
	gid_t			 gid;		/* (gid_t)-1: root only */
	struct client		*clients;
	unsigned		 nclients;
};

static void
client_free(struct client *cl)
{
	struct client **pp = &cl->ctl->clients;

	while (*pp != cl)
		pp = &(*pp)->next;
	*pp = cl->next;
	cl->ctl->nclients--;
	if (cl->top != NULL)
		event_free(cl->top);
	bufferevent_free(cl->bev);
	free(cl);
}

static void
reply(struct client *cl, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);

	json_decref(o);
	if (s == NULL)
		return;
	bufferevent_write(cl->bev, s, strlen(s));
	bufferevent_write(cl->bev, "\n", 1);
	free(s);
}

static json_t *
error_obj(const char *msg)
{
	return json_pack("{s:b,s:s}", "ok", 0, "error", msg);
}

static void
reply_status(struct client *cl)
{
	if (status_write(cl->ctl->sup, bufferevent_get_output(cl->bev)) != 0)
		reply(cl, error_obj("out of memory"));
}

static void
on_top_tick(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	struct timeval sec = { 1, 0 };

	(void)fd;
	(void)what;
	if (evbuffer_get_length(bufferevent_get_output(cl->bev)) > CONTROL_OUT_MAX) {
		client_free(cl);
		return;
	}
	reply_status(cl);
	evtimer_add(cl->top, &sec);
}

static json_t *
cmd_close(struct control *ctl, json_t *req)
{
	json_t *pid = json_object_get(req, "pid");
	const char *cluster, *dial;

	if (json_is_integer(pid)) {
		/* One agent only: the pool re-dials it (or its proxy) as usual. */
		if (pool_close_pid(ctl->sup->pool, (pid_t)json_integer_value(pid),
		    "closed by operator") != 0)
			return error_obj("no agent with that pid");
		return json_pack("{s:b}", "ok", 1);
	}
	cluster = json_string_value(json_object_get(req, "cluster"));
	dial = json_string_value(json_object_get(req, "dial_addr"));
	if (cluster == NULL || dial == NULL)
		return error_obj("close needs \"pid\" or \"cluster\" and \"dial_addr\"");
	if (pool_close_key(ctl->sup->pool, cluster, dial, "closed by operator") != 0)
		return error_obj("no such tunnel key");
	return json_pack("{s:b}", "ok", 1);
}

#ifdef TP_TEST_HOOKS
/*
 * Test-hooks builds only: {"cmd":"test_hook","pid":N,"action":K} makes the
 * supervisor send TEST_HOOK to one worker.  The message type itself does
 * not exist in other builds.
 */
static json_t *
cmd_test_hook(struct control *ctl, json_t *req)
{
	json_int_t pid = json_integer_value(json_object_get(req, "pid"));
	json_int_t action = json_integer_value(json_object_get(req, "action"));
	struct child *c = child_by_pid(ctl->sup, (pid_t)pid);

	if (c == NULL || c->state != CH_RUNNING)
		return error_obj("no running worker with that pid");
	if (action < 1 || action > 255)
		return error_obj("bad action");
	if (send_test_hook(c, (uint32_t)action) != 0)
		return error_obj("send failed");
	return json_pack("{s:b}", "ok", 1);
}
#endif

static void
handle(struct client *cl, const char *line)
{
	struct control *ctl = cl->ctl;
	json_error_t jerr;
	json_t *req = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
	const char *cmd = json_string_value(json_object_get(req, "cmd"));
	struct timeval now = { 0, 0 };

	if (cmd == NULL)
		reply(cl, error_obj("request must be a JSON object with \"cmd\""));
	else if (strcmp(cmd, "status") == 0)
		reply_status(cl);
	else if (strcmp(cmd, "version") == 0)
		reply(cl, json_pack("{s:b,s:s,s:i}", "ok", 1, "version",
		    TP_VERSION, "protocol", PROTO_VERSION));
	else if (strcmp(cmd, "reload") == 0) {
		int rc = sup_reload(ctl->sup);

		reply(cl, json_pack("{s:b,s:s?}", "ok", rc == 0, "error",
		    rc == 0 ? NULL : ctl->sup->config_error));
	} else if (strcmp(cmd, "close") == 0)
		reply(cl, cmd_close(ctl, req));
#ifdef TP_TEST_HOOKS
	else if (strcmp(cmd, "test_hook") == 0)
		reply(cl, cmd_test_hook(ctl, req));
#endif
	else if (strcmp(cmd, "top") == 0) {
		/* The stream is the answer; only a failure gets a line. */
		if (cl->top != NULL)
			reply(cl, error_obj("already subscribed"));
		else if ((cl->top = evtimer_new(ctl->sup->base, on_top_tick,
		    cl)) == NULL)
			reply(cl, error_obj("out of memory"));
		else
			evtimer_add(cl->top, &now);
	} else
		reply(cl, error_obj("unknown command"));
	json_decref(req);
}

static void
on_read(struct bufferevent *bev, void *arg)
{
	struct client *cl = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t n;

	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF)) != NULL) {
		handle(cl, line);
		free(line);
	}
	if (evbuffer_get_length(in) > CONTROL_LINE_MAX) {
		log_warnx("control client sent an over-long line; dropped");
		client_free(cl);
	}
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_free(arg);
}

/* Root, or a member of control_group (primary or supplementary). */
static int
peer_allowed(struct control *ctl, int fd)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	char path[64], line[256];
	int ok = 0;
	FILE *f;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
		return 0;
	if (cr.uid == 0)
		return 1;
	if (ctl->gid == (gid_t)-1)
		return 0;
	if (cr.gid == ctl->gid)
		return 1;
	snprintf(path, sizeof(path), "/proc/%ld/status", (long)cr.pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	while (!ok && fgets(line, sizeof(line), f) != NULL) {
		char *p = line + 7, *end;

		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		for (long g; (g = strtol(p, &end, 10)), end != p; p = end)
			if ((gid_t)g == ctl->gid)
				ok = 1;
	}
	fclose(f);
	return ok;
}

static void
on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct control *ctl = arg;
	struct client *cl;

	(void)lis;
	(void)sa;
	(void)salen;
	if (!peer_allowed(ctl, fd) || ctl->nclients >= CONTROL_MAX_CLIENTS) {
		static const char no[] = "{\"ok\":false,\"error\":\"permission denied\"}\n";
		static const char busy[] = "{\"ok\":false,\"error\":\"too many control clients\"}\n";
		int allowed = peer_allowed(ctl, fd);

		log_warnx("control connection refused: %s", allowed ?
		    "too many clients" : "peer not root nor in control_group");
		if (allowed)
			(void)!write(fd, busy, sizeof(busy) - 1);
		else
			(void)!write(fd, no, sizeof(no) - 1);
		close(fd);
		return;
	}
	if ((cl = calloc(1, sizeof(*cl))) == NULL ||
	    (cl->bev = bufferevent_socket_new(ctl->sup->base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		free(cl);
		close(fd);
		return;
	}
	cl->ctl = ctl;
	cl->next = ctl->clients;
	ctl->clients = cl;
	ctl->nclients++;
	bufferevent_setcb(cl->bev, on_read, NULL, on_event, cl);
	bufferevent_enable(cl->bev, EV_READ | EV_WRITE);
}

/* Refuses to steal the socket of a running supervisor; removes a stale one. */
static int
claim_path(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, live;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	live = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	if (live) {
		log_errorx("%s: another supervisor is running", path);
		return -1;
	}
	if (unlink(path) != 0 && errno != ENOENT)
		return -1;
	return 0;
}

struct control *
control_new(struct sup *sup)
{
	const char *path = sup->cfg->control_socket, *grp = sup->cfg->control_group;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct control *ctl = calloc(1, sizeof(*ctl));
	struct group *gr;
	mode_t old;

	if (ctl == NULL || strlen(path) >= sizeof(sun.sun_path))
		goto fail;
	ctl->sup = sup;
	ctl->gid = (gid_t)-1;
	if (grp[0] != '\0') {
		if ((gr = getgrnam(grp)) == NULL) {
			log_errorx("control_group \"%s\": no such group", grp);
			goto fail;
		}
		ctl->gid = gr->gr_gid;
	}
	/* The directory exists: supervisor_main made it (firstrun.c). */
	if (claim_path(path) != 0)
		goto fail;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	old = umask(0117);
	ctl->lis = evconnlistener_new_bind(sup->base, on_accept, ctl,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
	    (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (ctl->lis == NULL)
		goto fail;
	if ((ctl->path = strdup(path)) == NULL || chmod(path, 0660) != 0 ||
	    (ctl->gid != (gid_t)-1 && chown(path, 0, ctl->gid) != 0))
		goto fail;
	return ctl;
fail:
	log_warn("control socket %s", path);
	control_free(ctl);
	return NULL;
}

void
control_free(struct control *ctl)
{
	if (ctl == NULL)
		return;
	while (ctl->clients != NULL)
		client_free(ctl->clients);
	if (ctl->lis != NULL)
		evconnlistener_free(ctl->lis);
	if (ctl->path != NULL)
		unlink(ctl->path);
	free(ctl->path);
	free(ctl);
}
