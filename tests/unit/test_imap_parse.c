#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_parse.h"

/*
 * Every input is parsed whole, split in two at every byte position and fed
 * byte by byte; each run is rendered as text (responses and body callback
 * events in order) and the renderings must be identical.
 */

#define DUMP_MAX (64u * 1024 * 1024)

static void *
xmalloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL)
		abort();
	return p;
}

static const char *const status_names[] = {
	[IMAP_STATUS_NONE] = "NONE",
	[IMAP_STATUS_OK] = "OK",
	[IMAP_STATUS_NO] = "NO",
	[IMAP_STATUS_BAD] = "BAD",
	[IMAP_STATUS_BYE] = "BYE",
	[IMAP_STATUS_PREAUTH] = "PREAUTH",
};

static void
dump_bytes(struct buf *o, const char *p, size_t n)
{
	unsigned char c;
	size_t i;

	for (i = 0; i < n; i++) {
		c = (unsigned char)p[i];
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
			cr_assert_eq(buf_append(o, &p[i], 1), 0);
		else
			cr_assert_eq(buf_appendf(o, "\\x%02x", c), 0);
	}
}

static void
dump_arg(struct buf *o, const struct imap_arg *a)
{
	size_t i;

	switch (a->type) {
	case IMAP_ARG_ATOM:
		dump_bytes(o, a->str, a->len);
		break;
	case IMAP_ARG_STRING:
		buf_append_str(o, "\"");
		dump_bytes(o, a->str, a->len);
		buf_append_str(o, "\"");
		break;
	case IMAP_ARG_NIL:
		buf_append_str(o, "NIL");
		break;
	case IMAP_ARG_STREAMED:
		buf_appendf(o, "<streamed %llu>", (unsigned long long)a->size);
		break;
	case IMAP_ARG_LIST:
		cr_assert((a->count == 0) == (a->list == NULL));
		buf_append_str(o, "(");
		for (i = 0; i < a->count; i++) {
			if (i > 0)
				buf_append_str(o, " ");
			dump_arg(o, &a->list[i]);
		}
		buf_append_str(o, ")");
		break;
	}
}

static void
dump_status(struct buf *o, const struct imap_resp *r)
{
	buf_appendf(o, " %s", status_names[r->status]);
	if (r->code != NULL) {
		buf_append_str(o, " code[");
		dump_bytes(o, r->code, r->code_len);
		buf_append_str(o, "]");
	}
	buf_append_str(o, " text[");
	dump_bytes(o, r->text, r->text_len);
	buf_append_str(o, "]\n");
}

static void
dump_resp(struct buf *o, const struct imap_resp *r)
{
	size_t i;

	switch (r->kind) {
	case IMAP_RESP_CONTINUATION:
		cr_assert_eq(r->status, IMAP_STATUS_NONE);
		buf_append_str(o, "CONT text[");
		dump_bytes(o, r->text, r->text_len);
		buf_append_str(o, "]\n");
		return;
	case IMAP_RESP_TAGGED:
		buf_append_str(o, "TAGGED ");
		dump_bytes(o, r->tag, r->tag_len);
		dump_status(o, r);
		return;
	case IMAP_RESP_UNTAGGED:
		break;
	}
	if (r->status != IMAP_STATUS_NONE) {
		buf_append_str(o, "UNTAGGED");
		dump_status(o, r);
		return;
	}
	buf_append_str(o, "DATA ");
	if (r->has_number)
		buf_appendf(o, "%u ", r->number);
	dump_bytes(o, r->name, r->name_len);
	cr_assert((r->nargs == 0) == (r->args == NULL));
	for (i = 0; i < r->nargs; i++) {
		buf_append_str(o, " ");
		dump_arg(o, &r->args[i]);
	}
	buf_append_str(o, "\n");
}

static void
on_begin(void *ctx, const char *item, size_t n, uint32_t uid, uint64_t size)
{
	struct buf *o = ctx;

	buf_append_str(o, "begin ");
	dump_bytes(o, item, n);
	buf_appendf(o, " uid=%u size=%llu [", uid, (unsigned long long)size);
}

static void
on_data(void *ctx, const char *p, size_t n)
{
	cr_assert(n > 0);
	dump_bytes(ctx, p, n);
}

static void
on_end(void *ctx)
{
	buf_append_str(ctx, "]\n");
}

/* Returns true when the parser failed. */
static bool
feed_chunk(struct imap_parser *p, struct buf *o, const char *d, size_t n)
{
	struct imap_resp r;
	size_t off = 0, used;
	int rc;

	do {
		rc = imap_parse_feed(p, d + off, n - off, &used, &r);
		cr_assert(used <= n - off);
		off += used;
		if (rc < 0) {
			cr_assert_not_null(imap_parse_error(p));
			buf_appendf(o, "ERROR %s\n", imap_parse_error(p));
			return true;
		}
		if (rc == 0)
			cr_assert_eq(off, n, "0 returned with data left");
		else
			dump_resp(o, &r);
	} while (rc == 1 && off < n);
	return false;
}

/* Feeds in[0..len) in chunks ending at cuts[] (ascending) and returns the
 * rendering, which the caller frees. */
static char *
run_cuts(const char *in, size_t len, const size_t *cuts, size_t ncuts)
{
	struct buf o;
	struct imap_body_cb cb = { on_begin, on_data, on_end, &o };
	struct imap_parser *p;
	size_t c, start = 0, stop;

	buf_init(&o, DUMP_MAX);
	p = imap_parse_new(&cb);
	cr_assert_not_null(p);
	for (c = 0; c <= ncuts; c++) {
		stop = c < ncuts ? cuts[c] : len;
		if (feed_chunk(p, &o, in + start, stop - start))
			break;
		start = stop;
	}
	imap_parse_free(&p);
	cr_assert_null(p);
	cr_assert_eq(buf_append(&o, "", 1), 0);
	return o.data;
}

static char *
run_whole(const char *in, size_t len)
{
	return run_cuts(in, len, NULL, 0);
}

