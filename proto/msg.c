/*
 * Message shapes.  One table row per field; see msg.h for the meaning of
 * each field.  Adding a field here changes the wire: bump PROTO_VERSION.
 */
#include <stddef.h>
#include <string.h>

#include "common/error.h"
#include "msg.h"
#include "schema.h"

#define U32(s, key, m, mx)  { key, FK_U32, offsetof(s, m), 0, 0, mx, NULL, 0 }
#define U64(s, key, m)      { key, FK_U64, offsetof(s, m), 0, 0, 0, NULL, 0 }
#define BOOL(s, key, m)     { key, FK_BOOL, offsetof(s, m), 0, 0, 0, NULL, 0 }
#define STR(s, key, m) \
	{ key, FK_STR, offsetof(s, m), sizeof(((s *)0)->m), 0, 0, NULL, 0 }
#define BIN(s, key, m, l) \
	{ key, FK_BIN, offsetof(s, m), sizeof(((s *)0)->m), offsetof(s, l), 0, NULL, 0 }
#define ARR(s, key, m, n, sch, et) \
	{ key, FK_ARRAY, offsetof(s, m), sizeof(((s *)0)->m) / sizeof(et), \
	  offsetof(s, n), 0, &sch, sizeof(et) }
#define SCHEMA(name, tbl) \
	static const struct schema name = { tbl, sizeof(tbl) / sizeof(tbl[0]) }

static const struct field f_fp[] = {
	STR(struct msg_fp, "fp", fp),
};
SCHEMA(s_fp, f_fp);

static const struct field f_name[] = {
	STR(struct msg_name, "name", name),
};
SCHEMA(s_name, f_name);

static const struct field f_keyblob[] = {
	BIN(struct msg_keyblob, "blob", blob, len),
};
SCHEMA(s_keyblob, f_keyblob);

static const struct field f_forward_spec[] = {
	U32(struct msg_forward_spec, "id", id, UINT32_MAX),
	STR(struct msg_forward_spec, "host", listen_host),
	U32(struct msg_forward_spec, "port", listen_port, 65535),
};
SCHEMA(s_forward_spec, f_forward_spec);

static const struct field f_config[] = {
	U32(struct msg_config, "v", version, UINT32_MAX),
	STR(struct msg_config, "cluster", cluster),
	STR(struct msg_config, "dial", dial_addr),
	STR(struct msg_config, "dial_host", dial_host),
	STR(struct msg_config, "user", user),
	U32(struct msg_config, "role", role, AGENT_ROLE_DISCOVERY),
	ARR(struct msg_config, "pinned", pinned, n_pinned, s_fp, struct msg_fp),
	ARR(struct msg_config, "ca", ca, n_ca, s_keyblob, struct msg_keyblob),
	ARR(struct msg_config, "revoked", revoked, n_revoked, s_fp, struct msg_fp),
	ARR(struct msg_config, "forwards", forwards, n_forwards, s_forward_spec,
	    struct msg_forward_spec),
	ARR(struct msg_config, "wanted", wanted, n_wanted, s_fp, struct msg_fp),
	ARR(struct msg_config, "principals", principals, n_principals, s_name,
	    struct msg_name),
	BOOL(struct msg_config, "discovery", discovery),
	U32(struct msg_config, "ka_ms", keepalive_ms, 3600000),
	U32(struct msg_config, "ka_count", keepalive_count, 100),
	U32(struct msg_config, "hs_ms", handshake_ms, 3600000),
	U32(struct msg_config, "max_ch", max_channels, 65535),
	U32(struct msg_config, "stats_ms", stats_ms, 3600000),
	STR(struct msg_config, "ciphers", ciphers),
	STR(struct msg_config, "kex", kex),
	STR(struct msg_config, "hostkeys", hostkeys),
};
SCHEMA(s_config, f_config);

static const struct field f_close[] = {
	U32(struct msg_close, "deadline_ms", deadline_ms, 3600000),
	STR(struct msg_close, "reason", reason),
};
SCHEMA(s_close, f_close);

static const struct field f_dial_result[] = {
	U32(struct msg_dial_result, "ch", channel_id, UINT32_MAX),
	BOOL(struct msg_dial_result, "ok", ok),
	STR(struct msg_dial_result, "error", error),
};
SCHEMA(s_dial_result, f_dial_result);

static const struct field f_ping[] = {
	U64(struct msg_ping, "seq", seq),
};
SCHEMA(s_ping, f_ping);

static const struct field f_claim_result[] = {
	BOOL(struct msg_claim_result, "granted", granted),
	STR(struct msg_claim_result, "reason", reason),
};
SCHEMA(s_claim_result, f_claim_result);

static const struct field f_bind_result[] = {
	BOOL(struct msg_bind_result, "ok", ok),
	STR(struct msg_bind_result, "reason", reason),
};
SCHEMA(s_bind_result, f_bind_result);

