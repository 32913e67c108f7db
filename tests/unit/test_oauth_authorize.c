/* oauth/authorize: whole device and code grants on the loop, the token
 * endpoint a fake transport (one second of the flows is 1 ms here). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "oauth/authorize.h"
#include "oauth/http.h"
#include "oauth_fake_transport.h"
#include "oauth_fixture.h"

static uv_loop_t loop;

static uint64_t
loop_now(void)
{
	return uv_now(&loop);
}

/* Each request ends a uv_run(): the test answers it. */
static void
loop_stop(void)
{
	uv_stop(&loop);
}

struct run {
	struct oauth_authorize *a;
	int shown;
	char user_code[64];
	char url[4096];
	char redirect[128];
	int done;
	int err;
	char why[512];
	char access[128];
	char refresh[128];
	int free_in_show;
	int free_in_done;
};

static void
show_device(void *ctx, const struct oauth_device_auth *d)
{
	struct run *r = ctx;

	r->shown++;
	snprintf(r->user_code, sizeof(r->user_code), "%s", d->user_code);
	snprintf(r->url, sizeof(r->url), "%s", d->verification_uri);
	if (r->free_in_show)
		oauth_authorize_free(&r->a);
}

static void
show_url(void *ctx, const char *url, const char *redirect)
{
	struct run *r = ctx;

	r->shown++;
	snprintf(r->url, sizeof(r->url), "%s", url);
	snprintf(r->redirect, sizeof(r->redirect), "%s", redirect);
	if (r->free_in_show)
		oauth_authorize_free(&r->a);
}

static void
done(void *ctx, int err, const struct oauth_token_resp *t, const char *why)
{
	struct run *r = ctx;

	r->done++;
	r->err = err;
	snprintf(r->why, sizeof(r->why), "%s", why);
	if (err == 0) {
		snprintf(r->access, sizeof(r->access), "%.*s", (int)t->access.len, t->access.data);
		snprintf(r->refresh, sizeof(r->refresh), "%.*s", (int)t->refresh.len, t->refresh.data);
	} else {
		cr_assert_null(t);
	}
	uv_stop(&loop);
	if (r->free_in_done)
		oauth_authorize_free(&r->a);
}

static struct run run;

static const struct oauth_authorize_cfg cfg = {
	.client = {
		.token_url = "https://idp.example/token",
		.device_url = "https://idp.example/device/auth",
		.auth_url = "https://idp.example/auth",
		.client_id = "cli",
		.scope = "openid offline_access imap",
	},
	.timeout_ms = 1000,
	.ms_per_s = 1,
};

static const struct oauth_authorize_cb cbs = {
	.show_device = show_device, .show_url = show_url, .done = done, .ctx = &run,
};

static void
setup(void)
{
	memset(reqs, 0, sizeof(reqs));
	nreq = 0;
	memset(&run, 0, sizeof(run));
	fake_clock = loop_now;
	fake_posted = loop_stop;
	cr_assert_eq(uv_loop_init(&loop), 0);
}

static void
teardown(void)
{
	oauth_authorize_free(&run.a);
	cr_expect_eq(drain_loop(&loop), 0, "handles left open");
}

TestSuite(oauth_authorize, .init = setup, .fini = teardown);

/* Runs the loop until request n exists. */
static void
wait_req(int n)
{
	uv_timer_t guard;
	int fired = 0;

	uv_timer_init(&loop, &guard);
	guard.data = &fired;
	uv_timer_start(&guard, guard_fired, 5000, 0);
	while (nreq < n && !fired && !run.done)
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
	cr_assert_geq(nreq, n, "request %d never came", n);
}

#define DEVICE_OK "{\"device_code\":\"DEV-c0de\",\"user_code\":\"WDJB-MJHT\"," \
	"\"verification_uri\":\"https://idp.example/device\",\"expires_in\":600,\"interval\":5}"

