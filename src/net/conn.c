/* A libuv TCP stream with optional TLS (memory BIOs): reads, a write queue
 * with back-pressure, and data / drained / failed events for its owner. */
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <openssl/crypto.h>

#include "util/buf.h"
#include "util/error.h"
#include "util/log.h"
#include "net/tls.h"

/* Queued output beyond this means the peer stopped reading long ago and
 * the protocol code failed to throttle: fail the connection, never grow. */
#define CONN_OUT_MAX (8u * 1024 * 1024)

struct conn {
	uv_tcp_t tcp;
	uv_timer_t linger;
	uv_connect_t connect_req;
	uv_shutdown_t shutdown_req;
	const struct conn_events *ev;
	void *ctx;
	struct buf out;		/* written, not yet flushed (plaintext) */
	struct tls *tls;	/* NULL for plain TCP */
	int tls_done;		/* handshake finished */
	size_t in_flight;	/* flushed, not yet confirmed by libuv */
	int handles_open;
	int reading;
	int failed;
	int closing;
	int want_drained;
	int wipe_reads;
	char peer[INET6_ADDRSTRLEN];
	int peer_af;
	unsigned char peer_bin[16];
};

struct write_req {
	uv_write_t req;
	struct conn *c;
	char *data;
	size_t len;
	int secret;		/* wipe data before freeing it */
};

/*
 * Reads are handled to completion inside the read callback, so one scratch
 * buffer serves every connection of the process; per-connection buffers
 * would cost 64 KB per idle session.
 */
static char read_scratch[CONN_READ_MAX];
/* Decrypted bytes, handed out the same way. */
static char plain_scratch[CONN_READ_MAX];
/* Ciphertext in and plaintext out pass the memory BIOs this much at a
 * time: below TLS_BIO_KEEP, so that neither grows and is reallocated. */
#define CONN_TLS_STEP (32u * 1024)
/* conn_writev sends at most this many segments straight away. */
#define CONN_IOV_MAX 64
/* An idle connection keeps no large output buffer. */
#define CONN_OUT_KEEP (16u * 1024)

static void on_handle_closed(uv_handle_t *h);

static struct conn *
conn_alloc(uv_loop_t *loop)
{
	struct conn *c;

	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	if (uv_tcp_init(loop, &c->tcp) < 0) {
		free(c);
		return NULL;
	}
	c->tcp.data = c;
	uv_timer_init(loop, &c->linger);
	c->linger.data = c;
	c->handles_open = 2;
	buf_init(&c->out, CONN_OUT_MAX);
	strcpy(c->peer, "?");
	return c;
}

/* Used when a connection fails before anyone owns it. */
static void
conn_discard(struct conn *c)
{
	c->closing = 1;
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	uv_close((uv_handle_t *)&c->linger, on_handle_closed);
}

static void
conn_note_peer(struct conn *c)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0)
		return;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		uv_ip4_name(sin, c->peer, sizeof(c->peer));
		c->peer_af = AF_INET;
		memcpy(c->peer_bin, &sin->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		uv_ip6_name(sin6, c->peer, sizeof(c->peer));
		c->peer_af = AF_INET6;
		memcpy(c->peer_bin, &sin6->sin6_addr, 16);
	}
}

struct conn *
conn_accept(uv_loop_t *loop, uv_stream_t *server)
{
	struct conn *c;

	c = conn_alloc(loop);
	if (c == NULL)
		return NULL;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		conn_discard(c);
		return NULL;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	conn_note_peer(c);
	return c;
}

static void
on_connected(uv_connect_t *req, int status)
{
	struct conn *c = req->data;

	if (c->closing)
		return;
	if (status == 0) {
		uv_tcp_nodelay(&c->tcp, 1);
		conn_note_peer(c);
	} else {
		c->failed = 1;
	}
	if (c->ev != NULL && c->ev->connected != NULL)
		c->ev->connected(c->ctx, status);
}

struct conn *
conn_connect(uv_loop_t *loop, const struct sockaddr *addr,
	     const struct conn_events *ev, void *ctx)
{
	struct conn *c;

	c = conn_alloc(loop);
	if (c == NULL)
		return NULL;
	conn_set_events(c, ev, ctx);
	c->connect_req.data = c;
	if (uv_tcp_connect(&c->connect_req, &c->tcp, addr, on_connected) < 0) {
		conn_discard(c);
		return NULL;
	}
	return c;
}

