#ifndef POPBRIDGE_BASE64_H
#define POPBRIDGE_BASE64_H

#include <stddef.h>

#include "util/buf.h"

/* Appends the standard base64 (RFC 4648 §4, with padding) of p[0..n). */
int base64_encode(struct buf *out, const void *p, size_t n);

/* Decodes base64 text (padding required, no whitespace) and appends the
 * bytes to out. Returns 0, -EINVAL on malformed input, or a buf error. */
int base64_decode(struct buf *out, const char *s, size_t n);

#endif
