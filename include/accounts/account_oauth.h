#ifndef POPBRIDGE_ACCOUNT_OAUTH_H
#define POPBRIDGE_ACCOUNT_OAUTH_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "accounts/account_crypto.h"
#include "daemon/config.h"
#include "oauth/token_cache.h"

/*
 * The OAuth2 side of the accounts with auth = oauth2, for the daemon: one
 * HTTP client for the process (oauth/http.h) and one token cache
 * (oauth/token_cache.h) per account. A cache outlives the configuration
 * it was made for while the account keeps its name and OAuth settings
 * (token endpoint, client, scope, CA, timeout): a reload (SIGHUP) must not
 * forget a backoff, a refusal already logged, a valid access token or a
 * refresh in flight. Loop thread only.
 *
 * And the saver a login hands to the cache: a rotated refresh token is
 * sealed under the account key the device password unwrapped and written
 * into the account's file at once (account_file_save, under the state
 * directory's lock that popbridge passwd and authorize take). When the
 * lock is held by such a command, the save is retried every
 * ACCOUNT_OAUTH_RETRY_MS for at most ACCOUNT_OAUTH_RETRY_MAX_MS; the cache
 * keeps the token in memory meanwhile. A save never replaces a secret
 * that the key does not open (the account was set up again meanwhile).
 */

#define ACCOUNT_OAUTH_RETRY_MS 250u
#define ACCOUNT_OAUTH_RETRY_MAX_MS 60000u

struct account_oauth;

/* Returns 0 and *ao_r, or -ENOMEM / -EIO (libcurl did not start). */
int account_oauth_new(uv_loop_t *loop, struct account_oauth **ao_r);

/* Drops every cache (a refresh in flight is abandoned) and every pending
 * save (one last try each); memory goes once the loop has closed the
 * handles. *ao becomes NULL; NULL is allowed. */
void account_oauth_free(struct account_oauth **ao);

/* A refresh request or a save is still under way (shutdown waits a
 * little for them: a rotated token must reach the disk). */
bool account_oauth_busy(const struct account_oauth *ao);

/* The token cache of account acct (a view with auth = oauth2), made on
 * first use. NULL when out of memory (logged). Borrowed: valid until
 * account_oauth_prune or account_oauth_free. */
struct oauth_tokens *account_oauth_tokens(struct account_oauth *ao,
					  const struct config *acct);

/* After a reload: drops the caches that no account of cfg uses any more,
 * except those with a refresh in flight (dropped at a later prune). */
void account_oauth_prune(struct account_oauth *ao, const struct config *cfg);

/* A saver for one login of acct (the configuration is referenced until
 * the saver is released) sealing under key (copied, wiped at release).
 * NULL when out of memory: rotations then stay in memory. */
struct oauth_saver *account_oauth_saver(struct account_oauth *ao,
					const struct config *acct,
					const uint8_t key[ACCOUNT_KEY_LEN]);

#endif
