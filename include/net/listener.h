#ifndef POPBRIDGE_LISTENER_H
#define POPBRIDGE_LISTENER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "daemon/config.h"
#include "store/mapstore.h"

struct conn;
struct session;
struct tls_ctx;
struct server;

struct listener {
	uv_tcp_t tcp;
	struct server *srv;
	bool implicit_tls;	/* pop3s: TLS from the first byte */
};

/*
 * The listening sockets and the sessions they created. One per process;
 * the loop and the configuration it points to outlive it.
 */
struct server {
	uv_loop_t *loop;
	const struct config *cfg;
	struct listener listeners[2 * CONFIG_MAX_ADDRS];
	struct tls_ctx *tls_server;	/* NULL without cert and key */
	struct tls_ctx *tls_client;	/* NULL with upstream tls = none */
	size_t n_listeners;
	size_t n_closing;
	struct mapstore maps;		/* UID maps of logged-in accounts */
	struct session *sessions;	/* doubly linked through session */
	unsigned n_sessions;
	uint64_t next_id;
	bool stopping;
	void (*on_idle)(struct server *srv);	/* stopping and no sessions */
};

/* Binds and listens on every configured POP3 address. Returns 0, or a
 * negative libuv error after logging which address failed. */
int listener_start(struct server *srv, uv_loop_t *loop,
		   const struct config *cfg);

/* Stops accepting; sessions go on. */
void listener_stop(struct server *srv);

/* Sessions from one address, for max_per_ip. */
unsigned listener_count_peer(const struct server *srv, const char *peer);

/* Starts implicit TLS (pop3s) on an accepted connection: 0 or -1. */
int listener_start_tls(struct server *srv, struct conn *c);

/* Called by a session as it ends. */
void listener_session_gone(struct server *srv);

#endif
