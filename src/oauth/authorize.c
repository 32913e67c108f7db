/* One run of `popbridge authorize` on the loop: the device grant, or the
 * code grant with PKCE and the loopback listener (or a pasted URL). */
#include "oauth/authorize.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "oauth/flows.h"
#include "oauth/loopback.h"
#include "util/buf.h"
#include "util/error.h"

enum kind { RUN_DEVICE, RUN_CODE };

struct oauth_authorize {
	uv_loop_t *loop;
	struct oauth_transport tr;
	struct oauth_authorize_cfg cfg;
	struct oauth_authorize_cb cb;
	enum kind kind;
	void *req;			/* the request in flight */
	uv_timer_t timer;
	struct buf form;		/* secret */
	struct oauth_token_resp tokens;
	/* device grant */
	struct oauth_device_auth dev;
	struct oauth_device_flow flow;
	/* code grant */
	struct oauth_loopback *lb;
	struct oauth_pkce pkce;
	char state[OAUTH_STATE_LEN + 1];
	char redirect_uri[64];
	int have_code;
	int ended;
	int freed;
	int depth;			/* inside a user callback */
	char why[OAUTH_TEXT_MAX + 200];
};

static void destroy(struct oauth_authorize *a);

/* -- clock ---------------------------------------------------------------------- */

static unsigned
ms_per_s(const struct oauth_authorize *a)
{
	return a->cfg.ms_per_s ? a->cfg.ms_per_s : 1000;
}

/* The flows' clock: real milliseconds stretched so that one of its
 * seconds lasts ms_per_s real ones. */
static uint64_t
vnow(const struct oauth_authorize *a)
{
	return a->tr.now_ms(a->tr.tctx) * 1000 / ms_per_s(a);
}

static uint64_t
real_delay(const struct oauth_authorize *a, uint64_t vms)
{
	return vms * ms_per_s(a) / 1000;
}

/* -- the end ------------------------------------------------------------------------ */

static void
end(struct oauth_authorize *a, int err, const char *why)
{
	if (a->ended)
		return;
	a->ended = 1;
	uv_timer_stop(&a->timer);
	oauth_loopback_free(&a->lb);
	if (a->req != NULL)
		a->tr.cancel(a->tr.tctx, &a->req);
	buf_wipe(&a->form);
	a->depth++;
	a->cb.done(a->cb.ctx, err, err == 0 ? &a->tokens : NULL,
		   err == 0 ? "" : why);
	a->depth--;
	oauth_token_resp_free(&a->tokens);
	oauth_pkce_wipe(&a->pkce);
	if (a->freed && a->depth == 0)
		destroy(a);
}

static int
map_error(enum oauth_error e)
{
	switch (e) {
	case OAUTH_E_DENIED:
	case OAUTH_E_INVALID_GRANT:
		return -EACCES;
	case OAUTH_E_EXPIRED:
		return -ETIMEDOUT;
	case OAUTH_E_INVALID_CLIENT:
	case OAUTH_E_UNAUTHORIZED_CLIENT:
	case OAUTH_E_INVALID_SCOPE:
	case OAUTH_E_INVALID_REQUEST:
	case OAUTH_E_UNSUPPORTED_GRANT:
		return -EPERM;
	default:
		return -EREMOTEIO;
	}
}

static void
end_refused(struct oauth_authorize *a, const char *what,
	    const struct oauth_err *e)
{
	snprintf(a->why, sizeof(a->why), "%s: %s%s%s", what, e->name,
		 e->text[0] ? ": " : "", e->text);
	end(a, map_error(e->code), a->why);
}

/* The tokens are in a->tokens: they must include a refresh token. */
static void
end_with_tokens(struct oauth_authorize *a)
{
	if (a->tokens.refresh.len == 0) {
		end(a, -ENODATA, "the server gave no refresh token "
		    "(the scope must ask for offline access)");
		return;
	}
	end(a, 0, "");
}

/* -- requests ----------------------------------------------------------------------- */

static int
post(struct oauth_authorize *a, const char *url, http_done_cb cb)
{
	struct http_opts o = {
		.timeout_ms = a->cfg.timeout_ms,
		.ca_file = a->cfg.ca_file,
	};

	return a->tr.post(a->tr.tctx, url, a->form.data, a->form.len, &o, cb,
			  a, &a->req);
}

/* The form built (r == 0) goes to the token endpoint; a request that
 * cannot be made ends the flow. */
static void
token_post(struct oauth_authorize *a, int r, http_done_cb cb)
{
	if (r == 0)
		r = post(a, a->cfg.client.token_url, cb);
	if (r < 0) {
		snprintf(a->why, sizeof(a->why), "the token request could "
			 "not be made (%s)", err_text(r));
		end(a, r, a->why);
	}
}

/* -- device grant ------------------------------------------------------------------- */

static void on_poll_timer(uv_timer_t *t);

