#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "error.h"
#include "sshbuf.h"

#define SSHBUF_DEFAULT_MAX	(1024 * 1024)

void
sshbuf_reader_init(struct sshbuf_reader *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = len;
}

int
sshbuf_get_bytes(struct sshbuf_reader *r, const uint8_t **p, size_t n)
{
	if (r->len < n)
		return TP_ETRUNC;
	*p = r->p;
	r->p += n;
	r->len -= n;
	return 0;
}

int
sshbuf_get_u8(struct sshbuf_reader *r, uint8_t *v)
{
	const uint8_t *p;
	int rc;

	if ((rc = sshbuf_get_bytes(r, &p, 1)) != 0)
		return rc;
	*v = p[0];
	return 0;
}

int
sshbuf_get_u32(struct sshbuf_reader *r, uint32_t *v)
{
	const uint8_t *p;
	int rc;

	if ((rc = sshbuf_get_bytes(r, &p, 4)) != 0)
		return rc;
	*v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
	return 0;
}

int
sshbuf_get_u64(struct sshbuf_reader *r, uint64_t *v)
{
	uint32_t hi, lo;
	struct sshbuf_reader save = *r;
	int rc;

	if ((rc = sshbuf_get_u32(r, &hi)) != 0 ||
	    (rc = sshbuf_get_u32(r, &lo)) != 0) {
		*r = save;
		return rc;
	}
	*v = (uint64_t)hi << 32 | lo;
	return 0;
}

int
sshbuf_get_string(struct sshbuf_reader *r, const uint8_t **p, size_t *len)
{
	struct sshbuf_reader save = *r;
	uint32_t n;
	int rc;

	if ((rc = sshbuf_get_u32(r, &n)) != 0)
		return rc;
	if ((rc = sshbuf_get_bytes(r, p, n)) != 0) {
		*r = save;
		return rc;
	}
	*len = n;
	return 0;
}

int
sshbuf_expect_cstring(struct sshbuf_reader *r, const char *s)
{
	struct sshbuf_reader save = *r;
	const uint8_t *p;
	size_t n;
	int rc;

	if ((rc = sshbuf_get_string(r, &p, &n)) != 0)
		return rc;
	if (n != strlen(s) || memcmp(p, s, n) != 0) {
		*r = save;
		return TP_EPROTO;
	}
	return 0;
}

void
sshbuf_writer_init(struct sshbuf_writer *w, size_t max)
{
	memset(w, 0, sizeof(*w));
	w->max = max != 0 ? max : SSHBUF_DEFAULT_MAX;
}

/* Grows the buffer; the old contents are wiped, not left in freed memory. */
static int
sshbuf_reserve(struct sshbuf_writer *w, size_t n)
{
	size_t ncap;
	uint8_t *np;

	if (w->err != 0)
		return w->err;
	if (n > w->max || w->len > w->max - n)
		return (w->err = TP_ETOOBIG);
	if (w->len + n <= w->cap)
		return 0;
	for (ncap = w->cap ? w->cap : 256; ncap < w->len + n; ncap *= 2)
		;
	if ((np = malloc(ncap)) == NULL)
		return (w->err = TP_ENOMEM);
	if (w->p != NULL) {
		memcpy(np, w->p, w->len);
		OPENSSL_cleanse(w->p, w->cap);
		free(w->p);
	}
	w->p = np;
	w->cap = ncap;
	return 0;
}

void
sshbuf_put_bytes(struct sshbuf_writer *w, const void *p, size_t len)
{
	if (sshbuf_reserve(w, len) != 0)
		return;
	if (len > 0)
		memcpy(w->p + w->len, p, len);
	w->len += len;
}

void
sshbuf_put_u8(struct sshbuf_writer *w, uint8_t v)
{
	sshbuf_put_bytes(w, &v, 1);
}

void
sshbuf_put_u32(struct sshbuf_writer *w, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };

	sshbuf_put_bytes(w, b, sizeof(b));
}

void
sshbuf_put_u64(struct sshbuf_writer *w, uint64_t v)
{
	sshbuf_put_u32(w, (uint32_t)(v >> 32));
	sshbuf_put_u32(w, (uint32_t)v);
}

void
sshbuf_put_string(struct sshbuf_writer *w, const void *p, size_t len)
{
	if (len > UINT32_MAX) {
		if (w->err == 0)
			w->err = TP_ETOOBIG;
		return;
	}
	sshbuf_put_u32(w, (uint32_t)len);
	sshbuf_put_bytes(w, p, len);
}

void
sshbuf_put_cstring(struct sshbuf_writer *w, const char *s)
{
	sshbuf_put_string(w, s, strlen(s));
}

int
sshbuf_writer_error(const struct sshbuf_writer *w)
{
	return w->err;
}

void
sshbuf_writer_free(struct sshbuf_writer *w)
{
	if (w->p != NULL) {
		OPENSSL_cleanse(w->p, w->cap);
		free(w->p);
	}
	memset(w, 0, sizeof(*w));
}
