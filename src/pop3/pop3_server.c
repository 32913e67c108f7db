#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "util/base64.h"
#include "util/log.h"
#include "pop3/session.h"
#include "net/tls.h"
#include "daemon/version.h"

/* RFC 3206 response codes, and the word fetchmail looks for in "try again
 * later" errors (it ignores [SYS/TEMP]). */
#define TEMP_FAIL "-ERR [SYS/TEMP] "
#define WAIT_HINT ", please wait and try again later"

enum {
	IN_AUTH = 1 << SESSION_AUTHORIZATION,
	IN_TRANS = 1 << SESSION_TRANSACTION,
};

typedef void cmd_handler(struct session *s, const struct pop3_cmd *cmd);

struct pop3_command {
	enum pop3_verb verb;
	unsigned states;
	cmd_handler *handler;
};

static void
reply_temp(struct session *s, const char *what, const char *why)
{
	session_reply(s, TEMP_FAIL "%s (%.120s)" WAIT_HINT, what, why);
}

/* --- AUTHORIZATION ------------------------------------------------------ */

static bool
tls_active(const struct session *s)
{
	return s->client != NULL && conn_tls_active(s->client);
}

static bool
stls_possible(const struct session *s)
{
	return s->srv->tls_server != NULL && !tls_active(s) &&
	       s->state == SESSION_AUTHORIZATION;
}

/* RFC 2595 §2: where passwords may not travel in clear, say so (and CAPA
 * stops offering USER and SASL PLAIN). */
static bool
plaintext_auth_ok(const struct session *s)
{
	if (tls_active(s))
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
	if (plaintext_auth_ok(s))
		return true;
	session_reply(s, "-ERR [AUTH] plaintext authentication is not allowed "
		      "here: use %s", stls_possible(s) ? "STLS" :
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
		reply_temp(s, "out of memory", "login");
		return;
	}
	s->map = mapstore_get(&s->srv->maps, cfg->state.dir,
			      cfg->upstream.host, cfg->upstream.port, user,
			      user_len, err, sizeof(err));
	if (s->map == NULL) {
		log_error("session=%s UID map unusable: %s", s->id, err);
		login_undo(s);
		reply_temp(s, "cannot open the UID map", "state directory");
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
		reply_temp(s, "cannot start login", "internal");
		return;
	}
	session_set_wait(s, WAIT_LOGIN);
}

static void
cmd_user(struct session *s, const struct pop3_cmd *cmd)
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

static void
cmd_pass(struct session *s, const struct pop3_cmd *cmd)
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

