#include "imap_string.h"

#include <errno.h>
#include <stdint.h>

enum imap_string_form
imap_string_form(const char *s, size_t n)
{
	enum imap_string_form form = IMAP_STRING_QUOTED;
	unsigned char c;
	size_t i;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '\0')
			return IMAP_STRING_INVALID;
		if (c == '\r' || c == '\n' || c >= 0x80)
			form = IMAP_STRING_LITERAL;
	}
	return form;
}

static size_t
quoted_len(const char *s, size_t n)
{
	size_t i, len = 2 + n;

	for (i = 0; i < n; i++) {
		if (s[i] == '\\' || s[i] == '"')
			len++;
	}
	return len;
}

int
imap_string_append_quoted(struct buf *out, const char *s, size_t n)
{
	size_t i, len;
	char *w;
	int r;

	if (imap_string_form(s, n) != IMAP_STRING_QUOTED)
		return -EINVAL;
	/* n is the length of existing memory, so 2 + 2n cannot wrap. */
	len = quoted_len(s, n);
	r = buf_reserve(out, len);
	if (r < 0)
		return r;
	w = out->data + out->len;
	*w++ = '"';
	for (i = 0; i < n; i++) {
		if (s[i] == '\\' || s[i] == '"')
			*w++ = '\\';
		*w++ = s[i];
	}
	*w = '"';
	out->len += len;
	return 0;
}

int
imap_string_append_literal_prefix(struct buf *out, size_t n, bool non_sync)
{
	return buf_appendf(out, non_sync ? "{%zu+}" : "{%zu}", n);
}
