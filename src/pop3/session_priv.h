#ifndef POPBRIDGE_SESSION_PRIV_H
#define POPBRIDGE_SESSION_PRIV_H

/*
 * Inside a POP3 session, shared by the files of src/pop3 and nothing else:
 * session.c (I/O, timers, state, end), pop3_commands.c (the command table
 * and the TRANSACTION commands), pop3_login.c (AUTHORIZATION) and
 * pop3_transfer.c (RETR and TOP). The RFC state changes only in
 * session_set_state and the wait state only in session_set_wait; the
 * session ends only through session_end, which releases everything once
 * libuv has let go.
 */

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "accounts/account_login.h"
#include "daemon/server.h"
#include "mailbox/maildrop.h"
#include "mailbox/upstream.h"
#include "net/conn.h"
#include "pop3/dotstuff.h"
#include "pop3/pop3_parse.h"
#include "pop3/session.h"
#include "util/buf.h"

/* Reading from the client pauses while this much input waits unprocessed;
 * one read past the mark must still fit, hence the maximum. */
#define SESSION_IN_PAUSE (16u * 1024)
#define SESSION_IN_MAX (SESSION_IN_PAUSE + CONN_READ_MAX)
/* An input buffer larger than this is released once empty, so a burst
 * does not stay with an idle session. */
#define SESSION_IN_KEEP (4u * 1024)
/* Output queued beyond this pauses whatever produces it (RFC 1939 has no
 * flow control: a client that does not read must not cost memory). */
#define SESSION_OUT_HIGH (256u * 1024)
/* The most a session plans to ask for ahead at once (the fetch window). */
#define SESSION_PLAN_MAX 256
/* Segments of a relayed chunk sent without copying (dots and CRs added). */
#define SESSION_XFER_SEGS 64
/* TOP reads the body in partial fetches growing up to this size. */
#define SESSION_TOP_CHUNK_MIN (16u * 1024)
#define SESSION_TOP_CHUNK_MAX (4u * 1024 * 1024)
/* RFC 1939 §4: three bad logins end the session. */
#define SESSION_AUTH_TRIES 3
/* A USER name is bounded by the command line anyway. */
#define SESSION_USER_MAX POP3_LINE_MAX

enum session_state {
	SESSION_AUTHORIZATION = 0,
	SESSION_TRANSACTION,
	SESSION_UPDATE,
	SESSION_CLOSED,
};

/* What the session waits for while busy. */
enum session_wait {
	WAIT_NONE = 0,
	WAIT_LOGIN,		/* upstream_open */
	WAIT_AUTH_DELAY,	/* the pause after a failed login */
	WAIT_AUTH_LINE,		/* AUTH PLAIN continuation line */
	WAIT_RETR,		/* message data */
	WAIT_TOP_HEADER,
	WAIT_TOP_TEXT,
	WAIT_LISTING,		/* LIST/UIDL lines held back by a full queue */
	WAIT_UPDATE,		/* QUIT's deletions */
	WAIT_DEVICE,		/* an account's device password check */
	WAIT_TOKEN,		/* an OAuth2 account's access token */
};

struct oauth_login;

struct session {
	struct server *srv;
	struct server_member member;	/* in srv's registry */
	/* What the session started with, kept across reloads (SIGHUP): the
	 * configuration and the upstream TLS context; references of its own. */
	const struct config *cfg;
	struct tls_ctx *tls_client;
	char id[24];
	char peer[48];			/* the client (after PROXY) */
	bool peer_loopback;
	bool proxy_pending;		/* waiting for the PROXY header */
	bool implicit_tls;
	bool tls_up;			/* a TLS handshake finished */
	struct conn *client;
	struct upstream *up;
	struct maildrop md;
	struct uidmap *map;		/* the account's, from srv->maps */
	struct uidmap_hasher *hasher;	/* fingerprints of what RETR sends */
	enum session_state state;
	enum session_wait wait;
	uv_timer_t timer;		/* idle timeout and login delay */
	uint64_t started_ms;
	size_t last_unsent;		/* output the client had not taken */

	struct pop3_line_reader reader;
	struct buf in;			/* client bytes not yet processed */
	struct buf user;		/* USER name awaiting PASS */
	bool have_user;
	char log_user[65];		/* the name as logs show it */
	unsigned auth_failures;
	char pending_reply[160];	/* sent when the login delay ends */
	struct account_login *device_job; /* WAIT_DEVICE's (pop3_login.c) */
	struct oauth_login *oauth;	/* an OAuth2 login (pop3_login.c) */

