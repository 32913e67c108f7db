/* The AUTHORIZATION state: USER/PASS, AUTH PLAIN, the plaintext policy,
 * pass-through or an account (its device password checked off the loop,
 * then its upstream and secret, or for OAuth2 an access token from the
 * refresh token), the upstream login and its answer, the pause after a
 * failed login. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "accounts/account_oauth.h"
#include "accounts/account_store.h"
#include "net/tls.h"
#include "session_priv.h"
#include "util/base64.h"
#include "util/error.h"
#include "util/log.h"

/* RFC 2595 §2: where passwords may not travel in clear, say so (and CAPA
 * stops offering USER and SASL PLAIN). */
bool
pop3_login_plaintext_ok(const struct session *s)
{
	if (session_tls_active(s))
		return true;
	switch (s->cfg->listen.allow_plaintext_auth) {
	case PLAINTEXT_AUTH_ALWAYS:
		return true;
	case PLAINTEXT_AUTH_NEVER:
		return false;
	case PLAINTEXT_AUTH_LOOPBACK:
		return s->peer_loopback;
	}
	return false;
}

static bool
auth_allowed(struct session *s)
{
	if (pop3_login_plaintext_ok(s))
		return true;
	session_reply(s, "-ERR [AUTH] plaintext authentication is not allowed "
		      "here: use %s", session_stls_possible(s) ? "STLS" :
		      "a TLS connection (pop3s)");
	return false;
}

/*
 * Makes cfg (the file's configuration, or an account's view of it) and
 * tls the session's: the upstream is made from them. The session holds
 * one reference either way (a view counts on its parent).
 */
static void
login_use(struct session *s, const struct config *cfg, struct tls_ctx *tls)
{
	const struct config *old = s->cfg;
	struct tls_ctx *t = tls_ctx_ref(tls);

	s->cfg = config_ref(cfg);
	config_unref(&old);
	tls_ctx_unref(&s->tls_client);
	s->tls_client = t;
}

/* Undoes what a login attempt set up, so that the next may start clean:
 * after an account's attempt, from the file's configuration again. */
static void
login_undo(struct session *s)
{
	maildrop_free(&s->md);
	upstream_free(&s->up);
	mapstore_put(&s->srv->maps, &s->map);
	if (s->cfg->parent != NULL)
		login_use(s, s->cfg->parent,
			  account_store_root_tls(account_store_of(s->cfg)));
}

/* The upstream login with user and pass (a password, or an access
 * token), through the UID map kept under map_user (the POP3 name for
 * pass-through). */
static void
upstream_login(struct session *s, const char *user, size_t user_len,
	       const char *pass, size_t pass_len, enum upstream_cred cred,
	       const char *map_user, size_t map_user_len)
{
	const struct config *cfg = s->cfg;
	struct upstream *up = session_upstream(s);
	char err[256];

	if (up == NULL || maildrop_init(&s->md, cfg->maildrop.folders,
					cfg->maildrop.n_folders) < 0) {
		login_undo(s);
		session_reply_temp(s, "out of memory", "login");
		return;
	}
	s->map = mapstore_get(&s->srv->maps, cfg->state.dir,
			      cfg->upstream.host, cfg->upstream.port, map_user,
			      map_user_len, err, sizeof(err));
	if (s->map == NULL) {
		log_error("session=%s UID map unusable: %s", s->id, err);
		login_undo(s);
		session_reply_temp(s, "cannot open the UID map", "state directory");
		return;
	}
	if (upstream_open(up, user, user_len, pass, pass_len, cred, &s->md,
			  s->map) < 0) {
		login_undo(s);
		session_reply_temp(s, "cannot start login", "internal");
		return;
	}
	session_set_wait(s, WAIT_LOGIN);
}

/* A login refused for its credentials: -ERR [AUTH] once auth_fail_delay
 * has passed, whichever credentials they were (no hint for guessers);
 * spent_ms of it are gone already (a device password check). */
