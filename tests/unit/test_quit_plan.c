#include <criterion/criterion.h>
#include <string.h>

#include "imap/imap_client.h"
#include "mailbox/quit_plan.h"

/* What each capability set and policy must give: the steps, whether the
 * map must hide the messages, and whether a fallback is logged. */
struct want {
	unsigned caps;
	enum on_delete how;
	enum quit_step steps[QUIT_PLAN_MAX];
	size_t n;
	bool hide, fallback;
};

#define PLUS IMAP_CAP_UIDPLUS
#define MOVE IMAP_CAP_MOVE

static const struct want table[] = {
	{ PLUS | MOVE, ON_DELETE_EXPUNGE, { QUIT_STORE_DELETED, QUIT_EXPUNGE }, 2,
	  false, false },
	{ PLUS, ON_DELETE_EXPUNGE, { QUIT_STORE_DELETED, QUIT_EXPUNGE }, 2,
	  false, false },
	{ MOVE, ON_DELETE_EXPUNGE, { QUIT_MOVE }, 1, false, true },
	{ 0, ON_DELETE_EXPUNGE, { QUIT_STORE_DELETED }, 1, true, true },
	{ PLUS | MOVE, ON_DELETE_TRASH, { QUIT_MOVE }, 1, false, false },
	{ MOVE, ON_DELETE_TRASH, { QUIT_MOVE }, 1, false, false },
	{ PLUS, ON_DELETE_TRASH, { QUIT_COPY, QUIT_STORE_DELETED, QUIT_EXPUNGE },
	  3, false, false },
	{ 0, ON_DELETE_TRASH, { QUIT_COPY, QUIT_STORE_DELETED }, 2, true, true },
	{ PLUS | MOVE, ON_DELETE_SEEN, { QUIT_STORE_SEEN }, 1, true, false },
	{ PLUS, ON_DELETE_SEEN, { QUIT_STORE_SEEN }, 1, true, false },
	{ MOVE, ON_DELETE_SEEN, { QUIT_STORE_SEEN }, 1, true, false },
	{ 0, ON_DELETE_SEEN, { QUIT_STORE_SEEN }, 1, true, false },
	{ PLUS | MOVE, ON_DELETE_KEEP, { 0 }, 0, false, false },
	{ PLUS, ON_DELETE_KEEP, { 0 }, 0, false, false },
	{ MOVE, ON_DELETE_KEEP, { 0 }, 0, false, false },
	{ 0, ON_DELETE_KEEP, { 0 }, 0, false, false },
};

#define N_TABLE (sizeof(table) / sizeof(table[0]))

/* Capabilities that must not change any plan. */
static const unsigned noise[] = {
	0, IMAP_CAP_IMAP4REV1 | IMAP_CAP_SASL_IR | IMAP_CAP_LITERAL_PLUS,
	IMAP_CAP_OBJECTID | IMAP_CAP_X_GM_EXT_1 | IMAP_CAP_ID,
};

Test(quit_plan, every_capability_set_and_policy)
{
	struct quit_plan p;
	size_t i, j, k;

	for (i = 0; i < N_TABLE; i++) {
		for (k = 0; k < sizeof(noise) / sizeof(noise[0]); k++) {
			quit_plan_delete(table[i].caps | noise[k], table[i].how,
					 &p);
			cr_assert_eq(p.n, table[i].n, "row %zu", i);
			for (j = 0; j < p.n; j++)
				cr_assert_eq(p.steps[j], table[i].steps[j],
					     "row %zu step %zu", i, j);
			cr_assert_eq(p.hide, table[i].hide, "row %zu", i);
			cr_assert_eq(p.fallback != NULL, table[i].fallback,
				     "row %zu", i);
		}
	}
}

Test(quit_plan, covers_every_combination)
{
	static const unsigned caps[] = { 0, PLUS, MOVE, PLUS | MOVE };
	static const enum on_delete hows[] = {
		ON_DELETE_EXPUNGE, ON_DELETE_TRASH, ON_DELETE_SEEN,
		ON_DELETE_KEEP,
	};
	size_t c, h, i, found;

	for (c = 0; c < 4; c++) {
		for (h = 0; h < 4; h++) {
			for (i = 0, found = 0; i < N_TABLE; i++)
				found += table[i].caps == caps[c] &&
					 table[i].how == hows[h];
			cr_assert_eq(found, 1, "caps %u on_delete %d", caps[c],
				     (int)hows[h]);
		}
	}
}

/* QUIT as a whole: every capability set x on_delete x mark_seen, both
 * passes. The deletion pass is the table's row whatever mark_seen says;
 * the \Seen pass runs exactly when mark_seen is on, the same for every
 * capability set and policy, and hides nothing. */
