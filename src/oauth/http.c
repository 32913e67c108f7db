/* Asynchronous HTTP requests for the token endpoints: libcurl's multi
 * interface on the libuv loop (one uv_poll_t per socket, one uv_timer_t). */
#include "oauth/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "daemon/version.h"
#include "util/buf.h"
#include "util/error.h"

struct http_sock {
	uv_poll_t poll;
	struct http_client *c;
	curl_socket_t fd;
	struct http_sock *prev, *next;
};

struct http_client {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	struct curl_slist *headers;
	struct http_req *reqs;		/* running */
	struct http_sock *socks;	/* polled, not yet closing */
	unsigned n_reqs;
	int handles;			/* uv handles not yet closed */
	int depth;			/* inside check_done */
	int closing;			/* http_client_free was called */
	int torn_down;
};

struct http_req {
	struct http_client *c;
	CURL *easy;
	struct http_req *prev, *next;
	struct buf form;		/* secret: refresh tokens, client secrets */
	struct buf body;		/* secret: access tokens */
	size_t body_max;
	int over;			/* the body passed body_max */
	int in_done;
	http_done_cb cb;
	void *ctx;
	char errbuf[CURL_ERROR_SIZE];
};

static int curl_ready = -1;

static int
global_init(void)
{
	if (curl_ready < 0)
		curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
	return curl_ready ? 0 : -EIO;
}

/* -- URLs ------------------------------------------------------------------ */

static bool
loopback_host(const char *host)
{
	struct in_addr a4;

	if (strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return false;
}

/* The parts of url checks and log lines need; each is curl_free'd. */
struct url_parts {
	char *scheme, *host, *port, *user, *password;
};

static void
url_parts_free(struct url_parts *p)
{
	curl_free(p->scheme);
	curl_free(p->host);
	curl_free(p->port);
	curl_free(p->user);
	if (p->password != NULL) {
		memset(p->password, 0, strlen(p->password));
		curl_free(p->password);
	}
	memset(p, 0, sizeof(*p));
}

static int
url_split(const char *url, struct url_parts *p)
{
	CURLU *u;
	int r = 0;

	memset(p, 0, sizeof(*p));
	if (url == NULL || strnlen(url, HTTP_URL_MAX + 1) > HTTP_URL_MAX)
		return -EINVAL;
	if (global_init() < 0)
		return -EIO;
	u = curl_url();
	if (u == NULL)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &p->scheme, 0) != CURLUE_OK)
		r = -EINVAL;
	if (r == 0) {
		/* Absent parts are not errors here (file: has no host). */
		curl_url_get(u, CURLUPART_HOST, &p->host, 0);
		curl_url_get(u, CURLUPART_PORT, &p->port, 0);
		curl_url_get(u, CURLUPART_USER, &p->user, 0);
		curl_url_get(u, CURLUPART_PASSWORD, &p->password, 0);
	}
	curl_url_cleanup(u);
	if (r < 0)
		url_parts_free(p);
	return r;
}

int
http_url_check(const char *url)
{
	struct url_parts p;
	int r;

	r = url_split(url, &p);
	if (r < 0)
		return r;
	if (strcasecmp(p.scheme, "https") != 0 &&
	    strcasecmp(p.scheme, "http") != 0)
		r = -EPROTONOSUPPORT;
	else if (p.host == NULL || p.host[0] == '\0' || p.user != NULL ||
		 p.password != NULL)
		r = -EINVAL;
	else if (strcasecmp(p.scheme, "https") == 0)
		r = 0;
	else if (!loopback_host(p.host))
		r = -EPERM;
	url_parts_free(&p);
	return r;
}

int
http_url_origin(const char *url, char *out, size_t n)
{
	struct url_parts p;
	int r, k;

	if (n == 0)
		return -EINVAL;
	r = url_split(url, &p);
	if (r < 0) {
		snprintf(out, n, "?");
		return r;
	}
	k = snprintf(out, n, "%s://%s%s%s", p.scheme,
		     p.host != NULL ? p.host : "",
		     p.port != NULL ? ":" : "", p.port != NULL ? p.port : "");
	url_parts_free(&p);
	return k < 0 || (size_t)k >= n ? -ENOBUFS : 0;
}

/* -- the loop side ----------------------------------------------------------- */

static void check_done(struct http_client *c);
static void teardown(struct http_client *c);

static void
handle_closed(struct http_client *c)
{
	if (--c->handles == 0 && c->torn_down) {
		curl_slist_free_all(c->headers);
		free(c);
	}
}

static void
on_sock_closed(uv_handle_t *h)
{
	struct http_sock *s = h->data;
	struct http_client *c = s->c;

	free(s);
	handle_closed(c);
}