static char *
run_bytewise(const char *in, size_t len)
{
	size_t *cuts = xmalloc((len + 1) * sizeof(*cuts));
	size_t i;
	char *s;

	for (i = 1; i < len; i++)
		cuts[i - 1] = i;
	s = run_cuts(in, len, cuts, len > 0 ? len - 1 : 0);
	free(cuts);
	return s;
}

static void
check_splits(const char *in, size_t len, const char *expected)
{
	size_t k;
	char *s;

	for (k = 0; k <= len; k++) {
		s = run_cuts(in, len, &k, 1);
		cr_assert_str_eq(s, expected, "split at %zu", k);
		free(s);
	}
	s = run_bytewise(in, len);
	cr_assert_str_eq(s, expected, "byte by byte");
	free(s);
}

static void
check(const char *in, size_t len, const char *expected)
{
	char *s = run_whole(in, len);

	cr_assert_str_eq(s, expected);
	free(s);
	check_splits(in, len, expected);
}

#define CHECK(in, expected) check(in, sizeof(in) - 1, expected)

/* Parses one complete response fed whole into *r; p stays owned. */
static void
parse_one(struct imap_parser *p, const char *in, struct imap_resp *r)
{
	size_t used;

	cr_assert_eq(imap_parse_feed(p, in, strlen(in), &used, r), 1);
	cr_assert_eq(used, strlen(in));
}

Test(imap_parse, greeting_with_capability)
{
	CHECK("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID "
	      "ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n",
	      "UNTAGGED OK code[CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS "
	      "ID ENABLE IDLE LITERAL+ AUTH=PLAIN] text[Dovecot ready.]\n");
}

Test(imap_parse, tagged_status)
{
	CHECK("A1 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n"
	      "A2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
	      "A3 BAD Error in IMAP command UID: Invalid arguments.\r\n"
	      "A4 OK Logout completed.\r\n"
	      "A5 OK\r\n"
	      "a6 ok [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] Logged in\r\n"
	      "A7 NO [TRYCREATE]\r\n"
	      "A8 OK [ALERT][weird] x\r\n"
	      "A9 no [unterminated code\r\n",
	      "TAGGED A1 OK code[READ-WRITE] text[Select completed "
	      "(0.001 + 0.000 secs).]\n"
	      "TAGGED A2 NO code[AUTHENTICATIONFAILED] "
	      "text[Authentication failed.]\n"
	      "TAGGED A3 BAD text[Error in IMAP command UID: "
	      "Invalid arguments.]\n"
	      "TAGGED A4 OK text[Logout completed.]\n"
	      "TAGGED A5 OK text[]\n"
	      "TAGGED a6 OK code[CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] "
	      "text[Logged in]\n"
	      "TAGGED A7 NO code[TRYCREATE] text[]\n"
	      "TAGGED A8 OK code[ALERT] text[[weird] x]\n"
	      "TAGGED A9 NO text[[unterminated code]\n");
}

Test(imap_parse, untagged_status)
{
	CHECK("* OK [PERMANENTFLAGS (\\Answered \\Deleted \\Seen \\*)] "
	      "Flags permitted.\r\n"
	      "* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"
	      "* OK [ALERT] System shutdown in 10 minutes\r\n"
	      "* NO [BADCHARSET (\"a]b\" UTF-8)] no\r\n"
	      "* BAD junk {5}\r\n"
	      "* PREAUTH IMAP4rev1 server logged in as Smith\r\n"
	      "* PREAUTH\r\n"
	      "* BYE Logging out\r\n"
	      "* BYE\r\n",
	      "UNTAGGED OK code[PERMANENTFLAGS (\\x5cAnswered \\x5cDeleted "
	      "\\x5cSeen \\x5c*)] text[Flags permitted.]\n"
	      "UNTAGGED OK code[UIDVALIDITY 1700000000] text[UIDs valid]\n"
	      "UNTAGGED OK code[ALERT] text[System shutdown in 10 minutes]\n"
	      "UNTAGGED NO code[BADCHARSET (\\x22a]b\\x22 UTF-8)] text[no]\n"
	      "UNTAGGED BAD text[junk {5}]\n"
	      "UNTAGGED PREAUTH text[IMAP4rev1 server logged in as Smith]\n"
	      "UNTAGGED PREAUTH text[]\n"
	      "UNTAGGED BYE text[Logging out]\n"
	      "UNTAGGED BYE text[]\n");
}

Test(imap_parse, status_text_keeps_nul_and_8bit)
{
	CHECK("* OK a\0b \xc3\xa9\t\"x\" (\r\n",
	      "UNTAGGED OK text[a\\x00b \\xc3\\xa9\\x09\\x22x\\x22 (]\n");
}

Test(imap_parse, continuation)
{
	CHECK("+ \r\n+\r\n+ Ready for literal data\r\n+ YWJj\r\n+\n+x\r\n",
	      "CONT text[]\n"
	      "CONT text[]\n"
	      "CONT text[Ready for literal data]\n"
	      "CONT text[YWJj]\n"
	      "CONT text[]\n"
	      "CONT text[x]\n");
}