static void
cmd_auth(struct session *s, const struct pop3_cmd *cmd)
{
	if (cmd->nargs == 0) {
		/* Old-style discovery (fetchmail, neomutt). */
		session_reply(s, "+OK SASL mechanisms follow");
		if (plaintext_auth_ok(s))
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
static void
auth_line(struct session *s, const char *line, size_t len)
{
	session_set_wait(s, WAIT_NONE);
	pop3_line_reader_init(&s->reader, POP3_LINE_MAX);
	if (len == 1 && line[0] == '*') {
		session_reply(s, "-ERR AUTH cancelled");
		return;
	}
	auth_plain(s, line, len);
}

static void
cmd_apop(struct session *s, const struct pop3_cmd *cmd)
{
	(void)cmd;
	session_reply(s, "-ERR APOP is not supported: use USER/PASS or AUTH "
		      "PLAIN");
}

static void
cmd_stls(struct session *s, const struct pop3_cmd *cmd)
{
	struct tls *t;

	(void)cmd;
	if (!stls_possible(s)) {
		session_reply(s, tls_active(s) ? "-ERR TLS is already active" :
			      "-ERR STLS is not available");
		return;
	}
	t = tls_new(s->srv->tls_server, NULL);
	if (t == NULL) {
		session_reply(s, "-ERR [SYS/TEMP] cannot start TLS" WAIT_HINT);
		return;
	}
	session_reply(s, "+OK Begin TLS negotiation");
	/* RFC 2595 §4 and CVE-2011-0411: whatever the client sent after STLS
	 * in clear is dropped, and so is a USER given before. */
	buf_wipe(&s->in);
	buf_wipe(&s->user);
	s->have_user = false;
	pop3_line_reader_init(&s->reader, POP3_LINE_MAX);
	if (conn_start_tls(s->client, t) < 0)
		session_end(s, "cannot start TLS");
}

static void
cmd_capa(struct session *s, const struct pop3_cmd *cmd)
{
	(void)cmd;
	session_reply(s, "+OK capability list follows");
	if (s->state == SESSION_AUTHORIZATION && plaintext_auth_ok(s)) {
		session_reply(s, "USER");
		session_reply(s, "SASL PLAIN");
	}
	if (stls_possible(s))
		session_reply(s, "STLS");
	session_reply(s, "TOP");
	session_reply(s, "UIDL");
	session_reply(s, "PIPELINING");
	session_reply(s, "RESP-CODES");
	session_reply(s, "AUTH-RESP-CODE");
	session_reply(s, "EXPIRE NEVER");
	session_reply(s, "IMPLEMENTATION " POPBRIDGE_NAME "-" POPBRIDGE_VERSION);
	session_reply(s, ".");
}

/* Whether QUIT has anything to tell the server. */
static bool
update_needed(const struct session *s)
{
	const struct config *cfg = s->cfg;
	size_t i;

	if (s->md.n_deleted > 0 && cfg->maildrop.on_delete != ON_DELETE_KEEP)
		return true;
	if (!cfg->maildrop.mark_seen)
		return false;
	for (i = 0; i < s->md.count; i++) {
		if (s->md.msgs[i].retrieved && !s->md.msgs[i].deleted)
			return true;
	}
	return false;
}

static void
cmd_quit(struct session *s, const struct pop3_cmd *cmd)
{
	(void)cmd;
	if (s->state == SESSION_AUTHORIZATION) {
		session_reply(s, "+OK " POPBRIDGE_NAME " signing off");
		session_end(s, "quit");
		return;
	}
	session_set_state(s, SESSION_UPDATE);
	if (!update_needed(s)) {
		session_reply(s, "+OK " POPBRIDGE_NAME " signing off");
		session_end(s, "quit");
		return;
	}
	session_set_wait(s, WAIT_UPDATE);
	if (s->up == NULL || upstream_update(s->up) < 0) {
		session_set_wait(s, WAIT_NONE);
		session_reply(s, TEMP_FAIL "some deleted messages not removed"
			      WAIT_HINT);
		session_end(s, "quit, upstream lost");
	}
}

/* --- TRANSACTION -------------------------------------------------------- */

/* Parses a message number and finds the message; replies -ERR if none. */
static struct maildrop_msg *
message_arg(struct session *s, const char *arg, size_t len, uint32_t *n_r)
{
	struct maildrop_msg *m;
	uint32_t n;

	if (pop3_parse_number(arg, len, &n) < 0) {
		session_reply(s, "-ERR invalid message number");
		return NULL;
	}
	m = maildrop_get(&s->md, n);
	if (m == NULL) {
		session_reply(s, n >= 1 && n <= s->md.count ?
			      "-ERR message %u already deleted" :
			      "-ERR no such message %u", (unsigned)n);
		return NULL;
	}
	*n_r = n;
	return m;
}

static void
cmd_stat(struct session *s, const struct pop3_cmd *cmd)
{
	size_t count;
	uint64_t octets;

	(void)cmd;
	maildrop_stat(&s->md, &count, &octets);
	session_reply(s, "+OK %zu %llu", count, (unsigned long long)octets);
}

static void
listing_line(struct session *s, uint32_t n, const struct maildrop_msg *m,
	     bool uidl, bool single)
{
	char uid[MAILDROP_UIDL_MAX + 1];
	const char *ok = single ? "+OK " : "";

	if (uidl) {
		maildrop_uidl(&s->md, m, uid);
		session_reply(s, "%s%u %s", ok, (unsigned)n, uid);
	} else {
		session_reply(s, "%s%u %llu", ok, (unsigned)n,
			      (unsigned long long)m->size);
	}
}

/* One line of a multi-line LIST or UIDL, formatted by hand straight into
 * the output queue: a 10,000-message listing is on every login's path. */
static void
listing_entry(struct session *s, uint32_t n, const struct maildrop_msg *m)
{
	char line[16 + MAILDROP_UIDL_MAX + 4], *p;

	p = buf_put_u64(line, n);
	*p++ = ' ';
	if (s->listing_uidl) {
		maildrop_uidl(&s->md, m, p);
		p += strlen(p);
	} else {
		p = buf_put_u64(p, m->size);
	}
	*p++ = '\r';
	*p++ = '\n';
	if (conn_write(s->client, line, (size_t)(p - line)) == 0)
		s->bytes_out += (uint64_t)(p - line);
}

void
pop3_server_listing(struct session *s)
{
	while (s->listing_next < s->md.count) {
		uint32_t i = s->listing_next++;

		if (!s->md.msgs[i].deleted)
			listing_entry(s, i + 1, &s->md.msgs[i]);
		if (conn_pending(s->client) >= SESSION_OUT_HIGH) {
			session_set_wait(s, WAIT_LISTING);
			conn_want_drained(s->client);
			conn_flush(s->client);
			return;
		}
	}
	session_reply(s, ".");
	session_set_wait(s, WAIT_NONE);
}

static void
list_or_uidl(struct session *s, const struct pop3_cmd *cmd, bool uidl)
{
	struct maildrop_msg *m;
	uint32_t n;

	if (cmd->nargs == 1) {
		m = message_arg(s, cmd->arg[0], cmd->arg_len[0], &n);
		if (m != NULL)
			listing_line(s, n, m, uidl, true);
		return;
	}
	if (uidl) {
		session_reply(s, "+OK unique-id listing follows");
	} else {
		size_t count;
		uint64_t octets;

		maildrop_stat(&s->md, &count, &octets);
		session_reply(s, "+OK %zu messages (%llu octets)", count,
			      (unsigned long long)octets);
	}
	s->listing_uidl = uidl;
	s->listing_next = 0;
	pop3_server_listing(s);
}

static void
cmd_list(struct session *s, const struct pop3_cmd *cmd)
{
	list_or_uidl(s, cmd, false);
}

static void
cmd_uidl(struct session *s, const struct pop3_cmd *cmd)
{
	list_or_uidl(s, cmd, true);
}

static bool
upstream_usable(struct session *s)
{
	if (s->up != NULL && upstream_alive(s->up))
		return true;
	session_reply(s, TEMP_FAIL "connection to the mail server lost"
		      WAIT_HINT);
	session_end(s, "upstream lost");
	return false;
}

static void
start_fetch(struct session *s, enum session_wait wait,
	    enum upstream_part part, uint64_t offset, uint64_t length)
{
	if (upstream_fetch(s->up, s->msg, part, offset, length) < 0) {
		session_reply(s, TEMP_FAIL "cannot fetch the message" WAIT_HINT);
		session_end(s, "upstream lost");
		return;
	}
	session_set_wait(s, wait);
}

static void
xfer_begin(struct session *s)
{
	s->xfer_started = false;
	dotstuff_init(&s->ds);
	if (s->hasher == NULL)
		s->hasher = uidmap_hasher_new(false);
	else
		uidmap_hasher_reset(s->hasher);
}

static void
cmd_retr(struct session *s, const struct pop3_cmd *cmd)
{
	s->msg = message_arg(s, cmd->arg[0], cmd->arg_len[0], &s->msg_n);
	if (s->msg == NULL || !upstream_usable(s))
		return;
	xfer_begin(s);
	start_fetch(s, WAIT_RETR, UPSTREAM_WHOLE, 0, 0);
}

static void
cmd_top(struct session *s, const struct pop3_cmd *cmd)
{
	uint32_t lines;

	s->msg = message_arg(s, cmd->arg[0], cmd->arg_len[0], &s->msg_n);
	if (s->msg == NULL)
		return;
	if (pop3_parse_number(cmd->arg[1], cmd->arg_len[1], &lines) < 0) {
		session_reply(s, "-ERR invalid number of lines");
		return;
	}
	if (!upstream_usable(s))
		return;
	xfer_begin(s);
	s->top_lines = lines;
	s->top_offset = 0;
	s->top_chunk = SESSION_TOP_CHUNK_MIN;
	start_fetch(s, WAIT_TOP_HEADER, UPSTREAM_HEADER, 0, 0);
}

static void
cmd_dele(struct session *s, const struct pop3_cmd *cmd)
{
	uint32_t n;

	if (message_arg(s, cmd->arg[0], cmd->arg_len[0], &n) == NULL)
		return;
	maildrop_delete(&s->md, n);
	session_reply(s, "+OK message %u deleted", (unsigned)n);
}

static void
cmd_noop(struct session *s, const struct pop3_cmd *cmd)
{
	(void)cmd;
	session_reply(s, "+OK");
}

static void
cmd_rset(struct session *s, const struct pop3_cmd *cmd)
{
	size_t count;
	uint64_t octets;

	(void)cmd;
	maildrop_reset(&s->md);
	maildrop_stat(&s->md, &count, &octets);
	session_reply(s, "+OK maildrop has %zu messages (%llu octets)", count,
		      (unsigned long long)octets);
}

/* RFC 1460 (dropped by RFC 1939, still sent by Mutt and NeoMutt with
 * pop_last): refusing it makes them download everything again. */
static void
cmd_last(struct session *s, const struct pop3_cmd *cmd)
{
	(void)cmd;
	session_reply(s, "+OK %u", (unsigned)maildrop_last(&s->md));
}

static const struct pop3_command commands[] = {
	{ POP3_USER, IN_AUTH, cmd_user },
	{ POP3_PASS, IN_AUTH, cmd_pass },
	{ POP3_APOP, IN_AUTH, cmd_apop },
	{ POP3_AUTH, IN_AUTH, cmd_auth },
	{ POP3_STLS, IN_AUTH, cmd_stls },
	{ POP3_CAPA, IN_AUTH | IN_TRANS, cmd_capa },
	{ POP3_QUIT, IN_AUTH | IN_TRANS, cmd_quit },
	{ POP3_STAT, IN_TRANS, cmd_stat },
	{ POP3_LIST, IN_TRANS, cmd_list },
	{ POP3_RETR, IN_TRANS, cmd_retr },
	{ POP3_DELE, IN_TRANS, cmd_dele },
	{ POP3_NOOP, IN_TRANS, cmd_noop },
	{ POP3_RSET, IN_TRANS, cmd_rset },
	{ POP3_TOP, IN_TRANS, cmd_top },
	{ POP3_UIDL, IN_TRANS, cmd_uidl },
	{ POP3_LAST, IN_TRANS, cmd_last },
};

static void
log_command(struct session *s, const struct pop3_cmd *cmd, const char *line,
	    size_t len)
{
	if (!log_enabled(LOG_DEBUG))
		return;
	if (cmd->verb == POP3_PASS || cmd->verb == POP3_AUTH ||
	    cmd->verb == POP3_USER)
		log_debug("session=%s pop3< %.4s (arguments not logged)",
			  s->id, line);
	else
		log_debug("session=%s pop3< %.*s", s->id,
			  (int)(len > 80 ? 80 : len), line);
}

void
pop3_server_dispatch(struct session *s, const char *line, size_t len)
{
	struct pop3_cmd cmd;
	const char *why;
	size_t i;

	if (s->wait == WAIT_AUTH_LINE) {
		log_debug("session=%s pop3< (AUTH response not logged)", s->id);
		auth_line(s, line, len);
		return;
	}
	if (pop3_parse_command(line, len, &cmd, &why) < 0) {
		log_command(s, &cmd, line, len);
		session_reply(s, "-ERR %s", why);
		return;
	}
	log_command(s, &cmd, line, len);
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (commands[i].verb != cmd.verb)
			continue;
		if (!(commands[i].states & (1u << s->state))) {
			session_reply(s, "-ERR command not valid in this state");
			return;
		}
		commands[i].handler(s, &cmd);
		return;
	}
	session_reply(s, "-ERR unknown command");
}

/* --- upstream completions ----------------------------------------------- */

static void
login_done(struct session *s, enum upstream_status st, const char *why)
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
	pop3_server_delay_done(s);
}

