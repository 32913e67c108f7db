/*
 * libFuzzer target for include/imap_parse.h.
 *
 * Input: one header byte h, then (h % 8) chunk-size bytes, then the server
 * stream. The stream is fed in chunks (each an exact-size heap copy, so the
 * parser cannot read past what it was given) and every response is walked
 * in full: every string read over its length, every list entered. Body
 * callbacks must come as begin, data..., end with as many bytes as begin
 * announced. The same stream fed whole must give the same responses, body
 * events and outcome: bytes may arrive split at any position.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_parse.h"
#include "fuzz_common.h"

struct run {
	uint64_t hash;		/* FNV-1a over responses and body events */
	size_t responses;
	int failed;		/* the parser said -1 */
	/* body callback state */
	int in_body;
	uint64_t body_size;
	uint64_t body_seen;
	size_t bodies;
	/* literals streamed since the last response, to match against its
	 * IMAP_ARG_STREAMED args */
	size_t streamed_n;
	uint64_t streamed_sum;
};

static volatile unsigned char sink;

static void
hash_bytes(struct run *r, const void *p, size_t n)
{
	fnv1a(&r->hash, p, n);
}

static void
hash_u64(struct run *r, uint64_t v)
{
	hash_bytes(r, &v, sizeof(v));
}

/* Reads every byte (ASan checks the pointer over its length) and hashes. */
static void
hash_str(struct run *r, const char *p, size_t n)
{
	CHECK(n == 0 || p != NULL);
	hash_u64(r, n);
	if (n > 0)
		hash_bytes(r, p, n);
}

static void
no_crlf(const char *p, size_t n)
{
	CHECK(n == 0 || memchr(p, '\r', n) == NULL);
	CHECK(n == 0 || memchr(p, '\n', n) == NULL);
}

static void
body_begin(void *ctx, const char *item, size_t item_len, uint32_t uid,
	   uint64_t size)
{
	struct run *r = ctx;

	CHECK(!r->in_body);
	CHECK(item != NULL && item_len > 0);
	r->in_body = 1;
	r->body_size = size;
	r->body_seen = 0;
	r->bodies++;
	r->streamed_n++;
	r->streamed_sum += size;
	hash_bytes(r, "B", 1);
	hash_str(r, item, item_len);
	hash_u64(r, uid);
	hash_u64(r, size);
}

static void
body_data(void *ctx, const char *p, size_t n)
{
	struct run *r = ctx;
	size_t i;

	CHECK(r->in_body);
	CHECK(n <= r->body_size - r->body_seen);
	CHECK(n == 0 || p != NULL);
	r->body_seen += n;
	/* Split differently in the two runs, so hash the bytes only. */
	for (i = 0; i < n; i++)
		hash_bytes(r, p + i, 1);
}

static void
body_end(void *ctx)
{
	struct run *r = ctx;

	CHECK(r->in_body);
	CHECK(r->body_seen == r->body_size);
	r->in_body = 0;
	hash_bytes(r, "E", 1);
}

static void
check_number(const struct imap_arg *a)
{
	uint64_t n = 0, v = 0;
	size_t i;
	int ok;

	ok = a != NULL && a->type == IMAP_ARG_ATOM && a->len > 0;
	for (i = 0; ok && i < a->len; i++) {
		unsigned d = (unsigned)(a->str[i] - '0');

		if (a->str[i] < '0' || a->str[i] > '9' ||
		    v > (UINT64_MAX - d) / 10)
			ok = 0;
		else
			v = v * 10 + d;
	}
	if (imap_arg_number(a, &n) == 0) {
		CHECK(ok);
		CHECK(n == v);
	} else {
		CHECK(!ok);
	}
}

static int
prefix_nocase(const char *s, size_t n, const char *prefix)
{
	size_t i, k = strlen(prefix);

	if (n < k)
		return 0;
	for (i = 0; i < k; i++) {
		char c = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 32) : s[i];

		if (c != prefix[i])
			return 0;
	}
	return 1;
}

/* The data items whose literals the header says are streamed. */
static int
item_is_body(const struct imap_arg *a)
{
	return a->type == IMAP_ARG_ATOM &&
	       (prefix_nocase(a->str, a->len, "BODY[") ||
		prefix_nocase(a->str, a->len, "BODY.PEEK[") ||
		prefix_nocase(a->str, a->len, "BINARY[") ||
		prefix_nocase(a->str, a->len, "BINARY.PEEK[") ||
		imap_arg_is_atom(a, "RFC822") ||
		imap_arg_is_atom(a, "RFC822.HEADER") ||
		imap_arg_is_atom(a, "RFC822.TEXT"));
}

