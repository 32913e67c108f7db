/* oauth/http: the libcurl-multi client on libuv against tests/lib/httpfixture.py. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "oauth/http.h"
#include "oauth_fixture.h"

struct result {
	int done;
	int calls;
	int err;
	long status;
	char body[256 * 1024];
	size_t len;
	char ct[128];
	char why[512];
	/* What the callback does besides recording. */
	struct http_req **cancel;
	struct http_client **free_client;
	struct http_req **self;
};

static struct fixture fx;
static uv_loop_t loop;
static struct http_client *hc;

static void
setup(void)
{
	cr_assert_eq(fixture_start(&fx, 0), 0, "httpfixture.py did not start");
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(http_client_new(&loop, &hc), 0);
}

static void
setup_tls(void)
{
	cr_assert_eq(fixture_start(&fx, 1), 0, "httpfixture.py --tls did not start");
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(http_client_new(&loop, &hc), 0);
}

static void
teardown(void)
{
	http_client_free(&hc);
	cr_expect_eq(drain_loop(&loop), 0, "the loop still had handles");
	fixture_stop(&fx);
}

static void
on_done(void *ctx, int err, const struct http_response *resp, const char *why)
{
	struct result *r = ctx;

	r->calls++;
	r->done = 1;
	uv_stop(&loop);
	r->err = err;
	snprintf(r->why, sizeof(r->why), "%s", why);
	if (resp != NULL) {
		cr_assert_eq(resp->body[resp->body_len], '\0');
		r->status = resp->status;
		r->len = resp->body_len;
		cr_assert_leq(r->len, sizeof(r->body));
		memcpy(r->body, resp->body, r->len);
		snprintf(r->ct, sizeof(r->ct), "%s", resp->content_type);
	}
	if (r->self != NULL)
		http_cancel(r->self);	/* a no-op inside its own callback */
	if (r->cancel != NULL)
		http_cancel(r->cancel);
	if (r->free_client != NULL)
		http_client_free(r->free_client);
}

static char url[512];

static const char *
at(const char *path)
{
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", fx.port, path);
	return url;
}

static void
get(const char *path, const struct http_opts *o, struct result *r)
{
	memset(r, 0, sizeof(*r));
	cr_assert_eq(http_get(hc, at(path), o, on_done, r, NULL), 0);
	cr_assert_eq(run_until(&loop, &r->done, 20000), 0, "no answer for %s", path);
	cr_assert_eq(r->calls, 1);
}

Test(oauth_http_url, loopback_rule)
{
	static const struct {
		const char *url;
		int want;
	} v[] = {
		{ "https://login.example.com/oauth2/token", 0 },
		{ "HTTPS://login.example.com:8443/t?x=1", 0 },
		{ "http://127.0.0.1:8080/token", 0 },
		{ "http://127.9.8.7/token", 0 },
		{ "http://localhost:1234/", 0 },
		{ "http://LOCALHOST/", 0 },
		{ "http://[::1]:8080/token", 0 },
		{ "http://example.com/token", -EPERM },
		{ "http://10.0.0.1/token", -EPERM },
		{ "http://128.0.0.1/token", -EPERM },
		{ "http://127.0.0.1.evil.example/token", -EPERM },
		{ "http://localhost.evil.example/", -EPERM },
		{ "http://[::2]/", -EPERM },
		{ "ftp://127.0.0.1/x", -EPROTONOSUPPORT },
		{ "file:///etc/passwd", -EPROTONOSUPPORT },
		{ "gopher://127.0.0.1/", -EPROTONOSUPPORT },
		{ "https://client:secret@login.example.com/token", -EINVAL },
		{ "https://client@login.example.com/token", -EINVAL },
		{ "not a url", -EINVAL },
		{ "", -EINVAL },
	};
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		cr_expect_eq(http_url_check(v[i].url), v[i].want, "%s: %d",
			     v[i].url, http_url_check(v[i].url));
	cr_expect_eq(http_url_check(NULL), -EINVAL);
}

Test(oauth_http_url, too_long)
{
	static char big[HTTP_URL_MAX + 64];

	memset(big, 'a', sizeof(big) - 1);
	memcpy(big, "https://x.example/", 18);
	cr_expect_eq(http_url_check(big), -EINVAL);
	big[HTTP_URL_MAX] = '\0';
	cr_expect_eq(http_url_check(big), 0);
}

Test(oauth_http_url, origin_for_logs)
{
	char o[128];

	cr_assert_eq(http_url_origin("https://login.example.com/common/oauth2/v2.0/token?secret=1",
				     o, sizeof(o)), 0);
	cr_expect_str_eq(o, "https://login.example.com");
	cr_assert_eq(http_url_origin("http://127.0.0.1:8080/token", o, sizeof(o)), 0);
	cr_expect_str_eq(o, "http://127.0.0.1:8080");
	cr_expect_eq(http_url_origin("https://u:p@x.example/", o, sizeof(o)), 0);
	cr_expect_str_eq(o, "https://x.example", "no user or password in logs");
	cr_expect_lt(http_url_origin("%%%", o, sizeof(o)), 0);
	cr_expect_str_eq(o, "?");
	cr_expect_eq(http_url_origin("https://login.example.com/", o, 8), -ENOBUFS);
}

