#ifndef POPBRIDGE_IMAP_PARSE_H
#define POPBRIDGE_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/*
 * Incremental parser for IMAP server responses (RFC 9051 §7, RFC 3501 §7).
 * Bytes may arrive split at any position. A response (a line with any
 * number of {n} literals) is assembled up to IMAP_RESP_MAX octets and then
 * handed out parsed. Literals that carry message data in a FETCH response
 * (the value of BODY[...], BINARY[...], RFC822, RFC822.HEADER, RFC822.TEXT)
 * are never buffered: their bytes are passed to the body callback as they
 * arrive, so a 50 MB message costs no memory here.
 */

/* Longest response kept in memory (text plus inline literals). A UID
 * SEARCH answer for 100,000 messages is under 1 MB. */
#define IMAP_RESP_MAX (4u * 1024 * 1024)
/* Longest literal kept inline (mailbox names, ID values, ...). */
#define IMAP_INLINE_LITERAL_MAX (64u * 1024)
/* Deepest list nesting accepted (BODYSTRUCTURE needs about 10). */
#define IMAP_DEPTH_MAX 32
/* Most tokens (atoms, strings, lists, ...) in one response. Each costs a
 * struct imap_arg (48 bytes), so this caps the tree at 24 MB; a UID SEARCH
 * naming 500,000 messages still fits. */
#define IMAP_ARGS_MAX (IMAP_RESP_MAX / 8)

enum imap_arg_type {
	IMAP_ARG_ATOM,		/* includes numbers and BODY[...]<...> */
	IMAP_ARG_STRING,	/* quoted (unescaped) or inline literal */
	IMAP_ARG_NIL,
	IMAP_ARG_LIST,
	IMAP_ARG_STREAMED,	/* literal whose bytes went to the body callback */
};

struct imap_arg {
	enum imap_arg_type type;
	const char *str;	/* ATOM, STRING; not NUL-terminated */
	size_t len;
	const struct imap_arg *list;	/* LIST: its elements */
	size_t count;
	uint64_t size;		/* STREAMED: literal size */
};

enum imap_resp_kind {
	IMAP_RESP_TAGGED,
	IMAP_RESP_UNTAGGED,
	IMAP_RESP_CONTINUATION,
};

enum imap_status {
	IMAP_STATUS_NONE = 0,	/* not a status response */
	IMAP_STATUS_OK,
	IMAP_STATUS_NO,
	IMAP_STATUS_BAD,
	IMAP_STATUS_BYE,
	IMAP_STATUS_PREAUTH,
};

/*
 * One parsed response. Every pointer points into the parser's memory and
 * stays valid until the next call to imap_parse_feed or imap_parse_free
 * (the next call also releases buffers a large response made grow).
 * Strings are not NUL-terminated and may contain NUL; tag, code, text and
 * name never contain CR or LF.
 *
 * Status responses ("tag OK ...", "* NO ...", "* BYE ...", "* PREAUTH"):
 * status is set, code is the text inside a leading [...] without brackets
 * (NULL when absent), text is the rest of the line.
 * Continuation ("+ ..."): text is everything after "+ " (empty for a bare
 * "+"); status is NONE and code is NULL (a resp-text-code is not split off).
 * Other untagged data: number is set when the first token is a number
 * ("* 5 EXISTS", "* 5 FETCH (...)"), name is the keyword (EXISTS, FETCH,
 * CAPABILITY, LIST, SEARCH, FLAGS, ...) and args are the tokens after it
 * ("* 5 FETCH (UID 7 RFC822.SIZE 123)" has one LIST arg). A LIST arg with
 * no elements has list == NULL; args is NULL when nargs is 0.
 * Tagged responses are always status responses (OK, NO or BAD); anything
 * else with a tag is an error. Lines may end in CRLF or a bare LF.
 */
struct imap_resp {
	enum imap_resp_kind kind;
	const char *tag;	/* TAGGED only */
	size_t tag_len;
	enum imap_status status;
	const char *code;
	size_t code_len;
	const char *text;
	size_t text_len;
	bool has_number;
	uint32_t number;
	const char *name;
	size_t name_len;
	const struct imap_arg *args;
	size_t nargs;
};

