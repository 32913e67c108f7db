/* The IMAP side of one session: connect (TLS, STARTTLS), log in, pipelined
 * tagged commands with their responses routed back, back-pressure. */
#include "imap/imap_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "util/base64.h"
#include "net/conn.h"
#include "imap/imap_string.h"
#include "util/log.h"
#include "net/tls.h"
#include "daemon/version.h"
#include "oauth/sasl.h"
#include "oauth/token.h"

/* Longest server text kept for error messages. */
#define IMAP_TEXT_MAX 256
/* A LOGIN may need three segments: two synchronizing literals. */
#define IMAP_SEGMENTS_MAX 3
/* Credentials longer than this are refused outright (RFC 4616 allows 255
 * octets per field; providers' app passwords and tokens fit). */
#define IMAP_CRED_MAX 4096
/* LITERAL- (RFC 7888) allows non-synchronizing literals up to 4096. */
#define IMAP_LITERAL_MINUS_MAX 4096
/* Commands in flight at once (the fetch window pipelines its FETCHes). */
#define IMAP_PIPELINE_MIN 8

enum login_step {
	LOGIN_IDLE = 0,
	LOGIN_RESOLVING,
	LOGIN_CONNECTING,
	LOGIN_TLS,		/* implicit TLS handshake */
	LOGIN_GREETING,
	LOGIN_CAPABILITY,
	LOGIN_STARTTLS,
	LOGIN_AUTH,
	LOGIN_POSTCAPA,
	LOGIN_DONE,
};

/* A command sent and not answered yet; answers come in this order. */
struct pending {
	unsigned tag;
	struct imap_cmd_cb cb;
};

/* A command given before the login command went out whole: sent right
 * after it, in the same round trip. */
struct later_cmd {
	char *line;			/* args and CRLF */
	size_t len;
	struct imap_cmd_cb cb;
};

struct resolve_req {
	uv_getaddrinfo_t req;
	struct imap_client *client;	/* NULL once the client is gone */
};

struct imap_client {
	uv_loop_t *loop;
	const struct config *cfg;
	struct tls_ctx *tls_ctx;	/* a reference; NULL with tls = none */
	char sid[32];
	struct conn *conn;
	bool starttls_now;		/* STARTTLS accepted: switch after
					 * this response, drop the rest */
	struct imap_parser *parser;
	struct imap_body_cb body;	/* routes streamed literals to cmd */
	uv_timer_t timer;
	struct resolve_req *resolve;
	struct addrinfo *addrs;		/* owned; tried in order */
	struct addrinfo *next_addr;

	unsigned tag_seq;
	char tag[16];			/* the oldest command's, for logs */
	struct pending *q;		/* ring of commands in flight */
	size_t q_head, q_n, q_cap;
	bool gate;			/* the login is out: commands may follow */
	struct later_cmd *later;	/* commands waiting for the gate */
	size_t n_later, cap_later;
	bool secret_cmd;		/* do not log the command text */
	unsigned corked;		/* commands wait to go out in one write */
	struct buf held;		/* input left unparsed by a pause */
	uv_timer_t *held_timer;		/* parses it after a resume */
	struct buf segs;		/* segments after the first, sent on "+" */
	size_t seg_len[IMAP_SEGMENTS_MAX];
	size_t nsegs, seg_next;

	enum login_step step;
	struct imap_cmd_cb login_cb;
	struct buf user, pass;		/* secrets: wiped after login */
	bool bearer;			/* pass is an OAuth2 access token */
	enum oauth_mech mech;		/* the bearer login's mechanism */
	bool sasl_answered;		/* the error challenge was answered */
	char sasl_why[320];		/* what that challenge said */

	unsigned caps;
	bool caps_fresh;		/* caps were announced since login */
	char code[IMAP_TEXT_MAX];	/* last tagged response code */
	bool dead;
	bool paused;
	bool bye;
	int depth;			/* nesting of callbacks into us */
	bool doomed;			/* freed during a callback */
	char error[IMAP_TEXT_MAX];
	char text[IMAP_TEXT_MAX];
};

static void client_fail(struct imap_client *c, const char *why);
static void login_finish(struct imap_client *c, enum imap_result res,
			 const char *text);
static void login_next(struct imap_client *c);
static void gate_open(struct imap_client *c);

static const struct {
	const char *name;
	unsigned bit;
} cap_names[] = {
	{ "IMAP4REV1", IMAP_CAP_IMAP4REV1 },
	{ "AUTH=PLAIN", IMAP_CAP_AUTH_PLAIN },
	{ "SASL-IR", IMAP_CAP_SASL_IR },
	{ "AUTH=OAUTHBEARER", IMAP_CAP_AUTH_OAUTHBEARER },
	{ "AUTH=XOAUTH2", IMAP_CAP_AUTH_XOAUTH2 },
	{ "LOGINDISABLED", IMAP_CAP_LOGINDISABLED },
	{ "LITERAL+", IMAP_CAP_LITERAL_PLUS },
	{ "LITERAL-", IMAP_CAP_LITERAL_MINUS },
	{ "UIDPLUS", IMAP_CAP_UIDPLUS },
	{ "MOVE", IMAP_CAP_MOVE },
	{ "ID", IMAP_CAP_ID },
	{ "STARTTLS", IMAP_CAP_STARTTLS },
	{ "OBJECTID", IMAP_CAP_OBJECTID },
	{ "X-GM-EXT-1", IMAP_CAP_X_GM_EXT_1 },
};

static unsigned
cap_bit(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(cap_names) / sizeof(cap_names[0]); i++) {
		if (strlen(cap_names[i].name) == n &&
		    strncasecmp(cap_names[i].name, p, n) == 0)
			return cap_names[i].bit;
	}
	return 0;
}

