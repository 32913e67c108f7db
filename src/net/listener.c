/* The listening sockets: accept, limits, hand-over to a session. */
#include "net/listener.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "daemon/server.h"
#include "net/conn.h"
#include "util/log.h"
#include "pop3/session.h"

/* RFC-less but conventional: the kernel queue of not-yet-accepted
 * connections. */
#define LISTEN_BACKLOG 511

static void
refuse(struct conn *c, const char *reply, const char *why)
{
	log_warn("refused client=%s: %s", conn_peer(c), why);
	conn_write(c, reply, strlen(reply));
	conn_close(&c, 1);
}

static bool
peer_trusted(const struct config *cfg, const struct conn *c)
{
	unsigned char addr[16];
	int af;

	conn_peer_addr(c, &af, addr);
	return af != 0 && config_cidr_match(cfg->listen.trusted_proxies,
					    cfg->listen.n_trusted_proxies, af,
					    addr);
}

static void
on_connection(uv_stream_t *server, int status)
{
	struct listener *l = server->data;
	struct server *srv = l->set->srv;
	const struct config *cfg = srv->cfg;
	struct conn *c;
	bool proxied;

	if (status < 0) {
		log_warn("accept failed: %s", uv_strerror(status));
		return;
	}
	c = conn_accept(srv->loop, server);
	if (c == NULL)
		return;
	if (srv->stopping) {
		refuse(c, "-ERR [SYS/TEMP] server shutting down, please wait "
		       "and try again\r\n", "shutting down");
		return;
	}
	if (srv->n_sessions >= cfg->limits.max_sessions) {
		refuse(c, "-ERR [SYS/TEMP] too many sessions, please wait and "
		       "try again\r\n", "max_sessions reached");
		return;
	}
	/* Behind a trusted proxy the real client is known only once its
	 * PROXY header is read; the session checks max_per_ip then. */
	proxied = cfg->listen.proxy_protocol && peer_trusted(cfg, c);
	if (!proxied &&
	    server_count_peer(srv, conn_peer(c)) >= cfg->limits.max_per_ip) {
		refuse(c, "-ERR [SYS/TEMP] too many sessions from your "
		       "address, please wait and try again\r\n",
		       "max_per_ip reached");
		return;
	}
	if (!proxied && l->implicit_tls && server_start_tls(srv, c) < 0) {
		conn_close(&c, 0);
		return;
	}
	session_start(srv, c, (proxied ? SESSION_PROXIED : 0) |
		      (l->implicit_tls ? SESSION_IMPLICIT_TLS : 0));
}

static int
addr_resolve(const struct config_addr *a, struct sockaddr_storage *ss)
{
	if (strchr(a->host, ':') != NULL)
		return uv_ip6_addr(a->host, a->port, (struct sockaddr_in6 *)ss);
	return uv_ip4_addr(a->host, a->port, (struct sockaddr_in *)ss);
}

static int
listen_one(struct listeners *ls, const struct config_addr *a, bool tls)
{
	struct server *srv = ls->srv;
	struct sockaddr_storage ss;
	struct listener *l = &ls->l[ls->n];
	uv_tcp_t *t = &l->tcp;
	int r;

	memset(&ss, 0, sizeof(ss));
	r = addr_resolve(a, &ss);
	if (r == 0)
		r = uv_tcp_init(srv->loop, t);
	if (r < 0) {
		log_error("listen %s:%u: %s", a->host, (unsigned)a->port,
			  uv_strerror(r));
		return r;
	}
	l->set = ls;
	l->implicit_tls = tls;
	t->data = l;
	ls->n++;
	/* "[::]:110" must not also claim IPv4, or "0.0.0.0:110" beside it
	 * could not bind. */
	r = uv_tcp_bind(t, (const struct sockaddr *)&ss,
			ss.ss_family == AF_INET6 ? UV_TCP_IPV6ONLY : 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)t, LISTEN_BACKLOG, on_connection);
	if (r < 0) {
		log_error("listen %s:%u: %s", a->host, (unsigned)a->port,
			  uv_strerror(r));
		return r;
	}
	log_info("listening on %s:%u (%s)", a->host, (unsigned)a->port,
		 tls ? "pop3s" : srv->tls_server ? "pop3, STLS" : "pop3");
	return 0;
}

int
listener_start(struct listeners *ls, struct server *srv)
{
	const struct config *cfg = srv->cfg;
	size_t i;
	int r;

	ls->srv = srv;
	ls->n = 0;
	for (i = 0; i < cfg->listen.n_pop3; i++) {
		r = listen_one(ls, &cfg->listen.pop3[i], false);
		if (r < 0)
			return r;
	}
	for (i = 0; i < cfg->listen.n_pop3s && srv->tls_server != NULL; i++) {
		r = listen_one(ls, &cfg->listen.pop3s[i], true);
		if (r < 0)
			return r;
	}
	if (ls->n == 0) {
		log_error("no listen address configured");
		return UV_EINVAL;
	}
	return 0;
}

static void
on_listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;

	server_release(l->set->srv);
}

void
listener_stop(struct listeners *ls)
{
	size_t i;

	if (ls->srv->stopping)
		return;
	for (i = 0; i < ls->n; i++) {
		server_hold(ls->srv);
		uv_close((uv_handle_t *)&ls->l[i].tcp, on_listener_closed);
	}
	server_stop(ls->srv);
}
