/* Message bytes into a POP3 multi-line response: CRLF line ends, dot-
 * stuffing, the final dot, TOP's line limit (SIMD scanners). */
#include "pop3/dotstuff.h"

#include <string.h>

#if defined(__SSE2__) && !defined(DOTSTUFF_NO_SIMD)
#include <emmintrin.h>
#endif

void
dotstuff_init(struct dotstuff *d)
{
	d->line_start = true;
	d->prev_cr = false;
	d->limited = false;
	d->limit_reached = false;
	d->lines_left = 0;
	d->size = 0;
}

void
dotstuff_limit_lines(struct dotstuff *d, uint64_t lines)
{
	d->limited = true;
	d->lines_left = lines;
	d->limit_reached = lines == 0;
}

/*
 * Where the output differs from the input: before a '.' that follows an LF
 * (it gains a second '.') and before an LF that follows anything but a CR
 * (it gains a CR). Returns the first such position in [i, n), or n; i >= 1,
 * as position 0 depends on the previous feed.
 */
#if defined(__SSE2__) && !defined(DOTSTUFF_NO_SIMD)
/* Each block is compared with itself shifted by one byte (a second
 * unaligned load), so no carry between blocks is needed. */
static inline __m128i
changes16(const char *q)
{
	__m128i cur = _mm_loadu_si128((const __m128i *)q);
	__m128i prev = _mm_loadu_si128((const __m128i *)(q - 1));
	__m128i dot_after_lf =
		_mm_and_si128(_mm_cmpeq_epi8(cur, _mm_set1_epi8('.')),
			      _mm_cmpeq_epi8(prev, _mm_set1_epi8('\n')));
	__m128i bare_lf =
		_mm_andnot_si128(_mm_cmpeq_epi8(prev, _mm_set1_epi8('\r')),
				 _mm_cmpeq_epi8(cur, _mm_set1_epi8('\n')));

	return _mm_or_si128(dot_after_lf, bare_lf);
}

