#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "buf.h"

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
