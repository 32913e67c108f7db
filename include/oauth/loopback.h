#ifndef POPBRIDGE_OAUTH_LOOPBACK_H
#define POPBRIDGE_OAUTH_LOOPBACK_H

#include <stddef.h>
#include <uv.h>

#include "oauth/token.h"

/*
 * The loopback redirect listener of the authorization code flow (RFC 8252
 * §7.3): 127.0.0.1 on a port the kernel picks, redirect URI
 * "http://127.0.0.1:PORT/". It reads requests of at most
 * OAUTH_REDIRECT_MAX octets, GET only. A request without the flow's state
 * or with another one (a page a stranger made the browser load) gets 400
 * and is ignored, as is any other path (/favicon.ico); the first with the
 * right state gets a short page (never showing the code) and ends the
 * listener: it stops accepting and closes every other connection. Idle
 * connections are dropped after OAUTH_LOOPBACK_IDLE_MS, and at most
 * OAUTH_LOOPBACK_CONNS are open at a time.
 */

#define OAUTH_LOOPBACK_CONNS 8
#define OAUTH_LOOPBACK_IDLE_MS 10000

struct oauth_loopback;

/* The right request came: result 0 with the code (code[0..n), valid
 * during the call), or 1 with the authorization server's error in e.
 * Called once, from the loop. The listener is closed by then; free it
 * (here or later). */
typedef void (*oauth_loopback_cb)(void *ctx, int result, const char *code,
				  size_t n, const struct oauth_err *e);

/* Starts listening. state is copied. Returns 0 and *l_r, or -EINVAL (an
 * empty state or one over 256 octets), -ENOMEM, or libuv's error binding
 * or listening. */
int oauth_loopback_start(uv_loop_t *loop, const char *state,
			 oauth_loopback_cb cb, void *ctx,
			 struct oauth_loopback **l_r);

/* "http://127.0.0.1:PORT/" */
const char *oauth_loopback_redirect_uri(const struct oauth_loopback *l);

/* Requests answered and ignored so far (tests). */
unsigned oauth_loopback_ignored(const struct oauth_loopback *l);

/* Ends the listener, if still running, without a callback; memory goes
 * once libuv has closed the handles. *l becomes NULL. Safe from inside
 * the callback. */
void oauth_loopback_free(struct oauth_loopback **l);

#endif
