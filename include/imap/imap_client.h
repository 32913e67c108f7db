#ifndef POPBRIDGE_IMAP_CLIENT_H
#define POPBRIDGE_IMAP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/buf.h"
#include "daemon/config.h"
#include "imap/imap_parse.h"

/*
 * The IMAP side of one session: connects, logs in with the POP3 user's
 * credentials, then runs commands with numbered tags, pipelined: each is
 * written at once and answers come in order, each command's callbacks
 * seeing the responses between the previous answer and its own. Commands
 * given while the login runs are written as soon as the login is accepted,
 * with CAPABILITY and ID, so the first operation costs no round trip of
 * its own. Replies come back through callbacks, never synchronously
 * from the call that started the command. Once the connection fails (drop, BYE, timeout,
 * protocol error) the client is dead: the running command completes with
 * IMAP_FAIL and later calls return -ENOTCONN. Errors are negative errno
 * codes (util/error.h).
 */

/* A command line (without literal data) may be this long; uid sets are
 * split to stay below it (servers accept 8 KB at least, RFC 7162 §4). */
#define IMAP_CMD_MAX (64u * 1024)
/* Commands in flight at once: commands are pipelined, answers come in
 * order (the fetch window keeps many FETCHes outstanding). */
#define IMAP_PIPELINE_MAX 1024

enum imap_result {
	IMAP_OK = 0,
	IMAP_NO,		/* the server refused the command */
	IMAP_BAD,		/* the server rejected the syntax */
	IMAP_AUTHFAIL,		/* login refused: wrong credentials */
	IMAP_FAIL,		/* connection lost or unusable: permanent */
};

/* Capabilities the bridge cares about. */
enum {
	IMAP_CAP_IMAP4REV1 = 1 << 0,
	IMAP_CAP_AUTH_PLAIN = 1 << 1,
	IMAP_CAP_SASL_IR = 1 << 2,
	IMAP_CAP_LOGINDISABLED = 1 << 3,
	IMAP_CAP_LITERAL_PLUS = 1 << 4,
	IMAP_CAP_LITERAL_MINUS = 1 << 5,
	IMAP_CAP_UIDPLUS = 1 << 6,
	IMAP_CAP_MOVE = 1 << 7,
	IMAP_CAP_ID = 1 << 8,
	IMAP_CAP_STARTTLS = 1 << 9,
	IMAP_CAP_OBJECTID = 1 << 10,	/* RFC 8474: EMAILID */
	IMAP_CAP_X_GM_EXT_1 = 1 << 11,	/* Gmail: X-GM-MSGID */
	IMAP_CAP_AUTH_OAUTHBEARER = 1 << 12,	/* RFC 7628 */
	IMAP_CAP_AUTH_XOAUTH2 = 1 << 13,	/* Google's, Microsoft's */
};

/* Callbacks of one command. Any may be NULL. */
struct imap_cmd_cb {
	/* Each untagged response while the command runs. */
	void (*untagged)(void *ctx, const struct imap_resp *r);
	/* Message data streamed from FETCH responses. */
	void (*body_begin)(void *ctx, uint32_t uid, uint64_t size);
	void (*body_data)(void *ctx, const char *p, size_t n);
	void (*body_end)(void *ctx);
	/* The outcome; text is the server's explanation or our reason. */
	void (*done)(void *ctx, enum imap_result res, const char *text);
	void *ctx;
};

struct imap_client;
struct tls_ctx;

/* A client for the configured upstream; nothing happens until login.
 * tls_ctx (client role) gets a reference of its own; NULL is allowed only
 * with tls = none. */
struct imap_client *imap_client_new(uv_loop_t *loop, const struct config *cfg,
				    struct tls_ctx *tls_ctx,
				    const char *session_id);

/*
 * Resolves and connects, reads the greeting and capabilities, logs in with
 * user/pass (AUTHENTICATE PLAIN when offered, else LOGIN with quoted
 * strings or literals) and sends ID where advertised. The credentials are
 * copied and wiped after use. done reports IMAP_OK, IMAP_AUTHFAIL or
 * IMAP_FAIL (text says why). Returns 0, -EBUSY when already started,
 * -ENOTCONN when dead, -EINVAL for a user name or password over 4096
 * octets, -ENOMEM, or the resolver's error (libuv's negative errno); done
 * is not called then.
 */
int imap_client_login(struct imap_client *c, const char *user, size_t user_len,
		      const char *pass, size_t pass_len,
		      const struct imap_cmd_cb *cb);

/*
 * The same with an OAuth2 access token (token[0..token_len), at most
 * OAUTH_TOKEN_MAX octets): AUTHENTICATE OAUTHBEARER when the server
 * offers it, else XOAUTH2 (SASL-IR when offered, else after "+"). A
 * server that refuses the token sends a JSON error challenge: it is
 * answered (RFC 7628 §3.2.3) and decoded into done's text. A server
 * offering neither mechanism fails the login (IMAP_FAIL). Same returns
 * as imap_client_login.
 */
int imap_client_login_bearer(struct imap_client *c, const char *user,
			     size_t user_len, const char *token,
			     size_t token_len, const struct imap_cmd_cb *cb);

/*
 * Sends one command; the tag is added here. args is the command without
 * tag and CRLF, already safely formed (use imap_string for user data).
 * Returns 0, -ENOTCONN (dead, or not connected and not logging in),
 * -EBUSY (IMAP_PIPELINE_MAX commands in flight, or the login's literals
 * are still going out), -ENOBUFS (over IMAP_CMD_MAX) or -ENOMEM; done is
 * not called then. A command given while the login runs waits for it; if
 * the login fails, such commands complete never (the login's done says
 * why). A write that fails once sent kills the client: done reports
 * IMAP_FAIL, possibly before this returns.
 */
int imap_client_command(struct imap_client *c, const char *args,
			const struct imap_cmd_cb *cb);

/* Commands given between cork and uncork (which nest) go out in one
 * write: a server that drops the connection on reading one of them still
 * answers those before it, and we still read those answers. */
void imap_client_cork(struct imap_client *c);
void imap_client_uncork(struct imap_client *c);

unsigned imap_client_caps(const struct imap_client *c);
bool imap_client_dead(const struct imap_client *c);
const char *imap_client_error(const struct imap_client *c);
/* The response code of the last tagged answer ("EXPUNGEISSUED",
 * "UNAVAILABLE", ...; "" without one), valid until the next command. */
const char *imap_client_code(const struct imap_client *c);

/* Back-pressure: stop and resume reading from the upstream. A pause
 * takes effect between two responses (a response being streamed goes on
 * to the end of what was read); what was read and not parsed waits and is
 * parsed at the loop's next turn after the resume. The command timeout
 * does not run while paused. */
void imap_client_pause(struct imap_client *c);
void imap_client_resume(struct imap_client *c);

/* Sends LOGOUT without waiting for the answer and closes. */
void imap_client_logout(struct imap_client *c);

/* Closes the connection (if any) and frees; *c becomes NULL. No callback
 * fires afterwards. */
void imap_client_free(struct imap_client **c);

#endif
