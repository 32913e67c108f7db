/* oauth/flows: device polling (RFC 8628 §3.4-3.5) on a fake clock, the
 * authorization URL, the redirect's code and state. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "oauth/flows.h"

static struct oauth_device_flow f;
static struct oauth_token_resp r;
static uint64_t now_ms;

static void
start(uint32_t expires, uint32_t interval)
{
	struct oauth_device_auth d;

	oauth_device_auth_init(&d);
	d.expires_in = expires;
	d.interval = interval;
	now_ms = 5000000;
	oauth_device_flow_start(&f, &d, now_ms);
	oauth_device_auth_free(&d);
	oauth_token_resp_init(&r);
}

/* One poll answered with status and body (err 0) or a transport error;
 * the clock moves on by the delay asked for. */
static enum oauth_step
poll_once(int err, long status, const char *body, int *err_r, uint64_t *delay_r)
{
	enum oauth_step s;

	s = oauth_device_flow_answer(&f, now_ms, err, status, body,
				     body ? strlen(body) : 0, &r, err_r, delay_r);
	if (s == OAUTH_STEP_POLL)
		now_ms += *delay_r;
	return s;
}

#define PENDING "{\"error\":\"authorization_pending\"}"
#define SLOW "{\"error\":\"slow_down\"}"

Test(oauth_device_flow, pending_and_slow_down)
{
	uint64_t d;
	int e;

	start(1800, 5);
	cr_expect_eq(oauth_device_flow_first_delay(&f), 5000);
	cr_assert_eq(poll_once(0, 400, PENDING, &e, &d), OAUTH_STEP_POLL);
	cr_expect_eq(d, 5000);
	cr_assert_eq(poll_once(0, 400, SLOW, &e, &d), OAUTH_STEP_POLL);
	cr_expect_eq(d, 10000, "slow_down adds 5 s");
	cr_assert_eq(poll_once(0, 400, PENDING, &e, &d), OAUTH_STEP_POLL);
	cr_expect_eq(d, 10000, "and it stays");
	cr_assert_eq(poll_once(0, 400, SLOW, &e, &d), OAUTH_STEP_POLL);
	cr_expect_eq(d, 15000);
	cr_expect_eq(f.slow_downs, 2);
	cr_expect_eq(f.polls, 4);
	oauth_token_resp_free(&r);
}

Test(oauth_device_flow, failed_requests_back_off)
{
	uint64_t d;
	int e;

	start(3600, 5);
	cr_assert_eq(poll_once(-ETIMEDOUT, 0, NULL, &e, &d), OAUTH_STEP_POLL);
	cr_expect_eq(d, 10000);
	cr_assert_eq(poll_once(0, 503, "<html>", &e, &d), OAUTH_STEP_POLL);
	cr_expect_eq(d, 20000);
	cr_assert_eq(poll_once(0, 200, "garbage", &e, &d), OAUTH_STEP_POLL);
	cr_expect_eq(d, 40000);
	cr_assert_eq(poll_once(-ECONNREFUSED, 0, NULL, &e, &d), OAUTH_STEP_POLL);
	cr_assert_eq(poll_once(-ECONNREFUSED, 0, NULL, &e, &d), OAUTH_STEP_POLL);
	cr_assert_eq(poll_once(-ECONNREFUSED, 0, NULL, &e, &d), OAUTH_STEP_POLL);
	cr_expect_eq(d, OAUTH_DEVICE_BACKOFF_MAX_S * 1000, "capped: %llu", (unsigned long long)d);
	cr_assert_eq(poll_once(0, 400, PENDING, &e, &d), OAUTH_STEP_POLL);
	cr_expect_eq(d, 5000, "an answer ends the backoff");
	oauth_token_resp_free(&r);
}

Test(oauth_device_flow, endings)
{
	static const struct {
		long status;
		const char *body;
		int want;
	} v[] = {
		{ 400, "{\"error\":\"access_denied\"}", -EACCES },
		{ 400, "{\"error\":\"invalid_grant\"}", -EACCES },
		{ 400, "{\"error\":\"expired_token\"}", -ETIMEDOUT },
		{ 401, "{\"error\":\"invalid_client\"}", -EPERM },
		{ 400, "{\"error\":\"unsupported_grant_type\"}", -EPERM },
		{ 400, "{\"error\":\"something_else\"}", -EREMOTEIO },
	};
	size_t i;
	uint64_t d;
	int e;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		start(600, 5);
		cr_assert_eq(poll_once(0, v[i].status, v[i].body, &e, &d), OAUTH_STEP_FAIL, "%s", v[i].body);
		cr_expect_eq(e, v[i].want, "%s: %d", v[i].body, e);
		oauth_token_resp_free(&r);
	}
	start(600, 5);
	cr_assert_eq(poll_once(0, 200, "{\"access_token\":\"at\",\"refresh_token\":\"rt\","
			       "\"token_type\":\"Bearer\",\"expires_in\":60}", &e, &d), OAUTH_STEP_DONE);
	cr_expect_eq(r.access.len, 2);
	cr_expect_eq(r.refresh.len, 2);
	oauth_token_resp_free(&r);
}

