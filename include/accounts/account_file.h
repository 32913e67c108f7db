#ifndef POPBRIDGE_ACCOUNT_FILE_H
#define POPBRIDGE_ACCOUNT_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accounts/account_crypto.h"
#include "daemon/config.h"
#include "store/safe_file.h"
#include "util/buf.h"

/*
 * One account's file under [state] dir, "account-<name>" (the name in
 * lower case): its device passwords and its upstream secret, none of it
 * readable without a device password. Text, one record a line, fields
 * apart by one space, binary fields in base64 (RFC 4648, padded):
 *
 *   popbridge-account 1
 *   account NAME
 *   device LABEL CREATED scrypt LOG_N R P SALT VERIFIER NONCE WRAPPED
 *   ...                                       (0 to ACCOUNT_DEVICES_MAX)
 *   upstream NONCE CIPHERTEXT                 (optional; needs a device)
 *
 * CREATED is when the device was added (seconds since 1970, UTC). SALT is
 * the device's random scrypt salt; scrypt's output, through HKDF, gives
 * VERIFIER (compared in constant time at login) and a key that wraps the
 * account key: WRAPPED is the account key sealed with AES-256-GCM under
 * it, NONCE its nonce, the account and the label authenticated with it.
 * CIPHERTEXT is the upstream secret sealed under the account key (tag
 * appended, the account authenticated). Every line ends with LF, the
 * records come in this order, and anything else is damage: the file is
 * written only by popbridge (accounts/account_keys.h does the crypto).
 */

#define ACCOUNT_FILE_VERSION 1
/* A device's label: like an account's name, and as long. */
#define ACCOUNT_LABEL_MAX CONFIG_ACCOUNT_NAME_MAX
/* Devices per account: each costs one scrypt per login with a wrong
 * password (and, in the worst case, with a right one). */
#define ACCOUNT_DEVICES_MAX 16
/* The upstream secret: an app password, later an OAuth2 refresh token;
 * as long as the IMAP client takes a password. */
#define ACCOUNT_SECRET_MAX 4096
#define ACCOUNT_SALT_LEN 16
#define ACCOUNT_VERIFIER_LEN 32
#define ACCOUNT_WRAPPED_LEN (ACCOUNT_KEY_LEN + ACCOUNT_TAG_LEN)
/* Room for the largest valid file, and a bound on what is read. */
#define ACCOUNT_FILE_MAX (64u * 1024)
/* "account-" and the name. */
#define ACCOUNT_FILE_NAME_MAX (8 + CONFIG_ACCOUNT_NAME_MAX + 1)
/* Room for the reason a file is refused ("line 3: ..."). */
#define ACCOUNT_WHY_MAX 160

struct account_device {
	char label[ACCOUNT_LABEL_MAX + 1];
	uint64_t created;
	struct account_kdf kdf;
	uint8_t salt[ACCOUNT_SALT_LEN];
	uint8_t verifier[ACCOUNT_VERIFIER_LEN];
	uint8_t nonce[ACCOUNT_NONCE_LEN];
	uint8_t wrapped[ACCOUNT_WRAPPED_LEN];
};

/* A whole file in memory; plain data without pointers, so copying the
 * struct copies the file (a login job takes a copy to another thread). */
struct account_file {
	char name[CONFIG_ACCOUNT_NAME_MAX + 1];
	size_t n_devices;
	struct account_device devices[ACCOUNT_DEVICES_MAX];
	bool has_upstream;
	uint8_t up_nonce[ACCOUNT_NONCE_LEN];
	size_t up_len;			/* ciphertext and tag */
	uint8_t up_ct[ACCOUNT_SECRET_MAX + ACCOUNT_TAG_LEN];
};

/* An empty file (no device, no secret) for the account name. */
void account_file_init(struct account_file *f, const char *name);

/* Whether s is a good account name or device label: 1 to
 * CONFIG_ACCOUNT_NAME_MAX letters, digits, '.', '_', '-', the first a
 * letter or digit. */
bool account_file_name_ok(const char *s);

/* The device labelled label (compared without regard to ASCII case), or
 * NULL. */
const struct account_device *account_file_device(const struct account_file *f,
						 const char *label);

/*
 * Parses text[0..len) as the file of account (compared without regard to
 * ASCII case) into *f. Returns 0; -EBADMSG for damage, with why saying
 * where and what ("line 3: bad salt (expected 16 bytes in base64)"); or
 * -EPROTONOSUPPORT for a version other than ACCOUNT_FILE_VERSION (why
 * names it). *f is unspecified on failure.
 */
int account_file_parse(const char *text, size_t len, const char *account,
		       struct account_file *f, char *why, size_t whylen);

/* Appends f as the text account_file_parse reads back. Returns 0 or the
 * buf error (-ENOBUFS, -ENOMEM). */
int account_file_render(const struct account_file *f, struct buf *out);

/* The file's name for account: "account-" and the name in lower case. */
void account_file_name(const char *account,
		       char name_r[ACCOUNT_FILE_NAME_MAX]);

/*
 * Reads and parses account's file in d. Returns 0; -ENOENT when there is
 * none (then *f is empty, as account_file_init makes it); the codes of
 * account_file_parse; or safe_file_read's. err names the file and says
 * why.
 */
int account_file_load(const struct safe_file_dir *d, const char *account,
		      struct account_file *f, char *err, size_t errlen);

/* Writes f as its account's file in d, crash-safely, mode 0600
 * (safe_file_write; its codes). */
int account_file_save(const struct safe_file_dir *d,
		      const struct account_file *f, char *err, size_t errlen);

#endif
