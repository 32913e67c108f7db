/* oauth/token_cache: single-flight refresh, expiry, rotation, refusal,
 * backoff and cancellation, on a fake transport and clock. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "oauth/token_cache.h"
#include "oauth_fake_transport.h"
#include "util/log.h"

/* -- waiters --------------------------------------------------------------------------- */

struct waiter {
	int calls;
	int err;
	char token[256];
	struct oauth_wait *w;
	/* done from inside the callback */
	struct oauth_wait **cancel;
	struct oauth_tokens **free_tokens;
	int get_again;
};

static uv_loop_t loop;
static struct oauth_tokens *tok;
static char events[2048];	/* the order of saves and answers */
static int saves, releases;
static char saved[256];
static int save_result;

static void
on_token(void *ctx, int err, const char *token, size_t len)
{
	struct waiter *w = ctx;

	w->calls++;
	w->err = err;
	w->token[0] = '\0';
	if (err == 0) {
		cr_assert_not_null(token);
		cr_assert_lt(len, sizeof(w->token));
		memcpy(w->token, token, len);
		w->token[len] = '\0';
	} else {
		cr_assert_null(token);
	}
	strcat(events, "A");
	if (w->cancel != NULL)
		oauth_wait_cancel(w->cancel);
	if (w->free_tokens != NULL)
		oauth_tokens_free(w->free_tokens);
}

static int
save(struct oauth_saver *s, const char *refresh, size_t n)
{
	(void)s;
	saves++;
	cr_assert_lt(n, sizeof(saved));
	memcpy(saved, refresh, n);
	saved[n] = '\0';
	strcat(events, "S");
	return save_result;
}

static void
release(struct oauth_saver *s)
{
	(void)s;
	releases++;
}

static struct oauth_saver saver = { .save = save, .release = release };

