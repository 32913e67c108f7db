#ifndef POPBRIDGE_BUF_H
#define POPBRIDGE_BUF_H

#include <stddef.h>
#include <stdint.h>

/*
 * A growable byte buffer with a hard maximum. The buffer owns data; callers
 * may read data[0..len) and must not keep the pointer across an append.
 * Every operation returns 0 or a negative errno: -ENOBUFS when the named
 * maximum would be exceeded, -ENOMEM when allocation fails.
 */
struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
	int secret;		/* wipe memory on growth and free */
};

void buf_init(struct buf *b, size_t max);
/* A buffer for credentials: growing it never leaves a copy behind, and
 * buf_free wipes it. */
void buf_init_secret(struct buf *b, size_t max);
int buf_reserve(struct buf *b, size_t more);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_append_str(struct buf *b, const char *s);
int buf_appendf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Writes v in decimal at p (at most 20 characters, no NUL) and returns
 * the end: for hot paths where printf's parsing costs more than the job. */
char *buf_put_u64(char *p, uint64_t v);
/* Writes p[0..n) as 2n lowercase hex digits at w (no NUL); returns the
 * end. */
char *buf_put_hex(char *w, const void *p, size_t n);
/* Reads s[0..n) as a decimal number up to max: digits only, at least one
 * (leading zeros allowed). 0 and *v_r set, or -EBADMSG. */
int buf_parse_u64(const char *s, size_t n, uint64_t max, uint64_t *v_r);
/* Drops the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* Shrinks the contents back to len (<= b->len), wiping what is dropped:
 * undoes appends that failed halfway, secrets included. */
void buf_truncate(struct buf *b, size_t len);
/* Empties the buffer but keeps its memory. */
void buf_reset(struct buf *b);
/* Overwrites the contents with zeros (for secrets), then empties it. */
void buf_wipe(struct buf *b);
/* Releases the memory; the buffer is empty and usable afterwards. */
void buf_free(struct buf *b);

#endif
