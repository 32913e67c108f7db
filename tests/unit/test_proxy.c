#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "net/proxy.h"

/* Feeds the input growing one byte at a time: MORE until complete. */
static int
parse_growing(const unsigned char *in, size_t len, size_t *used,
	      struct proxy_info *info)
{
	const char *why;
	size_t i;
	int r = 0;

	for (i = 1; i <= len; i++) {
		r = proxy_parse(in, i, used, info, &why);
		if (r != 0)
			break;
	}
	return r;
}

Test(proxy, v1_tcp4_and_tcp6)
{
	const char *in = "PROXY TCP4 192.0.2.7 198.51.100.1 51234 110\r\nUSER x\r\n";
	struct proxy_info info;
	size_t used;

	cr_assert_eq(parse_growing((const unsigned char *)in, strlen(in),
				   &used, &info), 1);
	cr_assert_eq(used, strlen("PROXY TCP4 192.0.2.7 198.51.100.1 51234 110\r\n"));
	cr_assert_str_eq(info.addr, "192.0.2.7");
	cr_assert_eq(info.port, 51234);
	cr_assert_not(info.local);

	in = "PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
	cr_assert_eq(parse_growing((const unsigned char *)in, strlen(in),
				   &used, &info), 1);
	cr_assert_str_eq(info.addr, "2001:db8::1");
	in = "PROXY UNKNOWN\r\n";
	cr_assert_eq(parse_growing((const unsigned char *)in, strlen(in),
				   &used, &info), 1);
	cr_assert(info.local);
}

Test(proxy, v1_rejects_garbage)
{
	static const char *bad[] = {
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
		"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
		"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
		"USER alice\r\n",
	};
	struct proxy_info info;
	const char *why;
	size_t used, i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(proxy_parse((const unsigned char *)bad[i],
					 strlen(bad[i]), &used, &info, &why),
			     -EPROTO, "%s", bad[i]);
		cr_assert_not_null(why);
	}
}

Test(proxy, v1_line_never_ending_is_bounded)
{
	unsigned char in[300];
	struct proxy_info info;
	const char *why;
	size_t used;

	memset(in, 'A', sizeof(in));
	memcpy(in, "PROXY ", 6);
	cr_assert_eq(proxy_parse(in, sizeof(in), &used, &info, &why), -EPROTO);
}

static size_t
v2_header(unsigned char *b, unsigned char cmd, unsigned char fam,
	  const unsigned char *addr, size_t alen)
{
	static const unsigned char sig[12] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51,
		0x55, 0x49, 0x54, 0x0a,
	};

	memcpy(b, sig, 12);
	b[12] = (unsigned char)(0x20 | cmd);
	b[13] = fam;
	b[14] = (unsigned char)(alen >> 8);
	b[15] = (unsigned char)alen;
	memcpy(b + 16, addr, alen);
	return 16 + alen;
}

Test(proxy, v2_ipv4_ipv6_local)
{
	unsigned char b[128], a4[12 + 5] = {
		203, 0, 113, 9, 10, 0, 0, 1, 0xc3, 0x50, 0, 110,
		/* a TLV that is ignored */ 0x04, 0, 2, 'x', 'y',
	};
	unsigned char a6[36];
	struct proxy_info info;
	size_t n, used;

	n = v2_header(b, 1, 0x11, a4, sizeof(a4));
	cr_assert_eq(parse_growing(b, n, &used, &info), 1);
	cr_assert_eq(used, n);
	cr_assert_str_eq(info.addr, "203.0.113.9");
	cr_assert_eq(info.port, 50000);

	memset(a6, 0, sizeof(a6));
	a6[0] = 0x20;
	a6[1] = 0x01;
	a6[15] = 5;
	n = v2_header(b, 1, 0x21, a6, sizeof(a6));
	cr_assert_eq(parse_growing(b, n, &used, &info), 1);
	cr_assert_str_eq(info.addr, "2001::5");

	n = v2_header(b, 0, 0x00, a6, 0);
	cr_assert_eq(parse_growing(b, n, &used, &info), 1);
	cr_assert(info.local);
}

Test(proxy, v2_rejects_bad_version_and_short_blocks)
{
	unsigned char b[128], a[12] = { 0 };
	struct proxy_info info;
	const char *why;
	size_t n, used;

	n = v2_header(b, 1, 0x11, a, 8);
	cr_assert_eq(proxy_parse(b, n, &used, &info, &why), -EPROTO);
	n = v2_header(b, 1, 0x11, a, 12);
	b[12] = 0x31;
	cr_assert_eq(proxy_parse(b, n, &used, &info, &why), -EPROTO);
	n = v2_header(b, 1, 0x11, a, 12);
	b[14] = 0xff;
	cr_assert_eq(proxy_parse(b, n, &used, &info, &why), -EPROTO);
}
