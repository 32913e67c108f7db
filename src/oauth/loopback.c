/* The loopback redirect listener of the authorization code flow: one
 * right request (matching state) ends it; anything else is ignored. */
#include "oauth/loopback.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "oauth/flows.h"
#include "util/buf.h"
#include "util/error.h"

struct lb_conn {
	uv_tcp_t tcp;
	uv_timer_t idle;
	uv_write_t wr;
	struct oauth_loopback *l;
	struct lb_conn *prev, *next;
	char *out;		/* the response being written */
	size_t len;
	int handles;
	int closing;
	char in[OAUTH_REDIRECT_MAX + 1024];
};

struct oauth_loopback {
	uv_loop_t *loop;
	uv_tcp_t server;
	oauth_loopback_cb cb;
	void *ctx;
	struct lb_conn *conns;
	unsigned nconns;
	unsigned ignored;
	int handles;		/* the server's and every connection's */
	int server_open;
	int finished;		/* the right request came */
	int freed;
	char state[257];
	char uri[64];
};

static void
maybe_free(struct oauth_loopback *l)
{
	if (l->freed && l->handles == 0) {
		OPENSSL_cleanse(l->state, sizeof(l->state));
		free(l);
	}
}

static void
on_conn_handle_closed(uv_handle_t *h)
{
	struct lb_conn *c = h->data;
	struct oauth_loopback *l = c->l;

	l->handles--;
	if (--c->handles == 0) {
		free(c->out);
		OPENSSL_cleanse(c->in, sizeof(c->in));
		free(c);
	}
	maybe_free(l);
}

static void
conn_close(struct lb_conn *c)
{
	struct oauth_loopback *l = c->l;

	if (c->closing)
		return;
	c->closing = 1;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		l->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	l->nconns--;
	uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
	uv_close((uv_handle_t *)&c->idle, on_conn_handle_closed);
}

static void
on_server_closed(uv_handle_t *h)
{
	struct oauth_loopback *l = h->data;

	l->handles--;
	maybe_free(l);
}

/* No more requests: the listener and every other connection go. */
static void
stop(struct oauth_loopback *l, struct lb_conn *keep)
{
	struct lb_conn *c, *next;

	if (l->server_open) {
		l->server_open = 0;
		uv_close((uv_handle_t *)&l->server, on_server_closed);
	}
	/* A connection writing its answer closes when it is written. */
	for (c = l->conns; c != NULL; c = next) {
		next = c->next;
		if (c != keep && c->out == NULL)
			conn_close(c);
	}
}

static void
on_written(uv_write_t *w, int status)
{
	(void)status;
	conn_close(w->data);
}

static void
html_escaped(struct buf *b, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '<':
			buf_append_str(b, "&lt;");
			break;
		case '>':
			buf_append_str(b, "&gt;");
			break;
		case '&':
			buf_append_str(b, "&amp;");
			break;
		case '"':
			buf_append_str(b, "&quot;");
			break;
		default:
			buf_append(b, s, 1);
		}
	}
}

static void
on_idle(uv_timer_t *t)
{
	conn_close(t->data);
}

static void
respond(struct lb_conn *c, int status, const char *reason, const char *msg,
	const char *detail)
{
	struct buf body, out;
	uv_buf_t ub;

	buf_init(&body, 4096);
	buf_init(&out, 8192);
	buf_append_str(&body, "<!doctype html><meta charset=\"utf-8\">"
			      "<title>popbridge</title><p>");
	html_escaped(&body, msg);
	if (detail != NULL && detail[0] != '\0') {
		buf_append_str(&body, " (");
		html_escaped(&body, detail);
		buf_append_str(&body, ")");
	}
	buf_append_str(&body, "</p>\n");
	if (buf_appendf(&out, "HTTP/1.1 %d %s\r\nContent-Type: text/html; "
			"charset=utf-8\r\nContent-Length: %zu\r\nCache-Control: "
			"no-store\r\nConnection: close\r\n\r\n", status, reason,
			body.len) < 0 || buf_append(&out, body.data, body.len) < 0) {
		buf_free(&body);
		buf_free(&out);
		conn_close(c);
		return;
	}
	buf_free(&body);
	c->out = out.data;	/* freed with the connection */
	c->len = out.len;
	ub = uv_buf_init(c->out, (unsigned)c->len);
	c->wr.data = c;
	/* A browser that does not read its answer is dropped all the same. */
	uv_timer_start(&c->idle, on_idle, OAUTH_LOOPBACK_IDLE_MS, 0);
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &ub, 1, on_written) < 0)
		conn_close(c);
}

static void
finish(struct oauth_loopback *l, struct lb_conn *c, int result,
       const struct buf *code, const struct oauth_err *e)
{
	if (result == 0)
		respond(c, 200, "OK", "popbridge has the authorization. "
			"You may close this window.", NULL);
	else
		respond(c, 200, "OK", "The authorization server refused: "
			"popbridge stopped waiting.", e->name);
	l->finished = 1;
	stop(l, c);
	l->cb(l->ctx, result, result == 0 ? code->data : NULL,
	      result == 0 ? code->len : 0, e);
}

