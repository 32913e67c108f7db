/* The daemon's OAuth2 accounts: one HTTP client, a token cache per
 * account kept across reloads, and the saver that seals a rotated
 * refresh token into the account's file. */
#include "accounts/account_oauth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>

#include <openssl/crypto.h>

#include "accounts/account_file.h"
#include "accounts/account_keys.h"
#include "oauth/http.h"
#include "store/safe_file.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/log.h"

/* One account's cache and the settings it was made with. */
struct entry {
	struct entry *next;
	char *account;
	struct buf sig;			/* the settings (a client secret: wiped) */
	struct oauth_tokens *tokens;
};

/* A rotated refresh token waiting for the state directory's lock. */
struct pending_save {
	struct pending_save *next;
	struct account_oauth *ao;
	const struct config *acct;	/* a reference */
	uint8_t key[ACCOUNT_KEY_LEN];
	struct buf token;		/* secret */
	uint64_t since_ms;
};

struct account_oauth {
	uv_loop_t *loop;
	struct http_client *http;
	struct oauth_transport tr;
	struct entry *entries;
	struct pending_save *saves;
	uv_timer_t *retry;		/* runs while saves wait */
};

/* The saver of one login. */
struct saver {
	struct oauth_saver base;	/* first: the cache hands this back */
	struct account_oauth *ao;
	const struct config *acct;	/* a reference */
	uint8_t key[ACCOUNT_KEY_LEN];
};

/* --- the caches ---------------------------------------------------------- */

static int
sig_add(struct buf *b, const char *s)
{
	int r = buf_append_str(b, s != NULL ? s : "");

	return r == 0 ? buf_append(b, "", 1) : r;
}

/* What makes two configurations' caches for one account the same. */
static int
sig_make(const struct config *acct, struct buf *b)
{
	struct oauth_client cl = config_oauth_client(acct);
	char timeout[16];
	int r;

	snprintf(timeout, sizeof(timeout), "%u", acct->upstream.timeout);
	r = sig_add(b, cl.token_url);
	if (r == 0)
		r = sig_add(b, cl.client_id);
	if (r == 0)
		r = sig_add(b, cl.client_secret);
	if (r == 0)
		r = sig_add(b, cl.scope);
	if (r == 0)
		r = sig_add(b, acct->account.oauth.ca_file);
	if (r == 0)
		r = sig_add(b, timeout);
	return r;
}

static void
entry_free(struct entry *e)
{
	oauth_tokens_free(&e->tokens);
	buf_free(&e->sig);
	free(e->account);
	free(e);
}

static struct entry *
entry_new(struct account_oauth *ao, const struct config *acct,
	  struct buf *sig)
{
	struct oauth_tokens_cfg tc = {
		.account = acct->account.name,
		.client = config_oauth_client(acct),
		.timeout_ms = acct->upstream.timeout * 1000u,
		.ca_file = acct->account.oauth.ca_file,
	};
	struct entry *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->sig = *sig;
	buf_init_secret(sig, 0);
	e->account = strdup(acct->account.name);
	if (e->account == NULL ||
	    oauth_tokens_new(ao->loop, &ao->tr, &tc, &e->tokens) < 0) {
		entry_free(e);
		return NULL;
	}
	e->next = ao->entries;
	ao->entries = e;
	return e;
}

struct oauth_tokens *
account_oauth_tokens(struct account_oauth *ao, const struct config *acct)
{
	struct entry *e;
	struct buf sig;

	buf_init_secret(&sig, 4 * HTTP_URL_MAX);
	if (sig_make(acct, &sig) < 0) {
		buf_free(&sig);
		log_error("oauth: account %s: out of memory",
			  acct->account.name);
		return NULL;
	}
	for (e = ao->entries; e != NULL; e = e->next) {
		if (strcasecmp(e->account, acct->account.name) == 0 &&
		    e->sig.len == sig.len &&
		    CRYPTO_memcmp(e->sig.data, sig.data, sig.len) == 0) {
			buf_free(&sig);
			return e->tokens;
		}
	}
	e = entry_new(ao, acct, &sig);
	buf_free(&sig);
	if (e == NULL) {
		log_error("oauth: account %s: out of memory",
			  acct->account.name);
		return NULL;
	}
	return e->tokens;
}

