/*
 * tunnelpool-top: the terminal view of `tunnelpool top` (top.c), a binary
 * of its own so that only it links ncurses; the daemon does not.
 * `tunnelpool top` finds the control socket (-s, or the configuration's
 * control_socket) and execs this with the command line
 *
 *	tunnelpool top -s SOCKET
 *
 * (its own argv[0], so that ps shows what the operator typed).  By hand
 * it takes the same, with or without the "top".
 */
#include <stdio.h>
#include <string.h>

#include "top.h"

int
main(int argc, char **argv)
{
	int i = 1;

	if (i < argc && strcmp(argv[i], "top") == 0)
		i++;
	if (argc - i != 2 || strcmp(argv[i], "-s") != 0) {
		fprintf(stderr, "usage: tunnelpool-top [top] -s SOCKET "
		    "(run by `tunnelpool top`)\n");
		return 2;
	}
	return top_main(argv[i + 1]);
}
