#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "util/buf.h"

Test(buf, append_and_consume)
{
	struct buf b;

	buf_init(&b, 1024);
	cr_assert_eq(buf_append(&b, "hello ", 6), 0);
	cr_assert_eq(buf_appendf(&b, "%s %d", "world", 42), 0);
	cr_assert_eq(b.len, 14);
	cr_assert_eq(memcmp(b.data, "hello world 42", 14), 0);
	buf_consume(&b, 6);
	cr_assert_eq(b.len, 8);
	cr_assert_eq(memcmp(b.data, "world 42", 8), 0);
	buf_free(&b);
}

Test(buf, hard_maximum)
{
	struct buf b;
	char big[100];

	memset(big, 'x', sizeof(big));
	buf_init(&b, 150);
	cr_assert_eq(buf_append(&b, big, 100), 0);
	cr_assert_eq(buf_append(&b, big, 51), -ENOBUFS);
	cr_assert_eq(buf_append(&b, big, 50), 0);
	cr_assert_eq(b.len, 150);
	cr_assert_eq(buf_appendf(&b, "x"), -ENOBUFS);
	cr_assert(b.cap <= 150);
	buf_wipe(&b);
	cr_assert_eq(b.len, 0);
	buf_free(&b);
}

static int
parse(const char *s, uint64_t max, uint64_t *v)
{
	return buf_parse_u64(s, strlen(s), max, v);
}

Test(buf, decimal_round_trip_and_limits)
{
	char text[21], *end;
	uint64_t v = 99;

	cr_assert_eq(parse("0", UINT64_MAX, &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(parse("007", UINT64_MAX, &v), 0);
	cr_assert_eq(v, 7);
	cr_assert_eq(parse("4294967295", UINT32_MAX, &v), 0);
	cr_assert_eq(v, UINT32_MAX);
	cr_assert_eq(parse("18446744073709551615", UINT64_MAX, &v), 0);
	cr_assert_eq(v, UINT64_MAX);
	v = 5;
	cr_assert_eq(parse("", UINT64_MAX, &v), -EBADMSG);
	cr_assert_eq(parse("1a", UINT64_MAX, &v), -EBADMSG);
	cr_assert_eq(parse("-1", UINT64_MAX, &v), -EBADMSG);
	cr_assert_eq(parse(" 1", UINT64_MAX, &v), -EBADMSG);
	cr_assert_eq(parse("4294967296", UINT32_MAX, &v), -EBADMSG);
	cr_assert_eq(parse("18446744073709551616", UINT64_MAX, &v), -EBADMSG);
	cr_assert_eq(parse("100", 99, &v), -EBADMSG);
	cr_assert_eq(v, 5, "a failed parse leaves the value alone");
	end = buf_put_u64(text, UINT64_MAX - 1);
	cr_assert_eq(buf_parse_u64(text, (size_t)(end - text), UINT64_MAX, &v),
		     0);
	cr_assert_eq(v, UINT64_MAX - 1);
}

Test(buf, put_hex)
{
	static const unsigned char b[] = { 0x00, 0x0f, 0xa5, 0xff };
	char out[16];

	*buf_put_hex(out, b, sizeof(b)) = '\0';
	cr_assert_str_eq(out, "000fa5ff");
	cr_assert_eq(buf_put_hex(out, b, 0), out);
}

Test(buf, truncate_wipes_what_it_drops)
{
	struct buf b;
	char *p;

	buf_init_secret(&b, 64);
	cr_assert_eq(buf_append_str(&b, "keep:secret"), 0);
	p = b.data;
	buf_truncate(&b, 5);
	cr_assert_eq(b.len, 5);
	cr_assert(memcmp(p, "keep:", 5) == 0);
	cr_assert(memcmp(p + 5, "\0\0\0\0\0\0", 6) == 0);
	buf_truncate(&b, 9);		/* longer than the contents: nothing */
	cr_assert_eq(b.len, 5);
	buf_free(&b);
}
