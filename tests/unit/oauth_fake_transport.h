/*
 * Shared by the OAuth unit tests that run on a fake transport
 * (oauth_transport): every POST is recorded in reqs[] and answered by the
 * test with answer(); the clock is the test's. fake_clock (default: a
 * counter, clock_ms) and fake_posted (called after each POST is
 * recorded) let a test drive its own loop.
 */
#ifndef POPBRIDGE_TEST_OAUTH_FAKE_TRANSPORT_H
#define POPBRIDGE_TEST_OAUTH_FAKE_TRANSPORT_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "oauth/http.h"
#include "oauth/token_cache.h"

#define MAXREQ 64

struct fake_req {
	char url[256];
	char form[4096];
	http_done_cb cb;
	void *ctx;
	int live;
	int cancelled;
	unsigned timeout_ms;
};

static struct fake_req reqs[MAXREQ];
static int nreq;
static uint64_t clock_ms = 1000000;
static int post_fails;			/* post returns this when set */
static uint64_t (*fake_clock)(void);	/* NULL: clock_ms */
static void (*fake_posted)(void);

static int
fake_post(void *tctx, const char *url, const char *form, size_t n,
	  const struct http_opts *opts, http_done_cb cb, void *ctx, void **req_r)
{
	struct fake_req *r;

	(void)tctx;
	if (post_fails)
		return post_fails;
	cr_assert_lt(nreq, MAXREQ);
	r = &reqs[nreq++];
	snprintf(r->url, sizeof(r->url), "%s", url);
	cr_assert_lt(n, sizeof(r->form));
	memcpy(r->form, form, n);
	r->form[n] = '\0';
	r->cb = cb;
	r->ctx = ctx;
	r->live = 1;
	r->timeout_ms = opts != NULL ? opts->timeout_ms : 0;
	*req_r = r;
	if (fake_posted != NULL)
		fake_posted();
	return 0;
}

static void
fake_cancel(void *tctx, void **req)
{
	struct fake_req *r = *req;

	(void)tctx;
	r->live = 0;
	r->cancelled = 1;
	*req = NULL;
}

static uint64_t
fake_now(void *tctx)
{
	(void)tctx;
	return fake_clock != NULL ? fake_clock() : clock_ms;
}

static const struct oauth_transport fake = {
	.post = fake_post,
	.cancel = fake_cancel,
	.now_ms = fake_now,
};

/* Completes request i with an HTTP answer (err 0) or a transport error. */
static void
answer(int i, int err, long status, const char *body)
{
	struct http_response resp = {
		.status = status,
		.body = body,
		.body_len = body != NULL ? strlen(body) : 0,
		.content_type = "application/json",
	};

	cr_assert(reqs[i].live, "request %d is not running", i);
	reqs[i].live = 0;
	reqs[i].cb(reqs[i].ctx, err, err == 0 ? &resp : NULL,
		   err == 0 ? "" : "Failed to connect to 127.0.0.1 port 9");
}

#endif
