/* What QUIT sends upstream for a set of UIDs, from the server's
 * capabilities, on_delete and mark_seen (pure). */
#include "mailbox/quit_plan.h"

#include "imap/imap_client.h"

static void
add(struct quit_plan *p, enum quit_step s)
{
	p->steps[p->n++] = s;
}

static void
plan_trash(unsigned caps, struct quit_plan *p)
{
	if (caps & IMAP_CAP_MOVE) {
		add(p, QUIT_MOVE);
		return;
	}
	add(p, QUIT_COPY);
	add(p, QUIT_STORE_DELETED);
	if (caps & IMAP_CAP_UIDPLUS) {
		add(p, QUIT_EXPUNGE);
		return;
	}
	/* Copied and flagged, but only a plain EXPUNGE could remove them. */
	p->hide = true;
	p->fallback = "deleted messages are copied to trash and flagged, not "
		      "expunged";
}

void
quit_plan_delete(unsigned caps, enum on_delete how, struct quit_plan *p)
{
	p->n = 0;
	p->hide = false;
	p->fallback = NULL;
	switch (how) {
	case ON_DELETE_EXPUNGE:
		if (caps & IMAP_CAP_UIDPLUS) {
			add(p, QUIT_STORE_DELETED);
			add(p, QUIT_EXPUNGE);
		} else if (caps & IMAP_CAP_MOVE) {
			add(p, QUIT_MOVE);
			p->fallback = "moving deleted messages to trash";
		} else {
			add(p, QUIT_STORE_DELETED);
			p->hide = true;
			p->fallback = "deleted messages are only flagged";
		}
		break;
	case ON_DELETE_TRASH:
		plan_trash(caps, p);
		break;
	case ON_DELETE_SEEN:
		add(p, QUIT_STORE_SEEN);
		p->hide = true;
		break;
	case ON_DELETE_KEEP:
		break;
	}
}

void
quit_plan_seen(struct quit_plan *p)
{
	p->n = 0;
	p->hide = false;
	p->fallback = NULL;
	add(p, QUIT_STORE_SEEN);
}

void
quit_plan_pass(unsigned caps, enum on_delete how, bool mark_seen,
	       enum quit_pass pass, struct quit_plan *p)
{
	switch (pass) {
	case QUIT_PASS_DELETE:
		quit_plan_delete(caps, how, p);
		return;
	case QUIT_PASS_SEEN:
		if (mark_seen) {
			quit_plan_seen(p);
			return;
		}
		break;
	case QUIT_PASS_END:
		/* Not a pass: the end of them, with nothing to do. */
		break;
	}
	p->n = 0;
	p->hide = false;
	p->fallback = NULL;
}

int
quit_plan_command(enum quit_step step, const char *set, size_t set_len,
		  const char *trash_arg, struct buf *out)
{
	static const struct {
		const char *verb, *suffix;
		bool trash;
	} forms[] = {
		[QUIT_STORE_DELETED] = { "UID STORE", " +FLAGS.SILENT (\\Deleted)",
					 false },
		[QUIT_EXPUNGE] = { "UID EXPUNGE", "", false },
		[QUIT_MOVE] = { "UID MOVE", "", true },
		[QUIT_COPY] = { "UID COPY", "", true },
		[QUIT_STORE_SEEN] = { "UID STORE", " +FLAGS.SILENT (\\Seen)",
				      false },
	};

	return buf_appendf(out, "%s %.*s%s%s", forms[step].verb, (int)set_len,
			   set, forms[step].trash ? trash_arg : "",
			   forms[step].suffix);
}