Test(imap_parse, simple_data)
{
	CHECK("* 5 EXISTS\r\n* 0 RECENT\r\n* 3 EXPUNGE\r\n"
	      "* CAPABILITY IMAP4rev1 UIDPLUS MOVE AUTH=PLAIN\r\n"
	      "* SEARCH 1 2 3\r\n* SEARCH\r\n* SEARCH \r\n"
	      "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
	      "* ENABLED\r\n* ENABLED UTF8=ACCEPT\r\n"
	      "* ID (\"name\" \"Dovecot\" \"version\" NIL)\r\n* ID NIL\r\n"
	      "* LIST (\\HasNoChildren) \"/\" INBOX\r\n"
	      "* LIST () NIL \"a \\\"b\\\" \\\\c\"\r\n"
	      "* STATUS INBOX (MESSAGES 231 UIDNEXT 44292)\r\n"
	      "* ESEARCH (TAG \"A4\") UID ALL 1:3,5\r\n",
	      "DATA 5 EXISTS\n"
	      "DATA 0 RECENT\n"
	      "DATA 3 EXPUNGE\n"
	      "DATA CAPABILITY IMAP4rev1 UIDPLUS MOVE AUTH=PLAIN\n"
	      "DATA SEARCH 1 2 3\n"
	      "DATA SEARCH\n"
	      "DATA SEARCH\n"
	      "DATA FLAGS (\\x5cAnswered \\x5cFlagged \\x5cDeleted "
	      "\\x5cSeen \\x5cDraft)\n"
	      "DATA ENABLED\n"
	      "DATA ENABLED UTF8=ACCEPT\n"
	      "DATA ID (\"name\" \"Dovecot\" \"version\" NIL)\n"
	      "DATA ID NIL\n"
	      "DATA LIST (\\x5cHasNoChildren) \"/\" INBOX\n"
	      "DATA LIST () NIL \"a \\x22b\\x22 \\x5cc\"\n"
	      "DATA STATUS INBOX (MESSAGES 231 UIDNEXT 44292)\n"
	      "DATA ESEARCH (TAG \"A4\") UID ALL 1:3,5\n");
}

Test(imap_parse, unknown_data_parses_generically)
{
	CHECK("* XFOO a (b \"c\" (nil ())) NIL ~x{ ]z\r\n"
	      "* 7 XBAR\r\n"
	      "*  SEARCH  1   2 \r\n"
	      "* X (a)(b)c\r\n",
	      "DATA XFOO a (b \"c\" (NIL ())) NIL ~x{ ]z\n"
	      "DATA 7 XBAR\n"
	      "DATA SEARCH 1 2\n"
	      "DATA X (a) (b) c\n");
}

Test(imap_parse, fetch_uid_and_size)
{
	struct imap_parser *p = imap_parse_new(NULL);
	const struct imap_arg *a;
	struct imap_resp r;
	uint64_t n;

	CHECK("* 3 FETCH (UID 42 RFC822.SIZE 1234)\r\n",
	      "DATA 3 FETCH (UID 42 RFC822.SIZE 1234)\n");
	parse_one(p, "* 3 FETCH (UID 42 RFC822.SIZE 1234 FLAGS (\\Seen))\r\n",
		  &r);
	cr_assert_eq(r.number, 3);
	cr_assert(r.has_number);
	cr_assert_eq(r.nargs, 1);
	cr_assert_eq(r.args[0].type, IMAP_ARG_LIST);
	cr_assert_eq(r.args[0].count, 6);
	a = imap_fetch_item(&r, "UID");
	cr_assert_eq(imap_arg_number(a, &n), 0);
	cr_assert_eq(n, 42);
	a = imap_fetch_item(&r, "rfc822.size");
	cr_assert_eq(imap_arg_number(a, &n), 0);
	cr_assert_eq(n, 1234);
	a = imap_fetch_item(&r, "FLAGS");
	cr_assert_eq(a->type, IMAP_ARG_LIST);
	cr_assert(imap_arg_is_atom(&a->list[0], "\\seen"));
	cr_assert_null(imap_fetch_item(&r, "BODY[]"));
	cr_assert_null(imap_fetch_item(&r, "42"));
	parse_one(p, "* 3 EXISTS\r\n", &r);
	cr_assert_null(imap_fetch_item(&r, "UID"));
	parse_one(p, "* 3 FETCH (UID)\r\n", &r);
	cr_assert_null(imap_fetch_item(&r, "UID"));
	parse_one(p, "* 3 FETCH UID 5\r\n", &r);
	cr_assert_null(imap_fetch_item(&r, "UID"));
	parse_one(p, "A1 OK done\r\n", &r);
	cr_assert_null(imap_fetch_item(&r, "UID"));
	imap_parse_free(&p);
}

Test(imap_parse, fetch_items_without_a_value)
{
	struct imap_parser *p = imap_parse_new(NULL);
	const struct imap_arg *a, *k, *v;
	struct imap_resp r;
	uint64_t n;
	size_t i = 0, items = 0;

	cr_assert_not_null(p);
	/* GNU Mailutils for a partial past the end: the item, no value. */
	parse_one(p, "* 6 FETCH (BODY[TEXT] UID 6)\r\n", &r);
	a = imap_fetch_item(&r, "UID");
	cr_assert_eq(imap_arg_number(a, &n), 0);
	cr_assert_eq(n, 6);
	while (i < r.args[0].count) {
		i = imap_fetch_next(&r.args[0], i, &k, &v);
		if (items++ == 0) {
			cr_assert(imap_arg_is_body_item(k));
			cr_assert_null(v);
		}
	}
	cr_assert_eq(items, 2);
	parse_one(p, "* 6 FETCH (UID 6 BODY[TEXT]<16384>)\r\n", &r);
	a = imap_fetch_item(&r, "UID");
	cr_assert_eq(imap_arg_number(a, &n), 0);
	i = imap_fetch_next(&r.args[0], 2, &k, &v);
	cr_assert_eq(i, 3);
	cr_assert(imap_arg_is_body_item(k));
	cr_assert_null(v);
	/* Cyrus: an empty quoted string is a value. */
	parse_one(p, "* 6 FETCH (UID 6 BODY[TEXT]<0> \"\")\r\n", &r);
	i = imap_fetch_next(&r.args[0], 2, &k, &v);
	cr_assert_not_null(v);
	cr_assert_eq(v->type, IMAP_ARG_STRING);
	cr_assert_eq(v->len, 0);
	imap_parse_free(&p);
}

Test(imap_parse, fetch_body_literal_is_streamed)
{
	CHECK("* 1 FETCH (UID 7 BODY[] {28}\r\n"
	      "Subject: x\r\n)\r\n* 4 FETCH {3}"
	      " FLAGS (\\Seen))\r\n",
	      "begin BODY[] uid=7 size=28 [Subject: x\\x0d\\x0a)\\x0d\\x0a"
	      "* 4 FETCH {3}]\n"
	      "DATA 1 FETCH (UID 7 BODY[] <streamed 28> FLAGS (\\x5cSeen))\n");
}

