/*
 * worker/discovery_stream: a good stream in any chunking, every error case
 * with its code, the limits at and over their edges, mutation (bit flips,
 * byte flips, truncations) of valid lines, and the lines the real helper
 * wrote (tests/fuzz/corpus/discovery/good-*, via DISCOVERY_CORPUS).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <openssl/evp.h>

#include "common/error.h"
#include "common/sshpub.h"
#include "worker/discovery_stream.h"
#include "testutil.h"

/* Real keys (ssh-keygen), fingerprints as ssh-keygen -l prints them. */
#define K1	"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDDMoE7cvY9ntF8HlPxvYjizrImCTEh+QAqUioyq8jSw"
#define FP1	"SHA256:uMkWZNIXNHn/HkfJTOgZJBDiH64PASC5H936y9k06Yo"
#define K2	"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILa35ie2seMR/NzkxQwZpVsgPEMfh5ehq7fiX1oJathP"
#define FP2	"SHA256:5Ko2WhC0vzFoaxjOIaSzPpBmjP5xXS5k5iXY/TmhlY8"
#define KRSA	"ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC2828hSXUpEn/IoLTbjjFjzcROB8YKdh1tngHhGcP4SYDbn8kam0cpEIv4uiDz+7whvfvQXHZGWyzVNRc611Sxt+8EQFZrg4svYWuqsToWSLC0cVGqXsnrdp6rAo43qPxuUXWCYOeI8u0d8+IMKgdSjst5Hx32cLNukjmM0ZmF4ZSd1e6ueqSttxSATORYWzRGhxCLS4nf0pd3agiMLmHLDZJsgyogrG0NRorWYjuZQWU8YP2I32XnOfCU1TmVwdJkGu7RH7LTWSd6KWsLBnXffCJL+Wa4XGieej6vcpgWpGrytwzXlSEjp288s0i65FGbBMQ389KRWmBic4RbzYxxg2amE0HNYLNiUDeVZXla4Md9abOiy4HVFZbPPURkQ1HAVzmnXu35rFhky4q4So1uAJ789U7lmraPnHGBeDIy/M4ITRacgA6JbznmUpB5ExHojenXnKDl7Jzt7dSSmAAlmCJqFbssd9gkp3OvXvGAafoMt6c2XFhzYsCpsZTf7kM="
#define FPRSA	"SHA256:UxzfWide2StU5mKmW2mFPALgH2Ah1GZrkjlembouZBo"
/* A host certificate for K1 (ssh-keygen -s ca -h). */
#define CERT	"ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIGUMezzHwbrVrP4T19ncQKUZAyMocqGULt1oKdXSrbpWAAAAIDDMoE7cvY9ntF8HlPxvYjizrImCTEh+QAqUioyq8jSwAAAAAAAAAAAAAAACAAAAB3Byb3h5LTEAAAATAAAAD3Byb3h5LTEuZXhhbXBsZQAAAABrCOAkAAAAAGzowmgAAAAAAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIDPcEn3mH/XQixyb8c/nASThIJSACuB04OXNZy+BRpLzAAAAUwAAAAtzc2gtZWQyNTUxOQAAAEDixz+AiqUHMQ4PkB/IndzEa86tvRlezDWQEoTFS1lT/XGbdrK0NGW1WOVjDlwMr97SpkppTnr2VonvqQ0mVcgG"

#define PX(n, k, f) "{\"name\":\"" n "\",\"host_key\":\"" k "\",\"fp\":\"" f "\"}"
#define SET(seq, body) "{\"type\":\"proxies\",\"seq\":" #seq \
	",\"cluster\":\"prod-eu\",\"proxies\":[" body "]}\n"
#define HB(seq, iv) "{\"type\":\"heartbeat\",\"seq\":" #seq ",\"interval\":" #iv "}\n"
#define CRT(seq, c) "{\"type\":\"cert\",\"seq\":" #seq ",\"cert\":\"" c "\"}\n"

static const char good[] =
    SET(1, PX("proxy-1", K1, FP1) "," PX("proxy-2", K2, FP2) ","
	PX("proxy-rsa", KRSA, FPRSA))
    CRT(2, CERT)
    HB(3, 5)
    "{\"type\":\"future\",\"seq\":4,\"anything\":[1,{\"x\":null}]}\n"
    HB(5, 7);

static const char set_line[] =
    SET(1, PX("proxy-1", K1, FP1) "," PX("proxy-2", K2, FP2));
static const char cert_line[] = CRT(1, CERT);
static const char hb_line[] = HB(1, 5);

/* A readable trace of the events, to compare runs. */
struct rec {
	char	s[8192];
	size_t	len;
	int	n;
};

