/*
 * tunnelpool-agent: one SSH session to one proxy, sandboxed, driven by the
 * supervisor over fd 3 (control, SOCK_SEQPACKET), authenticating through
 * fd 4 (ssh-agent protocol) over fd 5 (the proxy socket the supervisor
 * connected).  See docs/worker.md.
 */
#ifndef TP_WORKER_WORKER_H
#define TP_WORKER_WORKER_H

#define WORKER_FD_CONTROL	3
#define WORKER_FD_AGENT		4
#define WORKER_FD_PROXY		5

/*
 * Runs the worker: argv is "tunnelpool-agent CLUSTER DIALADDR".  Never
 * returns; the exit code is one of proto/exitcode.h.
 */
int worker_main(int argc, char **argv) __attribute__((noreturn));

#endif
