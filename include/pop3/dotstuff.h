#ifndef POPBRIDGE_DOTSTUFF_H
#define POPBRIDGE_DOTSTUFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "util/buf.h"

/*
 * Turns message bytes into the body of a POP3 multi-line response
 * (RFC 1939 §3): a '.' starting a line is doubled, a bare LF becomes CRLF,
 * and finish adds CRLF (when the data lacked a final one) and ".CRLF".
 * Input may arrive split anywhere. Optionally stops after a number of lines
 * (TOP). Counts the octets of the message as a client sees them after
 * un-stuffing: CRLF line ends, without the CRLF added only to terminate.
 */
struct dotstuff {
	bool line_start;	/* next byte begins a line */
	bool prev_cr;		/* last byte seen was CR */
	bool limited;		/* lines_left applies */
	bool limit_reached;	/* the line limit is used up */
	uint64_t lines_left;
	uint64_t size;		/* normalized octets delivered so far */
};

void dotstuff_init(struct dotstuff *d);

/* Counts only lines fed from now on; after `lines` LFs, feed stops
 * consuming input and sets limit_reached (at once when lines is 0). */
void dotstuff_limit_lines(struct dotstuff *d, uint64_t lines);

/*
 * Appends the stuffed form of p[0..n) to out. Returns the number of input
 * bytes consumed (n unless the line limit was reached; 0 once it has been),
 * or a negative errno from buf_append (-ENOBUFS when out is full), in which
 * case neither out nor d has changed and the same bytes may be fed again.
 * A bare CR stays as it is; a CR ending one feed and an LF starting the
 * next are one CRLF.
 */
long dotstuff_feed(struct dotstuff *d, const char *p, size_t n,
		   struct buf *out);

/*
 * The same without copying: describes the stuffed form of a prefix of
 * p[0..n) as up to max (>= 3) segments in v, which point into p or at
 * constant inserted bytes, sets *cnt_r to their number and returns the
 * length of that prefix (shorter than n only when v is full or the line
 * limit was reached; 0 once it has been).
 */
size_t dotstuff_feed_iov(struct dotstuff *d, const char *p, size_t n,
			 struct iovec *v, size_t max, size_t *cnt_r);

/* Appends CRLF if the data fed so far was non-empty and did not end with
 * an LF, then the terminating ".CRLF": an empty message gives ".CRLF".
 * Neither is counted in size. Returns 0 or a negative errno. */
int dotstuff_finish(struct dotstuff *d, struct buf *out);

#endif
