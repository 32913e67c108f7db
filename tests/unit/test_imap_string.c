#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "imap/imap_string.h"

/*
 * The quoted output is checked by an independent, strict reader of the
 * RFC 9051 grammar: quoted = DQUOTE *QUOTED-CHAR DQUOTE, where QUOTED-CHAR
 * is a CHAR (0x01-0x7F) other than CR, LF, '"' and '\', or '\' followed by
 * '"' or '\'. If the reader takes the whole output back to the input, no
 * byte escaped the string.
 */

/* Returns how many bytes of s form one quoted string (0 if none) and
 * stores its value in val[0..*val_len). */
static size_t
strict_unquote(const char *s, size_t n, char *val, size_t *val_len)
{
	size_t i = 1, w = 0;
	unsigned char c;

	if (n < 2 || s[0] != '"')
		return 0;
	while (i < n) {
		c = (unsigned char)s[i];
		if (c == '"') {
			*val_len = w;
			return i + 1;
		}
		if (c == 0 || c >= 0x80 || c == '\r' || c == '\n')
			return 0;
		if (c == '\\') {
			if (i + 1 >= n || (s[i + 1] != '"' && s[i + 1] != '\\'))
				return 0;
			c = (unsigned char)s[++i];
		}
		val[w++] = (char)c;
		i++;
	}
	return 0;
}

static enum imap_string_form
expected_form(const unsigned char *s, size_t n)
{
	enum imap_string_form f = IMAP_STRING_QUOTED;
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] == 0)
			return IMAP_STRING_INVALID;
		if (s[i] == '\r' || s[i] == '\n' || s[i] >= 0x80)
			f = IMAP_STRING_LITERAL;
	}
	return f;
}

/* Checks form, and for quoted strings that the output is exactly one
 * strict quoted string holding s; otherwise that nothing is written. */
static void
check_string(const char *s, size_t n)
{
	enum imap_string_form f = imap_string_form(s, n);
	char val[600];
	struct buf b;
	size_t used, vlen = 0;

	cr_assert_eq(f, expected_form((const unsigned char *)s, n));
	buf_init(&b, 4096);
	cr_assert_eq(buf_append(&b, "X ", 2), 0);
	if (f != IMAP_STRING_QUOTED) {
		cr_assert_eq(imap_string_append_quoted(&b, s, n), -EINVAL);
		cr_assert_eq(b.len, 2);
		buf_free(&b);
		return;
	}
	cr_assert_eq(imap_string_append_quoted(&b, s, n), 0);
	cr_assert_eq(memcmp(b.data, "X ", 2), 0);
	used = strict_unquote(b.data + 2, b.len - 2, val, &vlen);
	cr_assert_eq(used, b.len - 2, "output is not one quoted string");
	cr_assert_eq(vlen, n);
	cr_assert(n == 0 || memcmp(val, s, n) == 0);
	buf_free(&b);
}

Test(imap_string, every_byte_alone)
{
	unsigned c;
	char s[1];

	for (c = 0; c <= 0xff; c++) {
		s[0] = (char)c;
		check_string(s, 1);
	}
	cr_assert_eq(imap_string_form("\0", 1), IMAP_STRING_INVALID);
	cr_assert_eq(imap_string_form("\r", 1), IMAP_STRING_LITERAL);
	cr_assert_eq(imap_string_form("\n", 1), IMAP_STRING_LITERAL);
	cr_assert_eq(imap_string_form("\x80", 1), IMAP_STRING_LITERAL);
	cr_assert_eq(imap_string_form("\xff", 1), IMAP_STRING_LITERAL);
	cr_assert_eq(imap_string_form("\x7f", 1), IMAP_STRING_QUOTED);
	cr_assert_eq(imap_string_form("\x01", 1), IMAP_STRING_QUOTED);
	cr_assert_eq(imap_string_form("\t", 1), IMAP_STRING_QUOTED);
}

Test(imap_string, every_byte_embedded)
{
	char s[8];
	unsigned c;

	for (c = 0; c <= 0xff; c++) {
		memcpy(s, "ab?cd\"\\", 7);
		s[2] = (char)c;
		check_string(s, 7);
		check_string(s + 2, 1);
		check_string(s + 2, 5);
		check_string(s, 3);
	}
}

