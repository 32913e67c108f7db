#ifndef POPBRIDGE_OAUTH_TOKEN_H
#define POPBRIDGE_OAUTH_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/*
 * OAuth 2.0 token requests and answers, without I/O: the form bodies of
 * the token endpoint's grants (RFC 6749 refresh_token and
 * authorization_code, RFC 8628 device_code, RFC 7636 PKCE) and of the
 * device authorization endpoint, and the parsing of their JSON answers
 * (jansson). Tokens, codes and secrets go into secret buffers
 * (buf_init_secret) and are wiped; the texts meant for a terminal or a
 * log line (error codes and descriptions, user codes, URIs) are cut to
 * printable ASCII. Client authentication is client_secret_post: client_id
 * (and client_secret when there is one) in the form.
 *
 * jansson's memory is wiped when freed (json_set_alloc_funcs, set the
 * first time any function here parses): nothing else in popbridge may
 * use jansson with other allocators.
 */

/* The longest access or refresh token, device code or authorization code
 * accepted (SPEC §2 bounds AUTH lines at 16 KiB; Microsoft's JWTs are
 * about 2-4 KB). */
#define OAUTH_TOKEN_MAX (12u * 1024)
/* A form body's bound: two tokens, a secret and the rest. */
#define OAUTH_FORM_MAX (32u * 1024)
/* expires_in and interval are clamped to these (seconds). */
#define OAUTH_EXPIRES_MAX (366u * 24 * 3600)
#define OAUTH_INTERVAL_MAX 600u
/* When the answer has no expires_in (RFC 6749 §5.1 leaves it optional). */
#define OAUTH_EXPIRES_DEFAULT 3600u
/* RFC 8628 §3.2: the polling interval when the server names none. */
#define OAUTH_INTERVAL_DEFAULT 5u
/* Texts kept from a server's answer for the terminal and the log. */
#define OAUTH_TEXT_MAX 200
/* PKCE (RFC 7636 §4.1): the verifier is 43-128 unreserved characters;
 * ours are 32 random bytes in base64url, the challenge 43 characters. */
#define OAUTH_VERIFIER_MIN 43
#define OAUTH_VERIFIER_MAX 128
#define OAUTH_CHALLENGE_LEN 43
/* The state parameter (RFC 6749 §10.12): 16 random bytes, base64url. */
#define OAUTH_STATE_LEN 22

/* One OAuth client at one provider. Strings are borrowed; NULL means
 * absent. */
struct oauth_client {
	const char *token_url;
	const char *device_url;		/* RFC 8628 device authorization */
	const char *auth_url;		/* authorization endpoint (code flow) */
	const char *client_id;
	const char *client_secret;	/* NULL: a public client */
	const char *scope;		/* space-separated */
	const char *auth_extra;		/* more query for the authorization
					 * URL, "k=v&k=v", already encoded */
};

/* The error codes the flows act on (RFC 6749 §5.2, RFC 8628 §3.5). */
enum oauth_error {
	OAUTH_OK = 0,
	OAUTH_E_PENDING,		/* authorization_pending */
	OAUTH_E_SLOW_DOWN,		/* slow_down */
	OAUTH_E_EXPIRED,		/* expired_token */
	OAUTH_E_DENIED,			/* access_denied */
	OAUTH_E_INVALID_GRANT,		/* invalid_grant: revoked, expired, used */
	OAUTH_E_INVALID_CLIENT,		/* invalid_client */
	OAUTH_E_UNAUTHORIZED_CLIENT,	/* unauthorized_client */
	OAUTH_E_INVALID_SCOPE,		/* invalid_scope */
	OAUTH_E_INVALID_REQUEST,	/* invalid_request */
	OAUTH_E_UNSUPPORTED_GRANT,	/* unsupported_grant_type */
	OAUTH_E_OTHER,			/* any other code */
};

/* An error answer: the code and what the server said about it. */
struct oauth_err {
	enum oauth_error code;
	char name[48];			/* the code as sent, printable */
	char text[OAUTH_TEXT_MAX + 1];	/* error_description, printable */
};

/* A token endpoint's answer. */
struct oauth_token_resp {
	struct oauth_err err;		/* code OAUTH_OK for tokens */
	struct buf access;		/* secret */
	struct buf refresh;		/* secret; empty when not sent */
	uint32_t expires_in;		/* seconds, clamped; see has_expires */
	bool has_expires;
};

/* A device authorization answer (RFC 8628 §3.2). */
struct oauth_device_auth {
	struct oauth_err err;
	struct buf device_code;		/* secret */
	char user_code[64];
	char verification_uri[1024];
	char verification_uri_complete[2048];	/* "" when not sent */
	uint32_t expires_in;		/* seconds */
	uint32_t interval;		/* seconds; the default when not sent */
};