static void
rec_add(struct rec *r, const char *s)
{
	size_t n = strlen(s);

	ck_assert_uint_lt(r->len + n, sizeof(r->s));
	memcpy(r->s + r->len, s, n + 1);
	r->len += n;
}

static int
record(const struct discovery_event *ev, void *arg)
{
	struct rec *r = arg;
	char t[512], fp[SSHPUB_FP_LEN];
	size_t i;

	r->n++;
	switch (ev->type) {
	case DISCOVERY_EV_PROXIES:
		snprintf(t, sizeof(t), "P%llu:%s:", (unsigned long long)ev->seq,
		    ev->proxies.cluster);
		rec_add(r, t);
		for (i = 0; i < ev->proxies.n; i++) {
			const struct discovery_proxy *p = &ev->proxies.v[i];

			ck_assert_int_eq(sshpub_fingerprint(p->host_key,
			    p->host_key_len, fp, sizeof(fp)), 0);
			ck_assert_str_eq(fp, p->fp);
			snprintf(t, sizeof(t), "%s=%s/%zu/%.11s,", p->name, p->fp,
			    p->host_key_len, p->host_key_line);
			rec_add(r, t);
		}
		break;
	case DISCOVERY_EV_CERT:
		snprintf(t, sizeof(t), "|C%llu:%zu:%.32s", (unsigned long long)ev->seq,
		    ev->cert.len, ev->cert.line);
		rec_add(r, t);
		break;
	case DISCOVERY_EV_HEARTBEAT:
		snprintf(t, sizeof(t), "|H%llu:%u", (unsigned long long)ev->seq,
		    ev->heartbeat.interval);
		rec_add(r, t);
		break;
	default:
		ck_abort_msg("unknown event type %d", ev->type);
	}
	return 0;
}

/* Feeds buf in chunks of chunk bytes (0: random 1..97); returns feed+finish. */
static int
feed_chunked(const char *buf, size_t len, size_t chunk, struct rec *r,
    struct discovery_stream **keep)
{
	struct discovery_stream *ds = discovery_stream_new();
	unsigned seed = 12345;
	size_t off = 0, n;
	int rc = 0;

	ck_assert_ptr_nonnull(ds);
	while (rc == 0 && off < len) {
		seed = seed * 1103515245 + 12345;
		n = chunk ? chunk : 1 + (seed >> 16) % 97;
		if (n > len - off)
			n = len - off;
		rc = discovery_stream_feed(ds, buf + off, n, record, r);
		off += n;
	}
	if (rc == 0)
		rc = discovery_stream_finish(ds);
	if (keep != NULL)
		*keep = ds;
	else
		discovery_stream_free(ds);
	return rc;
}

/* Touches everything an event points to, so ASan sees bad pointers. */
static int
touch(const struct discovery_event *ev, void *arg)
{
	size_t i, sum = 0;

	if (ev->type == DISCOVERY_EV_PROXIES) {
		sum += strlen(ev->proxies.cluster);
		for (i = 0; i < ev->proxies.n; i++) {
			sum += strlen(ev->proxies.v[i].name) +
			    strlen(ev->proxies.v[i].fp) +
			    strlen(ev->proxies.v[i].host_key_line);
			sum += ev->proxies.v[i].host_key[
			    ev->proxies.v[i].host_key_len - 1];
		}
	} else if (ev->type == DISCOVERY_EV_CERT) {
		sum += strlen(ev->cert.line) + ev->cert.blob[ev->cert.len - 1];
	}
	*(size_t *)arg += sum;
	return 0;
}

static int
feed_mutant(const char *buf, size_t len, size_t chunk)
{
	struct discovery_stream *ds = discovery_stream_new();
	size_t off = 0, n, sink = 0;
	int rc = 0;

	while (rc == 0 && off < len) {
		n = len - off < chunk ? len - off : chunk;
		rc = discovery_stream_feed(ds, buf + off, n, touch, &sink);
		off += n;
	}
	if (rc == 0)
		rc = discovery_stream_finish(ds);
	discovery_stream_free(ds);
	ck_assert_int_le(rc, 0);
	return rc;
}

/* Feeds buf in one chunk, checking only that events are well-formed. */
static int
feed_all(const char *buf, size_t len)
{
	return feed_mutant(buf, len, len ? len : 1);
}

static int
feed_str(const char *s)
{
	return feed_all(s, strlen(s));
}

START_TEST(good_one_chunk)
{
	struct discovery_stream *ds;
	struct rec r = { .len = 0 };

	ck_assert_int_eq(feed_chunked(good, strlen(good), strlen(good), &r,
	    &ds), 0);
	ck_assert_int_eq(r.n, 4);
	ck_assert_str_eq(r.s,
	    "P1:prod-eu:"
	    "proxy-1=" FP1 "/51/ssh-ed25519,"
	    "proxy-2=" FP2 "/51/ssh-ed25519,"
	    "proxy-rsa=" FPRSA "/407/ssh-rsa AAA,"
	    "|C2:324:ssh-ed25519-cert-v01@openssh.com"
	    "|H3:5|H5:7");
	ck_assert_uint_eq(discovery_stream_lines(ds), 5);
	ck_assert_str_eq(discovery_stream_errmsg(ds), "");
	discovery_stream_free(ds);
}
END_TEST

