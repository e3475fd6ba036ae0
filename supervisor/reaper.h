#ifndef TP_SUPERVISOR_REAPER_H
#define TP_SUPERVISOR_REAPER_H

struct sup;

/* Reaps every exited child (WNOHANG loop) and tears each down once. */
void reaper_run(struct sup *sup);

#endif
