#include "dotstuff.h"

#include <string.h>

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
 * Bytes are copied in runs that end only where the output differs from the
 * input: before a bare LF (which gains a CR) and before a '.' that starts a
 * line (which gains a second '.'). For CRLF text without dot lines that is
 * one append per feed, with memchr doing the scanning.
 */
static long
feed(struct dotstuff *d, const char *p, size_t n, struct buf *out)
{
	size_t i = 0, run = 0, added = 0;
	const char *lf;
	bool cr_before;
	int r;

	while (i < n) {
		if (d->line_start) {
			d->line_start = false;
			if (p[i] == '.') {
				if ((r = buf_append(out, p + run, i - run)) < 0 ||
				    (r = buf_append(out, ".", 1)) < 0)
					return r;
				run = i;
			}
		}
		lf = memchr(p + i, '\n', n - i);
		if (lf == NULL) {
			d->prev_cr = p[n - 1] == '\r';
			i = n;
			break;
		}
		cr_before = lf > p + i ? lf[-1] == '\r' : d->prev_cr;
		if (!cr_before) {
			if ((r = buf_append(out, p + run,
					    (size_t)(lf - p) - run)) < 0 ||
			    (r = buf_append(out, "\r", 1)) < 0)
				return r;
			run = (size_t)(lf - p);
			added++;
		}
		i = (size_t)(lf - p) + 1;
		d->line_start = true;
		d->prev_cr = false;
		if (d->limited && --d->lines_left == 0) {
			d->limit_reached = true;
			break;
		}
	}
	if ((r = buf_append(out, p + run, i - run)) < 0)
		return r;
	d->size += i + added;
	return (long)i;
}

long
dotstuff_feed(struct dotstuff *d, const char *p, size_t n, struct buf *out)
{
	struct dotstuff saved = *d;
	size_t len = out->len;
	long r;

	if (d->limit_reached || n == 0)
		return 0;
	/* A full output buffer may be retried after it drains, so a failed
	 * feed leaves no trace: neither output nor state. */
	r = feed(d, p, n, out);
	if (r < 0) {
		*d = saved;
		out->len = len;
	}
	return r;
}

int
dotstuff_finish(struct dotstuff *d, struct buf *out)
{
	if (d->line_start)
		return buf_append(out, ".\r\n", 3);
	return buf_append(out, "\r\n.\r\n", 5);
}