START_TEST(good_any_chunking)
{
	struct rec whole = { .len = 0 }, r1 = { .len = 0 }, rr = { .len = 0 };

	ck_assert_int_eq(feed_chunked(good, strlen(good), strlen(good), &whole,
	    NULL), 0);
	ck_assert_int_eq(feed_chunked(good, strlen(good), 1, &r1, NULL), 0);
	ck_assert_int_eq(feed_chunked(good, strlen(good), 0, &rr, NULL), 0);
	ck_assert_str_eq(r1.s, whole.s);
	ck_assert_str_eq(rr.s, whole.s);
}
END_TEST

START_TEST(empty_and_partial)
{
	struct discovery_stream *ds = discovery_stream_new();
	struct rec r = { .len = 0 };

	ck_assert_int_eq(discovery_stream_feed(ds, "", 0, record, &r), 0);
	ck_assert_int_eq(discovery_stream_finish(ds), 0);
	ck_assert_int_eq(discovery_stream_feed(ds, hb_line, 10, record, &r), 0);
	ck_assert_int_eq(discovery_stream_finish(ds), TP_ETRUNC);
	ck_assert_int_eq(r.n, 0);
	discovery_stream_free(ds);
	discovery_stream_free(NULL);
}
END_TEST

/* Each input is a whole stream; the first bad line decides the code. */
static const struct {
	const char	*name;
	const char	*in;
	int		 want;
} bad[] = {
	{ "empty line", "\n", TP_ESYNTAX },
	{ "leading space", " " HB(1, 5), TP_ESYNTAX },
	{ "CRLF", "{\"type\":\"heartbeat\",\"seq\":1,\"interval\":5}\r\n",
	    TP_ESYNTAX },
	{ "array", "[1,2]\n", TP_ESYNTAX },
	{ "bare string", "\"x\"\n", TP_ESYNTAX },
	{ "not JSON", "{type:heartbeat}\n", TP_ESYNTAX },
	{ "two objects", "{\"type\":\"x\",\"seq\":1}{\"a\":1}\n", TP_ESYNTAX },
	{ "NUL byte", "{\"type\":\"x\",\"seq\":1,\"a\":\"\0\"}\n", TP_ESYNTAX },
	{ "escaped NUL", "{\"type\":\"x\",\"seq\":1,\"a\":\"\\u0000\"}\n",
	    TP_ESYNTAX },
	{ "duplicate key", "{\"type\":\"heartbeat\",\"seq\":1,\"seq\":1,"
	    "\"interval\":5}\n", TP_EFIELD },
	{ "no type", "{\"seq\":1,\"interval\":5}\n", TP_EFIELD },
	{ "type number", "{\"type\":1,\"seq\":1}\n", TP_ETYPE },
	{ "no seq", "{\"type\":\"heartbeat\",\"interval\":5}\n", TP_EFIELD },
	{ "seq string", "{\"type\":\"heartbeat\",\"seq\":\"1\",\"interval\":5}\n",
	    TP_ETYPE },
	{ "seq real", "{\"type\":\"heartbeat\",\"seq\":1.0,\"interval\":5}\n",
	    TP_ETYPE },
	{ "seq 0", HB(0, 5), TP_ERANGE },
	{ "seq -1", HB(-1, 5), TP_ERANGE },
	{ "seq huge", HB(99999999999999999999, 5), TP_ESYNTAX },
	{ "seq starts at 2", HB(2, 5), TP_EPROTO },
	{ "seq replay", HB(1, 5) HB(1, 5), TP_EPROTO },
	{ "seq gap", HB(1, 5) HB(3, 5), TP_EPROTO },
	{ "seq gap over unknown type", HB(1, 5)
	    "{\"type\":\"future\",\"seq\":3}\n", TP_EPROTO },
	{ "unknown type without seq", "{\"type\":\"future\"}\n", TP_EFIELD },
	{ "heartbeat no interval", "{\"type\":\"heartbeat\",\"seq\":1}\n",
	    TP_EFIELD },
	{ "heartbeat interval 0", HB(1, 0), TP_ERANGE },
	{ "heartbeat interval 3601", HB(1, 3601), TP_ERANGE },
	{ "heartbeat interval string",
	    "{\"type\":\"heartbeat\",\"seq\":1,\"interval\":\"5\"}\n", TP_ETYPE },
	{ "heartbeat extra field",
	    "{\"type\":\"heartbeat\",\"seq\":1,\"interval\":5,\"x\":1}\n",
	    TP_EFIELD },
	{ "cert missing", "{\"type\":\"cert\",\"seq\":1}\n", TP_EFIELD },
	{ "cert not string", "{\"type\":\"cert\",\"seq\":1,\"cert\":[]}\n",
	    TP_ETYPE },
	{ "cert is a plain key", CRT(1, K1), TP_EPROTO },
	{ "cert with comment", CRT(1, CERT " root@x"), TP_EPROTO },
	{ "cert bad base64", CRT(1, "ssh-ed25519-cert-v01@openssh.com AAA!"),
	    TP_EPROTO },
	{ "cert type mismatch", CRT(1, "ssh-rsa-cert-v01@openssh.com "
	    "AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t"), TP_EPROTO },
	{ "cert extra field", "{\"type\":\"cert\",\"seq\":1,\"cert\":\"" CERT
	    "\",\"ca\":\"x\"}\n", TP_EFIELD },
	{ "set no cluster", "{\"type\":\"proxies\",\"seq\":1,\"proxies\":["
	    PX("a", K1, FP1) "]}\n", TP_EFIELD },
	{ "set cluster number", "{\"type\":\"proxies\",\"seq\":1,\"cluster\":1,"
	    "\"proxies\":[" PX("a", K1, FP1) "]}\n", TP_ETYPE },
	{ "set cluster space", "{\"type\":\"proxies\",\"seq\":1,\"cluster\":"
	    "\"a b\",\"proxies\":[" PX("a", K1, FP1) "]}\n", TP_EPROTO },
	{ "set cluster empty", "{\"type\":\"proxies\",\"seq\":1,\"cluster\":"
	    "\"\",\"proxies\":[" PX("a", K1, FP1) "]}\n", TP_EPROTO },
	{ "set cluster leading dash", "{\"type\":\"proxies\",\"seq\":1,"
	    "\"cluster\":\"-a\",\"proxies\":[" PX("a", K1, FP1) "]}\n",
	    TP_EPROTO },
	{ "set no proxies", "{\"type\":\"proxies\",\"seq\":1,\"cluster\":\"c\"}\n",
	    TP_EFIELD },
	{ "set proxies object", "{\"type\":\"proxies\",\"seq\":1,\"cluster\":"
	    "\"c\",\"proxies\":{}}\n", TP_ETYPE },
	{ "set empty", SET(1, ""), TP_ERANGE },
	{ "set extra field", "{\"type\":\"proxies\",\"seq\":1,\"cluster\":\"c\","
	    "\"proxies\":[" PX("a", K1, FP1) "],\"ttl\":30}\n", TP_EFIELD },
	{ "proxy not object", SET(1, "\"a\""), TP_ETYPE },
	{ "proxy extra field", SET(1, "{\"name\":\"a\",\"host_key\":\"" K1
	    "\",\"fp\":\"" FP1 "\",\"addr\":\"x\"}"), TP_EFIELD },
	{ "proxy no name", SET(1, "{\"host_key\":\"" K1 "\",\"fp\":\"" FP1
	    "\"}"), TP_EFIELD },
	{ "proxy no fp", SET(1, "{\"name\":\"a\",\"host_key\":\"" K1 "\"}"),
	    TP_EFIELD },
	{ "proxy name slash", SET(1, PX("a/b", K1, FP1)), TP_EPROTO },
	{ "proxy name utf-8", SET(1, PX("pr\xc3\xb6xy", K1, FP1)), TP_EPROTO },
	{ "proxy name escape", SET(1, PX("a\\n", K1, FP1)), TP_EPROTO },
	{ "proxy host_key number", SET(1, "{\"name\":\"a\",\"host_key\":1,"
	    "\"fp\":\"" FP1 "\"}"), TP_ETYPE },
	{ "proxy host_key comment", SET(1, PX("a", K1 " root@a", FP1)),
	    TP_EPROTO },
	{ "proxy host_key two spaces", SET(1, PX("a",
	    "ssh-ed25519  AAAAC3NzaC1lZDI1NTE5AAAAIDDMoE7cvY9ntF8HlPxvYjizrImCTEh+QAqUioyq8jSw",
	    FP1)), TP_EPROTO },
	{ "proxy host_key tab", SET(1, PX("a",
	    "ssh-ed25519\\tAAAAC3NzaC1lZDI1NTE5AAAAIDDMoE7cvY9ntF8HlPxvYjizrImCTEh+QAqUioyq8jSw",
	    FP1)), TP_EPROTO },
	{ "proxy host_key type only", SET(1, PX("a", "ssh-ed25519", FP1)),
	    TP_EPROTO },
	{ "proxy host_key is a cert", SET(1, PX("a", CERT, FP1)), TP_EPROTO },
	{ "proxy host_key type mismatch", SET(1, PX("a",
	    "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDDMoE7cvY9ntF8HlPxvYjizrImCTEh+QAqUioyq8jSw",
	    FP1)), TP_EPROTO },
	{ "proxy host_key bad base64", SET(1, PX("a",
	    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDDMoE7cvY9ntF8HlPxvYjizrImCTEh+QAqUioyq8jS",
	    FP1)), TP_EPROTO },
	{ "proxy fp SHA1", SET(1, PX("a", K1,
	    "SHA1:uMkWZNIXNHn/HkfJTOgZJBDiH64PASC5H936y9k06Yo")), TP_EPROTO },
	{ "proxy fp short", SET(1, PX("a", K1,
	    "SHA256:uMkWZNIXNHn/HkfJTOgZJBDiH64PASC5H936y9k06Y")), TP_EPROTO },
	{ "proxy fp long", SET(1, PX("a", K1, FP1 "A")), TP_ETOOBIG },
	{ "proxy fp padded", SET(1, PX("a", K1,
	    "SHA256:uMkWZNIXNHn/HkfJTOgZJBDiH64PASC5H936y9k06Y=")), TP_EPROTO },
	{ "proxy fp of another key", SET(1, PX("a", K1, FP2)), TP_ECRYPTO },
	{ "proxy fp mismatch later", SET(1, PX("a", K1, FP1) ","
	    PX("b", K2, FP1)), TP_ECRYPTO },
	{ "duplicate name", SET(1, PX("a", K1, FP1) "," PX("a", K2, FP2)),
	    TP_EPROTO },
	{ "duplicate host key", SET(1, PX("a", K1, FP1) "," PX("b", K1, FP1)),
	    TP_EPROTO },
	{ "good then bad", HB(1, 5) CRT(2, K1), TP_EPROTO },
};