#ifdef TP_TEST_HOOKS
/* Fault injection exists only in test_hooks builds: elsewhere the type is unknown. */
static const struct field f_test_hook[] = {
	U32(struct msg_test_hook, "action", action, 255),
};
SCHEMA(s_test_hook, f_test_hook);
#endif

static const struct field f_ready[] = {
	U32(struct msg_ready, "v", version, UINT32_MAX),
	STR(struct msg_ready, "sandbox", sandbox),
};
SCHEMA(s_ready, f_ready);

static const struct field f_state[] = {
	U32(struct msg_state, "state", state, AGENT_STATE_MAX),
	STR(struct msg_state, "fp", fp),
	STR(struct msg_state, "name", name),
	STR(struct msg_state, "reason", reason),
	U32(struct msg_state, "code", code, 255),
};
SCHEMA(s_state, f_state);

static const struct field f_claim[] = {
	STR(struct msg_claim, "fp", fp),
	STR(struct msg_claim, "name", name),
};
SCHEMA(s_claim, f_claim);

static const struct field f_proxy[] = {
	STR(struct msg_proxy, "name", name),
	STR(struct msg_proxy, "fp", fp),
};
SCHEMA(s_proxy, f_proxy);

static const struct field f_discovery[] = {
	STR(struct msg_discovery, "cluster", cluster),
	ARR(struct msg_discovery, "proxies", proxies, n_proxies, s_proxy,
	    struct msg_proxy),
};
SCHEMA(s_discovery, f_discovery);

static const struct field f_dial_request[] = {
	U32(struct msg_dial_request, "fwd", forward_id, UINT32_MAX),
	U32(struct msg_dial_request, "ch", channel_id, UINT32_MAX),
	STR(struct msg_dial_request, "orig_host", orig_host),
	U32(struct msg_dial_request, "orig_port", orig_port, 65535),
};
SCHEMA(s_dial_request, f_dial_request);

static const struct field f_stats[] = {
	U64(struct msg_stats, "rx", rx_bytes),
	U64(struct msg_stats, "tx", tx_bytes),
	U32(struct msg_stats, "ch_open", channels_open, UINT32_MAX),
	U64(struct msg_stats, "ch_total", channels_total),
	U64(struct msg_stats, "dial_fail", dial_failures),
	U64(struct msg_stats, "refused", channels_refused),
	U64(struct msg_stats, "rx_age_ms", rx_age_ms),
};
SCHEMA(s_stats, f_stats);

static const struct field f_forward[] = {
	U32(struct msg_forward, "id", id, UINT32_MAX),
	BOOL(struct msg_forward, "bound", bound),
	U32(struct msg_forward, "port", port, 65535),
	STR(struct msg_forward, "error", error),
};
SCHEMA(s_forward, f_forward);

static const struct field f_sandbox_violation[] = {
	U32(struct msg_sandbox_violation, "nr", nr, UINT32_MAX),
	STR(struct msg_sandbox_violation, "name", name),
};
SCHEMA(s_sandbox_violation, f_sandbox_violation);

static const struct field f_session_bind[] = {
	BIN(struct msg_session_bind, "hostkey", hostkey, hostkey_len),
	BIN(struct msg_session_bind, "sid", sid, sid_len),
	BIN(struct msg_session_bind, "sig", sig, sig_len),
};
SCHEMA(s_session_bind, f_session_bind);

#define DESC(t, n, d, sch, st) { t, n, d, FD_NEVER, 0, &sch, sizeof(st) }
/* A message that carries an fd exactly when its bool field `flag` is true. */
#define DESC_FD_IF(t, n, d, sch, st, flag) \
	{ t, n, d, FD_IF_FLAG, offsetof(st, flag), &sch, sizeof(st) }

