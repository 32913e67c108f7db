#ifndef POPBRIDGE_MAPSTORE_H
#define POPBRIDGE_MAPSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "store/uidmap.h"

/*
 * The UID maps open in this process, one per account, shared by the
 * sessions of that account so that two sessions never overwrite each
 * other's changes. A map is loaded on first use and saved and released
 * when its last session puts it back.
 */

struct mapstore_entry;

struct mapstore {
	struct mapstore_entry *head;
	/* Accounts whose missing-UIDPLUS fallback was logged already, so the
	 * log says it once per account and process, not once per session. */
	char (*warned)[33];
	size_t n_warned;
	uint64_t clock;			/* orders cache use */
};

/*
 * The map of (host, port, user) under dir, loaded if not open yet. A map
 * file that cannot be parsed is moved aside (".corrupt-<time>") and
 * replaced by an empty map, with an error logged: UIDLs derive from
 * UIDVALIDITY and UID, so only messages re-matched after a rebuild could
 * change their UIDL. Returns the map or NULL (err says why: the directory
 * is unusable).
 */
struct uidmap *mapstore_get(struct mapstore *ms, const char *dir,
			    const char *host, uint16_t port, const char *user,
			    size_t user_len, char *err, size_t errlen);

/* Saves the map if it changed; logs a failure. */
void mapstore_save(struct mapstore *ms, struct uidmap *map);

/* Gives the map back: saved if changed. With its last user it stays
 * cached (a few dozen accounts at most) and is reused while its file has
 * not changed on disk. *map becomes NULL. */
void mapstore_put(struct mapstore *ms, struct uidmap **map);

/* Removes temporary map files a crash left behind in dir (older than a few
 * minutes, so another process's save in progress is never touched; see
 * safe_file_clean_stale). A directory that cannot be read is logged. */
void mapstore_clean_stale(const char *dir);

/* Frees what the store keeps for the process's lifetime. */
void mapstore_free(struct mapstore *ms);

#endif