static void
login_refused(struct session *s, const char *why, uint64_t spent_ms)
{
	uint64_t delay = s->cfg->limits.auth_fail_delay * 1000ull;

	log_info("session=%s login failed user=%s: %s", s->id,
		 session_log_user(s), why);
	s->auth_failures++;
	snprintf(s->pending_reply, sizeof(s->pending_reply),
		 "-ERR [AUTH] invalid user name or password");
	s->have_user = false;
	if (delay > spent_ms) {
		session_delay(s, delay - spent_ms);
		return;
	}
	pop3_login_delay_done(s);
}

/* The account's upstream (s->cfg is its view), with its secret. */
static void
account_upstream_login(struct session *s, const char *secret, size_t len,
		       enum upstream_cred cred)
{
	const struct config *acct = s->cfg;
	char map_user[ACCOUNT_STORE_MAP_USER_MAX];
	size_t n;

	n = account_store_map_user(acct, map_user, sizeof(map_user));
	if (n == 0) {
		login_undo(s);
		session_reply_temp(s, "cannot open the UID map", "name");
		return;
	}
	upstream_login(s, acct->account.upstream_user,
		       strlen(acct->account.upstream_user), secret, len, cred,
		       map_user, n);
}

/* The device password opened the account: its upstream, with its
 * secret. */
static void
account_login(struct session *s, const struct config *acct,
	      const struct buf *secret)
{
	struct account_store *st = account_store_of(s->cfg);

	login_use(s, acct, account_store_tls(st, acct));
	account_upstream_login(s, secret->data, secret->len,
			       UPSTREAM_CRED_PASSWORD);
}

/* --- OAuth2 accounts ----------------------------------------------------- */

/*
 * An OAuth2 login between the device check and the upstream's answer:
 * the refresh token the file held and the account key (a second try and
 * the saver of a rotation need them), the access token being tried. All
 * secret; wiped when the login ends either way.
 */
struct oauth_login {
	struct oauth_wait *wait;	/* WAIT_TOKEN's */
	struct buf refresh;
	struct buf bearer;
	uint8_t key[ACCOUNT_KEY_LEN];
	unsigned requests;		/* the cache's count when asked */
	bool fresh;			/* the token came from a refresh */
	bool retried;
};

static void
oauth_end(struct session *s)
{
	struct oauth_login *o = s->oauth;

	if (o == NULL)
		return;
	s->oauth = NULL;
	oauth_wait_cancel(&o->wait);
	buf_free(&o->refresh);
	buf_free(&o->bearer);
	OPENSSL_cleanse(o->key, sizeof(o->key));
	free(o);
}

static struct oauth_tokens *
oauth_tokens_of(struct session *s)
{
	return account_oauth_tokens(s->srv->oauth, s->cfg);
}

static void on_token(void *ctx, int err, const char *token, size_t len);

/* Asks the account's cache for an access token (s->cfg is the
 * account's view). */
static void
oauth_ask(struct session *s)
{
	struct oauth_login *o = s->oauth;
	struct oauth_tokens *t = oauth_tokens_of(s);
	struct oauth_saver *saver;

	if (t == NULL) {
		oauth_end(s);
		login_undo(s);
		session_reply_temp(s, "out of memory", "login");
		return;
	}
	saver = account_oauth_saver(s->srv->oauth, s->cfg, o->key);
	o->requests = oauth_tokens_requests(t);
	if (oauth_tokens_get(t, o->refresh.data, o->refresh.len, saver,
			     on_token, s, &o->wait) < 0) {
		log_error("session=%s account=%s: the stored refresh token is "
			  "unusable (popbridge authorize %s)", s->id,
			  s->cfg->account.name, s->cfg->account.name);
		oauth_end(s);
		login_undo(s);
		session_reply_temp(s, "account unavailable", "no usable "
				   "refresh token");
		return;
	}
	session_set_wait(s, WAIT_TOKEN);
}

