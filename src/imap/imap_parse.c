/* The incremental IMAP response parser (RFC 9051 syntax): tagged, untagged
 * and continuation responses, literals streamed without buffering. */
#include "imap/imap_parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * A response is assembled in p->text: each line without its line end, and
 * after every literal announcement "{n}" one mark byte saying whether the n
 * bytes follow inline or went to the body callback (the dropped line end
 * makes room for it, so the byte after a literal's '}' is always ours,
 * never the server's). Each line segment is
 * tokenized once as it completes (to find literals, count arguments and
 * know which literals to stream); the finished text is tokenized once more
 * to fill the argument tree, so no pointer is taken before the text stops
 * moving.
 */

/* Internal steps return IMAP_PARSE_DONE or IMAP_PARSE_MORE (or 0 where
 * there is no such choice), and IMAP_PARSE_ERROR only through fail(),
 * which records why. The second pass (fill_*) returns -EBADMSG when it
 * disagrees with the first; build_args then records the inconsistency. */

/* Buffers that one large response grew past this are released once it has
 * been handed out, so a long session goes back to holding little. */
#define KEEP_MAX (16u * 1024)

#define MARK_INLINE 'I'
#define MARK_STREAMED 'S'

enum phase {
	PHASE_LINE,
	PHASE_INLINE,
	PHASE_STREAM,
};

enum tok_type {
	TOK_END,
	TOK_LPAREN,
	TOK_RPAREN,
	TOK_ATOM,
	TOK_NIL,
	TOK_QUOTED,
	TOK_LITERAL,
	TOK_ERROR,
};

struct token {
	enum tok_type type;
	size_t off;
	size_t len;
	uint64_t size;
	const char *err;
};

struct imap_parser {
	struct imap_body_cb cb;
	const char *error;
	bool delivered;
	enum phase phase;
	uint64_t remaining;
	struct buf text;
	size_t seg_start;

	bool head_done;
	enum imap_resp_kind kind;
	enum imap_status status;
	size_t tag_off, tag_len;
	bool has_code;
	size_t code_off, code_len;
	size_t text_off, text_len;
	bool has_number;
	uint32_t number;
	size_t name_off, name_len;
	size_t data_off;

	size_t nodes;
	size_t top_count;
	size_t depth;
	uint32_t stack[IMAP_DEPTH_MAX];
	struct buf counts;	/* uint32 element count per list, '(' order */

	bool is_fetch;
	bool in_fetch;		/* in the list that follows "n FETCH" */
	bool key_valid;
	size_t key_off, key_len;
	uint32_t uid;

	struct imap_arg *args;
	size_t args_cap;
};

/* The second pass: lists get their elements as one block of p->args. */
struct fill {
	struct imap_parser *p;
	char *s;
	size_t end;
	size_t pos;
	size_t next;		/* first unused element of p->args */
	size_t list_ord;	/* the next list, in '(' order */
};

static const struct {
	const char *word;
	enum imap_status status;
} status_words[] = {
	{ "OK", IMAP_STATUS_OK },
	{ "NO", IMAP_STATUS_NO },
	{ "BAD", IMAP_STATUS_BAD },
	{ "BYE", IMAP_STATUS_BYE },
	{ "PREAUTH", IMAP_STATUS_PREAUTH },
};

static int fill_value(struct fill *f, struct imap_arg *a);

static int
fail(struct imap_parser *p, const char *why)
{
	p->error = why;
	return IMAP_PARSE_ERROR;
}

static int
fail_buf(struct imap_parser *p, int r)
{
	return fail(p, r == -ENOBUFS ? "response too long" : "out of memory");
}

static char
ascii_upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static bool
eq_nocase(const char *s, size_t n, const char *word)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (word[i] == '\0' ||
		    ascii_upper(s[i]) != ascii_upper(word[i]))
			return false;
	}
	return word[n] == '\0';
}

