#include "mapstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

struct mapstore_entry {
	struct mapstore_entry *next;
	char name[33];
	struct uidmap *map;
	unsigned users;
};

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

struct uidmap *
mapstore_get(struct mapstore *ms, const char *dir, const char *host,
	     uint16_t port, const char *user, size_t user_len, char *err,
	     size_t errlen)
{
	struct mapstore_entry *e;
	struct uidmap *map = NULL;
	char name[33];

	uidmap_file_name(host, port, user, user_len, name);
	e = find(ms, name);
	if (e != NULL) {
		e->users++;
		return e->map;
	}
	if (uidmap_load(dir, name, &map, err, errlen) < 0) {
		/* A missing or unwritable directory is not corruption. */
		if (strstr(err, "corrupt") == NULL)
			return NULL;
		map = replace_corrupt(dir, name, err, err, errlen);
		if (map == NULL)
			return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		uidmap_free(&map);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	memcpy(e->name, name, sizeof(e->name));
	e->map = map;
	e->users = 1;
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
	struct mapstore_entry **pp, *e;
	struct uidmap *map = *mapp;

	if (map == NULL)
		return;
	*mapp = NULL;
	mapstore_save(ms, map);
	for (pp = &ms->head; (e = *pp) != NULL; pp = &e->next) {
		if (e->map != map)
			continue;
		if (--e->users > 0)
			return;
		*pp = e->next;
		uidmap_free(&e->map);
		free(e);
		return;
	}
}
