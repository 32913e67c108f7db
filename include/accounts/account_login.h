#ifndef POPBRIDGE_ACCOUNT_LOGIN_H
#define POPBRIDGE_ACCOUNT_LOGIN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "accounts/account_file.h"
#include "util/buf.h"

/*
 * A device password checked off the event loop: scrypt for each device
 * (about 100 ms each) runs on libuv's threadpool, and on success the
 * upstream secret is opened there too. At most ACCOUNT_LOGIN_PARALLEL
 * checks run at once in a process; more wait in a queue, in order, so
 * that a flood of logins cannot take every thread of the pool (libuv's
 * default is 4, and name resolution for upstream connections needs them
 * too) nor scrypt's memory more than that many times.
 */

#define ACCOUNT_LOGIN_PARALLEL 2

enum account_verdict {
	ACCOUNT_UNLOCKED = 0,	/* secret holds the upstream secret */
	ACCOUNT_DENIED,		/* no device has this password */
	ACCOUNT_NO_DEVICE,	/* there was nothing to try (a check that
				 * costs what a wrong password does) */
	ACCOUNT_NO_SECRET,	/* a device's password; no upstream secret */
	ACCOUNT_DAMAGED,	/* a verifier matched, its key did not open */
	ACCOUNT_FAILED,		/* out of memory, OpenSSL failed */
};

/* The check is over, took_ms after account_login_start (the wait in the
 * queue included: a caller can make every answer take as long). secret
 * (a secret buffer) and key (the account key the device password
 * unwrapped, with ACCOUNT_UNLOCKED and ACCOUNT_NO_SECRET; NULL
 * otherwise: an OAuth2 login seals a rotated refresh token under it) are
 * wiped and freed when this returns: copy what is needed. The job is
 * gone by then; do not cancel it. */
typedef void account_login_done_fn(void *ctx, enum account_verdict v,
				   struct buf *secret, const uint8_t *key,
				   uint64_t took_ms);

/* The process's queue of checks; zero-initialised, one per process (the
 * server registry holds it). */
struct account_login;
struct account_queue {
	struct account_login *head, *tail;	/* waiting */
	unsigned running;
};

/*
 * Checks pass against the devices of f (copied; NULL: no device, a dummy
 * check) on loop's threadpool. done is called on the loop thread, never
 * from inside this call. pass is copied into a secret buffer and wiped
 * after use. Returns 0 and the job in *job_r, or -ENOMEM.
 */
int account_login_start(struct account_queue *q, uv_loop_t *loop,
			const struct account_file *f, const char *pass,
			size_t pass_len, account_login_done_fn *done, void *ctx,
			struct account_login **job_r);

/* Forgets a job whose caller goes away (a session ending): done is never
 * called; a check already running finishes on its thread and is then
 * freed. *job becomes NULL; NULL is allowed. */
void account_login_cancel(struct account_login **job);

#endif
