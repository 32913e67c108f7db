#include <criterion/criterion.h>
#include <string.h>

#include "mailbox/maildrop.h"
#include "pop3/prefetch.h"

#define N 10

static struct maildrop_msg msgs[N];
static struct maildrop md;

static void
setup(void)
{
	memset(msgs, 0, sizeof(msgs));
	memset(&md, 0, sizeof(md));
	md.msgs = msgs;
	md.count = N;
	md.cap = N;
}

static size_t
plan(uint32_t after, bool header, bool in_order, const char *in,
     struct prefetch_item *out, size_t max)
{
	return prefetch_plan(&md, after, header, in_order, in,
			     in ? strlen(in) : 0, out, max);
}

TestSuite(prefetch, .init = setup);

Test(prefetch, in_order_takes_the_next_messages)
{
	struct prefetch_item o[N];
	size_t n = plan(3, false, true, NULL, o, N);

	cr_assert_eq(n, 7);
	cr_assert_eq(o[0].n, 4);
	cr_assert_eq(o[6].n, 10);
	cr_assert(!o[0].header);
}

Test(prefetch, out_of_order_guesses_nothing)
{
	struct prefetch_item o[N];

	cr_assert_eq(plan(3, false, false, NULL, o, N), 0);
}

Test(prefetch, deleted_and_missing_are_left_out)
{
	struct prefetch_item o[N];
	size_t n;

	msgs[4].deleted = true;		/* message 5 */
	n = plan(3, false, false, "RETR 5\r\nRETR 6\r\nRETR 99\r\nRETR 0\r\n",
		 o, N);
	cr_assert_eq(n, 1);
	cr_assert_eq(o[0].n, 6);
	n = plan(3, false, true, NULL, o, N);
	cr_assert_eq(n, 6);
	cr_assert_eq(o[0].n, 4);
	cr_assert_eq(o[1].n, 6);
}

Test(prefetch, pipelined_lines_first_then_after_the_last)
{
	struct prefetch_item o[N];
	size_t n = plan(1, false, true,
			"DELE 1\r\nRETR 7\nLIST\r\nretr 2\r\nUIDL 3\r\n", o, N);

	cr_assert_eq(n, 10 - 2 + 2);
	cr_assert_eq(o[0].n, 7);
	cr_assert_eq(o[1].n, 2);
	cr_assert_eq(o[2].n, 3);
	cr_assert_eq(o[9].n, 10);
}

Test(prefetch, top_zero_is_a_header_and_top_with_lines_ends_the_look)
{
	struct prefetch_item o[N];
	size_t n = plan(0, true, false, "TOP 2 0\r\nTOP 3 5\r\nRETR 4\r\n", o,
			N);

	cr_assert_eq(n, 1);
	cr_assert_eq(o[0].n, 2);
	cr_assert(o[0].header);
	n = plan(2, true, true, NULL, o, 2);
	cr_assert_eq(n, 2);
	cr_assert(o[0].header && o[0].n == 3);
}

Test(prefetch, quit_ends_the_look_and_the_guess_follows_the_last_named)
{
	struct prefetch_item o[N];
	size_t n = plan(1, false, true, "RETR 2\r\nQUIT\r\nRETR 9\r\n", o, N);

	cr_assert_eq(n, 9);
	cr_assert_eq(o[0].n, 2);
	cr_assert_eq(o[1].n, 3);
}

Test(prefetch, incomplete_and_garbage_lines)
{
	struct prefetch_item o[N];

	cr_assert_eq(plan(1, false, false, "RETR x\r\nRETR\r\nFOO 3\r\nRETR 4",
			  o, N), 0);
	cr_assert_eq(plan(1, false, false, "TOP 4 x\r\nTOP 5 0\r\n", o, N), 1);
	cr_assert_eq(o[0].n, 5);
}

Test(prefetch, max_is_respected)
{
	struct prefetch_item o[3];

	cr_assert_eq(plan(0, false, true, "RETR 9\r\nRETR 8\r\n", o, 3), 3);
	cr_assert_eq(o[0].n, 9);
	cr_assert_eq(o[1].n, 8);
	cr_assert_eq(o[2].n, 9);
}
