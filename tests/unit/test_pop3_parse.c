#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "pop3/pop3_parse.h"

/* --- commands --- */

struct cmd_case {
	const char *line;
	int ret;
	enum pop3_verb verb;
	size_t nargs;
	const char *arg0, *arg1;	/* NULL: not checked */
	const char *why;		/* for ret -1 */
};

static const struct cmd_case cmd_cases[] = {
	{ "USER bob", 0, POP3_USER, 1, "bob", NULL, NULL },
	{ "user Bob Smith", 0, POP3_USER, 1, "Bob Smith", NULL, NULL },
	{ "USER  bob ", 0, POP3_USER, 1, " bob ", NULL, NULL },
	{ "USER", -EBADMSG, POP3_USER, 0, NULL, NULL, "missing argument" },
	{ "USER ", -EBADMSG, POP3_USER, 0, NULL, NULL, "missing argument" },
	{ "PASS secret", 0, POP3_PASS, 1, "secret", NULL, NULL },
	{ "PASS  two  spaces ", 0, POP3_PASS, 1, " two  spaces ", NULL, NULL },
	{ "pass x", 0, POP3_PASS, 1, "x", NULL, NULL },
	{ "PASS", -EBADMSG, POP3_PASS, 0, NULL, NULL, "missing argument" },
	{ "PASS ", -EBADMSG, POP3_PASS, 0, NULL, NULL, "missing argument" },
	{ "APOP mrose c4c9334bac560ecc979e58001b3e22fb", 0, POP3_APOP, 2,
	  "mrose", "c4c9334bac560ecc979e58001b3e22fb", NULL },
	{ "APOP mrose", -EBADMSG, POP3_APOP, 1, NULL, NULL, "missing argument" },
	{ "APOP a b c", -EBADMSG, POP3_APOP, 2, NULL, NULL, "too many arguments" },
	{ "AUTH", 0, POP3_AUTH, 0, NULL, NULL, NULL },
	{ "AUTH PLAIN", 0, POP3_AUTH, 1, "PLAIN", NULL, NULL },
	{ "auth plain AGJvYgBzZWNyZXQ=", 0, POP3_AUTH, 2, "plain",
	  "AGJvYgBzZWNyZXQ=", NULL },
	{ "AUTH PLAIN =", 0, POP3_AUTH, 2, "PLAIN", "=", NULL },
	{ "AUTH PLAIN a b", -EBADMSG, POP3_AUTH, 2, NULL, NULL,
	  "too many arguments" },
	{ "STLS", 0, POP3_STLS, 0, NULL, NULL, NULL },
	{ "stls x", -EBADMSG, POP3_STLS, 0, NULL, NULL, "too many arguments" },
	{ "CAPA", 0, POP3_CAPA, 0, NULL, NULL, NULL },
	{ "Capa", 0, POP3_CAPA, 0, NULL, NULL, NULL },
	{ "QUIT", 0, POP3_QUIT, 0, NULL, NULL, NULL },
	{ "QUIT  ", 0, POP3_QUIT, 0, NULL, NULL, NULL },
	{ "quit now", -EBADMSG, POP3_QUIT, 0, NULL, NULL, "too many arguments" },
	{ "STAT", 0, POP3_STAT, 0, NULL, NULL, NULL },
	{ "LIST", 0, POP3_LIST, 0, NULL, NULL, NULL },
	{ "LIST 1", 0, POP3_LIST, 1, "1", NULL, NULL },
	{ "list\t7\t", 0, POP3_LIST, 1, "7", NULL, NULL },
	{ "LIST 1 2", -EBADMSG, POP3_LIST, 1, NULL, NULL, "too many arguments" },
	{ "RETR 1", 0, POP3_RETR, 1, "1", NULL, NULL },
	{ "RETR  12  ", 0, POP3_RETR, 1, "12", NULL, NULL },
	{ "rEtR x", 0, POP3_RETR, 1, "x", NULL, NULL },
	{ "RETR", -EBADMSG, POP3_RETR, 0, NULL, NULL, "missing argument" },
	{ "RETR ", -EBADMSG, POP3_RETR, 0, NULL, NULL, "missing argument" },
	{ "DELE 3", 0, POP3_DELE, 1, "3", NULL, NULL },
	{ "DELE", -EBADMSG, POP3_DELE, 0, NULL, NULL, "missing argument" },
	{ "DELE 1 2", -EBADMSG, POP3_DELE, 1, NULL, NULL, "too many arguments" },
	{ "NOOP", 0, POP3_NOOP, 0, NULL, NULL, NULL },
	{ "RSET", 0, POP3_RSET, 0, NULL, NULL, NULL },
	{ "TOP 1 10", 0, POP3_TOP, 2, "1", "10", NULL },
	{ "top 1 0 ", 0, POP3_TOP, 2, "1", "0", NULL },
	{ "TOP 1", -EBADMSG, POP3_TOP, 1, NULL, NULL, "missing argument" },
	{ "TOP", -EBADMSG, POP3_TOP, 0, NULL, NULL, "missing argument" },
	{ "TOP 1 2 3", -EBADMSG, POP3_TOP, 2, NULL, NULL, "too many arguments" },
	{ "UIDL", 0, POP3_UIDL, 0, NULL, NULL, NULL },
	{ "UIDL 2", 0, POP3_UIDL, 1, "2", NULL, NULL },
	{ "UIDL 2 3", -EBADMSG, POP3_UIDL, 1, NULL, NULL, "too many arguments" },
	{ "LAST", 0, POP3_LAST, 0, NULL, NULL, NULL },
	{ "XTND XMIT", -EBADMSG, POP3_UNKNOWN, 0, NULL, NULL, "unknown command" },
	{ "QUITX", -EBADMSG, POP3_UNKNOWN, 0, NULL, NULL, "unknown command" },
	{ "QUI", -EBADMSG, POP3_UNKNOWN, 0, NULL, NULL, "unknown command" },
	{ " QUIT", -EBADMSG, POP3_UNKNOWN, 0, NULL, NULL, "empty command" },
	{ "", -EBADMSG, POP3_UNKNOWN, 0, NULL, NULL, "empty command" },
	{ "GET / HTTP/1.1", -EBADMSG, POP3_UNKNOWN, 0, NULL, NULL,
	  "unknown command" },
	{ "RETR 1\r", -EBADMSG, POP3_UNKNOWN, 0, NULL, NULL,
	  "invalid character in command" },
	{ "USER a\rb", -EBADMSG, POP3_UNKNOWN, 0, NULL, NULL,
	  "invalid character in command" },
	/* Exactly POP3_ARG_MAX (40) is fine, one more is not. */
	{ "RETR 1234567890123456789012345678901234567890", 0, POP3_RETR, 1,
	  "1234567890123456789012345678901234567890", NULL, NULL },
	{ "RETR 12345678901234567890123456789012345678901", -EBADMSG, POP3_RETR, 0,
	  NULL, NULL, "argument too long" },
	{ "APOP 12345678901234567890123456789012345678901 x", -EBADMSG, POP3_APOP, 0,
	  NULL, NULL, "argument too long" },
	{ "AUTH X12345678901234567890123456789012345678901", -EBADMSG, POP3_AUTH, 0,
	  NULL, NULL, "argument too long" },
	/* RFC 5034: the initial response is bounded by the line only. */
	{ "AUTH PLAIN AHVzZXJuYW1lLXRoYXQtaXMtcXVpdGUtbG9uZwBhbmQtYS1wYXNzd29y"
	  "ZC10aGF0LWlzLWxvbmdlcg==", 0, POP3_AUTH, 2, "PLAIN", NULL, NULL },
	{ "USER a-user-name-that-is-longer-than-forty-characters@example.org",
	  0, POP3_USER, 1,
	  "a-user-name-that-is-longer-than-forty-characters@example.org",
	  NULL, NULL },
};

