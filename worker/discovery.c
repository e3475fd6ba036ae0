/*
 * The discovery subsystem channel (see discovery.h).  The data callback
 * feeds the parser directly: the parser only copies and checks bytes and
 * calls back into our recorder, it never calls libssh, so this stays
 * within "callbacks only record" (LIBSSH-NOTES trap 4).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libssh/callbacks.h>
#include <libssh/libssh.h>

#include "common/error.h"
#include "common/log.h"
#include "worker/discovery.h"
#include "worker/discovery_stream.h"
#include "worker/hostcert.h"
#include "worker/report.h"
#include "worker/send.h"
#include "worker/session.h"

enum ds_state {
	DS_OPENING = 1,
	DS_REQUESTING,
	DS_OPEN,
	DS_FAILED,
};

struct discovery {
	struct session			*ss;
	struct report			*rep;
	char				 cluster[PROTO_NAME_MAX];
	char				 fp[PROTO_FP_MAX];
	enum ds_state			 st;
	ssh_channel			 ch;
	struct ssh_channel_callbacks_struct cb;
	struct discovery_stream		*ds;
	int				 err;
	char				 why[PROTO_REASON_MAX];
	struct msg			 cur;	/* DISCOVERY built from the stream */
	struct msg			 sent;	/* last DISCOVERY sent */
	bool				 have_set;
	bool				 changed;
	bool				 refresh;	/* re-announce at a heartbeat */
	char				 own_name[PROTO_NAME_MAX];
	uint8_t				 cert[HOSTCERT_MAX];
	size_t				 cert_len;
};

static void
fail(struct discovery *d, int err, const char *why)
{
	if (d->err != 0)
		return;
	d->err = err;
	snprintf(d->why, sizeof(d->why), "%s", why);
	d->st = DS_FAILED;
}

/* Records a full proxy set; flags a change against what was sent. */
static void
record_proxies(struct discovery *d, const struct discovery_event *ev)
{
	struct msg_discovery *md = &d->cur.u.discovery;

	msg_init(&d->cur, MSG_DISCOVERY);
	/*
	 * The cluster the proxy announces, not ours: the supervisor refuses a
	 * set from another cluster (a mis-routed load balancer).
	 */
	snprintf(md->cluster, sizeof(md->cluster), "%s", ev->proxies.cluster);
	md->n_proxies = 0;
	for (size_t i = 0; i < ev->proxies.n && i < PROTO_MAX_PROXIES; i++) {
		const struct discovery_proxy *p = &ev->proxies.v[i];

		snprintf(md->proxies[i].name, sizeof(md->proxies[i].name),
		    "%s", p->name);
		snprintf(md->proxies[i].fp, sizeof(md->proxies[i].fp), "%s",
		    p->fp);
		md->n_proxies++;
		if (strcmp(p->fp, d->fp) == 0)
			snprintf(d->own_name, sizeof(d->own_name), "%s",
			    p->name);
	}
	d->have_set = true;
	if (!d->changed && (d->sent.u.discovery.n_proxies != md->n_proxies ||
	    strcmp(d->sent.u.discovery.cluster, md->cluster) != 0 ||
	    memcmp(d->sent.u.discovery.proxies, md->proxies,
	    md->n_proxies * sizeof(md->proxies[0])) != 0))
		d->changed = true;
}

static int
on_event(const struct discovery_event *ev, void *arg)
{
	struct discovery *d = arg;

	switch (ev->type) {
	case DISCOVERY_EV_PROXIES:
		record_proxies(d, ev);
		break;
	case DISCOVERY_EV_CERT:
		if (ev->cert.len > sizeof(d->cert))
			return TP_ETOOBIG;
		memcpy(d->cert, ev->cert.blob, ev->cert.len);
		d->cert_len = ev->cert.len;
		break;
	case DISCOVERY_EV_HEARTBEAT:
		/* Re-announce the set: the supervisor's TTL counts from it. */
		d->refresh = d->have_set;
		break;
	}
	return 0;
}

