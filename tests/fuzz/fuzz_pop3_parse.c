/*
 * libFuzzer target for include/pop3_parse.h.
 *
 * Input: one header byte h, then (h % 8) chunk-size bytes (used in turn,
 * each giving a chunk of 1 to 256 bytes; 1 to 16,257 in the AUTH pass),
 * then the stream.
 * The stream goes through a line reader the way pop3_server uses one: it is
 * appended chunk by chunk to a buffer that never holds more than max bytes
 * once the reader has said MORE. Every line goes to pop3_parse_command and
 * every argument to pop3_parse_number. The events (lines, too-long lines)
 * must be the same whatever the chunking, so the stream is also read whole
 * and the two runs compared. A second pass uses POP3_AUTH_LINE_MAX and the
 * stream repeated (h / 8 % 8) + 1 times, so that lines longer than the
 * input can arrive.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/pop3_parse.h"
#include "fuzz_common.h"

/* FNV-1a over the event sequence, compared between chunkings. */
struct events {
	uint64_t hash;
	size_t lines;
	size_t too_long;
};

static volatile unsigned char sink;

static void
hash_bytes(struct events *e, const void *p, size_t n)
{
	fnv1a(&e->hash, p, n);
}

/* Reads every byte so ASan sees a pointer that leaves the line. */
NO_COVERAGE static void
touch(const char *p, size_t n)
{
	size_t i;
	unsigned char acc = 0;

	for (i = 0; i < n; i++)
		acc ^= (unsigned char)p[i];
	sink = acc;
}

static int
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static void
check_number(const char *s, size_t len)
{
	uint32_t n = 0;
	uint64_t v = 0;
	size_t i;
	int ok = len >= 1 && len <= 10;

	for (i = 0; ok && i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			ok = 0;
		else
			v = v * 10 + (uint64_t)(s[i] - '0');
	}
	ok = ok && v <= UINT32_MAX;
	if (pop3_parse_number(s, len, &n) == 0) {
		CHECK(ok);
		CHECK(n == v);
	} else {
		CHECK(!ok);
	}
}

static int
within(const char *p, size_t n, const char *line, size_t len)
{
	return p >= line && p <= line + len && n <= (size_t)(line + len - p);
}

/* line is a heap copy of exactly len bytes, so reads past it are caught. */
static void
check_command(const char *line, size_t len)
{
	struct pop3_cmd cmd;
	const char *why = NULL;
	size_t i, j;

	if (pop3_parse_command(line, len, &cmd, &why) < 0) {
		CHECK(why != NULL);
		touch(why, strlen(why));
		CHECK(cmd.verb >= POP3_UNKNOWN && cmd.verb <= POP3_LAST);
		return;
	}
	CHECK(cmd.verb > POP3_UNKNOWN && cmd.verb <= POP3_LAST);
	CHECK(memchr(line, '\0', len) == NULL);
	CHECK(memchr(line, '\r', len) == NULL);
	CHECK(cmd.nargs <= 2);
	CHECK(cmd.rest != NULL);
	CHECK(within(cmd.rest, cmd.rest_len, line, len));
	/* The rest runs to the end of the line. */
	CHECK(cmd.rest + cmd.rest_len == line + len);
	touch(cmd.rest, cmd.rest_len);
	for (i = 0; i < cmd.nargs; i++) {
		CHECK(cmd.arg[i] != NULL);
		CHECK(cmd.arg_len[i] > 0);
		CHECK(within(cmd.arg[i], cmd.arg_len[i], line, len));
		touch(cmd.arg[i], cmd.arg_len[i]);
		check_number(cmd.arg[i], cmd.arg_len[i]);
		if (cmd.verb == POP3_USER || cmd.verb == POP3_PASS)
			continue;
		if (!(cmd.verb == POP3_AUTH && i == 1))
			CHECK(cmd.arg_len[i] <= POP3_ARG_MAX);
		for (j = 0; j < cmd.arg_len[i]; j++)
			CHECK(!is_blank(cmd.arg[i][j]));
	}
	if (cmd.verb == POP3_USER || cmd.verb == POP3_PASS) {
		CHECK(cmd.nargs == 1);
		CHECK(cmd.arg[0] == cmd.rest && cmd.arg_len[0] == cmd.rest_len);
	}
	if (cmd.nargs == 2)
		CHECK(cmd.arg[1] >= cmd.arg[0] + cmd.arg_len[0]);
}

static void
on_line(struct events *e, const char *data, size_t line_len)
{
	char *copy = xmalloc(line_len);

	memcpy(copy, data, line_len);
	CHECK(memchr(copy, '\n', line_len) == NULL);
	check_command(copy, line_len);
	free(copy);
	e->lines++;
	hash_bytes(e, "L", 1);
	hash_bytes(e, &line_len, sizeof(line_len));
	hash_bytes(e, data, line_len);
}

