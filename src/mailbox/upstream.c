/* upstream: what a session's upstream operations share (creation,
 * completion, SELECT, back-pressure, logout) and their public entry points;
 * the operations: upstream_open.c, upstream_fetch.c, upstream_update.c. */
#include "mailbox/upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_string.h"
#include "upstream_priv.h"
#include "util/buf.h"
#include "util/log.h"

static void
on_deferred(uv_timer_t *t)
{
	struct upstream *u = t->data;

	u->ev->done(u->ctx, u->defer_st, u->defer_why);
}

void
upstream__finish(struct upstream *u, enum upstream_status st, const char *why)
{
	u->op = OP_NONE;
	if (u->in_call == 0) {
		u->ev->done(u->ctx, st, why);
		return;
	}
	u->defer_st = st;
	snprintf(u->defer_why, sizeof(u->defer_why), "%s", why);
	uv_timer_start(u->defer, on_deferred, 0, 0);
}

/* Brackets the body of a call that starts an operation. */
static int
call_end(struct upstream *u, int r)
{
	u->in_call--;
	return r;
}

int
upstream__ready(const struct upstream *u)
{
	if (imap_client_dead(u->imap))
		return -ENOTCONN;
	return u->op == OP_NONE && !u->draining ? 0 : -EBUSY;
}

/* --- SELECT ------------------------------------------------------------- */

static bool
code_number(const struct imap_resp *r, const char *word, uint32_t *n_r)
{
	size_t wl = strlen(word);
	uint64_t v;

	if (r->code == NULL || r->code_len <= wl + 1 ||
	    strncasecmp(r->code, word, wl) != 0 || r->code[wl] != ' ' ||
	    buf_parse_u64(r->code + wl + 1, r->code_len - wl - 1, UINT32_MAX,
			  &v) < 0)
		return false;
	*n_r = (uint32_t)v;
	return true;
}

static void
on_select_untagged(void *ctx, const struct imap_resp *r)
{
	struct upstream *u = ctx;

	if (r->status == IMAP_STATUS_OK) {
		code_number(r, "UIDVALIDITY", &u->sel_uidvalidity);
		code_number(r, "UIDNEXT", &u->sel_uidnext);
	} else if (r->status == IMAP_STATUS_NONE && r->has_number &&
		   r->name_len == 6 && strncasecmp(r->name, "EXISTS", 6) == 0) {
		u->sel_exists = r->number;
	}
}

/* Only open, fetch and update SELECT (a read-ahead needs its folder
 * selected already), and each waits for the answer: unreachable. */
static void
none_after_select(struct upstream *u, enum imap_result res, const char *text)
{
	log_error("session=%s SELECT answered (%d, %s) with no operation "
		  "waiting for it (op %d)", u->sid, (int)res, text, (int)u->op);
}

static void (*const after_select[])(struct upstream *, enum imap_result,
				      const char *) = {
	[OP_NONE] = none_after_select,
	[OP_OPEN] = upstream__open_after_select,
	[OP_FETCH] = upstream__fetch_after_select,
	[OP_UPDATE] = upstream__update_after_select,
};

static void
on_select_done(void *ctx, enum imap_result res, const char *text)
{
	struct upstream *u = ctx;

	u->selected = res == IMAP_OK ? u->selecting : -1;
	u->selecting = -1;
	after_select[u->op](u, res, text);
}

int
upstream__select_folder(struct upstream *u, size_t f)
{
	const char *name = u->md->folders[f].name;
	struct imap_cmd_cb cb = {
		.untagged = on_select_untagged,
		.done = on_select_done,
		.ctx = u,
	};
	struct buf cmd;
	int r;

	/* Folder names come from the configuration, which rejects control
	 * characters; they still travel quoted, never raw. */
	buf_init(&cmd, IMAP_CMD_MAX);
	r = buf_append_str(&cmd, "SELECT ");
	if (r == 0)
		r = imap_string_append_mailbox(&cmd, name);
	if (r == 0)
		r = buf_append(&cmd, "", 1);
	if (r == 0) {
		u->selecting = (int)f;
		u->selected = -1;
		u->sel_uidvalidity = u->sel_uidnext = u->sel_exists = 0;
		r = imap_client_command(u->imap, cmd.data, &cb);
	}
	buf_free(&cmd);
	return r;
}