static int
cb_data(ssh_session s, ssh_channel ch, void *data, uint32_t len,
    int is_stderr, void *arg)
{
	struct discovery *d = arg;
	int rc;

	if (is_stderr || d->err != 0)
		return (int)len;	/* the helper's stderr is not the stream */
	if ((rc = discovery_stream_feed(d->ds, data, len, on_event, d)) != 0)
		fail(d, rc, discovery_stream_errmsg(d->ds));
	return (int)len;
}

static void
cb_eof(ssh_session s, ssh_channel ch, void *arg)
{
	fail(arg, TP_ECLOSED, "discovery stream ended");
}

static void
cb_close(ssh_session s, ssh_channel ch, void *arg)
{
	fail(arg, TP_ECLOSED, "discovery stream closed");
}

struct discovery *
discovery_new(struct session *ss, struct report *rep, const char *cluster,
    const char *fp)
{
	struct discovery *d = calloc(1, sizeof(*d));

	if (d == NULL || (d->ds = discovery_stream_new()) == NULL) {
		free(d);
		return NULL;
	}
	d->ss = ss;
	d->rep = rep;
	snprintf(d->cluster, sizeof(d->cluster), "%s", cluster);
	snprintf(d->fp, sizeof(d->fp), "%s", fp);
	d->st = DS_OPENING;
	msg_init(&d->sent, MSG_DISCOVERY);
	d->cb.userdata = d;
	d->cb.channel_data_function = cb_data;
	d->cb.channel_eof_function = cb_eof;
	d->cb.channel_close_function = cb_close;
	ssh_callbacks_init(&d->cb);
	return d;
}

/* Reads what arrived before the callbacks could see it (trap 3). */
static void
drain_once(struct discovery *d)
{
	uint8_t buf[4096];
	int n;

	while ((n = ssh_channel_read_nonblocking(d->ch, buf, sizeof(buf), 0)) > 0)
		cb_data(d->ss->s, d->ch, buf, (uint32_t)n, 0, d);
}

int
discovery_open_step(struct discovery *d)
{
	int rc;

	if (d->st == DS_OPENING) {
		if (d->ch == NULL) {
			if ((d->ch = ssh_channel_new(d->ss->s)) == NULL) {
				fail(d, TP_ENOMEM, "out of memory");
				return TP_ECLOSED;
			}
			ssh_set_channel_callbacks(d->ch, &d->cb);
		}
		if ((rc = ssh_channel_open_session(d->ch)) == SSH_AGAIN)
			return TP_EAGAIN;
		if (rc != SSH_OK) {
			fail(d, TP_ECLOSED, "session channel refused");
			return TP_ECLOSED;
		}
		d->st = DS_REQUESTING;
	}
	if (d->st == DS_REQUESTING) {
		rc = ssh_channel_request_subsystem(d->ch, DISCOVERY_SUBSYSTEM);
		if (rc == SSH_AGAIN)
			return TP_EAGAIN;
		if (rc != SSH_OK) {
			fail(d, TP_ECLOSED, "subsystem " DISCOVERY_SUBSYSTEM
			    " refused");
			return TP_ECLOSED;
		}
		d->st = DS_OPEN;
		drain_once(d);
	}
	return d->st == DS_OPEN ? 0 : TP_ECLOSED;
}

int
discovery_poll(struct discovery *d, bool send)
{
	if (d->err != 0)
		return d->err;
	if (send && (d->changed || d->refresh) && d->have_set) {
		if (d->changed)
			alog_info(report_agent(d->rep), "discovery: %u proxies",
			    d->cur.u.discovery.n_proxies);
		d->changed = d->refresh = false;
		d->sent = d->cur;
		send_discovery(d->rep, &d->cur);
	}
	return 0;
}

const char *
discovery_error(const struct discovery *d)
{
	return d->why;
}

const char *
discovery_own_name(const struct discovery *d)
{
	return d->own_name;
}

const uint8_t *
discovery_cert(const struct discovery *d, size_t *len)
{
	*len = d->cert_len;
	return d->cert_len > 0 ? d->cert : NULL;
}
