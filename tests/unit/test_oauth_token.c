/* oauth/token: forms, PKCE (RFC 7636 Appendix B), token and device answers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oauth/token.h"

static const struct oauth_client client = {
	.token_url = "https://login.example.com/token",
	.client_id = "popbridge-test",
	.client_secret = "s3cr&t=",
	.scope = "openid offline_access imap",
};

static const struct oauth_client public_client = {
	.token_url = "https://login.example.com/token",
	.client_id = "pub",
	.scope = "imap",
};

static void
want_buf(const struct buf *b, const char *want)
{
	cr_assert_eq(b->len, strlen(want), "got %.*s", (int)b->len, b->data);
	cr_assert_eq(memcmp(b->data, want, b->len), 0, "got %.*s", (int)b->len,
		     b->data);
}

#define PARSE(status, json, r) oauth_parse_token(status, json, strlen(json), r)

Test(oauth_pkce, rfc7636_appendix_b)
{
	const char v[] = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
	char ch[OAUTH_CHALLENGE_LEN + 1];

	cr_assert_eq(oauth_pkce_challenge(v, sizeof(v) - 1, ch), 0);
	cr_expect_str_eq(ch, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
}

Test(oauth_pkce, verifier_rules)
{
	char v[200], ch[OAUTH_CHALLENGE_LEN + 1];

	memset(v, 'a', sizeof(v));
	cr_expect_eq(oauth_pkce_challenge(v, 42, ch), -EINVAL);
	cr_expect_eq(oauth_pkce_challenge(v, 43, ch), 0);
	cr_expect_eq(oauth_pkce_challenge(v, 128, ch), 0);
	cr_expect_eq(oauth_pkce_challenge(v, 129, ch), -EINVAL);
	v[10] = '+';
	cr_expect_eq(oauth_pkce_challenge(v, 50, ch), -EINVAL);
	v[10] = '=';
	cr_expect_eq(oauth_pkce_challenge(v, 50, ch), -EINVAL);
	v[10] = '~';
	cr_expect_eq(oauth_pkce_challenge(v, 50, ch), 0);
	cr_expect_eq(oauth_pkce_challenge(NULL, 50, ch), -EINVAL);
}

Test(oauth_pkce, new_verifiers_are_random_and_match)
{
	struct oauth_pkce a, b;
	char ch[OAUTH_CHALLENGE_LEN + 1];
	size_t i;

	cr_assert_eq(oauth_pkce_new(&a), 0);
	cr_assert_eq(oauth_pkce_new(&b), 0);
	cr_expect_eq(strlen(a.verifier), 43);
	cr_expect_eq(strlen(a.challenge), 43);
	cr_expect_str_neq(a.verifier, b.verifier);
	for (i = 0; i < 43; i++)
		cr_expect(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
				 a.verifier[i]) != NULL);
	cr_assert_eq(oauth_pkce_challenge(a.verifier, 43, ch), 0);
	cr_expect_str_eq(ch, a.challenge);
	oauth_pkce_wipe(&a);
	cr_expect_eq(a.verifier[0], '\0');
}

Test(oauth_pkce, state_values)
{
	char s1[OAUTH_STATE_LEN + 1], s2[OAUTH_STATE_LEN + 1];

	cr_assert_eq(oauth_random_state(s1), 0);
	cr_assert_eq(oauth_random_state(s2), 0);
	cr_expect_eq(strlen(s1), OAUTH_STATE_LEN);
	cr_expect_str_neq(s1, s2);
}

Test(oauth_pkce, b64url)
{
	char out[64];

	cr_expect_eq(oauth_b64url("\xfb\xff", 2, out, sizeof(out)), 3);
	cr_expect_str_eq(out, "-_8");
	cr_expect_eq(oauth_b64url("", 0, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "");
	cr_expect_eq(oauth_b64url("foobar", 6, out, 8), -ENOBUFS);
	cr_expect_eq(oauth_b64url("foobar", 6, out, 9), 8);
	cr_expect_str_eq(out, "Zm9vYmFy");
}

Test(oauth_form, refresh_grant)
{
	struct buf b;

	buf_init_secret(&b, OAUTH_FORM_MAX);
	cr_assert_eq(oauth_form_refresh(&b, &client, "1//r3fr+sh/t=", 13), 0);
	want_buf(&b, "grant_type=refresh_token&refresh_token=1%2F%2Fr3fr%2Bsh%2Ft%3D"
		     "&client_id=popbridge-test&client_secret=s3cr%26t%3D");
	buf_reset(&b);
	cr_assert_eq(oauth_form_refresh(&b, &public_client, "tok", 3), 0);
	want_buf(&b, "grant_type=refresh_token&refresh_token=tok&client_id=pub");
	buf_free(&b);
}

Test(oauth_form, device_grants)
{
	struct buf b;

	buf_init_secret(&b, OAUTH_FORM_MAX);
	cr_assert_eq(oauth_form_device_start(&b, &client), 0);
	want_buf(&b, "client_id=popbridge-test&client_secret=s3cr%26t%3D"
		     "&scope=openid%20offline_access%20imap");
	buf_reset(&b);
	cr_assert_eq(oauth_form_device_poll(&b, &public_client, "GmRh mJq", 8), 0);
	want_buf(&b, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"
		     "&device_code=GmRh%20mJq&client_id=pub");
	buf_free(&b);
}

Test(oauth_form, auth_code_grant)
{
	const char v[] = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
	struct buf b;

	buf_init_secret(&b, OAUTH_FORM_MAX);
	cr_assert_eq(oauth_form_auth_code(&b, &public_client, "c0de/x", 6, v,
					  "http://127.0.0.1:4711/"), 0);
	want_buf(&b, "grant_type=authorization_code&code=c0de%2Fx"
		     "&redirect_uri=http%3A%2F%2F127.0.0.1%3A4711%2F"
		     "&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
		     "&client_id=pub");
	buf_reset(&b);
	cr_expect_eq(oauth_form_auth_code(&b, &public_client, "c", 1, "short",
					  "http://127.0.0.1/"), -EINVAL);
	cr_expect_eq(oauth_form_auth_code(&b, &public_client, "", 0, v,
					  "http://127.0.0.1/"), -EINVAL);
	cr_expect_eq(b.len, 0);
	buf_free(&b);
}

Test(oauth_form, missing_and_oversized)
{
	struct oauth_client noid = client;
	static char huge[OAUTH_TOKEN_MAX + 1];
	struct buf b;

	noid.client_id = NULL;
	buf_init_secret(&b, OAUTH_FORM_MAX);
	cr_expect_eq(oauth_form_refresh(&b, &noid, "t", 1), -EINVAL);
	noid.client_id = "";
	cr_expect_eq(oauth_form_refresh(&b, &noid, "t", 1), -EINVAL);
	cr_expect_eq(oauth_form_refresh(&b, &client, "", 0), -EINVAL);
	cr_expect_eq(oauth_form_refresh(&b, &client, NULL, 3), -EINVAL);
	memset(huge, 'a', sizeof(huge));
	cr_expect_eq(oauth_form_refresh(&b, &client, huge, sizeof(huge)), -EINVAL);
	cr_expect_eq(oauth_form_refresh(&b, &client, huge, OAUTH_TOKEN_MAX), 0);
	noid = client;
	noid.scope = NULL;
	buf_reset(&b);
	cr_expect_eq(oauth_form_device_start(&b, &noid), -EINVAL);
	buf_free(&b);
	/* A buffer too small keeps what it had. */
	buf_init_secret(&b, 40);
	cr_assert_eq(buf_append_str(&b, "keep"), 0);
	cr_expect_eq(oauth_form_refresh(&b, &client, "abcdef", 6), -ENOBUFS);
	want_buf(&b, "keep");
	buf_free(&b);
}