/*
 * Called for message data in FETCH responses. begin is called once per
 * streamed literal with the data item's name ("BODY[]", "BODY[HEADER]",
 * "BODY[TEXT]<0>", ...), the literal size and the UID when the response
 * named it before the literal (0 otherwise); then data zero or more times
 * with the literal's bytes in order; then end. Quoted-string bodies are not
 * streamed: they arrive in the parsed response as IMAP_ARG_STRING.
 * item points into the parser and is valid only during begin. The calls
 * happen inside imap_parse_feed, which must not be re-entered from them.
 * A response may still fail (IMAP_PARSE_ERROR) after its literals were
 * streamed.
 */
struct imap_body_cb {
	void (*begin)(void *ctx, const char *item, size_t item_len,
		      uint32_t uid, uint64_t size);
	void (*data)(void *ctx, const char *p, size_t n);
	void (*end)(void *ctx);
	void *ctx;
};

struct imap_parser;

/* Returns a new parser or NULL when out of memory. cb may be NULL (then
 * streamed literals are dropped). */
struct imap_parser *imap_parse_new(const struct imap_body_cb *cb);
void imap_parse_free(struct imap_parser **p);

/* What imap_parse_feed returns: the incremental parser's three outcomes
 * (STYLE: 1 done, 0 need more, -1 error). */
enum imap_parse_result {
	IMAP_PARSE_ERROR = -1,	/* see imap_parse_error; final */
	IMAP_PARSE_MORE = 0,	/* all of data used, the response goes on */
	IMAP_PARSE_DONE = 1,	/* a complete response is in *resp_r */
};

/*
 * Consumes bytes from data[0..len) and stores how many in *used_r.
 * Returns an enum imap_parse_result: IMAP_PARSE_DONE when a complete
 * response is in *resp_r (call again with the rest of the data),
 * IMAP_PARSE_MORE when all of data was used and more is needed, or
 * IMAP_PARSE_ERROR on a protocol error (malformed response, over
 * IMAP_RESP_MAX, literal too large to inline, nesting too deep, over
 * IMAP_ARGS_MAX tokens, or out of memory); imap_parse_error then says why
 * and every later call returns IMAP_PARSE_ERROR. IMAP_PARSE_MORE always
 * means *used_r == len.
 */
int imap_parse_feed(struct imap_parser *p, const char *data, size_t len,
		    size_t *used_r, struct imap_resp *resp_r);

/* A static description of the last error, or NULL. */
const char *imap_parse_error(const struct imap_parser *p);

/* Helpers over parsed data; a may be NULL. NIL is not an atom. */
/* Whether a is an ATOM equal to word, compared case-insensitively. */
bool imap_arg_is_atom(const struct imap_arg *a, const char *word);
/* Whether a names a FETCH item whose value is message data (BODY[...],
 * BODY.PEEK[...], BINARY[...], RFC822, RFC822.HEADER, RFC822.TEXT): the
 * items whose literals the parser streams. */
bool imap_arg_is_body_item(const struct imap_arg *a);
/* An ATOM of digits only that fits uint64_t: 0 and *n_r set; -EINVAL
 * when a is NULL or not an atom, -EBADMSG when the atom is not such a
 * number. */
int imap_arg_number(const struct imap_arg *a, uint64_t *n_r);
/* Walks a FETCH response's list (a LIST arg) from element i: the item's
 * name in *key_r and its value in *val_r (NULL when the list ends, or for a
 * body item sent with no value, as GNU Mailutils does for a partial past
 * the end). Returns the index of the next item; call while it is below
 * list->count. */
size_t imap_fetch_next(const struct imap_arg *list, size_t i,
		       const struct imap_arg **key_r,
		       const struct imap_arg **val_r);
/* In a FETCH response's list, finds the value after key (case-insensitive).
 * NULL when r is not "* n FETCH (...)" or has no such item. */
const struct imap_arg *imap_fetch_item(const struct imap_resp *r, const char *key);

#endif
