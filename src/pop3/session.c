/* One POP3 session's life: the client connection and its events, input
 * into command lines, replies, the idle and login-delay timer, the PROXY
 * header, state changes and the end. */
#include "session_priv.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "daemon/version.h"
#include "net/proxy.h"
#include "net/tls.h"
#include "util/error.h"
#include "util/log.h"

static const char *const state_names[] = {
	[SESSION_AUTHORIZATION] = "AUTHORIZATION",
	[SESSION_TRANSACTION] = "TRANSACTION",
	[SESSION_UPDATE] = "UPDATE",
	[SESSION_CLOSED] = "CLOSED",
};

/* What a client that aborts the handshake most likely needs. */
#define CERT_HINT "if the client does not trust the certificate, install " \
	"one it trusts ([listen] cert, key) or add an exception in the client"

static void process_input(struct session *s);
static void proxy_begin(struct session *s);
static void proxy_input(struct session *s, const char *p, size_t n);
static void idle_restart(struct session *s);

void
session_set_state(struct session *s, enum session_state st)
{
	if (s->state == st)
		return;
	log_debug("session=%s state %s -> %s", s->id, state_names[s->state],
		  state_names[st]);
	s->state = st;
}

static const char *const wait_names[] = {
	[WAIT_NONE] = "nothing",
	[WAIT_LOGIN] = "login",
	[WAIT_AUTH_DELAY] = "login delay",
	[WAIT_AUTH_LINE] = "AUTH response",
	[WAIT_RETR] = "RETR data",
	[WAIT_TOP_HEADER] = "TOP header",
	[WAIT_TOP_TEXT] = "TOP text",
	[WAIT_LISTING] = "listing output",
	[WAIT_UPDATE] = "QUIT's update",
	[WAIT_DEVICE] = "device password check",
	[WAIT_TOKEN] = "OAuth2 access token",
};

void
session_set_wait(struct session *s, enum session_wait w)
{
	if (s->wait == w)
		return;
	log_debug("session=%s waits for %s (was %s)", s->id, wait_names[w],
		  wait_names[s->wait]);
	s->wait = w;
}

void
session_reply_temp(struct session *s, const char *what, const char *why)
{
	session_reply(s, TEMP_FAIL "%s (%.120s)" WAIT_HINT, what, why);
}

bool
session_tls_active(const struct session *s)
{
	return s->client != NULL && conn_tls_active(s->client);
}

bool
session_stls_possible(const struct session *s)
{
	return s->srv->tls_server != NULL && !session_tls_active(s) &&
	       s->state == SESSION_AUTHORIZATION;
}

static void
idle_expired(uv_timer_t *t)
{
	struct session *s = t->data;

	if (s->wait == WAIT_AUTH_DELAY) {
		pop3_login_delay_done(s);
		idle_restart(s);
		process_input(s);
		return;
	}
	/* A client still taking the output of a long RETR is slow, not idle:
	 * the kernel's queue moved since the last look. */
	if (s->client != NULL) {
		size_t unsent = conn_unsent(s->client);

		if (unsent > 0 && unsent != s->last_unsent) {
			s->last_unsent = unsent;
			idle_restart(s);
			return;
		}
	}
	/* RFC 1939 §3: the autologout timer closes without entering UPDATE. */
	session_end(s, "idle timeout");
}

static void
idle_restart(struct session *s)
{
	if (s->state == SESSION_CLOSED || s->wait == WAIT_AUTH_DELAY)
		return;
	uv_timer_start(&s->timer, idle_expired,
		       (uint64_t)s->cfg->limits.idle_timeout * 1000, 0);
}