/* The device password opened an OAuth2 account: secret is its refresh
 * token, key the account key. */
static void
oauth_login(struct session *s, const struct config *acct,
	    const struct buf *secret, const uint8_t *key)
{
	struct account_store *st = account_store_of(s->cfg);
	struct oauth_login *o;

	login_use(s, acct, account_store_tls(st, acct));
	o = calloc(1, sizeof(*o));
	if (o == NULL || key == NULL ||
	    (s->srv->oauth == NULL &&
	     account_oauth_new(s->srv->loop, &s->srv->oauth) < 0)) {
		free(o);
		login_undo(s);
		session_reply_temp(s, "cannot start the OAuth2 login",
				   "internal");
		return;
	}
	s->oauth = o;
	buf_init_secret(&o->refresh, ACCOUNT_SECRET_MAX);
	buf_init_secret(&o->bearer, OAUTH_TOKEN_MAX);
	memcpy(o->key, key, ACCOUNT_KEY_LEN);
	if (buf_append(&o->refresh, secret->data, secret->len) < 0) {
		oauth_end(s);
		login_undo(s);
		session_reply_temp(s, "out of memory", "login");
		return;
	}
	oauth_ask(s);
}

/* Why there is no token, for the POP3 client. -EACCES (the grant is
 * refused) is a login failure: the cache logged what to do, once. */
static void
oauth_failed(struct session *s, int err)
{
	const char *name = s->cfg->account.name;
	char why[160];

	oauth_end(s);
	login_undo(s);
	switch (err) {
	case -EACCES:
		snprintf(why, sizeof(why), "account %s: its OAuth2 grant is "
			 "refused by the provider", name);
		login_refused(s, why, 0);
		return;
	case -EPERM:
		session_reply(s, "-ERR [SYS/PERM] account %s is not set up "
			      "right at its OAuth2 provider (see the log)",
			      name);
		return;
	case -EAGAIN:
		session_reply(s, TEMP_FAIL "the mail provider's sign-in is "
			      "failing" WAIT_HINT);
		return;
	default:
		log_info("session=%s account=%s: no access token: %s", s->id,
			 name, err_text(err));
		session_reply_temp(s, "the mail provider's sign-in is "
				   "unavailable", err_text(err));
		return;
	}
}

static void
on_token(void *ctx, int err, const char *token, size_t len)
{
	struct session *s = ctx;
	struct oauth_login *o = s->oauth;
	struct oauth_tokens *t = oauth_tokens_of(s);

	o->wait = NULL;
	session_set_wait(s, WAIT_NONE);
	if (err == 0) {
		buf_wipe(&o->bearer);
		err = buf_append(&o->bearer, token, len);
	}
	if (err < 0) {
		oauth_failed(s, err);
		session_resume(s);
		return;
	}
	o->fresh = t == NULL || oauth_tokens_requests(t) != o->requests;
	account_upstream_login(s, o->bearer.data, o->bearer.len,
			       UPSTREAM_CRED_BEARER);
	session_resume(s);
}

/*
 * The IMAP server refused the access token. A token from the cache may
 * have been revoked early: it is forgotten and the login tries once more
 * with a new one. A fresh one refused is an answer: -ERR [AUTH], with the
 * server's reason in the log.
 */
static void
oauth_refused(struct session *s, const char *why)
{
	struct oauth_login *o = s->oauth;
	struct oauth_tokens *t = oauth_tokens_of(s);
	const struct config *acct = config_ref(s->cfg);
	struct tls_ctx *tls = tls_ctx_ref(s->tls_client);
	char line[320];
	bool again = !o->fresh && !o->retried;

	if (t != NULL)
		oauth_tokens_reject(t, o->bearer.data, o->bearer.len);
	buf_wipe(&o->bearer);
	login_undo(s);
	if (again) {
		log_info("session=%s account=%s: the IMAP server refused the "
			 "cached access token (%s); getting a new one", s->id,
			 acct->account.name, why);
		o->retried = true;
		login_use(s, acct, tls);
		oauth_ask(s);
	} else {
		snprintf(line, sizeof(line), "account %s: the IMAP server "
			 "refused the OAuth2 token: %s", acct->account.name,
			 why);
		oauth_end(s);
		login_refused(s, line, 0);
	}
	config_unref(&acct);
	tls_ctx_unref(&tls);
}

