#ifndef POPBRIDGE_SNAPSHOT_H
#define POPBRIDGE_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailbox/maildrop.h"
#include "store/uidmap.h"

/*
 * Turns one folder's listing into POP3 messages through the account's UID
 * map (SPEC §4): known messages keep their UIDL and exact size, messages
 * gone upstream leave the map, a rebuilt folder (new UIDVALIDITY) is
 * re-matched by fingerprint, and hidden messages (on_delete = seen) and
 * mail from before the since = now baseline stay out of the maildrop.
 * Pure data: no I/O.
 */

struct snapshot_folder {
	uint16_t index;			/* in the maildrop */
	const char *name;
	uint32_t uidvalidity;		/* as SELECT reported it */
	uint32_t uidnext;		/* 0 when the server did not say */
	/* The folder's messages, ascending UIDs; fingerprints are needed
	 * only when the folder was rebuilt (snapshot_needs_fps). */
	const struct uidmap_current *cur;
	size_t n;
	/* since = YYYY-MM-DD: the UIDs SEARCH SINCE found (ascending), or
	 * NULL for no date window. */
	const uint32_t *window;
	size_t n_window;
	bool since_now;
};

/* True when the map knows the folder under another UIDVALIDITY: the
 * caller must fetch fingerprints (header hashes) before applying. */
bool snapshot_needs_fps(struct uidmap *map, const char *name,
			uint32_t uidvalidity);

/*
 * Applies the listing to the map and appends the visible messages to md.
 * Returns 0, -ENOMEM, -ENOSPC when the map holds UIDMAP_FOLDERS_MAX
 * folders already, or -EINVAL when cur does not ascend by UID.
 * *rematched_r is the number of messages that kept their UIDL across a
 * rebuild (0 when there was none).
 */
int snapshot_apply(struct uidmap *map, struct maildrop *md,
		   const struct snapshot_folder *sf, size_t *rematched_r);

#endif