Test(oauth_authorize, device_grant_polls_until_approved)
{
	uint64_t t[6];
	int i;

	cr_assert_eq(oauth_authorize_device(&loop, &fake, &cfg, &cbs, &run.a), 0);
	cr_assert_eq(nreq, 1);
	cr_expect_str_eq(reqs[0].url, "https://idp.example/device/auth");
	cr_expect_str_eq(reqs[0].form, "client_id=cli&scope=openid%20offline_access%20imap");
	uv_update_time(&loop);
	t[0] = uv_now(&loop);
	answer(0, 0, 200, DEVICE_OK);
	cr_expect_eq(run.shown, 1);
	cr_expect_str_eq(run.user_code, "WDJB-MJHT");
	cr_expect_str_eq(run.url, "https://idp.example/device");
	wait_req(2);
	t[1] = uv_now(&loop);
	cr_expect_str_eq(reqs[1].url, "https://idp.example/token");
	cr_expect_str_eq(reqs[1].form, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
			 "&device_code=DEV-c0de&client_id=cli");
	answer(1, 0, 400, "{\"error\":\"authorization_pending\"}");
	wait_req(3);
	t[2] = uv_now(&loop);
	answer(2, 0, 400, "{\"error\":\"slow_down\"}");
	wait_req(4);
	t[3] = uv_now(&loop);
	answer(3, -ECONNREFUSED, 0, NULL);
	wait_req(5);
	t[4] = uv_now(&loop);
	answer(4, 0, 400, "{\"error\":\"authorization_pending\"}");
	wait_req(6);
	t[5] = uv_now(&loop);
	cr_expect_eq(run.done, 0);
	answer(5, 0, 200, "{\"access_token\":\"AT-1\",\"refresh_token\":\"RT-1\",\"token_type\":\"Bearer\",\"expires_in\":60}");
	cr_expect_eq(run.done, 1);
	cr_expect_eq(run.err, 0, "%s", run.why);
	cr_expect_str_eq(run.access, "AT-1");
	cr_expect_str_eq(run.refresh, "RT-1");
	/* 5, 5, 10 (slow_down), 20 (backoff), 10: "seconds" of 1 ms. */
	for (i = 1; i < 6; i++)
		cr_log_info("poll %d after %llu ms", i, (unsigned long long)(t[i] - t[i - 1]));
	cr_expect_geq(t[3] - t[2], 10, "slow_down: %llu", (unsigned long long)(t[3] - t[2]));
	cr_expect_geq(t[4] - t[3], 20, "backoff: %llu", (unsigned long long)(t[4] - t[3]));
}

Test(oauth_authorize, device_grant_denied)
{
	cr_assert_eq(oauth_authorize_device(&loop, &fake, &cfg, &cbs, &run.a), 0);
	answer(0, 0, 200, DEVICE_OK);
	wait_req(2);
	answer(1, 0, 400, "{\"error\":\"access_denied\",\"error_description\":\"End-User aborted interaction\"}");
	cr_expect_eq(run.done, 1);
	cr_expect_eq(run.err, -EACCES);
	cr_expect(strstr(run.why, "access_denied: End-User aborted interaction") != NULL, "%s", run.why);
}

Test(oauth_authorize, device_grant_expires)
{
	cr_assert_eq(oauth_authorize_device(&loop, &fake, &cfg, &cbs, &run.a), 0);
	answer(0, 0, 200, DEVICE_OK);
	wait_req(2);
	answer(1, 0, 400, "{\"error\":\"expired_token\"}");
	cr_expect_eq(run.err, -ETIMEDOUT);
}

Test(oauth_authorize, device_grant_without_refresh_token)
{
	cr_assert_eq(oauth_authorize_device(&loop, &fake, &cfg, &cbs, &run.a), 0);
	answer(0, 0, 200, DEVICE_OK);
	wait_req(2);
	answer(1, 0, 200, "{\"access_token\":\"AT\"}");
	cr_expect_eq(run.err, -ENODATA);
	cr_expect(strstr(run.why, "offline") != NULL, "%s", run.why);
}