const char *
session_log_user(struct session *s)
{
	size_t i;

	if (!s->have_user || s->user.len == 0)
		return "-";
	if (s->user.len >= sizeof(s->log_user))
		return "(long name withheld)";
	/* A name with quotes or spaces is more likely a mistyped password or
	 * an attack than an account: keep it out of the log. */
	for (i = 0; i < s->user.len; i++) {
		unsigned char ch = (unsigned char)s->user.data[i];

		if (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
			return "(unusual name withheld)";
		s->log_user[i] = (char)ch;
	}
	s->log_user[i] = '\0';
	return s->log_user;
}

void
session_delay(struct session *s, uint64_t ms)
{
	session_set_wait(s, WAIT_AUTH_DELAY);
	uv_timer_start(&s->timer, idle_expired, ms, 0);
}

void
session_reply(struct session *s, const char *fmt, ...)
{
	char line[POP3_LINE_MAX * 2];
	va_list ap;
	int n;

	if (s->client == NULL)
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	log_debug("session=%s pop3> %.*s", s->id, n - 2, line);
	if (conn_write(s->client, line, (size_t)n) == 0)
		s->bytes_out += (uint64_t)n;
}

static void
on_client_data(void *ctx, const char *p, size_t n)
{
	struct session *s = ctx;

	if (s->state == SESSION_CLOSED)
		return;
	if (s->proxy_pending) {
		proxy_input(s, p, n);
		return;
	}
	if (buf_append(&s->in, p, n) < 0) {
		/* Reading pauses at SESSION_IN_PAUSE and one read is at most
		 * CONN_READ_MAX, so this cannot happen; if it does, say so. */
		session_reply(s, "-ERR too much input");
		session_end(s, "input flood");
		return;
	}
	idle_restart(s);
	process_input(s);
}

static void
on_client_drained(void *ctx)
{
	struct session *s = ctx;

	if (s->state == SESSION_CLOSED)
		return;
	idle_restart(s);
	if (s->wait == WAIT_LISTING)
		pop3_listing(s);
	else
		pop3_xfer_resume(s);
	process_input(s);
}

static void
on_client_failed(void *ctx, int status)
{
	struct session *s = ctx;

	bool handshaking = conn_tls_handshaking(s->client);

	conn_close(&s->client, 0);
	/* The client confirmed its deletions with QUIT: finish them. */
	if (s->wait == WAIT_UPDATE)
		return;
	if (handshaking) {
		log_warn("session=%s client=%s closed the connection during the "
			 "TLS handshake; %s", s->id, s->peer, CERT_HINT);
		session_end(s, "client closed during the TLS handshake");
		return;
	}
	session_end(s, status == UV_EOF ? "client closed" : "client error");
}

static void
on_client_tls_ready(void *ctx, const char *err)
{
	struct session *s = ctx;
	char reason[160];

	if (err == NULL) {
		s->tls_up = true;
		log_debug("session=%s TLS established", s->id);
		return;
	}
	snprintf(reason, sizeof(reason), "TLS handshake failed: %.120s", err);
	if (conn_tls_cert_rejected(s->client))
		log_warn("session=%s client=%s refused our certificate (%s); %s",
			 s->id, s->peer, err, CERT_HINT);
	conn_close(&s->client, 0);
	session_end(s, reason);
}

/* A client that reads, however slowly, is not idle (RFC 1939 §3 counts
 * inactivity): each write that completes restarts the timer. */
static void
on_client_progress(void *ctx)
{
	struct session *s = ctx;

	if (s->state != SESSION_CLOSED)
		idle_restart(s);
}

static const struct conn_events client_events = {
	.data = on_client_data,
	.drained = on_client_drained,
	.progress = on_client_progress,
	.tls_ready = on_client_tls_ready,
	.failed = on_client_failed,
};

static void
on_upstream_done(void *ctx, enum upstream_status st, const char *why)
{
	struct session *s = ctx;

	if (s->state == SESSION_CLOSED)
		return;
	pop3_upstream_done(s, st, why);
	session_resume(s);
}

static void
on_upstream_data(void *ctx, const char *p, size_t n)
{
	struct session *s = ctx;

	if (s->state == SESSION_CLOSED)
		return;
	pop3_xfer_data(s, p, n);
}

static const struct upstream_events upstream_events = {
	.done = on_upstream_done,
	.data = on_upstream_data,
};

/* An over-long AUTH response also ends the AUTH exchange (RFC 5034 §4),
 * so the next line is a command again. */
static void
line_too_long(struct session *s)
{
	if (s->wait == WAIT_AUTH_LINE) {
		session_set_wait(s, WAIT_NONE);
		pop3_line_reader_init(&s->reader, POP3_LINE_MAX);
		session_reply(s, "-ERR [AUTH] AUTH response too long");
		return;
	}
	session_reply(s, "-ERR line too long");
}

/* Handles complete lines until the session must wait for something. */
static void
process_input(struct session *s)
{
	char line[POP3_AUTH_LINE_MAX];
	size_t line_len, used;
	int r;

	while (s->state != SESSION_CLOSED &&
	       (s->wait == WAIT_NONE || s->wait == WAIT_AUTH_LINE) &&
	       s->client != NULL &&
	       conn_pending(s->client) < SESSION_OUT_HIGH) {
		r = pop3_parse_line(&s->reader, s->in.data, s->in.len,
				    &line_len, &used);
		if (r == POP3_LINE_MORE) {
			buf_consume(&s->in, used);
			break;
		}
		if (r == POP3_LINE_TOO_LONG) {
			buf_consume(&s->in, used);
			line_too_long(s);
			continue;
		}
		/* The command owns its line; the input may be discarded
		 * (STLS) or freed (session_end) while it runs. The line may
		 * hold a password: no copy of it outlives the command. */
		memcpy(line, s->in.data, line_len);
		OPENSSL_cleanse(s->in.data, used);
		buf_consume(&s->in, used);
		pop3_dispatch(s, line, line_len);
		OPENSSL_cleanse(line, line_len);
	}
	if (s->client == NULL)
		return;
	if (conn_pending(s->client) >= SESSION_OUT_HIGH)
		conn_want_drained(s->client);
	conn_flush(s->client);
	if (s->in.len == 0 && s->in.cap > SESSION_IN_KEEP)
		buf_free(&s->in);
	/* Stop reading while input piles up unprocessed. */
	if (s->in.len >= SESSION_IN_PAUSE)
		conn_pause(s->client);
	else if (s->state != SESSION_CLOSED)
		conn_start(s->client);
}

void
session_resume(struct session *s)
{
	process_input(s);
}

static void
greet(struct session *s)
{
	/* RFC 1939 §4; no APOP timestamp: pass-through needs the password. */
	session_reply(s, "+OK " POPBRIDGE_NAME " ready");
	conn_flush(s->client);
	idle_restart(s);
}

/* 127.0.0.0/8, ::1, and IPv4-mapped 127/8 (a dual-stack listener). */
static bool
text_is_loopback(const char *addr)
{
	static const unsigned char mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
	};
	unsigned char b[16];

	if (inet_pton(AF_INET, addr, b) == 1)
		return b[0] == 127;
	if (inet_pton(AF_INET6, addr, b) != 1)
		return false;
	if (memcmp(b, mapped, sizeof(mapped)) == 0)
		return b[12] == 127;
	return memcmp(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0;
}

static void
proxy_expired(uv_timer_t *t)
{
	session_end(t->data, "no PROXY header in time");
}

/* Reads the PROXY header of a trusted proxy, then starts the session for
 * the real client it names. */
static void
proxy_input(struct session *s, const char *p, size_t n)
{
	struct proxy_info info;
	const char *why;
	char via[48];
	size_t used;
	int r;

	if (buf_append(&s->in, p, n) < 0) {
		session_end(s, "PROXY header too long");
		return;
	}
	r = proxy_parse((const unsigned char *)s->in.data, s->in.len, &used,
			&info, &why);
	if (r == 0)
		return;
	if (r < 0) {
		log_warn("session=%s client=%s: %s", s->id, s->peer, why);
		session_end(s, "bad PROXY header");
		return;
	}
	buf_consume(&s->in, used);
	s->proxy_pending = false;
	s->member.peer = s->peer;
	snprintf(via, sizeof(via), "%s", s->peer);
	if (!info.local) {
		snprintf(s->peer, sizeof(s->peer), "%s", info.addr);
		s->peer_loopback = text_is_loopback(info.addr);
	}
	log_info("session=%s client=%s via proxy %s", s->id, s->peer, via);
	if (server_count_peer(s->srv, s->peer) >
	    s->cfg->limits.max_per_ip) {
		if (!s->implicit_tls)
			session_reply(s, "-ERR [SYS/TEMP] too many sessions "
				      "from your address, please wait and try "
				      "again");
		session_end(s, "max_per_ip reached");
		return;
	}
	proxy_begin(s);
}

/* What followed the header (a ClientHello, early commands) goes through
 * the connection as if it had just arrived. */
static void
proxy_begin(struct session *s)
{
	struct buf rest = s->in;

	buf_init_secret(&s->in, SESSION_IN_MAX);
	uv_timer_stop(&s->timer);
	if (s->implicit_tls &&
	    server_start_tls(s->srv, s->client) < 0) {
		buf_free(&rest);
		session_end(s, "cannot start TLS");
		return;
	}
	greet(s);
	if (rest.len > 0 && s->client != NULL)
		conn_feed(s->client, rest.data, rest.len);
	buf_free(&rest);
}

static void
member_end(struct server_member *m, const char *reason)
{
	session_end((struct session *)((char *)m -
				       offsetof(struct session, member)),
		    reason);
}

int
session_start(struct server *srv, struct conn *client, unsigned flags)
{
	struct session *s;
	int r;

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		conn_close(&client, 0);
		return -ENOMEM;
	}
	s->srv = srv;
	s->cfg = config_ref(srv->cfg);
	s->tls_client = srv->tls_client != NULL ?
			tls_ctx_ref(srv->tls_client) : NULL;
	s->client = client;
	snprintf(s->peer, sizeof(s->peer), "%s", conn_peer(client));
	s->member.peer = (flags & SESSION_PROXIED) ? NULL : s->peer;
	s->member.end = member_end;
	snprintf(s->id, sizeof(s->id), "%llu",
		 (unsigned long long)server_join(srv, &s->member));
	s->started_ms = uv_now(srv->loop);
	buf_init_secret(&s->in, SESSION_IN_MAX);
	buf_init(&s->user, SESSION_USER_MAX);
	pop3_line_reader_init(&s->reader, POP3_LINE_MAX);
	uv_timer_init(srv->loop, &s->timer);
	s->timer.data = s;
	conn_set_events(client, &client_events, s);
	conn_wipe_reads(client);
	s->peer_loopback = text_is_loopback(s->peer);
	s->implicit_tls = (flags & SESSION_IMPLICIT_TLS) != 0;
	log_info("session=%s connect client=%s", s->id, s->peer);
	if (flags & SESSION_PROXIED) {
		s->proxy_pending = true;
		uv_timer_start(&s->timer, proxy_expired,
			       SESSION_PROXY_TIMEOUT_MS, 0);
	} else {
		greet(s);
	}
	r = conn_start(client);
	if (r < 0) {
		session_end(s, "cannot read from client");
		return r;
	}
	return 0;
}

