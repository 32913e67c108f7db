/* upstream_open: log in, then for each folder SELECT, the since window
 * (UID SEARCH), the listing (UIDs, sizes, server ids) and, after a rebuild,
 * header fingerprints; the result becomes the maildrop (snapshot_apply). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailbox/snapshot.h"
#include "upstream_priv.h"
#include "util/log.h"

static void open_next_folder(struct upstream *u);

/* Grows the listing of the folder being opened. */
static int
listing_add(struct upstream *u, uint32_t uid, uint64_t size)
{
	struct uidmap_current *c;

	if (u->n_cur == u->cap_cur) {
		size_t cap = u->cap_cur ? u->cap_cur * 2 : 256;

		c = realloc(u->cur, cap * sizeof(*c));
		if (c == NULL)
			return -ENOMEM;
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

	if (u->op != OP_OPEN || !is_fetch(r) ||
	    !fetch_uid_size(r, &uv, &sv, &oid) || uv == 0 || uv > UINT32_MAX)
		return;
	if (listing_add(u, (uint32_t)uv, sv) < 0) {
		u->open_oom = true;
		return;
	}
	if (oid != NULL && !oid_known(u, (uint32_t)uv))
		take_oid(&u->cur[u->n_cur - 1], oid);
}

static const char *
snapshot_failure(int r)
{
	switch (r) {
	case -ENOMEM:
		return "out of memory building the maildrop";
	case -ENOSPC:
		return "the UID map holds too many folders";
	default:
		/* -EINVAL, a listing out of UID order: not after
		 * listing_normalize. */
		return "cannot build the maildrop";
	}
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
	int r;

	if (known != NULL)
		old = known->uidvalidity;
	r = u->open_oom ? -ENOMEM : snapshot_apply(u->map, u->md, &sf,
						   &rematched);
	if (r < 0) {
		upstream__finish(u, UPSTREAM_TEMP, snapshot_failure(r));
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
		upstream__finish(u, UPSTREAM_TEMP, text);
		return;
	}
	open_folder_done(u);
}

static int list_send(struct upstream *u, unsigned caps);

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

	if (u->op != OP_OPEN)
		return;		/* a listing sent early, for an open that
				 * failed before it */
	u->list_sent = false;
	if (res == IMAP_BAD && u->list_oid) {
		/* Sent early with the ids the server offered last time: it
		 * offers them no more. */
		u->n_cur = 0;
		if (list_send(u, 0) < 0)
			upstream__finish(u, UPSTREAM_TEMP,
					 imap_client_error(u->imap));
		return;
	}
	if (res != IMAP_OK && res != IMAP_FAIL && u->sel_exists == 0)
		res = IMAP_OK;	/* 1:* of an empty folder, asked early */
	if (res != IMAP_OK) {
		upstream__finish(u, UPSTREAM_TEMP, text);
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
		upstream__finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

/* UIDs and sizes of the folder being opened; with caps offering them,
 * the server's own ids too (SPEC §4: what recognises a message after a
 * rebuild). */
static int
list_send(struct upstream *u, unsigned caps)
{
	struct imap_cmd_cb cb = {
		.untagged = on_list_untagged,
		.done = on_list_done,
		.ctx = u,
	};
	const char *cmd = "UID FETCH 1:* (UID RFC822.SIZE)";
	int r;

	u->list_oid = (caps & (IMAP_CAP_OBJECTID | IMAP_CAP_X_GM_EXT_1)) != 0;
	if (caps & IMAP_CAP_OBJECTID)
		cmd = "UID FETCH 1:* (UID RFC822.SIZE EMAILID)";
	else if (caps & IMAP_CAP_X_GM_EXT_1)
		cmd = "UID FETCH 1:* (UID RFC822.SIZE X-GM-MSGID)";
	r = imap_client_command(u->imap, cmd, &cb);
	u->list_sent = r == 0;
	return r;
}

static void
list_folder(struct upstream *u)
{
	const char *name = u->md->folders[u->folder].name;

	u->known = snapshot_needs_fps(u->map, name, u->sel_uidvalidity) ? NULL :
		   uidmap_folder(u->map, name, false);
	if (u->list_sent)
		return;		/* went out with the login: it answers next */
	if (u->sel_exists == 0) {
		on_list_done(u, IMAP_OK, "empty");
		return;
	}
	if (list_send(u, imap_client_caps(u->imap)) < 0)
		upstream__finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
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
		upstream__finish(u, UPSTREAM_TEMP, text);
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
		upstream__finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

void
upstream__open_after_select(struct upstream *u, enum imap_result res,
			    const char *text)
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
		upstream__finish(u, UPSTREAM_TEMP, text);
		return;
	}
	u->list_early = false;
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
		upstream__finish(u, UPSTREAM_OK, "maildrop ready");
		return;
	}
	if (upstream__select_folder(u, u->folder) < 0)
		upstream__finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
}

static void
on_login_done(void *ctx, enum imap_result res, const char *text)
{
	struct upstream *u = ctx;

	if (res == IMAP_AUTHFAIL) {
		upstream__finish(u, UPSTREAM_AUTH, text);
		return;
	}
	if (res != IMAP_OK) {
		upstream__finish(u, UPSTREAM_TEMP, text);
		return;
	}
	/* What the server offers after login: the early listing's items at
	 * the account's next login. */
	u->map->server_caps = imap_client_caps(u->imap);
	if (u->list_early)
		return;		/* the first SELECT answers next */
	u->folder = 0;
	open_next_folder(u);
}

/*
 * Folder 0's SELECT and listing, given now, go out the moment the login
 * is accepted (imap_client_command), in one round trip with the
 * capabilities, with the ids the server offered at the account's last
 * login (an
 * id it no longer offers makes the listing BAD: asked again without). Not
 * with since = date, whose listing waits for its SEARCH, nor before the
 * first login of the account in this process.
 */
static void
open_early(struct upstream *u)
{
	if (u->map->server_caps == 0 || u->cfg->maildrop.since == SINCE_DATE)
		return;
	u->folder = 0;
	u->n_cur = 0;
	if (upstream__select_folder(u, 0) < 0)
		return;
	u->list_early = true;
	(void)list_send(u, u->map->server_caps);
}

int
upstream__start_open(struct upstream *u, const char *user, size_t user_len,
		     const char *secret, size_t secret_len,
		     enum upstream_cred cred, struct maildrop *md,
		     struct uidmap *map)
{
	struct imap_cmd_cb cb = { .done = on_login_done, .ctx = u };
	int r;

	if (u->op != OP_NONE)
		return -EBUSY;
	u->md = md;
	u->map = map;
	u->op = OP_OPEN;
	u->list_early = u->list_sent = false;
	r = cred == UPSTREAM_CRED_BEARER
		    ? imap_client_login_bearer(u->imap, user, user_len, secret,
					       secret_len, &cb)
		    : imap_client_login(u->imap, user, user_len, secret,
					secret_len, &cb);
	if (r < 0) {
		u->op = OP_NONE;
		return r;
	}
	open_early(u);
	return 0;
}

void
upstream__open_clear(struct upstream *u)
{
	uidmap_hasher_free(&u->hasher);
	free(u->cur);
	u->cur = NULL;
	u->n_cur = u->cap_cur = 0;
	free(u->window);
	u->window = NULL;
	u->n_window = 0;
}