Test(imap_parse, fetch_zero_length_literal)
{
	CHECK("* 1 FETCH (UID 8 BODY[] {0}\r\n)\r\n"
	      "* 2 FETCH (UID 9 BODY[] {0}\r\n RFC822.SIZE 0)\r\n",
	      "begin BODY[] uid=8 size=0 []\n"
	      "DATA 1 FETCH (UID 8 BODY[] <streamed 0>)\n"
	      "begin BODY[] uid=9 size=0 []\n"
	      "DATA 2 FETCH (UID 9 BODY[] <streamed 0> RFC822.SIZE 0)\n");
}

Test(imap_parse, fetch_uid_after_body)
{
	CHECK("* 2 FETCH (BODY[] {5}\r\nhello UID 77)\r\n",
	      "begin BODY[] uid=0 size=5 [hello]\n"
	      "DATA 2 FETCH (BODY[] <streamed 5> UID 77)\n");
}

Test(imap_parse, fetch_header_and_partial_text)
{
	CHECK("* 9 FETCH (UID 100 BODY[HEADER] {14}\r\nSubject: a\r\n\r\n"
	      " BODY[TEXT]<0> {4}\r\nbody"
	      " BODY[HEADER.FIELDS (SUBJECT DATE)] {3}\r\nx\r\n"
	      " body[text]<10> ~{2}\r\n\0\xff"
	      " BINARY[1] ~{1}\r\nz RFC822.TEXT {1}\r\nt"
	      " RFC822.HEADER {1}\r\nh RFC822 {1}\r\nr"
	      " BODY.PEEK[] {1}\r\np)\r\n",
	      "begin BODY[HEADER] uid=100 size=14 [Subject: a"
	      "\\x0d\\x0a\\x0d\\x0a]\n"
	      "begin BODY[TEXT]<0> uid=100 size=4 [body]\n"
	      "begin BODY[HEADER.FIELDS (SUBJECT DATE)] uid=100 size=3 "
	      "[x\\x0d\\x0a]\n"
	      "begin body[text]<10> uid=100 size=2 [\\x00\\xff]\n"
	      "begin BINARY[1] uid=100 size=1 [z]\n"
	      "begin RFC822.TEXT uid=100 size=1 [t]\n"
	      "begin RFC822.HEADER uid=100 size=1 [h]\n"
	      "begin RFC822 uid=100 size=1 [r]\n"
	      "begin BODY.PEEK[] uid=100 size=1 [p]\n"
	      "DATA 9 FETCH (UID 100 BODY[HEADER] <streamed 14> "
	      "BODY[TEXT]<0> <streamed 4> "
	      "BODY[HEADER.FIELDS (SUBJECT DATE)] <streamed 3> "
	      "body[text]<10> <streamed 2> BINARY[1] <streamed 1> "
	      "RFC822.TEXT <streamed 1> RFC822.HEADER <streamed 1> "
	      "RFC822 <streamed 1> BODY.PEEK[] <streamed 1>)\n");
}

Test(imap_parse, fetch_other_literals_inline)
{
	/* Only message data is streamed: not names, not nested values, not
	 * literals outside the FETCH list, not other responses. */
	CHECK("* 1 FETCH ({6}\r\nBODY[] {2}\r\nab ENVELOPE ({3}\r\nsub)"
	      " RFC822.SIZE {1}\r\n9 X-ITEM {1}\r\nx) {1}\r\ny\r\n"
	      "* 1 XFETCH (BODY[] {1}\r\nq)\r\n"
	      "* FETCH (BODY[] {1}\r\nq)\r\n",
	      "DATA 1 FETCH (\"BODY[]\" \"ab\" ENVELOPE (\"sub\") "
	      "RFC822.SIZE \"9\" X-ITEM \"x\") \"y\"\n"
	      "DATA 1 XFETCH (BODY[] \"q\")\n"
	      "DATA FETCH (BODY[] \"q\")\n");
}

Test(imap_parse, fetch_quoted_body_not_streamed)
{
	CHECK("* 1 FETCH (UID 3 BODY[] \"Hello \\\"w\\\" \\\\ x\" "
	      "BODY[TEXT] NIL)\r\n",
	      "DATA 1 FETCH (UID 3 BODY[] \"Hello \\x22w\\x22 \\x5c x\" "
	      "BODY[TEXT] NIL)\n");
}

Test(imap_parse, pipelined_in_one_buffer)
{
	const char in[] = "* 1 EXISTS\r\n* 2 FETCH (UID 5 BODY[] {2}\r\n"
			  "hi)\r\nA1 OK done\r\n+ go\r\n* 3 EXPUNGE\r\nA2 OK";
	struct imap_parser *p = imap_parse_new(NULL);
	struct imap_resp r;
	size_t off = 0, used;

	CHECK("* 1 EXISTS\r\n* 2 FETCH (UID 5 BODY[] {2}\r\n"
	      "hi)\r\nA1 OK done\r\n+ go\r\n* 3 EXPUNGE\r\nA2 OK",
	      "DATA 1 EXISTS\n"
	      "begin BODY[] uid=5 size=2 [hi]\n"
	      "DATA 2 FETCH (UID 5 BODY[] <streamed 2>)\n"
	      "TAGGED A1 OK text[done]\n"
	      "CONT text[go]\n"
	      "DATA 3 EXPUNGE\n");
	cr_assert_eq(imap_parse_feed(p, in, sizeof(in) - 1, &used, &r), 1);
	cr_assert_eq(used, 12);
	off += used;
	cr_assert_eq(imap_parse_feed(p, in + off, sizeof(in) - 1 - off,
				     &used, &r), 1);
	cr_assert_eq(r.args[0].list[3].type, IMAP_ARG_STREAMED);
	off += used;
	cr_assert_eq(imap_parse_feed(p, in + off, sizeof(in) - 1 - off,
				     &used, &r), 1);
	cr_assert_eq(r.tag_len, 2);
	cr_assert_eq(memcmp(r.tag, "A1", 2), 0);
	imap_parse_free(&p);
	imap_parse_free(&p);
}

