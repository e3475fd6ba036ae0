/*
 * The wanted set of a discovery key (see wanted.h for the rule).  Lists
 * are few (one per proxy the key holds) and short (at most 256 entries);
 * the set is kept sorted by host key so that the lookups on every claim,
 * sweep and status row are logarithmic, and it is rebuilt only when a
 * list's content or currency changes, not on the repeats that come with
 * every heartbeat.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "wanted.h"

static struct wanted_list *
list_find(const struct wanted_set *s, const char *fp)
{
	for (uint32_t i = 0; i < s->n_lists; i++)
		if (strcmp(s->lists[i].fp, fp) == 0)
			return &s->lists[i];
	return NULL;
}

const struct wanted_list *
wanted_list_of(const struct wanted_set *s, const char *sender_fp)
{
	return list_find(s, sender_fp);
}

static int
cmp_fp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct wanted_proxy *)elem)->fp);
}

const struct wanted_proxy *
wanted_find(const struct wanted_set *s, const char *fp)
{
	if (s->n == 0)
		return NULL;
	return bsearch(fp, s->v, s->n, sizeof(*s->v), cmp_fp);
}

static void
list_drop(struct wanted_set *s, uint32_t i)
{
	free(s->lists[i].v);
	s->lists[i] = s->lists[--s->n_lists];
}

/* A slot for a new sender: grows the array, or evicts the stalest remembered list. */
static struct wanted_list *
list_slot(struct wanted_set *s, const char *fp)
{
	struct wanted_list *grown;
	uint32_t victim = UINT32_MAX;

	if (s->n_lists >= PROTO_MAX_PROXIES) {
		for (uint32_t i = 0; i < s->n_lists; i++)
			if (!s->lists[i].current && (victim == UINT32_MAX ||
			    s->lists[i].heard_ms < s->lists[victim].heard_ms))
				victim = i;
		if (victim == UINT32_MAX)
			return NULL;
		list_drop(s, victim);
	}
	grown = realloc(s->lists, (s->n_lists + 1) * sizeof(*s->lists));
	if (grown == NULL)
		return NULL;
	s->lists = grown;
	memset(&s->lists[s->n_lists], 0, sizeof(*s->lists));
	snprintf(s->lists[s->n_lists].fp, PROTO_FP_MAX, "%s", fp);
	return &s->lists[s->n_lists++];
}

static const struct wanted_entry *
entry_find(const struct wanted_list *l, const char *fp)
{
	for (uint32_t i = 0; l != NULL && i < l->n; i++)
		if (strcmp(l->v[i].px.fp, fp) == 0)
			return &l->v[i];
	return NULL;
}

static bool
same_entries(const struct wanted_list *l, const struct wanted_entry *v,
    uint32_t n)
{
	if (l->n != n)
		return false;
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(l->v[i].px.fp, v[i].px.fp) != 0 ||
		    strcmp(l->v[i].px.name, v[i].px.name) != 0 ||
		    l->v[i].trusted != v[i].trusted)
			return false;
	return true;
}

/* A repeat of a list in force: its proxies were confirmed just now. */
static void
touch(struct wanted_set *s, const struct wanted_list *l, uint64_t now_ms)
{
	for (uint32_t i = 0; i < l->n; i++) {
		struct wanted_proxy *px = (struct wanted_proxy *)wanted_find(s,
		    l->v[i].px.fp);

		if (px != NULL && l->v[i].trusted)
			px->last_seen_ms = now_ms;
	}
}

int
wanted_put(struct wanted_set *s, const char *sender_fp,
    const struct msg_discovery *d, const bool *trusted, uint64_t now_ms,
    bool *changed)
{
	struct wanted_list *l = list_find(s, sender_fp);
	uint32_t n = d->n_proxies < PROTO_MAX_PROXIES ? d->n_proxies :
	    PROTO_MAX_PROXIES;
	struct wanted_entry *v = NULL;
	const struct wanted_entry *old;

	*changed = false;
	if (n > 0 && (v = calloc(n, sizeof(*v))) == NULL)
		return TP_ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		v[i].px = d->proxies[i];
		v[i].px.name[PROTO_NAME_MAX - 1] = '\0';
		v[i].px.fp[PROTO_FP_MAX - 1] = '\0';
		v[i].trusted = trusted == NULL || trusted[i];
		old = entry_find(l, v[i].px.fp);
		v[i].first_ms = old != NULL ? old->first_ms : now_ms;
	}
	if (l != NULL && same_entries(l, v, n)) {
		free(v);
		l->heard_ms = now_ms;
		touch(s, l, now_ms);
		return 0;
	}
	if (l == NULL && (l = list_slot(s, sender_fp)) == NULL) {
		free(v);
		return s->n_lists >= PROTO_MAX_PROXIES ? TP_ERANGE : TP_ENOMEM;
	}
	free(l->v);
	l->v = v;
	l->n = n;
	l->heard_ms = now_ms;
	l->name[0] = '\0';
	l->untrusted = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (strcmp(v[i].px.fp, sender_fp) == 0)
			snprintf(l->name, sizeof(l->name), "%s", v[i].px.name);
		if (!v[i].trusted)
			l->untrusted++;
	}
	*changed = true;
	return 0;
}

bool
wanted_mark(struct wanted_set *s, bool (*held)(void *, const char *),
    void *arg, uint64_t now_ms)
{
	bool changed = false;

	for (uint32_t i = 0; i < s->n_lists; i++) {
		struct wanted_list *l = &s->lists[i];
		bool cur = held(arg, l->fp);

		if (cur == l->current)
			continue;
		if (!cur && now_ms > l->heard_ms)
			l->heard_ms = now_ms;
		l->current = cur;
		changed = true;
	}
	return changed;
}