static bool
prefix_nocase(const char *s, size_t n, const char *prefix)
{
	size_t k = strlen(prefix);

	return n >= k && eq_nocase(s, k, prefix);
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int
parse_u32(const char *s, size_t n, uint32_t *v_r)
{
	uint64_t v;

	if (buf_parse_u64(s, n, UINT32_MAX, &v) < 0)
		return -EBADMSG;
	*v_r = (uint32_t)v;
	return 0;
}

static void
lex_error(struct token *t, const char *why)
{
	t->type = TOK_ERROR;
	t->err = why;
}

static void
lex_quoted(const char *s, size_t end, size_t *pos, struct token *t)
{
	size_t i = *pos + 1;

	while (i < end && s[i] != '"')
		i += s[i] == '\\' ? 2 : 1;
	if (i >= end) {
		lex_error(t, "unterminated quoted string");
		return;
	}
	t->type = TOK_QUOTED;
	t->off = *pos + 1;
	t->len = i - t->off;
	*pos = i + 1;
}

static void
lex_literal(const char *s, size_t end, size_t *pos, struct token *t)
{
	size_t i = *pos + (s[*pos] == '~' ? 2 : 1);
	size_t start = i;

	while (i < end && is_digit(s[i]))
		i++;
	if (i == start || i >= end || s[i] != '}') {
		lex_error(t, "malformed literal");
		return;
	}
	if (buf_parse_u64(s + start, i - start, UINT64_MAX, &t->size) < 0) {
		lex_error(t, "literal size too large");
		return;
	}
	t->type = TOK_LITERAL;
	t->off = *pos;
	t->len = i + 1 - *pos;
	*pos = i + 1;
}

static bool
ends_atom(char c)
{
	return c == ' ' || c == '(' || c == ')';
}

/* The ']' closing a '[' at i, or 0. A '{' stops the search: a line
 * segment that ends in a literal has its "{n}" last, so the search never
 * runs into literal bytes and both tokenizing passes agree. */
static size_t
bracket_end(const char *s, size_t i, size_t end)
{
	for (i++; i < end && s[i] != '{'; i++) {
		if (s[i] == ']')
			return i;
	}
	return 0;
}

/* Inside [...] spaces and parentheses belong to the atom, so that
 * BODY[HEADER.FIELDS (SUBJECT DATE)]<0> stays one token. A '[' without
 * its ']' is an ordinary atom character (RFC 9051 allows it in atoms). */
static void
lex_atom(const char *s, size_t end, size_t *pos, struct token *t)
{
	size_t i = *pos, close;

	while (i < end && !ends_atom(s[i])) {
		if (s[i] == '[' && (close = bracket_end(s, i, end)) > 0)
			i = close;
		i++;
	}
	t->off = *pos;
	t->len = i - *pos;
	t->type = t->len == 3 && eq_nocase(s + t->off, 3, "NIL") ? TOK_NIL
								  : TOK_ATOM;
	*pos = i;
}

static void
lex_next(const char *s, size_t end, size_t *pos, struct token *t)
{
	size_t i = *pos;

	while (i < end && s[i] == ' ')
		i++;
	*pos = i;
	t->off = i;
	t->len = 0;
	t->size = 0;
	if (i == end) {
		t->type = TOK_END;
		return;
	}
	switch (s[i]) {
	case '(':
	case ')':
		t->type = s[i] == '(' ? TOK_LPAREN : TOK_RPAREN;
		*pos = i + 1;
		return;
	case '"':
		lex_quoted(s, end, pos, t);
		return;
	case '{':
		lex_literal(s, end, pos, t);
		return;
	case '~':
		if (i + 1 < end && s[i + 1] == '{') {
			lex_literal(s, end, pos, t);
			return;
		}
		break;
	}
	lex_atom(s, end, pos, t);
}

static size_t
unescape(char *s, size_t n)
{
	size_t r, w = 0;

	for (r = 0; r < n; r++) {
		if (s[r] == '\\' && r + 1 < n)
			r++;
		s[w++] = s[r];
	}
	return w;
}

static uint32_t
count_get(const struct buf *b, size_t i)
{
	uint32_t v;

	memcpy(&v, b->data + i * sizeof(v), sizeof(v));
	return v;
}

static void
count_set(struct buf *b, size_t i, uint32_t v)
{
	memcpy(b->data + i * sizeof(v), &v, sizeof(v));
}

static size_t
count_lists(const struct imap_parser *p)
{
	return p->counts.len / sizeof(uint32_t);
}

static int
add_node(struct imap_parser *p, size_t *index_r)
{
	uint32_t ord, n;

	if (p->nodes >= IMAP_ARGS_MAX)
		return fail(p, "too many tokens");
	p->nodes++;
	if (p->depth == 0) {
		*index_r = p->top_count++;
		return 0;
	}
	ord = p->stack[p->depth - 1];
	n = count_get(&p->counts, ord);
	count_set(&p->counts, ord, n + 1);
	*index_r = n;
	return 0;
}

static int
open_list(struct imap_parser *p, size_t index)
{
	uint32_t zero = 0;
	int r;

	if (p->depth >= IMAP_DEPTH_MAX)
		return fail(p, "lists nested too deeply");
	if (p->depth == 0 && index == 0 && p->is_fetch)
		p->in_fetch = true;
	r = buf_append(&p->counts, &zero, sizeof(zero));
	if (r < 0)
		return fail_buf(p, r);
	p->stack[p->depth++] = (uint32_t)(count_lists(p) - 1);
	return 0;
}

static int
close_list(struct imap_parser *p)
{
	if (p->depth == 0)
		return fail(p, "unbalanced parenthesis");
	if (--p->depth == 0)
		p->in_fetch = false;
	return 0;
}

static bool
item_is_body(const char *s, size_t n)
{
	char first = n > 0 ? ascii_upper(s[0]) : '\0';

	/* Called for every FETCH item: most (UID, FLAGS, RFC822.SIZE) are
	 * decided by the first letter and the length alone. */
	if (first == 'R')
		return (n == 6 && eq_nocase(s, n, "RFC822")) ||
		       (n == 11 && eq_nocase(s, n, "RFC822.TEXT")) ||
		       (n == 13 && eq_nocase(s, n, "RFC822.HEADER"));
	if (first != 'B' || n < 5)
		return false;
	return prefix_nocase(s, n, "BODY[") ||
	       prefix_nocase(s, n, "BODY.PEEK[") ||
	       prefix_nocase(s, n, "BINARY[") ||
	       prefix_nocase(s, n, "BINARY.PEEK[");
}

/* Items of the FETCH list alternate name, value. Remembers the last name
 * and the UID, and says whether this token is a message-data value. */
static bool
track_fetch(struct imap_parser *p, const struct token *t, size_t index)
{
	const char *s = p->text.data;
	uint32_t uid;

	if (index % 2 == 0) {
		p->key_valid = t->type == TOK_ATOM;
		p->key_off = t->off;
		p->key_len = t->len;
		return false;
	}
	if (!p->key_valid)
		return false;
	if (t->type == TOK_ATOM &&
	    eq_nocase(s + p->key_off, p->key_len, "UID") &&
	    parse_u32(s + t->off, t->len, &uid) == 0)
		p->uid = uid;
	return item_is_body(s + p->key_off, p->key_len);
}

static void
stream_end(struct imap_parser *p)
{
	if (p->cb.end != NULL)
		p->cb.end(p->cb.ctx);
	p->phase = PHASE_LINE;
	p->seg_start = p->text.len;
}

static int
start_literal(struct imap_parser *p, uint64_t size, bool stream)
{
	char mark = stream ? MARK_STREAMED : MARK_INLINE;
	int r;

	if (!stream && size > IMAP_INLINE_LITERAL_MAX)
		return fail(p, "literal too large to keep inline");
	if (!stream && size >= p->text.max - p->text.len)
		return fail(p, "response too long");
	r = buf_append(&p->text, &mark, 1);
	if (r < 0)
		return fail_buf(p, r);
	p->remaining = size;
	p->seg_start = p->text.len;
	if (!stream) {
		p->phase = size > 0 ? PHASE_INLINE : PHASE_LINE;
		return 0;
	}
	if (p->cb.begin != NULL)
		p->cb.begin(p->cb.ctx, p->text.data + p->key_off, p->key_len,
			    p->uid, size);
	p->phase = PHASE_STREAM;
	if (size == 0)
		stream_end(p);
	return 0;
}

/* Returns IMAP_PARSE_DONE when the line ended the response,
 * IMAP_PARSE_MORE when a literal follows. */
static int
scan_segment(struct imap_parser *p, size_t pos, size_t end)
{
	struct token t;
	size_t index;
	bool body;

	for (;;) {
		lex_next(p->text.data, end, &pos, &t);
		if (t.type == TOK_ERROR)
			return fail(p, t.err);
		if (t.type == TOK_END && p->depth > 0)
			return fail(p, "unbalanced parenthesis");
		if (t.type == TOK_END)
			return IMAP_PARSE_DONE;
		if (t.type == TOK_RPAREN) {
			if (close_list(p) < 0)
				return IMAP_PARSE_ERROR;
			continue;
		}
		if (add_node(p, &index) < 0)
			return IMAP_PARSE_ERROR;
		body = p->in_fetch && p->depth == 1 &&
		       track_fetch(p, &t, index);
		if (t.type == TOK_LPAREN && open_list(p, index) < 0)
			return IMAP_PARSE_ERROR;
		if (t.type != TOK_LITERAL)
			continue;
		if (pos != end)
			return fail(p, "literal not at end of line");
		return start_literal(p, t.size, body) < 0 ? IMAP_PARSE_ERROR :
		       IMAP_PARSE_MORE;
	}
}

static int
parse_continuation(struct imap_parser *p, size_t end)
{
	p->kind = IMAP_RESP_CONTINUATION;
	p->text_off = end > 1 && p->text.data[1] == ' ' ? 2 : 1;
	p->text_len = end - p->text_off;
	return IMAP_PARSE_DONE;
}

static enum imap_status
status_word(const char *s, size_t end, size_t *pos)
{
	size_t i, j = *pos;
	char first = j < end ? ascii_upper(s[j]) : '\0';

	/* Most untagged lines start with a number: one look decides. */
	if (first != 'O' && first != 'N' && first != 'B' && first != 'P')
		return IMAP_STATUS_NONE;
	while (j < end && s[j] != ' ' && s[j] != '[')
		j++;
	for (i = 0; i < sizeof(status_words) / sizeof(status_words[0]); i++) {
		if (eq_nocase(s + *pos, j - *pos, status_words[i].word)) {
			*pos = j;
			return status_words[i].status;
		}
	}
	return IMAP_STATUS_NONE;
}

/* A code may hold quoted strings ("BADCHARSET (\"a]b\")"), so a ']' inside
 * quotes does not end it. Returns end when there is no closing ']'. */
static size_t
code_end(const char *s, size_t i, size_t end)
{
	bool quoted = false;

	while (i < end) {
		if (quoted && s[i] == '\\') {
			i += 2;
			continue;
		}
		if (s[i] == '"')
			quoted = !quoted;
		else if (s[i] == ']' && !quoted)
			return i;
		i++;
	}
	return end;
}

static int
parse_status_text(struct imap_parser *p, size_t pos, size_t end)
{
	const char *s = p->text.data;
	size_t close;

	if (pos < end && s[pos] == ' ')
		pos++;
	if (pos < end && s[pos] == '[') {
		close = code_end(s, pos + 1, end);
		if (close < end) {
			p->has_code = true;
			p->code_off = pos + 1;
			p->code_len = close - pos - 1;
			pos = close + 1;
			if (pos < end && s[pos] == ' ')
				pos++;
		}
	}
	p->text_off = pos;
	p->text_len = end - pos;
	return IMAP_PARSE_DONE;
}

static int
parse_data_head(struct imap_parser *p, size_t pos, size_t end)
{
	const char *s = p->text.data;
	struct token t;

	lex_next(s, end, &pos, &t);
	if (t.type == TOK_ATOM && is_digit(s[t.off])) {
		if (parse_u32(s + t.off, t.len, &p->number) < 0)
			return fail(p, "bad message number");
		p->has_number = true;
		lex_next(s, end, &pos, &t);
	}
	if (t.type == TOK_ERROR)
		return fail(p, t.err);
	if (t.type != TOK_ATOM)
		return fail(p, "missing response name");
	p->name_off = t.off;
	p->name_len = t.len;
	p->is_fetch = p->has_number && eq_nocase(s + t.off, t.len, "FETCH");
	p->data_off = pos;
	p->head_done = true;
	return scan_segment(p, pos, end);
}

static int
parse_head(struct imap_parser *p, size_t end)
{
	const char *s = p->text.data;
	enum imap_status status;
	struct token t;
	size_t pos = 0;

	if (end == 0)
		return fail(p, "empty line");
	if (s[0] == '+')
		return parse_continuation(p, end);
	lex_next(s, end, &pos, &t);
	if (t.type != TOK_ATOM || pos >= end || s[pos] != ' ')
		return fail(p, "malformed response line");
	p->kind = t.len == 1 && s[t.off] == '*' ?
		IMAP_RESP_UNTAGGED : IMAP_RESP_TAGGED;
	p->tag_off = t.off;
	p->tag_len = t.len;
	while (pos < end && s[pos] == ' ')
		pos++;
	status = status_word(s, end, &pos);
	p->status = status;
	if (p->kind == IMAP_RESP_TAGGED &&
	    (status == IMAP_STATUS_NONE || status > IMAP_STATUS_BAD))
		return fail(p, "tagged response without OK, NO or BAD");
	if (status != IMAP_STATUS_NONE)
		return parse_status_text(p, pos, end);
	return parse_data_head(p, pos, end);
}

/* Whether the response is complete: IMAP_PARSE_DONE, MORE or ERROR. */
static int
end_segment(struct imap_parser *p)
{
	size_t start = p->seg_start, end = p->text.len;

	if (end > start && p->text.data[end - 1] == '\r')
		p->text.len = --end;
	if (end > start && memchr(p->text.data + start, '\r', end - start))
		return fail(p, "CR without LF");
	if (!p->head_done)
		return parse_head(p, end);
	return scan_segment(p, start, end);
}

static int
feed_line(struct imap_parser *p, const char *data, size_t len, size_t *used_r)
{
	const char *lf = memchr(data, '\n', len);
	size_t n = lf != NULL ? (size_t)(lf - data) : len;
	int r;

	*used_r = lf != NULL ? n + 1 : n;
	r = buf_append(&p->text, data, n);
	if (r < 0)
		return fail_buf(p, r);
	return lf != NULL ? end_segment(p) : IMAP_PARSE_MORE;
}

static size_t
take(const struct imap_parser *p, size_t len)
{
	return p->remaining < len ? (size_t)p->remaining : len;
}

static int
feed_inline(struct imap_parser *p, const char *data, size_t len,
	    size_t *used_r)
{
	size_t n = take(p, len);
	int r;

	*used_r = n;
	r = buf_append(&p->text, data, n);
	if (r < 0)
		return fail_buf(p, r);
	p->remaining -= n;
	if (p->remaining == 0) {
		p->phase = PHASE_LINE;
		p->seg_start = p->text.len;
	}
	return IMAP_PARSE_MORE;
}

static int
feed_stream(struct imap_parser *p, const char *data, size_t len,
	    size_t *used_r)
{
	size_t n = take(p, len);

	*used_r = n;
	if (p->cb.data != NULL)
		p->cb.data(p->cb.ctx, data, n);
	p->remaining -= n;
	if (p->remaining == 0)
		stream_end(p);
	return IMAP_PARSE_MORE;
}

static int
fill_values(struct fill *f, struct imap_arg *out, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (fill_value(f, &out[i]) < 0)
			return -EBADMSG;
	}
	return 0;
}