/* A refusal is timed from PASS, so that the answer takes as long for an
 * unknown name as for an account with several devices (where the delay
 * is longer than the checks). */
static void
device_checked(void *ctx, enum account_verdict v, struct buf *secret,
	       const uint8_t *key, uint64_t took_ms)
{
	struct session *s = ctx;
	/* The name the check was for: s->user is not touched meanwhile (no
	 * command runs while the session waits). */
	const struct config *acct = config_account_find(s->cfg, s->user.data,
							s->user.len);
	const char *name = acct != NULL ? acct->account.name : "-";
	bool oauth = acct != NULL && acct->account.auth == ACCOUNT_AUTH_OAUTH2;
	char why[160];

	s->device_job = NULL;
	session_set_wait(s, WAIT_NONE);
	/* Cannot happen: a dummy check never unlocks. */
	if (v == ACCOUNT_UNLOCKED && acct == NULL)
		v = ACCOUNT_DENIED;
	switch (v) {
	case ACCOUNT_UNLOCKED:
		if (acct->account.auth == ACCOUNT_AUTH_OAUTH2)
			oauth_login(s, acct, secret, key);
		else
			account_login(s, acct, secret);
		break;
	case ACCOUNT_DENIED:
		snprintf(why, sizeof(why), "account %s: wrong device password",
			 name);
		login_refused(s, why, took_ms);
		break;
	case ACCOUNT_NO_DEVICE:
		if (acct != NULL)
			snprintf(why, sizeof(why), "account %s has no device "
				 "password yet (popbridge %s %s%s)", name,
				 oauth ? "authorize" : "passwd", name,
				 oauth ? "" : " --device LABEL");
		else
			snprintf(why, sizeof(why), "no such account "
				 "(unknown_users = refuse)");
		login_refused(s, why, took_ms);
		break;
	case ACCOUNT_NO_SECRET:
		log_warn("session=%s account=%s: device password right, but %s "
			 "(popbridge %s %s%s)", s->id, name,
			 oauth ? "the account is not authorized yet"
			       : "no upstream secret is stored",
			 oauth ? "authorize" : "passwd", name,
			 oauth ? "" : " --upstream");
		session_reply_temp(s, "account not ready",
				   oauth ? "not authorized at its provider yet"
					 : "no upstream password stored");
		break;
	case ACCOUNT_DAMAGED:
		log_error("session=%s account=%s: a device's wrapped key does "
			  "not open: the account file was altered", s->id,
			  name);
		session_reply_temp(s, "account unavailable", "damaged");
		break;
	case ACCOUNT_FAILED:
		log_error("session=%s account=%s: the device password check "
			  "failed", s->id, name);
		session_reply_temp(s, "account unavailable", "internal");
		break;
	}
	session_resume(s);
}

/*
 * A name that is an account's (or any name, under unknown_users =
 * refuse): the device password is checked here, off the loop, and never
 * goes upstream. An unknown name costs the same check as a wrong
 * password, so the time to answer does not tell which names exist.
 */