/*
 * Feeds stream[0..len) in chunks; sizes[0..nsizes) are used in turn (0 of
 * them: all at once). The pending buffer holds what the reader has not
 * consumed, as a session's input buffer would.
 */
static size_t
chunk_size(size_t max, unsigned char s)
{
	/* Fine-grained near POP3_LINE_MAX; coarser for the AUTH bound, where
	 * byte-sized chunks of a 32 KB stream would only slow the fuzzer. */
	return max <= POP3_LINE_MAX ? (size_t)s + 1 : 1 + (size_t)s * s / 4;
}

static void
run(size_t max, const char *stream, size_t len, const unsigned char *sizes,
    size_t nsizes, struct events *e)
{
	struct pop3_line_reader r;
	size_t chunk_max = 0, i, pos = 0, plen = 0, k = 0;
	char *pending;

	for (i = 0; i < nsizes; i++) {
		if (chunk_size(max, sizes[i]) > chunk_max)
			chunk_max = chunk_size(max, sizes[i]);
	}
	if (nsizes == 0)
		chunk_max = len;
	pending = xmalloc(max + chunk_max);
	memset(e, 0, sizeof(*e));
	e->hash = 0xcbf29ce484222325ull;
	pop3_line_reader_init(&r, max);
	CHECK(r.max == max && r.discarding == 0);
	while (pos < len) {
		size_t n = nsizes == 0 ? len
				      : chunk_size(max, sizes[k++ % nsizes]);
		char *buf;

		if (n > len - pos)
			n = len - pos;
		CHECK(plen < max);
		memcpy(pending + plen, stream + pos, n);
		pos += n;
		plen += n;
		/* An exact-size copy, so the reader cannot look past it. */
		buf = xmalloc(plen);
		memcpy(buf, pending, plen);
		i = 0;
		for (;;) {
			size_t line_len = 99, used = 99;
			int ret = pop3_parse_line(&r, buf + i, plen - i,
						  &line_len, &used);

			CHECK(used <= plen - i);
			if (ret == POP3_LINE_READY) {
				CHECK(used > 0);
				CHECK(line_len <= used);
				CHECK(line_len < max);
				CHECK(used <= max);
				CHECK(buf[i + used - 1] == '\n');
				CHECK(used == line_len + 1 ||
				      (used == line_len + 2 &&
				       buf[i + line_len] == '\r'));
				on_line(e, buf + i, line_len);
				i += used;
			} else if (ret == POP3_LINE_TOO_LONG) {
				CHECK(used > 0);
				CHECK(line_len == 0);
				CHECK(buf[i + used - 1] == '\n');
				CHECK(memchr(buf + i, '\n', used - 1) == NULL);
				e->too_long++;
				hash_bytes(e, "T", 1);
				i += used;
			} else {
				CHECK(ret == POP3_LINE_MORE);
				CHECK(line_len == 0);
				i += used;
				/* MORE leaves no complete line behind. */
				CHECK(memchr(buf + i, '\n', plen - i) == NULL);
				break;
			}
		}
		/* The caller never holds more than max bytes. */
		CHECK(plen - i < max);
		memmove(pending, buf + i, plen - i);
		plen -= i;
		free(buf);
	}
	free(pending);
}

static void
pass(size_t max, const char *stream, size_t len, const unsigned char *sizes,
     size_t nsizes)
{
	struct events chunked, whole;

	run(max, stream, len, sizes, nsizes, &chunked);
	run(max, stream, len, NULL, 0, &whole);
	CHECK(chunked.lines == whole.lines);
	CHECK(chunked.too_long == whole.too_long);
	CHECK(chunked.hash == whole.hash);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *sizes;
	size_t nsizes, reps, len, i;
	char *stream, *copy;

	if (size == 0)
		return 0;
	nsizes = data[0] % 8;
	reps = (size_t)(data[0] / 8 % 8) + 1;
	if (size < 1 + nsizes)
		return 0;
	sizes = data + 1;
	len = size - 1 - nsizes;

	stream = xmalloc(len * reps);
	for (i = 0; i < reps; i++)
		memcpy(stream + i * len, data + 1 + nsizes, len);

	pass(POP3_LINE_MAX, stream, len, sizes, nsizes);
	pass(POP3_AUTH_LINE_MAX, stream, len * reps, sizes, nsizes);

	/* The whole stream as one line, CRLF and all. */
	copy = xmalloc(len);
	memcpy(copy, stream, len);
	check_command(copy, len);
	free(copy);
	free(stream);
	return 0;
}