static int
fill_list(struct fill *f, struct imap_arg *a)
{
	struct imap_parser *p = f->p;
	struct imap_arg *kids;
	struct token t;
	size_t n;

	if (f->list_ord >= count_lists(p))
		return -EBADMSG;
	n = count_get(&p->counts, f->list_ord++);
	if (n > p->nodes - f->next)
		return -EBADMSG;
	kids = n > 0 ? p->args + f->next : NULL;
	f->next += n;
	a->type = IMAP_ARG_LIST;
	a->list = kids;
	a->count = n;
	if (fill_values(f, kids, n) < 0)
		return -EBADMSG;
	lex_next(f->s, f->end, &f->pos, &t);
	return t.type == TOK_RPAREN ? 0 : -EBADMSG;
}

static int
fill_literal(struct fill *f, const struct token *t, struct imap_arg *a)
{
	if (f->pos >= f->end)
		return -EBADMSG;
	if (f->s[f->pos++] == MARK_STREAMED) {
		a->type = IMAP_ARG_STREAMED;
		a->size = t->size;
		return 0;
	}
	if (t->size > f->end - f->pos)
		return -EBADMSG;
	a->type = IMAP_ARG_STRING;
	a->str = f->s + f->pos;
	a->len = (size_t)t->size;
	f->pos += a->len;
	return 0;
}

