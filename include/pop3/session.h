#ifndef POPBRIDGE_SESSION_H
#define POPBRIDGE_SESSION_H

struct conn;
struct server;

/*
 * One POP3 session (RFC 1939): the client connection, its state, its
 * snapshot of the maildrop and its upstream IMAP connection. The listener
 * starts one per accepted connection; it joins the server registry and
 * leaves it as it ends (server_end_all ends it from outside). Everything
 * else about a session is private to src/pop3 (session_priv.h).
 */

/* How a session begins. */
enum {
	SESSION_PROXIED = 1 << 0,	/* a PROXY header comes first */
	SESSION_IMPLICIT_TLS = 1 << 1,	/* pop3s (started after the header
					 * when proxied) */
};
/* A trusted proxy has this long to send its header. */
#define SESSION_PROXY_TIMEOUT_MS 10000

/* Creates a session for an accepted connection and sends the greeting
 * (after the PROXY header when proxied). Returns 0 or a negative error
 * code (the connection is closed then). */
int session_start(struct server *srv, struct conn *client, unsigned flags);

#endif
