/*
 * supervisor/signer: the ssh-agent protocol policy (signer_handle) and the
 * libevent connection (signer_conn) on a socketpair.  Keys and
 * certificates are made at run time with the real ssh-keygen.
 */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <event2/event.h>
#include <openssl/rand.h>

#include "common/error.h"
#include "common/log.h"
#include "common/sshbuf.h"
#include "common/sshpub.h"
#include "supervisor/signer.h"
#include "supervisor/sshkey.h"
#include "testutil.h"

#define USER		"tptest"
#define CERT_SFX	"-cert-v01@openssh.com"

static char dir[64];

static const char *
path(const char *name)
{
	return tu_path(dir, name);
}

static const char *const keyfiles[] = {
	"ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa"
};
static const char *const keyargs[] = {
	"-t ed25519", "-t ecdsa -b 256", "-t ecdsa -b 384", "-t ecdsa -b 521",
	"-t rsa -b 2048"
};
#define NKEYS	(int)(sizeof(keyfiles) / sizeof(keyfiles[0]))

static void
make_keys(void)
{
	snprintf(dir, sizeof(dir), "/tmp/tp-signer-XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	tu_sh("ssh-keygen -q -t ed25519 -N '' -f %s", path("ca"));
	for (int i = 0; i < NKEYS; i++) {
		tu_sh("ssh-keygen -q %s -N '' -f %s", keyargs[i],
		    path(keyfiles[i]));
		tu_sh("ssh-keygen -q -s %s -I %s -n " USER " %s.pub",
		    path("ca"), keyfiles[i], path(keyfiles[i]));
	}
	tu_sh("ssh-keygen -q -t ed25519 -N '' -f %s", path("other"));
}

/* Loads a key, with its certificate when cert is set. */
static struct sshkey *
load(const char *name, int cert)
{
	struct sshkey *k;
	char err[SSHKEY_ERR_LEN] = "", cpath[300];

	ck_assert_msg(sshkey_load(path(name), &k, err, sizeof(err)) == 0,
	    "%s", err);
	if (cert) {
		snprintf(cpath, sizeof(cpath), "%s-cert.pub", path(name));
		ck_assert_msg(sshkey_load_cert(k, cpath, err, sizeof(err)) == 0,
		    "%s", err);
	}
	return k;
}

/* ---- building requests ---- */

/* A userauth request; zero/NULL fields take the valid default. */
struct ua {
	int		 sidlen;	/* 0: 32; -1: empty */
	int		 msgtype;	/* 0: 50 */
	const char	*user;
	const char	*service;
	const char	*method;
	int		 flag;		/* 0: TRUE; -1: FALSE */
	const char	*alg;		/* NULL: the right one */
	int		 blob;		/* 0: the requested one; 1: other key;
					   2: plain key; 3: cert */
	size_t		 trailing;	/* bytes appended to the data */
	uint8_t		 sid_byte;	/* 0: a random session id; else
					   every byte of it */
};

/* A sign request; the key blob is the plain key unless cert is set. */
struct req {
	int		 cert;		/* ask for the certificate */
	int		 other;		/* ask for a foreign key */
	uint32_t	 flags;
	size_t		 trailing;	/* bytes appended to the request */
	struct ua	 ua;
};

static struct sshkey *other_key;

static const uint8_t *
req_blob(const struct sshkey *k, int cert, int other, size_t *len)
{
	if (other)
		return sshkey_pub_blob(other_key, len);
	return cert ? sshkey_cert_blob(k, len) : sshkey_pub_blob(k, len);
}

static void
put_userauth(struct sshbuf_writer *w, const struct sshkey *k,
    const struct req *q)
{
	const struct ua *u = &q->ua;
	uint8_t sid[80];
	const uint8_t *blob;
	size_t bloblen;
	char alg[96];

	if (u->sid_byte != 0)
		memset(sid, u->sid_byte, sizeof(sid));
	else
		RAND_bytes(sid, sizeof(sid));
	/* The right algorithm follows the key named in the data. */
	snprintf(alg, sizeof(alg), "%s%s", sshkey_sig_alg(k, q->flags) ?
	    sshkey_sig_alg(k, q->flags) : "ssh-rsa",
	    (u->blob == 0 ? q->cert : u->blob == 3) ? CERT_SFX : "");
	if (u->blob == 0)
		blob = req_blob(k, q->cert, q->other, &bloblen);
	else
		blob = req_blob(k, u->blob == 3, u->blob == 1, &bloblen);
	sshbuf_put_string(w, sid, u->sidlen == 0 ? 32 :
	    u->sidlen < 0 ? 0 : (size_t)u->sidlen);
	sshbuf_put_u8(w, u->msgtype ? (uint8_t)u->msgtype : 50);
	sshbuf_put_cstring(w, u->user ? u->user : USER);
	sshbuf_put_cstring(w, u->service ? u->service : "ssh-connection");
	sshbuf_put_cstring(w, u->method ? u->method : "publickey");
	sshbuf_put_u8(w, u->flag < 0 ? 0 : 1);
	sshbuf_put_cstring(w, u->alg ? u->alg : alg);
	sshbuf_put_string(w, blob, bloblen);
	for (size_t i = 0; i < u->trailing; i++)
		sshbuf_put_u8(w, 0);
}

/* Builds a sign request body into w; data/datalen point into it. */
static void
build_req(struct sshbuf_writer *w, const struct sshkey *k,
    const struct req *q)
{
	struct sshbuf_writer data;
	const uint8_t *blob;
	size_t bloblen;

	sshbuf_writer_init(&data, 0);
	put_userauth(&data, k, q);
	blob = req_blob(k, q->cert, q->other, &bloblen);
	sshbuf_writer_init(w, 0);
	sshbuf_put_u8(w, SSH_AGENTC_SIGN_REQUEST);
	sshbuf_put_string(w, blob, bloblen);
	sshbuf_put_string(w, data.p, data.len);
	sshbuf_put_u32(w, q->flags);
	for (size_t i = 0; i < q->trailing; i++)
		sshbuf_put_u8(w, 0xaa);
	ck_assert_int_eq(sshbuf_writer_error(w), 0);
	sshbuf_writer_free(&data);
}

/*
 * Checks a SIGN_RESPONSE body: one signature over the data inside req
 * that verifies with the plain public key.
 */
static void
check_signature(const struct sshkey *k, const uint8_t *req, size_t reqlen,
    const uint8_t *reply, size_t replylen)
{
	struct sshbuf_reader r;
	const uint8_t *blob, *data, *sig, *pub;
	size_t bloblen, datalen, siglen, publen;
	uint8_t type;

	sshbuf_reader_init(&r, req + 1, reqlen - 1);
	ck_assert_int_eq(sshbuf_get_string(&r, &blob, &bloblen), 0);
	ck_assert_int_eq(sshbuf_get_string(&r, &data, &datalen), 0);
	sshbuf_reader_init(&r, reply, replylen);
	ck_assert_int_eq(sshbuf_get_u8(&r, &type), 0);
	ck_assert_int_eq(type, SSH_AGENT_SIGN_RESPONSE);
	ck_assert_int_eq(sshbuf_get_string(&r, &sig, &siglen), 0);
	ck_assert_uint_eq(r.len, 0);
	pub = sshkey_pub_blob(k, &publen);
	ck_assert_int_eq(sshpub_verify(pub, publen, sig, siglen, data,
	    datalen), 0);
}

static int
handle(struct signer *s, const uint8_t *req, size_t len,
    struct sshbuf_writer *reply)
{
	sshbuf_writer_init(reply, SIGNER_REPLY_MAX);
	return signer_handle(s, req, len, reply);
}

/* ---- fixtures ---- */

struct conn_test {
	struct event_base	*base;
	struct signer_conn	*conn;
	int			 client;
	int			 errors;
	char			 why[128];
};

/* Frees the connection from inside its own callback, as the supervisor does. */
static void
on_error(void *arg, const char *why)
{
	struct conn_test *t = arg;

	t->errors++;
	snprintf(t->why, sizeof(t->why), "%s", why);
	signer_conn_free(t->conn);
	t->conn = NULL;
}

static const struct log_agent who = { .cluster = "c1",
    .addr = "proxy1:22", .pid = 4242 };

static void
conn_setup(struct conn_test *t, struct signer *s)
{
	int sv[2];

	memset(t, 0, sizeof(*t));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_ptr_nonnull(t->base = event_base_new());
	t->conn = signer_conn_new(s, t->base, sv[0], &who, on_error, t);
	ck_assert_ptr_nonnull(t->conn);
	t->client = sv[1];
	ck_assert_int_eq(fcntl(t->client, F_SETFL, O_NONBLOCK), 0);
}

static void
conn_teardown(struct conn_test *t)
{
	signer_conn_free(t->conn);
	event_base_free(t->base);
	if (t->client >= 0)
		close(t->client);
}

/*
 * What a test starts with: a key, a signer for USER and, in the "conn"
 * cases, a connection to it on a socketpair.  Checked fixtures make them
 * in the test's own process before each test and free them after it.
 * Loop tests, whose key depends on the loop index, open theirs with
 * fx_open, and their case's teardown frees it the same way.
 */
static struct {
	struct sshkey		*k;
	struct signer		*s;
	struct conn_test	 t;
} fx;

static void
fx_open(const char *key, int cert)
{
	fx.k = load(key, cert);
	ck_assert_ptr_nonnull(fx.s = signer_new(fx.k, USER));
}

static void
fx_close(void)
{
	signer_free(fx.s);
	sshkey_free(fx.k);
	fx.s = NULL;
	fx.k = NULL;
}

static void
fx_plain(void)
{
	fx_open("ed25519", 0);
}

static void
fx_cert(void)
{
	fx_open("ed25519", 1);
}

static void
fx_conn_plain(void)
{
	fx_plain();
	conn_setup(&fx.t, fx.s);
}

static void
fx_conn_cert(void)
{
	fx_cert();
	conn_setup(&fx.t, fx.s);
}

static void
fx_conn_close(void)
{
	conn_teardown(&fx.t);
	fx_close();
}

/* ---- the policy ---- */

START_TEST(identities_plain_and_cert)
{
	struct sshkey *k = fx.k;
	struct signer *s = fx.s;
	struct sshbuf_writer w;
	struct sshbuf_reader r;
	const uint8_t req[] = { SSH_AGENTC_REQUEST_IDENTITIES }, *b, *exp;
	size_t blen, elen;
	uint32_t n;
	uint8_t type;

	ck_assert_int_eq(handle(s, req, 1, &w), 0);
	sshbuf_reader_init(&r, w.p, w.len);
	ck_assert_int_eq(sshbuf_get_u8(&r, &type), 0);
	ck_assert_int_eq(type, SSH_AGENT_IDENTITIES_ANSWER);
	ck_assert_int_eq(sshbuf_get_u32(&r, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(sshbuf_get_string(&r, &b, &blen), 0);
	exp = sshkey_pub_blob(k, &elen);
	ck_assert_uint_eq(blen, elen);
	ck_assert_mem_eq(b, exp, elen);
	ck_assert_int_eq(sshbuf_get_string(&r, &b, &blen), 0);
	ck_assert_uint_eq(r.len, 0);
	sshbuf_writer_free(&w);

	/* With a certificate: the certificate first, then the key. */
	fx_close();
	fx_cert();
	k = fx.k;
	s = fx.s;
	ck_assert_int_eq(handle(s, req, 1, &w), 0);
	sshbuf_reader_init(&r, w.p, w.len);
	ck_assert_int_eq(sshbuf_get_u8(&r, &type), 0);
	ck_assert_int_eq(sshbuf_get_u32(&r, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(sshbuf_get_string(&r, &b, &blen), 0);
	exp = sshkey_cert_blob(k, &elen);
	ck_assert_uint_eq(blen, elen);
	ck_assert_mem_eq(b, exp, elen);
	ck_assert_int_eq(sshbuf_get_string(&r, &b, &blen), 0);
	ck_assert_int_eq(sshbuf_get_string(&r, &b, &blen), 0);
	exp = sshkey_pub_blob(k, &elen);
	ck_assert_mem_eq(b, exp, elen);
	ck_assert_int_eq(sshbuf_get_string(&r, &b, &blen), 0);
	ck_assert_uint_eq(r.len, 0);
	ck_assert_uint_eq(signer_refusals(s), 0);
	sshbuf_writer_free(&w);
}
END_TEST

/*
 * Signs a valid request for key i: plain key; certificate; and the
 * certificate's request signed with the plain key asked, as OpenSSH's ssh
 * does when the agent lists both.
 */
START_TEST(sign_valid_each_type)
{
	struct sshkey *k;
	struct signer *s;
	int rsa;
	uint32_t flags[] = { SSH_AGENT_RSA_SHA2_256, SSH_AGENT_RSA_SHA2_512 };
	struct sshbuf_writer q, w;
	uint64_t n = 0;

	fx_open(keyfiles[_i], 1);
	k = fx.k;
	s = fx.s;
	rsa = sshkey_type(k) == SSHKEY_RSA;
	for (int v = 0; v < 3; v++)
		for (int f = 0; f < (rsa ? 2 : 1); f++) {
			struct req rq = { .cert = v == 1,
			    .flags = rsa ? flags[f] : 0,
			    .ua = { .blob = v == 2 ? 3 : 0 } };

			build_req(&q, k, &rq);
			ck_assert_int_eq(handle(s, q.p, q.len, &w), 0);
			check_signature(k, q.p, q.len, w.p, w.len);
			ck_assert_uint_eq(signer_signatures(s), ++n);
			sshbuf_writer_free(&q);
			sshbuf_writer_free(&w);
		}
	ck_assert_uint_eq(signer_refusals(s), 0);
}
END_TEST

/* Expects a refusal: one FAILURE byte, counted, nothing signed. */
static void
expect_refused(struct signer *s, const uint8_t *req, size_t len,
    const char *what)
{
	struct sshbuf_writer w;
	uint64_t refused = signer_refusals(s), signed_ = signer_signatures(s);
	int rc = handle(s, req, len, &w);

	ck_assert_msg(rc < 0, "%s: accepted", what);
	ck_assert_msg(w.len == 1 && w.p[0] == SSH_AGENT_FAILURE,
	    "%s: reply is not FAILURE", what);
	ck_assert_uint_eq(signer_refusals(s), refused + 1);
	ck_assert_uint_eq(signer_signatures(s), signed_);
	sshbuf_writer_free(&w);
}

struct rcase {
	const char	*what;
	const char	*key;
	int		 expect_rc;
	struct req	 rq;
};

static const struct rcase rcases[] = {
	{ "wrong user", "ed25519", TP_EDENIED, { .ua = { .user = "root" } } },
	{ "user prefix", "ed25519", TP_EDENIED, { .ua = { .user = "tptes" } } },
	{ "user suffix", "ed25519", TP_EDENIED,
	    { .ua = { .user = "tptestx" } } },
	{ "empty user", "ed25519", TP_EDENIED,
	    { .ua = { .user = "" } } },
	{ "wrong service", "ed25519", TP_EDENIED,
	    { .ua = { .service = "ssh-userauth" } } },
	{ "method password", "ed25519", TP_EDENIED,
	    { .ua = { .method = "password" } } },
	{ "method hostbound", "ed25519", TP_EDENIED,
	    { .ua = { .method = "publickey-hostbound-v00@openssh.com" } } },
	{ "method hostbased", "ed25519", TP_EDENIED,
	    { .ua = { .method = "hostbased" } } },
	{ "no signature flag", "ed25519", TP_EDENIED, { .ua = { .flag = -1 } } },
	{ "other message", "ed25519", TP_EDENIED, { .ua = { .msgtype = 51 } } },
	{ "empty session id", "ed25519", TP_EDENIED,
	    { .ua = { .sidlen = -1 } } },
	{ "long session id", "ed25519", TP_EDENIED,
	    { .ua = { .sidlen = 65 } } },
	{ "wrong algorithm", "ed25519", TP_EDENIED,
	    { .ua = { .alg = "ecdsa-sha2-nistp256" } } },
	{ "foreign key asked", "ed25519", TP_EDENIED, { .other = 1 } },
	{ "foreign key in data", "ed25519", TP_EDENIED,
	    { .ua = { .blob = 1 } } },
	{ "trailing data", "ed25519", TP_EDENIED, { .ua = { .trailing = 1 } } },
	{ "trailing request", "ed25519", TP_EPROTO, { .trailing = 1 } },
	{ "flags on ed25519", "ed25519", TP_EDENIED,
	    { .flags = SSH_AGENT_RSA_SHA2_256 } },
	{ "cert asked, plain alg", "ed25519", TP_EDENIED,
	    { .cert = 1, .ua = { .alg = "ssh-ed25519" } } },
	{ "cert asked, plain blob", "ed25519", TP_EDENIED,
	    { .cert = 1, .ua = { .blob = 2 } } },
	{ "plain asked, cert alg", "ed25519", TP_EDENIED,
	    { .ua = { .alg = "ssh-ed25519-cert-v01@openssh.com" } } },
	{ "plain asked, cert blob, plain alg", "ed25519", TP_EDENIED,
	    { .ua = { .blob = 3, .alg = "ssh-ed25519" } } },
	{ "cert asked, plain blob, cert alg", "ed25519", TP_EDENIED,
	    { .cert = 1,
	      .ua = { .blob = 2, .alg = "ssh-ed25519-cert-v01@openssh.com" } } },
	{ "ecdsa cert, plain alg", "ecdsa256", TP_EDENIED,
	    { .cert = 1, .ua = { .alg = "ecdsa-sha2-nistp256" } } },
	{ "ecdsa, other curve", "ecdsa256", TP_EDENIED,
	    { .ua = { .alg = "ecdsa-sha2-nistp384" } } },
	{ "rsa sha1", "rsa", TP_EDENIED, { .flags = 0 } },
	{ "rsa sha1 alg", "rsa", TP_EDENIED,
	    { .flags = SSH_AGENT_RSA_SHA2_256, .ua = { .alg = "ssh-rsa" } } },
	{ "rsa both flags", "rsa", TP_EDENIED, { .flags = 6 } },
	{ "rsa unknown flag", "rsa", TP_EDENIED, { .flags = 0x10 } },
	{ "rsa flags/alg mismatch", "rsa", TP_EDENIED,
	    { .flags = SSH_AGENT_RSA_SHA2_256,
	      .ua = { .alg = "rsa-sha2-512" } } },
	{ "rsa cert, plain alg", "rsa", TP_EDENIED,
	    { .cert = 1, .flags = SSH_AGENT_RSA_SHA2_512,
	      .ua = { .alg = "rsa-sha2-512" } } },
	{ "rsa cert, sha1 cert alg", "rsa", TP_EDENIED,
	    { .cert = 1, .flags = SSH_AGENT_RSA_SHA2_512,
	      .ua = { .alg = "ssh-rsa-cert-v01@openssh.com" } } },
	{ "rsa cert, other hash", "rsa", TP_EDENIED,
	    { .cert = 1, .flags = SSH_AGENT_RSA_SHA2_512,
	      .ua = { .alg = "rsa-sha2-256-cert-v01@openssh.com" } } },
};
#define NRCASES	(int)(sizeof(rcases) / sizeof(rcases[0]))

START_TEST(sign_refused)
{
	const struct rcase *c = &rcases[_i];
	struct sshkey *k;
	struct signer *s;
	struct sshbuf_writer q, w;
	int rc;

	fx_open(c->key, 1);
	k = fx.k;
	s = fx.s;
	build_req(&q, k, &c->rq);
	expect_refused(s, q.p, q.len, c->what);
	rc = handle(s, q.p, q.len, &w);
	ck_assert_msg(rc == c->expect_rc, "%s: rc %d", c->what, rc);
	sshbuf_writer_free(&w);
	sshbuf_writer_free(&q);
}
END_TEST

START_TEST(other_requests_refused)
{
	struct sshkey *k = fx.k;
	struct signer *s = fx.s;
	uint8_t junk[512];
	const uint8_t types[] = { 0, 1, 5, 9, 12, 14, 17, 18, 19, 20, 21, 22,
	    23, 25, 26, 27, 29, 255 };
	const uint8_t ids_trailing[] = { SSH_AGENTC_REQUEST_IDENTITIES, 0 };
	struct sshbuf_writer q;

	for (size_t i = 0; i < sizeof(types); i++)
		expect_refused(s, &types[i], 1, "unknown type");
	expect_refused(s, junk, 0, "empty request");
	expect_refused(s, ids_trailing, 2, "identities with trailing byte");
	for (int i = 0; i < 100; i++) {
		RAND_bytes(junk, sizeof(junk));
		expect_refused(s, junk, sizeof(junk), "random request");
	}
	/* Arbitrary data to sign, with a valid key blob and flags. */
	for (int i = 0; i < 100; i++) {
		const uint8_t *blob;
		size_t bloblen;

		RAND_bytes(junk, sizeof(junk));
		blob = sshkey_pub_blob(k, &bloblen);
		sshbuf_writer_init(&q, 0);
		sshbuf_put_u8(&q, SSH_AGENTC_SIGN_REQUEST);
		sshbuf_put_string(&q, blob, bloblen);
		sshbuf_put_string(&q, junk, (size_t)i * 5);
		sshbuf_put_u32(&q, 0);
		expect_refused(s, q.p, q.len, "other data");
		sshbuf_writer_free(&q);
	}
	ck_assert_uint_eq(signer_signatures(s), 0);
}
END_TEST

START_TEST(set_user_on_reload)
{
	struct sshkey *k = fx.k;
	struct signer *s = fx.s;
	struct req rq = { .ua = { .user = "deploy" } };
	struct sshbuf_writer q, w;
	char longname[300];

	ck_assert_ptr_null(signer_new(k, ""));
	ck_assert_ptr_null(signer_new(NULL, USER));
	build_req(&q, k, &rq);
	expect_refused(s, q.p, q.len, "before reload");
	ck_assert_int_eq(signer_set_user(s, "deploy"), 0);
	ck_assert_int_eq(handle(s, q.p, q.len, &w), 0);
	check_signature(k, q.p, q.len, w.p, w.len);
	sshbuf_writer_free(&w);
	sshbuf_writer_free(&q);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ck_assert_int_eq(signer_set_user(s, longname), TP_EINVAL);
	ck_assert_int_eq(signer_set_user(s, ""), TP_EINVAL);
}
END_TEST

/* Every refusal leaves a warn line naming the reason and the agent. */
START_TEST(refusal_is_logged)
{
	struct sshkey *k = fx.k;
	struct signer *s = fx.s;
	struct req rq = { .ua = { .user = "mallory\n\x01" } };
	struct sshbuf_writer q;
	char tmpl[] = "/tmp/tp-signer-log-XXXXXX", buf[4096];
	int fd = mkstemp(tmpl);
	ssize_t n;

	ck_assert_int_ge(fd, 0);
	unlink(tmpl);
	log_init("test", LOG_LVL_INFO, LOG_FMT_LOGFMT, fd);
	build_req(&q, k, &rq);
	expect_refused(s, q.p, q.len, "wrong user");
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_msg(strstr(buf, "level=warn") != NULL, "%s", buf);
	ck_assert_msg(strstr(buf, "mallory??") != NULL, "%s", buf);
	ck_assert_msg(strstr(buf, "is not the proxy user") != NULL, "%s",
	    buf);
	ck_assert_ptr_null(strchr(buf, '\x01'));
	log_init("test", LOG_LVL_ERROR, LOG_FMT_LOGFMT, 2);
	close(fd);
	sshbuf_writer_free(&q);
}
END_TEST

/*
 * Bit flips, byte flips and truncations of valid requests: the signer
 * answers every one with FAILURE or a signature that verifies over the
 * (mutated) data, never crashes, and refusals are counted.
 */
static void
mutate_one(struct signer *s, const struct sshkey *k, uint8_t *req,
    size_t len)
{
	struct sshbuf_writer w;
	uint64_t before = signer_refusals(s);
	int rc = handle(s, req, len, &w);

	ck_assert_int_eq(sshbuf_writer_error(&w), 0);
	ck_assert_uint_ge(w.len, 1);
	if (rc == 0 && w.p[0] == SSH_AGENT_SIGN_RESPONSE)
		check_signature(k, req, len, w.p, w.len);
	else if (rc != 0) {
		ck_assert_uint_eq(w.len, 1);
		ck_assert_int_eq(w.p[0], SSH_AGENT_FAILURE);
		ck_assert_uint_eq(signer_refusals(s), before + 1);
	}
	sshbuf_writer_free(&w);
}

START_TEST(mutations_never_crash)
{
	static const struct { const char *key; struct req rq; } v[] = {
		{ "ed25519", { .cert = 0 } },
		{ "ed25519", { .cert = 1 } },
		{ "ecdsa256", { .cert = 1 } },
		{ "rsa", { .flags = SSH_AGENT_RSA_SHA2_512 } },
	};
	struct sshkey *k;
	struct signer *s;
	struct sshbuf_writer q;
	uint8_t *m;

	fx_open(v[_i].key, 1);
	k = fx.k;
	s = fx.s;
	log_init("test", LOG_LVL_ERROR, LOG_FMT_LOGFMT, 2);
	build_req(&q, k, &v[_i].rq);
	m = malloc(q.len);
	memcpy(m, q.p, q.len);
	for (size_t i = 0; i < q.len; i++) {
		for (int b = 0; b < 8; b++) {
			m[i] ^= (uint8_t)(1 << b);
			mutate_one(s, k, m, q.len);
			m[i] ^= (uint8_t)(1 << b);
		}
		m[i] = 0x00;
		mutate_one(s, k, m, q.len);
		m[i] = 0xff;
		mutate_one(s, k, m, q.len);
		m[i] = (uint8_t)~q.p[i];
		mutate_one(s, k, m, q.len);
		m[i] = q.p[i];
	}
	for (size_t n = 0; n < q.len; n++) {
		uint8_t *t = malloc(n ? n : 1);	/* ASan sees overreads */

		memcpy(t, q.p, n);
		mutate_one(s, k, t, n);
		free(t);
	}
	free(m);
	sshbuf_writer_free(&q);
}
END_TEST

/* ---- connections ---- */

static void
pump(struct conn_test *t)
{
	event_base_loop(t->base, EVLOOP_NONBLOCK);
}

static void
send_all(struct conn_test *t, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len > 0) {
		ssize_t n = write(t->client, b, len);

		if (n > 0) {
			b += n;
			len -= (size_t)n;
		} else
			ck_assert_int_eq(errno, EAGAIN);
		pump(t);
	}
}

static void
send_frame(struct conn_test *t, const uint8_t *body, size_t len)
{
	uint8_t hdr[4] = { len >> 24, len >> 16, len >> 8, len };

	send_all(t, hdr, 4);
	send_all(t, body, len);
}

/* Reads one reply frame (pumping the loop); returns its length in buf. */
static size_t
recv_frame(struct conn_test *t, uint8_t *buf, size_t cap)
{
	size_t have = 0, want = 4;

	for (int tries = 0; tries < 5000 && have < want; tries++) {
		ssize_t n = read(t->client, buf + have, want - have);

		if (n > 0)
			have += (size_t)n;
		else if (n == 0)
			break;
		if (have == 4 && want == 4) {
			want = 4 + ((size_t)buf[0] << 24 | (size_t)buf[1] << 16 |
			    (size_t)buf[2] << 8 | buf[3]);
			ck_assert_uint_le(want, cap);
		}
		if (n <= 0) {
			pump(t);
			poll(&(struct pollfd){ .fd = t->client,
			    .events = POLLIN }, 1, 1);
		}
	}
	ck_assert_uint_eq(have, want);
	memmove(buf, buf + 4, want - 4);
	return want - 4;
}

static uint8_t
request_once(struct conn_test *t, const uint8_t *req, size_t len,
    uint8_t *buf, size_t cap, size_t *n)
{
	send_frame(t, req, len);
	*n = recv_frame(t, buf, cap);
	return buf[0];
}

/*
 * One authentication's worth, once: the identities once, each identity
 * signed once, every signature for the first one's session id.  Requests
 * split byte by byte are framed like any other.
 */
START_TEST(conn_one_authentication)
{
	struct sshkey *k = fx.k;
	struct signer *s = fx.s;
	struct conn_test *t = &fx.t;
	uint8_t ids = SSH_AGENTC_REQUEST_IDENTITIES, buf[8192];
	struct req key_a = { .ua.sid_byte = 0xa }, cert_b = { .cert = 1,
	    .ua.sid_byte = 0xb }, cert_a = { .cert = 1, .ua.sid_byte = 0xa };
	struct sshbuf_writer qk, qb, qa;
	size_t n;

	build_req(&qk, k, &key_a);
	build_req(&qb, k, &cert_b);
	build_req(&qa, k, &cert_a);
	ck_assert_int_eq(request_once(t, &ids, 1, buf, sizeof(buf), &n),
	    SSH_AGENT_IDENTITIES_ANSWER);
	ck_assert_uint_gt(n, 5);
	request_once(t, qk.p, qk.len, buf, sizeof(buf), &n);
	check_signature(k, qk.p, qk.len, buf, n);
	/* Again: the identities, the same identity, another session. */
	ck_assert_int_eq(request_once(t, &ids, 1, buf, sizeof(buf), &n),
	    SSH_AGENT_FAILURE);
	ck_assert_int_eq(request_once(t, qk.p, qk.len, buf, sizeof(buf), &n),
	    SSH_AGENT_FAILURE);
	ck_assert_int_eq(request_once(t, qb.p, qb.len, buf, sizeof(buf), &n),
	    SSH_AGENT_FAILURE);
	ck_assert_uint_eq(signer_refusals(s), 3);
	/* The other identity, same session, split byte by byte: signed. */
	{
		uint8_t frame[4096] = { qa.len >> 24, qa.len >> 16,
		    qa.len >> 8, qa.len };

		memcpy(frame + 4, qa.p, qa.len);
		for (size_t i = 0; i < qa.len + 4; i++)
			send_all(t, frame + i, 1);
	}
	n = recv_frame(t, buf, sizeof(buf));
	check_signature(k, qa.p, qa.len, buf, n);
	/* And never again. */
	ck_assert_int_eq(request_once(t, qa.p, qa.len, buf, sizeof(buf), &n),
	    SSH_AGENT_FAILURE);
	ck_assert_int_eq(t->errors, 0);
	ck_assert_uint_eq(signer_signatures(s), 2);
	ck_assert_uint_eq(signer_refusals(s), 4);
	sshbuf_writer_free(&qk);
	sshbuf_writer_free(&qb);
	sshbuf_writer_free(&qa);
}
END_TEST

/*
 * The claim ends the connection: a sign request the worker sent before it
 * (not read yet) is refused and counted, never answered, and the socket
 * is closed for good.
 */
START_TEST(conn_end_refuses_pending)
{
	struct sshkey *k = fx.k;
	struct signer *s = fx.s;
	struct conn_test *t = &fx.t;
	uint8_t ids = SSH_AGENTC_REQUEST_IDENTITIES, buf[8192];
	struct req rq = { 0 };
	struct sshbuf_writer q;
	uint8_t hdr[4];
	size_t n;

	ck_assert_int_eq(request_once(t, &ids, 1, buf, sizeof(buf), &n),
	    SSH_AGENT_IDENTITIES_ANSWER);
	build_req(&q, k, &rq);
	hdr[0] = (uint8_t)(q.len >> 24);
	hdr[1] = (uint8_t)(q.len >> 16);
	hdr[2] = (uint8_t)(q.len >> 8);
	hdr[3] = (uint8_t)q.len;
	/* Written, but the loop does not run: the supervisor has not read it. */
	ck_assert_int_eq(write(t->client, hdr, 4), 4);
	ck_assert_int_eq(write(t->client, q.p, q.len), (ssize_t)q.len);
	ck_assert_uint_eq(signer_conn_end(t->conn), 1);
	t->conn = NULL;
	ck_assert_uint_eq(signer_signatures(s), 0);
	ck_assert_uint_eq(signer_refusals(s), 1);
	ck_assert_int_eq(t->errors, 0);
	/* Nothing comes back, and the socket is closed. */
	ck_assert_int_eq(fcntl(t->client, F_SETFL, 0), 0);
	ck_assert_int_eq(read(t->client, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(signer_conn_end(NULL), 0);
	sshbuf_writer_free(&q);
}
END_TEST

/*
 * A worker's connection (signer_conn_require_bind): nothing is signed
 * before the bind, then only for the bound session id; a second bind,
 * or one after a signature, is refused.
 */
START_TEST(conn_bound_session)
{
	struct sshkey *k = fx.k;
	struct signer *s = fx.s;
	struct conn_test *t = &fx.t;
	uint8_t sid_a[32], buf[8192];
	struct req rq_a = { .ua.sid_byte = 0xa }, rq_b = { .ua.sid_byte = 0xb };
	struct sshbuf_writer qa, qb;
	size_t n;

	memset(sid_a, 0xa, sizeof(sid_a));
	build_req(&qa, k, &rq_a);
	build_req(&qb, k, &rq_b);
	signer_conn_require_bind(t->conn);
	ck_assert_int_eq(request_once(t, qa.p, qa.len, buf, sizeof(buf), &n),
	    SSH_AGENT_FAILURE);
	ck_assert_int_eq(signer_conn_bind(t->conn, sid_a, 0), TP_EINVAL);
	ck_assert_int_eq(signer_conn_bind(t->conn, sid_a, 65), TP_EINVAL);
	ck_assert_int_eq(signer_conn_bind(t->conn, sid_a, sizeof(sid_a)), 0);
	ck_assert_int_eq(signer_conn_bind(t->conn, sid_a, sizeof(sid_a)),
	    TP_ESTATE);
	/* Another session id: refused; the bound one: signed. */
	ck_assert_int_eq(request_once(t, qb.p, qb.len, buf, sizeof(buf), &n),
	    SSH_AGENT_FAILURE);
	request_once(t, qa.p, qa.len, buf, sizeof(buf), &n);
	check_signature(k, qa.p, qa.len, buf, n);
	ck_assert_uint_eq(signer_signatures(s), 1);
	ck_assert_uint_eq(signer_refusals(s), 2);
	ck_assert_int_eq(t->errors, 0);
	sshbuf_writer_free(&qa);
	sshbuf_writer_free(&qb);
}
END_TEST

START_TEST(conn_oversized_request_ends)
{
	struct conn_test *t = &fx.t;
	const uint8_t hdr[4] = { 0x00, 0x04, 0x00, 0x01 };	/* 256 KiB + 1 */

	send_all(t, hdr, sizeof(hdr));
	for (int i = 0; i < 100 && t->errors == 0; i++)
		pump(t);
	ck_assert_int_eq(t->errors, 1);
	ck_assert_str_eq(t->why, "request too large");
	ck_assert_ptr_null(t->conn);
}
END_TEST

START_TEST(conn_largest_request_is_answered)
{
	struct conn_test *t = &fx.t;
	uint8_t *big = calloc(1, SIGNER_REQUEST_MAX), buf[16];

	big[0] = SSH_AGENTC_SIGN_REQUEST;
	send_frame(t, big, SIGNER_REQUEST_MAX);
	ck_assert_uint_eq(recv_frame(t, buf, sizeof(buf)), 1);
	ck_assert_int_eq(buf[0], SSH_AGENT_FAILURE);
	ck_assert_int_eq(t->errors, 0);
	free(big);
}
END_TEST

START_TEST(conn_eof_ends)
{
	struct conn_test *t = &fx.t;

	send_all(t, "\0\0", 2);	/* half a header, then EOF */
	close(t->client);
	t->client = -1;
	for (int i = 0; i < 100 && t->errors == 0; i++)
		pump(t);
	ck_assert_int_eq(t->errors, 1);
	ck_assert_str_eq(t->why, "eof");
}
END_TEST

/* A burst of the same valid sign request: one signature, the rest refused. */
START_TEST(conn_sign_burst_once)
{
	struct sshkey *k = fx.k;
	struct signer *s = fx.s;
	struct conn_test *t = &fx.t;
	struct sshbuf_writer q;
	struct req rq = { 0 };
	uint8_t buf[1024];
	int ok = 0, refused = 0;

	build_req(&q, k, &rq);
	for (int i = 0; i < 30; i++)
		send_frame(t, q.p, q.len);
	for (int i = 0; i < 30; i++) {
		recv_frame(t, buf, sizeof(buf));
		if (buf[0] == SSH_AGENT_SIGN_RESPONSE)
			ok++;
		else
			refused++;
	}
	ck_assert_int_eq(ok, 1);
	ck_assert_int_eq(refused, 29);
	ck_assert_uint_eq(signer_refusals(s), 29);
	sshbuf_writer_free(&q);
}
END_TEST

/*
 * A worker that sends requests without reading the replies: the
 * connection stops reading (bounded memory, loop never blocks) and
 * resumes once the worker reads; every request is answered in order.
 */
START_TEST(conn_backpressure)
{
	struct conn_test *t = &fx.t;
	enum { N = 200000 };
	uint8_t *out = malloc(N * 5), buf[65536];
	size_t sent = 0, total = N * 5, answers = 0, rlen = 0;
	int stalls = 0;

	for (size_t i = 0; i < N; i++)
		memcpy(out + i * 5, "\0\0\0\1\x0b", 5);
	/* Write without reading until the signer stops taking requests. */
	while (sent < total && stalls < 50) {
		ssize_t n = write(t->client, out + sent, total - sent);

		if (n > 0)
			sent += (size_t)n;
		else
			stalls++;
		pump(t);
	}
	ck_assert_uint_lt(sent, total);
	/* Now read everything while writing the rest. */
	while (answers < N) {
		ssize_t n;

		if (sent < total && (n = write(t->client, out + sent,
		    total - sent)) > 0)
			sent += (size_t)n;
		pump(t);
		n = read(t->client, buf + rlen, sizeof(buf) - rlen);
		if (n <= 0) {
			ck_assert_int_eq(errno, EAGAIN);
			continue;
		}
		rlen += (size_t)n;
		/* Count whole frames. */
		size_t off = 0;
		while (rlen - off >= 4) {
			size_t flen = 4 + ((size_t)buf[off + 2] << 8 |
			    buf[off + 3]);

			if (rlen - off < flen)
				break;
			/* Listed once; every later request refused. */
			ck_assert_int_eq(buf[off + 4], answers == 0 ?
			    SSH_AGENT_IDENTITIES_ANSWER : SSH_AGENT_FAILURE);
			answers++;
			off += flen;
		}
		memmove(buf, buf + off, rlen - off);
		rlen -= off;
	}
	ck_assert_uint_eq(answers, N);
	ck_assert_int_eq(t->errors, 0);
	free(out);
}
END_TEST

static Suite *
signer_suite(void)
{
	Suite *s = suite_create("signer");
	TCase *tc = tcase_create("policy");

	tcase_add_checked_fixture(tc, fx_plain, fx_close);
	tcase_add_test(tc, identities_plain_and_cert);
	tcase_add_test(tc, set_user_on_reload);
	tcase_add_test(tc, refusal_is_logged);
	suite_add_tcase(s, tc);

	tc = tcase_create("policy-cert");
	tcase_add_checked_fixture(tc, fx_cert, fx_close);
	tcase_add_test(tc, other_requests_refused);
	suite_add_tcase(s, tc);

	/* Each opens its own key (fx_open); the teardown frees it. */
	tc = tcase_create("policy-each");
	tcase_add_checked_fixture(tc, NULL, fx_close);
	tcase_add_loop_test(tc, sign_valid_each_type, 0, NKEYS);
	tcase_add_loop_test(tc, sign_refused, 0, NRCASES);
	suite_add_tcase(s, tc);

	tc = tcase_create("mutation");
	tcase_add_checked_fixture(tc, NULL, fx_close);
	tcase_set_timeout(tc, 300);
	tcase_add_loop_test(tc, mutations_never_crash, 0, 4);
	suite_add_tcase(s, tc);

	tc = tcase_create("conn");
	tcase_add_checked_fixture(tc, fx_conn_plain, fx_conn_close);
	tcase_add_test(tc, conn_end_refuses_pending);
	tcase_add_test(tc, conn_bound_session);
	tcase_add_test(tc, conn_oversized_request_ends);
	tcase_add_test(tc, conn_largest_request_is_answered);
	tcase_add_test(tc, conn_eof_ends);
	tcase_add_test(tc, conn_sign_burst_once);
	tcase_add_test(tc, conn_backpressure);
	suite_add_tcase(s, tc);

	tc = tcase_create("conn-cert");
	tcase_add_checked_fixture(tc, fx_conn_cert, fx_conn_close);
	tcase_add_test(tc, conn_one_authentication);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	int rc;

	/* Refusals are the point of most tests: keep their lines quiet. */
	log_init("test_signer", LOG_LVL_ERROR, LOG_FMT_LOGFMT, 2);
	make_keys();
	/* Not load(): ck_assert only works inside a test. */
	if (sshkey_load(path("other"), &other_key, NULL, 0) != 0)
		return EXIT_FAILURE;
	rc = tu_run(signer_suite());
	sshkey_free(other_key);
	tu_sh("rm -rf %s", dir);
	return rc;
}
