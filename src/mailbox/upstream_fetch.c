/* upstream_fetch: one message or part streamed by UID FETCH, and the
 * read-ahead (the next message asked for early, its reply left unread in
 * the socket until the client wants it). */
#include <errno.h>
#include <stdio.h>
#include <strings.h>

#include "upstream_priv.h"

static int fetch_send(struct upstream *u);
static void ahead_done(struct upstream *u);

static void
on_body_begin(void *ctx, uint32_t uid, uint64_t size)
{
	struct upstream *u = ctx;

	(void)size;
	/* Replies are matched by UID: a body for another message is not ours.
	 * When the UID comes after the data, it is checked at the end. */
	u->ignoring = uid != 0 && uid != u->msg->uid;
	if (!u->ignoring)
		u->got_body = true;
	if (uid == 0)
		u->unverified = true;
}

static void
on_body_data(void *ctx, const char *p, size_t n)
{
	struct upstream *u = ctx;

	if (u->ignoring || u->op == OP_AHEAD || n == 0)
		return;
	u->fetched += n;
	u->ev->data(u->ctx, p, n);
}

static void
on_body_end(void *ctx)
{
	struct upstream *u = ctx;

	u->ignoring = false;
}

/*
 * A small body may come as a quoted string instead of a literal, and an
 * empty one in any form: "" (Cyrus), {0}, NIL, or the item with no value
 * at all (GNU Mailutils, for a partial past the end). Zero octets are a
 * normal answer, never data to send.
 */
static void
fetch_value(struct upstream *u, const struct imap_arg *v)
{
	if (v == NULL) {
		/* The item named with no value: the server knows the message
		 * and has no octets of it to give. */
		u->got_body = true;
		return;
	}
	if (v->type == IMAP_ARG_NIL) {
		/* Past the end of the text: nothing more. NIL for a whole
		 * message or its header is how Dovecot answers for a message
		 * expunged by someone else: not ours to send. */
		if (u->part == UPSTREAM_TEXT)
			u->got_body = true;
		return;
	}
	if (v->type != IMAP_ARG_STRING)
		return;
	u->got_body = true;
	if (u->op == OP_AHEAD || v->len == 0)
		return;
	u->fetched += v->len;
	u->ev->data(u->ctx, v->str, v->len);
}

