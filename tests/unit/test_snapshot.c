#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mailbox/maildrop.h"
#include "mailbox/snapshot.h"
#include "store/uidmap.h"

static char dir[] = "/tmp/pb-snapshot-XXXXXX";
static struct uidmap *map;
static struct maildrop md;

static void
setup(void)
{
	char err[256];
	char *folders[] = { "INBOX", "Junk" };

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(uidmap_load(dir, "0123456789abcdef0123456789abcdef",
				 &map, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(maildrop_init(&md, folders, 2), 0);
}

static void
teardown(void)
{
	char cmd[128];

	uidmap_free(&map);
	maildrop_free(&md);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(snapshot, .init = setup, .fini = teardown);

static void
listing(struct uidmap_current *cur, const uint32_t *uids, size_t n)
{
	size_t i;

	memset(cur, 0, n * sizeof(*cur));
	for (i = 0; i < n; i++) {
		cur[i].uid = uids[i];
		cur[i].size = 100 + uids[i];
	}
}

static void
apply(uint16_t f, uint32_t validity, uint32_t uidnext,
      const struct uidmap_current *cur, size_t n, bool since_now,
      size_t *rematched)
{
	struct snapshot_folder sf = {
		.index = f,
		.name = md.folders[f].name,
		.uidvalidity = validity,
		.uidnext = uidnext,
		.cur = cur,
		.n = n,
		.since_now = since_now,
	};
	size_t dummy;

	md.folders[f].uidvalidity = validity;
	cr_assert_eq(snapshot_apply(map, &md, &sf,
				    rematched ? rematched : &dummy), 0);
}

static void
reset_maildrop(void)
{
	md.count = 0;
	md.n_deleted = 0;
}

Test(snapshot, identities_are_stable_and_pruned)
{
	uint32_t uids[] = { 3, 5, 9 };
	struct uidmap_current cur[3];
	char u[MAILDROP_UIDL_MAX + 1];

	listing(cur, uids, 3);
	apply(0, 77, 10, cur, 3, false, NULL);
	cr_assert_eq(md.count, 3);
	maildrop_uidl(&md, &md.msgs[1], u);
	cr_assert_str_eq(u, "77.5");
	cr_assert(map->dirty);

	/* 5 is gone upstream: its entry is pruned. */
	reset_maildrop();
	listing(cur, (uint32_t[]){ 3, 9 }, 2);
	apply(0, 77, 10, cur, 2, false, NULL);
	cr_assert_eq(md.count, 2);
	cr_assert_null(uidmap_find(uidmap_folder(map, "INBOX", false), 5));
}

Test(snapshot, exact_size_and_hidden_from_the_map)
{
	uint32_t uids[] = { 1, 2, 3 };
	struct uidmap_current cur[3];
	struct uidmap_folder *f;

	listing(cur, uids, 3);
	apply(0, 5, 4, cur, 3, false, NULL);
	f = uidmap_folder(map, "INBOX", false);
	uidmap_set_size(map, uidmap_find(f, 1), 42, 101);
	uidmap_set_hidden(map, uidmap_find(f, 2));
	reset_maildrop();
	apply(0, 5, 4, cur, 3, false, NULL);
	cr_assert_eq(md.count, 2);
	cr_assert_eq(md.msgs[0].uid, 1);
	cr_assert_eq(md.msgs[0].size, 42);
	cr_assert_eq(md.msgs[1].uid, 3);
	cr_assert_eq(md.msgs[1].size, 103);
}

Test(snapshot, last_and_sizes_from_the_map)
{
	uint32_t uids[] = { 1, 2, 3, 4 };
	struct uidmap_current cur[4];
	struct uidmap_folder *f;

	listing(cur, uids, 4);
	apply(0, 5, 5, cur, 4, false, NULL);
	cr_assert_eq(md.last_known, 0);
	f = uidmap_folder(map, "INBOX", false);
	uidmap_set_retrieved(map, uidmap_find(f, 1));
	uidmap_set_retrieved(map, uidmap_find(f, 3));
	uidmap_set_size(map, uidmap_find(f, 2), 42, 102);
	uidmap_set_size(map, uidmap_find(f, 3), 43, 90);
	reset_maildrop();
	apply(0, 5, 5, cur, 4, false, NULL);
	/* LAST: the highest number retrieved before. */
	cr_assert_eq(md.last_known, 3);
	cr_assert_eq(maildrop_last(&md), 3);
	md.last_retrieved = 4;
	cr_assert_eq(maildrop_last(&md), 4);
	maildrop_reset(&md);
	cr_assert_eq(maildrop_last(&md), 3);
	/* 2's exact size was learned at the size the server still lists;
	 * 3's server size moved (103, not 90): the exact one is dropped. */
	cr_assert_eq(md.msgs[1].size, 42);
	cr_assert_eq(md.msgs[1].listed, 102);
	cr_assert_eq(md.msgs[2].size, 103);
	cr_assert_eq(uidmap_find(f, 3)->flags & UIDMAP_EXACT, 0);
}

Test(snapshot, since_now_shows_only_later_mail)
{
	uint32_t before[] = { 1, 2 }, after[] = { 1, 2, 7 };
	struct uidmap_current cur[3];

	listing(cur, before, 2);
	apply(0, 5, 7, cur, 2, true, NULL);
	cr_assert_eq(md.count, 0);
	reset_maildrop();
	listing(cur, after, 3);
	apply(0, 5, 8, cur, 3, true, NULL);
	cr_assert_eq(md.count, 1);
	cr_assert_eq(md.msgs[0].uid, 7);
	/* since = all again: everything. */
	reset_maildrop();
	apply(0, 5, 8, cur, 3, false, NULL);
	cr_assert_eq(md.count, 3);
}

Test(snapshot, rebuild_keeps_uidls_of_fingerprinted_mail)
{
	uint32_t old_uids[] = { 10, 11, 12 }, new_uids[] = { 1, 2, 3, 4 };
	struct uidmap_current cur[4];
	struct uidmap_folder *f;
	char u[MAILDROP_UIDL_MAX + 1];
	size_t i, rematched;

	listing(cur, old_uids, 3);
	apply(0, 100, 13, cur, 3, false, NULL);
	f = uidmap_folder(map, "INBOX", false);
	for (i = 0; i < 3; i++) {
		uint8_t fp[UIDMAP_FP_LEN];

		memset(fp, (int)(0x10 + i), sizeof(fp));
		uidmap_set_fp(map, uidmap_find(f, old_uids[i]), fp);
	}
	cr_assert(snapshot_needs_fps(map, "INBOX", 200));
	cr_assert_not(snapshot_needs_fps(map, "INBOX", 100));

	/* The same three messages as 1..3, in another order, and a new 4. */
	listing(cur, new_uids, 4);
	memset(cur[0].fp, 0x12, UIDMAP_FP_LEN);
	memset(cur[1].fp, 0x10, UIDMAP_FP_LEN);
	memset(cur[2].fp, 0x11, UIDMAP_FP_LEN);
	memset(cur[3].fp, 0x77, UIDMAP_FP_LEN);
	for (i = 0; i < 4; i++)
		cur[i].has_fp = true;
	reset_maildrop();
	apply(0, 200, 5, cur, 4, false, &rematched);
	cr_assert_eq(rematched, 3);
	cr_assert_eq(md.count, 4);
	maildrop_uidl(&md, &md.msgs[0], u);
	cr_assert_str_eq(u, "100.12");
	maildrop_uidl(&md, &md.msgs[1], u);
	cr_assert_str_eq(u, "100.10");
	maildrop_uidl(&md, &md.msgs[3], u);
	cr_assert_str_eq(u, "200.4");
}

Test(snapshot, rebuild_under_since_now_does_not_flood)
{
	uint32_t first[] = { 1, 2 }, later[] = { 1, 2, 3 };
	uint32_t rebuilt[] = { 1, 2, 3 };
	struct uidmap_current cur[3];
	struct uidmap_folder *f;
	uint8_t fp[UIDMAP_FP_LEN];
	size_t rematched;

	listing(cur, first, 2);
	apply(0, 100, 3, cur, 2, true, NULL);	/* baseline: uid >= 3 */
	reset_maildrop();
	listing(cur, later, 3);
	apply(0, 100, 4, cur, 3, true, NULL);
	cr_assert_eq(md.count, 1);		/* 3 arrived later */
	f = uidmap_folder(map, "INBOX", false);
	memset(fp, 0x33, sizeof(fp));
	uidmap_set_fp(map, uidmap_find(f, 3), fp);

	/* Rebuilt: old 1, 2 (unknown prints) and 3 (known) become 1..3. */
	listing(cur, rebuilt, 3);
	memset(cur[0].fp, 0x01, UIDMAP_FP_LEN);
	memset(cur[1].fp, 0x02, UIDMAP_FP_LEN);
	memset(cur[2].fp, 0x33, UIDMAP_FP_LEN);
	cur[0].has_fp = cur[1].has_fp = cur[2].has_fp = true;
	reset_maildrop();
	apply(0, 300, 4, cur, 3, true, &rematched);
	cr_assert_eq(rematched, 1);
	cr_assert_eq(md.count, 1);
	cr_assert_eq(md.msgs[0].uid, 3);
	cr_assert_eq(md.msgs[0].uidl_validity, 100);
}

Test(snapshot, date_window_filters_but_map_keeps_all)
{
	uint32_t uids[] = { 1, 2, 3, 4 }, window[] = { 2, 4 };
	struct uidmap_current cur[4];
	struct snapshot_folder sf;
	size_t rematched;

	listing(cur, uids, 4);
	memset(&sf, 0, sizeof(sf));
	sf.index = 0;
	sf.name = "INBOX";
	sf.uidvalidity = 9;
	sf.cur = cur;
	sf.n = 4;
	sf.window = window;
	sf.n_window = 2;
	md.folders[0].uidvalidity = 9;
	cr_assert_eq(snapshot_apply(map, &md, &sf, &rematched), 0);
	cr_assert_eq(md.count, 2);
	cr_assert_eq(md.msgs[0].uid, 2);
	cr_assert_eq(uidmap_folder(map, "INBOX", false)->count, 4);
}