	/* The running RETR or TOP. */
	struct maildrop_msg *msg;
	uint32_t msg_n;
	uint32_t last_retr;		/* the last message RETR asked for */
	uint32_t last_top;		/* the last message TOP n 0 asked for */
	bool in_order;			/* ... and it came after the one before */
	bool xfer_started;
	bool xfer_paused;
	struct dotstuff ds;
	uint64_t top_lines;
	uint64_t top_offset, top_chunk;
	uint64_t top_text_size;		/* the text's size, as listed */
	uint64_t top_asked;		/* octets the running part asked */

	/* The running LIST or UIDL listing. */
	bool listing_uidl;
	uint32_t listing_next;

	/* Counters for the closing log line. */
	unsigned n_listed;
	unsigned n_retrieved;
	unsigned n_deleted;
	uint64_t bytes_out;
};

/* RFC 3206 response codes, and the word fetchmail looks for in "try again
 * later" errors (it ignores [SYS/TEMP]). */
#define TEMP_FAIL "-ERR [SYS/TEMP] "
#define WAIT_HINT ", please wait and try again later"

/* --- session.c ---------------------------------------------------------- */

/* The only places the RFC state and the wait state change; both log the
 * transition at debug. */
void session_set_state(struct session *s, enum session_state st);
void session_set_wait(struct session *s, enum session_wait w);

/* Ends the session; reason goes to the log. Safe to call more than once
 * and from inside any callback: memory is released later by the loop. */
void session_end(struct session *s, const char *reason);

/* Replies: one line, CRLF added. */
void session_reply(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The upstream side, created on first use (PASS or AUTH); NULL when out
 * of memory. */
struct upstream *session_upstream(struct session *s);
/* The user name fit for a log line: printable, no quotes or spaces, else a
 * placeholder. */
const char *session_log_user(struct session *s);
/* Waits ms before pop3_login_delay_done (the pause after a bad login). */
void session_delay(struct session *s, uint64_t ms);
/* Continues processing pipelined input once the session is not busy. */
void session_resume(struct session *s);

/* "-ERR [SYS/TEMP] what (why), please wait and try again later". */
void session_reply_temp(struct session *s, const char *what, const char *why);
/* Whether the client connection runs TLS; whether STLS may start it. */
bool session_tls_active(const struct session *s);
bool session_stls_possible(const struct session *s);

/* --- pop3_commands.c ---------------------------------------------------- */

/* Handles one complete command line. */
void pop3_dispatch(struct session *s, const char *line, size_t len);
/* Continues a LIST or UIDL listing after output drained. */
void pop3_listing(struct session *s);
/* The upstream finished what the session waits for: routes it to the
 * login, the transfer or QUIT. */
void pop3_upstream_done(struct session *s, enum upstream_status st,
			const char *why);

/* --- pop3_login.c ------------------------------------------------------- */

/* RFC 2595 §2: whether a password may travel on this connection. */
bool pop3_login_plaintext_ok(const struct session *s);
void pop3_login_user(struct session *s, const struct pop3_cmd *cmd);
void pop3_login_pass(struct session *s, const struct pop3_cmd *cmd);
void pop3_login_auth(struct session *s, const struct pop3_cmd *cmd);
void pop3_login_apop(struct session *s, const struct pop3_cmd *cmd);
/* The continuation line of AUTH PLAIN (WAIT_AUTH_LINE). */
void pop3_login_line(struct session *s, const char *line, size_t len);
/* The upstream login finished. */
void pop3_login_done(struct session *s, enum upstream_status st,
		     const char *why);
/* The pause after a failed login ended: sends the held reply. */
void pop3_login_delay_done(struct session *s);
/* The session ends: forgets a device password check still running. */
void pop3_login_abort(struct session *s);

/* --- pop3_transfer.c ---------------------------------------------------- */

/* RETR n / TOP n lines of message m (checked by the caller). */
void pop3_xfer_retr(struct session *s, struct maildrop_msg *m, uint32_t n);
void pop3_xfer_top(struct session *s, struct maildrop_msg *m, uint32_t n,
		   uint32_t lines);
/* Message bytes from the upstream. */
void pop3_xfer_data(struct session *s, const char *p, size_t n);
/* The client's output drained: the upstream may send again. */
void pop3_xfer_resume(struct session *s);
/* Asks the upstream now for what the client will most likely want after
 * message `after` (prefetch_plan), within the read_ahead budget. */
void pop3_xfer_window_fill(struct session *s, uint32_t after, bool header,
			   bool in_order);
/* The upstream finished the running RETR / TOP part. */
void pop3_xfer_retr_done(struct session *s, enum upstream_status st,
			 const char *why);
void pop3_xfer_top_done(struct session *s, enum upstream_status st,
			const char *why);

#endif