void
pop3_server_delay_done(struct session *s)
{
	session_set_wait(s, WAIT_NONE);
	session_reply(s, "%s", s->pending_reply);
	if (s->auth_failures >= SESSION_AUTH_TRIES)
		session_end(s, "too many failed logins");
}

/* Sends the +OK line once, when the first byte is known to exist. */
static void
xfer_start(struct session *s)
{
	if (s->xfer_started)
		return;
	s->xfer_started = true;
	if (s->wait == WAIT_RETR)
		session_reply(s, "+OK %llu octets",
			      (unsigned long long)s->msg->size);
	else
		session_reply(s, "+OK top of message follows");
}

/* The stuffed form of p[0..n) to the client: straight from p when the
 * changes fit SESSION_XFER_SEGS segments (all mail but runs of bare LFs),
 * the rest copied into the output queue. */
static int
xfer_send(struct session *s, const char *p, size_t n)
{
	struct iovec v[SESSION_XFER_SEGS];
	struct buf *out;
	size_t used, cnt, k, before;
	long r;

	used = dotstuff_feed_iov(&s->ds, p, n, v, SESSION_XFER_SEGS, &cnt);
	for (k = 0; k < cnt; k++)
		s->bytes_out += v[k].iov_len;
	if (conn_writev(s->client, v, cnt) < 0)
		return -1;
	if (used == n || s->ds.limit_reached)
		return 0;
	out = conn_outbuf(s->client);
	before = out->len;
	/* One allocation for the stuffed rest instead of doublings. */
	buf_reserve(out, (n - used) + (n - used) / 8 + 16);
	r = dotstuff_feed(&s->ds, p + used, n - used, out);
	if (r < 0)
		return -1;
	s->bytes_out += out->len - before;
	return 0;
}

