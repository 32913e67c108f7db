/* One account's OAuth2 tokens: the access token cache, the one refresh in
 * flight that concurrent logins share, rotation, backoff. */
#include "oauth/token_cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "util/buf.h"
#include "util/error.h"
#include "util/log.h"

#define HASH_LEN 32

struct oauth_wait {
	struct oauth_tokens *t;
	oauth_token_cb cb;
	void *ctx;
	int err;
	int ready;		/* on the ready list, err set */
	int in_cb;
	struct oauth_wait *prev, *next;
};

struct wait_list {
	struct oauth_wait *head, *tail;
};

struct oauth_tokens {
	uv_loop_t *loop;
	struct oauth_transport tr;
	char *account;
	struct oauth_client cl;
	char *strings[7];	/* what cl points to */
	char *ca_file;
	unsigned timeout_ms;

	struct buf refresh;		/* the newest refresh token (secret) */
	unsigned char refresh_hash[HASH_LEN];
	unsigned char retired[OAUTH_RETIRED_MAX][HASH_LEN];
	unsigned n_retired, next_retired;
	int refused;			/* invalid_grant for refresh */
	int logged_refused;

	struct buf access;		/* secret */
	uint64_t access_until;		/* hand out before this (ms) */

	uint64_t backoff_until;
	unsigned failures;

	void *flight;			/* the refresh request */
	struct oauth_saver *saver;	/* for the flight's rotation */
	struct buf form;
	unsigned requests;

	struct wait_list pending, ready;
	uv_timer_t kick;
	int depth;
	int closing;
	int destroyed;
};

static void drain(struct oauth_tokens *t);
static void destroy(struct oauth_tokens *t);

/* -- the default transport ------------------------------------------------------ */

static int
http_tr_post(void *tctx, const char *url, const char *form, size_t n,
	     const struct http_opts *opts, http_done_cb cb, void *ctx,
	     void **req_r)
{
	struct http_req *req = NULL;
	int r;

	r = http_post_form(tctx, url, form, n, opts, cb, ctx, &req);
	*req_r = req;
	return r;
}

static void
http_tr_cancel(void *tctx, void **req)
{
	struct http_req *r = *req;

	(void)tctx;
	http_cancel(&r);
	*req = NULL;
}

static uint64_t
http_tr_now(void *tctx)
{
	return uv_now(http_client_loop(tctx));
}

void
oauth_transport_http(struct oauth_transport *tr, struct http_client *hc)
{
	tr->post = http_tr_post;
	tr->cancel = http_tr_cancel;
	tr->now_ms = http_tr_now;
	tr->tctx = hc;
}

/* -- lists and helpers ------------------------------------------------------------- */

static void
list_push(struct wait_list *l, struct oauth_wait *w)
{
	w->next = NULL;
	w->prev = l->tail;
	if (l->tail != NULL)
		l->tail->next = w;
	else
		l->head = w;
	l->tail = w;
}

static void
list_remove(struct wait_list *l, struct oauth_wait *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		l->head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	else
		l->tail = w->prev;
	w->prev = w->next = NULL;
}

static void
hash(const char *p, size_t n, unsigned char out[HASH_LEN])
{
	if (EVP_Digest(p, n, out, NULL, EVP_sha256(), NULL) != 1)
		memset(out, 0, HASH_LEN);
}

static uint64_t
now(const struct oauth_tokens *t)
{
	return t->tr.now_ms(t->tr.tctx);
}