static void
on_polled(void *ctx, int err, const struct http_response *resp,
	  const char *why)
{
	struct oauth_authorize *a = ctx;
	enum oauth_step step;
	uint64_t delay;
	int e;

	a->req = NULL;
	buf_wipe(&a->form);
	step = oauth_device_flow_answer(&a->flow, vnow(a), err,
					err == 0 ? resp->status : 0,
					err == 0 ? resp->body : NULL,
					err == 0 ? resp->body_len : 0,
					&a->tokens, &e, &delay);
	switch (step) {
	case OAUTH_STEP_POLL:
		uv_timer_start(&a->timer, on_poll_timer, real_delay(a, delay), 0);
		break;
	case OAUTH_STEP_DONE:
		end_with_tokens(a);
		break;
	case OAUTH_STEP_FAIL:
		if (a->tokens.err.code != OAUTH_OK)
			end_refused(a, "the token endpoint refused",
				    &a->tokens.err);
		else if (err < 0)
			snprintf(a->why, sizeof(a->why), "the device code "
				 "expired while the token endpoint failed (%s)",
				 why);
		else
			snprintf(a->why, sizeof(a->why), "the device code "
				 "expired before the authorization was given");
		end(a, e, a->why);
		break;
	}
}

static void
on_poll_timer(uv_timer_t *t)
{
	struct oauth_authorize *a = t->data;
	int r;

	buf_wipe(&a->form);
	r = oauth_form_device_poll(&a->form, &a->cfg.client,
				   a->dev.device_code.data,
				   a->dev.device_code.len);
	token_post(a, r, on_polled);
}

static void
on_device_auth(void *ctx, int err, const struct http_response *resp,
	       const char *why)
{
	struct oauth_authorize *a = ctx;
	int k;

	a->req = NULL;
	buf_wipe(&a->form);
	if (err < 0) {
		snprintf(a->why, sizeof(a->why), "the device authorization "
			 "request failed: %s", why);
		end(a, err, a->why);
		return;
	}
	k = oauth_parse_device_auth(resp->status, resp->body, resp->body_len,
				    &a->dev);
	if (k == 0 && a->dev.err.code != OAUTH_OK) {
		end_refused(a, "the device authorization endpoint refused",
			    &a->dev.err);
		return;
	}
	if (k < 0) {
		snprintf(a->why, sizeof(a->why), "the device authorization "
			 "endpoint's answer (HTTP %ld) does not parse",
			 resp->status);
		end(a, resp->status >= 500 ? -EREMOTEIO : k, a->why);
		return;
	}
	oauth_device_flow_start(&a->flow, &a->dev, vnow(a));
	a->depth++;
	a->cb.show_device(a->cb.ctx, &a->dev);
	a->depth--;
	if (a->freed) {
		if (a->depth == 0)
			destroy(a);
		return;
	}
	uv_timer_start(&a->timer, on_poll_timer,
		       real_delay(a, oauth_device_flow_first_delay(&a->flow)), 0);
}

/* -- code grant ------------------------------------------------------------------------ */

static void
on_exchanged(void *ctx, int err, const struct http_response *resp,
	     const char *why)
{
	struct oauth_authorize *a = ctx;
	int k;

	a->req = NULL;
	buf_wipe(&a->form);
	if (err < 0) {
		snprintf(a->why, sizeof(a->why), "the token request failed: %s",
			 why);
		end(a, err, a->why);
		return;
	}
	k = oauth_parse_token(resp->status, resp->body, resp->body_len,
			      &a->tokens);
	if (k == 0 && a->tokens.err.code != OAUTH_OK) {
		end_refused(a, "the token endpoint refused the code",
			    &a->tokens.err);
	} else if (k < 0) {
		snprintf(a->why, sizeof(a->why), "the token endpoint's answer "
			 "(HTTP %ld) does not parse", resp->status);
		end(a, resp->status >= 500 ? -EREMOTEIO : k, a->why);
	} else {
		end_with_tokens(a);
	}
}

static void
exchange(struct oauth_authorize *a, const char *code, size_t n)
{
	int r;

	a->have_code = 1;
	buf_wipe(&a->form);
	r = oauth_form_auth_code(&a->form, &a->cfg.client, code, n,
				 a->pkce.verifier, a->redirect_uri);
	token_post(a, r, on_exchanged);
}

static void
on_redirect(void *ctx, int result, const char *code, size_t n,
	    const struct oauth_err *e)
{
	struct oauth_authorize *a = ctx;

	oauth_loopback_free(&a->lb);
	if (result != 0) {
		end_refused(a, "the authorization server refused", e);
		return;
	}
	exchange(a, code, n);
}

