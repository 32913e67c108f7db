#ifndef POPBRIDGE_IMAP_STRING_H
#define POPBRIDGE_IMAP_STRING_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/*
 * How user-supplied bytes travel in an IMAP command (RFC 9051 §4.3). No
 * byte of user input is ever pasted raw: it is a quoted string with \ and "
 * escaped, or a literal whose length precedes it.
 */
enum imap_string_form {
	IMAP_STRING_QUOTED,	/* 7-bit, no CR, LF or NUL */
	IMAP_STRING_LITERAL,	/* anything else except NUL */
	IMAP_STRING_INVALID,	/* contains NUL: cannot be sent */
};

enum imap_string_form imap_string_form(const char *s, size_t n);

/* Appends "s" with backslash and double quote escaped. Only for
 * IMAP_STRING_QUOTED input; returns 0, -EINVAL otherwise, or a buf error. */
int imap_string_append_quoted(struct buf *out, const char *s, size_t n);

/* Appends the literal announcement "{n}" or, when non_sync, "{n+}" (the
 * caller then sends CRLF and, after any continuation, the n bytes). */
int imap_string_append_literal_prefix(struct buf *out, size_t n,
				      bool non_sync);

#endif
