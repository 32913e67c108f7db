#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/dotstuff.h"

#define OUT_MAX (64u << 20)

/* The obvious byte-at-a-time version, to hold the fast one to. */
struct ref {
	bool line_start, prev_cr, limited, reached;
	uint64_t lines_left, size;
};

static void
ref_init(struct ref *r)
{
	memset(r, 0, sizeof(*r));
	r->line_start = true;
}

static void
ref_limit(struct ref *r, uint64_t lines)
{
	r->limited = true;
	r->lines_left = lines;
	r->reached = lines == 0;
}

static size_t
ref_feed(struct ref *r, const char *p, size_t n, struct buf *out)
{
	size_t i;

	for (i = 0; i < n && !r->reached; i++) {
		char c = p[i];

		if (r->line_start && c == '.')
			cr_assert_eq(buf_append(out, ".", 1), 0);
		r->line_start = false;
		if (c == '\n') {
			if (!r->prev_cr) {
				cr_assert_eq(buf_append(out, "\r", 1), 0);
				r->size++;
			}
			r->line_start = true;
			if (r->limited && --r->lines_left == 0)
				r->reached = true;
		}
		cr_assert_eq(buf_append(out, &c, 1), 0);
		r->size++;
		r->prev_cr = c == '\r';
	}
	return i;
}

static void
ref_finish(struct ref *r, struct buf *out)
{
	if (!r->line_start)
		cr_assert_eq(buf_append(out, "\r\n", 2), 0);
	cr_assert_eq(buf_append(out, ".\r\n", 3), 0);
}

/* 0: feed with dotstuff_feed; else with dotstuff_feed_iov, this many
 * segments at a time (small, so that its partial covers are exercised). */
static size_t seg_max;

static long
feed_one(struct dotstuff *d, const char *p, size_t n, struct buf *out)
{
	struct iovec v[8];
	size_t used = 0, got, cnt, k;

	if (seg_max == 0)
		return dotstuff_feed(d, p, n, out);
	do {
		got = dotstuff_feed_iov(d, p + used, n - used, v, seg_max,
					&cnt);
		cr_assert(cnt <= seg_max && (got > 0 || cnt == 0));
		for (k = 0; k < cnt; k++)
			cr_assert_eq(buf_append(out, v[k].iov_base,
						v[k].iov_len), 0);
		used += got;
	} while (got > 0 && used < n);
	return (long)used;
}

/* Feeds chunks until one is not consumed whole (the line limit). */
static void
feed_chunks(struct dotstuff *d, const char *p, const size_t *cuts,
	    size_t ncuts, size_t n, struct buf *out)
{
	size_t i, from = 0, to;
	long r;

	for (i = 0; i <= ncuts; i++) {
		to = i < ncuts ? cuts[i] : n;
		r = feed_one(d, p + from, to - from, out);
		cr_assert(r >= 0 && (size_t)r <= to - from);
		if ((size_t)r < to - from) {
			cr_assert(d->limit_reached);
			cr_assert_eq(feed_one(d, p + from + (size_t)r,
					      to - from - (size_t)r, out),
				     0);
			return;
		}
		from = to;
	}
}

/* Output of header (unlimited), then body under a limit (< 0: none). */
static void
stuff(const char *head, size_t hn, const char *body, size_t bn,
      long long limit, const size_t *cuts, size_t ncuts, struct buf *out,
      uint64_t *size_r)
{
	struct dotstuff d;

	dotstuff_init(&d);
	buf_init(out, OUT_MAX);
	if (hn > 0)
		feed_chunks(&d, head, NULL, 0, hn, out);
	if (limit >= 0)
		dotstuff_limit_lines(&d, (uint64_t)limit);
	feed_chunks(&d, body, cuts, ncuts, bn, out);
	cr_assert_eq(dotstuff_finish(&d, out), 0);
	*size_r = d.size;
}

static void
assert_buf(const struct buf *b, const char *want, size_t wl, const char *what,
	   size_t at)
{
	cr_assert(b->len == wl && (wl == 0 || memcmp(b->data, want, wl) == 0),
		  "%s %zu: got %zu bytes \"%.*s\", want %zu \"%.*s\"", what, at,
		  b->len, (int)b->len, b->data ? b->data : "", wl, (int)wl,
		  want);
}

/*
 * in under the limit must give want and size: fed whole, split once at
 * every position, twice at every pair of positions, and byte by byte.
 */