void
conn_set_events(struct conn *c, const struct conn_events *ev, void *ctx)
{
	c->ev = ev;
	c->ctx = ctx;
}

static void
conn_fail(struct conn *c, int status)
{
	if (c->failed || c->closing)
		return;
	c->failed = 1;
	conn_pause(c);
	if (c->ev != NULL && c->ev->failed != NULL)
		c->ev->failed(c->ctx, status);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	(void)h;
	(void)suggested;
	b->base = read_scratch;
	b->len = sizeof(read_scratch);
}

static int tls_flush_raw(struct conn *c);

static void
tls_failed(struct conn *c, const char *why)
{
	c->failed = 1;
	conn_pause(c);
	if (c->ev != NULL && c->ev->tls_ready != NULL)
		c->ev->tls_ready(c->ctx, why);
}

/* Advances the handshake; 1 when the connection may carry data. */
static int
tls_progress(struct conn *c)
{
	int r;

	if (c->tls_done)
		return 1;
	r = tls_handshake(c->tls);
	tls_flush_raw(c);
	if (r < 0) {
		tls_failed(c, tls_error(c->tls));
		return 0;
	}
	if (r == 0)
		return 0;
	c->tls_done = 1;
	if (c->ev != NULL && c->ev->tls_ready != NULL)
		c->ev->tls_ready(c->ctx, NULL);
	return !c->closing && !c->failed;
}

/* Hands plain_scratch[0..*got) to the reader; false when the connection
 * can no longer be used afterwards. */
static bool
deliver_plain(struct conn *c, size_t *got)
{
	if (*got > 0 && c->ev != NULL && c->ev->data != NULL)
		c->ev->data(c->ctx, plain_scratch, *got);
	if (c->wipe_reads)
		OPENSSL_cleanse(plain_scratch, *got);
	*got = 0;
	return !c->closing && !c->failed && c->tls != NULL;
}

/*
 * Ciphertext enters the input BIO a step at a time, each step decrypted
 * before the next, so that the BIO stays small; plaintext collects in
 * plain_scratch so that a peer's small records reach the reader (and leave
 * again) as one large chunk.
 */
static void
tls_input(struct conn *c, const char *p, size_t n)
{
	size_t k, got = 0;
	long r;

	do {
		/* The handshake takes whatever came at once. */
		k = c->tls_done && n > CONN_TLS_STEP ? CONN_TLS_STEP : n;
		if (tls_feed(c->tls, p, k) < 0) {
			tls_failed(c, tls_error(c->tls));
			return;
		}
		p += k;
		n -= k;
		if (!tls_progress(c))
			return;
		while ((r = tls_read(c->tls, plain_scratch + got,
				     sizeof(plain_scratch) - got)) > 0) {
			got += (size_t)r;
			if (got == sizeof(plain_scratch) &&
			    !deliver_plain(c, &got))
				return;
		}
		if (r < 0) {
			if (!deliver_plain(c, &got))
				return;
			tls_flush_raw(c);
			conn_fail(c, tls_closed(c->tls) ? UV_EOF : UV_EPROTO);
			return;
		}
	} while (n > 0);
	if (!deliver_plain(c, &got))
		return;
	tls_flush_raw(c);
	tls_release(c->tls);
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct conn *c = s->data;

	if (n == 0 || c->closing)
		return;
	if (n < 0) {
		conn_fail(c, (int)n);
		return;
	}
	conn_feed(c, b->base, (size_t)n);
	if (c->wipe_reads)
		OPENSSL_cleanse(b->base, (size_t)n);
}

void
conn_feed(struct conn *c, const char *p, size_t n)
{
	if (n == 0 || c->closing || c->failed)
		return;
	if (c->tls != NULL) {
		tls_input(c, p, n);
		return;
	}
	if (c->ev != NULL && c->ev->data != NULL)
		c->ev->data(c->ctx, p, n);
}

int
conn_start(struct conn *c)
{
	int r;

	if (c->reading || c->failed || c->closing)
		return 0;
	r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (r == 0)
		c->reading = 1;
	return r;
}

void
conn_pause(struct conn *c)
{
	if (!c->reading)
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = 0;
}

int
conn_write(struct conn *c, const void *p, size_t n)
{
	int r;

	if (c->failed || c->closing)
		return -EPIPE;
	r = buf_append(&c->out, p, n);
	if (r < 0)
		conn_fail(c, UV_ENOBUFS);
	return r;
}

/* Bytes uv_try_write took from v[0..n), or 0 when it could not be tried
 * or the socket is full (a failure shows at the next write). */
