/* The device flow's polling and the code flow's URLs, as pure state
 * machines (RFC 8628, RFC 8252, RFC 7636). */
#include "oauth/flows.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "util/error.h"

/* -- device authorization grant ---------------------------------------------- */

void
oauth_device_flow_start(struct oauth_device_flow *f,
			const struct oauth_device_auth *d, uint64_t now_ms)
{
	memset(f, 0, sizeof(*f));
	f->deadline_ms = now_ms + (uint64_t)d->expires_in * 1000;
	f->interval_s = d->interval ? d->interval : OAUTH_INTERVAL_DEFAULT;
}

uint64_t
oauth_device_flow_first_delay(const struct oauth_device_flow *f)
{
	return (uint64_t)f->interval_s * 1000;
}

static uint64_t
wait_ms(const struct oauth_device_flow *f)
{
	uint64_t s = f->interval_s;
	unsigned i;

	for (i = 0; i < f->failures && s < OAUTH_DEVICE_BACKOFF_MAX_S; i++)
		s *= 2;
	if (s > OAUTH_DEVICE_BACKOFF_MAX_S)
		s = OAUTH_DEVICE_BACKOFF_MAX_S;
	return s * 1000;
}

enum oauth_step
oauth_device_flow_answer(struct oauth_device_flow *f, uint64_t now_ms, int err,
			 long status, const char *body, size_t n,
			 struct oauth_token_resp *r, int *err_r,
			 uint64_t *delay_ms_r)
{
	int k = -EBADMSG;

	*err_r = 0;
	*delay_ms_r = 0;
	if (err == 0 && status < 500) {
		k = oauth_parse_token(status, body, n, r);
		if (k == -ENOMEM) {
			*err_r = k;
			return OAUTH_STEP_FAIL;
		}
	}
	if (k == 0) {
		f->polls++;
		f->failures = 0;
		switch (r->err.code) {
		case OAUTH_OK:
			return OAUTH_STEP_DONE;
		case OAUTH_E_PENDING:
			break;
		case OAUTH_E_SLOW_DOWN:
			f->slow_downs++;
			if (f->interval_s < OAUTH_DEVICE_BACKOFF_MAX_S)
				f->interval_s += OAUTH_SLOW_DOWN_S;
			break;
		case OAUTH_E_DENIED:
		case OAUTH_E_INVALID_GRANT:
			*err_r = -EACCES;
			return OAUTH_STEP_FAIL;
		case OAUTH_E_EXPIRED:
			*err_r = -ETIMEDOUT;
			return OAUTH_STEP_FAIL;
		case OAUTH_E_INVALID_CLIENT:
		case OAUTH_E_UNAUTHORIZED_CLIENT:
		case OAUTH_E_INVALID_SCOPE:
		case OAUTH_E_INVALID_REQUEST:
		case OAUTH_E_UNSUPPORTED_GRANT:
			*err_r = -EPERM;
			return OAUTH_STEP_FAIL;
		default:
			*err_r = -EREMOTEIO;
			return OAUTH_STEP_FAIL;
		}
	} else {
		/* No answer, a 5xx or garbage: back off (RFC 8628 §3.5). */
		f->failures++;
	}
	*delay_ms_r = wait_ms(f);
	if (now_ms + *delay_ms_r >= f->deadline_ms) {
		*err_r = -ETIMEDOUT;
		return OAUTH_STEP_FAIL;
	}
	return OAUTH_STEP_POLL;
}

/* -- the authorization URL ------------------------------------------------------- */

int
oauth_auth_url(struct buf *out, const struct oauth_client *cl,
	       const char *redirect_uri, const char *state,
	       const char *challenge)
{
	struct buf q;
	size_t old = out->len;
	int r;

	if (cl == NULL || cl->auth_url == NULL || cl->auth_url[0] == '\0' ||
	    cl->client_id == NULL || cl->client_id[0] == '\0' ||
	    cl->scope == NULL || cl->scope[0] == '\0' || redirect_uri == NULL ||
	    state == NULL || state[0] == '\0' || challenge == NULL ||
	    challenge[0] == '\0')
		return -EINVAL;
	buf_init(&q, OAUTH_FORM_MAX);
	r = oauth_form_add(&q, "response_type", "code", 4);
	if (r == 0)
		r = oauth_form_add(&q, "client_id", cl->client_id,
				   strlen(cl->client_id));
	if (r == 0)
		r = oauth_form_add(&q, "redirect_uri", redirect_uri,
				   strlen(redirect_uri));
	if (r == 0)
		r = oauth_form_add(&q, "scope", cl->scope, strlen(cl->scope));
	if (r == 0)
		r = oauth_form_add(&q, "state", state, strlen(state));
	if (r == 0)
		r = oauth_form_add(&q, "code_challenge", challenge,
				   strlen(challenge));
	if (r == 0)
		r = oauth_form_add(&q, "code_challenge_method", "S256", 4);
	/* Without a consent asked for now, providers drop offline access
	 * (oidc-provider) or send no new refresh token (Google). */
	if (r == 0 && (cl->auth_extra == NULL ||
		       strstr(cl->auth_extra, "prompt=") == NULL))
		r = oauth_form_add(&q, "prompt", "consent", 7);
	if (r == 0 && cl->auth_extra != NULL && cl->auth_extra[0] != '\0')
		r = buf_appendf(&q, "&%s", cl->auth_extra);
	if (r == 0)
		r = buf_appendf(out, "%s%c%.*s", cl->auth_url,
				strchr(cl->auth_url, '?') != NULL ? '&' : '?',
				(int)q.len, q.data);
	buf_free(&q);
	if (r < 0)
		buf_truncate(out, old);
	return r;
}

