#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "mailbox/maildrop.h"

static struct maildrop md;

static void
setup(void)
{
	char *folders[] = { "INBOX", "Junk" };

	cr_assert_eq(maildrop_init(&md, folders, 2), 0);
}

static void
teardown(void)
{
	maildrop_free(&md);
}

TestSuite(maildrop, .init = setup, .fini = teardown);

Test(maildrop, numbering_stat_delete_reset)
{
	size_t count;
	uint64_t octets;

	maildrop_add(&md, 0, 7, 100);
	maildrop_add(&md, 0, 3, 10);
	maildrop_add(&md, 0, 3, 10);	/* a repeated FETCH */
	maildrop_sort_tail(&md, 0);
	maildrop_add(&md, 1, 1, 5);
	maildrop_sort_tail(&md, 2);
	cr_assert_eq(md.count, 3);
	cr_assert_eq(maildrop_get(&md, 1)->uid, 3);
	cr_assert_eq(maildrop_get(&md, 2)->uid, 7);
	cr_assert_eq(maildrop_get(&md, 3)->folder, 1);
	cr_assert_null(maildrop_get(&md, 0));
	cr_assert_null(maildrop_get(&md, 4));
	maildrop_stat(&md, &count, &octets);
	cr_assert_eq(count, 3);
	cr_assert_eq(octets, 115);
	cr_assert_eq(maildrop_delete(&md, 2), 0);
	cr_assert_eq(maildrop_delete(&md, 2), -ENOENT);
	cr_assert_null(maildrop_get(&md, 2));
	maildrop_stat(&md, &count, &octets);
	cr_assert_eq(count, 2);
	cr_assert_eq(octets, 15);
	maildrop_reset(&md);
	cr_assert_eq(md.n_deleted, 0);
	cr_assert_not_null(maildrop_get(&md, 2));
}

Test(maildrop, uidl_format_unique_printable)
{
	char a[MAILDROP_UIDL_MAX + 1], b[MAILDROP_UIDL_MAX + 1];
	size_t i;

	md.folders[0].uidvalidity = 4294967295u;
	md.folders[1].uidvalidity = 4294967295u;
	maildrop_add(&md, 0, 4294967295u, 1);
	maildrop_add(&md, 1, 4294967295u, 1);
	maildrop_uidl(&md, &md.msgs[0], a);
	maildrop_uidl(&md, &md.msgs[1], b);
	cr_assert_str_eq(a, "4294967295.4294967295");
	cr_assert_str_neq(a, b);
	cr_assert(strlen(b) <= MAILDROP_UIDL_MAX);
	for (i = 0; b[i]; i++)
		cr_assert(b[i] >= 0x21 && b[i] <= 0x7e);
}

Test(maildrop, uidset_ranges_and_chunks)
{
	struct buf out;
	size_t pos = 0, n;
	uint32_t uid;

	for (uid = 1; uid <= 20; uid++)
		maildrop_add(&md, 0, uid, 1);
	maildrop_add(&md, 1, 2, 1);
	for (uid = 1; uid <= 21; uid++) {
		if (uid <= 5 || uid == 7 || uid == 9 || uid == 10 ||
		    uid == 20 || uid == 21)
			maildrop_delete(&md, uid);
	}
	buf_init(&out, 1024);
	n = maildrop_uidset(&md, 0, MAILDROP_PICK_DELETED, &pos, 100, &out);
	cr_assert_eq(n, 9);
	cr_assert_eq(out.len, strlen("1:5,7,9:10,20"));
	cr_assert_eq(memcmp(out.data, "1:5,7,9:10,20", out.len), 0);
	buf_reset(&out);
	cr_assert_eq(maildrop_uidset(&md, 0, MAILDROP_PICK_DELETED, &pos, 100, &out), 0);

	/* Retrieved and not deleted: 6 and 8 only. */
	md.msgs[5].retrieved = md.msgs[7].retrieved = md.msgs[0].retrieved = true;
	pos = 0;
	buf_reset(&out);
	cr_assert_eq(maildrop_uidset(&md, 0, MAILDROP_PICK_RETRIEVED, &pos, 100, &out), 2);
	cr_assert_eq(memcmp(out.data, "6,8", out.len), 0);

	/* Junk's deleted UID 2 never mixes with INBOX's. */
	pos = 0;
	buf_reset(&out);
	cr_assert_eq(maildrop_uidset(&md, 1, MAILDROP_PICK_DELETED, &pos, 100, &out), 1);
	cr_assert_eq(memcmp(out.data, "2", out.len), 0);

	/* A small limit splits the set without losing or repeating UIDs. */
	pos = 0;
	n = 0;
	for (;;) {
		size_t got;

		buf_reset(&out);
		got = maildrop_uidset(&md, 0, MAILDROP_PICK_DELETED, &pos, 5, &out);
		if (got == 0)
			break;
		cr_assert(out.len <= 5);
		n += got;
	}
	cr_assert_eq(n, 9);
	buf_free(&out);
}