static size_t
try_send(struct conn *c, const struct iovec *v, size_t n)
{
	uv_buf_t b[CONN_IOV_MAX];
	size_t i;
	int r;

	if (n == 0 || c->tls != NULL || c->out.len > 0 || c->in_flight > 0 ||
	    n > CONN_IOV_MAX)
		return 0;
	for (i = 0; i < n; i++)
		b[i] = uv_buf_init(v[i].iov_base, (unsigned)v[i].iov_len);
	r = uv_try_write((uv_stream_t *)&c->tcp, b, (unsigned)n);
	return r > 0 ? (size_t)r : 0;
}

int
conn_writev(struct conn *c, const struct iovec *v, size_t n)
{
	size_t sent, left, i;
	int r = 0;

	if (c->failed || c->closing)
		return -EPIPE;
	/* libuv asserts on a write of no buffers: nothing to send is a
	 * normal case (an empty quoted body, a chunk of nothing). */
	for (i = 0, left = 0; i < n; i++)
		left += v[i].iov_len;
	if (left == 0)
		return 0;
	sent = try_send(c, v, n);
	if (sent > 0 && c->ev != NULL && c->ev->progress != NULL)
		c->ev->progress(c->ctx);
	/* One allocation for the rest (the queue is freed when idle). */
	if (left > sent)
		(void)buf_reserve(&c->out, left - sent);
	for (i = 0; i < n && r == 0; i++) {
		if (sent >= v[i].iov_len) {
			sent -= v[i].iov_len;
			continue;
		}
		r = conn_write(c, (const char *)v[i].iov_base + sent,
			       v[i].iov_len - sent);
		sent = 0;
	}
	return r;
}

struct buf *
conn_outbuf(struct conn *c)
{
	return &c->out;
}

static void
on_written(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct conn *c = w->c;

	c->in_flight -= w->len;
	if (w->secret)
		OPENSSL_cleanse(w->data, w->len);
	free(w->data);
	free(w);
	if (c->closing)
		return;
	if (status < 0) {
		conn_fail(c, status);
		return;
	}
	/* The plaintext queue keeps its memory while a transfer streams
	 * through TLS, and lets it go once everything has been sent. */
	if (c->in_flight == 0 && c->out.len == 0) {
		if (c->out.cap > CONN_OUT_KEEP)
			buf_free(&c->out);
		if (c->tls != NULL)
			tls_release(c->tls);
	}
	if (c->ev != NULL && c->ev->progress != NULL)
		c->ev->progress(c->ctx);
	if (c->closing || c->failed)
		return;
	if (c->want_drained && conn_pending(c) <= CONN_LOW_WATER) {
		c->want_drained = 0;
		if (c->ev != NULL && c->ev->drained != NULL)
			c->ev->drained(c->ctx);
	}
}

/* Sends b's bytes as they are; b is emptied (its memory changes hands). */
static int
write_raw(struct conn *c, struct buf *bytes)
{
	struct write_req *w;
	uv_buf_t b;
	int r;

	if (bytes->len == 0)
		return 0;
	w = malloc(sizeof(*w));
	if (w == NULL) {
		conn_fail(c, UV_ENOMEM);
		return UV_ENOMEM;
	}
	w->c = c;
	w->data = bytes->data;
	w->len = bytes->len;
	w->secret = bytes->secret;
	buf_init(bytes, bytes->max);
	b = uv_buf_init(w->data, (unsigned)w->len);
	c->in_flight += w->len;
	r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
	if (r < 0) {
		c->in_flight -= w->len;
		free(w->data);
		free(w);
		conn_fail(c, r);
	}
	return r;
}

/* Moves TLS records to the socket. */
static int
tls_flush_raw(struct conn *c)
{
	struct buf enc;
	int r, w;

	do {
		buf_init(&enc, CONN_OUT_MAX);
		r = tls_take_output(c->tls, &enc);
		if (r < 0 && r != -ENOBUFS) {
			buf_free(&enc);
			conn_fail(c, UV_ENOMEM);
			return r;
		}
		w = write_raw(c, &enc);
		if (w < 0) {
			buf_free(&enc);
			return w;
		}
		buf_free(&enc);
	} while (r == -ENOBUFS);
	return 0;
}

void
conn_mark_secret(struct conn *c)
{
	c->out.secret = 1;
}

void
conn_wipe_reads(struct conn *c)
{
	c->wipe_reads = 1;
}