START_TEST(bad_input)
{
	const char *in = bad[_i].in;
	size_t len = strlen(in);
	int rc1, rcn;
	struct rec r = { .len = 0 };

	/* The NUL case needs its true length. */
	if (strcmp(bad[_i].name, "NUL byte") == 0)
		len = sizeof("{\"type\":\"x\",\"seq\":1,\"a\":\"\0\"}\n") - 1;
	rc1 = feed_chunked(in, len, len, &r, NULL);
	rcn = feed_chunked(in, len, 1, &r, NULL);
	ck_assert_msg(rc1 == bad[_i].want, "%s: got %d (%s), want %d",
	    bad[_i].name, rc1, tp_strerror(rc1), bad[_i].want);
	ck_assert_msg(rcn == bad[_i].want, "%s (1-byte chunks): got %d, want %d",
	    bad[_i].name, rcn, bad[_i].want);
}
END_TEST

START_TEST(errors_are_sticky)
{
	struct discovery_stream *ds = discovery_stream_new();
	struct rec r = { .len = 0 };

	ck_assert_int_eq(discovery_stream_feed(ds, HB(1, 5), strlen(HB(1, 5)),
	    record, &r), 0);
	ck_assert_int_eq(discovery_stream_feed(ds, SET(2, PX("a", K1, FP1) ","
	    PX("b", K2, FP1)), strlen(SET(2, PX("a", K1, FP1) ","
	    PX("b", K2, FP1))), record, &r), TP_ECRYPTO);
	ck_assert_str_eq(discovery_stream_errmsg(ds),
	    "line 2: proxies[1].fp: does not match host_key");
	ck_assert_int_eq(discovery_stream_feed(ds, HB(3, 5), strlen(HB(3, 5)),
	    record, &r), TP_ECRYPTO);
	ck_assert_int_eq(discovery_stream_finish(ds), TP_ECRYPTO);
	ck_assert_int_eq(r.n, 1);
	ck_assert_uint_eq(discovery_stream_lines(ds), 1);
	discovery_stream_free(ds);
}
END_TEST

