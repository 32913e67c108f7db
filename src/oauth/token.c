/* OAuth 2.0 token requests and answers: form bodies, PKCE, JSON parsing
 * (jansson, with memory wiped on free). No I/O. */
#include "oauth/token.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "util/error.h"
#include "json_priv.h"

/* -- jansson with wiped memory ---------------------------------------------- */

/* Every block carries its size in front, so that free can wipe it. The
 * header keeps the block aligned for anything. */
#define JSON_HDR sizeof(max_align_t)

static void *
wiping_malloc(size_t n)
{
	char *p;

	if (n > SIZE_MAX - JSON_HDR)
		return NULL;
	p = malloc(JSON_HDR + n);
	if (p == NULL)
		return NULL;
	memcpy(p, &n, sizeof(n));
	return p + JSON_HDR;
}

static void
wiping_free(void *q)
{
	char *p;
	size_t n;

	if (q == NULL)
		return;
	p = (char *)q - JSON_HDR;
	memcpy(&n, p, sizeof(n));
	OPENSSL_cleanse(q, n);
	free(p);
}

json_t *
oauth_json_load(const char *body, size_t n)
{
	static int ready;
	json_error_t e;
	json_t *root;

	if (!ready) {
		json_set_alloc_funcs(wiping_malloc, wiping_free);
		ready = 1;
	}
	/* Duplicate members would make "which access_token" a question;
	 * integers as reals, so that a huge expires_in is clamped, not a
	 * parse error. */
	root = json_loadb(body, n, JSON_REJECT_DUPLICATES |
			  JSON_DECODE_INT_AS_REAL, &e);
	if (root != NULL && !json_is_object(root)) {
		json_decref(root);
		root = NULL;
	}
	return root;
}

/* -- small helpers ------------------------------------------------------------- */

