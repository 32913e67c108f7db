#ifndef POPBRIDGE_SERVER_H
#define POPBRIDGE_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "accounts/account_login.h"
#include "daemon/config.h"
#include "store/mapstore.h"

/*
 * The process's registry of running sessions and what they share: the
 * configuration new sessions take, the TLS contexts, the UID maps, and the
 * bookkeeping of a graceful stop. One per process, owned by main (or a
 * test harness); the loop outlives it.
 *
 * The registry knows a session only as a member: a link, the client's
 * address and a way to end it. The listener counts members to enforce
 * limits, a session joins as it starts and leaves as it ends, main ends
 * them all when the grace period runs out: no module includes another's
 * internals.
 */

struct account_oauth;
struct conn;
struct tls_ctx;
struct server_member;

/* Ends a member (its session); the member leaves the registry before this
 * returns. */
typedef void server_end_fn(struct server_member *m, const char *reason);

struct server_member {
	struct server_member *prev, *next;
	/* The client's address, NULL while it is not known yet (a PROXY
	 * header is pending: the connection's own address is the proxy's). */
	const char *peer;
	server_end_fn *end;
};

struct server {
	uv_loop_t *loop;
	const struct config *cfg;	/* what new sessions start with */
	struct tls_ctx *tls_server;	/* NULL without cert and key */
	struct tls_ctx *tls_client;	/* NULL with upstream tls = none */
	struct mapstore maps;		/* UID maps of logged-in accounts */
	struct account_queue logins;	/* device password checks */
	/* OAuth2 accounts' token caches, made at the first such login;
	 * the owner frees them (account_oauth_free) before the loop's last
	 * run. */
	struct account_oauth *oauth;
	struct server_member *members;
	unsigned n_sessions;
	unsigned n_holds;		/* handles still closing (listeners) */
	uint64_t next_id;
	bool stopping;
	/* Called once stopping, with no session and no hold left. */
	void (*on_idle)(struct server *srv);
};

/* Adds m (peer and end set by the caller); returns the session's id, a
 * number unique in the process. */
uint64_t server_join(struct server *srv, struct server_member *m);
/* Removes m; calls on_idle when it was the last one of a stop. */
void server_leave(struct server *srv, struct server_member *m);
/* Sessions whose client has this address, for max_per_ip. */
unsigned server_count_peer(const struct server *srv, const char *peer);
/* Ends every session with reason (the shutdown grace ran out). */
void server_end_all(struct server *srv, const char *reason);

/* A stop begins: no new sessions; on_idle once everything has ended. */
void server_stop(struct server *srv);
/* Something the stop must wait for (a closing listener) / it is done. */
void server_hold(struct server *srv);
void server_release(struct server *srv);

/* Starts implicit TLS (pop3s) on an accepted connection with the server's
 * certificate: 0, or a negative error code after logging it. */
int server_start_tls(struct server *srv, struct conn *c);

/* Releases the maps and TLS contexts (the sessions have ended). */
void server_free(struct server *srv);

#endif
