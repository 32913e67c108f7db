#ifndef POPBRIDGE_UIDMAP_H
#define POPBRIDGE_UIDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/fingerprint.h"

/*
 * The persistent UID map of one account (SPEC §4): per folder the
 * UIDVALIDITY it was last seen with, the since = now baseline, and per
 * message the identity its UIDL was derived from, its exact size once
 * known, whether it is hidden from POP3 (on_delete = seen), and a
 * fingerprint that recognises it after the folder is rebuilt upstream.
 *
 * A message's UIDL is derived from (folder name, uidl_validity, uidl_uid)
 * by maildrop_uidl; for a message first seen in the current UIDVALIDITY
 * those are (uidvalidity, uid), and after a rebuild a re-matched message
 * keeps the pair it had, so its UIDL never changes.
 *
 * One file per account under the state directory, named from a hash of
 * host, port and user; written crash-safely (store/safe_file.h: temporary
 * file, fsync, rename, fsync of the directory), so a crash leaves the old
 * or the new map, never a torn one. Saved only when something changed. The
 * file's format is store/uidmap_file.h; uidmap_file_name, uidmap_load and
 * uidmap_save live with it in uidmap_file.c, the rest in uidmap.c.
 *
 * The map owns everything it points to (path, folders, names, entries,
 * all from malloc); pointers to its folders and entries stay valid until
 * uidmap_free, except that entries move when uidmap_sync or uidmap_rematch
 * changes their folder.
 */

/* A map file larger than this is refused as corrupt (100,000 messages
 * take about 10 MB). */
#define UIDMAP_FILE_MAX (256u * 1024 * 1024)
/* Folders per account kept at most. */
#define UIDMAP_FOLDERS_MAX 64

enum {
	UIDMAP_HIDDEN = 1 << 0,		/* never listed again (on_delete = seen) */
	UIDMAP_EXACT = 1 << 1,		/* size is the exact delivered size */
	UIDMAP_HAS_FP = 1 << 2,		/* fp is set */
	UIDMAP_RETRIEVED = 1 << 3,	/* RETR delivered it in some session */
	UIDMAP_OLD_FP = 1 << 4,		/* fp hashes every header line (v1) */
	UIDMAP_HAS_OID = 1 << 5,	/* oid is set */
};

struct uidmap_entry {
	uint32_t uid;			/* the message's UID now */
	uint32_t uidl_validity;		/* what its UIDL was derived from */
	uint32_t uidl_uid;
	uint8_t flags;
	uint64_t size;			/* listed size; exact with UIDMAP_EXACT */
	uint64_t listed;		/* the server's size when the exact
					 * one was learned; 0: unknown */
	uint8_t fp[UIDMAP_FP_LEN];	/* valid with UIDMAP_HAS_FP */
	uint8_t oid[UIDMAP_FP_LEN];	/* SHA-256 of the server's own id
					 * (EMAILID, X-GM-MSGID), truncated;
					 * valid with UIDMAP_HAS_OID */
};

struct uidmap_folder {
	char *name;
	uint32_t uidvalidity;		/* 0 until first synced */
	bool has_baseline;		/* since = now: first login recorded */
	uint32_t baseline_validity;	/* UIDVALIDITY at that login */
	uint32_t baseline_uidnext;	/* show only UIDs >= this */
	struct uidmap_entry *entries;	/* sorted by uid, unique */
	size_t count, cap;
};

struct uidmap {
	char *path;			/* the map file */
	struct uidmap_folder *folders;
	size_t n_folders;
	bool dirty;			/* changed since load or save */
	bool warned_fallback;		/* in memory only: a missing-UIDPLUS
					 * fallback was logged for the account */
	unsigned server_caps;		/* in memory only, opaque here: what the
					 * mailbox layer learned of the server
					 * at the last login (its capabilities) */
};

/*
 * The file name (not the path) of an account's map: 32 lowercase hex
 * characters of SHA-256 over host, port and user, so a name reveals no
 * user. name_r needs 33 bytes. Should OpenSSL fail, name_r is "", which
 * uidmap_load refuses.
 */
void uidmap_file_name(const char *host, uint16_t port, const char *user,
		      size_t user_len, char name_r[33]);

/* A new, empty map for the file dir/file_name, not read (see uidmap_load)
 * and not dirty; NULL when out of memory. The caller frees it with
 * uidmap_free. */
struct uidmap *uidmap_new(const char *dir, const char *file_name);

/*
 * Loads dir/<file name> or, when it does not exist, starts an empty map
 * for that path. Returns 0 and a new map in *map_r, or a negative error
 * with a reason in err: -EBADMSG exactly when the file is damaged
 * (truncated, empty, too large, checksum, syntax), -EPROTONOSUPPORT for a
 * map written by a newer version (to be kept), -EIO for anything else (a
 * missing or unreadable state directory or file, bad arguments, out of
 * memory). A damaged map is never silently replaced here.
 */