void
pop3_server_upstream_data(struct session *s, const char *p, size_t n)
{
	if (s->client == NULL || n == 0)
		return;
	xfer_start(s);
	if (s->ds.limit_reached)
		return;
	if (s->hasher != NULL && s->wait != WAIT_TOP_TEXT)
		uidmap_hasher_feed(s->hasher, p, n);
	if (xfer_send(s, p, n) < 0) {
		session_end(s, "output buffer overflow");
		return;
	}
	conn_flush(s->client);
	if (conn_pending(s->client) >= SESSION_OUT_HIGH && !s->xfer_paused) {
		/* The client reads slower than the server sends: hold the
		 * server until the queue drains. */
		s->xfer_paused = true;
		upstream_pause(s->up);
		conn_want_drained(s->client);
	}
}

static void
xfer_finish(struct session *s)
{
	struct buf *out;
	size_t before;

	xfer_start(s);
	out = conn_outbuf(s->client);
	before = out->len;
	if (dotstuff_finish(&s->ds, out) < 0) {
		session_end(s, "output buffer overflow");
		return;
	}
	s->bytes_out += out->len - before;
	session_set_wait(s, WAIT_NONE);
	if (s->xfer_paused) {
		s->xfer_paused = false;
		upstream_resume(s->up);
	}
}

