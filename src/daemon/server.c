/* The session registry: members, peer counts, the graceful stop. */
#include "daemon/server.h"

#include <string.h>

#include "net/conn.h"
#include "net/tls.h"
#include "util/error.h"
#include "util/log.h"

static void
idle_check(struct server *srv)
{
	if (srv->stopping && srv->n_sessions == 0 && srv->n_holds == 0 &&
	    srv->on_idle != NULL)
		srv->on_idle(srv);
}

uint64_t
server_join(struct server *srv, struct server_member *m)
{
	m->prev = NULL;
	m->next = srv->members;
	if (srv->members != NULL)
		srv->members->prev = m;
	srv->members = m;
	srv->n_sessions++;
	return ++srv->next_id;
}

void
server_leave(struct server *srv, struct server_member *m)
{
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		srv->members = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	m->prev = m->next = NULL;
	srv->n_sessions--;
	idle_check(srv);
}

unsigned
server_count_peer(const struct server *srv, const char *peer)
{
	const struct server_member *m;
	unsigned n = 0;

	for (m = srv->members; m != NULL; m = m->next) {
		if (m->peer != NULL && strcmp(m->peer, peer) == 0)
			n++;
	}
	return n;
}

void
server_end_all(struct server *srv, const char *reason)
{
	/* Each end unlinks the head. */
	while (srv->members != NULL)
		srv->members->end(srv->members, reason);
}

void
server_stop(struct server *srv)
{
	srv->stopping = true;
	idle_check(srv);
}

void
server_hold(struct server *srv)
{
	srv->n_holds++;
}

void
server_release(struct server *srv)
{
	srv->n_holds--;
	idle_check(srv);
}

int
server_start_tls(struct server *srv, struct conn *c)
{
	struct tls *t = tls_new(srv->tls_server, NULL);

	/* RFC 8314: TLS from the first byte; the greeting waits in the TLS
	 * layer until the handshake is done. */
	if (t == NULL) {
		log_warn("client=%s: cannot start TLS", conn_peer(c));
		return -ENOMEM;
	}
	if (conn_start_tls(c, t) < 0) {
		log_warn("client=%s: cannot start TLS", conn_peer(c));
		return -EIO;
	}
	return 0;
}

void
server_free(struct server *srv)
{
	mapstore_free(&srv->maps);
	tls_ctx_unref(&srv->tls_server);
	tls_ctx_unref(&srv->tls_client);
}