static void
sock_close(struct http_sock *s)
{
	struct http_client *c = s->c;

	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void
on_poll(uv_poll_t *h, int status, int events)
{
	struct http_sock *s = h->data;
	struct http_client *c = s->c;
	int flags = 0, running;

	if (status < 0)
		flags = CURL_CSELECT_ERR;
	else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	curl_multi_socket_action(c->multi, s->fd, flags, &running);
	check_done(c);
}

static int
on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http_client *c = userp;
	struct http_sock *s = socketp;
	int events = 0;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			if (!c->torn_down)
				curl_multi_assign(c->multi, fd, NULL);
			sock_close(s);
		}
		return 0;
	}
	if (c->torn_down)
		return -1;
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return -1;
		if (uv_poll_init_socket(c->loop, &s->poll, fd) < 0) {
			free(s);
			return -1;
		}
		s->c = c;
		s->fd = fd;
		s->poll.data = s;
		s->next = c->socks;
		if (c->socks != NULL)
			c->socks->prev = s;
		c->socks = s;
		c->handles++;
		curl_multi_assign(c->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	if (uv_poll_start(&s->poll, events, on_poll) < 0)
		return -1;
	return 0;
}

static void
on_timeout(uv_timer_t *t)
{
	struct http_client *c = t->data;
	int running;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(c);
}

/* curl asks for a wake-up; the action itself must not run from here. */
static int
on_timer_set(CURLM *multi, long ms, void *userp)
{
	struct http_client *c = userp;

	(void)multi;
	if (c->torn_down)
		return 0;
	if (ms < 0)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, on_timeout, (uint64_t)ms, 0);
	return 0;
}

static void
on_timer_closed(uv_handle_t *h)
{
	handle_closed(h->data);
}

int
http_client_new(uv_loop_t *loop, struct http_client **c_r)
{
	struct http_client *c;
	struct curl_slist *h;

	*c_r = NULL;
	if (global_init() < 0)
		return -EIO;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->loop = loop;
	c->multi = curl_multi_init();
	h = curl_slist_append(NULL, "Accept: application/json");
	if (h != NULL)
		c->headers = h;
	/* No "Expect: 100-continue" round trip for a large form. */
	if (h != NULL && (h = curl_slist_append(c->headers, "Expect:")) != NULL)
		c->headers = h;
	if (c->multi == NULL || h == NULL) {
		if (c->multi != NULL)
			curl_multi_cleanup(c->multi);
		curl_slist_free_all(c->headers);
		free(c);
		return -ENOMEM;
	}
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->handles = 1;
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	*c_r = c;
	return 0;
}

/* -- requests ---------------------------------------------------------------- */

static size_t
on_write(char *p, size_t size, size_t nmemb, void *userp)
{
	struct http_req *r = userp;
	size_t n = size * nmemb;

	if (n > r->body_max - r->body.len) {
		r->over = 1;
		return 0;	/* CURLE_WRITE_ERROR ends the transfer */
	}
	if (buf_append(&r->body, p, n) < 0)
		return 0;
	return n;
}

static void
req_unlink(struct http_req *r)
{
	struct http_client *c = r->c;

	if (r->prev != NULL)
		r->prev->next = r->next;
	else if (c->reqs == r)
		c->reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	c->n_reqs--;
}

static void
req_free(struct http_req *r)
{
	if (r->easy != NULL)
		curl_easy_cleanup(r->easy);
	buf_free(&r->form);
	buf_free(&r->body);
	free(r);
}

static int
map_error(const struct http_req *r, CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_USE_SSL_FAILED:
		return -EPROTO;
	case CURLE_FILESIZE_EXCEEDED:
		return -ENOBUFS;
	case CURLE_WRITE_ERROR:
		return r->over ? -ENOBUFS : -ENOMEM;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static void
finish(struct http_req *r, CURLcode rc)
{
	struct http_client *c = r->c;
	struct http_response resp;
	const char *why;
	char *ct = NULL;
	long status = 0;
	int err;

	err = map_error(r, rc);
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ct);
	if (err == 0 && (status < 100 || status > 599))
		err = -EPROTO;
	curl_multi_remove_handle(c->multi, r->easy);
	req_unlink(r);
	if (err == -ENOBUFS)
		why = "response body over its limit";
	else
		why = r->errbuf[0] != '\0' ? r->errbuf : curl_easy_strerror(rc);
	/* The body gets its NUL: buf_reserve allowed body_max + 1. */
	if (err == 0 && buf_append(&r->body, "", 1) == 0)
		r->body.len--;
	else if (err == 0)
		err = -ENOMEM, why = "out of memory";
	resp.status = status;
	resp.body = r->body.data != NULL ? r->body.data : "";
	resp.body_len = r->body.len;
	resp.content_type = ct != NULL ? ct : "";
	r->in_done = 1;
	r->cb(r->ctx, err, err == 0 ? &resp : NULL, err == 0 ? "" : why);
	req_free(r);
}

