#ifndef POPBRIDGE_QUIT_PLAN_H
#define POPBRIDGE_QUIT_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"
#include "daemon/config.h"

/*
 * What QUIT sends for one set of UIDs, decided from the server's
 * capabilities (IMAP_CAP_*) and the policy alone: pure, no I/O, so every
 * combination is tested without a server. SPEC §3: never a plain EXPUNGE,
 * which would also remove what other clients flagged \Deleted.
 */

enum quit_step {
	QUIT_STORE_DELETED,	/* UID STORE set +FLAGS.SILENT (\Deleted) */
	QUIT_EXPUNGE,		/* UID EXPUNGE set (UIDPLUS) */
	QUIT_MOVE,		/* UID MOVE set trash */
	QUIT_COPY,		/* UID COPY set trash */
	QUIT_STORE_SEEN,	/* UID STORE set +FLAGS.SILENT (\Seen) */
};

/* QUIT's passes over each folder, in this order. */
enum quit_pass {
	QUIT_PASS_DELETE = 0,	/* the messages the client deleted */
	QUIT_PASS_SEEN,		/* the messages it retrieved (mark_seen) */
	QUIT_PASS_END,
};

/* Steps one set needs at most (COPY, STORE, EXPUNGE). */
#define QUIT_PLAN_MAX 3

struct quit_plan {
	enum quit_step steps[QUIT_PLAN_MAX];	/* in order; each depends on
						 * the one before */
	size_t n;
	/* The messages stay upstream (flagged \Deleted or \Seen): the UID
	 * map must hide them, or they are listed (and copied) again. */
	bool hide;
	/* NULL, or what a missing capability made of the policy, for the
	 * log (once per account). */
	const char *fallback;
};

/* The plan for messages the client deleted, as on_delete says. */
void quit_plan_delete(unsigned caps, enum on_delete how,
		      struct quit_plan *p);

/* The plan for messages retrieved under mark_seen. */
void quit_plan_seen(struct quit_plan *p);

/* The plan of one pass under the whole policy: quit_plan_delete's for
 * QUIT_PASS_DELETE, quit_plan_seen's for QUIT_PASS_SEEN when mark_seen is
 * on; no steps (n == 0) when the pass has nothing to do (on_delete = keep,
 * mark_seen off). */
void quit_plan_pass(unsigned caps, enum on_delete how, bool mark_seen,
		    enum quit_pass pass, struct quit_plan *p);

/* The command of one step (without tag) for the UID set, into out;
 * trash_arg is the trash folder already quoted for IMAP, with a leading
 * space. Returns 0 or buf_appendf's error (-ENOBUFS over out's limit). */
int quit_plan_command(enum quit_step step, const char *set, size_t set_len,
		      const char *trash_arg, struct buf *out);

#endif
