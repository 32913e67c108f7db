#ifndef POPBRIDGE_OAUTH_TOKEN_CACHE_H
#define POPBRIDGE_OAUTH_TOKEN_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "oauth/http.h"
#include "oauth/token.h"

/*
 * One account's OAuth2 tokens in memory: the access token with its
 * expiry, the newest refresh token, and at most one refresh request in
 * flight. Logins ask for an access token (oauth_tokens_get); a valid one
 * (OAUTH_EXPIRY_MARGIN_MS or half its lifetime before it expires, the
 * smaller) is handed out at once, otherwise the login waits on the one
 * refresh request, which every concurrent login of the account shares:
 * never two requests racing with the same refresh token. A rotated
 * refresh token is handed to a saver before anyone gets the new access
 * token. Access tokens are never stored.
 *
 * Failures: a refused grant (invalid_grant) is -EACCES, logged once (the
 * line names "popbridge authorize ACCOUNT"), and answered at once for
 * that refresh token until another one comes; an endpoint that is down,
 * slow (the request is bounded by timeout_ms), answers 5xx or garbage
 * fails the waiters with its error and starts a backoff (1 s, doubling, at
 * most OAUTH_BACKOFF_MAX_MS) during which logins get -EAGAIN without a
 * request. A refresh request is never cancelled because its waiters went
 * away: the server may already have rotated the refresh token.
 *
 * Nothing here logs a token, code or secret; error descriptions from the
 * server are logged only when they hold none of them.
 */

#define OAUTH_EXPIRY_MARGIN_MS 60000u
#define OAUTH_BACKOFF_MAX_MS 60000u
/* Refresh tokens rotated away from that are still recognised (a login
 * that read the store before the newest one was saved). */
#define OAUTH_RETIRED_MAX 8

/* How token requests travel: http_post_form on an http_client and the
 * loop's clock by default (oauth_transport_http); tests give their own.
 * post has http_post_form's contract (cb never from inside post); cancel
 * NULLs *req. */
struct oauth_transport {
	int (*post)(void *tctx, const char *url, const char *form, size_t n,
		    const struct http_opts *opts, http_done_cb cb, void *ctx,
		    void **req_r);
	void (*cancel)(void *tctx, void **req);
	uint64_t (*now_ms)(void *tctx);
	void *tctx;
};

/* The default transport over hc (which must outlive every user). */
void oauth_transport_http(struct oauth_transport *tr, struct http_client *hc);

/*
 * Where a rotated refresh token goes. save runs at once, before any
 * waiter hears of the new access token, and returns 0, -EINPROGRESS (it
 * will be stored a little later: the file is busy) or a negative code
 * (logged; the token stays in memory and later logins use it). release
 * says the cache needs the saver no more. Implemented by the accounts
 * store (which encrypts under the account key the login unwrapped).
 */
struct oauth_saver {
	int (*save)(struct oauth_saver *s, const char *refresh, size_t n);
	void (*release)(struct oauth_saver *s);
};

struct oauth_tokens_cfg {
	const char *account;		/* for log lines */
	struct oauth_client client;	/* copied */
	unsigned timeout_ms;		/* [upstream] timeout */
	const char *ca_file;		/* NULL: the system store */
};

struct oauth_tokens;
struct oauth_wait;

/* Returns 0 and *t_r, -EINVAL (no account, client_id or token_url) or
 * -ENOMEM. The strings in cfg are copied; tr is copied. */
int oauth_tokens_new(uv_loop_t *loop, const struct oauth_transport *tr,
		     const struct oauth_tokens_cfg *cfg,
		     struct oauth_tokens **t_r);

/* Drops every waiter (no callback fires), cancels a refresh in flight
 * (see oauth_tokens_busy), wipes the tokens; memory goes once the loop
 * has closed the timer. *t becomes NULL. Safe from inside a callback. */
void oauth_tokens_free(struct oauth_tokens **t);

/*
 * The answer to one get, from the loop, never from inside
 * oauth_tokens_get. err 0: token[0..len) is a valid access token (valid
 * during the call only). Otherwise token is NULL and err is -EACCES (the
 * grant is revoked or expired: authorize again), -EAGAIN (backing off
 * after failures: try later), -EPERM (the endpoint rejects the client:
 * invalid_client, unauthorized_client, invalid_scope, invalid_request,
 * unsupported_grant_type: configuration), or the endpoint's failure:
 * -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -ECONNRESET, -EPROTO (TLS),
 * -EREMOTEIO (a 5xx or an error code the server did not explain),
 * -EBADMSG (garbage), -ENOMEM.
 */
typedef void (*oauth_token_cb)(void *ctx, int err, const char *token,
			       size_t len);

/*
 * Asks for an access token with the refresh token the login read from
 * the store (refresh[0..n)). A refresh token the cache rotated away from
 * is taken for the newest one; any other differs from the cache's
 * because the account was authorized again: it replaces the cache's
 * (the cached access token and a refusal go with it), unless a refresh
 * is running: the login then waits for that one. saver (may be
 * NULL: rotations then stay in memory) is handed over in every case: the
 * cache releases it when done, possibly before this returns. Returns 0
 * (cb will be called) and the wait in *w_r (may be NULL), -EINVAL (no
 * refresh token, or one over OAUTH_TOKEN_MAX), -ENOMEM or -ESHUTDOWN;
 * cb is not called then.
 */
int oauth_tokens_get(struct oauth_tokens *t, const char *refresh, size_t n,
		     struct oauth_saver *saver, oauth_token_cb cb, void *ctx,
		     struct oauth_wait **w_r);

/* Stops waiting: cb never fires; *w becomes NULL. The refresh goes on.
 * Safe from inside any callback; NULL is allowed. */
void oauth_wait_cancel(struct oauth_wait **w);

/* The server refused token[0..n) (it expired early, or was revoked):
 * if it is the cached access token it is forgotten, so that the next get
 * refreshes. */
void oauth_tokens_reject(struct oauth_tokens *t, const char *token, size_t n);

/* A refresh request is in flight, or a login waits for its answer
 * (shutdown waits for them; a reload keeps the cache). */
bool oauth_tokens_busy(const struct oauth_tokens *t);

/* How many token requests were sent (tests). */
unsigned oauth_tokens_requests(const struct oauth_tokens *t);

#endif
