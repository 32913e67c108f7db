/* SASL OAUTHBEARER (RFC 7628) and XOAUTH2 initial responses, and the
 * server's JSON error challenge. */
#include "oauth/sasl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "util/base64.h"
#include "util/error.h"
#include "json_priv.h"

enum oauth_mech
oauth_sasl_pick(bool has_oauthbearer, bool has_xoauth2)
{
	if (has_oauthbearer)
		return OAUTH_MECH_OAUTHBEARER;
	if (has_xoauth2)
		return OAUTH_MECH_XOAUTH2;
	return OAUTH_MECH_NONE;
}

const char *
oauth_sasl_name(enum oauth_mech m)
{
	switch (m) {
	case OAUTH_MECH_OAUTHBEARER:
		return "OAUTHBEARER";
	case OAUTH_MECH_XOAUTH2:
		return "XOAUTH2";
	default:
		return "";
	}
}

static bool
no_controls(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* RFC 5801 saslname: ',' and '=' escaped. */
static int
add_saslname(struct buf *out, const char *s)
{
	int r = 0;

	for (; r == 0 && *s != '\0'; s++) {
		if (*s == ',')
			r = buf_append(out, "=2C", 3);
		else if (*s == '=')
			r = buf_append(out, "=3D", 3);
		else
			r = buf_append(out, s, 1);
	}
	return r;
}

int
oauth_sasl_response(struct buf *out, enum oauth_mech m, const char *user,
		    const char *host, unsigned port, const char *token,
		    size_t token_len)
{
	size_t old = out->len, un, hn = 0;
	int r;

	if (user == NULL || token == NULL)
		return -EINVAL;
	un = strlen(user);
	if (host != NULL)
		hn = strlen(host);
	if (un == 0 || un > OAUTH_SASL_NAME_MAX || !no_controls(user, un) ||
	    hn > OAUTH_SASL_NAME_MAX || (host != NULL && !no_controls(host, hn)) ||
	    (host != NULL && memchr(host, ',', hn) != NULL) || port > 65535 ||
	    token_len > OAUTH_TOKEN_MAX || !oauth_is_b64token(token, token_len))
		return -EINVAL;
	switch (m) {
	case OAUTH_MECH_OAUTHBEARER:
		r = buf_append_str(out, "n,a=");
		if (r == 0)
			r = add_saslname(out, user);
		if (r == 0)
			r = buf_append(out, ",\1", 2);
		if (r == 0 && host != NULL && hn > 0)
			r = buf_appendf(out, "host=%s\1", host);
		if (r == 0 && port != 0)
			r = buf_appendf(out, "port=%u\1", port);
		break;
	case OAUTH_MECH_XOAUTH2:
		r = buf_appendf(out, "user=%s\1", user);
		break;
	default:
		return -EINVAL;
	}
	if (r == 0)
		r = buf_append_str(out, "auth=Bearer ");
	if (r == 0)
		r = buf_append(out, token, token_len);
	if (r == 0)
		r = buf_append(out, "\1\1", 2);
	if (r < 0)
		buf_truncate(out, old);
	return r;
}

int
oauth_sasl_response_b64(struct buf *out, enum oauth_mech m, const char *user,
			const char *host, unsigned port, const char *token,
			size_t token_len)
{
	struct buf raw;
	size_t old = out->len;
	int r;

	buf_init_secret(&raw, OAUTH_TOKEN_MAX + 3 * OAUTH_SASL_NAME_MAX * 2 + 64);
	r = oauth_sasl_response(&raw, m, user, host, port, token, token_len);
	if (r == 0)
		r = base64_encode(out, raw.data, raw.len);
	buf_free(&raw);
	if (r < 0)
		buf_truncate(out, old);
	return r;
}

static void
take(json_t *root, const char *key, char *out, size_t cap)
{
	json_t *v = json_object_get(root, key);

	out[0] = '\0';
	if (json_is_string(v))
		oauth_printable(out, cap, json_string_value(v),
				json_string_length(v));
	else if (json_is_number(v))
		snprintf(out, cap, "%.0f", json_number_value(v));
}

int
oauth_sasl_parse_error(const char *b64, size_t n, struct oauth_sasl_error *e)
{
	struct buf raw;
	json_t *root = NULL;
	int r;

	memset(e, 0, sizeof(*e));
	buf_init(&raw, 16 * 1024);
	r = base64_decode(&raw, b64, n);
	if (r == 0 && raw.len > 0)
		root = oauth_json_load(raw.data, raw.len);
	buf_free(&raw);
	if (root == NULL)
		return -EBADMSG;
	take(root, "status", e->status, sizeof(e->status));
	take(root, "scope", e->scope, sizeof(e->scope));
	take(root, "openid-configuration", e->config, sizeof(e->config));
	json_decref(root);
	return 0;
}

const char *
oauth_sasl_error_reply(enum oauth_mech m)
{
	return m == OAUTH_MECH_OAUTHBEARER ? "AQ==" : "";
}
