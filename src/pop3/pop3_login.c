/* The AUTHORIZATION state: USER/PASS, AUTH PLAIN, the plaintext policy,
 * the upstream login and its answer, the pause after a failed login. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "session_priv.h"
#include "util/base64.h"
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

/* Undoes what a login attempt set up, so that the next may start clean. */
static void
login_undo(struct session *s)
{
	maildrop_free(&s->md);
	upstream_free(&s->up);
	mapstore_put(&s->srv->maps, &s->map);
}

static void
start_login(struct session *s, const char *user, size_t user_len,
	    const char *pass, size_t pass_len)
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
			      cfg->upstream.host, cfg->upstream.port, user,
			      user_len, err, sizeof(err));
	if (s->map == NULL) {
		log_error("session=%s UID map unusable: %s", s->id, err);
		login_undo(s);
		session_reply_temp(s, "cannot open the UID map", "state directory");
		return;
	}
	if (user != s->user.data) {	/* AUTH PLAIN: the name is new */
		buf_reset(&s->user);
		buf_append(&s->user, user, user_len);
	}
	s->have_user = true;
	if (upstream_open(up, user, user_len, pass, pass_len, &s->md,
			  s->map) < 0) {
		login_undo(s);
		session_reply_temp(s, "cannot start login", "internal");
		return;
	}
	session_set_wait(s, WAIT_LOGIN);
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

	if (st == UPSTREAM_OK) {
		/* The baseline and new UIDLs must survive a crash now. */
		mapstore_save(&s->srv->maps, s->map);
		session_set_state(s, SESSION_TRANSACTION);
		maildrop_stat(&s->md, &count, &octets);
		s->n_listed = (unsigned)count;
		log_info("session=%s login user=%s messages=%zu octets=%llu",
			 s->id, session_log_user(s), count,
			 (unsigned long long)octets);
		session_reply(s, "+OK maildrop has %zu messages (%llu octets)",
			      count, (unsigned long long)octets);
		return;
	}
	login_undo(s);
	if (st == UPSTREAM_AUTH) {
		log_info("session=%s login failed user=%s: %s", s->id,
			 session_log_user(s), why);
		s->auth_failures++;
		snprintf(s->pending_reply, sizeof(s->pending_reply),
			 "-ERR [AUTH] invalid user name or password");
	} else {
		log_warn("session=%s upstream unavailable: %s", s->id, why);
		snprintf(s->pending_reply, sizeof(s->pending_reply),
			 TEMP_FAIL "mail server unavailable" WAIT_HINT);
	}
	s->have_user = false;
	if (st == UPSTREAM_AUTH && s->cfg->limits.auth_fail_delay > 0) {
		session_delay(s, s->cfg->limits.auth_fail_delay * 1000u);
		return;
	}
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