static int
fill_value(struct fill *f, struct imap_arg *a)
{
	struct token t;

	memset(a, 0, sizeof(*a));
	lex_next(f->s, f->end, &f->pos, &t);
	switch (t.type) {
	case TOK_ATOM:
		a->type = IMAP_ARG_ATOM;
		a->str = f->s + t.off;
		a->len = t.len;
		return 0;
	case TOK_NIL:
		a->type = IMAP_ARG_NIL;
		return 0;
	case TOK_QUOTED:
		a->type = IMAP_ARG_STRING;
		a->str = f->s + t.off;
		a->len = unescape(f->s + t.off, t.len);
		return 0;
	case TOK_LITERAL:
		return fill_literal(f, &t, a);
	case TOK_LPAREN:
		return fill_list(f, a);
	case TOK_END:
	case TOK_RPAREN:
	case TOK_ERROR:
		/* The first pass counted a value here: the passes disagree. */
		break;
	}
	return -EBADMSG;
}

static int
grow_args(struct imap_parser *p)
{
	struct imap_arg *a;

	if (p->nodes <= p->args_cap)
		return 0;
	a = realloc(p->args, p->nodes * sizeof(*a));
	if (a == NULL)
		return fail(p, "out of memory");
	p->args = a;
	p->args_cap = p->nodes;
	return 0;
}