Test(imap_parse, list_with_literal_name)
{
	CHECK("* LIST (\\HasNoChildren) \"/\" {12}\r\nfoo\r\n) \"{3}\"\r\n"
	      "* LIST () \"/\" {0}\r\n\r\n"
	      "* LIST () \"/\" ~{2}\r\n\xc3\xa9\r\n",
	      "DATA LIST (\\x5cHasNoChildren) \"/\" "
	      "\"foo\\x0d\\x0a) \\x22{3}\\x22\"\n"
	      "DATA LIST () \"/\" \"\"\n"
	      "DATA LIST () \"/\" \"\\xc3\\xa9\"\n");
}

Test(imap_parse, bare_lf_line_ends)
{
	CHECK("* OK hi\nA1 OK x\n* 1 FETCH (UID 2 BODY[] {3}\nab\n)\n"
	      "* LIST () \"/\" {2}\n\r\n\n",
	      "UNTAGGED OK text[hi]\n"
	      "TAGGED A1 OK text[x]\n"
	      "begin BODY[] uid=2 size=3 [ab\\x0a]\n"
	      "DATA 1 FETCH (UID 2 BODY[] <streamed 3>)\n"
	      "DATA LIST () \"/\" \"\\x0d\\x0a\"\n");
}

Test(imap_parse, unbalanced_brackets_in_atoms)
{
	CHECK("* LIST () \"/\" foo[bar\r\n"
	      "* X a[b (c) {1}\r\n]\r\n"
	      "* X a[b c{1}\r\n"
	      "* X a]b[c]d [(x)] ( [)] )\r\n"
	      "* X ( [)]\r\n",
	      "DATA LIST () \"/\" foo[bar\n"
	      "DATA X a[b (c) \"]\"\n"
	      "DATA X a[b c{1}\n"
	      "DATA X a]b[c]d [(x)] ([)])\n"
	      "ERROR unbalanced parenthesis\n");
}

Test(imap_parse, nul_and_8bit_in_tokens)
{
	CHECK("* X \"a\0b\" c\0d \xff\xfe \"\xc3\xa9\"\r\n",
	      "DATA X \"a\\x00b\" c\\x00d \\xff\\xfe \"\\xc3\\xa9\"\n");
}

Test(imap_parse, incomplete_input_waits)
{
	CHECK("* 1 FETCH (UID 1 BODY[] {10}\r\nabc",
	      "begin BODY[] uid=1 size=10 [abc");
	CHECK("A1 OK almost\r", "");
	CHECK("* LIST () \"/\" {10}\r\nabc", "");
}

#define MALFORMED(in, why) CHECK(in, "ERROR " why "\n")

Test(imap_parse, malformed)
{
	MALFORMED("\r\n", "empty line");
	MALFORMED("\n", "empty line");
	MALFORMED("A1\r\n", "malformed response line");
	MALFORMED("*\r\n", "malformed response line");
	MALFORMED("(x) OK\r\n", "malformed response line");
	MALFORMED("\"A1\" OK\r\n", "malformed response line");
	MALFORMED("A1 FOO bar\r\n", "tagged response without OK, NO or BAD");
	MALFORMED("A1 BYE bar\r\n", "tagged response without OK, NO or BAD");
	MALFORMED("A1 5 FETCH (UID 1)\r\n",
		  "tagged response without OK, NO or BAD");
	MALFORMED("* \r\n", "missing response name");
	MALFORMED("* 5\r\n", "missing response name");
	MALFORMED("* 5 (x)\r\n", "missing response name");
	MALFORMED("* \"x\"\r\n", "missing response name");
	MALFORMED("* {3}\r\nabc\r\n", "missing response name");
	MALFORMED("* 4294967296 EXISTS\r\n", "bad message number");
	MALFORMED("* 5x EXISTS\r\n", "bad message number");
	MALFORMED("* 1 FETCH (UID 1\r\n", "unbalanced parenthesis");
	MALFORMED("* 1 FETCH UID 1)\r\n", "unbalanced parenthesis");
	MALFORMED("* LIST () \"/\" \"unterminated\r\n",
		  "unterminated quoted string");
	MALFORMED("* LIST () \"/\" \"a\\\"\r\n", "unterminated quoted string");
	MALFORMED("* LIST () \"/\" \"a\\\r\n", "unterminated quoted string");
	MALFORMED("* X {abc}\r\n", "malformed literal");
	MALFORMED("* X {}\r\n", "malformed literal");
	MALFORMED("* X {5\r\n", "malformed literal");
	MALFORMED("* X {5+}\r\n", "malformed literal");
	MALFORMED("* X ~{-1}\r\n", "malformed literal");
	MALFORMED("* X {5} y\r\n", "literal not at end of line");
	MALFORMED("* X {5}y\r\n", "literal not at end of line");
	MALFORMED("* X {99999999999999999999}\r\n", "literal size too large");
	MALFORMED("* X a\rb\r\n", "CR without LF");
	MALFORMED("* OK a\rb\r\n", "CR without LF");
	MALFORMED("+ a\r\r\n", "CR without LF");
	MALFORMED("* X (\r\n)\r\n", "unbalanced parenthesis");
	CHECK("* 1 FETCH (BODY[] {1}\r\nx\r\n",
	      "begin BODY[] uid=0 size=1 [x]\n"
	      "ERROR unbalanced parenthesis\n");
	CHECK("* 1 FETCH (BODY[] {1}\r\nx \"\r\n",
	      "begin BODY[] uid=0 size=1 [x]\n"
	      "ERROR unterminated quoted string\n");
}