Test(oauth_device_flow, the_code_expires)
{
	uint64_t d;
	int e;

	start(12, 5);
	now_ms += oauth_device_flow_first_delay(&f);
	/* The first answer at 5 s: the next poll at 10 s. */
	cr_assert_eq(poll_once(0, 400, PENDING, &e, &d), OAUTH_STEP_POLL);
	cr_assert_eq(poll_once(0, 400, PENDING, &e, &d), OAUTH_STEP_FAIL,
		     "the next poll (15 s) would come after the code expired (12 s)");
	cr_expect_eq(e, -ETIMEDOUT);
	oauth_token_resp_free(&r);
}

Test(oauth_device_flow, a_whole_run)
{
	/* pending, slow_down, pending, a drop, then tokens */
	static const struct {
		int err;
		long status;
		const char *body;
		uint64_t delay;
	} script[] = {
		{ 0, 400, PENDING, 5000 },
		{ 0, 400, SLOW, 10000 },
		{ 0, 400, PENDING, 10000 },
		{ -ECONNRESET, 0, NULL, 20000 },
	};
	uint64_t d, t0;
	size_t i;
	int e;

	start(900, 5);
	t0 = now_ms;
	now_ms += oauth_device_flow_first_delay(&f);
	for (i = 0; i < sizeof(script) / sizeof(script[0]); i++) {
		cr_assert_eq(poll_once(script[i].err, script[i].status, script[i].body, &e, &d),
			     OAUTH_STEP_POLL, "step %zu", i);
		cr_expect_eq(d, script[i].delay, "step %zu: %llu", i, (unsigned long long)d);
	}
	cr_assert_eq(poll_once(0, 200, "{\"access_token\":\"at\",\"refresh_token\":\"rt\"}", &e, &d),
		     OAUTH_STEP_DONE);
	cr_expect_eq(now_ms - t0, 50000);
	oauth_token_resp_free(&r);
}

static const struct oauth_client google_like = {
	.auth_url = "https://accounts.example.com/o/oauth2/v2/auth",
	.token_url = "https://oauth2.example.com/token",
	.client_id = "123.apps.example",
	.scope = "https://mail.example.com/",
	.auth_extra = "access_type=offline&prompt=select_account%20consent",
};

