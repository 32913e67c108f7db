/* upstream_priv.h: struct upstream and what its parts (upstream.c,
 * upstream_open.c, upstream_fetch.c, upstream_update.c) share; private to
 * src/mailbox. */
#ifndef POPBRIDGE_UPSTREAM_PRIV_H
#define POPBRIDGE_UPSTREAM_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "imap/imap_client.h"
#include "mailbox/maildrop.h"
#include "mailbox/quit_plan.h"
#include "mailbox/upstream.h"
#include "store/uidmap.h"

/* Commands one chunk of deletions needs at most (COPY, STORE, EXPUNGE). */
#define UPSTREAM_CHUNK_CMDS 3

enum upstream_op {
	OP_NONE = 0,
	OP_OPEN,
	OP_FETCH,
	OP_UPDATE,
};

/* FETCHes in flight at once for one session (the fetch window). */
#define UPSTREAM_WINDOW_MAX 256

/* What a FETCH in the window is for. */
enum fetch_role {
	REQ_AHEAD,	/* asked for early: its reply waits until wanted */
	REQ_WANTED,	/* the running fetch: its data goes to the session */
	REQ_DROP,	/* nobody wants it any more: read away */
};

/* One FETCH sent; the reply's parse state is its own. */
struct fetch_req {
	struct upstream *u;
	const struct maildrop_msg *msg;
	enum upstream_part part;
	uint64_t offset, length;
	uint64_t cost;			/* octets counted against read_ahead */
	enum fetch_role role;
	bool got_body;			/* its body item came (maybe empty) */
	bool body_done;			/* ... and its FETCH response ended */
	bool unverified;		/* streaming began before the UID came */
	bool wrong_uid;			/* ... and it was another message's */
	bool finished;			/* the session has its outcome */
	uint64_t fetched;
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
	bool list_early;		/* folder 0's SELECT and listing went
					 * out behind the login */
	bool list_sent;			/* the listing of folder is in flight */
	bool list_oid;			/* ... and it asks for server ids */
	struct uidmap_hasher *hasher;
	struct uidmap_current *hashing;
	bool open_oom;

	/* fetch: the window, FETCHes in flight oldest first (a ring whose
	 * slots are the commands' callback contexts). FETCH responses come in
	 * the order of the commands, tagged answers may lag behind them
	 * (Dovecot), so data is matched by UID: replies before the wanted
	 * one are read away, those after it wait in the socket (TCP bounds
	 * them) until the session asks for them. */
	struct fetch_req *win;		/* UPSTREAM_WINDOW_MAX slots, lazily */
	size_t win_head, win_n;
	uint64_t ahead_bytes;		/* cost of the REQ_AHEAD ones */
	bool client_paused;		/* the session's back-pressure */
	uint64_t fetched;		/* octets of the running or last fetch */
	struct fetch_req *streaming;	/* whose body literal is arriving */
	unsigned cb_depth;		/* inside a data event to the session */
	bool doomed;			/* freed meanwhile: free when it returns */
	/* An operation that waits for the window to empty first (another
	 * folder, or the update): it starts once the replies are read away. */
	bool draining;
	struct {
		enum upstream_op op;	/* OP_FETCH or OP_UPDATE */
		const struct maildrop_msg *msg;
		enum upstream_part part;
		uint64_t offset, length;
	} next;

	/* update */
	size_t upd_folder, upd_pos;
	enum quit_pass upd_pass;
	char *chunk_cmds[UPSTREAM_CHUNK_CMDS];
	size_t chunk_n, chunk_next;
	bool upd_failed;
	bool hide_deleted;		/* a plan left deleted messages upstream */
};

/* --- upstream.c: the common part --------------------------------------- */

/* The upstream__start_* functions below do the work of the public call of
 * the same name (upstream.h), returns included; the public call brackets
 * them so that a completion reached inside waits for the loop. */

/* After an event to the session (cb_depth++ before it): false when the
 * session freed u meanwhile, which is released now and must not be
 * touched again. */
bool upstream__leave(struct upstream *u);
/* Ends the running operation: done now, or at the loop's next turn when
 * the call that started it is still on the stack. */
void upstream__finish(struct upstream *u, enum upstream_status st,
		      const char *why);
/* Whether an operation can start: 0, -ENOTCONN once the connection is
 * lost, -EBUSY while another one runs. */
int upstream__ready(const struct upstream *u);
/* SELECTs folder f of the maildrop; the outcome goes to the running
 * operation's after_select function below. Returns 0, or the error of
 * imap_string_append_mailbox or imap_client_command (nothing was sent). */
int upstream__select_folder(struct upstream *u, size_t f);

/* --- upstream_open.c: login and snapshot -------------------------------- */

int upstream__start_open(struct upstream *u, const char *user,
			 size_t user_len, const char *secret,
			 size_t secret_len, enum upstream_cred cred,
			 struct maildrop *md, struct uidmap *map);
void upstream__open_after_select(struct upstream *u, enum imap_result res,
				 const char *text);
/* Frees what open keeps between operations (listing, window, hasher). */
void upstream__open_clear(struct upstream *u);

/* --- upstream_fetch.c: fetch and read-ahead ----------------------------- */

int upstream__start_fetch(struct upstream *u, const struct maildrop_msg *msg,
			  enum upstream_part part, uint64_t offset,
			  uint64_t length);
int upstream__start_prefetch(struct upstream *u,
			     const struct maildrop_msg *msg,
			     enum upstream_part part, uint64_t offset,
			     uint64_t length);
void upstream__fetch_after_select(struct upstream *u, enum imap_result res,
				  const char *text);
/* Reads from the upstream unless the session holds it back or the oldest
 * reply is one nobody has asked for yet. */
void upstream__reading_update(struct upstream *u);
/* While FETCHes are in flight on a live connection, saves the update to
 * start once their replies have been read away (by calling
 * upstream__start_update) and returns true; otherwise returns false. */
bool upstream__window_hold_update(struct upstream *u);
/* Frees the window (the connection is gone with it). */
void upstream__window_free(struct upstream *u);

/* --- upstream_update.c: the QUIT update --------------------------------- */

int upstream__start_update(struct upstream *u);
void upstream__update_after_select(struct upstream *u, enum imap_result res,
				   const char *text);
/* Frees the commands of a chunk not sent yet. */
void upstream__update_clear(struct upstream *u);

#endif
