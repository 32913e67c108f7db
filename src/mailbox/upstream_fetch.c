/* upstream_fetch: message fetches by UID FETCH, and the fetch window: the
 * FETCHes asked for ahead (the messages a client will most likely want
 * next, within the read_ahead budget), pipelined so the link never idles,
 * their replies left in the socket until the session asks for them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "upstream_priv.h"
#include "util/log.h"

/* What a header costs against the budget when only the size is known. */
#define HEADER_COST_MAX (64u * 1024)

static void fetch_begin(struct upstream *u);

static struct fetch_req *
win_at(struct upstream *u, size_t i)
{
	return &u->win[(u->win_head + i) % UPSTREAM_WINDOW_MAX];
}

/* The request the session waits for, or NULL. */
static struct fetch_req *
win_wanted(struct upstream *u)
{
	size_t i;

	for (i = 0; i < u->win_n; i++) {
		if (win_at(u, i)->role == REQ_WANTED)
			return win_at(u, i);
	}
	return NULL;
}

/* The oldest request whose FETCH response has not come yet: the next
 * response is most likely its. */
static struct fetch_req *
win_cursor(struct upstream *u)
{
	size_t i;

	for (i = 0; i < u->win_n; i++) {
		if (!win_at(u, i)->body_done)
			return win_at(u, i);
	}
	return NULL;
}

/* The first request still waiting for the body of message uid. */
static struct fetch_req *
win_by_uid(struct upstream *u, uint32_t uid)
{
	size_t i;

	for (i = 0; i < u->win_n; i++) {
		struct fetch_req *q = win_at(u, i);

		if (!q->body_done && q->msg->uid == uid)
			return q;
	}
	return NULL;
}

void
upstream__reading_update(struct upstream *u)
{
	struct fetch_req *next = win_cursor(u);
	bool waiting = next != NULL && next->role == REQ_AHEAD;

	if (u->client_paused || waiting)
		imap_client_pause(u->imap);
	else
		imap_client_resume(u->imap);
}

/*
 * A reply for a request nobody asked for yet came although reading was on
 * for an earlier one: the server answered out of order, or a body was for
 * another message. It is read away, and a fetch of it later asks again.
 */
static void
consumed_early(struct upstream *u, struct fetch_req *q)
{
	if (q == NULL || q->role != REQ_AHEAD)
		return;
	u->ahead_bytes -= q->cost;
	q->role = REQ_DROP;
}

static void
on_body_begin(void *ctx, uint32_t uid, uint64_t size)
{
	struct upstream *u = ((struct fetch_req *)ctx)->u;
	struct fetch_req *q;

	(void)size;
	/* Replies are matched by UID: a body for no request is not ours.
	 * When the UID comes after the data, it is checked at the end. */
	q = uid != 0 ? win_by_uid(u, uid) : win_cursor(u);
	u->streaming = q;
	if (q == NULL)
		return;
	consumed_early(u, q);
	q->got_body = true;
	if (uid == 0)
		q->unverified = true;
}

/* Message bytes to the session, which may end (and free u) meanwhile:
 * false then, and u must not be touched again. */
static bool
deliver(struct fetch_req *q, const char *p, size_t n)
{
	struct upstream *u = q->u;

	if (q->role != REQ_WANTED || q->finished || n == 0)
		return true;
	q->fetched += n;
	u->fetched = q->fetched;
	u->cb_depth++;
	u->ev->data(u->ctx, p, n);
	return upstream__leave(u);
}

static void
on_body_data(void *ctx, const char *p, size_t n)
{
	struct upstream *u = ((struct fetch_req *)ctx)->u;

	if (u->streaming != NULL)
		(void)deliver(u->streaming, p, n);
}

static void
on_body_end(void *ctx)
{
	(void)ctx;
}

/*
 * A small body may come as a quoted string instead of a literal, and an
 * empty one in any form: "" (Cyrus), {0}, NIL, or the item with no value
 * at all (GNU Mailutils, for a partial past the end). Zero octets are a
 * normal answer, never data to send.
 */
static bool
fetch_value(struct fetch_req *q, const struct imap_arg *v)
{
	if (v == NULL) {
		/* The item named with no value: the server knows the message
		 * and has no octets of it to give. */
		q->got_body = true;
		return true;
	}
	if (v->type == IMAP_ARG_NIL) {
		/* Past the end of the text: nothing more. NIL for a whole
		 * message or its header is how Dovecot answers for a message
		 * expunged by someone else: not ours to send. */
		if (q->part == UPSTREAM_TEXT)
			q->got_body = true;
		return true;
	}
	if (v->type != IMAP_ARG_STRING)
		return true;
	q->got_body = true;
	return deliver(q, v->str, v->len);
}