void
oauth_printable(char *out, size_t cap, const char *s, size_t n)
{
	size_t i, k = 0;

	if (cap == 0)
		return;
	for (i = 0; i < n && k + 1 < cap; i++) {
		unsigned char c = (unsigned char)s[i];

		out[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	out[k] = '\0';
}

static bool
printable(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

bool
oauth_is_b64token(const char *s, size_t n)
{
	size_t i = 0;

	/* 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
	while (i < n) {
		unsigned char c = (unsigned char)s[i];

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~' || c == '+' || c == '/')
			i++;
		else
			break;
	}
	if (i == 0)
		return false;
	while (i < n && s[i] == '=')
		i++;
	return i == n;
}

static bool
unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

int
oauth_b64url(const void *p, size_t n, char *out, size_t cap)
{
	size_t need = (n + 2) / 3 * 4 + 1, i;
	unsigned char tmp[256];
	int len;

	if (n > 180 || need > sizeof(tmp) || cap == 0)
		return -ENOBUFS;
	len = EVP_EncodeBlock(tmp, p, (int)n);
	while (len > 0 && tmp[len - 1] == '=')
		len--;
	if ((size_t)len + 1 > cap) {
		OPENSSL_cleanse(tmp, sizeof(tmp));
		return -ENOBUFS;
	}
	for (i = 0; i < (size_t)len; i++)
		if (tmp[i] == '+' || tmp[i] == '/')
			tmp[i] = tmp[i] == '+' ? '-' : '_';
	memcpy(out, tmp, (size_t)len);
	out[len] = '\0';
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return len;
}

/* -- forms ----------------------------------------------------------------------- */

int
oauth_form_add(struct buf *out, const char *key, const char *value, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t old = out->len, i;
	char esc[3];
	int r;

	r = buf_append_str(out, out->len > 0 ? "&" : "");
	if (r == 0)
		r = buf_append_str(out, key);
	if (r == 0)
		r = buf_append(out, "=", 1);
	for (i = 0; r == 0 && i < n; i++) {
		unsigned char c = (unsigned char)value[i];

		if (unreserved(c)) {
			r = buf_append(out, value + i, 1);
		} else {
			esc[0] = '%';
			esc[1] = hex[c >> 4];
			esc[2] = hex[c & 15];
			r = buf_append(out, esc, 3);
		}
	}
	if (r < 0)
		buf_truncate(out, old);	/* wiping what a secret left there */
	return r;
}

static int
add_str(struct buf *out, const char *key, const char *value)
{
	return oauth_form_add(out, key, value, strlen(value));
}

static int
add_client(struct buf *out, const struct oauth_client *cl)
{
	int r;

	r = add_str(out, "client_id", cl->client_id);
	if (r == 0 && cl->client_secret != NULL && cl->client_secret[0] != '\0')
		r = add_str(out, "client_secret", cl->client_secret);
	return r;
}

static bool
good_client(const struct oauth_client *cl)
{
	return cl != NULL && cl->client_id != NULL && cl->client_id[0] != '\0';
}

static bool
good_token(const char *s, size_t n)
{
	return s != NULL && n > 0 && n <= OAUTH_TOKEN_MAX;
}

/* Runs the adds and restores out on failure. */
static int
form_end(struct buf *out, size_t old, int r)
{
	if (r < 0)
		buf_truncate(out, old);
	return r;
}

int
oauth_form_refresh(struct buf *out, const struct oauth_client *cl,
		   const char *refresh, size_t n)
{
	size_t old = out->len;
	int r;

	if (!good_client(cl) || !good_token(refresh, n))
		return -EINVAL;
	r = add_str(out, "grant_type", "refresh_token");
	if (r == 0)
		r = oauth_form_add(out, "refresh_token", refresh, n);
	if (r == 0)
		r = add_client(out, cl);
	return form_end(out, old, r);
}

int
oauth_form_device_start(struct buf *out, const struct oauth_client *cl)
{
	size_t old = out->len;
	int r;

	if (!good_client(cl) || cl->scope == NULL || cl->scope[0] == '\0')
		return -EINVAL;
	r = add_client(out, cl);
	if (r == 0)
		r = add_str(out, "scope", cl->scope);
	return form_end(out, old, r);
}

int
oauth_form_device_poll(struct buf *out, const struct oauth_client *cl,
		       const char *device_code, size_t n)
{
	size_t old = out->len;
	int r;

	if (!good_client(cl) || !good_token(device_code, n))
		return -EINVAL;
	r = add_str(out, "grant_type",
		    "urn:ietf:params:oauth:grant-type:device_code");
	if (r == 0)
		r = oauth_form_add(out, "device_code", device_code, n);
	if (r == 0)
		r = add_client(out, cl);
	return form_end(out, old, r);
}

int
oauth_form_auth_code(struct buf *out, const struct oauth_client *cl,
		     const char *code, size_t code_len, const char *verifier,
		     const char *redirect_uri)
{
	size_t old = out->len, vn;
	int r;

	if (!good_client(cl) || !good_token(code, code_len) ||
	    verifier == NULL || redirect_uri == NULL)
		return -EINVAL;
	vn = strlen(verifier);
	if (vn < OAUTH_VERIFIER_MIN || vn > OAUTH_VERIFIER_MAX)
		return -EINVAL;
	r = add_str(out, "grant_type", "authorization_code");
	if (r == 0)
		r = oauth_form_add(out, "code", code, code_len);
	if (r == 0)
		r = add_str(out, "redirect_uri", redirect_uri);
	if (r == 0)
		r = oauth_form_add(out, "code_verifier", verifier, vn);
	if (r == 0)
		r = add_client(out, cl);
	return form_end(out, old, r);
}

/* -- answers ---------------------------------------------------------------------- */

static const struct {
	const char *name;
	enum oauth_error code;
} error_names[] = {
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
};

const char *
oauth_error_name(enum oauth_error e)
{
	size_t i;

	if (e == OAUTH_OK)
		return "";
	for (i = 0; i < sizeof(error_names) / sizeof(error_names[0]); i++)
		if (error_names[i].code == e)
			return error_names[i].name;
	return "other";
}

enum oauth_error
oauth_error_code(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(error_names) / sizeof(error_names[0]); i++)
		if (strlen(error_names[i].name) == n &&
		    memcmp(error_names[i].name, s, n) == 0)
			return error_names[i].code;
	return OAUTH_E_OTHER;
}

/* 1 when root holds an error answer (err filled), 0 when it has no
 * "error" member, -EBADMSG when the member is not a string. */
static int
parse_err(json_t *root, struct oauth_err *err)
{
	json_t *e = json_object_get(root, "error");
	json_t *d = json_object_get(root, "error_description");
	const char *s;
	size_t n;

	memset(err, 0, sizeof(*err));
	if (e == NULL || json_is_null(e))
		return 0;
	if (!json_is_string(e))
		return -EBADMSG;
	s = json_string_value(e);
	n = json_string_length(e);
	err->code = oauth_error_code(s, n);
	oauth_printable(err->name, sizeof(err->name), s, n);
	if (n == 0)
		snprintf(err->name, sizeof(err->name), "(empty)");
	if (json_is_string(d))
		oauth_printable(err->text, sizeof(err->text),
				json_string_value(d), json_string_length(d));
	return 1;
}

/* A number of seconds: a JSON number, or a string of digits (older
 * Microsoft endpoints sent "3599"). Negative is 0, more than max is max. */
static int
seconds(json_t *v, uint32_t max, uint32_t *out)
{
	double d;

	if (json_is_number(v)) {
		d = json_number_value(v);
		*out = d <= 0 ? 0 : d >= (double)max ? max : (uint32_t)d;
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v), i;
		uint64_t x = 0;

		if (n == 0 || n > 20)
			return -EBADMSG;
		for (i = 0; i < n; i++) {
			if (s[i] < '0' || s[i] > '9')
				return -EBADMSG;
			if (x <= max)
				x = x * 10 + (uint64_t)(s[i] - '0');
		}
		*out = x > max ? max : (uint32_t)x;
		return 0;
	}
	return -EBADMSG;
}

/* A string member into a secret buffer; 0 absent (or null), 1 set,
 * -EBADMSG wrong type or bad characters. */
static int
take_token(json_t *root, const char *key, bool b64token, struct buf *out)
{
	json_t *v = json_object_get(root, key);
	const char *s;
	size_t n;
	int r;

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -EBADMSG;
	s = json_string_value(v);
	n = json_string_length(v);
	if (n == 0 || n > OAUTH_TOKEN_MAX)
		return -EBADMSG;
	if (b64token ? !oauth_is_b64token(s, n) : !printable(s, n))
		return -EBADMSG;
	r = buf_append(out, s, n);
	return r < 0 ? r : 1;
}

void
oauth_token_resp_init(struct oauth_token_resp *r)
{
	memset(r, 0, sizeof(*r));
	buf_init_secret(&r->access, OAUTH_TOKEN_MAX);
	buf_init_secret(&r->refresh, OAUTH_TOKEN_MAX);
}

void
oauth_token_resp_free(struct oauth_token_resp *r)
{
	buf_free(&r->access);
	buf_free(&r->refresh);
	memset(&r->err, 0, sizeof(r->err));
	r->expires_in = 0;
	r->has_expires = false;
}

int
oauth_parse_token(long status, const char *body, size_t n,
		  struct oauth_token_resp *r)
{
	json_t *root, *v;
	int k;

	oauth_token_resp_free(r);
	root = oauth_json_load(body, n);
	if (root == NULL)
		return -EBADMSG;
	k = parse_err(root, &r->err);
	if (k != 0)
		goto out;
	if (status < 200 || status > 299) {
		k = -EBADMSG;
		goto out;
	}
	k = take_token(root, "access_token", true, &r->access);
	if (k == 0)
		k = -EBADMSG;
	if (k < 0)
		goto out;
	v = json_object_get(root, "token_type");
	if (v != NULL && !json_is_null(v)) {
		if (!json_is_string(v)) {
			k = -EBADMSG;
			goto out;
		}
		if (strcasecmp(json_string_value(v), "bearer") != 0 ||
		    json_string_length(v) != 6) {
			k = -EPROTONOSUPPORT;
			goto out;
		}
	}
	k = take_token(root, "refresh_token", false, &r->refresh);
	if (k < 0)
		goto out;
	r->expires_in = OAUTH_EXPIRES_DEFAULT;
	v = json_object_get(root, "expires_in");
	if (v != NULL && !json_is_null(v)) {
		k = seconds(v, OAUTH_EXPIRES_MAX, &r->expires_in);
		if (k < 0)
			goto out;
		r->has_expires = true;
	}
	k = 0;
out:
	json_decref(root);
	if (k < 0) {
		buf_wipe(&r->access);
		buf_wipe(&r->refresh);
	}
	return k < 0 ? k : 0;
}

void
oauth_device_auth_init(struct oauth_device_auth *d)
{
	memset(d, 0, sizeof(*d));
	buf_init_secret(&d->device_code, OAUTH_TOKEN_MAX);
}

void
oauth_device_auth_free(struct oauth_device_auth *d)
{
	struct buf keep = d->device_code;

	buf_free(&keep);
	memset(d, 0, sizeof(*d));
	d->device_code = keep;
}

/* A printable string member into out; -EBADMSG when absent (and required),
 * of the wrong type, not printable or too long. */
static int
take_text(json_t *root, const char *key, char *out, size_t cap, bool required)
{
	json_t *v = json_object_get(root, key);
	size_t n;

	if (v == NULL || json_is_null(v))
		return required ? -EBADMSG : 0;
	if (!json_is_string(v))
		return -EBADMSG;
	n = json_string_length(v);
	if (n == 0 || n >= cap || !printable(json_string_value(v), n))
		return -EBADMSG;
	memcpy(out, json_string_value(v), n);
	out[n] = '\0';
	return 1;
}

static bool
web_url(const char *s)
{
	return strncasecmp(s, "https://", 8) == 0 ||
	       strncasecmp(s, "http://", 7) == 0;
}

int
oauth_parse_device_auth(long status, const char *body, size_t n,
			struct oauth_device_auth *d)
{
	json_t *root, *v;
	int k;

	oauth_device_auth_free(d);
	root = oauth_json_load(body, n);
	if (root == NULL)
		return -EBADMSG;
	k = parse_err(root, &d->err);
	if (k != 0)
		goto out;
	if (status < 200 || status > 299) {
		k = -EBADMSG;
		goto out;
	}
	k = take_token(root, "device_code", false, &d->device_code);
	if (k == 0)
		k = -EBADMSG;
	if (k > 0)
		k = take_text(root, "user_code", d->user_code,
			      sizeof(d->user_code), true);
	if (k > 0) {
		/* Google still says verification_url. */
		k = take_text(root, "verification_uri", d->verification_uri,
			      sizeof(d->verification_uri), false);
		if (k == 0)
			k = take_text(root, "verification_url",
				      d->verification_uri,
				      sizeof(d->verification_uri), true);
	}
	if (k > 0 && !web_url(d->verification_uri))
		k = -EBADMSG;
	if (k < 0)
		goto out;
	/* Optional and only a convenience: a bad one is dropped. */
	if (take_text(root, "verification_uri_complete",
		      d->verification_uri_complete,
		      sizeof(d->verification_uri_complete), false) < 0 ||
	    !web_url(d->verification_uri_complete))
		d->verification_uri_complete[0] = '\0';
	v = json_object_get(root, "expires_in");
	k = v == NULL ? -EBADMSG : seconds(v, OAUTH_EXPIRES_MAX, &d->expires_in);
	if (k < 0)
		goto out;
	d->interval = OAUTH_INTERVAL_DEFAULT;
	v = json_object_get(root, "interval");
	if (v != NULL && !json_is_null(v)) {
		k = seconds(v, OAUTH_INTERVAL_MAX, &d->interval);
		if (k < 0)
			goto out;
		if (d->interval == 0)
			d->interval = 1;
	}
	k = 0;
out:
	json_decref(root);
	if (k < 0)
		buf_wipe(&d->device_code);
	return k < 0 ? k : 0;
}

/* -- PKCE and state ---------------------------------------------------------------- */

int
oauth_pkce_challenge(const char *verifier, size_t n,
		     char out[OAUTH_CHALLENGE_LEN + 1])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	size_t i;
	int r;

	if (verifier == NULL || n < OAUTH_VERIFIER_MIN || n > OAUTH_VERIFIER_MAX)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (!unreserved((unsigned char)verifier[i]))
			return -EINVAL;
	if (EVP_Digest(verifier, n, md, NULL, EVP_sha256(), NULL) != 1)
		return -EIO;
	r = oauth_b64url(md, sizeof(md), out, OAUTH_CHALLENGE_LEN + 1);
	return r < 0 ? r : 0;
}

int
oauth_pkce_new(struct oauth_pkce *p)
{
	unsigned char raw[32];
	int r;

	memset(p, 0, sizeof(*p));
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	r = oauth_b64url(raw, sizeof(raw), p->verifier, sizeof(p->verifier));
	OPENSSL_cleanse(raw, sizeof(raw));
	if (r < 0)
		return r;
	r = oauth_pkce_challenge(p->verifier, (size_t)r, p->challenge);
	if (r < 0)
		oauth_pkce_wipe(p);
	return r;
}

void
oauth_pkce_wipe(struct oauth_pkce *p)
{
	OPENSSL_cleanse(p, sizeof(*p));
}

int
oauth_random_state(char out[OAUTH_STATE_LEN + 1])
{
	unsigned char raw[16];
	int r;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	r = oauth_b64url(raw, sizeof(raw), out, OAUTH_STATE_LEN + 1);
	return r < 0 ? r : 0;
}