static const char *
errmsg_of(const char *in)
{
	static char msg[256];
	struct discovery_stream *ds = discovery_stream_new();
	struct rec r = { .len = 0 };

	ck_assert_int_lt(discovery_stream_feed(ds, in, strlen(in), record, &r), 0);
	snprintf(msg, sizeof(msg), "%s", discovery_stream_errmsg(ds));
	discovery_stream_free(ds);
	return msg;
}

START_TEST(errmsg_is_safe)
{
	ck_assert_str_eq(errmsg_of("{\"type\":\"heartbeat\",\"seq\":1,"
	    "\"interval\":5,\"extra_2\":1}\n"),
	    "line 1: unknown field \"extra_2\"");
	ck_assert_str_eq(errmsg_of("{\"type\":\"heartbeat\",\"seq\":1,"
	    "\"interval\":5,\"e\\u001b[31m\":1}\n"),
	    "line 1: unknown field \"?\"");
	ck_assert_str_eq(errmsg_of(SET(1, "{\"name\":\"a\",\"host_key\":\"" K1
	    "\",\"fp\":\"" FP1 "\",\"Evil\":1}")),
	    "line 1: proxies[0]: unknown field \"?\"");
	ck_assert_str_eq(errmsg_of(HB(1, 5) HB(2, 5) "x\n"),
	    "line 3: not a bare JSON object");
}
END_TEST

