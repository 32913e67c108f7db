#ifndef POPBRIDGE_ACCOUNT_KEYS_H
#define POPBRIDGE_ACCOUNT_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "accounts/account_file.h"
#include "util/buf.h"

/*
 * The keys of an account file (accounts/account_file.h).
 *
 * Each account has an account key, 32 random bytes that exist only
 * wrapped: once per device, under a key-encryption key (KEK) derived from
 * that device's password. scrypt(password, the device's salt) gives 32
 * bytes, and HKDF-SHA256 of those with two labels gives the device's
 * verifier (kept in the file, compared in constant time) and its KEK
 * (never kept): the verifier says nothing about the KEK. The account key
 * is sealed under the KEK with AES-256-GCM, the account's and the
 * device's names authenticated with it, so a wrapped key cannot be moved
 * to another device or account. The upstream secret is sealed under the
 * account key (the account's name authenticated). Any device password
 * thus opens the secret; revoking a device removes its wrapped key only;
 * the file without a device password gives nothing but scrypt guesses.
 *
 * Functions that run scrypt take about 100 ms each (ACCOUNT_KDF_DEFAULT):
 * the daemon calls them on the threadpool. Every key and secret they
 * handle is wiped before they return, except what they hand out. They
 * return 0 or a negative errno code (util/error.h).
 */

/* A new random account key. */
int account_keys_new(uint8_t key_r[ACCOUNT_KEY_LEN]);

/*
 * Gives device label (account_file_name_ok) the password pass, its record
 * wrapping key: added, or replacing the device of that label (its created
 * time becomes now). Returns 0, -EINVAL for a bad label or an empty
 * password, -ENOSPC when the account has ACCOUNT_DEVICES_MAX devices
 * already, or a crypto error.
 */
int account_keys_set_device(struct account_file *f, const char *label,
			    const char *pass, size_t pass_len,
			    const uint8_t key[ACCOUNT_KEY_LEN],
			    const struct account_kdf *kdf, uint64_t now);

/*
 * Tries pass against each device in turn. Returns 0 with the account key
 * in key_r and the device's index in *device_r (NULL allowed); -EACCES
 * when no device has this password (or there is none); -EBADMSG when a
 * device's verifier matched but its wrapped key does not open (the file
 * was altered); or a crypto error.
 */
int account_keys_unlock(const struct account_file *f, const char *pass,
			size_t pass_len, uint8_t key_r[ACCOUNT_KEY_LEN],
			size_t *device_r);

/*
 * Spends what one device's check costs and fails: for a login that has
 * no device to try (an unknown name under unknown_users = refuse, an
 * account without devices), so that it takes as long as a wrong password.
 * Returns -EACCES.
 */
int account_keys_dummy(const char *pass, size_t pass_len);

/* Removes device label. Returns 0; 1 when it was the last one: the account
 * key is gone with it, and so is the upstream secret; -ENOENT when there
 * is no such device. */
int account_keys_revoke(struct account_file *f, const char *label);

/* Seals secret[0..len) (1 to ACCOUNT_SECRET_MAX bytes, else -EINVAL) as
 * the upstream secret under key, replacing any. */
int account_keys_seal_secret(struct account_file *f,
			     const uint8_t key[ACCOUNT_KEY_LEN],
			     const void *secret, size_t len);

/* Opens the upstream secret into out (a buf_init_secret buffer; appended).
 * Returns 0, -ENOENT when none is stored, -EBADMSG when it does not open
 * under key, or out's error. */
int account_keys_open_secret(const struct account_file *f,
			     const uint8_t key[ACCOUNT_KEY_LEN],
			     struct buf *out);

#endif
