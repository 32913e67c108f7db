/* prefetch_plan: the messages a client will most likely ask for next, from
 * its pipelined commands and its order so far (pure). */
#include "pop3/prefetch.h"

#include <string.h>

#include "pop3/pop3_parse.h"

static bool
usable(const struct maildrop *md, uint32_t n)
{
	return n >= 1 && n <= md->count && !md->msgs[n - 1].deleted;
}

/* One pipelined line: 1 an item, 0 nothing to fetch, -1 the look ends. */
static int
line_item(const char *line, size_t len, struct prefetch_item *it)
{
	struct pop3_cmd cmd;
	const char *why;
	uint32_t n, lines;

	if (pop3_parse_command(line, len, &cmd, &why) < 0)
		return 0;
	switch (cmd.verb) {
	case POP3_RETR:
		if (pop3_parse_number(cmd.arg[0], cmd.arg_len[0], &n) < 0)
			return 0;
		it->n = n;
		it->header = false;
		return 1;
	case POP3_TOP:
		if (pop3_parse_number(cmd.arg[0], cmd.arg_len[0], &n) < 0 ||
		    pop3_parse_number(cmd.arg[1], cmd.arg_len[1], &lines) < 0)
			return 0;
		if (lines > 0)
			return -1;
		it->n = n;
		it->header = true;
		return 1;
	case POP3_QUIT:
		return -1;
	default:
		return 0;
	}
}

/* The complete lines of input[0..len), CRLF or LF ended. */
static size_t
plan_lines(const struct maildrop *md, const char *input, size_t len,
	   struct prefetch_item *out, size_t max, struct prefetch_item *last)
{
	size_t k = 0, pos = 0, lines = 0;

	while (pos < len && k < max && lines++ < PREFETCH_LINES_MAX) {
		const char *nl = memchr(input + pos, '\n', len - pos);
		size_t n;
		int r;

		if (nl == NULL)
			break;
		n = (size_t)(nl - (input + pos));
		if (n > 0 && input[pos + n - 1] == '\r')
			n--;
		r = line_item(input + pos, n, &out[k]);
		pos = (size_t)(nl - input) + 1;
		if (r < 0)
			break;
		if (r == 0)
			continue;
		*last = out[k];
		if (usable(md, out[k].n))
			k++;
	}
	return k;
}

size_t
prefetch_plan(const struct maildrop *md, uint32_t after, bool header,
	      bool in_order, const char *input, size_t len,
	      struct prefetch_item *out, size_t max)
{
	struct prefetch_item last = { .n = after, .header = header };
	size_t k = plan_lines(md, input, len, out, max, &last);
	uint32_t n;

	if (!in_order)
		return k;
	for (n = last.n + 1; n <= md->count && k < max; n++) {
		if (!usable(md, n))
			continue;
		out[k].n = n;
		out[k].header = last.header;
		k++;
	}
	return k;
}
