/* One folder's listing, through the UID map, into the maildrop: baselines,
 * since windows, rematch after a rebuild, hidden messages. */
#include "mailbox/snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool
snapshot_needs_fps(struct uidmap *map, const char *name, uint32_t uidvalidity)
{
	struct uidmap_folder *f = uidmap_folder(map, name, false);

	return f != NULL && f->uidvalidity != 0 &&
	       f->uidvalidity != uidvalidity;
}

/* since = now shows only what arrived after the first login. */
static bool
before_baseline(const struct uidmap_folder *f, const struct uidmap_entry *e)
{
	return f->has_baseline && e->uidl_validity == f->baseline_validity &&
	       e->uidl_uid < f->baseline_uidnext;
}

static bool
visible(const struct uidmap_folder *f, const struct uidmap_entry *e,
	bool since_now)
{
	if (e->flags & UIDMAP_HIDDEN)
		return false;
	return !(since_now && before_baseline(f, e));
}

static uint32_t
next_uid(const struct snapshot_folder *sf)
{
	if (sf->uidnext != 0)
		return sf->uidnext;
	return sf->n > 0 ? sf->cur[sf->n - 1].uid + 1 : 1;
}

/*
 * After a rebuild the old baseline means nothing; what it hid is hidden
 * for good, messages re-matched keep their visibility, and the rest (the
 * folder's content at the rebuild, unknown to us) falls before the new
 * baseline.
 */
static int
rebuild(struct uidmap *map, struct uidmap_folder *f,
	const struct snapshot_folder *sf, size_t *rematched_r)
{
	bool had_baseline = sf->since_now && f->has_baseline;
	size_t i;
	int r;

	if (had_baseline) {
		for (i = 0; i < f->count; i++) {
			if (before_baseline(f, &f->entries[i]))
				uidmap_set_hidden(map, &f->entries[i]);
		}
	}
	r = uidmap_rematch(map, f, sf->uidvalidity, sf->cur, sf->n,
			   rematched_r);
	if (r < 0)
		return r;
	if (had_baseline)
		uidmap_set_baseline(map, f, sf->uidvalidity, next_uid(sf));
	return 0;
}

static int
sync_listing(struct uidmap *map, struct uidmap_folder *f,
	     const struct snapshot_folder *sf)
{
	uint32_t *uids;
	size_t i;
	int r;

	if (f->uidvalidity == 0) {
		f->uidvalidity = sf->uidvalidity;
		map->dirty = true;
	}
	uids = malloc((sf->n ? sf->n : 1) * sizeof(*uids));
	if (uids == NULL)
		return -ENOMEM;
	for (i = 0; i < sf->n; i++)
		uids[i] = sf->cur[i].uid;
	r = uidmap_sync(map, f, uids, sf->n);
	free(uids);
	return r < 0 ? r : 0;
}

static int
fill(struct uidmap *map, struct maildrop *md, struct uidmap_folder *f,
     const struct snapshot_folder *sf)
{
	struct maildrop_msg *m;
	bool exact;
	struct uidmap_entry *e;
	size_t i, j = 0, k = 0;
	uint32_t uid;
	int r;

	/* The listing, the map and the date window all ascend by UID: one
	 * walk instead of a search in each per message. */
	for (i = 0; i < sf->n; i++) {
		uid = sf->cur[i].uid;
		while (j < f->count && f->entries[j].uid < uid)
			j++;
		e = j < f->count && f->entries[j].uid == uid ? &f->entries[j]
							     : NULL;
		if (e != NULL && sf->cur[i].has_oid)
			uidmap_set_oid(map, e, sf->cur[i].oid);
		if (e == NULL || !visible(f, e, sf->since_now))
			continue;
		if (sf->window != NULL) {
			while (k < sf->n_window && sf->window[k] < uid)
				k++;
			if (k == sf->n_window || sf->window[k] != uid)
				continue;
		}
		exact = uidmap_check_size(map, e, sf->cur[i].size);
		r = maildrop_add(md, sf->index, e->uid,
				 exact ? e->size : sf->cur[i].size);
		if (r < 0)
			return r;
		m = &md->msgs[md->count - 1];
		m->listed = sf->cur[i].size;
		if (e->flags & UIDMAP_RETRIEVED)
			md->last_known = (uint32_t)md->count;
		m->uidl_validity = e->uidl_validity;
		m->uidl_uid = e->uidl_uid;
	}
	return 0;
}

int
snapshot_apply(struct uidmap *map, struct maildrop *md,
	       const struct snapshot_folder *sf, size_t *rematched_r)
{
	struct uidmap_folder *f;
	int r;

	*rematched_r = 0;
	f = uidmap_folder(map, sf->name, true);
	if (f == NULL)
		return map->n_folders >= UIDMAP_FOLDERS_MAX ? -ENOSPC : -ENOMEM;
	if (f->uidvalidity != 0 && f->uidvalidity != sf->uidvalidity)
		r = rebuild(map, f, sf, rematched_r);
	else
		r = sync_listing(map, f, sf);
	if (r < 0)
		return r;
	if (sf->since_now && !f->has_baseline)
		uidmap_set_baseline(map, f, sf->uidvalidity, next_uid(sf));
	return fill(map, md, f, sf);
}