Test(oauth_http, post_form_round_trip, .init = setup, .fini = teardown)
{
	const char form[] = "grant_type=refresh_token&refresh_token=a%2Bb&x=\xc3\xa9";
	struct result r;

	memset(&r, 0, sizeof(r));
	cr_assert_eq(http_post_form(hc, at("/echo?q=1"), form, sizeof(form) - 1,
				    NULL, on_done, &r, NULL), 0);
	cr_assert_eq(http_client_active(hc), 1);
	cr_assert_eq(r.done, 0, "never from the call that started it");
	cr_assert_eq(run_until(&loop, &r.done, 20000), 0);
	cr_assert_eq(r.err, 0, "%s", r.why);
	cr_expect_eq(r.status, 200);
	cr_expect_str_eq(r.ct, "application/json");
	cr_expect_str_eq(r.why, "");
	r.body[r.len] = '\0';
	cr_expect(strstr(r.body, "\"method\": \"POST\"") != NULL, "%s", r.body);
	cr_expect(strstr(r.body, "\"query\": \"q=1\"") != NULL, "%s", r.body);
	cr_expect(strstr(r.body, "\"body\": \"grant_type=refresh_token&refresh_token=a%2Bb&x=\\u00c3\\u00a9\"") != NULL,
		  "%s", r.body);
	cr_expect(strstr(r.body, "\"content_type\": \"application/x-www-form-urlencoded\"") != NULL,
		  "%s", r.body);
	cr_expect(strstr(r.body, "\"accept\": \"application/json\"") != NULL, "%s", r.body);
	cr_expect(strstr(r.body, "\"user_agent\": \"popbridge/") != NULL, "%s", r.body);
	cr_expect(strstr(r.body, "\"expect\": \"\"") != NULL, "%s", r.body);
	cr_expect_eq(http_client_active(hc), 0);
}

Test(oauth_http, large_form_without_expect, .init = setup, .fini = teardown)
{
	static char form[200 * 1024];
	struct result *r = calloc(1, sizeof(*r));

	memset(form, 'a', sizeof(form));
	cr_assert_eq(http_post_form(hc, at("/echo"), form, sizeof(form),
				    &(struct http_opts){ .body_max = 256 * 1024 - 1 },
				    on_done, r, NULL), 0);
	cr_assert_eq(run_until(&loop, &r->done, 20000), 0);
	cr_assert_eq(r->err, 0, "%s", r->why);
	cr_expect_gt(r->len, sizeof(form));
	free(r);
}

Test(oauth_http, get_and_status_codes, .init = setup, .fini = teardown)
{
	struct result r;

	get("/status/404", NULL, &r);
	cr_expect_eq(r.err, 0);
	cr_expect_eq(r.status, 404);
	cr_expect_eq(r.len, 10);
	cr_expect_eq(memcmp(r.body, "status 404", 10), 0);
	get("/status/503", NULL, &r);
	cr_expect_eq(r.err, 0);
	cr_expect_eq(r.status, 503);
	get("/echo", NULL, &r);
	cr_expect_eq(r.status, 200);
	r.body[r.len] = '\0';
	cr_expect(strstr(r.body, "\"method\": \"GET\"") != NULL);
}

Test(oauth_http, redirect_not_followed, .init = setup, .fini = teardown)
{
	struct result r;

	get("/redirect", NULL, &r);
	cr_expect_eq(r.err, 0);
	cr_expect_eq(r.status, 302);
}

Test(oauth_http, timeout_bounds_a_silent_server, .init = setup, .fini = teardown)
{
	struct result r;
	uint64_t t0;

	uv_update_time(&loop);
	t0 = uv_now(&loop);
	get("/hang", &(struct http_opts){ .timeout_ms = 300 }, &r);
	cr_expect_eq(r.err, -ETIMEDOUT, "%d %s", r.err, r.why);
	cr_expect_geq(uv_now(&loop) - t0, 250);
	cr_expect_lt(uv_now(&loop) - t0, 3000);
	cr_expect_neq(r.why[0], '\0');
}

