#include "mailbox/upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/buf.h"
#include "imap/imap_string.h"
#include "util/log.h"
#include "mailbox/quit_plan.h"
#include "mailbox/snapshot.h"

/* A UID set per STORE/EXPUNGE stays below this, well inside any server's
 * line limit. */
#define UPSTREAM_UIDSET_MAX 4000
/* Commands one chunk of deletions needs at most (COPY, STORE, EXPUNGE). */
#define UPSTREAM_CHUNK_CMDS 3

/* QUIT's work per folder: the deletions, then \Seen for mark_seen. */
enum {
	PASS_DELETE = 0,
	PASS_SEEN,
	PASS_END,
};

enum upstream_op {
	OP_NONE = 0,
	OP_OPEN,
	OP_FETCH,
	OP_UPDATE,
	OP_AHEAD,	/* a fetch asked for ahead, unread until wanted */
};

struct upstream {
	uv_loop_t *loop;
	/* A completion reached while an operation's own call is still on the
	 * stack waits for the loop's next turn (the header's promise). */
	unsigned in_call;
	uv_timer_t *defer;		/* freed in its close callback */
	enum upstream_status defer_st;
	char defer_why[160];
	const struct config *cfg;
	char sid[32];
	const struct upstream_events *ev;
	void *ctx;
	struct imap_client *imap;
	struct maildrop *md;
	enum upstream_op op;
	int selected;			/* folder index, -1 for none */
	int selecting;			/* folder being selected, -1 */
	uint32_t sel_uidvalidity, sel_uidnext, sel_exists;

	/* open */
	struct uidmap *map;		/* the account's, borrowed */
	size_t folder;			/* folder being listed */
	struct uidmap_current *cur;	/* its listing */
	struct uidmap_folder *known;	/* its map, unless it was rebuilt */
	size_t n_cur, cap_cur;
	uint32_t *window;		/* since = date: SEARCH result */
	size_t n_window;
	struct uidmap_hasher *hasher;
	struct uidmap_current *hashing;
	bool open_oom;

	/* fetch */
	const struct maildrop_msg *msg;
	enum upstream_part part;
	uint64_t offset, length;
	bool got_body, ignoring;
	bool unverified;		/* streaming began before the UID came */
	bool wrong_uid;			/* ... and it was another message's */
	uint64_t fetched;

	/* read-ahead: while op is OP_AHEAD, the reply to a fetch of msg
	 * waits in the socket; draining, it is read and dropped before the
	 * operation saved in next starts. */
	bool draining;
	struct {
		enum upstream_op op;	/* OP_FETCH or OP_UPDATE */
		const struct maildrop_msg *msg;
		enum upstream_part part;
		uint64_t offset, length;
	} next;

	/* update */
	size_t upd_folder, upd_pos;
	int upd_pass;
	char *chunk_cmds[UPSTREAM_CHUNK_CMDS];
	size_t chunk_n, chunk_next;
	bool upd_failed;
	bool hide_deleted;		/* a plan left deleted messages upstream */
};

static void update_next(struct upstream *u);
static int start_update(struct upstream *u);
static int fetch_send(struct upstream *u);
static void open_next_folder(struct upstream *u);

static void
on_deferred(uv_timer_t *t)
{
	struct upstream *u = t->data;

	u->ev->done(u->ctx, u->defer_st, u->defer_why);
}

static void
finish(struct upstream *u, enum upstream_status st, const char *why)
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

static void (*const after_select[])(struct upstream *, enum imap_result,
				      const char *);

static void
on_select_done(void *ctx, enum imap_result res, const char *text)
{
	struct upstream *u = ctx;

	u->selected = res == IMAP_OK ? u->selecting : -1;
	u->selecting = -1;
	after_select[u->op](u, res, text);
}

static int
select_folder(struct upstream *u, size_t f)
{
	const char *name = u->md->folders[f].name;
	struct imap_cmd_cb cb = {
		.untagged = on_select_untagged,
		.done = on_select_done,
		.ctx = u,
	};
	struct buf cmd;
	int r = -1;

	/* Folder names come from the configuration, which rejects control
	 * characters; they still travel quoted, never raw. */
	buf_init(&cmd, IMAP_CMD_MAX);
	if (buf_append_str(&cmd, "SELECT ") == 0 &&
	    imap_string_append_mailbox(&cmd, name) == 0 &&
	    buf_append(&cmd, "", 1) == 0) {
		u->selecting = (int)f;
		u->selected = -1;
		u->sel_uidvalidity = u->sel_uidnext = u->sel_exists = 0;
		r = imap_client_command(u->imap, cmd.data, &cb);
	}
	buf_free(&cmd);
	return r;
}