/* Parses a space-separated capability list ("IMAP4rev1 SASL-IR ..."). */
static unsigned
caps_from_text(const char *p, size_t n)
{
	unsigned caps = 0;
	size_t i = 0, start;

	while (i < n) {
		while (i < n && p[i] == ' ')
			i++;
		start = i;
		while (i < n && p[i] != ' ')
			i++;
		caps |= cap_bit(p + start, i - start);
	}
	return caps;
}

static unsigned
caps_from_args(const struct imap_resp *r)
{
	unsigned caps = 0;
	size_t i;

	for (i = 0; i < r->nargs; i++) {
		if (r->args[i].type == IMAP_ARG_ATOM)
			caps |= cap_bit(r->args[i].str, r->args[i].len);
	}
	return caps;
}

/* A status response's [CAPABILITY ...] code replaces what we knew. */
static void
caps_from_code(struct imap_client *c, const struct imap_resp *r)
{
	static const char word[] = "CAPABILITY ";

	if (r->code == NULL || r->code_len < sizeof(word) - 1 ||
	    strncasecmp(r->code, word, sizeof(word) - 1) != 0)
		return;
	c->caps = caps_from_text(r->code + sizeof(word) - 1,
				 r->code_len - (sizeof(word) - 1));
	c->caps_fresh = true;
}

