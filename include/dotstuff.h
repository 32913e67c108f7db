#ifndef POPBRIDGE_DOTSTUFF_H
#define POPBRIDGE_DOTSTUFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

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

/* Counts only lines fed from now on; after `lines` LFs, feed stops. */
void dotstuff_limit_lines(struct dotstuff *d, uint64_t lines);

/*
 * Appends the stuffed form of p[0..n) to out. Returns the number of input
 * bytes consumed (n unless the line limit was reached), or a negative errno
 * from buf_append.
 */
long dotstuff_feed(struct dotstuff *d, const char *p, size_t n,
		   struct buf *out);

/* Appends the final CRLF if needed and the terminating ".CRLF". */
int dotstuff_finish(struct dotstuff *d, struct buf *out);

#endif