Test(imap_string, every_pair)
{
	unsigned a, c;
	char s[4];

	for (a = 1; a <= 0xff; a++) {
		for (c = 1; c <= 0xff; c++) {
			s[0] = (char)a;
			s[1] = (char)c;
			s[2] = (char)a;
			check_string(s, 2);
			check_string(s, 3);
		}
	}
}

Test(imap_string, specials_combined)
{
	static const char set[] = { '"', '\\', '\r', '\n', ' ', '{', '}', '*',
				    '\x01', '\x7f', '\x80', 'A', ')', '%' };
	size_t n = sizeof(set), i, j, k, l;
	char s[4];

	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++)
			for (k = 0; k < n; k++)
				for (l = 0; l < n; l++) {
					s[0] = set[i];
					s[1] = set[j];
					s[2] = set[k];
					s[3] = set[l];
					check_string(s, 4);
				}
}

static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

Test(imap_string, random_strings)
{
	uint64_t seed = 0x243f6a8885a308d3u;
	char s[256];
	size_t n, i;
	int t;

	for (t = 0; t < 20000; t++) {
		n = rnd(&seed) % sizeof(s);
		for (i = 0; i < n; i++)
			s[i] = (char)(t % 2 ? rnd(&seed) % 0x7f + 1
					    : rnd(&seed));
		check_string(s, n);
	}
}

Test(imap_string, tricky_quoted)
{
	const char *in = "a\"b\\c {5}";
	struct buf b;

	buf_init(&b, 1024);
	cr_assert_eq(imap_string_form(in, strlen(in)), IMAP_STRING_QUOTED);
	cr_assert_eq(imap_string_append_quoted(&b, in, strlen(in)), 0);
	cr_assert_eq(b.len, strlen("\"a\\\"b\\\\c {5}\""));
	cr_assert_eq(memcmp(b.data, "\"a\\\"b\\\\c {5}\"", b.len), 0);
	buf_reset(&b);
	cr_assert_eq(imap_string_append_quoted(&b, "", 0), 0);
	cr_assert_eq(b.len, 2);
	cr_assert_eq(memcmp(b.data, "\"\"", 2), 0);
	buf_reset(&b);
	cr_assert_eq(imap_string_append_quoted(&b, "\\", 1), 0);
	cr_assert_eq(memcmp(b.data, "\"\\\\\"", 4), 0);
	check_string(in, strlen(in));
	check_string("\\\"", 2);
	check_string("\"\"\"", 3);
	check_string("\\\\\\", 3);
	check_string("pass\\", 5);
	buf_free(&b);
}

Test(imap_string, injection_needs_literal)
{
	const char *in = "\"\r\nA1 DELETE INBOX";
	const char *in2 = "x\" \r\nA2 LOGOUT\r\n";
	struct buf b;

	buf_init(&b, 1024);
	cr_assert_eq(buf_append_str(&b, "A1 LOGIN "), 0);
	cr_assert_eq(imap_string_form(in, strlen(in)), IMAP_STRING_LITERAL);
	cr_assert_eq(imap_string_form(in2, strlen(in2)), IMAP_STRING_LITERAL);
	cr_assert_eq(imap_string_append_quoted(&b, in, strlen(in)), -EINVAL);
	cr_assert_eq(b.len, 9, "nothing written on refusal");
	cr_assert_eq(imap_string_form("user\0x", 6), IMAP_STRING_INVALID);
	cr_assert_eq(imap_string_form("\xc3\xa9", 2), IMAP_STRING_LITERAL);
	cr_assert_eq(imap_string_append_quoted(&b, "a\0b", 3), -EINVAL);
	cr_assert_eq(imap_string_append_literal_prefix(&b, strlen(in), false),
		     0);
	cr_assert_eq(b.len, 13);
	cr_assert_eq(memcmp(b.data, "A1 LOGIN {18}", 13), 0);
	buf_free(&b);
}

