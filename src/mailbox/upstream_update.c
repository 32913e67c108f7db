/* upstream_update: the QUIT update, folder by folder: the deletions as
 * on_delete and the server's capabilities say (quit_plan), then \Seen on
 * what was retrieved under mark_seen. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_string.h"
#include "mailbox/quit_plan.h"
#include "upstream_priv.h"
#include "util/log.h"

/* A UID set per STORE/EXPUNGE stays below this, well inside any server's
 * line limit. */
#define UPSTREAM_UIDSET_MAX 4000


static void update_next(struct upstream *u);

void
upstream__update_clear(struct upstream *u)
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
	int r;

	if (plan->fallback != NULL)
		warn_fallback(u, plan->fallback);
	if (plan->hide)
		u->hide_deleted = true;
	for (i = 0; i < plan->n; i++) {
		buf_init(&cmd, IMAP_CMD_MAX);
		r = quit_plan_command(plan->steps[i], set->data, set->len,
				      trash, &cmd);
		if (r < 0) {
			buf_free(&cmd);
			return r;
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
		upstream__update_clear(u);
		upstream__finish(u, UPSTREAM_TEMP, text);
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
	u->upd_pass = QUIT_PASS_DELETE;
	u->upd_pos = 0;
}

void
upstream__update_after_select(struct upstream *u, enum imap_result res,
			      const char *text)
{
	if (res == IMAP_FAIL) {
		upstream__finish(u, UPSTREAM_TEMP, text);
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
	return u->upd_pass == QUIT_PASS_DELETE ? MAILDROP_PICK_DELETED :
	       MAILDROP_PICK_RETRIEVED;
}

/* What this pass sends for each UID set (no steps: nothing to do). */
static void
pass_plan(const struct upstream *u, struct quit_plan *plan)
{
	quit_plan_pass(imap_client_caps(u->imap), u->cfg->maildrop.on_delete,
		       u->cfg->maildrop.mark_seen, u->upd_pass, plan);
}

/* Appends the next UID set of this folder and pass; 0 when none is left. */
static size_t
pass_uidset(struct upstream *u, size_t *pos, struct buf *set)
{
	struct quit_plan plan;

	pass_plan(u, &plan);
	if (plan.n == 0)
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
	if (++u->upd_pass == QUIT_PASS_END)
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
	if (r == 0 && q.len >= sizeof(trash))
		r = -ENOBUFS;
	if (r == 0) {
		memcpy(trash, q.data, q.len);
		trash[q.len] = '\0';
	}
	/* pass_has_work found a set; none here means the set is broken. */
	if (r == 0 && pass_uidset(u, &u->upd_pos, &set) == 0)
		r = -ENOENT;
	pass_plan(u, &plan);
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
		upstream__update_clear(u);
		if (u->upd_folder >= u->md->n_folders) {
			if (!u->upd_failed)
				update_hide_deleted(u);
			upstream__finish(u, u->upd_failed ? UPSTREAM_TEMP :
					 UPSTREAM_OK, u->upd_failed ?
					 "some deleted messages not removed" :
					 "done");
			return;
		}
		if (!pass_has_work(u)) {
			pass_advance(u);
			continue;
		}
		if (u->selected != (int)u->upd_folder) {
			if (upstream__select_folder(u, u->upd_folder) < 0)
				upstream__finish(u, UPSTREAM_TEMP,
						 imap_client_error(u->imap));
			return;
		}
		if (update_plan_chunk(u) < 0) {
			upstream__finish(u, UPSTREAM_TEMP,
					 "cannot build command");
			return;
		}
	}
	if (imap_client_command(u->imap, u->chunk_cmds[u->chunk_next++],
				&cb) < 0) {
		upstream__update_clear(u);
		upstream__finish(u, UPSTREAM_TEMP, imap_client_error(u->imap));
	}
}

int
upstream__start_update(struct upstream *u)
{
	int r;

	if (upstream__window_hold_update(u))
		return 0;
	r = upstream__ready(u);
	if (r < 0)
		return r;
	u->op = OP_UPDATE;
	u->upd_folder = 0;
	u->upd_pass = QUIT_PASS_DELETE;
	u->upd_pos = 0;
	u->upd_failed = false;
	u->hide_deleted = false;
	upstream__update_clear(u);
	update_next(u);
	return 0;
}
