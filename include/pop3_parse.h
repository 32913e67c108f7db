#ifndef POPBRIDGE_POP3_PARSE_H
#define POPBRIDGE_POP3_PARSE_H

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
#define POP3_LINE_TOO_LONG (-1)

void pop3_line_reader_init(struct pop3_line_reader *r, size_t max);

/*
 * Looks for one line at the start of data[0..len).
 * POP3_LINE_READY: data[0..*line_len_r) is the line without CR LF (a bare
 *   LF ends a line too); the caller drops *used_r bytes.
 * POP3_LINE_MORE: no complete line yet; the caller drops *used_r bytes
 *   (non-zero only while discarding) and waits for more.
 * POP3_LINE_TOO_LONG: the line exceeds max; the caller drops *used_r bytes
 *   and answers -ERR once; the rest of that line is discarded silently by
 *   later calls, so a line that never ends is never buffered whole.
 */
int pop3_parse_line(struct pop3_line_reader *r, const char *data, size_t len,
		    size_t *line_len_r, size_t *used_r);

/* One parsed command. Pointers point into the line passed to the parser. */
struct pop3_cmd {
	enum pop3_verb verb;
	size_t nargs;		/* 0..2 */
	const char *arg[2];	/* not NUL-terminated */
	size_t arg_len[2];
	/* USER, PASS: the whole rest of the line after one space, which may
	 * contain spaces; also set for AUTH (mechanism and initial response
	 * are in arg[0], arg[1]). */
	const char *rest;
	size_t rest_len;
};

/*
 * Parses one command line (without CRLF). Verbs are case-insensitive.
 * Returns 0, or -1 with a static reason in *why_r (unknown command, missing
 * or extra argument, argument too long). Checks the number of arguments
 * each verb takes, not the session state.
 */
int pop3_parse_command(const char *line, size_t len, struct pop3_cmd *cmd_r,
		       const char **why_r);

/*
 * Parses a message number or line count: decimal digits only, no sign, no
 * overflow past UINT32_MAX. Returns 0 or -1.
 */
int pop3_parse_number(const char *s, size_t len, uint32_t *n_r);

#endif