static void
assert_arg(const struct pop3_cmd *cmd, size_t i, const char *want,
	   const char *line)
{
	if (want == NULL)
		return;
	cr_assert_eq(cmd->arg_len[i], strlen(want), "%s: arg %zu length",
		     line, i);
	cr_assert(memcmp(cmd->arg[i], want, strlen(want)) == 0,
		  "%s: arg %zu", line, i);
}

Test(pop3_parse, commands)
{
	size_t i;

	for (i = 0; i < sizeof(cmd_cases) / sizeof(cmd_cases[0]); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		struct pop3_cmd cmd;
		const char *why = NULL;
		int r = pop3_parse_command(c->line, strlen(c->line), &cmd,
					   &why);

		cr_assert_eq(r, c->ret, "\"%s\": returned %d (%s)", c->line, r,
			     why ? why : "");
		cr_assert_eq(cmd.verb, c->verb, "\"%s\": verb %d", c->line,
			     cmd.verb);
		if (r < 0) {
			cr_assert_str_eq(why, c->why, "\"%s\"", c->line);
			continue;
		}
		cr_assert_eq(cmd.nargs, c->nargs, "\"%s\": nargs %zu", c->line,
			     cmd.nargs);
		assert_arg(&cmd, 0, c->arg0, c->line);
		assert_arg(&cmd, 1, c->arg1, c->line);
	}
}