static void
check_done(struct http_client *c)
{
	struct http_req *r;
	CURLMsg *m;
	CURLcode rc;
	char *priv;
	int left;

	c->depth++;
	while (!c->closing && (m = curl_multi_info_read(c->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		rc = m->data.result;
		priv = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
		r = (struct http_req *)priv;
		if (r != NULL)
			finish(r, rc);
	}
	if (--c->depth == 0 && c->closing && !c->torn_down)
		teardown(c);
}

#define SETOPT(...) (curl_easy_setopt(__VA_ARGS__) != CURLE_OK)

static int
start(struct http_client *c, const char *url, const char *form,
      size_t form_len, bool post, const struct http_opts *o,
      http_done_cb cb, void *ctx, struct http_req **req_r)
{
	struct http_opts none = { 0 };
	struct http_req *r;
	CURL *e;
	int bad = 0;
	size_t max;
	long tmo;
	int err;

	if (req_r != NULL)
		*req_r = NULL;
	if (c->closing)
		return -ESHUTDOWN;
	err = http_url_check(url);
	if (err < 0)
		return err;
	if (o == NULL)
		o = &none;
	max = o->body_max ? o->body_max : HTTP_BODY_MAX;
	tmo = o->timeout_ms ? (long)o->timeout_ms : (long)HTTP_TIMEOUT_DEFAULT_MS;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	r->c = c;
	r->cb = cb;
	r->ctx = ctx;
	r->body_max = max;
	buf_init_secret(&r->form, form_len + 1);
	buf_init_secret(&r->body, max + 1);
	if (buf_append(&r->form, form != NULL ? form : "", form_len) < 0 ||
	    buf_append(&r->form, "", 1) < 0 || (e = curl_easy_init()) == NULL) {
		req_free(r);
		return -ENOMEM;
	}
	r->easy = e;
	bad |= SETOPT(e, CURLOPT_URL, url);
	bad |= SETOPT(e, CURLOPT_PRIVATE, (char *)r);
	bad |= SETOPT(e, CURLOPT_WRITEFUNCTION, on_write);
	bad |= SETOPT(e, CURLOPT_WRITEDATA, r);
	bad |= SETOPT(e, CURLOPT_ERRORBUFFER, r->errbuf);
	bad |= SETOPT(e, CURLOPT_NOSIGNAL, 1L);
	bad |= SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
	bad |= SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
	bad |= SETOPT(e, CURLOPT_TIMEOUT_MS, tmo);
	bad |= SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, tmo);
	bad |= SETOPT(e, CURLOPT_HTTPHEADER, c->headers);
	bad |= SETOPT(e, CURLOPT_USERAGENT,
			       POPBRIDGE_NAME "/" POPBRIDGE_VERSION);
	bad |= SETOPT(e, CURLOPT_SSL_VERIFYPEER, 1L);
	bad |= SETOPT(e, CURLOPT_SSL_VERIFYHOST, 2L);
	bad |= SETOPT(e, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
	bad |= SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)max);
	if (o->ca_file != NULL)
		bad |= SETOPT(e, CURLOPT_CAINFO, o->ca_file);
	if (post) {
		bad |= SETOPT(e, CURLOPT_POST, 1L);
		bad |= SETOPT(e, CURLOPT_POSTFIELDS, r->form.data);
		bad |= SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE,
				       (curl_off_t)form_len);
	} else {
		bad |= SETOPT(e, CURLOPT_HTTPGET, 1L);
	}
	if (bad) {
		req_free(r);
		return -EIO;
	}
	if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
		req_free(r);
		return -EIO;
	}
	r->next = c->reqs;
	if (c->reqs != NULL)
		c->reqs->prev = r;
	c->reqs = r;
	c->n_reqs++;
	if (req_r != NULL)
		*req_r = r;
	return 0;
}

int
http_post_form(struct http_client *c, const char *url, const char *form,
	       size_t form_len, const struct http_opts *opts, http_done_cb cb,
	       void *ctx, struct http_req **req_r)
{
	return start(c, url, form, form_len, true, opts, cb, ctx, req_r);
}

int
http_get(struct http_client *c, const char *url, const struct http_opts *opts,
	 http_done_cb cb, void *ctx, struct http_req **req_r)
{
	return start(c, url, NULL, 0, false, opts, cb, ctx, req_r);
}

void
http_cancel(struct http_req **req)
{
	struct http_req *r;

	if (req == NULL || *req == NULL)
		return;
	r = *req;
	*req = NULL;
	if (r->in_done)
		return;		/* finish() frees it when the callback returns */
	curl_multi_remove_handle(r->c->multi, r->easy);
	req_unlink(r);
	req_free(r);
}

unsigned
http_client_active(const struct http_client *c)
{
	return c->n_reqs;
}

uv_loop_t *
http_client_loop(const struct http_client *c)
{
	return c->loop;
}

static void
teardown(struct http_client *c)
{
	struct http_req *r;

	c->torn_down = 1;
	while ((r = c->reqs) != NULL) {
		curl_multi_remove_handle(c->multi, r->easy);
		req_unlink(r);
		req_free(r);
	}
	/* May report sockets removed: on_socket closes their polls. */
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	while (c->socks != NULL)
		sock_close(c->socks);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void
http_client_free(struct http_client **cp)
{
	struct http_client *c = *cp;

	if (c == NULL)
		return;
	*cp = NULL;
	c->closing = 1;
	if (c->depth == 0)
		teardown(c);
}