struct upstream *
session_upstream(struct session *s)
{
	if (s->up == NULL)
		s->up = upstream_new(s->srv->loop, s->cfg,
				     s->tls_client, s->id,
				     &upstream_events, s);
	return s->up;
}

static void
on_timer_closed(uv_handle_t *h)
{
	struct session *s = h->data;

	config_unref(&s->cfg);
	tls_ctx_unref(&s->tls_client);
	free(s);
}

void
session_end(struct session *s, const char *reason)
{
	struct server *srv = s->srv;
	uint64_t ms;

	if (s->state == SESSION_CLOSED)
		return;
	ms = uv_now(srv->loop) - s->started_ms;
	/* pop3s: what was queued before the handshake never left in a form
	 * the client could read. */
	if (s->implicit_tls && !s->tls_up)
		s->bytes_out = 0;
	log_info("session=%s end client=%s user=%s reason=\"%s\" "
		 "retrieved=%u deleted=%u bytes_out=%llu duration_ms=%llu "
		 "listed=%u upstream=%s:%u", s->id, s->peer,
		 session_log_user(s), reason, s->n_retrieved, s->n_deleted,
		 (unsigned long long)s->bytes_out, (unsigned long long)ms,
		 s->n_listed, s->cfg->upstream.host,
		 (unsigned)s->cfg->upstream.port);
	session_set_state(s, SESSION_CLOSED);
	pop3_login_abort(s);
	if (s->up != NULL && upstream_alive(s->up))
		upstream_logout(s->up);
	upstream_free(&s->up);
	conn_close(&s->client, 1);
	mapstore_put(&srv->maps, &s->map);
	uidmap_hasher_free(&s->hasher);
	maildrop_free(&s->md);
	buf_wipe(&s->in);
	buf_wipe(&s->user);
	buf_free(&s->in);
	buf_free(&s->user);
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, on_timer_closed);
	server_leave(srv, &s->member);
}