static int
build_args(struct imap_parser *p, struct imap_resp *r)
{
	struct fill f = {
		.p = p, .s = p->text.data, .end = p->text.len,
		.pos = p->data_off, .next = p->top_count,
	};
	struct token t;

	if (grow_args(p) < 0)
		return IMAP_PARSE_ERROR;
	if (fill_values(&f, p->args, p->top_count) < 0)
		return fail(p, "internal parser inconsistency");
	lex_next(f.s, f.end, &f.pos, &t);
	if (t.type != TOK_END || f.next != p->nodes)
		return fail(p, "internal parser inconsistency");
	r->args = p->top_count > 0 ? p->args : NULL;
	r->nargs = p->top_count;
	return 0;
}

static int
build_resp(struct imap_parser *p, struct imap_resp *r)
{
	const char *s = p->text.data;

	memset(r, 0, sizeof(*r));
	r->kind = p->kind;
	r->status = p->status;
	if (p->kind == IMAP_RESP_TAGGED) {
		r->tag = s + p->tag_off;
		r->tag_len = p->tag_len;
	}
	if (p->has_code) {
		r->code = s + p->code_off;
		r->code_len = p->code_len;
	}
	if (p->status != IMAP_STATUS_NONE ||
	    p->kind == IMAP_RESP_CONTINUATION) {
		r->text = s + p->text_off;
		r->text_len = p->text_len;
	} else {
		r->has_number = p->has_number;
		r->number = p->number;
		r->name = s + p->name_off;
		r->name_len = p->name_len;
		if (build_args(p, r) < 0)
			return IMAP_PARSE_ERROR;
	}
	p->delivered = true;
	return IMAP_PARSE_DONE;
}

