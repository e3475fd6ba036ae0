/*
 * libFuzzer harness for the signer's request path (signer_handle): every
 * byte a compromised worker can put in an ssh-agent request body.
 *
 * The key and certificate below are throwaway test material made with
 * ssh-keygen for this harness only (user "tunnel"); the seeds in
 * tests/fuzz/corpus/agent/ are valid requests for them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/sshbuf.h"
#include "supervisor/signer.h"
#include "supervisor/sshkey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_key[] =
	"-----BEGIN OPENSSH PRIVATE KEY-----\n"
	"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
	"QyNTUxOQAAACBuNEHGTRVM9xDSn91I1gFeW1jB2Ikq8nkbwKFJcT8bTAAAAIg4NDCLODQw\n"
	"iwAAAAtzc2gtZWQyNTUxOQAAACBuNEHGTRVM9xDSn91I1gFeW1jB2Ikq8nkbwKFJcT8bTA\n"
	"AAAECWikavf7yDAmw+S7LMiM0z/QMPQwIpVgsy6+tmTJL3s240QcZNFUz3ENKf3UjWAV5b\n"
	"WMHYiSryeRvAoUlxPxtMAAAABGZ1enoB\n"
	"-----END OPENSSH PRIVATE KEY-----\n";

static const char fuzz_cert[] =
	"ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjA"
	"xQG9wZW5zc2guY29tAAAAIO4PP9kJxcIvFOhCiExTRly/3UAfIRQFL6dqq/CmpBI"
	"xAAAAIG40QcZNFUz3ENKf3UjWAV5bWMHYiSryeRvAoUlxPxtMAAAAAAAAAAAAAAA"
	"BAAAABGZ1enoAAAAKAAAABnR1bm5lbAAAAAAAAAAA//////////8AAAAAAAAAggA"
	"AABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J"
	"3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJ"
	"taXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2g"
	"tZWQyNTUxOQAAACC6EK+RHcquZlmYigTWHI51/yw41hLTKNWbtCPq01UDcQAAAFM"
	"AAAALc3NoLWVkMjU1MTkAAABAG/ucwuozl9hK6ZgIP7Ct/TJ8oN7yhVjgb8+siQG"
	"FthBu5AwxO8eS/ukEoxWASsE170Z6V6sRrDw7g/U2p1qUAg== fuzz";

static struct signer *
fuzz_signer(void)
{
	static struct signer *s;
	struct sshkey *key;

	if (s != NULL)
		return s;
	/* Refusals are the common case here: keep them off the terminal. */
	log_init("fuzz_agent", LOG_LVL_ERROR, LOG_FMT_LOGFMT, 2);
	if (sshkey_parse(fuzz_key, sizeof(fuzz_key) - 1, "fuzz_key", &key,
	    NULL, 0) != 0 ||
	    sshkey_parse_cert(key, fuzz_cert, "fuzz_cert", NULL, 0) != 0 ||
	    (s = signer_new(key, "tunnel")) == NULL)
		abort();
	return s;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct signer *s = fuzz_signer();
	struct sshbuf_writer reply;
	uint64_t refused = signer_refusals(s);
	int rc;

	sshbuf_writer_init(&reply, SIGNER_REPLY_MAX);
	rc = signer_handle(s, data, size, &reply);
	/* The contract: one reply; FAILURE exactly when refused. */
	if (sshbuf_writer_error(&reply) != 0 || reply.len == 0)
		abort();
	if ((rc != 0) != (reply.p[0] == SSH_AGENT_FAILURE))
		abort();
	if ((rc != 0) != (signer_refusals(s) == refused + 1))
		abort();
	sshbuf_writer_free(&reply);
	return 0;
}