static int
refuse(const struct discovery_event *ev, void *arg)
{
	(*(int *)arg)++;
	return ev->type == DISCOVERY_EV_CERT ? TP_EDENIED : 0;
}

START_TEST(callback_error)
{
	struct discovery_stream *ds = discovery_stream_new();
	const char in[] = HB(1, 5) CRT(2, CERT) HB(3, 5);
	int calls = 0;

	ck_assert_int_eq(discovery_stream_feed(ds, in, strlen(in), refuse,
	    &calls), TP_EDENIED);
	ck_assert_int_eq(calls, 2);
	ck_assert_str_eq(discovery_stream_errmsg(ds),
	    "line 2: rejected by the event handler");
	ck_assert_int_eq(discovery_stream_feed(ds, HB(3, 5), 5, refuse, &calls),
	    TP_EDENIED);
	ck_assert_int_eq(calls, 2);
	discovery_stream_free(ds);
}
END_TEST

/* A heartbeat padded (inside the object) to exactly len bytes + '\n'. */
static char *
padded_heartbeat(size_t len)
{
	const char head[] = "{\"type\":\"heartbeat\",\"seq\":1,\"interval\":5";
	char *s = malloc(len + 2);

	ck_assert_ptr_nonnull(s);
	memset(s, ' ', len);
	memcpy(s, head, strlen(head));
	s[len - 1] = '}';
	s[len] = '\n';
	s[len + 1] = '\0';
	return s;
}

START_TEST(line_limit)
{
	struct discovery_stream *ds;
	struct rec r = { .len = 0 };
	char *s;

	s = padded_heartbeat(DISCOVERY_LINE_MAX - 1);
	ck_assert_int_eq(feed_str(s), 0);
	free(s);
	s = padded_heartbeat(DISCOVERY_LINE_MAX);
	ck_assert_int_eq(feed_str(s), TP_ETOOBIG);
	/* Refused as soon as the buffered part is too long, newline or not. */
	ds = discovery_stream_new();
	ck_assert_int_eq(discovery_stream_feed(ds, s, DISCOVERY_LINE_MAX - 1,
	    record, &r), 0);
	ck_assert_int_eq(discovery_stream_feed(ds, s, 1, record, &r),
	    TP_ETOOBIG);
	ck_assert_int_eq(r.n, 0);
	discovery_stream_free(ds);
	free(s);
}
END_TEST

/*
 * Builds a syntactically valid key line of the given type whose blob
 * carries payload bytes of fill, and its fingerprint.  The parser does not
 * parse keys, so any such blob is a "key" to it.
 */
static void
make_key(const char *type, size_t payload, unsigned fill, char *line,
    size_t cap, char *fp)
{
	size_t tl = strlen(type), n = 0;
	uint8_t *blob = malloc(8 + tl + payload);
	int b64;

	ck_assert_ptr_nonnull(blob);
	blob[n++] = 0; blob[n++] = 0; blob[n++] = 0; blob[n++] = (uint8_t)tl;
	memcpy(blob + n, type, tl);
	n += tl;
	blob[n++] = (uint8_t)(payload >> 24); blob[n++] = (uint8_t)(payload >> 16);
	blob[n++] = (uint8_t)(payload >> 8); blob[n++] = (uint8_t)payload;
	memset(blob + n, 0, payload);
	memcpy(blob + n, &fill, payload < sizeof(fill) ? payload : sizeof(fill));
	n += payload;
	ck_assert_uint_lt(tl + 1 + (n + 2) / 3 * 4, cap);
	memcpy(line, type, tl);
	line[tl] = ' ';
	b64 = EVP_EncodeBlock((unsigned char *)line + tl + 1, blob, (int)n);
	ck_assert_int_gt(b64, 0);
	ck_assert_int_eq(sshpub_fingerprint(blob, n, fp, SSHPUB_FP_LEN), 0);
	free(blob);
}