static void
recycle_buf(struct buf *b)
{
	if (b->cap > KEEP_MAX)
		buf_free(b);
	else
		buf_reset(b);
}

/* Forgets the response handed out last and releases what it made large. */
static void
recycle(struct imap_parser *p)
{
	recycle_buf(&p->text);
	recycle_buf(&p->counts);
	if (p->args_cap * sizeof(*p->args) > KEEP_MAX) {
		free(p->args);
		p->args = NULL;
		p->args_cap = 0;
	}
	p->delivered = false;
	p->phase = PHASE_LINE;
	p->seg_start = 0;
	p->head_done = false;
	p->status = IMAP_STATUS_NONE;
	p->has_code = false;
	p->has_number = false;
	p->nodes = 0;
	p->top_count = 0;
	p->depth = 0;
	p->is_fetch = false;
	p->in_fetch = false;
	p->key_valid = false;
	p->key_off = 0;
	p->key_len = 0;
	p->uid = 0;
}

struct imap_parser *
imap_parse_new(const struct imap_body_cb *cb)
{
	struct imap_parser *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	if (cb != NULL)
		p->cb = *cb;
	buf_init(&p->text, IMAP_RESP_MAX);
	buf_init(&p->counts, (size_t)IMAP_ARGS_MAX * sizeof(uint32_t));
	return p;
}

