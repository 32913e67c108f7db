#ifndef POPBRIDGE_OAUTH_SASL_H
#define POPBRIDGE_OAUTH_SASL_H

#include <stdbool.h>
#include <stddef.h>

#include "oauth/token.h"
#include "util/buf.h"

/*
 * SASL with a bearer token for the upstream IMAP login: OAUTHBEARER
 * (RFC 7628) and Google's and Microsoft's XOAUTH2. The initial responses
 * carry the access token: build them in secret buffers (buf_init_secret)
 * and never log them. The IMAP side sends
 * "AUTHENTICATE OAUTHBEARER <base64>" when the server has SASL-IR, else
 * the base64 as the answer to the "+" continuation. On failure the server
 * sends a challenge with a base64 JSON error (RFC 7628 §3.2.2);
 * oauth_sasl_parse_error decodes it for the log line (it holds no token)
 * and the client answers it with oauth_sasl_error_reply, after which the
 * server sends its tagged NO.
 */

enum oauth_mech {
	OAUTH_MECH_NONE = 0,
	OAUTH_MECH_OAUTHBEARER,
	OAUTH_MECH_XOAUTH2,
};

/* OAUTHBEARER when offered (the standard), else XOAUTH2, else NONE. */
enum oauth_mech oauth_sasl_pick(bool has_oauthbearer, bool has_xoauth2);
/* "OAUTHBEARER", "XOAUTH2", "" for NONE. */
const char *oauth_sasl_name(enum oauth_mech m);

/* The longest user name or host put into a response. */
#define OAUTH_SASL_NAME_MAX 1024

/*
 * The initial response of mech m, raw (not base64), appended to out:
 *   OAUTHBEARER: "n,a=USER,\1host=HOST\1port=PORT\1auth=Bearer TOKEN\1\1"
 *                (USER with ',' and '=' as "=2C" and "=3D", RFC 5801)
 *   XOAUTH2:     "user=USER\1auth=Bearer TOKEN\1\1"
 * host may be NULL and port 0 (both left out of OAUTHBEARER). Returns 0,
 * -EINVAL (no mechanism; a user empty, over OAUTH_SASL_NAME_MAX or with
 * a control byte; a host with a control byte or ','; a token that is not
 * an RFC 6750 b64token or over OAUTH_TOKEN_MAX) or a buf error; out keeps
 * what it had on error.
 */
int oauth_sasl_response(struct buf *out, enum oauth_mech m, const char *user,
			const char *host, unsigned port, const char *token,
			size_t token_len);

/* The same, base64-encoded (what goes on the IMAP line). */
int oauth_sasl_response_b64(struct buf *out, enum oauth_mech m,
			    const char *user, const char *host, unsigned port,
			    const char *token, size_t token_len);

/* What the server's error challenge said. Fields are printable ASCII,
 * "" when absent. */
struct oauth_sasl_error {
	char status[64];		/* "invalid_token", "400", ... */
	char scope[OAUTH_TEXT_MAX + 1];
	char config[OAUTH_TEXT_MAX + 1];	/* openid-configuration */
};

/* Decodes the base64 text after "+ " of a failed OAUTHBEARER or XOAUTH2
 * exchange. Returns 0, or -EBADMSG (not base64 of a JSON object; e is
 * then empty). */
int oauth_sasl_parse_error(const char *b64, size_t n,
			   struct oauth_sasl_error *e);

/* The base64 line answering that challenge: "AQ==" (a lone 0x01, RFC
 * 7628 §3.2.3) for OAUTHBEARER, "" (an empty line) for XOAUTH2. */
const char *oauth_sasl_error_reply(enum oauth_mech m);

#endif