/* A set of n distinct synthetic ed25519-shaped proxies. */
static char *
make_set(size_t n, size_t name_len, size_t key_payload)
{
	size_t cap = 200 + n * (name_len + key_payload * 2 + 200), off;
	char *s = malloc(cap), line[8192], fp[SSHPUB_FP_LEN], name[256];
	size_t i;
	int w;

	ck_assert_ptr_nonnull(s);
	off = (size_t)snprintf(s, cap, "{\"type\":\"proxies\",\"seq\":1,"
	    "\"cluster\":\"c\",\"proxies\":[");
	for (i = 0; i < n; i++) {
		make_key("ssh-ed25519", key_payload, (unsigned)i, line,
		    sizeof(line), fp);
		w = snprintf(name, sizeof(name), "p%zu", i);
		memset(name + w, 'n', name_len - (size_t)w);
		name[name_len] = '\0';
		off += (size_t)snprintf(s + off, cap - off, "%s{\"name\":\"%s\","
		    "\"host_key\":\"%s\",\"fp\":\"%s\"}", i ? "," : "", name,
		    line, fp);
		ck_assert_uint_lt(off, cap);
	}
	snprintf(s + off, cap - off, "]}\n");
	return s;
}

START_TEST(set_limits)
{
	char *s;

	s = make_set(DISCOVERY_PROXIES_MAX, 8, 32);
	ck_assert_int_eq(feed_str(s), 0);
	free(s);
	s = make_set(DISCOVERY_PROXIES_MAX + 1, 8, 32);
	ck_assert_int_eq(feed_str(s), TP_ETOOBIG);
	free(s);
	s = make_set(1, DISCOVERY_NAME_MAX, 32);
	ck_assert_int_eq(feed_str(s), 0);
	free(s);
	s = make_set(1, DISCOVERY_NAME_MAX + 1, 32);
	ck_assert_int_eq(feed_str(s), TP_ETOOBIG);
	free(s);
	/* Key lines up to 4096 bytes, whatever the algorithm. */
	s = make_set(1, 8, 3040);
	ck_assert_int_eq(feed_str(s), 0);
	free(s);
	s = make_set(1, 8, 3050);
	ck_assert_int_eq(feed_str(s), TP_ETOOBIG);
	free(s);
}
END_TEST

START_TEST(cluster_limit)
{
	char in[512], name[DISCOVERY_NAME_MAX + 2];

	memset(name, 'c', sizeof(name) - 1);
	name[DISCOVERY_NAME_MAX] = '\0';
	snprintf(in, sizeof(in), "{\"type\":\"proxies\",\"seq\":1,\"cluster\":"
	    "\"%s\",\"proxies\":[" PX("a", K1, FP1) "]}\n", name);
	ck_assert_int_eq(feed_str(in), 0);
	name[DISCOVERY_NAME_MAX] = 'c';
	name[DISCOVERY_NAME_MAX + 1] = '\0';
	snprintf(in, sizeof(in), "{\"type\":\"proxies\",\"seq\":1,\"cluster\":"
	    "\"%s\",\"proxies\":[" PX("a", K1, FP1) "]}\n", name);
	ck_assert_int_eq(feed_str(in), TP_ETOOBIG);
}
END_TEST

START_TEST(cert_limit)
{
	static char line[DISCOVERY_CERT_LINE_MAX + 512], in[sizeof(line) + 64];
	const char *type = "ssh-ed25519-cert-v01@openssh.com";
	char fp[SSHPUB_FP_LEN];

	make_key(type, 12200, 1, line, sizeof(line), fp);
	ck_assert_uint_le(strlen(line), DISCOVERY_CERT_LINE_MAX);
	snprintf(in, sizeof(in), "{\"type\":\"cert\",\"seq\":1,\"cert\":\"%s\"}\n",
	    line);
	ck_assert_int_eq(feed_str(in), 0);
	make_key(type, 12300, 1, line, sizeof(line), fp);
	ck_assert_uint_gt(strlen(line), DISCOVERY_CERT_LINE_MAX);
	snprintf(in, sizeof(in), "{\"type\":\"cert\",\"seq\":1,\"cert\":\"%s\"}\n",
	    line);
	ck_assert_int_eq(feed_str(in), TP_ETOOBIG);
}
END_TEST

/* [lo, hi): where a change must be refused (fp and host_key values). */
static void
guarded(const char *line, const char *what, size_t *lo, size_t *hi)
{
	const char *p = strstr(line, what);

	ck_assert_ptr_nonnull(p);
	*lo = (size_t)(p - line);
	*hi = *lo + strlen(what);
}

