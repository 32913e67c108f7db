#ifndef POPBRIDGE_CONN_H
#define POPBRIDGE_CONN_H

#include <stdbool.h>
#include <sys/uio.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

#include "util/buf.h"

/*
 * A TCP stream with an output queue, seen by protocol code only through
 * events: data arrived, output drained, connected, failed. Protocol code
 * never touches the socket.
 *
 * Output is appended with conn_write and handed to the kernel by
 * conn_flush; conn_pending says how much is still queued, which callers use
 * for back-pressure (stop producing above a high mark, resume on drained).
 */

/* One read delivers at most this much; shared by all connections of a loop
 * (reads are processed synchronously, so one buffer serves them all). */
#define CONN_READ_MAX (128u * 1024)
/* drained fires once pending output falls to this after conn_want_drained. */
#define CONN_LOW_WATER (64u * 1024)
/* A graceful close waits this long for queued output to reach the peer. */
#define CONN_LINGER_MS 5000

struct conn;
struct tls;

struct conn_events {
	/* Bytes received; p is valid only during the call. */
	void (*data)(void *ctx, const char *p, size_t n);
	/* Output fell to CONN_LOW_WATER after conn_want_drained. */
	void (*drained)(void *ctx);
	/* A write reached the kernel: the peer is reading. May be NULL. */
	void (*progress)(void *ctx);
	/* The outgoing connect finished: 0 or a negative libuv error. */
	void (*connected)(void *ctx, int status);
	/* The TLS handshake finished: err is NULL, or why it failed (the
	 * failed event does not follow; the owner closes). */
	void (*tls_ready)(void *ctx, const char *err);
	/* The peer closed (UV_EOF) or an error occurred (negative libuv code).
	 * No further events follow; the owner still calls conn_close. */
	void (*failed)(void *ctx, int status);
};

/* Accepts a pending connection from a listening stream. NULL on failure.
 * Reading starts with conn_start. */
struct conn *conn_accept(uv_loop_t *loop, uv_stream_t *server);

/* Starts connecting to addr; events->connected reports the outcome. */
struct conn *conn_connect(uv_loop_t *loop, const struct sockaddr *addr,
			  const struct conn_events *ev, void *ctx);

void conn_set_events(struct conn *c, const struct conn_events *ev, void *ctx);

/* Starts (or resumes) reading; conn_pause stops it. Both are idempotent. */
int conn_start(struct conn *c);
void conn_pause(struct conn *c);

/* Queues bytes for sending. 0, or -ENOMEM / -EPIPE (already failed). */
int conn_write(struct conn *c, const void *p, size_t n);
/*
 * Sends segments: on a plain connection with nothing queued, straight from
 * the caller's memory as far as the socket takes them at once; whatever is
 * left (all of it on TLS, or behind queued output) is queued as by
 * conn_write. Bytes sent at once report progress before it returns. Same
 * returns as conn_write.
 */
int conn_writev(struct conn *c, const struct iovec *v, size_t n);
/* Marks the output queued so far (and until the next flush) as secret:
 * its memory is wiped once sent. For credentials. */
void conn_mark_secret(struct conn *c);
/* Wipes every received byte from the read buffers after the data event
 * (a POP3 client's input holds passwords). */
void conn_wipe_reads(struct conn *c);

/* The queue itself, for producers that write into it directly (the
 * dot-stuffer) instead of copying through conn_write; bounded. */
struct buf *conn_outbuf(struct conn *c);
/* Hands queued bytes to the kernel. 0 or a negative libuv error. */
int conn_flush(struct conn *c);
/* Bytes queued or in flight. */
size_t conn_pending(const struct conn *c);
/* Bytes not yet taken by the peer: ours plus what the kernel still holds
 * in the socket's send queue (where the system can tell). */
size_t conn_unsent(const struct conn *c);
/* Asks for one drained event when pending output reaches CONN_LOW_WATER. */
void conn_want_drained(struct conn *c);

/*
 * Puts TLS between the socket and the protocol from now on: data events
 * carry plaintext and writes are encrypted. Output queued before the call
 * is sent in clear first (the "+OK Begin TLS" line). Takes ownership of t.
 * Client-role connections start the handshake at once. Returns 0, -EINVAL
 * (TLS already on, or the connection failing) or -EPROTO (the handshake
 * failed at once).
 */
int conn_start_tls(struct conn *c, struct tls *t);
bool conn_tls_active(const struct conn *c);
/* The TLS handshake began (the peer's hello came) and has not finished:
 * not a mere connect-and-close, as health checks do. */
bool conn_tls_handshaking(const struct conn *c);
/* The TLS peer refused our certificate (see tls_cert_rejected). */
bool conn_tls_cert_rejected(const struct conn *c);

/* The peer's address as text ("127.0.0.1", "::1"); "?" when unknown. */
const char *conn_peer(const struct conn *c);
/* The peer address in binary: *af is AF_INET or AF_INET6 (0 if unknown)
 * and addr holds 4 or 16 bytes. */
void conn_peer_addr(const struct conn *c, int *af, unsigned char addr[16]);

/* Processes bytes as if they had just been received from the socket
 * (through TLS when it is on): for bytes read ahead of a protocol switch,
 * such as a ClientHello that came with a PROXY header. */
void conn_feed(struct conn *c, const char *p, size_t n);

/*
 * Ends the connection and sets *c to NULL; no events fire afterwards and
 * the memory is released once libuv has closed the handle. Graceful: queued
 * output is sent first (for up to CONN_LINGER_MS). Abortive: dropped.
 */
void conn_close(struct conn **c, int graceful);

#endif
