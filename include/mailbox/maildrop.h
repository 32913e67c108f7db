#ifndef POPBRIDGE_MAILDROP_H
#define POPBRIDGE_MAILDROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/*
 * The POP3 view of the mailbox, fixed at login (RFC 1939 §8: numbering
 * never changes within a session): messages in folder order, then UID
 * order, with their sizes, deletion marks and UIDLs.
 */

/* RFC 1939 §7: a unique-id is 1 to 70 characters in 0x21..0x7E. */
#define MAILDROP_UIDL_MAX 70

struct maildrop_folder {
	char *name;
	uint32_t uidvalidity;
	uint32_t uidnext;
	/* What its UIDLs start with: "" for INBOX, else 8 hex digits of a
	 * hash of the name and '.' (set once, by maildrop_init). */
	char uidl_prefix[10];
};

struct maildrop_msg {
	uint32_t uid;
	uint16_t folder;	/* index into folders */
	bool deleted;
	bool retrieved;		/* RETR delivered it whole this session */
	uint32_t uidl_validity;	/* the identity its UIDL derives from */
	uint32_t uidl_uid;
	uint64_t size;
	uint64_t listed;	/* the server's size (RFC822.SIZE) */
};

struct maildrop {
	struct maildrop_folder *folders;
	size_t n_folders;
	struct maildrop_msg *msgs;
	size_t count, cap;
	size_t n_deleted;
	/* The highest message number whose message an earlier session
	 * retrieved (the UID map's record), for LAST (RFC 1460); 0: none. */
	uint32_t last_known;
	/* The highest message number RETR delivered in this session (RSET
	 * forgets it). */
	uint32_t last_retrieved;
};

/* Copies the folder names. Returns 0 or -ENOMEM. */
int maildrop_init(struct maildrop *md, char *const *folders, size_t n);
void maildrop_free(struct maildrop *md);

/* Appends a message of folder f; its UIDL identity defaults to the
 * folder's uidvalidity and uid. Returns 0 or -ENOMEM. */
int maildrop_add(struct maildrop *md, uint16_t f, uint32_t uid, uint64_t size);
/* Sorts messages [from, count) by UID and drops duplicate UIDs; called
 * once a folder's listing is complete. */
void maildrop_sort_tail(struct maildrop *md, size_t from);

/* Message number n (1-based); NULL when out of range or deleted. */
struct maildrop_msg *maildrop_get(struct maildrop *md, uint32_t n);

/* Counts and octets of messages not marked deleted. */
void maildrop_stat(const struct maildrop *md, size_t *count_r,
		   uint64_t *octets_r);

/* Marks message n deleted: 0, or -ENOENT when out of range or already
 * marked (maildrop_get finds no such message). */
int maildrop_delete(struct maildrop *md, uint32_t n);
/* Unmarks every message and forgets what this session retrieved, for
 * LAST (RSET, RFC 1460). */
void maildrop_reset(struct maildrop *md);
/* RETR delivered message n (1-based, in range) whole. */
void maildrop_retrieved(struct maildrop *md, uint32_t n);
/* LAST's answer (RFC 1460, as Dovecot gives it): the highest message
 * number retrieved, in this session or, by the UID map, before. */
uint32_t maildrop_last(const struct maildrop *md);

/*
 * Writes the UIDL of msg into out (NUL-terminated, at most
 * MAILDROP_UIDL_MAX characters) from its identity: "VALIDITY.UID" for
 * INBOX, prefixed with a hash of the folder name for other folders, so
 * values are unique across folders and stable across sessions.
 */
void maildrop_uidl(const struct maildrop *md, const struct maildrop_msg *msg,
		   char out[MAILDROP_UIDL_MAX + 1]);

/* Which messages maildrop_uidset collects. */
enum maildrop_pick {
	MAILDROP_PICK_DELETED,
	MAILDROP_PICK_RETRIEVED,	/* retrieved and not deleted */
};

/*
 * Appends an IMAP sequence set ("3:5,9") of the UIDs of picked messages in
 * folder f, starting at message index *pos (0-based) and stopping before
 * the set would exceed max octets; *pos moves past what was written.
 * Returns the number of UIDs written (0 when none remain).
 */
size_t maildrop_uidset(const struct maildrop *md, uint16_t f,
		       enum maildrop_pick pick, size_t *pos, size_t max,
		       struct buf *out);

#endif