START_TEST(mutation_bit_flips)
{
	const char *lines[] = { set_line, cert_line, hb_line };
	char buf[4096];
	size_t i, lo[4], hi[4], len, k;
	int bit, rc, must_fail;

	guarded(set_line, FP1, &lo[0], &hi[0]);
	guarded(set_line, K1, &lo[1], &hi[1]);
	guarded(set_line, FP2, &lo[2], &hi[2]);
	guarded(set_line, K2, &lo[3], &hi[3]);
	for (k = 0; k < 3; k++) {
		len = strlen(lines[k]);
		for (i = 0; i < len; i++)
			for (bit = 0; bit < 8; bit++) {
				memcpy(buf, lines[k], len);
				buf[i] ^= (char)(1 << bit);
				rc = feed_mutant(buf, len, len);
				must_fail = k == 0 && ((i >= lo[0] && i < hi[0]) ||
				    (i >= lo[1] && i < hi[1]) ||
				    (i >= lo[2] && i < hi[2]) ||
				    (i >= lo[3] && i < hi[3]));
				ck_assert_msg(!must_fail || rc < 0,
				    "flip at %zu bit %d accepted", i, bit);
			}
	}
}
END_TEST

START_TEST(mutation_byte_flips)
{
	static const unsigned char vals[] = { 0x00, 0xff, 0x80, '"', '\\', '{',
	    '}', '[', ']', ',', ':', '\n', ' ', '0', 'A', '/' };
	const char *lines[] = { set_line, cert_line, hb_line, good };
	static char buf[8192];
	size_t i, v, k, len;

	for (k = 0; k < 4; k++) {
		len = strlen(lines[k]);
		for (i = 0; i < len; i++)
			for (v = 0; v < sizeof(vals); v++) {
				memcpy(buf, lines[k], len);
				buf[i] = (char)vals[v];
				feed_mutant(buf, len, k == 3 ? 7 : len);
			}
	}
}
END_TEST

START_TEST(mutation_truncations)
{
	const char *lines[] = { set_line, cert_line, hb_line };
	static char buf[4096];
	size_t i, k, len;

	for (k = 0; k < 3; k++) {
		len = strlen(lines[k]) - 1;	/* without its newline */
		for (i = 0; i < len; i++) {
			memcpy(buf, lines[k], i);
			buf[i] = '\n';
			ck_assert_int_lt(feed_mutant(buf, i + 1, i + 1), 0);
			ck_assert_int_eq(feed_mutant(buf, i, i ? i : 1),
			    i ? TP_ETRUNC : 0);
		}
	}
	len = strlen(good);
	for (i = 0; i < len; i++)
		feed_mutant(good, i, 3);
}
END_TEST

/* Random multi-byte damage to the whole good stream, fed in odd chunks. */
START_TEST(mutation_random)
{
	static char buf[sizeof(good)];
	unsigned seed = 424242;
	size_t len = strlen(good);
	int iter, j;

	for (iter = 0; iter < 3000; iter++) {
		memcpy(buf, good, len);
		for (j = 0; j < 1 + iter % 5; j++) {
			seed = seed * 1103515245 + 12345;
			buf[(seed >> 8) % len] = (char)(seed >> 24);
		}
		feed_mutant(buf, len, 1 + iter % 13);
	}
}
END_TEST

/* What the real helper wrote must be accepted, in any chunking. */
START_TEST(helper_corpus)
{
	const char *dir = getenv("DISCOVERY_CORPUS");
	char path[4096];
	static char buf[DISCOVERY_LINE_MAX * 4];
	struct dirent *de;
	size_t len, seen = 0;
	FILE *f;
	DIR *d;

	if (dir == NULL)
		return;
	ck_assert_ptr_nonnull(d = opendir(dir));
	while ((de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, "good-", 5) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		ck_assert_ptr_nonnull(f = fopen(path, "rb"));
		len = fread(buf, 1, sizeof(buf), f);
		fclose(f);
		ck_assert_msg(feed_all(buf, len) == 0, "%s refused", path);
		ck_assert_int_eq(feed_mutant(buf, len, 1), 0);
		seen++;
	}
	closedir(d);
	ck_assert_uint_gt(seen, 0);
}
END_TEST

static Suite *
discovery_suite(void)
{
	Suite *s = suite_create("discovery_stream");
	TCase *tc = tcase_create("stream");

	tcase_add_test(tc, good_one_chunk);
	tcase_add_test(tc, good_any_chunking);
	tcase_add_test(tc, empty_and_partial);
	tcase_add_loop_test(tc, bad_input, 0, sizeof(bad) / sizeof(bad[0]));
	tcase_add_test(tc, errors_are_sticky);
	tcase_add_test(tc, errmsg_is_safe);
	tcase_add_test(tc, callback_error);
	tcase_add_test(tc, line_limit);
	tcase_add_test(tc, set_limits);
	tcase_add_test(tc, cluster_limit);
	tcase_add_test(tc, cert_limit);
	tcase_add_test(tc, helper_corpus);
	suite_add_tcase(s, tc);
	tc = tcase_create("mutation");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, mutation_bit_flips);
	tcase_add_test(tc, mutation_byte_flips);
	tcase_add_test(tc, mutation_truncations);
	tcase_add_test(tc, mutation_random);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return tu_run(discovery_suite());
}