static void
handle_request(struct lb_conn *c)
{
	struct oauth_loopback *l = c->l;
	struct oauth_err e;
	struct buf code;
	char *sp1, *sp2, *eol;
	size_t tlen, plen;
	int r;

	uv_read_stop((uv_stream_t *)&c->tcp);
	eol = strpbrk(c->in, "\r\n");
	if (eol != NULL)
		*eol = '\0';
	sp1 = strchr(c->in, ' ');
	sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
	if (sp1 == NULL || sp2 == NULL || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
		l->ignored++;
		respond(c, 400, "Bad Request", "This is not a request popbridge reads.", NULL);
		return;
	}
	if ((size_t)(sp1 - c->in) != 3 || memcmp(c->in, "GET", 3) != 0) {
		l->ignored++;
		respond(c, 405, "Method Not Allowed", "Only GET is answered here.", NULL);
		return;
	}
	tlen = (size_t)(sp2 - sp1 - 1);
	plen = strcspn(sp1 + 1, "?# ");
	if (plen != 1 || sp1[1] != '/') {
		l->ignored++;
		respond(c, 404, "Not Found", "Nothing here.", NULL);
		return;
	}
	buf_init_secret(&code, OAUTH_TOKEN_MAX);
	r = oauth_redirect_parse(sp1 + 1, tlen, l->state, &code, &e);
	if (r == 0 || r == 1) {
		finish(l, c, r, &code, &e);
	} else {
		l->ignored++;
		respond(c, 400, "Bad Request", "This request was not for "
			"popbridge's authorization and was ignored.", NULL);
	}
	buf_free(&code);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct lb_conn *c = h->data;
	size_t room = sizeof(c->in) - 1 - c->len;

	(void)suggested;
	*b = uv_buf_init(c->in + c->len, (unsigned)room);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct lb_conn *c = s->data;

	(void)b;
	if (nread == UV_ENOBUFS || (nread >= 0 && c->len + (size_t)nread >= sizeof(c->in) - 1)) {
		uv_read_stop(s);
		c->l->ignored++;
		respond(c, 431, "Request Header Fields Too Large", "Too long.", NULL);
		return;
	}
	if (nread < 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	c->in[c->len] = '\0';
	if (strstr(c->in, "\r\n\r\n") != NULL || strstr(c->in, "\n\n") != NULL)
		handle_request(c);
}


static void
on_extra_closed(uv_handle_t *h)
{
	struct oauth_loopback *l = h->data;

	free(h);
	l->handles--;
	maybe_free(l);
}

/* Accepts a connection over the limit only to close it. */
static void
drop_extra(uv_stream_t *server)
{
	struct oauth_loopback *l = server->data;
	uv_tcp_t *t = malloc(sizeof(*t));

	if (t == NULL)
		return;
	uv_tcp_init(server->loop, t);
	t->data = l;
	l->handles++;
	uv_accept(server, (uv_stream_t *)t);
	uv_close((uv_handle_t *)t, on_extra_closed);
}

static void
on_connection(uv_stream_t *server, int status)
{
	struct oauth_loopback *l = server->data;
	struct lb_conn *c;

	if (status < 0 || l->finished)
		return;
	if (l->nconns >= OAUTH_LOOPBACK_CONNS) {
		drop_extra(server);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		drop_extra(server);
		return;
	}
	c->l = l;
	uv_tcp_init(l->loop, &c->tcp);
	uv_timer_init(l->loop, &c->idle);
	c->tcp.data = c;
	c->idle.data = c;
	c->handles = 2;
	l->handles += 2;
	c->next = l->conns;
	if (l->conns != NULL)
		l->conns->prev = c;
	l->conns = c;
	l->nconns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
		conn_close(c);
		return;
	}
	uv_timer_start(&c->idle, on_idle, OAUTH_LOOPBACK_IDLE_MS, 0);
}

int
oauth_loopback_start(uv_loop_t *loop, const char *state, oauth_loopback_cb cb,
		     void *ctx, struct oauth_loopback **l_r)
{
	struct oauth_loopback *l;
	struct sockaddr_in a;
	int len = sizeof(a), r;

	*l_r = NULL;
	if (state == NULL || state[0] == '\0' || strlen(state) > 256)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	l->loop = loop;
	l->cb = cb;
	l->ctx = ctx;
	snprintf(l->state, sizeof(l->state), "%s", state);
	uv_tcp_init(loop, &l->server);
	l->server.data = l;
	l->handles = 1;
	l->server_open = 1;
	uv_ip4_addr("127.0.0.1", 0, &a);
	r = uv_tcp_bind(&l->server, (const struct sockaddr *)&a, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&l->server, 16, on_connection);
	if (r == 0)
		r = uv_tcp_getsockname(&l->server, (struct sockaddr *)&a, &len);
	if (r < 0) {
		l->freed = 1;
		l->server_open = 0;
		uv_close((uv_handle_t *)&l->server, on_server_closed);
		return r;
	}
	snprintf(l->uri, sizeof(l->uri), "http://127.0.0.1:%u/",
		 (unsigned)ntohs(a.sin_port));
	*l_r = l;
	return 0;
}

const char *
oauth_loopback_redirect_uri(const struct oauth_loopback *l)
{
	return l->uri;
}

unsigned
oauth_loopback_ignored(const struct oauth_loopback *l)
{
	return l->ignored;
}

void
oauth_loopback_free(struct oauth_loopback **lp)
{
	struct oauth_loopback *l = *lp;

	if (l == NULL)
		return;
	*lp = NULL;
	l->freed = 1;
	l->finished = 1;
	stop(l, NULL);
	maybe_free(l);
}