static void
copy_text(char *dst, const char *p, size_t n)
{
	size_t i;

	if (n >= IMAP_TEXT_MAX)
		n = IMAP_TEXT_MAX - 1;
	/* Server text reaches logs and POP3 replies: keep it printable. */
	for (i = 0; i < n; i++)
		dst[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?';
	dst[n] = '\0';
}

static void
on_timeout(uv_timer_t *t)
{
	struct imap_client *c = t->data;

	client_fail(c, "upstream timed out");
}

static void
timer_arm(struct imap_client *c)
{
	if (c->dead || c->paused)
		return;
	uv_timer_start(&c->timer, on_timeout,
		       (uint64_t)c->cfg->upstream.timeout * 1000, 0);
}

/* The oldest command in flight: the one the server answers now. */
static struct pending *
q_first(struct imap_client *c)
{
	return c->q_n > 0 ? &c->q[c->q_head] : NULL;
}

static int
q_grow(struct imap_client *c)
{
	size_t cap = c->q_cap ? 2 * c->q_cap : IMAP_PIPELINE_MIN, i;
	struct pending *q;

	if (cap > IMAP_PIPELINE_MAX)
		return -EBUSY;
	q = malloc(cap * sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	for (i = 0; i < c->q_n; i++)
		q[i] = c->q[(c->q_head + i) % c->q_cap];
	free(c->q);
	c->q = q;
	c->q_cap = cap;
	c->q_head = 0;
	return 0;
}

static int
q_push(struct imap_client *c, unsigned tag, const struct imap_cmd_cb *cb)
{
	int r;

	if (c->q_n == c->q_cap) {
		r = q_grow(c);
		if (r < 0)
			return r;
	}
	c->q[(c->q_head + c->q_n) % c->q_cap] = (struct pending){
		.tag = tag, .cb = *cb,
	};
	c->q_n++;
	return 0;
}

static void
later_free(struct imap_client *c)
{
	size_t i;

	for (i = 0; i < c->n_later; i++)
		free(c->later[i].line);
	free(c->later);
	c->later = NULL;
	c->n_later = c->cap_later = 0;
}

/* The oldest command has its answer. */
static void
complete(struct imap_client *c, enum imap_result res, const char *text)
{
	struct imap_cmd_cb cb = c->q[c->q_head].cb;

	c->q_head = (c->q_head + 1) % c->q_cap;
	c->q_n--;
	/* Segments belong to the login command, which went alone. */
	buf_wipe(&c->segs);
	c->nsegs = c->seg_next = 0;
	c->secret_cmd = false;
	if (c->q_n == 0)
		uv_timer_stop(&c->timer);
	else
		timer_arm(c);
	if (cb.done != NULL)
		cb.done(cb.ctx, res, text);
}

static void
client_fail(struct imap_client *c, const char *why)
{
	if (c->dead)
		return;
	c->dead = true;
	if (why != c->error)
		snprintf(c->error, sizeof(c->error), "%s", why);
	log_debug("session=%s upstream failed: %s", c->sid, why);
	uv_timer_stop(&c->timer);
	conn_close(&c->conn, 0);
	later_free(c);
	buf_wipe(&c->held);
	/* Each command in flight learns it failed, oldest first; a command
	 * may free the client from its callback (doomed then). */
	while (c->q_n > 0 && !c->doomed)
		complete(c, IMAP_FAIL, c->error);
	if (!c->doomed && c->login_cb.done != NULL)
		login_finish(c, IMAP_FAIL, c->error);
}

static void
send_segment(struct imap_client *c, const char *p, size_t n)
{
	if (conn_write(c->conn, p, n) < 0 ||
	    (c->corked == 0 && conn_flush(c->conn) < 0))
		client_fail(c, "upstream write failed");
}

void
imap_client_cork(struct imap_client *c)
{
	c->corked++;
}

void
imap_client_uncork(struct imap_client *c)
{
	if (c->corked == 0 || --c->corked > 0 || c->dead || c->conn == NULL)
		return;
	if (conn_flush(c->conn) < 0)
		client_fail(c, "upstream write failed");
}

static int
start_segments(struct imap_client *c, const struct buf *first,
	       const struct imap_cmd_cb *cb, bool secret)
{
	char line[64];
	int n;

	int r;

	if (c->dead || c->conn == NULL)
		return -ENOTCONN;
	/* The login (secret, maybe in segments that wait for "+") goes
	 * alone; nothing follows a command whose segments are not out. */
	if ((secret && c->q_n > 0) || (!secret && c->seg_next < c->nsegs))
		return -EBUSY;
	r = q_push(c, c->tag_seq + 1, cb);
	if (r < 0)
		return r;
	c->tag_seq++;
	c->secret_cmd = secret;
	n = snprintf(line, sizeof(line), "P%u ", c->tag_seq);
	if (!secret)
		log_debug("session=%s imap> P%u %.*s", c->sid, c->tag_seq,
			  (int)(first->len > 200 ? 200 : first->len - 2),
			  first->data);
	else
		log_debug("session=%s imap> P%u (credentials not logged)",
			  c->sid, c->tag_seq);
	timer_arm(c);
	if (secret)
		conn_mark_secret(c->conn);
	if (conn_write(c->conn, line, (size_t)n) < 0) {
		client_fail(c, "upstream write failed");
		return 0;
	}
	send_segment(c, first->data, first->len);
	return 0;
}

static int
send_command(struct imap_client *c, const char *args,
	     const struct imap_cmd_cb *cb)
{
	struct buf line;
	int r;

	buf_init(&line, IMAP_CMD_MAX);
	r = buf_append_str(&line, args);
	if (r == 0)
		r = buf_append(&line, "\r\n", 2);
	if (r < 0) {
		buf_free(&line);
		return r;
	}
	r = start_segments(c, &line, cb, false);
	buf_free(&line);
	return r;
}

/* Keeps a command until the login command is out. */
static int
later_add(struct imap_client *c, const char *args,
	  const struct imap_cmd_cb *cb)
{
	size_t len = strlen(args);
	struct later_cmd *l;

	if (len + 2 > IMAP_CMD_MAX)
		return -ENOBUFS;
	if (c->n_later == c->cap_later) {
		size_t cap = c->cap_later ? 2 * c->cap_later : 4;

		l = realloc(c->later, cap * sizeof(*l));
		if (l == NULL)
			return -ENOMEM;
		c->later = l;
		c->cap_later = cap;
	}
	l = &c->later[c->n_later];
	l->line = strdup(args);
	if (l->line == NULL)
		return -ENOMEM;
	l->len = len;
	l->cb = *cb;
	c->n_later++;
	return 0;
}

static bool
login_running(const struct imap_client *c)
{
	return c->step != LOGIN_IDLE && c->step != LOGIN_DONE;
}

int
imap_client_command(struct imap_client *c, const char *args,
		    const struct imap_cmd_cb *cb)
{
	if (c->dead)
		return -ENOTCONN;
	if (login_running(c) && !c->gate)
		return later_add(c, args, cb);
	return send_command(c, args, cb);
}

/*
 * A continuation after a bearer login's last segment is the server's
 * error challenge (RFC 7628 §3.2.2): its JSON says why, for the log (it
 * holds no token); the answer is the mechanism's dummy reply, after
 * which the server sends its NO.
 */
static bool
bearer_challenge(struct imap_client *c, const struct imap_resp *r)
{
	struct oauth_sasl_error e;
	const char *reply;

	if (!c->bearer || c->step != LOGIN_AUTH || c->sasl_answered ||
	    c->q_n != 1 || c->seg_next < c->nsegs)
		return false;
	c->sasl_answered = true;
	if (oauth_sasl_parse_error(r->text, r->text_len, &e) == 0)
		snprintf(c->sasl_why, sizeof(c->sasl_why), "status=%.63s%s%.200s",
			 e.status[0] ? e.status : "?",
			 e.scope[0] ? " scope=" : "", e.scope);
	else
		snprintf(c->sasl_why, sizeof(c->sasl_why),
			 "an error challenge that is not JSON");
	log_debug("session=%s imap< + (%s)", c->sid, c->sasl_why);
	reply = oauth_sasl_error_reply(c->mech);
	if (conn_write(c->conn, reply, strlen(reply)) < 0)
		client_fail(c, "upstream write failed");
	else
		send_segment(c, "\r\n", 2);
	return true;
}

/* Hands the next segment to the server after a continuation request. */
static void
on_continuation(struct imap_client *c, const struct imap_resp *r)
{
	size_t off = 0, i;

	if (bearer_challenge(c, r))
		return;
	if (c->q_n == 0 || c->seg_next >= c->nsegs) {
		client_fail(c, "unexpected continuation request from upstream");
		return;
	}
	for (i = 0; i < c->seg_next; i++)
		off += c->seg_len[i];
	if (c->secret_cmd)
		conn_mark_secret(c->conn);
	send_segment(c, c->segs.data + off, c->seg_len[c->seg_next]);
	c->seg_next++;
}

static enum imap_result
status_result(enum imap_status st)
{
	switch (st) {
	case IMAP_STATUS_OK:
		return IMAP_OK;
	case IMAP_STATUS_NO:
		return IMAP_NO;
	case IMAP_STATUS_BAD:
		return IMAP_BAD;
	case IMAP_STATUS_NONE:
	case IMAP_STATUS_BYE:
	case IMAP_STATUS_PREAUTH:
		/* The parser hands out a tagged response only with OK, NO
		 * or BAD. */
		break;
	}
	return IMAP_BAD;
}

static void
on_tagged(struct imap_client *c, const struct imap_resp *r)
{
	struct pending *p = q_first(c);

	if (p != NULL)
		snprintf(c->tag, sizeof(c->tag), "P%u", p->tag);
	if (p == NULL || r->tag_len != strlen(c->tag) ||
	    memcmp(r->tag, c->tag, r->tag_len) != 0) {
		copy_text(c->text, r->text, r->text_len);
		log_debug("session=%s imap< %.*s %s (expected %s)", c->sid,
			  (int)(r->tag_len > 16 ? 16 : r->tag_len), r->tag,
			  c->text, p != NULL ? c->tag : "none");
		client_fail(c, "upstream answered a command we did not send");
		return;
	}
	caps_from_code(c, r);
	copy_text(c->text, r->text, r->text_len);
	copy_text(c->code, r->code != NULL ? r->code : "",
		  r->code != NULL ? r->code_len : 0);
	log_debug("session=%s imap< %s %s %s", c->sid, c->tag,
		  r->status == IMAP_STATUS_OK ? "OK" :
		  r->status == IMAP_STATUS_NO ? "NO" : "BAD", c->text);
	complete(c, status_result(r->status), c->text);
}

static void
on_untagged_status(struct imap_client *c, const struct imap_resp *r)
{
	caps_from_code(c, r);
	if (r->code != NULL && r->code_len == 5 &&
	    strncasecmp(r->code, "ALERT", 5) == 0) {
		copy_text(c->text, r->text, r->text_len);
		log_warn("session=%s upstream alert: %s", c->sid, c->text);
	}
	if (r->status == IMAP_STATUS_BYE) {
		c->bye = true;
		copy_text(c->text, r->text, r->text_len);
		snprintf(c->error, sizeof(c->error), "upstream said BYE: %.200s",
			 c->text);
	}
}

static void
on_greeting(struct imap_client *c, const struct imap_resp *r)
{
	if (r->kind != IMAP_RESP_UNTAGGED || r->status == IMAP_STATUS_NONE) {
		client_fail(c, "upstream sent no IMAP greeting");
		return;
	}
	if (r->status == IMAP_STATUS_BYE) {
		client_fail(c, c->error);
		return;
	}
	if (r->status != IMAP_STATUS_OK) {
		/* PREAUTH would log us in as someone we did not choose. */
		client_fail(c, "upstream greeting is not OK");
		return;
	}
	if (c->caps)
		c->step = LOGIN_CAPABILITY;
	login_next(c);
}

static void
dispatch(struct imap_client *c, const struct imap_resp *r)
{
	struct pending *q = q_first(c);

	if (r->kind == IMAP_RESP_UNTAGGED) {
		if (r->status != IMAP_STATUS_NONE)
			on_untagged_status(c, r);
		else if (r->name_len == 10 &&
			 strncasecmp(r->name, "CAPABILITY", 10) == 0) {
			c->caps = caps_from_args(r);
			c->caps_fresh = true;
		}
	}
	if (c->step == LOGIN_GREETING && c->q_n == 0) {
		on_greeting(c, r);
		return;
	}
	switch (r->kind) {
	case IMAP_RESP_CONTINUATION:
		on_continuation(c, r);
		break;
	case IMAP_RESP_TAGGED:
		on_tagged(c, r);
		break;
	case IMAP_RESP_UNTAGGED:
		if (q != NULL && q->cb.untagged != NULL)
			q->cb.untagged(q->cb.ctx, r);
		break;
	}
}

static void client_destroy(struct imap_client *c);
static void leave(struct imap_client *c);

static int
tls_begin(struct imap_client *c)
{
	struct tls *t = tls_new(c->tls_ctx, c->cfg->upstream.host);
	int r = 0;

	if (t == NULL)
		r = -ENOMEM;
	else if (conn_start_tls(c->conn, t) < 0)
		r = -EIO;
	if (r < 0)
		client_fail(c, "cannot start TLS with upstream");
	return r;
}

/*
 * RFC 9051 §6.2.1: after STARTTLS's OK, anything the server sent in clear
 * is discarded (it could have been injected), and capabilities are asked
 * again under TLS.
 */
static void
starttls_switch(struct imap_client *c, size_t dropped)
{
	c->starttls_now = false;
	if (dropped > 0)
		log_warn("session=%s discarding %zu bytes the upstream sent "
			 "before TLS", c->sid, dropped);
	imap_parse_free(&c->parser);
	c->parser = imap_parse_new(&c->body);
	if (c->parser == NULL) {
		client_fail(c, "out of memory");
		return;
	}
	c->caps = 0;
	tls_begin(c);
}

static void
on_tls_ready(void *ctx, const char *err)
{
	struct imap_client *c = ctx;

	c->depth++;
	if (err != NULL) {
		snprintf(c->text, sizeof(c->text),
			 "TLS with upstream %s:%u failed: %.160s",
			 c->cfg->upstream.host,
			 (unsigned)c->cfg->upstream.port, err);
		log_warn("session=%s %s", c->sid, c->text);
		client_fail(c, c->text);
	} else if (c->step == LOGIN_TLS) {
		c->step = LOGIN_GREETING;	/* the greeting comes now */
	} else if (c->step == LOGIN_STARTTLS) {
		c->step = LOGIN_GREETING;
		login_next(c);			/* CAPABILITY again */
	}
	leave(c);
}

static void
leave(struct imap_client *c)
{
	if (--c->depth == 0 && c->doomed)
		client_destroy(c);
}

/* Input that arrives or remains while paused waits, in order. */
static void
hold(struct imap_client *c, const char *p, size_t n)
{
	if (buf_append(&c->held, p, n) < 0)
		client_fail(c, "too much upstream input held while paused");
}

/* Parses p[0..n) until a pause stops it; the rest is held. */
static void
parse_input(struct imap_client *c, const char *p, size_t n)
{
	struct imap_resp r;
	size_t used;
	int ret;

	while (n > 0 && !c->dead && !c->doomed && !c->starttls_now &&
	       !c->paused) {
		ret = imap_parse_feed(c->parser, p, n, &used, &r);
		if (ret == IMAP_PARSE_ERROR) {
			snprintf(c->text, sizeof(c->text),
				 "malformed upstream response: %s",
				 imap_parse_error(c->parser));
			client_fail(c, c->text);
			break;
		}
		p += used;
		n -= used;
		if (ret == IMAP_PARSE_DONE)
			dispatch(c, &r);
	}
	if (c->dead || c->doomed)
		return;
	if (c->starttls_now)
		starttls_switch(c, n);
	else if (n > 0)
		hold(c, p, n);
}

static void
on_data(void *ctx, const char *p, size_t n)
{
	struct imap_client *c = ctx;

	c->depth++;
	if (c->paused || c->held.len > 0)
		hold(c, p, n);
	else
		parse_input(c, p, n);
	if (!c->dead && !c->doomed && c->q_n > 0)
		timer_arm(c);
	leave(c);
}

/* After a resume: what waited is parsed first, then reading goes on. */
static void
on_held(uv_timer_t *t)
{
	struct imap_client *c = t->data;
	struct buf b = c->held;

	c->depth++;
	buf_init(&c->held, b.max);
	parse_input(c, b.data, b.len);
	buf_free(&b);
	if (!c->dead && !c->doomed && !c->paused && c->held.len == 0 &&
	    c->conn != NULL && conn_start(c->conn) < 0)
		client_fail(c, "cannot read from upstream");
	leave(c);
}

static void
on_failed(void *ctx, int status)
{
	struct imap_client *c = ctx;

	c->depth++;
	if (c->bye)
		client_fail(c, c->error);
	else if (status == UV_EOF)
		client_fail(c, "upstream closed the connection");
	else {
		snprintf(c->text, sizeof(c->text), "upstream connection: %s",
			 uv_strerror(status));
		client_fail(c, c->text);
	}
	leave(c);
}

static void try_connect(struct imap_client *c);

static void
on_connected(void *ctx, int status)
{
	struct imap_client *c = ctx;

	c->depth++;
	if (status < 0) {
		log_debug("session=%s connect to upstream failed: %s", c->sid,
			  uv_strerror(status));
		conn_close(&c->conn, 0);
		if (c->next_addr != NULL) {
			try_connect(c);
		} else {
			snprintf(c->text, sizeof(c->text),
				 "cannot connect to upstream %s:%u: %s",
				 c->cfg->upstream.host,
				 (unsigned)c->cfg->upstream.port,
				 uv_strerror(status));
			client_fail(c, c->text);
		}
		leave(c);
		return;
	}
	c->step = LOGIN_GREETING;
	if (c->cfg->upstream.tls == UPSTREAM_TLS_IMPLICIT) {
		c->step = LOGIN_TLS;
		if (tls_begin(c) < 0) {
			leave(c);
			return;
		}
	}
	if (c->conn != NULL && conn_start(c->conn) < 0)
		client_fail(c, "cannot read from upstream");
	leave(c);
}

static const struct conn_events imap_conn_events = {
	.data = on_data,
	.drained = NULL,
	.connected = on_connected,
	.tls_ready = on_tls_ready,
	.failed = on_failed,
};

static void
try_connect(struct imap_client *c)
{
	struct addrinfo *ai = c->next_addr;

	c->next_addr = ai->ai_next;
	c->conn = conn_connect(c->loop, ai->ai_addr, &imap_conn_events, c);
	if (c->conn == NULL)
		client_fail(c, "cannot create upstream socket");
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct resolve_req *rr = (struct resolve_req *)req;
	struct imap_client *c = rr->client;

	free(rr);
	if (c == NULL) {
		uv_freeaddrinfo(res);
		return;
	}
	c->resolve = NULL;
	c->depth++;
	if (status < 0 || res == NULL) {
		snprintf(c->text, sizeof(c->text),
			 "cannot resolve upstream %s: %s",
			 c->cfg->upstream.host, uv_strerror(status));
		client_fail(c, c->text);
	} else {
		c->addrs = c->next_addr = res;
		c->step = LOGIN_CONNECTING;
		try_connect(c);
	}
	leave(c);
}

static int
start_resolve(struct imap_client *c)
{
	struct addrinfo hints;
	char port[8];
	int r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%u", (unsigned)c->cfg->upstream.port);
	c->resolve = calloc(1, sizeof(*c->resolve));
	if (c->resolve == NULL)
		return -ENOMEM;
	c->resolve->client = c;
	r = uv_getaddrinfo(c->loop, &c->resolve->req, on_resolved,
			   c->cfg->upstream.host, port, &hints);
	if (r < 0) {
		free(c->resolve);
		c->resolve = NULL;
		return r;
	}
	c->step = LOGIN_RESOLVING;
	timer_arm(c);
	return 0;
}

/* --- login sequence ----------------------------------------------------- */

static void
login_finish(struct imap_client *c, enum imap_result res, const char *text)
{
	struct imap_cmd_cb cb = c->login_cb;

	buf_free(&c->user);
	buf_free(&c->pass);
	c->bearer = false;
	c->step = res == IMAP_OK ? LOGIN_DONE : LOGIN_IDLE;
	memset(&c->login_cb, 0, sizeof(c->login_cb));
	if (cb.done != NULL)
		cb.done(cb.ctx, res, text);
}

/* RFC 5530 codes that mean "later", not "wrong password". */
static enum imap_result
auth_failure_kind(const struct imap_client *c, enum imap_result res)
{
	static const char *const temporary[] = {
		"UNAVAILABLE", "SERVERBUG", "LIMIT", "INUSE",
	};
	size_t i;

	if (res != IMAP_NO)
		return IMAP_FAIL;
	for (i = 0; i < sizeof(temporary) / sizeof(temporary[0]); i++) {
		if (strncasecmp(c->code, temporary[i], strlen(temporary[i])) == 0)
			return IMAP_FAIL;
	}
	return IMAP_AUTHFAIL;
}

/* The login failed: what was pipelined behind it is void. */
static void
login_void_rest(struct imap_client *c)
{
	size_t i;

	for (i = 0; i < c->q_n; i++)
		memset(&c->q[(c->q_head + i) % c->q_cap].cb, 0,
		       sizeof(struct imap_cmd_cb));
	later_free(c);
	c->gate = false;
}

static void
on_login_step_done(void *ctx, enum imap_result res, const char *text)
{
	struct imap_client *c = ctx;

	if (res != IMAP_OK && c->step == LOGIN_AUTH) {
		char why[IMAP_TEXT_MAX + sizeof(c->sasl_why) + 16];

		if (c->sasl_why[0] != '\0') {
			snprintf(why, sizeof(why), "%s (%s)", text, c->sasl_why);
			text = why;
		}
		login_void_rest(c);
		login_finish(c, res == IMAP_FAIL ? IMAP_FAIL :
			     auth_failure_kind(c, res), text);
		return;
	}
	if (res != IMAP_OK) {
		login_void_rest(c);
		login_finish(c, IMAP_FAIL, text);
		return;
	}
	login_next(c);
}

static const struct imap_cmd_cb login_step_cb_template = {
	.done = on_login_step_done,
};

static int
login_step_command(struct imap_client *c, const char *args)
{
	struct imap_cmd_cb cb = login_step_cb_template;

	cb.ctx = c;
	return send_command(c, args, &cb);
}

/* ID's answer changes nothing (RFC 2971: informational). */
static const struct imap_cmd_cb ignore_cb;

/*
 * Logged in: in one round trip, the capabilities again (they change with
 * login), ID where offered, and every command given meanwhile (SELECT and
 * the listing). Not behind the login command itself: after AUTHENTICATE a
 * server may install a security layer and treat bytes that came with the
 * command as unread (Cyrus answers them again).
 */
static void
gate_open(struct imap_client *c)
{
	size_t i;
	int r;

	c->gate = true;
	imap_client_cork(c);
	r = login_step_command(c, "CAPABILITY");
	if (r == 0 && (c->caps & IMAP_CAP_ID))
		r = send_command(c, "ID (\"name\" \"" POPBRIDGE_NAME
				 "\" \"version\" \"" POPBRIDGE_VERSION
				 "\")", &ignore_cb);
	for (i = 0; i < c->n_later && r == 0 && !c->dead; i++)
		r = send_command(c, c->later[i].line, &c->later[i].cb);
	later_free(c);
	if (r < 0 && !c->dead)
		client_fail(c, "cannot send commands upstream");
	imap_client_uncork(c);
}

/* Appends one credential as an IMAP string: quoted, or a literal (split
 * into a new segment when the literal must be synchronizing). */
static int
append_astring(struct imap_client *c, struct buf *seg, const struct buf *s)
{
	enum imap_string_form form = imap_string_form(s->data, s->len);
	bool nonsync;
	int r;

	if (form == IMAP_STRING_QUOTED)
		return imap_string_append_quoted(seg, s->data, s->len);
	nonsync = (c->caps & IMAP_CAP_LITERAL_PLUS) ||
		  ((c->caps & IMAP_CAP_LITERAL_MINUS) &&
		   s->len <= IMAP_LITERAL_MINUS_MAX);
	r = imap_string_append_literal_prefix(seg, s->len, nonsync);
	if (r == 0)
		r = buf_append(seg, "\r\n", 2);
	if (r < 0)
		return r;
	if (!nonsync) {
		if (c->nsegs >= IMAP_SEGMENTS_MAX)
			return -ENOBUFS;
		c->seg_len[c->nsegs++] = seg->len;
		r = buf_append(&c->segs, seg->data, seg->len);
		if (r < 0)
			return r;
		buf_wipe(seg);
	}
	return buf_append(seg, s->data, s->len);
}

static int
build_login(struct imap_client *c, struct buf *first)
{
	struct buf seg;
	int r;

	/* Segments accumulate in c->segs; the first is sent right away. */
	buf_init_secret(&seg, IMAP_CMD_MAX);
	r = buf_append_str(&seg, "LOGIN ");
	if (r == 0)
		r = append_astring(c, &seg, &c->user);
	if (r == 0)
		r = buf_append(&seg, " ", 1);
	if (r == 0)
		r = append_astring(c, &seg, &c->pass);
	if (r == 0)
		r = buf_append(&seg, "\r\n", 2);
	if (r == 0) {
		c->seg_len[c->nsegs++] = seg.len;
		r = buf_append(&c->segs, seg.data, seg.len);
	}
	buf_free(&seg);
	if (r < 0)
		return r;
	/* Move the first segment out; the rest wait for "+" answers. */
	r = buf_append(first, c->segs.data, c->seg_len[0]);
	if (r < 0)
		return r;
	buf_consume(&c->segs, c->seg_len[0]);
	memmove(c->seg_len, c->seg_len + 1, (c->nsegs - 1) * sizeof(size_t));
	c->nsegs--;
	return 0;
}

/* "AUTHENTICATE MECH" into first, with the initial response b64 in it
 * (SASL-IR) or as the segment sent on the server's "+". */
static int
sasl_first(struct imap_client *c, struct buf *first, const char *mech,
	   const struct buf *b64)
{
	int r;

	if (c->caps & IMAP_CAP_SASL_IR)
		return buf_appendf(first, "AUTHENTICATE %s %.*s\r\n", mech,
				   (int)b64->len, b64->data);
	r = buf_appendf(first, "AUTHENTICATE %s\r\n", mech);
	if (r == 0)
		r = buf_append(&c->segs, b64->data, b64->len);
	if (r == 0)
		r = buf_append(&c->segs, "\r\n", 2);
	c->seg_len[0] = b64->len + 2;
	c->nsegs = 1;
	return r;
}

static int
build_authenticate(struct imap_client *c, struct buf *first)
{
	struct buf plain, b64;
	int r;

	/* RFC 4616: authzid NUL authcid NUL passwd, authzid left empty. */
	buf_init_secret(&plain, 2 * IMAP_CRED_MAX + 2);
	buf_init_secret(&b64, IMAP_CMD_MAX);
	r = buf_append(&plain, "", 1);
	if (r == 0)
		r = buf_append(&plain, c->user.data, c->user.len);
	if (r == 0)
		r = buf_append(&plain, "", 1);
	if (r == 0)
		r = buf_append(&plain, c->pass.data, c->pass.len);
	if (r == 0)
		r = base64_encode(&b64, plain.data, plain.len);
	if (r == 0)
		r = sasl_first(c, first, "PLAIN", &b64);
	buf_free(&plain);
	buf_free(&b64);
	return r;
}

/* AUTHENTICATE OAUTHBEARER or XOAUTH2 with the token, in the command
 * (SASL-IR) or after "+". */
static int
build_bearer(struct imap_client *c, struct buf *first)
{
	const char *name = oauth_sasl_name(c->mech);
	char user[OAUTH_SASL_NAME_MAX + 1];
	struct buf b64;
	int r;

	if (c->user.len > OAUTH_SASL_NAME_MAX ||
	    memchr(c->user.data, '\0', c->user.len) != NULL)
		return -EINVAL;
	memcpy(user, c->user.data, c->user.len);
	user[c->user.len] = '\0';
	buf_init_secret(&b64, IMAP_CMD_MAX);
	r = oauth_sasl_response_b64(&b64, c->mech, user,
				    c->cfg->upstream.host,
				    c->cfg->upstream.port, c->pass.data,
				    c->pass.len);
	if (r == 0)
		r = sasl_first(c, first, name, &b64);
	buf_free(&b64);
	return r;
}

/* The bearer login: the mechanism the server offers, then its command. */
static void
login_bearer(struct imap_client *c, struct buf *first,
	     const struct imap_cmd_cb *cb)
{
	int r;

	c->mech = oauth_sasl_pick(c->caps & IMAP_CAP_AUTH_OAUTHBEARER,
				  c->caps & IMAP_CAP_AUTH_XOAUTH2);
	c->sasl_answered = false;
	c->sasl_why[0] = '\0';
	if (c->mech == OAUTH_MECH_NONE) {
		login_finish(c, IMAP_FAIL, "upstream offers neither "
			     "AUTH=OAUTHBEARER nor AUTH=XOAUTH2");
		return;
	}
	log_debug("session=%s logging in with %s", c->sid,
		  oauth_sasl_name(c->mech));
	r = build_bearer(c, first);
	if (r == -EINVAL) {
		login_finish(c, IMAP_AUTHFAIL, "the user name or the token "
			     "cannot go into a SASL response");
		return;
	}
	c->caps_fresh = false;
	if (r == 0)
		r = start_segments(c, first, cb, true);
	if (r < 0)
		login_finish(c, IMAP_FAIL, "cannot build the login command");
}

static void
login_authenticate(struct imap_client *c)
{
	struct imap_cmd_cb cb = login_step_cb_template;
	struct buf first;
	int r;

	if (imap_string_form(c->user.data, c->user.len) == IMAP_STRING_INVALID ||
	    imap_string_form(c->pass.data, c->pass.len) == IMAP_STRING_INVALID) {
		login_finish(c, IMAP_AUTHFAIL,
			     "user name or password contains a NUL byte");
		return;
	}
	buf_init_secret(&first, IMAP_CMD_MAX);
	buf_wipe(&c->segs);
	c->nsegs = c->seg_next = 0;
	cb.ctx = c;
	if (c->bearer) {
		login_bearer(c, &first, &cb);
		buf_free(&first);
		return;
	}
	if (c->caps & IMAP_CAP_AUTH_PLAIN) {
		r = build_authenticate(c, &first);
	} else if (c->caps & IMAP_CAP_LOGINDISABLED) {
		buf_free(&first);
		login_finish(c, IMAP_FAIL,
			     "upstream refuses LOGIN and offers no AUTH=PLAIN");
		return;
	} else {
		r = build_login(c, &first);
	}
	c->caps_fresh = false;
	if (r == 0)
		r = start_segments(c, &first, &cb, true);
	buf_free(&first);
	if (r < 0)
		login_finish(c, IMAP_FAIL, "cannot build the login command");
}

static void
login_next(struct imap_client *c)
{
	int r = 0;

	switch (c->step) {
	case LOGIN_GREETING:
		c->step = LOGIN_CAPABILITY;
		r = login_step_command(c, "CAPABILITY");
		break;
	case LOGIN_CAPABILITY:
		if (c->cfg->upstream.tls == UPSTREAM_TLS_STARTTLS &&
		    !conn_tls_active(c->conn)) {
			if (!(c->caps & IMAP_CAP_STARTTLS)) {
				login_finish(c, IMAP_FAIL, "upstream does not "
					     "offer STARTTLS");
				return;
			}
			c->step = LOGIN_STARTTLS;
			r = login_step_command(c, "STARTTLS");
			break;
		}
		if (c->cfg->upstream.tls != UPSTREAM_TLS_NONE &&
		    !conn_tls_active(c->conn)) {
			/* Never send credentials in clear unless told to. */
			login_finish(c, IMAP_FAIL, "refusing to log in "
				     "without TLS");
			return;
		}
		c->step = LOGIN_AUTH;
		login_authenticate(c);
		return;
	case LOGIN_STARTTLS:
		c->starttls_now = true;
		return;
	case LOGIN_AUTH:
		/* The CAPABILITY sent first behind the login answers next. */
		c->step = LOGIN_POSTCAPA;
		gate_open(c);
		return;
	case LOGIN_POSTCAPA:
		login_finish(c, IMAP_OK, "logged in");
		return;
	case LOGIN_IDLE:
	case LOGIN_RESOLVING:
	case LOGIN_CONNECTING:
	case LOGIN_TLS:
	case LOGIN_DONE:
		/* Only the greeting (in LOGIN_GREETING) and the answers to
		 * login commands move the login on; none comes in these. */
		log_error("session=%s login cannot go on from step %d",
			  c->sid, (int)c->step);
		client_fail(c, "internal error in the login sequence");
		return;
	}
	if (r < 0)
		login_finish(c, IMAP_FAIL, c->dead ? c->error :
			     "cannot send command upstream");
}

static int
login_start(struct imap_client *c, const char *user, size_t user_len,
	    const char *pass, size_t pass_len, bool bearer,
	    const struct imap_cmd_cb *cb)
{
	int r;

	if (c->dead)
		return -ENOTCONN;
	if (c->step != LOGIN_IDLE)
		return -EBUSY;
	if (user_len > IMAP_CRED_MAX ||
	    pass_len > (bearer ? OAUTH_TOKEN_MAX : IMAP_CRED_MAX))
		return -EINVAL;
	c->bearer = bearer;
	r = buf_append(&c->user, user, user_len);
	if (r == 0)
		r = buf_append(&c->pass, pass, pass_len);
	if (r == 0)
		r = start_resolve(c);
	if (r < 0) {
		buf_wipe(&c->user);
		buf_wipe(&c->pass);
		return r;
	}
	c->login_cb = *cb;
	return 0;
}

int
imap_client_login(struct imap_client *c, const char *user, size_t user_len,
		  const char *pass, size_t pass_len,
		  const struct imap_cmd_cb *cb)
{
	return login_start(c, user, user_len, pass, pass_len, false, cb);
}

int
imap_client_login_bearer(struct imap_client *c, const char *user,
			 size_t user_len, const char *token, size_t token_len,
			 const struct imap_cmd_cb *cb)
{
	return login_start(c, user, user_len, token, token_len, true, cb);
}

static void
route_body_begin(void *ctx, const char *item, size_t item_len, uint32_t uid,
		 uint64_t size)
{
	struct imap_client *c = ctx;
	struct pending *q = q_first(c);

	(void)item;
	(void)item_len;
	if (q != NULL && q->cb.body_begin != NULL)
		q->cb.body_begin(q->cb.ctx, uid, size);
}

static void
route_body_data(void *ctx, const char *p, size_t n)
{
	struct imap_client *c = ctx;
	struct pending *q = q_first(c);

	if (q != NULL && q->cb.body_data != NULL)
		q->cb.body_data(q->cb.ctx, p, n);
}

static void
route_body_end(void *ctx)
{
	struct imap_client *c = ctx;
	struct pending *q = q_first(c);

	if (q != NULL && q->cb.body_end != NULL)
		q->cb.body_end(q->cb.ctx);
}

struct imap_client *
imap_client_new(uv_loop_t *loop, const struct config *cfg,
		struct tls_ctx *tls_ctx, const char *session_id)
{
	struct imap_client *c;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->loop = loop;
	c->cfg = cfg;
	c->tls_ctx = tls_ctx_ref(tls_ctx);
	snprintf(c->sid, sizeof(c->sid), "%s", session_id);
	buf_init_secret(&c->segs, IMAP_CMD_MAX);
	/* A pause takes effect between responses: at most a few reads wait. */
	buf_init(&c->held, 4 * CONN_READ_MAX);
	buf_init_secret(&c->user, IMAP_CRED_MAX);
	buf_init_secret(&c->pass, OAUTH_TOKEN_MAX);
	c->body.begin = route_body_begin;
	c->body.data = route_body_data;
	c->body.end = route_body_end;
	c->body.ctx = c;
	c->parser = imap_parse_new(&c->body);
	if (c->parser == NULL) {
		free(c);
		return NULL;
	}
	c->held_timer = malloc(sizeof(*c->held_timer));
	if (c->held_timer == NULL) {
		imap_parse_free(&c->parser);
		tls_ctx_unref(&c->tls_ctx);
		free(c);
		return NULL;
	}
	uv_timer_init(loop, c->held_timer);
	c->held_timer->data = c;
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	return c;
}

unsigned
imap_client_caps(const struct imap_client *c)
{
	return c->caps;
}

bool
imap_client_dead(const struct imap_client *c)
{
	return c->dead;
}

const char *
imap_client_code(const struct imap_client *c)
{
	return c->code;
}

const char *
imap_client_error(const struct imap_client *c)
{
	return c->error[0] ? c->error : "upstream connection lost";
}

void
imap_client_pause(struct imap_client *c)
{
	if (c->paused || c->conn == NULL)
		return;
	c->paused = true;
	conn_pause(c->conn);
	uv_timer_stop(&c->timer);
	uv_timer_stop(c->held_timer);
}

void
imap_client_resume(struct imap_client *c)
{
	if (!c->paused)
		return;
	c->paused = false;
	if (c->conn == NULL || c->dead)
		return;
	/* Never from inside the caller's stack: held responses may finish
	 * commands, and their callbacks must not nest in the resume. */
	if (c->held.len > 0)
		uv_timer_start(c->held_timer, on_held, 0, 0);
	else
		conn_start(c->conn);
	if (c->q_n > 0)
		timer_arm(c);
}

void
imap_client_logout(struct imap_client *c)
{
	static const char logout[] = " LOGOUT\r\n";

	if (c->dead || c->conn == NULL)
		return;
	c->tag_seq++;
	snprintf(c->tag, sizeof(c->tag), "P%u", c->tag_seq);
	conn_write(c->conn, c->tag, strlen(c->tag));
	conn_write(c->conn, logout, sizeof(logout) - 1);
	c->dead = true;
	snprintf(c->error, sizeof(c->error), "logged out");
	uv_timer_stop(&c->timer);
	conn_close(&c->conn, 1);
}

static void
on_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

static void
on_handle_closed(uv_handle_t *h)
{
	free(h);
}

static void
client_destroy(struct imap_client *c)
{
	if (c->resolve != NULL)
		c->resolve->client = NULL;
	if (c->resolve != NULL)
		uv_cancel((uv_req_t *)&c->resolve->req);
	if (c->addrs != NULL)
		uv_freeaddrinfo(c->addrs);
	conn_close(&c->conn, 0);
	imap_parse_free(&c->parser);
	tls_ctx_unref(&c->tls_ctx);
	buf_free(&c->user);
	buf_free(&c->pass);
	buf_free(&c->segs);
	buf_free(&c->held);
	later_free(c);
	free(c->q);
	uv_close((uv_handle_t *)c->held_timer, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void
imap_client_free(struct imap_client **cp)
{
	struct imap_client *c = *cp;

	if (c == NULL)
		return;
	*cp = NULL;
	c->dead = true;
	c->q_n = 0;
	later_free(c);
	memset(&c->login_cb, 0, sizeof(c->login_cb));
	if (c->depth > 0) {
		c->doomed = true;
		conn_close(&c->conn, 0);
		return;
	}
	client_destroy(c);
}