uint64_t
wanted_next_expiry(const struct wanted_set *s, uint64_t ttl_ms)
{
	uint64_t next = UINT64_MAX;

	for (uint32_t i = 0; i < s->n_lists; i++) {
		if (s->lists[i].current)
			return UINT64_MAX;
		/* Kept while now - heard <= ttl: gone one ms later. */
		if (s->lists[i].heard_ms + ttl_ms + 1 < next)
			next = s->lists[i].heard_ms + ttl_ms + 1;
	}
	return next;
}

/* --- rebuild ------------------------------------------------------------------ */

struct ref {
	const struct wanted_entry	*e;
	const struct wanted_list	*l;
};

/* By host key; then the list that names it longest first (its source). */
static int
cmp_ref(const void *a, const void *b)
{
	const struct ref *x = a, *y = b;
	int c = strcmp(x->e->px.fp, y->e->px.fp);

	if (c != 0)
		return c;
	if (x->e->first_ms != y->e->first_ms)
		return x->e->first_ms < y->e->first_ms ? -1 : 1;
	return strcmp(x->l->fp, y->l->fp);
}

static bool
list_kept(const struct wanted_list *l, bool any_current, uint64_t now_ms,
    uint64_t ttl_ms)
{
	if (any_current)
		return l->current;
	return now_ms <= l->heard_ms || now_ms - l->heard_ms <= ttl_ms;
}

/* Fills v from the sorted refs (one proxy per host key); returns the count. */
static uint32_t
collapse(const struct wanted_set *s, const struct ref *r, size_t nr,
    struct wanted_proxy *v, bool current, uint64_t now_ms)
{
	uint32_t n = 0;

	for (size_t i = 0; i < nr && n < PROTO_MAX_PROXIES; ) {
		struct wanted_proxy *px = &v[n++];
		const struct wanted_proxy *was = wanted_find(s, r[i].e->px.fp);
		size_t j = i;

		memcpy(px->fp, r[i].e->px.fp, sizeof(px->fp));
		memcpy(px->name, r[i].e->px.name, sizeof(px->name));
		memcpy(px->source_fp, r[i].l->fp, sizeof(px->source_fp));
		memcpy(px->source_name, r[i].l->name, sizeof(px->source_name));
		px->since_ms = was != NULL ? was->since_ms : now_ms;
		px->current = current;
		for (; j < nr && strcmp(r[j].e->px.fp, px->fp) == 0; j++)
			if (r[j].l->heard_ms > px->last_seen_ms)
				px->last_seen_ms = r[j].l->heard_ms;
		i = j;
	}
	return n;
}

/* Reports the difference between the old and new sets (both sorted). */
static int
diff(const struct wanted_proxy *o, uint32_t no, const struct wanted_proxy *v,
    uint32_t nv, wanted_note_fn note, void *arg)
{
	uint32_t i = 0, j = 0;
	int added = 0;

	while (i < no || j < nv) {
		int c = i >= no ? 1 : j >= nv ? -1 : strcmp(o[i].fp, v[j].fp);

		if (c < 0) {
			if (note != NULL)
				note(arg, &o[i], false);
			i++;
		} else if (c > 0) {
			if (note != NULL)
				note(arg, &v[j], true);
			added++;
			j++;
		} else {
			i++;
			j++;
		}
	}
	return added;
}

int
wanted_rebuild(struct wanted_set *s, uint64_t now_ms, uint64_t ttl_ms,
    wanted_note_fn note, void *arg)
{
	bool any_current = false;
	struct wanted_proxy *v = NULL;
	struct ref *r = NULL;
	size_t nr = 0, k = 0;
	uint32_t n = 0;
	int added;

	for (uint32_t i = 0; i < s->n_lists; i++)
		any_current |= s->lists[i].current;
	for (uint32_t i = 0; i < s->n_lists; i++)
		if (list_kept(&s->lists[i], any_current, now_ms, ttl_ms))
			for (uint32_t e = 0; e < s->lists[i].n; e++)
				nr += s->lists[i].v[e].trusted;
	/* Everything that can fail comes before the set is touched. */
	if (nr > 0 && ((r = calloc(nr, sizeof(*r))) == NULL ||
	    (v = calloc(nr < PROTO_MAX_PROXIES ? nr : PROTO_MAX_PROXIES,
	    sizeof(*v))) == NULL)) {
		free(r);
		return TP_ENOMEM;
	}
	for (uint32_t i = 0; i < s->n_lists; i++) {
		const struct wanted_list *l = &s->lists[i];

		if (!list_kept(l, any_current, now_ms, ttl_ms))
			continue;
		for (uint32_t e = 0; e < l->n; e++)
			if (l->v[e].trusted)
				r[k++] = (struct ref){ &l->v[e], l };
	}
	if (nr > 0) {
		qsort(r, nr, sizeof(*r), cmp_ref);
		n = collapse(s, r, nr, v, any_current, now_ms);
	}
	free(r);
	added = diff(s->v, s->n, v, n, note, arg);
	free(s->v);
	s->v = v;
	s->n = n;
	s->have_current = any_current;
	for (uint32_t i = 0; i < s->n_lists; )
		if (list_kept(&s->lists[i], any_current, now_ms, ttl_ms))
			i++;
		else
			list_drop(s, i);
	return added;
}

void
wanted_clear(struct wanted_set *s)
{
	for (uint32_t i = 0; i < s->n_lists; i++)
		free(s->lists[i].v);
	free(s->lists);
	free(s->v);
	memset(s, 0, sizeof(*s));
}