struct oauth_pkce {
	char verifier[OAUTH_VERIFIER_MAX + 1];	/* secret */
	char challenge[OAUTH_CHALLENGE_LEN + 1];
};

/* The name of a code ("invalid_grant"), "" for OAUTH_OK. */
const char *oauth_error_name(enum oauth_error e);
/* The code of name[0..n); OAUTH_E_OTHER for any other. */
enum oauth_error oauth_error_code(const char *name, size_t n);

/* Appends key=value (value[0..n) percent-encoded, "&" first unless out
 * is empty). out should be a secret buffer when value is one. */
int oauth_form_add(struct buf *out, const char *key, const char *value,
		   size_t n);

/* The form of a refresh_token grant (RFC 6749 §6). */
int oauth_form_refresh(struct buf *out, const struct oauth_client *cl,
		       const char *refresh, size_t n);
/* The device authorization request: client_id and scope. */
int oauth_form_device_start(struct buf *out, const struct oauth_client *cl);
/* The device_code grant (RFC 8628 §3.4). */
int oauth_form_device_poll(struct buf *out, const struct oauth_client *cl,
			   const char *device_code, size_t n);
/* The authorization_code grant with the PKCE verifier (RFC 7636 §4.5). */
int oauth_form_auth_code(struct buf *out, const struct oauth_client *cl,
			 const char *code, size_t code_len,
			 const char *verifier, const char *redirect_uri);
/* These four return 0, -EINVAL (a required field is missing: client_id,
 * scope for the device start, a token, code or verifier that is empty or
 * over OAUTH_TOKEN_MAX), or a buf error; out keeps what it had on error. */

/*
 * Parses a token endpoint's answer: status and body. Returns 0 with
 * either tokens (r->err.code OAUTH_OK: access token set, refresh set
 * when one came, expires_in clamped to OAUTH_EXPIRES_MAX, negative as 0,
 * OAUTH_EXPIRES_DEFAULT when absent) or an error answer (code set: an
 * "error" member, whatever the status); -EBADMSG when the body is not a
 * JSON object, lacks both "access_token" and "error", has a member of the
 * wrong type, or a token that is empty, over OAUTH_TOKEN_MAX or not made
 * of token characters (RFC 6750 b64token for the access token, printable
 * ASCII for the refresh token); -EPROTONOSUPPORT for a token_type other
 * than Bearer (a missing one is taken as Bearer); -ENOMEM. A 2xx status
 * is needed for tokens: tokens under another status are -EBADMSG. r is
 * reset first (oauth_token_resp_init once before).
 */
int oauth_parse_token(long status, const char *body, size_t n,
		      struct oauth_token_resp *r);
void oauth_token_resp_init(struct oauth_token_resp *r);
void oauth_token_resp_free(struct oauth_token_resp *r);

/* The same for a device authorization answer: device_code, user_code
 * (printable ASCII), verification_uri (or Google's verification_url; an
 * http: or https: URL of printable ASCII), expires_in (required),
 * interval (OAUTH_INTERVAL_DEFAULT when absent, at least 1, clamped to
 * OAUTH_INTERVAL_MAX). */
int oauth_parse_device_auth(long status, const char *body, size_t n,
			    struct oauth_device_auth *d);
void oauth_device_auth_init(struct oauth_device_auth *d);
void oauth_device_auth_free(struct oauth_device_auth *d);

/* A new verifier (OpenSSL's RAND_bytes) and its S256 challenge. 0, or
 * -EIO when the generator fails. */
int oauth_pkce_new(struct oauth_pkce *p);
/* BASE64URL(SHA256(verifier)) without padding into out (43 characters
 * and a NUL). -EINVAL for a verifier that is not 43-128 unreserved
 * characters (RFC 7636 §4.1). */
int oauth_pkce_challenge(const char *verifier, size_t n,
			 char out[OAUTH_CHALLENGE_LEN + 1]);
void oauth_pkce_wipe(struct oauth_pkce *p);
/* A fresh state value (22 base64url characters and a NUL). */
int oauth_random_state(char out[OAUTH_STATE_LEN + 1]);
/* base64url without padding of p[0..n) into out (cap with the NUL);
 * returns the length, or -ENOBUFS. */
int oauth_b64url(const void *p, size_t n, char *out, size_t cap);

/* Whether s[0..n) is an RFC 6750 b64token (what may follow "Bearer "). */
bool oauth_is_b64token(const char *s, size_t n);

/* Copies s[0..n) into out (cap with the NUL) as printable ASCII: other
 * bytes become '?', longer text is cut. For server texts on a terminal
 * or in a log. */
void oauth_printable(char *out, size_t cap, const char *s, size_t n);

#endif
