#ifndef POPBRIDGE_IMAP_STRING_H
#define POPBRIDGE_IMAP_STRING_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

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

/*
 * Appends a mailbox name as a quoted string. Names with 8-bit bytes are
 * taken as UTF-8 and written in modified UTF-7 (RFC 3501 §5.1.3), the form
 * IMAP4rev1 servers expect ("Indésirables" -> "Ind&AOk-sirables"); pure
 * ASCII names are sent as they are, so a name already written in modified
 * UTF-7 keeps working. Returns 0, -EINVAL for invalid UTF-8 or control
 * characters, or a buf error.
 */
int imap_string_append_mailbox(struct buf *out, const char *name);

#endif
