#ifndef POPBRIDGE_UPSTREAM_H
#define POPBRIDGE_UPSTREAM_H

#include <stdint.h>
#include <uv.h>

#include "daemon/config.h"
#include "imap/imap_client.h"
#include "mailbox/maildrop.h"
#include "store/uidmap.h"

/*
 * The mailbox operations one POP3 session needs, built from IMAP commands:
 * open (log in, SELECT each folder, list UIDs and sizes), fetch one
 * message or part (with more asked for ahead: upstream_prefetch), and
 * apply the deletions at QUIT. One operation runs at a time; each reports through the callbacks given at creation, never from
 * inside the call that started it. A call that cannot start its operation
 * returns a negative errno code (util/error.h) and reports nothing:
 * -EBUSY while another operation runs, -ENOTCONN once the upstream
 * connection is lost.
 */

enum upstream_status {
	UPSTREAM_OK = 0,
	UPSTREAM_AUTH,		/* wrong credentials */
	UPSTREAM_GONE,		/* the message no longer exists upstream */
	UPSTREAM_TEMP,		/* unreachable, failing or refusing: later */
};

struct upstream_events {
	/* The running operation finished; why is a short explanation. */
	void (*done)(void *ctx, enum upstream_status st, const char *why);
	/* Message bytes of the running fetch, in order. */
	void (*data)(void *ctx, const char *p, size_t n);
};

enum upstream_part {
	UPSTREAM_WHOLE,		/* BODY.PEEK[] */
	UPSTREAM_HEADER,	/* BODY.PEEK[HEADER] */
	UPSTREAM_TEXT,		/* BODY.PEEK[TEXT]<offset.length> */
};

struct upstream;

/* tls_ctx: see imap_client_new. */
struct upstream *upstream_new(uv_loop_t *loop, const struct config *cfg,
			      struct tls_ctx *tls_ctx, const char *session_id,
			      const struct upstream_events *ev, void *ctx);
void upstream_free(struct upstream **u);

/* What an upstream login's secret is. */
enum upstream_cred {
	UPSTREAM_CRED_PASSWORD = 0,
	UPSTREAM_CRED_BEARER,		/* an OAuth2 access token */
};

/* Logs in with secret (of kind cred) and takes the snapshot into md
 * (initialised with the folders) through the account's UID map
 * (borrowed; it must outlive u). Returns 0, -EBUSY, or
 * imap_client_login's error. */
int upstream_open(struct upstream *u, const char *user, size_t user_len,
		  const char *secret, size_t secret_len,
		  enum upstream_cred cred, struct maildrop *md,
		  struct uidmap *map);

/* Streams part of message msg; for UPSTREAM_TEXT, length octets from
 * offset. done reports OK (all bytes delivered; data may not have been
 * called for an empty part), GONE or TEMP. Returns 0, -EBUSY, -ENOTCONN,
 * or the error of the SELECT it needed. */
int upstream_fetch(struct upstream *u, const struct maildrop_msg *msg,
		   enum upstream_part part, uint64_t offset, uint64_t length);

/*
 * The fetch window: asks now for a part of msg (as upstream_fetch would)
 * that the session expects to be asked for soon, pipelined behind what is
 * in flight, so that the fetch starts at once when it comes. No event
 * reports it; its reply waits unread in the socket (memory stays bounded:
 * TCP holds it back). upstream_fetch of the same part takes it; any other
 * fetch reads the replies in front of its own away unread. The requests
 * ahead may cost at most [upstream] read_ahead MB (a whole message its
 * size, a header at most 64 KB). Returns 0; -ENOBUFS (the budget or the
 * window is full), -EEXIST (asked for already), -EBUSY (an open or update
 * runs, or a SELECT), -EINVAL (msg is in another folder than the selected
 * one) or -ENOTCONN; nothing was sent then.
 */
int upstream_prefetch(struct upstream *u, const struct maildrop_msg *msg,
		      enum upstream_part part, uint64_t offset,
		      uint64_t length);

/* Fetches and prefetches given between cork and uncork (nesting) go to
 * the server in one write. */
void upstream_cork(struct upstream *u);
void upstream_uncork(struct upstream *u);

/* Removes the messages marked deleted in md as on_delete says. done
 * reports OK only when every one was handled. Returns 0, -EBUSY or
 * -ENOTCONN. */
int upstream_update(struct upstream *u);

/* Back-pressure on message data. */
void upstream_pause(struct upstream *u);
void upstream_resume(struct upstream *u);

/* Fetched octets of the running or last fetch (as received). */
uint64_t upstream_fetched(const struct upstream *u);
bool upstream_alive(const struct upstream *u);

/* Ends the IMAP session politely (LOGOUT) without waiting. */
void upstream_logout(struct upstream *u);

#endif
