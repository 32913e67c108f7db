/* The POP3 line reader and command parser (RFC 1939, 2449, 5034). */
#include "pop3/pop3_parse.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "util/buf.h"
#include "util/error.h"

/* UINT32_MAX has ten digits; more are refused before any arithmetic. */
#define POP3_NUMBER_DIGITS_MAX 10

/* How the part of the line after the keyword is taken apart. */
enum args_kind {
	ARGS_WORDS,		/* blank-separated words, each POP3_ARG_MAX */
	ARGS_REST,		/* one argument: the rest of the line, verbatim */
	ARGS_AUTH,		/* words; the initial response is bounded by
				 * the line only (RFC 5034 §4) */
};

struct verb_def {
	const char *name;
	enum pop3_verb verb;
	unsigned char min, max;
	enum args_kind kind;
};

static const struct verb_def verbs[] = {
	{ "USER", POP3_USER, 1, 1, ARGS_REST },
	{ "PASS", POP3_PASS, 1, 1, ARGS_REST },
	{ "APOP", POP3_APOP, 2, 2, ARGS_WORDS },
	{ "AUTH", POP3_AUTH, 0, 2, ARGS_AUTH },
	{ "STLS", POP3_STLS, 0, 0, ARGS_WORDS },
	{ "CAPA", POP3_CAPA, 0, 0, ARGS_WORDS },
	{ "QUIT", POP3_QUIT, 0, 0, ARGS_WORDS },
	{ "STAT", POP3_STAT, 0, 0, ARGS_WORDS },
	{ "LIST", POP3_LIST, 0, 1, ARGS_WORDS },
	{ "RETR", POP3_RETR, 1, 1, ARGS_WORDS },
	{ "DELE", POP3_DELE, 1, 1, ARGS_WORDS },
	{ "NOOP", POP3_NOOP, 0, 0, ARGS_WORDS },
	{ "RSET", POP3_RSET, 0, 0, ARGS_WORDS },
	{ "TOP", POP3_TOP, 2, 2, ARGS_WORDS },
	{ "UIDL", POP3_UIDL, 0, 1, ARGS_WORDS },
	{ "LAST", POP3_LAST, 0, 0, ARGS_WORDS },
};

void
pop3_line_reader_init(struct pop3_line_reader *r, size_t max)
{
	r->max = max;
	r->discarding = 0;
}

/*
 * An over-long line is consumed as it arrives and reported once, when its
 * LF shows up: reporting at the end keeps the rule "READY and TOO_LONG may
 * be followed by more lines in the same data, MORE never is", so a caller
 * that stops at MORE cannot leave a pipelined command sitting in its buffer.
 */
int
pop3_parse_line(struct pop3_line_reader *r, const char *data, size_t len,
		size_t *line_len_r, size_t *used_r)
{
	const char *lf;
	size_t end;

	*line_len_r = 0;
	*used_r = 0;
	if (len == 0)
		return POP3_LINE_MORE;
	if (!r->discarding) {
		lf = memchr(data, '\n', len < r->max ? len : r->max);
		if (lf != NULL) {
			end = (size_t)(lf - data);
			*used_r = end + 1;
			*line_len_r = end > 0 && data[end - 1] == '\r' ? end - 1
								       : end;
			return POP3_LINE_READY;
		}
		if (len < r->max)
			return POP3_LINE_MORE;
		r->discarding = 1;
	}
	lf = memchr(data, '\n', len);
	if (lf == NULL) {
		*used_r = len;
		return POP3_LINE_MORE;
	}
	r->discarding = 0;
	*used_r = (size_t)(lf - data) + 1;
	return POP3_LINE_TOO_LONG;
}

static const struct verb_def *
verb_find(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (strlen(verbs[i].name) == len &&
		    strncasecmp(verbs[i].name, s, len) == 0)
			return &verbs[i];
	}
	return NULL;
}

static bool
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Splits p[0..len) into blank-separated words; trailing blanks are fine. */
static int
args_split(const char *p, size_t len, const struct verb_def *v,
	   struct pop3_cmd *cmd, const char **why_r)
{
	size_t i = 0, start;

	for (;;) {
		while (i < len && is_blank(p[i]))
			i++;
		if (i == len)
			return 0;
		if (cmd->nargs == v->max) {
			*why_r = "too many arguments";
			return -EBADMSG;
		}
		start = i;
		while (i < len && !is_blank(p[i]))
			i++;
		if (i - start > POP3_ARG_MAX &&
		    !(v->kind == ARGS_AUTH && cmd->nargs == 1)) {
			*why_r = "argument too long";
			return -EBADMSG;
		}
		cmd->arg[cmd->nargs] = p + start;
		cmd->arg_len[cmd->nargs] = i - start;
		cmd->nargs++;
	}
}

int
pop3_parse_command(const char *line, size_t len, struct pop3_cmd *cmd_r,
		   const char **why_r)
{
	const struct verb_def *v;
	size_t vlen = 0;

	memset(cmd_r, 0, sizeof(*cmd_r));
	/* A NUL or CR inside a line would be cut or reinterpreted further on
	 * (C strings, IMAP quoted strings); no POP3 command needs one. */
	if (len > 0 && (memchr(line, '\0', len) != NULL ||
			memchr(line, '\r', len) != NULL)) {
		*why_r = "invalid character in command";
		return -EBADMSG;
	}
	while (vlen < len && !is_blank(line[vlen]))
		vlen++;
	v = verb_find(line, vlen);
	if (v == NULL) {
		*why_r = vlen == 0 ? "empty command" : "unknown command";
		return -EBADMSG;
	}
	cmd_r->verb = v->verb;
	cmd_r->rest = line + (vlen < len ? vlen + 1 : vlen);
	cmd_r->rest_len = vlen < len ? len - vlen - 1 : 0;
	if (v->kind == ARGS_REST) {
		if (cmd_r->rest_len > 0) {
			cmd_r->arg[0] = cmd_r->rest;
			cmd_r->arg_len[0] = cmd_r->rest_len;
			cmd_r->nargs = 1;
		}
	} else if (args_split(line + vlen, len - vlen, v, cmd_r, why_r) < 0) {
		return -EBADMSG;
	}
	if (cmd_r->nargs < v->min) {
		*why_r = "missing argument";
		return -EBADMSG;
	}
	return 0;
}

int
pop3_parse_number(const char *s, size_t len, uint32_t *n_r)
{
	uint64_t v;

	if (len > POP3_NUMBER_DIGITS_MAX ||
	    buf_parse_u64(s, len, UINT32_MAX, &v) < 0)
		return -EBADMSG;
	*n_r = (uint32_t)v;
	return 0;
}
