#ifndef POPBRIDGE_OAUTH_HTTP_H
#define POPBRIDGE_OAUTH_HTTP_H

#include <stddef.h>
#include <uv.h>

/*
 * An asynchronous HTTP client on the libuv loop, for the OAuth2 token
 * endpoints: libcurl's multi interface driven by one uv_poll_t per socket
 * curl uses and one uv_timer_t (curl_multi_socket_action), so a request
 * never blocks the loop. Requests are one-shot: a form POST or a GET, a
 * bounded response body, a completion callback. Redirects are not
 * followed; TLS is verified (chain and host name) against the system
 * trust store or a ca_file; plain http:// is refused unless the host is
 * loopback (127.0.0.0/8, ::1, localhost). Loopback is never proxied;
 * other hosts honour the usual proxy environment variables.
 *
 * Request bodies (forms carry refresh tokens and client secrets) and
 * response bodies (they carry access tokens) are kept in wiped memory;
 * nothing here logs, and curl's verbose output is never turned on.
 * Errors are negative errno codes (util/error.h).
 */

/* A response body may be this long unless the request says otherwise
 * (token answers are a few KB; Microsoft's JWTs reach 4 KB). */
#define HTTP_BODY_MAX (64u * 1024)
/* The longest URL accepted. */
#define HTTP_URL_MAX 4096
/* A request's bound when its options give none. */
#define HTTP_TIMEOUT_DEFAULT_MS 30000u

struct http_client;
struct http_req;

struct http_opts {
	unsigned timeout_ms;	/* the whole request; 0: the default */
	size_t body_max;	/* 0: HTTP_BODY_MAX */
	const char *ca_file;	/* NULL: the system trust store */
};

struct http_response {
	long status;		/* 100..599 */
	const char *body;	/* body_len bytes and a NUL */
	size_t body_len;
	const char *content_type;	/* "" when the server sent none */
};

/*
 * The end of a request, called from the loop, never from the call that
 * started it. err 0: a response arrived (any status) and resp describes
 * it; otherwise resp is NULL and err is -ETIMEDOUT (the request's bound),
 * -ECONNREFUSED, -EHOSTUNREACH (name not resolved, no route),
 * -ECONNRESET (dropped, nothing or garbage received), -EPROTO (TLS
 * failed, certificate not trusted, not HTTP), -ENOBUFS (body over its
 * bound) or -EIO. why is a short text for a log line (curl's words: host
 * and port at most, never a body or query). Both are valid only during
 * the call. The request is over once the callback runs: forget the
 * handle (http_cancel on it from inside the callback does nothing).
 */
typedef void (*http_done_cb)(void *ctx, int err,
			     const struct http_response *resp,
			     const char *why);

/* A client on loop. Returns 0 and *c_r, or -ENOMEM / -EIO (libcurl did
 * not initialise). */
int http_client_new(uv_loop_t *loop, struct http_client **c_r);

/* Cancels every request (no callback fires) and closes the handles; the
 * memory goes once libuv has closed them, so let the loop run. *c
 * becomes NULL. Safe from inside a done callback. */
void http_client_free(struct http_client **c);

/* Whether url may be requested: 0; -EINVAL (not a URL, over
 * HTTP_URL_MAX, or with user:password in it), -EPROTONOSUPPORT (neither
 * http nor https), -EPERM (http:// to a host that is not loopback). */
int http_url_check(const char *url);

/* "scheme://host[:port]" of url into out (for log lines: no user, path
 * or query). Returns 0, or -EINVAL (and out "?"). */
int http_url_origin(const char *url, char *out, size_t n);

/*
 * Starts a POST of form[0..form_len) as application/x-www-form-urlencoded
 * (Accept: application/json); form is copied (and wiped after the
 * request). opts may be NULL. Returns 0 and the request in *req_r (may
 * be NULL when the caller never cancels), or http_url_check's codes,
 * -ENOMEM, -EIO, -ESHUTDOWN (the client is being freed); cb is not
 * called then.
 */
int http_post_form(struct http_client *c, const char *url, const char *form,
		   size_t form_len, const struct http_opts *opts,
		   http_done_cb cb, void *ctx, struct http_req **req_r);

/* The same for a GET. */
int http_get(struct http_client *c, const char *url,
	     const struct http_opts *opts, http_done_cb cb, void *ctx,
	     struct http_req **req_r);

/* Stops a request: its callback never fires; *req becomes NULL. Safe from
 * inside any done callback (for this request or another); NULL and an
 * already NULL handle are allowed. */
void http_cancel(struct http_req **req);

/* Requests running (for tests and shutdown). */
unsigned http_client_active(const struct http_client *c);
/* The loop the client runs on. */
uv_loop_t *http_client_loop(const struct http_client *c);

#endif