Test(imap_parse, error_after_good_responses_and_parser_dead)
{
	const char in[] = "A1 OK\r\n* X )\r\nA2 OK\r\n";
	struct imap_parser *p = imap_parse_new(NULL);
	struct imap_resp r;
	size_t used;

	CHECK("A1 OK\r\n* X )\r\nA2 OK\r\n",
	      "TAGGED A1 OK text[]\nERROR unbalanced parenthesis\n");
	cr_assert_null(imap_parse_error(p));
	cr_assert_eq(imap_parse_feed(p, in, sizeof(in) - 1, &used, &r), 1);
	cr_assert_eq(imap_parse_feed(p, in + used, sizeof(in) - 1 - used,
				     &used, &r), IMAP_PARSE_ERROR);
	cr_assert_str_eq(imap_parse_error(p), "unbalanced parenthesis");
	cr_assert_eq(imap_parse_feed(p, "A3 OK\r\n", 7, &used, &r),
		     IMAP_PARSE_ERROR);
	cr_assert_eq(used, 0);
	cr_assert_eq(imap_parse_feed(p, "", 0, &used, &r), IMAP_PARSE_ERROR);
	imap_parse_free(&p);
}

static char *
nested(size_t depth)
{
	char *s = xmalloc(2 * depth + 16);
	size_t i, n = 0;

	memcpy(s, "* X ", 4);
	n = 4;
	for (i = 0; i < depth; i++)
		s[n++] = '(';
	for (i = 0; i < depth; i++)
		s[n++] = ')';
	memcpy(s + n, "\r\n", 3);
	return s;
}

Test(imap_parse, nesting_limit)
{
	char *ok = nested(IMAP_DEPTH_MAX), *deep = nested(IMAP_DEPTH_MAX + 1);
	char *s;

	s = run_whole(ok, strlen(ok));
	cr_assert_eq(strncmp(s, "DATA X ((((", 11), 0);
	free(s);
	check_splits(deep, strlen(deep), "ERROR lists nested too deeply\n");
	free(ok);
	free(deep);
}

Test(imap_parse, inline_literal_limit)
{
	size_t len = 64 + IMAP_INLINE_LITERAL_MAX;
	char *in = xmalloc(len), head[64];
	size_t n, cuts[3];
	char *s;

	n = (size_t)snprintf(head, sizeof(head), "* LIST () \"/\" {%u}\r\n",
			     IMAP_INLINE_LITERAL_MAX);
	cr_assert(n < sizeof(head));
	memcpy(in, head, n);
	memset(in + n, 'm', IMAP_INLINE_LITERAL_MAX);
	n += IMAP_INLINE_LITERAL_MAX;
	memcpy(in + n, "\r\n", 2);
	n += 2;
	cuts[0] = 5;
	cuts[1] = 30;
	cuts[2] = n - 1;
	s = run_cuts(in, n, cuts, 3);
	cr_assert_eq(strncmp(s, "DATA LIST () \"/\" \"mmm", 21), 0);
	cr_assert_eq(strlen(s), 18 + IMAP_INLINE_LITERAL_MAX + 2);
	free(s);
	free(in);
	MALFORMED("* LIST () \"/\" {65537}\r\n",
		  "literal too large to keep inline");
	MALFORMED("* 1 FETCH (X {65537}\r\n",
		  "literal too large to keep inline");
}

static void
check_chunked(const char *in, size_t len, size_t chunk, const char *expected)
{
	size_t ncuts = len / chunk, i;
	size_t *cuts = xmalloc((ncuts + 1) * sizeof(*cuts));
	char *s;

	for (i = 0; i < ncuts; i++)
		cuts[i] = (i + 1) * chunk;
	if (ncuts > 0 && cuts[ncuts - 1] == len)
		ncuts--;
	s = run_cuts(in, len, cuts, ncuts);
	cr_assert_str_eq(s, expected, "chunk %zu", chunk);
	free(s);
	free(cuts);
}

Test(imap_parse, over_long_line)
{
	size_t len = IMAP_RESP_MAX + 100;
	char *in = xmalloc(len);

	memcpy(in, "* SEARCH ", 9);
	memset(in + 9, 'a', len - 9);
	check_chunked(in, len, len, "ERROR response too long\n");
	check_chunked(in, len, 65536, "ERROR response too long\n");
	check_chunked(in, len, 1000003, "ERROR response too long\n");
	free(in);
}

Test(imap_parse, over_long_response_by_literals)
{
	/* Inline literals that each fit but together exceed the bound. */
	size_t each = 60000, n;
	size_t len = (IMAP_RESP_MAX / each + 2) * (each + 16) + 16;
	char *in = xmalloc(len);

	memcpy(in, "* X", 3);
	for (n = 3; n + each + 16 < len;) {
		memcpy(in + n, " {60000}\r\n", 10);
		n += 10;
		memset(in + n, 'q', each);
		n += each;
	}
	check_chunked(in, n, n, "ERROR response too long\n");
	check_chunked(in, n, 4096, "ERROR response too long\n");
	free(in);
}

Test(imap_parse, token_limit)
{
	size_t len = 16 + 2 * (size_t)(IMAP_ARGS_MAX + 1), n, i;
	char *in = xmalloc(len);
	struct imap_parser *p = imap_parse_new(NULL);
	struct imap_resp r;
	size_t used;

	memcpy(in, "* SEARCH", 8);
	n = 8;
	for (i = 0; i < IMAP_ARGS_MAX; i++) {
		in[n++] = ' ';
		in[n++] = (char)('0' + i % 10);
	}
	memcpy(in + n, "\r\n", 2);
	cr_assert_eq(imap_parse_feed(p, in, n + 2, &used, &r), 1);
	cr_assert_eq(r.nargs, IMAP_ARGS_MAX);
	cr_assert(imap_arg_is_atom(&r.args[IMAP_ARGS_MAX - 1], "7"));
	memcpy(in + n, " 1\r\n", 4);
	cr_assert_eq(imap_parse_feed(p, in, n + 4, &used, &r),
		     IMAP_PARSE_ERROR);
	cr_assert_str_eq(imap_parse_error(p), "too many tokens");
	imap_parse_free(&p);
	free(in);
}