Test(oauth_form, every_byte_encoded)
{
	char v[256];
	struct buf b;
	size_t i;

	for (i = 0; i < 256; i++)
		v[i] = (char)i;
	buf_init(&b, 4096);
	cr_assert_eq(oauth_form_add(&b, "k", v, 256), 0);
	for (i = 2; i < b.len; i++)
		cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%",
				 b.data[i]) != NULL, "byte %02x left raw", (unsigned char)b.data[i]);
	cr_expect_eq(b.len, 2 + 66 + (256 - 66) * 3);
	buf_free(&b);
}

Test(oauth_parse, full_answer)
{
	struct oauth_token_resp r;

	oauth_token_resp_init(&r);
	cr_assert_eq(PARSE(200, "{\"access_token\":\"ya29.a0-AfB_b~c+d/e==\","
			   "\"token_type\":\"Bearer\",\"expires_in\":3599,"
			   "\"refresh_token\":\"1//0g-new\",\"scope\":\"imap\"}", &r), 0);
	cr_expect_eq(r.err.code, OAUTH_OK);
	want_buf(&r.access, "ya29.a0-AfB_b~c+d/e==");
	want_buf(&r.refresh, "1//0g-new");
	cr_expect_eq(r.expires_in, 3599);
	cr_expect(r.has_expires);
	oauth_token_resp_free(&r);
}