static size_t
next_change_sse2(const char *p, size_t i, size_t n)
{
	int mask;

	for (; i + 16 <= n; i += 16) {
		mask = _mm_movemask_epi8(changes16(p + i));
		if (mask != 0)
			return i + (size_t)__builtin_ctz((unsigned)mask);
	}
	for (; i < n; i++)
		if ((p[i] == '.' && p[i - 1] == '\n') ||
		    (p[i] == '\n' && p[i - 1] != '\r'))
			return i;
	return n;
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && \
	!defined(DOTSTUFF_NO_AVX2)
#define DOTSTUFF_AVX2 1
#include <immintrin.h>

__attribute__((target("avx2"))) static inline __m256i
changes32(const char *q)
{
	__m256i cur = _mm256_loadu_si256((const __m256i *)q);
	__m256i prev = _mm256_loadu_si256((const __m256i *)(q - 1));
	__m256i dot_after_lf = _mm256_and_si256(
		_mm256_cmpeq_epi8(cur, _mm256_set1_epi8('.')),
		_mm256_cmpeq_epi8(prev, _mm256_set1_epi8('\n')));
	__m256i bare_lf = _mm256_andnot_si256(
		_mm256_cmpeq_epi8(prev, _mm256_set1_epi8('\r')),
		_mm256_cmpeq_epi8(cur, _mm256_set1_epi8('\n')));

	return _mm256_or_si256(dot_after_lf, bare_lf);
}

/* 64 bytes a step, one test for both halves: mail is mostly runs. */
__attribute__((target("avx2"))) static size_t
next_change_avx2(const char *p, size_t i, size_t n)
{
	for (; i + 64 <= n; i += 64) {
		__m256i a = changes32(p + i), b = changes32(p + i + 32);
		__m256i any = _mm256_or_si256(a, b);
		uint64_t mask;

		if (_mm256_testz_si256(any, any))
			continue;
		mask = (uint32_t)_mm256_movemask_epi8(a) |
		       (uint64_t)(uint32_t)_mm256_movemask_epi8(b) << 32;
		return i + (size_t)__builtin_ctzll(mask);
	}
	return next_change_sse2(p, i, n);
}

#ifndef DOTSTUFF_NO_AVX512
#define DOTSTUFF_AVX512 1

/* 64 bytes a step into mask registers: half the instructions of AVX2. */
__attribute__((target("avx512bw"))) static size_t
next_change_avx512(const char *p, size_t i, size_t n)
{
	const __m512i lf = _mm512_set1_epi8('\n');
	const __m512i cr = _mm512_set1_epi8('\r');
	const __m512i dot = _mm512_set1_epi8('.');

	for (; i + 64 <= n; i += 64) {
		__m512i cur = _mm512_loadu_si512((const void *)(p + i));
		__m512i prev = _mm512_loadu_si512((const void *)(p + i - 1));
		uint64_t mask = (_mm512_cmpeq_epi8_mask(cur, dot) &
				 _mm512_cmpeq_epi8_mask(prev, lf)) |
				(_mm512_cmpeq_epi8_mask(cur, lf) &
				 ~_mm512_cmpeq_epi8_mask(prev, cr));

		if (mask != 0)
			return i + (size_t)__builtin_ctzll(mask);
	}
	return next_change_sse2(p, i, n);
}
#endif
#endif

static size_t
next_change(const char *p, size_t i, size_t n)
{
#ifdef DOTSTUFF_AVX512
	if (__builtin_cpu_supports("avx512bw"))
		return next_change_avx512(p, i, n);
#endif
#ifdef DOTSTUFF_AVX2
	if (__builtin_cpu_supports("avx2"))
		return next_change_avx2(p, i, n);
#endif
	return next_change_sse2(p, i, n);
}
#else
static size_t
next_change(const char *p, size_t i, size_t n)
{
	const char *lf;
	size_t k;

	/* Both kinds sit at an LF or just after one. */
	while (i < n) {
		if (p[i] == '.' && p[i - 1] == '\n')
			return i;
		lf = memchr(p + i, '\n', n - i);
		if (lf == NULL)
			return n;
		k = (size_t)(lf - p);
		if (p[k - 1] != '\r')
			return k;
		i = k + 1;
	}
	return n;
}
#endif

/* The LFs in p[0..n), counting up to at most max; *end_r is just past the
 * last one counted when max was reached, else n. */
static uint64_t
count_lines(const char *p, size_t n, uint64_t max, size_t *end_r)
{
	const char *lf;
	uint64_t lines = 0;
	size_t i = 0;

	while (lines < max && i < n && (lf = memchr(p + i, '\n', n - i))) {
		i = (size_t)(lf - p) + 1;
		lines++;
	}
	*end_r = lines == max ? i : n;
	return lines;
}

/* An inserted byte as a segment (never written through). */
static struct iovec
inserted(char before)
{
	static const char dot = '.', cr = '\r';

	return (struct iovec){ (void *)(before == '.' ? &dot : &cr), 1 };
}

size_t
dotstuff_feed_iov(struct dotstuff *d, const char *p, size_t n,
		  struct iovec *v, size_t max, size_t *cnt_r)
{
	size_t i, run = 0, added = 0, cnt = 0, end;
	uint64_t lines = 0;

	*cnt_r = 0;
	if (d->limit_reached || n == 0 || max < 3)
		return 0;
	/* The line budget cuts the input first (TOP). */
	if (d->limited)
		lines = count_lines(p, n, d->lines_left, &n);
	/* Whether p[0] changes depends on the previous feed. */
	if ((d->line_start && p[0] == '.') || (p[0] == '\n' && !d->prev_cr))
		i = 0;
	else
		i = next_change(p, 1, n);
	/* A change takes the run before it and the inserted byte; one
	 * segment stays free for the last run. */
	while (i < n && cnt + 3 <= max) {
		if (i > run)
			v[cnt++] = (struct iovec){ (void *)(p + run), i - run };
		v[cnt++] = inserted(p[i]);
		added += p[i] == '\n';
		run = i;
		i = next_change(p, i + 1, n);
	}
	if (i > run)
		v[cnt++] = (struct iovec){ (void *)(p + run), i - run };
	d->line_start = p[i - 1] == '\n';
	d->prev_cr = p[i - 1] == '\r';
	d->size += i + added;
	if (d->limited) {
		if (i < n)	/* v filled up first: fewer lines used */
			lines = count_lines(p, i, UINT64_MAX, &end);
		d->lines_left -= lines;
		d->limit_reached = d->lines_left == 0;
	}
	*cnt_r = cnt;
	return i;
}

long
dotstuff_feed(struct dotstuff *d, const char *p, size_t n, struct buf *out)
{
	struct dotstuff saved = *d;
	size_t len = out->len, used = 0, cnt, k;
	struct iovec v[32];
	int r = 0;

	while (used < n && !d->limit_reached) {
		used += dotstuff_feed_iov(d, p + used, n - used, v, 32, &cnt);
		for (k = 0; k < cnt && r == 0; k++)
			r = buf_append(out, v[k].iov_base, v[k].iov_len);
		if (r < 0) {
			/* A full output buffer may be retried after it
			 * drains, so a failed feed leaves no trace. */
			*d = saved;
			out->len = len;
			return r;
		}
	}
	return (long)used;
}

int
dotstuff_finish(struct dotstuff *d, struct buf *out)
{
	if (d->line_start)
		return buf_append(out, ".\r\n", 3);
	return buf_append(out, "\r\n.\r\n", 5);
}
