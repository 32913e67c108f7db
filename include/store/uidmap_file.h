#ifndef POPBRIDGE_UIDMAP_FILE_H
#define POPBRIDGE_UIDMAP_FILE_H

#include <stddef.h>

/*
 * The UID map's file (store/uidmap.h), version 2: lines ending in LF,
 * fields separated by one space, numbers in decimal without leading zeros.
 *
 *   popbridge-uidmap 2
 *   folder "INBOX" uidvalidity 1700000000 baseline 1700000000 17 entries 2
 *   17 1700000000 17 2048 er 00112233445566778899aabbccddeeff 2046 -
 *   18 1650000000 3 900 - - 0 <32 hex digits>
 *   folder "Old%20Mail" uidvalidity 5 baseline - entries 0
 *   end 2 <64 hex digits: SHA-256 of every byte before this line>
 *
 * An entry line is: uid, uidl_validity, uidl_uid, size, flags ("-", or
 * any of "h" hidden, "e" exact size, "r" retrieved, "o" old-style
 * fingerprint, in that order), fingerprint ("-" or 32 hex digits), the
 * server's size the exact size was learned against (0: unknown), and the
 * server's own identity (EMAILID or X-GM-MSGID) as 32 hex digits of its
 * SHA-256, or "-". Version 1 files (no last two fields, fingerprints over
 * every header line) are read as well: their fingerprints get "o", and an
 * exact size (learned only from a whole RETR) also means "r".
 * Entries follow their folder in ascending UID order.
 * Folder names are quoted; bytes outside 0x21-0x7e, '"' and '%' are
 * written as %XX. The end line holds the total entry count and a checksum,
 * so a truncated or damaged file is refused as a whole. Later versions
 * must keep the first line's form and the checksum of the end line, so
 * that this code tells a newer map from a damaged one.
 */

/*
 * Turning a map into that text and back, without I/O. uidmap_load and
 * uidmap_save (declared in store/uidmap.h, implemented with these in
 * uidmap_file.c) read and write the file through store/safe_file.h.
 */

struct uidmap;

/* The version written, and the oldest one still read. */
#define UIDMAP_FILE_VERSION 2
#define UIDMAP_FILE_VERSION_MIN 1

/*
 * Fills m, new and empty (uidmap_new), from a whole file data[0..len);
 * messages name m->path. Returns 0 with m not dirty, -EBADMSG when the file
 * is damaged (err says "corrupt" and where), -EPROTONOSUPPORT for a
 * version newer than UIDMAP_FILE_VERSION whose end line checks out (err
 * says so without "corrupt": a downgrade must not have the map replaced),
 * or, through no fault of the file, -ENOMEM or -EIO (OpenSSL could not
 * compute the checksum). On failure m holds part of the file; the caller
 * frees it.
 */
int uidmap_file_parse(struct uidmap *m, const char *data, size_t len,
		      char *err, size_t errlen);

/* The whole file for m, end line included: 0 with *data_r, which the
 * caller frees, and *len_r; or a negative code with err set. */
int uidmap_file_render(const struct uidmap *m, char **data_r, size_t *len_r,
		       char *err, size_t errlen);

#endif