/* The session has the wanted fetch's outcome; its tagged answer, when it
 * comes later, changes nothing. */
static void
wanted_finish(struct upstream *u, struct fetch_req *q,
	      enum upstream_status st, const char *why)
{
	q->finished = true;
	upstream__finish(u, st, why);
}

/* A FETCH response with a body for q ended: the message is complete. */
static void
body_complete(struct upstream *u, struct fetch_req *q)
{
	q->body_done = true;
	if (!imap_client_dead(u->imap))
		upstream__reading_update(u);
	/* Last: the session may end with the outcome. */
	if (q->role == REQ_WANTED && !q->finished)
		wanted_finish(u, q, q->wrong_uid ? UPSTREAM_TEMP : UPSTREAM_OK,
			      q->wrong_uid ? "upstream sent another message's "
			      "data" : "fetched");
}

static void
on_fetch_untagged(void *ctx, const struct imap_resp *r)
{
	struct upstream *u = ((struct fetch_req *)ctx)->u;
	struct fetch_req *streamed = u->streaming, *q;
	const struct imap_arg *uid, *k, *v;
	uint64_t uv;
	size_t i = 0;

	u->streaming = NULL;
	if (r->status != IMAP_STATUS_NONE || r->name_len != 5 ||
	    strncasecmp(r->name, "FETCH", 5) != 0 || r->nargs < 1 ||
	    r->args[0].type != IMAP_ARG_LIST)
		return;
	uid = imap_fetch_item(r, "UID");
	if (uid == NULL || imap_arg_number(uid, &uv) < 0 || uv > UINT32_MAX)
		return;
	q = win_by_uid(u, (uint32_t)uv);
	if (streamed != NULL && streamed->unverified && streamed != q) {
		/* Data already streamed belonged to another message. */
		streamed->wrong_uid = true;
		body_complete(u, streamed);
		return;
	}
	if (q == NULL)
		return;
	consumed_early(u, q);
	q->unverified = false;
	while (i < r->args[0].count) {
		i = imap_fetch_next(&r->args[0], i, &k, &v);
		if (imap_arg_is_body_item(k) && q != streamed) {
			if (!fetch_value(q, v))
				return;
		} else if (imap_arg_is_body_item(k) && v != NULL &&
			   v->type == IMAP_ARG_STRING && v->len > 0) {
			if (!deliver(q, v->str, v->len))
				return;
		}
	}
	if (q->got_body)
		body_complete(u, q);
}

/* A NO is "gone" only when the server says so (RFC 5530 codes); anything
 * else is a failure, and the session must end without touching mail. */
static bool
fetch_no_means_gone(const struct upstream *u)
{
	const char *code = imap_client_code(u->imap);

	return strncasecmp(code, "EXPUNGEISSUED", 13) == 0 ||
	       strncasecmp(code, "NONEXISTENT", 11) == 0;
}

/* The outcome of a wanted fetch whose response brought no body. */
static void
wanted_done(struct upstream *u, struct fetch_req *q, enum imap_result res,
	    const char *text)
{
	if (res == IMAP_NO && fetch_no_means_gone(u))
		wanted_finish(u, q, UPSTREAM_GONE,
			      "message is no longer on the server");
	else if (res != IMAP_OK)
		wanted_finish(u, q, UPSTREAM_TEMP, text);
	else
		wanted_finish(u, q, UPSTREAM_GONE,
			      "message is no longer on the server");
}

/* The window emptied while an operation waited for it: it starts now. */
static void
drain_done(struct upstream *u)
{
	int r;

	u->draining = false;
	if (u->next.op == OP_UPDATE) {
		r = upstream__start_update(u);
		if (r < 0)
			upstream__finish(u, UPSTREAM_TEMP,
					 imap_client_error(u->imap));
		return;
	}
	fetch_begin(u);
}

