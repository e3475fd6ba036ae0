/*
 * libFuzzer harness: the main configuration parser, from memory, without
 * looking at the files it names.  A parsed configuration is also printed
 * and parsed again, which must succeed.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "supervisor/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct config_defaults def = { "/usr/libexec/agent" };
	struct config *cfg = NULL, *again = NULL;
	struct cfg_errors e;
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	cfg_errors_init(&e);
	if (config_parse_buffer("fuzz.yaml", (const char *)data, size, &def,
	    CONFIG_NO_FS_CHECKS, &cfg, &e) == 0) {
		if ((f = open_memstream(&text, &len)) == NULL)
			abort();
		config_print(cfg, f);
		fclose(f);
		if (config_parse_buffer("printed.yaml", text, len, &def,
		    CONFIG_NO_FS_CHECKS, &again, &e) != 0)
			abort();	/* what we print must parse again */
		config_free(again);
		free(text);
	}
	config_free(cfg);
	cfg_errors_free(&e);
	return 0;
}
