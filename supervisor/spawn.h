/*
 * Spawner: resolves the dial name, connects non-blocking with a deadline,
 * then forks and execs the worker with its descriptors at the fixed
 * numbers of proto/ (spawn.c).
 */
#ifndef TP_SUP_SPAWN_H
#define TP_SUP_SPAWN_H

struct child;
struct pool_agent;

/*
 * pool_ops.spawn: a new child for agent, dialling.  Returns 0 (a failure
 * from here on tears the child down from a fresh loop turn), or -1 when
 * nothing was started.
 */
int child_spawn(void *sup, struct pool_agent *agent);
/* Stops a child that is still dialling; it is torn down as closed. */
void spawn_cancel(struct child *c);

#endif