static void
walk_arg(struct run *r, const struct imap_arg *a, size_t depth)
{
	size_t i;

	CHECK(depth <= IMAP_DEPTH_MAX + 1);
	hash_u64(r, (uint64_t)a->type);
	check_number(a);
	switch (a->type) {
	case IMAP_ARG_ATOM:
		CHECK(a->len > 0);
		hash_str(r, a->str, a->len);
		(void)imap_arg_is_atom(a, "NIL");
		(void)imap_arg_is_atom(a, "UID");
		break;
	case IMAP_ARG_STRING:
		hash_str(r, a->str, a->len);
		CHECK(!imap_arg_is_atom(a, ""));
		break;
	case IMAP_ARG_NIL:
		CHECK(!imap_arg_is_atom(a, "NIL"));
		break;
	case IMAP_ARG_STREAMED:
		hash_u64(r, a->size);
		/* Only values in the FETCH list itself are streamed. */
		CHECK(depth == 2);
		CHECK(r->streamed_n > 0);
		CHECK(a->size <= r->streamed_sum);
		r->streamed_n--;
		r->streamed_sum -= a->size;
		break;
	case IMAP_ARG_LIST:
		CHECK((a->count == 0) == (a->list == NULL));
		hash_u64(r, a->count);
		for (i = 0; i < a->count; i++)
			walk_arg(r, &a->list[i], depth + 1);
		break;
	default:
		CHECK(!"bad arg type");
	}
}

static void
walk_resp(struct run *r, const struct imap_resp *resp)
{
	static const char *const keys[] = {
		"UID", "RFC822.SIZE", "FLAGS", "BODY[]", "BODY[HEADER]",
		"INTERNALDATE", "BODYSTRUCTURE", "",
	};
	const struct imap_arg *item;
	size_t i;

	r->responses++;
	hash_bytes(r, "R", 1);
	hash_u64(r, (uint64_t)resp->kind);
	hash_u64(r, (uint64_t)resp->status);
	CHECK(resp->status >= IMAP_STATUS_NONE &&
	      resp->status <= IMAP_STATUS_PREAUTH);
	switch (resp->kind) {
	case IMAP_RESP_TAGGED:
		CHECK(resp->tag != NULL && resp->tag_len > 0);
		CHECK(resp->status == IMAP_STATUS_OK ||
		      resp->status == IMAP_STATUS_NO ||
		      resp->status == IMAP_STATUS_BAD);
		break;
	case IMAP_RESP_UNTAGGED:
		CHECK(resp->tag == NULL);
		break;
	case IMAP_RESP_CONTINUATION:
		CHECK(resp->tag == NULL);
		CHECK(resp->status == IMAP_STATUS_NONE);
		CHECK(resp->code == NULL);
		break;
	default:
		CHECK(!"bad response kind");
	}
	hash_str(r, resp->tag, resp->tag_len);
	no_crlf(resp->tag, resp->tag_len);
	hash_str(r, resp->code, resp->code_len);
	no_crlf(resp->code, resp->code_len);
	hash_str(r, resp->text, resp->text_len);
	no_crlf(resp->text, resp->text_len);
	hash_str(r, resp->name, resp->name_len);
	no_crlf(resp->name, resp->name_len);
	if (resp->status != IMAP_STATUS_NONE ||
	    resp->kind == IMAP_RESP_CONTINUATION) {
		CHECK(resp->text != NULL);
		CHECK(resp->name == NULL && resp->nargs == 0);
	} else {
		CHECK(resp->name != NULL && resp->name_len > 0);
	}
	hash_u64(r, resp->has_number);
	if (resp->has_number)
		hash_u64(r, resp->number);
	CHECK((resp->nargs == 0) == (resp->args == NULL));
	hash_u64(r, resp->nargs);
	for (i = 0; i < resp->nargs; i++) {
		/* Only a FETCH list's message-data values are streamed. */
		CHECK(resp->args[i].type != IMAP_ARG_STREAMED);
		walk_arg(r, &resp->args[i], 1);
	}
	/* Every literal that went to the body callback is in the response. */
	CHECK(r->streamed_n == 0 && r->streamed_sum == 0);
	if (resp->nargs > 0 && resp->args[0].type == IMAP_ARG_LIST) {
		const struct imap_arg *list = resp->args[0].list;

		for (i = 0; i < resp->args[0].count; i++) {
			if (list[i].type != IMAP_ARG_STREAMED)
				continue;
			CHECK(resp->has_number);
			CHECK(resp->name_len == 5 &&
			      prefix_nocase(resp->name, 5, "FETCH"));
			CHECK(i % 2 == 1 && item_is_body(&list[i - 1]));
		}
	}
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		item = imap_fetch_item(resp, keys[i]);
		if (item == NULL)
			continue;
		CHECK(resp->nargs > 0 && resp->args[0].type == IMAP_ARG_LIST);
		CHECK(item > resp->args[0].list &&
		      item < resp->args[0].list + resp->args[0].count);
		/* Walked above already; this checks the helper's pointer. */
		CHECK(imap_arg_is_atom(item - 1, keys[i]));
		check_number(item);
	}
	CHECK(!imap_arg_is_atom(NULL, "OK"));
	CHECK(imap_arg_number(NULL, &(uint64_t){ 0 }) < 0);
}