static void
on_fetch_done(void *ctx, enum imap_result res, const char *text)
{
	struct fetch_req *q = ctx, done;
	struct upstream *u = q->u;

	/* Tagged answers come in order: this is the oldest request. */
	done = *q;
	if (u->streaming == q)
		u->streaming = NULL;
	u->win_head = (u->win_head + 1) % UPSTREAM_WINDOW_MAX;
	u->win_n--;
	if (done.role == REQ_AHEAD)
		u->ahead_bytes -= done.cost;
	if (!imap_client_dead(u->imap))
		upstream__reading_update(u);
	if (done.role == REQ_WANTED && !done.finished) {
		if (done.got_body && res == IMAP_OK)
			wanted_finish(u, &done, UPSTREAM_OK, text);
		else if (done.got_body && res == IMAP_FAIL)
			wanted_finish(u, &done, UPSTREAM_TEMP, text);
		else
			wanted_done(u, &done, res, text);
	} else if (u->win_n == 0 && u->draining) {
		drain_done(u);
	}
}

static int
req_send(struct upstream *u, struct fetch_req *q)
{
	struct imap_cmd_cb cb = {
		.untagged = on_fetch_untagged,
		.body_begin = on_body_begin,
		.body_data = on_body_data,
		.body_end = on_body_end,
		.done = on_fetch_done,
		.ctx = q,
	};
	char cmd[128];

	switch (q->part) {
	case UPSTREAM_WHOLE:
		snprintf(cmd, sizeof(cmd), "UID FETCH %u (UID BODY.PEEK[])",
			 (unsigned)q->msg->uid);
		break;
	case UPSTREAM_HEADER:
		snprintf(cmd, sizeof(cmd),
			 "UID FETCH %u (UID BODY.PEEK[HEADER])",
			 (unsigned)q->msg->uid);
		break;
	case UPSTREAM_TEXT:
		snprintf(cmd, sizeof(cmd),
			 "UID FETCH %u (UID BODY.PEEK[TEXT]<%llu.%llu>)",
			 (unsigned)q->msg->uid, (unsigned long long)q->offset,
			 (unsigned long long)q->length);
		break;
	}
	return imap_client_command(u->imap, cmd, &cb);
}

static uint64_t
req_cost(const struct maildrop_msg *msg, enum upstream_part part,
	 uint64_t length)
{
	switch (part) {
	case UPSTREAM_WHOLE:
		return msg->size;
	case UPSTREAM_HEADER:
		return msg->size < HEADER_COST_MAX ? msg->size : HEADER_COST_MAX;
	case UPSTREAM_TEXT:
		return length;
	}
	return msg->size;
}

/* Appends a request to the window and sends it: 0, or the send's error
 * (nothing is added then). */
static int
win_push(struct upstream *u, const struct maildrop_msg *msg,
	 enum upstream_part part, uint64_t offset, uint64_t length,
	 enum fetch_role role)
{
	struct fetch_req *q;
	int r;

	if (u->win == NULL) {
		u->win = calloc(UPSTREAM_WINDOW_MAX, sizeof(*u->win));
		if (u->win == NULL)
			return -ENOMEM;
	}
	if (u->win_n == UPSTREAM_WINDOW_MAX)
		return -ENOBUFS;
	q = win_at(u, u->win_n);
	*q = (struct fetch_req){
		.u = u, .msg = msg, .part = part, .offset = offset,
		.length = length, .role = role,
		.cost = req_cost(msg, part, length),
	};
	u->win_n++;
	if (role == REQ_AHEAD)
		u->ahead_bytes += q->cost;
	r = req_send(u, q);
	if (r < 0) {
		/* Not sent: it was the newest, and nothing answered it. */
		u->win_n--;
		if (role == REQ_AHEAD)
			u->ahead_bytes -= q->cost;
	}
	return r;
}

/* Every request still in the window is read away unread. */
static void
win_drop_all(struct upstream *u, size_t upto)
{
	size_t i;

	for (i = 0; i < upto; i++) {
		struct fetch_req *q = win_at(u, i);

		if (q->role == REQ_AHEAD)
			u->ahead_bytes -= q->cost;
		q->role = REQ_DROP;
	}
}

/* The request asked for ahead that matches, as an index, or -1. */
static long
win_find(struct upstream *u, const struct maildrop_msg *msg,
	 enum upstream_part part, uint64_t offset, uint64_t length)
{
	size_t i;

	for (i = 0; i < u->win_n; i++) {
		const struct fetch_req *q = win_at(u, i);

		if (q->role == REQ_AHEAD && q->msg == msg && q->part == part &&
		    (part != UPSTREAM_TEXT ||
		     (q->offset == offset && q->length == length)))
			return (long)i;
	}
	return -1;
}