Test(oauth_parse, optional_members)
{
	struct oauth_token_resp r;

	oauth_token_resp_init(&r);
	cr_assert_eq(PARSE(200, "{\"access_token\":\"abc\"}", &r), 0);
	cr_expect_eq(r.refresh.len, 0, "no rotation");
	cr_expect_eq(r.expires_in, OAUTH_EXPIRES_DEFAULT);
	cr_expect_not(r.has_expires);
	cr_assert_eq(PARSE(201, "{\"access_token\":\"abc\",\"token_type\":\"bearer\","
			   "\"refresh_token\":null,\"expires_in\":null}", &r), 0);
	cr_expect_eq(r.refresh.len, 0);
	cr_assert_eq(PARSE(200, "{\"access_token\":\"abc\",\"token_type\":\"BEARER\","
			   "\"expires_in\":\"3599\",\"unknown\":{\"x\":[1,2]}}", &r), 0);
	cr_expect_eq(r.expires_in, 3599, "Microsoft's old string form");
	oauth_token_resp_free(&r);
}

Test(oauth_parse, expires_in_extremes)
{
	static const struct {
		const char *v;
		uint32_t want;
	} v[] = {
		{ "0", 0 },
		{ "-5", 0 },
		{ "1.9", 1 },
		{ "1e300", OAUTH_EXPIRES_MAX },
		{ "18446744073709551617", OAUTH_EXPIRES_MAX },
		{ "-1e300", 0 },
		{ "\"99999999999999999999\"", OAUTH_EXPIRES_MAX },
		{ "\"00042\"", 42 },
	};
	struct oauth_token_resp r;
	char json[200];
	size_t i;

	oauth_token_resp_init(&r);
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		snprintf(json, sizeof(json), "{\"access_token\":\"a\",\"expires_in\":%s}", v[i].v);
		cr_assert_eq(PARSE(200, json, &r), 0, "%s", json);
		cr_expect_eq(r.expires_in, v[i].want, "%s: %u", v[i].v, r.expires_in);
	}
	cr_expect_eq(PARSE(200, "{\"access_token\":\"a\",\"expires_in\":\"-5\"}", &r), -EBADMSG);
	cr_expect_eq(PARSE(200, "{\"access_token\":\"a\",\"expires_in\":\"\"}", &r), -EBADMSG);
	cr_expect_eq(PARSE(200, "{\"access_token\":\"a\",\"expires_in\":\"1h\"}", &r), -EBADMSG);
	cr_expect_eq(PARSE(200, "{\"access_token\":\"a\",\"expires_in\":{}}", &r), -EBADMSG);
	cr_expect_eq(PARSE(200, "{\"access_token\":\"a\",\"expires_in\":true}", &r), -EBADMSG);
	oauth_token_resp_free(&r);
}

Test(oauth_parse, bad_tokens)
{
	static const char *const bad[] = {
		"{\"access_token\":\"\"}",
		"{\"access_token\":\"has space\"}",
		"{\"access_token\":\"ctl\\u0001x\"}",
		"{\"access_token\":\"nul\\u0000x\"}",
		"{\"access_token\":\"crlf\\r\\nA1 LOGOUT\"}",
		"{\"access_token\":\"=abc\"}",
		"{\"access_token\":\"ab=c\"}",
		"{\"access_token\":\"\\u00e9\"}",
		"{\"access_token\":42}",
		"{\"access_token\":[\"a\"]}",
		"{\"access_token\":null}",
		"{\"token_type\":\"Bearer\"}",
		"{\"access_token\":\"a\",\"refresh_token\":\"sp ace\"}",
		"{\"access_token\":\"a\",\"refresh_token\":\"\"}",
		"{\"access_token\":\"a\",\"refresh_token\":7}",
		"{\"access_token\":\"a\",\"token_type\":5}",
		"{\"access_token\":\"a\",\"access_token\":\"b\"}",
		"{\"access_token\":\"a\"",
		"{\"access_token\":\"a\"} trailing",
		"[\"access_token\",\"a\"]",
		"\"access_token\"",
		"null",
		"",
		"<html><body>502 Bad Gateway</body></html>",
		"{\"error\":42}",
		"{\"error\":[\"invalid_grant\"]}",
	};
	struct oauth_token_resp r;
	size_t i;

	oauth_token_resp_init(&r);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(PARSE(200, bad[i], &r), -EBADMSG, "accepted: %s", bad[i]);
		cr_expect_eq(r.access.len, 0, "kept a token: %s", bad[i]);
	}
	cr_expect_eq(PARSE(200, "{\"access_token\":\"a\",\"token_type\":\"mac\"}", &r),
		     -EPROTONOSUPPORT);
	cr_expect_eq(PARSE(200, "{\"access_token\":\"a\",\"token_type\":\"DPoP\"}", &r),
		     -EPROTONOSUPPORT);
	cr_expect_eq(PARSE(200, "{\"access_token\":\"a\",\"token_type\":\"Bearerx\"}", &r),
		     -EPROTONOSUPPORT);
	/* A NUL inside the body ends nothing early. */
	cr_expect_eq(oauth_parse_token(200, "{\"access_token\":\"a\0\"}", 19, &r), -EBADMSG);
	oauth_token_resp_free(&r);
}