static void
device_check(struct session *s, const struct config *acct, const char *pass,
	     size_t pass_len)
{
	struct account_store *st = account_store_of(s->cfg);
	const struct account_file *f = NULL;
	char err[320];
	int r;

	if (acct != NULL) {
		if (st == NULL) {
			log_error("session=%s account=%s: accounts are not set "
				  "up", s->id, acct->account.name);
			session_reply_temp(s, "account unavailable", "internal");
			return;
		}
		r = account_store_file(st, acct, &f, err, sizeof(err));
		if (r < 0 && r != -ENOENT) {
			log_error("session=%s account=%s unusable: %s", s->id,
				  acct->account.name, err);
			session_reply_temp(s, "account unavailable",
					   r == -EBADMSG ? "its file is damaged"
							 : "its file is unreadable");
			return;
		}
		if (f->n_devices == 0)
			f = NULL;
	}
	if (account_login_start(&s->srv->logins, s->srv->loop, f, pass,
				pass_len, device_checked, s,
				&s->device_job) < 0) {
		session_reply_temp(s, "out of memory", "login");
		return;
	}
	session_set_wait(s, WAIT_DEVICE);
}

static void
start_login(struct session *s, const char *user, size_t user_len,
	    const char *pass, size_t pass_len)
{
	const struct config *acct = config_account_find(s->cfg, user,
							user_len);

	if (user != s->user.data) {	/* AUTH PLAIN: the name is new */
		buf_reset(&s->user);
		buf_append(&s->user, user, user_len);
	}
	s->have_user = true;
	/* An account's name never passes through, whatever the setting. */
	if (acct == NULL && config_root(s->cfg)->accounts.unknown_users ==
				    UNKNOWN_USERS_PASSTHROUGH) {
		upstream_login(s, user, user_len, pass, pass_len,
			       UPSTREAM_CRED_PASSWORD, user, user_len);
		return;
	}
	device_check(s, acct, pass, pass_len);
}

void
pop3_login_abort(struct session *s)
{
	account_login_cancel(&s->device_job);
	oauth_end(s);
}

void
pop3_login_user(struct session *s, const struct pop3_cmd *cmd)
{
	if (!auth_allowed(s))
		return;
	buf_reset(&s->user);
	if (buf_append(&s->user, cmd->rest, cmd->rest_len) < 0) {
		session_reply(s, "-ERR user name too long");
		return;
	}
	s->have_user = true;
	session_reply(s, "+OK send your password");
}

void
pop3_login_pass(struct session *s, const struct pop3_cmd *cmd)
{
	if (!auth_allowed(s))
		return;
	if (!s->have_user) {
		session_reply(s, "-ERR send USER first");
		return;
	}
	start_login(s, s->user.data, s->user.len, cmd->rest, cmd->rest_len);
}

static void
auth_plain(struct session *s, const char *b64, size_t len)
{
	struct buf raw;
	const char *authz, *user, *pass, *end;

	buf_init_secret(&raw, POP3_AUTH_LINE_MAX);
	if (base64_decode(&raw, b64, len) < 0) {
		session_reply(s, "-ERR [AUTH] malformed AUTH PLAIN response");
		goto out;
	}
	/* RFC 4616: [authzid] NUL authcid NUL passwd */
	authz = raw.data;
	end = raw.data + raw.len;
	user = raw.len ? memchr(authz, '\0', raw.len) : NULL;
	pass = user ? memchr(user + 1, '\0', (size_t)(end - user - 1)) : NULL;
	if (user == NULL || pass == NULL) {
		session_reply(s, "-ERR [AUTH] malformed AUTH PLAIN response");
		goto out;
	}
	user++;
	pass++;
	if (user - authz > 1 && ((size_t)(user - authz - 1) !=
				 (size_t)(pass - user - 1) ||
				 memcmp(authz, user, (size_t)(pass - user - 1)))) {
		session_reply(s, "-ERR [AUTH] acting as another user is not "
			      "supported");
		goto out;
	}
	start_login(s, user, (size_t)(pass - user - 1), pass,
		    (size_t)(end - pass));
out:
	buf_wipe(&raw);
	buf_free(&raw);
}

