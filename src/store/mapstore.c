/* The UID maps open in this process, one per account, shared by its
 * sessions: loaded on first use (a damaged file moved aside), saved when
 * changed, kept cached while unused and unchanged on disk. */
#include "store/mapstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/safe_file.h"
#include "util/error.h"
#include "util/log.h"

struct mapstore_entry {
	struct mapstore_entry *next;
	char name[33];
	struct uidmap *map;
	unsigned users;
	/* An unused map stays cached while its file is what we last saw:
	 * a login then skips re-reading and re-checking it. */
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	uint64_t last_used;
};

/* Unused maps kept in memory at most. */
#define MAPSTORE_CACHE_MAX 32

static struct mapstore_entry *
find(struct mapstore *ms, const char *name)
{
	struct mapstore_entry *e;

	for (e = ms->head; e != NULL; e = e->next) {
		if (strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

/* Keeps a corrupt map for inspection and starts afresh. */
static struct uidmap *
replace_corrupt(const char *dir, const char *name, const char *why, char *err,
		size_t errlen)
{
	char from[4096], to[4200];
	struct uidmap *map = NULL;

	snprintf(from, sizeof(from), "%s/%s", dir, name);
	snprintf(to, sizeof(to), "%s.corrupt-%lld", from, (long long)time(NULL));
	log_error("UID map %s is unreadable (%s); moved to %s, starting a new "
		  "one", from, why, to);
	if (rename(from, to) < 0) {
		snprintf(err, errlen, "cannot move %s aside: %s", from,
			 strerror(errno));
		return NULL;
	}
	if (uidmap_load(dir, name, &map, err, errlen) < 0)
		return NULL;
	return map;
}

/* The identity of the map's file: absent files are all alike (ino 0). */
static void
file_identity(const struct mapstore_entry *e, dev_t *dev, ino_t *ino,
	      off_t *size, struct timespec *mtime)
{
	struct stat st;

	*dev = 0;
	*ino = 0;
	*size = 0;
	memset(mtime, 0, sizeof(*mtime));
	if (stat(e->map->path, &st) < 0)
		return;
	*dev = st.st_dev;
	*ino = st.st_ino;
	*size = st.st_size;
	*mtime = st.st_mtim;
}

static void
remember_file(struct mapstore_entry *e)
{
	file_identity(e, &e->dev, &e->ino, &e->size, &e->mtime);
}

static bool
file_unchanged(const struct mapstore_entry *e)
{
	struct timespec mtime;
	dev_t dev;
	ino_t ino;
	off_t size;

	file_identity(e, &dev, &ino, &size, &mtime);
	return dev == e->dev && ino == e->ino && size == e->size &&
	       mtime.tv_sec == e->mtime.tv_sec &&
	       mtime.tv_nsec == e->mtime.tv_nsec;
}

static void remember_warned(struct mapstore *ms, const char *name);

/* Unlinks and frees an entry nobody uses. */
static void
drop(struct mapstore *ms, struct mapstore_entry *e)
{
	struct mapstore_entry **pp;

	for (pp = &ms->head; *pp != NULL; pp = &(*pp)->next) {
		if (*pp != e)
			continue;
		*pp = e->next;
		if (e->map->warned_fallback)
			remember_warned(ms, e->name);
		uidmap_free(&e->map);
		free(e);
		return;
	}
}

/* Keeps at most MAPSTORE_CACHE_MAX unused maps, dropping the oldest. */
static void
trim_cache(struct mapstore *ms)
{
	struct mapstore_entry *e, *oldest;
	size_t idle;

	for (;;) {
		idle = 0;
		oldest = NULL;
		for (e = ms->head; e != NULL; e = e->next) {
			if (e->users > 0)
				continue;
			idle++;
			if (oldest == NULL || e->last_used < oldest->last_used)
				oldest = e;
		}
		if (idle <= MAPSTORE_CACHE_MAX)
			return;
		drop(ms, oldest);
	}
}

static bool
was_warned(const struct mapstore *ms, const char *name)
{
	size_t i;

	for (i = 0; i < ms->n_warned; i++) {
		if (strcmp(ms->warned[i], name) == 0)
			return true;
	}
	return false;
}

static void
remember_warned(struct mapstore *ms, const char *name)
{
	char (*w)[33];

	if (was_warned(ms, name))
		return;
	w = realloc(ms->warned, (ms->n_warned + 1) * sizeof(*w));
	if (w == NULL)
		return;		/* at worst the warning comes again */
	ms->warned = w;
	memcpy(ms->warned[ms->n_warned++], name, 33);
}

struct uidmap *
mapstore_get(struct mapstore *ms, const char *dir, const char *host,
	     uint16_t port, const char *user, size_t user_len, char *err,
	     size_t errlen)
{
	struct mapstore_entry *e;
	struct uidmap *map = NULL;
	char name[33];
	int r;

	uidmap_file_name(host, port, user, user_len, name);
	e = find(ms, name);
	if (e != NULL && e->users == 0 && !file_unchanged(e)) {
		drop(ms, e);
		e = NULL;
	}
	if (e != NULL) {
		e->users++;
		e->last_used = ++ms->clock;
		return e->map;
	}
	r = uidmap_load(dir, name, &map, err, errlen);
	switch (r) {
	case 0:
		break;
	case -EBADMSG:
		/* Only a damaged file is replaced. */
		map = replace_corrupt(dir, name, err, err, errlen);
		if (map == NULL)
			return NULL;
		break;
	case -EPROTONOSUPPORT:	/* a newer version's: kept for it */
	case -EIO:		/* unreadable: kept as it is */
	default:
		return NULL;	/* err says why */
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		uidmap_free(&map);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(e->name, name, sizeof(e->name));
	map->warned_fallback = was_warned(ms, name);
	e->map = map;
	e->users = 1;
	e->last_used = ++ms->clock;
	e->next = ms->head;
	ms->head = e;
	return map;
}

void
mapstore_save(struct mapstore *ms, struct uidmap *map)
{
	char err[512];

	(void)ms;
	if (map == NULL || !map->dirty)
		return;
	if (uidmap_save(map, err, sizeof(err)) < 0)
		log_error("cannot save UID map %s: %s", map->path, err);
}

void
mapstore_put(struct mapstore *ms, struct uidmap **mapp)
{
	struct mapstore_entry *e;
	struct uidmap *map = *mapp;

	if (map == NULL)
		return;
	*mapp = NULL;
	mapstore_save(ms, map);
	for (e = ms->head; e != NULL; e = e->next) {
		if (e->map != map)
			continue;
		if (--e->users > 0)
			return;
		/* A map that could not be saved is not kept: the file is the
		 * truth the next login must see. */
		if (map->dirty)
			drop(ms, e);
		else
			remember_file(e);
		trim_cache(ms);
		return;
	}
}

void
mapstore_clean_stale(const char *dir)
{
	int r = safe_file_clean_stale(dir, SAFE_FILE_STALE_SECONDS);

	if (r < 0)
		log_warn("cannot look for temporary files in %s: %s", dir,
			 err_text(r));
}

void
mapstore_free(struct mapstore *ms)
{
	struct mapstore_entry *e;

	while ((e = ms->head) != NULL) {
		ms->head = e->next;
		uidmap_free(&e->map);
		free(e);
	}
	free(ms->warned);
	ms->warned = NULL;
	ms->n_warned = 0;
}