/* Encrypts the queued plaintext a step at a time into one chunk of
 * records, so that the output BIO stays small. */
static int
tls_encrypt(struct conn *c)
{
	struct buf enc;
	size_t off, k;
	int r = 0;

	/* Records add well under 1% to CONN_OUT_MAX of plaintext. */
	buf_init(&enc, 2 * CONN_OUT_MAX);
	/* Room for the records at once (their overhead is ~30 bytes per
	 * 16 KB) instead of doublings. */
	(void)buf_reserve(&enc, c->out.len + c->out.len / 256 + 1024);
	for (off = 0; off < c->out.len && r == 0; off += k) {
		k = c->out.len - off;
		if (k > CONN_TLS_STEP)
			k = CONN_TLS_STEP;
		if (tls_write(c->tls, c->out.data + off, k) < 0) {
			tls_failed(c, tls_error(c->tls));
			r = -EPROTO;
		} else if (tls_take_output(c->tls, &enc) < 0) {
			conn_fail(c, UV_ENOMEM);
			r = -ENOMEM;
		}
	}
	if (r == 0)
		r = write_raw(c, &enc);
	buf_free(&enc);
	return r;
}

int
conn_flush(struct conn *c)
{
	int r;

	if (c->out.len == 0 || c->failed || c->closing)
		return 0;
	if (c->tls == NULL)
		return write_raw(c, &c->out);
	r = tls_encrypt(c);
	if (c->out.secret) {
		buf_wipe(&c->out);
		c->out.secret = 0;
	}
	buf_reset(&c->out);
	if (r < 0)
		return r;
	return tls_flush_raw(c);
}

int
conn_start_tls(struct conn *c, struct tls *t)
{
	if (c->tls != NULL || c->failed || c->closing) {
		tls_free(&t);
		return -EINVAL;
	}
	/* What was queued before this point belongs to the clear channel. */
	conn_flush(c);
	c->tls = t;
	c->tls_done = 0;
	/* A client speaks first; a server waits for the ClientHello. */
	tls_progress(c);
	return c->failed ? -EPROTO : 0;
}

bool
conn_tls_handshaking(const struct conn *c)
{
	return c->tls != NULL && !c->tls_done && tls_hello_seen(c->tls);
}

bool
conn_tls_cert_rejected(const struct conn *c)
{
	return c->tls != NULL && tls_cert_rejected(c->tls);
}

bool
conn_tls_active(const struct conn *c)
{
	return c->tls != NULL && c->tls_done;
}

size_t
conn_pending(const struct conn *c)
{
	return c->out.len + c->in_flight;
}

size_t
conn_unsent(const struct conn *c)
{
	size_t n = conn_pending(c);
#ifdef TIOCOUTQ
	uv_os_fd_t fd;
	int queued = 0;

	if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0 &&
	    ioctl(fd, TIOCOUTQ, &queued) == 0 && queued > 0)
		n += (size_t)queued;
#endif
	return n;
}

void
conn_want_drained(struct conn *c)
{
	c->want_drained = 1;
}

const char *
conn_peer(const struct conn *c)
{
	return c->peer;
}

void
conn_peer_addr(const struct conn *c, int *af, unsigned char addr[16])
{
	*af = c->peer_af;
	memcpy(addr, c->peer_bin, sizeof(c->peer_bin));
}

static void
on_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	if (--c->handles_open > 0)
		return;
	tls_free(&c->tls);
	buf_free(&c->out);
	free(c);
}

static void
conn_close_now(struct conn *c)
{
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	uv_timer_stop(&c->linger);
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	uv_close((uv_handle_t *)&c->linger, on_handle_closed);
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
	(void)status;
	conn_close_now(req->data);
}

static void
on_linger_expired(uv_timer_t *t)
{
	conn_close_now(t->data);
}

void
conn_close(struct conn **cp, int graceful)
{
	struct conn *c = *cp;

	if (c == NULL)
		return;
	*cp = NULL;
	if (graceful && !c->failed) {
		conn_flush(c);
		if (c->tls != NULL && c->tls_done) {
			tls_shutdown(c->tls);
			tls_flush_raw(c);
		}
	}
	c->closing = 1;
	conn_pause(c);
	c->shutdown_req.data = c;
	if (graceful && !c->failed && c->in_flight > 0 &&
	    uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp,
			on_shutdown) == 0) {
		uv_timer_start(&c->linger, on_linger_expired, CONN_LINGER_MS, 0);
		return;
	}
	conn_close_now(c);
}
