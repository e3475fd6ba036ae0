/* libFuzzer harness: one tunnel file (all its documents), from memory. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "supervisor/cfgerr.h"
#include "supervisor/tunneldoc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tunnel_list l = { NULL, 0, 0 };
	struct cfg_errors e;
	size_t i;

	cfg_errors_init(&e);
	if (tunnel_parse_buffer("fuzz.yaml", (const char *)data, size, &l,
	    &e) != cfg_errors_count(&e))
		abort();
	for (i = 0; i < l.n; i++)
		if (l.v[i].n_dial_addrs == 0 ||
		    l.v[i].n_dial_addrs > TUNNEL_MAX_DIAL_ADDRS ||
		    l.v[i].n_forwards > TUNNEL_MAX_FORWARDS)
			abort();
	tunnel_list_free(&l);
	cfg_errors_free(&e);
	return 0;
}