static void
release_saver(struct oauth_saver *s)
{
	if (s != NULL && s->release != NULL)
		s->release(s);
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

/* Whether text shows (the start of) a secret: then it is not logged. */
static int
shows(const char *text, const char *secret, size_t n)
{
	size_t k = n < 12 ? n : 12, len = strlen(text), i;

	if (secret == NULL || k < 4 || len < k)
		return 0;
	for (i = 0; i + k <= len; i++)
		if (memcmp(text + i, secret, k) == 0)
			return 1;
	return 0;
}

static const char *
safe_text(const struct oauth_tokens *t, const char *text)
{
	const char *cs = t->cl.client_secret;

	if (text[0] == '\0')
		return "";
	if (shows(text, t->refresh.data, t->refresh.len) ||
	    shows(text, t->access.data, t->access.len) ||
	    (cs != NULL && shows(text, cs, strlen(cs))))
		return "(withheld: it quotes a secret)";
	return text;
}

/* -- life -------------------------------------------------------------------------- */

int
oauth_tokens_new(uv_loop_t *loop, const struct oauth_transport *tr,
		 const struct oauth_tokens_cfg *cfg, struct oauth_tokens **t_r)
{
	const struct oauth_client *c = &cfg->client;
	struct oauth_tokens *t;
	const char *src[7];
	size_t i;

	*t_r = NULL;
	if (cfg->account == NULL || c->client_id == NULL ||
	    c->client_id[0] == '\0' || c->token_url == NULL)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->loop = loop;
	t->tr = *tr;
	t->timeout_ms = cfg->timeout_ms;
	src[0] = c->token_url;
	src[1] = c->device_url;
	src[2] = c->auth_url;
	src[3] = c->client_id;
	src[4] = c->client_secret;
	src[5] = c->scope;
	src[6] = c->auth_extra;
	t->account = strdup(cfg->account);
	t->ca_file = dup_or_null(cfg->ca_file);
	for (i = 0; i < 7; i++)
		t->strings[i] = dup_or_null(src[i]);
	if (t->account == NULL || (cfg->ca_file != NULL && t->ca_file == NULL))
		goto nomem;
	for (i = 0; i < 7; i++)
		if (src[i] != NULL && t->strings[i] == NULL)
			goto nomem;
	t->cl.token_url = t->strings[0];
	t->cl.device_url = t->strings[1];
	t->cl.auth_url = t->strings[2];
	t->cl.client_id = t->strings[3];
	t->cl.client_secret = t->strings[4];
	t->cl.scope = t->strings[5];
	t->cl.auth_extra = t->strings[6];
	buf_init_secret(&t->refresh, OAUTH_TOKEN_MAX);
	buf_init_secret(&t->access, OAUTH_TOKEN_MAX);
	buf_init_secret(&t->form, OAUTH_FORM_MAX);
	uv_timer_init(loop, &t->kick);
	t->kick.data = t;
	*t_r = t;
	return 0;
nomem:
	free(t->account);
	free(t->ca_file);
	for (i = 0; i < 7; i++)
		free(t->strings[i]);
	free(t);
	return -ENOMEM;
}

static void
on_kick_closed(uv_handle_t *h)
{
	struct oauth_tokens *t = h->data;
	size_t i;

	if (t->strings[4] != NULL)
		OPENSSL_cleanse(t->strings[4], strlen(t->strings[4]));
	for (i = 0; i < 7; i++)
		free(t->strings[i]);
	free(t->account);
	free(t->ca_file);
	free(t);
}

static void
free_list(struct wait_list *l)
{
	struct oauth_wait *w;

	while ((w = l->head) != NULL) {
		list_remove(l, w);
		free(w);
	}
}

static void
destroy(struct oauth_tokens *t)
{
	t->destroyed = 1;
	if (t->flight != NULL)
		t->tr.cancel(t->tr.tctx, &t->flight);
	release_saver(t->saver);
	t->saver = NULL;
	free_list(&t->pending);
	free_list(&t->ready);
	buf_free(&t->refresh);
	buf_free(&t->access);
	buf_free(&t->form);
	OPENSSL_cleanse(t->retired, sizeof(t->retired));
	OPENSSL_cleanse(t->refresh_hash, sizeof(t->refresh_hash));
	uv_timer_stop(&t->kick);
	uv_close((uv_handle_t *)&t->kick, on_kick_closed);
}

void
oauth_tokens_free(struct oauth_tokens **tp)
{
	struct oauth_tokens *t = *tp;

	if (t == NULL)
		return;
	*tp = NULL;
	t->closing = 1;
	if (t->depth == 0)
		destroy(t);
}

bool
oauth_tokens_busy(const struct oauth_tokens *t)
{
	return t->flight != NULL || t->pending.head != NULL ||
	       t->ready.head != NULL;
}

unsigned
oauth_tokens_requests(const struct oauth_tokens *t)
{
	return t->requests;
}

/* -- answers to waiters ------------------------------------------------------------- */

static void
on_kick(uv_timer_t *h)
{
	drain(h->data);
}

static void
make_ready(struct oauth_tokens *t, struct oauth_wait *w, int err)
{
	w->err = err;
	w->ready = 1;
	list_push(&t->ready, w);
}

/* Every pending waiter gets err (0: the access token). */
static void
answer_pending(struct oauth_tokens *t, int err)
{
	struct oauth_wait *w;

	while ((w = t->pending.head) != NULL) {
		list_remove(&t->pending, w);
		make_ready(t, w, err);
	}
}

static bool
access_valid(const struct oauth_tokens *t)
{
	return t->access.len > 0 && now(t) < t->access_until;
}

static void start_flight(struct oauth_tokens *t);

static void
drain(struct oauth_tokens *t)
{
	struct oauth_wait *w;
	int refetch = 0;

	t->depth++;
	while (!t->closing && (w = t->ready.head) != NULL) {
		list_remove(&t->ready, w);
		if (w->err == 0 && t->access.len == 0) {
			/* Rejected by an earlier waiter: refresh again. */
			w->ready = 0;
			list_push(&t->pending, w);
			refetch = 1;
			continue;
		}
		w->in_cb = 1;
		w->cb(w->ctx, w->err, w->err == 0 ? t->access.data : NULL,
		      w->err == 0 ? t->access.len : 0);
		free(w);
	}
	t->depth--;
	if (t->depth == 0 && t->closing) {
		if (!t->destroyed)
			destroy(t);
		return;
	}
	if (refetch && t->flight == NULL)
		start_flight(t);
}

static void
kick(struct oauth_tokens *t)
{
	if (t->depth == 0)
		uv_timer_start(&t->kick, on_kick, 0, 0);
}

/* -- the refresh ------------------------------------------------------------------------ */

static void
fail(struct oauth_tokens *t, int err, const char *what)
{
	uint64_t delay;
	char origin[256];

	t->failures++;
	delay = t->failures >= 7 ? OAUTH_BACKOFF_MAX_MS : 1000u << (t->failures - 1);
	if (delay > OAUTH_BACKOFF_MAX_MS)
		delay = OAUTH_BACKOFF_MAX_MS;
	t->backoff_until = now(t) + delay;
	http_url_origin(t->cl.token_url, origin, sizeof(origin));
	log_warn("oauth: account %s: token endpoint %s: %s%s; next try in %u s",
		 t->account, origin, what, err == -EPERM ?
		 " (the client is refused: check oauth_client_id, "
		 "oauth_client_secret and oauth_scope)" : "",
		 (unsigned)(delay / 1000));
	answer_pending(t, err);
}

static void
refused(struct oauth_tokens *t, const struct oauth_err *e)
{
	t->refused = 1;
	t->failures = 0;
	t->backoff_until = 0;
	buf_wipe(&t->access);
	if (!t->logged_refused) {
		const char *text = safe_text(t, e->text);

		t->logged_refused = 1;
		log_error("oauth: account %s: the OAuth2 grant was refused "
			  "(%s%s%s): run 'popbridge authorize %s'",
			  t->account, e->name, text[0] ? ": " : "", text,
			  t->account);
	}
	answer_pending(t, -EACCES);
}

static int
rotate(struct oauth_tokens *t, const struct buf *fresh)
{
	int r = 0;

	if (fresh->len == t->refresh.len &&
	    CRYPTO_memcmp(fresh->data, t->refresh.data, fresh->len) == 0)
		return 0;
	memcpy(t->retired[t->next_retired], t->refresh_hash, HASH_LEN);
	t->next_retired = (t->next_retired + 1) % OAUTH_RETIRED_MAX;
	if (t->n_retired < OAUTH_RETIRED_MAX)
		t->n_retired++;
	buf_wipe(&t->refresh);
	if (buf_append(&t->refresh, fresh->data, fresh->len) < 0)
		return -ENOMEM;
	hash(t->refresh.data, t->refresh.len, t->refresh_hash);
	if (t->saver != NULL && t->saver->save != NULL)
		r = t->saver->save(t->saver, t->refresh.data, t->refresh.len);
	else
		r = -ENOSYS;
	if (r == -EINPROGRESS)
		log_info("oauth: account %s: refresh token rotated; it is "
			 "stored once the account file is free", t->account);
	else if (r < 0)
		log_error("oauth: account %s: the rotated refresh token could "
			  "not be saved (%s); it is kept in memory until restart",
			  t->account, err_text(r));
	else
		log_info("oauth: account %s: refresh token rotated and saved",
			 t->account);
	return 0;
}

static void
on_refreshed(void *ctx, int err, const struct http_response *resp,
	     const char *why)
{
	struct oauth_tokens *t = ctx;
	struct oauth_token_resp r;
	uint64_t life, margin;
	int k;

	/* A saver or log call that frees t takes effect in drain. */
	t->depth++;
	t->flight = NULL;
	buf_wipe(&t->form);
	oauth_token_resp_init(&r);
	if (err < 0) {
		fail(t, err, why);
		goto out;
	}
	k = oauth_parse_token(resp->status, resp->body, resp->body_len, &r);
	if (k == 0 && r.err.code == OAUTH_E_INVALID_GRANT) {
		refused(t, &r.err);
	} else if (k == 0 && r.err.code != OAUTH_OK) {
		char what[OAUTH_TEXT_MAX + 80];
		const char *text = safe_text(t, r.err.text);
		int code;

		switch (r.err.code) {
		case OAUTH_E_INVALID_CLIENT:
		case OAUTH_E_UNAUTHORIZED_CLIENT:
		case OAUTH_E_INVALID_SCOPE:
		case OAUTH_E_INVALID_REQUEST:
		case OAUTH_E_UNSUPPORTED_GRANT:
			code = -EPERM;
			break;
		default:
			code = -EREMOTEIO;
			break;
		}
		snprintf(what, sizeof(what), "HTTP %ld, error %s%s%s",
			 resp->status, r.err.name, text[0] ? ": " : "", text);
		fail(t, code, what);
	} else if (k < 0 || resp->status >= 500) {
		char what[80];

		snprintf(what, sizeof(what), "HTTP %ld, %s", resp->status,
			 resp->status >= 500 ? "server error" :
			 k == -EPROTONOSUPPORT ? "not a bearer token" :
			 "an answer that does not parse");
		fail(t, resp->status >= 500 ? -EREMOTEIO : k, what);
	} else {
		if (r.refresh.len > 0)
			rotate(t, &r.refresh);
		buf_wipe(&t->access);
		if (buf_append(&t->access, r.access.data, r.access.len) < 0) {
			fail(t, -ENOMEM, "out of memory");
			goto out;
		}
		life = (uint64_t)r.expires_in * 1000;
		margin = life / 2 < OAUTH_EXPIRY_MARGIN_MS ? life / 2 :
			 OAUTH_EXPIRY_MARGIN_MS;
		t->access_until = now(t) + life - margin;
		t->failures = 0;
		t->backoff_until = 0;
		log_debug("oauth: account %s: access token refreshed, valid "
			  "for %u s", t->account, r.expires_in);
		answer_pending(t, 0);
	}
out:
	oauth_token_resp_free(&r);
	release_saver(t->saver);
	t->saver = NULL;
	t->depth--;
	drain(t);
}

static void
start_flight(struct oauth_tokens *t)
{
	struct http_opts o = {
		.timeout_ms = t->timeout_ms,
		.ca_file = t->ca_file,
	};
	int r;

	buf_wipe(&t->form);
	r = oauth_form_refresh(&t->form, &t->cl, t->refresh.data, t->refresh.len);
	if (r == 0)
		r = t->tr.post(t->tr.tctx, t->cl.token_url, t->form.data,
			       t->form.len, &o, on_refreshed, t, &t->flight);
	if (r < 0) {
		char what[128];

		buf_wipe(&t->form);
		t->flight = NULL;
		snprintf(what, sizeof(what), "the request could not be made (%s)",
			 err_text(r));
		fail(t, r, what);
		release_saver(t->saver);
		t->saver = NULL;
		kick(t);
		return;
	}
	t->requests++;
}

/* -- the interface ------------------------------------------------------------------------ */

static bool
retired(const struct oauth_tokens *t, const unsigned char h[HASH_LEN])
{
	unsigned i;

	for (i = 0; i < t->n_retired; i++)
		if (CRYPTO_memcmp(t->retired[i], h, HASH_LEN) == 0)
			return true;
	return false;
}

/* Takes the refresh token a login read: the newest, an older one the
 * cache rotated away from, or a new grant. */
static int
adopt(struct oauth_tokens *t, const char *refresh, size_t n)
{
	unsigned char h[HASH_LEN];

	hash(refresh, n, h);
	if (t->refresh.len > 0 &&
	    (CRYPTO_memcmp(h, t->refresh_hash, HASH_LEN) == 0 || retired(t, h)))
		return 0;
	if (t->flight != NULL)
		return 0;	/* a new grant waits for the refresh running */
	buf_wipe(&t->refresh);
	if (buf_append(&t->refresh, refresh, n) < 0)
		return -ENOMEM;
	memcpy(t->refresh_hash, h, HASH_LEN);
	buf_wipe(&t->access);
	t->access_until = 0;
	t->refused = 0;
	t->logged_refused = 0;
	t->failures = 0;
	t->backoff_until = 0;
	return 0;
}

int
oauth_tokens_get(struct oauth_tokens *t, const char *refresh, size_t n,
		 struct oauth_saver *saver, oauth_token_cb cb, void *ctx,
		 struct oauth_wait **w_r)
{
	struct oauth_wait *w;
	int r;

	if (w_r != NULL)
		*w_r = NULL;
	if (t->closing) {
		release_saver(saver);
		return -ESHUTDOWN;
	}
	if (refresh == NULL || n == 0 || n > OAUTH_TOKEN_MAX) {
		release_saver(saver);
		return -EINVAL;
	}
	r = adopt(t, refresh, n);
	w = r == 0 ? calloc(1, sizeof(*w)) : NULL;
	if (w == NULL) {
		release_saver(saver);
		return -ENOMEM;
	}
	w->t = t;
	w->cb = cb;
	w->ctx = ctx;
	if (t->refused) {
		make_ready(t, w, -EACCES);
	} else if (access_valid(t)) {
		make_ready(t, w, 0);
	} else if (t->flight == NULL && now(t) < t->backoff_until) {
		make_ready(t, w, -EAGAIN);
	} else {
		list_push(&t->pending, w);
		if (t->saver == NULL) {
			t->saver = saver;
			saver = NULL;
		}
		if (t->flight == NULL)
			start_flight(t);
	}
	release_saver(saver);
	if (w->ready)
		kick(t);
	if (w_r != NULL)
		*w_r = w;
	return 0;
}

void
oauth_wait_cancel(struct oauth_wait **wp)
{
	struct oauth_wait *w;

	if (wp == NULL || *wp == NULL)
		return;
	w = *wp;
	*wp = NULL;
	if (w->in_cb)
		return;		/* drain frees it when the callback returns */
	list_remove(w->ready ? &w->t->ready : &w->t->pending, w);
	free(w);
}

void
oauth_tokens_reject(struct oauth_tokens *t, const char *token, size_t n)
{
	if (t->access.len == n && n > 0 &&
	    CRYPTO_memcmp(t->access.data, token, n) == 0) {
		buf_wipe(&t->access);
		t->access_until = 0;
	}
}
