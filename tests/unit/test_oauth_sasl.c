/* oauth/sasl: OAUTHBEARER (RFC 7628 §4) and XOAUTH2 responses, the error
 * challenge. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "oauth/sasl.h"

static void
want(const struct buf *b, const char *s, size_t n)
{
	cr_assert_eq(b->len, n, "length %zu, want %zu: %.*s", b->len, n,
		     (int)b->len, b->data);
	cr_assert_eq(memcmp(b->data, s, n), 0, "got %.*s", (int)b->len, b->data);
}

#define WANT(b, lit) want(b, lit, sizeof(lit) - 1)

Test(oauth_sasl, pick_prefers_oauthbearer)
{
	cr_expect_eq(oauth_sasl_pick(true, true), OAUTH_MECH_OAUTHBEARER);
	cr_expect_eq(oauth_sasl_pick(true, false), OAUTH_MECH_OAUTHBEARER);
	cr_expect_eq(oauth_sasl_pick(false, true), OAUTH_MECH_XOAUTH2);
	cr_expect_eq(oauth_sasl_pick(false, false), OAUTH_MECH_NONE);
	cr_expect_str_eq(oauth_sasl_name(OAUTH_MECH_OAUTHBEARER), "OAUTHBEARER");
	cr_expect_str_eq(oauth_sasl_name(OAUTH_MECH_XOAUTH2), "XOAUTH2");
	cr_expect_str_eq(oauth_sasl_name(OAUTH_MECH_NONE), "");
}

Test(oauth_sasl, rfc7628_example)
{
	const char tok[] = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";
	struct buf b;

	buf_init_secret(&b, 65536);
	cr_assert_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "user@example.com",
					 "server.example.com", 143, tok, sizeof(tok) - 1), 0);
	WANT(&b, "n,a=user@example.com,\1host=server.example.com\1port=143\1"
		 "auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\1\1");
	buf_reset(&b);
	cr_assert_eq(oauth_sasl_response_b64(&b, OAUTH_MECH_OAUTHBEARER, "user@example.com",
					     "server.example.com", 143, tok, sizeof(tok) - 1), 0);
	WANT(&b, "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQz"
		 "AWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB");
	buf_free(&b);
}

Test(oauth_sasl, xoauth2_google_example)
{
	const char tok[] = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg";
	struct buf b;

	buf_init_secret(&b, 65536);
	cr_assert_eq(oauth_sasl_response_b64(&b, OAUTH_MECH_XOAUTH2, "someuser@example.com",
					     "imap.gmail.com", 993, tok, sizeof(tok) - 1), 0);
	WANT(&b, "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRx"
		 "bVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==");
	buf_free(&b);
}

Test(oauth_sasl, saslname_escapes_and_optional_parts)
{
	struct buf b;

	buf_init_secret(&b, 65536);
	cr_assert_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "a,b=c", NULL, 0,
					 "t0k", 3), 0);
	WANT(&b, "n,a=a=2Cb=3Dc,\1auth=Bearer t0k\1\1");
	buf_reset(&b);
	cr_assert_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "j\xc3\xb6rg", "h", 0,
					 "t", 1), 0);
	WANT(&b, "n,a=j\xc3\xb6rg,\1host=h\1auth=Bearer t\1\1");
	buf_free(&b);
}

Test(oauth_sasl, refuses_what_would_break_the_framing)
{
	static char huge[OAUTH_TOKEN_MAX + 2];
	struct buf b;

	buf_init_secret(&b, 65536);
	cr_assert_eq(buf_append_str(&b, "keep"), 0);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "u\1x", "h", 1, "t", 1), -EINVAL);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_XOAUTH2, "u\r\nA LOGOUT", "h", 1, "t", 1), -EINVAL);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "", "h", 1, "t", 1), -EINVAL);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "u", "h\1port=1", 1, "t", 1), -EINVAL);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "u", "h,x", 1, "t", 1), -EINVAL);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "u", "h", 70000, "t", 1), -EINVAL);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "u", "h", 1, "t\1x", 3), -EINVAL);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "u", "h", 1, "t x", 3), -EINVAL);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "u", "h", 1, "", 0), -EINVAL);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_NONE, "u", "h", 1, "t", 1), -EINVAL);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, NULL, "h", 1, "t", 1), -EINVAL);
	memset(huge, 'a', sizeof(huge));
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "u", "h", 1, huge,
					 OAUTH_TOKEN_MAX + 1), -EINVAL);
	cr_expect_eq(oauth_sasl_response_b64(&b, OAUTH_MECH_XOAUTH2, "u\1", "h", 1, "t", 1), -EINVAL);
	WANT(&b, "keep");
	buf_free(&b);
	/* A buffer that is too small keeps what it had. */
	buf_init_secret(&b, 30);
	cr_assert_eq(buf_append_str(&b, "keep"), 0);
	cr_expect_eq(oauth_sasl_response(&b, OAUTH_MECH_OAUTHBEARER, "user", "host", 993,
					 "abcdefghij", 10), -ENOBUFS);
	WANT(&b, "keep");
	buf_free(&b);
}