Test(oauth_parse, token_size_bound)
{
	static char json[OAUTH_TOKEN_MAX + 100];
	struct oauth_token_resp r;
	int n;

	oauth_token_resp_init(&r);
	n = snprintf(json, sizeof(json), "{\"access_token\":\"%0*d\"}", (int)OAUTH_TOKEN_MAX, 7);
	cr_assert_eq(oauth_parse_token(200, json, (size_t)n, &r), 0);
	cr_expect_eq(r.access.len, OAUTH_TOKEN_MAX);
	n = snprintf(json, sizeof(json), "{\"access_token\":\"%0*d\"}", (int)OAUTH_TOKEN_MAX + 1, 7);
	cr_expect_eq(oauth_parse_token(200, json, (size_t)n, &r), -EBADMSG);
	oauth_token_resp_free(&r);
}

Test(oauth_parse, error_answers)
{
	static const struct {
		const char *name;
		enum oauth_error code;
	} v[] = {
		{ "authorization_pending", OAUTH_E_PENDING },
		{ "slow_down", OAUTH_E_SLOW_DOWN },
		{ "expired_token", OAUTH_E_EXPIRED },
		{ "access_denied", OAUTH_E_DENIED },
		{ "invalid_grant", OAUTH_E_INVALID_GRANT },
		{ "invalid_client", OAUTH_E_INVALID_CLIENT },
		{ "unauthorized_client", OAUTH_E_UNAUTHORIZED_CLIENT },
		{ "invalid_scope", OAUTH_E_INVALID_SCOPE },
		{ "invalid_request", OAUTH_E_INVALID_REQUEST },
		{ "unsupported_grant_type", OAUTH_E_UNSUPPORTED_GRANT },
		{ "temporarily_unavailable", OAUTH_E_OTHER },
		{ "invalid_grantX", OAUTH_E_OTHER },
	};
	struct oauth_token_resp r;
	char json[200];
	size_t i;

	oauth_token_resp_init(&r);
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		snprintf(json, sizeof(json), "{\"error\":\"%s\",\"error_description\":\"d\"}", v[i].name);
		cr_assert_eq(PARSE(400, json, &r), 0, "%s", json);
		cr_expect_eq(r.err.code, v[i].code, "%s", v[i].name);
		cr_expect_str_eq(r.err.name, v[i].name);
		cr_expect_str_eq(r.err.text, "d");
		if (v[i].code != OAUTH_E_OTHER)
			cr_expect_str_eq(oauth_error_name(v[i].code), v[i].name);
	}
	/* The error wins over tokens, whatever the status. */
	cr_assert_eq(PARSE(200, "{\"error\":\"invalid_grant\",\"access_token\":\"a\"}", &r), 0);
	cr_expect_eq(r.err.code, OAUTH_E_INVALID_GRANT);
	cr_expect_eq(r.access.len, 0);
	cr_assert_eq(PARSE(401, "{\"error\":\"invalid_client\",\"error_description\":7}", &r), 0);
	cr_expect_eq(r.err.code, OAUTH_E_INVALID_CLIENT);
	cr_expect_str_eq(r.err.text, "");
	/* Tokens need a 2xx. */
	cr_expect_eq(PARSE(400, "{\"access_token\":\"a\"}", &r), -EBADMSG);
	cr_expect_eq(PARSE(500, "{}", &r), -EBADMSG);
	cr_expect_eq(PARSE(302, "{\"access_token\":\"a\"}", &r), -EBADMSG);
	cr_expect_str_eq(oauth_error_name(OAUTH_OK), "");
	oauth_token_resp_free(&r);
}

