#ifndef POPBRIDGE_LISTENER_H
#define POPBRIDGE_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "daemon/config.h"

/*
 * The listening sockets: each accepted connection is checked against the
 * limits (max_sessions, max_per_ip, a stop in progress) and handed to
 * session_start, with implicit TLS started first on a pop3s address.
 * Owned by main; the server registry outlives it.
 */

struct server;

struct listener {
	uv_tcp_t tcp;
	struct listeners *set;
	bool implicit_tls;	/* pop3s: TLS from the first byte */
};

struct listeners {
	struct server *srv;
	struct listener l[2 * CONFIG_MAX_ADDRS];
	size_t n;
};

/* Binds and listens on every POP3 address of srv's configuration. Returns
 * 0, or a negative libuv error after logging which address failed. */
int listener_start(struct listeners *ls, struct server *srv);

/* Stops accepting and begins the server's stop; sessions go on. */
void listener_stop(struct listeners *ls);

#endif
