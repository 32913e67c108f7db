#ifndef POPBRIDGE_OAUTH_JSON_PRIV_H
#define POPBRIDGE_OAUTH_JSON_PRIV_H

#include <stddef.h>

#include <jansson.h>

/* A JSON object from body[0..n), or NULL (not JSON, not an object,
 * duplicate members). Numbers all come as reals. jansson's memory is
 * wiped when freed: the first call sets its allocators (token.c). */
json_t *oauth_json_load(const char *body, size_t n);

#endif
