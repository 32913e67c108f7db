/* The POP3 command table (RFC 1939, 2449, 2595, 1460's LAST), the
 * TRANSACTION commands and QUIT, and where upstream completions go. */
#include <stdio.h>
#include <string.h>

#include "daemon/version.h"
#include "net/tls.h"
#include "session_priv.h"
#include "util/log.h"

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

/* --- AUTHORIZATION and both states ------------------------------------- */

static void
cmd_stls(struct session *s, const struct pop3_cmd *cmd)
{
	struct tls *t;

	(void)cmd;
	if (!session_stls_possible(s)) {
		session_reply(s, session_tls_active(s) ? "-ERR TLS is already active" :
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
	if (s->state == SESSION_AUTHORIZATION && pop3_login_plaintext_ok(s)) {
		session_reply(s, "USER");
		session_reply(s, "SASL PLAIN");
	}
	if (session_stls_possible(s))
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
pop3_listing(struct session *s)
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
	/* After UIDL, clients that keep mail on the server take what they
	 * have not seen: most likely the messages after the last one an
	 * earlier session retrieved, in order. Without such a session the
	 * map knows nothing of this client's habits: the first RETR opens
	 * the window. */
	if (s->listing_uidl && s->md.last_known > 0)
		pop3_xfer_window_fill(s, s->md.last_known, false, true);
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
	pop3_listing(s);
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

static void
cmd_retr(struct session *s, const struct pop3_cmd *cmd)
{
	struct maildrop_msg *m;
	uint32_t n;

	m = message_arg(s, cmd->arg[0], cmd->arg_len[0], &n);
	if (m != NULL)
		pop3_xfer_retr(s, m, n);
}

static void
cmd_top(struct session *s, const struct pop3_cmd *cmd)
{
	struct maildrop_msg *m;
	uint32_t n, lines;

	m = message_arg(s, cmd->arg[0], cmd->arg_len[0], &n);
	if (m == NULL)
		return;
	if (pop3_parse_number(cmd->arg[1], cmd->arg_len[1], &lines) < 0) {
		session_reply(s, "-ERR invalid number of lines");
		return;
	}
	pop3_xfer_top(s, m, n, lines);
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
	{ POP3_USER, IN_AUTH, pop3_login_user },
	{ POP3_PASS, IN_AUTH, pop3_login_pass },
	{ POP3_APOP, IN_AUTH, pop3_login_apop },
	{ POP3_AUTH, IN_AUTH, pop3_login_auth },
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
pop3_dispatch(struct session *s, const char *line, size_t len)
{
	struct pop3_cmd cmd;
	const char *why;
	size_t i;

	if (s->wait == WAIT_AUTH_LINE) {
		log_debug("session=%s pop3< (AUTH response not logged)", s->id);
		pop3_login_line(s, line, len);
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
pop3_upstream_done(struct session *s, enum upstream_status st,
			  const char *why)
{
	switch (s->wait) {
	case WAIT_LOGIN:
		session_set_wait(s, WAIT_NONE);
		pop3_login_done(s, st, why);
		break;
	case WAIT_RETR:
		pop3_xfer_retr_done(s, st, why);
		break;
	case WAIT_TOP_HEADER:
	case WAIT_TOP_TEXT:
		pop3_xfer_top_done(s, st, why);
		break;
	case WAIT_UPDATE:
		update_done(s, st, why);
		break;
	case WAIT_NONE:
	case WAIT_AUTH_DELAY:
	case WAIT_AUTH_LINE:
	case WAIT_LISTING:
	case WAIT_DEVICE:
	case WAIT_TOKEN:
		/* Nothing asked for this: a bug, not something to ignore. */
		log_error("session=%s unexpected upstream completion (%s) "
			  "while waiting for %d", s->id, why, (int)s->wait);
		break;
	}
}