struct big {
	uint64_t bytes;
	uint64_t sum;
	int begins, ends;
	uint32_t uid;
	uint64_t size;
};

static void
big_begin(void *ctx, const char *item, size_t n, uint32_t uid, uint64_t size)
{
	struct big *b = ctx;

	cr_assert_eq(n, 6);
	cr_assert_eq(memcmp(item, "BODY[]", 6), 0);
	b->begins++;
	b->uid = uid;
	b->size = size;
}

static void
big_data(void *ctx, const char *p, size_t n)
{
	struct big *b = ctx;
	size_t i;

	for (i = 0; i < n; i++)
		b->sum += (unsigned char)p[i] * ((b->bytes + i) % 7 + 1);
	b->bytes += n;
}

static void
big_end(void *ctx)
{
	((struct big *)ctx)->ends++;
}

Test(imap_parse, streams_50_mb_without_buffering)
{
	const uint64_t total = 50u * 1024 * 1024;
	struct big b = { 0 };
	struct imap_body_cb cb = { big_begin, big_data, big_end, &b };
	struct imap_parser *p = imap_parse_new(&cb);
	const char *head = "* 12 FETCH (UID 4000000000 BODY[] {52428800}\r\n";
	static char chunk[65536];
	uint64_t sent = 0, sum = 0;
	struct imap_resp r;
	size_t used, n, i;

	for (i = 0; i < sizeof(chunk); i++)
		chunk[i] = (char)(i * 31 + 7);
	cr_assert_eq(imap_parse_feed(p, head, strlen(head), &used, &r), 0);
	cr_assert_eq(b.begins, 1);
	cr_assert_eq(b.uid, 4000000000u);
	cr_assert_eq(b.size, total);
	while (sent < total) {
		n = total - sent < sizeof(chunk) ? total - sent : sizeof(chunk);
		for (i = 0; i < n; i++)
			sum += (unsigned char)chunk[i] * ((sent + i) % 7 + 1);
		cr_assert_eq(imap_parse_feed(p, chunk, n, &used, &r), 0);
		cr_assert_eq(used, n);
		sent += n;
	}
	cr_assert_eq(b.ends, 1);
	cr_assert_eq(b.bytes, total);
	cr_assert_eq(b.sum, sum);
	cr_assert_eq(imap_parse_feed(p, ")\r\nA1 OK", 8, &used, &r), 1);
	cr_assert_eq(used, 3);
	cr_assert_eq(r.args[0].list[3].type, IMAP_ARG_STREAMED);
	cr_assert_eq(r.args[0].list[3].size, total);
	imap_parse_free(&p);
}

Test(imap_parse, large_response_then_small)
{
	size_t len = IMAP_RESP_MAX - 16, n;
	char *in = xmalloc(len + 16);
	struct imap_parser *p = imap_parse_new(NULL);
	struct imap_resp r;
	size_t used;

	memcpy(in, "* SEARCH", 8);
	for (n = 8; n + 9 < len; n += 9)
		memcpy(in + n, " 12345678", 9);
	memcpy(in + n, "\r\n", 2);
	cr_assert_eq(imap_parse_feed(p, in, n + 2, &used, &r), 1);
	cr_assert_eq(used, n + 2);
	cr_assert(r.nargs > 400000);
	cr_assert_eq(imap_parse_feed(p, "* 1 EXISTS\r\n", 12, &used, &r), 1);
	cr_assert_eq(r.number, 1);
	cr_assert_eq(r.nargs, 0);
	imap_parse_free(&p);
	free(in);
}

Test(imap_parse, no_callbacks_drops_streamed_bytes)
{
	const char *in = "* 1 FETCH (BODY[] {3}\r\nabc UID 2)\r\n";
	struct imap_body_cb empty = { 0 };
	struct imap_parser *p = imap_parse_new(NULL);
	struct imap_parser *q = imap_parse_new(&empty);
	struct imap_resp r;

	parse_one(p, in, &r);
	cr_assert_eq(r.args[0].list[1].type, IMAP_ARG_STREAMED);
	cr_assert_eq(r.args[0].list[1].size, 3);
	parse_one(q, in, &r);
	cr_assert_eq(r.args[0].list[1].size, 3);
	imap_parse_free(&p);
	imap_parse_free(&q);
}

Test(imap_parse, arg_helpers)
{
	struct imap_parser *p = imap_parse_new(NULL);
	struct imap_resp r;
	uint64_t n = 99;

	parse_one(p, "* X 18446744073709551615 18446744073709551616 007 "
		     "1a \"5\" NIL nil Fetch ()\r\n", &r);
	cr_assert_eq(imap_arg_number(&r.args[0], &n), 0);
	cr_assert_eq(n, UINT64_MAX);
	cr_assert_eq(imap_arg_number(&r.args[1], &n), -EBADMSG);
	cr_assert_eq(imap_arg_number(&r.args[2], &n), 0);
	cr_assert_eq(n, 7);
	cr_assert_eq(imap_arg_number(&r.args[3], &n), -EBADMSG);
	cr_assert_eq(imap_arg_number(&r.args[4], &n), -EINVAL);
	cr_assert_eq(imap_arg_number(&r.args[5], &n), -EINVAL);
	cr_assert_eq(imap_arg_number(NULL, &n), -EINVAL);
	cr_assert_eq(r.args[5].type, IMAP_ARG_NIL);
	cr_assert_eq(r.args[6].type, IMAP_ARG_NIL);
	cr_assert(imap_arg_is_atom(&r.args[7], "FETCH"));
	cr_assert(imap_arg_is_atom(&r.args[7], "fetch"));
	cr_assert(!imap_arg_is_atom(&r.args[7], "FETC"));
	cr_assert(!imap_arg_is_atom(&r.args[7], "FETCHX"));
	cr_assert(!imap_arg_is_atom(&r.args[4], "5"));
	cr_assert(!imap_arg_is_atom(&r.args[5], "NIL"));
	cr_assert(!imap_arg_is_atom(&r.args[8], ""));
	cr_assert(!imap_arg_is_atom(NULL, "X"));
	cr_assert_eq(r.args[8].type, IMAP_ARG_LIST);
	cr_assert_eq(r.args[8].count, 0);
	cr_assert_null(r.args[8].list);
	imap_parse_free(&p);
}

