/*
 * tunnelpool: the supervisor (`run`) and the operator subcommands.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "common/error.h"
#include "common/log.h"
#include "common/proctitle.h"
#include "cfgread.h"
#include "checkconfig.h"
#include "config.h"
#include "ctlclient.h"
#include "firstrun.h"
#include "supervisor.h"
#include "proto/msg.h"

#define DEFAULT_CONFIG	"/etc/tunnelpool/tunnelpool.yaml"

static void
usage(void)
{
	fprintf(stderr,
	    "usage: tunnelpool run [-c FILE] [--log-format logfmt|json] "
	    "[--log-level LEVEL]\n"
	    "       tunnelpool check-config [-c FILE]\n"
	    "       tunnelpool status [--json] [-s SOCKET | -c FILE]\n"
	    "       tunnelpool top [-s SOCKET | -c FILE]\n"
	    "       tunnelpool reload [-s SOCKET | -c FILE]\n"
	    "       tunnelpool close (--pid PID | CLUSTER DIALADDR) "
	    "[-s SOCKET | -c FILE]\n"
	    "       tunnelpool version\n");
	exit(2);
}

struct args {
	const char	*config;
	const char	*socket;
	int		 json;
	long		 pid;
	struct supervisor_opts sopts;
};

static void
parse(int argc, char **argv, struct args *a)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "pid", required_argument, NULL, 'p' },
		{ "log-format", required_argument, NULL, 'F' },
		{ "log-level", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	a->config = DEFAULT_CONFIG;
	while ((ch = getopt_long(argc, argv, "c:s:j", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': a->config = optarg; break;
		case 's': a->socket = optarg; break;
		case 'j': a->json = 1; break;
		case 'p': a->pid = strtol(optarg, NULL, 10); break;
		case 'F':
			if (log_parse_format(optarg, &a->sopts.log_format) != 0)
				usage();
			a->sopts.log_format_set = 1;
			break;
		case 'L':
			if (log_parse_level(optarg, &a->sopts.log_level) != 0)
				usage();
			a->sopts.log_level_set = 1;
			break;
		default: usage();
		}
	}
	a->sopts.config_path = a->config;
}

/* The control socket: -s, else the config file's control_socket. */
static const char *
socket_path(struct args *a)
{
	struct cfg_errors errs = { 0 };
	struct config *cfg = NULL;
	static char path[256];
	char *buf = NULL;
	size_t len;

	if (a->socket != NULL)
		return a->socket;
	snprintf(path, sizeof(path), "/run/tunnelpool/control.sock");
	/* Only the socket path is wanted: referenced files are not checked. */
	if (cfg_read_file(a->config, 1024 * 1024, &buf, &len, &errs) == 0 &&
	    config_parse_buffer(a->config, buf, len, NULL, CONFIG_NO_FS_CHECKS,
	    &cfg, &errs) == 0)
		snprintf(path, sizeof(path), "%s", cfg->control_socket);
	config_free(cfg);
	free(buf);
	cfg_errors_free(&errs);
	return path;
}

/* A path `run` would create is a note; any other refusal an error (1). */
static int
first_run_note(int rc, const char *msg, char notes[][FR_LINE_MAX],
    size_t *nnotes)
{
	if (rc == TP_ENOENT) {
		snprintf(notes[(*nnotes)++], FR_LINE_MAX, "%s", msg);
		return 0;
	}
	if (rc != 0) {
		fprintf(stderr, "%s\n", msg);
		return 1;
	}
	return 0;
}

/*
 * What `run` would create or refuse before its first worker (firstrun.c),
 * checked without changing anything.  Refusals are errors (as for `run`);
 * what `run` creates is a note, printed only when nothing is wrong.
 */
static int
check_first_run(const struct config *cfg, char notes[][FR_LINE_MAX],
    size_t *nnotes)
{
	char msg[FR_LINE_MAX];
	int bad = 0, rc;

	*nnotes = 0;
	if (firstrun_worker_user(cfg->worker.user, cfg->worker.allow_root,
	    NULL, NULL, msg, sizeof(msg)) != 0) {
		fprintf(stderr, "%s\n", msg);
		bad = 1;
	}
	rc = firstrun_empty_root(cfg->worker.empty_root, FR_CHECK, msg,
	    sizeof(msg));
	bad |= first_run_note(rc, msg, notes, nnotes);
	rc = firstrun_runtime_dir(cfg->control_socket, FR_CHECK, msg,
	    sizeof(msg));
	bad |= first_run_note(rc, msg, notes, nnotes);
	if (cfg->etcd.enabled) {
		rc = firstrun_state_dir(cfg->state_dir, FR_CHECK, msg,
		    sizeof(msg));
		bad |= first_run_note(rc, msg, notes, nnotes);
	}
	return bad;
}