Test(oauth_auth_url, google_like)
{
	struct buf b;

	buf_init(&b, 8192);
	cr_assert_eq(oauth_auth_url(&b, &google_like, "http://127.0.0.1:40123/", "st4te",
				    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"), 0);
	cr_assert_eq(buf_append(&b, "", 1), 0);
	cr_expect_str_eq(b.data, "https://accounts.example.com/o/oauth2/v2/auth?response_type=code"
			 "&client_id=123.apps.example&redirect_uri=http%3A%2F%2F127.0.0.1%3A40123%2F"
			 "&scope=https%3A%2F%2Fmail.example.com%2F&state=st4te"
			 "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
			 "&code_challenge_method=S256&access_type=offline&prompt=select_account%20consent");
	buf_free(&b);
}

Test(oauth_auth_url, query_already_there_and_missing_parts)
{
	const char *tail = "code_challenge_method=S256&prompt=consent";
	struct oauth_client c = google_like;
	struct buf b;

	c.auth_url = "https://idp.example/auth?tenant=x";
	c.auth_extra = NULL;
	buf_init(&b, 8192);
	cr_assert_eq(oauth_auth_url(&b, &c, "http://127.0.0.1:1/", "s", "ch"), 0);
	cr_expect(strncmp(b.data, "https://idp.example/auth?tenant=x&response_type=code&", 52) == 0,
		  "%.*s", (int)b.len, b.data);
	cr_assert_gt(b.len, strlen(tail));
	cr_expect_eq(memcmp(b.data + b.len - strlen(tail), tail, strlen(tail)), 0,
		     "consent asked for by default: %.*s", (int)b.len, b.data);
	buf_reset(&b);
	c.auth_url = NULL;
	cr_expect_eq(oauth_auth_url(&b, &c, "http://127.0.0.1:1/", "s", "ch"), -EINVAL);
	c = google_like;
	cr_expect_eq(oauth_auth_url(&b, &c, "http://127.0.0.1:1/", "", "ch"), -EINVAL);
	cr_expect_eq(oauth_auth_url(&b, &c, "http://127.0.0.1:1/", "s", NULL), -EINVAL);
	c.scope = "";
	cr_expect_eq(oauth_auth_url(&b, &c, "http://127.0.0.1:1/", "s", "ch"), -EINVAL);
	cr_expect_eq(b.len, 0);
	buf_free(&b);
}

static int
redirect(const char *s, struct buf *code, struct oauth_err *e)
{
	buf_wipe(code);
	return oauth_redirect_parse(s, strlen(s), "S1-state_x", code, e);
}

static void
want_code(const char *s, const char *code)
{
	struct oauth_err e;
	struct buf b;

	buf_init_secret(&b, OAUTH_TOKEN_MAX);
	cr_assert_eq(redirect(s, &b, &e), 0, "%s", s);
	cr_expect_eq(b.len, strlen(code), "%s", s);
	cr_expect_eq(memcmp(b.data, code, b.len), 0, "%s: %.*s", s, (int)b.len, b.data);
	buf_free(&b);
}

Test(oauth_redirect, codes_found)
{
	want_code("http://127.0.0.1:5555/?code=abc%2Fdef&state=S1-state_x&scope=x+y", "abc/def");
	want_code("/?state=S1-state_x&code=xyz", "xyz");
	want_code("  http://127.0.0.1:5555/?code=a&state=S1-state_x#frag \r\n", "a");
	want_code("code=M.R3_BAY.c0&state=S1-state_x", "M.R3_BAY.c0");
	want_code("/?code=4%2F0Adeu5B&scope=https%3A%2F%2Fmail.google.com%2F&authuser=0"
		  "&prompt=consent&state=S1-state_x&iss=https%3A%2F%2Faccounts.google.com", "4/0Adeu5B");
	want_code("/?code=a&state=S1-state_x&&x&=y&state2=z", "a");
}

Test(oauth_redirect, state_checked)
{
	static const char *const v[] = {
		"/?code=a&state=S1-state_y",
		"/?code=a",
		"/?code=a&state=S1-state_",
		"/?code=a&state=S1-state_xx",
		"/?code=a&state=",
		"/?code=a&STATE=S1-state_x",
		"/?error=access_denied&state=evil",
		"/?error=access_denied",
	};
	struct oauth_err e;
	struct buf b;
	size_t i;

	buf_init_secret(&b, OAUTH_TOKEN_MAX);
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		cr_expect_eq(redirect(v[i], &b, &e), -ESRCH, "%s", v[i]);
		cr_expect_eq(b.len, 0);
	}
	cr_expect_eq(oauth_redirect_parse("/?code=a&state=", 15, "", &b, &e), -ESRCH,
		     "an empty expected state matches nothing");
	buf_free(&b);
}

Test(oauth_redirect, errors_reported)
{
	struct oauth_err e;
	struct buf b;

	buf_init_secret(&b, OAUTH_TOKEN_MAX);
	cr_assert_eq(redirect("/?error=access_denied&error_description=The+user+said+no%0A"
			      "&state=S1-state_x", &b, &e), 1);
	cr_expect_eq(e.code, OAUTH_E_DENIED);
	cr_expect_str_eq(e.name, "access_denied");
	cr_expect_str_eq(e.text, "The user said no?");
	cr_assert_eq(redirect("/?error=server_error&state=S1-state_x&code=ignored", &b, &e), 1);
	cr_expect_eq(e.code, OAUTH_E_OTHER);
	cr_expect_eq(b.len, 0);
	buf_free(&b);
}

Test(oauth_redirect, malformed)
{
	static const char *const v[] = {
		"http://127.0.0.1:5555/",
		"just words",
		"/?state=S1-state_x",
		"/?state=S1-state_x&code=",
		"/?code=a&code=b&state=S1-state_x",
		"/?code=a&state=S1-state_x&state=S1-state_x",
		"/?code=a%zz&state=S1-state_x",
		"/?code=a%4&state=S1-state_x",
		"/?code=a%&state=S1-state_x",
		"/?code=a%01b&state=S1-state_x",
		"/?code=a+b&state=S1-state_x",
		"/?code=%C3%A9&state=S1-state_x",
	};
	struct oauth_err e;
	struct buf b;
	size_t i;

	buf_init_secret(&b, OAUTH_TOKEN_MAX);
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		cr_expect_eq(redirect(v[i], &b, &e), -EBADMSG, "%s: %d", v[i], redirect(v[i], &b, &e));
	buf_free(&b);
}

Test(oauth_redirect, bounded)
{
	static char big[OAUTH_REDIRECT_MAX + 100];
	struct oauth_err e;
	struct buf b;
	int n;

	buf_init_secret(&b, OAUTH_TOKEN_MAX);
	n = snprintf(big, sizeof(big), "/?state=S1-state_x&code=");
	memset(big + n, 'c', sizeof(big) - 1 - (size_t)n);
	big[sizeof(big) - 1] = '\0';
	cr_expect_eq(oauth_redirect_parse(big, strlen(big), "S1-state_x", &b, &e), -ENOBUFS);
	big[OAUTH_REDIRECT_MAX] = '\0';
	cr_expect_eq(oauth_redirect_parse(big, strlen(big), "S1-state_x", &b, &e), 0);
	buf_free(&b);
}
