/*
 * The worker's descriptors at exec: part of the contract.  The supervisor
 * (supervisor/spawn.c) dup2()s them to these numbers and closes everything
 * above; the worker checks them at start and keeps only 0..WORKER_FD_PROXY
 * through its demotion (worker/demote.h).  0 is /dev/null, 1 /dev/null, 2
 * the log pipe the supervisor relays.
 */
#ifndef TP_PROTO_WORKERFD_H
#define TP_PROTO_WORKERFD_H

#define WORKER_FD_CONTROL	3	/* SOCK_SEQPACKET: proto/msg.h messages */
#define WORKER_FD_AGENT		4	/* SOCK_STREAM: ssh-agent protocol */
#define WORKER_FD_PROXY		5	/* SOCK_STREAM: the connected proxy */

#endif