static void
spin(void)
{
	int i;

	for (i = 0; i < 4; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
}

static int
get(const char *refresh, struct waiter *w)
{
	memset(w, 0, sizeof(*w));
	return oauth_tokens_get(tok, refresh, strlen(refresh), &saver, on_token,
				w, &w->w);
}

/* -- the log ------------------------------------------------------------------------- */

static char log_path[] = "/tmp/pb-tokcache-log.XXXXXX";
static int saved_stderr = -1;

static void
capture_log(void)
{
	int fd = mkstemp(log_path);

	cr_assert_geq(fd, 0);
	saved_stderr = dup(2);
	dup2(fd, 2);
	close(fd);
	log_set_style(LOG_STYLE_SYSLOG);
	log_set_level(LOG_DEBUG);
}

static char *
log_text(void)
{
	static char text[65536];
	FILE *f = fopen(log_path, "r");
	size_t n;

	cr_assert_not_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

static int
count(const char *hay, const char *needle)
{
	int n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

static const struct oauth_tokens_cfg cfg = {
	.account = "acct",
	.client = {
		.token_url = "https://login.example.com/oauth2/token",
		.client_id = "cid",
		.client_secret = "client-secret-XYZ",
		.scope = "imap offline_access",
	},
	.timeout_ms = 2500,
};

static void
setup(void)
{
	nreq = 0;
	memset(reqs, 0, sizeof(reqs));
	clock_ms = 1000000;
	post_fails = 0;
	saves = releases = 0;
	save_result = 0;
	events[0] = saved[0] = '\0';
	capture_log();
	cr_assert_eq(uv_loop_init(&loop), 0);
	cr_assert_eq(oauth_tokens_new(&loop, &fake, &cfg, &tok), 0);
}

static void
teardown(void)
{
	int i;

	oauth_tokens_free(&tok);
	for (i = 0; i < 100 && uv_loop_alive(&loop); i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	cr_expect_eq(uv_loop_close(&loop), 0);
	if (saved_stderr >= 0) {
		dup2(saved_stderr, 2);
		close(saved_stderr);
	}
	unlink(log_path);
}

#define OK_ANSWER(tok, exp) "{\"access_token\":\"" tok "\",\"token_type\":\"Bearer\",\"expires_in\":" #exp "}"

TestSuite(oauth_tokens, .init = setup, .fini = teardown);

Test(oauth_tokens, concurrent_logins_share_one_refresh)
{
	struct waiter w[5];
	int i;

	for (i = 0; i < 5; i++)
		cr_assert_eq(get("refresh-1", &w[i]), 0);
	cr_expect_eq(nreq, 1, "one request for five logins");
	cr_expect(oauth_tokens_busy(tok));
	cr_expect_str_eq(reqs[0].url, "https://login.example.com/oauth2/token");
	cr_expect_str_eq(reqs[0].form, "grant_type=refresh_token&refresh_token=refresh-1"
			 "&client_id=cid&client_secret=client-secret-XYZ");
	cr_expect_eq(reqs[0].timeout_ms, 2500);
	spin();
	for (i = 0; i < 5; i++)
		cr_expect_eq(w[i].calls, 0);
	answer(0, 0, 200, OK_ANSWER("at-1", 3600));
	cr_expect_not(oauth_tokens_busy(tok), "answered: nobody waits");
	for (i = 0; i < 5; i++) {
		cr_expect_eq(w[i].calls, 1);
		cr_expect_eq(w[i].err, 0);
		cr_expect_str_eq(w[i].token, "at-1");
	}
	cr_expect_not(oauth_tokens_busy(tok));
	cr_expect_eq(oauth_tokens_requests(tok), 1);
	cr_expect_eq(releases, 5, "every saver released");
	cr_expect_eq(saves, 0, "no rotation, nothing saved");
}

Test(oauth_tokens, cached_until_the_margin)
{
	struct waiter a, b;

	cr_assert_eq(get("refresh-1", &a), 0);
	answer(0, 0, 200, OK_ANSWER("at-1", 3600));
	clock_ms += 3600000 - OAUTH_EXPIRY_MARGIN_MS - 1;
	cr_assert_eq(get("refresh-1", &b), 0);
	cr_expect_eq(b.calls, 0, "never from inside get");
	spin();
	cr_expect_eq(b.calls, 1);
	cr_expect_str_eq(b.token, "at-1");
	cr_expect_eq(nreq, 1);
	clock_ms += 1;
	cr_assert_eq(get("refresh-1", &b), 0);
	cr_expect_eq(nreq, 2, "within the margin: refreshed");
	answer(1, 0, 200, OK_ANSWER("at-2", 3600));
	cr_expect_str_eq(b.token, "at-2");
}

Test(oauth_tokens, short_lifetimes_keep_half)
{
	struct waiter a, b;

	cr_assert_eq(get("refresh-1", &a), 0);
	answer(0, 0, 200, OK_ANSWER("at-1", 10));
	clock_ms += 4999;
	cr_assert_eq(get("refresh-1", &b), 0);
	spin();
	cr_expect_str_eq(b.token, "at-1");
	clock_ms += 1;
	cr_assert_eq(get("refresh-1", &b), 0);
	cr_expect_eq(nreq, 2);
	/* A token that expires at once serves only the logins waiting. */
	answer(1, 0, 200, OK_ANSWER("at-0", 0));
	cr_expect_str_eq(b.token, "at-0");
	cr_assert_eq(get("refresh-1", &a), 0);
	cr_expect_eq(nreq, 3);
}

Test(oauth_tokens, rotation_saved_before_anyone_hears)
{
	struct waiter a, b, c;

	cr_assert_eq(get("refresh-1", &a), 0);
	cr_assert_eq(get("refresh-1", &b), 0);
	answer(0, 0, 200, "{\"access_token\":\"at-1\",\"refresh_token\":\"refresh-2\",\"expires_in\":3600}");
	cr_expect_eq(saves, 1);
	cr_expect_str_eq(saved, "refresh-2");
	cr_expect_str_eq(events, "SAA", "saved first, then the answers: %s", events);
	cr_expect_str_eq(a.token, "at-1");
	cr_expect_eq(count(log_text(), "rotated and saved"), 1);
	/* The next refresh uses the newest one, even for a login that
	 * read the old one from the store. */
	clock_ms += 3600000;
	cr_assert_eq(get("refresh-1", &c), 0);
	cr_expect_eq(nreq, 2);
	cr_expect(strstr(reqs[1].form, "refresh_token=refresh-2&") != NULL, "%s", reqs[1].form);
	answer(1, 0, 200, "{\"access_token\":\"at-2\",\"refresh_token\":\"refresh-3\"}");
	cr_expect_str_eq(saved, "refresh-3");
	clock_ms += 3600000;
	cr_assert_eq(get("refresh-2", &c), 0);
	cr_expect(strstr(reqs[2].form, "refresh_token=refresh-3&") != NULL, "%s", reqs[2].form);
	answer(2, 0, 200, OK_ANSWER("at-3", 3600));
	cr_expect_eq(saves, 2, "the same refresh token again is no rotation");
}

Test(oauth_tokens, a_new_grant_replaces_the_cache)
{
	struct waiter a, b;

	cr_assert_eq(get("refresh-1", &a), 0);
	answer(0, 0, 200, OK_ANSWER("at-1", 3600));
	/* Authorized again: the store holds a token the cache never saw. */
	cr_assert_eq(get("refresh-NEW", &b), 0);
	cr_expect_eq(nreq, 2, "the cached access token belonged to the old grant");
	cr_expect(strstr(reqs[1].form, "refresh_token=refresh-NEW&") != NULL);
	answer(1, 0, 200, OK_ANSWER("at-new", 3600));
	cr_expect_str_eq(b.token, "at-new");
}

Test(oauth_tokens, save_failure_keeps_the_token_in_memory)
{
	struct waiter a, b;

	save_result = -EIO;
	cr_assert_eq(get("refresh-1", &a), 0);
	answer(0, 0, 200, "{\"access_token\":\"at-1\",\"refresh_token\":\"refresh-2\",\"expires_in\":1}");
	cr_expect_eq(a.err, 0, "the login goes on");
	cr_expect_eq(count(log_text(), "could not be saved"), 1);
	clock_ms += 2000;
	cr_assert_eq(get("refresh-1", &b), 0);
	cr_expect(strstr(reqs[1].form, "refresh_token=refresh-2&") != NULL);
}

Test(oauth_tokens, no_saver_is_allowed)
{
	struct waiter a;

	memset(&a, 0, sizeof(a));
	cr_assert_eq(oauth_tokens_get(tok, "r", 1, NULL, on_token, &a, NULL), 0);
	answer(0, 0, 200, "{\"access_token\":\"at-1\",\"refresh_token\":\"r2\"}");
	cr_expect_eq(a.err, 0);
	cr_expect_eq(count(log_text(), "could not be saved"), 1);
}

Test(oauth_tokens, refused_grant_logged_once)
{
	struct waiter w[3], late;
	int i;

	for (i = 0; i < 3; i++)
		cr_assert_eq(get("refresh-1", &w[i]), 0);
	answer(0, 0, 400, "{\"error\":\"invalid_grant\",\"error_description\":\"grant request is invalid\"}");
	for (i = 0; i < 3; i++)
		cr_expect_eq(w[i].err, -EACCES);
	for (i = 0; i < 5; i++) {
		clock_ms += 120000;
		cr_assert_eq(get("refresh-1", &late), 0);
		spin();
		cr_expect_eq(late.err, -EACCES);
	}
	cr_expect_eq(nreq, 1, "a refused token is not sent again");
	cr_expect_eq(count(log_text(), "popbridge authorize acct"), 1, "%s", log_text());
	cr_expect_eq(count(log_text(), "grant request is invalid"), 1);
	/* Authorized again. */
	cr_assert_eq(get("refresh-2", &late), 0);
	cr_expect_eq(nreq, 2);
	answer(1, 0, 400, "{\"error\":\"invalid_grant\"}");
	cr_expect_eq(late.err, -EACCES);
	cr_expect_eq(count(log_text(), "popbridge authorize acct"), 2, "a new grant refused is a new line");
}

Test(oauth_tokens, backoff_doubles_to_a_minute)
{
	static const unsigned want[] = { 1, 2, 4, 8, 16, 32, 60, 60, 60 };
	struct waiter a, b;
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		cr_assert_eq(get("refresh-1", &a), 0);
		cr_assert_eq(nreq, (int)i + 1);
		answer((int)i, -ECONNREFUSED, 0, NULL);
		cr_expect_eq(a.err, -ECONNREFUSED);
		cr_assert_eq(get("refresh-1", &b), 0);
		spin();
		cr_expect_eq(b.err, -EAGAIN, "during the backoff: %d", b.err);
		clock_ms += want[i] * 1000 - 1;
		cr_assert_eq(get("refresh-1", &b), 0);
		spin();
		cr_expect_eq(b.err, -EAGAIN, "step %zu: still backing off", i);
		cr_expect_eq(nreq, (int)i + 1);
		clock_ms += 1;
	}
	cr_assert_eq(get("refresh-1", &a), 0);
	answer(nreq - 1, 0, 200, OK_ANSWER("at-1", 3600));
	cr_expect_eq(a.err, 0);
	/* Success resets the schedule. */
	clock_ms += 3600000;
	cr_assert_eq(get("refresh-1", &a), 0);
	answer(nreq - 1, -ETIMEDOUT, 0, NULL);
	cr_expect_eq(a.err, -ETIMEDOUT);
	clock_ms += 1000;
	cr_assert_eq(get("refresh-1", &a), 0);
	cr_expect(oauth_tokens_busy(tok), "one second after the first failure");
	cr_expect_eq(count(log_text(), "next try in 60 s"), 3);
}

Test(oauth_tokens, endpoint_failures_mapped)
{
	static const struct {
		long status;
		const char *body;
		int want;
	} v[] = {
		{ 500, "<html>oops</html>", -EREMOTEIO },
		{ 503, "{\"error\":\"temporarily_unavailable\"}", -EREMOTEIO },
		{ 200, "<html>login page</html>", -EBADMSG },
		{ 200, "{\"access_token\":\"has space\"}", -EBADMSG },
		{ 200, "{\"access_token\":\"a\",\"token_type\":\"mac\"}", -EPROTONOSUPPORT },
		{ 401, "{\"error\":\"invalid_client\"}", -EPERM },
		{ 400, "{\"error\":\"unauthorized_client\"}", -EPERM },
		{ 400, "{\"error\":\"invalid_scope\"}", -EPERM },
		{ 400, "{\"error\":\"server_on_fire\"}", -EREMOTEIO },
		{ 404, "", -EBADMSG },
	};
	struct waiter a;
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		cr_assert_eq(get("refresh-1", &a), 0);
		answer(nreq - 1, 0, v[i].status, v[i].body);
		cr_expect_eq(a.err, v[i].want, "%ld %s: %d", v[i].status, v[i].body, a.err);
		clock_ms += OAUTH_BACKOFF_MAX_MS;
	}
}

Test(oauth_tokens, post_failing_at_once)
{
	struct waiter a;

	post_fails = -EPERM;
	cr_assert_eq(get("refresh-1", &a), 0);
	cr_expect_eq(a.calls, 0);
	spin();
	cr_expect_eq(a.calls, 1);
	cr_expect_eq(a.err, -EPERM);
	cr_expect_eq(releases, 1);
}

Test(oauth_tokens, cancelled_waiters_do_not_stop_the_refresh)
{
	struct waiter a, b, c;

	cr_assert_eq(get("refresh-1", &a), 0);
	cr_assert_eq(get("refresh-1", &b), 0);
	cr_assert_eq(get("refresh-1", &c), 0);
	oauth_wait_cancel(&a.w);
	cr_expect_null(a.w);
	oauth_wait_cancel(&a.w);
	oauth_wait_cancel(NULL);
	b.cancel = &c.w;	/* b's answer cancels c */
	answer(0, 0, 200, "{\"access_token\":\"at-1\",\"refresh_token\":\"refresh-2\"}");
	cr_expect_eq(a.calls, 0);
	cr_expect_eq(b.calls, 1);
	cr_expect_eq(c.calls, 0);
	cr_expect_null(c.w);
	/* Nobody left waiting: the request still runs and its rotation is
	 * saved. */
	clock_ms += 3600000;
	cr_assert_eq(get("refresh-2", &a), 0);
	oauth_wait_cancel(&a.w);
	cr_expect(oauth_tokens_busy(tok));
	answer(1, 0, 200, "{\"access_token\":\"at-2\",\"refresh_token\":\"refresh-3\"}");
	cr_expect_str_eq(saved, "refresh-3");
	cr_expect_eq(a.calls, 0);
}

Test(oauth_tokens, cancel_a_ready_answer)
{
	struct waiter a, b;

	cr_assert_eq(get("refresh-1", &a), 0);
	answer(0, 0, 200, OK_ANSWER("at-1", 3600));
	cr_assert_eq(get("refresh-1", &b), 0);
	oauth_wait_cancel(&b.w);
	spin();
	cr_expect_eq(b.calls, 0);
}

Test(oauth_tokens, free_inside_a_callback)
{
	struct waiter a, b;

	cr_assert_eq(get("refresh-1", &a), 0);
	cr_assert_eq(get("refresh-1", &b), 0);
	a.free_tokens = &tok;
	answer(0, 0, 200, OK_ANSWER("at-1", 3600));
	cr_expect_eq(a.calls, 1);
	cr_expect_eq(b.calls, 0);
	cr_expect_null(tok);
}

Test(oauth_tokens, free_with_a_refresh_running)
{
	struct waiter a;

	cr_assert_eq(get("refresh-1", &a), 0);
	oauth_tokens_free(&tok);
	cr_expect(reqs[0].cancelled);
	cr_expect_eq(releases, 1);
	spin();
	cr_expect_eq(a.calls, 0);
}

Test(oauth_tokens, rejected_token_is_refreshed)
{
	struct waiter a, b;

	cr_assert_eq(get("refresh-1", &a), 0);
	answer(0, 0, 200, OK_ANSWER("at-1", 3600));
	oauth_tokens_reject(tok, "at-other", 8);
	cr_assert_eq(get("refresh-1", &b), 0);
	spin();
	cr_expect_str_eq(b.token, "at-1", "another token's rejection changes nothing");
	oauth_tokens_reject(tok, "at-1", 4);
	cr_assert_eq(get("refresh-1", &b), 0);
	cr_expect_eq(nreq, 2);
	answer(1, 0, 200, OK_ANSWER("at-2", 3600));
	cr_expect_str_eq(b.token, "at-2");
}

Test(oauth_tokens, bad_arguments)
{
	static char huge[OAUTH_TOKEN_MAX + 1];
	struct waiter a;
	struct oauth_tokens *t2;
	struct oauth_tokens_cfg c2 = cfg;

	memset(&a, 0, sizeof(a));
	cr_expect_eq(oauth_tokens_get(tok, "", 0, &saver, on_token, &a, NULL), -EINVAL);
	cr_expect_eq(oauth_tokens_get(tok, NULL, 3, &saver, on_token, &a, NULL), -EINVAL);
	memset(huge, 'r', sizeof(huge));
	cr_expect_eq(oauth_tokens_get(tok, huge, sizeof(huge), &saver, on_token, &a, NULL), -EINVAL);
	cr_expect_eq(releases, 3, "the saver is released on errors too");
	spin();
	cr_expect_eq(a.calls, 0);
	c2.client.client_id = NULL;
	cr_expect_eq(oauth_tokens_new(&loop, &fake, &c2, &t2), -EINVAL);
	cr_expect_null(t2);
}

Test(oauth_tokens, no_secret_in_the_log)
{
	struct waiter a;
	const char *text;

	cr_assert_eq(get("1//0gSECRETrefresh", &a), 0);
	answer(0, 0, 200, "{\"access_token\":\"ya29.SECRETaccess\",\"refresh_token\":\"1//0gSECRETrotated\",\"expires_in\":1}");
	clock_ms += 5000;
	cr_assert_eq(get("1//0gSECRETrefresh", &a), 0);
	answer(1, 0, 400, "{\"error\":\"invalid_request\",\"error_description\":\"bad token 1//0gSECRETrotated here\"}");
	clock_ms += 60000;
	cr_assert_eq(get("1//0gSECRETrotated", &a), 0);
	answer(2, 0, 400, "{\"error\":\"invalid_grant\",\"error_description\":\"token 1//0gSECRETrotated revoked; client-secret-XYZ\"}");
	text = log_text();
	if (getenv("SHOW_LOG") != NULL)
		fprintf(stdout, "%s", text);
	cr_expect(strstr(text, "SECRET") == NULL, "%s", text);
	cr_expect(strstr(text, "client-secret-XYZ") == NULL, "%s", text);
	cr_expect_eq(count(text, "withheld"), 2, "%s", text);
	cr_expect_eq(count(text, "popbridge authorize acct"), 1);
}
