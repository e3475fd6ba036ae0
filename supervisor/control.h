/*
 * The control socket: AF_UNIX stream, newline-delimited JSON requests and
 * answers (docs/operators.md).  Peers are checked with SO_PEERCRED: root, or
 * members of control_group.
 */
#ifndef TP_SUPERVISOR_CONTROL_H
#define TP_SUPERVISOR_CONTROL_H

struct sup;
struct control;

/* Binds the socket of sup->cfg; returns NULL (logged) on failure. */
struct control *control_new(struct sup *sup);
/* Closes every client and removes the socket file; NULL allowed. */
void control_free(struct control *ctl);

#endif