Test(pop3_parse, every_verb_in_any_case)
{
	static const struct {
		const char *name;
		enum pop3_verb verb;
		const char *args;
	} v[] = {
		{ "user", POP3_USER, " u" }, { "pass", POP3_PASS, " p" },
		{ "apop", POP3_APOP, " a b" }, { "auth", POP3_AUTH, "" },
		{ "stls", POP3_STLS, "" }, { "capa", POP3_CAPA, "" },
		{ "quit", POP3_QUIT, "" }, { "stat", POP3_STAT, "" },
		{ "list", POP3_LIST, "" }, { "retr", POP3_RETR, " 1" },
		{ "dele", POP3_DELE, " 1" }, { "noop", POP3_NOOP, "" },
		{ "rset", POP3_RSET, "" }, { "top", POP3_TOP, " 1 2" },
		{ "uidl", POP3_UIDL, "" }, { "last", POP3_LAST, "" },
	};
	size_t i, j, n;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		n = strlen(v[i].name);
		/* Every upper/lower case mix of the keyword. */
		for (j = 0; j < (1u << n); j++) {
			char line[32];
			struct pop3_cmd cmd;
			const char *why = NULL;
			size_t k;

			for (k = 0; k < n; k++)
				line[k] = (char)(j & (1u << k)
						     ? v[i].name[k] - 'a' + 'A'
						     : v[i].name[k]);
			strcpy(line + n, v[i].args);
			cr_assert_eq(pop3_parse_command(line, strlen(line),
							&cmd, &why),
				     0, "%s: %s", line, why);
			cr_assert_eq(cmd.verb, v[i].verb, "%s", line);
		}
	}
}

Test(pop3_parse, rest_of_line)
{
	struct pop3_cmd cmd;
	const char *why;
	/* Not NUL-terminated where the parser looks: length is what counts. */
	const char line[] = "PASS pa ss\0word";

	cr_assert_eq(pop3_parse_command(line, 10, &cmd, &why), 0);
	cr_assert_eq(cmd.rest_len, 5);
	cr_assert(memcmp(cmd.rest, "pa ss", 5) == 0);
	cr_assert_eq(cmd.arg[0], cmd.rest);
	cr_assert_eq(pop3_parse_command(line, sizeof(line) - 1, &cmd, &why),
		     -EBADMSG);
	cr_assert_str_eq(why, "invalid character in command");

	cr_assert_eq(pop3_parse_command("AUTH PLAIN xyz", 14, &cmd, &why), 0);
	cr_assert_eq(cmd.rest_len, 9);
	cr_assert(memcmp(cmd.rest, "PLAIN xyz", 9) == 0);
	cr_assert_eq(pop3_parse_command("STAT", 4, &cmd, &why), 0);
	cr_assert_eq(cmd.rest_len, 0);
	cr_assert_eq(cmd.nargs, 0);
}

Test(pop3_parse, pass_with_a_full_length_line)
{
	char line[POP3_LINE_MAX];
	struct pop3_cmd cmd;
	const char *why;

	/* 255 octets with CRLF leave 253 for the line, 248 for the password. */
	memcpy(line, "PASS ", 5);
	memset(line + 5, 'p', 248);
	cr_assert_eq(pop3_parse_command(line, 253, &cmd, &why), 0);
	cr_assert_eq(cmd.arg_len[0], 248);
}

/* --- numbers --- */