/* --- the operations ----------------------------------------------------- */

int
upstream_open(struct upstream *u, const char *user, size_t user_len,
	      const char *secret, size_t secret_len, enum upstream_cred cred,
	      struct maildrop *md, struct uidmap *map)
{
	u->in_call++;
	return call_end(u, upstream__start_open(u, user, user_len, secret,
						secret_len, cred, md, map));
}

int
upstream_fetch(struct upstream *u, const struct maildrop_msg *msg,
	       enum upstream_part part, uint64_t offset, uint64_t length)
{
	u->in_call++;
	return call_end(u, upstream__start_fetch(u, msg, part, offset, length));
}

int
upstream_prefetch(struct upstream *u, const struct maildrop_msg *msg,
		  enum upstream_part part, uint64_t offset, uint64_t length)
{
	u->in_call++;
	return call_end(u, upstream__start_prefetch(u, msg, part, offset,
						    length));
}

int
upstream_update(struct upstream *u)
{
	u->in_call++;
	return call_end(u, upstream__start_update(u));
}

/* --- lifecycle ---------------------------------------------------------- */

static void
on_defer_closed(uv_handle_t *h)
{
	free(h);
}

struct upstream *
upstream_new(uv_loop_t *loop, const struct config *cfg,
	     struct tls_ctx *tls_ctx, const char *session_id,
	     const struct upstream_events *ev, void *ctx)
{
	struct upstream *u;

	u = calloc(1, sizeof(*u));
	if (u == NULL)
		return NULL;
	u->loop = loop;
	u->cfg = cfg;
	snprintf(u->sid, sizeof(u->sid), "%s", session_id);
	u->ev = ev;
	u->ctx = ctx;
	u->selected = u->selecting = -1;
	u->defer = malloc(sizeof(*u->defer));
	if (u->defer == NULL) {
		free(u);
		return NULL;
	}
	uv_timer_init(loop, u->defer);
	u->defer->data = u;
	u->imap = imap_client_new(loop, cfg, tls_ctx, session_id);
	if (u->imap == NULL) {
		uv_close((uv_handle_t *)u->defer, on_defer_closed);
		free(u);
		return NULL;
	}
	return u;
}

void
upstream_free(struct upstream **up)
{
	struct upstream *u = *up;

	if (u == NULL)
		return;
	*up = NULL;
	/* A deferred completion dies with u: nobody waits for it now. */
	uv_timer_stop(u->defer);
	uv_close((uv_handle_t *)u->defer, on_defer_closed);
	upstream__update_clear(u);
	imap_client_free(&u->imap);
	upstream__open_clear(u);
	if (u->cb_depth > 0) {
		/* Freed from inside a data event: the rest when it returns. */
		u->doomed = true;
		return;
	}
	upstream__window_free(u);
	free(u);
}

bool
upstream__leave(struct upstream *u)
{
	if (--u->cb_depth > 0 || !u->doomed)
		return !u->doomed;
	upstream__window_free(u);
	free(u);
	return false;
}

void
upstream_cork(struct upstream *u)
{
	imap_client_cork(u->imap);
}

void
upstream_uncork(struct upstream *u)
{
	imap_client_uncork(u->imap);
}

void
upstream_pause(struct upstream *u)
{
	u->client_paused = true;
	upstream__reading_update(u);
}

void
upstream_resume(struct upstream *u)
{
	/* A reply fetched ahead stays unread until it is asked for. */
	u->client_paused = false;
	upstream__reading_update(u);
}

uint64_t
upstream_fetched(const struct upstream *u)
{
	return u->fetched;
}

bool
upstream_alive(const struct upstream *u)
{
	return !imap_client_dead(u->imap);
}

void
upstream_logout(struct upstream *u)
{
	imap_client_logout(u->imap);
}
