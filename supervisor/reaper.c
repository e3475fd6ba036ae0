/*
 * Reaper: SIGCHLD arrives as a libevent signal event; the handler reaps
 * until no child is left, so no zombie survives a burst of exits.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>

#include "common/log.h"
#include "child.h"
#include "reaper.h"
#include "sup.h"
#include "supervisor.h"

void
reaper_run(struct sup *sup)
{
	int status, n = 0;
	pid_t pid;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid == 0)
			break;
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;		/* ECHILD: nothing left */
		}
		if (!child_reaped(sup, pid, status))
			log_debug("reaped unknown child %ld", (long)pid);
		n++;
	}
	if (n > 0)
		sup_kick(sup);
}
