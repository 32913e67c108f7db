#ifndef POPBRIDGE_OAUTH_FLOWS_H
#define POPBRIDGE_OAUTH_FLOWS_H

#include <stddef.h>
#include <stdint.h>

#include "oauth/token.h"
#include "util/buf.h"

/*
 * The two ways `popbridge authorize` obtains a grant, as pure state
 * machines (no I/O, the clock passed in): the device authorization grant
 * (RFC 8628) and the authorization code grant with PKCE and a loopback
 * redirect (RFC 8252, RFC 7636). oauth/authorize.h runs them on the loop;
 * oauth/loopback.h is the redirect listener.
 */

/* -- device authorization grant ---------------------------------------------- */

/* Polling after a failed request (a timeout, a 5xx, garbage) backs off
 * (RFC 8628 §3.5), doubling the interval up to this. */
#define OAUTH_DEVICE_BACKOFF_MAX_S 300u
/* slow_down adds this to the interval (RFC 8628 §3.5). */
#define OAUTH_SLOW_DOWN_S 5u

struct oauth_device_flow {
	uint64_t deadline_ms;	/* the device code expires */
	uint32_t interval_s;	/* between polls */
	unsigned polls;		/* answers seen */
	unsigned slow_downs;
	unsigned failures;	/* requests that failed, in a row */
};

enum oauth_step {
	OAUTH_STEP_POLL = 0,	/* poll again after *delay_ms_r */
	OAUTH_STEP_DONE,	/* the answer holds tokens */
	OAUTH_STEP_FAIL,	/* *err_r says why */
};

/* Starts polling for the device code d was given at now_ms (its
 * expires_in and interval). */
void oauth_device_flow_start(struct oauth_device_flow *f,
			     const struct oauth_device_auth *d,
			     uint64_t now_ms);

/* The wait before the first poll (the interval). */
uint64_t oauth_device_flow_first_delay(const struct oauth_device_flow *f);

/*
 * One poll's outcome: err (0, or the transport's negative code) and the
 * HTTP answer (status, body) when err is 0. Parses into r (the tokens on
 * DONE; the error on FAIL when the server sent one). Returns
 *   POLL with *delay_ms_r: authorization_pending (the interval), slow_down
 *     (the interval grows by OAUTH_SLOW_DOWN_S for this and every later
 *     poll), or a failed request (the interval doubles for the next
 *     wait, at most OAUTH_DEVICE_BACKOFF_MAX_S);
 *   DONE: tokens in r;
 *   FAIL with *err_r: -EACCES (access_denied, or invalid_grant: the code
 *     is not valid), -ETIMEDOUT (expired_token, or the next poll would
 *     come after the code expires), -EPERM (invalid_client,
 *     unauthorized_client, invalid_scope, invalid_request,
 *     unsupported_grant_type), -EREMOTEIO (any other error code),
 *     -ENOMEM.
 */
enum oauth_step oauth_device_flow_answer(struct oauth_device_flow *f,
					 uint64_t now_ms, int err, long status,
					 const char *body, size_t n,
					 struct oauth_token_resp *r,
					 int *err_r, uint64_t *delay_ms_r);

/* -- authorization code with PKCE and a loopback redirect ------------------------ */

/* The longest redirect URL or query read (a listener's request line, a
 * pasted URL). */
#define OAUTH_REDIRECT_MAX 8192

/*
 * The authorization URL to open in a browser: cl->auth_url with
 * response_type=code, client_id, redirect_uri, scope, state,
 * code_challenge, code_challenge_method=S256 and prompt=consent (unless
 * auth_extra names a prompt), then cl->auth_extra.
 * Returns 0, -EINVAL (no auth_url, client_id or scope; an empty state or
 * challenge) or a buf error.
 */
int oauth_auth_url(struct buf *out, const struct oauth_client *cl,
		   const char *redirect_uri, const char *state,
		   const char *challenge);

/*
 * Reads what came back to the redirect URI: a whole URL (pasted from the
 * browser's address bar; surrounding white space is ignored) or a
 * request target ("/?code=...&state=..."). The state must equal state
 * (compared in constant time), else the answer is ignored. Returns
 *   0: the code in code (a secret buffer), e cleared;
 *   1: the server's error (e: access_denied, ...), with the right state;
 *   -ESRCH: no state, or another one (ignore it and wait for the right
 *     answer);
 *   -EBADMSG: no query, a parameter twice, bad percent-encoding, neither
 *     code nor error, a code over OAUTH_TOKEN_MAX or not printable;
 *   -ENOBUFS: over OAUTH_REDIRECT_MAX.
 */
int oauth_redirect_parse(const char *s, size_t n, const char *state,
			 struct buf *code, struct oauth_err *e);

#endif
