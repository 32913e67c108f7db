#ifndef POPBRIDGE_OAUTH_AUTHORIZE_H
#define POPBRIDGE_OAUTH_AUTHORIZE_H

#include <stddef.h>
#include <uv.h>

#include "oauth/token.h"
#include "oauth/token_cache.h"

/*
 * One run of `popbridge authorize`, on the loop: the device grant (RFC
 * 8628: the device authorization request, the user code shown, the token
 * endpoint polled as oauth/flows.h says) or the authorization code grant
 * with PKCE (S256) and the loopback listener (oauth/loopback.h), which
 * also takes a redirect URL pasted by the user (a browser on another
 * machine cannot reach 127.0.0.1 here). Either ends in done with the
 * tokens; a grant without a refresh token is an error (the scope needs
 * offline access). Requests travel by an oauth_transport, each bounded by
 * timeout_ms. Nothing is logged; the CLI shows what the callbacks give.
 */

struct oauth_authorize;

struct oauth_authorize_cb {
	/* Device grant: tell the user where to go and which code to type
	 * (d's verification URI, user code, optional complete URI and
	 * expiry; never the device code). */
	void (*show_device)(void *ctx, const struct oauth_device_auth *d);
	/* Code grant: open url in a browser; redirect_uri is where the
	 * listener waits (and what a pasted URL starts with). */
	void (*show_url)(void *ctx, const char *url, const char *redirect_uri);
	/*
	 * The end, once: err 0 and tokens (access and refresh set), or
	 * err and why (a line for the user; tokens NULL): -EACCES (the user
	 * or server said no: access_denied, invalid_grant), -ETIMEDOUT (the
	 * device code expired, or a request's bound), -EPERM (the client is
	 * refused: invalid_client, ...), -ENODATA (no refresh token came),
	 * or a transport or parse error. tokens is valid during the call.
	 */
	void (*done)(void *ctx, int err, const struct oauth_token_resp *tokens,
		     const char *why);
	void *ctx;
};

struct oauth_authorize_cfg {
	struct oauth_client client;	/* borrowed: must outlive the run */
	unsigned timeout_ms;		/* each request */
	const char *ca_file;		/* NULL: the system store */
	/* How long a second of the device flow's waits is, in ms (tests
	 * run an interval of 5 s in 5 ms); 0 means 1000. */
	unsigned ms_per_s;
};

/* Starts the device grant. Returns 0 and *a_r, or -EINVAL (no device_url,
 * client_id or scope), -ENOMEM, or the transport's error; no callback
 * fires then. */
int oauth_authorize_device(uv_loop_t *loop, const struct oauth_transport *tr,
			   const struct oauth_authorize_cfg *cfg,
			   const struct oauth_authorize_cb *cb,
			   struct oauth_authorize **a_r);

/* Starts the code grant: listener, PKCE, state; show_url fires before
 * this returns. Returns 0 and *a_r, or -EINVAL (no auth_url, client_id
 * or scope), -ENOMEM, -EIO (no random numbers), or the listener's
 * error. */
int oauth_authorize_code(uv_loop_t *loop, const struct oauth_transport *tr,
			 const struct oauth_authorize_cfg *cfg,
			 const struct oauth_authorize_cb *cb,
			 struct oauth_authorize **a_r);

/* A redirect URL the user pasted (code grant). Returns 0 (taken: the
 * listener closes and the code is exchanged; done follows), -ESRCH (not
 * this run's state: ignored, go on waiting), -EBADMSG (no code in it),
 * -EALREADY (a code came already, or this is a device run). The
 * server's error with the right state ends the run (done with
 * -EACCES) and returns 0. */
int oauth_authorize_paste(struct oauth_authorize *a, const char *s, size_t n);

/* Ends the run without a callback; *a becomes NULL. Safe from inside a
 * callback. */
void oauth_authorize_free(struct oauth_authorize **a);

#endif