static void
check(const char *in, size_t n, long long limit, const char *want, size_t wl,
      uint64_t want_size)
{
	struct buf out;
	uint64_t size;
	size_t cuts[2], i, j, *all;

	stuff(NULL, 0, in, n, limit, NULL, 0, &out, &size);
	assert_buf(&out, want, wl, "whole", 0);
	cr_assert_eq(size, want_size, "size %llu, want %llu",
		     (unsigned long long)size, (unsigned long long)want_size);
	buf_free(&out);
	for (i = 1; i < n; i++) {
		cuts[0] = i;
		stuff(NULL, 0, in, n, limit, cuts, 1, &out, &size);
		assert_buf(&out, want, wl, "split at", i);
		cr_assert_eq(size, want_size);
		buf_free(&out);
		for (j = i + 1; j < n; j++) {
			cuts[1] = j;
			stuff(NULL, 0, in, n, limit, cuts, 2, &out, &size);
			assert_buf(&out, want, wl, "split twice at", i * 1000 + j);
			buf_free(&out);
		}
	}
	all = malloc((n + 1) * sizeof(*all));
	cr_assert_not_null(all);
	for (i = 1; i < n; i++)
		all[i - 1] = i;
	stuff(NULL, 0, in, n, limit, all, n > 0 ? n - 1 : 0, &out, &size);
	assert_buf(&out, want, wl, "byte by byte", 0);
	cr_assert_eq(size, want_size);
	buf_free(&out);
	free(all);
}

#define CHECK(in, want, size) \
	check(in, sizeof(in) - 1, -1, want, sizeof(want) - 1, size)
#define CHECK_TOP(in, lines, want, size) \
	check(in, sizeof(in) - 1, lines, want, sizeof(want) - 1, size)

Test(dotstuff, empty_message)
{
	CHECK("", ".\r\n", 0);
}

Test(dotstuff, dot_lines)
{
	CHECK(".\r\n", "..\r\n.\r\n", 3);
	CHECK("..\r\n", "...\r\n.\r\n", 4);
	CHECK(".", "..\r\n.\r\n", 1);
	CHECK("a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n.\r\n", 9);
	CHECK("a\r\n..x\r\n", "a\r\n...x\r\n.\r\n", 8);
	CHECK("a.\r\n.a.\r\n", "a.\r\n..a.\r\n.\r\n", 9);
	CHECK(".\n.\n", "..\r\n..\r\n.\r\n", 6);
	CHECK("\r\n.\r\n", "\r\n..\r\n.\r\n", 5);
}

Test(dotstuff, final_line_without_crlf)
{
	CHECK("abc", "abc\r\n.\r\n", 3);
	CHECK("a\r\nlast", "a\r\nlast\r\n.\r\n", 7);
	CHECK("a\r\n.", "a\r\n..\r\n.\r\n", 4);
}

Test(dotstuff, bare_lf_becomes_crlf)
{
	CHECK("a\nb\n", "a\r\nb\r\n.\r\n", 6);
	CHECK("\n", "\r\n.\r\n", 2);
	CHECK("\n\n\r\n\n", "\r\n\r\n\r\n\r\n.\r\n", 8);
	CHECK("a\r\nb\nc\r\n", "a\r\nb\r\nc\r\n.\r\n", 9);
}

Test(dotstuff, bare_cr_stays)
{
	CHECK("a\rb\r\n", "a\rb\r\n.\r\n", 5);
	CHECK("a\r", "a\r\r\n.\r\n", 2);
	CHECK("\r\r\n", "\r\r\n.\r\n", 3);
	CHECK("\r.\r\n", "\r.\r\n.\r\n", 4);
	CHECK("\r\n\r", "\r\n\r\r\n.\r\n", 3);
}

Test(dotstuff, cr_at_chunk_end_then_lf)
{
	struct dotstuff d;
	struct buf out;

	dotstuff_init(&d);
	buf_init(&out, 1024);
	cr_assert_eq(dotstuff_feed(&d, "a\r", 2, &out), 2);
	cr_assert_eq(d.prev_cr, true);
	cr_assert_eq(dotstuff_feed(&d, "\n.b", 3, &out), 3);
	cr_assert_eq(dotstuff_feed(&d, "\r", 1, &out), 1);
	cr_assert_eq(dotstuff_feed(&d, "", 0, &out), 0);
	cr_assert_eq(dotstuff_feed(&d, "\n", 1, &out), 1);
	cr_assert_eq(dotstuff_finish(&d, &out), 0);
	assert_buf(&out, "a\r\n..b\r\n.\r\n", 11, "chunks", 0);
	cr_assert_eq(d.size, 7);
	buf_free(&out);
}

