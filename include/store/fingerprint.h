#ifndef POPBRIDGE_FINGERPRINT_H
#define POPBRIDGE_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What recognises a message after its folder is rebuilt upstream, when its
 * UID means nothing any more: a fingerprint of its header block, and a key
 * for the server's own message id. Pure computation over bytes the caller
 * hands in: no I/O, no knowledge of the map that stores the results
 * (store/uidmap.h), which includes this header, so the names keep their
 * uidmap_ prefix.
 *
 * The fingerprint of a message: SHA-256 over its header block (everything
 * up to and including the first empty line, or the whole message when
 * there is none), with line ends normalised to CRLF, truncated to
 * UIDMAP_FP_LEN, leaving out the fields servers rewrite while the message
 * stays the same (Status, X-Status, X-UID, X-IMAP, X-IMAPbase, X-Keywords,
 * X-Mozilla-Status*, Content-Length, Lines, ...). Version 1's fingerprint,
 * over every header line, comes with it for maps written then. Bytes are
 * fed as they stream, split anywhere; feeding the body too is harmless.
 */

/* Fingerprints and object id keys are the first bytes of a SHA-256. */
#define UIDMAP_FP_LEN 16

/* The hasher is the caller's, from uidmap_hasher_new to
 * uidmap_hasher_free; it holds no pointer into what it was fed. */
struct uidmap_hasher;

/* NULL when out of memory or without SHA-256. old_too: version 1's
 * fingerprint is computed as well (after a rebuild, to match maps written
 * then); otherwise uidmap_hasher_final gives zeros for it. */
struct uidmap_hasher *uidmap_hasher_new(bool old_too);
void uidmap_hasher_feed(struct uidmap_hasher *h, const char *p, size_t n);
/* Finishes; the hasher may be reused after uidmap_hasher_reset. Should
 * OpenSSL fail, fp_r is all zeros, which uidmap_rematch never matches.
 * old_fp_r (may be NULL) gets the version 1 fingerprint. */
void uidmap_hasher_final(struct uidmap_hasher *h, uint8_t fp_r[UIDMAP_FP_LEN],
			 uint8_t old_fp_r[UIDMAP_FP_LEN]);
void uidmap_hasher_reset(struct uidmap_hasher *h);
/* Frees the hasher (NULL is fine) and sets *h to NULL. */
void uidmap_hasher_free(struct uidmap_hasher **h);

/* The key kept for a server's own message id (EMAILID, RFC 8474, or
 * X-GM-MSGID): SHA-256 of its bytes, truncated. Returns 0, -EINVAL for an
 * empty id, or -EIO when OpenSSL failed; oid_r is set only on success. */
int uidmap_oid_hash(const char *id, size_t len, uint8_t oid_r[UIDMAP_FP_LEN]);

#endif