/* --- open: login and snapshot ------------------------------------------- */

/* Grows the listing of the folder being opened. */
static int
listing_add(struct upstream *u, uint32_t uid, uint64_t size)
{
	struct uidmap_current *c;

	if (u->n_cur == u->cap_cur) {
		size_t cap = u->cap_cur ? u->cap_cur * 2 : 256;

		c = realloc(u->cur, cap * sizeof(*c));
		if (c == NULL)
			return -1;
		u->cur = c;
		u->cap_cur = cap;
	}
	c = &u->cur[u->n_cur++];
	memset(c, 0, sizeof(*c));
	c->uid = uid;
	c->size = size;
	return 0;
}

static int
cmp_current(const void *a, const void *b)
{
	const struct uidmap_current *x = a, *y = b;

	return (x->uid > y->uid) - (x->uid < y->uid);
}

/* Sorted, without the repeats a server may send. */
static void
listing_normalize(struct upstream *u)
{
	size_t i, out = 0;
	bool sorted = true;

	if (u->n_cur == 0)
		return;
	/* Servers answer in UID order; sort only when one did not. */
	for (i = 1; i < u->n_cur && sorted; i++)
		sorted = u->cur[i - 1].uid < u->cur[i].uid;
	if (sorted)
		return;
	qsort(u->cur, u->n_cur, sizeof(*u->cur), cmp_current);
	for (i = 0; i < u->n_cur; i++) {
		if (out == 0 || u->cur[i].uid != u->cur[out - 1].uid)
			u->cur[out++] = u->cur[i];
	}
	u->n_cur = out;
}

static struct uidmap_current *
listing_find(struct upstream *u, uint32_t uid)
{
	struct uidmap_current key = { .uid = uid };

	return bsearch(&key, u->cur, u->n_cur, sizeof(*u->cur),
		       cmp_current);
}

static bool
is_fetch(const struct imap_resp *r)
{
	return r->status == IMAP_STATUS_NONE && r->name_len == 5 &&
	       strncasecmp(r->name, "FETCH", 5) == 0;
}

/* The server's own id of a message, where the listing asked for one. */
static void
take_oid(struct uidmap_current *c, const struct imap_arg *v)
{
	/* RFC 8474: EMAILID (objectid) is a parenthesised atom; X-GM-MSGID
	 * is a number. */
	if (v->type == IMAP_ARG_LIST && v->count == 1)
		v = &v->list[0];
	if (v->type == IMAP_ARG_ATOM || v->type == IMAP_ARG_STRING)
		c->has_oid = uidmap_oid_hash(v->str, v->len, c->oid) == 0;
}

/* An id never changes (RFC 8474 §5.1): one the map holds for the UID is
 * not hashed again at every login; after a rebuild, UIDs mean nothing. */
static bool
oid_known(const struct upstream *u, uint32_t uid)
{
	struct uidmap_entry *e;

	if (u->known == NULL)
		return false;
	e = uidmap_find(u->known, uid);
	return e != NULL && (e->flags & UIDMAP_HAS_OID);
}

static bool
is_oid_item(const struct imap_arg *k)
{
	return (k->len == 7 && strncasecmp(k->str, "EMAILID", 7) == 0) ||
	       (k->len == 10 && strncasecmp(k->str, "X-GM-MSGID", 10) == 0);
}

/* Takes UID, RFC822.SIZE and the server's id (NULL when absent) from one
 * pass over a FETCH list (10,000 of these arrive at every login). */