Test(oauth_authorize, device_endpoint_failures)
{
	cr_assert_eq(oauth_authorize_device(&loop, &fake, &cfg, &cbs, &run.a), 0);
	answer(0, 0, 401, "{\"error\":\"invalid_client\"}");
	cr_expect_eq(run.err, -EPERM);
	cr_expect_eq(run.shown, 0);
	oauth_authorize_free(&run.a);
	memset(&run, 0, sizeof(run));
	cr_assert_eq(oauth_authorize_device(&loop, &fake, &cfg, &cbs, &run.a), 0);
	answer(1, -ETIMEDOUT, 0, NULL);
	cr_expect_eq(run.err, -ETIMEDOUT);
	oauth_authorize_free(&run.a);
	memset(&run, 0, sizeof(run));
	cr_assert_eq(oauth_authorize_device(&loop, &fake, &cfg, &cbs, &run.a), 0);
	answer(2, 0, 502, "<html>");
	cr_expect_eq(run.err, -EREMOTEIO);
}

Test(oauth_authorize, device_free_inside_show)
{
	run.free_in_show = 1;
	cr_assert_eq(oauth_authorize_device(&loop, &fake, &cfg, &cbs, &run.a), 0);
	answer(0, 0, 200, DEVICE_OK);
	cr_expect_null(run.a);
	uv_run(&loop, UV_RUN_NOWAIT);
	cr_expect_eq(nreq, 1, "no poll after the run was freed");
}

Test(oauth_authorize, device_needs_an_endpoint)
{
	struct oauth_authorize_cfg c = cfg;

	c.client.device_url = NULL;
	cr_expect_eq(oauth_authorize_device(&loop, &fake, &c, &cbs, &run.a), -EINVAL);
	cr_expect_null(run.a);
}

/* The value of a query parameter of url. */
static void
param(const char *url, const char *name, char *out, size_t cap)
{
	char key[64];
	const char *p, *e;

	snprintf(key, sizeof(key), "%s=", name);
	p = strstr(url, key);
	cr_assert_not_null(p, "%s has no %s", url, name);
	p += strlen(key);
	e = strchr(p, '&');
	if (e == NULL)
		e = p + strlen(p);
	cr_assert_lt((size_t)(e - p), cap);
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = '\0';
}

Test(oauth_authorize, code_grant_by_pasted_url)
{
	char state[64], challenge[64], verifier[200], ch2[64], paste[512];

	cr_assert_eq(oauth_authorize_code(&loop, &fake, &cfg, &cbs, &run.a), 0);
	cr_assert_eq(run.shown, 1);
	cr_expect_eq(strncmp(run.url, "https://idp.example/auth?response_type=code&client_id=cli&redirect_uri=http%3A%2F%2F127.0.0.1%3A", 94), 0,
		     "%s", run.url);
	cr_expect_eq(strncmp(run.redirect, "http://127.0.0.1:", 17), 0);
	param(run.url, "state", state, sizeof(state));
	param(run.url, "code_challenge", challenge, sizeof(challenge));
	cr_expect(strstr(run.url, "code_challenge_method=S256") != NULL);
	snprintf(paste, sizeof(paste), "%s?code=c0de&state=not-%s", run.redirect, state);
	cr_expect_eq(oauth_authorize_paste(run.a, paste, strlen(paste)), -ESRCH);
	cr_expect_eq(oauth_authorize_paste(run.a, "garbage", 7), -EBADMSG);
	cr_expect_eq(nreq, 0);
	snprintf(paste, sizeof(paste), "  %s?code=c0de%%2F1&state=%s\n", run.redirect, state);
	cr_expect_eq(oauth_authorize_paste(run.a, paste, strlen(paste)), 0);
	cr_expect_eq(oauth_authorize_paste(run.a, paste, strlen(paste)), -EALREADY);
	cr_assert_eq(nreq, 1);
	cr_expect_str_eq(reqs[0].url, "https://idp.example/token");
	cr_expect(strncmp(reqs[0].form, "grant_type=authorization_code&code=c0de%2F1&redirect_uri=http%3A%2F%2F127.0.0.1%3A", 82) == 0,
		  "%s", reqs[0].form);
	param(reqs[0].form, "code_verifier", verifier, sizeof(verifier));
	cr_assert_eq(oauth_pkce_challenge(verifier, strlen(verifier), ch2), 0);
	cr_expect_str_eq(ch2, challenge, "the verifier sent matches the challenge shown");
	answer(0, 0, 200, "{\"access_token\":\"AT-2\",\"refresh_token\":\"RT-2\"}");
	cr_expect_eq(run.done, 1);
	cr_expect_eq(run.err, 0, "%s", run.why);
	cr_expect_str_eq(run.refresh, "RT-2");
}