/* The transfer broke: after +OK, only closing tells the client the
 * message is incomplete (a "." would make it look whole). */
static void
xfer_fail(struct session *s, enum upstream_status st, const char *why)
{
	session_set_wait(s, WAIT_NONE);
	if (s->xfer_started) {
		log_warn("session=%s transfer of message %u broke: %s", s->id,
			 (unsigned)s->msg_n, why);
		conn_close(&s->client, 0);
		session_end(s, "upstream failed during transfer");
		return;
	}
	if (st == UPSTREAM_GONE) {
		session_reply(s, "-ERR message %u is no longer on the server",
			      (unsigned)s->msg_n);
		return;
	}
	/* SPEC §5: a failing upstream ends the session, mailbox untouched. */
	reply_temp(s, "mail server failed", why);
	session_end(s, "upstream failed");
}

/* Records what a transfer taught about the message: its fingerprint from
 * the header block and, after a whole RETR, its exact size. */
static void
remember_message(struct session *s, bool whole)
{
	struct uidmap_folder *f;
	struct uidmap_entry *e;
	uint8_t fp[UIDMAP_FP_LEN];

	if (s->map == NULL || s->hasher == NULL)
		return;
	f = uidmap_folder(s->map, s->md.folders[s->msg->folder].name, false);
	e = f != NULL ? uidmap_find(f, s->msg->uid) : NULL;
	if (e == NULL)
		return;
	uidmap_hasher_final(s->hasher, fp, NULL);
	uidmap_set_fp(s->map, e, fp);
	if (whole) {
		uidmap_set_size(s->map, e, s->ds.size, s->msg->listed);
		uidmap_set_retrieved(s->map, e);
	}
}

/*
 * A client that takes the maildrop in order (RETR 1, or the message after
 * the one it took last) most likely asks for the next message next: ask the
 * server for it now, so that its first bytes are waiting when the RETR
 * comes instead of a round trip later. Anything else the client does first
 * costs reading that reply away (at most read_ahead MB).
 */
