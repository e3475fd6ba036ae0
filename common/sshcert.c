#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sshbuf.h"
#include "sshcert.h"
#include "sshpub.h"

/* The certificate types we know and the plain key type each certifies. */
struct cert_type {
	const char	*name;
	const char	*key_type;
	int		 nfields;	/* public key strings/mpints after nonce */
};

static const struct cert_type cert_types[] = {
	{ "ssh-ed25519" SSHCERT_SUFFIX, "ssh-ed25519", 1 },
	{ "ecdsa-sha2-nistp256" SSHCERT_SUFFIX, "ecdsa-sha2-nistp256", 2 },
	{ "ecdsa-sha2-nistp384" SSHCERT_SUFFIX, "ecdsa-sha2-nistp384", 2 },
	{ "ecdsa-sha2-nistp521" SSHCERT_SUFFIX, "ecdsa-sha2-nistp521", 2 },
	{ "ssh-rsa" SSHCERT_SUFFIX, "ssh-rsa", 2 },
};

static const struct cert_type *
cert_type_lookup(const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(cert_types) / sizeof(cert_types[0]); i++)
		if (n == strlen(cert_types[i].name) &&
		    memcmp(p, cert_types[i].name, n) == 0)
			return &cert_types[i];
	return NULL;
}

/*
 * Checks that p holds only back-to-back strings (principals), or name/data
 * string pairs (options and extensions) when pairs is set, with nothing
 * left over; returns how many strings, or -1.
 */
static int
count_packed(const uint8_t *p, size_t n, int pairs, int max)
{
	struct sshbuf_reader r;
	const uint8_t *s;
	size_t slen;
	int count = 0;

	sshbuf_reader_init(&r, p, n);
	while (r.len > 0) {
		if (count >= max || sshbuf_get_string(&r, &s, &slen) != 0)
			return -1;
		if (pairs && sshbuf_get_string(&r, &s, &slen) != 0)
			return -1;
		count++;
	}
	return count;
}

/* Type name, nonce and the certified public key fields. */
static int
parse_head(struct sshbuf_reader *r, struct sshcert *c)
{
	const struct cert_type *ct;
	const uint8_t *p;
	size_t n;
	int i;

	if (sshbuf_get_string(r, &p, &n) != 0)
		return TP_EPROTO;
	if ((ct = cert_type_lookup(p, n)) == NULL)
		return TP_EUNSUPP;
	c->name = ct->name;
	c->key_type = ct->key_type;
	if (sshbuf_get_string(r, &p, &n) != 0)		/* nonce */
		return TP_EPROTO;
	c->key = r->p;
	for (i = 0; i < ct->nfields; i++)
		if (sshbuf_get_string(r, &p, &n) != 0)
			return TP_EPROTO;
	c->key_len = (size_t)(r->p - c->key);
	return 0;
}

/* Serial through the CA signature; nothing may follow it. */
static int
parse_body(struct sshbuf_reader *r, struct sshcert *c)
{
	const uint8_t *p;
	size_t n;
	uint64_t serial;

	if (sshbuf_get_u64(r, &serial) != 0 ||
	    sshbuf_get_u32(r, &c->type) != 0 ||
	    sshbuf_get_string(r, &c->key_id, &c->key_id_len) != 0 ||
	    sshbuf_get_string(r, &c->principals, &c->principals_len) != 0 ||
	    sshbuf_get_u64(r, &c->valid_after) != 0 ||
	    sshbuf_get_u64(r, &c->valid_before) != 0 ||
	    sshbuf_get_string(r, &c->crit, &c->crit_len) != 0 ||
	    sshbuf_get_string(r, &c->ext, &c->ext_len) != 0 ||
	    count_packed(c->ext, c->ext_len, 1, INT32_MAX) < 0 ||
	    count_packed(c->crit, c->crit_len, 1, INT32_MAX) < 0 ||
	    count_packed(c->principals, c->principals_len, 0,
	    SSHCERT_MAX_PRINCIPALS) < 0 ||
	    sshbuf_get_string(r, &p, &n) != 0 ||		/* reserved */
	    sshbuf_get_string(r, &c->ca, &c->ca_len) != 0)
		return TP_EPROTO;
	c->signed_len = (size_t)(r->p - c->signed_data);
	if (sshbuf_get_string(r, &c->sig, &c->sig_len) != 0 || r->len != 0)
		return TP_EPROTO;
	return 0;
}

int
sshcert_parse(const uint8_t *blob, size_t len, struct sshcert *c)
{
	struct sshbuf_reader r;
	int rc;

	if (c == NULL)
		return TP_EINVAL;
	memset(c, 0, sizeof(*c));
	if (blob == NULL)
		return TP_EINVAL;
	sshbuf_reader_init(&r, blob, len);
	c->signed_data = blob;
	if ((rc = parse_head(&r, c)) != 0)
		return rc;
	return parse_body(&r, c);
}

void
sshcert_put_key(const struct sshcert *c, struct sshbuf_writer *w)
{
	sshbuf_put_cstring(w, c->key_type);
	sshbuf_put_bytes(w, c->key, c->key_len);
}

int
sshcert_verify(const struct sshcert *c)
{
	return sshpub_verify(c->ca, c->ca_len, c->sig, c->sig_len,
	    c->signed_data, c->signed_len);
}

int
sshcert_from_line(const char *line, size_t max, uint8_t **blob, size_t *len)
{
	struct sshbuf_reader r;
	const uint8_t *t;
	size_t tlen;
	int rc;

	if ((rc = sshpub_from_line(line, blob, len)) != 0)
		return rc;
	/* sshpub_from_line checked that the blob starts with a string. */
	sshbuf_reader_init(&r, *blob, *len);
	if (sshbuf_get_string(&r, &t, &tlen) != 0 ||
	    cert_type_lookup(t, tlen) == NULL)
		rc = TP_EUNSUPP;
	else if (*len > max)
		rc = TP_ETOOBIG;
	if (rc != 0) {
		free(*blob);
		*blob = NULL;
		*len = 0;
	}
	return rc;
}
