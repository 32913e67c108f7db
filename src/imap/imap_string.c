/* User data into IMAP commands: quoted strings, literals, mailbox names. */
#include "imap/imap_string.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

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

/* Decodes one UTF-8 sequence at s (strictly: no overlongs, no surrogates);
 * returns its length, or 0 when invalid. */
static size_t
utf8_decode(const unsigned char *s, size_t n, uint32_t *cp_r)
{
	uint32_t cp;
	size_t len, i;

	if (s[0] < 0x80) {
		*cp_r = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return len;
}

/* The base64 of RFC 3501's modified UTF-7: ',' stands for '/'. */
static const char mutf7_b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

struct b64_state {
	uint32_t bits;
	int nbits;
};

static int
b64_push16(struct buf *out, struct b64_state *st, uint32_t unit)
{
	char c;
	int r;

	st->bits = (st->bits << 16) | unit;
	st->nbits += 16;
	while (st->nbits >= 6) {
		st->nbits -= 6;
		c = mutf7_b64[(st->bits >> st->nbits) & 0x3f];
		if ((r = buf_append(out, &c, 1)) < 0)
			return r;
	}
	st->bits &= (1u << st->nbits) - 1;
	return 0;
}

static int
b64_close(struct buf *out, struct b64_state *st)
{
	char c;
	int r;

	if (st->nbits > 0) {
		c = mutf7_b64[(st->bits << (6 - st->nbits)) & 0x3f];
		if ((r = buf_append(out, &c, 1)) < 0)
			return r;
	}
	st->bits = 0;
	st->nbits = 0;
	return buf_append(out, "-", 1);
}

/* Encodes UTF-8 name into modified UTF-7 (unquoted) in out. */
static int
mutf7_encode(struct buf *out, const unsigned char *s, size_t n)
{
	struct b64_state st = { 0, 0 };
	bool shifted = false;
	uint32_t cp;
	size_t i = 0, len;
	int r = 0;

	while (i < n && r == 0) {
		len = utf8_decode(s + i, n - i, &cp);
		if (len == 0 || cp < 0x20 || cp == 0x7f)
			return -EINVAL;
		i += len;
		if (cp < 0x7f) {
			if (shifted && (r = b64_close(out, &st)) < 0)
				return r;
			shifted = false;
			r = cp == '&' ? buf_append(out, "&-", 2) :
			    buf_append(out, s + i - 1, 1);
			continue;
		}
		if (!shifted && (r = buf_append(out, "&", 1)) < 0)
			return r;
		shifted = true;
		if (cp >= 0x10000) {
			cp -= 0x10000;
			r = b64_push16(out, &st, 0xd800 | (cp >> 10));
			if (r == 0)
				r = b64_push16(out, &st, 0xdc00 | (cp & 0x3ff));
		} else {
			r = b64_push16(out, &st, cp);
		}
	}
	if (r == 0 && shifted)
		r = b64_close(out, &st);
	return r;
}

int
imap_string_append_mailbox(struct buf *out, const char *name)
{
	size_t n = strlen(name), i, start = out->len;
	bool ascii = true;
	struct buf enc;
	int r;

	for (i = 0; i < n; i++)
		ascii = ascii && (unsigned char)name[i] < 0x80;
	if (ascii) {
		if (imap_string_form(name, n) != IMAP_STRING_QUOTED)
			return -EINVAL;
		return imap_string_append_quoted(out, name, n);
	}
	buf_init(&enc, 4 * n + 16);
	r = mutf7_encode(&enc, (const unsigned char *)name, n);
	if (r == 0)
		r = imap_string_append_quoted(out, enc.data, enc.len);
	if (r < 0)
		out->len = start;
	buf_free(&enc);
	return r;
}
