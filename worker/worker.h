/*
 * tunnelpool-agent: one SSH session to one proxy, sandboxed, driven by the
 * supervisor over fd 3 (control, SOCK_SEQPACKET), authenticating through
 * fd 4 (ssh-agent protocol) over fd 5 (the proxy socket the supervisor
 * connected); the numbers are proto/workerfd.h's.  See docs/worker.md.
 */
#ifndef TP_WORKER_WORKER_H
#define TP_WORKER_WORKER_H

/*
 * Runs the worker: argv is "tunnelpool-agent CLUSTER DIALADDR".  Never
 * returns; the exit code is one of proto/exitcode.h.
 */
int worker_main(int argc, char **argv) __attribute__((noreturn));

#endif
