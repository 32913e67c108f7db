#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "util/base64.h"

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
check_encode(const char *in, const char *want)
{
	struct buf b;

	buf_init(&b, 1024);
	cr_assert_eq(base64_encode(&b, in, strlen(in)), 0);
	cr_assert_eq(b.len, strlen(want), "encode %s", in);
	cr_assert(b.len == 0 || memcmp(b.data, want, b.len) == 0);
	buf_free(&b);
}

static int
decode(const char *s, size_t n, struct buf *b)
{
	buf_init(b, 1024);
	return base64_decode(b, s, n);
}

static void
check_decode(const char *in, const char *want)
{
	struct buf b;

	cr_assert_eq(decode(in, strlen(in), &b), 0, "decode %s", in);
	cr_assert_eq(b.len, strlen(want));
	cr_assert(b.len == 0 || memcmp(b.data, want, b.len) == 0);
	buf_free(&b);
}

static void
check_reject(const char *in, size_t n)
{
	struct buf b;

	buf_init(&b, 1024);
	cr_assert_eq(buf_append(&b, "keep", 4), 0);
	cr_assert_eq(base64_decode(&b, in, n), -EINVAL, "accepted %.*s",
		     (int)n, in);
	cr_assert_eq(b.len, 4, "output changed on error");
	cr_assert_eq(memcmp(b.data, "keep", 4), 0);
	buf_free(&b);
}

#define REJECT(s) check_reject(s, sizeof(s) - 1)

Test(base64, rfc4648_vectors)
{
	static const char *const v[][2] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" },
		{ "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		check_encode(v[i][0], v[i][1]);
		check_decode(v[i][1], v[i][0]);
	}
}

Test(base64, sasl_plain_with_nuls)
{
	const char plain[] = "\0user\0pa\xffss";
	struct buf b, d;

	buf_init(&b, 1024);
	cr_assert_eq(base64_encode(&b, plain, sizeof(plain) - 1), 0);
	cr_assert_eq(b.len, 16);
	cr_assert_eq(memcmp(b.data, "AHVzZXIAcGH/c3M=", 16), 0);
	cr_assert_eq(decode(b.data, b.len, &d), 0);
	cr_assert_eq(d.len, sizeof(plain) - 1);
	cr_assert_eq(memcmp(d.data, plain, d.len), 0);
	buf_free(&b);
	buf_free(&d);
}

Test(base64, round_trip_all_lengths_and_bytes)
{
	unsigned char in[600];
	struct buf e, d;
	size_t n, i;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 167 + 13);
	for (n = 0; n <= sizeof(in); n++) {
		buf_init(&e, 4096);
		cr_assert_eq(base64_encode(&e, in, n), 0);
		cr_assert_eq(e.len, (n + 2) / 3 * 4);
		for (i = 0; i < e.len; i++)
			cr_assert(strchr(alphabet, e.data[i]) != NULL ||
				  (e.data[i] == '=' && i >= e.len - 2));
		cr_assert_eq(decode(e.data, e.len, &d), 0);
		cr_assert_eq(d.len, n);
		cr_assert(n == 0 || memcmp(d.data, in, n) == 0);
		buf_free(&e);
		buf_free(&d);
	}
}

Test(base64, rejects_malformed)
{
	REJECT("Z");
	REJECT("Zg");
	REJECT("Zg=");
	REJECT("Zm9vY");
	REJECT("====");
	REJECT("Z===");
	REJECT("=g==");
	REJECT("Zg=a");
	REJECT("Z=g=");
	REJECT("Zg==Zg==");
	REJECT("Zm8=Zm9v");
	REJECT("Zm9*");
	REJECT("Zm-_");
	REJECT("Zm9v\n");
	REJECT("Zm9\n");
	REJECT(" Zm9");
	REJECT("Zm9v Zm9");
	REJECT("Zm\0v");
	REJECT("Zm9\xc3");
	REJECT("Zh==");
	REJECT("Zm9=");
	REJECT("Zm/=");
}

Test(base64, every_byte_in_every_position)
{
	const char good[] = "Zm9vYmFy";
	char s[9];
	struct buf b;
	unsigned c;
	size_t i;
	int r;

	for (i = 0; i < 8; i++) {
		for (c = 0; c <= 0xff; c++) {
			memcpy(s, good, 8);
			s[i] = (char)c;
			buf_init(&b, 64);
			r = base64_decode(&b, s, 8);
			if (c != 0 && strchr(alphabet, (int)c) != NULL)
				cr_assert_eq(r, 0);
			else
				cr_assert_eq(r, -EINVAL, "%u at %zu", c, i);
			buf_free(&b);
		}
	}
}

Test(base64, only_canonical_padding_bits)
{
	struct buf b;
	unsigned c;
	char s[5];
	int r;

	/* "Zg==" encodes "f"; of the 64 last digits only those with the
	 * four unused bits zero are accepted. */
	for (c = 0; c < 64; c++) {
		memcpy(s, "Zg==", 4);
		s[1] = alphabet[c];
		r = decode(s, 4, &b);
		cr_assert_eq(r, c % 16 == 0 ? 0 : -EINVAL, "digit %c", s[1]);
		buf_free(&b);
		memcpy(s, "Zm8=", 4);
		s[2] = alphabet[c];
		r = decode(s, 4, &b);
		cr_assert_eq(r, c % 4 == 0 ? 0 : -EINVAL, "digit %c", s[2]);
		buf_free(&b);
	}
}

Test(base64, appends_and_respects_limit)
{
	struct buf b;

	buf_init(&b, 10);
	cr_assert_eq(buf_append(&b, "ab", 2), 0);
	cr_assert_eq(base64_encode(&b, "foo", 3), 0);
	cr_assert_eq(b.len, 6);
	cr_assert_eq(memcmp(b.data, "abZm9v", 6), 0);
	cr_assert_eq(base64_encode(&b, "foob", 4), -ENOBUFS);
	cr_assert_eq(b.len, 6);
	cr_assert_eq(base64_decode(&b, "Zm9vYmFy", 8), -ENOBUFS);
	cr_assert_eq(b.len, 6);
	cr_assert_eq(base64_decode(&b, "Zm8=", 4), 0);
	cr_assert_eq(b.len, 8);
	cr_assert_eq(memcmp(b.data, "abZm9vfo", 8), 0);
	cr_assert_eq(base64_decode(&b, "", 0), 0);
	cr_assert_eq(base64_encode(&b, "", 0), 0);
	cr_assert_eq(b.len, 8);
	cr_assert_eq(base64_decode(&b, "Zm8=", 4), 0);
	cr_assert_eq(b.len, 10);
	cr_assert_eq(base64_decode(&b, "Zg==", 4), -ENOBUFS);
	buf_free(&b);
}
