/* RETR and TOP: message bytes from the upstream through the dot-stuffer to
 * the client, back-pressure both ways, what a transfer teaches the UID
 * map, and reading the next message ahead. */
#include "pop3/prefetch.h"
#include "session_priv.h"
#include "util/error.h"
#include "util/log.h"

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

void
pop3_xfer_retr(struct session *s, struct maildrop_msg *m, uint32_t n)
{
	s->msg = m;
	s->msg_n = n;
	if (!upstream_usable(s))
		return;
	s->in_order = s->last_retr + 1 == n;
	s->last_retr = n;
	xfer_begin(s);
	/* The RETR and what is asked for ahead behind it: one write. */
	upstream_cork(s->up);
	start_fetch(s, WAIT_RETR, UPSTREAM_WHOLE, 0, 0);
	if (s->wait == WAIT_RETR)
		pop3_xfer_window_fill(s, n, false, s->in_order);
	if (s->up != NULL)
		upstream_uncork(s->up);
}

void
pop3_xfer_top(struct session *s, struct maildrop_msg *m, uint32_t n,
	      uint32_t lines)
{
	s->msg = m;
	s->msg_n = n;
	if (!upstream_usable(s))
		return;
	xfer_begin(s);
	s->top_lines = lines;
	s->top_offset = 0;
	s->top_chunk = SESSION_TOP_CHUNK_MIN;
	upstream_cork(s->up);
	start_fetch(s, WAIT_TOP_HEADER, UPSTREAM_HEADER, 0, 0);
	if (lines == 0 && s->wait == WAIT_TOP_HEADER) {
		/* Mail filters send TOP n 0 for every message. */
		s->in_order = s->last_top + 1 == n;
		s->last_top = n;
		pop3_xfer_window_fill(s, n, true, s->in_order);
	}
	if (s->up != NULL)
		upstream_uncork(s->up);
}

void
pop3_xfer_resume(struct session *s)
{
	if (!s->xfer_paused)
		return;
	s->xfer_paused = false;
	upstream_resume(s->up);
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
	int w;

	used = dotstuff_feed_iov(&s->ds, p, n, v, SESSION_XFER_SEGS, &cnt);
	for (k = 0; k < cnt; k++)
		s->bytes_out += v[k].iov_len;
	w = conn_writev(s->client, v, cnt);
	if (w < 0)
		return w;
	if (used == n || s->ds.limit_reached)
		return 0;
	out = conn_outbuf(s->client);
	before = out->len;
	/* One allocation for the stuffed rest instead of doublings. */
	buf_reserve(out, (n - used) + (n - used) / 8 + 16);
	r = dotstuff_feed(&s->ds, p + used, n - used, out);
	if (r < 0)
		return (int)r;
	s->bytes_out += out->len - before;
	return 0;
}

void
pop3_xfer_data(struct session *s, const char *p, size_t n)
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
	pop3_xfer_resume(s);
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
	session_reply_temp(s, "mail server failed", why);
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
 * The fetch window. A client that takes the maildrop in order (RETR 1, or
 * the message after the one it took last), or that sent its next commands
 * already, most likely asks for the next messages next: ask the server for
 * them now, so that their bytes are waiting when the RETRs come instead of
 * a round trip each. Anything else the client does first costs reading
 * those replies away (at most read_ahead MB).
 */
void
pop3_xfer_window_fill(struct session *s, uint32_t after, bool header,
		      bool in_order)
{
	struct prefetch_item plan[SESSION_PLAN_MAX];
	size_t n, i;
	int r;

	if (s->client == NULL || s->up == NULL ||
	    s->cfg->upstream.read_ahead == 0)
		return;
	n = prefetch_plan(&s->md, after, header, in_order, s->in.data,
			  s->in.len, plan, SESSION_PLAN_MAX);
	upstream_cork(s->up);
	for (i = 0; i < n; i++) {
		struct maildrop_msg *m = maildrop_get(&s->md, plan[i].n);

		if (m == NULL)
			continue;
		r = upstream_prefetch(s->up, m, plan[i].header ?
				      UPSTREAM_HEADER : UPSTREAM_WHOLE, 0, 0);
		if (r < 0 && r != -EEXIST)
			break;
	}
	if (s->up != NULL)
		upstream_uncork(s->up);
}

void
pop3_xfer_retr_done(struct session *s, enum upstream_status st, const char *why)
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
	pop3_xfer_window_fill(s, s->msg_n, false, s->in_order);
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

void
pop3_xfer_top_done(struct session *s, enum upstream_status st, const char *why)
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
			if (s->top_lines == 0)
				pop3_xfer_window_fill(s, s->msg_n, true,
						      s->in_order);
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
