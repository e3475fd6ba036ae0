/*
 * Bounded reader and growable writer for the SSH wire encoding (RFC 4251
 * section 5): byte, uint32, uint64, string, mpint.  Used by the signer
 * (ssh-agent protocol, userauth blobs, private keys) and by the worker's
 * host-certificate check.  Every read is bounds-checked and returns a
 * tp_err code; nothing here allocates on the read side.
 */
#ifndef TP_SSHBUF_H
#define TP_SSHBUF_H

#include <stddef.h>
#include <stdint.h>

struct sshbuf_reader {
	const uint8_t	*p;
	size_t		 len;	/* bytes left */
};

void sshbuf_reader_init(struct sshbuf_reader *r, const uint8_t *p, size_t len);
/* Each returns 0 or TP_ETRUNC (nothing consumed on error). */
int sshbuf_get_u8(struct sshbuf_reader *r, uint8_t *v);
int sshbuf_get_u32(struct sshbuf_reader *r, uint32_t *v);
int sshbuf_get_u64(struct sshbuf_reader *r, uint64_t *v);
/* A length-prefixed string; *p points into the buffer (not NUL-terminated). */
int sshbuf_get_string(struct sshbuf_reader *r, const uint8_t **p, size_t *len);
/* As get_string, but the string must equal the NUL-terminated s; TP_EPROTO if not. */
int sshbuf_expect_cstring(struct sshbuf_reader *r, const char *s);
int sshbuf_get_bytes(struct sshbuf_reader *r, const uint8_t **p, size_t n);

struct sshbuf_writer {
	uint8_t	*p;
	size_t	 len;
	size_t	 cap;
	size_t	 max;	/* hard limit; 0 = 1 MiB */
	int	 err;	/* sticky: first error wins */
};

void sshbuf_writer_init(struct sshbuf_writer *w, size_t max);
void sshbuf_put_u8(struct sshbuf_writer *w, uint8_t v);
void sshbuf_put_u32(struct sshbuf_writer *w, uint32_t v);
void sshbuf_put_u64(struct sshbuf_writer *w, uint64_t v);
void sshbuf_put_string(struct sshbuf_writer *w, const void *p, size_t len);
void sshbuf_put_cstring(struct sshbuf_writer *w, const char *s);
void sshbuf_put_bytes(struct sshbuf_writer *w, const void *p, size_t len);
/* Returns w->err (0, TP_ENOMEM or TP_ETOOBIG). */
int sshbuf_writer_error(const struct sshbuf_writer *w);
/* Frees the buffer (zeroing it first: it may hold key material). */
void sshbuf_writer_free(struct sshbuf_writer *w);

#endif