void
pop3_login_auth(struct session *s, const struct pop3_cmd *cmd)
{
	if (cmd->nargs == 0) {
		/* Old-style discovery (fetchmail, neomutt). */
		session_reply(s, "+OK SASL mechanisms follow");
		if (pop3_login_plaintext_ok(s))
			session_reply(s, "PLAIN");
		session_reply(s, ".");
		return;
	}
	if (!auth_allowed(s))
		return;
	if (cmd->arg_len[0] != 5 || strncasecmp(cmd->arg[0], "PLAIN", 5) != 0) {
		session_reply(s, "-ERR unsupported SASL mechanism");
		return;
	}
	if (cmd->nargs == 2) {
		/* RFC 5034 §4: "=" is an empty initial response. */
		if (cmd->arg_len[1] == 1 && cmd->arg[1][0] == '=')
			auth_plain(s, "", 0);
		else
			auth_plain(s, cmd->arg[1], cmd->arg_len[1]);
		return;
	}
	session_reply(s, "+ ");
	session_set_wait(s, WAIT_AUTH_LINE);
	pop3_line_reader_init(&s->reader, POP3_AUTH_LINE_MAX);
}

/* The continuation line of AUTH PLAIN, handled before the command table. */
void
pop3_login_line(struct session *s, const char *line, size_t len)
{
	session_set_wait(s, WAIT_NONE);
	pop3_line_reader_init(&s->reader, POP3_LINE_MAX);
	if (len == 1 && line[0] == '*') {
		session_reply(s, "-ERR AUTH cancelled");
		return;
	}
	auth_plain(s, line, len);
}

void
pop3_login_apop(struct session *s, const struct pop3_cmd *cmd)
{
	(void)cmd;
	session_reply(s, "-ERR APOP is not supported: use USER/PASS or AUTH "
		      "PLAIN");
}

void
pop3_login_done(struct session *s, enum upstream_status st, const char *why)
{
	size_t count;
	uint64_t octets;

	/* An account's view: what it is for the log (it stays valid: the
	 * session holds its configuration). */
	const char *account = s->cfg->account.name;

	if (st == UPSTREAM_AUTH && s->oauth != NULL) {
		oauth_refused(s, why);
		return;
	}
	oauth_end(s);
	if (st == UPSTREAM_OK) {
		/* The baseline and new UIDLs must survive a crash now. */
		mapstore_save(&s->srv->maps, s->map);
		session_set_state(s, SESSION_TRANSACTION);
		maildrop_stat(&s->md, &count, &octets);
		s->n_listed = (unsigned)count;
		log_info("session=%s login user=%s%s%s messages=%zu "
			 "octets=%llu", s->id, session_log_user(s),
			 account != NULL ? " account=" : "",
			 account != NULL ? account : "", count,
			 (unsigned long long)octets);
		session_reply(s, "+OK maildrop has %zu messages (%llu octets)",
			      count, (unsigned long long)octets);
		return;
	}
	login_undo(s);
	if (st == UPSTREAM_AUTH && account == NULL) {
		login_refused(s, why, 0);
		return;
	}
	if (st == UPSTREAM_AUTH) {
		/* The device proved itself; the stored secret is stale. */
		log_warn("session=%s account=%s: the upstream refused the "
			 "stored secret (%s); store the current one: popbridge "
			 "passwd %s --upstream", s->id, account, why, account);
		snprintf(s->pending_reply, sizeof(s->pending_reply),
			 TEMP_FAIL "mail server refused the stored password"
			 WAIT_HINT);
	} else {
		log_warn("session=%s upstream unavailable: %s", s->id, why);
		snprintf(s->pending_reply, sizeof(s->pending_reply),
			 TEMP_FAIL "mail server unavailable" WAIT_HINT);
	}
	s->have_user = false;
	pop3_login_delay_done(s);
}

void
pop3_login_delay_done(struct session *s)
{
	session_set_wait(s, WAIT_NONE);
	session_reply(s, "%s", s->pending_reply);
	if (s->auth_failures >= SESSION_AUTH_TRIES)
		session_end(s, "too many failed logins");
}
