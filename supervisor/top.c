/*
 * `tunnelpool top`.  Everything shown comes from the control socket's
 * "top" stream: the supervisor sends one status document (status.c) per
 * line per second, so this view needs no rights beyond the socket's and
 * cannot disturb the pool.  Rates and "recent" loop-lag quantiles are
 * computed here from the differences between consecutive documents.
 *
 * One poll(2) loop watches the terminal and the (non-blocking) socket: a
 * key is handled at once, a document is drawn as soon as it is complete.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curses.h>
#include <jansson.h>

#include "common/tptime.h"
#include "ctlclient.h"
#include "top.h"

#define TOP_LINE_MAX	(16 * 1024 * 1024)	/* one status document */
#define TOP_FIRST_MS	5000		/* the first document must come by then */
#define LAG_MAX		32		/* histogram buckets kept */
#define LAG_WINDOW	11		/* documents: "recent" spans ~10 s */
#define RATE_MIN_MS	500		/* shorter gaps make rates meaningless */
#define STALE_S		3		/* seconds without a document: say so */

/* Columns of the agent table; STATE_COL is where the state starts. */
#define AGENT_FMT	"%-16.16s %-22.22s %-20.20s %-12.12s %7s %8s %10s " \
			"%8s %10s %10s %s"
#define STATE_COL	(16 + 1 + 22 + 1 + 20 + 1)
#define CLUSTER_FMT	"%-16.16s %9s %7s %10s %11s %9s %10s %12s %7s %7s " \
			"%8s %-8s"
/* Columns of the wanted-set table ('w'). */
#define WANTED_FMT	"%-16.16s %-22.22s %-20.20s %-24.24s %7s %7s %-20.20s " \
			"%6s %8s"

enum { PAIR_UP = 1, PAIR_BUSY, PAIR_DOWN };

/* A cumulative histogram as status.c sends it (le_us -1 = +Inf). */
struct lag_hist {
	size_t		n;
	int64_t		le_us[LAG_MAX];
	uint64_t	cum[LAG_MAX];
};

struct top {
	int		 fd;
	char		*buf;		/* bytes of the next, incomplete line */
	size_t		 len, cap;
	json_t		*st;		/* the latest document */
	json_int_t	 prev_spawns, prev_msgs;
	uint64_t	 prev_ms;	/* 0: no previous document */
	uint64_t	 last_ms;	/* when the latest document came */
	double		 spawn_rate, msg_rate;	/* < 0: not known yet */
	struct lag_hist	 ring[LAG_WINDOW];	/* [0] oldest */
	size_t		 nring;
	int		 scroll;	/* first row of the lower table shown */
	int		 rows;		/* rows of it that fit, last draw */
	bool		 wanted;	/* the lower table: wanted set, not agents */
	bool		 color;
};

/* --- small helpers ---------------------------------------------------------- */

static long long
jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static const char *
jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s != NULL ? s : "";
}

