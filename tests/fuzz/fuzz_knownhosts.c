/* libFuzzer harness: a known_hosts file from memory, then a few lookups. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "supervisor/cfgerr.h"
#include "supervisor/knownhosts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const hosts[] = { "proxy1.example", "10.0.0.1",
	    "a.wild.example", "hashed.example" };
	struct knownhosts *kh = NULL;
	struct cfg_errors e;
	struct kh_result r;
	size_t i;

	cfg_errors_init(&e);
	if (knownhosts_parse_buffer("fuzz", (const char *)data, size, &kh,
	    &e) == 0) {
		for (i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
			if (knownhosts_lookup(kh, hosts[i], 22, &r) == 0)
				kh_result_free(&r);
			if (knownhosts_lookup(kh, hosts[i], 2222, &r) == 0)
				kh_result_free(&r);
		}
	}
	knownhosts_free(kh);
	cfg_errors_free(&e);
	return 0;
}
