/* oauth/loopback: the redirect listener, driven in-process by oauth/http
 * GETs and raw connections. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "oauth/http.h"
#include "oauth/flows.h"
#include "oauth/loopback.h"
#include "oauth_fixture.h"

static uv_loop_t loop;
static struct http_client *hc;
static struct oauth_loopback *lb;

struct got {
	int calls;
	int result;
	char code[256];
	struct oauth_err e;
	int free_inside;
};

struct resp {
	int done;
	int err;
	long status;
	char body[4096];
};

static void
setup(void)
{
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(http_client_new(&loop, &hc), 0);
}

static void
teardown(void)
{
	oauth_loopback_free(&lb);
	http_client_free(&hc);
	cr_expect_eq(drain_loop(&loop), 0, "handles left open");
}

TestSuite(oauth_loopback, .init = setup, .fini = teardown);

static void
on_code(void *ctx, int result, const char *code, size_t n, const struct oauth_err *e)
{
	struct got *g = ctx;

	g->calls++;
	g->result = result;
	if (result == 0) {
		cr_assert_lt(n, sizeof(g->code));
		memcpy(g->code, code, n);
		g->code[n] = '\0';
	} else {
		g->e = *e;
	}
	if (g->free_inside)
		oauth_loopback_free(&lb);
}

static void
on_resp(void *ctx, int err, const struct http_response *r, const char *why)
{
	struct resp *x = ctx;

	(void)why;
	x->done = 1;
	x->err = err;
	if (r != NULL) {
		x->status = r->status;
		snprintf(x->body, sizeof(x->body), "%.*s", (int)r->body_len, r->body);
	}
	uv_stop(&loop);
}

static void
fetch(const char *path, struct resp *x)
{
	char url[1024];

	memset(x, 0, sizeof(*x));
	snprintf(url, sizeof(url), "%s%s", oauth_loopback_redirect_uri(lb), path[0] == '/' ? path + 1 : path);
	cr_assert_eq(http_get(hc, url, NULL, on_resp, x, NULL), 0, "%s", url);
	cr_assert_eq(run_until(&loop, &x->done, 10000), 0);
}

Test(oauth_loopback, ignores_strangers_then_takes_the_right_one)
{
	struct got g = { 0 };
	struct resp x;

	cr_assert_eq(oauth_loopback_start(&loop, "ST4TE", on_code, &g, &lb), 0);
	cr_expect_eq(strncmp(oauth_loopback_redirect_uri(lb), "http://127.0.0.1:", 17), 0);
	fetch("/favicon.ico", &x);
	cr_expect_eq(x.status, 404);
	fetch("/?code=stolen&state=WRONG", &x);
	cr_expect_eq(x.status, 400);
	fetch("/?code=stolen", &x);
	cr_expect_eq(x.status, 400);
	fetch("/callback?code=abc&state=ST4TE", &x);
	cr_expect_eq(x.status, 404, "another path");
	cr_expect_eq(g.calls, 0);
	cr_expect_eq(oauth_loopback_ignored(lb), 4);
	fetch("/?code=c0de%2Fx&state=ST4TE&scope=imap", &x);
	cr_expect_eq(x.err, 0);
	cr_expect_eq(x.status, 200);
	cr_expect(strstr(x.body, "You may close this window") != NULL, "%s", x.body);
	cr_expect(strstr(x.body, "c0de") == NULL, "the page never shows the code");
	cr_expect_eq(g.calls, 1);
	cr_expect_eq(g.result, 0);
	cr_expect_str_eq(g.code, "c0de/x");
	/* One right request, then the listener is gone. */
	fetch("/?code=again&state=ST4TE", &x);
	cr_expect_eq(x.err, -ECONNREFUSED, "%d", x.err);
	cr_expect_eq(g.calls, 1);
}

Test(oauth_loopback, the_servers_error)
{
	struct got g = { 0 };
	struct resp x;

	cr_assert_eq(oauth_loopback_start(&loop, "S", on_code, &g, &lb), 0);
	fetch("/?error=access_denied&error_description=no%3Cscript%3E&state=S", &x);
	cr_expect_eq(x.status, 200);
	cr_expect(strstr(x.body, "access_denied") != NULL, "%s", x.body);
	cr_expect_eq(g.calls, 1);
	cr_expect_eq(g.result, 1);
	cr_expect_eq(g.e.code, OAUTH_E_DENIED);
	cr_expect_str_eq(g.e.text, "no<script>");
}

Test(oauth_loopback, free_inside_the_callback_still_answers)
{
	struct got g = { .free_inside = 1 };
	struct resp x;

	cr_assert_eq(oauth_loopback_start(&loop, "S", on_code, &g, &lb), 0);
	fetch("/?code=a&state=S", &x);
	cr_expect_null(lb);
	cr_expect_eq(g.calls, 1);
	cr_expect_eq(x.status, 200, "the browser still gets its page");
}

