/*
 * `tunnelpool top`: a live terminal view of a running supervisor, fed by
 * the control socket's "top" stream (one status document per second).
 */
#ifndef TP_SUPERVISOR_TOP_H
#define TP_SUPERVISOR_TOP_H

/*
 * Connects to the control socket at path, subscribes and shows the view
 * until the operator presses q.  Returns the exit code: 0 after q, 1 (with
 * a message on stderr) when the supervisor is not running, refuses us,
 * goes away, or when stdin/stdout is not a terminal.
 */
int top_main(const char *path);

#endif