static int
cmd_check_config(struct args *a)
{
	struct config_defaults defs = { .worker_path = TP_WORKER_PATH };
	struct cfg_errors errs = { 0 };
	struct config *cfg = NULL;
	char notes[3][FR_LINE_MAX];
	size_t ntunnels = 0, nnotes = 0;
	int rc;

	rc = config_check_all(a->config, &defs, &cfg, &ntunnels, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	if (cfg != NULL && check_first_run(cfg, notes, &nnotes) != 0)
		rc = TP_EINVAL;
	if (rc == 0) {
		config_print(cfg, stdout);
		for (size_t i = 0; i < nnotes; i++)
			fprintf(stderr, "note: %s\n", notes[i]);
		fprintf(stderr, "%s: ok (%zu tunnels)\n", a->config, ntunnels);
	}
	config_free(cfg);
	cfg_errors_free(&errs);
	return rc == 0 ? 0 : 1;
}

/*
 * `tunnelpool top`: the terminal view is a binary of its own (only it
 * links ncurses; topmain.c), run with the socket found here.  The one
 * beside this binary when there is one (a build tree), else the
 * installed one.
 */
static int
cmd_top(const char *argv0, const char *sock)
{
	char *const args[] = { (char *)argv0, "top", "-s", (char *)sock, NULL };
	char self[PATH_MAX], path[PATH_MAX + 16], *slash;
	ssize_t n;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL) {
			*slash = '\0';
			snprintf(path, sizeof(path), "%s/tunnelpool-top", self);
			if (access(path, X_OK) == 0)
				execv(path, args);
		}
	}
	execv(TP_TOP_PATH, args);
	fprintf(stderr, "tunnelpool: cannot run %s: %s\n", TP_TOP_PATH,
	    strerror(errno));
	return 1;
}

static int
simple_call(const char *path, json_t *req)
{
	json_t *ans = ctlclient_call(path, req);
	int ok;

	json_decref(req);
	if (ans == NULL)
		return 1;
	ok = json_is_true(json_object_get(ans, "ok"));
	if (!ok)
		fprintf(stderr, "tunnelpool: %s\n",
		    json_string_value(json_object_get(ans, "error")));
	else if (json_object_get(ans, "version") != NULL)
		printf("tunnelpool %s (supervisor), protocol %lld\n",
		    json_string_value(json_object_get(ans, "version")),
		    json_integer_value(json_object_get(ans, "protocol")));
	json_decref(ans);
	return ok ? 0 : 1;
}

int
main(int argc, char **argv)
{
	struct args a = { 0 };
	const char *cmd;

	if (argc < 2)
		usage();
	cmd = argv[1];
	if (strcmp(cmd, "run") == 0 && proctitle_init(argc, argv) != 0)
		return 1;
	parse(argc - 1, argv + 1, &a);
	log_init("tunnelpool", LOG_LVL_INFO, LOG_FMT_LOGFMT, 2);
	/* The lease-break signal of cfg_read_file: its default kills. */
	signal(SIGIO, SIG_IGN);
	if (strcmp(cmd, "run") == 0)
		return supervisor_main(&a.sopts);
	if (strcmp(cmd, "check-config") == 0)
		return cmd_check_config(&a);
	if (strcmp(cmd, "status") == 0)
		return ctlclient_status(socket_path(&a), a.json);
	if (strcmp(cmd, "top") == 0)
		return cmd_top(argv[0], socket_path(&a));
	if (strcmp(cmd, "reload") == 0)
		return simple_call(socket_path(&a), json_pack("{s:s}", "cmd",
		    "reload"));
	if (strcmp(cmd, "version") == 0) {
		printf("tunnelpool %s, protocol %d\n", TP_VERSION, PROTO_VERSION);
		return 0;
	}
	if (strcmp(cmd, "close") == 0) {
		argc -= optind + 1;
		argv += optind + 1;
		if (a.pid > 0)
			return simple_call(socket_path(&a), json_pack(
			    "{s:s,s:I}", "cmd", "close", "pid", (json_int_t)a.pid));
		if (argc != 2)
			usage();
		return simple_call(socket_path(&a), json_pack("{s:s,s:s,s:s}",
		    "cmd", "close", "cluster", argv[0], "dial_addr", argv[1]));
	}
	usage();
}