int uidmap_load(const char *dir, const char *file_name, struct uidmap **map_r,
		char *err, size_t errlen);

/*
 * Writes the map if dirty, crash-safely (safe_file_write). Returns 0 (the
 * map is clean then), or a negative code with a reason in err, the map
 * staying dirty: -ENOMEM, -EFBIG when the map would be larger than
 * UIDMAP_FILE_MAX, -EIO when the checksum could not be computed, or the
 * code of the failed file operation (-ENOENT when the state directory is
 * gone, -ENOSPC, -EACCES, ...). The old file stays in place unless only
 * the final fsync of the directory failed.
 */
int uidmap_save(struct uidmap *m, char *err, size_t errlen);

void uidmap_free(struct uidmap **m);

/* The folder with that name, created empty when create is true (NULL when
 * absent and not created, or out of memory / over UIDMAP_FOLDERS_MAX).
 * Creating marks the map dirty. The pointer stays valid until uidmap_free,
 * however many folders are added. */
struct uidmap_folder *uidmap_folder(struct uidmap *m, const char *name,
				    bool create);

/* Binary search; NULL when the folder has no entry for uid. */
struct uidmap_entry *uidmap_find(struct uidmap_folder *f, uint32_t uid);

/*
 * Brings the folder in line with the server's listing in the UIDVALIDITY
 * the folder has: uids[0..n) ascending and unique. Entries for UIDs not in
 * the list are dropped (pruned); listed UIDs without an entry get one whose
 * UIDL derives from (f->uidvalidity, uid), with flags and size 0. In
 * place, O(n + count). Returns 0, -ENOMEM or -EINVAL when uids are not
 * ascending (nothing changed then); marks the map dirty when anything
 * changed.
 */
int uidmap_sync(struct uidmap *m, struct uidmap_folder *f,
		const uint32_t *uids, size_t n);

/* A message as listed after a rebuild, for uidmap_rematch. */
struct uidmap_current {
	uint32_t uid;
	uint64_t size;
	bool has_fp;			/* fp and old_fp are set */
	bool has_oid;
	uint8_t fp[UIDMAP_FP_LEN];
	uint8_t old_fp[UIDMAP_FP_LEN];	/* as version 1 computed it */
	uint8_t oid[UIDMAP_FP_LEN];	/* see uidmap_oid_hash */
};

/*
 * The folder was rebuilt: its UIDVALIDITY is now new_validity and cur[0..n)
 * (ascending UIDs) is what it holds. Old entries with a fingerprint are
 * matched to current messages: first by the server's own id (oid), then
 * by fingerprint (among several candidates, one of equal size first, then
 * in UID order), then by a version 1 fingerprint against old_fp; matched
 * entries keep their UIDL identity and flags, and their exact size while
 * the server's size is the one it was learned with (otherwise they take
 * cur's), and take cur's fingerprint and oid; every other current message
 * gets a fresh identity (new_validity, uid); old entries left over are
 * dropped. Each old entry matches at most one message. Sets the folder's
 * uidvalidity, marks the map dirty, and reports how many were re-matched
 * (matched_r may be NULL). An all-zero fingerprint (see
 * uidmap_hasher_final) counts as none. Returns 0, -ENOMEM, or -EINVAL when
 * cur is not ascending; on error nothing changed.
 */
int uidmap_rematch(struct uidmap *m, struct uidmap_folder *f,
		   uint32_t new_validity, const struct uidmap_current *cur,
		   size_t n, size_t *matched_r);

/* Setters that mark the map dirty only on a real change. */
/* The exact delivered size, learned while the server listed it as listed
 * (RFC822.SIZE). */
void uidmap_set_size(struct uidmap *m, struct uidmap_entry *e, uint64_t size,
		     uint64_t listed);
/* Whether e's exact size still holds now that the server lists the message
 * as listed: a different server size drops it (an mbox server rewrote the
 * headers), and e->size becomes listed. */
bool uidmap_check_size(struct uidmap *m, struct uidmap_entry *e,
		       uint64_t listed);
void uidmap_set_retrieved(struct uidmap *m, struct uidmap_entry *e);
void uidmap_set_oid(struct uidmap *m, struct uidmap_entry *e,
		    const uint8_t oid[UIDMAP_FP_LEN]);
void uidmap_set_fp(struct uidmap *m, struct uidmap_entry *e,
		   const uint8_t fp[UIDMAP_FP_LEN]);
void uidmap_set_hidden(struct uidmap *m, struct uidmap_entry *e);
void uidmap_set_baseline(struct uidmap *m, struct uidmap_folder *f,
			 uint32_t validity, uint32_t uidnext);

#endif