Test(oauth_http, refused, .init = setup, .fini = teardown)
{
	struct result r;
	uv_tcp_t t;
	struct sockaddr_in a;
	int len = sizeof(a), port;

	/* A port bound but not listening refuses. */
	uv_tcp_init(&loop, &t);
	uv_ip4_addr("127.0.0.1", 0, &a);
	cr_assert_eq(uv_tcp_bind(&t, (struct sockaddr *)&a, 0), 0);
	uv_tcp_getsockname(&t, (struct sockaddr *)&a, &len);
	port = ntohs(a.sin_port);
	memset(&r, 0, sizeof(r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/token", port);
	cr_assert_eq(http_post_form(hc, url, "a=b", 3, NULL, on_done, &r, NULL), 0);
	cr_assert_eq(run_until(&loop, &r.done, 20000), 0);
	cr_expect_eq(r.err, -ECONNREFUSED, "%d %s", r.err, r.why);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
}

Test(oauth_http, body_bounds, .init = setup, .fini = teardown)
{
	struct http_opts o = { .body_max = 1000 };
	struct result r;

	get("/big/1000", &o, &r);
	cr_expect_eq(r.err, 0, "exactly the bound is fine: %s", r.why);
	cr_expect_eq(r.len, 1000);
	get("/big/1001", &o, &r);
	cr_expect_eq(r.err, -ENOBUFS, "Content-Length over the bound: %d %s", r.err, r.why);
	get("/chunked/1000", &o, &r);
	cr_expect_eq(r.err, 0, "%s", r.why);
	cr_expect_eq(r.len, 1000);
	get("/chunked/50000", &o, &r);
	cr_expect_eq(r.err, -ENOBUFS, "chunked over the bound: %d %s", r.err, r.why);
	get("/chunked/200000", NULL, &r);
	cr_expect_eq(r.err, -ENOBUFS, "the default bound: %d", r.err);
	get("/big/65536", NULL, &r);
	cr_expect_eq(r.err, 0, "%s", r.why);
	cr_expect_eq(r.len, HTTP_BODY_MAX);
}

Test(oauth_http, drop_and_garbage, .init = setup, .fini = teardown)
{
	struct result r;

	get("/drop", NULL, &r);
	cr_expect_eq(r.err, -ECONNRESET, "drop: %d %s", r.err, r.why);
	get("/garbage", NULL, &r);
	cr_expect(r.err == -EPROTO || r.err == -ECONNRESET, "garbage: %d %s", r.err, r.why);
}

Test(oauth_http, plain_http_elsewhere_refused_at_once, .init = setup, .fini = teardown)
{
	struct result r;
	struct http_req *req = (struct http_req *)&r;

	memset(&r, 0, sizeof(r));
	cr_expect_eq(http_post_form(hc, "http://192.0.2.1/token", "a=b", 3, NULL,
				    on_done, &r, &req), -EPERM);
	cr_expect_null(req);
	cr_expect_eq(http_get(hc, "ftp://127.0.0.1/", NULL, on_done, &r, NULL),
		     -EPROTONOSUPPORT);
	uv_run(&loop, UV_RUN_NOWAIT);
	cr_expect_eq(r.calls, 0);
	cr_expect_eq(http_client_active(hc), 0);
}

Test(oauth_http, cancel_before_answer, .init = setup, .fini = teardown)
{
	struct result r, other;
	struct http_req *req;

	memset(&r, 0, sizeof(r));
	memset(&other, 0, sizeof(other));
	cr_assert_eq(http_get(hc, at("/slow/300"), NULL, on_done, &r, &req), 0);
	cr_assert_not_null(req);
	uv_run(&loop, UV_RUN_NOWAIT);
	http_cancel(&req);
	cr_expect_null(req);
	http_cancel(&req);	/* NULL again: nothing */
	http_cancel(NULL);
	cr_expect_eq(http_client_active(hc), 0);
	/* The client goes on working, and the cancelled one never reports. */
	cr_assert_eq(http_get(hc, at("/slow/500"), NULL, on_done, &other, NULL), 0);
	cr_assert_eq(run_until(&loop, &other.done, 20000), 0);
	cr_expect_eq(other.err, 0);
	cr_expect_eq(r.calls, 0);
}

Test(oauth_http, cancel_another_inside_a_callback, .init = setup, .fini = teardown)
{
	struct result fast, slow;
	struct http_req *fast_req, *slow_req;
	int waited = 0;

	memset(&fast, 0, sizeof(fast));
	memset(&slow, 0, sizeof(slow));
	cr_assert_eq(http_get(hc, at("/slow/400"), NULL, on_done, &slow, &slow_req), 0);
	cr_assert_eq(http_get(hc, at("/echo"), NULL, on_done, &fast, &fast_req), 0);
	fast.cancel = &slow_req;
	fast.self = &fast_req;
	cr_assert_eq(run_until(&loop, &fast.done, 20000), 0);
	cr_expect_eq(fast.err, 0);
	cr_expect_null(slow_req);
	cr_expect_null(fast_req, "cancel of itself inside its callback");
	run_until(&loop, &waited, 800);
	cr_expect_eq(slow.calls, 0);
	cr_expect_eq(http_client_active(hc), 0);
}

Test(oauth_http, free_client_inside_a_callback, .init = setup, .fini = teardown)
{
	struct result fast, slow;
	int waited = 0;

	memset(&fast, 0, sizeof(fast));
	memset(&slow, 0, sizeof(slow));
	cr_assert_eq(http_get(hc, at("/slow/300"), NULL, on_done, &slow, NULL), 0);
	cr_assert_eq(http_get(hc, at("/echo"), NULL, on_done, &fast, NULL), 0);
	fast.free_client = &hc;
	cr_assert_eq(run_until(&loop, &fast.done, 20000), 0);
	cr_expect_null(hc);
	run_until(&loop, &waited, 600);
	cr_expect_eq(slow.calls, 0);
}

Test(oauth_http, free_with_requests_running, .init = setup, .fini = teardown)
{
	struct result a, b;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	cr_assert_eq(http_get(hc, at("/hang"), NULL, on_done, &a, NULL), 0);
	cr_assert_eq(http_post_form(hc, at("/slow/200"), "x", 1, NULL, on_done, &b, NULL), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	uv_run(&loop, UV_RUN_NOWAIT);
	http_client_free(&hc);
	cr_expect_eq(drain_loop(&loop), 0);
	cr_expect_eq(a.calls + b.calls, 0);
	cr_assert_eq(uv_loop_init(&loop), 0);	/* for teardown */
}

Test(oauth_http, many_at_once_and_the_loop_stays_free, .init = setup, .fini = teardown)
{
	enum { N = 16 };
	static struct result r[N];
	uv_timer_t tick;
	int ticked = 0, all = 0, i, n;
	uint64_t t0;

	uv_update_time(&loop);
	t0 = uv_now(&loop);
	for (i = 0; i < N; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		cr_assert_eq(http_get(hc, at("/slow/400"), NULL, on_done, &r[i], NULL), 0);
	}
	uv_timer_init(&loop, &tick);
	tick.data = &ticked;
	uv_timer_start(&tick, guard_fired, 50, 0);
	while (!all) {
		cr_assert_lt(uv_now(&loop) - t0, 20000);
		uv_run(&loop, UV_RUN_ONCE);
		if (ticked == 1) {
			/* The timer fired while every request still ran. */
			for (i = 0, n = 0; i < N; i++)
				n += r[i].done;
			cr_expect_eq(n, 0, "the loop was blocked");
			ticked = 2;
		}
		for (i = 0, n = 0; i < N; i++)
			n += r[i].done;
		all = n == N;
	}
	cr_expect_eq(ticked, 2);
	for (i = 0; i < N; i++)
		cr_expect_eq(r[i].err, 0, "%d: %s", i, r[i].why);
	/* Side by side, not one after the other (16 x 0.4 s). */
	cr_expect_lt(uv_now(&loop) - t0, 4000);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
}

static const char *
tls_at(const char *host, const char *path)
{
	snprintf(url, sizeof(url), "https://%s:%d%s", host, fx.port, path);
	return url;
}

Test(oauth_http_tls, verified_against_ca_file, .init = setup_tls, .fini = teardown)
{
	struct result r;

	memset(&r, 0, sizeof(r));
	cr_assert_eq(http_post_form(hc, tls_at("127.0.0.1", "/echo"), "a=1", 3,
				    &(struct http_opts){ .ca_file = fx.ca },
				    on_done, &r, NULL), 0);
	cr_assert_eq(run_until(&loop, &r.done, 20000), 0);
	cr_expect_eq(r.err, 0, "%s", r.why);
	cr_expect_eq(r.status, 200);
}

Test(oauth_http_tls, untrusted_refused, .init = setup_tls, .fini = teardown)
{
	struct result r;

	/* The system store does not know the test CA. */
	memset(&r, 0, sizeof(r));
	cr_assert_eq(http_get(hc, tls_at("127.0.0.1", "/echo"), NULL, on_done, &r, NULL), 0);
	cr_assert_eq(run_until(&loop, &r.done, 20000), 0);
	cr_expect_eq(r.err, -EPROTO, "%d %s", r.err, r.why);
	cr_expect_neq(r.why[0], '\0');
}

Test(oauth_http_tls, host_name_checked, .init = setup_tls, .fini = teardown)
{
	struct result r;

	/* The certificate names IP 127.0.0.1 only, not localhost. */
	memset(&r, 0, sizeof(r));
	cr_assert_eq(http_get(hc, tls_at("localhost", "/echo"),
			      &(struct http_opts){ .ca_file = fx.ca },
			      on_done, &r, NULL), 0);
	cr_assert_eq(run_until(&loop, &r.done, 20000), 0);
	cr_expect_eq(r.err, -EPROTO, "%d %s", r.err, r.why);
}
