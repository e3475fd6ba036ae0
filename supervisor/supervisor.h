/* The supervisor role: `tunnelpool run`. */
#ifndef TP_SUPERVISOR_SUPERVISOR_H
#define TP_SUPERVISOR_SUPERVISOR_H

#include "common/log.h"

struct sup;

struct supervisor_opts {
	const char	*config_path;
	int		 log_format_set;	/* --log-format given */
	enum log_format	 log_format;
	int		 log_level_set;
	enum log_level	 log_level;
};

/* Runs the supervisor in the foreground until SIGTERM/SIGINT; returns the exit code. */
int supervisor_main(const struct supervisor_opts *opts);

/* Asks for a pool tick as soon as possible (after worker events). */
void sup_kick(struct sup *sup);
/* Re-reads the main file and the tunnel files; keeps the old state on error. */
int sup_reload(struct sup *sup);
/* Builds the desired set from the tunnel cache and diffs the pool against it. */
void sup_sync(struct sup *sup);

#endif