struct resp {
	int done;
	int err;
	long status;
};

static void
on_resp(void *ctx, int err, const struct http_response *r, const char *why)
{
	struct resp *x = ctx;

	(void)why;
	x->done = 1;
	x->err = err;
	x->status = r != NULL ? r->status : 0;
	uv_stop(&loop);
}

Test(oauth_authorize, code_grant_by_the_listener)
{
	struct http_client *hc;
	struct resp x = { 0 }, y = { 0 };
	char state[64], url[512];

	cr_assert_eq(http_client_new(&loop, &hc), 0);
	cr_assert_eq(oauth_authorize_code(&loop, &fake, &cfg, &cbs, &run.a), 0);
	param(run.url, "state", state, sizeof(state));
	snprintf(url, sizeof(url), "%s?code=evil&state=x%s", run.redirect, state);
	cr_assert_eq(http_get(hc, url, NULL, on_resp, &y, NULL), 0);
	cr_assert_eq(run_until(&loop, &y.done, 5000), 0);
	cr_expect_eq(y.status, 400);
	snprintf(url, sizeof(url), "%s?code=good&state=%s", run.redirect, state);
	cr_assert_eq(http_get(hc, url, NULL, on_resp, &x, NULL), 0);
	wait_req(1);
	cr_assert_eq(run_until(&loop, &x.done, 5000), 0);
	cr_expect_eq(x.status, 200);
	cr_expect(strstr(reqs[0].form, "code=good&") != NULL, "%s", reqs[0].form);
	snprintf(url, sizeof(url), "%s?code=c&state=%s", run.redirect, state);
	cr_expect_eq(oauth_authorize_paste(run.a, url, strlen(url)), -EALREADY);
	answer(0, 0, 400, "{\"error\":\"invalid_grant\",\"error_description\":\"code expired\"}");
	cr_expect_eq(run.err, -EACCES);
	cr_expect(strstr(run.why, "invalid_grant: code expired") != NULL, "%s", run.why);
	http_client_free(&hc);
}

Test(oauth_authorize, code_grant_refused_in_the_browser)
{
	char state[64], paste[512];

	cr_assert_eq(oauth_authorize_code(&loop, &fake, &cfg, &cbs, &run.a), 0);
	param(run.url, "state", state, sizeof(state));
	snprintf(paste, sizeof(paste), "%s?error=access_denied&state=%s", run.redirect, state);
	cr_expect_eq(oauth_authorize_paste(run.a, paste, strlen(paste)), 0);
	cr_expect_eq(run.done, 1);
	cr_expect_eq(run.err, -EACCES);
	cr_expect_eq(nreq, 0);
}

Test(oauth_authorize, code_grant_free_inside_callbacks)
{
	char state[64], paste[512];

	run.free_in_show = 1;
	cr_assert_eq(oauth_authorize_code(&loop, &fake, &cfg, &cbs, &run.a), 0);
	cr_expect_null(run.a);
	memset(&run, 0, sizeof(run));
	run.free_in_done = 1;
	cr_assert_eq(oauth_authorize_code(&loop, &fake, &cfg, &cbs, &run.a), 0);
	param(run.url, "state", state, sizeof(state));
	snprintf(paste, sizeof(paste), "%s?code=c&state=%s", run.redirect, state);
	cr_assert_eq(oauth_authorize_paste(run.a, paste, strlen(paste)), 0);
	answer(0, 0, 200, "{\"access_token\":\"A\",\"refresh_token\":\"R\"}");
	cr_expect_eq(run.done, 1);
	cr_expect_null(run.a);
}