static bool
fetch_uid_size(const struct imap_resp *r, uint64_t *uid_r, uint64_t *size_r,
	       const struct imap_arg **oid_r)
{
	const struct imap_arg *list;
	bool have_uid = false, have_size = false;
	size_t i;

	if (r->nargs < 1 || r->args[0].type != IMAP_ARG_LIST)
		return false;
	list = &r->args[0];
	for (i = 0; i + 1 < list->count; i += 2) {
		const struct imap_arg *k = &list->list[i];

		if (k->type != IMAP_ARG_ATOM)
			continue;
		if (k->len == 3 && strncasecmp(k->str, "UID", 3) == 0)
			have_uid = imap_arg_number(&list->list[i + 1],
						   uid_r) == 0;
		else if (k->len == 11 &&
			 strncasecmp(k->str, "RFC822.SIZE", 11) == 0)
			have_size = imap_arg_number(&list->list[i + 1],
						    size_r) == 0;
		else if (is_oid_item(k))
			*oid_r = &list->list[i + 1];
	}
	return have_uid && have_size;
}

static void
on_list_untagged(void *ctx, const struct imap_resp *r)
{
	struct upstream *u = ctx;
	const struct imap_arg *oid = NULL;
	uint64_t uv, sv;

	if (!is_fetch(r) || !fetch_uid_size(r, &uv, &sv, &oid) || uv == 0 ||
	    uv > UINT32_MAX)
		return;
	if (listing_add(u, (uint32_t)uv, sv) < 0) {
		u->open_oom = true;
		return;
	}
	if (oid != NULL && !oid_known(u, (uint32_t)uv))
		take_oid(&u->cur[u->n_cur - 1], oid);
}

/* An empty since-date window (distinct from "no window"). */
static const uint32_t no_uid;

static void
open_folder_done(struct upstream *u)
{
	struct maildrop_folder *mf = &u->md->folders[u->folder];
	struct snapshot_folder sf = {
		.index = (uint16_t)u->folder,
		.name = mf->name,
		.uidvalidity = u->sel_uidvalidity,
		.uidnext = u->sel_uidnext,
		.cur = u->cur,
		.n = u->n_cur,
		.window = u->cfg->maildrop.since != SINCE_DATE ? NULL :
			  u->window != NULL ? u->window : &no_uid,
		.n_window = u->n_window,
		.since_now = u->cfg->maildrop.since == SINCE_NOW,
	};
	uint32_t old = 0;
	size_t rematched;
	struct uidmap_folder *known = uidmap_folder(u->map, mf->name, false);

	if (known != NULL)
		old = known->uidvalidity;
	if (u->open_oom || snapshot_apply(u->map, u->md, &sf, &rematched) < 0) {
		finish(u, UPSTREAM_TEMP, "out of memory building the maildrop");
		return;
	}
	if (old != 0 && old != u->sel_uidvalidity)
		log_info("session=%s folder \"%s\" was rebuilt (UIDVALIDITY "
			 "%u -> %u): %zu of %zu messages re-matched and keep "
			 "their UIDL", u->sid, mf->name, (unsigned)old,
			 (unsigned)u->sel_uidvalidity, rematched, u->n_cur);
	u->folder++;
	open_next_folder(u);
}

/* Header hashes of every message: only after a rebuild. */
static void
on_hdr_begin(void *ctx, uint32_t uid, uint64_t size)
{
	struct upstream *u = ctx;

	(void)size;
	u->hashing = uid != 0 ? listing_find(u, uid) : NULL;
	uidmap_hasher_reset(u->hasher);
}

static void
on_hdr_data(void *ctx, const char *p, size_t n)
{
	struct upstream *u = ctx;

	if (u->hashing != NULL)
		uidmap_hasher_feed(u->hasher, p, n);
}

static void
on_hdr_end(void *ctx)
{
	struct upstream *u = ctx;

	if (u->hashing == NULL)
		return;
	uidmap_hasher_final(u->hasher, u->hashing->fp, u->hashing->old_fp);
	u->hashing->has_fp = true;
	u->hashing = NULL;
}

static void
on_hdr_done(void *ctx, enum imap_result res, const char *text)
{
	struct upstream *u = ctx;

	if (res != IMAP_OK) {
		finish(u, UPSTREAM_TEMP, text);
		return;
	}
	open_folder_done(u);
}