Test(oauth_sasl, the_largest_token_fits)
{
	static char tok[OAUTH_TOKEN_MAX];
	struct buf b;

	memset(tok, 'A', sizeof(tok));
	buf_init_secret(&b, 64 * 1024);
	cr_assert_eq(oauth_sasl_response_b64(&b, OAUTH_MECH_OAUTHBEARER, "u@example.com",
					     "imap.example.com", 993, tok, sizeof(tok)), 0);
	cr_expect_lt(b.len, 16 * 1024 + 1024, "inside SPEC's AUTH line bound");
	buf_free(&b);
}

Test(oauth_sasl, error_challenge)
{
	const char ch[] = "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3Bl"
			  "bmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29w"
			  "ZW5pZC1jb25maWd1cmF0aW9uIn0=";
	struct oauth_sasl_error e;

	cr_assert_eq(oauth_sasl_parse_error(ch, sizeof(ch) - 1, &e), 0);
	cr_expect_str_eq(e.status, "invalid_token");
	cr_expect_str_eq(e.scope, "example_scope");
	cr_expect_str_eq(e.config, "https://example.com/.well-known/openid-configuration");
	cr_expect_str_eq(oauth_sasl_error_reply(OAUTH_MECH_OAUTHBEARER), "AQ==");
	cr_expect_str_eq(oauth_sasl_error_reply(OAUTH_MECH_XOAUTH2), "");
}

Test(oauth_sasl, error_challenge_odd_forms)
{
	struct oauth_sasl_error e;
	/* {"status":"400","schemes":"Bearer"} (Google's XOAUTH2) */
	const char google[] = "eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIn0=";
	/* {"status":401,"scope":"a\u001bb"} */
	const char odd[] = "eyJzdGF0dXMiOjQwMSwic2NvcGUiOiJhXHUwMDFiYiJ9";

	cr_assert_eq(oauth_sasl_parse_error(google, sizeof(google) - 1, &e), 0);
	cr_expect_str_eq(e.status, "400");
	cr_expect_str_eq(e.scope, "");
	cr_assert_eq(oauth_sasl_parse_error(odd, sizeof(odd) - 1, &e), 0);
	cr_expect_str_eq(e.status, "401");
	cr_expect_str_eq(e.scope, "a?b");
	cr_expect_eq(oauth_sasl_parse_error("!!!!", 4, &e), -EBADMSG);
	cr_expect_eq(oauth_sasl_parse_error("", 0, &e), -EBADMSG);
	cr_expect_eq(oauth_sasl_parse_error("bm90IGpzb24=", 12, &e), -EBADMSG);	/* "not json" */
	cr_expect_eq(oauth_sasl_parse_error("WzFd", 4, &e), -EBADMSG);		/* [1] */
	cr_expect_str_eq(e.status, "");
}