Test(oauth_loopback, free_without_a_request)
{
	struct got g = { 0 };

	cr_assert_eq(oauth_loopback_start(&loop, "S", on_code, &g, &lb), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	oauth_loopback_free(&lb);
	cr_expect_null(lb);
	cr_expect_eq(g.calls, 0);
	cr_expect_eq(oauth_loopback_start(&loop, "", on_code, &g, &lb), -EINVAL);
	cr_expect_null(lb);
}

/* A raw client: connects, writes data, reads to the end. */
struct raw {
	uv_tcp_t tcp;
	uv_connect_t conn;
	uv_write_t wr;
	uv_buf_t out;
	char in[8192];
	size_t len;
	int closed;
	int connected;
};

static void
raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
	struct raw *r = h->data;

	(void)s;
	*b = uv_buf_init(r->in + r->len, (unsigned)(sizeof(r->in) - 1 - r->len));
}

static void
raw_closed(uv_handle_t *h)
{
	struct raw *r = h->data;

	r->closed = 1;
	uv_stop(&loop);
}

static void
raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct raw *r = s->data;

	(void)b;
	if (n < 0) {
		uv_close((uv_handle_t *)s, raw_closed);
		return;
	}
	r->len += (size_t)n;
	r->in[r->len] = '\0';
}

static void
raw_written(uv_write_t *w, int status)
{
	(void)w;
	(void)status;
}

static void
raw_connected(uv_connect_t *c, int status)
{
	struct raw *r = c->data;

	r->connected = 1;
	uv_stop(&loop);
	if (status < 0) {
		uv_close((uv_handle_t *)&r->tcp, raw_closed);
		return;
	}
	uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
	if (r->out.len > 0)
		uv_write(&r->wr, (uv_stream_t *)&r->tcp, &r->out, 1, raw_written);
}

static void
raw_open(struct raw *r, const char *data, size_t n)
{
	struct sockaddr_in a;
	int port;

	memset(r, 0, sizeof(*r));
	cr_assert_eq(sscanf(oauth_loopback_redirect_uri(lb), "http://127.0.0.1:%d/", &port), 1);
	uv_ip4_addr("127.0.0.1", port, &a);
	uv_tcp_init(&loop, &r->tcp);
	r->tcp.data = r;
	r->conn.data = r;
	r->out = uv_buf_init((char *)data, (unsigned)n);
	cr_assert_eq(uv_tcp_connect(&r->conn, &r->tcp, (struct sockaddr *)&a, raw_connected), 0);
	cr_assert_eq(run_until(&loop, &r->connected, 5000), 0);
}

Test(oauth_loopback, raw_requests)
{
	static char big[OAUTH_REDIRECT_MAX + 2048];
	struct got g = { 0 };
	struct raw r;

	cr_assert_eq(oauth_loopback_start(&loop, "S", on_code, &g, &lb), 0);
	raw_open(&r, "POST /?code=a&state=S HTTP/1.1\r\nHost: x\r\n\r\n", 44);
	cr_assert_eq(run_until(&loop, &r.closed, 5000), 0);
	cr_expect(strncmp(r.in, "HTTP/1.1 405", 12) == 0, "%s", r.in);
	raw_open(&r, "hello\n\n", 7);
	cr_assert_eq(run_until(&loop, &r.closed, 5000), 0);
	cr_expect(strncmp(r.in, "HTTP/1.1 400", 12) == 0, "%s", r.in);
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET /?state=S&code=", 19);
	raw_open(&r, big, sizeof(big));
	cr_assert_eq(run_until(&loop, &r.closed, 5000), 0);
	cr_expect(strncmp(r.in, "HTTP/1.1 431", 12) == 0, "%.40s", r.in);
	cr_expect_eq(g.calls, 0);
	/* A bare-LF request is read too. */
	raw_open(&r, "GET /?state=S&code=ok HTTP/1.0\n\n", 32);
	cr_assert_eq(run_until(&loop, &r.closed, 5000), 0);
	cr_expect(strncmp(r.in, "HTTP/1.1 200", 12) == 0, "%s", r.in);
	cr_expect_eq(g.calls, 1);
	cr_expect_str_eq(g.code, "ok");
}

Test(oauth_loopback, connections_bounded)
{
	struct raw idle[OAUTH_LOOPBACK_CONNS], extra;
	struct got g = { 0 };
	int i;

	cr_assert_eq(oauth_loopback_start(&loop, "S", on_code, &g, &lb), 0);
	for (i = 0; i < OAUTH_LOOPBACK_CONNS; i++)
		raw_open(&idle[i], "", 0);
	for (i = 0; i < 20; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	raw_open(&extra, "", 0);
	cr_assert_eq(run_until(&loop, &extra.closed, 5000), 0, "one over the bound is closed");
	cr_expect_eq(extra.len, 0);
	for (i = 0; i < OAUTH_LOOPBACK_CONNS; i++)
		cr_expect_eq(idle[i].closed, 0);
	/* The right request on one of them ends the others. */
	uv_write(&idle[0].wr, (uv_stream_t *)&idle[0].tcp,
		 &(uv_buf_t){ .base = "GET /?state=S&code=z HTTP/1.1\r\n\r\n", .len = 33 }, 1, raw_written);
	for (i = 0; i < OAUTH_LOOPBACK_CONNS; i++)
		cr_assert_eq(run_until(&loop, &idle[i].closed, 5000), 0, "connection %d", i);
	cr_expect_eq(g.calls, 1);
	cr_expect(strncmp(idle[0].in, "HTTP/1.1 200", 12) == 0, "%s", idle[0].in);
}
