/* The UID map in memory: folders and their entries, lookup, sync with a
 * listing, re-matching after a rebuild, and the setters that track changes.
 * The file lives in uidmap_file.c. */
#include "store/uidmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- the map in memory ---- */

static void
folder_clear(struct uidmap_folder *f)
{
	free(f->name);
	free(f->entries);
	memset(f, 0, sizeof(*f));
}

void
uidmap_free(struct uidmap **mp)
{
	struct uidmap *m = *mp;
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n_folders; i++)
		folder_clear(&m->folders[i]);
	free(m->folders);
	free(m->path);
	free(m);
	*mp = NULL;
}

struct uidmap *
uidmap_new(const char *dir, const char *file_name)
{
	size_t dl = strlen(dir), nl = strlen(file_name);
	bool slash = dl > 0 && dir[dl - 1] == '/';
	struct uidmap *m;

	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	/* Allocated in full so that folder pointers stay valid. */
	m->folders = calloc(UIDMAP_FOLDERS_MAX, sizeof(*m->folders));
	m->path = malloc(dl + 1 + nl + 1);
	if (m->folders == NULL || m->path == NULL) {
		uidmap_free(&m);
		return NULL;
	}
	memcpy(m->path, dir, dl);
	if (!slash)
		m->path[dl++] = '/';
	memcpy(m->path + dl, file_name, nl + 1);
	return m;
}

static struct uidmap_folder *
folder_get(struct uidmap *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->n_folders; i++) {
		if (strcmp(m->folders[i].name, name) == 0)
			return &m->folders[i];
	}
	return NULL;
}

struct uidmap_folder *
uidmap_folder(struct uidmap *m, const char *name, bool create)
{
	struct uidmap_folder *f = folder_get(m, name);

	if (f != NULL || !create || m->n_folders == UIDMAP_FOLDERS_MAX)
		return f;
	f = &m->folders[m->n_folders];
	memset(f, 0, sizeof(*f));
	f->name = strdup(name);
	if (f->name == NULL)
		return NULL;
	m->n_folders++;
	m->dirty = true;
	return f;
}

