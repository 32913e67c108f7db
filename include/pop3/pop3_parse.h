#ifndef POPBRIDGE_POP3_PARSE_H
#define POPBRIDGE_POP3_PARSE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

/*
 * RFC 2449 §4: a command line is at most 255 octets including CRLF.
 * AUTH continuation lines carry SASL payloads (OAuth tokens are long), so
 * they get their own bound.
 */
#define POP3_LINE_MAX 255
#define POP3_AUTH_LINE_MAX 16384
/* RFC 2449 §4: keywords are at most 4 characters, arguments at most 40;
 * USER and PASS keep the rest of the line, so they are bounded by the line. */
#define POP3_ARG_MAX 40

enum pop3_verb {
	POP3_UNKNOWN = 0,
	POP3_USER,
	POP3_PASS,
	POP3_APOP,
	POP3_AUTH,
	POP3_STLS,
	POP3_CAPA,
	POP3_QUIT,
	POP3_STAT,
	POP3_LIST,
	POP3_RETR,
	POP3_DELE,
	POP3_NOOP,
	POP3_RSET,
	POP3_TOP,
	POP3_UIDL,
	POP3_LAST,
};

/* Splits an input stream into lines; keeps its state across calls. */
struct pop3_line_reader {
	size_t max;		/* longest line including its CRLF */
	int discarding;		/* inside a line already reported too long */
};

#define POP3_LINE_READY 1
#define POP3_LINE_MORE 0
#define POP3_LINE_TOO_LONG (-EMSGSIZE)

void pop3_line_reader_init(struct pop3_line_reader *r, size_t max);

/*
 * Looks for one line at the start of data[0..len). A line's length counts
 * its terminator (CRLF, or a bare LF, which ends a line too).
 * POP3_LINE_READY: data[0..*line_len_r) is the line without CR LF; the
 *   caller drops *used_r bytes and calls again: more lines may follow.
 * POP3_LINE_MORE: no complete line in data; the caller drops *used_r bytes
 *   and waits for more input. *used_r is non-zero only while a line longer
 *   than max is arriving: its bytes are consumed as they come, so a line
 *   that never ends is never buffered, and the caller never holds more than
 *   max bytes.
 * POP3_LINE_TOO_LONG: a line longer than max has ended; *used_r covers the
 *   rest of it and its LF. The caller drops *used_r bytes, answers -ERR
 *   once, and calls again, as after READY. This is returned once per long
 *   line, when its end arrives (at once if it is already in data).
 */
int pop3_parse_line(struct pop3_line_reader *r, const char *data, size_t len,
		    size_t *line_len_r, size_t *used_r);

/*
 * One parsed command. Pointers point into the line passed to the parser.
 * Arguments are separated by blanks (space or tab); blanks after the last
 * one are ignored. Each is at most POP3_ARG_MAX, except the USER and PASS
 * argument (the rest) and AUTH's initial response (RFC 5034 §4 bounds it by
 * the command line only).
 */
struct pop3_cmd {
	enum pop3_verb verb;
	size_t nargs;		/* 0..2 */
	const char *arg[2];	/* not NUL-terminated */
	size_t arg_len[2];
	/* The whole rest of the line after the keyword and one blank,
	 * verbatim (empty when there is none); set for every command. For
	 * USER and PASS it is also arg[0] (may contain or end in spaces);
	 * for AUTH the mechanism and initial response are arg[0], arg[1]. */
	const char *rest;
	size_t rest_len;
};

/*
 * Parses one command line (without CRLF). Verbs are case-insensitive.
 * Returns 0, or -EBADMSG with a static reason in *why_r (unknown command,
 * missing or extra argument, argument too long, a NUL or CR in the line); then
 * cmd_r->verb still names a known verb (POP3_UNKNOWN otherwise). Checks the
 * number of arguments each verb takes, not the session state, and not
 * whether numeric arguments are numbers (pop3_parse_number does).
 */
int pop3_parse_command(const char *line, size_t len, struct pop3_cmd *cmd_r,
		       const char **why_r);

/*
 * Parses a message number or line count: 1 to 10 decimal digits (leading
 * zeros allowed), no sign, no blanks, no overflow past UINT32_MAX. Zero is
 * a number; whether it names a message is the caller's business.
 * Returns 0 or -EBADMSG.
 */
int pop3_parse_number(const char *s, size_t len, uint32_t *n_r);

#endif