static void
on_fetch_untagged(void *ctx, const struct imap_resp *r)
{
	struct upstream *u = ctx;
	const struct imap_arg *uid, *k, *v;
	uint64_t uv;
	size_t i = 0;

	if (r->status != IMAP_STATUS_NONE || r->name_len != 5 ||
	    strncasecmp(r->name, "FETCH", 5) != 0 || r->nargs < 1 ||
	    r->args[0].type != IMAP_ARG_LIST)
		return;
	uid = imap_fetch_item(r, "UID");
	if (uid == NULL || imap_arg_number(uid, &uv) < 0 || uv != u->msg->uid) {
		/* Data already streamed belonged to another message. */
		if (u->unverified && uid != NULL)
			u->wrong_uid = true;
		u->unverified = false;
		return;
	}
	u->unverified = false;
	while (i < r->args[0].count) {
		i = imap_fetch_next(&r->args[0], i, &k, &v);
		if (imap_arg_is_body_item(k))
			fetch_value(u, v);
	}
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

static void
on_fetch_done(void *ctx, enum imap_result res, const char *text)
{
	struct upstream *u = ctx;

	if (u->op == OP_AHEAD)
		ahead_done(u);
	else if (u->wrong_uid)
		upstream__finish(u, UPSTREAM_TEMP,
				 "upstream sent another message's data");
	else if (res == IMAP_NO && fetch_no_means_gone(u))
		upstream__finish(u, UPSTREAM_GONE,
				 "message is no longer on the server");
	else if (res != IMAP_OK)
		upstream__finish(u, UPSTREAM_TEMP, text);
	else if (!u->got_body)
		upstream__finish(u, UPSTREAM_GONE,
				 "message is no longer on the server");
	else
		upstream__finish(u, UPSTREAM_OK, text);
}

void
upstream__fetch_after_select(struct upstream *u, enum imap_result res,
			     const char *text)
{
	if (res != IMAP_OK) {
		upstream__finish(u, UPSTREAM_TEMP, text);
		return;
	}
	if (u->sel_uidvalidity != u->md->folders[u->msg->folder].uidvalidity) {
		upstream__finish(u, UPSTREAM_GONE,
				 "folder was rebuilt on the server");
		return;
	}
	if (fetch_send(u) < 0)
		upstream__finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

static int
fetch_send(struct upstream *u)
{
	struct imap_cmd_cb cb = {
		.untagged = on_fetch_untagged,
		.body_begin = on_body_begin,
		.body_data = on_body_data,
		.body_end = on_body_end,
		.done = on_fetch_done,
		.ctx = u,
	};
	char cmd[128];

	switch (u->part) {
	case UPSTREAM_WHOLE:
		snprintf(cmd, sizeof(cmd), "UID FETCH %u (UID BODY.PEEK[])",
			 (unsigned)u->msg->uid);
		break;
	case UPSTREAM_HEADER:
		snprintf(cmd, sizeof(cmd),
			 "UID FETCH %u (UID BODY.PEEK[HEADER])",
			 (unsigned)u->msg->uid);
		break;
	case UPSTREAM_TEXT:
		snprintf(cmd, sizeof(cmd),
			 "UID FETCH %u (UID BODY.PEEK[TEXT]<%llu.%llu>)",
			 (unsigned)u->msg->uid, (unsigned long long)u->offset,
			 (unsigned long long)u->length);
		break;
	}
	return imap_client_command(u->imap, cmd, &cb);
}

static void
fetch_prepare(struct upstream *u, enum upstream_op op,
	      const struct maildrop_msg *msg, enum upstream_part part,
	      uint64_t offset, uint64_t length)
{
	u->op = op;
	u->msg = msg;
	u->part = part;
	u->offset = offset;
	u->length = length;
	u->got_body = u->ignoring = false;
	u->unverified = u->wrong_uid = false;
	u->fetched = 0;
}

/* Defers an operation until the reply fetched ahead has been read away. */
static void
ahead_drain(struct upstream *u, enum upstream_op op,
	    const struct maildrop_msg *msg, enum upstream_part part,
	    uint64_t offset, uint64_t length)
{
	u->next.op = op;
	u->next.msg = msg;
	u->next.part = part;
	u->next.offset = offset;
	u->next.length = length;
	if (!u->draining) {
		u->draining = true;
		imap_client_resume(u->imap);
	}
}

int
upstream__start_fetch(struct upstream *u, const struct maildrop_msg *msg,
		      enum upstream_part part, uint64_t offset,
		      uint64_t length)
{
	int r;

	if (u->op == OP_AHEAD && !u->draining && msg == u->msg &&
	    part == UPSTREAM_WHOLE) {
		/* The reply is waiting: take it from where it stands. */
		u->op = OP_FETCH;
		imap_client_resume(u->imap);
		return 0;
	}
	if (u->op == OP_AHEAD && !imap_client_dead(u->imap)) {
		ahead_drain(u, OP_FETCH, msg, part, offset, length);
		return 0;
	}
	r = upstream__ready(u);
	if (r < 0)
		return r;
	fetch_prepare(u, OP_FETCH, msg, part, offset, length);
	if (u->selected == (int)msg->folder) {
		if (fetch_send(u) < 0)
			upstream__finish(u, UPSTREAM_TEMP,
					 imap_client_error(u->imap));
		return 0;
	}
	r = upstream__select_folder(u, msg->folder);
	if (r < 0)
		u->op = OP_NONE;
	return r;
}

int
upstream__start_read_ahead(struct upstream *u, const struct maildrop_msg *msg)
{
	int r = upstream__ready(u);

	if (r < 0)
		return r;
	/* One command, no SELECT: its reply is all that waits unread. */
	if (u->selected != (int)msg->folder)
		return -EINVAL;
	fetch_prepare(u, OP_AHEAD, msg, UPSTREAM_WHOLE, 0, 0);
	u->draining = false;
	r = fetch_send(u);
	if (r < 0) {
		u->op = OP_NONE;
		return r;
	}
	imap_client_pause(u->imap);
	return 0;
}

/* The reply fetched ahead has ended: read away, or the connection failed
 * while it waited. The operation asked for meanwhile starts now. */
static void
ahead_done(struct upstream *u)
{
	bool drained = u->draining;
	int r;

	u->op = OP_NONE;
	u->draining = false;
	if (!drained)
		return;
	if (u->next.op == OP_UPDATE)
		r = upstream__start_update(u);
	else
		r = upstream__start_fetch(u, u->next.msg, u->next.part,
					  u->next.offset, u->next.length);
	if (r < 0)
		upstream__finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

bool
upstream__ahead_waiting(const struct upstream *u)
{
	return u->op == OP_AHEAD && !u->draining;
}

bool
upstream__ahead_hold_update(struct upstream *u)
{
	if (u->op != OP_AHEAD || imap_client_dead(u->imap))
		return false;
	ahead_drain(u, OP_UPDATE, NULL, UPSTREAM_WHOLE, 0, 0);
	return true;
}