/* xorshift64: the same inputs on every run. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static const char *const pieces[] = {
	"* ", "A1 ", "+ ", "OK ", "NO ", "BYE ", "5 ", "FETCH ", "(", ")",
	"UID ", "7 ", "BODY[] ", "BODY[HEADER", "] ", "{3}\r\n", "{0}\r\n",
	"~{2}\r\n", "{99999}\r\n", "\"", "\\", "\r\n", "\n", "\r", " ",
	"NIL ", "[", "LIST ", "abc", "\0", "\xff", "{", "}", "* 1 FETCH (",
	"RFC822 {4}\r\n", "SEARCH 1 2 3", "[ALERT] ", "4294967295 ",
};

static const char *const seeds[] = {
	"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n",
	"A1 OK [READ-WRITE] done\r\n",
	"* 3 FETCH (UID 42 RFC822.SIZE 1234 FLAGS (\\Seen))\r\n",
	"* 1 FETCH (UID 7 BODY[] {12}\r\nSubject: x\r\n)\r\n",
	"* 9 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {3}\r\nabc UID 4)\r\n",
	"* LIST (\\HasNoChildren) \"/\" {5}\r\nINBOX\r\n",
	"+ YWJj\r\n",
	"* ID (\"name\" \"x\\\"y\" \"v\" NIL)\r\n",
	"* 2 FETCH (BINARY[1] ~{2}\r\nab RFC822.TEXT {0}\r\n)\r\n",
};

#define NPIECES (sizeof(pieces) / sizeof(pieces[0]))
#define NSEEDS (sizeof(seeds) / sizeof(seeds[0]))

static void
insert_byte(char *s, size_t n, size_t pos, char c)
{
	memmove(s + pos + 1, s + pos, n - pos);
	s[pos] = c;
}

/* A realistic response with a few random edits, or random pieces. */
static size_t
random_input(uint64_t *seed, char *out, size_t max)
{
	size_t n = 0, k, count, pos;
	const char *piece;

	if (rnd(seed) % 3 != 0) {
		count = rnd(seed) % 3 + 1;
		while (count-- > 0) {
			piece = seeds[rnd(seed) % NSEEDS];
			k = strlen(piece);
			if (n + k > max)
				break;
			memcpy(out + n, piece, k);
			n += k;
		}
		for (count = rnd(seed) % 4; count > 0 && n > 0; count--) {
			pos = rnd(seed) % n;
			switch (rnd(seed) % 3) {
			case 0:
				out[pos] = (char)rnd(seed);
				break;
			case 1:
				memmove(out + pos, out + pos + 1, n - pos - 1);
				n--;
				break;
			default:
				if (n < max) {
					insert_byte(out, n++, pos,
						    pieces[rnd(seed) % 8][0]);
				}
			}
		}
		return n;
	}
	count = rnd(seed) % 24;
	while (count-- > 0) {
		if (rnd(seed) % 4 == 0) {
			if (n < max)
				out[n++] = (char)rnd(seed);
			continue;
		}
		piece = pieces[rnd(seed) % NPIECES];
		k = piece[0] == '\0' ? 1 : strlen(piece);
		if (n + k > max)
			break;
		memcpy(out + n, piece, k);
		n += k;
	}
	return n;
}

Test(imap_parse, hostile_random_input, .timeout = 600)
{
	uint64_t seed = 0x9e3779b97f4a7c15u;
	size_t len, cuts[2];
	char in[512];
	char *whole, *s;
	int i;

	for (i = 0; i < 4000; i++) {
		len = random_input(&seed, in, sizeof(in));
		whole = run_whole(in, len);
		s = run_bytewise(in, len);
		cr_assert_str_eq(s, whole, "input %d", i);
		free(s);
		if (len > 0) {
			cuts[0] = rnd(&seed) % len;
			cuts[1] = cuts[0] + rnd(&seed) % (len - cuts[0]);
			s = run_cuts(in, len, cuts, 2);
			cr_assert_str_eq(s, whole, "input %d", i);
			free(s);
		}
		if (i < 300)
			check_splits(in, len, whole);
		free(whole);
	}
}

Test(imap_parse, random_bytes)
{
	uint64_t seed = 12345;
	char in[256];
	size_t len, i;
	char *whole, *s;
	int t;

	for (t = 0; t < 3000; t++) {
		len = rnd(&seed) % sizeof(in);
		for (i = 0; i < len; i++)
			in[i] = (char)rnd(&seed);
		if (t % 2 == 0)
			memcpy(in, "* 1 FETCH (", len < 11 ? len : 11);
		whole = run_whole(in, len);
		s = run_bytewise(in, len);
		cr_assert_str_eq(s, whole, "input %d", t);
		free(s);
		free(whole);
	}
}

static bool
body_item(const char *name)
{
	struct imap_arg a = { .type = IMAP_ARG_ATOM, .str = name,
			      .len = strlen(name) };

	return imap_arg_is_body_item(&a);
}

Test(imap_parse, body_items)
{
	cr_assert(body_item("BODY[]"));
	cr_assert(body_item("body.peek[header]"));
	cr_assert(body_item("BODY[TEXT]<0>"));
	cr_assert(body_item("BINARY[1]"));
	cr_assert(body_item("RFC822"));
	cr_assert(body_item("rfc822.text"));
	cr_assert(body_item("RFC822.HEADER"));
	cr_assert_not(body_item("RFC822.SIZE"));
	cr_assert_not(body_item("UID"));
	cr_assert_not(body_item("BODY"));
	cr_assert_not(body_item("BODYSTRUCTURE"));
	cr_assert_not(body_item("FLAGS"));
	cr_assert_not(imap_arg_is_body_item(NULL));
}