/* -- what comes back to the redirect URI ------------------------------------------- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Form-decodes s[0..n) ('+' is a space) into out. */
static int
decode(const char *s, size_t n, struct buf *out)
{
	size_t i;
	char c;
	int r = 0, hi, lo;

	for (i = 0; r == 0 && i < n; i++) {
		c = s[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			if (i + 2 >= n)
				return -EBADMSG;
			hi = hexval(s[i + 1]);
			lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0)
				return -EBADMSG;
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		r = buf_append(out, &c, 1);
	}
	return r;
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

enum { P_CODE, P_STATE, P_ERROR, P_DESC, P_N };

int
oauth_redirect_parse(const char *s, size_t n, const char *state,
		     struct buf *code, struct oauth_err *e)
{
	static const char *const names[P_N] = {
		"code", "state", "error", "error_description",
	};
	const char *q, *end, *amp, *eq;
	struct buf val[P_N];
	bool seen[P_N] = { false };
	size_t i, sn;
	int r = 0, k;

	memset(e, 0, sizeof(*e));
	while (n > 0 && is_space(*s))
		s++, n--;
	while (n > 0 && is_space(s[n - 1]))
		n--;
	if (n > OAUTH_REDIRECT_MAX)
		return -ENOBUFS;
	q = memchr(s, '?', n);
	if (q != NULL)
		q++;
	else if (memchr(s, '=', n) != NULL && memchr(s, '/', n) == NULL)
		q = s;		/* just the query */
	else
		return -EBADMSG;
	end = memchr(q, '#', n - (size_t)(q - s));
	if (end == NULL)
		end = s + n;
	for (i = 0; i < P_N; i++)
		buf_init_secret(&val[i], OAUTH_TOKEN_MAX);
	while (r == 0 && q < end) {
		amp = memchr(q, '&', (size_t)(end - q));
		if (amp == NULL)
			amp = end;
		eq = memchr(q, '=', (size_t)(amp - q));
		for (i = 0; eq != NULL && i < P_N; i++) {
			if ((size_t)(eq - q) != strlen(names[i]) ||
			    memcmp(q, names[i], (size_t)(eq - q)) != 0)
				continue;
			if (seen[i])
				r = -EBADMSG;
			seen[i] = true;
			if (r == 0)
				r = decode(eq + 1, (size_t)(amp - eq - 1), &val[i]);
			if (r == -ENOBUFS)
				r = -EBADMSG;
			break;
		}
		q = amp + 1;
	}
	if (r < 0)
		goto out;
	sn = state != NULL ? strlen(state) : 0;
	if (!seen[P_STATE] || sn == 0 || val[P_STATE].len != sn ||
	    CRYPTO_memcmp(val[P_STATE].data, state, sn) != 0) {
		r = -ESRCH;
		goto out;
	}
	if (seen[P_ERROR]) {
		e->code = oauth_error_code(val[P_ERROR].data, val[P_ERROR].len);
		oauth_printable(e->name, sizeof(e->name), val[P_ERROR].data,
				val[P_ERROR].len);
		if (val[P_ERROR].len == 0)
			snprintf(e->name, sizeof(e->name), "(empty)");
		oauth_printable(e->text, sizeof(e->text), val[P_DESC].data,
				val[P_DESC].len);
		r = 1;
		goto out;
	}
	if (!seen[P_CODE] || val[P_CODE].len == 0) {
		r = -EBADMSG;
		goto out;
	}
	for (i = 0; i < val[P_CODE].len; i++) {
		unsigned char c = (unsigned char)val[P_CODE].data[i];

		if (c < 0x21 || c > 0x7e) {
			r = -EBADMSG;
			goto out;
		}
	}
	buf_wipe(code);
	k = buf_append(code, val[P_CODE].data, val[P_CODE].len);
	r = k < 0 ? k : 0;
out:
	for (i = 0; i < P_N; i++)
		buf_free(&val[i]);
	return r;
}