/* Starts the fetch saved in u->next on an empty window. */
static void
fetch_begin(struct upstream *u)
{
	int r;

	u->op = OP_FETCH;
	u->fetched = 0;
	if (u->selected == (int)u->next.msg->folder) {
		r = win_push(u, u->next.msg, u->next.part, u->next.offset,
			     u->next.length, REQ_WANTED);
		if (r < 0)
			upstream__finish(u, UPSTREAM_TEMP,
					 imap_client_error(u->imap));
		return;
	}
	if (upstream__select_folder(u, u->next.msg->folder) < 0)
		upstream__finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

void
upstream__fetch_after_select(struct upstream *u, enum imap_result res,
			     const char *text)
{
	const struct maildrop_msg *msg = u->next.msg;

	if (res != IMAP_OK) {
		upstream__finish(u, UPSTREAM_TEMP, text);
		return;
	}
	if (u->sel_uidvalidity != u->md->folders[msg->folder].uidvalidity) {
		upstream__finish(u, UPSTREAM_GONE,
				 "folder was rebuilt on the server");
		return;
	}
	if (win_push(u, msg, u->next.part, u->next.offset, u->next.length,
		     REQ_WANTED) < 0)
		upstream__finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

static void
next_set(struct upstream *u, enum upstream_op op,
	 const struct maildrop_msg *msg, enum upstream_part part,
	 uint64_t offset, uint64_t length)
{
	u->next.op = op;
	u->next.msg = msg;
	u->next.part = part;
	u->next.offset = offset;
	u->next.length = length;
}

int
upstream__start_fetch(struct upstream *u, const struct maildrop_msg *msg,
		      enum upstream_part part, uint64_t offset,
		      uint64_t length)
{
	long j;
	int r = upstream__ready(u);

	if (r < 0)
		return r;
	j = win_find(u, msg, part, offset, length);
	if (j >= 0) {
		/* Asked for ahead: its reply is on its way. Those before it
		 * are read away. */
		win_drop_all(u, (size_t)j);
		win_at(u, (size_t)j)->role = REQ_WANTED;
		u->ahead_bytes -= win_at(u, (size_t)j)->cost;
		u->op = OP_FETCH;
		u->fetched = 0;
		upstream__reading_update(u);
		return 0;
	}
	next_set(u, OP_FETCH, msg, part, offset, length);
	win_drop_all(u, u->win_n);
	if (u->win_n > 0 && u->selected == (int)msg->folder) {
		/* Behind the replies being read away, in the same folder. */
		u->op = OP_FETCH;
		u->fetched = 0;
		r = win_push(u, msg, part, offset, length, REQ_WANTED);
		if (r < 0)
			u->op = OP_NONE;
		upstream__reading_update(u);
		return r;
	}
	if (u->win_n > 0) {
		/* Another folder: SELECT once the window is empty. */
		u->draining = true;
		upstream__reading_update(u);
		return 0;
	}
	fetch_begin(u);
	return 0;
}

int
upstream__start_prefetch(struct upstream *u, const struct maildrop_msg *msg,
			 enum upstream_part part, uint64_t offset,
			 uint64_t length)
{
	uint64_t budget = (uint64_t)u->cfg->upstream.read_ahead << 20;
	uint64_t cost = req_cost(msg, part, length);
	int r;

	if (imap_client_dead(u->imap))
		return -ENOTCONN;
	if ((u->op != OP_NONE && u->op != OP_FETCH) || u->draining ||
	    u->selecting >= 0)
		return -EBUSY;
	/* The running fetch's folder, selected and settled. */
	if (u->selected != (int)msg->folder ||
	    (u->op == OP_FETCH && win_wanted(u) == NULL))
		return -EINVAL;
	if (win_find(u, msg, part, offset, length) >= 0)
		return -EEXIST;
	if (u->ahead_bytes + cost > budget ||
	    u->win_n >= UPSTREAM_WINDOW_MAX)
		return -ENOBUFS;
	r = win_push(u, msg, part, offset, length, REQ_AHEAD);
	if (r == 0)
		upstream__reading_update(u);
	return r;
}

bool
upstream__window_hold_update(struct upstream *u)
{
	if (u->win_n == 0 || imap_client_dead(u->imap))
		return false;
	next_set(u, OP_UPDATE, NULL, UPSTREAM_WHOLE, 0, 0);
	win_drop_all(u, u->win_n);
	u->draining = true;
	upstream__reading_update(u);
	return true;
}

void
upstream__window_free(struct upstream *u)
{
	free(u->win);
	u->win = NULL;
	u->win_n = 0;
}
