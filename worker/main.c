/* tunnelpool-agent: see worker/worker.c. */
#include "worker/worker.h"

int
main(int argc, char **argv)
{
	worker_main(argc, argv);
}