/* Whether an account of cfg would take e. */
static bool
entry_used(const struct entry *e, const struct config *cfg)
{
	const struct config *acct = config_account_named(cfg, e->account);
	struct buf sig;
	bool same;

	if (acct == NULL || acct->account.auth != ACCOUNT_AUTH_OAUTH2)
		return false;
	buf_init_secret(&sig, 4 * HTTP_URL_MAX);
	same = sig_make(acct, &sig) == 0 && sig.len == e->sig.len &&
	       CRYPTO_memcmp(sig.data, e->sig.data, sig.len) == 0;
	buf_free(&sig);
	return same;
}

void
account_oauth_prune(struct account_oauth *ao, const struct config *cfg)
{
	struct entry **pp = &ao->entries, *e;

	while ((e = *pp) != NULL) {
		if (entry_used(e, cfg) || oauth_tokens_busy(e->tokens)) {
			pp = &e->next;
			continue;
		}
		*pp = e->next;
		log_debug("oauth: account %s: its token cache is dropped (the "
			  "account or its OAuth settings changed)", e->account);
		entry_free(e);
	}
}

/* --- saving a rotated refresh token -------------------------------------- */

/*
 * Seals token under key into acct's file. Returns 0; -EWOULDBLOCK while
 * popbridge passwd or authorize holds the state directory; -ESTALE when
 * the file's secret does not open under key (the account was set up
 * again: its new secret stays); or the failure, logged.
 */
static int
save_now(const struct config *acct, const uint8_t key[ACCOUNT_KEY_LEN],
	 const char *token, size_t n)
{
	const char *name = acct->account.name;
	struct safe_file_dir d = { .fd = -1 };
	struct account_file *f;
	struct buf old;
	char err[512] = "";
	int r;

	if (n > ACCOUNT_SECRET_MAX) {
		log_error("oauth: account %s: the new refresh token is longer "
			  "than %u octets and cannot be stored", name,
			  ACCOUNT_SECRET_MAX);
		return -EMSGSIZE;
	}
	f = malloc(sizeof(*f));
	if (f == NULL)
		return -ENOMEM;
	buf_init_secret(&old, ACCOUNT_SECRET_MAX + 1);
	r = safe_file_open_dir(&d, acct->state.dir, err, sizeof(err));
	if (r == 0 && flock(d.fd, LOCK_EX | LOCK_NB) < 0)
		r = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
	if (r == 0)
		r = account_file_load(&d, name, f, err, sizeof(err));
	if (r == 0 && account_keys_open_secret(f, key, &old) < 0)
		r = -ESTALE;
	if (r == 0 && account_keys_seal_secret(f, key, token, n) < 0)
		r = -EIO;
	if (r == 0)
		r = account_file_save(&d, f, err, sizeof(err));
	if (r == -ESTALE)
		log_warn("oauth: account %s: its file was set up again since "
			 "the login; the rotated refresh token is not stored",
			 name);
	else if (r < 0 && r != -EWOULDBLOCK)
		log_error("oauth: account %s: cannot store the rotated refresh "
			  "token: %s", name, err[0] ? err : err_text(r));
	/* Closing the directory releases the lock. */
	safe_file_close_dir(&d, NULL, 0);
	buf_free(&old);
	OPENSSL_cleanse(f, sizeof(*f));
	free(f);
	return r;
}

static void
pending_free(struct pending_save *p)
{
	config_unref(&p->acct);
	OPENSSL_cleanse(p->key, sizeof(p->key));
	buf_free(&p->token);
	free(p);
}

static void
retry_closed(uv_handle_t *h)
{
	free(h);
}

static void
on_retry(uv_timer_t *t)
{
	struct account_oauth *ao = t->data;
	struct pending_save **pp = &ao->saves, *p;
	uint64_t now = uv_now(ao->loop);
	int r;

	while ((p = *pp) != NULL) {
		r = save_now(p->acct, p->key, p->token.data, p->token.len);
		if (r == -EWOULDBLOCK &&
		    now - p->since_ms < ACCOUNT_OAUTH_RETRY_MAX_MS) {
			pp = &p->next;
			continue;
		}
		if (r == 0)
			log_info("oauth: account %s: the rotated refresh token "
				 "is stored", p->acct->account.name);
		else if (r == -EWOULDBLOCK)
			log_error("oauth: account %s: the state directory stayed "
				  "locked for %u s; the rotated refresh token "
				  "is kept in memory until restart",
				  p->acct->account.name,
				  ACCOUNT_OAUTH_RETRY_MAX_MS / 1000);
		*pp = p->next;
		pending_free(p);
	}
	if (ao->saves == NULL)
		uv_timer_stop(t);
}

