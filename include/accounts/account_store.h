#ifndef POPBRIDGE_ACCOUNT_STORE_H
#define POPBRIDGE_ACCOUNT_STORE_H

#include <stddef.h>

#include "accounts/account_file.h"
#include "daemon/config.h"

/*
 * What the accounts of one loaded configuration need while it serves
 * sessions: a TLS client context per account (shared with [upstream]'s
 * where the settings are the same) and the account files as last read.
 * The store is attached to the configuration (its runtime) and lives as
 * long as the configuration does, so a session that started before a
 * reload finishes with the accounts and contexts it started with, and a
 * reload builds a new store for new sessions. Loop thread only.
 */

struct account_store;
struct tls_ctx;

/*
 * Builds the store of cfg (the file's configuration, not a view), taking
 * a reference to root_tls ([upstream]'s context, NULL with tls = none),
 * and attaches it as cfg's runtime. Logs a warning for each account whose
 * upstream is plaintext or unverified. Returns 0, or a negative code after
 * logging why (an account's ca_file does not load; out of memory).
 */
int account_store_attach(struct config *cfg, struct tls_ctx *root_tls);

/* The store of cfg's root, or NULL when none is attached. */
struct account_store *account_store_of(const struct config *cfg);

/* The TLS client context for account acct (a view of the store's
 * configuration): NULL with tls = none. Borrowed. */
struct tls_ctx *account_store_tls(const struct account_store *st,
				  const struct config *acct);
/* [upstream]'s context, as given to account_store_attach. Borrowed. */
struct tls_ctx *account_store_root_tls(const struct account_store *st);

/*
 * The file of account acct as it is now: read again when it changed on
 * disk since the last call (another inode, size or modification time:
 * popbridge passwd replaces it whole), else as cached. Returns 0 with *f_r
 * (valid until the next call for that account), -ENOENT when the account
 * has no file yet (*f_r an empty one), or the load's error (-EBADMSG for
 * a damaged file, -EACCES, ...) with err saying what and where; *f_r is
 * NULL then.
 */
int account_store_file(struct account_store *st, const struct config *acct,
		       const struct account_file **f_r, char *err,
		       size_t errlen);

/*
 * The name under which acct's UID map is kept (mapstore_get's user):
 * the upstream user, a NUL, "account ", the account's name in lower case.
 * A pass-through login never has a NUL in its name (POP3 refuses it in a
 * command, AUTH PLAIN uses it as the separator), so no pass-through map
 * is an account's, and two accounts on one mailbox keep their own.
 * Returns the length written, or 0 when it does not fit in out_len
 * (ACCOUNT_STORE_MAP_USER_MAX always holds it: a configuration line is
 * shorter).
 */
#define ACCOUNT_STORE_MAP_USER_MAX 512
size_t account_store_map_user(const struct config *acct, char *out,
			      size_t out_len);

#endif