Test(imap_string, login_line_has_exactly_two_strings)
{
	static const char *const users[] = {
		"alice", "a\"b", "\\", "x\" y", "{3}", "*", "a) (b", "",
		"\" LOGOUT", "\\\" A2 DELETE INBOX \\",
	};
	size_t nu = sizeof(users) / sizeof(users[0]), i, j, used, n, vl;
	char val[64];
	struct buf b;

	for (i = 0; i < nu; i++) {
		for (j = 0; j < nu; j++) {
			buf_init(&b, 1024);
			buf_append_str(&b, "A1 LOGIN ");
			cr_assert_eq(imap_string_append_quoted(&b, users[i],
				strlen(users[i])), 0);
			buf_append_str(&b, " ");
			cr_assert_eq(imap_string_append_quoted(&b, users[j],
				strlen(users[j])), 0);
			n = 9;
			used = strict_unquote(b.data + n, b.len - n, val, &vl);
			cr_assert(used > 0);
			cr_assert_eq(vl, strlen(users[i]));
			n += used;
			cr_assert_eq(b.data[n++], ' ');
			used = strict_unquote(b.data + n, b.len - n, val, &vl);
			cr_assert_eq(n + used, b.len);
			cr_assert_eq(vl, strlen(users[j]));
			cr_assert(vl == 0 || memcmp(val, users[j], vl) == 0);
			buf_free(&b);
		}
	}
}

Test(imap_string, literal_prefix)
{
	char want[64];
	struct buf b;

	buf_init(&b, 1024);
	cr_assert_eq(imap_string_append_literal_prefix(&b, 0, false), 0);
	cr_assert_eq(imap_string_append_literal_prefix(&b, 5, true), 0);
	cr_assert_eq(imap_string_append_literal_prefix(&b, 1234567, false), 0);
	cr_assert_eq(imap_string_append_literal_prefix(&b, SIZE_MAX, true), 0);
	snprintf(want, sizeof(want), "{0}{5+}{1234567}{%zu+}",
		 (size_t)SIZE_MAX);
	cr_assert_eq(b.len, strlen(want));
	cr_assert_eq(memcmp(b.data, want, b.len), 0);
	buf_free(&b);
}

Test(imap_string, buffer_limit_leaves_output_unchanged)
{
	struct buf b;

	buf_init(&b, 8);
	cr_assert_eq(buf_append(&b, "ab", 2), 0);
	cr_assert_eq(imap_string_append_quoted(&b, "abcd", 4), 0);
	cr_assert_eq(b.len, 8);
	buf_reset(&b);
	cr_assert_eq(buf_append(&b, "ab", 2), 0);
	cr_assert_eq(imap_string_append_quoted(&b, "ab\"d", 4), -ENOBUFS);
	cr_assert_eq(b.len, 2);
	cr_assert_eq(imap_string_append_literal_prefix(&b, 123456, true),
		     -ENOBUFS);
	cr_assert_eq(b.len, 2);
	buf_free(&b);
}

static void
check_mailbox(const char *name, const char *want)
{
	struct buf out;

	buf_init(&out, 1024);
	cr_assert_eq(imap_string_append_mailbox(&out, name), 0, "%s", name);
	cr_assert_eq(out.len, strlen(want), "%s: %.*s", name, (int)out.len,
		     out.data);
	cr_assert_eq(memcmp(out.data, want, out.len), 0, "%s", name);
	buf_free(&out);
}

Test(imap_string, mailbox_names_in_modified_utf7)
{
	struct buf out;

	/* RFC 3501 §5.1.3's own example and the usual suspects. */
	check_mailbox("~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
		      "\"~peter/mail/&U,BTFw-/&ZeVnLIqe-\"");
	check_mailbox("Ind\xc3\xa9sirables", "\"Ind&AOk-sirables\"");
	check_mailbox("[Gmail]/Corbeille", "\"[Gmail]/Corbeille\"");
	check_mailbox("Entw\xc3\xbcrfe & Co", "\"Entw&APw-rfe &- Co\"");
	/* ASCII passes unchanged: a name already in modified UTF-7 works. */
	check_mailbox("Ind&AOk-sirables", "\"Ind&AOk-sirables\"");
	check_mailbox("a\"b\\c", "\"a\\\"b\\\\c\"");
	/* Outside the BMP: a surrogate pair. */
	check_mailbox("\xf0\x9f\x93\xa7", "\"&2D3c5w-\"");

	buf_init(&out, 1024);
	cr_assert_eq(imap_string_append_mailbox(&out, "bad\xc3"), -EINVAL);
	cr_assert_eq(imap_string_append_mailbox(&out, "\xc0\xaf"), -EINVAL);
	cr_assert_eq(imap_string_append_mailbox(&out, "\xed\xa0\x80"), -EINVAL);
	cr_assert_eq(imap_string_append_mailbox(&out, "a\r\nb"), -EINVAL);
	cr_assert_eq(out.len, 0);
	buf_free(&out);
}