/* Keeps a save for later: the lock is taken. */
static int
save_later(struct account_oauth *ao, const struct config *acct,
	   const uint8_t key[ACCOUNT_KEY_LEN], const char *token, size_t n)
{
	struct pending_save *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return -ENOMEM;
	buf_init_secret(&p->token, ACCOUNT_SECRET_MAX);
	if (buf_append(&p->token, token, n) < 0) {
		pending_free(p);
		return -ENOMEM;
	}
	if (ao->retry == NULL) {
		ao->retry = malloc(sizeof(*ao->retry));
		if (ao->retry == NULL) {
			pending_free(p);
			return -ENOMEM;
		}
		uv_timer_init(ao->loop, ao->retry);
		ao->retry->data = ao;
	}
	p->ao = ao;
	p->acct = config_ref(acct);
	memcpy(p->key, key, ACCOUNT_KEY_LEN);
	p->since_ms = uv_now(ao->loop);
	p->next = ao->saves;
	ao->saves = p;
	if (!uv_is_active((uv_handle_t *)ao->retry))
		uv_timer_start(ao->retry, on_retry, ACCOUNT_OAUTH_RETRY_MS,
			       ACCOUNT_OAUTH_RETRY_MS);
	return -EINPROGRESS;
}

static int
saver_save(struct oauth_saver *base, const char *token, size_t n)
{
	struct saver *s = (struct saver *)base;
	int r = save_now(s->acct, s->key, token, n);

	if (r == -EWOULDBLOCK)
		r = save_later(s->ao, s->acct, s->key, token, n);
	return r;
}

static void
saver_release(struct oauth_saver *base)
{
	struct saver *s = (struct saver *)base;

	config_unref(&s->acct);
	OPENSSL_cleanse(s->key, sizeof(s->key));
	free(s);
}

struct oauth_saver *
account_oauth_saver(struct account_oauth *ao, const struct config *acct,
		    const uint8_t key[ACCOUNT_KEY_LEN])
{
	struct saver *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base.save = saver_save;
	s->base.release = saver_release;
	s->ao = ao;
	s->acct = config_ref(acct);
	memcpy(s->key, key, ACCOUNT_KEY_LEN);
	return &s->base;
}

/* --- the registry -------------------------------------------------------- */

int
account_oauth_new(uv_loop_t *loop, struct account_oauth **ao_r)
{
	struct account_oauth *ao = calloc(1, sizeof(*ao));
	int r;

	*ao_r = NULL;
	if (ao == NULL)
		return -ENOMEM;
	ao->loop = loop;
	r = http_client_new(loop, &ao->http);
	if (r < 0) {
		free(ao);
		return r;
	}
	oauth_transport_http(&ao->tr, ao->http);
	*ao_r = ao;
	return 0;
}

bool
account_oauth_busy(const struct account_oauth *ao)
{
	const struct entry *e;

	if (ao == NULL)
		return false;
	if (ao->saves != NULL)
		return true;
	for (e = ao->entries; e != NULL; e = e->next)
		if (oauth_tokens_busy(e->tokens))
			return true;
	return false;
}

void
account_oauth_free(struct account_oauth **aop)
{
	struct account_oauth *ao = *aop;
	struct pending_save *p;
	struct entry *e;

	if (ao == NULL)
		return;
	*aop = NULL;
	while ((e = ao->entries) != NULL) {
		ao->entries = e->next;
		entry_free(e);
	}
	while ((p = ao->saves) != NULL) {
		ao->saves = p->next;
		if (save_now(p->acct, p->key, p->token.data, p->token.len) < 0)
			log_error("oauth: account %s: the rotated refresh "
				  "token could not be stored before the stop",
				  p->acct->account.name);
		pending_free(p);
	}
	if (ao->retry != NULL)
		uv_close((uv_handle_t *)ao->retry, retry_closed);
	http_client_free(&ao->http);
	free(ao);
}
