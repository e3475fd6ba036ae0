/*
 * The wanted set of a discovery key: the last full list each proxy of the
 * cluster announced, and the set of proxies those lists put in force.
 * Pure data: no processes, no clock (times are passed in), no logging.
 *
 * The rule (docs/discovery-protocol.md, "Which proxies are wanted"):
 * - a proxy's newest list replaces its previous one as a whole;
 * - a list is current while an agent of the cluster holds its sender (the
 *   pool decides who holds what: wanted_mark);
 * - the wanted set is the union of the current lists, without the host
 *   keys this node could never trust;
 * - only while no list is current do the last lists heard stay in force,
 *   each until `ttl` after it was last heard (they are dropped as soon as
 *   one list is current again).
 */
#ifndef TP_SUPERVISOR_WANTED_H
#define TP_SUPERVISOR_WANTED_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/msg.h"

/* One proxy named by a list. */
struct wanted_entry {
	struct msg_proxy	 px;		/* name, fp */
	bool			 trusted;	/* this node could trust its key */
	uint64_t		 first_ms;	/* since when this list names it */
};

/* The last full list one proxy (its sender, by host key) announced. */
struct wanted_list {
	char			 fp[PROTO_FP_MAX];	/* sender's host key */
	char			 name[PROTO_NAME_MAX];	/* sender's own name in it, or "" */
	uint64_t		 heard_ms;	/* last announcement (or repeat) */
	bool			 current;	/* an agent holds its sender */
	uint32_t		 n;
	uint32_t		 untrusted;	/* entries not trusted */
	struct wanted_entry	*v;
};

/* A proxy of the wanted set. */
struct wanted_proxy {
	char		name[PROTO_NAME_MAX];
	char		fp[PROTO_FP_MAX];
	uint64_t	since_ms;	/* in the set since */
	uint64_t	last_seen_ms;	/* the freshest list naming it was heard */
	char		source_fp[PROTO_FP_MAX];	/* the list naming it longest */
	char		source_name[PROTO_NAME_MAX];	/* its sender's name, or "" */
	bool		current;	/* named by a current list, not remembered */
};

struct wanted_set {
	uint32_t		 n_lists;
	struct wanted_list	*lists;
	uint32_t		 n;		/* the set in force, sorted by fp */
	struct wanted_proxy	*v;
	bool			 have_current;	/* some list is current */
};

/* What a rebuild changed; note() is called once per proxy added/removed. */
typedef void (*wanted_note_fn)(void *arg, const struct wanted_proxy *px,
    bool added);

/*
 * Stores sender's full list d (trusted[i] for d->proxies[i]; NULL = all
 * trusted), replacing its previous one.  *changed is set when the content
 * or trust differs from the previous list (a rebuild is then due); a
 * repeat only refreshes the time it was heard.  Returns 0, TP_ENOMEM, or
 * TP_ERANGE when the set already holds PROTO_MAX_PROXIES other lists.
 */
int wanted_put(struct wanted_set *s, const char *sender_fp,
    const struct msg_discovery *d, const bool *trusted, uint64_t now_ms,
    bool *changed);

/*
 * Sets each list's `current` from held(arg, sender_fp).  A list whose
 * sender is no longer held counts as heard at now_ms: it was current until
 * then, so a remembered list's TTL runs from the moment the last agent
 * that could hear a fresher one went away.  Returns true when any flag
 * changed (a rebuild is then due).
 */
bool wanted_mark(struct wanted_set *s, bool (*held)(void *, const char *),
    void *arg, uint64_t now_ms);

/*
 * Applies the rule: drops remembered lists once a list is current, or
 * those heard more than ttl_ms ago while none is; recomputes the set.
 * Returns the number of proxies added (>= 0) or TP_ENOMEM (the set is
 * left as it was).
 */
int wanted_rebuild(struct wanted_set *s, uint64_t now_ms, uint64_t ttl_ms,
    wanted_note_fn note, void *arg);

/* When the next remembered list expires (UINT64_MAX: none does). */
uint64_t wanted_next_expiry(const struct wanted_set *s, uint64_t ttl_ms);

/* The proxy with this host key in the set, or NULL. */
const struct wanted_proxy *wanted_find(const struct wanted_set *s,
    const char *fp);

/* Sender's list, or NULL. */
const struct wanted_list *wanted_list_of(const struct wanted_set *s,
    const char *sender_fp);

/* Frees everything; the set is empty and reusable afterwards. */
void wanted_clear(struct wanted_set *s);

#endif