Test(oauth_parse, error_text_made_printable)
{
	struct oauth_token_resp r;
	char json[1200];
	size_t i;

	oauth_token_resp_init(&r);
	cr_assert_eq(PARSE(400, "{\"error\":\"bad\\nline\\u001b[31m\","
			   "\"error_description\":\"Grant \\u00e9 revoked\\r\\nX: y\"}", &r), 0);
	cr_expect_str_eq(r.err.name, "bad?line?[31m");
	cr_expect_str_eq(r.err.text, "Grant ?? revoked??X: y");
	cr_expect_eq(r.err.code, OAUTH_E_OTHER);
	strcpy(json, "{\"error\":\"invalid_grant\",\"error_description\":\"");
	for (i = 0; i < 1000; i++)
		strcat(json, "x");
	strcat(json, "\"}");
	cr_assert_eq(PARSE(400, json, &r), 0);
	cr_expect_eq(strlen(r.err.text), OAUTH_TEXT_MAX);
	cr_assert_eq(PARSE(400, "{\"error\":\"\"}", &r), 0);
	cr_expect_eq(r.err.code, OAUTH_E_OTHER);
	cr_expect_str_eq(r.err.name, "(empty)");
	oauth_token_resp_free(&r);
}

Test(oauth_parse, garbage_never_crashes)
{
	static const char seed[] = "{\"access_token\":\"ya29.abc\",\"token_type\":\"Bearer\","
				   "\"expires_in\":3600,\"refresh_token\":\"1//r\","
				   "\"error\":null,\"x\":[1,{\"y\":\"\\u00e9\"}]}";
	struct oauth_token_resp r;
	struct oauth_device_auth d;
	char buf[sizeof(seed)];
	unsigned seedv = 12345;
	int i, k, rc;

	oauth_token_resp_init(&r);
	oauth_device_auth_init(&d);
	for (i = 0; i < 20000; i++) {
		memcpy(buf, seed, sizeof(seed));
		for (k = 0; k < 1 + i % 4; k++) {
			seedv = seedv * 1103515245 + 12345;
			buf[(seedv >> 8) % (sizeof(seed) - 1)] = (char)(seedv >> 20);
		}
		seedv = seedv * 1103515245 + 12345;
		rc = oauth_parse_token(200, buf, (seedv >> 8) % sizeof(seed), &r);
		cr_assert(rc == 0 || rc == -EBADMSG || rc == -EPROTONOSUPPORT, "rc %d", rc);
		if (rc == 0 && r.err.code == OAUTH_OK)
			cr_assert(oauth_is_b64token(r.access.data, r.access.len));
		rc = oauth_parse_device_auth(200, buf, sizeof(seed) - 1, &d);
		cr_assert(rc == 0 || rc == -EBADMSG, "rc %d", rc);
	}
	oauth_token_resp_free(&r);
	oauth_device_auth_free(&d);
}

Test(oauth_parse, b64token)
{
	cr_expect(oauth_is_b64token("a", 1));
	cr_expect(oauth_is_b64token("aZ09-._~+/", 10));
	cr_expect(oauth_is_b64token("abc==", 5));
	cr_expect_not(oauth_is_b64token("", 0));
	cr_expect_not(oauth_is_b64token("==", 2));
	cr_expect_not(oauth_is_b64token("a=b", 3));
	cr_expect_not(oauth_is_b64token("a b", 3));
	cr_expect_not(oauth_is_b64token("a\x01", 2));
	cr_expect_not(oauth_is_b64token("a,b", 3));
}

#define DEVICE(status, json, d) oauth_parse_device_auth(status, json, strlen(json), d)

Test(oauth_device, full_answer)
{
	struct oauth_device_auth d;

	oauth_device_auth_init(&d);
	cr_assert_eq(DEVICE(200, "{\"device_code\":\"GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS\","
			    "\"user_code\":\"WDJB-MJHT\",\"verification_uri\":\"https://example.com/device\","
			    "\"verification_uri_complete\":\"https://example.com/device?user_code=WDJB-MJHT\","
			    "\"expires_in\":1800,\"interval\":5}", &d), 0);
	want_buf(&d.device_code, "GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS");
	cr_expect_str_eq(d.user_code, "WDJB-MJHT");
	cr_expect_str_eq(d.verification_uri, "https://example.com/device");
	cr_expect_str_eq(d.verification_uri_complete, "https://example.com/device?user_code=WDJB-MJHT");
	cr_expect_eq(d.expires_in, 1800);
	cr_expect_eq(d.interval, 5);
	oauth_device_auth_free(&d);
}