void
imap_parse_free(struct imap_parser **pp)
{
	struct imap_parser *p = *pp;

	if (p == NULL)
		return;
	buf_free(&p->text);
	buf_free(&p->counts);
	free(p->args);
	free(p);
	*pp = NULL;
}

static int
feed_step(struct imap_parser *p, const char *data, size_t len,
	  size_t *used_r)
{
	switch (p->phase) {
	case PHASE_INLINE:
		return feed_inline(p, data, len, used_r);
	case PHASE_STREAM:
		return feed_stream(p, data, len, used_r);
	case PHASE_LINE:
		break;
	}
	return feed_line(p, data, len, used_r);
}

int
imap_parse_feed(struct imap_parser *p, const char *data, size_t len,
		size_t *used_r, struct imap_resp *resp_r)
{
	size_t used = 0, n;
	int r = IMAP_PARSE_MORE;

	*used_r = 0;
	if (p->error != NULL)
		return IMAP_PARSE_ERROR;
	if (p->delivered)
		recycle(p);
	while (r == IMAP_PARSE_MORE && used < len) {
		n = 0;
		r = feed_step(p, data + used, len - used, &n);
		used += n;
	}
	*used_r = used;
	if (r == IMAP_PARSE_DONE)
		return build_resp(p, resp_r);
	return r;
}

const char *
imap_parse_error(const struct imap_parser *p)
{
	return p->error;
}

bool
imap_arg_is_atom(const struct imap_arg *a, const char *word)
{
	return a != NULL && a->type == IMAP_ARG_ATOM &&
	       eq_nocase(a->str, a->len, word);
}

bool
imap_arg_is_body_item(const struct imap_arg *a)
{
	return a != NULL && a->type == IMAP_ARG_ATOM &&
	       item_is_body(a->str, a->len);
}

int
imap_arg_number(const struct imap_arg *a, uint64_t *n_r)
{
	if (a == NULL || a->type != IMAP_ARG_ATOM)
		return -EINVAL;
	if (buf_parse_u64(a->str, a->len, UINT64_MAX, n_r) < 0)
		return -EBADMSG;
	return 0;
}

size_t
imap_fetch_next(const struct imap_arg *list, size_t i,
		const struct imap_arg **key_r, const struct imap_arg **val_r)
{
	const struct imap_arg *k = &list->list[i];
	const struct imap_arg *v = i + 1 < list->count ? &list->list[i + 1]
						       : NULL;

	*key_r = k;
	/* Message data is a string, NIL or a literal, never an atom: a body
	 * item followed by an atom (the next item's name) has no value. */
	if (imap_arg_is_body_item(k) && (v == NULL || v->type == IMAP_ARG_ATOM)) {
		*val_r = NULL;
		return i + 1;
	}
	*val_r = v;
	return v != NULL ? i + 2 : i + 1;
}

const struct imap_arg *
imap_fetch_item(const struct imap_resp *r, const char *key)
{
	const struct imap_arg *k, *v;
	size_t i = 0;

	if (r->kind != IMAP_RESP_UNTAGGED || r->name == NULL ||
	    !eq_nocase(r->name, r->name_len, "FETCH") || r->nargs == 0 ||
	    r->args[0].type != IMAP_ARG_LIST)
		return NULL;
	while (i < r->args[0].count) {
		i = imap_fetch_next(&r->args[0], i, &k, &v);
		if (v != NULL && imap_arg_is_atom(k, key))
			return v;
	}
	return NULL;
}
