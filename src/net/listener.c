#include "net/listener.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "net/conn.h"
#include "util/log.h"
#include "pop3/session.h"
#include "net/tls.h"

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
	struct server *srv = l->srv;
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
	    listener_count_peer(srv, conn_peer(c)) >= cfg->limits.max_per_ip) {
		refuse(c, "-ERR [SYS/TEMP] too many sessions from your "
		       "address, please wait and try again\r\n",
		       "max_per_ip reached");
		return;
	}
	if (!proxied && l->implicit_tls && listener_start_tls(srv, c) < 0) {
		conn_close(&c, 0);
		return;
	}
	session_start(srv, c, (proxied ? SESSION_PROXIED : 0) |
		      (l->implicit_tls ? SESSION_IMPLICIT_TLS : 0));
}

int
listener_start_tls(struct server *srv, struct conn *c)
{
	struct tls *t = tls_new(srv->tls_server, NULL);

	/* RFC 8314: TLS from the first byte; the greeting waits in the TLS
	 * layer until the handshake is done. */
	if (t == NULL || conn_start_tls(c, t) < 0) {
		log_warn("client=%s: cannot start TLS", conn_peer(c));
		return -1;
	}
	return 0;
}

static int
addr_resolve(const struct config_addr *a, struct sockaddr_storage *ss)
{
	if (strchr(a->host, ':') != NULL)
		return uv_ip6_addr(a->host, a->port, (struct sockaddr_in6 *)ss);
	return uv_ip4_addr(a->host, a->port, (struct sockaddr_in *)ss);
}

static int
listen_one(struct server *srv, const struct config_addr *a, bool tls)
{
	struct sockaddr_storage ss;
	struct listener *l = &srv->listeners[srv->n_listeners];
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
	l->srv = srv;
	l->implicit_tls = tls;
	t->data = l;
	srv->n_listeners++;
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
listener_start(struct server *srv, uv_loop_t *loop, const struct config *cfg)
{
	size_t i;
	int r;

	srv->loop = loop;
	srv->cfg = cfg;
	for (i = 0; i < cfg->listen.n_pop3; i++) {
		r = listen_one(srv, &cfg->listen.pop3[i], false);
		if (r < 0)
			return r;
	}
	for (i = 0; i < cfg->listen.n_pop3s && srv->tls_server != NULL; i++) {
		r = listen_one(srv, &cfg->listen.pop3s[i], true);
		if (r < 0)
			return r;
	}
	if (srv->n_listeners == 0) {
		log_error("no listen address configured");
		return UV_EINVAL;
	}
	return 0;
}

static void
on_listener_closed(uv_handle_t *h)
{
	struct listener *l = h->data;
	struct server *srv = l->srv;

	srv->n_closing--;
	if (srv->n_closing == 0 && srv->n_sessions == 0 && srv->on_idle)
		srv->on_idle(srv);
}

void
listener_stop(struct server *srv)
{
	size_t i;

	if (srv->stopping)
		return;
	srv->stopping = true;
	for (i = 0; i < srv->n_listeners; i++) {
		srv->n_closing++;
		uv_close((uv_handle_t *)&srv->listeners[i].tcp,
			 on_listener_closed);
	}
	if (srv->n_closing == 0 && srv->n_sessions == 0 && srv->on_idle)
		srv->on_idle(srv);
}

unsigned
listener_count_peer(const struct server *srv, const char *peer)
{
	const struct session *s;
	unsigned n = 0;

	/* Connections still waiting for their PROXY header carry the proxy's
	 * address, which is not a client's. */
	for (s = srv->sessions; s != NULL; s = s->next) {
		if (!s->proxy_pending && strcmp(s->peer, peer) == 0)
			n++;
	}
	return n;
}

void
listener_session_gone(struct server *srv)
{
	srv->n_sessions--;
	if (srv->stopping && srv->n_sessions == 0 && srv->n_closing == 0 &&
	    srv->on_idle)
		srv->on_idle(srv);
}