static void
on_list_done(void *ctx, enum imap_result res, const char *text)
{
	struct upstream *u = ctx;
	struct imap_cmd_cb cb = {
		.body_begin = on_hdr_begin,
		.body_data = on_hdr_data,
		.body_end = on_hdr_end,
		.done = on_hdr_done,
		.ctx = u,
	};

	if (res != IMAP_OK) {
		finish(u, UPSTREAM_TEMP, text);
		return;
	}
	listing_normalize(u);
	if (u->n_cur == 0 || !snapshot_needs_fps(u->map,
			u->md->folders[u->folder].name, u->sel_uidvalidity)) {
		open_folder_done(u);
		return;
	}
	if (u->hasher == NULL)
		u->hasher = uidmap_hasher_new(true);
	if (u->hasher == NULL ||
	    imap_client_command(u->imap, "UID FETCH 1:* (UID BODY.PEEK[HEADER])",
				&cb) < 0)
		finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

static void
list_folder(struct upstream *u)
{
	struct imap_cmd_cb cb = {
		.untagged = on_list_untagged,
		.done = on_list_done,
		.ctx = u,
	};
	unsigned caps = imap_client_caps(u->imap);
	const char *cmd = "UID FETCH 1:* (UID RFC822.SIZE)";
	const char *name = u->md->folders[u->folder].name;

	u->known = snapshot_needs_fps(u->map, name, u->sel_uidvalidity) ? NULL :
		   uidmap_folder(u->map, name, false);
	if (u->sel_exists == 0) {
		on_list_done(u, IMAP_OK, "empty");
		return;
	}
	/* SPEC §4: the server's own identity, where offered, is what
	 * recognises a message after a rebuild. */
	if (caps & IMAP_CAP_OBJECTID)
		cmd = "UID FETCH 1:* (UID RFC822.SIZE EMAILID)";
	else if (caps & IMAP_CAP_X_GM_EXT_1)
		cmd = "UID FETCH 1:* (UID RFC822.SIZE X-GM-MSGID)";
	if (imap_client_command(u->imap, cmd, &cb) < 0)
		finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

static void
on_search_untagged(void *ctx, const struct imap_resp *r)
{
	struct upstream *u = ctx;
	uint32_t *w;
	uint64_t v;
	size_t i;

	if (r->status != IMAP_STATUS_NONE || r->name_len != 6 ||
	    strncasecmp(r->name, "SEARCH", 6) != 0)
		return;
	w = realloc(u->window, (u->n_window + r->nargs + 1) * sizeof(*w));
	if (w == NULL) {
		u->open_oom = true;
		return;
	}
	u->window = w;
	for (i = 0; i < r->nargs; i++) {
		if (imap_arg_number(&r->args[i], &v) == 0 && v > 0 &&
		    v <= UINT32_MAX)
			u->window[u->n_window++] = (uint32_t)v;
	}
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

static void
on_search_done(void *ctx, enum imap_result res, const char *text)
{
	struct upstream *u = ctx;

	if (res != IMAP_OK) {
		finish(u, UPSTREAM_TEMP, text);
		return;
	}
	if (u->n_window > 0)
		qsort(u->window, u->n_window, sizeof(*u->window), cmp_u32);
	list_folder(u);
}

/* since = YYYY-MM-DD: RFC 9051 SEARCH SINCE compares the internal date. */
static void
search_window(struct upstream *u)
{
	static const char *const months[] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun",
		"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
	};
	struct imap_cmd_cb cb = {
		.untagged = on_search_untagged,
		.done = on_search_done,
		.ctx = u,
	};
	const char *d = u->cfg->maildrop.since_date;
	char cmd[64];
	int month = (d[5] - '0') * 10 + (d[6] - '0');

	snprintf(cmd, sizeof(cmd), "UID SEARCH SINCE %.2s-%s-%.4s", d + 8,
		 months[(month - 1) % 12], d);
	if (imap_client_command(u->imap, cmd, &cb) < 0)
		finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

static void
open_after_select(struct upstream *u, enum imap_result res, const char *text)
{
	struct maildrop_folder *f = &u->md->folders[u->folder];

	if (res == IMAP_NO && u->folder > 0) {
		/* A missing extra folder (no Junk here) hides nothing. */
		log_warn("session=%s cannot select folder \"%s\": %s; skipped",
			 u->sid, f->name, text);
		u->folder++;
		open_next_folder(u);
		return;
	}
	if (res != IMAP_OK) {
		finish(u, UPSTREAM_TEMP, text);
		return;
	}
	f->uidvalidity = u->sel_uidvalidity;
	f->uidnext = u->sel_uidnext;
	u->n_cur = 0;
	u->n_window = 0;
	if (u->cfg->maildrop.since == SINCE_DATE && u->sel_exists > 0)
		search_window(u);
	else
		list_folder(u);
}

static void
open_next_folder(struct upstream *u)
{
	if (u->folder >= u->md->n_folders) {
		finish(u, UPSTREAM_OK, "maildrop ready");
		return;
	}
	if (select_folder(u, u->folder) < 0)
		finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

static void
on_login_done(void *ctx, enum imap_result res, const char *text)
{
	struct upstream *u = ctx;

	if (res == IMAP_AUTHFAIL) {
		finish(u, UPSTREAM_AUTH, text);
		return;
	}
	if (res != IMAP_OK) {
		finish(u, UPSTREAM_TEMP, text);
		return;
	}
	u->folder = 0;
	open_next_folder(u);
}

static int
start_open(struct upstream *u, const char *user, size_t user_len,
	      const char *pass, size_t pass_len, struct maildrop *md,
	      struct uidmap *map)
{
	struct imap_cmd_cb cb = { .done = on_login_done, .ctx = u };

	if (u->op != OP_NONE)
		return -1;
	u->md = md;
	u->map = map;
	u->op = OP_OPEN;
	if (imap_client_login(u->imap, user, user_len, pass, pass_len,
			      &cb) < 0) {
		u->op = OP_NONE;
		return -1;
	}
	return 0;
}

/* --- fetch -------------------------------------------------------------- */

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

static void ahead_done(struct upstream *u);

static void
on_fetch_done(void *ctx, enum imap_result res, const char *text)
{
	struct upstream *u = ctx;

	if (u->op == OP_AHEAD)
		ahead_done(u);
	else if (u->wrong_uid)
		finish(u, UPSTREAM_TEMP, "upstream sent another message's data");
	else if (res == IMAP_NO && fetch_no_means_gone(u))
		finish(u, UPSTREAM_GONE, "message is no longer on the server");
	else if (res != IMAP_OK)
		finish(u, UPSTREAM_TEMP, text);
	else if (!u->got_body)
		finish(u, UPSTREAM_GONE, "message is no longer on the server");
	else
		finish(u, UPSTREAM_OK, text);
}

static void
fetch_after_select(struct upstream *u, enum imap_result res, const char *text)
{
	if (res != IMAP_OK) {
		finish(u, UPSTREAM_TEMP, text);
		return;
	}
	if (u->sel_uidvalidity != u->md->folders[u->msg->folder].uidvalidity) {
		finish(u, UPSTREAM_GONE, "folder was rebuilt on the server");
		return;
	}
	if (fetch_send(u) < 0)
		finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
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

static int
start_fetch(struct upstream *u, const struct maildrop_msg *msg,
	       enum upstream_part part, uint64_t offset, uint64_t length)
{
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
	if (u->op != OP_NONE || imap_client_dead(u->imap))
		return -1;
	fetch_prepare(u, OP_FETCH, msg, part, offset, length);
	if (u->selected == (int)msg->folder) {
		if (fetch_send(u) < 0)
			finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
		return 0;
	}
	if (select_folder(u, msg->folder) < 0) {
		u->op = OP_NONE;
		return -1;
	}
	return 0;
}

int
upstream_read_ahead(struct upstream *u, const struct maildrop_msg *msg)
{
	if (u->op != OP_NONE || imap_client_dead(u->imap) ||
	    u->selected != (int)msg->folder)
		return -1;
	fetch_prepare(u, OP_AHEAD, msg, UPSTREAM_WHOLE, 0, 0);
	u->draining = false;
	if (fetch_send(u) < 0) {
		u->op = OP_NONE;
		return -1;
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
		r = start_update(u);
	else
		r = start_fetch(u, u->next.msg, u->next.part,
				   u->next.offset, u->next.length);
	if (r < 0)
		finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

/* --- update ------------------------------------------------------------- */

static void
chunk_clear(struct upstream *u)
{
	size_t i;

	for (i = 0; i < u->chunk_n; i++)
		free(u->chunk_cmds[i]);
	u->chunk_n = u->chunk_next = 0;
}

static void
warn_fallback(struct upstream *u, const char *what)
{
	/* SPEC §3: once per account, not per session. */
	if (u->map == NULL || u->map->warned_fallback)
		return;
	u->map->warned_fallback = true;
	log_warn("session=%s upstream lacks UIDPLUS: %s", u->sid, what);
}

/* Queues the commands of plan for one UID set. */
static int
chunk_queue(struct upstream *u, const struct quit_plan *plan,
	    const struct buf *set, const char *trash)
{
	struct buf cmd;
	size_t i;

	if (plan->fallback != NULL)
		warn_fallback(u, plan->fallback);
	if (plan->hide)
		u->hide_deleted = true;
	for (i = 0; i < plan->n; i++) {
		buf_init(&cmd, IMAP_CMD_MAX);
		if (quit_plan_command(plan->steps[i], set->data, set->len,
				      trash, &cmd) < 0) {
			buf_free(&cmd);
			return -1;
		}
		/* NUL-terminated by appendf */
		u->chunk_cmds[u->chunk_n++] = cmd.data;
	}
	return 0;
}

static void
on_update_cmd_done(void *ctx, enum imap_result res, const char *text)
{
	struct upstream *u = ctx;

	if (res == IMAP_FAIL) {
		chunk_clear(u);
		finish(u, UPSTREAM_TEMP, text);
		return;
	}
	if (res != IMAP_OK) {
		log_warn("session=%s deleting messages failed: %s", u->sid,
			 text);
		u->upd_failed = true;
		/* Later steps of this chunk depend on this one. */
		u->chunk_next = u->chunk_n;
	}
	update_next(u);
}

static void
update_skip_folder(struct upstream *u)
{
	u->upd_folder++;
	u->upd_pass = PASS_DELETE;
	u->upd_pos = 0;
}

static void
update_after_select(struct upstream *u, enum imap_result res, const char *text)
{
	if (res == IMAP_FAIL) {
		finish(u, UPSTREAM_TEMP, text);
		return;
	}
	if (res != IMAP_OK ||
	    u->sel_uidvalidity != u->md->folders[u->upd_folder].uidvalidity) {
		/* Whatever this folder holds is not what the client saw. */
		u->upd_failed = true;
		update_skip_folder(u);
	}
	update_next(u);
}

static enum maildrop_pick
pass_pick(const struct upstream *u)
{
	return u->upd_pass == PASS_DELETE ? MAILDROP_PICK_DELETED :
	       MAILDROP_PICK_RETRIEVED;
}

/* Appends the next UID set of this folder and pass; 0 when none is left. */
static size_t
pass_uidset(struct upstream *u, size_t *pos, struct buf *set)
{
	if (u->upd_pass == PASS_DELETE &&
	    u->cfg->maildrop.on_delete == ON_DELETE_KEEP)
		return 0;
	if (u->upd_pass == PASS_SEEN && !u->cfg->maildrop.mark_seen)
		return 0;
	return maildrop_uidset(u->md, (uint16_t)u->upd_folder, pass_pick(u),
			       pos, UPSTREAM_UIDSET_MAX, set);
}

static bool
pass_has_work(struct upstream *u)
{
	size_t pos = u->upd_pos, n;
	struct buf probe;

	buf_init(&probe, UPSTREAM_UIDSET_MAX + 64);
	n = pass_uidset(u, &pos, &probe);
	buf_free(&probe);
	return n > 0;
}

static void
pass_advance(struct upstream *u)
{
	u->upd_pos = 0;
	if (++u->upd_pass == PASS_END)
		update_skip_folder(u);
}

/* Queues the commands for the next UID set of this folder and pass. */
static int
update_plan_chunk(struct upstream *u)
{
	char trash[512];
	struct buf set, q;
	const char *tname = u->cfg->maildrop.trash;
	struct quit_plan plan;
	int r;

	buf_init(&set, UPSTREAM_UIDSET_MAX + 64);
	buf_init(&q, sizeof(trash));
	r = buf_append(&q, " ", 1);
	if (r == 0)
		r = imap_string_append_mailbox(&q, tname);
	if (r == 0 && q.len < sizeof(trash)) {
		memcpy(trash, q.data, q.len);
		trash[q.len] = '\0';
	} else {
		r = -1;
	}
	if (r == 0 && pass_uidset(u, &u->upd_pos, &set) == 0)
		r = -1;
	if (u->upd_pass == PASS_DELETE)
		quit_plan_delete(imap_client_caps(u->imap),
				 u->cfg->maildrop.on_delete, &plan);
	else
		quit_plan_seen(&plan);
	if (r == 0)
		r = chunk_queue(u, &plan, &set, trash);
	buf_free(&set);
	buf_free(&q);
	return r;
}

/* on_delete = seen, and deletions that could only be flagged (no UIDPLUS,
 * no MOVE; see quit_plan): the messages leave the POP3 view for good, by
 * the map and not only by a flag, so they do not come back in the next
 * session. */
static void
update_hide_deleted(struct upstream *u)
{
	struct uidmap_folder *f;
	struct uidmap_entry *e;
	size_t i;

	if (u->map == NULL || !u->hide_deleted)
		return;
	for (i = 0; i < u->md->count; i++) {
		const struct maildrop_msg *m = &u->md->msgs[i];

		if (!m->deleted)
			continue;
		f = uidmap_folder(u->map, u->md->folders[m->folder].name,
				  false);
		e = f != NULL ? uidmap_find(f, m->uid) : NULL;
		if (e != NULL)
			uidmap_set_hidden(u->map, e);
	}
}

static void
update_next(struct upstream *u)
{
	struct imap_cmd_cb cb = { .done = on_update_cmd_done, .ctx = u };

	while (u->chunk_next >= u->chunk_n) {
		chunk_clear(u);
		if (u->upd_folder >= u->md->n_folders) {
			if (!u->upd_failed)
				update_hide_deleted(u);
			finish(u, u->upd_failed ? UPSTREAM_TEMP : UPSTREAM_OK,
			       u->upd_failed ?
			       "some deleted messages not removed" : "done");
			return;
		}
		if (!pass_has_work(u)) {
			pass_advance(u);
			continue;
		}
		if (u->selected != (int)u->upd_folder) {
			if (select_folder(u, u->upd_folder) < 0)
				finish(u, UPSTREAM_TEMP,
				       imap_client_error(u->imap));
			return;
		}
		if (update_plan_chunk(u) < 0) {
			finish(u, UPSTREAM_TEMP, "cannot build command");
			return;
		}
	}
	if (imap_client_command(u->imap, u->chunk_cmds[u->chunk_next++],
				&cb) < 0) {
		chunk_clear(u);
		finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
	}
}

static int
start_update(struct upstream *u)
{
	if (u->op == OP_AHEAD && !imap_client_dead(u->imap)) {
		ahead_drain(u, OP_UPDATE, NULL, UPSTREAM_WHOLE, 0, 0);
		return 0;
	}
	if (u->op != OP_NONE || imap_client_dead(u->imap))
		return -1;
	u->op = OP_UPDATE;
	u->upd_folder = 0;
	u->upd_pass = PASS_DELETE;
	u->upd_pos = 0;
	u->upd_failed = false;
	u->hide_deleted = false;
	chunk_clear(u);
	update_next(u);
	return 0;
}

static void
none_after_select(struct upstream *u, enum imap_result res, const char *text)
{
	(void)u;
	(void)res;
	(void)text;
}

static void (*const after_select[])(struct upstream *, enum imap_result,
				      const char *) = {
	[OP_NONE] = none_after_select,
	[OP_OPEN] = open_after_select,
	[OP_FETCH] = fetch_after_select,
	[OP_UPDATE] = update_after_select,
	[OP_AHEAD] = none_after_select,
};

/* --- the operations ----------------------------------------------------- */

int
upstream_open(struct upstream *u, const char *user, size_t user_len,
	      const char *pass, size_t pass_len, struct maildrop *md,
	      struct uidmap *map)
{
	u->in_call++;
	return call_end(u, start_open(u, user, user_len, pass, pass_len, md,
				      map));
}

int
upstream_fetch(struct upstream *u, const struct maildrop_msg *msg,
	       enum upstream_part part, uint64_t offset, uint64_t length)
{
	u->in_call++;
	return call_end(u, start_fetch(u, msg, part, offset, length));
}

int
upstream_update(struct upstream *u)
{
	u->in_call++;
	return call_end(u, start_update(u));
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
	chunk_clear(u);
	imap_client_free(&u->imap);
	uidmap_hasher_free(&u->hasher);
	free(u->cur);
	free(u->window);
	free(u);
}

void
upstream_pause(struct upstream *u)
{
	imap_client_pause(u->imap);
}

void
upstream_resume(struct upstream *u)
{
	/* A reply fetched ahead stays unread until it is asked for. */
	if (u->op == OP_AHEAD && !u->draining)
		return;
	imap_client_resume(u->imap);
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