Test(dotstuff, top_limits)
{
	CHECK_TOP("l1\r\nl2\r\nl3\r\n", 0, ".\r\n", 0);
	CHECK_TOP("l1\r\nl2\r\nl3\r\n", 1, "l1\r\n.\r\n", 4);
	CHECK_TOP("l1\r\nl2\r\nl3\r\n", 2, "l1\r\nl2\r\n.\r\n", 8);
	CHECK_TOP("l1\r\nl2\r\nl3\r\n", 3, "l1\r\nl2\r\nl3\r\n.\r\n", 12);
	CHECK_TOP("l1\r\nl2\r\nl3\r\n", 1000, "l1\r\nl2\r\nl3\r\n.\r\n",
		  12);
	CHECK_TOP("l1\nl2\nl3", 2, "l1\r\nl2\r\n.\r\n", 8);
	CHECK_TOP("l1\nl2\nl3", 3, "l1\r\nl2\r\nl3\r\n.\r\n", 10);
	CHECK_TOP(".\r\n.\r\n.\r\n", 2, "..\r\n..\r\n.\r\n", 6);
	CHECK_TOP("\r\n\r\n", 1, "\r\n.\r\n", 2);
}

Test(dotstuff, top_after_header)
{
	static const char head[] = "Subject: x\r\n\r\n";
	static const char body[] = "b1\r\n.b2\r\nb3\r\n";
	struct buf out;
	uint64_t size;
	struct dotstuff d;
	long r;

	stuff(head, sizeof(head) - 1, body, sizeof(body) - 1, 2, NULL, 0,
	      &out, &size);
	assert_buf(&out, "Subject: x\r\n\r\nb1\r\n..b2\r\n.\r\n", 27, "top 2",
		   0);
	cr_assert_eq(size, 14 + 9);
	buf_free(&out);
	stuff(head, sizeof(head) - 1, body, sizeof(body) - 1, 0, NULL, 0,
	      &out, &size);
	assert_buf(&out, "Subject: x\r\n\r\n.\r\n", 17, "top 0", 0);
	buf_free(&out);

	/* feed says how much it took and then takes nothing. */
	dotstuff_init(&d);
	buf_init(&out, 1024);
	dotstuff_limit_lines(&d, 1);
	r = dotstuff_feed(&d, "one\r\ntwo\r\n", 10, &out);
	cr_assert_eq(r, 5);
	cr_assert(d.limit_reached);
	cr_assert_eq(dotstuff_feed(&d, "two\r\n", 5, &out), 0);
	cr_assert_eq(out.len, 5);
	dotstuff_init(&d);
	dotstuff_limit_lines(&d, 0);
	cr_assert(d.limit_reached);
	cr_assert_eq(dotstuff_feed(&d, "x\r\n", 3, &out), 0);
	buf_free(&out);
}

Test(dotstuff, full_output_buffer_changes_nothing)
{
	static const char in[] = "a\n.b\nccccccccccccccccccccccccccccccc\n";
	struct dotstuff d, before;
	struct buf out;

	dotstuff_init(&d);
	buf_init(&out, 20);
	cr_assert_eq(dotstuff_feed(&d, "x\r", 2, &out), 2);
	before = d;
	cr_assert_eq(dotstuff_feed(&d, in, sizeof(in) - 1, &out), -ENOBUFS);
	cr_assert_eq(out.len, 2);
	cr_assert(memcmp(&d, &before, sizeof(d)) == 0);
	/* Retried once there is room: as if the failure never happened. */
	out.max = 1024;
	cr_assert_eq(dotstuff_feed(&d, in, sizeof(in) - 1, &out),
		     (long)sizeof(in) - 1);
	cr_assert_eq(dotstuff_finish(&d, &out), 0);
	assert_buf(&out, "x\ra\r\n..b\r\nccccccccccccccccccccccccccccccc\r\n.\r\n",
		   46, "retry", 0);

	buf_reset(&out);
	out.max = 4;
	dotstuff_init(&d);
	cr_assert_eq(dotstuff_feed(&d, "ab", 2, &out), 2);
	cr_assert_eq(dotstuff_finish(&d, &out), -ENOBUFS);
	buf_free(&out);
}

/* Random bytes from an alphabet: a small one, so that '.', CR and LF meet
 * often, or a mostly-letters one, so that they sit at every offset of long
 * runs (the scanner reads 16 bytes at a time). */