struct uidmap_entry *
uidmap_find(struct uidmap_folder *f, uint32_t uid)
{
	size_t lo = 0, hi = f->count, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (f->entries[mid].uid == uid)
			return &f->entries[mid];
		if (f->entries[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* ---- sync ---- */

static bool
ascending(const uint32_t *uids, size_t n)
{
	size_t i;

	for (i = 1; i < n; i++) {
		if (uids[i] <= uids[i - 1])
			return false;
	}
	return true;
}

/* Room for n entries and some growth; 0 when that overflows. */
static size_t
entries_cap(size_t n)
{
	if (n > SIZE_MAX / sizeof(struct uidmap_entry) / 2)
		return 0;
	return n + n / 8 + 16;
}

static void
fresh_entry(struct uidmap_entry *e, uint32_t validity, uint32_t uid)
{
	memset(e, 0, sizeof(*e));
	e->uid = uid;
	e->uidl_validity = validity;
	e->uidl_uid = uid;
}

/* How many entries the listing keeps. */
static size_t
count_kept(const struct uidmap_folder *f, const uint32_t *uids, size_t n)
{
	size_t i = 0, j = 0, kept = 0;

	while (i < f->count && j < n) {
		if (f->entries[i].uid < uids[j]) {
			i++;
		} else if (f->entries[i].uid > uids[j]) {
			j++;
		} else {
			kept++;
			i++;
			j++;
		}
	}
	return kept;
}

/* Drops, in place, the entries whose UIDs are not listed. */
static void
prune(struct uidmap_folder *f, const uint32_t *uids, size_t n)
{
	size_t i, j = 0, w = 0;

	for (i = 0; i < f->count; i++) {
		while (j < n && uids[j] < f->entries[i].uid)
			j++;
		if (j < n && uids[j] == f->entries[i].uid)
			f->entries[w++] = f->entries[i];
	}
	f->count = w;
}

/*
 * Adds the missing entries in place, every entry being listed: from the
 * end, writes never overtake the entries still to be moved.
 */
static void
merge_backward(struct uidmap_folder *f, const uint32_t *uids, size_t n)
{
	struct uidmap_entry *e = f->entries;
	size_t i = f->count, j = n;

	while (j-- > 0) {
		if (i > 0 && e[i - 1].uid == uids[j])
			e[j] = e[--i];
		else
			fresh_entry(&e[j], f->uidvalidity, uids[j]);
	}
}

static int
grow(struct uidmap_folder *f, size_t n)
{
	struct uidmap_entry *e;
	size_t cap;

	if (n <= f->cap)
		return 0;
	cap = entries_cap(n);
	if (cap == 0)
		return -ENOMEM;
	e = realloc(f->entries, cap * sizeof(*e));
	if (e == NULL)
		return -ENOMEM;
	f->entries = e;
	f->cap = cap;
	return 0;
}

int
uidmap_sync(struct uidmap *m, struct uidmap_folder *f,
	    const uint32_t *uids, size_t n)
{
	size_t kept;
	int r = 0;

	if (!ascending(uids, n))
		return -EINVAL;
	kept = count_kept(f, uids, n);
	if (kept == f->count && kept == n)
		return 0;
	/* First, so that a failure changes nothing. */
	r = grow(f, n);
	if (r < 0)
		return r;
	if (kept < f->count)
		prune(f, uids, n);
	if (n > kept)
		merge_backward(f, uids, n);
	f->count = n;
	m->dirty = true;
	return 0;
}

/* ---- rematch ---- */

/*
 * An old entry's sort key: the fingerprint as two big-endian words, and
 * its index, which orders by UID as the entries do. 32 bytes, which qsort
 * moves directly.
 */
struct fpkey {
	uint64_t hi, lo;
	uint64_t size;
	uint32_t idx;
};

/*
 * Old entries sorted by fingerprint (and size), then UID; next[g] is where
 * the search for an unused candidate resumes in the run starting at g, so
 * every position is skipped at most once.
 */
struct fpindex {
	struct fpkey *v;
	size_t *next;
	size_t n;
	bool by_size;
};

/* What identifies a message, strongest first: the server's own id, the
 * fingerprint, the fingerprint version 1 wrote. */
enum key_kind {
	KEY_OID = 0,
	KEY_FP,
	KEY_OLD_FP,
	KEY_KINDS,
};

struct rematch {
	bool *used;		/* per old entry */
	size_t *match;		/* per current message: old index or NONE */
	struct fpindex any[KEY_KINDS], by_size[KEY_KINDS];
};

#define NONE SIZE_MAX

static bool
has_fp(const uint8_t fp[UIDMAP_FP_LEN])
{
	static const uint8_t zero[UIDMAP_FP_LEN];

	/* All zeros is what a failed hasher gives: not a fingerprint. */
	return memcmp(fp, zero, UIDMAP_FP_LEN) != 0;
}

static uint64_t
be64(const uint8_t *p)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static struct fpkey
key_of(const uint8_t fp[UIDMAP_FP_LEN], uint64_t size, size_t idx)
{
	return (struct fpkey){ .hi = be64(fp), .lo = be64(fp + 8),
			       .size = size, .idx = (uint32_t)idx };
}

#define CMP(a, b) (((a) > (b)) - ((a) < (b)))

static int
cmp_key(const struct fpkey *a, const struct fpkey *b, bool by_size)
{
	if (a->hi != b->hi)
		return CMP(a->hi, b->hi);
	if (a->lo != b->lo)
		return CMP(a->lo, b->lo);
	return by_size ? CMP(a->size, b->size) : 0;
}

static int
cmp_fp(const void *x, const void *y)
{
	const struct fpkey *a = x, *b = y;
	int c = cmp_key(a, b, false);

	return c != 0 ? c : CMP(a->idx, b->idx);
}

static int
cmp_fp_size(const void *x, const void *y)
{
	const struct fpkey *a = x, *b = y;
	int c = cmp_key(a, b, true);

	return c != 0 ? c : CMP(a->idx, b->idx);
}

/* The entry's key of that kind, or NULL. */
static const uint8_t *
entry_key(const struct uidmap_entry *e, enum key_kind kind)
{
	bool old;

	switch (kind) {
	case KEY_OID:
		return (e->flags & UIDMAP_HAS_OID) ? e->oid : NULL;
	case KEY_FP:
	case KEY_OLD_FP:
		if (!(e->flags & UIDMAP_HAS_FP) || !has_fp(e->fp))
			return NULL;
		/* Each fingerprint is compared with its own version's. */
		old = (e->flags & UIDMAP_OLD_FP) != 0;
		return old == (kind == KEY_OLD_FP) ? e->fp : NULL;
	case KEY_KINDS:		/* the number of kinds, never one */
		break;
	}
	return NULL;
}

static const uint8_t *
cur_key(const struct uidmap_current *c, enum key_kind kind)
{
	switch (kind) {
	case KEY_OID:
		return c->has_oid ? c->oid : NULL;
	case KEY_FP:
		return c->has_fp && has_fp(c->fp) ? c->fp : NULL;
	case KEY_OLD_FP:
		return c->has_fp && has_fp(c->old_fp) ? c->old_fp : NULL;
	case KEY_KINDS:		/* the number of kinds, never one */
		break;
	}
	return NULL;
}

static int
index_build(struct fpindex *x, const struct uidmap_folder *f, bool by_size,
	    enum key_kind kind)
{
	const uint8_t *k;
	size_t i;

	x->by_size = by_size;
	x->n = 0;
	x->v = malloc((f->count ? f->count : 1) * sizeof(*x->v));
	x->next = malloc((f->count ? f->count : 1) * sizeof(*x->next));
	if (x->v == NULL || x->next == NULL)
		return -ENOMEM;
	for (i = 0; i < f->count; i++) {
		k = entry_key(&f->entries[i], kind);
		if (k != NULL)
			x->v[x->n++] = key_of(k, f->entries[i].size, i);
	}
	for (i = 0; i < x->n; i++)
		x->next[i] = i;
	qsort(x->v, x->n, sizeof(*x->v), by_size ? cmp_fp_size : cmp_fp);
	return 0;
}

static void
index_free(struct fpindex *x)
{
	free(x->v);
	free(x->next);
}

/* The first unused old entry with that key, marked used, or NONE. */
static size_t
index_take(struct rematch *rm, struct fpindex *x, const struct fpkey *k)
{
	size_t lo = 0, hi = x->n, mid, g, p;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (cmp_key(&x->v[mid], k, x->by_size) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	g = lo;
	if (g == x->n || cmp_key(&x->v[g], k, x->by_size) != 0)
		return NONE;
	p = x->next[g];
	while (p < x->n && cmp_key(&x->v[p], k, x->by_size) == 0 &&
	       rm->used[x->v[p].idx])
		p++;
	x->next[g] = p;
	if (p == x->n || cmp_key(&x->v[p], k, x->by_size) != 0)
		return NONE;
	rm->used[x->v[p].idx] = true;
	x->next[g] = p + 1;
	return x->v[p].idx;
}

/* One kind of key: equal sizes first over all messages (not for the
 * server's id, which needs no tie-break), then any candidate, by UID. */
static void
match_kind(struct rematch *rm, const struct uidmap_current *cur, size_t n,
	   enum key_kind kind)
{
	const uint8_t *key;
	struct fpkey k;
	size_t j;

	if (kind != KEY_OID) {
		for (j = 0; j < n; j++) {
			key = cur_key(&cur[j], kind);
			if (rm->match[j] != NONE || key == NULL)
				continue;
			k = key_of(key, cur[j].size, 0);
			rm->match[j] = index_take(rm, &rm->by_size[kind], &k);
		}
	}
	for (j = 0; j < n; j++) {
		key = cur_key(&cur[j], kind);
		if (rm->match[j] != NONE || key == NULL)
			continue;
		k = key_of(key, cur[j].size, 0);
		rm->match[j] = index_take(rm, &rm->any[kind], &k);
	}
}

static size_t
match_all(struct rematch *rm, const struct uidmap_current *cur, size_t n)
{
	size_t j, matched = 0;
	int kind;

	for (j = 0; j < n; j++)
		rm->match[j] = NONE;
	for (kind = 0; kind < KEY_KINDS; kind++)
		match_kind(rm, cur, n, (enum key_kind)kind);
	for (j = 0; j < n; j++)
		matched += rm->match[j] != NONE;
	return matched;
}

static void
rematched_entry(struct uidmap *m, struct uidmap_entry *e,
		const struct uidmap_entry *old, const struct uidmap_current *c,
		uint32_t validity)
{
	if (old == NULL) {
		fresh_entry(e, validity, c->uid);
		e->size = c->size;
	} else {
		*e = *old;
		e->uid = c->uid;
		/* A rebuilt mbox rewrites headers: the size may have moved. */
		if (!uidmap_check_size(m, e, c->size))
			e->size = c->size;
	}
	/* What the current message says about itself is the newest. */
	if (cur_key(c, KEY_FP) != NULL)
		uidmap_set_fp(m, e, c->fp);
	if (c->has_oid)
		uidmap_set_oid(m, e, c->oid);
}

static void
rematch_free(struct rematch *rm)
{
	int kind;

	free(rm->used);
	free(rm->match);
	for (kind = 0; kind < KEY_KINDS; kind++) {
		index_free(&rm->any[kind]);
		index_free(&rm->by_size[kind]);
	}
}

static bool
cur_ascending(const struct uidmap_current *cur, size_t n)
{
	size_t i;

	for (i = 1; i < n; i++) {
		if (cur[i].uid <= cur[i - 1].uid)
			return false;
	}
	return true;
}

int
uidmap_rematch(struct uidmap *m, struct uidmap_folder *f,
	       uint32_t new_validity, const struct uidmap_current *cur,
	       size_t n, size_t *matched_r)
{
	struct rematch rm = { 0 };
	struct uidmap_entry *e;
	size_t j, matched, cap;
	bool bad;
	int kind;

	if (!cur_ascending(cur, n))
		return -EINVAL;
	if (f->count > UINT32_MAX)
		return -ENOMEM;
	rm.used = calloc(f->count ? f->count : 1, sizeof(*rm.used));
	rm.match = malloc((n ? n : 1) * sizeof(*rm.match));
	cap = entries_cap(n);
	e = cap != 0 ? malloc(cap * sizeof(*e)) : NULL;
	bad = rm.used == NULL || rm.match == NULL || e == NULL;
	for (kind = 0; kind < KEY_KINDS && !bad; kind++)
		bad = index_build(&rm.any[kind], f, false, kind) < 0 ||
		      index_build(&rm.by_size[kind], f, true, kind) < 0;
	if (bad) {
		rematch_free(&rm);
		free(e);
		return -ENOMEM;
	}
	matched = match_all(&rm, cur, n);
	for (j = 0; j < n; j++)
		rematched_entry(m, &e[j], rm.match[j] == NONE ? NULL :
				&f->entries[rm.match[j]], &cur[j], new_validity);
	rematch_free(&rm);
	free(f->entries);
	f->entries = e;
	f->count = n;
	f->cap = cap;
	f->uidvalidity = new_validity;
	m->dirty = true;
	if (matched_r != NULL)
		*matched_r = matched;
	return 0;
}

/* ---- setters ---- */

void
uidmap_set_size(struct uidmap *m, struct uidmap_entry *e, uint64_t size,
		uint64_t listed)
{
	if (e->size == size && e->listed == listed &&
	    (e->flags & UIDMAP_EXACT))
		return;
	e->size = size;
	e->listed = listed;
	e->flags |= UIDMAP_EXACT;
	m->dirty = true;
}

bool
uidmap_check_size(struct uidmap *m, struct uidmap_entry *e, uint64_t listed)
{
	if (!(e->flags & UIDMAP_EXACT))
		return false;
	if (e->listed == listed)
		return true;
	if (e->listed == 0) {
		/* Learned by version 1, which kept no server size: from now on
		 * it is this one. */
		e->listed = listed;
	} else {
		e->flags &= (uint8_t)~UIDMAP_EXACT;
		e->listed = 0;
		e->size = listed;
	}
	m->dirty = true;
	return (e->flags & UIDMAP_EXACT) != 0;
}

void
uidmap_set_retrieved(struct uidmap *m, struct uidmap_entry *e)
{
	if (e->flags & UIDMAP_RETRIEVED)
		return;
	e->flags |= UIDMAP_RETRIEVED;
	m->dirty = true;
}

void
uidmap_set_oid(struct uidmap *m, struct uidmap_entry *e,
	       const uint8_t oid[UIDMAP_FP_LEN])
{
	if ((e->flags & UIDMAP_HAS_OID) &&
	    memcmp(e->oid, oid, UIDMAP_FP_LEN) == 0)
		return;
	memcpy(e->oid, oid, UIDMAP_FP_LEN);
	e->flags |= UIDMAP_HAS_OID;
	m->dirty = true;
}

void
uidmap_set_fp(struct uidmap *m, struct uidmap_entry *e,
	      const uint8_t fp[UIDMAP_FP_LEN])
{
	if ((e->flags & UIDMAP_HAS_FP) && !(e->flags & UIDMAP_OLD_FP) &&
	    memcmp(e->fp, fp, UIDMAP_FP_LEN) == 0)
		return;
	memcpy(e->fp, fp, UIDMAP_FP_LEN);
	e->flags = (uint8_t)((e->flags | UIDMAP_HAS_FP) & ~UIDMAP_OLD_FP);
	m->dirty = true;
}

void
uidmap_set_hidden(struct uidmap *m, struct uidmap_entry *e)
{
	if (e->flags & UIDMAP_HIDDEN)
		return;
	e->flags |= UIDMAP_HIDDEN;
	m->dirty = true;
}

void
uidmap_set_baseline(struct uidmap *m, struct uidmap_folder *f,
		    uint32_t validity, uint32_t uidnext)
{
	if (f->has_baseline && f->baseline_validity == validity &&
	    f->baseline_uidnext == uidnext)
		return;
	f->has_baseline = true;
	f->baseline_validity = validity;
	f->baseline_uidnext = uidnext;
	m->dirty = true;
}