/*
 * Feeds stream[0..len) in chunks of sizes taken in turn from sizes (each
 * size byte s gives 1 + s * s / 16 bytes; 255 the rest of the stream);
 * nsizes 0 feeds it whole.
 */
static void
run(const char *stream, size_t len, const unsigned char *sizes,
    size_t nsizes, struct run *r)
{
	struct imap_body_cb cb = {
		.begin = body_begin, .data = body_data, .end = body_end,
		.ctx = r,
	};
	struct imap_parser *p;
	size_t pos = 0, k = 0;

	memset(r, 0, sizeof(*r));
	r->hash = 0xcbf29ce484222325ull;
	p = imap_parse_new(&cb);
	CHECK(p != NULL);
	CHECK(imap_parse_error(p) == NULL);
	while (pos < len && !r->failed) {
		size_t n = len - pos, left, used;
		char *chunk, *at;

		if (nsizes > 0) {
			unsigned s = sizes[k++ % nsizes];

			if (s != 255 && 1 + s * s / 16 < n)
				n = 1 + s * s / 16;
		}
		chunk = xmalloc(n);
		memcpy(chunk, stream + pos, n);
		pos += n;
		at = chunk;
		left = n;
		while (left > 0) {
			struct imap_resp resp;
			int ret;

			used = (size_t)-1;
			ret = imap_parse_feed(p, at, left, &used, &resp);
			CHECK(used <= left);
			if (ret == 1) {
				CHECK(used > 0);
				CHECK(imap_parse_error(p) == NULL);
				walk_resp(r, &resp);
			} else if (ret == 0) {
				CHECK(used == left);
				CHECK(imap_parse_error(p) == NULL);
			} else {
				CHECK(ret == -1);
				CHECK(imap_parse_error(p) != NULL);
				sink = (unsigned char)strlen(imap_parse_error(p));
				/* The parser's self-check: its two tokenizing
				 * passes disagreed on input it had accepted. */
				CHECK(strcmp(imap_parse_error(p),
					     "internal parser inconsistency") != 0);
				r->streamed_n = 0;
				r->streamed_sum = 0;
				r->failed = 1;
				break;
			}
			at += used;
			left -= used;
		}
		free(chunk);
	}
	if (r->failed) {
		struct imap_resp resp;
		size_t used = 1;

		/* Every call after an error fails too. */
		CHECK(imap_parse_feed(p, "* OK\r\n", 6, &used, &resp) == -1);
		CHECK(used == 0);
	}
	hash_u64(r, (uint64_t)r->failed);
	hash_u64(r, (uint64_t)r->in_body);
	hash_u64(r, r->body_seen);
	imap_parse_free(&p);
	CHECK(p == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run chunked, whole;
	size_t nsizes;

	if (size == 0)
		return 0;
	nsizes = data[0] % 8;
	if (size < 1 + nsizes)
		return 0;
	run((const char *)data + 1 + nsizes, size - 1 - nsizes, data + 1,
	    nsizes, &chunked);
	run((const char *)data + 1 + nsizes, size - 1 - nsizes, NULL, 0,
	    &whole);
	CHECK(chunked.responses == whole.responses);
	CHECK(chunked.bodies == whole.bodies);
	CHECK(chunked.failed == whole.failed);
	CHECK(chunked.hash == whole.hash);
	return 0;
}