static const struct msg_desc descs[] = {
	DESC(MSG_CONFIG, "CONFIG", MSG_TO_WORKER, s_config,
	    struct msg_config),
	DESC(MSG_CLOSE, "CLOSE", MSG_TO_WORKER, s_close,
	    struct msg_close),
	DESC_FD_IF(MSG_DIAL_RESULT, "DIAL_RESULT", MSG_TO_WORKER,
	    s_dial_result, struct msg_dial_result, ok),
	DESC(MSG_PING, "PING", MSG_TO_WORKER, s_ping,
	    struct msg_ping),
	DESC(MSG_CLAIM_RESULT, "CLAIM_RESULT", MSG_TO_WORKER,
	    s_claim_result, struct msg_claim_result),
	DESC(MSG_BIND_RESULT, "BIND_RESULT", MSG_TO_WORKER,
	    s_bind_result, struct msg_bind_result),
#ifdef TP_TEST_HOOKS
	DESC(MSG_TEST_HOOK, "TEST_HOOK", MSG_TO_WORKER, s_test_hook,
	    struct msg_test_hook),
#endif
	DESC(MSG_READY, "READY", MSG_TO_SUPERVISOR, s_ready,
	    struct msg_ready),
	DESC(MSG_STATE, "STATE", MSG_TO_SUPERVISOR, s_state,
	    struct msg_state),
	DESC(MSG_CLAIM, "CLAIM", MSG_TO_SUPERVISOR, s_claim,
	    struct msg_claim),
	DESC(MSG_DISCOVERY, "DISCOVERY", MSG_TO_SUPERVISOR,
	    s_discovery, struct msg_discovery),
	DESC(MSG_DIAL_REQUEST, "DIAL_REQUEST", MSG_TO_SUPERVISOR,
	    s_dial_request, struct msg_dial_request),
	DESC(MSG_STATS, "STATS", MSG_TO_SUPERVISOR, s_stats,
	    struct msg_stats),
	DESC(MSG_PONG, "PONG", MSG_TO_SUPERVISOR, s_ping,
	    struct msg_ping),
	DESC(MSG_FORWARD, "FORWARD", MSG_TO_SUPERVISOR, s_forward,
	    struct msg_forward),
	DESC(MSG_SANDBOX_VIOLATION, "SANDBOX_VIOLATION", MSG_TO_SUPERVISOR,
	    s_sandbox_violation, struct msg_sandbox_violation),
	DESC(MSG_SESSION_BIND, "SESSION_BIND", MSG_TO_SUPERVISOR,
	    s_session_bind, struct msg_session_bind),
};

const struct msg_desc *
msg_desc_lookup(uint32_t type)
{
	for (size_t i = 0; i < sizeof(descs) / sizeof(descs[0]); i++)
		if (descs[i].type == type)
			return &descs[i];
	return NULL;
}

bool
msg_wants_fd(const struct msg *m)
{
	const struct msg_desc *d = msg_desc_lookup(m->type);
	bool flag;

	if (d == NULL || d->fd_rule == FD_NEVER)
		return false;
	memcpy(&flag, (const uint8_t *)&m->u + d->fd_flag, sizeof(flag));
	return flag;
}

const char *
msg_name(uint32_t type)
{
	const struct msg_desc *d = msg_desc_lookup(type);

	return d != NULL ? d->name : "?";
}

size_t
msg_payload_size(uint32_t type)
{
	const struct msg_desc *d = msg_desc_lookup(type);

	return d != NULL ? d->payload_size : 0;
}

/* One map of a payload; lengths are clamped to the field's capacity. */
static void
copy_map(const struct schema *s, uint8_t *dst, const uint8_t *src)
{
	for (size_t i = 0; i < s->nfields; i++) {
		const struct field *f = &s->fields[i];
		uint32_t n;

		switch (f->kind) {
		case FK_U32:
			memcpy(dst + f->off, src + f->off, sizeof(uint32_t));
			break;
		case FK_U64:
			memcpy(dst + f->off, src + f->off, sizeof(uint64_t));
			break;
		case FK_BOOL:
			memcpy(dst + f->off, src + f->off, sizeof(bool));
			break;
		case FK_STR:
			n = (uint32_t)strnlen((const char *)src + f->off,
			    f->cap - 1);
			memcpy(dst + f->off, src + f->off, n);
			dst[f->off + n] = '\0';
			break;
		case FK_BIN:
		case FK_ARRAY:
			memcpy(&n, src + f->len_off, sizeof(n));
			if (n > f->cap)
				n = (uint32_t)f->cap;
			memcpy(dst + f->len_off, &n, sizeof(n));
			if (f->kind == FK_BIN)
				memcpy(dst + f->off, src + f->off, n);
			else
				for (uint32_t j = 0; j < n; j++)
					copy_map(f->elem,
					    dst + f->off + j * f->elem_size,
					    src + f->off + j * f->elem_size);
			break;
		}
	}
}

int
msg_payload_copy(uint32_t type, void *dst, const void *src)
{
	const struct msg_desc *d = msg_desc_lookup(type);

	if (d == NULL || dst == NULL || src == NULL)
		return TP_EINVAL;
	copy_map(d->schema, dst, src);
	return 0;
}

enum msg_dir
msg_direction(uint32_t type)
{
	const struct msg_desc *d = msg_desc_lookup(type);

	return d != NULL ? d->dir : 0;
}

const char *
agent_state_name(uint32_t state)
{
	static const char *const names[] = { "?", "connecting", "discovering",
	    "connected", "discovered", "disconnected" };

	return state <= AGENT_STATE_MAX ? names[state] : "?";
}

uint32_t
agent_up_state(uint32_t role)
{
	return role == AGENT_ROLE_DISCOVERY ? AGENT_DISCOVERED :
	    AGENT_CONNECTED;
}

void
msg_init(struct msg *m, enum msg_type type)
{
	size_t n = msg_payload_size(type);

	memset(m, 0, offsetof(struct msg, u));
	m->type = type;
	m->fd = -1;
	/* Only the payload in use is cleared: DISCOVERY alone is ~50 KiB. */
	memset(&m->u, 0, n != 0 ? n : sizeof(m->u));
}
