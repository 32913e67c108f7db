#ifndef POPBRIDGE_PREFETCH_H
#define POPBRIDGE_PREFETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailbox/maildrop.h"

/*
 * What a session asks the upstream for ahead (the fetch window), guessed
 * from what the client has already sent and what it did so far. Pure: no
 * I/O, no state; a wrong guess costs bandwidth within the read_ahead
 * budget, never correctness (the fetch the client really asks for reads
 * anything in front of it away).
 */

/* At most this many pipelined lines are looked at. */
#define PREFETCH_LINES_MAX 512

struct prefetch_item {
	uint32_t n;		/* message number */
	bool header;		/* TOP n 0: the header only; else the whole */
};

/*
 * In the order the client will most likely ask:
 * - first what the complete command lines in input[0..len) (received
 *   after the running command, not processed yet) will ask: RETR n, and
 *   TOP n 0 as a header; the first TOP with lines, or QUIT, ends the look
 *   (a TOP's text fetch would read everything asked before it away);
 *   commands that stay local (DELE, LIST, UIDL, STAT, NOOP, ...) are
 *   passed over;
 * - then, when in_order (the client takes the maildrop in order), the
 *   messages after the last one named (after `after` when no line names
 *   one), of the same kind (header when the last asked was), skipping
 *   deleted ones.
 * Messages that do not exist or are deleted are left out. Fills at most
 * max items and returns their number.
 */
size_t prefetch_plan(const struct maildrop *md, uint32_t after,
		     bool header, bool in_order, const char *input,
		     size_t len, struct prefetch_item *out, size_t max);

#endif