Test(oauth_device, google_and_defaults)
{
	struct oauth_device_auth d;

	oauth_device_auth_init(&d);
	cr_assert_eq(DEVICE(200, "{\"device_code\":\"AH-1Ng\",\"user_code\":\"GQVQ-JKEC\","
			    "\"verification_url\":\"https://www.google.com/device\",\"expires_in\":1800}", &d), 0);
	cr_expect_str_eq(d.verification_uri, "https://www.google.com/device");
	cr_expect_eq(d.interval, OAUTH_INTERVAL_DEFAULT);
	cr_expect_str_eq(d.verification_uri_complete, "");
	cr_assert_eq(DEVICE(200, "{\"device_code\":\"x\",\"user_code\":\"U\",\"verification_uri\":"
			    "\"http://127.0.0.1:3000/device\",\"expires_in\":60,\"interval\":0,"
			    "\"verification_uri_complete\":\"javascript:alert(1)\"}", &d), 0);
	cr_expect_eq(d.interval, 1);
	cr_expect_str_eq(d.verification_uri_complete, "", "a bad complete URI is dropped");
	cr_assert_eq(DEVICE(200, "{\"device_code\":\"x\",\"user_code\":\"U\",\"verification_uri\":"
			    "\"https://e.example/\",\"expires_in\":1e99,\"interval\":1e99}", &d), 0);
	cr_expect_eq(d.interval, OAUTH_INTERVAL_MAX);
	cr_expect_eq(d.expires_in, OAUTH_EXPIRES_MAX);
	oauth_device_auth_free(&d);
}

Test(oauth_device, bad_answers)
{
	static const char *const bad[] = {
		"{\"user_code\":\"U\",\"verification_uri\":\"https://e/\",\"expires_in\":60}",
		"{\"device_code\":\"x\",\"verification_uri\":\"https://e/\",\"expires_in\":60}",
		"{\"device_code\":\"x\",\"user_code\":\"U\",\"expires_in\":60}",
		"{\"device_code\":\"x\",\"user_code\":\"U\",\"verification_uri\":\"https://e/\"}",
		"{\"device_code\":\"x\",\"user_code\":\"U\\u001b[2J\",\"verification_uri\":\"https://e/\",\"expires_in\":60}",
		"{\"device_code\":\"x\",\"user_code\":\"U\",\"verification_uri\":\"javascript:x\",\"expires_in\":60}",
		"{\"device_code\":\"x\",\"user_code\":\"U\",\"verification_uri\":\"https://e/ x\",\"expires_in\":60}",
		"{\"device_code\":\"x\",\"user_code\":\"U\",\"verification_uri\":\"https://e/\",\"expires_in\":60,\"interval\":\"5s\"}",
		("{\"device_code\":\"x\",\"user_code\":\"0123456789012345678901234567890123456789012345678901234567890123456789\","
		 "\"verification_uri\":\"https://e/\",\"expires_in\":60}"),
		"not json",
	};
	struct oauth_device_auth d;
	size_t i;

	oauth_device_auth_init(&d);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(DEVICE(200, bad[i], &d), -EBADMSG, "accepted %s", bad[i]);
		cr_expect_eq(d.device_code.len, 0);
	}
	cr_assert_eq(DEVICE(400, "{\"error\":\"invalid_client\"}", &d), 0);
	cr_expect_eq(d.err.code, OAUTH_E_INVALID_CLIENT);
	cr_expect_eq(DEVICE(500, "{\"device_code\":\"x\",\"user_code\":\"U\",\"verification_uri\":"
			    "\"https://e/\",\"expires_in\":60}", &d), -EBADMSG);
	oauth_device_auth_free(&d);
}

Test(oauth_parse, printable)
{
	char out[8];

	oauth_printable(out, sizeof(out), "ab\x01\xff" "cdefgh", 10);
	cr_expect_str_eq(out, "ab??cde");
	oauth_printable(out, 1, "abc", 3);
	cr_expect_str_eq(out, "");
}