static void
fmt_dur(char *b, size_t n, long long s)
{
	if (s < 0)
		snprintf(b, n, "-");
	else if (s < 60)
		snprintf(b, n, "%llds", s);
	else if (s < 3600)
		snprintf(b, n, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(b, n, "%lldh%02lldm", s / 3600, s / 60 % 60);
	else
		snprintf(b, n, "%lldd%02lldh", s / 86400, s / 3600 % 24);
}

static void
fmt_us(char *b, size_t n, double us)
{
	if (us < 0)
		snprintf(b, n, "-");
	else if (us < 1000)
		snprintf(b, n, "%.0fus", us);
	else if (us < 1e6)
		snprintf(b, n, "%.1fms", us / 1e3);
	else
		snprintf(b, n, "%.2fs", us / 1e6);
}

static void
fmt_rate(char *b, size_t n, double r)
{
	if (r < 0)
		snprintf(b, n, "-");
	else
		snprintf(b, n, "%.1f", r);
}

/* --- the connection --------------------------------------------------------------- */

static int
top_grow(struct top *t)
{
	size_t cap = t->cap == 0 ? 65536 : t->cap * 2;
	char *nb;

	if (cap > TOP_LINE_MAX)
		return -1;
	if ((nb = realloc(t->buf, cap)) == NULL)
		return -1;
	t->buf = nb;
	t->cap = cap;
	return 0;
}

/*
 * Reads everything the socket has.  Returns 0 when it would block, -1 on
 * end of stream, an error, or a document over TOP_LINE_MAX.
 */
static int
top_fill(struct top *t)
{
	ssize_t n;

	for (;;) {
		if (t->cap - t->len < 4096 && top_grow(t) != 0)
			return -1;
		n = read(t->fd, t->buf + t->len, t->cap - t->len);
		if (n > 0)
			t->len += (size_t)n;
		else if (n == 0)
			return -1;
		else if (errno != EINTR)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	}
}

/* --- what the documents say ------------------------------------------------------- */

/* Counter rates over the time between documents (spawns/s, messages/s). */
static void
note_rates(struct top *t, json_t *sup, uint64_t now)
{
	json_int_t sp = jint(sup, "spawns"), ms = jint(sup, "messages");
	double dt;

	if (t->prev_ms != 0 && now < t->prev_ms + RATE_MIN_MS)
		return;		/* documents queued up: wait for a real gap */
	if (t->prev_ms != 0 && sp >= t->prev_spawns && ms >= t->prev_msgs) {
		dt = (double)(now - t->prev_ms) / 1000.0;
		t->spawn_rate = (double)(sp - t->prev_spawns) / dt;
		t->msg_rate = (double)(ms - t->prev_msgs) / dt;
	}
	t->prev_spawns = sp;
	t->prev_msgs = ms;
	t->prev_ms = now;
}

static int
lag_parse(json_t *lag, struct lag_hist *h)
{
	json_t *b, *v;
	size_t i;

	h->n = 0;
	b = json_object_get(lag, "buckets");
	json_array_foreach(b, i, v) {
		if (i >= LAG_MAX)
			break;
		h->le_us[i] = jint(v, "le_us");
		h->cum[i] = (uint64_t)jint(v, "count");
		h->n++;
	}
	return h->n > 0 ? 0 : -1;
}

/*
 * Keeps the last LAG_WINDOW histograms.  A different bucket layout or a
 * count that went down (a new supervisor) starts the window afresh.
 */
static void
note_lag(struct top *t, json_t *sup)
{
	struct lag_hist h;
	const struct lag_hist *last = &t->ring[t->nring > 0 ? t->nring - 1 : 0];

	if (lag_parse(json_object_get(sup, "loop_lag"), &h) != 0)
		return;
	if (t->nring > 0 && (last->n != h.n ||
	    last->cum[h.n - 1] > h.cum[h.n - 1]))
		t->nring = 0;
	if (t->nring == LAG_WINDOW) {
		memmove(&t->ring[0], &t->ring[1], sizeof(t->ring[0]) *
		    (LAG_WINDOW - 1));
		t->nring--;
	}
	t->ring[t->nring++] = h;
}

/*
 * Takes one answer line.  Returns 0, or -1 with err set when the line is
 * not JSON or is a refusal ({"ok":false,"error":...}).
 */
static int
top_accept(struct top *t, const char *line, size_t len, char *err,
    size_t errlen)
{
	json_error_t jerr;
	json_t *o = json_loadb(line, len, 0, &jerr), *sup;

	if (o == NULL || !json_is_object(o)) {
		snprintf(err, errlen, "bad answer from the supervisor: %s",
		    o == NULL ? jerr.text : "not an object");
		json_decref(o);
		return -1;
	}
	if (json_is_false(json_object_get(o, "ok")) ||
	    !json_is_object(sup = json_object_get(o, "supervisor"))) {
		snprintf(err, errlen, "%s", json_object_get(o, "error") ?
		    jstr(o, "error") : "unexpected answer from the supervisor");
		json_decref(o);
		return -1;
	}
	t->last_ms = tp_now_ms();
	note_rates(t, sup, t->last_ms);
	note_lag(t, sup);
	json_decref(t->st);
	t->st = o;
	return 0;
}

/* Takes every complete line in the buffer; returns -1 (err set) on a bad one. */
static int
top_take_lines(struct top *t, char *err, size_t errlen)
{
	char *nl;
	size_t l;
	int rc = 0;

	while (rc == 0 && (nl = memchr(t->buf, '\n', t->len)) != NULL) {
		l = (size_t)(nl - t->buf);
		rc = top_accept(t, t->buf, l, err, errlen);
		memmove(t->buf, nl + 1, t->len - l - 1);
		t->len -= l + 1;
	}
	return rc;
}

/*
 * Sends the subscription and waits for the first document, before the
 * screen is taken over, so that a refusal or a dead socket is reported
 * as a plain message.  A failed send is not final: a refused peer gets
 * its one answer line even when the socket is already shut.
 */
static int
top_subscribe(struct top *t, char *err, size_t errlen)
{
	static const char req[] = "{\"cmd\":\"top\"}\n";
	uint64_t deadline = tp_now_ms() + TOP_FIRST_MS, now;
	struct pollfd p = { .fd = t->fd, .events = POLLIN };
	int serr = 0, eof = 0;

	if (send(t->fd, req, sizeof(req) - 1, MSG_NOSIGNAL) < 0)
		serr = errno;
	if (fcntl(t->fd, F_SETFL, O_NONBLOCK) != 0) {
		snprintf(err, errlen, "fcntl: %s", strerror(errno));
		return -1;
	}
	while (t->st == NULL && !eof) {
		if ((now = tp_now_ms()) >= deadline) {
			snprintf(err, errlen, "no answer from the supervisor");
			return -1;
		}
		if (poll(&p, 1, (int)(deadline - now)) < 0 && errno != EINTR)
			break;
		eof = top_fill(t) < 0;
		if (top_take_lines(t, err, errlen) != 0)
			return -1;
	}
	if (t->st != NULL)
		return 0;
	snprintf(err, errlen, "the supervisor closed the connection%s%s",
	    serr != 0 ? ": " : "", serr != 0 ? strerror(serr) : "");
	return -1;
}

/* --- quantiles -------------------------------------------------------------------- */

/*
 * The q-quantile of a cumulative histogram, interpolated linearly inside
 * its bucket as Prometheus' histogram_quantile() does.  Returns -1 for an
 * empty histogram; *inf is set when it falls in the +Inf bucket (the value
 * is then the highest finite bound).
 */
static double
hist_quantile(const struct lag_hist *h, double q, bool *inf)
{
	double rank, lo, prev;

	*inf = false;
	if (h->n == 0 || h->cum[h->n - 1] == 0)
		return -1;
	rank = q * (double)h->cum[h->n - 1];
	for (size_t i = 0; i < h->n; i++) {
		if ((double)h->cum[i] < rank)
			continue;
		lo = i > 0 ? (double)h->le_us[i - 1] : 0;
		if (h->le_us[i] < 0) {
			*inf = true;
			return lo;
		}
		prev = i > 0 ? (double)h->cum[i - 1] : 0;
		return lo + ((double)h->le_us[i] - lo) * (rank - prev) /
		    ((double)h->cum[i] - prev);
	}
	return -1;
}

/*
 * The histogram to report: the samples of the last ~10 s (newest minus
 * oldest document in the window) when there are any, else the totals
 * since the supervisor started.  *label says which.
 */
static void
lag_recent(const struct top *t, struct lag_hist *out, char *label, size_t n)
{
	const struct lag_hist *new = &t->ring[t->nring - 1], *old = &t->ring[0];

	*out = *new;
	if (t->nring >= 2) {
		for (size_t i = 0; i < new->n; i++)
			out->cum[i] = new->cum[i] - old->cum[i];
		if (out->cum[out->n - 1] > 0) {
			snprintf(label, n, "last %zus", t->nring - 1);
			return;
		}
		*out = *new;
	}
	snprintf(label, n, "since start");
}

/* --- drawing ------------------------------------------------------------------------ */

/* One screen line, cut at the terminal's width; nothing below the footer. */
static void put(int y, attr_t attr, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
put(int y, attr_t attr, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (y >= LINES - 1)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	attron(attr);
	mvaddnstr(y, 0, line, COLS);
	if (attr & A_REVERSE)
		for (int x = (int)strlen(line); x < COLS; x++)
			addch(' ');
	attroff(attr);
}

static int
draw_lag(const struct top *t, int y)
{
	static const double qs[] = { 0.5, 0.9, 0.99, 0.999 };
	char v[4][24], label[32];
	struct lag_hist h;
	bool inf;

	if (t->nring == 0) {
		put(y, 0, "loop lag: -");
		return y + 1;
	}
	lag_recent(t, &h, label, sizeof(label));
	for (size_t i = 0; i < 4; i++) {
		double us = hist_quantile(&h, qs[i], &inf);

		fmt_us(v[i] + 1, sizeof(v[i]) - 1, us);
		v[i][0] = inf ? '>' : ' ';
	}
	put(y, 0, "loop lag (%s, %llu samples): p50%s  p90%s  p99%s  p99.9%s",
	    label, (unsigned long long)h.cum[h.n - 1], v[0], v[1], v[2], v[3]);
	return y + 1;
}

static int
draw_header(const struct top *t, int y)
{
	json_t *sup = json_object_get(t->st, "supervisor");
	char up[24], rss[24], sr[24], mr[24];
	bool ok = json_is_true(json_object_get(sup, "config_ok"));

	fmt_dur(up, sizeof(up), jint(sup, "uptime_s"));
	ctlclient_bytes(rss, sizeof(rss), (double)jint(sup, "rss_bytes"));
	fmt_rate(sr, sizeof(sr), t->spawn_rate);
	fmt_rate(mr, sizeof(mr), t->msg_rate);
	put(y++, A_BOLD, "tunnelpool %s - supervisor pid %lld, up %s, config %s%s%s",
	    jstr(sup, "version"), jint(sup, "pid"), up, ok ? "ok" : "BROKEN",
	    ok ? "" : ": ", ok ? "" : jstr(sup, "config_error"));
	put(y++, 0, "rss %s  fds %lld  workers %lld  spawns/s %s  messages/s %s"
	    "  sandbox violations %lld", rss, jint(sup, "open_fds"),
	    jint(sup, "workers"), sr, mr, jint(sup, "sandbox_violations"));
	return draw_lag(t, y);
}

static int
draw_clusters(const struct top *t, int y)
{
	json_t *c;
	size_t i;

	put(y++, A_REVERSE, CLUSTER_FMT, "CLUSTER", "ANNOUNCED", "CLAIMED",
	    "CONNECTING", "DISCOVERING", "CONNECTED", "DISCOVERED",
	    "DISCONNECTED", "MISSES", "REFUSED", "RETRY IN", "BALANCER");
	json_array_foreach(json_object_get(t->st, "clusters"), i, c) {
		json_t *s = json_object_get(c, "states");
		char v[10][24];

		snprintf(v[0], sizeof(v[0]), "%lld", jint(c, "proxies_announced"));
		snprintf(v[1], sizeof(v[1]), "%lld", jint(c, "proxies_claimed"));
		snprintf(v[2], sizeof(v[2]), "%lld", jint(s, "connecting"));
		snprintf(v[3], sizeof(v[3]), "%lld", jint(s, "discovering"));
		snprintf(v[4], sizeof(v[4]), "%lld", jint(s, "connected"));
		snprintf(v[5], sizeof(v[5]), "%lld", jint(s, "discovered"));
		snprintf(v[6], sizeof(v[6]), "%lld", jint(s, "disconnected"));
		snprintf(v[7], sizeof(v[7]), "%lld", jint(c, "discovery_misses"));
		snprintf(v[8], sizeof(v[8]), "%lld", jint(c, "claims_refused"));
		/* In a miss streak: when the next discovery dial may go. */
		if (jint(c, "discovery_miss_streak") > 0 &&
		    jint(c, "discovery_retry_in_ms") == 0)
			snprintf(v[9], sizeof(v[9]), "now");
		else if (jint(c, "discovery_miss_streak") > 0)
			fmt_us(v[9], sizeof(v[9]),
			    1000.0 * (double)jint(c, "discovery_retry_in_ms"));
		else
			snprintf(v[9], sizeof(v[9]), "-");
		/* An agent holds a proxy the lists no longer name. */
		put(y++, 0, CLUSTER_FMT, jstr(c, "name"), v[0], v[1], v[2],
		    v[3], v[4], v[5], v[6], v[7], v[8], v[9],
		    json_is_true(json_object_get(c, "discovery_lagging")) ?
		    "lagging" : "-");
	}
	return y;
}

static short
state_pair(const char *state)
{
	if (strcmp(state, "connected") == 0 || strcmp(state, "discovered") == 0)
		return PAIR_UP;
	if (strcmp(state, "connecting") == 0 || strcmp(state, "discovering") == 0)
		return PAIR_BUSY;
	return PAIR_DOWN;
}

static void
draw_agent(const struct top *t, json_t *a, int y)
{
	json_t *px = json_object_get(a, "proxy");
	char pid[24], up[24], rc[24], ch[24], rx[24], tx[24];
	const char *proxy = jstr(px, "name");

	/* No name (no discovery): the host key, whose "SHA256:" says nothing. */
	if (proxy[0] == '\0')
		proxy = jstr(px, "host_key");
	if (strncmp(proxy, "SHA256:", 7) == 0)
		proxy += 7;
	/* pid 0: a key waiting for its next agent (backoff, limiter). */
	if (jint(a, "pid") > 0)
		snprintf(pid, sizeof(pid), "%lld", jint(a, "pid"));
	else
		snprintf(pid, sizeof(pid), "-");
	fmt_dur(up, sizeof(up), jint(a, "since_s"));
	snprintf(rc, sizeof(rc), "%lld", jint(a, "reconnects"));
	snprintf(ch, sizeof(ch), "%lld", jint(a, "channels"));
	ctlclient_bytes(rx, sizeof(rx), (double)jint(a, "rx_bytes"));
	ctlclient_bytes(tx, sizeof(tx), (double)jint(a, "tx_bytes"));
	put(y, 0, AGENT_FMT, jstr(a, "cluster"), jstr(a, "dial_addr"), proxy,
	    jstr(a, "state"), pid, up, rc, ch, rx, tx, jstr(a, "last_error"));
	if (t->color && y < LINES - 1 && COLS > STATE_COL)
		mvchgat(y, STATE_COL, 12, A_BOLD,
		    state_pair(jstr(a, "state")), NULL);
}

/* Fits the scroll position and t->rows to n rows drawn from line y. */
static void
fit_scroll(struct top *t, int y, int n)
{
	t->rows = LINES - 1 - y > 1 ? LINES - 1 - y : 1;
	if (t->scroll > n - t->rows)
		t->scroll = n - t->rows;
	if (t->scroll < 0)
		t->scroll = 0;
}

static void
draw_agents(struct top *t, int y)
{
	json_t *agents = json_object_get(t->st, "agents");
	int n = (int)json_array_size(agents);

	put(y++, A_REVERSE, AGENT_FMT, "CLUSTER", "DIAL ADDR", "PROXY", "STATE",
	    "PID", "UPTIME", "RECONNECTS", "CHANNELS", "RX", "TX", "LAST ERROR");
	fit_scroll(t, y, n);
	for (int i = t->scroll; i < n && i < t->scroll + t->rows; i++)
		draw_agent(t, json_array_get(agents, (size_t)i), y++);
}

/* Rows of the wanted-set table: every cluster's entries, in order. */
static int
wanted_rows(const struct top *t)
{
	json_t *c;
	size_t i;
	int n = 0;

	json_array_foreach(json_object_get(t->st, "clusters"), i, c)
		n += (int)json_array_size(json_object_get(c, "wanted"));
	return n;
}

static void
draw_wanted_row(json_t *c, json_t *w, int y)
{
	char age[24], since[24];
	const char *fp = jstr(w, "host_key");

	if (strncmp(fp, "SHA256:", 7) == 0)
		fp += 7;
	fmt_dur(age, sizeof(age), jint(w, "age_s"));
	fmt_dur(since, sizeof(since), jint(w, "since_s"));
	put(y, 0, WANTED_FMT, jstr(c, "name"), jstr(w, "dial_addr"),
	    jstr(w, "name"), fp,
	    json_is_true(json_object_get(w, "claimed")) ? "yes" : "no",
	    json_is_true(json_object_get(w, "current")) ? "yes" : "no",
	    jstr(w, "source"), age, since);
}

/* The wanted set, as status --json has it: what the pool dials for. */
static void
draw_wanted(struct top *t, int y)
{
	json_t *c, *w;
	size_t i, j;
	int row = 0;

	put(y++, A_REVERSE, WANTED_FMT, "CLUSTER", "DIAL ADDR", "PROXY",
	    "HOST KEY", "CLAIMED", "CURRENT", "SOURCE", "AGE", "SINCE");
	fit_scroll(t, y, wanted_rows(t));
	json_array_foreach(json_object_get(t->st, "clusters"), i, c)
		json_array_foreach(json_object_get(c, "wanted"), j, w) {
			if (row >= t->scroll && row < t->scroll + t->rows)
				draw_wanted_row(c, w, y++);
			row++;
		}
}

/* The footer says when the shown document is older than two refreshes. */
static void
draw_footer(const struct top *t)
{
	int n = t->wanted ? wanted_rows(t) :
	    (int)json_array_size(json_object_get(t->st, "agents"));
	uint64_t age = (tp_now_ms() - t->last_ms) / 1000;
	char stale[48] = "";

	if (age >= STALE_S)
		snprintf(stale, sizeof(stale), "   NO UPDATE FOR %llus",
		    (unsigned long long)age);
	attron(A_REVERSE);
	mvhline(LINES - 1, 0, ' ', COLS);
	mvprintw(LINES - 1, 0, " q quit  w %s  j/k/arrows/PgUp/PgDn scroll   "
	    "%s %d-%d of %d%s", t->wanted ? "agents" : "wanted set",
	    t->wanted ? "wanted" : "agents", n > 0 ? t->scroll + 1 : 0,
	    t->scroll + t->rows < n ? t->scroll + t->rows : n, n, stale);
	attroff(A_REVERSE);
}

static void
draw(struct top *t)
{
	int y;

	erase();
	y = draw_clusters(t, draw_header(t, 0) + 1) + 1;
	if (t->wanted)
		draw_wanted(t, y);
	else
		draw_agents(t, y);
	draw_footer(t);
	refresh();
}

/* --- terminal --------------------------------------------------------------------- */

static void
screen_init(struct top *t)
{
	setlocale(LC_ALL, "");
	initscr();
	cbreak();
	noecho();
	nonl();
	curs_set(0);
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	if ((t->color = has_colors())) {
		start_color();
		use_default_colors();
		init_pair(PAIR_UP, COLOR_GREEN, -1);
		init_pair(PAIR_BUSY, COLOR_YELLOW, -1);
		init_pair(PAIR_DOWN, COLOR_RED, -1);
	}
}

/* Handles every pending key; returns 1 when the operator quits. */
static int
keys(struct top *t)
{
	int ch;

	while ((ch = getch()) != ERR) {
		switch (ch) {
		case 'q': case 'Q':
			return 1;
		case 'w': case 'W':
			t->wanted = !t->wanted;
			t->scroll = 0;
			break;
		case 'k': case KEY_UP:		t->scroll--; break;
		case 'j': case KEY_DOWN:	t->scroll++; break;
		case KEY_PPAGE:			t->scroll -= t->rows; break;
		case KEY_NPAGE: case ' ':	t->scroll += t->rows; break;
		case 'g': case KEY_HOME:	t->scroll = 0; break;
		case 'G': case KEY_END:		t->scroll = 1 << 30; break;
		case 12:			clearok(curscr, TRUE); break;
		default:			break;	/* KEY_RESIZE too */
		}
	}
	return 0;
}

/* Returns 0 when the operator quits, -1 (err set) when the stream ends. */
static int
top_loop(struct top *t, char *err, size_t errlen)
{
	struct pollfd p[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
	    { .fd = t->fd, .events = POLLIN } };
	int eof;

	for (draw(t);; draw(t)) {
		p[0].revents = p[1].revents = 0;
		/* Wakes every second to age the footer if documents stop. */
		if (poll(p, 2, 1000) < 0 && errno != EINTR) {
			snprintf(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		if (keys(t) != 0 || (p[0].revents & (POLLHUP | POLLERR)))
			return 0;
		if (p[1].revents == 0)
			continue;
		eof = top_fill(t) < 0;
		if (top_take_lines(t, err, errlen) != 0)
			return -1;
		if (eof) {
			snprintf(err, errlen, "the supervisor closed the "
			    "connection");
			return -1;
		}
	}
}

int
top_main(const char *path)
{
	struct top t = { .fd = -1, .spawn_rate = -1, .msg_rate = -1 };
	char err[512] = "";

	if ((t.fd = ctlclient_connect(path)) < 0)
		return 1;
	if (top_subscribe(&t, err, sizeof(err)) == 0) {
		if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
			snprintf(err, sizeof(err), "top needs a terminal "
			    "(use `tunnelpool status` in scripts)");
		else {
			screen_init(&t);
			(void)top_loop(&t, err, sizeof(err));
			endwin();
		}
	}
	close(t.fd);
	json_decref(t.st);
	free(t.buf);
	if (err[0] == '\0')
		return 0;
	fprintf(stderr, "tunnelpool: %s\n", err);
	return 1;
}