Test(pop3_parse, numbers)
{
	static const struct {
		const char *s;
		int ret;
		uint32_t n;
	} c[] = {
		{ "0", 0, 0 },
		{ "1", 0, 1 },
		{ "42", 0, 42 },
		{ "007", 0, 7 },
		{ "0000000001", 0, 1 },
		{ "4294967295", 0, 4294967295u },
		{ "4294967296", -EBADMSG, 0 },
		{ "9999999999", -EBADMSG, 0 },
		{ "00000000001", -EBADMSG, 0 },
		{ "18446744073709551617", -EBADMSG, 0 },
		{ "", -EBADMSG, 0 },
		{ "-1", -EBADMSG, 0 },
		{ "+1", -EBADMSG, 0 },
		{ "1a", -EBADMSG, 0 },
		{ "a1", -EBADMSG, 0 },
		{ " 1", -EBADMSG, 0 },
		{ "1 ", -EBADMSG, 0 },
		{ "0x10", -EBADMSG, 0 },
		{ "1.0", -EBADMSG, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		uint32_t n = 12345;
		int r = pop3_parse_number(c[i].s, strlen(c[i].s), &n);

		cr_assert_eq(r, c[i].ret, "\"%s\"", c[i].s);
		if (r == 0)
			cr_assert_eq(n, c[i].n, "\"%s\"", c[i].s);
		else
			cr_assert_eq(n, 12345, "\"%s\": output touched", c[i].s);
	}
	/* The length bounds the number, not a NUL. */
	{
		uint32_t n;

		cr_assert_eq(pop3_parse_number("12x", 2, &n), 0);
		cr_assert_eq(n, 12);
	}
}

/* --- the line reader --- */

/*
 * Plays the caller: a buffer that holds at most max bytes, fed in chunks,
 * drained with pop3_parse_line until MORE. Events go into ev as
 * "R<len>:<bytes>" for a line and "T" for a line too long.
 */
struct drv {
	struct pop3_line_reader r;
	char *in;
	size_t len;
	struct buf ev;
};

static void
drv_init(struct drv *d, size_t max)
{
	pop3_line_reader_init(&d->r, max);
	d->in = malloc(max);
	cr_assert_not_null(d->in);
	d->len = 0;
	buf_init(&d->ev, 1 << 20);
}

static void
drv_free(struct drv *d)
{
	free(d->in);
	buf_free(&d->ev);
}

static void
drv_drain(struct drv *d)
{
	size_t line_len, used;
	int r;

	for (;;) {
		r = pop3_parse_line(&d->r, d->in, d->len, &line_len, &used);
		cr_assert(used <= d->len);
		if (r == POP3_LINE_READY) {
			cr_assert(line_len < used);
			cr_assert_eq(buf_appendf(&d->ev, "R%zu:", line_len), 0);
			cr_assert_eq(buf_append(&d->ev, d->in, line_len), 0);
		} else if (r == POP3_LINE_TOO_LONG) {
			cr_assert_eq(buf_append(&d->ev, "T", 1), 0);
		} else {
			cr_assert_eq(r, POP3_LINE_MORE);
		}
		memmove(d->in, d->in + used, d->len - used);
		d->len -= used;
		if (r == POP3_LINE_MORE)
			break;
	}
	/* MORE never leaves a complete line behind (a pipelined command would
	 * wait forever), and the caller never needs a fuller buffer. */
	cr_assert(d->len == 0 || memchr(d->in, '\n', d->len) == NULL);
	cr_assert(d->len < d->r.max);
}

static void
drv_feed(struct drv *d, const char *p, size_t n)
{
	while (n > 0) {
		size_t take = d->r.max - d->len;

		if (take > n)
			take = n;
		memcpy(d->in + d->len, p, take);
		d->len += take;
		p += take;
		n -= take;
		drv_drain(d);
	}
}

/* The events for input split at the given positions (sorted, < n). */
static char *
run_split(const char *in, size_t n, size_t max, const size_t *cuts,
	  size_t ncuts, size_t *ev_len_r)
{
	struct drv d;
	size_t i, from = 0;
	char *ev;

	drv_init(&d, max);
	for (i = 0; i < ncuts; i++) {
		drv_feed(&d, in + from, cuts[i] - from);
		from = cuts[i];
	}
	drv_feed(&d, in + from, n - from);
	ev = malloc(d.ev.len + 1);
	cr_assert_not_null(ev);
	if (d.ev.len > 0)
		memcpy(ev, d.ev.data, d.ev.len);
	ev[d.ev.len] = '\0';
	*ev_len_r = d.ev.len;
	drv_free(&d);
	return ev;
}

static void
assert_same_events(const char *a, size_t alen, const char *b, size_t blen,
		   const char *what, size_t at)
{
	cr_assert(alen == blen && memcmp(a, b, alen) == 0,
		  "%s %zu: events differ (%zu vs %zu bytes)", what, at, alen,
		  blen);
}

/*
 * Feeds in whole, split once at every position (or every step-th), split
 * at every two positions step apart, and byte by byte; all must give want.
 */
static void
check_reader(const char *in, size_t n, size_t max, const char *want,
	     size_t want_len, size_t step)
{
	size_t cuts[2], i, ev_len;
	size_t *all;
	char *ev;

	ev = run_split(in, n, max, NULL, 0, &ev_len);
	assert_same_events(ev, ev_len, want, want_len, "whole", 0);
	free(ev);
	for (i = 1; i < n; i += step) {
		cuts[0] = i;
		ev = run_split(in, n, max, cuts, 1, &ev_len);
		assert_same_events(ev, ev_len, want, want_len, "split at", i);
		free(ev);
		if (i + step < n) {
			cuts[1] = i + step;
			ev = run_split(in, n, max, cuts, 2, &ev_len);
			assert_same_events(ev, ev_len, want, want_len,
					   "split twice at", i);
			free(ev);
		}
	}
	all = malloc((n + 1) * sizeof(*all));
	cr_assert_not_null(all);
	for (i = 1; i < n; i++)
		all[i - 1] = i;
	ev = run_split(in, n, max, all, n > 0 ? n - 1 : 0, &ev_len);
	assert_same_events(ev, ev_len, want, want_len, "byte by byte", 0);
	free(ev);
	free(all);
}

#define CHECK(in, want) \
	check_reader(in, sizeof(in) - 1, POP3_LINE_MAX, want, sizeof(want) - 1, 1)

Test(pop3_parse, reader_pipelined_lines)
{
	CHECK("USER bob\r\nPASS x y\r\nSTAT\r\nLIST\r\nRETR 1\r\nQUIT\r\n",
	      "R8:USER bobR8:PASS x yR4:STATR4:LISTR6:RETR 1R4:QUIT");
}

Test(pop3_parse, reader_bare_lf_and_odd_cr)
{
	CHECK("NOOP\nSTAT\r\n\n\r\nA\rB\r\nC\r\r\n\rD\n",
	      "R4:NOOPR4:STATR0:R0:R3:A\rBR2:C\rR2:\rD");
}

Test(pop3_parse, reader_incomplete_tail_waits)
{
	CHECK("CAPA\r\nQUIT", "R4:CAPA");
	CHECK("CAPA\r\nQUIT\r", "R4:CAPA");
	CHECK("", "");
}

/* Builds c repeated n times, then tail; the caller frees. */
static char *
make_line(char c, size_t n, const char *tail, size_t *len_r)
{
	size_t tl = strlen(tail);
	char *s = malloc(n + tl + 1);

	cr_assert_not_null(s);
	memset(s, c, n);
	memcpy(s + n, tail, tl + 1);
	*len_r = n + tl;
	return s;
}

static void
check_limit(size_t chars, const char *end, bool fits)
{
	char want[512];
	size_t len, wl;
	char *in = make_line('x', chars, end, &len);
	char *tail = malloc(len + 16);

	cr_assert_not_null(tail);
	memcpy(tail, in, len);
	memcpy(tail + len, "QUIT\r\n", 6);
	if (fits) {
		wl = (size_t)snprintf(want, sizeof(want), "R%zu:", chars);
		memset(want + wl, 'x', chars);
		wl += chars;
	} else {
		want[0] = 'T';
		wl = 1;
	}
	memcpy(want + wl, "R4:QUIT", 7);
	check_reader(tail, len + 6, POP3_LINE_MAX, want, wl + 7, 1);
	free(in);
	free(tail);
}

Test(pop3_parse, reader_255_octet_boundary)
{
	check_limit(253, "\r\n", true);		/* 255 octets */
	check_limit(254, "\r\n", false);	/* 256 octets */
	check_limit(254, "\n", true);		/* 255 octets */
	check_limit(255, "\n", false);		/* 256 octets */
	check_limit(300, "\r\n", false);
	check_limit(0, "\r\n", true);
}

Test(pop3_parse, reader_long_lines_in_a_row)
{
	size_t len;
	char *a = make_line('a', 600, "\r\n", &len);
	char *in = malloc(2 * len + 32);

	cr_assert_not_null(in);
	memcpy(in, a, len);
	memcpy(in + len, a, len);
	memcpy(in + 2 * len, "NOOP\n", 5);
	check_reader(in, 2 * len + 5, POP3_LINE_MAX, "TTR4:NOOP", 9, 1);
	free(a);
	free(in);
}

Test(pop3_parse, reader_100k_line_is_discarded_once)
{
	size_t len;
	char *in = make_line('z', 100 * 1024, "\r\nQUIT\r\n", &len);

	/* Splitting at every position would be 10^10 steps; every 997th
	 * position covers the buffer-relative cases, byte by byte the rest. */
	check_reader(in, len, POP3_LINE_MAX, "TR4:QUIT", 8, 997);
	free(in);
}

Test(pop3_parse, reader_never_ending_line_is_not_buffered)
{
	struct drv d;
	char chunk[4096];
	int i;

	memset(chunk, 'q', sizeof(chunk));
	drv_init(&d, POP3_LINE_MAX);
	for (i = 0; i < 1000; i++)
		drv_feed(&d, chunk, sizeof(chunk));
	cr_assert_eq(d.ev.len, 0, "nothing reported before the line ends");
	cr_assert(d.len < POP3_LINE_MAX);
	drv_feed(&d, "\nSTAT\r\n", 7);
	cr_assert_eq(d.ev.len, 8);
	cr_assert(memcmp(d.ev.data, "TR4:STAT", 8) == 0);
	drv_free(&d);
}

Test(pop3_parse, reader_direct_results)
{
	struct pop3_line_reader r;
	size_t line_len, used;
	char big[300];

	pop3_line_reader_init(&r, POP3_LINE_MAX);
	cr_assert_eq(pop3_parse_line(&r, "", 0, &line_len, &used),
		     POP3_LINE_MORE);
	cr_assert_eq(used, 0);
	cr_assert_eq(pop3_parse_line(&r, "STAT\r\nQUIT\r\n", 12, &line_len,
				     &used), POP3_LINE_READY);
	cr_assert_eq(line_len, 4);
	cr_assert_eq(used, 6);

	/* A full buffer without LF: consumed, nothing reported yet. */
	memset(big, 'b', sizeof(big));
	cr_assert_eq(pop3_parse_line(&r, big, 255, &line_len, &used),
		     POP3_LINE_MORE);
	cr_assert_eq(used, 255);
	cr_assert_eq(r.discarding, 1);
	cr_assert_eq(pop3_parse_line(&r, "bb\r\nNOOP\r\n", 10, &line_len,
				     &used), POP3_LINE_TOO_LONG);
	cr_assert_eq(used, 4);
	cr_assert_eq(r.discarding, 0);
	cr_assert_eq(pop3_parse_line(&r, "NOOP\r\n", 6, &line_len, &used),
		     POP3_LINE_READY);

	/* The whole long line at once: reported at once. */
	big[299] = '\n';
	cr_assert_eq(pop3_parse_line(&r, big, 300, &line_len, &used),
		     POP3_LINE_TOO_LONG);
	cr_assert_eq(used, 300);
	cr_assert_eq(r.discarding, 0);
}

Test(pop3_parse, reader_auth_bound)
{
	size_t len;
	char *ok = make_line('A', POP3_AUTH_LINE_MAX - 2, "\r\n=\r\n", &len);
	char want[32];

	snprintf(want, sizeof(want), "R%d:", POP3_AUTH_LINE_MAX - 2);
	{
		struct drv d;

		drv_init(&d, POP3_AUTH_LINE_MAX);
		drv_feed(&d, ok, len);
		cr_assert_eq(d.ev.len, strlen(want) + POP3_AUTH_LINE_MAX - 2 +
					       4);
		cr_assert(memcmp(d.ev.data, want, strlen(want)) == 0);
		cr_assert(memcmp(d.ev.data + d.ev.len - 4, "R1:=", 4) == 0);
		drv_free(&d);
	}
	free(ok);
	ok = make_line('A', POP3_AUTH_LINE_MAX - 1, "\r\n*\r\n", &len);
	check_reader(ok, len, POP3_AUTH_LINE_MAX, "TR1:*", 5, 1009);
	free(ok);
}