Test(quit_plan, every_pass_with_mark_seen_on_and_off)
{
	struct quit_plan p, want;
	size_t i, j, k, ms;

	for (i = 0; i < N_TABLE; i++) {
		for (k = 0; k < sizeof(noise) / sizeof(noise[0]); k++) {
			for (ms = 0; ms < 2; ms++) {
				unsigned caps = table[i].caps | noise[k];

				quit_plan_pass(caps, table[i].how, ms,
					       QUIT_PASS_DELETE, &p);
				cr_assert_eq(p.n, table[i].n, "row %zu ms %zu",
					     i, ms);
				for (j = 0; j < p.n; j++)
					cr_assert_eq(p.steps[j],
						     table[i].steps[j],
						     "row %zu ms %zu step %zu",
						     i, ms, j);
				cr_assert_eq(p.hide, table[i].hide,
					     "row %zu ms %zu", i, ms);
				cr_assert_eq(p.fallback != NULL,
					     table[i].fallback,
					     "row %zu ms %zu", i, ms);

				quit_plan_pass(caps, table[i].how, ms,
					       QUIT_PASS_SEEN, &p);
				cr_assert_eq(p.n, ms ? 1u : 0u,
					     "row %zu ms %zu", i, ms);
				if (ms)
					cr_assert_eq(p.steps[0],
						     QUIT_STORE_SEEN,
						     "row %zu", i);
				cr_assert(!p.hide, "row %zu ms %zu", i, ms);
				cr_assert_null(p.fallback, "row %zu ms %zu",
					       i, ms);

				quit_plan_pass(caps, table[i].how, ms,
					       QUIT_PASS_END, &p);
				cr_assert_eq(p.n, 0, "row %zu ms %zu", i, ms);
			}
		}
	}
	/* The pass plans are the plain planners' plans. */
	quit_plan_seen(&want);
	quit_plan_pass(0, ON_DELETE_KEEP, true, QUIT_PASS_SEEN, &p);
	cr_assert_eq(p.n, want.n);
	cr_assert_eq(p.steps[0], want.steps[0]);
}

/* A plan that runs no step leaves nothing from an earlier one behind. */
Test(quit_plan, empty_pass_clears_the_plan)
{
	struct quit_plan p;

	quit_plan_delete(0, ON_DELETE_TRASH, &p);
	cr_assert(p.hide);
	cr_assert_not_null(p.fallback);
	quit_plan_pass(0, ON_DELETE_TRASH, false, QUIT_PASS_SEEN, &p);
	cr_assert_eq(p.n, 0);
	cr_assert(!p.hide);
	cr_assert_null(p.fallback);
	quit_plan_delete(0, ON_DELETE_EXPUNGE, &p);
	quit_plan_pass(0, ON_DELETE_KEEP, true, QUIT_PASS_DELETE, &p);
	cr_assert_eq(p.n, 0);
	cr_assert(!p.hide);
	cr_assert_null(p.fallback);
}

/* Invariants over every plan, mark_seen's included: an expunge only by
 * UID and only after \Deleted was set on the same set; no expunge at all
 * without UIDPLUS; what stays upstream is hidden unless it moved. */
Test(quit_plan, never_a_plain_expunge)
{
	struct quit_plan p;
	size_t i, j;
	bool stored;

	for (i = 0; i < N_TABLE; i++) {
		quit_plan_delete(table[i].caps, table[i].how, &p);
		stored = false;
		for (j = 0; j < p.n; j++) {
			if (p.steps[j] == QUIT_STORE_DELETED)
				stored = true;
			if (p.steps[j] == QUIT_EXPUNGE) {
				cr_assert(stored, "row %zu", i);
				cr_assert(table[i].caps & PLUS, "row %zu", i);
			}
		}
	}
	quit_plan_seen(&p);
	cr_assert_eq(p.n, 1);
	cr_assert_eq(p.steps[0], QUIT_STORE_SEEN);
	cr_assert(!p.hide);
	cr_assert_null(p.fallback);
}

static void
command_is(enum quit_step step, const char *want)
{
	struct buf out;

	buf_init(&out, 256);
	cr_assert_eq(quit_plan_command(step, "1:3,7", 5, " \"Trash\"", &out), 0);
	cr_assert_eq(out.len, strlen(want));
	cr_assert_eq(memcmp(out.data, want, out.len), 0, "%.*s",
		     (int)out.len, out.data);
	buf_free(&out);
}

Test(quit_plan, commands)
{
	command_is(QUIT_STORE_DELETED, "UID STORE 1:3,7 +FLAGS.SILENT (\\Deleted)");
	command_is(QUIT_EXPUNGE, "UID EXPUNGE 1:3,7");
	command_is(QUIT_MOVE, "UID MOVE 1:3,7 \"Trash\"");
	command_is(QUIT_COPY, "UID COPY 1:3,7 \"Trash\"");
	command_is(QUIT_STORE_SEEN, "UID STORE 1:3,7 +FLAGS.SILENT (\\Seen)");
}

Test(quit_plan, command_over_the_limit)
{
	struct buf out;

	buf_init(&out, 16);
	cr_assert_lt(quit_plan_command(QUIT_EXPUNGE, "1:3,7,9,11,13,15", 16, "",
				       &out), 0);
	buf_free(&out);
}