static void
read_ahead(struct session *s)
{
	uint64_t max = (uint64_t)s->cfg->upstream.read_ahead << 20;
	bool in_order = s->last_retr + 1 == s->msg_n;
	struct maildrop_msg *next;

	s->last_retr = s->msg_n;
	if (!in_order || s->client == NULL || s->up == NULL)
		return;
	next = maildrop_get(&s->md, s->msg_n + 1);
	if (next != NULL && next->size <= max)
		(void)upstream_read_ahead(s->up, next);
}

static void
retr_done(struct session *s, enum upstream_status st, const char *why)
{
	if (st != UPSTREAM_OK) {
		xfer_fail(s, st, why);
		return;
	}
	/* RETR delivers the real bytes; the listing follows them from now. */
	s->msg->size = s->ds.size;
	maildrop_retrieved(&s->md, s->msg_n);
	s->n_retrieved++;
	remember_message(s, true);
	xfer_finish(s);
	read_ahead(s);
}

/*
 * The next partial fetch of the text: top_chunk octets, or, when the size
 * says the text ends sooner, one octet more than is left, so that a short
 * answer shows the end and TOP never asks for a part that starts at or past
 * it. Once the text outgrows the estimate (a size that changed on the
 * server), plain chunks until a short answer.
 */
static uint64_t
top_request(const struct session *s)
{
	uint64_t left;

	if (s->top_offset >= s->top_text_size)
		return s->top_chunk;
	left = s->top_text_size - s->top_offset;
	return left < s->top_chunk ? left + 1 : s->top_chunk;
}

static void
top_done(struct session *s, enum upstream_status st, const char *why)
{
	uint64_t got;

	if (st != UPSTREAM_OK) {
		xfer_fail(s, st, why);
		return;
	}
	got = upstream_fetched(s->up);
	if (s->wait == WAIT_TOP_HEADER) {
		remember_message(s, false);
		/* The listed size less the header: the text to expect. */
		s->top_text_size = s->msg->size > got ? s->msg->size - got : 0;
		if (s->top_lines == 0 || s->top_text_size == 0) {
			xfer_finish(s);
			return;
		}
		dotstuff_limit_lines(&s->ds, s->top_lines);
	} else {
		if (s->ds.limit_reached || got < s->top_asked) {
			xfer_finish(s);
			return;
		}
		s->top_offset += got;
		if (s->top_chunk < SESSION_TOP_CHUNK_MAX)
			s->top_chunk *= 2;
	}
	xfer_start(s);
	s->top_asked = top_request(s);
	start_fetch(s, WAIT_TOP_TEXT, UPSTREAM_TEXT, s->top_offset,
		    s->top_asked);
}

static void
update_done(struct session *s, enum upstream_status st, const char *why)
{
	session_set_wait(s, WAIT_NONE);
	if (st == UPSTREAM_OK) {
		mapstore_save(&s->srv->maps, s->map);
		s->n_deleted = (unsigned)s->md.n_deleted;
		session_reply(s, "+OK " POPBRIDGE_NAME " signing off (%u "
			      "messages deleted)", s->n_deleted);
		session_end(s, "quit");
		return;
	}
	mapstore_save(&s->srv->maps, s->map);
	log_warn("session=%s update failed: %s", s->id, why);
	session_reply(s, TEMP_FAIL "some deleted messages not removed"
		      WAIT_HINT);
	session_end(s, "quit, update failed");
}

void
pop3_server_upstream_done(struct session *s, enum upstream_status st,
			  const char *why)
{
	switch (s->wait) {
	case WAIT_LOGIN:
		session_set_wait(s, WAIT_NONE);
		login_done(s, st, why);
		break;
	case WAIT_RETR:
		retr_done(s, st, why);
		break;
	case WAIT_TOP_HEADER:
	case WAIT_TOP_TEXT:
		top_done(s, st, why);
		break;
	case WAIT_UPDATE:
		update_done(s, st, why);
		break;
	case WAIT_NONE:
	case WAIT_AUTH_DELAY:
	case WAIT_AUTH_LINE:
	case WAIT_LISTING:
		/* Nothing asked for this: a bug, not something to ignore. */
		log_error("session=%s unexpected upstream completion (%s) "
			  "while waiting for %d", s->id, why, (int)s->wait);
		break;
	}
}