int
oauth_authorize_paste(struct oauth_authorize *a, const char *s, size_t n)
{
	struct oauth_err e;
	struct buf code;
	int r;

	if (a->kind != RUN_CODE || a->have_code || a->ended)
		return -EALREADY;
	buf_init_secret(&code, OAUTH_TOKEN_MAX);
	r = oauth_redirect_parse(s, n, a->state, &code, &e);
	if (r == 0 || r == 1)
		oauth_loopback_free(&a->lb);
	if (r == 0)
		exchange(a, code.data, code.len);
	else if (r == 1)
		end_refused(a, "the authorization server refused", &e);
	buf_free(&code);
	return r == 1 ? 0 : r == -ENOBUFS ? -EBADMSG : r;
}

/* -- life ------------------------------------------------------------------------------ */

static void
on_timer_closed(uv_handle_t *h)
{
	struct oauth_authorize *a = h->data;

	buf_free(&a->form);
	oauth_token_resp_free(&a->tokens);
	oauth_device_auth_free(&a->dev);
	OPENSSL_cleanse(a, sizeof(*a));
	free(a);
}

static void
destroy(struct oauth_authorize *a)
{
	uv_timer_stop(&a->timer);
	oauth_loopback_free(&a->lb);
	if (a->req != NULL)
		a->tr.cancel(a->tr.tctx, &a->req);
	oauth_pkce_wipe(&a->pkce);
	uv_close((uv_handle_t *)&a->timer, on_timer_closed);
}

void
oauth_authorize_free(struct oauth_authorize **ap)
{
	struct oauth_authorize *a = *ap;

	if (a == NULL)
		return;
	*ap = NULL;
	a->freed = 1;
	if (a->depth == 0)
		destroy(a);
}

static struct oauth_authorize *
new_run(uv_loop_t *loop, const struct oauth_transport *tr,
	const struct oauth_authorize_cfg *cfg,
	const struct oauth_authorize_cb *cb, enum kind kind)
{
	struct oauth_authorize *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->loop = loop;
	a->tr = *tr;
	a->cfg = *cfg;
	a->cb = *cb;
	a->kind = kind;
	buf_init_secret(&a->form, OAUTH_FORM_MAX);
	oauth_token_resp_init(&a->tokens);
	oauth_device_auth_init(&a->dev);
	uv_timer_init(loop, &a->timer);
	a->timer.data = a;
	return a;
}

int
oauth_authorize_device(uv_loop_t *loop, const struct oauth_transport *tr,
		       const struct oauth_authorize_cfg *cfg,
		       const struct oauth_authorize_cb *cb,
		       struct oauth_authorize **a_r)
{
	const struct oauth_client *cl = &cfg->client;
	struct oauth_authorize *a;
	int r;

	*a_r = NULL;
	if (cl->device_url == NULL || cl->device_url[0] == '\0' ||
	    cl->token_url == NULL)
		return -EINVAL;
	a = new_run(loop, tr, cfg, cb, RUN_DEVICE);
	if (a == NULL)
		return -ENOMEM;
	r = oauth_form_device_start(&a->form, cl);
	if (r == 0)
		r = post(a, cl->device_url, on_device_auth);
	if (r < 0) {
		destroy(a);
		return r;
	}
	*a_r = a;
	return 0;
}

int
oauth_authorize_code(uv_loop_t *loop, const struct oauth_transport *tr,
		     const struct oauth_authorize_cfg *cfg,
		     const struct oauth_authorize_cb *cb,
		     struct oauth_authorize **a_r)
{
	const struct oauth_client *cl = &cfg->client;
	struct oauth_authorize *a;
	struct buf url;
	int r;

	*a_r = NULL;
	if (cl->auth_url == NULL || cl->auth_url[0] == '\0' ||
	    cl->token_url == NULL || cl->client_id == NULL ||
	    cl->scope == NULL)
		return -EINVAL;
	a = new_run(loop, tr, cfg, cb, RUN_CODE);
	if (a == NULL)
		return -ENOMEM;
	r = oauth_pkce_new(&a->pkce);
	if (r == 0)
		r = oauth_random_state(a->state);
	if (r == 0)
		r = oauth_loopback_start(loop, a->state, on_redirect, a, &a->lb);
	if (r < 0) {
		destroy(a);
		return r;
	}
	snprintf(a->redirect_uri, sizeof(a->redirect_uri), "%s",
		 oauth_loopback_redirect_uri(a->lb));
	buf_init(&url, OAUTH_REDIRECT_MAX);
	r = oauth_auth_url(&url, cl, a->redirect_uri, a->state,
			   a->pkce.challenge);
	if (r == 0)
		r = buf_append(&url, "", 1);
	if (r < 0) {
		buf_free(&url);
		destroy(a);
		return r;
	}
	*a_r = a;
	a->depth++;
	a->cb.show_url(a->cb.ctx, url.data, a->redirect_uri);
	a->depth--;
	buf_free(&url);
	if (a->freed)
		destroy(a);
	return 0;
}
