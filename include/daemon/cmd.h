#ifndef POPBRIDGE_CMD_H
#define POPBRIDGE_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "accounts/account_file.h"
#include "daemon/config.h"
#include "store/safe_file.h"
#include "util/buf.h"

/*
 * What the commands that change an account's file share (popbridge
 * passwd, daemon/passwd_cmd.h; popbridge authorize, daemon/authorize_cmd.h):
 * one-line failures on standard error, secrets read one per line from
 * standard input or prompted for on a terminal without echo, the state
 * directory opened and locked, the file handed to the daemon's user, and
 * a process that leaves no core file and no terminal without echo behind.
 *
 * Functions returning int return 0 or 1, the exit status, after printing
 * the one-line reason (cmd_fail), unless they say otherwise.
 */

/* A device password must travel in "PASS <password>" within RFC 2449's
 * 255 octets, and resist guessing a little even offline. */
#define CMD_DEVICE_PW_MIN 8
#define CMD_DEVICE_PW_MAX 250
/* The label of a device no option named. */
#define CMD_DEFAULT_LABEL "default"

/* "popbridge: ", the message and a line end on standard error. Returns
 * 1. */
__attribute__((format(printf, 1, 2))) int cmd_fail(const char *fmt, ...);

/* For the rest of the process: no core file (secrets pass through it),
 * and SIGINT, SIGTERM, SIGHUP and SIGQUIT turn the terminal's echo back
 * on (when a prompt turned it off) before they end the process as they
 * would have. */
void cmd_protect(void);

/*
 * Reads one line from standard input into out (a secret buffer), its
 * line end (LF, or CRLF) stripped, one byte at a time: what follows the
 * line stays unread. Returns 0; -ENODATA at the end of the input with
 * nothing read; -EMSGSIZE for more than max bytes; -EINVAL for a NUL;
 * -EIO. out is wiped first, and on failure.
 */
int cmd_read_line(struct buf *out, size_t max);

/*
 * One secret, what says what it is for ("new password for device d of
 * account a"): from standard input, or, with tty, prompted for on
 * standard error without echo and asked twice when confirm. At least min
 * bytes (short_hint follows the "expected at least N characters" of the
 * refusal: "" or "; ..."), at most max. Returns 0 or 1.
 */
int cmd_get_secret(bool tty, const char *what, bool confirm, size_t min,
		   size_t max, const char *short_hint, struct buf *out);

/*
 * Opens [state] dir into *d, creating it (mode 0700) when missing, as the
 * daemon does; with lock, takes the lock on it that every command
 * writing there holds until safe_file_close_dir (two commands at once
 * would each write a whole file and the last would win: they take
 * turns). Returns 0 or 1 (d closed).
 */
int cmd_state_open(const struct config *cfg, bool lock,
		   struct safe_file_dir *d);

/* account's file in d into *f: empty (account_file_init) when there is
 * none. Returns 0 or 1 (d left open). */
int cmd_account_load(const struct safe_file_dir *d, const char *account,
		     struct account_file *f);

/*
 * The account key in key_r, unlocked with pass[0..n). Returns 0, or 1
 * after "account ACCOUNT: " and refused when no device has this password
 * (or there is none), or after a reason of its own (the file was
 * altered, a crypto error).
 */
int cmd_unlock(const struct account_file *f, const char *account,
	       const char *pass, size_t n, const char *refused,
	       uint8_t key_r[ACCOUNT_KEY_LEN]);

/* Writes f as its account's file in d (crash-safe, 0600) and, as root,
 * gives it to the directory's owner (the daemon's user; privs.c hands the
 * directory over the same way). Returns 0 or 1. */
int cmd_account_save(const struct safe_file_dir *d,
		     const struct account_file *f);

/* Loads the configuration at path into *cfg_r and finds its account
 * name: the account's view, or NULL after saying why (*cfg_r freed). */
const struct config *cmd_config_account(const char *path, const char *name,
					struct config **cfg_r);

#endif