static const char dense[] = "..\r\r\n\n\nab";
static const char sparse[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			     "0123456789+/abcdefghijklmnopqrstuvwxyz\r\n\n.";

static void
random_input(char *p, size_t n, unsigned *seed, const char *alphabet)
{
	size_t i, len = strlen(alphabet);

	for (i = 0; i < n; i++) {
		*seed = *seed * 1103515245u + 12345u;
		p[i] = alphabet[(*seed >> 16) % len];
	}
}

static unsigned
random_below(unsigned *seed, unsigned n)
{
	*seed = *seed * 1103515245u + 12345u;
	return (*seed >> 16) % n;
}

static void
match_reference(unsigned seed, const char *alphabet, char *in, size_t max,
		int rounds)
{
	int round;

	for (round = 0; round < rounds; round++) {
		size_t n = random_below(&seed, (unsigned)max), head, cuts[8], i;
		size_t ncuts = random_below(&seed, 9);
		long long limit = random_below(&seed, 3) == 0
					  ? (long long)random_below(&seed, 20)
					  : -1;
		struct buf want, got;
		struct ref r;
		uint64_t size;

		random_input(in, n, &seed, alphabet);
		head = n > 0 ? random_below(&seed, (unsigned)n + 1) : 0;
		for (i = 0; i < ncuts; i++)
			cuts[i] = n - head > 0
					  ? random_below(&seed,
							 (unsigned)(n - head))
					  : 0;
		/* Sort the cuts; equal ones make empty chunks, also fine. */
		for (i = 1; i < ncuts; i++) {
			size_t j = i, c = cuts[i];

			while (j > 0 && cuts[j - 1] > c) {
				cuts[j] = cuts[j - 1];
				j--;
			}
			cuts[j] = c;
		}

		ref_init(&r);
		buf_init(&want, OUT_MAX);
		ref_feed(&r, in, head, &want);
		if (limit >= 0)
			ref_limit(&r, (uint64_t)limit);
		ref_feed(&r, in + head, n - head, &want);
		ref_finish(&r, &want);

		seg_max = 0;
		stuff(in, head, in + head, n - head, limit, cuts, ncuts, &got,
		      &size);
		assert_buf(&got, want.data, want.len, "round", (size_t)round);
		cr_assert_eq(size, r.size, "round %d: size", round);
		buf_free(&got);
		seg_max = 3 + (size_t)round % 4;
		stuff(in, head, in + head, n - head, limit, cuts, ncuts, &got,
		      &size);
		assert_buf(&got, want.data, want.len, "segments, round",
			   (size_t)round);
		cr_assert_eq(size, r.size, "round %d: size (segments)", round);
		seg_max = 0;
		buf_free(&want);
		buf_free(&got);
	}
}

Test(dotstuff, matches_reference_on_random_input)
{
	char in[300];

	match_reference(20240229, dense, in, sizeof(in), 3000);
}

Test(dotstuff, matches_reference_on_long_sparse_input)
{
	static char in[5000];

	match_reference(1939, sparse, in, sizeof(in), 1500);
}

Test(dotstuff, every_split_of_random_input)
{
	unsigned seed = 7;
	char in[64];
	int round;

	for (round = 0; round < 20; round++) {
		struct buf want;
		struct ref r;

		random_input(in, sizeof(in), &seed, dense);
		ref_init(&r);
		buf_init(&want, OUT_MAX);
		if (round % 4 == 3)
			ref_limit(&r, (uint64_t)round / 4);
		ref_feed(&r, in, sizeof(in), &want);
		ref_finish(&r, &want);
		check(in, sizeof(in), round % 4 == 3 ? round / 4 : -1,
		      want.data, want.len, r.size);
		buf_free(&want);
	}
}

Test(dotstuff, large_message_in_bulk)
{
	size_t n = 8u << 20, i;
	char *in = malloc(n);
	struct dotstuff d;
	struct buf out;

	cr_assert_not_null(in);
	for (i = 0; i < n; i++)
		in[i] = i % 78 == 76 ? '\r' : i % 78 == 77 ? '\n' : 'x';
	dotstuff_init(&d);
	buf_init(&out, OUT_MAX);
	for (i = 0; i < n; i += 65536)
		cr_assert_eq(dotstuff_feed(&d, in + i, 65536, &out), 65536);
	cr_assert_eq(dotstuff_finish(&d, &out), 0);
	cr_assert_eq(d.size, n);
	cr_assert_eq(out.len, n + (n % 78 ? 2 : 0) + 3);
	cr_assert(memcmp(out.data, in, n) == 0);
	buf_free(&out);
	free(in);
}
